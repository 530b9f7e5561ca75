#include "vmm/boot.h"

#include <errno.h>
#include <string.h>

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull

int boot_write_tables(struct vm *vm)
{
	static const uint64_t gdt[4] = {
		0, 0,
		0x00af9b000000ffffull, /* 0x10: 64-bit code, DPL 0 */
		0x00cf93000000ffffull, /* 0x18: flat data */
	};
	if (guest_mem_write(&vm->mem, BOOT_GDT_GPA, gdt, sizeof(gdt)))
		return -EFAULT;
	uint64_t *pml4 = guest_mem_ptr(&vm->mem, BOOT_PML4_GPA, 6 * 4096);
	if (!pml4)
		return -EFAULT;
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
	memset(pml4, 0, 2 * 4096);
	pml4[0] = (BOOT_PML4_GPA + 0x1000) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PML4_GPA + 0x2000 + i * 0x1000) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
	return 0;
}

int boot_enter_long_mode(struct vcpu *v, uint64_t rip, uint64_t rsp, uint64_t rsi, uint64_t rdi)
{
	struct x86_sregs s;
	int r = kvm_vcpu_get_sregs(v->kvm, &s);
	if (r)
		return r;
	struct x86_seg code = { .base = 0, .limit = 0xffffffff, .selector = BOOT_CODE_SEL, .type = 0xb,
				.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1 };
	struct x86_seg data = { .base = 0, .limit = 0xffffffff, .selector = BOOT_DATA_SEL, .type = 0x3,
				.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1 };
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct x86_seg){ .limit = 0xffff, .type = 0xb, .present = 1 };
	s.ldt = (struct x86_seg){ .limit = 0xffff, .type = 0x2, .present = 1 };
	s.gdt = (struct x86_dtable){ BOOT_GDT_GPA, 4 * 8 - 1 };
	s.idt = (struct x86_dtable){ 0, 0 };
	s.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG;
	s.cr3 = BOOT_PML4_GPA;
	s.cr4 = X86_CR4_PAE;
	s.efer = X86_EFER_LME | X86_EFER_LMA;
	if ((r = kvm_vcpu_set_sregs(v->kvm, &s)))
		return r;
	struct x86_regs g = { .rip = rip, .rflags = X86_RFLAGS_RESERVED };
	g.gpr[X86_RSP] = rsp;
	g.gpr[X86_RSI] = rsi;
	g.gpr[X86_RDI] = rdi;
	return kvm_vcpu_set_regs(v->kvm, &g);
}
