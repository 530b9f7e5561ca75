/* libFuzzer target for the instruction completer and the page walk.
 *
 * Input: a 96-byte state seed (mode, control registers, GPRs, XCR0/XSS, component table tweaks),
 * then up to 15 instruction bytes (length in the seed), then bytes that fill the first 128 KiB of
 * guest RAM over and over: page tables, operands and the XSAVE state buffer all come from the
 * input, so the walk and every decoder path see hostile data. Must never crash, hang or touch
 * memory outside guest RAM and the state buffer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/insn.h"
#include "vmm/memory.h"
#include "vmm/pagewalk.h"

#define RAM_SIZE (2u << 20)
#define FILL_SIZE (128u << 10)
#define SEED 96

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t seed64(const uint8_t *s, unsigned off)
{
	uint64_t v;
	memcpy(&v, s + off, 8);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static int ready;
	if (!ready) {
		if (guest_mem_init(&mem, RAM_SIZE))
			abort();
		ready = 1;
	}
	if (size < SEED)
		return 0;
	const uint8_t *s = data;
	size_t nbytes = s[0] & 15;
	if (size < SEED + nbytes)
		return 0;
	const uint8_t *insn = data + SEED;
	const uint8_t *fill = insn + nbytes;
	size_t nfill = size - SEED - nbytes;

	uint8_t *ram = guest_mem_ptr(&mem, 0, RAM_SIZE);
	memset(ram, 0, RAM_SIZE);
	for (size_t off = 0; nfill && off < FILL_SIZE; off += nfill)
		memcpy(ram + off, fill, nfill < FILL_SIZE - off ? nfill : FILL_SIZE - off);

	struct insn_cpu cpu;
	memset(&cpu, 0, sizeof(cpu));
	unsigned mode = (s[0] >> 4) & 7;
	uint8_t f = s[1];
	cpu.cr0 = X86_CR0_PE | ((f & 1) ? X86_CR0_WP : 0) | ((f & 2) ? X86_CR0_TS : 0) |
		  ((f & 4) ? X86_CR0_EM : 0);
	cpu.cr4 = ((f & 8) ? X86_CR4_OSXSAVE : 0) | ((f & 16) ? X86_CR4_SMEP : 0) |
		  ((f & 32) ? X86_CR4_SMAP : 0) | ((f & 64) ? X86_CR4_PSE : 0);
	cpu.cpl = (f & 128) ? 3 : 0;
	cpu.cr3 = (uint64_t)(s[2] & 0x1F) << 12; /* inside the filled region */
	switch (mode) {
	case 0: case 1: /* 64-bit, 4- or 5-level */
		cpu.cr0 |= X86_CR0_PG;
		cpu.cr4 |= X86_CR4_PAE | (mode ? X86_CR4_LA57 : 0);
		cpu.efer = X86_EFER_LMA | ((s[3] & 1) ? X86_EFER_NXE : 0) | ((s[3] & 2) ? (1ull << 14) : 0);
		cpu.cs_l = !(s[3] & 4);
		cpu.cs_db = !cpu.cs_l;
		break;
	case 2: /* PAE */
		cpu.cr0 |= X86_CR0_PG;
		cpu.cr4 |= X86_CR4_PAE;
		cpu.efer = (s[3] & 1) ? X86_EFER_NXE : 0;
		cpu.cs_db = true;
		break;
	case 3: /* 32-bit paging */
		cpu.cr0 |= X86_CR0_PG;
		cpu.cs_db = true;
		break;
	case 4: /* protected mode, paging off */
		cpu.cs_db = !(s[3] & 4);
		break;
	default: /* real mode */
		cpu.cr0 = 0;
		cpu.cpl = 0;
		break;
	}
	cpu.maxphyaddr = (s[3] & 8) ? 36 : 0;
	cpu.rflags = 0x2 | ((uint64_t)(s[4] & 0x0F) << 6) | ((s[4] & 0x10) ? X86_RFLAGS_AC : 0) |
		     ((s[4] & 0x20) ? (1ull << 11) : 0) | ((s[4] & 0x40) ? (1ull << 17) : 0);
	cpu.xcr0 = seed64(s, 8) & 0x60000000000EFFull;
	cpu.xcr0 |= 1;
	cpu.xss = seed64(s, 16) & 0x1D00ull;
	/* GPRs: small values (inside RAM) or raw 64-bit patterns. */
	for (int i = 0; i < 16; i++) {
		uint32_t v;
		memcpy(&v, s + 24 + 4 * (i % 16), 4);
		cpu.gpr[i] = (s[5] >> (i & 7)) & 1 ? (uint64_t)(int64_t)(int32_t)v * 0x100000001ull : v & 0x1FFFFF;
	}
	cpu.rip = seed64(s, 88) & ((s[6] & 1) ? ~0ull : 0x1FFFFF);
	for (int i = 0; i < 6; i++)
		cpu.seg_base[i] = (s[6] & 2) ? (uint64_t)s[7 + i] << 12 : 0;

	/* The XSAVE buffer: standard layout, contents from the filled RAM, a few sizes tweaked. */
	static uint8_t area[4096];
	memcpy(area, ram, sizeof(area));
	struct insn_xcomp comp[64];
	memset(comp, 0, sizeof(comp));
	comp[2] = (struct insn_xcomp){ 256, 576, false };
	comp[3] = (struct insn_xcomp){ 64, 960, false };
	comp[4] = (struct insn_xcomp){ 64, 1024, false };
	comp[5] = (struct insn_xcomp){ 64, 1088, false };
	comp[6] = (struct insn_xcomp){ 512, 1152, false };
	comp[7] = (struct insn_xcomp){ 1024, 1664, false };
	comp[8] = (struct insn_xcomp){ 72, 0, false };
	comp[9] = (struct insn_xcomp){ 8, 2688, false };
	comp[10] = (struct insn_xcomp){ 16, 0, true };
	comp[12] = (struct insn_xcomp){ 24, 0, false };
	if (s[2] & 0x80) {
		unsigned i = 2 + (s[13] % 60);
		comp[i].size = (uint32_t)seed64(s, 80);
		comp[i].offset = (uint32_t)(seed64(s, 80) >> 32);
		comp[i].align64 = s[14] & 1;
	}
	struct insn_xstate xs = { area, (s[2] & 0x40) ? 600 : sizeof(area), comp, false };

	struct insn_outcome out;
	insn_complete(&cpu, &mem, nbytes ? insn : NULL, nbytes, (s[2] & 0x20) ? NULL : &xs, &out);
	char msg[256];
	insn_outcome_format(&out, cpu.rip, msg, sizeof(msg));
	if (out.status == INSN_UNSUPPORTED && !out.reason)
		abort();
	if (out.length > 15 || out.nbytes > 15)
		abort();
	return 0;
}
