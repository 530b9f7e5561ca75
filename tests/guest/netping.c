/* Two VMs ping each other over the synthetic network adapter: run two gen2vm processes with this
 * guest and `--nic pair=ID,mac=...` (same ID, MACs as below).
 *
 * A minimal netvsc driver: VMBus channel, NVSP init, receive and send buffers, RNDIS init, the
 * permanent MAC (OID query), packet filter; then raw Ethernet: ARP and ICMP echo with checksums.
 * RNDIS parsing and building come from guestlib/netvsc_client (shared with the loopback client).
 *
 * Parameters come from the MAC the VMM is given (test guests have no command line):
 *   02:FF:NN:NN:00:HH   HH = host number, IP 10.99.0.HH; HH = 1 answers ARP and echo requests,
 *                       any other HH pings 10.99.0.1 NNNN times (big-endian; 0 = 100)
 *                       FF bit 0: poll the ring instead of sleeping for the channel interrupt
 *                       FF bit 1: the pinger leaves without saying goodbye (the responder stays
 *                                 up for the next pinger: a peer replaced on the same pair)
 * The responder powers off when the pinger says goodbye (a frame of ethertype 0x88B5), the pinger
 * after its last reply. Both print their results on the debug console.
 *
 * Interrupt mode (the default) waits the way a real client does: the channel interrupt comes
 * through the SynIC (SINT2, vector 0xF3, event flag = relid), the guest clears the flag, drains the
 * ring, and EOIs the local APIC; HLT sleeps in between (a periodic LAPIC timer bounds every sleep
 * for timeouts: nominally 1 ms, but ticks only count while the guest sleeps, so timeouts are
 * generous). Nothing on the per-packet path needs the VMM's userspace: doorbells are ioeventfds,
 * the LAPIC is in the kernel. The channel interrupts taken are printed at the end.
 * Keep it lean: every guest instruction is emulated on nested hosts. */
#include "hvguest.h"
#include "netvsc_client.h"

#define TIMER_VECTOR 0xF0
#define RING_BYTES (128u << 10)
#define RBUF_BYTES (1u << 20)
#define SBUF_BYTES (256u << 10)
#define TX_SECTIONS 8u /* section 0: RNDIS control; 1..7: frames */
#define ETH_P_BYE 0x88B5u
#define PING_ID 0x4750u
#define PAYLOAD 56u

static struct vmbus_client cl;
static struct vmbus_client_channel ch;
static uint8_t *rbuf, *sbuf;
static uint32_t ssec_size, relid;
static uint64_t next_tid = 1;
static bool sec_busy[TX_SECTIONS];
static uint64_t pkt_buf[(RING_BYTES / 2) / 8];
static uint8_t ctl[512];
static uint32_t ctl_len;
static uint8_t my_mac[6], peer_mac[6], my_ip[4], peer_ip[4];
static bool poll_mode, have_peer, bye;
static volatile uint64_t ticks;
static uint32_t answered, sends_refused;

static void drop_frame(const uint8_t *f, uint32_t len)
{
}

/* The frame just received, handed to the role's handler (none before the role is known). */
static void (*on_frame)(const uint8_t *f, uint32_t len) = drop_frame;

struct interrupt_frame;

__attribute__((interrupt)) static void timer_isr(struct interrupt_frame *f)
{
	ticks++;
	hvguest_lapic_eoi();
}

