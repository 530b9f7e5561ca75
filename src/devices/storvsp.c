/* Synthetic SCSI controller (see storvsp.h).
 *
 * Per open channel: a pool of requests (every guest packet takes one until its reply is in the
 * host->guest ring, so a guest that stops reading cannot make us queue without bound), a disk_aio
 * queue, an rx lock (whoever drains the guest->host ring) and a tx lock (whoever writes replies).
 * The thread that signals (the VMBus service thread for an ioeventfd doorbell, else a vCPU) drains
 * under the server lock and submits to the channel's io_uring itself. The ring's completion eventfd
 * is watched by the same service thread (vmbus_channel_watch_fd), which reaps completions and writes
 * the replies: no thread hop between the doorbell, the submission and the completion. Replies written
 * in one batch (one drain, one reap) signal the guest once: the channel counts the batches in
 * progress, and the last one to end signals. When the pool runs dry the drain stops, and whoever
 * frees a request resumes it, on whichever thread that is (every packet, CREATE_SUB_CHANNELS
 * included, is handled the same way there: the device never needs the server lock). LUN state is
 * behind lun_lock.
 */
#include "devices/storvsp.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/aio.h"
#include "disk/disk.h"
#include "gen2vm/proto/storvsp.h"
#include "scsi/scsi.h"
#include "util/log.h"
#include "vmbus/ring.h"

#define SV_REQS 128u    /* requests per channel */
#define SV_MAX_IOV 272u /* 1 MiB in 4 KiB pages, plus the unaligned ends of a few ranges */

struct sv_media {
	atomic_int refs;
	struct disk *disk;
};

struct sv_lun {
	struct scsi_lun scsi;
	struct sv_media *media; /* NULL: empty DVD drive */
};

struct sv_chan;

struct sv_req {
	struct sv_chan *ch;
	struct sv_req *next;
	uint64_t trans_id;
	bool want_reply;
	struct storvsp_packet reply;
	struct storvsp_srb srb;
	uint8_t cdb[STORVSP_CDB_MAX];
	struct scsi_cmd cmd;
	struct sv_media *media;
	struct disk_aio_req aio;
	struct disk_aio_range ranges[SCSI_MAX_UNMAP_DESC];
	struct iovec iov[SV_MAX_IOV];
};

struct sv_chan {
	struct storvsp *s;
	struct vmbus_channel *chan;
	bool primary;
	struct disk_aio *aio;
	uint8_t *pkt;
	uint32_t pkt_cap;
	pthread_mutex_t rx_lock;
	pthread_mutex_t tx_lock; /* free list, pending replies, stalled, signal_owed */
	struct sv_req *reqs, *free_list;
	uint32_t nr_free;
	struct sv_req *pend_head, *pend_tail; /* replies waiting for ring space */
	bool notify_pending;                  /* ENUMERATE_BUS owed to the guest */
	bool stalled;
	bool closing;
	bool signal_owed; /* replies written, the guest not yet signalled (see batching) */
	/* Batches (a drain, a reap, nested or on two threads) writing replies now: they signal the guest
	 * once, when the last one ends, instead of once per reply. */
	uint32_t batching;
};

struct storvsp {
	struct vmbus_server *srv;
	const struct guest_mem *mem;
	struct vmbus_device *dev;
	uint32_t index;
	uint16_t max_sub;
	char name[16];
	pthread_mutex_t lun_lock;
	struct sv_lun *luns[STORVSP_MAX_LUNS];
	/* protocol state (primary channel; sub-channels share it) */
	uint16_t version;
	bool ready;
	struct sv_chan *primary;
	struct {
		atomic_uint_fast64_t srbs, reads, writes, flushes, discards, errors, guest_errors;
	} st;
};

/* --- media --------------------------------------------------------------------------------------- */

static void media_put(struct sv_media *m)
{
	if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
		disk_close(m->disk);
		free(m);
	}
}

static int media_open(const char *path, bool ro, unsigned format, struct sv_media **out)
{
	struct disk *d;
	/* The guest caches what it reads: data I/O bypasses the host's page cache (cache=none) for every
	 * format, through io_uring for raw images and the drivers' own I/O for the others. */
	int rc = disk_open(path, (ro ? DISK_RDONLY : 0) | DISK_DIRECT | format, &d);
	if (rc)
		return rc;
	struct sv_media *m = calloc(1, sizeof(*m));
	if (!m) {
		disk_close(d);
		return -ENOMEM;
	}
	atomic_init(&m->refs, 1);
	m->disk = d;
	*out = m;
	return 0;
}

/* --- replies ------------------------------------------------------------------------------------- */

