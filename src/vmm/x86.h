/* x86 architectural state in gen2vm's own terms, so that only src/kvm/ sees linux/kvm.h. */
#ifndef GEN2VM_VMM_X86_H
#define GEN2VM_VMM_X86_H

#include <stdbool.h>
#include <stdint.h>

enum x86_gpr {
	X86_RAX, X86_RCX, X86_RDX, X86_RBX, X86_RSP, X86_RBP, X86_RSI, X86_RDI,
	X86_R8, X86_R9, X86_R10, X86_R11, X86_R12, X86_R13, X86_R14, X86_R15,
};

struct x86_regs {
	uint64_t gpr[16]; /* indexed by enum x86_gpr (hardware encoding order) */
	uint64_t rip;
	uint64_t rflags;
};

struct x86_seg {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl, unusable;
};

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
};

struct x86_sregs {
	struct x86_seg cs, ds, es, fs, gs, ss, tr, ldt;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
};

#define X86_CR0_PE (1ull << 0)
#define X86_CR0_MP (1ull << 1)
#define X86_CR0_ET (1ull << 4)
#define X86_CR0_NE (1ull << 5)
#define X86_CR0_WP (1ull << 16)
#define X86_CR0_PG (1ull << 31)
#define X86_CR4_PAE (1ull << 5)
#define X86_CR4_OSFXSR (1ull << 9)
#define X86_CR4_OSXMMEXCPT (1ull << 10)
#define X86_CR4_OSXSAVE (1ull << 18)
#define X86_EFER_SCE (1ull << 0)
#define X86_EFER_LME (1ull << 8)
#define X86_EFER_LMA (1ull << 10)
#define X86_EFER_NXE (1ull << 11)
#define X86_RFLAGS_RESERVED (1ull << 1)
#define X86_CR0_EM (1ull << 2)
#define X86_CR0_TS (1ull << 3)
#define X86_CR4_PSE (1ull << 4)
#define X86_CR4_LA57 (1ull << 12)
#define X86_CR4_SMEP (1ull << 20)
#define X86_CR4_SMAP (1ull << 21)
#define X86_RFLAGS_CF (1ull << 0)
#define X86_RFLAGS_PF (1ull << 2)
#define X86_RFLAGS_AF (1ull << 4)
#define X86_RFLAGS_ZF (1ull << 6)
#define X86_RFLAGS_SF (1ull << 7)
#define X86_RFLAGS_OF (1ull << 11)
#define X86_RFLAGS_VM (1ull << 17)
#define X86_RFLAGS_AC (1ull << 18)
/* The six status flags arithmetic sets */
#define X86_RFLAGS_STATUS (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | X86_RFLAGS_SF | X86_RFLAGS_OF)
#define X86_EFER_FFXSR (1ull << 14)
#define X86_VEC_DB 1
#define X86_VEC_BP 3
#define X86_VEC_OF 4
#define X86_VEC_UD 6
#define X86_VEC_NM 7
#define X86_VEC_SS 12
#define X86_VEC_GP 13
#define X86_VEC_PF 14

/* One CPUID entry as the guest will see it. */
struct x86_cpuid_entry {
	uint32_t function, index;
	bool indexed; /* the sub-leaf (ECX) matters */
	uint32_t eax, ebx, ecx, edx;
};

#endif
