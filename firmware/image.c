/* Image services (UEFI 2.10 7.4): LoadImage from a buffer or a device path (SimpleFileSystem, else
 * LoadFile2/LoadFile), PE32+ through guestlib's efi_pe, StartImage/Exit with a saved context so that
 * Exit() from any call depth returns to StartImage's caller, UnloadImage; and the start of the image
 * the VMM placed in memory (--efi). */
#include "fw.h"

#include "efi/efi_devpath.h"
#include "efi/efi_pe.h"
#include "gen2vm/proto/fw_sec.h"

#define IMAGE_MAGIC 0x474d4946u /* "FIMG" */
#define PATH_MAX16 512

struct fw_image {
	uint32_t magic;
	bool started;
	uint16_t subsystem;
	EFI_HANDLE handle;
	EFI_LOADED_IMAGE_PROTOCOL li;
	EFI_DEVICE_PATH_PROTOCOL *full_path; /* LoadedImageDevicePath (pool; NULL when none) */
	EFI_PHYSICAL_ADDRESS alloc;
	uint64_t pages;
	EFI_IMAGE_ENTRY_POINT entry;
	struct fw_image *next;
	struct fw_image *caller; /* the image that was running when this one started */
	EFI_TPL start_tpl;
	uint64_t jb[8];          /* rbx rbp r12 r13 r14 r15 rsp rip at StartImage */
	EFI_STATUS exit_status;
	UINTN exit_size;
	CHAR16 *exit_data;
};

static struct fw_image fw_self, *images, *current;

static const EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static const EFI_GUID lidp_guid = EFI_LOADED_IMAGE_DEVICE_PATH_PROTOCOL_GUID;
static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static const EFI_GUID sfs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
static const EFI_GUID info_guid = EFI_FILE_INFO_ID;
static const EFI_GUID lf_guid = EFI_LOAD_FILE_PROTOCOL_GUID;
static const EFI_GUID lf2_guid = EFI_LOAD_FILE2_PROTOCOL_GUID;

/* A setjmp/longjmp pair for the SysV side of StartImage (callee-saved: rbx rbp r12-r15). */
uint64_t fw_image_setjmp(uint64_t *jb) __attribute__((returns_twice));
__attribute__((noreturn)) void fw_image_longjmp(uint64_t *jb);
__asm__(".text\n"
	".globl fw_image_setjmp\n.hidden fw_image_setjmp\n"
	"fw_image_setjmp:\n"
	"\tmov %rbx, 0(%rdi)\n\tmov %rbp, 8(%rdi)\n\tmov %r12, 16(%rdi)\n\tmov %r13, 24(%rdi)\n"
	"\tmov %r14, 32(%rdi)\n\tmov %r15, 40(%rdi)\n\tlea 8(%rsp), %rdx\n\tmov %rdx, 48(%rdi)\n"
	"\tmov (%rsp), %rdx\n\tmov %rdx, 56(%rdi)\n\txor %eax, %eax\n\tret\n"
	".globl fw_image_longjmp\n.hidden fw_image_longjmp\n"
	"fw_image_longjmp:\n"
	"\tmov 0(%rdi), %rbx\n\tmov 8(%rdi), %rbp\n\tmov 16(%rdi), %r12\n\tmov 24(%rdi), %r13\n"
	"\tmov 32(%rdi), %r14\n\tmov 40(%rdi), %r15\n\tmov 48(%rdi), %rsp\n\tcld\n"
	"\tmov $1, %eax\n\tjmp *56(%rdi)\n");

static struct fw_image *find(EFI_HANDLE h)
{
	if (!h)
		return NULL;
	for (struct fw_image *i = images; i; i = i->next)
		if (i->handle == h)
			return i;
	return NULL;
}

static EFI_DEVICE_PATH_PROTOCOL *dp_dup(const EFI_DEVICE_PATH_PROTOCOL *dp)
{
	int64_t len = efi_dp_len(dp, 64u << 10);
	if (len < 0)
		return NULL;
	EFI_DEVICE_PATH_PROTOCOL *c = fw_alloc((size_t)len + 4);
	if (c) {
		efi_memcpy(c, dp, (size_t)len);
		efi_dp_set_end((EFI_DEVICE_PATH_PROTOCOL *)((uint8_t *)c + len));
	}
	return c;
}