/* Sleeps until an interrupt (interrupt mode) or briefly spins (poll mode). */
static void wait_event(void)
{
	if (poll_mode) { /* spin, but let the timer tick (and a channel interrupt be taken and ignored) */
		__asm__ volatile("sti; pause; cli" ::: "memory");
		return;
	}
	/* sti's one-instruction shadow: an interrupt that became pending before it still wakes the hlt. */
	__asm__ volatile("sti; hlt; cli" ::: "memory");
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static uint16_t csum(const uint8_t *p, uint32_t len)
{
	uint32_t s = 0;
	for (uint32_t i = 0; i + 1 < len; i += 2)
		s += be16(p + i);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* --- NVSP / RNDIS ------------------------------------------------------------------------------ */
static int nv_send(const struct nvsp_message *m, uint64_t tid, bool comp)
{
	int r;
	while ((r = vmbus_client_send(&ch, VM_PKT_DATA_INBAND, comp ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0,
				      tid, NULL, 0, m, sizeof(*m))) == -VMBUS_EAGAIN)
		wait_event();
	return r;
}

/* One RNDIS message from the receive buffer (netvsc_xfer_for_each callback). */
static void rndis_in(void *ctx, const uint8_t *msg, uint32_t len)
{
	struct rndis_header h;
	memcpy(&h, msg, 8);
	if (h.msg_len > len || h.msg_len < 8)
		return;
	if (h.type == RNDIS_MSG_PACKET) {
		struct rndis_packet p;
		const uint8_t *f;
		uint32_t flen;
		if (!netvsc_rndis_packet_parse(msg, len, &p, &f, &flen) && flen >= 14)
			on_frame(f, flen);
	} else if (h.type & RNDIS_MSG_COMPLETION) {
		ctl_len = h.msg_len < sizeof(ctl) ? h.msg_len : (uint32_t)sizeof(ctl);
		memcpy(ctl, msg, ctl_len);
	} /* indications (link state) need nothing here */
}

/* Handles one packet from the host; *comp_tid gets a completion's transaction id (0: none). */
static void nv_packet(const uint8_t *pkt, uint32_t len, uint64_t *comp_tid, struct nvsp_message *comp)
{
	struct vmbus_packet_descriptor d;
	struct nvsp_message m;
	if (netvsc_packet_peel(pkt, len, &d, &m))
		return;
	if (d.type == VM_PKT_COMP) {
		if (m.type == NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE) {
			if (d.trans_id >= 0x1000 && d.trans_id < 0x1000 + TX_SECTIONS)
				sec_busy[d.trans_id - 0x1000] = false;
			if (m.u.rndis_pkt_complete.status != NVSP_STAT_SUCCESS)
				sends_refused++;
		}
		*comp_tid = d.trans_id;
		*comp = m;
		return;
	}
	if (m.type != NVSP_MSG1_TYPE_SEND_RNDIS_PKT || netvsc_xfer_for_each(pkt, len, rbuf, RBUF_BYTES, rndis_in, NULL) < 0)
		return;
	struct nvsp_message cm;
	netvsc_rx_complete_init(&cm);
	while (vmbus_client_send(&ch, VM_PKT_COMP, 0, d.trans_id, NULL, 0, &cm, sizeof(cm)) == -VMBUS_EAGAIN)
		cpu_relax();
}

/* Drains the ring. Returns the number of packets handled; *got (and *reply, may be NULL) report a
 * completion of want_tid. */
static uint32_t nv_drain(uint64_t want_tid, bool *got, struct nvsp_message *reply)
{
	uint32_t n = 0, len;
	if (!poll_mode) /* clear our event flag first: a signal after this interrupts again */
		__atomic_and_fetch(hvguest_event_flags(2) + relid / 8, (uint8_t)~(1u << (relid % 8)),
				   __ATOMIC_SEQ_CST);
	while (vmbus_client_recv(&ch, pkt_buf, sizeof(pkt_buf), &len) == 0) {
		uint64_t tid = 0;
		struct nvsp_message m;
		nv_packet((const uint8_t *)pkt_buf, len, &tid, &m);
		if (tid && tid == want_tid) {
			*got = true;
			if (reply)
				*reply = m;
		}
		n++;
	}
	vmbus_client_recv_done(&ch);
	return n;
}

/* Waits (up to ~timeout_ms) for the completion of tid. Returns 0 or -1. */
static int nv_wait(uint64_t tid, struct nvsp_message *reply, uint32_t timeout_ms)
{
	bool got = false;
	uint64_t end = ticks + timeout_ms;
	while (!got) {
		if (!nv_drain(tid, &got, reply) && !got) {
			if (ticks > end)
				return -1;
			wait_event();
		}
	}
	return 0;
}

static int nv_request(struct nvsp_message *m, struct nvsp_message *reply)
{
	uint64_t tid = next_tid++;
	if (nv_send(m, tid, true))
		return -1;
	return nv_wait(tid, reply, 5000);
}

/* An RNDIS control message through send section 0; waits for its completion and the reply.
 * Returns the reply's status word, or -1. */
static int64_t rndis_ctl(const void *msg, uint32_t len)
{
	memcpy(sbuf, msg, len);
	struct nvsp_message m, r;
	netvsc_rndis_msg_init(&m, NVSP_CHANNEL_TYPE_CONTROL, 0, len);
	ctl_len = 0;
	if (nv_request(&m, &r) || r.u.rndis_pkt_complete.status != NVSP_STAT_SUCCESS)
		return -1;
	bool dummy = false;
	for (uint64_t end = ticks + 5000; !ctl_len && ticks <= end;)
		if (!nv_drain(0, &dummy, NULL))
			wait_event();
	if (ctl_len < 16)
		return -1;
	uint32_t st;
	memcpy(&st, ctl + 12, 4);
	return st;
}

static int64_t rndis_oid(uint32_t type, uint32_t oid, const void *in, uint32_t inlen)
{
	uint8_t msg[8 + 20 + 16];
	uint32_t len = netvsc_rndis_request_build(msg, sizeof(msg), type, (uint32_t)next_tid++, oid, in, inlen);
	return len ? rndis_ctl(msg, len) : -1;
}

static int netvsc_up(void)
{
	if (hvguest_vmbus_connect(&cl))
		return 1;
	struct vmbus_guid cls;
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&cl, &cls, 0);
	if (!o) {
		gputs("netping: no network adapter offered (give --nic)\n");
		return 2;
	}
	relid = o->msg.child_relid;
	if (vmbus_client_channel_open(&cl, &ch, relid, RING_BYTES, RING_BYTES, 0, NULL, 0))
		return 3;
	struct nvsp_message m, r;
	memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG_TYPE_INIT;
	m.u.init.min_protocol_ver = m.u.init.max_protocol_ver = NVSP_PROTOCOL_VERSION_61;
	if (nv_request(&m, &r) || r.type != NVSP_MSG_TYPE_INIT_COMPLETE || r.u.init_complete.status != NVSP_STAT_SUCCESS)
		return 4;
	memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG2_TYPE_SEND_NDIS_CONFIG;
	m.u.ndis_config.mtu = 1514;
	nv_send(&m, next_tid++, false);
	memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_NDIS_VER;
	m.u.ndis_ver.ndis_major_ver = 6;
	m.u.ndis_ver.ndis_minor_ver = 30;
	nv_send(&m, next_tid++, false);
	rbuf = hvguest_vmbus_ops.alloc_pages(NULL, RBUF_BYTES / 4096);
	sbuf = hvguest_vmbus_ops.alloc_pages(NULL, SBUF_BYTES / 4096);
	uint32_t rg, sg;
	if (!rbuf || !sbuf || vmbus_client_gpadl_create(&cl, relid, rbuf, RBUF_BYTES, &rg) ||
	    vmbus_client_gpadl_create(&cl, relid, sbuf, SBUF_BYTES, &sg))
		return 5;
	memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_RECV_BUF;
	m.u.send_buf.gpadl_handle = rg;
	m.u.send_buf.id = NVSP_RECV_BUFFER_ID;
	if (nv_request(&m, &r) || r.u.recv_buf_complete.status != NVSP_STAT_SUCCESS)
		return 6;
	memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_SEND_BUF;
	m.u.send_buf.gpadl_handle = sg;
	if (nv_request(&m, &r) || r.u.send_buf_complete.status != NVSP_STAT_SUCCESS)
		return 7;
	ssec_size = r.u.send_buf_complete.section_size;
	if (ssec_size < 1600 || (uint64_t)ssec_size * TX_SECTIONS > SBUF_BYTES)
		return 8;
	uint8_t init[24];
	struct rndis_header h = { RNDIS_MSG_INIT, 24 };
	struct rndis_init_request ir = { .req_id = (uint32_t)next_tid++, .major_ver = 1, .max_xfer_size = 0x4000 };
	memcpy(init, &h, 8);
	memcpy(init + 8, &ir, 16);
	if (rndis_ctl(init, 24) != RNDIS_STATUS_SUCCESS)
		return 9;
	if (rndis_oid(RNDIS_MSG_QUERY, RNDIS_OID_802_3_PERMANENT_ADDRESS, NULL, 0) != RNDIS_STATUS_SUCCESS)
		return 10;
	struct rndis_query_complete qc;
	memcpy(&qc, ctl + 8, sizeof(qc));
	if (qc.info_buflen != 6 || qc.info_buf_offset < 16 || 8ull + qc.info_buf_offset + 6 > ctl_len)
		return 11;
	memcpy(my_mac, ctl + 8 + qc.info_buf_offset, 6);
	return 0;
}

/* Frames flow from here on: on_frame must be the role's handler by then. */
static int netvsc_filter(void)
{
	uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
	return rndis_oid(RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) != RNDIS_STATUS_SUCCESS;
}

/* Sends one frame through a free send section (waits for one). */
static int tx(const uint8_t *f, uint32_t len)
{
	uint32_t s;
	bool dummy;
	for (;;) {
		for (s = 1; s < TX_SECTIONS && sec_busy[s]; s++)
			;
		if (s < TX_SECTIONS)
			break;
		if (!nv_drain(0, &dummy, NULL))
			wait_event();
	}
	uint32_t mlen = netvsc_rndis_packet_build(sbuf + (size_t)s * ssec_size, ssec_size, f, len, NULL, NULL, 0);
	if (!mlen)
		return -1;
	struct nvsp_message m;
	netvsc_rndis_msg_init(&m, NVSP_CHANNEL_TYPE_DATA, s, mlen);
	sec_busy[s] = true;
	return nv_send(&m, 0x1000 + s, true);
}

/* --- Ethernet / ARP / IPv4 / ICMP -------------------------------------------------------------- */
static uint32_t eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, my_mac, 6);
	put16(f + 12, type);
	return 14;
}

