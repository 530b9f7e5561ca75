/* The reversing echo device (--reverse-echo, src/devices/reverse.c), the registry's worked example,
 * seen from a guest: it is offered beside the other devices, opens, and answers 1,000 packets of
 * 1..4096 bytes with their bytes in reverse order. */
#include "gen2vm/proto/testdev.h"
#include "hvguest.h"

#define PACKETS 1000

static uint8_t out_buf[4096], in_buf[4096 + 64];

static int reverse(struct vmbus_client_channel *ch)
{
	uint64_t seed = 0x243f6a8885a308d3ull;
	for (unsigned i = 0; i < PACKETS; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		unsigned len = 1 + (unsigned)(seed >> 33) % sizeof(out_buf);
		for (unsigned b = 0; b < len; b++)
			out_buf[b] = (uint8_t)(seed >> (b % 8 * 8)) ^ (uint8_t)b;
		uint32_t n = 0;
		int r = hvguest_roundtrip(ch, i, out_buf, len, in_buf, sizeof(in_buf), &n);
		if (r == -VMBUS_ETIMEDOUT) {
			gprintf("reverse: no answer to packet %u\n", (uint64_t)i);
			return 11;
		}
		if (r)
			return 10;
		struct vmbus_packet_descriptor d;
		memcpy(&d, in_buf, sizeof(d));
		uint32_t off = d.offset8 * 8u;
		/* The ring pads a payload to 8 bytes: the reversed bytes are the first len of it. */
		if (r || d.trans_id != i || off < sizeof(d) || n < off + len) {
			gprintf("reverse: packet %u came back malformed\n", (uint64_t)i);
			return 12;
		}
		/* The device reverses the padded payload, so the padding comes first. */
		uint32_t pad = n - off - len;
		for (unsigned b = 0; b < len; b++)
			if (in_buf[off + pad + b] != out_buf[len - 1 - b]) {
				gprintf("reverse: packet %u byte %u is wrong\n", (uint64_t)i, (uint64_t)b);
				return 13;
			}
	}
	return 0;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	hvguest_init();
	static struct vmbus_client cl;
	if (hvguest_vmbus_connect(&cl))
		return 1;
	struct vmbus_guid cls, echo;
	vmbus_guid_parse(REVERSE_CLASS_GUID_TEXT, &cls);
	vmbus_guid_parse(TESTDEV_CLASS_GUID_TEXT, &echo);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&cl, &cls, 0);
	if (!o) {
		gprintf("reverse: not among %u offers (run with --reverse-echo)\n", (uint64_t)cl.nr_offers);
		return 3;
	}
	gprintf("reverse: offered among %u devices%s\n", (uint64_t)cl.nr_offers,
		vmbus_client_find_offer(&cl, &echo, 0) ? ", beside the echo device" : "");
	static struct vmbus_client_channel ch;
	int r = vmbus_client_channel_open(&cl, &ch, o->msg.child_relid, 16 << 10, 16 << 10, 0, NULL, 0);
	if (r) {
		gprintf("reverse: open failed (%x)\n", (uint64_t)-r);
		return 4;
	}
	if ((r = reverse(&ch)))
		return r;
	gprintf("reverse: %u packets reversed\n", (uint64_t)PACKETS);
	if (vmbus_client_channel_close(&ch))
		return 5;
	guest_poweroff();
}
