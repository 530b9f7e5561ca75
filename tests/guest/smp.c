/* SMP: the BSP starts every AP with INIT-SIPI-SIPI; each AP reads its VP index through an MSR
 * exit on its own vCPU and checks in. */
#include "guest.h"

/* Check-in order is not APIC-id order: count each VP index seen. */
static volatile unsigned seen[64];
static volatile unsigned reported;

static void ap_main(unsigned index)
{
	uint64_t v = ~0ull;
	if (rdmsr_safe(0x40000002, &v) == 0 && v < 64)
		__atomic_add_fetch(&seen[v], 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&reported, 1, __ATOMIC_SEQ_CST);
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	if (ncpus > 1 && guest_start_aps(ncpus, ap_main)) {
		gputs("smp: APs did not start\n");
		return 1;
	}
	for (unsigned long spin = 0; reported < ncpus - 1 && spin < 100000000ul; spin++)
		cpu_relax();
	for (unsigned i = 1; i < ncpus; i++) {
		if (seen[i] != 1) {
			gprintf("smp: VP index %u reported %u times\n", (uint64_t)i, (uint64_t)seen[i]);
			return 2;
		}
	}
	gprintf("smp: %u cpus up\n", (uint64_t)ncpus);
	guest_poweroff();
}
