/* Ring 3 and back: SYSCALL from user mode must enter the LSTAR handler at CPL 0, and SYSRET return.
 * This is what every guest OS's first system call does. */
#include "guest.h"

void user_setup(void);
void user_call(void (*fn)(void), void *stack_top);
extern volatile unsigned user_syscall_cpl, user_syscalls;

static uint8_t ustack[8192] __attribute__((aligned(16)));

static void user_main(void)
{
	__asm__ volatile("mov $1, %%eax; syscall" ::: "rax", "rcx", "r11", "r8", "r9", "memory");
	__asm__ volatile("mov $60, %%eax; syscall" ::: "rax", "rcx", "r11", "r8", "r9", "memory");
	for (;;)
		;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	/* The VMM's identity map is supervisor-only: open it to ring 3 (U bit at every level). */
	uint64_t *pt = (uint64_t *)0x9000;
	for (unsigned i = 0; i < 6 * 512; i++)
		if (pt[i] & 1)
			pt[i] |= 4;
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
	gputs("usermode: page tables open to ring 3\n");
	user_setup();
	gputs("usermode: GDT, TSS and SYSCALL MSRs set\n");
	user_call(user_main, ustack + sizeof(ustack));
	gprintf("usermode: %u system calls, handler ran at CPL %u\n", (uint64_t)user_syscalls,
		(uint64_t)user_syscall_cpl);
	return user_syscalls == 2 && user_syscall_cpl == 0 ? 0 : 1;
}
