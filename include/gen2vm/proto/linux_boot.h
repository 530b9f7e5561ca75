/* Linux x86 boot protocol structures (Documentation/arch/x86/boot.rst, zero-page.rst). */
#ifndef GEN2VM_PROTO_LINUX_BOOT_H
#define GEN2VM_PROTO_LINUX_BOOT_H

#include <stdint.h>

#define LINUX_HDRS_MAGIC 0x53726448u /* "HdrS" */
#define LINUX_BOOT_FLAG 0xAA55
#define LINUX_LOADFLAG_LOADED_HIGH 0x01
#define LINUX_LOADFLAG_KEEP_SEGMENTS 0x40
#define LINUX_LOADFLAG_CAN_USE_HEAP 0x80
#define LINUX_XLF_KERNEL_64 0x01

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3
#define E820_MAX_ENTRIES_ZEROPAGE 128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct e820_entry) == 20, "e820 entry");

/* The setup header, at offset 0x1f1 of both the bzImage and the zero page. */
struct linux_setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;
	uint16_t jump;
	uint32_t header;
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader;
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct linux_setup_header) == 0x26c - 0x1f1, "setup header");

/* The zero page ("boot_params"), 4096 bytes. Only the fields a loader fills are named. */
struct linux_boot_params {
	uint8_t screen_info[0x40];
	uint8_t apm_bios_info[0x14];
	uint8_t _pad2[4];
	uint64_t tboot_addr;
	uint8_t ist_info[0x10];
	uint64_t acpi_rsdp_addr; /* 0x070 */
	uint8_t _pad3[8];
	uint8_t hd0_info[16];
	uint8_t hd1_info[16];
	uint8_t sys_desc_table[0x10];
	uint8_t olpc_ofw_header[0x10];
	uint32_t ext_ramdisk_image; /* 0x0c0 */
	uint32_t ext_ramdisk_size;
	uint32_t ext_cmd_line_ptr;
	uint8_t _pad4[112];
	uint32_t cc_blob_address;
	uint8_t edid_info[0x80];
	uint8_t efi_info[0x20];
	uint32_t alt_mem_k;
	uint32_t scratch;
	uint8_t e820_entries; /* 0x1e8 */
	uint8_t eddbuf_entries;
	uint8_t edd_mbr_sig_buf_entries;
	uint8_t kbd_status;
	uint8_t secure_boot;
	uint8_t _pad5[2];
	uint8_t sentinel;
	uint8_t _pad6[1];
	struct linux_setup_header hdr; /* 0x1f1 */
	uint8_t _pad7[0x290 - 0x1f1 - sizeof(struct linux_setup_header)];
	uint32_t edd_mbr_sig_buffer[16];
	struct e820_entry e820_table[E820_MAX_ENTRIES_ZEROPAGE]; /* 0x2d0 */
	uint8_t _pad8[48];
	uint8_t eddbuf[0x1ec];
	uint8_t _pad9[276];
} __attribute__((packed));
_Static_assert(sizeof(struct linux_boot_params) == 4096, "zero page");
_Static_assert(__builtin_offsetof(struct linux_boot_params, acpi_rsdp_addr) == 0x070, "rsdp");
_Static_assert(__builtin_offsetof(struct linux_boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(__builtin_offsetof(struct linux_boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(__builtin_offsetof(struct linux_boot_params, e820_table) == 0x2d0, "e820_table");

#endif
