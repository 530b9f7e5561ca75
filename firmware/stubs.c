/* Weak stand-ins for firmware modules that are not built yet, so that each module can land on its
 * own; a module's real definition replaces its stand-in at link time. */
#include "fw.h"

__attribute__((weak)) EFI_STATUS fw_bs_init(void)
{
	return EFI_SUCCESS;
}
__attribute__((weak)) EFI_STATUS fw_rt_init(void)
{
	return EFI_UNSUPPORTED;
}
__attribute__((weak)) EFI_STATUS fw_conio_init(void)
{
	return EFI_UNSUPPORTED;
}
__attribute__((weak)) EFI_STATUS fw_tables_init(void)
{
	return EFI_UNSUPPORTED;
}
__attribute__((weak)) EFI_STATUS fw_storage_init(void)
{
	return EFI_UNSUPPORTED;
}
__attribute__((weak)) void *fw_alloc(size_t size)
{
	return NULL;
}
__attribute__((weak)) void *fw_zalloc(size_t size)
{
	return NULL;
}
__attribute__((weak)) void fw_free(void *p)
{
}
