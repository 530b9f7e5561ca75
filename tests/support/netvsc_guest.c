#include "support/netvsc_guest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netvsc_client.h"
#include "util/clock.h"

static void glock(struct netvsc_guest *g)
{
	if (g->lock)
		pthread_mutex_lock(g->lock);
}

static void gunlock(struct netvsc_guest *g)
{
	if (g->lock)
		pthread_mutex_unlock(g->lock);
}

static int gsend(struct netvsc_guest *g, uint32_t c, uint16_t type, uint16_t flags, uint64_t tid, const void *ext,
		 uint32_t ext_len, const void *p, uint32_t len)
{
	glock(g);
	int rc = vmbus_client_send(&g->ch[c], type, flags, tid, ext, ext_len, p, len);
	gunlock(g);
	return rc;
}

static void grecv_done(struct netvsc_guest *g, uint32_t c)
{
	glock(g);
	vmbus_client_recv_done(&g->ch[c]);
	gunlock(g);
}

static void nap(void)
{
	struct timespec ts = { 0, 20000 };
	nanosleep(&ts, NULL);
}

static struct vmbus_guid netvsc_class(void)
{
	struct vmbus_guid g;
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &g);
	return g;
}

static int open_chan(struct netvsc_guest *g, uint16_t sub)
{
	struct vmbus_guid cls = netvsc_class();
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&g->lb->cl, &cls, sub);
	if (!o)
		return -ENODEV;
	glock(g);
	int rc = vmbus_client_channel_open(&g->lb->cl, &g->ch[sub], o->msg.child_relid, NETVSC_GUEST_RING,
					   NETVSC_GUEST_RING, 0, NULL, 0);
	gunlock(g);
	return rc ? -EIO : 0;
}

/* One RNDIS message of a receive-buffer range (netvsc_xfer_for_each callback). */
static void rndis_in(void *ctx, const uint8_t *msg, uint32_t len)
{
	struct netvsc_guest *g = ctx;
	uint32_t c = g->cur_chan;
	g->xfer_ranges++;
	if (len > g->rsec_size) { /* Linux: "Packet too big: buflen > recv_section_size", dropped */
		g->too_big++;
		return;
	}
	struct rndis_header h;
	memcpy(&h, msg, 8);
	if (h.msg_len > len) {
		g->bad_replies++;
		return;
	}
	if (h.type == RNDIS_MSG_PACKET) {
		struct rndis_packet p;
		const uint8_t *f;
		uint32_t flen, csum, vlan, hash;
		if (netvsc_rndis_packet_parse(msg, len, &p, &f, &flen)) {
			g->bad_replies++;
			return;
		}
		bool hc = !netvsc_rndis_ppi_get(msg, len, &p, NDIS_PPI_TCPIP_CHKSUM, &csum);
		bool hv = !netvsc_rndis_ppi_get(msg, len, &p, NDIS_PPI_IEEE_8021Q, &vlan);
		bool hh = !netvsc_rndis_ppi_get(msg, len, &p, NDIS_PPI_HASH_VALUE, &hash);
		g->rx_frames++;
		if (g->on_frame)
			g->on_frame(g->ctx, c, f, flen, hc ? &csum : NULL, hv ? &vlan : NULL, hh ? &hash : NULL);
	} else {
		uint32_t n = h.msg_len < sizeof(g->ctl) ? h.msg_len : (uint32_t)sizeof(g->ctl);
		memcpy(g->ctl, msg, n);
		g->ctl_len = n;
		if (h.type == RNDIS_MSG_INDICATE) {
			g->indications++;
			memcpy(&g->last_indication, msg + 8, 4);
		}
	}
}

/* Handles one packet from the host. */
static void handle(struct netvsc_guest *g, uint32_t c, const uint8_t *pkt, uint32_t len)
{
	struct vmbus_packet_descriptor d;
	memcpy(&d, pkt, sizeof(d));
	uint32_t off = d.offset8 * 8u;
	struct nvsp_message m = { 0 };
	if (off <= len)
		memcpy(&m, pkt + off, len - off < sizeof(m) ? len - off : sizeof(m));
	if (d.type == VM_PKT_COMP) {
		if (m.type == NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE) {
			g->last_send_status = m.u.rndis_pkt_complete.status;
			g->send_completions++;
		}
		return;
	}
	if (d.type != VM_PKT_DATA_USING_XFER_PAGES || m.type != NVSP_MSG1_TYPE_SEND_RNDIS_PKT) {
		g->bad_replies++;
		return;
	}
	g->xfer_packets++;
	g->cur_chan = c;
	if (netvsc_xfer_for_each(pkt, len, g->rbuf, g->rbuf_size, rndis_in, g) < 0)
		g->bad_replies++;
	if (g->hold_completions && g->nheld < 1024) {
		g->held[g->nheld++] = d.trans_id;
		return;
	}
	struct nvsp_message cm;
	netvsc_rx_complete_init(&cm);
	gsend(g, c, VM_PKT_COMP, 0, d.trans_id, NULL, 0, &cm, sizeof(cm));
}

