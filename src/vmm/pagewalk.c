#include "vmm/pagewalk.h"

#include <errno.h>
#include <string.h>

#define PTE_P  (1ull << 0)
#define PTE_W  (1ull << 1)
#define PTE_U  (1ull << 2)
#define PTE_A  (1ull << 5)
#define PTE_D  (1ull << 6)
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)

#define PAGEWALK_MAX_LEN (1u << 20)

/* An entry the walk went through, remembered so that A/D are set only after the whole
 * translation (including the permission checks) succeeded. */
struct pw_used {
	void *hva;
	uint64_t val;
	unsigned size;
};

static int pw_fault(struct pagewalk_fault *f, uint8_t vec, uint32_t ec, uint64_t cr2)
{
	f->vector = vec;
	f->error_code = ec;
	f->cr2 = cr2;
	return -EFAULT;
}

static uint64_t pw_load(void *p, unsigned size)
{
	/* Relaxed atomic loads: another vCPU may be updating the entry; we only need an untorn value. */
	if (size == 8)
		return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
	return __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
}

static void pw_set_bits(const struct pw_used *u, uint64_t bits)
{
	/* Atomic OR, like the hardware's locked A/D update: a plain store could undo a concurrent
	 * change another vCPU (or the guest OS clearing A bits) made to the same entry. */
	if ((u->val & bits) == bits)
		return;
	if (u->size == 8)
		__atomic_fetch_or((uint64_t *)u->hva, bits, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_or((uint32_t *)u->hva, (uint32_t)bits, __ATOMIC_SEQ_CST);
}

static uint64_t pw_mask(unsigned hi, unsigned lo) /* bits hi..lo inclusive */
{
	return ((hi >= 63 ? ~0ull : ((1ull << (hi + 1)) - 1))) & ~((1ull << lo) - 1);
}

int pagewalk_translate(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		       enum pagewalk_access acc, uint64_t *gpa, struct pagewalk_fault *fault)
{
	if (!(c->cr0 & X86_CR0_PG)) {
		*gpa = (uint32_t)la;
		return 0;
	}
	unsigned maxphy = c->maxphyaddr ? c->maxphyaddr : 52;
	if (maxphy < 32 || maxphy > 52)
		maxphy = 52;
	bool lma = c->efer & X86_EFER_LMA, pae = c->cr4 & X86_CR4_PAE;
	bool nxe = c->efer & X86_EFER_NXE;
	bool user = c->cpl == 3, write = acc == PAGEWALK_WRITE, fetch = acc == PAGEWALK_FETCH;
	uint32_t ec = (write ? PF_ERR_W : 0) | (user ? PF_ERR_U : 0);
	if (fetch && ((pae && nxe) || (c->cr4 & X86_CR4_SMEP)))
		ec |= PF_ERR_I;

	uint64_t addr_mask = pw_mask(maxphy - 1, 12);
	uint64_t rsvd_hi = maxphy < 52 ? pw_mask(51, maxphy) : 0;
	if (!nxe)
		rsvd_hi |= PTE_NX;

	unsigned levels, esz;
	uint64_t table;
	if (!pae) {
		la = (uint32_t)la;
		levels = 2;
		esz = 4;
		table = c->cr3 & 0xFFFFF000u;
	} else if (!lma) {
		la = (uint32_t)la;
		void *p = guest_mem_ptr(m, (c->cr3 & 0xFFFFFFE0u) + ((la >> 30) & 3) * 8, 8);
		if (!p)
			return -EIO;
		uint64_t pdpte = pw_load(p, 8);
		if (!(pdpte & PTE_P))
			return pw_fault(fault, X86_VEC_PF, ec, la);
		/* Real CPUs #GP at MOV CR3 for these; reported at use as a reserved-bit #PF. */
		if (pdpte & (pw_mask(63, maxphy) | 0x1E6))
			return pw_fault(fault, X86_VEC_PF, ec | PF_ERR_P | PF_ERR_RSVD, la);
		levels = 2;
		esz = 8;
		table = pdpte & addr_mask;
	} else {
		unsigned bits = (c->cr4 & X86_CR4_LA57) ? 57 : 48;
		if ((uint64_t)((int64_t)(la << (64 - bits)) >> (64 - bits)) != la)
			return pw_fault(fault, X86_VEC_GP, 0, 0);
		levels = (c->cr4 & X86_CR4_LA57) ? 5 : 4;
		esz = 8;
		table = c->cr3 & addr_mask;
	}

	struct pw_used used[5];
	unsigned n = 0;
	bool w_all = true, u_all = true, nx = false;
	uint64_t pa = 0;
	for (unsigned lvl = levels; lvl >= 1; lvl--) {
		unsigned ibits = esz == 4 ? 10 : 9;
		unsigned shift = 12 + ibits * (lvl - 1);
		uint64_t egpa = table + ((la >> shift) & ((1u << ibits) - 1)) * esz;
		void *p = guest_mem_ptr(m, egpa, esz);
		if (!p)
			return -EIO;
		uint64_t e = pw_load(p, esz);
		if (!(e & PTE_P))
			return pw_fault(fault, X86_VEC_PF, ec, la);
		bool leaf = lvl == 1;
		uint64_t rsvd = 0;
		if (esz == 8) {
			rsvd = rsvd_hi;
			if (lvl >= 4)
				rsvd |= PTE_PS;
			else if ((e & PTE_PS) && lvl >= 2) {
				leaf = true;
				rsvd |= pw_mask(shift - 1, 13);
			}
		} else if (lvl == 2 && (e & PTE_PS) && (c->cr4 & X86_CR4_PSE)) {
			leaf = true;
			/* PSE-36: bits 20:13 carry physical bits 39:32; bit 21 is reserved. */
			unsigned hi = maxphy < 40 ? maxphy : 40;
			rsvd = pw_mask(21, 13 + (hi - 32));
		}
		if (e & rsvd)
			return pw_fault(fault, X86_VEC_PF, ec | PF_ERR_P | PF_ERR_RSVD, la);
		w_all = w_all && (e & PTE_W);
		u_all = u_all && (e & PTE_U);
		nx = nx || (esz == 8 && nxe && (e & PTE_NX));
		used[n++] = (struct pw_used){ p, e, esz };
		if (leaf) {
			uint64_t off = la & ((1ull << shift) - 1);
			if (esz == 8)
				pa = (e & addr_mask & ~((1ull << shift) - 1)) | off;
			else if (lvl == 2)
				pa = (e & 0xFFC00000u) | (((e >> 13) & 0xFF) << 32) | off;
			else
				pa = (e & 0xFFFFF000u) | off;
			break;
		}
		table = esz == 8 ? (e & addr_mask) : (e & 0xFFFFF000u);
	}

	bool deny;
	if (user)
		deny = !u_all || (write && !w_all);
	else
		deny = (write && !w_all && (c->cr0 & X86_CR0_WP)) ||
		       (fetch && u_all && (c->cr4 & X86_CR4_SMEP)) ||
		       (!fetch && u_all && (c->cr4 & X86_CR4_SMAP) && !(c->rflags & X86_RFLAGS_AC));
	if (deny || (fetch && nx))
		return pw_fault(fault, X86_VEC_PF, ec | PF_ERR_P, la);

	for (unsigned i = 0; i < n; i++)
		pw_set_bits(&used[i], PTE_A | (write && i == n - 1 ? PTE_D : 0));
	*gpa = pa;
	return 0;
}

/* Linear address of byte off of an access starting at la: outside long mode it wraps at 4 GiB. */
static uint64_t pw_advance(const struct pagewalk_ctx *c, uint64_t la, size_t off)
{
	uint64_t a = la + off;
	return (c->efer & X86_EFER_LMA) ? a : (uint32_t)a;
}

static size_t pw_chunk(uint64_t a, size_t left)
{
	size_t room = 4096 - (size_t)(a & 4095);
	return left < room ? left : room;
}

int pagewalk_check(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		   size_t len, enum pagewalk_access acc, struct pagewalk_fault *fault)
{
	if (len > PAGEWALK_MAX_LEN)
		return -EINVAL;
	for (size_t off = 0; off < len;) {
		uint64_t a = pw_advance(c, la, off), gpa;
		size_t n = pw_chunk(a, len - off);
		int r = pagewalk_translate(c, m, a, acc, &gpa, fault);
		if (r)
			return r;
		if (!guest_mem_valid(m, gpa, n))
			return -ENXIO;
		off += n;
	}
	return 0;
}

/* Copies between buf and guest memory page by page; to_guest selects the direction. */
static int pw_copy(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		   uint8_t *buf, size_t len, enum pagewalk_access acc, bool to_guest,
		   struct pagewalk_fault *fault)
{
	if (len > PAGEWALK_MAX_LEN)
		return -EINVAL;
	for (size_t off = 0; off < len;) {
		uint64_t a = pw_advance(c, la, off), gpa;
		size_t n = pw_chunk(a, len - off);
		int r = pagewalk_translate(c, m, a, acc, &gpa, fault);
		if (r)
			return r;
		uint8_t *p = guest_mem_ptr(m, gpa, n);
		if (!p)
			return -ENXIO;
		if (to_guest)
			memcpy(p, buf + off, n);
		else
			memcpy(buf + off, p, n);
		off += n;
	}
	return 0;
}

int pagewalk_read(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		  void *buf, size_t len, enum pagewalk_access acc, struct pagewalk_fault *fault)
{
	return pw_copy(c, m, la, buf, len, acc == PAGEWALK_FETCH ? acc : PAGEWALK_READ, false,
		       fault);
}

int pagewalk_write(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		   const void *buf, size_t len, struct pagewalk_fault *fault)
{
	int r = pagewalk_check(c, m, la, len, PAGEWALK_WRITE, fault);
	if (r)
		return r;
	return pw_copy(c, m, la, (uint8_t *)buf, len, PAGEWALK_WRITE, true, fault);
}

int pagewalk_host_ptr(const struct pagewalk_ctx *c, const struct guest_mem *m, uint64_t la,
		      size_t len, enum pagewalk_access acc, void **hva, struct pagewalk_fault *fault)
{
	if (len == 0 || len > 4096 || (la & 4095) + len > 4096)
		return -EINVAL;
	uint64_t gpa;
	int r = pagewalk_translate(c, m, la, acc, &gpa, fault);
	if (r)
		return r;
	*hva = guest_mem_ptr(m, gpa, len);
	return *hva ? 0 : -ENXIO;
}
