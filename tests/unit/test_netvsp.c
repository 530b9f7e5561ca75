/* netvsp through the loopback guest: NVSP init at each version, buffers, every RNDIS OID the clients
 * use, frames of 60-9014 bytes both ways, batching, offload PPIs to vnet headers, sub-channels and
 * vRSS, link state, hot add/remove, and the bad-input list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/netvsc_guest.h"
#include "devices/netvsp.h"
#include "devices/rndis.h"
#include "net/backend.h"
#include "net/nic.h"
#include <json-c/json.h>
#include "support/loopback.h"
#include "gen2vm/proto/savestate.h"

/* A capture backend: records what netvsp sends, and queues frames for it to receive. */
struct cap {
	struct net_backend be;
	uint32_t sent;
	struct virtio_net_hdr vh;
	uint8_t last[NET_FRAME_MAX];
	uint32_t last_len;
	uint8_t inq[64][9100];
	uint32_t inlen[64], inq_n, inq_head;
	struct virtio_net_hdr in_vh;
	bool no_carrier; /* the far end is unplugged */
};

static int cap_send(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		    int n)
{
	struct cap *c = (struct cap *)be;
	c->vh = *vh;
	c->last_len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(c->last + c->last_len, iov[i].iov_base, iov[i].iov_len);
		c->last_len += (uint32_t)iov[i].iov_len;
	}
	c->sent++;
	return 0;
}

static int cap_recv(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap)
{
	struct cap *c = (struct cap *)be;
	if (q != 0 || c->inq_head == c->inq_n)
		return -EAGAIN;
	uint32_t i = c->inq_head++ % 64, len = c->inlen[i];
	*vh = c->in_vh;
	if (len > cap)
		return -EMSGSIZE;
	memcpy(buf, c->inq[i], len);
	return (int)len;
}

static int cap_fd(struct net_backend *be, uint32_t q)
{
	return -1;
}

static bool cap_carrier(struct net_backend *be)
{
	return !((struct cap *)be)->no_carrier;
}

static void cap_destroy(struct net_backend *be)
{
	free(be);
}

static const struct net_backend_ops cap_ops = {
	.send = cap_send, .recv = cap_recv, .rx_fd = cap_fd, .destroy = cap_destroy, .carrier = cap_carrier,
};

static struct cap *cap_new(uint32_t queues)
{
	struct cap *c = calloc(1, sizeof(*c));
	c->be.ops = &cap_ops;
	c->be.nr_queues = queues;
	c->be.caps = NET_BE_CAP_CSUM | NET_BE_CAP_TSO;
	return c;
}

static void cap_push(struct cap *c, const uint8_t *f, uint32_t len)
{
	uint32_t i = c->inq_n++ % 64;
	memcpy(c->inq[i], f, len);
	c->inlen[i] = len;
}

static const uint8_t MAC[6] = { 0x02, 0x15, 0x5d, 0x00, 0x00, 0x01 };

struct env {
	struct vmbus_loopback lb;
	struct netvsp *nv;
	struct cap *cap;
	struct netvsc_guest g;
	uint8_t rx[9100];
	uint32_t rx_len, rx_count, rx_chan_count[4];
	uint32_t rx_csum, rx_vlan;
	bool rx_has_csum, rx_has_vlan;
};

static void on_frame(void *ctx, uint32_t chan, const uint8_t *f, uint32_t len, const uint32_t *csum,
		     const uint32_t *vlan, const uint32_t *hash)
{
	struct env *e = ctx;
	memcpy(e->rx, f, len < sizeof(e->rx) ? len : sizeof(e->rx));
	e->rx_len = len;
	e->rx_count++;
	if (chan < 4)
		e->rx_chan_count[chan]++;
	e->rx_has_csum = csum != NULL;
	e->rx_csum = csum ? *csum : 0;
	e->rx_has_vlan = vlan != NULL;
	e->rx_vlan = vlan ? *vlan : 0;
}

static void env_up(struct env *e, uint32_t version, uint32_t queues, uint32_t mtu)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(vmbus_loopback_init(&e->lb, 128ull << 20, queues, NULL), 0);
	e->cap = cap_new(queues);
	struct netvsp_config cfg = { .mem = &e->lb.mem, .backend = &e->cap->be, .mtu = mtu, .max_queues = queues };
	memcpy(cfg.mac, MAC, 6);
	assert_int_equal(netvsp_create(e->lb.srv, &cfg, &e->nv), 0);
	assert_int_equal(netvsc_guest_open(&e->g, &e->lb, version, 4u << 20, 1u << 20), 0);
	e->g.on_frame = on_frame;
	e->g.ctx = e;
}

static void env_ready(struct env *e)
{
	assert_int_equal(netvsc_guest_rndis_init(&e->g), RNDIS_STATUS_SUCCESS);
	uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST | NDIS_PACKET_TYPE_ALL_MULTICAST;
	assert_int_equal(netvsc_guest_set(&e->g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4), 0);
}

static void env_down(struct env *e)
{
	netvsc_guest_close(&e->g);
	struct netvsp_stats st;
	netvsp_get_stats(e->nv, &st);
	assert_int_equal(st.channels_open, 0);
	netvsp_destroy(e->nv);
	vmbus_loopback_destroy(&e->lb);
}

static void make_frame(uint8_t *f, uint32_t len, const uint8_t *dst, uint32_t seed)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x09", 6);
	f[12] = 0x88;
	f[13] = 0xB5; /* local experimental ethertype */
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7 + seed);
}

/* ---------------------------------------------------------------------------------------------- */
static void test_init_each_version(void **state)
{
	static const uint32_t v[] = { NVSP_PROTOCOL_VERSION_2, NVSP_PROTOCOL_VERSION_4, NVSP_PROTOCOL_VERSION_5,
				      NVSP_PROTOCOL_VERSION_6, NVSP_PROTOCOL_VERSION_61 };
	for (size_t i = 0; i < 5; i++) {
		struct env e;
		env_up(&e, v[i], 1, 0);
		assert_int_equal(e.g.version, v[i]);
		assert_int_equal(e.g.rsec_size, NETVSP_RECV_SECTION_SIZE);
		assert_int_equal(e.g.rsec_n, (4u << 20) / NETVSP_RECV_SECTION_SIZE);
		assert_int_equal(e.g.ssec_size, NETVSP_SEND_SECTION_SIZE);
		env_ready(&e);
		/* The offload object is sized for the version, as Linux expects it. */
		struct ndis_offload o;
		uint32_t n = sizeof(o);
		assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, NULL, 0, &o, &n), 0);
		assert_int_equal(o.header.type, NDIS_OBJECT_TYPE_OFFLOAD);
		assert_int_equal(n, o.header.size);
		assert_int_equal(n, v[i] >= NVSP_PROTOCOL_VERSION_5 ? 156 : v[i] >= NVSP_PROTOCOL_VERSION_4 ? 144 : 112);
		env_down(&e);
	}
	/* NVSP 1 and nonsense are refused with status FAIL; the guest's fallback then finds nothing. */
	struct vmbus_loopback lb;
	struct netvsp *nv;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	struct cap *c = cap_new(1);
	struct netvsp_config cfg = { .mem = &lb.mem, .backend = &c->be };
	assert_int_equal(netvsp_create(lb.srv, &cfg, &nv), 0);
	struct netvsc_guest g;
	assert_int_equal(netvsc_guest_open(&g, &lb, NVSP_PROTOCOL_VERSION_1, 0, 0), -EPROTO);
	struct nvsp_message m = { .type = NVSP_MSG_TYPE_INIT }, r;
	m.u.init.min_protocol_ver = m.u.init.max_protocol_ver = 0x70000;
	assert_int_equal(netvsc_guest_nvsp(&g, 0, &m, &r), 0);
	assert_int_equal(r.u.init_complete.status, NVSP_STAT_FAIL);
	vmbus_client_channel_close(&g.ch[0]);
	netvsp_destroy(nv);
	vmbus_loopback_destroy(&lb);
}

