/* Exercises the firmware's boot services (and the runtime services that exist) from inside the VM,
 * as an OS loader would use them. One "PASS name" or "FAIL name: why" line per check on the debug
 * console, then the number of failures through the debug exit port (0: all passed).
 * Run by tests/integration/test_fw_services.py:
 *   gen2vm run --debugcon file:LOG --efi build/efi/svc_test.efi --cmdline "svc-test é" */
#include "efiapp.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

/* hello.efi, embedded at build time (LoadImage from a buffer). */
__asm__(".section .rodata\n.balign 16\n.globl hello_efi\n.hidden hello_efi\nhello_efi:\n"
	".incbin \"" HELLO_EFI_PATH "\"\n.globl hello_efi_end\n.hidden hello_efi_end\nhello_efi_end:\n.text\n");
extern const uint8_t hello_efi[], hello_efi_end[];

static unsigned passed, failed;
static char why[256];
static char sbuf[32];

#define FAILF(...)                                              \
	do {                                                    \
		efi_snprintf(why, sizeof(why), __VA_ARGS__);    \
		return why;                                     \
	} while (0)
#define REQUIRE(cond, ...)                  \
	do {                                \
		if (!(cond))                \
			FAILF(__VA_ARGS__); \
	} while (0)
#define EXPECT(expr, want)                                                                                 \
	do {                                                                                               \
		EFI_STATUS s_ = (expr);                                                                    \
		if (s_ != (want))                                                                          \
			FAILF("line %d: %s gave %s", __LINE__, #expr, efi_status_str(s_, sbuf));           \
	} while (0)
#define OK(expr) EXPECT(expr, EFI_SUCCESS)

static void run(const char *name, const char *(*fn)(void))
{
	const char *err = fn();
	if (err) {
		failed++;
		app_printf("FAIL %s: %s\n", name, err);
	} else {
		passed++;
		app_printf("PASS %s\n", name);
	}
}

static EFI_GUID guid_a = EFI_GUID_INIT(0x1e9c4b2a, 0x5f11, 0x4d2e, 0x9a, 0x01, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60);
static EFI_GUID guid_b = EFI_GUID_INIT(0x1e9c4b2b, 0x5f11, 0x4d2e, 0x9a, 0x01, 0x10, 0x20, 0x30, 0x40, 0x50, 0x61);
static EFI_GUID guid_c = EFI_GUID_INIT(0x1e9c4b2c, 0x5f11, 0x4d2e, 0x9a, 0x01, 0x10, 0x20, 0x30, 0x40, 0x50, 0x62);
static EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static EFI_GUID lidp_guid = EFI_LOADED_IMAGE_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID lf2_guid = EFI_LOAD_FILE2_PROTOCOL_GUID;
static EFI_GUID ebs_group = EFI_EVENT_GROUP_EXIT_BOOT_SERVICES;

static bool table_crc_ok(const EFI_TABLE_HEADER *h)
{
	uint8_t copy[512];
	if (h->HeaderSize > sizeof(copy) || h->HeaderSize < sizeof(*h))
		return false;
	efi_memcpy(copy, h, h->HeaderSize);
	((EFI_TABLE_HEADER *)copy)->CRC32 = 0;
	return efi_crc32(copy, h->HeaderSize) == h->CRC32;
}

/* ---- tables ---- */

static const char *t_system_table(void)
{
	EFI_SYSTEM_TABLE *st = app_st;
	REQUIRE(st->Hdr.Signature == EFI_SYSTEM_TABLE_SIGNATURE, "signature 0x%llx", (unsigned long long)st->Hdr.Signature);
	REQUIRE(st->Hdr.Revision >= ((2u << 16) | 70), "revision 0x%x", st->Hdr.Revision);
	REQUIRE(st->Hdr.HeaderSize == sizeof(*st), "header size %u", st->Hdr.HeaderSize);
	REQUIRE(table_crc_ok(&st->Hdr), "system table CRC 0x%x is wrong", st->Hdr.CRC32);
	REQUIRE(st->FirmwareVendor && st->FirmwareVendor[0] == 'g', "FirmwareVendor");
	REQUIRE(st->FirmwareRevision, "FirmwareRevision 0");
	REQUIRE(st->BootServices, "no BootServices");
	REQUIRE(st->NumberOfTableEntries == 0 || st->ConfigurationTable, "ConfigurationTable NULL");
	return NULL;
}

static const char *t_boot_services_table(void)
{
	EFI_BOOT_SERVICES *bs = app_bs;
	REQUIRE(bs->Hdr.Signature == EFI_BOOT_SERVICES_SIGNATURE, "signature");
	REQUIRE(bs->Hdr.HeaderSize == sizeof(*bs), "header size %u", bs->Hdr.HeaderSize);
	REQUIRE(table_crc_ok(&bs->Hdr), "boot services CRC is wrong");
	void *const *slot = (void *const *)((const uint8_t *)bs + sizeof(EFI_TABLE_HEADER));
	for (unsigned i = 0; i < 44; i++)
		REQUIRE(slot[i] || (void *)&slot[i] == (void *)&bs->Reserved, "service #%u is NULL", i);
	return NULL;
}

/* ---- memory ---- */

static EFI_MEMORY_DESCRIPTOR *get_map(UINTN *size, UINTN *key, UINTN *dsize)
{
	UINTN sz = 0;
	uint32_t ver;
	EFI_MEMORY_DESCRIPTOR *map = NULL;
	if (app_bs->GetMemoryMap(&sz, NULL, key, dsize, &ver) != EFI_BUFFER_TOO_SMALL)
		return NULL;
	sz += 4 * *dsize; /* the pool allocation may split a range */
	if (EFI_ERROR(app_bs->AllocatePool(EfiLoaderData, sz, (void **)&map)))
		return NULL;
	if (EFI_ERROR(app_bs->GetMemoryMap(&sz, map, key, dsize, &ver)) || ver != EFI_MEMORY_DESCRIPTOR_VERSION) {
		app_bs->FreePool(map);
		return NULL;
	}
	*size = sz;
	return map;
}

#define DESC(map, i, ds) ((EFI_MEMORY_DESCRIPTOR *)((uint8_t *)(map) + (i) * (ds)))

static int64_t type_at(EFI_MEMORY_DESCRIPTOR *map, UINTN size, UINTN ds, uint64_t addr, uint64_t *attr)
{
	for (UINTN i = 0; i < size / ds; i++) {
		EFI_MEMORY_DESCRIPTOR *d = DESC(map, i, ds);
		if (addr >= d->PhysicalStart && addr < d->PhysicalStart + d->NumberOfPages * 4096) {
			if (attr)
				*attr = d->Attribute;
			return d->Type;
		}
	}
	return -1;
}

static const char *t_memory_map(void)
{
	UINTN size, key, ds;
	EFI_MEMORY_DESCRIPTOR *map = get_map(&size, &key, &ds);
	REQUIRE(map, "GetMemoryMap failed");
	REQUIRE(ds >= sizeof(EFI_MEMORY_DESCRIPTOR), "descriptor size %llu", (unsigned long long)ds);
	uint64_t conv = 0, prev_end = 0;
	bool rt_code = false, rt_attr = true;
	for (UINTN i = 0; i < size / ds; i++) {
		EFI_MEMORY_DESCRIPTOR *d = DESC(map, i, ds);
		if (d->PhysicalStart < prev_end || (d->PhysicalStart & 4095) || !d->NumberOfPages) {
			app_bs->FreePool(map);
			FAILF("descriptor %llu (0x%llx) unsorted, overlapping or empty", (unsigned long long)i,
			      (unsigned long long)d->PhysicalStart);
		}
		prev_end = d->PhysicalStart + d->NumberOfPages * 4096;
		if (d->Type == EfiConventionalMemory)
			conv += d->NumberOfPages;
		if (d->Type == EfiRuntimeServicesCode)
			rt_code = true;
		if ((d->Type == EfiRuntimeServicesCode || d->Type == EfiRuntimeServicesData) &&
		    !(d->Attribute & EFI_MEMORY_RUNTIME))
			rt_attr = false;
	}
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	app_bs->HandleProtocol(app_image, &li_guid, (void **)&li);
	int64_t own = li ? type_at(map, size, ds, (uint64_t)(uintptr_t)li->ImageBase, NULL) : -1;
	app_bs->FreePool(map);
	REQUIRE(conv > 1024, "only %llu free pages", (unsigned long long)conv);
	REQUIRE(rt_code, "no EfiRuntimeServicesCode range (the firmware image)");
	REQUIRE(rt_attr, "a runtime range lacks EFI_MEMORY_RUNTIME");
	REQUIRE(own == EfiLoaderCode, "this image's pages are type %lld, not EfiLoaderCode", (long long)own);
	return NULL;
}

static const char *t_pages(void)
{
	UINTN size, key1, key2, ds;
	EFI_MEMORY_DESCRIPTOR *map = get_map(&size, &key1, &ds);
	REQUIRE(map, "GetMemoryMap");
	app_bs->FreePool(map);
	EFI_PHYSICAL_ADDRESS a = 0;
	OK(app_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 4, &a));
	REQUIRE(a && !(a & 4095), "address 0x%llx", (unsigned long long)a);
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a;
	p[0] = 0x1122334455667788ull;
	p[2047] = 42;
	REQUIRE(p[0] == 0x1122334455667788ull && p[2047] == 42, "memory does not hold what was written");
	map = get_map(&size, &key2, &ds);
	REQUIRE(map, "GetMemoryMap");
	int64_t t = type_at(map, size, ds, a, NULL);
	app_bs->FreePool(map);
	REQUIRE(t == EfiLoaderData, "allocated pages have type %lld", (long long)t);
	REQUIRE(key1 != key2, "the map key did not change after AllocatePages");
	OK(app_bs->FreePages(a, 4));
	EXPECT(app_bs->FreePages(a, 4), EFI_NOT_FOUND);
	EFI_PHYSICAL_ADDRESS b = a;
	OK(app_bs->AllocatePages(AllocateAddress, EfiLoaderData, 4, &b));
	REQUIRE(b == a, "AllocateAddress moved");
	EFI_PHYSICAL_ADDRESS c = a;
	EXPECT(app_bs->AllocatePages(AllocateAddress, EfiLoaderData, 1, &c), EFI_NOT_FOUND);
	OK(app_bs->FreePages(b, 4));
	EFI_PHYSICAL_ADDRESS m = 0xffffff;
	OK(app_bs->AllocatePages(AllocateMaxAddress, EfiBootServicesData, 2, &m));
	REQUIRE(m + 2 * 4096 - 1 <= 0xffffff, "AllocateMaxAddress gave 0x%llx", (unsigned long long)m);
	OK(app_bs->FreePages(m, 2));
	EXPECT(app_bs->AllocatePages(AllocateAnyPages, EfiConventionalMemory, 1, &a), EFI_INVALID_PARAMETER);
	EXPECT(app_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 1ull << 40, &a), EFI_OUT_OF_RESOURCES);
	return NULL;
}

