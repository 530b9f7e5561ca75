/* Network boot packets without I/O (freestanding C, compiled for the firmware and for the host's unit
 * tests and fuzzers): building and parsing Ethernet/IPv4/UDP frames, ARP, DHCPv4 with the PXE
 * options, and TFTP with the blksize/tsize options. Every parser takes bytes from the network:
 * lengths are checked before every read, nothing is trusted (a field that does not fit is an error or
 * is ignored, never a read past len). Wire formats: include/gen2vm/proto/net_ip.h. */
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

struct nb_udp4 {
	uint8_t smac[6], dmac[6];
	uint8_t sip[4], dip[4];
	uint16_t sport, dport;
	const uint8_t *data; /* inside the frame */
	uint32_t len;
};
/* An IPv4 UDP frame: header checksum, lengths, no fragment, UDP checksum when not zero. 0 or -1. */
int nb_udp4_parse(const uint8_t *f, uint32_t len, struct nb_udp4 *u);

/* A TCP segment over IPv4: the fields we send or received. */
struct nb_tcp4_seg {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;      /* TCP_SYN, TCP_ACK... */
	uint16_t window;
	uint16_t mss;       /* the MSS option (a SYN's); 0: none */
};
/* An Ethernet/IPv4/TCP frame with payload into out, checksums filled. Returns its length, 0 when it
 * does not fit. */
uint32_t nb_tcp4_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
		       const uint8_t dip[4], const struct nb_tcp4_seg *seg, const void *payload, uint32_t len,
		       uint16_t ip_id);

struct nb_tcp4 {
	uint8_t sip[4], dip[4];
	struct nb_tcp4_seg seg;
	const uint8_t *data; /* inside the frame */
	uint32_t len;
};
/* An IPv4 TCP frame: IP header checksum and lengths, no fragment, the TCP checksum (mandatory), a data
 * offset inside the segment, options walked for MSS. 0 or -1. */
int nb_tcp4_parse(const uint8_t *f, uint32_t len, struct nb_tcp4 *t);

/* HTTP boot (UEFI 2.10 24.7): the boot file is a URL. "http://A.B.C.D[:port]/path" with an IPv4
 * address (the firmware has no DNS client). Returns 0, -1 when url is not an http:// URL at all, -2
 * when it is one the firmware cannot use (a host name, https, a bad port, a path too long); host
 * receives "A.B.C.D[:port]" as written (the Host header), path the rest from its '/'. */
#define NB_HTTP_HOST_MAX 24u
int nb_http_url_parse(const char *url, uint8_t ip[4], uint16_t *port, char host[NB_HTTP_HOST_MAX], char *path,
		      uint32_t path_cap);
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
	bool has_server_id, has_mask, has_router, pxe_class;
	char bootfile[NB_BOOTFILE_MAX]; /* option 67, else the file field; NUL-terminated, "" when none */
	char tftp_server[64];          /* option 66, else the sname field; "" when none */
};
/* A reply to our xid and MAC (a BOOTREPLY with the magic cookie). Options may be overloaded into the
 * file and sname fields (option 52). 0 or -1. */
int nb_dhcp4_parse(const uint8_t *p, uint32_t len, uint32_t xid, const uint8_t mac[6], struct nb_dhcp4_reply *r);

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

#endif
