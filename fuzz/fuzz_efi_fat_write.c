/* libFuzzer target for the FAT writer (guestlib/efi/efi_fat.c): the input is a volume image (512-byte
 * blocks, at most 4 MiB) mounted writable; files and directories are created, written, extended,
 * truncated and deleted, and everything in the root is listed, rewritten and deleted. Must never
 * crash, hang, or read or write outside the volume. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_fat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdisk {
	uint8_t *d;
	uint64_t blocks;
};

static EFI_STATUS fread_blocks(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	struct fdisk *f = ctx;
	if (lba > f->blocks || count > f->blocks - lba)
		abort();
	memcpy(buf, f->d + lba * 512, (size_t)count * 512);
	return EFI_SUCCESS;
}

static EFI_STATUS fwrite_blocks(void *ctx, uint64_t lba, uint32_t count, const void *buf)
{
	struct fdisk *f = ctx;
	if (lba > f->blocks || count > f->blocks - lba)
		abort();
	memcpy(f->d + lba * 512, buf, (size_t)count * 512);
	return EFI_SUCCESS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct efi_fat fs;
	static struct efi_fat_node root, n, m, d;
	static uint8_t buf[20000];
	static uint8_t img[4 << 20];
	if (size > sizeof(img))
		return 0;
	memcpy(img, data, size);
	struct fdisk f = { img, size / 512 };
	struct efi_blk b = { .block_size = 512, .num_blocks = f.blocks, .read = fread_blocks, .write = fwrite_blocks,
			     .ctx = &f };
	if (EFI_ERROR(efi_fat_mount(&fs, &b, 0, f.blocks)))
		return 0;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	efi_fat_root(&fs, &root);
	size_t len;
	if (!EFI_ERROR(efi_fat_create(&fs, &root, u"A new file with a long name.txt", 0, &n))) {
		len = sizeof(buf);
		(void)efi_fat_write(&fs, &n, 3, buf, &len);
		(void)efi_fat_truncate(&fs, &n, 100);
		(void)efi_fat_truncate(&fs, &n, 7000);
	}
	if (!EFI_ERROR(efi_fat_create(&fs, &root, u"New Dir", FAT_ATTR_DIRECTORY, &d))) {
		static const CHAR16 *const names[] = { u"same basis name.dat", u"same basis name number two.dat",
							u"SAME BASIS NAME~1.DAT", u"x" };
		for (int i = 0; i < 12; i++) {
			CHAR16 nm[64];
			size_t k = 0;
			for (const CHAR16 *p = names[i % 4]; *p && k < 40; p++)
				nm[k++] = *p;
			nm[k++] = (CHAR16)('a' + i);
			nm[k] = 0;
			(void)efi_fat_create(&fs, &d, nm, 0, &m);
		}
		(void)efi_fat_delete(&fs, &d);
	}
	uint64_t cookie = 0;
	for (int i = 0; i < 32 && !EFI_ERROR(efi_fat_readdir(&fs, &root, &cookie, &n)); i++) {
		if (n.attr & FAT_ATTR_DIRECTORY) {
			uint64_t c2 = 0;
			if (!EFI_ERROR(efi_fat_readdir(&fs, &n, &c2, &m)) && !(m.attr & FAT_ATTR_DIRECTORY)) {
				len = 600;
				(void)efi_fat_write(&fs, &m, m.size / 2, buf, &len);
				(void)efi_fat_delete(&fs, &m);
			}
		} else {
			len = 1000;
			(void)efi_fat_write(&fs, &n, n.size > 500 ? n.size - 500 : 0, buf, &len);
			(void)efi_fat_set_attr(&fs, &n, FAT_ATTR_HIDDEN);
			if (i & 1)
				(void)efi_fat_truncate(&fs, &n, 0);
		}
		(void)efi_fat_delete(&fs, &n);
	}
	(void)efi_fat_flush(&fs);
	uint32_t free_clusters;
	(void)efi_fat_free_clusters(&fs, &free_clusters);
	return 0;
}
