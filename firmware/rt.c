/* Runtime services (UEFI 2.10 chapter 8): variables and time forwarded to the VMM through the host-call
 * port, reset and power-off through the FADT's reset register and sleep control port, and the switch
 * to the OS's virtual addresses.
 *
 * Everything here runs after ExitBootServices too, at whatever virtual address the OS chose: the code
 * is position-independent (RIP-relative), so it only ever follows pointers that SetVirtualAddressMap
 * converted, and talks to the VMM with the request buffer's physical address taken at boot (the
 * port takes a guest-physical address whatever the OS maps). Nothing here may touch boot-services
 * memory (the hand-off block, the pool) or the consoles once the OS runs.
 */
#include "fw.h"

#include "gen2vm/proto/acpi_pm.h"
#include "gen2vm/proto/fw_var.h"

#define EFI_OPTIONAL_PTR 0x00000001u
#define RT_MAP_MAX 64u

extern char __fw_start[], __fw_end[];

static EFI_RUNTIME_SERVICES rt_table __attribute__((aligned(16)));

/* One request buffer, big enough for any variable request; the firmware is single-threaded and the
 * OS serialises runtime calls (UEFI 2.10 8.1: they are not reentrant). */
static union {
	struct fw_host_req hdr;
	struct fw_var_req var;
	struct fw_var_query_req query;
	struct fw_time_req time;
	uint8_t raw[FW_VAR_REQ_MAX];
} rt_req __attribute__((aligned(16)));
static uint64_t rt_req_gpa; /* rt_req's physical address, taken before any remapping */

/* The OS's runtime mappings, kept from SetVirtualAddressMap for ConvertPointer. */
static struct {
	uint64_t phys, virt, size;
} rt_map[RT_MAP_MAX];
static unsigned rt_map_n;
static uint32_t rt_mono_high;

static inline void rt_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void rt_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static EFI_STATUS rt_call(uint32_t op, uint32_t size)
{
	rt_req.hdr.op = op;
	rt_req.hdr.size = size;
	rt_req.hdr.status = EFI_DEVICE_ERROR; /* what stays when no VMM answered */
	rt_outl(FW_HOST_PORT, (uint32_t)rt_req_gpa);
	return *(volatile uint64_t *)&rt_req.hdr.status;
}

static uint32_t rt_var_flags(void)
{
	return fw.boot_services_done ? FW_VAR_F_RUNTIME : 0;
}

/* Bytes of a name with its NUL, or 0 when longer than any variable's name may be. */
static size_t rt_name_size(const CHAR16 *name)
{
	size_t len = efi_strnlen16(name, FW_VAR_NAME_MAX / 2);
	return len < FW_VAR_NAME_MAX / 2 ? (len + 1) * 2 : 0;
}

/* ---- variables ---- */

static EFI_STATUS rt_var_get(const CHAR16 *name, const EFI_GUID *guid, uint32_t *attributes, UINTN *size, void *data)
{
	if (!name || !guid || !size || (*size && !data))
		return EFI_INVALID_PARAMETER;
	size_t ns = rt_name_size(name);
	if (!ns)
		return EFI_NOT_FOUND;
	uint32_t cap = *size > FW_VAR_DATA_MAX ? FW_VAR_DATA_MAX : (uint32_t)*size;
	struct fw_var_req *r = &rt_req.var;
	r->flags = rt_var_flags();
	r->attributes = 0;
	r->name_size = (uint32_t)ns;
	r->data_size = cap;
	efi_memcpy(&r->guid, guid, sizeof(*guid));
	efi_memcpy(r->payload, name, ns);
	EFI_STATUS s = rt_call(FW_OP_VAR_GET, (uint32_t)(sizeof(*r) + ns + cap));
	if (s == EFI_SUCCESS || s == EFI_BUFFER_TOO_SMALL) {
		uint32_t got = r->data_size;
		if (s == EFI_SUCCESS && got > cap)
			return EFI_DEVICE_ERROR;
		if (s == EFI_SUCCESS)
			efi_memcpy(data, r->payload + ns, got);
		*size = got;
		if (attributes)
			*attributes = r->attributes;
	}
	return s;
}

