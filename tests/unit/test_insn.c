#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "guest_pt.h"
#include "vmm/insn.h"
#include "vmm/memory.h"
#include "vmm/pagewalk.h"

/* Guest layout used by every test (4-level paging, CPL 0, 64-bit mode):
 *   0x100000-0x1FFFFF  page tables
 *   0x200000-0xDFFFFF  identity-mapped with 2 MiB pages (code at 0x400000, data at 0x500000+)
 *   0x70000000         4 KiB page -> GPA 0xE00000, writable
 *   0x70001000         not present
 *   0x70002000         4 KiB page -> GPA 0xE01000, read-only */
#define CODE 0x400000ull
#define DATA 0x500000ull
#define PG_RW 0x70000000ull
#define PG_NP 0x70001000ull
#define PG_RO 0x70002000ull
#define ZF (1ull << 6)
#define CF (1ull << 0)

struct fx {
	struct guest_mem m;
	struct guest_pt pt;
	struct insn_cpu cpu;
	struct insn_outcome out;
	uint8_t area[4096];
	struct insn_xcomp comp[64];
	struct insn_xstate xs;
};

static int setup(void **state)
{
	static struct fx f;
	memset(&f, 0, sizeof(f));
	if (guest_mem_init(&f.m, 16ull << 20) || guest_pt_init(&f.pt, &f.m, 4, 0x100000, 0x100000))
		return -1;
	for (uint64_t a = 0x200000; a < 0xE00000; a += 0x200000)
		guest_pt_map(&f.pt, a, a, 2, 0x3);
	guest_pt_map(&f.pt, PG_RW, 0xE00000, 1, 0x3);
	guest_pt_map(&f.pt, PG_RO, 0xE01000, 1, 0x1);
	f.cpu.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP;
	f.cpu.cr4 = X86_CR4_PAE | X86_CR4_OSXSAVE;
	f.cpu.efer = X86_EFER_LMA | X86_EFER_NXE | (1ull << 8);
	f.cpu.cr3 = f.pt.root;
	f.cpu.cs_l = true;
	f.cpu.rip = CODE;
	f.cpu.rflags = 0x2;
	f.cpu.xcr0 = 0x2E7; /* x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU */
	/* Standard offsets and sizes as CPUID leaf 0xD reports them on AVX-512 parts. */
	f.comp[2] = (struct insn_xcomp){ 256, 576, false };
	f.comp[5] = (struct insn_xcomp){ 64, 1088, false };
	f.comp[6] = (struct insn_xcomp){ 512, 1152, false };
	f.comp[7] = (struct insn_xcomp){ 1024, 1664, false };
	f.comp[9] = (struct insn_xcomp){ 8, 2688, false };
	f.xs = (struct insn_xstate){ f.area, sizeof(f.area), f.comp, false };
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	guest_mem_destroy(&f->m);
	return 0;
}

static uint8_t *gpa_ptr(struct fx *f, uint64_t gpa)
{
	uint8_t *p = guest_mem_ptr(&f->m, gpa, 1);
	assert_non_null(p);
	return p;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void wr64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* Puts the instruction in guest memory at RIP as well, and runs it with the bytes given. */
static void run(struct fx *f, const uint8_t *b, size_t n)
{
	memcpy(gpa_ptr(f, CODE), b, n);
	f->xs.dirty = false;
	assert_int_equal(insn_complete(&f->cpu, &f->m, b, n, &f->xs, &f->out), 0);
}

#define RUN(f, ...)                                                                                \
	do {                                                                                       \
		static const uint8_t b_[] = { __VA_ARGS__ };                                       \
		run(f, b_, sizeof(b_));                                                            \
	} while (0)

static void assert_fault(struct fx *f, uint8_t vec, uint32_t ec)
{
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, vec);
	assert_true(f->out.has_error);
	assert_int_equal(f->out.error_code, ec);
	assert_false(f->out.trap);
	assert_int_equal(f->cpu.rip, CODE);
}

/* ---- traps and software interrupts ---- */

static void test_int3(void **state)
{
	struct fx *f = *state;
	RUN(f, 0xCC);
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, 3);
	assert_false(f->out.has_error);
	assert_true(f->out.trap);
	assert_int_equal(f->out.length, 1);
	assert_int_equal(f->cpu.rip, CODE + 1);
	assert_string_equal(f->out.mnemonic, "int3");
}

static void test_int3_fetched_from_memory(void **state)
{
	struct fx *f = *state;
	*gpa_ptr(f, CODE) = 0xCC;
	assert_int_equal(insn_complete(&f->cpu, &f->m, NULL, 0, &f->xs, &f->out), 0);
	assert_int_equal(f->out.vector, 3);
	assert_int_equal(f->cpu.rip, CODE + 1);
	assert_int_equal(f->out.nbytes, 1);
	/* RIP on a page that is not present: an instruction-fetch #PF (I set since NXE=1). */
	f->cpu.rip = PG_NP + 0x10;
	assert_int_equal(insn_complete(&f->cpu, &f->m, NULL, 0, &f->xs, &f->out), 0);
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, 14);
	assert_int_equal(f->out.error_code, PF_ERR_I);
	assert_int_equal(f->out.cr2, PG_NP + 0x10);
	assert_int_equal(f->cpu.rip, PG_NP + 0x10);
}

