#include "netboot_wire.h"

#include "efi/efi_lib.h"

uint16_t nb_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t nb_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void nb_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void nb_put32(uint8_t *p, uint32_t v)
{
	nb_put16(p, (uint16_t)(v >> 16));
	nb_put16(p + 2, (uint16_t)v);
}

static uint32_t fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint32_t)s;
}

/* The one's complement sum is byte-order independent (RFC 1071 2(B)): sum native 32-bit words 8 bytes
 * a step (every firmware instruction is emulated: a frame is ~200 steps, not ~750), then swap. */
uint16_t nb_csum(const uint8_t *p, uint32_t len, uint32_t sum)
{
	uint64_t s = 0;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t x;
		__builtin_memcpy(&x, p, 8);
		s += (x & 0xffffffffu) + (x >> 32);
	}
	for (; len >= 2; p += 2, len -= 2) {
		uint16_t x;
		__builtin_memcpy(&x, p, 2);
		s += x;
	}
	if (len) {
		uint8_t last[2] = { p[0], 0 };
		uint16_t x;
		__builtin_memcpy(&x, last, 2);
		s += x;
	}
	uint32_t native = fold(s);
	uint8_t b[2];
	__builtin_memcpy(b, &native, 2); /* the native 16-bit sum, as bytes: big-endian value follows */
	return (uint16_t)~fold((uint64_t)nb_be16(b) + sum);
}

static uint32_t pseudo_sum(const uint8_t sip[4], const uint8_t dip[4], uint8_t proto, uint32_t l4_len)
{
	return (uint32_t)nb_be16(sip) + nb_be16(sip + 2) + nb_be16(dip) + nb_be16(dip + 2) + proto + l4_len;
}

/* The Ethernet and IPv4 headers of a frame carrying l4_len bytes of proto; returns the L4 header. */
static uint8_t *ip4_headers(uint8_t *out, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
			    const uint8_t dip[4], uint8_t proto, uint32_t l4_len, uint16_t ip_id)
{
	struct eth_hdr *e = (struct eth_hdr *)out;
	efi_memcpy(e->dst, dmac, 6);
	efi_memcpy(e->src, smac, 6);
	nb_put16(e->type, ETH_P_IPV4);
	struct ipv4_hdr *ip = (struct ipv4_hdr *)(out + ETH_HLEN);
	ip->ver_ihl = 0x45;
	ip->tos = 0;
	nb_put16(ip->total_len, (uint16_t)(sizeof(*ip) + l4_len));
	nb_put16(ip->id, ip_id);
	nb_put16(ip->frag, 0x4000); /* don't fragment */
	ip->ttl = 64;
	ip->proto = proto;
	nb_put16(ip->csum, 0);
	efi_memcpy(ip->src, sip, 4);
	efi_memcpy(ip->dst, dip, 4);
	nb_put16(ip->csum, nb_csum((const uint8_t *)ip, sizeof(*ip), 0));
	return (uint8_t *)(ip + 1);
}

uint32_t nb_udp4_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
		       const uint8_t dip[4], uint16_t sport, uint16_t dport, const void *payload, uint32_t len,
		       uint16_t ip_id)
{
	const uint32_t hl = ETH_HLEN + sizeof(struct ipv4_hdr) + sizeof(struct udp_hdr);
	if (cap < hl || len > cap - hl || len > 65507)
		return 0;
	uint16_t ulen = (uint16_t)(sizeof(struct udp_hdr) + len);
	struct udp_hdr *u = (struct udp_hdr *)ip4_headers(out, dmac, smac, sip, dip, IP_PROTO_UDP, ulen, ip_id);
	nb_put16(u->sport, sport);
	nb_put16(u->dport, dport);
	nb_put16(u->len, ulen);
	nb_put16(u->csum, 0);
	if (len)
		efi_memcpy(u + 1, payload, len);
	uint16_t c = nb_csum((const uint8_t *)u, ulen, pseudo_sum(sip, dip, IP_PROTO_UDP, ulen));
	nb_put16(u->csum, c ? c : 0xffff);
	return hl + len;
}

