/* netvsp lifecycle: the VMBus device callbacks (open, close, rx_ready), create and destroy, channel
 * activation, the worker threads (and netvsp_poll, their inline counterpart), link state and
 * statistics. The protocol, buffers and data path are in netvsp_{nvsp,buf,data}.c; what they share
 * and the lock rules are in netvsp_priv.h. */
#include "devices/netvsp.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/netvsp_priv.h"
#include "devices/rndis.h"
#include "util/log.h"

void netvsp_worker_kick(struct nv_chan *ch)
{
	uint64_t one = 1;
	if (write(ch->efd, &one, sizeof(one)) < 0) {
		/* counter saturated: the worker is awake anyway */
	}
}

static void activate_pending(struct netvsp *nv);
static void carrier_check(struct netvsp *nv);

uint32_t netvsp_poll(struct netvsp *nv, uint32_t budget)
{
	uint32_t got = 0;
	carrier_check(nv);
	activate_pending(nv);
	if (__atomic_exchange_n(&nv->relink, false, __ATOMIC_ACQ_REL) && nv->chans[0])
		netvsp_link_apply(nv);
	pthread_rwlock_rdlock(&nv->buf_lock);
	for (uint32_t i = 0; i < nv->max_queues; i++) {
		struct nv_chan *ch = nv->chans[i];
		if (ch) {
			pthread_mutex_lock(&ch->send_lock);
			netvsp_owed_flush(ch);
			pthread_mutex_unlock(&ch->send_lock);
		}
	}
	for (uint32_t q = 0; q < nv->be->nr_queues && got < budget; q++) {
		bool stalled;
		got += netvsp_rx_backend(nv, q, budget - got, &stalled, NULL);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
	return got;
}

/* A worker held for a save (netvsp_hold): between two rounds, no lock held, nothing half done. It
 * goes on when the hold ends, and stops when its channel closes meanwhile. */
static void worker_hold(struct nv_chan *ch)
{
	struct netvsp *nv = ch->nv;
	pthread_mutex_lock(&nv->hold_lock);
	nv->held++;
	pthread_cond_broadcast(&nv->hold_cond);
	while (nv->hold && !__atomic_load_n(&ch->stop, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&nv->hold_cond, &nv->hold_lock);
	nv->held--;
	pthread_mutex_unlock(&nv->hold_lock);
}

/* Backend queue q is served by channel q's worker; the primary's worker also serves the queues whose
 * channel the guest has not opened (a guest that uses fewer channels than the tap has queues), so no
 * queue is left unread.
 *
 * The worker sleeps in poll without a timeout; every reason to run again is an event on an fd:
 *  - the guest signalled (rx_ready kicks efd): packets to read, or room made in a host->guest ring
 *    that held packets back (owed, parked: the ring's pending_send_sz makes the guest signal);
 *  - a backend queue has frames (its rx_fd);
 *  - receive sections were freed after this worker's queue stalled for want of them (netvsp_sec_free
 *    kicks efd), or close stops it (efd).
 * The backend's carrier changes only inside its send and recv calls, which are made here: it is
 * looked at after each round, before sleeping. */
static void *worker(void *arg)
{
	struct nv_chan *ch = arg;
	pthread_setname_np(pthread_self(), "netvsp"); /* named in /proc (bench/console) */
	struct netvsp *nv = ch->nv;
	uint32_t nq = nv->be->nr_queues;
	while (!__atomic_load_n(&ch->stop, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&nv->hold, __ATOMIC_ACQUIRE)) {
			worker_hold(ch);
			continue;
		}
		netvsp_guest_service(ch);
		struct pollfd p[1 + NET_BE_MAX_QUEUES] = { { .fd = ch->efd, .events = POLLIN } };
		nfds_t np = 1;
		pthread_rwlock_rdlock(&nv->buf_lock);
		for (uint32_t q = 0; q < nq; q++) {
			if (q != ch->idx && (ch->idx != 0 || (q < nv->max_queues && nv->chans[q])))
				continue;
			bool st = false;
			netvsp_rx_backend(nv, q, 256, &st, ch);
			if (!st) /* stalled: netvsp_sec_free wakes us, not the queue (it stays readable) */
				p[np++] = (struct pollfd){ .fd = nv->be->ops->rx_fd(nv->be, q), .events = POLLIN };
		}
		pthread_rwlock_unlock(&nv->buf_lock);
		carrier_check(nv);
		if (ch->idx == 0 && __atomic_exchange_n(&nv->relink, false, __ATOMIC_ACQ_REL))
			netvsp_link_apply(nv);
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
		/* Under both locks: senders read chans[] under buf_lock, netvsp_sec_free under nv->lock. */
		pthread_rwlock_wrlock(&nv->buf_lock);
		pthread_mutex_lock(&nv->lock);
		nv->chans[i] = ch;
		nv->pending[i] = NULL;
		pthread_mutex_unlock(&nv->lock);
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
		pthread_mutex_lock(&nv->hold_lock); /* a held worker waits there */
		pthread_cond_broadcast(&nv->hold_cond);
		pthread_mutex_unlock(&nv->hold_lock);
		netvsp_worker_kick(ch);
		pthread_join(ch->thr, NULL);
	}
	pthread_rwlock_wrlock(&nv->buf_lock);
	pthread_mutex_lock(&nv->lock);
	nv->chans[ch->idx] = NULL;
	nv->pending[ch->idx] = NULL;
	nv->rx_waiters &= ~(1u << ch->idx);
	if (ch->parked) /* the parked transaction never reached the guest */
		netvsp_txn_release(nv, ch->parked_slot);
	if (ch->idx == 0) {
		/* The guest is gone: its buffers, sections, transactions and RNDIS state with it. */
		netvsp_recv_unmap(nv, chan);
		netvsp_send_unmap(nv, chan);
		netvsp_txn_reset(nv);
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
		netvsp_worker_kick(ch);
		return;
	}
	pthread_rwlock_rdlock(&ch->nv->buf_lock);
	pthread_mutex_lock(&ch->send_lock);
	netvsp_owed_flush(ch);
	pthread_mutex_unlock(&ch->send_lock);
	pthread_rwlock_unlock(&ch->nv->buf_lock);
	netvsp_guest_service(ch);
}

static const struct vmbus_device_ops nv_ops = {
	.open = nv_open,
	.close = nv_close,
	.rx_ready = nv_rx_ready,
};

void netvsp_instance_id(uint32_t instance, struct vmbus_guid *out)
{
	*out = (struct vmbus_guid)VMBUS_GUID(0x6e657400u + instance, 0x7673, 0x4e70, 0x8e, 0x31, 0x67, 0x65, 0x6e, 0x32,
					     0x76, 0x6d);
}

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
	netvsp_txn_reset(nv);
	nv->srv = srv;
	nv->cfg = *cfg;
	nv->be = cfg->backend;
	nv->max_queues = cfg->max_queues ? cfg->max_queues : cfg->backend->nr_queues;
	if (nv->max_queues > NET_BE_MAX_QUEUES)
		nv->max_queues = NET_BE_MAX_QUEUES;
	pthread_mutex_init(&nv->lock, NULL);
	pthread_rwlock_init(&nv->buf_lock, NULL);
	pthread_mutex_init(&nv->hold_lock, NULL);
	pthread_cond_init(&nv->hold_cond, NULL);
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
		.max_subchannels = (uint16_t)(nv->max_queues - 1),
		.ops = &nv_ops,
		.ctx = nv,
	};
	netvsp_instance_id(cfg->instance, &d.instance_id);
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &d.class_id);
	int rc = vmbus_server_device_add(srv, &d, &nv->dev);
	if (rc) {
		pthread_mutex_destroy(&nv->lock);
		pthread_rwlock_destroy(&nv->buf_lock);
		pthread_mutex_destroy(&nv->hold_lock);
		pthread_cond_destroy(&nv->hold_cond);
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
	pthread_mutex_destroy(&nv->hold_lock);
	pthread_cond_destroy(&nv->hold_cond);
	free(nv->txn);
	free(nv->txn_free);
	free(nv);
}

