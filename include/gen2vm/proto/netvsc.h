/* Synthetic network adapter wire formats: NVSP (the VMBus-level network protocol) and the RNDIS /
 * NDIS structures it carries. Little-endian, packed, every size asserted. Offsets were checked against
 * Linux drivers/net/hyperv/hyperv_net.h and include/linux/rndis.h (facts only), and
 * shared/reference/hyperv-guest-interface.md 4.2.
 *
 * Only <stdint.h>/<stddef.h>: shared by the VMM, fuzzers and (later) test guests.
 */
#ifndef GEN2VM_PROTO_NETVSC_H
#define GEN2VM_PROTO_NETVSC_H

#include <stddef.h>
#include <stdint.h>

#define NETVSC_CLASS_GUID_TEXT "f8615163-df3e-46c5-913f-f2d2f965ed0e"

/* --- NVSP ------------------------------------------------------------------------------------------- */
#define NVSP_PROTOCOL_VERSION_1  0x00002u
#define NVSP_PROTOCOL_VERSION_2  0x30002u
#define NVSP_PROTOCOL_VERSION_4  0x40000u
#define NVSP_PROTOCOL_VERSION_5  0x50000u
#define NVSP_PROTOCOL_VERSION_6  0x60000u
#define NVSP_PROTOCOL_VERSION_61 0x60001u

enum nvsp_msg_type {
	NVSP_MSG_TYPE_INIT = 1,
	NVSP_MSG_TYPE_INIT_COMPLETE = 2,
	NVSP_MSG1_TYPE_SEND_NDIS_VER = 100,
	NVSP_MSG1_TYPE_SEND_RECV_BUF = 101,
	NVSP_MSG1_TYPE_SEND_RECV_BUF_COMPLETE = 102,
	NVSP_MSG1_TYPE_REVOKE_RECV_BUF = 103,
	NVSP_MSG1_TYPE_SEND_SEND_BUF = 104,
	NVSP_MSG1_TYPE_SEND_SEND_BUF_COMPLETE = 105,
	NVSP_MSG1_TYPE_REVOKE_SEND_BUF = 106,
	NVSP_MSG1_TYPE_SEND_RNDIS_PKT = 107,
	NVSP_MSG1_TYPE_SEND_RNDIS_PKT_COMPLETE = 108,
	NVSP_MSG2_TYPE_SEND_NDIS_CONFIG = 125,
	NVSP_MSG4_TYPE_SEND_VF_ASSOCIATION = 128,
	NVSP_MSG4_TYPE_SWITCH_DATA_PATH = 129,
	NVSP_MSG5_TYPE_OID_QUERY_EX = 131,
	NVSP_MSG5_TYPE_SUBCHANNEL = 133,
	NVSP_MSG5_TYPE_SEND_INDIRECTION_TABLE = 134,
};

enum nvsp_status {
	NVSP_STAT_NONE = 0,
	NVSP_STAT_SUCCESS = 1,
	NVSP_STAT_FAIL = 2,
	NVSP_STAT_PROTOCOL_TOO_NEW = 3,
	NVSP_STAT_PROTOCOL_TOO_OLD = 4,
	NVSP_STAT_INVALID_RNDIS_PKT = 5,
	NVSP_STAT_BUSY = 6,
};

#define NVSP_SUBCHANNEL_ALLOCATE 1u
#define NVSP_RECV_BUFFER_ID 0xCAFEu /* pageset id of the receive buffer in XFER_PAGES packets */
#define NVSP_INVALID_SECTION 0xFFFFFFFFu
#define NVSP_CHANNEL_TYPE_DATA 0u
#define NVSP_CHANNEL_TYPE_CONTROL 1u
#define NVSP_MESSAGE_SIZE 40u /* every NVSP message on the wire is padded to this (the union's size) */

struct nvsp_init {
	uint32_t min_protocol_ver, max_protocol_ver;
} __attribute__((packed));
struct nvsp_init_complete {
	uint32_t negotiated_protocol_ver, max_mdl_chain_len, status;
} __attribute__((packed));
struct nvsp_send_ndis_version {
	uint32_t ndis_major_ver, ndis_minor_ver;
} __attribute__((packed));
struct nvsp_send_buffer { /* SEND_RECV_BUF and SEND_SEND_BUF */
	uint32_t gpadl_handle;
	uint16_t id;
} __attribute__((packed));
struct nvsp_recv_buffer_section {
	uint32_t offset, sub_alloc_size, num_sub_allocs, end_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct nvsp_recv_buffer_section) == 16, "recv section");
