/* FAT12/16/32 (guestlib/efi/efi_fat.c) on volumes made by mkfs.vfat and filled by mtools: the reader,
 * and the writer, whose results are read back by the reader, by mtools and checked by fsck.fat -n. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_fat.h"
#include "efi/efi_lib.h"

struct vol {
	char dir[64];
	uint8_t *data;
	size_t size;
	uint8_t *payload; /* the BOOTX64.EFI bytes */
	size_t payload_size;
};

struct mdisk {
	uint8_t *data;
	uint32_t bs;
	uint64_t blocks;
};

static EFI_STATUS md_read(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	struct mdisk *d = ctx;
	assert_true(lba <= d->blocks && count <= d->blocks - lba);
	memcpy(buf, d->data + lba * d->bs, (size_t)count * d->bs);
	return EFI_SUCCESS;
}

static EFI_STATUS md_write(void *ctx, uint64_t lba, uint32_t count, const void *buf)
{
	struct mdisk *d = ctx;
	assert_true(lba <= d->blocks && count <= d->blocks - lba);
	memcpy(d->data + lba * d->bs, buf, (size_t)count * d->bs);
	return EFI_SUCCESS;
}

static void u16s(CHAR16 *out, const char *s)
{
	while ((*out++ = (uint8_t)*s++))
		;
}

static bool make_volume(struct vol *v, int fat_bits, unsigned mib)
{
	strcpy(v->dir, "/tmp/g2vm-fat-XXXXXX");
	assert_non_null(mkdtemp(v->dir));
	v->payload_size = 100000 + 123;
	v->payload = malloc(v->payload_size);
	for (size_t i = 0; i < v->payload_size; i++)
		v->payload[i] = (uint8_t)(i * 7 + i / 251);
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s/boot.efi", v->dir);
	FILE *f = fopen(cmd, "wb");
	fwrite(v->payload, 1, v->payload_size, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && printf 'title Debian\\n' > entry.conf && printf 'hi\\n' > readme.txt && "
		 "truncate -s %uM vol.img && mkfs.vfat -F %d -s 1 vol.img >/dev/null 2>&1 && "
		 "mmd -i vol.img ::EFI ::EFI/BOOT ::loader ::loader/entries && "
		 "mcopy -i vol.img boot.efi ::EFI/BOOT/BOOTX64.EFI && "
		 "mcopy -i vol.img entry.conf '::loader/entries/A Long Name With Spaces.conf' && "
		 "mcopy -i vol.img readme.txt ::readme.txt",
		 v->dir, mib, fat_bits);
	if (system(cmd))
		return false;
	snprintf(cmd, sizeof(cmd), "%s/vol.img", v->dir);
	f = fopen(cmd, "rb");
	fseek(f, 0, SEEK_END);
	v->size = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	v->data = malloc(v->size);
	assert_int_equal(fread(v->data, 1, v->size, f), v->size);
	fclose(f);
	return true;
}

static void drop_volume(struct vol *v)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", v->dir);
	(void)!system(cmd);
	free(v->data);
	free(v->payload);
}

