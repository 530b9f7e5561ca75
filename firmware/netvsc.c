/* Synthetic network adapters (netvsc) as EFI_SIMPLE_NETWORK_PROTOCOL: one handle per netvsp offer,
 * its device path VenHw(FW_VMBUS_DP_GUID, instance)/MAC(mac, 1) as on Hyper-V.
 *
 * The channel, NVSP and RNDIS are brought up at start-up (the MAC is needed for the device path),
 * with the host's packet filter at 0 so that nothing arrives until a client calls Initialize. The
 * receive and send buffers are not cleared: the host writes every byte we read. Frames are copied
 * out of the receive buffer into a small queue at once, so that the host's sections go back to it
 * with each completion; a transmitted frame is copied into a send section, so its buffer is
 * "recycled" (GetStatus's TxBuf) as soon as Transmit returns. Everything is polled: Receive,
 * GetStatus and WaitForPacket drain the ring. RNDIS parsing and building come from
 * guestlib/netvsc_client.c, the same bytes the test guests and the host-side client speak.
 */
#include "net.h"
#include "storage.h"

#include "efi/efi_devpath.h"
#include "efi/efi_fmt.h"
#include "netvsc_client.h"

#define NV_RING_BYTES (32u << 10)
#define NV_RBUF_BYTES (256u << 10) /* ~150 of netvsp's 1728-byte receive sections */
#define NV_SBUF_BYTES (96u << 10)
#define NV_TX_MAX 16u              /* send sections used: 0 for RNDIS control, the rest for frames */
#define NV_RXQ 32u                 /* frames held between the ring and Receive */
#define NV_FRAME_MAX 1520u         /* an MTU-1500 Ethernet frame (1514) and a VLAN tag's slack */
#define NV_TXDONE 64u
#define NV_RXCOMP 256u             /* receive completions the full ring held back: more than the host's sections */
#define NV_CTL_TIMEOUT_US 5000000ull
#define NV_TX_WAIT_US 1000000ull
#define NV_TID_TX 0x1000u          /* transaction id of a frame in send section s: NV_TID_TX + s */
#define NV_ETH_HLEN 14u
#define NV_SEND_BUFFER_ID 0u       /* the send buffer's id in SEND_SEND_BUF and REVOKE_SEND_BUF */
#define NV_QUIET_US 4000000ull     /* a client polling this long without a frame: the stall report */

/* Counters for the stall report (issue 18: a loader that stops getting frames in the middle of a
 * transfer). Cheap increments; printed only when a client polls for NV_QUIET_US without a frame. */
struct nv_diag {
	uint32_t rx_ok, rx_empty, rx_small, tx_ok, tx_waits, tx_fail, gs, gs_txbuf, polls, pkts, frames;
	uint32_t comp_held, comp_lost, reports;
	uint64_t last_frame_us, last_report_us;
};

struct nv_dev {
	EFI_SIMPLE_NETWORK_PROTOCOL snp;
	EFI_SIMPLE_NETWORK_MODE mode;
	struct vmbus_client_channel ch;
	uint32_t relid;
	uint8_t *rbuf, *sbuf;
	uint32_t rgpadl, sgpadl;   /* 0: not given to the host */
	bool rbuf_on, sbuf_on;     /* the host uses the buffer (SEND_RECV_BUF / SEND_SEND_BUF accepted) */
	uint32_t ssec_size, nr_tx;
	uint32_t tx_busy;          /* bit s: send section s awaits its completion */
	uint64_t next_tid;
	uint32_t host_filter;      /* NDIS_PACKET_TYPE_* last set */
	uint32_t rx_head, rx_count, rx_dropped;
	uint16_t rx_len[NV_RXQ];
	uint8_t (*rx)[NV_FRAME_MAX];
	void *tx_done[NV_TXDONE];
	uint32_t txd_head, txd_count;
	uint64_t rx_comp[NV_RXCOMP]; /* receive transactions to complete once the ring has room */
	uint32_t rxc_head, rxc_count;
	uint8_t ctl[256];          /* the last RNDIS completion */
	uint32_t ctl_len;
	struct nv_diag diag;
	struct efi_dp_vmbus_mac dp;
	struct fw_net_dev pub;
};

static uint64_t nv_pkt[2048 / 8]; /* one packet from the ring: at most 8 ranges per transfer packet */
static struct fw_net_dev *nv_devs, **nv_tail = &nv_devs;

struct fw_net_dev *fw_net_devices(void)
{
	return nv_devs;
}

static struct nv_dev *nv_of(EFI_SIMPLE_NETWORK_PROTOCOL *snp)
{
	return (struct nv_dev *)snp; /* snp is the first member */
}

/* Receive filtering beyond the host's: the host filters on NDIS classes (it passes every multicast
 * frame when any is wanted); the SNP filter settings and multicast list decide here. */
static bool nv_accept(const struct nv_dev *d, const uint8_t *dst)
{
	const EFI_SIMPLE_NETWORK_MODE *m = &d->mode;
	uint32_t f = m->ReceiveFilterSetting;
	if (f & EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS)
		return true;
	if (!(dst[0] & 1))
		return (f & EFI_SIMPLE_NETWORK_RECEIVE_UNICAST) && !efi_memcmp(dst, m->CurrentAddress.Addr, 6);
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	if (!efi_memcmp(dst, bcast, 6))
		return f & EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST;
	if (f & EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST)
		return true;
	if (!(f & EFI_SIMPLE_NETWORK_RECEIVE_MULTICAST))
		return false;
	for (uint32_t i = 0; i < m->MCastFilterCount && i < MAX_MCAST_FILTER_CNT; i++)
		if (!efi_memcmp(dst, m->MCastFilter[i].Addr, 6))
			return true;
	return false;
}

