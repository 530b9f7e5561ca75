/* The firmware's storvsc BlockIo (firmware/storvsc.c), built for the host and run against our storvsp
 * server through the loopback guest: LUN discovery and media fields, reads and writes split into
 * chunks the host accepts, straight into unaligned caller buffers, flush, parameter errors, and DVD
 * media changes (EFI_MEDIA_CHANGED once, then the new medium; EFI_NO_MEDIA when empty). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../firmware/storvsc.c"

#include "devices/storvsp.h"
#include "support/loopback.h"
#include "util/clock.h"

struct fw_state fw;
static struct vmbus_loopback lb;
static struct efi_db db;
static char console[4096];
static struct fw_stor_dev *devs[8];
static unsigned nr_devs;

void fw_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = strlen(console);
	vsnprintf(console + n, sizeof(console) - n, fmt, ap);
	va_end(ap);
}

uint64_t fw_virt_to_phys(const void *p)
{
	return lb.ops.virt_to_phys(lb.ops.ctx, p);
}

void *fw_stor_zalloc(size_t size)
{
	return calloc(1, size);
}

void fw_stor_free(void *p)
{
	free(p);
}

void *fw_stor_alloc_pages(uint32_t n)
{
	return lb.ops.alloc_pages(lb.ops.ctx, n);
}

EFI_STATUS fw_stor_install(EFI_HANDLE *handle, size_t n, const EFI_GUID *const *protocols, void *const *ifaces)
{
	return efi_db_install_multiple(&db, handle, n, protocols, ifaces);
}

void fw_storage_add(struct fw_stor_dev *d)
{
	assert_true(nr_devs < 8);
	devs[nr_devs++] = d;
}

EFI_STATUS fw_disk_attach(struct fw_stor_dev *d, const char *what)
{
	(void)d;
	fw_printf("%s\n", what);
	return EFI_SUCCESS;
}

uint64_t fw_stor_now_us(void)
{
	return clock_mono_ns() / 1000u;
}

struct vmbus_client *fw_vmbus_client(void)
{
	return &lb.cl;
}

EFI_STATUS fw_vmbus_channel_open(struct vmbus_client_channel *ch, uint32_t relid, uint32_t ring_bytes)
{
	uint8_t ud[24] = { 0 };
	return vmbus_client_channel_open(&lb.cl, ch, relid, ring_bytes, ring_bytes, 0, ud, sizeof(ud)) ? EFI_DEVICE_ERROR
												       : EFI_SUCCESS;
}

EFI_STATUS fw_vmbus_recv(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len, uint64_t timeout_us)
{
	uint64_t end = fw_stor_now_us() + timeout_us;
	for (;;) {
		int rc = vmbus_client_recv(ch, buf, cap, len);
		if (!rc) {
			vmbus_client_recv_done(ch);
			return EFI_SUCCESS;
		}
		if (rc != -VMBUS_EAGAIN)
			return EFI_DEVICE_ERROR;
		if (fw_stor_now_us() > end)
			return EFI_TIMEOUT;
		vmbus_loopback_wait(&lb, 1); /* storvsp completes I/O on this thread */
	}
}

static void *db_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void db_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static void make_file(const char *path, uint64_t size, uint32_t seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint8_t *b = malloc(size);
	for (uint64_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 131 + i / 4093 + seed);
	assert_int_equal(pwrite(fd, b, size, 0), (ssize_t)size);
	free(b);
	close(fd);
}

#define DISK_BYTES (8u << 20)

static EFI_BLOCK_IO_PROTOCOL *lun_bio(unsigned lun)
{
	for (unsigned i = 0; i < nr_devs; i++)
		if (devs[i]->lun == lun)
			return devs[i]->bio;
	fail();
	return NULL;
}

