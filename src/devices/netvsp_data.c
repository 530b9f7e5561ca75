/* netvsp data path. Guest -> backend: the RNDIS messages of an RNDIS_PKT (from a send-buffer section
 * or GPA ranges), each data message's checksum/LSO/VLAN per-packet info turned into the backend's
 * virtio-net header (LSO headers fixed up as the kernel wants them), control messages answered
 * through rndis_control. Backend -> guest: frames into receive sections, batched into XFER_PAGES
 * packets on the channel RSS picks; what a full ring holds back is owed or parked until the guest
 * reads. Contracts and lock rules: netvsp_priv.h. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "devices/netvsp_priv.h"
#include "util/log.h"

/* --- host -> guest ---------------------------------------------------------------------------- */
static void owe(struct nv_chan *ch, uint16_t type, uint16_t flags, uint64_t tid, const void *ext, uint32_t ext_len,
		const void *p, uint32_t len)
{
	if (ch->nowed == NV_OWED_MAX) { /* cannot happen: we stop reading while anything is owed */
		log_error("netvsp: owed-packet queue overflow");
		return;
	}
	struct nv_owed *o = &ch->owed[ch->nowed++];
	o->type = type;
	o->flags = flags;
	o->tid = tid;
	o->ext_len = ext_len;
	o->len = len;
	memcpy(o->ext, ext, ext_len);
	memcpy(o->payload, p, len);
}

/* send_lock held. Sends, or queues the packet when the ring is full (the guest signals once it reads). */
void netvsp_send_or_owe(struct nv_chan *ch, uint16_t type, uint16_t flags, uint64_t tid, const void *ext,
			uint32_t ext_len, const void *p, uint32_t len)
{
	if (!ch->nowed) {
		int rc = vmbus_channel_send(ch->chan, type, flags, tid, ext, ext_len, p, len);
		if (rc != -EAGAIN)
			return;
	}
	owe(ch, type, flags, tid, ext, ext_len, p, len);
}

/* Sends batch b as one XFER_PAGES packet; send_lock held. Returns 0 or -EAGAIN (ring full). */
static int send_xfer(struct nv_chan *ch, const struct nv_batch *b, uint64_t tid)
{
	struct {
		uint16_t pageset;
		uint8_t sender_owns, reserved;
		uint32_t range_cnt;
		struct vmbus_xfer_page_range r[NV_BATCH];
	} __attribute__((packed)) x = { .pageset = ch->nv->recv_id, .range_cnt = b->n };
	for (uint32_t i = 0; i < b->n; i++) {
		x.r[i].byte_offset = b->start[i] * ch->nv->rsecsz + b->off[i];
		x.r[i].byte_count = b->len[i];
	}
	struct nvsp_message m = { .type = NVSP_MSG1_TYPE_SEND_RNDIS_PKT };
	m.u.rndis_pkt.channel_type = b->chan_type;
	m.u.rndis_pkt.send_buf_section_index = NVSP_INVALID_SECTION;
	int rc = vmbus_channel_send(ch->chan, VM_PKT_DATA_USING_XFER_PAGES, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
				    tid, &x, 8 + 8 * b->n, &m, sizeof(m));
	return rc == -EAGAIN ? -EAGAIN : 0;
}

/* Queues batch b (sections already filled) to the guest on ch. buf_lock read-held. Returns true when
 * delivered or parked; false when dropped (sections freed). */
