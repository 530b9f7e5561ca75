#include "devices/rndis.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"

/* Linux's default key; any key works, the guest sets its own with RECEIVE_SCALE_PARAMETERS. */
static const uint8_t default_rss_key[RNDIS_RSS_KEY_MAX] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
	0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
	0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

static const uint32_t supported_oids[] = {
	RNDIS_OID_GEN_SUPPORTED_LIST,        RNDIS_OID_GEN_HARDWARE_STATUS,
	RNDIS_OID_GEN_MEDIA_SUPPORTED,       RNDIS_OID_GEN_MEDIA_IN_USE,
	RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE,    RNDIS_OID_GEN_LINK_SPEED,
	RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE,    RNDIS_OID_GEN_VENDOR_ID,
	RNDIS_OID_GEN_CURRENT_PACKET_FILTER, RNDIS_OID_GEN_MAC_OPTIONS,
	RNDIS_OID_GEN_MEDIA_CONNECT_STATUS,  RNDIS_OID_GEN_MAXIMUM_SEND_PACKETS,
	RNDIS_OID_GEN_FRIENDLY_NAME,         RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES,
	RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS, RNDIS_OID_802_3_PERMANENT_ADDRESS,
	RNDIS_OID_802_3_CURRENT_ADDRESS,     RNDIS_OID_802_3_MULTICAST_LIST,
	RNDIS_OID_802_3_MAXIMUM_LIST_SIZE,   RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
	RNDIS_OID_TCP_OFFLOAD_PARAMETERS,    RNDIS_OID_TCP_OFFLOAD_CURRENT_CONFIG,
};