struct nvsp_recv_buffer_complete {
	uint32_t status, num_sections;
	struct nvsp_recv_buffer_section sections[1];
} __attribute__((packed));
struct nvsp_send_buffer_complete {
	uint32_t status, section_size;
} __attribute__((packed));
struct nvsp_revoke_buffer {
	uint16_t id;
} __attribute__((packed));
struct nvsp_rndis_packet {
	uint32_t channel_type, send_buf_section_index, send_buf_section_size;
} __attribute__((packed));
struct nvsp_rndis_packet_complete {
	uint32_t status;
} __attribute__((packed));
struct nvsp_ndis_config {
	uint32_t mtu, reserved;
	uint64_t capability; /* bit 3: IEEE 802.1Q */
} __attribute__((packed));
struct nvsp_subchannel_request {
	uint32_t op, num_subchannels;
} __attribute__((packed));
struct nvsp_subchannel_complete {
	uint32_t status, num_subchannels;
} __attribute__((packed));
struct nvsp_send_indirection_table {
	uint32_t count, offset; /* offset of the u32 table from the start of the NVSP message */
} __attribute__((packed));

struct nvsp_message {
	uint32_t type;
	union {
		struct nvsp_init init;
		struct nvsp_init_complete init_complete;
		struct nvsp_send_ndis_version ndis_ver;
		struct nvsp_send_buffer send_buf;
		struct nvsp_recv_buffer_complete recv_buf_complete;
		struct nvsp_send_buffer_complete send_buf_complete;
		struct nvsp_revoke_buffer revoke;
		struct nvsp_rndis_packet rndis_pkt;
		struct nvsp_rndis_packet_complete rndis_pkt_complete;
		struct nvsp_ndis_config ndis_config;
		struct nvsp_subchannel_request subchannel_req;
		struct nvsp_subchannel_complete subchannel_comp;
		struct nvsp_send_indirection_table send_table;
		uint8_t raw[36];
	} u;
} __attribute__((packed));
_Static_assert(sizeof(struct nvsp_message) == NVSP_MESSAGE_SIZE, "nvsp_message");
_Static_assert(offsetof(struct nvsp_message, u.recv_buf_complete.sections) == 12, "recv sections");

/* --- RNDIS ------------------------------------------------------------------------------------------ */
#define RNDIS_MSG_PACKET     0x00000001u
#define RNDIS_MSG_INIT       0x00000002u
#define RNDIS_MSG_HALT       0x00000003u
#define RNDIS_MSG_QUERY      0x00000004u
#define RNDIS_MSG_SET        0x00000005u
#define RNDIS_MSG_RESET      0x00000006u
#define RNDIS_MSG_INDICATE   0x00000007u
#define RNDIS_MSG_KEEPALIVE  0x00000008u
#define RNDIS_MSG_COMPLETION 0x80000000u /* OR-ed into a request type for its reply */

#define RNDIS_STATUS_SUCCESS           0x00000000u
#define RNDIS_STATUS_FAILURE           0xC0000001u
#define RNDIS_STATUS_INVALID_DATA      0xC0010015u
#define RNDIS_STATUS_NOT_SUPPORTED     0xC00000BBu
#define RNDIS_STATUS_INVALID_LENGTH    0xC0010014u
#define RNDIS_STATUS_BUFFER_TOO_SHORT  0xC0010016u
#define RNDIS_STATUS_MEDIA_CONNECT     0x4001000Bu
#define RNDIS_STATUS_MEDIA_DISCONNECT  0x4001000Cu
#define RNDIS_STATUS_LINK_SPEED_CHANGE 0x40010013u
#define RNDIS_STATUS_NETWORK_CHANGE    0x40010018u

#define RNDIS_MAJOR_VERSION 1u
#define RNDIS_MINOR_VERSION 0u
#define RNDIS_DF_CONNECTIONLESS 1u
#define RNDIS_MEDIUM_802_3 0u

