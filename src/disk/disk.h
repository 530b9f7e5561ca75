/* Virtual disks: one small interface (struct disk_ops) in front of raw files, VHD and VHDX images.
 *
 * storvsp (and the `gen2vm vhd` commands) only ever see a struct disk. The format is detected from
 * the file's contents (never from its name): a VHDX starts with "vhdxfile", a VHD ends with (and a
 * dynamic VHD also starts with) a "conectix" footer, anything else is raw.
 *
 * Threading: readv/writev/flush/discard may be called from several threads at once on one disk.
 * Each driver keeps its block table behind its own mutex and does the data I/O outside it; only
 * block allocation, discard and metadata updates are serialised. disk_close must not race with I/O.
 *
 * Writable images are protected by an OFD advisory lock (F_WRLCK), read-only opens take F_RDLCK, so
 * a second writer, or a writer on a parent in use by a running VM, gets "PATH: in use by ...".
 */
#ifndef GEN2VM_DISK_DISK_H
#define GEN2VM_DISK_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct disk;
struct disk_extent;

/* Drivers that map blocks implement this: for reads (write=false) say where [off, off+len)
 * starts; for writes allocate what is needed and return a DATA extent. 0 or -errno. */
typedef int (*disk_map_fn)(struct disk *d, uint64_t off, uint64_t len, bool write,
			   struct disk_extent *ext);

enum disk_release { DISK_RELEASE_ZERO, DISK_RELEASE_PARENT };

struct disk_ops {
	const char *format; /* "raw", "vhd", "vhdx" */
	/* Read/write iov at virtual byte offset off. off and the total length must lie inside
	 * disk->size; they need not be sector aligned. 0 or -errno (a short transfer is -EIO). */
	int (*readv)(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);
	int (*writev)(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);
	/* Every write completed before flush() was called is durable when flush() returns 0. */
	int (*flush)(struct disk *d);
	/* The range's contents become unspecified (reads return zeros or older data, never
	 * another range's data); whole blocks are released. May be NULL. */
	int (*discard)(struct disk *d, uint64_t off, uint64_t len);
	/* disk_compact's first half: the whole blocks in [off, off+len) give up their space without
	 * changing what reads return, which the caller has checked: DISK_RELEASE_ZERO: they read as
	 * zeros (the caller read zeros); DISK_RELEASE_PARENT: they read from the parent (a
	 * differencing disk; the caller read the parent's data there). Crash-safe. 0, -EOPNOTSUPP
	 * where the disk has no such state (a differencing VHD has no zero blocks), or -errno.
	 * NULL for formats without blocks. */
	int (*release)(struct disk *d, uint64_t off, uint64_t len, enum disk_release how);
	/* disk_compact's second half, for formats whose blocks can move (NULL: nothing to do): moves
	 * the blocks at the end of the file down and shrinks it, crash-safely; *moved counts them.
	 * 0 or -errno (logged). */
	int (*compact)(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx,
		       uint64_t *moved);
	void (*close)(struct disk *d);
};

enum disk_type { DISK_TYPE_FIXED = 2, DISK_TYPE_DYNAMIC = 3, DISK_TYPE_DIFFERENCING = 4 };

struct disk {
	const struct disk_ops *ops;
	uint64_t size;            /* virtual bytes */
	uint32_t logical_sector;  /* 512 or 4096 */
	uint32_t physical_sector;
	bool readonly;
	bool discard_zeroes;      /* discarded ranges read back as zeros (a raw file's punched holes) */
	char *path;
	void *priv;               /* driver state */
	/* Fields below are for the drivers and `gen2vm vhd`, storvsp does not need them. */
	int fd;
	int direct_fd;            /* DISK_DIRECT: an O_DIRECT fd of the same file for data I/O, else -1 */
	uint32_t direct_align;    /* what direct_fd needs aligned: file offset, lengths, addresses */
	enum disk_type type;
	uint32_t block_size;      /* 0 for raw and fixed VHD */
	struct disk *parent;      /* differencing disks: the opened parent (owned) */
	uint8_t id[16];           /* VHDX: page 83 / VirtualDiskId; VHD: footer UniqueId */
	disk_map_fn map;          /* block-mapped formats; NULL for flat ones */
	unsigned flags;           /* the disk_open flags */
};

/* disk_open flags */
#define DISK_RDONLY        0x1u
#define DISK_NOLOCK        0x2u /* inspection of an image that may be in use; implies RDONLY */
#define DISK_KEEP_LINKAGE  0x4u /* VHDX: keep DataWriteGuid (merge writes the child's own data) */
#define DISK_NO_PARENT     0x8u /* open a differencing disk without its parent (inspect only) */
#define DISK_FORMAT_RAW    0x20u /* the file is a raw disk whatever it holds (",format=raw": overrides
				      * the refusal of a damaged image or one named .vhdx/.vhd) */
#define DISK_FORMAT_VHD    0x40u /* the file must be a VHD (",format=vhd") */
#define DISK_FORMAT_VHDX   0x80u /* the file must be a VHDX (",format=vhdx") */
#define DISK_DIRECT        0x10u /* data reads/writes bypass the page cache (O_DIRECT, like QEMU's
				      * cache=none) when buffer, length and file offset meet the file's
				      * O_DIRECT alignment (statx STATX_DIOALIGN, else 512 bytes),
				      * buffered otherwise; metadata stays buffered. Parents inherit it.
				      * Ignored where the file system refuses O_DIRECT. */

