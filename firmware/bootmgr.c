/* The boot manager (UEFI 2.10 chapter 3): BootNext, then BootOrder's Boot#### entries, each a device
 * entry (the whole SCSI disk or DVD: its file systems are tried with the removable-media path
 * \EFI\BOOT\BOOTX64.EFI) or a file entry (a full or HD()-short-form path to a loader). Between failed
 * entries it can pause (PauseAfterBootFailure) until a key or the host's "continue". When everything
 * failed it prints a boot summary — each entry tried and why it failed — and hands it to the host,
 * which ends the VM with its "nothing to boot" status.
 *
 * With a screen or the synthetic keyboard (--synthetic-console), a boot menu: Esc or F2 (on the
 * keyboard or COM1) typed before the firmware looks opens it, and while a viewer watches the screen
 * (or the Timeout variable asks) "press Esc or F2 for the boot menu" waits BM_MENU_WINDOW_US (Timeout's
 * seconds) for one; the menu lists BootOrder's entries, arrows or a digit choose one, Enter boots it
 * (and the boot order follows if it fails), Esc leaves the menu. Nobody watching: no wait.
 *
 * It uses only the public boot and runtime services (as any boot manager application could), plus
 * fw_image_start_handoff() for an image the VMM put in memory (--efi) and the console helpers of
 * conio.h.
 */
#include "fw.h"

#include "conio.h"
#include "net.h"
#include "efi/efi_devpath.h"
#include "efi/efi_fmt.h"
#include "gen2vm/proto/efi_bs.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/fw_var.h"

#define BM_MAX_TRIED 32
#define BM_OPTION_MAX 4096
#define BM_PATH_MAX 1024
#define BM_REMOVABLE_PATH u"\\EFI\\BOOT\\BOOTX64.EFI"
/* How long the boot menu's keys are waited for while a viewer watches: long enough for a person (or
 * a test) that watches for the prompt. */
#define BM_MENU_WINDOW_US 1500000ull
#define BM_MENU_MAX 9u /* one digit each */

struct bm_attempt {
	char what[96];
	char why[160];
};

static struct bm_attempt bm_tried[BM_MAX_TRIED];
static unsigned bm_nr_tried;
static EFI_GUID bm_global = EFI_GLOBAL_VARIABLE_GUID;
static EFI_GUID bm_sfs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
static EFI_GUID bm_dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID bm_li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static EFI_GUID bm_blk_guid = EFI_BLOCK_IO_PROTOCOL_GUID;

static struct bm_attempt *bm_record(const char *what)
{
	struct bm_attempt *a = &bm_tried[bm_nr_tried < BM_MAX_TRIED ? bm_nr_tried++ : BM_MAX_TRIED - 1];
	efi_snprintf(a->what, sizeof(a->what), "%s", what);
	a->why[0] = 0;
	return a;
}

