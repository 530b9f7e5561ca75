/* Allocate-on-write block mapping for the VHD and VHDX drivers (see aow.h). */
#include "disk/aow.h"
#include "disk/drivers.h"
#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t aow_bitmap_run(const uint8_t *b, uint64_t bit0, uint64_t max, bool msb_first, bool *present)
{
	unsigned flip = msb_first ? 7 : 0;
#define AOW_BIT(k) ((b[(k) / 8] >> (((k) % 8) ^ flip)) & 1)
	*present = AOW_BIT(bit0);
	uint64_t n = 1;
	while (n < max && AOW_BIT(bit0 + n) == *present)
		n++;
#undef AOW_BIT
	return n;
}

int aow_map_locked(struct disk *d, struct aow *a, uint64_t off, uint64_t len, struct disk_extent *ext)
{
	uint64_t bs = d->block_size, blk = off / bs, in = off % bs;
	uint64_t n = bs - in < len ? bs - in : len;
	uint64_t data_off = 0;
	ext->len = n;
	switch (a->ops->state(d, a->drv, blk, &data_off)) {
	case AOW_PARENT:
		ext->kind = DISK_EXT_PARENT;
		return 0;
	case AOW_ZERO:
		ext->kind = DISK_EXT_ZERO;
		return 0;
	case AOW_DATA:
		ext->kind = DISK_EXT_DATA;
		ext->file_off = data_off + in;
		return 0;
	case AOW_PARTIAL:
		break;
	}
	uint32_t ss = d->logical_sector;
	uint64_t s = in / ss, last = (in + n - 1) / ss, run;
	bool present;
	int rc = a->ops->bitmap_run(d, a->drv, blk, s, last - s + 1, &present, &run);
	if (rc)
		return rc;
	if ((s + run) * ss - in < n)
		ext->len = (s + run) * ss - in;
	ext->kind = present ? DISK_EXT_DATA : DISK_EXT_PARENT;
	ext->file_off = data_off + in;
	return 0;
}

/* disk_read_view_locked's map: drv is the struct aow. */
static int aow_map_cb(struct disk *d, void *drv, uint64_t off, uint64_t len, struct disk_extent *ext)
{
	return aow_map_locked(d, drv, off, len, ext);
}

int aow_read_view_locked(struct disk *d, struct aow *a, uint64_t off, uint8_t *buf, uint64_t len)
{
	return disk_read_view_locked(d, a, aow_map_cb, off, buf, len);
}

/* Gives block blk a fully present home; whole: the write covers the block (nothing to copy up).
 * Lock held. */
static int aow_block_allocate(struct disk *d, struct aow *a, uint64_t blk, bool whole)
{
	uint64_t bs = d->block_size, bstart = blk * bs;
	uint64_t blen = d->size - bstart < bs ? d->size - bstart : bs;
	uint64_t data_off = 0;
	enum aow_state st = a->ops->state(d, a->drv, blk, &data_off);
	/* A block that reads the parent (in whole or in part) keeps what the write leaves out only if
	 * its contents come along; a block that reads zeros gets them from the new, sparse space. */
	bool copy = !whole && (st == AOW_PARENT || st == AOW_PARTIAL);
	bool placed = st != AOW_PARTIAL; /* a partially present block is filled in place */
	int rc = placed ? a->ops->place(d, a->drv, blk, &data_off) : 0;
	if (rc)
		return rc;
	if (copy) {
		/* In pieces: a block may be 256 MiB. The data is made durable by commit. */
		const uint64_t chunk = 1024 * 1024;
		uint8_t *buf = malloc(chunk);
		if (!buf)
			return -ENOMEM;
		for (uint64_t o = 0; o < blen && !rc; o += chunk) {
			uint64_t n = blen - o < chunk ? blen - o : chunk;
			rc = aow_read_view_locked(d, a, bstart + o, buf, n);
			if (!rc)
				rc = disk_file_pwrite(d->fd, buf, n, data_off + o);
		}
		free(buf);
		if (rc) {
			log_error("%s: copying block %llu from the parent failed: %s", d->path,
				  (unsigned long long)blk, strerror(-rc));
			return rc;
		}
	}
	return a->ops->commit(d, a->drv, blk, data_off, placed, copy);
}

int aow_map(struct disk *d, struct aow *a, uint64_t off, uint64_t len, bool write, struct disk_extent *ext)
{
	pthread_mutex_lock(a->lock);
	int rc = aow_map_locked(d, a, off, len, ext);
	if (!rc && write && a->ops->write_begin)
		rc = a->ops->write_begin(d, a->drv);
	if (!rc && write && ext->kind != DISK_EXT_DATA) {
		uint64_t bs = d->block_size, bstart = off / bs * bs;
		uint64_t blen = d->size - bstart < bs ? d->size - bstart : bs;
		rc = aow_block_allocate(d, a, off / bs, off == bstart && len >= blen);
		if (!rc)
			rc = aow_map_locked(d, a, off, len, ext);
	}
	pthread_mutex_unlock(a->lock);
	return rc;
}
