/* Echo round trips through the loopback guest and the test device: varied sizes with checksums,
 * and flow control when the guest stops reading (pending_send_sz in both directions). */
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

static uint64_t fnv(const uint8_t *p, uint32_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void gen(uint8_t *p, uint32_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (uint32_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static void test_echo_sizes(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 256 << 10, 256 << 10, 0, NULL, 0), 0);
	uint8_t *out = malloc(200000), *in = malloc(256 << 10);
	static const uint32_t sizes[] = { 8, 1, 7, 64, 100, 1024, 4000, 4096, 65536, 131072, 200000 };
	for (uint32_t round = 0; round < 50; round++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint32_t len = sizes[i] + round * 8 % 64;
			if (len > 200000)
				len = 200000;
			gen(out, len, round * 100 + (uint32_t)i);
			uint64_t want = fnv(out, len);
			uint64_t id = round * 1000 + i;
			assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, id, NULL, 0, out, len), 0);
			uint32_t n;
			assert_int_equal(vmbus_client_recv(&ch, in, 256 << 10, &n), 0);
			vmbus_client_recv_done(&ch);
			struct vmbus_packet_descriptor d;
			memcpy(&d, in, sizeof(d));
			assert_int_equal(d.trans_id, id);
			assert_true(n - d.offset8 * 8u >= len);
			assert_int_equal(fnv(in + d.offset8 * 8u, len), want);
		}
	assert_int_equal(testdev_echoed(td), 50 * 11);
	free(out);
	free(in);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

/* The guest writes without reading: the device blocks on the full host->guest ring, the guest's ring
 * fills too; then the guest drains, its reads signal the device (pending_send_sz), and every packet
 * comes back, in order, intact. */
static void test_echo_backpressure(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 16384, 8192, 0, NULL, 0), 0);
	uint8_t out[1000], in[2048];
	uint32_t sent = 0, got = 0;
	for (int iter = 0; iter < 200; iter++) {
		for (;;) {
			gen(out, sizeof(out), sent);
			int rc = vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, sent, NULL, 0, out, sizeof(out));
			if (rc == -VMBUS_EAGAIN)
				break;
			assert_int_equal(rc, 0);
			sent++;
		}
		assert_true(sent - got > 10); /* both rings filled up */
		uint64_t sig_before = lb.guest_signals;
		uint32_t n;
		while (vmbus_client_recv(&ch, in, sizeof(in), &n) == 0) {
			struct vmbus_packet_descriptor d;
			memcpy(&d, in, sizeof(d));
			assert_int_equal(d.trans_id, got);
			gen(out, sizeof(out), got);
			assert_memory_equal(in + 16, out, sizeof(out));
			got++;
			vmbus_client_recv_done(&ch); /* signals the blocked device once space opens */
		}
		assert_true(lb.guest_signals > sig_before);
	}
	/* Drain what is still in flight. */
	uint32_t n;
	for (int k = 0; k < 100 && got < sent; k++)
		while (vmbus_client_recv(&ch, in, sizeof(in), &n) == 0) {
			got++;
			vmbus_client_recv_done(&ch);
		}
	assert_int_equal(got, sent);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

/* A guest that corrupts its ring while the channel is open breaks only that channel. */
static void test_echo_corrupt_ring(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	ch.out.hdr->write_index = 8192 + 8; /* beyond the data */
	vmbus_server_signal_event(lb.srv, ch.connection_id);
	ch.out.hdr->write_index = 32;       /* a packet whose len8 exceeds what is there */
	struct vmbus_packet_descriptor d = { .type = 6, .offset8 = 2, .len8 = 200 };
	memcpy(ch.out.data, &d, sizeof(d));
	vmbus_server_signal_event(lb.srv, ch.connection_id);
	assert_int_equal(testdev_echoed(td), 0);
	/* Close and reopen recovers. */
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, 1, NULL, 0, "hello!!!", 8), 0);
	assert_int_equal(testdev_echoed(td), 1);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_sizes),
		cmocka_unit_test(test_echo_backpressure),
		cmocka_unit_test(test_echo_corrupt_ring),
	};
	return cmocka_run_group_tests_name("vmbus_echo", tests, NULL, NULL);
}
