/* Ethernet, ARP, IPv4, UDP, DHCPv4 (RFC 2131/2132 with the PXE options of RFC 4578), IPv6 with
 * ICMPv6 neighbour discovery (RFC 8200, 4443, 4861, 4862), DHCPv6 (RFC 8415 with the boot-file URL
 * of RFC 5970) and TFTP (RFC 1350, 2347-2349): the wire formats of the firmware's network boot. Multi-byte fields are in
 * network byte order on the wire (big-endian): these structs hold them as bytes or as raw big-endian
 * words (be16/be32 suffix) that the code converts. */
#ifndef GEN2VM_PROTO_NET_IP_H
#define GEN2VM_PROTO_NET_IP_H

#include <stdint.h>

#define ETH_P_IPV4 0x0800u
#define ETH_P_ARP 0x0806u
#define ETH_P_IPV6 0x86DDu
#define ETH_HLEN 14u

struct eth_hdr {
	uint8_t dst[6], src[6];
	uint8_t type[2];
} __attribute__((packed));
_Static_assert(sizeof(struct eth_hdr) == ETH_HLEN, "eth_hdr");

#define ARP_OP_REQUEST 1u
#define ARP_OP_REPLY 2u
struct arp_ipv4 { /* hardware Ethernet, protocol IPv4 */
	uint8_t htype[2], ptype[2];
	uint8_t hlen, plen;
	uint8_t op[2];
	uint8_t sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));
_Static_assert(sizeof(struct arp_ipv4) == 28, "arp_ipv4");

#define IP_PROTO_ICMP 1u
#define IP_PROTO_TCP 6u
#define IP_PROTO_UDP 17u
struct ipv4_hdr {
	uint8_t ver_ihl, tos;
	uint8_t total_len[2], id[2], frag[2];
	uint8_t ttl, proto;
	uint8_t csum[2];
	uint8_t src[4], dst[4];
} __attribute__((packed));
_Static_assert(sizeof(struct ipv4_hdr) == 20, "ipv4_hdr");

struct udp_hdr {
	uint8_t sport[2], dport[2], len[2], csum[2];
} __attribute__((packed));
_Static_assert(sizeof(struct udp_hdr) == 8, "udp_hdr");

/* --- TCP (RFC 9293) --- */
#define TCP_FIN 0x01u
#define TCP_SYN 0x02u
#define TCP_RST 0x04u
#define TCP_PSH 0x08u
#define TCP_ACK 0x10u
#define TCP_OPT_END 0u
#define TCP_OPT_NOP 1u
#define TCP_OPT_MSS 2u
struct tcp_hdr {
	uint8_t sport[2], dport[2];
	uint8_t seq[4], ack[4];
	uint8_t off;   /* data offset in 32-bit words, high nibble */
	uint8_t flags;
	uint8_t window[2], csum[2], urgent[2];
} __attribute__((packed));
_Static_assert(sizeof(struct tcp_hdr) == 20, "tcp_hdr");

#define HTTP_PORT 80u

/* --- DNS (RFC 1035), as a stub resolver asks --- */
#define DNS_PORT 53u
struct dns_hdr {
	uint8_t id[2], flags[2], qdcount[2], ancount[2], nscount[2], arcount[2];
} __attribute__((packed));
_Static_assert(sizeof(struct dns_hdr) == 12, "dns_hdr");
#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_RD 0x0100u
#define DNS_RCODE_MASK 0x000fu
#define DNS_RCODE_NXDOMAIN 3u
#define DNS_TYPE_A 1u
#define DNS_TYPE_AAAA 28u
#define DNS_CLASS_IN 1u
#define DNS_NAME_MAX 253u

/* --- DHCPv4 --- */
#define DHCP_SERVER_PORT 67u
#define DHCP_CLIENT_PORT 68u
#define BOOTP_REQUEST 1u
#define BOOTP_REPLY 2u
#define DHCP_MAGIC 0x63825363u
#define DHCP_FLAG_BROADCAST 0x8000u

