/* netvsp internals: the adapter's state and the functions its files share.
 *
 * The adapter is four files around this header:
 *   netvsp.c       lifecycle: VMBus callbacks (open, close, rx_ready), create/destroy, channel
 *                  activation, worker threads and netvsp_poll, link state and statistics;
 *   netvsp_nvsp.c  the NVSP protocol: guest packets, version, NDIS config, buffer setup and revoke,
 *                  sub-channels, the VF data-path switch, completions of receive transactions;
 *   netvsp_buf.c   buffer management: receive/send buffer GPADL views, the receive-section
 *                  allocator, receive transaction slots;
 *   netvsp_data.c  the data path: guest -> backend (RNDIS data messages, per-packet info to the
 *                  virtio-net header, LSO fix-up, RNDIS control glue) and backend -> guest (XFER_PAGES
 *                  batches, RSS channel choice, packets owed or parked by a full ring).
 *
 * LOCKS (see THREADS in netvsp.h). Taken in this order, never the other way:
 *   nv->buf_lock (rwlock)  read-held by whoever uses the buffers' contents or sends through chans[];
 *                          write-held to (un)map a buffer or to add/remove a channel in chans[];
 *   ch->send_lock          a channel's host->guest ring writes, its owed packets and parked
 *                          transaction;
 *   nv->lock               RNDIS and NVSP state, the section allocator, the transaction slots,
 *                          rx_waiters, the link fields.
 * Statistics are atomics (STAT_ADD) and need none of them.
 */
#ifndef GEN2VM_DEVICES_NETVSP_PRIV_H
#define GEN2VM_DEVICES_NETVSP_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/netvsp.h"
#include "devices/rndis.h"
#include "gen2vm/proto/netvsc.h"

#define NV_TXN_MAX 4096u          /* receive transactions (XFER_PAGES packets) the guest may hold */
#define NV_BATCH 8u               /* frames per XFER_PAGES packet */
#define NV_OWED_MAX 4u            /* host->guest packets held back by a full ring, per channel */
#define NV_TID_MAGIC 0x4E560000ull /* high half of our receive transaction ids */
#define NV_MAX_IOV 128
#define NV_CTL_MAX 4096u           /* largest RNDIS control message accepted */
#define NV_SEND_SECTION NETVSP_SEND_SECTION_SIZE
#define NV_RECV_SECTION NETVSP_RECV_SECTION_SIZE

/* A host->guest packet a full ring held back (ch->owed, under send_lock): sent again, in order, when the
 * guest has read (netvsp_owed_flush). Only NVSP completions are owed; receive batches are parked. */
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

/* One open channel (the primary, idx 0, or a sub-channel). nv, chan and idx are fixed at open. Only the
 * channel's own thread (its worker; the rx_ready caller inline) reads the guest's ring and uses pkt,
 * ctl and want_comp, and only it adds to owed: it may read nowed without send_lock. Any worker
 * delivering a receive batch to this channel takes send_lock (parked). thr, has_thr and efd are set
 * by activate_pending before the channel enters chans[] (under buf_lock for writing). */
struct nv_chan {
	struct netvsp *nv;
	struct vmbus_channel *chan;
	uint32_t idx;
	pthread_mutex_t send_lock; /* host->guest ring writes, owed, parked */
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

/* A receive transaction: a batch sent (or parked) as one XFER_PAGES packet, its sections held until
 * the guest completes it. Slot i is transaction id NV_TID_MAGIC << 32 | i. Under nv->lock. */
struct nv_txn {
	bool used;
	bool parked; /* not yet sent to the guest: a completion for it is bogus */
	struct nv_batch b;
};

/* The adapter. srv, dev, cfg, be and max_queues are fixed at create. The buffer fields (receive and
 * send) change with buf_lock held for writing and nv->lock held, so either lock is enough to read
 * them; the buffers' contents (rview, sview) are used with buf_lock read-held. A channel enters
 * chans[] and leaves it under buf_lock (write) and nv->lock, so either lock is enough to read it. pending[] is the
 * server callbacks' (open, rx_ready, close: one at a time). The rest is nv->lock's, except the
 * statistics (atomics) and carrier (written under nv->lock, read atomically by carrier_check). */
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
	/* Saving: netvsp_hold holds the workers between two rounds (hold, under hold_lock; held counts
	 * the workers waiting on hold_cond). relink (atomic): after a restore, the primary's worker
	 * shows the guest the link as it is now (the backend was opened again). */
	pthread_mutex_t hold_lock;
	pthread_cond_t hold_cond;
	bool hold;
	uint32_t held;
	bool relink;
};

#define STAT_ADD(nv, f, v) __atomic_fetch_add(&(nv)->st.f, (v), __ATOMIC_RELAXED)

/* --- netvsp.c: lifecycle ------------------------------------------------------------------------ */

/* Wakes ch's worker (its eventfd). Any thread, any lock; ch must have a worker (has_thr). */
void netvsp_worker_kick(struct nv_chan *ch);

