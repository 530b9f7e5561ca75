/* Asynchronous disk I/O over io_uring with a synchronous fallback worker (see aio.h). */
#include "disk/aio.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "disk/disk.h"
#include "disk/drivers.h"
#include "util/log.h"

#define REAP_BATCH 64u

struct disk_aio {
	struct io_uring ring;
	unsigned depth;
	int efd;                    /* registered with the ring: one count per completion */
	pthread_mutex_t lock;       /* the ring (both queues), the lists and counters below */
	unsigned in_ring;           /* SQEs submitted and not reaped */
	unsigned queued_sqes;       /* prepared, not yet submitted */
	struct disk_aio_req *wait_head, *wait_tail; /* waiting for room in the ring */
	atomic_uint_fast64_t outstanding; /* every request not yet completed */
	/* fallback worker */
	pthread_t worker;
	bool worker_started;
	pthread_cond_t wcond;
	struct disk_aio_req *fb_head, *fb_tail;
	bool stop;
};

bool disk_aio_is_native(const struct disk *d)
{
	return d && d->ops && !strcmp(d->ops->format, "raw") && d->fd >= 0;
}

int disk_aio_event_fd(const struct disk_aio *a)
{
	return a->efd;
}

/* Runs r synchronously on the fallback worker (from done_bytes on, after a short transfer). */
static int run_sync(struct disk_aio_req *r)
{
	struct disk *d = r->disk;
	int rc = 0;
	switch (r->op) {
	case DISK_AIO_READ:
	case DISK_AIO_WRITE: {
		struct iovec sub[1024];
		const struct iovec *iov = r->iov;
		int cnt = r->iovcnt;
		if (r->done_bytes) {
			if (r->iovcnt > 1024)
				return -EIO;
			cnt = disk_iov_sub(r->iov, r->iovcnt, r->done_bytes, r->len - r->done_bytes, sub);
			iov = sub;
		}
		uint64_t off = r->off + r->done_bytes;
		rc = r->op == DISK_AIO_READ ? d->ops->readv(d, off, iov, cnt) : d->ops->writev(d, off, iov, cnt);
		if (!rc && r->op == DISK_AIO_WRITE && r->fua)
			rc = d->ops->flush(d);
		break;
	}
	case DISK_AIO_FLUSH:
		rc = d->ops->flush(d);
		break;
	case DISK_AIO_DISCARD:
		for (uint32_t i = 0; i < r->nr_ranges && !rc; i++)
			rc = d->ops->discard ? d->ops->discard(d, r->ranges[i].off, r->ranges[i].len) : 0;
		if (rc == -EOPNOTSUPP)
			rc = 0;
		break;
	}
	return rc;
}

static void *worker_main(void *arg)
{
	struct disk_aio *a = arg;
	pthread_setname_np(pthread_self(), "aio-fallback"); /* named in /proc (bench/console) */
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->fb_head && !a->stop)
			pthread_cond_wait(&a->wcond, &a->lock);
		struct disk_aio_req *r = a->fb_head;
		if (!r)
			break;
		a->fb_head = r->next;
		if (!a->fb_head)
			a->fb_tail = NULL;
		pthread_mutex_unlock(&a->lock);
		r->done(r, run_sync(r));
		atomic_fetch_sub(&a->outstanding, 1);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* With a->lock held: hands r to the fallback worker. */
static void fallback_locked(struct disk_aio *a, struct disk_aio_req *r)
{
	r->next = NULL;
	if (a->fb_tail)
		a->fb_tail->next = r;
	else
		a->fb_head = r;
	a->fb_tail = r;
	pthread_cond_signal(&a->wcond);
}

/* With a->lock held: puts r into an SQE if there is room. */
static bool prep_locked(struct disk_aio *a, struct disk_aio_req *r)
{
	if (a->in_ring + a->queued_sqes >= a->depth)
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
	if (!sqe)
		return false;
	struct disk *d = r->disk;
	switch (r->op) {
	case DISK_AIO_READ:
	case DISK_AIO_WRITE: {
		r->used_direct = disk_direct_aligned(d, r->iov, r->iovcnt, r->off);
		int fd = r->used_direct ? d->direct_fd : d->fd;
		if (r->iovcnt == 1 && r->iov[0].iov_len <= UINT32_MAX) {
			/* One buffer (most requests): the plain form spares the kernel importing an iovec. */
			if (r->op == DISK_AIO_READ)
				io_uring_prep_read(sqe, fd, r->iov[0].iov_base, (unsigned)r->iov[0].iov_len, r->off);
			else
				io_uring_prep_write(sqe, fd, r->iov[0].iov_base, (unsigned)r->iov[0].iov_len, r->off);
			sqe->rw_flags = r->op == DISK_AIO_WRITE && r->fua ? RWF_DSYNC : 0;
		} else if (r->op == DISK_AIO_READ) {
			io_uring_prep_readv(sqe, fd, r->iov, (unsigned)r->iovcnt, r->off);
		} else {
			io_uring_prep_writev2(sqe, fd, r->iov, (unsigned)r->iovcnt, r->off, r->fua ? RWF_DSYNC : 0);
		}
		break;
	}
	case DISK_AIO_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		return false;
	}
	io_uring_sqe_set_data(sqe, r);
	a->queued_sqes++;
	return true;
}

static void submit_locked(struct disk_aio *a)
{
	if (!a->queued_sqes)
		return;
	int n = io_uring_submit(&a->ring);
	if (n > 0) {
		a->in_ring += (unsigned)n;
		a->queued_sqes -= (unsigned)n < a->queued_sqes ? (unsigned)n : a->queued_sqes;
	}
}

