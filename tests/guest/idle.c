/* Runs until turned off from outside, printing a heartbeat: for control-socket tests. */
#include "guest.h"

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	gputs("idle: running\n");
	for (uint64_t n = 0;; n++) {
		if (n % 200000 == 0)
			mmio_write32(0xFEBF0000, (uint32_t)n); /* an exit now and then */
		cpu_relax();
	}
}