static void check_volume(struct vol *v, int fat_bits, uint32_t bs)
{
	struct mdisk d = { .data = v->data, .bs = bs, .blocks = v->size / bs };
	struct efi_blk b = { .block_size = bs, .num_blocks = d.blocks, .read = md_read, .ctx = &d };
	static struct efi_fat fs;
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_SUCCESS);
	assert_int_equal(fs.type, fat_bits);

	static struct efi_fat_node n, dir;
	CHAR16 path[128];
	u16s(path, "\\efi\\boot\\bootx64.efi"); /* case-insensitive */
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &n), EFI_SUCCESS);
	assert_int_equal(n.size, v->payload_size);
	uint8_t *buf = malloc(v->payload_size + 10);
	size_t len = v->payload_size + 10;
	assert_int_equal(efi_fat_read(&fs, &n, 0, buf, &len), EFI_SUCCESS);
	assert_int_equal(len, v->payload_size);
	assert_memory_equal(buf, v->payload, v->payload_size);
	/* Unaligned reads across cluster boundaries. */
	for (uint64_t off = 1; off < v->payload_size; off += 4093) {
		len = 1500;
		assert_int_equal(efi_fat_read(&fs, &n, off, buf, &len), EFI_SUCCESS);
		size_t want = v->payload_size - off < 1500 ? v->payload_size - off : 1500;
		assert_int_equal(len, want);
		assert_memory_equal(buf, v->payload + off, want);
	}
	len = 10;
	assert_int_equal(efi_fat_read(&fs, &n, v->payload_size, buf, &len), EFI_SUCCESS);
	assert_int_equal(len, 0);
	free(buf);

	u16s(path, "/LOADER/entries/a long name with SPACES.conf");
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &n), EFI_SUCCESS);
	char text[32] = { 0 };
	len = sizeof(text);
	assert_int_equal(efi_fat_read(&fs, &n, 0, text, &len), EFI_SUCCESS);
	assert_string_equal(text, "title Debian\n");

	/* Relative lookups, "." and "..". */
	u16s(path, "EFI\\BOOT");
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &dir), EFI_SUCCESS);
	assert_true(dir.attr & FAT_ATTR_DIRECTORY);
	u16s(path, "..\\..\\.\\readme.txt");
	assert_int_equal(efi_fat_lookup(&fs, &dir, path, &n), EFI_SUCCESS);
	assert_int_equal(n.size, 3);
	u16s(path, "\\EFI\\BOOT\\missing.efi");
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &n), EFI_NOT_FOUND);
	u16s(path, "\\readme.txt\\x");
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &n), EFI_NOT_FOUND);

	/* Listing: names as written (long names, lower-case short names). */
	efi_fat_root(&fs, &dir);
	uint64_t cookie = 0;
	int seen = 0;
	while (efi_fat_readdir(&fs, &dir, &cookie, &n) == EFI_SUCCESS) {
		char name[64];
		int k = 0;
		while (n.name[k] && k < 63) {
			name[k] = (char)n.name[k];
			k++;
		}
		name[k] = 0;
		seen += !strcmp(name, "EFI") + !strcmp(name, "loader") + !strcmp(name, "readme.txt");
	}
	assert_int_equal(seen, 3);
}

static void run_fat(int bits, unsigned mib)
{
	struct vol v;
	if (!make_volume(&v, bits, mib)) {
		drop_volume(&v);
		skip(); /* mkfs.vfat/mtools missing: scripts/deps.sh test installs them */
	}
	check_volume(&v, bits, 512);
	check_volume(&v, bits, 2048); /* a 512-byte-sector FAT on 2048-byte media (El Torito) */
	drop_volume(&v);
}

static void test_fat12(void **state) { run_fat(12, 2); }
static void test_fat16(void **state) { run_fat(16, 20); }
static void test_fat32(void **state) { run_fat(32, 40); }

static void test_corrupt(void **state)
{
	struct vol v;
	if (!make_volume(&v, 16, 20)) {
		drop_volume(&v);
		skip();
	}
	struct mdisk d = { .data = v.data, .bs = 512, .blocks = v.size / 512 };
	struct efi_blk b = { .block_size = 512, .num_blocks = d.blocks, .read = md_read, .ctx = &d };
	static struct efi_fat fs;
	static struct efi_fat_node n;
	CHAR16 path[64];
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_SUCCESS);
	u16s(path, "\\EFI\\BOOT\\BOOTX64.EFI");
	assert_int_equal(efi_fat_lookup(&fs, NULL, path, &n), EFI_SUCCESS);
	/* Make the file's first cluster point to itself: a loop, not a hang. */
	efi_put16(v.data + fs.fat_off + n.first_cluster * 2, (uint16_t)n.first_cluster);
	uint8_t *buf = malloc(n.size);
	size_t len = n.size;
	fs.fat_cache_ok = false;
	EFI_STATUS st = efi_fat_read(&fs, &n, 0, buf, &len);
	if (st != EFI_VOLUME_CORRUPTED) {
		free(buf);
		drop_volume(&v);
		fail_msg("loop: %#llx", (unsigned long long)st);
	}
	/* A link past the last cluster. */
	efi_put16(v.data + fs.fat_off + n.first_cluster * 2, 0xfff0);
	fs.fat_cache_ok = false;
	len = n.size;
	assert_int_equal(efi_fat_read(&fs, &n, 0, buf, &len), EFI_VOLUME_CORRUPTED);
	free(buf);
	/* Impossible geometry. */
	uint8_t save = v.data[13];
	v.data[13] = 3; /* sectors per cluster not a power of two */
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_UNSUPPORTED);
	v.data[13] = save;
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks / 2), EFI_VOLUME_CORRUPTED); /* bigger than the partition */
	v.data[510] = 0;
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_UNSUPPORTED);
	drop_volume(&v);
}

