/* The firmware's network boot packets (guestlib/netboot_wire.c): checksums against a plain RFC 1071
 * sum, UDP frames that parse back to what was built, DHCP messages with the PXE options and the
 * replies a server sends (options, overloaded fields), TFTP requests and replies, TCP segments and
 * their options, HTTP boot URLs, requests and response headers, and truncated or malformed input at
 * every length refused without reading past it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netboot_wire.h"

static const uint8_t mac[6] = { 0x00, 0x15, 0x5d, 0x42, 0x00, 0x07 }, srv_mac[6] = { 2, 0, 0, 0, 0, 1 };
static const uint8_t my_ip[4] = { 10, 214, 0, 20 }, srv_ip[4] = { 10, 214, 0, 1 };

static uint16_t csum_ref(const uint8_t *p, size_t len, uint32_t s)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void test_checksum(void **state)
{
	static uint8_t buf[1600];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 37 + 11);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len < 1500; len += 13)
			assert_int_equal(nb_csum(buf + off, (uint32_t)len, 0x1234), csum_ref(buf + off, len, 0x1234));
	/* RFC 1071's example words 0001 f203 f4f5 f6f7: sum 0xddf2, checksum 0x220d */
	static const uint8_t ex[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	assert_int_equal(nb_csum(ex, 8, 0), 0x220d);
}

static void test_udp_roundtrip_and_corruption(void **state)
{
	uint8_t f[1600], payload[1472];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	uint32_t n = nb_udp4_build(f, sizeof(f), srv_mac, mac, my_ip, srv_ip, 49200, 69, payload, sizeof(payload), 7);
	assert_int_equal(n, 14 + 20 + 8 + 1472);
	struct nb_udp u;
	assert_int_equal(nb_udp4_parse(f, n, &u), 0);
	assert_int_equal(u.sport, 49200);
	assert_int_equal(u.dport, 69);
	assert_int_equal(u.len, 1472);
	assert_memory_equal(u.data, payload, 1472);
	assert_memory_equal(u.sip, my_ip, 4);
	assert_memory_equal(u.smac, mac, 6);
	assert_int_equal(nb_udp4_build(f, n - 1, srv_mac, mac, my_ip, srv_ip, 1, 2, payload, sizeof(payload), 0), 0);
	/* every truncation is refused (the IP total length no longer fits) */
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_udp4_parse(f, len, &u), 0);
	/* a flipped payload bit breaks the UDP checksum; a flipped header bit the IP checksum */
	f[100] ^= 1;
	assert_int_not_equal(nb_udp4_parse(f, n, &u), 0);
	f[100] ^= 1;
	f[14 + 8] ^= 1; /* TTL */
	assert_int_not_equal(nb_udp4_parse(f, n, &u), 0);
	f[14 + 8] ^= 1;
	/* a fragment is refused */
	f[14 + 6] = 0x20;
	assert_int_not_equal(nb_udp4_parse(f, n, &u), 0);
	f[14 + 6] = 0x40;
	/* checksum zero means none (IPv4) */
	f[14 + 20 + 6] = f[14 + 20 + 7] = 0;
	f[200] ^= 0xff;
	assert_int_equal(nb_udp4_parse(f, n, &u), 0);
}

static void test_arp(void **state)
{
	uint8_t f[64];
	static const uint8_t zero[6];
	uint32_t n = nb_arp_build(f, sizeof(f), ARP_OP_REQUEST, srv_mac, mac, my_ip, zero, srv_ip);
	assert_int_equal(n, 60);
	struct nb_arp a;
	assert_int_equal(nb_arp_parse(f, n, &a), 0);
	assert_int_equal(a.op, ARP_OP_REQUEST);
	assert_memory_equal(a.sha, mac, 6);
	assert_memory_equal(a.tpa, srv_ip, 4);
	assert_int_not_equal(nb_arp_parse(f, 41, &a), 0);
	f[14 + 4] = 8; /* hardware address length */
	assert_int_not_equal(nb_arp_parse(f, n, &a), 0);
	assert_int_equal(nb_arp_build(f, 59, ARP_OP_REPLY, srv_mac, mac, my_ip, zero, srv_ip), 0);
}

