/* Hyper-V integration components (IC) over VMBus: the wire format of the utility channels Linux's
 * hv_utils speaks (shutdown, heartbeat, time sync; KVP, VSS and file copy use the same framing).
 * Facts from include/linux/hyperv.h and drivers/hv/hv_util.c; the host writes first, the guest
 * answers every request with the same packet (same VMBus trans_id, same length) with
 * IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE in icflags and its status in the header.
 *
 * A packet's payload: struct ic_pipe_hdr, struct ic_msg_hdr, then the message body. */
#ifndef GEN2VM_PROTO_IC_H
#define GEN2VM_PROTO_IC_H

#include <stdint.h>

#define IC_SHUTDOWN_CLASS_GUID_TEXT  "0e0b6031-5213-4934-818b-38d90ced39db"
#define IC_TIMESYNC_CLASS_GUID_TEXT  "9527e630-d0ae-497b-adce-e80ab0175caf"
#define IC_HEARTBEAT_CLASS_GUID_TEXT "57164f39-9115-4e78-ab55-382f3bd5422d"
#define IC_KVP_CLASS_GUID_TEXT       "a9a0f4e7-5a45-4d96-b827-8a841e8c03e6"
#define IC_FCOPY_CLASS_GUID_TEXT     "34d14be3-dee4-41c8-9ae7-6b174977c192" /* "Guest services" */
#define IC_VSS_CLASS_GUID_TEXT       "35fa2e29-ea23-4236-96ae-3a6ebacba440" /* "Backup (volume shadow copy)" */

/* icmsgtype */
#define IC_MSG_NEGOTIATE 0u
#define IC_MSG_HEARTBEAT 1u
#define IC_MSG_KVP       2u
#define IC_MSG_SHUTDOWN  3u
#define IC_MSG_TIMESYNC  4u
#define IC_MSG_VSS       5u
#define IC_MSG_FCOPY     7u

/* icflags */
#define IC_FLAG_TRANSACTION 0x01u
#define IC_FLAG_REQUEST     0x02u
#define IC_FLAG_RESPONSE    0x04u

/* status (HRESULTs) */
#define IC_S_OK   0x00000000u
#define IC_E_FAIL 0x80004005u

/* Linux accepts at most this many versions of each kind in a NEGOTIATE (hv_util's
 * IC_VERSION_NEGOTIATION_MAX_VER_COUNT). */
#define IC_NEGOTIATE_MAX_VERSIONS 100u

struct ic_version {
	uint16_t major, minor;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_version) == 4, "ic_version");

/* Legacy named-pipe framing; Linux skips it. msgsize: the bytes that follow it. */
struct ic_pipe_hdr {
	uint32_t flags;
	uint32_t msgsize;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_pipe_hdr) == 8, "ic_pipe_hdr");

struct ic_msg_hdr {
	struct ic_version icverframe; /* framework version (after NEGOTIATE: the chosen one) */
	uint16_t icmsgtype;           /* IC_MSG_* */
	struct ic_version icvermsg;   /* service version */
	uint16_t icmsgsize;           /* body bytes */
	uint32_t status;              /* the guest's answer, IC_S_OK or an HRESULT */
	uint8_t ictransaction_id;
	uint8_t icflags;              /* IC_FLAG_* */
	uint8_t reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_msg_hdr) == 20, "ic_msg_hdr");

#define IC_HDRS_SIZE (sizeof(struct ic_pipe_hdr) + sizeof(struct ic_msg_hdr)) /* 28: the body's offset */

/* NEGOTIATE: icframe_vercnt framework versions, then icmsg_vercnt service versions. The guest
 * answers in place with counts 1/1 and [0] framework, [1] service, or counts 0/0 when nothing fits. */
struct ic_negotiate {
	uint16_t icframe_vercnt;
	uint16_t icmsg_vercnt;
	uint32_t reserved;
	struct ic_version icversion_data[];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_negotiate) == 8, "ic_negotiate");

/* HEARTBEAT: the guest answers seq_num + 1. */
struct ic_heartbeat {
	uint64_t seq_num;
	uint32_t reserved[8];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_heartbeat) == 40, "ic_heartbeat");

