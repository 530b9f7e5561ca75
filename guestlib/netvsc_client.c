#include "netvsc_client.h"

#include "vmbus_ring.h"

int netvsc_packet_peel(const uint8_t *pkt, uint32_t len, struct vmbus_packet_descriptor *desc,
		       struct nvsp_message *m)
{
	vmbus_mem_zero(m, sizeof(*m));
	if (len < sizeof(*desc))
		return -1;
	vmbus_mem_copy(desc, pkt, sizeof(*desc));
	uint32_t off = desc->offset8 * 8u;
	if (off < sizeof(*desc) || off > len)
		return -1;
	vmbus_mem_copy(m, pkt + off, len - off < sizeof(*m) ? len - off : sizeof(*m));
	return 0;
}

void netvsc_rndis_msg_init(struct nvsp_message *m, uint32_t channel_type, uint32_t section, uint32_t size)
{
	vmbus_mem_zero(m, sizeof(*m));
	m->type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT;
	m->u.rndis_pkt.channel_type = channel_type;
	m->u.rndis_pkt.send_buf_section_index = section;
	m->u.rndis_pkt.send_buf_section_size = size;
}

void netvsc_rx_complete_init(struct nvsp_message *m)
{
	vmbus_mem_zero(m, sizeof(*m));
	m->type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE;
	m->u.rndis_pkt_complete.status = NVSP_STAT_SUCCESS;
}

int netvsc_xfer_for_each(const uint8_t *pkt, uint32_t len, const uint8_t *rbuf, uint32_t rbuf_size,
			 void (*fn)(void *ctx, const uint8_t *msg, uint32_t len), void *ctx)
{
	struct vmbus_xfer_page_packet_header h;
	if (len < sizeof(h))
		return -1;
	vmbus_mem_copy(&h, pkt, sizeof(h));
	uint32_t off = h.d.offset8 * 8u;
	if (h.d.type != VM_PKT_DATA_USING_XFER_PAGES || off > len || off < sizeof(h) ||
	    (off - sizeof(h)) / sizeof(struct vmbus_xfer_page_range) < h.range_cnt)
		return -1;
	int n = 0;
	for (uint32_t i = 0; i < h.range_cnt; i++) {
		struct vmbus_xfer_page_range r;
		vmbus_mem_copy(&r, pkt + sizeof(h) + i * sizeof(r), sizeof(r));
		if (r.byte_offset > rbuf_size || rbuf_size - r.byte_offset < r.byte_count ||
		    r.byte_count < sizeof(struct rndis_header))
			continue;
		fn(ctx, rbuf + r.byte_offset, r.byte_count);
		n++;
	}
	return n;
}

int netvsc_rndis_packet_parse(const uint8_t *msg, uint32_t len, struct rndis_packet *p, const uint8_t **frame,
			      uint32_t *flen)
{
	struct rndis_header h;
	if (len < sizeof(h) + sizeof(*p))
		return -1;
	vmbus_mem_copy(&h, msg, sizeof(h));
	if (h.type != RNDIS_MSG_PACKET || h.msg_len > len || h.msg_len < sizeof(h) + sizeof(*p))
		return -1;
	vmbus_mem_copy(p, msg + sizeof(h), sizeof(*p));
	uint32_t body = h.msg_len - (uint32_t)sizeof(h);
	if (p->data_offset > body || p->data_len > body - p->data_offset)
		return -1;
	*frame = msg + sizeof(h) + p->data_offset;
	*flen = p->data_len;
	return 0;
}

int netvsc_rndis_ppi_get(const uint8_t *msg, uint32_t len, const struct rndis_packet *p, uint32_t type,
			 uint32_t *value)
{
	uint32_t body = len - (uint32_t)sizeof(struct rndis_header);
	if (p->per_pkt_info_offset > body || p->per_pkt_info_len > body - p->per_pkt_info_offset)
		return -1;
	const uint8_t *base = msg + sizeof(struct rndis_header) + p->per_pkt_info_offset;
	for (uint32_t o = 0; p->per_pkt_info_len - o >= sizeof(struct rndis_ppi);) {
		struct rndis_ppi e;
		vmbus_mem_copy(&e, base + o, sizeof(e));
		if (e.size < sizeof(e) + 4 || e.size > p->per_pkt_info_len - o || e.ppi_offset > e.size - 4)
			return -1;
		if (e.type == type) {
			vmbus_mem_copy(value, base + o + e.ppi_offset, 4);
			return 0;
		}
		o += e.size;
	}
	return -1;
}

uint32_t netvsc_rndis_packet_build(uint8_t *out, uint32_t cap, const uint8_t *frame, uint32_t flen,
				   const uint32_t *ppi_type, const uint32_t *ppi_value, uint32_t nppi)
{
	const uint32_t hl = sizeof(struct rndis_header), bl = sizeof(struct rndis_packet), el = 16;
	if (nppi > 4 || flen > cap || cap - flen < hl + bl + nppi * el + 8)
		return 0;
	uint32_t pl = nppi * el, len = (hl + bl + pl + flen + 7) & ~7u;
	for (uint32_t i = 0; i < nppi; i++) {
		struct rndis_ppi e = { el, ppi_type[i], sizeof(struct rndis_ppi) };
		vmbus_mem_copy(out + hl + bl + i * el, &e, sizeof(e));
		vmbus_mem_copy(out + hl + bl + i * el + sizeof(e), &ppi_value[i], 4);
	}
	struct rndis_packet p = { .data_offset = bl + pl, .data_len = flen, .per_pkt_info_offset = nppi ? bl : 0,
				  .per_pkt_info_len = pl };
	struct rndis_header h = { RNDIS_MSG_PACKET, len };
	vmbus_mem_copy(out, &h, hl);
	vmbus_mem_copy(out + hl, &p, bl);
	vmbus_mem_copy(out + hl + bl + pl, frame, flen);
	vmbus_mem_zero(out + hl + bl + pl + flen, len - (hl + bl + pl + flen));
	return len;
}

uint32_t netvsc_rndis_request_build(uint8_t *out, uint32_t cap, uint32_t type, uint32_t req_id, uint32_t oid,
				    const void *in, uint32_t inlen)
{
	const uint32_t hl = sizeof(struct rndis_header), ql = sizeof(struct rndis_query_request);
	if (inlen > cap || cap - inlen < hl + ql)
		return 0;
	struct rndis_header h = { type, hl + ql + inlen };
	/* info_buf_offset counts from req_id, the start of the body */
	struct rndis_query_request q = { .req_id = req_id, .oid = oid, .info_buflen = inlen,
					 .info_buf_offset = inlen ? ql : 0 };
	vmbus_mem_copy(out, &h, hl);
	vmbus_mem_copy(out + hl, &q, ql);
	if (inlen)
		vmbus_mem_copy(out + hl + ql, in, inlen);
	return h.msg_len;
}
