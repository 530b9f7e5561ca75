/* libFuzzer target for the firmware's FAT12/16/32 reader (guestlib/efi/efi_fat.c).
 *
 * Input: a volume image (512-byte blocks). Mounted, the root listed, every entry looked up by name and
 * read (files) or listed (directories), plus the boot path. Must never crash, hang or read outside the
 * volume. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_fat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdisk {
	const uint8_t *d;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct efi_fat fs;
	static struct efi_fat_node root, n, m;
	static uint8_t buf[8192];
	struct fdisk f = { data, size / 512 };
	struct efi_blk b = { .block_size = 512, .num_blocks = f.blocks, .read = fread_blocks, .ctx = &f };
	if (EFI_ERROR(efi_fat_mount(&fs, &b, 0, f.blocks)))
		return 0;
	static const CHAR16 boot[] = u"\\EFI\\BOOT\\BOOTX64.EFI";
	if (!EFI_ERROR(efi_fat_lookup(&fs, NULL, boot, &n)) && !(n.attr & FAT_ATTR_DIRECTORY)) {
		size_t len = sizeof(buf);
		(void)efi_fat_read(&fs, &n, 0, buf, &len);
	}
	efi_fat_root(&fs, &root);
	uint64_t cookie = 0;
	for (int i = 0; i < 64 && !EFI_ERROR(efi_fat_readdir(&fs, &root, &cookie, &n)); i++) {
		if (EFI_ERROR(efi_fat_lookup(&fs, &root, n.name, &m)))
			continue;
		if (m.attr & FAT_ATTR_DIRECTORY) {
			uint64_t c2 = 0;
			static struct efi_fat_node k;
			for (int j = 0; j < 64 && !EFI_ERROR(efi_fat_readdir(&fs, &m, &c2, &k)); j++)
				;
		} else {
			size_t len = sizeof(buf);
			(void)efi_fat_read(&fs, &m, m.size > 100 ? m.size - 100 : 0, buf, &len);
		}
	}
	return 0;
}