void netvsp_link_apply(struct netvsp *nv)
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
		netvsp_rndis_ctl_send(nv->chans[0], msg, n);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
}

void netvsp_set_link(struct netvsp *nv, bool up)
{
	pthread_mutex_lock(&nv->lock);
	nv->admin_up = up;
	pthread_mutex_unlock(&nv->lock);
	netvsp_link_apply(nv);
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
		netvsp_link_apply(nv);
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
		netvsp_rndis_ctl_send(nv->chans[0], msg, n);
	}
	pthread_rwlock_unlock(&nv->buf_lock);
}

void netvsp_get_rx_state(struct netvsp *nv, struct netvsp_rx_state *rx)
{
	*rx = (struct netvsp_rx_state){ 0 };
	pthread_rwlock_rdlock(&nv->buf_lock);
	for (uint32_t i = 0; i < NET_BE_MAX_QUEUES; i++) {
		struct nv_chan *ch = nv->chans[i];
		if (!ch)
			continue;
		pthread_mutex_lock(&ch->send_lock);
		rx->parked += ch->parked;
		rx->owed += ch->nowed;
		pthread_mutex_unlock(&ch->send_lock);
	}
	pthread_mutex_lock(&nv->lock);
	rx->sections = nv->rused ? nv->rsec_n : 0;
	for (uint32_t i = 0; i < rx->sections; i++)
		rx->sections_held += nv->rused[i] != 0;
	rx->txns_held = nv->txn ? NV_TXN_MAX - nv->txn_nfree : 0;
	rx->waiters = (uint32_t)__builtin_popcount(nv->rx_waiters);
	pthread_mutex_unlock(&nv->lock);
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
