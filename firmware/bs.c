/* Boot services core (UEFI 2.10 chapter 7): the system table, the memory map and allocation
 * services, the protocol handler services over efi_db, configuration tables, the miscellaneous
 * services and ExitBootServices. Events/TPL live in event.c, images in image.c. */
#include "fw.h"

#include "efi/efi_fmt.h"

extern char __fw_data[];

#define RAM_ATTR (EFI_MEMORY_UC | EFI_MEMORY_WC | EFI_MEMORY_WT | EFI_MEMORY_WB)
#define CONFIG_TABLES_MAX 64
#define MULTIPLE_MAX 32

static EFI_SYSTEM_TABLE st;
static EFI_BOOT_SERVICES bs;
/* In the firmware's data (EfiRuntimeServicesData): the OS reads it after ExitBootServices. */
static EFI_CONFIGURATION_TABLE config_tables[CONFIG_TABLES_MAX];
static const CHAR16 fw_vendor[] = FW_VENDOR;
static uint64_t monotonic;
static uint64_t watchdog_deadline;

#define BS_LIVE()                                  \
	do {                                       \
		if (fw.boot_services_done)         \
			return EFI_UNSUPPORTED;    \
	} while (0)

void fw_table_crc(EFI_TABLE_HEADER *hdr)
{
	hdr->CRC32 = 0;
	hdr->CRC32 = efi_crc32(hdr, hdr->HeaderSize);
}

void fw_st_changed(void)
{
	if (!st.RuntimeServices && fw.rt)
		st.RuntimeServices = fw.rt;
	fw_table_crc(&st.Hdr);
}

/* ---- pool for the firmware's own use ---- */

void *fw_alloc(size_t size)
{
	void *p = NULL;
	if (fw.boot_services_done || EFI_ERROR(efi_mem_allocate_pool(&fw.mem, EfiBootServicesData, size, &p)))
		return NULL;
	return p;
}

void *fw_zalloc(size_t size)
{
	void *p = fw_alloc(size);
	if (p)
		efi_memset(p, 0, size);
	return p;
}

void fw_free(void *p)
{
	if (p && !fw.boot_services_done)
		efi_mem_free_pool(&fw.mem, p);
}

static void *db_alloc(void *ctx, size_t size)
{
	return fw_alloc(size);
}

static void db_free(void *ctx, void *p)
{
	fw_free(p);
}

static void db_signal(void *ctx, EFI_EVENT e)
{
	fw_event_signal(e);
}

/* ---- memory map ---- */

static uint32_t efi_type_of(uint32_t t)
{
	switch (t) {
	case FW_MEM_RAM: return EfiConventionalMemory;
	case FW_MEM_ACPI: return EfiACPIReclaimMemory;
	case FW_MEM_ACPI_NVS: return EfiACPIMemoryNVS;
	case FW_MEM_MMIO: return EfiMemoryMappedIO;
	case FW_MEM_SMBIOS: return EfiRuntimeServicesData;
	case FW_MEM_LOADED:
	case FW_MEM_BOOT_DATA: return EfiBootServicesData;
	default: return EfiReservedMemoryType;
	}
}

static void mem_add(uint64_t start, uint64_t size, uint32_t type)
{
	uint64_t attr = type == EfiMemoryMappedIO || type == EfiReservedMemoryType ? EFI_MEMORY_UC : RAM_ATTR;
	EFI_STATUS s = efi_mem_add(&fw.mem, start, size >> EFI_PAGE_SHIFT, type, attr);
	if (EFI_ERROR(s))
		fw_printf("gen2vm firmware: memory range 0x%llx+0x%llx (type %u) refused: 0x%llx\n",
			  (unsigned long long)start, (unsigned long long)size, type, (unsigned long long)s);
}

static inline uint64_t read_cr3(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}

static bool cpu_has_1g_pages(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u), "c"(0));
	if (a < 0x80000001u)
		return false;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000001u), "c"(0));
	return d & (1u << 26);
}

