/* storvsp throughput against the raw file read directly with io_uring.
 *
 * The loopback guest drives a storvsp controller (one disk: a raw file opened by storvsp with
 * O_DIRECT for aligned requests) at a fixed queue depth: 4 KiB random reads and writes at QD 1 and
 * 32, 1 MiB sequential reads and writes at QD 8. The peer is the same file opened with O_DIRECT and
 * driven by io_uring at the same depth with the same offsets. Prints IOPS, MB/s and the ratio
 * (target >= 0.95). BENCH_FILE=path uses another file or block device (default: a 256 MiB file in
 * /tmp, written in full first so reads hit real blocks, not unwritten extents); BENCH_SECS sets the
 * time per run (default 1), BENCH_RUNS the runs per case (default 5; the median is reported, with
 * the range of the ratios); BENCH_CASE=text runs only the cases whose name contains it.
 *
 * Both sides run on one thread and block while waiting, neither spins: the peer in
 * io_uring_wait_cqe, the storvsp side in epoll_wait on the watched completion eventfd (the loopback
 * stands in for the VMBus service thread), after which storvsp writes the replies to the ring and
 * the client reads them. The client's doorbells reach storvsp when the client waits (the loopback's
 * defer_signals), as a VM's reach the service thread after the guest's burst: delivered inline, each
 * request would go to io_uring alone while the peer submits its batch in one call. The storvsp side thus pays everything but guest exits: building the
 * GPA_DIRECT packet, the ring, the SRB decode, the SCSI core, mapping guest pages, and the replies.
 * Both sides use the same data buffers (guest RAM).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "support/storvsc_guest.h"
#include "devices/storvsp.h"
#include "util/clock.h"
#include "util/log.h"

#define FILE_BYTES (256ull << 20)

static double now(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_off(bool seq, uint64_t *pos, uint32_t bs, uint64_t size)
{
	if (seq) {
		uint64_t o = *pos;
		*pos = (*pos + bs) % (size - size % bs);
		return o;
	}
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng % (size / bs)) * bs;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts a copy). */
static double median(const double *v, int n)
{
	double t[15];
	memcpy(t, v, (size_t)n * sizeof(*t));
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

struct result {
	double iops, mbs;
};

static struct result run_storvsp(struct storvsc_guest *g, uint8_t *bufs, bool write, bool seq, uint32_t bs,
				 uint32_t qd, double secs, uint64_t size)
{
	uint64_t pos = 0, done = 0;
	uint32_t inflight = 0;
	double t0 = now(), end = t0 + secs;
	uint64_t id = 1;
	g->manual_wait = true; /* block in storvsc_guest_wait below instead of polling */
	g->lb->defer_signals = true; /* storvsp sees the burst, as the service thread does in a VM */
	uint32_t slot_free[64];
	uint32_t nfree = qd;
	for (uint32_t i = 0; i < qd; i++)
		slot_free[i] = i;
	for (;;) {
		bool stop = now() >= end;
		while (!stop && nfree) {
			uint32_t slot = slot_free[nfree - 1];
			uint64_t off = next_off(seq, &pos, bs, size);
			uint64_t lba = off / 512;
			uint32_t blocks = bs / 512;
			struct storvsc_io io = { .cdb_len = 16, .data_in = write ? 0 : 1, .data = bufs + (size_t)slot * bs,
						 .len = bs };
			io.cdb[0] = write ? 0x8A : 0x88;
			for (int i = 0; i < 8; i++)
				io.cdb[2 + i] = (uint8_t)(lba >> (56 - 8 * i));
			for (int i = 0; i < 4; i++)
				io.cdb[10 + i] = (uint8_t)(blocks >> (24 - 8 * i));
			if (storvsc_guest_submit(g, 0, &io, (id << 8) | slot))
				break;
			id++;
			nfree--;
			inflight++;
		}
		if (stop && !inflight)
			break;
		struct storvsc_io io;
		uint64_t rid;
		uint32_t got = 0;
		while (storvsc_guest_reap(g, 0, &io, &rid) == 0) {
			if (io.srb_status != SRB_STATUS_SUCCESS) {
				fprintf(stderr, "bench: I/O failed (srb %#x)\n", io.srb_status);
				exit(1);
			}
			slot_free[nfree++] = (uint32_t)(rid & 0xFF);
			inflight--;
			done++;
			got++;
		}
		if (!got && inflight && storvsc_guest_wait(g, 5000)) {
			fprintf(stderr, "bench: waiting for completions failed\n");
			exit(1);
		}
	}
	g->manual_wait = false;
	g->lb->defer_signals = false;
	double t = now() - t0;
	return (struct result){ done / t, done * (double)bs / t / 1e6 };
}

static struct result run_uring(int fd, uint8_t *bufs, bool write, bool seq, uint32_t bs, uint32_t qd, double secs,
			       uint64_t size)
{
	struct io_uring ring;
	if (io_uring_queue_init(64, &ring, 0)) {
		fprintf(stderr, "bench: io_uring_queue_init failed\n");
		exit(1);
	}
	uint64_t pos = 0, done = 0;
	uint32_t inflight = 0, slot_free[64], nfree = qd;
	for (uint32_t i = 0; i < qd; i++)
		slot_free[i] = i;
	double t0 = now(), end = t0 + secs;
	for (;;) {
		bool stop = now() >= end;
		uint32_t queued = 0;
		while (!stop && nfree) {
			uint32_t slot = slot_free[--nfree];
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			uint64_t off = next_off(seq, &pos, bs, size);
			if (write)
				io_uring_prep_write(sqe, fd, bufs + (size_t)slot * bs, bs, off);
			else
				io_uring_prep_read(sqe, fd, bufs + (size_t)slot * bs, bs, off);
			sqe->user_data = slot;
			queued++;
			inflight++;
		}
		if (queued)
			io_uring_submit(&ring);
		if (stop && !inflight)
			break;
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe))
			continue;
		do {
			if (cqe->res != (int)bs) {
				fprintf(stderr, "bench: io_uring I/O failed: %d\n", cqe->res);
				exit(1);
			}
			slot_free[nfree++] = (uint32_t)cqe->user_data;
			inflight--;
			done++;
			io_uring_cqe_seen(&ring, cqe);
		} while (io_uring_peek_cqe(&ring, &cqe) == 0);
	}
	io_uring_queue_exit(&ring);
	double t = now() - t0;
	return (struct result){ done / t, done * (double)bs / t / 1e6 };
}

