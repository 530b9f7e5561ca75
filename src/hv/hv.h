/* Hyper-V TLFS emulation: CPUID leaves 0x40000000+, synthetic MSRs, hypercall page, crash MSRs.
 *
 * Pure state machines over guest memory: no KVM here. The VMM routes MSR exits in
 * 0x40000000-0x400001FF to hv_msr_read/hv_msr_write and reads the CPUID entries from hv_cpuid_fill.
 * Thread safety: partition-wide state is protected by hv->lock; per-VP state is touched only by its
 * own vCPU thread.
 */
#ifndef GEN2VM_HV_HV_H
#define GEN2VM_HV_HV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/x86.h"

#define HV_MSR_FIRST 0x40000000u
#define HV_MSR_COUNT 0x200u
#define HV_HYPERCALL_PORT 0x91 /* the hypercall page's OUT port (not 0x80, io_delay) */

struct hv_vp {
	uint32_t index;
	uint64_t vp_assist;
	uint64_t scontrol, siefp, simp;
	uint64_t sint[16];
};

struct hv_partition;

/* What the partition asks of the VMM. */
struct hv_ops {
	void *opaque;
	/* The guest reported a crash through the crash MSRs; msg may be NULL. */
	void (*crash)(void *opaque, const uint64_t p[5], const char *msg);
};

struct hv_partition {
	pthread_mutex_t lock;
	const struct guest_mem *mem;
	struct hv_ops ops;
	unsigned nr_vps;
	uint64_t tsc_hz, apic_hz;
	uint64_t start_ns; /* TIME_REF_COUNT origin */
	uint64_t guest_os_id;
	uint64_t hypercall;
	uint64_t crash_p[5];
	bool crashed;
};

void hv_partition_init(struct hv_partition *hv, const struct guest_mem *mem, unsigned nr_vps, uint64_t tsc_hz,
		       uint64_t apic_hz, const struct hv_ops *ops);
void hv_vp_init(struct hv_vp *vp, uint32_t index);

/* Appends the hypervisor CPUID leaves to e[*n] (room for `max` entries in all) and sets the
 * hypervisor-present bit of leaf 1. Returns 0 or -ENOSPC. */
int hv_cpuid_fill(struct hv_partition *hv, struct x86_cpuid_entry *e, unsigned *n, unsigned max);

/* Synthetic MSR access for one VP. Return 0, or -ENOENT/-EINVAL: the guest gets #GP, as on Hyper-V. */
int hv_msr_read(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t *value);
int hv_msr_write(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t value);

#endif