/* An unfragmented IPv4 packet of proto with a good header checksum: its L4 bytes (*l4, *l4_len). */
static int ip4_payload(const uint8_t *f, uint32_t len, uint8_t proto, uint32_t min_l4, const uint8_t **l4,
		       uint32_t *l4_len)
{
	if (len < ETH_HLEN + sizeof(struct ipv4_hdr) + min_l4 || nb_be16(f + 12) != ETH_P_IPV4)
		return -1;
	const uint8_t *ip = f + ETH_HLEN;
	uint32_t ihl = (ip[0] & 0x0f) * 4u, tot = nb_be16(ip + 2), room = len - ETH_HLEN;
	if ((ip[0] >> 4) != 4 || ihl < 20 || tot > room || tot < ihl + min_l4 || ip[9] != proto)
		return -1;
	if (nb_be16(ip + 6) & 0x3fff) /* a fragment (more-fragments set or an offset): not reassembled */
		return -1;
	if (nb_csum(ip, ihl, 0))
		return -1;
	*l4 = ip + ihl;
	*l4_len = tot - ihl;
	return 0;
}

int nb_udp4_parse(const uint8_t *f, uint32_t len, struct nb_udp *u)
{
	const uint8_t *udp, *ip = f + ETH_HLEN;
	uint32_t room;
	if (ip4_payload(f, len, IP_PROTO_UDP, sizeof(struct udp_hdr), &udp, &room))
		return -1;
	uint32_t ulen = nb_be16(udp + 4);
	if (ulen < sizeof(struct udp_hdr) || ulen > room)
		return -1;
	if (nb_be16(udp + 6) && nb_csum(udp, ulen, pseudo_sum(ip + 12, ip + 16, IP_PROTO_UDP, ulen)))
		return -1;
	nb_udp_fill(u, f, ip + 12, ip + 16, 4, udp, ulen);
	return 0;
}

void nb_udp_fill(struct nb_udp *u, const uint8_t *f, const uint8_t *sip, const uint8_t *dip, uint32_t alen,
		 const uint8_t *udp, uint32_t ulen)
{
	efi_memcpy(u->dmac, f, 6);
	efi_memcpy(u->smac, f + 6, 6);
	efi_memcpy(u->sip, sip, alen);
	efi_memcpy(u->dip, dip, alen);
	u->sport = nb_be16(udp);
	u->dport = nb_be16(udp + 2);
	u->data = udp + sizeof(struct udp_hdr);
	u->len = ulen - (uint32_t)sizeof(struct udp_hdr);
}

uint32_t nb_tcp_put(uint8_t *tcp, const struct nb_tcp_seg *seg, const void *payload, uint32_t len)
{
	uint32_t opt = seg->mss ? 4 : 0;
	struct tcp_hdr *t = (struct tcp_hdr *)tcp;
	nb_put16(t->sport, seg->sport);
	nb_put16(t->dport, seg->dport);
	nb_put32(t->seq, seg->seq);
	nb_put32(t->ack, seg->ack);
	t->off = (uint8_t)((sizeof(*t) + opt) / 4 << 4);
	t->flags = seg->flags;
	nb_put16(t->window, seg->window);
	nb_put16(t->csum, 0);
	nb_put16(t->urgent, 0);
	uint8_t *o = (uint8_t *)(t + 1);
	if (opt) {
		o[0] = TCP_OPT_MSS;
		o[1] = 4;
		nb_put16(o + 2, seg->mss);
	}
	if (len)
		efi_memcpy(o + opt, payload, len);
	return (uint32_t)sizeof(*t) + opt + len;
}

uint32_t nb_tcp4_build(uint8_t *out, uint32_t cap, const uint8_t dmac[6], const uint8_t smac[6], const uint8_t sip[4],
		       const uint8_t dip[4], const struct nb_tcp_seg *seg, const void *payload, uint32_t len,
		       uint16_t ip_id)
{
	uint32_t opt = seg->mss ? 4 : 0, hl = ETH_HLEN + sizeof(struct ipv4_hdr) + sizeof(struct tcp_hdr) + opt;
	if (cap < hl || len > cap - hl || len > 65000)
		return 0;
	uint32_t tlen = (uint32_t)sizeof(struct tcp_hdr) + opt + len;
	uint8_t *t = ip4_headers(out, dmac, smac, sip, dip, IP_PROTO_TCP, tlen, ip_id);
	nb_tcp_put(t, seg, payload, len);
	nb_put16(((struct tcp_hdr *)t)->csum, nb_csum(t, tlen, pseudo_sum(sip, dip, IP_PROTO_TCP, tlen)));
	return hl + len;
}

