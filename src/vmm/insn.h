/* Completion of instructions that KVM's emulator rejects (KVM_EXIT_INTERNAL_ERROR, emulation
 * failure): decode the instruction, execute it against an abstract vCPU state and guest memory
 * (reached through a walk of the guest's page tables), and say what the VMM must do next.
 * Pure: no KVM, no I/O; the caller moves state between KVM and these structs.
 *
 * Completed instructions:
 *   CC int3           -> INSN_EXCEPTION #BP (3), trap: RIP advanced past the instruction
 *   F1 int1 / icebp   -> INSN_EXCEPTION #DB (1), trap: RIP advanced
 *   CE into          -> #OF (4) trap when RFLAGS.OF=1, else INSN_DONE; #UD in 64-bit mode
 *   CD ib int n       -> INSN_SOFT_INT vector n, RIP advanced, length set (for soft injection)
 *   0F C7 /1 cmpxchg8b m64, REX.W cmpxchg16b m128 (LOCK or not). The memory update is one host
 *                       compare-and-swap on the guest page when the operand is naturally aligned,
 *                       so it is atomic against other vCPU threads; a misaligned cmpxchg8b is
 *                       done under a process-wide lock (atomic only against other completions).
 *   0F AE /0 fxsave, /1 fxrstor, /4 xsave, /5 xrstor, /6 xsaveopt (REX.W: the *64 forms)
 *   0F C7 /4 xsavec, /5 xsaves, /3 xrstors
 *   0F 01 D0 xgetbv
 *   0F 03 lsl (GDT descriptors; LDT selectors give ZF=0), F3 0F C7 /7 rdpid
 *   SSE (legacy encodings, on the XMM registers of the XSAVE state): movups/movupd/movss/movsd,
 *                       movaps/movapd, movdqa/movdqu, movd/movq (66 0F 6E/7E, F3 0F 7E, 66 0F D6 to
 *                       memory), pxor/xorps/xorpd, pand/andps/andpd, por/orps/orpd, punpcklqdq/
 *                       punpckhqdq, movhps/movhpd/movlhps, movlps/movlpd/movhlps: what UEFI programs
 *                       (systemd-boot, GRUB, shim) use for copies and zeroing
 * Everything else: INSN_UNSUPPORTED, with a mnemonic from a small table and the length when the
 * generic length decoder can tell it.
 *
 * Semantics the caller relies on:
 *   INSN_DONE       write back gpr/rip/rflags (and the XSAVE buffer when xs->dirty, with
 *                   KVM_SET_XSAVE); rip is already past the instruction.
 *   INSN_EXCEPTION  inject out->vector (with out->error_code when has_error; set CR2 = out->cr2
 *                   first when vector is 14). When out->trap is false (a fault: #PF, #GP, #UD,
 *                   #NM, #SS) cpu->rip is unchanged and no register or memory was modified.
 *                   When out->trap is true (#BP, #DB from int1, #OF from into) cpu->rip has been
 *                   advanced and must be written back before injecting.
 *   INSN_SOFT_INT   cpu->rip advanced; inject software interrupt out->vector (length in out->length).
 *   INSN_UNSUPPORTED nothing was modified; out->reason says why, out->mnemonic names it when known.
 *
 * Limits (documented, not guessed at): segment limits and the #AC alignment check are not
 * modelled (flat segments assumed; linear = base + offset); protection keys are not checked;
 * FCS/FDS of the 32-bit FXSAVE format are written as 0 (KVM's buffer keeps the 64-bit format,
 * as on CPUs that deprecate FCS/FDS); supervisor XSAVE components without room in the buffer are
 * treated as being in their initial configuration.
 */
#ifndef GEN2VM_VMM_INSN_H
#define GEN2VM_VMM_INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

enum insn_gpr { INSN_RAX, INSN_RCX, INSN_RDX, INSN_RBX, INSN_RSP, INSN_RBP, INSN_RSI, INSN_RDI };
enum insn_seg { INSN_ES, INSN_CS, INSN_SS, INSN_DS, INSN_FS, INSN_GS };

struct insn_cpu {
	uint64_t gpr[16]; /* rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
	uint64_t rip, rflags;
	uint64_t cr0, cr2, cr3, cr4, efer;
	uint64_t seg_base[6]; /* es cs ss ds fs gs; only fs/gs count in 64-bit mode */
	uint8_t cpl;
	bool cs_l, cs_db;   /* CS.L and CS.D/B */
	uint64_t xcr0, xss; /* XCR0 and IA32_XSS */
	uint8_t maxphyaddr; /* 0 means 52 */
	uint64_t gdt_base;  /* GDTR, for lsl */
	uint16_t gdt_limit;
	uint64_t tsc_aux;   /* IA32_TSC_AUX, for rdpid */
};

/* One XSAVE state component as CPUID.(EAX=0DH, ECX=i) reports it: EAX = size, EBX = offset in
 * the standard format (0 for supervisor components), ECX bit 1 = 64-byte aligned when compacted. */
struct insn_xcomp {
	uint32_t size, offset;
	bool align64;
};

/* The vCPU's extended state, in the standard (non-compacted) layout KVM_GET_XSAVE returns:
 * legacy region 0..511 in the 64-bit FXSAVE format, header at 512 (XSTATE_BV is the XINUSE the
 * instructions observe), component i >= 2 at comp[i].offset. comp has 64 entries (0 and 1 are
 * ignored: the legacy region is fixed). A component whose [offset, offset+size) does not fit in
 * size bytes is one the buffer cannot hold. The completer sets dirty when it changed area. */
struct insn_xstate {
	uint8_t *area;
	size_t size;
	const struct insn_xcomp *comp;
	bool dirty;
};

enum insn_status { INSN_DONE, INSN_EXCEPTION, INSN_SOFT_INT, INSN_UNSUPPORTED };

struct insn_outcome {
	enum insn_status status;
	uint8_t vector;      /* INSN_EXCEPTION / INSN_SOFT_INT */
	bool has_error;
	bool trap;           /* INSN_EXCEPTION: true when RIP was advanced (see above) */
	uint32_t error_code;
	uint64_t cr2;        /* vector 14 only */
	uint8_t length;      /* instruction length, 0 when not decodable */
	char mnemonic[24];   /* "" when unknown */
	const char *reason;  /* INSN_UNSUPPORTED: static text, never NULL then */
	uint8_t bytes[15];   /* the instruction bytes seen (given and fetched) */
	uint8_t nbytes;
};

/* Decodes and completes the instruction at CS.base+RIP. bytes/nbytes are what KVM reported (may
 * be NULL/0 or short: the rest is fetched through the page walk, and a fetch fault is reported as
 * a #PF outcome). xs may be NULL, then the XSAVE family is unsupported. Fills *out for every
 * status. Returns 0, or -EINVAL when cpu, mem or out is NULL. */
int insn_complete(struct insn_cpu *cpu, const struct guest_mem *mem, const uint8_t *bytes,
		  size_t nbytes, struct insn_xstate *xs, struct insn_outcome *out);

/* Writes a one-line description for an error message, e.g.
 * "RIP=0xffffffff81000000 bytes 0f 01 c1 (vmcall, 3 bytes): unsupported instruction".
 * Returns the snprintf-style length. */
int insn_outcome_format(const struct insn_outcome *out, uint64_t rip, char *buf, size_t size);

#endif
