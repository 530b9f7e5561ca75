/* ACPI tables of the generation 2 machine.
 *
 * What the machine describes, and why:
 * - Hardware-reduced ACPI (FADT flag HW_REDUCED_ACPI): there is no PM1/GPE register block, no PM timer,
 *   no SCI and no FACS (ACPICA ignores a FACS when the flag is set, and the global lock does not exist),
 *   so the VMM emulates no ACPI chipset. Power-off and reset go through three byte-wide I/O ports
 *   (ACPI_PORT_*, below). On x86 Linux the flag also swaps in a null legacy PIC and skips PIT/HPET
 *   timer setup, which is what a machine without a PIC or PIT needs.
 * - Local APICs (MADT), one per vCPU, plus one ACPI0007 processor device per vCPU in \_SB: Windows
 *   matches each MADT entry with a processor object by _UID; Linux does not need them but accepts them.
 * - An I/O APIC (optional, on by default): Linux boots without one (VMBus interrupts arrive as a
 *   vector sent straight to a local APIC), but Windows requires one and COM1/RTC need its pins. KVM's
 *   split irqchip gives gen2vm a userspace I/O APIC at little cost. Hyper-V's gen2 has one too.
 * - A CMOS RTC (optional): two ports and a clock, so cheap; it gives the guest its wall-clock time at
 *   boot (Linux and Windows read it) before the Hyper-V time-sync service runs, as on Hyper-V's gen2.
 *   Without it the FADT says "CMOS RTC not present".
 * - COM1 (optional): a 16550 for a debug console, as Hyper-V's optional COM1.
 * - VMBus: \_SB.VMOD, an ACPI0004 module device whose _CRS holds the MMIO windows that VMBus devices
 *   (synthetic video, vPCI) allocate from, and its child \_SB.VMOD.VMBS, which hv_vmbus binds to.
 * No PIC, PIT, i8042, HPET, VGA or PCI is described; IAPC_BOOT_ARCH says so.
 */
#ifndef GEN2VM_PLATFORM_ACPI_H
#define GEN2VM_PLATFORM_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gen2vm/proto/acpi_pm.h"
#include "platform/aml.h"

/* The power-management registers the FADT names: include/gen2vm/proto/acpi_pm.h. */

/* Fixed addresses and legacy resources the tables describe. */
#define ACPI_LAPIC_ADDR  0xFEE00000u
#define ACPI_IOAPIC_ADDR 0xFEC00000u
#define ACPI_IOAPIC_ID   0
#define ACPI_IOAPIC_GSI_BASE 0
#define ACPI_COM1_PORT   0x3F8
#define ACPI_COM1_IRQ    4

#define ACPI_MAX_VCPUS   1024
#define ACPI_OEM_ID_DEFAULT "GEN2VM"
/* Enough for every table with ACPI_MAX_VCPUS and no extras; callers may pass less. */
#define ACPI_TABLES_MAX_SIZE (64 * 1024)

struct acpi_mmio_window {
	uint64_t base;
	uint64_t size; /* 0: absent */
};

/* A table the VMM brings (e.g. one a later device needs): copied after the built-in tables and listed
 * in the XSDT. It starts with a standard 36-byte header whose length field equals len; its checksum is
 * recomputed by the builder. */
struct acpi_table_blob {
	const void *data;
	size_t len;
};

struct acpi_config {
	unsigned nr_vcpus;        /* 1..ACPI_MAX_VCPUS */
	const uint32_t *apic_ids; /* nr_vcpus APIC ids; NULL means APIC id = vCPU index */
	bool com1;                /* 16550 at 0x3F8, IRQ 4 */
	bool rtc;                 /* CMOS RTC (PNP0B00) at 0x70-0x71, no IRQ, century at 0x32 */
	bool ioapic;              /* I/O APIC at 0xFEC00000, GSI base 0, 24 pins */
	bool vmbus;               /* \_SB.VMOD and \_SB.VMOD.VMBS */
	struct acpi_mmio_window mmio_low, mmio_high; /* in VMOD's _CRS (with vmbus only) */
	char oem_id[7];           /* up to 6 characters; "" means ACPI_OEM_ID_DEFAULT */

	/* Extension point for later devices: called inside Scope(\_SB) after the built-in devices, it
	 * appends Device() objects to sb. A negative return aborts the build with that error. */
	int (*dsdt_sb_extra)(struct aml *sb, void *opaque);
	void *opaque;
	const struct acpi_table_blob *extra_tables;
	size_t nr_extra_tables;
};

/* Lays out RSDP (revision 2, at buf[0]), XSDT, FADT, MADT, DSDT and any extra tables in buf, with all
 * pointers computed for the guest physical address gpa at which buf[0] will be copied (16-byte aligned).
 * Stores the RSDP's address (gpa) in *rsdp_gpa. Returns the bytes used, -EINVAL for a bad config or
 * gpa, -ENOSPC when cap is too small, -ENOMEM, or the extension callback's error (buf's contents are
 * then unspecified). */
ssize_t acpi_tables_build(const struct acpi_config *cfg, uint8_t *buf, size_t cap, uint64_t gpa,
			  uint64_t *rsdp_gpa);

#endif