/* ---- writes ---- */

static void read_all(struct efi_fat *fs, const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	CHAR16 p[300];
	struct efi_fat_node n;
	u16s(p, path);
	assert_int_equal(efi_fat_lookup(fs, NULL, p, &n), EFI_SUCCESS);
	*len = cap;
	assert_int_equal(efi_fat_read(fs, &n, 0, buf, len), EFI_SUCCESS);
	assert_int_equal(*len, n.size);
}

static void write_volume(struct vol *v, int fat_bits, uint32_t bs)
{
	struct mdisk d = { .data = v->data, .bs = bs, .blocks = v->size / bs };
	struct efi_blk b = { .block_size = bs, .num_blocks = d.blocks, .read = md_read, .write = md_write, .ctx = &d };
	static struct efi_fat fs;
	static uint8_t buf[200000];
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_SUCCESS);
	assert_int_equal(fs.type, fat_bits);
	uint32_t free0;
	assert_int_equal(efi_fat_free_clusters(&fs, &free0), EFI_SUCCESS);
	struct efi_fat_node root, n, dir, n2;
	efi_fat_root(&fs, &root);
	CHAR16 name[300];

	/* A new file with a long name, written in unaligned pieces. */
	u16s(name, "Hello World.txt");
	assert_int_equal(efi_fat_create(&fs, &root, name, 0, &n), EFI_SUCCESS);
	assert_int_equal(efi_fat_create(&fs, &root, name, 0, &n2), EFI_ACCESS_DENIED);
	size_t len = 3;
	assert_int_equal(efi_fat_write(&fs, &n, 0, v->payload, &len), EFI_SUCCESS);
	len = v->payload_size - 3;
	assert_int_equal(efi_fat_write(&fs, &n, 3, v->payload + 3, &len), EFI_SUCCESS);
	assert_int_equal(n.size, v->payload_size);

	/* A directory that outgrows its first cluster, 8.3 names and numeric tails. */
	u16s(name, "New Directory");
	assert_int_equal(efi_fat_create(&fs, &root, name, FAT_ATTR_DIRECTORY, &dir), EFI_SUCCESS);
	u16s(name, "README.TXT");
	assert_int_equal(efi_fat_create(&fs, &dir, name, 0, &n2), EFI_SUCCESS);
	assert_int_equal(n2.nr_lfn, 0);
	for (int i = 0; i < 30; i++) {
		char t[64];
		snprintf(t, sizeof(t), "file number %d with a long name.dat", i);
		u16s(name, t);
		assert_int_equal(efi_fat_create(&fs, &dir, name, 0, &n2), EFI_SUCCESS);
		len = (size_t)i * 37;
		assert_int_equal(efi_fat_write(&fs, &n2, 0, v->payload, &len), EFI_SUCCESS);
	}
	u16s(name, "longfilename1.txt");
	assert_int_equal(efi_fat_create(&fs, &dir, name, 0, &n2), EFI_SUCCESS);
	u16s(name, "longfilename2.txt");
	assert_int_equal(efi_fat_create(&fs, &dir, name, 0, &n2), EFI_SUCCESS);
	u16s(name, "bad:name");
	assert_int_equal(efi_fat_create(&fs, &dir, name, 0, &n2), EFI_INVALID_PARAMETER);

	/* Truncate, then extend with zeros; a write past the end leaves a zeroed gap. */
	u16s(name, "EFI/BOOT/BOOTX64.EFI");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_truncate(&fs, &n2, 5000), EFI_SUCCESS);
	assert_int_equal(efi_fat_truncate(&fs, &n2, 9000), EFI_SUCCESS);
	u16s(name, "sparse.bin");
	assert_int_equal(efi_fat_create(&fs, &root, name, 0, &n2), EFI_SUCCESS);
	len = 4;
	assert_int_equal(efi_fat_write(&fs, &n2, 70000, "ABCD", &len), EFI_SUCCESS);
	u16s(name, "empty.txt");
	assert_int_equal(efi_fat_create(&fs, &root, name, 0, &n2), EFI_SUCCESS);

	/* Deletes: a file, a long-named file, a non-empty directory (refused), an emptied one. */
	u16s(name, "readme.txt");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_delete(&fs, &n2), EFI_SUCCESS);
	u16s(name, "loader");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_delete(&fs, &n2), EFI_ACCESS_DENIED);
	u16s(name, "loader/entries/A Long Name With Spaces.conf");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_delete(&fs, &n2), EFI_SUCCESS);
	u16s(name, "loader/entries");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_delete(&fs, &n2), EFI_SUCCESS);
	u16s(name, "loader/..");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_SUCCESS);
	assert_int_equal(efi_fat_delete(&fs, &n2), EFI_ACCESS_DENIED); /* the root */
	assert_int_equal(efi_fat_flush(&fs), EFI_SUCCESS);

	/* Read back through a fresh mount. */
	assert_int_equal(efi_fat_mount(&fs, &b, 0, d.blocks), EFI_SUCCESS);
	read_all(&fs, "\\hello world.TXT", buf, sizeof(buf), &len);
	assert_int_equal(len, v->payload_size);
	assert_memory_equal(buf, v->payload, len);
	read_all(&fs, "new directory\\file number 29 with a long name.dat", buf, sizeof(buf), &len);
	assert_int_equal(len, 29 * 37);
	assert_memory_equal(buf, v->payload, len);
	read_all(&fs, "EFI/BOOT/BOOTX64.EFI", buf, sizeof(buf), &len);
	assert_int_equal(len, 9000);
	assert_memory_equal(buf, v->payload, 5000);
	for (size_t i = 5000; i < 9000; i++)
		assert_int_equal(buf[i], 0);
	read_all(&fs, "sparse.bin", buf, sizeof(buf), &len);
	assert_int_equal(len, 70004);
	for (size_t i = 0; i < 70000; i++)
		assert_int_equal(buf[i], 0);
	assert_memory_equal(buf + 70000, "ABCD", 4);
	u16s(name, "readme.txt");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_NOT_FOUND);
	u16s(name, "loader/entries");
	assert_int_equal(efi_fat_lookup(&fs, NULL, name, &n2), EFI_NOT_FOUND);
	uint32_t free1;
	assert_int_equal(efi_fat_free_clusters(&fs, &free1), EFI_SUCCESS);
	assert_true(free1 < free0);

	/* What other implementations think: fsck.fat finds nothing to fix, mtools reads the files. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s/vol.img", v->dir);
	FILE *f = fopen(cmd, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(v->data, 1, v->size, f), v->size);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "fsck.fat -n %s/vol.img > %s/fsck.out 2>&1 || { cat %s/fsck.out; exit 1; }",
		 v->dir, v->dir, v->dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "cd %s && grep -qiE 'differ|wrong|lost|free cluster|invalid|bad' fsck.out && cat fsck.out",
		 v->dir);
	assert_int_not_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && MTOOLS_SKIP_CHECK=1 mcopy -n -i vol.img '::Hello World.txt' out.bin && cmp -s out.bin boot.efi && "
		 "MTOOLS_SKIP_CHECK=1 mdir -i vol.img '::New Directory' | grep -q 'longfilename2.txt' && "
		 "MTOOLS_SKIP_CHECK=1 mdir -i vol.img '::New Directory' | grep -q 'LONGFI~2 TXT'",
		 v->dir);
	assert_int_equal(system(cmd), 0);
}

static void test_write(int fat_bits, unsigned mib, uint32_t bs)
{
	struct vol v;
	if (!make_volume(&v, fat_bits, mib))
		skip();
	write_volume(&v, fat_bits, bs);
	drop_volume(&v);
}

static void test_write_fat12(void **state)
{
	(void)state;
	test_write(12, 2, 512);
}

static void test_write_fat16(void **state)
{
	(void)state;
	test_write(16, 16, 2048); /* partial-block writes through 2048-byte media */
}

static void test_write_fat32(void **state)
{
	(void)state;
	test_write(32, 40, 512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fat12),
		cmocka_unit_test(test_fat16),
		cmocka_unit_test(test_fat32),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_write_fat12),
		cmocka_unit_test(test_write_fat16),
		cmocka_unit_test(test_write_fat32),
	};
	return cmocka_run_group_tests_name("efi_fat", tests, NULL, NULL);
}
