/* Network boot packets without I/O (freestanding C, compiled for the firmware and for the host's unit
 * tests and fuzzers): building and parsing Ethernet/IPv4/UDP frames, ARP, DHCPv4 with the PXE
 * options, and TFTP with the blksize/tsize options. Every parser takes bytes from the network:
 * lengths are checked before every read, nothing is trusted (a field that does not fit is an error or
 * is ignored, never a read past len). Wire formats: include/gen2vm/proto/net_ip.h. The IPv6 half
 * (ICMPv6 neighbour discovery, DHCPv6, boot-file URLs) is netboot6_wire.c. */
#ifndef GEN2VM_GUESTLIB_NETBOOT_WIRE_H
#define GEN2VM_GUESTLIB_NETBOOT_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "gen2vm/proto/net_ip.h"

uint16_t nb_be16(const uint8_t *p);
uint32_t nb_be32(const uint8_t *p);
void nb_put16(uint8_t *p, uint16_t v);
void nb_put32(uint8_t *p, uint32_t v);
/* The Internet checksum (RFC 1071) of len bytes, continuing from a partial sum (0 to start). */
uint16_t nb_csum(const uint8_t *p, uint32_t len, uint32_t sum);

/* An Ethernet/IPv4/UDP frame with payload (len bytes) into out (cap bytes), UDP checksum filled.
 * Returns the frame length, 0 when it does not fit. */
uint32_t nb_udp4_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
		       const uint8_t dip[4], uint16_t sport, uint16_t dport, const void *payload, uint32_t len,
		       uint16_t ip_id);

/* A received UDP datagram, over IPv4 or IPv6. */
struct nb_udp {
	uint8_t smac[6], dmac[6];
	uint8_t sip[16], dip[16]; /* IPv4: the first 4 bytes */
	uint16_t sport, dport;
	const uint8_t *data; /* inside the frame */
	uint32_t len;
};
/* An IPv4 UDP frame: header checksum, lengths, no fragment, UDP checksum when not zero. 0 or -1. */
int nb_udp4_parse(const uint8_t *f, uint32_t len, struct nb_udp *u);
/* *u from a checked frame: its MACs, addresses (alen bytes each), and the UDP header and payload at
 * udp (ulen bytes with the header, ulen >= 8). For the IPv4 and IPv6 parsers. */
void nb_udp_fill(struct nb_udp *u, const uint8_t *f, const uint8_t *sip, const uint8_t *dip, uint32_t alen,
		 const uint8_t *udp, uint32_t ulen);

/* A TCP segment over IPv4 or IPv6: the fields we send or received. */
struct nb_tcp_seg {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;      /* TCP_SYN, TCP_ACK... */
	uint16_t window;
	uint16_t mss;       /* the MSS option (a SYN's); 0: none */
};
/* An Ethernet/IPv4/TCP frame with payload into out, checksums filled. Returns its length, 0 when it
 * does not fit. */
uint32_t nb_tcp4_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
		       const uint8_t dip[4], const struct nb_tcp_seg *seg, const void *payload, uint32_t len,
		       uint16_t ip_id);

/* A received TCP segment, over IPv4 or IPv6. */
struct nb_tcp {
	uint8_t sip[16], dip[16]; /* IPv4: the first 4 bytes */
	struct nb_tcp_seg seg;
	const uint8_t *data; /* inside the frame */
	uint32_t len;
};
/* An IPv4 TCP frame: IP header checksum and lengths, no fragment, the TCP checksum (mandatory), a data
 * offset inside the segment, options walked for MSS. 0 or -1. */
int nb_tcp4_parse(const uint8_t *f, uint32_t len, struct nb_tcp *t);
/* For both IP versions' builders and parsers: the TCP header of seg (with the MSS option when set)
 * and the payload at tcp, checksum zero; returns the segment's length. And the reverse for tlen
 * checked bytes: fields, options (each length within the header), data; 0 or -1. */
uint32_t nb_tcp_put(uint8_t *tcp, const struct nb_tcp_seg *seg, const void *payload, uint32_t len);
int nb_tcp_get(const uint8_t *tcp, uint32_t tlen, struct nb_tcp *t);

/* HTTP boot (UEFI 2.10 24.7): the boot file is a URL, "http://HOST[:port]/path" where HOST is an IPv4
 * address A.B.C.D, an IPv6 one in brackets (RFC 3986; no zone) or a DNS name (letters, digits and
 * hyphens in dot-separated labels of 1 to 63, at most 253 in all). Returns 0, -1 when url is not an
 * http:// URL at all, -2 when it is one the firmware cannot use (https, a bad host or port, a path
 * too long). */
