/* Guest-side storvsc over the loopback guest (see storvsc_guest.h). */
#include "support/storvsc_guest.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "storvsc_client.h"
#include "util/clock.h"

#define INIT_ID 0xFFFFFFFFFFFFFFFDull /* Linux's VMBUS_RQST_INIT */
#define WAIT_NS (5ull * 1000000000ull)

void *storvsc_guest_alloc(struct storvsc_guest *g, uint32_t len)
{
	uint32_t pages = (len + 4095) / 4096;
	return g->lb->ops.alloc_pages(g->lb->ops.ctx, pages ? pages : 1);
}

/* Next packet on chan into g->rxbuf: 0, or -EAGAIN. */
static int recv_pkt(struct storvsc_guest *g, uint32_t chan, struct vmbus_packet_descriptor *d, uint32_t *len)
{
	int rc = vmbus_client_recv(&g->ch[chan], g->rxbuf, sizeof(g->rxbuf), len);
	if (rc)
		return rc == -VMBUS_EAGAIN ? -EAGAIN : rc;
	vmbus_client_recv_done(&g->ch[chan]);
	memcpy(d, g->rxbuf, sizeof(*d));
	return 0;
}

int storvsc_guest_ctrl(struct storvsc_guest *g, struct storvsp_packet *pk)
{
	pk->flags = STORVSP_FLAG_REQUEST_COMPLETION;
	int rc = vmbus_client_send(&g->ch[0], VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, INIT_ID,
				   NULL, 0, pk, sizeof(*pk));
	if (rc)
		return rc;
	uint64_t end = clock_mono_ns() + WAIT_NS;
	while (clock_mono_ns() < end) {
		struct vmbus_packet_descriptor d;
		uint32_t len;
		if (recv_pkt(g, 0, &d, &len)) {
			vmbus_loopback_wait(g->lb, 1);
			continue;
		}
		uint64_t id;
		if (d.trans_id != INIT_ID || storvsc_client_parse(g->rxbuf, len, &id, pk))
			continue;
		return 0;
	}
	return -ETIMEDOUT;
}

static int storvsc_guest_ctrl_fn(void *opaque, struct storvsp_packet *pk)
{
	return storvsc_guest_ctrl(opaque, pk);
}

int storvsc_guest_open(struct storvsc_guest *g, struct vmbus_loopback *lb, uint32_t relid, uint16_t version)
{
	memset(g, 0, sizeof(*g));
	g->lb = lb;
	g->relid = relid;
	uint8_t userdata[24] = { 0 };
	int rc = vmbus_client_channel_open(&lb->cl, &g->ch[0], relid, 128 << 10, 128 << 10, 0, userdata, sizeof(userdata));
	if (rc)
		return rc;
	g->nr_channels = 1;
	return storvsc_client_init(storvsc_guest_ctrl_fn, g, version, &g->version, &g->props);
}

int storvsc_guest_subchannels(struct storvsc_guest *g, uint16_t n)
{
	struct storvsp_packet pk = { .operation = STORVSP_OP_CREATE_SUB_CHANNELS };
	pk.sub_channel_count = n;
	int rc = storvsc_guest_ctrl(g, &pk);
	if (rc)
		return rc;
	if (pk.status)
		return -EIO;
	/* The offers arrived as channel messages; open each sub-channel. */
	while (vmbus_client_poll(&g->lb->cl) == 0)
		;
	const struct vmbus_client_offer *prim = NULL;
	for (uint32_t i = 0; i < g->lb->cl.nr_offers; i++)
		if (g->lb->cl.offers[i].msg.child_relid == g->relid)
			prim = &g->lb->cl.offers[i];
	if (!prim)
		return -ENODEV;
	for (uint16_t idx = 1; idx <= n && g->nr_channels < STORVSC_GUEST_MAX_CHANNELS; idx++) {
		const struct vmbus_client_offer *o = vmbus_client_find_offer(&g->lb->cl, &prim->msg.offer.if_type, idx);
		if (!o)
			break;
		uint8_t userdata[24] = { 0 };
		rc = vmbus_client_channel_open(&g->lb->cl, &g->ch[g->nr_channels], o->msg.child_relid, 128 << 10, 128 << 10,
					       0, userdata, sizeof(userdata));
		if (rc)
			return rc;
		g->nr_channels++;
	}
	return (int)g->nr_channels;
}

