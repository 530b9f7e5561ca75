/* FAT12/16/32 reader (Microsoft FAT Specification) over a partition of a struct efi_blk: mount with
 * BPB validation, case-insensitive path lookup with long file names, directory listing and file reads.
 * Byte-granular underneath, so a FAT with 512-byte sectors inside 2048-byte El Torito media works.
 *
 * The volume is hostile: BPB geometry is validated at mount, every cluster number is range-checked,
 * chains are bounded by the cluster count (a loop is EFI_VOLUME_CORRUPTED), and long-name runs are
 * used only when complete and matching their short entry's checksum.
 *
 * WRITE SUPPORT IS NOT IMPLEMENTED YET (create, write, delete, directory updates).
 */
#ifndef GEN2VM_GUESTLIB_EFI_FAT_H
#define GEN2VM_GUESTLIB_EFI_FAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efi/efi_part.h"
#include "gen2vm/proto/efi.h"

#define EFI_FAT_NAME_MAX 255
#define EFI_FAT_CACHE 4096

struct efi_fat {
	const struct efi_blk *blk;
	uint64_t base;            /* byte offset of the volume on the device */
	uint64_t size;            /* bytes */
	uint32_t bps;             /* bytes per sector */
	uint32_t cluster_size;    /* bytes */
	uint8_t type;             /* 12, 16 or 32 */
	uint64_t fat_off;         /* byte offset of the first FAT, relative to base */
	uint64_t root_off;        /* FAT12/16: byte offset of the fixed root directory */
	uint32_t root_entries;    /* FAT12/16 */
	uint32_t root_cluster;    /* FAT32 */
	uint64_t data_off;        /* byte offset of cluster 2 */
	uint32_t clusters;        /* data clusters: valid numbers are 2 .. clusters + 1 */
	/* One cached device block each for FAT entries and directory entries. */
	uint64_t fat_cache_blk, dir_cache_blk;
	bool fat_cache_ok, dir_cache_ok;
	uint8_t fat_cache[EFI_FAT_CACHE];
	uint8_t dir_cache[EFI_FAT_CACHE];
};

struct efi_fat_node {
	uint32_t first_cluster; /* 0: the root directory (or an empty file) */
	uint32_t size;
	uint8_t attr;           /* FAT_ATTR_* */
	bool is_root;
	CHAR16 name[EFI_FAT_NAME_MAX + 1];
};

/* Mounts the volume at [start_lba, start_lba + blocks) of b. EFI_UNSUPPORTED: not a FAT volume;
 * EFI_VOLUME_CORRUPTED: a FAT boot sector with impossible geometry; EFI_DEVICE_ERROR. */
EFI_STATUS efi_fat_mount(struct efi_fat *fs, const struct efi_blk *b, uint64_t start_lba, uint64_t blocks);

void efi_fat_root(const struct efi_fat *fs, struct efi_fat_node *out);
/* path: components separated by '\' (or '/'), "." and ".." understood, case-insensitive.
 * Relative to dir (NULL: the root); a leading separator also means the root. EFI_NOT_FOUND. */
EFI_STATUS efi_fat_lookup(struct efi_fat *fs, const struct efi_fat_node *dir, const CHAR16 *path,
			  struct efi_fat_node *out);
/* The entry after *cookie (start with 0) in dir, skipping ".", ".." and the volume label.
 * EFI_NOT_FOUND at the end. */
EFI_STATUS efi_fat_readdir(struct efi_fat *fs, const struct efi_fat_node *dir, uint64_t *cookie,
			   struct efi_fat_node *out);
/* Reads up to *len bytes at off; *len becomes the count read (0 at or past the end). */
EFI_STATUS efi_fat_read(struct efi_fat *fs, const struct efi_fat_node *file, uint64_t off, void *buf,
			size_t *len);

#endif
