/* Prints the CPUID bits that decide what the guest kernel uses: leaf 1 ECX/EDX, leaf 7 EBX/ECX/EDX,
 * leaf 0xD's supported XCR0. For the processor-compatibility and SIMD-masking tests. */
#include "guest.h"

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	uint32_t a[4], b[4], c[4];
	cpuid(1, 0, a);
	cpuid(7, 0, b);
	cpuid(0xd, 0, c);
	gprintf("cpuid: 1.ecx=%x 1.edx=%x 7.ebx=%x 7.ecx=%x 7.edx=%x d.eax=%x\n", (uint64_t)a[2], (uint64_t)a[3],
		(uint64_t)b[1], (uint64_t)b[2], (uint64_t)b[3], (uint64_t)c[0]);
	guest_poweroff();
}