/* The value of option code in a DHCP message's options, or NULL. */
static const uint8_t *find_opt(const uint8_t *m, uint32_t len, uint8_t code, uint8_t *olen)
{
	for (uint32_t i = 240; i + 1 < len && m[i] != 255;) {
		if (!m[i]) {
			i++;
			continue;
		}
		if (m[i] == code) {
			*olen = m[i + 1];
			return m + i + 2;
		}
		i += 2u + m[i + 1];
	}
	return NULL;
}

static void test_dhcp_discover_has_the_pxe_options(void **state)
{
	struct nb_dhcp4_req r = { .type = DHCP_DISCOVER, .xid = 0x11223344, .secs = 4 };
	memcpy(r.mac, mac, 6);
	for (int i = 0; i < 16; i++)
		r.uuid[i] = (uint8_t)(0xa0 + i);
	uint8_t m[512];
	uint32_t n = nb_dhcp4_build(m, sizeof(m), &r);
	assert_true(n >= 300);
	assert_int_equal(m[0], BOOTP_REQUEST);
	assert_int_equal(nb_be32(m + 4), 0x11223344);
	assert_int_equal(nb_be16(m + 10), DHCP_FLAG_BROADCAST);
	assert_memory_equal(m + 28, mac, 6);
	assert_int_equal(nb_be32(m + 236), DHCP_MAGIC);
	uint8_t l;
	const uint8_t *v = find_opt(m, n, DHCP_OPT_MSG_TYPE, &l);
	assert_non_null(v);
	assert_int_equal(v[0], DHCP_DISCOVER);
	v = find_opt(m, n, DHCP_OPT_CLIENT_ARCH, &l);
	assert_true(v && l == 2 && nb_be16(v) == 7);
	v = find_opt(m, n, DHCP_OPT_VENDOR_CLASS, &l);
	assert_true(v && l == 32 && !memcmp(v, "PXEClient:Arch:00007:UNDI:003016", 32));
	v = find_opt(m, n, DHCP_OPT_CLIENT_UUID, &l);
	assert_true(v && l == 17 && v[0] == 0 && !memcmp(v + 1, r.uuid, 16));
	v = find_opt(m, n, DHCP_OPT_CLIENT_NDI, &l);
	assert_true(v && l == 3 && v[0] == 1 && v[1] == 3 && v[2] == 16);
	assert_null(find_opt(m, n, DHCP_OPT_SERVER_ID, &l));
	r.type = DHCP_REQUEST;
	memcpy(r.req_ip, my_ip, 4);
	memcpy(r.server_id, srv_ip, 4);
	n = nb_dhcp4_build(m, sizeof(m), &r);
	v = find_opt(m, n, DHCP_OPT_REQUESTED_IP, &l);
	assert_true(v && l == 4 && !memcmp(v, my_ip, 4));
	v = find_opt(m, n, DHCP_OPT_SERVER_ID, &l);
	assert_true(v && l == 4 && !memcmp(v, srv_ip, 4));
	assert_int_equal(nb_dhcp4_build(m, 399, &r), 0);
}

/* A server's reply: BOOTP header, then opts (olen bytes). */
static uint32_t make_reply(uint8_t *m, uint32_t xid, const uint8_t *opts, uint32_t olen)
{
	memset(m, 0, 240);
	m[0] = BOOTP_REPLY;
	m[1] = 1;
	m[2] = 6;
	nb_put32(m + 4, xid);
	memcpy(m + 16, my_ip, 4);  /* yiaddr */
	memcpy(m + 20, srv_ip, 4); /* siaddr */
	memcpy(m + 28, mac, 6);
	nb_put32(m + 236, DHCP_MAGIC);
	memcpy(m + 240, opts, olen);
	return 240 + olen;
}

