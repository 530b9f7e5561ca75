#include "vmm/insn.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vmm/pagewalk.h"

#define XSAVE_HDR 512
#define XSAVE_EXT 576
#define XCOMP_COMPACT (1ull << 63)
#define MXCSR_INIT 0x1F80u
#define MXCSR_MASK_DEFAULT 0xFFBFu

/* ---- decoder state -------------------------------------------------------------------------- */

struct dec {
	struct insn_cpu *cpu;
	const struct guest_mem *mem;
	struct insn_outcome *out;
	struct pagewalk_ctx pw;
	unsigned pos;           /* bytes consumed */
	bool mode64;
	unsigned opsz, adsz;    /* in bytes */
	bool lock, rep, repne, p66;
	int seg;                /* override, or -1 */
	uint8_t rex;
	unsigned map;           /* 1: one-byte, 2: 0F, 3: 0F 38, 4: 0F 3A, 5+: VEX/EVEX maps */
	bool vex;
	uint8_t op;
	bool has_modrm;
	uint8_t modrm, mod, reg, rm;
	uint64_t ea;            /* effective address (offset), final after dec_finish */
	int ea_seg;
	bool riprel;
};

static int dec_unsupported(struct dec *d, const char *reason)
{
	d->out->status = INSN_UNSUPPORTED;
	d->out->reason = reason;
	return 1;
}

static int dec_exception(struct dec *d, uint8_t vec, bool has_err, uint32_t ec)
{
	d->out->status = INSN_EXCEPTION;
	d->out->vector = vec;
	d->out->has_error = has_err;
	d->out->error_code = ec;
	d->out->trap = false;
	return 1;
}

static int dec_gp0(struct dec *d)
{
	return dec_exception(d, X86_VEC_GP, true, 0);
}

/* Turns a pagewalk error into the outcome. seg picks #SS over #GP for a non-canonical stack
 * reference, as the CPU does. */
static int dec_mem_error(struct dec *d, int r, const struct pagewalk_fault *f, int seg)
{
	if (r == -EFAULT) {
		uint8_t vec = f->vector;
		if (vec == X86_VEC_GP && seg == INSN_SS)
			vec = X86_VEC_SS;
		dec_exception(d, vec, true, f->error_code);
		d->out->cr2 = f->cr2;
		return 1;
	}
	if (r == -EIO)
		return dec_unsupported(d, "a guest page table lies outside guest RAM");
	if (r == -ENXIO)
		return dec_unsupported(d, "memory operand is not guest RAM (MMIO?)");
	return dec_unsupported(d, "memory operand too large");
}

static int dec_byte(struct dec *d, uint8_t *b)
{
	struct insn_outcome *o = d->out;
	if (d->pos >= 15)
		return dec_gp0(d); /* longer than the architectural 15-byte limit */
	while (d->pos >= o->nbytes) {
		uint64_t la = d->cpu->rip + o->nbytes;
		if (!d->mode64)
			la = (uint32_t)(la + d->cpu->seg_base[INSN_CS]);
		struct pagewalk_fault f;
		int r = pagewalk_read(&d->pw, d->mem, la, &o->bytes[o->nbytes], 1, PAGEWALK_FETCH, &f);
		if (r == -EIO || r == -ENXIO)
			return dec_unsupported(d, "instruction bytes are not in guest RAM");
		if (r)
			return dec_mem_error(d, r, &f, INSN_CS);
		o->nbytes++;
	}
	*b = o->bytes[d->pos++];
	return 0;
}

static int dec_imm(struct dec *d, unsigned n, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t b;
		if (dec_byte(d, &b))
			return 1;
		x |= (uint64_t)b << (8 * i);
	}
	*v = x;
	return 0;
}

static uint64_t sext(uint64_t v, unsigned bytes)
{
	unsigned sh = 64 - 8 * bytes;
	return (uint64_t)((int64_t)(v << sh) >> sh);
}

static uint64_t trunc_to(uint64_t v, unsigned bytes)
{
	return bytes >= 8 ? v : v & ((1ull << (8 * bytes)) - 1);
}

/* ---- length tables ---------------------------------------------------------------------------
 * One character per opcode: '.' nothing, 'm' ModRM, 'b' imm8, 'w' imm16, 'z' imm16/32,
 * 'v' imm16/32/64, 'o' moffs, 'f' far pointer, 'e' imm16+imm8, 'M' ModRM+imm8,
 * 'Z' ModRM+imm16/32, 't'/'T' F6/F7 (immediate only for /0 and /1), 'X'/'Y' 0F 38 / 0F 3A. */
static const char map1_fmt[] = "mmmmbz..mmmmbz.."
			       "mmmmbz..mmmmbz.."
			       "mmmmbz..mmmmbz.."
			       "mmmmbz..mmmmbz.."
			       "................"
			       "................"
			       "..mm....zZbM...."
			       "bbbbbbbbbbbbbbbb"
			       "MZMMmmmmmmmmmmmm"
			       "..........f....."
			       "oooo....bz......"
			       "bbbbbbbbvvvvvvvv"
			       "MMw.mmMZe.w..b.."
			       "mmmmbb..mmmmmmmm"
			       "bbbbbbbbzzfb...."
			       "......tT......mm";
static const char map2_fmt[] = "mmmm.........m.M"
			       "mmmmmmmmmmmmmmmm"
			       "mmmmmmmmmmmmmmmm"
			       "........X.Y....."
			       "mmmmmmmmmmmmmmmm"
			       "mmmmmmmmmmmmmmmm"
			       "mmmmmmmmmmmmmmmm"
			       "MMMMmmm.mmmmmmmm"
			       "zzzzzzzzzzzzzzzz"
			       "mmmmmmmmmmmmmmmm"
			       "...mMm.....mMmmm"
			       "mmmmmmmmmmMmmmmm"
			       "mmMmMMMm........"
			       "mmmmmmmmmmmmmmmm"
			       "mmmmmmmmmmmmmmmm"
			       "mmmmmmmmmmmmmmmm";
_Static_assert(sizeof(map1_fmt) == 257 && sizeof(map2_fmt) == 257, "opcode tables");

static char dec_fmt(const struct dec *d)
{
	switch (d->map) {
	case 1: return map1_fmt[d->op];
	case 2: return d->vex && d->op == 0x77 ? '.' : map2_fmt[d->op];
	case 4: return 'M';
	default: return 'm'; /* 0F 38 and the EVEX-only maps */
	}
}

/* ModRM, SIB and displacement; sets ea (RIP-relative finished later) and the default segment. */
static int dec_modrm(struct dec *d)
{
	if (dec_byte(d, &d->modrm))
		return 1;
	d->mod = d->modrm >> 6;
	d->reg = (d->modrm >> 3) & 7;
	d->rm = d->modrm & 7;
	d->ea_seg = INSN_DS;
	if (d->mod == 3)
		return 0;
	const uint64_t *g = d->cpu->gpr;
	uint64_t disp = 0;
	if (d->adsz == 2) {
		static const int8_t base16[8] = { 3, 3, 5, 5, 6, 7, 5, 3 }; /* bx bx bp bp si di bp bx */
		static const int8_t idx16[8] = { 6, 7, 6, 7, -1, -1, -1, -1 };
		uint64_t ea = 0;
		if (d->mod == 0 && d->rm == 6) {
			if (dec_imm(d, 2, &disp))
				return 1;
		} else {
			ea = g[base16[d->rm]] + (idx16[d->rm] >= 0 ? g[idx16[d->rm]] : 0);
			if (base16[d->rm] == 5)
				d->ea_seg = INSN_SS;
			if (d->mod && dec_imm(d, d->mod == 1 ? 1 : 2, &disp))
				return 1;
			disp = sext(disp, d->mod == 1 ? 1 : 2);
		}
		d->ea = (ea + disp) & 0xFFFF;
		return 0;
	}
	int base = d->rm | ((d->rex & 1) << 3), index = -1;
	unsigned scale = 0;
	bool nobase = false;
	if (d->rm == 4) {
		uint8_t sib;
		if (dec_byte(d, &sib))
			return 1;
		scale = sib >> 6;
		index = ((sib >> 3) & 7) | ((d->rex & 2) << 2);
		if (index == 4)
			index = -1;
		base = (sib & 7) | ((d->rex & 1) << 3);
		nobase = (sib & 7) == 5 && d->mod == 0;
	} else if (d->rm == 5 && d->mod == 0) {
		nobase = true;
		d->riprel = d->mode64;
	}
	unsigned dsz = d->mod == 1 ? 1 : (d->mod == 2 || nobase) ? 4 : 0;
	if (dsz && dec_imm(d, dsz, &disp))
		return 1;
	disp = sext(disp, dsz ? dsz : 8);
	uint64_t ea = disp;
	if (!nobase) {
		ea += g[base];
		if (base == INSN_RSP || base == INSN_RBP)
			d->ea_seg = INSN_SS;
	}
	if (index >= 0)
		ea += g[index] << scale;
	d->ea = ea;
	return 0;
}

/* VEX (C4/C5) and EVEX (62) prefixes: decoded only so the length of an unsupported instruction
 * can be reported. */
