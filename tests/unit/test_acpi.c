/* The AML encoder against hand-assembled bytes, and the ACPI tables against their own invariants and
 * against iasl (acpica-tools), which must decompile every table cleanly and recompile the DSDT. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "devices/acpi_pm.h"
#include "platform/acpi.h"
#include "platform/aml.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void expect_bytes(const void *p, const uint8_t *want, size_t n)
{
	assert_memory_equal(p, want, n);
}

static void expect_aml(const struct aml *a, const uint8_t *want, size_t n)
{
	assert_int_equal(a->err, 0);
	assert_int_equal(a->len, n);
	assert_memory_equal(a->data, want, n);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* ---- AML encoder ---- */

static void test_pkglen_boundaries(void **state)
{
	uint8_t e[4];
	/* The value counts its own bytes: 62 bytes of body + 1 = 63 still fits one byte, 63 does not. */
	assert_int_equal(aml_pkglen_encode(e, 62), 1);
	assert_int_equal(e[0], 0x3F);
	assert_int_equal(aml_pkglen_encode(e, 63), 2); /* 65 = 0x041 */
	expect_bytes(e, BYTES(0x41, 0x04));
	assert_int_equal(aml_pkglen_encode(e, 4093), 2); /* 4095 = 0xFFF */
	expect_bytes(e, BYTES(0x4F, 0xFF));
	assert_int_equal(aml_pkglen_encode(e, 4094), 3); /* 4097 = 0x1001 */
	expect_bytes(e, BYTES(0x81, 0x00, 0x01));
	assert_int_equal(aml_pkglen_encode(e, 0xFFFFC), 3); /* 0xFFFFF */
	expect_bytes(e, BYTES(0x8F, 0xFF, 0xFF));
	assert_int_equal(aml_pkglen_encode(e, 0xFFFFD), 4); /* 0x100001 */
	expect_bytes(e, BYTES(0xC1, 0x00, 0x00, 0x01));
	assert_int_equal(aml_pkglen_encode(e, (1u << 28) - 5), 4);
	expect_bytes(e, BYTES(0xCF, 0xFF, 0xFF, 0xFF));
	assert_int_equal(aml_pkglen_encode(e, (1u << 28) - 4), 0);
}

/* Scope(\){<fill bytes>}: the PkgLength is inserted in front of a body that was already written. */
static void check_scope_body(size_t fill, const uint8_t *pl, size_t npl)
{
	struct aml a;
	aml_init(&a);
	uint8_t *body = malloc(fill);
	assert_non_null(body);
	for (size_t i = 0; i < fill; i++)
		body[i] = (uint8_t)(i * 7 + 1);
	size_t m = aml_scope_begin(&a, "\\");
	aml_bytes(&a, body, fill);
	aml_end(&a, m);
	assert_int_equal(a.err, 0);
	assert_int_equal(a.len, 1 + npl + 2 + fill);
	assert_int_equal(a.data[0], 0x10);
	assert_memory_equal(a.data + 1, pl, npl);
	expect_bytes(a.data + 1 + npl, BYTES(0x5C, 0x00));
	assert_memory_equal(a.data + 3 + npl, body, fill);
	free(body);
	aml_free(&a);
}

static void test_nested_pkglen(void **state)
{
	/* The body is the 2-byte name plus the fill. */
	check_scope_body(60, BYTES(0x3F));
	check_scope_body(61, BYTES(0x41, 0x04));
	check_scope_body(4091, BYTES(0x4F, 0xFF));
	check_scope_body(4092, BYTES(0x81, 0x00, 0x01));

	/* Nested: Device(VMBS){Name(_UID, 0)} inside Scope(\_SB) inside Device(VMOD)... */
	struct aml a;
	aml_init(&a);
	size_t s = aml_scope_begin(&a, "\\_SB");
	size_t d = aml_device_begin(&a, "VMBS");
	aml_name_int(&a, "_UID", 0);
	aml_end(&a, d);
	aml_end(&a, s);
	expect_aml(&a, BYTES(0x10, 0x13, 0x5C, '_', 'S', 'B', '_',
			     0x5B, 0x82, 0x0B, 'V', 'M', 'B', 'S', 0x08, '_', 'U', 'I', 'D', 0x00));
	aml_free(&a);
}

