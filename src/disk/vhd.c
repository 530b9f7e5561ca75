/* VHD (Virtual Hard Disk Image Format Specification v1.0): fixed, dynamic, differencing. The runtime
 * driver: open (parsing), mapping, read/write/flush, discard and release, close. The offline tools
 * (create, resize, compact) are in vhd_tools.c; vhd_priv.h states what the two share.
 *
 * All fields are big-endian. VHD has no log; allocations are ordered so that a crash leaves a
 * consistent image: the file is extended and its new trailing footer written, the block's bitmap
 * (and, for differencing disks, the data copied up from the parent) follow, an fdatasync makes
 * them durable, and only then is the 4-byte BAT entry (inside one sector) written. A crash before
 * the BAT write leaks an unreferenced block, never exposes garbage. The BAT entry itself is
 * durable after the guest's flush.
 *
 * Like the VHDX driver, writes to a differencing disk make the whole block present (copy-up), so
 * sector bitmaps are only read, or set to all ones. The mapping and allocation steps are the shared
 * allocate-on-write engine's (aow.h); this file supplies the VHD-specific ops.
 */
#include "disk/aow.h"
#include "disk/disk.h"
#include "disk/drivers.h"
#include "disk/vhd.h"
#include "disk/vhd_priv.h"
#include "util/log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- small helpers --------------------------------------------------------------------------- */

uint32_t vhd_checksum(const uint8_t *p, size_t len, size_t skip_at)
{
	uint32_t s = 0;
	for (size_t i = 0; i < len; i++)
		if (i < skip_at || i >= skip_at + 4)
			s += p[i];
	return ~s;
}

void vhd_footer_to_host(struct vhd_footer *f)
{
	f->features = be32toh(f->features);
	f->version = be32toh(f->version);
	f->data_offset = be64toh(f->data_offset);
	f->timestamp = be32toh(f->timestamp);
	f->orig_size = be64toh(f->orig_size);
	f->cur_size = be64toh(f->cur_size);
	f->cyls = be16toh(f->cyls);
	f->disk_type = be32toh(f->disk_type);
	f->checksum = be32toh(f->checksum);
}

#define BAD(...)                                                                                   \
	do {                                                                                       \
		log_error(__VA_ARGS__);                                                            \
		rc = -EINVAL;                                                                      \
		goto out;                                                                          \
	} while (0)

static bool vhd_footer_valid(const uint8_t *raw)
{
	struct vhd_footer f;
	memcpy(&f, raw, 512);
	return !memcmp(f.cookie, "conectix", 8) && be32toh(f.checksum) == vhd_checksum(raw, 512, 64);
}

bool vhd_remnants(int fd)
{
	struct vhd_dynhdr h;
	return !disk_file_pread(fd, &h, sizeof(h), 512) && !memcmp(h.cookie, "cxsparse", 8) &&
	       be32toh(h.checksum) == vhd_checksum((const uint8_t *)&h, sizeof(h), 36);
}

/* --- mapping: the allocate-on-write engine's ops (aow.h) ----------------------------------------- */

int vhd_bat_write(struct disk *d, struct vhd *v, uint64_t blk, uint32_t sector)
{
	uint32_t be = htobe32(sector);
	return disk_file_pwrite(d->fd, &be, 4, v->bat_off + blk * 4);
}

static enum aow_state vhd_aow_state(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off)
{
	struct vhd *v = drv;
	if (v->bat[blk] == VHD_UNALLOC)
		return d->type == DISK_TYPE_DIFFERENCING ? AOW_PARENT : AOW_ZERO;
	*data_off = (uint64_t)v->bat[blk] * 512 + v->bitmap_size;
	/* A dynamic disk's bitmap is advisory (data of unwritten sectors is zero); only a
	 * differencing disk needs it to choose between this file and the parent. */
	return d->type != DISK_TYPE_DIFFERENCING || v->full[blk] ? AOW_DATA : AOW_PARTIAL;
}

