#include "vmm/complete.h"

#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "vmm/insn.h"

#define MSR_IA32_XSS 0xda0
#define MSR_TSC_AUX 0xc0000103

static struct insn_xcomp g_xcomp[64];
static uint8_t g_maxphyaddr;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The guest sees the host's XSAVE layout (leaf 0xD is passed through), so the host's CPUID
 * describes the components of the buffer KVM hands us. */
static void complete_init_tables(void)
{
	unsigned a, b, c, d;
	for (unsigned i = 2; i < 64; i++) {
		if (!__get_cpuid_count(0xd, i, &a, &b, &c, &d))
			break;
		g_xcomp[i] = (struct insn_xcomp){ .size = a, .offset = b, .align64 = (c >> 1) & 1 };
	}
	if (__get_cpuid(0x80000008, &a, &b, &c, &d))
		g_maxphyaddr = a & 0xff;
}

/* Only the XSAVE family (0F AE, 0F C7 /3-/5) and the SSE moves need the extended state: skip the
 * ioctl otherwise. */
static bool complete_needs_xstate(const uint8_t *b, unsigned n)
{
	static const uint8_t sse[] = { 0x10, 0x11, 0x12, 0x13, 0x16, 0x17, 0x28, 0x29, 0x54, 0x56, 0x57, 0x6c,
				       0x6d, 0x6e, 0x6f, 0x7e, 0x7f, 0xd6, 0xdb, 0xeb, 0xef };
	for (unsigned i = 0; i + 1 < n && i < 6; i++) {
		if (b[i] != 0x0f)
			continue;
		if (b[i + 1] == 0xae || b[i + 1] == 0xc7 || b[i + 1] == 0x01)
			return true;
		for (unsigned k = 0; k < sizeof(sse); k++)
			if (b[i + 1] == sse[k])
				return true;
	}
	return n == 0;
}

int vcpu_complete_instruction(struct vcpu *v, const uint8_t *insn, unsigned insn_len)
{
	pthread_once(&g_once, complete_init_tables);
	struct x86_regs regs;
	struct x86_sregs s;
	int r = kvm_vcpu_get_regs(v->kvm, &regs);
	r = r ? r : kvm_vcpu_get_sregs(v->kvm, &s);
	if (r) {
		vm_stop(v->vm, VM_EXIT_ERROR, "vCPU %u: cannot read registers: %s", v->id, strerror(-r));
		return r;
	}
	struct insn_cpu cpu = {
		.rip = regs.rip, .rflags = regs.rflags, .cr0 = s.cr0, .cr2 = s.cr2, .cr3 = s.cr3, .cr4 = s.cr4,
		.efer = s.efer, .seg_base = { s.es.base, s.cs.base, s.ss.base, s.ds.base, s.fs.base, s.gs.base },
		.cpl = s.ss.dpl, .cs_l = s.cs.l, .cs_db = s.cs.db, .maxphyaddr = g_maxphyaddr,
		.gdt_base = s.gdt.base, .gdt_limit = s.gdt.limit,
	};
	/* rdpid (F3 0F C7 F8-FF) needs TSC_AUX: read it only then. */
	if (insn_len >= 4 && insn[0] == 0xf3 && insn[1] == 0x0f && insn[2] == 0xc7 && insn[3] >= 0xf8 &&
	    kvm_vcpu_get_msr(v->kvm, MSR_TSC_AUX, &cpu.tsc_aux))
		cpu.tsc_aux = 0;
	memcpy(cpu.gpr, regs.gpr, sizeof(cpu.gpr));
	struct insn_xstate xs = { 0 }, *xsp = NULL;
	if (complete_needs_xstate(insn, insn_len)) {
		xs.size = kvm_vcpu_xsave_size(v->kvm);
		xs.area = aligned_alloc(64, (xs.size + 63) & ~(size_t)63);
		xs.comp = g_xcomp;
		if (xs.area && kvm_vcpu_get_xsave(v->kvm, xs.area, xs.size) == 0) {
			kvm_vcpu_get_xcr0(v->kvm, &cpu.xcr0);
			if (kvm_vcpu_get_msr(v->kvm, MSR_IA32_XSS, &cpu.xss))
				cpu.xss = 0;
			xsp = &xs;
		}
	}
	struct insn_outcome out;
	insn_complete(&cpu, &v->vm->mem, insn, insn_len, xsp, &out);
	switch (out.status) {
	case INSN_DONE:
	case INSN_SOFT_INT:
		memcpy(regs.gpr, cpu.gpr, sizeof(regs.gpr));
		regs.rip = cpu.rip;
		regs.rflags = cpu.rflags;
		r = kvm_vcpu_set_regs(v->kvm, &regs);
		if (!r && xsp && xs.dirty)
			r = kvm_vcpu_set_xsave(v->kvm, xs.area, xs.size);
		if (!r && out.status == INSN_SOFT_INT)
			r = kvm_vcpu_inject_soft_interrupt(v->kvm, out.vector, out.length);
		break;
	case INSN_EXCEPTION:
		if (out.trap) {
			regs.rip = cpu.rip;
			r = kvm_vcpu_set_regs(v->kvm, &regs);
		}
		if (!r && out.vector == 14) {
			s.cr2 = out.cr2;
			r = kvm_vcpu_set_sregs(v->kvm, &s);
		}
		if (!r)
			r = kvm_vcpu_inject_exception(v->kvm, out.vector, out.has_error, out.error_code);
		break;
	case INSN_UNSUPPORTED: {
		char msg[256];
		insn_outcome_format(&out, regs.rip, msg, sizeof(msg));
		vm_stop(v->vm, VM_EXIT_ERROR, "vCPU %u: cannot complete instruction: %s", v->id, msg);
		r = -ENOTSUP;
		break;
	}
	}
	free(xs.area);
	if (r && r != -ENOTSUP)
		vm_stop(v->vm, VM_EXIT_ERROR, "vCPU %u: cannot apply a completed instruction: %s", v->id, strerror(-r));
	return r;
}