static void arp_send(uint16_t op, const uint8_t *tha, const uint8_t *tpa)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[60];
	memset(f, 0, sizeof(f));
	uint32_t o = eth(f, op == 1 ? bcast : tha, 0x0806);
	static const uint8_t hdr[8] = { 0, 1, 8, 0, 6, 4, 0, 0 };
	memcpy(f + o, hdr, 8);
	put16(f + o + 6, op);
	memcpy(f + o + 8, my_mac, 6);
	memcpy(f + o + 14, my_ip, 4);
	memcpy(f + o + 18, tha, 6);
	memcpy(f + o + 24, tpa, 4);
	tx(f, sizeof(f));
}

/* An IPv4 ICMP message to dst (ip/mac) with icmp (len bytes, checksum filled here). */
static void icmp_send(const uint8_t *dmac, const uint8_t *dip, uint8_t *icmp, uint32_t len)
{
	uint8_t f[14 + 20 + 8 + PAYLOAD];
	if (len > sizeof(f) - 34)
		return;
	uint32_t o = eth(f, dmac, 0x0800);
	uint8_t *ip = f + o;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + len));
	ip[8] = 64;
	ip[9] = 1;
	memcpy(ip + 12, my_ip, 4);
	memcpy(ip + 16, dip, 4);
	put16(ip + 10, csum(ip, 20));
	put16(icmp + 2, 0);
	put16(icmp + 2, csum(icmp, len));
	memcpy(ip + 20, icmp, len);
	tx(f, 34 + len);
}

