#include "devices/netvsp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/rndis.h"
#include "gen2vm/proto/netvsc.h"
#include "util/log.h"

#define NV_TXN_MAX 4096u          /* receive transactions (XFER_PAGES packets) the guest may hold */
#define NV_BATCH 8u               /* frames per XFER_PAGES packet */
#define NV_OWED_MAX 4u            /* host->guest packets held back by a full ring, per channel */
#define NV_TID_MAGIC 0x4E560000ull /* high half of our receive transaction ids */
#define NV_MAX_IOV 128
#define NV_CTL_MAX 4096u           /* largest RNDIS control message accepted */
#define NV_SEND_SECTION NETVSP_SEND_SECTION_SIZE
#define NV_RECV_SECTION NETVSP_RECV_SECTION_SIZE

struct nv_owed {
	uint16_t type, flags;
	uint64_t tid;
	uint32_t ext_len, len;
	uint8_t ext[16];
	uint8_t payload[NVSP_MESSAGE_SIZE];
};

/* Frames for one XFER_PAGES packet: runs of receive sections and the byte range used in each. */
struct nv_batch {
	uint32_t n;
	uint32_t chan_type;
	uint32_t start[NV_BATCH], count[NV_BATCH], off[NV_BATCH], len[NV_BATCH];
};

struct nv_chan {
	struct netvsp *nv;
	struct vmbus_channel *chan;
	uint32_t idx;
	pthread_mutex_t send_lock; /* host->guest ring writes, owed, pend */
	struct nv_owed owed[NV_OWED_MAX];
	uint32_t nowed;
	bool parked;          /* a receive transaction the full ring held back */
	uint32_t parked_slot;
	uint8_t *pkt;         /* one guest packet */
	uint32_t pkt_cap;
	uint8_t ctl[NV_CTL_MAX];
	pthread_t thr;
	bool has_thr;
	int efd; /* the worker's wakeup: rx_ready, close, and freed receive sections (rx_waiters) */
	bool stop; /* atomic */
	bool want_comp; /* the guest packet being handled asked for a completion */
};

struct nv_txn {
	bool used;
	bool parked; /* not yet sent to the guest: a completion for it is bogus */
	struct nv_batch b;
};

struct netvsp {
	struct vmbus_server *srv;
	struct vmbus_device *dev;
	struct netvsp_config cfg;
	struct net_backend *be;
	uint32_t max_queues;
	pthread_mutex_t lock;      /* rndis state, NVSP state, section allocator, transactions */
	pthread_rwlock_t buf_lock; /* write: buffers (un)mapped or a channel leaves chans[] */
	struct rndis_state rs;
	uint32_t nvsp_version;
	uint32_t guest_mtu; /* from NDIS_CONFIG: a guest may raise its MTU beyond what we announced */
	/* receive buffer */
	struct vmbus_gpadl *rgp;
	struct vmbus_view rview;
	uint32_t rsize, rsec_n, rhint;
	uint32_t rsecsz; /* section size announced for this receive buffer: one frame fits in one */
	uint16_t recv_id;
	uint8_t *rused;
	/* send buffer */
	struct vmbus_gpadl *sgp;
	struct vmbus_view sview;
	uint32_t ssize, ssec_n;
	struct nv_chan *chans[NET_BE_MAX_QUEUES];   /* active channels: they send and receive */
	struct nv_chan *pending[NET_BE_MAX_QUEUES]; /* opened, not yet active (see activate_pending) */
	struct nv_txn *txn;
	uint32_t *txn_free, txn_nfree;
	uint32_t rx_waiters; /* lock: workers whose backend queue stalled for want of receive sections */
	struct netvsp_stats st;
	bool admin_up; /* netvsp_set_link: the cable at our end */
	bool carrier;  /* the backend's carrier (the far end); the guest sees admin_up && carrier */
};

#define STAT_ADD(nv, f, v) __atomic_fetch_add(&(nv)->st.f, (v), __ATOMIC_RELAXED)

/* ------------------------------------------------------------------------------------------------ */
static void worker_kick(struct nv_chan *ch)
{
	uint64_t one = 1;
	if (write(ch->efd, &one, sizeof(one)) < 0) {
		/* counter saturated: the worker is awake anyway */
	}
}

