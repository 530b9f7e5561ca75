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
__attribute__((weak)) void fw_bootmgr_run(void)
{
	/* Until the boot manager lands: the image the VMM placed in memory (--efi) is all we boot. */
	if (fw.ho->image_size) {
		EFI_STATUS s = fw_image_start_handoff();
		fw_printf("gen2vm firmware: the --efi image returned 0x%llx\n", (unsigned long long)s);
	}
	fw_puts("gen2vm firmware: no boot manager in this build\n");
	fw_host_event(FW_EV_LOG, "no boot manager in this build");
	struct fw_event_req r = { .hdr = { FW_OP_BOOT_FAILED, sizeof(r), 0 }, .code = 0, .len = 0 };
	fw_host_call(&r);
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
