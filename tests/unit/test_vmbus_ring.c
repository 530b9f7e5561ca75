/* The shared ring engine: wrap-around (split and mirrored), signalling rules, hostile indices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmbus/gpadl.h"
#include "vmbus/ring.h"
#include "vmbus_ring.h"

#define DATA 4096u

struct pair {
	uint8_t *mem; /* header page + data */
	struct vmbus_ring w, r; /* writer and reader views of the same ring */
};

static void pair_init(struct pair *p)
{
	p->mem = aligned_alloc(4096, 4096 + DATA);
	memset(p->mem, 0, 4096 + DATA);
	assert_int_equal(vmbus_ring_init(&p->w, p->mem, p->mem + 4096, DATA, false), 0);
	assert_int_equal(vmbus_ring_init(&p->r, p->mem, p->mem + 4096, DATA, false), 0);
}

static uint32_t fill(uint8_t *b, uint32_t len, uint32_t seed)
{
	uint32_t sum = 0;
	for (uint32_t i = 0; i < len; i++) {
		b[i] = (uint8_t)(seed * 31 + i);
		sum += b[i];
	}
	return sum;
}

static void roundtrip(struct vmbus_ring *w, struct vmbus_ring *r, uint32_t len, uint32_t seed)
{
	uint8_t out[3000], in[3100];
	uint32_t sum = fill(out, len, seed), n;
	assert_int_equal(vmbus_ring_write(w, VM_PKT_DATA_INBAND, 0, seed, NULL, 0, out, len, NULL), 0);
	assert_int_equal(vmbus_ring_read(r, in, sizeof(in), &n), 0);
	assert_int_equal(n, (16 + len + 7) / 8 * 8);
	struct vmbus_packet_descriptor d;
	memcpy(&d, in, 16);
	assert_int_equal(d.trans_id, seed);
	uint32_t got = 0;
	for (uint32_t i = 0; i < len; i++)
		got += in[16 + i];
	assert_int_equal(got, sum);
	vmbus_ring_read_commit(r);
}

static void test_wrap(void **state)
{
	struct pair p;
	pair_init(&p);
	/* Odd sizes walk the indices through every alignment of the wrap point. */
	for (uint32_t i = 0; i < 2000; i++)
		roundtrip(&p.w, &p.r, (i * 37) % 2900 + 1, i);
	free(p.mem);
}

static void test_wrap_mirrored(void **state)
{
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 2ull << 20), 0);
	uint64_t pfns[3] = { 40, 17, 99 }; /* header + 2 scattered data pages */
	struct vmbus_view v;
	assert_int_equal(vmbus_view_map(&v, &m, pfns, 3, 1), 0);
	assert_int_equal(v.len, 5 * 4096);
	/* The mirror really aliases guest RAM. */
	v.base[4096 + 5] = 0xAB;
	assert_int_equal(v.base[3 * 4096 + 5], 0xAB);
	assert_int_equal(m.base[17 * 4096 + 5], 0xAB);
	struct vmbus_ring w, r;
	/* The guest's unmirrored writer (pages are not contiguous for it: use the view for both). */
	assert_int_equal(vmbus_ring_init(&w, v.base, v.base + 4096, 8192, false), 0);
	assert_int_equal(vmbus_ring_init(&r, v.base, v.base + 4096, 8192, true), 0);
	for (uint32_t i = 0; i < 1000; i++)
		roundtrip(&w, &r, (i * 53) % 2900 + 1, i);
	vmbus_view_unmap(&v);
	uint64_t bad[2] = { 1, 1u << 20 };
	assert_int_equal(vmbus_view_map(&v, &m, bad, 2, 2), -EFAULT);
	guest_mem_destroy(&m);
}

static void test_signal_rules(void **state)
{
	struct pair p;
	pair_init(&p);
	uint8_t b[512];
	uint32_t n;
	bool sig;
	/* Empty -> non-empty with the mask clear: signal. Non-empty: no signal. */
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 1, NULL, 0, b, 64, &sig), 0);
	assert_true(sig);
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 2, NULL, 0, b, 64, &sig), 0);
	assert_false(sig);
	/* Reader drains; masked writer sees no need to signal. */
	while (vmbus_ring_read(&p.r, b, sizeof(b), &n) == 0)
		;
	assert_false(vmbus_ring_read_commit(&p.r)); /* nobody waits for space */
	vmbus_ring_mask(&p.r);
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 3, NULL, 0, b, 64, &sig), 0);
	assert_false(sig);
	/* Unmasking reports the packet that slipped in. */
	assert_true(vmbus_ring_unmask(&p.r));
	assert_int_equal(vmbus_ring_read(&p.r, b, sizeof(b), &n), 0);
	/* Read but not yet committed: the writer still sees a non-empty ring. */
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 4, NULL, 0, b, 64, &sig), 0);
	assert_false(sig);
	free(p.mem);
}

