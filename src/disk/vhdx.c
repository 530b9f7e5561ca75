/* VHDX (MS-VHDX v1): fixed, dynamic and differencing images. The runtime driver: open (parsing and
 * log replay), mapping, read/write/flush, discard and release, close, and the log transactions every
 * metadata change goes through. The offline tools (create, resize, compact) are in vhdx_tools.c;
 * vhdx_priv.h states what the two share.
 *
 * Crash safety. Every BAT and metadata change is one log transaction:
 *   1. fdatasync: the previous transaction's in-place writes (and any new block's data) are durable;
 *   2. the log entry (with tail = itself) is written at the start of the log, then fdatasync;
 *   3. the sectors are written in place (made durable by step 1 of the next transaction, by a
 *      guest flush, or replayed from the log after a crash).
 * Because every entry is complete in itself and overwrites its predecessor, a torn entry is simply
 * invalid and the image is in the state of the previous, fully applied transaction. The headers use
 * the specification's own alternation (two copies, sequence number, CRC) rather than the log. A new
 * block is made durable (file extension / copied-up data) before its BAT entry is logged, so a BAT
 * entry never points at garbage.
 *
 * Differencing writes copy the parent's data into a new block (or fill a partially present block)
 * and then mark it fully present, so this driver never has to update sector bitmaps; it reads them
 * in images made by other tools. Mapping and allocation are the shared allocate-on-write engine's
 * (aow.h); this file supplies the VHDX-specific ops.
 */
#include "disk/aow.h"
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- small helpers ----------------------------------------------------------------------------- */

int vhdx_sync(struct vhdx *v, int fd)
{
	if (fdatasync(fd))
		return -errno;
	v->inplace_dirty = false;
	return 0;
}

/* --- headers ------------------------------------------------------------------------------------ */

static bool vhdx_header_valid(struct vhdx_header *h)
{
	if (memcmp(h->signature, "head", 4))
		return false;
	uint32_t want = h->checksum;
	h->checksum = 0;
	uint32_t got = crc32c(0, h, sizeof(*h));
	h->checksum = want;
	return got == want;
}

/* Whether the 64 KiB at t are a region table (signature and checksum). */
static bool vhdx_region_table_valid(uint8_t *t)
{
	struct vhdx_region_hdr *rh = (void *)t;
	uint32_t want = rh->checksum;
	rh->checksum = 0;
	uint32_t got = crc32c(0, t, VHDX_REGION_SIZE);
	rh->checksum = want;
	return !memcmp(rh->signature, "regi", 4) && got == want;
}

bool vhdx_remnants(int fd)
{
	struct vhdx_header h;
	for (int i = 0; i < 2; i++)
		if (!disk_file_pread(fd, &h, sizeof(h), i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF) && vhdx_header_valid(&h))
			return true;
	uint8_t *t = malloc(VHDX_REGION_SIZE);
	bool found = false;
	for (int i = 0; t && i < 2 && !found; i++)
		found = !disk_file_pread(fd, t, VHDX_REGION_SIZE, i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF) &&
			vhdx_region_table_valid(t);
	free(t);
	return found;
}