/* OIDs */
#define RNDIS_OID_GEN_SUPPORTED_LIST        0x00010101u
#define RNDIS_OID_GEN_HARDWARE_STATUS       0x00010102u
#define RNDIS_OID_GEN_MEDIA_SUPPORTED       0x00010103u
#define RNDIS_OID_GEN_MEDIA_IN_USE          0x00010104u
#define RNDIS_OID_GEN_MAXIMUM_FRAME_SIZE    0x00010106u
#define RNDIS_OID_GEN_LINK_SPEED            0x00010107u
#define RNDIS_OID_GEN_MAXIMUM_TOTAL_SIZE    0x00010111u
#define RNDIS_OID_GEN_VENDOR_ID             0x0001010Cu
#define RNDIS_OID_GEN_CURRENT_PACKET_FILTER 0x0001010Eu
#define RNDIS_OID_GEN_MAC_OPTIONS           0x00010113u
#define RNDIS_OID_GEN_MEDIA_CONNECT_STATUS  0x00010114u
#define RNDIS_OID_GEN_MAXIMUM_SEND_PACKETS  0x00010115u
#define RNDIS_OID_GEN_RNDIS_CONFIG_PARAMETER 0x0001021Bu
#define RNDIS_OID_GEN_FRIENDLY_NAME         0x00010116u
#define RNDIS_OID_GEN_RECEIVE_SCALE_CAPABILITIES 0x00010203u
#define RNDIS_OID_GEN_RECEIVE_SCALE_PARAMETERS   0x00010204u
#define RNDIS_OID_802_3_PERMANENT_ADDRESS   0x01010101u
#define RNDIS_OID_802_3_CURRENT_ADDRESS     0x01010102u
#define RNDIS_OID_802_3_MULTICAST_LIST      0x01010103u
#define RNDIS_OID_802_3_MAXIMUM_LIST_SIZE   0x01010104u
#define RNDIS_OID_OFFLOAD_ENCAPSULATION     0x0101010Au
#define RNDIS_OID_TCP_OFFLOAD_CURRENT_CONFIG 0xFC01020Bu
#define RNDIS_OID_TCP_OFFLOAD_PARAMETERS    0xFC01020Cu
#define RNDIS_OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES 0xFC01020Du

#define NDIS_PACKET_TYPE_DIRECTED      0x001u
#define NDIS_PACKET_TYPE_MULTICAST     0x002u
#define NDIS_PACKET_TYPE_ALL_MULTICAST 0x004u
#define NDIS_PACKET_TYPE_BROADCAST     0x008u
#define NDIS_PACKET_TYPE_PROMISCUOUS   0x020u

struct rndis_header {
	uint32_t type, msg_len;
} __attribute__((packed));

struct rndis_init_request {
	uint32_t req_id, major_ver, minor_ver, max_xfer_size;
} __attribute__((packed));
struct rndis_init_complete {
	uint32_t req_id, status, major_ver, minor_ver, dev_flags, medium, max_pkt_per_msg, max_xfer_size,
		pkt_alignment_factor, af_list_offset, af_list_size;
} __attribute__((packed));
_Static_assert(sizeof(struct rndis_init_complete) == 44, "INIT_C");
struct rndis_query_request { /* and SET: info_buf_offset counts from req_id */
	uint32_t req_id, oid, info_buflen, info_buf_offset, dev_vc_handle;
} __attribute__((packed));
_Static_assert(sizeof(struct rndis_query_request) == 20, "QUERY");
struct rndis_query_complete {
	uint32_t req_id, status, info_buflen, info_buf_offset;
} __attribute__((packed));
struct rndis_set_complete {
	uint32_t req_id, status;
} __attribute__((packed));
struct rndis_reset_complete {
	uint32_t status, addressing_reset;
} __attribute__((packed));
struct rndis_indicate_status {
	uint32_t status, status_buflen, status_buf_offset;
} __attribute__((packed));
struct rndis_keepalive_complete {
	uint32_t req_id, status;
} __attribute__((packed));

/* Data message body (after the 8-byte header); offsets count from the start of this body. */
struct rndis_packet {
	uint32_t data_offset, data_len, oob_data_offset, oob_data_len, num_oob_data_elements;
	uint32_t per_pkt_info_offset, per_pkt_info_len, vc_handle, reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct rndis_packet) == 36, "rndis_packet");