/* Shows the guest admin_up && carrier, with an indication when that changed. No locks held. */
void netvsp_link_apply(struct netvsp *nv);

/* --- netvsp_buf.c: buffer management (nv->lock held for all but netvsp_buffer_map) -------------- */

/* Allocates a run of k contiguous receive sections (runs never wrap), searching from the hint.
 * Returns false when the buffer is missing, k is 0 or too large, or no run is free. */
bool netvsp_sec_alloc(struct netvsp *nv, uint32_t k, uint32_t *start);

/* Frees k sections from start (a range outside the buffer is ignored: the buffer may have been
 * revoked meanwhile) and, when k > 0, kicks every worker recorded in rx_waiters and clears it. */
void netvsp_sec_free(struct netvsp *nv, uint32_t start, uint32_t k);

/* Frees the sections of every frame of b. */
void netvsp_batch_free(struct netvsp *nv, const struct nv_batch *b);

/* Makes every transaction slot free, none used or parked: at create (before the adapter is shared,
 * no lock) and at the primary's close. */
void netvsp_txn_reset(struct netvsp *nv);

/* Takes a free slot for batch b (copied in, marked used). Returns false when the guest holds all
 * NV_TXN_MAX: the caller still owns b's sections. */
bool netvsp_txn_take(struct netvsp *nv, const struct nv_batch *b, uint32_t *slot);

/* Frees slot's sections and returns it to the free list (neither used nor parked afterwards). The
 * caller has checked that slot is in range and used. */
void netvsp_txn_release(struct netvsp *nv, uint32_t slot);

/* Acquires and maps buffer GPADL gpadl_id of ch's device: it must be one range at offset 0 of at
 * least a page, as netvsc makes them. No lock needed (any of the adapter's threads). Returns 0 with
 * *gp, *v and *size (the range's bytes) set, or -ENOENT (no such GPADL), -EINVAL, or the mapping's
 * -errno, with nothing held. */
int netvsp_buffer_map(struct nv_chan *ch, uint32_t gpadl_id, struct vmbus_gpadl **gp, struct vmbus_view *v,
		      uint32_t *size);

/* Drop the receive (sections included) / send buffer, if any: buf_lock write-held and nv->lock held.
 * c is the channel the GPADL was acquired on (the primary); a TORNDOWN the guest asked for already
 * is sent by the server after the release. */
void netvsp_recv_unmap(struct netvsp *nv, struct vmbus_channel *c);
void netvsp_send_unmap(struct netvsp *nv, struct vmbus_channel *c);

/* --- netvsp_data.c: data path ------------------------------------------------------------------- */

/* Sends one packet on ch, or queues it in ch->owed when the ring is full (or already holds owed
 * packets, to keep their order); the guest signals once it reads. send_lock held. */
void netvsp_send_or_owe(struct nv_chan *ch, uint16_t type, uint16_t flags, uint64_t tid, const void *ext,
			uint32_t ext_len, const void *p, uint32_t len);

/* Retries what a full ring held back on ch: owed packets, then the parked transaction. send_lock
 * held. Returns true when nothing is left. */
bool netvsp_owed_flush(struct nv_chan *ch);

/* Puts one RNDIS message (control reply or indication, in as many contiguous sections as it needs)
 * into the receive buffer and sends it on ch; logged and dropped when there is no buffer or no free
 * run of sections. buf_lock read-held, no other lock. */
void netvsp_rndis_ctl_send(struct nv_chan *ch, const void *msg, uint32_t len);

/* The guest's RNDIS_PKT m (plen bytes of NVSP payload; d, hdr_end: its VMBus packet in ch->pkt, for
 * GPA_DIRECT ranges): checks the send-section index and size or the GPA ranges, then hands each RNDIS
 * message to the backend (data) or to rndis_control (control). Takes buf_lock for reading itself; no
 * lock held on entry. Returns the NVSP status for the completion. */
uint32_t netvsp_tx_rndis_pkt(struct nv_chan *ch, const struct vmbus_packet_descriptor *d,
			     const struct nvsp_message *m, uint32_t plen, uint32_t hdr_end);

/* Moves up to budget frames from backend queue q to the guest. buf_lock read-held. *stalled: the
 * guest holds every receive section; waiter (a worker, or NULL inline) is then recorded in
 * rx_waiters and kicked when one is freed. Returns frames delivered. */
uint32_t netvsp_rx_backend(struct netvsp *nv, uint32_t q, uint32_t budget, bool *stalled, struct nv_chan *waiter);

/* --- netvsp_nvsp.c: protocol -------------------------------------------------------------------- */

/* Whether NVSP INIT accepts protocol version v. */
bool netvsp_version_ok(uint32_t v);

/* Drains ch's guest->host ring (first retrying what the host owes; it stops reading while anything
 * is owed, and the guest signals when it has read). ch's own thread (worker, or rx_ready inline);
 * no lock held. */
void netvsp_guest_service(struct nv_chan *ch);

#endif