/* Writes the header into the slot that is not current, then makes it current. */
static int vhdx_header_write_one(struct vhdx *v, int fd)
{
	struct vhdx_header h = v->hdr;
	h.seq++;
	h.checksum = 0;
	h.checksum = crc32c(0, &h, sizeof(h));
	int slot = v->hdr_slot ^ 1;
	int rc = disk_file_pwrite(fd, &h, sizeof(h), slot ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
	if (!rc)
		rc = vhdx_sync(v, fd);
	if (rc)
		return rc;
	v->hdr = h;
	v->hdr_slot = slot;
	return 0;
}

/* Both copies end up equal, as the specification recommends after an update. */
int vhdx_header_update(struct vhdx *v, int fd)
{
	int rc = vhdx_header_write_one(v, fd);
	return rc ? rc : vhdx_header_write_one(v, fd);
}

/* First modification after open: new FileWriteGuid/DataWriteGuid, and a log GUID so that a crash
 * from now on leaves a log to replay. */
int vhdx_session_begin(struct disk *d, struct vhdx *v)
{
	if (v->session)
		return 0;
	disk_guid_generate(v->hdr.file_write_guid);
	if (!(v->flags & DISK_KEEP_LINKAGE))
		disk_guid_generate(v->hdr.data_write_guid);
	disk_guid_generate(v->hdr.log_guid);
	int rc = vhdx_sync(v, d->fd); /* anything written before (replay) is durable first */
	if (!rc)
		rc = vhdx_header_update(v, d->fd);
	if (rc) {
		log_error("%s: cannot update the VHDX header: %s", d->path, strerror(-rc));
		return rc;
	}
	v->session = true;
	v->log_seq = 0;
	return 0;
}

/* --- log: writing ------------------------------------------------------------------------------ */

/* Logs n 4 KiB sectors (file offsets offs[], contents secs) and writes them in place. */
int vhdx_log_commit(struct disk *d, struct vhdx *v, int n, const uint64_t *offs,
			   const uint8_t *secs)
{
	int rc = vhdx_session_begin(d, v);
	if (rc)
		return rc;
	uint64_t desc_bytes = vhdx_round_up(64 + 32ull * (uint64_t)n, 4096);
	uint64_t len = desc_bytes + 4096ull * (uint64_t)n;
	if (len > v->log_len)
		return -ENOSPC; /* callers keep transactions far below the smallest log (1 MiB) */
	uint8_t *e = calloc(1, len);
	if (!e)
		return -ENOMEM;
	/* 1: the previous transaction's in-place writes must be durable before its entry goes. */
	rc = vhdx_sync(v, d->fd);
	if (rc)
		goto out;
	uint64_t seq = ++v->log_seq;
	struct vhdx_log_hdr *lh = (void *)e;
	memcpy(lh->signature, "loge", 4);
	lh->entry_length = (uint32_t)len;
	lh->tail = 0;
	lh->seq = seq;
	lh->descriptor_count = (uint32_t)n;
	memcpy(lh->log_guid, v->hdr.log_guid, 16);
	lh->flushed_file_offset = v->file_size;
	lh->last_file_offset = v->file_size;
	for (int i = 0; i < n; i++) {
		struct vhdx_log_desc *ds = (void *)(e + 64 + 32 * i);
		const uint8_t *s = secs + 4096 * (size_t)i;
		memcpy(ds->signature, "desc", 4);
		memcpy(&ds->leading_bytes, s, 8);
		memcpy(&ds->trailing_bytes, s + 4092, 4);
		ds->file_offset = offs[i];
		ds->seq = seq;
		struct vhdx_log_data *dt = (void *)(e + desc_bytes + 4096 * (size_t)i);
		memcpy(dt->signature, "data", 4);
		dt->seq_high = (uint32_t)(seq >> 32);
		dt->seq_low = (uint32_t)seq;
		memcpy(dt->data, s + 8, 4084);
	}
	lh->checksum = crc32c(0, e, len);
	/* 2: the entry, durable. */
	rc = disk_file_pwrite(d->fd, e, len, v->log_off);
	if (!rc)
		rc = vhdx_sync(v, d->fd);
	if (rc)
		goto out;
	/* 3: in place; the log covers them until the next sync. */
	for (int i = 0; i < n && !rc; i++)
		rc = disk_file_pwrite(d->fd, secs + 4096 * (size_t)i, 4096, offs[i]);
	v->inplace_dirty = true;
out:
	if (rc)
		log_error("%s: metadata update failed: %s", d->path, strerror(-rc));
	free(e);
	return rc;
}

/* Logs the BAT sectors holding entries [first, last] (already updated in memory). */
int vhdx_bat_commit(struct disk *d, struct vhdx *v, uint64_t first, uint64_t last)
{
	uint64_t s0 = first * 8 / 4096, s1 = last * 8 / 4096;
	int rc = 0;
	while (s0 <= s1 && !rc) {
		int n = (int)((s1 - s0 + 1) > 64 ? 64 : (s1 - s0 + 1));
		uint8_t *secs = calloc((size_t)n, 4096);
		uint64_t offs[64];
		if (!secs)
			return -ENOMEM;
		for (int i = 0; i < n; i++) {
			uint64_t sec = s0 + (uint64_t)i;
			offs[i] = v->bat_off + sec * 4096;
			uint64_t e0 = sec * 512, cnt = 512;
			if (e0 + cnt > v->bat_entries)
				cnt = v->bat_entries > e0 ? v->bat_entries - e0 : 0;
			memcpy(secs + 4096 * (size_t)i, v->bat + e0, cnt * 8);
		}
		rc = vhdx_log_commit(d, v, n, offs, secs);
		free(secs);
		s0 += (uint64_t)n;
	}
	return rc;
}

/* --- log: replay --------------------------------------------------------------------------------- */

struct log_slot {
	bool valid;
	uint64_t seq;
	uint32_t len, tail;
};

/* Copies len bytes of the circular log starting at off. */
static void log_copy(const uint8_t *log, uint64_t log_len, uint64_t off, uint8_t *out, uint64_t len)
{
	uint64_t first = log_len - off < len ? log_len - off : len;
	memcpy(out, log + off, first);
	memcpy(out + first, log, len - first);
}

/* Structural checks of one entry: signatures, checksum, sequence numbers, and descriptors aligned,
 * after the headers, of sane length. Where its descriptors may write is judged later against the
 * image the log leaves (vhdx_log_check_targets). */
static bool log_entry_check(const struct vhdx *v, const uint8_t *log, uint64_t off,
			    struct log_slot *s, uint8_t *scratch)
{
	struct vhdx_log_hdr lh;
	memcpy(&lh, log + off, sizeof(lh));
	if (memcmp(lh.signature, "loge", 4) || lh.entry_length < 4096 || lh.entry_length % 4096 ||
	    lh.entry_length > v->log_len || lh.tail % 4096 || lh.tail >= v->log_len ||
	    memcmp(lh.log_guid, v->hdr.log_guid, 16) || lh.last_file_offset > VHDX_LOG_MAX_OFFSET ||
	    lh.flushed_file_offset > VHDX_LOG_MAX_OFFSET)
		return false;
	uint64_t desc_bytes = vhdx_round_up(64 + 32ull * lh.descriptor_count, 4096);
	if (desc_bytes > lh.entry_length)
		return false;
	log_copy(log, v->log_len, off, scratch, lh.entry_length);
	((struct vhdx_log_hdr *)scratch)->checksum = 0;
	if (crc32c(0, scratch, lh.entry_length) != lh.checksum)
		return false;
	uint64_t ndata = 0;
	for (uint32_t i = 0; i < lh.descriptor_count; i++) {
		struct vhdx_log_desc ds;
		memcpy(&ds, scratch + 64 + 32 * (size_t)i, sizeof(ds));
		if (ds.seq != lh.seq || ds.file_offset % 4096 || ds.file_offset < VHDX_REGION1_OFF ||
		    ds.file_offset > VHDX_LOG_MAX_OFFSET)
			return false;
		if (!memcmp(ds.signature, "desc", 4)) {
			uint64_t at = desc_bytes + 4096 * ndata++;
			if (at + 4096 > lh.entry_length)
				return false;
			struct vhdx_log_data dt;
			memcpy(&dt, scratch + at, sizeof(dt));
			if (memcmp(dt.signature, "data", 4) || dt.seq_high != (uint32_t)(lh.seq >> 32) ||
			    dt.seq_low != (uint32_t)lh.seq)
				return false;
		} else if (!memcmp(ds.signature, "zero", 4)) {
			if (!ds.leading_bytes || ds.leading_bytes % 4096 || ds.leading_bytes > VHDX_LOG_MAX_OFFSET)
				return false;
		} else {
			return false;
		}
	}
	if (desc_bytes + 4096 * ndata != lh.entry_length)
		return false;
	s->valid = true;
	s->seq = lh.seq;
	s->len = lh.entry_length;
	s->tail = lh.tail;
	return true;
}

/* Adds one entry's descriptors to the overlay (the log's writes, in order, in memory). */
static int log_entry_overlay(struct vhdx *v, const uint8_t *e)
{
	const struct vhdx_log_hdr *lh = (const void *)e;
	uint64_t desc_bytes = vhdx_round_up(64 + 32ull * lh->descriptor_count, 4096), ndata = 0;
	/* (An entry may have no descriptors: realloc to 0 bytes would free the table.) */
	if (lh->descriptor_count) {
		struct vhdx_overlay *n = realloc(v->ov, (v->nov + lh->descriptor_count) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		v->ov = n;
	}
	for (uint32_t i = 0; i < lh->descriptor_count; i++) {
		struct vhdx_log_desc ds;
		memcpy(&ds, e + 64 + 32 * (size_t)i, sizeof(ds));
		struct vhdx_overlay *o = &v->ov[v->nov];
		o->off = ds.file_offset;
		o->data = NULL;
		if (!memcmp(ds.signature, "desc", 4)) {
			const struct vhdx_log_data *dt = (const void *)(e + desc_bytes + 4096 * ndata++);
			o->len = 4096;
			if (!(o->data = malloc(4096)))
				return -ENOMEM;
			memcpy(o->data, &ds.leading_bytes, 8);
			memcpy(o->data + 8, dt->data, 4084);
			memcpy(o->data + 4092, &ds.trailing_bytes, 4);
			v->replay.sectors++;
		} else {
			o->len = ds.leading_bytes;
			v->replay.zeroed += ds.leading_bytes;
		}
		v->nov++;
	}
	if (lh->last_file_offset > v->replay.last_file_offset)
		v->replay.last_file_offset = lh->last_file_offset;
	v->replay.entries++;
	return 0;
}

/* pread of metadata (region table, metadata, BAT, sector bitmaps) through the overlay. Space past
 * the file's end that a pending log makes part of the image reads as zeros. */
static int vhdx_meta_pread(struct disk *d, struct vhdx *v, void *buf, uint64_t len, uint64_t off)
{
	if (off > v->file_size || len > v->file_size - off)
		return -EIO;
	uint64_t in = off >= v->disk_end ? 0 : v->disk_end - off < len ? v->disk_end - off : len;
	int rc = in ? disk_file_pread(d->fd, buf, in, off) : 0;
	if (rc)
		return rc;
	memset((uint8_t *)buf + in, 0, len - in);
	for (size_t i = 0; i < v->nov; i++) {
		const struct vhdx_overlay *o = &v->ov[i];
		uint64_t a = o->off > off ? o->off : off;
		uint64_t b = o->off + o->len < off + len ? o->off + o->len : off + len;
		if (a >= b)
			continue;
		if (o->data)
			memcpy((uint8_t *)buf + (a - off), o->data + (a - o->off), b - a);
		else
			memset((uint8_t *)buf + (a - off), 0, b - a);
	}
	return 0;
}

/* Finds the active sequence of the log (highest sequence number whose head's tail lies inside it) and
 * loads it into the overlay: the image is then read as the log would leave it, and nothing has been
 * written. Sets v->replay.pending when there is something to replay and v->file_size to the size the
 * image may have after it (bounded: see VHDX_LOG_MAX_GROWTH). 0 or -errno (logged). */
static int vhdx_log_load(struct disk *d, struct vhdx *v)
{
	if (!memcmp(v->hdr.log_guid, VHDX_GUID_ZERO, 16))
		return 0;
	if (v->log_len > 64 * VHDX_MiB) {
		log_error("%s: VHDX log of %llu MiB is larger than this tool accepts (64 MiB)", d->path,
			  (unsigned long long)(v->log_len >> 20));
		return -EINVAL;
	}
	uint64_t nslots = v->log_len / 4096;
	uint8_t *log = malloc(v->log_len), *scratch = malloc(v->log_len);
	struct log_slot *slots = calloc(nslots, sizeof(*slots));
	int rc = -ENOMEM;
	if (!log || !scratch || !slots)
		goto out;
	rc = disk_file_pread(d->fd, log, v->log_len, v->log_off);
	if (rc) {
		log_error("%s: cannot read the VHDX log: %s", d->path, strerror(-rc));
		goto out;
	}
	for (uint64_t i = 0; i < nslots; i++)
		log_entry_check(v, log, i * 4096, &slots[i], scratch);
	int64_t best_tail = -1, best_head = -1;
	uint64_t best_seq = 0;
	for (uint64_t i = 0; i < nslots; i++) {
		if (!slots[i].valid)
			continue;
		/* Walk forward from i while sequence numbers follow on. */
		uint64_t cur = i, steps = 0;
		for (;;) {
			uint64_t nx = ((cur * 4096 + slots[cur].len) % v->log_len) / 4096;
			if (!slots[nx].valid || slots[nx].seq != slots[cur].seq + 1 || ++steps > nslots)
				break;
			cur = nx;
		}
		uint64_t head_tail = slots[cur].tail;
		/* The head's tail must be one of the entries from i to cur. */
		bool tail_in = false;
		for (uint64_t k = i, st = 0; st <= nslots; st++) {
			if (k * 4096 == head_tail) {
				tail_in = true;
				break;
			}
			if (k == cur)
				break;
			k = ((k * 4096 + slots[k].len) % v->log_len) / 4096;
		}
		if (tail_in && (best_head < 0 || slots[cur].seq > best_seq)) {
			best_seq = slots[cur].seq;
			best_head = (int64_t)cur;
			best_tail = (int64_t)(head_tail / 4096);
		}
	}
	rc = 0;
	if (best_head < 0)
		goto out; /* nothing valid: the last transaction never completed, nothing to redo */
	for (uint64_t k = (uint64_t)best_tail;;) {
		log_copy(log, v->log_len, k * 4096, scratch, slots[k].len);
		if (!v->replay.entries)
			v->replay.seq_first = ((const struct vhdx_log_hdr *)scratch)->seq;
		rc = log_entry_overlay(v, scratch);
		if (rc || k == (uint64_t)best_head)
			break;
		k = ((k * 4096 + slots[k].len) % v->log_len) / 4096;
	}
	if (rc)
		goto out;
	v->replay.seq_last = best_seq;
	v->replay.pending = true;
	/* Where the log may make the file end: no further than its own writes reach or than the size its
	 * writer recorded, and never more than VHDX_LOG_MAX_GROWTH past the present end. */
	uint64_t end = v->disk_end, cap = v->disk_end + VHDX_LOG_MAX_GROWTH;
	for (size_t i = 0; i < v->nov; i++) {
		const struct vhdx_overlay *o = &v->ov[i];
		if (o->off + o->len > cap) {
			log_error("%s: corrupt VHDX log: an entry %s %llu bytes at offset %llu, more than %llu GiB past the "
				  "end of the file; not replayed (the file is unchanged)", d->path, o->data ? "writes" : "zeroes",
				  (unsigned long long)o->len, (unsigned long long)o->off, VHDX_LOG_MAX_GROWTH >> 30);
			rc = -EINVAL;
			goto out;
		}
		if (o->off < v->log_off + v->log_len && v->log_off < o->off + o->len) {
			log_error("%s: corrupt VHDX log: an entry writes into the log itself (offset %llu); not replayed "
				  "(the file is unchanged)", d->path, (unsigned long long)o->off);
			rc = -EINVAL;
			goto out;
		}
		if (o->off + o->len > end)
			end = o->off + o->len;
	}
	uint64_t recorded = v->replay.last_file_offset < cap ? v->replay.last_file_offset : cap;
	v->file_size = end > recorded ? end : recorded;
out:
	free(log);
	free(scratch);
	free(slots);
	return rc;
}

static int cmp_extent(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The log's writes must land where the image it leaves keeps metadata (the region tables, the BAT,
 * the metadata region) or blocks and sector bitmaps its BAT uses: anything else (free space, the
 * headers, the log) means the log is not this image's. Also settles the size the file takes: what
 * the image uses, never the larger size a log merely records. 0, or -EINVAL (logged, nothing
 * written). */
static int vhdx_log_check_targets(struct disk *d, struct vhdx *v)
{
	uint64_t n = 0, (*ext)[2] = malloc(sizeof(*ext) * (v->bat_entries + 3));
	if (!ext)
		return -ENOMEM;
	ext[n][0] = VHDX_REGION1_OFF;
	ext[n++][1] = VHDX_REGION2_OFF + VHDX_REGION_SIZE;
	ext[n][0] = v->bat_off;
	ext[n++][1] = v->bat_off + v->bat_len;
	ext[n][0] = v->meta_off;
	ext[n++][1] = v->meta_off + v->meta_len;
	uint64_t used_end = v->meta_off + v->meta_len > v->bat_off + v->bat_len ? v->meta_off + v->meta_len
										: v->bat_off + v->bat_len;
	if (v->log_off + v->log_len > used_end)
		used_end = v->log_off + v->log_len;
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t e = v->bat[i], st = e & 7;
		bool bitmap = (i % (v->chunk_ratio + 1ull)) == v->chunk_ratio;
		if (bitmap ? st != VHDX_SB_PRESENT || !v->has_parent
			   : st != VHDX_PAYLOAD_FULLY_PRESENT && st != VHDX_PAYLOAD_PARTIALLY_PRESENT)
			continue;
		ext[n][0] = vhdx_bat_off_of(e);
		ext[n][1] = ext[n][0] + (bitmap ? VHDX_SECTOR_BITMAP_SIZE : v->block_size);
		if (ext[n][1] > used_end)
			used_end = ext[n][1];
		n++;
	}
	qsort(ext, n, sizeof(*ext), cmp_extent);
	/* Merge touching extents: one descriptor may zero two adjacent new blocks. */
	uint64_t m = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (m && ext[i][0] <= ext[m - 1][1]) {
			if (ext[i][1] > ext[m - 1][1])
				ext[m - 1][1] = ext[i][1];
		} else {
			ext[m][0] = ext[i][0];
			ext[m++][1] = ext[i][1];
		}
	}
	int rc = 0;
	uint64_t end = used_end;
	for (size_t i = 0; i < v->nov && !rc; i++) {
		const struct vhdx_overlay *o = &v->ov[i];
		uint64_t lo = 0, hi = m;
		while (hi - lo > 1) { /* the last extent starting at or before o->off */
			uint64_t mid = (lo + hi) / 2;
			if (ext[mid][0] <= o->off)
				lo = mid;
			else
				hi = mid;
		}
		if (!m || ext[lo][0] > o->off || o->off + o->len > ext[lo][1]) {
			log_error("%s: corrupt VHDX log: an entry %s %llu bytes at offset %llu, outside the image's metadata "
				  "and blocks; not replayed (the file is unchanged)", d->path, o->data ? "writes" : "zeroes",
				  (unsigned long long)o->len, (unsigned long long)o->off);
			rc = -EINVAL;
		}
		if (o->off + o->len > end)
			end = o->off + o->len;
	}
	free(ext);
	if (!rc)
		v->file_size = end > v->disk_end ? end : v->disk_end;
	return rc;
}

