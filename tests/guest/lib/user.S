/* Ring 3 for test guests: a GDT with user segments and a TSS, SYSCALL/SYSRET through STAR/LSTAR,
 * and user_call(fn) which runs fn at CPL 3; fn returns to ring 0 with SYSCALL (RAX = 60: finish). */
	.text
	.code64
	.globl user_setup, user_call, user_syscall_cpl, user_syscalls
/* void user_setup(void): load the GDT (0x10 kernel code, 0x18 kernel data, 0x23 user32, 0x2b user
 * data, 0x33 user code, 0x38 TSS), STAR/LSTAR/SFMASK, EFER.SCE. Linux uses the same selectors. */
user_setup:
	movabs $tss, %rax
	movabs $gdt_tss, %rdx
	mov %ax, 2(%rdx)
	shr $16, %rax
	mov %al, 4(%rdx)
	mov %ah, 7(%rdx)
	shr $16, %rax
	mov %eax, 8(%rdx)
	movabs $gdtr, %rax
	lgdt (%rax)
	mov $0x38, %ax
	ltr %ax
	mov $0xC0000081, %ecx          /* STAR: kernel CS 0x10, user base 0x20 */
	xor %eax, %eax
	mov $0x00230010, %edx
	wrmsr
	mov $0xC0000082, %ecx          /* LSTAR */
	movabs $syscall_entry, %rax
	mov %rax, %rdx
	shr $32, %rdx
	wrmsr
	mov $0xC0000084, %ecx          /* SFMASK: IF, TF, DF, AC */
	mov $0x47700, %eax
	xor %edx, %edx
	wrmsr
	mov $0xC0000080, %ecx          /* EFER.SCE */
	rdmsr
	or $1, %eax
	wrmsr
	ret

/* void user_call(void (*fn)(void), void *user_stack_top) */
user_call:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	movabs $kernel_rsp, %rax
	mov %rsp, (%rax)
	movabs $tss, %rax
	mov %rsp, 4(%rax)              /* RSP0 for exceptions from ring 3 */
	pushq $0x2b                     /* SS */
	pushq %rsi                      /* RSP */
	pushq $0x3002                   /* RFLAGS: IOPL 3 (ports usable), IF 0 */
	pushq $0x33                     /* CS */
	pushq %rdi                      /* RIP */
	iretq

syscall_entry:
	/* Record the privilege level this handler really runs at (CS RPL), then either return to
	 * ring 3 (any RAX but 60) or finish user_call. */
	mov %cs, %r8
	and $3, %r8d
	movabs $user_syscall_cpl, %r9
	mov %r8d, (%r9)
	movabs $user_syscalls, %r9
	incl (%r9)
	cmp $60, %eax
	je 1f
	sysretq
1:	movabs $kernel_rsp, %rax
	mov (%rax), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

	.data
	.p2align 4
gdt:
	.quad 0, 0
	.quad 0x00af9b000000ffff        /* 0x10 kernel code */
	.quad 0x00cf93000000ffff        /* 0x18 kernel data */
	.quad 0x00cffb000000ffff        /* 0x20 user code32 */
	.quad 0x00cff3000000ffff        /* 0x28 user data */
	.quad 0x00affb000000ffff        /* 0x30 user code64 */
gdt_tss:
	.quad 0x0000890000000067        /* 0x38 TSS (base filled in) */
	.quad 0
gdt_end:
gdtr:
	.word gdt_end - gdt - 1
	.quad gdt
	.p2align 4
tss:
	.space 104
kernel_rsp:
	.quad 0
user_syscall_cpl:
	.long 0xff
user_syscalls:
	.long 0
	.section .note.GNU-stack,"",@progbits