/* SHUTDOWN flags (Linux: 0/1 power off, 2/3 restart, 4/5 hibernate; bit 0 "force"). */
#define IC_SHUTDOWN_FLAG_FORCE     0x1u
#define IC_SHUTDOWN_FLAG_RESTART   0x2u
#define IC_SHUTDOWN_FLAG_HIBERNATE 0x4u
#define IC_SHUTDOWN_MESSAGE_BYTES  2048u

struct ic_shutdown {
	uint32_t reason_code;
	uint32_t timeout_seconds;
	uint32_t flags;
	uint8_t display_message[IC_SHUTDOWN_MESSAGE_BYTES];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_shutdown) == 2060, "ic_shutdown");

/* TIMESYNC flags */
#define IC_TIMESYNC_FLAG_PROBE  0x0u
#define IC_TIMESYNC_FLAG_SYNC   0x1u /* step the clock */
#define IC_TIMESYNC_FLAG_SAMPLE 0x2u /* a periodic sample */

/* Host time: 100 ns units since 1601-01-01 UTC; this is the Unix epoch in those units. */
#define IC_TIME_UNIX_EPOCH 116444736000000000ull

/* TIMESYNC before 4.0: the guest reads the reference time itself when the message arrives. */
struct ic_timesync_v3 {
	uint64_t parenttime;
	uint64_t childtime;
	uint64_t roundtriptime;
	uint8_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_timesync_v3) == 25, "ic_timesync_v3");

/* TIMESYNC 4.0: parenttime was sampled at the partition's reference time vmreferencetime
 * (TIME_REF_COUNT, 100 ns units), so the guest can correct for the delivery delay. */
struct ic_timesync_v4 {
	uint64_t parenttime;
	uint64_t vmreferencetime;
	uint8_t flags;
	uint8_t leapflags;
	uint8_t stratum;
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_timesync_v4) == 22, "ic_timesync_v4");

/* KVP (key-value pair exchange, IC_MSG_KVP). Facts from include/uapi/linux/hyperv.h and
 * drivers/hv/hv_kvp.c: service versions 4.0 (WIN8), 3.0 (WIN7), 1.0 (WS2008); the same message
 * layout for all three (the IP-info operations came with 4.0). The host sends a whole struct
 * ic_kvp_msg for every operation; the guest answers it in place. Keys and values travel as
 * UTF-16LE with their byte counts (key_size, value_size) including the terminating NUL unit; the
 * guest's kernel converts to UTF-8 for hv_kvp_daemon. */
#define IC_KVP_OP_GET          0u
#define IC_KVP_OP_SET          1u
#define IC_KVP_OP_DELETE       2u
#define IC_KVP_OP_ENUMERATE    3u
#define IC_KVP_OP_GET_IP_INFO  4u
#define IC_KVP_OP_SET_IP_INFO  5u

/* Pools: EXTERNAL is written by the host (the guest's daemon keeps it in
 * /var/lib/hyperv/.kvp_pool_0), GUEST by the guest's own tools (.kvp_pool_1), AUTO is the guest's
 * automatic values (FullyQualifiedDomainName, OSName... computed by the daemon on each ENUMERATE). */
#define IC_KVP_POOL_EXTERNAL      0u
#define IC_KVP_POOL_GUEST         1u
#define IC_KVP_POOL_AUTO          2u
#define IC_KVP_POOL_AUTO_EXTERNAL 3u
#define IC_KVP_POOL_AUTO_INTERNAL 4u

/* value_type (registry types) */
#define IC_KVP_REG_SZ  1u
#define IC_KVP_REG_U32 4u
#define IC_KVP_REG_U64 8u

/* Statuses beyond IC_S_OK / IC_E_FAIL: hv_kvp_daemon answers an ENUMERATE past the last item with
 * HV_S_CONT; the guest's kernel answers IC_E_FAIL when no daemon is registered (at once) or when
 * the daemon did not answer in time. */
#define IC_KVP_S_CONT 0x80070103u

#define IC_KVP_KEY_BYTES   512u  /* UTF-16 bytes, NUL included */
#define IC_KVP_VALUE_BYTES 2048u

struct ic_kvp_hdr {
	uint8_t operation; /* IC_KVP_OP_* */
	uint8_t pool;      /* IC_KVP_POOL_* */
	uint16_t pad;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_hdr) == 4, "ic_kvp_hdr");