struct dhcp4_hdr { /* the BOOTP fixed part and the options' magic cookie */
	uint8_t op, htype, hlen, hops;
	uint8_t xid[4];
	uint8_t secs[2], flags[2];
	uint8_t ciaddr[4], yiaddr[4], siaddr[4], giaddr[4];
	uint8_t chaddr[16];
	uint8_t sname[64];
	uint8_t file[128];
	uint8_t magic[4];
} __attribute__((packed));
_Static_assert(sizeof(struct dhcp4_hdr) == 240, "dhcp4_hdr");

#define DHCP_OPT_PAD 0u
#define DHCP_OPT_SUBNET_MASK 1u
#define DHCP_OPT_ROUTER 3u
#define DHCP_OPT_DNS 6u
#define DHCP_OPT_HOSTNAME 12u
#define DHCP_OPT_REQUESTED_IP 50u
#define DHCP_OPT_LEASE_TIME 51u
#define DHCP_OPT_OVERLOAD 52u
#define DHCP_OPT_MSG_TYPE 53u
#define DHCP_OPT_SERVER_ID 54u
#define DHCP_OPT_PARAM_LIST 55u
#define DHCP_OPT_MAX_SIZE 57u
#define DHCP_OPT_VENDOR_CLASS 60u
#define DHCP_OPT_TFTP_SERVER 66u
#define DHCP_OPT_BOOTFILE 67u
#define DHCP_OPT_CLIENT_ARCH 93u  /* RFC 4578 */
#define DHCP_OPT_CLIENT_NDI 94u
#define DHCP_OPT_CLIENT_UUID 97u
#define DHCP_OPT_END 255u

#define DHCP_DISCOVER 1u
#define DHCP_OFFER 2u
#define DHCP_REQUEST 3u
#define DHCP_DECLINE 4u
#define DHCP_ACK 5u
#define DHCP_NAK 6u

/* RFC 4578 / IANA processor architecture: x64 UEFI */
#define PXE_ARCH_X64_UEFI 0x0007u

/* --- IPv6 and ICMPv6 --- */
#define IP_PROTO_ICMPV6 58u
struct ipv6_hdr {
	uint8_t ver_tc_flow[4]; /* version 6, traffic class, flow label */
	uint8_t payload_len[2];
	uint8_t next_hdr, hop_limit;
	uint8_t src[16], dst[16];
} __attribute__((packed));
_Static_assert(sizeof(struct ipv6_hdr) == 40, "ipv6_hdr");

#define ICMPV6_ROUTER_SOLICIT 133u
#define ICMPV6_ROUTER_ADVERT 134u
#define ICMPV6_NEIGH_SOLICIT 135u
#define ICMPV6_NEIGH_ADVERT 136u
#define ND_HOP_LIMIT 255u /* RFC 4861 6.1/7.1: ND messages are only taken with hop limit 255 */

struct icmpv6_hdr {
	uint8_t type, code;
	uint8_t csum[2];
} __attribute__((packed));
_Static_assert(sizeof(struct icmpv6_hdr) == 4, "icmpv6_hdr");

/* Neighbour Solicitation and Advertisement (RFC 4861 4.3, 4.4), after the ICMPv6 header. */
#define ND_NA_ROUTER 0x80u
#define ND_NA_SOLICITED 0x40u
#define ND_NA_OVERRIDE 0x20u
struct nd_neigh {
	uint8_t flags, reserved[3]; /* NA: R/S/O; NS: reserved */
	uint8_t target[16];
} __attribute__((packed));
_Static_assert(sizeof(struct nd_neigh) == 20, "nd_neigh");

/* Router Advertisement (RFC 4861 4.2), after the ICMPv6 header. */
struct nd_router_advert {
	uint8_t cur_hop_limit, flags;
	uint8_t router_lifetime[2];
	uint8_t reachable_time[4], retrans_timer[4];
} __attribute__((packed));
_Static_assert(sizeof(struct nd_router_advert) == 12, "nd_router_advert");

