/* The console, configuration table, RNG and DevicePathToText protocols as an OS loader uses them,
 * inside the VM (firmware/conio.c, firmware/tables.c), plus the VMM's time and entropy host calls
 * (src/platform/fw_misc.c). Each check prints "con_test: ok NAME" or "con_test: FAIL NAME ..." on the
 * debug console; the VM ends through the debug exit port with the number of failures.
 * With the load options "keys" (--cmdline keys), it then prints "con_test: press keys" and expects
 * from COM1, in order: 'a', Up, F12, Esc (alone), U+00E9 and Enter, each waited for with
 * WaitForEvent on WaitForKeyEx and read with ReadKeyStrokeEx. Started with --uuid
 * 12345678-1234-5678-9abc-def012345678 it checks SMBIOS type 1 carries that UUID. */
#include "efiapp.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/fw.h"
#include "gen2vm/proto/smbios.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

static unsigned fails;

static void check(bool ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(bool ok, const char *name, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (ok) {
		app_printf("con_test: ok %s\n", name);
	} else {
		fails++;
		app_printf("con_test: FAIL %s %s\n", name, buf);
	}
}

static bool str16_eq(const CHAR16 *a, const CHAR16 *b)
{
	for (; *a && *a == *b; a++, b++)
		;
	return *a == *b;
}

static void test_conout(EFI_SYSTEM_TABLE *st)
{
	EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *co = st->ConOut;
	check(co && st->StdErr == co && st->ConsoleOutHandle, "conout.present", "ConOut %p StdErr %p handle %p",
	      (void *)co, st->StdErr, st->ConsoleOutHandle);
	if (!co)
		return;
	EFI_GUID g = EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL_GUID;
	void *iface = NULL;
	EFI_STATUS s = app_bs->HandleProtocol(st->ConsoleOutHandle, &g, &iface);
	check(!s && iface == co, "conout.handle", "HandleProtocol 0x%llx %p", (unsigned long long)s, iface);
	SIMPLE_TEXT_OUTPUT_MODE *m = co->Mode;
	UINTN c = 0, r = 0;
	s = co->QueryMode(co, 0, &c, &r);
	check(!s && c == 80 && r == 25 && m->MaxMode >= 2, "conout.querymode", "0x%llx %llux%llu max %d",
	      (unsigned long long)s, (unsigned long long)c, (unsigned long long)r, m->MaxMode);
	s = co->QueryMode(co, (UINTN)m->MaxMode, &c, &r);
	check(s == EFI_UNSUPPORTED, "conout.querymode.bad", "0x%llx", (unsigned long long)s);
	s = co->SetMode(co, 1);
	check(!s && m->Mode == 1 && m->CursorColumn == 0 && m->CursorRow == 0, "conout.setmode", "0x%llx mode %d",
	      (unsigned long long)s, m->Mode);
	check(co->SetMode(co, 99) == EFI_UNSUPPORTED && m->Mode == 1, "conout.setmode.bad", "mode %d", m->Mode);
	co->SetMode(co, 0);
	s = co->SetAttribute(co, EFI_TEXT_ATTR(EFI_WHITE, EFI_BLUE));
	check(!s && m->Attribute == 0x1f, "conout.setattribute", "0x%llx attr 0x%x", (unsigned long long)s,
	      m->Attribute);
	check(co->SetAttribute(co, 0x80) == EFI_UNSUPPORTED && m->Attribute == 0x1f, "conout.setattribute.bad", "-");
	co->SetAttribute(co, EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK));
	s = co->SetCursorPosition(co, 10, 5);
	check(!s && m->CursorColumn == 10 && m->CursorRow == 5, "conout.cursor", "0x%llx %d,%d", (unsigned long long)s,
	      m->CursorColumn, m->CursorRow);
	check(co->SetCursorPosition(co, 80, 0) == EFI_UNSUPPORTED, "conout.cursor.bad", "-");
	s = co->OutputString(co, u"con_test: caf\u00e9 \u2500\u2500 \u20ac\r\n");
	check(!s && m->CursorColumn == 0 && m->CursorRow == 6, "conout.output", "0x%llx %d,%d", (unsigned long long)s,
	      m->CursorColumn, m->CursorRow);
	CHAR16 bad[] = { 'x', 0xd800, 0 };
	check(co->TestString(co, u"ok \u00e9") == EFI_SUCCESS && co->TestString(co, bad) == EFI_UNSUPPORTED,
	      "conout.teststring", "-");
	check(co->EnableCursor(co, 0) == EFI_SUCCESS && m->CursorVisible == 0, "conout.cursor.hide", "-");
	co->EnableCursor(co, 1);
}