/* The VMM's page tables map the first 4 GiB; RAM above that is mapped here with 1 GiB pages (a
 * handful of stores), or 2 MiB pages when the CPU lacks them (512 stores per GiB). Only RAM inside
 * the first PML4 slot (512 GiB) can be mapped this way; the rest is left out of the memory map.
 * Returns the end of what may go into the map. */
static uint64_t map_high_ram(uint64_t start, uint64_t end)
{
	const uint64_t GIB = 1ull << 30, LIMIT = 512 * GIB;
	uint64_t *pml4 = (uint64_t *)(uintptr_t)(read_cr3() & 0x000ffffffffff000ull);
	if (!(pml4[0] & 1))
		return start;
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & 0x000ffffffffff000ull);
	if (end > LIMIT)
		end = LIMIT;
	if (start >= end)
		return start;
	bool big = cpu_has_1g_pages();
	for (uint64_t g = start / GIB; g * GIB < end; g++) {
		if (pdpt[g] & 1)
			continue;
		if (big) {
			pdpt[g] = (g * GIB) | 0x83; /* present, writable, 1 GiB page */
			continue;
		}
		EFI_PHYSICAL_ADDRESS pd = 0xffffffffull;
		if (EFI_ERROR(efi_mem_allocate_pages(&fw.mem, AllocateMaxAddress, EfiBootServicesData, 1, &pd)))
			return g * GIB > start ? g * GIB : start;
		uint64_t *e = (uint64_t *)(uintptr_t)pd;
		for (unsigned i = 0; i < 512; i++)
			e[i] = (g * GIB + ((uint64_t)i << 21)) | 0x83; /* present, writable, 2 MiB page */
		pdpt[g] = pd | 0x3;
	}
	__asm__ volatile("mov %0, %%cr3" : : "r"(read_cr3()) : "memory");
	return end;
}

static void mem_init(void)
{
	const struct fw_handoff *ho = fw.ho;
	efi_mem_init(&fw.mem);
	fw.mem.any_limit = 1ull << 32; /* loaders that keep pointers in 32 bits keep working */
	uint64_t high_start = 0, high_end = 0;
	for (uint32_t i = 0; i < ho->nr_mem; i++) {
		const struct fw_mem_range *r = &ho->mem[i];
		uint64_t start = r->start, size = r->size;
		if (!size || (start | size) & (EFI_PAGE_SIZE - 1))
			continue;
		if (r->type == FW_MEM_FIRMWARE) {
			/* One descriptor for code, data and bss, as EDK2 gives a runtime driver image: the code
			 * reaches its data RIP-relative, so SetVirtualAddressMap must move the whole image by
			 * one offset, which an OS placing each descriptor on its own would not do. */
			mem_add(start, size, EfiRuntimeServicesCode);
			continue;
		}
		if (r->type == FW_MEM_RAM && start + size > (1ull << 32)) {
			/* Mapped (and added) once the low map exists: 2 MiB tables need pages. */
			if (start < (1ull << 32)) {
				mem_add(start, (1ull << 32) - start, EfiConventionalMemory);
				size -= (1ull << 32) - start;
				start = 1ull << 32;
			}
			if (!high_end || start == high_end) {
				if (!high_end)
					high_start = start;
				high_end = start + size;
				continue;
			}
			fw_printf("gen2vm firmware: RAM at 0x%llx is not contiguous with the RAM above 4 GiB; left out\n",
				  (unsigned long long)start);
			continue;
		}
		mem_add(start, size, efi_type_of(r->type));
	}
	if (high_end) {
		uint64_t end = map_high_ram(high_start, high_end);
		if (end > high_start)
			mem_add(high_start, end - high_start, EfiConventionalMemory);
		if (end < high_end)
			fw_printf("gen2vm firmware: RAM above 0x%llx is not mapped and left out of the memory map\n",
				  (unsigned long long)end);
	}
}

/* ---- memory services ---- */

