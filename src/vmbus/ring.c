#include "vmbus/ring.h"

#include <errno.h>
#include <string.h>

/* Validates one GPA range at off within [0, end); returns its size in bytes or 0 if bad. */
static uint32_t range_size(const uint8_t *b, uint32_t off, uint32_t end, struct vmbus_packet_range *r)
{
	struct vmbus_gpa_range g;
	if (end - off < sizeof(g))
		return 0;
	memcpy(&g, b + off, sizeof(g));
	if (g.byte_count == 0 || g.byte_offset >= HV_PAGE_SIZE)
		return 0;
	uint64_t pages = ((uint64_t)g.byte_offset + g.byte_count + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE;
	if (pages > (end - off - sizeof(g)) / 8)
		return 0;
	if (r)
		*r = (struct vmbus_packet_range){ g.byte_count, g.byte_offset, (uint32_t)pages, b + off + sizeof(g) };
	return (uint32_t)(sizeof(g) + pages * 8);
}

int vmbus_packet_parse(const void *buf, uint32_t len, struct vmbus_packet *p)
{
	const uint8_t *b = buf;
	struct vmbus_packet_descriptor d;
	memset(p, 0, sizeof(*p));
	if (len < sizeof(d))
		return -EPROTO;
	memcpy(&d, b, sizeof(d));
	uint32_t off = d.offset8 * 8u, plen = d.len8 * 8u;
	if (plen > len || off < sizeof(d) || off > plen)
		return -EPROTO;
	p->type = d.type;
	p->flags = d.flags;
	p->trans_id = d.trans_id;
	p->payload = b + off;
	p->payload_len = plen - off;
	if (d.type == VM_PKT_DATA_USING_GPA_DIRECT) {
		struct vmbus_gpa_direct_packet_header h;
		if (off < sizeof(h))
			return -EPROTO;
		memcpy(&h, b, sizeof(h));
		uint32_t at = sizeof(h);
		for (uint32_t i = 0; i < h.rangecount; i++) {
			uint32_t sz = range_size(b, at, off, NULL);
			if (!sz)
				return -EPROTO;
			at += sz;
		}
		p->range_count = h.rangecount;
		p->ranges = b + sizeof(h);
	} else if (d.type == VM_PKT_DATA_USING_XFER_PAGES) {
		struct vmbus_xfer_page_packet_header h;
		if (off < sizeof(h))
			return -EPROTO;
		memcpy(&h, b, sizeof(h));
		if (h.range_cnt > (off - sizeof(h)) / sizeof(struct vmbus_xfer_page_range))
			return -EPROTO;
		p->xfer_pageset_id = h.xfer_pageset_id;
		p->xfer_sender_owns = h.sender_owns_set;
		p->xfer_count = h.range_cnt;
		p->xfer_ranges = b + sizeof(h);
	}
	return 0;
}

int vmbus_packet_next_range(const struct vmbus_packet *p, uint64_t *cursor, struct vmbus_packet_range *r)
{
	/* cursor: index of the next range (high half) and its byte offset from p->ranges (low half). */
	uint32_t idx = (uint32_t)(*cursor >> 32), at = (uint32_t)*cursor;
	if (idx >= p->range_count)
		return 0;
	uint32_t end = (uint32_t)(p->payload - p->ranges);
	uint32_t sz = range_size(p->ranges, at, end, r);
	if (!sz)
		return 0;
	*cursor = ((uint64_t)(idx + 1) << 32) | (at + sz);
	return 1;
}

uint64_t vmbus_packet_range_pfn(const struct vmbus_packet_range *r, uint32_t i)
{
	uint64_t v = 0;
	if (i < r->nr_pfns)
		memcpy(&v, r->pfns + (size_t)i * 8, 8);
	return v;
}

struct vmbus_xfer_page_range vmbus_packet_xfer_range(const struct vmbus_packet *p, uint32_t i)
{
	struct vmbus_xfer_page_range r = { 0, 0 };
	if (i < p->xfer_count)
		memcpy(&r, p->xfer_ranges + (size_t)i * sizeof(r), sizeof(r));
	return r;
}