static void test_oids(void **state)
{
	struct env e;
	env_up(&e, 0, 2, 9000);
	env_ready(&e);
	struct netvsc_guest *g = &e.g;
	uint8_t buf[512];
	uint32_t n = sizeof(buf);
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_802_3_PERMANENT_ADDRESS, NULL, 0, buf, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(buf, MAC, 6);
	n = sizeof(buf);
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_802_3_CURRENT_ADDRESS, NULL, 0, buf, &n), 0);
	assert_memory_equal(buf, MAC, 6);
	uint32_t v;
	n = 4;
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 9000);
	n = 4;
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_LINK_SPEED, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 100000000); /* 10 Gbit/s in 100 bit/s units */
	n = 4;
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 0);
	n = 4;
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, NULL, 0, &v, &n), 0);
	assert_int_equal(v, NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST | NDIS_PACKET_TYPE_ALL_MULTICAST);
	n = sizeof(buf);
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_FRIENDLY_NAME, NULL, 0, buf, &n), 0);
	assert_true(n > 2);
	/* Offload capabilities: checksum and LSOv2 both families, as the tap backend can do. */
	struct ndis_offload o;
	n = sizeof(o);
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, NULL, 0, &o, &n), 0);
	assert_int_equal(o.csum.ip4_txcsum & (NDIS_TXCSUM_CAP_TCP4 | NDIS_TXCSUM_CAP_TCP4OPT),
			 NDIS_TXCSUM_CAP_TCP4 | NDIS_TXCSUM_CAP_TCP4OPT);
	assert_true(o.lsov2.ip4_encap & NDIS_OFFLOAD_ENCAP_8023);
	assert_int_equal(o.lsov2.ip6_opts & 5u, 5u);
	struct ndis_offload_params p = { .header = { NDIS_OBJECT_TYPE_DEFAULT, 3, 28 },
					 .ip_v4_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED,
					 .tcp_ip_v4_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED,
					 .tcp_ip_v6_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED,
					 .lso_v2_ipv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED,
					 .lso_v2_ipv6 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED };
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, &p, sizeof(p)), 0);
	/* RSS capabilities: as many queues as configured. */
	struct ndis_rss_caps rc;
	n = sizeof(rc);
	assert_int_equal(netvsc_guest_query(g, RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, &rc, &n), 0);
	assert_int_equal(rc.hdr.type, NDIS_OBJECT_TYPE_RSS_CAPABILITIES);
	assert_int_equal(rc.num_recv_que, 2);
	assert_int_equal(rc.num_indirect_tabent, 128);
	/* RSS parameters in Linux's layout: header, 128 u32 entries, 40-byte key. */
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
	memset(rp + 552, 0x6d, 40);
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, sizeof(rp)), 0);
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.rss_enabled, 1);
	/* Queue number beyond the channels: refused. */
	uint32_t bad = 7;
	memcpy(rp + 40, &bad, 4);
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, sizeof(rp)),
			 (int)RNDIS_STATUS_INVALID_DATA);
	/* Short buffers and unknown OIDs. */
	uint16_t two = 1;
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &two, 2),
			 (int)RNDIS_STATUS_INVALID_LENGTH);
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, &p, 10), (int)RNDIS_STATUS_INVALID_LENGTH);
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, 20),
			 (int)RNDIS_STATUS_INVALID_LENGTH);
	n = sizeof(buf);
	assert_int_equal(netvsc_guest_query(g, 0x12345678, NULL, 0, buf, &n), (int)RNDIS_STATUS_NOT_SUPPORTED);
	assert_int_equal(netvsc_guest_set(g, 0x12345678, &v, 4), (int)RNDIS_STATUS_NOT_SUPPORTED);
	/* Multicast list; MAC change via CURRENT_ADDRESS. */
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_802_3_MULTICAST_LIST, "\x01\x00\x5e\x00\x00\x01", 6), 0);
	assert_int_equal(netvsc_guest_set(g, RNDIS_OID_802_3_MULTICAST_LIST, "\x01\x00\x5e", 3),
			 (int)RNDIS_STATUS_INVALID_LENGTH);
	env_down(&e);
}

static void test_rss_caps_need_v5(void **state)
{
	struct env e;
	env_up(&e, NVSP_PROTOCOL_VERSION_4, 2, 0);
	env_ready(&e);
	struct ndis_rss_caps rc;
	uint32_t n = sizeof(rc);
	assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, &rc, &n),
			 (int)RNDIS_STATUS_NOT_SUPPORTED);
	assert_int_equal(netvsc_guest_subchannels(&e.g, 1), -EIO);
	env_down(&e);
}

static void test_frames_both_ways(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 9000);
	env_ready(&e);
	static const uint32_t sizes[] = { 60, 61, 64, 100, 512, 1514, 1515, 4000, 6000, 6100, 9014 };
	static uint8_t f[9100];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint32_t len = sizes[i];
		/* guest -> backend */
		make_frame(f, len, (const uint8_t *)"\x02\x00\x00\x00\x00\x09", (uint32_t)i);
		struct netvsc_guest_frame gf = { .data = f, .len = len };
		uint32_t before = e.cap->sent;
		assert_int_equal(netvsc_guest_send(&e.g, 0, &gf, 1), NVSP_STAT_SUCCESS);
		assert_int_equal(e.cap->sent, before + 1);
		assert_int_equal(e.cap->last_len, len);
		assert_memory_equal(e.cap->last, f, len);
		assert_int_equal(e.cap->vh.flags, 0);
		/* backend -> guest */
		make_frame(f, len, MAC, (uint32_t)i + 100);
		cap_push(e.cap, f, len);
		e.cap->in_vh = (struct virtio_net_hdr){ .flags = VIRTIO_NET_HDR_F_DATA_VALID };
		assert_int_equal(netvsp_poll(e.nv, 64), 1);
		netvsc_guest_poll(&e.g, 0);
		assert_int_equal(e.rx_len, len);
		assert_memory_equal(e.rx, f, len);
		assert_true(e.rx_has_csum);
		assert_int_equal(e.rx_csum & NDIS_CSUM_RX_TCP_SUCCEEDED, NDIS_CSUM_RX_TCP_SUCCEEDED);
	}
	/* Frames for other unicast addresses are filtered; broadcast passes. */
	uint32_t count = e.rx_count;
	make_frame(f, 100, (const uint8_t *)"\x02\x99\x99\x99\x99\x99", 1);
	cap_push(e.cap, f, 100);
	make_frame(f, 100, (const uint8_t *)"\xff\xff\xff\xff\xff\xff", 1);
	cap_push(e.cap, f, 100);
	netvsp_poll(e.nv, 64);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, count + 1);
	/* Oversized frames from the backend are dropped, not truncated. */
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.rx_packets, sizeof(sizes) / sizeof(sizes[0]) + 1);
	env_down(&e);
}

/* A guest that raises its MTU (NDIS_CONFIG, as Linux does on `ip link set mtu 9000`) gets jumbo
 * frames even though the adapter announced 1500; beyond that, frames are dropped, never truncated. */
