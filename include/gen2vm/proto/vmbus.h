/* VMBus wire formats: channel messages (carried in SynIC messages on SINT 2), GPADL descriptions,
 * the ring buffer header page and the packets inside rings.
 *
 * Shared by the VMM, the firmware and the test guests: only <stdint.h>, <stdbool.h>, <stddef.h>.
 * Little-endian, packed, every size asserted. Facts: shared/reference/hyperv-guest-interface.md 3.4-3.6,
 * checked against Linux include/linux/hyperv.h.
 */
#ifndef GEN2VM_PROTO_VMBUS_H
#define GEN2VM_PROTO_VMBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/guid.h"
#include "gen2vm/proto/hv.h"

/* --- GUIDs in Windows byte order (first three fields little-endian) ---------------------------------- */
struct vmbus_guid {
	uint8_t b[16];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_guid) == 16, "vmbus_guid");

/* Constant initialiser from the canonical fields: VMBUS_GUID(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, ...). */
#define VMBUS_GUID(a, b_, c, d0, d1, d2, d3, d4, d5, d6, d7)                                          \
	((struct vmbus_guid){ { (uint8_t)(a), (uint8_t)((a) >> 8), (uint8_t)((a) >> 16),              \
				(uint8_t)((a) >> 24), (uint8_t)(b_), (uint8_t)((b_) >> 8), (uint8_t)(c), \
				(uint8_t)((c) >> 8), d0, d1, d2, d3, d4, d5, d6, d7 } })

/* Parses the canonical text form into Windows byte order (gen2vm_guid_parse). Returns 0, or -1 on
 * malformed text (then *g is unchanged). */
static inline int vmbus_guid_parse(const char *s, struct vmbus_guid *g)
{
	return gen2vm_guid_parse(s, g->b);
}

static inline bool vmbus_guid_equal(const struct vmbus_guid *a, const struct vmbus_guid *b)
{
	for (int i = 0; i < 16; i++)
		if (a->b[i] != b->b[i])
			return false;
	return true;
}

/* --- versions and connection ids ---------------------------------------------------------------------- */
#define VMBUS_MAKE_VERSION(major, minor) (((uint32_t)(major) << 16) | (uint32_t)(minor))
#define VMBUS_VERSION_WIN8      VMBUS_MAKE_VERSION(2, 4)
#define VMBUS_VERSION_WIN8_1    VMBUS_MAKE_VERSION(3, 0)
#define VMBUS_VERSION_WIN10     VMBUS_MAKE_VERSION(4, 0)
#define VMBUS_VERSION_WIN10_V4_1 VMBUS_MAKE_VERSION(4, 1) /* MODIFYCHANNEL */
#define VMBUS_VERSION_WIN10_V5  VMBUS_MAKE_VERSION(5, 0) /* INITIATE_CONTACT on connection 4, msg_sint */
#define VMBUS_VERSION_WIN10_V5_1 VMBUS_MAKE_VERSION(5, 1)
#define VMBUS_VERSION_WIN10_V5_2 VMBUS_MAKE_VERSION(5, 2)
#define VMBUS_VERSION_WIN10_V5_3 VMBUS_MAKE_VERSION(5, 3) /* MODIFYCHANNEL_RESPONSE */

#define VMBUS_MESSAGE_CONNECTION_ID   1u /* channel messages; INITIATE_CONTACT below 5.0 */
#define VMBUS_EVENT_CONNECTION_ID     2u
#define VMBUS_MONITOR_CONNECTION_ID   3u
#define VMBUS_MESSAGE_CONNECTION_ID_4 4u /* INITIATE_CONTACT for 5.0 and later */
#define VMBUS_MESSAGE_SINT            2u
#define VMBUS_MAX_RELID               2047u /* relid 0 is never scanned by the guest */

/* --- channel messages ----------------------------------------------------------------------------------- */
enum vmbus_channel_message_type {
	CHANNELMSG_INVALID = 0,
	CHANNELMSG_OFFERCHANNEL = 1,
	CHANNELMSG_RESCIND_CHANNELOFFER = 2,
	CHANNELMSG_REQUESTOFFERS = 3,
	CHANNELMSG_ALLOFFERS_DELIVERED = 4,
	CHANNELMSG_OPENCHANNEL = 5,
	CHANNELMSG_OPENCHANNEL_RESULT = 6,
	CHANNELMSG_CLOSECHANNEL = 7,
	CHANNELMSG_GPADL_HEADER = 8,
	CHANNELMSG_GPADL_BODY = 9,
	CHANNELMSG_GPADL_CREATED = 10,
	CHANNELMSG_GPADL_TEARDOWN = 11,
	CHANNELMSG_GPADL_TORNDOWN = 12,
	CHANNELMSG_RELID_RELEASED = 13,
	CHANNELMSG_INITIATE_CONTACT = 14,
	CHANNELMSG_VERSION_RESPONSE = 15,
	CHANNELMSG_UNLOAD = 16,
	CHANNELMSG_UNLOAD_RESPONSE = 17,
	CHANNELMSG_TL_CONNECT_REQUEST = 21,
	CHANNELMSG_MODIFYCHANNEL = 22,
	CHANNELMSG_TL_CONNECT_RESULT = 23,
	CHANNELMSG_MODIFYCHANNEL_RESPONSE = 24,
	CHANNELMSG_COUNT
};