static void check_int(uint64_t v, const uint8_t *want, size_t n)
{
	struct aml a;
	aml_init(&a);
	aml_int(&a, v);
	expect_aml(&a, want, n);
	aml_free(&a);
}

static void test_integers(void **state)
{
	check_int(0, BYTES(0x00));
	check_int(1, BYTES(0x01));
	check_int(2, BYTES(0x0A, 0x02));
	check_int(0xFF, BYTES(0x0A, 0xFF));
	check_int(0x100, BYTES(0x0B, 0x00, 0x01));
	check_int(0xFFFF, BYTES(0x0B, 0xFF, 0xFF));
	check_int(0x10000, BYTES(0x0C, 0x00, 0x00, 0x01, 0x00));
	check_int(0xFFFFFFFF, BYTES(0x0C, 0xFF, 0xFF, 0xFF, 0xFF));
	check_int(0x100000000, BYTES(0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00));
	check_int(UINT64_MAX - 1, BYTES(0x0E, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF));
	check_int(UINT64_MAX, BYTES(0xFF));
}

static void check_name(const char *path, const uint8_t *want, size_t n)
{
	struct aml a;
	aml_init(&a);
	aml_namestring(&a, path);
	expect_aml(&a, want, n);
	aml_free(&a);
}

static void check_bad_name(const char *path)
{
	struct aml a;
	aml_init(&a);
	aml_namestring(&a, path);
	assert_int_equal(a.err, -EINVAL);
	aml_int(&a, 5); /* sticky: nothing more is written */
	assert_int_equal(a.len, 0);
	aml_free(&a);
}

static void test_names(void **state)
{
	check_name("\\", BYTES(0x5C, 0x00));
	check_name("_SB", BYTES('_', 'S', 'B', '_'));
	check_name("\\_SB", BYTES(0x5C, '_', 'S', 'B', '_'));
	check_name("\\_SB.VMOD", BYTES(0x5C, 0x2E, '_', 'S', 'B', '_', 'V', 'M', 'O', 'D'));
	check_name("\\_SB.VMOD.VMBS", BYTES(0x5C, 0x2F, 0x03, '_', 'S', 'B', '_', 'V', 'M', 'O', 'D',
					   'V', 'M', 'B', 'S'));
	check_name("^^C0", BYTES(0x5E, 0x5E, 'C', '0', '_', '_'));
	check_bad_name("vmbs");
	check_bad_name("TOOLONG");
	check_bad_name("1ABC");
	check_bad_name("A..B");
	check_bad_name("ABCD.");
	check_bad_name("");
}

static void test_objects(void **state)
{
	struct aml a;
	aml_init(&a);
	aml_name_string(&a, "_HID", "VMBus");
	expect_aml(&a, BYTES(0x08, '_', 'H', 'I', 'D', 0x0D, 'V', 'M', 'B', 'u', 's', 0x00));
	aml_free(&a);

	aml_init(&a);
	size_t m = aml_method_begin(&a, "_STA", 0, false);
	aml_return(&a);
	aml_int(&a, 0x0F);
	aml_end(&a, m);
	m = aml_method_begin(&a, "FOO", 2, true);
	aml_end(&a, m);
	expect_aml(&a, BYTES(0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F,
			     0x14, 0x06, 'F', 'O', 'O', '_', 0x0A));
	aml_free(&a);

	aml_init(&a);
	m = aml_package_begin(&a, 2);
	aml_int(&a, 1);
	aml_string(&a, "A");
	aml_end(&a, m);
	aml_buffer(&a, BYTES(0xAA, 0xBB));
	expect_aml(&a, BYTES(0x12, 0x06, 0x02, 0x01, 0x0D, 'A', 0x00, 0x11, 0x05, 0x0A, 0x02, 0xAA, 0xBB));
	aml_free(&a);

	assert_int_equal(aml_eisaid_encode("PNP0501"), 0x0105D041);
	assert_int_equal(aml_eisaid_encode("PNP0B00"), 0x000BD041);
	assert_int_equal(aml_eisaid_encode("pnp0501"), 0);
	assert_int_equal(aml_eisaid_encode("PNP050"), 0);
	assert_int_equal(aml_eisaid_encode("PNP050G"), 0);
	aml_init(&a);
	aml_name_eisaid(&a, "_HID", "PNP0501");
	expect_aml(&a, BYTES(0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01));
	aml_eisaid(&a, "nope");
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);
}

