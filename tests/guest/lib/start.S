/* Entry of freestanding test guests: the VMM enters in 64-bit mode with RDI = number of vCPUs,
 * RSI = RSDP address, RSP = a stack in low memory. Also the 16-bit AP trampoline that
 * guest_start_aps() copies to 0x8000. */
#include "x86_exc_stub.h"

	.section .text.start, "ax"
	.globl _start
	.code64
_start:
	cli
	movabs $bsp_stack_top, %rsp
	call guest_main
	mov %eax, %edi
	call guest_exit

/* Common exception entry: vector pushed by the per-vector stubs. A #GP (13) whose faulting
 * instruction is rdmsr/wrmsr (0F 32 / 0F 30) is recorded and skipped. */
	.globl guest_exc_common
guest_exc_common:
	push %rax
	push %rbx
	mov 16(%rsp), %rax            /* vector */
	inc %eax
	movabs $guest_last_exception, %rbx
	mov %eax, (%rbx)
	cmp $4, %eax                  /* #BP (int3) is a trap: just return */
	je 4f
	cmp $14, %eax                 /* #GP is vector 13 */
	jne 1f
	mov 32(%rsp), %rbx            /* RIP (after vector and error code) */
	cmpb $0x0f, (%rbx)
	jne 1f
	addq $2, 32(%rsp)
	pop %rbx
	pop %rax
	add $16, %rsp                 /* vector and error code */
	iretq
4:	pop %rbx
	pop %rax
	add $16, %rsp
	iretq
1:	/* any other exception: report vector, error code, RIP and CS, then exit with 0x100 + vector */
	mov 16(%rsp), %rdi               /* vector */
	mov 24(%rsp), %rsi               /* error code */
	mov 32(%rsp), %rdx               /* RIP */
	mov 40(%rsp), %rcx               /* CS */
	and $-16, %rsp
	call guest_fatal_exception
2:	hlt
	jmp 2b

	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
	x86_exc_stub guest_exc, \n, guest_exc_common
	.endr

/* AP trampoline, copied to 0x8000 and entered in real mode at 0800:0000 by the SIPI. */
	.globl ap_tramp_start, ap_tramp_end
	.code16
ap_tramp_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (ap_gdtr - ap_tramp_start)
	mov $0x20, %eax               /* CR4.PAE */
	mov %eax, %cr4
	mov $0x9000, %eax             /* the VMM's identity map of the first 4 GiB */
	mov %eax, %cr3
	mov $0xC0000080, %ecx         /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov $0x80000011, %eax         /* PG | ET | PE */
	mov %eax, %cr0
	ljmpl $0x10, $(0x8000 + ap64 - ap_tramp_start)
	.code64
ap64:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	movabs $ap_next_index, %rbx
	mov $1, %eax
	lock xadd %eax, (%rbx)         /* index 1..n-1 */
	mov %eax, %edi
	mov %rax, %rsp
	shl $12, %rsp
	movabs $ap_stacks, %rbx
	add %rbx, %rsp
	add $4096, %rsp
	movabs $guest_ap_entry, %rax
	call *%rax
3:	cli
	hlt
	jmp 3b
	.p2align 3
ap_gdtr:
	.word 31
	.quad 0x500
ap_tramp_end:

	.bss
	.p2align 12
	.globl ap_stacks
ap_stacks:
	.space 4096 * 64
bsp_stack:
	.space 16384
bsp_stack_top:
	.section .note.GNU-stack,"",@progbits