static void test_dhcp_reply_parsing(void **state)
{
	uint8_t m[600];
	static const uint8_t opts[] = { 53, 1, DHCP_OFFER, 54, 4, 10, 214, 0, 1, 1, 4, 255, 255, 255, 0, 3, 4, 10, 214, 0,
					254, 0, 0, 67, 14, 'g', 'r', 'u', 'b', 'n', 'e', 't', 'x', '6', '4', '.', 'e', 'f',
					'i', 60, 9, 'P', 'X', 'E', 'C', 'l', 'i', 'e', 'n', 't', 255 };
	uint32_t n = make_reply(m, 42, opts, sizeof(opts));
	struct nb_dhcp4_reply r;
	assert_int_equal(nb_dhcp4_parse(m, n, 42, mac, &r), 0);
	assert_int_equal(r.type, DHCP_OFFER);
	assert_true(r.has_server_id && r.has_mask && r.has_router && r.pxe_class);
	assert_memory_equal(r.yiaddr, my_ip, 4);
	assert_int_equal(r.router[3], 254);
	assert_string_equal(r.bootfile, "grubnetx64.efi");
	/* not ours: another xid, another MAC, a request */
	assert_int_not_equal(nb_dhcp4_parse(m, n, 43, mac, &r), 0);
	assert_int_not_equal(nb_dhcp4_parse(m, n, 42, srv_mac, &r), 0);
	m[0] = BOOTP_REQUEST;
	assert_int_not_equal(nb_dhcp4_parse(m, n, 42, mac, &r), 0);
	m[0] = BOOTP_REPLY;
	/* the file field when option 67 is absent; an option running past the end is refused */
	static const uint8_t opts2[] = { 53, 1, DHCP_ACK, 255 };
	n = make_reply(m, 42, opts2, sizeof(opts2));
	memcpy(m + 108, "pxe/boot.efi", 13);
	assert_int_equal(nb_dhcp4_parse(m, n, 42, mac, &r), 0);
	assert_string_equal(r.bootfile, "pxe/boot.efi");
	static const uint8_t bad[] = { 53, 1, DHCP_ACK, 67, 40, 'x' };
	n = make_reply(m, 42, bad, sizeof(bad));
	assert_int_not_equal(nb_dhcp4_parse(m, n, 42, mac, &r), 0);
	/* overload: option 67 inside the file field */
	static const uint8_t ov[] = { 53, 1, DHCP_ACK, 52, 1, 1, 255 };
	n = make_reply(m, 42, ov, sizeof(ov));
	static const uint8_t in_file[] = { 67, 5, 'a', '.', 'e', 'f', 'i', 255 };
	memcpy(m + 108, in_file, sizeof(in_file));
	assert_int_equal(nb_dhcp4_parse(m, n, 42, mac, &r), 0);
	assert_string_equal(r.bootfile, "a.efi");
	/* every truncation of a valid reply either parses or is refused, never reads past the end */
	n = make_reply(m, 42, opts, sizeof(opts));
	for (uint32_t len = 0; len < n; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, m, len);
		(void)nb_dhcp4_parse(copy, len, 42, mac, &r);
		free(copy);
	}
	assert_int_not_equal(nb_dhcp4_parse(m, 239, 42, mac, &r), 0);
}

static void test_tftp(void **state)
{
	uint8_t m[600];
	uint32_t n = nb_tftp_rrq(m, sizeof(m), "grub/grub.cfg", 1468, true);
	static const char want[] = "\0\1grub/grub.cfg\0octet\0blksize\0001468\0tsize\0000";
	assert_int_equal(n, sizeof(want)); /* the last option value's NUL too */
	assert_memory_equal(m, want, n);
	assert_int_equal(nb_tftp_rrq(m, 10, "grub/grub.cfg", 0, false), 0);
	assert_int_equal(nb_tftp_rrq(m, sizeof(m), "", 0, false), 0);
	assert_int_equal(nb_tftp_ack(m, sizeof(m), 0x1234), 4);
	assert_int_equal(nb_be16(m), TFTP_ACK);
	assert_int_equal(nb_be16(m + 2), 0x1234);

	struct nb_tftp t;
	static const uint8_t oack[] = "\0\6BLKSIZE\0001468\0tsize\0004191232\0";
	assert_int_equal(nb_tftp_parse(oack, sizeof(oack) - 1, &t), 0);
	assert_true(t.op == TFTP_OACK && t.has_blksize && t.blksize == 1468 && t.has_tsize && t.tsize == 4191232);
	static const uint8_t badnum[] = "\0\6blksize\0001x\0";
	assert_int_not_equal(nb_tftp_parse(badnum, sizeof(badnum) - 1, &t), 0);
	static const uint8_t unterminated[] = { 0, 6, 't', 's', 'i', 'z', 'e', 0, '1' };
	assert_int_not_equal(nb_tftp_parse(unterminated, sizeof(unterminated), &t), 0);
	static const uint8_t data[] = { 0, 3, 0, 7, 'h', 'i' };
	assert_int_equal(nb_tftp_parse(data, sizeof(data), &t), 0);
	assert_true(t.op == TFTP_DATA && t.block == 7 && t.len == 2 && t.data == data + 4);
	static const uint8_t err[] = "\0\5\0\1File not found\0";
	assert_int_equal(nb_tftp_parse(err, sizeof(err) - 1, &t), 0);
	assert_true(t.op == TFTP_ERROR && t.err == 1);
	assert_string_equal(t.msg, "File not found");
	static const uint8_t err_noterm[] = { 0, 5, 0, 2, 'n', 'o', 0x01 };
	assert_int_equal(nb_tftp_parse(err_noterm, sizeof(err_noterm), &t), 0);
	assert_string_equal(t.msg, "no?");
	assert_int_not_equal(nb_tftp_parse(data, 3, &t), 0);
	static const uint8_t unknown[] = { 0, 9, 0, 0 };
	assert_int_not_equal(nb_tftp_parse(unknown, sizeof(unknown), &t), 0);
}

