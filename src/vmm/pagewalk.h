/* Guest linear-to-physical translation: a software walk of the guest's own page tables.
 *
 * Used where the VMM must touch guest memory by linear address (completing an instruction KVM's
 * emulator rejected). It follows the architectural rules closely enough that the guest cannot tell
 * the access was done in software:
 *   - paging off (CR0.PG=0): linear = physical (32-bit wrap outside long mode);
 *   - 32-bit paging (4 KiB, and 4 MiB with CR4.PSE, PSE-36 high bits);
 *   - PAE paging (4 KiB, 2 MiB); PDPTEs are read from memory at each walk (real CPUs cache them
 *     at MOV CR3, so a guest editing live PDPTEs without reloading CR3 would see a difference);
 *   - 4-level and 5-level (CR4.LA57) paging with 2 MiB and 1 GiB pages, canonical checks;
 *   - permissions: P, R/W with CR0.WP, U/S for CPL 3, NX (EFER.NXE), SMEP, SMAP (RFLAGS.AC);
 *   - reserved bits: above MAXPHYADDR, NX without NXE, PS at the top levels, large-page holes;
 *   - Accessed bits on every entry used and Dirty on the leaf for writes, set with atomic ORs
 *     because other vCPU threads walk the same tables, and only once the translation succeeds.
 * Not modelled: protection keys (CR4.PKE/PKS), segment limits, implicit supervisor accesses.
 *
 * Return convention of every function here:
 *   0        success;
 *   -EFAULT  the guest takes an exception, described in *fault (#PF, or #GP(0) for a
 *            non-canonical address);
 *   -EIO     a paging-structure entry lies outside guest RAM (MMIO or nothing): the VMM cannot
 *            walk it; report the access as unsupported, do not inject anything;
 *   -ENXIO   the translation worked but the data GPA is not guest RAM (an MMIO operand);
 *   -EINVAL  bad arguments (len too large for the multi-page helpers).
 */
#ifndef GEN2VM_VMM_PAGEWALK_H
#define GEN2VM_VMM_PAGEWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/x86.h"

/* Architectural bits the walk looks at (shared with the instruction completer). */

/* Page-fault error code bits. */
#define PF_ERR_P    (1u << 0)
#define PF_ERR_W    (1u << 1)
#define PF_ERR_U    (1u << 2)
#define PF_ERR_RSVD (1u << 3)
#define PF_ERR_I    (1u << 4)


/* The part of the vCPU state translation depends on. */
struct pagewalk_ctx {
	uint64_t cr0, cr3, cr4, efer, rflags;
	uint8_t cpl;        /* 3 = user access; 0..2 = supervisor */
	uint8_t maxphyaddr; /* physical address width; 0 means 52 */
};

enum pagewalk_access { PAGEWALK_READ, PAGEWALK_WRITE, PAGEWALK_FETCH };

/* The exception to inject when a function returns -EFAULT. */
struct pagewalk_fault {
	uint8_t vector;      /* X86_VEC_PF or X86_VEC_GP */
	uint32_t error_code; /* PF_ERR_* for #PF; 0 for #GP */
	uint64_t cr2;        /* faulting linear address (meaningful for #PF) */
};

/* Translates one linear address for one access. On success *gpa is the guest-physical address
 * of that byte and the A (and, for writes, D) bits have been set. Returns 0, -EFAULT (fault
 * filled) or -EIO (a paging structure is outside RAM). */
int pagewalk_translate(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		       enum pagewalk_access acc, uint64_t *gpa, struct pagewalk_fault *fault);

/* Translates every page of [la, la+len) for acc and checks each lies in guest RAM; nothing is
 * copied. Used to make a multi-part write all-or-nothing. len <= 1 MiB. Returns 0, -EFAULT,
 * -EIO, -ENXIO or -EINVAL. */
int pagewalk_check(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		   size_t len, enum pagewalk_access acc, struct pagewalk_fault *fault);

/* Reads len bytes at linear address la (acc is PAGEWALK_READ or PAGEWALK_FETCH), crossing
 * pages as needed. On error buf may be partly written. len <= 1 MiB. */
int pagewalk_read(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		  void *buf, size_t len, enum pagewalk_access acc, struct pagewalk_fault *fault);

/* Writes len bytes at linear address la. Every page is translated and checked before the first
 * byte is written, so a fault leaves guest memory untouched. len <= 1 MiB. */
int pagewalk_write(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		   const void *buf, size_t len, struct pagewalk_fault *fault);

/* Host pointer for [la, la+len) when the range sits in one guest page and in RAM, for accesses
 * that must be done in place (atomics). Same returns as pagewalk_translate plus -ENXIO; -EINVAL
 * when the range crosses a 4 KiB boundary. */
int pagewalk_host_ptr(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		      size_t len, enum pagewalk_access acc, void **hva, struct pagewalk_fault *fault);

#endif
