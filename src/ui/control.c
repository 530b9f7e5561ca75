#include "ui/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

#define MAX_CMDS 32
#define LINE_MAX_LEN 4096

struct control_cmd {
	const char *name, *help;
	control_cmd_fn fn;
	void *opaque;
};

struct control {
	int fd;
	int stop[2];
	char path[108];
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	struct control_cmd cmds[MAX_CMDS];
	unsigned nr;
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
	int r = -ENOSPC;
	if (c->nr < MAX_CMDS) {
		c->cmds[c->nr++] = (struct control_cmd){ name, help, fn, opaque };
		r = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Runs one command line, writing the reply line ("ok", "ok: DETAIL" or "error: MESSAGE") into out. */
static void control_run_line(struct control *c, char *line, char *out, size_t outlen)
{
	char reply[CONTROL_REPLY_MAX] = "";
	char *argv[CONTROL_MAX_ARGS];
	int argc = control_split(line, argv, CONTROL_MAX_ARGS);
	int r = -EINVAL;
	if (argc < 0) {
		snprintf(reply, sizeof(reply), "malformed command line (unbalanced quote or too many words)");
	} else if (argc == 0) {
		snprintf(reply, sizeof(reply), "empty command (try: help)");
	} else {
		struct control_cmd cmd = { 0 };
		pthread_mutex_lock(&c->lock);
		for (unsigned i = 0; i < c->nr; i++)
			if (!strcmp(c->cmds[i].name, argv[0]))
				cmd = c->cmds[i];
		pthread_mutex_unlock(&c->lock);
		if (cmd.fn)
			r = cmd.fn(cmd.opaque, argc, argv, reply, sizeof(reply));
		else
			snprintf(reply, sizeof(reply), "unknown command '%s' (try: help)", argv[0]);
	}
	if (r)
		snprintf(out, outlen, "error: %s\n", reply[0] ? reply : strerror(-r));
	else
		snprintf(out, outlen, reply[0] ? "ok: %s\n" : "ok\n", reply);
}

void control_execute(struct control *c, const char *line, char *reply, size_t len)
{
	char buf[LINE_MAX_LEN + 1];
	snprintf(buf, sizeof(buf), "%s", line);
	control_run_line(c, buf, reply, len);
	char *nl = strchr(reply, '\n');
	if (nl)
		*nl = 0;
}

/* Serves command lines until the client closes or stays silent for 5 s. */
static void control_serve(struct control *c, int fd)
{
	char buf[LINE_MAX_LEN + 1];
	size_t got = 0;
	for (;;) {
		char *nl = memchr(buf, '\n', got);
		if (!nl) {
			if (got == LINE_MAX_LEN)
				return; /* a line too long to be a command */
			struct pollfd p[2] = { { fd, POLLIN, 0 }, { c->stop[0], POLLIN, 0 } };
			if (poll(p, 2, 5000) <= 0 || p[1].revents)
				return; /* silent client, or the VM is going away */
			ssize_t n = read(fd, buf + got, LINE_MAX_LEN - got);
			if (n <= 0)
				return;
			got += (size_t)n;
			continue;
		}
		*nl = 0;
		char out[CONTROL_REPLY_MAX + 16];
		control_run_line(c, buf, out, sizeof(out));
		if (write(fd, out, strlen(out)) < 0)
			return;
		size_t used = (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, got - used);
		got -= used;
	}
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	for (;;) {
		struct pollfd p[2] = { { c->stop[0], POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		control_serve(c, fd);
		close(fd);
	}
	return NULL;
}

int control_open(struct control **out, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "--control %s: path too long for a Unix socket", path);
		return -ENAMETOOLONG;
	}
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->stop[0] = c->stop[1] = -1;
	strcpy(a.sun_path, path);
	strcpy(c->path, path);
	unlink(path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(c->fd, 8) < 0 ||
	    pipe2(c->stop, O_CLOEXEC) < 0) {
		int e = errno;
		snprintf(err, errlen, "--control %s: %s", path, strerror(e));
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return -e;
	}
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
	unlink(c->path);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int control_request(const char *path, int argc, char **argv, char *reply, size_t replylen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	char line[LINE_MAX_LEN];
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
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || write(fd, line, used) != (ssize_t)used) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* One command: say so, so that the VM answers and closes instead of waiting for more lines. */
	shutdown(fd, SHUT_WR);
	size_t got = 0;
	ssize_t n;
	while (got + 1 < replylen && (n = read(fd, reply + got, replylen - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	reply[got] = 0;
	char *nl = strchr(reply, '\n');
	if (nl)
		*nl = 0;
	if (!strncmp(reply, "ok", 2))
		return 0;
	return -EIO;
}
