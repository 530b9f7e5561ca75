/* netvsp in threaded mode on a real tap whose far end is the host kernel inside a private network
 * namespace: ARP, ping, an LSO segment answered by the kernel's TCP, and multi-queue tap with vRSS.
 * Needs root (CAP_NET_ADMIN) and /dev/net/tun; skipped otherwise. Everything stays in the namespace. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support/netvsc_guest.h"
#include "devices/netvsp.h"
#include "net/backend.h"
#include "support/loopback.h"

static const uint8_t GMAC[6] = { 0x02, 0x15, 0x5d, 0x33, 0x44, 0x55 };
static const uint8_t GIP[4] = { 10, 211, 0, 2 }, HIP[4] = { 10, 211, 0, 1 };

struct t {
	char ns[32], tap[16];
	struct vmbus_loopback lb;
	pthread_mutex_t lock;
	struct netvsp *nv;
	struct netvsc_guest g;
	uint8_t hmac[6];
	bool got_arp, got_echo;
	uint32_t rst_ack, rst_count, chan_rx[2];
};

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static uint16_t csum(const uint8_t *p, uint32_t n, uint32_t s)
{
	for (uint32_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	return (uint16_t)~s;
}

static void on_frame(void *ctx, uint32_t chan, const uint8_t *f, uint32_t len, const uint32_t *cs, const uint32_t *vlan,
		     const uint32_t *hash)
{
	struct t *t = ctx;
	if (len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && !memcmp(f + 28, HIP, 4)) {
		memcpy(t->hmac, f + 22, 6);
		t->got_arp = true;
	}
	if (len >= 42 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 1 && f[34] == 0 && !memcmp(f + 42, "gen2vm-ping", 11))
		t->got_echo = true;
	if (len >= 54 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 6 && (f[47] & 0x04)) {
		t->rst_count++;
		t->rst_ack = (uint32_t)f[42] << 24 | (uint32_t)f[43] << 16 | (uint32_t)f[44] << 8 | f[45];
		if (chan < 2)
			t->chan_rx[chan]++;
	}
}

static bool wait_for(struct t *t, bool *flag, uint32_t *counter, uint32_t want)
{
	for (int i = 0; i < 2000; i++) {
		for (uint32_t c = 0; c < t->g.nchan; c++)
			netvsc_guest_poll(&t->g, c);
		if ((flag && *flag) || (counter && *counter >= want))
			return true;
		usleep(1000);
	}
	return false;
}

static int setup(void **state)
{
	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) || sh("ip netns list >/dev/null 2>&1")) {
		*state = NULL;
		return 0;
	}
	struct t *t = calloc(1, sizeof(*t));
	snprintf(t->ns, sizeof(t->ns), "g2vmt%d", (int)getpid());
	snprintf(t->tap, sizeof(t->tap), "g2vt%d", (int)(getpid() % 100000));
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	if (t) {
		sh("ip netns del %s 2>/dev/null", t->ns);
		free(t);
	}
	return 0;
}

/* Opens the tap (created by us), moves it into a fresh namespace with 10.211.0.1/24. */
static void bring_up(struct t *t, uint32_t queues)
{
	struct net_backend *be;
	char err[256];
	int rc = net_tap_open(t->tap, queues, &be, err, sizeof(err));
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(sh("ip netns add %s && ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
			    "net.ipv6.conf.default.disable_ipv6=1 && ip link set %s netns %s && "
			    "ip -n %s addr add 10.211.0.1/24 dev %s && ip -n %s link set %s up && "
			    "ip -n %s neigh replace 10.211.0.2 lladdr 02:15:5d:33:44:55 dev %s",
			    t->ns, t->ns, t->tap, t->ns, t->ns, t->tap, t->ns, t->tap, t->ns, t->tap),
			 0);
	assert_int_equal(vmbus_loopback_init(&t->lb, 128ull << 20, queues, NULL), 0);
	pthread_mutex_init(&t->lock, NULL);
	struct netvsp_config cfg = { .mem = &t->lb.mem, .backend = be, .threaded = true };
	memcpy(cfg.mac, GMAC, 6);
	pthread_mutex_lock(&t->lock);
	assert_int_equal(netvsp_create(t->lb.srv, &cfg, &t->nv), 0);
	pthread_mutex_unlock(&t->lock);
	assert_int_equal(netvsc_guest_open_locked(&t->g, &t->lb, 0, 4u << 20, 1u << 20, &t->lock, 2000), 0);
	t->g.on_frame = on_frame;
	t->g.ctx = t;
	assert_int_equal(netvsc_guest_rndis_init(&t->g), 0);
	uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
	assert_int_equal(netvsc_guest_set(&t->g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4), 0);
	struct ndis_offload_params p = { .header = { NDIS_OBJECT_TYPE_DEFAULT, 3, 28 },
					 .tcp_ip_v4_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED,
					 .lso_v2_ipv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED };
	assert_int_equal(netvsc_guest_set(&t->g, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, &p, sizeof(p)), 0);
}

