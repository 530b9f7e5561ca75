#include "vmbus_client.h"

#define GPADL_FIRST_HANDLE 0xE1E10u /* where Linux starts; any non-zero value works */

static const uint32_t client_versions[] = {
	VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1, VMBUS_VERSION_WIN10_V5,
	VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,      VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
};

void vmbus_client_init(struct vmbus_client *cl, const struct vmbus_client_ops *ops)
{
	vmbus_mem_zero(cl, sizeof(*cl));
	cl->ops = ops;
	cl->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
	cl->next_gpadl = GPADL_FIRST_HANDLE;
}

int vmbus_client_post(struct vmbus_client *cl, uint32_t connection_id, const void *msg, uint32_t len,
		      uint16_t *hv_status)
{
	uint16_t st = HV_STATUS_INSUFFICIENT_BUFFERS;
	/* Like Linux, retry a host that is short of buffers a bounded number of times. */
	for (int i = 0; i < 100 && st == HV_STATUS_INSUFFICIENT_BUFFERS; i++)
		st = cl->ops->post_message(cl->ops->ctx, connection_id, msg, len);
	if (hv_status)
		*hv_status = st;
	return st == HV_STATUS_SUCCESS ? 0 : -VMBUS_EIO;
}

static int client_post(struct vmbus_client *cl, const void *msg, uint32_t len)
{
	return vmbus_client_post(cl, cl->msg_conn_id, msg, len, NULL);
}

static uint32_t msg_u32(const void *buf, uint32_t off)
{
	uint32_t v;
	vmbus_mem_copy(&v, (const uint8_t *)buf + off, 4);
	return v;
}

/* Records asynchronous messages; returns true when msg was one. */
static bool client_handle_async(struct vmbus_client *cl, const void *msg, uint32_t len)
{
	uint32_t type = msg_u32(msg, 0);
	if (type == CHANNELMSG_OFFERCHANNEL && len >= sizeof(struct vmbus_channel_offer_channel)) {
		uint32_t relid = msg_u32(msg, offsetof(struct vmbus_channel_offer_channel, child_relid));
		struct vmbus_client_offer *slot = NULL;
		for (uint32_t i = 0; i < cl->nr_offers; i++)
			if (cl->offers[i].msg.child_relid == relid)
				slot = &cl->offers[i]; /* a relid reused after release */
		if (!slot && cl->nr_offers < VMBUS_CLIENT_MAX_OFFERS)
			slot = &cl->offers[cl->nr_offers++];
		if (slot) {
			vmbus_mem_copy(&slot->msg, msg, sizeof(slot->msg));
			slot->rescinded = false;
		}
		return true;
	}
	if (type == CHANNELMSG_RESCIND_CHANNELOFFER && len >= sizeof(struct vmbus_channel_relid_msg)) {
		uint32_t relid = msg_u32(msg, 8);
		for (uint32_t i = 0; i < cl->nr_offers; i++)
			if (cl->offers[i].msg.child_relid == relid)
				cl->offers[i].rescinded = true;
		return true;
	}
	if (type == CHANNELMSG_ALLOFFERS_DELIVERED) {
		cl->all_offers_delivered = true;
		return true;
	}
	return false;
}

/* Waits for a message of type whose u32 at key_off equals key (key_off 0: any). Returns its length
 * (the message is in cl->msg_buf) or a negative error. */
static int client_wait(struct vmbus_client *cl, uint32_t type, uint32_t key_off, uint32_t key)
{
	for (;;) {
		uint32_t len = 0;
		int rc = cl->ops->next_message(cl->ops->ctx, cl->msg_buf, &len);
		if (rc)
			return rc;
		if (len < 8 || len > HV_MESSAGE_PAYLOAD_BYTE_COUNT)
			continue;
		uint32_t t = msg_u32(cl->msg_buf, 0);
		if (t == type && (!key_off || (len >= key_off + 4 && msg_u32(cl->msg_buf, key_off) == key)))
			return (int)len;
		if (t == type && type == CHANNELMSG_ALLOFFERS_DELIVERED)
			return (int)len;
		client_handle_async(cl, cl->msg_buf, len);
	}
}

