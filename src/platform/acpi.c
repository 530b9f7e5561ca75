/* ACPI table builder for the generation 2 machine. Layouts: ACPI 6.5, sections 5.2.5 (RSDP), 5.2.6
 * (header), 5.2.8 (XSDT), 5.2.9 (FADT), 5.2.12 (MADT). */
#include "platform/acpi.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/rtc.h"

#define ACPI_HDR_LEN   36
#define ACPI_RSDP_LEN  36
#define ACPI_FADT_LEN  276 /* through the ACPI 6.3 hypervisor vendor identity */
#define ACPI_MADT_HDR  44
#define ACPI_TABLE_ALIGN 16

/* FADT flags (5.2.9, table 5.10). The buttons are "not fixed-feature" because a hardware-reduced
 * machine has no fixed-feature hardware at all; the same holds for the RTC wake status. */
#define FADT_PWR_BUTTON    (1u << 4)
#define FADT_SLP_BUTTON    (1u << 5)
#define FADT_FIX_RTC       (1u << 6)
#define FADT_RESET_REG_SUP (1u << 10)
#define FADT_HW_REDUCED    (1u << 20)
/* IAPC_BOOT_ARCH (table 5.11). No 8042 is bit 1 *clear*; "legacy devices" (bit 0) stays clear too. */
#define IAPC_VGA_NOT_PRESENT  (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint8_t acpi_checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;
	while (n--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)-sum;
}

/* A byte-wide I/O port as a Generic Address Structure. */
static void acpi_gas_port(uint8_t *p, uint16_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = 8; /* bit width */
	p[2] = 0; /* bit offset */
	p[3] = GAS_ACCESS_BYTE;
	put64(p + 4, port);
}

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev, const char *oem)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memset(t + 10, ' ', 6 + 8); /* OEM id and OEM table id, space-padded */
	memcpy(t + 10, oem, strlen(oem));
	memcpy(t + 16, "GEN2VM", 6);
	put32(t + 24, 1); /* OEM revision */
	memcpy(t + 28, "G2VM", 4); /* creator id */
	put32(t + 32, 1);          /* creator revision */
}

