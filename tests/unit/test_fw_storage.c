/* The firmware's partition driver, DiskIo and file protocol (firmware/disk.c, firmware/fs.c), built
 * for the host and run over a RAM BlockIo holding a GPT disk made by sfdisk, mkfs.vfat and mtools:
 * partition children and their device paths, DiskIo at odd offsets, EFI_FILE_PROTOCOL reads, creates,
 * writes, truncates, deletes and directory listings, then fsck.fat -n and mtools on the result. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../firmware/disk.c"
#include "../../firmware/fs.c"

#include "efi/efi_devpath.h"

struct fw_state fw;
static char console[4096];
static struct efi_db db;

void fw_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = strlen(console);
	vsnprintf(console + n, sizeof(console) - n, fmt, ap);
	va_end(ap);
}

void *fw_stor_zalloc(size_t size)
{
	return calloc(1, size);
}

void fw_stor_free(void *p)
{
	free(p);
}

void *fw_stor_alloc(size_t size)
{
	void *p = malloc(size);
	memset(p, 0xa5, size); /* no promise of zeros */
	return p;
}

EFI_STATUS fw_stor_install(EFI_HANDLE *handle, size_t n, const EFI_GUID *const *protocols, void *const *ifaces)
{
	return efi_db_install_multiple(&db, handle, n, protocols, ifaces);
}

EFI_STATUS fw_host_call(void *req)
{
	struct fw_time_req *t = req;
	assert_int_equal(t->hdr.op, FW_OP_TIME_GET);
	t->year = 2026, t->month = 11, t->day = 22, t->hour = 3, t->minute = 4, t->second = 5;
	return EFI_SUCCESS;
}

EFI_STATUS fw_vmbus_init(void)
{
	return EFI_NOT_FOUND;
}