struct vmbus_channel_message_header {
	uint32_t msgtype;
	uint32_t padding;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_message_header) == 8, "msg header");

/* Offer flags (chn_flags). */
#define VMBUS_CHANNEL_ENUMERATE_DEVICE_INTERFACE    0x0001u
#define VMBUS_CHANNEL_SERVER_SUPPORTS_TRANSFER_PAGES 0x0002u
#define VMBUS_CHANNEL_SERVER_SUPPORTS_GPADLS        0x0004u
#define VMBUS_CHANNEL_NAMED_PIPE_MODE               0x0010u
#define VMBUS_CHANNEL_LOOPBACK_OFFER                0x0100u
#define VMBUS_CHANNEL_PARENT_OFFER                  0x0200u
#define VMBUS_CHANNEL_REQUEST_MONITORED_NOTIFICATION 0x0400u
#define VMBUS_CHANNEL_TLNPI_PROVIDER_OFFER          0x2000u
#define VMBUS_OFFER_USER_DEFINED_BYTES              120u
#define VMBUS_PIPE_TYPE_BYTE    0x00000000u /* pipe_mode values in user_def[0..3] */
#define VMBUS_PIPE_TYPE_MESSAGE 0x00000004u

struct vmbus_channel_offer {
	struct vmbus_guid if_type;
	struct vmbus_guid if_instance;
	uint64_t reserved1; /* interface revision etc., 0 */
	uint64_t reserved2;
	uint16_t chn_flags;
	uint16_t mmio_megabytes;
	uint8_t user_def[VMBUS_OFFER_USER_DEFINED_BYTES]; /* pipe mode: u32 pipe_mode + 116 bytes */
	uint16_t sub_channel_index;
	uint16_t reserved3;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_offer) == 176, "vmbus_channel_offer");

struct vmbus_channel_offer_channel {
	struct vmbus_channel_message_header header;
	struct vmbus_channel_offer offer;
	uint32_t child_relid;
	uint8_t monitorid;
	uint8_t monitor_allocated; /* bit 0 */
	uint16_t is_dedicated_interrupt; /* bit 0 */
	uint32_t connection_id;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_offer_channel) == 196, "OFFERCHANNEL");
_Static_assert(offsetof(struct vmbus_channel_offer_channel, offer.sub_channel_index) == 180, "sub idx");
_Static_assert(offsetof(struct vmbus_channel_offer_channel, connection_id) == 192, "offer conn id");

struct vmbus_channel_relid_msg { /* RESCIND_CHANNELOFFER, RELID_RELEASED, CLOSECHANNEL */
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_relid_msg) == 12, "relid msg");

/* REQUESTOFFERS, ALLOFFERS_DELIVERED, UNLOAD, UNLOAD_RESPONSE: the bare header. */

struct vmbus_channel_open_channel {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t ringbuffer_gpadlhandle;
	uint32_t target_vp;
	uint32_t downstream_ringbuffer_pageoffset; /* first page of the host->guest ring in the GPADL */
	uint8_t userdata[VMBUS_OFFER_USER_DEFINED_BYTES];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_open_channel) == 148, "OPENCHANNEL");

struct vmbus_channel_open_result {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t status; /* 0 = success */
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_open_result) == 20, "OPEN_RESULT");

/* A GPA range: byte_count bytes starting byte_offset into the first of ceil((offset+count)/4096) pages. */
struct vmbus_gpa_range {
	uint32_t byte_count;
	uint32_t byte_offset;
	uint64_t pfn_array[];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_gpa_range) == 8, "gpa_range");

/* GPADL_HEADER: followed by the start of the range buffer (range headers and pfns, 8-byte units); the
 * rest arrives in GPADL_BODY messages. range_buflen is the range buffer's length in bytes truncated to
 * 16 bits (Linux computes it in a u16), so the ranges' own byte counts decide when a GPADL is complete. */
struct vmbus_channel_gpadl_header {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;
	uint16_t range_buflen;
	uint16_t rangecount;
	struct vmbus_gpa_range range[];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_gpadl_header) == 20, "GPADL_HEADER");
#define VMBUS_GPADL_HEADER_MAX_PFNS 26u /* with one range header: (240 - 20 - 8) / 8 */

struct vmbus_channel_gpadl_body {
	struct vmbus_channel_message_header header;
	uint32_t msgnumber; /* not set by Linux; ignored */
	uint32_t gpadl;
	uint64_t pfn[];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_gpadl_body) == 16, "GPADL_BODY");
#define VMBUS_GPADL_BODY_MAX_PFNS 28u /* (240 - 16) / 8 */

struct vmbus_channel_gpadl_created {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;
	uint32_t creation_status; /* 0 = success, else an NTSTATUS */
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_gpadl_created) == 20, "GPADL_CREATED");

