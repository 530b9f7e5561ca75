/* Synthetic SCSI (storvsc/storvsp) wire formats: the 64-byte vstor packet carried INBAND or in front of
 * GPA_DIRECT ranges on a VMBus channel, and the SRB inside it.
 *
 * Shared by the VMM and the guest side (loopback tests, firmware): only <stdint.h>/<stddef.h>.
 * Little-endian, packed. Facts: shared/reference/hyperv-guest-interface.md 4.1, checked against
 * Linux drivers/scsi/storvsc_drv.c (protocol >= WIN8: the SRB carries the 16-byte win8 extension).
 */
#ifndef GEN2VM_PROTO_STORVSP_H
#define GEN2VM_PROTO_STORVSP_H

#include <stddef.h>
#include <stdint.h>

#define STORVSP_SCSI_CLASS_GUID_TEXT "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f"

/* Protocol versions (major << 8 | minor) this host accepts. */
#define STORVSP_VERSION_WIN8   0x0501u
#define STORVSP_VERSION_WIN8_1 0x0600u
#define STORVSP_VERSION_WIN10  0x0602u

enum storvsp_operation {
	STORVSP_OP_COMPLETE_IO = 1,
	STORVSP_OP_REMOVE_DEVICE = 2,
	STORVSP_OP_EXECUTE_SRB = 3,
	STORVSP_OP_RESET_LUN = 4,
	STORVSP_OP_RESET_ADAPTER = 5,
	STORVSP_OP_RESET_BUS = 6,
	STORVSP_OP_BEGIN_INITIALIZATION = 7,
	STORVSP_OP_END_INITIALIZATION = 8,
	STORVSP_OP_QUERY_PROTOCOL_VERSION = 9,
	STORVSP_OP_QUERY_PROPERTIES = 10,
	STORVSP_OP_ENUMERATE_BUS = 11,
	STORVSP_OP_FCHBA_DATA = 12,
	STORVSP_OP_CREATE_SUB_CHANNELS = 13,
};

#define STORVSP_FLAG_REQUEST_COMPLETION 0x1u

/* NTSTATUS values in vstor_packet.status */
#define STORVSP_STATUS_SUCCESS           0x00000000u
#define STORVSP_STATUS_UNSUCCESSFUL      0xC0000001u
#define STORVSP_STATUS_INVALID_DEVICE_STATE 0xC0000184u
#define STORVSP_STATUS_REVISION_MISMATCH 0xC0000059u

/* SRB status (vmscsi_request.srb_status) */
#define SRB_STATUS_SUCCESS          0x01u
#define SRB_STATUS_ABORTED          0x02u
#define SRB_STATUS_ERROR            0x04u
#define SRB_STATUS_INVALID_REQUEST  0x06u
#define SRB_STATUS_DATA_OVERRUN     0x12u
#define SRB_STATUS_INVALID_LUN      0x20u
#define SRB_STATUS_INTERNAL_ERROR   0x30u
#define SRB_STATUS_AUTOSENSE_VALID  0x80u

/* vmscsi_request.data_in */
#define STORVSP_DATA_OUT  0u /* write: guest -> device */
#define STORVSP_DATA_IN   1u /* read: device -> guest */
#define STORVSP_DATA_NONE 2u

#define STORVSP_CDB_MAX 16u
#define STORVSP_SENSE_SIZE 20u /* >= WIN8 */

struct storvsp_srb {
	uint16_t length;     /* sizeof(struct storvsp_srb) = 52 */
	uint8_t srb_status;
	uint8_t scsi_status;
	uint8_t port_number;
	uint8_t path_id;
	uint8_t target_id;
	uint8_t lun;
	uint8_t cdb_length;
	uint8_t sense_info_length;
	uint8_t data_in;
	uint8_t reserved;
	uint32_t data_transfer_length;
	union {
		uint8_t cdb[STORVSP_CDB_MAX];
		uint8_t sense_data[STORVSP_SENSE_SIZE];
	};
	/* win8 extension */
	uint16_t reserve;
	uint8_t queue_tag;
	uint8_t queue_action;
	uint32_t srb_flags;
	uint32_t time_out_value;
	uint32_t queue_sort_key;
} __attribute__((packed));
_Static_assert(sizeof(struct storvsp_srb) == 52, "storvsp_srb");
_Static_assert(offsetof(struct storvsp_srb, data_transfer_length) == 12, "srb dtl");
_Static_assert(offsetof(struct storvsp_srb, cdb) == 16, "srb cdb");

#define STORVSP_PROP_MULTI_CHANNEL 0x1u

struct storvsp_properties {
	uint32_t reserved;
	uint16_t max_channel_count; /* sub-channels the guest may ask for */
	uint16_t reserved1;
	uint32_t flags;             /* STORVSP_PROP_MULTI_CHANNEL */
	uint32_t max_transfer_bytes;
	uint64_t reserved2;
} __attribute__((packed));
_Static_assert(sizeof(struct storvsp_properties) == 24, "storvsp_properties");

struct storvsp_version {
	uint16_t major_minor;
	uint16_t revision;
} __attribute__((packed));

struct storvsp_packet {
	uint32_t operation;
	uint32_t flags;
	uint32_t status;
	union {
		struct storvsp_srb srb;
		struct storvsp_properties props;
		struct storvsp_version version;
		uint16_t sub_channel_count;
		uint8_t buffer[52];
	};
} __attribute__((packed));
_Static_assert(sizeof(struct storvsp_packet) == 64, "storvsp_packet");
_Static_assert(offsetof(struct storvsp_packet, srb) == 12, "storvsp_packet srb");

#endif