static void test_conin(EFI_SYSTEM_TABLE *st)
{
	EFI_SIMPLE_TEXT_INPUT_PROTOCOL *ci = st->ConIn;
	check(ci && st->ConsoleInHandle && ci->WaitForKey, "conin.present", "%p", (void *)ci);
	if (!ci)
		return;
	EFI_INPUT_KEY k;
	EFI_STATUS s = ci->ReadKeyStroke(ci, &k);
	check(s == EFI_NOT_READY, "conin.empty", "0x%llx", (unsigned long long)s);
	s = app_bs->CheckEvent(ci->WaitForKey);
	check(s == EFI_NOT_READY, "conin.checkevent", "0x%llx", (unsigned long long)s);
	EFI_GUID g = EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL_GUID;
	EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *ex = NULL;
	s = app_bs->HandleProtocol(st->ConsoleInHandle, &g, (void **)&ex);
	check(!s && ex && ex->WaitForKeyEx, "conin.ex", "0x%llx", (unsigned long long)s);
}

static void test_keys(EFI_SYSTEM_TABLE *st)
{
	EFI_GUID g = EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL_GUID;
	EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *ex = NULL;
	if (app_bs->HandleProtocol(st->ConsoleInHandle, &g, (void **)&ex) || !ex)
		return check(false, "keys", "no SimpleTextInputEx");
	static const EFI_INPUT_KEY want[] = { { 0, 'a' }, { SCAN_UP, 0 }, { SCAN_F12, 0 }, { SCAN_ESC, 0 },
					      { 0, 0xe9 }, { 0, CHAR_CARRIAGE_RETURN } };
	app_printf("con_test: press keys\n");
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		UINTN idx;
		EFI_STATUS s = app_bs->WaitForEvent(1, &ex->WaitForKeyEx, &idx);
		EFI_KEY_DATA kd = { { 0xffff, 0xffff }, { 1, 1 } };
		EFI_STATUS r = ex->ReadKeyStrokeEx(ex, &kd);
		check(!s && !r && kd.Key.ScanCode == want[i].ScanCode && kd.Key.UnicodeChar == want[i].UnicodeChar &&
			      kd.KeyState.KeyShiftState == 0,
		      "keys.key", "#%u wait 0x%llx read 0x%llx scan %u char 0x%x", i, (unsigned long long)s,
		      (unsigned long long)r, kd.Key.ScanCode, kd.Key.UnicodeChar);
	}
}

static void test_rng(void)
{
	EFI_GUID g = EFI_RNG_PROTOCOL_GUID, raw = EFI_RNG_ALGORITHM_RAW, other = EFI_GLOBAL_VARIABLE_GUID;
	EFI_RNG_PROTOCOL *rng = NULL;
	EFI_STATUS s = app_bs->LocateProtocol(&g, NULL, (void **)&rng);
	check(!s && rng, "rng.present", "0x%llx", (unsigned long long)s);
	if (!rng)
		return;
	UINTN size = 0;
	s = rng->GetInfo(rng, &size, NULL);
	check(s == EFI_BUFFER_TOO_SMALL && size == 16, "rng.getinfo.size", "0x%llx %llu", (unsigned long long)s,
	      (unsigned long long)size);
	EFI_RNG_ALGORITHM list[4];
	size = sizeof(list);
	s = rng->GetInfo(rng, &size, list);
	check(!s && size == 16 && efi_guid_eq(&list[0], &raw), "rng.getinfo", "0x%llx", (unsigned long long)s);
	static uint8_t a[32], b[32], big[5000];
	s = rng->GetRNG(rng, NULL, sizeof(a), a);
	EFI_STATUS s2 = rng->GetRNG(rng, &raw, sizeof(b), b);
	unsigned nz = 0;
	for (unsigned i = 0; i < sizeof(a); i++)
		nz += a[i] != 0;
	check(!s && !s2 && nz > 20 && efi_memcmp(a, b, sizeof(a)), "rng.getrng", "0x%llx 0x%llx nz %u",
	      (unsigned long long)s, (unsigned long long)s2, nz);
	s = rng->GetRNG(rng, &raw, sizeof(big), big);
	nz = 0;
	for (unsigned i = 4096; i < sizeof(big); i++)
		nz += big[i] != 0;
	check(!s && nz > 800, "rng.getrng.big", "0x%llx nz %u", (unsigned long long)s, nz);
	check(rng->GetRNG(rng, &other, 8, a) == EFI_UNSUPPORTED && rng->GetRNG(rng, NULL, 0, a) == EFI_INVALID_PARAMETER,
	      "rng.getrng.bad", "-");
}

