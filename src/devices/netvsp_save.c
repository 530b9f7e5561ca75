/* netvsp saved state: holding the workers for a save, the adapter's state out (struct savestate_netvsp
 * and what follows it, proto/savestate.h) and back in on a new adapter over the same guest. The
 * restore checks every field of the file (host input) before it takes anything: the buffers' GPADLs
 * must be the primary channel's, every receive section held once, every owed completion well formed.
 * Contracts: netvsp.h; lock rules: netvsp_priv.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/netvsp_priv.h"
#include "gen2vm/proto/savestate.h"

_Static_assert(SAVESTATE_NETVSP_BATCH == NV_BATCH, "a saved transaction is a batch");
_Static_assert(sizeof(((struct savestate_netvsp_owed *)0)->payload) == NVSP_MESSAGE_SIZE, "owed payload");
_Static_assert(sizeof(((struct savestate_netvsp_owed *)0)->ext) == sizeof(((struct nv_owed *)0)->ext), "owed ext");
_Static_assert(sizeof(((struct savestate_netvsp *)0)->offload) == sizeof(struct ndis_offload_params), "offload");
_Static_assert(sizeof(((struct savestate_netvsp *)0)->rss_key) == RNDIS_RSS_KEY_MAX, "rss key");
_Static_assert(sizeof(((struct savestate_netvsp *)0)->rss_itab) == RNDIS_RSS_ITAB_MAX * sizeof(uint16_t), "itab");

/* ---- holding the workers ---- */

/* The workers now running: nv->lock held. */
static uint32_t hold_workers(struct netvsp *nv)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < nv->max_queues; i++)
		if (nv->chans[i] && nv->chans[i]->has_thr) {
			netvsp_worker_kick(nv->chans[i]);
			n++;
		}
	return n;
}

int netvsp_hold(struct netvsp *nv, unsigned timeout_ms)
{
	pthread_mutex_lock(&nv->hold_lock);
	__atomic_store_n(&nv->hold, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&nv->hold_lock);
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	for (;;) {
		/* Counted again each time: a channel the guest opened just before its vCPUs stopped may
		 * start its worker meanwhile (it holds at once). */
		pthread_mutex_lock(&nv->lock);
		uint32_t want = hold_workers(nv);
		pthread_mutex_unlock(&nv->lock);
		pthread_mutex_lock(&nv->hold_lock);
		bool all = nv->held >= want;
		pthread_mutex_unlock(&nv->hold_lock);
		if (all)
			return 0;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
			netvsp_release(nv);
			return -EBUSY;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 2000000L }, NULL);
	}
}

void netvsp_release(struct netvsp *nv)
{
	pthread_mutex_lock(&nv->hold_lock);
	__atomic_store_n(&nv->hold, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&nv->hold_cond);
	pthread_mutex_unlock(&nv->hold_lock);
}

/* ---- saving ---- */

/* An open channel of the adapter by sub-channel index: active or not yet (its open came last). */
static struct nv_chan *chan_at(struct netvsp *nv, uint32_t idx)
{
	return idx >= nv->max_queues ? NULL : nv->chans[idx] ? nv->chans[idx] : nv->pending[idx];
}

static int put(uint8_t **buf, size_t *len, const void *p, size_t n)
{
	uint8_t *b = realloc(*buf, *len + n);
	if (!b)
		return -ENOMEM;
	memcpy(b + *len, p, n);
	*buf = b;
	*len += n;
	return 0;
}

