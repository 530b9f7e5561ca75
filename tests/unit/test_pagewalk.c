#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "guest_pt.h"
#include "vmm/memory.h"
#include "vmm/pagewalk.h"

#define P  0x1ull
#define W  0x2ull
#define U  0x4ull
#define A  0x20ull
#define D  0x40ull
#define NX (1ull << 63)

struct fx {
	struct guest_mem m;
	struct guest_pt pt;
	struct pagewalk_ctx c;
};

static int fx_setup(void **state, unsigned levels)
{
	static struct fx f;
	memset(&f, 0, sizeof(f));
	if (guest_mem_init(&f.m, 16ull << 20))
		return -1;
	if (guest_pt_init(&f.pt, &f.m, levels, 0x100000, 0x100000))
		return -1;
	f.c.cr3 = f.pt.root;
	f.c.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP;
	if (levels >= 4) {
		f.c.cr4 = X86_CR4_PAE | (levels == 5 ? X86_CR4_LA57 : 0);
		f.c.efer = X86_EFER_LMA | X86_EFER_NXE;
	} else if (levels == 3) {
		f.c.cr4 = X86_CR4_PAE;
		f.c.efer = X86_EFER_NXE;
	} else {
		f.c.cr4 = X86_CR4_PSE;
	}
	*state = &f;
	return 0;
}

static int setup4(void **s) { return fx_setup(s, 4); }
static int setup5(void **s) { return fx_setup(s, 5); }
static int setup3(void **s) { return fx_setup(s, 3); }
static int setup2(void **s) { return fx_setup(s, 2); }

static int teardown(void **state)
{
	struct fx *f = *state;
	guest_mem_destroy(&f->m);
	return 0;
}

static uint64_t entry(struct fx *f, uint64_t la, unsigned level)
{
	void *p = guest_pt_entry(&f->pt, la, level);
	assert_non_null(p);
	uint64_t v = 0;
	memcpy(&v, p, f->pt.levels == 2 ? 4 : 8);
	return v;
}

