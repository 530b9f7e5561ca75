/* SMBIOS 3.x (DMTF DSP0134 3.6): the 64-bit entry point and the structure header. Each structure
 * is its formatted area (header included, hdr.length bytes) followed by its strings, each
 * NUL-terminated, the set ended by one more NUL (two NULs when there are none). Strings are
 * numbered from 1 in the formatted area; 0 means "no string". */
#ifndef GEN2VM_PROTO_SMBIOS_H
#define GEN2VM_PROTO_SMBIOS_H

#include <stdint.h>

#define SMBIOS3_ANCHOR_STR "_SM3_"

struct smbios3_entry {
	char anchor[5];          /* "_SM3_" */
	uint8_t checksum;        /* the entry point's bytes sum to 0 */
	uint8_t length;          /* 0x18 */
	uint8_t major, minor, docrev;
	uint8_t ep_revision;     /* 1 */
	uint8_t reserved;
	uint32_t table_max_size; /* bytes of the structure table */
	uint64_t table_address;
} __attribute__((packed));
_Static_assert(sizeof(struct smbios3_entry) == 24, "smbios3_entry");

struct smbios_header {
	uint8_t type;
	uint8_t length;
	uint16_t handle;
} __attribute__((packed));
_Static_assert(sizeof(struct smbios_header) == 4, "smbios_header");

enum smbios_type {
	SMBIOS_TYPE_BIOS = 0,
	SMBIOS_TYPE_SYSTEM = 1,
	SMBIOS_TYPE_CHASSIS = 3,
	SMBIOS_TYPE_PROCESSOR = 4,
	SMBIOS_TYPE_MEMORY_ARRAY = 16,
	SMBIOS_TYPE_MEMORY_DEVICE = 17,
	SMBIOS_TYPE_MEMORY_ARRAY_MAPPED = 19,
	SMBIOS_TYPE_BOOT_INFO = 32,
	SMBIOS_TYPE_END = 127,
};

/* Formatted-area lengths of the structure versions we write (SMBIOS 3.0+). */
#define SMBIOS_LEN_BIOS 0x1a
#define SMBIOS_LEN_SYSTEM 0x1b
#define SMBIOS_LEN_CHASSIS 0x16 /* no contained elements, then the SKU string */
#define SMBIOS_LEN_PROCESSOR 0x30
#define SMBIOS_LEN_MEMORY_ARRAY 0x17
#define SMBIOS_LEN_MEMORY_DEVICE 0x28
#define SMBIOS_LEN_MEMORY_ARRAY_MAPPED 0x1f
#define SMBIOS_LEN_BOOT_INFO 0x0b
#define SMBIOS_LEN_END 0x04

#endif