int storvsc_guest_submit(struct storvsc_guest *g, uint32_t chan, const struct storvsc_io *io, uint64_t id)
{
	struct storvsp_packet pk;
	storvsc_client_srb(&pk, io->cdb, io->cdb_len, io->lun, io->data_in, io->len);
	pk.srb.path_id = io->path;
	pk.srb.target_id = io->target;
	pk.srb.path_id = io->path;
	pk.srb.target_id = io->target;
	/* The whole 16-byte CDB goes on the wire, as the tests set it (bytes past cdb_len included). */
	memcpy(pk.srb.cdb, io->cdb, sizeof(io->cdb));
	bool data = io->len && io->data;
	uint64_t gpa = data ? g->lb->ops.virt_to_phys(g->lb->ops.ctx, io->data) : 0;
	int rc = storvsc_client_send(&g->ch[chan], id, &pk, gpa, data ? io->len : 0);
	return rc == -VMBUS_EAGAIN ? -EAGAIN : rc == -VMBUS_EINVAL ? -EINVAL : rc;
}

int storvsc_guest_wait(struct storvsc_guest *g, int timeout_ms)
{
	int rc = vmbus_loopback_wait(g->lb, timeout_ms);
	return rc < 0 ? rc : 0;
}

int storvsc_guest_reap(struct storvsc_guest *g, uint32_t chan, struct storvsc_io *io, uint64_t *id)
{
	uint32_t len;
	int rc = vmbus_client_recv(&g->ch[chan], g->rxbuf, sizeof(g->rxbuf), &len);
	if (rc == -VMBUS_EAGAIN && !g->manual_wait && vmbus_loopback_wait(g->lb, 0) > 0)
		rc = vmbus_client_recv(&g->ch[chan], g->rxbuf, sizeof(g->rxbuf), &len);
	if (rc)
		return rc == -VMBUS_EAGAIN ? -EAGAIN : rc;
	vmbus_client_recv_done(&g->ch[chan]);
	struct storvsp_packet pk;
	if (storvsc_client_parse(g->rxbuf, len, id, &pk))
		return -EPROTO;
	if (*id == 0) {
		io->status = pk.operation;
		return 1;
	}
	io->status = pk.status;
	io->srb_status = pk.srb.srb_status;
	io->scsi_status = pk.srb.scsi_status;
	io->sense_len = pk.srb.sense_info_length;
	memcpy(io->sense, pk.srb.sense_data, sizeof(io->sense));
	io->xfer = pk.srb.data_transfer_length;
	return 0;
}

int storvsc_guest_run(struct storvsc_guest *g, struct storvsc_io *io)
{
	static uint64_t next_id = 1;
	uint64_t want = next_id++;
	int rc = storvsc_guest_submit(g, 0, io, want);
	if (rc)
		return rc;
	uint64_t end = clock_mono_ns() + WAIT_NS;
	while (clock_mono_ns() < end) {
		uint64_t id;
		rc = storvsc_guest_reap(g, 0, io, &id);
		if (rc == 0 && id == want)
			return 0;
		if (rc == -EAGAIN)
			vmbus_loopback_wait(g->lb, 1);
	}
	return -ETIMEDOUT;
}

void storvsc_guest_close(struct storvsc_guest *g)
{
	for (uint32_t i = g->nr_channels; i-- > 0;)
		vmbus_client_channel_close(&g->ch[i]);
	g->nr_channels = 0;
}