int nb_tcp_get(const uint8_t *tcp, uint32_t tlen, struct nb_tcp *t)
{
	if (tlen < sizeof(struct tcp_hdr))
		return -1;
	uint32_t off = (uint32_t)(tcp[12] >> 4) * 4u;
	if (off < sizeof(struct tcp_hdr) || off > tlen)
		return -1;
	t->seg = (struct nb_tcp_seg){ .sport = nb_be16(tcp), .dport = nb_be16(tcp + 2), .seq = nb_be32(tcp + 4),
				      .ack = nb_be32(tcp + 8), .flags = tcp[13], .window = nb_be16(tcp + 14) };
	for (uint32_t i = sizeof(struct tcp_hdr); i < off;) {
		uint8_t kind = tcp[i];
		if (kind == TCP_OPT_END)
			break;
		if (kind == TCP_OPT_NOP) {
			i++;
			continue;
		}
		if (off - i < 2 || tcp[i + 1] < 2 || tcp[i + 1] > off - i)
			return -1;
		if (kind == TCP_OPT_MSS && tcp[i + 1] == 4)
			t->seg.mss = nb_be16(tcp + i + 2);
		i += tcp[i + 1];
	}
	t->data = tcp + off;
	t->len = tlen - off;
	return 0;
}

int nb_tcp4_parse(const uint8_t *f, uint32_t len, struct nb_tcp *t)
{
	const uint8_t *tcp, *ip = f + ETH_HLEN;
	uint32_t tlen;
	if (ip4_payload(f, len, IP_PROTO_TCP, sizeof(struct tcp_hdr), &tcp, &tlen))
		return -1;
	if (nb_csum(tcp, tlen, pseudo_sum(ip + 12, ip + 16, IP_PROTO_TCP, tlen)))
		return -1;
	efi_memset(t, 0, sizeof(*t));
	efi_memcpy(t->sip, ip + 12, 4);
	efi_memcpy(t->dip, ip + 16, 4);
	return nb_tcp_get(tcp, tlen, t);
}

/* ---- HTTP ---- */

static bool starts_with_nocase(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++) {
		char c = *s >= 'A' && *s <= 'Z' ? (char)(*s + 32) : *s;
		if (c != *prefix)
			return false;
	}
	return true;
}

/* Whether name (n bytes) is a DNS host name: dot-separated labels of 1 to 63 letters, digits and
 * hyphens, none starting or ending with a hyphen, at most DNS_NAME_MAX bytes, and not all digits and
 * dots (that is a malformed IPv4 address, not a name). */