static void test_int_n_and_int1(void **state)
{
	struct fx *f = *state;
	RUN(f, 0xCD, 0x80);
	assert_int_equal(f->out.status, INSN_SOFT_INT);
	assert_int_equal(f->out.vector, 0x80);
	assert_int_equal(f->out.length, 2);
	assert_int_equal(f->cpu.rip, CODE + 2);
	f->cpu.rip = CODE;
	RUN(f, 0xF1);
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, 1);
	assert_true(f->out.trap);
	assert_int_equal(f->cpu.rip, CODE + 1);
	/* into is #UD in 64-bit mode (a fault: RIP stays). */
	f->cpu.rip = CODE;
	RUN(f, 0xCE);
	assert_int_equal(f->out.vector, 6);
	assert_false(f->out.trap);
	assert_int_equal(f->cpu.rip, CODE);
}

/* ---- cmpxchg16b / cmpxchg8b ---- */

static void test_cmpxchg16b_success(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = gpa_ptr(f, 0x600020);
	wr64(mem, 0x1111111111111111ull);
	wr64(mem + 8, 0x2222222222222222ull);
	f->cpu.gpr[INSN_RBP] = 0x600000;
	f->cpu.gpr[INSN_RAX] = 0x1111111111111111ull;
	f->cpu.gpr[INSN_RDX] = 0x2222222222222222ull;
	f->cpu.gpr[INSN_RBX] = 0xAAAAAAAAAAAAAAAAull;
	f->cpu.gpr[INSN_RCX] = 0xBBBBBBBBBBBBBBBBull;
	f->cpu.rflags = 0x2 | CF;
	RUN(f, 0xF0, 0x48, 0x0F, 0xC7, 0x4D, 0x20); /* lock cmpxchg16b [rbp+0x20] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->out.length, 6);
	assert_string_equal(f->out.mnemonic, "lock cmpxchg16b");
	assert_int_equal(f->cpu.rip, CODE + 6);
	assert_int_equal(f->cpu.rflags, 0x2 | CF | ZF);
	assert_int_equal(rd64(mem), 0xAAAAAAAAAAAAAAAAull);
	assert_int_equal(rd64(mem + 8), 0xBBBBBBBBBBBBBBBBull);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0x1111111111111111ull);
	assert_int_equal(f->cpu.gpr[INSN_RDX], 0x2222222222222222ull);
}

static void test_cmpxchg16b_failure(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = gpa_ptr(f, 0x600020);
	wr64(mem, 0x1111111111111111ull);
	wr64(mem + 8, 0x3333333333333333ull);
	f->cpu.gpr[INSN_RBP] = 0x600000;
	f->cpu.gpr[INSN_RAX] = 0x1111111111111111ull;
	f->cpu.gpr[INSN_RDX] = 0x2222222222222222ull;
	f->cpu.gpr[INSN_RBX] = 0xAAAAAAAAAAAAAAAAull;
	f->cpu.gpr[INSN_RCX] = 0xBBBBBBBBBBBBBBBBull;
	f->cpu.rflags = 0x2 | ZF | CF;
	RUN(f, 0x48, 0x0F, 0xC7, 0x4D, 0x20); /* cmpxchg16b [rbp+0x20], no lock */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->cpu.rflags, 0x2 | CF);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0x1111111111111111ull);
	assert_int_equal(f->cpu.gpr[INSN_RDX], 0x3333333333333333ull);
	assert_int_equal(rd64(mem), 0x1111111111111111ull);
	assert_int_equal(rd64(mem + 8), 0x3333333333333333ull);
	assert_int_equal(f->cpu.rip, CODE + 5);
}

static void test_cmpxchg16b_faults(void **state)
{
	struct fx *f = *state;
	/* Not 16-byte aligned: #GP(0), nothing changed. */
	f->cpu.gpr[INSN_RBP] = 0x600008;
	f->cpu.gpr[INSN_RAX] = 7;
	RUN(f, 0xF0, 0x48, 0x0F, 0xC7, 0x4D, 0x20);
	assert_fault(f, 13, 0);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 7);
	/* Not-present page: #PF, W set (the access is a write even if the compare fails). */
	f->cpu.gpr[INSN_RBP] = PG_NP;
	RUN(f, 0xF0, 0x48, 0x0F, 0xC7, 0x4D, 0x20);
	assert_fault(f, 14, PF_ERR_W);
	assert_int_equal(f->out.cr2, PG_NP + 0x20);
	/* Read-only page at CPL 0 with CR0.WP=1. */
	f->cpu.gpr[INSN_RBP] = PG_RO;
	RUN(f, 0xF0, 0x48, 0x0F, 0xC7, 0x4D, 0x20);
	assert_fault(f, 14, PF_ERR_P | PF_ERR_W);
	assert_int_equal(f->out.cr2, PG_RO + 0x20);
	/* Register operand: #UD. */
	RUN(f, 0x48, 0x0F, 0xC7, 0xC8);
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, 6);
	assert_int_equal(f->cpu.rip, CODE);
}