struct rndis_ppi { /* per-packet info element; type bit 31 = "internal" */
	uint32_t size, type, ppi_offset;
} __attribute__((packed));
_Static_assert(sizeof(struct rndis_ppi) == 12, "ppi");
#define RNDIS_PPI_INTERNAL 0x80000000u

enum ndis_ppi_type {
	NDIS_PPI_TCPIP_CHKSUM = 0,
	NDIS_PPI_TCP_LARGESEND = 2,
	NDIS_PPI_IEEE_8021Q = 6,
	NDIS_PPI_HASH_VALUE = 8,
	NDIS_PPI_HASH_INFO = 9,
};

/* Checksum PPI (u32). Transmit bits: */
#define NDIS_CSUM_TX_IPV4      0x001u
#define NDIS_CSUM_TX_IPV6      0x002u
#define NDIS_CSUM_TX_TCP       0x004u
#define NDIS_CSUM_TX_UDP       0x008u
#define NDIS_CSUM_TX_IP_HDR    0x010u
#define NDIS_CSUM_TX_TCP_OFF_SHIFT 16 /* 10 bits: offset of the transport header */
/* Receive bits: */
#define NDIS_CSUM_RX_TCP_FAILED    0x001u
#define NDIS_CSUM_RX_UDP_FAILED    0x002u
#define NDIS_CSUM_RX_IP_FAILED     0x004u
#define NDIS_CSUM_RX_TCP_SUCCEEDED 0x008u
#define NDIS_CSUM_RX_UDP_SUCCEEDED 0x010u
#define NDIS_CSUM_RX_IP_SUCCEEDED  0x020u

/* LSO PPI (u32), v2 transmit: mss bits 0-19, transport header offset 20-29, type bit 30 (1 = v2),
 * ip_version bit 31 (0 = IPv4, 1 = IPv6). */
#define NDIS_LSO_MSS_MASK 0xFFFFFu
#define NDIS_LSO_TCP_OFF_SHIFT 20
#define NDIS_LSO_TCP_OFF_MASK 0x3FFu
#define NDIS_LSO_V2 0x40000000u
#define NDIS_LSO_IPV6 0x80000000u

/* 802.1Q PPI (u32): pri bits 0-2, cfi bit 3, vlan id bits 4-15. */

/* --- NDIS objects --------------------------------------------------------------------------------- */
struct ndis_object_header {
	uint8_t type, revision;
	uint16_t size;
} __attribute__((packed));
#define NDIS_OBJECT_TYPE_DEFAULT 0x80u
#define NDIS_OBJECT_TYPE_RSS_CAPABILITIES 0x88u
#define NDIS_OBJECT_TYPE_RSS_PARAMETERS 0x89u
#define NDIS_OBJECT_TYPE_OFFLOAD 0xA7u

#define NDIS_OFFLOAD_ENCAP_8023 0x0002u
#define NDIS_TXCSUM_CAP_IP4OPT 0x001u
#define NDIS_TXCSUM_CAP_TCP4OPT 0x004u
#define NDIS_TXCSUM_CAP_TCP4 0x010u
#define NDIS_TXCSUM_CAP_UDP4 0x040u
#define NDIS_TXCSUM_CAP_IP4 0x100u
#define NDIS_TXCSUM_CAP_IP6EXT 0x001u
#define NDIS_TXCSUM_CAP_TCP6OPT 0x004u
#define NDIS_TXCSUM_CAP_TCP6 0x010u
#define NDIS_TXCSUM_CAP_UDP6 0x040u
#define NDIS_LSOV2_CAP_IP6EXT 0x001u
#define NDIS_LSOV2_CAP_TCP6OPT 0x004u

