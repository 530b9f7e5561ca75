#include "support/loopback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define LB_QUEUE_MAX 65536u /* hard cap: post_to_guest fails beyond it */
#define LB_ALLOC_BASE (1ull << 20)

static int lb_post_to_guest(void *ctx, uint32_t vp, const void *msg, uint32_t len)
{
	struct vmbus_loopback *lb = ctx;
	if (len > HV_MESSAGE_PAYLOAD_BYTE_COUNT)
		return -EINVAL;
	if (lb->q_len == lb->q_cap) {
		if (lb->q_cap >= LB_QUEUE_MAX)
			return -ENOBUFS;
		uint32_t ncap = lb->q_cap ? lb->q_cap * 2 : 64;
		struct vmbus_loopback_msg *nq = malloc(ncap * sizeof(*nq));
		if (!nq)
			return -ENOMEM;
		for (uint32_t i = 0; i < lb->q_len; i++)
			nq[i] = lb->q[(lb->q_head + i) % lb->q_cap];
		free(lb->q);
		lb->q = nq;
		lb->q_cap = ncap;
		lb->q_head = 0;
	}
	struct vmbus_loopback_msg *m = &lb->q[(lb->q_head + lb->q_len++) % lb->q_cap];
	m->vp = vp;
	m->len = len;
	memcpy(m->buf, msg, len);
	return 0;
}

static void lb_signal_guest(void *ctx, uint32_t vp, uint32_t relid)
{
	struct vmbus_loopback *lb = ctx;
	lb->host_signals++;
	lb->last_signal_vp = vp;
	if (relid < HV_EVENT_FLAGS_COUNT)
		lb->events[relid / 8] |= (uint8_t)(1u << (relid % 8));
}

static bool lb_tx_busy(void *ctx)
{
	struct vmbus_loopback *lb = ctx;
	return lb->q_len >= lb->busy_limit;
}

static void lb_opened(void *ctx, uint32_t relid, uint32_t conn)
{
	((struct vmbus_loopback *)ctx)->opened++;
}

static void lb_closed(void *ctx, uint32_t relid, uint32_t conn)
{
	((struct vmbus_loopback *)ctx)->closed++;
}

static void lb_work_pending(void *ctx)
{
	__atomic_fetch_add(&((struct vmbus_loopback *)ctx)->work_pending, 1, __ATOMIC_RELAXED);
}

int vmbus_loopback_pop(struct vmbus_loopback *lb, void *buf)
{
	if (!lb->q_len) /* the guest waits: the host's service thread would have run this by now */
		vmbus_server_run_deferred(lb->srv);
	if (!lb->q_len)
		return -1;
	struct vmbus_loopback_msg *m = &lb->q[lb->q_head];
	lb->q_head = (lb->q_head + 1) % lb->q_cap;
	lb->q_len--;
	memcpy(buf, m->buf, m->len);
	return (int)m->len;
}

uint16_t vmbus_loopback_post(struct vmbus_loopback *lb, uint32_t connection_id, const void *msg, uint32_t len)
{
	return vmbus_server_post_message(lb->srv, 0, connection_id, HVMSG_VMBUS, msg, len);
}

/* --- client ops: the "guest" side --- */

static uint16_t lbc_post(void *ctx, uint32_t conn, const void *msg, uint32_t len)
{
	return vmbus_loopback_post(ctx, conn, msg, len);
}

static int lbc_next(void *ctx, void *buf, uint32_t *len)
{
	int n = vmbus_loopback_pop(ctx, buf);
	if (n < 0)
		return -VMBUS_ETIMEDOUT; /* one thread: nothing else can arrive while we wait */
	*len = (uint32_t)n;
	return 0;
}

static void lbc_signal(void *ctx, uint32_t conn)
{
	struct vmbus_loopback *lb = ctx;
	lb->guest_signals++;
	if (lb->defer_signals) {
		for (uint32_t i = 0; i < lb->nr_deferred; i++)
			if (lb->deferred[i] == conn)
				return;
		if (lb->nr_deferred < sizeof(lb->deferred) / sizeof(lb->deferred[0])) {
			lb->deferred[lb->nr_deferred++] = conn;
			return;
		}
	}
	vmbus_server_signal_event(lb->srv, conn);
}

static void *lbc_alloc(void *ctx, uint32_t n)
{
	struct vmbus_loopback *lb = ctx;
	uint64_t bytes = (uint64_t)n * HV_PAGE_SIZE;
	if (!n || bytes > lb->alloc_end - lb->alloc_next)
		return NULL;
	void *p = guest_mem_ptr(&lb->mem, lb->alloc_next, bytes);
	if (!p)
		return NULL;
	lb->alloc_next += bytes;
	lb->alloc_live++;
	memset(p, 0, bytes);
	return p;
}