/* ---- reading the file a device path names ---- */

static EFI_STATUS read_from_fs(EFI_DEVICE_PATH_PROTOCOL *dp, void **buf, UINTN *size)
{
	EFI_DEVICE_PATH_PROTOCOL *rem = dp;
	EFI_HANDLE dev;
	if (EFI_ERROR(efi_db_locate_device_path(&fw.db, &sfs_guid, &rem, &dev)))
		return EFI_NOT_FOUND;
	CHAR16 path[PATH_MAX16];
	size_t n = 0;
	const uint8_t *p = (const uint8_t *)rem;
	for (unsigned nodes = 0; p[0] != END_DEVICE_PATH_TYPE; nodes++) {
		uint16_t len = efi_dp_node_len((const EFI_DEVICE_PATH_PROTOCOL *)p);
		if (p[0] != MEDIA_DEVICE_PATH || p[1] != MEDIA_FILEPATH_DP || len < 4 || nodes > 64)
			return EFI_NOT_FOUND;
		const CHAR16 *name = (const CHAR16 *)(p + 4);
		size_t chars = efi_strnlen16(name, (len - 4u) / 2);
		if (chars && n && path[n - 1] != '\\' && name[0] != '\\')
			path[n++] = '\\';
		if (n + chars + 1 > PATH_MAX16)
			return EFI_NOT_FOUND;
		efi_memcpy(&path[n], name, chars * 2);
		n += chars;
		p += len;
	}
	if (!n)
		return EFI_NOT_FOUND;
	path[n] = 0;
	EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *fs;
	EFI_FILE_PROTOCOL *root, *f;
	if (EFI_ERROR(efi_db_handle_protocol(&fw.db, dev, &sfs_guid, (void **)&fs, fw.image)) || !fs)
		return EFI_NOT_FOUND;
	EFI_STATUS s = fs->OpenVolume(fs, &root);
	if (EFI_ERROR(s))
		return s;
	s = root->Open(root, &f, path, EFI_FILE_MODE_READ, 0);
	root->Close(root);
	if (EFI_ERROR(s))
		return s;
	UINTN isz = 0;
	EFI_FILE_INFO *info = NULL;
	s = f->GetInfo(f, (EFI_GUID *)&info_guid, &isz, NULL);
	if (s == EFI_BUFFER_TOO_SMALL && isz >= sizeof(*info) && isz < 4096 && (info = fw_alloc(isz)))
		s = f->GetInfo(f, (EFI_GUID *)&info_guid, &isz, info);
	else if (!EFI_ERROR(s) || s == EFI_BUFFER_TOO_SMALL)
		s = EFI_OUT_OF_RESOURCES;
	uint64_t fsize = 0;
	if (!EFI_ERROR(s)) {
		fsize = info->FileSize;
		if (info->Attribute & EFI_FILE_DIRECTORY)
			s = EFI_NOT_FOUND;
		else if (!fsize || fsize > (1ull << 32))
			s = EFI_LOAD_ERROR;
	}
	fw_free(info);
	void *data = NULL;
	if (!EFI_ERROR(s) && !(data = fw_alloc(fsize)))
		s = EFI_OUT_OF_RESOURCES;
	if (!EFI_ERROR(s)) {
		UINTN got = fsize;
		s = f->Read(f, &got, data);
		if (!EFI_ERROR(s) && got != fsize)
			s = EFI_LOAD_ERROR;
	}
	f->Close(f);
	if (EFI_ERROR(s)) {
		fw_free(data);
		return s;
	}
	*buf = data;
	*size = fsize;
	return EFI_SUCCESS;
}

