/* The firmware's internal interfaces: one global state, the console, host calls and the services
 * each module offers the others. Modules: fw.c (start-up, exceptions, host calls), console.c,
 * bs.c/event.c/image.c (boot services), rt.c (runtime services), storage (vmbus.c, storvsc.c,
 * disk.c, fs.c), the screen and keyboard (video.c, kbd.c; conio.h), bootmgr.c.
 *
 * Every function at the UEFI ABI edge is EFIAPI (ms_abi). Internal functions use the SysV ABI and
 * return EFI_STATUS where they can fail. The firmware is single-threaded: the boot processor runs
 * everything with interrupts off; timers are polled (fw_event_poll) from the services that wait.
 */
#ifndef GEN2VM_FIRMWARE_FW_H
#define GEN2VM_FIRMWARE_FW_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efi/efi_handle.h"
#include "efi/efi_lib.h"
#include "efi/efi_mem.h"
#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/efi_bs.h"
#include "gen2vm/proto/fw.h"

#define FW_VERSION "gen2vm firmware 0.1"
#define FW_VENDOR u"gen2vm"
#define FW_REVISION 0x00010000u

struct fw_state {
	const struct fw_handoff *ho;
	EFI_SYSTEM_TABLE *st;
	EFI_BOOT_SERVICES *bs;
	EFI_RUNTIME_SERVICES *rt;
	struct efi_mem mem;
	struct efi_db db;
	EFI_HANDLE image;          /* the firmware's own image handle */
	EFI_TPL tpl;
	bool boot_services_done;   /* ExitBootServices succeeded */
	bool virtual_mode;         /* SetVirtualAddressMap succeeded */
};
extern struct fw_state fw;

/* ---- fw.c ---- */
/* Sends one host call (struct fw_host_req at the start of req, hdr.size filled in by the caller)
 * and returns the status the VMM wrote. req must be physically addressable below 4 GiB. */