static void chan_resume(struct sv_chan *ch);

/* With tx_lock held: returns r to the pool; true when a stalled drain should resume. */
static bool req_free_locked(struct sv_chan *ch, struct sv_req *r)
{
	if (r->media) {
		media_put(r->media);
		r->media = NULL;
	}
	r->next = ch->free_list;
	ch->free_list = r;
	ch->nr_free++;
	if (ch->stalled && !ch->closing) {
		ch->stalled = false;
		return true;
	}
	return false;
}

static const struct storvsp_packet enumerate_bus = { .operation = STORVSP_OP_ENUMERATE_BUS };

/* With tx_lock held: writes owed replies in order until the ring is full. Returns true when a
 * stalled drain should resume. */
static bool flush_locked(struct sv_chan *ch)
{
	bool resume = false;
	if (ch->closing)
		return false;
	while (ch->pend_head) {
		struct sv_req *r = ch->pend_head;
		int rc = vmbus_channel_send_batched(ch->chan, VM_PKT_COMP, 0, r->trans_id, NULL, 0, &r->reply,
						    sizeof(r->reply), &ch->signal_owed);
		if (rc == -EAGAIN)
			return resume;
		ch->pend_head = r->next;
		if (!ch->pend_head)
			ch->pend_tail = NULL;
		resume |= req_free_locked(ch, r);
	}
	if (ch->notify_pending &&
	    vmbus_channel_send_batched(ch->chan, VM_PKT_DATA_INBAND, 0, 0, NULL, 0, &enumerate_bus,
				       sizeof(enumerate_bus), &ch->signal_owed) != -EAGAIN)
		ch->notify_pending = false;
	return resume;
}

/* Unlocks tx_lock, signalling the guest for what was written unless a batch is in progress (its end
 * signals). */
static void tx_unlock(struct sv_chan *ch)
{
	bool sig = ch->signal_owed && !ch->batching;
	if (sig)
		ch->signal_owed = false;
	pthread_mutex_unlock(&ch->tx_lock);
	if (sig)
		vmbus_channel_signal_guest(ch->chan);
}

static void batch_begin(struct sv_chan *ch)
{
	pthread_mutex_lock(&ch->tx_lock);
	ch->batching++;
	pthread_mutex_unlock(&ch->tx_lock);
}

static void batch_end(struct sv_chan *ch)
{
	pthread_mutex_lock(&ch->tx_lock);
	ch->batching--;
	tx_unlock(ch);
}

/* Sends r's reply (or queues it behind earlier ones) and frees r once it is in the ring. */
static void req_finish(struct sv_chan *ch, struct sv_req *r)
{
	pthread_mutex_lock(&ch->tx_lock);
	bool resume;
	if (!r->want_reply || ch->closing) {
		resume = req_free_locked(ch, r);
	} else {
		r->next = NULL;
		if (ch->pend_tail)
			ch->pend_tail->next = r;
		else
			ch->pend_head = r;
		ch->pend_tail = r;
		resume = flush_locked(ch);
	}
	tx_unlock(ch);
	if (resume)
		chan_resume(ch);
}

static void reply_status(struct sv_chan *ch, struct sv_req *r, uint32_t status)
{
	memset(&r->reply, 0, sizeof(r->reply));
	r->reply.operation = STORVSP_OP_COMPLETE_IO;
	r->reply.status = status;
	req_finish(ch, r);
}

/* --- SRBs ---------------------------------------------------------------------------------------- */

static void srb_reply(struct sv_chan *ch, struct sv_req *r, uint8_t srb_status)
{
	struct storvsp_srb *o = &r->reply.srb;
	memset(&r->reply, 0, sizeof(r->reply));
	r->reply.operation = STORVSP_OP_COMPLETE_IO;
	*o = r->srb;
	memset(o->sense_data, 0, sizeof(o->sense_data));
	o->length = sizeof(*o);
	o->scsi_status = srb_status == SRB_STATUS_INVALID_LUN ? SCSI_STATUS_CHECK_CONDITION : SCSI_STATUS_GOOD;
	o->srb_status = srb_status;
	o->sense_info_length = 0;
	o->data_transfer_length = 0;
	if (srb_status == SRB_STATUS_SUCCESS || srb_status == (SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID)) {
		struct scsi_cmd *c = &r->cmd;
		o->scsi_status = c->status;
		if (c->status == SCSI_STATUS_GOOD) {
			o->srb_status = SRB_STATUS_SUCCESS;
			o->data_transfer_length = c->xfer;
		} else {
			o->srb_status = SRB_STATUS_ERROR | (c->sense_len ? SRB_STATUS_AUTOSENSE_VALID : 0);
			uint8_t n = c->sense_len < STORVSP_SENSE_SIZE ? c->sense_len : STORVSP_SENSE_SIZE;
			memcpy(o->sense_data, c->sense, n);
			o->sense_info_length = n;
			atomic_fetch_add(&ch->s->st.errors, 1);
		}
	} else {
		atomic_fetch_add(&ch->s->st.guest_errors, 1);
	}
	req_finish(ch, r);
}