static int dec_vex(struct dec *d)
{
	uint8_t b[3];
	unsigned n = d->op == 0xC5 ? 1 : d->op == 0xC4 ? 2 : 3;
	for (unsigned i = 0; i < n; i++)
		if (dec_byte(d, &b[i]))
			return 1;
	unsigned m = d->op == 0xC5 ? 1 : d->op == 0xC4 ? (b[0] & 0x1F) : (b[0] & 7);
	if (d->op == 0x62 && m >= 5)
		m = 2; /* the FP16 maps: ModRM, no immediate */
	if (m < 1 || m > 3)
		return dec_unsupported(d, "unknown VEX/EVEX opcode map");
	d->vex = true;
	d->map = m + 1;
	d->rex = 0;
	return dec_byte(d, &d->op);
}

/* Decodes the whole instruction: prefixes, opcode, ModRM/SIB/displacement, immediates. */
static int dec_decode(struct dec *d)
{
	struct insn_cpu *c = d->cpu;
	uint8_t b;
	bool p67 = false;
	d->seg = -1;
	for (;;) {
		if (dec_byte(d, &b))
			return 1;
		switch (b) {
		case 0xF0: d->lock = true; break;
		case 0xF2: d->repne = true; d->rep = false; break;
		case 0xF3: d->rep = true; d->repne = false; break;
		case 0x26: d->seg = INSN_ES; break;
		case 0x2E: d->seg = INSN_CS; break;
		case 0x36: d->seg = INSN_SS; break;
		case 0x3E: d->seg = INSN_DS; break;
		case 0x64: d->seg = INSN_FS; break;
		case 0x65: d->seg = INSN_GS; break;
		case 0x66: d->p66 = true; break;
		case 0x67: p67 = true; break;
		default:
			if (d->mode64 && (b & 0xF0) == 0x40) {
				d->rex = b;
				continue; /* REX counts only right before the opcode: not cleared here */
			}
			goto opcode;
		}
		d->rex = 0; /* a legacy prefix after REX voids the REX */
	}
opcode:
	if (d->mode64) {
		d->opsz = (d->rex & 8) ? 8 : d->p66 ? 2 : 4;
		d->adsz = p67 ? 4 : 8;
	} else {
		unsigned def = c->cs_db && !(c->rflags & X86_RFLAGS_VM) ? 4 : 2;
		d->opsz = d->p66 ? 6 - def : def;
		d->adsz = p67 ? 6 - def : def;
	}
	d->map = 1;
	d->op = b;
	if (b == 0x0F) {
		d->map = 2;
		if (dec_byte(d, &d->op))
			return 1;
		if (d->op == 0x38 || d->op == 0x3A) {
			d->map = d->op == 0x38 ? 3 : 4;
			if (dec_byte(d, &d->op))
				return 1;
		}
	} else if (b == 0xC4 || b == 0xC5 || b == 0x62) {
		/* Outside 64-bit mode these are LES/LDS/BOUND unless the next byte has mod = 3. */
		bool is_vex = d->mode64;
		if (!is_vex) {
			uint8_t nx;
			unsigned save = d->pos;
			if (dec_byte(d, &nx))
				return 1;
			d->pos = save;
			is_vex = (nx >> 6) == 3;
		}
		if (is_vex && dec_vex(d))
			return 1;
	}
	char f = dec_fmt(d);
	d->has_modrm = f == 'm' || f == 'M' || f == 'Z' || f == 't' || f == 'T';
	if (d->has_modrm && dec_modrm(d))
		return 1;
	unsigned imm = 0;
	switch (f) {
	case 'b': case 'M': imm = 1; break;
	case 'w': imm = 2; break;
	case 'e': imm = 3; break;
	case 'z': case 'Z': imm = d->opsz == 2 ? 2 : 4; break;
	case 'v': imm = d->opsz; break;
	case 'o': imm = d->adsz; break;
	case 'f': imm = d->opsz == 2 ? 4 : 6; break;
	case 't': imm = d->reg < 2 ? 1 : 0; break;
	case 'T': imm = d->reg < 2 ? (d->opsz == 2 ? 2 : 4) : 0; break;
	default: break;
	}
	uint64_t dummy;
	if (imm && dec_imm(d, imm, &dummy))
		return 1;
	d->out->length = (uint8_t)d->pos;
	if (d->riprel)
		d->ea += c->rip + d->pos;
	d->ea = trunc_to(d->ea, d->adsz);
	if (d->seg >= 0)
		d->ea_seg = d->seg;
	return 0;
}

/* Linear address of the memory operand plus off. */
static uint64_t dec_linear(const struct dec *d, uint64_t off)
{
	uint64_t ea = trunc_to(d->ea + off, d->adsz);
	if (d->mode64)
		return ea + ((d->ea_seg == INSN_FS || d->ea_seg == INSN_GS) ? d->cpu->seg_base[d->ea_seg] : 0);
	return (uint32_t)(d->cpu->seg_base[d->ea_seg] + ea);
}

static void dec_advance(struct dec *d)
{
	uint64_t rip = d->cpu->rip + d->out->length;
	/* IP wraps at the code segment's size, not the operand size. */
	d->cpu->rip = d->mode64 ? rip : d->cpu->cs_db ? (uint32_t)rip : rip & 0xFFFF;
	d->out->status = INSN_DONE;
}

/* ---- mnemonics for the error message ------------------------------------------------------- */

enum { MN_ANY, MN_MEM, MN_REG, MN_MODRM };
struct mnemonic {
	uint8_t map, op, kind, arg, pfx;
	const char *name;
};