static int vhd_aow_bitmap_run(struct disk *d, void *drv, uint64_t blk, uint64_t s, uint64_t max,
			      bool *present, uint64_t *run)
{
	struct vhd *v = drv;
	/* One read per block, not one per request. */
	if (!v->bmc && !(v->bmc = calloc(v->nblocks, sizeof(*v->bmc))))
		return -ENOMEM;
	if (!v->bmc[blk]) {
		uint8_t *b = malloc(v->bitmap_size);
		if (!b)
			return -ENOMEM;
		int rc = disk_file_pread(d->fd, b, v->bitmap_size, (uint64_t)v->bat[blk] * 512);
		if (rc) {
			free(b);
			return rc;
		}
		v->bmc[blk] = b;
	}
	/* VHD bitmaps are most-significant bit first. */
	uint64_t n = aow_bitmap_run(v->bmc[blk], s, max, true, present);
	*run = n;
	if (*present && s == 0 && n * 512 == v->block_size) {
		v->full[blk] = 1;
		free(v->bmc[blk]);
		v->bmc[blk] = NULL;
	}
	return 0;
}

static int vhd_alloc_failed(struct disk *d, uint64_t blk, int rc)
{
	log_error("%s: allocating block %llu failed: %s", d->path, (unsigned long long)blk, strerror(-rc));
	return rc;
}

/* The new block takes the place of the trailing footer, which moves past it first (durable): the
 * file is a valid VHD at every step. */
static int vhd_aow_place(struct disk *d, void *drv, uint64_t blk, uint64_t *data_off)
{
	struct vhd *v = drv;
	uint64_t home = v->file_size - VHD_FOOTER;
	uint64_t end = home + v->bitmap_size + v->block_size;
	int rc = 0;
	if (end / 512 >= VHD_UNALLOC) {
		log_error("%s: VHD file would exceed the format's 2 TiB addressing", d->path);
		return vhd_alloc_failed(d, blk, -EFBIG);
	}
	if (ftruncate(d->fd, (off_t)(end + VHD_FOOTER)) ||
	    (rc = disk_file_pwrite(d->fd, v->footer_raw, VHD_FOOTER, end)))
		return vhd_alloc_failed(d, blk, rc ? rc : -errno);
	v->file_size = end + VHD_FOOTER;
	if (fdatasync(d->fd))
		return vhd_alloc_failed(d, blk, -errno);
	*data_off = home + v->bitmap_size;
	return 0;
}

/* The bitmap becomes all ones, and it and the data are durable before the BAT entry of a new block
 * is written. */
static int vhd_aow_commit(struct disk *d, void *drv, uint64_t blk, uint64_t data_off, bool placed,
			  bool copied)
{
	struct vhd *v = drv;
	uint64_t home = data_off - v->bitmap_size;
	uint8_t *bm = malloc(v->bitmap_size);
	if (!bm)
		return vhd_alloc_failed(d, blk, -ENOMEM);
	memset(bm, 0xff, v->bitmap_size);
	int rc = disk_file_pwrite(d->fd, bm, v->bitmap_size, home);
	free(bm);
	if (!rc && placed && !copied && v->bitmap_size < VHD_FOOTER) {
		/* The old footer's sector may lie inside the new data area: zero it. */
		uint8_t z[VHD_FOOTER] = { 0 };
		rc = disk_file_pwrite(d->fd, z, VHD_FOOTER - v->bitmap_size, home + v->bitmap_size);
	}
	if (!rc && fdatasync(d->fd))
		rc = -errno;
	if (!rc && placed) {
		rc = vhd_bat_write(d, v, blk, (uint32_t)(home / 512));
		if (!rc)
			v->bat[blk] = (uint32_t)(home / 512);
	}
	if (rc)
		return vhd_alloc_failed(d, blk, rc);
	v->full[blk] = 1;
	if (v->bmc) {
		free(v->bmc[blk]);
		v->bmc[blk] = NULL;
	}
	return 0;
}

static const struct aow_ops vhd_aow_ops = {
	.state = vhd_aow_state,
	.bitmap_run = vhd_aow_bitmap_run,
	.place = vhd_aow_place,
	.commit = vhd_aow_commit,
};

static int vhd_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext)
{
	struct vhd *v = d->priv;
	return aow_map(d, &v->aow, off, len, write, ext);
}

/* --- ops ------------------------------------------------------------------------------------------ */

static int vhd_readv(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_readv(d, vhd_map, off, iov, iovcnt);
}

static int vhd_writev(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_writev(d, vhd_map, off, iov, iovcnt);
}

