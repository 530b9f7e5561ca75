#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/text.h"

const char *file_kind_name(const struct stat *st)
{
	switch (st->st_mode & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO (named pipe)";
	case S_IFSOCK: return "a socket";
	case S_IFBLK: return "a block device";
	case S_IFCHR: return "a character device";
	case S_IFLNK: return "a symbolic link";
	default: return "a special file";
	}
}

static bool file_kind_ok(const struct stat *st, unsigned allow)
{
	return ((allow & FILE_REG) && S_ISREG(st->st_mode)) || ((allow & FILE_BLK) && S_ISBLK(st->st_mode)) ||
	       ((allow & FILE_CHR) && S_ISCHR(st->st_mode));
}

/* "is a FIFO (named pipe), not a regular file or block device" */
static int file_kind_refuse(const struct stat *st, unsigned allow, char *why, size_t whylen)
{
	const char *want = allow == FILE_REG		  ? "a regular file"
			   : allow == (FILE_REG | FILE_BLK) ? "a regular file or block device"
			   : allow == (FILE_REG | FILE_CHR) ? "a regular file or character device"
							    : "a regular file or device";
	if (why)
		snprintf(why, whylen, "is %s, not %s", file_kind_name(st), want);
	return S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;
}

static int file_errno(int e, char *why, size_t whylen)
{
	if (why)
		snprintf(why, whylen, "%s", strerror(e));
	return -e;
}

int file_open_user(const char *path, int flags, mode_t mode, unsigned allow, char *why, size_t whylen)
{
	struct stat st;
	if (!*path)
		return file_errno(ENOENT, why, whylen);
	if (strlen(path) >= PATH_MAX)
		return file_errno(ENAMETOOLONG, why, whylen);
	/* First look without opening: opening a FIFO blocks, opening a device may act on it. */
	if (stat(path, &st) == 0) {
		if (!file_kind_ok(&st, allow))
			return file_kind_refuse(&st, allow, why, whylen);
		if ((flags & O_CREAT) && (flags & O_EXCL))
			return file_errno(EEXIST, why, whylen);
	} else if (errno != ENOENT || !(flags & O_CREAT)) {
		return file_errno(errno, why, whylen);
	}
	int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, mode);
	if (fd < 0)
		return file_errno(errno, why, whylen);
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return file_errno(e, why, whylen);
	}
	if (!file_kind_ok(&st, allow)) {
		close(fd);
		return file_kind_refuse(&st, allow, why, whylen);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return file_errno(e, why, whylen);
	}
	return fd;
}

int file_read_user(const char *path, size_t max, uint8_t **data, size_t *len, char *why, size_t whylen)
{
	*data = NULL;
	*len = 0;
	int fd = file_open_user(path, O_RDONLY, 0, FILE_REG, why, whylen);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = 0;
	if (fstat(fd, &st)) {
		r = file_errno(errno, why, whylen);
	} else if ((uint64_t)st.st_size > max) {
		if (why)
			snprintf(why, whylen, "is %lld bytes, more than the %zu this takes", (long long)st.st_size, max);
		r = -EFBIG;
	}
	/* The size is a hint: the file may grow while it is read, so the read itself is bounded too. */
	size_t cap = r ? 0 : (size_t)st.st_size + 1, got = 0;
	uint8_t *b = r ? NULL : malloc(cap + 1);
	if (!r && !b)
		r = file_errno(ENOMEM, why, whylen);
	while (!r) {
		if (got == cap) {
			if (cap > max) {
				if (why)
					snprintf(why, whylen, "is more than the %zu bytes this takes", max);
				r = -EFBIG;
				break;
			}
			size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			uint8_t *nb = realloc(b, ncap + 1);
			if (!nb) {
				r = file_errno(ENOMEM, why, whylen);
				break;
			}
			b = nb;
			cap = ncap;
		}
		ssize_t n = read(fd, b + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = file_errno(errno, why, whylen);
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (r) {
		free(b);
		return r;
	}
	b[got] = 0;
	*data = b;
	*len = got;
	return 0;
}

/* Whether the socket file at a is live: a connect() that is refused means nobody listens. */
static int file_socket_probe(const struct sockaddr_un *a)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int r = connect(fd, (const struct sockaddr *)a, sizeof(*a));
	int e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS)
		return -EADDRINUSE; /* accepted, or a listener whose backlog is full: alive */
	return e == ECONNREFUSED ? 0 : -e;
}

