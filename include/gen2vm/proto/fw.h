/* The contract between gen2vm and its UEFI firmware (firmware/): the hand-off block the VMM writes into
 * guest RAM before the first firmware instruction, and the host-call port the firmware uses after.
 *
 * Start-up: the boot vCPU enters the firmware's ELF entry point in 64-bit mode (flat segments, the
 * VMM's identity map of the first 4 GiB, interrupts off) with RDI = FW_HANDOFF_GPA. Application
 * processors wait for INIT/SIPI as on real hardware: the OS starts them from the ACPI MADT.
 *
 * Host calls: the firmware builds a request (struct fw_host_req followed by the op's payload) in RAM
 * below 4 GiB, 8-byte aligned, and writes its guest physical address with a 32-bit OUT to
 * FW_HOST_PORT. The VMM handles it before the OUT completes and writes req.status (an EFI_STATUS).
 * The VMM checks every field: a request outside RAM, a size that disagrees with its payload or an
 * unknown op gets EFI_INVALID_PARAMETER / EFI_UNSUPPORTED and a rate-limited log line. Runtime
 * services use the same port after ExitBootServices (the GPA stays physical whatever the OS maps).
 */
#ifndef GEN2VM_PROTO_FW_H
#define GEN2VM_PROTO_FW_H

#include <stdint.h>

#define FW_HANDOFF_GPA 0x1000ull
#define FW_HANDOFF_MAGIC 0x4f464648564d3247ull /* "G2MVHFFO" */
#define FW_HANDOFF_VERSION 1
#define FW_LOAD_GPA 0x100000ull  /* the firmware ELF is linked here */
#define FW_LOAD_MAX 0x200000ull  /* and must end below FW_LOAD_GPA + FW_LOAD_MAX */
#define FW_HOST_PORT 0x5f0
#define FW_MEM_MAX 32

/* fw_mem_range.type */
enum fw_mem_type {
	FW_MEM_RAM = 1,      /* free RAM */
	FW_MEM_RESERVED = 2, /* never to be used by anyone */
	FW_MEM_ACPI = 3,     /* ACPI tables (reclaimable once the OS has read them) */
	FW_MEM_ACPI_NVS = 4,
	FW_MEM_MMIO = 5,     /* device MMIO (the I/O APIC, the local APIC): EfiMemoryMappedIO */
	FW_MEM_FIRMWARE = 6, /* the firmware image itself (runtime code and data) */
	FW_MEM_LOADED = 7,   /* files the VMM put in RAM for the firmware (fw_handoff.image/initrd) */
	FW_MEM_SMBIOS = 8,   /* SMBIOS entry point and tables */
	FW_MEM_BOOT_DATA = 9, /* VMM-made boot structures (GDT, hand-off, page tables): boot-services data */
};

struct fw_mem_range {
	uint64_t start; /* page aligned */
	uint64_t size;  /* page multiple */
	uint32_t type;  /* enum fw_mem_type */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct fw_mem_range) == 24, "fw_mem_range");

/* fw_handoff.flags */
#define FW_FLAG_COM1 (1u << 0)     /* a 16550 at 0x3f8: firmware console */
#define FW_FLAG_DEBUGCON (1u << 1) /* the debug console port 0xe9: firmware console and test reports */
#define FW_FLAG_NVRAM_FILE (1u << 2) /* variables persist in a file (--nvram); else they live for the run */

struct fw_handoff {
	uint64_t magic;      /* FW_HANDOFF_MAGIC */
	uint32_t version;    /* FW_HANDOFF_VERSION */
	uint32_t size;       /* sizeof(struct fw_handoff) */
	uint32_t nr_vcpus;
	uint32_t flags;      /* FW_FLAG_* */
	uint64_t rsdp_gpa;   /* ACPI 2.0 RSDP */
	uint64_t smbios_gpa; /* SMBIOS 3.0 entry point, 0 when none */
	uint64_t fw_start, fw_end; /* the firmware image [start, end) */
	uint8_t system_uuid[16];   /* SMBIOS type 1 UUID, in SMBIOS byte order */
	uint64_t tsc_hz;     /* 0 when unknown */
	/* An EFI image the VMM loaded for the firmware to start before the boot manager (--efi), with
	 * its initrd (offered through LoadFile2 on the Linux initrd media device path) and its load
	 * options (UTF-8, converted to UCS-2 by the firmware). Zero sizes when absent. */
	uint64_t image_gpa, image_size;
	uint64_t initrd_gpa, initrd_size;
	uint64_t cmdline_gpa, cmdline_size;
	uint32_t nr_mem;
	uint32_t reserved;
	struct fw_mem_range mem[FW_MEM_MAX]; /* sorted, non-overlapping; the rest of the space is not RAM */
} __attribute__((packed));
_Static_assert(sizeof(struct fw_handoff) == 136 + FW_MEM_MAX * 24, "fw_handoff");

struct fw_host_req {
	uint32_t op;     /* enum fw_host_op */
	uint32_t size;   /* bytes of the whole request, this header included */
	uint64_t status; /* EFI_STATUS, written by the VMM */
} __attribute__((packed));
_Static_assert(sizeof(struct fw_host_req) == 16, "fw_host_req");