static const char *t_high_memory(void)
{
	UINTN size, key, ds;
	EFI_MEMORY_DESCRIPTOR *map = get_map(&size, &key, &ds);
	REQUIRE(map, "GetMemoryMap");
	uint64_t top = 0;
	for (UINTN i = 0; i < size / ds; i++) {
		EFI_MEMORY_DESCRIPTOR *d = DESC(map, i, ds);
		if (d->Type == EfiConventionalMemory && d->PhysicalStart >= (1ull << 32))
			top = d->PhysicalStart + d->NumberOfPages * 4096;
	}
	app_bs->FreePool(map);
	if (!top) {
		app_printf("svc_test: no RAM above 4 GiB in this VM\n");
		return NULL;
	}
	EFI_PHYSICAL_ADDRESS a = top - 4096;
	OK(app_bs->AllocatePages(AllocateAddress, EfiLoaderData, 1, &a));
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a;
	p[0] = 0xfeedface12345678ull;
	p[511] = a;
	REQUIRE(p[0] == 0xfeedface12345678ull && p[511] == a, "RAM at 0x%llx does not hold data", (unsigned long long)a);
	app_printf("svc_test: above 4 GiB: wrote and read 0x%llx\n", (unsigned long long)a);
	OK(app_bs->FreePages(a, 1));
	return NULL;
}

