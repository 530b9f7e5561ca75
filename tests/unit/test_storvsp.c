/* storvsp through the loopback guest: init at each protocol version, the disk and DVD command sets,
 * multi-range transfers, sub-channels, hot add/remove, media change and the bad-input list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "support/storvsc_guest.h"
#include "devices/storvsp.h"
#include "devices/disk_spec.h"
#include "disk/disk.h"
#include "devices/vmdev.h"

#define DISK_BYTES (8u << 20)

struct fx {
	char dir[64], disk[96], iso[96], iso2[96];
	struct vmbus_loopback lb;
	struct storvsp *sv;
	struct storvsc_guest g;
	uint8_t *buf; /* 1 MiB of guest RAM */
};

static void make_file(const char *path, uint64_t size, uint8_t fill)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint8_t b[65536];
	memset(b, fill, sizeof(b));
	for (uint64_t off = 0; off < size; off += sizeof(b))
		assert_int_equal(pwrite(fd, b, sizeof(b), (off_t)off), (ssize_t)sizeof(b));
	close(fd);
}

static void fx_up(struct fx *f, uint32_t vps, uint16_t max_sub, uint16_t version)
{
	memset(f, 0, sizeof(*f));
	strcpy(f->dir, "/tmp/g2vm-stor-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->disk, sizeof(f->disk), "%s/disk.img", f->dir);
	snprintf(f->iso, sizeof(f->iso), "%s/a.iso", f->dir);
	snprintf(f->iso2, sizeof(f->iso2), "%s/b.iso", f->dir);
	make_file(f->disk, DISK_BYTES, 0);
	make_file(f->iso, 1 << 20, 0xA5);
	make_file(f->iso2, 2 << 20, 0x5A);
	assert_int_equal(vmbus_loopback_init(&f->lb, 256ull << 20, vps, NULL), 0);
	assert_int_equal(storvsp_create(f->lb.srv, &f->lb.mem, 0, max_sub, &f->sv), 0);
	struct storvsp_disk_opts o = { .path = f->disk };
	assert_int_equal(storvsp_attach(f->sv, 0, &o), 0);
	assert_int_equal(vmbus_client_connect(&f->lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&f->lb.cl), 0);
	assert_int_equal(storvsc_guest_open(&f->g, &f->lb, 1, version), 0);
	f->buf = storvsc_guest_alloc(&f->g, 1 << 20);
	assert_non_null(f->buf);
}

static void fx_down(struct fx *f)
{
	storvsc_guest_close(&f->g);
	storvsp_destroy(f->sv);
	vmbus_loopback_destroy(&f->lb);
	unlink(f->disk);
	unlink(f->iso);
	unlink(f->iso2);
	rmdir(f->dir);
}

static void be32put(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static uint32_t be32get(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Runs a CDB on lun with len bytes of f->buf in direction dir. */
static struct storvsc_io cmd(struct fx *f, uint8_t lun, const uint8_t *cdb, uint8_t cdb_len, uint8_t dir, uint32_t len)
{
	struct storvsc_io io = { .cdb_len = cdb_len, .data_in = dir, .lun = lun, .data = len ? f->buf : NULL, .len = len };
	memcpy(io.cdb, cdb, cdb_len);
	assert_int_equal(storvsc_guest_run(&f->g, &io), 0);
	return io;
}

static void expect_good(const struct storvsc_io *io)
{
	assert_int_equal(io->status, 0);
	assert_int_equal(io->srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(io->scsi_status, 0);
}

static void expect_sense(const struct storvsc_io *io, uint8_t key, uint8_t asc, uint8_t ascq)
{
	assert_int_equal(io->srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(io->scsi_status, 2);
	assert_true(io->sense_len >= 14);
	assert_int_equal(io->sense[0], 0x70);
	assert_int_equal(io->sense[2] & 0xF, key);
	assert_int_equal(io->sense[12], asc);
	assert_int_equal(io->sense[13], ascq);
	assert_int_equal(io->xfer, 0);
}

static struct storvsc_io rw10(struct fx *f, uint8_t lun, bool write, uint32_t lba, uint16_t blocks, uint32_t len)
{
	uint8_t c[10] = { write ? 0x2A : 0x28, 0, 0, 0, 0, 0, 0, (uint8_t)(blocks >> 8), (uint8_t)blocks, 0 };
	be32put(c + 2, lba);
	return cmd(f, lun, c, 10, write ? STORVSP_DATA_OUT : STORVSP_DATA_IN, len);
}

static void test_init_versions(void **state)
{
	static const uint16_t v[] = { STORVSP_VERSION_WIN8, STORVSP_VERSION_WIN8_1, STORVSP_VERSION_WIN10 };
	for (int i = 0; i < 3; i++) {
		struct fx f;
		fx_up(&f, 4, 3, v[i]);
		assert_int_equal(f.g.version, v[i]);
		assert_int_equal(f.g.props.max_transfer_bytes, STORVSP_MAX_TRANSFER);
		assert_int_equal(f.g.props.max_channel_count, 3);
		assert_int_equal(f.g.props.flags & STORVSP_PROP_MULTI_CHANNEL, STORVSP_PROP_MULTI_CHANNEL);
		uint8_t tur[6] = { 0 };
		expect_good((struct storvsc_io[]){ cmd(&f, 0, tur, 6, STORVSP_DATA_NONE, 0) });
		/* An unknown version is refused without breaking the channel. */
		struct storvsp_packet pk = { .operation = STORVSP_OP_QUERY_PROTOCOL_VERSION };
		pk.version.major_minor = 0x0402;
		assert_int_equal(storvsc_guest_ctrl(&f.g, &pk), 0);
		assert_int_equal(pk.operation, STORVSP_OP_COMPLETE_IO);
		assert_int_not_equal(pk.status, 0);
		fx_down(&f);
	}
}

static void test_inquiry_and_capacity(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	assert_int_equal(f.g.props.flags, 0);
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	struct storvsc_io io = cmd(&f, 0, inq, 6, STORVSP_DATA_IN, 96);
	expect_good(&io);
	assert_int_equal(io.xfer, 36);
	assert_int_equal(f.buf[0], 0);
	assert_memory_equal(f.buf + 8, "Msft    Virtual Disk    ", 24);
	/* VPD pages */
	inq[1] = 1;
	io = cmd(&f, 0, inq, 6, STORVSP_DATA_IN, 96);
	expect_good(&io);
	assert_int_equal(f.buf[3], 6);
	assert_memory_equal(f.buf + 4, "\x00\x80\x83\xb0\xb1\xb2", 6);
	static const uint8_t pages[] = { 0x80, 0x83, 0xB0, 0xB1, 0xB2 };
	for (int i = 0; i < 5; i++) {
		inq[2] = pages[i];
		io = cmd(&f, 0, inq, 6, STORVSP_DATA_IN, 96);
		expect_good(&io);
		assert_int_equal(f.buf[1], pages[i]);
	}
	inq[2] = 0xB0;
	io = cmd(&f, 0, inq, 6, STORVSP_DATA_IN, 96);
	assert_int_equal(be32get(f.buf + 8), STORVSP_MAX_TRANSFER / 512);
	assert_int_equal(be32get(f.buf + 24), 64); /* unmap descriptors */
	inq[2] = 0x55;
	expect_sense((struct storvsc_io[]){ cmd(&f, 0, inq, 6, STORVSP_DATA_IN, 96) }, 5, 0x24, 0);
	/* READ CAPACITY 10 and 16: 512 logical, 4096 physical */
	uint8_t rc10[10] = { 0x25 };
	io = cmd(&f, 0, rc10, 10, STORVSP_DATA_IN, 8);
	expect_good(&io);
	assert_int_equal(be32get(f.buf), DISK_BYTES / 512 - 1);
	assert_int_equal(be32get(f.buf + 4), 512);
	uint8_t rc16[16] = { 0x9E, 0x10 };
	rc16[13] = 32;
	io = cmd(&f, 0, rc16, 16, STORVSP_DATA_IN, 32);
	expect_good(&io);
	assert_int_equal(be32get(f.buf + 4), DISK_BYTES / 512 - 1);
	assert_int_equal(be32get(f.buf + 8), 512);
	assert_int_equal(f.buf[13], 3);     /* 8 logical per physical */
	assert_int_equal(f.buf[14] & 0xC0, 0xC0); /* LBPME, LBPRZ */
	/* REPORT LUNS, MODE SENSE caching page with WCE */
	uint8_t rl[12] = { 0xA0 };
	rl[9] = 64;
	io = cmd(&f, 0, rl, 12, STORVSP_DATA_IN, 64);
	expect_good(&io);
	assert_int_equal(be32get(f.buf), 8);
	uint8_t ms[6] = { 0x1A, 0x08, 0x08, 0, 64, 0 };
	io = cmd(&f, 0, ms, 6, STORVSP_DATA_IN, 64);
	expect_good(&io);
	assert_int_equal(f.buf[4], 0x08);
	assert_int_equal(f.buf[6] & 0x04, 0x04);
	uint8_t ms10[10] = { 0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 255, 0 };
	io = cmd(&f, 0, ms10, 10, STORVSP_DATA_IN, 255);
	expect_good(&io);
	assert_int_equal(io.xfer, 8 + 8 + 20 + 12);
	/* REQUEST SENSE, START STOP, unsupported commands */
	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	io = cmd(&f, 0, rs, 6, STORVSP_DATA_IN, 18);
	expect_good(&io);
	assert_int_equal(f.buf[2], 0);
	uint8_t ss[6] = { 0x1B, 0, 0, 0, 1, 0 };
	expect_good((struct storvsc_io[]){ cmd(&f, 0, ss, 6, STORVSP_DATA_NONE, 0) });
	uint8_t pr[10] = { 0x5E, 0, 0, 0, 0, 0, 0, 0, 32, 0 };
	expect_sense((struct storvsc_io[]){ cmd(&f, 0, pr, 10, STORVSP_DATA_IN, 32) }, 5, 0x20, 0);
	uint8_t bogus[6] = { 0xC7 };
	expect_sense((struct storvsc_io[]){ cmd(&f, 0, bogus, 6, STORVSP_DATA_NONE, 0) }, 5, 0x20, 0);
	/* Absent LUN: INQUIRY says no unit, the rest is an invalid LUN */
	uint8_t inq0[6] = { 0x12, 0, 0, 0, 36, 0 };
	io = cmd(&f, 5, inq0, 6, STORVSP_DATA_IN, 36);
	expect_good(&io);
	assert_int_equal(f.buf[0], 0x7F);
	uint8_t tur[6] = { 0 };
	io = cmd(&f, 5, tur, 6, STORVSP_DATA_NONE, 0);
	assert_int_equal(io.srb_status, SRB_STATUS_INVALID_LUN);
	assert_int_equal(io.scsi_status, 2);
	/* Another target (Linux scans paths 0-7, targets 0-1): INQUIRY says no unit and REPORT LUNS
	 * succeeds with no LUNs, never an invalid-LUN status (Linux would then remove LUN 0 of target 0). */
	struct storvsc_io t1 = { .cdb_len = 6, .data_in = STORVSP_DATA_IN, .target = 1, .data = f.buf, .len = 36 };
	memcpy(t1.cdb, inq0, 6);
	assert_int_equal(storvsc_guest_run(&f.g, &t1), 0);
	expect_good(&t1);
	assert_int_equal(f.buf[0], 0x7F);
	uint8_t rl1[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	struct storvsc_io t2 = { .cdb_len = 12, .data_in = STORVSP_DATA_IN, .path = 3, .target = 1, .data = f.buf,
				 .len = 256 };
	memcpy(t2.cdb, rl1, 12);
	memset(f.buf, 0xEE, 16);
	assert_int_equal(storvsc_guest_run(&f.g, &t2), 0);
	expect_good(&t2);
	assert_int_equal(f.buf[0] | f.buf[1] | f.buf[2] | f.buf[3], 0); /* list length 0 */
	struct storvsc_io t3 = { .cdb_len = 6, .data_in = STORVSP_DATA_NONE, .target = 1 };
	assert_int_equal(storvsc_guest_run(&f.g, &t3), 0);
	assert_int_equal(t3.srb_status, SRB_STATUS_INVALID_LUN);
	fx_down(&f);
}

static void test_read_write(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	for (uint32_t i = 0; i < 65536; i++)
		f.buf[i] = (uint8_t)(i * 7 + 3);
	expect_good((struct storvsc_io[]){ rw10(&f, 0, true, 100, 128, 65536) });
	memset(f.buf, 0, 65536);
	struct storvsc_io io = rw10(&f, 0, false, 100, 128, 65536);
	expect_good(&io);
	assert_int_equal(io.xfer, 65536);
	for (uint32_t i = 0; i < 65536; i++)
		assert_int_equal(f.buf[i], (uint8_t)(i * 7 + 3));
	/* READ 6, 12, 16 see the same data */
	uint8_t r6[6] = { 0x08, 0, 0, 100, 1, 0 };
	memset(f.buf, 0, 512);
	expect_good((struct storvsc_io[]){ cmd(&f, 0, r6, 6, STORVSP_DATA_IN, 512) });
	assert_int_equal(f.buf[1], (uint8_t)10);
	uint8_t r12[12] = { 0xA8 };
	be32put(r12 + 2, 101);
	be32put(r12 + 6, 1);
	expect_good((struct storvsc_io[]){ cmd(&f, 0, r12, 12, STORVSP_DATA_IN, 512) });
	assert_int_equal(f.buf[0], (uint8_t)(512 * 7 + 3));
	uint8_t w16[16] = { 0x8A };
	be32put(w16 + 6, DISK_BYTES / 512 - 1);
	be32put(w16 + 10, 1);
	memset(f.buf, 0xEE, 512);
	expect_good((struct storvsc_io[]){ cmd(&f, 0, w16, 16, STORVSP_DATA_OUT, 512) });
	uint8_t sync[10] = { 0x35 };
	expect_good((struct storvsc_io[]){ cmd(&f, 0, sync, 10, STORVSP_DATA_NONE, 0) });
	uint8_t back[512];
	int fd = open(f.disk, O_RDONLY);
	assert_int_equal(pread(fd, back, 512, DISK_BYTES - 512), 512);
	close(fd);
	assert_int_equal(back[0], 0xEE);
	/* Unaligned buffer (buffered path) */
	struct storvsc_io u = { .cdb = { 0x28, 0, 0, 0, 0, 100, 0, 0, 2, 0 }, .cdb_len = 10, .data_in = 1,
				.data = f.buf + 100, .len = 1024 };
	assert_int_equal(storvsc_guest_run(&f.g, &u), 0);
	expect_good(&u);
	assert_int_equal(f.buf[100 + 1], (uint8_t)10);
	fx_down(&f);
}

/* Three GPA ranges at odd offsets, pages out of order: one 3000-byte transfer... of 6 sectors. */
static void test_multi_range(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	uint8_t *p = f.buf;
	uint64_t gpa = f.lb.ops.virt_to_phys(f.lb.ops.ctx, p);
	uint8_t pattern[3072];
	for (int i = 0; i < 3072; i++)
		pattern[i] = (uint8_t)(i ^ 0x5C);
	/* range 0: 1000 bytes at page 5 + 3500 (crosses into page 6); range 1: 1072 at page 2 + 8;
	 * range 2: 1000 at page 9 + 0 */
	memcpy(p + 5 * 4096 + 3500, pattern, 1000);
	memcpy(p + 2 * 4096 + 8, pattern + 1000, 1072);
	memcpy(p + 9 * 4096, pattern + 2072, 1000);
	uint64_t ext[] = { 3ull << 32,
			   (uint64_t)3500 << 32 | 1000, (gpa >> 12) + 5, (gpa >> 12) + 6,
			   (uint64_t)8 << 32 | 1072, (gpa >> 12) + 2,
			   (uint64_t)0 << 32 | 1000, (gpa >> 12) + 9 };
	struct storvsp_packet pk = { .operation = STORVSP_OP_EXECUTE_SRB, .flags = 1 };
	pk.srb.length = 52;
	pk.srb.cdb_length = 10;
	pk.srb.data_in = STORVSP_DATA_OUT;
	pk.srb.data_transfer_length = 3072;
	uint8_t w[10] = { 0x2A, 0, 0, 0, 0, 7, 0, 0, 6, 0 };
	memcpy(pk.srb.cdb, w, 10);
	assert_int_equal(vmbus_client_send(&f.g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, 42, ext, sizeof(ext), &pk, sizeof(pk)), 0);
	struct storvsc_io io;
	uint64_t id = 0;
	for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, 0, &io, &id) != 0; i++)
		usleep(50);
	assert_int_equal(id, 42);
	expect_good(&io);
	assert_int_equal(io.xfer, 3072);
	uint8_t back[3072];
	int fd = open(f.disk, O_RDONLY);
	assert_int_equal(pread(fd, back, 3072, 7 * 512), 3072);
	close(fd);
	assert_memory_equal(back, pattern, 3072);
	fx_down(&f);
}

static void test_discard(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	memset(f.buf, 0x77, 1 << 20);
	expect_good((struct storvsc_io[]){ rw10(&f, 0, true, 0, 2048, 1 << 20) });
	/* UNMAP two ranges */
	uint8_t um[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0 };
	uint8_t *pl = f.buf;
	memset(pl, 0, 40);
	pl[1] = 38;
	pl[3] = 32;
	pl[8 + 7] = 0;    /* lba 0 */
	be32put(pl + 8 + 8, 8);
	pl[24 + 6] = 0x01; /* lba 256 */
	be32put(pl + 24 + 8, 8);
	expect_good((struct storvsc_io[]){ cmd(&f, 0, um, 10, STORVSP_DATA_OUT, 40) });
	/* WRITE SAME 16 with UNMAP and NDOB */
	uint8_t ws[16] = { 0x93, 0x09 };
	ws[9] = 16; /* lba 16 */
	be32put(ws + 10, 8);
	expect_good((struct storvsc_io[]){ cmd(&f, 0, ws, 16, STORVSP_DATA_NONE, 0) });
	/* Without UNMAP it is refused */
	ws[1] = 0x01;
	expect_sense((struct storvsc_io[]){ cmd(&f, 0, ws, 16, STORVSP_DATA_NONE, 0) }, 5, 0x24, 0);
	uint8_t back[4096];
	int fd = open(f.disk, O_RDONLY);
	assert_int_equal(pread(fd, back, 4096, 0), 4096);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(pread(fd, back, 4096, 16 * 512), 4096);
	assert_int_equal(back[0], 0);
	assert_int_equal(pread(fd, back, 512, 8 * 512), 512);
	assert_int_equal(back[0], 0x77);
	close(fd);
	fx_down(&f);
}

static void test_bad_input(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	memset(f.buf, 0x33, 8192);
	/* beyond capacity */
	expect_sense((struct storvsc_io[]){ rw10(&f, 0, false, DISK_BYTES / 512, 1, 512) }, 5, 0x21, 0);
	expect_sense((struct storvsc_io[]){ rw10(&f, 0, true, DISK_BYTES / 512 - 1, 2, 1024) }, 5, 0x21, 0);
	/* transfer length disagrees with the buffer: nothing written */
	expect_sense((struct storvsc_io[]){ rw10(&f, 0, true, 10, 4, 1024) }, 5, 0x24, 0);
	uint8_t back[2048];
	int fd = open(f.disk, O_RDONLY);
	assert_int_equal(pread(fd, back, 2048, 10 * 512), 2048);
	for (int i = 0; i < 2048; i++)
		assert_int_equal(back[i], 0);
	/* direction disagreeing with the command */
	struct storvsc_io io = rw10(&f, 0, false, 0, 1, 512);
	expect_good(&io);
	uint8_t w10[10] = { 0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	expect_sense((struct storvsc_io[]){ cmd(&f, 0, w10, 10, STORVSP_DATA_IN, 512) }, 5, 0x24, 0);
	/* GPA outside guest RAM */
	struct storvsp_packet pk = { .operation = STORVSP_OP_EXECUTE_SRB, .flags = 1 };
	pk.srb.cdb_length = 10;
	pk.srb.data_in = STORVSP_DATA_IN;
	pk.srb.data_transfer_length = 512;
	uint8_t r10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
	memcpy(pk.srb.cdb, r10, 10);
	uint64_t ext[] = { 1ull << 32, 512, 0x7FFFFFFFFull };
	assert_int_equal(vmbus_client_send(&f.g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, 9, ext, sizeof(ext), &pk, sizeof(pk)), 0);
	uint64_t id = 0;
	for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, 0, &io, &id) != 0; i++)
		usleep(50);
	assert_int_equal(id, 9);
	assert_int_equal(io.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* SRB transfer length larger than the GPA buffer */
	ext[2] = f.lb.ops.virt_to_phys(f.lb.ops.ctx, f.buf) >> 12;
	pk.srb.data_transfer_length = 4096;
	assert_int_equal(vmbus_client_send(&f.g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, 10, ext, sizeof(ext), &pk, sizeof(pk)), 0);
	for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, 0, &io, &id) != 0; i++)
		usleep(50);
	assert_int_equal(id, 10);
	assert_int_equal(io.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* Malformed packets: too short; an unknown operation; a bad CDB length */
	assert_int_equal(vmbus_client_send(&f.g.ch[0], VM_PKT_DATA_INBAND, 1, 11, NULL, 0, "abcd", 4), 0);
	struct storvsp_packet bad = { .operation = 99, .flags = 1 };
	assert_int_equal(vmbus_client_send(&f.g.ch[0], VM_PKT_DATA_INBAND, 1, 12, NULL, 0, &bad, sizeof(bad)), 0);
	for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, 0, &io, &id) != 0; i++)
		usleep(50);
	assert_int_equal(id, 12);
	assert_int_not_equal(io.status, 0);
	struct storvsc_io big = { .cdb_len = 17, .data_in = 2 };
	assert_int_equal(storvsc_guest_run(&f.g, &big), 0);
	assert_int_equal(big.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* Read-only disk -> DATA PROTECT */
	struct storvsp_disk_opts ro = { .path = f.disk, .readonly = true };
	assert_int_equal(storvsp_attach(f.sv, 1, &ro), -EBUSY); /* the image is in use read-write */
	char ro_path[128];
	snprintf(ro_path, sizeof(ro_path), "%s/ro.img", f.dir);
	make_file(ro_path, 1 << 20, 1);
	ro.path = ro_path;
	assert_int_equal(storvsp_attach(f.sv, 1, &ro), 0);
	expect_sense((struct storvsc_io[]){ rw10(&f, 1, true, 0, 1, 512) }, 7, 0x27, 0);
	expect_good((struct storvsc_io[]){ rw10(&f, 1, false, 0, 1, 512) });
	/* Backend I/O error: the image shrinks under us -> MEDIUM ERROR; the device lives on */
	assert_int_equal(truncate(f.disk, 4096), 0);
	expect_sense((struct storvsc_io[]){ rw10(&f, 0, false, 1000, 8, 4096) }, 3, 0x11, 0);
	expect_good((struct storvsc_io[]){ rw10(&f, 0, false, 0, 8, 4096) });
	close(fd);
	unlink(ro_path);
	fx_down(&f);
}

static void test_not_ready_before_init(void **state)
{
	struct vmbus_loopback lb;
	struct storvsp *sv;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	assert_int_equal(storvsp_create(lb.srv, &lb.mem, 0, 0, &sv), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct storvsc_guest g = { .lb = &lb };
	uint8_t ud[24] = { 0 };
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &g.ch[0], 1, 65536, 65536, 0, ud, 24), 0);
	g.nr_channels = 1;
	struct storvsc_io io = { .cdb_len = 6 };
	assert_int_equal(storvsc_guest_run(&g, &io), 0);
	assert_int_not_equal(io.status, 0);
	storvsc_guest_close(&g);
	storvsp_destroy(sv);
	vmbus_loopback_destroy(&lb);
}

static int wait_enumerate(struct fx *f)
{
	struct storvsc_io io;
	uint64_t id;
	for (int i = 0; i < 100000; i++) {
		int rc = storvsc_guest_reap(&f->g, 0, &io, &id);
		if (rc == 1)
			return (int)io.status;
		usleep(50);
	}
	return -1;
}

static void test_hotplug(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	char p2[128];
	snprintf(p2, sizeof(p2), "%s/d2.img", f.dir);
	make_file(p2, 4 << 20, 0x42);
	struct storvsp_disk_opts o = { .path = p2, .native_4k = true };
	assert_int_equal(storvsp_attach(f.sv, 3, &o), 0);
	assert_int_equal(storvsp_attach(f.sv, 3, &o), -EEXIST);
	assert_int_equal(wait_enumerate(&f), STORVSP_OP_ENUMERATE_BUS);
	uint8_t rl[12] = { 0xA0 };
	rl[9] = 64;
	struct storvsc_io io = cmd(&f, 0, rl, 12, STORVSP_DATA_IN, 64);
	expect_good(&io);
	assert_int_equal(be32get(f.buf), 16);
	assert_int_equal(f.buf[8 + 8 + 1], 3);
	uint8_t rc10[10] = { 0x25 };
	io = cmd(&f, 3, rc10, 10, STORVSP_DATA_IN, 8);
	expect_good(&io);
	assert_int_equal(be32get(f.buf + 4), 4096);
	assert_int_equal(be32get(f.buf), 1023);
	expect_good((struct storvsc_io[]){ rw10(&f, 3, false, 1, 1, 4096) });
	assert_int_equal(f.buf[0], 0x42);
	assert_int_equal(storvsp_detach(f.sv, 3), 0);
	assert_int_equal(wait_enumerate(&f), STORVSP_OP_ENUMERATE_BUS);
	uint8_t tur[6] = { 0 };
	io = cmd(&f, 3, tur, 6, STORVSP_DATA_NONE, 0);
	assert_int_equal(io.srb_status, SRB_STATUS_INVALID_LUN);
	assert_int_equal(storvsp_detach(f.sv, 3), -ENOENT);
	unlink(p2);
	fx_down(&f);
}

static void test_dvd(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	struct storvsp_disk_opts o = { .dvd = true };
	assert_int_equal(storvsp_attach(f.sv, 1, &o), 0);
	assert_int_equal(wait_enumerate(&f), STORVSP_OP_ENUMERATE_BUS);
	uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
	struct storvsc_io io = cmd(&f, 1, inq, 6, STORVSP_DATA_IN, 36);
	assert_int_equal(f.buf[0], 5);
	assert_int_equal(f.buf[1], 0x80);
	uint8_t tur[6] = { 0 };
	expect_sense((struct storvsc_io[]){ cmd(&f, 1, tur, 6, STORVSP_DATA_NONE, 0) }, 2, 0x3A, 0);
	expect_sense((struct storvsc_io[]){ rw10(&f, 1, false, 0, 1, 2048) }, 2, 0x3A, 0);
	/* insert */
	assert_int_equal(storvsp_change_media(f.sv, 1, f.iso, 0), 0);
	uint8_t gesn[10] = { 0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0 };
	io = cmd(&f, 1, gesn, 10, STORVSP_DATA_IN, 8);
	expect_good(&io);
	assert_int_equal(f.buf[4], 2); /* new media */
	assert_int_equal(f.buf[5] & 2, 2);
	expect_sense((struct storvsc_io[]){ cmd(&f, 1, tur, 6, STORVSP_DATA_NONE, 0) }, 6, 0x28, 0);
	expect_good((struct storvsc_io[]){ cmd(&f, 1, tur, 6, STORVSP_DATA_NONE, 0) });
	uint8_t rc10[10] = { 0x25 };
	io = cmd(&f, 1, rc10, 10, STORVSP_DATA_IN, 8);
	expect_good(&io);
	assert_int_equal(be32get(f.buf), 511);
	assert_int_equal(be32get(f.buf + 4), 2048);
	io = rw10(&f, 1, false, 3, 2, 4096);
	expect_good(&io);
	assert_int_equal(f.buf[0], 0xA5);
	assert_int_equal(f.buf[4095], 0xA5);
	uint8_t r12[12] = { 0xA8 };
	be32put(r12 + 6, 1);
	expect_good((struct storvsc_io[]){ cmd(&f, 1, r12, 12, STORVSP_DATA_IN, 2048) });
	expect_sense((struct storvsc_io[]){ rw10(&f, 1, true, 0, 1, 2048) }, 7, 0x27, 0);
	uint8_t toc[10] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
	io = cmd(&f, 1, toc, 10, STORVSP_DATA_IN, 64);
	expect_good(&io);
	assert_int_equal(io.xfer, 20);
	assert_int_equal(f.buf[6], 1);
	assert_int_equal(f.buf[14], 0xAA);
	assert_int_equal(be32get(f.buf + 16), 512);
	uint8_t di[10] = { 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0 };
	io = cmd(&f, 1, di, 10, STORVSP_DATA_IN, 34);
	expect_good(&io);
	assert_int_equal(f.buf[2], 0x0E);
	uint8_t gc[10] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 128, 0 };
	io = cmd(&f, 1, gc, 10, STORVSP_DATA_IN, 128);
	expect_good(&io);
	assert_int_equal(f.buf[7], 0x10);
	uint8_t ms[10] = { 0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64, 0 };
	io = cmd(&f, 1, ms, 10, STORVSP_DATA_IN, 64);
	expect_good(&io);
	assert_int_equal(f.buf[8], 0x2A);
	/* locked tray refuses the eject; unlocked it ejects */
	uint8_t lock[6] = { 0x1E, 0, 0, 0, 1, 0 }, eject[6] = { 0x1B, 0, 0, 0, 2, 0 };
	expect_good((struct storvsc_io[]){ cmd(&f, 1, lock, 6, STORVSP_DATA_NONE, 0) });
	expect_sense((struct storvsc_io[]){ cmd(&f, 1, eject, 6, STORVSP_DATA_NONE, 0) }, 5, 0x53, 2);
	lock[4] = 0;
	expect_good((struct storvsc_io[]){ cmd(&f, 1, lock, 6, STORVSP_DATA_NONE, 0) });
	expect_good((struct storvsc_io[]){ cmd(&f, 1, eject, 6, STORVSP_DATA_NONE, 0) });
	expect_sense((struct storvsc_io[]){ cmd(&f, 1, tur, 6, STORVSP_DATA_NONE, 0) }, 2, 0x3A, 2);
	/* host media change to another ISO, then eject from the host */
	assert_int_equal(storvsp_change_media(f.sv, 1, f.iso2, 0), 0);
	expect_sense((struct storvsc_io[]){ cmd(&f, 1, tur, 6, STORVSP_DATA_NONE, 0) }, 6, 0x28, 0);
	io = rw10(&f, 1, false, 1000, 1, 2048);
	expect_good(&io);
	assert_int_equal(f.buf[0], 0x5A);
	assert_int_equal(storvsp_change_media(f.sv, 1, NULL, 0), 0);
	io = cmd(&f, 1, gesn, 10, STORVSP_DATA_IN, 8);
	assert_int_equal(f.buf[4], 3); /* media removal */
	assert_int_equal(storvsp_change_media(f.sv, 0, f.iso, 0), -EINVAL);
	fx_down(&f);
}