int netvsp_save(struct netvsp *nv, uint32_t slot, uint8_t **buf, size_t *len)
{
	struct savestate_netvsp h = { .slot = slot, .max_queues = nv->max_queues };
	int r = 0;
	pthread_rwlock_rdlock(&nv->buf_lock);
	/* The completions each channel owes (send_lock before nv->lock). */
	struct savestate_netvsp_owed owed[NET_BE_MAX_QUEUES][NV_OWED_MAX];
	uint32_t nowed[NET_BE_MAX_QUEUES] = { 0 };
	for (uint32_t i = 0; i < nv->max_queues; i++) {
		struct nv_chan *ch = chan_at(nv, i);
		if (!ch)
			continue;
		h.nr_chans++;
		pthread_mutex_lock(&ch->send_lock);
		for (uint32_t k = 0; k < ch->nowed; k++) {
			const struct nv_owed *o = &ch->owed[k];
			owed[i][k] = (struct savestate_netvsp_owed){ .type = o->type, .flags = o->flags, .ext_len = o->ext_len,
								     .len = o->len, .tid = o->tid };
			memcpy(owed[i][k].ext, o->ext, sizeof(o->ext));
			memcpy(owed[i][k].payload, o->payload, sizeof(owed[i][k].payload));
		}
		nowed[i] = ch->nowed;
		pthread_mutex_unlock(&ch->send_lock);
	}
	pthread_mutex_lock(&nv->lock);
	const struct rndis_state *rs = &nv->rs;
	memcpy(h.mac, nv->cfg.mac, 6);
	h.admin_up = nv->admin_up;
	h.link_up = rs->link_up;
	h.nvsp_version = nv->nvsp_version;
	h.guest_mtu = nv->guest_mtu;
	h.link_speed_bps = rs->link_speed_bps;
	h.initialized = rs->initialized;
	h.tx_csum_v4 = rs->tx_csum_v4;
	h.tx_csum_v6 = rs->tx_csum_v6;
	h.lso_v4 = rs->lso_v4;
	h.lso_v6 = rs->lso_v6;
	h.rss_enabled = rs->rss_enabled;
	h.version_ok = rs->version_ok != 0;
	memcpy(h.cur_mac, rs->cur_mac, 6);
	h.filter = rs->filter;
	h.mcast_count = rs->mcast_count;
	memcpy(h.offload, &rs->offload, sizeof(h.offload));
	h.rss_hashinfo = rs->rss_hashinfo;
	h.rss_key_len = rs->rss_key_len;
	h.rss_itab_len = rs->rss_itab_len;
	memcpy(h.rss_key, rs->rss_key, sizeof(h.rss_key));
	memcpy(h.rss_itab, rs->rss_itab, sizeof(h.rss_itab));
	if (nv->rgp) {
		h.recv_gpadl = nv->rgp->id;
		h.recv_size = nv->rsize;
		h.recv_section_size = nv->rsecsz;
		h.recv_id = nv->recv_id;
	}
	if (nv->sgp) {
		h.send_gpadl = nv->sgp->id;
		h.send_size = nv->ssize;
	}
	/* The transactions the guest holds; parked ones never reached it and are dropped. */
	for (uint32_t i = 0; i < NV_TXN_MAX; i++)
		h.nr_txns += nv->txn[i].used && !nv->txn[i].parked;
	r = put(buf, len, &h, sizeof(h));
	for (uint32_t i = 0; i < NV_TXN_MAX && !r; i++) {
		const struct nv_txn *t = &nv->txn[i];
		if (!t->used || t->parked)
			continue;
		struct savestate_netvsp_txn st = { .slot = i, .nr_frames = t->b.n };
		memcpy(st.start, t->b.start, sizeof(st.start));
		memcpy(st.count, t->b.count, sizeof(st.count));
		r = put(buf, len, &st, sizeof(st));
	}
	pthread_mutex_unlock(&nv->lock);
	pthread_rwlock_unlock(&nv->buf_lock);
	for (uint32_t i = 0; i < nv->max_queues && !r; i++) {
		if (!chan_at(nv, i))
			continue;
		struct savestate_netvsp_chan sc = { .index = i, .nr_owed = nowed[i] };
		r = put(buf, len, &sc, sizeof(sc));
		for (uint32_t k = 0; k < nowed[i] && !r; k++)
			r = put(buf, len, &owed[i][k], sizeof(owed[i][k]));
	}
	return r;
}