/* Writes the validated overlay into the file: the file first grows (sparse: nothing is written past
 * the old end but the log's own sectors), then each write in log order, then it is made durable. The
 * log stays marked pending until the caller rewrites the headers, so a crash here replays again. */
static int vhdx_log_apply(struct disk *d, struct vhdx *v)
{
	int rc = 0;
	if (v->file_size > v->disk_end && ftruncate(d->fd, (off_t)v->file_size))
		rc = -errno;
	for (size_t i = 0; i < v->nov && !rc; i++) {
		const struct vhdx_overlay *o = &v->ov[i];
		if (o->data)
			rc = disk_file_pwrite(d->fd, o->data, 4096, o->off);
		else
			rc = disk_file_zero(d->fd, o->off, o->len);
	}
	if (!rc)
		rc = vhdx_sync(v, d->fd);
	if (rc) {
		log_error("%s: VHDX log replay failed: %s", d->path, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < v->nov; i++)
		free(v->ov[i].data);
	free(v->ov);
	v->ov = NULL;
	v->nov = 0;
	return 0;
}

/* One line on what the log did (or, read-only, would do). */
static void vhdx_log_report(struct disk *d, struct vhdx *v)
{
	char grown[96] = "";
	if (v->file_size > v->disk_end)
		snprintf(grown, sizeof(grown), "; file grown from %llu to %llu bytes", (unsigned long long)v->disk_end,
			 (unsigned long long)v->file_size);
	if (v->replay.last_file_offset > v->file_size)
		snprintf(grown + strlen(grown), sizeof(grown) - strlen(grown), "; its recorded size %llu ignored",
			 (unsigned long long)v->replay.last_file_offset);
	snprintf(v->replay.summary, sizeof(v->replay.summary),
		 "%llu log entr%s (sequence %llu-%llu): %llu metadata sectors written, %llu bytes zeroed%s",
		 (unsigned long long)v->replay.entries, v->replay.entries == 1 ? "y" : "ies",
		 (unsigned long long)v->replay.seq_first, (unsigned long long)v->replay.seq_last,
		 (unsigned long long)v->replay.sectors, (unsigned long long)v->replay.zeroed, grown);
	if (d->readonly)
		log_warn("%s: not closed cleanly; its log (%s) is applied in memory only (read-only open; `gen2vm vhd "
			 "repair` applies it)", d->path, v->replay.summary);
	else
		log_warn("%s: not closed cleanly; replayed its log: %s", d->path, v->replay.summary);
}

/* --- parsing ------------------------------------------------------------------------------------- */

/* Logs why the image is refused. When a pending log was applied in memory, says so: the problem may
 * be the log's, and the file was not changed. */
static void vhdx_bad(const struct vhdx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vhdx_bad(const struct vhdx *v, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s%s", msg, v->replay.pending ? " (as its pending log would leave it: the log was not replayed "
						    "and the file is unchanged)" : "");
}

#define BAD(...)                                                                                   \
	do {                                                                                       \
		vhdx_bad(v, __VA_ARGS__);                                                          \
		rc = -EINVAL;                                                                      \
		goto out;                                                                          \
	} while (0)

static int vhdx_read_headers(struct disk *d, struct vhdx *v)
{
	struct vhdx_header h[2];
	bool ok[2];
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		rc = disk_file_pread(d->fd, &h[i], sizeof(h[i]), i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
		ok[i] = !rc && vhdx_header_valid(&h[i]);
	}
	if (!ok[0] && !ok[1])
		BAD("%s: corrupt VHDX: neither header is valid (bad signature or checksum)", d->path);
	int cur = ok[0] && ok[1] ? (h[1].seq > h[0].seq) : ok[1];
	v->hdr = h[cur];
	v->hdr_slot = cur;
	if (v->hdr.version != 1)
		BAD("%s: unsupported VHDX version %u", d->path, v->hdr.version);
	if (v->hdr.log_version != 0)
		BAD("%s: unsupported VHDX log version %u", d->path, v->hdr.log_version);
	v->log_off = v->hdr.log_offset;
	v->log_len = v->hdr.log_length;
	if (v->log_off < VHDX_MiB || v->log_off % VHDX_MiB || !v->log_len || v->log_len % VHDX_MiB ||
	    v->log_off + v->log_len > v->file_size)
		BAD("%s: corrupt VHDX: log at %llu (+%llu) is misplaced or outside the file", d->path,
		    (unsigned long long)v->log_off, (unsigned long long)v->log_len);
out:
	return rc;
}

static int vhdx_read_regions(struct disk *d, struct vhdx *v)
{
	uint8_t *t = malloc(VHDX_REGION_SIZE);
	int rc = -ENOMEM;
	if (!t)
		return rc;
	bool found = false;
	for (int i = 0; i < 2 && !found; i++)
		found = !vhdx_meta_pread(d, v, t, VHDX_REGION_SIZE, i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF) &&
			vhdx_region_table_valid(t);
	rc = 0;
	if (!found)
		BAD("%s: corrupt VHDX: no valid region table (bad signature or checksum)", d->path);
	struct vhdx_region_hdr *rh = (void *)t;
	if (rh->entry_count > VHDX_MAX_ENTRIES)
		BAD("%s: corrupt VHDX: region table has %u entries", d->path, rh->entry_count);
	struct { uint64_t off, len; } rg[VHDX_MAX_ENTRIES + 1];
	uint32_t nrg = 0;
	rg[nrg].off = v->log_off;
	rg[nrg++].len = v->log_len;
	for (uint32_t i = 0; i < rh->entry_count; i++) {
		struct vhdx_region_entry re;
		memcpy(&re, t + 16 + 32 * (size_t)i, sizeof(re));
		if (re.file_offset < VHDX_MiB || re.file_offset % VHDX_MiB || !re.length ||
		    re.length % VHDX_MiB || re.file_offset > v->file_size ||
		    re.length > v->file_size - re.file_offset)
			BAD("%s: corrupt VHDX: region %u at %llu (+%u) is misplaced or outside the file",
			    d->path, i, (unsigned long long)re.file_offset, re.length);
		for (uint32_t k = 0; k < nrg; k++)
			if (re.file_offset < rg[k].off + rg[k].len && rg[k].off < re.file_offset + re.length)
				BAD("%s: corrupt VHDX: region %u overlaps another region or the log", d->path, i);
		rg[nrg].off = re.file_offset;
		rg[nrg++].len = re.length;
		if (!memcmp(re.guid, VHDX_GUID_BAT, 16)) {
			if (v->bat_len)
				BAD("%s: corrupt VHDX: two BAT regions", d->path);
			v->bat_off = re.file_offset;
			v->bat_len = re.length;
		} else if (!memcmp(re.guid, VHDX_GUID_METADATA, 16)) {
			if (v->meta_len)
				BAD("%s: corrupt VHDX: two metadata regions", d->path);
			v->meta_off = re.file_offset;
			v->meta_len = re.length;
		} else if (re.required & 1) {
			BAD("%s: unsupported VHDX: unknown required region", d->path);
		}
	}
	if (!v->bat_len || !v->meta_len)
		BAD("%s: corrupt VHDX: the region table lacks the %s region", d->path,
		    v->bat_len ? "metadata" : "BAT");
out:
	free(t);
	return rc;
}

static void locator_value(struct vhdx *v, const char *key, const char *val)
{
	if (!strcmp(key, "parent_linkage"))
		disk_guid_parse(val, v->linkage);
	else if (!strcmp(key, "parent_linkage2"))
		v->has_linkage2 = !disk_guid_parse(val, v->linkage2);
	else if (!strcmp(key, "relative_path") && !v->parent_rel)
		v->parent_rel = strdup(val);
	else if (!strcmp(key, "absolute_win32_path") && !v->parent_abs)
		v->parent_abs = strdup(val);
}

static int vhdx_parse_locator(struct disk *d, struct vhdx *v, const uint8_t *p, uint32_t len)
{
	int rc = 0;
	struct vhdx_locator_hdr lh;
	if (len < sizeof(lh))
		BAD("%s: corrupt VHDX: parent locator too short", d->path);
	memcpy(&lh, p, sizeof(lh));
	if (memcmp(lh.locator_type, VHDX_GUID_LOCATOR_VHDX, 16))
		BAD("%s: unsupported VHDX parent locator type", d->path);
	if (sizeof(lh) + (uint64_t)lh.key_value_count * 12 > len)
		BAD("%s: corrupt VHDX: parent locator entries outside the item", d->path);
	bool linkage = false;
	for (uint32_t i = 0; i < lh.key_value_count; i++) {
		struct vhdx_locator_entry le;
		memcpy(&le, p + sizeof(lh) + 12 * (size_t)i, sizeof(le));
		if ((uint64_t)le.key_offset + le.key_length > len ||
		    (uint64_t)le.value_offset + le.value_length > len || !le.key_length ||
		    !le.value_length)
			BAD("%s: corrupt VHDX: parent locator key/value outside the item", d->path);
		char key[64], val[PATH_MAX];
		if (disk_utf16le_to_utf8(p + le.key_offset, le.key_length, key, sizeof(key)) < 0 ||
		    disk_utf16le_to_utf8(p + le.value_offset, le.value_length, val, sizeof(val)) < 0)
			continue; /* unknown or overlong keys are not ours to judge */
		if (!strcmp(key, "parent_linkage")) {
			if (disk_guid_parse(val, v->linkage))
				BAD("%s: corrupt VHDX: parent_linkage is not a GUID", d->path);
			linkage = true;
		}
		locator_value(v, key, val);
	}
	if (!linkage)
		BAD("%s: corrupt VHDX: parent locator lacks parent_linkage", d->path);
out:
	return rc;
}

static int vhdx_read_metadata(struct disk *d, struct vhdx *v)
{
	int rc = 0;
	uint8_t *m = NULL;
	if (v->meta_len > 64 * VHDX_MiB)
		BAD("%s: corrupt VHDX: metadata region of %llu bytes", d->path,
		    (unsigned long long)v->meta_len);
	m = malloc(v->meta_len);
	if (!m)
		return -ENOMEM;
	rc = vhdx_meta_pread(d, v, m, v->meta_len, v->meta_off);
	if (rc)
		BAD("%s: truncated VHDX: cannot read the metadata region", d->path);
	struct vhdx_meta_hdr mh;
	memcpy(&mh, m, sizeof(mh));
	if (memcmp(mh.signature, "metadata", 8))
		BAD("%s: corrupt VHDX: bad metadata table signature", d->path);
	if (mh.entry_count > VHDX_MAX_ENTRIES)
		BAD("%s: corrupt VHDX: metadata table has %u entries", d->path, mh.entry_count);
	bool have_fp = false, have_vs = false, have_ls = false, have_ps = false, have_id = false,
	     have_pl = false;
	struct vhdx_file_params fp = { 0 };
	uint64_t vsize = 0;
	uint32_t lss = 0, pss = 0;
	for (uint32_t i = 0; i < mh.entry_count; i++) {
		struct vhdx_meta_entry me;
		memcpy(&me, m + 32 + 32 * (size_t)i, sizeof(me));
		if (me.length && (me.offset < VHDX_META_TABLE_SIZE ||
				  (uint64_t)me.offset + me.length > v->meta_len))
			BAD("%s: corrupt VHDX: metadata item %u outside the metadata region", d->path, i);
		const uint8_t *p = m + me.offset;
#define ITEM(guid, sz, flag)                                                                       \
	(!memcmp(me.item_id, guid, 16) && ((me.length == (sz)) ||                                 \
					   (vhdx_bad(v, "%s: corrupt VHDX: metadata item %u has length %u", \
						     d->path, i, me.length), rc = -EINVAL, false)) &&    \
	 !(flag = false) && (flag = true))
		if (ITEM(VHDX_GUID_FILE_PARAMS, 8, have_fp))
			memcpy(&fp, p, 8);
		else if (ITEM(VHDX_GUID_VDISK_SIZE, 8, have_vs)) {
			memcpy(&vsize, p, 8);
			v->vsize_item_off = v->meta_off + me.offset;
		} else if (ITEM(VHDX_GUID_LOGICAL_SECTOR, 4, have_ls))
			memcpy(&lss, p, 4);
		else if (ITEM(VHDX_GUID_PHYSICAL_SECTOR, 4, have_ps))
			memcpy(&pss, p, 4);
		else if (ITEM(VHDX_GUID_PAGE83, 16, have_id))
			memcpy(d->id, p, 16);
		else if (!rc && !memcmp(me.item_id, VHDX_GUID_PARENT_LOCATOR, 16)) {
			have_pl = true;
			rc = vhdx_parse_locator(d, v, p, me.length);
		} else if (!rc && (me.flags & VHDX_META_IS_REQUIRED) && !(me.flags & VHDX_META_IS_USER))
			BAD("%s: unsupported VHDX: unknown required metadata item", d->path);
#undef ITEM
		if (rc)
			goto out;
	}
	if (!have_fp || !have_vs || !have_ls || !have_ps)
		BAD("%s: corrupt VHDX: required metadata (file parameters, sizes) missing", d->path);
	if (!vhdx_is_pow2(fp.block_size) || fp.block_size < VHDX_MIN_BLOCK || fp.block_size > VHDX_MAX_BLOCK)
		BAD("%s: corrupt VHDX: block size %u (must be a power of two, 1-256 MiB)", d->path,
		    fp.block_size);
	if (lss != 512 && lss != 4096)
		BAD("%s: corrupt VHDX: logical sector size %u", d->path, lss);
	if (pss != 512 && pss != 4096)
		BAD("%s: corrupt VHDX: physical sector size %u", d->path, pss);
	if (!vsize || vsize % lss || vsize > VHDX_MAX_SIZE)
		BAD("%s: corrupt VHDX: virtual size %llu (must be a multiple of %u, at most 64 TiB)",
		    d->path, (unsigned long long)vsize, lss);
	v->has_parent = fp.flags & 2;
	v->leave_allocated = fp.flags & 1;
	if (v->has_parent && !have_pl)
		BAD("%s: corrupt VHDX: differencing disk without a parent locator", d->path);
	v->block_size = fp.block_size;
	d->size = vsize;
	d->logical_sector = lss;
	d->physical_sector = pss;
out:
	free(m);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int vhdx_read_bat(struct disk *d, struct vhdx *v)
{
	int rc = 0;
	uint64_t *offs = NULL;
	v->chunk_ratio = (uint32_t)(((1ull << 23) * d->logical_sector) / v->block_size);
	v->nblocks = (d->size + v->block_size - 1) / v->block_size;
	uint64_t nchunks = (v->nblocks + v->chunk_ratio - 1) / v->chunk_ratio;
	v->bat_entries = v->has_parent ? nchunks * (v->chunk_ratio + 1ull)
				       : v->nblocks + (v->nblocks - 1) / v->chunk_ratio;
	if (v->bat_entries * 8 > v->bat_len)
		BAD("%s: corrupt VHDX: BAT region (%llu bytes) too small for %llu entries", d->path,
		    (unsigned long long)v->bat_len, (unsigned long long)v->bat_entries);
	/* The in-memory BAT covers whole 4 KiB sectors so that logging one is a plain copy. */
	uint64_t alloc = vhdx_round_up(v->bat_entries * 8, 4096);
	v->bat = calloc(1, alloc);
	offs = malloc(sizeof(*offs) * (v->nblocks + nchunks + 1));
	if (!v->bat || !offs) {
		rc = -ENOMEM;
		goto out;
	}
	rc = vhdx_meta_pread(d, v, v->bat, alloc, v->bat_off);
	if (rc)
		BAD("%s: truncated VHDX: cannot read the BAT", d->path);
	uint64_t n = 0;
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t e = v->bat[i], st = e & 7, off = vhdx_bat_off_of(e);
		bool bitmap = (i % (v->chunk_ratio + 1ull)) == v->chunk_ratio;
		uint64_t len;
		if (bitmap) {
			if (st != VHDX_SB_NOT_PRESENT && st != VHDX_SB_PRESENT)
				BAD("%s: corrupt VHDX: BAT entry %llu has invalid bitmap state %llu",
				    d->path, (unsigned long long)i, (unsigned long long)st);
			if (st != VHDX_SB_PRESENT)
				continue;
			if (!v->has_parent)
				continue; /* meaningless without a parent; never read */
			len = VHDX_SECTOR_BITMAP_SIZE;
		} else {
			if (st == 4 || st == 5 || (st == VHDX_PAYLOAD_PARTIALLY_PRESENT && !v->has_parent))
				BAD("%s: corrupt VHDX: BAT entry %llu has invalid state %llu", d->path,
				    (unsigned long long)i, (unsigned long long)st);
			if (st != VHDX_PAYLOAD_FULLY_PRESENT && st != VHDX_PAYLOAD_PARTIALLY_PRESENT)
				continue;
			uint64_t blk = i - i / (v->chunk_ratio + 1ull);
			if (blk >= v->nblocks)
				BAD("%s: corrupt VHDX: BAT entry %llu beyond the disk", d->path,
				    (unsigned long long)i);
			len = d->size - blk * v->block_size;
			if (len > v->block_size)
				len = v->block_size;
			if (st == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
				uint64_t sb = v->bat[vhdx_bat_bitmap_index(v, blk / v->chunk_ratio)];
				if ((sb & 7) != VHDX_SB_PRESENT)
					BAD("%s: corrupt VHDX: block %llu partially present without a sector bitmap",
					    d->path, (unsigned long long)blk);
			}
		}
		if (off < VHDX_MiB || off > v->file_size || len > v->file_size - off)
			BAD("%s: corrupt VHDX: BAT entry %llu points outside the file (offset %llu)",
			    d->path, (unsigned long long)i, (unsigned long long)off);
		uint64_t meta[3][2] = { { v->log_off, v->log_len }, { v->bat_off, v->bat_len },
					{ v->meta_off, v->meta_len } };
		for (int k = 0; k < 3; k++)
			if (off < meta[k][0] + meta[k][1] && meta[k][0] < off + len)
				BAD("%s: corrupt VHDX: BAT entry %llu overlaps the %s", d->path,
				    (unsigned long long)i, k == 0 ? "log" : k == 1 ? "BAT" : "metadata");
		offs[n++] = off;
	}
	/* Allocated blocks (and bitmaps, 1 MiB) must not overlap: sorted, adjacent ones must be
	 * at least a MiB apart, and a payload block needs its whole block. */
	qsort(offs, n, sizeof(*offs), cmp_u64);
	for (uint64_t i = 1; i < n; i++)
		if (offs[i] == offs[i - 1])
			BAD("%s: corrupt VHDX: two BAT entries point at offset %llu", d->path,
			    (unsigned long long)offs[i]);
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t e = v->bat[i], st = e & 7;
		if ((i % (v->chunk_ratio + 1ull)) == v->chunk_ratio)
			continue;
		if (st != VHDX_PAYLOAD_FULLY_PRESENT && st != VHDX_PAYLOAD_PARTIALLY_PRESENT)
			continue;
		uint64_t off = vhdx_bat_off_of(e);
		uint64_t *nx = bsearch(&off, offs, n, sizeof(*offs), cmp_u64);
		if (nx && nx + 1 < offs + n && nx[1] < off + v->block_size)
			BAD("%s: corrupt VHDX: BAT entry %llu overlaps another block", d->path,
			    (unsigned long long)i);
	}
out:
	free(offs);
	return rc;
}

/* --- mapping: the allocate-on-write engine's ops (aow.h) ------------------------------------------ */

static enum aow_state vhdx_aow_state(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off)
{
	struct vhdx *v = drv;
	uint64_t e = v->bat[vhdx_bat_payload_index(v, blk)];
	switch (e & 7) {
	case VHDX_PAYLOAD_FULLY_PRESENT:
		*data_off = vhdx_bat_off_of(e);
		return AOW_DATA;
	case VHDX_PAYLOAD_PARTIALLY_PRESENT:
		*data_off = vhdx_bat_off_of(e);
		return AOW_PARTIAL;
	case VHDX_PAYLOAD_NOT_PRESENT:
		return v->has_parent ? AOW_PARENT : AOW_ZERO;
	default: /* zero, unmapped, undefined: reads as zeros, also in a differencing disk */
		return AOW_ZERO;
	}
}

/* The chunk's sector bitmap (one bit per logical sector, least-significant bit first) is read once
 * and kept. */
static int vhdx_aow_bitmap_run(struct disk *d, void *drv, uint64_t blk, uint64_t s, uint64_t max,
			       bool *present, uint64_t *run)
{
	struct vhdx *v = drv;
	uint64_t chunk = blk / v->chunk_ratio;
	uint64_t sb = v->bat[vhdx_bat_bitmap_index(v, chunk)];
	uint64_t spb = v->block_size / d->logical_sector;
	uint64_t bit0 = (blk % v->chunk_ratio) * spb + s;
	if (chunk >= v->nsbc) {
		uint8_t **n = realloc(v->sbc, (chunk + 1) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + v->nsbc, 0, (chunk + 1 - v->nsbc) * sizeof(*n));
		v->sbc = n;
		v->nsbc = chunk + 1;
	}
	if (!v->sbc[chunk]) {
		uint8_t *b = malloc(VHDX_SECTOR_BITMAP_SIZE);
		if (!b)
			return -ENOMEM;
		int rc = vhdx_meta_pread(d, v, b, VHDX_SECTOR_BITMAP_SIZE, vhdx_bat_off_of(sb));
		if (rc) {
			free(b);
			return rc;
		}
		v->sbc[chunk] = b;
	}
	/* bit0 + max stays inside the chunk's bitmap: chunk_ratio * spb sectors = 2^23 bits. */
	*run = aow_bitmap_run(v->sbc[chunk], bit0, max, false, present);
	return 0;
}

/* DataWriteGuid changes before the first data write. */
static int vhdx_aow_write_begin(struct disk *d, void *drv)
{
	return vhdx_session_begin(d, drv);
}

/* New space reads as zeros: an interrupted allocation leaves only an unused tail. */
static int vhdx_aow_place(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off)
{
	struct vhdx *v = drv;
	uint64_t home = vhdx_round_up(v->file_size, VHDX_MiB);
	if (ftruncate(d->fd, (off_t)(home + v->block_size))) {
		int rc = -errno;
		log_error("%s: cannot grow the file: %s", d->path, strerror(errno));
		return rc;
	}
	v->file_size = home + v->block_size;
	*data_off = home;
	return 0;
}

/* vhdx_log_commit syncs before the entry: the block's data is durable before the BAT says so. */
static int vhdx_aow_commit(struct disk *d, void *drv, uint64_t blk, uint64_t data_off, bool placed,
			   bool copied)
{
	struct vhdx *v = drv;
	uint64_t idx = vhdx_bat_payload_index(v, blk), e = v->bat[idx];
	v->bat[idx] = data_off | VHDX_PAYLOAD_FULLY_PRESENT;
	int rc = vhdx_bat_commit(d, v, idx, idx);
	if (rc)
		v->bat[idx] = e;
	return rc;
}

static const struct aow_ops vhdx_aow_ops = {
	.state = vhdx_aow_state,
	.bitmap_run = vhdx_aow_bitmap_run,
	.write_begin = vhdx_aow_write_begin,
	.place = vhdx_aow_place,
	.commit = vhdx_aow_commit,
};

static int vhdx_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext)
{
	struct vhdx *v = d->priv;
	return aow_map(d, &v->aow, off, len, write, ext);
}