static void srb_io_done(struct disk_aio_req *a, int res)
{
	struct sv_req *r = (struct sv_req *)((uint8_t *)a - offsetof(struct sv_req, aio));
	if (res && res != -EOPNOTSUPP) {
		static struct log_ratelimit rl;
		if (log_ratelimit_ok(&rl))
			log_warn("%s: %s: I/O error at byte %llu: %s (the guest gets MEDIUM ERROR)", r->ch->s->name,
				 r->media->disk->path ? r->media->disk->path : "disk", (unsigned long long)a->off,
				 strerror(-res));
	}
	scsi_cmd_io_done(&r->cmd, res);
	srb_reply(r->ch, r, SRB_STATUS_SUCCESS);
}

/* Guest pages of a GPA_DIRECT packet -> r->iov. Returns the buffer length or -1 (logged). */
static int64_t srb_map(struct sv_chan *ch, struct sv_req *r, const struct vmbus_packet *p)
{
	uint64_t cursor = 0, total = 0;
	struct vmbus_packet_range rg;
	int n = 0;
	while (vmbus_packet_next_range(p, &cursor, &rg) == 1) {
		uint32_t pos = 0;
		while (pos < rg.byte_count) {
			uint32_t in_page = (rg.byte_offset + pos) % HV_PAGE_SIZE;
			uint32_t pg = (rg.byte_offset + pos) / HV_PAGE_SIZE;
			uint32_t len = HV_PAGE_SIZE - in_page;
			if (len > rg.byte_count - pos)
				len = rg.byte_count - pos;
			uint64_t pfn = vmbus_packet_range_pfn(&rg, pg);
			if (pfn > (UINT64_MAX >> 12)) {
				log_guest("%s: GPA_DIRECT pfn %#llx out of range", ch->s->name, (unsigned long long)pfn);
				return -1;
			}
			uint8_t *h = guest_mem_ptr(ch->s->mem, pfn * HV_PAGE_SIZE + in_page, len);
			if (!h) {
				log_guest("%s: GPA_DIRECT page %#llx is not guest RAM", ch->s->name,
					  (unsigned long long)pfn);
				return -1;
			}
			if (n && (uint8_t *)r->iov[n - 1].iov_base + r->iov[n - 1].iov_len == h) {
				r->iov[n - 1].iov_len += len;
			} else {
				if (n == (int)SV_MAX_IOV) {
					log_guest("%s: data buffer too fragmented (> %u pieces)", ch->s->name, SV_MAX_IOV);
					return -1;
				}
				r->iov[n].iov_base = h;
				r->iov[n].iov_len = len;
				n++;
			}
			pos += len;
			total += len;
		}
		if (total > STORVSP_MAX_TRANSFER) {
			log_guest("%s: data buffer larger than %u bytes", ch->s->name, STORVSP_MAX_TRANSFER);
			return -1;
		}
	}
	r->cmd.iovcnt = n;
	return (int64_t)total;
}

/* Trims the iovec to len bytes. */
static void iov_trim(struct sv_req *r, uint32_t len)
{
	uint32_t done = 0;
	int i;
	for (i = 0; i < r->cmd.iovcnt && done < len; i++) {
		if (r->iov[i].iov_len > len - done)
			r->iov[i].iov_len = len - done;
		done += (uint32_t)r->iov[i].iov_len;
	}
	r->cmd.iovcnt = i;
}