static void test_tcp_roundtrip_and_corruption(void **state)
{
	uint8_t f[1600], payload[1400];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 3);
	struct nb_tcp_seg seg = { .sport = 50000, .dport = 80, .seq = 0xfffffff0u, .ack = 0x12345678u,
				   .flags = TCP_SYN | TCP_ACK, .window = 32768, .mss = 1460 };
	uint32_t n = nb_tcp4_build(f, sizeof(f), srv_mac, mac, my_ip, srv_ip, &seg, payload, sizeof(payload), 9);
	assert_int_equal(n, 14 + 20 + 24 + 1400);
	struct nb_tcp t;
	assert_int_equal(nb_tcp4_parse(f, n, &t), 0);
	assert_int_equal(t.seg.sport, 50000);
	assert_int_equal(t.seg.dport, 80);
	assert_int_equal(t.seg.seq, 0xfffffff0u);
	assert_int_equal(t.seg.ack, 0x12345678u);
	assert_int_equal(t.seg.flags, TCP_SYN | TCP_ACK);
	assert_int_equal(t.seg.window, 32768);
	assert_int_equal(t.seg.mss, 1460);
	assert_int_equal(t.len, 1400);
	assert_memory_equal(t.data, payload, 1400);
	assert_memory_equal(t.sip, my_ip, 4);
	assert_memory_equal(t.dip, srv_ip, 4);
	/* the TCP checksum covers the pseudo header: a standard one (the reference sum) */
	const uint8_t *tcp = f + 34;
	uint32_t tlen = n - 34, ps = (10 << 8 | 214) + (0 << 8 | 20) + (10 << 8 | 214) + (0 << 8 | 1) + 6 + tlen;
	assert_int_equal(csum_ref(tcp, tlen, ps), 0);
	/* no MSS option: a 20-byte header */
	seg.mss = 0;
	assert_int_equal(nb_tcp4_build(f, sizeof(f), srv_mac, mac, my_ip, srv_ip, &seg, NULL, 0, 1), 54);
	assert_int_equal(nb_tcp4_parse(f, 54, &t), 0);
	assert_int_equal(t.seg.mss, 0);
	assert_int_equal(t.len, 0);
	/* too small a buffer */
	assert_int_equal(nb_tcp4_build(f, 53, srv_mac, mac, my_ip, srv_ip, &seg, NULL, 0, 1), 0);
	n = nb_tcp4_build(f, sizeof(f), srv_mac, mac, my_ip, srv_ip, &seg, payload, 100, 2);
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_tcp4_parse(f, len, &t), 0);
	/* any flipped byte of the TCP part fails its checksum; a UDP parser does not take TCP */
	for (uint32_t i = 34; i < n; i += 7) {
		f[i] ^= 0x40;
		assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
		f[i] ^= 0x40;
	}
	struct nb_udp u;
	assert_int_not_equal(nb_udp4_parse(f, n, &u), 0);
}

