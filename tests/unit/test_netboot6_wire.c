/* The firmware's IPv6 network boot packets (guestlib/netboot6_wire.c): UDP over IPv6 with its
 * mandatory checksum, the EUI-64 link-local address and multicast mappings, neighbour discovery
 * messages built and parsed (and malformed ones refused), DHCPv6 Solicit/Request with the PXE options
 * and the Advertise/Reply a server sends, tftp:// boot-file URLs, and every truncation refused without
 * reading past it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netboot_wire.h"

static const uint8_t mac[6] = { 0x00, 0x15, 0x5d, 0x42, 0x00, 0x07 }, srv_mac[6] = { 2, 0, 0, 0, 0, 1 };
static const uint8_t my_ip[16] = { 0xfd, 0x42, 0x02, 0x14, [15] = 0x20 }, srv_ip[16] = { 0xfd, 0x42, 0x02, 0x14, [15] = 1 };
static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void test_udp6_roundtrip_and_corruption(void **state)
{
	uint8_t f[1600], payload[1448];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	uint32_t n = nb_udp6_build(f, sizeof(f), srv_mac, mac, my_ip, srv_ip, 49200, 69, payload, sizeof(payload));
	assert_int_equal(n, 14 + 40 + 8 + 1448);
	struct nb_udp u;
	assert_int_equal(nb_udp6_parse(f, n, &u), 0);
	assert_int_equal(u.sport, 49200);
	assert_int_equal(u.dport, 69);
	assert_int_equal(u.len, 1448);
	assert_memory_equal(u.data, payload, 1448);
	assert_memory_equal(u.sip, my_ip, 16);
	assert_memory_equal(u.dip, srv_ip, 16);
	assert_int_equal(nb_udp6_build(f, n - 1, srv_mac, mac, my_ip, srv_ip, 1, 2, payload, sizeof(payload)), 0);
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_udp6_parse(f, len, &u), 0);
	/* a flipped payload bit or address bit breaks the checksum (the pseudo-header covers addresses) */
	f[200] ^= 1;
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
	f[200] ^= 1;
	f[14 + 8 + 3] ^= 1;
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
	f[14 + 8 + 3] ^= 1;
	/* IPv6 makes the UDP checksum mandatory: zero is refused */
	uint8_t c0 = f[14 + 40 + 6], c1 = f[14 + 40 + 7];
	f[14 + 40 + 6] = f[14 + 40 + 7] = 0;
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
	f[14 + 40 + 6] = c0;
	f[14 + 40 + 7] = c1;
	/* an IPv4 frame, an extension header, a UDP length past the payload */
	f[14 + 6] = 0; /* next header: hop-by-hop options */
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
	f[14 + 6] = 17;
	f[14 + 40 + 4] = 0xff;
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
	f[14 + 40 + 4] = (uint8_t)((8 + 1448) >> 8);
	f[12] = 0x08;
	f[13] = 0x00;
	assert_int_not_equal(nb_udp6_parse(f, n, &u), 0);
}

static void test_addresses(void **state)
{
	uint8_t ll[16], sol[16], m[6], back[16];
	char t[48];
	nb_ip6_linklocal(ll, mac);
	nb_ip6_text(t, ll);
	assert_string_equal(t, "fe80::215:5dff:fe42:7"); /* U/L bit inverted, ff:fe in the middle */
	assert_true(nb_ip6_is_linklocal(ll));
	assert_false(nb_ip6_is_mcast(ll));
	nb_ip6_solicited(sol, ll);
	nb_ip6_text(t, sol);
	assert_string_equal(t, "ff02::1:ff42:7");
	static const uint8_t prefix[16] = { 0xfd, 0x42, 0x02, 0x14, 0, 0, 0, 1, 0xaa, 0xbb };
	uint8_t slaac[16];
	nb_ip6_slaac(slaac, prefix, mac);
	nb_ip6_text(t, slaac);
	assert_string_equal(t, "fd42:214:0:1:215:5dff:fe42:7"); /* the prefix's 64 bits, the EUI-64 after */
	nb_ip6_mcast_mac(m, sol);
	static const uint8_t want_m[6] = { 0x33, 0x33, 0xff, 0x42, 0x00, 0x07 };
	assert_memory_equal(m, want_m, 6);
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "fd42:214::1", "fd42:214::1" },   { "::", "::" },
		{ "::1", "::1" },                   { "1::", "1::" },
		{ "1:0:0:2:0:0:0:3", "1:0:0:2::3" }, { "FD42:0214:0:0:0:0:0:0001", "fd42:214::1" },
		{ "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8" }, { "1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(nb_ip6_parse(cases[i].in, (uint32_t)strlen(cases[i].in), back), 0);
		nb_ip6_text(t, back);
		assert_string_equal(t, cases[i].out);
	}
	static const char *const bad[] = { "", ":", ":1::", "1:::2", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9",
					   "1:2:3:4:5:6:7", "g::", "1:", "::1.2.3.4", "1:2:3:4:5:6:7::8" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(nb_ip6_parse(bad[i], (uint32_t)strlen(bad[i]), back), 0);
}