static EFI_STATUS read_from_load_file(const EFI_GUID *guid, EFI_DEVICE_PATH_PROTOCOL *dp, BOOLEAN boot_policy,
				      void **buf, UINTN *size)
{
	EFI_DEVICE_PATH_PROTOCOL *rem = dp;
	EFI_HANDLE dev;
	EFI_LOAD_FILE_PROTOCOL *lf;
	if (EFI_ERROR(efi_db_locate_device_path(&fw.db, guid, &rem, &dev)) ||
	    EFI_ERROR(efi_db_handle_protocol(&fw.db, dev, guid, (void **)&lf, fw.image)) || !lf)
		return EFI_NOT_FOUND;
	UINTN n = 0;
	EFI_STATUS s = lf->LoadFile(lf, rem, boot_policy, &n, NULL);
	if (s != EFI_BUFFER_TOO_SMALL)
		return EFI_ERROR(s) ? s : EFI_LOAD_ERROR;
	void *data = n ? fw_alloc(n) : NULL;
	if (!data)
		return EFI_OUT_OF_RESOURCES;
	s = lf->LoadFile(lf, rem, boot_policy, &n, data);
	if (EFI_ERROR(s)) {
		fw_free(data);
		return s;
	}
	*buf = data;
	*size = n;
	return EFI_SUCCESS;
}

static EFI_STATUS read_file(EFI_DEVICE_PATH_PROTOCOL *dp, BOOLEAN boot_policy, void **buf, UINTN *size)
{
	if (efi_dp_len(dp, 64u << 10) < 0)
		return EFI_INVALID_PARAMETER;
	EFI_STATUS s = read_from_fs(dp, buf, size);
	if (s != EFI_NOT_FOUND)
		return s;
	if (!boot_policy && (s = read_from_load_file(&lf2_guid, dp, 0, buf, size)) != EFI_NOT_FOUND)
		return s;
	return read_from_load_file(&lf_guid, dp, boot_policy, buf, size);
}

/* ---- Secure Boot ---- */

static char sec_reason[FW_VERIFY_REASON_MAX + 1];
static struct fw_image_verify_req sec_req __attribute__((aligned(8)));

const char *fw_image_refusal(void)
{
	return sec_reason;
}

/* The VMM decides (include/gen2vm/proto/fw_sec.h): it holds db and dbx and hashes the file with
 * OpenSSL, which costs the firmware one exit instead of millions of emulated instructions. Any
 * answer but "may run" keeps the image from loading (fail closed). */
static EFI_STATUS image_verify(const void *file, UINTN size)
{
	efi_memset(&sec_req, 0, sizeof(sec_req));
	sec_req.hdr.op = FW_OP_IMAGE_VERIFY;
	sec_req.hdr.size = sizeof(sec_req);
	sec_req.image_gpa = fw_virt_to_phys(file);
	sec_req.image_size = size;
	sec_reason[0] = 0;
	EFI_STATUS s = fw_host_call(&sec_req);
	if (s != EFI_SECURITY_VIOLATION)
		return s;
	uint32_t n = sec_req.reason_len < FW_VERIFY_REASON_MAX ? sec_req.reason_len : FW_VERIFY_REASON_MAX;
	efi_memcpy(sec_reason, sec_req.reason, n);
	sec_reason[n] = 0;
	return s;
}

/* ---- loading ---- */

static void image_free(struct fw_image *img)
{
	if (img->handle) {
		efi_db_uninstall(&fw.db, img->handle, &lidp_guid, img->full_path);
		efi_db_uninstall(&fw.db, img->handle, &li_guid, &img->li);
	}
	for (struct fw_image **pp = &images; *pp; pp = &(*pp)->next) {
		if (*pp == img) {
			*pp = img->next;
			break;
		}
	}
	if (img->pages)
		efi_mem_free_pages(&fw.mem, img->alloc, img->pages);
	fw_free(img->li.FilePath);
	fw_free(img->full_path);
	img->magic = 0;
	fw_free(img);
}

/* Every image is checked by Secure Boot, the one the host placed in memory (--efi) too: with Secure
 * Boot on, a user who gives an unsigned kernel is told so, as with any other boot entry. */