static void bring_down(struct t *t)
{
	netvsc_guest_close(&t->g);
	pthread_mutex_lock(&t->lock);
	netvsp_destroy(t->nv);
	pthread_mutex_unlock(&t->lock);
	vmbus_loopback_destroy(&t->lb);
	pthread_mutex_destroy(&t->lock);
}

static uint32_t ipv4(uint8_t *f, uint8_t proto, uint32_t payload)
{
	memcpy(f, "\xff\xff\xff\xff\xff\xff", 6);
	memcpy(f + 6, GMAC, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	uint32_t tot = 20 + payload;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, GIP, 4);
	memcpy(ip + 16, HIP, 4);
	uint16_t c = csum(ip, 20, 0);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	return 14 + tot;
}

static void test_tap_arp_ping_lso(void **state)
{
	struct t *t = *state;
	if (!t)
		skip();
	bring_up(t, 1);
	/* ARP who-has 10.211.0.1 */
	uint8_t f[9000];
	memset(f, 0, 60);
	memcpy(f, "\xff\xff\xff\xff\xff\xff", 6);
	memcpy(f + 6, GMAC, 6);
	memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
	memcpy(f + 22, GMAC, 6);
	memcpy(f + 28, GIP, 4);
	memcpy(f + 38, HIP, 4);
	struct netvsc_guest_frame gf = { .data = f, .len = 60 };
	assert_int_equal(netvsc_guest_send(&t->g, 0, &gf, 1), NVSP_STAT_SUCCESS);
	assert_true(wait_for(t, &t->got_arp, NULL, 0));
	/* ICMP echo */
	uint32_t len = ipv4(f, 1, 8 + 11);
	memcpy(f, t->hmac, 6);
	uint8_t *ic = f + 34;
	memset(ic, 0, 8);
	ic[0] = 8;
	ic[5] = 1;
	ic[7] = 1;
	memcpy(ic + 8, "gen2vm-ping", 11);
	uint16_t c = csum(ic, 19, 0);
	ic[2] = (uint8_t)(c >> 8);
	ic[3] = (uint8_t)c;
	gf.len = len;
	assert_int_equal(netvsc_guest_send(&t->g, 0, &gf, 1), NVSP_STAT_SUCCESS);
	assert_true(wait_for(t, &t->got_echo, NULL, 0));
	/* LSO: one 8000-byte TCP segment to a closed port, with NDIS conventions (tot_len 0, pseudo-header
	 * sum without length). The kernel's RST acknowledges every byte: the frame went in whole. */
	uint32_t payload = 8000;
	len = ipv4(f, 6, 20 + payload);
	memcpy(f, t->hmac, 6);
	f[16] = f[17] = 0;
	f[24] = f[25] = 0;
	uint8_t *tcp = f + 34;
	memset(tcp, 0, 20);
	tcp[0] = 0x9c;
	tcp[1] = 0x40;
	tcp[2] = 0x00;
	tcp[3] = 0x09; /* port 9: closed */
	tcp[4] = 0x10; /* seq 0x10000000 */
	tcp[12] = 0x50;
	tcp[13] = 0x08; /* PSH without ACK: the RST then acknowledges seq + every byte received */
	tcp[14] = 0xff;
	uint32_t s = 0;
	for (int i = 0; i < 4; i += 2)
		s += (uint32_t)(GIP[i] << 8 | GIP[i + 1]) + (uint32_t)(HIP[i] << 8 | HIP[i + 1]);
	s += 6;
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	tcp[16] = (uint8_t)(s >> 8);
	tcp[17] = (uint8_t)s;
	memset(tcp + 20, 'x', payload);
	struct netvsc_guest_frame lf = { .data = f, .len = len, .has_lso = true,
					 .lso = 1460u | 34u << 20 | NDIS_LSO_V2 };
	assert_int_equal(netvsc_guest_send(&t->g, 0, &lf, 1), NVSP_STAT_SUCCESS);
	assert_true(wait_for(t, NULL, &t->rst_count, 1));
	assert_int_equal(t->rst_ack, 0x10000000u + payload);
	struct netvsp_stats st;
	netvsp_get_stats(t->nv, &st);
	assert_true(st.tx_packets >= 3);
	assert_true(st.rx_packets >= 3);
	assert_int_equal(st.bad_messages, 0);
	bring_down(t);
}

