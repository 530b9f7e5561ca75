/* A DVD's "Press any key to boot from CD or DVD..." prompt, as Windows installation media have it.
 * On Hyper-V the prompt is not the firmware's: it is the media's first loader (Windows' cdboot.efi,
 * whose twin cdboot_noprompt.efi leaves it out), started by the firmware like any removable-media
 * loader. It waits a few seconds for a key on ConIn: a key starts the real loader beside it
 * (\EFI\BOOT\GRUBX64.EFI here), no key returns EFI_TIMEOUT and the firmware goes on with the next
 * boot entry. efi_images.dvd_prompt_iso puts this program in front of GRUB on a grub-mkrescue ISO;
 * test_fw_screen.py reads the prompt from the screen and answers it from the console.
 *
 * Written from that behaviour, not from Windows' code. Its lines on the debug console (and ConOut)
 * say what happened: "cdprompt: key" or "cdprompt: no key". Before the prompt it tells the debug
 * console only what screen it found: the GOP mode and the text modes ConOut offers on it. */
#include "efiapp.h"

#include "efi/efi_devpath.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/efi_gop.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

#define PROMPT_SECONDS 5u
#define NEXT_LOADER u"\\EFI\\BOOT\\GRUBX64.EFI"

static const EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;

/* "cdprompt: screen WxH, text modes CxR ..." on the debug console (the modes QueryMode accepts). */
static void report_screen(EFI_SYSTEM_TABLE *st)
{
	static const EFI_GUID gop_guid = EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID;
	EFI_GRAPHICS_OUTPUT_PROTOCOL *gop = NULL;
	char line[256];
	size_t n = 0;
	if (!EFI_ERROR(app_bs->LocateProtocol((EFI_GUID *)&gop_guid, NULL, (void **)&gop)) && gop && gop->Mode &&
	    gop->Mode->Info)
		n += (size_t)efi_snprintf(line, sizeof(line), "cdprompt: screen %ux%u, text modes",
					  gop->Mode->Info->HorizontalResolution, gop->Mode->Info->VerticalResolution);
	else
		n += (size_t)efi_snprintf(line, sizeof(line), "cdprompt: no screen, text modes");
	EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *out = st->ConOut;
	for (int32_t m = 0; out && out->Mode && m < out->Mode->MaxMode && n < sizeof(line); m++) {
		UINTN c, r;
		if (!EFI_ERROR(out->QueryMode(out, (UINTN)m, &c, &r)))
			n += (size_t)efi_snprintf(line + n, sizeof(line) - n, " %llux%llu", (unsigned long long)c,
						  (unsigned long long)r);
	}
	if (n < sizeof(line))
		efi_snprintf(line + n, sizeof(line) - n, "\n");
	app_debug(line);
}

/* Waits up to PROMPT_SECONDS for a key, one dot a second as the original does. */
static bool key_pressed(EFI_SIMPLE_TEXT_INPUT_PROTOCOL *in)
{
	EFI_EVENT timer;
	if (EFI_ERROR(app_bs->CreateEvent(EVT_TIMER, 0, NULL, NULL, &timer)))
		return false;
	bool key = false;
	for (unsigned s = 0; s < PROMPT_SECONDS && !key; s++) {
		app_bs->SetTimer(timer, TimerRelative, 10000000ull); /* 1 s in 100 ns units */
		EFI_EVENT ev[2] = { in->WaitForKey, timer };
		UINTN idx = 1;
		if (EFI_ERROR(app_bs->WaitForEvent(2, ev, &idx)))
			break;
		EFI_INPUT_KEY k;
		if (idx == 0 && !EFI_ERROR(in->ReadKeyStroke(in, &k)))
			key = true;
		else
			app_print(".");
	}
	app_bs->CloseEvent(timer);
	return key;
}

/* The next loader, from the file system this program was loaded from. */
static EFI_STATUS start_next(void)
{
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	EFI_DEVICE_PATH_PROTOCOL *dev = NULL;
	if (EFI_ERROR(app_bs->HandleProtocol(app_image, (EFI_GUID *)&li_guid, (void **)&li)) || !li ||
	    EFI_ERROR(app_bs->HandleProtocol(li->DeviceHandle, (EFI_GUID *)&dp_guid, (void **)&dev)) || !dev)
		return EFI_NOT_FOUND;
	uint8_t file[128], full[512];
	if (!efi_dp_file(NEXT_LOADER, file, sizeof(file)) ||
	    !efi_dp_append(dev, (EFI_DEVICE_PATH_PROTOCOL *)file, full, sizeof(full)))
		return EFI_BUFFER_TOO_SMALL;
	EFI_HANDLE h = NULL;
	EFI_STATUS s = app_bs->LoadImage(0, app_image, (EFI_DEVICE_PATH_PROTOCOL *)full, NULL, 0, &h);
	if (EFI_ERROR(s))
		return s;
	return app_bs->StartImage(h, NULL, NULL);
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	EFI_SIMPLE_TEXT_INPUT_PROTOCOL *in = st ? st->ConIn : NULL;
	if (!in)
		return EFI_UNSUPPORTED;
	report_screen(st);
	in->Reset(in, 0); /* a key typed before the prompt does not answer it */
	app_print("Press any key to boot from CD or DVD..");
	if (!key_pressed(in)) {
		app_print("\ncdprompt: no key\n");
		return EFI_TIMEOUT;
	}
	app_print("\ncdprompt: key\n");
	EFI_STATUS s = start_next();
	char buf[32];
	app_printf("cdprompt: %s returned %s\n", "\\EFI\\BOOT\\GRUBX64.EFI", efi_status_str(s, buf));
	return s;
}