static const struct mnemonic mnemonics[] = {
	{ 1, 0xF4, MN_ANY, 0, 0, "hlt" }, { 1, 0xCC, MN_ANY, 0, 0, "int3" },
	{ 1, 0xCD, MN_ANY, 0, 0, "int" }, { 1, 0xCE, MN_ANY, 0, 0, "into" },
	{ 1, 0xF1, MN_ANY, 0, 0, "int1" }, { 1, 0xCF, MN_ANY, 0, 0, "iret" },
	{ 1, 0xFA, MN_ANY, 0, 0, "cli" }, { 1, 0xFB, MN_ANY, 0, 0, "sti" },
	{ 1, 0x9C, MN_ANY, 0, 0, "pushf" }, { 1, 0x9D, MN_ANY, 0, 0, "popf" },
	{ 1, 0xE4, MN_ANY, 0, 0, "in" }, { 1, 0xE5, MN_ANY, 0, 0, "in" },
	{ 1, 0xEC, MN_ANY, 0, 0, "in" }, { 1, 0xED, MN_ANY, 0, 0, "in" },
	{ 1, 0xE6, MN_ANY, 0, 0, "out" }, { 1, 0xE7, MN_ANY, 0, 0, "out" },
	{ 1, 0xEE, MN_ANY, 0, 0, "out" }, { 1, 0xEF, MN_ANY, 0, 0, "out" },
	{ 1, 0x6C, MN_ANY, 0, 0, "ins" }, { 1, 0x6D, MN_ANY, 0, 0, "ins" },
	{ 1, 0x6E, MN_ANY, 0, 0, "outs" }, { 1, 0x6F, MN_ANY, 0, 0, "outs" },
	{ 1, 0xA4, MN_ANY, 0, 0, "movs" }, { 1, 0xA5, MN_ANY, 0, 0, "movs" },
	{ 1, 0xAA, MN_ANY, 0, 0, "stos" }, { 1, 0xAB, MN_ANY, 0, 0, "stos" },
	{ 1, 0x8E, MN_ANY, 0, 0, "mov sreg" }, { 1, 0x9A, MN_ANY, 0, 0, "call far" },
	{ 1, 0xEA, MN_ANY, 0, 0, "jmp far" }, { 1, 0xCA, MN_ANY, 0, 0, "retf" },
	{ 1, 0xCB, MN_ANY, 0, 0, "retf" }, { 1, 0xD7, MN_ANY, 0, 0, "xlat" },
	{ 1, 0xFF, MN_MEM, 3, 0, "call far" }, { 1, 0xFF, MN_MEM, 5, 0, "jmp far" },
	{ 2, 0x00, MN_ANY, 0, 0, "sldt/str/lldt/ltr/verr/verw" },
	{ 2, 0x01, MN_MODRM, 0xC1, 0, "vmcall" }, { 2, 0x01, MN_MODRM, 0xC2, 0, "vmlaunch" },
	{ 2, 0x01, MN_MODRM, 0xC3, 0, "vmresume" }, { 2, 0x01, MN_MODRM, 0xC4, 0, "vmxoff" },
	{ 2, 0x01, MN_MODRM, 0xC8, 0, "monitor" }, { 2, 0x01, MN_MODRM, 0xC9, 0, "mwait" },
	{ 2, 0x01, MN_MODRM, 0xCA, 0, "clac" }, { 2, 0x01, MN_MODRM, 0xCB, 0, "stac" },
	{ 2, 0x01, MN_MODRM, 0xCF, 0, "encls" }, { 2, 0x01, MN_MODRM, 0xD0, 0, "xgetbv" },
	{ 2, 0x01, MN_MODRM, 0xD1, 0, "xsetbv" }, { 2, 0x01, MN_MODRM, 0xD4, 0, "vmfunc" },
	{ 2, 0x01, MN_MODRM, 0xD5, 0, "xend" }, { 2, 0x01, MN_MODRM, 0xD6, 0, "xtest" },
	{ 2, 0x01, MN_MODRM, 0xD7, 0, "enclu" }, { 2, 0x01, MN_MODRM, 0xD8, 0, "vmrun" },
	{ 2, 0x01, MN_MODRM, 0xD9, 0, "vmmcall" }, { 2, 0x01, MN_MODRM, 0xDA, 0, "vmload" },
	{ 2, 0x01, MN_MODRM, 0xDB, 0, "vmsave" }, { 2, 0x01, MN_MODRM, 0xDC, 0, "stgi" },
	{ 2, 0x01, MN_MODRM, 0xDD, 0, "clgi" }, { 2, 0x01, MN_MODRM, 0xDE, 0, "skinit" },
	{ 2, 0x01, MN_MODRM, 0xDF, 0, "invlpga" }, { 2, 0x01, MN_MODRM, 0xEE, 0, "rdpkru" },
	{ 2, 0x01, MN_MODRM, 0xEF, 0, "wrpkru" }, { 2, 0x01, MN_MODRM, 0xF8, 0, "swapgs" },
	{ 2, 0x01, MN_MODRM, 0xF9, 0, "rdtscp" }, { 2, 0x01, MN_MODRM, 0xFA, 0, "monitorx" },
	{ 2, 0x01, MN_MODRM, 0xFB, 0, "mwaitx" }, { 2, 0x01, MN_MODRM, 0xFC, 0, "clzero" },
	{ 2, 0x01, MN_MEM, 0, 0, "sgdt" }, { 2, 0x01, MN_MEM, 1, 0, "sidt" },
	{ 2, 0x01, MN_MEM, 2, 0, "lgdt" }, { 2, 0x01, MN_MEM, 3, 0, "lidt" },
	{ 2, 0x01, MN_MEM, 4, 0, "smsw" }, { 2, 0x01, MN_REG, 4, 0, "smsw" },
	{ 2, 0x01, MN_MEM, 6, 0, "lmsw" }, { 2, 0x01, MN_REG, 6, 0, "lmsw" },
	{ 2, 0x01, MN_MEM, 7, 0, "invlpg" },
	{ 2, 0x05, MN_ANY, 0, 0, "syscall" }, { 2, 0x06, MN_ANY, 0, 0, "clts" },
	{ 2, 0x07, MN_ANY, 0, 0, "sysret" }, { 2, 0x08, MN_ANY, 0, 0, "invd" },
	{ 2, 0x09, MN_ANY, 0, 0, "wbinvd" }, { 2, 0x0B, MN_ANY, 0, 0, "ud2" },
	{ 2, 0x0D, MN_ANY, 0, 0, "prefetchw" }, { 2, 0x18, MN_ANY, 0, 0, "prefetch" },
	{ 2, 0x1E, MN_MODRM, 0xFA, 0xF3, "endbr64" }, { 2, 0x1E, MN_MODRM, 0xFB, 0xF3, "endbr32" },
	{ 2, 0x1F, MN_ANY, 0, 0, "nop" },
	{ 2, 0x20, MN_ANY, 0, 0, "mov from cr" }, { 2, 0x21, MN_ANY, 0, 0, "mov from dr" },
	{ 2, 0x22, MN_ANY, 0, 0, "mov to cr" }, { 2, 0x23, MN_ANY, 0, 0, "mov to dr" },
	{ 2, 0x30, MN_ANY, 0, 0, "wrmsr" }, { 2, 0x31, MN_ANY, 0, 0, "rdtsc" },
	{ 2, 0x32, MN_ANY, 0, 0, "rdmsr" }, { 2, 0x33, MN_ANY, 0, 0, "rdpmc" },
	{ 2, 0x34, MN_ANY, 0, 0, "sysenter" }, { 2, 0x35, MN_ANY, 0, 0, "sysexit" },
	{ 2, 0x37, MN_ANY, 0, 0, "getsec" }, { 2, 0x78, MN_ANY, 0, 0, "vmread" },
	{ 2, 0x79, MN_ANY, 0, 0, "vmwrite" }, { 2, 0xA2, MN_ANY, 0, 0, "cpuid" },
	{ 2, 0xAA, MN_ANY, 0, 0, "rsm" }, { 2, 0xB0, MN_ANY, 0, 0, "cmpxchg" },
	{ 2, 0xB1, MN_ANY, 0, 0, "cmpxchg" }, { 2, 0xC0, MN_ANY, 0, 0, "xadd" },
	{ 2, 0xC1, MN_ANY, 0, 0, "xadd" }, { 2, 0xB9, MN_ANY, 0, 0, "ud1" },
	{ 2, 0xFF, MN_ANY, 0, 0, "ud0" },
	{ 2, 0xAE, MN_MEM, 6, 0x66, "clwb" }, { 2, 0xAE, MN_MEM, 7, 0x66, "clflushopt" },
	{ 2, 0xAE, MN_MEM, 4, 0xF3, "ptwrite" }, { 2, 0xAE, MN_REG, 0, 0xF3, "rdfsbase" },
	{ 2, 0xAE, MN_REG, 1, 0xF3, "rdgsbase" }, { 2, 0xAE, MN_REG, 2, 0xF3, "wrfsbase" },
	{ 2, 0xAE, MN_REG, 3, 0xF3, "wrgsbase" }, { 2, 0xAE, MN_REG, 5, 0xF3, "incssp" },
	{ 2, 0xAE, MN_REG, 6, 0xF3, "umonitor" }, { 2, 0xAE, MN_REG, 6, 0x66, "tpause" },
	{ 2, 0xAE, MN_REG, 6, 0xF2, "umwait" },
	{ 2, 0xAE, MN_MEM, 0, 0, "fxsave" }, { 2, 0xAE, MN_MEM, 1, 0, "fxrstor" },
	{ 2, 0xAE, MN_MEM, 2, 0, "ldmxcsr" }, { 2, 0xAE, MN_MEM, 3, 0, "stmxcsr" },
	{ 2, 0xAE, MN_MEM, 4, 0, "xsave" }, { 2, 0xAE, MN_MEM, 5, 0, "xrstor" },
	{ 2, 0xAE, MN_MEM, 6, 0, "xsaveopt" }, { 2, 0xAE, MN_MEM, 7, 0, "clflush" },
	{ 2, 0xAE, MN_REG, 5, 0, "lfence" }, { 2, 0xAE, MN_REG, 6, 0, "mfence" },
	{ 2, 0xAE, MN_REG, 7, 0, "sfence" },
	{ 2, 0xC7, MN_MEM, 6, 0x66, "vmclear" }, { 2, 0xC7, MN_MEM, 6, 0xF3, "vmxon" },
	{ 2, 0xC7, MN_REG, 7, 0xF3, "rdpid" },
	{ 2, 0xC7, MN_MEM, 1, 0, "cmpxchg8b" }, { 2, 0xC7, MN_MEM, 3, 0, "xrstors" },
	{ 2, 0xC7, MN_MEM, 4, 0, "xsavec" }, { 2, 0xC7, MN_MEM, 5, 0, "xsaves" },
	{ 2, 0xC7, MN_MEM, 6, 0, "vmptrld" }, { 2, 0xC7, MN_MEM, 7, 0, "vmptrst" },
	{ 2, 0xC7, MN_REG, 6, 0, "rdrand" }, { 2, 0xC7, MN_REG, 7, 0, "rdseed" },
	{ 3, 0x80, MN_ANY, 0, 0x66, "invept" }, { 3, 0x81, MN_ANY, 0, 0x66, "invvpid" },
	{ 3, 0x82, MN_ANY, 0, 0x66, "invpcid" }, { 3, 0xF0, MN_ANY, 0, 0xF2, "crc32" },
	{ 3, 0xF1, MN_ANY, 0, 0xF2, "crc32" }, { 3, 0xF0, MN_ANY, 0, 0, "movbe" },
	{ 3, 0xF1, MN_ANY, 0, 0, "movbe" },
};

static uint8_t dec_mandatory_prefix(const struct dec *d)
{
	return d->rep ? 0xF3 : d->repne ? 0xF2 : d->p66 ? 0x66 : 0;
}

static void dec_name(struct dec *d)
{
	const char *name = NULL;
	if (d->vex)
		name = "vex/evex-encoded";
	for (size_t i = 0; !name && i < sizeof(mnemonics) / sizeof(mnemonics[0]); i++) {
		const struct mnemonic *e = &mnemonics[i];
		if (e->map != d->map || e->op != d->op)
			continue;
		if (e->pfx && e->pfx != dec_mandatory_prefix(d))
			continue;
		if ((e->kind == MN_MEM && (d->mod == 3 || d->reg != e->arg)) ||
		    (e->kind == MN_REG && (d->mod != 3 || d->reg != e->arg)) ||
		    (e->kind == MN_MODRM && d->modrm != e->arg))
			continue;
		if (e->kind != MN_ANY && !d->has_modrm)
			continue;
		name = e->name;
	}
	if (name)
		snprintf(d->out->mnemonic, sizeof(d->out->mnemonic), "%s", name);
}

static void dec_set_name(struct dec *d, const char *name, bool suffix64)
{
	snprintf(d->out->mnemonic, sizeof(d->out->mnemonic), "%s%s%s", d->lock ? "lock " : "", name,
		 suffix64 && (d->rex & 8) ? "64" : "");
}

/* ---- int3, int n, int1, into --------------------------------------------------------------- */

static int insn_trap(struct dec *d, uint8_t vec)
{
	dec_advance(d);
	dec_exception(d, vec, false, 0);
	d->out->trap = true;
	return 0;
}

/* ---- cmpxchg8b / cmpxchg16b ---------------------------------------------------------------- */

static pthread_mutex_t insn_split_lock = PTHREAD_MUTEX_INITIALIZER;

