/* The guest's CPUID policy: which of the host's leaves a VM sees, Hyper-V's processor compatibility
 * mode, the Hyper-V leaves, and the per-vCPU APIC ids. Pure: the VMM reads the host's supported
 * leaves from KVM and hands each vCPU the table built here. */
#ifndef GEN2VM_HV_CPUID_H
#define GEN2VM_HV_CPUID_H

#include <stdbool.h>

#include "hv/hv.h"
#include "vmm/x86.h"

/* Room for the table hv_cpuid_build makes (the host's leaves and the Hyper-V ones). */
#define HV_CPUID_MAX 256u

/* Builds the table every vCPU of the partition starts from into out (room for max entries): the
 * host's supported leaves without other hypervisors' (0x40000000-0x4fffffff), limited to what every
 * x86-64 host since about 2008 offers when processor_compat is set (so a VM can move between hosts,
 * as Set-VMProcessor -CompatibilityForMigrationEnabled does), then the Hyper-V leaves
 * (hv_cpuid_fill). Host leaves beyond max are dropped. Returns the entry count or -ENOSPC. */
int hv_cpuid_build(struct hv_partition *hv, const struct x86_cpuid_entry *host, unsigned nhost, bool processor_compat,
		   struct x86_cpuid_entry *out, unsigned max);

/* Makes a table from hv_cpuid_build vCPU `index`'s of nr_vcpus (in place): its initial APIC id and
 * the logical processor count in leaf 1, its x2APIC id in leaves 0xB and 0x1F. */
void hv_cpuid_set_vcpu(struct x86_cpuid_entry *e, unsigned n, unsigned index, unsigned nr_vcpus);

#endif