static uint64_t lbc_v2p(void *ctx, const void *p)
{
	struct vmbus_loopback *lb = ctx;
	for (unsigned i = 0; i < lb->mem.nr_regions; i++) {
		const struct guest_mem_region *r = &lb->mem.region[i];
		if ((const uint8_t *)p >= r->hva && (const uint8_t *)p < r->hva + r->size)
			return r->gpa + (uint64_t)((const uint8_t *)p - r->hva);
	}
	return UINT64_MAX;
}

static void lbc_free(void *ctx, void *p, uint32_t n)
{
	struct vmbus_loopback *lb = ctx;
	uint64_t gpa = lbc_v2p(ctx, p);
	/* A stack allocator: the most recent block is returned; all freed resets it. */
	if (gpa + (uint64_t)n * HV_PAGE_SIZE == lb->alloc_next)
		lb->alloc_next = gpa;
	if (lb->alloc_live && --lb->alloc_live == 0)
		lb->alloc_next = lb->alloc_base;
}

static int lb_watch_fd(void *ctx, int fd, void (*cb)(void *arg), void *arg)
{
	struct vmbus_loopback *lb = ctx;
	return vmbus_watches_add(&lb->watches, lb->epfd, fd, cb, arg);
}

static void lb_unwatch_fd(void *ctx, int fd)
{
	struct vmbus_loopback *lb = ctx;
	vmbus_watches_del(&lb->watches, lb->epfd, fd);
}

int vmbus_loopback_wait(struct vmbus_loopback *lb, int timeout_ms)
{
	struct epoll_event evs[16];
	int signalled = (int)lb->nr_deferred;
	for (uint32_t i = 0; i < lb->nr_deferred; i++)
		vmbus_server_signal_event(lb->srv, lb->deferred[i]);
	lb->nr_deferred = 0;
	int n = epoll_wait(lb->epfd, evs, 16, signalled ? 0 : timeout_ms);
	if (n < 0 && errno == EINTR) {
		/* io_uring completes I/O through task work queued to the submitting thread, which
		 * interrupts this wait; the work has run (the CQEs are posted) by the time we are back
		 * in userspace. Poll every watch now rather than pay another epoll_wait for the eventfd. */
		return signalled + (int)vmbus_watches_fire_all(&lb->watches);
	}
	if (n < 0)
		return signalled ? signalled : -errno;
	for (int i = 0; i < n; i++)
		vmbus_watches_fire(&lb->watches, evs[i].data.u64);
	return signalled + n;
}

int vmbus_loopback_init(struct vmbus_loopback *lb, uint64_t ram_size, uint32_t nr_vps,
			const struct vmbus_server_config *cfg)
{
	memset(lb, 0, sizeof(*lb));
	vmbus_watches_init(&lb->watches, 0);
	lb->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lb->epfd < 0)
		return -errno;
	int rc = guest_mem_init(&lb->mem, ram_size);
	if (rc) {
		close(lb->epfd);
		return rc;
	}
	struct vmbus_server_config c = cfg ? *cfg : (struct vmbus_server_config){ 0 };
	c.mem = &lb->mem;
	c.nr_vps = nr_vps;
	struct vmbus_server_notifier n = {
		.ctx = lb, .post_to_guest = lb_post_to_guest, .signal_guest = lb_signal_guest, .tx_busy = lb_tx_busy,
		.channel_opened = lb_opened, .channel_closed = lb_closed, .watch_fd = lb_watch_fd,
		.unwatch_fd = lb_unwatch_fd, .work_pending = lb_work_pending,
	};
	rc = vmbus_server_create(&c, &n, &lb->srv);
	if (rc) {
		close(lb->epfd);
		guest_mem_destroy(&lb->mem);
		return rc;
	}
	lb->busy_limit = LB_QUEUE_MAX / 2;
	lb->alloc_base = lb->alloc_next = LB_ALLOC_BASE;
	lb->alloc_end = lb->mem.region[0].size;
	lb->ops = (struct vmbus_client_ops){
		.ctx = lb, .post_message = lbc_post, .next_message = lbc_next, .signal_event = lbc_signal,
		.alloc_pages = lbc_alloc, .free_pages = lbc_free, .virt_to_phys = lbc_v2p,
	};
	vmbus_client_init(&lb->cl, &lb->ops);
	return 0;
}

void vmbus_loopback_destroy(struct vmbus_loopback *lb)
{
	vmbus_server_destroy(lb->srv);
	close(lb->epfd);
	free(lb->q);
	guest_mem_destroy(&lb->mem);
	memset(lb, 0, sizeof(*lb));
}

bool vmbus_loopback_event_take(struct vmbus_loopback *lb, uint32_t relid)
{
	if (relid >= HV_EVENT_FLAGS_COUNT)
		return false;
	uint8_t bit = (uint8_t)(1u << (relid % 8));
	bool set = lb->events[relid / 8] & bit;
	lb->events[relid / 8] &= (uint8_t)~bit;
	return set;
}