static EFI_STATUS EFIAPI bs_allocate_pages(EFI_ALLOCATE_TYPE type, EFI_MEMORY_TYPE mt, UINTN pages,
					   EFI_PHYSICAL_ADDRESS *memory)
{
	BS_LIVE();
	return efi_mem_allocate_pages(&fw.mem, type, mt, pages, memory);
}

static EFI_STATUS EFIAPI bs_free_pages(EFI_PHYSICAL_ADDRESS memory, UINTN pages)
{
	BS_LIVE();
	return efi_mem_free_pages(&fw.mem, memory, pages);
}

static EFI_STATUS EFIAPI bs_get_memory_map(UINTN *size, EFI_MEMORY_DESCRIPTOR *map, UINTN *key, UINTN *desc_size,
					   uint32_t *desc_version)
{
	BS_LIVE();
	return efi_mem_get_map(&fw.mem, size, map, key, desc_size, desc_version);
}

static EFI_STATUS EFIAPI bs_allocate_pool(EFI_MEMORY_TYPE type, UINTN size, void **buf)
{
	BS_LIVE();
	return efi_mem_allocate_pool(&fw.mem, type, size, buf);
}

static EFI_STATUS EFIAPI bs_free_pool(void *buf)
{
	BS_LIVE();
	return efi_mem_free_pool(&fw.mem, buf);
}

/* ---- protocol handler services ---- */

static EFI_STATUS EFIAPI bs_install_protocol(EFI_HANDLE *handle, EFI_GUID *protocol, EFI_INTERFACE_TYPE type,
					     void *iface)
{
	BS_LIVE();
	if (type != EFI_NATIVE_INTERFACE)
		return EFI_INVALID_PARAMETER;
	return efi_db_install(&fw.db, handle, protocol, iface);
}

static EFI_STATUS EFIAPI bs_reinstall_protocol(EFI_HANDLE handle, EFI_GUID *protocol, void *old_iface,
					       void *new_iface)
{
	BS_LIVE();
	return efi_db_reinstall(&fw.db, handle, protocol, old_iface, new_iface);
}

static EFI_STATUS EFIAPI bs_uninstall_protocol(EFI_HANDLE handle, EFI_GUID *protocol, void *iface)
{
	BS_LIVE();
	return efi_db_uninstall(&fw.db, handle, protocol, iface);
}

static EFI_STATUS EFIAPI bs_handle_protocol(EFI_HANDLE handle, EFI_GUID *protocol, void **iface)
{
	BS_LIVE();
	return efi_db_handle_protocol(&fw.db, handle, protocol, iface, fw.image);
}

static EFI_STATUS EFIAPI bs_register_protocol_notify(EFI_GUID *protocol, EFI_EVENT event, void **registration)
{
	BS_LIVE();
	return efi_db_register_notify(&fw.db, protocol, event, registration);
}

static EFI_STATUS EFIAPI bs_locate_handle(EFI_LOCATE_SEARCH_TYPE type, EFI_GUID *protocol, void *key,
					  UINTN *size, EFI_HANDLE *buf)
{
	BS_LIVE();
	return efi_db_locate_handle(&fw.db, type, protocol, key, size, buf);
}

static EFI_STATUS EFIAPI bs_locate_device_path(EFI_GUID *protocol, EFI_DEVICE_PATH_PROTOCOL **path,
					       EFI_HANDLE *device)
{
	BS_LIVE();
	return efi_db_locate_device_path(&fw.db, protocol, path, device);
}

static EFI_STATUS EFIAPI bs_open_protocol(EFI_HANDLE handle, EFI_GUID *protocol, void **iface, EFI_HANDLE agent,
					  EFI_HANDLE controller, uint32_t attributes)
{
	BS_LIVE();
	return efi_db_open(&fw.db, handle, protocol, iface, agent, controller, attributes);
}

static EFI_STATUS EFIAPI bs_close_protocol(EFI_HANDLE handle, EFI_GUID *protocol, EFI_HANDLE agent,
					   EFI_HANDLE controller)
{
	BS_LIVE();
	return efi_db_close(&fw.db, handle, protocol, agent, controller);
}

