/* Starting a vCPU in 64-bit mode, and the fixed low-memory layout used by direct boots.
 *
 *   0x00500  GDT (null, null, 64-bit code 0x10, data 0x18)      0x07000  Linux zero page
 *   0x09000  PML4, 0x0a000 PDPT, 0x0b000-0x0efff PDs: identity map of the first 4 GiB (2 MiB pages)
 *   0x20000  kernel command line (up to 64 KiB)
 *   0x80000  initial stack top for test guests (grows down)
 *   0xe0000-0xfffef  ACPI tables (reserved in the e820 map, with the reset vector)
 *   0xffff0-0xfffff  the reset vector: F000:FFF0, where a real-mode restart jumps
 */
#ifndef GEN2VM_VMM_BOOT_H
#define GEN2VM_VMM_BOOT_H

#include <stdint.h>

#include "vmm/vm.h"

#define BOOT_GDT_GPA 0x500ull
#define BOOT_ZERO_PAGE_GPA 0x7000ull
#define BOOT_PML4_GPA 0x9000ull
#define BOOT_CMDLINE_GPA 0x20000ull
#define BOOT_CMDLINE_MAX 0x10000ull
#define BOOT_STACK_TOP 0x80000ull
#define BOOT_ACPI_GPA 0xe0000ull
#define BOOT_ACPI_SIZE 0x20000ull /* the reserved region, reset vector included */
#define BOOT_RESET_VECTOR_GPA 0xffff0ull
#define BOOT_ACPI_TABLES_MAX (BOOT_RESET_VECTOR_GPA - BOOT_ACPI_GPA)
#define BOOT_CODE_SEL 0x10
#define BOOT_DATA_SEL 0x18

/* Writes the GDT and the identity-mapped page tables above into guest RAM. Returns 0 or -EFAULT
 * when RAM is too small for them. */
int boot_write_tables(struct vm *vm);

/* Puts vCPU v in 64-bit mode with paging on (CR3 = the identity map), flat segments, interrupts off,
 * and the given RIP, RSP, RSI and RDI. */
int boot_enter_long_mode(struct vcpu *v, uint64_t rip, uint64_t rsp, uint64_t rsi, uint64_t rdi);

#endif