static void test_tftp_urls(void **state)
{
	uint8_t a[16];
	char path[128], t[48];
	assert_int_equal(nb_tftp6_url("tftp://[fd42:214::1]/grubnetx64.efi", a, path, sizeof(path)), 0);
	nb_ip6_text(t, a);
	assert_string_equal(t, "fd42:214::1");
	assert_string_equal(path, "grubnetx64.efi");
	assert_int_equal(nb_tftp6_url("TFTP://[::1]:69/a/b", a, path, sizeof(path)), 0);
	assert_string_equal(path, "a/b");
	assert_int_equal(nb_tftp6_url("tftp://[::1]//abs", a, path, sizeof(path)), 0);
	assert_string_equal(path, "/abs");
	static const char *const bad[] = { "http://[::1]/x", "tftp://[::1]", "tftp://[::1]/", "tftp://::1/x",
					   "tftp://[::1/x", "tftp://[::1]:70/x", "tftp://[zz]/x", "tftp://10.0.0.1/x", "tftp:" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_not_equal(nb_tftp6_url(bad[i], a, path, sizeof(path)), 0);
	assert_int_not_equal(nb_tftp6_url("tftp://[::1]/abcdefgh", a, path, 8), 0); /* path too long */
	assert_int_equal(nb_tftp6_url("tftp://[::1]/abcdefg", a, path, 8), 0);
}

static void test_neighbour_discovery(void **state)
{
	uint8_t f[200], msg[64], ll[16], sol[16], m[6];
	struct nb_nd nd;
	nb_ip6_linklocal(ll, mac);
	nb_ip6_solicited(sol, srv_ip);
	nb_ip6_mcast_mac(m, sol);
	uint32_t k = nb_nd_ns(msg, sizeof(msg), srv_ip, mac);
	assert_int_equal(k, 32);
	assert_int_equal(nb_nd_ns(msg, 31, srv_ip, mac), 0);
	uint32_t n = nb_icmp6_build(f, sizeof(f), m, mac, ll, sol, msg, k);
	assert_int_equal(n, 14 + 40 + 32);
	assert_int_equal(nb_nd_parse(f, n, &nd), 0);
	assert_int_equal(nd.type, ICMPV6_NEIGH_SOLICIT);
	assert_memory_equal(nd.target, srv_ip, 16);
	assert_memory_equal(nd.sip, ll, 16);
	assert_true(nd.has_lladdr);
	assert_memory_equal(nd.lladdr, mac, 6);
	/* a duplicate address detection probe: from ::, no link-layer option, and it parses */
	static const uint8_t any[16];
	k = nb_nd_ns(msg, sizeof(msg), srv_ip, NULL);
	assert_int_equal(k, 24);
	assert_int_equal(nb_nd_parse(f, nb_icmp6_build(f, sizeof(f), m, mac, any, sol, msg, k), &nd), 0);
	assert_false(nd.has_lladdr);
	assert_memory_equal(nd.sip, any, 16);
	k = nb_nd_ns(msg, sizeof(msg), srv_ip, mac);
	n = nb_icmp6_build(f, sizeof(f), m, mac, ll, sol, msg, k);
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_nd_parse(f, len, &nd), 0);
	f[14 + 7] = 64; /* a hop limit below 255: not from this link (RFC 4861 7.1.1) */
	assert_int_not_equal(nb_nd_parse(f, n, &nd), 0);
	f[14 + 7] = 255;
	f[n - 7] ^= 1; /* the checksum */
	assert_int_not_equal(nb_nd_parse(f, n, &nd), 0);

	/* NA with the target's link-layer address */
	k = nb_nd_na(msg, sizeof(msg), srv_ip, ND_NA_SOLICITED | ND_NA_OVERRIDE, srv_mac);
	n = nb_icmp6_build(f, sizeof(f), mac, srv_mac, srv_ip, ll, msg, k);
	assert_int_equal(nb_nd_parse(f, n, &nd), 0);
	assert_int_equal(nd.type, ICMPV6_NEIGH_ADVERT);
	assert_int_equal(nd.na_flags, ND_NA_SOLICITED | ND_NA_OVERRIDE);
	assert_memory_equal(nd.lladdr, srv_mac, 6);

	/* A router advertisement as dnsmasq sends one: source link-layer address, a prefix, MTU */
	static const uint8_t router_ll[16] = { 0xfe, 0x80, [15] = 1 }, all_nodes[16] = { 0xff, 0x02, [15] = 1 };
	uint8_t ra[16 + 8 + 32 + 8] = { ICMPV6_ROUTER_ADVERT, 0, 0, 0, 64, ND_RA_OTHER | 0x08, 0x07, 0x08 };
	uint8_t *o = ra + 16;
	o[0] = ND_OPT_SOURCE_LLADDR;
	o[1] = 1;
	memcpy(o + 2, srv_mac, 6);
	o += 8;
	o[0] = ND_OPT_PREFIX_INFO;
	o[1] = 4;
	o[2] = 64;
	o[3] = ND_OPT_PREFIX_ONLINK | ND_OPT_PREFIX_AUTO;
	memcpy(o + 16, srv_ip, 8);
	o += 32;
	o[0] = 5; /* MTU: skipped */
	o[1] = 1;
	n = nb_icmp6_build(f, sizeof(f), m, srv_mac, router_ll, all_nodes, ra, sizeof(ra));
	assert_int_equal(nb_nd_parse(f, n, &nd), 0);
	assert_int_equal(nd.type, ICMPV6_ROUTER_ADVERT);
	assert_int_equal(nd.router_lifetime, 0x708);
	assert_int_equal(nd.ra_flags, ND_RA_OTHER); /* M off, O on: stateless; other bits not kept */
	assert_true(nd.has_lladdr && nd.has_prefix);
	assert_int_equal(nd.prefix_len, 64);
	assert_memory_equal(nd.prefix, srv_ip, 8);
	for (uint32_t len = 0; len < n; len++)
		assert_int_not_equal(nb_nd_parse(f, len, &nd), 0);
	/* an option of length 0, or one past the message, invalidates it (RFC 4861 4.6) */
	ra[16 + 8 + 32 + 1] = 0;
	n = nb_icmp6_build(f, sizeof(f), m, srv_mac, router_ll, all_nodes, ra, sizeof(ra));
	assert_int_not_equal(nb_nd_parse(f, n, &nd), 0);
	ra[16 + 8 + 32 + 1] = 2;
	n = nb_icmp6_build(f, sizeof(f), m, srv_mac, router_ll, all_nodes, ra, sizeof(ra));
	assert_int_not_equal(nb_nd_parse(f, n, &nd), 0);
	/* an RA from a global address is refused (RFC 4861 6.1.2) */
	ra[16 + 8 + 32 + 1] = 1;
	n = nb_icmp6_build(f, sizeof(f), m, srv_mac, srv_ip, all_nodes, ra, sizeof(ra));
	assert_int_not_equal(nb_nd_parse(f, n, &nd), 0);
	/* the router solicitation: 8 bytes and the source link-layer option */
	assert_int_equal(nb_nd_rs(msg, sizeof(msg), mac), 16);
	assert_int_equal(msg[0], ICMPV6_ROUTER_SOLICIT);
	assert_int_equal(msg[8], ND_OPT_SOURCE_LLADDR);
}

