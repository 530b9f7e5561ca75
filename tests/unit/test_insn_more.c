/* Completions found by booting Debian's 6.1 kernel here (popcnt, clac/stac...), hand-computed.
 * KVM's emulator on PVM hosts rejects it (seen booting Debian's 6.1 kernel). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "guest_pt.h"
#include "vmm/insn.h"
#include "vmm/pagewalk.h"
#include "vmm/x86.h"

#define CODE 0x400000ull
#define DATA 0x600000ull

static struct guest_mem mem;
static struct guest_pt pt;

static int setup(void **state)
{
	assert_int_equal(guest_mem_init(&mem, 16ull << 20), 0);
	assert_int_equal(guest_pt_init(&pt, &mem, 4, 0x100000, 0x100000), 0);
	assert_int_equal(guest_pt_map(&pt, CODE, CODE, 1, 0x3), 0);
	assert_int_equal(guest_pt_map(&pt, DATA, DATA, 1, 0x3), 0);
	return 0;
}

static int teardown(void **state)
{
	guest_mem_destroy(&mem);
	return 0;
}

static struct insn_cpu cpu64(void)
{
	struct insn_cpu c = { .rip = CODE, .rflags = 0x2, .cr0 = X86_CR0_PE | X86_CR0_PG, .cr3 = pt.root,
			      .cr4 = X86_CR4_PAE, .efer = X86_EFER_LME | X86_EFER_LMA, .cs_l = true };
	return c;
}

static void run(struct insn_cpu *c, const uint8_t *code, size_t n, struct insn_outcome *o)
{
	memcpy(guest_mem_ptr(&mem, CODE, 16), code, n);
	assert_int_equal(insn_complete(c, &mem, code, 1, NULL, o), 0); /* KVM reported 1 byte */
}

