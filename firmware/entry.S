/* Firmware entry: the VMM starts the boot vCPU here in 64-bit mode with RDI = the hand-off block.
 * Also the exception stubs: every vector below 32 lands in fw_exception() (firmware/fw.c), which
 * reports the fault to the host instead of letting the vCPU triple-fault silently. */
#include "x86_exc_stub.h"

	.section .text.entry, "ax"
	.globl _start
	.code64
_start:
	cli
	cld
	/* UEFI 2.10 2.3.4: SSE usable by applications (CR4.OSFXSR, OSXMMEXCPT; CR0.MP set, EM clear),
	 * x87 and MXCSR in their default states. The firmware itself is built without SSE. */
	mov %cr4, %rax
	or $0x600, %rax
	mov %rax, %cr4
	mov %cr0, %rax
	and $~0x4, %rax
	or $0x2, %rax
	mov %rax, %cr0
	fninit
	lea fw_stack_top(%rip), %rsp
	xor %ebp, %ebp
	call fw_main
1:	hlt
	jmp 1b

	.text
exc_common:
	/* stack: vector, error code, RIP, CS, RFLAGS, RSP, SS */
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	mov %rsp, %rdi
	and $-16, %rsp
	call fw_exception
2:	hlt
	jmp 2b

	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21
	x86_exc_stub fw_exc, \n, exc_common
	.endr

	/* Every interrupt vector (32-255): the boot-services tick, a VMBus SINT, a spurious one. It
	 * only ends the interrupt at the local APIC (xAPIC EOI register; a write with no interrupt in
	 * service does nothing): its whole purpose is to wake a HLT (firmware/fw.c, fw_tick_start). */
	.globl fw_irq
fw_irq:
	push %rax
	mov $0xfee000b0, %eax
	movl $0, (%rax)
	pop %rax
	iretq

	.section .rodata
	.globl fw_exc_table
	.balign 8
fw_exc_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21
	.quad fw_exc\n
	.endr

	.bss
	.balign 16
	.globl fw_stack_bottom
fw_stack_bottom:
	.skip 131072 /* UEFI 2.10 2.3.4: at least 128 KiB for applications */
	.globl fw_stack_top
fw_stack_top:
	.section .note.GNU-stack, "", @progbits