static void test_resource_templates(void **state)
{
	struct aml a;
	aml_init(&a);
	size_t m = aml_restemplate_begin(&a);
	aml_res_io(&a, 0x3F8, 8);
	aml_res_irq_noflags(&a, 4);
	aml_restemplate_end(&a, m);
	expect_aml(&a, BYTES(0x11, 0x10, 0x0A, 0x0D,
			     0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, /* IO(Decode16, 0x3F8, 0x3F8, 1, 8) */
			     0x22, 0x10, 0x00,                               /* IRQNoFlags(){4} */
			     0x79, 0x00));
	aml_free(&a);

	aml_init(&a);
	m = aml_restemplate_begin(&a);
	aml_restemplate_end(&a, m);
	expect_aml(&a, BYTES(0x11, 0x05, 0x0A, 0x02, 0x79, 0x00));
	aml_free(&a);

	aml_init(&a);
	m = aml_restemplate_begin(&a);
	aml_res_qword_memory(&a, 0x1000000000, 0x40000000, true);
	aml_res_dword_memory(&a, 0xF8000000, 0x100000, false);
	aml_res_interrupt(&a, 20, false, true, true);
	aml_restemplate_end(&a, m);
	expect_aml(&a, BYTES(0x11, 0x47, 0x05, 0x0A, 0x53,
			     0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01,
			     0, 0, 0, 0, 0, 0, 0, 0,
			     0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
			     0xFF, 0xFF, 0xFF, 0x3F, 0x10, 0x00, 0x00, 0x00,
			     0, 0, 0, 0, 0, 0, 0, 0,
			     0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
			     0x87, 0x17, 0x00, 0x00, 0x0D, 0x01,
			     0, 0, 0, 0,
			     0x00, 0x00, 0x00, 0xF8,
			     0xFF, 0xFF, 0x0F, 0xF8,
			     0, 0, 0, 0,
			     0x00, 0x00, 0x10, 0x00,
			     0x89, 0x06, 0x00, 0x0D, 0x01, 0x14, 0x00, 0x00, 0x00,
			     0x79, 0x00));
	aml_free(&a);

	aml_init(&a);
	aml_res_qword_memory(&a, UINT64_MAX, 2, false);
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);
	aml_init(&a);
	aml_res_irq_noflags(&a, 16);
	assert_int_equal(a.err, -EINVAL);
	aml_free(&a);
}

/* ---- tables ---- */

#define GPA 0x7FE00000ull