static const char *t_pool(void)
{
	void *small = NULL, *big = NULL;
	OK(app_bs->AllocatePool(EfiLoaderData, 100, &small));
	OK(app_bs->AllocatePool(EfiBootServicesData, 20000, &big));
	REQUIRE(small && big && !((uintptr_t)small & 7) && !((uintptr_t)big & 7), "pool buffers misaligned");
	efi_memset(small, 0xa5, 100);
	efi_memset(big, 0x5a, 20000);
	REQUIRE(((uint8_t *)small)[99] == 0xa5 && ((uint8_t *)big)[19999] == 0x5a, "pool memory");
	OK(app_bs->FreePool(small));
	OK(app_bs->FreePool(big));
	uint8_t local[32];
	EXPECT(app_bs->FreePool(local + 16), EFI_INVALID_PARAMETER);
	return NULL;
}

/* ---- protocols ---- */

static int notify_hits;
static void EFIAPI count_notify(EFI_EVENT e, void *ctx)
{
	(*(int *)ctx)++;
}

static const char *t_protocols(void)
{
	static int iface_a, iface_a2, iface_b, iface_c;
	EFI_HANDLE h = NULL;
	void *p = NULL;
	OK(app_bs->InstallProtocolInterface(&h, &guid_a, EFI_NATIVE_INTERFACE, &iface_a));
	REQUIRE(h, "no handle");
	OK(app_bs->HandleProtocol(h, &guid_a, &p));
	REQUIRE(p == &iface_a, "HandleProtocol gave another interface");
	EXPECT(app_bs->HandleProtocol(h, &guid_b, &p), EFI_UNSUPPORTED);
	OK(app_bs->LocateProtocol(&guid_a, NULL, &p));
	REQUIRE(p == &iface_a, "LocateProtocol");
	UINTN sz = 0;
	EFI_HANDLE hs[4];
	EXPECT(app_bs->LocateHandle(ByProtocol, &guid_a, NULL, &sz, NULL), EFI_BUFFER_TOO_SMALL);
	REQUIRE(sz == sizeof(EFI_HANDLE), "LocateHandle size %llu", (unsigned long long)sz);
	OK(app_bs->LocateHandle(ByProtocol, &guid_a, NULL, &sz, hs));
	REQUIRE(hs[0] == h, "LocateHandle");
	UINTN n = 0;
	EFI_HANDLE *buf = NULL;
	OK(app_bs->LocateHandleBuffer(AllHandles, NULL, NULL, &n, &buf));
	REQUIRE(n >= 2 && buf, "LocateHandleBuffer(AllHandles) gave %llu", (unsigned long long)n);
	OK(app_bs->FreePool(buf));
	/* Open/close and the open information. */
	OK(app_bs->OpenProtocol(h, &guid_a, &p, app_image, h, EFI_OPEN_PROTOCOL_BY_DRIVER));
	EXPECT(app_bs->OpenProtocol(h, &guid_a, &p, app_image, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_ALREADY_STARTED);
	OK(app_bs->OpenProtocol(h, &guid_a, NULL, NULL, NULL, EFI_OPEN_PROTOCOL_TEST_PROTOCOL));
	EFI_OPEN_PROTOCOL_INFORMATION_ENTRY *info = NULL;
	OK(app_bs->OpenProtocolInformation(h, &guid_a, &info, &n));
	bool by_driver = false; /* HandleProtocol's own BY_HANDLE_PROTOCOL open is listed too */
	for (UINTN k = 0; k < n; k++)
		by_driver |= info[k].AgentHandle == app_image && info[k].ControllerHandle == h &&
			     info[k].Attributes == EFI_OPEN_PROTOCOL_BY_DRIVER && info[k].OpenCount == 1;
	REQUIRE(by_driver, "OpenProtocolInformation: no BY_DRIVER entry among %llu", (unsigned long long)n);
	OK(app_bs->FreePool(info));
	OK(app_bs->CloseProtocol(h, &guid_a, app_image, h));
	EXPECT(app_bs->CloseProtocol(h, &guid_a, app_image, h), EFI_NOT_FOUND);
	OK(app_bs->ReinstallProtocolInterface(h, &guid_a, &iface_a, &iface_a2));
	OK(app_bs->HandleProtocol(h, &guid_a, &p));
	REQUIRE(p == &iface_a2, "Reinstall did not take");
	/* The variadic pair (UEFI's ms_abi varargs). */
	OK(app_bs->InstallMultipleProtocolInterfaces(&h, &guid_b, &iface_b, &guid_c, &iface_c, NULL));
	EFI_GUID **guids = NULL;
	OK(app_bs->ProtocolsPerHandle(h, &guids, &n));
	REQUIRE(n == 3, "ProtocolsPerHandle: %llu protocols", (unsigned long long)n);
	OK(app_bs->FreePool(guids));
	EXPECT(app_bs->UninstallMultipleProtocolInterfaces(h, &guid_b, &iface_b, &guid_c, &iface_a, NULL),
	       EFI_INVALID_PARAMETER);
	OK(app_bs->HandleProtocol(h, &guid_b, &p)); /* all or nothing */
	OK(app_bs->UninstallMultipleProtocolInterfaces(h, &guid_b, &iface_b, &guid_c, &iface_c, NULL));
	OK(app_bs->UninstallProtocolInterface(h, &guid_a, &iface_a2));
	EXPECT(app_bs->HandleProtocol(h, &guid_a, &p), EFI_INVALID_PARAMETER); /* the handle is gone */
	return NULL;
}

static const char *t_protocol_notify(void)
{
	static int iface;
	EFI_EVENT ev;
	void *reg = NULL;
	int hits = 0;
	OK(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count_notify, &hits, &ev));
	OK(app_bs->RegisterProtocolNotify(&guid_c, ev, &reg));
	EFI_HANDLE h = NULL;
	OK(app_bs->InstallProtocolInterface(&h, &guid_c, EFI_NATIVE_INTERFACE, &iface));
	REQUIRE(hits == 1, "notify ran %d times", hits);
	EFI_HANDLE found[2];
	UINTN sz = sizeof(found);
	OK(app_bs->LocateHandle(ByRegisterNotify, NULL, reg, &sz, found));
	REQUIRE(found[0] == h, "ByRegisterNotify gave another handle");
	EXPECT(app_bs->LocateHandle(ByRegisterNotify, NULL, reg, &sz, found), EFI_NOT_FOUND);
	OK(app_bs->UninstallProtocolInterface(h, &guid_c, &iface));
	OK(app_bs->CloseEvent(ev));
	return NULL;
}

