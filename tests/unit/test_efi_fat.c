/* FAT12/16/32 reader (guestlib/efi/efi_fat.c) on volumes made by mkfs.vfat and filled by mtools. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fat12),
		cmocka_unit_test(test_fat16),
		cmocka_unit_test(test_fat32),
		cmocka_unit_test(test_corrupt),
	};
	return cmocka_run_group_tests_name("efi_fat", tests, NULL, NULL);
}