static EFI_STATUS load(BOOLEAN boot_policy, EFI_HANDLE parent, EFI_DEVICE_PATH_PROTOCOL *dp, const void *src,
		       UINTN src_size, EFI_HANDLE *out)
{
	if (!out || !find(parent))
		return EFI_INVALID_PARAMETER;
	void *file = (void *)src;
	UINTN size = src_size;
	EFI_STATUS s;
	if (!file) {
		if (!dp)
			return EFI_NOT_FOUND;
		if (EFI_ERROR(s = read_file(dp, boot_policy, &file, &size)))
			return s;
	}
	struct efi_pe_image pe;
	struct fw_image *img = NULL;
	s = efi_pe_parse(file, size, &pe);
	if (!EFI_ERROR(s))
		s = image_verify(file, size);
	if (!EFI_ERROR(s) && !(img = fw_zalloc(sizeof(*img))))
		s = EFI_OUT_OF_RESOURCES;
	if (EFI_ERROR(s))
		goto out;
	uint32_t code = EfiLoaderCode, data = EfiLoaderData;
	if (pe.subsystem == PE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER) {
		code = EfiBootServicesCode;
		data = EfiBootServicesData;
	} else if (pe.subsystem == PE_SUBSYSTEM_EFI_RUNTIME_DRIVER) {
		code = EfiRuntimeServicesCode;
		data = EfiRuntimeServicesData;
	}
	uint64_t align = pe.section_alignment > EFI_PAGE_SIZE ? pe.section_alignment : EFI_PAGE_SIZE;
	uint64_t load_addr;
	if (pe.relocs_stripped) {
		img->pages = ((uint64_t)pe.size_of_image + EFI_PAGE_SIZE - 1) >> EFI_PAGE_SHIFT;
		img->alloc = pe.image_base;
		s = efi_mem_allocate_pages(&fw.mem, AllocateAddress, code, img->pages, &img->alloc);
		load_addr = img->alloc;
	} else {
		img->pages = ((uint64_t)pe.size_of_image + align - EFI_PAGE_SIZE + EFI_PAGE_SIZE - 1) >> EFI_PAGE_SHIFT;
		s = efi_mem_allocate_pages(&fw.mem, AllocateAnyPages, code, img->pages, &img->alloc);
		load_addr = (img->alloc + align - 1) & ~(align - 1);
	}
	if (EFI_ERROR(s)) {
		img->pages = 0;
		s = pe.relocs_stripped ? EFI_LOAD_ERROR : EFI_OUT_OF_RESOURCES;
		goto out;
	}
	s = efi_pe_load(file, size, &pe, (void *)(uintptr_t)load_addr, load_addr);
	if (EFI_ERROR(s)) {
		s = EFI_LOAD_ERROR;
		goto out;
	}
	img->magic = IMAGE_MAGIC;
	img->subsystem = pe.subsystem;
	img->entry = (EFI_IMAGE_ENTRY_POINT)(uintptr_t)(load_addr + pe.entry_rva);
	img->li = (EFI_LOADED_IMAGE_PROTOCOL){
		.Revision = EFI_LOADED_IMAGE_PROTOCOL_REVISION,
		.ParentHandle = parent,
		.SystemTable = fw.st,
		.ImageBase = (void *)(uintptr_t)load_addr,
		.ImageSize = pe.size_of_image,
		.ImageCodeType = code,
		.ImageDataType = data,
	};
	if (dp) {
		EFI_DEVICE_PATH_PROTOCOL *rem = dp;
		EFI_HANDLE dev;
		if (!EFI_ERROR(efi_db_locate_device_path(&fw.db, &dp_guid, &rem, &dev)))
			img->li.DeviceHandle = dev;
		else
			rem = dp;
		img->li.FilePath = dp_dup(rem);
		img->full_path = dp_dup(dp);
	}
	img->next = images;
	images = img;
	s = efi_db_install(&fw.db, &img->handle, &li_guid, &img->li);
	if (!EFI_ERROR(s))
		s = efi_db_install(&fw.db, &img->handle, &lidp_guid, img->full_path);
	if (EFI_ERROR(s)) {
		image_free(img);
		img = NULL;
		goto out;
	}
	*out = img->handle;
out:
	if (EFI_ERROR(s) && img)
		image_free(img);
	if (file != src)
		fw_free(file);
	return s;
}

static EFI_STATUS EFIAPI img_load(BOOLEAN boot_policy, EFI_HANDLE parent, EFI_DEVICE_PATH_PROTOCOL *dp,
				  void *src, UINTN src_size, EFI_HANDLE *out)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	return load(boot_policy, parent, dp, src, src_size, out);
}

/* ---- running ---- */

static EFI_STATUS invoke(struct fw_image *img)
{
	if (fw_image_setjmp(img->jb))
		return img->exit_status; /* Exit() */
	return img->entry(img->handle, fw.st);
}