struct vmbus_channel_gpadl_teardown {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t gpadl;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_gpadl_teardown) == 16, "GPADL_TEARDOWN");

struct vmbus_channel_gpadl_torndown {
	struct vmbus_channel_message_header header;
	uint32_t gpadl;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_gpadl_torndown) == 12, "GPADL_TORNDOWN");

struct vmbus_channel_initiate_contact {
	struct vmbus_channel_message_header header;
	uint32_t vmbus_version_requested;
	uint32_t target_vcpu; /* VP that receives the host's messages */
	union {
		uint64_t interrupt_page; /* versions < 5.0 */
		struct {
			uint8_t msg_sint; /* versions >= 5.0: VMBUS_MESSAGE_SINT */
			uint8_t padding1[3];
			uint32_t padding2;
		};
	};
	uint64_t monitor_page1;
	uint64_t monitor_page2;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_initiate_contact) == 40, "INITIATE_CONTACT");

struct vmbus_channel_version_response {
	struct vmbus_channel_message_header header;
	uint8_t version_supported;
	uint8_t connection_state; /* 0 = successful */
	uint16_t padding;
	uint32_t msg_conn_id; /* versions >= 5.0: the connection id for all later messages */
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_version_response) == 16, "VERSION_RESPONSE");

struct vmbus_channel_modifychannel {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t target_vp;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_modifychannel) == 16, "MODIFYCHANNEL");

struct vmbus_channel_modifychannel_response {
	struct vmbus_channel_message_header header;
	uint32_t child_relid;
	uint32_t status;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_channel_modifychannel_response) == 16, "MODIFYCHANNEL_RESPONSE");

#define VMBUS_STATUS_UNSUCCESSFUL 0xC0000001u /* NTSTATUS used in failed GPADL_CREATED / OPEN_RESULT */

/* --- ring buffers ----------------------------------------------------------------------------------------
 * A ring is one header page followed by the data area. Indices are byte offsets into the data area. */
#define VMBUS_RING_FEAT_PENDING_SEND_SZ 0x1u

struct vmbus_ring_header {
	uint32_t write_index;
	uint32_t read_index;
	uint32_t interrupt_mask;  /* set by the reader: "do not signal me" */
	uint32_t pending_send_sz; /* set by the writer: "signal me when this many bytes are free" */
	uint32_t reserved1[12];
	uint32_t feature_bits; /* VMBUS_RING_FEAT_* */
	uint8_t reserved2[HV_PAGE_SIZE - 68];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_ring_header) == HV_PAGE_SIZE, "ring header");
_Static_assert(offsetof(struct vmbus_ring_header, feature_bits) == 64, "feature bits");

/* --- packets ---------------------------------------------------------------------------------------------- */
enum vmbus_packet_type {
	VM_PKT_INVALID = 0,
	VM_PKT_SYNCH = 1,
	VM_PKT_ADD_XFER_PAGESET = 2,
	VM_PKT_RM_XFER_PAGESET = 3,
	VM_PKT_ESTABLISH_GPADL = 4,
	VM_PKT_TEARDOWN_GPADL = 5,
	VM_PKT_DATA_INBAND = 6,
	VM_PKT_DATA_USING_XFER_PAGES = 7,
	VM_PKT_DATA_USING_GPADL = 8,
	VM_PKT_DATA_USING_GPA_DIRECT = 9,
	VM_PKT_CANCEL_REQUEST = 10,
	VM_PKT_COMP = 11,
	VM_PKT_DATA_USING_ADDITIONAL_PKT = 12,
	VM_PKT_ADDITIONAL_DATA = 13,
};
#define VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED 0x1u

/* Every packet: descriptor, body (payload at offset8 * 8), padding to 8 bytes, then an 8-byte trailer. */
struct vmbus_packet_descriptor {
	uint16_t type;
	uint16_t offset8; /* payload offset / 8, from the descriptor */
	uint16_t len8;    /* packet length / 8, descriptor included, trailer excluded */
	uint16_t flags;
	uint64_t trans_id;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_packet_descriptor) == 16, "packet descriptor");
#define VMBUS_PACKET_TRAILER_SIZE 8u /* the writer puts (u64)old write_index << 32; readers ignore it */

struct vmbus_xfer_page_range {
	uint32_t byte_count;
	uint32_t byte_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_xfer_page_range) == 8, "xfer range");

struct vmbus_xfer_page_packet_header { /* VM_PKT_DATA_USING_XFER_PAGES */
	struct vmbus_packet_descriptor d;
	uint16_t xfer_pageset_id;
	uint8_t sender_owns_set;
	uint8_t reserved;
	uint32_t range_cnt;
	struct vmbus_xfer_page_range ranges[];
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_xfer_page_packet_header) == 24, "xfer pages header");

struct vmbus_gpa_direct_packet_header { /* VM_PKT_DATA_USING_GPA_DIRECT: ranges follow, each gpa_range+pfns */
	struct vmbus_packet_descriptor d;
	uint32_t reserved;
	uint32_t rangecount;
} __attribute__((packed));
_Static_assert(sizeof(struct vmbus_gpa_direct_packet_header) == 24, "gpa direct header");

#endif