static void test_subchannels(void **state)
{
	struct fx f;
	fx_up(&f, 4, 3, 0);
	assert_int_equal(storvsc_guest_subchannels(&f.g, 3), 4);
	/* Writes through each channel, read back through another. */
	for (uint32_t c = 0; c < 4; c++) {
		uint8_t *b = f.buf + c * 8192;
		memset(b, 0x10 + (int)c, 4096);
		struct storvsc_io io = { .cdb = { 0x2A, 0, 0, 0, 0, (uint8_t)(c * 8), 0, 0, 8, 0 }, .cdb_len = 10,
					 .data_in = 0, .data = b, .len = 4096 };
		assert_int_equal(storvsc_guest_submit(&f.g, c, &io, 100 + c), 0);
	}
	for (uint32_t c = 0; c < 4; c++) {
		struct storvsc_io io;
		uint64_t id = 0;
		for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, c, &io, &id) != 0; i++)
			usleep(50);
		assert_int_equal(id, 100 + c);
		expect_good(&io);
	}
	for (uint32_t c = 0; c < 4; c++) {
		struct storvsc_io io = { .cdb = { 0x28, 0, 0, 0, 0, (uint8_t)(c * 8), 0, 0, 8, 0 }, .cdb_len = 10,
					 .data_in = 1, .data = f.buf + 65536, .len = 4096 };
		assert_int_equal(storvsc_guest_submit(&f.g, (c + 1) % 4, &io, 200 + c), 0);
		uint64_t id = 0;
		for (int i = 0; i < 100000 && storvsc_guest_reap(&f.g, (c + 1) % 4, &io, &id) != 0; i++)
			usleep(50);
		assert_int_equal(id, 200 + c);
		expect_good(&io);
		assert_int_equal(f.buf[65536 + 4095], 0x10 + c);
	}
	/* More than offered is refused */
	struct storvsp_packet pk = { .operation = STORVSP_OP_CREATE_SUB_CHANNELS };
	pk.sub_channel_count = 9;
	assert_int_equal(storvsc_guest_ctrl(&f.g, &pk), 0);
	assert_int_not_equal(pk.status, 0);
	fx_down(&f);
}