/* Host compare-and-swap of 16 bytes at p (16-aligned): on failure lo and hi receive the memory value. */
static bool insn_cas16(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo, uint64_t nhi)
{
#if defined(__x86_64__)
	bool ok;
	__asm__ volatile("lock cmpxchg16b %1"
			 : "=@ccz"(ok), "+m"(*(volatile unsigned __int128 *)p), "+a"(*lo), "+d"(*hi)
			 : "b"(nlo), "c"(nhi)
			 : "memory");
	return ok;
#else
	pthread_mutex_lock(&insn_split_lock);
	uint64_t cur[2];
	memcpy(cur, p, 16);
	bool ok = cur[0] == *lo && cur[1] == *hi;
	if (ok) {
		uint64_t n[2] = { nlo, nhi };
		memcpy(p, n, 16);
	} else {
		*lo = cur[0];
		*hi = cur[1];
	}
	pthread_mutex_unlock(&insn_split_lock);
	return ok;
#endif
}

static int insn_cmpxchg(struct dec *d)
{
	struct insn_cpu *c = d->cpu;
	bool wide = d->mode64 && (d->rex & 8);
	dec_set_name(d, wide ? "cmpxchg16b" : "cmpxchg8b", false);
	if (d->mod == 3)
		return dec_exception(d, X86_VEC_UD, false, 0);
	uint64_t la = dec_linear(d, 0);
	if (wide && (la & 15))
		return dec_gp0(d);
	struct pagewalk_fault f;
	bool ok;
	uint64_t lo, hi = 0;
	if (wide) {
		void *p;
		int r = pagewalk_host_ptr(&d->pw, d->mem, la, 16, PAGEWALK_WRITE, &p, &f);
		if (r)
			return dec_mem_error(d, r, &f, d->ea_seg);
		lo = c->gpr[INSN_RAX];
		hi = c->gpr[INSN_RDX];
		ok = insn_cas16(p, &lo, &hi, c->gpr[INSN_RBX], c->gpr[INSN_RCX]);
	} else {
		uint64_t expect = (c->gpr[INSN_RDX] << 32) | (uint32_t)c->gpr[INSN_RAX];
		uint64_t want = (c->gpr[INSN_RCX] << 32) | (uint32_t)c->gpr[INSN_RBX];
		void *p = NULL;
		int r = -EINVAL;
		if ((la & 7) == 0)
			r = pagewalk_host_ptr(&d->pw, d->mem, la, 8, PAGEWALK_WRITE, &p, &f);
		if (r == 0) {
			lo = expect;
			ok = __atomic_compare_exchange_n((uint64_t *)p, &lo, want, false,
							 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
		} else if (r != -EINVAL) {
			return dec_mem_error(d, r, &f, d->ea_seg);
		} else {
			/* Misaligned: a host locked access could be a split lock (slow, or fatal under
			 * split-lock detection), so serialise against other completions instead. */
			r = pagewalk_check(&d->pw, d->mem, la, 8, PAGEWALK_WRITE, &f);
			if (r)
				return dec_mem_error(d, r, &f, d->ea_seg);
			pthread_mutex_lock(&insn_split_lock);
			r = pagewalk_read(&d->pw, d->mem, la, &lo, 8, PAGEWALK_READ, &f);
			ok = r == 0 && lo == expect;
			if (ok)
				r = pagewalk_write(&d->pw, d->mem, la, &want, 8, &f);
			pthread_mutex_unlock(&insn_split_lock);
			if (r)
				return dec_mem_error(d, r, &f, d->ea_seg);
		}
	}
	if (ok) {
		c->rflags |= X86_RFLAGS_ZF;
	} else {
		c->rflags &= ~X86_RFLAGS_ZF;
		/* The SDM loads EDX:EAX (RDX:RAX) only when the comparison fails; 32-bit register
		 * writes zero-extend into the upper halves. */
		c->gpr[INSN_RAX] = wide ? lo : (uint32_t)lo;
		c->gpr[INSN_RDX] = wide ? hi : lo >> 32;
	}
	dec_advance(d);
	return 0;
}

/* ---- XSAVE family -------------------------------------------------------------------------- */

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Whether component i (>= 2) has room in the state buffer. */
static bool xs_holds(const struct insn_xstate *xs, unsigned i)
{
	const struct insn_xcomp *e = &xs->comp[i];
	return e->size && e->offset >= XSAVE_EXT && (uint64_t)e->offset + e->size <= xs->size;
}

/* Bytes of component i that exist in the current mode: outside 64-bit mode only registers 0-7
 * of the vector files are visible (SDM vol. 1, 13.13). */
static uint32_t xs_live(const struct dec *d, const struct insn_xstate *xs, unsigned i)
{
	uint32_t sz = xs->comp[i].size;
	if (d->mode64)
		return sz;
	switch (i) {
	case 2: return sz < 128 ? sz : 128; /* YMM_Hi128 0-7 */
	case 6: return sz < 256 ? sz : 256; /* ZMM_Hi256 0-7 */
	case 7: return 0;                   /* Hi16_ZMM: registers 16-31 */
	default: return sz;
	}
}

static unsigned xs_nxmm(const struct dec *d)
{
	return d->mode64 ? 16 : 8;
}

static uint32_t xs_mxcsr_mask(const struct insn_xstate *xs)
{
	uint32_t m = get32(xs->area + 28);
	return m ? m : MXCSR_MASK_DEFAULT;
}

/* XINUSE as the instructions see it: XSTATE_BV of the buffer, limited to enabled components the
 * buffer can hold (others, e.g. supervisor state KVM does not put in this buffer, count as init). */
static uint64_t xs_xinuse(const struct dec *d, const struct insn_xstate *xs)
{
	uint64_t bv = get64(xs->area + XSAVE_HDR) & (d->cpu->xcr0 | d->cpu->xss) & ~XCOMP_COMPACT;
	for (unsigned i = 2; i < 63; i++)
		if (((bv >> i) & 1) && !xs_holds(xs, i))
			bv &= ~(1ull << i);
	return bv;
}

/* Offsets of the compacted format for the components in xcomp (SDM vol. 1, 13.4.3); returns the
 * total size. */
static uint64_t xs_compact_offsets(const struct insn_xstate *xs, uint64_t xcomp, uint32_t off[64])
{
	uint64_t o = XSAVE_EXT;
	for (unsigned i = 2; i < 63; i++) {
		off[i] = 0;
		if (!((xcomp >> i) & 1))
			continue;
		if (xs->comp[i].align64)
			o = (o + 63) & ~63ull;
		off[i] = (uint32_t)o;
		o += xs->comp[i].size;
	}
	return o;
}

/* The legacy region as a save writes it: x87 (or its initial state), MXCSR, MXCSR_MASK, XMMs. */
static void xs_legacy_image(const struct dec *d, const struct insn_xstate *xs, uint64_t xinuse,
			    uint8_t img[512])
{
	memset(img, 0, 512);
	if (xinuse & 1) {
		memcpy(img, xs->area, 24);
		memcpy(img + 32, xs->area + 32, 128);
	} else {
		img[0] = 0x7F; /* FCW 037FH; FTW (abridged) 0 = all empty */
		img[1] = 0x03;
	}
	if (!(d->rex & 8)) {
		/* 32-bit format: FIP[31:0], FCS, FDP[31:0], FDS; the selectors are not in KVM's
		 * buffer and are stored as 0, like CPUs that deprecate FCS/FDS. */
		memset(img + 12, 0, 4);
		memset(img + 20, 0, 4);
	}
	memcpy(img + 24, xs->area + 24, 4);
	put32(img + 28, xs_mxcsr_mask(xs));
	if (xinuse & 2)
		memcpy(img + 160, xs->area + 160, 256);
}

static void xs_x87_load(const struct dec *d, uint8_t *st, const uint8_t *img)
{
	memcpy(st, img, 24);
	memcpy(st + 32, img + 32, 128);
	if (!(d->rex & 8)) {
		put64(st + 8, get32(img + 8));
		put64(st + 16, get32(img + 16));
	}
}

static void xs_x87_init(uint8_t *st)
{
	memset(st, 0, 24);
	memset(st + 32, 0, 128);
	st[0] = 0x7F;
	st[1] = 0x03;
}

/* A piece of a save: bytes [off, off+len) of the area, from src (NULL = zeros). */
struct xs_piece {
	uint64_t off;
	uint32_t len;
	const uint8_t *src;
};

#define XS_MAX_PIECES 72

static int xs_write_pieces(struct dec *d, const struct xs_piece *p, unsigned n)
{
	static const uint8_t zeros[4096];
	struct pagewalk_fault f;
	/* All pieces are checked before any is written: a fault leaves memory untouched. */
	for (unsigned i = 0; i < n; i++) {
		int r = pagewalk_check(&d->pw, d->mem, dec_linear(d, p[i].off), p[i].len,
				       PAGEWALK_WRITE, &f);
		if (r)
			return dec_mem_error(d, r, &f, d->ea_seg);
	}
	for (unsigned i = 0; i < n; i++) {
		for (uint32_t done = 0; done < p[i].len;) {
			uint32_t k = p[i].len - done;
			if (!p[i].src && k > sizeof(zeros))
				k = sizeof(zeros);
			const uint8_t *src = p[i].src ? p[i].src + done : zeros;
			int r = pagewalk_write(&d->pw, d->mem, dec_linear(d, p[i].off + done), src, k, &f);
			if (r) /* only if another vCPU changed the page tables in between */
				return dec_mem_error(d, r, &f, d->ea_seg);
			done += k;
		}
	}
	return 0;
}

enum xs_kind { XS_XSAVE, XS_XSAVEOPT, XS_XSAVEC, XS_XSAVES };

static int insn_xsave(struct dec *d, struct insn_xstate *xs, enum xs_kind kind)
{
	struct insn_cpu *c = d->cpu;
	uint64_t mask = (c->gpr[INSN_RDX] << 32) | (uint32_t)c->gpr[INSN_RAX];
	uint64_t rfbm = mask & (kind == XS_XSAVES ? (c->xcr0 | c->xss) : c->xcr0) & ~XCOMP_COMPACT;
	uint64_t xinuse = xs_xinuse(d, xs);
	bool compact = kind == XS_XSAVEC || kind == XS_XSAVES;
	uint8_t img[XSAVE_EXT];
	struct xs_piece pc[XS_MAX_PIECES];
	unsigned n = 0;
	struct pagewalk_fault f;

	if (compact && (rfbm & 2) && get32(xs->area + 24) != MXCSR_INIT)
		xinuse |= 2; /* the compacted forms treat MXCSR as part of SSE state */
	uint64_t saved = rfbm;                   /* components whose data is written */
	if (kind != XS_XSAVE)
		saved &= xinuse;                 /* the init optimization */
	xs_legacy_image(d, xs, xinuse, img);

	if (saved & 1) {
		pc[n++] = (struct xs_piece){ 0, 24, img };
		pc[n++] = (struct xs_piece){ 32, 128, img + 32 };
	}
	bool mxcsr = compact ? (saved & 2) : (rfbm & 6);
	if (mxcsr)
		pc[n++] = (struct xs_piece){ 24, 8, img + 24 };
	if (saved & 2)
		pc[n++] = (struct xs_piece){ 160, 16 * xs_nxmm(d), img + 160 };

	uint32_t coff[64];
	if (compact) {
		put64(img + XSAVE_HDR, xinuse & rfbm);
		put64(img + XSAVE_HDR + 8, rfbm | XCOMP_COMPACT);
		pc[n++] = (struct xs_piece){ XSAVE_HDR, 16, img + XSAVE_HDR };
		xs_compact_offsets(xs, rfbm, coff);
	} else {
		/* XSAVE rewrites only the RFBM bits of XSTATE_BV: read the rest from memory. */
		uint64_t bv;
		int r = pagewalk_read(&d->pw, d->mem, dec_linear(d, XSAVE_HDR), &bv, 8, PAGEWALK_READ, &f);
		if (r)
			return dec_mem_error(d, r, &f, d->ea_seg);
		put64(img + XSAVE_HDR, (bv & ~rfbm) | (xinuse & rfbm));
		pc[n++] = (struct xs_piece){ XSAVE_HDR, 8, img + XSAVE_HDR };
	}
	for (unsigned i = 2; i < 63; i++) {
		if (!((saved >> i) & 1))
			continue;
		uint32_t live = xs_live(d, xs, i);
		if (!live)
			continue;
		uint64_t off = compact ? coff[i] : xs->comp[i].offset;
		if (!compact && !xs->comp[i].offset)
			return dec_unsupported(d, "XSAVE component without a standard offset");
		const uint8_t *src = ((xinuse >> i) & 1) ? xs->area + xs->comp[i].offset : NULL;
		pc[n++] = (struct xs_piece){ off, live, src };
	}
	if (xs_write_pieces(d, pc, n))
		return 1;
	dec_advance(d);
	return 0;
}

static int insn_xrstor(struct dec *d, struct insn_xstate *xs, bool xrstors)
{
	struct insn_cpu *c = d->cpu;
	struct pagewalk_fault f;
	uint8_t hdr[64];
	int r = pagewalk_read(&d->pw, d->mem, dec_linear(d, XSAVE_HDR), hdr, 64, PAGEWALK_READ, &f);
	if (r)
		return dec_mem_error(d, r, &f, d->ea_seg);
	uint64_t bv = get64(hdr), xcomp = get64(hdr + 8);
	uint64_t allowed = xrstors ? (c->xcr0 | c->xss) : c->xcr0;
	bool compact = xcomp & XCOMP_COMPACT;
	static const uint8_t zero48[48];
	if (compact) {
		if ((xcomp & ~XCOMP_COMPACT & ~allowed) || (bv & ~(xcomp & ~XCOMP_COMPACT)) ||
		    memcmp(hdr + 16, zero48, 48))
			return dec_gp0(d);
	} else {
		if (xrstors || (bv & ~c->xcr0) || memcmp(hdr + 8, zero48, 16))
			return dec_gp0(d);
	}
	uint64_t mask = (c->gpr[INSN_RDX] << 32) | (uint32_t)c->gpr[INSN_RAX];
	uint64_t rfbm = mask & allowed & ~XCOMP_COMPACT;
	uint32_t coff[64];
	if (compact)
		xs_compact_offsets(xs, xcomp & ~XCOMP_COMPACT, coff);

	/* Build the new state in a copy so that a fault part-way leaves the vCPU state untouched. */
	uint8_t *st = malloc(xs->size);
	if (!st)
		return dec_unsupported(d, "out of memory");
	memcpy(st, xs->area, xs->size);
	uint8_t leg[416];
	unsigned nx = xs_nxmm(d);
	int ret = 1;
	if ((rfbm & 1) && (bv & 1)) {
		if ((r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 0), leg, 160, PAGEWALK_READ, &f)))
			goto fault;
		xs_x87_load(d, st, leg);
	} else if (rfbm & 1) {
		xs_x87_init(st);
	}
	if (rfbm & 2) {
		if (bv & 2) {
			r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 160), st + 160, 16 * nx,
					  PAGEWALK_READ, &f);
			if (r)
				goto fault;
		} else {
			memset(st + 160, 0, 16 * nx);
		}
	}
	/* MXCSR: the standard form loads it whenever RFBM[1] or RFBM[2] is set, whatever
	 * XSTATE_BV says; the compacted form treats it as part of SSE state. */
	bool load_mxcsr = compact ? ((rfbm & 2) && (bv & 2)) : (rfbm & 6);
	if (load_mxcsr) {
		uint32_t mx;
		if ((r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 24), &mx, 4, PAGEWALK_READ, &f)))
			goto fault;
		if (mx & ~xs_mxcsr_mask(xs)) {
			ret = dec_gp0(d);
			goto out;
		}
		put32(st + 24, mx);
	} else if (compact && (rfbm & 2)) {
		put32(st + 24, MXCSR_INIT);
	}
	for (unsigned i = 2; i < 63; i++) {
		if (!((rfbm >> i) & 1))
			continue;
		uint32_t live = xs_live(d, xs, i);
		if (!xs_holds(xs, i)) {
			if ((bv >> i) & 1) {
				ret = dec_unsupported(d, "XRSTOR of a component the XSAVE buffer cannot hold");
				goto out;
			}
			continue;
		}
		uint8_t *dst = st + xs->comp[i].offset;
		if ((bv >> i) & 1) {
			uint64_t off = compact ? coff[i] : xs->comp[i].offset;
			r = pagewalk_read(&d->pw, d->mem, dec_linear(d, off), dst, live, PAGEWALK_READ, &f);
			if (r)
				goto fault;
		} else {
			memset(dst, 0, live); /* every component >= 2 defined so far inits to zeros */
		}
	}
	uint64_t cur = get64(st + XSAVE_HDR);
	put64(st + XSAVE_HDR, (cur & ~rfbm) | (bv & rfbm));
	memcpy(xs->area, st, xs->size);
	xs->dirty = true;
	dec_advance(d);
	ret = 0;
	goto out;
