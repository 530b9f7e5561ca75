#include "efi/efi_mem.h"

#include "efi/efi_lib.h"

#define PAGE EFI_PAGE_SIZE
#define MAX_PAGES (UINT64_MAX >> EFI_PAGE_SHIFT)

/* struct efi_mem_range.type flag: a range added as non-RAM is fixed, FreePages never releases it. */
#define RANGE_FIXED 0x80000000u
#define TYPE_OF(r) ((r)->type & ~RANGE_FIXED)

#define POOL_LIVE 0x4c4f4f50u /* "POOL" */
#define POOL_FREE 0x45455246u /* "FREE" */
#define POOL_PAGES 0xffffu
#define POOL_HDR 16u

struct pool_hdr {
	uint32_t magic;
	uint16_t cls;   /* chunk class, or POOL_PAGES for a whole-page allocation */
	uint16_t arena;
	uint64_t size;  /* pages (POOL_PAGES) or next free chunk (while free) */
};
_Static_assert(sizeof(struct pool_hdr) == POOL_HDR, "pool header");

static inline void *pa_ptr(uint64_t pa)
{
	return (void *)(uintptr_t)pa;
}

static inline uint64_t range_end(const struct efi_mem_range *r)
{
	return r->start + (r->pages << EFI_PAGE_SHIFT);
}

void efi_mem_init(struct efi_mem *m)
{
	/* Not the 8 KiB range array: only r[0, n) is ever read, and zeroing it costs the firmware
	 * about 5 ms where every byte stored is emulated. */
	m->n = 0;
	m->map_key = 1;
	m->any_limit = 0;
	efi_memset(m->arena, 0, sizeof(m->arena));
}

static bool type_allocatable(uint32_t type)
{
	if (type >= 0x70000000u)
		return true; /* OEM and OS loader ranges */
	return type < EfiMaxMemoryType && type != EfiConventionalMemory && type != EfiPersistentMemory &&
	       type != EfiUnacceptedMemoryType;
}

