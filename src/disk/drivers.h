/* Private to src/disk: the format drivers behind disk_open()/disk_create(). */
#ifndef GEN2VM_DISK_DRIVERS_H
#define GEN2VM_DISK_DRIVERS_H

#include "disk/disk.h"

#include <stddef.h>

/* Fill d (fd, path, flags already set; the lock taken) or return -errno after logging.
 * The driver owns nothing of d on failure (disk_open frees it). */
int raw_open(struct disk *d, unsigned flags);
int vhd_open(struct disk *d, unsigned flags);
int vhdx_open(struct disk *d, unsigned flags);

/* Whether a file that lacks its format's signature still holds what is left of a VHDX (a header or
 * region table with a valid checksum at its place) or of a dynamic VHD (a dynamic header with a valid
 * checksum at 512): format detection refuses to take such a file for raw data. */
bool vhdx_remnants(int fd);
bool vhd_remnants(int fd);

/* Build a new image into fd (created O_EXCL by disk_create, which removes it on failure). */
int raw_create(const char *path, int fd, const struct disk_create_opts *o);
int vhd_create(const char *path, int fd, const struct disk_create_opts *o, struct disk *parent);
int vhdx_create(const char *path, int fd, const struct disk_create_opts *o, struct disk *parent);

/* Parent lookup shared by VHD and VHDX: try the relative path (against the child's directory)
 * then the absolute one (a candidate whose identity verify() rejects is skipped); open it read-only; refuse loops (via the chain's inode set) and too deep
 * chains. On success *out is the parent. Logs "CHILD: parent ... " errors. */
typedef int (*disk_parent_verify_fn)(struct disk *child, struct disk *parent);
int disk_parent_open(struct disk *child, const char *rel, const char *abs,
		     disk_parent_verify_fn verify, struct disk **out);

/* Max chain depth: a guard against loops through hard links and absurd chains. */
#define DISK_MAX_CHAIN 64

/* UTF-16LE <-> UTF-8 (BMP and surrogate pairs). Return bytes written (excluding NUL) or -EINVAL. */
int disk_utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_size);
int disk_utf8_to_utf16le(const char *in, uint8_t *out, size_t out_size);

/* "{xxxxxxxx-xxxx-...}" formatting and parsing of a little-endian (Windows) GUID. */
void disk_guid_format(const uint8_t g[16], char out[39]);
int disk_guid_parse(const char *s, uint8_t g[16]);

/* Path of to_file relative to the directory of from_file (which may not exist yet), both
 * resolved through realpath; malloc'ed, NULL on error. */
char *disk_relpath(const char *from_file, const char *to_file);

/* Helpers for I/O vectors. */
size_t disk_iov_len(const struct iovec *iov, int iovcnt);
/* The part [skip, skip+len) of iov into out (room for iovcnt entries); returns its count. */
int disk_iov_sub(const struct iovec *iov, int iovcnt, size_t skip, size_t len, struct iovec *out);
void disk_iov_zero(const struct iovec *iov, int iovcnt);

/* -EINVAL when [off, off+len) is not inside the disk, else 0. */
int disk_range_check(const struct disk *d, uint64_t off, uint64_t len);
/* Checks a request that changes [off, off+len): -EROFS on a read-only disk, else as
 * disk_range_check. */
int disk_change_check(const struct disk *d, uint64_t off, uint64_t len);
/* The whole blocks [*b0, *b1) of d->block_size inside [off, off+len) (the short last block
 * counts as whole when the range reaches the end of the disk); *b1 <= *b0: none. */
void disk_whole_blocks(const struct disk *d, uint64_t off, uint64_t len, uint64_t *b0, uint64_t *b1);

/* Whether a data request at file_off may go through d->direct_fd (open, and offset, lengths and
 * addresses meet d->direct_align). */
bool disk_direct_aligned(const struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off);

/* Data (not metadata) I/O at a file offset: through d->direct_fd when it is open and the request
 * is aligned for O_DIRECT, through d->fd otherwise. 0 or -errno (short transfers retried). */
int disk_data_preadv(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off);
int disk_data_pwritev(struct disk *d, const struct iovec *iov, int iovcnt, uint64_t file_off);

/* Writes zeros over [off, off+len) of fd as a hole where the file system can punch one (written
 * zeros elsewhere). 0 or -errno. */
int disk_file_zero(int fd, uint64_t off, uint64_t len);

/* Raw file writes for drivers. pwritev / preadv of a whole sub-iovec. */
int disk_file_preadv(int fd, const struct iovec *iov, int iovcnt, uint64_t off);

/* Reads/writes of an image whose data is the virtual disk byte for byte at offset 0 (raw, fixed VHD):
 * range-checked against d->size, -EROFS on a read-only disk. 0 or -errno. */
int disk_flat_readv(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);
int disk_flat_writev(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);

/* How a block-mapped driver maps [off, off+len) to its first extent (lock held by the caller). */
typedef int (*disk_map_locked_fn)(struct disk *d, void *drv, uint64_t off, uint64_t len, struct disk_extent *ext);
/* Reads [off, off+len) of d as it looks now, extent by extent through map: data from the file, the
 * parent's bytes (zeros past its end) or zeros. Used to copy up before remapping. 0 or -errno. */
int disk_read_view_locked(struct disk *d, void *drv, disk_map_locked_fn map, uint64_t off, uint8_t *buf,
			  uint64_t len);
int disk_file_pwritev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);

/* --- compaction (disk_compact) ------------------------------------------------------------------ */

/* One used extent of an image file. id == DISK_USED_FIXED: metadata that stays where it is;
 * otherwise a block the driver can move (its block number, handed back to the move callback). */
#define DISK_USED_FIXED UINT64_MAX
struct disk_used {
	uint64_t off, len, id;
};

/* Moves block id from file offset from to to (len bytes, to lies in free space below from) and
 * makes the new location the one the image refers to, crash-safely. 0 or -errno (logged). */
typedef int (*disk_move_fn)(struct disk *d, void *drv, uint64_t id, uint64_t from, uint64_t to,
			    uint64_t len);

/* Moves the movable extents at the end of the file into the lowest free gaps (starting on a
 * multiple of align) below them, highest extent first, until the last extent is fixed or no gap
 * below it is large enough. u (n entries, any order) is sorted and updated in place. *end is then
 * the end of the last used extent: the driver truncates the file there after its own bookkeeping
 * is durable. progress (may be NULL) gets (moves done, moves planned at most). 0 or -errno. */
int disk_relocate(struct disk *d, void *drv, struct disk_used *u, size_t n, uint64_t align,
		  disk_move_fn move, void (*progress)(void *ctx, uint64_t done, uint64_t total),
		  void *ctx, uint64_t *moved, uint64_t *end);

/* Copies len bytes of fd from offset from to offset to (non-overlapping). Runs of zeros are not
 * written but punched (they read as zeros and take no space); nothing is synced. 0 or -errno. */
int disk_file_copy(int fd, uint64_t from, uint64_t to, uint64_t len);

/* The dynamic VHDX and VHD disk_ops.compact (releasing is done by disk_compact through
 * disk_ops.release). */
int vhdx_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx,
		 uint64_t *moved);
int vhd_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx,
		uint64_t *moved);

#endif