static EFI_STATUS EFIAPI bs_open_protocol_information(EFI_HANDLE handle, EFI_GUID *protocol,
						      EFI_OPEN_PROTOCOL_INFORMATION_ENTRY **entries, UINTN *count)
{
	BS_LIVE();
	return efi_db_open_info(&fw.db, handle, protocol, entries, count);
}

static EFI_STATUS EFIAPI bs_protocols_per_handle(EFI_HANDLE handle, EFI_GUID ***protocols, UINTN *count)
{
	BS_LIVE();
	return efi_db_protocols_per_handle(&fw.db, handle, protocols, count);
}

static EFI_STATUS EFIAPI bs_locate_handle_buffer(EFI_LOCATE_SEARCH_TYPE type, EFI_GUID *protocol, void *key,
						 UINTN *count, EFI_HANDLE **buf)
{
	BS_LIVE();
	return efi_db_locate_handle_buffer(&fw.db, type, protocol, key, count, buf);
}

static EFI_STATUS EFIAPI bs_locate_protocol(EFI_GUID *protocol, void *registration, void **iface)
{
	BS_LIVE();
	return efi_db_locate_protocol(&fw.db, protocol, registration, iface);
}

/* The (GUID, interface) pairs of a Install/UninstallMultipleProtocolInterfaces call, up to the NULL
 * GUID. False when there are more than MULTIPLE_MAX. */
static bool bs_split_pairs(__builtin_ms_va_list ap, const EFI_GUID **g, void **i, size_t *n)
{
	*n = 0;
	for (;;) {
		const EFI_GUID *guid = __builtin_va_arg(ap, const EFI_GUID *);
		if (!guid)
			return true;
		void *iface = __builtin_va_arg(ap, void *);
		if (*n == MULTIPLE_MAX)
			return false;
		g[*n] = guid;
		i[(*n)++] = iface;
	}
}

static EFI_STATUS EFIAPI bs_install_multiple(EFI_HANDLE *handle, ...)
{
	BS_LIVE();
	const EFI_GUID *g[MULTIPLE_MAX];
	void *i[MULTIPLE_MAX];
	size_t n;
	__builtin_ms_va_list ap;
	__builtin_ms_va_start(ap, handle);
	bool ok = bs_split_pairs(ap, g, i, &n);
	__builtin_ms_va_end(ap);
	return ok ? efi_db_install_multiple(&fw.db, handle, n, g, i) : EFI_OUT_OF_RESOURCES;
}

static EFI_STATUS EFIAPI bs_uninstall_multiple(EFI_HANDLE handle, ...)
{
	BS_LIVE();
	const EFI_GUID *g[MULTIPLE_MAX];
	void *i[MULTIPLE_MAX];
	size_t n;
	__builtin_ms_va_list ap;
	__builtin_ms_va_start(ap, handle);
	bool ok = bs_split_pairs(ap, g, i, &n);
	__builtin_ms_va_end(ap);
	return ok ? efi_db_uninstall_multiple(&fw.db, handle, n, g, i) : EFI_INVALID_PARAMETER;
}

/* Our own drivers install their handles and children eagerly at start-up; what ConnectController
 * connects is a loaded UEFI driver's binding (iPXE's network driver, for one): the ones given, else
 * every EFI_DRIVER_BINDING_PROTOCOL in the system, highest Version first (UEFI 2.10 7.3). No driver
 * that starts: EFI_NOT_FOUND. Recursive connection of the children a driver made is not done. */
