#include "vmbus/host.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "util/log.h"
#include "vmbus/watch.h"

#define VMBUS_SINT 2
#define MAX_DOORBELLS 2048
#define RETRY_MS 10
#define TX_BUSY_LIMIT (HV_SYNIC_QUEUE_MAX / 2)
#define WATCH_TAG (1ull << 40) /* epoll tags of the watch slots: above every doorbell's relid */
#define TAG_STOP UINT64_MAX
#define TAG_TIMER (UINT64_MAX - 1)
#define TAG_WORK (UINT64_MAX - 2)

struct doorbell {
	int efd;
	uint32_t connection_id;
};

struct vmbus_host {
	pthread_mutex_t lock;
	struct vmbus_server *srv;
	struct hv_partition *hv;
	const struct guest_mem *mem;
	struct kvm_vm *kvm;
	int epfd, timerfd, stopfd;
	/* timerfd ticks every RETRY_MS only while messages wait in the SynIC queues (a safety net: the
	 * guest's EOM moves them on); an idle VM's service thread sleeps. */
	atomic_bool retry_armed;
	int workfd; /* notifier.work_pending: a device left work for vmbus_server_run_deferred */
	pthread_t thread;
	bool thread_started;
	struct doorbell bells[MAX_DOORBELLS]; /* indexed by relid */
	/* Device fds (I/O completions) serviced on the same thread. Callbacks run under watch_lock, not
	 * the server lock, so that unwatch_fd can guarantee none is running when it returns. */
	pthread_mutex_t watch_lock;
	struct vmbus_watches watches;
};

/* Arms the retry timer when messages wait and it is not armed. Any thread. */
static void host_retry_arm(struct vmbus_host *h)
{
	atomic_thread_fence(memory_order_seq_cst); /* the queue's length after the flag (see host_thread) */
	if (h->timerfd < 0 || !hv_synic_queued(h->hv) || atomic_exchange(&h->retry_armed, true))
		return;
	struct itimerspec its = { .it_interval = { 0, RETRY_MS * 1000000L }, .it_value = { 0, RETRY_MS * 1000000L } };
	timerfd_settime(h->timerfd, 0, &its, NULL);
}

/* ---- notifier (called with the server lock held, except signal_guest) ---- */

static int host_post_to_guest(void *ctx, uint32_t vp, const void *msg, uint32_t len)
{
	struct vmbus_host *h = ctx;
	int r = hv_synic_post(h->hv, vp, VMBUS_SINT, HVMSG_VMBUS, msg, len);
	host_retry_arm(h); /* the slot was busy: queued until the guest's EOM */
	return r;
}

static void host_signal_guest(void *ctx, uint32_t vp, uint32_t relid)
{
	struct vmbus_host *h = ctx;
	hv_synic_signal(h->hv, vp, VMBUS_SINT, relid);
}

static bool host_tx_busy(void *ctx)
{
	struct vmbus_host *h = ctx;
	return hv_synic_queued(h->hv) > TX_BUSY_LIMIT;
}

static void host_channel_opened(void *ctx, uint32_t relid, uint32_t conn)
{
	struct vmbus_host *h = ctx;
	if (!h->kvm || relid >= MAX_DOORBELLS || h->bells[relid].efd >= 0)
		return;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return;
	if (kvm_vm_ioeventfd(h->kvm, efd, HV_SIGNAL_PORT, 4, true, conn, true) < 0) {
		close(efd); /* signals still arrive, as port exits */
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = relid };
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, efd, &ev);
	h->bells[relid] = (struct doorbell){ efd, conn };
}

static void host_channel_closed(void *ctx, uint32_t relid, uint32_t conn)
{
	struct vmbus_host *h = ctx;
	if (relid >= MAX_DOORBELLS || h->bells[relid].efd < 0)
		return;
	struct doorbell *b = &h->bells[relid];
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, b->efd, NULL);
	kvm_vm_ioeventfd(h->kvm, b->efd, HV_SIGNAL_PORT, 4, true, b->connection_id, false);
	close(b->efd);
	b->efd = -1;
}

static void host_work_pending(void *ctx)
{
	struct vmbus_host *h = ctx;
	uint64_t one = 1;
	if (write(h->workfd, &one, sizeof(one)) != sizeof(one)) {
		/* the counter is saturated: the service thread has the work to do anyway */
	}
}

