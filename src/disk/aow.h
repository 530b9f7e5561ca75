/* Private to src/disk: allocate-on-write block mapping shared by the VHD and VHDX drivers.
 *
 * Both formats cut the virtual disk into blocks of d->block_size bytes, each either absent (reads
 * as the parent's data or as zeros), fully present in the file, or partially present (a
 * differencing disk made by another tool: a sector bitmap, one bit per d->logical_sector, says
 * which sectors are in this file). The engine maps a virtual range to its first extent and, on the
 * first write to an absent or partially present block, gives the block a fully present home:
 *   1. a new block is placed by the format (the file grows; the format makes the growth safe);
 *   2. a partial write to a block that reads the parent (or a partially present one) first copies
 *      the block's present contents into its home, so that the block can be marked fully present;
 *   3. the format commits the block's new state: the block table entry is written only once the
 *      data (and anything the format keeps beside it) is durable, so a crash leaves at worst an
 *      unreferenced block, never a table entry pointing at garbage.
 * Sector bitmaps are therefore only read (or, VHD, set to all ones), never updated bit by bit.
 *
 * The format's ops are called with the driver's lock held (struct aow.lock); the engine takes it in
 * aow_map and expects it held in aow_map_locked. The data I/O itself runs outside the lock.
 */
#ifndef GEN2VM_DISK_AOW_H
#define GEN2VM_DISK_AOW_H

#include "disk/disk.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* What one block of the top layer holds. */
enum aow_state {
	AOW_PARENT,  /* not in the file: reads the parent's data (a differencing disk) */
	AOW_ZERO,    /* not in the file: reads as zeros */
	AOW_DATA,    /* fully present at its data offset */
	AOW_PARTIAL, /* allocated at its data offset; the sector bitmap says which sectors are */
};

struct aow_ops {
	/* Block blk's state; for AOW_DATA and AOW_PARTIAL, *data_off is the file offset of its first
	 * data byte. Pure lookup (blk < the number of blocks). */
	enum aow_state (*state)(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off);
	/* For an AOW_PARTIAL block: the run of equal bitmap bits from sector s (of the block), at most
	 * max sectors; *present says whether the run is in this file. 0 or -errno. */
	int (*bitmap_run)(struct disk *d, void *drv, uint64_t blk, uint64_t s, uint64_t max, bool *present,
			  uint64_t *run);
	/* Called before any write is mapped (NULL: nothing to do); VHDX starts its session there (new
	 * write GUIDs before the first data write). 0 or -errno. */
	int (*write_begin)(struct disk *d, void *drv);
	/* Room for a new block blk at the end of the file: grow the file (crash-safely: the image
	 * stays valid if nothing else follows) and set *data_off. Logs its failures. 0 or -errno. */
	int (*place)(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off);
	/* Block blk, whose data lies at data_off (placed: new, else partially present before), becomes
	 * fully present: make the data durable, then point the block table at it. copied: the engine
	 * wrote the block's whole contents (else only the guest's write will). On failure the
	 * in-memory state is as before. Logs its failures. 0 or -errno. */
	int (*commit)(struct disk *d, void *drv, uint64_t blk, uint64_t data_off, bool placed, bool copied);
};

struct aow {
	const struct aow_ops *ops;
	void *drv;             /* the driver's state, handed to every op */
	pthread_mutex_t *lock; /* the driver's lock: guards its block table */
};

/* The run of equal bits of the sector bitmap b from bit bit0, at most max bits long (b holds them
 * all); *present is their value. msb_first: bit k of a byte is its (7 - k)th (VHD), else its kth
 * (VHDX). For bitmap_run ops. */
uint64_t aow_bitmap_run(const uint8_t *b, uint64_t bit0, uint64_t max, bool msb_first, bool *present);

/* The first extent of [off, off+len) (inside the disk, len > 0) in the top layer: DATA with its
 * file offset, ZERO or PARENT; ext->len never crosses a block or a bitmap run. Lock held. 0 or
 * -errno (a sector bitmap that cannot be read). */
int aow_map_locked(struct disk *d, struct aow *a, uint64_t off, uint64_t len, struct disk_extent *ext);

/* The disk_map_fn of a block-mapped driver: aow_map_locked under the lock; for a write, calls
 * write_begin and gives a block that is not present where the write starts a fully present home
 * (see above), then returns its DATA extent. 0 or -errno (logged). */
int aow_map(struct disk *d, struct aow *a, uint64_t off, uint64_t len, bool write, struct disk_extent *ext);

/* Reads [off, off+len) of d as it reads now (this file, the parent, zeros) into buf. Lock held.
 * 0 or -errno. */
int aow_read_view_locked(struct disk *d, struct aow *a, uint64_t off, uint8_t *buf, uint64_t len);

#endif