/* Returns true when I/O was queued (kick the aio queue after the batch). */
static bool do_srb(struct sv_chan *ch, struct sv_req *r, const struct vmbus_packet *p)
{
	struct storvsp *s = ch->s;
	struct storvsp_srb *srb = &r->srb;
	atomic_fetch_add(&s->st.srbs, 1);
	memset(&r->cmd, 0, sizeof(r->cmd));
	if (!s->ready) {
		reply_status(ch, r, STORVSP_STATUS_INVALID_DEVICE_STATE);
		return false;
	}
	if (srb->cdb_length == 0 || srb->cdb_length > STORVSP_CDB_MAX || srb->data_in > STORVSP_DATA_NONE) {
		log_guest("%s: malformed SRB (cdb length %u, direction %u)", s->name, srb->cdb_length, srb->data_in);
		srb_reply(ch, r, SRB_STATUS_INVALID_REQUEST);
		return false;
	}
	uint32_t buf_len = 0;
	if (p->type == VM_PKT_DATA_USING_GPA_DIRECT) {
		int64_t n = srb_map(ch, r, p);
		if (n < 0 || srb->data_transfer_length > (uint64_t)n) {
			if (n >= 0)
				log_guest("%s: SRB transfer length %u exceeds its %lld-byte buffer", s->name,
					  srb->data_transfer_length, (long long)n);
			srb_reply(ch, r, SRB_STATUS_INVALID_REQUEST);
			return false;
		}
		buf_len = srb->data_transfer_length;
		iov_trim(r, buf_len);
	} else if (srb->data_transfer_length) {
		log_guest("%s: INBAND SRB with a %u-byte transfer", s->name, srb->data_transfer_length);
		srb_reply(ch, r, SRB_STATUS_INVALID_REQUEST);
		return false;
	}
	memcpy(r->cdb, srb->cdb, sizeof(r->cdb));
	memset(r->cdb + srb->cdb_length, 0, sizeof(r->cdb) - srb->cdb_length);
	struct scsi_cmd *c = &r->cmd;
	c->cdb = r->cdb;
	c->cdb_len = srb->cdb_length < 6 ? 6 : srb->cdb_length; /* short CDBs read as zero-padded */
	c->dir = srb->data_in == STORVSP_DATA_IN ? SCSI_DIR_IN : srb->data_in == STORVSP_DATA_OUT ? SCSI_DIR_OUT : SCSI_DIR_NONE;
	c->iov = r->iov;
	c->buf_len = buf_len;
	if (!buf_len)
		c->iovcnt = 0;

	pthread_mutex_lock(&s->lun_lock);
	bool here = srb->path_id == 0 && srb->target_id == 0;
	struct sv_lun *l = here && srb->lun < STORVSP_MAX_LUNS ? s->luns[srb->lun] : NULL;
	uint16_t luns[STORVSP_MAX_LUNS];
	uint32_t nl = 0;
	if (here)
		for (uint32_t i = 0; i < STORVSP_MAX_LUNS; i++)
			if (s->luns[i])
				luns[nl++] = (uint16_t)i;
	c->luns = luns;
	c->nr_luns = nl;
	/* As Hyper-V answers: REPORT LUNS for every path and target (the LUNs there: none but at path 0,
	 * target 0); INQUIRY of an absent LUN says "no unit" (peripheral qualifier 3); anything else
	 * sent to an absent LUN is CHECK CONDITION with an invalid-LUN SRB status. Linux's storvsc scans
	 * 8 paths x 2 targets and, on an invalid-LUN status, removes the device at path 0, target 0 with
	 * that LUN number: answering REPORT LUNS of target 1 that way removed the guest's disk. */
	if (!l && r->cdb[0] != SCSI_OP_INQUIRY && r->cdb[0] != SCSI_OP_REPORT_LUNS) {
		pthread_mutex_unlock(&s->lun_lock);
		srb_reply(ch, r, SRB_STATUS_INVALID_LUN);
		atomic_fetch_sub(&s->st.guest_errors, 1);
		return false;
	}
	int rc = scsi_lun_execute(l ? &l->scsi : NULL, c);
	if (c->eject && l && l->media) {
		media_put(l->media);
		l->media = NULL;
	}
	if (rc == SCSI_NEED_IO) {
		r->media = l->media;
		atomic_fetch_add(&r->media->refs, 1);
	}
	pthread_mutex_unlock(&s->lun_lock);
	c->luns = NULL;
	if (rc != SCSI_NEED_IO) {
		srb_reply(ch, r, SRB_STATUS_SUCCESS);
		return false;
	}
	struct disk_aio_req *a = &r->aio;
	memset(a, 0, sizeof(*a));
	a->disk = r->media->disk;
	a->done = srb_io_done;
	switch (c->io.op) {
	case SCSI_IO_READ:
	case SCSI_IO_WRITE:
		a->op = c->io.op == SCSI_IO_READ ? DISK_AIO_READ : DISK_AIO_WRITE;
		a->off = c->io.off;
		a->len = c->io.len;
		a->iov = r->iov;
		a->iovcnt = c->iovcnt;
		a->fua = c->io.fua;
		atomic_fetch_add(a->op == DISK_AIO_READ ? &s->st.reads : &s->st.writes, 1);
		break;
	case SCSI_IO_FLUSH:
		a->op = DISK_AIO_FLUSH;
		atomic_fetch_add(&s->st.flushes, 1);
		break;
	case SCSI_IO_DISCARD:
		a->op = DISK_AIO_DISCARD;
		for (uint32_t i = 0; i < c->io.nr_ranges; i++) {
			r->ranges[i].off = c->io.range[i].off;
			r->ranges[i].len = c->io.range[i].len;
		}
		a->ranges = r->ranges;
		a->nr_ranges = c->io.nr_ranges;
		atomic_fetch_add(&s->st.discards, 1);
		break;
	default:
		break;
	}
	disk_aio_queue(ch->aio, a);
	return true;
}

