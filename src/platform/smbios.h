/* The SMBIOS 3.0 tables a generation 2 VM's firmware offers (include/gen2vm/proto/smbios.h): BIOS
 * (type 0), system with the per-VM UUID (1), chassis (3), one processor socket with a core per vCPU
 * (4), a memory array (16) with its devices (17) summing to the VM's RAM and one mapped range per
 * RAM region (19), boot information (32) and the end marker (127). Pure: builds bytes in a buffer. */
#ifndef GEN2VM_PLATFORM_SMBIOS_H
#define GEN2VM_PLATFORM_SMBIOS_H

#include <stddef.h>
#include <stdint.h>

#define SMBIOS_RAM_MAX 4

struct smbios_config {
	const char *bios_version;  /* e.g. "0.1" */
	const char *bios_date;     /* mm/dd/yyyy */
	uint8_t bios_major, bios_minor;
	uint8_t uuid[16];          /* in SMBIOS byte order (the first three fields little-endian) */
	unsigned nr_vcpus;         /* 1..65535 */
	struct { uint64_t start, size; } ram[SMBIOS_RAM_MAX]; /* guest RAM regions (bytes) */
	unsigned nr_ram;
};

/* Writes the entry point at buf (to live at guest address gpa) and the structure table after it.
 * Returns the bytes used, or -E2BIG when cap is too small, -EINVAL for a config out of range. */
int smbios_build(const struct smbios_config *cfg, uint64_t gpa, uint8_t *buf, size_t cap);

/* Parses a UUID in its text form (8-4-4-4-12 hex digits) into SMBIOS byte order. 0 or -EINVAL. */
int smbios_uuid_parse(const char *s, uint8_t out[16]);

/* The system serial number the tables carry for a UUID (exposed for tests): 32 hex digits in the
 * UUID's text order, upper case, NUL-terminated. */
void smbios_serial(const uint8_t uuid[16], char out[33]);

#endif