/* --- I/O ------------------------------------------------------------------------------------------ */

static int vhdx_readv(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_readv(d, vhdx_map, off, iov, iovcnt);
}

static int vhdx_writev(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_writev(d, vhdx_map, off, iov, iovcnt);
}

static int vhdx_flush(struct disk *d)
{
	struct vhdx *v = d->priv;
	if (d->readonly)
		return 0;
	pthread_mutex_lock(&v->lock);
	int rc = vhdx_sync(v, d->fd);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* The entries in f (already changed in v->bat) go through the log; if that fails they are put
 * back. Only once they are durable is each one's space (len bytes at punch) released: a crash
 * cannot expose freed space. Lock held. */
int vhdx_release_commit(struct disk *d, struct vhdx *v, const struct vhdx_freed *f, uint64_t n,
			       uint64_t len)
{
	if (!n)
		return 0;
	uint64_t first = UINT64_MAX, last = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (f[i].idx < first)
			first = f[i].idx;
		if (f[i].idx > last)
			last = f[i].idx;
	}
	int rc = vhdx_bat_commit(d, v, first, last);
	for (uint64_t i = 0; rc && i < n; i++)
		v->bat[f[i].idx] = f[i].old;
	for (uint64_t i = 0; i < n && !rc; i++)
		if (f[i].punch && fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)f[i].punch,
					    (off_t)len) && errno != EOPNOTSUPP)
			rc = -errno;
	return rc;
}