static EFI_STATUS rt_var_set(const CHAR16 *name, const EFI_GUID *guid, uint32_t attributes, UINTN size,
			     const void *data, uint32_t flags)
{
	if (!name || !guid || (size && !data))
		return EFI_INVALID_PARAMETER;
	size_t ns = rt_name_size(name);
	if (!ns || size > FW_VAR_DATA_MAX)
		return EFI_INVALID_PARAMETER;
	struct fw_var_req *r = &rt_req.var;
	r->flags = rt_var_flags() | flags;
	r->attributes = attributes;
	r->name_size = (uint32_t)ns;
	r->data_size = (uint32_t)size;
	efi_memcpy(&r->guid, guid, sizeof(*guid));
	efi_memcpy(r->payload, name, ns);
	efi_memcpy(r->payload + ns, data, size);
	return rt_call(FW_OP_VAR_SET, (uint32_t)(sizeof(*r) + ns + size));
}

EFI_STATUS fw_var_get(const CHAR16 *name, const EFI_GUID *guid, uint32_t *attributes, UINTN *size, void *data)
{
	return rt_var_get(name, guid, attributes, size, data);
}

EFI_STATUS fw_var_set(const CHAR16 *name, const EFI_GUID *guid, uint32_t attributes, UINTN size, const void *data)
{
	return rt_var_set(name, guid, attributes, size, data, FW_VAR_F_FIRMWARE);
}

static EFIAPI EFI_STATUS rt_get_variable(CHAR16 *name, EFI_GUID *guid, uint32_t *attributes, UINTN *size, void *data)
{
	return rt_var_get(name, guid, attributes, size, data);
}

static EFIAPI EFI_STATUS rt_set_variable(CHAR16 *name, EFI_GUID *guid, uint32_t attributes, UINTN size, void *data)
{
	return rt_var_set(name, guid, attributes, size, data, 0);
}

static EFIAPI EFI_STATUS rt_get_next_variable_name(UINTN *size, CHAR16 *name, EFI_GUID *guid)
{
	if (!size || !name || !guid)
		return EFI_INVALID_PARAMETER;
	UINTN cap = *size;
	/* The previous name must end within the caller's buffer. */
	size_t len = efi_strnlen16(name, cap / 2);
	if (len >= cap / 2)
		return EFI_INVALID_PARAMETER;
	if (len >= FW_VAR_NAME_MAX / 2)
		return EFI_INVALID_PARAMETER; /* no variable has such a name */
	size_t ns = (len + 1) * 2;
	struct fw_var_req *r = &rt_req.var;
	r->flags = rt_var_flags();
	r->attributes = 0;
	r->name_size = (uint32_t)ns;
	r->data_size = cap > 0xffffffffu ? 0xffffffffu : (uint32_t)cap;
	efi_memcpy(&r->guid, guid, sizeof(*guid));
	efi_memcpy(r->payload, name, ns);
	EFI_STATUS s = rt_call(FW_OP_VAR_NEXT_NAME, (uint32_t)(sizeof(*r) + FW_VAR_NAME_MAX));
	if (s == EFI_SUCCESS || s == EFI_BUFFER_TOO_SMALL) {
		uint32_t got = r->name_size;
		if (got > FW_VAR_NAME_MAX || (s == EFI_SUCCESS && got > cap))
			return EFI_DEVICE_ERROR;
		if (s == EFI_SUCCESS) {
			efi_memcpy(name, r->payload, got);
			efi_memcpy(guid, &r->guid, sizeof(*guid));
		}
		*size = got;
	}
	return s;
}

static EFIAPI EFI_STATUS rt_query_variable_info(uint32_t attributes, uint64_t *max_storage, uint64_t *remaining,
						uint64_t *max_size)
{
	if (!max_storage || !remaining || !max_size)
		return EFI_INVALID_PARAMETER;
	struct fw_var_query_req *q = &rt_req.query;
	q->flags = rt_var_flags();
	q->attributes = attributes;
	EFI_STATUS s = rt_call(FW_OP_VAR_QUERY_INFO, sizeof(*q));
	if (s == EFI_SUCCESS) {
		*max_storage = q->max_storage;
		*remaining = q->remaining;
		*max_size = q->max_var_size;
	}
	return s;
}