void netvsc_guest_release_held(struct netvsc_guest *g, uint32_t c)
{
	struct nvsp_message cm;
	netvsc_rx_complete_init(&cm);
	for (uint32_t i = 0; i < g->nheld; i++)
		gsend(g, c, VM_PKT_COMP, 0, g->held[i], NULL, 0, &cm, sizeof(cm));
	g->nheld = 0;
}

int netvsc_guest_poll(struct netvsc_guest *g, uint32_t c)
{
	static __thread uint8_t buf[NETVSC_GUEST_RING];
	int n = 0;
	uint32_t len;
	while (vmbus_client_recv(&g->ch[c], buf, sizeof(buf), &len) == 0) {
		handle(g, c, buf, len);
		n++;
	}
	grecv_done(g, c);
	return n;
}

int netvsc_guest_nvsp(struct netvsc_guest *g, uint32_t c, const struct nvsp_message *m, struct nvsp_message *reply)
{
	uint64_t tid = ++g->next_tid;
	if (gsend(g, c, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid, NULL, 0, m, sizeof(*m)))
		return -EIO;
	static __thread uint8_t buf[NETVSC_GUEST_RING];
	uint32_t len;
	int rc = -ETIMEDOUT;
	uint64_t deadline = clock_mono_ms() + g->wait_ms;
	for (;;) {
		if (vmbus_client_recv(&g->ch[c], buf, sizeof(buf), &len) != 0) {
			if (rc == 0 || !g->wait_ms || clock_mono_ms() > deadline)
				break;
			grecv_done(g, c);
			nap();
			continue;
		}
		struct vmbus_packet_descriptor d;
		memcpy(&d, buf, sizeof(d));
		if (d.type == VM_PKT_COMP && d.trans_id == tid) {
			if (reply) {
				memset(reply, 0, sizeof(*reply));
				uint32_t off = d.offset8 * 8u;
				memcpy(reply, buf + off, len - off < sizeof(*reply) ? len - off : sizeof(*reply));
			}
			rc = 0;
		} else {
			handle(g, c, buf, len);
		}
	}
	grecv_done(g, c);
	return rc;
}

int netvsc_guest_open(struct netvsc_guest *g, struct vmbus_loopback *lb, uint32_t version, uint32_t rbuf_size,
		      uint32_t sbuf_size)
{
	memset(g, 0, sizeof(*g));
	g->lb = lb;
	return netvsc_guest_open_locked(g, lb, version, rbuf_size, sbuf_size, NULL, 0);
}