void disk_aio_queue(struct disk_aio *a, struct disk_aio_req *r)
{
	r->next = NULL;
	r->done_bytes = 0;
	r->used_direct = false;
	atomic_fetch_add(&a->outstanding, 1);
	bool native = disk_aio_is_native(r->disk) && r->op != DISK_AIO_DISCARD &&
		      (r->op == DISK_AIO_FLUSH || r->iovcnt <= 1024);
	pthread_mutex_lock(&a->lock);
	if (!native) {
		fallback_locked(a, r);
	} else if (a->wait_head || !prep_locked(a, r)) {
		if (a->wait_tail)
			a->wait_tail->next = r;
		else
			a->wait_head = r;
		a->wait_tail = r;
	}
	pthread_mutex_unlock(&a->lock);
}

void disk_aio_kick(struct disk_aio *a)
{
	pthread_mutex_lock(&a->lock);
	submit_locked(a);
	pthread_mutex_unlock(&a->lock);
}

/* One io_uring completion: true when r is done (its callback ran), false when the rest went to the
 * fallback worker. */
static bool reap_one(struct disk_aio *a, struct disk_aio_req *r, int res)
{
	int rc = 0;
	if (res == -EINVAL && r->used_direct) {
		/* The file system refused this O_DIRECT request after all: on the worker, whose
		 * synchronous path retries it buffered. */
		goto slow;
	}
	if (r->op == DISK_AIO_FLUSH || res < 0) {
		rc = res < 0 ? res : 0;
	} else {
		r->done_bytes += (uint64_t)res;
		if (r->done_bytes < r->len) {
			if (res == 0) /* EOF inside the disk: the image shrank under us */
				rc = -EIO;
			else
				goto slow; /* a short transfer (rare): the remainder on the worker */
		}
	}
	r->done(r, rc);
	return true;
slow:
	pthread_mutex_lock(&a->lock);
	fallback_locked(a, r);
	pthread_mutex_unlock(&a->lock);
	return false;
}

unsigned disk_aio_poll(struct disk_aio *a)
{
	unsigned total = 0;
	for (;;) {
		struct {
			struct disk_aio_req *r;
			int res;
		} got[REAP_BATCH];
		unsigned n = 0, head;
		struct io_uring_cqe *cqe;
		pthread_mutex_lock(&a->lock);
		io_uring_for_each_cqe(&a->ring, head, cqe) {
			if (n == REAP_BATCH)
				break;
			got[n].r = (struct disk_aio_req *)(uintptr_t)cqe->user_data;
			got[n].res = cqe->res;
			n++;
		}
		if (n) {
			io_uring_cq_advance(&a->ring, n);
			a->in_ring -= n;
			/* Room again: move waiting requests into the ring. */
			while (a->wait_head && prep_locked(a, a->wait_head)) {
				a->wait_head = a->wait_head->next;
				if (!a->wait_head)
					a->wait_tail = NULL;
			}
			submit_locked(a);
		}
		pthread_mutex_unlock(&a->lock);
		unsigned finished = 0;
		for (unsigned i = 0; i < n; i++)
			finished += reap_one(a, got[i].r, got[i].res);
		atomic_fetch_sub(&a->outstanding, finished);
		total += finished;
		if (n < REAP_BATCH)
			return total;
	}
}

unsigned disk_aio_poll_wait(struct disk_aio *a, int timeout_ms)
{
	unsigned n = disk_aio_poll(a);
	if (!n) {
		struct pollfd pfd = { .fd = a->efd, .events = POLLIN };
		uint64_t v;
		if (poll(&pfd, 1, timeout_ms) > 0 && read(a->efd, &v, sizeof(v)) < 0)
			log_debug("disk aio: completion eventfd: %s", strerror(errno));
	}
	return n;
}

int disk_aio_create(unsigned depth, struct disk_aio **out)
{
	struct disk_aio *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	if (!depth)
		depth = 128;
	a->depth = depth;
	struct io_uring_params p = { 0 };
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = depth * 2;
	int rc = io_uring_queue_init_params(depth, &a->ring, &p);
	if (rc < 0) {
		log_error("disk aio: cannot create an io_uring: %s", strerror(-rc));
		free(a);
		return rc;
	}
	a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = a->efd < 0 ? -errno : io_uring_register_eventfd(&a->ring, a->efd);
	if (rc < 0) {
		log_error("disk aio: cannot register a completion eventfd: %s", strerror(-rc));
		if (a->efd >= 0)
			close(a->efd);
		io_uring_queue_exit(&a->ring);
		free(a);
		return rc;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wcond, NULL);
	atomic_init(&a->outstanding, 0);
	if (pthread_create(&a->worker, NULL, worker_main, a)) {
		disk_aio_destroy(a);
		return -EAGAIN;
	}
	a->worker_started = true;
	*out = a;
	return 0;
}

void disk_aio_destroy(struct disk_aio *a)
{
	if (!a)
		return;
	disk_aio_kick(a);
	/* Nobody else polls any more: drive the ring until every request has completed. */
	while (atomic_load(&a->outstanding))
		disk_aio_poll_wait(a, 10);
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->wcond);
	pthread_mutex_unlock(&a->lock);
	if (a->worker_started)
		pthread_join(a->worker, NULL);
	io_uring_queue_exit(&a->ring);
	close(a->efd);
	pthread_cond_destroy(&a->wcond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
