/* Firmware entry: the VMM starts the boot vCPU here in 64-bit mode with RDI = the hand-off block.
 * Also the exception stubs: every vector below 32 lands in fw_exception() (firmware/fw.c), which
 * reports the fault to the host instead of letting the vCPU triple-fault silently. */
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

	.macro exc_noerr n
	.globl fw_exc\n
fw_exc\n: push $0
	push $\n
	jmp exc_common
	.endm
	.macro exc_err n
	.globl fw_exc\n
fw_exc\n: push $\n
	jmp exc_common
	.endm
	exc_noerr 0
	exc_noerr 1
	exc_noerr 2
	exc_noerr 3
	exc_noerr 4
	exc_noerr 5
	exc_noerr 6
	exc_noerr 7
	exc_err 8
	exc_noerr 9
	exc_err 10
	exc_err 11
	exc_err 12
	exc_err 13
	exc_err 14
	exc_noerr 15
	exc_noerr 16
	exc_err 17
	exc_noerr 18
	exc_noerr 19
	exc_noerr 20
	exc_err 21

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