/* CREATE_SUB_CHANNELS queued behind a full request pool is handled when a completion frees a request,
 * i.e. by the drain the completion path resumes (the service thread, no server call on its stack):
 * the offers go out all the same. */
static void test_subchannels_from_completion_path(void **state)
{
	(void)state;
	struct fx f;
	fx_up(&f, 4, 3, 0);
	f.g.manual_wait = true; /* completions run only inside storvsc_guest_ctrl's waits below */
	for (uint32_t i = 0; i < 160; i++) { /* more than the pool (128): the drain stalls */
		struct storvsc_io io = { .cdb = { 0x28, 0, 0, 0, 0, (uint8_t)i, 0, 0, 8, 0 }, .cdb_len = 10,
					 .data_in = 1, .data = f.buf + (i % 128) * 4096, .len = 4096 };
		assert_int_equal(storvsc_guest_submit(&f.g, 0, &io, i + 1), 0);
	}
	struct storvsp_packet pk = { .operation = STORVSP_OP_CREATE_SUB_CHANNELS };
	pk.sub_channel_count = 2;
	assert_int_equal(storvsc_guest_ctrl(&f.g, &pk), 0); /* skips the read replies before its own */
	assert_int_equal(pk.status, 0);
	while (vmbus_client_poll(&f.lb.cl) == 0)
		;
	uint32_t subs = 0;
	for (uint32_t i = 0; i < f.lb.cl.nr_offers; i++)
		if (f.lb.cl.offers[i].msg.offer.sub_channel_index && !f.lb.cl.offers[i].rescinded)
			subs++;
	assert_int_equal(subs, 2);
	fx_down(&f);
}

