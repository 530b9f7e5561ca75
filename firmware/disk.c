/* DiskIo on every BlockIo handle and the partition driver: efi_part_scan (El Torito on 2048-byte
 * media, GPT behind a protective MBR, MBR) gives one child handle per partition with the parent's
 * device path plus an HD()/CDROM() node, an offset-shifted range-checked BlockIo, DiskIo,
 * PartitionInfo and, on an EFI system partition, the ESP type GUID as a NULL protocol (as EDK2 does,
 * for loaders that look). File systems are mounted on the children, or on the whole device when it
 * has no partition table (a superfloppy).
 */
#include "storage.h"

#include "efi/efi_devpath.h"
#include "efi/efi_fmt.h"

#define DISK_MAX_PARTS 16u

struct disk_io {
	EFI_DISK_IO_PROTOCOL dio;
	EFI_BLOCK_IO_PROTOCOL *bio;
};

struct disk_part {
	EFI_BLOCK_IO_PROTOCOL bio;
	EFI_BLOCK_IO_MEDIA media;
	struct disk_io dio;
	EFI_PARTITION_INFO_PROTOCOL info;
	EFI_BLOCK_IO_PROTOCOL *parent;
	uint64_t start, blocks;
	struct fw_stor_dev dev;
	uint8_t path[]; /* parent path + partition node + end */
};

static struct fw_stor_dev *stor_head, **stor_tail = &stor_head;

/* Head and tail blocks of unaligned DiskIo requests; one request at a time. */
static uint8_t disk_bounce[4096] __attribute__((aligned(4096)));
static uint8_t disk_scratch[4096] __attribute__((aligned(4096)));

struct fw_stor_dev *fw_storage_devices(void)
{
	return stor_head;
}

void fw_storage_add(struct fw_stor_dev *d)
{
	d->next = NULL;
	*stor_tail = d;
	stor_tail = &d->next;
}

/* ---- DiskIo ---- */