/* Index of the last range starting at or below addr, or -1. */
static int find_range(const struct efi_mem *m, uint64_t addr)
{
	int lo = 0, hi = (int)m->n - 1, found = -1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (m->r[mid].start <= addr) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

int64_t efi_mem_type_at(const struct efi_mem *m, uint64_t addr)
{
	int k = find_range(m, addr);
	if (k < 0 || addr >= range_end(&m->r[k]))
		return -1;
	return TYPE_OF(&m->r[k]);
}

static void insert_at(struct efi_mem *m, uint32_t k, const struct efi_mem_range *r)
{
	efi_memmove(&m->r[k + 1], &m->r[k], (m->n - k) * sizeof(m->r[0]));
	m->r[k] = *r;
	m->n++;
}

static void remove_at(struct efi_mem *m, uint32_t k)
{
	efi_memmove(&m->r[k], &m->r[k + 1], (m->n - k - 1) * sizeof(m->r[0]));
	m->n--;
}

/* Merges equal neighbours among ranges lo..hi (inclusive, clamped). */
static void merge_around(struct efi_mem *m, int lo, int hi)
{
	if (lo < 1)
		lo = 1;
	if (hi > (int)m->n - 1)
		hi = (int)m->n - 1;
	for (int k = hi; k >= lo; k--) {
		struct efi_mem_range *a = &m->r[k - 1], *b = &m->r[k];
		if (range_end(a) == b->start && a->type == b->type && a->attr == b->attr) {
			a->pages += b->pages;
			remove_at(m, (uint32_t)k);
		}
	}
}

/* Splits the range containing addr so that a range starts at addr (no-op on a boundary or a gap). */
static void split_at(struct efi_mem *m, uint64_t addr)
{
	int k = find_range(m, addr);
	if (k < 0)
		return;
	struct efi_mem_range *r = &m->r[k];
	if (addr == r->start || addr >= range_end(r))
		return;
	struct efi_mem_range tail = *r;
	tail.start = addr;
	tail.pages = (range_end(r) - addr) >> EFI_PAGE_SHIFT;
	r->pages -= tail.pages;
	insert_at(m, (uint32_t)k + 1, &tail);
}

/* Is [start, start + pages) covered, without gaps, by ranges of exactly type `want` (flags included)? */
static bool covered_by(const struct efi_mem *m, uint64_t start, uint64_t pages, uint32_t want)
{
	uint64_t end = start + (pages << EFI_PAGE_SHIFT), at = start;
	int k = find_range(m, start);
	if (k < 0)
		return false;
	for (; (uint32_t)k < m->n && at < end; k++) {
		const struct efi_mem_range *r = &m->r[k];
		if (r->start > at || range_end(r) <= at || r->type != want)
			return false;
		at = range_end(r);
	}
	return at >= end;
}

/* Retypes [start, start + pages), which covered_by() has vetted. */
static EFI_STATUS retype(struct efi_mem *m, uint64_t start, uint64_t pages, uint32_t type)
{
	if (m->n + 2 > EFI_MEM_MAX_RANGES)
		return EFI_OUT_OF_RESOURCES;
	uint64_t end = start + (pages << EFI_PAGE_SHIFT);
	split_at(m, start);
	split_at(m, end);
	int first = find_range(m, start), k = first;
	while ((uint32_t)k < m->n && m->r[k].start < end)
		m->r[k++].type = type;
	merge_around(m, first, k);
	m->map_key++;
	return EFI_SUCCESS;
}

EFI_STATUS efi_mem_add(struct efi_mem *m, uint64_t start, uint64_t pages, uint32_t type, uint64_t attr)
{
	if (!pages || pages > MAX_PAGES || (start & (PAGE - 1)) || start > UINT64_MAX - (pages << EFI_PAGE_SHIFT))
		return EFI_INVALID_PARAMETER;
	if (type & RANGE_FIXED)
		return EFI_INVALID_PARAMETER;
	uint64_t end = start + (pages << EFI_PAGE_SHIFT);
	int k = find_range(m, end - 1);
	/* The last range starting below end must also end at or before start, or they overlap. */
	if (k >= 0 && range_end(&m->r[k]) > start)
		return EFI_INVALID_PARAMETER;
	if (m->n + 1 > EFI_MEM_MAX_RANGES)
		return EFI_OUT_OF_RESOURCES;
	struct efi_mem_range r = { .start = start, .pages = pages, .attr = attr,
				   .type = type == EfiConventionalMemory ? type : (type | RANGE_FIXED) };
	insert_at(m, (uint32_t)(k + 1), &r);
	merge_around(m, k + 1, k + 2);
	m->map_key++;
	return EFI_SUCCESS;
}

/* Highest free block of `pages` that ends at or below limit (exclusive end), never at address 0. */
static bool find_top_down(const struct efi_mem *m, uint64_t pages, uint64_t limit, uint64_t *out)
{
	uint64_t size = pages << EFI_PAGE_SHIFT;
	for (int k = (int)m->n - 1; k >= 0; k--) {
		const struct efi_mem_range *r = &m->r[k];
		if (r->type != EfiConventionalMemory || r->start >= limit)
			continue;
		uint64_t top = range_end(r) < limit ? range_end(r) : limit;
		top &= ~(PAGE - 1);
		if (top < size || top - size < r->start)
			continue;
		if (top - size == 0)
			continue; /* page 0 would read as NULL */
		*out = top - size;
		return true;
	}
	return false;
}

EFI_STATUS efi_mem_allocate_pages(struct efi_mem *m, EFI_ALLOCATE_TYPE how, uint32_t type, uint64_t pages,
				  EFI_PHYSICAL_ADDRESS *addr)
{
	if (!addr || !type_allocatable(type) || (unsigned)how >= MaxAllocateType)
		return EFI_INVALID_PARAMETER;
	if (!pages)
		return EFI_INVALID_PARAMETER;
	if (pages > MAX_PAGES)
		return EFI_OUT_OF_RESOURCES;
	uint64_t start;
	switch (how) {
	case AllocateAddress:
		start = *addr;
		if (start & (PAGE - 1))
			return EFI_INVALID_PARAMETER;
		if (start > UINT64_MAX - (pages << EFI_PAGE_SHIFT) + 1 ||
		    !covered_by(m, start, pages, EfiConventionalMemory))
			return EFI_NOT_FOUND;
		break;
	case AllocateMaxAddress: {
		uint64_t limit = *addr == UINT64_MAX ? UINT64_MAX : *addr + 1;
		if (!find_top_down(m, pages, limit, &start))
			return EFI_OUT_OF_RESOURCES;
		break;
	}
	default:
		if (!(m->any_limit && find_top_down(m, pages, m->any_limit, &start)) &&
		    !find_top_down(m, pages, UINT64_MAX, &start))
			return EFI_OUT_OF_RESOURCES;
		break;
	}
	EFI_STATUS st = retype(m, start, pages, type);
	if (!EFI_ERROR(st))
		*addr = start;
	return st;
}

EFI_STATUS efi_mem_free_pages(struct efi_mem *m, EFI_PHYSICAL_ADDRESS addr, uint64_t pages)
{
	if ((addr & (PAGE - 1)) || !pages || pages > MAX_PAGES)
		return EFI_INVALID_PARAMETER;
	if (addr > UINT64_MAX - (pages << EFI_PAGE_SHIFT) + 1)
		return EFI_NOT_FOUND;
	int64_t type = efi_mem_type_at(m, addr);
	if (type < 0 || type == EfiConventionalMemory || !covered_by(m, addr, pages, (uint32_t)type))
		return EFI_NOT_FOUND; /* covered_by fails for fixed ranges: their type has RANGE_FIXED */
	return retype(m, addr, pages, EfiConventionalMemory);
}

EFI_STATUS efi_mem_get_map(struct efi_mem *m, UINTN *map_size, EFI_MEMORY_DESCRIPTOR *map, UINTN *map_key,
			   UINTN *desc_size, uint32_t *desc_version)
{
	if (!map_size)
		return EFI_INVALID_PARAMETER;
	UINTN need = (UINTN)m->n * EFI_MEM_DESC_SIZE;
	if (desc_size)
		*desc_size = EFI_MEM_DESC_SIZE;
	if (desc_version)
		*desc_version = EFI_MEMORY_DESCRIPTOR_VERSION;
	if (*map_size < need) {
		*map_size = need;
		return EFI_BUFFER_TOO_SMALL;
	}
	if (!map)
		return EFI_INVALID_PARAMETER;
	uint8_t *out = (uint8_t *)map;
	for (uint32_t k = 0; k < m->n; k++, out += EFI_MEM_DESC_SIZE) {
		const struct efi_mem_range *r = &m->r[k];
		EFI_MEMORY_DESCRIPTOR d = { .Type = TYPE_OF(r), .PhysicalStart = r->start,
					    .NumberOfPages = r->pages, .Attribute = r->attr };
		if (d.Type == EfiRuntimeServicesCode || d.Type == EfiRuntimeServicesData)
			d.Attribute |= EFI_MEMORY_RUNTIME;
		efi_memset(out, 0, EFI_MEM_DESC_SIZE);
		efi_memcpy(out, &d, sizeof(d));
	}
	*map_size = need;
	if (map_key)
		*map_key = m->map_key;
	return EFI_SUCCESS;
}

EFI_STATUS efi_mem_check_key(const struct efi_mem *m, UINTN key)
{
	return key == m->map_key ? EFI_SUCCESS : EFI_INVALID_PARAMETER;
}

/* --- pool ---------------------------------------------------------------------------------------- */

static int arena_for(struct efi_mem *m, uint32_t type)
{
	int empty = -1;
	for (int i = 0; i < EFI_MEM_POOL_TYPES; i++) {
		if (m->arena[i].used && m->arena[i].type == type)
			return i;
		if (!m->arena[i].used && empty < 0)
			empty = i;
	}
	if (empty >= 0) {
		m->arena[empty].used = true;
		m->arena[empty].type = type;
	}
	return empty;
}

static EFI_STATUS pool_pages(struct efi_mem *m, uint32_t type, UINTN size, void **buf)
{
	uint64_t pages = (size + POOL_HDR + PAGE - 1) >> EFI_PAGE_SHIFT;
	EFI_PHYSICAL_ADDRESS pa = 0;
	EFI_STATUS st = efi_mem_allocate_pages(m, AllocateAnyPages, type, pages, &pa);
	if (EFI_ERROR(st))
		return EFI_OUT_OF_RESOURCES;
	struct pool_hdr *h = pa_ptr(pa);
	*h = (struct pool_hdr){ .magic = POOL_LIVE, .cls = POOL_PAGES, .size = pages };
	*buf = (uint8_t *)h + POOL_HDR;
	return EFI_SUCCESS;
}

EFI_STATUS efi_mem_allocate_pool(struct efi_mem *m, uint32_t type, UINTN size, void **buf)
{
	if (!buf || !type_allocatable(type))
		return EFI_INVALID_PARAMETER;
	if (size > UINT64_MAX - 2 * PAGE)
		return EFI_OUT_OF_RESOURCES;
	unsigned cls = 0;
	while (cls < EFI_MEM_POOL_CLASSES && (32u << cls) < size + POOL_HDR)
		cls++;
	int a = cls < EFI_MEM_POOL_CLASSES ? arena_for(m, type) : -1;
	if (a < 0)
		return pool_pages(m, type, size, buf);
	struct efi_pool_arena *ar = &m->arena[a];
	if (!ar->free[cls]) {
		EFI_PHYSICAL_ADDRESS pa = 0;
		if (EFI_ERROR(efi_mem_allocate_pages(m, AllocateAnyPages, type, 1, &pa)))
			return EFI_OUT_OF_RESOURCES;
		uint32_t chunk = 32u << cls;
		/* Thread the page's chunks into the free list: one header store each, nothing zeroed. */
		for (uint32_t off = (uint32_t)PAGE; off >= chunk; off -= chunk) {
			struct pool_hdr *h = pa_ptr(pa + off - chunk);
			h->magic = POOL_FREE;
			h->cls = (uint16_t)cls;
			h->arena = (uint16_t)a;
			h->size = (uint64_t)(uintptr_t)ar->free[cls];
			ar->free[cls] = h;
		}
	}
	struct pool_hdr *h = ar->free[cls];
	ar->free[cls] = (void *)(uintptr_t)h->size;
	h->magic = POOL_LIVE;
	h->size = 0;
	*buf = (uint8_t *)h + POOL_HDR;
	return EFI_SUCCESS;
}

EFI_STATUS efi_mem_free_pool(struct efi_mem *m, void *buf)
{
	uint64_t pa = (uint64_t)(uintptr_t)buf;
	if (!buf || (pa & 15) || pa < POOL_HDR)
		return EFI_INVALID_PARAMETER;
	int64_t type = efi_mem_type_at(m, pa - POOL_HDR);
	if (type < 0 || type == EfiConventionalMemory || !type_allocatable((uint32_t)type))
		return EFI_INVALID_PARAMETER;
	struct pool_hdr *h = pa_ptr(pa - POOL_HDR);
	if (h->magic != POOL_LIVE)
		return EFI_INVALID_PARAMETER;
	if (h->cls == POOL_PAGES) {
		if ((pa - POOL_HDR) & (PAGE - 1))
			return EFI_INVALID_PARAMETER;
		uint64_t pages = h->size;
		h->magic = POOL_FREE;
		EFI_STATUS st = efi_mem_free_pages(m, pa - POOL_HDR, pages);
		if (EFI_ERROR(st))
			h->magic = POOL_LIVE;
		return EFI_ERROR(st) ? EFI_INVALID_PARAMETER : EFI_SUCCESS;
	}
	if (h->cls >= EFI_MEM_POOL_CLASSES || h->arena >= EFI_MEM_POOL_TYPES || !m->arena[h->arena].used ||
	    m->arena[h->arena].type != (uint32_t)type)
		return EFI_INVALID_PARAMETER;
	struct efi_pool_arena *ar = &m->arena[h->arena];
	h->magic = POOL_FREE;
	h->size = (uint64_t)(uintptr_t)ar->free[h->cls];
	ar->free[h->cls] = h;
	return EFI_SUCCESS;
}
