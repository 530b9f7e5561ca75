/* bench/vhdx: gen2vm's VHDX driver against the same data in a raw file, and against QEMU's vhdx
 * driver (qemu-img bench) on the same image with the same depth (1: disk_ops is synchronous) and
 * pattern. qemu-img bench has no random mode, so the side-by-side uses its strided pattern (4 KiB
 * requests, step 1 MiB + 4 KiB, wrapping) in both; the raw comparison also runs true random 4 KiB.
 * Buffered I/O (page cache) in both, no flushes: this measures the drivers' overhead.
 * Environment: BENCH_DIR (default /tmp), BENCH_MB (image size, default 256). */
#include "disk/disk.h"
#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define STEP (MiB + 4096)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

enum pat { RAND4K, STRIDE4K, SEQ1M };

/* Returns MB/s. */
static double run(struct disk *d, enum pat p, bool wr, uint64_t count)
{
	static uint8_t *buf;
	if (!buf) {
		buf = aligned_alloc(4096, MiB);
		memset(buf, 0x3c, MiB);
	}
	uint64_t bs = p == SEQ1M ? MiB : 4096, off = 0, bytes = 0;
	rng_state = 88172645463325252ull;
	double t0 = now();
	for (uint64_t i = 0; i < count; i++) {
		if (p == RAND4K)
			off = (rnd() % (d->size / 4096)) * 4096;
		int rc = wr ? disk_pwrite(d, buf, bs, off) : disk_pread(d, buf, bs, off);
		if (rc) {
			fprintf(stderr, "bench: I/O error %d on %s\n", rc, d->path);
			exit(1);
		}
		bytes += bs;
		if (p != RAND4K) {
			off += p == SEQ1M ? MiB : STEP;
			if (off + bs > d->size)
				off = p == SEQ1M ? 0 : off % d->size;
		}
	}
	return (double)bytes / (now() - t0) / 1e6;
}

/* qemu-img bench on the same image; MB/s or -1. */
static double qemu(const char *path, enum pat p, bool wr, uint64_t count)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "qemu-img bench -f vhdx -t writeback -d 1 -c %llu -s %s -S %llu %s '%s' 2>&1",
		 (unsigned long long)count, p == SEQ1M ? "1M" : "4096",
		 (unsigned long long)(p == SEQ1M ? MiB : STEP), wr ? "-w" : "", path);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	char line[512];
	double secs = -1;
	while (fgets(line, sizeof(line), f))
		sscanf(line, "Run completed in %lf seconds", &secs);
	pclose(f);
	if (secs <= 0)
		return -1;
	return (double)count * (p == SEQ1M ? MiB : 4096) / secs / 1e6;
}

static struct disk *open_or_die(const char *path)
{
	struct disk *d;
	if (disk_open(path, 0, &d))
		exit(1);
	return d;
}

static void fill(const char *path)
{
	struct disk *d = open_or_die(path);
	run(d, SEQ1M, true, d->size / MiB);
	d->ops->flush(d);
	disk_close(d);
}

int main(void)
{
	const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
	uint64_t mb = getenv("BENCH_MB") ? strtoull(getenv("BENCH_MB"), NULL, 10) : 256;
	uint64_t size = mb * MiB;
	char raw[512], fixed[512], dyn[512];
	snprintf(raw, sizeof(raw), "%s/g2vm-bench-%d.raw", dir, getpid());
	snprintf(fixed, sizeof(fixed), "%s/g2vm-bench-%d-fixed.vhdx", dir, getpid());
	snprintf(dyn, sizeof(dyn), "%s/g2vm-bench-%d-dyn.vhdx", dir, getpid());
	struct disk_create_opts o = { .format = "raw", .size = size };
	if (disk_create(raw, &o))
		return 1;
	o.format = "vhdx";
	o.fixed = true;
	if (disk_create(fixed, &o))
		return 1;
	o.fixed = false;
	if (disk_create(dyn, &o))
		return 1;
	/* Dynamic: time the allocating first pass, then measure it fully allocated. */
	struct disk *d = open_or_die(dyn);
	double alloc = run(d, SEQ1M, true, size / MiB);
	d->ops->flush(d);
	disk_close(d);
	fill(raw);
	fill(fixed);

	const uint64_t n4k = 20000, n1m = size / MiB * 2;
	struct { const char *name; enum pat p; bool wr; uint64_t n; } tests[] = {
		{ "4K random read ", RAND4K, false, n4k },  { "4K random write", RAND4K, true, n4k },
		{ "4K stride read ", STRIDE4K, false, n4k }, { "4K stride write", STRIDE4K, true, n4k },
		{ "1M seq read    ", SEQ1M, false, n1m },   { "1M seq write   ", SEQ1M, true, n1m },
	};
	printf("bench/vhdx: %llu MiB images, depth 1, buffered, MB/s (higher is better)\n",
	       (unsigned long long)mb);
	printf("dynamic VHDX first (allocating) 1M sequential write: %.0f MB/s\n", alloc);
	printf("%-16s %9s %9s %9s %7s %7s %9s %9s %7s %7s\n", "", "raw", "fixed", "dynamic", "fix/raw",
	       "dyn/raw", "qemu-fix", "qemu-dyn", "g/q fix", "g/q dyn");
	const char *paths[3] = { raw, fixed, dyn };
	for (size_t t = 0; t < sizeof(tests) / sizeof(tests[0]); t++) {
		double r[3];
		for (int i = 0; i < 3; i++) {
			struct disk *x = open_or_die(paths[i]);
			run(x, tests[t].p, tests[t].wr, tests[t].n / 10); /* warm up */
			r[i] = run(x, tests[t].p, tests[t].wr, tests[t].n);
			disk_close(x);
		}
		double qf = -1, qd = -1;
		if (tests[t].p != RAND4K) {
			qf = qemu(fixed, tests[t].p, tests[t].wr, tests[t].n);
			qd = qemu(dyn, tests[t].p, tests[t].wr, tests[t].n);
		}
		printf("%-16s %9.0f %9.0f %9.0f %7.2f %7.2f", tests[t].name, r[0], r[1], r[2], r[1] / r[0],
		       r[2] / r[0]);
		if (qf > 0 && qd > 0)
			printf(" %9.0f %9.0f %7.2f %7.2f\n", qf, qd, r[1] / qf, r[2] / qd);
		else
			printf(" %9s %9s %7s %7s\n", "-", "-", "-", "-");
	}
	printf("goal: fix/raw and dyn/raw >= 0.90, g/q >= 1.50 (qemu-img bench has no random mode)\n");
	unlink(raw);
	unlink(fixed);
	unlink(dyn);
	return 0;
}