static EFI_STATUS EFIAPI bs_connect_controller(EFI_HANDLE controller, EFI_HANDLE *driver,
					       EFI_DEVICE_PATH_PROTOCOL *remaining, BOOLEAN recursive)
{
	BS_LIVE();
	(void)recursive;
	if (!efi_db_handle_valid(&fw.db, controller))
		return EFI_INVALID_PARAMETER;
	static const EFI_GUID binding_guid = EFI_DRIVER_BINDING_PROTOCOL_GUID;
	EFI_HANDLE *all = NULL;
	UINTN n = 0;
	if (driver) {
		while (n < 64 && driver[n])
			n++;
	} else if (EFI_ERROR(efi_db_locate_handle_buffer(&fw.db, ByProtocol, &binding_guid, NULL, &n, &all))) {
		return EFI_NOT_FOUND;
	}
	EFI_DRIVER_BINDING_PROTOCOL *b[64];
	UINTN nb = 0;
	for (UINTN i = 0; i < n && nb < 64; i++) {
		void *iface;
		if (!EFI_ERROR(efi_db_handle_protocol(&fw.db, driver ? driver[i] : all[i], &binding_guid, &iface, fw.image)))
			b[nb++] = iface;
	}
	if (all)
		db_free(NULL, all);
	if (!driver) /* the highest Version first (insertion sort: a handful) */
		for (UINTN i = 1; i < nb; i++)
			for (UINTN j = i; j > 0 && b[j]->Version > b[j - 1]->Version; j--) {
				EFI_DRIVER_BINDING_PROTOCOL *t = b[j];
				b[j] = b[j - 1];
				b[j - 1] = t;
			}
	bool started = false;
	for (UINTN i = 0; i < nb; i++)
		if (b[i]->Supported(b[i], controller, remaining) == EFI_SUCCESS &&
		    b[i]->Start(b[i], controller, remaining) == EFI_SUCCESS)
			started = true;
	return started ? EFI_SUCCESS : EFI_NOT_FOUND;
}

/* The drivers that opened the controller BY_DRIVER are asked to Stop (the one given, or all of them). */
static EFI_STATUS EFIAPI bs_disconnect_controller(EFI_HANDLE controller, EFI_HANDLE driver, EFI_HANDLE child)
{
	BS_LIVE();
	if (!efi_db_handle_valid(&fw.db, controller) || (driver && !efi_db_handle_valid(&fw.db, driver)) ||
	    (child && !efi_db_handle_valid(&fw.db, child)))
		return EFI_INVALID_PARAMETER;
	static const EFI_GUID binding_guid = EFI_DRIVER_BINDING_PROTOCOL_GUID;
	EFI_GUID **protos = NULL;
	UINTN np = 0;
	if (EFI_ERROR(efi_db_protocols_per_handle(&fw.db, controller, &protos, &np)))
		return EFI_SUCCESS;
	EFI_HANDLE agents[16];
	UINTN na = 0;
	for (UINTN p = 0; p < np; p++) {
		EFI_OPEN_PROTOCOL_INFORMATION_ENTRY *e = NULL;
		UINTN ne = 0;
		if (EFI_ERROR(efi_db_open_info(&fw.db, controller, protos[p], &e, &ne)))
			continue;
		for (UINTN k = 0; k < ne; k++) {
			if (!(e[k].Attributes & EFI_OPEN_PROTOCOL_BY_DRIVER) || (driver && e[k].AgentHandle != driver))
				continue;
			bool seen = false;
			for (UINTN a = 0; a < na; a++)
				seen |= agents[a] == e[k].AgentHandle;
			if (!seen && na < 16)
				agents[na++] = e[k].AgentHandle;
		}
		db_free(NULL, e);
	}
	db_free(NULL, protos);
	EFI_STATUS s = EFI_SUCCESS;
	for (UINTN a = 0; a < na; a++) {
		void *iface;
		if (EFI_ERROR(efi_db_handle_protocol(&fw.db, agents[a], &binding_guid, &iface, fw.image)))
			continue;
		EFI_DRIVER_BINDING_PROTOCOL *b = iface;
		EFI_HANDLE children[1] = { child };
		if (EFI_ERROR(b->Stop(b, controller, child ? 1 : 0, child ? children : NULL)))
			s = EFI_DEVICE_ERROR;
	}
	return s;
}

/* ---- configuration tables ---- */

