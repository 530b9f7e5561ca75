/* VMBus end to end on real KVM: the guest sets up the hypercall page and the SynIC, negotiates
 * VMBus 5.x with the shared client library, opens the echo test device (--test-devices) and
 * round-trips 10,000 packets of varied sizes with checksums. Then it closes the channel, unloads
 * and reconnects (the kexec / module reload path). */
#include "gen2vm/proto/testdev.h"
#include "hvguest.h"

#define PACKETS 10000

static uint64_t out_buf[8192 / 8], in_buf[(8192 + 64) / 8];

static uint64_t sum64(const uint64_t *p, unsigned words)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < words; i++)
		s = (s << 1 | s >> 63) ^ p[i];
	return s;
}

static int echo(struct vmbus_client_channel *ch)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (unsigned i = 0; i < PACKETS; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		unsigned words = 1 + (unsigned)(seed >> 33) % 512; /* 8 .. 4096 bytes */
		out_buf[0] = seed;
		for (unsigned w = 1; w < words; w += 64)
			out_buf[w] = seed ^ w;
		uint64_t want = sum64(out_buf, words);
		uint32_t n = 0;
		int r = hvguest_roundtrip(ch, i, out_buf, words * 8, in_buf, sizeof(in_buf), &n);
		if (r == -VMBUS_ETIMEDOUT) {
			gprintf("vmbus: no echo for packet %u\n", (uint64_t)i);
			return 11;
		}
		if (r) {
			gprintf("vmbus: packet %u failed (%x)\n", (uint64_t)i, (uint64_t)-r);
			return 10;
		}
		/* The packet comes with its descriptor: the payload starts at offset8 * 8. */
		struct vmbus_packet_descriptor d;
		memcpy(&d, in_buf, sizeof(d));
		uint32_t off = d.offset8 * 8u;
		if (r || d.trans_id != i || off < sizeof(d) || n < off || n - off != words * 8 ||
		    sum64(in_buf + off / 8, words) != want) {
			gprintf("vmbus: packet %u came back wrong (%u bytes, want %u)\n", (uint64_t)i, (uint64_t)(n - off),
				(uint64_t)words * 8);
			return 12;
		}
	}
	return 0;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	hvguest_init();

	static struct vmbus_client cl;
	vmbus_client_init(&cl, &hvguest_vmbus_ops);
	int r = vmbus_client_connect(&cl, 0, 0);
	if (r) {
		gprintf("vmbus: connect failed (%x)\n", (uint64_t)-r);
		return 1;
	}
	gprintf("vmbus: version %u.%u\n", (uint64_t)(cl.version >> 16), (uint64_t)(cl.version & 0xffff));
	if ((r = vmbus_client_request_offers(&cl)))
		return 2;
	struct vmbus_guid cls;
	vmbus_guid_parse(TESTDEV_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&cl, &cls, 0);
	if (!o) {
		gprintf("vmbus: no echo device among %u offers (run with --test-devices)\n", (uint64_t)cl.nr_offers);
		return 3;
	}
	static struct vmbus_client_channel ch;
	uint32_t relid = o->msg.child_relid;
	if ((r = vmbus_client_channel_open(&cl, &ch, relid, 64 << 10, 64 << 10, 0, NULL, 0))) {
		gprintf("vmbus: open failed (%x)\n", (uint64_t)-r);
		return 4;
	}
	if ((r = echo(&ch)))
		return r;
	gprintf("vmbus: %u packets echoed\n", (uint64_t)PACKETS);
	if (vmbus_client_channel_close(&ch) || vmbus_client_unload(&cl))
		return 5;
	/* Reconnect after UNLOAD, as a kexec'd kernel or a reloaded hv_vmbus does. */
	if (hvguest_vmbus_connect(&cl) ||
	    !vmbus_client_find_offer(&cl, &cls, 0))
		return 6;
	gputs("vmbus: reconnected after unload\n");
	guest_poweroff();
}