/* Finds option code at the top level of a DHCPv6 message; its body and length. */
static const uint8_t *opt6(const uint8_t *p, uint32_t n, uint16_t code, uint32_t *len)
{
	for (uint32_t o = 4; o + 4 <= n;) {
		uint32_t l = (uint32_t)(p[o + 2] << 8 | p[o + 3]);
		if ((uint32_t)(p[o] << 8 | p[o + 1]) == code) {
			*len = l;
			return p + o + 4;
		}
		o += 4 + l;
	}
	return NULL;
}

static void test_dhcp6_solicit_has_the_pxe_options(void **state)
{
	uint8_t b[600];
	struct nb_dhcp6_req rq = { .type = DHCP6_SOLICIT, .xid = 0xabcdef, .elapsed = 300, .iaid = 0x5d420007 };
	memcpy(rq.uuid, uuid, 16);
	uint32_t n = nb_dhcp6_build(b, sizeof(b), &rq), l;
	assert_true(n > 4);
	assert_int_equal(b[0], DHCP6_SOLICIT);
	assert_int_equal(b[1] << 16 | b[2] << 8 | b[3], 0xabcdef);
	const uint8_t *o = opt6(b, n, DHCP6_OPT_CLIENTID, &l);
	assert_non_null(o);
	assert_int_equal(l, 18);
	assert_int_equal(o[0] << 8 | o[1], DHCP6_DUID_UUID);
	assert_memory_equal(o + 2, uuid, 16);
	assert_null(opt6(b, n, DHCP6_OPT_SERVERID, &l));
	assert_non_null(o = opt6(b, n, DHCP6_OPT_IA_NA, &l));
	assert_int_equal(l, 12);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_ORO, &l));
	int has59 = 0;
	for (uint32_t i = 0; i + 1 < l; i += 2)
		has59 |= (o[i] << 8 | o[i + 1]) == DHCP6_OPT_BOOTFILE_URL;
	assert_true(has59);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_CLIENT_ARCH, &l));
	assert_int_equal(l, 2);
	assert_int_equal(o[0] << 8 | o[1], 7);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_VENDOR_CLASS, &l));
	assert_int_equal(o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3], 343);
	assert_int_equal(o[4] << 8 | o[5], 32);
	assert_memory_equal(o + 6, "PXEClient:Arch:00007:UNDI:003016", 32);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_ELAPSED_TIME, &l));
	assert_int_equal(o[0] << 8 | o[1], 300);
	/* a Request names the server and asks for the advertised address */
	rq.type = DHCP6_REQUEST;
	rq.server_id_len = 10;
	memset(rq.server_id, 0x5a, 10);
	memcpy(rq.addr, my_ip, 16);
	rq.has_addr = true;
	n = nb_dhcp6_build(b, sizeof(b), &rq);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_SERVERID, &l));
	assert_int_equal(l, 10);
	assert_non_null(o = opt6(b, n, DHCP6_OPT_IA_NA, &l));
	assert_int_equal(l, 12 + 4 + 24);
	assert_int_equal(o[12] << 8 | o[13], DHCP6_OPT_IAADDR);
	assert_memory_equal(o + 16, my_ip, 16);
	for (uint32_t cap = 0; cap < n; cap++)
		assert_int_equal(nb_dhcp6_build(b, cap, &rq), 0);
	/* an Information-Request (stateless): no IA_NA, no server id, the option request still there */
	struct nb_dhcp6_req ir = { .type = DHCP6_INFORMATION_REQUEST, .xid = 0x123456, .has_addr = true };
	memcpy(ir.uuid, uuid, 16);
	n = nb_dhcp6_build(b, sizeof(b), &ir);
	assert_int_equal(b[0], DHCP6_INFORMATION_REQUEST);
	assert_null(opt6(b, n, DHCP6_OPT_IA_NA, &l));
	assert_null(opt6(b, n, DHCP6_OPT_SERVERID, &l));
	assert_non_null(opt6(b, n, DHCP6_OPT_ORO, &l));
	assert_non_null(opt6(b, n, DHCP6_OPT_CLIENTID, &l));
	rq.server_id_len = NB_DUID_MAX + 1;
	assert_int_equal(nb_dhcp6_build(b, sizeof(b), &rq), 0);
}