int netvsc_guest_open_locked(struct netvsc_guest *g, struct vmbus_loopback *lb, uint32_t version,
			     uint32_t rbuf_size, uint32_t sbuf_size, pthread_mutex_t *lock, uint32_t wait_ms)
{
	memset(g, 0, sizeof(*g));
	g->lb = lb;
	g->lock = lock;
	g->wait_ms = wait_ms;
	glock(g);
	int crc = 0;
	if (!lb->cl.connected)
		crc = vmbus_client_connect(&lb->cl, 0, 0) || vmbus_client_request_offers(&lb->cl);
	gunlock(g);
	if (crc)
		return -EIO;
	int rc = open_chan(g, 0);
	if (rc)
		return rc;
	g->nchan = 1;
	static const uint32_t versions[] = { NVSP_PROTOCOL_VERSION_61, NVSP_PROTOCOL_VERSION_6,
					     NVSP_PROTOCOL_VERSION_5, NVSP_PROTOCOL_VERSION_4,
					     NVSP_PROTOCOL_VERSION_2, NVSP_PROTOCOL_VERSION_1 };
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]) && !g->version; i++) {
		if (version && versions[i] != version)
			continue;
		struct nvsp_message m = { .type = NVSP_MSG_TYPE_INIT }, r;
		m.u.init.min_protocol_ver = m.u.init.max_protocol_ver = versions[i];
		if (netvsc_guest_nvsp(g, 0, &m, &r))
			return -EIO;
		if (r.type == NVSP_MSG_TYPE_INIT_COMPLETE && r.u.init_complete.status == NVSP_STAT_SUCCESS)
			g->version = r.u.init_complete.negotiated_protocol_ver;
	}
	if (!g->version)
		return -EPROTO;
	struct nvsp_message m = { .type = NVSP_MSG2_TYPE_SEND_NDIS_CONFIG };
	m.u.ndis_config.mtu = 1514;
	m.u.ndis_config.capability = 1u << 3; /* ieee8021q */
	gsend(g, 0, VM_PKT_DATA_INBAND, 0, ++g->next_tid, NULL, 0, &m, sizeof(m));
	m = (struct nvsp_message){ .type = NVSP_MSG1_TYPE_SEND_NDIS_VER };
	m.u.ndis_ver.ndis_major_ver = 6;
	m.u.ndis_ver.ndis_minor_ver = 30;
	gsend(g, 0, VM_PKT_DATA_INBAND, 0, ++g->next_tid, NULL, 0, &m, sizeof(m));

	g->rbuf_size = rbuf_size ? rbuf_size : 16u << 20;
	g->sbuf_size = sbuf_size ? sbuf_size : 1u << 20;
	g->rbuf = lb->ops.alloc_pages(lb, g->rbuf_size / 4096);
	g->sbuf = lb->ops.alloc_pages(lb, g->sbuf_size / 4096);
	if (!g->rbuf || !g->sbuf)
		return -ENOMEM;
	uint32_t relid = g->ch[0].relid;
	glock(g);
	int grc = vmbus_client_gpadl_create(&lb->cl, relid, g->rbuf, g->rbuf_size, &g->rgpadl) ||
		  vmbus_client_gpadl_create(&lb->cl, relid, g->sbuf, g->sbuf_size, &g->sgpadl);
	gunlock(g);
	if (grc)
		return -EIO;
	struct nvsp_message r;
	m = (struct nvsp_message){ .type = NVSP_MSG1_TYPE_SEND_RECV_BUF };
	m.u.send_buf.gpadl_handle = g->rgpadl;
	m.u.send_buf.id = NVSP_RECV_BUFFER_ID;
	if (netvsc_guest_nvsp(g, 0, &m, &r) || r.u.recv_buf_complete.status != NVSP_STAT_SUCCESS ||
	    r.u.recv_buf_complete.num_sections != 1)
		return -EIO;
	g->rsec_size = r.u.recv_buf_complete.sections[0].sub_alloc_size;
	g->rsec_n = r.u.recv_buf_complete.sections[0].num_sub_allocs;
	if (g->rsec_size < 68 || (uint64_t)g->rsec_size * g->rsec_n > g->rbuf_size)
		return -EIO;
	m = (struct nvsp_message){ .type = NVSP_MSG1_TYPE_SEND_SEND_BUF };
	m.u.send_buf.gpadl_handle = g->sgpadl;
	if (netvsc_guest_nvsp(g, 0, &m, &r) || r.u.send_buf_complete.status != NVSP_STAT_SUCCESS)
		return -EIO;
	g->ssec_size = r.u.send_buf_complete.section_size;
	return g->ssec_size >= 68 && g->ssec_size <= g->sbuf_size ? 0 : -EIO;
}

void netvsc_guest_close(struct netvsc_guest *g)
{
	if (!g->lb)
		return;
	glock(g);
	for (uint32_t c = g->nchan; c-- > 1;)
		vmbus_client_channel_close(&g->ch[c]);
	gunlock(g);
	if (g->nchan) {
		struct nvsp_message m = { .type = NVSP_MSG1_TYPE_REVOKE_RECV_BUF };
		m.u.revoke.id = NVSP_RECV_BUFFER_ID;
		gsend(g, 0, VM_PKT_DATA_INBAND, 0, ++g->next_tid, NULL, 0, &m, sizeof(m));
		m.type = NVSP_MSG1_TYPE_REVOKE_SEND_BUF;
		m.u.revoke.id = 0;
		gsend(g, 0, VM_PKT_DATA_INBAND, 0, ++g->next_tid, NULL, 0, &m, sizeof(m));
		uint32_t relid = g->ch[0].relid;
		glock(g);
		vmbus_client_channel_close(&g->ch[0]);
		if (g->rgpadl)
			vmbus_client_gpadl_teardown(&g->lb->cl, relid, g->rgpadl);
		if (g->sgpadl)
			vmbus_client_gpadl_teardown(&g->lb->cl, relid, g->sgpadl);
		gunlock(g);
	}
	if (g->sbuf)
		g->lb->ops.free_pages(g->lb, g->sbuf, g->sbuf_size / 4096);
	if (g->rbuf)
		g->lb->ops.free_pages(g->lb, g->rbuf, g->rbuf_size / 4096);
	g->lb = NULL;
}

