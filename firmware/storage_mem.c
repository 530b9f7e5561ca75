/* Memory, protocol installs and time for the storage stack, on the boot services. */
#include "storage.h"

void *fw_stor_alloc_pages(uint32_t n)
{
	EFI_PHYSICAL_ADDRESS a = 0xffffffffull; /* DMA buffers stay below 4 GiB */
	if (!fw.bs || EFI_ERROR(fw.bs->AllocatePages(AllocateMaxAddress, EfiBootServicesData, n, &a)))
		return NULL;
	void *p = (void *)(uintptr_t)a;
	efi_memset(p, 0, (size_t)n * 4096);
	return p;
}

void fw_stor_free_pages(void *p, uint32_t n)
{
	if (p && fw.bs)
		fw.bs->FreePages((EFI_PHYSICAL_ADDRESS)(uintptr_t)p, n);
}

void *fw_stor_alloc(size_t size)
{
	void *p = NULL;
	return fw.bs && !EFI_ERROR(fw.bs->AllocatePool(EfiBootServicesData, size, &p)) ? p : NULL;
}

void *fw_stor_zalloc(size_t size)
{
	void *p = fw_stor_alloc(size);
	if (p)
		efi_memset(p, 0, size);
	return p;
}

void fw_stor_free(void *p)
{
	if (p && fw.bs)
		fw.bs->FreePool(p);
}

EFI_STATUS fw_stor_install(EFI_HANDLE *handle, size_t n, const EFI_GUID *const *protocols, void *const *ifaces)
{
	return efi_db_install_multiple(&fw.db, handle, n, protocols, ifaces);
}

/* The boot services' clock (the TSC scaled once by its frequency): no exit per reading. */
uint64_t fw_stor_now_us(void)
{
	return fw_time_100ns() / 10;
}