/* --- control packets ----------------------------------------------------------------------------- */

static bool version_ok(uint16_t v)
{
	return v == STORVSP_VERSION_WIN8 || v == STORVSP_VERSION_WIN8_1 || v == STORVSP_VERSION_WIN10;
}

/* Handles one packet; returns true when I/O was queued. Runs on whichever thread drains. */
static bool handle_packet(struct sv_chan *ch, struct sv_req *r, uint32_t len)
{
	struct storvsp *s = ch->s;
	struct vmbus_packet p;
	if (vmbus_packet_parse(ch->pkt, len, &p) || p.payload_len < 12 ||
	    (p.type != VM_PKT_DATA_INBAND && p.type != VM_PKT_DATA_USING_GPA_DIRECT)) {
		log_guest("%s: malformed packet (type %u, %u bytes) dropped", s->name, p.type, len);
		atomic_fetch_add(&s->st.guest_errors, 1);
		pthread_mutex_lock(&ch->tx_lock);
		bool resume = req_free_locked(ch, r);
		pthread_mutex_unlock(&ch->tx_lock);
		(void)resume; /* we are the drain */
		return false;
	}
	struct storvsp_packet pk;
	memset(&pk, 0, sizeof(pk));
	memcpy(&pk, p.payload, p.payload_len < sizeof(pk) ? p.payload_len : sizeof(pk));
	r->trans_id = p.trans_id;
	r->want_reply = (p.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED) || (pk.flags & STORVSP_FLAG_REQUEST_COMPLETION);
	r->media = NULL;
	switch (pk.operation) {
	case STORVSP_OP_EXECUTE_SRB:
		r->srb = pk.srb;
		return do_srb(ch, r, &p);
	case STORVSP_OP_BEGIN_INITIALIZATION:
		if (ch->primary) {
			s->ready = false;
			s->version = 0;
		}
		reply_status(ch, r, ch->primary ? STORVSP_STATUS_SUCCESS : STORVSP_STATUS_INVALID_DEVICE_STATE);
		return false;
	case STORVSP_OP_QUERY_PROTOCOL_VERSION:
		if (ch->primary && version_ok(pk.version.major_minor)) {
			s->version = pk.version.major_minor;
			reply_status(ch, r, STORVSP_STATUS_SUCCESS);
		} else {
			reply_status(ch, r, STORVSP_STATUS_REVISION_MISMATCH);
		}
		return false;
	case STORVSP_OP_QUERY_PROPERTIES:
		memset(&r->reply, 0, sizeof(r->reply));
		r->reply.operation = STORVSP_OP_COMPLETE_IO;
		r->reply.props.max_channel_count = s->max_sub;
		r->reply.props.flags = s->max_sub ? STORVSP_PROP_MULTI_CHANNEL : 0;
		r->reply.props.max_transfer_bytes = STORVSP_MAX_TRANSFER;
		req_finish(ch, r);
		return false;
	case STORVSP_OP_END_INITIALIZATION:
		if (ch->primary && s->version) {
			s->ready = true;
			reply_status(ch, r, STORVSP_STATUS_SUCCESS);
		} else {
			reply_status(ch, r, STORVSP_STATUS_INVALID_DEVICE_STATE);
		}
		return false;
	case STORVSP_OP_CREATE_SUB_CHANNELS: {
		int n = -EINVAL;
		if (ch->primary && s->ready && pk.sub_channel_count && pk.sub_channel_count <= s->max_sub)
			n = vmbus_device_offer_subchannels(s->dev, pk.sub_channel_count);
		else
			log_guest("%s: CREATE_SUB_CHANNELS(%u) refused (at most %u)", s->name, pk.sub_channel_count, s->max_sub);
		reply_status(ch, r, n < 0 ? STORVSP_STATUS_UNSUCCESSFUL : STORVSP_STATUS_SUCCESS);
		return false;
	}
	case STORVSP_OP_RESET_LUN:
	case STORVSP_OP_RESET_ADAPTER:
	case STORVSP_OP_RESET_BUS:
		/* Nothing is queued inside us that a reset could abort: in-flight I/O completes normally. */
		reply_status(ch, r, STORVSP_STATUS_SUCCESS);
		return false;
	default:
		log_guest("%s: unknown operation %u", s->name, pk.operation);
		reply_status(ch, r, STORVSP_STATUS_UNSUCCESSFUL);
		return false;
	}
}