/* Whole blocks [b0, b1) take state (ZERO or NOT_PRESENT), through vhdx_release_commit. Lock held. */
static int vhdx_blocks_release_locked(struct disk *d, struct vhdx *v, uint64_t b0, uint64_t b1,
				      uint64_t state)
{
	if (b1 <= b0)
		return 0;
	struct vhdx_freed *f = malloc(sizeof(*f) * (b1 - b0));
	uint64_t n = 0;
	if (!f)
		return -ENOMEM;
	for (uint64_t b = b0; b < b1; b++) {
		uint64_t idx = vhdx_bat_payload_index(v, b), e = v->bat[idx], st = e & 7;
		bool data = st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT;
		if (st == state || (!v->has_parent && !data))
			continue; /* already so, or already reads as zeros */
		f[n++] = (struct vhdx_freed){ idx, e, data ? vhdx_bat_off_of(e) : 0 };
		v->bat[idx] = state;
	}
	int rc = vhdx_release_commit(d, v, f, n, v->block_size);
	free(f);
	return rc;
}

static int vhdx_discard(struct disk *d, uint64_t off, uint64_t len)
{
	struct vhdx *v = d->priv;
	int rc = disk_change_check(d, off, len);
	if (rc || v->leave_allocated || !len)
		return rc; /* fixed disks keep their blocks */
	pthread_mutex_lock(&v->lock);
	uint64_t end = off + len, b0, b1;
	disk_whole_blocks(d, off, len, &b0, &b1);
	/* Partial blocks of a non-differencing disk: punch the data (reads zero, space freed). */
	if (!v->has_parent) {
		uint64_t pieces[2][2] = { { off, b0 * v->block_size < end ? b0 * v->block_size : end },
					  { b1 >= b0 ? b1 * v->block_size : end, end } };
		for (int i = 0; i < 2 && !rc; i++) {
			for (uint64_t o = pieces[i][0]; o < pieces[i][1];) {
				struct disk_extent e;
				rc = aow_map_locked(d, &v->aow, o, pieces[i][1] - o, &e);
				if (rc)
					break;
				if (e.kind == DISK_EXT_DATA &&
				    fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      (off_t)e.file_off, (off_t)e.len) && errno != EOPNOTSUPP)
					rc = -errno;
				o += e.len;
			}
		}
	}
	if (!rc)
		rc = vhdx_blocks_release_locked(d, v, b0, b1, VHDX_PAYLOAD_ZERO);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* ZERO reads zeros also in a differencing disk; NOT_PRESENT reads the parent (zeros without one). */
