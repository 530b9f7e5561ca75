/* netvsp throughput, host side, driven by the loopback netvsc guest (no KVM), beside a plain program
 * on the same tap:
 *   TX: the guest batches 8 RNDIS packets per send section; netvsp writes them to the tap with a
 *       vnet header. Peer: a loop writev()ing the same frames (vnet header + frame) to the same tap.
 *   RX: a sender thread in the tap's namespace pushes frames into the tap (AF_PACKET); netvsp reads
 *       them straight into receive sections and hands them to the guest. Peer: a loop readv()ing the
 *       tap (vnet header + frame).
 * 64 B and 1500 B frames; packets/s, Gbit/s and netvsp/peer ratio. Also the guest's HvSignalEvent
 * calls per packet (each is a userspace exit in a real VM) with the loopback guest's batching.
 * The tap lives in a private network namespace; needs root, skipped otherwise. Inline mode, one thread
 * (plus the RX sender): this measures netvsp's CPU cost per packet, not a VM's end-to-end rate. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "support/netvsc_guest.h"
#include "devices/netvsp.h"
#include "net/backend.h"
#include "util/clock.h"
#include "util/log.h"
#include "support/loopback.h"

static const uint8_t GMAC[6] = { 0x02, 0x15, 0x5d, 0x77, 0x00, 0x01 };
static char ns[32], tap[16];
static volatile int sender_run;
static uint32_t sender_len;
static double secs = 1.5;

static double now(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static void frame(uint8_t *f, uint32_t len, const uint8_t *dst)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x42", 6);
	f[12] = 0x88;
	f[13] = 0xB5;
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)i;
}

static void *sender(void *arg)
{
	char path[64];
	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	int nsfd = open(path, O_RDONLY);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET)) {
		perror("setns");
		return NULL;
	}
	close(nsfd);
	int s = socket(AF_PACKET, SOCK_RAW, 0);
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(tap), .sll_halen = 6 };
	memcpy(a.sll_addr, GMAC, 6);
	uint8_t f[1500];
	frame(f, sender_len, GMAC);
	struct iovec iov = { f, sender_len };
	struct mmsghdr mm[64];
	for (int i = 0; i < 64; i++)
		mm[i].msg_hdr = (struct msghdr){ .msg_name = &a, .msg_namelen = sizeof(a), .msg_iov = &iov, .msg_iovlen = 1 };
	int one = 1;
	setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	while (sender_run) {
		if (sendmmsg(s, mm, 64, 0) < 0 && errno != ENOBUFS)
			break;
	}
	close(s);
	return NULL;
}

struct rig {
	struct vmbus_loopback lb;
	struct netvsp *nv;
	struct net_backend *be;
	struct netvsc_guest g;
	int tapfd;
};

static int rig_up(struct rig *r)
{
	char err[256];
	if (net_tap_open(tap, 1, &r->be, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		return -1;
	}
	r->tapfd = r->be->ops->rx_fd(r->be, 0); /* the tap fd itself, for the plain peer */
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "ip netns add %s && ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
		 "net.ipv6.conf.default.disable_ipv6=1 && ip link set %s netns %s && ip -n %s link set %s up",
		 ns, ns, tap, ns, ns, tap);
	if (system(cmd))
		return -1;
	if (vmbus_loopback_init(&r->lb, 256ull << 20, 1, NULL))
		return -1;
	struct netvsp_config cfg = { .mem = &r->lb.mem, .backend = r->be };
	memcpy(cfg.mac, GMAC, 6);
	if (netvsp_create(r->lb.srv, &cfg, &r->nv) || netvsc_guest_open(&r->g, &r->lb, 0, 16u << 20, 1u << 20) ||
	    netvsc_guest_rndis_init(&r->g))
		return -1;
	uint32_t filter = NDIS_PACKET_TYPE_DIRECTED;
	return netvsc_guest_set(&r->g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) ? -1 : 0;
}

static void rig_down(struct rig *r)
{
	netvsc_guest_close(&r->g);
	netvsp_destroy(r->nv); /* closes the tap */
	vmbus_loopback_destroy(&r->lb);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	if (system(cmd)) {
		/* nothing more to do */
	}
}

/* Guest TX: 8 frames per RNDIS_PKT in rotating send sections. Returns pps. */
static double tx_netvsp(struct rig *r, uint32_t len, double *sig_per_pkt)
{
	uint8_t f[1500];
	frame(f, len, (const uint8_t *)"\x02\x00\x00\x00\x00\x99");
	uint32_t msg = (8 + 36 + len + 7) & ~7u, per = r->g.ssec_size / msg < 8 ? r->g.ssec_size / msg : 8;
	uint32_t nsec = r->g.sbuf_size / r->g.ssec_size;
	for (uint32_t s = 0; s < nsec; s++)
		for (uint32_t k = 0; k < per; k++) {
			uint8_t *m = r->g.sbuf + s * r->g.ssec_size + k * msg;
			struct rndis_header h = { RNDIS_MSG_PACKET, msg };
			struct rndis_packet p = { .data_offset = 36, .data_len = len };
			memcpy(m, &h, 8);
			memcpy(m + 8, &p, 36);
			memcpy(m + 44, f, len);
		}
	struct netvsp_stats a, b;
	netvsp_get_stats(r->nv, &a);
	uint64_t sig0 = r->lb.guest_signals, tid = 1;
	double t0 = now(), t;
	uint32_t s = 0;
	do {
		for (int i = 0; i < 64; i++) {
			struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
			m.u.rndis_pkt.send_buf_section_index = s;
			m.u.rndis_pkt.send_buf_section_size = msg * per;
			s = (s + 1) % nsec;
			while (vmbus_client_send(&r->g.ch[0], VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
						 tid++, NULL, 0, &m, sizeof(m)) == -VMBUS_EAGAIN)
				netvsc_guest_poll(&r->g, 0);
			if ((i & 7) == 7)
				netvsc_guest_poll(&r->g, 0);
		}
		t = now();
	} while (t - t0 < secs);
	netvsc_guest_poll(&r->g, 0);
	netvsp_get_stats(r->nv, &b);
	uint64_t pk = b.tx_packets - a.tx_packets;
	*sig_per_pkt = pk ? (double)(r->lb.guest_signals - sig0) / (double)pk : 0;
	return (double)pk / (t - t0);
}