/* --- receive sections and transactions (nv->lock held) ------------------------------------------- */
static bool sec_alloc(struct netvsp *nv, uint32_t k, uint32_t *start)
{
	if (!nv->rsec_n || !k || k > nv->rsec_n)
		return false;
	uint32_t n = nv->rsec_n, i = nv->rhint % n, scanned = 0;
	while (scanned < n + k) {
		if (i + k > n) { /* runs do not wrap */
			scanned += n - i;
			i = 0;
			continue;
		}
		uint32_t j = 0;
		while (j < k && !nv->rused[i + j])
			j++;
		if (j == k) {
			memset(nv->rused + i, 1, k);
			*start = i;
			nv->rhint = i + k;
			return true;
		}
		scanned += j + 1;
		i += j + 1;
		if (i >= n)
			i = 0;
	}
	return false;
}

/* Frees sections and wakes the workers that stalled waiting for some (nv->lock held). */
static void sec_free(struct netvsp *nv, uint32_t start, uint32_t k)
{
	if (nv->rused && start < nv->rsec_n && k <= nv->rsec_n - start)
		memset(nv->rused + start, 0, k);
	for (uint32_t w = nv->rx_waiters; k && w; w &= w - 1) {
		struct nv_chan *ch = nv->chans[__builtin_ctz(w)];
		if (ch && ch->has_thr)
			worker_kick(ch);
	}
	if (k)
		nv->rx_waiters = 0;
}

static void batch_free(struct netvsp *nv, const struct nv_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++)
		sec_free(nv, b->start[i], b->count[i]);
}

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
static void send_or_owe(struct nv_chan *ch, uint16_t type, uint16_t flags, uint64_t tid, const void *ext,
			uint32_t ext_len, const void *p, uint32_t len)
{
	if (!ch->nowed) {
		int rc = vmbus_channel_send(ch->chan, type, flags, tid, ext, ext_len, p, len);
		if (rc != -EAGAIN)
			return;
	}
	owe(ch, type, flags, tid, ext, ext_len, p, len);
}

/* Completes the guest packet being handled, if it asked for a completion (an unsolicited one would
 * name a transaction the guest is not waiting for). */
static void send_nvsp_comp(struct nv_chan *ch, uint64_t tid, const struct nvsp_message *m)
{
	if (!ch->want_comp)
		return;
	pthread_mutex_lock(&ch->send_lock);
	send_or_owe(ch, VM_PKT_COMP, 0, tid, NULL, 0, m, sizeof(*m));
	pthread_mutex_unlock(&ch->send_lock);
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
	pthread_mutex_lock(&nv->lock);
	if (!nv->txn_nfree) {
		batch_free(nv, b);
		pthread_mutex_unlock(&nv->lock);
		return false;
	}
	uint32_t slot = nv->txn_free[--nv->txn_nfree];
	nv->txn[slot].used = true;
	nv->txn[slot].b = *b;
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
		batch_free(nv, b);
		nv->txn[slot].used = false;
		nv->txn_free[nv->txn_nfree++] = slot;
		pthread_mutex_unlock(&nv->lock);
	}
	return ok;
}