/* A segment with these header bytes after the fixed 20 (data offset from their count), checksum fixed. */
static uint32_t tcp_with_options(uint8_t *f, const uint8_t *opts, uint32_t olen, uint8_t off_words)
{
	struct nb_tcp_seg seg = { .sport = 80, .dport = 50000, .flags = TCP_ACK };
	uint8_t body[64];
	memcpy(body, opts, olen);
	uint32_t n = nb_tcp4_build(f, 200, srv_mac, mac, srv_ip, my_ip, &seg, body, olen, 1);
	f[34 + 12] = (uint8_t)(off_words << 4);
	f[34 + 16] = f[34 + 17] = 0;
	uint32_t tlen = n - 34, ps = (10 << 8 | 214) + (0 << 8 | 1) + (10 << 8 | 214) + (0 << 8 | 20) + 6 + tlen;
	uint16_t c = csum_ref(f + 34, tlen, ps);
	f[34 + 16] = (uint8_t)(c >> 8);
	f[34 + 17] = (uint8_t)c;
	return n;
}

static void test_tcp_options(void **state)
{
	uint8_t f[200];
	struct nb_tcp t;
	static const uint8_t nop_mss[] = { 1, 1, 2, 4, 0x05, 0xb4, 0, 0 };
	uint32_t n = tcp_with_options(f, nop_mss, sizeof(nop_mss), 7);
	assert_int_equal(nb_tcp4_parse(f, n, &t), 0);
	assert_int_equal(t.seg.mss, 1460);
	assert_int_equal(t.len, 0);
	static const uint8_t zero_len[] = { 8, 0, 0, 0 }; /* an option of length 0: no endless walk */
	n = tcp_with_options(f, zero_len, sizeof(zero_len), 6);
	assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
	static const uint8_t too_long[] = { 8, 10, 0, 0 }; /* beyond the header */
	n = tcp_with_options(f, too_long, sizeof(too_long), 6);
	assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
	n = tcp_with_options(f, too_long, sizeof(too_long), 4); /* a data offset below 20 bytes */
	assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
	n = tcp_with_options(f, too_long, sizeof(too_long), 15); /* a data offset past the segment */
	assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
}

