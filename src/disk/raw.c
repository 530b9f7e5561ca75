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
	size_t len = disk_iov_len(iov, iovcnt);
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return disk_data_preadv(d, iov, iovcnt, off);
}

int disk_flat_writev(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	size_t len = disk_iov_len(iov, iovcnt);
	if (d->readonly)
		return -EROFS;
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return disk_data_pwritev(d, iov, iovcnt, off);
}

static int raw_flush(struct disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

static int raw_discard(struct disk *d, uint64_t off, uint64_t len)
{
	if (d->readonly)
		return -EROFS;
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	if (d->type == DISK_TYPE_FIXED && d->block_size == 0 && d->priv == (void *)1) {
		/* A host block device: discard its sectors (aligned part only). */
		uint64_t range[2] = { (off + 511) & ~511ull, 0 };
		uint64_t end = (off + len) & ~511ull;
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
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int pbs = 0;
		if (ioctl(d->fd, BLKGETSIZE64, &bytes))
			return -errno;
		d->size = bytes;
		if (!ioctl(d->fd, BLKPBSZGET, &pbs) && pbs >= 512)
			d->physical_sector = (uint32_t)pbs;
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