static bool deliver(struct nv_chan *ch, const struct nv_batch *b)
{
	struct netvsp *nv = ch->nv;
	uint32_t slot;
	pthread_mutex_lock(&nv->lock);
	if (!netvsp_txn_take(nv, b, &slot)) {
		netvsp_batch_free(nv, b);
		pthread_mutex_unlock(&nv->lock);
		return false;
	}
	pthread_mutex_unlock(&nv->lock);
	uint64_t tid = NV_TID_MAGIC << 32 | slot;
	pthread_mutex_lock(&ch->send_lock);
	bool ok = true;
	if (ch->parked || ch->nowed || send_xfer(ch, b, tid) == -EAGAIN) {
		if (!ch->parked && !ch->nowed) {
			ch->parked = true;
			ch->parked_slot = slot;
			pthread_mutex_lock(&nv->lock);
			nv->txn[slot].parked = true;
			pthread_mutex_unlock(&nv->lock);
		} else {
			ok = false;
		}
	}
	pthread_mutex_unlock(&ch->send_lock);
	if (!ok) {
		pthread_mutex_lock(&nv->lock);
		netvsp_txn_release(nv, slot); /* frees b's sections: the slot holds a copy of b */
		pthread_mutex_unlock(&nv->lock);
	}
	return ok;
}

/* send_lock held: retries what a full ring held back. Returns true when nothing is left. */
bool netvsp_owed_flush(struct nv_chan *ch)
{
	uint32_t i = 0;
	while (i < ch->nowed) {
		struct nv_owed *o = &ch->owed[i];
		if (vmbus_channel_send(ch->chan, o->type, o->flags, o->tid, o->ext, o->ext_len, o->payload, o->len) ==
		    -EAGAIN)
			break;
		i++;
	}
	memmove(ch->owed, ch->owed + i, (ch->nowed - i) * sizeof(ch->owed[0]));
	ch->nowed -= i;
	if (ch->nowed)
		return false;
	if (ch->parked) {
		struct netvsp *nv = ch->nv;
		uint32_t slot = ch->parked_slot;
		pthread_mutex_lock(&nv->lock);
		struct nv_batch b = nv->txn[slot].b;
		pthread_mutex_unlock(&nv->lock);
		if (send_xfer(ch, &b, NV_TID_MAGIC << 32 | slot) == -EAGAIN)
			return false;
		pthread_mutex_lock(&nv->lock);
		nv->txn[slot].parked = false;
		pthread_mutex_unlock(&nv->lock);
		ch->parked = false;
	}
	return true;
}

/* Puts one RNDIS message (control reply or indication) into the receive buffer and sends it on ch.
 * buf_lock read-held. */
void netvsp_rndis_ctl_send(struct nv_chan *ch, const void *msg, uint32_t len)
{
	struct netvsp *nv = ch->nv;
	pthread_mutex_lock(&nv->lock);
	uint32_t k = nv->rsecsz ? (len + nv->rsecsz - 1) / nv->rsecsz : 0, start;
	bool ok = nv->rview.base && netvsp_sec_alloc(nv, k, &start);
	pthread_mutex_unlock(&nv->lock);
	if (!ok) {
		log_guest("netvsp: no receive buffer space for an RNDIS reply (buffer missing or all sections held)");
		return;
	}
	memcpy(nv->rview.base + (size_t)start * nv->rsecsz, msg, len);
	struct nv_batch b = { .n = 1, .chan_type = NVSP_CHANNEL_TYPE_CONTROL, .start = { start }, .count = { k },
			      .off = { 0 }, .len = { len } };
	deliver(ch, &b);
}

/* --- guest -> host: RNDIS messages -------------------------------------------------------------- */
/* Copies len bytes at offset off of the iovec stream into dst. Returns false if it runs out. */
static bool iov_copy(const struct iovec *iov, int n, uint64_t off, void *dst, uint32_t len)
{
	uint8_t *d = dst;
	for (int i = 0; i < n && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t c = iov[i].iov_len - off;
		if (c > len)
			c = len;
		memcpy(d, (uint8_t *)iov[i].iov_base + off, c);
		d += c;
		len -= (uint32_t)c;
		off = 0;
	}
	return len == 0;
}

/* out = the iovecs covering [off, off+len) of the stream; returns their count or -1. */
static int iov_slice(const struct iovec *iov, int n, uint64_t off, uint64_t len, struct iovec *out, int max)
{
	int k = 0;
	for (int i = 0; i < n && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t c = iov[i].iov_len - off;
		if (c > len)
			c = len;
		if (k == max)
			return -1;
		out[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + off, c };
		len -= c;
		off = 0;
	}
	return len ? -1 : k;
}