/* One RNDIS message from the receive buffer (netvsc_xfer_for_each callback). */
static void nv_rndis_in(void *ctx, const uint8_t *msg, uint32_t len)
{
	struct nv_dev *d = ctx;
	struct rndis_header h;
	efi_memcpy(&h, msg, sizeof(h));
	if (h.msg_len > len || h.msg_len < sizeof(h))
		return;
	if (h.type == RNDIS_MSG_PACKET) {
		struct rndis_packet p;
		const uint8_t *f;
		uint32_t flen;
		if (netvsc_rndis_packet_parse(msg, len, &p, &f, &flen) || flen < NV_ETH_HLEN || flen > NV_FRAME_MAX ||
		    d->mode.State != EfiSimpleNetworkInitialized || !nv_accept(d, f))
			return;
		if (d->rx_count == NV_RXQ) {
			d->rx_dropped++;
			return;
		}
		d->diag.frames++;
		uint32_t slot = (d->rx_head + d->rx_count++) % NV_RXQ;
		efi_memcpy(d->rx[slot], f, flen);
		d->rx_len[slot] = (uint16_t)flen;
	} else if (h.type == RNDIS_MSG_INDICATE && h.msg_len >= sizeof(h) + sizeof(struct rndis_indicate_status)) {
		struct rndis_indicate_status st;
		efi_memcpy(&st, msg + sizeof(h), sizeof(st));
		if (st.status == RNDIS_STATUS_MEDIA_CONNECT)
			d->mode.MediaPresent = 1;
		else if (st.status == RNDIS_STATUS_MEDIA_DISCONNECT)
			d->mode.MediaPresent = 0;
	} else if (h.type & RNDIS_MSG_COMPLETION) {
		d->ctl_len = h.msg_len < sizeof(d->ctl) ? h.msg_len : (uint32_t)sizeof(d->ctl);
		efi_memcpy(d->ctl, msg, d->ctl_len);
	}
}

/* Completes receive transaction tid (its sections go back to the host); -VMBUS_EAGAIN while the ring
 * is full. */
static int nv_rx_complete(struct nv_dev *d, uint64_t tid)
{
	struct nvsp_message cm;
	netvsc_rx_complete_init(&cm);
	int rc = vmbus_client_send(&d->ch, VM_PKT_COMP, 0, tid, NULL, 0, &cm, sizeof(cm));
	return rc == -VMBUS_EAGAIN ? rc : 0; /* another error: the channel is broken, nothing to keep */
}

/* One packet from the host. *tid and *reply get a completion's transaction id and message. */
static void nv_packet(struct nv_dev *d, const uint8_t *pkt, uint32_t len, uint64_t *tid, struct nvsp_message *reply)
{
	struct vmbus_packet_descriptor desc;
	struct nvsp_message m;
	*tid = 0;
	if (netvsc_packet_peel(pkt, len, &desc, &m))
		return;
	if (desc.type == VM_PKT_COMP) {
		if (m.type == NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE && desc.trans_id >= NV_TID_TX &&
		    desc.trans_id < NV_TID_TX + NV_TX_MAX)
			d->tx_busy &= ~(1u << (desc.trans_id - NV_TID_TX));
		*tid = desc.trans_id;
		*reply = m;
		return;
	}
	if (m.type != NVSP_MSG1_TYPE_SEND_RNDIS_PKT ||
	    netvsc_xfer_for_each(pkt, len, d->rbuf, NV_RBUF_BYTES, nv_rndis_in, d) < 0)
		return;
	/* The frames are copied out: the sections go back to the host now, or as soon as the ring has room
	 * (a completion dropped would keep its sections from the host for good, and enough of them would
	 * stop all receiving). */
	if (d->rxc_count || nv_rx_complete(d, desc.trans_id)) {
		d->diag.comp_held++;
		if (d->rxc_count < NV_RXCOMP)
			d->rx_comp[(d->rxc_head + d->rxc_count++) % NV_RXCOMP] = desc.trans_id;
		else
			d->diag.comp_lost++;
	}
}

/* Sends the receive completions held back, in order, while the ring takes them. */
static void nv_rx_complete_held(struct nv_dev *d)
{
	while (d->rxc_count && !nv_rx_complete(d, d->rx_comp[d->rxc_head])) {
		d->rxc_head = (d->rxc_head + 1) % NV_RXCOMP;
		d->rxc_count--;
	}
}

/* The stall report: a client has polled for NV_QUIET_US without a frame (or a transmit failed: now).
 * One line in the VMM's log with what each side of the rings holds, every NV_QUIET_US at most. */