/* Checks an IPv4 ICMP frame addressed to us; returns the ICMP message (and its length) or NULL. */
static const uint8_t *icmp_parse(const uint8_t *f, uint32_t len, uint32_t *ilen)
{
	if (len < 34 || be16(f + 12) != 0x0800 || memcmp(f, my_mac, 6))
		return NULL;
	const uint8_t *ip = f + 14;
	uint32_t tot = be16(ip + 2);
	if (ip[0] != 0x45 || ip[9] != 1 || tot < 28 || tot > len - 14 || csum(ip, 20) || memcmp(ip + 16, my_ip, 4))
		return NULL;
	if (csum(ip + 20, tot - 20))
		return NULL;
	*ilen = tot - 20;
	return ip + 20;
}

/* ARP for us: answer requests, learn the peer from replies. True when f was ARP. */
static bool arp_in(const uint8_t *f, uint32_t len)
{
	if (len < 42 || be16(f + 12) != 0x0806)
		return false;
	const uint8_t *a = f + 14;
	if (be16(a) != 1 || be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || memcmp(a + 24, my_ip, 4))
		return true;
	if (be16(a + 6) == 1) {
		arp_send(2, a + 8, a + 14);
	} else if (be16(a + 6) == 2 && !memcmp(a + 14, peer_ip, 4)) {
		memcpy(peer_mac, a + 8, 6);
		have_peer = true;
	}
	return true;
}

