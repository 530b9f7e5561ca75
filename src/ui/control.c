#include "ui/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"


struct control_cmd {
	const char *name, *help;
	control_cmd_fn fn;
	void *opaque;
};

/* One connection. The server never blocks on it: reads and writes are non-blocking, and the
 * connection is closed when its deadline passes (CONTROL_IDLE_MS after it connected or after its last
 * complete command), so a client that is idle, trickles bytes or does not read its replies costs one
 * slot for a bounded time and never delays another client. */
struct control_client {
	int fd;
	uint64_t since_ns;    /* accepted: the oldest is dropped when the slots run out */
	uint64_t deadline_ns;
	size_t got;           /* bytes of the current line(s) in in[] */
	bool eof;             /* the client will send nothing more */
	bool closing;         /* close once out[] is sent */
	size_t out_len, out_off;
	char in[CONTROL_LINE_MAX + 1];
	char out[CONTROL_REPLY_MAX + 64];
};

struct control {
	int fd;
	struct file_socket_id id;
	int stop[2];
	char path[108];
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;      /* the command table */
	pthread_mutex_t exec_lock; /* one command at a time (the thread and control_execute) */
	struct control_cmd *cmds; /* grows as devices register theirs */
	unsigned nr, cap;
	struct control_client *clients[CONTROL_MAX_CLIENTS];
	unsigned long dropped;     /* connections closed for want of a slot */
};

int control_split(char *line, char **argv, int max)
{
	int n = 0;
	char *p = line;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (!*p)
			return n;
		if (n == max)
			return -EINVAL;
		if (*p == '"') {
			argv[n++] = ++p;
			p = strchr(p, '"');
			if (!p)
				return -EINVAL;
		} else {
			argv[n++] = p;
			while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				p++;
			if (!*p)
				return n;
		}
		*p++ = '\0';
	}
}

