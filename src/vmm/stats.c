#include "vmm/stats.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A "Field: N kB" line of /proc/self/status, in KiB (0 when absent). */
static uint64_t stats_status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t v = 0;
	size_t fl = strlen(field);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, fl) && line[fl] == ':')
			v = strtoull(line + fl + 1, NULL, 10);
	fclose(f);
	return v;
}

void vm_stats_print(const struct vm *vm, uint64_t start_ns, uint64_t end_ns, FILE *f)
{
	static const char *const names[VCPU_EXIT__COUNT] = {
		"intr", "io", "mmio", "msr_read", "msr_write", "emulation", "shutdown", "hlt",
		"system_event", "ioapic_eoi", "internal", "fail_entry", "other",
	};
	uint64_t tot[VCPU_EXIT__COUNT] = { 0 }, completed = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		for (int k = 0; k < VCPU_EXIT__COUNT; k++)
			tot[k] += vm->vcpus[i].exits[k];
		completed += vm->vcpus[i].completed_insns;
	}
	uint64_t first = vm->vcpus[0].first_run_ns;
	fprintf(f, "gen2vm-stats: start_to_first_instruction_us=%" PRIu64 " run_time_ms=%" PRIu64,
		first > start_ns ? (first - start_ns) / 1000 : 0, first ? (end_ns - first) / 1000000 : 0);
	for (int k = 0; k < VCPU_EXIT__COUNT; k++)
		if (tot[k])
			fprintf(f, " exits_%s=%" PRIu64, names[k], tot[k]);
	fprintf(f, " completed_instructions=%" PRIu64 " unclaimed_pio=%lu unclaimed_mmio=%lu", completed,
		atomic_load(&vm->pio.unclaimed_reads) + atomic_load(&vm->pio.unclaimed_writes),
		atomic_load(&vm->mmio.unclaimed_reads) + atomic_load(&vm->mmio.unclaimed_writes));
	fprintf(f, " vmm_rss_kib=%" PRIu64 " guest_ram_touched_kib=%" PRIu64 "\n",
		stats_status_kib("RssAnon") + stats_status_kib("RssFile"), stats_status_kib("RssShmem"));
}