static bool dns_name_ok(const char *name, uint32_t n)
{
	if (!n || n > DNS_NAME_MAX)
		return false;
	uint32_t label = 0;
	bool letter = false;
	for (uint32_t i = 0; i <= n; i++) {
		char c = i < n ? name[i] : '.';
		if (c == '.') {
			if (!label || label > 63 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!alpha && c != '-' && !(c >= '0' && c <= '9'))
			return false;
		if (c == '-' && !label)
			return false;
		letter |= alpha || c == '-';
		label++;
	}
	return letter;
}

int nb_http_url_parse(const char *url, struct nb_http_url *u, char *path, uint32_t path_cap)
{
	efi_memset(u, 0, sizeof(*u));
	if (!starts_with_nocase(url, "http://"))
		return starts_with_nocase(url, "https://") ? -2 : -1;
	const char *p = url + 7;
	uint32_t hn = 0;
	while (p[hn] && p[hn] != '/' && hn < NB_HTTP_HOST_MAX)
		hn++;
	if (!hn || hn >= NB_HTTP_HOST_MAX)
		return -2;
	efi_memcpy(u->host, p, hn);
	u->host[hn] = 0;
	const char *h = u->host;
	u->v6 = *h == '[';
	if (u->v6) {
		/* "[IPv6]": a zone ("%25eth0") or anything else inside the brackets is refused. */
		const char *e = h + 1;
		while (*e && *e != ']')
			e++;
		if (*e != ']' || nb_ip6_parse(h + 1, (uint32_t)(e - h - 1), u->ip))
			return -2;
		h = e + 1;
	} else {
		uint32_t n = 0;
		while (h[n] && h[n] != ':')
			n++;
		bool quad = true;
		const char *q = h;
		for (int i = 0; i < 4 && quad; i++) {
			uint32_t v = 0, digits = 0;
			while (*q >= '0' && *q <= '9' && digits < 4) {
				v = v * 10 + (uint32_t)(*q++ - '0');
				digits++;
			}
			quad = digits && digits <= 3 && v <= 255 && (i == 3 || *q++ == '.');
			u->ip[i] = (uint8_t)v;
		}
		if (quad && q == h + n) {
			h = q;
		} else if (dns_name_ok(h, n)) {
			efi_memset(u->ip, 0, sizeof(u->ip));
			efi_memcpy(u->name, h, n);
			u->name[n] = 0;
			h += n;
		} else {
			return -2;
		}
	}
	u->port = HTTP_PORT;
	if (*h == ':') {
		uint32_t v = 0, digits = 0;
		for (h++; *h >= '0' && *h <= '9' && digits < 6; h++, digits++)
			v = v * 10 + (uint32_t)(*h - '0');
		if (!digits || !v || v > 65535)
			return -2;
		u->port = (uint16_t)v;
	}
	if (*h)
		return -2; /* junk after the host */
	const char *rest = p[hn] ? p + hn : "/";
	uint32_t n = 0;
	while (rest[n])
		n++;
	if (n >= path_cap)
		return -2;
	for (uint32_t i = 0; i < n; i++)
		if ((uint8_t)rest[i] <= ' ' || (uint8_t)rest[i] >= 0x7f)
			return -2; /* no spaces or control bytes in a request line */
	efi_memcpy(path, rest, n + 1);
	return 0;
}

/* ---- DNS ---- */

uint32_t nb_dns_query(uint8_t *out, uint32_t cap, uint16_t id, const char *name, uint16_t qtype)
{
	uint32_t n = 0;
	while (n <= DNS_NAME_MAX && name[n])
		n++;
	/* header, the name as labels (one length byte more than the dotted text, and the root's 0),
	 * type and class */
	uint32_t need = (uint32_t)sizeof(struct dns_hdr) + n + 2 + 4;
	if (!dns_name_ok(name, n) || cap < need)
		return 0;
	struct dns_hdr *h = (struct dns_hdr *)out;
	efi_memset(h, 0, sizeof(*h));
	nb_put16(h->id, id);
	nb_put16(h->flags, DNS_FLAG_RD);
	nb_put16(h->qdcount, 1);
	uint8_t *o = out + sizeof(*h), *len_at = o++;
	for (uint32_t i = 0; i < n; i++) {
		if (name[i] == '.') {
			*len_at = (uint8_t)(o - len_at - 1);
			len_at = o++;
		} else {
			*o++ = (uint8_t)name[i];
		}
	}
	*len_at = (uint8_t)(o - len_at - 1);
	*o++ = 0;
	nb_put16(o, qtype);
	nb_put16(o + 2, DNS_CLASS_IN);
	return need;
}

/* Past the name at *off in the message (labels, or a compression pointer that ends it): the name is
 * not followed, only skipped, so no pointer chain is walked. -1 when it leaves the message. */
static int dns_skip_name(const uint8_t *p, uint32_t len, uint32_t *off)
{
	for (uint32_t labels = 0; labels < 128; labels++) {
		if (*off >= len)
			return -1;
		uint8_t c = p[*off];
		if ((c & 0xc0) == 0xc0) {
			if (len - *off < 2)
				return -1;
			*off += 2;
			return 0;
		}
		if (c & 0xc0)
			return -1; /* the reserved label types */
		if (len - *off < 1u + c)
			return -1;
		*off += 1u + c;
		if (!c)
			return 0;
	}
	return -1;
}

int nb_dns_answer(const uint8_t *p, uint32_t len, uint16_t id, uint16_t qtype, uint8_t addr[16], uint8_t *rcode)
{
	*rcode = 0;
	if (len < sizeof(struct dns_hdr))
		return -1;
	const struct dns_hdr *h = (const struct dns_hdr *)p;
	uint16_t flags = nb_be16(h->flags);
	if (nb_be16(h->id) != id || !(flags & DNS_FLAG_QR))
		return -1;
	*rcode = (uint8_t)(flags & DNS_RCODE_MASK);
	if (*rcode == DNS_RCODE_NXDOMAIN)
		return 1;
	if (*rcode)
		return -1;
	uint32_t off = sizeof(*h);
	for (uint32_t q = nb_be16(h->qdcount); q; q--) {
		if (dns_skip_name(p, len, &off) || len - off < 4)
			return -1;
		off += 4;
	}
	uint32_t want = qtype == DNS_TYPE_AAAA ? 16 : 4;
	for (uint32_t a = nb_be16(h->ancount); a; a--) {
		if (dns_skip_name(p, len, &off) || len - off < 10)
			return -1;
		uint16_t type = nb_be16(p + off), cls = nb_be16(p + off + 2), rdlen = nb_be16(p + off + 8);
		off += 10;
		if (len - off < rdlen)
			return -1;
		/* A CNAME chain comes first in a recursive answer: its records are skipped and the first
		 * address of the type asked for is the name's. */
		if (type == qtype && cls == DNS_CLASS_IN && rdlen == want) {
			efi_memcpy(addr, p + off, want);
			return 0;
		}
		off += rdlen;
	}
	return 1; /* the name exists without such a record */
}

static uint32_t put_str(uint8_t *o, uint32_t room, const char *s);

uint32_t nb_http_get_build(uint8_t *out, uint32_t cap, const char *host, const char *path)
{
	uint32_t n = 0;
	const char *parts[] = { "GET ", path, " HTTP/1.1\r\nHost: ", host,
				"\r\nUser-Agent: gen2vm-firmware\r\nAccept: */*\r\nConnection: close\r\n\r\n" };
	for (unsigned i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		uint32_t k = put_str(out + n, cap - n, parts[i]); /* with its NUL, which the next part covers */
		if (!k)
			return 0;
		n += k - 1;
	}
	return n;
}

#define NB_HTTP_HEADER_MAX 8192u

/* Whether line (n bytes, no CRLF) is "name: value" for this lower-case name; *value after the spaces. */
static bool header_is(const uint8_t *line, uint32_t n, const char *name, const uint8_t **value, uint32_t *vlen)
{
	uint32_t k = 0;
	for (; name[k]; k++) {
		uint8_t c = k < n ? line[k] : 0;
		if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (uint8_t)name[k])
			return false;
	}
	if (k >= n || line[k] != ':')
		return false;
	for (k++; k < n && (line[k] == ' ' || line[k] == '\t'); k++)
		;
	uint32_t end = n;
	while (end > k && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	*value = line + k;
	*vlen = end - k;
	return true;
}

int nb_http_resp_parse(const uint8_t *p, uint32_t len, struct nb_http_resp *r)
{
	/* The header ends at the first CRLFCRLF. */
	uint32_t end = 0;
	for (uint32_t i = 0; i + 3 < len && i + 4 <= NB_HTTP_HEADER_MAX; i++)
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
			end = i + 4;
			break;
		}
	if (!end)
		return len >= NB_HTTP_HEADER_MAX ? -1 : 1;
	*r = (struct nb_http_resp){ .header_len = end };
	/* "HTTP/1.x NNN reason" */
	if (end < 14 || efi_memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
		return -1;
	for (int i = 9; i < 12; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		r->status = (uint16_t)(r->status * 10 + (p[i] - '0'));
	}
	if (p[12] != ' ' && p[12] != '\r')
		return -1;
	uint32_t i = 12, k = 0;
	while (i < end && p[i] == ' ')
		i++;
	for (; i < end && p[i] != '\r'; i++)
		if (k + 1 < sizeof(r->reason))
			r->reason[k++] = p[i] >= ' ' && p[i] < 0x7f ? (char)p[i] : '?';
	r->reason[k] = 0;
	/* the header lines */
	for (i += 2; i + 2 <= end;) {
		uint32_t n = 0;
		while (i + n + 1 < end && !(p[i + n] == '\r' && p[i + n + 1] == '\n'))
			n++;
		if (i + n + 1 >= end)
			return -1;
		if (!n)
			break;
		const uint8_t *v;
		uint32_t vl;
		if (header_is(p + i, n, "content-length", &v, &vl)) {
			uint64_t x = 0;
			if (!vl || vl > 15)
				return -1;
			for (uint32_t j = 0; j < vl; j++) {
				if (v[j] < '0' || v[j] > '9')
					return -1;
				x = x * 10 + (v[j] - '0');
			}
			if (r->has_length && r->length != x)
				return -1;
			r->has_length = true;
			r->length = x;
		} else if (header_is(p + i, n, "transfer-encoding", &v, &vl)) {
			r->chunked = !(vl == 8 && starts_with_nocase((const char *)v, "identity"));
		}
		i += n + 2;
	}
	return 0;
}

int nb_arp_parse(const uint8_t *f, uint32_t len, struct nb_arp *a)
{
	if (len < ETH_HLEN + sizeof(struct arp_ipv4) || nb_be16(f + 12) != ETH_P_ARP)
		return -1;
	struct arp_ipv4 p;
	efi_memcpy(&p, f + ETH_HLEN, sizeof(p));
	if (nb_be16(p.htype) != 1 || nb_be16(p.ptype) != ETH_P_IPV4 || p.hlen != 6 || p.plen != 4)
		return -1;
	a->op = nb_be16(p.op);
	efi_memcpy(a->sha, p.sha, 6);
	efi_memcpy(a->spa, p.spa, 4);
	efi_memcpy(a->tha, p.tha, 6);
	efi_memcpy(a->tpa, p.tpa, 4);
	return 0;
}

uint32_t nb_arp_build(uint8_t *out, uint32_t cap, uint16_t op, const uint8_t dmac[6], const uint8_t smac[6],
		      const uint8_t sip[4], const uint8_t tha[6], const uint8_t tip[4])
{
	if (cap < 60)
		return 0;
	efi_memset(out, 0, 60);
	efi_memcpy(out, dmac, 6);
	efi_memcpy(out + 6, smac, 6);
	nb_put16(out + 12, ETH_P_ARP);
	struct arp_ipv4 *p = (struct arp_ipv4 *)(out + ETH_HLEN);
	nb_put16(p->htype, 1);
	nb_put16(p->ptype, ETH_P_IPV4);
	p->hlen = 6;
	p->plen = 4;
	nb_put16(p->op, op);
	efi_memcpy(p->sha, smac, 6);
	efi_memcpy(p->spa, sip, 4);
	efi_memcpy(p->tha, tha, 6);
	efi_memcpy(p->tpa, tip, 4);
	return 60;
}

/* ---- DHCPv4 ---- */
static const char pxe_class[] = "PXEClient:Arch:00007:UNDI:003016";

uint32_t nb_dhcp4_build(uint8_t *out, uint32_t cap, const struct nb_dhcp4_req *r)
{
	/* 240 + options below (< 120 bytes); 300 is BOOTP's minimum message size */
	if (cap < 400)
		return 0;
	efi_memset(out, 0, 400);
	struct dhcp4_hdr *h = (struct dhcp4_hdr *)out;
	h->op = BOOTP_REQUEST;
	h->htype = 1;
	h->hlen = 6;
	nb_put32(h->xid, r->xid);
	nb_put16(h->secs, r->secs);
	nb_put16(h->flags, DHCP_FLAG_BROADCAST); /* we cannot take unicast before we have the address */
	efi_memcpy(h->chaddr, r->mac, 6);
	nb_put32(h->magic, DHCP_MAGIC);
	uint8_t *o = out + sizeof(*h);
	*o++ = DHCP_OPT_MSG_TYPE, *o++ = 1, *o++ = r->type;
	*o++ = DHCP_OPT_MAX_SIZE, *o++ = 2, *o++ = 1500 >> 8, *o++ = 1500 & 0xff;
	static const uint8_t params[] = { DHCP_OPT_SUBNET_MASK, DHCP_OPT_ROUTER, DHCP_OPT_DNS, DHCP_OPT_HOSTNAME,
					  15 /* domain */, 28 /* broadcast */, 43 /* vendor */, DHCP_OPT_VENDOR_CLASS,
					  DHCP_OPT_TFTP_SERVER, DHCP_OPT_BOOTFILE };
	*o++ = DHCP_OPT_PARAM_LIST, *o++ = sizeof(params);
	efi_memcpy(o, params, sizeof(params));
	o += sizeof(params);
	*o++ = DHCP_OPT_CLIENT_ARCH, *o++ = 2, *o++ = PXE_ARCH_X64_UEFI >> 8, *o++ = PXE_ARCH_X64_UEFI & 0xff;
	*o++ = DHCP_OPT_CLIENT_NDI, *o++ = 3, *o++ = 1, *o++ = 3, *o++ = 16; /* UNDI 3.16 */
	*o++ = DHCP_OPT_VENDOR_CLASS, *o++ = sizeof(pxe_class) - 1;
	efi_memcpy(o, pxe_class, sizeof(pxe_class) - 1);
	o += sizeof(pxe_class) - 1;
	*o++ = DHCP_OPT_CLIENT_UUID, *o++ = 17, *o++ = 0;
	efi_memcpy(o, r->uuid, 16);
	o += 16;
	if (r->type == DHCP_REQUEST) {
		*o++ = DHCP_OPT_REQUESTED_IP, *o++ = 4;
		efi_memcpy(o, r->req_ip, 4);
		o += 4;
		*o++ = DHCP_OPT_SERVER_ID, *o++ = 4;
		efi_memcpy(o, r->server_id, 4);
		o += 4;
	}
	*o++ = DHCP_OPT_END;
	uint32_t n = (uint32_t)(o - out);
	return n < 300 ? 300 : n;
}

/* Copies a string option or field (len bytes, maybe not NUL-terminated) as printable ASCII. */
static void opt_str(char *dst, uint32_t cap, const uint8_t *src, uint32_t len)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < len && src[i] && k + 1 < cap; i++)
		dst[k++] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[k] = 0;
}

