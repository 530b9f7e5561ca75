/* Network boot over IPv6 without I/O: IPv6/UDP and ICMPv6 frames, neighbour discovery (NS, NA, RS,
 * RA), DHCPv6 client messages with the PXE options and their answers, and tftp:// boot-file URLs.
 * Every parser takes bytes from the network: each length (the IPv6 payload length, each ND option's,
 * each DHCPv6 option's within its container) is checked before the bytes it covers are read. */
#include "netboot_wire.h"

#include "efi/efi_lib.h"

/* The pseudo-header sum (RFC 8200 8.1): addresses, upper-layer length, next header. */
static uint32_t pseudo6_sum(const uint8_t sip[16], const uint8_t dip[16], uint32_t len, uint8_t proto)
{
	uint32_t s = proto + (len >> 16) + (len & 0xffff);
	for (int i = 0; i < 16; i += 2)
		s += nb_be16(sip + i) + nb_be16(dip + i);
	return s;
}

/* Ethernet and IPv6 headers; returns the upper-layer start, NULL when len does not fit. */
static uint8_t *ip6_hdr(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
			const uint8_t sip[16], const uint8_t dip[16], uint8_t proto, uint32_t len)
{
	const uint32_t hl = ETH_HLEN + sizeof(struct ipv6_hdr);
	if (cap < hl || len > cap - hl || len > 0xffff)
		return NULL;
	struct eth_hdr *e = (struct eth_hdr *)out;
	efi_memcpy(e->dst, dmac, 6);
	efi_memcpy(e->src, smac, 6);
	nb_put16(e->type, ETH_P_IPV6);
	struct ipv6_hdr *ip = (struct ipv6_hdr *)(out + ETH_HLEN);
	nb_put32(ip->ver_tc_flow, 6u << 28);
	nb_put16(ip->payload_len, (uint16_t)len);
	ip->next_hdr = proto;
	ip->hop_limit = ND_HOP_LIMIT;
	efi_memcpy(ip->src, sip, 16);
	efi_memcpy(ip->dst, dip, 16);
	return out + hl;
}

uint32_t nb_udp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
		       const uint8_t sip[16], const uint8_t dip[16], uint16_t sport, uint16_t dport,
		       const void *payload, uint32_t len)
{
	if (len > 0xffff - sizeof(struct udp_hdr))
		return 0;
	uint32_t ulen = (uint32_t)sizeof(struct udp_hdr) + len;
	uint8_t *u = ip6_hdr(out, cap, dmac, smac, sip, dip, IP_PROTO_UDP, ulen);
	if (!u)
		return 0;
	nb_put16(u, sport);
	nb_put16(u + 2, dport);
	nb_put16(u + 4, (uint16_t)ulen);
	nb_put16(u + 6, 0);
	if (len)
		efi_memcpy(u + sizeof(struct udp_hdr), payload, len);
	uint16_t c = nb_csum(u, ulen, pseudo6_sum(sip, dip, ulen, IP_PROTO_UDP));
	nb_put16(u + 6, c ? c : 0xffff);
	return ETH_HLEN + (uint32_t)sizeof(struct ipv6_hdr) + ulen;
}

uint32_t nb_icmp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
			const uint8_t sip[16], const uint8_t dip[16], const void *msg, uint32_t len)
{
	if (len < sizeof(struct icmpv6_hdr))
		return 0;
	uint8_t *m = ip6_hdr(out, cap, dmac, smac, sip, dip, IP_PROTO_ICMPV6, len);
	if (!m)
		return 0;
	efi_memcpy(m, msg, len);
	nb_put16(m + 2, 0);
	nb_put16(m + 2, nb_csum(m, len, pseudo6_sum(sip, dip, len, IP_PROTO_ICMPV6)));
	return ETH_HLEN + (uint32_t)sizeof(struct ipv6_hdr) + len;
}

/* The IPv6 header of frame f: the upper-layer message (no extension headers are followed: a boot
 * client needs none) with its length checked against the frame. */
