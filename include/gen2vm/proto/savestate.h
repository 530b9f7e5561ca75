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
 * pages * 4096 bytes; pages that are all zeros are left out (a restored VM's RAM starts zeroed). The
 * DEVMEM section holds the device memory the guest reaches as RAM (the video RAM) the same way. */
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
	SAVESTATE_SEC_DEVMEM = 9, /* index 0: device memory (vmdev_host.map_ram), struct savestate_devmem */
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

/* SAVESTATE_SEC_DEVMEM index 0, present when the VM has device memory (the video RAM, which the
 * machine allocates at the guest's first VRAM_LOCATION): struct savestate_devmem, then nr_runs runs,
 * each a struct savestate_devmem_run and its pages * 4096 bytes, in increasing offsets; pages of zeros
 * are left out (restored memory starts zeroed). Where it is mapped is the video device's state too:
 * the device maps it again at restore, and a state where the two disagree is refused. */
#define SAVESTATE_DEVMEM_MAX (256ull << 20)
struct savestate_devmem {
	uint64_t size;    /* bytes, a multiple of 4096, at most SAVESTATE_DEVMEM_MAX */
	uint64_t gpa;     /* page-aligned; where it was mapped (0 when not mapped) */
	uint32_t mapped;  /* 0 or 1 */
	uint32_t nr_runs;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_devmem) == 24, "savestate devmem");

struct savestate_devmem_run {
	uint64_t offset; /* from the memory's start, page-aligned, past the previous run's end */
	uint64_t pages;  /* >= 1; the run lies wholly inside the memory */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_devmem_run) == 16, "savestate devmem run");

/* ---- device classes' sections (SAVESTATE_SEC_DEVICE: the class name in 16 bytes, then these) ---- */

/* The synthetic console devices: an empty section when the console is off (nothing offered). A
 * protocol state that needs an open channel (negotiated, connected) is refused when the restored
 * VMBus state has the device's channel closed, and the other way round. */

/* "video" (src/devices/synthvid.c). The VRAM's contents are the DEVMEM section. */
#define SAVESTATE_SYNTHVID_CURSOR_BYTES (96u * 96u * 4u) /* SYNTHVID_CURSOR_MAX_X * _Y ARGB pixels */
struct savestate_synthvid {
	uint32_t version;   /* 0 (not negotiated), or 3.2 / 3.5 as SYNTHVID_VERSION_* */
	uint8_t vram_set;   /* 0 or 1: the guest said where its VRAM is (vram_gpa) */
	uint8_t vram_mapped; /* 0 or 1: mapped there as RAM */
	uint8_t announces;  /* 0 or 1: the connected driver sends DIRT */
	uint8_t fw_phase;   /* 0 or 1: the firmware still owns the machine (before ExitBootServices) */
	uint64_t vram_gpa;  /* page-aligned, in an MMIO window of VMOD */
	uint8_t fw_session; /* 0 or 1: the channel now open is the firmware's */
	uint8_t geo_active, geo_depth_bits, ptr_visible; /* 0 or 1; bits; 0 or 1 */
	uint32_t geo_vram_offset, geo_width, geo_height, geo_pitch; /* the last situation update */
	int32_t ptr_x, ptr_y;
	uint32_t ptr_w, ptr_h, ptr_hot_x, ptr_hot_y; /* <= 96; the hot spot inside */
	uint32_t ptr_shape;  /* 0 or 1: ptr_argb holds ptr_w x ptr_h pixels (ptr_w, ptr_h >= 1) */
	uint32_t ptr_shape_seq;
	uint32_t reserved; /* 0 */
	uint8_t ptr_argb[SAVESTATE_SYNTHVID_CURSOR_BYTES]; /* B, G, R, A; zeros past the shape */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_synthvid) == 72 + SAVESTATE_SYNTHVID_CURSOR_BYTES, "savestate synthvid");


/* "keyboard" (src/devices/synthkbd.c). */
struct savestate_synthkbd {
	uint32_t connected; /* 0 or 1: protocol 1.0 accepted (needs the channel open) */
	uint32_t version;   /* what the guest asked for */
	uint16_t leds;      /* SYNTHKBD_LED_* */
	uint16_t reserved0;
	uint32_t reserved1;
	uint64_t events;    /* key events sent (status) */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_synthkbd) == 24, "savestate synthkbd");

