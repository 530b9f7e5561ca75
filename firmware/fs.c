/* EFI_SIMPLE_FILE_SYSTEM_PROTOCOL and EFI_FILE_PROTOCOL (revision 1; the revision 2 Ex functions
 * answer EFI_UNSUPPORTED) over guestlib's FAT driver, on every storage handle whose volume mounts.
 *
 * Reads go cluster by cluster straight into the caller's buffer (no copy for block-aligned parts).
 * Writes are write-through (efi_fat.c); Flush and Close write the FSInfo hint and flush the device.
 * Entries written get the VM's wall clock as of the Open for writing (FW_OP_TIME_GET). Not supported:
 * renaming through SetInfo (EFI_ACCESS_DENIED), setting the volume label, the
 * times in EFI_FILE_INFO (zero). Two handles on one file do not see each other's size changes.
 */
#include "storage.h"
#include "net.h"

#include "conio.h"

#include "efi/efi_fat.h"
#include "efi/efi_fmt.h"

struct fs_vol {
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL sfs;
	EFI_BLOCK_IO_PROTOCOL *bio;
	bool ro;
	struct efi_blk blk;
	struct efi_fat fat;
};

struct fs_file {
	EFI_FILE_PROTOCOL p;
	struct fs_vol *v;
	struct efi_fat_node node;
	uint64_t pos;        /* files: byte position; directories: readdir cookie */
	bool writable;       /* opened with EFI_FILE_MODE_WRITE */
};

static EFI_STATUS fs_blk_read(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	EFI_BLOCK_IO_PROTOCOL *b = ctx;
	return b->ReadBlocks(b, b->Media->MediaId, lba, (UINTN)count * b->Media->BlockSize, buf);
}

static EFI_STATUS fs_blk_write(void *ctx, uint64_t lba, uint32_t count, const void *buf)
{
	EFI_BLOCK_IO_PROTOCOL *b = ctx;
	return b->WriteBlocks(b, b->Media->MediaId, lba, (UINTN)count * b->Media->BlockSize, (void *)buf);
}

static bool fs_is_dir(const struct fs_file *f)
{
	return f->node.is_root || (f->node.attr & FAT_ATTR_DIRECTORY);
}

static const EFI_FILE_PROTOCOL fs_file_proto;

static struct fs_file *fs_file_new(struct fs_vol *v, const struct efi_fat_node *n)
{
	struct fs_file *f = fw_stor_zalloc(sizeof(*f));
	if (!f)
		return NULL;
	f->p = fs_file_proto;
	f->v = v;
	f->node = *n;
	return f;
}

/* Stamps the volume's clock (what new and written entries get) from the VM's wall clock. */
static void fs_vol_clock(struct fs_vol *v)
{
	struct fw_time_req t = { .hdr = { FW_OP_TIME_GET, sizeof(t), 0 } };
	if (EFI_ERROR(fw_host_call(&t)) || t.year < 1980 || t.year > 2107 || !t.month || t.month > 12 || !t.day ||
	    t.day > 31 || t.hour > 23 || t.minute > 59 || t.second > 59)
		return;
	v->fat.date = (uint16_t)((t.year - 1980) << 9 | t.month << 5 | t.day);
	v->fat.time = (uint16_t)(t.hour << 11 | t.minute << 5 | t.second / 2);
}

static bool fs_is_sep(CHAR16 c)
{
	return c == '\\' || c == '/';
}