static uint32_t put_opt(uint8_t *p, uint16_t code, const void *body, uint16_t len)
{
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	if (body)
		memcpy(p + 4, body, len);
	return 4u + len;
}

/* An Advertise or Reply as dnsmasq sends it: server and client ids, the IA_NA with an address, the
 * boot-file URL. */
static uint32_t make_reply(uint8_t *p, uint8_t type, uint32_t xid, const char *url)
{
	p[0] = type;
	p[1] = (uint8_t)(xid >> 16);
	p[2] = (uint8_t)(xid >> 8);
	p[3] = (uint8_t)xid;
	uint32_t n = 4;
	uint8_t duid[18] = { 0, 4 };
	memcpy(duid + 2, uuid, 16);
	static const uint8_t sid[14] = { 0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 2, 0, 0, 0, 0, 1 };
	n += put_opt(p + n, DHCP6_OPT_SERVERID, sid, sizeof(sid));
	n += put_opt(p + n, DHCP6_OPT_CLIENTID, duid, sizeof(duid));
	uint8_t ia[12 + 4 + 24] = { 0x5d, 0x42, 0, 7, 0, 0, 0x0e, 0x10, 0, 0, 0x15, 0x18 };
	put_opt(ia + 12, DHCP6_OPT_IAADDR, NULL, 24);
	memcpy(ia + 16, my_ip, 16);
	memcpy(ia + 16 + 16, "\0\0\x0e\x10\0\0\x0e\x10", 8);
	n += put_opt(p + n, DHCP6_OPT_IA_NA, ia, sizeof(ia));
	n += put_opt(p + n, DHCP6_OPT_PREFERENCE, "\x07", 1);
	n += put_opt(p + n, DHCP6_OPT_BOOTFILE_URL, url, (uint16_t)strlen(url));
	return n;
}