static struct {
	VENDOR_DEVICE_PATH ven;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed)) test_dp = {
	{ { HARDWARE_DEVICE_PATH, HW_VENDOR_DP, { 20, 0 } },
	  EFI_GUID_INIT(0x7a0d1e55, 0x1234, 0x4abc, 0x81, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77) },
	{ END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } },
};

static const char *t_device_path_and_controllers(void)
{
	static int iface;
	EFI_HANDLE h = NULL, dev = NULL;
	OK(app_bs->InstallMultipleProtocolInterfaces(&h, &dp_guid, &test_dp, &guid_b, &iface, NULL));
	struct {
		VENDOR_DEVICE_PATH ven;
		EFI_DEVICE_PATH_PROTOCOL file;
		CHAR16 name[2];
		EFI_DEVICE_PATH_PROTOCOL end;
	} __attribute__((packed)) longer = { test_dp.ven, { MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, { 8, 0 } }, { 'x', 0 },
					     { END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } } };
	EFI_DEVICE_PATH_PROTOCOL *rem = &longer.ven.Header;
	OK(app_bs->LocateDevicePath(&guid_b, &rem, &dev));
	REQUIRE(dev == h && rem == &longer.file, "LocateDevicePath: wrong handle or remaining path");
	EFI_HANDLE other = NULL; /* the same device path twice: UEFI 7.3 says EFI_ALREADY_STARTED */
	EXPECT(app_bs->InstallMultipleProtocolInterfaces(&other, &dp_guid, &test_dp, NULL), EFI_ALREADY_STARTED);
	EFI_STATUS s = app_bs->ConnectController(h, NULL, NULL, 1);
	REQUIRE(s == EFI_SUCCESS || s == EFI_NOT_FOUND, "ConnectController: %s", efi_status_str(s, sbuf));
	EXPECT(app_bs->ConnectController(NULL, NULL, NULL, 1), EFI_INVALID_PARAMETER);
	OK(app_bs->DisconnectController(h, NULL, NULL));
	OK(app_bs->UninstallMultipleProtocolInterfaces(h, &dp_guid, &test_dp, &guid_b, &iface, NULL));
	return NULL;
}

/* ---- events, timers, TPL ---- */

static char order[16];
static unsigned norder;
static void EFIAPI record_notify(EFI_EVENT e, void *ctx)
{
	if (norder < sizeof(order) - 1)
		order[norder++] = *(const char *)ctx;
	order[norder] = 0;
}

static const char *t_tpl_order(void)
{
	static const char A = 'A', B = 'B', C = 'C';
	EFI_EVENT a, b, c;
	OK(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record_notify, (void *)&A, &a));
	OK(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_NOTIFY, record_notify, (void *)&B, &b));
	OK(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record_notify, (void *)&C, &c));
	norder = 0;
	order[0] = 0;
	EFI_TPL old = app_bs->RaiseTPL(TPL_HIGH_LEVEL);
	REQUIRE(old == TPL_APPLICATION, "RaiseTPL returned %llu", (unsigned long long)old);
	OK(app_bs->SignalEvent(a));
	OK(app_bs->SignalEvent(b));
	OK(app_bs->SignalEvent(c));
	REQUIRE(norder == 0, "notify ran at TPL_HIGH_LEVEL");
	EFI_TPL mid = app_bs->RaiseTPL(TPL_HIGH_LEVEL);
	app_bs->RestoreTPL(mid);
	app_bs->RestoreTPL(TPL_NOTIFY);
	REQUIRE(norder == 0, "a TPL_NOTIFY notify ran at TPL_NOTIFY");
	app_bs->RestoreTPL(TPL_CALLBACK);
	REQUIRE(norder == 1 && order[0] == 'B', "at TPL_CALLBACK: ran \"%s\"", order);
	app_bs->RestoreTPL(old);
	REQUIRE(norder == 3 && order[1] == 'A' && order[2] == 'C', "order \"%s\", want BAC", order);
	/* At TPL_APPLICATION a signal notifies at once. */
	OK(app_bs->SignalEvent(b));
	REQUIRE(norder == 4 && order[3] == 'B', "immediate notify: \"%s\"", order);
	EXPECT(app_bs->CheckEvent(a), EFI_INVALID_PARAMETER);
	OK(app_bs->CloseEvent(a));
	OK(app_bs->CloseEvent(b));
	OK(app_bs->CloseEvent(c));
	EXPECT(app_bs->SignalEvent(a), EFI_INVALID_PARAMETER);
	EXPECT(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL | EVT_NOTIFY_WAIT, TPL_CALLBACK, record_notify, NULL, &a),
	       EFI_INVALID_PARAMETER);
	EXPECT(app_bs->CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, NULL, NULL, &a), EFI_INVALID_PARAMETER);
	return NULL;
}

static void EFIAPI wait_notify(EFI_EVENT e, void *ctx)
{
	int *calls = ctx;
	if (++*calls == 2)
		app_bs->SignalEvent(e);
}

static const char *t_check_and_wait_events(void)
{
	EFI_EVENT plain, w;
	int calls = 0;
	OK(app_bs->CreateEvent(0, 0, NULL, NULL, &plain));
	EXPECT(app_bs->CheckEvent(plain), EFI_NOT_READY);
	OK(app_bs->SignalEvent(plain));
	OK(app_bs->CheckEvent(plain));
	EXPECT(app_bs->CheckEvent(plain), EFI_NOT_READY);
	OK(app_bs->CreateEvent(EVT_NOTIFY_WAIT, TPL_NOTIFY, wait_notify, &calls, &w));
	EXPECT(app_bs->CheckEvent(w), EFI_NOT_READY);
	OK(app_bs->CheckEvent(w));
	REQUIRE(calls == 2, "wait notify ran %d times", calls);
	OK(app_bs->SignalEvent(plain));
	UINTN idx = 9;
	EFI_EVENT list[2] = { w, plain };
	OK(app_bs->WaitForEvent(2, list, &idx));
	REQUIRE(idx == 1, "WaitForEvent index %llu", (unsigned long long)idx);
	EFI_TPL old = app_bs->RaiseTPL(TPL_CALLBACK);
	EXPECT(app_bs->WaitForEvent(1, &plain, &idx), EFI_UNSUPPORTED);
	app_bs->RestoreTPL(old);
	OK(app_bs->CloseEvent(w));
	OK(app_bs->CloseEvent(plain));
	return NULL;
}

