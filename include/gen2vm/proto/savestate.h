/* The saved-state file of a VM (Hyper-V's "saved state": `gen2vm vm stop --save`, the control
 * socket's `save FILE`, restored by `gen2vm run --restore FILE`). Written and read by the VMM only
 * (src/vmm/savestate.c); a file on the host, so its reader treats every field as hostile.
 *
 * Layout, all little-endian, every part 8-byte aligned:
 *   struct savestate_header
 *   the machine's configuration, config_len bytes (the canonical document the VM was built from),
 *     padded with zeros to a multiple of 8: a restore with another configuration is refused
 *   sections: struct savestate_section, then length bytes, padded with zeros to a multiple of 8
 *   the END section (length 8): the CRC-32C of every byte before it (header to the last padding), as
 *     a u32 followed by 4 zero bytes; a file that ends without it, or has bytes after it, is refused
 *
 * A section's type says whose state it is; index tells instances apart (the vCPU number; the
 * device class's position). Its content is the owner's own format, which checks its own lengths.
 * MEMORY sections (index: the run's order) hold guest RAM sparsely: struct savestate_mem_run, then
 * pages * 4096 bytes; pages that are all zeros are left out (a restored VM's RAM starts zeroed). */
#ifndef GEN2VM_PROTO_SAVESTATE_H
#define GEN2VM_PROTO_SAVESTATE_H

#include <stdint.h>

#define SAVESTATE_MAGIC "G2VMSAVE" /* 8 bytes, no NUL in the file */
#define SAVESTATE_VERSION 1u
#define SAVESTATE_ALIGN 8u
#define SAVESTATE_PAGE 4096u

struct savestate_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size; /* sizeof(struct savestate_header) for version 1 */
	uint32_t nr_vcpus;
	uint32_t reserved0; /* 0 */
	uint64_t ram_size;   /* bytes of guest RAM */
	uint64_t config_len; /* bytes of configuration after the header */
	uint32_t config_crc; /* CRC-32C of the configuration, for a message that needs no comparison */
	uint32_t reserved1; /* 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_header) == 48, "savestate header");

enum savestate_type {
	SAVESTATE_SEC_VCPU = 1,   /* one per vCPU: src/kvm's vCPU state */
	SAVESTATE_SEC_IOAPIC = 2, /* the userspace IOAPIC */
	SAVESTATE_SEC_HV = 3,     /* the Hyper-V partition (src/hv) */
	SAVESTATE_SEC_HV_VP = 4,  /* one per vCPU: its Hyper-V state (SynIC, timers) */
	SAVESTATE_SEC_VMBUS = 5,  /* the VMBus server */
	SAVESTATE_SEC_DEVICE = 6, /* one per running device class: its save callback's bytes */
	SAVESTATE_SEC_PLATFORM = 7, /* uart, rtc, ACPI PM, firmware clock */
	SAVESTATE_SEC_MEMORY = 8,
	SAVESTATE_SEC_END = 0xFFFFFFFFu,
};

struct savestate_section {
	uint32_t type;
	uint32_t index;
	uint64_t length; /* bytes of content, before padding */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_section) == 16, "savestate section");

struct savestate_mem_run {
	uint64_t gpa;   /* page-aligned, in guest RAM */
	uint64_t pages; /* >= 1; the run lies wholly in one RAM region */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_mem_run) == 16, "savestate memory run");

/* ---- section contents that are not an owner's private record format ---- */

/* SAVESTATE_SEC_HV: the partition, then nr_vps struct savestate_hv_vp, each followed by its nr_queued
 * struct savestate_hv_msg (SynIC messages not yet in the guest's message slot, oldest first). The
 * hypercall page, the reference TSC page and the SynIC pages are guest RAM (MEMORY sections). */
struct savestate_hv {
	uint64_t guest_os_id, hypercall, reference_tsc;
	uint64_t crash_p[5];
	uint32_t crashed; /* 0 or 1 */
	uint32_t nr_vps;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_hv) == 72, "savestate hv");

struct savestate_hv_vp {
	uint64_t vp_assist, scontrol, siefp, simp;
	uint64_t sint[16];
	uint32_t nr_queued; /* <= HV_SYNIC_QUEUE_MAX per SINT in all */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_hv_vp) == 168, "savestate hv vp");

struct savestate_hv_msg {
	uint32_t type; /* != HVMSG_NONE */
	uint8_t sint;  /* < 16 */
	uint8_t len;   /* <= 240 */
	uint16_t reserved;
	uint8_t payload[240];
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_hv_msg) == 248, "savestate hv message");

/* SAVESTATE_SEC_VMBUS: the connection, then nr_gpadls GPADLs (struct savestate_vmbus_gpadl and its
 * range buffer as the guest sent it: per range u32 byte_count, u32 byte_offset, then its pfns as
 * u64), then nr_devices devices in registration order (struct savestate_vmbus_device, then its
 * nr_channels struct savestate_vmbus_channel by sub-channel index). The rings are guest RAM. */
struct savestate_vmbus {
	uint32_t connected, offers_requested; /* 0 or 1 */
	uint32_t version, target_vcpu;
	uint64_t interrupt_page, monitor_page1, monitor_page2;
	uint32_t nr_gpadls, nr_devices;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_vmbus) == 48, "savestate vmbus");

struct savestate_vmbus_gpadl {
	uint32_t id, relid, nr_ranges;
	uint32_t buf_len; /* bytes of range buffer that follow, a multiple of 8 */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_vmbus_gpadl) == 16, "savestate vmbus gpadl");

struct savestate_vmbus_device {
	uint8_t class_id[16], instance_id[16]; /* must match the device registered at that position */
	uint16_t nr_channels, sub_wanted;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_vmbus_device) == 40, "savestate vmbus device");

#define SAVESTATE_CHAN_UNOFFERED 0u
#define SAVESTATE_CHAN_OFFERED 1u
#define SAVESTATE_CHAN_OPEN 2u
struct savestate_vmbus_channel {
	uint32_t state; /* SAVESTATE_CHAN_* */
	uint32_t relid, target_vp;
	uint32_t ring_gpadl, downstream_offset; /* open: OPENCHANNEL's ring GPADL and page offset */
	uint32_t reserved;
	uint8_t userdata[120];
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_vmbus_channel) == 144, "savestate vmbus channel");

/* SAVESTATE_SEC_IOAPIC. */
struct savestate_ioapic {
	uint32_t ioregsel, id;
	uint32_t level; /* line levels, a bit per pin */
	uint32_t nr_pins; /* 24 */
	uint64_t rte[24];
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_ioapic) == 208, "savestate ioapic");

/* SAVESTATE_SEC_PLATFORM index 0: COM1 (a 16550). */
struct savestate_uart {
	uint8_t ier, iir_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t thr_irq, irq_level; /* 0 or 1 */
	uint8_t rx_head, rx_count;  /* < 16, <= 16 */
	uint8_t rx[16];
	uint8_t reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_uart) == 32, "savestate uart");

/* SAVESTATE_SEC_PLATFORM index 1: the RTC's registers and CMOS RAM (its time is the VM's clock). */
struct savestate_rtc {
	uint8_t index, nmi_masked;
	uint8_t reserved[6];
	uint8_t ram[128];
	int64_t clock_offset_s; /* the VM's clock minus host UTC when it was saved */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_rtc) == 144, "savestate rtc");

#endif
