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

struct disk;

/* Operation codes (the first CDB byte) */
enum {
	SCSI_OP_TEST_UNIT_READY = 0x00, SCSI_OP_REQUEST_SENSE = 0x03, SCSI_OP_READ6 = 0x08, SCSI_OP_WRITE6 = 0x0A,
	SCSI_OP_INQUIRY = 0x12, SCSI_OP_MODE_SELECT6 = 0x15, SCSI_OP_MODE_SENSE6 = 0x1A, SCSI_OP_START_STOP = 0x1B,
	SCSI_OP_PREVENT_ALLOW = 0x1E, SCSI_OP_READ_CAPACITY10 = 0x25, SCSI_OP_READ10 = 0x28, SCSI_OP_WRITE10 = 0x2A,
	SCSI_OP_SYNC_CACHE10 = 0x35, SCSI_OP_UNMAP = 0x42, SCSI_OP_READ_TOC = 0x43, SCSI_OP_GET_CONFIGURATION = 0x46,
	SCSI_OP_GESN = 0x4A, SCSI_OP_READ_DISC_INFO = 0x51, SCSI_OP_MODE_SELECT10 = 0x55, SCSI_OP_MODE_SENSE10 = 0x5A,
	SCSI_OP_PR_IN = 0x5E, SCSI_OP_PR_OUT = 0x5F, SCSI_OP_READ16 = 0x88, SCSI_OP_WRITE16 = 0x8A, SCSI_OP_SYNC_CACHE16 = 0x91,
	SCSI_OP_WRITE_SAME16 = 0x93, SCSI_OP_SERVICE_IN16 = 0x9E, SCSI_OP_REPORT_LUNS = 0xA0, SCSI_OP_READ12 = 0xA8,
	SCSI_OP_WRITE12 = 0xAA,
};

/* SAM status */
#define SCSI_STATUS_GOOD            0x00u
#define SCSI_STATUS_CHECK_CONDITION 0x02u

/* Sense keys */
#define SCSI_SENSE_NO_SENSE        0x0u
#define SCSI_SENSE_NOT_READY       0x2u
#define SCSI_SENSE_MEDIUM_ERROR    0x3u
#define SCSI_SENSE_HARDWARE_ERROR  0x4u
#define SCSI_SENSE_ILLEGAL_REQUEST 0x5u
#define SCSI_SENSE_UNIT_ATTENTION  0x6u
#define SCSI_SENSE_DATA_PROTECT    0x7u

/* ASC/ASCQ pairs, (asc << 8) | ascq */
#define SCSI_ASC_NONE                  0x0000u
#define SCSI_ASC_UNRECOVERED_READ      0x1100u
#define SCSI_ASC_WRITE_ERROR           0x0C00u
#define SCSI_ASC_PARAM_LIST_LENGTH     0x1A00u
#define SCSI_ASC_INVALID_OPCODE        0x2000u
#define SCSI_ASC_LBA_OUT_OF_RANGE      0x2100u
#define SCSI_ASC_INVALID_FIELD_IN_CDB  0x2400u
#define SCSI_ASC_INVALID_FIELD_IN_PARAM 0x2600u
#define SCSI_ASC_WRITE_PROTECTED       0x2700u
#define SCSI_ASC_MEDIUM_CHANGED        0x2800u
#define SCSI_ASC_POWER_ON_RESET        0x2900u
#define SCSI_ASC_PARAMS_CHANGED        0x2A09u /* capacity data has changed */
#define SCSI_ASC_LUNS_CHANGED          0x3F0Eu
#define SCSI_ASC_MEDIUM_NOT_PRESENT    0x3A00u
#define SCSI_ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN 0x3A02u
#define SCSI_ASC_INCOMPATIBLE_MEDIUM   0x3000u
#define SCSI_ASC_REMOVAL_PREVENTED     0x5302u
#define SCSI_ASC_INTERNAL_FAILURE      0x4400u
#define SCSI_ASC_SAVING_NOT_SUPPORTED  0x3900u

#define SCSI_SENSE_LEN 18u /* fixed format */

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