fault:
	ret = dec_mem_error(d, r, &f, d->ea_seg);
out:
	free(st);
	return ret;
}

static int insn_fxsave(struct dec *d, struct insn_xstate *xs)
{
	uint8_t img[512];
	xs_legacy_image(d, xs, xs_xinuse(d, xs), img);
	/* AMD's fast FXSAVE (EFER.FFXSR) skips the XMM registers at CPL 0 in 64-bit mode. */
	bool fast = (d->cpu->efer & X86_EFER_FFXSR) && d->mode64 && d->cpu->cpl == 0;
	size_t len = fast ? 160 : 160 + 16 * xs_nxmm(d);
	struct pagewalk_fault f;
	int r = pagewalk_write(&d->pw, d->mem, dec_linear(d, 0), img, len, &f);
	if (r)
		return dec_mem_error(d, r, &f, d->ea_seg);
	dec_advance(d);
	return 0;
}

static int insn_fxrstor(struct dec *d, struct insn_xstate *xs)
{
	uint8_t img[416];
	bool fast = (d->cpu->efer & X86_EFER_FFXSR) && d->mode64 && d->cpu->cpl == 0;
	size_t len = fast ? 160 : 160 + 16 * xs_nxmm(d);
	struct pagewalk_fault f;
	int r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 0), img, len, PAGEWALK_READ, &f);
	if (r)
		return dec_mem_error(d, r, &f, d->ea_seg);
	uint32_t mx = get32(img + 24);
	if (mx & ~xs_mxcsr_mask(xs))
		return dec_gp0(d);
	xs_x87_load(d, xs->area, img);
	put32(xs->area + 24, mx);
	if (!fast)
		memcpy(xs->area + 160, img + 160, len - 160);
	/* After FXRSTOR the x87 and SSE components are in use (XINUSE may always be 1). */
	put64(xs->area + XSAVE_HDR, get64(xs->area + XSAVE_HDR) | 3);
	xs->dirty = true;
	dec_advance(d);
	return 0;
}

