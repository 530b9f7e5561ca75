#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/vhd_cmd.h"
#include "disk/disk.h"
#include "util/log.h"

#define MiB (1024ull * 1024)

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/g2vm-vhd-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
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

static void mk(const char *fmt, const char *name, uint64_t size, bool fixed, const char *parent)
{
	unlink(p(name));
	struct disk_create_opts o = { .format = fmt, .size = size, .fixed = fixed,
				      .parent = parent ? p(parent) : NULL };
	assert_int_equal(disk_create(p(name), &o), 0);
}

static void poke(const char *name, int64_t off, const void *b, size_t n)
{
	int fd = open(p(name), O_RDWR);
	struct stat st;
	fstat(fd, &st);
	if (off < 0)
		off += st.st_size;
	assert_int_equal(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void test_size_parse(void **state)
{
	unsigned long long v;
	assert_int_equal(cli_size_parse("64G", &v), 0);
	assert_int_equal(v, 64ull << 30);
	assert_int_equal(cli_size_parse("1.5MiB", &v), 0);
	assert_int_equal(v, 3ull << 19);
	assert_int_equal(cli_size_parse("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(cli_size_parse("12Q", &v), -EINVAL);
	assert_int_equal(cli_size_parse("", &v), -EINVAL);
}

static void test_dynamic_and_fixed(void **state)
{
	static uint8_t w[5 * MiB], r[5 * MiB];
	for (size_t i = 0; i < sizeof(w); i++)
		w[i] = (uint8_t)(i * 13 + (i >> 12));
	for (int fixed = 0; fixed < 2; fixed++) {
		mk("vhd", "a.vhd", 32 * MiB, fixed, NULL);
		struct disk *d;
		assert_int_equal(disk_open(p("a.vhd"), 0, &d), 0);
		assert_string_equal(d->ops->format, "vhd");
		assert_int_equal(d->type, fixed ? DISK_TYPE_FIXED : DISK_TYPE_DYNAMIC);
		assert_true(d->size >= 32 * MiB); /* rounded up to the CHS geometry */
		assert_int_equal(disk_pwrite(d, w, sizeof(w) - 3, 3 * MiB + 5), 0);
		assert_int_equal(d->ops->flush(d), 0);
		disk_close(d);
		assert_int_equal(disk_open(p("a.vhd"), DISK_RDONLY, &d), 0);
		assert_int_equal(disk_pread(d, r, sizeof(w) - 3, 3 * MiB + 5), 0);
		assert_memory_equal(r, w, sizeof(w) - 3);
		assert_int_equal(disk_pread(d, r, MiB, 20 * MiB), 0);
		for (size_t i = 0; i < MiB; i++)
			assert_int_equal(r[i], 0);
		disk_close(d);
	}
}

static void test_differencing(void **state)
{
	mk("vhd", "b.vhd", 16 * MiB, false, NULL);
	struct disk *d;
	static uint8_t a[16 * MiB], r[16 * MiB];
	memset(a, 0x11, sizeof(a));
	assert_int_equal(disk_open(p("b.vhd"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, a, 16 * MiB, 0), 0);
	disk_close(d);
	mk("vhd", "m.vhd", 0, false, "b.vhd");
	mk("vhd", "t.vhd", 0, false, "m.vhd");
	assert_int_equal(disk_open(p("t.vhd"), 0, &d), 0);
	assert_int_equal(d->type, DISK_TYPE_DIFFERENCING);
	assert_non_null(d->parent);
	assert_non_null(d->parent->parent);
	uint8_t c[700];
	memset(c, 0xCC, sizeof(c));
	assert_int_equal(disk_pwrite(d, c, sizeof(c), 4 * MiB + 100), 0);
	memcpy(a + 4 * MiB + 100, c, sizeof(c));
	disk_close(d);
	assert_int_equal(disk_open(p("t.vhd"), DISK_RDONLY, &d), 0);
	assert_int_equal(disk_pread(d, r, 16 * MiB, 0), 0);
	assert_memory_equal(r, a, 16 * MiB);
	disk_close(d);
	/* A VHDX parent cannot back a VHD child. */
	struct disk_create_opts o = { .format = "vhdx", .size = 4 * MiB };
	assert_int_equal(disk_create(p("x.vhdx"), &o), 0);
	o.format = "vhd";
	o.parent = p("x.vhdx");
	o.size = 0;
	assert_int_equal(disk_create(p("y.vhd"), &o), -EINVAL);
}

static void expect_bad(const char *name)
{
	struct disk *d = NULL;
	assert_int_equal(disk_open(p(name), 0, &d), -EINVAL);
	assert_null(d);
}

static void test_bad_input(void **state)
{
	/* Footer checksum. */
	mk("vhd", "c.vhd", 8 * MiB, true, NULL);
	uint8_t x = 0x42;
	poke("c.vhd", -512 + 48, &x, 1);
	expect_bad("c.vhd");
	/* Dynamic header checksum. */
	mk("vhd", "c.vhd", 8 * MiB, false, NULL);
	poke("c.vhd", 512 + 28, &x, 1);
	expect_bad("c.vhd");
	/* BAT entry outside the file. */
	mk("vhd", "c.vhd", 8 * MiB, false, NULL);
	uint32_t e = htobe32(0x100000);
	poke("c.vhd", 1536, &e, 4);
	expect_bad("c.vhd");
	/* BAT entry over the dynamic header. */
	e = htobe32(1);
	poke("c.vhd", 1536, &e, 4);
	expect_bad("c.vhd");
	/* Truncated fixed disk: footer still valid but data missing. */
	mk("vhd", "c.vhd", 8 * MiB, true, NULL);
	int fd = open(p("c.vhd"), O_RDWR);
	uint8_t f[512];
	struct stat st;
	fstat(fd, &st);
	assert_int_equal(pread(fd, f, 512, st.st_size - 512), 512);
	assert_int_equal(ftruncate(fd, 4 * MiB), 0);
	assert_int_equal(pwrite(fd, f, 512, 4 * MiB), 512);
	close(fd);
	expect_bad("c.vhd");
	/* Not a VHD at all: raw. */
	fd = open(p("r.img"), O_RDWR | O_CREAT, 0644);
	assert_int_equal(ftruncate(fd, MiB), 0);
	close(fd);
	struct disk *d;
	assert_int_equal(disk_open(p("r.img"), 0, &d), 0);
	assert_string_equal(d->ops->format, "raw");
	disk_close(d);
}

/* qemu-img compare of a VHD against a raw file (skipped without qemu-img): 0 identical. */
static int qemu_compare(const char *vhd, const char *raw)
{
	if (system("command -v qemu-img >/dev/null 2>&1"))
		return 0;
	char cmd[768];
	snprintf(cmd, sizeof(cmd), "qemu-img compare -q -f vpc -F raw '%s' '%s'", vhd, raw);
	return system(cmd);
}

static void test_compact(void **state)
{
	unlink(p("c.vhd"));
	struct disk_create_opts o = { .format = "vhd", .size = 32 * MiB, .block_size = MiB };
	assert_int_equal(disk_create(p("c.vhd"), &o), 0);
	static uint8_t want[40 * MiB], got[40 * MiB];
	struct disk *d;
	assert_int_equal(disk_open(p("c.vhd"), 0, &d), 0);
	uint64_t size = d->size;
	memset(want, 0, size);
	for (uint64_t b = 0; b < 32; b++) {
		uint8_t *blk = want + b * MiB;
		if (b % 3 == 1)
			memset(blk, 0, MiB); /* zeros: released */
		else
			for (size_t i = 0; i < MiB; i += 512)
				memset(blk + i, (int)(b * 7 + i / 512), 512);
		assert_int_equal(disk_pwrite(d, blk, MiB, b * MiB), 0);
	}
	assert_int_equal(d->ops->discard(d, 20 * MiB, 4 * MiB), 0);
	memset(want + 20 * MiB, 0, 4 * MiB);
	disk_close(d);
	struct stat s0, s1;
	assert_int_equal(stat(p("c.vhd"), &s0), 0);
	assert_int_equal(disk_open(p("c.vhd"), 0, &d), 0);
	struct disk_compact_stats st;
	assert_int_equal(disk_compact(d, NULL, NULL, &st), 0);
	assert_true(st.zero_blocks >= 8);
	assert_true(st.moved_blocks > 0);
	disk_close(d);
	assert_int_equal(stat(p("c.vhd"), &s1), 0);
	assert_true(s1.st_size < s0.st_size);
	/* Footer copy, header, BAT (one sector), then 32 - 11 zero - 3 discarded data blocks
	 * (each 512 bytes of bitmap and 1 MiB), then the footer. */
	assert_int_equal((uint64_t)s1.st_size, 512 + 1024 + 512 + 18 * (MiB + 512) + 512);
	assert_int_equal(disk_open(p("c.vhd"), 0, &d), 0);
	assert_int_equal(disk_pread(d, got, size, 0), 0);
	assert_memory_equal(got, want, size);
	/* The file keeps growing correctly after compact. */
	memset(want + 31 * MiB, 0x6c, MiB);
	assert_int_equal(disk_pwrite(d, want + 31 * MiB, MiB, 31 * MiB), 0);
	disk_close(d);
	int fd = open(p("c.raw"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, want, size, 0), (ssize_t)size);
	close(fd);
	assert_int_equal(qemu_compare(p("c.vhd"), p("c.raw")), 0);
}

/* A differencing block whose bitmap marks only some sectors present (as other tools leave them):
 * those come from the child, the rest from the parent, read twice (then from the cached bitmap). */
static void test_partial_bitmap(void **state)
{
	unlink(p("pb.vhd"));
	unlink(p("pc.vhd"));
	struct disk_create_opts o = { .format = "vhd", .size = 8 * MiB, .block_size = MiB };
	assert_int_equal(disk_create(p("pb.vhd"), &o), 0);
	static uint8_t a[8 * MiB], want[MiB], r[MiB];
	memset(a, 0xAA, sizeof(a));
	struct disk *d;
	assert_int_equal(disk_open(p("pb.vhd"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, a, sizeof(a), 0), 0);
	disk_close(d);
	o.size = 0;
	o.parent = p("pb.vhd");
	assert_int_equal(disk_create(p("pc.vhd"), &o), 0);
	memset(r, 0xCC, MiB);
	assert_int_equal(disk_open(p("pc.vhd"), 0, &d), 0);
	assert_int_equal(disk_pwrite(d, r, MiB, 3 * MiB), 0);
	disk_close(d);
	/* BAT at 1536: entry 3 (big-endian sector of the bitmap). */
	int fd = open(p("pc.vhd"), O_RDWR);
	uint32_t be;
	assert_int_equal(pread(fd, &be, 4, 1536 + 3 * 4), 4);
	uint8_t bm[512] = { 0xFF, 0x00, 0xF0 }; /* sectors 0-7 and 16-19 present */
	assert_int_equal(pwrite(fd, bm, sizeof(bm), (off_t)be32toh(be) * 512), 512);
	close(fd);
	memset(want, 0xAA, MiB);
	memset(want, 0xCC, 4096);
	memset(want + 16 * 512, 0xCC, 4 * 512);
	assert_int_equal(disk_open(p("pc.vhd"), DISK_RDONLY, &d), 0);
	for (int k = 0; k < 2; k++) {
		memset(r, 0, MiB);
		assert_int_equal(disk_pread(d, r, MiB, 3 * MiB), 0);
		assert_memory_equal(r, want, MiB);
	}
	for (int s = 0; s < 32; s++) {
		assert_int_equal(disk_pread(d, r, 512, 3 * MiB + (uint64_t)s * 512), 0);
		assert_memory_equal(r, want + s * 512, 512);
	}
	disk_close(d);
}

/* Compact of a differencing disk (VHD and VHDX): blocks that read the same as the parent go back
 * to it (written with the parent's data, zeros over the parent's zeros, a partial write of the
 * parent's bytes); zeros over the parent's data stay (VHD has no zero blocks) or become zero
 * blocks (VHDX); the child's own data stays. What the disk reads does not change. */
static void test_compact_differencing(void **state)
{
	const char *fmts[] = { "vhd", "vhdx" };
	for (int f = 0; f < 2; f++) {
		char base[32], child[32];
		snprintf(base, sizeof(base), "cdb.%s", fmts[f]);
		snprintf(child, sizeof(child), "cdc.%s", fmts[f]);
		unlink(p(base));
		unlink(p(child));
		struct disk_create_opts o = { .format = fmts[f], .size = 16 * MiB, .block_size = MiB };
		assert_int_equal(disk_create(p(base), &o), 0);
		static uint8_t pa[16 * MiB], want[16 * MiB], got[16 * MiB];
		for (uint64_t b = 0; b < 16; b++)
			for (size_t i = 0; i < MiB; i += 512)
				memset(pa + b * MiB + i, b % 4 == 3 ? 0 : (int)(b * 5 + i / 512 + 1), 512);
		struct disk *d;
		assert_int_equal(disk_open(p(base), 0, &d), 0);
		assert_int_equal(disk_pwrite(d, pa, sizeof(pa), 0), 0);
		disk_close(d);
		o.size = 0;
		o.parent = p(base);
		assert_int_equal(disk_create(p(child), &o), 0);
		memcpy(want, pa, sizeof(want));
		assert_int_equal(disk_open(p(child), 0, &d), 0);
		assert_int_equal(disk_pwrite(d, pa, MiB, 0), 0);                          /* = parent */
		memset(want + MiB, 0x77, MiB);
		assert_int_equal(disk_pwrite(d, want + MiB, MiB, MiB), 0);                /* own data */
		memset(want + 2 * MiB, 0, MiB);
		assert_int_equal(disk_pwrite(d, want + 2 * MiB, MiB, 2 * MiB), 0);        /* zeros */
		assert_int_equal(disk_pwrite(d, want + 3 * MiB, MiB, 3 * MiB), 0);        /* zeros = parent */
		assert_int_equal(disk_pwrite(d, pa + 4 * MiB + 8192, 4096, 4 * MiB + 8192), 0); /* = parent */
		memset(want + 5 * MiB + 8192, 0x99, 4096);
		assert_int_equal(disk_pwrite(d, want + 5 * MiB + 8192, 4096, 5 * MiB + 8192), 0);
		assert_int_equal(disk_pwrite(d, pa + 6 * MiB, MiB, 6 * MiB), 0);          /* = parent, at the end */
		disk_close(d);
		assert_int_equal(disk_open(p(child), DISK_KEEP_LINKAGE, &d), 0);
		struct disk_compact_stats st;
		assert_int_equal(disk_compact(d, NULL, NULL, &st), 0);
		assert_int_equal(st.parent_blocks, 4);
		assert_int_equal(st.zero_blocks, f == 1 ? 1 : 0);
		assert_int_equal(disk_pread(d, got, sizeof(got), 0), 0);
		assert_memory_equal(got, want, sizeof(want));
		disk_close(d);
		/* Kept: blocks 1 and 5, and block 2 in a VHD; the file holds no more than those. */
		uint64_t kept = f == 1 ? 2 : 3;
		assert_true(st.size_after < st.size_before);
		assert_true(st.size_after <= (f == 1 ? 4 * MiB : 64 * 1024) + kept * (MiB + 512));
		assert_int_equal(disk_open(p(child), DISK_RDONLY, &d), 0);
		memset(got, 0, sizeof(got));
		assert_int_equal(disk_pread(d, got, sizeof(got), 0), 0);
		assert_memory_equal(got, want, sizeof(want));
		disk_close(d);
	}
}

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_parse),
		cmocka_unit_test(test_dynamic_and_fixed),
		cmocka_unit_test(test_differencing),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_partial_bitmap),
		cmocka_unit_test(test_compact_differencing),
	};
	return cmocka_run_group_tests_name("vhd", tests, setup, teardown);
}