static void syn_burst(struct t *t, uint32_t nchan)
{
	/* SYNs from 64 source ports to a closed port: 64 RSTs. */
	uint8_t f[80];
	uint8_t hmac[6];
	/* the kernel's MAC: learn it by ARP first */
	memset(f, 0, 60);
	memcpy(f, "\xff\xff\xff\xff\xff\xff", 6);
	memcpy(f + 6, GMAC, 6);
	memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
	memcpy(f + 22, GMAC, 6);
	memcpy(f + 28, GIP, 4);
	memcpy(f + 38, HIP, 4);
	struct netvsc_guest_frame gf = { .data = f, .len = 60 };
	assert_int_equal(netvsc_guest_send(&t->g, 0, &gf, 1), NVSP_STAT_SUCCESS);
	assert_true(wait_for(t, &t->got_arp, NULL, 0));
	memcpy(hmac, t->hmac, 6);
	for (uint16_t i = 0; i < 64; i++) {
		uint32_t len = ipv4(f, 6, 20);
		memcpy(f, hmac, 6);
		uint8_t *tcp = f + 34;
		memset(tcp, 0, 20);
		uint16_t sport = (uint16_t)(20000 + i * 13);
		tcp[0] = (uint8_t)(sport >> 8);
		tcp[1] = (uint8_t)sport;
		tcp[3] = 9;
		tcp[12] = 0x50;
		tcp[13] = 0x02;
		tcp[14] = 0xff;
		uint8_t ph[12];
		memcpy(ph, GIP, 4);
		memcpy(ph + 4, HIP, 4);
		ph[8] = 0;
		ph[9] = 6;
		ph[10] = 0;
		ph[11] = 20;
		uint32_t s = 0;
		for (int k = 0; k < 12; k += 2)
			s += (uint32_t)(ph[k] << 8 | ph[k + 1]);
		uint16_t c = csum(tcp, 20, s);
		tcp[16] = (uint8_t)(c >> 8);
		tcp[17] = (uint8_t)c;
		gf.len = len;
		assert_int_equal(netvsc_guest_send(&t->g, i % nchan, &gf, 1), NVSP_STAT_SUCCESS);
	}
}

/* Multi-queue tap with two channels: vRSS spreads the kernel's replies over both. */
static void test_tap_multiqueue_vrss(void **state)
{
	struct t *t = *state;
	if (!t)
		skip();
	bring_up(t, 2);
	assert_int_equal(netvsc_guest_subchannels(&t->g, 1), 1);
	uint8_t rp[40 + 512 + 40];
	struct ndis_rss_params r = { .hdr = { NDIS_OBJECT_TYPE_RSS_PARAMETERS, 2, 40 },
				     .hashinfo = NDIS_HASH_FUNC_TOEPLITZ | NDIS_HASH_IPV4 | NDIS_HASH_TCP_IPV4,
				     .indirect_tabsize = 512, .indirect_taboffset = 40, .hashkey_size = 40,
				     .hashkey_offset = 552 };
	memcpy(rp, &r, 40);
	for (uint32_t i = 0; i < 128; i++) {
		uint32_t q = i % 2;
		memcpy(rp + 40 + 4 * i, &q, 4);
	}
	for (int i = 0; i < 40; i++)
		rp[552 + i] = (uint8_t)(i * 37 + 11);
	assert_int_equal(netvsc_guest_set(&t->g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, sizeof(rp)), 0);
	syn_burst(t, 2);
	assert_true(wait_for(t, NULL, &t->rst_count, 64));
	assert_int_equal(t->chan_rx[0] + t->chan_rx[1], 64);
	assert_true(t->chan_rx[0] >= 8 && t->chan_rx[1] >= 8);
	bring_down(t);
}

/* A two-queue tap while the guest opens only the primary channel: the kernel spreads replies over
 * both tap queues, and the primary serves both, so none is lost. */
static void test_tap_multiqueue_primary_only(void **state)
{
	struct t *t = *state;
	if (!t)
		skip();
	bring_up(t, 2);
	syn_burst(t, 1);
	assert_true(wait_for(t, NULL, &t->rst_count, 64));
	assert_int_equal(t->chan_rx[0], 64);
	bring_down(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tap_arp_ping_lso, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_multiqueue_vrss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tap_multiqueue_primary_only, setup, teardown),
	};
	return cmocka_run_group_tests_name("netvsp_tap", tests, NULL, NULL);
}