/* Jumbo frames. Linux refuses a receive range longer than the section size the host announced, and
 * tells its MTU (NDIS_CONFIG) before it sends the receive buffer: an MTU change detaches and attaches
 * again. So the section holds a whole frame of the larger of the adapter's and the guest's MTU, and a
 * frame that does not fit is dropped by us, never sent over several sections. */
static void test_guest_mtu(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	assert_int_equal(e.g.rsec_size, NETVSP_RECV_SECTION_SIZE);
	static uint8_t f[9100];
	make_frame(f, 9014, MAC, 1);
	cap_push(e.cap, f, 9014);
	netvsp_poll(e.nv, 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, 0); /* too big for a 1500-byte MTU */
	/* An NDIS_CONFIG after the buffers are set changes nothing the guest was told. */
	struct nvsp_message m = { .type = NVSP_MSG2_TYPE_SEND_NDIS_CONFIG };
	m.u.ndis_config.mtu = 9000 + 14;
	assert_int_equal(vmbus_client_send(&e.g.ch[0], VM_PKT_DATA_INBAND, 0, 5, NULL, 0, &m, sizeof(m)), 0);
	cap_push(e.cap, f, 9014);
	netvsp_poll(e.nv, 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, 0);
	assert_int_equal(e.g.too_big, 0);
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.rx_dropped, 2);
	env_down(&e);

	/* An adapter with mtu=9000: one 9014-byte frame per section, whole. */
	env_up(&e, 0, 1, 9000);
	env_ready(&e);
	assert_true(e.g.rsec_size >= 9014 + RNDIS_RX_HEADER_MAX && e.g.rsec_size % 64 == 0);
	assert_true((uint64_t)e.g.rsec_size * e.g.rsec_n <= (4u << 20));
	cap_push(e.cap, f, 9014);
	assert_int_equal(netvsp_poll(e.nv, 8), 1);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, 1);
	assert_int_equal(e.rx_len, 9014);
	assert_memory_equal(e.rx, f, 9014);
	assert_int_equal(e.g.too_big, 0);
	env_down(&e);
}

static void test_batching(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	static uint8_t fr[8][1514];
	struct netvsc_guest_frame gf[8];
	for (uint32_t i = 0; i < 8; i++) {
		make_frame(fr[i], 60 + i * 100, (const uint8_t *)"\x02\x00\x00\x00\x00\x09", i);
		gf[i] = (struct netvsc_guest_frame){ .data = fr[i], .len = 60 + i * 100 };
	}
	/* Several RNDIS packets in one send section: each reaches the backend. */
	uint32_t before = e.cap->sent;
	assert_int_equal(netvsc_guest_send(&e.g, 0, gf, 4), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->sent, before + 4);
	assert_int_equal(e.cap->last_len, gf[3].len);
	assert_memory_equal(e.cap->last, fr[3], gf[3].len);
	/* Eight received frames travel in one XFER_PAGES packet with eight ranges. */
	for (uint32_t i = 0; i < 8; i++) {
		make_frame(fr[i], 60 + i * 100, MAC, i);
		cap_push(e.cap, fr[i], 60 + i * 100);
	}
	uint32_t xp = e.g.xfer_packets, xr = e.g.xfer_ranges;
	assert_int_equal(netvsp_poll(e.nv, 64), 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.xfer_packets, xp + 1);
	assert_int_equal(e.g.xfer_ranges, xr + 8);
	assert_int_equal(e.rx_len, 760);
	assert_memory_equal(e.rx, fr[7], 760);
	env_down(&e);
}