/* ---- time ---- */

static bool rt_time_valid(const EFI_TIME *t)
{
	static const uint8_t mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (t->Year < 1900 || t->Year > 9999 || t->Month < 1 || t->Month > 12 || t->Day < 1 ||
	    t->Day > mdays[t->Month - 1] || t->Hour > 23 || t->Minute > 59 || t->Second > 59 ||
	    t->Nanosecond > 999999999u || (t->Daylight & ~3u))
		return false;
	if (t->Month == 2 && t->Day == 29 && !(t->Year % 4 == 0 && (t->Year % 100 || t->Year % 400 == 0)))
		return false;
	return t->TimeZone == 2047 || (t->TimeZone >= -1440 && t->TimeZone <= 1440);
}

static EFIAPI EFI_STATUS rt_get_time(EFI_TIME *time, EFI_TIME_CAPABILITIES *caps)
{
	if (!time)
		return EFI_INVALID_PARAMETER;
	struct fw_time_req *r = &rt_req.time;
	efi_memset(&r->year, 0, sizeof(*r) - sizeof(r->hdr));
	EFI_STATUS s = rt_call(FW_OP_TIME_GET, sizeof(*r));
	if (s != EFI_SUCCESS)
		return s == EFI_UNSUPPORTED ? EFI_DEVICE_ERROR : s;
	EFI_TIME t = { r->year, r->month, r->day, r->hour, r->minute, r->second, 0, r->nanosecond, r->time_zone,
		       r->daylight, 0 };
	if (!rt_time_valid(&t))
		return EFI_DEVICE_ERROR;
	*time = t;
	if (caps) {
		caps->Resolution = 1;
		caps->Accuracy = 50000000; /* 50 ppm, in parts per trillion */
		caps->SetsToZero = 0;
	}
	return EFI_SUCCESS;
}

static EFIAPI EFI_STATUS rt_set_time(EFI_TIME *time)
{
	if (!time || !rt_time_valid(time))
		return EFI_INVALID_PARAMETER;
	struct fw_time_req *r = &rt_req.time;
	r->year = time->Year;
	r->month = time->Month;
	r->day = time->Day;
	r->hour = time->Hour;
	r->minute = time->Minute;
	r->second = time->Second;
	r->pad1 = 0;
	r->nanosecond = time->Nanosecond;
	r->time_zone = time->TimeZone;
	r->daylight = time->Daylight;
	r->pad2 = 0;
	EFI_STATUS s = rt_call(FW_OP_TIME_SET, sizeof(*r));
	return s == EFI_UNSUPPORTED ? EFI_DEVICE_ERROR : s;
}

static EFIAPI EFI_STATUS rt_get_wakeup_time(BOOLEAN *enabled, BOOLEAN *pending, EFI_TIME *time)
{
	if (!enabled || !pending || !time)
		return EFI_INVALID_PARAMETER;
	return EFI_UNSUPPORTED; /* no wake-up alarm on this machine */
}

static EFIAPI EFI_STATUS rt_set_wakeup_time(BOOLEAN enable, EFI_TIME *time)
{
	return EFI_UNSUPPORTED;
}

/* ---- reset ---- */

