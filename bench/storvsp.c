/* storvsp throughput against the raw file read directly with io_uring.
 *
 * The loopback guest drives a storvsp controller (one disk: a raw file opened by storvsp with
 * O_DIRECT for aligned requests) at a fixed queue depth: 4 KiB random reads and writes at QD 1 and
 * 32, 1 MiB sequential reads and writes at QD 8. The peer is the same file opened with O_DIRECT and
 * driven by io_uring at the same depth with the same offsets. Prints IOPS, MB/s and the ratio
 * (target >= 0.95). BENCH_FILE=path uses another file or block device (default: a 256 MiB file in
 * /tmp, written in full first so reads hit real blocks, not unwritten extents); BENCH_SECS sets the
 * time per case (default 2).
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

#include "devices/storvsc_guest.h"
#include "devices/storvsp.h"
#include "util/log.h"

#define FILE_BYTES (256ull << 20)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
		while (storvsc_guest_reap(g, 0, &io, &rid) == 0) {
			if (io.srb_status != SRB_STATUS_SUCCESS) {
				fprintf(stderr, "bench: I/O failed (srb %#x)\n", io.srb_status);
				exit(1);
			}
			slot_free[nfree++] = (uint32_t)(rid & 0xFF);
			inflight--;
			done++;
		}
	}
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
	double secs = getenv("BENCH_SECS") ? atof(getenv("BENCH_SECS")) : 2.0;
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
	uint8_t *hbufs = aligned_alloc(4096, 32u << 20);
	memset(gbufs, 0x5A, 32u << 20);
	memset(hbufs, 0x5A, 32u << 20);
	int dfd = open(path, O_RDWR | O_DIRECT);
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
	printf("storvsp vs io_uring on %s (O_DIRECT), %.1f s per case\n", path, secs);
	printf("%-18s %12s %10s | %12s %10s | %6s\n", "case", "storvsp IOPS", "MB/s", "uring IOPS", "MB/s", "ratio");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rng = 88172645463325252ull;
		struct result a = run_storvsp(&g, gbufs, cases[i].write, cases[i].seq, cases[i].bs, cases[i].qd, secs, size);
		rng = 88172645463325252ull;
		struct result b = run_uring(dfd, hbufs, cases[i].write, cases[i].seq, cases[i].bs, cases[i].qd, secs, size);
		printf("%-18s %12.0f %10.1f | %12.0f %10.1f | %5.2fx\n", cases[i].name, a.iops, a.mbs, b.iops, b.mbs,
		       a.iops / b.iops);
		fflush(stdout);
	}
	close(dfd);
	storvsc_guest_close(&g);
	storvsp_destroy(sv);
	vmbus_loopback_destroy(&lb);
	free(hbufs);
	if (own)
		unlink(tmp);
	return 0;
}