/* Checksum and LSO per-packet info become the virtio-net header; a VLAN PPI becomes a tag. */
static void test_offload_ppis(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	struct ndis_offload_params p = { .header = { NDIS_OBJECT_TYPE_DEFAULT, 3, 28 },
					 .tcp_ip_v4_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED,
					 .tcp_ip_v6_csum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED,
					 .lso_v2_ipv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED,
					 .lso_v2_ipv6 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED };
	assert_int_equal(netvsc_guest_set(&e.g, RNDIS_OID_TCP_OFFLOAD_PARAMETERS, &p, sizeof(p)), 0);
	static uint8_t f[20000];
	memset(f, 0, sizeof(f));
	uint32_t len = 14 + 20 + 20 + 8000;
	memcpy(f, "\x02\x00\x00\x00\x00\x09\x02\x15\x5d\x00\x00\x01\x08\x00", 14);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
	uint8_t *tcp = ip + 20;
	tcp[0] = 0x30;
	tcp[2] = 0x00;
	tcp[3] = 0x50;
	tcp[12] = 0x50;
	/* LSO v2, IPv4, mss 1460, TCP at 34: the guest leaves tot_len 0 (NDIS rule) */
	struct netvsc_guest_frame gf = { .data = f, .len = len, .has_lso = true,
					 .lso = 1460u | 34u << 20 | NDIS_LSO_V2 };
	assert_int_equal(netvsc_guest_send(&e.g, 0, &gf, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->vh.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(e.cap->vh.gso_size, 1460);
	assert_int_equal(e.cap->vh.hdr_len, 54);
	assert_int_equal(e.cap->vh.csum_start, 34);
	assert_int_equal(e.cap->vh.csum_offset, 16);
	assert_int_equal(e.cap->vh.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(e.cap->last_len, len);
	assert_int_equal(e.cap->last[14 + 2] << 8 | e.cap->last[14 + 3], len - 14); /* tot_len filled in */
	assert_memory_equal(e.cap->last + 54, f + 54, len - 54);
	/* Checksum only, UDP at 34. */
	struct netvsc_guest_frame cf = { .data = f, .len = 200, .has_csum = true,
					 .csum = NDIS_CSUM_TX_IPV4 | NDIS_CSUM_TX_UDP | 34u << 16 };
	assert_int_equal(netvsc_guest_send(&e.g, 0, &cf, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->vh.gso_type, VIRTIO_NET_HDR_GSO_NONE);
	assert_int_equal(e.cap->vh.csum_start, 34);
	assert_int_equal(e.cap->vh.csum_offset, 6);
	/* VLAN 5, priority 3: a tag appears after the MAC addresses. */
	struct netvsc_guest_frame vf = { .data = f, .len = 100, .has_vlan = true, .vlan = 3u | 5u << 4 };
	assert_int_equal(netvsc_guest_send(&e.g, 0, &vf, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->last_len, 104);
	assert_memory_equal(e.cap->last + 12, "\x81\x00\x60\x05", 4);
	assert_memory_equal(e.cap->last + 16, f + 12, 88);
	/* And a tagged received frame comes up untagged with the VLAN PPI. */
	uint8_t t[100];
	memcpy(t, MAC, 6);
	memcpy(t + 6, "\x02\x00\x00\x00\x00\x09\x81\x00\x60\x05\x08\x00", 12);
	memset(t + 18, 0xab, 82);
	cap_push(e.cap, t, 100);
	assert_int_equal(netvsp_poll(e.nv, 8), 1);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_len, 96);
	assert_true(e.rx_has_vlan);
	assert_int_equal(e.rx_vlan, 3u | 5u << 4);
	assert_memory_equal(e.rx + 12, "\x08\x00", 2);
	env_down(&e);
}

static void ipv4_tcp_frame(uint8_t *f, uint32_t src_ip, uint16_t sport)
{
	memset(f, 0, 80);
	memcpy(f, MAC, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x09\x08\x00", 8);
	f[14] = 0x45;
	f[23] = 6;
	memcpy(f + 26, &src_ip, 4);
	memcpy(f + 30, "\x0a\x00\x00\x02", 4);
	f[34] = (uint8_t)(sport >> 8);
	f[35] = (uint8_t)sport;
	f[37] = 80;
}

static void test_subchannels_vrss(void **state)
{
	struct env e;
	env_up(&e, 0, 2, 0);
	env_ready(&e);
	assert_int_equal(netvsc_guest_subchannels(&e.g, 7), 1); /* asked 7, the adapter has 2 queues */
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.channels_open, 2);
	/* Before RSS is set, everything lands on the primary. */
	uint8_t f[80];
	for (uint16_t i = 0; i < 32; i++) {
		ipv4_tcp_frame(f, 0x0100000a + (uint32_t)i * 0x1000000u, (uint16_t)(1000 + i));
		cap_push(e.cap, f, 80);
	}
	netvsp_poll(e.nv, 64);
	netvsc_guest_poll(&e.g, 0);
	netvsc_guest_poll(&e.g, 1);
	assert_int_equal(e.rx_chan_count[0], 32);
	/* Linux's sequence: disable, then table i % 2 and its key. */
	uint8_t rp[40 + 512 + 40];
	struct ndis_rss_params r = { .hdr = { NDIS_OBJECT_TYPE_RSS_PARAMETERS, 2, 40 },
				     .flag = NDIS_RSS_PARAM_FLAG_DISABLE_RSS,
				     .hashinfo = NDIS_HASH_FUNC_TOEPLITZ | NDIS_HASH_IPV4 | NDIS_HASH_TCP_IPV4 |
						 NDIS_HASH_IPV6 | NDIS_HASH_TCP_IPV6,
				     .indirect_tabsize = 512, .indirect_taboffset = 40, .hashkey_size = 40,
				     .hashkey_offset = 552 };
	memcpy(rp, &r, 40);
	for (uint32_t i = 0; i < 128; i++) {
		uint32_t q = i % 2;
		memcpy(rp + 40 + 4 * i, &q, 4);
	}
	static const uint8_t key[40] = { 0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
					 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
					 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
					 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa };
	memcpy(rp + 552, key, 40);
	assert_int_equal(netvsc_guest_set(&e.g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, sizeof(rp)), 0);
	r.flag = 0;
	memcpy(rp, &r, 40);
	assert_int_equal(netvsc_guest_set(&e.g, RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, rp, sizeof(rp)), 0);
	memset(e.rx_chan_count, 0, sizeof(e.rx_chan_count));
	for (uint16_t i = 0; i < 64; i++) {
		ipv4_tcp_frame(f, 0x0100000a + (uint32_t)i * 0x1000000u, (uint16_t)(1000 + 7 * i));
		cap_push(e.cap, f, 80);
	}
	netvsp_poll(e.nv, 128);
	netvsc_guest_poll(&e.g, 0);
	netvsc_guest_poll(&e.g, 1);
	assert_int_equal(e.rx_chan_count[0] + e.rx_chan_count[1], 64);
	assert_true(e.rx_chan_count[0] >= 16 && e.rx_chan_count[1] >= 16);
	/* A flow always lands on the same channel: the hash honours the table. */
	for (int k = 0; k < 2; k++) {
		memset(e.rx_chan_count, 0, sizeof(e.rx_chan_count));
		for (int j = 0; j < 5; j++) {
			ipv4_tcp_frame(f, 0x0500000a, 4242);
			cap_push(e.cap, f, 80);
		}
		netvsp_poll(e.nv, 64);
		netvsc_guest_poll(&e.g, 0);
		netvsc_guest_poll(&e.g, 1);
		assert_true(e.rx_chan_count[0] == 5 || e.rx_chan_count[1] == 5);
	}
	/* Transmit on the sub-channel goes to backend queue 1. */
	struct netvsc_guest_frame gf = { .data = f, .len = 80 };
	assert_int_equal(netvsc_guest_send(&e.g, 1, &gf, 1), NVSP_STAT_SUCCESS);
	env_down(&e);
}

/* Toeplitz against the Microsoft verification vector (RSS spec, IPv4 with TCP). */
static void test_toeplitz_vector(void **state)
{
	static const uint8_t key[40] = { 0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
					 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
					 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
					 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa };
	/* 66.9.149.187:2794 -> 161.142.100.80:1766 : 0x51ccc178 */
	static const uint8_t in[12] = { 66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6 };
	assert_int_equal(rndis_toeplitz(key, 40, in, 12), 0x51ccc178u);
	/* IPv4 only: 0x323e8fc2 */
	assert_int_equal(rndis_toeplitz(key, 40, in, 8), 0x323e8fc2u);
}

static void test_link_state(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	netvsp_set_link(e.nv, false);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 1);
	assert_int_equal(e.g.last_indication, RNDIS_STATUS_MEDIA_DISCONNECT);
	uint32_t v, n = 4;
	assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 1);
	/* While down, frames are dropped both ways. */
	uint8_t f[64];
	make_frame(f, 64, MAC, 1);
	cap_push(e.cap, f, 64);
	netvsp_poll(e.nv, 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, 0);
	struct netvsc_guest_frame gf = { .data = f, .len = 64 };
	uint32_t before = e.cap->sent;
	assert_int_equal(netvsc_guest_send(&e.g, 0, &gf, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->sent, before);
	netvsp_set_link(e.nv, true);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 2);
	assert_int_equal(e.g.last_indication, RNDIS_STATUS_MEDIA_CONNECT);
	netvsp_set_link(e.nv, true); /* no change, no indication */
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 2);
	/* Speed change: indication with the new speed in 100 bit/s units, and LINK_SPEED follows. */
	netvsp_set_link_speed(e.nv, 25000000000ull);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 3);
	assert_int_equal(e.g.last_indication, RNDIS_STATUS_LINK_SPEED_CHANGE);
	struct rndis_indicate_status is;
	memcpy(&is, e.g.ctl + 8, sizeof(is));
	assert_int_equal(is.status_buflen, 4);
	uint32_t sp;
	memcpy(&sp, e.g.ctl + 8 + is.status_buf_offset, 4);
	assert_int_equal(sp, 250000000);
	n = 4;
	assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_GEN_LINK_SPEED, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 250000000);
	env_down(&e);
}

/* The backend's carrier (a pair's peer) is the far end of the cable: the guest sees the link up only
 * while both it and netvsp_set_link say up, with an indication at each change. */
static void test_link_follows_carrier(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	uint32_t v, n = 4;
	e.cap->no_carrier = true;
	netvsp_poll(e.nv, 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 1);
	assert_int_equal(e.g.last_indication, RNDIS_STATUS_MEDIA_DISCONNECT);
	assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 1);
	netvsp_set_link(e.nv, false); /* both down: still down, nothing new to say */
	e.cap->no_carrier = false;
	netvsp_poll(e.nv, 8);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 1);
	netvsp_set_link(e.nv, true);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.g.indications, 2);
	assert_int_equal(e.g.last_indication, RNDIS_STATUS_MEDIA_CONNECT);
	n = 4;
	assert_int_equal(netvsc_guest_query(&e.g, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &v, &n), 0);
	assert_int_equal(v, 0);
	env_down(&e);
}