/* Drains the guest->host ring while requests are free. */
static void chan_drain(struct sv_chan *ch)
{
	struct vmbus_ring *rx = vmbus_channel_rx_ring(ch->chan);
	bool queued = false;
	batch_begin(ch);
	pthread_mutex_lock(&ch->rx_lock);
	vmbus_ring_mask(rx);
	for (;;) {
		for (;;) {
			pthread_mutex_lock(&ch->tx_lock);
			struct sv_req *r = ch->closing ? NULL : ch->free_list;
			if (r) {
				ch->free_list = r->next;
				ch->nr_free--;
			} else if (!ch->closing) {
				ch->stalled = true;
			}
			pthread_mutex_unlock(&ch->tx_lock);
			if (!r)
				goto out;
			uint32_t len;
			int rc = vmbus_channel_recv(ch->chan, ch->pkt, ch->pkt_cap, &len);
			if (rc) {
				pthread_mutex_lock(&ch->tx_lock);
				req_free_locked(ch, r);
				pthread_mutex_unlock(&ch->tx_lock);
				break;
			}
			queued |= handle_packet(ch, r, len);
		}
		vmbus_channel_recv_done(ch->chan);
		if (queued) {
			disk_aio_kick(ch->aio);
			queued = false;
		}
		if (!vmbus_ring_unmask(rx))
			goto done;
		vmbus_ring_mask(rx);
	}
out:
	vmbus_channel_recv_done(ch->chan);
	if (queued)
		disk_aio_kick(ch->aio);
	/* Stalled: stay masked-off? No: unmask so the guest's next packet signals us; the resume
	 * from a completing request drains whatever is there. */
	vmbus_ring_unmask(rx);
done:
	pthread_mutex_unlock(&ch->rx_lock);
	batch_end(ch);
}

/* The channel's io_uring completed requests (on the VMBus service thread). */
static void sv_aio_ready(void *arg)
{
	struct sv_chan *ch = arg;
	batch_begin(ch);
	disk_aio_poll(ch->aio);
	batch_end(ch);
}

static void chan_resume(struct sv_chan *ch)
{
	chan_drain(ch);
}

/* --- VMBus device ops ---------------------------------------------------------------------------- */

static int sv_open(void *ctx, struct vmbus_channel *chan)
{
	struct storvsp *s = ctx;
	struct sv_chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->s = s;
	ch->chan = chan;
	ch->primary = vmbus_channel_subchannel_index(chan) == 0;
	ch->pkt_cap = vmbus_channel_rx_ring(chan)->size;
	ch->pkt = malloc(ch->pkt_cap);
	ch->reqs = calloc(SV_REQS, sizeof(*ch->reqs));
	int rc = ch->pkt && ch->reqs ? disk_aio_create(SV_REQS, &ch->aio) : -ENOMEM;
	if (rc) {
		free(ch->pkt);
		free(ch->reqs);
		free(ch);
		return rc;
	}
	rc = vmbus_channel_watch_fd(chan, disk_aio_event_fd(ch->aio), sv_aio_ready, ch);
	if (rc) {
		log_error("%s: cannot watch the I/O completions: %s", s->name, strerror(-rc));
		disk_aio_destroy(ch->aio);
		free(ch->pkt);
		free(ch->reqs);
		free(ch);
		return rc;
	}
	pthread_mutex_init(&ch->rx_lock, NULL);
	pthread_mutex_init(&ch->tx_lock, NULL);
	for (uint32_t i = 0; i < SV_REQS; i++) {
		ch->reqs[i].ch = ch;
		ch->reqs[i].next = ch->free_list;
		ch->free_list = &ch->reqs[i];
	}
	ch->nr_free = SV_REQS;
	if (ch->primary) {
		s->primary = ch;
		s->ready = false;
		s->version = 0;
	}
	vmbus_channel_set_priv(chan, ch);
	return 0;
}