/* Opens path (a regular file or a block device, never waiting on a FIFO or device: file_open_user),
 * detecting raw/VHD/VHDX from its contents, replays a VHDX log (read-write opens; a log that fails
 * validation is refused with the file unchanged), opens the parent chain read-only. A file whose
 * contents say raw but whose name (.vhdx, .vhd) or leftover structures say VHDX/VHD is refused as
 * damaged unless DISK_FORMAT_RAW is given. On error nothing has been written, one line naming the
 * file and the problem has been logged, and -errno is returned (-EINVAL corrupt/unsupported/wrong
 * kind of file, -EISDIR, -EBUSY in use, -ENOENT missing, -ELOOP parent loop). *out is owned by the
 * caller: disk_close() it. */
int disk_open(const char *path, unsigned flags, struct disk **out);

/* The DISK_FORMAT_* flag for "raw", "vhd" or "vhdx"; 0 for any other name. */
unsigned disk_format_flag(const char *name);

/* Flushes nothing; closes the chain and frees everything. Call flush first for durability. */
void disk_close(struct disk *d);

/* Convenience wrappers over ops for one flat buffer. */
int disk_pread(struct disk *d, void *buf, uint64_t len, uint64_t off);
int disk_pwrite(struct disk *d, const void *buf, uint64_t len, uint64_t off);

/* Format detection from the first and last bytes of the file alone: "vhdx", "vhd" or "raw";
 * NULL on I/O error (logged). disk_open also looks at the name and for leftover structures. */
const char *disk_probe(const char *path, int fd);

struct disk_create_opts {
	const char *format;      /* "vhdx", "vhd", "raw" */
	uint64_t size;           /* virtual bytes; 0 with parent = parent's size */
	bool fixed;              /* fixed (all space allocated) instead of dynamic */
	const char *parent;      /* differencing: path of the parent (as the user typed it) */
	uint32_t block_size;     /* 0: default (VHDX 32 MiB, VHD 2 MiB) */
	uint32_t logical_sector; /* 0: 512 (VHDX may be 4096) */
	uint32_t physical_sector;/* 0: 4096 for VHDX, 512 for VHD */
	void (*progress)(void *ctx, uint64_t done, uint64_t total); /* fixed images; may be NULL */
	void *progress_ctx;
};

/* Creates a new image at path (which must not exist: O_EXCL). On error the partial file is
 * removed, a line naming the file is logged and -errno returned. */
int disk_create(const char *path, const struct disk_create_opts *o);

/* What disk_compact did. Sizes are the file's apparent size (st_size) and allocated bytes. */
struct disk_compact_stats {
	uint64_t zero_blocks;  /* all-zero blocks released */
	uint64_t parent_blocks; /* differencing: blocks that read the same as the parent, released */
	uint64_t moved_blocks; /* blocks moved down into free space */
	uint64_t size_before, size_after;
	uint64_t alloc_before, alloc_after;
};

/* Whether the n bytes at p are all zero (the test compact and convert use to skip blocks). */
bool disk_all_zero(const uint8_t *p, size_t n);

/* Shrinks a dynamic or differencing VHDX/VHD opened read-write (and locked, so not in use):
 * releases blocks that read as all zeros and, in a differencing disk, blocks that read the same
 * as the parent (VHDX also the sector bitmaps no block needs any more), moves the blocks (and
 * VHDX sector bitmaps) at the end of the file into the lowest free space, updates the block
 * table and truncates the file. The virtual disk's
 * contents do not change. Crash-safe: every block is copied and durable before the table refers
 * to it (VHDX: through the log), and the file is truncated only once nothing refers past the new
 * end (VHDX: the log applied and marked empty; VHD: the footer rewritten at the new end first).
 * Fixed images and raw files: 0 and nothing done. progress (may be NULL) gets (done, total).
 * 0 or -errno (logged, naming the file). */
int disk_compact(struct disk *d, void (*progress)(void *ctx, uint64_t done, uint64_t total),
		 void *ctx, struct disk_compact_stats *st);

/* --- for the drivers ---------------------------------------------------------------------- */

/* What one virtual range maps to inside one layer of a chain. */
enum disk_ext_kind { DISK_EXT_DATA, DISK_EXT_ZERO, DISK_EXT_PARENT };
struct disk_extent {
	enum disk_ext_kind kind;
	uint64_t file_off; /* DISK_EXT_DATA */
	uint64_t len;      /* > 0, never beyond the requested length */
};

/* Generic readv/writev over a disk_map_fn (used by VHD and VHDX). */
int disk_map_readv(struct disk *d, disk_map_fn map, uint64_t off, const struct iovec *iov,
		   int iovcnt);
int disk_map_writev(struct disk *d, disk_map_fn map, uint64_t off, const struct iovec *iov,
		    int iovcnt);

/* The extent at off in the top layer of d (DATA/ZERO/PARENT), for inspect/merge/convert. NULL
 * map (raw, fixed VHD) reports DATA. */
int disk_block_status(struct disk *d, uint64_t off, uint64_t len, struct disk_extent *ext);

/* pread/pwrite the whole length (retrying short transfers); a read past EOF is -EIO. */
int disk_file_pread(int fd, void *buf, size_t len, uint64_t off);
int disk_file_pwrite(int fd, const void *buf, size_t len, uint64_t off);

/* Takes the OFD lock on fd (write or read); logs "PATH: in use by another process" on conflict. */
int disk_lock(const char *path, int fd, bool write);

/* Random GUID from getrandom(). */
void disk_guid_generate(uint8_t guid[16]);

#endif