/* Two adapters on a pair backend: what one guest sends, the other receives. */
static void test_pair_two_adapters(void **state)
{
	struct vmbus_loopback lb[2];
	struct netvsp *nv[2];
	struct netvsc_guest g[2];
	struct env ctx[2];
	memset(ctx, 0, sizeof(ctx));
	for (int i = 0; i < 2; i++) {
		struct net_backend *be;
		assert_int_equal(net_pair_open("unit-pair", 1, &be), 0);
		assert_int_equal(vmbus_loopback_init(&lb[i], 64ull << 20, 1, NULL), 0);
		struct netvsp_config cfg = { .mem = &lb[i].mem, .backend = be };
		memcpy(cfg.mac, MAC, 6);
		cfg.mac[5] = (uint8_t)(10 + i);
		assert_int_equal(netvsp_create(lb[i].srv, &cfg, &nv[i]), 0);
		assert_int_equal(netvsc_guest_open(&g[i], &lb[i], 0, 2u << 20, 1u << 20), 0);
		g[i].on_frame = on_frame;
		g[i].ctx = &ctx[i];
		assert_int_equal(netvsc_guest_rndis_init(&g[i]), 0);
		uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
		assert_int_equal(netvsc_guest_set(&g[i], RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4), 0);
		/* The pair does no offloads: the guest must not be offered them. */
		struct ndis_offload o;
		uint32_t n = sizeof(o);
		assert_int_equal(netvsc_guest_query(&g[i], RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, NULL, 0, &o, &n), 0);
		assert_int_equal(o.csum.ip4_txcsum, 0);
		assert_int_equal(o.lsov2.ip4_encap, 0);
	}
	struct net_backend *third;
	assert_int_equal(net_pair_open("unit-pair", 1, &third), -EBUSY);
	static uint8_t f[1514];
	for (uint32_t k = 0; k < 300; k++) {
		uint32_t len = 60 + (k * 37) % 1455;
		uint8_t dst[6];
		memcpy(dst, MAC, 6);
		dst[5] = 11;
		make_frame(f, len, dst, k);
		struct netvsc_guest_frame gf = { .data = f, .len = len };
		assert_int_equal(netvsc_guest_send(&g[0], 0, &gf, 1), NVSP_STAT_SUCCESS);
		assert_int_equal(netvsp_poll(nv[1], 8), 1);
		netvsc_guest_poll(&g[1], 0);
		assert_int_equal(ctx[1].rx_len, len);
		assert_memory_equal(ctx[1].rx, f, len);
	}
	assert_int_equal(ctx[1].rx_count, 300);
	for (int i = 0; i < 2; i++) {
		netvsc_guest_close(&g[i]);
		netvsp_destroy(nv[i]);
		vmbus_loopback_destroy(&lb[i]);
	}
}

/* Hot add after the guest connected (offer at once), hot remove (rescind) while open. */
static void test_hot_add_remove(void **state)
{
	struct vmbus_loopback lb;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct cap *c = cap_new(1);
	struct netvsp_config cfg = { .mem = &lb.mem, .backend = &c->be };
	struct netvsp *nv;
	assert_int_equal(netvsp_create(lb.srv, &cfg, &nv), 0);
	while (vmbus_client_poll(&lb.cl) == 0) {
	}
	struct netvsc_guest g;
	assert_int_equal(netvsc_guest_open(&g, &lb, 0, 1u << 20, 1u << 20), 0);
	assert_int_equal(netvsc_guest_rndis_init(&g), 0);
	netvsp_destroy(nv); /* rescind: channel closed, buffers released */
	uint32_t relid = g.ch[0].relid;
	while (vmbus_client_poll(&lb.cl) == 0) {
	}
	struct vmbus_guid cls;
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &cls);
	assert_null(vmbus_client_find_offer(&lb.cl, &cls, 0));
	assert_int_equal(vmbus_client_gpadl_teardown(&lb.cl, relid, g.rgpadl), 0);
	assert_int_equal(vmbus_client_gpadl_teardown(&lb.cl, relid, g.sgpadl), 0);
	vmbus_loopback_destroy(&lb);
}

/* The bad-input list: every message gets a failure status or is dropped; nothing breaks. */
static void test_bad_input(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	struct netvsc_guest *g = &e.g;
	struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
	/* Section index outside the send buffer, and a size that overruns a section. */
	m.u.rndis_pkt.send_buf_section_index = 1000000;
	m.u.rndis_pkt.send_buf_section_size = 100;
	struct nvsp_message r;
	assert_int_equal(netvsc_guest_nvsp(g, 0, &m, &r), 0);
	assert_int_equal(r.u.rndis_pkt_complete.status, NVSP_STAT_FAIL);
	m.u.rndis_pkt.send_buf_section_index = 0;
	m.u.rndis_pkt.send_buf_section_size = NETVSP_SEND_SECTION_SIZE + 1;
	assert_int_equal(netvsc_guest_nvsp(g, 0, &m, &r), 0);
	assert_int_equal(r.u.rndis_pkt_complete.status, NVSP_STAT_FAIL);
	/* Neither section nor GPA ranges. */
	m.u.rndis_pkt.send_buf_section_index = NVSP_INVALID_SECTION;
	assert_int_equal(netvsc_guest_nvsp(g, 0, &m, &r), 0);
	assert_int_equal(r.u.rndis_pkt_complete.status, NVSP_STAT_FAIL);
	/* RNDIS msg_len beyond the bytes sent; data beyond msg_len; PPI beyond the message. */
	uint8_t b[256] = { 0 };
	uint32_t w[] = { RNDIS_MSG_PACKET, 200, 36, 60 };
	memcpy(b, w, sizeof(w));
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 0, b, 100, false), NVSP_STAT_INVALID_RNDIS_PKT);
	uint32_t w2[] = { RNDIS_MSG_PACKET, 100, 36, 80 };
	memcpy(b, w2, sizeof(w2));
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 0, b, 100, false), NVSP_STAT_INVALID_RNDIS_PKT);
	uint32_t w3[] = { RNDIS_MSG_PACKET, 100, 36, 20, 0, 0, 0, 36, 500 };
	memcpy(b, w3, sizeof(w3));
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 0, b, 100, false), NVSP_STAT_INVALID_RNDIS_PKT);
	uint32_t w4[] = { RNDIS_MSG_PACKET, 4, 0, 0 };
	memcpy(b, w4, sizeof(w4));
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 0, b, 100, false), NVSP_STAT_INVALID_RNDIS_PKT);
	/* Control message with an info buffer outside the message. */
	uint32_t q[] = { RNDIS_MSG_QUERY, 28, 99, RNDIS_OID_GEN_LINK_SPEED, 4000, 20, 0 };
	memcpy(b, q, sizeof(q));
	g->ctl_len = 0;
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 1, b, 28, false), NVSP_STAT_SUCCESS);
	uint32_t st;
	memcpy(&st, g->ctl + 12, 4);
	assert_int_equal(st, RNDIS_STATUS_INVALID_LENGTH);
	/* Unknown RNDIS type. */
	uint32_t u[] = { 0x77, 16, 1, 2 };
	memcpy(b, u, sizeof(u));
	assert_int_equal(netvsc_guest_rndis_raw(g, 0, 1, b, 16, false), NVSP_STAT_INVALID_RNDIS_PKT);
	/* GPA direct outside guest RAM. */
	struct {
		uint32_t reserved, rangecount, byte_count, byte_offset;
		uint64_t pfn;
	} __attribute__((packed)) x = { 0, 1, 100, 0, 0xFFFFFFFFull };
	m.u.rndis_pkt.send_buf_section_index = NVSP_INVALID_SECTION;
	g->send_completions = 0;
	assert_int_equal(vmbus_client_send(&g->ch[0], VM_PKT_DATA_USING_GPA_DIRECT,
					   VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 77, &x, sizeof(x), &m, sizeof(m)),
			 0);
	netvsc_guest_poll(g, 0);
	assert_int_equal(g->send_completions, 1);
	assert_int_equal(g->last_send_status, NVSP_STAT_FAIL);
	/* A range whose pfn list runs past the header. */
	x.byte_count = 9000;
	assert_int_equal(vmbus_client_send(&g->ch[0], VM_PKT_DATA_USING_GPA_DIRECT,
					   VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 78, &x, sizeof(x), &m, sizeof(m)),
			 0);
	netvsc_guest_poll(g, 0);
	assert_int_equal(g->last_send_status, NVSP_STAT_FAIL);
	/* Bogus completions, short NVSP, unknown types, a second receive buffer, buffers on a bad GPADL. */
	struct nvsp_message cm = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE };
	vmbus_client_send(&g->ch[0], VM_PKT_COMP, 0, 0x4E56000000000FFFull, NULL, 0, &cm, sizeof(cm));
	vmbus_client_send(&g->ch[0], VM_PKT_COMP, 0, 12345, NULL, 0, &cm, sizeof(cm));
	vmbus_client_send(&g->ch[0], VM_PKT_DATA_INBAND, 0, 1, NULL, 0, "\x01", 1);
	struct nvsp_message unk = { .type = 999 };
	vmbus_client_send(&g->ch[0], VM_PKT_DATA_INBAND, 0, 1, NULL, 0, &unk, sizeof(unk));
	struct nvsp_message rb = { .type = NVSP_MSG1_TYPE_SEND_RECV_BUF };
	rb.u.send_buf.gpadl_handle = g->rgpadl;
	assert_int_equal(netvsc_guest_nvsp(g, 0, &rb, &r), 0);
	assert_int_equal(r.u.recv_buf_complete.status, NVSP_STAT_FAIL);
	struct netvsp_stats s;
	netvsp_get_stats(e.nv, &s);
	assert_true(s.bad_messages >= 10);
	/* Still working afterwards. */
	uint8_t f[64];
	make_frame(f, 64, MAC, 3);
	cap_push(e.cap, f, 64);
	assert_int_equal(netvsp_poll(e.nv, 8), 1);
	netvsc_guest_poll(g, 0);
	assert_int_equal(e.rx_count, 1);
	env_down(&e);
}