int vmbus_client_poll(struct vmbus_client *cl)
{
	uint32_t len = 0;
	int rc = cl->ops->next_message(cl->ops->ctx, cl->msg_buf, &len);
	if (rc)
		return rc;
	client_handle_async(cl, cl->msg_buf, len);
	return 0;
}

int vmbus_client_connect(struct vmbus_client *cl, uint32_t target_vcpu, uint32_t max_version)
{
	for (uint32_t i = 0; i < sizeof(client_versions) / sizeof(client_versions[0]); i++) {
		uint32_t v = client_versions[i];
		if (max_version && v > max_version)
			continue;
		struct vmbus_channel_initiate_contact m;
		vmbus_mem_zero(&m, sizeof(m));
		m.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
		m.vmbus_version_requested = v;
		m.target_vcpu = target_vcpu;
		uint32_t conn = VMBUS_MESSAGE_CONNECTION_ID;
		if (v >= VMBUS_VERSION_WIN10_V5) {
			m.msg_sint = VMBUS_MESSAGE_SINT;
			conn = VMBUS_MESSAGE_CONNECTION_ID_4;
		} else {
			/* Older versions want an interrupt page and two monitor pages. */
			if (!cl->legacy_pages)
				cl->legacy_pages = cl->ops->alloc_pages(cl->ops->ctx, 3);
			if (!cl->legacy_pages)
				return -VMBUS_ENOMEM;
			uint64_t gpa = cl->ops->virt_to_phys(cl->ops->ctx, cl->legacy_pages);
			m.interrupt_page = gpa;
			m.monitor_page1 = gpa + HV_PAGE_SIZE;
			m.monitor_page2 = gpa + 2 * HV_PAGE_SIZE;
		}
		uint16_t st;
		if (vmbus_client_post(cl, conn, &m, sizeof(m), &st)) {
			if (st == HV_STATUS_INVALID_CONNECTION_ID)
				continue; /* an older host without connection 4: try the next version */
			return -VMBUS_EIO;
		}
		int rc = client_wait(cl, CHANNELMSG_VERSION_RESPONSE, 0, 0);
		if (rc < 0)
			return rc;
		struct vmbus_channel_version_response r;
		vmbus_mem_copy(&r, cl->msg_buf, sizeof(r));
		if (!r.version_supported)
			continue;
		cl->connected = true;
		cl->version = v;
		cl->target_vcpu = target_vcpu;
		cl->msg_conn_id = v >= VMBUS_VERSION_WIN10_V5 ? r.msg_conn_id : VMBUS_MESSAGE_CONNECTION_ID;
		return 0;
	}
	return -VMBUS_ENODEV;
}

int vmbus_client_request_offers(struct vmbus_client *cl)
{
	struct vmbus_channel_message_header h = { .msgtype = CHANNELMSG_REQUESTOFFERS };
	cl->all_offers_delivered = false;
	int rc = client_post(cl, &h, sizeof(h));
	if (rc)
		return rc;
	rc = client_wait(cl, CHANNELMSG_ALLOFFERS_DELIVERED, 0, 0);
	if (rc < 0)
		return rc;
	cl->all_offers_delivered = true;
	return 0;
}

const struct vmbus_client_offer *vmbus_client_find_offer(const struct vmbus_client *cl,
							  const struct vmbus_guid *class_id, uint16_t sub_index)
{
	for (uint32_t i = 0; i < cl->nr_offers; i++) {
		const struct vmbus_client_offer *o = &cl->offers[i];
		if (!o->rescinded && o->msg.offer.sub_channel_index == sub_index &&
		    vmbus_guid_equal(&o->msg.offer.if_type, class_id))
			return o;
	}
	return NULL;
}