/* Checks shared by the FXSAVE and XSAVE families, then dispatch. */
static int insn_xfamily(struct dec *d, struct insn_xstate *xs, int which)
{
	struct insn_cpu *c = d->cpu;
	enum { FXSAVE, FXRSTOR, XSAVE, XRSTOR, XSAVEOPT, XSAVEC, XSAVES, XRSTORS };
	static const char *const names[] = { "fxsave", "fxrstor", "xsave", "xrstor", "xsaveopt",
					     "xsavec", "xsaves", "xrstors" };
	dec_set_name(d, names[which], true);
	bool fx = which <= FXRSTOR;
	if (d->lock || (fx && (c->cr0 & X86_CR0_EM)) || (!fx && !(c->cr4 & X86_CR4_OSXSAVE)))
		return dec_exception(d, X86_VEC_UD, false, 0);
	if (c->cr0 & X86_CR0_TS)
		return dec_exception(d, X86_VEC_NM, false, 0);
	if ((which == XSAVES || which == XRSTORS) && c->cpl)
		return dec_gp0(d);
	if (dec_linear(d, 0) & (fx ? 15 : 63))
		return dec_gp0(d);
	if (!xs || !xs->area || !xs->comp || xs->size < XSAVE_EXT)
		return dec_unsupported(d, "no XSAVE state buffer given");
	switch (which) {
	case FXSAVE: return insn_fxsave(d, xs);
	case FXRSTOR: return insn_fxrstor(d, xs);
	case XSAVE: return insn_xsave(d, xs, XS_XSAVE);
	case XSAVEOPT: return insn_xsave(d, xs, XS_XSAVEOPT);
	case XSAVEC: return insn_xsave(d, xs, XS_XSAVEC);
	case XSAVES: return insn_xsave(d, xs, XS_XSAVES);
	case XRSTOR: return insn_xrstor(d, xs, false);
	default: return insn_xrstor(d, xs, true);
	}
}

static int insn_xgetbv(struct dec *d, struct insn_xstate *xs)
{
	struct insn_cpu *c = d->cpu;
	dec_set_name(d, "xgetbv", false);
	if (d->lock || !(c->cr4 & X86_CR4_OSXSAVE))
		return dec_exception(d, X86_VEC_UD, false, 0);
	uint64_t v;
	switch ((uint32_t)c->gpr[INSN_RCX]) {
	case 0: v = c->xcr0; break;
	case 1: /* XCR0 & XINUSE */
		if (!xs || !xs->area || xs->size < XSAVE_EXT)
			return dec_unsupported(d, "no XSAVE state buffer given");
		v = c->xcr0 & xs_xinuse(d, xs);
		break;
	default: return dec_gp0(d);
	}
	c->gpr[INSN_RAX] = (uint32_t)v;
	c->gpr[INSN_RDX] = v >> 32;
	dec_advance(d);
	return 0;
}

/* ---- entry points -------------------------------------------------------------------------- */

/* F3 0F B8 popcnt, F3 0F BC tzcnt, F3 0F BD lzcnt: Linux patches popcnt over its software
 * hweight calls, and KVM's emulator knows none of the three. */
static int insn_bitcount(struct dec *d)
{
	struct insn_cpu *c = d->cpu;
	static const char *const names[] = { "popcnt", "tzcnt", "lzcnt" };
	int which = d->op == 0xB8 ? 0 : d->op == 0xBC ? 1 : 2;
	dec_set_name(d, names[which], false);
	unsigned bits = d->opsz * 8;
	uint64_t src = 0;
	if (d->mod == 3) {
		src = c->gpr[d->rm | ((d->rex & 1) << 3)];
	} else {
		struct pagewalk_fault f;
		int r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 0), &src, d->opsz, PAGEWALK_READ, &f);
		if (r)
			return dec_mem_error(d, r, &f, d->ea_seg);
	}
	src = trunc_to(src, d->opsz);
	uint64_t res;
	uint64_t fl = c->rflags & ~X86_RFLAGS_STATUS;
	if (which == 0) {
		res = (uint64_t)__builtin_popcountll(src);
		if (!src)
			fl |= X86_RFLAGS_ZF;
	} else {
		if (!src)
			res = bits;
		else if (which == 1)
			res = (uint64_t)__builtin_ctzll(src);
		else
			res = (uint64_t)__builtin_clzll(src) - (64 - bits);
		if (!src)
			fl |= X86_RFLAGS_CF;
		if (!res)
			fl |= X86_RFLAGS_ZF;
	}
	unsigned dst = d->reg | ((d->rex & 4) << 1);
	if (d->opsz == 2)
		c->gpr[dst] = (c->gpr[dst] & ~0xFFFFull) | res;
	else
		c->gpr[dst] = res; /* 32-bit results zero-extend */
	c->rflags = fl;
	dec_advance(d);
	return 0;
}

/* 0F 01 CA clac / CB stac: SMAP's AC toggles, at CPL 0 only. */
static int insn_clac_stac(struct dec *d)
{
	bool set = d->modrm == 0xCB;
	dec_set_name(d, set ? "stac" : "clac", false);
	if (d->cpu->cpl != 0)
		return dec_exception(d, X86_VEC_UD, false, 0);
	if (set)
		d->cpu->rflags |= X86_RFLAGS_AC;
	else
		d->cpu->rflags &= ~X86_RFLAGS_AC;
	dec_advance(d);
	return 0;
}

/* 0F C7 /6 rdrand, /7 rdseed (register forms): the host's entropy, CF=1 (always succeeds). */
static int insn_rdrand(struct dec *d)
{
	struct insn_cpu *c = d->cpu;
	dec_set_name(d, d->reg == 6 ? "rdrand" : "rdseed", false);
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		c->rflags &= ~X86_RFLAGS_STATUS;
		v = 0; /* CF=0 tells the guest to retry */
	} else {
		c->rflags = (c->rflags & ~X86_RFLAGS_STATUS) | X86_RFLAGS_CF;
	}
	unsigned dst = d->rm | ((d->rex & 1) << 3);
	if (d->opsz == 2)
		c->gpr[dst] = (c->gpr[dst] & ~0xFFFFull) | (v & 0xFFFF);
	else
		c->gpr[dst] = trunc_to(v, d->opsz);
	dec_advance(d);
	return 0;
}

/* 0F AE E8/F0/F8 lfence/mfence/sfence: the VMM's exit already serialised the vCPU. */
static int insn_fence(struct dec *d)
{
	static const char *const names[] = { "lfence", "mfence", "sfence" };
	dec_set_name(d, names[d->reg - 5], false);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	dec_advance(d);
	return 0;
}

/* 9B fwait: #NM when CR0.TS and CR0.MP are both set, else it only waits for x87 work, which the
 * exit has already drained (a pending unmasked x87 error would need FSW from the XSAVE state; KVM
 * keeps it there and delivers #MF itself on the next x87 instruction). */
/* 0F AE /2 ldmxcsr m32, /3 stmxcsr m32: MXCSR lives in the legacy region of the XSAVE state
 * (offset 24). Linux's kernel_fpu_begin loads it; KVM's emulator rejects both. */
static int insn_mxcsr(struct dec *d, struct insn_xstate *xs)
{
	struct insn_cpu *c = d->cpu;
	bool load = d->reg == 2;
	dec_set_name(d, load ? "ldmxcsr" : "stmxcsr", false);
	if (d->lock || (c->cr0 & X86_CR0_EM) || !(c->cr4 & X86_CR4_OSFXSR))
		return dec_exception(d, X86_VEC_UD, false, 0);
	if (c->cr0 & X86_CR0_TS)
		return dec_exception(d, X86_VEC_NM, false, 0);
	if (!xs || !xs->area || xs->size < XSAVE_EXT)
		return dec_unsupported(d, "no XSAVE state buffer given");
	struct pagewalk_fault f;
	uint32_t mx;
	int r;
	if (load) {
		if ((r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 0), &mx, 4, PAGEWALK_READ, &f)))
			return dec_mem_error(d, r, &f, d->ea_seg);
		if (mx & ~xs_mxcsr_mask(xs))
			return dec_gp0(d);
		put32(xs->area + 24, mx);
		/* KVM applies MXCSR from the buffer only with SSE (or AVX) in XSTATE_BV. */
		put64(xs->area + XSAVE_HDR, get64(xs->area + XSAVE_HDR) | 2);
		xs->dirty = true;
	} else {
		mx = get32(xs->area + 24);
		if ((r = pagewalk_write(&d->pw, d->mem, dec_linear(d, 0), &mx, 4, &f)))
			return dec_mem_error(d, r, &f, d->ea_seg);
	}
	dec_advance(d);
	return 0;
}

/* 0F 03 lsl r, r/m16: the segment limit of a GDT descriptor. Linux's paranoid entry reads its CPU
 * number this way (from the per-CPU segment's limit). LDT selectors and descriptors LSL refuses set
 * ZF=0 and leave the destination alone. */
