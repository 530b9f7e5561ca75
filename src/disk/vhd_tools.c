/* VHD offline tools (`gen2vm vhd create/resize/compact`): building a new image, growing one,
 * compacting one. An existing image is one disk_open opened read-write (and locked); its driver
 * state is vhd.c's (vhd_priv.h). The I/O path never calls into this file.
 */
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