static int wait_completion(struct netvsc_guest *g, uint32_t c)
{
	uint64_t deadline = clock_mono_ms() + g->wait_ms;
	netvsc_guest_poll(g, c);
	while (!g->send_completions && g->wait_ms && clock_mono_ms() <= deadline) {
		nap();
		netvsc_guest_poll(g, c);
	}
	return g->send_completions ? (int)g->last_send_status : -ETIMEDOUT;
}

/* GPA direct of a buffer in guest memory (page list). */
static int send_gpa(struct netvsc_guest *g, uint32_t c, uint32_t chan_type, const uint8_t *p, uint32_t len)
{
	struct {
		uint32_t reserved, rangecount, byte_count, byte_offset;
		uint64_t pfn[40];
	} __attribute__((packed)) x = { .rangecount = 1, .byte_count = len };
	uint64_t gpa = g->lb->ops.virt_to_phys(g->lb, p);
	x.byte_offset = (uint32_t)(gpa & 4095);
	uint32_t np = (uint32_t)((x.byte_offset + len + 4095) / 4096);
	if (np > 40)
		return -EMSGSIZE;
	for (uint32_t i = 0; i < np; i++)
		x.pfn[i] = (gpa >> 12) + i;
	struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
	m.u.rndis_pkt.channel_type = chan_type;
	m.u.rndis_pkt.send_buf_section_index = NVSP_INVALID_SECTION;
	g->send_completions = 0;
	if (gsend(g, c, VM_PKT_DATA_USING_GPA_DIRECT, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, ++g->next_tid, &x,
		  16 + 8 * np, &m, sizeof(m)))
		return -EIO;
	return wait_completion(g, c);
}

int netvsc_guest_rndis_raw(struct netvsc_guest *g, uint32_t c, uint32_t chan_type, const void *msg, uint32_t len,
			   bool gpa)
{
	if (gpa || len > g->ssec_size) {
		/* Place it at the end of the send buffer, page aligned, outside section 0. */
		uint8_t *p = g->sbuf + g->sbuf_size - ((len + 4095) / 4096 + 1) * 4096 + 100;
		if (len + 200 > g->sbuf_size / 2)
			return -EMSGSIZE;
		memcpy(p, msg, len);
		return send_gpa(g, c, chan_type, p, len);
	}
	memcpy(g->sbuf, msg, len);
	struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
	m.u.rndis_pkt.channel_type = chan_type;
	m.u.rndis_pkt.send_buf_section_index = 0;
	m.u.rndis_pkt.send_buf_section_size = len;
	g->send_completions = 0;
	if (gsend(g, c, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, ++g->next_tid, NULL, 0, &m,
		  sizeof(m)))
		return -EIO;
	return wait_completion(g, c);
}

static int request(struct netvsc_guest *g, uint32_t type, uint32_t oid, const void *in, uint32_t inlen, void *out,
		   uint32_t *outlen)
{
	uint8_t msg[8 + 20 + 1024];
	uint32_t req = ++g->next_req;
	uint32_t mlen = netvsc_rndis_request_build(msg, sizeof(msg), type, req, oid, in, inlen);
	if (!mlen)
		return -EMSGSIZE;
	g->ctl_len = 0;
	int st = netvsc_guest_rndis_raw(g, 0, NVSP_CHANNEL_TYPE_CONTROL, msg, mlen, false);
	if (st != NVSP_STAT_SUCCESS || g->ctl_len < 16)
		return -EIO;
	uint32_t rt, rid, status;
	memcpy(&rt, g->ctl, 4);
	memcpy(&rid, g->ctl + 8, 4);
	memcpy(&status, g->ctl + 12, 4);
	if (rt != (type | RNDIS_MSG_COMPLETION) || rid != req)
		return -EIO;
	if (type == RNDIS_MSG_QUERY && out && outlen) {
		struct rndis_query_complete c;
		memcpy(&c, g->ctl + 8, sizeof(c));
		if (status == RNDIS_STATUS_SUCCESS) {
			if (c.info_buf_offset < 16 || 8ull + c.info_buf_offset + c.info_buflen > g->ctl_len ||
			    c.info_buflen > *outlen)
				return -EIO;
			memcpy(out, g->ctl + 8 + c.info_buf_offset, c.info_buflen);
		}
		*outlen = status == RNDIS_STATUS_SUCCESS ? c.info_buflen : 0;
	}
	return (int)status;
}