#define NB_HTTP_HOST_MAX 260u /* a name of 253, ":65535" and the NUL */
struct nb_http_url {
	char name[DNS_NAME_MAX + 1]; /* a DNS name, "" when HOST is an address */
	uint8_t ip[16];              /* the address (IPv4: 4 bytes), when not a name */
	bool v6;                     /* the address is IPv6 */
	uint16_t port;
	char host[NB_HTTP_HOST_MAX]; /* the authority as written: the Host header */
};
int nb_http_url_parse(const char *url, struct nb_http_url *u, char *path, uint32_t path_cap);
/* "GET path HTTP/1.1" with Host, a User-Agent and "Connection: close". Returns the length, 0 when it
 * does not fit. */
uint32_t nb_http_get_build(uint8_t *out, uint32_t cap, const char *host, const char *path);

struct nb_http_resp {
	uint16_t status;
	char reason[40];       /* printable ASCII */
	bool has_length, chunked;
	uint64_t length;       /* Content-Length */
	uint32_t header_len;   /* bytes up to and with the blank line */
};
/* A response's status line and headers from the first len bytes received. 1: the header is not
 * complete yet (and fits in len), 0: parsed, -1: malformed (no HTTP/1.x status line, a Content-Length
 * that is not a number or disagrees with itself, a header longer than 8 KiB). */
int nb_http_resp_parse(const uint8_t *p, uint32_t len, struct nb_http_resp *r);

struct nb_arp {
	uint16_t op;
	uint8_t sha[6], spa[4], tha[6], tpa[4];
};
/* An Ethernet ARP frame for IPv4. 0 or -1. */
int nb_arp_parse(const uint8_t *f, uint32_t len, struct nb_arp *a);
/* Returns the frame length (60: padded to Ethernet's minimum) or 0 when cap is too small. */
uint32_t nb_arp_build(uint8_t *out, uint32_t cap, uint16_t op, const uint8_t dmac[6], const uint8_t smac[6],
		      const uint8_t sip[4], const uint8_t tha[6], const uint8_t tip[4]);

/* DHCPv4 client messages, with the PXE options (RFC 4578): client architecture x64 UEFI, the
 * "PXEClient:Arch:00007:UNDI:003016" vendor class, UNDI version and the client UUID. */
struct nb_dhcp4_req {
	uint8_t type;        /* DHCP_DISCOVER or DHCP_REQUEST */
	uint32_t xid;
	uint16_t secs;
	uint8_t mac[6];
	uint8_t uuid[16];    /* SMBIOS system UUID (option 97 type 0) */
	uint8_t req_ip[4];   /* DHCP_REQUEST: the offered address (option 50) */
	uint8_t server_id[4];/* DHCP_REQUEST: the chosen server (option 54) */
};
/* Returns the message length (a UDP payload), 0 when cap is too small. */
uint32_t nb_dhcp4_build(uint8_t *out, uint32_t cap, const struct nb_dhcp4_req *r);

#define NB_BOOTFILE_MAX 128u
struct nb_dhcp4_reply {
	uint8_t type; /* option 53; 0 when absent (a BOOTP reply) */
	uint8_t yiaddr[4], siaddr[4], server_id[4], mask[4], router[4];
	bool has_server_id, has_mask, has_router, pxe_class, has_dns;
	uint8_t dns[4];                /* option 6: the first DNS server */
	char bootfile[NB_BOOTFILE_MAX]; /* option 67, else the file field; NUL-terminated, "" when none */
	char tftp_server[64];          /* option 66, else the sname field; "" when none */
};
/* A reply to our xid and MAC (a BOOTREPLY with the magic cookie). Options may be overloaded into the
 * file and sname fields (option 52). 0 or -1. */
int nb_dhcp4_parse(const uint8_t *p, uint32_t len, uint32_t xid, const uint8_t mac[6], struct nb_dhcp4_reply *r);

/* A DNS query (recursion desired) for name's qtype (DNS_TYPE_A or _AAAA). Returns its length (a UDP
 * payload), 0 when name is not a valid host name or does not fit. */
