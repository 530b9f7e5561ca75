/* Ethernet, ARP, IPv4, UDP, DHCPv4 (RFC 2131/2132 with the PXE options of RFC 4578) and TFTP
 * (RFC 1350, 2347-2349): the wire formats of the firmware's network boot. Multi-byte fields are in
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