int file_socket_listen(const char *path, int backlog, const struct file_socket_access *access, int *fd_out,
		       struct file_socket_id *id, char *why, size_t whylen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	*fd_out = -1;
	if (!*path)
		return file_errno(ENOENT, why, whylen);
	if (strlen(path) >= sizeof(a.sun_path)) {
		if (why)
			snprintf(why, whylen, "path too long for a Unix socket (at most %zu bytes)", sizeof(a.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			if (why)
				snprintf(why, whylen, "exists and is %s, not a socket (not replaced; remove it or choose "
					 "another path)", file_kind_name(&st));
			return -EEXIST;
		}
		int r = file_socket_probe(&a);
		if (r == -EADDRINUSE) {
			if (why)
				snprintf(why, whylen, "another process is listening on this socket (another VM?)");
			return r;
		}
		if (r)
			return file_errno(-r, why, whylen);
		/* Stale: its listener is gone. Only this socket file is removed. */
		if (unlink(path) && errno != ENOENT)
			return file_errno(errno, why, whylen);
	} else if (errno != ENOENT) {
		return file_errno(errno, why, whylen);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return file_errno(errno, why, whylen);
	/* bind() never replaces a file: if one appeared since the check, this fails with EADDRINUSE. */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE && why) {
			snprintf(why, whylen, "a file appeared at this path meanwhile (not replaced)");
			return -EADDRINUSE;
		}
		return file_errno(e, why, whylen);
	}
	if (lstat(path, &st) < 0) {
		int e = errno;
		close(fd);
		return file_errno(e, why, whylen);
	}
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	/* Before listen(): until then a connect() is refused, so nobody reaches the socket with the
	 * access bind() gave it. lchown: path is the socket just bound, never a link to follow. */
	if (access && ((access->gid != (gid_t)-1 && lchown(path, (uid_t)-1, access->gid)) ||
		       (access->mode && chmod(path, access->mode)))) {
		int e = errno;
		close(fd);
		file_socket_unlink(path, id);
		if (why)
			snprintf(why, whylen, "cannot give it the group %u and mode %04o: %s", (unsigned)access->gid,
				 (unsigned)access->mode, strerror(e));
		return -e;
	}
	if (listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		file_socket_unlink(path, id);
		return file_errno(e, why, whylen);
	}
	*fd_out = fd;
	return 0;
}

void file_socket_unlink(const char *path, const struct file_socket_id *id)
{
	struct stat st;
	if (!lstat(path, &st) && S_ISSOCK(st.st_mode) && st.st_dev == id->dev && st.st_ino == id->ino)
		unlink(path);
}

static int file_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int file_replace_user(const char *path, const void *data, size_t len, char *why, size_t whylen)
{
	const uint8_t *buf = data;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(why, whylen, "%s", strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	struct stat st;
	if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "it is %s, not a regular file", file_kind_name(&st));
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	char w[160];
	int fd = file_open_user(tmp, O_WRONLY | O_CREAT, 0644, FILE_REG, w, sizeof(w));
	if (fd < 0) {
		snprintf(why, whylen, "its temporary file %s %s", text_show(tmp), w);
		return fd;
	}
	int r = ftruncate(fd, 0) ? -errno : file_write_all(fd, buf, len);
	if (!r && fsync(fd))
		r = -errno;
	if (close(fd) && !r)
		r = -errno;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r) {
		snprintf(why, whylen, "%s", strerror(-r));
		unlink(tmp);
		return r;
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd))
			r = -errno;
		close(dfd);
	}
	return r;
}