/* pfn i of the GPADL: from the list, or from the buffer's pages. */
static uint64_t gpadl_pfn(struct vmbus_client *cl, const uint64_t *pfns, const uint8_t *buf, uint32_t i)
{
	if (pfns)
		return pfns[i];
	return cl->ops->virt_to_phys(cl->ops->ctx, buf + (uint64_t)i * HV_PAGE_SIZE) >> HV_PAGE_SHIFT;
}

static int gpadl_create(struct vmbus_client *cl, uint32_t relid, const uint64_t *pfns, const uint8_t *buf,
			uint32_t n, uint32_t *gpadl_out)
{
	if (n == 0 || n > 0xFFFFFFFFu / HV_PAGE_SIZE)
		return -VMBUS_EINVAL;
	uint32_t id = cl->next_gpadl++;
	uint64_t *msg = cl->msg_buf; /* reused as the send buffer; replies come only after the last body */
	uint8_t *p = (uint8_t *)msg;
	struct vmbus_channel_gpadl_header h = {
		.header.msgtype = CHANNELMSG_GPADL_HEADER,
		.child_relid = relid,
		.gpadl = id,
		/* Truncated to 16 bits exactly as Linux does; the host trusts the range's byte count. */
		.range_buflen = (uint16_t)(sizeof(struct vmbus_gpa_range) + (uint64_t)n * 8u),
		.rangecount = 1,
	};
	struct vmbus_gpa_range r = { .byte_count = n * HV_PAGE_SIZE, .byte_offset = 0 };
	vmbus_mem_copy(p, &h, sizeof(h));
	vmbus_mem_copy(p + sizeof(h), &r, sizeof(r));
	uint32_t first = n < VMBUS_GPADL_HEADER_MAX_PFNS ? n : VMBUS_GPADL_HEADER_MAX_PFNS;
	for (uint32_t i = 0; i < first; i++) {
		uint64_t pfn = gpadl_pfn(cl, pfns, buf, i);
		vmbus_mem_copy(p + sizeof(h) + sizeof(r) + i * 8u, &pfn, 8);
	}
	int rc = client_post(cl, p, (uint32_t)(sizeof(h) + sizeof(r)) + first * 8u);
	for (uint32_t done = first; !rc && done < n;) {
		uint32_t k = n - done < VMBUS_GPADL_BODY_MAX_PFNS ? n - done : VMBUS_GPADL_BODY_MAX_PFNS;
		struct vmbus_channel_gpadl_body b = { .header.msgtype = CHANNELMSG_GPADL_BODY, .gpadl = id };
		vmbus_mem_copy(p, &b, sizeof(b));
		for (uint32_t i = 0; i < k; i++) {
			uint64_t pfn = gpadl_pfn(cl, pfns, buf, done + i);
			vmbus_mem_copy(p + sizeof(b) + i * 8u, &pfn, 8);
		}
		rc = client_post(cl, p, (uint32_t)sizeof(b) + k * 8u);
		done += k;
	}
	if (rc)
		return rc;
	rc = client_wait(cl, CHANNELMSG_GPADL_CREATED, offsetof(struct vmbus_channel_gpadl_created, gpadl), id);
	if (rc < 0)
		return rc;
	if (msg_u32(cl->msg_buf, offsetof(struct vmbus_channel_gpadl_created, creation_status)))
		return -VMBUS_EIO;
	*gpadl_out = id;
	return 0;
}

int vmbus_client_gpadl_create(struct vmbus_client *cl, uint32_t relid, const void *buf, uint32_t size,
			      uint32_t *gpadl)
{
	if (size == 0 || size % HV_PAGE_SIZE)
		return -VMBUS_EINVAL;
	return gpadl_create(cl, relid, NULL, buf, size / HV_PAGE_SIZE, gpadl);
}

int vmbus_client_gpadl_create_pfns(struct vmbus_client *cl, uint32_t relid, const uint64_t *pfns, uint32_t n,
				   uint32_t *gpadl)
{
	return gpadl_create(cl, relid, pfns, NULL, n, gpadl);
}