static void nv_diag_report(struct nv_dev *d, const char *why)
{
	struct nv_diag *g = &d->diag;
	uint64_t now = fw_stor_now_us();
	if (g->last_report_us && now - g->last_report_us < NV_QUIET_US)
		return;
	g->last_report_us = now;
	g->reports++;
	const struct vmbus_ring_header *in = d->ch.in.hdr, *out = d->ch.out.hdr;
	fw_host_event(FW_EV_LOG,
		      "netvsc %u: %s, %llu ms since the last frame: rx ok %u empty %u small %u, tx ok %u waits %u "
		      "fail %u busy 0x%x, getstatus %u txbuf %u, polls %u pkts %u frames %u queued %u dropped %u, "
		      "completions held %u now %u lost %u; ring in w%u r%u mask %u pend %u%s, out w%u r%u mask %u "
		      "pend %u%s",
		      d->pub.nr, why, (unsigned long long)((now - g->last_frame_us) / 1000), g->rx_ok, g->rx_empty,
		      g->rx_small, g->tx_ok, g->tx_waits, g->tx_fail, d->tx_busy, g->gs, g->gs_txbuf, g->polls, g->pkts,
		      g->frames, d->rx_count, d->rx_dropped, g->comp_held, d->rxc_count, g->comp_lost, in->write_index,
		      in->read_index, in->interrupt_mask, in->pending_send_sz, d->ch.in.failed ? " FAILED" : "",
		      out->write_index, out->read_index, out->interrupt_mask, out->pending_send_sz,
		      d->ch.out.failed ? " FAILED" : "");
}

/* Handles every packet waiting in the ring, without blocking. */
static void nv_poll(struct nv_dev *d)
{
	uint32_t len;
	bool any = false;
	d->diag.polls++;
	nv_rx_complete_held(d);
	for (unsigned n = 0; n < 64 && vmbus_client_recv(&d->ch, nv_pkt, sizeof(nv_pkt), &len) == 0; n++) {
		uint64_t tid;
		struct nvsp_message m;
		nv_packet(d, (const uint8_t *)nv_pkt, len, &tid, &m);
		d->diag.pkts++;
		any = true;
	}
	if (any)
		vmbus_client_recv_done(&d->ch);
	if (d->mode.State == EfiSimpleNetworkInitialized && !d->rx_count &&
	    fw_stor_now_us() - d->diag.last_frame_us >= NV_QUIET_US)
		nv_diag_report(d, "no frame for the client");
}

/* Waits for the completion of tid (its message in *reply), handling everything else that comes. */
static EFI_STATUS nv_wait(struct nv_dev *d, uint64_t want, struct nvsp_message *reply, uint64_t timeout_us)
{
	uint64_t end = fw_stor_now_us() + timeout_us;
	for (;;) {
		uint32_t len;
		EFI_STATUS s = fw_vmbus_recv_by(&d->ch, nv_pkt, sizeof(nv_pkt), &len, end);
		if (EFI_ERROR(s))
			return s;
		uint64_t tid;
		struct nvsp_message m;
		nv_packet(d, (const uint8_t *)nv_pkt, len, &tid, &m);
		if (tid == want) {
			if (reply)
				*reply = m;
			return EFI_SUCCESS;
		}
	}
}

static EFI_STATUS nv_send(struct nv_dev *d, const struct nvsp_message *m, uint64_t tid, bool comp)
{
	uint64_t end = fw_stor_now_us() + NV_CTL_TIMEOUT_US;
	for (;;) {
		int rc = vmbus_client_send(&d->ch, VM_PKT_DATA_INBAND, comp ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0,
					   tid, NULL, 0, m, sizeof(*m));
		if (rc != -VMBUS_EAGAIN)
			return rc ? EFI_DEVICE_ERROR : EFI_SUCCESS;
		if (fw_stor_now_us() > end)
			return EFI_TIMEOUT;
		nv_poll(d);
	}
}

static EFI_STATUS nv_request(struct nv_dev *d, struct nvsp_message *m, struct nvsp_message *reply)
{
	uint64_t tid = d->next_tid++;
	EFI_STATUS s = nv_send(d, m, tid, true);
	return EFI_ERROR(s) ? s : nv_wait(d, tid, reply, NV_CTL_TIMEOUT_US);
}

/* An RNDIS control message through send section 0, and its RNDIS completion (in d->ctl). Returns the
 * completion's status word through *status. */
static EFI_STATUS nv_rndis_ctl(struct nv_dev *d, const void *msg, uint32_t len, uint32_t req_id, uint32_t *status)
{
	if (len > d->ssec_size)
		return EFI_INVALID_PARAMETER;
	efi_memcpy(d->sbuf, msg, len);
	struct nvsp_message m, r;
	netvsc_rndis_msg_init(&m, NVSP_CHANNEL_TYPE_CONTROL, 0, len);
	d->ctl_len = 0;
	EFI_STATUS s = nv_request(d, &m, &r);
	if (EFI_ERROR(s))
		return s;
	if (r.u.rndis_pkt_complete.status != NVSP_STAT_SUCCESS)
		return EFI_DEVICE_ERROR;
	uint64_t end = fw_stor_now_us() + NV_CTL_TIMEOUT_US;
	for (;;) {
		uint32_t id;
		if (d->ctl_len >= 16 && (efi_memcpy(&id, d->ctl + 8, 4), id == req_id)) {
			efi_memcpy(status, d->ctl + 12, 4);
			return EFI_SUCCESS;
		}
		d->ctl_len = 0; /* a stale completion */
		uint32_t plen;
		s = fw_vmbus_recv_by(&d->ch, nv_pkt, sizeof(nv_pkt), &plen, end);
		if (EFI_ERROR(s))
			return s;
		uint64_t tid;
		nv_packet(d, (const uint8_t *)nv_pkt, plen, &tid, &r);
	}
}

