/* MS-VHDX v1 on-disk structures (all little-endian). Facts from the MS-VHDX specification. */
#ifndef GEN2VM_DISK_VHDX_FORMAT_H
#define GEN2VM_DISK_VHDX_FORMAT_H

#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "VHDX structures are read in place: little-endian hosts only"
#endif

#define VHDX_MiB (1024ull * 1024)
#define VHDX_HEADER1_OFF (64 * 1024)
#define VHDX_HEADER2_OFF (128 * 1024)
#define VHDX_REGION1_OFF (192 * 1024)
#define VHDX_REGION2_OFF (256 * 1024)
#define VHDX_REGION_SIZE (64 * 1024)
#define VHDX_META_TABLE_SIZE (64 * 1024)
#define VHDX_MAX_ENTRIES 2047
#define VHDX_MAX_SIZE (64ull << 40)
#define VHDX_MIN_BLOCK VHDX_MiB
#define VHDX_MAX_BLOCK (256 * VHDX_MiB)
#define VHDX_SECTOR_BITMAP_SIZE VHDX_MiB
/* Not the format's but this reader's limits on an untrusted log: no offset or length beyond 2^50 (the
 * format's own files are far smaller), and replaying may grow the file by at most 4 GiB (what a crash
 * can lose of a file's growth is a few blocks; a log that says more is not trusted). */
#define VHDX_LOG_MAX_OFFSET (1ull << 50)
#define VHDX_LOG_MAX_GROWTH (4ull << 30)

struct vhdx_header {
	char signature[4]; /* "head" */
	uint32_t checksum; /* CRC-32C of the 4 KiB with this field zero */
	uint64_t seq;
	uint8_t file_write_guid[16];
	uint8_t data_write_guid[16];
	uint8_t log_guid[16];
	uint16_t log_version; /* 0 */
	uint16_t version;     /* 1 */
	uint32_t log_length;
	uint64_t log_offset;
	uint8_t reserved[4016];
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_header) == 4096, "vhdx header");

struct vhdx_region_hdr {
	char signature[4]; /* "regi" */
	uint32_t checksum; /* CRC-32C of the 64 KiB table */
	uint32_t entry_count;
	uint32_t reserved;
} __attribute__((packed));

struct vhdx_region_entry {
	uint8_t guid[16];
	uint64_t file_offset;
	uint32_t length;
	uint32_t required; /* bit 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_region_entry) == 32, "region entry");

struct vhdx_meta_hdr {
	char signature[8]; /* "metadata" */
	uint16_t reserved;
	uint16_t entry_count;
	uint32_t reserved2[5];
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_hdr) == 32, "metadata header");

#define VHDX_META_IS_USER 1u
#define VHDX_META_IS_VIRTUAL_DISK 2u
#define VHDX_META_IS_REQUIRED 4u
struct vhdx_meta_entry {
	uint8_t item_id[16];
	uint32_t offset; /* from the start of the metadata region, >= 64 KiB */
	uint32_t length;
	uint32_t flags;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_entry) == 32, "metadata entry");

struct vhdx_file_params {
	uint32_t block_size;
	uint32_t flags; /* bit 0 LeaveBlocksAllocated, bit 1 HasParent */
} __attribute__((packed));

struct vhdx_locator_hdr {
	uint8_t locator_type[16];
	uint16_t reserved;
	uint16_t key_value_count;
} __attribute__((packed));

struct vhdx_locator_entry {
	uint32_t key_offset;
	uint32_t value_offset;
	uint16_t key_length;
	uint16_t value_length;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_locator_entry) == 12, "locator entry");

struct vhdx_log_hdr {
	char signature[4]; /* "loge" */
	uint32_t checksum; /* CRC-32C of the whole entry */
	uint32_t entry_length;
	uint32_t tail;
	uint64_t seq;
	uint32_t descriptor_count;
	uint32_t reserved;
	uint8_t log_guid[16];
	uint64_t flushed_file_offset;
	uint64_t last_file_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_hdr) == 64, "log header");

struct vhdx_log_desc {
	char signature[4]; /* "desc" or "zero" */
	uint32_t trailing_bytes; /* desc: the sector's last 4 bytes; zero: reserved */
	uint64_t leading_bytes;  /* desc: the sector's first 8 bytes; zero: zero length */
	uint64_t file_offset;
	uint64_t seq;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_desc) == 32, "log descriptor");

struct vhdx_log_data {
	char signature[4]; /* "data" */
	uint32_t seq_high;
	uint8_t data[4084];
	uint32_t seq_low;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_data) == 4096, "log data sector");

/* Region, metadata item and locator type GUIDs in their on-disk (little-endian) byte order. */
static const uint8_t VHDX_GUID_BAT[16] = { 0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42,
					   0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08 };
static const uint8_t VHDX_GUID_METADATA[16] = { 0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B,
						0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E };
static const uint8_t VHDX_GUID_FILE_PARAMS[16] = { 0x37, 0x67, 0xA1, 0xCA, 0x36, 0xFA, 0x43, 0x4D,
						   0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B };
static const uint8_t VHDX_GUID_VDISK_SIZE[16] = { 0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48,
						  0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8 };
static const uint8_t VHDX_GUID_PAGE83[16] = { 0xAB, 0x12, 0xCA, 0xBE, 0xE6, 0xB2, 0x23, 0x45,
					      0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46 };
static const uint8_t VHDX_GUID_LOGICAL_SECTOR[16] = { 0x1D, 0xBF, 0x41, 0x81, 0x6F, 0xA9, 0x09, 0x47,
						      0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F };
static const uint8_t VHDX_GUID_PHYSICAL_SECTOR[16] = { 0xC7, 0x48, 0xA3, 0xCD, 0x5D, 0x44, 0x71, 0x44,
						       0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56 };
static const uint8_t VHDX_GUID_PARENT_LOCATOR[16] = { 0x2D, 0x5F, 0xD3, 0xA8, 0x0B, 0xB3, 0x4D, 0x45,
						      0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C };
static const uint8_t VHDX_GUID_LOCATOR_VHDX[16] = { 0xB7, 0xEF, 0x4A, 0xB0, 0x9E, 0xD1, 0x81, 0x4A,
						    0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13 };
static const uint8_t VHDX_GUID_ZERO[16];

/* BAT entry: bits 0-2 state, 20-63 file offset in MiB. */
enum {
	VHDX_PAYLOAD_NOT_PRESENT = 0,
	VHDX_PAYLOAD_UNDEFINED = 1,
	VHDX_PAYLOAD_ZERO = 2,
	VHDX_PAYLOAD_UNMAPPED = 3,
	VHDX_PAYLOAD_FULLY_PRESENT = 6,
	VHDX_PAYLOAD_PARTIALLY_PRESENT = 7,
	VHDX_SB_NOT_PRESENT = 0,
	VHDX_SB_PRESENT = 6,
};

#endif