static void bm_fail(struct bm_attempt *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bm_fail(struct bm_attempt *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
	fw_printf("gen2vm firmware: %s: %s\n", a->what, a->why);
	fw_host_event(FW_EV_BOOT_ENTRY_FAILED, "%s: %s", a->what, a->why);
}

static EFI_STATUS bm_get_var(const CHAR16 *name, EFI_GUID *guid, void *buf, UINTN *size)
{
	if (!fw.rt || !fw.rt->GetVariable)
		return EFI_NOT_FOUND;
	return fw.rt->GetVariable((CHAR16 *)name, guid, NULL, size, buf);
}

static const char *bm_status(EFI_STATUS s)
{
	static char buf[32];
	return efi_status_str(s, buf);
}

/* Why LoadImage failed, in words a user can act on. */
static void bm_load_failed(struct bm_attempt *a, EFI_STATUS s, const char *file)
{
	const char *net = fw_pxe_failure(); /* a network entry: what DHCP or TFTP said */
	if (net)
		bm_fail(a, "%s", net);
	else if (s == EFI_NOT_FOUND)
		bm_fail(a, "%s not found", file);
	else if (s == EFI_LOAD_ERROR || s == EFI_UNSUPPORTED)
		bm_fail(a, "%s is not a valid x64 EFI application (%s)", file, bm_status(s));
	else if (s == EFI_SECURITY_VIOLATION && fw_image_refusal()[0])
		bm_fail(a, "%s was refused by Secure Boot: %s", file, fw_image_refusal());
	else if (s == EFI_SECURITY_VIOLATION || s == EFI_ACCESS_DENIED)
		bm_fail(a, "%s was refused by the image security policy (%s)", file, bm_status(s));
	else if (s == EFI_NO_MEDIA)
		bm_fail(a, "no media in the drive");
	else
		bm_fail(a, "loading %s failed: %s", file, bm_status(s));
}

/* Starts a loaded image; returns only when it returned (or exited). */
static void bm_start(struct bm_attempt *a, EFI_HANDLE img, const void *opts, uint32_t opts_size, const char *file)
{
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	if (EFI_ERROR(fw.bs->HandleProtocol(img, &bm_li_guid, (void **)&li)))
		li = NULL;
	if (opts_size && li) {
		li->LoadOptions = (void *)opts;
		li->LoadOptionsSize = opts_size;
	}
	/* Where it lies: a register dump of a hung or faulted loader is read against this. */
	if (li)
		fw_host_event(FW_EV_LOADER_START, "%s at 0x%llx-0x%llx", file, (unsigned long long)(uintptr_t)li->ImageBase,
			      (unsigned long long)((uintptr_t)li->ImageBase + li->ImageSize));
	else
		fw_host_event(FW_EV_LOADER_START, "%s", file);
	UINTN exit_size = 0;
	CHAR16 *exit_data = NULL;
	EFI_STATUS s = fw.bs->StartImage(img, &exit_size, &exit_data);
	if (exit_data && exit_size) {
		char text[96];
		size_t k = 0;
		for (UINTN i = 0; i < exit_size / 2 && exit_data[i] && k + 1 < sizeof(text); i++)
			text[k++] = exit_data[i] < 0x80 && exit_data[i] >= 0x20 ? (char)exit_data[i] : '?';
		text[k] = 0;
		bm_fail(a, "%s returned %s: %s", file, bm_status(s), text);
	} else
		bm_fail(a, "%s returned %s", file, bm_status(s));
	if (exit_data)
		fw.bs->FreePool(exit_data);
}

static EFI_DEVICE_PATH_PROTOCOL *bm_handle_path(EFI_HANDLE h)
{
	EFI_DEVICE_PATH_PROTOCOL *dp = NULL;
	if (EFI_ERROR(fw.bs->HandleProtocol(h, &bm_dp_guid, (void **)&dp)))
		return NULL;
	return dp && efi_dp_size(dp, BM_PATH_MAX) ? dp : NULL;
}

/* Loads and starts the image at a full device path. */
static bool bm_boot_path(struct bm_attempt *a, EFI_DEVICE_PATH_PROTOCOL *path, const void *opts, uint32_t opts_size,
			 const char *file)
{
	EFI_HANDLE img = NULL;
	EFI_STATUS s = fw.bs->LoadImage(1, fw.image, path, NULL, 0, &img);
	if (EFI_ERROR(s)) {
		bm_load_failed(a, s, file);
		return false;
	}
	bm_start(a, img, opts, opts_size, file);
	fw.bs->UnloadImage(img);
	return true;
}

/* The handles carrying protocol, or 0 of them. The caller frees *out. */
static UINTN bm_handles(EFI_GUID *protocol, EFI_HANDLE **out)
{
	UINTN n = 0;
	*out = NULL;
	if (EFI_ERROR(fw.bs->LocateHandleBuffer(ByProtocol, protocol, NULL, &n, out)))
		return 0;
	return n;
}

/* A device entry, or anything that names a device rather than a file: every file system on it is
 * tried with the removable-media path, in the order the partitions were found. */
static void bm_boot_device(struct bm_attempt *a, const EFI_DEVICE_PATH_PROTOCOL *dev, const void *opts,
			   uint32_t opts_size)
{
	EFI_HANDLE *hs;
	UINTN n = bm_handles(&bm_sfs_guid, &hs);
	bool any_fs = false;
	for (UINTN i = 0; i < n; i++) {
		EFI_DEVICE_PATH_PROTOCOL *dp = bm_handle_path(hs[i]);
		if (!dp || !efi_dp_has_prefix(dp, dev))
			continue;
		any_fs = true;
		uint8_t file[128], full[BM_PATH_MAX];
		if (!efi_dp_file(BM_REMOVABLE_PATH, file, sizeof(file)) ||
		    !efi_dp_append(dp, (EFI_DEVICE_PATH_PROTOCOL *)file, full, sizeof(full)))
			continue;
		if (bm_boot_path(a, (EFI_DEVICE_PATH_PROTOCOL *)full, opts, opts_size, "\\EFI\\BOOT\\BOOTX64.EFI"))
			break; /* it ran and returned: the entry failed, with the reason recorded */
	}
	if (n)
		fw.bs->FreePool(hs);
	if (any_fs)
		return;
	/* No file system: say what the device does have. */
	EFI_HANDLE *bs;
	UINTN nb = bm_handles(&bm_blk_guid, &bs);
	bool found = false;
	for (UINTN i = 0; i < nb && !found; i++) {
		EFI_DEVICE_PATH_PROTOCOL *dp = bm_handle_path(bs[i]);
		if (!dp || !efi_dp_has_prefix(dp, dev))
			continue;
		found = true;
		EFI_BLOCK_IO_PROTOCOL *blk = NULL;
		fw.bs->HandleProtocol(bs[i], &bm_blk_guid, (void **)&blk);
		if (blk && blk->Media && !blk->Media->MediaPresent)
			bm_fail(a, "no media in the drive");
		else
			bm_fail(a, "no FAT file system with a boot loader on the device (is the disk formatted "
				   "and does it have an EFI system partition?)");
	}
	if (nb)
		fw.bs->FreePool(bs);
	if (!found)
		bm_fail(a, "the device is not present in this VM");
}

/* A path that starts at a partition (HD(...)/File(...), as efibootmgr writes them) or a file: find
 * the partition, then boot its full path. */
static void bm_boot_short(struct bm_attempt *a, const EFI_DEVICE_PATH_PROTOCOL *path, const void *opts,
			  uint32_t opts_size, const char *file)
{
	EFI_HANDLE *hs;
	UINTN n = bm_handles(&bm_sfs_guid, &hs);
	bool matched = false;
	for (UINTN i = 0; i < n && !matched; i++) {
		EFI_DEVICE_PATH_PROTOCOL *dp = bm_handle_path(hs[i]);
		if (!dp)
			continue;
		const EFI_DEVICE_PATH_PROTOCOL *hd = efi_dp_find(dp, MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP);
		if (path->Type == MEDIA_DEVICE_PATH && path->SubType == MEDIA_HARDDRIVE_DP) {
			/* Same partition: number and signature (GPT unique GUID or MBR disk signature). */
			const HARDDRIVE_DEVICE_PATH *want = (const HARDDRIVE_DEVICE_PATH *)path;
			const HARDDRIVE_DEVICE_PATH *have = (const HARDDRIVE_DEVICE_PATH *)hd;
			if (!hd || efi_dp_node_len(hd) != sizeof(*have) || efi_dp_node_len(path) != sizeof(*want) ||
			    have->PartitionNumber != want->PartitionNumber ||
			    efi_memcmp(have->Signature, want->Signature, 16))
				continue;
			path = efi_dp_next(path); /* the rest is the file */
		}
		uint8_t full[BM_PATH_MAX];
		if (!efi_dp_append(dp, path, full, sizeof(full)))
			continue;
		matched = true;
		bm_boot_path(a, (EFI_DEVICE_PATH_PROTOCOL *)full, opts, opts_size, file);
	}
	if (n)
		fw.bs->FreePool(hs);
	if (!matched)
		bm_fail(a, "the partition holding %s is not present in this VM", file);
}

/* The file named by the path's last file node, as ASCII, for messages. */
static void bm_path_file(const EFI_DEVICE_PATH_PROTOCOL *p, char *out, size_t cap)
{
	efi_snprintf(out, cap, "the boot device");
	for (; p->Type != END_DEVICE_PATH_TYPE; p = efi_dp_next(p)) {
		if (p->Type != MEDIA_DEVICE_PATH || p->SubType != MEDIA_FILEPATH_DP)
			continue;
		size_t k = 0;
		const uint8_t *c = (const uint8_t *)p + sizeof(*p);
		for (size_t i = 0; i + 1 < efi_dp_node_len(p) - sizeof(*p) && k + 1 < cap; i += 2) {
			uint16_t ch = efi_le16(c + i);
			if (!ch)
				break;
			out[k++] = ch < 0x80 ? (char)ch : '?';
		}
		out[k] = 0;
	}
}

/* One Boot#### entry. Returns false when it is inactive or unreadable (skipped silently). */
static void bm_boot_option(uint16_t num)
{
	CHAR16 name[16];
	static const char hex[] = "0123456789ABCDEF";
	const CHAR16 prefix[] = u"Boot";
	for (unsigned i = 0; i < 4; i++)
		name[i] = prefix[i];
	for (unsigned i = 0; i < 4; i++)
		name[4 + i] = (CHAR16)hex[(num >> (12 - 4 * i)) & 15];
	name[8] = 0;
	static uint8_t opt[BM_OPTION_MAX];
	UINTN size = sizeof(opt);
	char what[96];
	efi_snprintf(what, sizeof(what), "Boot%04X", num);
	if (EFI_ERROR(bm_get_var(name, &bm_global, opt, &size))) {
		bm_fail(bm_record(what), "the entry is in BootOrder but its variable is missing");
		return;
	}
	/* EFI_LOAD_OPTION: Attributes, FilePathListLength, Description (NUL-terminated), paths, data. */
	if (size < 6 + 2) {
		bm_fail(bm_record(what), "the entry is malformed (%u bytes)", (unsigned)size);
		return;
	}
	uint32_t attr = efi_le32(opt);
	uint16_t fpl = efi_le16(opt + 4);
	size_t off = 6, d = 0;
	char desc[64];
	for (; off + 1 < size; off += 2) {
		uint16_t c = efi_le16(opt + off);
		if (!c)
			break;
		if (d + 1 < sizeof(desc))
			desc[d++] = c < 0x80 && c >= 0x20 ? (char)c : '?';
	}
	desc[d] = 0;
	off += 2;
	efi_snprintf(what, sizeof(what), "Boot%04X \"%s\"", num, desc);
	if (!(attr & LOAD_OPTION_ACTIVE))
		return;
	struct bm_attempt *a = bm_record(what);
	if (off > size || fpl > size - off || !fpl || efi_dp_size((EFI_DEVICE_PATH_PROTOCOL *)(opt + off), fpl) == 0) {
		bm_fail(a, "the entry's device path is malformed");
		return;
	}
	EFI_DEVICE_PATH_PROTOCOL *path = (EFI_DEVICE_PATH_PROTOCOL *)(opt + off);
	const void *data = opt + off + fpl;
	uint32_t data_size = (uint32_t)(size - off - fpl);
	fw_var_set(u"BootCurrent", &bm_global, EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
		   sizeof(num), &num);
	fw_host_event(FW_EV_BOOT_ENTRY, "%s", what);
	fw_printf("gen2vm firmware: booting %s\n", what);
	static const EFI_GUID ready = EFI_EVENT_GROUP_READY_TO_BOOT;
	fw_event_signal_group(&ready);
	char file[96];
	bm_path_file(path, file, sizeof(file));
	if (path->Type == MEDIA_DEVICE_PATH && (path->SubType == MEDIA_HARDDRIVE_DP || path->SubType == MEDIA_FILEPATH_DP))
		bm_boot_short(a, path, data, data_size, file);
	else if (efi_dp_find(path, MESSAGING_DEVICE_PATH, MSG_MAC_ADDR_DP)) /* a network adapter: its LoadFile */
		bm_boot_path(a, path, data, data_size, "the network boot file");
	else if (!efi_dp_find(path, MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP))
		bm_boot_device(a, path, data, data_size);
	else
		bm_boot_path(a, path, data, data_size, file); /* a failure's reason is recorded */
}

/* The description of Boot#### (ASCII, others '?'); false when the variable is missing or malformed. */
static bool bm_option_desc(uint16_t num, char *desc, size_t cap)
{
	CHAR16 name[9] = u"Boot0000";
	static const char hex[] = "0123456789ABCDEF";
	for (unsigned i = 0; i < 4; i++)
		name[4 + i] = (CHAR16)hex[(num >> (12 - 4 * i)) & 15];
	static uint8_t opt[BM_OPTION_MAX];
	UINTN size = sizeof(opt);
	if (EFI_ERROR(bm_get_var(name, &bm_global, opt, &size)) || size < 8)
		return false;
	size_t d = 0;
	for (size_t off = 6; off + 1 < size; off += 2) {
		uint16_t c = efi_le16(opt + off);
		if (!c)
			break;
		if (d + 1 < cap)
			desc[d++] = c < 0x80 && c >= 0x20 ? (char)c : '?';
	}
	desc[d] = 0;
	return true;
}

/* Whether the boot menu is wanted: Esc or F2 typed already (ahead of the firmware, e.g. `gen2vm
 * control SOCK key f2`), or within a window that is spent only when someone may be there to press
 * it: the UEFI Timeout variable's seconds when it is set and not 0 (0xFFFF: no end), else
 * BM_MENU_WINDOW_US while a viewer watches the screen (FW_OP_WATCHED). A console nobody watches
 * costs no boot time. Other keys are dropped. Only with a screen or the synthetic keyboard. */
static bool bm_menu_wanted(void)
{
	if (!fw_screen_present() && !fw_kbd_present())
		return false;
	uint16_t timeout = 0;
	UINTN size = sizeof(timeout);
	if (EFI_ERROR(bm_get_var(u"Timeout", &bm_global, &timeout, &size)) || size != sizeof(timeout))
		timeout = 0;
	struct fw_host_req r = { FW_OP_WATCHED, sizeof(r), 0 };
	uint64_t window = timeout == 0xffff ? UINT64_MAX
			  : timeout		? (uint64_t)timeout * 1000000u
			  : fw_host_call(&r) == EFI_SUCCESS ? BM_MENU_WINDOW_US
							    : 0;
	if (window)
		fw_printf("gen2vm firmware: press Esc or F2 for the boot menu\n");
	uint64_t start = fw_time_100ns() / 10;
	for (;;) {
		uint64_t el = fw_time_100ns() / 10 - start;
		EFI_INPUT_KEY k;
		uint64_t left = window == UINT64_MAX ? UINT64_MAX : window > el ? window - el : 0;
		if (fw_conio_read_key(&k, left) != EFI_SUCCESS)
			return false;
		if (k.ScanCode == SCAN_ESC || k.ScanCode == SCAN_F1 + 1)
			return true;
	}
}

/* The boot menu: BootOrder's first BM_MENU_MAX entries. Returns the index chosen in order[], or -1
 * (Esc, or nothing to choose). */
static int bm_menu(const uint16_t *order, unsigned n)
{
	EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *out = fw.st->ConOut;
	if (n > BM_MENU_MAX)
		n = BM_MENU_MAX;
	if (!n) {
		fw_printf("gen2vm firmware: boot menu: BootOrder is empty\n");
		return -1;
	}
	static char desc[BM_MENU_MAX][64];
	for (unsigned i = 0; i < n; i++)
		if (!bm_option_desc(order[i], desc[i], sizeof(desc[i])))
			efi_snprintf(desc[i], sizeof(desc[i]), "(missing)");
	const UINTN normal = EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK), hi = EFI_TEXT_ATTR(EFI_BLACK, EFI_LIGHTGRAY);
	unsigned sel = 0;
	for (;;) {
		out->SetAttribute(out, normal);
		out->ClearScreen(out);
		fw_printf("gen2vm boot menu\n\n");
		for (unsigned i = 0; i < n; i++) {
			out->SetAttribute(out, i == sel ? hi : normal);
			fw_printf(" %u. Boot%04X %-50s", i + 1, order[i], desc[i]);
			out->SetAttribute(out, normal);
			fw_printf("\n");
		}
		fw_printf("\nUp/Down or 1-%u choose, Enter boots, Esc goes on with the boot order\n", n);
		EFI_INPUT_KEY k;
		if (fw_conio_read_key(&k, UINT64_MAX) != EFI_SUCCESS)
			return -1;
		if (k.ScanCode == SCAN_UP)
			sel = (sel + n - 1) % n;
		else if (k.ScanCode == SCAN_DOWN)
			sel = (sel + 1) % n;
		else if (k.ScanCode == SCAN_ESC)
			return -1;
		else if (k.UnicodeChar >= '1' && k.UnicodeChar < '1' + n)
			sel = k.UnicodeChar - '1';
		else if (k.UnicodeChar == CHAR_CARRIAGE_RETURN)
			break;
	}
	out->ClearScreen(out);
	fw_host_event(FW_EV_LOG, "boot menu: Boot%04X \"%s\" chosen", order[sel], desc[sel]);
	return (int)sel;
}

