/* Asynchronous disk I/O: io_uring for raw images and block devices, a worker thread for the rest.
 *
 * One struct disk_aio per queue (storvsp: per VMBus channel). Requests are queued from any thread (a
 * short mutex guards the queue) and go straight into the queue's io_uring from the submitting thread
 * (readv/writev, O_DIRECT when the request is aligned and a direct fd is given, RWF_DSYNC for FUA,
 * fsync(DATASYNC) for flush). There is no completion thread: the owner watches disk_aio_event_fd
 * (an eventfd registered with the ring) and calls disk_aio_poll on its own thread, where the done
 * callbacks then run. Everything else (VHD/VHDX, discards, an O_DIRECT request the file system
 * refused, a short transfer's remainder) runs through struct disk_ops on a fallback worker thread,
 * whose done callbacks run there. Neither submitting nor polling ever waits for the disk.
 */
#ifndef GEN2VM_DISK_AIO_H
#define GEN2VM_DISK_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct disk;
struct disk_aio;

enum disk_aio_op { DISK_AIO_READ, DISK_AIO_WRITE, DISK_AIO_FLUSH, DISK_AIO_DISCARD };

struct disk_aio_range {
	uint64_t off, len;
};

struct disk_aio_req {
	enum disk_aio_op op;
	struct disk *disk;
	uint64_t off, len;           /* READ/WRITE: len = total of iov */
	const struct iovec *iov;
	int iovcnt;
	bool fua;                    /* WRITE: durable on completion */
	const struct disk_aio_range *ranges; /* DISCARD */
	uint32_t nr_ranges;
	/* Called once, with 0 or -errno (a short transfer is -EIO): on the thread calling disk_aio_poll
	 * (io_uring) or on the fallback worker. Must not call disk_aio_destroy. */
	void (*done)(struct disk_aio_req *r, int res);
	/* private */
	struct disk_aio_req *next;
	uint64_t done_bytes;
	bool used_direct;
};

/* Creates a queue with room for depth requests in flight in io_uring (more are queued). 0 or -errno. */
int disk_aio_create(unsigned depth, struct disk_aio **out);

/* Waits for every queued request to complete (polling the ring itself), stops the worker, frees.
 * The owner must have stopped watching the event fd. NULL is fine. */
void disk_aio_destroy(struct disk_aio *a);

/* An eventfd that the ring signals on every completion. Watch it edge-triggered (EPOLLET) or read it
 * yourself: disk_aio_poll does not read it. Valid until disk_aio_destroy. */
int disk_aio_event_fd(const struct disk_aio *a);

/* Reaps every io_uring completion (never blocks): runs their done callbacks on this thread, then
 * moves waiting requests into the ring and submits them. Returns how many completed. Any thread;
 * concurrent calls are serialised. */
unsigned disk_aio_poll(struct disk_aio *a);

/* For a thread that must wait for completions itself (closing down): disk_aio_poll, and when nothing
 * completed, waits up to timeout_ms for the event fd (a request on the fallback worker signals
 * nothing: the timeout bounds that wait). Returns how many completed. */
unsigned disk_aio_poll_wait(struct disk_aio *a, int timeout_ms);

/* Queues r (r stays owned by the caller until done runs). Call disk_aio_kick after a batch. */
void disk_aio_queue(struct disk_aio *a, struct disk_aio_req *r);
/* Submits what was queued. */
void disk_aio_kick(struct disk_aio *a);

/* True when req can go through io_uring (a flat raw image). */
bool disk_aio_is_native(const struct disk *d);

#endif
