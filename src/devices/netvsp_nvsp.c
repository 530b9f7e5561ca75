/* netvsp protocol: the guest's VMBus packets and NVSP messages (INIT and the version, NDIS config,
 * receive/send buffer setup and revoke, sub-channel requests, the VF data-path switch, RNDIS_PKT
 * handed to the data path) and the completions of our receive transactions. Contracts and lock
 * rules: netvsp_priv.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/netvsp_priv.h"
#include "util/log.h"

/* Completes the guest packet being handled, if it asked for a completion (an unsolicited one would
 * name a transaction the guest is not waiting for). */
static void send_nvsp_comp(struct nv_chan *ch, uint64_t tid, const struct nvsp_message *m)
{
	if (!ch->want_comp)
		return;
	pthread_mutex_lock(&ch->send_lock);
	netvsp_send_or_owe(ch, VM_PKT_COMP, 0, tid, NULL, 0, m, sizeof(*m));
	pthread_mutex_unlock(&ch->send_lock);
}

/* --- NVSP control -------------------------------------------------------------------------------- */
bool netvsp_version_ok(uint32_t v)
{
	return v == NVSP_PROTOCOL_VERSION_2 || v == NVSP_PROTOCOL_VERSION_4 || v == NVSP_PROTOCOL_VERSION_5 ||
	       v == NVSP_PROTOCOL_VERSION_6 || v == NVSP_PROTOCOL_VERSION_61;
}

static void nvsp_buffer(struct nv_chan *ch, uint64_t tid, const struct nvsp_message *m, bool recv)
{
	struct netvsp *nv = ch->nv;
	struct nvsp_message r = { .type = recv ? NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE
					     : NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE };
	uint32_t status = NVSP_STAT_FAIL;
	if (ch->idx != 0 || !nv->nvsp_version || (recv ? nv->rgp != NULL : nv->sgp != NULL)) {
		log_guest("netvsp: %s buffer sent twice, before INIT or on a sub-channel", recv ? "receive" : "send");
	} else {
		struct vmbus_gpadl *g = NULL;
		struct vmbus_view v = { 0 };
		uint32_t size = 0;
		int rc = netvsp_buffer_map(ch, m->u.send_buf.gpadl_handle, &g, &v, &size);
		uint32_t secsz = NV_SEND_SECTION;
		if (recv) {
			pthread_mutex_lock(&nv->lock);
			uint32_t mtu = nv->guest_mtu > nv->rs.mtu ? nv->guest_mtu : nv->rs.mtu;
			pthread_mutex_unlock(&nv->lock);
			secsz = (RNDIS_RX_HEADER_MAX + mtu + 18 + 63) & ~63u; /* Ethernet header + VLAN tag */
			if (secsz < NV_RECV_SECTION)
				secsz = NV_RECV_SECTION;
		}
		if (rc == 0 && size / secsz < 2) {
			vmbus_view_unmap(&v);
			vmbus_channel_gpadl_release(ch->chan, g);
			rc = -EINVAL;
		}
		uint8_t *used = NULL;
		if (rc == 0 && recv && !(used = calloc(size / secsz, 1))) {
			vmbus_view_unmap(&v);
			vmbus_channel_gpadl_release(ch->chan, g);
			rc = -ENOMEM;
		}
		if (rc) {
			log_guest("netvsp: %s buffer GPADL %u unusable (%d)", recv ? "receive" : "send",
				  m->u.send_buf.gpadl_handle, rc);
		} else {
			pthread_rwlock_wrlock(&nv->buf_lock);
			pthread_mutex_lock(&nv->lock);
			if (recv) {
				nv->rgp = g;
				nv->rview = v;
				nv->rsize = size;
				nv->rsec_n = size / secsz;
				nv->rsecsz = secsz;
				nv->rused = used;
				nv->rhint = 0;
				nv->recv_id = m->u.send_buf.id;
				r.u.recv_buf_complete.num_sections = 1;
				r.u.recv_buf_complete.sections[0] = (struct nvsp_recv_buffer_section){
					.offset = 0, .sub_alloc_size = secsz, .num_sub_allocs = nv->rsec_n,
					.end_offset = nv->rsec_n * secsz };
			} else {
				nv->sgp = g;
				nv->sview = v;
				nv->ssize = size;
				nv->ssec_n = size / secsz;
				r.u.send_buf_complete.section_size = secsz;
			}
			pthread_mutex_unlock(&nv->lock);
			pthread_rwlock_unlock(&nv->buf_lock);
			status = NVSP_STAT_SUCCESS;
		}
	}
	if (recv)
		r.u.recv_buf_complete.status = status;
	else
		r.u.send_buf_complete.status = status;
	send_nvsp_comp(ch, tid, &r);
}