static EFI_STATUS EFIAPI bs_install_configuration_table(EFI_GUID *guid, void *table)
{
	BS_LIVE();
	if (!guid)
		return EFI_INVALID_PARAMETER;
	UINTN n = st.NumberOfTableEntries, k;
	for (k = 0; k < n; k++)
		if (efi_guid_eq(&config_tables[k].VendorGuid, guid))
			break;
	if (!table) {
		if (k == n)
			return EFI_NOT_FOUND;
		efi_memmove(&config_tables[k], &config_tables[k + 1], (n - k - 1) * sizeof(config_tables[0]));
		st.NumberOfTableEntries = n - 1;
	} else if (k < n) {
		config_tables[k].VendorTable = table;
	} else {
		if (n == CONFIG_TABLES_MAX)
			return EFI_OUT_OF_RESOURCES;
		config_tables[n].VendorGuid = *guid;
		config_tables[n].VendorTable = table;
		st.NumberOfTableEntries = n + 1;
	}
	fw_st_changed();
	fw_event_signal_group(guid); /* UEFI 7.3: the event group of the table's GUID */
	return EFI_SUCCESS;
}

/* ---- miscellaneous ---- */

static EFI_STATUS EFIAPI bs_calculate_crc32(void *data, UINTN size, uint32_t *crc)
{
	if (!data || !size || !crc)
		return EFI_INVALID_PARAMETER;
	*crc = efi_crc32(data, size);
	return EFI_SUCCESS;
}

static void EFIAPI bs_copy_mem(void *dst, void *src, UINTN len)
{
	if (len && dst != src)
		efi_memmove(dst, src, len);
}

static void EFIAPI bs_set_mem(void *buf, UINTN size, uint8_t value)
{
	if (size)
		efi_memset(buf, value, size);
}

