#include "guest_pt.h"

#include <errno.h>
#include <string.h>

static unsigned pt_esz(const struct guest_pt *pt)
{
	return pt->levels == 2 ? 4 : 8;
}

static unsigned pt_shift(const struct guest_pt *pt, unsigned level)
{
	return 12 + (pt->levels == 2 ? 10 : 9) * (level - 1);
}

static uint64_t pt_index(const struct guest_pt *pt, uint64_t la, unsigned level)
{
	uint64_t mask = pt->levels == 2 ? 0x3FF : (pt->levels == 3 && level == 3) ? 3 : 0x1FF;
	return (la >> pt_shift(pt, level)) & mask;
}

static uint64_t pt_get(const struct guest_pt *pt, void *p)
{
	if (pt_esz(pt) == 4) {
		uint32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void pt_put(const struct guest_pt *pt, void *p, uint64_t v)
{
	if (pt_esz(pt) == 4) {
		uint32_t w = (uint32_t)v;
		memcpy(p, &w, 4);
	} else {
		memcpy(p, &v, 8);
	}
}

static int pt_alloc(struct guest_pt *pt, uint64_t *gpa)
{
	if (pt->next + 4096 > pt->end)
		return -ENOMEM;
	*gpa = pt->next;
	pt->next += 4096;
	memset(guest_mem_ptr(pt->m, *gpa, 4096), 0, 4096);
	return 0;
}

int guest_pt_init(struct guest_pt *pt, struct guest_mem *m, unsigned levels, uint64_t pool,
		  uint64_t size)
{
	pt->m = m;
	pt->levels = levels;
	pt->next = pool;
	pt->end = pool + size;
	return pt_alloc(pt, &pt->root);
}

static uint64_t pt_addr(const struct guest_pt *pt, uint64_t e)
{
	return pt_esz(pt) == 4 ? (e & 0xFFFFF000u) : (e & 0x000FFFFFFFFFF000ull);
}

int guest_pt_map(struct guest_pt *pt, uint64_t la, uint64_t pa, unsigned leaf_level,
		 uint64_t flags)
{
	uint64_t table = pt->root;
	for (unsigned lvl = pt->levels; lvl > leaf_level; lvl--) {
		void *p = guest_mem_ptr(pt->m, table + pt_index(pt, la, lvl) * pt_esz(pt), pt_esz(pt));
		uint64_t e = pt_get(pt, p);
		if (!(e & 1)) {
			uint64_t t;
			if (pt_alloc(pt, &t))
				return -ENOMEM;
			/* PAE PDPTEs have only P (R/W and U/S are reserved there). */
			e = t | ((pt->levels == 3 && lvl == 3) ? 1 : 7);
			pt_put(pt, p, e);
		}
		table = pt_addr(pt, e);
	}
	void *p = guest_mem_ptr(pt->m, table + pt_index(pt, la, leaf_level) * pt_esz(pt), pt_esz(pt));
	pt_put(pt, p, pa | flags | (leaf_level > 1 ? 0x80 : 0));
	return 0;
}

void *guest_pt_entry(struct guest_pt *pt, uint64_t la, unsigned level)
{
	uint64_t table = pt->root;
	for (unsigned lvl = pt->levels;; lvl--) {
		void *p = guest_mem_ptr(pt->m, table + pt_index(pt, la, lvl) * pt_esz(pt), pt_esz(pt));
		if (lvl == level)
			return p;
		uint64_t e = pt_get(pt, p);
		if (!(e & 1))
			return NULL;
		table = pt_addr(pt, e);
	}
}