static int insn_lsl(struct dec *d)
{
	struct insn_cpu *c = d->cpu;
	dec_set_name(d, "lsl", false);
	uint16_t sel;
	if (d->mod == 3) {
		sel = (uint16_t)c->gpr[d->rm | ((d->rex & 1) << 3)];
	} else {
		struct pagewalk_fault f;
		int r = pagewalk_read(&d->pw, d->mem, dec_linear(d, 0), &sel, 2, PAGEWALK_READ, &f);
		if (r)
			return dec_mem_error(d, r, &f, d->ea_seg);
	}
	bool ok = false;
	uint64_t desc = 0;
	unsigned idx = sel >> 3;
	if (idx && !(sel & 4) && idx * 8u + 7u <= c->gdt_limit) {
		struct pagewalk_ctx pw = d->pw;
		pw.cpl = 0; /* descriptor tables are read with supervisor rights */
		struct pagewalk_fault f;
		int r = pagewalk_read(&pw, d->mem, c->gdt_base + idx * 8u, &desc, 8, PAGEWALK_READ, &f);
		if (r)
			return dec_mem_error(d, r, &f, INSN_DS);
		unsigned type = (desc >> 40) & 0xf, s_bit = (desc >> 44) & 1, dpl = (desc >> 45) & 3;
		bool conforming_code = s_bit && (type & 0xc) == 0xc;
		/* System descriptors LSL accepts in long mode: LDT (2), TSS available/busy (9, 11). */
		bool type_ok = s_bit || type == 2 || type == 9 || type == 11;
		unsigned need = c->cpl > (sel & 3u) ? c->cpl : (sel & 3u);
		ok = type_ok && (conforming_code || dpl >= need);
	}
	if (ok) {
		uint64_t limit = (desc & 0xffff) | ((desc >> 32) & 0xf0000);
		if (desc & (1ull << 55))
			limit = (limit << 12) | 0xfff;
		unsigned dst = d->reg | ((d->rex & 4) << 1);
		if (d->opsz == 2)
			c->gpr[dst] = (c->gpr[dst] & ~0xFFFFull) | (limit & 0xFFFF);
		else
			c->gpr[dst] = (uint32_t)limit;
		c->rflags |= X86_RFLAGS_ZF;
	} else {
		c->rflags &= ~X86_RFLAGS_ZF;
	}
	dec_advance(d);
	return 0;
}

/* F3 0F C7 /7 rdpid r64: IA32_TSC_AUX (Linux keeps the CPU and node numbers there). */
static int insn_rdpid(struct dec *d)
{
	dec_set_name(d, "rdpid", false);
	d->cpu->gpr[d->rm | ((d->rex & 1) << 3)] = d->mode64 ? d->cpu->tsc_aux : (uint32_t)d->cpu->tsc_aux;
	dec_advance(d);
	return 0;
}

static int insn_fwait(struct dec *d)
{
	dec_set_name(d, "fwait", false);
	if ((d->cpu->cr0 & X86_CR0_TS) && (d->cpu->cr0 & X86_CR0_MP))
		return dec_exception(d, X86_VEC_NM, false, 0);
	dec_advance(d);
	return 0;
}


/* ---- SSE data moves and logic (legacy encodings) ----
 * Where guest kernel mode is emulated, KVM's emulator rejects most SSE instructions; UEFI programs
 * (systemd-boot, GRUB, shim) use a few for copies and zeroing: the moves between XMM registers,
 * general registers and memory, and the logic and unpack forms compilers emit with them. XMM
 * registers live in the legacy region of the XSAVE state (offset 160, 16 bytes each). */
#define XMM_OFF 160

static uint8_t *xmm_reg(struct insn_xstate *xs, unsigned i)
{
	/* Components in their initial configuration (XSTATE_BV bit 1 clear) are zero whatever the
	 * buffer holds: make that explicit before the first write. */
	if (!(get64(xs->area + XSAVE_HDR) & 2)) {
		memset(xs->area + XMM_OFF, 0, 16 * 16);
		put64(xs->area + XSAVE_HDR, get64(xs->area + XSAVE_HDR) | 2);
		if (!get32(xs->area + 24))
			put32(xs->area + 24, 0x1f80);
		xs->dirty = true;
	}
	return xs->area + XMM_OFF + 16 * i;
}

enum sse_op { SSE_LOAD, SSE_LOADZ, SSE_STORE, SSE_XOR, SSE_UNPCKLQ, SSE_UNPCKHQ, SSE_MOVHI_LOAD, SSE_MOVHI_STORE,
	      SSE_MOVLO_LOAD, SSE_MOVLO_STORE, SSE_GPR_TO_XMM, SSE_XMM_TO_GPR, SSE_AND, SSE_OR };

static int insn_sse(struct dec *d, struct insn_xstate *xs, enum sse_op op, unsigned size, bool align,
		    bool zero_upper, const char *name)
{
	struct insn_cpu *c = d->cpu;
	dec_set_name(d, name, false);
	if (d->lock || (c->cr0 & X86_CR0_EM) || !(c->cr4 & X86_CR4_OSFXSR))
		return dec_exception(d, X86_VEC_UD, false, 0);
	if (c->cr0 & X86_CR0_TS)
		return dec_exception(d, X86_VEC_NM, false, 0);
	if (!xs || !xs->area || xs->size < XSAVE_EXT)
		return dec_unsupported(d, "no XSAVE state buffer given");
	unsigned nreg = d->mode64 ? 16 : 8;
	unsigned reg = (d->reg | ((d->rex & 4) << 1)) % nreg, rm = (d->rm | ((d->rex & 1) << 3)) % nreg;
	uint8_t src[16] = { 0 }, *x = xmm_reg(xs, reg);
	struct pagewalk_fault f;
	int r;
	uint64_t la = d->mod == 3 ? 0 : dec_linear(d, 0);
	if (d->mod != 3 && align && (la & 15))
		return dec_gp0(d);
	switch (op) {
	case SSE_GPR_TO_XMM: /* movd/movq xmm, r/m */
		if (d->mod == 3) {
			uint64_t v = c->gpr[rm];
			memcpy(src, &v, size);
		} else if ((r = pagewalk_read(&d->pw, d->mem, la, src, size, PAGEWALK_READ, &f))) {
			return dec_mem_error(d, r, &f, d->ea_seg);
		}
		memset(x, 0, 16);
		memcpy(x, src, size);
		break;
	case SSE_XMM_TO_GPR: /* movd/movq r/m, xmm */
		if (d->mod == 3) {
			uint64_t v = 0;
			memcpy(&v, x, size);
			c->gpr[rm] = v;
		} else if ((r = pagewalk_write(&d->pw, d->mem, la, x, size, &f))) {
			return dec_mem_error(d, r, &f, d->ea_seg);
		}
		break;
	case SSE_STORE:
		if (d->mod == 3) {
			uint8_t *y = xmm_reg(xs, rm);
			memcpy(y, x, size); /* register forms of movss/movsd merge into the low part */
		} else if ((r = pagewalk_write(&d->pw, d->mem, la, x, size, &f))) {
			return dec_mem_error(d, r, &f, d->ea_seg);
		}
		break;
	case SSE_MOVHI_STORE:
	case SSE_MOVLO_STORE:
		if ((r = pagewalk_write(&d->pw, d->mem, la, x + (op == SSE_MOVHI_STORE ? 8 : 0), 8, &f)))
			return dec_mem_error(d, r, &f, d->ea_seg);
		break;
	default:
		if (d->mod == 3) {
			memcpy(src, xmm_reg(xs, rm), 16);
		} else {
			unsigned n = op == SSE_LOAD || op == SSE_LOADZ ? size
				     : op == SSE_MOVHI_LOAD || op == SSE_MOVLO_LOAD ? 8 : 16;
			if ((r = pagewalk_read(&d->pw, d->mem, la, src, n, PAGEWALK_READ, &f)))
				return dec_mem_error(d, r, &f, d->ea_seg);
		}
		switch (op) {
		case SSE_LOADZ: /* movq xmm, xmm/m64: always zero-extended */
			memset(x, 0, 16);
			memcpy(x, src, size);
			break;
		case SSE_LOAD:
			if (d->mod == 3 || !zero_upper) {
				memcpy(x, src, size); /* movss/movsd xmm, xmm keep the upper part */
			} else {
				memset(x, 0, 16);
				memcpy(x, src, size);
			}
			break;
		case SSE_XOR:
		case SSE_AND:
		case SSE_OR:
			for (unsigned i = 0; i < 16; i++)
				x[i] = op == SSE_XOR ? x[i] ^ src[i] : op == SSE_AND ? x[i] & src[i] : x[i] | src[i];
			break;
		case SSE_UNPCKLQ:
			memcpy(x + 8, src, 8);
			break;
		case SSE_UNPCKHQ:
			memcpy(x, x + 8, 8);
			memcpy(x + 8, src + 8, 8);
			break;
		case SSE_MOVHI_LOAD: /* movhps m64 / movlhps xmm: the source's low qword to our high one */
			memcpy(x + 8, src, 8);
			break;
		case SSE_MOVLO_LOAD: /* movlps m64 (low qword), movhlps xmm (the source's high qword) */
			memcpy(x, d->mod == 3 ? src + 8 : src, 8);
			break;
		default:
			break;
		}
	}
	xs->dirty = true;
	dec_advance(d);
	return 0;
}