static int vhdx_release(struct disk *d, uint64_t off, uint64_t len, enum disk_release how)
{
	struct vhdx *v = d->priv;
	int rc = disk_change_check(d, off, len);
	if (rc || v->leave_allocated || !len)
		return rc;
	uint64_t b0, b1;
	disk_whole_blocks(d, off, len, &b0, &b1);
	pthread_mutex_lock(&v->lock);
	rc = vhdx_blocks_release_locked(d, v, b0, b1,
					    how == DISK_RELEASE_ZERO ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

static void vhdx_free(struct vhdx *v)
{
	if (!v)
		return;
	pthread_mutex_destroy(&v->lock);
	for (size_t i = 0; i < v->nov; i++)
		free(v->ov[i].data);
	free(v->ov);
	for (uint64_t i = 0; i < v->nsbc; i++)
		free(v->sbc[i]);
	free(v->sbc);
	free(v->bat);
	free(v->parent_rel);
	free(v->parent_abs);
	free(v);
}

static void vhdx_close(struct disk *d)
{
	struct vhdx *v = d->priv;
	if (!v)
		return;
	if (v->session && !d->readonly) {
		/* Everything in place and durable: the log is empty again. */
		if (!vhdx_sync(v, d->fd)) {
			memset(v->hdr.log_guid, 0, 16);
			if (vhdx_header_update(v, d->fd))
				log_warn("%s: could not mark the log empty; it will be replayed on open",
					 d->path);
		}
	}
	vhdx_free(v);
	d->priv = NULL;
}

const struct disk_ops vhdx_ops = {
	.format = "vhdx",
	.readv = vhdx_readv,
	.writev = vhdx_writev,
	.flush = vhdx_flush,
	.discard = vhdx_discard,
	.release = vhdx_release,
	.compact = vhdx_compact,
	.close = vhdx_close,
};

static int vhdx_parent_verify(struct disk *child, struct disk *parent)
{
	struct vhdx *c = child->priv, *p = parent->priv;
	if (parent->ops != &vhdx_ops) {
		log_error("%s: parent %s is %s, a VHDX differencing disk needs a VHDX parent",
			  child->path, parent->path, parent->ops->format);
		return -EINVAL;
	}
	if (!memcmp(p->hdr.data_write_guid, c->linkage, 16) ||
	    (c->has_linkage2 && !memcmp(p->hdr.data_write_guid, c->linkage2, 16)))
		return 0;
	return -EINVAL;
}

int vhdx_open(struct disk *d, unsigned flags)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	v->aow = (struct aow){ .ops = &vhdx_aow_ops, .drv = v, .lock = &v->lock };
	v->flags = flags;
	d->priv = v;
	d->ops = &vhdx_ops;
	struct stat st;
	int rc = 0;
	if (fstat(d->fd, &st)) {
		rc = -errno;
		goto out;
	}
	v->file_size = v->disk_end = (uint64_t)st.st_size;
	if (v->file_size < VHDX_MiB)
		BAD("%s: truncated VHDX: file is %llu bytes, the headers alone need 1 MiB", d->path,
		    (unsigned long long)v->file_size);
	rc = vhdx_read_headers(d, v);
	if (rc)
		goto out;
	/* A log is untrusted input like the rest: the image is parsed as the log would leave it, and
	 * the log is written into the file only when that image is valid and every write lands in it. */
	rc = vhdx_log_load(d, v);
	if (!rc)
		rc = vhdx_read_regions(d, v);
	if (!rc)
		rc = vhdx_read_metadata(d, v);
	if (!rc)
		rc = vhdx_read_bat(d, v);
	if (!rc && v->replay.pending)
		rc = vhdx_log_check_targets(d, v);
	if (rc)
		goto out;
	if (v->replay.pending) {
		vhdx_log_report(d, v);
		if (!d->readonly) {
			rc = vhdx_log_apply(d, v);
			if (rc)
				goto out;
			v->disk_end = v->file_size;
			/* The image is consistent again: record that the log is empty. */
			memset(v->hdr.log_guid, 0, 16);
			rc = vhdx_header_update(v, d->fd);
			if (rc)
				goto out;
		}
	}
	d->block_size = v->block_size;
	d->type = v->has_parent ? DISK_TYPE_DIFFERENCING
				: v->leave_allocated ? DISK_TYPE_FIXED : DISK_TYPE_DYNAMIC;
	d->map = vhdx_map;
	if (v->has_parent && !(flags & DISK_NO_PARENT)) {
		rc = disk_parent_open(d, v->parent_rel, v->parent_abs, vhdx_parent_verify, &d->parent);
		if (rc)
			goto out;
	}
out:
	if (rc) {
		vhdx_free(v);
		d->priv = NULL;
		d->ops = NULL;
	}
	return rc;
}

/* --- queries for `gen2vm vhd` ----------------------------------------------------------------- */

int vhdx_parent_paths(struct disk *d, const char **rel, const char **abs)
{
	if (d->ops != &vhdx_ops)
		return -EINVAL;
	struct vhdx *v = d->priv;
	*rel = v->parent_rel;
	*abs = v->parent_abs;
	return 0;
}

const char *vhdx_replay_summary(struct disk *d)
{
	if (d->ops != &vhdx_ops)
		return NULL;
	struct vhdx *v = d->priv;
	return v->replay.summary[0] ? v->replay.summary : NULL;
}