/* I/O completes on the thread that services the channel (here: vmbus_loopback_wait), never behind its
 * back, and the replies of one reaped batch signal the guest once. */
static void test_completion_thread_and_batched_signal(void **state)
{
	(void)state;
	struct fx f;
	fx_up(&f, 1, 0, 0);
	f.g.manual_wait = true;
	for (uint32_t i = 0; i < 32; i++) {
		struct storvsc_io io = { .cdb = { 0x28, 0, 0, 0, 0, (uint8_t)(i * 8), 0, 0, 8, 0 }, .cdb_len = 10,
					 .data_in = 1, .data = f.buf + i * 4096, .len = 4096 };
		assert_int_equal(storvsc_guest_submit(&f.g, 0, &io, i + 1), 0);
	}
	usleep(100000); /* the reads are done by now: their replies must still wait for us */
	struct storvsc_io io;
	uint64_t id;
	assert_int_equal(storvsc_guest_reap(&f.g, 0, &io, &id), -EAGAIN);
	uint64_t signals0 = f.lb.host_signals;
	uint32_t got = 0, waits = 0;
	while (got < 32 && waits < 100) {
		assert_int_equal(storvsc_guest_wait(&f.g, 1000), 0);
		waits++;
		while (storvsc_guest_reap(&f.g, 0, &io, &id) == 0) {
			expect_good(&io);
			got++;
		}
	}
	assert_int_equal(got, 32);
	/* One signal per reaped batch at most (the ring was empty before each). */
	assert_true(f.lb.host_signals - signals0 <= waits);
	assert_true(f.lb.host_signals - signals0 < 32);
	fx_down(&f);
}

