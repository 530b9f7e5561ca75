/* GPADLs through the server: 1 GiB, multi-range, and every way a guest can get one wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/testdev.h"
#include "support/loopback.h"

#define GIB (1ull << 30)

struct env {
	struct vmbus_loopback lb;
	struct testdev *td;
};

static void env_up(struct env *e, uint64_t ram, const struct vmbus_server_config *cfg)
{
	assert_int_equal(vmbus_loopback_init(&e->lb, ram, 1, cfg), 0);
	assert_int_equal(testdev_create(e->lb.srv, 0, 0, &e->td), 0);
	assert_int_equal(vmbus_client_connect(&e->lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&e->lb.cl), 0);
}

static void env_down(struct env *e)
{
	testdev_destroy(e->td);
	vmbus_loopback_destroy(&e->lb);
}

/* 1 GiB = 262144 pfns: one header and 9362 bodies. The guest RAM is lazily allocated and the GPADL
 * reuses its pages, so this costs little memory. */
static void test_gpadl_1gib(void **state)
{
	struct env e;
	env_up(&e, GIB + (64ull << 20), NULL);
	uint32_t n = 262144;
	uint64_t *pfns = malloc(n * sizeof(*pfns));
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = 256 + (i % 4096);
	uint32_t g;
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, n, &g), 0);
	/* The whole guest RAM above 1 GiB can be a GPADL too (pages above the MMIO gap: none here). */
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = (GIB >> 12) + (i % 16384);
	uint32_t g2;
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, n, &g2), 0);
	assert_int_equal(vmbus_client_gpadl_teardown(&e.lb.cl, 1, g), 0);
	assert_int_equal(vmbus_client_gpadl_teardown(&e.lb.cl, 1, g2), 0);
	/* Over the configured page budget: refused, and the budget is returned afterwards. */
	env_down(&e);
	struct vmbus_server_config cfg = { .max_gpadl_pages = 300000, .max_gpadls = 3 };
	env_up(&e, 64ull << 20, &cfg);
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = 256 + (i % 4096);
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, n, &g), 0);
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, n, &g2), -VMBUS_EIO);
	assert_int_equal(vmbus_client_gpadl_teardown(&e.lb.cl, 1, g), 0);
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, n, &g2), 0);
	/* Count limit. */
	uint32_t a, b;
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, 1, &a), 0);
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, 1, &b), 0);
	assert_int_equal(vmbus_client_gpadl_create_pfns(&e.lb.cl, 1, pfns, 1, &b), -VMBUS_EIO);
	free(pfns);
	env_down(&e);
}

static void test_view_1gib(void **state)
{
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, GIB + (2ull << 20)), 0);
	uint32_t n = 262144;
	uint64_t *pfns = malloc(n * sizeof(*pfns));
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = 512 + i; /* contiguous: one mmap */
	struct vmbus_view v;
	assert_int_equal(vmbus_view_map(&v, &m, pfns, n, n), 0);
	assert_int_equal(v.len, GIB);
	v.base[GIB - 1] = 0x5A;
	assert_int_equal(m.base[(512ull << 12) + GIB - 1], 0x5A);
	vmbus_view_unmap(&v);
	free(pfns);
	guest_mem_destroy(&m);
}

static uint32_t last_created_status(struct vmbus_loopback *lb, uint32_t id)
{
	uint64_t buf[30];
	int n;
	uint32_t st = 0xDEAD;
	while ((n = vmbus_loopback_pop(lb, buf)) >= 0) {
		struct vmbus_channel_gpadl_created *c = (void *)buf;
		if (c->header.msgtype == CHANNELMSG_GPADL_CREATED && c->gpadl == id)
			st = c->creation_status;
	}
	return st;
}

/* Builds a GPADL_HEADER with the given ranges (each {count, offset, npfns, first pfn}). */
static uint32_t make_header(uint8_t *m, uint32_t id, uint32_t relid, uint16_t rangecount, uint16_t buflen,
			    const uint64_t *words, uint32_t nwords)
{
	struct vmbus_channel_gpadl_header h = { .header.msgtype = CHANNELMSG_GPADL_HEADER, .child_relid = relid,
						.gpadl = id, .range_buflen = buflen, .rangecount = rangecount };
	memcpy(m, &h, sizeof(h));
	memcpy(m + sizeof(h), words, nwords * 8);
	return (uint32_t)sizeof(h) + nwords * 8;
}

static uint64_t range_word(uint32_t count, uint32_t offset)
{
	return (uint64_t)offset << 32 | count;
}