EFI_STATUS fw_host_call(void *req);
/* FW_OP_EVENT with a formatted text (boot progress for the host's log and benchmarks). */
void fw_host_event(uint32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a fatal firmware error to the host (the VM ends as crashed) and halts. */
__attribute__((noreturn)) void fw_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Stops the boot-services tick and turns interrupts off, as ExitBootServices leaves them. */
void fw_tick_stop(void);
/* The pool allocator at boot-services time (EfiBootServicesData); NULL when out of memory. */
void *fw_alloc(size_t size);
void *fw_zalloc(size_t size);
void fw_free(void *p);
/* Physical address of a firmware pointer (the identity map: the pointer itself, until the OS has
 * called SetVirtualAddressMap; runtime code must use fw_rt_phys()). */
uint64_t fw_virt_to_phys(const void *p);

/* ---- console.c ---- */
void fw_console_init(void);
/* Raw output to every firmware console (COM1 and the debug console), '\n' becoming "\r\n". */
void fw_puts(const char *s);
void fw_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fw_vprintf(const char *fmt, va_list ap);

/* ---- rt.c ---- */
/* GetVariable/SetVariable for firmware modules (the boot manager, the console): the host-owned store
 * with UEFI semantics. fw_var_set writes as the firmware, so it may also set the variables the OS may
 * only read (BootCurrent, BootOptionSupport...) until ExitBootServices. Names and GUIDs as in UEFI;
 * attribute and load-option constants in gen2vm/proto/fw_var.h. */
EFI_STATUS fw_var_get(const CHAR16 *name, const EFI_GUID *guid, uint32_t *attributes, UINTN *size, void *data);
EFI_STATUS fw_var_set(const CHAR16 *name, const EFI_GUID *guid, uint32_t attributes, UINTN size, const void *data);
/* Called by SetVirtualAddressMap before it converts its own pointers: bs.c signals the
 * EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE events there (their notify functions may call ConvertPointer).
 * rt.c has a weak empty one. */
void fw_bs_virtual_address_change(void);

/* Module initialisers, called by fw_main in this order. Each installs its protocols and fills its
 * part of the system table; a failure is reported and start-up goes on without it when it can. */
EFI_STATUS fw_bs_init(void);      /* system table, boot services, memory map, handle database */
EFI_STATUS fw_rt_init(void);      /* runtime services, variables */
EFI_STATUS fw_conio_init(void);   /* SimpleTextOutput/Input protocols, ConIn/ConOut/StdErr */
EFI_STATUS fw_tables_init(void);  /* ACPI and SMBIOS configuration tables, RNG, DevicePathToText */
EFI_STATUS fw_storage_init(void); /* VMBus, screen and keyboard (video.c, kbd.c), storvsc BlockIo,
				      partitions, file systems */
/* Runs the boot manager; returns only when every boot option failed. */
void fw_bootmgr_run(void);

/* ---- bs.c (boot services core; fw_bs_init also runs fw_event_init and fw_image_init) ---- */
/* Stores the CRC32 of a table (hdr->HeaderSize bytes, computed with hdr->CRC32 = 0). */
void fw_table_crc(EFI_TABLE_HEADER *hdr);
/* Call after changing a system table field (ConOut, ConIn, RuntimeServices...): recomputes its CRC.
 * StartImage also does it (and fills RuntimeServices from fw.rt while it is NULL) before each image. */
void fw_st_changed(void);
/* Reports an expired SetWatchdogTimer (fw_event_poll calls it). */
void fw_bs_watchdog_check(uint64_t now);

/* ---- event.c: events, timers, TPL ----
 * Timers are polled: every service that waits (WaitForEvent, CheckEvent, Stall) and RestoreTPL calls
 * fw_event_poll(); a module that spins on a device should call it too. */
void fw_event_init(EFI_BOOT_SERVICES *bs); /* fills the event/timer/TPL entries of bs */
void fw_event_poll(void);
/* 100 ns ticks since an arbitrary origin (RDTSC scaled by the TSC frequency when known, else the
 * Hyper-V reference counter MSR). Monotonic. */
uint64_t fw_time_100ns(void);
/* SignalEvent: EFI_INVALID_PARAMETER for something that is not a live event. Notify functions above
 * the current TPL run before it returns. */
EFI_STATUS fw_event_signal(EFI_EVENT event);
/* Signals every event of a group (CreateEventEx's EventGroup, or EVT_SIGNAL_EXIT_BOOT_SERVICES /
 * EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE events for those groups), e.g. EFI_EVENT_GROUP_READY_TO_BOOT by
 * the boot manager and EFI_EVENT_GROUP_VIRTUAL_ADDRESS_CHANGE by SetVirtualAddressMap. Notify
 * functions above the current TPL run before it returns; fw_event_signal_group_now runs them all
 * whatever the TPL (ExitBootServices, SetVirtualAddressMap: there is no later RestoreTPL). After
 * ExitBootServices only EVT_RUNTIME events (kept in runtime memory) are signalled. */
void fw_event_signal_group(const EFI_GUID *group);
void fw_event_signal_group_now(const EFI_GUID *group);

/* ---- image.c: LoadImage/StartImage/Exit/UnloadImage ---- */
/* Fills the image entries of bs and gives the firmware its own image handle (fw.image). */
EFI_STATUS fw_image_init(EFI_BOOT_SERVICES *bs);
/* Starts the image the VMM placed in memory (--efi), with the --cmdline text as its UCS-2 load
 * options and the --initrd offered through LoadFile2 on Linux's initrd media device path.
 * EFI_NOT_FOUND when there is none; else the image's exit status (or the load error). */
EFI_STATUS fw_image_start_handoff(void);
/* Why Secure Boot refused the last image LoadImage refused with EFI_SECURITY_VIOLATION ("" when it
 * did not), for the boot summary. */
const char *fw_image_refusal(void);

#endif