/* Many requests in flight: the pool runs dry, the drain stalls and resumes from completions. */
static void test_queue_depth(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	const uint32_t total = 2000;
	uint32_t sent = 0, got = 0;
	while (got < total) {
		while (sent < total) {
			struct storvsc_io io = { .cdb = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 }, .cdb_len = 10, .data_in = 1,
						 .data = f.buf + (sent % 200) * 4096, .len = 4096 };
			io.cdb[5] = (uint8_t)(sent * 8);
			if (storvsc_guest_submit(&f.g, 0, &io, sent + 1))
				break;
			sent++;
		}
		struct storvsc_io io;
		uint64_t id;
		if (storvsc_guest_reap(&f.g, 0, &io, &id) == 0) {
			expect_good(&io);
			got++;
		} else {
			usleep(10);
		}
	}
	struct storvsp_stats st;
	storvsp_get_stats(f.sv, &st);
	assert_true(st.reads >= total);
	fx_down(&f);
}

static void test_vhdx_backend(void **state)
{
	struct fx f;
	fx_up(&f, 1, 0, 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/d.vhdx", f.dir);
	struct disk_create_opts co = { .format = "vhdx", .size = 64 << 20 };
	assert_int_equal(disk_create(p, &co), 0);
	struct storvsp_disk_opts o = { .path = p };
	assert_int_equal(storvsp_attach(f.sv, 2, &o), 0);
	for (int i = 0; i < 8192; i++)
		f.buf[i] = (uint8_t)(i * 13);
	expect_good((struct storvsc_io[]){ rw10(&f, 2, true, 5000, 16, 8192) });
	memset(f.buf, 0, 8192);
	expect_good((struct storvsc_io[]){ rw10(&f, 2, false, 5000, 16, 8192) });
	assert_int_equal(f.buf[8191], (uint8_t)(8191 * 13));
	uint8_t sync[10] = { 0x35 };
	expect_good((struct storvsc_io[]){ cmd(&f, 2, sync, 10, STORVSP_DATA_NONE, 0) });
	unlink(p);
	fx_down(&f);
}

struct drives_seen {
	unsigned n;
	struct vmdev_drive d[8];
};

static int drives_present(void *opaque, const struct vmdev_drive *d, unsigned n)
{
	struct drives_seen *s = opaque;
	for (unsigned i = 0; i < n && s->n < 8; i++)
		s->d[s->n++] = d[i];
	return 0;
}

static void test_disk_spec_and_machine(void **state)
{
	struct disk_spec d;
	char err[256];
	assert_int_equal(disk_spec_parse("a.img,readonly,lun=5,controller=2,4k", false, &d, err, sizeof(err)), 0);
	assert_string_equal(d.path, "a.img");
	assert_true(d.readonly && d.native_4k);
	assert_int_equal(d.lun, 5);
	assert_int_equal(d.controller, 2);
	disk_spec_free(&d);
	assert_int_equal(disk_spec_parse("empty", true, &d, err, sizeof(err)), 0);
	assert_null(d.path);
	assert_true(d.dvd);
	assert_int_equal(disk_spec_parse("a.img,lun=64", false, &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "lun=64"));
	assert_int_equal(disk_spec_parse("a.img,controller=4", false, &d, err, sizeof(err)), -EINVAL);
	assert_int_equal(disk_spec_parse("", false, &d, err, sizeof(err)), -EINVAL);
	/* The storage class through the registry: two controllers, auto LUNs, one DVD; the drives are
	 * reported where they went (the machine's boot entries). */
	struct fx f;
	fx_up(&f, 2, 1, 0);
	struct vmdev_config cfg = { 0 };
	char arg[160];
	snprintf(arg, sizeof(arg), "%s,controller=1", f.iso2);
	assert_int_equal(vmdev_config_add_option(&cfg, "disk", arg, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_add_option(&cfg, "dvd", "empty,controller=1", err, sizeof(err)), 0);
	snprintf(arg, sizeof(arg), "%s,lun=7,controller=3", f.iso);
	assert_int_equal(vmdev_config_add_option(&cfg, "dvd", arg, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_validate(&cfg, err, sizeof(err)), 0);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct drives_seen seen = { 0 };
	struct vmdev_host h = { .srv = f.lb.srv, .srv_lock = &lock, .mem = &f.lb.mem, .nr_vcpus = 2, .vm_name = "t",
				.opaque = &seen, .drives_present = drives_present };
	struct vmdev_set set;
	assert_int_equal(vmdev_set_create(&set, &h, &cfg, err, sizeof(err)), 0);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.d[0].controller, 1);
	assert_int_equal(seen.d[0].lun, 0);
	assert_false(seen.d[0].dvd);
	assert_int_equal(seen.d[1].controller, 1);
	assert_int_equal(seen.d[1].lun, 1);
	assert_true(seen.d[1].dvd);
	assert_int_equal(seen.d[2].controller, 3);
	assert_int_equal(seen.d[2].lun, 7);
	vmdev_set_destroy(&set);
	vmdev_config_free(&cfg);
	/* A disk that cannot be opened: nothing is left behind, the message named it. */
	assert_int_equal(vmdev_config_add_option(&cfg, "disk", "/nonexistent/x.img", err, sizeof(err)), 0);
	seen.n = 0;
	assert_int_not_equal(vmdev_set_create(&set, &h, &cfg, err, sizeof(err)), 0);
	assert_int_equal(set.n, 0);
	assert_int_equal(seen.n, 0);
	vmdev_config_free(&cfg);
	fx_down(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_versions),
		cmocka_unit_test(test_inquiry_and_capacity),
		cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_multi_range),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_not_ready_before_init),
		cmocka_unit_test(test_hotplug),
		cmocka_unit_test(test_dvd),
		cmocka_unit_test(test_subchannels),
		cmocka_unit_test(test_subchannels_from_completion_path),
		cmocka_unit_test(test_completion_thread_and_batched_signal),
		cmocka_unit_test(test_queue_depth),
		cmocka_unit_test(test_vhdx_backend),
		cmocka_unit_test(test_disk_spec_and_machine),
	};
	return cmocka_run_group_tests_name("storvsp", tests, NULL, NULL);
}