int netvsc_guest_query(struct netvsc_guest *g, uint32_t oid, const void *in, uint32_t inlen, void *out,
		       uint32_t *outlen)
{
	return request(g, RNDIS_MSG_QUERY, oid, in, inlen, out, outlen);
}

int netvsc_guest_set(struct netvsc_guest *g, uint32_t oid, const void *in, uint32_t inlen)
{
	return request(g, RNDIS_MSG_SET, oid, in, inlen, NULL, NULL);
}

int netvsc_guest_rndis_init(struct netvsc_guest *g)
{
	uint8_t msg[24];
	struct rndis_header h = { RNDIS_MSG_INIT, 24 };
	struct rndis_init_request r = { .req_id = ++g->next_req, .major_ver = 1, .minor_ver = 0, .max_xfer_size = 0x4000 };
	memcpy(msg, &h, 8);
	memcpy(msg + 8, &r, 16);
	g->ctl_len = 0;
	int st = netvsc_guest_rndis_raw(g, 0, NVSP_CHANNEL_TYPE_CONTROL, msg, 24, false);
	if (st != NVSP_STAT_SUCCESS || g->ctl_len < 8 + sizeof(struct rndis_init_complete))
		return -EIO;
	struct rndis_init_complete c;
	memcpy(&c, g->ctl + 8, sizeof(c));
	if (c.req_id != r.req_id)
		return -EIO;
	return (int)c.status;
}

/* Builds one RNDIS data message; returns its length (8-aligned), 0 when it does not fit. */
static uint32_t build_packet(uint8_t *out, uint32_t cap, const struct netvsc_guest_frame *f)
{
	uint32_t t[3], v[3], n = 0;
	if (f->has_csum)
		t[n] = NDIS_PPI_TCPIP_CHKSUM, v[n++] = f->csum;
	if (f->has_lso)
		t[n] = NDIS_PPI_TCP_LARGESEND, v[n++] = f->lso;
	if (f->has_vlan)
		t[n] = NDIS_PPI_IEEE_8021Q, v[n++] = f->vlan;
	return netvsc_rndis_packet_build(out, cap, f->data, f->len, t, v, n);
}

int netvsc_guest_send(struct netvsc_guest *g, uint32_t c, const struct netvsc_guest_frame *f, uint32_t n)
{
	static __thread uint8_t buf[80 << 10];
	uint32_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t n1 = build_packet(buf + off, (uint32_t)sizeof(buf) - off, &f[i]);
		if (!n1)
			return -EMSGSIZE;
		off += n1;
	}
	return netvsc_guest_rndis_raw(g, c, NVSP_CHANNEL_TYPE_DATA, buf, off, false);
}

int netvsc_guest_subchannels(struct netvsc_guest *g, uint32_t n)
{
	struct nvsp_message m = { .type = NVSP_MSG5_TYPE_SUBCHANNEL }, r;
	m.u.subchannel_req.op = NVSP_SUBCHANNEL_ALLOCATE;
	m.u.subchannel_req.num_subchannels = n;
	if (netvsc_guest_nvsp(g, 0, &m, &r))
		return -EIO;
	if (r.type != NVSP_MSG5_TYPE_SUBCHANNEL || r.u.subchannel_comp.status != NVSP_STAT_SUCCESS)
		return -EIO;
	uint32_t got = r.u.subchannel_comp.num_subchannels;
	glock(g);
	while (vmbus_client_poll(&g->lb->cl) == 0) {
	}
	gunlock(g);
	for (uint32_t i = 1; i <= got; i++) {
		if (open_chan(g, (uint16_t)i))
			return -EIO;
		g->nchan = i + 1;
	}
	return (int)got;
}
