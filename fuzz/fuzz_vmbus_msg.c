/* Fuzzes the VMBus server's message parser and state machine: the input is a sequence of guest
 * messages { u8 connection selector; u8 len; len bytes } posted to a connected server with two echo
 * devices, interleaved with signals. Any crash, leak or sanitizer report is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/testdev.h"
#include "util/log.h"
#include "support/loopback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmbus_loopback lb;
	static bool ready;
	if (!ready) {
		log_set_level(LOG_ERROR);
		if (vmbus_loopback_init(&lb, 16ull << 20, 2, NULL))
			abort();
		ready = true;
	}
	struct testdev *td[2];
	testdev_create(lb.srv, 0, 2, &td[0]);
	testdev_create(lb.srv, 1, 0, &td[1]);
	vmbus_client_init(&lb.cl, &lb.ops);
	/* Start connected with offers delivered half the time, so deep states are reachable. */
	if (size && (data[0] & 1)) {
		vmbus_client_connect(&lb.cl, 0, 0);
		vmbus_client_request_offers(&lb.cl);
	}
	uint64_t buf[30];
	size_t i = size ? 1 : 0;
	while (i + 2 <= size) {
		uint8_t sel = data[i], len = data[i + 1];
		i += 2;
		if (len > size - i)
			len = (uint8_t)(size - i);
		uint8_t msg[256] = { 0 };
		memcpy(msg, data + i, len);
		i += len;
		if (sel & 0x80) {
			vmbus_server_signal_event(lb.srv, VMBUS_CHANNEL_CONNECTION_BASE + (sel & 7));
			continue;
		}
		uint32_t conn = (sel & 3) == 0 ? 1 : (sel & 3) == 1 ? 4 : sel;
		vmbus_loopback_post(&lb, conn, msg, len);
		while (vmbus_loopback_pop(&lb, buf) >= 0)
			;
	}
	testdev_destroy(td[0]);
	testdev_destroy(td[1]);
	vmbus_server_reset(lb.srv);
	while (vmbus_loopback_pop(&lb, buf) >= 0)
		;
	lb.alloc_next = lb.alloc_base;
	lb.alloc_live = 0;
	return 0;
}