static void acpi_table_seal(uint8_t *t)
{
	t[9] = 0;
	uint32_t len = (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
	t[9] = acpi_checksum(t, len);
}

/* The space the tables occupy in the caller's buffer: hands out aligned chunks. */
struct acpi_layout {
	uint8_t *buf;
	size_t cap;
	size_t used;
	uint64_t gpa;
};

static uint8_t *acpi_layout_take(struct acpi_layout *l, size_t n, uint64_t *gpa)
{
	size_t off = (l->used + ACPI_TABLE_ALIGN - 1) & ~(size_t)(ACPI_TABLE_ALIGN - 1);
	if (off > l->cap || n > l->cap - off)
		return NULL;
	l->used = off + n;
	memset(l->buf + off, 0, n);
	*gpa = l->gpa + off;
	return l->buf + off;
}

static uint32_t acpi_apic_id(const struct acpi_config *cfg, unsigned i)
{
	return cfg->apic_ids ? cfg->apic_ids[i] : i;
}

/* xAPIC entries carry 8-bit ids and UIDs, and id 255 is the broadcast id: anything above 254 needs a
 * Processor Local x2APIC entry. */
static bool acpi_needs_x2apic(const struct acpi_config *cfg, unsigned i)
{
	return acpi_apic_id(cfg, i) > 254 || i > 254;
}

static void acpi_fadt_fill(const struct acpi_config *cfg, uint8_t *t, uint64_t dsdt_gpa, const char *oem)
{
	acpi_header(t, "FACP", ACPI_FADT_LEN, 6, oem);
	/* FIRMWARE_CTRL, DSDT (32-bit), SCI_INT, SMI_CMD and every PM block stay 0: hardware-reduced. */
	uint16_t boot_arch = IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED;
	if (!cfg->rtc)
		boot_arch |= IAPC_CMOS_RTC_NOT_PRESENT;
	put16(t + 109, boot_arch);
	if (cfg->rtc)
		t[108] = RTC_CENTURY_REG; /* CENTURY: the CMOS register holding the century */
	put32(t + 112, FADT_HW_REDUCED | FADT_RESET_REG_SUP | FADT_PWR_BUTTON | FADT_SLP_BUTTON |
			       FADT_FIX_RTC);
	acpi_gas_port(t + 116, ACPI_PORT_RESET);
	t[128] = ACPI_RESET_VALUE;
	t[131] = 5; /* FADT minor version: ACPI 6.5 */
	put64(t + 140, dsdt_gpa); /* X_DSDT */
	acpi_gas_port(t + 244, ACPI_PORT_SLEEP_CONTROL);
	acpi_gas_port(t + 256, ACPI_PORT_SLEEP_STATUS);
	memcpy(t + 268, "GEN2VM\0\0", 8); /* hypervisor vendor identity */
}

static size_t acpi_madt_len(const struct acpi_config *cfg)
{
	size_t n = ACPI_MADT_HDR + (cfg->ioapic ? 12 : 0);
	for (unsigned i = 0; i < cfg->nr_vcpus; i++)
		n += acpi_needs_x2apic(cfg, i) ? 16 : 8;
	return n;
}

/* No Interrupt Source Overrides: with no 8259 (PCAT_COMPAT clear) and no PIT, nothing is wired
 * differently from the ISA default that an OS assumes without an override (ISA IRQ n = GSI n, edge,
 * active high), which is exactly how COM1 (pin 4) and the RTC (pin 8) reach the I/O APIC. The classic
 * IRQ0 -> GSI2 override exists only for the PIT. Linux invents an SCI override for SCI_INT 0 when none
 * is given; that is harmless because GSI 0 is unused and hardware-reduced ACPI has no SCI. */
static void acpi_madt_fill(const struct acpi_config *cfg, uint8_t *t, size_t len, const char *oem)
{
	acpi_header(t, "APIC", (uint32_t)len, 5, oem);
	put32(t + 36, ACPI_LAPIC_ADDR);
	put32(t + 40, 0); /* flags: PCAT_COMPAT clear, there is no 8259 */
	uint8_t *e = t + ACPI_MADT_HDR;
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		uint32_t id = acpi_apic_id(cfg, i);
		if (acpi_needs_x2apic(cfg, i)) {
			e[0] = 9; /* Processor Local x2APIC */
			e[1] = 16;
			put32(e + 4, id);
			put32(e + 8, 1); /* enabled */
			put32(e + 12, i); /* ACPI processor UID, = _UID of \_SB.Cxxx */
			e += 16;
		} else {
			e[0] = 0; /* Processor Local APIC */
			e[1] = 8;
			e[2] = (uint8_t)i;
			e[3] = (uint8_t)id;
			put32(e + 4, 1);
			e += 8;
		}
	}
	if (cfg->ioapic) {
		e[0] = 1; /* I/O APIC */
		e[1] = 12;
		e[2] = ACPI_IOAPIC_ID;
		put32(e + 4, ACPI_IOAPIC_ADDR);
		put32(e + 8, ACPI_IOAPIC_GSI_BASE);
	}
}

static void acpi_dsdt_vmbus(const struct acpi_config *cfg, struct aml *a)
{
	size_t vmod = aml_device_begin(a, "VMOD");
	aml_name_string(a, "_HID", "ACPI0004");
	aml_name_int(a, "_UID", 0);
	/* Producer: these windows are handed out to VMBus devices, VMOD itself decodes nothing. */
	aml_name(a, "_CRS");
	size_t rt = aml_restemplate_begin(a);
	if (cfg->mmio_low.size)
		aml_res_qword_memory(a, cfg->mmio_low.base, cfg->mmio_low.size, true);
	if (cfg->mmio_high.size)
		aml_res_qword_memory(a, cfg->mmio_high.base, cfg->mmio_high.size, true);
	aml_restemplate_end(a, rt);

	size_t vmbs = aml_device_begin(a, "VMBS");
	aml_name_int(a, "_STA", 0x0F);
	aml_name_int(a, "_ADR", 0);
	aml_name_string(a, "_DDN", "VMBUS");
	/* Linux's hv_vmbus matches only "VMBUS" or "VMBus", which are not valid ACPI/PNP ids (iasl
	 * rejects them when compiling ASL); Hyper-V uses "VMBus" as well. */
	aml_name_string(a, "_HID", "VMBus");
	aml_name_int(a, "_UID", 0);
	/* hv_vmbus fails to probe unless _CRS exists; an empty template is enough. */
	aml_name(a, "_CRS");
	rt = aml_restemplate_begin(a);
	aml_restemplate_end(a, rt);
	aml_end(a, vmbs);
	aml_end(a, vmod);
}