/* A guest that never completes receive transactions exhausts the receive sections; frames then wait
 * in the backend, and flow resumes when it completes them. */
static void test_section_exhaustion(void **state)
{
	struct env e;
	env_up(&e, 0, 1, 0);
	env_ready(&e);
	e.g.hold_completions = true;
	static uint8_t f[1514];
	make_frame(f, 1514, MAC, 5);
	uint32_t delivered = 0;
	for (int round = 0; round < 80; round++) {
		while (e.cap->inq_n - e.cap->inq_head < 64)
			cap_push(e.cap, f, 1514);
		delivered += netvsp_poll(e.nv, 64);
		netvsc_guest_poll(&e.g, 0);
	}
	assert_int_equal(delivered, e.g.rsec_n); /* one section per frame, every section held */
	assert_int_equal(e.rx_count, e.g.rsec_n);
	assert_int_equal(netvsp_poll(e.nv, 64), 0);
	assert_int_equal(e.cap->inq_n - e.cap->inq_head, 64); /* waiting in the backend, not dropped */
	struct netvsp_rx_state rx; /* what nic-list shows of a guest that holds every section */
	netvsp_get_rx_state(e.nv, &rx);
	assert_int_equal(rx.sections, e.g.rsec_n);
	assert_int_equal(rx.sections_held, e.g.rsec_n);
	assert_true(rx.txns_held > 0);
	assert_int_equal(rx.parked + rx.owed, 0);
	netvsc_guest_release_held(&e.g, 0);
	e.g.hold_completions = false;
	assert_int_equal(netvsp_poll(e.nv, 64), 64);
	netvsc_guest_poll(&e.g, 0);
	assert_int_equal(e.rx_count, e.g.rsec_n + 64);
	netvsc_guest_poll(&e.g, 0); /* the last completions reach the adapter */
	netvsp_poll(e.nv, 64);
	netvsp_get_rx_state(e.nv, &rx);
	assert_int_equal(rx.sections_held, 0);
	assert_int_equal(rx.txns_held, 0);
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.rx_dropped, 0);
	env_down(&e);
}

/* Saving the VM: the adapter's state saved with the guest holding receive transactions, the server
 * reset and a new adapter (a new backend) made as a restored VM's are, the state restored: the
 * guest's completions of what it held are taken (no unknown transaction), every receive section is
 * free again once completed, the filter and RNDIS state hold (frames both ways), on the primary and
 * a sub-channel. Every truncation and many altered fields are refused without taking anything. */
static void test_save_restore(void **state)
{
	struct env e;
	env_up(&e, 0, 2, 0);
	env_ready(&e);
	assert_int_equal(netvsc_guest_subchannels(&e.g, 1), 1);
	e.g.hold_completions = true;
	static uint8_t f[1514];
	make_frame(f, 1514, MAC, 9);
	for (int i = 0; i < 3; i++)
		cap_push(e.cap, f, 1514);
	assert_int_equal(netvsp_poll(e.nv, 64), 3);
	netvsc_guest_poll(&e.g, 0);
	netvsc_guest_poll(&e.g, 1);
	assert_int_equal(e.rx_count, 3);
	uint32_t held = e.g.nheld;
	assert_true(held >= 1);

	assert_int_equal(netvsp_hold(e.nv, 100), 0); /* inline: no worker to hold */
	uint8_t *b = NULL;
	size_t l = 0;
	assert_int_equal(netvsp_save(e.nv, 0, &b, &l), 0);
	netvsp_release(e.nv);
	uint8_t *vb;
	size_t vl;
	assert_int_equal(vmbus_server_save(e.lb.srv, &vb, &vl), 0);

	/* A new process's adapter on the same guest. */
	vmbus_server_reset(e.lb.srv);
	netvsp_destroy(e.nv);
	e.cap = cap_new(2);
	struct netvsp_config cfg = { .mem = &e.lb.mem, .backend = &e.cap->be, .max_queues = 2 };
	memcpy(cfg.mac, MAC, 6);
	assert_int_equal(netvsp_create(e.lb.srv, &cfg, &e.nv), 0);
	char err[256];
	assert_int_equal(vmbus_server_restore(e.lb.srv, vb, vl, err, sizeof(err)), 0);
	free(vb);
	size_t used = 0;
	for (size_t cut = 0; cut < l; cut += 7)
		assert_int_equal(netvsp_restore(e.nv, 0, b, cut, &used, err, sizeof(err)), -EINVAL);
	assert_int_equal(netvsp_restore(e.nv, 1, b, l, &used, err, sizeof(err)), -EINVAL); /* another slot */
	uint8_t *bad = malloc(l);
	struct savestate_netvsp *h = (struct savestate_netvsp *)bad;
	struct savestate_netvsp_txn *t = (struct savestate_netvsp_txn *)(bad + sizeof(*h));
	for (int k = 0; k < 12; k++) {
		memcpy(bad, b, l);
		switch (k) {
		case 0: h->mac[5] ^= 1; break;
		case 1: h->rss_itab_len = 3; break;
		case 2: h->rss_enabled = 1, h->rss_itab_len = 2, h->rss_itab[1] = 2; break;
		case 3: h->nvsp_version = 7; break;
		case 4: h->recv_gpadl = 0x7777; break;
		case 5: h->recv_section_size = 100; break;
		case 6: h->nr_txns = 5000; break;
		case 7: t->slot = 4096; break;
		case 8: t->start[0] = 1u << 30; break;
		case 9: t->count[0] = 0; break;
		case 10: if (h->nr_txns > 1) t[1].start[0] = t[0].start[0]; else t->nr_frames = 9; break;
		case 11: h->initialized = 2; break;
		}
		assert_int_equal(netvsp_restore(e.nv, 0, bad, l, &used, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "bad state"));
	}
	free(bad);
	assert_int_equal(netvsp_restore(e.nv, 0, b, l, &used, err, sizeof(err)), 0);
	assert_int_equal(used, l);
	assert_int_equal(netvsp_restore(e.nv, 0, b, l, &used, err, sizeof(err)), -EINVAL); /* only into a new one */
	assert_non_null(strstr(err, "in use already"));
	free(b);
	vmbus_server_kick_open(e.lb.srv);

	/* The guest completes what it held: taken, nothing bogus. */
	e.g.hold_completions = false;
	netvsc_guest_release_held(&e.g, 0);
	netvsp_poll(e.nv, 0);
	struct netvsp_stats st;
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.bad_messages, 0);
	assert_int_equal(st.channels_open, 2);
	/* Frames both ways, on a restored filter. */
	struct netvsc_guest_frame gf = { .data = f, .len = 100 };
	make_frame(f, 100, (const uint8_t *)"\x02\x00\x00\x00\x00\x09", 1);
	assert_int_equal(netvsc_guest_send(&e.g, 1, &gf, 1), NVSP_STAT_SUCCESS);
	assert_int_equal(e.cap->sent, 1);
	/* Every receive section is free again: the guest may hold all of them at once. */
	e.g.hold_completions = true;
	make_frame(f, 1514, MAC, 10);
	uint32_t delivered = 0, before = e.rx_count;
	for (int round = 0; round < 80; round++) {
		while (e.cap->inq_n - e.cap->inq_head < 64)
			cap_push(e.cap, f, 1514);
		delivered += netvsp_poll(e.nv, 64);
		netvsc_guest_poll(&e.g, 0);
		netvsc_guest_poll(&e.g, 1);
	}
	assert_int_equal(delivered, e.g.rsec_n);
	assert_int_equal(e.rx_count, before + e.g.rsec_n);
	netvsc_guest_release_held(&e.g, 0);
	e.g.hold_completions = false;
	netvsp_poll(e.nv, 64);
	netvsc_guest_poll(&e.g, 0);
	netvsc_guest_poll(&e.g, 1);
	netvsp_get_stats(e.nv, &st);
	assert_int_equal(st.bad_messages, 0);
	env_down(&e);
}

