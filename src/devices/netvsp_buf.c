/* netvsp buffer management: the guest's receive and send buffers (GPADL views), the receive-section
 * allocator and the receive transaction slots. Contracts and lock rules: netvsp_priv.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/netvsp_priv.h"

/* --- receive sections (nv->lock held) ----------------------------------------------------------- */
bool netvsp_sec_alloc(struct netvsp *nv, uint32_t k, uint32_t *start)
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

/* The stalled workers are woken under the lock they registered with: no wakeup is lost. */
void netvsp_sec_free(struct netvsp *nv, uint32_t start, uint32_t k)
{
	if (nv->rused && start < nv->rsec_n && k <= nv->rsec_n - start)
		memset(nv->rused + start, 0, k);
	for (uint32_t w = nv->rx_waiters; k && w; w &= w - 1) {
		struct nv_chan *ch = nv->chans[__builtin_ctz(w)];
		if (ch && ch->has_thr)
			netvsp_worker_kick(ch);
	}
	if (k)
		nv->rx_waiters = 0;
}

void netvsp_batch_free(struct netvsp *nv, const struct nv_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++)
		netvsp_sec_free(nv, b->start[i], b->count[i]);
}

/* --- receive transaction slots (nv->lock held) ------------------------------------------------------ */
void netvsp_txn_reset(struct netvsp *nv)
{
	/* Pushed in reverse so that slot 0 is taken first. */
	nv->txn_nfree = 0;
	for (uint32_t i = 0; i < NV_TXN_MAX; i++) {
		nv->txn[i].used = nv->txn[i].parked = false;
		nv->txn_free[nv->txn_nfree++] = NV_TXN_MAX - 1 - i;
	}
}

bool netvsp_txn_take(struct netvsp *nv, const struct nv_batch *b, uint32_t *slot)
{
	if (!nv->txn_nfree)
		return false;
	uint32_t s = nv->txn_free[--nv->txn_nfree];
	nv->txn[s].used = true;
	nv->txn[s].b = *b;
	*slot = s;
	return true;
}

void netvsp_txn_release(struct netvsp *nv, uint32_t slot)
{
	netvsp_batch_free(nv, &nv->txn[slot].b);
	nv->txn[slot].used = false;
	nv->txn[slot].parked = false;
	nv->txn_free[nv->txn_nfree++] = slot;
}

/* --- the guest's buffers ------------------------------------------------------------------------ */
/* Maps a buffer GPADL (one range at offset 0, as netvsc makes them). Any of our threads. */
int netvsp_buffer_map(struct nv_chan *ch, uint32_t gpadl_id, struct vmbus_gpadl **gp, struct vmbus_view *v,
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
void netvsp_recv_unmap(struct netvsp *nv, struct vmbus_channel *c)
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

void netvsp_send_unmap(struct netvsp *nv, struct vmbus_channel *c)
{
	if (!nv->sgp)
		return;
	vmbus_view_unmap(&nv->sview);
	vmbus_channel_gpadl_release(c, nv->sgp);
	nv->sgp = NULL;
	nv->ssec_n = nv->ssize = 0;
}