/* ND options: type, length in units of 8 bytes (0 is invalid). */
#define ND_OPT_SOURCE_LLADDR 1u
#define ND_OPT_TARGET_LLADDR 2u
#define ND_OPT_PREFIX_INFO 3u
#define ND_OPT_PREFIX_ONLINK 0x80u
#define ND_OPT_PREFIX_AUTO 0x40u
#define ND_RA_MANAGED 0x80u /* addresses from DHCPv6 (the M flag) */
#define ND_RA_OTHER 0x40u   /* other configuration from DHCPv6 (the O flag) */
struct nd_opt_prefix {
	uint8_t type, len; /* 3, 4 */
	uint8_t prefix_len, flags;
	uint8_t valid_lifetime[4], preferred_lifetime[4], reserved[4];
	uint8_t prefix[16];
} __attribute__((packed));
_Static_assert(sizeof(struct nd_opt_prefix) == 32, "nd_opt_prefix");

/* --- DHCPv6 (RFC 8415, RFC 5970) --- */
#define DHCP6_CLIENT_PORT 546u
#define DHCP6_SERVER_PORT 547u
#define DHCP6_SOLICIT 1u
#define DHCP6_ADVERTISE 2u
#define DHCP6_REQUEST 3u
#define DHCP6_REPLY 7u
#define DHCP6_INFORMATION_REQUEST 11u /* stateless: options only, no address (RFC 8415 18.2.6) */

struct dhcp6_hdr {
	uint8_t msg_type;
	uint8_t xid[3];
} __attribute__((packed));
_Static_assert(sizeof(struct dhcp6_hdr) == 4, "dhcp6_hdr");

struct dhcp6_opt { /* followed by len bytes */
	uint8_t code[2], len[2];
} __attribute__((packed));
_Static_assert(sizeof(struct dhcp6_opt) == 4, "dhcp6_opt");

#define DHCP6_OPT_CLIENTID 1u
#define DHCP6_OPT_SERVERID 2u
#define DHCP6_OPT_IA_NA 3u
#define DHCP6_OPT_IAADDR 5u
#define DHCP6_OPT_ORO 6u
#define DHCP6_OPT_PREFERENCE 7u
#define DHCP6_OPT_ELAPSED_TIME 8u
#define DHCP6_OPT_STATUS_CODE 13u
#define DHCP6_OPT_USER_CLASS 15u
#define DHCP6_OPT_VENDOR_CLASS 16u
#define DHCP6_OPT_DNS_SERVERS 23u
#define DHCP6_OPT_BOOTFILE_URL 59u   /* RFC 5970 */
#define DHCP6_OPT_BOOTFILE_PARAM 60u
#define DHCP6_OPT_CLIENT_ARCH 61u
#define DHCP6_OPT_NII 62u

struct dhcp6_ia_na { /* the IA_NA option's fixed part; IA options follow */
	uint8_t iaid[4], t1[4], t2[4];
} __attribute__((packed));
_Static_assert(sizeof(struct dhcp6_ia_na) == 12, "dhcp6_ia_na");

struct dhcp6_iaaddr { /* the IAADDR option's fixed part; options follow */
	uint8_t addr[16];
	uint8_t preferred_lifetime[4], valid_lifetime[4];
} __attribute__((packed));
_Static_assert(sizeof(struct dhcp6_iaaddr) == 24, "dhcp6_iaaddr");

#define DHCP6_DUID_LLT 1u
#define DHCP6_DUID_UUID 4u  /* RFC 6355: type 4 and the 16-byte UUID */
#define DHCP6_STATUS_SUCCESS 0u
#define DHCP6_ENTERPRISE_PXE 343u /* the vendor-class enterprise number PXE clients send (Intel) */

/* --- TFTP --- */
#define TFTP_PORT 69u
#define TFTP_RRQ 1u
#define TFTP_WRQ 2u
#define TFTP_DATA 3u
#define TFTP_ACK 4u
#define TFTP_ERROR 5u
#define TFTP_OACK 6u
#define TFTP_ERR_NOT_FOUND 1u
#define TFTP_ERR_ACCESS 2u
#define TFTP_ERR_OPTION 8u
#define TFTP_DEFAULT_BLKSIZE 512u

#endif
