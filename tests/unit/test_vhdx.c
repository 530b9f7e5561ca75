#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk/crc32c.h"
#include "disk/disk.h"
#include "disk/vhdx.h"
#include "disk/vhdx_format.h"
#include "util/log.h"

#define MiB (1024ull * 1024)

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/g2vm-vhdx-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	log_set_level(LOG_ERROR + 0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static char *p(const char *name)
{
	static char buf[4][256];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void mk(const char *name, uint64_t size, uint32_t bs, bool fixed, const char *parent)
{
	unlink(p(name));
	struct disk_create_opts o = { .format = "vhdx", .size = size, .block_size = bs, .fixed = fixed,
				      .parent = parent ? p(parent) : NULL };
	assert_int_equal(disk_create(p(name), &o), 0);
}

/* A dynamic image of size bytes, every byte written as byte (a parent for differencing tests). */
static void mk_filled(const char *name, uint64_t size, uint32_t bs, uint8_t byte)
{
	mk(name, size, bs, false, NULL);
	uint8_t *a = malloc(size);
	assert_non_null(a);
	memset(a, byte, size);
	struct disk *d;
	assert_int_equal(disk_open(p(name), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, a, size, 0), 0);
	disk_close(d);
	free(a);
}

static void fill(uint8_t *b, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static void poke(const char *name, uint64_t off, const void *b, size_t n)
{
	int fd = open(p(name), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void peek(const char *name, uint64_t off, void *b, size_t n)
{
	int fd = open(p(name), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static uint64_t file_hash(const char *name)
{
	int fd = open(p(name), O_RDONLY);
	uint8_t b[65536];
	uint64_t h = 1469598103934665603ull;
	ssize_t n;
	while ((n = read(fd, b, sizeof(b))) > 0)
		h = crc32c((uint32_t)h, b, (size_t)n) ^ (h << 7) ^ (uint64_t)n;
	close(fd);
	return h;
}

static void test_crc32c_vector(void **state)
{
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	uint8_t z[32] = { 0 };
	assert_int_equal(crc32c(0, z, 32), 0x8A9136AAu);
}

static void test_dynamic_rw_reopen(void **state)
{
	mk("d.vhdx", 64 * MiB, MiB, false, NULL);
	struct disk *d;
	assert_int_equal(disk_open(p("d.vhdx"), 0, &d), 0);
	assert_string_equal(d->ops->format, "vhdx");
	assert_int_equal(d->type, DISK_TYPE_DYNAMIC);
	assert_int_equal(d->size, 64 * MiB);
	static uint8_t w[3 * MiB], r[3 * MiB];
	fill(w, sizeof(w), 1);
	/* Unaligned, crossing two block boundaries. */
	assert_int_equal(disk_pwrite(d, w, sizeof(w) - 1000, 5 * MiB - 4096 + 17), 0);
	assert_int_equal(disk_pread(d, r, sizeof(w) - 1000, 5 * MiB - 4096 + 17), 0);
	assert_memory_equal(r, w, sizeof(w) - 1000);
	/* Unallocated blocks read as zero. */
	memset(r, 0xee, MiB);
	assert_int_equal(disk_pread(d, r, MiB, 40 * MiB), 0);
	for (size_t i = 0; i < MiB; i++)
		assert_int_equal(r[i], 0);
	assert_int_equal(d->ops->flush(d), 0);
	disk_close(d);
	assert_int_equal(disk_open(p("d.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, sizeof(w) - 1000, 5 * MiB - 4096 + 17), 0);
	assert_memory_equal(r, w, sizeof(w) - 1000);
	assert_int_equal(disk_pwrite(d, w, 512, 0), -EROFS);
	/* Out of range. */
	assert_int_equal(disk_pread(d, r, 512, 64 * MiB), -EINVAL);
	disk_close(d);
}

static void test_fixed_and_sizes(void **state)
{
	mk("f.vhdx", 10 * MiB + 512, MiB, true, NULL);
	struct disk *d;
	assert_int_equal(disk_open(p("f.vhdx"), 0, &d), 0);
	assert_int_equal(d->type, DISK_TYPE_FIXED);
	uint8_t b[4096];
	fill(b, sizeof(b), 9);
	assert_int_equal(disk_pwrite(d, b, 512, 10 * MiB), 0);
	disk_close(d);
	struct disk_create_opts o = { .format = "vhdx", .size = 65ull << 40 };
	assert_int_equal(disk_create(p("huge.vhdx"), &o), -EINVAL);
	o.size = 64ull << 40;
	assert_int_equal(disk_create(p("huge.vhdx"), &o), 0);
	assert_int_equal(disk_open(p("huge.vhdx"), 0, &d), 0);
	assert_int_equal(d->size, 64ull << 40);
	assert_int_equal(disk_pwrite(d, b, 4096, (64ull << 40) - 4096), 0);
	uint8_t r[4096];
	assert_int_equal(disk_pread(d, r, 4096, (64ull << 40) - 4096), 0);
	assert_memory_equal(r, b, 4096);
	disk_close(d);
	o.size = MiB;
	o.block_size = 3 * MiB;
	assert_int_equal(disk_create(p("bs.vhdx"), &o), -EINVAL);
	o.block_size = 256 * MiB;
	o.logical_sector = 4096;
	assert_int_equal(disk_create(p("bs.vhdx"), &o), 0);
	assert_int_equal(disk_open(p("bs.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(d->logical_sector, 4096);
	assert_int_equal(d->block_size, 256 * MiB);
	disk_close(d);
}

static void expect_bad(const char *name, int err)
{
	uint64_t h = file_hash(name);
	struct disk *d = NULL;
	assert_int_equal(disk_open(p(name), 0, &d), err);
	assert_null(d);
	assert_int_equal(file_hash(name), h); /* nothing written */
}

static void rewrite_region_crc(const char *name, uint64_t off)
{
	static uint8_t t[65536];
	peek(name, off, t, sizeof(t));
	memset(t + 4, 0, 4);
	uint32_t c = crc32c(0, t, sizeof(t));
	poke(name, off + 4, &c, 4);
}

static void test_bad_input(void **state)
{
	uint8_t junk[8] = "XXXXXXXX";
	/* Both headers' signatures broken. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	poke("b.vhdx", 64 * 1024, junk, 4);
	poke("b.vhdx", 128 * 1024, junk, 4);
	expect_bad("b.vhdx", -EINVAL);
	/* One header's checksum broken: the other is used. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	poke("b.vhdx", 64 * 1024 + 100, junk, 1);
	struct disk *d;
	assert_int_equal(disk_open(p("b.vhdx"), DISK_RDONLY, &d), 0);
	disk_close(d);
	/* Region tables broken (both). */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	poke("b.vhdx", 192 * 1024 + 40, junk, 1);
	poke("b.vhdx", 256 * 1024 + 40, junk, 1);
	expect_bad("b.vhdx", -EINVAL);
	/* Overlapping regions: metadata moved onto the BAT, checksums valid. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint64_t bat = 3 * MiB;
	for (uint64_t t = 192 * 1024; t <= 256 * 1024; t += 64 * 1024) {
		poke("b.vhdx", t + 16 + 32 + 16, &bat, 8);
		rewrite_region_crc("b.vhdx", t);
	}
	expect_bad("b.vhdx", -EINVAL);
	/* Region over the log. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint64_t logoff = MiB;
	for (uint64_t t = 192 * 1024; t <= 256 * 1024; t += 64 * 1024) {
		poke("b.vhdx", t + 16 + 16, &logoff, 8);
		rewrite_region_crc("b.vhdx", t);
	}
	expect_bad("b.vhdx", -EINVAL);
	/* BAT entry outside the file. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint64_t e = (1000 * MiB) | 6;
	poke("b.vhdx", 3 * MiB + 8, &e, 8);
	expect_bad("b.vhdx", -EINVAL);
	/* BAT entry overlapping the metadata region. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	e = (2 * MiB) | 6;
	poke("b.vhdx", 3 * MiB + 8, &e, 8);
	expect_bad("b.vhdx", -EINVAL);
	/* Two BAT entries at the same block. */
	mk("b.vhdx", 8 * MiB, MiB, true, NULL);
	peek("b.vhdx", 3 * MiB, &e, 8);
	poke("b.vhdx", 3 * MiB + 8, &e, 8);
	expect_bad("b.vhdx", -EINVAL);
	/* Invalid BAT state. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	e = 5;
	poke("b.vhdx", 3 * MiB, &e, 8);
	expect_bad("b.vhdx", -EINVAL);
	/* Absurd virtual size (metadata item 2 follows file parameters at +64 KiB). */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint64_t vs = 1ull << 60;
	poke("b.vhdx", 2 * MiB + 64 * 1024 + 8, &vs, 8);
	expect_bad("b.vhdx", -EINVAL);
	vs = 1000; /* not a sector multiple */
	poke("b.vhdx", 2 * MiB + 64 * 1024 + 8, &vs, 8);
	expect_bad("b.vhdx", -EINVAL);
	/* Block size not a power of two. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint32_t bs = 3 * MiB;
	poke("b.vhdx", 2 * MiB + 64 * 1024, &bs, 4);
	expect_bad("b.vhdx", -EINVAL);
	/* Metadata item outside the region. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	uint32_t mo = 2 * MiB;
	poke("b.vhdx", 2 * MiB + 32 + 16, &mo, 4);
	expect_bad("b.vhdx", -EINVAL);
	/* Truncated file. */
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	assert_int_equal(truncate(p("b.vhdx"), 512 * 1024), 0);
	expect_bad("b.vhdx", -EINVAL);
	mk("b.vhdx", 8 * MiB, MiB, false, NULL);
	assert_int_equal(truncate(p("b.vhdx"), 3 * MiB + 100), 0);
	expect_bad("b.vhdx", -EINVAL);
}

static void crash_writer(const char *name, uint64_t off, uint8_t seed)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct disk *d;
		uint8_t b[8192];
		fill(b, sizeof(b), seed);
		if (disk_open(p(name), 0, &d) || disk_pwrite(d, b, sizeof(b), off) || d->ops->flush(d))
			_exit(1);
		_exit(0); /* no close: the log stays, as after a crash */
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_log_replay(void **state)
{
	mk("l.vhdx", 16 * MiB, MiB, false, NULL);
	crash_writer("l.vhdx", 3 * MiB, 5);
	uint8_t h[4096], w[8192], r[8192];
	fill(w, sizeof(w), 5);
	/* The header still names a log. */
	peek("l.vhdx", 64 * 1024, h, sizeof(h));
	uint8_t h2[4096];
	peek("l.vhdx", 128 * 1024, h2, sizeof(h2));
	uint8_t zero[16] = { 0 };
	assert_true(memcmp(h + 48, zero, 16) || memcmp(h2 + 48, zero, 16));
	/* Wreck the in-place BAT: only the log knows the block now. */
	uint64_t e = 0;
	poke("l.vhdx", 3 * MiB + 3 * 8, &e, 8);
	/* Read-only: the log applies in memory and nothing is written. */
	uint64_t before = file_hash("l.vhdx");
	struct disk *d;
	assert_int_equal(disk_open(p("l.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, sizeof(r), 3 * MiB), 0);
	assert_memory_equal(r, w, sizeof(w));
	disk_close(d);
	assert_int_equal(file_hash("l.vhdx"), before);
	/* Read-write: replayed, and the log is marked empty. */
	assert_int_equal(disk_open(p("l.vhdx"), 0, &d), 0);
	disk_close(d);
	peek("l.vhdx", 3 * MiB + 3 * 8, &e, 8);
	assert_int_equal(e & 7, 6);
	peek("l.vhdx", 64 * 1024, h, sizeof(h));
	peek("l.vhdx", 128 * 1024, h2, sizeof(h2));
	assert_memory_equal(h + 48, zero, 16);
	assert_memory_equal(h2 + 48, zero, 16);
	assert_int_equal(disk_open(p("l.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, sizeof(r), 3 * MiB), 0);
	assert_memory_equal(r, w, sizeof(w));
	disk_close(d);
	/* A torn (checksum-failing) entry is ignored: the image is as before it. */
	crash_writer("l.vhdx", 9 * MiB, 6);
	uint8_t x = 0x55;
	poke("l.vhdx", MiB + 4096 + 200, &x, 1);
	assert_int_equal(disk_open(p("l.vhdx"), 0, &d), 0);
	assert_int_equal(disk_pread(d, r, sizeof(r), 3 * MiB), 0);
	assert_memory_equal(r, w, sizeof(w));
	disk_close(d);
}

/* One descriptor of a forged log entry: a 4 KiB sector written at off (sec), or, sec NULL, zero_len
 * bytes zeroed at off. */
struct forged_desc {
	uint64_t off, zero_len;
	const uint8_t *sec;
};

/* Replaces the pending log entry crash_writer left (at the log's start, 1 MiB) with one carrying
 * descs, keeping its GUID and sequence number: a well-formed entry (checksums right) whose contents
 * are hostile. */
static void log_forge(const char *name, const struct forged_desc *ds, int n, uint64_t last_file_offset)
{
	struct vhdx_log_hdr lh;
	peek(name, MiB, &lh, sizeof(lh));
	assert_memory_equal(lh.signature, "loge", 4);
	int ndata = 0;
	for (int i = 0; i < n; i++)
		ndata += ds[i].sec != NULL;
	uint64_t desc_bytes = (64 + 32ull * (uint64_t)n + 4095) / 4096 * 4096, len = desc_bytes + 4096ull * (uint64_t)ndata;
	uint8_t *e = calloc(1, len);
	assert_non_null(e);
	lh.entry_length = (uint32_t)len;
	lh.tail = 0;
	lh.descriptor_count = (uint32_t)n;
	lh.flushed_file_offset = last_file_offset;
	lh.last_file_offset = last_file_offset;
	lh.checksum = 0;
	memcpy(e, &lh, sizeof(lh));
	for (int i = 0, k = 0; i < n; i++) {
		struct vhdx_log_desc d = { .file_offset = ds[i].off, .seq = lh.seq };
		if (ds[i].sec) {
			memcpy(d.signature, "desc", 4);
			memcpy(&d.leading_bytes, ds[i].sec, 8);
			memcpy(&d.trailing_bytes, ds[i].sec + 4092, 4);
			struct vhdx_log_data dt = { .seq_high = (uint32_t)(lh.seq >> 32), .seq_low = (uint32_t)lh.seq };
			memcpy(dt.signature, "data", 4);
			memcpy(dt.data, ds[i].sec + 8, sizeof(dt.data));
			memcpy(e + desc_bytes + 4096 * (size_t)k++, &dt, sizeof(dt));
		} else {
			memcpy(d.signature, "zero", 4);
			d.leading_bytes = ds[i].zero_len;
		}
		memcpy(e + 64 + 32 * (size_t)i, &d, sizeof(d));
	}
	uint32_t crc = crc32c(0, e, len);
	memcpy(e + 4, &crc, 4);
	poke(name, MiB, e, len);
	free(e);
}

/* A hostile log is refused before anything is written: the file stays byte for byte as it was, for
 * read-write and read-only opens alike. */
static void expect_log_refused(const char *name)
{
	uint64_t before = file_hash(name);
	struct stat st0, st1;
	assert_int_equal(stat(p(name), &st0), 0);
	struct disk *d;
	assert_int_equal(disk_open(p(name), 0, &d), -EINVAL);
	assert_int_equal(disk_open(p(name), DISK_RDONLY, &d), -EINVAL);
	assert_int_equal(file_hash(name), before);
	assert_int_equal(stat(p(name), &st1), 0);
	assert_int_equal(st1.st_size, st0.st_size);
	assert_true(st1.st_blocks <= st0.st_blocks);
}

static void test_log_hostile(void **state)
{
	uint8_t bat[4096];
	struct stat st;
	mk("h.vhdx", 16 * MiB, MiB, false, NULL);
	crash_writer("h.vhdx", 3 * MiB, 7);
	peek("h.vhdx", 3 * MiB, bat, sizeof(bat));
	assert_int_equal(stat(p("h.vhdx"), &st), 0);
	uint64_t size = (uint64_t)st.st_size;

	/* A zero descriptor spanning 1 TiB: was zeros written until the disk was full. */
	struct forged_desc zero_tib[] = { { .off = 4 * MiB, .zero_len = 1ull << 40 } };
	log_forge("h.vhdx", zero_tib, 1, size);
	expect_log_refused("h.vhdx");
	/* Zeros in free space past everything the image uses. */
	struct forged_desc zero_free[] = { { .off = 64 * MiB, .zero_len = MiB } };
	log_forge("h.vhdx", zero_free, 1, 65 * MiB);
	expect_log_refused("h.vhdx");
	/* A write into the log itself, and one over the headers' neighbour (free space below 1 MiB). */
	struct forged_desc in_log[] = { { .off = MiB + 512 * 1024, .sec = bat } };
	log_forge("h.vhdx", in_log, 1, size);
	expect_log_refused("h.vhdx");
	struct forged_desc low[] = { { .off = 512 * 1024, .sec = bat } };
	log_forge("h.vhdx", low, 1, size);
	expect_log_refused("h.vhdx");
	/* Garbage into the BAT: an entry pointing far outside the file, and one with an invalid state.
	 * Refused before replay (was: replayed into the file, then the image refused). */
	uint8_t garbage[4096];
	memcpy(garbage, bat, sizeof(garbage));
	uint64_t far = (1000 * MiB) | 6;
	memcpy(garbage + 8, &far, 8);
	struct forged_desc bad_bat[] = { { .off = 3 * MiB, .sec = garbage } };
	log_forge("h.vhdx", bad_bat, 1, size);
	expect_log_refused("h.vhdx");
	uint64_t state5 = 5;
	memcpy(garbage + 8, &state5, 8);
	log_forge("h.vhdx", bad_bat, 1, size);
	expect_log_refused("h.vhdx");

	/* A log that records an 8 TiB file: replayed (its writes are sound), the file not grown past
	 * what the image uses, and what replay did is reported. */
	struct forged_desc sound[] = { { .off = 3 * MiB, .sec = bat } };
	log_forge("h.vhdx", sound, 1, 8ull << 40);
	struct disk *d;
	assert_int_equal(disk_open(p("h.vhdx"), 0, &d), 0);
	assert_non_null(vhdx_replay_summary(d));
	assert_non_null(strstr(vhdx_replay_summary(d), "1 log entry"));
	assert_non_null(strstr(vhdx_replay_summary(d), "ignored"));
	uint8_t r[8192], w[8192];
	fill(w, sizeof(w), 7);
	assert_int_equal(disk_pread(d, r, sizeof(r), 3 * MiB), 0);
	assert_memory_equal(r, w, sizeof(w));
	disk_close(d);
	assert_int_equal(stat(p("h.vhdx"), &st), 0);
	assert_true((uint64_t)st.st_size <= size);
	/* Closed cleanly now: nothing to replay. */
	assert_int_equal(disk_open(p("h.vhdx"), 0, &d), 0);
	assert_null(vhdx_replay_summary(d));
	disk_close(d);
}

static void test_differencing_three_levels(void **state)
{
	mk_filled("base.vhdx", 8 * MiB, MiB, 0xAA);
	static uint8_t r[8 * MiB], want[8 * MiB];
	struct disk *d;
	memset(want, 0xAA, sizeof(want));
	mk("mid.vhdx", 0, MiB, false, "base.vhdx");
	assert_int_equal(disk_open(p("mid.vhdx"), 0, &d), 0);
	assert_int_equal(d->size, 8 * MiB);
	uint8_t b[4096];
	memset(b, 0xBB, sizeof(b));
	assert_int_equal(disk_pwrite(d, b, sizeof(b), MiB + 512), 0);
	memcpy(want + MiB + 512, b, sizeof(b));
	disk_close(d);
	mk("top.vhdx", 0, MiB, false, "mid.vhdx");
	assert_int_equal(disk_open(p("top.vhdx"), 0, &d), 0);
	assert_non_null(d->parent);
	assert_non_null(d->parent->parent);
	uint8_t c[1000];
	memset(c, 0xCC, sizeof(c));
	assert_int_equal(disk_pwrite(d, c, sizeof(c), MiB + 1000), 0); /* over mid's data */
	assert_int_equal(disk_pwrite(d, c, sizeof(c), 5 * MiB), 0);     /* over base only */
	memcpy(want + MiB + 1000, c, sizeof(c));
	memcpy(want + 5 * MiB, c, sizeof(c));
	assert_int_equal(disk_pread(d, r, sizeof(r), 0), 0);
	assert_memory_equal(r, want, sizeof(want));
	/* Trim of a whole block in a child reads zero, not the parent. */
	assert_int_equal(d->ops->discard(d, 5 * MiB, MiB), 0);
	memset(want + 5 * MiB, 0, MiB);
	disk_close(d);
	assert_int_equal(disk_open(p("top.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, sizeof(r), 0), 0);
	assert_memory_equal(r, want, sizeof(want));
	disk_close(d);
	/* Writing to the base breaks its children's linkage: refused by identifier. */
	assert_int_equal(disk_open(p("base.vhdx"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, b, 512, 0), 0);
	disk_close(d);
	assert_int_equal(disk_open(p("top.vhdx"), DISK_RDONLY, &d), -EINVAL);
}

static void test_parent_missing_and_loop(void **state)
{
	mk("pa.vhdx", 4 * MiB, MiB, false, NULL);
	mk("ch.vhdx", 0, MiB, false, "pa.vhdx");
	assert_int_equal(rename(p("pa.vhdx"), p("gone.vhdx")), 0);
	struct disk *d;
	assert_int_equal(disk_open(p("ch.vhdx"), DISK_RDONLY, &d), -ENOENT);
	/* pa.vhdx becomes a copy of ch.vhdx: its parent is itself. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cp %s %s", p("ch.vhdx"), p("pa.vhdx"));
	assert_int_equal(system(cmd), 0);
	assert_int_equal(disk_open(p("pa.vhdx"), DISK_RDONLY, &d), -ELOOP);
}

static void test_resize_and_lock(void **state)
{
	mk("rs.vhdx", 8 * MiB, MiB, false, NULL);
	struct disk *d, *d2;
	assert_int_equal(disk_open(p("rs.vhdx"), 0, &d), 0);
	assert_int_equal(disk_open(p("rs.vhdx"), 0, &d2), -EBUSY);
	assert_int_equal(disk_open(p("rs.vhdx"), DISK_RDONLY, &d2), -EBUSY);
	uint8_t b[4096], r[4096];
	fill(b, sizeof(b), 3);
	assert_int_equal(disk_pwrite(d, b, sizeof(b), 7 * MiB), 0);
	/* Within the BAT region, then beyond it (the BAT moves). */
	assert_int_equal(vhdx_resize(d, 64 * MiB), 0);
	assert_int_equal(vhdx_resize(d, 200ull << 30), 0);
	assert_int_equal(vhdx_resize(d, 100ull << 30), -EINVAL);
	assert_int_equal(disk_pwrite(d, b, sizeof(b), (200ull << 30) - 4096), 0);
	disk_close(d);
	assert_int_equal(disk_open(p("rs.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(d->size, 200ull << 30);
	assert_int_equal(disk_pread(d, r, sizeof(r), 7 * MiB), 0);
	assert_memory_equal(r, b, sizeof(b));
	assert_int_equal(disk_pread(d, r, sizeof(r), (200ull << 30) - 4096), 0);
	assert_memory_equal(r, b, sizeof(b));
	assert_int_equal(disk_pread(d, r, sizeof(r), 100ull << 30), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(r[i], 0);
	disk_close(d);
}

static void test_discard_releases(void **state)
{
	mk("t.vhdx", 16 * MiB, MiB, false, NULL);
	struct disk *d;
	assert_int_equal(disk_open(p("t.vhdx"), 0, &d), 0);
	static uint8_t b[4 * MiB], r[4 * MiB];
	memset(b, 0x77, sizeof(b));
	assert_int_equal(disk_pwrite(d, b, sizeof(b), 2 * MiB), 0);
	struct stat s1, s2;
	fstat(d->fd, &s1);
	assert_int_equal(d->ops->discard(d, 2 * MiB + 4096, 3 * MiB), 0);
	assert_int_equal(d->ops->flush(d), 0);
	fstat(d->fd, &s2);
	assert_true(s2.st_blocks < s1.st_blocks);
	memset(b + 4096, 0, 3 * MiB);
	assert_int_equal(disk_pread(d, r, sizeof(r), 2 * MiB), 0);
	assert_memory_equal(r, b, sizeof(b));
	disk_close(d);
}

/* qemu-img check on path when qemu-img is installed (skipped otherwise): 0 clean. */
static int qemu_check(const char *path)
{
	if (system("command -v qemu-img >/dev/null 2>&1"))
		return 0;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "qemu-img check -q -f vhdx '%s' >/dev/null 2>&1", path);
	return system(cmd);
}

/* Writes a pattern into a dynamic (or differencing) image with holes to fill: zero blocks,
 * discarded blocks, data at the end; compacts; the file shrinks and reads the same. */
static void compact_case(const char *name, const char *parent)
{
	uint64_t size = 32 * MiB;
	static uint8_t want[32 * MiB], got[32 * MiB];
	struct disk *d;
	assert_int_equal(disk_open(p(name), 0, &d), 0);
	assert_int_equal(disk_pread(d, want, size, 0), 0); /* the parent's view, if any */
	for (int b = 0; b < 32; b++) {
		uint8_t *blk = want + (uint64_t)b * MiB;
		if (b % 4 == 1)
			memset(blk, 0, MiB); /* written zeros: released by compact */
		else if (b % 4 == 2)
			fill(blk + 8192, 4096, (uint8_t)b); /* a sparse block: one page written */
		else
			fill(blk, MiB, (uint8_t)b);
		assert_int_equal(disk_pwrite(d, blk, MiB, (uint64_t)b * MiB), 0);
	}
	/* Blocks 5-9 discarded: a run of free space in the middle of the file. */
	assert_int_equal(d->ops->discard(d, 5 * MiB, 5 * MiB), 0);
	memset(want + 5 * MiB, 0, 5 * MiB);
	assert_int_equal(d->ops->flush(d), 0);
	disk_close(d);
	struct stat s0, s1;
	assert_int_equal(stat(p(name), &s0), 0);
	assert_int_equal(disk_open(p(name), DISK_KEEP_LINKAGE, &d), 0);
	struct disk_compact_stats st;
	assert_int_equal(disk_compact(d, NULL, NULL, &st), 0);
	assert_true(st.zero_blocks >= 6);
	assert_true(st.moved_blocks > 0);
	assert_int_equal(st.size_before, (uint64_t)s0.st_size);
	assert_int_equal(disk_pread(d, got, size, 0), 0);
	assert_memory_equal(got, want, size);
	disk_close(d);
	assert_int_equal(stat(p(name), &s1), 0);
	assert_int_equal(st.size_after, (uint64_t)s1.st_size);
	/* 4 MiB of headers, log, metadata and BAT, then 21 blocks: 32 less 8 zero blocks and
	 * the 3 discarded ones that were not zero. Nothing is left after them. */
	assert_int_equal((uint64_t)s1.st_size, 4 * MiB + 21 * MiB);
	assert_true(s1.st_size < s0.st_size);
	/* Reopened (the header says the log is empty; nothing to replay): the same data. */
	assert_int_equal(disk_open(p(name), 0, &d), 0);
	memset(got, 0, size);
	assert_int_equal(disk_pread(d, got, size, 0), 0);
	assert_memory_equal(got, want, size);
	/* Writes after compact allocate at the new end and keep working. */
	fill(want + 30 * MiB, MiB, 0x5a);
	assert_int_equal(disk_pwrite(d, want + 30 * MiB, MiB, 30 * MiB), 0);
	assert_int_equal(disk_pwrite(d, want + 5 * MiB, 4096, 5 * MiB), 0);
	disk_close(d);
	assert_int_equal(disk_open(p(name), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, got, size, 0), 0);
	assert_memory_equal(got, want, size);
	disk_close(d);
	if (!parent)
		assert_int_equal(qemu_check(p(name)), 0); /* qemu has no differencing VHDX */
}

static void test_compact_shrinks(void **state)
{
	mk("c.vhdx", 32 * MiB, MiB, false, NULL);
	compact_case("c.vhdx", NULL);
	/* Differencing: the parent keeps its DataWriteGuid-linkage (compact keeps the child's
	 * too), zero blocks become ZERO (not the parent's data). */
	mk_filled("cbase.vhdx", 32 * MiB, MiB, 0xAB);
	struct disk *d;
	mk("cchild.vhdx", 0, MiB, false, "cbase.vhdx");
	compact_case("cchild.vhdx", "cbase.vhdx");
	/* A fixed image: nothing to do, nothing changed. */
	mk("cfix.vhdx", 8 * MiB, MiB, true, NULL);
	uint64_t h = file_hash("cfix.vhdx");
	assert_int_equal(disk_open(p("cfix.vhdx"), 0, &d), 0);
	struct disk_compact_stats st;
	assert_int_equal(disk_compact(d, NULL, NULL, &st), 0);
	assert_int_equal(st.moved_blocks, 0);
	disk_close(d);
	assert_int_equal(file_hash("cfix.vhdx"), h);
	/* In use: the second (writing) open is refused before compact could run. */
	assert_int_equal(disk_open(p("c.vhdx"), 0, &d), 0);
	struct disk *d2;
	assert_int_equal(disk_open(p("c.vhdx"), 0, &d2), -EBUSY);
	disk_close(d);
}

/* DISK_DIRECT: aligned requests through O_DIRECT, unaligned ones buffered, both coherent; a
 * request over several blocks that follow each other in the file is one transfer. */
static void test_direct_io(void **state)
{
	static uint8_t w[3 * MiB + 8192], r[3 * MiB + 8192];
	for (int fixed = 0; fixed < 2; fixed++) {
		mk("dio.vhdx", 16 * MiB, MiB, fixed, NULL);
		struct disk *d;
		assert_int_equal(disk_open(p("dio.vhdx"), DISK_DIRECT, &d), 0);
		assert_true(d->direct_fd >= 0); /* ext4/tmpfs-backed /tmp: O_DIRECT works */
		uint8_t *a = aligned_alloc(4096, 3 * MiB);
		fill(a, 3 * MiB, 3);
		assert_int_equal(disk_pwrite(d, a, 3 * MiB, MiB / 2), 0);      /* aligned: direct */
		fill(w, sizeof(w), 9);
		assert_int_equal(disk_pwrite(d, w + 1, 1000, 5 * MiB + 3), 0); /* unaligned: buffered */
		assert_int_equal(disk_pread(d, r, 3 * MiB, MiB / 2), 0);
		assert_memory_equal(r, a, 3 * MiB);
		assert_int_equal(disk_pread(d, a, 4096, 5 * MiB), 0); /* direct read sees the buffered write */
		assert_memory_equal(a + 3, w + 1, 1000);
		free(a);
		disk_close(d);
		assert_int_equal(disk_open(p("dio.vhdx"), DISK_RDONLY, &d), 0);
		assert_int_equal(disk_pread(d, r, 1000, 5 * MiB + 3), 0);
		assert_memory_equal(r, w + 1, 1000);
		disk_close(d);
	}
}

/* A partially present block (as other tools write them): sectors whose bit is set in the chunk's
 * sector bitmap come from the child, the others from the parent; read twice (the bitmap is then
 * cached), sector by sector, and after a write that makes the block fully present. */
static void test_partially_present(void **state)
{
	mk_filled("pbase.vhdx", 8 * MiB, MiB, 0xAA);
	static uint8_t want[MiB], r[MiB];
	struct disk *d;
	mk("pchild.vhdx", 0, MiB, false, "pbase.vhdx");
	memset(r, 0xCC, MiB);
	assert_int_equal(disk_open(p("pchild.vhdx"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, r, MiB, 2 * MiB), 0); /* block 2, fully present */
	disk_close(d);
	/* BAT at 3 MiB; 512-byte sectors and 1 MiB blocks: chunk ratio 4096, so block 2 is entry 2
	 * and chunk 0's bitmap entry 4096. The bitmap goes at the end of the file. */
	uint64_t e;
	peek("pchild.vhdx", 3 * MiB + 2 * 8, &e, 8);
	assert_int_equal(e & 7, 6);
	struct stat st;
	assert_int_equal(stat(p("pchild.vhdx"), &st), 0);
	uint64_t bm_off = ((uint64_t)st.st_size + MiB - 1) / MiB * MiB;
	static uint8_t bm[MiB];
	memset(bm, 0, sizeof(bm));
	bm[2 * 2048 / 8] = 0xFF;     /* block 2, sectors 0-7 */
	bm[2 * 2048 / 8 + 2] = 0x0F; /* sectors 16-19 */
	poke("pchild.vhdx", bm_off, bm, sizeof(bm));
	e = (e & ~7ull) | 7;
	poke("pchild.vhdx", 3 * MiB + 2 * 8, &e, 8);
	uint64_t sbe = bm_off | 6;
	poke("pchild.vhdx", 3 * MiB + 4096 * 8, &sbe, 8);
	memset(want, 0xAA, MiB);
	memset(want, 0xCC, 4096);
	memset(want + 16 * 512, 0xCC, 4 * 512);
	for (int pass = 0; pass < 2; pass++) {
		assert_int_equal(disk_open(p("pchild.vhdx"), pass ? 0 : DISK_RDONLY, &d), 0);
		for (int k = 0; k < 2; k++) {
			memset(r, 0, MiB);
			assert_int_equal(disk_pread(d, r, MiB, 2 * MiB), 0);
			assert_memory_equal(r, want, MiB);
		}
		for (int sct = 0; sct < 32; sct++) {
			assert_int_equal(disk_pread(d, r, 512, 2 * MiB + (uint64_t)sct * 512), 0);
			assert_memory_equal(r, want + sct * 512, 512);
		}
		if (pass) {
			/* A write fills the absent sectors from the parent and makes it fully present. */
			memset(want + 40 * 512, 0x11, 512);
			assert_int_equal(disk_pwrite(d, want + 40 * 512, 512, 2 * MiB + 40 * 512), 0);
			assert_int_equal(disk_pread(d, r, MiB, 2 * MiB), 0);
			assert_memory_equal(r, want, MiB);
		}
		disk_close(d);
	}
	peek("pchild.vhdx", 3 * MiB + 2 * 8, &e, 8);
	assert_int_equal(e & 7, 6);
	assert_int_equal(disk_open(p("pchild.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, MiB, 2 * MiB), 0);
	assert_memory_equal(r, want, MiB);
	disk_close(d);
}

/* Sector bitmaps in compact: one that a partially present block still needs moves down into free
 * space like a block; once its block is fully present it is released. The data reads the same
 * throughout. */
static void test_compact_bitmaps(void **state)
{
	/* 2 MiB blocks: bitmaps (1 MiB) and blocks differ in size. */
	const uint64_t B = 2 * MiB;
	mk_filled("sbase.vhdx", 8 * MiB, B, 0xAA);
	static uint8_t want[8 * MiB], got[8 * MiB];
	struct disk *d;
	mk("schild.vhdx", 0, B, false, "sbase.vhdx");
	memset(want, 0xAA, sizeof(want));
	memset(want, 0x11, B);
	memset(want + B, 0x22, B);
	memset(want + 2 * B, 0xCC, B);
	assert_int_equal(disk_open(p("schild.vhdx"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, want, 3 * B, 0), 0); /* blocks 0-2, fully present */
	disk_close(d);
	/* Block 2 made partially present (sectors 0-7), its chunk's bitmap at the end of the file;
	 * BAT at 3 MiB; 512-byte sectors and 2 MiB blocks: chunk ratio 2048, chunk 0's bitmap
	 * entry 2048. */
	uint64_t e2, sbe;
	peek("schild.vhdx", 3 * MiB + 2 * 8, &e2, 8);
	struct stat st;
	assert_int_equal(stat(p("schild.vhdx"), &st), 0);
	uint64_t bm_off = ((uint64_t)st.st_size + MiB - 1) / MiB * MiB;
	static uint8_t bm[MiB];
	memset(bm, 0, sizeof(bm));
	bm[2 * 4096 / 8] = 0xFF;
	poke("schild.vhdx", bm_off, bm, sizeof(bm));
	e2 = (e2 & ~7ull) | 7;
	poke("schild.vhdx", 3 * MiB + 2 * 8, &e2, 8);
	sbe = bm_off | 6;
	poke("schild.vhdx", 3 * MiB + 2048 * 8, &sbe, 8);
	memset(want + 2 * B + 4096, 0xAA, B - 4096);
	/* Block 1 discarded (reads zeros, its space is free below the bitmap). */
	assert_int_equal(disk_open(p("schild.vhdx"), 0, &d), 0);
	assert_int_equal(d->ops->discard(d, B, B), 0);
	memset(want + B, 0, B);
	struct disk_compact_stats cs;
	assert_int_equal(disk_compact(d, NULL, NULL, &cs), 0);
	assert_int_equal(cs.moved_blocks, 1);
	assert_int_equal(cs.size_after, cs.size_before - MiB);
	assert_int_equal(disk_pread(d, got, sizeof(got), 0), 0);
	assert_memory_equal(got, want, sizeof(want));
	disk_close(d);
	peek("schild.vhdx", 3 * MiB + 2048 * 8, &sbe, 8);
	assert_int_equal(sbe & 7, 6);
	assert_true((sbe & ~(MiB - 1)) < bm_off); /* moved down */
	assert_int_equal(disk_open(p("schild.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, got, sizeof(got), 0), 0);
	assert_memory_equal(got, want, sizeof(want));
	disk_close(d);
	/* A write makes block 2 fully present: the bitmap is no longer needed, and block 2 moves
	 * down into the space it and block 1's leftover leave. */
	assert_int_equal(disk_open(p("schild.vhdx"), 0, &d), 0);
	memset(want + 2 * B + 8192, 0x5c, 512);
	assert_int_equal(disk_pwrite(d, want + 2 * B + 8192, 512, 2 * B + 8192), 0);
	assert_int_equal(disk_compact(d, NULL, NULL, &cs), 0);
	assert_int_equal(cs.moved_blocks, 1);
	assert_int_equal(cs.size_after, cs.size_before - B);
	disk_close(d);
	peek("schild.vhdx", 3 * MiB + 2048 * 8, &sbe, 8);
	assert_int_equal(sbe & 7, 0);
	assert_int_equal(disk_open(p("schild.vhdx"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, got, sizeof(got), 0), 0);
	assert_memory_equal(got, want, sizeof(want));
	disk_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vector),
		cmocka_unit_test(test_dynamic_rw_reopen),
		cmocka_unit_test(test_fixed_and_sizes),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_log_replay),
		cmocka_unit_test(test_log_hostile),
		cmocka_unit_test(test_differencing_three_levels),
		cmocka_unit_test(test_parent_missing_and_loop),
		cmocka_unit_test(test_resize_and_lock),
		cmocka_unit_test(test_discard_releases),
		cmocka_unit_test(test_compact_shrinks),
		cmocka_unit_test(test_direct_io),
		cmocka_unit_test(test_partially_present),
		cmocka_unit_test(test_compact_bitmaps),
	};
	return cmocka_run_group_tests_name("vhdx", tests, setup, teardown);
}