static EFI_STATUS EFIAPI fs_open(EFI_FILE_PROTOCOL *This, EFI_FILE_PROTOCOL **NewHandle, CHAR16 *FileName,
				 uint64_t OpenMode, uint64_t Attributes)
{
	struct fs_file *f = (struct fs_file *)This;
	if (!NewHandle || !FileName)
		return EFI_INVALID_PARAMETER;
	if (OpenMode != EFI_FILE_MODE_READ && OpenMode != (EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE) &&
	    OpenMode != (EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE | EFI_FILE_MODE_CREATE))
		return EFI_INVALID_PARAMETER;
	if (!fs_is_dir(f))
		return EFI_NOT_FOUND;
	struct fs_vol *v = f->v;
	bool write = OpenMode & EFI_FILE_MODE_WRITE;
	if (write && v->ro)
		return EFI_WRITE_PROTECTED;
	if (write)
		fs_vol_clock(v);
	const struct efi_fat_node *base = f->node.is_root ? NULL : &f->node;
	struct efi_fat_node n;
	EFI_STATUS s = efi_fat_lookup(&v->fat, base, FileName, &n);
	if (s == EFI_NOT_FOUND && (OpenMode & EFI_FILE_MODE_CREATE)) {
		/* Create the last component in the directory the rest of the path names. */
		size_t len = efi_strnlen16(FileName, 4096), last = len, i = 0;
		while (last && fs_is_sep(FileName[last - 1]))
			last--;
		size_t end = last;
		while (last && !fs_is_sep(FileName[last - 1]))
			last--;
		CHAR16 name[EFI_FAT_NAME_MAX + 1];
		if (end == last || end - last > EFI_FAT_NAME_MAX)
			return EFI_INVALID_PARAMETER;
		for (i = 0; i < end - last; i++)
			name[i] = FileName[last + i];
		name[i] = 0;
		if ((name[0] == '.' && !name[1]) || (name[0] == '.' && name[1] == '.' && !name[2]))
			return EFI_INVALID_PARAMETER;
		struct efi_fat_node dir;
		if (last) {
			CHAR16 *prefix = fw_stor_zalloc((last + 1) * sizeof(CHAR16));
			if (!prefix)
				return EFI_OUT_OF_RESOURCES;
			efi_memcpy(prefix, FileName, last * sizeof(CHAR16));
			s = efi_fat_lookup(&v->fat, base, prefix, &dir);
			fw_stor_free(prefix);
			if (EFI_ERROR(s))
				return s;
		} else {
			dir = f->node;
		}
		if (!(dir.attr & FAT_ATTR_DIRECTORY))
			return EFI_NOT_FOUND;
		uint8_t attr = (uint8_t)(Attributes & (EFI_FILE_READ_ONLY | 0x02 | 0x04 | EFI_FILE_DIRECTORY | 0x20));
		s = efi_fat_create(&v->fat, &dir, name, attr, &n);
		if (EFI_ERROR(s))
			return s;
	} else if (EFI_ERROR(s)) {
		return s;
	} else if (write && (n.attr & FAT_ATTR_READ_ONLY) && !(n.attr & FAT_ATTR_DIRECTORY)) {
		return EFI_ACCESS_DENIED;
	}
	struct fs_file *nf = fs_file_new(v, &n);
	if (!nf)
		return EFI_OUT_OF_RESOURCES;
	nf->writable = write;
	*NewHandle = &nf->p;
	return EFI_SUCCESS;
}

static EFI_STATUS fs_vol_flush(struct fs_vol *v)
{
	if (v->ro)
		return EFI_SUCCESS;
	EFI_STATUS s = efi_fat_flush(&v->fat);
	EFI_STATUS s2 = v->bio->FlushBlocks(v->bio);
	return EFI_ERROR(s) ? s : s2;
}

