/* Loaders: ELF images (test guests, vmlinux, later the firmware) and Linux direct boot.
 *
 * Errors are logged with the file name and the reason; return values are -errno:
 * -ENOENT/-EACCES (cannot read the file), -ENOEXEC (not a loadable image), -E2BIG (does not fit in
 * guest RAM), -EINVAL (bad argument).
 */
#ifndef GEN2VM_VMM_LOADER_H
#define GEN2VM_VMM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

/* Reads a whole regular file of at most 1 GiB into a malloc'd buffer (file_read_user: a FIFO or
 * device is refused, never waited on). Returns 0 or -errno (-EFBIG too large; logged, naming the file). */
int loader_read_file(const char *path, uint8_t **data, size_t *len);

/* Copies an ELF64 x86-64 image's PT_LOAD segments to their physical addresses (p_paddr), zeroing
 * the bss part. *entry gets e_entry, *end the highest loaded address. name is for messages. */
int loader_elf_load(struct vm *vm, const uint8_t *img, size_t len, const char *name, uint64_t *entry,
		    uint64_t *end);

struct linux_boot_config {
	const char *kernel;  /* bzImage or uncompressed vmlinux ELF */
	const char *initrd;  /* may be NULL */
	const char *cmdline; /* may be NULL */
	uint64_t rsdp_gpa;   /* ACPI RSDP, passed as boot_params.acpi_rsdp_addr */
};

/* Statistics for the boot benchmark. */
struct linux_boot_info {
	char how[80]; /* how the kernel was loaded, for messages and the boot benchmark */
	uint64_t entry;
	uint64_t kernel_end;
	uint64_t initrd_gpa, initrd_size;
};

/* Loads the kernel (decompressing a bzImage's payload in the host when its format is known, else
 * letting the kernel's own decompressor run), the initrd and the command line into vm->mem, builds
 * the zero page with the e820 map of vm->mem and the boot page tables. Touches guest RAM only (no
 * vCPU, no KVM). */
int loader_linux_load(struct vm *vm, const struct linux_boot_config *cfg, struct linux_boot_info *info);

/* loader_linux_load, then sets the boot vCPU's registers for the 64-bit boot protocol. */
int loader_linux_boot(struct vm *vm, const struct linux_boot_config *cfg, struct linux_boot_info *info);

#endif
