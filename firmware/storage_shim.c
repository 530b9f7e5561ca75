/* Memory, protocol installs and time for the storage stack.
 *
 * TEMPORARY SHIM (delete the "shim" half once firmware/bs.c lands): when fw.bs is NULL (no boot
 * services in this build), fw_stor_shim_init() builds fw.mem from the hand-off's FW_MEM_RAM ranges
 * (efi_mem_add as EfiConventionalMemory) and fw.db (efi_db_init with pool alloc/free on fw.mem), and
 * the fw_stor_* allocators below use efi_mem directly. With fw.bs set, they call the boot services
 * and the shim does nothing. Installs always go through efi_db_install_multiple on fw.db, which is
 * what the boot services' InstallMultipleProtocolInterfaces wraps.
 */
#include "storage.h"

#include "gen2vm/proto/hv.h"

static bool shim_active;

static void *shim_db_alloc(void *ctx, size_t size)
{
	(void)ctx;
	void *p = NULL;
	return EFI_ERROR(efi_mem_allocate_pool(&fw.mem, EfiBootServicesData, size, &p)) ? NULL : p;
}

static void shim_db_free(void *ctx, void *p)
{
	(void)ctx;
	efi_mem_free_pool(&fw.mem, p);
}

/* TEMPORARY: see the file comment. */
void fw_stor_shim_init(void);
void fw_stor_shim_init(void)
{
	if (fw.bs || shim_active)
		return;
	efi_mem_init(&fw.mem);
	for (uint32_t i = 0; i < fw.ho->nr_mem; i++) {
		const struct fw_mem_range *r = &fw.ho->mem[i];
		if (r->type == FW_MEM_RAM && r->size >= 4096)
			efi_mem_add(&fw.mem, r->start, r->size / 4096, EfiConventionalMemory, 0);
	}
	static const struct efi_db_ops ops = { .alloc = shim_db_alloc, .free = shim_db_free };
	efi_db_init(&fw.db, &ops);
	shim_active = true;
}

void *fw_stor_alloc_pages(uint32_t n)
{
	EFI_PHYSICAL_ADDRESS a = 0xffffffffull; /* the identity map covers the first 4 GiB */
	EFI_STATUS s;
	if (fw.bs)
		s = fw.bs->AllocatePages(AllocateMaxAddress, EfiBootServicesData, n, &a);
	else if (shim_active)
		s = efi_mem_allocate_pages(&fw.mem, AllocateMaxAddress, EfiBootServicesData, n, &a);
	else
		return NULL;
	if (EFI_ERROR(s))
		return NULL;
	void *p = (void *)(uintptr_t)a;
	fw_stor_zero(p, (size_t)n * 4096);
	return p;
}

void fw_stor_free_pages(void *p, uint32_t n)
{
	if (!p)
		return;
	if (fw.bs)
		fw.bs->FreePages((EFI_PHYSICAL_ADDRESS)(uintptr_t)p, n);
	else if (shim_active)
		efi_mem_free_pages(&fw.mem, (EFI_PHYSICAL_ADDRESS)(uintptr_t)p, n);
}

void *fw_stor_zalloc(size_t size)
{
	void *p = NULL;
	EFI_STATUS s;
	if (fw.bs)
		s = fw.bs->AllocatePool(EfiBootServicesData, size, &p);
	else if (shim_active)
		s = efi_mem_allocate_pool(&fw.mem, EfiBootServicesData, size, &p);
	else
		return NULL;
	if (EFI_ERROR(s))
		return NULL;
	fw_stor_zero(p, size);
	return p;
}

void *fw_stor_alloc(size_t size)
{
	void *p = NULL;
	EFI_STATUS s;
	if (fw.bs)
		s = fw.bs->AllocatePool(EfiBootServicesData, size, &p);
	else if (shim_active)
		s = efi_mem_allocate_pool(&fw.mem, EfiBootServicesData, size, &p);
	else
		return NULL;
	return EFI_ERROR(s) ? NULL : p;
}

/* Emulated string instructions cost per iteration (about 0.8 us for STOS, 1.3 us for MOVS here),
 * whatever the element size: 8-byte elements make big clears 8 times cheaper than efi_memset's
 * byte-wise REP STOSB. */
void fw_stor_copy(void *dst, const void *src, size_t n)
{
	size_t q = n / 8, r = n % 8;
	__asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(q) : : "memory");
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(r) : : "memory");
}

void fw_stor_zero(void *p, size_t n)
{
	size_t q = n / 8, r = n % 8;
	__asm__ volatile("rep stosq" : "+D"(p), "+c"(q) : "a"(0ull) : "memory");
	__asm__ volatile("rep stosb" : "+D"(p), "+c"(r) : "a"(0) : "memory");
}

void fw_stor_free(void *p)
{
	if (!p)
		return;
	if (fw.bs)
		fw.bs->FreePool(p);
	else if (shim_active)
		efi_mem_free_pool(&fw.mem, p);
}

EFI_STATUS fw_stor_install(EFI_HANDLE *handle, size_t n, const EFI_GUID *const *protocols, void *const *ifaces)
{
	return efi_db_install_multiple(&fw.db, handle, n, protocols, ifaces);
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

uint64_t fw_stor_now_us(void)
{
	if (fw.ho->tsc_hz >= 1000000)
		return rdtsc() / (fw.ho->tsc_hz / 1000000);
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(HV_MSR_TIME_REF_COUNT));
	return ((uint64_t)hi << 32 | lo) / 10;
}