/* QUERY or SET of one OID; the status of the completion (RNDIS_STATUS_*) through *status. */
static EFI_STATUS nv_oid(struct nv_dev *d, uint32_t type, uint32_t oid, const void *in, uint32_t inlen,
			 uint32_t *status)
{
	uint8_t msg[64];
	uint32_t id = (uint32_t)d->next_tid++;
	uint32_t len = netvsc_rndis_request_build(msg, sizeof(msg), type, id, oid, in, inlen);
	return len ? nv_rndis_ctl(d, msg, len, id, status) : EFI_INVALID_PARAMETER;
}

/* The value a QUERY returned (at most cap bytes); its length, or 0 when malformed. */
static uint32_t nv_query_value(struct nv_dev *d, void *out, uint32_t cap)
{
	struct rndis_query_complete qc;
	if (d->ctl_len < 8 + sizeof(qc))
		return 0;
	efi_memcpy(&qc, d->ctl + 8, sizeof(qc));
	if (qc.info_buf_offset < sizeof(qc) || qc.info_buflen > cap || qc.info_buf_offset > d->ctl_len - 8 ||
	    qc.info_buflen > d->ctl_len - 8 - qc.info_buf_offset)
		return 0;
	efi_memcpy(out, d->ctl + 8 + qc.info_buf_offset, qc.info_buflen);
	return qc.info_buflen;
}

/* The host's packet filter for the SNP settings. */
static EFI_STATUS nv_filter_apply(struct nv_dev *d)
{
	uint32_t f = 0, snp = d->mode.State == EfiSimpleNetworkInitialized ? d->mode.ReceiveFilterSetting : 0;
	if (snp & EFI_SIMPLE_NETWORK_RECEIVE_UNICAST)
		f |= NDIS_PACKET_TYPE_DIRECTED;
	if (snp & EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST)
		f |= NDIS_PACKET_TYPE_BROADCAST;
	if (snp & (EFI_SIMPLE_NETWORK_RECEIVE_MULTICAST | EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST))
		f |= NDIS_PACKET_TYPE_ALL_MULTICAST;
	if (snp & EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS)
		f |= NDIS_PACKET_TYPE_PROMISCUOUS;
	if (f == d->host_filter)
		return EFI_SUCCESS;
	uint32_t st;
	EFI_STATUS s = nv_oid(d, RNDIS_MSG_SET, RNDIS_OID_GEN_CURRENT_PACKET_FILTER, &f, 4, &st);
	if (EFI_ERROR(s) || st != RNDIS_STATUS_SUCCESS)
		return EFI_DEVICE_ERROR;
	d->host_filter = f;
	return EFI_SUCCESS;
}

/* ---- EFI_SIMPLE_NETWORK_PROTOCOL ---- */
static EFI_STATUS nv_state(struct nv_dev *d, uint32_t need)
{
	if (d->mode.State == EfiSimpleNetworkStopped)
		return EFI_NOT_STARTED;
	if (need == EfiSimpleNetworkInitialized && d->mode.State != EfiSimpleNetworkInitialized)
		return EFI_DEVICE_ERROR;
	return EFI_SUCCESS;
}

/* The prologue of the SNP calls: This checked, *d set, the state rule for need. */
static EFI_STATUS nv_enter(EFI_SIMPLE_NETWORK_PROTOCOL *this, uint32_t need, struct nv_dev **d)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	*d = nv_of(this);
	return nv_state(*d, need);
}

static void nv_queues_reset(struct nv_dev *d)
{
	d->rx_head = d->rx_count = 0;
	d->txd_head = d->txd_count = 0;
}

static EFI_STATUS EFIAPI snp_start(EFI_SIMPLE_NETWORK_PROTOCOL *this)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	struct nv_dev *d = nv_of(this);
	if (d->mode.State != EfiSimpleNetworkStopped)
		return EFI_ALREADY_STARTED;
	d->mode.State = EfiSimpleNetworkStarted;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_shutdown(EFI_SIMPLE_NETWORK_PROTOCOL *this)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	d->mode.State = EfiSimpleNetworkStarted;
	d->mode.ReceiveFilterSetting = 0;
	d->mode.MCastFilterCount = 0;
	s = nv_filter_apply(d);
	nv_poll(d);
	nv_queues_reset(d);
	return s;
}

static EFI_STATUS EFIAPI snp_stop(EFI_SIMPLE_NETWORK_PROTOCOL *this)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	struct nv_dev *d = nv_of(this);
	if (d->mode.State == EfiSimpleNetworkStopped)
		return EFI_NOT_STARTED;
	if (d->mode.State == EfiSimpleNetworkInitialized)
		snp_shutdown(this);
	d->mode.State = EfiSimpleNetworkStopped;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_initialize(EFI_SIMPLE_NETWORK_PROTOCOL *this, UINTN extra_rx, UINTN extra_tx)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	struct nv_dev *d = nv_of(this);
	if (d->mode.State == EfiSimpleNetworkStopped)
		return EFI_NOT_STARTED;
	nv_queues_reset(d);
	d->diag.last_frame_us = fw_stor_now_us();
	d->mode.State = EfiSimpleNetworkInitialized;
	d->mode.ReceiveFilterSetting = 0;
	d->mode.MCastFilterCount = 0;
	/* Link state as the host reports it now. */
	uint32_t st, link = 1;
	if (!EFI_ERROR(nv_oid(d, RNDIS_MSG_QUERY, RNDIS_OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, &st)) &&
	    st == RNDIS_STATUS_SUCCESS && nv_query_value(d, &link, 4) == 4)
		d->mode.MediaPresent = link == 0; /* NdisMediaStateConnected */
	return nv_filter_apply(d);
}

