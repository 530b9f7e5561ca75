/* SCSI target core: one logical unit (a disk, or an MMC DVD drive), CDB in, data/status/sense out.
 *
 * Pure: knows nothing of VMBus, threads or io_uring. scsi_lun_execute() decodes and checks a CDB and
 * either finishes the command itself (INQUIRY, MODE SENSE, errors...) or returns an I/O plan
 * (read/write/flush/discard ranges in bytes on the disk) that the caller runs on its backend, then
 * hands the result to scsi_cmd_io_done(). scsi_lun_execute_sync() runs the plan with disk_ops, for
 * tests, fuzzing and slow paths.
 *
 * The data buffer is an iovec of host memory (guest pages already translated). Nothing is written to
 * the disk unless the CDB's transfer length matches the buffer exactly; reads copy at most buf_len.
 *
 * Not thread-safe per LUN: the caller serialises scsi_lun_execute and the state setters (storvsp does
 * it under the VMBus server lock); scsi_cmd_io_done touches only the command.
 */
#ifndef GEN2VM_SCSI_SCSI_H
#define GEN2VM_SCSI_SCSI_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "gen2vm/proto/scsi.h"

struct disk;


enum scsi_dev_type { SCSI_TYPE_DISK = 0x00, SCSI_TYPE_CDROM = 0x05 };
enum scsi_dir { SCSI_DIR_NONE = 0, SCSI_DIR_IN = 1 /* device -> host */, SCSI_DIR_OUT = 2 };

/* GESN media event codes */
enum scsi_media_event { SCSI_MEV_NONE = 0, SCSI_MEV_EJECT_REQUEST = 1, SCSI_MEV_NEW_MEDIA = 2,
			SCSI_MEV_MEDIA_REMOVAL = 3 };

struct scsi_lun {
	enum scsi_dev_type type;
	struct disk *disk;       /* the medium; NULL: a DVD drive without media */
	bool readonly;           /* writes get DATA PROTECT (always for a DVD) */
	uint32_t block_size;     /* logical: 512 or 4096 for disks, 2048 for DVDs */
	uint32_t phys_block;     /* physical: reported in READ CAPACITY 16 / VPD */
	uint64_t nblocks;
	uint32_t max_transfer;   /* bytes per command (VPD B0) */
	bool can_discard;        /* the backend has discard: thin provisioning is advertised */
	bool discard_zeroes;     /* discarded blocks read as zeros (raw files): WRITE SAME 16 UNMAP, LBPRZ */
	char serial[21];         /* VPD 0x80, NUL-terminated */
	uint8_t naa[16];         /* VPD 0x83 NAA IEEE registered extended identifier */
	/* state */
	bool wce;                /* caching page WCE: false makes every write FUA */
	bool prevent_removal;
	bool tray_open;
	uint16_t pending_ua;     /* unit attention ASC/ASCQ to report once, 0 = none */
	uint8_t media_event;     /* GESN event waiting for the guest */
};

/* Fills l for a disk (type DISK) or DVD (type CDROM; disk may be NULL) with defaults:
 * block size (disk: logical_sector, or 4096 when native_4k; DVD: 2048), serial from `serial` (NULL =
 * derived from id), WCE on. Returns 0 or -EINVAL (a medium smaller than one block). */
int scsi_lun_init(struct scsi_lun *l, enum scsi_dev_type type, struct disk *disk, bool readonly,
		  bool native_4k, uint32_t id, const char *serial);

/* DVD media change (the caller owns the disks): new_disk NULL ejects. Raises the unit attention and
 * the GESN media event the guest polls for. Returns 0 or -EINVAL. */
int scsi_lun_set_media(struct scsi_lun *l, struct disk *new_disk);

enum scsi_io_op { SCSI_IO_NONE = 0, SCSI_IO_READ, SCSI_IO_WRITE, SCSI_IO_FLUSH, SCSI_IO_DISCARD };

#define SCSI_MAX_UNMAP_DESC 64u

struct scsi_io {
	enum scsi_io_op op;
	uint64_t off, len;  /* READ/WRITE: bytes on the disk; len equals the buffer length used */
	bool fua;           /* WRITE: durable before completion (FUA bit, or WCE off) */
	uint32_t nr_ranges; /* DISCARD: ranges in bytes (may be 0: nothing to do) */
	struct { uint64_t off, len; } range[SCSI_MAX_UNMAP_DESC];
};

struct scsi_cmd {
	/* in */
	const uint8_t *cdb;
	uint32_t cdb_len;
	enum scsi_dir dir;        /* direction the initiator declared */
	const struct iovec *iov;  /* data buffer */
	int iovcnt;
	uint32_t buf_len;         /* bytes in iov */
	const uint16_t *luns;     /* REPORT LUNS: the target's LUNs, sorted */
	uint32_t nr_luns;
	/* out */
	uint8_t status;
	uint8_t sense[SCSI_SENSE_LEN];
	uint8_t sense_len;        /* 0 when no sense */
	uint32_t xfer;            /* bytes moved to/from the buffer */
	bool eject;               /* the guest ejected the medium: the caller releases it */
	struct scsi_io io;
};

enum { SCSI_DONE = 0, SCSI_NEED_IO = 1 };

/* Executes c on l. Returns SCSI_DONE (status/sense/xfer set) or SCSI_NEED_IO (c->io set; call
 * scsi_cmd_io_done with the backend's result). Never fails otherwise. l may be NULL: an absent LUN
 * (INQUIRY answers peripheral qualifier 3; other commands are the caller's business). */
int scsi_lun_execute(struct scsi_lun *l, struct scsi_cmd *c);

/* Finishes a SCSI_NEED_IO command: rc 0 -> GOOD with xfer = io.len for reads and writes; -EROFS ->
 * DATA PROTECT; -ENOSPC -> write error; other errors -> MEDIUM ERROR. */
void scsi_cmd_io_done(struct scsi_cmd *c, int rc);

/* scsi_lun_execute, then the plan run synchronously on l->disk. */
void scsi_lun_execute_sync(struct scsi_lun *l, struct scsi_cmd *c);

/* Sets CHECK CONDITION with fixed-format sense. */
void scsi_cmd_set_sense(struct scsi_cmd *c, uint8_t key, uint16_t asc);

/* Copies len bytes of src into an iovec at offset 0 (bounded by the iovec); returns bytes copied. */
uint32_t scsi_iov_copy_to(const struct iovec *iov, int iovcnt, const void *src, uint32_t len);
uint32_t scsi_iov_copy_from(const struct iovec *iov, int iovcnt, void *dst, uint32_t len);


#endif
