/* VHDX offline tools (`gen2vm vhd create/resize/compact`): building a new image, growing one,
 * compacting one. They work on an image opened read-write (and locked) by disk_open, or, create,
 * on a new file; every change to an existing image goes through the runtime driver's log
 * transactions (vhdx_priv.h), so the crash-safety rules are the driver's. The I/O path never
 * calls into this file.
 */
#include "disk/crc32c.h"
#include "disk/disk.h"
#include "disk/drivers.h"
#include "disk/vhdx.h"
#include "disk/vhdx_format.h"
#include "disk/vhdx_priv.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- resize ------------------------------------------------------------------------------------------ */

int vhdx_resize(struct disk *d, uint64_t new_size)
{
	struct vhdx *v = d->priv;
	if (d->ops != &vhdx_ops || d->readonly)
		return -EINVAL;
	if (new_size % d->logical_sector || !new_size || new_size > VHDX_MAX_SIZE) {
		log_error("%s: new size must be a multiple of %u bytes and at most 64 TiB", d->path,
			  d->logical_sector);
		return -EINVAL;
	}
	if (new_size < d->size) {
		log_error("%s: shrinking is not supported (%llu < %llu bytes)", d->path,
			  (unsigned long long)new_size, (unsigned long long)d->size);
		return -EINVAL;
	}
	if (new_size == d->size)
		return 0;
	pthread_mutex_lock(&v->lock);
	int rc = 0;
	uint64_t nblocks = (new_size + v->block_size - 1) / v->block_size;
	uint64_t nchunks = (nblocks + v->chunk_ratio - 1) / v->chunk_ratio;
	uint64_t entries = v->has_parent ? nchunks * (v->chunk_ratio + 1ull)
					 : nblocks + (nblocks - 1) / v->chunk_ratio;
	uint64_t alloc = vhdx_round_up(entries * 8, 4096);
	uint64_t *bat = calloc(1, alloc);
	if (!bat) {
		rc = -ENOMEM;
		goto out;
	}
	/* The BAT layout depends only on the chunk ratio: old entries keep their index. */
	memcpy(bat, v->bat, v->bat_entries * 8);
	if (v->leave_allocated) {
		/* A fixed disk stays fixed: allocate the new blocks now (file grows, zeros). */
		uint64_t home = vhdx_round_up(v->file_size, VHDX_MiB);
		for (uint64_t b = v->nblocks; b < nblocks; b++)
			bat[vhdx_bat_payload_index(v, b)] =
				(home + (b - v->nblocks) * v->block_size) | VHDX_PAYLOAD_FULLY_PRESENT;
		/* The previously partial last block may now need its full length: it has it. */
		uint64_t end = home + (nblocks - v->nblocks) * v->block_size;
		if (nblocks > v->nblocks && (fallocate(d->fd, 0, (off_t)home, (off_t)(end - home)) &&
					     (errno != EOPNOTSUPP || ftruncate(d->fd, (off_t)end)))) {
			rc = -errno;
			log_error("%s: cannot grow the file: %s", d->path, strerror(errno));
			free(bat);
			goto out;
		}
		if (end > v->file_size)
			v->file_size = end;
	}
	if (!v->session && (rc = vhdx_session_begin(d, v))) {
		free(bat);
		goto out;
	}
	if (entries * 8 > v->bat_len) {
		/* Move the BAT to the end of the file, then switch the region table to it through the
		 * log: until that entry is durable the old BAT and size are still the image. */
		uint64_t nlen = vhdx_round_up(entries * 8, VHDX_MiB);
		uint64_t noff = vhdx_round_up(v->file_size, VHDX_MiB);
		if (ftruncate(d->fd, (off_t)(noff + nlen)) ||
		    (rc = disk_file_pwrite(d->fd, bat, alloc, noff))) {
			rc = rc ? rc : -errno;
			log_error("%s: cannot write the new BAT: %s", d->path, strerror(-rc));
			free(bat);
			goto out;
		}
		v->file_size = noff + nlen;
		uint8_t *secs = calloc(3, 4096);
		uint8_t *rt = malloc(VHDX_REGION_SIZE);
		if (!secs || !rt || (rc = disk_file_pread(d->fd, rt, VHDX_REGION_SIZE, VHDX_REGION1_OFF))) {
			rc = rc ? rc : -ENOMEM;
			free(secs);
			free(rt);
			free(bat);
			goto out;
		}
		struct vhdx_region_hdr *rh = (void *)rt;
		bool moved = false;
		for (uint32_t i = 0; i < rh->entry_count && i < 126; i++) {
			struct vhdx_region_entry *re = (void *)(rt + 16 + 32 * (size_t)i);
			if (!memcmp(re->guid, VHDX_GUID_BAT, 16)) {
				re->file_offset = noff;
				re->length = (uint32_t)nlen;
				moved = true;
			}
		}
		rh->checksum = 0;
		rh->checksum = crc32c(0, rt, VHDX_REGION_SIZE);
		/* The table's entries all lie in its first 4 KiB (at most 126 regions here). */
		if (!moved || rh->entry_count > 126) {
			rc = -EINVAL;
			free(secs);
			free(rt);
			free(bat);
			goto out;
		}
		memcpy(secs, rt, 4096);
		memcpy(secs + 4096, rt, 4096);
		uint64_t so = v->vsize_item_off & ~4095ull;
		rc = disk_file_pread(d->fd, secs + 8192, 4096, so);
		if (!rc) {
			memcpy(secs + 8192 + (v->vsize_item_off - so), &new_size, 8);
			uint64_t offs[3] = { VHDX_REGION1_OFF, VHDX_REGION2_OFF, so };
			/* The region table's checksum covers 64 KiB, of which only the first 4 KiB change. */
			rc = vhdx_log_commit(d, v, 3, offs, secs);
		}
		free(secs);
		free(rt);
		if (rc) {
			free(bat);
			goto out;
		}
		v->bat_off = noff;
		v->bat_len = nlen;
	} else {
		/* New entries land in the existing BAT region. They are not consulted before the size
		 * changes, so they are logged first (in as many transactions as needed), and then the
		 * size item alone switches the disk to its new size. */
		uint64_t old_entries = v->bat_entries;
		free(v->bat);
		v->bat = bat;
		v->bat_entries = entries;
		bat = NULL;
		rc = vhdx_bat_commit(d, v, old_entries - 1, entries - 1);
		uint8_t sec[4096];
		uint64_t so = v->vsize_item_off & ~4095ull;
		if (!rc)
			rc = disk_file_pread(d->fd, sec, 4096, so);
		if (!rc) {
			memcpy(sec + (v->vsize_item_off - so), &new_size, 8);
			rc = vhdx_log_commit(d, v, 1, &so, sec);
		}
		if (rc)
			goto out;
		v->nblocks = nblocks;
		d->size = new_size;
		rc = vhdx_sync(v, d->fd);
		goto out;
	}
	free(v->bat);
	v->bat = bat;
	v->bat_entries = entries;
	v->nblocks = nblocks;
	d->size = new_size;
	rc = vhdx_sync(v, d->fd);
out:
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* --- compact ---------------------------------------------------------------------------------------- */

/* disk_relocate's move: the copy is made durable by vhdx_log_commit's first fdatasync, before the
 * log entry that points the BAT at it; until that entry is durable the old copy is the block. */
static int vhdx_compact_move(struct disk *d, void *drv, uint64_t idx, uint64_t from, uint64_t to,
			     uint64_t len)
{
	struct vhdx *v = drv;
	int rc = disk_file_copy(d->fd, from, to, len);
	if (rc) {
		log_error("%s: copying a block from %llu to %llu failed: %s", d->path,
			  (unsigned long long)from, (unsigned long long)to, strerror(-rc));
		return rc;
	}
	uint64_t old = v->bat[idx];
	v->bat[idx] = to | (old & (VHDX_MiB - 1));
	rc = vhdx_bat_commit(d, v, idx, idx);
	if (rc)
		v->bat[idx] = old;
	return rc;
}

/* A differencing disk's sector bitmaps that no partially present block needs any more (their
 * blocks were written in full or released) give back their 1 MiB: state NOT_PRESENT through
 * the log first, then the space. Lock held. */
static int vhdx_bitmaps_release_locked(struct disk *d, struct vhdx *v)
{
	if (!v->has_parent)
		return 0; /* only differencing disks have sector bitmaps */
	uint64_t nchunks = (v->nblocks + v->chunk_ratio - 1) / v->chunk_ratio, n = 0;
	struct vhdx_freed *f = malloc(sizeof(*f) * (nchunks + 1));
	if (!f)
		return -ENOMEM;
	for (uint64_t c = 0; c < nchunks; c++) {
		uint64_t idx = vhdx_bat_bitmap_index(v, c);
		if ((v->bat[idx] & 7) != VHDX_SB_PRESENT)
			continue;
		bool needed = false;
		for (uint64_t b = c * v->chunk_ratio; b < (c + 1) * v->chunk_ratio && b < v->nblocks && !needed; b++)
			needed = (v->bat[vhdx_bat_payload_index(v, b)] & 7) == VHDX_PAYLOAD_PARTIALLY_PRESENT;
		if (needed)
			continue;
		f[n++] = (struct vhdx_freed){ idx, v->bat[idx], vhdx_bat_off_of(v->bat[idx]) };
		v->bat[idx] = VHDX_SB_NOT_PRESENT;
		if (c < v->nsbc) { /* no block of the chunk reads it any more */
			free(v->sbc[c]);
			v->sbc[c] = NULL;
		}
	}
	int rc = vhdx_release_commit(d, v, f, n, VHDX_SECTOR_BITMAP_SIZE);
	free(f);
	return rc;
}

int vhdx_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx,
		 uint64_t *moved)
{
	struct vhdx *v = d->priv;
	*moved = 0;
	if (d->readonly)
		return -EROFS;
	if (v->leave_allocated)
		return 0;
	pthread_mutex_lock(&v->lock);
	int rc = 0;
	struct disk_used *u = malloc(sizeof(*u) * (v->bat_entries + 4));
	if (!u) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = vhdx_bitmaps_release_locked(d, v)))
		goto out;
	size_t n = 0;
	/* Headers and region tables, the log, the metadata and the BAT stay where they are. */
	u[n++] = (struct disk_used){ 0, VHDX_MiB, DISK_USED_FIXED };
	u[n++] = (struct disk_used){ v->log_off, v->log_len, DISK_USED_FIXED };
	u[n++] = (struct disk_used){ v->meta_off, v->meta_len, DISK_USED_FIXED };
	u[n++] = (struct disk_used){ v->bat_off, v->bat_len, DISK_USED_FIXED };
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t e = v->bat[i], st = e & 7;
		if ((i % (v->chunk_ratio + 1ull)) == v->chunk_ratio) {
			if (st == VHDX_SB_PRESENT) /* a sector bitmap (1 MiB) moves like a block */
				u[n++] = (struct disk_used){ vhdx_bat_off_of(e), VHDX_SECTOR_BITMAP_SIZE, i };
		} else if (st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
			/* Every block keeps its whole block_size of room (also a short last block),
			 * as readers such as qemu-img check expect. */
			u[n++] = (struct disk_used){ vhdx_bat_off_of(e), v->block_size, i };
		}
	}
	uint64_t end;
	rc = disk_relocate(d, v, u, n, VHDX_MiB, vhdx_compact_move, progress, ctx, moved, &end);
	if (rc)
		goto out;
	end = vhdx_round_up(end, VHDX_MiB);
	if (end >= v->file_size)
		goto out;
	/* The file may only shrink once no log entry can be replayed: replay would restore BAT
	 * sectors from before the moves and extend the file to the entries' FileSize again. So:
	 * everything in place and durable, the header's log GUID cleared, then the truncate. */
	rc = vhdx_sync(v, d->fd);
	if (!rc && v->session) {
		memset(v->hdr.log_guid, 0, 16);
		rc = vhdx_header_update(v, d->fd);
		if (!rc)
			v->session = false; /* the next write starts a new session and log GUID */
	}
	if (rc)
		goto out;
	if (ftruncate(d->fd, (off_t)end) || fsync(d->fd)) {
		rc = -errno;
		log_error("%s: cannot truncate the compacted file: %s", d->path, strerror(errno));
		goto out;
	}
	v->file_size = end;