/* PauseAfterBootFailure: wait for a key on the console or the host's "continue". */
static void bm_pause(void)
{
	uint8_t on = 0;
	UINTN size = sizeof(on);
	EFI_GUID vendor = GEN2VM_VENDOR_GUID;
	if (EFI_ERROR(bm_get_var(u"PauseAfterBootFailure", &vendor, &on, &size)) || !on)
		return;
	fw_printf("gen2vm firmware: boot failed; press a key (or run `gen2vm control SOCKET continue`) to try the "
		  "next boot entry\n");
	fw_host_event(FW_EV_LOG, "paused after a boot failure: waiting for a key or the host's \"continue\"");
	EFI_SIMPLE_TEXT_INPUT_PROTOCOL *in = fw.st ? fw.st->ConIn : NULL;
	struct fw_host_req r = { FW_OP_CONTINUE, sizeof(r), 0 };
	for (;;) {
		EFI_INPUT_KEY key;
		if (in && !EFI_ERROR(in->ReadKeyStroke(in, &key)))
			return;
		if (fw_host_call(&r) == EFI_SUCCESS)
			return;
		fw.bs->Stall(20000);
	}
}

void fw_bootmgr_run(void)
{
	if (fw.ho->image_size) {
		struct bm_attempt *a = bm_record("the image given with --efi");
		fw_host_event(FW_EV_BOOT_ENTRY, "%s", a->what);
		EFI_STATUS s = fw_image_start_handoff();
		if (s == EFI_SECURITY_VIOLATION && fw_image_refusal()[0])
			bm_fail(a, "it was refused by Secure Boot: %s", fw_image_refusal());
		else
			bm_fail(a, "it returned %s", bm_status(s));
	}
	uint16_t next = 0, order[128];
	UINTN size = sizeof(order);
	if (bm_menu_wanted()) {
		if (EFI_ERROR(bm_get_var(u"BootOrder", &bm_global, order, &size)))
			size = 0;
		int i = bm_menu(order, (unsigned)(size / 2));
		if (i >= 0) {
			bm_boot_option(order[i]);
			bm_pause();
		}
	}
	size = sizeof(next);
	if (!EFI_ERROR(bm_get_var(u"BootNext", &bm_global, &next, &size)) && size == 2) {
		/* BootNext is used once, whatever happens. */
		fw_var_set(u"BootNext", &bm_global, 0, 0, NULL);
		bm_boot_option(next);
		bm_pause();
	}
	size = sizeof(order);
	if (EFI_ERROR(bm_get_var(u"BootOrder", &bm_global, order, &size)))
		size = 0;
	for (UINTN i = 0; i < size / 2; i++) {
		unsigned before = bm_nr_tried;
		bm_boot_option(order[i]);
		if (bm_nr_tried != before && i + 1 < size / 2)
			bm_pause(); /* only when there is a next entry to go on with */
	}
	if (!size) {
		/* No boot order at all: every file system, removable-media path. */
		EFI_HANDLE *bs;
		UINTN nb = bm_handles(&bm_blk_guid, &bs);
		if (nb) {
			fw.bs->FreePool(bs);
			EFI_DEVICE_PATH_PROTOCOL end = { END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } };
			bm_boot_device(bm_record("every file system (no BootOrder)"), &end, NULL, 0);
		} else {
			bm_fail(bm_record("boot devices"), "the VM has no SCSI disk or DVD drive (give --disk or --dvd)");
		}
	}
	/* The summary, on the console and to the host. */
	static char summary[FW_EVENT_TEXT_MAX];
	size_t k = 0;
	if (!bm_nr_tried)
		k += (size_t)efi_snprintf(summary, sizeof(summary), "no boot entry to try (BootOrder is empty)\n");
	for (unsigned i = 0; i < bm_nr_tried && k < sizeof(summary); i++)
		k += (size_t)efi_snprintf(summary + k, sizeof(summary) - k, "  %u. %s: %s\n", i + 1, bm_tried[i].what,
					  bm_tried[i].why[0] ? bm_tried[i].why : "failed");
	if (k >= sizeof(summary))
		k = sizeof(summary) - 1;
	fw_printf("gen2vm firmware: no operating system was loaded. Boot summary:\n%s", summary);
	static struct {
		struct fw_event_req ev;
		char text[FW_EVENT_TEXT_MAX];
	} rep __attribute__((aligned(16)));
	rep.ev.hdr.op = FW_OP_BOOT_FAILED;
	rep.ev.hdr.size = (uint32_t)(sizeof(rep.ev) + k);
	rep.ev.code = 0;
	rep.ev.len = (uint32_t)k;
	efi_memcpy(rep.text, summary, k);
	fw_host_call(&rep.ev);
}