/* NDIS_OFFLOAD (hardware capabilities): 112 bytes for NDIS 6.0, 144 for 6.1, 156 for 6.30. */
struct ndis_offload {
	struct ndis_object_header header;
	struct {
		uint32_t ip4_txenc, ip4_txcsum, ip4_rxenc, ip4_rxcsum;
		uint32_t ip6_txenc, ip6_txcsum, ip6_rxenc, ip6_rxcsum;
	} csum;
	struct {
		uint32_t encap, maxsize, minsegs, opts;
	} lsov1;
	struct {
		uint32_t encap, ah_esp, xport_tun, ip4_opts, flags, ip4_ah, ip4_esp;
	} ipsecv1;
	struct {
		uint32_t ip4_encap, ip4_maxsz, ip4_minsg, ip6_encap, ip6_maxsz, ip6_minsg, ip6_opts;
	} lsov2;
	uint32_t flags;
	uint8_t ipsecv2[32];
	uint8_t rsc_ip4, rsc_ip6;
	uint8_t pad[2];
	uint32_t encap_gre_flags, encap_gre_maxhdr;
} __attribute__((packed));
_Static_assert(sizeof(struct ndis_offload) == 156, "ndis_offload");
_Static_assert(offsetof(struct ndis_offload, ipsecv2) == 112, "ndis_offload 6.0 size");
_Static_assert(offsetof(struct ndis_offload, rsc_ip4) == 144, "ndis_offload 6.1 size");
#define NDIS_OFFLOAD_SIZE_6_0 112u
#define NDIS_OFFLOAD_SIZE_6_1 144u
#define NDIS_OFFLOAD_SIZE_6_30 156u

/* NDIS_OFFLOAD_PARAMETERS (SET TCP_OFFLOAD_PARAMETERS): 22 bytes up to NVSP 4, 28 after. */
struct ndis_offload_params {
	struct ndis_object_header header;
	uint8_t ip_v4_csum, tcp_ip_v4_csum, udp_ip_v4_csum, tcp_ip_v6_csum, udp_ip_v6_csum;
	uint8_t lso_v1, ip_sec_v1, lso_v2_ipv4, lso_v2_ipv6, tcp_connection_ip_v4, tcp_connection_ip_v6;
	uint8_t pad0;
	uint32_t flags;
	uint8_t ip_sec_v2, ip_sec_v2_ip_v4, rsc_ip_v4, rsc_ip_v6, encap_task_offload, encap_types;
	uint8_t pad1[2];
} __attribute__((packed));
_Static_assert(sizeof(struct ndis_offload_params) == 28, "ndis_offload_params");
_Static_assert(offsetof(struct ndis_offload_params, flags) == 16, "offload params flags");
#define NDIS_OFFLOAD_PARAMS_MIN_SIZE 22u
#define NDIS_OFFLOAD_PARAMETERS_NO_CHANGE 0u
#define NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED 1u
#define NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED 2u
#define NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED 3u
#define NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED 4u
#define NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED 1u
#define NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED 2u

/* NDIS_RECEIVE_SCALE_CAPABILITIES (18 bytes, packed on the wire). */
struct ndis_rss_caps {
	struct ndis_object_header hdr;
	uint32_t cap_flag, num_int_msg, num_recv_que;
	uint16_t num_indirect_tabent;
} __attribute__((packed));
_Static_assert(sizeof(struct ndis_rss_caps) == 18, "rss caps");
#define NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4 0x00000100u
#define NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6 0x00000200u
#define NDIS_RSS_CAPS_CLASSIFICATION_AT_ISR 0x02000000u

/* NDIS_RECEIVE_SCALE_PARAMETERS: natural alignment on the wire (Linux does not pack it): 40 bytes. */
struct ndis_rss_params {
	struct ndis_object_header hdr;
	uint16_t flag, base_cpu_number;
	uint32_t hashinfo;
	uint16_t indirect_tabsize; /* bytes */
	uint16_t pad0;
	uint32_t indirect_taboffset; /* from the start of this structure */
	uint16_t hashkey_size;
	uint16_t pad1;
	uint32_t hashkey_offset;
	uint32_t processor_masks_offset, num_processor_masks, processor_masks_entry_size;
} __attribute__((packed));
_Static_assert(sizeof(struct ndis_rss_params) == 40, "rss params");
_Static_assert(offsetof(struct ndis_rss_params, indirect_taboffset) == 16, "rss itab off");
_Static_assert(offsetof(struct ndis_rss_params, hashkey_offset) == 24, "rss key off");
#define NDIS_RSS_PARAM_FLAG_DISABLE_RSS 0x0010u
#define NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED 0x0004u
#define NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED 0x0008u
#define NDIS_HASH_FUNC_TOEPLITZ 0x00000001u
#define NDIS_HASH_IPV4 0x00000100u
#define NDIS_HASH_TCP_IPV4 0x00000200u
#define NDIS_HASH_IPV6 0x00000400u
#define NDIS_HASH_TCP_IPV6 0x00001000u

#endif
