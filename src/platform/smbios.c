#include "platform/smbios.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gen2vm/proto/guid.h"
#include "gen2vm/proto/smbios.h"

#define SMBIOS_MAJOR 3
#define SMBIOS_MINOR 0
#define SMBIOS_TABLE_OFFSET 0x20 /* the structure table follows the entry point, 16-byte aligned */

struct sb {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
	uint16_t next_handle;
};

/* Starts a structure: returns its formatted area (zeroed), or NULL when it does not fit. */
static uint8_t *sb_struct(struct sb *b, uint8_t type, uint8_t length)
{
	if (b->overflow || b->cap - b->len < (size_t)length + 2) {
		b->overflow = true;
		return NULL;
	}
	uint8_t *p = b->buf + b->len;
	memset(p, 0, length);
	struct smbios_header h = { type, length, b->next_handle++ };
	memcpy(p, &h, sizeof(h));
	b->len += length;
	return p;
}

/* Appends the strings of the structure just started (NULL or "" entries are skipped by the caller
 * giving string number 0) and its terminator. */
static void sb_strings(struct sb *b, const char *const *s, unsigned n)
{
	bool any = false;
	for (unsigned i = 0; i < n; i++) {
		size_t l = strlen(s[i]) + 1;
		if (b->overflow || b->cap - b->len < l + 1) {
			b->overflow = true;
			return;
		}
		memcpy(b->buf + b->len, s[i], l);
		b->len += l;
		any = true;
	}
	if (b->overflow || b->cap - b->len < (any ? 1u : 2u)) {
		b->overflow = true;
		return;
	}
	b->buf[b->len++] = 0;
	if (!any)
		b->buf[b->len++] = 0;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}
static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

int smbios_uuid_parse(const char *s, uint8_t out[16])
{
	return gen2vm_guid_parse(s, out) ? -EINVAL : 0;
}

void smbios_serial(const uint8_t u[16], char out[33])
{
	/* The text order of an SMBIOS UUID: the first three fields are stored little-endian. */
	static const uint8_t order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02X", u[order[i]]);
}