static EFI_STATUS EFIAPI bs_get_next_monotonic_count(uint64_t *count)
{
	if (!count)
		return EFI_INVALID_PARAMETER;
	BS_LIVE();
	*count = monotonic++;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI bs_stall(UINTN us)
{
	BS_LIVE();
	uint64_t start = fw_time_100ns(), ticks = us * 10, now;
	if (us > UINT64_MAX / 10)
		ticks = UINT64_MAX;
	while ((now = fw_time_100ns()) - start < ticks) {
		fw_event_poll();
		__asm__ volatile("pause");
	}
	/* Loaders calibrate their own clock with one short Stall (GRUB: Stall(1000) against the TSC): a
	 * vCPU descheduled in it makes that clock slow by the same factor, which stretches every timeout
	 * of the loader. Said in the log when it happens (a few times at most), for issue 18. */
	static unsigned late_told;
	if (us && us <= 100000 && (now - start) / 10 > 2 * (uint64_t)us + 1000 && late_told < 4) {
		late_told++;
		fw_host_event(FW_EV_LOG, "Stall(%llu us) took %llu us (the vCPU did not run for part of it)",
			      (unsigned long long)us, (unsigned long long)((now - start) / 10));
	}
	return EFI_SUCCESS;
}

/* The watchdog only reports: there is no reset to do that would help a test or a user more than the
 * log line (the VM's own timeout is the host's business). */
static EFI_STATUS EFIAPI bs_set_watchdog_timer(UINTN timeout, uint64_t code, UINTN size, CHAR16 *data)
{
	BS_LIVE();
	watchdog_deadline = timeout ? fw_time_100ns() + (uint64_t)timeout * 10000000ull : 0;
	return EFI_SUCCESS;
}

void fw_bs_watchdog_check(uint64_t now)
{
	if (watchdog_deadline && now >= watchdog_deadline) {
		watchdog_deadline = 0;
		fw_host_event(FW_EV_LOG, "the watchdog timer expired (a boot service user set it and did not stop it)");
	}
}

/* ---- ExitBootServices ---- */

static EFI_STATUS EFIAPI bs_exit_boot_services(EFI_HANDLE image, UINTN key)
{
	static const EFI_GUID before = EFI_EVENT_GROUP_BEFORE_EXIT_BOOT_SERVICES;
	static const EFI_GUID ebs = EFI_EVENT_GROUP_EXIT_BOOT_SERVICES;
	/* The image handle is not checked: UEFI names only a stale MapKey as an error, and loaders
	 * chained through shims do not all pass their own. */
	if (fw.boot_services_done)
		return EFI_INVALID_PARAMETER;
	/* UEFI 2.10 7.4: BEFORE_EXIT_BOOT_SERVICES is signalled on every call, before the key check. */
	fw_event_signal_group_now(&before);
	if (EFI_ERROR(efi_mem_check_key(&fw.mem, key)))
		return EFI_INVALID_PARAMETER;
	fw_event_signal_group_now(&ebs);
	fw_tick_stop();
	fw.boot_services_done = true;
	fw_host_event(FW_EV_EXIT_BOOT_SERVICES, "map key %llu", (unsigned long long)key);
	st.ConsoleInHandle = st.ConsoleOutHandle = st.StandardErrorHandle = NULL;
	st.ConIn = st.ConOut = st.StdErr = NULL;
	st.BootServices = NULL;
	fw_st_changed();
	return EFI_SUCCESS;
}

EFI_STATUS fw_bs_init(void)
{
	mem_init();
	static const struct efi_db_ops ops = { .alloc = db_alloc, .free = db_free, .signal = db_signal };
	efi_db_init(&fw.db, &ops);

	bs.Hdr = (EFI_TABLE_HEADER){ EFI_BOOT_SERVICES_SIGNATURE, EFI_SPECIFICATION_VERSION, sizeof(bs), 0, 0 };
	bs.AllocatePages = bs_allocate_pages;
	bs.FreePages = bs_free_pages;
	bs.GetMemoryMap = bs_get_memory_map;
	bs.AllocatePool = bs_allocate_pool;
	bs.FreePool = bs_free_pool;
	bs.InstallProtocolInterface = bs_install_protocol;
	bs.ReinstallProtocolInterface = bs_reinstall_protocol;
	bs.UninstallProtocolInterface = bs_uninstall_protocol;
	bs.HandleProtocol = bs_handle_protocol;
	bs.RegisterProtocolNotify = bs_register_protocol_notify;
	bs.LocateHandle = bs_locate_handle;
	bs.LocateDevicePath = bs_locate_device_path;
	bs.InstallConfigurationTable = bs_install_configuration_table;
	bs.ExitBootServices = bs_exit_boot_services;
	bs.GetNextMonotonicCount = bs_get_next_monotonic_count;
	bs.Stall = bs_stall;
	bs.SetWatchdogTimer = bs_set_watchdog_timer;
	bs.ConnectController = bs_connect_controller;
	bs.DisconnectController = bs_disconnect_controller;
	bs.OpenProtocol = bs_open_protocol;
	bs.CloseProtocol = bs_close_protocol;
	bs.OpenProtocolInformation = bs_open_protocol_information;
	bs.ProtocolsPerHandle = bs_protocols_per_handle;
	bs.LocateHandleBuffer = bs_locate_handle_buffer;
	bs.LocateProtocol = bs_locate_protocol;
	bs.InstallMultipleProtocolInterfaces = bs_install_multiple;
	bs.UninstallMultipleProtocolInterfaces = bs_uninstall_multiple;
	bs.CalculateCrc32 = bs_calculate_crc32;
	bs.CopyMem = bs_copy_mem;
	bs.SetMem = bs_set_mem;
	fw_event_init(&bs);

	st.Hdr = (EFI_TABLE_HEADER){ EFI_SYSTEM_TABLE_SIGNATURE, EFI_SPECIFICATION_VERSION, sizeof(st), 0, 0 };
	st.FirmwareVendor = (CHAR16 *)fw_vendor;
	st.FirmwareRevision = FW_REVISION;
	st.BootServices = &bs;
	st.ConfigurationTable = config_tables;
	fw.st = &st;
	fw.bs = &bs;
	fw.tpl = TPL_APPLICATION;

	EFI_STATUS s = fw_image_init(&bs);
	if (EFI_ERROR(s))
		return s;
	fw_table_crc(&bs.Hdr);
	fw_st_changed();
	return EFI_SUCCESS;
}