static const uint8_t *ip6_payload(const uint8_t *f, uint32_t len, uint8_t proto, uint32_t *plen)
{
	if (len < ETH_HLEN + sizeof(struct ipv6_hdr) || nb_be16(f + 12) != ETH_P_IPV6)
		return NULL;
	const uint8_t *ip = f + ETH_HLEN;
	uint32_t pl = nb_be16(ip + 4);
	if ((ip[0] >> 4) != 6 || ip[6] != proto || pl > len - ETH_HLEN - sizeof(struct ipv6_hdr))
		return NULL;
	*plen = pl;
	return ip + sizeof(struct ipv6_hdr);
}

int nb_udp6_parse(const uint8_t *f, uint32_t len, struct nb_udp *u)
{
	uint32_t pl;
	const uint8_t *udp = ip6_payload(f, len, IP_PROTO_UDP, &pl);
	if (!udp || pl < sizeof(struct udp_hdr))
		return -1;
	const uint8_t *ip = f + ETH_HLEN;
	uint32_t ulen = nb_be16(udp + 4);
	if (ulen < sizeof(struct udp_hdr) || ulen > pl)
		return -1;
	/* RFC 8200 8.1: a zero UDP checksum over IPv6 is discarded. */
	if (!nb_be16(udp + 6) || nb_csum(udp, ulen, pseudo6_sum(ip + 8, ip + 24, ulen, IP_PROTO_UDP)))
		return -1;
	nb_udp_fill(u, f, ip + 8, ip + 24, 16, udp, ulen);
	return 0;
}

uint32_t nb_tcp6_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6],
		       const uint8_t sip[16], const uint8_t dip[16], const struct nb_tcp_seg *seg, const void *payload,
		       uint32_t len)
{
	uint32_t hl = (uint32_t)sizeof(struct tcp_hdr) + (seg->mss ? 4 : 0);
	if (len > 0xffff - hl)
		return 0;
	uint8_t *t = ip6_hdr(out, cap, dmac, smac, sip, dip, IP_PROTO_TCP, hl + len);
	if (!t)
		return 0;
	uint32_t tlen = nb_tcp_put(t, seg, payload, len);
	nb_put16(((struct tcp_hdr *)t)->csum, nb_csum(t, tlen, pseudo6_sum(sip, dip, tlen, IP_PROTO_TCP)));
	return ETH_HLEN + (uint32_t)sizeof(struct ipv6_hdr) + tlen;
}

int nb_tcp6_parse(const uint8_t *f, uint32_t len, struct nb_tcp *t)
{
	uint32_t pl;
	const uint8_t *tcp = ip6_payload(f, len, IP_PROTO_TCP, &pl);
	if (!tcp || pl < sizeof(struct tcp_hdr))
		return -1;
	const uint8_t *ip = f + ETH_HLEN;
	if (nb_csum(tcp, pl, pseudo6_sum(ip + 8, ip + 24, pl, IP_PROTO_TCP)))
		return -1;
	efi_memset(t, 0, sizeof(*t));
	efi_memcpy(t->sip, ip + 8, 16);
	efi_memcpy(t->dip, ip + 24, 16);
	return nb_tcp_get(tcp, pl, t);
}

void nb_ip6_linklocal(uint8_t out[16], const uint8_t mac[6])
{
	efi_memset(out, 0, 16);
	out[0] = 0xfe;
	out[1] = 0x80;
	out[8] = mac[0] ^ 0x02; /* the universal/local bit inverted */
	out[9] = mac[1];
	out[10] = mac[2];
	out[11] = 0xff;
	out[12] = 0xfe;
	out[13] = mac[3];
	out[14] = mac[4];
	out[15] = mac[5];
}

void nb_ip6_slaac(uint8_t out[16], const uint8_t prefix[16], const uint8_t mac[6])
{
	nb_ip6_linklocal(out, mac);
	efi_memcpy(out, prefix, 8);
}

void nb_ip6_solicited(uint8_t out[16], const uint8_t ip[16])
{
	static const uint8_t pre[13] = { 0xff, 0x02, [11] = 0x01, [12] = 0xff };
	efi_memcpy(out, pre, 13);
	efi_memcpy(out + 13, ip + 13, 3);
}

void nb_ip6_mcast_mac(uint8_t out[6], const uint8_t ip[16])
{
	out[0] = out[1] = 0x33;
	efi_memcpy(out + 2, ip + 12, 4);
}

bool nb_ip6_is_linklocal(const uint8_t ip[16])
{
	return ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80;
}