static void test_paging_off(void **state)
{
	struct fx *f = *state;
	struct pagewalk_ctx c = { .cr0 = X86_CR0_PE };
	struct pagewalk_fault pf;
	uint64_t gpa;
	assert_int_equal(pagewalk_translate(&c, &f->m, 0x1234567, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x1234567);
	/* Without paging, linear addresses are 32 bits wide. */
	assert_int_equal(pagewalk_translate(&c, &f->m, 0x100000010ull, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x10);
}

static void test_4level_4k_and_ad_bits(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa, la = 0x7f0000401000ull;
	assert_int_equal(guest_pt_map(&f->pt, la, 0x300000, 1, P | W), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, la + 0x123, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x300123);
	/* A set on every level, D not set by a read. */
	for (unsigned l = 4; l >= 1; l--)
		assert_true(entry(f, la, l) & A);
	assert_false(entry(f, la, 1) & D);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, la, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_true(entry(f, la, 1) & D);
	assert_false(entry(f, la, 2) & D); /* D only on the leaf */
}

static void test_4level_2m_1g(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa;
	assert_int_equal(guest_pt_map(&f->pt, 0x40000000, 0x600000, 2, P | W), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x40012345, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x612345);
	assert_int_equal(entry(f, 0x40000000, 2) & (A | D), A | D);
	/* 1 GiB page at PML4 index 1. */
	assert_int_equal(guest_pt_map(&f->pt, 0x8000000000ull, 0x40000000, 3, P), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x8000123456ull, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x40123456);
	/* Bit 13 of a 2 MiB leaf is reserved: #PF with P|RSVD (and W for a write). */
	assert_int_equal(guest_pt_map(&f->pt, 0x40200000, 0x802000, 2, P | W), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x40200000, PAGEWALK_WRITE, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.vector, 14);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_W | PF_ERR_RSVD);
	assert_int_equal(pf.cr2, 0x40200000);
}

static void test_faults(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa, ro = 0x10000, sv = 0x11000, nx = 0x12000, usr = 0x13000;
	guest_pt_map(&f->pt, ro, 0x300000, 1, P);
	guest_pt_map(&f->pt, sv, 0x301000, 1, P | W);
	guest_pt_map(&f->pt, nx, 0x302000, 1, P | W | NX);
	guest_pt_map(&f->pt, usr, 0x303000, 1, P | W | U);

	/* Not present: error code carries only W/U/I. */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x20008, PAGEWALK_WRITE, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_W);
	assert_int_equal(pf.cr2, 0x20008);
	/* Write to a read-only page at CPL 0: faults with CR0.WP=1, allowed with WP=0. */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, ro + 8, PAGEWALK_WRITE, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_W);
	assert_int_equal(pf.cr2, ro + 8);
	assert_false(entry(f, ro, 1) & A); /* a failed walk sets no A bit */
	struct pagewalk_ctx c = f->c;
	c.cr0 &= ~X86_CR0_WP;
	assert_int_equal(pagewalk_translate(&c, &f->m, ro + 8, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x300008);
	/* User access to a supervisor page. */
	c = f->c;
	c.cpl = 3;
	assert_int_equal(pagewalk_translate(&c, &f->m, sv, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_U);
	assert_int_equal(pagewalk_translate(&c, &f->m, usr, PAGEWALK_WRITE, &gpa, &pf), 0);
	/* NX fetch. */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, nx, PAGEWALK_FETCH, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_I);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, nx, PAGEWALK_READ, &gpa, &pf), 0);
	/* SMEP: supervisor fetch from a user page; SMAP: supervisor data access unless RFLAGS.AC. */
	c = f->c;
	c.cr4 |= X86_CR4_SMEP | X86_CR4_SMAP;
	assert_int_equal(pagewalk_translate(&c, &f->m, usr, PAGEWALK_FETCH, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_I);
	assert_int_equal(pagewalk_translate(&c, &f->m, usr, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P);
	c.rflags = X86_RFLAGS_AC;
	assert_int_equal(pagewalk_translate(&c, &f->m, usr, PAGEWALK_READ, &gpa, &pf), 0);
	/* NX set without EFER.NXE is a reserved bit. */
	c = f->c;
	c.efer &= ~X86_EFER_NXE;
	assert_int_equal(pagewalk_translate(&c, &f->m, nx, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_RSVD);
	/* Non-canonical address: #GP(0). */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x0000800000000000ull, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.vector, 13);
	assert_int_equal(pf.error_code, 0);
	/* A paging structure outside RAM: not a guest fault. */
	guest_pt_map(&f->pt, 0x600000, 0x304000, 1, P);
	uint64_t bad = 0xF0000000ull | P | W;
	memcpy(guest_pt_entry(&f->pt, 0x600000, 2), &bad, 8);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x600000, PAGEWALK_READ, &gpa, &pf), -EIO);
	/* Data outside RAM (an MMIO page). */
	guest_pt_map(&f->pt, 0x15000, 0xFEC00000ull, 1, P | W);
	uint8_t b;
	assert_int_equal(pagewalk_read(&f->c, &f->m, 0x15000, &b, 1, PAGEWALK_READ, &pf), -ENXIO);
}

static void test_cross_page_write_all_or_nothing(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	guest_pt_map(&f->pt, 0x30000, 0x310000, 1, P | W);
	guest_pt_map(&f->pt, 0x31000, 0x311000, 1, P); /* read-only */
	guest_pt_map(&f->pt, 0x32000, 0x400000, 1, P | W); /* not contiguous physically */
	uint8_t *p0 = guest_mem_ptr(&f->m, 0x310000, 4096);
	memset(p0, 0xAA, 4096);
	uint8_t buf[16];
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(pagewalk_write(&f->c, &f->m, 0x30FF8, buf, 16, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_W);
	assert_int_equal(pf.cr2, 0x31000);
	assert_int_equal(p0[0xFF8], 0xAA); /* nothing written */
	/* Writable neighbour: the write is split across the two physical pages. */
	assert_int_equal(pagewalk_write(&f->c, &f->m, 0x31FFC, buf, 8, &pf), -EFAULT);
	struct pagewalk_ctx c = f->c;
	c.cr0 &= ~X86_CR0_WP;
	assert_int_equal(pagewalk_write(&c, &f->m, 0x31FFC, buf, 8, &pf), 0);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->m, 0x311FFF, 1), 0x55);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->m, 0x400003, 1), 0x55);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&f->m, 0x400004, 1), 0);
	uint8_t rd[8];
	assert_int_equal(pagewalk_read(&f->c, &f->m, 0x31FFC, rd, 8, PAGEWALK_READ, &pf), 0);
	assert_memory_equal(rd, buf, 8);
}