static void test_http_url(void **state)
{
	struct nb_http_url u;
	char path[64];
	assert_int_equal(nb_http_url_parse("http://10.214.0.1:8080/boot/x.efi", &u, path, sizeof(path)), 0);
	assert_false(u.v6);
	assert_string_equal(u.name, "");
	assert_memory_equal(u.ip, srv_ip, 4);
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.host, "10.214.0.1:8080");
	assert_string_equal(path, "/boot/x.efi");
	assert_int_equal(nb_http_url_parse("HTTP://1.2.3.4", &u, path, sizeof(path)), 0);
	assert_int_equal(u.port, 80);
	assert_string_equal(path, "/");
	/* IPv6 literals (RFC 3986 3.2.2), the longest one with a port */
	static const uint8_t v6a[16] = { 0xfd, 0x42, 0x02, 0x14, [15] = 1 };
	assert_int_equal(nb_http_url_parse("http://[fd42:214::1]:8080/x.efi", &u, path, sizeof(path)), 0);
	assert_true(u.v6);
	assert_memory_equal(u.ip, v6a, 16);
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.host, "[fd42:214::1]:8080");
	assert_string_equal(path, "/x.efi");
	assert_int_equal(nb_http_url_parse("http://[fd42:214::1]", &u, path, sizeof(path)), 0);
	assert_true(u.v6);
	assert_int_equal(u.port, 80);
	assert_string_equal(path, "/");
	assert_int_equal(nb_http_url_parse("http://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535/x", &u, path,
					   sizeof(path)), 0);
	assert_string_equal(u.host, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	/* host names: looked up by DNS */
	assert_int_equal(nb_http_url_parse("http://Boot-1.example.test:8080/x.efi", &u, path, sizeof(path)), 0);
	assert_string_equal(u.name, "Boot-1.example.test");
	assert_string_equal(u.host, "Boot-1.example.test:8080");
	assert_int_equal(u.port, 8080);
	assert_int_equal(nb_http_url_parse("http://localhost/", &u, path, sizeof(path)), 0);
	assert_string_equal(u.name, "localhost");
	assert_int_equal(nb_http_url_parse("http://1.2.3.4.example/", &u, path, sizeof(path)), 0);
	assert_string_equal(u.name, "1.2.3.4.example");
	char longname[300] = "http://";
	for (int i = 0; i < 4; i++) /* 4 labels of 62 and 3 dots: 251 bytes */
		strcat(longname, i ? ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				   : "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	strcat(longname, ":65535/x");
	assert_int_equal(nb_http_url_parse(longname, &u, path, sizeof(path)), 0);
	assert_int_equal(strlen(u.name), 251);
	/* not a URL: TFTP takes it */
	assert_int_equal(nb_http_url_parse("grubnetx64.efi", &u, path, sizeof(path)), -1);
	assert_int_equal(nb_http_url_parse("tftp://1.2.3.4/x", &u, path, sizeof(path)), -1);
	assert_int_equal(nb_http_url_parse("", &u, path, sizeof(path)), -1);
	/* URLs the firmware cannot use */
	static const char *const bad[] = {
		"https://1.2.3.4/x", "http://1.2.3/x", "http://1.2.3.256/x", "http://1.2.3.4:0/x",
		"http://1.2.3.4:65536/x", "http://1.2.3.4:/x", "http:///x", "http://1.2.3.4/a b",
		"http://0001.2.3.4/x", "http://1.2.3.4/" "0123456789012345678901234567890123456789012345678901234567890123",
		"http://[fd42::1/x", "http://[fd42::1]x/x", "http://[fe80::1%25eth0]/x", "http://[]/x", "http://[1.2.3.4]/x",
		"http://[fd42:::1]/x", "http://[1:2:3:4:5:6:7:8:9]/x", "http://fd42::1/x", "http://[fd42::1]:99999/x",
		"http://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535x/x", "http://boot..test/x", "http://.boot/x",
		"http://boot./x", "http://-boot/x", "http://boot-/x", "http://bo_ot/x", "http://user@boot/x",
		"http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test/x", /* a 64-byte label */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(nb_http_url_parse(bad[i], &u, path, sizeof(path)), -2);
	/* longer than 253 */
	longname[7] = 0;
	strcat(longname, "aaa"); /* 255 bytes */
	for (int i = 0; i < 4; i++)
		strcat(longname, ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	strcat(longname, "/x");
	assert_int_equal(nb_http_url_parse(longname, &u, path, sizeof(path)), -2);
}

/* A DNS answer: header, the question echoed, then records. */
static uint32_t dns_msg(uint8_t *m, uint16_t id, uint16_t flags, const uint8_t *body, uint32_t blen, uint16_t an)
{
	static const uint8_t q[] = { 4, 'b', 'o', 'o', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1 };
	uint8_t h[12] = { (uint8_t)(id >> 8), (uint8_t)id, (uint8_t)(flags >> 8), (uint8_t)flags, 0, 1, 0, (uint8_t)an };
	memcpy(m, h, 12);
	memcpy(m + 12, q, sizeof(q));
	if (blen)
		memcpy(m + 12 + sizeof(q), body, blen);
	return 12 + (uint32_t)sizeof(q) + blen;
}

static void test_dns(void **state)
{
	uint8_t m[512], addr[16];
	uint8_t rcode;
	/* the query: labels, RD, A/IN */
	uint32_t n = nb_dns_query(m, sizeof(m), 0x1234, "boot.test", DNS_TYPE_A);
	static const uint8_t want[] = { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 4, 'b', 'o', 'o', 't', 4, 't', 'e',
					's', 't', 0, 0, 1, 0, 1 };
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(m, want, n);
	assert_int_equal(nb_dns_query(m, sizeof(want) - 1, 1, "boot.test", DNS_TYPE_A), 0);
	assert_int_equal(nb_dns_query(m, sizeof(m), 1, "boot..test", DNS_TYPE_A), 0);
	assert_int_equal(nb_dns_query(m, sizeof(m), 1, "", DNS_TYPE_A), 0);
	/* a CNAME (compressed owner), then the A record: the address */
	static const uint8_t cname_a[] = { 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, 'x', 0xc0, 12,
					   1, 'x', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 214, 0, 1 };
	n = dns_msg(m, 7, 0x8180, cname_a, sizeof(cname_a), 2);
	assert_int_equal(nb_dns_answer(m, n, 7, DNS_TYPE_A, addr, &rcode), 0);
	assert_memory_equal(addr, srv_ip, 4);
	/* another id, or a query (no QR): not ours */
	assert_int_equal(nb_dns_answer(m, n, 8, DNS_TYPE_A, addr, &rcode), -1);
	m[2] &= 0x7f;
	assert_int_equal(nb_dns_answer(m, n, 7, DNS_TYPE_A, addr, &rcode), -1);
	m[2] |= 0x80;
	/* every truncation fails or finds nothing, never reads past the end */
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_dns_answer(m, len, 7, DNS_TYPE_A, addr, &rcode), 0);
	/* an AAAA asked for: the A record is not it */
	assert_int_equal(nb_dns_answer(m, n, 7, DNS_TYPE_AAAA, addr, &rcode), 1);
	/* NXDOMAIN; another error code */
	n = dns_msg(m, 7, 0x8183, NULL, 0, 0);
	assert_int_equal(nb_dns_answer(m, n, 7, DNS_TYPE_A, addr, &rcode), 1);
	assert_int_equal(rcode, DNS_RCODE_NXDOMAIN);
	n = dns_msg(m, 7, 0x8182, NULL, 0, 0);
	assert_int_equal(nb_dns_answer(m, n, 7, DNS_TYPE_A, addr, &rcode), -1);
	assert_int_equal(rcode, 2);
	/* an AAAA record */
	static const uint8_t aaaa[] = { 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16, 0xfd, 0x42, 2, 0x14, 0, 0, 0, 0,
					0, 0, 0, 0, 0, 0, 0, 1 };
	n = dns_msg(m, 9, 0x8180, aaaa, sizeof(aaaa), 1);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_AAAA, addr, &rcode), 0);
	assert_int_equal(addr[0], 0xfd);
	assert_int_equal(addr[15], 1);
	/* a record length past the message; a label length past it; reserved label bits; a pointer
	 * loop is never followed (names are skipped, not read) */
	static const uint8_t long_rd[] = { 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 40, 10, 214, 0, 1 };
	n = dns_msg(m, 9, 0x8180, long_rd, sizeof(long_rd), 1);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_A, addr, &rcode), -1);
	static const uint8_t long_label[] = { 60, 'a' };
	n = dns_msg(m, 9, 0x8180, long_label, sizeof(long_label), 1);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_A, addr, &rcode), -1);
	static const uint8_t reserved[] = { 0x80, 1, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4 };
	n = dns_msg(m, 9, 0x8180, reserved, sizeof(reserved), 1);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_A, addr, &rcode), -1);
	static const uint8_t self_ptr[] = { 0xc0, 27, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 214, 0, 1 };
	n = dns_msg(m, 9, 0x8180, self_ptr, sizeof(self_ptr), 1);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_A, addr, &rcode), 0);
	/* more answers announced than present */
	n = dns_msg(m, 9, 0x8180, aaaa, sizeof(aaaa), 3);
	assert_int_equal(nb_dns_answer(m, n, 9, DNS_TYPE_A, addr, &rcode), -1);
}