/* ---- restoring ---- */

static int fail(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "bad state: %s", why);
	return -EINVAL;
}

/* The header's own fields (no buffers, no channels yet): NULL when they fit nv, else why not. */
static const char *check_header(const struct netvsp *nv, uint32_t slot, const struct savestate_netvsp *h)
{
	if (h->slot != slot || h->max_queues != nv->max_queues || memcmp(h->mac, nv->cfg.mac, 6))
		return "saved from another adapter (its number, channels or MAC differ)";
	if (h->admin_up > 1 || h->link_up > 1 || h->initialized > 1 || h->tx_csum_v4 > 1 || h->tx_csum_v6 > 1 ||
	    h->lso_v4 > 1 || h->lso_v6 > 1 || h->rss_enabled > 1 || h->version_ok > 1 || h->reserved0 || h->reserved1 ||
	    h->reserved2)
		return "a flag out of range";
	if ((h->nvsp_version && !netvsp_version_ok(h->nvsp_version)) || h->guest_mtu > 9000)
		return "an NVSP version or MTU the adapter does not take";
	if ((h->lso_v4 || h->lso_v6) && !nv->rs.offload_lso)
		return "LSO the adapter's backend cannot do";
	uint32_t n = h->rss_itab_len;
	if (h->rss_key_len != RNDIS_RSS_KEY_MAX || n > RNDIS_RSS_ITAB_MAX || (n & (n - 1)) ||
	    (h->rss_enabled && (!n || nv->max_queues < 2)))
		return "bad RSS parameters";
	for (uint32_t i = 0; i < n; i++)
		if (h->rss_itab[i] >= nv->max_queues)
			return "an RSS table entry past the adapter's channels";
	if (h->nr_txns > NV_TXN_MAX || h->nr_chans > nv->max_queues)
		return "too many transactions or channels";
	if (!h->nvsp_version && (h->recv_gpadl || h->send_gpadl))
		return "buffers before NVSP INIT";
	if ((!h->recv_gpadl && (h->recv_size || h->recv_section_size || h->recv_id || h->nr_txns)) ||
	    (!h->send_gpadl && h->send_size))
		return "a buffer's fields without its GPADL";
	return NULL;
}

/* The largest receive section the adapter announces (a 9000-byte MTU: see nvsp_buffer). */
#define NV_RECV_SECTION_MAX ((RNDIS_RX_HEADER_MAX + 9000u + 18u + 63u) & ~63u)