static EFI_STATUS EFIAPI snp_reset(EFI_SIMPLE_NETWORK_PROTOCOL *this, BOOLEAN ext)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	nv_poll(d);
	nv_queues_reset(d);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_receive_filters(EFI_SIMPLE_NETWORK_PROTOCOL *this, uint32_t enable, uint32_t disable,
					     BOOLEAN reset_mcast, UINTN mcast_cnt, EFI_MAC_ADDRESS *mcast)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	EFI_SIMPLE_NETWORK_MODE *m = &d->mode;
	if ((enable | disable) & ~m->ReceiveFilterMask)
		return EFI_INVALID_PARAMETER;
	if (!reset_mcast && mcast_cnt) {
		if (mcast_cnt > m->MaxMCastFilterCount || !mcast)
			return EFI_INVALID_PARAMETER;
		for (UINTN i = 0; i < mcast_cnt; i++)
			if (!(mcast[i].Addr[0] & 1))
				return EFI_INVALID_PARAMETER;
	}
	m->ReceiveFilterSetting = (m->ReceiveFilterSetting | enable) & ~disable;
	if (reset_mcast) {
		m->MCastFilterCount = 0;
	} else if (mcast_cnt) {
		for (UINTN i = 0; i < mcast_cnt; i++)
			m->MCastFilter[i] = mcast[i];
		m->MCastFilterCount = (uint32_t)mcast_cnt;
	}
	return nv_filter_apply(d);
}

static EFI_STATUS EFIAPI snp_station_address(EFI_SIMPLE_NETWORK_PROTOCOL *this, BOOLEAN reset, EFI_MAC_ADDRESS *mac)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	if (!reset && !mac)
		return EFI_INVALID_PARAMETER;
	/* The host filters on the adapter's own address (MacAddressChangeable is FALSE). */
	return reset ? EFI_SUCCESS : EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI snp_statistics(EFI_SIMPLE_NETWORK_PROTOCOL *this, BOOLEAN reset, UINTN *size, void *table)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	return EFI_ERROR(s) ? s : EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI snp_mcast_ip_to_mac(EFI_SIMPLE_NETWORK_PROTOCOL *this, BOOLEAN ipv6, EFI_IP_ADDRESS *ip,
					     EFI_MAC_ADDRESS *mac)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	if (!ip || !mac)
		return EFI_INVALID_PARAMETER;
	efi_memset(mac, 0, sizeof(*mac));
	if (ipv6) { /* RFC 2464: 33:33 and the low 32 bits */
		if (ip->v6[0] != 0xff)
			return EFI_INVALID_PARAMETER;
		mac->Addr[0] = mac->Addr[1] = 0x33;
		efi_memcpy(mac->Addr + 2, ip->v6 + 12, 4);
	} else { /* RFC 1112: 01:00:5e and the low 23 bits */
		if ((ip->v4[0] & 0xf0) != 0xe0)
			return EFI_INVALID_PARAMETER;
		mac->Addr[0] = 0x01;
		mac->Addr[2] = 0x5e;
		mac->Addr[3] = ip->v4[1] & 0x7f;
		mac->Addr[4] = ip->v4[2];
		mac->Addr[5] = ip->v4[3];
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_nvdata(EFI_SIMPLE_NETWORK_PROTOCOL *this, BOOLEAN rw, UINTN off, UINTN size, void *buf)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	return EFI_ERROR(s) ? s : EFI_UNSUPPORTED;
}

