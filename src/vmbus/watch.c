#include "vmbus/watch.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

void vmbus_watches_init(struct vmbus_watches *ws, uint64_t tag_base)
{
	ws->tag_base = tag_base;
	for (unsigned i = 0; i < VMBUS_WATCH_MAX; i++)
		ws->w[i].fd = -1;
}

int vmbus_watches_add(struct vmbus_watches *ws, int epfd, int fd, void (*cb)(void *arg), void *arg)
{
	for (unsigned i = 0; i < VMBUS_WATCH_MAX; i++) {
		if (ws->w[i].fd >= 0)
			continue;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = ws->tag_base + i };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
			return -errno;
		ws->w[i] = (struct vmbus_watch){ fd, cb, arg };
		return 0;
	}
	return -ENOSPC;
}

void vmbus_watches_del(struct vmbus_watches *ws, int epfd, int fd)
{
	for (unsigned i = 0; i < VMBUS_WATCH_MAX; i++)
		if (ws->w[i].fd == fd) {
			epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
			ws->w[i].fd = -1;
		}
}

bool vmbus_watches_fire(struct vmbus_watches *ws, uint64_t tag)
{
	if (tag < ws->tag_base || tag - ws->tag_base >= VMBUS_WATCH_MAX)
		return false;
	struct vmbus_watch *w = &ws->w[tag - ws->tag_base];
	if (w->fd >= 0)
		w->cb(w->arg);
	return true;
}

unsigned vmbus_watches_fire_all(struct vmbus_watches *ws)
{
	unsigned n = 0;
	for (unsigned i = 0; i < VMBUS_WATCH_MAX; i++)
		if (ws->w[i].fd >= 0) {
			ws->w[i].cb(ws->w[i].arg);
			n++;
		}
	return n;
}
