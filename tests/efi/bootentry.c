/* What efibootmgr or an OS installer does, as an EFI application: it creates a File boot entry
 * (HD(...)/File(\EFI\gen2vm\entry.efi), short form as efibootmgr writes it) for a copy of itself,
 * puts it first in BootOrder and restarts the VM. Started again through that entry (its optional
 * data, "stage2", arrives as the load options) it reports BootCurrent and turns the VM off.
 * The firmware boot tests check that the entry survives the restart and shows in `gen2vm firmware
 * show`. */
#include "efiapp.h"

#include "efi/efi_devpath.h"
#include "gen2vm/proto/fw_var.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

static EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID global = EFI_GLOBAL_VARIABLE_GUID;

#define NVBR (EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS)

static EFI_STATUS stage1(EFI_LOADED_IMAGE_PROTOCOL *li)
{
	EFI_DEVICE_PATH_PROTOCOL *dev = NULL;
	if (EFI_ERROR(app_bs->HandleProtocol(li->DeviceHandle, &dp_guid, (void **)&dev)) || !dev)
		return EFI_NOT_FOUND;
	const EFI_DEVICE_PATH_PROTOCOL *hd = efi_dp_find(dev, MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP);
	if (!hd)
		return EFI_NOT_FOUND;
	static uint8_t opt[512];
	static const CHAR16 desc[] = u"gen2vm test OS";
	static const CHAR16 data[] = u"stage2";
	size_t off = 0;
	efi_put32(opt, LOAD_OPTION_ACTIVE);
	off = 6;
	efi_memcpy(opt + off, desc, sizeof(desc));
	off += sizeof(desc);
	size_t dp_start = off;
	efi_memcpy(opt + off, hd, efi_dp_node_len(hd));
	off += efi_dp_node_len(hd);
	off += efi_dp_file(u"\\EFI\\gen2vm\\entry.efi", opt + off, sizeof(opt) - off);
	efi_put16(opt + 4, (uint16_t)(off - dp_start));
	efi_memcpy(opt + off, data, sizeof(data));
	off += sizeof(data);
	EFI_STATUS s = app_st->RuntimeServices->SetVariable(u"Boot0100", &global, NVBR, off, opt);
	if (EFI_ERROR(s))
		return s;
	uint16_t order[64];
	UINTN size = sizeof(order) - 2;
	if (EFI_ERROR(app_st->RuntimeServices->GetVariable(u"BootOrder", &global, NULL, &size, order + 1)))
		size = 0;
	order[0] = 0x0100;
	s = app_st->RuntimeServices->SetVariable(u"BootOrder", &global, NVBR, size + 2, order);
	if (EFI_ERROR(s))
		return s;
	app_print("ENTRY-CREATED Boot0100, restarting\n");
	app_st->RuntimeServices->ResetSystem(EfiResetWarm, EFI_SUCCESS, 0, NULL);
	return EFI_DEVICE_ERROR;
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	if (EFI_ERROR(app_bs->HandleProtocol(image, &li_guid, (void **)&li)) || !li)
		return EFI_LOAD_ERROR;
	const CHAR16 *o = li->LoadOptions;
	if (li->LoadOptionsSize >= 12 && o && o[0] == 's' && o[5] == '2') {
		uint16_t cur = 0xffff;
		UINTN size = sizeof(cur);
		app_st->RuntimeServices->GetVariable(u"BootCurrent", &global, NULL, &size, &cur);
		app_printf("BOOTED-FROM-FILE-ENTRY BootCurrent=%04X\n", cur);
		app_st->RuntimeServices->ResetSystem(EfiResetShutdown, EFI_SUCCESS, 0, NULL);
		return EFI_DEVICE_ERROR;
	}
	EFI_STATUS s = stage1(li);
	app_printf("bootentry: creating the entry failed (status 0x%llx)\n", (unsigned long long)s);
	return s;
}