/* Walks one options area. Returns the overload value (option 52) or -1 when malformed. */
static int dhcp_opts(const uint8_t *o, uint32_t len, struct nb_dhcp4_reply *r)
{
	int overload = 0;
	for (uint32_t i = 0; i < len;) {
		uint8_t code = o[i];
		if (code == DHCP_OPT_PAD) {
			i++;
			continue;
		}
		if (code == DHCP_OPT_END)
			return overload;
		if (len - i < 2 || o[i + 1] > len - i - 2)
			return -1;
		uint8_t n = o[i + 1];
		const uint8_t *v = o + i + 2;
		switch (code) {
		case DHCP_OPT_MSG_TYPE:
			if (n == 1)
				r->type = v[0];
			break;
		case DHCP_OPT_SERVER_ID:
			if (n == 4) {
				efi_memcpy(r->server_id, v, 4);
				r->has_server_id = true;
			}
			break;
		case DHCP_OPT_SUBNET_MASK:
			if (n == 4) {
				efi_memcpy(r->mask, v, 4);
				r->has_mask = true;
			}
			break;
		case DHCP_OPT_ROUTER:
			if (n >= 4) {
				efi_memcpy(r->router, v, 4);
				r->has_router = true;
			}
			break;
		case DHCP_OPT_DNS:
			if (n >= 4) {
				efi_memcpy(r->dns, v, 4);
				r->has_dns = true;
			}
			break;
		case DHCP_OPT_OVERLOAD:
			if (n == 1 && v[0] <= 3)
				overload = v[0];
			break;
		case DHCP_OPT_BOOTFILE:
			opt_str(r->bootfile, sizeof(r->bootfile), v, n);
			break;
		case DHCP_OPT_TFTP_SERVER:
			opt_str(r->tftp_server, sizeof(r->tftp_server), v, n);
			break;
		case DHCP_OPT_VENDOR_CLASS:
			r->pxe_class = n >= 9 && !efi_memcmp(v, "PXEClient", 9);
			break;
		default:
			break;
		}
		i += 2u + n;
	}
	return overload; /* no END: accepted, as many clients do */
}

