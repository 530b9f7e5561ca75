/* SMBIOS 3.0 tables (src/platform/smbios.c) against hand-computed bytes, and a walk of the whole
 * table as an OS reads it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen2vm/proto/smbios.h"
#include "platform/smbios.h"

#define GPA 0xd0000ull

static const uint8_t uuid[16] = { 0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56,
				   0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78 };

static struct smbios_config config(unsigned cpus, uint64_t low, uint64_t high)
{
	struct smbios_config c = { .bios_version = "0.1", .bios_date = "11/22/2026", .bios_major = 0,
				   .bios_minor = 1, .nr_vcpus = cpus };
	memcpy(c.uuid, uuid, 16);
	c.ram[c.nr_ram].start = 0;
	c.ram[c.nr_ram++].size = low;
	if (high) {
		c.ram[c.nr_ram].start = 4ull << 30;
		c.ram[c.nr_ram++].size = high;
	}
	return c;
}

struct found {
	const uint8_t *s[128];
	unsigned count[128];
};

/* Walks the table: every structure's strings end within the table, handles are unique, type 127
 * comes last. */
static void walk(const uint8_t *buf, int total, struct found *f)
{
	memset(f, 0, sizeof(*f));
	struct smbios3_entry ep;
	memcpy(&ep, buf, sizeof(ep));
	assert_memory_equal(ep.anchor, "_SM3_", 5);
	assert_int_equal(ep.length, 0x18);
	assert_int_equal(ep.major, 3);
	assert_int_equal(ep.ep_revision, 1);
	uint8_t sum = 0;
	for (unsigned i = 0; i < ep.length; i++)
		sum = (uint8_t)(sum + buf[i]);
	assert_int_equal(sum, 0);
	assert_true(ep.table_address >= GPA + sizeof(ep));
	size_t off = (size_t)(ep.table_address - GPA);
	assert_int_equal(off + ep.table_max_size, (size_t)total);
	uint16_t handles[64];
	unsigned nh = 0;
	bool ended = false;
	while (off < (size_t)total) {
		assert_false(ended);
		const uint8_t *p = buf + off;
		uint8_t type = p[0], len = p[1];
		uint16_t h = (uint16_t)(p[2] | p[3] << 8);
		for (unsigned i = 0; i < nh; i++)
			assert_int_not_equal(handles[i], h);
		handles[nh++] = h;
		assert_true(len >= 4);
		if (type < 128 && !f->s[type])
			f->s[type] = p;
		if (type < 128)
			f->count[type]++;
		size_t q = off + len;
		/* the string set ends with a double NUL */
		while (q + 1 < (size_t)total && !(buf[q] == 0 && buf[q + 1] == 0))
			q++;
		assert_true(q + 1 < (size_t)total);
		off = q + 2;
		if (type == 127)
			ended = true;
	}
	assert_true(ended);
	assert_int_equal(off, (size_t)total);
}

/* String n of the structure at p. */
static const char *str(const uint8_t *p, unsigned n)
{
	const char *s = (const char *)p + p[1];
	if (!n)
		return "";
	while (--n)
		s += strlen(s) + 1;
	return s;
}

