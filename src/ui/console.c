#include "ui/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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
		snprintf(err, errlen, "'%s': expected stdio, file:PATH, socket:PATH or none", s);
		return -EINVAL;
	}
	if (path) {
		if (!*path || strlen(path) >= sizeof(spec->path)) {
			snprintf(err, errlen, "'%s': the path is empty or too long", s);
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
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0) {
				c->in_fd = fd;
				__atomic_store_n(&c->out_fd, fd, __ATOMIC_RELEASE);
			}
			continue;
		}
		ssize_t n = read(c->in_fd, buf, sizeof(buf));
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
		/* A VM restarted after a guest reset reopens its consoles: the log goes on, as a serial
		 * cable's would, rather than losing what the guest said before the reset. */
		c->out_fd = open(spec->path, O_WRONLY | O_CREAT | O_CLOEXEC | (console_first_open(spec->path) ? O_TRUNC : O_APPEND),
				 0644);
		if (c->out_fd < 0) {
			int e = errno;
			snprintf(err, errlen, "%s: %s", spec->path, strerror(e));
			return -e;
		}
		c->own_out = true;
		return 0;
	case CONSOLE_SOCKET: {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		if (strlen(spec->path) >= sizeof(a.sun_path)) {
			snprintf(err, errlen, "%s: socket path too long", spec->path);
			return -ENAMETOOLONG;
		}
		strcpy(a.sun_path, spec->path);
		unlink(spec->path);
		c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(c->listen_fd, 1) < 0) {
			int e = errno;
			snprintf(err, errlen, "%s: cannot listen: %s", spec->path, strerror(e));
			if (c->listen_fd >= 0)
				close(c->listen_fd);
			c->listen_fd = -1;
			return -e;
		}
		break;
	}
	}
	if (pipe2(c->stop_pipe, O_CLOEXEC) < 0)
		return -errno;
	if (pthread_create(&c->thread, NULL, console_thread, c) == 0)
		c->thread_started = true;
	return 0;
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
	if (c->own_out && c->out_fd >= 0)
		close(c->out_fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		unlink(c->spec.path);
		if (c->in_fd >= 0)
			close(c->in_fd);
	}
	c->thread_started = false;
}