/* "mouse" (src/devices/synthmouse.c). */
struct savestate_synthmouse {
	uint32_t state;   /* enum synthmouse_state: closed exactly when the channel is */
	uint32_t version; /* what the guest asked for */
	uint64_t reports; /* input reports sent (status) */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_synthmouse) == 16, "savestate synthmouse");

/* "netvsp" (src/devices/netvsp_class.c, netvsp.c): struct savestate_netvsp_class, then each adapter
 * in slot order: struct savestate_netvsp, its nr_txns struct savestate_netvsp_txn, then its nr_chans
 * struct savestate_netvsp_chan each followed by its nr_owed struct savestate_netvsp_owed. The
 * backend (tap, pair) is not state: it is opened again from the configuration, and frames in flight
 * on it are lost, as a NIC may lose them; so are receive batches a full ring held back. What the
 * guest holds (receive sections it has not completed) and what it waits for (completions a full ring
 * held back) is kept, so its driver goes on without a reset. */
struct savestate_netvsp_class {
	uint32_t nr_adapters; /* as the VM has */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_netvsp_class) == 8, "savestate netvsp class");

#define SAVESTATE_NETVSP_BATCH 8u /* frames per receive transaction (NV_BATCH) */
struct savestate_netvsp {
	uint32_t slot;        /* the adapter's number (nic-list): must be the VM's */
	uint32_t max_queues;  /* channels offered: must be the adapter's */
	uint8_t mac[6];       /* its permanent MAC: must be the adapter's */
	uint8_t admin_up;     /* 0 or 1: the cable at our end (nic-link) */
	uint8_t link_up;      /* 0 or 1: what the guest was last told */
	uint32_t nvsp_version; /* 0 or a version NVSP INIT accepts */
	uint32_t guest_mtu;   /* <= 9000, from NDIS_CONFIG */
	uint64_t link_speed_bps;
	/* RNDIS, as the guest set it */
	uint8_t initialized, tx_csum_v4, tx_csum_v6, lso_v4, lso_v6, rss_enabled, version_ok; /* 0 or 1 */
	uint8_t reserved0;
	uint8_t cur_mac[6];
	uint16_t reserved1;
	uint32_t filter, mcast_count;
	uint8_t offload[28];  /* struct ndis_offload_params as last set */
	uint32_t rss_hashinfo;
	uint32_t rss_key_len; /* 40 */
	uint32_t rss_itab_len; /* a power of two <= 128; entries < max_queues */
	uint8_t rss_key[40];
	uint16_t rss_itab[128];
	/* The buffers: their GPADLs (the VMBus section's) on the primary channel; 0: none. */
	uint32_t recv_gpadl, recv_size; /* size: the GPADL's bytes */
	uint32_t recv_section_size;     /* as announced to the guest */
	uint16_t recv_id, reserved2;
	uint32_t send_gpadl, send_size;
	uint32_t nr_txns;     /* receive transactions the guest holds, <= 4096 */
	uint32_t nr_chans;    /* channels with state, <= max_queues */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_netvsp) == 424, "savestate netvsp");


struct savestate_netvsp_txn {
	uint32_t slot;      /* < 4096: the transaction id's low half; each once */
	uint32_t nr_frames; /* 1 .. SAVESTATE_NETVSP_BATCH */
	uint32_t start[SAVESTATE_NETVSP_BATCH], count[SAVESTATE_NETVSP_BATCH]; /* receive sections, each held once */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_netvsp_txn) == 72, "savestate netvsp txn");

struct savestate_netvsp_chan {
	uint32_t index;   /* the sub-channel index: an open channel, each once */
	uint32_t nr_owed; /* <= 4 */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_netvsp_chan) == 8, "savestate netvsp channel");

/* A completion the guest waits for that its full ring held back. */
struct savestate_netvsp_owed {
	uint16_t type;    /* VM_PKT_COMP */
	uint16_t flags;   /* 0 */
	uint32_t ext_len; /* <= 16 */
	uint32_t len;     /* 1 .. 40 */
	uint32_t reserved;
	uint64_t tid;
	uint8_t ext[16];
	uint8_t payload[40]; /* an NVSP message (NVSP_MESSAGE_SIZE) */
} __attribute__((packed));
_Static_assert(sizeof(struct savestate_netvsp_owed) == 80, "savestate netvsp owed");

#endif
