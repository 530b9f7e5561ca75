/* Private to the VHDX driver: what the runtime driver (vhdx.c) shares with the offline tools
 * (vhdx_tools.c: create, resize, compact).
 *
 * vhdx.c owns the open image: parsing (untrusted input: every check lives there), log replay,
 * mapping and I/O, discard, and the log transactions below through which every metadata change goes.
 * vhdx_tools.c changes an image only through those transactions (or, create, builds a new file
 * that no one has open) and keeps their crash-safety rules: data durable before the BAT points at
 * it, space released only once nothing refers to it. All functions here are called with v->lock
 * held (or on an image no other thread can reach).
 */
#ifndef GEN2VM_DISK_VHDX_PRIV_H
#define GEN2VM_DISK_VHDX_PRIV_H

#include "disk/aow.h"
#include "disk/disk.h"
#include "disk/vhdx_format.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vhdx {
	pthread_mutex_t lock; /* BAT, headers, log, allocation */
	struct aow aow;       /* block mapping and allocation (vhdx_aow_ops) */
	unsigned flags;
	struct vhdx_header hdr; /* the current header */
	int hdr_slot;           /* 0: at 64 KiB, 1: at 128 KiB */
	uint64_t file_size;     /* apparent size; allocation starts at its MiB round-up */
	uint64_t log_off, log_len;
	uint64_t bat_off, bat_len;
	uint64_t meta_off, meta_len;
	uint64_t vsize_item_off; /* file offset of the virtual disk size item (resize) */
	uint64_t *bat;
	uint64_t bat_entries;
	uint64_t nblocks;
	uint32_t chunk_ratio;
	uint32_t block_size;
	bool has_parent, leave_allocated;
	bool session;        /* headers carry this open's GUIDs and a log GUID */
	bool inplace_dirty;  /* in-place metadata written since the last fdatasync */
	uint64_t log_seq;
	uint64_t disk_end;      /* the file's real size; file_size may be larger while a pending log is
				 * applied in memory */
	/* An image whose log needs replaying: the log's sectors, applied in memory to every metadata
	 * read (data == NULL: a zeroed range), until they are written (read-write opens, once the result
	 * is known to be valid) or for good (read-only opens). */
	struct vhdx_overlay {
		uint64_t off, len;
		uint8_t *data;
	} *ov;
	size_t nov;
	struct {
		bool pending;   /* a valid log sequence awaits replay (it is in the overlay) */
		uint64_t entries, seq_first, seq_last, sectors, zeroed, last_file_offset;
		char summary[256];
	} replay;
	/* Differencing images from other tools: the sector bitmap of each chunk (1 MiB), read on
	 * first use instead of once per request; NULL: not read. This driver never writes sector
	 * bitmaps (a written block becomes fully present), so a cached one stays true. */
	uint8_t **sbc;
	uint64_t nsbc;
	uint8_t linkage[16], linkage2[16];
	bool has_linkage2;
	char *parent_rel, *parent_abs;
};

/* The vhdx driver's disk_ops: d->ops == &vhdx_ops says d is an open VHDX. */
extern const struct disk_ops vhdx_ops;

static inline uint64_t vhdx_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static inline bool vhdx_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static inline uint64_t vhdx_bat_payload_index(const struct vhdx *v, uint64_t block)
{
	return block + block / v->chunk_ratio;
}

static inline uint64_t vhdx_bat_bitmap_index(const struct vhdx *v, uint64_t chunk)
{
	return chunk * (v->chunk_ratio + 1ull) + v->chunk_ratio;
}

static inline uint64_t vhdx_bat_off_of(uint64_t e)
{
	return (e >> 20) << 20;
}

/* fdatasync of the image: everything written so far (data, in-place metadata) is durable, and no
 * in-place metadata awaits a sync any more. 0 or -errno. */
int vhdx_sync(struct vhdx *v, int fd);

/* Writes the current header (sequence number + 1) into both slots, one after the other, each
 * synced: a crash leaves one valid copy, old or new. 0 or -errno. */
int vhdx_header_update(struct vhdx *v, int fd);

/* Before the first change after open: new FileWriteGuid (and DataWriteGuid unless
 * DISK_KEEP_LINKAGE) and a log GUID, so that a crash from then on leaves a log to replay. No-op
 * once begun. 0 or -errno (logged). */
int vhdx_session_begin(struct disk *d, struct vhdx *v);

/* One log transaction: n 4 KiB metadata sectors (file offsets offs[], contents secs). The previous
 * transaction's in-place writes (and any new block data) are made durable, the entry is written and
 * synced, then the sectors are written in place (durable at the next sync or replayed after a
 * crash). Begins the session if needed. 0 or -errno (logged); -ENOSPC if it exceeds the log. */
int vhdx_log_commit(struct disk *d, struct vhdx *v, int n, const uint64_t *offs, const uint8_t *secs);

/* Logs the BAT sectors holding entries [first, last], already updated in v->bat (at most 64
 * sectors a transaction). 0 or -errno (logged). */
int vhdx_bat_commit(struct disk *d, struct vhdx *v, uint64_t first, uint64_t last);

/* One BAT entry changed to give space back: it was old; punch is the file offset it frees
 * (0: none, the entry had no space). */
struct vhdx_freed {
	uint64_t idx, old, punch;
};

/* The n entries of f (already changed in v->bat) go through the log; if that fails they are put
 * back. Only once they are durable is each one's space (len bytes at punch) released: a crash
 * cannot expose freed space. 0 or -errno. */
int vhdx_release_commit(struct disk *d, struct vhdx *v, const struct vhdx_freed *f, uint64_t n, uint64_t len);

#endif