static void test_cmpxchg16b_rip_relative_and_gs(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = gpa_ptr(f, 0x600010);
	memset(mem, 0, 16);
	f->cpu.gpr[INSN_RBX] = 5;
	/* cmpxchg16b [rip+0x200008]: RIP after the 8-byte instruction is 0x400008 -> 0x600010. */
	RUN(f, 0x48, 0x0F, 0xC7, 0x0D, 0x08, 0x00, 0x20, 0x00);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->out.length, 8);
	assert_int_equal(rd64(mem), 5);
	/* gs: cmpxchg16b [0x1000] with GS.base 0x5FF010 -> 0x600010. */
	f->cpu.rip = CODE;
	f->cpu.seg_base[INSN_GS] = 0x5FF010;
	f->cpu.gpr[INSN_RAX] = 5;
	f->cpu.gpr[INSN_RBX] = 6;
	RUN(f, 0x65, 0x48, 0x0F, 0xC7, 0x0C, 0x25, 0x00, 0x10, 0x00, 0x00);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->out.length, 10);
	assert_int_equal(rd64(mem), 6);
	assert_true(f->cpu.rflags & ZF);
}

static void test_cmpxchg8b(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = gpa_ptr(f, 0x600000);
	wr64(mem, 0x1111111122222222ull);
	/* Success: compares EDX:EAX only; RAX/RDX keep their upper halves. */
	f->cpu.gpr[INSN_RSI] = 0x600000;
	f->cpu.gpr[INSN_RAX] = 0xFFFFFFFF22222222ull;
	f->cpu.gpr[INSN_RDX] = 0xEEEEEEEE11111111ull;
	f->cpu.gpr[INSN_RBX] = 0x99999999DDDDDDDDull;
	f->cpu.gpr[INSN_RCX] = 0x88888888CCCCCCCCull;
	RUN(f, 0xF0, 0x0F, 0xC7, 0x0E); /* lock cmpxchg8b [rsi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_string_equal(f->out.mnemonic, "lock cmpxchg8b");
	assert_true(f->cpu.rflags & ZF);
	assert_int_equal(rd64(mem), 0xCCCCCCCCDDDDDDDDull);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0xFFFFFFFF22222222ull);
	assert_int_equal(f->cpu.gpr[INSN_RDX], 0xEEEEEEEE11111111ull);
	/* Failure: EDX:EAX loaded, zero-extended into RDX/RAX. */
	f->cpu.rip = CODE;
	RUN(f, 0xF0, 0x0F, 0xC7, 0x0E);
	assert_false(f->cpu.rflags & ZF);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0xDDDDDDDDull);
	assert_int_equal(f->cpu.gpr[INSN_RDX], 0xCCCCCCCCull);
	assert_int_equal(rd64(mem), 0xCCCCCCCCDDDDDDDDull);
	/* Misaligned, crossing into the next page (still completes, under the split lock). */
	uint8_t *edge = gpa_ptr(f, 0x600FFC);
	wr64(edge, 0x0102030405060708ull);
	f->cpu.rip = CODE;
	f->cpu.gpr[INSN_RSI] = 0x600FFC;
	f->cpu.gpr[INSN_RAX] = 0x05060708;
	f->cpu.gpr[INSN_RDX] = 0x01020304;
	f->cpu.gpr[INSN_RBX] = 0xA0A0A0A0;
	f->cpu.gpr[INSN_RCX] = 0xB0B0B0B0;
	RUN(f, 0x0F, 0xC7, 0x0E);
	assert_true(f->cpu.rflags & ZF);
	assert_int_equal(rd64(edge), 0xB0B0B0B0A0A0A0A0ull);
}

static void test_cmpxchg8b_32bit_and_real_mode(void **state)
{
	struct fx *f = *state;
	/* 32-bit protected mode, paging off: cmpxchg8b [ebx]. */
	f->cpu.cr0 = X86_CR0_PE;
	f->cpu.efer = 0;
	f->cpu.cs_l = false;
	f->cpu.cs_db = true;
	f->cpu.gpr[INSN_RBX] = 0x700000;
	f->cpu.gpr[INSN_RAX] = 0;
	f->cpu.gpr[INSN_RDX] = 0;
	wr64(gpa_ptr(f, 0x700000), 0x1234);
	RUN(f, 0x0F, 0xC7, 0x0B);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_false(f->cpu.rflags & ZF);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0x1234);
	assert_int_equal(f->cpu.rip, CODE + 3);
	/* Real mode: cmpxchg8b [bx] with DS.base 0x10000 -> linear 0x10100. */
	f->cpu.cr0 = 0;
	f->cpu.cs_db = false;
	f->cpu.rip = 0x7C00;
	f->cpu.seg_base[INSN_DS] = 0x10000;
	f->cpu.gpr[INSN_RBX] = 0xFFFF0100; /* only BX counts */
	f->cpu.gpr[INSN_RAX] = 0x42;
	f->cpu.gpr[INSN_RDX] = 0;
	f->cpu.gpr[INSN_RCX] = 0;
	wr64(gpa_ptr(f, 0x10100), 0x42);
	static const uint8_t b[] = { 0x0F, 0xC7, 0x0F };
	assert_int_equal(insn_complete(&f->cpu, &f->m, b, 3, &f->xs, &f->out), 0);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_true(f->cpu.rflags & ZF);
	assert_int_equal(rd64(gpa_ptr(f, 0x10100)), 0xFFFF0100ull);
	assert_int_equal(f->cpu.rip, 0x7C03);
}

