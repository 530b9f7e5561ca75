/* EFI_SIMPLE_FILE_SYSTEM_PROTOCOL and EFI_FILE_PROTOCOL (revision 1; the revision 2 Ex functions
 * answer EFI_UNSUPPORTED) over guestlib's FAT driver, on every storage handle whose volume mounts.
 *
 * The FAT driver reads data cluster by cluster straight into the caller's buffer (no copy for
 * block-aligned parts). WRITES ARE NOT SUPPORTED YET: volumes report ReadOnly, Open with
 * EFI_FILE_MODE_WRITE/CREATE, Write, SetInfo answer EFI_WRITE_PROTECTED, Delete closes the handle and
 * answers EFI_WARN_DELETE_FAILURE.
 */
#include "storage.h"

#include "efi/efi_fat.h"
#include "efi/efi_fmt.h"

struct fs_vol {
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL sfs;
	EFI_BLOCK_IO_PROTOCOL *bio;
	struct efi_blk blk;
	struct efi_fat fat;
};

struct fs_file {
	EFI_FILE_PROTOCOL p;
	struct fs_vol *v;
	struct efi_fat_node node;
	uint64_t pos;        /* files: byte position; directories: readdir cookie */
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

static EFI_STATUS EFIAPI fs_open(EFI_FILE_PROTOCOL *This, EFI_FILE_PROTOCOL **NewHandle, CHAR16 *FileName,
				 uint64_t OpenMode, uint64_t Attributes)
{
	(void)Attributes;
	struct fs_file *f = (struct fs_file *)This;
	if (!NewHandle || !FileName)
		return EFI_INVALID_PARAMETER;
	if (OpenMode != EFI_FILE_MODE_READ && OpenMode != (EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE) &&
	    OpenMode != (EFI_FILE_MODE_READ | EFI_FILE_MODE_WRITE | EFI_FILE_MODE_CREATE))
		return EFI_INVALID_PARAMETER;
	if (!fs_is_dir(f))
		return EFI_NOT_FOUND;
	struct efi_fat_node n;
	EFI_STATUS s = efi_fat_lookup(&f->v->fat, f->node.is_root ? NULL : &f->node, FileName, &n);
	if (EFI_ERROR(s))
		return s == EFI_NOT_FOUND && (OpenMode & EFI_FILE_MODE_CREATE) ? EFI_WRITE_PROTECTED : s;
	if (OpenMode & EFI_FILE_MODE_WRITE)
		return EFI_WRITE_PROTECTED;
	struct fs_file *nf = fs_file_new(f->v, &n);
	if (!nf)
		return EFI_OUT_OF_RESOURCES;
	*NewHandle = &nf->p;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_close(EFI_FILE_PROTOCOL *This)
{
	fw_stor_free(This);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fs_delete(EFI_FILE_PROTOCOL *This)
{
	fw_stor_free(This);
	return EFI_WARN_DELETE_FAILURE;
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
	(void)Buffer;
	struct fs_file *f = (struct fs_file *)This;
	if (!BufferSize)
		return EFI_INVALID_PARAMETER;
	*BufferSize = 0;
	return fs_is_dir(f) ? EFI_UNSUPPORTED : EFI_WRITE_PROTECTED;
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
			      label = EFI_FILE_SYSTEM_VOLUME_LABEL_ID;
	struct fs_file *f = (struct fs_file *)This;
	if (!InformationType || !BufferSize || (*BufferSize && !Buffer))
		return EFI_INVALID_PARAMETER;
	if (efi_guid_eq(InformationType, &file_info))
		return fs_file_info(f->v, &f->node, BufferSize, Buffer);
	if (efi_guid_eq(InformationType, &fs_info)) {
		UINTN need = sizeof(EFI_FILE_SYSTEM_INFO) + sizeof(CHAR16);
		if (*BufferSize < need) {
			*BufferSize = need;
			return EFI_BUFFER_TOO_SMALL;
		}
		EFI_FILE_SYSTEM_INFO *i = Buffer;
		efi_memset(i, 0, need);
		i->Size = need;
		i->ReadOnly = 1;
		i->VolumeSize = (uint64_t)f->v->fat.clusters * f->v->fat.cluster_size;
		i->FreeSpace = 0; /* not counted: no writes yet */
		i->BlockSize = f->v->fat.cluster_size;
		*BufferSize = need;
		return EFI_SUCCESS;
	}
	if (efi_guid_eq(InformationType, &label)) {
		if (*BufferSize < sizeof(CHAR16)) {
			*BufferSize = sizeof(CHAR16);
			return EFI_BUFFER_TOO_SMALL;
		}
		*(CHAR16 *)Buffer = 0;
		*BufferSize = sizeof(CHAR16);
		return EFI_SUCCESS;
	}
	return EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI fs_set_info(EFI_FILE_PROTOCOL *This, EFI_GUID *InformationType, UINTN BufferSize,
				     void *Buffer)
{
	(void)This;
	(void)BufferSize;
	if (!InformationType || !Buffer)
		return EFI_INVALID_PARAMETER;
	return EFI_WRITE_PROTECTED;
}

static EFI_STATUS EFIAPI fs_flush(EFI_FILE_PROTOCOL *This)
{
	(void)This;
	return EFI_SUCCESS;
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
	struct fs_vol *v = fw_stor_zalloc(sizeof(*v));
	if (!v) {
		efi_snprintf(desc, desc_size, "out of memory");
		return EFI_OUT_OF_RESOURCES;
	}
	EFI_BLOCK_IO_MEDIA *m = d->bio->Media;
	v->bio = d->bio;
	v->blk = (struct efi_blk){ .block_size = m->BlockSize, .num_blocks = m->LastBlock + 1, .read = fs_blk_read,
				   .write = fs_blk_write, .ctx = d->bio };
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
		fw_stor_free(v);
		efi_snprintf(desc, desc_size, "FAT%u not installed (0x%llx)", v->fat.type, (unsigned long long)s);
		return s;
	}
	d->has_fs = true;
	efi_snprintf(desc, desc_size, "FAT%u", v->fat.type);
	return EFI_SUCCESS;
}

/* ---- start-up ---- */

void fw_stor_shim_init(void); /* storage_shim.c, TEMPORARY */

EFI_STATUS fw_storage_init(void)
{
	fw_stor_shim_init();
	EFI_STATUS s = fw_vmbus_init();
	if (EFI_ERROR(s)) {
		fw_printf("storage: no VMBus (0x%llx): no disks\n", (unsigned long long)s);
		return s;
	}
	if (!fw_storvsc_init())
		fw_printf("storage: no SCSI disks or DVDs\n");
	return EFI_SUCCESS;
}