static const char *t_event_groups(void)
{
	EFI_EVENT a, b, other;
	int ha = 0, hb = 0, ho = 0;
	OK(app_bs->CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count_notify, &ha, &guid_a, &a));
	OK(app_bs->CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_NOTIFY, count_notify, &hb, &guid_a, &b));
	OK(app_bs->CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count_notify, &ho, &guid_b, &other));
	OK(app_bs->SignalEvent(b));
	REQUIRE(ha == 1 && hb == 1 && ho == 0, "group signal: %d %d %d", ha, hb, ho);
	EXPECT(app_bs->CreateEventEx(EVT_SIGNAL_EXIT_BOOT_SERVICES, TPL_CALLBACK, count_notify, &ho, &guid_a, &other),
	       EFI_INVALID_PARAMETER);
	OK(app_bs->CloseEvent(a));
	OK(app_bs->CloseEvent(b));
	OK(app_bs->CloseEvent(other));
	return NULL;
}

static const char *t_timers(void)
{
	EFI_EVENT slow, fast, tick;
	int ticks = 0;
	OK(app_bs->CreateEvent(EVT_TIMER, 0, NULL, NULL, &slow));
	OK(app_bs->CreateEvent(EVT_TIMER, 0, NULL, NULL, &fast));
	OK(app_bs->SetTimer(slow, TimerRelative, 50000000)); /* 5 s */
	OK(app_bs->SetTimer(fast, TimerRelative, 200000));   /* 20 ms */
	EFI_EVENT list[2] = { slow, fast };
	UINTN idx = 9;
	OK(app_bs->WaitForEvent(2, list, &idx));
	REQUIRE(idx == 1, "the 5 s timer fired before the 20 ms one");
	OK(app_bs->SetTimer(slow, TimerCancel, 0));
	EXPECT(app_bs->CheckEvent(slow), EFI_NOT_READY);
	OK(app_bs->CreateEvent(EVT_TIMER | EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count_notify, &ticks, &tick));
	OK(app_bs->SetTimer(tick, TimerPeriodic, 50000)); /* 5 ms */
	OK(app_bs->Stall(40000));                          /* 40 ms: Stall polls timers */
	OK(app_bs->SetTimer(tick, TimerCancel, 0));
	int seen = ticks;
	REQUIRE(seen >= 3 && seen <= 9, "periodic 5 ms timer ticked %d times in 40 ms", seen);
	OK(app_bs->Stall(12000));
	REQUIRE(ticks == seen, "a cancelled timer kept ticking");
	EXPECT(app_bs->SetTimer(tick, (EFI_TIMER_DELAY)7, 0), EFI_INVALID_PARAMETER);
	EFI_EVENT plain;
	OK(app_bs->CreateEvent(0, 0, NULL, NULL, &plain));
	EXPECT(app_bs->SetTimer(plain, TimerRelative, 0), EFI_INVALID_PARAMETER);
	OK(app_bs->CloseEvent(plain));
	OK(app_bs->CloseEvent(tick));
	OK(app_bs->CloseEvent(slow));
	OK(app_bs->CloseEvent(fast));
	return NULL;
}

/* ---- images ---- */

static EFI_STATUS EFIAPI hello_load_file(EFI_LOAD_FILE_PROTOCOL *this, EFI_DEVICE_PATH_PROTOCOL *path, BOOLEAN boot,
					 UINTN *size, void *buf)
{
	UINTN n = (UINTN)(hello_efi_end - hello_efi);
	if (!buf || *size < n) {
		*size = n;
		return EFI_BUFFER_TOO_SMALL;
	}
	efi_memcpy(buf, hello_efi, n);
	*size = n;
	return EFI_SUCCESS;
}

static const char *t_load_start_exit(void)
{
	UINTN n = (UINTN)(hello_efi_end - hello_efi);
	EFI_HANDLE h = NULL;
	OK(app_bs->LoadImage(0, app_image, NULL, (void *)hello_efi, n, &h));
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	OK(app_bs->HandleProtocol(h, &li_guid, (void **)&li));
	REQUIRE(li->ParentHandle == app_image && li->SystemTable == app_st, "LoadedImage parent/system table");
	REQUIRE(li->ImageBase && !((uintptr_t)li->ImageBase & 4095) && li->ImageSize >= 0x3000,
		"LoadedImage base %p size %llu", li->ImageBase, (unsigned long long)li->ImageSize);
	REQUIRE(li->ImageCodeType == EfiLoaderCode && li->ImageDataType == EfiLoaderData, "image memory types");
	static CHAR16 opt[] = { 'e', 'x', 'i', 't', 0 };
	li->LoadOptions = opt;
	li->LoadOptionsSize = sizeof(opt);
	UINTN xs = 0;
	CHAR16 *xd = NULL;
	EXPECT(app_bs->StartImage(h, &xs, &xd), EFI_ABORTED);
	REQUIRE(xs == 8 && xd && xd[0] == 'b' && xd[2] == 'e' && xd[3] == 0, "exit data (%llu bytes)", (unsigned long long)xs);
	OK(app_bs->FreePool(xd));
	void *p;
	EXPECT(app_bs->HandleProtocol(h, &li_guid, &p), EFI_INVALID_PARAMETER); /* applications are unloaded */
	/* A plain run returns EFI_SUCCESS through its entry point. */
	OK(app_bs->LoadImage(0, app_image, NULL, (void *)hello_efi, n, &h));
	OK(app_bs->StartImage(h, NULL, NULL));
	/* Loaded, never started: UnloadImage frees it. */
	OK(app_bs->LoadImage(0, app_image, NULL, (void *)hello_efi, n, &h));
	OK(app_bs->UnloadImage(h));
	EXPECT(app_bs->StartImage(h, NULL, NULL), EFI_INVALID_PARAMETER);
	return NULL;
}