uint32_t nb_dns_query(uint8_t *out, uint32_t cap, uint16_t id, const char *name, uint16_t qtype);
/* The answer to our query id: 0 with the first qtype/IN record's address (4 or 16 bytes) in addr,
 * 1 when the server says the name does not exist (NXDOMAIN) or has no such record, -1 for anything
 * else (not an answer to id, malformed: every name, pointer and record length is checked against the
 * message, and a chain of compression pointers cannot loop). *rcode is the server's code. */
int nb_dns_answer(const uint8_t *p, uint32_t len, uint16_t id, uint16_t qtype, uint8_t addr[16], uint8_t *rcode);

/* TFTP read request for file in octet mode; blksize 0 and !tsize: no options. Returns its length,
 * 0 when it does not fit (or the name is empty or too long). */
uint32_t nb_tftp_rrq(uint8_t *out, uint32_t cap, const char *file, uint32_t blksize, bool tsize);
uint32_t nb_tftp_ack(uint8_t *out, uint32_t cap, uint16_t block);
uint32_t nb_tftp_error(uint8_t *out, uint32_t cap, uint16_t code, const char *msg);

struct nb_tftp {
	uint16_t op;
	uint16_t block;       /* DATA */
	const uint8_t *data;  /* DATA */
	uint32_t len;
	uint16_t err;         /* ERROR */
	char msg[80];         /* ERROR, printable ASCII only */
	bool has_blksize, has_tsize; /* OACK */
	uint32_t blksize;
	uint64_t tsize;
};
/* 0 or -1 (unknown opcode, truncated, an OACK option value that is not a number). */
int nb_tftp_parse(const uint8_t *p, uint32_t len, struct nb_tftp *t);

/* ---- IPv6 (netboot6_wire.c) ---- */

/* An Ethernet/IPv6 frame carrying an upper-layer message (proto IP_PROTO_UDP: payload after a UDP
 * header built here; IP_PROTO_ICMPV6: payload is the whole ICMPv6 message, its checksum field
 * filled here). Hop limit 255 (what ND requires; harmless elsewhere on a link). Returns the frame
 * length, 0 when it does not fit. */
uint32_t nb_udp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
		       const uint8_t sip[16], const uint8_t dip[16], uint16_t sport, uint16_t dport,
		       const void *payload, uint32_t len);
uint32_t nb_icmp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
			const uint8_t sip[16], const uint8_t dip[16], const void *msg, uint32_t len);
/* An IPv6 UDP frame with no extension headers: lengths, and the UDP checksum, which IPv6 makes
 * mandatory (a zero checksum is refused). 0 or -1. */
int nb_udp6_parse(const uint8_t *f, uint32_t len, struct nb_udp *u);
/* TCP over IPv6 (hop limit 255, as every frame built here), and an IPv6 TCP frame with no extension
 * headers: lengths and the TCP checksum; 0 or -1. */
uint32_t nb_tcp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
		       const uint8_t sip[16], const uint8_t dip[16], const struct nb_tcp_seg *seg, const void *payload,
		       uint32_t len);
int nb_tcp6_parse(const uint8_t *f, uint32_t len, struct nb_tcp *t);

/* The link-local address fe80::/64 with the modified EUI-64 interface identifier of mac (RFC 4291
 * appendix A), the solicited-node multicast address of ip (ff02::1:ffXX:XXXX) and the Ethernet
 * address of an IPv6 multicast address (33:33 and its last 4 bytes). */
void nb_ip6_linklocal(uint8_t out[16], const uint8_t mac[6]);
/* A /64 prefix's address for mac by stateless autoconfiguration (RFC 4862 5.5.3): the prefix's first
 * 8 bytes and the same modified EUI-64 interface identifier. */
void nb_ip6_slaac(uint8_t out[16], const uint8_t prefix[16], const uint8_t mac[6]);
void nb_ip6_solicited(uint8_t out[16], const uint8_t ip[16]);
void nb_ip6_mcast_mac(uint8_t out[6], const uint8_t ip[16]);
bool nb_ip6_is_linklocal(const uint8_t ip[16]);
bool nb_ip6_is_mcast(const uint8_t ip[16]);
/* ip as text (RFC 5952: lower case, the longest run of zero groups as ::), NUL-terminated. */
void nb_ip6_text(char out[48], const uint8_t ip[16]);

/* An ICMPv6 neighbour-discovery message in an IPv6 frame: the ICMPv6 checksum is checked, hop limit
 * must be 255 and code 0 (RFC 4861 6.1.1, 7.1.1); every option length is checked against the
 * message. */
