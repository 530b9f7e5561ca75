/* libFuzzer target for the firmware's network boot parsers (guestlib/netboot_wire.c and
 * netboot6_wire.c): every frame and datagram they take comes from the network.
 *
 * Input: a selector byte, then the bytes: 0 an Ethernet frame for the UDP and ARP parsers, 1 a DHCP
 * reply (xid 0x01020304, the MAC below), 2 a TFTP message, 3 an Ethernet frame for the IPv6 UDP and
 * neighbour-discovery parsers, 4 a DHCPv6 reply (xid 0x020304, the UUID below) and its boot-file URL,
 * 5 an IPv6 address and a tftp:// URL as text, 6 an Ethernet frame for the TCP parsers (IPv4 and
 * IPv6), 7 an HTTP response header, (as a string) an http:// boot-file URL, and a DNS answer. Nothing may be read outside the input,
 * and what the parsers hand back must lie inside it (strings NUL-terminated within their arrays). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netboot_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = { 0x00, 0x15, 0x5d, 0x42, 0x00, 0x07 };
	if (size < 1 || size > 65536)
		return 0;
	uint8_t sel = data[0];
	/* an exact-size copy so that ASan sees any read past the end */
	size_t n = size - 1;
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return 0;
	memcpy(p, data + 1, n);
	switch (sel % 8) {
	case 0: {
		struct nb_udp u;
		struct nb_arp a;
		if (!nb_udp4_parse(p, (uint32_t)n, &u) && (u.data < p || u.data + u.len > p + n))
			abort();
		(void)nb_arp_parse(p, (uint32_t)n, &a);
		break;
	}
	case 1: {
		struct nb_dhcp4_reply r;
		if (!nb_dhcp4_parse(p, (uint32_t)n, 0x01020304, mac, &r) &&
		    (strnlen(r.bootfile, sizeof(r.bootfile)) == sizeof(r.bootfile) ||
		     strnlen(r.tftp_server, sizeof(r.tftp_server)) == sizeof(r.tftp_server)))
			abort();
		break;
	}
	case 3: {
		struct nb_udp u;
		struct nb_nd nd;
		if (!nb_udp6_parse(p, (uint32_t)n, &u) && (u.data < p || u.data + u.len > p + n))
			abort();
		if (!nb_nd_parse(p, (uint32_t)n, &nd) && nd.has_prefix && nd.prefix_len > 128)
			abort();
		break;
	}
	case 4: {
		static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
		struct nb_dhcp6_reply r;
		if (!nb_dhcp6_parse(p, (uint32_t)n, 0x020304, uuid, &r)) {
			if (strnlen(r.bootfile_url, sizeof(r.bootfile_url)) == sizeof(r.bootfile_url) ||
			    r.server_id_len > NB_DUID_MAX)
				abort();
			uint8_t a[16];
			char path[NB_BOOTFILE_MAX];
			if (!nb_tftp6_url(r.bootfile_url, a, path, sizeof(path)) && strnlen(path, sizeof(path)) == sizeof(path))
				abort();
		}
		break;
	}
	case 5: {
		uint8_t a[16];
		char text[48], path[32], *url = malloc(n + 1);
		if (!url)
			break;
		memcpy(url, p, n);
		url[n] = 0;
		if (!nb_ip6_parse((const char *)p, (uint32_t)n, a)) {
			nb_ip6_text(text, a); /* the text form parses back to the same address */
			uint8_t b[16];
			if (nb_ip6_parse(text, (uint32_t)strlen(text), b) || memcmp(a, b, 16))
				abort();
		}
		if (!nb_tftp6_url(url, a, path, sizeof(path)) && strnlen(path, sizeof(path)) == sizeof(path))
			abort();
		free(url);
		break;
	}
	case 6: {
		struct nb_tcp t;
		if (!nb_tcp4_parse(p, (uint32_t)n, &t) && (t.data < p || t.data + t.len > p + n))
			abort();
		if (!nb_tcp6_parse(p, (uint32_t)n, &t) && (t.data < p || t.data + t.len > p + n))
			abort();
		break;
	}
	case 7: {
		struct nb_http_resp r;
		if (!nb_http_resp_parse(p, (uint32_t)n, &r) && (r.header_len > n || strnlen(r.reason, sizeof(r.reason)) ==
									    sizeof(r.reason)))
			abort();
		char *url = malloc(n + 1), path[NB_BOOTFILE_MAX];
		struct nb_http_url u;
		if (url) {
			memcpy(url, p, n);
			url[n] = 0;
			if (!nb_http_url_parse(url, &u, path, sizeof(path)) &&
			    (strnlen(u.host, sizeof(u.host)) == sizeof(u.host) || strnlen(path, sizeof(path)) == sizeof(path) ||
			     strnlen(u.name, sizeof(u.name)) == sizeof(u.name)))
				abort();
			/* a name that parsed makes a query that fits its bound */
			uint8_t q[DNS_NAME_MAX + 32];
			if (!nb_http_url_parse(url, &u, path, sizeof(path)) && u.name[0] &&
			    !nb_dns_query(q, sizeof(q), 1, u.name, DNS_TYPE_A))
				abort();
			free(url);
		}
		/* the same bytes as a DNS answer */
		uint8_t addr[16], rcode;
		uint16_t id = n >= 2 ? nb_be16(p) : 0; /* the message's own id: its records are looked at */
		nb_dns_answer(p, (uint32_t)n, id, DNS_TYPE_A, addr, &rcode);
		nb_dns_answer(p, (uint32_t)n, id, DNS_TYPE_AAAA, addr, &rcode);
		break;
	}
	default: {
		struct nb_tftp t;
		if (!nb_tftp_parse(p, (uint32_t)n, &t) && t.op == TFTP_DATA && (t.data < p || t.data + t.len > p + n))
			abort();
		break;
	}
	}
	free(p);
	return 0;
}
