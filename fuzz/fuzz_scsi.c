/* Fuzzes the SCSI target core with hostile CDBs and data-out buffers against a disk and a DVD drive
 * (a 1 MiB raw image in a memfd): every command must finish with GOOD or CHECK CONDITION, move no
 * more than the buffer holds, and never touch the disk beyond its size.
 * Input: byte 0 selects disk/DVD, direction, media state; bytes 1..16 the CDB (length from byte 17);
 * the rest is the data-out buffer (its length is the SRB's transfer length). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk/disk.h"
#include "scsi/scsi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct disk *disk_get(void)
{
	static struct disk *d;
	if (!d) {
		int fd = memfd_create("fuzz-scsi", 0);
		if (fd < 0 || ftruncate(fd, 1 << 20))
			abort();
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (disk_open(path, 0, &d))
			abort();
	}
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 18)
		return 0;
	struct disk *d = disk_get();
	uint8_t sel = data[0];
	struct scsi_lun l;
	bool dvd = sel & 1;
	if (scsi_lun_init(&l, dvd ? SCSI_TYPE_CDROM : SCSI_TYPE_DISK, (dvd && (sel & 2)) ? NULL : d, sel & 4,
			  sel & 8, 7, NULL))
		return 0;
	if (sel & 0x10)
		l.pending_ua = SCSI_ASC_MEDIUM_CHANGED;
	l.wce = sel & 0x20;
	uint8_t cdb[16];
	memcpy(cdb, data + 1, 16);
	uint32_t buf_len = (uint32_t)(size - 18);
	/* A bounded buffer: the data-out bytes, or a zeroed data-in area of the same size. */
	uint8_t *buf = malloc(buf_len ? buf_len : 1);
	memcpy(buf, data + 18, buf_len);
	struct iovec iov[3];
	uint32_t a = buf_len / 3, b = buf_len / 3;
	iov[0] = (struct iovec){ buf, a };
	iov[1] = (struct iovec){ buf + a, b };
	iov[2] = (struct iovec){ buf + a + b, buf_len - a - b };
	uint16_t luns[] = { 0, 1, 63 };
	struct scsi_cmd c = { .cdb = cdb, .cdb_len = 6 + (data[17] % 11), .dir = (enum scsi_dir)((sel >> 6) % 3),
			      .iov = iov, .iovcnt = 3, .buf_len = buf_len, .luns = luns, .nr_luns = 3 };
	scsi_lun_execute_sync(&l, &c);
	if (c.status != SCSI_STATUS_GOOD && c.status != SCSI_STATUS_CHECK_CONDITION)
		abort();
	if (c.xfer > buf_len || (c.status != SCSI_STATUS_GOOD && c.xfer))
		abort();
	/* The absent-LUN path too */
	struct scsi_cmd c2 = c;
	scsi_lun_execute(NULL, &c2);
	if (c2.xfer > buf_len)
		abort();
	if (c.eject && l.disk)
		abort();
	free(buf);
	return 0;
}
