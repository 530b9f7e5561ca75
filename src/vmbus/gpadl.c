#include "vmbus/gpadl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gen2vm/proto/hv.h"

int vmbus_gpadl_begin(struct vmbus_gpadl *g, uint32_t id, uint32_t relid, uint32_t rangecount,
		      uint16_t range_buflen)
{
	memset(g, 0, sizeof(*g));
	g->id = id;
	g->relid = relid;
	g->want_ranges = rangecount;
	g->range_buflen = range_buflen;
	if (rangecount == 0 || rangecount > VMBUS_GPADL_MAX_RANGES)
		return -EINVAL;
	return 0;
}

static int gpadl_grow(void **arr, uint32_t *cap, uint64_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint64_t n = *cap ? *cap : 8;
	while (n < need)
		n *= 2;
	if (n > UINT32_MAX)
		return -ENOMEM;
	void *p = realloc(*arr, n * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = (uint32_t)n;
	return 0;
}

/* A new range header: reserve its pages up front so the budget is enforced before any allocation. */
static int gpadl_range_start(struct vmbus_gpadl *g, uint64_t word, uint64_t *budget)
{
	uint32_t count = (uint32_t)word, offset = (uint32_t)(word >> 32);
	if (count == 0 || offset >= HV_PAGE_SIZE)
		return -EPROTO;
	uint64_t pages = ((uint64_t)offset + count + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE;
	if (pages > *budget)
		return -ENOSPC;
	int rc = gpadl_grow((void **)&g->ranges, &g->cap_ranges, (uint64_t)g->nr_ranges + 1, sizeof(*g->ranges));
	if (!rc)
		rc = gpadl_grow((void **)&g->pfns, &g->cap_pfns, (uint64_t)g->nr_pfns + pages, sizeof(*g->pfns));
	if (rc)
		return rc;
	*budget -= pages;
	g->reserved_pfns += pages;
	g->ranges[g->nr_ranges++] = (struct vmbus_gpadl_range){
		.byte_count = count, .byte_offset = offset, .pfn_first = g->nr_pfns, .nr_pfns = (uint32_t)pages
	};
	g->range_left = (uint32_t)pages;
	return 0;
}

int vmbus_gpadl_feed(struct vmbus_gpadl *g, const void *bytes, uint32_t len, const struct guest_mem *mem,
		     uint64_t *budget)
{
	const uint8_t *p = bytes;
	if (len % 8 || g->complete)
		return -EPROTO;
	for (uint32_t i = 0; i < len; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (g->range_left == 0) {
			if (g->nr_ranges == g->want_ranges)
				return -EPROTO; /* bytes after the last range */
			int rc = gpadl_range_start(g, w, budget);
			if (rc)
				return rc;
			continue;
		}
		if (w >= (1ull << (64 - HV_PAGE_SHIFT)) || !guest_mem_valid(mem, w << HV_PAGE_SHIFT, HV_PAGE_SIZE))
			return -EFAULT;
		g->pfns[g->nr_pfns++] = w;
		g->range_left--;
	}
	g->buf_bytes += len;
	if (g->range_left || g->nr_ranges < g->want_ranges)
		return 0;
	/* Linux stores the buffer length in a u16: compare modulo 2^16, the ranges decide the size. */
	if ((uint16_t)g->buf_bytes != g->range_buflen)
		return -EPROTO;
	g->complete = true;
	return 1;
}

void vmbus_gpadl_release_storage(struct vmbus_gpadl *g)
{
	free(g->ranges);
	free(g->pfns);
	g->ranges = NULL;
	g->pfns = NULL;
	g->nr_ranges = g->nr_pfns = g->cap_pfns = g->cap_ranges = 0;
}

/* memfd offset of a guest page, or -1. */
static int64_t view_fd_offset(const struct guest_mem *mem, uint64_t pfn)
{
	if (pfn >= (1ull << (64 - HV_PAGE_SHIFT)))
		return -1;
	uint64_t gpa = pfn << HV_PAGE_SHIFT;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->region[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && r->size - (gpa - r->gpa) >= HV_PAGE_SIZE)
			return (int64_t)(r->fd_offset + (gpa - r->gpa));
	}
	return -1;
}

static int view_map_run(uint8_t *at, const struct guest_mem *mem, const uint64_t *pfns, uint32_t n)
{
	uint32_t i = 0;
	while (i < n) {
		int64_t off = view_fd_offset(mem, pfns[i]);
		if (off < 0)
			return -EFAULT;
		uint32_t j = i + 1;
		while (j < n && pfns[j] == pfns[j - 1] + 1 && view_fd_offset(mem, pfns[j]) == off + (int64_t)(j - i) * HV_PAGE_SIZE)
			j++;
		void *p = mmap(at + (size_t)i * HV_PAGE_SIZE, (size_t)(j - i) * HV_PAGE_SIZE, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, mem->memfd, off);
		if (p == MAP_FAILED)
			return -errno;
		i = j;
	}
	return 0;
}

int vmbus_view_map(struct vmbus_view *v, const struct guest_mem *mem, const uint64_t *pfns, uint32_t n,
		   uint32_t repeat_from)
{
	memset(v, 0, sizeof(*v));
	if (n == 0 || repeat_from > n)
		return -EINVAL;
	if (mem->memfd < 0)
		return -ENOTSUP;
	size_t len = ((size_t)n + (n - repeat_from)) * HV_PAGE_SIZE;
	/* Reserve the whole range first so the MAP_FIXED pieces cannot land on someone else's mapping. */
	void *base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	int rc = view_map_run(base, mem, pfns, n);
	if (!rc && repeat_from < n)
		rc = view_map_run((uint8_t *)base + (size_t)n * HV_PAGE_SIZE, mem, pfns + repeat_from, n - repeat_from);
	if (rc) {
		munmap(base, len);
		return rc;
	}
	v->base = base;
	v->len = len;
	return 0;
}

void vmbus_view_unmap(struct vmbus_view *v)
{
	if (v->base)
		munmap(v->base, v->len);
	v->base = NULL;
	v->len = 0;
}