static EFI_STATUS EFIAPI img_start(EFI_HANDLE handle, UINTN *exit_size, CHAR16 **exit_data)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	struct fw_image *img = find(handle);
	if (!img || img == &fw_self || img->started)
		return EFI_INVALID_PARAMETER;
	img->started = true;
	img->caller = current;
	img->start_tpl = fw.tpl;
	current = img;
	fw_st_changed();
	EFI_STATUS s = invoke(img);
	current = img->caller;
	fw.tpl = img->start_tpl;
	if (exit_size)
		*exit_size = img->exit_size;
	if (exit_data)
		*exit_data = img->exit_data;
	else
		fw_free(img->exit_data);
	img->exit_data = NULL;
	img->exit_size = 0;
	if (fw.boot_services_done)
		return s; /* nothing may be freed any more */
	/* Applications go when they end; drivers stay unless they failed (UEFI 7.4 StartImage). */
	if (img->subsystem == PE_SUBSYSTEM_EFI_APPLICATION || EFI_ERROR(s))
		image_free(img);
	return s;
}

static EFI_STATUS EFIAPI img_exit(EFI_HANDLE handle, EFI_STATUS status, UINTN size, CHAR16 *data)
{
	struct fw_image *img = find(handle);
	if (!img || img == &fw_self)
		return EFI_INVALID_PARAMETER;
	if (!img->started) {
		if (!fw.boot_services_done)
			image_free(img);
		return EFI_SUCCESS;
	}
	if (img != current)
		return EFI_INVALID_PARAMETER;
	img->exit_status = status;
	img->exit_size = 0;
	img->exit_data = NULL;
	if (data && size && !fw.boot_services_done && (img->exit_data = fw_alloc(size))) {
		efi_memcpy(img->exit_data, data, size);
		img->exit_size = size;
	}
	fw_image_longjmp(img->jb);
}

static EFI_STATUS EFIAPI img_unload(EFI_HANDLE handle)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	struct fw_image *img = find(handle);
	if (!img || img == &fw_self)
		return EFI_INVALID_PARAMETER;
	if (img->started) {
		if (!img->li.Unload)
			return EFI_UNSUPPORTED;
		if (img == current)
			return EFI_INVALID_PARAMETER;
		EFI_STATUS s = img->li.Unload(handle);
		if (EFI_ERROR(s))
			return s;
	}
	image_free(img);
	return EFI_SUCCESS;
}

/* ---- the image from the VMM (--efi) ---- */

static struct {
	MEMMAP_DEVICE_PATH mem;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed)) handoff_dp;

static struct {
	VENDOR_DEVICE_PATH ven;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed)) initrd_dp;

static EFI_STATUS EFIAPI initrd_load(EFI_LOAD_FILE_PROTOCOL *this, EFI_DEVICE_PATH_PROTOCOL *path, BOOLEAN boot,
				     UINTN *size, void *buf)
{
	uint64_t n = fw.ho->initrd_size;
	if (!size)
		return EFI_INVALID_PARAMETER;
	if (boot)
		return EFI_UNSUPPORTED;
	if (!buf || *size < n) {
		*size = n;
		return EFI_BUFFER_TOO_SMALL;
	}
	efi_memcpy(buf, (const void *)(uintptr_t)fw.ho->initrd_gpa, n);
	*size = n;
	return EFI_SUCCESS;
}

static EFI_LOAD_FILE_PROTOCOL initrd_lf2 = { initrd_load };

/* UTF-8 to NUL-terminated UCS-2 (characters beyond the BMP and malformed bytes become '?'). */
static CHAR16 *utf8_to_ucs2(const uint8_t *s, uint64_t n, uint32_t *bytes)
{
	CHAR16 *out = fw_alloc((n + 1) * 2);
	if (!out)
		return NULL;
	uint64_t k = 0;
	for (uint64_t i = 0; i < n;) {
		uint32_t c = s[i], need = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
		if (need == 9 || (need && i + need >= n)) {
			out[k++] = '?';
			i++;
			continue;
		}
		if (need)
			c &= 0x3f >> need;
		bool ok = true;
		for (uint32_t j = 1; j <= need; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				ok = false;
			c = c << 6 | (s[i + j] & 0x3f);
		}
		if (!ok) {
			out[k++] = '?';
			i++;
			continue;
		}
		out[k++] = c > 0xffff || c == 0 ? '?' : (CHAR16)c;
		i += need + 1;
	}
	out[k] = 0;
	*bytes = (uint32_t)((k + 1) * 2);
	return out;
}

