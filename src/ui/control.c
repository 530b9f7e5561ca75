#include "ui/control.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_MAX_CMDS 64
#define CONTROL_LINE_MAX 1024
#define CONTROL_MAX_CLIENTS 8

struct control_cmd {
	char name[32];
	char usage[96];
	control_fn fn;
	void *ctx;
};

struct control {
	int lfd, efd;
	char path[108];
	pthread_t thr;
	pthread_mutex_t lock;
	struct control_cmd cmds[CONTROL_MAX_CMDS];
	unsigned ncmds;
};

int control_register(struct control *c, const char *cmd, const char *usage, control_fn fn, void *ctx)
{
	pthread_mutex_lock(&c->lock);
	int rc = 0;
	for (unsigned i = 0; i < c->ncmds; i++)
		if (!strcmp(c->cmds[i].name, cmd))
			rc = -EEXIST;
	if (!rc && c->ncmds == CONTROL_MAX_CMDS)
		rc = -ENOSPC;
	if (!rc) {
		struct control_cmd *k = &c->cmds[c->ncmds++];
		snprintf(k->name, sizeof(k->name), "%s", cmd);
		snprintf(k->usage, sizeof(k->usage), "%s", usage ? usage : cmd);
		k->fn = fn;
		k->ctx = ctx;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void control_execute(struct control *c, const char *line, char *reply, size_t cap)
{
	char buf[CONTROL_LINE_MAX], *argv[16];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", line);
	for (char *save = NULL, *t = strtok_r(buf, " \t\r\n", &save); t && argc < 16; t = strtok_r(NULL, " \t\r\n", &save))
		argv[argc++] = t;
	if (!argc) {
		snprintf(reply, cap, "error: empty command (try help)");
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (!strcmp(argv[0], "help")) {
		size_t n = (size_t)snprintf(reply, cap, "ok commands:");
		for (unsigned i = 0; i < c->ncmds && n < cap; i++)
			n += (size_t)snprintf(reply + n, cap - n, " [%s]", c->cmds[i].usage);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	struct control_cmd *k = NULL;
	for (unsigned i = 0; i < c->ncmds; i++)
		if (!strcmp(c->cmds[i].name, argv[0]))
			k = &c->cmds[i];
	struct control_cmd copy = k ? *k : (struct control_cmd){ 0 };
	pthread_mutex_unlock(&c->lock);
	if (!k) {
		snprintf(reply, cap, "error: unknown command '%s' (try help)", argv[0]);
		return;
	}
	char out[CONTROL_LINE_MAX] = "";
	int rc = copy.fn(copy.ctx, argc, argv, out, sizeof(out));
	if (rc)
		snprintf(reply, cap, "error: %s", out[0] ? out : strerror(-rc));
	else
		snprintf(reply, cap, "ok%s%s", out[0] ? " " : "", out);
}

struct client {
	int fd;
	size_t len;
	char buf[CONTROL_LINE_MAX];
};

static bool serve_client(struct control *c, struct client *cl)
{
	ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - 1 - cl->len);
	if (n <= 0)
		return false;
	cl->len += (size_t)n;
	char *nl;
	while ((nl = memchr(cl->buf, '\n', cl->len))) {
		*nl = 0;
		char reply[CONTROL_LINE_MAX + 64];
		control_execute(c, cl->buf, reply, sizeof(reply) - 1);
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		if (write(cl->fd, reply, rl) != (ssize_t)rl)
			return false;
		size_t used = (size_t)(nl - cl->buf) + 1;
		memmove(cl->buf, nl + 1, cl->len - used);
		cl->len -= used;
	}
	if (cl->len == sizeof(cl->buf) - 1) { /* a line longer than we take */
		const char *e = "error: line too long\n";
		if (write(cl->fd, e, strlen(e)) < 0) {
			/* closing anyway */
		}
		return false;
	}
	return true;
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct client cl[CONTROL_MAX_CLIENTS];
	int ncl = 0;
	for (;;) {
		struct pollfd p[2 + CONTROL_MAX_CLIENTS] = { { .fd = c->efd, .events = POLLIN },
							    { .fd = c->lfd, .events = POLLIN } };
		for (int i = 0; i < ncl; i++)
			p[2 + i] = (struct pollfd){ .fd = cl[i].fd, .events = POLLIN };
		if (poll(p, (nfds_t)(2 + ncl), -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		for (int i = ncl - 1; i >= 0; i--)
			if (p[2 + i].revents && !serve_client(c, &cl[i])) {
				close(cl[i].fd);
				cl[i] = cl[--ncl];
			}
		if (p[1].revents & POLLIN) {
			int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0 && ncl < CONTROL_MAX_CLIENTS)
				cl[ncl++] = (struct client){ .fd = fd };
			else if (fd >= 0)
				close(fd);
		}
	}
	for (int i = 0; i < ncl; i++)
		close(cl[i].fd);
	return NULL;
}

int control_open(const char *path, struct control **out)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (!path || strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	c->efd = eventfd(0, EFD_CLOEXEC);
	c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = 0;
	if (c->efd < 0 || c->lfd < 0)
		rc = -errno;
	if (!rc) {
		unlink(path);
		if (bind(c->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(c->lfd, 4))
			rc = -errno;
	}
	if (!rc && pthread_create(&c->thr, NULL, control_thread, c))
		rc = -EAGAIN;
	if (rc) {
		if (c->lfd >= 0)
			close(c->lfd);
		if (c->efd >= 0)
			close(c->efd);
		pthread_mutex_destroy(&c->lock);
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	uint64_t one = 1;
	if (write(c->efd, &one, sizeof(one)) != sizeof(one)) {
		/* cannot fail on a fresh eventfd */
	}
	pthread_join(c->thr, NULL);
	close(c->lfd);
	close(c->efd);
	unlink(c->path);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