static void test_pending_send_sz(void **state)
{
	struct pair p;
	pair_init(&p);
	uint8_t b[1024];
	uint32_t n;
	int sent = 0;
	/* 1000-byte payload -> 1024 ring bytes; 4096 holds 3 (a full ring keeps one slot free). */
	while (vmbus_ring_write(&p.w, 6, 0, 0, NULL, 0, b, 1000, NULL) == 0)
		sent++;
	assert_int_equal(sent, 3);
	assert_int_equal(p.w.hdr->pending_send_sz, 1024);
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 0, NULL, 0, b, 1000, NULL), -EAGAIN);
	/* Freeing one packet makes 2048 free > 1024: exactly one signal. */
	assert_int_equal(vmbus_ring_read(&p.r, b, sizeof(b), &n), 0);
	assert_true(vmbus_ring_read_commit(&p.r));
	assert_int_equal(vmbus_ring_read(&p.r, b, sizeof(b), &n), 0);
	assert_false(vmbus_ring_read_commit(&p.r)); /* already had enough space */
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 0, NULL, 0, b, 1000, NULL), 0);
	assert_int_equal(p.w.hdr->pending_send_sz, 0);
	/* A packet that can never fit. */
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 0, NULL, 0, b, 4096, NULL), -EMSGSIZE);
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 0, b, 4, b, 1, NULL), -EINVAL);
	/* Reader buffer too small: nothing consumed. */
	assert_int_equal(vmbus_ring_read(&p.r, b, 100, &n), -EMSGSIZE);
	assert_int_equal(n, 1016);
	assert_int_equal(vmbus_ring_read(&p.r, b, sizeof(b), &n), 0);
	free(p.mem);
}

/* Hostile peer: every corrupt index or descriptor gives -EPROTO, sticky, with no out-of-bounds access
 * (the data area is exactly DATA bytes of heap, so ASan would catch one). */
static void test_hostile(void **state)
{
	struct {
		uint32_t w;
		struct vmbus_packet_descriptor d;
	} cases[] = {
		{ DATA, { 6, 2, 4, 0, 0 } },     /* write_index == size */
		{ 0xFFFFFFF8u, { 6, 2, 4, 0, 0 } },
		{ 36, { 6, 2, 4, 0, 0 } },       /* misaligned */
		{ 8, { 6, 2, 4, 0, 0 } },        /* fragment shorter than a descriptor + trailer */
		{ 64, { 6, 2, 16, 0, 0 } },      /* len8 beyond the data present */
		{ 64, { 6, 5, 4, 0, 0 } },       /* offset8 > len8 */
		{ 64, { 6, 1, 4, 0, 0 } },       /* offset inside the descriptor */
		{ 64, { 6, 2, 1, 0, 0 } },       /* len8 shorter than the descriptor */
		{ 64, { 6, 2, 0xFFFF, 0, 0 } },  /* longer than the ring */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *hdr = aligned_alloc(4096, 4096);
		uint8_t *data = malloc(DATA);
		memset(hdr, 0, 4096);
		memset(data, 0, DATA);
		struct vmbus_ring r;
		assert_int_equal(vmbus_ring_init(&r, hdr, data, DATA, false), 0);
		memcpy(data, &cases[i].d, 16);
		((struct vmbus_ring_header *)hdr)->write_index = cases[i].w;
		uint8_t buf[DATA];
		uint32_t n;
		assert_int_equal(vmbus_ring_read(&r, buf, sizeof(buf), &n), -EPROTO);
		((struct vmbus_ring_header *)hdr)->write_index = 0;
		assert_int_equal(vmbus_ring_read(&r, buf, sizeof(buf), &n), -EPROTO); /* sticky */
		assert_false(vmbus_ring_read_commit(&r));
		free(hdr);
		free(data);
	}
	/* Wrapping descriptor at the very end of the ring is fine when valid. */
	struct pair p;
	pair_init(&p);
	p.w.priv_write = p.r.priv_read = p.r.start_read = DATA - 8;
	p.w.hdr->read_index = p.w.hdr->write_index = DATA - 8;
	roundtrip(&p.w, &p.r, 100, 5);
	/* Writer facing a corrupt read_index. */
	p.w.hdr->read_index = 4;
	assert_int_equal(vmbus_ring_write(&p.w, 6, 0, 0, NULL, 0, "x", 1, NULL), -EPROTO);
	assert_int_equal(vmbus_ring_avail_write(&p.w), 0);
	free(p.mem);
	/* init refuses bad sizes and indices */
	uint8_t *h = aligned_alloc(4096, 4096);
	memset(h, 0, 4096);
	struct vmbus_ring r;
	assert_int_equal(vmbus_ring_init(&r, h, h, 100, false), -EINVAL);
	((struct vmbus_ring_header *)h)->read_index = 4;
	assert_int_equal(vmbus_ring_init(&r, h, h, 4096, false), -EPROTO);
	free(h);
}