#define FW_HOST_REQ_MAX (64u * 1024 + 4096) /* the VMM refuses larger requests */

/* Operation numbers. Payload layouts are defined next to each group. */
enum fw_host_op {
	FW_OP_NOP = 0,
	/* 0x01-0x0f: boot progress, reported to the host (log lines, benchmarks, exit status). */
	FW_OP_EVENT = 0x01,      /* struct fw_event_req */
	FW_OP_PANIC = 0x02,      /* struct fw_event_req: a firmware fault; the VM ends as crashed */
	FW_OP_BOOT_FAILED = 0x03, /* struct fw_event_req: no boot entry worked; text = the boot summary */
	FW_OP_CONTINUE = 0x04,   /* struct fw_host_req: EFI_SUCCESS once after the host said "continue"
				  * (PauseAfterBootFailure), else EFI_NOT_READY */
	FW_OP_WATCHED = 0x05,    /* struct fw_host_req: EFI_SUCCESS while someone watches the VM's screen
				  * (a VNC or web console viewer is attached), else EFI_NOT_READY: the boot
				  * menu's key window is spent only then (or when the Timeout variable asks) */
	/* 0x10-0x1f: variable services (NVRAM owned by the host). */
	FW_OP_VAR_FIRST = 0x10,
	FW_OP_VAR_LAST = 0x1f,
	/* 0x20-0x2f: time, entropy. */
	FW_OP_MISC_FIRST = 0x20,
	FW_OP_TIME_GET = 0x20,   /* struct fw_time_req: the VM's wall clock */
	FW_OP_TIME_SET = 0x21,   /* struct fw_time_req: moves the VM's wall clock (kept for the run) */
	FW_OP_RNG = 0x22,        /* struct fw_rng_req: entropy from the host */
	FW_OP_MISC_LAST = 0x2f,
	/* 0x50-0x5f: Secure Boot, include/gen2vm/proto/fw_sec.h. */
};

/* FW_OP_TIME_GET/SET: the time as EFI_TIME's fields (UEFI 2.10 8.3), UTC unless time_zone says
 * otherwise. SET answers EFI_INVALID_PARAMETER for a field out of range. */
struct fw_time_req {
	struct fw_host_req hdr;
	uint16_t year;
	uint8_t month, day, hour, minute, second, pad1;
	uint32_t nanosecond;
	int16_t time_zone; /* minutes from UTC, or 2047 (EFI_UNSPECIFIED_TIMEZONE) */
	uint8_t daylight, pad2;
} __attribute__((packed));
_Static_assert(sizeof(struct fw_time_req) == 32, "fw_time_req");

/* FW_OP_RNG: len bytes of entropy into data (at most FW_RNG_MAX). */
#define FW_RNG_MAX 4096u
struct fw_rng_req {
	struct fw_host_req hdr;
	uint32_t len;
	uint32_t pad;
	uint8_t data[];
} __attribute__((packed));
_Static_assert(sizeof(struct fw_rng_req) == 24, "fw_rng_req");

/* The low MMIO window VMOD's _CRS offers below 4 GiB (src/platform/gen2.c), for VMBus devices' memory:
 * the firmware puts its Graphics Output frame buffer (the synthetic video VRAM) at its start. */
#define FW_MMIO_LOW_BASE 0xF0000000ull
#define FW_MMIO_LOW_SIZE 0x08000000ull /* 128 MiB below the IOAPIC */

/* Device paths (include/gen2vm/proto/efi.h types) the firmware gives VMBus devices, and that the
 * host writes into boot entries, so both must build them alike (guestlib/efi/efi_devpath.c):
 *   a SCSI LUN:   VenHw(FW_VMBUS_DP_GUID, <controller instance GUID, 16 bytes>)/Scsi(target, lun)
 * followed, for a partition, by HD(...) or CDROM(...), and for a file by a file path node. */
#define FW_VMBUS_DP_GUID EFI_GUID_INIT(0x9b17e5a2, 0x0891, 0x42dd, 0xb6, 0x53, 0x80, 0xb5, 0xc2, 0x28, 0x09, 0xba)

/* fw_event_req.code for FW_OP_EVENT */
enum fw_event_code {
	FW_EV_START = 1,          /* firmware main reached; text: version */
	FW_EV_BOOT_ENTRY = 2,     /* the boot manager tries an entry; text: its description */
	FW_EV_LOADER_START = 3,   /* StartImage of an OS loader (the benchmark's end point); text: path */
	FW_EV_EXIT_BOOT_SERVICES = 4, /* ExitBootServices succeeded */
	FW_EV_BOOT_ENTRY_FAILED = 5,  /* text: the entry and the reason */
	FW_EV_LOG = 6,            /* text: a line for the VMM's log */
};

#define FW_EVENT_TEXT_MAX 4000u

struct fw_event_req {
	struct fw_host_req hdr;
	uint32_t code;
	uint32_t len;  /* bytes of text (UTF-8, no NUL), at most FW_EVENT_TEXT_MAX */
	char text[];
} __attribute__((packed));
_Static_assert(sizeof(struct fw_event_req) == 24, "fw_event_req");

#endif