static int host_watch_fd(void *ctx, int fd, void (*cb)(void *arg), void *arg)
{
	struct vmbus_host *h = ctx;
	pthread_mutex_lock(&h->watch_lock);
	int rc = vmbus_watches_add(&h->watches, h->epfd, fd, cb, arg);
	pthread_mutex_unlock(&h->watch_lock);
	return rc;
}

static void host_unwatch_fd(void *ctx, int fd)
{
	struct vmbus_host *h = ctx;
	pthread_mutex_lock(&h->watch_lock);
	vmbus_watches_del(&h->watches, h->epfd, fd);
	pthread_mutex_unlock(&h->watch_lock);
}

/* ---- service thread ---- */

static void *host_thread(void *arg)
{
	struct vmbus_host *h = arg;
	pthread_setname_np(pthread_self(), "vmbus"); /* named in /proc (bench/console) */
	struct epoll_event evs[32];
	for (;;) {
		int n = epoll_wait(h->epfd, evs, 32, -1);
		if (n < 0 && errno == EINTR) {
			/* io_uring completes I/O submitted from this thread through task work, which
			 * interrupts the wait and has posted the CQEs by the time we are back: poll the
			 * watches now instead of another epoll_wait for their eventfds. */
			pthread_mutex_lock(&h->watch_lock);
			vmbus_watches_fire_all(&h->watches);
			pthread_mutex_unlock(&h->watch_lock);
			continue;
		}
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64, v;
			if (tag == TAG_STOP)
				return NULL;
			if (tag == TAG_WORK) {
				if (read(h->workfd, &v, sizeof(v)) > 0) {
					pthread_mutex_lock(&h->lock);
					vmbus_server_run_deferred(h->srv);
					pthread_mutex_unlock(&h->lock);
				}
				continue;
			}
			if (tag == TAG_TIMER) {
				/* Under the lock, so that a quiet host (a save) delivers nothing meanwhile. */
				if (read(h->timerfd, &v, sizeof(v)) > 0 && hv_synic_queued(h->hv)) {
					pthread_mutex_lock(&h->lock);
					hv_synic_poll(h->hv);
					pthread_mutex_unlock(&h->lock);
				}
				if (!hv_synic_queued(h->hv)) {
					/* Nothing waits: stop ticking. Disarmed before the flag is cleared, and
					 * the queues looked at again after it, so a post meanwhile re-arms. */
					struct itimerspec off = { 0 };
					timerfd_settime(h->timerfd, 0, &off, NULL);
					atomic_store(&h->retry_armed, false);
					host_retry_arm(h);
				}
				continue;
			}
			if (tag >= WATCH_TAG) {
				pthread_mutex_lock(&h->watch_lock);
				vmbus_watches_fire(&h->watches, tag);
				pthread_mutex_unlock(&h->watch_lock);
				continue;
			}
			pthread_mutex_lock(&h->lock);
			struct doorbell *b = tag < MAX_DOORBELLS ? &h->bells[tag] : NULL;
			if (b && b->efd >= 0 && read(b->efd, &v, sizeof(v)) > 0)
				vmbus_server_signal_event(h->srv, b->connection_id);
			pthread_mutex_unlock(&h->lock);
		}
	}
	return NULL;
}

int vmbus_host_create(struct vmbus_host **out, const struct guest_mem *mem, struct hv_partition *hv,
		      struct kvm_vm *kvm)
{
	struct vmbus_host *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->watch_lock, NULL);
	vmbus_watches_init(&h->watches, WATCH_TAG);
	h->hv = hv;
	h->mem = mem;
	h->kvm = kvm;
	h->epfd = h->timerfd = h->stopfd = h->workfd = -1;
	for (unsigned i = 0; i < MAX_DOORBELLS; i++)
		h->bells[i].efd = -1;
	struct vmbus_server_config cfg = { .mem = mem, .nr_vps = hv->nr_vps };
	struct vmbus_server_notifier n = {
		.ctx = h, .post_to_guest = host_post_to_guest, .signal_guest = host_signal_guest,
		.tx_busy = host_tx_busy, .channel_opened = host_channel_opened, .channel_closed = host_channel_closed,
		.watch_fd = host_watch_fd, .unwatch_fd = host_unwatch_fd, .work_pending = host_work_pending,
	};
	int r = vmbus_server_create(&cfg, &n, &h->srv);
	if (r)
		goto fail;
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	h->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->workfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->epfd < 0 || h->timerfd < 0 || h->stopfd < 0 || h->workfd < 0) {
		r = -errno;
		goto fail;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_TIMER };
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->timerfd, &ev);
	ev.data.u64 = TAG_STOP;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->stopfd, &ev);
	ev.data.u64 = TAG_WORK;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->workfd, &ev);
	if ((r = -pthread_create(&h->thread, NULL, host_thread, h)))
		goto fail;
	h->thread_started = true;
	*out = h;
	return 0;