/* TCP over IPv6: a round trip, the pseudo-header checksum, every truncation and flipped byte. */
static void test_tcp6_roundtrip_and_corruption(void **state)
{
	static const uint8_t a[16] = { 0xfd, 0x42, 0x02, 0x14, [15] = 0x10 }, b[16] = { 0xfd, 0x42, 0x02, 0x14, [15] = 1 };
	uint8_t f[1600], payload[1000];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	struct nb_tcp_seg seg = { .sport = 49152, .dport = 8080, .seq = 7, .ack = 0xfffffffeu, .flags = TCP_SYN,
				  .window = 32768, .mss = 1440 };
	uint32_t n = nb_tcp6_build(f, sizeof(f), srv_mac, mac, a, b, &seg, payload, sizeof(payload));
	assert_int_equal(n, 14 + 40 + 24 + 1000);
	struct nb_tcp t;
	assert_int_equal(nb_tcp6_parse(f, n, &t), 0);
	assert_int_equal(t.seg.sport, 49152);
	assert_int_equal(t.seg.dport, 8080);
	assert_int_equal(t.seg.seq, 7);
	assert_int_equal(t.seg.ack, 0xfffffffeu);
	assert_int_equal(t.seg.flags, TCP_SYN);
	assert_int_equal(t.seg.mss, 1440);
	assert_int_equal(t.len, 1000);
	assert_memory_equal(t.data, payload, 1000);
	assert_memory_equal(t.sip, a, 16);
	assert_memory_equal(t.dip, b, 16);
	/* the reference sum over RFC 8200's pseudo header */
	uint32_t tlen = n - 54, ps = 6 + tlen;
	for (int i = 0; i < 16; i += 2)
		ps += (uint32_t)(a[i] << 8 | a[i + 1]) + (uint32_t)(b[i] << 8 | b[i + 1]);
	assert_int_equal(csum_ref(f + 54, tlen, ps), 0);
	/* not IPv4's parser; every truncation; every flipped byte after the addresses' start */
	assert_int_not_equal(nb_tcp4_parse(f, n, &t), 0);
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_tcp6_parse(f, len, &t), 0);
	for (uint32_t i = 22; i < n; i += 5) {
		f[i] ^= 0x10;
		assert_int_not_equal(nb_tcp6_parse(f, n, &t), 0);
		f[i] ^= 0x10;
	}
	assert_int_equal(nb_tcp6_parse(f, n, &t), 0);
	/* too small a buffer */
	assert_int_equal(nb_tcp6_build(f, 14 + 40 + 24 + 999, srv_mac, mac, a, b, &seg, payload, 1000), 0);
}