/* The legacy-encoded SSE forms above, by opcode and mandatory prefix; -1 when not one of them. */
static int insn_sse_dispatch(struct dec *d, struct insn_xstate *xs, uint8_t pfx)
{
	/* The 128-bit logic and unpack forms: register or aligned memory source, one row each. */
	static const struct {
		uint8_t op, pfx;
		uint8_t what; /* enum sse_op */
		const char *name;
	} alu[] = {
		{ 0xEF, 0x66, SSE_XOR, "pxor" }, { 0x57, 0, SSE_XOR, "xorps" }, { 0x57, 0x66, SSE_XOR, "xorpd" },
		{ 0x54, 0, SSE_AND, "andps" }, { 0x54, 0x66, SSE_AND, "andpd" }, { 0xDB, 0x66, SSE_AND, "pand" },
		{ 0x56, 0, SSE_OR, "orps" }, { 0x56, 0x66, SSE_OR, "orpd" }, { 0xEB, 0x66, SSE_OR, "por" },
		{ 0x6C, 0x66, SSE_UNPCKLQ, "punpcklqdq" }, { 0x6D, 0x66, SSE_UNPCKHQ, "punpckhqdq" },
	};
	for (size_t k = 0; k < sizeof(alu) / sizeof(alu[0]); k++)
		if (alu[k].op == d->op && alu[k].pfx == pfx)
			return insn_sse(d, xs, (enum sse_op)alu[k].what, 16, true, false, alu[k].name);
	bool m = d->mod != 3, w = d->rex & 8;
	switch (d->op) {
	case 0x10:
	case 0x11: {
		bool st = d->op == 0x11;
		if (pfx == 0xF3)
			return insn_sse(d, xs, st ? SSE_STORE : SSE_LOAD, 4, false, true, "movss");
		if (pfx == 0xF2)
			return insn_sse(d, xs, st ? SSE_STORE : SSE_LOAD, 8, false, true, "movsd");
		return insn_sse(d, xs, st ? SSE_STORE : SSE_LOAD, 16, false, true, pfx ? "movupd" : "movups");
	}
	case 0x28:
	case 0x29:
		if (pfx == 0 || pfx == 0x66)
			return insn_sse(d, xs, d->op == 0x29 ? SSE_STORE : SSE_LOAD, 16, true, true,
					pfx ? "movapd" : "movaps");
		break;
	case 0x6F:
	case 0x7F:
		if (pfx == 0x66 || pfx == 0xF3)
			return insn_sse(d, xs, d->op == 0x7F ? SSE_STORE : SSE_LOAD, 16, pfx == 0x66, true,
					pfx == 0x66 ? "movdqa" : "movdqu");
		break;
	case 0x6E:
		if (pfx == 0x66)
			return insn_sse(d, xs, SSE_GPR_TO_XMM, w ? 8 : 4, false, true, w ? "movq" : "movd");
		break;
	case 0x7E:
		if (pfx == 0x66)
			return insn_sse(d, xs, SSE_XMM_TO_GPR, w ? 8 : 4, false, true, w ? "movq" : "movd");
		if (pfx == 0xF3)
			return insn_sse(d, xs, SSE_LOADZ, 8, false, true, "movq");
		break;
	case 0xD6:
		if (pfx == 0x66) {
			if (m)
				return insn_sse(d, xs, SSE_STORE, 8, false, true, "movq");
			break; /* the register form (xmm to xmm, zero-extended) is not emitted for copies */
		}
		break;
	case 0x16:
		if (pfx == 0 || (pfx == 0x66 && m))
			return insn_sse(d, xs, SSE_MOVHI_LOAD, 8, false, false, m ? (pfx ? "movhpd" : "movhps") : "movlhps");
		break;
	case 0x17:
		if ((pfx == 0 || pfx == 0x66) && m)
			return insn_sse(d, xs, SSE_MOVHI_STORE, 8, false, false, pfx ? "movhpd" : "movhps");
		break;
	case 0x12:
		if (pfx == 0 || (pfx == 0x66 && m))
			return insn_sse(d, xs, SSE_MOVLO_LOAD, 8, false, false, m ? (pfx ? "movlpd" : "movlps") : "movhlps");
		break;
	case 0x13:
		if ((pfx == 0 || pfx == 0x66) && m)
			return insn_sse(d, xs, SSE_MOVLO_STORE, 8, false, false, pfx ? "movlpd" : "movlps");
		break;
	}
	return -1;
}

static int insn_dispatch(struct dec *d, struct insn_xstate *xs)
{
	struct insn_cpu *c = d->cpu;
	if (d->map == 1 && !d->vex) {
		switch (d->op) {
		case 0xCC: return insn_trap(d, X86_VEC_BP);
		case 0x9B: return insn_fwait(d);
		case 0xF1: return insn_trap(d, X86_VEC_DB);
		case 0xCE:
			if (d->mode64)
				return dec_exception(d, X86_VEC_UD, false, 0);
			if (c->rflags & X86_RFLAGS_OF)
				return insn_trap(d, X86_VEC_OF);
			dec_advance(d);
			return 0;
		case 0xCD:
			dec_advance(d);
			d->out->status = INSN_SOFT_INT;
			d->out->vector = d->out->bytes[d->pos - 1];
			return 0;
		}
	}
	if (d->map == 2 && !d->vex) {
		uint8_t pfx = dec_mandatory_prefix(d);
		if ((d->op == 0xB8 || d->op == 0xBC || d->op == 0xBD) && d->rep && !d->repne && !d->lock)
			return insn_bitcount(d);
		if (d->op == 0x01 && (d->modrm == 0xCA || d->modrm == 0xCB) && !pfx)
			return insn_clac_stac(d);
		if (d->op == 0xC7 && d->mod == 3 && (d->reg == 6 || d->reg == 7) && !d->rep && !d->repne)
			return insn_rdrand(d);
		if (d->op == 0xC7 && d->mod == 3 && d->reg == 7 && d->rep)
			return insn_rdpid(d);
		if (d->op == 0x03 && !d->rep && !d->repne && !d->lock)
			return insn_lsl(d);
		if (d->op == 0xAE && d->mod == 3 && d->reg >= 5 && !pfx)
			return insn_fence(d);
		if (d->op == 0x01 && d->modrm == 0xD0 && !pfx)
			return insn_xgetbv(d, xs);
		if (d->op == 0xC7 && d->reg == 1 && !d->rep && !d->repne)
			return insn_cmpxchg(d);
		if (d->op == 0xC7 && d->mod != 3 && !pfx && d->reg >= 3 && d->reg <= 5) {
			static const int which[] = { 7, 5, 6 }; /* xrstors xsavec xsaves */
			return insn_xfamily(d, xs, which[d->reg - 3]);
		}
		if (d->op == 0xAE && d->mod != 3 && !pfx && (d->reg == 2 || d->reg == 3))
			return insn_mxcsr(d, xs);
		if (d->op == 0xAE && d->mod != 3 && !pfx) {
			static const int which[8] = { 0, 1, -1, -1, 2, 3, 4, -1 };
			if (which[d->reg] >= 0)
				return insn_xfamily(d, xs, which[d->reg]);
		}
		int r = insn_sse_dispatch(d, xs, pfx);
		if (r != -1)
			return r;
	}
	return dec_unsupported(d, "instruction not handled by the VMM");
}

int insn_complete(struct insn_cpu *cpu, const struct guest_mem *mem, const uint8_t *bytes,
		  size_t nbytes, struct insn_xstate *xs, struct insn_outcome *out)
{
	if (!cpu || !mem || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!bytes)
		nbytes = 0;
	out->nbytes = (uint8_t)(nbytes < 15 ? nbytes : 15);
	if (out->nbytes)
		memcpy(out->bytes, bytes, out->nbytes);
	struct dec d = {
		.cpu = cpu,
		.mem = mem,
		.out = out,
		.pw = { .cr0 = cpu->cr0, .cr3 = cpu->cr3, .cr4 = cpu->cr4, .efer = cpu->efer,
			.rflags = cpu->rflags, .cpl = cpu->cpl, .maxphyaddr = cpu->maxphyaddr },
		.mode64 = (cpu->efer & X86_EFER_LMA) && cpu->cs_l,
		.ea_seg = INSN_DS,
	};
	struct insn_cpu saved = *cpu;
	if (dec_decode(&d)) {
		if (out->status == INSN_EXCEPTION)
			out->length = 0;
		return 0;
	}
	dec_name(&d);
	insn_dispatch(&d, xs);
	/* Fault semantics: an exception (other than the traps) or an unsupported instruction leaves
	 * every register as it was. */
	if ((out->status == INSN_EXCEPTION && !out->trap) || out->status == INSN_UNSUPPORTED)
		*cpu = saved;
	if (out->status == INSN_UNSUPPORTED && !out->reason)
		out->reason = "instruction not handled by the VMM";
	return 0;
}

int insn_outcome_format(const struct insn_outcome *o, uint64_t rip, char *buf, size_t size)
{
	char hex[15 * 3 + 1] = "";
	/* Only the instruction's own bytes when its length is known. */
	unsigned n = o->length && o->length < o->nbytes ? o->length : o->nbytes;
	for (unsigned i = 0; i < n && i < 15; i++)
		snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ", o->bytes[i]);
	if (n)
		hex[3 * (n < 15 ? n : 15) - 1] = '\0';
	const char *what = o->status == INSN_DONE        ? "completed"
			   : o->status == INSN_EXCEPTION ? "exception"
			   : o->status == INSN_SOFT_INT  ? "software interrupt"
			   : o->reason                   ? o->reason
							 : "unsupported";
	char len[16] = "";
	if (o->length)
		snprintf(len, sizeof(len), ", %u bytes", o->length);
	return snprintf(buf, size, "RIP=%#llx bytes %s (%s%s): %s", (unsigned long long)rip, hex,
			o->mnemonic[0] ? o->mnemonic : "unknown", len, what);
}
