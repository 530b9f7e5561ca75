/* Device fds serviced on a VMBus host's service thread (vmbus_server_notifier.watch_fd): a fixed
 * table of (fd, callback) slots registered edge-triggered in the host's epoll set, each under the
 * epoll tag tag_base + slot. The service thread (vmbus_host, or the loopback's caller) runs a slot's
 * callback when its tag fires, and every callback after an epoll_wait interrupted by io_uring's
 * task work (the completions are posted by then). Not locked: the owner serialises all calls. */
#ifndef GEN2VM_VMBUS_WATCH_H
#define GEN2VM_VMBUS_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#define VMBUS_WATCH_MAX 256u

struct vmbus_watches {
	uint64_t tag_base;
	struct vmbus_watch {
		int fd; /* -1: free slot */
		void (*cb)(void *arg);
		void *arg;
	} w[VMBUS_WATCH_MAX];
};

/* Every slot free; the slots' epoll tags are tag_base .. tag_base + VMBUS_WATCH_MAX - 1. */
void vmbus_watches_init(struct vmbus_watches *ws, uint64_t tag_base);
/* Adds fd to epfd (EPOLLIN | EPOLLET) in a free slot. 0, -ENOSPC or -errno from epoll_ctl. */
int vmbus_watches_add(struct vmbus_watches *ws, int epfd, int fd, void (*cb)(void *arg), void *arg);
/* Removes fd from epfd and frees its slot; an event still queued for it then finds the slot empty. */
void vmbus_watches_del(struct vmbus_watches *ws, int epfd, int fd);
/* Whether tag is one of this table's; if so, runs its slot's callback when the slot is in use. */
bool vmbus_watches_fire(struct vmbus_watches *ws, uint64_t tag);
/* Runs every callback in use; returns how many ran. */
unsigned vmbus_watches_fire_all(struct vmbus_watches *ws);

#endif