static void test_dhcp6_reply_parsing(void **state)
{
	uint8_t p[600];
	struct nb_dhcp6_reply r;
	uint32_t n = make_reply(p, DHCP6_ADVERTISE, 0x123456, "tftp://[fd42:214::1]/hello.efi");
	assert_int_equal(nb_dhcp6_parse(p, n, 0x123456, uuid, &r), 0);
	assert_int_equal(r.type, DHCP6_ADVERTISE);
	assert_true(r.has_addr);
	assert_memory_equal(r.addr, my_ip, 16);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.preference, 7);
	assert_int_equal(r.server_id_len, 14);
	assert_string_equal(r.bootfile_url, "tftp://[fd42:214::1]/hello.efi");
	/* another transaction, another client, a Solicit: not ours */
	assert_int_not_equal(nb_dhcp6_parse(p, n, 0x123457, uuid, &r), 0);
	static const uint8_t other[16] = { 9 };
	assert_int_not_equal(nb_dhcp6_parse(p, n, 0x123456, other, &r), 0);
	p[0] = DHCP6_SOLICIT;
	assert_int_not_equal(nb_dhcp6_parse(p, n, 0x123456, uuid, &r), 0);
	p[0] = DHCP6_REPLY;
	assert_int_equal(nb_dhcp6_parse(p, n, 0x123456, uuid, &r), 0);
	/* every truncation: refused, or (cut between options before the URL) parsed without it */
	for (uint32_t len = 0; len < n; len++)
		if (!nb_dhcp6_parse(p, len, 0x123456, uuid, &r))
			assert_string_equal(r.bootfile_url, "");
	/* an option longer than what holds it */
	p[4 + 3] = 200; /* the server id's length */
	assert_int_not_equal(nb_dhcp6_parse(p, n, 0x123456, uuid, &r), 0);
	/* an IA_NA with a status and no address */
	n = make_reply(p, DHCP6_REPLY, 1, "x");
	uint32_t ia = 4 + 4 + 14 + 4 + 18;
	p[ia + 4 + 12 + 1] = DHCP6_OPT_STATUS_CODE; /* the IAADDR becomes a status code: NoAddrsAvail */
	p[ia + 4 + 12 + 4] = 0;
	p[ia + 4 + 12 + 5] = 2;
	assert_int_equal(nb_dhcp6_parse(p, n, 1, uuid, &r), 0);
	assert_false(r.has_addr);
	assert_int_equal(r.status, 2);
	/* a URL with a control character is refused; a too long one is flagged */
	n = make_reply(p, DHCP6_REPLY, 1, "tftp://[::1]/a\nb");
	assert_int_not_equal(nb_dhcp6_parse(p, n, 1, uuid, &r), 0);
	char longurl[200];
	memset(longurl, 'a', sizeof(longurl) - 1);
	longurl[sizeof(longurl) - 1] = 0;
	n = make_reply(p, DHCP6_REPLY, 1, longurl);
	assert_int_equal(nb_dhcp6_parse(p, n, 1, uuid, &r), 0);
	assert_true(r.url_too_long);
	assert_string_equal(r.bootfile_url, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_udp6_roundtrip_and_corruption),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_tftp_urls),
		cmocka_unit_test(test_neighbour_discovery),
		cmocka_unit_test(test_dhcp6_solicit_has_the_pxe_options),
		cmocka_unit_test(test_dhcp6_reply_parsing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