bool nb_ip6_is_mcast(const uint8_t ip[16])
{
	return ip[0] == 0xff;
}

void nb_ip6_text(char out[48], const uint8_t ip[16])
{
	static const char hex[] = "0123456789abcdef";
	int best = -1, best_n = 0;
	for (int i = 0; i < 8;) {
		int n = 0;
		while (i + n < 8 && !nb_be16(ip + 2 * (i + n)))
			n++;
		if (n > best_n && n > 1) {
			best = i;
			best_n = n;
		}
		i += n ? n : 1;
	}
	char *o = out;
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			*o++ = ':';
			if (i == 0)
				*o++ = ':';
			i += best_n - 1;
			continue;
		}
		uint16_t g = nb_be16(ip + 2 * i);
		bool lead = true;
		for (int s = 12; s >= 0; s -= 4) {
			uint8_t d = (g >> s) & 0xf;
			if (d || !lead || s == 0) {
				*o++ = hex[d];
				lead = false;
			}
		}
		if (i < 7)
			*o++ = ':';
	}
	*o = 0;
}

int nb_nd_parse(const uint8_t *f, uint32_t len, struct nb_nd *nd)
{
	uint32_t pl;
	const uint8_t *m = ip6_payload(f, len, IP_PROTO_ICMPV6, &pl);
	if (!m || pl < sizeof(struct icmpv6_hdr))
		return -1;
	const uint8_t *ip = f + ETH_HLEN;
	if (ip[7] != ND_HOP_LIMIT || m[1] != 0 || nb_csum(m, pl, pseudo6_sum(ip + 8, ip + 24, pl, IP_PROTO_ICMPV6)))
		return -1;
	efi_memset(nd, 0, sizeof(*nd));
	nd->type = m[0];
	efi_memcpy(nd->sip, ip + 8, 16);
	efi_memcpy(nd->dip, ip + 24, 16);
	efi_memcpy(nd->smac, f + 6, 6);
	uint32_t fixed;
	uint8_t want_ll;
	switch (nd->type) {
	case ICMPV6_NEIGH_SOLICIT:
	case ICMPV6_NEIGH_ADVERT:
		fixed = sizeof(struct icmpv6_hdr) + sizeof(struct nd_neigh);
		if (pl < fixed)
			return -1;
		nd->na_flags = m[4];
		efi_memcpy(nd->target, m + 8, 16);
		if (nb_ip6_is_mcast(nd->target))
			return -1; /* RFC 4861 7.1: the target is never multicast */
		want_ll = nd->type == ICMPV6_NEIGH_SOLICIT ? ND_OPT_SOURCE_LLADDR : ND_OPT_TARGET_LLADDR;
		break;
	case ICMPV6_ROUTER_ADVERT:
		fixed = sizeof(struct icmpv6_hdr) + sizeof(struct nd_router_advert);
		if (pl < fixed || !nb_ip6_is_linklocal(nd->sip)) /* RFC 4861 6.1.2 */
			return -1;
		nd->router_lifetime = nb_be16(m + 6);
		nd->ra_flags = m[5] & (ND_RA_MANAGED | ND_RA_OTHER);
		want_ll = ND_OPT_SOURCE_LLADDR;
		break;
	default:
		return -1;
	}
	for (uint32_t o = fixed; o < pl;) {
		if (pl - o < 2 || !m[o + 1] || (uint32_t)m[o + 1] * 8 > pl - o)
			return -1; /* RFC 4861 4.6: a zero or overlong option length invalidates the message */
		uint32_t olen = (uint32_t)m[o + 1] * 8;
		if (m[o] == want_ll && olen >= 8) {
			efi_memcpy(nd->lladdr, m + o + 2, 6);
			nd->has_lladdr = true;
		} else if (m[o] == ND_OPT_PREFIX_INFO && nd->type == ICMPV6_ROUTER_ADVERT && !nd->has_prefix &&
			   olen >= sizeof(struct nd_opt_prefix)) {
			struct nd_opt_prefix p;
			efi_memcpy(&p, m + o, sizeof(p));
			if (p.prefix_len <= 128 && (p.flags & (ND_OPT_PREFIX_ONLINK | ND_OPT_PREFIX_AUTO)) &&
			    !nb_ip6_is_linklocal(p.prefix)) {
				nd->has_prefix = true;
				nd->prefix_len = p.prefix_len;
				nd->prefix_flags = p.flags;
				efi_memcpy(nd->prefix, p.prefix, 16);
			}
		}
		o += olen;
	}
	return 0;
}