static void nvsp_revoke(struct nv_chan *ch, bool recv)
{
	struct netvsp *nv = ch->nv;
	if (ch->idx != 0)
		return;
	pthread_rwlock_wrlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	if (recv)
		netvsp_recv_unmap(nv, ch->chan);
	else
		netvsp_send_unmap(nv, ch->chan);
	pthread_mutex_unlock(&nv->lock);
	pthread_rwlock_unlock(&nv->buf_lock);
}

static void nvsp_subchannels(struct nv_chan *ch, uint64_t tid, const struct nvsp_message *m)
{
	struct netvsp *nv = ch->nv;
	struct nvsp_message r = { .type = NVSP_MSG5_TYPE_SUBCHANNEL };
	r.u.subchannel_comp.status = NVSP_STAT_FAIL;
	uint32_t want = m->u.subchannel_req.num_subchannels;
	if (ch->idx != 0 || nv->nvsp_version < NVSP_PROTOCOL_VERSION_5 ||
	    m->u.subchannel_req.op != NVSP_SUBCHANNEL_ALLOCATE) {
		log_guest("netvsp: bad sub-channel request (op %u, version 0x%x)", m->u.subchannel_req.op,
			  nv->nvsp_version);
	} else {
		if (want > nv->max_queues - 1)
			want = nv->max_queues - 1;
		/* After a reattach (the primary closed and opened again) the old sub-channels are gone. The
		 * offers go out from the server (see vmbus_device_offer_subchannels): only this thread
		 * asks for this device, so count and request cannot race. */
		uint16_t have = vmbus_device_subchannel_count(nv->dev);
		int rc = want > have ? vmbus_device_offer_subchannels(nv->dev, (uint16_t)(want - have)) : 0;
		if (rc >= 0) {
			r.u.subchannel_comp.status = NVSP_STAT_SUCCESS;
			r.u.subchannel_comp.num_subchannels = want;
		}
	}
	send_nvsp_comp(ch, tid, &r);
}

static void rx_complete(struct netvsp *nv, uint64_t tid)
{
	uint32_t slot = (uint32_t)tid;
	pthread_mutex_lock(&nv->lock);
	if (tid >> 32 != NV_TID_MAGIC || slot >= NV_TXN_MAX || !nv->txn[slot].used ||
	    nv->txn[slot].parked) {
		pthread_mutex_unlock(&nv->lock);
		log_guest("netvsp: completion for unknown receive transaction 0x%llx", (unsigned long long)tid);
		STAT_ADD(nv, bad_messages, 1);
		return;
	}
	netvsp_txn_release(nv, slot);
	pthread_mutex_unlock(&nv->lock);
}

