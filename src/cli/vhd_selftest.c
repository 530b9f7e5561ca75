#include "cli/vhd_selftest.h"
#include "disk/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_op {
	bool trim;
	uint64_t off, len;
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void st_op_gen(uint64_t seed, uint64_t k, uint64_t size, struct st_op *o)
{
	uint64_t s = seed * 1000003ull + k;
	uint64_t r = splitmix(&s) % 100;
	uint64_t sectors = size / 512;
	o->trim = r >= 85;
	if (r < 65)
		o->len = (1 + splitmix(&s) % 16) * 4096; /* small write, may allocate */
	else if (r < 85)
		o->len = (128 + splitmix(&s) % 6144) * 512; /* up to 3 MiB, crosses blocks */
	else
		o->len = (1 + splitmix(&s) % 8192) * 512; /* trim up to 4 MiB */
	if (o->len > size)
		o->len = size;
	o->off = (splitmix(&s) % sectors) * 512;
	if (o->off + o->len > size)
		o->off = size - o->len;
}

static void st_op_data(uint64_t seed, uint64_t k, uint8_t *buf, uint64_t len)
{
	uint64_t s = ~(seed * 1000003ull + k);
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = splitmix(&s);
		memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
	}
}

static int64_t st_journal_count(const char *journal)
{
	int fd = open(journal, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	int64_t n = 0;
	uint64_t v;
	while (read(fd, &v, 8) == 8) {
		if (v != (uint64_t)n) {
			fprintf(stderr, "%s: journal out of order at record %lld\n", journal, (long long)n);
			close(fd);
			return -1;
		}
		n++;
	}
	close(fd);
	return n;
}

int vhd_selftest_writer(const char *path, uint64_t seed, const char *journal, uint64_t max_ops)
{
	int64_t start = st_journal_count(journal);
	if (start < 0)
		return 1;
	struct disk *d;
	if (disk_open(path, 0, &d))
		return 1;
	int jfd = open(journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	uint8_t *buf = malloc(4u << 20);
	int rc = jfd < 0 || !buf;
	for (uint64_t k = (uint64_t)start; !rc && k < (uint64_t)start + max_ops; k++) {
		struct st_op o;
		st_op_gen(seed, k, d->size, &o);
		int e;
		if (o.trim) {
			e = d->ops->discard ? d->ops->discard(d, o.off, o.len) : 0;
		} else {
			st_op_data(seed, k, buf, o.len);
			e = disk_pwrite(d, buf, o.len, o.off);
		}
		if (!e)
			e = d->ops->flush(d);
		if (e) {
			fprintf(stderr, "%s: op %llu failed: %s\n", path, (unsigned long long)k, strerror(-e));
			rc = 1;
			break;
		}
		if (write(jfd, &k, 8) != 8 || fdatasync(jfd))
			rc = 1;
	}
	free(buf);
	if (jfd >= 0)
		close(jfd);
	disk_close(d);
	return rc;
}

int vhd_selftest_verify(const char *path, uint64_t seed, const char *journal)
{
	int64_t n = st_journal_count(journal);
	if (n < 0)
		return 1;
	struct disk *d;
	if (disk_open(path, 0, &d)) /* read-write: replays the log */
		return 1;
	uint64_t size = d->size;
	uint8_t *want = calloc(1, size), *got = malloc(size), *buf = malloc(4u << 20);
	int rc = 1;
	if (!want || !got || !buf)
		goto out;
	for (int64_t k = 0; k < n; k++) {
		struct st_op o;
		st_op_gen(seed, (uint64_t)k, size, &o);
		if (o.trim)
			memset(want + o.off, 0, o.len);
		else
			st_op_data(seed, (uint64_t)k, want + o.off, o.len);
	}
	struct st_op inflight;
	st_op_gen(seed, (uint64_t)n, size, &inflight);
	int e = disk_pread(d, got, size, 0);
	if (e) {
		fprintf(stderr, "%s: read failed: %s\n", path, strerror(-e));
		goto out;
	}
	for (uint64_t i = 0; i < size; i++) {
		if (i >= inflight.off && i < inflight.off + inflight.len)
			continue;
		if (got[i] != want[i]) {
			fprintf(stderr, "%s: byte %llu differs after %lld flushed ops (want %02x got %02x)\n",
				path, (unsigned long long)i, (long long)n, want[i], got[i]);
			goto out;
		}
	}
	printf("%s: %lld flushed ops verified\n", path, (long long)n);
	rc = 0;
out:
	free(want);
	free(got);
	free(buf);
	disk_close(d);
	return rc;
}