int nb_dhcp4_parse(const uint8_t *p, uint32_t len, uint32_t xid, const uint8_t mac[6], struct nb_dhcp4_reply *r)
{
	efi_memset(r, 0, sizeof(*r));
	if (len < sizeof(struct dhcp4_hdr))
		return -1;
	const struct dhcp4_hdr *h = (const struct dhcp4_hdr *)p;
	if (h->op != BOOTP_REPLY || h->htype != 1 || h->hlen != 6 || nb_be32(h->xid) != xid ||
	    efi_memcmp(h->chaddr, mac, 6) || nb_be32(h->magic) != DHCP_MAGIC)
		return -1;
	efi_memcpy(r->yiaddr, h->yiaddr, 4);
	efi_memcpy(r->siaddr, h->siaddr, 4);
	int ov = dhcp_opts(p + sizeof(*h), len - (uint32_t)sizeof(*h), r);
	if (ov < 0)
		return -1;
	/* Overloaded fields hold options, not names (RFC 2132 9.3): file first, then sname. */
	if ((ov & 1) && dhcp_opts(h->file, sizeof(h->file), r) < 0)
		return -1;
	if ((ov & 2) && dhcp_opts(h->sname, sizeof(h->sname), r) < 0)
		return -1;
	if (!r->bootfile[0] && !(ov & 1))
		opt_str(r->bootfile, sizeof(r->bootfile), h->file, sizeof(h->file));
	if (!r->tftp_server[0] && !(ov & 2))
		opt_str(r->tftp_server, sizeof(r->tftp_server), h->sname, sizeof(h->sname));
	return 0;
}