int smbios_build(const struct smbios_config *c, uint64_t gpa, uint8_t *buf, size_t cap)
{
	if (c->nr_vcpus < 1 || c->nr_vcpus > 65535 || c->nr_ram > SMBIOS_RAM_MAX || !c->bios_version ||
	    !c->bios_date)
		return -EINVAL;
	if (cap < SMBIOS_TABLE_OFFSET)
		return -E2BIG;
	memset(buf, 0, SMBIOS_TABLE_OFFSET);
	struct sb b = { buf, cap, SMBIOS_TABLE_OFFSET, false, 0 };
	uint8_t *p;
	uint64_t ram_total = 0;
	for (unsigned i = 0; i < c->nr_ram; i++)
		ram_total += c->ram[i].size;

	/* Type 0: BIOS */
	if ((p = sb_struct(&b, SMBIOS_TYPE_BIOS, SMBIOS_LEN_BIOS))) {
		p[4] = 1;             /* vendor */
		p[5] = 2;             /* version */
		put16(p + 6, 0);      /* no real-mode segment: UEFI */
		p[8] = 3;             /* release date */
		p[9] = 0;             /* ROM size: 64 KiB units, minus one */
		put64(p + 0x0a, 1ull << 3); /* characteristics not supported (as virtual firmware reports) */
		p[0x12] = 1u << 0;    /* ext. byte 1: ACPI */
		p[0x13] = (1u << 3) | (1u << 4); /* ext. byte 2: UEFI supported, a virtual machine */
		p[0x14] = c->bios_major;
		p[0x15] = c->bios_minor;
		p[0x16] = 0xff;       /* no embedded controller */
		p[0x17] = 0xff;
		const char *s[] = { "gen2vm", c->bios_version, c->bios_date };
		sb_strings(&b, s, 3);
	}
	/* Type 1: system */
	char serial[33];
	smbios_serial(c->uuid, serial);
	if ((p = sb_struct(&b, SMBIOS_TYPE_SYSTEM, SMBIOS_LEN_SYSTEM))) {
		p[4] = 1; /* manufacturer */
		p[5] = 2; /* product */
		p[6] = 3; /* version */
		p[7] = 4; /* serial */
		memcpy(p + 8, c->uuid, 16);
		p[0x18] = 6; /* wake-up: power switch */
		p[0x19] = 5; /* SKU */
		p[0x1a] = 6; /* family */
		const char *s[] = { "gen2vm", "Virtual Machine", "Generation 2", serial, "None", "Virtual Machine" };
		sb_strings(&b, s, 6);
	}
	/* Type 3: chassis */
	if ((p = sb_struct(&b, SMBIOS_TYPE_CHASSIS, SMBIOS_LEN_CHASSIS))) {
		p[4] = 1;    /* manufacturer */
		p[5] = 0x03; /* desktop */
		p[6] = 2;    /* version */
		p[7] = 3;    /* serial */
		p[8] = 4;    /* asset tag */
		p[9] = 0x03; /* boot-up state: safe */
		p[0x0a] = 0x03; /* power supply: safe */
		p[0x0b] = 0x03; /* thermal: safe */
		p[0x0c] = 0x03; /* security: none */
		p[0x15] = 5; /* SKU */
		const char *s[] = { "gen2vm", "Generation 2", serial, "None", "Virtual Machine" };
		sb_strings(&b, s, 5);
	}
	/* Type 4: one socket, a core (and a thread) per vCPU, as Hyper-V presents a VM's processors */
	if ((p = sb_struct(&b, SMBIOS_TYPE_PROCESSOR, SMBIOS_LEN_PROCESSOR))) {
		unsigned n = c->nr_vcpus;
		p[4] = 1;      /* socket designation */
		p[5] = 0x03;   /* central processor */
		p[6] = 0x01;   /* family: other */
		p[7] = 2;      /* manufacturer */
		p[0x10] = 3;   /* version */
		p[0x11] = 0;   /* voltage unknown */
		put16(p + 0x12, 0);       /* external clock unknown */
		put16(p + 0x14, 0);       /* max speed unknown */
		put16(p + 0x16, 0);       /* current speed unknown */
		p[0x18] = 0x41;           /* socket populated, CPU enabled */
		p[0x19] = 0x01;           /* upgrade: other */
		put16(p + 0x1a, 0xffff);  /* no cache information */
		put16(p + 0x1c, 0xffff);
		put16(p + 0x1e, 0xffff);
		p[0x23] = (uint8_t)(n > 255 ? 0xff : n);
		p[0x24] = (uint8_t)(n > 255 ? 0xff : n);
		p[0x25] = (uint8_t)(n > 255 ? 0xff : n);
		put16(p + 0x26, (1u << 2) | (n > 1 ? 1u << 3 : 0)); /* 64-bit capable, multi-core */
		put16(p + 0x28, 0x01);    /* family 2 */
		put16(p + 0x2a, (uint16_t)n);
		put16(p + 0x2c, (uint16_t)n);
		put16(p + 0x2e, (uint16_t)n);
		const char *s[] = { "CPU 0", "gen2vm", "Virtual Processor" };
		sb_strings(&b, s, 3);
	}
	/* Type 16: the memory array */
	uint16_t array = b.next_handle;
	if ((p = sb_struct(&b, SMBIOS_TYPE_MEMORY_ARRAY, SMBIOS_LEN_MEMORY_ARRAY))) {
		p[4] = 0x03; /* system board */
		p[5] = 0x03; /* system memory */
		p[6] = 0x03; /* no error correction */
		uint64_t kib = ram_total >> 10;
		if (kib < 0x80000000ull) {
			put32(p + 7, (uint32_t)kib);
		} else {
			put32(p + 7, 0x80000000u);
			put64(p + 0x0f, ram_total);
		}
		put16(p + 0x0b, 0xfffe); /* no error information */
		put16(p + 0x0d, 1);      /* one device */
		sb_strings(&b, NULL, 0);
	}
	/* Type 17: one device holding all of it */
	if ((p = sb_struct(&b, SMBIOS_TYPE_MEMORY_DEVICE, SMBIOS_LEN_MEMORY_DEVICE))) {
		uint64_t mib = ram_total >> 20;
		put16(p + 4, array);
		put16(p + 6, 0xfffe);
		put16(p + 8, 0xffff);  /* widths unknown */
		put16(p + 0x0a, 0xffff);
		if (mib < 0x7fff) {
			put16(p + 0x0c, (uint16_t)mib);
		} else {
			put16(p + 0x0c, 0x7fff);
			put32(p + 0x1c, (uint32_t)(mib > 0x7fffffff ? 0x7fffffff : mib));
		}
		p[0x0e] = 0x09;  /* DIMM */
		p[0x10] = 1;     /* device locator */
		p[0x11] = 2;     /* bank locator */
		p[0x12] = 0x07;  /* RAM */
		put16(p + 0x13, 1u << 1); /* type detail: other */
		p[0x17] = 3;     /* manufacturer */
		const char *s[] = { "M0001", "BANK 0", "gen2vm" };
		sb_strings(&b, s, 3);
	}
	/* Type 19: where the array's memory is mapped, one structure per RAM region */
	for (unsigned i = 0; i < c->nr_ram; i++) {
		if (!c->ram[i].size || !(p = sb_struct(&b, SMBIOS_TYPE_MEMORY_ARRAY_MAPPED, SMBIOS_LEN_MEMORY_ARRAY_MAPPED)))
			continue;
		uint64_t start = c->ram[i].start, end = c->ram[i].start + c->ram[i].size - 1;
		if (end >> 10 < 0xffffffffull) {
			put32(p + 4, (uint32_t)(start >> 10));
			put32(p + 8, (uint32_t)(end >> 10));
		} else {
			put32(p + 4, 0xffffffffu);
			put32(p + 8, 0xffffffffu);
			put64(p + 0x0f, start);
			put64(p + 0x17, end);
		}
		put16(p + 0x0c, array);
		p[0x0e] = 1; /* partition width: one device */
		sb_strings(&b, NULL, 0);
	}
	/* Type 32: boot information */
	if ((p = sb_struct(&b, SMBIOS_TYPE_BOOT_INFO, SMBIOS_LEN_BOOT_INFO))) {
		p[0x0a] = 0; /* no errors detected */
		sb_strings(&b, NULL, 0);
	}
	/* Type 127: end of table */
	if ((p = sb_struct(&b, SMBIOS_TYPE_END, SMBIOS_LEN_END)))
		sb_strings(&b, NULL, 0);
	if (b.overflow)
		return -E2BIG;

	struct smbios3_entry ep = {
		.anchor = { '_', 'S', 'M', '3', '_' },
		.length = sizeof(ep),
		.major = SMBIOS_MAJOR,
		.minor = SMBIOS_MINOR,
		.docrev = 0,
		.ep_revision = 1,
		.table_max_size = (uint32_t)(b.len - SMBIOS_TABLE_OFFSET),
		.table_address = gpa + SMBIOS_TABLE_OFFSET,
	};
	uint8_t sum = 0;
	for (size_t i = 0; i < sizeof(ep); i++)
		sum = (uint8_t)(sum + ((uint8_t *)&ep)[i]);
	ep.checksum = (uint8_t)-sum;
	memcpy(buf, &ep, sizeof(ep));
	return (int)b.len;
}