static EFI_STATUS EFIAPI fs_close(EFI_FILE_PROTOCOL *This)
{
	struct fs_file *f = (struct fs_file *)This;
	if (f->writable)
		fs_vol_flush(f->v);
	fw_stor_free(This);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_delete(EFI_FILE_PROTOCOL *This)
{
	struct fs_file *f = (struct fs_file *)This;
	EFI_STATUS s = f->writable ? efi_fat_delete(&f->v->fat, &f->node) : EFI_ACCESS_DENIED;
	if (!EFI_ERROR(s))
		fs_vol_flush(f->v);
	fw_stor_free(This);
	return EFI_ERROR(s) ? EFI_WARN_DELETE_FAILURE : EFI_SUCCESS;
}

/* EFI_FILE_INFO of a node into buf; EFI_BUFFER_TOO_SMALL with *size set to what it needs. */
static EFI_STATUS fs_file_info(struct fs_vol *v, const struct efi_fat_node *n, UINTN *size, void *buf)
{
	size_t name_len = n->is_root ? 0 : efi_strnlen16(n->name, EFI_FAT_NAME_MAX);
	UINTN need = sizeof(EFI_FILE_INFO) + (name_len + 1) * sizeof(CHAR16);
	if (*size < need || !buf) {
		*size = need;
		return EFI_BUFFER_TOO_SMALL;
	}
	EFI_FILE_INFO *fi = buf;
	efi_memset(fi, 0, sizeof(*fi));
	fi->Size = need;
	bool dir = n->is_root || (n->attr & FAT_ATTR_DIRECTORY);
	fi->FileSize = dir ? 0 : n->size;
	uint64_t cs = v->fat.cluster_size;
	fi->PhysicalSize = (fi->FileSize + cs - 1) / cs * cs;
	fi->Attribute = n->attr & (FAT_ATTR_READ_ONLY | FAT_ATTR_HIDDEN | FAT_ATTR_SYSTEM | FAT_ATTR_DIRECTORY |
				   FAT_ATTR_ARCHIVE);
	if (dir)
		fi->Attribute |= EFI_FILE_DIRECTORY;
	efi_memcpy(fi->FileName, n->name, name_len * sizeof(CHAR16));
	fi->FileName[name_len] = 0;
	*size = need;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_read(EFI_FILE_PROTOCOL *This, UINTN *BufferSize, void *Buffer)
{
	struct fs_file *f = (struct fs_file *)This;
	if (!BufferSize || (*BufferSize && !Buffer))
		return EFI_INVALID_PARAMETER;
	if (fs_is_dir(f)) {
		uint64_t cookie = f->pos;
		struct efi_fat_node n;
		EFI_STATUS s = efi_fat_readdir(&f->v->fat, f->node.is_root ? NULL : &f->node, &cookie, &n);
		if (s == EFI_NOT_FOUND) {
			*BufferSize = 0;
			return EFI_SUCCESS;
		}
		if (EFI_ERROR(s))
			return s;
		s = fs_file_info(f->v, &n, BufferSize, Buffer);
		if (!EFI_ERROR(s))
			f->pos = cookie;
		return s;
	}
	if (f->pos > f->node.size)
		return EFI_DEVICE_ERROR; /* UEFI 13.5: reading past the end after SetPosition beyond it */
	size_t len = *BufferSize;
	EFI_STATUS s = efi_fat_read(&f->v->fat, &f->node, f->pos, Buffer, &len);
	*BufferSize = len;
	f->pos += len;
	return s;
}

static EFI_STATUS EFIAPI fs_write(EFI_FILE_PROTOCOL *This, UINTN *BufferSize, void *Buffer)
{
	struct fs_file *f = (struct fs_file *)This;
	if (!BufferSize || (*BufferSize && !Buffer))
		return EFI_INVALID_PARAMETER;
	if (fs_is_dir(f)) {
		*BufferSize = 0;
		return EFI_UNSUPPORTED;
	}
	if (!f->writable) {
		*BufferSize = 0;
		return EFI_ACCESS_DENIED;
	}
	size_t len = *BufferSize;
	EFI_STATUS s = efi_fat_write(&f->v->fat, &f->node, f->pos, Buffer, &len);
	*BufferSize = len;
	f->pos += len;
	return s;
}

static EFI_STATUS EFIAPI fs_get_position(EFI_FILE_PROTOCOL *This, uint64_t *Position)
{
	struct fs_file *f = (struct fs_file *)This;
	if (!Position)
		return EFI_INVALID_PARAMETER;
	if (fs_is_dir(f))
		return EFI_UNSUPPORTED;
	*Position = f->pos;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_set_position(EFI_FILE_PROTOCOL *This, uint64_t Position)
{
	struct fs_file *f = (struct fs_file *)This;
	if (fs_is_dir(f)) {
		if (Position)
			return EFI_UNSUPPORTED;
		f->pos = 0;
		return EFI_SUCCESS;
	}
	f->pos = Position == ~0ull ? f->node.size : Position;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_get_info(EFI_FILE_PROTOCOL *This, EFI_GUID *InformationType, UINTN *BufferSize,
				     void *Buffer)
{
	static const EFI_GUID file_info = EFI_FILE_INFO_ID, fs_info = EFI_FILE_SYSTEM_INFO_ID,
			      label_id = EFI_FILE_SYSTEM_VOLUME_LABEL_ID;
	struct fs_file *f = (struct fs_file *)This;
	if (!InformationType || !BufferSize || (*BufferSize && !Buffer))
		return EFI_INVALID_PARAMETER;
	if (efi_guid_eq(InformationType, &file_info))
		return fs_file_info(f->v, &f->node, BufferSize, Buffer);
	CHAR16 label[12];
	size_t ll = 0;
	if ((efi_guid_eq(InformationType, &fs_info) || efi_guid_eq(InformationType, &label_id)) &&
	    !EFI_ERROR(efi_fat_label(&f->v->fat, label)))
		ll = efi_strnlen16(label, 11);
	else
		label[0] = 0;
	if (efi_guid_eq(InformationType, &fs_info)) {
		UINTN need = sizeof(EFI_FILE_SYSTEM_INFO) + (ll + 1) * sizeof(CHAR16);
		if (*BufferSize < need) {
			*BufferSize = need;
			return EFI_BUFFER_TOO_SMALL;
		}
		EFI_FILE_SYSTEM_INFO *i = Buffer;
		efi_memset(i, 0, sizeof(*i));
		efi_memcpy(i->VolumeLabel, label, (ll + 1) * sizeof(CHAR16));
		i->Size = need;
		uint32_t free_clusters = 0;
		efi_fat_free_clusters(&f->v->fat, &free_clusters); /* a FAT walk unless FSInfo knows */
		i->ReadOnly = f->v->ro;
		i->VolumeSize = (uint64_t)f->v->fat.clusters * f->v->fat.cluster_size;
		i->FreeSpace = (uint64_t)free_clusters * f->v->fat.cluster_size;
		i->BlockSize = f->v->fat.cluster_size;
		*BufferSize = need;
		return EFI_SUCCESS;
	}
	if (efi_guid_eq(InformationType, &label_id)) {
		UINTN need = (ll + 1) * sizeof(CHAR16);
		if (*BufferSize < need) {
			*BufferSize = need;
			return EFI_BUFFER_TOO_SMALL;
		}
		efi_memcpy(Buffer, label, need);
		*BufferSize = need;
		return EFI_SUCCESS;
	}
	return EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI fs_set_info(EFI_FILE_PROTOCOL *This, EFI_GUID *InformationType, UINTN BufferSize,
				     void *Buffer)
{
	static const EFI_GUID file_info = EFI_FILE_INFO_ID;
	struct fs_file *f = (struct fs_file *)This;
	if (!InformationType || !Buffer)
		return EFI_INVALID_PARAMETER;
	if (f->v->ro)
		return EFI_WRITE_PROTECTED;
	if (!efi_guid_eq(InformationType, &file_info))
		return EFI_UNSUPPORTED; /* the volume label and the file system info are not settable */
	EFI_FILE_INFO *fi = Buffer;
	if (BufferSize < sizeof(*fi) + sizeof(CHAR16) || fi->Size > BufferSize)
		return EFI_BAD_BUFFER_SIZE;
	if (!f->node.has_entry)
		return EFI_ACCESS_DENIED; /* the root */
	/* Renames are not supported: the name must stay (case-insensitively) what it is. */
	size_t max = (BufferSize - sizeof(*fi)) / sizeof(CHAR16);
	size_t nl = efi_strnlen16(fi->FileName, max);
	if (nl == max)
		return EFI_INVALID_PARAMETER;
	for (size_t i = 0; i <= nl; i++)
		if (efi_toupper16(fi->FileName[i]) != efi_toupper16(f->node.name[i]))
			return EFI_ACCESS_DENIED;
	bool dir = fs_is_dir(f);
	if (!!(fi->Attribute & EFI_FILE_DIRECTORY) != dir || (fi->Attribute & ~0x37ull))
		return EFI_ACCESS_DENIED;
	EFI_STATUS s = EFI_SUCCESS;
	if (!dir && fi->FileSize != f->node.size) {
		if (!f->writable)
			return EFI_ACCESS_DENIED;
		if (fi->FileSize > 0xffffffffull)
			return EFI_VOLUME_FULL;
		s = efi_fat_truncate(&f->v->fat, &f->node, fi->FileSize);
		if (EFI_ERROR(s))
			return s;
	}
	if ((uint8_t)fi->Attribute != (f->node.attr & 0x37))
		s = efi_fat_set_attr(&f->v->fat, &f->node, (uint8_t)fi->Attribute);
	return s;
}

static EFI_STATUS EFIAPI fs_flush(EFI_FILE_PROTOCOL *This)
{
	struct fs_file *f = (struct fs_file *)This;
	if (!f->writable)
		return EFI_ACCESS_DENIED;
	return fs_vol_flush(f->v);
}

static EFI_STATUS EFIAPI fs_open_ex(EFI_FILE_PROTOCOL *This, EFI_FILE_PROTOCOL **NewHandle, CHAR16 *FileName,
				    uint64_t OpenMode, uint64_t Attributes, EFI_FILE_IO_TOKEN *Token)
{
	(void)This, (void)NewHandle, (void)FileName, (void)OpenMode, (void)Attributes, (void)Token;
	return EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI fs_token_unsupported(EFI_FILE_PROTOCOL *This, EFI_FILE_IO_TOKEN *Token)
{
	(void)This, (void)Token;
	return EFI_UNSUPPORTED;
}

static const EFI_FILE_PROTOCOL fs_file_proto = {
	.Revision = EFI_FILE_PROTOCOL_REVISION,
	.Open = fs_open, .Close = fs_close, .Delete = fs_delete, .Read = fs_read, .Write = fs_write,
	.GetPosition = fs_get_position, .SetPosition = fs_set_position, .GetInfo = fs_get_info,
	.SetInfo = fs_set_info, .Flush = fs_flush, .OpenEx = fs_open_ex, .ReadEx = fs_token_unsupported,
	.WriteEx = fs_token_unsupported, .FlushEx = fs_token_unsupported,
};

static EFI_STATUS EFIAPI fs_open_volume(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *This, EFI_FILE_PROTOCOL **Root)
{
	struct fs_vol *v = (struct fs_vol *)This;
	if (!Root)
		return EFI_INVALID_PARAMETER;
	struct efi_fat_node n;
	efi_fat_root(&v->fat, &n);
	struct fs_file *f = fs_file_new(v, &n);
	if (!f)
		return EFI_OUT_OF_RESOURCES;
	*Root = &f->p;
	return EFI_SUCCESS;
}

EFI_STATUS fw_fs_attach(struct fw_stor_dev *d, char *desc, size_t desc_size)
{
	struct fs_vol *v = fw_stor_alloc(sizeof(*v)); /* efi_fat_mount initialises all but the caches */
	if (!v) {
		efi_snprintf(desc, desc_size, "out of memory");
		return EFI_OUT_OF_RESOURCES;
	}
	EFI_BLOCK_IO_MEDIA *m = d->bio->Media;
	efi_memset(v, 0, offsetof(struct fs_vol, fat));
	v->bio = d->bio;
	v->ro = m->ReadOnly;
	v->blk = (struct efi_blk){ .block_size = m->BlockSize, .num_blocks = m->LastBlock + 1, .read = fs_blk_read,
				   .write = v->ro ? NULL : fs_blk_write, .ctx = d->bio };
	EFI_STATUS s = efi_fat_mount(&v->fat, &v->blk, 0, m->LastBlock + 1);
	if (EFI_ERROR(s)) {
		fw_stor_free(v);
		if (s == EFI_VOLUME_CORRUPTED)
			efi_snprintf(desc, desc_size, "corrupt FAT (not mounted)");
		else if (s != EFI_UNSUPPORTED)
			efi_snprintf(desc, desc_size, "FAT unreadable (0x%llx)", (unsigned long long)s);
		return s;
	}
	v->sfs.Revision = 0x00010000ull;
	v->sfs.OpenVolume = fs_open_volume;
	static const EFI_GUID sfs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
	const EFI_GUID *g[1] = { &sfs_guid };
	void *i[1] = { &v->sfs };
	EFI_HANDLE h = d->handle;
	s = fw_stor_install(&h, 1, g, i);
	if (EFI_ERROR(s)) {
		efi_snprintf(desc, desc_size, "FAT%u not installed (0x%llx)", v->fat.type, (unsigned long long)s);
		fw_stor_free(v);
		return s;
	}
	d->has_fs = true;
	efi_snprintf(desc, desc_size, "FAT%u", v->fat.type);
	return EFI_SUCCESS;
}

/* ---- start-up ---- */


EFI_STATUS fw_storage_init(void)
{
	EFI_STATUS s = fw_vmbus_init();
	if (EFI_ERROR(s)) {
		fw_printf("storage: no VMBus (0x%llx): no disks\n", (unsigned long long)s);
		return s;
	}
	/* The screen and keyboard are VMBus devices too; first, so that what follows is shown. Without
	 * them (no --synthetic-console) the consoles stay COM1 and the debug console. */
	fw_video_init();
	fw_kbd_init();
	if (!fw_storvsc_init())
		fw_printf("storage: no SCSI disks or DVDs\n");
	if (fw_netvsc_init()) /* network adapters are VMBus devices too (net.h) */
		fw_pxe_init();
	return EFI_SUCCESS;
}
