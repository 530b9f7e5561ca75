/* Raw images: the file is the disk. */
#include "disk/disk.h"
#include "disk/drivers.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int disk_flat_readv(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	int rc = disk_range_check(d, off, disk_iov_len(iov, iovcnt));
	return rc ? rc : disk_data_preadv(d, iov, iovcnt, off);
}

int disk_flat_writev(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	int rc = disk_change_check(d, off, disk_iov_len(iov, iovcnt));
	return rc ? rc : disk_data_pwritev(d, iov, iovcnt, off);
}

static int raw_flush(struct disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

static int raw_discard(struct disk *d, uint64_t off, uint64_t len)
{
	int rc = disk_change_check(d, off, len);
	if (rc)
		return rc;
	if (d->type == DISK_TYPE_FIXED && d->block_size == 0 && d->priv == (void *)1) {
		/* A host block device: discard its logical sectors (BLKDISCARD refuses a partial one). */
		uint64_t ss = d->logical_sector;
		uint64_t range[2] = { (off + ss - 1) / ss * ss, 0 };
		uint64_t end = (off + len) / ss * ss;
		if (end <= range[0])
			return 0;
		range[1] = end - range[0];
		if (ioctl(d->fd, BLKDISCARD, range) && errno != EOPNOTSUPP)
			return -errno;
		return 0;
	}
	if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) &&
	    errno != EOPNOTSUPP)
		return -errno;
	return 0;
}

static void raw_close(struct disk *d)
{
}

static const struct disk_ops raw_ops = {
	.format = "raw",
	.readv = disk_flat_readv,
	.writev = disk_flat_writev,
	.flush = raw_flush,
	.discard = raw_discard,
	.close = raw_close,
};

int raw_open(struct disk *d, unsigned flags)
{
	struct stat st;
	if (fstat(d->fd, &st))
		return -errno;
	d->ops = &raw_ops;
	/* A raw file's size need not be a sector multiple: the tail reads as it is. */
	d->size = (uint64_t)st.st_size;
	d->logical_sector = 512;
	d->physical_sector = 512;
	/* A punched hole reads as zeros; a block device's discarded sectors need not (BLKDISCARD makes
	 * no promise, and the kernel no longer reports one). */
	d->discard_zeroes = true;
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int lbs = 0;
		unsigned int pbs = 0;
		if (ioctl(d->fd, BLKGETSIZE64, &bytes))
			return -errno;
		d->size = bytes;
		/* The device refuses O_DIRECT I/O that is not a multiple of its logical sector: the guest
		 * must see that sector size (512 and 4096 are what SCSI disks have). */
		if (!ioctl(d->fd, BLKSSZGET, &lbs) && (lbs == 512 || lbs == 4096))
			d->logical_sector = (uint32_t)lbs;
		else if (!ioctl(d->fd, BLKSSZGET, &lbs))
			log_warn("%s: %d-byte logical sectors: the guest sees 512", d->path ? d->path : "disk", lbs);
		if (!ioctl(d->fd, BLKPBSZGET, &pbs) && pbs >= d->logical_sector)
			d->physical_sector = pbs;
		else
			d->physical_sector = d->logical_sector;
		d->discard_zeroes = false;
		d->priv = (void *)1; /* marks a block device for discard */
	}
	d->type = DISK_TYPE_FIXED;
	return 0;
}

int raw_create(const char *path, int fd, const struct disk_create_opts *o)
{
	if (!o->size || o->size % 512) {
		log_error("%s: size must be a non-zero multiple of 512 bytes", path);
		return -EINVAL;
	}
	if (ftruncate(fd, (off_t)o->size)) {
		int e = errno;
		log_error("%s: cannot set size: %s", path, strerror(e));
		return -e;
	}
	if (o->fixed && fallocate(fd, 0, 0, (off_t)o->size) && errno != EOPNOTSUPP) {
		int e = errno;
		log_error("%s: cannot allocate %llu bytes: %s", path, (unsigned long long)o->size,
			  strerror(e));
		return -e;
	}
	return 0;
}
