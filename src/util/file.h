/* Files and sockets the user names (command line, JSON config, control socket, image metadata such as
 * a parent locator). The user may be careless or hostile: a FIFO, a device, a directory or another
 * process's socket where a file was expected must give one clear error, never a hang, a deleted file
 * or an unbounded read. Every open of a user-named path goes through here. */
#ifndef GEN2VM_UTIL_FILE_H
#define GEN2VM_UTIL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The kinds of file a caller accepts (file_open_user's allow). */
#define FILE_REG 0x1u /* regular file */
#define FILE_BLK 0x2u /* block device (disks) */
#define FILE_CHR 0x4u /* character device (console output such as /dev/null or a terminal) */

/* What st is, for messages: "a directory", "a FIFO (named pipe)", "a socket", "a block device"... */
const char *file_kind_name(const struct stat *st);

/* Opens path with flags (O_RDONLY, O_WRONLY or O_RDWR, optionally O_CREAT/O_EXCL/O_NOFOLLOW; O_CLOEXEC
 * is added) and mode, and checks that it is one of the kinds in allow. It never blocks: the kind is
 * checked with stat() before opening (so that a FIFO or device is not even opened) and with fstat()
 * after an O_NONBLOCK open (the path may have changed in between); O_NONBLOCK is cleared again on the
 * returned descriptor. Nothing is truncated (callers truncate once they are committed).
 * Returns the descriptor, or -errno with the reason (without the path) in why: -ENOENT, -EACCES...
 * from the file system (strerror), -EINVAL "is a FIFO (named pipe), not a regular file" and the like
 * for a wrong kind (-EISDIR for a directory). why may be NULL. */
int file_open_user(const char *path, int flags, mode_t mode, unsigned allow, char *why, size_t whylen);

/* Reads a whole document (JSON config, NVRAM store, kernel, firmware) of at most max bytes from a
 * regular file opened with file_open_user. *data is malloc'ed with a NUL after the *len bytes.
 * Returns 0, or -errno with the reason in why: -EFBIG "is larger than N bytes" (the file is never read
 * past max+1 bytes, even if it grows meanwhile), others as file_open_user or the read. */
int file_read_user(const char *path, size_t max, uint8_t **data, size_t *len, char *why, size_t whylen);

/* Replaces path with the len bytes at data atomically (written to path.tmp in the same directory,
 * fsync'ed, renamed over path): a crash leaves either the old or the new file, whole. Only a regular
 * file (or nothing) at path is replaced: the rename would otherwise put a file in place of a device or
 * FIFO someone named by mistake. Returns 0, or -errno with the reason (without the path) in why. */
int file_replace_user(const char *path, const void *data, size_t len, char *why, size_t whylen);

/* A listening Unix stream socket at path that gen2vm owns. A file already at path is replaced only
 * when it is a socket nobody listens on (a stale socket of a gen2vm that died: connect() is refused);
 * an ordinary file, a directory or a live socket of another process is left alone and refused.
 * access (NULL: the file as bind() and the umask make it) is applied between bind() and listen(), so
 * no client can connect before the file's group and mode are right.
 * Returns 0 with *fd (SOCK_CLOEXEC, listening with backlog) and *id (what file_socket_unlink needs),
 * or -errno with the reason in why: -EADDRINUSE "another process is listening on it", -EEXIST
 * "exists and is not a socket", -ENAMETOOLONG, -EPERM from the group's change (the process's user
 * is not a member)... Nothing is left at path on failure. */
struct file_socket_id {
	dev_t dev;
	ino_t ino;
};
struct file_socket_access {
	gid_t gid;   /* the file's group; (gid_t)-1: the process's */
	mode_t mode; /* the file's permission bits; 0: what the umask made */
};
int file_socket_listen(const char *path, int backlog, const struct file_socket_access *access, int *fd,
		       struct file_socket_id *id, char *why, size_t whylen);

/* Removes the socket file file_socket_listen made at path, only if path still names that very
 * socket (not a file put there since). */
void file_socket_unlink(const char *path, const struct file_socket_id *id);

#endif