/* ---- TFTP ---- */
static uint32_t put_str(uint8_t *o, uint32_t room, const char *s)
{
	uint32_t n = 0;
	while (s[n])
		n++;
	if (n + 1 > room)
		return 0;
	efi_memcpy(o, s, n + 1);
	return n + 1;
}

static uint32_t put_dec(char *buf, uint64_t v)
{
	char tmp[24];
	uint32_t n = 0, k = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		buf[k++] = tmp[--n];
	buf[k] = 0;
	return k;
}

uint32_t nb_tftp_rrq(uint8_t *out, uint32_t cap, const char *file, uint32_t blksize, bool tsize)
{
	if (cap < 2 || !file[0])
		return 0;
	nb_put16(out, TFTP_RRQ);
	uint32_t o = 2, n;
	char num[24];
	if (!(n = put_str(out + o, cap - o, file)))
		return 0;
	o += n;
	if (!(n = put_str(out + o, cap - o, "octet")))
		return 0;
	o += n;
	if (blksize) {
		put_dec(num, blksize);
		if (!(n = put_str(out + o, cap - o, "blksize")))
			return 0;
		o += n;
		if (!(n = put_str(out + o, cap - o, num)))
			return 0;
		o += n;
	}
	if (tsize) {
		if (!(n = put_str(out + o, cap - o, "tsize")))
			return 0;
		o += n;
		if (!(n = put_str(out + o, cap - o, "0")))
			return 0;
		o += n;
	}
	return o;
}