/* GPA_DIRECT with two ranges written through the ring, parsed back; then malformed variants. */
static void test_packet_parse(void **state)
{
	struct pair p;
	pair_init(&p);
	uint64_t ext[] = { 2ull << 32, /* rsvd 0, rangecount 2 */
			   (uint64_t)10 << 32 | 5000, 7, 8, /* 5000 bytes at offset 10: 2 pages */
			   (uint64_t)0 << 32 | 4096, 9 };
	uint8_t buf[256];
	uint32_t n;
	assert_int_equal(vmbus_ring_write(&p.w, VM_PKT_DATA_USING_GPA_DIRECT, 1, 77, ext, sizeof(ext), "payload!", 8, NULL), 0);
	assert_int_equal(vmbus_ring_read(&p.r, buf, sizeof(buf), &n), 0);
	struct vmbus_packet pk;
	assert_int_equal(vmbus_packet_parse(buf, n, &pk), 0);
	assert_int_equal(pk.range_count, 2);
	assert_int_equal(pk.payload_len, 8);
	assert_memory_equal(pk.payload, "payload!", 8);
	uint64_t cur = 0;
	struct vmbus_packet_range r;
	assert_int_equal(vmbus_packet_next_range(&pk, &cur, &r), 1);
	assert_int_equal(r.nr_pfns, 2);
	assert_int_equal(r.byte_offset, 10);
	assert_int_equal(vmbus_packet_range_pfn(&r, 1), 8);
	assert_int_equal(vmbus_packet_next_range(&pk, &cur, &r), 1);
	assert_int_equal(vmbus_packet_range_pfn(&r, 0), 9);
	assert_int_equal(vmbus_packet_next_range(&pk, &cur, &r), 0);
	/* Claims 3 ranges / a range with more pages than fit / zero bytes: refused. */
	ext[0] = 3ull << 32;
	memcpy(buf + 16, ext, sizeof(ext));
	assert_int_equal(vmbus_packet_parse(buf, n, &pk), -EPROTO);
	ext[0] = 2ull << 32;
	ext[1] = (uint64_t)10 << 32 | 50000;
	memcpy(buf + 16, ext, sizeof(ext));
	assert_int_equal(vmbus_packet_parse(buf, n, &pk), -EPROTO);
	ext[1] = 0;
	memcpy(buf + 16, ext, sizeof(ext));
	assert_int_equal(vmbus_packet_parse(buf, n, &pk), -EPROTO);
	/* XFER_PAGES with more ranges than the header holds. */
	struct vmbus_xfer_page_packet_header xh = { .d = { .type = VM_PKT_DATA_USING_XFER_PAGES, .offset8 = 4, .len8 = 4 },
						    .xfer_pageset_id = 0xCAFE, .range_cnt = 1 };
	memcpy(buf, &xh, sizeof(xh));
	memset(buf + 24, 0, 8);
	assert_int_equal(vmbus_packet_parse(buf, 32, &pk), 0);
	assert_int_equal(pk.xfer_count, 1);
	assert_int_equal(pk.xfer_pageset_id, 0xCAFE);
	xh.range_cnt = 2;
	memcpy(buf, &xh, sizeof(xh));
	assert_int_equal(vmbus_packet_parse(buf, 32, &pk), -EPROTO);
	assert_int_equal(vmbus_packet_parse(buf, 8, &pk), -EPROTO);
	free(p.mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_wrap_mirrored),
		cmocka_unit_test(test_signal_rules),
		cmocka_unit_test(test_pending_send_sz),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_packet_parse),
	};
	return cmocka_run_group_tests_name("vmbus_ring", tests, NULL, NULL);
}