/* --- responder --------------------------------------------------------------------------------- */
static void responder_frame(const uint8_t *f, uint32_t len)
{
	if (arp_in(f, len))
		return;
	if (be16(f + 12) == ETH_P_BYE && !memcmp(f, my_mac, 6)) {
		bye = true;
		return;
	}
	uint32_t il;
	const uint8_t *icmp = icmp_parse(f, len, &il);
	if (!icmp || icmp[0] != 8 || il > 8 + PAYLOAD)
		return;
	uint8_t r[8 + PAYLOAD];
	memcpy(r, icmp, il);
	r[0] = 0;
	icmp_send(f + 6, f + 14 + 12, r, il);
	answered++;
}

static int responder(void)
{
	bool dummy;
	uint64_t idle_since = ticks;
	uint32_t last = 0;
	while (!bye) {
		if (nv_drain(0, &dummy, NULL)) {
			idle_since = ticks;
			continue;
		}
		if (answered != last)
			last = answered, idle_since = ticks;
		if (ticks - idle_since > 120000) {
			gputs("netping: responder gave up: nothing for 120 s\n");
			return 20;
		}
		wait_event();
	}
	gprintf("netping: responder answered %u echo requests; %u channel interrupts, %u timer ticks\n",
		(uint64_t)answered, hvguest_channel_irqs(), ticks);
	return sends_refused ? 21 : 0;
}

/* --- pinger ------------------------------------------------------------------------------------ */
static uint32_t want_seq, got_reply, bad_replies;
static uint64_t sent_tsc, rtt_min = ~0ull, rtt_max, rtt_sum;

static void pinger_frame(const uint8_t *f, uint32_t len)
{
	if (arp_in(f, len))
		return;
	uint32_t il;
	const uint8_t *icmp = icmp_parse(f, len, &il);
	if (!icmp || icmp[0] != 0)
		return;
	if (il != 8 + PAYLOAD || be16(icmp + 4) != PING_ID || be16(icmp + 6) != (uint16_t)want_seq ||
	    memcmp(f + 6, peer_mac, 6) || memcmp(f + 14 + 12, peer_ip, 4)) {
		bad_replies++;
		return;
	}
	for (uint32_t i = 0; i < PAYLOAD; i++)
		if (icmp[8 + i] != (uint8_t)(want_seq * 13 + i)) {
			bad_replies++;
			return;
		}
	uint64_t rtt = rdtsc() - sent_tsc;
	rtt_sum += rtt;
	rtt_min = rtt < rtt_min ? rtt : rtt_min;
	rtt_max = rtt > rtt_max ? rtt : rtt_max;
	got_reply++;
}

/* Hyper-V reference time, 100 ns units (an MSR read: an exit, so only at the ends). */
static uint64_t ref_time(void)
{
	uint64_t v = 0;
	rdmsr_safe(HV_MSR_TIME_REF_COUNT, &v);
	return v;
}