fail:
	vmbus_host_destroy(h);
	return r;
}

void vmbus_host_destroy(struct vmbus_host *h)
{
	if (!h)
		return;
	if (h->thread_started) {
		uint64_t one = 1;
		if (write(h->stopfd, &one, sizeof(one)) != sizeof(one))
			log_error("vmbus: cannot stop the service thread");
		pthread_join(h->thread, NULL);
	}
	pthread_mutex_lock(&h->lock);
	vmbus_server_destroy(h->srv); /* closes channels: doorbells go through channel_closed */
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < MAX_DOORBELLS; i++)
		if (h->bells[i].efd >= 0)
			close(h->bells[i].efd);
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->timerfd >= 0)
		close(h->timerfd);
	if (h->stopfd >= 0)
		close(h->stopfd);
	if (h->workfd >= 0)
		close(h->workfd);
	pthread_mutex_destroy(&h->watch_lock);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

struct vmbus_server *vmbus_host_server(struct vmbus_host *h)
{
	return h->srv;
}

void vmbus_host_lock(struct vmbus_host *h)
{
	pthread_mutex_lock(&h->lock);
}

void vmbus_host_unlock(struct vmbus_host *h)
{
	pthread_mutex_unlock(&h->lock);
}

void vmbus_host_quiet(struct vmbus_host *h)
{
	/* The order every device callback that watches an fd takes them in (server lock, then the
	 * watch lock). */
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&h->watch_lock);
}

void vmbus_host_unquiet(struct vmbus_host *h)
{
	pthread_mutex_unlock(&h->watch_lock);
	pthread_mutex_unlock(&h->lock);
}

pthread_mutex_t *vmbus_host_mutex(struct vmbus_host *h)
{
	return &h->lock;
}

uint16_t vmbus_host_post_message(struct vmbus_host *h, uint32_t vp, uint64_t gpa)
{
	/* The TLFS requires the input to be 8-byte aligned and not to cross a page. */
	if ((gpa & 7) || (gpa & 0xfff) + sizeof(struct hv_input_post_message) > 4096)
		return HV_STATUS_INVALID_ALIGNMENT;
	struct hv_input_post_message in;
	if (guest_mem_read(h->mem, gpa, &in, sizeof(in)))
		return HV_STATUS_INVALID_PARAMETER;
	pthread_mutex_lock(&h->lock);
	uint16_t st = vmbus_server_post_message(h->srv, vp, in.connection_id & HV_CONNECTION_ID_MASK, in.message_type,
						in.payload, in.payload_size);
	pthread_mutex_unlock(&h->lock);
	return st;
}

uint16_t vmbus_host_signal_event(struct vmbus_host *h, uint32_t connection_id)
{
	pthread_mutex_lock(&h->lock);
	uint16_t st = vmbus_server_signal_event(h->srv, connection_id & HV_CONNECTION_ID_MASK);
	pthread_mutex_unlock(&h->lock);
	return st;
}

static void host_signal_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct vmbus_host *h = opaque;
	if (!is_write || len != 4)
		return;
	uint32_t conn;
	memcpy(&conn, data, 4);
	vmbus_host_signal_event(h, conn);
}

int vmbus_host_attach_signal_port(struct vmbus_host *h, struct bus *pio)
{
	return bus_register(pio, HV_SIGNAL_PORT, 4, host_signal_io, h, "hv-signal");
}