/* A legacy ISA device with one fixed I/O range and, when there is an I/O APIC to deliver it, one ISA
 * interrupt. Without an I/O APIC the interrupt is left out so that drivers poll instead of waiting
 * for an interrupt that can never arrive. */
static void acpi_dsdt_isa(const struct acpi_config *cfg, struct aml *a, const char *name,
			  const char *eisaid, int uid, uint16_t port, uint8_t len, int irq)
{
	size_t dev = aml_device_begin(a, name);
	aml_name_eisaid(a, "_HID", eisaid);
	if (uid >= 0)
		aml_name_int(a, "_UID", (uint64_t)uid);
	aml_name_int(a, "_STA", 0x0F);
	aml_name(a, "_CRS");
	size_t rt = aml_restemplate_begin(a);
	aml_res_io(a, port, len);
	if (cfg->ioapic && irq >= 0)
		aml_res_irq_noflags(a, (unsigned)irq);
	aml_restemplate_end(a, rt);
	aml_end(a, dev);
}

/* The DSDT, header included (filled in later). */
static int acpi_dsdt_build(const struct acpi_config *cfg, struct aml *a)
{
	static const uint8_t header[ACPI_HDR_LEN];
	aml_bytes(a, header, sizeof(header));

	/* SLP_TYPa and SLP_TYPb, then two reserved elements. Linux powers off only when \_S5 exists
	 * and, hardware-reduced, both sleep registers are in the FADT. */
	aml_name(a, "_S5_");
	size_t pkg = aml_package_begin(a, 4);
	aml_int(a, ACPI_SLP_TYP_S5);
	aml_int(a, ACPI_SLP_TYP_S5);
	aml_int(a, 0);
	aml_int(a, 0);
	aml_end(a, pkg);

	size_t sb = aml_scope_begin(a, "\\_SB");
	for (unsigned i = 0; i < cfg->nr_vcpus; i++) {
		char name[16];
		snprintf(name, sizeof(name), "C%03X", i);
		size_t cpu = aml_device_begin(a, name);
		aml_name_string(a, "_HID", "ACPI0007");
		aml_name_int(a, "_UID", i);
		aml_end(a, cpu);
	}
	if (cfg->vmbus)
		acpi_dsdt_vmbus(cfg, a);
	if (cfg->com1)
		acpi_dsdt_isa(cfg, a, "UAR1", "PNP0501", 1, ACPI_COM1_PORT, 8, ACPI_COM1_IRQ);
	if (cfg->rtc)
		acpi_dsdt_isa(cfg, a, "RTC0", "PNP0B00", -1, RTC_PORT, 2, -1); /* no interrupt wired */
	if (cfg->dsdt_sb_extra && !a->err) {
		int r = cfg->dsdt_sb_extra(a, cfg->opaque);
		if (r < 0)
			return r;
	}
	aml_end(a, sb);
	if (!a->err && a->len > UINT32_MAX)
		return -E2BIG;
	return a->err;
}

static bool acpi_window_ok(const struct acpi_mmio_window *w)
{
	return !w->size || w->size - 1 <= UINT64_MAX - w->base;
}

static int acpi_config_check(const struct acpi_config *cfg)
{
	if (!cfg->nr_vcpus || cfg->nr_vcpus > ACPI_MAX_VCPUS)
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nr_vcpus; i++)
		if (acpi_apic_id(cfg, i) == UINT32_MAX)
			return -EINVAL;
	if (!acpi_window_ok(&cfg->mmio_low) || !acpi_window_ok(&cfg->mmio_high))
		return -EINVAL;
	if (strnlen(cfg->oem_id, sizeof(cfg->oem_id)) == sizeof(cfg->oem_id))
		return -EINVAL;
	if (cfg->nr_extra_tables && !cfg->extra_tables)
		return -EINVAL;
	for (size_t i = 0; i < cfg->nr_extra_tables; i++) {
		const struct acpi_table_blob *b = &cfg->extra_tables[i];
		const uint8_t *d = b->data;
		if (b->len < ACPI_HDR_LEN || b->len > UINT32_MAX ||
		    ((uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16 | (uint32_t)d[7] << 24) != b->len)
			return -EINVAL;
	}
	return 0;
}