static void handle_nvsp(struct nv_chan *ch, const struct vmbus_packet_descriptor *d, const uint8_t *pl, uint32_t plen,
			uint32_t hdr_end)
{
	struct netvsp *nv = ch->nv;
	struct nvsp_message m = { 0 };
	ch->want_comp = d->flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;
	if (plen < 4) {
		log_guest("netvsp: NVSP message of %u bytes", plen);
		STAT_ADD(nv, bad_messages, 1);
		return;
	}
	memcpy(&m, pl, plen < sizeof(m) ? plen : sizeof(m));
	switch (m.type) {
	case NVSP_MSG_TYPE_INIT: {
		struct nvsp_message r = { .type = NVSP_MSG_TYPE_INIT_COMPLETE };
		uint32_t v = m.u.init.max_protocol_ver;
		if (plen < 12 || ch->idx || !netvsp_version_ok(v) || m.u.init.min_protocol_ver > v) {
			r.u.init_complete.status = NVSP_STAT_FAIL;
		} else {
			pthread_mutex_lock(&nv->lock);
			nv->nvsp_version = v;
			nv->rs.nvsp_version = v;
			pthread_mutex_unlock(&nv->lock);
			r.u.init_complete.negotiated_protocol_ver = v;
			r.u.init_complete.max_mdl_chain_len = 34;
			r.u.init_complete.status = NVSP_STAT_SUCCESS;
		}
		send_nvsp_comp(ch, d->trans_id, &r);
		return;
	}
	case NVSP_MSG2_TYPE_SEND_NDIS_CONFIG: {
		/* Linux sends its MTU plus the Ethernet header; receive buffers are sized from it. */
		uint32_t mtu = m.u.ndis_config.mtu > 14 ? m.u.ndis_config.mtu - 14 : 0;
		pthread_mutex_lock(&nv->lock);
		nv->guest_mtu = mtu > 9000 ? 9000 : mtu;
		pthread_mutex_unlock(&nv->lock);
		return;
	}
	case NVSP_MSG1_TYPE_SEND_NDIS_VER:
		return; /* informational; nothing to answer */
	case NVSP_MSG1_TYPE_SEND_RECV_BUF:
	case NVSP_MSG1_TYPE_SEND_SEND_BUF:
		if (plen < 10) {
			log_guest("netvsp: short buffer message");
			STAT_ADD(nv, bad_messages, 1);
			return;
		}
		nvsp_buffer(ch, d->trans_id, &m, m.type == NVSP_MSG1_TYPE_SEND_RECV_BUF);
		return;
	case NVSP_MSG1_TYPE_REVOKE_RECV_BUF:
	case NVSP_MSG1_TYPE_REVOKE_SEND_BUF:
		nvsp_revoke(ch, m.type == NVSP_MSG1_TYPE_REVOKE_RECV_BUF);
		return;
	case NVSP_MSG5_TYPE_SUBCHANNEL:
		nvsp_subchannels(ch, d->trans_id, &m);
		return;
	case NVSP_MSG4_TYPE_SWITCH_DATA_PATH: {
		struct nvsp_message r = { .type = NVSP_MSG4_TYPE_SWITCH_DATA_PATH };
		send_nvsp_comp(ch, d->trans_id, &r);
		return;
	}
	case NVSP_MSG1_TYPE_SEND_RNDIS_PKT: {
		struct nvsp_message r = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE };
		r.u.rndis_pkt_complete.status = netvsp_tx_rndis_pkt(ch, d, &m, plen, hdr_end);
		send_nvsp_comp(ch, d->trans_id, &r);
		return;
	}
	default:
		log_guest("netvsp: unknown NVSP message type %u", m.type);
		STAT_ADD(nv, bad_messages, 1);
		return;
	}
}

static void handle_packet(struct nv_chan *ch, uint32_t len)
{
	struct vmbus_packet_descriptor d;
	memcpy(&d, ch->pkt, sizeof(d));
	uint32_t off = d.offset8 * 8u;
	if (off < sizeof(d) || off > len) { /* the ring engine already checked; be sure */
		STAT_ADD(ch->nv, bad_messages, 1);
		return;
	}
	const uint8_t *pl = ch->pkt + off;
	uint32_t plen = len - off;
	switch (d.type) {
	case VM_PKT_COMP:
		if (plen >= 4) {
			uint32_t t;
			memcpy(&t, pl, 4);
			if (t == NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE) {
				rx_complete(ch->nv, d.trans_id);
				return;
			}
		}
		log_guest("netvsp: unexpected completion");
		STAT_ADD(ch->nv, bad_messages, 1);
		return;
	case VM_PKT_DATA_INBAND:
		handle_nvsp(ch, &d, pl, plen, off);
		return;
	case VM_PKT_DATA_USING_GPA_DIRECT:
		if (off < 24) {
			STAT_ADD(ch->nv, bad_messages, 1);
			return;
		}
		handle_nvsp(ch, &d, pl, plen, off);
		return;
	default:
		log_guest("netvsp: packet type %u", d.type);
		STAT_ADD(ch->nv, bad_messages, 1);
		return;
	}
}

/* Drains the guest's ring (and first what the host owes). */
void netvsp_guest_service(struct nv_chan *ch)
{
	struct vmbus_ring *rx = vmbus_channel_rx_ring(ch->chan);
	pthread_mutex_lock(&ch->send_lock);
	bool clear = netvsp_owed_flush(ch);
	pthread_mutex_unlock(&ch->send_lock);
	if (!clear && ch->nowed)
		return; /* the guest signals when it has read */
	vmbus_ring_mask(rx);
	for (;;) {
		uint32_t len;
		while (!ch->nowed && vmbus_channel_recv(ch->chan, ch->pkt, ch->pkt_cap, &len) == 0)
			handle_packet(ch, len);
		vmbus_channel_recv_done(ch->chan);
		if (ch->nowed)
			break;
		if (!vmbus_ring_unmask(rx))
			return;
		vmbus_ring_mask(rx);
	}
	vmbus_ring_unmask(rx);
}