struct nb_nd {
	uint8_t type;            /* ICMPV6_NEIGH_SOLICIT, _ADVERT, ICMPV6_ROUTER_ADVERT */
	uint8_t sip[16], dip[16], smac[6];
	uint8_t target[16];      /* NS, NA */
	uint8_t na_flags;        /* NA */
	uint8_t lladdr[6];       /* the source (NS, RA) or target (NA) link-layer address option */
	bool has_lladdr;
	uint16_t router_lifetime;/* RA, seconds: 0 means not a default router */
	uint8_t ra_flags;        /* RA: ND_RA_MANAGED, ND_RA_OTHER */
	bool has_prefix;         /* RA: the first prefix with the on-link or autonomous flag */
	uint8_t prefix[16], prefix_len, prefix_flags;
};
/* 0, or -1 for a frame that is not an acceptable NS, NA or RA. */
int nb_nd_parse(const uint8_t *f, uint32_t len, struct nb_nd *nd);
/* The ICMPv6 body (from the type byte, checksum 0: nb_icmp6_build fills it) of a neighbour
 * solicitation for target, a neighbour advertisement for target (flags ND_NA_*), or a router
 * solicitation, each with our link-layer address option (a solicitation with mac NULL has none: a
 * duplicate address detection probe, sent from ::, RFC 4861 7.2.2). Returns its length, 0 when cap
 * is short. */
uint32_t nb_nd_ns(uint8_t *out, uint32_t cap, const uint8_t target[16], const uint8_t mac[6]);
uint32_t nb_nd_na(uint8_t *out, uint32_t cap, const uint8_t target[16], uint8_t flags, const uint8_t mac[6]);
uint32_t nb_nd_rs(uint8_t *out, uint32_t cap, const uint8_t mac[6]);

/* DHCPv6 client messages (RFC 8415) as a PXE client sends them: client DUID-UUID (RFC 6355), one
 * IA_NA, elapsed time, the option request for the boot-file URL and parameters (RFC 5970), client
 * architecture x64 UEFI (option 61), network interface identifier (62) and the PXE vendor class. */
#define NB_DUID_MAX 130u  /* RFC 8415 11.1: a DUID is at most 128 bytes (and its 2-byte type) */
struct nb_dhcp6_req {
	uint8_t type;        /* DHCP6_SOLICIT, DHCP6_REQUEST or DHCP6_INFORMATION_REQUEST (no IA_NA) */
	uint32_t xid;        /* 24 bits */
	uint16_t elapsed;    /* hundredths of a second */
	uint8_t uuid[16];    /* the client DUID's UUID */
	uint32_t iaid;
	uint8_t server_id[NB_DUID_MAX]; /* DHCP6_REQUEST: the chosen server's DUID */
	uint16_t server_id_len;
	uint8_t addr[16];    /* DHCP6_REQUEST: the advertised address */
	bool has_addr;
};
uint32_t nb_dhcp6_build(uint8_t *out, uint32_t cap, const struct nb_dhcp6_req *r);

struct nb_dhcp6_reply {
	uint8_t type;        /* DHCP6_ADVERTISE or DHCP6_REPLY */
	uint8_t server_id[NB_DUID_MAX];
	uint16_t server_id_len;
	uint8_t addr[16];    /* the first IAADDR of our IA_NA */
	bool has_addr;
	uint16_t status;     /* the top-level status code, else the IA_NA's, else 0 (success) */
	uint8_t preference;  /* option 7, 0 when absent */
	char bootfile_url[NB_BOOTFILE_MAX]; /* option 59, NUL-terminated, "" when none */
	bool url_too_long;
	uint8_t dns[16];     /* option 23: the first DNS server */
	bool has_dns;
};
/* An Advertise or Reply for our xid and our client DUID (uuid). Every option's length is checked
 * against its container. 0 or -1. */
int nb_dhcp6_parse(const uint8_t *p, uint32_t len, uint32_t xid, const uint8_t uuid[16], struct nb_dhcp6_reply *r);

/* A boot-file URL "tftp://[ipv6]/path" (or "tftp://[ipv6]:69/path"): the server's address and the
 * path without its leading '/' (what TFTP asks for; "tftp://[a]//abs" keeps "/abs"). 0 or -1 (not
 * tftp, not a bracketed IPv6 literal, another port, an empty or too long path). */
int nb_tftp6_url(const char *url, uint8_t server[16], char *path, uint32_t cap);
int nb_ip6_parse(const char *s, uint32_t len, uint8_t out[16]);

#endif