static int pinger(uint32_t count)
{
	bool dummy;
	/* ARP until the responder (possibly still booting) answers. */
	for (uint64_t next = 0, end = ticks + 60000; !have_peer;) {
		if (ticks >= next) {
			arp_send(1, (const uint8_t[6]){ 0 }, peer_ip);
			next = ticks + 100;
		}
		if (ticks > end) {
			gputs("netping: no ARP reply from 10.99.0.1 in 60 s\n");
			return 30;
		}
		if (!nv_drain(0, &dummy, NULL))
			wait_event();
	}
	char mac[18];
	for (int i = 0; i < 6; i++) {
		mac[3 * i] = "0123456789abcdef"[peer_mac[i] >> 4];
		mac[3 * i + 1] = "0123456789abcdef"[peer_mac[i] & 15];
		mac[3 * i + 2] = i < 5 ? ':' : 0;
	}
	gprintf("netping: 10.99.0.1 is at %s\n", mac);
	uint64_t t0 = ref_time(), c0 = rdtsc();
	uint32_t lost = 0;
	for (want_seq = 0; want_seq < count; want_seq++) {
		uint8_t icmp[8 + PAYLOAD];
		icmp[0] = 8;
		icmp[1] = 0;
		put16(icmp + 4, PING_ID);
		put16(icmp + 6, (uint16_t)want_seq);
		for (uint32_t i = 0; i < PAYLOAD; i++)
			icmp[8 + i] = (uint8_t)(want_seq * 13 + i);
		uint32_t before = got_reply;
		sent_tsc = rdtsc();
		icmp_send(peer_mac, peer_ip, icmp, sizeof(icmp));
		for (uint64_t end = ticks + 2000; got_reply == before;) {
			if (ticks > end) {
				lost++;
				break;
			}
			if (!nv_drain(0, &dummy, NULL))
				wait_event();
		}
	}
	uint64_t t1 = ref_time(), c1 = rdtsc();
	/* Goodbye, then drain until our sends are complete so nothing is cut short. */
	uint8_t f[60];
	memset(f, 0, sizeof(f));
	eth(f, peer_mac, ETH_P_BYE);
	if (!(my_mac[1] & 2))
		tx(f, sizeof(f));
	for (uint64_t end = ticks + 1000; ticks < end;) {
		uint32_t s = 1;
		while (s < TX_SECTIONS && !sec_busy[s])
			s++;
		if (s == TX_SECTIONS)
			break;
		if (!nv_drain(0, &dummy, NULL))
			wait_event();
	}
	/* Cycles to microseconds with the reference clock measured over the same run. */
	uint64_t us100 = t1 > t0 ? t1 - t0 : 1, cyc = c1 - c0 ? c1 - c0 : 1;
	uint64_t n = got_reply ? got_reply : 1;
	gprintf("netping: %u/%u replies, %u lost, %u bad; rtt min/avg/max %u/%u/%u us; %u ms total\n",
		(uint64_t)got_reply, (uint64_t)count, (uint64_t)lost, (uint64_t)bad_replies,
		rtt_min == ~0ull ? 0 : rtt_min * us100 / 10 / cyc, rtt_sum / n * us100 / 10 / cyc,
		rtt_max * us100 / 10 / cyc, us100 / 10000);
	gprintf("netping: %u channel interrupts, %u timer ticks\n", hvguest_channel_irqs(), ticks);
	return got_reply == count && !bad_replies && !sends_refused ? 0 : 31;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	hvguest_channel_irq_install(); /* the rings are drained in the main loop */
	guest_idt_set(TIMER_VECTOR, (void *)timer_isr, 0);
	mmio_write32(HVGUEST_LAPIC + 0x3E0, 0xB);           /* timer divide by 1 */
	mmio_write32(HVGUEST_LAPIC + 0x320, 0x20000 | TIMER_VECTOR); /* periodic */
	mmio_write32(HVGUEST_LAPIC + 0x380, 1000000);       /* 1 ms at KVM's 1 GHz APIC bus */
	hvguest_init();
	int r = netvsc_up();
	if (r) {
		gprintf("netping: adapter setup failed at step %u\n", (uint64_t)r);
		return r;
	}
	poll_mode = my_mac[1] & 1;
	uint32_t host = my_mac[5], count = (uint32_t)my_mac[2] << 8 | my_mac[3];
	my_ip[0] = 10, my_ip[1] = 99, my_ip[2] = 0, my_ip[3] = (uint8_t)host;
	peer_ip[0] = 10, peer_ip[1] = 99, peer_ip[2] = 0, peer_ip[3] = 1;
	gprintf("netping: 10.99.0.%u, %s, %s\n", (uint64_t)host, host == 1 ? "responder" : "pinger",
		poll_mode ? "polling" : "interrupts");
	on_frame = host == 1 ? responder_frame : pinger_frame;
	if (netvsc_filter()) {
		gputs("netping: setting the packet filter failed\n");
		return 12;
	}
	r = host == 1 ? responder() : pinger(count ? count : 100);
	if (r)
		return r;
	guest_poweroff();
}
