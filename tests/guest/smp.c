/* SMP: the BSP starts every AP with INIT-SIPI-SIPI; each AP reads its VP index through an MSR
 * exit on its own vCPU and checks in. */
#include "guest.h"

static volatile uint64_t vp_index[64];

static void ap_main(unsigned index)
{
	uint64_t v = ~0ull;
	if (index < 64 && rdmsr_safe(0x40000002, &v) == 0)
		vp_index[index] = v + 1;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	if (ncpus > 1 && guest_start_aps(ncpus, ap_main)) {
		gputs("smp: APs did not start\n");
		return 1;
	}
	for (unsigned i = 1; i < ncpus; i++) {
		for (unsigned long spin = 0; !vp_index[i] && spin < 100000000ul; spin++)
			cpu_relax();
		if (vp_index[i] != i + 1) {
			gprintf("smp: AP %u reported VP index %x\n", (uint64_t)i, vp_index[i] - 1);
			return 2;
		}
	}
	gprintf("smp: %u cpus up\n", (uint64_t)ncpus);
	guest_poweroff();
}