static EFI_STATUS EFIAPI snp_get_status(EFI_SIMPLE_NETWORK_PROTOCOL *this, uint32_t *irq, void **txbuf)
{
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	nv_poll(d);
	d->diag.gs++;
	if (irq)
		*irq = d->rx_count ? EFI_SIMPLE_NETWORK_RECEIVE_INTERRUPT : 0;
	if (txbuf) {
		*txbuf = NULL;
		if (d->txd_count) {
			d->diag.gs_txbuf++;
			*txbuf = d->tx_done[d->txd_head];
			d->txd_head = (d->txd_head + 1) % NV_TXDONE;
			d->txd_count--;
			if (irq)
				*irq |= EFI_SIMPLE_NETWORK_TRANSMIT_INTERRUPT;
		}
	}
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_transmit(EFI_SIMPLE_NETWORK_PROTOCOL *this, UINTN hsize, UINTN size, void *buf,
				      EFI_MAC_ADDRESS *src, EFI_MAC_ADDRESS *dst, uint16_t *proto)
{
	if (!buf)
		return EFI_INVALID_PARAMETER;
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	if (hsize) {
		if (hsize != NV_ETH_HLEN || !dst || !proto)
			return EFI_INVALID_PARAMETER;
		if (size < hsize)
			return EFI_BUFFER_TOO_SMALL;
		uint8_t *f = buf;
		efi_memcpy(f, dst->Addr, 6);
		efi_memcpy(f + 6, src ? src->Addr : d->mode.CurrentAddress.Addr, 6);
		f[12] = (uint8_t)(*proto >> 8);
		f[13] = (uint8_t)*proto;
	}
	if (size < NV_ETH_HLEN)
		return EFI_BUFFER_TOO_SMALL;
	if (size > d->mode.MaxPacketSize + NV_ETH_HLEN)
		return EFI_INVALID_PARAMETER;
	uint32_t sec = 0;
	uint64_t end = 0;
	for (;;) {
		for (sec = 1; sec < d->nr_tx && (d->tx_busy & (1u << sec)); sec++)
			;
		if (sec < d->nr_tx)
			break;
		nv_poll(d);
		uint64_t now = fw_stor_now_us();
		if (!end) {
			end = now + NV_TX_WAIT_US;
			d->diag.tx_waits++;
		} else if (now > end) {
			d->diag.tx_fail++;
			nv_diag_report(d, "no send section completed for 1 s");
			return EFI_NOT_READY; /* the host has not completed a send for a second */
		}
	}
	uint32_t mlen = netvsc_rndis_packet_build(d->sbuf + (size_t)sec * d->ssec_size, d->ssec_size, buf, (uint32_t)size,
						  NULL, NULL, 0);
	if (!mlen)
		return EFI_INVALID_PARAMETER;
	struct nvsp_message m;
	netvsc_rndis_msg_init(&m, NVSP_CHANNEL_TYPE_DATA, sec, mlen);
	d->tx_busy |= 1u << sec;
	s = nv_send(d, &m, NV_TID_TX + sec, true);
	if (EFI_ERROR(s)) {
		d->tx_busy &= ~(1u << sec);
		d->diag.tx_fail++;
		nv_diag_report(d, "transmit failed");
		return s == EFI_TIMEOUT ? EFI_NOT_READY : EFI_DEVICE_ERROR;
	}
	d->diag.tx_ok++;
	/* The frame is in the send buffer: the caller's buffer is free again. */
	if (d->txd_count == NV_TXDONE) { /* a caller that never collects them: forget the oldest */
		d->txd_head = (d->txd_head + 1) % NV_TXDONE;
		d->txd_count--;
	}
	d->tx_done[(d->txd_head + d->txd_count++) % NV_TXDONE] = buf;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI snp_receive(EFI_SIMPLE_NETWORK_PROTOCOL *this, UINTN *hsize, UINTN *size, void *buf,
				     EFI_MAC_ADDRESS *src, EFI_MAC_ADDRESS *dst, uint16_t *proto)
{
	if (!size || !buf)
		return EFI_INVALID_PARAMETER;
	struct nv_dev *d;
	EFI_STATUS s = nv_enter(this, EfiSimpleNetworkInitialized, &d);
	if (EFI_ERROR(s))
		return s;
	if (!d->rx_count)
		nv_poll(d);
	if (!d->rx_count) {
		d->diag.rx_empty++;
		return EFI_NOT_READY;
	}
	uint32_t len = d->rx_len[d->rx_head];
	if (*size < len) {
		d->diag.rx_small++;
		*size = len;
		return EFI_BUFFER_TOO_SMALL;
	}
	d->diag.rx_ok++;
	d->diag.last_frame_us = fw_stor_now_us();
	const uint8_t *f = d->rx[d->rx_head];
	efi_memcpy(buf, f, len);
	*size = len;
	if (hsize)
		*hsize = NV_ETH_HLEN;
	if (dst) {
		efi_memset(dst, 0, sizeof(*dst));
		efi_memcpy(dst->Addr, f, 6);
	}
	if (src) {
		efi_memset(src, 0, sizeof(*src));
		efi_memcpy(src->Addr, f + 6, 6);
	}
	if (proto)
		*proto = (uint16_t)(f[12] << 8 | f[13]);
	d->rx_head = (d->rx_head + 1) % NV_RXQ;
	d->rx_count--;
	return EFI_SUCCESS;
}

static void EFIAPI snp_wait_notify(EFI_EVENT ev, void *ctx)
{
	struct nv_dev *d = ctx;
	if (d->mode.State != EfiSimpleNetworkInitialized)
		return;
	if (!d->rx_count)
		nv_poll(d);
	if (d->rx_count)
		fw.bs->SignalEvent(ev);
}

/* ---- binding ---- */
/* ExitBootServices (fw_vmbus_channel_on_exit): the kernel is about to own every page we gave the host,
 * so the host lets go of all of them before we return, in the order Hyper-V's clients use: the
 * buffers revoked (no answer comes), the channel closed (the host stops using the rings and
 * buffers), then the buffers' GPADLs torn down (the host answers once it holds no reference). */
static void nv_exit(void *ctx)
{
	struct nv_dev *d = ctx;
	struct nvsp_message m;
	if (d->rbuf_on) {
		efi_memset(&m, 0, sizeof(m));
		m.type = NVSP_MSG1_TYPE_REVOKE_RECV_BUF;
		m.u.revoke.id = NVSP_RECV_BUFFER_ID;
		nv_send(d, &m, d->next_tid++, false);
	}
	if (d->sbuf_on) {
		efi_memset(&m, 0, sizeof(m));
		m.type = NVSP_MSG1_TYPE_REVOKE_SEND_BUF;
		m.u.revoke.id = NV_SEND_BUFFER_ID;
		nv_send(d, &m, d->next_tid++, false);
	}
	d->rbuf_on = d->sbuf_on = false;
	d->mode.State = EfiSimpleNetworkStopped;
	vmbus_client_channel_close(&d->ch);
	struct vmbus_client *cl = fw_vmbus_client();
	if (d->rgpadl)
		vmbus_client_gpadl_teardown(cl, d->relid, d->rgpadl);
	if (d->sgpadl)
		vmbus_client_gpadl_teardown(cl, d->relid, d->sgpadl);
	d->rgpadl = d->sgpadl = 0;
}

static void *nv_pages(uint32_t bytes)
{
	/* Not cleared (the host writes what we read); below 4 GiB for the GPADL. */
	EFI_PHYSICAL_ADDRESS a = 0xffffffffull;
	if (EFI_ERROR(fw.bs->AllocatePages(AllocateMaxAddress, EfiBootServicesData, bytes / 4096, &a)))
		return NULL;
	return (void *)(uintptr_t)a;
}

/* Channel, NVSP, buffers, RNDIS, the MAC. Errors name the step for the console. */
static EFI_STATUS nv_open(struct nv_dev *d, const char **step)
{
	*step = "channel open";
	EFI_STATUS s = fw_vmbus_channel_open(&d->ch, d->relid, NV_RING_BYTES);
	if (EFI_ERROR(s))
		return s;
	struct nvsp_message m, r;
	*step = "NVSP version";
	efi_memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG_TYPE_INIT;
	m.u.init.min_protocol_ver = m.u.init.max_protocol_ver = NVSP_PROTOCOL_VERSION_61;
	if (EFI_ERROR(s = nv_request(d, &m, &r)))
		return s;
	if (r.type != NVSP_MSG_TYPE_INIT_COMPLETE || r.u.init_complete.status != NVSP_STAT_SUCCESS)
		return EFI_UNSUPPORTED;
	efi_memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG2_TYPE_SEND_NDIS_CONFIG;
	m.u.ndis_config.mtu = 1500 + NV_ETH_HLEN;
	if (EFI_ERROR(s = nv_send(d, &m, d->next_tid++, false)))
		return s;
	efi_memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_NDIS_VER;
	m.u.ndis_ver.ndis_major_ver = 6;
	m.u.ndis_ver.ndis_minor_ver = 30;
	if (EFI_ERROR(s = nv_send(d, &m, d->next_tid++, false)))
		return s;
	*step = "buffers";
	d->rbuf = nv_pages(NV_RBUF_BYTES);
	d->sbuf = nv_pages(NV_SBUF_BYTES);
	d->rx = fw_stor_alloc(NV_RXQ * sizeof(*d->rx));
	struct vmbus_client *cl = fw_vmbus_client();
	if (!d->rbuf || !d->sbuf || !d->rx)
		return EFI_OUT_OF_RESOURCES;
	fw_vmbus_channel_on_exit(&d->ch, nv_exit, d);
	if (vmbus_client_gpadl_create(cl, d->relid, d->rbuf, NV_RBUF_BYTES, &d->rgpadl) ||
	    vmbus_client_gpadl_create(cl, d->relid, d->sbuf, NV_SBUF_BYTES, &d->sgpadl))
		return EFI_DEVICE_ERROR;
	efi_memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_RECV_BUF;
	m.u.send_buf.gpadl_handle = d->rgpadl;
	m.u.send_buf.id = NVSP_RECV_BUFFER_ID;
	if (EFI_ERROR(s = nv_request(d, &m, &r)))
		return s;
	d->rbuf_on = r.u.recv_buf_complete.status == NVSP_STAT_SUCCESS;
	if (!d->rbuf_on)
		return EFI_DEVICE_ERROR;
	efi_memset(&m, 0, sizeof(m));
	m.type = NVSP_MSG1_TYPE_SEND_SEND_BUF;
	m.u.send_buf.gpadl_handle = d->sgpadl;
	m.u.send_buf.id = NV_SEND_BUFFER_ID;
	if (EFI_ERROR(s = nv_request(d, &m, &r)))
		return s;
	d->sbuf_on = r.u.send_buf_complete.status == NVSP_STAT_SUCCESS;
	d->ssec_size = r.u.send_buf_complete.section_size;
	if (!d->sbuf_on || d->ssec_size < NV_FRAME_MAX + 64 || d->ssec_size > NV_SBUF_BYTES / 2)
		return EFI_DEVICE_ERROR;
	d->nr_tx = NV_SBUF_BYTES / d->ssec_size;
	if (d->nr_tx > NV_TX_MAX)
		d->nr_tx = NV_TX_MAX;
	*step = "RNDIS initialisation";
	uint8_t init[sizeof(struct rndis_header) + sizeof(struct rndis_init_request)];
	struct rndis_header h = { RNDIS_MSG_INIT, sizeof(init) };
	struct rndis_init_request ir = { .req_id = (uint32_t)d->next_tid++, .major_ver = RNDIS_MAJOR_VERSION,
					 .minor_ver = RNDIS_MINOR_VERSION, .max_xfer_size = 0x4000 };
	efi_memcpy(init, &h, sizeof(h));
	efi_memcpy(init + sizeof(h), &ir, sizeof(ir));
	uint32_t st;
	if (EFI_ERROR(s = nv_rndis_ctl(d, init, sizeof(init), ir.req_id, &st)))
		return s;
	if (st != RNDIS_STATUS_SUCCESS)
		return EFI_DEVICE_ERROR;
	*step = "MAC address query";
	uint8_t mac[6];
	if (EFI_ERROR(s = nv_oid(d, RNDIS_MSG_QUERY, RNDIS_OID_802_3_PERMANENT_ADDRESS, NULL, 0, &st)))
		return s;
	if (st != RNDIS_STATUS_SUCCESS || nv_query_value(d, mac, 6) != 6)
		return EFI_DEVICE_ERROR;
	efi_memcpy(d->pub.mac, mac, 6);
	return EFI_SUCCESS;
}

static void nv_mode_init(struct nv_dev *d)
{
	EFI_SIMPLE_NETWORK_MODE *m = &d->mode;
	m->State = EfiSimpleNetworkStopped;
	m->HwAddressSize = 6;
	m->MediaHeaderSize = NV_ETH_HLEN;
	m->MaxPacketSize = 1500;
	m->ReceiveFilterMask = EFI_SIMPLE_NETWORK_RECEIVE_UNICAST | EFI_SIMPLE_NETWORK_RECEIVE_MULTICAST |
			       EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST | EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS |
			       EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST;
	m->MaxMCastFilterCount = MAX_MCAST_FILTER_CNT;
	efi_memcpy(m->CurrentAddress.Addr, d->pub.mac, 6);
	efi_memcpy(m->PermanentAddress.Addr, d->pub.mac, 6);
	efi_memset(m->BroadcastAddress.Addr, 0xff, 6);
	m->IfType = NET_IFTYPE_ETHERNET;
	m->MacAddressChangeable = 0;
	m->MultipleTxSupported = 1;
	m->MediaPresentSupported = 1;
	m->MediaPresent = 1;
	EFI_SIMPLE_NETWORK_PROTOCOL *p = &d->snp;
	p->Revision = EFI_SIMPLE_NETWORK_PROTOCOL_REVISION;
	p->Start = snp_start;
	p->Stop = snp_stop;
	p->Initialize = snp_initialize;
	p->Reset = snp_reset;
	p->Shutdown = snp_shutdown;
	p->ReceiveFilters = snp_receive_filters;
	p->StationAddress = snp_station_address;
	p->Statistics = snp_statistics;
	p->MCastIpToMac = snp_mcast_ip_to_mac;
	p->NvData = snp_nvdata;
	p->GetStatus = snp_get_status;
	p->Transmit = snp_transmit;
	p->Receive = snp_receive;
	p->Mode = m;
}

uint32_t fw_netvsc_init(void)
{
	struct vmbus_client *cl = fw_vmbus_client();
	if (!cl)
		return 0;
	struct vmbus_guid cls;
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &cls);
	uint32_t nr = 0;
	for (uint32_t i = 0; i < cl->nr_offers; i++) {
		const struct vmbus_client_offer *o = &cl->offers[i];
		if (o->rescinded || o->msg.offer.sub_channel_index != 0 ||
		    efi_memcmp(&o->msg.offer.if_type, &cls, sizeof(cls)))
			continue;
		struct nv_dev *d = fw_stor_zalloc(sizeof(*d));
		if (!d)
			break;
		d->relid = o->msg.child_relid;
		d->next_tid = 1;
		d->pub.nr = nr++;
		const char *step;
		EFI_STATUS s = nv_open(d, &step);
		if (EFI_ERROR(s)) {
			/* The channel stays as it is (ExitBootServices closes it); the memory is a few pages. */
			fw_printf("network: adapter %u: %s failed (0x%llx)\n", d->pub.nr, step, (unsigned long long)s);
			continue;
		}
		nv_mode_init(d);
		efi_dp_vmbus_mac_init(&d->dp, (const uint8_t *)&o->msg.offer.if_instance, d->pub.mac);
		if (EFI_ERROR(fw.bs->CreateEvent(EVT_NOTIFY_WAIT, TPL_NOTIFY, snp_wait_notify, d, &d->snp.WaitForPacket)))
			d->snp.WaitForPacket = NULL;
		static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID, snp_guid = EFI_SIMPLE_NETWORK_PROTOCOL_GUID;
		const EFI_GUID *guids[2] = { &dp_guid, &snp_guid };
		void *ifaces[2] = { &d->dp, &d->snp };
		EFI_HANDLE h = NULL;
		if (EFI_ERROR(s = fw_stor_install(&h, 2, guids, ifaces))) {
			fw_printf("network: adapter %u: protocol install failed (0x%llx)\n", d->pub.nr, (unsigned long long)s);
			continue;
		}
		d->pub.handle = h;
		d->pub.snp = &d->snp;
		d->pub.path = &d->dp.vmbus.Header;
		*nv_tail = &d->pub;
		nv_tail = &d->pub.next;
		const uint8_t *a = d->pub.mac;
		fw_printf("network: adapter %u, MAC %02x:%02x:%02x:%02x:%02x:%02x\n", d->pub.nr, a[0], a[1], a[2], a[3],
			  a[4], a[5]);
	}
	return nr;
}