static void sv_close(void *ctx, struct vmbus_channel *chan)
{
	struct storvsp *s = ctx;
	struct sv_chan *ch = vmbus_channel_priv(chan);
	if (!ch)
		return;
	/* From here on no completion runs on the service thread: this thread reaps the rest. */
	vmbus_channel_unwatch_fd(chan, disk_aio_event_fd(ch->aio));
	pthread_mutex_lock(&ch->tx_lock);
	ch->closing = true;
	/* Owed replies are dropped: the guest closed the channel. */
	while (ch->pend_head) {
		struct sv_req *r = ch->pend_head;
		ch->pend_head = r->next;
		req_free_locked(ch, r);
	}
	ch->pend_tail = NULL;
	ch->signal_owed = false;
	while (ch->nr_free != SV_REQS) {
		pthread_mutex_unlock(&ch->tx_lock);
		disk_aio_poll_wait(ch->aio, 1);
		pthread_mutex_lock(&ch->tx_lock);
	}
	pthread_mutex_unlock(&ch->tx_lock);
	/* A resumed drain may still hold rx_lock for a moment. */
	pthread_mutex_lock(&ch->rx_lock);
	pthread_mutex_unlock(&ch->rx_lock);
	disk_aio_destroy(ch->aio);
	if (s->primary == ch) {
		s->primary = NULL;
		s->ready = false;
	}
	pthread_mutex_destroy(&ch->tx_lock);
	pthread_mutex_destroy(&ch->rx_lock);
	free(ch->reqs);
	free(ch->pkt);
	free(ch);
	vmbus_channel_set_priv(chan, NULL);
}

static void sv_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct sv_chan *ch = vmbus_channel_priv(chan);
	if (!ch)
		return;
	/* The guest may have freed ring space: owed replies first. */
	pthread_mutex_lock(&ch->tx_lock);
	ch->batching++;
	flush_locked(ch);
	pthread_mutex_unlock(&ch->tx_lock);
	chan_drain(ch);
	batch_end(ch);
}

static const struct vmbus_device_ops sv_ops = {
	.open = sv_open,
	.close = sv_close,
	.rx_ready = sv_rx_ready,
};

/* --- public API ---------------------------------------------------------------------------------- */