static void test_tables(EFI_SYSTEM_TABLE *st)
{
	EFI_GUID acpi20 = EFI_ACPI_20_TABLE_GUID, acpi10 = EFI_ACPI_10_TABLE_GUID, smbios3 = EFI_SMBIOS3_TABLE_GUID;
	const uint8_t *rsdp = NULL, *rsdp1 = NULL, *ep = NULL;
	for (UINTN i = 0; i < st->NumberOfTableEntries; i++) {
		EFI_CONFIGURATION_TABLE *t = &st->ConfigurationTable[i];
		if (efi_guid_eq(&t->VendorGuid, &acpi20))
			rsdp = t->VendorTable;
		else if (efi_guid_eq(&t->VendorGuid, &acpi10))
			rsdp1 = t->VendorTable;
		else if (efi_guid_eq(&t->VendorGuid, &smbios3))
			ep = t->VendorTable;
	}
	check(rsdp && !efi_memcmp(rsdp, "RSD PTR ", 8) && rsdp[15] >= 2, "tables.acpi20", "%p", (const void *)rsdp);
	check(rsdp1 && !efi_memcmp(rsdp1, "RSD PTR ", 8), "tables.acpi10", "%p", (const void *)rsdp1);
	check(ep && !efi_memcmp(ep, "_SM3_", 5), "tables.smbios3", "%p", (const void *)ep);
	if (!ep)
		return;
	struct smbios3_entry e;
	efi_memcpy(&e, ep, sizeof(e));
	uint8_t sum = 0;
	for (unsigned i = 0; i < e.length; i++)
		sum = (uint8_t)(sum + ep[i]);
	check(sum == 0 && e.major == 3, "tables.smbios3.entry", "sum %u major %u", sum, e.major);
	const uint8_t *p = (const uint8_t *)(uintptr_t)e.table_address, *end = p + e.table_max_size;
	const uint8_t *t1 = NULL;
	unsigned types = 0;
	while (p + 4 <= end && p[0] != 127) {
		if (p[0] == 1)
			t1 = p;
		if (p[0] < 32)
			types |= 1u << p[0];
		const uint8_t *q = p + p[1];
		while (q + 1 < end && (q[0] || q[1]))
			q++;
		p = q + 2;
	}
	check(p + 4 <= end && p[0] == 127 && (types & 0x1b) == 0x1b, "tables.smbios3.walk", "types 0x%x", types);
	static const uint8_t want[16] = { 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56,
					  0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78 };
	check(t1 && !efi_memcmp(t1 + 8, want, 16), "tables.smbios3.uuid", "-");
}

static void test_dp_text(void)
{
	EFI_GUID g = EFI_DEVICE_PATH_TO_TEXT_PROTOCOL_GUID;
	EFI_DEVICE_PATH_TO_TEXT_PROTOCOL *dt = NULL;
	EFI_STATUS s = app_bs->LocateProtocol(&g, NULL, (void **)&dt);
	check(!s && dt, "dptext.present", "0x%llx", (unsigned long long)s);
	if (!dt)
		return;
	static const uint8_t path[] = {
		MESSAGING_DEVICE_PATH, MSG_SCSI_DP, 8, 0, 0, 0, 1, 0, /* Scsi(0x0,0x1) */
		MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, 14, 0, '\\', 0, 'E', 0, 'F', 0, 'I', 0, 0, 0,
		END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, 4, 0,
	};
	CHAR16 *t = dt->ConvertDevicePathToText((const EFI_DEVICE_PATH_PROTOCOL *)path, 0, 0);
	check(t && str16_eq(t, u"Scsi(0x0,0x1)/\\EFI"), "dptext.path", "-");
	if (t)
		app_bs->FreePool(t);
	t = dt->ConvertDeviceNodeToText((const EFI_DEVICE_PATH_PROTOCOL *)path, 0, 0);
	check(t && str16_eq(t, u"Scsi(0x0,0x1)"), "dptext.node", "-");
	if (t)
		app_bs->FreePool(t);
}