static void test_into_32bit(void **state)
{
	struct fx *f = *state;
	f->cpu.cr0 = X86_CR0_PE;
	f->cpu.efer = 0;
	f->cpu.cs_l = false;
	f->cpu.cs_db = true;
	f->cpu.rflags = 0x2 | (1ull << 11); /* OF */
	RUN(f, 0xCE);
	assert_int_equal(f->out.status, INSN_EXCEPTION);
	assert_int_equal(f->out.vector, 4);
	assert_true(f->out.trap);
	assert_int_equal(f->cpu.rip, CODE + 1);
	f->cpu.rip = CODE;
	f->cpu.rflags = 0x2;
	RUN(f, 0xCE);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->cpu.rip, CODE + 1);
}

/* Two threads each add 1 to a 128-bit counter in guest RAM with lock cmpxchg16b loops, the way
 * two vCPUs would; a lost update would show as a final value below the number of successes. */
struct race {
	struct fx *f;
	unsigned wins;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	static const uint8_t b[] = { 0xF0, 0x48, 0x0F, 0xC7, 0x0E }; /* lock cmpxchg16b [rsi] */
	volatile uint64_t *ctr = guest_mem_ptr(&r->f->m, 0x600000, 16);
	for (unsigned i = 0; i < 20000; i++) {
		struct insn_cpu c = r->f->cpu;
		struct insn_outcome o;
		c.gpr[INSN_RSI] = 0x600000;
		c.gpr[INSN_RAX] = ctr[0];
		c.gpr[INSN_RDX] = ctr[1];
		c.gpr[INSN_RBX] = c.gpr[INSN_RAX] + 1;
		c.gpr[INSN_RCX] = c.gpr[INSN_RDX] + (c.gpr[INSN_RBX] == 0);
		if (insn_complete(&c, &r->f->m, b, sizeof(b), NULL, &o) || o.status != INSN_DONE)
			return NULL;
		if (c.rflags & ZF)
			r->wins++;
	}
	return NULL;
}

static void test_cmpxchg16b_atomic_across_threads(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = gpa_ptr(f, 0x600000);
	wr64(mem, 0xFFFFFFFFFFFFF000ull); /* carries into the high half part-way */
	wr64(mem + 8, 0);
	struct race r[2] = { { f, 0 }, { f, 0 } };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	unsigned wins = r[0].wins + r[1].wins;
	assert_true(wins >= 20000);
	unsigned __int128 v = ((unsigned __int128)rd64(mem + 8) << 64) | rd64(mem);
	assert_true(v == (unsigned __int128)0xFFFFFFFFFFFFF000ull + wins);
}

/* ---- XSAVE family ---- */

/* x87: FCW 027F FSW 0800 FTW 01 FOP 0123 FIP 1122334455667788 FDP 99AABBCCDDEEFF00;
 * MXCSR 1FA0 MASK FFFF; ST bytes A1; XMMn bytes 0x10+n; AVX bytes 33; opmask bytes 44;
 * XSTATE_BV as given. */
static void std_state(struct fx *f, uint64_t xstate_bv)
{
	uint8_t *a = f->area;
	memset(a, 0, sizeof(f->area));
	a[0] = 0x7F, a[1] = 0x02, a[2] = 0x00, a[3] = 0x08, a[4] = 0x01, a[6] = 0x23, a[7] = 0x01;
	wr64(a + 8, 0x1122334455667788ull);
	wr64(a + 16, 0x99AABBCCDDEEFF00ull);
	wr64(a + 24, 0x0000FFFF00001FA0ull);
	memset(a + 32, 0xA1, 128);
	for (int i = 0; i < 16; i++)
		memset(a + 160 + 16 * i, 0x10 + i, 16);
	memset(a + 576, 0x33, 256);
	memset(a + 1088, 0x44, 64);
	wr64(a + 512, xstate_bv);
}

static uint8_t *xarea(struct fx *f, uint64_t old_bv)
{
	uint8_t *g = gpa_ptr(f, 0x800000);
	memset(g, 0xEE, 8192);
	wr64(g + 512, old_bv);
	f->cpu.gpr[INSN_RDI] = 0x800000;
	return g;
}