EFI_STATUS fw_image_start_handoff(void)
{
	const struct fw_handoff *ho = fw.ho;
	if (!ho->image_size)
		return EFI_NOT_FOUND;
	EFI_STATUS s;
	EFI_HANDLE dev = NULL, h = NULL;
	handoff_dp.mem.Header = (EFI_DEVICE_PATH_PROTOCOL){ HARDWARE_DEVICE_PATH, HW_MEMMAP_DP, { 24, 0 } };
	handoff_dp.mem.MemoryType = EfiBootServicesData;
	handoff_dp.mem.StartingAddress = ho->image_gpa;
	handoff_dp.mem.EndingAddress = ho->image_gpa + ho->image_size - 1;
	efi_dp_set_end(&handoff_dp.end);
	if (EFI_ERROR(s = efi_db_install(&fw.db, &dev, &dp_guid, &handoff_dp)))
		return s;
	if (ho->initrd_size) {
		static const EFI_GUID media = LINUX_EFI_INITRD_MEDIA_GUID;
		EFI_HANDLE ih = NULL;
		initrd_dp.ven.Header = (EFI_DEVICE_PATH_PROTOCOL){ MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, { 20, 0 } };
		initrd_dp.ven.Guid = media;
		efi_dp_set_end(&initrd_dp.end);
		const EFI_GUID *g[2] = { &dp_guid, &lf2_guid };
		void *i[2] = { &initrd_dp, &initrd_lf2 };
		if (EFI_ERROR(s = efi_db_install_multiple(&fw.db, &ih, 2, g, i)))
			fw_printf("gen2vm firmware: initrd not offered (status 0x%llx)\n", (unsigned long long)s);
	}
	s = load(0, fw.image, (EFI_DEVICE_PATH_PROTOCOL *)&handoff_dp,
		 (const void *)(uintptr_t)ho->image_gpa, ho->image_size, &h);
	if (EFI_ERROR(s)) {
		fw_printf("gen2vm firmware: the --efi image does not load (status 0x%llx)\n", (unsigned long long)s);
		return s;
	}
	struct fw_image *img = find(h);
	if (ho->cmdline_size) {
		uint32_t bytes = 0;
		img->li.LoadOptions = utf8_to_ucs2((const uint8_t *)(uintptr_t)ho->cmdline_gpa, ho->cmdline_size, &bytes);
		img->li.LoadOptionsSize = img->li.LoadOptions ? bytes : 0;
	}
	fw_host_event(FW_EV_LOADER_START, "MemoryMapped(0x%llx,0x%llx) (--efi)", (unsigned long long)ho->image_gpa,
		      (unsigned long long)ho->image_size);
	CHAR16 *options = img->li.LoadOptions; /* freed with the image's other records after it ends */
	s = img_start(h, NULL, NULL);
	if (!fw.boot_services_done)
		fw_free(options);
	return s;
}

EFI_STATUS fw_image_init(EFI_BOOT_SERVICES *bs)
{
	bs->LoadImage = img_load;
	bs->StartImage = img_start;
	bs->Exit = img_exit;
	bs->UnloadImage = img_unload;
	fw_self.magic = IMAGE_MAGIC;
	fw_self.started = true;
	fw_self.li = (EFI_LOADED_IMAGE_PROTOCOL){
		.Revision = EFI_LOADED_IMAGE_PROTOCOL_REVISION,
		.SystemTable = fw.st,
		.ImageBase = (void *)(uintptr_t)fw.ho->fw_start,
		.ImageSize = fw.ho->fw_end - fw.ho->fw_start,
		.ImageCodeType = EfiRuntimeServicesCode,
		.ImageDataType = EfiRuntimeServicesData,
	};
	images = &fw_self;
	EFI_STATUS s = efi_db_install(&fw.db, &fw_self.handle, &li_guid, &fw_self.li);
	fw.image = fw_self.handle;
	return s;
}