int vmbus_client_gpadl_teardown(struct vmbus_client *cl, uint32_t relid, uint32_t gpadl)
{
	struct vmbus_channel_gpadl_teardown m = { .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = relid,
						  .gpadl = gpadl };
	int rc = client_post(cl, &m, sizeof(m));
	if (rc)
		return rc;
	rc = client_wait(cl, CHANNELMSG_GPADL_TORNDOWN, offsetof(struct vmbus_channel_gpadl_torndown, gpadl), gpadl);
	return rc < 0 ? rc : 0;
}

int vmbus_client_channel_open(struct vmbus_client *cl, struct vmbus_client_channel *ch, uint32_t relid,
			      uint32_t send_bytes, uint32_t recv_bytes, uint32_t target_vp, const void *userdata,
			      uint32_t userdata_len)
{
	vmbus_mem_zero(ch, sizeof(*ch));
	if (send_bytes < HV_PAGE_SIZE || recv_bytes < HV_PAGE_SIZE || send_bytes % HV_PAGE_SIZE ||
	    recv_bytes % HV_PAGE_SIZE || userdata_len > VMBUS_OFFER_USER_DEFINED_BYTES ||
	    send_bytes > 0x40000000u || recv_bytes > 0x40000000u)
		return -VMBUS_EINVAL;
	const struct vmbus_client_offer *o = NULL;
	for (uint32_t i = 0; i < cl->nr_offers; i++)
		if (cl->offers[i].msg.child_relid == relid && !cl->offers[i].rescinded)
			o = &cl->offers[i];
	if (!o)
		return -VMBUS_ENODEV;
	uint32_t send_pages = 1 + send_bytes / HV_PAGE_SIZE, recv_pages = 1 + recv_bytes / HV_PAGE_SIZE;
	ch->cl = cl;
	ch->relid = relid;
	ch->connection_id = o->msg.connection_id;
	ch->ring_pages = send_pages + recv_pages;
	ch->ring_mem = cl->ops->alloc_pages(cl->ops->ctx, ch->ring_pages);
	if (!ch->ring_mem)
		return -VMBUS_ENOMEM;
	/* Only the header pages need initialising; the data areas are written before being read. */
	uint8_t *out_hdr = ch->ring_mem, *in_hdr = ch->ring_mem + (uint64_t)send_pages * HV_PAGE_SIZE;
	vmbus_mem_zero(out_hdr, HV_PAGE_SIZE);
	vmbus_mem_zero(in_hdr, HV_PAGE_SIZE);
	((struct vmbus_ring_header *)out_hdr)->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
	((struct vmbus_ring_header *)in_hdr)->feature_bits = VMBUS_RING_FEAT_PENDING_SEND_SZ;
	vmbus_ring_init(&ch->out, out_hdr, out_hdr + HV_PAGE_SIZE, send_bytes, false);
	vmbus_ring_init(&ch->in, in_hdr, in_hdr + HV_PAGE_SIZE, recv_bytes, false);

	int rc = vmbus_client_gpadl_create(cl, relid, ch->ring_mem, ch->ring_pages * HV_PAGE_SIZE, &ch->ring_gpadl);
	if (rc)
		goto fail_free;
	struct vmbus_channel_open_channel m;
	vmbus_mem_zero(&m, sizeof(m));
	m.header.msgtype = CHANNELMSG_OPENCHANNEL;
	m.child_relid = relid;
	m.openid = relid;
	m.ringbuffer_gpadlhandle = ch->ring_gpadl;
	m.target_vp = target_vp;
	m.downstream_ringbuffer_pageoffset = send_pages;
	if (userdata_len)
		vmbus_mem_copy(m.userdata, userdata, userdata_len);
	rc = client_post(cl, &m, sizeof(m));
	if (!rc)
		rc = client_wait(cl, CHANNELMSG_OPENCHANNEL_RESULT, offsetof(struct vmbus_channel_open_result, child_relid),
				 relid);
	if (rc >= 0)
		rc = msg_u32(cl->msg_buf, offsetof(struct vmbus_channel_open_result, status)) ? -VMBUS_EIO : 0;
	if (rc == 0) {
		ch->open = true;
		return 0;
	}
	vmbus_client_gpadl_teardown(cl, relid, ch->ring_gpadl);
fail_free:
	cl->ops->free_pages(cl->ops->ctx, ch->ring_mem, ch->ring_pages);
	ch->ring_mem = NULL;
	return rc;
}