static void test_nic_spec(void **state)
{
	struct nic_config n;
	char err[256];
	assert_int_equal(nic_config_parse("tap=tap0,mac=02:11:22:33:44:55,queues=4", &n, err, sizeof(err)), 0);
	assert_int_equal(n.kind, NIC_TAP);
	assert_string_equal(n.name, "tap0");
	assert_int_equal(n.queues, 4);
	assert_true(n.has_mac);
	assert_memory_equal(n.mac, "\x02\x11\x22\x33\x44\x55", 6);
	assert_int_equal(nic_config_parse("pair=7", &n, err, sizeof(err)), 0);
	assert_int_equal(n.kind, NIC_PAIR);
	assert_int_equal(nic_config_parse("tap=tap0,legacy", &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "generation 1"));
	assert_int_equal(nic_config_parse("tap=tap0,mac=01:00:00:00:00:00", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(nic_config_parse("tap=tap0,mac=zz", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(nic_config_parse("tap=tap0,queues=0", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(nic_config_parse("bogus=1", &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(nic_config_parse("tap=tap0,mtu=9000", &n, err, sizeof(err)), 0);
	assert_int_equal(n.mtu, 9000);
	/* JSON entries: a string, or an object with the same keys. */
	struct json_object *j = json_tokener_parse("{\"tap\": \"tap1\", \"queues\": 2, \"mac\": \"02:aa:bb:cc:dd:ee\"}");
	assert_int_equal(nic_config_from_json(j, &n, err, sizeof(err)), 0);
	assert_string_equal(n.name, "tap1");
	assert_int_equal(n.queues, 2);
	assert_memory_equal(n.mac, "\x02\xaa\xbb\xcc\xdd\xee", 6);
	json_object_put(j);
	j = json_tokener_parse("{\"pair\": \"x\", \"legacy\": true}");
	assert_int_equal(nic_config_from_json(j, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "generation 1"));
	json_object_put(j);
	j = json_tokener_parse("\"pair=9\"");
	assert_int_equal(nic_config_from_json(j, &n, err, sizeof(err)), 0);
	assert_int_equal(n.kind, NIC_PAIR);
	json_object_put(j);
	j = json_tokener_parse("[1]");
	assert_int_equal(nic_config_from_json(j, &n, err, sizeof(err)), -EINVAL);
	json_object_put(j);
	/* Generated MACs: stable per seed and index, locally administered, unicast. */
	uint8_t a[6], b[6], c[6];
	nic_mac_generate("vm-1234", 0, a);
	nic_mac_generate("vm-1234", 0, b);
	nic_mac_generate("vm-1234", 1, c);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	assert_int_equal(a[0] & 3, 2);
}

/* A threaded adapter of two queues (the test's lock stands for the server lock, which only the guest
 * side takes) and its guest, opened. */
static struct netvsp *threaded_up(struct vmbus_loopback *lb, pthread_mutex_t *lock, struct cap **cap,
				  struct netvsc_guest *g)
{
	assert_int_equal(vmbus_loopback_init(lb, 128ull << 20, 2, NULL), 0);
	*cap = cap_new(2);
	struct netvsp_config cfg = { .mem = &lb->mem, .backend = &(*cap)->be, .max_queues = 2, .threaded = true };
	memcpy(cfg.mac, MAC, 6);
	struct netvsp *nv;
	pthread_mutex_lock(lock);
	assert_int_equal(netvsp_create(lb->srv, &cfg, &nv), 0);
	pthread_mutex_unlock(lock);
	memset(g, 0, sizeof(*g));
	assert_int_equal(netvsc_guest_open_locked(g, lb, 0, 1u << 20, 1u << 20, lock, 2000), 0);
	return nv;
}

/* Threaded, as in the VMM: the workers map the buffers, take the sub-channel request and the revoke
 * on their own threads, and the adapter never sees a server lock (the test's lock stands for it and
 * only the guest side takes it). A GPADL_TEARDOWN sent while the worker still holds the receive
 * buffer waits for the worker's release; the server sends TORNDOWN after it, woken through
 * notifier.work_pending. Closing joins the workers at once: nothing they wait for is held. */
static void test_threaded_worker_contract(void **state)
{
	(void)state;
	struct vmbus_loopback lb;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct cap *cap;
	struct netvsc_guest g;
	struct netvsp *nv = threaded_up(&lb, &lock, &cap, &g);
	assert_int_equal(netvsc_guest_subchannels(&g, 1), 1);
	struct netvsp_stats st;
	netvsp_get_stats(nv, &st);
	assert_int_equal(st.channels_open, 2);

	uint64_t m[30];
	pthread_mutex_lock(&lock);
	struct vmbus_channel_gpadl_teardown tdm = { .header.msgtype = CHANNELMSG_GPADL_TEARDOWN,
						    .child_relid = g.ch[0].relid, .gpadl = g.rgpadl };
	assert_int_equal(vmbus_loopback_post(&lb, lb.cl.msg_conn_id, &tdm, sizeof(tdm)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(&lb, m), -1); /* the worker holds it */
	uint32_t kicks = __atomic_load_n(&lb.work_pending, __ATOMIC_RELAXED);
	struct nvsp_message rv = { .type = NVSP_MSG1_TYPE_REVOKE_RECV_BUF };
	rv.u.revoke.id = NVSP_RECV_BUFFER_ID;
	assert_int_equal(vmbus_client_send(&g.ch[0], VM_PKT_DATA_INBAND, 0, 77, NULL, 0, &rv, sizeof(rv)), 0);
	pthread_mutex_unlock(&lock);
	int n = -1;
	for (int i = 0; i < 2000 && n < 0; i++) {
		pthread_mutex_lock(&lock);
		n = vmbus_loopback_pop(&lb, m);
		pthread_mutex_unlock(&lock);
		if (n < 0)
			usleep(1000);
	}
	assert_true(n > 0);
	assert_int_equal((uint32_t)m[0], CHANNELMSG_GPADL_TORNDOWN);
	assert_int_equal(((struct vmbus_channel_gpadl_torndown *)m)->gpadl, g.rgpadl);
	assert_true(__atomic_load_n(&lb.work_pending, __ATOMIC_RELAXED) > kicks);
	g.rgpadl = 0; /* gone already */
	netvsc_guest_close(&g);
	pthread_mutex_lock(&lock);
	netvsp_destroy(nv);
	pthread_mutex_unlock(&lock);
	vmbus_loopback_destroy(&lb);
}

/* Threaded: netvsp_hold holds every worker between two rounds (a guest's packet waits in its ring),
 * netvsp_release lets them go on with it, and a channel closed while its worker is held is closed
 * at once (the worker stops). */
static void test_threaded_hold(void **state)
{
	(void)state;
	struct vmbus_loopback lb;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct cap *cap;
	struct netvsc_guest g;
	struct netvsp *nv = threaded_up(&lb, &lock, &cap, &g);
	assert_int_equal(netvsc_guest_rndis_init(&g), RNDIS_STATUS_SUCCESS);
	assert_int_equal(netvsc_guest_subchannels(&g, 1), 1);
	assert_int_equal(netvsp_hold(nv, 2000), 0);
	static uint8_t f[100];
	make_frame(f, 100, (const uint8_t *)"\x02\x00\x00\x00\x00\x09", 3);
	struct netvsc_guest_frame gf = { .data = f, .len = 100 };
	g.wait_ms = 300;
	assert_true(netvsc_guest_send(&g, 0, &gf, 1) != NVSP_STAT_SUCCESS); /* not handled while held */
	assert_int_equal(__atomic_load_n(&cap->sent, __ATOMIC_SEQ_CST), 0);
	netvsp_release(nv);
	for (int i = 0; i < 2000 && !__atomic_load_n(&cap->sent, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	assert_int_equal(__atomic_load_n(&cap->sent, __ATOMIC_SEQ_CST), 1);
	g.wait_ms = 2000;
	assert_int_equal(netvsp_hold(nv, 2000), 0);
	netvsc_guest_close(&g); /* joins the held workers */
	struct netvsp_stats st;
	netvsp_get_stats(nv, &st);
	assert_int_equal(st.channels_open, 0);
	netvsp_release(nv);
	pthread_mutex_lock(&lock);
	netvsp_destroy(nv);
	pthread_mutex_unlock(&lock);
	vmbus_loopback_destroy(&lb);
}

/* Threaded: a worker whose backend queue stalled because the guest holds every receive section sleeps
 * without a timeout, and the guest completing its receive transactions wakes it: every frame waiting
 * in the backend arrives, none dropped. */
static void test_threaded_stall_resumes(void **state)
{
	(void)state;
	struct vmbus_loopback lb;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct net_backend *be, *peer;
	assert_int_equal(net_pair_open("unit-stall", 1, &be), 0);
	assert_int_equal(net_pair_open("unit-stall", 1, &peer), 0);
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	struct netvsp_config cfg = { .mem = &lb.mem, .backend = be, .threaded = true };
	memcpy(cfg.mac, MAC, 6);
	struct netvsp *nv;
	pthread_mutex_lock(&lock);
	assert_int_equal(netvsp_create(lb.srv, &cfg, &nv), 0);
	pthread_mutex_unlock(&lock);
	struct netvsc_guest g;
	struct env ctx;
	memset(&g, 0, sizeof(g));
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(netvsc_guest_open_locked(&g, &lb, 0, 64u << 10, 64u << 10, &lock, 2000), 0);
	g.on_frame = on_frame;
	g.ctx = &ctx;
	assert_int_equal(netvsc_guest_rndis_init(&g), 0);
	uint32_t filter = NDIS_PACKET_TYPE_BROADCAST;
	assert_int_equal(netvsc_guest_set(&g, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &filter, 4), 0);
	uint32_t sections = g.rsec_n, total = sections + 60;
	assert_true(sections > 8 && total < 256); /* all of them fit in the pair's queue */
	g.hold_completions = true;
	uint8_t f[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 9, 0x08, 0x00 };
	struct virtio_net_hdr vh = { 0 };
	for (uint32_t i = 0; i < total; i++) {
		f[20] = (uint8_t)i;
		struct iovec iov = { f, sizeof(f) };
		assert_int_equal(peer->ops->send(peer, 0, &vh, &iov, 1), 0);
	}
	for (int i = 0; i < 2000 && ctx.rx_count < sections; i++) {
		netvsc_guest_poll(&g, 0);
		if (ctx.rx_count < sections)
			usleep(1000);
	}
	assert_int_equal(ctx.rx_count, sections);
	usleep(20000);
	netvsc_guest_poll(&g, 0);
	assert_int_equal(ctx.rx_count, sections); /* stalled: the guest holds every section */
	g.hold_completions = false;
	netvsc_guest_release_held(&g, 0);
	for (int i = 0; i < 2000 && ctx.rx_count < total; i++) {
		netvsc_guest_poll(&g, 0);
		if (ctx.rx_count < total)
			usleep(1000);
	}
	assert_int_equal(ctx.rx_count, total);
	struct netvsp_stats st;
	netvsp_get_stats(nv, &st);
	assert_int_equal(st.rx_dropped, 0);
	netvsc_guest_close(&g);
	pthread_mutex_lock(&lock);
	netvsp_destroy(nv);
	pthread_mutex_unlock(&lock);
	net_backend_destroy(peer);
	vmbus_loopback_destroy(&lb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_each_version), cmocka_unit_test(test_oids),
		cmocka_unit_test(test_rss_caps_need_v5),  cmocka_unit_test(test_frames_both_ways),
		cmocka_unit_test(test_guest_mtu),
		cmocka_unit_test(test_batching),          cmocka_unit_test(test_offload_ppis),
		cmocka_unit_test(test_subchannels_vrss), cmocka_unit_test(test_threaded_worker_contract), cmocka_unit_test(test_threaded_stall_resumes),  cmocka_unit_test(test_toeplitz_vector),
		cmocka_unit_test(test_link_state),        cmocka_unit_test(test_link_follows_carrier),
		cmocka_unit_test(test_pair_two_adapters),
		cmocka_unit_test(test_hot_add_remove),    cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_section_exhaustion), cmocka_unit_test(test_nic_spec),
		cmocka_unit_test(test_save_restore), cmocka_unit_test(test_threaded_hold),
	};
	return cmocka_run_group_tests_name("netvsp", tests, NULL, NULL);
}