static void test_bios_and_system(void **state)
{
	static uint8_t buf[65536];
	struct smbios_config c = config(4, 256ull << 20, 0);
	int n = smbios_build(&c, GPA, buf, sizeof(buf));
	assert_true(n > 0);
	struct found f;
	walk(buf, n, &f);

	/* type 0, byte by byte */
	const uint8_t t0[0x1a] = {
		0, 0x1a, 0, 0,       /* type, length, handle 0 */
		1, 2, 0, 0, 3, 0,    /* vendor, version, segment, date, ROM size */
		8, 0, 0, 0, 0, 0, 0, 0, /* characteristics: not supported */
		0x01, 0x18,          /* ACPI; UEFI and virtual machine */
		0, 1, 0xff, 0xff,    /* BIOS 0.1, no EC */
		0, 0,
	};
	assert_memory_equal(f.s[0], t0, sizeof(t0));
	assert_memory_equal(f.s[0] + 0x1a, "gen2vm\0" "0.1\0" "11/22/2026\0\0", 7 + 4 + 11 + 1);

	/* type 1 */
	const uint8_t *t1 = f.s[1];
	assert_int_equal(t1[1], 0x1b);
	assert_memory_equal(t1 + 8, uuid, 16);
	assert_int_equal(t1[0x18], 6);
	assert_string_equal(str(t1, t1[4]), "gen2vm");
	assert_string_equal(str(t1, t1[5]), "Virtual Machine");
	assert_string_equal(str(t1, t1[7]), "12345678123456789ABCDEF012345678");
	assert_string_equal(str(t1, t1[0x19]), "None");
	assert_string_equal(str(t1, t1[0x1a]), "Virtual Machine");

	/* type 3 and 32 present once; 4: one socket, 4 cores */
	assert_int_equal(f.count[3], 1);
	assert_int_equal(f.s[3][5], 0x03);
	assert_int_equal(f.count[32], 1);
	assert_int_equal(f.s[32][1], 0x0b);
	assert_int_equal(f.count[4], 1);
	const uint8_t *t4 = f.s[4];
	assert_int_equal(t4[1], 0x30);
	assert_int_equal(t4[0x23], 4);
	assert_int_equal(t4[0x24], 4);
	assert_int_equal(t4[0x25], 4);
	assert_int_equal(t4[0x2a], 4);
	assert_int_equal(t4[0x18], 0x41);
	assert_string_equal(str(t4, t4[4]), "CPU 0");

	/* memory: 256 MiB in one device, one mapped range of 0..256M-1 (KiB units) */
	const uint8_t *t16 = f.s[16], *t17 = f.s[17], *t19 = f.s[19];
	uint32_t v;
	memcpy(&v, t16 + 7, 4);
	assert_int_equal(v, 256 * 1024);
	assert_int_equal(t16[0x0d], 1);
	uint16_t h16 = (uint16_t)(t16[2] | t16[3] << 8);
	assert_int_equal(t17[4] | t17[5] << 8, h16);
	assert_int_equal(t17[0x0c] | t17[0x0d] << 8, 256);
	assert_int_equal(f.count[19], 1);
	memcpy(&v, t19 + 4, 4);
	assert_int_equal(v, 0);
	memcpy(&v, t19 + 8, 4);
	assert_int_equal(v, 256 * 1024 - 1);
	assert_int_equal(t19[0x0c] | t19[0x0d] << 8, h16);
}

static void test_large(void **state)
{
	static uint8_t buf[65536];
	/* 300 vCPUs, 3 GiB low + 61 GiB high: counts past a byte and sizes past the short fields */
	struct smbios_config c = config(300, 3ull << 30, 61ull << 30);
	int n = smbios_build(&c, GPA, buf, sizeof(buf));
	assert_true(n > 0);
	struct found f;
	walk(buf, n, &f);
	const uint8_t *t4 = f.s[4];
	assert_int_equal(t4[0x23], 0xff);
	assert_int_equal(t4[0x2a] | t4[0x2b] << 8, 300);
	assert_int_equal(t4[0x2e] | t4[0x2f] << 8, 300);
	const uint8_t *t17 = f.s[17];
	assert_int_equal(t17[0x0c] | t17[0x0d] << 8, 0x7fff);
	uint32_t ext;
	memcpy(&ext, t17 + 0x1c, 4);
	assert_int_equal(ext, 64 * 1024);
	assert_int_equal(f.count[19], 2);
	/* the second range (found after the first) starts at 4 GiB */
	const uint8_t *p = f.s[19];
	p += p[1];
	while (p[0] || p[1])
		p++;
	p += 2;
	assert_int_equal(p[0], 19);
	uint32_t s, e;
	memcpy(&s, p + 4, 4);
	memcpy(&e, p + 8, 4);
	assert_int_equal(s, 4u << 20);
	assert_int_equal(e, (65u << 20) - 1);
}