/* send_lock held: retries what a full ring held back. Returns true when nothing is left. */
static bool flush_owed(struct nv_chan *ch)
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
static void send_rndis_ctl(struct nv_chan *ch, const void *msg, uint32_t len)
{
	struct netvsp *nv = ch->nv;
	pthread_mutex_lock(&nv->lock);
	uint32_t k = nv->rsecsz ? (len + nv->rsecsz - 1) / nv->rsecsz : 0, start;
	bool ok = nv->rview.base && sec_alloc(nv, k, &start);
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
				send_rndis_ctl(ch, reply, (uint32_t)n);
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

/* --- NVSP control -------------------------------------------------------------------------------- */
static bool version_ok(uint32_t v)
{
	return v == NVSP_PROTOCOL_VERSION_2 || v == NVSP_PROTOCOL_VERSION_4 || v == NVSP_PROTOCOL_VERSION_5 ||
	       v == NVSP_PROTOCOL_VERSION_6 || v == NVSP_PROTOCOL_VERSION_61;
}

/* Maps a buffer GPADL (one range at offset 0, as netvsc makes them). Any of our threads. */
static int map_buffer(struct nv_chan *ch, uint32_t gpadl_id, struct vmbus_gpadl **gp, struct vmbus_view *v,
		      uint32_t *size)
{
	struct vmbus_gpadl *g = vmbus_channel_gpadl_acquire(ch->chan, gpadl_id);
	if (!g)
		return -ENOENT;
	if (g->nr_ranges != 1 || g->ranges[0].byte_offset || g->ranges[0].byte_count < HV_PAGE_SIZE) {
		vmbus_channel_gpadl_release(ch->chan, g);
		return -EINVAL;
	}
	int rc = vmbus_view_map(v, ch->nv->cfg.mem, g->pfns, g->nr_pfns, g->nr_pfns);
	if (rc) {
		vmbus_channel_gpadl_release(ch->chan, g);
		return rc;
	}
	*gp = g;
	*size = g->ranges[0].byte_count;
	return 0;
}

/* Drops a buffer: caller holds buf_lock for writing. The GPADL's TORNDOWN, if the guest asked for it
 * already, is sent by the server after the release. */
static void unmap_recv(struct netvsp *nv, struct vmbus_channel *c)
{
	if (!nv->rgp)
		return;
	vmbus_view_unmap(&nv->rview);
	vmbus_channel_gpadl_release(c, nv->rgp);
	nv->rgp = NULL;
	free(nv->rused);
	nv->rused = NULL;
	nv->rsec_n = nv->rsize = 0;
}

static void unmap_send(struct netvsp *nv, struct vmbus_channel *c)
{
	if (!nv->sgp)
		return;
	vmbus_view_unmap(&nv->sview);
	vmbus_channel_gpadl_release(c, nv->sgp);
	nv->sgp = NULL;
	nv->ssec_n = nv->ssize = 0;
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
		int rc = map_buffer(ch, m->u.send_buf.gpadl_handle, &g, &v, &size);
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
		unmap_recv(nv, ch->chan);
	else
		unmap_send(nv, ch->chan);
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
	batch_free(nv, &nv->txn[slot].b);
	nv->txn[slot].used = false;
	nv->txn_free[nv->txn_nfree++] = slot;
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
		if (plen < 12 || ch->idx || !version_ok(v) || m.u.init.min_protocol_ver > v) {
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
		uint32_t status = NVSP_STAT_FAIL;
		struct iovec src[NV_MAX_IOV];
		int ns = -1;
		uint32_t total = 0;
		pthread_rwlock_rdlock(&nv->buf_lock);
		uint32_t idx = m.u.rndis_pkt.send_buf_section_index, sz = m.u.rndis_pkt.send_buf_section_size;
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
		r.u.rndis_pkt_complete.status = status;
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
static void service_guest(struct nv_chan *ch)
{
	struct vmbus_ring *rx = vmbus_channel_rx_ring(ch->chan);
	pthread_mutex_lock(&ch->send_lock);
	bool clear = flush_owed(ch);
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
static uint32_t rx_backend(struct netvsp *nv, uint32_t q, uint32_t budget, bool *stalled, struct nv_chan *waiter)
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
		bool have = ready && sec_alloc(nv, kmax, &start);
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
			sec_free(nv, start, kmax);
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
		sec_free(nv, start + k, kmax - k);
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
			batch_free(nv, &b[t]);
			pthread_mutex_unlock(&nv->lock);
			STAT_ADD(nv, rx_dropped, b[t].n);
		} else if (!deliver(nv->chans[t], &b[t])) {
			STAT_ADD(nv, rx_dropped, b[t].n);
		}
	}
	return got;
}

static void activate_pending(struct netvsp *nv);
static void carrier_check(struct netvsp *nv);

uint32_t netvsp_poll(struct netvsp *nv, uint32_t budget)
{
	uint32_t got = 0;
	carrier_check(nv);
	activate_pending(nv);
	pthread_rwlock_rdlock(&nv->buf_lock);
	for (uint32_t i = 0; i < nv->max_queues; i++) {
		struct nv_chan *ch = nv->chans[i];
		if (ch) {
			pthread_mutex_lock(&ch->send_lock);
			flush_owed(ch);
			pthread_mutex_unlock(&ch->send_lock);
		}
	}
	for (uint32_t q = 0; q < nv->be->nr_queues && got < budget; q++) {
		bool stalled;
		got += rx_backend(nv, q, budget - got, &stalled, NULL);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
	return got;
}

/* Backend queue q is served by channel q's worker; the primary's worker also serves the queues whose
 * channel the guest has not opened (a guest that uses fewer channels than the tap has queues), so no
 * queue is left unread.
 *
 * The worker sleeps in poll without a timeout; every reason to run again is an event on an fd:
 *  - the guest signalled (rx_ready kicks efd): packets to read, or room made in a host->guest ring
 *    that held packets back (owed, parked: the ring's pending_send_sz makes the guest signal);
 *  - a backend queue has frames (its rx_fd);
 *  - receive sections were freed after this worker's queue stalled for want of them (sec_free
 *    kicks efd), or close stops it (efd).
 * The backend's carrier changes only inside its send and recv calls, which are made here: it is
 * looked at after each round, before sleeping. */
static void *worker(void *arg)
{
	struct nv_chan *ch = arg;
	struct netvsp *nv = ch->nv;
	uint32_t nq = nv->be->nr_queues;
	while (!__atomic_load_n(&ch->stop, __ATOMIC_ACQUIRE)) {
		service_guest(ch);
		struct pollfd p[1 + NET_BE_MAX_QUEUES] = { { .fd = ch->efd, .events = POLLIN } };
		nfds_t np = 1;
		pthread_rwlock_rdlock(&nv->buf_lock);
		for (uint32_t q = 0; q < nq; q++) {
			if (q != ch->idx && (ch->idx != 0 || (q < nv->max_queues && nv->chans[q])))
				continue;
			bool st = false;
			rx_backend(nv, q, 256, &st, ch);
			if (!st) /* stalled: sec_free wakes us, not the queue (it stays readable) */
				p[np++] = (struct pollfd){ .fd = nv->be->ops->rx_fd(nv->be, q), .events = POLLIN };
		}
		pthread_rwlock_unlock(&nv->buf_lock);
		carrier_check(nv);
		if (poll(p, np, -1) > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;
			if (read(ch->efd, &v, sizeof(v)) < 0) {
				/* another wakeup already took it */
			}
		}
	}
	return NULL;
}

/* --- VMBus device callbacks ------------------------------------------------------------------------ */
static void chan_free(struct nv_chan *ch)
{
	if (ch->efd >= 0)
		close(ch->efd);
	pthread_mutex_destroy(&ch->send_lock);
	free(ch->pkt);
	free(ch);
}

static int nv_open(void *ctx, struct vmbus_channel *chan)
{
	struct netvsp *nv = ctx;
	uint16_t idx = vmbus_channel_subchannel_index(chan);
	if (idx >= nv->max_queues || nv->chans[idx] || nv->pending[idx])
		return -EINVAL;
	struct nv_chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->nv = nv;
	ch->chan = chan;
	ch->idx = idx;
	ch->efd = -1;
	pthread_mutex_init(&ch->send_lock, NULL);
	ch->pkt_cap = vmbus_channel_rx_ring(chan)->size;
	ch->pkt = malloc(ch->pkt_cap);
	if (!ch->pkt) {
		chan_free(ch);
		return -ENOMEM;
	}
	vmbus_channel_set_priv(chan, ch);
	nv->pending[idx] = ch;
	__atomic_fetch_add(&nv->st.channels_open, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Channels become active (worker started, eligible for received frames) at the first server call
 * after their open completed, never inside open(): nothing may reach the guest on a channel before
 * its OPEN_RESULT, and the server finishes the open after our callback returns. Server lock held. */
static void activate_pending(struct netvsp *nv)
{
	for (uint32_t i = 0; i < nv->max_queues; i++) {
		struct nv_chan *ch = nv->pending[i];
		if (!ch)
			continue;
		if (nv->cfg.threaded) {
			if (ch->efd < 0)
				ch->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			if (ch->efd < 0 || pthread_create(&ch->thr, NULL, worker, ch)) {
				log_error("netvsp: cannot start the worker of channel %u (retrying)", i);
				continue;
			}
			ch->has_thr = true;
		}
		pthread_rwlock_wrlock(&nv->buf_lock);
		nv->chans[i] = ch;
		nv->pending[i] = NULL;
		pthread_rwlock_unlock(&nv->buf_lock);
	}
}

static void nv_close(void *ctx, struct vmbus_channel *chan)
{
	struct netvsp *nv = ctx;
	struct nv_chan *ch = vmbus_channel_priv(chan);
	if (!ch)
		return;
	if (ch->has_thr) {
		/* The worker waits for no lock we hold (the server's is not its business): it sees stop
		 * at its next wakeup, which this is. */
		__atomic_store_n(&ch->stop, true, __ATOMIC_RELEASE);
		worker_kick(ch);
		pthread_join(ch->thr, NULL);
	}
	pthread_rwlock_wrlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	nv->chans[ch->idx] = NULL;
	nv->pending[ch->idx] = NULL;
	nv->rx_waiters &= ~(1u << ch->idx);
	if (ch->parked) { /* the parked transaction never reached the guest */
		uint32_t slot = ch->parked_slot;
		batch_free(nv, &nv->txn[slot].b);
		nv->txn[slot].used = false;
		nv->txn[slot].parked = false;
		nv->txn_free[nv->txn_nfree++] = slot;
	}
	if (ch->idx == 0) {
		/* The guest is gone: its buffers, sections, transactions and RNDIS state with it. */
		unmap_recv(nv, chan);
		unmap_send(nv, chan);
		nv->txn_nfree = 0;
		for (uint32_t i = 0; i < NV_TXN_MAX; i++) {
			nv->txn[i].used = nv->txn[i].parked = false;
			nv->txn_free[nv->txn_nfree++] = NV_TXN_MAX - 1 - i;
		}
		nv->nvsp_version = 0;
		nv->guest_mtu = 0;
		struct rndis_state fresh;
		rndis_state_init(&fresh, nv->cfg.mac);
		fresh.mtu = nv->rs.mtu;
		fresh.max_queues = nv->rs.max_queues;
		fresh.link_up = nv->rs.link_up;
		fresh.offload_tx_csum = nv->rs.offload_tx_csum;
		fresh.offload_lso = nv->rs.offload_lso;
		nv->rs = fresh;
	}
	pthread_mutex_unlock(&nv->lock);
	pthread_rwlock_unlock(&nv->buf_lock);
	vmbus_channel_set_priv(chan, NULL);
	chan_free(ch);
	__atomic_fetch_sub(&nv->st.channels_open, 1, __ATOMIC_RELAXED);
}

static void nv_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct nv_chan *ch = vmbus_channel_priv(chan);
	if (!ch)
		return;
	activate_pending(ctx);
	if (ch->has_thr) {
		worker_kick(ch);
		return;
	}
	pthread_rwlock_rdlock(&ch->nv->buf_lock);
	pthread_mutex_lock(&ch->send_lock);
	flush_owed(ch);
	pthread_mutex_unlock(&ch->send_lock);
	pthread_rwlock_unlock(&ch->nv->buf_lock);
	service_guest(ch);
}

static const struct vmbus_device_ops nv_ops = {
	.open = nv_open,
	.close = nv_close,
	.rx_ready = nv_rx_ready,
};

int netvsp_create(struct vmbus_server *srv, const struct netvsp_config *cfg, struct netvsp **out)
{
	if (!cfg->mem || !cfg->backend || (cfg->mtu && (cfg->mtu < 576 || cfg->mtu > 9000)))
		return -EINVAL;
	struct netvsp *nv = calloc(1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	nv->txn = calloc(NV_TXN_MAX, sizeof(*nv->txn));
	nv->txn_free = calloc(NV_TXN_MAX, sizeof(uint32_t));
	if (!nv->txn || !nv->txn_free) {
		free(nv->txn);
		free(nv->txn_free);
		free(nv);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < NV_TXN_MAX; i++)
		nv->txn_free[nv->txn_nfree++] = NV_TXN_MAX - 1 - i;
	nv->srv = srv;
	nv->cfg = *cfg;
	nv->be = cfg->backend;
	nv->max_queues = cfg->max_queues ? cfg->max_queues : cfg->backend->nr_queues;
	if (nv->max_queues > NET_BE_MAX_QUEUES)
		nv->max_queues = NET_BE_MAX_QUEUES;
	pthread_mutex_init(&nv->lock, NULL);
	pthread_rwlock_init(&nv->buf_lock, NULL);
	rndis_state_init(&nv->rs, cfg->mac);
	nv->rs.mtu = cfg->mtu ? cfg->mtu : 1500;
	nv->admin_up = true;
	nv->carrier = !cfg->backend->ops->carrier || cfg->backend->ops->carrier(cfg->backend);
	nv->rs.link_up = nv->carrier;
	nv->rs.max_queues = nv->max_queues;
	nv->rs.offload_tx_csum = cfg->backend->caps & NET_BE_CAP_CSUM;
	nv->rs.offload_lso = cfg->backend->caps & NET_BE_CAP_TSO;
	struct vmbus_device_desc d = {
		.name = "netvsp",
		.instance_id = VMBUS_GUID(0x6e657400u + cfg->instance, 0x7673, 0x4e70, 0x8e, 0x31, 0x67, 0x65, 0x6e,
					  0x32, 0x76, 0x6d),
		.max_subchannels = (uint16_t)(nv->max_queues - 1),
		.ops = &nv_ops,
		.ctx = nv,
	};
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &d.class_id);
	int rc = vmbus_server_device_add(srv, &d, &nv->dev);
	if (rc) {
		pthread_mutex_destroy(&nv->lock);
		pthread_rwlock_destroy(&nv->buf_lock);
		free(nv->txn);
		free(nv->txn_free);
		free(nv);
		return rc;
	}
	*out = nv;
	return 0;
}

void netvsp_destroy(struct netvsp *nv)
{
	if (!nv)
		return;
	vmbus_server_device_remove(nv->srv, nv->dev); /* closes channels: workers stop, buffers released */
	net_backend_destroy(nv->be);
	pthread_mutex_destroy(&nv->lock);
	pthread_rwlock_destroy(&nv->buf_lock);
	free(nv->txn);
	free(nv->txn_free);
	free(nv);
}

/* Shows the guest admin_up && carrier, with an indication when that changed. No locks held. */
static void link_apply(struct netvsp *nv)
{
	pthread_rwlock_rdlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	bool up = nv->admin_up && nv->carrier;
	bool changed = nv->rs.link_up != up;
	nv->rs.link_up = up;
	bool tell = changed && nv->rs.initialized && nv->rview.base && nv->chans[0];
	pthread_mutex_unlock(&nv->lock);
	if (tell) {
		uint8_t msg[32];
		uint32_t n = rndis_indicate(msg, up ? RNDIS_STATUS_MEDIA_CONNECT : RNDIS_STATUS_MEDIA_DISCONNECT, NULL);
		send_rndis_ctl(nv->chans[0], msg, n);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
}

void netvsp_set_link(struct netvsp *nv, bool up)
{
	pthread_mutex_lock(&nv->lock);
	nv->admin_up = up;
	pthread_mutex_unlock(&nv->lock);
	link_apply(nv);
}

/* Follows the backend's carrier (a pair whose peer came or went). No locks held. */
static void carrier_check(struct netvsp *nv)
{
	if (!nv->be->ops->carrier)
		return;
	bool c = nv->be->ops->carrier(nv->be);
	if (c == __atomic_load_n(&nv->carrier, __ATOMIC_RELAXED))
		return; /* the common case, on every worker wakeup: no lock */
	pthread_mutex_lock(&nv->lock);
	bool changed = c != nv->carrier;
	__atomic_store_n(&nv->carrier, c, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&nv->lock);
	if (changed)
		link_apply(nv);
}

void netvsp_set_link_speed(struct netvsp *nv, uint64_t bps)
{
	pthread_rwlock_rdlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	bool changed = nv->rs.link_speed_bps != bps;
	nv->rs.link_speed_bps = bps;
	bool tell = changed && nv->rs.initialized && nv->rview.base && nv->chans[0];
	pthread_mutex_unlock(&nv->lock);
	if (tell) {
		uint8_t msg[32];
		uint32_t units = bps / 100 > UINT32_MAX ? UINT32_MAX : (uint32_t)(bps / 100); /* 100 bit/s */
		uint32_t n = rndis_indicate(msg, RNDIS_STATUS_LINK_SPEED_CHANGE, &units);
		send_rndis_ctl(nv->chans[0], msg, n);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
}

void netvsp_get_stats(struct netvsp *nv, struct netvsp_stats *st)
{
	pthread_mutex_lock(&nv->lock);
	*st = nv->st;
	st->nvsp_version = nv->nvsp_version;
	st->rss_enabled = nv->rs.rss_enabled;
	st->link_up = nv->rs.link_up;
	pthread_mutex_unlock(&nv->lock);
}