static void test_http_request_and_response(void **state)
{
	uint8_t out[256];
	uint32_t n = nb_http_get_build(out, sizeof(out), "10.214.0.1:8080", "/x.efi");
	static const char want[] = "GET /x.efi HTTP/1.1\r\nHost: 10.214.0.1:8080\r\nUser-Agent: gen2vm-firmware\r\n"
				   "Accept: */*\r\nConnection: close\r\n\r\n";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
	for (uint32_t cap = 0; cap < n; cap++)
		assert_int_equal(nb_http_get_build(out, cap, "10.214.0.1:8080", "/x.efi"), 0);

	struct nb_http_resp r;
	static const char ok[] = "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\ncontent-LENGTH:  1234 \r\n\r\nBODY";
	assert_int_equal(nb_http_resp_parse((const uint8_t *)ok, sizeof(ok) - 1, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.reason, "OK");
	assert_true(r.has_length && r.length == 1234 && !r.chunked);
	assert_int_equal(r.header_len, sizeof(ok) - 1 - 4);
	/* every prefix of the header is "not yet" */
	for (uint32_t len = 0; len < r.header_len; len++)
		assert_int_equal(nb_http_resp_parse((const uint8_t *)ok, len, &r), 1);
	static const char nf[] = "HTTP/1.1 404 File not found\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(nb_http_resp_parse((const uint8_t *)nf, sizeof(nf) - 1, &r), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.reason, "File not found");
	assert_true(r.chunked && !r.has_length);
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(nb_http_resp_parse((const uint8_t *)bad[i], (uint32_t)strlen(bad[i]), &r), -1);
	/* a header that never ends is refused once it is longer than 8 KiB */
	static uint8_t big[9000];
	memset(big, 'a', sizeof(big));
	assert_int_equal(nb_http_resp_parse(big, 8191, &r), 1);
	assert_int_equal(nb_http_resp_parse(big, sizeof(big), &r), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_udp_roundtrip_and_corruption),
		cmocka_unit_test(test_arp),
		cmocka_unit_test(test_dhcp_discover_has_the_pxe_options),
		cmocka_unit_test(test_dhcp_reply_parsing),
		cmocka_unit_test(test_tftp),
		cmocka_unit_test(test_tcp_roundtrip_and_corruption),
		cmocka_unit_test(test_tcp_options),
		cmocka_unit_test(test_http_url),
		cmocka_unit_test(test_tcp6_roundtrip_and_corruption),
		cmocka_unit_test(test_dns),
		cmocka_unit_test(test_http_request_and_response),
	};
	return cmocka_run_group_tests_name("netboot_wire", tests, NULL, NULL);
}