static void test_xsave64_standard(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t *g = xarea(f, 0x182);
	f->cpu.gpr[INSN_RAX] = 0x5; /* x87 + AVX */
	f->cpu.gpr[INSN_RDX] = 0;
	RUN(f, 0x48, 0x0F, 0xAE, 0x27); /* xsave64 [rdi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_string_equal(f->out.mnemonic, "xsave64");
	assert_int_equal(f->cpu.rip, CODE + 4);
	static const uint8_t x87[24] = { 0x7F, 0x02, 0x00, 0x08, 0x01, 0x00, 0x23, 0x01,
					 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
					 0x00, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99 };
	assert_memory_equal(g, x87, 24);
	/* MXCSR and MXCSR_MASK are saved for RFBM[2] even without RFBM[1]; the XMMs are not. */
	assert_int_equal(rd64(g + 24), 0x0000FFFF00001FA0ull);
	assert_int_equal(g[32], 0xA1);
	assert_int_equal(g[159], 0xA1);
	assert_int_equal(g[160], 0xEE);
	assert_int_equal(g[576], 0x33);
	assert_int_equal(g[831], 0x33);
	assert_int_equal(g[1088], 0xEE);
	/* XSTATE_BV: RFBM bits from XINUSE (0x27 & 5), the others as they were (0x182). */
	assert_int_equal(rd64(g + 512), 0x187);
	assert_int_equal(g[520], 0xEE); /* XCOMP_BV untouched */
	assert_int_equal(g[416], 0xEE);
	assert_int_equal(g[464], 0xEE);
	assert_false(f->xs.dirty);
}

static void test_xsave_32bit_format(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t *g = xarea(f, 0x182);
	f->cpu.gpr[INSN_RAX] = 0x3; /* x87 + SSE */
	RUN(f, 0x0F, 0xAE, 0x27);    /* xsave [rdi] */
	assert_string_equal(f->out.mnemonic, "xsave");
	static const uint8_t ipdp[16] = { 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0,
					  0x00, 0xFF, 0xEE, 0xDD, 0, 0, 0, 0 };
	assert_memory_equal(g + 8, ipdp, 16);
	assert_int_equal(g[160], 0x10);
	assert_int_equal(g[415], 0x1F);
	assert_int_equal(g[576], 0xEE);
	assert_int_equal(rd64(g + 512), 0x183);
}

static void test_xsaveopt_init_optimization(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x23); /* AVX not in use */
	uint8_t *g = xarea(f, 0x186);
	f->cpu.gpr[INSN_RAX] = 0x4;
	RUN(f, 0x48, 0x0F, 0xAE, 0x37); /* xsaveopt64 */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(g[576], 0xEE);          /* not written */
	assert_int_equal(rd64(g + 512), 0x182);  /* XSTATE_BV[2] = XINUSE[2] = 0 */
	assert_int_equal(rd64(g + 24), 0x0000FFFF00001FA0ull);
	/* Plain XSAVE writes the initial value (zeros) instead. */
	g = xarea(f, 0x186);
	f->cpu.rip = CODE;
	RUN(f, 0x48, 0x0F, 0xAE, 0x27);
	assert_int_equal(g[576], 0);
	assert_int_equal(g[831], 0);
	assert_int_equal(rd64(g + 512), 0x182);
}

static void test_xsavec_compacted_and_restore(void **state)
{
	struct fx *f = *state;
	/* A synthetic layout to exercise compaction: component 3 (8 bytes) and component 4
	 * (64 bytes, 64-byte aligned when compacted). */
	f->cpu.xcr0 = 0x1F;
	memset(f->comp, 0, sizeof(f->comp));
	f->comp[2] = (struct insn_xcomp){ 256, 576, false };
	f->comp[3] = (struct insn_xcomp){ 8, 1024, false };
	f->comp[4] = (struct insn_xcomp){ 64, 1088, true };
	std_state(f, 0x1F);
	memset(f->area + 1024, 0x55, 8);
	memset(f->area + 1088, 0x66, 64);
	uint8_t *g = xarea(f, 0);
	f->cpu.gpr[INSN_RAX] = 0x1D; /* everything but SSE */
	RUN(f, 0x0F, 0xC7, 0x27);    /* xsavec [rdi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_string_equal(f->out.mnemonic, "xsavec");
	assert_int_equal(rd64(g + 512), 0x1D);
	assert_int_equal(rd64(g + 520), 0x800000000000001Dull);
	assert_int_equal(g[528], 0xEE); /* header bytes 16..63 untouched */
	assert_int_equal(g[0], 0x7F);
	assert_int_equal(g[12], 0);     /* 32-bit format */
	assert_int_equal(g[24], 0xEE);  /* no SSE: MXCSR not saved */
	assert_int_equal(g[160], 0xEE);
	assert_int_equal(g[576], 0x33); /* AVX at 576..831 */
	assert_int_equal(g[831], 0x33);
	assert_int_equal(g[832], 0x55); /* component 3 right after, 832..839 */
	assert_int_equal(g[839], 0x55);
	assert_int_equal(g[840], 0xEE); /* hole up to the 64-byte boundary */
	assert_int_equal(g[895], 0xEE);
	assert_int_equal(g[896], 0x66); /* component 4 at 896 (aligned), not 840 */
	assert_int_equal(g[959], 0x66);
	assert_int_equal(g[960], 0xEE);

	/* Restore the compacted image into a scribbled state with RFBM = everything (the header's
	 * reserved bytes must be zero for XRSTOR, as software that allocates the area ensures). */
	memset(g + 528, 0, 48);
	memset(f->area, 0x5A, sizeof(f->area));
	wr64(f->area + 24, 0x0000FFFF00001FA0ull);
	wr64(f->area + 512, 0);
	f->cpu.rip = CODE;
	f->cpu.gpr[INSN_RAX] = 0x1F;
	RUN(f, 0x0F, 0xAE, 0x2F); /* xrstor [rdi], compacted form (XCOMP_BV[63]) */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_true(f->xs.dirty);
	assert_int_equal(f->area[0], 0x7F);
	assert_int_equal(rd64(f->area + 8), 0x55667788ull); /* 32-bit format: zero-extended */
	assert_int_equal(f->area[160], 0);   /* SSE not in XSTATE_BV: initialised */
	assert_int_equal(rd64(f->area + 24) & 0xFFFFFFFF, 0x1F80); /* and MXCSR reset */
	assert_int_equal(f->area[576], 0x33);
	assert_int_equal(f->area[1024], 0x55);
	assert_int_equal(f->area[1088], 0x66);
	assert_int_equal(rd64(f->area + 512), 0x1D);
}

