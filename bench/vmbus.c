/* VMBus loopback throughput: the guest client sends INBAND packets, the echo device returns them.
 * Reports packets/s and GB/s (one direction's payload) for 64 B, 1 KiB and 64 KiB packets, and how
 * often the host had to interrupt the guest (signal_guest) per packet: the signalling rules should
 * keep that far below 1 when the guest batches. No KVM: this measures the ring and device path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/testdev.h"
#include "util/clock.h"
#include "util/log.h"
#include "support/loopback.h"

static double now(void)
{
	return (double)clock_mono_ns() / 1e9;
}

/* Sends `batch` packets, then reads all echoes; repeats for about `secs` seconds. */
static void run(uint32_t len, uint32_t batch, double secs)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	if (vmbus_loopback_init(&lb, 64ull << 20, 1, NULL) || testdev_create(lb.srv, 0, 0, &td) ||
	    vmbus_client_connect(&lb.cl, 0, 0) || vmbus_client_request_offers(&lb.cl)) {
		fprintf(stderr, "bench: setup failed\n");
		exit(1);
	}
	struct vmbus_client_channel ch;
	if (vmbus_client_channel_open(&lb.cl, &ch, 1, 1 << 20, 1 << 20, 0, NULL, 0)) {
		fprintf(stderr, "bench: open failed\n");
		exit(1);
	}
	uint8_t *out = malloc(len), *in = malloc(len + 64);
	memset(out, 0xA5, len);
	uint64_t pkts = 0;
	double t0 = now(), t;
	do {
		uint32_t sent = 0;
		for (; sent < batch; sent++)
			if (vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, pkts + sent, NULL, 0, out, len))
				break;
		uint32_t n, got = 0;
		while (got < sent && vmbus_client_recv(&ch, in, len + 64, &n) == 0) {
			got++;
			if (got % 16 == 0 || got == sent)
				vmbus_client_recv_done(&ch);
		}
		vmbus_client_recv_done(&ch);
		pkts += got;
		t = now() - t0;
	} while (t < secs);
	printf("  %6u B  batch %3u: %10.0f packets/s  %6.2f GB/s  host->guest signals/packet %.3f  guest->host %.3f\n",
	       len, batch, pkts / t, pkts * (double)len / t / 1e9, (double)lb.host_signals / pkts,
	       (double)lb.guest_signals / pkts);
	free(out);
	free(in);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	printf("vmbus loopback echo (guest client -> ring -> echo device -> ring -> guest), 1 MiB rings\n");
	printf("peer figure to compare with: Linux guest on Hyper-V netvsc/storvsc rings (not measurable here)\n");
	printf("note: the loopback device drains synchronously, so every guest write finds an empty ring and signals\n");
	static const uint32_t sizes[] = { 64, 1024, 65536 };
	for (int i = 0; i < 3; i++) {
		run(sizes[i], 1, 0.5);
		run(sizes[i], 8, 0.5);
	}
	return 0;
}