int main(void)
{
	const char *path = getenv("BENCH_FILE");
	char tmp[] = "/tmp/g2vm-bench-storvsp-XXXXXX";
	double secs = getenv("BENCH_SECS") ? atof(getenv("BENCH_SECS")) : 1.0;
	int runs = getenv("BENCH_RUNS") ? atoi(getenv("BENCH_RUNS")) : 5;
	if (runs < 1 || runs > 15)
		runs = 5;
	bool own = !path;
	if (own) {
		int fd = mkstemp(tmp);
		static uint8_t chunk[1 << 20];
		memset(chunk, 0xC3, sizeof(chunk));
		for (uint64_t off = 0; fd >= 0 && off < FILE_BYTES; off += sizeof(chunk))
			if (pwrite(fd, chunk, sizeof(chunk), (off_t)off) != (ssize_t)sizeof(chunk)) {
				close(fd);
				fd = -1;
			}
		if (fd < 0 || fsync(fd)) {
			fprintf(stderr, "bench: cannot create %s: %s\n", tmp, strerror(errno));
			return 1;
		}
		close(fd);
		path = tmp;
	}
	struct vmbus_loopback lb;
	struct storvsp *sv;
	struct storvsc_guest g;
	struct storvsp_disk_opts o = { .path = path };
	if (vmbus_loopback_init(&lb, 512ull << 20, 1, NULL) || storvsp_create(lb.srv, &lb.mem, 0, 0, &sv) ||
	    storvsp_attach(sv, 0, &o) || vmbus_client_connect(&lb.cl, 0, 0) || vmbus_client_request_offers(&lb.cl) ||
	    storvsc_guest_open(&g, &lb, 1, 0)) {
		fprintf(stderr, "bench: setup failed\n");
		return 1;
	}
	uint8_t *gbufs = storvsc_guest_alloc(&g, 32u << 20);
	/* The peer uses the same buffers: guest RAM (a memfd mapping) pins for O_DIRECT much faster than
	 * a malloc'd buffer on this kind of host (1 MiB reads differed 2x), which is not what we measure. */
	uint8_t *hbufs = gbufs;
	memset(gbufs, 0x5A, 32u << 20);
	int dfd = open(path, O_RDWR | O_DIRECT);
	bool direct = dfd >= 0; /* storvsp falls back to buffered I/O on the same condition */
	if (dfd < 0)
		dfd = open(path, O_RDWR);
	struct stat st;
	fstat(dfd, &st);
	uint64_t size = st.st_size ? (uint64_t)st.st_size : FILE_BYTES;
	struct { const char *name; bool write, seq; uint32_t bs, qd; } cases[] = {
		{ "4K randread  QD1 ", false, false, 4096, 1 },   { "4K randwrite QD1 ", true, false, 4096, 1 },
		{ "4K randread  QD32", false, false, 4096, 32 },  { "4K randwrite QD32", true, false, 4096, 32 },
		{ "1M seqread   QD8 ", false, true, 1 << 20, 8 }, { "1M seqwrite  QD8 ", true, true, 1 << 20, 8 },
	};
	printf("storvsp (loopback guest, one thread, blocking waits) vs io_uring (one thread, io_uring_wait_cqe)\n"
	       "on %s (%s, same offsets), %d alternating runs of %.1f s per case; medians, ratio range\n",
	       path, direct ? "O_DIRECT" : "buffered: no O_DIRECT there", runs, secs);
	printf("%-18s %12s %10s | %12s %10s | %6s %13s\n", "case", "storvsp IOPS", "MB/s", "uring IOPS", "MB/s", "ratio",
	       "range");
	const char *only = getenv("BENCH_CASE");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (only && !strstr(cases[i].name, only))
			continue;
		double ai[15], bi[15], ratio[15];
		for (int k = 0; k < runs; k++) {
			/* Alternate the sides so that a neighbour's burst of load hits both alike. */
			rng = 88172645463325252ull;
			ai[k] = run_storvsp(&g, gbufs, cases[i].write, cases[i].seq, cases[i].bs, cases[i].qd, secs, size).iops;
			rng = 88172645463325252ull;
			bi[k] = run_uring(dfd, hbufs, cases[i].write, cases[i].seq, cases[i].bs, cases[i].qd, secs, size).iops;
			ratio[k] = ai[k] / bi[k];
		}
		double a = median(ai, runs), b = median(bi, runs), r = median(ratio, runs);
		double lo = ratio[0], hi = ratio[0];
		for (int k = 1; k < runs; k++) {
			lo = ratio[k] < lo ? ratio[k] : lo;
			hi = ratio[k] > hi ? ratio[k] : hi;
		}
		printf("%-18s %12.0f %10.1f | %12.0f %10.1f | %5.2fx  %5.2f-%5.2fx\n", cases[i].name, a,
		       a * cases[i].bs / 1e6, b, b * cases[i].bs / 1e6, r, lo, hi);
		fflush(stdout);
	}
	close(dfd);
	storvsc_guest_close(&g);
	storvsp_destroy(sv);
	vmbus_loopback_destroy(&lb);
	if (own)
		unlink(tmp);
	return 0;
}