out:
	free(u);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* --- create ---------------------------------------------------------------------------------------- */

static void put_kv(uint8_t *item, uint32_t *pos, struct vhdx_locator_entry *le, const char *k,
		   const char *val)
{
	int kl = disk_utf8_to_utf16le(k, item + *pos, 4096);
	le->key_offset = *pos;
	le->key_length = (uint16_t)kl;
	*pos += (uint32_t)kl;
	int vl = disk_utf8_to_utf16le(val, item + *pos, 4 * PATH_MAX);
	le->value_offset = *pos;
	le->value_length = (uint16_t)(vl < 0 ? 0 : vl);
	*pos += (uint32_t)(vl < 0 ? 0 : vl);
}


int vhdx_create(const char *path, int fd, const struct disk_create_opts *o, struct disk *parent)
{
	uint32_t lss = o->logical_sector ? o->logical_sector : parent ? parent->logical_sector : 512;
	uint32_t pss = o->physical_sector ? o->physical_sector : parent ? parent->physical_sector : 4096;
	uint32_t bs = o->block_size ? o->block_size : parent ? 2 * VHDX_MiB : 32 * VHDX_MiB;
	uint64_t size = o->size ? o->size : parent ? parent->size : 0;
	int rc = 0;
	uint8_t *buf = NULL, *meta = NULL;
	uint64_t *bat = NULL;
	if (lss != 512 && lss != 4096) {
		log_error("%s: logical sector size must be 512 or 4096", path);
		return -EINVAL;
	}
	if (pss != 512 && pss != 4096) {
		log_error("%s: physical sector size must be 512 or 4096", path);
		return -EINVAL;
	}
	if (!vhdx_is_pow2(bs) || bs < VHDX_MIN_BLOCK || bs > VHDX_MAX_BLOCK) {
		log_error("%s: block size must be a power of two from 1 MiB to 256 MiB", path);
		return -EINVAL;
	}
	if (!size || size % lss || size > VHDX_MAX_SIZE) {
		log_error("%s: size must be a non-zero multiple of %u bytes, at most 64 TiB", path, lss);
		return -EINVAL;
	}
	if (parent && o->fixed) {
		log_error("%s: a differencing disk cannot be fixed", path);
		return -EINVAL;
	}
	if (parent && parent->logical_sector != lss) {
		log_error("%s: logical sector size %u differs from the parent's (%u)", path, lss,
			  parent->logical_sector);
		return -EINVAL;
	}
	uint32_t cr = (uint32_t)(((1ull << 23) * lss) / bs);
	uint64_t nblocks = (size + bs - 1) / bs, nchunks = (nblocks + cr - 1) / cr;
	uint64_t entries = parent ? nchunks * (cr + 1ull) : nblocks + (nblocks - 1) / cr;
	uint64_t log_off = VHDX_MiB, log_len = VHDX_MiB;
	uint64_t meta_off = 2 * VHDX_MiB, meta_len = VHDX_MiB;
	uint64_t bat_off = 3 * VHDX_MiB, bat_len = vhdx_round_up(entries * 8, VHDX_MiB);
	uint64_t data_off = bat_off + bat_len;
	if (bat_len > UINT32_MAX) {
		log_error("%s: BAT too large; use a larger --block-size", path);
		return -EINVAL;
	}

	buf = calloc(1, VHDX_REGION_SIZE);
	meta = calloc(1, meta_len);
	bat = calloc(1, vhdx_round_up(entries * 8, 4096));
	if (!buf || !meta || !bat) {
		rc = -ENOMEM;
		goto out;
	}
	/* File type identifier. */
	memcpy(buf, "vhdxfile", 8);
	disk_utf8_to_utf16le("gen2vm", buf + 8, 512);
	if ((rc = disk_file_pwrite(fd, buf, 64 * 1024, 0)))
		goto io;
	/* Metadata. */
	struct vhdx_meta_hdr *mh = (void *)meta;
	memcpy(mh->signature, "metadata", 8);
	uint32_t item = VHDX_META_TABLE_SIZE, ne = 0;
	struct vhdx_meta_entry *me = (void *)(meta + 32);
#define ADD(guid, len, fl)                                                                         \
	do {                                                                                       \
		memcpy(me[ne].item_id, guid, 16);                                                  \
		me[ne].offset = item;                                                              \
		me[ne].length = (len);                                                             \
		me[ne].flags = (fl);                                                               \
		ne++;                                                                              \
	} while (0)
	struct vhdx_file_params fp = { .block_size = bs,
				       .flags = (o->fixed ? 1u : 0u) | (parent ? 2u : 0u) };
	ADD(VHDX_GUID_FILE_PARAMS, 8, VHDX_META_IS_REQUIRED);
	memcpy(meta + item, &fp, 8);
	item += 8;
	ADD(VHDX_GUID_VDISK_SIZE, 8, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK);
	memcpy(meta + item, &size, 8);
	item += 8;
	uint8_t id[16];
	disk_guid_generate(id);
	ADD(VHDX_GUID_PAGE83, 16, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK);
	memcpy(meta + item, id, 16);
	item += 16;
	ADD(VHDX_GUID_LOGICAL_SECTOR, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK);
	memcpy(meta + item, &lss, 4);
	item += 4;
	ADD(VHDX_GUID_PHYSICAL_SECTOR, 4, VHDX_META_IS_REQUIRED | VHDX_META_IS_VIRTUAL_DISK);
	memcpy(meta + item, &pss, 4);
	item += 4;
	if (parent) {
		struct vhdx *pv = parent->priv;
		uint8_t *pl = meta + item;
		struct vhdx_locator_hdr lh = { .key_value_count = 3 };
		memcpy(lh.locator_type, VHDX_GUID_LOCATOR_VHDX, 16);
		memcpy(pl, &lh, sizeof(lh));
		struct vhdx_locator_entry le[3];
		uint32_t pos = sizeof(lh) + sizeof(le);
		char g[39];
		disk_guid_format(pv->hdr.data_write_guid, g);
		char *rel = disk_relpath(path, parent->path);
		char *abs = realpath(parent->path, NULL);
		if (!rel || !abs) {
			free(rel);
			free(abs);
			log_error("%s: cannot resolve the parent path %s", path, parent->path);
			rc = -EINVAL;
			goto out;
		}
		put_kv(pl, &pos, &le[0], "parent_linkage", g);
		put_kv(pl, &pos, &le[1], "relative_path", rel);
		put_kv(pl, &pos, &le[2], "absolute_win32_path", abs);
		free(rel);
		free(abs);
		memcpy(pl + sizeof(lh), le, sizeof(le));
		ADD(VHDX_GUID_PARENT_LOCATOR, pos, VHDX_META_IS_REQUIRED);
		item += pos;
	}
#undef ADD
	mh->entry_count = (uint16_t)ne;
	if ((rc = disk_file_pwrite(fd, meta, meta_len, meta_off)))
		goto io;
	/* BAT (fixed: every block allocated in order). */
	if (o->fixed)
		for (uint64_t b = 0; b < nblocks; b++)
			bat[b + b / cr] = (data_off + b * bs) | VHDX_PAYLOAD_FULLY_PRESENT;
	if ((rc = disk_file_pwrite(fd, bat, vhdx_round_up(entries * 8, 4096), bat_off)))
		goto io;
	uint64_t end = o->fixed ? data_off + nblocks * bs : data_off;
	if (ftruncate(fd, (off_t)end)) {
		rc = -errno;
		goto io;
	}
	if (o->fixed) {
		/* Allocate for real (fixed means the space is reserved), in steps for progress. */
		uint64_t step = 256 * VHDX_MiB;
		for (uint64_t a = data_off; a < end; a += step) {
			uint64_t n = end - a < step ? end - a : step;
			if (fallocate(fd, 0, (off_t)a, (off_t)n)) {
				if (errno == EOPNOTSUPP)
					break;
				rc = -errno;
				goto io;
			}
			if (o->progress)
				o->progress(o->progress_ctx, a + n - data_off, end - data_off);
		}
	}
	/* Region tables. */
	memset(buf, 0, VHDX_REGION_SIZE);
	struct vhdx_region_hdr *rh = (void *)buf;
	memcpy(rh->signature, "regi", 4);
	rh->entry_count = 2;
	struct vhdx_region_entry re[2] = { { .file_offset = bat_off, .length = (uint32_t)bat_len, .required = 1 },
					   { .file_offset = meta_off, .length = (uint32_t)meta_len, .required = 1 } };
	memcpy(re[0].guid, VHDX_GUID_BAT, 16);
	memcpy(re[1].guid, VHDX_GUID_METADATA, 16);
	memcpy(buf + 16, re, sizeof(re));
	rh->checksum = crc32c(0, buf, VHDX_REGION_SIZE);
	if ((rc = disk_file_pwrite(fd, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFF)) ||
	    (rc = disk_file_pwrite(fd, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFF)))
		goto io;
	/* Headers last, after everything they describe is durable. */
	if (fdatasync(fd)) {
		rc = -errno;
		goto io;
	}
	struct vhdx_header h = { .version = 1, .log_length = (uint32_t)log_len, .log_offset = log_off };
	memcpy(h.signature, "head", 4);
	disk_guid_generate(h.file_write_guid);
	disk_guid_generate(h.data_write_guid);
	for (int i = 0; i < 2; i++) {
		h.seq = (uint64_t)i + 1;
		h.checksum = 0;
		h.checksum = crc32c(0, &h, sizeof(h));
		if ((rc = disk_file_pwrite(fd, &h, sizeof(h), i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF)))
			goto io;
	}
	goto out;
io:
	log_error("%s: cannot write the new VHDX: %s", path, strerror(-rc));
out:
	free(buf);
	free(meta);
	free(bat);
	return rc;
}