static uint16_t csum_fold32(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t csum_add_bytes(uint32_t s, const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

/* LSO: the guest zeroes the IP length fields and leaves a length-less pseudo-header sum (NDIS rule);
 * a GSO frame for the kernel carries real lengths and a pseudo-header sum over the whole TCP length. */
static bool lso_fix_headers(uint8_t *h, uint32_t ipoff, uint32_t thoff, uint32_t frame_len, bool v6)
{
	uint32_t tcp_len = frame_len - thoff, s = 0;
	if (!v6) {
		uint8_t *ip = h + ipoff;
		if (thoff < ipoff + 20 || (ip[0] >> 4) != 4 || ip[9] != 6)
			return false;
		uint32_t tot = frame_len - ipoff;
		if (tot > 0xFFFF)
			return false;
		ip[2] = (uint8_t)(tot >> 8);
		ip[3] = (uint8_t)tot;
		ip[10] = ip[11] = 0;
		uint16_t c = (uint16_t)~csum_fold32(csum_add_bytes(0, ip, thoff - ipoff));
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
		s = csum_add_bytes(0, ip + 12, 8);
	} else {
		uint8_t *ip = h + ipoff;
		if (thoff < ipoff + 40 || (ip[0] >> 4) != 6)
			return false;
		uint32_t pl = frame_len - ipoff - 40;
		if (pl > 0xFFFF)
			return false;
		ip[4] = (uint8_t)(pl >> 8);
		ip[5] = (uint8_t)pl;
		s = csum_add_bytes(0, ip + 8, 32);
	}
	s += 6 + tcp_len;
	uint16_t c = csum_fold32(s);
	h[thoff + 16] = (uint8_t)(c >> 8);
	h[thoff + 17] = (uint8_t)c;
	return true;
}

/* One data message: builds the vnet header and hands the frame to the backend. Returns an NVSP status. */
static uint32_t tx_frame(struct nv_chan *ch, const struct iovec *src, int ns, uint64_t base, const struct rndis_tx_info *ti)
{
	struct netvsp *nv = ch->nv;
	struct virtio_net_hdr vh = { 0 };
	uint8_t hb[256 + 4];
	uint32_t H = 0; /* frame bytes replaced by hb */
	uint32_t hb_len = 0;
	uint32_t len = ti->data_len;
	bool link, csum_v4, csum_v6, lso_ok;
	pthread_mutex_lock(&nv->lock);
	link = nv->rs.link_up;
	csum_v4 = nv->rs.tx_csum_v4 || nv->rs.lso_v4;
	csum_v6 = nv->rs.tx_csum_v6 || nv->rs.lso_v6;
	lso_ok = nv->rs.lso_v4 || nv->rs.lso_v6;
	pthread_mutex_unlock(&nv->lock);
	if (!link) {
		STAT_ADD(nv, tx_dropped, 1);
		return NVSP_STAT_SUCCESS; /* a disconnected cable loses frames silently */
	}
	if (len < 14 || len > NET_FRAME_MAX - 4) {
		log_guest("netvsp: transmit frame of %u bytes", len);
		return NVSP_STAT_INVALID_RNDIS_PKT;
	}
	uint32_t ipoff = 14;
	if (ti->has_lso && (ti->lso & NDIS_LSO_MSS_MASK)) {
		uint32_t thoff = ti->lso >> NDIS_LSO_TCP_OFF_SHIFT & NDIS_LSO_TCP_OFF_MASK;
		uint8_t t[60];
		if (!lso_ok || !(nv->be->caps & NET_BE_CAP_TSO) || thoff + 20 > len ||
		    !iov_copy(src, ns, base + ti->data_offset + thoff, t, 20)) {
			log_guest("netvsp: LSO frame the adapter did not offer or with a bad header offset %u", thoff);
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		uint32_t tcplen = (uint32_t)(t[12] >> 4) * 4u;
		H = thoff + tcplen;
		if (tcplen < 20 || H > 256 || H > len || !iov_copy(src, ns, base + ti->data_offset, hb, H)) {
			log_guest("netvsp: LSO frame with bad TCP header");
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		if (hb[12] == 0x81 && hb[13] == 0x00)
			ipoff = 18;
		bool v6 = ti->lso & NDIS_LSO_IPV6;
		if (!lso_fix_headers(hb, ipoff, thoff, len, v6)) {
			log_guest("netvsp: LSO frame whose headers do not match its PPI");
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		hb_len = H;
		vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		vh.csum_start = (uint16_t)thoff;
		vh.csum_offset = 16;
		vh.gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
		vh.gso_size = (uint16_t)(ti->lso & NDIS_LSO_MSS_MASK);
		vh.hdr_len = (uint16_t)H;
	} else if (ti->has_csum && (ti->csum & (NDIS_CSUM_TX_TCP | NDIS_CSUM_TX_UDP))) {
		uint32_t thoff = ti->csum >> NDIS_CSUM_TX_TCP_OFF_SHIFT & 0x3FFu;
		bool v6 = ti->csum & NDIS_CSUM_TX_IPV6;
		uint16_t coff = (ti->csum & NDIS_CSUM_TX_TCP) ? 16 : 6;
		if (!(v6 ? csum_v6 : csum_v4) || !(nv->be->caps & NET_BE_CAP_CSUM) || thoff + coff + 2u > len) {
			log_guest("netvsp: checksum offload the adapter did not offer, or offset %u", thoff);
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		vh.csum_start = (uint16_t)thoff;
		vh.csum_offset = coff;
	}
	if (ti->has_vlan) {
		/* Insert the 802.1Q tag after the MAC addresses. */
		uint16_t tci = (uint16_t)((ti->vlan & 7u) << 13 | (ti->vlan >> 3 & 1u) << 12 | (ti->vlan >> 4 & 0xFFFu));
		if (!H) {
			H = 12;
			if (!iov_copy(src, ns, base + ti->data_offset, hb, 12))
				return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		memmove(hb + 16, hb + 12, H - 12);
		hb[12] = 0x81;
		hb[13] = 0x00;
		hb[14] = (uint8_t)(tci >> 8);
		hb[15] = (uint8_t)tci;
		hb_len = H + 4;
		if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
			vh.csum_start += 4;
		if (vh.hdr_len)
			vh.hdr_len += 4;
	}
	struct iovec iov[NV_MAX_IOV + 1];
	int k = 0;
	if (hb_len)
		iov[k++] = (struct iovec){ hb, hb_len };
	int r = iov_slice(src, ns, base + ti->data_offset + H, len - H, iov + k, NV_MAX_IOV);
	if (r < 0)
		return NVSP_STAT_INVALID_RNDIS_PKT;
	k += r;
	int rc = nv->be->ops->send(nv->be, ch->idx % nv->be->nr_queues, &vh, iov, k);
	if (rc) {
		STAT_ADD(nv, tx_dropped, 1);
		return rc == -EMSGSIZE ? NVSP_STAT_INVALID_RNDIS_PKT : NVSP_STAT_SUCCESS;
	}
	STAT_ADD(nv, tx_packets, 1);
	STAT_ADD(nv, tx_bytes, len);
	return NVSP_STAT_SUCCESS;
}

/* Walks the RNDIS messages in a stream (a send-buffer section or GPA ranges). buf_lock read-held. */
static uint32_t rndis_stream(struct nv_chan *ch, const struct iovec *src, int ns, uint32_t total)
{
	struct netvsp *nv = ch->nv;
	uint32_t off = 0, count = 0;
	while (total - off >= 8) {
		uint8_t h[256];
		uint32_t hl = total - off < sizeof(h) ? total - off : (uint32_t)sizeof(h);
		if (!iov_copy(src, ns, off, h, hl))
			return NVSP_STAT_FAIL;
		uint32_t type, mlen;
		memcpy(&type, h, 4);
		memcpy(&mlen, h + 4, 4);
		if (mlen < 8 || mlen > total - off || ++count > 64) {
			log_guest("netvsp: RNDIS message length %u at %u of %u bytes", mlen, off, total);
			STAT_ADD(nv, bad_messages, 1);
			return NVSP_STAT_INVALID_RNDIS_PKT;
		}
		if (type == RNDIS_MSG_PACKET) {
			struct rndis_tx_info ti;
			if (rndis_packet_parse(h, hl < mlen ? hl : mlen, mlen, &ti)) {
				log_guest("netvsp: malformed RNDIS data message (%u bytes)", mlen);
				STAT_ADD(nv, bad_messages, 1);
				return NVSP_STAT_INVALID_RNDIS_PKT;
			}
			uint32_t st = tx_frame(ch, src, ns, off, &ti);
			if (st != NVSP_STAT_SUCCESS) {
				STAT_ADD(nv, bad_messages, 1);
				return st;
			}
		} else {
			if (mlen > NV_CTL_MAX || !iov_copy(src, ns, off, ch->ctl, mlen)) {
				log_guest("netvsp: RNDIS control message of %u bytes", mlen);
				STAT_ADD(nv, bad_messages, 1);
				return NVSP_STAT_INVALID_RNDIS_PKT;
			}
			uint8_t reply[RNDIS_CONTROL_REPLY_MAX];
			pthread_mutex_lock(&nv->lock);
			int n = rndis_control(&nv->rs, ch->ctl, mlen, reply, sizeof(reply));
			pthread_mutex_unlock(&nv->lock);
			if (n < 0) {
				STAT_ADD(nv, bad_messages, 1);
				return NVSP_STAT_INVALID_RNDIS_PKT;
			}
			if (n > 0)
				netvsp_rndis_ctl_send(ch, reply, (uint32_t)n);
		}
		off += mlen;
	}
	return NVSP_STAT_SUCCESS;
}

/* Builds iovecs over the GPA ranges of a GPA_DIRECT packet. Returns their count, or -1. */
static int gpa_ranges(struct netvsp *nv, const uint8_t *pkt, uint32_t hdr_end, struct iovec *iov, int max,
		      uint32_t *total)
{
	uint32_t rc;
	memcpy(&rc, pkt + 20, 4);
	uint32_t p = 24;
	int k = 0;
	uint64_t sum = 0;
	for (uint32_t r = 0; r < rc; r++) {
		uint32_t bc, bo;
		if (hdr_end - p < 8 || p > hdr_end)
			return -1;
		memcpy(&bc, pkt + p, 4);
		memcpy(&bo, pkt + p + 4, 4);
		p += 8;
		if (bo >= HV_PAGE_SIZE || !bc)
			return -1;
		uint64_t npfn = ((uint64_t)bo + bc + HV_PAGE_SIZE - 1) / HV_PAGE_SIZE;
		if (npfn > (hdr_end - p) / 8)
			return -1;
		uint32_t left = bc, in_off = bo;
		for (uint64_t i = 0; i < npfn; i++) {
			uint64_t pfn;
			memcpy(&pfn, pkt + p + 8 * i, 8);
			uint32_t c = HV_PAGE_SIZE - in_off;
			if (c > left)
				c = left;
			if (pfn > (UINT64_MAX >> 12))
				return -1;
			uint8_t *h = guest_mem_ptr(nv->cfg.mem, pfn * HV_PAGE_SIZE + in_off, c);
			if (!h)
				return -1;
			if (k && (uint8_t *)iov[k - 1].iov_base + iov[k - 1].iov_len == h) {
				iov[k - 1].iov_len += c;
			} else {
				if (k == max)
					return -1;
				iov[k++] = (struct iovec){ h, c };
			}
			left -= c;
			in_off = 0;
		}
		p += (uint32_t)npfn * 8;
		sum += bc;
	}
	if (sum > UINT32_MAX)
		return -1;
	*total = (uint32_t)sum;
	return k;
}

/* The send-section index and size (or the GPA ranges) are the guest's: each is checked before the
 * stream is read. */
uint32_t netvsp_tx_rndis_pkt(struct nv_chan *ch, const struct vmbus_packet_descriptor *d,
			     const struct nvsp_message *m, uint32_t plen, uint32_t hdr_end)
{
	struct netvsp *nv = ch->nv;
	uint32_t status = NVSP_STAT_FAIL;
	struct iovec src[NV_MAX_IOV];
	int ns = -1;
	uint32_t total = 0;
	pthread_rwlock_rdlock(&nv->buf_lock);
	uint32_t idx = m->u.rndis_pkt.send_buf_section_index, sz = m->u.rndis_pkt.send_buf_section_size;
	if (plen < 16) {
		log_guest("netvsp: short RNDIS_PKT");
	} else if (!nv->nvsp_version) {
		log_guest("netvsp: RNDIS_PKT before INIT");
	} else if (idx != NVSP_INVALID_SECTION) {
		if (!nv->sview.base || idx >= nv->ssec_n || !sz || sz > NV_SEND_SECTION) {
			log_guest("netvsp: send section %u (size %u) outside the send buffer (%u sections)", idx, sz,
				  nv->ssec_n);
		} else {
			src[0] = (struct iovec){ nv->sview.base + (size_t)idx * NV_SEND_SECTION, sz };
			ns = 1;
			total = sz;
		}
	} else if (d->type == VM_PKT_DATA_USING_GPA_DIRECT) {
		ns = gpa_ranges(nv, ch->pkt, hdr_end, src, NV_MAX_IOV, &total);
		if (ns < 0)
			log_guest("netvsp: GPA ranges malformed or outside guest RAM");
	} else {
		log_guest("netvsp: RNDIS_PKT with neither a send section nor GPA ranges");
	}
	if (ns > 0)
		status = rndis_stream(ch, src, ns, total);
	else
		STAT_ADD(nv, bad_messages, 1);
	pthread_rwlock_unlock(&nv->buf_lock);
	return status;
}

/* --- backend -> guest ------------------------------------------------------------------------------ */
static bool frame_wanted(const struct rndis_state *rs, const uint8_t *f)
{
	if (rs->filter & NDIS_PACKET_TYPE_PROMISCUOUS)
		return true;
	static const uint8_t bc[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	if (!memcmp(f, bc, 6))
		return rs->filter & NDIS_PACKET_TYPE_BROADCAST;
	if (f[0] & 1)
		return rs->filter & (NDIS_PACKET_TYPE_MULTICAST | NDIS_PACKET_TYPE_ALL_MULTICAST);
	return (rs->filter & NDIS_PACKET_TYPE_DIRECTED) && !memcmp(f, rs->cur_mac, 6);
}

/* Moves up to budget frames from backend queue q to the guest. buf_lock read-held. *stalled: the
 * guest holds every receive section; waiter (a worker, or NULL inline) is then kicked when one is
 * freed. */
uint32_t netvsp_rx_backend(struct netvsp *nv, uint32_t q, uint32_t budget, bool *stalled, struct nv_chan *waiter)
{
	struct nv_batch b[NET_BE_MAX_QUEUES];
	memset(b, 0, sizeof(b));
	uint32_t got = 0;
	pthread_mutex_lock(&nv->lock);
	uint32_t cap = (nv->guest_mtu > nv->rs.mtu ? nv->guest_mtu : nv->rs.mtu) + 18;
	/* One frame per section (see NETVSP_RECV_SECTION_SIZE): a frame larger than the section the
	 * guest was told of is dropped here rather than refused by the guest. */
	if (nv->rsecsz && cap > nv->rsecsz - RNDIS_RX_HEADER_MAX)
		cap = nv->rsecsz - RNDIS_RX_HEADER_MAX;
	uint32_t secsz = nv->rsecsz;
	pthread_mutex_unlock(&nv->lock);
	const uint32_t kmax = 1;
	*stalled = false;
	while (got < budget) {
		pthread_mutex_lock(&nv->lock);
		bool ready = nv->rview.base && nv->rs.initialized && nv->rs.filter && nv->rs.link_up;
		uint32_t start = 0;
		bool have = ready && netvsp_sec_alloc(nv, kmax, &start);
		if (ready && !have && waiter) /* under the lock that frees them: no wakeup is lost */
			nv->rx_waiters |= 1u << waiter->idx;
		pthread_mutex_unlock(&nv->lock);
		struct virtio_net_hdr vh;
		if (!ready) { /* nobody to take it: drop, as a NIC without a driver does */
			static __thread uint8_t sink[NET_FRAME_MAX];
			int n = nv->be->ops->recv(nv->be, q, &vh, sink, sizeof(sink));
			if (n == -EAGAIN)
				break;
			STAT_ADD(nv, rx_dropped, 1);
			continue;
		}
		if (!have) {
			*stalled = true; /* the guest holds every section: wait for completions */
			break;
		}
		uint8_t *sec = nv->rview.base + (size_t)start * secsz;
		uint8_t *f = sec + RNDIS_RX_HEADER_MAX;
		int n = nv->be->ops->recv(nv->be, q, &vh, f, cap);
		if (n == -EAGAIN) {
			pthread_mutex_lock(&nv->lock);
			netvsp_sec_free(nv, start, kmax);
			pthread_mutex_unlock(&nv->lock);
			break;
		}
		/* Other errors (a frame too big for us, a dead backend) drop one frame; the budget
		 * bounds the loop. */
		pthread_mutex_lock(&nv->lock);
		bool want = n >= 14 && frame_wanted(&nv->rs, f);
		uint32_t hash = 0, target = 0;
		struct rndis_rx_info ri = { .csum_ok = vh.flags & VIRTIO_NET_HDR_F_DATA_VALID };
		uint32_t len = n > 0 ? (uint32_t)n : 0;
		if (want && len >= 18 && f[12] == 0x81 && f[13] == 0x00) { /* tag into the PPI */
			ri.has_vlan = true;
			ri.vlan_tci = (uint16_t)(f[14] << 8 | f[15]);
			memmove(f + 4, f, 12);
			f += 4;
			len -= 4;
		}
		if (want) {
			target = rndis_rss_queue(&nv->rs, f, len, &hash);
			ri.has_hash = nv->rs.rss_enabled;
			ri.hash = hash;
		}
		uint32_t h = want ? rndis_rx_header(sec, 0, &ri) : 0; /* length only */
		uint32_t k = want ? 1 : 0;
		netvsp_sec_free(nv, start + k, kmax - k);
		pthread_mutex_unlock(&nv->lock);
		if (!want) {
			if (n < 0)
				STAT_ADD(nv, rx_dropped, 1);
			continue;
		}
		uint8_t *hp = f - h;
		rndis_rx_header(hp, len, &ri);
		if (target >= nv->max_queues || !nv->chans[target])
			target = q < nv->max_queues && nv->chans[q] ? q : 0;
		struct nv_batch *bt = &b[target];
		bt->start[bt->n] = start;
		bt->count[bt->n] = k;
		bt->off[bt->n] = (uint32_t)(hp - sec);
		bt->len[bt->n] = h + len;
		bt->n++;
		got++;
		STAT_ADD(nv, rx_packets, 1);
		STAT_ADD(nv, rx_bytes, len);
		if (bt->n == NV_BATCH) {
			if (!nv->chans[target] || !deliver(nv->chans[target], bt))
				STAT_ADD(nv, rx_dropped, bt->n);
			bt->n = 0;
		}
	}
	for (uint32_t t = 0; t < NET_BE_MAX_QUEUES; t++) {
		if (!b[t].n)
			continue;
		if (!nv->chans[t]) {
			pthread_mutex_lock(&nv->lock);
			netvsp_batch_free(nv, &b[t]);
			pthread_mutex_unlock(&nv->lock);
			STAT_ADD(nv, rx_dropped, b[t].n);
		} else if (!deliver(nv->chans[t], &b[t])) {
			STAT_ADD(nv, rx_dropped, b[t].n);
		}
	}
	return got;
}