static void test_errors(void **state)
{
	static uint8_t buf[65536];
	struct smbios_config c = config(1, 256ull << 20, 0);
	int n = smbios_build(&c, GPA, buf, sizeof(buf));
	assert_true(n > 0);
	for (int cap = 0; cap < n; cap += 7)
		assert_int_equal(smbios_build(&c, GPA, buf, (size_t)cap), -E2BIG);
	assert_int_equal(smbios_build(&c, GPA, buf, (size_t)n), n);
	c.nr_vcpus = 0;
	assert_int_equal(smbios_build(&c, GPA, buf, sizeof(buf)), -EINVAL);
}

static void test_uuid_text(void **state)
{
	uint8_t u[16];
	assert_int_equal(smbios_uuid_parse("12345678-1234-5678-9abc-DEF012345678", u), 0);
	assert_memory_equal(u, uuid, 16);
	char s[33];
	smbios_serial(u, s);
	assert_string_equal(s, "12345678123456789ABCDEF012345678");
	assert_int_equal(smbios_uuid_parse("12345678-1234-5678-9abc-DEF01234567", u), -EINVAL);
	assert_int_equal(smbios_uuid_parse("12345678-1234-5678-9abc-DEF0123456789", u), -EINVAL);
	assert_int_equal(smbios_uuid_parse("12345678+1234-5678-9abc-DEF012345678", u), -EINVAL);
	assert_int_equal(smbios_uuid_parse("1234567g-1234-5678-9abc-DEF012345678", u), -EINVAL);
	assert_int_equal(smbios_uuid_parse("", u), -EINVAL);
}

/* dmidecode, when this machine has it, reads the table as Linux would (DMIDECODE=path). */
static void test_dmidecode(void **state)
{
	const char *dmi = getenv("DMIDECODE");
	if (!dmi)
		dmi = "/usr/sbin/dmidecode";
	FILE *t = fopen(dmi, "r");
	if (!t) {
		skip();
		return;
	}
	fclose(t);
	static uint8_t buf[65536];
	struct smbios_config c = config(2, 512ull << 20, 0);
	int n = smbios_build(&c, 0x20, buf + 0x20, sizeof(buf) - 0x20);
	assert_true(n > 0);
	/* --from-dump reads the entry point at offset 0 and the table at its address as a file offset */
	memmove(buf, buf + 0x20, (size_t)n);
	struct smbios3_entry ep;
	memcpy(&ep, buf, sizeof(ep));
	uint8_t *file = calloc(1, (size_t)ep.table_address + ep.table_max_size);
	memcpy(file, buf, sizeof(ep));
	memcpy(file + ep.table_address, buf + (ep.table_address - 0x20), ep.table_max_size);
	char path[] = "/tmp/gen2vm-smbios-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "wb");
	fwrite(file, 1, (size_t)ep.table_address + ep.table_max_size, fp);
	fclose(fp);
	free(file);
	char cmd[512], out[16384];
	snprintf(cmd, sizeof(cmd), "%s --from-dump %s 2>&1", dmi, path);
	FILE *p = popen(cmd, "r");
	size_t got = fread(out, 1, sizeof(out) - 1, p);
	out[got] = 0;
	pclose(p);
	unlink(path);
	assert_non_null(strstr(out, "SMBIOS 3.0.0 present"));
	assert_non_null(strstr(out, "Vendor: gen2vm"));
	assert_non_null(strstr(out, "UEFI is supported"));
	assert_non_null(strstr(out, "System is a virtual machine"));
	assert_non_null(strstr(out, "Product Name: Virtual Machine"));
	assert_non_null(strstr(out, "UUID: 12345678-1234-5678-9abc-def012345678"));
	assert_non_null(strstr(out, "Core Count: 2"));
	assert_non_null(strstr(out, "Size: 512 MB"));
	assert_non_null(strstr(out, "Range Size: 512 MB"));
	assert_null(strstr(out, "Invalid"));
	assert_null(strstr(out, "<BAD INDEX>"));
	assert_null(strstr(out, "Wrong"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bios_and_system),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_uuid_text),
		cmocka_unit_test(test_dmidecode),
	};
	return cmocka_run_group_tests_name("smbios", tests, NULL, NULL);
}