uint32_t fw_storvsc_init(void)
{
	return 0;
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

/* ---- a RAM disk ---- */

struct ram_disk {
	EFI_BLOCK_IO_PROTOCOL bio;
	EFI_BLOCK_IO_MEDIA media;
	uint8_t *data;
	unsigned reads, writes, flushes;
};

static EFI_STATUS EFIAPI rd_reset(EFI_BLOCK_IO_PROTOCOL *This, BOOLEAN e)
{
	(void)This, (void)e;
	return EFI_SUCCESS;
}

static EFI_STATUS rd_check(struct ram_disk *d, uint32_t id, EFI_LBA lba, UINTN size)
{
	assert_int_equal(id, d->media.MediaId);
	assert_int_equal(size % d->media.BlockSize, 0);
	assert_true(lba <= d->media.LastBlock && size / d->media.BlockSize <= d->media.LastBlock + 1 - lba);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI rd_read(EFI_BLOCK_IO_PROTOCOL *This, uint32_t id, EFI_LBA lba, UINTN size, void *buf)
{
	struct ram_disk *d = (struct ram_disk *)This;
	rd_check(d, id, lba, size);
	memcpy(buf, d->data + lba * d->media.BlockSize, size);
	d->reads++;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI rd_write(EFI_BLOCK_IO_PROTOCOL *This, uint32_t id, EFI_LBA lba, UINTN size, void *buf)
{
	struct ram_disk *d = (struct ram_disk *)This;
	rd_check(d, id, lba, size);
	if (d->media.ReadOnly)
		return EFI_WRITE_PROTECTED;
	memcpy(d->data + lba * d->media.BlockSize, buf, size);
	d->writes++;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI rd_flush(EFI_BLOCK_IO_PROTOCOL *This)
{
	((struct ram_disk *)This)->flushes++;
	return EFI_SUCCESS;
}

#define DISK_MIB 64
#define ESP_START 2048
#define ESP_BLOCKS 81920

static char dir[64];

static uint8_t *make_disk(void)
{
	strcpy(dir, "/tmp/g2vm-fwst-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && export MTOOLS_SKIP_CHECK=1 && truncate -s %uM disk.img && "
		 "printf 'label: gpt\\nstart=%u, size=%u, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\n"
		 "start=83968, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\n' | sfdisk -q disk.img && "
		 "truncate -s 40M esp.img && mkfs.vfat -F 32 -s 1 -n GEN2VM-ESP esp.img >/dev/null && "
		 "mmd -i esp.img ::EFI ::EFI/BOOT && printf 'hello\\n' > hello.txt && "
		 "mcopy -i esp.img hello.txt ::EFI/BOOT/HELLO.TXT && "
		 "dd if=esp.img of=disk.img bs=512 seek=%u conv=notrunc status=none",
		 dir, DISK_MIB, ESP_START, ESP_BLOCKS, ESP_START);
	if (system(cmd))
		return NULL;
	snprintf(cmd, sizeof(cmd), "%s/disk.img", dir);
	FILE *f = fopen(cmd, "rb");
	assert_non_null(f);
	uint8_t *data = malloc((size_t)DISK_MIB << 20);
	assert_int_equal(fread(data, 1, (size_t)DISK_MIB << 20, f), (size_t)DISK_MIB << 20);
	fclose(f);
	return data;
}

static void u16s(CHAR16 *out, const char *s)
{
	while ((*out++ = (uint8_t)*s++))
		;
}

static EFI_FILE_PROTOCOL *open_file(EFI_FILE_PROTOCOL *at, const char *path, uint64_t mode, uint64_t attr,
				    EFI_STATUS want)
{
	CHAR16 p[256];
	u16s(p, path);
	EFI_FILE_PROTOCOL *f = NULL;
	assert_int_equal(at->Open(at, &f, p, mode, attr), want);
	return f;
}

static void test_partitions_and_files(void **state)
{
	(void)state;
	uint8_t *data = make_disk();
	if (!data)
		skip();
	static const struct efi_db_ops ops = { .alloc = db_alloc, .free = db_free };
	efi_db_init(&db, &ops);
	static struct ram_disk rd;
	rd.data = data;
	rd.media = (EFI_BLOCK_IO_MEDIA){ .MediaId = 7, .MediaPresent = 1, .BlockSize = 512,
					 .LastBlock = ((uint64_t)DISK_MIB << 20) / 512 - 1 };
	rd.bio = (EFI_BLOCK_IO_PROTOCOL){ EFI_BLOCK_IO_PROTOCOL_REVISION3, &rd.media, rd_reset, rd_read, rd_write, rd_flush };
	static struct efi_dp_vmbus_scsi dp;
	static const uint8_t inst[16] = { 1, 2, 3, 4 };
	efi_dp_vmbus_scsi_init(&dp, inst, 0, 0);
	static struct fw_stor_dev dev;
	dev = (struct fw_stor_dev){ .kind = FW_STOR_DISK, .path = &dp.vmbus.Header, .bio = &rd.bio };
	static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID, bio_guid = EFI_BLOCK_IO_PROTOCOL_GUID,
			      sfs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID, dio_guid = EFI_DISK_IO_PROTOCOL_GUID,
			      pi_guid = EFI_PARTITION_INFO_PROTOCOL_GUID, esp_guid = EFI_PART_TYPE_EFI_SYSTEM_PART_GUID,
			      fi_guid = EFI_FILE_INFO_ID, fsi_guid = EFI_FILE_SYSTEM_INFO_ID;
	const EFI_GUID *g[2] = { &dp_guid, &bio_guid };
	void *i[2] = { &dp, &rd.bio };
	assert_int_equal(fw_stor_install(&dev.handle, 2, g, i), EFI_SUCCESS);
	fw_storage_add(&dev);
	assert_int_equal(fw_disk_attach(&dev, "SCSI 0:0 disk"), EFI_SUCCESS);
	assert_string_equal(console, "storage: SCSI 0:0 disk, GPT, 2 partitions, ESP FAT32\n");

	/* The LUN, then its two partitions; the ESP carries a file system and the ESP type GUID. */
	struct fw_stor_dev *lun = fw_storage_devices(), *esp = lun->next, *other = esp->next;
	assert_ptr_equal(lun, &dev);
	assert_non_null(other);
	assert_null(other->next);
	assert_true(esp->kind == FW_STOR_PARTITION && esp->esp && esp->has_fs && !esp->dvd);
	assert_true(!other->esp && !other->has_fs);
	assert_int_equal(esp->part.start, ESP_START);
	const uint8_t *p = (const uint8_t *)esp->path;
	assert_memory_equal(p, &dp, sizeof(dp) - 4); /* the parent's path, then HD(1,GPT,...) */
	const HARDDRIVE_DEVICE_PATH *hd = (const void *)(p + sizeof(dp) - 4);
	assert_int_equal(hd->Header.Type, MEDIA_DEVICE_PATH);
	assert_int_equal(hd->Header.SubType, MEDIA_HARDDRIVE_DP);
	assert_int_equal(hd->PartitionNumber, 1);
	assert_int_equal(hd->PartitionStart, ESP_START);
	assert_int_equal(hd->PartitionSize, ESP_BLOCKS);
	void *iface;
	assert_int_equal(efi_db_handle_protocol(&db, esp->handle, &esp_guid, &iface, NULL), EFI_SUCCESS);
	assert_int_equal(efi_db_handle_protocol(&db, other->handle, &esp_guid, &iface, NULL), EFI_UNSUPPORTED);
	EFI_PARTITION_INFO_PROTOCOL *pi;
	assert_int_equal(efi_db_handle_protocol(&db, esp->handle, &pi_guid, (void **)&pi, NULL), EFI_SUCCESS);
	assert_int_equal(pi->Type, PARTITION_TYPE_GPT);
	assert_int_equal(pi->System, 1);
	assert_int_equal(pi->Info.Gpt.starting_lba, ESP_START);

	/* DiskIo at byte granularity on the partition, head and tail through the bounce block. */
	EFI_DISK_IO_PROTOCOL *dio;
	assert_int_equal(efi_db_handle_protocol(&db, esp->handle, &dio_guid, (void **)&dio, NULL), EFI_SUCCESS);
	static uint8_t buf[300000];
	assert_int_equal(dio->ReadDisk(dio, 7, 3, 5000, buf), EFI_SUCCESS);
	assert_memory_equal(buf, data + ESP_START * 512 + 3, 5000);
	assert_int_equal(dio->ReadDisk(dio, 8, 3, 5000, buf), EFI_MEDIA_CHANGED);
	assert_int_equal(dio->ReadDisk(dio, 7, (uint64_t)ESP_BLOCKS * 512 - 10, 11, buf), EFI_INVALID_PARAMETER);
	EFI_BLOCK_IO_PROTOCOL *pbio;
	assert_int_equal(efi_db_handle_protocol(&db, esp->handle, &bio_guid, (void **)&pbio, NULL), EFI_SUCCESS);
	assert_int_equal(pbio->ReadBlocks(pbio, 7, ESP_BLOCKS, 512, buf), EFI_INVALID_PARAMETER);
	assert_int_equal(pbio->Media->LastBlock, ESP_BLOCKS - 1);
	assert_true(pbio->Media->LogicalPartition);

	/* Files. */
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *sfs;
	assert_int_equal(efi_db_handle_protocol(&db, esp->handle, &sfs_guid, (void **)&sfs, NULL), EFI_SUCCESS);
	EFI_FILE_PROTOCOL *root;
	assert_int_equal(sfs->OpenVolume(sfs, &root), EFI_SUCCESS);
	EFI_FILE_PROTOCOL *f = open_file(root, "\\EFI\\.\\BOOT\\..\\BOOT\\hello.txt", EFI_FILE_MODE_READ, 0, EFI_SUCCESS);
	UINTN n = sizeof(buf);
	assert_int_equal(f->Read(f, &n, buf), EFI_SUCCESS);
	assert_int_equal(n, 6);
	assert_memory_equal(buf, "hello\n", 6);
	n = 8;
	assert_int_equal(f->GetInfo(f, (EFI_GUID *)&fi_guid, &n, buf), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(n, sizeof(EFI_FILE_INFO) + 10 * 2);
	assert_int_equal(f->GetInfo(f, (EFI_GUID *)&fi_guid, &n, buf), EFI_SUCCESS);
	assert_int_equal(((EFI_FILE_INFO *)buf)->FileSize, 6);
	CHAR16 want[16];
	u16s(want, "HELLO.TXT");
	assert_memory_equal(((EFI_FILE_INFO *)buf)->FileName, want, 20);
	n = 1;
	assert_int_equal(f->Write(f, &n, buf), EFI_ACCESS_DENIED);
	assert_int_equal(f->Close(f), EFI_SUCCESS);
	open_file(root, "\\EFI\\nothere.txt", EFI_FILE_MODE_READ, 0, EFI_NOT_FOUND);
	open_file(root, "\\EFI\\nothere.txt", EFI_FILE_MODE_CREATE, 0, EFI_INVALID_PARAMETER);

	/* A new directory and a file in it, written in pieces, read back, truncated. */
	EFI_FILE_PROTOCOL *d = open_file(root, "\\EFI\\gen2vm\\", EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE | EFI_FILE_MODE_CREATE,
					 EFI_FILE_DIRECTORY, EFI_SUCCESS);
	f = open_file(d, "Boot Log.txt", EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE | EFI_FILE_MODE_CREATE, 0, EFI_SUCCESS);
	for (size_t k = 0; k < sizeof(buf); k++)
		buf[k] = (uint8_t)(k * 13 + k / 509);
	UINTN parts[3] = { 1, 100000, 199999 };
	uint8_t *at = buf;
	for (int k = 0; k < 3; k++) {
		n = parts[k];
		assert_int_equal(f->Write(f, &n, at), EFI_SUCCESS);
		assert_int_equal(n, parts[k]);
		at += n;
	}
	uint64_t pos;
	assert_int_equal(f->GetPosition(f, &pos), EFI_SUCCESS);
	assert_int_equal(pos, 300000);
	assert_int_equal(f->SetPosition(f, 0), EFI_SUCCESS);
	static uint8_t back[300000];
	n = sizeof(back);
	assert_int_equal(f->Read(f, &n, back), EFI_SUCCESS);
	assert_int_equal(n, 300000);
	assert_memory_equal(back, buf, n);
	n = sizeof(back);
	assert_int_equal(f->GetInfo(f, (EFI_GUID *)&fi_guid, &n, back), EFI_SUCCESS);
	EFI_FILE_INFO *fi = (EFI_FILE_INFO *)back;
	assert_int_equal(fi->FileSize, 300000);
	fi->FileSize = 1000;
	assert_int_equal(f->SetInfo(f, (EFI_GUID *)&fi_guid, n, fi), EFI_SUCCESS);
	u16s(fi->FileName, "Renamed.txt");
	fi->Size = sizeof(*fi) + 12 * 2;
	assert_int_equal(f->SetInfo(f, (EFI_GUID *)&fi_guid, fi->Size, fi), EFI_ACCESS_DENIED);
	assert_int_equal(f->Close(f), EFI_SUCCESS);
	f = open_file(root, "efi\\GEN2VM\\boot log.TXT", EFI_FILE_MODE_READ, 0, EFI_SUCCESS);
	n = sizeof(back);
	assert_int_equal(f->Read(f, &n, back), EFI_SUCCESS);
	assert_int_equal(n, 1000);
	assert_memory_equal(back, buf, 1000);
	f->Close(f);

	/* Directory listing: EFI_FILE_INFO records, one per Read, then 0 bytes at the end. */
	UINTN small = 10;
	assert_int_equal(d->Read(d, &small, back), EFI_BUFFER_TOO_SMALL);
	unsigned entries = 0;
	for (;;) {
		n = sizeof(back);
		assert_int_equal(d->Read(d, &n, back), EFI_SUCCESS);
		if (!n)
			break;
		entries++;
		u16s(want, "Boot Log.txt");
		assert_memory_equal(((EFI_FILE_INFO *)back)->FileName, want, 26);
	}
	assert_int_equal(entries, 1);
	d->Close(d);

	/* Delete: read-only handles cannot, read-write ones can. */
	f = open_file(root, "\\EFI\\BOOT\\HELLO.TXT", EFI_FILE_MODE_READ, 0, EFI_SUCCESS);
	assert_int_equal(f->Delete(f), EFI_WARN_DELETE_FAILURE);
	f = open_file(root, "\\EFI\\BOOT\\HELLO.TXT", EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE, 0, EFI_SUCCESS);
	assert_int_equal(f->Delete(f), EFI_SUCCESS);
	open_file(root, "\\EFI\\BOOT\\HELLO.TXT", EFI_FILE_MODE_READ, 0, EFI_NOT_FOUND);

	n = sizeof(back);
	assert_int_equal(root->GetInfo(root, (EFI_GUID *)&fsi_guid, &n, back), EFI_SUCCESS);
	EFI_FILE_SYSTEM_INFO *fsi = (EFI_FILE_SYSTEM_INFO *)back;
	assert_false(fsi->ReadOnly);
	assert_true(fsi->FreeSpace > 30000000ull && fsi->FreeSpace < fsi->VolumeSize);
	u16s(want, "GEN2VM-ESP");
	assert_memory_equal(fsi->VolumeLabel, want, 22);
	assert_int_equal(root->Close(root), EFI_SUCCESS);
	assert_true(rd.flushes > 0);

	/* fsck.fat finds nothing to fix; mtools reads what we wrote. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s/out.img", dir);
	FILE *o = fopen(cmd, "wb");
	assert_non_null(o);
	assert_int_equal(fwrite(data + ESP_START * 512, 512, ESP_BLOCKS, o), ESP_BLOCKS);
	fclose(o);
	snprintf(cmd, sizeof(cmd), "%s/log.txt", dir);
	o = fopen(cmd, "wb");
	fwrite(buf, 1, 1000, o);
	fclose(o);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && fsck.fat -n out.img >fsck.out 2>&1 && ! grep -qiE 'differ|wrong|lost|free cluster|invalid' fsck.out && "
		 "MTOOLS_SKIP_CHECK=1 mcopy -n -i out.img '::EFI/gen2vm/Boot Log.txt' got.txt && cmp -s got.txt log.txt && "
		 "MTOOLS_SKIP_CHECK=1 mdir -i out.img ::EFI/gen2vm | grep -q '2026-11-22' || "
		 "{ cat fsck.out; exit 1; }",
		 dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partitions_and_files),
	};
	return cmocka_run_group_tests_name("fw_storage", tests, NULL, NULL);
}