static uint32_t nd_msg(uint8_t *out, uint32_t cap, uint8_t type, const uint8_t *target, uint8_t flags, uint8_t opt,
		       const uint8_t mac[6])
{
	uint32_t fixed = sizeof(struct icmpv6_hdr) + (target ? sizeof(struct nd_neigh) : 4u);
	if (cap < fixed + 8)
		return 0;
	efi_memset(out, 0, fixed + 8);
	out[0] = type;
	if (target) {
		out[4] = flags;
		efi_memcpy(out + 8, target, 16);
	}
	if (!mac)
		return fixed;
	out[fixed] = opt;
	out[fixed + 1] = 1;
	efi_memcpy(out + fixed + 2, mac, 6);
	return fixed + 8;
}

uint32_t nb_nd_ns(uint8_t *out, uint32_t cap, const uint8_t target[16], const uint8_t mac[6])
{
	return nd_msg(out, cap, ICMPV6_NEIGH_SOLICIT, target, 0, ND_OPT_SOURCE_LLADDR, mac);
}

uint32_t nb_nd_na(uint8_t *out, uint32_t cap, const uint8_t target[16], uint8_t flags, const uint8_t mac[6])
{
	return nd_msg(out, cap, ICMPV6_NEIGH_ADVERT, target, flags, ND_OPT_TARGET_LLADDR, mac);
}

uint32_t nb_nd_rs(uint8_t *out, uint32_t cap, const uint8_t mac[6])
{
	return nd_msg(out, cap, ICMPV6_ROUTER_SOLICIT, NULL, 0, ND_OPT_SOURCE_LLADDR, mac);
}

/* ---- DHCPv6 ---- */

struct obuf {
	uint8_t *p;
	uint32_t cap, n;
	bool over;
};

static uint8_t *opt_put(struct obuf *b, uint16_t code, uint32_t len)
{
	if (b->over || len > 0xffff || b->cap - b->n < 4 || len > b->cap - b->n - 4) {
		b->over = true;
		return NULL;
	}
	uint8_t *o = b->p + b->n;
	nb_put16(o, code);
	nb_put16(o + 2, (uint16_t)len);
	b->n += 4 + len;
	return o + 4;
}

static void opt_bytes(struct obuf *b, uint16_t code, const void *data, uint32_t len)
{
	uint8_t *o = opt_put(b, code, len);
	if (o && len)
		efi_memcpy(o, data, len);
}

/* DUID-UUID (RFC 6355): type 4 and the SMBIOS system UUID, as EDK2-derived firmware sends too. */
static void duid_uuid(uint8_t out[18], const uint8_t uuid[16])
{
	nb_put16(out, DHCP6_DUID_UUID);
	efi_memcpy(out + 2, uuid, 16);
}

