/* Booting a VM through gen2vm's UEFI firmware: loading the firmware image (built into gen2vm, or
 * --firmware PATH), the hand-off block, the memory layout it describes, and the host side of the
 * firmware's host-call port (include/gen2vm/proto/fw.h).
 *
 * Guest-physical layout under the firmware:
 *   0x00000-0x0ffff  VMM-made boot structures (GDT, hand-off block, identity page tables): boot data
 *   0x10000-0xcffff  RAM
 *   0xd0000-0xdffff  SMBIOS entry point and tables
 *   0xe0000-0xfffff  ACPI tables
 *   0x100000-        the firmware image (runtime code and data), then RAM
 *   top of low RAM   files for the firmware (--efi image, initrd, command line), page aligned
 */
#ifndef GEN2VM_PLATFORM_FIRMWARE_H
#define GEN2VM_PLATFORM_FIRMWARE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/fw.h"
#include "vmm/vm.h"

#define FW_SMBIOS_GPA 0xd0000ull
#define FW_SMBIOS_SIZE 0x10000ull

struct firmware_config {
	const char *path;     /* an external firmware ELF, or NULL for the built-in one */
	const char *efi;      /* an EFI image to start from memory (--efi), or NULL */
	const char *initrd;   /* offered to that image through LoadFile2 (Linux initrd media path) */
	const char *cmdline;  /* that image's load options */
	bool com1, debugcon;  /* consoles the firmware may write to */
	bool nvram_file;      /* variables persist in a file */
	uint64_t rsdp_gpa;
	uint64_t smbios_gpa;  /* 0: none */
	uint8_t system_uuid[16];
};

/* Handlers for the host-call groups other modules own. Each gets the whole request (header
 * included, req_size bytes, already inside guest RAM and checked against hdr.size) and returns the
 * EFI_STATUS to store in it. NULL handlers answer EFI_UNSUPPORTED. */
typedef uint64_t (*firmware_op_fn)(void *opaque, uint32_t op, void *req, uint32_t req_size);

struct firmware {
	struct vm *vm;
	firmware_op_fn var_fn, misc_fn;
	void *var_opaque, *misc_opaque;
	firmware_op_fn sec_fn; /* FW_OP_SEC_* (Secure Boot): boot services only */
	void *sec_opaque;
	/* Boot progress, for --stats and the firmware benchmark (clock_mono_ns() times, 0: not reached). */
	uint64_t start_ns, loader_ns, ebs_ns;
	uint64_t loader_exits, loader_insns; /* exits and completed instructions up to the loader's start */
	_Atomic bool continue_requested;     /* the host's "continue" for PauseAfterBootFailure */
	/* Optional, with hooks_opaque. watched (FW_OP_WATCHED): whether someone watches the screen now.
	 * boot_services_ended: the OS loader called ExitBootServices (the OS owns the machine). On the
	 * vCPU thread of the host call. */
	bool (*watched)(void *opaque);
	void (*boot_services_ended)(void *opaque);
	void *hooks_opaque;
};

/* The host's "continue" (control socket): lets a firmware paused after a boot failure go on. Any
 * thread. */
void firmware_continue(struct firmware *fw);

/* True when this gen2vm carries a built-in firmware image. */
bool firmware_builtin_available(void);

/* Loads the firmware and the files of cfg, writes the hand-off block and the boot page tables, points
 * the boot vCPU at the firmware's entry, and claims FW_HOST_PORT on vm->pio. Returns 0 or -errno
 * (logged: -ENOENT no firmware, -ENOEXEC not a firmware image, -E2BIG files do not fit in RAM). */
int firmware_setup(struct firmware *fw, struct vm *vm, const struct firmware_config *cfg);

/* The hand-off block's memory ranges for a VM of this RAM layout (exposed for unit tests). fw_end is
 * the end of the firmware image, files_start the lowest address of the files placed below the top
 * of low RAM (== that top when none). Returns the number of ranges written to out (at most max). */
unsigned firmware_mem_layout(const struct guest_mem *mem, uint64_t fw_end, uint64_t files_start,
			     struct fw_mem_range *out, unsigned max);

#endif