static void test_gpadl_multirange_and_malformed(void **state)
{
	struct env e;
	env_up(&e, 64ull << 20, NULL);
	struct vmbus_loopback *lb = &e.lb;
	uint8_t m[240];
	/* Two ranges: 100 bytes at offset 4000 (2 pages) and 3 whole pages; body carries the rest. */
	uint64_t w[] = { range_word(100, 4000), 300, 301, range_word(3 * 4096, 0), 400 };
	uint32_t len = make_header(m, 0x100, 1, 2, 7 * 8, w, 5);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(lb, m), -1); /* incomplete: no answer yet */
	struct vmbus_channel_gpadl_body b = { .header.msgtype = CHANNELMSG_GPADL_BODY, .gpadl = 0x100 };
	uint64_t more[] = { 401, 402 };
	memcpy(m, &b, sizeof(b));
	memcpy(m + sizeof(b), more, sizeof(more));
	assert_int_equal(vmbus_loopback_post(lb, 1, m, sizeof(b) + sizeof(more)), HV_STATUS_SUCCESS);
	assert_int_equal(last_created_status(lb, 0x100), 0);
	/* A body for a complete GPADL is dropped. */
	assert_int_equal(vmbus_loopback_post(lb, 1, m, sizeof(b) + sizeof(more)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(lb, m), -1);

	struct {
		uint16_t rangecount, buflen;
		uint32_t relid;
		uint32_t nwords;
		uint64_t words[4];
	} bad[] = {
		{ 1, 16, 1, 2, { range_word(4096, 0), 0x100000 } },     /* page beyond 64 MiB of RAM */
		{ 1, 16, 1, 2, { range_word(4096, 0), 0xE0000 } },      /* page in the MMIO gap */
		{ 1, 16, 1, 2, { range_word(4096, 0), UINT64_MAX } },   /* pfn overflowing a GPA */
		{ 1, 16, 1, 2, { range_word(4096, 4096), 5 } },         /* offset beyond the page */
		{ 1, 16, 1, 2, { range_word(0, 0), 5 } },               /* empty range */
		{ 0, 16, 1, 2, { range_word(4096, 0), 5 } },            /* no ranges */
		{ 1, 24, 1, 3, { range_word(4096, 0), 5, 6 } },         /* bytes after the last range */
		{ 1, 99, 1, 2, { range_word(4096, 0), 5 } },            /* range_buflen disagrees */
		{ 1, 16, 7, 2, { range_word(4096, 0), 5 } },            /* unknown relid */
		{ 1, 16, 1, 2, { range_word(0xFFFFFFFFu, 4095), 5 } },  /* 1 Mi + 1 pages: over the budget */
	};
	for (uint32_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint32_t id = 0x200 + i;
		len = make_header(m, id, bad[i].relid, bad[i].rangecount, bad[i].buflen, bad[i].words, bad[i].nwords);
		assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
		assert_int_equal(last_created_status(lb, id), VMBUS_STATUS_UNSUCCESSFUL);
	}
	/* Misaligned header length; duplicate handle. */
	len = make_header(m, 0x300, 1, 1, 16, w + 3, 2);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len - 3), HV_STATUS_SUCCESS);
	assert_int_equal(last_created_status(lb, 0x300), VMBUS_STATUS_UNSUCCESSFUL);
	len = make_header(m, 0x100, 1, 1, 16, (uint64_t[]){ range_word(4096, 0), 5 }, 2);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
	assert_int_equal(last_created_status(lb, 0x100), VMBUS_STATUS_UNSUCCESSFUL);
	/* A bad pfn in a body fails the GPADL that was in progress. */
	len = make_header(m, 0x400, 1, 1, 24, (uint64_t[]){ range_word(8192, 0), 5 }, 2);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
	b.gpadl = 0x400;
	memcpy(m, &b, sizeof(b));
	uint64_t badpfn = 1ull << 40;
	memcpy(m + sizeof(b), &badpfn, 8);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, sizeof(b) + 8), HV_STATUS_SUCCESS);
	assert_int_equal(last_created_status(lb, 0x400), VMBUS_STATUS_UNSUCCESSFUL);
	/* Teardown of a GPADL still being assembled answers TORNDOWN and forgets it. */
	len = make_header(m, 0x500, 1, 1, 24, (uint64_t[]){ range_word(8192, 0), 5 }, 2);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_client_gpadl_teardown(&lb->cl, 1, 0x500), 0);
	assert_int_equal(vmbus_client_gpadl_teardown(&lb->cl, 1, 0x100), 0);
	/* Ring GPADLs that are not whole pages cannot back a channel. */
	len = make_header(m, 0x600, 1, 1, 40, (uint64_t[]){ range_word(4 * 4096 - 8, 8), 300, 301, 302, 303 }, 5);
	assert_int_equal(vmbus_loopback_post(lb, 1, m, len), HV_STATUS_SUCCESS);
	assert_int_equal(last_created_status(lb, 0x600), 0);
	struct vmbus_channel_open_channel op = { .header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 1,
						 .ringbuffer_gpadlhandle = 0x600, .downstream_ringbuffer_pageoffset = 2 };
	assert_int_equal(vmbus_loopback_post(lb, 1, &op, sizeof(op)), HV_STATUS_SUCCESS);
	uint64_t buf[30];
	assert_true(vmbus_loopback_pop(lb, buf) > 0);
	assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	env_down(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpadl_1gib),
		cmocka_unit_test(test_view_1gib),
		cmocka_unit_test(test_gpadl_multirange_and_malformed),
	};
	return cmocka_run_group_tests_name("vmbus_gpadl", tests, NULL, NULL);
}