uint32_t nb_dhcp6_build(uint8_t *out, uint32_t cap, const struct nb_dhcp6_req *r)
{
	struct obuf b = { out, cap, 4, cap < 4 };
	if (b.over || r->server_id_len > NB_DUID_MAX)
		return 0;
	out[0] = r->type;
	out[1] = (uint8_t)(r->xid >> 16);
	out[2] = (uint8_t)(r->xid >> 8);
	out[3] = (uint8_t)r->xid;
	uint8_t duid[18];
	duid_uuid(duid, r->uuid);
	opt_bytes(&b, DHCP6_OPT_CLIENTID, duid, sizeof(duid));
	if (r->type == DHCP6_REQUEST)
		opt_bytes(&b, DHCP6_OPT_SERVERID, r->server_id, r->server_id_len);
	uint32_t ia_len = sizeof(struct dhcp6_ia_na) + (r->has_addr ? 4 + sizeof(struct dhcp6_iaaddr) : 0);
	uint8_t *ia = r->type == DHCP6_INFORMATION_REQUEST ? NULL : opt_put(&b, DHCP6_OPT_IA_NA, ia_len);
	if (ia) {
		efi_memset(ia, 0, ia_len);
		nb_put32(ia, r->iaid);
		if (r->has_addr) {
			nb_put16(ia + 12, DHCP6_OPT_IAADDR);
			nb_put16(ia + 14, sizeof(struct dhcp6_iaaddr));
			efi_memcpy(ia + 16, r->addr, 16);
		}
	}
	uint8_t el[2];
	nb_put16(el, r->elapsed);
	opt_bytes(&b, DHCP6_OPT_ELAPSED_TIME, el, 2);
	static const uint16_t oro[] = { DHCP6_OPT_BOOTFILE_URL, DHCP6_OPT_BOOTFILE_PARAM, DHCP6_OPT_DNS_SERVERS,
					DHCP6_OPT_VENDOR_CLASS };
	uint8_t *o = opt_put(&b, DHCP6_OPT_ORO, sizeof(oro));
	for (uint32_t i = 0; o && i < sizeof(oro) / sizeof(oro[0]); i++)
		nb_put16(o + 2 * i, oro[i]);
	uint8_t arch[2];
	nb_put16(arch, PXE_ARCH_X64_UEFI);
	opt_bytes(&b, DHCP6_OPT_CLIENT_ARCH, arch, 2);
	static const uint8_t nii[3] = { 1, 3, 0x10 }; /* UNDI 3.16, as the DHCPv4 option 94 says */
	opt_bytes(&b, DHCP6_OPT_NII, nii, 3);
	/* Vendor class (RFC 8415 21.16): enterprise number, then length-prefixed data. */
	static const char pxe[] = "PXEClient:Arch:00007:UNDI:003016";
	uint8_t *v = opt_put(&b, DHCP6_OPT_VENDOR_CLASS, 4 + 2 + sizeof(pxe) - 1);
	if (v) {
		nb_put32(v, DHCP6_ENTERPRISE_PXE);
		nb_put16(v + 4, sizeof(pxe) - 1);
		efi_memcpy(v + 6, pxe, sizeof(pxe) - 1);
	}
	return b.over ? 0 : b.n;
}

/* Walks the options in [p, p+len): each one's code, body and length, or false at the end or at an
 * option that overruns its container (*bad set). */
static bool opt_next(const uint8_t *p, uint32_t len, uint32_t *off, uint16_t *code, const uint8_t **body,
		     uint32_t *blen, bool *bad)
{
	if (*off >= len)
		return false;
	if (len - *off < 4) {
		*bad = true;
		return false;
	}
	uint32_t l = nb_be16(p + *off + 2);
	if (l > len - *off - 4) {
		*bad = true;
		return false;
	}
	*code = nb_be16(p + *off);
	*body = p + *off + 4;
	*blen = l;
	*off += 4 + l;
	return true;
}

/* Our IA_NA: the first IAADDR and the IA's status code. */
static int parse_ia_na(const uint8_t *p, uint32_t len, struct nb_dhcp6_reply *r, uint16_t *ia_status)
{
	if (len < sizeof(struct dhcp6_ia_na))
		return -1;
	uint32_t off = sizeof(struct dhcp6_ia_na), blen;
	uint16_t code;
	const uint8_t *body;
	bool bad = false;
	while (opt_next(p, len, &off, &code, &body, &blen, &bad)) {
		if (code == DHCP6_OPT_STATUS_CODE && blen >= 2)
			*ia_status = nb_be16(body);
		else if (code == DHCP6_OPT_IAADDR && blen >= sizeof(struct dhcp6_iaaddr) && !r->has_addr &&
			 nb_be32(body + 20) /* valid lifetime */) {
			efi_memcpy(r->addr, body, 16);
			r->has_addr = true;
		}
	}
	return bad ? -1 : 0;
}

