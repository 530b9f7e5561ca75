/* Port I/O, MMIO and MSR exits, the hypercall page, and instructions KVM's emulator rejects
 * (int3, cmpxchg16b, xsave/xrstor), then an ACPI power-off. */
#include "hvguest.h"

#define TESTDEV_MMIO 0xFEBF0000ull

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t xsave_area[4096] __attribute__((aligned(64)));
static __int128 pair_storage __attribute__((aligned(16)));
static uint64_t *const pair = (uint64_t *)&pair_storage;

#define CHECK(cond, code)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			gprintf("basic: check %u failed: %s\n", (uint64_t)(code), #cond);          \
			return code;                                                               \
		}                                                                                  \
	} while (0)

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	gprintf("basic: hello, %u cpu(s)\n", (uint64_t)ncpus);

	/* Port I/O: an unclaimed port reads all ones and is not fatal. */
	CHECK(inb(0x2f0) == 0xff, 1);
	CHECK(inl(0x2f0) == 0xffffffffu, 2);
	/* MMIO exits: the test device's scratch registers, then an unclaimed address. */
	mmio_write32(TESTDEV_MMIO, 0x12345678);
	mmio_write32(TESTDEV_MMIO + 4, 0xcafef00d);
	CHECK(mmio_read32(TESTDEV_MMIO) == 0x12345678, 3);
	CHECK(mmio_read32(TESTDEV_MMIO + 4) == 0xcafef00d, 4);
	CHECK(mmio_read32(0xF0001000) == 0xffffffffu, 5);
	/* MSR exits to the VMM's Hyper-V code. */
	uint64_t v = 1;
	CHECK(rdmsr_safe(HV_MSR_VP_INDEX, &v) == 0 && v == 0, 6);
	CHECK(wrmsr_safe(HV_MSR_GUEST_OS_ID, 0x8100000000060100ull) == 0, 7);
	CHECK(rdmsr_safe(HV_MSR_GUEST_OS_ID, &v) == 0 && v == 0x8100000000060100ull, 8);
	CHECK(rdmsr_safe(0x400000F0, &v) == -1, 9); /* unknown synthetic MSR: #GP as on Hyper-V */
	CHECK(wrmsr_safe(HV_MSR_VP_INDEX, 5) == -1, 10);  /* read-only */
	/* The hypercall page: an unknown call code returns HV_STATUS_INVALID_HYPERCALL_CODE (2). */
	CHECK(wrmsr_safe(HV_MSR_HYPERCALL, (uint64_t)hypercall_page | 1) == 0, 11);
	CHECK(hypercall_page[0] == 0xf3 && hypercall_page[3] == 0xfa, 12); /* ENDBR64 */
	CHECK(hvguest_call(hypercall_page, 0xffff, 0, 0) == 2, 13);
	/* RSDP. */
	CHECK(rsdp && !__builtin_memcmp((void *)rsdp, "RSD PTR ", 8), 14);

	/* int3: KVM rejects it; the VMM injects #BP and our handler returns past it. */
	guest_last_exception = 0;
	__asm__ volatile("int3" ::: "memory");
	CHECK(guest_last_exception == 4, 15);
	/* cmpxchg16b, both outcomes. */
	pair[0] = 1;
	pair[1] = 2;
	uint64_t lo = 1, hi = 2;
	bool ok;
	__asm__ volatile("lock cmpxchg16b %[m]; sete %[ok]"
			 : [m] "+m"(pair_storage), "+a"(lo), "+d"(hi), [ok] "=q"(ok)
			 : "b"(0x33ull), "c"(0x44ull)
			 : "memory", "cc");
	CHECK(ok && pair[0] == 0x33 && pair[1] == 0x44, 16);
	lo = 7;
	hi = 8;
	__asm__ volatile("cmpxchg16b %[m]; sete %[ok]"
			 : [m] "+m"(pair_storage), "+a"(lo), "+d"(hi), [ok] "=q"(ok)
			 : "b"(0x55ull), "c"(0x66ull)
			 : "memory", "cc");
	CHECK(!ok && lo == 0x33 && hi == 0x44 && pair[0] == 0x33, 17);
	/* xsave/xrstor of x87+SSE: enable OSXSAVE, save, change XMM0, restore, read XMM0 back. */
	uint64_t cr4;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | (1ull << 18) | (1ull << 9)));
	__asm__ volatile("xsetbv" ::"c"(0), "a"(3), "d"(0));
	uint32_t marker[4] = { 0x11111111, 0x22222222, 0x33333333, 0x44444444 }, back[4] = { 0 };
	__asm__ volatile("movdqu %0, %%xmm0" ::"m"(marker) : "memory");
	__asm__ volatile("xsave %0" : "=m"(xsave_area) : "a"(3), "d"(0) : "memory");
	CHECK(((uint64_t *)xsave_area)[64] & 2, 18); /* XSTATE_BV has SSE */
	CHECK(((uint32_t *)(xsave_area + 160))[0] == 0x11111111, 19);
	static const uint32_t zero[4];
	__asm__ volatile("movdqu %0, %%xmm0" ::"m"(zero) : "memory"); /* KVM's emulator has no pxor */
	__asm__ volatile("xrstor %0" ::"m"(xsave_area), "a"(3), "d"(0) : "memory");
	__asm__ volatile("movdqu %%xmm0, %0" : "=m"(back));
	CHECK(back[0] == 0x11111111 && back[3] == 0x44444444, 20);

	gputs("basic: all checks passed\n");
	guest_poweroff();
}
