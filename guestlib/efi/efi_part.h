/* Partition discovery on a block device: GPT (UEFI 2.10 section 5.3, primary header with fallback to
 * the alternate one), MBR with extended partitions (5.2) and El Torito boot catalogs (CD/DVD media).
 *
 * The disk is hostile: headers, CRCs, counts and extents are validated before use; a bad table yields
 * an error or fewer partitions, never an out-of-bounds access or an endless chain walk. All reads go
 * through the caller's scratch buffer (no allocation); entry arrays are streamed through it.
 */
#ifndef GEN2VM_GUESTLIB_EFI_PART_H
#define GEN2VM_GUESTLIB_EFI_PART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

/* A block device as the partition and FAT code see it. */
struct efi_blk {
	uint32_t block_size; /* a power of two, 512..4096 */
	uint64_t num_blocks;
	/* Reads/writes count whole blocks at lba; the callee range-checks nothing: callers stay in bounds. */
	EFI_STATUS (*read)(void *ctx, uint64_t lba, uint32_t count, void *buf);
	EFI_STATUS (*write)(void *ctx, uint64_t lba, uint32_t count, const void *buf);
	void *ctx;
};

enum efi_part_kind { EFI_PART_MBR = 1, EFI_PART_GPT = 2, EFI_PART_ELTORITO = 3 };

struct efi_part {
	uint8_t kind;
	uint8_t mbr_type;      /* MBR: os_type */
	uint8_t platform;      /* El Torito: platform id of its section (0xef: UEFI) */
	uint8_t media_type;    /* El Torito: emulation type (0: none) */
	uint32_t number;       /* GPT: entry index + 1; MBR: 1-4 primary, 5+ logical; El Torito: boot entry */
	uint64_t start;        /* in blocks of the device */
	uint64_t blocks;
	EFI_GUID type_guid;    /* GPT */
	uint8_t signature[16]; /* GPT: unique partition GUID; MBR: disk signature in the first 4 bytes */
	uint64_t attributes;   /* GPT */
};

/* The scratch buffer must hold at least one block and one GPT entry (4 KiB is always enough; larger
 * buffers mean fewer reads). *n receives the number of partitions stored in out (at most max). */

/* EFI_SUCCESS (possibly with 0 partitions) or EFI_NOT_FOUND (no valid GPT header),
 * EFI_UNSUPPORTED (geometry or scratch too small), EFI_DEVICE_ERROR (a read failed). *used_alternate
 * (may be NULL) tells whether the primary header was bad and the alternate one was used. */
EFI_STATUS efi_gpt_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			uint32_t max, uint32_t *n, bool *used_alternate);
/* EFI_NOT_FOUND when LBA 0 is not an MBR with a sane table (a superfloppy boot sector, say) or is a
 * protective MBR (then use GPT). */
EFI_STATUS efi_mbr_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			uint32_t max, uint32_t *n);
/* 2048-byte-block media only: bootable entries of the El Torito catalog. EFI_NOT_FOUND without one. */
EFI_STATUS efi_eltorito_scan(const struct efi_blk *b, void *scratch, size_t scratch_size,
			     struct efi_part *out, uint32_t max, uint32_t *n);
/* The policy of the partition driver: El Torito on 2048-byte media, then GPT behind a protective MBR,
 * then MBR. EFI_NOT_FOUND when the disk has no partition table. */
EFI_STATUS efi_part_scan(const struct efi_blk *b, void *scratch, size_t scratch_size, struct efi_part *out,
			 uint32_t max, uint32_t *n);

/* The media device path node of a partition: HARDDRIVE_DEVICE_PATH (GPT, MBR) or CDROM_DEVICE_PATH
 * (El Torito), written to buf (at least sizeof(HARDDRIVE_DEVICE_PATH)); returns its length. */
size_t efi_part_devpath_node(const struct efi_part *p, void *buf);

#endif