static double tx_plain(struct rig *r, uint32_t len)
{
	uint8_t f[1500];
	frame(f, len, (const uint8_t *)"\x02\x00\x00\x00\x00\x99");
	struct virtio_net_hdr vh = { 0 };
	struct iovec v[2] = { { &vh, sizeof(vh) }, { f, len } };
	uint64_t n = 0;
	double t0 = now(), t;
	do {
		for (int i = 0; i < 512; i++)
			if (writev(r->tapfd, v, 2) > 0)
				n++;
		t = now();
	} while (t - t0 < secs);
	return (double)n / (t - t0);
}

static double rx_netvsp(struct rig *r, uint32_t len, double *sig_per_pkt)
{
	pthread_t th;
	sender_len = len;
	sender_run = 1;
	pthread_create(&th, NULL, sender, NULL);
	uint32_t f0 = r->g.rx_frames;
	uint64_t s0 = r->lb.guest_signals;
	double t0 = now(), t;
	do {
		for (int i = 0; i < 64; i++) {
			netvsp_poll(r->nv, 256);
			netvsc_guest_poll(&r->g, 0);
		}
		t = now();
	} while (t - t0 < secs);
	sender_run = 0;
	pthread_join(th, NULL);
	uint32_t got = r->g.rx_frames - f0;
	*sig_per_pkt = got ? (double)(r->lb.guest_signals - s0) / got : 0;
	while (netvsp_poll(r->nv, 256))
		netvsc_guest_poll(&r->g, 0);
	return got / (t - t0);
}

static double rx_plain(struct rig *r, uint32_t len)
{
	pthread_t th;
	sender_len = len;
	sender_run = 1;
	pthread_create(&th, NULL, sender, NULL);
	uint8_t buf[9100];
	struct virtio_net_hdr vh;
	struct iovec v[2] = { { &vh, sizeof(vh) }, { buf, sizeof(buf) } };
	uint64_t n = 0;
	double t0 = now(), t;
	do {
		for (int i = 0; i < 512; i++)
			if (readv(r->tapfd, v, 2) > 0)
				n++;
		t = now();
	} while (t - t0 < secs);
	sender_run = 0;
	pthread_join(th, NULL);
	while (readv(r->tapfd, v, 2) > 0) {
	}
	return n / (t - t0);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		secs = atof(argv[1]);
	log_set_level(LOG_ERROR);
	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK)) {
		printf("bench netvsp: skipped (needs root and /dev/net/tun for a tap in a private namespace)\n");
		return 0;
	}
	snprintf(ns, sizeof(ns), "g2vmb%d", (int)getpid());
	snprintf(tap, sizeof(tap), "g2vb%d", (int)(getpid() % 100000));
	struct rig r;
	memset(&r, 0, sizeof(r));
	if (rig_up(&r)) {
		rig_down(&r);
		return 1;
	}
	printf("netvsp bench (loopback guest, inline netvsp, one thread; %.1f s per figure)\n", secs);
	printf("%-4s %6s | %12s %8s | %12s %8s | %6s | %s\n", "dir", "frame", "netvsp pps", "Gbit/s", "plain pps",
	       "Gbit/s", "ratio", "guest signals/pkt");
	static const uint32_t sizes[] = { 64, 1500 };
	for (int i = 0; i < 2; i++) {
		uint32_t len = sizes[i];
		double sig, a = tx_netvsp(&r, len, &sig), b = tx_plain(&r, len);
		printf("%-4s %6u | %12.0f %8.2f | %12.0f %8.2f | %6.2f | %.3f\n", "tx", len, a, a * len * 8 / 1e9, b,
		       b * len * 8 / 1e9, a / b, sig);
	}
	for (int i = 0; i < 2; i++) {
		uint32_t len = sizes[i];
		double sig, a = rx_netvsp(&r, len, &sig), b = rx_plain(&r, len);
		printf("%-4s %6u | %12.0f %8.2f | %12.0f %8.2f | %6.2f | %.3f\n", "rx", len, a, a * len * 8 / 1e9, b,
		       b * len * 8 / 1e9, a / b, sig);
	}
	struct netvsp_stats st;
	netvsp_get_stats(r.nv, &st);
	printf("netvsp: rx_dropped %llu, tx_dropped %llu, bad %llu\n", (unsigned long long)st.rx_dropped,
	       (unsigned long long)st.tx_dropped, (unsigned long long)st.bad_messages);
	rig_down(&r);
	return 0;
}