int vmbus_client_channel_close(struct vmbus_client_channel *ch)
{
	if (!ch->open)
		return -VMBUS_EINVAL;
	struct vmbus_client *cl = ch->cl;
	struct vmbus_channel_relid_msg m = { .header.msgtype = CHANNELMSG_CLOSECHANNEL, .child_relid = ch->relid };
	ch->open = false;
	int rc = client_post(cl, &m, sizeof(m));
	if (!rc)
		rc = vmbus_client_gpadl_teardown(cl, ch->relid, ch->ring_gpadl);
	cl->ops->free_pages(cl->ops->ctx, ch->ring_mem, ch->ring_pages);
	ch->ring_mem = NULL;
	return rc;
}

int vmbus_client_modify_channel(struct vmbus_client *cl, uint32_t relid, uint32_t target_vp)
{
	struct vmbus_channel_modifychannel m = { .header.msgtype = CHANNELMSG_MODIFYCHANNEL, .child_relid = relid,
						 .target_vp = target_vp };
	if (cl->version < VMBUS_VERSION_WIN10_V4_1)
		return -VMBUS_EINVAL;
	int rc = client_post(cl, &m, sizeof(m));
	if (rc || cl->version < VMBUS_VERSION_WIN10_V5_3)
		return rc;
	rc = client_wait(cl, CHANNELMSG_MODIFYCHANNEL_RESPONSE,
			 offsetof(struct vmbus_channel_modifychannel_response, child_relid), relid);
	if (rc < 0)
		return rc;
	return msg_u32(cl->msg_buf, offsetof(struct vmbus_channel_modifychannel_response, status)) ? -VMBUS_EIO : 0;
}

int vmbus_client_release_relid(struct vmbus_client *cl, uint32_t relid)
{
	struct vmbus_channel_relid_msg m = { .header.msgtype = CHANNELMSG_RELID_RELEASED, .child_relid = relid };
	for (uint32_t i = 0; i < cl->nr_offers; i++)
		if (cl->offers[i].msg.child_relid == relid) {
			cl->offers[i] = cl->offers[--cl->nr_offers];
			break;
		}
	return client_post(cl, &m, sizeof(m));
}

int vmbus_client_unload(struct vmbus_client *cl)
{
	struct vmbus_channel_message_header h = { .msgtype = CHANNELMSG_UNLOAD };
	int rc = client_post(cl, &h, sizeof(h));
	if (!rc)
		rc = client_wait(cl, CHANNELMSG_UNLOAD_RESPONSE, 0, 0);
	cl->connected = false;
	cl->version = 0;
	cl->nr_offers = 0;
	cl->all_offers_delivered = false;
	cl->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
	return rc < 0 ? rc : 0;
}

int vmbus_client_send(struct vmbus_client_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		      const void *ext, uint32_t ext_len, const void *payload, uint32_t len)
{
	bool sig;
	int rc = vmbus_ring_write(&ch->out, type, flags, trans_id, ext, ext_len, payload, len, &sig);
	if (!rc && sig)
		ch->cl->ops->signal_event(ch->cl->ops->ctx, ch->connection_id);
	return rc;
}

int vmbus_client_recv(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len)
{
	return vmbus_ring_read(&ch->in, buf, cap, len);
}

void vmbus_client_recv_done(struct vmbus_client_channel *ch)
{
	if (vmbus_ring_read_commit(&ch->in))
		ch->cl->ops->signal_event(ch->cl->ops->ctx, ch->connection_id);
}
