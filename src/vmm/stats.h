/* The VM's run statistics (--stats): exits to userspace by kind, instructions gen2vm completed,
 * unclaimed accesses, time to the first guest instruction and the VMM's own memory. */
#ifndef GEN2VM_VMM_STATS_H
#define GEN2VM_VMM_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "vmm/vm.h"

/* Prints one "gen2vm-stats: key=value ..." line to f for a VM that has stopped. start_ns: the
 * process's start (clock_mono_ns clock), end_ns: now. The memory figures come from /proc/self/status:
 * guest RAM is shared memory, so what the VMM itself costs is the anonymous and file-backed part. */
void vm_stats_print(const struct vm *vm, uint64_t start_ns, uint64_t end_ns, FILE *f);

#endif