static EFIAPI void rt_reset_system(EFI_RESET_TYPE type, EFI_STATUS status, UINTN size, void *data)
{
	if (type == EfiResetShutdown)
		rt_outb(ACPI_PORT_SLEEP_CONTROL, (uint8_t)(ACPI_SLP_TYP_S5 << ACPI_SLEEP_TYP_SHIFT | ACPI_SLEEP_EN));
	else
		rt_outb(ACPI_PORT_RESET, ACPI_RESET_VALUE); /* cold, warm and platform-specific alike */
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- virtual addresses ---- */

static bool rt_convert(uint64_t *p)
{
	for (unsigned i = 0; i < rt_map_n; i++)
		if (*p - rt_map[i].phys < rt_map[i].size) {
			*p = *p - rt_map[i].phys + rt_map[i].virt;
			return true;
		}
	return false;
}

static void rt_convert_ptr(void *pp)
{
	uint64_t v;
	efi_memcpy(&v, pp, 8);
	if (v && rt_convert(&v))
		efi_memcpy(pp, &v, 8);
}

static EFIAPI EFI_STATUS rt_convert_pointer(UINTN disposition, void **address)
{
	if (!address)
		return EFI_INVALID_PARAMETER;
	if (!*address)
		return disposition & EFI_OPTIONAL_PTR ? EFI_SUCCESS : EFI_INVALID_PARAMETER;
	if (!rt_map_n)
		return EFI_NOT_FOUND;
	uint64_t v = (uint64_t)(uintptr_t)*address;
	if (!rt_convert(&v))
		return EFI_NOT_FOUND;
	*address = (void *)(uintptr_t)v;
	return EFI_SUCCESS;
}

__attribute__((weak)) void fw_bs_virtual_address_change(void)
{
}

static void rt_table_crc(EFI_TABLE_HEADER *h)
{
	h->CRC32 = 0;
	h->CRC32 = efi_crc32(h, h->HeaderSize);
}

static EFIAPI EFI_STATUS rt_set_virtual_address_map(UINTN map_size, UINTN desc_size, uint32_t desc_version,
						    EFI_MEMORY_DESCRIPTOR *map)
{
	if (fw.virtual_mode || !fw.boot_services_done)
		return EFI_UNSUPPORTED;
	if (!map || desc_size < sizeof(EFI_MEMORY_DESCRIPTOR) || (desc_size & 7) ||
	    desc_version != EFI_MEMORY_DESCRIPTOR_VERSION || map_size % desc_size)
		return EFI_INVALID_PARAMETER;
	unsigned n = 0;
	for (UINTN off = 0; off < map_size; off += desc_size) {
		const EFI_MEMORY_DESCRIPTOR *d = (const EFI_MEMORY_DESCRIPTOR *)((const uint8_t *)map + off);
		if (!(d->Attribute & EFI_MEMORY_RUNTIME))
			continue;
		if (n == RT_MAP_MAX || (d->VirtualStart & 0xfff))
			return EFI_NO_MAPPING;
		rt_map[n].phys = d->PhysicalStart;
		rt_map[n].virt = d->VirtualStart;
		rt_map[n].size = d->NumberOfPages << 12;
		n++;
	}
	/* Code reaches data RIP-relative: the whole image must move by one offset. */
	uint64_t start = (uint64_t)(uintptr_t)__fw_start, end = (uint64_t)(uintptr_t)__fw_end, delta = 0;
	bool seen = false;
	for (uint64_t a = start; a < end;) {
		unsigned i;
		for (i = 0; i < n && a - rt_map[i].phys >= rt_map[i].size; i++)
			;
		if (i == n)
			return EFI_NO_MAPPING;
		uint64_t d = rt_map[i].virt - rt_map[i].phys;
		if (seen && d != delta)
			return EFI_NO_MAPPING;
		delta = d;
		seen = true;
		a = rt_map[i].phys + rt_map[i].size;
	}
	rt_map_n = n;
	/* Drivers' EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE notifications call ConvertPointer now. */
	fw_bs_virtual_address_change();
	void **fns = (void **)&rt_table.GetTime;
	for (unsigned i = 0; i < 14; i++)
		rt_convert_ptr(&fns[i]);
	rt_table_crc(&rt_table.Hdr);
	if (fw.st) {
		rt_convert_ptr(&fw.st->FirmwareVendor);
		rt_convert_ptr(&fw.st->RuntimeServices);
		rt_convert_ptr(&fw.st->ConfigurationTable);
		rt_table_crc(&fw.st->Hdr);
		rt_convert_ptr(&fw.st);
	}
	rt_convert_ptr(&fw.rt);
	fw.virtual_mode = true;
	return EFI_SUCCESS;
}

/* ---- the rest ---- */

static EFIAPI EFI_STATUS rt_get_next_high_monotonic_count(uint32_t *high)
{
	if (!high)
		return EFI_INVALID_PARAMETER;
	*high = ++rt_mono_high;
	return EFI_SUCCESS;
}

static EFIAPI EFI_STATUS rt_update_capsule(EFI_CAPSULE_HEADER **caps, UINTN count, EFI_PHYSICAL_ADDRESS sg)
{
	return EFI_UNSUPPORTED;
}

static EFIAPI EFI_STATUS rt_query_capsule_capabilities(EFI_CAPSULE_HEADER **caps, UINTN count, uint64_t *max_size,
						       EFI_RESET_TYPE *reset_type)
{
	return EFI_UNSUPPORTED;
}

/* Variables the firmware owns and the OS only reads (UEFI 2.10 3.3), volatile: made at every boot. */
static void rt_standard_variables(void)
{
	static const EFI_GUID g = EFI_GLOBAL_VARIABLE_GUID;
	const uint32_t ro = EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;
	const uint32_t nv = ro | EFI_VARIABLE_NON_VOLATILE;
	uint32_t support = EFI_BOOT_OPTION_SUPPORT_APP;
	uint64_t os_ind = 0; /* no firmware UI, no capsules on disk */
	fw_var_set(u"PlatformLangCodes", &g, ro, sizeof("en-US"), "en-US");
	fw_var_set(u"LangCodes", &g, ro, sizeof("eng"), "eng");
	fw_var_set(u"BootOptionSupport", &g, ro, sizeof(support), &support);
	fw_var_set(u"OsIndicationsSupported", &g, ro, sizeof(os_ind), &os_ind);
	char lang[8];
	UINTN sz = sizeof(lang);
	if (fw_var_get(u"PlatformLang", &g, NULL, &sz, lang) == EFI_NOT_FOUND)
		fw_var_set(u"PlatformLang", &g, nv, sizeof("en-US"), "en-US");
	sz = sizeof(lang);
	if (fw_var_get(u"Lang", &g, NULL, &sz, lang) == EFI_NOT_FOUND)
		fw_var_set(u"Lang", &g, nv, sizeof("eng"), "eng");
}

EFI_STATUS fw_rt_init(void)
{
	rt_req_gpa = fw_virt_to_phys(&rt_req);
	EFI_RUNTIME_SERVICES *t = &rt_table;
	t->Hdr.Signature = EFI_RUNTIME_SERVICES_SIGNATURE;
	t->Hdr.Revision = EFI_SPECIFICATION_VERSION;
	t->Hdr.HeaderSize = sizeof(*t);
	t->Hdr.Reserved = 0;
	t->GetTime = rt_get_time;
	t->SetTime = rt_set_time;
	t->GetWakeupTime = rt_get_wakeup_time;
	t->SetWakeupTime = rt_set_wakeup_time;
	t->SetVirtualAddressMap = rt_set_virtual_address_map;
	t->ConvertPointer = rt_convert_pointer;
	t->GetVariable = rt_get_variable;
	t->GetNextVariableName = rt_get_next_variable_name;
	t->SetVariable = rt_set_variable;
	t->GetNextHighMonotonicCount = rt_get_next_high_monotonic_count;
	t->ResetSystem = rt_reset_system;
	t->UpdateCapsule = rt_update_capsule;
	t->QueryCapsuleCapabilities = rt_query_capsule_capabilities;
	t->QueryVariableInfo = rt_query_variable_info;
	rt_table_crc(&t->Hdr);
	fw.rt = t;
	if (fw.st) {
		/* bs.c made the system table: point it here and refresh its CRC. */
		fw.st->RuntimeServices = t;
		rt_table_crc(&fw.st->Hdr);
	}
	/* Is the variable store there? (QueryVariableInfo answers even for an empty store.) */
	uint64_t max, rem, maxv;
	EFI_STATUS s = rt_query_variable_info(EFI_VARIABLE_BOOTSERVICE_ACCESS, &max, &rem, &maxv);
	if (s != EFI_SUCCESS) {
		fw_host_event(FW_EV_LOG, "runtime services: the VMM offers no variable store (status 0x%llx)",
			      (unsigned long long)s);
		return EFI_SUCCESS; /* the other services work without it */
	}
	rt_standard_variables();
	return EFI_SUCCESS;
}