int storvsp_create(struct vmbus_server *srv, const struct guest_mem *mem, uint32_t index, uint16_t max_sub,
		   struct storvsp **out)
{
	if (index >= STORVSP_MAX_CONTROLLERS || !mem)
		return -EINVAL;
	struct storvsp *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->srv = srv;
	s->mem = mem;
	s->index = index;
	s->max_sub = max_sub;
	snprintf(s->name, sizeof(s->name), "scsi%u", index);
	pthread_mutex_init(&s->lun_lock, NULL);
	struct vmbus_device_desc d = {
		.name = s->name,
		/* Hyper-V's SCSI controllers differ in the instance GUID only. */
		.instance_id = VMBUS_GUID(0x5c5e0000u + index, 0x6765, 0x6e32, 0x76, 0x6d, 0x53, 0x43, 0x53, 0x49,
					  0x00, (uint8_t)index),
		.max_subchannels = max_sub,
		.ops = &sv_ops,
		.ctx = s,
	};
	vmbus_guid_parse(STORVSP_SCSI_CLASS_GUID_TEXT, &d.class_id);
	int rc = vmbus_server_device_add(srv, &d, &s->dev);
	if (rc) {
		pthread_mutex_destroy(&s->lun_lock);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void lun_free(struct sv_lun *l)
{
	if (l) {
		media_put(l->media);
		free(l);
	}
}

void storvsp_destroy(struct storvsp *s)
{
	if (!s)
		return;
	vmbus_server_device_remove(s->srv, s->dev);
	for (uint32_t i = 0; i < STORVSP_MAX_LUNS; i++)
		lun_free(s->luns[i]);
	pthread_mutex_destroy(&s->lun_lock);
	free(s);
}

/* Tells a running guest to rescan the bus (hot add/remove). */
static void notify_rescan(struct storvsp *s)
{
	struct sv_chan *ch = s->primary;
	if (!ch || !s->ready)
		return;
	pthread_mutex_lock(&ch->tx_lock);
	ch->notify_pending = true;
	bool resume = flush_locked(ch);
	tx_unlock(ch);
	if (resume)
		chan_resume(ch);
}

int storvsp_attach(struct storvsp *s, uint32_t lun, const struct storvsp_disk_opts *o)
{
	if (lun >= STORVSP_MAX_LUNS || (!o->path && !o->dvd))
		return -EINVAL;
	if (s->luns[lun])
		return -EEXIST;
	struct sv_lun *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	int rc = 0;
	if (o->path)
		rc = media_open(o->path, o->readonly || o->dvd, o->format, &l->media);
	if (!rc) {
		rc = scsi_lun_init(&l->scsi, o->dvd ? SCSI_TYPE_CDROM : SCSI_TYPE_DISK, l->media ? l->media->disk : NULL,
				   o->readonly, o->native_4k, s->index << 8 | lun, o->serial);
		if (rc)
			log_error("%s: too small to be a %s", o->path, o->dvd ? "DVD" : "disk");
	}
	if (rc) {
		lun_free(l);
		return rc;
	}
	l->scsi.max_transfer = STORVSP_MAX_TRANSFER;
	pthread_mutex_lock(&s->lun_lock);
	s->luns[lun] = l;
	pthread_mutex_unlock(&s->lun_lock);
	notify_rescan(s);
	return 0;
}

int storvsp_detach(struct storvsp *s, uint32_t lun)
{
	if (lun >= STORVSP_MAX_LUNS || !s->luns[lun])
		return -ENOENT;
	pthread_mutex_lock(&s->lun_lock);
	struct sv_lun *l = s->luns[lun];
	s->luns[lun] = NULL;
	pthread_mutex_unlock(&s->lun_lock);
	lun_free(l); /* requests in flight hold their own media reference */
	notify_rescan(s);
	return 0;
}

int storvsp_change_media(struct storvsp *s, uint32_t lun, const char *path, unsigned format)
{
	if (lun >= STORVSP_MAX_LUNS || !s->luns[lun])
		return -ENOENT;
	if (s->luns[lun]->scsi.type != SCSI_TYPE_CDROM)
		return -EINVAL;
	struct sv_media *m = NULL;
	if (path) {
		int rc = media_open(path, true, format, &m);
		if (rc)
			return rc;
		if (m->disk->size < 2048) {
			log_error("%s: too small to be a DVD image", path);
			media_put(m);
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&s->lun_lock);
	struct sv_lun *l = s->luns[lun];
	struct sv_media *old = l->media;
	l->media = m;
	scsi_lun_set_media(&l->scsi, m ? m->disk : NULL);
	pthread_mutex_unlock(&s->lun_lock);
	media_put(old);
	return 0;
}

int storvsp_free_lun(const struct storvsp *s)
{
	for (uint32_t i = 0; i < STORVSP_MAX_LUNS; i++)
		if (!s->luns[i])
			return (int)i;
	return -ENOSPC;
}

void storvsp_get_stats(const struct storvsp *s, struct storvsp_stats *st)
{
	st->srbs = atomic_load(&s->st.srbs);
	st->reads = atomic_load(&s->st.reads);
	st->writes = atomic_load(&s->st.writes);
	st->flushes = atomic_load(&s->st.flushes);
	st->discards = atomic_load(&s->st.discards);
	st->errors = atomic_load(&s->st.errors);
	st->guest_errors = atomic_load(&s->st.guest_errors);
}

/* --- saved state --------------------------------------------------------------------------------- */

/* True when ch has nothing in flight and owes the guest nothing (tx_lock held). */
static bool chan_idle_locked(const struct sv_chan *ch)
{
	return ch->nr_free == SV_REQS && !ch->pend_head;
}

static bool sv_idle(struct storvsp *s)
{
	bool idle = true;
	struct vmbus_channel *const *chans;
	unsigned n = vmbus_device_channels(s->dev, &chans);
	for (unsigned i = 0; i < n && idle; i++) {
		struct sv_chan *ch = chans[i] ? vmbus_channel_priv(chans[i]) : NULL;
		if (!ch)
			continue;
		pthread_mutex_lock(&ch->tx_lock);
		idle = chan_idle_locked(ch);
		pthread_mutex_unlock(&ch->tx_lock);
	}
	return idle;
}

int storvsp_quiesce(struct storvsp *s, unsigned timeout_ms)
{
	for (unsigned waited = 0; !sv_idle(s); waited += 10) {
		if (waited >= timeout_ms)
			return -EBUSY;
		usleep(10000);
	}
	return 0;
}

int storvsp_save(struct storvsp *s, uint8_t out[4])
{
	if (!sv_idle(s))
		return -EBUSY;
	out[0] = (uint8_t)s->version;
	out[1] = (uint8_t)(s->version >> 8);
	out[2] = s->ready;
	out[3] = 0;
	return 0;
}

int storvsp_restore(struct storvsp *s, const uint8_t in[4])
{
	uint16_t v = (uint16_t)(in[0] | in[1] << 8);
	if ((v && !version_ok(v)) || in[2] > 1 || (in[2] && !v) || in[3])
		return -EINVAL;
	s->version = v;
	s->ready = in[2];
	return 0;
}