int nb_dhcp6_parse(const uint8_t *p, uint32_t len, uint32_t xid, const uint8_t uuid[16], struct nb_dhcp6_reply *r)
{
	if (len < sizeof(struct dhcp6_hdr) || (p[0] != DHCP6_ADVERTISE && p[0] != DHCP6_REPLY) ||
	    ((uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) != (xid & 0xffffff))
		return -1;
	efi_memset(r, 0, sizeof(*r));
	r->type = p[0];
	uint8_t duid[18];
	duid_uuid(duid, uuid);
	bool client_ok = false, bad = false;
	uint16_t code, ia_status = 0;
	bool has_status = false;
	const uint8_t *body;
	uint32_t off = 4, blen;
	while (opt_next(p, len, &off, &code, &body, &blen, &bad)) {
		switch (code) {
		case DHCP6_OPT_CLIENTID:
			client_ok = blen == sizeof(duid) && !efi_memcmp(body, duid, sizeof(duid));
			break;
		case DHCP6_OPT_SERVERID:
			if (!blen || blen > NB_DUID_MAX)
				return -1;
			efi_memcpy(r->server_id, body, blen);
			r->server_id_len = (uint16_t)blen;
			break;
		case DHCP6_OPT_IA_NA:
			if (parse_ia_na(body, blen, r, &ia_status))
				return -1;
			break;
		case DHCP6_OPT_STATUS_CODE:
			if (blen >= 2) {
				r->status = nb_be16(body);
				has_status = true;
			}
			break;
		case DHCP6_OPT_PREFERENCE:
			if (blen == 1)
				r->preference = body[0];
			break;
		case DHCP6_OPT_DNS_SERVERS:
			if (blen >= 16 && !r->has_dns) {
				efi_memcpy(r->dns, body, 16);
				r->has_dns = true;
			}
			break;
		case DHCP6_OPT_BOOTFILE_URL:
			if (blen >= sizeof(r->bootfile_url)) {
				r->url_too_long = true;
				break;
			}
			for (uint32_t i = 0; i < blen; i++)
				if (body[i] < 0x21 || body[i] > 0x7e) /* a URL is printable ASCII, no spaces */
					return -1;
			efi_memcpy(r->bootfile_url, body, blen);
			r->bootfile_url[blen] = 0;
			break;
		default:
			break;
		}
	}
	if (bad || !client_ok || !r->server_id_len)
		return -1;
	if (!has_status)
		r->status = ia_status;
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int nb_ip6_parse(const char *s, uint32_t len, uint8_t out[16])
{
	uint16_t g[8];
	int n = 0, gap = -1;
	uint32_t i = 0;
	if (len >= 2 && s[0] == ':' && s[1] == ':') {
		gap = 0;
		i = 2;
	} else if (len && s[0] == ':') {
		return -1;
	}
	while (i < len) {
		if (n == 8)
			return -1;
		uint32_t v = 0, k = 0;
		for (; i < len && k < 5 && hexval(s[i]) >= 0; i++, k++)
			v = v << 4 | (uint32_t)hexval(s[i]);
		if (!k || k > 4)
			return -1; /* dotted IPv4 tails are not taken: a boot URL names a plain IPv6 address */
		g[n++] = (uint16_t)v;
		if (i == len)
			break;
		if (s[i] != ':' || ++i == len)
			return -1;
		if (s[i] == ':') {
			if (gap >= 0)
				return -1;
			gap = n;
			i++;
		}
	}
	if ((gap < 0 && n != 8) || (gap >= 0 && n > 7))
		return -1;
	efi_memset(out, 0, 16);
	int tail = gap < 0 ? 0 : n - gap;
	for (int k = 0; k < n - tail; k++)
		nb_put16(out + 2 * k, g[k]);
	for (int k = 0; k < tail; k++)
		nb_put16(out + 2 * (8 - tail + k), g[n - tail + k]);
	return 0;
}

int nb_tftp6_url(const char *url, uint8_t server[16], char *path, uint32_t cap)
{
	static const char scheme[] = "tftp://[";
	uint32_t i = 0;
	for (; scheme[i]; i++)
		if (!url[i] || (url[i] | (i < 4 ? 0x20 : 0)) != scheme[i])
			return -1;
	const char *a = url + i, *e = a;
	while (*e && *e != ']')
		e++;
	if (*e != ']' || nb_ip6_parse(a, (uint32_t)(e - a), server))
		return -1;
	e++;
	if (*e == ':') {
		if (e[1] != '6' || e[2] != '9' || e[3] != '/')
			return -1; /* only the TFTP port: the client always asks port 69 */
		e += 3;
	}
	if (*e != '/' || !e[1])
		return -1;
	e++;
	uint32_t n = 0;
	for (; e[n]; n++)
		if (n + 1 >= cap)
			return -1;
	efi_memcpy(path, e, n + 1);
	return 0;
}