static int control_help(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct control *c = opaque;
	size_t used = 0;
	reply[0] = 0;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->nr && used < len; i++)
		used += (size_t)snprintf(reply + used, len - used, "%s%s", i ? "; " : "", c->cmds[i].help);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int control_register(struct control *c, const char *name, const char *help, control_cmd_fn fn, void *opaque)
{
	pthread_mutex_lock(&c->lock);
	int r = 0;
	if (c->nr == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 32;
		struct control_cmd *n = realloc(c->cmds, cap * sizeof(*n));
		if (n) {
			c->cmds = n;
			c->cap = cap;
		} else {
			r = -ENOMEM;
		}
	}
	if (!r)
		c->cmds[c->nr++] = (struct control_cmd){ name, help, fn, opaque };
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Runs one command line, writing the reply line ("ok", "ok: DETAIL" or "error: MESSAGE", with its
 * newline) into out. Replies are one line whatever a command or the client's text holds. */
static void control_run_line(struct control *c, char *line, char *out, size_t outlen)
{
	char reply[CONTROL_REPLY_MAX] = "";
	char *argv[CONTROL_MAX_ARGS];
	int argc = control_split(line, argv, CONTROL_MAX_ARGS);
	int r = -EINVAL;
	if (argc < 0) {
		snprintf(reply, sizeof(reply), "malformed command line (unbalanced quote or more than %d words)",
			 CONTROL_MAX_ARGS);
	} else if (argc == 0) {
		snprintf(reply, sizeof(reply), "empty command (try: help)");
	} else {
		struct control_cmd cmd = { 0 };
		pthread_mutex_lock(&c->lock);
		for (unsigned i = 0; i < c->nr; i++)
			if (!strcmp(c->cmds[i].name, argv[0]))
				cmd = c->cmds[i];
		pthread_mutex_unlock(&c->lock);
		if (cmd.fn) {
			pthread_mutex_lock(&c->exec_lock);
			r = cmd.fn(cmd.opaque, argc, argv, reply, sizeof(reply));
			pthread_mutex_unlock(&c->exec_lock);
		} else {
			snprintf(reply, sizeof(reply), "unknown command '%s' (try: help)", text_show(argv[0]));
		}
	}
	for (char *p = reply; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (r)
		snprintf(out, outlen, "error: %s\n", reply[0] ? reply : strerror(-r));
	else
		snprintf(out, outlen, reply[0] ? "ok: %s\n" : "ok\n", reply);
}

void control_execute(struct control *c, const char *line, char *reply, size_t len)
{
	char buf[CONTROL_LINE_MAX + 1];
	snprintf(buf, sizeof(buf), "%s", line);
	control_run_line(c, buf, reply, len);
	char *nl = strchr(reply, '\n');
	if (nl)
		*nl = 0;
}

/* --- the server ------------------------------------------------------------------------------------ */

static void client_close(struct control *c, unsigned i)
{
	close(c->clients[i]->fd);
	free(c->clients[i]);
	c->clients[i] = NULL;
}

/* Sends what out[] holds. false when the connection is finished (error, or all sent and closing). */
static bool client_flush(struct control_client *cl)
{
	while (cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true; /* the client is not reading: POLLOUT, within its deadline */
		if (n <= 0)
			return false; /* gone (EPIPE, ECONNRESET): nothing to tell it */
		cl->out_off += (size_t)n;
	}
	cl->out_off = cl->out_len = 0;
	return !cl->closing;
}

static void client_reply(struct control_client *cl, const char *text)
{
	size_t n = strlen(text);
	memcpy(cl->out, text, n);
	cl->out_len = n;
	cl->out_off = 0;
}

/* Runs the complete lines in in[], one reply at a time (the next line waits until the reply to the
 * previous one is sent, so a client that does not read cannot make the server buffer). false when
 * the connection is finished. */
static bool client_work(struct control *c, struct control_client *cl, uint64_t now)
{
	for (;;) {
		if (cl->out_len && !client_flush(cl))
			return false;
		if (cl->out_len)
			return true;
		char *nl = memchr(cl->in, '\n', cl->got);
		if (!nl && cl->eof && cl->got) {
			nl = cl->in + cl->got; /* a last line without its newline */
			cl->got++;
		}
		if (!nl) {
			if (cl->got == CONTROL_LINE_MAX) {
				client_reply(cl, "error: command line longer than " CONTROL_LINE_MAX_TEXT " bytes\n");
				cl->closing = true;
				continue;
			}
			if (cl->eof) {
				cl->closing = true;
				return client_flush(cl);
			}
			return true;
		}
		*nl = 0;
		control_run_line(c, cl->in, cl->out, sizeof(cl->out));
		cl->out_len = strlen(cl->out);
		cl->out_off = 0;
		size_t used = (size_t)(nl + 1 - cl->in);
		memmove(cl->in, nl + 1, cl->got - used);
		cl->got -= used;
		cl->deadline_ns = now + CONTROL_IDLE_MS * 1000000ull;
	}
}

static void client_readable(struct control *c, unsigned i, uint64_t now)
{
	struct control_client *cl = c->clients[i];
	if (!cl->eof && !cl->closing && cl->got < CONTROL_LINE_MAX) {
		ssize_t n = recv(cl->fd, cl->in + cl->got, CONTROL_LINE_MAX - cl->got, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0) {
			client_close(c, i);
			return;
		}
		if (n == 0)
			cl->eof = true;
		cl->got += (size_t)n;
	}
	if (!client_work(c, cl, now))
		client_close(c, i);
}

static void control_accept(struct control *c, uint64_t now)
{
	/* A few per round, so that the lines of those already connected keep being served during a flood. */
	for (int k = 0; k < 8; k++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return; /* EAGAIN, or a client that went away before we took it */
		unsigned slot = CONTROL_MAX_CLIENTS, oldest = 0;
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
			if (!c->clients[i]) {
				slot = i;
				break;
			}
			if (c->clients[i]->since_ns < c->clients[oldest]->since_ns)
				oldest = i;
		}
		if (slot == CONTROL_MAX_CLIENTS) {
			/* Every slot taken: the longest-connected client is the likeliest to be idle. */
			static const char busy[] = "error: too many control connections; this one was the oldest\n";
			send(c->clients[oldest]->fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			client_close(c, oldest);
			if (c->dropped++ % 1000 == 0)
				log_warn("control: more than %d connections at once; dropping the oldest", CONTROL_MAX_CLIENTS);
			slot = oldest;
		}
		struct control_client *cl = malloc(sizeof(*cl));
		if (!cl) {
			close(fd);
			return;
		}
		cl->fd = fd;
		cl->since_ns = now;
		cl->deadline_ns = now + CONTROL_IDLE_MS * 1000000ull;
		cl->got = cl->out_len = cl->out_off = 0;
		cl->eof = cl->closing = false;
		c->clients[slot] = cl;
	}
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	pthread_setname_np(pthread_self(), "control"); /* named in /proc (bench/console) */
	struct pollfd p[CONTROL_MAX_CLIENTS + 2];
	unsigned idx[CONTROL_MAX_CLIENTS];
	for (;;) {
		uint64_t now = clock_mono_ns(), next = UINT64_MAX;
		p[0] = (struct pollfd){ c->stop[0], POLLIN, 0 };
		p[1] = (struct pollfd){ c->fd, POLLIN, 0 };
		nfds_t n = 2;
		for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
			struct control_client *cl = c->clients[i];
			if (!cl)
				continue;
			if (now >= cl->deadline_ns) {
				client_close(c, i); /* idle, trickling or not reading its replies */
				continue;
			}
			if (cl->deadline_ns < next)
				next = cl->deadline_ns;
			idx[n - 2] = i;
			p[n++] = (struct pollfd){ cl->fd, (short)(cl->out_len ? POLLOUT : POLLIN), 0 };
		}
		int timeout = next == UINT64_MAX ? -1 : (int)((next - now) / 1000000 + 1);
		int r = poll(p, n, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_error("control: poll failed: %s", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		now = clock_mono_ns();
		for (nfds_t k = 2; k < n; k++) {
			unsigned i = idx[k - 2];
			if (!p[k].revents || !c->clients[i])
				continue;
			if (c->clients[i]->out_len) {
				if (!client_work(c, c->clients[i], now))
					client_close(c, i);
			} else {
				client_readable(c, i, now);
			}
		}
		if (p[1].revents)
			control_accept(c, now);
	}
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i])
			client_close(c, i);
	return NULL;
}

int control_open(struct control **out, const char *path, char *err, size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	char why[256];
	int r = file_socket_listen(path, 64, NULL, &c->fd, &c->id, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "--control %s: %s", text_show(path), why);
		free(c);
		return r;
	}
	/* Non-blocking: the thread accepts until EAGAIN, and a client that gives up between poll and
	 * accept must not stall it. */
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0 || pipe2(c->stop, O_CLOEXEC) < 0) {
		r = -errno;
		snprintf(err, errlen, "--control %s: %s", text_show(path), strerror(-r));
		close(c->fd);
		file_socket_unlink(path, &c->id);
		free(c);
		return r;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->exec_lock, NULL);
	snprintf(c->path, sizeof(c->path), "%s", path);
	control_register(c, "help", "help", control_help, c);
	*out = c;
	return 0;
}

