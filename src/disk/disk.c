#include "disk/disk.h"
#include "gen2vm/proto/vmbus.h"
#include "disk/drivers.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- file helpers ------------------------------------------------------------------------- */

int disk_file_pread(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* past EOF: a truncated file */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int disk_file_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

size_t disk_iov_len(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

int disk_iov_sub(const struct iovec *iov, int iovcnt, size_t skip, size_t len, struct iovec *out)
{
	int n = 0;
	for (int i = 0; i < iovcnt && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - skip;
		if (take > len)
			take = len;
		out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return n;
}

void disk_iov_zero(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
}

/* preadv/pwritev move at most IOV_MAX entries and may be short: advance and go on. */
static int disk_file_rwv(int fd, const struct iovec *iov_in, int iovcnt, uint64_t off, bool wr)
{
	struct iovec stackv[16], *v = stackv;
	if (iovcnt > 16) {
		v = malloc(sizeof(*v) * (size_t)iovcnt);
		if (!v)
			return -ENOMEM;
	}
	memcpy(v, iov_in, sizeof(*v) * (size_t)iovcnt);
	int rc = 0, i = 0;
	while (i < iovcnt) {
		if (!v[i].iov_len) {
			i++;
			continue;
		}
		int cnt = iovcnt - i > IOV_MAX ? IOV_MAX : iovcnt - i;
		ssize_t n = wr ? pwritev(fd, v + i, cnt, (off_t)off) : preadv(fd, v + i, cnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = -EIO;
			break;
		}
		off += (uint64_t)n;
		while (n > 0 && i < iovcnt) {
			if ((size_t)n >= v[i].iov_len) {
				n -= (ssize_t)v[i].iov_len;
				i++;
			} else {
				v[i].iov_base = (uint8_t *)v[i].iov_base + n;
				v[i].iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	if (v != stackv)
		free(v);
	return rc;
}

int disk_file_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return disk_file_rwv(fd, iov, iovcnt, off, false);
}

int disk_file_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return disk_file_rwv(fd, iov, iovcnt, off, true);
}

/* --- generic block-mapped I/O --------------------------------------------------------------- */

int disk_range_check(const struct disk *d, uint64_t off, uint64_t len)
{
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return 0;
}

int disk_change_check(const struct disk *d, uint64_t off, uint64_t len)
{
	return d->readonly ? -EROFS : disk_range_check(d, off, len);
}

void disk_whole_blocks(const struct disk *d, uint64_t off, uint64_t len, uint64_t *b0, uint64_t *b1)
{
	uint64_t end = off + len;
	*b0 = (off + d->block_size - 1) / d->block_size;
	*b1 = end == d->size ? (d->size + d->block_size - 1) / d->block_size : end / d->block_size;
}

/* A parent may be smaller than its child (the child was grown): beyond it reads zero. */
static int disk_parent_readv(struct disk *p, uint64_t off, const struct iovec *iov, int iovcnt,
			     size_t len)
{
	if (off >= p->size) {
		disk_iov_zero(iov, iovcnt);
		return 0;
	}
	if (len <= p->size - off)
		return p->ops->readv(p, off, iov, iovcnt);
	size_t in = (size_t)(p->size - off);
	struct iovec stackv[16], *v = stackv;
	if (iovcnt > 16 && !(v = malloc(sizeof(*v) * (size_t)iovcnt)))
		return -ENOMEM;
	int n = disk_iov_sub(iov, iovcnt, 0, in, v);
	int rc = p->ops->readv(p, off, v, n);
	n = disk_iov_sub(iov, iovcnt, in, len - in, v);
	disk_iov_zero(v, n);
	if (v != stackv)
		free(v);
	return rc;
}

bool disk_direct_aligned(const struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off)
{
	if (d->direct_fd < 0 || file_off % d->direct_align)
		return false;
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % d->direct_align || iov[i].iov_len % d->direct_align)
			return false;
	return true;
}

static int disk_data_fd(const struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off)
{
	return disk_direct_aligned(d, iov, iovcnt, file_off) ? d->direct_fd : d->fd;
}

/* An O_DIRECT fd of the same open file as fd (not the path again, which may have been replaced),
 * and the alignment it needs: STATX_DIOALIGN where the kernel tells, else 512 bytes (what every
 * file system accepts; a refusal then costs one -EINVAL and a buffered retry). -1 when the file
 * system refuses O_DIRECT for this file. */
static int disk_direct_open(int fd, bool ro, uint32_t *align)
{
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	int dfd = open(self, (ro ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	*align = 512;
	struct statx stx;
	if (!statx(dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) && (stx.stx_mask & STATX_DIOALIGN)) {
		if (!stx.stx_dio_offset_align) {
			close(dfd);
			return -1;
		}
		uint32_t a = stx.stx_dio_offset_align > stx.stx_dio_mem_align ? stx.stx_dio_offset_align
									      : stx.stx_dio_mem_align;
		if (a > *align)
			*align = a;
	}
	return dfd;
}

int disk_data_preadv(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off)
{
	int fd = disk_data_fd(d, iov, iovcnt, file_off);
	int rc = disk_file_preadv(fd, iov, iovcnt, file_off);
	/* A file system may refuse O_DIRECT only for some ranges (-EINVAL): buffered then. */
	if (rc == -EINVAL && fd != d->fd)
		rc = disk_file_preadv(d->fd, iov, iovcnt, file_off);
	return rc;
}

int disk_data_pwritev(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off)
{
	int fd = disk_data_fd(d, iov, iovcnt, file_off);
	int rc = disk_file_pwritev(fd, iov, iovcnt, file_off);
	if (rc == -EINVAL && fd != d->fd)
		rc = disk_file_pwritev(d->fd, iov, iovcnt, file_off);
	return rc;
}

static int disk_map_rw(struct disk *d, disk_map_fn map, uint64_t off, const struct iovec *iov,
		       int iovcnt, bool wr)
{
	size_t total = disk_iov_len(iov, iovcnt);
	if (disk_range_check(d, off, total))
		return -EINVAL;
	if (wr && d->readonly)
		return -EROFS;
	struct iovec stackv[16], *v = stackv;
	if (iovcnt > 16 && !(v = malloc(sizeof(*v) * (size_t)iovcnt)))
		return -ENOMEM;
	int rc = 0;
	size_t pos = 0;
	struct disk_extent e, nx;
	bool have_next = false;
	while (pos < total) {
		if (have_next) {
			e = nx;
			have_next = false;
		} else {
			rc = map(d, off + pos, total - pos, wr, &e);
			if (rc)
				break;
		}
		if (e.len == 0 || e.len > total - pos) {
			rc = -EIO;
			break;
		}
		/* Blocks that follow each other in the file too go in one system call. */
		while (e.kind == DISK_EXT_DATA && pos + e.len < total) {
			rc = map(d, off + pos + e.len, total - pos - e.len, wr, &nx);
			if (rc)
				break;
			if (nx.len == 0 || nx.len > total - pos - e.len) {
				rc = -EIO;
				break;
			}
			if (nx.kind != DISK_EXT_DATA || nx.file_off != e.file_off + e.len) {
				have_next = true;
				break;
			}
			e.len += nx.len;
		}
		if (rc)
			break;
		int n = disk_iov_sub(iov, iovcnt, pos, e.len, v);
		if (e.kind == DISK_EXT_DATA)
			rc = wr ? disk_data_pwritev(d, v, n, e.file_off) : disk_data_preadv(d, v, n, e.file_off);
		else if (wr)
			rc = -EIO; /* a write must always be mapped to data */
		else if (e.kind == DISK_EXT_ZERO || !d->parent)
			disk_iov_zero(v, n);
		else
			rc = disk_parent_readv(d->parent, off + pos, v, n, e.len);
		if (rc)
			break;
		pos += e.len;
	}
	if (v != stackv)
		free(v);
	return rc;
}

int disk_map_readv(struct disk *d, disk_map_fn map, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_rw(d, map, off, iov, iovcnt, false);
}

int disk_map_writev(struct disk *d, disk_map_fn map, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return disk_map_rw(d, map, off, iov, iovcnt, true);
}

int disk_block_status(struct disk *d, uint64_t off, uint64_t len, struct disk_extent *ext)
{
	if (disk_range_check(d, off, len) || !len)
		return -EINVAL;
	if (!d->map) {
		ext->kind = DISK_EXT_DATA;
		ext->file_off = off;
		ext->len = len;
		return 0;
	}
	return d->map(d, off, len, false, ext);
}

int disk_pread(struct disk *d, void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	return d->ops->readv(d, off, &v, 1);
}

int disk_pwrite(struct disk *d, const void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	return d->ops->writev(d, off, &v, 1);
}

/* --- identity, locking, probing ------------------------------------------------------------ */

void disk_guid_generate(uint8_t guid[16])
{
	size_t got = 0;
	while (got < 16) {
		ssize_t n = getrandom(guid + got, 16 - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	guid[7] = (guid[7] & 0x0f) | 0x40; /* version 4, stored little-endian in field 3 */
	guid[8] = (guid[8] & 0x3f) | 0x80;
}

void disk_guid_format(const uint8_t g[16], char out[39])
{
	snprintf(out, 39, "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12],
		 g[13], g[14], g[15]);
}

int disk_guid_parse(const char *s, uint8_t g[16])
{
	/* VHDX writes GUIDs in braces: "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}". */
	char canon[37];
	if (*s == '{')
		s++;
	size_t n = strlen(s);
	if (n && s[n - 1] == '}')
		n--;
	if (n != 36)
		return -EINVAL;
	memcpy(canon, s, 36);
	canon[36] = 0;
	struct vmbus_guid guid;
	if (vmbus_guid_parse(canon, &guid))
		return -EINVAL;
	memcpy(g, guid.b, 16);
	return 0;
}

/* Who else has the same file open (OFD locks do not record their owner, so look at every process's
 * descriptors we may read). Writes "pid N (comm)" or an empty string; *self is set when it is this
 * very process (the same image attached twice), which is looked at first. */
static void disk_lock_holder(int fd, char *out, size_t len, bool *self)
{
	struct stat want;
	out[0] = 0;
	*self = false;
	if (fstat(fd, &want))
		return;
	char own[64];
	snprintf(own, sizeof(own), "/proc/self/fd/%d", fd);
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *f;
	while (fds && !*self && (f = readdir(fds))) {
		char p[384];
		struct stat st;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", f->d_name);
		*self = f->d_name[0] != '.' && strcmp(p, own) && !stat(p, &st) && st.st_dev == want.st_dev &&
			st.st_ino == want.st_ino;
	}
	if (fds)
		closedir(fds);
	if (*self)
		return;
	DIR *proc = opendir("/proc");
	if (!proc)
		return;
	struct dirent *e;
	pid_t me = getpid();
	while (!out[0] && (e = readdir(proc))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == me)
			continue;
		char dir[64];
		snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
		fds = opendir(dir);
		if (!fds)
			continue;
		while ((f = readdir(fds))) {
			char p[384];
			struct stat st;
			snprintf(p, sizeof(p), "%s/%s", dir, f->d_name);
			if (f->d_name[0] == '.' || stat(p, &st) || st.st_dev != want.st_dev || st.st_ino != want.st_ino)
				continue;
			char comm[64] = "";
			snprintf(p, sizeof(p), "/proc/%ld/comm", pid);
			FILE *c = fopen(p, "r");
			if (c) {
				if (fgets(comm, sizeof(comm), c))
					comm[strcspn(comm, "\n")] = 0;
				fclose(c);
			}
			snprintf(out, len, "pid %ld%s%s%s", pid, comm[0] ? " (" : "", comm, comm[0] ? ")" : "");
			break;
		}
		closedir(fds);
	}
	closedir(proc);
}

int disk_lock(const char *path, int fd, bool write)
{
	struct flock fl = { .l_type = write ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	int e = errno;
	if (e == EAGAIN || e == EACCES) {
		char who[128];
		bool self;
		disk_lock_holder(fd, who, sizeof(who), &self);
		if (self)
			log_error("%s: already in use by this gen2vm (the same image given twice, or as another disk's "
				  "parent while writable); give each image once", path);
		else
			log_error("%s: in use by another process%s%s (%s); close the VM or tool using it", path,
				  who[0] ? ", " : "", who,
				  write ? "it holds a lock on the image" : "it has the image open for writing");
		return -EBUSY;
	}
	log_error("%s: cannot lock: %s", path, strerror(e));
	return -e;
}

const char *disk_probe(const char *path, int fd)
{
	uint8_t head[8], tail[512];
	struct stat st;
	if (fstat(fd, &st)) {
		log_error("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (st.st_size >= 8 && !disk_file_pread(fd, head, 8, 0) && !memcmp(head, "vhdxfile", 8))
		return "vhdx";
	/* A fixed VHD has the footer only at the end; older ones wrote 511 bytes. */
	if (st.st_size >= 512 && !disk_file_pread(fd, tail, 512, (uint64_t)st.st_size - 512)) {
		if (!memcmp(tail, "conectix", 8) || !memcmp(tail + 1, "conectix", 8))
			return "vhd";
	}
	if (st.st_size >= 8 && !memcmp(head, "conectix", 8))
		return "vhd"; /* dynamic VHD whose trailing footer was lost: vhd_open says so */
	return "raw";
}

unsigned disk_format_flag(const char *name)
{
	if (!strcmp(name, "raw"))
		return DISK_FORMAT_RAW;
	if (!strcmp(name, "vhd"))
		return DISK_FORMAT_VHD;
	if (!strcmp(name, "vhdx"))
		return DISK_FORMAT_VHDX;
	return 0;
}

/* ".vhdx" or ".vhd" when path's name says it is one (any case), else NULL. */
static const char *disk_name_format(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && strchr(dot, '/'))
		dot = NULL;
	if (dot && !strcasecmp(dot, ".vhdx"))
		return "vhdx";
	if (dot && !strcasecmp(dot, ".vhd"))
		return "vhd";
	return NULL;
}

/* The format to open the file as: what its contents say, unless flags force one. Contents that say
 * raw are only taken for raw when nothing says otherwise: a file named .vhdx/.vhd, or holding what is
 * left of a VHDX or VHD (a header, region table or dynamic header with a valid checksum), is a damaged
 * or foreign image, and taking it for raw data would hide that and let a guest or `vhd resize` write
 * over it. DISK_FORMAT_RAW (",format=raw") says the user knows. NULL after logging the reason. */
static const char *disk_detect(const char *path, int fd, const struct stat *st, unsigned flags)
{
	if (flags & DISK_FORMAT_RAW)
		return "raw";
	const char *fmt = disk_probe(path, fd);
	if (!fmt)
		return NULL;
	const char *want = flags & DISK_FORMAT_VHDX ? "vhdx" : flags & DISK_FORMAT_VHD ? "vhd" : NULL;
	if (want && strcmp(fmt, want)) {
		log_error("%s: format=%s was given, but it is %s", path, want,
			  !strcmp(fmt, "raw") ? "not one (no signature of that format)" : !strcmp(fmt, "vhd") ? "a VHD" : "a VHDX");
		return NULL;
	}
	if (strcmp(fmt, "raw") || S_ISBLK(st->st_mode))
		return fmt;
	const char *named = disk_name_format(path);
	if (vhdx_remnants(fd)) {
		log_error("%s: damaged VHDX: its file signature (\"vhdxfile\") is missing but its headers are there; "
			  "not opened (to use the bytes as a raw disk anyway, give ,format=raw)", path);
		return NULL;
	}
	if (vhd_remnants(fd)) {
		log_error("%s: damaged VHD: its footer (\"conectix\") is missing but its dynamic header is there; not "
			  "opened (to use the bytes as a raw disk anyway, give ,format=raw)", path);
		return NULL;
	}
	if (named) {
		log_error("%s: named .%s but not a %s file (%s); if it is a raw disk image, give ,format=raw or rename "
			  "it", path, named, !strcmp(named, "vhdx") ? "VHDX" : "VHD",
			  !strcmp(named, "vhdx") ? "no \"vhdxfile\" signature at its start" : "no \"conectix\" footer");
		return NULL;
	}
	return fmt;
}

/* Files of the chain being opened on this thread, to refuse parent loops. */
static __thread struct {
	dev_t dev;
	ino_t ino;
} chain[DISK_MAX_CHAIN + 1];
static __thread int chain_depth;

int disk_open(const char *path, unsigned flags, struct disk **out)
{
	*out = NULL;
	if (flags & DISK_NOLOCK)
		flags |= DISK_RDONLY;
	bool ro = flags & DISK_RDONLY;
	char why[160];
	/* Images and block devices only, opened without blocking: a FIFO or a character device named
	 * as a disk (or as a parent) is refused, never waited on. */
	int fd = file_open_user(path, ro ? O_RDONLY : O_RDWR, 0, FILE_REG | FILE_BLK, why, sizeof(why));
	if (fd < 0) {
		log_error("%s: cannot open: %s", text_show(path), why);
		return fd;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		int e = errno;
		log_error("%s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	for (int i = 0; i < chain_depth; i++) {
		if (chain[i].dev == st.st_dev && chain[i].ino == st.st_ino) {
			log_error("%s: differencing chain loops (this file is its own ancestor)", path);
			close(fd);
			return -ELOOP;
		}
	}
	if (chain_depth >= DISK_MAX_CHAIN) {
		log_error("%s: differencing chain deeper than %d", path, DISK_MAX_CHAIN);
		close(fd);
		return -ELOOP;
	}
	int rc = (flags & DISK_NOLOCK) ? 0 : disk_lock(path, fd, !ro);
	if (rc) {
		close(fd);
		return rc;
	}
	struct disk *d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		close(fd);
		return -ENOMEM;
	}
	d->fd = fd;
	d->direct_fd = -1;
	d->readonly = ro;
	d->flags = flags;
	if (flags & DISK_DIRECT)
		d->direct_fd = disk_direct_open(fd, ro, &d->direct_align);
	const char *fmt = disk_detect(path, fd, &st, flags);
	chain[chain_depth].dev = st.st_dev;
	chain[chain_depth].ino = st.st_ino;
	chain_depth++;
	if (!fmt)
		rc = -EINVAL;
	else if (!strcmp(fmt, "vhdx"))
		rc = vhdx_open(d, flags);
	else if (!strcmp(fmt, "vhd"))
		rc = vhd_open(d, flags);
	else
		rc = raw_open(d, flags);
	chain_depth--;
	if (rc) {
		disk_close(d->parent);
		if (d->direct_fd >= 0)
			close(d->direct_fd);
		close(fd);
		free(d->path);
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	if (d->ops && d->ops->close)
		d->ops->close(d);
	if (d->parent)
		disk_close(d->parent);
	if (d->fd >= 0)
		close(d->fd);
	if (d->direct_fd >= 0)
		close(d->direct_fd);
	free(d->path);
	free(d);
}

/* --- parents --------------------------------------------------------------------------------- */

static char *disk_parent_candidate(const char *child, const char *rel)
{
	char *p = strdup(rel);
	if (!p)
		return NULL;
	for (char *c = p; *c; c++)
		if (*c == '\\')
			*c = '/'; /* locators written on Windows */
	char *q = p;
	while (!strncmp(q, "./", 2))
		q += 2;
	if (q[0] == '/')
		return p;
	const char *slash = strrchr(child, '/');
	size_t dl = slash ? (size_t)(slash - child + 1) : 0;
	char *full = malloc(dl + strlen(q) + 1);
	if (full) {
		memcpy(full, child, dl);
		strcpy(full + dl, q);
	}
	free(p);
	return full;
}

int disk_parent_open(struct disk *child, const char *rel, const char *abs,
		     disk_parent_verify_fn verify, struct disk **out)
{
	const char *cands[2] = { rel, abs };
	bool tried = false, mismatch = false;
	for (int i = 0; i < 2; i++) {
		if (!cands[i] || !*cands[i])
			continue;
		char *p = i == 0 ? disk_parent_candidate(child->path, cands[i]) : strdup(cands[i]);
		if (!p)
			return -ENOMEM;
		if (i == 1 && p[0] != '/') {
			/* A Windows absolute path (C:\...) cannot be found here. */
			free(p);
			continue;
		}
		tried = true;
		if (access(p, F_OK)) {
			free(p);
			continue;
		}
		struct disk *par;
		/* The parent's own messages (it is missing its signature, a FIFO, in use...) come out as
		 * the child's: one line naming both. */
		size_t ctx = log_context_push("%s: its parent ", text_show(child->path));
		int rc = disk_open(p, DISK_RDONLY | (child->flags & (DISK_NOLOCK | DISK_DIRECT)), &par);
		log_context_pop(ctx);
		free(p);
		if (rc)
			return rc;
		rc = verify(child, par);
		if (rc) {
			mismatch = true;
			disk_close(par);
			continue;
		}
		*out = par;
		return 0;
	}
	if (mismatch) {
		log_error("%s: parent found but its identifier does not match (the parent was "
			  "modified or replaced after this differencing disk was made)", child->path);
		return -EINVAL;
	}
	log_error("%s: parent disk not found (%s%s%s%s)", child->path, tried ? "tried " : "no usable locator",
		  rel && *rel ? rel : "", rel && *rel && abs && *abs ? ", " : "", abs && *abs ? abs : "");
	return -ENOENT;
}

char *disk_relpath(const char *from_file, const char *to_file)
{
	char *dir = strdup(from_file), *to = realpath(to_file, NULL), *from = NULL, *out = NULL;
	if (!dir || !to)
		goto done;
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(dir, ".");
	from = realpath(dir, NULL);
	if (!from)
		goto done;
	/* Longest common directory prefix. */
	size_t i = 0, common = 0;
	while (from[i] && to[i] && from[i] == to[i]) {
		if (from[i] == '/')
			common = i;
		i++;
	}
	if (!from[i] && to[i] == '/')
		common = i;
	size_t ups = 0;
	for (const char *p = from + common; *p; p++)
		if (*p == '/' && p[1])
			ups++;
	if (!strcmp(from, "/"))
		ups = 0;
	out = malloc(ups * 3 + strlen(to) + 3);
	if (!out)
		goto done;
	out[0] = 0;
	if (!ups)
		strcpy(out, "./");
	for (size_t k = 0; k < ups; k++)
		strcat(out, "../");
	strcat(out, to + common + 1);
done:
	free(dir);
	free(to);
	free(from);
	return out;
}

/* --- UTF-16 ------------------------------------------------------------------------------------ */

int disk_utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_size)
{
	size_t o = 0;
	for (size_t i = 0; i + 1 < in_bytes; i += 2) {
		uint32_t c = in[i] | (uint32_t)in[i + 1] << 8;
		if (c == 0)
			break;
		if (c >= 0xd800 && c < 0xdc00 && i + 3 < in_bytes) {
			uint32_t c2 = in[i + 2] | (uint32_t)in[i + 3] << 8;
			if (c2 < 0xdc00 || c2 >= 0xe000)
				return -EINVAL;
			c = 0x10000 + ((c - 0xd800) << 10) + (c2 - 0xdc00);
			i += 2;
		} else if (c >= 0xd800 && c < 0xe000) {
			return -EINVAL;
		}
		uint8_t b[4];
		int n;
		if (c < 0x80) {
			b[0] = (uint8_t)c;
			n = 1;
		} else if (c < 0x800) {
			b[0] = (uint8_t)(0xc0 | c >> 6);
			b[1] = (uint8_t)(0x80 | (c & 0x3f));
			n = 2;
		} else if (c < 0x10000) {
			b[0] = (uint8_t)(0xe0 | c >> 12);
			b[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
			b[2] = (uint8_t)(0x80 | (c & 0x3f));
			n = 3;
		} else {
			b[0] = (uint8_t)(0xf0 | c >> 18);
			b[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
			b[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
			b[3] = (uint8_t)(0x80 | (c & 0x3f));
			n = 4;
		}
		if (o + (size_t)n + 1 > out_size)
			return -EINVAL;
		memcpy(out + o, b, (size_t)n);
		o += (size_t)n;
	}
	if (o + 1 > out_size)
		return -EINVAL;
	out[o] = 0;
	return (int)o;
}

int disk_utf8_to_utf16le(const char *in, uint8_t *out, size_t out_size)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t o = 0;
	while (*s) {
		uint32_t c;
		int n;
		if (*s < 0x80) {
			c = *s;
			n = 1;
		} else if ((*s & 0xe0) == 0xc0) {
			c = *s & 0x1f;
			n = 2;
		} else if ((*s & 0xf0) == 0xe0) {
			c = *s & 0x0f;
			n = 3;
		} else if ((*s & 0xf8) == 0xf0) {
			c = *s & 0x07;
			n = 4;
		} else {
			return -EINVAL;
		}
		for (int k = 1; k < n; k++) {
			if ((s[k] & 0xc0) != 0x80)
				return -EINVAL;
			c = c << 6 | (s[k] & 0x3f);
		}
		s += n;
		if (c >= 0x10000) {
			if (o + 4 > out_size)
				return -EINVAL;
			uint32_t v = c - 0x10000, hi = 0xd800 + (v >> 10), lo = 0xdc00 + (v & 0x3ff);
			out[o++] = (uint8_t)hi;
			out[o++] = (uint8_t)(hi >> 8);
			out[o++] = (uint8_t)lo;
			out[o++] = (uint8_t)(lo >> 8);
		} else {
			if (o + 2 > out_size)
				return -EINVAL;
			out[o++] = (uint8_t)c;
			out[o++] = (uint8_t)(c >> 8);
		}
	}
	return (int)o;
}

/* --- create -------------------------------------------------------------------------------- */

int disk_create(const char *path, const struct disk_create_opts *o)
{
	const char *fmt = o->format ? o->format : "vhdx";
	if (strcmp(fmt, "vhdx") && strcmp(fmt, "vhd") && strcmp(fmt, "raw")) {
		log_error("%s: unknown format '%s' (use vhdx, vhd or raw)", path, fmt);
		return -EINVAL;
	}
	struct disk *parent = NULL;
	int rc;
	if (o->parent) {
		if (!strcmp(fmt, "raw")) {
			log_error("%s: a raw image cannot have a parent", path);
			return -EINVAL;
		}
		rc = disk_open(o->parent, DISK_RDONLY, &parent);
		if (rc)
			return rc;
		if (strcmp(parent->ops->format, fmt)) {
			log_error("%s: a %s differencing disk needs a %s parent, %s is %s", path, fmt, fmt,
				  o->parent, parent->ops->format);
			disk_close(parent);
			return -EINVAL;
		}
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		log_error("%s: cannot create: %s", path, strerror(errno));
		disk_close(parent);
		return rc;
	}
	if (!strcmp(fmt, "vhdx"))
		rc = vhdx_create(path, fd, o, parent);
	else if (!strcmp(fmt, "vhd"))
		rc = vhd_create(path, fd, o, parent);
	else
		rc = raw_create(path, fd, o);
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	disk_close(parent);
	if (rc)
		unlink(path);
	return rc;
}

int disk_read_view_locked(struct disk *d, void *drv, disk_map_locked_fn map, uint64_t off, uint8_t *buf,
			  uint64_t len)
{
	while (len) {
		struct disk_extent e;
		int rc = map(d, drv, off, len, &e);
		if (rc)
			return rc;
		if (e.kind == DISK_EXT_DATA) {
			rc = disk_file_pread(d->fd, buf, e.len, e.file_off);
		} else if (e.kind == DISK_EXT_PARENT && d->parent) {
			struct iovec v = { .iov_base = buf, .iov_len = e.len };
			rc = disk_parent_readv(d->parent, off, &v, 1, e.len);
		} else {
			memset(buf, 0, e.len);
		}
		if (rc)
			return rc;
		off += e.len;
		buf += e.len;
		len -= e.len;
	}
	return 0;
}

/* --- compaction ------------------------------------------------------------------------------ */

int disk_file_zero(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[4096];
	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	int rc = 0;
	for (uint64_t o = 0; o < len && !rc; o += sizeof(zero))
		rc = disk_file_pwrite(fd, zero, len - o < sizeof(zero) ? len - o : sizeof(zero), off + o);
	return rc;
}

int disk_file_copy(int fd, uint64_t from, uint64_t to, uint64_t len)
{
	static const uint8_t zero[4096];
	const uint64_t chunk = 1024 * 1024, page = sizeof(zero);
	uint8_t *buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	for (uint64_t o = 0; o < len && !rc; o += chunk) {
		size_t n = (size_t)(len - o < chunk ? len - o : chunk);
		rc = disk_file_pread(fd, buf, n, from + o);
		/* Runs of whole zero pages are punched, not written: a block a guest wrote only
		 * here and there stays sparse at its new place. The destination is free space
		 * that may hold stale bytes, so the zeros must be made, not skipped. */
		for (size_t k = 0; k < n && !rc;) {
			bool z = !memcmp(buf + k, zero, n - k < page ? n - k : page);
			size_t r = k;
			while (r < n && !memcmp(buf + r, zero, n - r < page ? n - r : page) == z)
				r += n - r < page ? n - r : page;
			rc = z ? disk_file_zero(fd, to + o + k, r - k) : disk_file_pwrite(fd, buf + k, r - k, to + o + k);
			k = r;
		}
	}
	free(buf);
	return rc;
}

static int disk_used_cmp(const void *a, const void *b)
{
	const struct disk_used *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int disk_relocate(struct disk *d, void *drv, struct disk_used *u, size_t n, uint64_t align,
		  disk_move_fn move, void (*progress)(void *ctx, uint64_t done, uint64_t total),
		  void *ctx, uint64_t *moved, uint64_t *end)
{
	qsort(u, n, sizeof(*u), disk_used_cmp);
	size_t movable = 0;
	for (size_t i = 0; i < n; i++)
		movable += u[i].id != DISK_USED_FIXED;
	*moved = 0;
	int rc = 0;
	/* Gaps are filled lowest first while only the top extent ever leaves: a gap too small for
	 * an extent of length L stays too small for L, so the search for L resumes at its gi
	 * (gi_end: the end of u[0..gi-1]). One resume point per length (VHDX: blocks and 1 MiB
	 * sector bitmaps); a length beyond the table searches from the start. */
	struct {
		uint64_t len, gi_end;
		size_t gi;
	} rs[4];
	size_t nrs = 0;
	while (n >= 2 && u[n - 1].id != DISK_USED_FIXED) {
		struct disk_used top = u[n - 1];
		size_t r = 0, tmp_gi = 0;
		uint64_t tmp_end = 0;
		while (r < nrs && rs[r].len != top.len)
			r++;
		if (r == nrs && nrs < sizeof(rs) / sizeof(rs[0]))
			rs[nrs++] = (typeof(rs[0])){ top.len, 0, 0 };
		size_t *gi = r < nrs ? &rs[r].gi : &tmp_gi;
		uint64_t *gi_end = r < nrs ? &rs[r].gi_end : &tmp_end;
		uint64_t prev_end = *gi_end, at = UINT64_MAX;
		size_t slot = 0;
		for (size_t i = *gi; i < n; i++) {
			uint64_t start = (prev_end + align - 1) / align * align;
			if (start + top.len > top.off)
				break; /* nothing below the top is large enough */
			if (start + top.len <= u[i].off) {
				at = start;
				slot = i;
				break;
			}
			if (u[i].off + u[i].len > prev_end)
				prev_end = u[i].off + u[i].len;
			*gi = i + 1;
			*gi_end = prev_end;
		}
		if (at == UINT64_MAX)
			break;
		rc = move(d, drv, top.id, top.off, at, top.len);
		if (rc)
			break;
		(*moved)++;
		/* The top leaves the end and goes in before u[slot]: still sorted. */
		memmove(&u[slot + 1], &u[slot], (n - 1 - slot) * sizeof(*u));
		u[slot] = top;
		u[slot].off = at;
		/* Entries at or after slot shifted up by one; the new one ends below u[slot + 1], so
		 * a resume point past it keeps its gi_end. */
		for (size_t k = 0; k < nrs; k++)
			if (slot < rs[k].gi)
				rs[k].gi++;
		if (progress)
			progress(ctx, *moved, movable);
	}
	uint64_t e = 0;
	for (size_t i = 0; i < n; i++)
		if (u[i].off + u[i].len > e)
			e = u[i].off + u[i].len;
	*end = e;
	return rc;
}

struct disk_compact_progress {
	void (*fn)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
};

/* The move phase is the second half of the bar. */
static void disk_compact_move_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct disk_compact_progress *p = ctx;
	if (p->fn && total)
		p->fn(p->ctx, 1000 + done * 1000 / total, 2000);
}

bool disk_all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[4096];
	while (n >= sizeof(z)) {
		if (memcmp(p, z, sizeof(z)))
			return false;
		p += sizeof(z);
		n -= sizeof(z);
	}
	return !memcmp(p, z, n);
}

/* Whether any of [off, off+len) is stored in d itself (not zeros, not the parent's). */
static int disk_has_data(struct disk *d, uint64_t off, uint64_t len, bool *data)
{
	*data = false;
	while (len && !*data) {
		struct disk_extent e;
		int rc = disk_block_status(d, off, len, &e);
		if (rc)
			return rc;
		*data = e.kind == DISK_EXT_DATA;
		off += e.len;
		len -= e.len;
	}
	return 0;
}

int disk_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total),
		 void *ctx, struct disk_compact_stats *st)
{
	struct stat s;
	memset(st, 0, sizeof(*st));
	if (fstat(d->fd, &s))
		return -errno;
	st->size_before = (uint64_t)s.st_size;
	st->alloc_before = (uint64_t)s.st_blocks * 512;
	st->size_after = st->size_before;
	st->alloc_after = st->alloc_before;
	if (d->readonly)
		return -EROFS;
	if (!d->ops->release || !d->block_size || d->type == DISK_TYPE_FIXED)
		return 0;
	uint8_t *buf = malloc(d->block_size), *pbuf = d->parent ? malloc(d->block_size) : NULL;
	if (!buf || (d->parent && !pbuf)) {
		free(buf);
		return -ENOMEM;
	}
	int rc = 0;
	uint64_t nblocks = (d->size + d->block_size - 1) / d->block_size;
	/* 1: blocks that read the same without their own data give it up: a differencing disk's
	 * blocks that read as the parent does go back to the parent; blocks that read as zeros
	 * become zero blocks (a differencing VHD has none: it keeps them). */
	for (uint64_t off = 0; off < d->size && !rc; off += d->block_size) {
		uint64_t len = d->size - off < d->block_size ? d->size - off : d->block_size;
		bool data;
		if (progress)
			progress(ctx, off / d->block_size * 1000 / nblocks, 2000);
		if ((rc = disk_has_data(d, off, len, &data)) || !data)
			continue;
		if ((rc = disk_pread(d, buf, len, off)))
			break;
		if (d->parent) {
			struct iovec pv = { .iov_base = pbuf, .iov_len = len };
			if ((rc = disk_parent_readv(d->parent, off, &pv, 1, len)))
				break;
			if (!memcmp(buf, pbuf, len)) {
				if (!(rc = d->ops->release(d, off, len, DISK_RELEASE_PARENT)))
					st->parent_blocks++;
				continue;
			}
		}
		if (disk_all_zero(buf, len)) {
			rc = d->ops->release(d, off, len, DISK_RELEASE_ZERO);
			if (!rc)
				st->zero_blocks++;
			else if (rc == -EOPNOTSUPP)
				rc = 0;
		}
	}
	free(buf);
	free(pbuf);
	if (rc) {
		log_error("%s: releasing blocks failed: %s", d->path, strerror(-rc));
		return rc;
	}
	/* 2: move the blocks at the end down and truncate. */
	struct disk_compact_progress pp = { progress, ctx };
	if (d->ops->compact)
		rc = d->ops->compact(d, disk_compact_move_progress, &pp, &st->moved_blocks);
	if (progress)
		progress(ctx, 2000, 2000);
	if (!rc && fstat(d->fd, &s))
		rc = -errno;
	if (!rc) {
		st->size_after = (uint64_t)s.st_size;
		st->alloc_after = (uint64_t)s.st_blocks * 512;
	}
	return rc;
}
