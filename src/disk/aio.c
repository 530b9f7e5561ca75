/* Asynchronous disk I/O over io_uring with a synchronous fallback worker (see aio.h). */
#include "disk/aio.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/disk.h"
#include "disk/drivers.h"
#include "util/log.h"

#define DIRECT_ALIGN 512u
#define STOP_TAG ((uint64_t)1)

struct disk_aio {
	struct io_uring ring;
	unsigned depth;
	pthread_mutex_t lock;       /* submission side; the counters and lists below */
	pthread_cond_t cond;
	unsigned in_ring;           /* SQEs submitted and not reaped */
	struct disk_aio_req *wait_head, *wait_tail; /* waiting for room in the ring */
	unsigned queued_sqes;       /* prepared, not yet submitted */
	uint64_t outstanding;       /* every request not yet completed */
	pthread_t reaper;
	/* fallback worker */
	pthread_t worker;
	pthread_cond_t wcond;
	struct disk_aio_req *fb_head, *fb_tail;
	bool stop;
};

bool disk_aio_is_native(const struct disk *d)
{
	return d && d->ops && !strcmp(d->ops->format, "raw") && d->fd >= 0;
}

int disk_aio_open_direct(const char *path, bool ro)
{
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	return fd < 0 ? -1 : fd;
}

static bool aligned(const struct disk_aio_req *r)
{
	if (r->off % DIRECT_ALIGN)
		return false;
	for (int i = 0; i < r->iovcnt; i++)
		if ((uintptr_t)r->iov[i].iov_base % DIRECT_ALIGN || r->iov[i].iov_len % DIRECT_ALIGN)
			return false;
	return true;
}

static void complete(struct disk_aio *a, struct disk_aio_req *r, int res)
{
	r->done(r, res);
	pthread_mutex_lock(&a->lock);
	a->outstanding--;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* Runs r synchronously (fallback worker, or a short/unaligned remainder on the reaper). */
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
		complete(a, r, run_sync(r));
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
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
		r->used_direct = r->direct_fd >= 0 && aligned(r);
		int fd = r->used_direct ? r->direct_fd : d->fd;
		if (r->op == DISK_AIO_READ)
			io_uring_prep_readv(sqe, fd, r->iov, (unsigned)r->iovcnt, r->off);
		else
			io_uring_prep_writev2(sqe, fd, r->iov, (unsigned)r->iovcnt, r->off, r->fua ? RWF_DSYNC : 0);
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
	pthread_mutex_lock(&a->lock);
	a->outstanding++;
	bool native = disk_aio_is_native(r->disk) && r->op != DISK_AIO_DISCARD &&
		      (r->op == DISK_AIO_FLUSH || r->iovcnt <= 1024);
	if (!native) {
		if (a->fb_tail)
			a->fb_tail->next = r;
		else
			a->fb_head = r;
		a->fb_tail = r;
		pthread_cond_signal(&a->wcond);
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

static void reap_one(struct disk_aio *a, struct disk_aio_req *r, int res)
{
	if (res == -EINVAL && r->used_direct) {
		/* The file system refused this O_DIRECT request after all: do it buffered. */
		r->direct_fd = -1;
		complete(a, r, run_sync(r));
		return;
	}
	if (r->op == DISK_AIO_FLUSH) {
		complete(a, r, res < 0 ? res : 0);
		return;
	}
	if (res < 0) {
		complete(a, r, res);
		return;
	}
	r->done_bytes += (uint64_t)res;
	if (r->done_bytes >= r->len) {
		complete(a, r, 0);
		return;
	}
	if (res == 0) { /* EOF inside the disk: the image shrank under us */
		complete(a, r, -EIO);
		return;
	}
	/* A short transfer (rare): finish it synchronously on this thread. */
	int rc = run_sync(r);
	complete(a, r, rc);
}

static void *reaper_main(void *arg)
{
	struct disk_aio *a = arg;
	for (;;) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&a->ring, &cqe);
		if (rc == -EINTR || rc == -EAGAIN)
			continue;
		if (rc < 0) {
			log_error("disk aio: io_uring_wait_cqe: %s", strerror(-rc));
			break;
		}
		uint64_t tag = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&a->ring, cqe);
		if (tag == STOP_TAG)
			break;
		struct disk_aio_req *r = (struct disk_aio_req *)(uintptr_t)tag;
		pthread_mutex_lock(&a->lock);
		a->in_ring--;
		/* Room again: move waiting requests into the ring. */
		while (a->wait_head && prep_locked(a, a->wait_head)) {
			a->wait_head = a->wait_head->next;
			if (!a->wait_head)
				a->wait_tail = NULL;
		}
		submit_locked(a);
		pthread_mutex_unlock(&a->lock);
		reap_one(a, r, res);
	}
	return NULL;
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
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	pthread_cond_init(&a->wcond, NULL);
	if (pthread_create(&a->reaper, NULL, reaper_main, a)) {
		io_uring_queue_exit(&a->ring);
		free(a);
		return -EAGAIN;
	}
	if (pthread_create(&a->worker, NULL, worker_main, a)) {
		a->stop = true;
		disk_aio_destroy(a);
		return -EAGAIN;
	}
	*out = a;
	return 0;
}

void disk_aio_destroy(struct disk_aio *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	submit_locked(a);
	while (a->outstanding)
		pthread_cond_wait(&a->cond, &a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->wcond);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a->ring);
	if (sqe) {
		io_uring_prep_nop(sqe);
		sqe->user_data = STOP_TAG;
		io_uring_submit(&a->ring);
	}
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->reaper, NULL);
	if (a->worker)
		pthread_join(a->worker, NULL);
	io_uring_queue_exit(&a->ring);
	pthread_cond_destroy(&a->wcond);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