struct tables {
	uint8_t buf[ACPI_TABLES_MAX_SIZE];
	size_t used;
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

static const uint8_t *table_at(const struct tables *t, uint64_t gpa, const char *sig)
{
	assert_true(gpa >= GPA && gpa - GPA + 36 <= t->used);
	const uint8_t *p = t->buf + (gpa - GPA);
	assert_memory_equal(p, sig, 4);
	assert_true(gpa - GPA + rd32(p + 4) <= t->used);
	assert_int_equal(sum8(p, rd32(p + 4)), 0);
	return p;
}

static void tables_build(struct tables *t, const struct acpi_config *cfg)
{
	uint64_t rsdp_gpa = 0;
	ssize_t n = acpi_tables_build(cfg, t->buf, sizeof(t->buf), GPA, &rsdp_gpa);
	assert_true(n > 0);
	t->used = (size_t)n;
	assert_int_equal(rsdp_gpa, GPA);
	t->rsdp = t->buf;
	assert_memory_equal(t->rsdp, "RSD PTR ", 8);
	assert_int_equal(sum8(t->rsdp, 20), 0);
	assert_int_equal(sum8(t->rsdp, 36), 0);
	assert_int_equal(t->rsdp[15], 2);
	assert_int_equal(rd32(t->rsdp + 20), 36);
	t->xsdt = table_at(t, rd64(t->rsdp + 24), "XSDT");
	size_t nent = (rd32(t->xsdt + 4) - 36) / 8;
	assert_int_equal(nent, 2 + cfg->nr_extra_tables);
	t->fadt = table_at(t, rd64(t->xsdt + 36), "FACP");
	t->madt = table_at(t, rd64(t->xsdt + 44), "APIC");
	t->dsdt = table_at(t, rd64(t->fadt + 140), "DSDT");
	for (size_t i = 2; i < nent; i++)
		table_at(t, rd64(t->xsdt + 36 + 8 * i), "TEST");
}

static int extra_device(struct aml *sb, void *opaque)
{
	size_t d = aml_device_begin(sb, "XTRA");
	aml_name_string(sb, "_HID", "GEN20001");
	aml_end(sb, d);
	return *(int *)opaque;
}

static const uint32_t apic_ids[] = { 0, 1, 2, 300 };
static const uint8_t extra_table[40] = { 'T', 'E', 'S', 'T', 40, 0, 0, 0, 1 };
static const struct acpi_table_blob extra_blob = { extra_table, sizeof(extra_table) };
static int extra_rc;

static struct acpi_config full_config(void)
{
	return (struct acpi_config){
		.nr_vcpus = 4, .apic_ids = apic_ids, .com1 = true, .rtc = true, .ioapic = true,
		.vmbus = true, .mmio_low = { 0xF8000000, 0x6D40000 }, .mmio_high = { 0x1000000000, 1ull << 32 },
		.dsdt_sb_extra = extra_device, .opaque = &extra_rc,
		.extra_tables = &extra_blob, .nr_extra_tables = 1,
	};
}

static void test_tables_full(void **state)
{
	static struct tables tbl; /* static: a failed assertion leaves nothing to free */
	struct tables *t = &tbl;
	struct acpi_config cfg = full_config();
	tables_build(t, &cfg);

	/* FADT: hardware-reduced, reset register, sleep registers, no legacy devices but the RTC. */
	const uint8_t *f = t->fadt;
	assert_int_equal(f[8], 6);
	assert_int_equal(rd32(f + 4), 276);
	uint32_t flags = rd32(f + 112);
	assert_true(flags & (1u << 20));  /* HW_REDUCED_ACPI */
	assert_true(flags & (1u << 10));  /* RESET_REG_SUP */
	assert_true(flags & (1u << 4));   /* PWR_BUTTON: not fixed-feature */
	assert_true(flags & (1u << 5));   /* SLP_BUTTON */
	assert_int_equal(f[109] | f[110] << 8, (1 << 2) | (1 << 3)); /* no VGA, no MSI; RTC present */
	expect_bytes(f + 116, BYTES(1, 8, 0, 1, 0x02, 0x04, 0, 0, 0, 0, 0, 0));
	assert_int_equal(f[128], ACPI_RESET_VALUE);
	expect_bytes(f + 244, BYTES(1, 8, 0, 1, 0x00, 0x04, 0, 0, 0, 0, 0, 0));
	expect_bytes(f + 256, BYTES(1, 8, 0, 1, 0x01, 0x04, 0, 0, 0, 0, 0, 0));
	assert_int_equal(rd32(f + 36), 0); /* no FACS */
	assert_int_equal(rd64(f + 132), 0);
	assert_memory_equal(f + 10, "GEN2VM", 6);

	/* MADT: one enabled entry per vCPU (x2APIC for id 300), then the I/O APIC. */
	const uint8_t *m = t->madt;
	assert_int_equal(rd32(m + 36), ACPI_LAPIC_ADDR);
	assert_int_equal(rd32(m + 40), 0);
	unsigned cpus = 0, ioapics = 0;
	for (const uint8_t *e = m + 44; e < m + rd32(m + 4); e += e[1]) {
		assert_true(e[1] >= 2);
		if (e[0] == 0) {
			assert_int_equal(e[3], apic_ids[e[2]]);
			assert_int_equal(rd32(e + 4), 1);
			cpus++;
		} else if (e[0] == 9) {
			assert_int_equal(rd32(e + 4), apic_ids[rd32(e + 12)]);
			assert_int_equal(rd32(e + 4), 300);
			assert_int_equal(rd32(e + 8), 1);
			cpus++;
		} else {
			assert_int_equal(e[0], 1);
			assert_int_equal(rd32(e + 4), ACPI_IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0);
			ioapics++;
		}
	}
	assert_int_equal(cpus, 4);
	assert_int_equal(ioapics, 1);
	assert_int_equal(t->dsdt[8], 2);
}

static void test_tables_minimal(void **state)
{
	static struct tables tbl; /* static: a failed assertion leaves nothing to free */
	struct tables *t = &tbl;
	struct acpi_config cfg = { .nr_vcpus = 1, .oem_id = "ABC" };
	tables_build(t, &cfg);
	assert_int_equal(t->fadt[109] | t->fadt[110] << 8, (1 << 2) | (1 << 3) | (1 << 5));
	assert_int_equal(rd32(t->madt + 4), 44 + 8);
	assert_memory_equal(t->fadt + 10, "ABC   ", 6);
	assert_memory_equal(t->rsdp + 9, "ABC   ", 6);
}

static void test_tables_errors(void **state)
{
	static uint8_t buf[ACPI_TABLES_MAX_SIZE];
	uint64_t r;
	struct acpi_config cfg = full_config();
	assert_int_equal(acpi_tables_build(&cfg, buf, 200, GPA, &r), -ENOSPC);
	assert_int_equal(acpi_tables_build(&cfg, buf, sizeof(buf), GPA + 8, &r), -EINVAL);
	cfg.nr_vcpus = 0;
	assert_int_equal(acpi_tables_build(&cfg, buf, sizeof(buf), GPA, &r), -EINVAL);
	cfg = full_config();
	cfg.mmio_high.base = UINT64_MAX;
	assert_int_equal(acpi_tables_build(&cfg, buf, sizeof(buf), GPA, &r), -EINVAL);
	cfg = full_config();
	extra_rc = -ENODEV;
	assert_int_equal(acpi_tables_build(&cfg, buf, sizeof(buf), GPA, &r), -ENODEV);
	extra_rc = 0;
	/* The largest machine fits the advertised maximum size. */
	cfg = (struct acpi_config){ .nr_vcpus = ACPI_MAX_VCPUS, .com1 = true, .rtc = true, .ioapic = true,
				    .vmbus = true, .mmio_low = { 0xF8000000, 0x1000000 } };
	assert_true(acpi_tables_build(&cfg, buf, sizeof(buf), GPA, &r) > 0);
	cfg.nr_vcpus++;
	assert_int_equal(acpi_tables_build(&cfg, buf, sizeof(buf), GPA, &r), -EINVAL);
}

static void test_pm_decode(void **state)
{
	assert_int_equal(acpi_pm_decode_sleep_control(ACPI_SLP_TYP_S5 << 2 | ACPI_SLEEP_EN), ACPI_PM_POWER_OFF);
	assert_int_equal(acpi_pm_decode_sleep_control(0x34), ACPI_PM_POWER_OFF);
	assert_int_equal(acpi_pm_decode_sleep_control(0x34 | ACPI_WAK_STS), ACPI_PM_POWER_OFF);
	assert_int_equal(acpi_pm_decode_sleep_control(0x14), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_decode_sleep_control(0x00), ACPI_PM_NONE);
	assert_int_equal(acpi_pm_decode_sleep_control(3 << 2 | ACPI_SLEEP_EN), ACPI_PM_UNSUPPORTED);
	assert_int_equal(acpi_pm_decode_sleep_control(ACPI_SLEEP_EN), ACPI_PM_UNSUPPORTED);
	assert_true(acpi_pm_is_reset(ACPI_PORT_RESET, ACPI_RESET_VALUE));
	assert_false(acpi_pm_is_reset(ACPI_PORT_RESET, 0));
	assert_false(acpi_pm_is_reset(ACPI_PORT_SLEEP_CONTROL, ACPI_RESET_VALUE));
}

/* ---- iasl ---- */

/* Runs cmd (stdout and stderr into log) and returns its exit status. */
static int run(const char *cmd)
{
	int st = system(cmd);
	assert_true(st != -1 && WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *dir, const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: missing", path);
	char *s = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		size_t k = fread(s + n, 1, 4096, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	s[n] = 0;
	if (len)
		*len = n;
	return s;
}

/* No line of the file may mention an error. */
static void assert_no_error_lines(const char *dir, const char *name)
{
	char *s = read_file(dir, name, NULL);
	for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, "Error") || strstr(line, "ERROR"))
			if (!strstr(line, " 0 Errors"))
				fail_msg("%s/%s: %s", dir, name, line);
	free(s);
}

static void iasl_require(void)
{
	if (run("iasl -v >/dev/null 2>&1") != 0)
		fail_msg("iasl not found: the ACPI tests need it; install acpica-tools (apt-get install acpica-tools)");
}

static void iasl_check(const struct acpi_config *cfg, const char *tag)
{
	static struct tables tbl; /* static: a failed assertion leaves nothing to free */
	struct tables *t = &tbl;
	tables_build(t, cfg);
	/* The RSDP is not among them: iasl 20200925 rejects a standalone RSDP file ("does not contain a
	 * valid ACPI table", its signature is 8 bytes); tables_build checked it field by field. */
	char dir[] = "/tmp/gen2vm-acpi-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct {
		const char *name;
		const uint8_t *p;
		size_t len;
	} files[] = {
		{ "XSDT", t->xsdt, rd32(t->xsdt + 4) },
		{ "FACP", t->fadt, rd32(t->fadt + 4) },
		{ "APIC", t->madt, rd32(t->madt + 4) },
		{ "DSDT", t->dsdt, rd32(t->dsdt + 4) },
	};
	char cmd[1024], name[64];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(name, sizeof(name), "%s.aml", files[i].name);
		write_file(dir, name, files[i].p, files[i].len);
		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.aml >%s.dis.log 2>&1", dir, files[i].name,
			 files[i].name);
		if (run(cmd) != 0)
			fail_msg("%s: iasl -d %s/%s.aml failed, see %s.dis.log", tag, dir, files[i].name,
				 files[i].name);
		snprintf(name, sizeof(name), "%s.dis.log", files[i].name);
		assert_no_error_lines(dir, name);
		snprintf(name, sizeof(name), "%s.dsl", files[i].name);
		assert_no_error_lines(dir, name);
	}

	/* Recompile the decompiled DSDT. -vw 6033: iasl rejects _HID "VMBus" (not 7 or 8 characters),
	 * but it is the id Linux's hv_vmbus matches, so that one error is expected and ignored. -on: keep
	 * name paths as written (iasl would shorten "\_SB" to "_SB" at the root, equally valid). */
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -on -vw 6033 -p re-DSDT DSDT.dsl >DSDT.asl.log 2>&1", dir);
	if (run(cmd) != 0)
		fail_msg("%s: recompiling %s/DSDT.dsl failed, see DSDT.asl.log", tag, dir);
	char *log = read_file(dir, "DSDT.asl.log", NULL);
	if (!strstr(log, "Compilation successful. 0 Errors"))
		fail_msg("%s: %s/DSDT.asl.log: %s", tag, dir, log);
	free(log);
	assert_no_error_lines(dir, "DSDT.asl.log");

	/* iasl's own encoding of the same ASL must match ours byte for byte past the header (which names
	 * the compiler): a check of the encoder by an independent one. */
	size_t n;
	char *re = read_file(dir, "re-DSDT.aml", &n);
	assert_int_equal(n, rd32(t->dsdt + 4));
	assert_memory_equal(re + 36, t->dsdt + 36, n - 36);
	free(re);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(run(cmd), 0);
}

static void test_iasl_full(void **state)
{
	iasl_require();
	struct acpi_config cfg = full_config();
	cfg.nr_extra_tables = 0;
	iasl_check(&cfg, "full config");
}

static void test_iasl_minimal(void **state)
{
	iasl_require();
	struct acpi_config cfg = { .nr_vcpus = 1 };
	iasl_check(&cfg, "minimal config");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkglen_boundaries),
		cmocka_unit_test(test_nested_pkglen),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_objects),
		cmocka_unit_test(test_resource_templates),
		cmocka_unit_test(test_tables_full),
		cmocka_unit_test(test_tables_minimal),
		cmocka_unit_test(test_tables_errors),
		cmocka_unit_test(test_pm_decode),
		cmocka_unit_test(test_iasl_full),
		cmocka_unit_test(test_iasl_minimal),
	};
	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