static const char *t_load_bad_images(void)
{
	UINTN n = (UINTN)(hello_efi_end - hello_efi);
	uint8_t *copy = NULL;
	EFI_HANDLE h = NULL;
	OK(app_bs->AllocatePool(EfiLoaderData, n, (void **)&copy));
	efi_memcpy(copy, hello_efi, n);
	copy[0] = 'X';
	EXPECT(app_bs->LoadImage(0, app_image, NULL, copy, n, &h), EFI_LOAD_ERROR);
	copy[0] = 'M';
	EXPECT(app_bs->LoadImage(0, app_image, NULL, copy, 200, &h), EFI_LOAD_ERROR); /* truncated */
	uint32_t pe = efi_le32(copy + 60);
	copy[pe + 4 + 20 + 16] = 0xff; /* entry point far outside the image */
	copy[pe + 4 + 20 + 17] = 0xff;
	copy[pe + 4 + 20 + 18] = 0xff;
	EXPECT(app_bs->LoadImage(0, app_image, NULL, copy, n, &h), EFI_LOAD_ERROR);
	OK(app_bs->FreePool(copy));
	EXPECT(app_bs->LoadImage(0, app_image, NULL, NULL, 0, &h), EFI_NOT_FOUND);
	EXPECT(app_bs->LoadImage(0, NULL, NULL, (void *)hello_efi, n, &h), EFI_INVALID_PARAMETER);
	return NULL;
}

static const char *t_load_from_device_path(void)
{
	static EFI_LOAD_FILE_PROTOCOL lf2 = { hello_load_file };
	EFI_HANDLE dev = NULL, h = NULL;
	OK(app_bs->InstallMultipleProtocolInterfaces(&dev, &dp_guid, &test_dp, &lf2_guid, &lf2, NULL));
	OK(app_bs->LoadImage(0, app_image, &test_dp.ven.Header, NULL, 0, &h));
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	OK(app_bs->HandleProtocol(h, &li_guid, (void **)&li));
	REQUIRE(li->DeviceHandle == dev, "DeviceHandle is not the LoadFile2 handle");
	EFI_DEVICE_PATH_PROTOCOL *full = NULL;
	OK(app_bs->HandleProtocol(h, &lidp_guid, (void **)&full));
	REQUIRE(full && !efi_memcmp(full, &test_dp, sizeof(test_dp)), "LoadedImageDevicePath differs");
	OK(app_bs->StartImage(h, NULL, NULL));
	OK(app_bs->UninstallMultipleProtocolInterfaces(dev, &dp_guid, &test_dp, &lf2_guid, &lf2, NULL));
	return NULL;
}

/* A one-file SimpleFileSystem: \EFI\BOOT\HELLO.EFI holds hello.efi. */
static EFI_FILE_PROTOCOL fake_root, fake_file;
static char fake_path_seen[64];
static UINTN fake_pos;