uint32_t nb_tftp_ack(uint8_t *out, uint32_t cap, uint16_t block)
{
	if (cap < 4)
		return 0;
	nb_put16(out, TFTP_ACK);
	nb_put16(out + 2, block);
	return 4;
}

uint32_t nb_tftp_error(uint8_t *out, uint32_t cap, uint16_t code, const char *msg)
{
	if (cap < 5)
		return 0;
	nb_put16(out, TFTP_ERROR);
	nb_put16(out + 2, code);
	uint32_t n = put_str(out + 4, cap - 4, msg);
	return n ? 4 + n : 0;
}

/* A NUL-terminated string at p[i..len): its length, or -1 when unterminated. */
static int32_t str_at(const uint8_t *p, uint32_t i, uint32_t len)
{
	for (uint32_t k = i; k < len; k++)
		if (!p[k])
			return (int32_t)(k - i);
	return -1;
}

static bool ieq(const uint8_t *a, int32_t n, const char *b)
{
	int32_t i = 0;
	for (; i < n && b[i]; i++) {
		uint8_t c = a[i];
		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c + 32);
		if (c != (uint8_t)b[i])
			return false;
	}
	return i == n && !b[i];
}

static int dec(const uint8_t *s, int32_t n, uint64_t *v)
{
	if (n < 1 || n > 19)
		return -1;
	*v = 0;
	for (int32_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return 0;
}

int nb_tftp_parse(const uint8_t *p, uint32_t len, struct nb_tftp *t)
{
	efi_memset(t, 0, sizeof(*t));
	if (len < 2)
		return -1;
	t->op = nb_be16(p);
	switch (t->op) {
	case TFTP_DATA:
		if (len < 4)
			return -1;
		t->block = nb_be16(p + 2);
		t->data = p + 4;
		t->len = len - 4;
		return 0;
	case TFTP_ACK:
		if (len < 4)
			return -1;
		t->block = nb_be16(p + 2);
		return 0;
	case TFTP_ERROR:
		if (len < 4)
			return -1;
		t->err = nb_be16(p + 2);
		opt_str(t->msg, sizeof(t->msg), p + 4, len - 4);
		return 0;
	case TFTP_OACK:
		for (uint32_t i = 2; i < len;) {
			int32_t kn = str_at(p, i, len);
			if (kn < 0)
				return -1;
			int32_t vn = str_at(p, i + (uint32_t)kn + 1, len);
			if (vn < 0)
				return -1;
			const uint8_t *k = p + i, *v = p + i + kn + 1;
			uint64_t x;
			if (ieq(k, kn, "blksize")) {
				if (dec(v, vn, &x) || x < 8 || x > 65464)
					return -1;
				t->blksize = (uint32_t)x;
				t->has_blksize = true;
			} else if (ieq(k, kn, "tsize")) {
				if (dec(v, vn, &x))
					return -1;
				t->tsize = x;
				t->has_tsize = true;
			}
			i += (uint32_t)kn + 1 + (uint32_t)vn + 1;
		}
		return 0;
	default:
		return -1;
	}
}