static int vhd_flush(struct disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

/* Unmaps the whole blocks: a dynamic disk then reads zeros there, a differencing one its parent's
 * data; there is no zero state in a differencing VHD. */
static int vhd_release(struct disk *d, uint64_t off, uint64_t len, enum disk_release how)
{
	struct vhd *v = d->priv;
	int rc = disk_change_check(d, off, len);
	if (rc)
		return rc;
	if (how == DISK_RELEASE_ZERO && d->type == DISK_TYPE_DIFFERENCING)
		return -EOPNOTSUPP;
	uint64_t b0, b1;
	disk_whole_blocks(d, off, len, &b0, &b1);
	pthread_mutex_lock(&v->lock);
	for (uint64_t b = b0; b < b1 && !rc; b++) {
		if (v->bat[b] == VHD_UNALLOC)
			continue;
		uint64_t home = (uint64_t)v->bat[b] * 512;
		rc = vhd_bat_write(d, v, b, VHD_UNALLOC);
		/* Durable before the space is released, so a crash never maps a hole. */
		if (!rc && fdatasync(d->fd))
			rc = -errno;
		if (rc)
			break;
		v->bat[b] = VHD_UNALLOC;
		v->full[b] = 0;
		if (v->bmc) {
			free(v->bmc[b]);
			v->bmc[b] = NULL;
		}
		if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)home,
			      (off_t)(v->bitmap_size + v->block_size)) && errno != EOPNOTSUPP)
			rc = -errno;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* A dynamic disk unmaps whole blocks; a differencing disk keeps them (an unmapped block would
 * show the parent's data). */
static int vhd_discard(struct disk *d, uint64_t off, uint64_t len)
{
	if (d->type != DISK_TYPE_DYNAMIC)
		return disk_change_check(d, off, len);
	return vhd_release(d, off, len, DISK_RELEASE_ZERO);
}

static void vhd_free(struct vhd *v)
{
	if (!v)
		return;
	pthread_mutex_destroy(&v->lock);
	free(v->bat);
	free(v->full);
	for (uint64_t b = 0; v->bmc && b < v->nblocks; b++)
		free(v->bmc[b]);
	free(v->bmc);
	free(v->parent_rel);
	free(v->parent_abs);
	free(v);
}

static void vhd_close(struct disk *d)
{
	vhd_free(d->priv);
	d->priv = NULL;
}

const struct disk_ops vhd_fixed_ops = {
	.format = "vhd",
	.readv = disk_flat_readv,
	.writev = disk_flat_writev,
	.flush = vhd_flush,
	.discard = NULL,
	.close = vhd_close,
};

const struct disk_ops vhd_ops = {
	.format = "vhd",
	.readv = vhd_readv,
	.writev = vhd_writev,
	.flush = vhd_flush,
	.discard = vhd_discard,
	.release = vhd_release,
	.compact = vhd_compact,
	.close = vhd_close,
};

static int vhd_parent_verify(struct disk *child, struct disk *parent)
{
	struct vhd *c = child->priv;
	if (strcmp(parent->ops->format, "vhd")) {
		log_error("%s: parent %s is %s, a VHD differencing disk needs a VHD parent", child->path,
			  parent->path, parent->ops->format);
		return -EINVAL;
	}
	return memcmp(parent->id, c->parent_uuid, 16) ? -EINVAL : 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int vhd_read_locators(struct disk *d, struct vhd *v, const struct vhd_dynhdr *h)
{
	int rc = 0;
	for (int i = 0; i < 8; i++) {
		uint32_t code = be32toh(h->loc[i].code), len = be32toh(h->loc[i].len);
		uint64_t off = be64toh(h->loc[i].offset);
		if (code != VHD_PLAT_W2RU && code != VHD_PLAT_W2KU)
			continue;
		if (!len || len > 4 * PATH_MAX || off > v->file_size || len > v->file_size - off)
			BAD("%s: corrupt VHD: parent locator %d outside the file", d->path, i);
		uint8_t *b = malloc(len);
		char *s = malloc(2 * PATH_MAX);
		if (!b || !s) {
			free(b);
			free(s);
			return -ENOMEM;
		}
		rc = disk_file_pread(d->fd, b, len, off);
		int n = rc ? -1 : disk_utf16le_to_utf8(b, len, s, 2 * PATH_MAX);
		free(b);
		if (n < 0) {
			free(s);
			BAD("%s: corrupt VHD: unreadable parent locator %d", d->path, i);
		}
		char **slot = code == VHD_PLAT_W2RU ? &v->parent_rel : &v->parent_abs;
		if (!*slot)
			*slot = s;
		else
			free(s);
	}
out:
	return rc;
}

int vhd_open(struct disk *d, unsigned flags)
{
	struct vhd *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	v->aow = (struct aow){ .ops = &vhd_aow_ops, .drv = v, .lock = &v->lock };
	d->priv = v;
	int rc = 0;
	uint32_t *sorted = NULL;
	struct stat st;
	if (fstat(d->fd, &st)) {
		rc = -errno;
		goto out;
	}
	v->file_size = (uint64_t)st.st_size;
	if (v->file_size < VHD_FOOTER)
		BAD("%s: truncated VHD: no room for a footer", d->path);
	uint8_t raw[512];
	if ((rc = disk_file_pread(d->fd, raw, 512, v->file_size - 512)))
		BAD("%s: cannot read the VHD footer", d->path);
	if (!vhd_footer_valid(raw)) {
		uint8_t head[512];
		bool head_ok = !disk_file_pread(d->fd, head, 512, 0) && vhd_footer_valid(head);
		if (!memcmp(raw, "conectix", 8) && !head_ok)
			BAD("%s: corrupt VHD: footer checksum mismatch", d->path);
		if (!head_ok)
			BAD("%s: corrupt VHD: no valid footer", d->path);
		if (!(flags & DISK_RDONLY))
			BAD("%s: the VHD's trailing footer is damaged (the copy at its start is intact); "
			    "open it read-only and convert it", d->path);
		log_warn("%s: trailing VHD footer damaged, using the copy at the start", d->path);
		memcpy(raw, head, 512);
	}
	memcpy(v->footer_raw, raw, 512);
	memcpy(&v->footer, raw, 512);
	vhd_footer_to_host(&v->footer);
	struct vhd_footer *f = &v->footer;
	if ((f->version >> 16) != 1)
		BAD("%s: unsupported VHD version %#x", d->path, f->version);
	if (f->cur_size == 0 || f->cur_size % 512 || f->cur_size > VHD_MAX_SIZE)
		BAD("%s: corrupt VHD: virtual size %llu (must be a multiple of 512, at most 2040 GiB)",
		    d->path, (unsigned long long)f->cur_size);
	d->size = f->cur_size;
	d->logical_sector = 512;
	d->physical_sector = 512;
	memcpy(d->id, f->uuid, 16);
	if (f->disk_type == DISK_TYPE_FIXED) {
		if (v->file_size - VHD_FOOTER < d->size)
			BAD("%s: truncated VHD: %llu data bytes for a %llu-byte fixed disk", d->path,
			    (unsigned long long)(v->file_size - VHD_FOOTER), (unsigned long long)d->size);
		d->type = DISK_TYPE_FIXED;
		d->ops = &vhd_fixed_ops;
		goto out;
	}
	if (f->disk_type != DISK_TYPE_DYNAMIC && f->disk_type != DISK_TYPE_DIFFERENCING)
		BAD("%s: unsupported VHD disk type %u", d->path, f->disk_type);
	d->type = f->disk_type;
	struct vhd_dynhdr h;
	if (f->data_offset > v->file_size || v->file_size - f->data_offset < VHD_DYNHDR + VHD_FOOTER ||
	    f->data_offset % 512)
		BAD("%s: corrupt VHD: dynamic header offset %llu outside the file", d->path,
		    (unsigned long long)f->data_offset);
	if ((rc = disk_file_pread(d->fd, &h, sizeof(h), f->data_offset)))
		BAD("%s: cannot read the VHD dynamic header", d->path);
	if (memcmp(h.cookie, "cxsparse", 8))
		BAD("%s: corrupt VHD: bad dynamic header signature", d->path);
	if (be32toh(h.checksum) != vhd_checksum((const uint8_t *)&h, sizeof(h), 36))
		BAD("%s: corrupt VHD: dynamic header checksum mismatch", d->path);
	v->block_size = be32toh(h.block_size);
	v->max_entries = be32toh(h.max_entries);
	v->bat_off = be64toh(h.table_offset);
	if (v->block_size < 4096 || v->block_size > (256u << 20) ||
	    (v->block_size & (v->block_size - 1)))
		BAD("%s: corrupt VHD: block size %u", d->path, v->block_size);
	v->bitmap_size = (v->block_size / 512 / 8 + 511) / 512 * 512;
	v->nblocks = (d->size + v->block_size - 1) / v->block_size;
	if (v->max_entries < v->nblocks)
		BAD("%s: corrupt VHD: BAT has %u entries, the disk needs %llu", d->path, v->max_entries,
		    (unsigned long long)v->nblocks);
	if (v->bat_off % 512 || v->bat_off > v->file_size ||
	    v->nblocks * 4 > v->file_size - v->bat_off)
		BAD("%s: corrupt VHD: BAT outside the file", d->path);
	if (v->bat_off < f->data_offset + VHD_DYNHDR && f->data_offset < v->bat_off + v->nblocks * 4)
		BAD("%s: corrupt VHD: BAT overlaps the dynamic header", d->path);
	v->bat = malloc(v->nblocks * 4);
	v->full = calloc(v->nblocks, 1);
	sorted = malloc(v->nblocks * 4);
	if (!v->bat || !v->full || !sorted) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = disk_file_pread(d->fd, v->bat, v->nblocks * 4, v->bat_off)))
		BAD("%s: truncated VHD: cannot read the BAT", d->path);
	uint64_t nalloc = 0;
	uint64_t bat_end = v->bat_off + (uint64_t)v->max_entries * 4;
	for (uint64_t b = 0; b < v->nblocks; b++) {
		v->bat[b] = be32toh(v->bat[b]);
		if (v->bat[b] == VHD_UNALLOC)
			continue;
		uint64_t o = (uint64_t)v->bat[b] * 512;
		uint64_t need = v->bitmap_size + (d->size - b * v->block_size < v->block_size
							  ? d->size - b * v->block_size
							  : v->block_size);
		if (o < 512 || o > v->file_size - VHD_FOOTER || need > v->file_size - VHD_FOOTER - o)
			BAD("%s: corrupt VHD: BAT entry %llu points outside the file (sector %u)", d->path,
			    (unsigned long long)b, v->bat[b]);
		if ((o < f->data_offset + VHD_DYNHDR && f->data_offset < o + need) ||
		    (o < bat_end && v->bat_off < o + need))
			BAD("%s: corrupt VHD: BAT entry %llu overlaps the header or the BAT", d->path,
			    (unsigned long long)b);
		sorted[nalloc++] = v->bat[b];
	}
	qsort(sorted, nalloc, 4, cmp_u32);
	for (uint64_t i = 1; i < nalloc; i++)
		if ((uint64_t)(sorted[i] - sorted[i - 1]) * 512 < v->bitmap_size + v->block_size)
			BAD("%s: corrupt VHD: two BAT entries overlap (sectors %u and %u)", d->path,
			    sorted[i - 1], sorted[i]);
	d->block_size = v->block_size;
	d->ops = &vhd_ops;
	d->map = vhd_map;
	if (d->type == DISK_TYPE_DIFFERENCING) {
		memcpy(v->parent_uuid, h.parent_uuid, 16);
		if ((rc = vhd_read_locators(d, v, &h)))
			goto out;
		if (!v->parent_rel && !v->parent_abs)
			BAD("%s: corrupt VHD: differencing disk without a usable parent locator", d->path);
		if (!(flags & DISK_NO_PARENT))
			rc = disk_parent_open(d, v->parent_rel, v->parent_abs, vhd_parent_verify,
					      &d->parent);
	}
out:
	free(sorted);
	if (rc) {
		vhd_free(v);
		d->priv = NULL;
		d->ops = NULL;
	}
	return rc;
}

int vhd_parent_paths(struct disk *d, const char **rel, const char **abs)
{
	if (d->ops != &vhd_ops)
		return -EINVAL;
	struct vhd *v = d->priv;
	*rel = v->parent_rel;
	*abs = v->parent_abs;
	return 0;
}