void rndis_state_init(struct rndis_state *st, const uint8_t *mac)
{
	memset(st, 0, sizeof(*st));
	if (mac) {
		memcpy(st->perm_mac, mac, 6);
		memcpy(st->cur_mac, mac, 6);
	}
	st->mtu = 1500;
	st->link_speed_bps = 10000000000ull;
	st->link_up = true;
	st->max_queues = 1;
	st->nvsp_version = NVSP_PROTOCOL_VERSION_61;
	st->offload_tx_csum = true;
	st->offload_lso = true;
	memcpy(st->rss_key, default_rss_key, sizeof(default_rss_key));
	st->rss_key_len = RNDIS_RSS_KEY_MAX;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Builds the offload capabilities the backend supports, sized for the negotiated NVSP version. */
static uint32_t build_hwcaps(const struct rndis_state *st, struct ndis_offload *o)
{
	memset(o, 0, sizeof(*o));
	uint32_t size = st->nvsp_version >= NVSP_PROTOCOL_VERSION_5   ? NDIS_OFFLOAD_SIZE_6_30
			: st->nvsp_version >= NVSP_PROTOCOL_VERSION_4 ? NDIS_OFFLOAD_SIZE_6_1
								       : NDIS_OFFLOAD_SIZE_6_0;
	o->header.type = NDIS_OBJECT_TYPE_OFFLOAD;
	o->header.revision = size == NDIS_OFFLOAD_SIZE_6_30 ? 3 : size == NDIS_OFFLOAD_SIZE_6_1 ? 2 : 1;
	o->header.size = (uint16_t)size;
	if (st->offload_tx_csum) {
		o->csum.ip4_txenc = o->csum.ip6_txenc = NDIS_OFFLOAD_ENCAP_8023;
		o->csum.ip4_txcsum = NDIS_TXCSUM_CAP_TCP4 | NDIS_TXCSUM_CAP_TCP4OPT | NDIS_TXCSUM_CAP_UDP4;
		o->csum.ip6_txcsum = NDIS_TXCSUM_CAP_TCP6 | NDIS_TXCSUM_CAP_TCP6OPT | NDIS_TXCSUM_CAP_IP6EXT |
				     NDIS_TXCSUM_CAP_UDP6;
	}
	if (st->offload_tx_csum && st->offload_lso) {
		o->lsov2.ip4_encap = o->lsov2.ip6_encap = NDIS_OFFLOAD_ENCAP_8023;
		o->lsov2.ip4_maxsz = o->lsov2.ip6_maxsz = 62780; /* a 64 KiB skb less headers, as Hyper-V */
		o->lsov2.ip4_minsg = o->lsov2.ip6_minsg = 2;
		o->lsov2.ip6_opts = NDIS_LSOV2_CAP_IP6EXT | NDIS_LSOV2_CAP_TCP6OPT;
	}
	return size;
}

/* A QUERY's answer: data (n bytes) or a failure status. */
struct qres {
	uint32_t status;
	uint32_t n;
	uint8_t data[RNDIS_CONTROL_REPLY_MAX - 8 - sizeof(struct rndis_query_complete)];
};

static void q32(struct qres *r, uint32_t v)
{
	wr32(r->data, v);
	r->n = 4;
}

static void do_query(const struct rndis_state *st, uint32_t oid, struct qres *r)
{
	r->status = RNDIS_STATUS_SUCCESS;
	r->n = 0;
	switch (oid) {
	case RNDIS_OID_GEN_SUPPORTED_LIST:
		memcpy(r->data, supported_oids, sizeof(supported_oids));
		r->n = sizeof(supported_oids);
		break;
	case RNDIS_OID_GEN_HARDWARE_STATUS:
		q32(r, 0); /* ready */
		break;
	case RNDIS_OID_GEN_MEDIA_SUPPORTED:
	case RNDIS_OID_GEN_MEDIA_IN_USE:
		q32(r, RNDIS_MEDIUM_802_3);
		break;
	case RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE:
		q32(r, st->mtu);
		break;
	case RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE:
		q32(r, st->mtu + 14);
		break;
	case RNDIS_OID_GEN_LINK_SPEED: /* units of 100 bit/s */
		q32(r, (uint32_t)(st->link_speed_bps / 100 > UINT32_MAX ? UINT32_MAX : st->link_speed_bps / 100));
		break;
	case RNDIS_OID_GEN_VENDOR_ID:
		q32(r, 0x00155D); /* Microsoft's OUI, as Hyper-V reports */
		break;
	case RNDIS_OID_GEN_CURRENT_PACKET_FILTER:
		q32(r, st->filter);
		break;
	case RNDIS_OID_GEN_MAC_OPTIONS:
		q32(r, 0);
		break;
	case RNDIS_OID_GEN_MEDIA_CONNECT_STATUS:
		q32(r, st->link_up ? 0 : 1); /* 0 connected, 1 disconnected */
		break;
	case RNDIS_OID_GEN_MAXIMUM_SEND_PACKETS:
		q32(r, RNDIS_MAX_PKT_PER_MSG);
		break;
	case RNDIS_OID_GEN_FRIENDLY_NAME: {
		static const char name[] = "Network Adapter"; /* the default: Linux ignores it */
		for (size_t i = 0; i < sizeof(name); i++) {
			r->data[2 * i] = (uint8_t)name[i];
			r->data[2 * i + 1] = 0;
		}
		r->n = 2 * sizeof(name);
		break;
	}
	case RNDIS_OID_802_3_PERMANENT_ADDRESS:
		memcpy(r->data, st->perm_mac, 6);
		r->n = 6;
		break;
	case RNDIS_OID_802_3_CURRENT_ADDRESS:
		memcpy(r->data, st->cur_mac, 6);
		r->n = 6;
		break;
	case RNDIS_OID_802_3_MAXIMUM_LIST_SIZE:
		q32(r, 64);
		break;
	case RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES:
	case RNDIS_OID_TCP_OFFLOAD_CURRENT_CONFIG: {
		struct ndis_offload o;
		r->n = build_hwcaps(st, &o);
		memcpy(r->data, &o, r->n);
		break;
	}
	case RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES: {
		if (st->max_queues < 2 || st->nvsp_version < NVSP_PROTOCOL_VERSION_5) {
			r->status = RNDIS_STATUS_NOT_SUPPORTED;
			break;
		}
		struct ndis_rss_caps c = {
			.hdr = { NDIS_OBJECT_TYPE_RSS_CAPABILITIES, 2, sizeof(c) },
			.cap_flag = NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4 | NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6 |
				    NDIS_RSS_CAPS_CLASSIFICATION_AT_ISR,
			.num_int_msg = st->max_queues,
			.num_recv_que = st->max_queues,
			.num_indirect_tabent = RNDIS_RSS_ITAB_MAX,
		};
		memcpy(r->data, &c, sizeof(c));
		r->n = sizeof(c);
		break;
	}
	default:
		r->status = RNDIS_STATUS_NOT_SUPPORTED;
		break;
	}
}

static uint32_t set_rss(struct rndis_state *st, const uint8_t *b, uint32_t n)
{
	struct ndis_rss_params p;
	if (n < sizeof(p))
		return RNDIS_STATUS_INVALID_LENGTH;
	memcpy(&p, b, sizeof(p));
	if (p.hdr.type != NDIS_OBJECT_TYPE_RSS_PARAMETERS)
		return RNDIS_STATUS_INVALID_DATA;
	if (st->max_queues < 2)
		return RNDIS_STATUS_NOT_SUPPORTED;
	if (p.flag & NDIS_RSS_PARAM_FLAG_DISABLE_RSS) {
		st->rss_enabled = false;
		return RNDIS_STATUS_SUCCESS;
	}
	uint16_t itab[RNDIS_RSS_ITAB_MAX];
	uint32_t itab_len = st->rss_itab_len;
	if (!(p.flag & NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED)) {
		/* The table is u32 queue numbers; a power of two entries, at most 128. */
		uint32_t ents = p.indirect_tabsize / 4u;
		if (!ents || ents > RNDIS_RSS_ITAB_MAX || (ents & (ents - 1)) || p.indirect_tabsize % 4u ||
		    p.indirect_taboffset > n || n - p.indirect_taboffset < p.indirect_tabsize)
			return RNDIS_STATUS_INVALID_DATA;
		for (uint32_t i = 0; i < ents; i++) {
			uint32_t q = rd32(b + p.indirect_taboffset + 4 * i);
			if (q >= st->max_queues)
				return RNDIS_STATUS_INVALID_DATA;
			itab[i] = (uint16_t)q;
		}
		itab_len = ents;
	}
	uint8_t key[RNDIS_RSS_KEY_MAX];
	uint32_t key_len = st->rss_key_len;
	if (!(p.flag & NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED)) {
		/* Toeplitz over a 36-byte IPv6 4-tuple needs a 40-byte key. */
		if (p.hashkey_size != RNDIS_RSS_KEY_MAX || p.hashkey_offset > n || n - p.hashkey_offset < p.hashkey_size)
			return RNDIS_STATUS_INVALID_DATA;
		memcpy(key, b + p.hashkey_offset, RNDIS_RSS_KEY_MAX);
		key_len = RNDIS_RSS_KEY_MAX;
	} else {
		memcpy(key, st->rss_key, sizeof(key));
	}
	if (!itab_len)
		return RNDIS_STATUS_INVALID_DATA;
	if (!(p.flag & NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED))
		memcpy(st->rss_itab, itab, itab_len * sizeof(itab[0]));
	st->rss_itab_len = itab_len;
	memcpy(st->rss_key, key, sizeof(key));
	st->rss_key_len = key_len;
	st->rss_hashinfo = p.hashinfo;
	st->rss_enabled = true;
	return RNDIS_STATUS_SUCCESS;
}

static uint32_t do_set(struct rndis_state *st, uint32_t oid, const uint8_t *b, uint32_t n)
{
	switch (oid) {
	case RNDIS_OID_GEN_CURRENT_PACKET_FILTER:
		if (n < 4)
			return RNDIS_STATUS_INVALID_LENGTH;
		st->filter = rd32(b);
		return RNDIS_STATUS_SUCCESS;
	case RNDIS_OID_802_3_MULTICAST_LIST:
		if (n % 6)
			return RNDIS_STATUS_INVALID_LENGTH;
		st->mcast_count = n / 6; /* we pass all multicast: the list only needs accepting */
		return RNDIS_STATUS_SUCCESS;
	case RNDIS_OID_802_3_CURRENT_ADDRESS:
		if (n < 6)
			return RNDIS_STATUS_INVALID_LENGTH;
		memcpy(st->cur_mac, b, 6);
		return RNDIS_STATUS_SUCCESS;
	case RNDIS_OID_TCP_OFFLOAD_PARAMETERS: {
		if (n < NDIS_OFFLOAD_PARAMS_MIN_SIZE)
			return RNDIS_STATUS_INVALID_LENGTH;
		struct ndis_offload_params p = { 0 };
		memcpy(&p, b, n < sizeof(p) ? n : sizeof(p));
		if (p.header.type != NDIS_OBJECT_TYPE_DEFAULT)
			return RNDIS_STATUS_INVALID_DATA;
		/* NO_CHANGE (0) keeps the previous choice. */
#define OFFLOAD_TX(field, flag)                                                                           \
	do {                                                                                              \
		if (p.field)                                                                               \
			flag = p.field == NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED ||                         \
			       p.field == NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED;                  \
	} while (0)
		OFFLOAD_TX(tcp_ip_v4_csum, st->tx_csum_v4);
		OFFLOAD_TX(tcp_ip_v6_csum, st->tx_csum_v6);
#undef OFFLOAD_TX
		if (p.lso_v2_ipv4)
			st->lso_v4 = p.lso_v2_ipv4 == NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED;
		if (p.lso_v2_ipv6)
			st->lso_v6 = p.lso_v2_ipv6 == NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED;
		if ((st->lso_v4 || st->lso_v6) && !st->offload_lso)
			return RNDIS_STATUS_NOT_SUPPORTED;
		st->offload = p;
		return RNDIS_STATUS_SUCCESS;
	}
	case RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS:
		return set_rss(st, b, n);
	case RNDIS_OID_GEN_RNDIS_CONFIG_PARAMETER:
		/* Registry-style parameters (e.g. NetworkAddress): accepted and ignored, as a host
		 * that does not let the guest change its MAC. */
		return RNDIS_STATUS_NOT_SUPPORTED;
	default:
		return RNDIS_STATUS_NOT_SUPPORTED;
	}
}

int rndis_control(struct rndis_state *st, const void *msgv, uint32_t len, void *respv, uint32_t cap)
{
	const uint8_t *msg = msgv;
	uint8_t *resp = respv;
	struct rndis_header h;
	if (len < sizeof(h) || cap < RNDIS_CONTROL_REPLY_MAX) {
		log_guest("rndis: control message of %u bytes", len);
		return 0;
	}
	memcpy(&h, msg, sizeof(h));
	if (h.type == RNDIS_MSG_PACKET)
		return -EINVAL;
	if (h.msg_len < sizeof(h) || h.msg_len > len) {
		log_guest("rndis: msg_len %u outside the %u bytes sent", h.msg_len, len);
		return 0;
	}
	const uint8_t *body = msg + 8;
	uint32_t blen = h.msg_len - 8;
	uint32_t req_id = blen >= 4 ? rd32(body) : 0;
	switch (h.type) {
	case RNDIS_MSG_INIT: {
		struct rndis_init_complete c = { .req_id = req_id, .status = RNDIS_STATUS_SUCCESS,
						 .major_ver = RNDIS_MAJOR_VERSION, .minor_ver = RNDIS_MINOR_VERSION,
						 .dev_flags = RNDIS_DF_CONNECTIONLESS, .medium = RNDIS_MEDIUM_802_3,
						 .max_pkt_per_msg = RNDIS_MAX_PKT_PER_MSG,
						 .max_xfer_size = 0x4000 + st->mtu, .pkt_alignment_factor = 3 };
		if (blen < sizeof(struct rndis_init_request)) {
			log_guest("rndis: INITIALIZE of %u bytes", blen);
			c.status = RNDIS_STATUS_INVALID_LENGTH;
		} else {
			st->initialized = true;
		}
		wr32(resp, RNDIS_MSG_INIT | RNDIS_MSG_COMPLETION);
		wr32(resp + 4, 8 + sizeof(c));
		memcpy(resp + 8, &c, sizeof(c));
		return 8 + sizeof(c);
	}
	case RNDIS_MSG_HALT:
		st->initialized = false;
		return 0;
	case RNDIS_MSG_QUERY:
	case RNDIS_MSG_SET: {
		if (blen < sizeof(struct rndis_query_request)) {
			log_guest("rndis: %s of %u bytes", h.type == RNDIS_MSG_QUERY ? "QUERY" : "SET", blen);
			if (blen < 4)
				return 0;
		}
		struct rndis_query_request q = { .req_id = req_id };
		memcpy(&q, body, blen < sizeof(q) ? blen : sizeof(q));
		bool bad = blen < sizeof(q);
		/* The information buffer must lie inside the message (offset counts from req_id). */
		const uint8_t *info = NULL;
		uint32_t ilen = 0;
		if (!bad && q.info_buflen) {
			if (q.info_buf_offset < sizeof(q) || q.info_buf_offset > blen ||
			    blen - q.info_buf_offset < q.info_buflen) {
				log_guest("rndis: OID 0x%08x buffer %u+%u outside %u bytes", q.oid, q.info_buf_offset,
					  q.info_buflen, blen);
				bad = true;
			} else {
				info = body + q.info_buf_offset;
				ilen = q.info_buflen;
			}
		}
		if (h.type == RNDIS_MSG_SET) {
			struct rndis_set_complete c = { .req_id = req_id };
			c.status = bad ? RNDIS_STATUS_INVALID_LENGTH : do_set(st, q.oid, info, ilen);
			if (c.status == RNDIS_STATUS_INVALID_LENGTH || c.status == RNDIS_STATUS_INVALID_DATA)
				log_guest("rndis: SET OID 0x%08x with a bad buffer (%u bytes)", q.oid, ilen);
			wr32(resp, RNDIS_MSG_SET | RNDIS_MSG_COMPLETION);
			wr32(resp + 4, 8 + sizeof(c));
			memcpy(resp + 8, &c, sizeof(c));
			return 8 + sizeof(c);
		}
		struct qres r;
		if (bad) {
			r.status = RNDIS_STATUS_INVALID_LENGTH;
			r.n = 0;
		} else {
			do_query(st, q.oid, &r);
		}
		struct rndis_query_complete c = { .req_id = req_id, .status = r.status,
						  .info_buflen = r.status ? 0 : r.n,
						  .info_buf_offset = r.status ? 0 : sizeof(c) };
		uint32_t total = 8 + sizeof(c) + c.info_buflen;
		wr32(resp, RNDIS_MSG_QUERY | RNDIS_MSG_COMPLETION);
		wr32(resp + 4, total);
		memcpy(resp + 8, &c, sizeof(c));
		memcpy(resp + 8 + sizeof(c), r.data, c.info_buflen);
		return (int)total;
	}
	case RNDIS_MSG_RESET: {
		struct rndis_reset_complete c = { .status = RNDIS_STATUS_SUCCESS, .addressing_reset = 1 };
		wr32(resp, RNDIS_MSG_RESET | RNDIS_MSG_COMPLETION);
		wr32(resp + 4, 8 + sizeof(c));
		memcpy(resp + 8, &c, sizeof(c));
		return 8 + sizeof(c);
	}
	case RNDIS_MSG_KEEPALIVE: {
		struct rndis_keepalive_complete c = { .req_id = req_id, .status = RNDIS_STATUS_SUCCESS };
		wr32(resp, RNDIS_MSG_KEEPALIVE | RNDIS_MSG_COMPLETION);
		wr32(resp + 4, 8 + sizeof(c));
		memcpy(resp + 8, &c, sizeof(c));
		return 8 + sizeof(c);
	}
	default:
		log_guest("rndis: unknown control message type 0x%08x", h.type);
		return -EINVAL;
	}
}

int rndis_packet_parse(const void *hdrv, uint32_t hdr_len, uint32_t total, struct rndis_tx_info *out)
{
	const uint8_t *m = hdrv;
	memset(out, 0, sizeof(*out));
	if (hdr_len < 8 + sizeof(struct rndis_packet) || hdr_len > total)
		return -EPROTO;
	struct rndis_header h;
	struct rndis_packet p;
	memcpy(&h, m, 8);
	memcpy(&p, m + 8, sizeof(p));
	if (h.type != RNDIS_MSG_PACKET || h.msg_len < 8 + sizeof(p) || h.msg_len > total)
		return -EPROTO;
	uint32_t blen = h.msg_len - 8;
	if (p.data_offset < sizeof(p) || p.data_offset > blen || blen - p.data_offset < p.data_len || !p.data_len)
		return -EPROTO;
	out->msg_len = h.msg_len;
	out->data_offset = 8 + p.data_offset;
	out->data_len = p.data_len;
	if (!p.per_pkt_info_len)
		return 0;
	/* PPIs must be in the linear part we were given, inside the message, before the data. */
	if (p.per_pkt_info_offset < sizeof(p) || p.per_pkt_info_offset > blen ||
	    blen - p.per_pkt_info_offset < p.per_pkt_info_len || 8 + p.per_pkt_info_offset > hdr_len ||
	    hdr_len - 8 - p.per_pkt_info_offset < p.per_pkt_info_len)
		return -EPROTO;
	const uint8_t *pp = m + 8 + p.per_pkt_info_offset;
	uint32_t left = p.per_pkt_info_len;
	while (left) {
		struct rndis_ppi e;
		if (left < sizeof(e))
			return -EPROTO;
		memcpy(&e, pp, sizeof(e));
		if (e.size < sizeof(e) || e.size > left || e.ppi_offset < sizeof(e) || e.ppi_offset > e.size ||
		    e.size - e.ppi_offset < 4)
			return -EPROTO;
		uint32_t v = rd32(pp + e.ppi_offset);
		switch (e.type) {
		case NDIS_PPI_TCPIP_CHKSUM:
			out->has_csum = true;
			out->csum = v;
			break;
		case NDIS_PPI_TCP_LARGESEND:
			out->has_lso = true;
			out->lso = v;
			break;
		case NDIS_PPI_IEEE_8021Q:
			out->has_vlan = true;
			out->vlan = v;
			break;
		default: /* hash, packet id, cancel id...: nothing for us to do */
			break;
		}
		pp += e.size;
		left -= e.size;
	}
	return 0;
}

static uint8_t *put_ppi(uint8_t *p, uint32_t type, uint32_t v)
{
	struct rndis_ppi e = { .size = 16, .type = type, .ppi_offset = 12 };
	memcpy(p, &e, sizeof(e));
	wr32(p + 12, v);
	return p + 16;
}

uint32_t rndis_rx_header(void *outv, uint32_t frame_len, const struct rndis_rx_info *ri)
{
	uint8_t *out = outv;
	uint8_t *pp = out + 8 + sizeof(struct rndis_packet), *e = pp;
	if (ri && ri->csum_ok)
		e = put_ppi(e, NDIS_PPI_TCPIP_CHKSUM,
			    NDIS_CSUM_RX_TCP_SUCCEEDED | NDIS_CSUM_RX_UDP_SUCCEEDED | NDIS_CSUM_RX_IP_SUCCEEDED);
	if (ri && ri->has_vlan) /* pri 0-2, cfi 3, id 4-15: the TCI's fields, rearranged */
		e = put_ppi(e, NDIS_PPI_IEEE_8021Q,
			    (uint32_t)(ri->vlan_tci >> 13) | (uint32_t)((ri->vlan_tci >> 12) & 1) << 3 |
				    (uint32_t)(ri->vlan_tci & 0xFFF) << 4);
	if (ri && ri->has_hash)
		e = put_ppi(e, NDIS_PPI_HASH_VALUE, ri->hash);
	uint32_t ppi_len = (uint32_t)(e - pp);
	struct rndis_packet p = {
		.data_offset = sizeof(p) + ppi_len,
		.data_len = frame_len,
		.per_pkt_info_offset = ppi_len ? sizeof(p) : 0,
		.per_pkt_info_len = ppi_len,
	};
	uint32_t hlen = 8 + sizeof(p) + ppi_len;
	wr32(out, RNDIS_MSG_PACKET);
	wr32(out + 4, hlen + frame_len);
	memcpy(out + 8, &p, sizeof(p));
	return hlen;
}

uint32_t rndis_indicate(void *outv, uint32_t status, const uint32_t *payload)
{
	uint8_t *out = outv;
	struct rndis_indicate_status s = { .status = status, .status_buflen = payload ? 4 : 0,
					   .status_buf_offset = payload ? sizeof(s) : 0 };
	uint32_t len = 8 + sizeof(s) + (payload ? 4u : 0u);
	wr32(out, RNDIS_MSG_INDICATE);
	wr32(out + 4, len);
	memcpy(out + 8, &s, sizeof(s));
	if (payload)
		wr32(out + 8 + sizeof(s), *payload);
	return len;
}

uint32_t rndis_toeplitz(const uint8_t *key, uint32_t key_len, const uint8_t *data, uint32_t len)
{
	uint32_t h = 0;
	if (key_len < 4 || len + 4 > key_len)
		return 0;
	uint32_t window = (uint32_t)key[0] << 24 | (uint32_t)key[1] << 16 | (uint32_t)key[2] << 8 | key[3];
	for (uint32_t i = 0; i < len; i++) {
		for (int b = 7; b >= 0; b--) {
			if (data[i] >> b & 1)
				h ^= window;
			window = window << 1 | (uint32_t)(key[i + 4] >> b & 1);
		}
	}
	return h;
}

uint32_t rndis_rss_queue(const struct rndis_state *st, const uint8_t *f, uint32_t len, uint32_t *hash)
{
	*hash = 0;
	if (!st->rss_enabled || !st->rss_itab_len || len < 14)
		return 0;
	uint32_t off = 12;
	uint16_t et = (uint16_t)(f[off] << 8 | f[off + 1]);
	if (et == 0x8100 && len >= 18) {
		off += 4;
		et = (uint16_t)(f[off] << 8 | f[off + 1]);
	}
	off += 2;
	uint8_t in[36];
	uint32_t n = 0;
	if (et == 0x0800 && len >= off + 20) {
		const uint8_t *ip = f + off;
		uint32_t ihl = (ip[0] & 0xFu) * 4u;
		if (ihl < 20 || len < off + ihl)
			return 0;
		memcpy(in, ip + 12, 8);
		n = 8;
		bool frag = ((ip[6] & 0x3Fu) | ip[7]) != 0;
		if (ip[9] == 6 && !frag && (st->rss_hashinfo & NDIS_HASH_TCP_IPV4) && len >= off + ihl + 4) {
			memcpy(in + 8, ip + ihl, 4);
			n = 12;
		} else if (!(st->rss_hashinfo & NDIS_HASH_IPV4)) {
			return 0;
		}
	} else if (et == 0x86DD && len >= off + 40) {
		const uint8_t *ip = f + off;
		memcpy(in, ip + 8, 32);
		n = 32;
		if (ip[6] == 6 && (st->rss_hashinfo & NDIS_HASH_TCP_IPV6) && len >= off + 44) {
			memcpy(in + 32, ip + 40, 4);
			n = 36;
		} else if (!(st->rss_hashinfo & NDIS_HASH_IPV6)) {
			return 0;
		}
	} else {
		return 0;
	}
	*hash = rndis_toeplitz(st->rss_key, st->rss_key_len, in, n);
	return st->rss_itab[*hash & (st->rss_itab_len - 1)];
}