struct ic_kvp_value {
	uint32_t value_type; /* IC_KVP_REG_* */
	uint32_t key_size;   /* bytes */
	uint32_t value_size; /* bytes */
	uint8_t key[IC_KVP_KEY_BYTES];
	uint8_t value[IC_KVP_VALUE_BYTES]; /* REG_U32 / REG_U64: the number, little-endian */
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_value) == 2572, "ic_kvp_value");

/* GET, SET: the value; ENUMERATE: the index asked for, and the guest's item there. */
struct ic_kvp_enumerate {
	uint32_t index;
	struct ic_kvp_value data;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_enumerate) == 2576, "ic_kvp_enumerate");

struct ic_kvp_delete {
	uint32_t key_size;
	uint8_t key[IC_KVP_KEY_BYTES];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_delete) == 516, "ic_kvp_delete");

/* GET_IP_INFO / SET_IP_INFO (4.0): these follow a 2-byte header (operation, pool) with no pad
 * (struct hv_kvp_ip_msg); strings UTF-16LE. */
#define IC_KVP_ADAPTER_ID_UNITS 128u
#define IC_KVP_IP_ADDR_UNITS    1024u
#define IC_KVP_GATEWAY_UNITS    512u
struct ic_kvp_ipaddr_value {
	uint16_t adapter_id[IC_KVP_ADAPTER_ID_UNITS];
	uint8_t addr_family; /* 0 none, 1 IPv4, 2 IPv6 */
	uint8_t dhcp_enabled;
	uint16_t ip_addr[IC_KVP_IP_ADDR_UNITS];
	uint16_t sub_net[IC_KVP_IP_ADDR_UNITS];
	uint16_t gate_way[IC_KVP_GATEWAY_UNITS];
	uint16_t dns_addr[IC_KVP_IP_ADDR_UNITS];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_ipaddr_value) == 7426, "ic_kvp_ipaddr_value");

/* addr_family: what the guest found on the adapter (bits) */
#define IC_KVP_ADDR_FAMILY_IPV4 0x1u
#define IC_KVP_ADDR_FAMILY_IPV6 0x2u

/* GET_IP_INFO: the host names the adapter by its MAC in adapter_id, as the guest's
 * /sys/class/net/IF/address spells it in upper case ("00:15:5D:0A:0B:0C"; hv_kvp_daemon matches
 * that); the guest answers in place with its addresses, subnets, gateways and DNS servers, each
 * list ';'-separated (hv_kvp_daemon), and IC_E_FAIL when no interface has that MAC. */
struct ic_kvp_ip_msg {
	uint8_t operation; /* IC_KVP_OP_GET_IP_INFO / SET_IP_INFO */
	uint8_t pool;
	struct ic_kvp_ipaddr_value ip;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_ip_msg) == 7428, "ic_kvp_ip_msg");

/* The message: a header and a body as large as the largest operation's (the IP-info one). */
struct ic_kvp_msg {
	struct ic_kvp_hdr hdr;
	union {
		struct ic_kvp_value get, set;
		struct ic_kvp_delete del;
		struct ic_kvp_enumerate enumerate;
		struct ic_kvp_ipaddr_value ip; /* not used at this offset: see above */
	} body;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_kvp_msg) == 7430, "ic_kvp_msg");

/* FCOPY (guest services, service version 1.1; Linux's hv_fcopy.c and its hv_fcopy_daemon). The host
 * sends START, WRITEs of at most IC_FCOPY_FRAGMENT bytes, then COMPLETE, or CANCEL to give up (the
 * guest deletes the partial file); the guest answers each in place with its status in the header:
 * IC_S_OK, IC_E_FAIL (the daemon is not running, cannot create the file...), or one of the HRESULTs
 * below. Names are UTF-16LE, NUL-terminated; the guest's kernel converts each to at most 259 bytes of
 * UTF-8. service_id0/1 are unused by Linux (zero). */
#define IC_FCOPY_START    0u
#define IC_FCOPY_WRITE    1u
#define IC_FCOPY_COMPLETE 2u
#define IC_FCOPY_CANCEL   3u

