/* VMBus end to end on real KVM: the guest sets up the hypercall page and the SynIC, negotiates
 * VMBus 5.x with the shared client library, opens the echo test device (--test-devices) and
 * round-trips 10,000 packets of varied sizes with checksums. Then it closes the channel, unloads
 * and reconnects (the kexec / module reload path). */
#include "guest.h"
#include "gen2vm/proto/testdev.h"
#include "vmbus_client.h"

#define HV_GUEST_OS_ID 0x40000000u
#define HV_HYPERCALL 0x40000001u
#define HV_SCONTROL 0x40000080u
#define HV_SIEFP 0x40000082u
#define HV_SIMP 0x40000083u
#define HV_EOM 0x40000084u
#define HV_SINT2 0x40000092u
#define PACKETS 10000

static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t simp[4096] __attribute__((aligned(4096)));
static uint8_t siefp[4096] __attribute__((aligned(4096)));
static uint8_t input[4096] __attribute__((aligned(4096)));
static uint8_t pool[8 << 20] __attribute__((aligned(4096)));
static size_t pool_used;
static uint64_t out_buf[8192 / 8], in_buf[(8192 + 64) / 8];

static uint64_t hypercall(uint64_t control, uint64_t in, uint64_t out)
{
	uint64_t status;
	register uint64_t r8 __asm__("r8") = out;
	__asm__ volatile("call *%[page]"
			 : "=a"(status), "+c"(control), "+d"(in), "+r"(r8)
			 : [page] "r"(hypercall_page)
			 : "r9", "r10", "r11", "memory", "cc");
	return status;
}

static uint16_t op_post(void *ctx, uint32_t conn, const void *msg, uint32_t len)
{
	struct hv_input_post_message *in = (void *)input;
	in->connection_id = conn;
	in->reserved = 0;
	in->message_type = HVMSG_VMBUS;
	in->payload_size = len;
	memcpy(in->payload, msg, len);
	return (uint16_t)hypercall(HVCALL_POST_MESSAGE, (uint64_t)input, 0);
}

static int op_next(void *ctx, void *buf, uint32_t *len)
{
	struct hv_message *slot = (struct hv_message *)simp + 2;
	for (unsigned long spin = 0; spin < 50000000ul; spin++) {
		if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE) == HVMSG_NONE) {
			cpu_relax();
			continue;
		}
		*len = slot->header.payload_size;
		memcpy(buf, slot->payload, *len);
		__atomic_store_n(&slot->header.message_type, HVMSG_NONE, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&slot->header.message_flags, __ATOMIC_SEQ_CST) & HV_MESSAGE_FLAG_PENDING)
			wrmsr_safe(HV_EOM, 0);
		return 0;
	}
	return -VMBUS_ETIMEDOUT;
}

static void op_signal(void *ctx, uint32_t conn)
{
	hypercall(HVCALL_SIGNAL_EVENT | (1u << 16), conn, 0);
}

static void *op_alloc(void *ctx, uint32_t n)
{
	if (pool_used + n * 4096ul > sizeof(pool))
		return NULL;
	void *p = pool + pool_used;
	pool_used += n * 4096ul;
	memset(p, 0, n * 4096ul);
	return p;
}

static void op_free(void *ctx, void *p, uint32_t n)
{
	if ((uint8_t *)p + n * 4096ul == pool + pool_used)
		pool_used -= n * 4096ul; /* the last allocation is returned on close */
}

static uint64_t op_v2p(void *ctx, const void *p)
{
	return (uint64_t)p; /* identity-mapped */
}

static const struct vmbus_client_ops ops = {
	.post_message = op_post, .next_message = op_next, .signal_event = op_signal,
	.alloc_pages = op_alloc, .free_pages = op_free, .virt_to_phys = op_v2p,
};

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
		int r;
		while ((r = vmbus_client_send(ch, VM_PKT_DATA_INBAND, 0, i, NULL, 0, out_buf, words * 8)) == -VMBUS_EAGAIN)
			cpu_relax();
		if (r) {
			gprintf("vmbus: send %u failed (%x)\n", (uint64_t)i, (uint64_t)-r);
			return 10;
		}
		uint32_t n = 0;
		for (unsigned long spin = 0;; spin++) {
			r = vmbus_client_recv(ch, in_buf, sizeof(in_buf), &n);
			if (r != -VMBUS_EAGAIN)
				break;
			if (spin > 100000000ul) {
				gprintf("vmbus: no echo for packet %u\n", (uint64_t)i);
				return 11;
			}
			cpu_relax();
		}
		vmbus_client_recv_done(ch);
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
	wrmsr_safe(HV_GUEST_OS_ID, 0x8100000000060100ull);
	wrmsr_safe(HV_HYPERCALL, (uint64_t)hypercall_page | 1);
	wrmsr_safe(HV_SIMP, (uint64_t)simp | 1);
	wrmsr_safe(HV_SIEFP, (uint64_t)siefp | 1);
	wrmsr_safe(HV_SINT2, 0xF3); /* unmasked; interrupts stay off, the guest polls */
	wrmsr_safe(HV_SCONTROL, 1);

	static struct vmbus_client cl;
	vmbus_client_init(&cl, &ops);
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
	vmbus_client_init(&cl, &ops);
	if (vmbus_client_connect(&cl, 0, 0) || vmbus_client_request_offers(&cl) ||
	    !vmbus_client_find_offer(&cl, &cls, 0))
		return 6;
	gputs("vmbus: reconnected after unload\n");
	guest_poweroff();
}