static EFI_STATUS disk_io(struct disk_io *d, uint32_t media_id, uint64_t off, UINTN size, void *buf, bool write)
{
	EFI_BLOCK_IO_PROTOCOL *b = d->bio;
	EFI_BLOCK_IO_MEDIA *m = b->Media;
	if (!m->MediaPresent)
		return EFI_NO_MEDIA;
	if (media_id != m->MediaId)
		return EFI_MEDIA_CHANGED;
	if (write && m->ReadOnly)
		return EFI_WRITE_PROTECTED;
	uint32_t bs = m->BlockSize;
	uint64_t dev_bytes = (m->LastBlock + 1) * bs;
	if (off > dev_bytes || size > dev_bytes - off)
		return EFI_INVALID_PARAMETER;
	uint8_t *p = buf;
	while (size) {
		uint64_t lba = off / bs;
		uint32_t in = (uint32_t)(off % bs);
		EFI_STATUS s;
		if (!in && size >= bs) {
			/* The aligned middle: straight between the device and the caller's buffer. */
			UINTN n = size / bs * bs;
			s = write ? b->WriteBlocks(b, media_id, lba, n, p) : b->ReadBlocks(b, media_id, lba, n, p);
			if (EFI_ERROR(s))
				return s;
			p += n;
			off += n;
			size -= n;
			continue;
		}
		UINTN n = bs - in < size ? bs - in : size;
		s = b->ReadBlocks(b, media_id, lba, bs, disk_bounce);
		if (EFI_ERROR(s))
			return s;
		if (write) {
			efi_memcpy(disk_bounce + in, p, n);
			s = b->WriteBlocks(b, media_id, lba, bs, disk_bounce);
			if (EFI_ERROR(s))
				return s;
		} else {
			efi_memcpy(p, disk_bounce + in, n);
		}
		p += n;
		off += n;
		size -= n;
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI disk_read(EFI_DISK_IO_PROTOCOL *This, uint32_t MediaId, uint64_t Offset, UINTN BufferSize,
				   void *Buffer)
{
	if (BufferSize && !Buffer)
		return EFI_INVALID_PARAMETER;
	return disk_io((struct disk_io *)This, MediaId, Offset, BufferSize, Buffer, false);
}

static EFI_STATUS EFIAPI disk_write(EFI_DISK_IO_PROTOCOL *This, uint32_t MediaId, uint64_t Offset, UINTN BufferSize,
				    void *Buffer)
{
	if (BufferSize && !Buffer)
		return EFI_INVALID_PARAMETER;
	return disk_io((struct disk_io *)This, MediaId, Offset, BufferSize, Buffer, true);
}

static void disk_io_init(struct disk_io *d, EFI_BLOCK_IO_PROTOCOL *bio)
{
	d->dio.Revision = EFI_DISK_IO_PROTOCOL_REVISION;
	d->dio.ReadDisk = disk_read;
	d->dio.WriteDisk = disk_write;
	d->bio = bio;
}

/* ---- partition BlockIo ---- */

static EFI_STATUS part_check(struct disk_part *p, uint32_t media_id, EFI_LBA lba, UINTN size)
{
	EFI_BLOCK_IO_MEDIA *pm = p->parent->Media;
	/* The child's media follows the parent's (a DVD can change under us). */
	p->media.MediaPresent = pm->MediaPresent;
	p->media.MediaId = pm->MediaId;
	if (!pm->MediaPresent)
		return EFI_NO_MEDIA;
	if (media_id != pm->MediaId)
		return EFI_MEDIA_CHANGED;
	if (size % p->media.BlockSize)
		return EFI_BAD_BUFFER_SIZE;
	uint64_t n = size / p->media.BlockSize;
	if (lba >= p->blocks || n > p->blocks - lba)
		return EFI_INVALID_PARAMETER;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI part_reset(EFI_BLOCK_IO_PROTOCOL *This, BOOLEAN ext)
{
	struct disk_part *p = (struct disk_part *)This;
	return p->parent->Reset(p->parent, ext);
}

static EFI_STATUS EFIAPI part_read(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba, UINTN BufferSize,
				   void *Buffer)
{
	struct disk_part *p = (struct disk_part *)This;
	EFI_STATUS s = part_check(p, MediaId, Lba, BufferSize);
	if (EFI_ERROR(s))
		return s;
	return BufferSize ? p->parent->ReadBlocks(p->parent, MediaId, Lba + p->start, BufferSize, Buffer) : EFI_SUCCESS;
}

static EFI_STATUS EFIAPI part_write(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba, UINTN BufferSize,
				    void *Buffer)
{
	struct disk_part *p = (struct disk_part *)This;
	EFI_STATUS s = part_check(p, MediaId, Lba, BufferSize);
	if (EFI_ERROR(s))
		return s;
	if (p->media.ReadOnly)
		return EFI_WRITE_PROTECTED;
	return BufferSize ? p->parent->WriteBlocks(p->parent, MediaId, Lba + p->start, BufferSize, Buffer) : EFI_SUCCESS;
}

static EFI_STATUS EFIAPI part_flush(EFI_BLOCK_IO_PROTOCOL *This)
{
	struct disk_part *p = (struct disk_part *)This;
	return p->parent->FlushBlocks(p->parent);
}

static bool part_is_esp(const struct efi_part *e)
{
	static const EFI_GUID esp = EFI_PART_TYPE_EFI_SYSTEM_PART_GUID;
	if (e->kind == EFI_PART_GPT)
		return efi_guid_eq(&e->type_guid, &esp);
	if (e->kind == EFI_PART_MBR)
		return e->mbr_type == MBR_TYPE_EFI_SYSTEM;
	return e->kind == EFI_PART_ELTORITO; /* an El Torito EFI image is the ESP of the medium */
}

static struct disk_part *part_add(struct fw_stor_dev *d, const struct efi_part *e)
{
	int64_t plen = efi_dp_len(d->path, 4096);
	if (plen < 0)
		return NULL;
	struct disk_part *p = fw_stor_zalloc(sizeof(*p) + (size_t)plen + sizeof(HARDDRIVE_DEVICE_PATH) + 4);
	if (!p)
		return NULL;
	EFI_BLOCK_IO_MEDIA *pm = d->bio->Media;
	p->parent = d->bio;
	p->start = e->start;
	p->blocks = e->blocks;
	p->media = *pm;
	p->media.LogicalPartition = 1;
	p->media.LastBlock = e->blocks - 1;
	p->media.LowestAlignedLba = 0;
	p->bio.Revision = EFI_BLOCK_IO_PROTOCOL_REVISION3;
	p->bio.Media = &p->media;
	p->bio.Reset = part_reset;
	p->bio.ReadBlocks = part_read;
	p->bio.WriteBlocks = part_write;
	p->bio.FlushBlocks = part_flush;
	disk_io_init(&p->dio, &p->bio);
	bool esp = part_is_esp(e);
	p->info.Revision = EFI_PARTITION_INFO_PROTOCOL_REVISION;
	p->info.System = esp;
	if (e->kind == EFI_PART_GPT) {
		p->info.Type = PARTITION_TYPE_GPT;
		p->info.Info.Gpt.partition_type_guid = e->type_guid;
		efi_memcpy(&p->info.Info.Gpt.unique_partition_guid, e->signature, 16);
		p->info.Info.Gpt.starting_lba = e->start;
		p->info.Info.Gpt.ending_lba = e->start + e->blocks - 1;
		p->info.Info.Gpt.attributes = e->attributes;
	} else if (e->kind == EFI_PART_MBR) {
		p->info.Type = PARTITION_TYPE_MBR;
		p->info.Info.Mbr.os_type = e->mbr_type;
		p->info.Info.Mbr.starting_lba = (uint32_t)e->start;
		p->info.Info.Mbr.size_in_lba = (uint32_t)e->blocks;
	} else {
		p->info.Type = PARTITION_TYPE_OTHER;
	}
	uint8_t *path = p->path;
	efi_memcpy(path, d->path, (size_t)plen);
	size_t nl = efi_part_devpath_node(e, path + plen);
	efi_dp_set_end((EFI_DEVICE_PATH_PROTOCOL *)(path + plen + nl));

	static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID, bio_guid = EFI_BLOCK_IO_PROTOCOL_GUID,
			      dio_guid = EFI_DISK_IO_PROTOCOL_GUID, pi_guid = EFI_PARTITION_INFO_PROTOCOL_GUID,
			      esp_guid = EFI_PART_TYPE_EFI_SYSTEM_PART_GUID;
	const EFI_GUID *guids[5] = { &dp_guid, &bio_guid, &dio_guid, &pi_guid, &esp_guid };
	void *ifaces[5] = { path, &p->bio, &p->dio, &p->info, NULL };
	EFI_HANDLE h = NULL;
	EFI_STATUS s = fw_stor_install(&h, esp ? 5 : 4, guids, ifaces);
	if (EFI_ERROR(s)) {
		fw_stor_free(p);
		return NULL;
	}
	p->dev.handle = h;
	p->dev.kind = FW_STOR_PARTITION;
	p->dev.dvd = d->dvd;
	p->dev.esp = esp;
	p->dev.target = d->target;
	p->dev.lun = d->lun;
	p->dev.path = (EFI_DEVICE_PATH_PROTOCOL *)path;
	p->dev.bio = &p->bio;
	p->dev.parent = d;
	p->dev.part = *e;
	fw_storage_add(&p->dev);
	return p;
}

static EFI_STATUS disk_blk_read(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	EFI_BLOCK_IO_PROTOCOL *b = ctx;
	return b->ReadBlocks(b, b->Media->MediaId, lba, (UINTN)count * b->Media->BlockSize, buf);
}

/* Appends text to the summary line, truncating. */
static void line_add(char *line, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void line_add(char *line, size_t cap, const char *fmt, ...)
{
	size_t n = 0;
	while (n < cap && line[n])
		n++;
	if (n + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(line + n, cap - n, fmt, ap);
	va_end(ap);
}

EFI_STATUS fw_disk_attach(struct fw_stor_dev *d, const char *what)
{
	static struct disk_io *dio;
	char line[256];
	line[0] = 0;
	line_add(line, sizeof(line), "storage: %s", what);
	dio = fw_stor_zalloc(sizeof(*dio));
	if (dio) {
		disk_io_init(dio, d->bio);
		static const EFI_GUID dio_guid = EFI_DISK_IO_PROTOCOL_GUID;
		const EFI_GUID *g[1] = { &dio_guid };
		void *i[1] = { &dio->dio };
		EFI_HANDLE h = d->handle;
		if (EFI_ERROR(fw_stor_install(&h, 1, g, i)))
			fw_stor_free(dio);
	}
	EFI_BLOCK_IO_MEDIA *m = d->bio->Media;
	if (!m->MediaPresent) {
		fw_printf("%s\n", line);
		return EFI_NO_MEDIA;
	}
	struct efi_blk blk = { .block_size = m->BlockSize, .num_blocks = m->LastBlock + 1, .read = disk_blk_read,
			       .ctx = d->bio };
	struct efi_part parts[DISK_MAX_PARTS];
	uint32_t n = 0;
	EFI_STATUS s = efi_part_scan(&blk, disk_scratch, sizeof(disk_scratch), parts, DISK_MAX_PARTS, &n);
	char desc[64];
	if (s == EFI_NOT_FOUND) {
		desc[0] = 0;
		EFI_STATUS fs = fw_fs_attach(d, desc, sizeof(desc));
		if (fs == EFI_UNSUPPORTED)
			line_add(line, sizeof(line), ", no partition table, no file system");
		else
			line_add(line, sizeof(line), ", no partition table, %s volume", desc);
		fw_printf("%s\n", line);
		return EFI_SUCCESS;
	}
	if (EFI_ERROR(s)) {
		line_add(line, sizeof(line), ", partition table unreadable (0x%llx)", (unsigned long long)s);
		fw_printf("%s\n", line);
		return s;
	}
	const char *kind = n == 0 ? "empty partition table"
			   : parts[0].kind == EFI_PART_GPT ? "GPT"
			   : parts[0].kind == EFI_PART_MBR ? "MBR"
							   : "El Torito";
	line_add(line, sizeof(line), ", %s", kind);
	if (n != 1 || parts[0].kind != EFI_PART_ELTORITO)
		line_add(line, sizeof(line), ", %u partition%s", n, n == 1 ? "" : "s");
	for (uint32_t i = 0; i < n; i++) {
		struct disk_part *p = part_add(d, &parts[i]);
		if (!p) {
			line_add(line, sizeof(line), ", #%u not installed", parts[i].number);
			continue;
		}
		desc[0] = 0;
		EFI_STATUS fs = fw_fs_attach(&p->dev, desc, sizeof(desc));
		if (fs == EFI_UNSUPPORTED && !p->dev.esp)
			continue;
		if (parts[i].kind == EFI_PART_ELTORITO)
			line_add(line, sizeof(line), ", %s%s", fs == EFI_UNSUPPORTED ? "no file system" : desc,
				 fs == EFI_UNSUPPORTED || EFI_ERROR(fs) ? "" : " volume");
		else
			line_add(line, sizeof(line), ", %s%s", p->dev.esp ? "ESP " : "",
				 fs == EFI_UNSUPPORTED ? "no file system" : desc);
	}
	fw_printf("%s\n", line);
	return EFI_SUCCESS;
}
