/* The smallest EFI application: prints "hello from EFI" (ConOut when there is one, and always the
 * debug console) and returns EFI_SUCCESS. The boot-manager tests install it as \EFI\BOOT\BOOTX64.EFI.
 * svc_test.c starts it too: with the load options "exit" it leaves through BootServices->Exit() from
 * a nested call, with EFI_ABORTED and the exit data "bye". With "badstack" it faults on a stack
 * pointer at 256 GiB, where nothing is mapped (test_fw_services.py: the firmware reports it). Other
 * load options are printed. */
#include "efiapp.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

static const EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;

__attribute__((noinline)) static void leave_from_depth(int depth)
{
	if (depth) {
		leave_from_depth(depth - 1);
		return;
	}
	CHAR16 *data = NULL;
	if (EFI_ERROR(app_bs->AllocatePool(EfiLoaderData, 8, (void **)&data)))
		data = NULL;
	else
		data[0] = 'b', data[1] = 'y', data[2] = 'e', data[3] = 0;
	app_bs->Exit(app_image, EFI_ABORTED, data ? 8 : 0, data);
	app_print("hello: Exit returned\n");
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	app_print("hello from EFI\n");
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	if (app_bs && !EFI_ERROR(app_bs->HandleProtocol(image, (EFI_GUID *)&li_guid, (void **)&li)) && li &&
	    li->LoadOptionsSize >= 8 && li->LoadOptions) {
		const CHAR16 *o = li->LoadOptions;
		if (o[0] == 'e' && o[1] == 'x' && o[2] == 'i' && o[3] == 't')
			leave_from_depth(3);
		if (o[0] == 'b' && o[1] == 'a' && o[2] == 'd' && o[3] == 's') {
			app_print("hello: pushing onto an unmapped stack\n");
			__asm__ volatile("mov %0, %%rsp\n\tpush %%rax" : : "r"(0x4000000000ull) : "memory");
		}
		/* Which boot entry started us (test_fw_screen.py: systemd-boot's entries differ only in
		 * their options). ASCII only; the rest as '?'. */
		char text[64];
		size_t n = 0;
		for (size_t i = 0; i < li->LoadOptionsSize / 2 && o[i] && n + 1 < sizeof(text); i++)
			text[n++] = o[i] >= 0x20 && o[i] < 0x7f ? (char)o[i] : '?';
		text[n] = 0;
		app_printf("hello: load options [%s]\n", text);
	}
	return EFI_SUCCESS;
}