static void test_storvsc_blockio(void **state)
{
	(void)state;
	char dir[] = "/tmp/g2vm-fwsv-XXXXXX", disk[64], iso[64], iso2[64], ro[64];
	assert_non_null(mkdtemp(dir));
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(iso, sizeof(iso), "%s/a.iso", dir);
	snprintf(iso2, sizeof(iso2), "%s/b.iso", dir);
	snprintf(ro, sizeof(ro), "%s/ro.img", dir);
	make_file(disk, DISK_BYTES, 1);
	make_file(iso, 1 << 20, 2);
	make_file(iso2, 2 << 20, 3);
	make_file(ro, 1 << 20, 4);
	static const struct efi_db_ops ops = { .alloc = db_alloc, .free = db_free };
	efi_db_init(&db, &ops);
	assert_int_equal(vmbus_loopback_init(&lb, 256ull << 20, 1, NULL), 0);
	struct storvsp *sv;
	assert_int_equal(storvsp_create(lb.srv, &lb.mem, 0, 0, &sv), 0);
	struct storvsp_disk_opts o0 = { .path = disk }, o1 = { .path = iso, .dvd = true }, o2 = { .dvd = true },
				 o3 = { .path = ro, .readonly = true };
	assert_int_equal(storvsp_attach(sv, 0, &o0), 0);
	assert_int_equal(storvsp_attach(sv, 1, &o1), 0);
	assert_int_equal(storvsp_attach(sv, 2, &o2), 0);
	assert_int_equal(storvsp_attach(sv, 3, &o3), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);

	assert_int_equal(fw_storvsc_init(), 4);
	assert_string_equal(console, "SCSI 0:0 disk, 16384 x 512 bytes\n"
				     "SCSI 0:1 DVD, 2048-byte blocks\n"
				     "SCSI 0:2 DVD, no media\n"
				     "SCSI 0:3 disk, 2048 x 512 bytes, read-only\n");
	assert_int_equal(nr_devs, 4);
	static const EFI_GUID bio_guid = EFI_BLOCK_IO_PROTOCOL_GUID;
	EFI_BLOCK_IO_PROTOCOL *b0;
	assert_int_equal(efi_db_handle_protocol(&db, devs[0]->handle, &bio_guid, (void **)&b0, NULL), EFI_SUCCESS);
	assert_ptr_equal(b0, lun_bio(0));
	assert_int_equal(b0->Revision, EFI_BLOCK_IO_PROTOCOL_REVISION3);
	assert_false(b0->Media->ReadOnly || b0->Media->RemovableMedia);
	assert_int_equal(b0->Media->LastBlock, DISK_BYTES / 512 - 1);
	assert_int_equal(b0->Media->LogicalBlocksPerPhysicalBlock, 8); /* 512 logical, 4096 physical */

	/* A read larger than one host transfer, into a buffer at an odd address. */
	uint8_t *gbuf = lb.ops.alloc_pages(lb.ops.ctx, 1024); /* 4 MiB of guest RAM */
	assert_non_null(gbuf);
	uint8_t *want = malloc(DISK_BYTES);
	int fd = open(disk, O_RDWR);
	size_t n = (2u << 20) + 512 * 3;
	assert_int_equal(b0->ReadBlocks(b0, b0->Media->MediaId, 7, n, gbuf + 5), EFI_SUCCESS);
	assert_int_equal(pread(fd, want, n, 7 * 512), (ssize_t)n);
	assert_memory_equal(gbuf + 5, want, n);
	/* A write likewise, then flush. */
	for (size_t i = 0; i < n; i++)
		gbuf[3 + i] = (uint8_t)(i ^ 0x5a);
	assert_int_equal(b0->WriteBlocks(b0, b0->Media->MediaId, 100, n, gbuf + 3), EFI_SUCCESS);
	assert_int_equal(b0->FlushBlocks(b0), EFI_SUCCESS);
	assert_int_equal(pread(fd, want, n, 100 * 512), (ssize_t)n);
	assert_memory_equal(gbuf + 3, want, n);
	close(fd);
	/* Parameter errors. */
	assert_int_equal(b0->ReadBlocks(b0, b0->Media->MediaId + 1, 0, 512, gbuf), EFI_MEDIA_CHANGED);
	assert_int_equal(b0->ReadBlocks(b0, b0->Media->MediaId, 0, 100, gbuf), EFI_BAD_BUFFER_SIZE);
	assert_int_equal(b0->ReadBlocks(b0, b0->Media->MediaId, b0->Media->LastBlock, 1024, gbuf), EFI_INVALID_PARAMETER);
	assert_int_equal(b0->ReadBlocks(b0, b0->Media->MediaId, 0, 0, gbuf), EFI_SUCCESS);

	/* The DVD: read-only, removable; media change noticed once through sense data. */
	EFI_BLOCK_IO_PROTOCOL *b1 = lun_bio(1);
	assert_true(b1->Media->ReadOnly && b1->Media->RemovableMedia && b1->Media->MediaPresent);
	assert_int_equal(b1->Media->BlockSize, 2048);
	assert_int_equal(b1->Media->LastBlock, (1u << 20) / 2048 - 1);
	assert_int_equal(b1->WriteBlocks(b1, b1->Media->MediaId, 0, 2048, gbuf), EFI_WRITE_PROTECTED);
	assert_int_equal(b1->ReadBlocks(b1, b1->Media->MediaId, 1, 4096, gbuf), EFI_SUCCESS);
	uint32_t id = b1->Media->MediaId;
	assert_int_equal(storvsp_change_media(sv, 1, iso2, 0), 0);
	assert_int_equal(b1->ReadBlocks(b1, id, 1, 2048, gbuf), EFI_MEDIA_CHANGED);
	assert_int_not_equal(b1->Media->MediaId, id);
	assert_int_equal(b1->Media->LastBlock, (2u << 20) / 2048 - 1);
	assert_int_equal(b1->ReadBlocks(b1, b1->Media->MediaId, 1, 2048, gbuf), EFI_SUCCESS);
	fd = open(iso2, O_RDONLY);
	assert_int_equal(pread(fd, want, 2048, 2048), 2048);
	close(fd);
	assert_memory_equal(gbuf, want, 2048);
	assert_int_equal(storvsp_change_media(sv, 1, NULL, 0), 0);
	EFI_STATUS s = b1->ReadBlocks(b1, b1->Media->MediaId, 1, 2048, gbuf);
	assert_true(s == EFI_MEDIA_CHANGED || s == EFI_NO_MEDIA);
	assert_false(b1->Media->MediaPresent);
	assert_int_equal(b1->ReadBlocks(b1, b1->Media->MediaId, 1, 2048, gbuf), EFI_NO_MEDIA);

	/* The empty drive: no media, then a disc appears. */
	EFI_BLOCK_IO_PROTOCOL *b2 = lun_bio(2);
	assert_false(b2->Media->MediaPresent);
	assert_int_equal(b2->ReadBlocks(b2, b2->Media->MediaId, 0, 2048, gbuf), EFI_NO_MEDIA);
	assert_int_equal(storvsp_change_media(sv, 2, iso, 0), 0);
	assert_int_equal(b2->ReadBlocks(b2, b2->Media->MediaId, 0, 2048, gbuf), EFI_MEDIA_CHANGED);
	assert_true(b2->Media->MediaPresent);
	assert_int_equal(b2->ReadBlocks(b2, b2->Media->MediaId, 0, 2048, gbuf), EFI_SUCCESS);

	/* The read-only disk. */
	EFI_BLOCK_IO_PROTOCOL *b3 = lun_bio(3);
	assert_true(b3->Media->ReadOnly);
	assert_int_equal(b3->WriteBlocks(b3, b3->Media->MediaId, 0, 512, gbuf), EFI_WRITE_PROTECTED);

	free(want);
	for (unsigned i = 0; i < nr_devs; i++) {
		struct stv_lun *l = (struct stv_lun *)devs[i]->bio;
		if (i == 0)
			vmbus_client_channel_close(&l->c->ch);
	}
	storvsp_destroy(sv);
	vmbus_loopback_destroy(&lb);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_storvsc_blockio),
	};
	return cmocka_run_group_tests_name("fw_storvsc", tests, NULL, NULL);
}
