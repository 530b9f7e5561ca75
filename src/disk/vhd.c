/* VHD (Virtual Hard Disk Image Format Specification v1.0): fixed, dynamic, differencing.
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

static uint32_t vhd_checksum(const uint8_t *p, size_t len, size_t skip_at)
{
	uint32_t s = 0;
	for (size_t i = 0; i < len; i++)
		if (i < skip_at || i >= skip_at + 4)
			s += p[i];
	return ~s;
}

static void vhd_footer_to_host(struct vhd_footer *f)
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

/* CHS geometry as the VHD specification's appendix computes it. */
static void vhd_geometry(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
	uint64_t ts = size / 512, cth;
	uint32_t h, s;
	if (ts > 65535ull * 16 * 255)
		ts = 65535ull * 16 * 255;
	if (ts >= 65535ull * 16 * 63) {
		s = 255;
		h = 16;
		cth = ts / s;
	} else {
		s = 17;
		cth = ts / s;
		h = (uint32_t)((cth + 1023) / 1024);
		if (h < 4)
			h = 4;
		if (cth >= h * 1024ull || h > 16) {
			s = 31;
			h = 16;
			cth = ts / s;
		}
		if (cth >= h * 1024ull) {
			s = 63;
			h = 16;
			cth = ts / s;
		}
	}
	*cyl = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

static void vhd_footer_build(uint8_t out[512], uint64_t size, uint32_t type, uint64_t data_off,
			     const uint8_t uuid[16])
{
	struct vhd_footer f;
	memset(&f, 0, sizeof(f));
	memcpy(f.cookie, "conectix", 8);
	f.features = htobe32(2);
	f.version = htobe32(0x00010000);
	f.data_offset = htobe64(data_off);
	f.timestamp = htobe32((uint32_t)(time(NULL) - VHD_EPOCH));
	memcpy(f.creator_app, "g2vm", 4);
	f.creator_ver = htobe32(0x00010000);
	f.creator_os = htobe32(0x5769326B); /* "Wi2k", what Windows tools write */
	f.orig_size = htobe64(size);
	f.cur_size = htobe64(size);
	uint16_t c;
	vhd_geometry(size, &c, &f.heads, &f.spt);
	f.cyls = htobe16(c);
	f.disk_type = htobe32(type);
	memcpy(f.uuid, uuid, 16);
	memcpy(out, &f, 512);
	uint32_t cs = vhd_checksum(out, 512, 64);
	f.checksum = htobe32(cs);
	memcpy(out, &f, 512);
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

/* Writes BAT entry blk (sector of the block's bitmap, or VHD_UNALLOC) in place: one aligned
 * 4-byte write inside a sector, so a crash leaves the old or the new entry. Not synced. */
static int vhd_bat_write(struct disk *d, struct vhd *v, uint64_t blk, uint32_t sector)
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
	const uint8_t *b = v->bmc[blk];
	/* VHD bitmaps are most-significant bit first. */
#define BIT(k) ((b[(k) / 8] >> (7 - (k) % 8)) & 1)
	*present = BIT(s);
	uint64_t n = 1;
	while (n < max && BIT(s + n) == *present)
		n++;
#undef BIT
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

static const struct disk_ops vhd_fixed_ops = {
	.format = "vhd",
	.readv = disk_flat_readv,
	.writev = disk_flat_writev,
	.flush = vhd_flush,
	.discard = NULL,
	.close = vhd_close,
};

static const struct disk_ops vhd_ops = {
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

/* --- resize ---------------------------------------------------------------------------------------- */

/* The footer for a new size: cur_size and geometry change; identity, type and orig_size stay. */
static void vhd_footer_resized(const uint8_t old[512], uint64_t size, uint8_t out[512])
{
	struct vhd_footer f;
	memcpy(&f, old, 512);
	f.cur_size = htobe64(size);
	uint16_t c;
	vhd_geometry(size, &c, &f.heads, &f.spt);
	f.cyls = htobe16(c);
	f.checksum = 0;
	memcpy(out, &f, 512);
	f.checksum = htobe32(vhd_checksum(out, 512, 64));
	memcpy(out, &f, 512);
}

static int vhd_sync(struct disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

/* Fixed: the new trailing footer goes first (the file stays a valid VHD of the new size at every
 * step), then the old footer's sector, now inside the data, is zeroed. */
static int vhd_resize_fixed(struct disk *d, struct vhd *v, uint64_t size, const uint8_t foot[512])
{
	uint64_t old_end = v->file_size - VHD_FOOTER;
	int rc = disk_file_pwrite(d->fd, foot, VHD_FOOTER, size);
	rc = rc ? rc : vhd_sync(d);
	if (!rc && size > old_end) {
		uint8_t z[VHD_FOOTER] = { 0 };
		rc = disk_file_pwrite(d->fd, z, VHD_FOOTER, old_end);
		rc = rc ? rc : vhd_sync(d);
	}
	if (!rc)
		v->file_size = size + VHD_FOOTER;
	return rc;
}

/* Dynamic and differencing: a BAT too small for the new size moves to the end of the file (the
 * old one is left unused), written and synced before the dynamic header points at it; the footers
 * with the new size come last. A crash at any step leaves a consistent image of the old or the
 * new size (at worst with an unreferenced copy of the BAT). */
static int vhd_resize_dynamic(struct disk *d, struct vhd *v, uint64_t size, const uint8_t foot[512])
{
	uint64_t nb = (size + v->block_size - 1) / v->block_size;
	uint32_t *bat = realloc(v->bat, nb * 4);
	if (!bat)
		return -ENOMEM;
	v->bat = bat;
	uint8_t *full = realloc(v->full, nb);
	if (!full)
		return -ENOMEM;
	v->full = full;
	if (v->bmc) {
		uint8_t **bmc = realloc(v->bmc, nb * sizeof(*bmc));
		if (!bmc)
			return -ENOMEM;
		v->bmc = bmc;
	}
	for (uint64_t b = v->nblocks; b < nb; b++) {
		v->bat[b] = VHD_UNALLOC;
		v->full[b] = 0;
		if (v->bmc)
			v->bmc[b] = NULL;
	}
	int rc = 0;
	uint64_t bat_off = v->bat_off, max_entries = v->max_entries;
	if (nb > v->max_entries) {
		uint64_t len = (nb * 4 + 511) / 512 * 512;
		bat_off = v->file_size - VHD_FOOTER;
		if ((bat_off + len) / 512 >= VHD_UNALLOC)
			return -EFBIG;
		uint32_t *be = malloc(len);
		if (!be)
			return -ENOMEM;
		memset(be, 0xff, len);
		for (uint64_t b = 0; b < nb; b++)
			be[b] = htobe32(v->bat[b]);
		rc = disk_file_pwrite(d->fd, be, len, bat_off);
		free(be);
		/* The old footer stays valid after the new BAT until the new one is written. */
		rc = rc ? rc : disk_file_pwrite(d->fd, v->footer_raw, VHD_FOOTER, bat_off + len);
		rc = rc ? rc : vhd_sync(d);
		if (rc)
			return rc;
		v->file_size = bat_off + len + VHD_FOOTER;
		max_entries = len / 4;
		struct vhd_dynhdr h;
		if ((rc = disk_file_pread(d->fd, &h, sizeof(h), v->footer.data_offset)))
			return rc;
		h.table_offset = htobe64(bat_off);
		h.max_entries = htobe32((uint32_t)max_entries);
		h.checksum = 0;
		h.checksum = htobe32(vhd_checksum((const uint8_t *)&h, sizeof(h), 36));
		rc = disk_file_pwrite(d->fd, &h, sizeof(h), v->footer.data_offset);
		rc = rc ? rc : vhd_sync(d);
		if (rc)
			return rc;
	} else if (nb > v->nblocks) {
		/* Entries past the old size are 0xFFFFFFFF in files we make; other tools' may not be. */
		uint32_t *be = malloc((nb - v->nblocks) * 4);
		if (!be)
			return -ENOMEM;
		memset(be, 0xff, (nb - v->nblocks) * 4);
		rc = disk_file_pwrite(d->fd, be, (nb - v->nblocks) * 4, v->bat_off + v->nblocks * 4);
		free(be);
		rc = rc ? rc : vhd_sync(d);
		if (rc)
			return rc;
	}
	v->bat_off = bat_off;
	v->max_entries = (uint32_t)max_entries;
	v->nblocks = nb;
	rc = disk_file_pwrite(d->fd, foot, VHD_FOOTER, v->file_size - VHD_FOOTER);
	rc = rc ? rc : disk_file_pwrite(d->fd, foot, VHD_FOOTER, 0);
	return rc ? rc : vhd_sync(d);
}

int vhd_resize(struct disk *d, uint64_t size)
{
	if (d->ops != &vhd_ops && d->ops != &vhd_fixed_ops)
		return -EINVAL;
	struct vhd *v = d->priv;
	if (size < d->size) {
		log_error("%s: shrinking is not supported (the VHD is %llu bytes)", d->path,
			  (unsigned long long)d->size);
		return -EINVAL;
	}
	if (size % 512 || size > VHD_MAX_SIZE) {
		log_error("%s: a VHD's size must be a multiple of 512 bytes and at most 2040 GiB", d->path);
		return -EINVAL;
	}
	if (size == d->size)
		return 0;
	pthread_mutex_lock(&v->lock);
	uint8_t foot[512];
	vhd_footer_resized(v->footer_raw, size, foot);
	int rc = d->ops == &vhd_fixed_ops ? vhd_resize_fixed(d, v, size, foot) : vhd_resize_dynamic(d, v, size, foot);
	if (!rc) {
		memcpy(v->footer_raw, foot, 512);
		memcpy(&v->footer, foot, 512);
		vhd_footer_to_host(&v->footer);
		d->size = size;
	} else {
		log_error("%s: resizing failed: %s", d->path, strerror(-rc));
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* --- compact ---------------------------------------------------------------------------------------- */

/* disk_relocate's move: bitmap and data are copied and durable before the BAT entry (one aligned
 * 4-byte write inside a sector) points at them; a crash before that leaves the old copy in use. */
static int vhd_compact_move(struct disk *d, void *drv, uint64_t blk, uint64_t from, uint64_t to,
			    uint64_t len)
{
	struct vhd *v = drv;
	int rc = disk_file_copy(d->fd, from, to, len);
	if (!rc)
		rc = vhd_sync(d);
	if (!rc)
		rc = vhd_bat_write(d, v, blk, (uint32_t)(to / 512));
	if (!rc)
		rc = vhd_sync(d);
	if (rc) {
		log_error("%s: moving block %llu failed: %s", d->path, (unsigned long long)blk, strerror(-rc));
		return rc;
	}
	v->bat[blk] = (uint32_t)(to / 512);
	return 0;
}

int vhd_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx,
		uint64_t *moved)
{
	struct vhd *v = d->priv;
	*moved = 0;
	if (d->readonly)
		return -EROFS;
	pthread_mutex_lock(&v->lock);
	int rc = 0;
	struct vhd_dynhdr h;
	struct disk_used *u = malloc(sizeof(*u) * (v->nblocks + 12));
	if (!u) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = disk_file_pread(d->fd, &h, sizeof(h), v->footer.data_offset)))
		goto out;
	size_t n = 0;
	/* The footer copy, the dynamic header, the BAT and the parent locators stay put (the
	 * trailing footer is not an extent: it moves with the end of the file). */
	u[n++] = (struct disk_used){ 0, VHD_FOOTER, DISK_USED_FIXED };
	u[n++] = (struct disk_used){ v->footer.data_offset, VHD_DYNHDR, DISK_USED_FIXED };
	u[n++] = (struct disk_used){ v->bat_off, ((uint64_t)v->max_entries * 4 + 511) / 512 * 512,
				     DISK_USED_FIXED };
	for (int i = 0; i < 8; i++) {
		uint32_t code = be32toh(h.loc[i].code), space = be32toh(h.loc[i].space);
		uint32_t len = be32toh(h.loc[i].len);
		uint64_t off = be64toh(h.loc[i].offset);
		if (!code || off >= v->file_size)
			continue;
		/* The specification counts the space in sectors, Windows writes bytes: when the
		 * space is smaller than the data it can only be sectors. */
		uint64_t bytes = space >= len ? space : (uint64_t)space * 512;
		if (bytes < len)
			bytes = len;
		u[n++] = (struct disk_used){ off, (bytes + 511) / 512 * 512, DISK_USED_FIXED };
	}
	for (uint64_t b = 0; b < v->nblocks; b++)
		if (v->bat[b] != VHD_UNALLOC)
			u[n++] = (struct disk_used){ (uint64_t)v->bat[b] * 512,
						     v->bitmap_size + v->block_size, b };
	uint64_t end;
	rc = disk_relocate(d, v, u, n, 512, vhd_compact_move, progress, ctx, moved, &end);
	if (rc)
		goto out;
	end = (end + 511) / 512 * 512;
	if (end + VHD_FOOTER >= v->file_size)
		goto out;
	/* The footer goes to the new end first, durable, while the old one still ends the file:
	 * before the truncate the old footer is the file's, after it the new one; both are valid
	 * and say the same. */
	rc = disk_file_pwrite(d->fd, v->footer_raw, VHD_FOOTER, end);
	if (!rc)
		rc = vhd_sync(d);
	if (!rc && (ftruncate(d->fd, (off_t)(end + VHD_FOOTER)) || fsync(d->fd)))
		rc = -errno;
	if (rc) {
		log_error("%s: cannot truncate the compacted file: %s", d->path, strerror(-rc));
		goto out;
	}
	v->file_size = end + VHD_FOOTER;
out:
	free(u);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* --- create ---------------------------------------------------------------------------------------- */

int vhd_create(const char *path, int fd, const struct disk_create_opts *o, struct disk *parent)
{
	uint64_t size = o->size ? o->size : parent ? parent->size : 0;
	uint32_t bs = o->block_size ? o->block_size : 2u << 20;
	int rc = 0;
	if (!size || size % 512 || size > VHD_MAX_SIZE) {
		log_error("%s: size must be a non-zero multiple of 512 bytes, at most 2040 GiB", path);
		return -EINVAL;
	}
	if ((o->logical_sector && o->logical_sector != 512) ||
	    (o->physical_sector && o->physical_sector != 512)) {
		log_error("%s: VHD supports only 512-byte sectors (use VHDX for 4096)", path);
		return -EINVAL;
	}
	if (bs < 4096 || bs > (256u << 20) || (bs & (bs - 1))) {
		log_error("%s: VHD block size must be a power of two from 4 KiB to 256 MiB", path);
		return -EINVAL;
	}
	if (parent && o->fixed) {
		log_error("%s: a differencing disk cannot be fixed", path);
		return -EINVAL;
	}
	/* Readers that trust the CHS geometry (Virtual PC, QEMU for most creators) and readers that
	 * trust the size field (Hyper-V) must see the same disk: round up to a size the geometry
	 * expresses exactly, as Virtual PC does. Beyond the geometry's reach only the size counts. */
	if (size <= 65535ull * 16 * 255 * 512) {
		uint64_t want = size;
		for (uint64_t ts = size / 512;; ts++) {
			uint16_t c;
			uint8_t hh, ss;
			vhd_geometry(ts * 512, &c, &hh, &ss);
			uint64_t chs = (uint64_t)c * hh * ss;
			if (chs >= size / 512) {
				size = chs * 512;
				break;
			}
		}
		if (size != want)
			log_info("%s: size rounded up from %llu to %llu bytes to match the VHD geometry",
				 path, (unsigned long long)want, (unsigned long long)size);
	}
	uint8_t uuid[16], footer[512];
	disk_guid_generate(uuid);
	if (o->fixed) {
		vhd_footer_build(footer, size, DISK_TYPE_FIXED, UINT64_MAX, uuid);
		if (ftruncate(fd, (off_t)(size + 512)) ||
		    (fallocate(fd, 0, 0, (off_t)size) && errno != EOPNOTSUPP)) {
			rc = -errno;
			goto io;
		}
		if (o->progress)
			o->progress(o->progress_ctx, size, size);
		if ((rc = disk_file_pwrite(fd, footer, 512, size)))
			goto io;
		return 0;
	}
	uint64_t nblocks = (size + bs - 1) / bs;
	uint64_t bat_off = 512 + VHD_DYNHDR;
	uint64_t bat_len = (nblocks * 4 + 511) / 512 * 512;
	uint64_t end = bat_off + bat_len;
	struct vhd_dynhdr h;
	memset(&h, 0, sizeof(h));
	memcpy(h.cookie, "cxsparse", 8);
	h.data_offset = UINT64_MAX;
	h.table_offset = htobe64(bat_off);
	h.version = htobe32(0x00010000);
	h.max_entries = htobe32((uint32_t)nblocks);
	h.block_size = htobe32(bs);
	uint8_t loc_data[2][2 * PATH_MAX];
	int loc_len[2] = { 0, 0 };
	if (parent) {
		memcpy(h.parent_uuid, parent->id, 16);
		struct stat st;
		if (!stat(parent->path, &st))
			h.parent_timestamp = htobe32((uint32_t)(st.st_mtime - VHD_EPOCH));
		char *rel = disk_relpath(path, parent->path), *abs = realpath(parent->path, NULL);
		if (!rel || !abs) {
			free(rel);
			free(abs);
			log_error("%s: cannot resolve the parent path %s", path, parent->path);
			return -EINVAL;
		}
		/* Parent name: UTF-16 big-endian. */
		const char *base = strrchr(abs, '/') ? strrchr(abs, '/') + 1 : abs;
		uint8_t tmp[512];
		int n = disk_utf8_to_utf16le(base, tmp, sizeof(tmp) - 2);
		for (int i = 0; i + 1 < n; i += 2) {
			h.parent_name[i] = tmp[i + 1];
			h.parent_name[i + 1] = tmp[i];
		}
		loc_len[0] = disk_utf8_to_utf16le(rel, loc_data[0], sizeof(loc_data[0]));
		loc_len[1] = disk_utf8_to_utf16le(abs, loc_data[1], sizeof(loc_data[1]));
		free(rel);
		free(abs);
		if (loc_len[0] <= 0 || loc_len[1] <= 0) {
			log_error("%s: parent path not representable", path);
			return -EINVAL;
		}
		for (int i = 0; i < 2; i++) {
			uint32_t space = ((uint32_t)loc_len[i] + 511) / 512 * 512;
			h.loc[i].code = htobe32(i ? VHD_PLAT_W2KU : VHD_PLAT_W2RU);
			h.loc[i].space = htobe32(space);
			h.loc[i].len = htobe32((uint32_t)loc_len[i]);
			h.loc[i].offset = htobe64(end);
			if ((rc = disk_file_pwrite(fd, loc_data[i], (size_t)loc_len[i], end)))
				goto io;
			end += space;
		}
	}
	h.checksum = htobe32(vhd_checksum((const uint8_t *)&h, sizeof(h), 36));
	vhd_footer_build(footer, size, parent ? DISK_TYPE_DIFFERENCING : DISK_TYPE_DYNAMIC, 512, uuid);
	uint8_t *bat = malloc(bat_len);
	if (!bat)
		return -ENOMEM;
	memset(bat, 0xff, bat_len);
	rc = disk_file_pwrite(fd, bat, bat_len, bat_off);
	free(bat);
	if (rc || (rc = disk_file_pwrite(fd, footer, 512, 0)) ||
	    (rc = disk_file_pwrite(fd, &h, sizeof(h), 512)) ||
	    (rc = disk_file_pwrite(fd, footer, 512, end)))
		goto io;
	return 0;
io:
	log_error("%s: cannot write the new VHD: %s", path, strerror(-rc));
	return rc;
}