ssize_t acpi_tables_build(const struct acpi_config *cfg, uint8_t *buf, size_t cap, uint64_t gpa,
			  uint64_t *rsdp_gpa)
{
	if (!cfg || !buf || !rsdp_gpa || (gpa & (ACPI_TABLE_ALIGN - 1)) || cap > UINT64_MAX - gpa)
		return -EINVAL;
	int r = acpi_config_check(cfg);
	if (r)
		return r;
	const char *oem = cfg->oem_id[0] ? cfg->oem_id : ACPI_OEM_ID_DEFAULT;

	struct aml dsdt;
	aml_init(&dsdt);
	r = acpi_dsdt_build(cfg, &dsdt);
	if (r) {
		aml_free(&dsdt);
		return r;
	}

	struct acpi_layout l = { .buf = buf, .cap = cap, .gpa = gpa };
	size_t nx = 2 + cfg->nr_extra_tables;
	size_t madt_len = acpi_madt_len(cfg);
	uint64_t g_rsdp, g_xsdt, g_fadt, g_madt, g_dsdt;
	uint8_t *rsdp = acpi_layout_take(&l, ACPI_RSDP_LEN, &g_rsdp);
	uint8_t *xsdt = rsdp ? acpi_layout_take(&l, ACPI_HDR_LEN + 8 * nx, &g_xsdt) : NULL;
	uint8_t *fadt = xsdt ? acpi_layout_take(&l, ACPI_FADT_LEN, &g_fadt) : NULL;
	uint8_t *madt = fadt ? acpi_layout_take(&l, madt_len, &g_madt) : NULL;
	uint8_t *dt = madt ? acpi_layout_take(&l, dsdt.len, &g_dsdt) : NULL;
	if (!dt) {
		aml_free(&dsdt);
		return -ENOSPC;
	}

	memcpy(dt, dsdt.data, dsdt.len);
	acpi_header(dt, "DSDT", (uint32_t)dsdt.len, 2, oem); /* revision 2: 64-bit AML integers */
	acpi_table_seal(dt);
	aml_free(&dsdt);

	acpi_fadt_fill(cfg, fadt, g_dsdt, oem);
	acpi_table_seal(fadt);
	acpi_madt_fill(cfg, madt, madt_len, oem);
	acpi_table_seal(madt);

	acpi_header(xsdt, "XSDT", (uint32_t)(ACPI_HDR_LEN + 8 * nx), 1, oem);
	put64(xsdt + ACPI_HDR_LEN, g_fadt);
	put64(xsdt + ACPI_HDR_LEN + 8, g_madt);
	for (size_t i = 0; i < cfg->nr_extra_tables; i++) {
		const struct acpi_table_blob *b = &cfg->extra_tables[i];
		uint64_t g;
		uint8_t *t = acpi_layout_take(&l, b->len, &g);
		if (!t)
			return -ENOSPC;
		memcpy(t, b->data, b->len);
		acpi_table_seal(t);
		put64(xsdt + ACPI_HDR_LEN + 8 * (2 + i), g);
	}
	acpi_table_seal(xsdt);

	memcpy(rsdp, "RSD PTR ", 8);
	memset(rsdp + 9, ' ', 6);
	memcpy(rsdp + 9, oem, strlen(oem));
	rsdp[15] = 2; /* revision: ACPI 2.0+, XSDT only (no RSDT: every OS we run reads the XSDT) */
	put32(rsdp + 20, ACPI_RSDP_LEN);
	put64(rsdp + 24, g_xsdt);
	rsdp[8] = acpi_checksum(rsdp, 20);
	rsdp[32] = acpi_checksum(rsdp, ACPI_RSDP_LEN);

	*rsdp_gpa = g_rsdp;
	return (ssize_t)l.used;
}
