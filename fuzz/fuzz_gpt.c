/* libFuzzer target for partition discovery (guestlib/efi/efi_part.c): GPT, MBR with EBR chains and
 * El Torito catalogs.
 *
 * Input: byte 0 picks the block size (512, 2048 or 4096), byte 1 the scratch size; the rest is the
 * disk. A second pass fixes up GPT header and entry-array CRCs so the checks behind them are reached.
 * Must never crash, loop or read outside the disk. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_lib.h"
#include "efi/efi_part.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdisk {
	uint8_t *d;
	uint64_t blocks;
	uint32_t bs;
};

static EFI_STATUS fread_blocks(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	struct fdisk *f = ctx;
	if (lba > f->blocks || count > f->blocks - lba)
		abort(); /* the parser must stay inside the disk */
	memcpy(buf, f->d + lba * f->bs, (size_t)count * f->bs);
	return EFI_SUCCESS;
}

static void fix_gpt(struct fdisk *f, uint64_t lba)
{
	if (lba >= f->blocks)
		return;
	uint8_t *h = f->d + lba * f->bs;
	struct gpt_header g;
	memcpy(&g, h, sizeof(g));
	uint64_t bytes = (uint64_t)g.number_of_partition_entries * g.size_of_partition_entry;
	if (g.partition_entry_lba < f->blocks && bytes <= (f->blocks - g.partition_entry_lba) * f->bs)
		efi_put32(h + offsetof(struct gpt_header, partition_entry_array_crc32),
			  efi_crc32(f->d + g.partition_entry_lba * f->bs, bytes));
	uint32_t hs = g.header_size <= f->bs ? g.header_size : 92;
	efi_put32(h + 16, 0);
	efi_put32(h + 16, efi_crc32(h, hs));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t bss[4] = { 512, 2048, 4096, 512 };
	if (size < 2)
		return 0;
	struct fdisk f = { .bs = bss[data[0] & 3] };
	size_t scratch_size = (size_t)(data[1] + 1) * 64;
	data += 2;
	size -= 2;
	f.blocks = size / f.bs;
	f.d = malloc(f.blocks * f.bs + 1);
	memcpy(f.d, data, f.blocks * f.bs);
	uint8_t *scratch = malloc(scratch_size);
	struct efi_blk b = { .block_size = f.bs, .num_blocks = f.blocks, .read = fread_blocks, .ctx = &f };
	struct efi_part p[16];
	uint32_t n;
	for (int pass = 0; pass < 2; pass++) {
		(void)efi_part_scan(&b, scratch, scratch_size, p, 16, &n);
		(void)efi_gpt_scan(&b, scratch, scratch_size, p, 16, &n, NULL);
		for (uint32_t i = 0; i < n; i++) {
			uint8_t node[64];
			efi_part_devpath_node(&p[i], node);
		}
		fix_gpt(&f, 1);
		if (f.blocks)
			fix_gpt(&f, f.blocks - 1);
	}
	free(scratch);
	free(f.d);
	return 0;
}
