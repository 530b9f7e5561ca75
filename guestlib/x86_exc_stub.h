/* One exception entry stub, for the firmware (firmware/entry.S) and the test guests
 * (tests/guest/lib/start.S): an assembler macro, for .S files only.
 *
 * x86_exc_stub PREFIX, N, COMMON defines the global symbol PREFIX<N>, which pushes a zero where the CPU
 * pushes no error code for vector N (so every frame has the same shape), then N, and jumps to COMMON.
 */
#ifndef GUESTLIB_X86_EXC_STUB_H
#define GUESTLIB_X86_EXC_STUB_H
#ifndef __ASSEMBLER__
#error "x86_exc_stub.h is for assembler sources"
#endif

	.macro x86_exc_stub prefix, n, common
	.globl \prefix\n
\prefix\n:
	/* #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC and #SX push an error code. */
	.if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	push $0
	.endif
	push $\n
	jmp \common
	.endm

#endif