int control_start(struct control *c)
{
	int r = pthread_create(&c->thread, NULL, control_thread, c);
	c->started = r == 0;
	return -r;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	if (c->started) {
		if (write(c->stop[1], "x", 1) < 0)
			log_debug("control: cannot wake the thread");
		pthread_join(c->thread, NULL);
	}
	close(c->fd);
	close(c->stop[0]);
	close(c->stop[1]);
	file_socket_unlink(c->path, &c->id);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->exec_lock);
	free(c->cmds);
	free(c);
}

/* --- the client ------------------------------------------------------------------------------------ */

int control_request(const char *path, int argc, char **argv, char *reply, size_t replylen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	char line[CONTROL_LINE_MAX];
	size_t used = 0;
	for (int i = 0; i < argc && used < sizeof(line); i++) {
		bool quote = strchr(argv[i], ' ') != NULL;
		used += (size_t)snprintf(line + used, sizeof(line) - used, quote ? "%s\"%s\"" : "%s%s", i ? " " : "",
					 argv[i]);
	}
	if (used + 2 > sizeof(line))
		return -E2BIG;
	line[used++] = '\n';
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A VM that hangs must not hang its caller: no answer within the timeout is an error. */
	struct timeval tv = { .tv_sec = CONTROL_CLIENT_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    send(fd, line, used, MSG_NOSIGNAL) != (ssize_t)used) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* One command: say so, so that the VM answers and closes instead of waiting for more lines. */
	shutdown(fd, SHUT_WR);
	size_t got = 0;
	ssize_t n = 0;
	while (got + 1 < replylen && (n = read(fd, reply + got, replylen - 1 - got)) > 0)
		got += (size_t)n;
	int e = n < 0 ? errno : 0;
	close(fd);
	reply[got] = 0;
	char *nl = strchr(reply, '\n');
	if (nl)
		*nl = 0;
	if (!got)
		return e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : e ? -e : -ECONNRESET;
	if (!strncmp(reply, "ok", 2))
		return 0;
	return -EIO;
}
