#include "ui/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

/* Hands pending input to the device as far as its FIFO takes it; what stays waits for the next
 * round (the console thread polls with a short timeout meanwhile). */
static void console_feed(struct console *c, unsigned char *buf, unsigned *off, unsigned *len)
{
	while (*len) {
		unsigned took = c->input ? c->input(c->opaque, buf + *off, *len) : *len;
		if (!took)
			return;
		*off += took;
		*len -= took;
	}
	*off = 0;
}

/* Sends a client what it has not had yet, as far as its socket takes it now. A client further behind
 * than the ring loses the oldest part. Returns 0, or -errno when the client is gone. */
static int console_hub_push(struct console_hub *h, struct console_client *cl)
{
	unsigned char buf[4096];
	for (;;) {
		uint64_t lost = 0;
		pthread_mutex_lock(&h->lock);
		if (h->head - cl->pos > CONSOLE_RING) {
			lost = h->head - CONSOLE_RING - cl->pos;
			cl->pos = h->head - CONSOLE_RING;
		}
		size_t n = h->head - cl->pos < sizeof(buf) ? (size_t)(h->head - cl->pos) : sizeof(buf);
		size_t at = (size_t)(cl->pos % CONSOLE_RING), first = n < CONSOLE_RING - at ? n : CONSOLE_RING - at;
		memcpy(buf, h->ring + at, first);
		memcpy(buf + first, h->ring, n - first);
		pthread_mutex_unlock(&h->lock);
		/* Counted per client and said at most a few times a second, with what was lost since. */
		cl->lost += lost;
		if (lost) {
			static struct log_ratelimit rl;
			if (log_ratelimit_ok(&rl)) {
				log_warn("%s: a console client does not keep up with the output: %llu bytes dropped for it",
					 text_show(h->path), (unsigned long long)cl->lost);
				cl->lost = 0;
			}
		}
		if (!n)
			return 0;
		ssize_t w = send(cl->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		cl->pos += (uint64_t)w;
		if ((size_t)w < n)
			return 0;
	}
}

static void console_hub_drop(struct console_hub *h, unsigned i)
{
	close(h->clients[i].fd);
	pthread_mutex_lock(&h->lock);
	h->clients[i] = h->clients[--h->nr_clients];
	pthread_mutex_unlock(&h->lock);
}

static void console_hub_accept(struct console_hub *h)
{
	for (;;) {
		/* Non-blocking: a client that stops reading loses output instead of stalling anything. */
		int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (h->nr_clients == CONSOLE_CLIENTS) {
			static const char busy[] = "gen2vm: this console has " "16" " clients attached already; try later\r\n";
			_Static_assert(CONSOLE_CLIENTS == 16, "the message names the limit");
			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* it is closed either way */
			}
			close(fd);
			static struct log_ratelimit rl;
			if (log_ratelimit_ok(&rl))
				log_warn("%s: a console client refused: %d are attached already", text_show(h->path),
					 CONSOLE_CLIENTS);
			continue;
		}
		pthread_mutex_lock(&h->lock);
		h->clients[h->nr_clients++] = (struct console_client){ .fd = fd, .pos = h->head };
		pthread_mutex_unlock(&h->lock);
	}
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	pthread_setname_np(pthread_self(), "console"); /* named in /proc (bench/console) */
	struct console_hub *h = c->hub;
	unsigned char in[256];
	unsigned in_off = 0, in_len = 0; /* stdin's bytes the guest has not taken yet */
	for (;;) {
		struct pollfd p[4 + CONSOLE_CLIENTS]; /* stop, stdin, listen, wake, clients */
		unsigned n = 0, at_in = 0, at_listen = 0, at_wake = 0, at_client = 0;
		bool pending = in_len > 0;
		p[n++] = (struct pollfd){ c->stop_pipe[0], POLLIN, 0 };
		if (c->in_fd >= 0 && !in_len) {
			at_in = n;
			p[n++] = (struct pollfd){ c->in_fd, POLLIN, 0 };
		}
		if (h) {
			at_listen = n;
			p[n++] = (struct pollfd){ h->listen_fd, POLLIN, 0 };
			at_wake = n;
			p[n++] = (struct pollfd){ h->wake_fd, POLLIN, 0 };
			at_client = n;
			pthread_mutex_lock(&h->lock);
			for (unsigned i = 0; i < h->nr_clients; i++) {
				struct console_client *cl = &h->clients[i];
				short ev = (short)((cl->in_len ? 0 : POLLIN) | (cl->pos < h->head ? POLLOUT : 0));
				pending |= cl->in_len > 0;
				p[n++] = (struct pollfd){ cl->fd, ev, 0 };
			}
			pthread_mutex_unlock(&h->lock);
		}
		if (poll(p, n, pending ? 2 : -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		if (at_in && p[at_in].revents) {
			ssize_t k = read(c->in_fd, in, sizeof(in));
			if (k > 0) {
				in_off = 0;
				in_len = (unsigned)k;
			} else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
				c->in_fd = -1; /* end of stdin: the output goes on */
				if (!h)
					break;
			}
		}
		console_feed(c, in, &in_off, &in_len);
		if (!h)
			continue;
		if (p[at_wake].revents) {
			/* The eventfd first, then the flag: output written after the flag is cleared wakes the
			 * next poll; output written before it is in the ring the pushes below send. */
			uint64_t v;
			if (read(h->wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another round already took it */
			}
			pthread_mutex_lock(&h->lock);
			h->wake_pending = false;
			pthread_mutex_unlock(&h->lock);
		}
		/* Downwards: a client that leaves is replaced by the last one, already handled this round. */
		unsigned polled = n - at_client;
		for (unsigned i = polled; i-- > 0;) {
			struct console_client *cl = &h->clients[i];
			short rev = p[at_client + i].revents;
			bool gone = false;
			if ((rev & (POLLIN | POLLHUP | POLLERR)) && !cl->in_len) {
				ssize_t k = read(cl->fd, cl->in, sizeof(cl->in));
				if (k > 0) {
					cl->in_off = 0;
					cl->in_len = (unsigned)k;
				} else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
					gone = true;
				}
			}
			if (!gone)
				console_feed(c, cl->in, &cl->in_off, &cl->in_len);
			if (gone || console_hub_push(h, cl))
				console_hub_drop(h, i);
		}
		if (p[at_listen].revents)
			console_hub_accept(h);
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

/* An attach socket at path; its thread is the console's. */
static int console_hub_open(struct console *c, const char *path, char *err, size_t errlen)
{
	char why[200];
	if (strlen(path) >= sizeof(c->hub->path)) {
		snprintf(err, errlen, "%s: the path is too long (at most 255 bytes)", text_show(path));
		return -ENAMETOOLONG;
	}
	struct console_hub *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	strcpy(h->path, path);
	h->listen_fd = -1;
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&h->lock, NULL);
	int r = h->wake_fd < 0 ? -errno : file_socket_listen(path, 16, NULL, &h->listen_fd, &h->sock_id, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "%s: %s", text_show(path), h->wake_fd < 0 ? strerror(-r) : why);
		if (h->wake_fd >= 0)
			close(h->wake_fd);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return r;
	}
	/* A client that leaves between poll and accept must not stall the console thread. */
	fcntl(h->listen_fd, F_SETFL, fcntl(h->listen_fd, F_GETFL) | O_NONBLOCK);
	c->hub = h;
	return 0;
}

int console_open(struct console *c, const struct console_spec *spec, const char *attach, console_input_fn input,
		 void *opaque, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->spec = *spec;
	c->out_fd = c->in_fd = -1;
	c->stop_pipe[0] = c->stop_pipe[1] = -1;
	c->input = input;
	c->opaque = opaque;
	int r = 0;
	switch (spec->kind) {
	case CONSOLE_NONE:
		break;
	case CONSOLE_STDIO:
		c->out_fd = STDOUT_FILENO;
		c->in_fd = STDIN_FILENO;
		break;
	case CONSOLE_FILE:
		r = console_open_file(c, spec, err, errlen);
		break;
	case CONSOLE_SOCKET:
		attach = spec->path;
		break;
	}
	if (!r && attach)
		r = console_hub_open(c, attach, err, errlen);
	if (r || (!c->hub && c->in_fd < 0))
		return r; /* a file alone needs no thread */
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

void console_write(struct console *c, const unsigned char *data, unsigned len)
{
	for (unsigned off = 0; c->out_fd >= 0 && off < len;) {
		ssize_t w = write(c->out_fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (unsigned)w;
	}
	struct console_hub *h = c->hub;
	if (!h || !len)
		return;
	bool wake = false;
	pthread_mutex_lock(&h->lock);
	/* Only the last CONSOLE_RING bytes matter: older ones would be overwritten at once. */
	unsigned skip = len > CONSOLE_RING ? len - CONSOLE_RING : 0;
	h->head += skip;
	for (unsigned off = skip; off < len;) {
		size_t at = (size_t)(h->head % CONSOLE_RING), k = len - off < CONSOLE_RING - at ? len - off : CONSOLE_RING - at;
		memcpy(h->ring + at, data + off, k);
		h->head += k;
		off += (unsigned)k;
	}
	if (h->nr_clients && !h->wake_pending)
		wake = h->wake_pending = true;
	pthread_mutex_unlock(&h->lock);
	if (wake && write(h->wake_fd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0) {
		/* the counter cannot overflow at one write per wake */
	}
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
	struct console_hub *h = c->hub;
	if (h) {
		for (unsigned i = 0; i < h->nr_clients; i++)
			close(h->clients[i].fd);
		close(h->listen_fd);
		file_socket_unlink(h->path, &h->sock_id);
		close(h->wake_fd);
		pthread_mutex_destroy(&h->lock);
		free(h);
		c->hub = NULL;
	}
	c->thread_started = false;
}
