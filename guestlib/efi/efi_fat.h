/* FAT12/16/32 (Microsoft FAT Specification) over a partition of a struct efi_blk: mount with BPB
 * validation, case-insensitive path lookup with long file names, directory listing, file reads, and
 * writes: create files and directories (a long-name run plus an 8.3 alias with a numeric tail), write,
 * extend, truncate, delete, attribute changes. Byte-granular underneath, so a FAT with 512-byte
 * sectors inside 2048-byte El Torito media works.
 *
 * The volume is hostile: BPB geometry is validated at mount, every cluster number is range-checked,
 * chains are bounded by the cluster count (a loop is EFI_VOLUME_CORRUPTED), and long-name runs are
 * used only when complete and matching their short entry's checksum.
 *
 *
 * Writes are write-through (nothing is held back but the FAT32 FSInfo hint, written by efi_fat_flush)
 * and ordered so that a crash leaves at worst lost clusters, never a directory entry pointing at
 * unwritten data: clusters are allocated and written before they are linked into a chain or entry.
 * Every FAT copy is updated. Not supported: renames, timestamps other than the fixed fs->date/time.
 * A node is a snapshot: after writing through one node, other copies of it are stale.
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

/* A walk along a cluster chain, with Brent's cycle detection state. */
struct efi_fat_chain {
	uint32_t c, tortoise;
	uint64_t power, lam;
};

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
	uint32_t fat_bytes;       /* bytes of one FAT copy */
	uint32_t nr_fats;
	uint64_t fsinfo_off;      /* FAT32: byte offset of the FSInfo sector, 0 when none */
	uint32_t free_count;      /* FAT32 FSInfo free-cluster count, 0xffffffff when unknown */
	uint32_t next_free;       /* where the next cluster search starts */
	bool fsinfo_dirty;
	bool fsinfo_loaded;       /* FSInfo read (or there is none) */
	uint16_t date, time;      /* stamped on entries written (FAT format; 0x21/0: 1980-01-01 00:00) */
	/* One cached device block each for FAT entries and directory entries. */
	uint64_t fat_cache_blk, dir_cache_blk;
	bool fat_cache_ok, dir_cache_ok;
	/* Where the last directory walk stopped, so that sequential entry access walks the chain once. */
	bool dcur_ok;
	uint32_t dcur_first;
	uint64_t dcur_hops;
	struct efi_fat_chain dcur;
	uint8_t fat_cache[EFI_FAT_CACHE];
	uint8_t dir_cache[EFI_FAT_CACHE];
};

struct efi_fat_node {
	uint32_t first_cluster; /* 0: the root directory (or an empty file) */
	uint32_t size;
	uint8_t attr;           /* FAT_ATTR_* */
	bool is_root;
	/* Where its entry lives (not for the root): the parent directory and the entry indexes. */
	uint32_t parent_cluster;  /* 0 with parent_is_root on FAT12/16 */
	bool parent_is_root;
	uint32_t entry_idx;       /* the short entry */
	uint32_t nr_lfn;          /* long-name entries right before it */
	bool has_entry;           /* false for the root and for "." / ".." entries (never written through) */
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

/* Creates name (one component, no separators) in dir: a file (attr without FAT_ATTR_DIRECTORY, size
 * 0, no cluster) or a directory (one zeroed cluster holding "." and ".."). EFI_ACCESS_DENIED when the
 * name exists, EFI_INVALID_PARAMETER for an invalid name, EFI_VOLUME_FULL when no cluster or (FAT12/16
 * root) no entry is left. */
EFI_STATUS efi_fat_create(struct efi_fat *fs, const struct efi_fat_node *dir, const CHAR16 *name, uint8_t attr,
			  struct efi_fat_node *out);
/* Writes *len bytes at off, extending the file (a gap past the end reads as zeros); *len becomes the
 * count written (less on EFI_VOLUME_FULL). Updates file->size/first_cluster and its entry. */
EFI_STATUS efi_fat_write(struct efi_fat *fs, struct efi_fat_node *file, uint64_t off, const void *buf,
			 size_t *len);
/* Sets the size: shorter frees the clusters past it, longer extends with zeros. */
EFI_STATUS efi_fat_truncate(struct efi_fat *fs, struct efi_fat_node *file, uint64_t size);
/* Removes the entry (long-name run included) and frees its clusters. A directory must be empty
 * (EFI_ACCESS_DENIED otherwise); the root cannot be deleted. */
EFI_STATUS efi_fat_delete(struct efi_fat *fs, const struct efi_fat_node *node);
/* Sets the attribute byte (the directory bit cannot change). */
EFI_STATUS efi_fat_set_attr(struct efi_fat *fs, struct efi_fat_node *node, uint8_t attr);
/* Writes the FAT32 FSInfo hint when it changed. */
EFI_STATUS efi_fat_flush(struct efi_fat *fs);
/* The volume label of the root directory's label entry (up to 11 characters, trailing spaces
 * dropped; empty when there is none). */
EFI_STATUS efi_fat_label(struct efi_fat *fs, CHAR16 out[12]);
/* Free clusters: the FSInfo count when known, else a walk of the FAT (cost: one entry read per
 * cluster). */
EFI_STATUS efi_fat_free_clusters(struct efi_fat *fs, uint32_t *n);

#endif