static void test_xrstor64_init_components(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t *g = xarea(f, 0);
	memset(g, 0, 1024);
	g[0] = 0x62, g[1] = 0x03;                   /* FCW 0362 */
	wr64(g + 8, 0x12345678ull);                  /* FIP, 64-bit format */
	wr64(g + 24, 0x0000FFFF00001F90ull);         /* MXCSR 1F90 */
	g[32] = 0x77;                                /* ST0 */
	g[160] = 0x99;                               /* XMM0: ignored, XSTATE_BV[1] = 0 */
	wr64(g + 512, 0x1);                          /* XSTATE_BV = x87 only */
	f->cpu.gpr[INSN_RAX] = 0x7;
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F); /* xrstor64 [rdi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_string_equal(f->out.mnemonic, "xrstor64");
	assert_int_equal(f->cpu.rip, CODE + 4);
	assert_true(f->xs.dirty);
	assert_int_equal(f->area[0], 0x62);
	assert_int_equal(f->area[1], 0x03);
	assert_int_equal(f->area[2], 0);     /* FSW from memory */
	assert_int_equal(rd64(f->area + 8), 0x12345678ull);
	assert_int_equal(f->area[32], 0x77);
	/* SSE in the init state: XMMs zero, but the standard form still loads MXCSR. */
	assert_int_equal(f->area[160], 0);
	assert_int_equal(f->area[415], 0);
	assert_int_equal(rd64(f->area + 24) & 0xFFFFFFFF, 0x1F90);
	/* AVX initialised; opmask (not in RFBM) untouched. */
	assert_int_equal(f->area[576], 0);
	assert_int_equal(f->area[831], 0);
	assert_int_equal(f->area[1088], 0x44);
	assert_int_equal(rd64(f->area + 512), 0x21);
}

static void test_xrstor_bad_header(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t before[4096];
	memcpy(before, f->area, sizeof(before));
	uint8_t *g = xarea(f, 0);
	memset(g, 0, 1024);
	wr64(g + 24, 0x0000FFFF00001F80ull);
	f->cpu.gpr[INSN_RAX] = 0x7;
	/* XCOMP_BV non-zero without bit 63. */
	wr64(g + 512, 0x3);
	wr64(g + 520, 0x1);
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F);
	assert_fault(f, 13, 0);
	/* XSTATE_BV bit not enabled in XCR0 (bit 3). */
	wr64(g + 520, 0);
	wr64(g + 512, 0x8);
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F);
	assert_fault(f, 13, 0);
	/* Compacted form with a non-zero reserved header byte. */
	wr64(g + 512, 0x1);
	wr64(g + 520, 0x8000000000000003ull);
	g[540] = 1;
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F);
	assert_fault(f, 13, 0);
	/* Compacted: XSTATE_BV bit not in XCOMP_BV. */
	g[540] = 0;
	wr64(g + 512, 0x4);
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F);
	assert_fault(f, 13, 0);
	/* MXCSR with a reserved bit (bit 16, outside MXCSR_MASK FFFF). */
	wr64(g + 512, 0x3);
	wr64(g + 520, 0);
	wr64(g + 24, 0x0000FFFF00011F80ull);
	RUN(f, 0x48, 0x0F, 0xAE, 0x2F);
	assert_fault(f, 13, 0);
	/* XRSTORS of a standard-form area. */
	wr64(g + 24, 0x0000FFFF00001F80ull);
	RUN(f, 0x48, 0x0F, 0xC7, 0x1F);
	assert_fault(f, 13, 0);
	assert_string_equal(f->out.mnemonic, "xrstors64");
	assert_memory_equal(f->area, before, sizeof(before));
	assert_false(f->xs.dirty);
}