static void test_5level(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa;
	/* Bits 56:48 select the PML5 entry: this address is non-canonical with 4 levels. */
	uint64_t la = 0x0001000000200000ull;
	assert_int_equal(guest_pt_map(&f->pt, la, 0xA00000, 2, P | W), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, la + 0x1234, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0xA01234);
	assert_true(entry(f, la, 5) & A);
	assert_int_equal(entry(f, la, 2) & (A | D), A | D);
	uint64_t hi = 0xFF00000000000000ull; /* canonical with 57 bits, bit 56 set */
	assert_int_equal(guest_pt_map(&f->pt, hi, 0, 3, P), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, hi + 0x10, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x10);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x0100000000000000ull, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.vector, 13);
	struct pagewalk_ctx c = f->c;
	c.cr4 &= ~X86_CR4_LA57;
	assert_int_equal(pagewalk_translate(&c, &f->m, la, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.vector, 13);
}

static void test_pae(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa;
	assert_int_equal(guest_pt_map(&f->pt, 0xC0001000, 0x500000, 1, P | W), 0);
	assert_int_equal(guest_pt_map(&f->pt, 0x80200000, 0x600000, 2, P), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0xC0001ABC, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x500ABC);
	assert_int_equal(entry(f, 0xC0001000, 1) & (A | D), A | D);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x80234567, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x634567);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x40000000, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, 0);
}

static void test_32bit(void **state)
{
	struct fx *f = *state;
	struct pagewalk_fault pf;
	uint64_t gpa;
	assert_int_equal(guest_pt_map(&f->pt, 0xC0401000, 0x500000, 1, P | W | U), 0);
	assert_int_equal(guest_pt_map(&f->pt, 0x00800000, 0x400000, 2, P | W), 0); /* 4 MiB */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0xC0401FFF, PAGEWALK_WRITE, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x500FFF);
	assert_int_equal(entry(f, 0xC0401000, 1) & (A | D), A | D);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x00ABCDEF, PAGEWALK_READ, &gpa, &pf), 0);
	assert_int_equal(gpa, 0x6BCDEF);
	struct pagewalk_ctx c = f->c;
	c.cpl = 3;
	assert_int_equal(pagewalk_translate(&c, &f->m, 0x00ABCDEF, PAGEWALK_READ, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, PF_ERR_P | PF_ERR_U);
	/* No NX in 32-bit paging: fetch works, and the error code never has I without SMEP. */
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x00ABCDEF, PAGEWALK_FETCH, &gpa, &pf), 0);
	assert_int_equal(pagewalk_translate(&f->c, &f->m, 0x10000000, PAGEWALK_FETCH, &gpa, &pf), -EFAULT);
	assert_int_equal(pf.error_code, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_paging_off, setup4, teardown),
		cmocka_unit_test_setup_teardown(test_4level_4k_and_ad_bits, setup4, teardown),
		cmocka_unit_test_setup_teardown(test_4level_2m_1g, setup4, teardown),
		cmocka_unit_test_setup_teardown(test_faults, setup4, teardown),
		cmocka_unit_test_setup_teardown(test_cross_page_write_all_or_nothing, setup4, teardown),
		cmocka_unit_test_setup_teardown(test_5level, setup5, teardown),
		cmocka_unit_test_setup_teardown(test_pae, setup3, teardown),
		cmocka_unit_test_setup_teardown(test_32bit, setup2, teardown),
	};
	return cmocka_run_group_tests_name("pagewalk", tests, NULL, NULL);
}
