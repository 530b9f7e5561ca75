#include "hv/cpuid.h"

#include <errno.h>

/* Processor compatibility mode: leaf 1 ECX keeps SSE3, SSSE3, CX16, SSE4.1, SSE4.2, x2APIC, POPCNT,
 * TSC-deadline and hypervisor; EDX the x86-64 baseline. */
#define COMPAT_L1_ECX ((1u << 0) | (1u << 9) | (1u << 13) | (1u << 19) | (1u << 20) | (1u << 21) | (1u << 23) | \
		       (1u << 24) | (1u << 31))
#define COMPAT_L1_EDX 0x178bfbffu
#define COMPAT_X1_ECX ((1u << 0))                            /* LAHF/SAHF in 64-bit mode */
#define COMPAT_X1_EDX ((1u << 11) | (1u << 20) | (1u << 29)) /* SYSCALL, NX, LM (+ baseline) */

static void cpuid_compat(struct x86_cpuid_entry *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct x86_cpuid_entry *c = &e[i];
		switch (c->function) {
		case 1:
			c->ecx &= COMPAT_L1_ECX;
			c->edx &= COMPAT_L1_EDX;
			break;
		case 7:
			c->ebx = c->ecx = c->edx = 0;
			if (c->index == 0)
				c->eax = 0;
			break;
		case 0xd:
			if (c->index == 0) {
				c->eax = 3; /* x87 and SSE state only */
				c->edx = 0;
				c->ebx = c->ecx = 512 + 64;
			} else if (c->index == 1) {
				c->eax = 0; /* no XSAVEOPT/XSAVEC/XSAVES */
				c->ebx = c->ecx = c->edx = 0;
			} else {
				c->eax = c->ebx = c->ecx = c->edx = 0;
			}
			break;
		case 0x80000001:
			c->ecx &= COMPAT_X1_ECX;
			c->edx &= COMPAT_X1_EDX | (COMPAT_L1_EDX & 0x0183f3ffu);
			break;
		default:
			break;
		}
	}
}

int hv_cpuid_build(struct hv_partition *hv, const struct x86_cpuid_entry *host, unsigned nhost, bool processor_compat,
		   struct x86_cpuid_entry *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nhost && n < max; i++)
		if (host[i].function < 0x40000000u || host[i].function > 0x4fffffffu)
			out[n++] = host[i]; /* KVM's own signature leaves go: the guest sees Hyper-V */
	if (processor_compat)
		cpuid_compat(out, n);
	int r = hv_cpuid_fill(hv, out, &n, max);
	return r ? r : (int)n;
}

void hv_cpuid_set_vcpu(struct x86_cpuid_entry *e, unsigned n, unsigned index, unsigned nr_vcpus)
{
	for (unsigned i = 0; i < n; i++) {
		struct x86_cpuid_entry *c = &e[i];
		if (c->function == 1) {
			c->ebx = (c->ebx & 0x0000ffffu) | index << 24 | (nr_vcpus & 0xff) << 16;
			c->edx |= 1u << 28; /* HTT: the logical count in EBX is valid */
		}
		if (c->function == 0xb || c->function == 0x1f)
			c->edx = index;
	}
}
