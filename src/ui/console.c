#include "ui/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/text.h"

int console_spec_parse(const char *s, struct console_spec *spec, char *err, size_t errlen)
{
	memset(spec, 0, sizeof(*spec));
	const char *path = NULL;
	if (!strcmp(s, "none") || !strcmp(s, "off")) {
		spec->kind = CONSOLE_NONE;
	} else if (!strcmp(s, "stdio")) {
		spec->kind = CONSOLE_STDIO;
	} else if (!strncmp(s, "file:", 5)) {
		spec->kind = CONSOLE_FILE;
		path = s + 5;
	} else if (!strncmp(s, "socket:", 7)) {
		spec->kind = CONSOLE_SOCKET;
		path = s + 7;
	} else {
		snprintf(err, errlen, "'%s': expected stdio, file:PATH, socket:PATH or none", text_show(s));
		return -EINVAL;
	}
	if (path) {
		if (!*path || strlen(path) >= sizeof(spec->path)) {
			snprintf(err, errlen, "'%s': the path is %s", text_show(s),
				 *path ? "too long (at most 255 bytes)" : "empty");
			return -EINVAL;
		}
		strcpy(spec->path, path);
	}
	return 0;
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	unsigned char buf[256];
	for (;;) {
		struct pollfd p[2] = { { c->stop_pipe[0], POLLIN, 0 }, { -1, POLLIN, 0 } };
		p[1].fd = c->listen_fd >= 0 && c->in_fd < 0 ? c->listen_fd : c->in_fd;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		if (!p[1].revents)
			continue;
		if (p[1].fd == c->listen_fd) {
			/* Non-blocking: a client that stops reading loses output instead of stalling the
			 * vCPU that writes it. */
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0) {
				c->in_fd = fd;
				__atomic_store_n(&c->out_fd, fd, __ATOMIC_RELEASE);
			}
			continue;
		}
		ssize_t n = read(c->in_fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			if (c->listen_fd >= 0) { /* client left: wait for the next one */
				__atomic_store_n(&c->out_fd, -1, __ATOMIC_RELEASE);
				close(c->in_fd);
				c->in_fd = -1;
				continue;
			}
			break; /* end of stdin */
		}
		/* The UART FIFO is small: hand the bytes over as the guest drains it. */
		for (unsigned off = 0; off < (unsigned)n;) {
			unsigned took = c->input ? c->input(c->opaque, buf + off, (unsigned)n - off) : (unsigned)n;
			off += took;
			if (!took) {
				struct pollfd s = { c->stop_pipe[0], POLLIN, 0 };
				if (poll(&s, 1, 2) > 0)
					return NULL;
			}
		}
	}
	return NULL;
}

/* True the first time this process opens path as a console file. */
static bool console_first_open(const char *path)
{
	static char *seen[8];
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	bool first = true;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < 8 && first; i++)
		if (seen[i] && !strcmp(seen[i], path))
			first = false;
	for (unsigned i = 0; i < 8 && first; i++)
		if (!seen[i]) {
			seen[i] = strdup(path);
			break;
		}
	pthread_mutex_unlock(&lock);
	return first;
}

/* A console file: a regular file (the log) or a character device (/dev/null, a terminal). Nothing is
 * truncated here: console_commit does it once the VM starts, so that a VM that fails to start leaves
 * an existing log as it was (and removes a log it created). */
static int console_open_file(struct console *c, const struct console_spec *spec, char *err, size_t errlen)
{
	struct stat before;
	bool existed = stat(spec->path, &before) == 0;
	char why[160];
	/* O_APPEND: after console_commit truncates, writes start at 0; after a guest reset the log goes
	 * on, as a serial cable's would, rather than losing what the guest said before the reset. */
	int fd = file_open_user(spec->path, O_WRONLY | O_CREAT | O_APPEND, 0644, FILE_REG | FILE_CHR, why, sizeof(why));
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", text_show(spec->path), why);
		return fd;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		c->truncate_pending = console_first_open(spec->path);
		c->created = !existed;
		c->file_dev = st.st_dev;
		c->file_ino = st.st_ino;
	}
	c->out_fd = fd;
	c->own_out = true;
	return 0;
}

int console_open(struct console *c, const struct console_spec *spec, console_input_fn input, void *opaque,
		 char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->spec = *spec;
	c->out_fd = c->in_fd = c->listen_fd = -1;
	c->stop_pipe[0] = c->stop_pipe[1] = -1;
	c->input = input;
	c->opaque = opaque;
	switch (spec->kind) {
	case CONSOLE_NONE:
		return 0;
	case CONSOLE_STDIO:
		c->out_fd = STDOUT_FILENO;
		c->in_fd = STDIN_FILENO;
		break;
	case CONSOLE_FILE:
		return console_open_file(c, spec, err, errlen);
	case CONSOLE_SOCKET: {
		char why[200];
		int r = file_socket_listen(spec->path, 1, &c->listen_fd, &c->sock_id, why, sizeof(why));
		if (r) {
			snprintf(err, errlen, "%s: %s", text_show(spec->path), why);
			c->listen_fd = -1;
			return r;
		}
		/* A client that leaves between poll and accept must not stall the console thread. */
		fcntl(c->listen_fd, F_SETFL, fcntl(c->listen_fd, F_GETFL) | O_NONBLOCK);
		break;
	}
	}
	if (pipe2(c->stop_pipe, O_CLOEXEC) < 0)
		return -errno;
	if (pthread_create(&c->thread, NULL, console_thread, c) == 0)
		c->thread_started = true;
	return 0;
}

void console_commit(struct console *c)
{
	c->committed = true;
	if (c->truncate_pending && ftruncate(c->out_fd, 0))
		log_warn("%s: cannot truncate the console log: %s", text_show(c->spec.path), strerror(errno));
	c->truncate_pending = false;
}

int console_out_fd(const struct console *c)
{
	return __atomic_load_n(&c->out_fd, __ATOMIC_ACQUIRE);
}

void console_close(struct console *c)
{
	if (c->thread_started) {
		if (write(c->stop_pipe[1], "x", 1) < 0) {
			/* the thread also ends when its input closes */
		}
		pthread_join(c->thread, NULL);
	}
	if (c->stop_pipe[0] >= 0) {
		close(c->stop_pipe[0]);
		close(c->stop_pipe[1]);
	}
	if (c->own_out && c->out_fd >= 0) {
		close(c->out_fd);
		c->own_out = false;
		/* A log this VM created but never started to write: as if it had not been asked for. */
		struct stat st;
		if (c->created && !c->committed && !stat(c->spec.path, &st) && st.st_dev == c->file_dev &&
		    st.st_ino == c->file_ino && st.st_size == 0)
			unlink(c->spec.path);
	}
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		file_socket_unlink(c->spec.path, &c->sock_id);
		if (c->in_fd >= 0)
			close(c->in_fd);
	}
	c->thread_started = false;
}
