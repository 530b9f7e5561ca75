/* storvsc wire helpers (see storvsc_client.h). */
#include "storvsc_client.h"


void storvsc_client_srb(struct storvsp_packet *pk, const uint8_t *cdb, uint8_t cdb_len, uint8_t lun,
			uint8_t data_in, uint32_t len)
{
	vmbus_mem_zero(pk, sizeof(*pk));
	pk->operation = STORVSP_OP_EXECUTE_SRB;
	pk->flags = STORVSP_FLAG_REQUEST_COMPLETION;
	pk->srb.length = sizeof(pk->srb);
	pk->srb.lun = lun;
	pk->srb.cdb_length = cdb_len; /* as given: tests send bad lengths on purpose */
	pk->srb.sense_info_length = STORVSP_SENSE_SIZE;
	pk->srb.data_in = data_in;
	pk->srb.data_transfer_length = len;
	vmbus_mem_copy(pk->srb.cdb, cdb, cdb_len < STORVSP_CDB_MAX ? cdb_len : STORVSP_CDB_MAX);
}

int storvsc_client_send(struct vmbus_client_channel *ch, uint64_t id, const struct storvsp_packet *pk, uint64_t gpa,
			uint32_t len)
{
	if (!len)
		return vmbus_client_send(ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, id, NULL, 0,
					 pk, sizeof(*pk));
	/* One multi-page range: reserved word, range count 1, then byte count, byte offset, page frames. */
	uint32_t off = (uint32_t)(gpa & 4095), pages = (uint32_t)((off + (uint64_t)len + 4095) / 4096);
	uint64_t ext[2 + STORVSC_CLIENT_MAX_PAGES];
	if (pages > STORVSC_CLIENT_MAX_PAGES)
		return -VMBUS_EINVAL;
	ext[0] = 1ull << 32;
	ext[1] = (uint64_t)off << 32 | len;
	for (uint32_t i = 0; i < pages; i++)
		ext[2 + i] = (gpa >> 12) + i;
	return vmbus_client_send(ch, VM_PKT_DATA_USING_GPA_DIRECT, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, id, ext,
				 (2 + pages) * 8, pk, sizeof(*pk));
}

int storvsc_client_parse(const void *buf, uint32_t len, uint64_t *id, struct storvsp_packet *pk)
{
	struct vmbus_packet_descriptor d;
	if (len < sizeof(d))
		return -VMBUS_EPROTO;
	vmbus_mem_copy(&d, buf, sizeof(d));
	uint32_t off = d.offset8 * 8u;
	if (off < sizeof(d) || off > len)
		return -VMBUS_EPROTO;
	vmbus_mem_zero(pk, sizeof(*pk));
	vmbus_mem_copy(pk, (const uint8_t *)buf + off, len - off < sizeof(*pk) ? len - off : sizeof(*pk));
	*id = d.trans_id;
	return 0;
}

/* One step that must succeed: a completion with status SUCCESS. */
static int storvsc_client_step(storvsc_client_ctrl_fn ctrl, void *opaque, struct storvsp_packet *pk)
{
	int rc = ctrl(opaque, pk);
	if (rc)
		return rc;
	return pk->operation == STORVSP_OP_COMPLETE_IO && pk->status == STORVSP_STATUS_SUCCESS ? 0 : -VMBUS_EIO;
}

int storvsc_client_init(storvsc_client_ctrl_fn ctrl, void *opaque, uint16_t version, uint16_t *version_out,
			struct storvsp_properties *props)
{
	static const uint16_t versions[] = { STORVSP_VERSION_WIN10, STORVSP_VERSION_WIN8_1, STORVSP_VERSION_WIN8 };
	struct storvsp_packet pk;
	vmbus_mem_zero(&pk, sizeof(pk));
	pk.operation = STORVSP_OP_BEGIN_INITIALIZATION;
	int rc = storvsc_client_step(ctrl, opaque, &pk);
	if (rc)
		return rc;
	uint16_t accepted = 0;
	for (unsigned i = 0; i < sizeof(versions) / sizeof(versions[0]) && !accepted; i++) {
		uint16_t v = version ? version : versions[i];
		vmbus_mem_zero(&pk, sizeof(pk));
		pk.operation = STORVSP_OP_QUERY_PROTOCOL_VERSION;
		pk.version.major_minor = v;
		if ((rc = ctrl(opaque, &pk)))
			return rc;
		if (pk.operation != STORVSP_OP_COMPLETE_IO)
			return -VMBUS_EPROTO;
		if (pk.status == STORVSP_STATUS_SUCCESS)
			accepted = v;
		else if (version)
			break;
	}
	if (!accepted)
		return -VMBUS_ENODEV;
	vmbus_mem_zero(&pk, sizeof(pk));
	pk.operation = STORVSP_OP_QUERY_PROPERTIES;
	if ((rc = storvsc_client_step(ctrl, opaque, &pk)))
		return rc;
	*props = pk.props;
	vmbus_mem_zero(&pk, sizeof(pk));
	pk.operation = STORVSP_OP_END_INITIALIZATION;
	if ((rc = storvsc_client_step(ctrl, opaque, &pk)))
		return rc;
	*version_out = accepted;
	return 0;
}