/* ---- the VMM's host calls, made directly ---- */

static EFI_STATUS host_call(void *req)
{
	struct fw_host_req *h = req;
	h->status = EFI_DEVICE_ERROR;
	__asm__ volatile("outl %0, %1" : : "a"((uint32_t)(uintptr_t)req), "Nd"((uint16_t)FW_HOST_PORT) : "memory");
	return *(volatile uint64_t *)&h->status;
}

static void test_host_time(void)
{
	static struct fw_time_req r __attribute__((aligned(8)));
	efi_memset(&r, 0, sizeof(r));
	r.hdr = (struct fw_host_req){ FW_OP_TIME_GET, sizeof(r), 0 };
	EFI_STATUS s = host_call(&r);
	check(!s && r.year >= 2024 && r.month >= 1 && r.month <= 12, "host.time.get", "0x%llx %u-%u-%u",
	      (unsigned long long)s, r.year, r.month, r.day);
	efi_memset(&r, 0, sizeof(r));
	r.hdr = (struct fw_host_req){ FW_OP_TIME_SET, sizeof(r), 0 };
	r.year = 2030, r.month = 6, r.day = 15, r.hour = 12;
	s = host_call(&r);
	efi_memset(&r, 0, sizeof(r));
	r.hdr = (struct fw_host_req){ FW_OP_TIME_GET, sizeof(r), 0 };
	EFI_STATUS s2 = host_call(&r);
	check(!s && !s2 && r.year == 2030 && r.month == 6 && r.day == 15 && r.hour == 12, "host.time.set",
	      "0x%llx %u-%u-%u %u", (unsigned long long)s, r.year, r.month, r.day, r.hour);
	r.hdr = (struct fw_host_req){ FW_OP_TIME_SET, sizeof(r), 0 };
	r.month = 13;
	check(host_call(&r) == EFI_INVALID_PARAMETER, "host.time.bad", "-");
}

/* GetTime/SetTime of the runtime services reach the same clock. */
static void test_rt_time(EFI_SYSTEM_TABLE *st)
{
	EFI_RUNTIME_SERVICES *rt = st->RuntimeServices;
	if (!rt || !rt->GetTime)
		return check(false, "rt.time", "no runtime services");
	EFI_TIME t;
	efi_memset(&t, 0, sizeof(t));
	EFI_STATUS s = rt->GetTime(&t, NULL);
	check(!s && t.Year == 2030 && t.Month == 6 && t.Day == 15, "rt.time.get", "0x%llx %u-%u-%u",
	      (unsigned long long)s, t.Year, t.Month, t.Day);
	t.Year = 2031;
	s = rt->SetTime(&t);
	efi_memset(&t, 0, sizeof(t));
	EFI_STATUS s2 = rt->GetTime(&t, NULL);
	check(!s && !s2 && t.Year == 2031 && t.Month == 6, "rt.time.set", "0x%llx 0x%llx %u-%u",
	      (unsigned long long)s, (unsigned long long)s2, t.Year, t.Month);
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	test_conout(st);
	test_conin(st);
	test_rng();
	test_tables(st);
	test_dp_text();
	test_host_time();
	test_rt_time(st);
	EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	if (!app_bs->HandleProtocol(image, &li_guid, (void **)&li) && li && li->LoadOptionsSize >= 8 &&
	    str16_eq(li->LoadOptions, u"keys"))
		test_keys(st);
	app_printf("con_test: %u failures\n", fails);
	app_exit_vm(fails);
	return fails ? EFI_ABORTED : EFI_SUCCESS; /* without the debug exit port */
}