static EFI_STATUS EFIAPI fake_open(EFI_FILE_PROTOCOL *this, EFI_FILE_PROTOCOL **out, CHAR16 *name, uint64_t mode,
				   uint64_t attr)
{
	static const char want[] = "\\EFI\\BOOT\\HELLO.EFI";
	size_t i = 0;
	for (; name[i] && i < sizeof(fake_path_seen) - 1; i++)
		fake_path_seen[i] = (char)name[i];
	fake_path_seen[i] = 0;
	if (this != &fake_root || mode != EFI_FILE_MODE_READ || efi_memcmp(fake_path_seen, want, sizeof(want)))
		return EFI_NOT_FOUND;
	fake_pos = 0;
	*out = &fake_file;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fake_close(EFI_FILE_PROTOCOL *this)
{
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fake_read(EFI_FILE_PROTOCOL *this, UINTN *size, void *buf)
{
	UINTN n = (UINTN)(hello_efi_end - hello_efi) - fake_pos;
	if (*size < n)
		n = *size;
	efi_memcpy(buf, hello_efi + fake_pos, n);
	fake_pos += n;
	*size = n;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fake_get_info(EFI_FILE_PROTOCOL *this, EFI_GUID *type, UINTN *size, void *buf)
{
	static const EFI_GUID info_id = EFI_FILE_INFO_ID;
	UINTN need = sizeof(EFI_FILE_INFO) + 20;
	if (!efi_guid_eq(type, &info_id))
		return EFI_UNSUPPORTED;
	if (*size < need) {
		*size = need;
		return EFI_BUFFER_TOO_SMALL;
	}
	EFI_FILE_INFO *fi = buf;
	efi_memset(fi, 0, need);
	fi->Size = need;
	fi->FileSize = fi->PhysicalSize = (uint64_t)(hello_efi_end - hello_efi);
	fi->Attribute = EFI_FILE_READ_ONLY;
	*size = need;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI fake_open_volume(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *this, EFI_FILE_PROTOCOL **root)
{
	*root = &fake_root;
	return EFI_SUCCESS;
}

static const char *t_load_from_file_system(void)
{
	static EFI_GUID sfs_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
	static EFI_SIMPLE_FILE_SYSTEM_PROTOCOL sfs = { 0x00010000, fake_open_volume };
	fake_root.Revision = fake_file.Revision = EFI_FILE_PROTOCOL_REVISION;
	fake_root.Open = fake_open;
	fake_root.Close = fake_file.Close = fake_close;
	fake_file.Read = fake_read;
	fake_file.GetInfo = fake_get_info;
	EFI_HANDLE dev = NULL, h = NULL;
	OK(app_bs->InstallMultipleProtocolInterfaces(&dev, &dp_guid, &test_dp, &sfs_guid, &sfs, NULL));
	/* VenHw(...)/\EFI\BOOT/HELLO.EFI: two file path nodes, joined with a backslash. */
	struct {
		VENDOR_DEVICE_PATH ven;
		EFI_DEVICE_PATH_PROTOCOL f1;
		CHAR16 n1[10];
		EFI_DEVICE_PATH_PROTOCOL f2;
		CHAR16 n2[10];
		EFI_DEVICE_PATH_PROTOCOL end;
	} __attribute__((packed)) path = {
		test_dp.ven,
		{ MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, { 24, 0 } }, { '\\', 'E', 'F', 'I', '\\', 'B', 'O', 'O', 'T', 0 },
		{ MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, { 24, 0 } }, { 'H', 'E', 'L', 'L', 'O', '.', 'E', 'F', 'I', 0 },
		{ END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } },
	};
	EFI_STATUS s = app_bs->LoadImage(1, app_image, &path.ven.Header, NULL, 0, &h);
	if (s != EFI_SUCCESS) {
		app_bs->UninstallMultipleProtocolInterfaces(dev, &dp_guid, &test_dp, &sfs_guid, &sfs, NULL);
		FAILF("LoadImage through SimpleFileSystem: %s (the firmware opened \"%s\")", efi_status_str(s, sbuf),
		      fake_path_seen);
	}
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	OK(app_bs->HandleProtocol(h, &li_guid, (void **)&li));
	REQUIRE(li->DeviceHandle == dev, "DeviceHandle is not the file system's handle");
	REQUIRE(li->FilePath && !efi_memcmp(li->FilePath, &path.f1, sizeof(path) - sizeof(path.ven)),
		"FilePath is not the file path nodes");
	OK(app_bs->StartImage(h, NULL, NULL));
	OK(app_bs->UninstallMultipleProtocolInterfaces(dev, &dp_guid, &test_dp, &sfs_guid, &sfs, NULL));
	return NULL;
}

/* With --initrd, the firmware offers it as Linux's EFI stub fetches it: LoadFile2 on the initrd
 * media device path. The integration test compares the size and CRC printed here with the file's. */
static const char *t_initrd_load_file2(void)
{
	struct {
		VENDOR_DEVICE_PATH ven;
		EFI_DEVICE_PATH_PROTOCOL end;
	} __attribute__((packed)) dp = { { { MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, { 20, 0 } }, LINUX_EFI_INITRD_MEDIA_GUID },
					 { END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } } };
	EFI_DEVICE_PATH_PROTOCOL *rem = &dp.ven.Header;
	EFI_HANDLE h;
	EFI_STATUS s = app_bs->LocateDevicePath(&lf2_guid, &rem, &h);
	if (s == EFI_NOT_FOUND) {
		app_printf("svc_test: no initrd offered\n");
		return NULL;
	}
	OK(s);
	EFI_LOAD_FILE_PROTOCOL *lf = NULL;
	OK(app_bs->HandleProtocol(h, &lf2_guid, (void **)&lf));
	UINTN n = 0;
	EXPECT(lf->LoadFile(lf, rem, 0, &n, NULL), EFI_BUFFER_TOO_SMALL);
	EXPECT(lf->LoadFile(lf, rem, 1, &n, NULL), EFI_UNSUPPORTED); /* LoadFile2 has no boot policy */
	void *buf = NULL;
	OK(app_bs->AllocatePool(EfiLoaderData, n, &buf));
	OK(lf->LoadFile(lf, rem, 0, &n, buf));
	app_printf("svc_test: initrd %llu bytes, crc32 0x%08x\n", (unsigned long long)n, efi_crc32(buf, n));
	OK(app_bs->FreePool(buf));
	return NULL;
}

static const char *t_own_loaded_image(void)
{
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	OK(app_bs->HandleProtocol(app_image, &li_guid, (void **)&li));
	REQUIRE(li->Revision == EFI_LOADED_IMAGE_PROTOCOL_REVISION, "revision");
	REQUIRE(li->DeviceHandle, "no DeviceHandle");
	const CHAR16 want[] = { 's', 'v', 'c', '-', 't', 'e', 's', 't', ' ', 0xe9, 0 };
	REQUIRE(li->LoadOptions && li->LoadOptionsSize == sizeof(want) && !efi_memcmp(li->LoadOptions, want, sizeof(want)),
		"LoadOptions are not the UCS-2 of --cmdline (%u bytes)", li->LoadOptionsSize);
	EFI_DEVICE_PATH_PROTOCOL *dp = NULL;
	OK(app_bs->HandleProtocol(app_image, &lidp_guid, (void **)&dp));
	REQUIRE(dp && dp->Type == HARDWARE_DEVICE_PATH && dp->SubType == HW_MEMMAP_DP, "LoadedImageDevicePath");
	return NULL;
}

/* ---- miscellaneous ---- */

static const char *t_crc_copy_set(void)
{
	uint32_t crc = 0;
	OK(app_bs->CalculateCrc32("123456789", 9, &crc));
	REQUIRE(crc == 0xcbf43926u, "CRC32 of 123456789 is 0x%x", crc);
	EXPECT(app_bs->CalculateCrc32(NULL, 9, &crc), EFI_INVALID_PARAMETER);
	EXPECT(app_bs->CalculateCrc32("x", 0, &crc), EFI_INVALID_PARAMETER);
	char b[16] = "abcdefgh";
	app_bs->CopyMem(b + 2, b, 6); /* overlapping */
	REQUIRE(!efi_memcmp(b, "ababcdef", 8), "CopyMem overlap: %s", b);
	app_bs->SetMem(b, 4, 'z');
	REQUIRE(!efi_memcmp(b, "zzzzcdef", 8), "SetMem: %s", b);
	/* Lengths that are not qword multiples, overlapping both ways (the firmware copies by qwords). */
	static uint8_t big[300];
	for (unsigned len = 1; len < 140; len += 13) {
		for (unsigned shift = 1; shift < 20; shift += 6) {
			for (unsigned i = 0; i < sizeof(big); i++)
				big[i] = (uint8_t)i;
			app_bs->CopyMem(big + 50 + shift, big + 50, len); /* forwards overlap: copy backwards */
			for (unsigned i = 0; i < len; i++)
				REQUIRE(big[50 + shift + i] == (uint8_t)(50 + i), "CopyMem up len %u shift %u at %u", len, shift, i);
			REQUIRE(big[50 + shift + len] == (uint8_t)(50 + shift + len), "CopyMem wrote past the end");
			for (unsigned i = 0; i < sizeof(big); i++)
				big[i] = (uint8_t)i;
			app_bs->CopyMem(big + 50, big + 50 + shift, len);
			for (unsigned i = 0; i < len; i++)
				REQUIRE(big[50 + i] == (uint8_t)(50 + shift + i), "CopyMem down len %u shift %u at %u", len, shift, i);
			REQUIRE(big[49] == 49, "CopyMem wrote before the start");
			app_bs->SetMem(big + 3, len, (uint8_t)(0x80 + len));
			REQUIRE(big[2] == 2 && big[3] == (uint8_t)(0x80 + len) && big[2 + len] == (uint8_t)(0x80 + len) &&
					big[3 + len] != (uint8_t)(0x80 + len),
				"SetMem len %u", len);
		}
	}
	uint64_t m1 = 0, m2 = 0;
	OK(app_bs->GetNextMonotonicCount(&m1));
	OK(app_bs->GetNextMonotonicCount(&m2));
	REQUIRE(m2 > m1, "monotonic count did not increase");
	OK(app_bs->SetWatchdogTimer(0, 0, 0, NULL));
	OK(app_bs->Stall(1000));
	return NULL;
}

static const char *t_config_tables(void)
{
	static int t1, t2;
	UINTN n0 = app_st->NumberOfTableEntries;
	OK(app_bs->InstallConfigurationTable(&guid_a, &t1));
	REQUIRE(app_st->NumberOfTableEntries == n0 + 1, "count %llu", (unsigned long long)app_st->NumberOfTableEntries);
	EFI_CONFIGURATION_TABLE *ct = &app_st->ConfigurationTable[n0];
	REQUIRE(efi_guid_eq(&ct->VendorGuid, &guid_a) && ct->VendorTable == &t1, "table entry");
	REQUIRE(table_crc_ok(&app_st->Hdr), "system table CRC not updated");
	OK(app_bs->InstallConfigurationTable(&guid_a, &t2));
	REQUIRE(app_st->NumberOfTableEntries == n0 + 1 && app_st->ConfigurationTable[n0].VendorTable == &t2, "replace");
	OK(app_bs->InstallConfigurationTable(&guid_a, NULL));
	REQUIRE(app_st->NumberOfTableEntries == n0, "remove");
	EXPECT(app_bs->InstallConfigurationTable(&guid_a, NULL), EFI_NOT_FOUND);
	EXPECT(app_bs->InstallConfigurationTable(NULL, &t1), EFI_INVALID_PARAMETER);
	REQUIRE(table_crc_ok(&app_st->Hdr), "system table CRC");
	return NULL;
}

static const char *t_runtime_services(void)
{
	EFI_RUNTIME_SERVICES *rt = app_st->RuntimeServices;
	REQUIRE(rt->Hdr.Signature == EFI_RUNTIME_SERVICES_SIGNATURE, "signature");
	REQUIRE(table_crc_ok(&rt->Hdr), "runtime services CRC");
	if (rt->GetTime) {
		EFI_TIME t;
		OK(rt->GetTime(&t, NULL));
		REQUIRE(t.Year >= 2000 && t.Month >= 1 && t.Month <= 12, "GetTime: year %u month %u", t.Year, t.Month);
	}
	if (rt->GetVariable && rt->SetVariable) {
		static CHAR16 name[] = { 's', 'v', 'c', 'T', 'e', 's', 't', 0 };
		uint32_t val = 0x5eed, got = 0, attr = 0;
		UINTN sz = sizeof(got);
		EXPECT(rt->GetVariable(name, &guid_a, &attr, &sz, &got), EFI_NOT_FOUND);
		OK(rt->SetVariable(name, &guid_a, 0x6 /* BS | RT access */, sizeof(val), &val));
		sz = sizeof(got);
		OK(rt->GetVariable(name, &guid_a, &attr, &sz, &got));
		REQUIRE(got == val && sz == sizeof(val) && attr == 0x6, "variable read back 0x%x", got);
		OK(rt->SetVariable(name, &guid_a, 0x6, 0, NULL));
	}
	return NULL;
}

/* ---- ExitBootServices (last) ---- */

static int ebs_type_hits, ebs_group_hits;

static const char *t_exit_boot_services(void)
{
	EFI_EVENT e1, e2;
	OK(app_bs->CreateEvent(EVT_SIGNAL_EXIT_BOOT_SERVICES, TPL_NOTIFY, count_notify, &ebs_type_hits, &e1));
	OK(app_bs->CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count_notify, &ebs_group_hits, &ebs_group, &e2));
	UINTN size, key, ds;
	EFI_MEMORY_DESCRIPTOR *map = get_map(&size, &key, &ds);
	REQUIRE(map, "GetMemoryMap");
	EFI_PHYSICAL_ADDRESS a = 0;
	OK(app_bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &a)); /* makes key stale */
	EXPECT(app_bs->ExitBootServices(app_image, key), EFI_INVALID_PARAMETER);
	REQUIRE(!ebs_type_hits && !ebs_group_hits, "EXIT_BOOT_SERVICES events signalled by a failed call");
	/* The loader's usual retry: the map again, into the buffer it has (no allocation between). */
	uint32_t ver;
	size += 4 * ds;
	OK(app_bs->GetMemoryMap(&size, map, &key, &ds, &ver));
	EFI_BOOT_SERVICES *bs = app_bs;
	OK(bs->ExitBootServices(app_image, key));
	REQUIRE(ebs_type_hits == 1 && ebs_group_hits == 1, "EBS notifications: type %d, group %d", ebs_type_hits,
		ebs_group_hits);
	void *p = NULL;
	REQUIRE(EFI_ERROR(bs->AllocatePool(EfiLoaderData, 16, &p)), "AllocatePool works after ExitBootServices");
	REQUIRE(EFI_ERROR(bs->AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &a)), "AllocatePages after EBS");
	REQUIRE(!app_st->BootServices && !app_st->ConOut, "system table still points at boot services");
	REQUIRE(table_crc_ok(&app_st->Hdr), "system table CRC after EBS");
	return NULL;
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	app_print("svc_test: start\n");
	run("system_table", t_system_table);
	run("boot_services_table", t_boot_services_table);
	run("memory_map", t_memory_map);
	run("pages_and_map_key", t_pages);
	run("pool", t_pool);
	run("protocols", t_protocols);
	run("protocol_notify", t_protocol_notify);
	run("device_path_and_controllers", t_device_path_and_controllers);
	run("tpl_notify_order", t_tpl_order);
	run("check_and_wait_events", t_check_and_wait_events);
	run("event_groups", t_event_groups);
	run("timers", t_timers);
	run("load_start_exit", t_load_start_exit);
	run("load_bad_images", t_load_bad_images);
	run("load_from_device_path", t_load_from_device_path);
	run("load_from_file_system", t_load_from_file_system);
	run("own_loaded_image", t_own_loaded_image);
	run("initrd_load_file2", t_initrd_load_file2);
	run("crc_copy_set_misc", t_crc_copy_set);
	run("config_tables", t_config_tables);
	run("high_memory", t_high_memory);
	if (st->RuntimeServices)
		run("runtime_services", t_runtime_services);
	else
		app_printf("SKIP runtime_services: RuntimeServices is NULL in this build\n");
	(void)notify_hits;
	run("exit_boot_services", t_exit_boot_services);
	app_printf("svc_test: %u passed, %u failed\n", passed, failed);
	app_exit_vm(failed);
	return failed ? EFI_ABORTED : EFI_SUCCESS; /* no debug exit port (no --debugcon) */
}
