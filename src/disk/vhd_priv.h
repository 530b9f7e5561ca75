/* Private to the VHD driver: what the runtime driver (vhd.c) shares with the offline tools
 * (vhd_tools.c: create, resize, compact).
 *
 * vhd.c owns the open image: parsing (untrusted input: every check lives there), mapping and I/O,
 * discard and release, close. vhd_tools.c changes an open image (locked, read-write) with the
 * driver's lock held, or builds a new file no one has open, and keeps the driver's crash-safety
 * rules: the file is a valid VHD at every step (its trailing footer moves first), and data is
 * durable before a BAT entry points at it.
 */
#ifndef GEN2VM_DISK_VHD_PRIV_H
#define GEN2VM_DISK_VHD_PRIV_H

#include "disk/aow.h"
#include "disk/disk.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* All on-disk fields are big-endian. */
#define VHD_FOOTER 512
#define VHD_DYNHDR 1024
#define VHD_UNALLOC 0xFFFFFFFFu
#define VHD_MAX_SIZE (2040ull << 30)
#define VHD_EPOCH 946684800 /* 2000-01-01 00:00:00 UTC */
#define VHD_PLAT_W2RU 0x57327275u
#define VHD_PLAT_W2KU 0x57326B75u

struct vhd_footer {
	char cookie[8];
	uint32_t features, version;
	uint64_t data_offset;
	uint32_t timestamp;
	char creator_app[4];
	uint32_t creator_ver, creator_os;
	uint64_t orig_size, cur_size;
	uint16_t cyls;
	uint8_t heads, spt;
	uint32_t disk_type, checksum;
	uint8_t uuid[16];
	uint8_t saved_state;
	uint8_t reserved[427];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_footer) == 512, "vhd footer");

struct vhd_locator {
	uint32_t code, space, len, reserved;
	uint64_t offset;
} __attribute__((packed));

struct vhd_dynhdr {
	char cookie[8];
	uint64_t data_offset, table_offset;
	uint32_t version, max_entries, block_size, checksum;
	uint8_t parent_uuid[16];
	uint32_t parent_timestamp, reserved;
	uint8_t parent_name[512];
	struct vhd_locator loc[8];
	uint8_t reserved2[256];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_dynhdr) == 1024, "vhd dynamic header");

struct vhd {
	pthread_mutex_t lock;
	struct aow aow; /* block mapping and allocation (vhd_aow_ops) */
	struct vhd_footer footer; /* host byte order except the raw copy below */
	uint8_t footer_raw[512];
	uint64_t file_size;
	uint64_t bat_off;
	uint32_t *bat; /* host order */
	uint32_t max_entries;
	uint32_t block_size, bitmap_size;
	uint64_t nblocks;
	uint8_t *full; /* differencing: 1 when a block's bitmap is known to be all ones */
	/* Differencing: the sector bitmaps of partially present blocks, read once on first use
	 * (NULL: not read yet). This driver never changes a bitmap except to all ones (full). */
	uint8_t **bmc;
	char *parent_rel, *parent_abs;
	uint8_t parent_uuid[16];
};

/* The driver's disk_ops: d->ops says whether d is an open VHD, and which kind. */
extern const struct disk_ops vhd_ops, vhd_fixed_ops;

/* The specification's checksum: the one's complement of the byte sum of p[0, len), the four
 * bytes at skip_at (the checksum field) left out. */
uint32_t vhd_checksum(const uint8_t *p, size_t len, size_t skip_at);

/* The footer's multi-byte fields from big-endian to host order, in place. */
void vhd_footer_to_host(struct vhd_footer *f);

/* Writes BAT entry blk (sector of the block's bitmap, or VHD_UNALLOC) in place: one aligned
 * 4-byte write inside a sector, so a crash leaves the old or the new entry. Not synced. */
int vhd_bat_write(struct disk *d, struct vhd *v, uint64_t blk, uint32_t sector);

#endif