#define IC_FCOPY_OVERWRITE   0x1u /* replace an existing file */
#define IC_FCOPY_CREATE_PATH 0x2u /* create the missing directory */

#define IC_FCOPY_MAX_PATH 260u       /* UTF-16 units of each name, with its NUL (W_MAX_PATH) */
#define IC_FCOPY_FRAGMENT (6u * 1024u) /* data bytes of one WRITE (DATA_FRAGMENT) */

#define IC_E_ALREADY_EXISTS 0x80070050u /* the file exists and OVERWRITE was not given */
#define IC_E_DISK_FULL      0x80070070u

struct ic_fcopy_hdr {
	uint32_t operation; /* IC_FCOPY_* */
	uint8_t service_id0[16];
	uint8_t service_id1[16];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_fcopy_hdr) == 36, "ic_fcopy_hdr");

struct ic_fcopy_start {
	struct ic_fcopy_hdr hdr;
	uint16_t file_name[IC_FCOPY_MAX_PATH]; /* the file's name in path_name */
	uint16_t path_name[IC_FCOPY_MAX_PATH]; /* its directory */
	uint32_t copy_flags;                   /* IC_FCOPY_OVERWRITE | IC_FCOPY_CREATE_PATH */
	uint64_t file_size;
} __attribute__((packed));
_Static_assert(sizeof(struct ic_fcopy_start) == 1088, "ic_fcopy_start");

/* WRITE (always sent whole: Linux hands sizeof() of it to its daemon whatever the packet's length). */
struct ic_fcopy_data {
	struct ic_fcopy_hdr hdr;
	uint32_t pad;
	uint64_t offset;
	uint32_t size; /* <= IC_FCOPY_FRAGMENT */
	uint8_t data[IC_FCOPY_FRAGMENT];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_fcopy_data) == 6196, "ic_fcopy_data");

/* VSS (backup, "volume shadow copy", IC_MSG_VSS; Linux's hv_snapshot.c with its user-space
 * hv_vss_daemon). Facts from include/uapi/linux/hyperv.h (struct hv_vss_msg, enum hv_vss_op) and
 * drivers/hv/hv_snapshot.c: Linux speaks service version 5.0 only (FREEZE and THAW came with it),
 * framework 3.0. The message follows the IC header; the guest answers the same packet in place with
 * its result in the header's status: IC_S_OK, or IC_E_FAIL when hv_vss_daemon is not registered (at
 * once), when the daemon failed (it thaws what it froze before answering), or when the daemon did
 * not answer in time (the kernel waits 15 min for a FREEZE, 30 s for a THAW). CREATE, DELETE,
 * BU_COMPLETE and AUTO_RECOVER are answered IC_S_OK without doing anything; HOT_BACKUP goes to the
 * daemon and comes back with flags IC_VSS_HBU_NO_AUTO_RECOVERY; GET_DM_INFO with flags 0. While a
 * FREEZE or THAW is with the daemon the guest's kernel reads nothing else from the channel. */
#define IC_VSS_OP_CREATE       0u
#define IC_VSS_OP_DELETE       1u
#define IC_VSS_OP_HOT_BACKUP   2u
#define IC_VSS_OP_GET_DM_INFO  3u
#define IC_VSS_OP_BU_COMPLETE  4u
#define IC_VSS_OP_FREEZE       5u /* freeze the guest's file systems (service version >= 5.0) */
#define IC_VSS_OP_THAW         6u
#define IC_VSS_OP_AUTO_RECOVER 7u

#define IC_VSS_HBU_NO_AUTO_RECOVERY 0x00000005u /* HOT_BACKUP's answer: the only flags Linux gives */

struct ic_vss_hdr {
	uint8_t operation; /* IC_VSS_OP_* (Linux's daemon reuses these 4 bytes as its error; never the host) */
	uint8_t reserved[7];
} __attribute__((packed));
_Static_assert(sizeof(struct ic_vss_hdr) == 8, "ic_vss_hdr");

struct ic_vss_msg {
	struct ic_vss_hdr hdr;
	uint32_t flags; /* HOT_BACKUP: check-feature flags; GET_DM_INFO: dm_info flags */
} __attribute__((packed));
_Static_assert(sizeof(struct ic_vss_msg) == 12, "ic_vss_msg");

#endif