int netvsp_restore(struct netvsp *nv, uint32_t slot, const uint8_t *buf, size_t len, size_t *used, char *err,
		   size_t errlen)
{
	struct savestate_netvsp h;
	if (len < sizeof(h))
		return fail(err, errlen, "truncated");
	memcpy(&h, buf, sizeof(h));
	if (nv->rgp || nv->sgp || nv->nvsp_version)
		return fail(err, errlen, "the adapter is in use already (a state is restored into a new one)");
	const char *why = check_header(nv, slot, &h);
	if (why)
		return fail(err, errlen, why);
	size_t off = sizeof(h);
	if ((len - off) / sizeof(struct savestate_netvsp_txn) < h.nr_txns)
		return fail(err, errlen, "truncated transactions");
	const uint8_t *txns = buf + off;
	off += (size_t)h.nr_txns * sizeof(struct savestate_netvsp_txn);
	/* The channels and what they owe: checked before anything is taken. */
	size_t chans_off = off;
	bool seen[NET_BE_MAX_QUEUES] = { false };
	for (uint32_t c = 0; c < h.nr_chans; c++) {
		struct savestate_netvsp_chan sc;
		if (len - off < sizeof(sc))
			return fail(err, errlen, "truncated channels");
		memcpy(&sc, buf + off, sizeof(sc));
		off += sizeof(sc);
		if (sc.index >= nv->max_queues || seen[sc.index] || !chan_at(nv, sc.index) || sc.nr_owed > NV_OWED_MAX)
			return fail(err, errlen, "a channel that is not open, or twice");
		seen[sc.index] = true;
		if ((len - off) / sizeof(struct savestate_netvsp_owed) < sc.nr_owed)
			return fail(err, errlen, "truncated completions");
		for (uint32_t k = 0; k < sc.nr_owed; k++) {
			struct savestate_netvsp_owed o;
			memcpy(&o, buf + off, sizeof(o));
			off += sizeof(o);
			if (o.type != VM_PKT_COMP || o.flags || o.reserved || o.ext_len > sizeof(o.ext) || !o.len ||
			    o.len > sizeof(o.payload))
				return fail(err, errlen, "a malformed completion");
		}
	}
	struct nv_chan *ch0 = chan_at(nv, 0);
	if ((h.recv_gpadl || h.send_gpadl) && !ch0)
		return fail(err, errlen, "buffers without the primary channel open");
	/* The buffers, mapped as the guest's messages map them, then checked against the state. */
	struct vmbus_gpadl *rg = NULL, *sg = NULL;
	struct vmbus_view rv = { 0 }, sv = { 0 };
	uint32_t rsize = 0, ssize = 0, rsec_n = 0;
	uint8_t *rused = NULL;
	int r = 0;
	why = NULL;
	if (h.recv_gpadl) {
		if ((r = netvsp_buffer_map(ch0, h.recv_gpadl, &rg, &rv, &rsize)))
			why = "the receive buffer's GPADL is not the primary channel's";
		else if (rsize != h.recv_size || h.recv_section_size < NV_RECV_SECTION ||
			 h.recv_section_size > NV_RECV_SECTION_MAX || h.recv_section_size % 64 ||
			 (rsec_n = rsize / h.recv_section_size) < 2)
			why = "the receive buffer does not fit its GPADL";
		else if (!(rused = calloc(rsec_n, 1)))
			why = "out of memory";
	}
	if (!why && h.send_gpadl) {
		if ((r = netvsp_buffer_map(ch0, h.send_gpadl, &sg, &sv, &ssize)))
			why = "the send buffer's GPADL is not the primary channel's";
		else if (ssize != h.send_size || ssize / NV_SEND_SECTION < 2)
			why = "the send buffer does not fit its GPADL";
	}
	/* Every transaction's sections inside the buffer, each held by one transaction only. */
	bool slot_used[NV_TXN_MAX];
	memset(slot_used, 0, sizeof(slot_used));
	for (uint32_t t = 0; t < h.nr_txns && !why; t++) {
		struct savestate_netvsp_txn st;
		memcpy(&st, txns + (size_t)t * sizeof(st), sizeof(st));
		if (st.slot >= NV_TXN_MAX || slot_used[st.slot] || !st.nr_frames || st.nr_frames > NV_BATCH) {
			why = "a bad receive transaction";
			break;
		}
		slot_used[st.slot] = true;
		for (uint32_t i = 0; i < st.nr_frames && !why; i++) {
			if (st.start[i] >= rsec_n || !st.count[i] || st.count[i] > rsec_n - st.start[i]) {
				why = "a receive transaction outside the buffer";
				break;
			}
			for (uint32_t k = 0; k < st.count[i]; k++)
				if (rused[st.start[i] + k]++) {
					why = "a receive section held twice";
					break;
				}
		}
	}
	if (why) {
		if (rg) {
			vmbus_view_unmap(&rv);
			vmbus_channel_gpadl_release(ch0->chan, rg);
		}
		if (sg) {
			vmbus_view_unmap(&sv);
			vmbus_channel_gpadl_release(ch0->chan, sg);
		}
		free(rused);
		return fail(err, errlen, why);
	}

	/* Taken. */
	pthread_rwlock_wrlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	struct rndis_state *rs = &nv->rs;
	nv->nvsp_version = h.nvsp_version;
	rs->nvsp_version = h.nvsp_version;
	nv->guest_mtu = h.guest_mtu;
	nv->admin_up = h.admin_up;
	rs->link_up = h.link_up;
	rs->link_speed_bps = h.link_speed_bps;
	rs->initialized = h.initialized;
	rs->tx_csum_v4 = h.tx_csum_v4;
	rs->tx_csum_v6 = h.tx_csum_v6;
	rs->lso_v4 = h.lso_v4;
	rs->lso_v6 = h.lso_v6;
	rs->rss_enabled = h.rss_enabled;
	rs->version_ok = h.version_ok;
	memcpy(rs->cur_mac, h.cur_mac, 6);
	rs->filter = h.filter;
	rs->mcast_count = h.mcast_count;
	memcpy(&rs->offload, h.offload, sizeof(rs->offload));
	rs->rss_hashinfo = h.rss_hashinfo;
	rs->rss_key_len = h.rss_key_len;
	rs->rss_itab_len = h.rss_itab_len;
	memcpy(rs->rss_key, h.rss_key, sizeof(rs->rss_key));
	memcpy(rs->rss_itab, h.rss_itab, sizeof(rs->rss_itab));
	if (rg) {
		nv->rgp = rg;
		nv->rview = rv;
		nv->rsize = rsize;
		nv->rsecsz = h.recv_section_size;
		nv->rsec_n = rsec_n;
		nv->rused = rused;
		nv->rhint = 0;
		nv->recv_id = h.recv_id;
	}
	if (sg) {
		nv->sgp = sg;
		nv->sview = sv;
		nv->ssize = ssize;
		nv->ssec_n = ssize / NV_SEND_SECTION;
	}
	netvsp_txn_reset(nv);
	for (uint32_t t = 0; t < h.nr_txns; t++) {
		struct savestate_netvsp_txn st;
		memcpy(&st, txns + (size_t)t * sizeof(st), sizeof(st));
		struct nv_txn *x = &nv->txn[st.slot];
		x->used = true;
		x->b = (struct nv_batch){ .n = st.nr_frames, .chan_type = NVSP_CHANNEL_TYPE_DATA };
		memcpy(x->b.start, st.start, st.nr_frames * sizeof(st.start[0])); /* only what was checked */
		memcpy(x->b.count, st.count, st.nr_frames * sizeof(st.count[0]));
	}
	/* The free list as netvsp_txn_reset orders it, without the slots the guest holds. */
	nv->txn_nfree = 0;
	for (uint32_t i = NV_TXN_MAX; i-- > 0;)
		if (!nv->txn[i].used)
			nv->txn_free[nv->txn_nfree++] = i;
	pthread_mutex_unlock(&nv->lock);
	pthread_rwlock_unlock(&nv->buf_lock);
	off = chans_off;
	for (uint32_t c = 0; c < h.nr_chans; c++) {
		struct savestate_netvsp_chan sc;
		memcpy(&sc, buf + off, sizeof(sc));
		off += sizeof(sc);
		struct nv_chan *ch = chan_at(nv, sc.index);
		pthread_mutex_lock(&ch->send_lock);
		ch->nowed = sc.nr_owed;
		for (uint32_t k = 0; k < sc.nr_owed; k++) {
			struct savestate_netvsp_owed o;
			memcpy(&o, buf + off, sizeof(o));
			off += sizeof(o);
			ch->owed[k] = (struct nv_owed){ .type = o.type, .flags = o.flags, .tid = o.tid, .ext_len = o.ext_len,
							.len = o.len };
			memcpy(ch->owed[k].ext, o.ext, sizeof(o.ext));
			memcpy(ch->owed[k].payload, o.payload, sizeof(o.payload));
		}
		pthread_mutex_unlock(&ch->send_lock);
	}
	/* The backend is new: the primary's first round shows the guest the link as it is now. */
	__atomic_store_n(&nv->relink, true, __ATOMIC_RELEASE);
	*used = off;
	return 0;
}