static void test_popcnt_reg64(void **state)
{
	static const uint8_t code[] = { 0xf3, 0x48, 0x0f, 0xb8, 0xc7 }; /* popcnt rax, rdi */
	struct insn_cpu c = cpu64();
	c.gpr[X86_RDI] = 0xF0F0000000000001ull; /* 9 bits */
	c.rflags |= 0x8d5; /* CF PF AF ZF SF OF all set: popcnt clears them but ZF */
	struct insn_outcome o;
	run(&c, code, sizeof(code), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_string_equal(o.mnemonic, "popcnt");
	assert_int_equal(c.gpr[X86_RAX], 9);
	assert_int_equal(c.rip, CODE + 5);
	assert_int_equal(c.rflags, 0x2);
}

static void test_popcnt_zero_mem32(void **state)
{
	static const uint8_t code[] = { 0xf3, 0x0f, 0xb8, 0x0e }; /* popcnt ecx, [rsi] */
	struct insn_cpu c = cpu64();
	c.gpr[X86_RSI] = DATA;
	c.gpr[X86_RCX] = 0xffffffffffffffffull;
	memset(guest_mem_ptr(&mem, DATA, 8), 0, 8);
	struct insn_outcome o;
	run(&c, code, sizeof(code), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_int_equal(c.gpr[X86_RCX], 0); /* 32-bit destination zero-extends */
	assert_int_equal(c.rflags, 0x2 | 0x40);
}

static void test_tzcnt_lzcnt(void **state)
{
	static const uint8_t tz[] = { 0xf3, 0x48, 0x0f, 0xbc, 0xc3 }; /* tzcnt rax, rbx */
	static const uint8_t lz[] = { 0xf3, 0x0f, 0xbd, 0xc3 };       /* lzcnt eax, ebx */
	static const uint8_t lz16[] = { 0x66, 0xf3, 0x0f, 0xbd, 0xc3 }; /* lzcnt ax, bx */
	struct insn_cpu c = cpu64();
	struct insn_outcome o;
	c.gpr[X86_RBX] = 0x100;
	run(&c, tz, sizeof(tz), &o);
	assert_int_equal(c.gpr[X86_RAX], 8);
	assert_int_equal(c.rflags & 0x41, 0);
	c = cpu64();
	c.gpr[X86_RBX] = 0;
	run(&c, tz, sizeof(tz), &o);
	assert_int_equal(c.gpr[X86_RAX], 64);
	assert_int_equal(c.rflags & 0x41, 0x01); /* CF: source zero */
	c = cpu64();
	c.gpr[X86_RBX] = 0x00010000;
	run(&c, lz, sizeof(lz), &o);
	assert_int_equal(c.gpr[X86_RAX], 15);
	c = cpu64();
	c.gpr[X86_RBX] = 0x8000;
	c.gpr[X86_RAX] = 0x1234567800000000ull | 0xabcd;
	run(&c, lz16, sizeof(lz16), &o);
	assert_int_equal(c.gpr[X86_RAX], 0x1234567800000000ull); /* 16-bit write keeps the rest */
	assert_int_equal(c.rflags & 0x41, 0x40);               /* ZF: result zero */
	assert_int_equal(c.rip, CODE + 5);
}

static void test_popcnt_fault(void **state)
{
	static const uint8_t code[] = { 0xf3, 0x48, 0x0f, 0xb8, 0x06 }; /* popcnt rax, [rsi] */
	struct insn_cpu c = cpu64();
	c.gpr[X86_RSI] = 0x7000000; /* not mapped */
	struct insn_outcome o;
	run(&c, code, sizeof(code), &o);
	assert_int_equal(o.status, INSN_EXCEPTION);
	assert_int_equal(o.vector, 14);
	assert_int_equal(o.cr2, 0x7000000);
	assert_int_equal(c.rip, CODE);
}

static void test_clac_stac(void **state)
{
	static const uint8_t clac[] = { 0x0f, 0x01, 0xca }, stac[] = { 0x0f, 0x01, 0xcb };
	struct insn_cpu c = cpu64();
	struct insn_outcome o;
	run(&c, stac, sizeof(stac), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_int_equal(c.rflags, 0x2 | (1u << 18));
	assert_int_equal(c.rip, CODE + 3);
	c.rip = CODE;
	run(&c, clac, sizeof(clac), &o);
	assert_string_equal(o.mnemonic, "clac");
	assert_int_equal(c.rflags, 0x2);
	c = cpu64();
	c.cpl = 3; /* all bytes given: the supervisor code page is not fetched at CPL 3 */
	assert_int_equal(insn_complete(&c, &mem, clac, sizeof(clac), NULL, &o), 0);
	assert_int_equal(o.status, INSN_EXCEPTION);
	assert_int_equal(o.vector, 6); /* #UD outside ring 0 */
}

static void test_rdrand_fence(void **state)
{
	static const uint8_t rdrand32[] = { 0x0f, 0xc7, 0xf0 };       /* rdrand eax */
	static const uint8_t rdseed64[] = { 0x48, 0x0f, 0xc7, 0xf9 }; /* rdseed rcx */
	static const uint8_t mfence[] = { 0x0f, 0xae, 0xf0 };
	struct insn_cpu c = cpu64();
	struct insn_outcome o;
	c.gpr[X86_RAX] = 0xffffffff00000000ull;
	c.rflags |= 0x40;
	run(&c, rdrand32, sizeof(rdrand32), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_int_equal(c.gpr[X86_RAX] >> 32, 0); /* 32-bit destination zero-extends */
	assert_int_equal(c.rflags, 0x2 | 0x1);     /* CF=1, ZF cleared */
	c = cpu64();
	run(&c, rdseed64, sizeof(rdseed64), &o);
	assert_string_equal(o.mnemonic, "rdseed");
	assert_int_equal(c.rip, CODE + 4);
	c = cpu64();
	run(&c, mfence, sizeof(mfence), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_int_equal(c.rip, CODE + 3);
}

static void test_fwait(void **state)
{
	static const uint8_t fwait[] = { 0x9b };
	struct insn_cpu c = cpu64();
	struct insn_outcome o;
	run(&c, fwait, sizeof(fwait), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_string_equal(o.mnemonic, "fwait");
	assert_int_equal(c.rip, CODE + 1);
	c = cpu64();
	c.cr0 |= X86_CR0_TS | X86_CR0_MP; /* lazy FPU switch pending: #NM, RIP unchanged */
	run(&c, fwait, sizeof(fwait), &o);
	assert_int_equal(o.status, INSN_EXCEPTION);
	assert_int_equal(o.vector, 7);
	assert_int_equal(c.rip, CODE);
	c = cpu64();
	c.cr0 |= X86_CR0_TS; /* TS without MP: fwait does not fault */
	run(&c, fwait, sizeof(fwait), &o);
	assert_int_equal(o.status, INSN_DONE);
}

static void test_ldmxcsr_stmxcsr(void **state)
{
	static const uint8_t ld[] = { 0x0f, 0xae, 0x54, 0x24, 0x04 }; /* ldmxcsr [rsp+4] (Linux's) */
	static const uint8_t st[] = { 0x0f, 0xae, 0x1e };             /* stmxcsr [rsi] */
	uint8_t area[1024] __attribute__((aligned(64))) = { 0 };
	struct insn_xcomp comp[64] = { { 0 } };
	struct insn_xstate xs = { .area = area, .size = sizeof(area), .comp = comp };
	area[24] = 0x80, area[25] = 0x1f; /* MXCSR 0x1f80 */
	area[28] = 0xff, area[29] = 0xff; /* MXCSR_MASK 0xffff */
	struct insn_cpu c = cpu64();
	c.cr4 |= X86_CR4_OSFXSR;
	c.gpr[X86_RSP] = DATA;
	uint32_t v = 0x9fc0; /* all exceptions masked, flush-to-zero */
	memcpy(guest_mem_ptr(&mem, DATA + 4, 4), &v, 4);
	memcpy(guest_mem_ptr(&mem, CODE, 16), ld, sizeof(ld));
	struct insn_outcome o;
	assert_int_equal(insn_complete(&c, &mem, ld, 1, &xs, &o), 0);
	assert_int_equal(o.status, INSN_DONE);
	assert_string_equal(o.mnemonic, "ldmxcsr");
	assert_true(xs.dirty);
	assert_int_equal(area[24] | area[25] << 8, 0x9fc0);
	assert_int_equal(area[512] & 2, 2); /* XSTATE_BV.SSE so that KVM loads MXCSR */
	assert_int_equal(c.rip, CODE + 5);
	/* stmxcsr reads it back. */
	c.rip = CODE;
	c.gpr[X86_RSI] = DATA + 64;
	memcpy(guest_mem_ptr(&mem, CODE, 16), st, sizeof(st));
	assert_int_equal(insn_complete(&c, &mem, st, 1, &xs, &o), 0);
	assert_int_equal(o.status, INSN_DONE);
	memcpy(&v, guest_mem_ptr(&mem, DATA + 64, 4), 4);
	assert_int_equal(v, 0x9fc0);
	/* Reserved bits: #GP(0), state unchanged. */
	c.rip = CODE;
	v = 0x10000;
	memcpy(guest_mem_ptr(&mem, DATA + 4, 4), &v, 4);
	memcpy(guest_mem_ptr(&mem, CODE, 16), ld, sizeof(ld));
	assert_int_equal(insn_complete(&c, &mem, ld, 1, &xs, &o), 0);
	assert_int_equal(o.status, INSN_EXCEPTION);
	assert_int_equal(o.vector, 13);
	assert_int_equal(area[24] | area[25] << 8, 0x9fc0);
}


/* SSE moves UEFI programs use (systemd-boot: movq, movaps, movups, pxor, movhps...), on the XMM
 * registers of the XSAVE legacy region (offset 160). Hand-computed. */
static int sse_run(struct insn_cpu *c, struct insn_xstate *xs, const uint8_t *code, size_t n,
		   struct insn_outcome *o)
{
	c->rip = CODE;
	memcpy(guest_mem_ptr(&mem, CODE, 16), code, n);
	assert_int_equal(insn_complete(c, &mem, code, 1, xs, o), 0);
	return o->status;
}

static void test_sse_moves(void **state)
{
	uint8_t area[1024] __attribute__((aligned(64))) = { 0 };
	struct insn_xcomp comp[64] = { { 0 } };
	struct insn_xstate xs = { .area = area, .size = sizeof(area), .comp = comp };
	struct insn_cpu c = cpu64();
	c.cr4 |= X86_CR4_OSFXSR;
	struct insn_outcome o;
	uint8_t *xmm0 = area + 160, *xmm1 = area + 176, *xmm9 = area + 160 + 16 * 9;
	/* 66 48 0F 6E C0 movq xmm0, rax (what stopped systemd-boot): zero-extended. */
	static const uint8_t movq_in[] = { 0x66, 0x48, 0x0f, 0x6e, 0xc0 };
	memset(xmm0, 0xee, 16);
	c.gpr[X86_RAX] = 0x1122334455667788ull;
	assert_int_equal(sse_run(&c, &xs, movq_in, sizeof(movq_in), &o), INSN_DONE);
	assert_string_equal(o.mnemonic, "movq");
	assert_int_equal(c.rip, CODE + 5);
	uint64_t q[2];
	memcpy(q, xmm0, 16);
	assert_true(q[0] == 0x1122334455667788ull && q[1] == 0);
	assert_int_equal(area[512] & 2, 2);
	/* 66 0F 6C C0 punpcklqdq xmm0, xmm0: both halves the low qword. */
	static const uint8_t punpck[] = { 0x66, 0x0f, 0x6c, 0xc0 };
	assert_int_equal(sse_run(&c, &xs, punpck, sizeof(punpck), &o), INSN_DONE);
	memcpy(q, xmm0, 16);
	assert_true(q[0] == 0x1122334455667788ull && q[1] == 0x1122334455667788ull);
	/* 0F 11 06 movups [rsi], xmm0 at an odd address. */
	static const uint8_t movups_st[] = { 0x0f, 0x11, 0x06 };
	c.gpr[X86_RSI] = DATA + 3;
	assert_int_equal(sse_run(&c, &xs, movups_st, sizeof(movups_st), &o), INSN_DONE);
	assert_memory_equal(guest_mem_ptr(&mem, DATA + 3, 16), xmm0, 16);
	/* 44 0F 28 0E movaps xmm9, [rsi]: misaligned -> #GP(0), nothing changed. */
	static const uint8_t movaps_ld[] = { 0x44, 0x0f, 0x28, 0x0e };
	assert_int_equal(sse_run(&c, &xs, movaps_ld, sizeof(movaps_ld), &o), INSN_EXCEPTION);
	assert_int_equal(o.vector, 13);
	assert_int_equal(c.rip, CODE);
	c.gpr[X86_RSI] = DATA + 32;
	memset(guest_mem_ptr(&mem, DATA + 32, 16), 0x5a, 16);
	assert_int_equal(sse_run(&c, &xs, movaps_ld, sizeof(movaps_ld), &o), INSN_DONE);
	assert_int_equal(xmm9[0], 0x5a);
	assert_int_equal(xmm9[15], 0x5a);
	/* 66 0F EF C9 pxor xmm1, xmm1: zero. */
	memset(xmm1, 0x33, 16);
	static const uint8_t pxor[] = { 0x66, 0x0f, 0xef, 0xc9 };
	assert_int_equal(sse_run(&c, &xs, pxor, sizeof(pxor), &o), INSN_DONE);
	static const uint8_t zero[16] = { 0 };
	assert_memory_equal(xmm1, zero, 16);
	/* 0F 16 46 08 movhps xmm0, [rsi+8]: the high qword from memory, low qword kept. */
	static const uint8_t movhps[] = { 0x0f, 0x16, 0x46, 0x08 };
	uint64_t hi = 0xa1a2a3a4a5a6a7a8ull;
	memcpy(guest_mem_ptr(&mem, DATA + 40, 8), &hi, 8);
	assert_int_equal(sse_run(&c, &xs, movhps, sizeof(movhps), &o), INSN_DONE);
	memcpy(q, xmm0, 16);
	assert_true(q[0] == 0x1122334455667788ull && q[1] == hi);
	/* 66 48 0F 7E C1 movq rcx, xmm0. */
	static const uint8_t movq_out[] = { 0x66, 0x48, 0x0f, 0x7e, 0xc1 };
	assert_int_equal(sse_run(&c, &xs, movq_out, sizeof(movq_out), &o), INSN_DONE);
	assert_true(c.gpr[X86_RCX] == 0x1122334455667788ull);
	/* Without CR4.OSFXSR SSE is #UD; with CR0.TS it is #NM. */
	c.cr4 &= ~X86_CR4_OSFXSR;
	assert_int_equal(sse_run(&c, &xs, pxor, sizeof(pxor), &o), INSN_EXCEPTION);
	assert_int_equal(o.vector, 6);
	c.cr4 |= X86_CR4_OSFXSR;
	c.cr0 |= X86_CR0_TS;
	assert_int_equal(sse_run(&c, &xs, pxor, sizeof(pxor), &o), INSN_EXCEPTION);
	assert_int_equal(o.vector, 7);
}

static void test_lsl_rdpid(void **state)
{
	/* Linux's per-CPU segment: GDT entry 15, a DPL 3 data descriptor whose limit is node<<12 | cpu. */
	static const uint8_t lsl[] = { 0x48, 0x0f, 0x03, 0xc0 }; /* lsl rax, rax (paranoid_entry's) */
	static const uint8_t rdpid[] = { 0xf3, 0x0f, 0xc7, 0xf8 }; /* rdpid rax */
	uint64_t gdt[16] = { 0 };
	gdt[15] = 0x0040f50000000000ull | 0x1003; /* limit 0x01003: node 1, cpu 3 */
	memcpy(guest_mem_ptr(&mem, DATA, sizeof(gdt)), gdt, sizeof(gdt));
	struct insn_cpu c = cpu64();
	c.gdt_base = DATA;
	c.gdt_limit = sizeof(gdt) - 1;
	c.gpr[X86_RAX] = 0x7b;
	struct insn_outcome o;
	run(&c, lsl, sizeof(lsl), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_string_equal(o.mnemonic, "lsl");
	assert_int_equal(c.gpr[X86_RAX], 0x1003);
	assert_true(c.rflags & 0x40);
	assert_int_equal(c.rip, CODE + 4);
	/* Granularity: a 4 KiB-granular limit is scaled. */
	gdt[15] |= 1ull << 55;
	memcpy(guest_mem_ptr(&mem, DATA, sizeof(gdt)), gdt, sizeof(gdt));
	c = cpu64();
	c.gdt_base = DATA;
	c.gdt_limit = sizeof(gdt) - 1;
	c.gpr[X86_RAX] = 0x7b;
	run(&c, lsl, sizeof(lsl), &o);
	assert_int_equal(c.gpr[X86_RAX], 0x1003fff);
	/* Null selector, beyond the GDT, an LDT selector: ZF=0, destination unchanged. */
	static const uint64_t bad[] = { 0x0, 0x83, 0x7f };
	for (unsigned i = 0; i < 3; i++) {
		c = cpu64();
		c.gdt_base = DATA;
		c.gdt_limit = sizeof(gdt) - 1;
		c.gpr[X86_RAX] = bad[i];
		c.rflags |= 0x40;
		run(&c, lsl, sizeof(lsl), &o);
		assert_int_equal(o.status, INSN_DONE);
		assert_int_equal(c.gpr[X86_RAX], bad[i]);
		assert_false(c.rflags & 0x40);
	}
	c = cpu64();
	c.tsc_aux = 0x1003;
	run(&c, rdpid, sizeof(rdpid), &o);
	assert_int_equal(o.status, INSN_DONE);
	assert_string_equal(o.mnemonic, "rdpid");
	assert_int_equal(c.gpr[X86_RAX], 0x1003);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_popcnt_reg64), cmocka_unit_test(test_popcnt_zero_mem32),
		cmocka_unit_test(test_tzcnt_lzcnt), cmocka_unit_test(test_popcnt_fault),
		cmocka_unit_test(test_clac_stac), cmocka_unit_test(test_rdrand_fence), cmocka_unit_test(test_fwait), cmocka_unit_test(test_ldmxcsr_stmxcsr), cmocka_unit_test(test_lsl_rdpid), cmocka_unit_test(test_sse_moves),
	};
	return cmocka_run_group_tests_name("insn_more", tests, setup, teardown);
}