static void test_xsave_family_checks(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t *g = xarea(f, 0);
	f->cpu.gpr[INSN_RAX] = 0x7;
	f->cpu.gpr[INSN_RDI] = 0x800020; /* not 64-byte aligned */
	RUN(f, 0x0F, 0xAE, 0x27);
	assert_fault(f, 13, 0);
	f->cpu.gpr[INSN_RDI] = 0x800000;
	f->cpu.cpl = 3; /* xsaves is CPL 0 only */
	RUN(f, 0x0F, 0xC7, 0x2F);
	assert_fault(f, 13, 0);
	assert_string_equal(f->out.mnemonic, "xsaves");
	f->cpu.cpl = 0;
	f->cpu.cr0 |= X86_CR0_TS;
	RUN(f, 0x0F, 0xAE, 0x27);
	assert_int_equal(f->out.vector, 7);
	f->cpu.cr0 &= ~X86_CR0_TS;
	f->cpu.cr4 &= ~X86_CR4_OSXSAVE;
	RUN(f, 0x0F, 0xAE, 0x27);
	assert_int_equal(f->out.vector, 6);
	assert_int_equal(f->cpu.rip, CODE);
	f->cpu.cr4 |= X86_CR4_OSXSAVE;
	assert_int_equal(g[0], 0xEE);
	/* An area that runs into a page that is not present: #PF, nothing written. */
	memset(gpa_ptr(f, 0xE00000), 0xEE, 4096);
	f->cpu.gpr[INSN_RDI] = PG_RW + 0xC00;
	f->cpu.gpr[INSN_RAX] = 0x27;
	RUN(f, 0x48, 0x0F, 0xAE, 0x27);
	assert_fault(f, 14, PF_ERR_W);
	assert_int_equal(f->out.cr2, PG_RW + 0xC00 + 1088);
	assert_int_equal(*gpa_ptr(f, 0xE00C00), 0xEE);
	assert_int_equal(*gpa_ptr(f, 0xE00C00 + 576), 0xEE);
}

static void test_xsaves_xrstors_roundtrip(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t orig[4096];
	memcpy(orig, f->area, sizeof(orig));
	uint8_t *g = xarea(f, 0);
	f->cpu.gpr[INSN_RAX] = 0xFFFFFFFF;
	f->cpu.gpr[INSN_RDX] = 0xFFFFFFFF;
	RUN(f, 0x48, 0x0F, 0xC7, 0x2F); /* xsaves64 */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(rd64(g + 520), 0x80000000000002E7ull);
	assert_int_equal(rd64(g + 512), 0x27);
	/* Compacted: AVX 576, opmask 832, ZMM_Hi256 896 (not in use: not written). */
	assert_int_equal(g[576], 0x33);
	assert_int_equal(g[832], 0x44);
	assert_int_equal(g[896], 0xEE);
	memset(f->area, 0, sizeof(f->area));
	wr64(f->area + 24, 0x0000FFFF00001F80ull);
	memset(g + 528, 0, 48);
	f->cpu.rip = CODE;
	RUN(f, 0x48, 0x0F, 0xC7, 0x1F); /* xrstors64 */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_memory_equal(f->area, orig, 416);
	assert_memory_equal(f->area + 512, orig + 512, 8);
	assert_memory_equal(f->area + 576, orig + 576, 256);
	assert_memory_equal(f->area + 1088, orig + 1088, 64);
}

static void test_fxsave_fxrstor(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	uint8_t *g = xarea(f, 0);
	RUN(f, 0x48, 0x0F, 0xAE, 0x07); /* fxsave64 [rdi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_string_equal(f->out.mnemonic, "fxsave64");
	assert_int_equal(rd64(g), 0x012300010800027Full);
	assert_int_equal(rd64(g + 8), 0x1122334455667788ull);
	assert_int_equal(rd64(g + 24), 0x0000FFFF00001FA0ull);
	assert_int_equal(g[159], 0xA1);
	assert_int_equal(g[160], 0x10);
	assert_int_equal(g[415], 0x1F);
	assert_int_equal(g[416], 0xEE); /* 416..511 not written */
	assert_int_equal(g[511], 0xEE);
	assert_int_equal(f->cpu.rip, CODE + 4);

	/* fxrstor (32-bit format): FIP from bytes 8..11, FCS at 12 ignored. */
	memset(g, 0, 512);
	g[0] = 0x62, g[1] = 0x03;
	wr64(g + 8, 0x0000123489ABCDEFull);
	wr64(g + 24, 0x0000FFBF00001F81ull);
	memset(g + 160, 0x42, 16);
	memset(g + 288, 0x43, 16);
	wr64(f->area + 512, 0x24);
	f->cpu.rip = CODE;
	RUN(f, 0x0F, 0xAE, 0x0F); /* fxrstor [rdi] */
	assert_int_equal(f->out.status, INSN_DONE);
	assert_true(f->xs.dirty);
	assert_int_equal(f->area[0], 0x62);
	assert_int_equal(rd64(f->area + 8), 0x89ABCDEFull);
	assert_int_equal(rd64(f->area + 24) & 0xFFFFFFFF, 0x1F81);
	assert_int_equal(f->area[160], 0x42);
	assert_int_equal(f->area[288], 0x43);
	assert_int_equal(f->area[32], 0);
	assert_int_equal(rd64(f->area + 512), 0x27); /* x87 and SSE now in use */

	/* Reserved MXCSR bit 6 with MXCSR_MASK FFBF: #GP(0), state untouched. */
	wr64(f->area + 24, 0x0000FFBF00001F80ull);
	wr64(g + 24, 0x40);
	f->cpu.rip = CODE;
	RUN(f, 0x0F, 0xAE, 0x0F);
	assert_fault(f, 13, 0);
	assert_int_equal(f->area[160], 0x42);
	/* 16-byte alignment. */
	f->cpu.gpr[INSN_RDI] = 0x800008;
	RUN(f, 0x0F, 0xAE, 0x07);
	assert_fault(f, 13, 0);
}

static void test_xgetbv(void **state)
{
	struct fx *f = *state;
	std_state(f, 0x27);
	f->cpu.gpr[INSN_RCX] = 0;
	f->cpu.gpr[INSN_RAX] = 0xFFFFFFFFFFFFFFFFull;
	f->cpu.gpr[INSN_RDX] = 0xFFFFFFFFFFFFFFFFull;
	RUN(f, 0x0F, 0x01, 0xD0);
	assert_int_equal(f->out.status, INSN_DONE);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0x2E7);
	assert_int_equal(f->cpu.gpr[INSN_RDX], 0);
	assert_int_equal(f->cpu.rip, CODE + 3);
	f->cpu.rip = CODE;
	f->cpu.gpr[INSN_RCX] = 1; /* XCR0 & XINUSE */
	RUN(f, 0x0F, 0x01, 0xD0);
	assert_int_equal(f->cpu.gpr[INSN_RAX], 0x27);
	f->cpu.rip = CODE;
	f->cpu.gpr[INSN_RCX] = 2;
	RUN(f, 0x0F, 0x01, 0xD0);
	assert_fault(f, 13, 0);
}

/* ---- unsupported ---- */

static void test_unsupported(void **state)
{
	struct fx *f = *state;
	uint64_t rax = f->cpu.gpr[INSN_RAX];
	RUN(f, 0x0F, 0x01, 0xC1);
	assert_int_equal(f->out.status, INSN_UNSUPPORTED);
	assert_string_equal(f->out.mnemonic, "vmcall");
	assert_int_equal(f->out.length, 3);
	assert_non_null(f->out.reason);
	assert_int_equal(f->cpu.rip, CODE);
	char msg[160];
	insn_outcome_format(&f->out, f->cpu.rip, msg, sizeof(msg));
	assert_string_equal(msg, "RIP=0x400000 bytes 0f 01 c1 (vmcall, 3 bytes): "
				 "instruction not handled by the VMM");
	RUN(f, 0x0F, 0x01, 0xD1); /* rdrand used to be the example here; it is completed now */
	assert_string_equal(f->out.mnemonic, "xsetbv");
	assert_int_equal(f->out.length, 3);
	/* mov dword [rsp+0x12345678], 0xdeadbeef: unknown name, length from the tables. */
	RUN(f, 0xC7, 0x84, 0x24, 0x78, 0x56, 0x34, 0x12, 0xEF, 0xBE, 0xAD, 0xDE, 0x90, 0x90);
	assert_int_equal(f->out.status, INSN_UNSUPPORTED);
	assert_string_equal(f->out.mnemonic, "");
	assert_int_equal(f->out.length, 11);
	/* VEX: vzeroupper (c5 f8 77), 3 bytes. */
	RUN(f, 0xC5, 0xF8, 0x77);
	assert_int_equal(f->out.length, 3);
	/* 16 prefixes: longer than 15 bytes, #GP(0). */
	RUN(f, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x90);
	assert_fault(f, 13, 0);
	assert_int_equal(f->cpu.gpr[INSN_RAX], rax);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_int3),
		T(test_int3_fetched_from_memory),
		T(test_int_n_and_int1),
		T(test_cmpxchg16b_success),
		T(test_cmpxchg16b_failure),
		T(test_cmpxchg16b_faults),
		T(test_cmpxchg16b_rip_relative_and_gs),
		T(test_cmpxchg8b),
		T(test_cmpxchg8b_32bit_and_real_mode),
		T(test_into_32bit),
		T(test_cmpxchg16b_atomic_across_threads),
		T(test_xsave64_standard),
		T(test_xsave_32bit_format),
		T(test_xsaveopt_init_optimization),
		T(test_xsavec_compacted_and_restore),
		T(test_xrstor64_init_components),
		T(test_xrstor_bad_header),
		T(test_xsave_family_checks),
		T(test_xsaves_xrstors_roundtrip),
		T(test_fxsave_fxrstor),
		T(test_xgetbv),
		T(test_unsupported),
	};
	return cmocka_run_group_tests_name("insn", tests, NULL, NULL);
}
