/* HTTP boot (UEFI 2.10 24.7, the part a DHCP answer with a URL needs): when the boot file of a PXE
 * DHCP answer is "http://A.B.C.D[:port]/path" (DHCPv4) or the DHCPv6 boot-file URL is
 * "http://[IPv6][:port]/path", LoadFile fetches it with one HTTP/1.1 GET over a TCP connection of our
 * own instead of TFTP.
 *
 * The TCP here is a receiver's: one connection at a time, our request is one segment, data is taken
 * in order only (anything else is answered with a duplicate ACK and the server retransmits), every
 * segment is acknowledged, the window is fixed because each segment is consumed as it arrives. Our
 * SYN and request are retransmitted with a doubling timeout; a server silent for HTTP_IDLE_S ends the
 * attempt. Segments and HTTP headers are parsed by guestlib/netboot_wire.c (unit-tested, fuzzed).
 */
#include "net.h"
#include "storage.h"

#include "gen2vm/proto/efi_bs.h"

#define HTTP_SYN_TRIES 4u
#define HTTP_RTO_US 1000000ull
#define HTTP_IDLE_S 15u
#define HTTP_WINDOW 32768u
#define HTTP_MSS 1460u
#define HTTP_HEADER_MAX 8192u

struct http_conn {
	struct pxe_dev *d;
	uint8_t ip[16]; /* 4 bytes used over IPv4 */
	uint16_t lport, rport;
	uint32_t snd_nxt, rcv_nxt;
};

static void http_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void http_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fw_pxe_vfail(fmt, ap);
	va_end(ap);
}

bool fw_http_is_url(const char *bootfile)
{
	static struct nb_http_url u;
	static char path[NB_BOOTFILE_MAX];
	return nb_http_url_parse(bootfile, &u, path, sizeof(path)) != -1;
}

static EFI_STATUS http_send(struct http_conn *c, uint32_t seq, uint8_t flags, const void *data, uint32_t len)
{
	struct nb_tcp_seg s = { .sport = c->lport, .dport = c->rport, .seq = seq, .ack = c->rcv_nxt, .flags = flags,
				 .window = HTTP_WINDOW, .mss = flags & TCP_SYN ? HTTP_MSS : 0 };
	return fw_pxe_tcp_send(c->d, c->ip, &s, data, len);
}

/* The three-way handshake: our SYN (retransmitted), the server's SYN-ACK, our ACK. */
static EFI_STATUS http_connect(struct http_conn *c, const char *url)
{
	uint32_t iss = (uint32_t)fw_time_100ns() * 2654435761u;
	for (uint32_t tries = 0; tries < HTTP_SYN_TRIES; tries++) {
		c->rcv_nxt = 0;
		if (EFI_ERROR(http_send(c, iss, TCP_SYN, NULL, 0))) {
			http_fail("HTTP: no route to %s (no %s answer) for %s", fw_pxe_addr_text(c->d, c->ip),
				  fw_pxe_is_v6(c->d) ? "neighbour" : "ARP", url);
			return EFI_NO_MAPPING;
		}
		uint64_t end = fw_stor_now_us() + (HTTP_RTO_US << tries);
		struct nb_tcp t;
		while (fw_pxe_tcp_wait(c->d, c->ip, c->lport, end, &t)) {
			if (t.seg.sport != c->rport || !(t.seg.flags & TCP_ACK) || t.seg.ack != iss + 1)
				continue;
			if (t.seg.flags & TCP_RST) {
				http_fail("HTTP: %s refused the connection to port %u (%s)", fw_pxe_addr_text(c->d, c->ip),
					  c->rport, url);
				return EFI_NO_RESPONSE;
			}
			if (!(t.seg.flags & TCP_SYN))
				continue;
			c->rcv_nxt = t.seg.seq + 1;
			c->snd_nxt = iss + 1;
			return http_send(c, c->snd_nxt, TCP_ACK, NULL, 0);
		}
	}
	http_fail("HTTP: no answer from %s port %u in %u s (%s)", fw_pxe_addr_text(c->d, c->ip), c->rport,
		  (unsigned)(((1u << HTTP_SYN_TRIES) - 1) * (HTTP_RTO_US / 1000000)), url);
	return EFI_TIMEOUT;
}

/* What the response's header says about the body: EFI_SUCCESS to take it. */
static EFI_STATUS http_check(const struct nb_http_resp *r, const char *url)
{
	if (r->status == 404) {
		http_fail("HTTP: file not found: %s (404 %s)", url, r->reason);
		return EFI_NOT_FOUND;
	}
	if (r->status != 200) {
		http_fail("HTTP: %s answered %u %s", url, r->status, r->reason);
		return r->status == 401 || r->status == 403 ? EFI_ACCESS_DENIED : EFI_LOAD_ERROR;
	}
	if (r->chunked) {
		http_fail("HTTP: %s came with a chunked transfer encoding, which the firmware does not take (serve "
			  "the file with a Content-Length)", url);
		return EFI_UNSUPPORTED;
	}
	return EFI_SUCCESS;
}

EFI_STATUS fw_http_get(struct pxe_dev *d, const char *url, struct fw_net_sink *k)
{
	static char path[NB_BOOTFILE_MAX];
	static uint8_t req[NB_BOOTFILE_MAX + NB_HTTP_HOST_MAX + 128], hdr[HTTP_HEADER_MAX];
	static struct nb_http_url u;
	struct http_conn c = { .d = d };
	if (nb_http_url_parse(url, &u, path, sizeof(path))) {
		http_fail("HTTP: the firmware cannot use the URL %s (it takes http://HOST[:port]/path with an IPv4 "
			  "address, an [IPv6] one or a host name; no https)", url);
		return EFI_INVALID_PARAMETER;
	}
	EFI_STATUS s;
	if (u.name[0]) {
		if (EFI_ERROR(s = fw_pxe_dns_resolve(d, u.name, c.ip)))
			return s;
	} else if (u.v6 != fw_pxe_is_v6(d)) {
		http_fail("HTTP: %s names an %s address, but the adapter was configured over %s", url,
			  u.v6 ? "IPv6" : "IPv4", u.v6 ? "DHCPv4" : "DHCPv6");
		return EFI_INVALID_PARAMETER;
	} else {
		efi_memcpy(c.ip, u.ip, sizeof(c.ip));
	}
	c.rport = u.port;
	uint32_t req_len = nb_http_get_build(req, sizeof(req), u.host, path);
	if (!req_len) { /* cannot happen with the URL's limits; said rather than sent empty */
		http_fail("HTTP: the request for %s does not fit the firmware's buffer", url);
		return EFI_BAD_BUFFER_SIZE;
	}
	c.lport = fw_pxe_local_port(d);
	s = http_connect(&c, url);
	if (EFI_ERROR(s))
		return s;
	uint32_t req_seq = c.snd_nxt;
	if (EFI_ERROR(s = http_send(&c, req_seq, TCP_PSH | TCP_ACK, req, req_len)))
		return s;
	c.snd_nxt += req_len;
	struct nb_http_resp resp;
	uint32_t hlen = 0;
	bool have_header = false, fin = false;
	uint64_t last_rx = fw_stor_now_us(), rto = HTTP_RTO_US;
	while (!fin && !(have_header && resp.has_length && k->got >= resp.length)) {
		struct nb_tcp t;
		if (!fw_pxe_tcp_wait(d, c.ip, c.lport, fw_stor_now_us() + rto, &t)) {
			if (fw_stor_now_us() - last_rx >= HTTP_IDLE_S * 1000000ull) {
				http_fail("HTTP: %s stopped sending after %llu bytes", url, (unsigned long long)k->got);
				s = EFI_TIMEOUT;
				goto reset;
			}
			/* Our request or our last ACK may be lost: say both again. */
			if (!have_header && !hlen)
				http_send(&c, req_seq, TCP_PSH | TCP_ACK, req, req_len);
			else
				http_send(&c, c.snd_nxt, TCP_ACK, NULL, 0);
			rto = rto < 4 * HTTP_RTO_US ? rto * 2 : rto;
			continue;
		}
		if (t.seg.sport != c.rport)
			continue;
		if (t.seg.flags & TCP_RST) {
			http_fail("HTTP: the server reset the connection after %llu bytes of %s", (unsigned long long)k->got,
				  url);
			return EFI_ABORTED;
		}
		if (t.seg.flags & TCP_SYN) { /* our ACK of its SYN was lost */
			http_send(&c, c.snd_nxt, TCP_ACK, NULL, 0);
			continue;
		}
		if (!t.len && !(t.seg.flags & TCP_FIN))
			continue; /* a bare ACK */
		if (t.seg.seq != c.rcv_nxt) {
			http_send(&c, c.snd_nxt, TCP_ACK, NULL, 0); /* out of order or again: where we are */
			continue;
		}
		last_rx = fw_stor_now_us();
		rto = HTTP_RTO_US;
		const uint8_t *data = t.data;
		uint32_t len = t.len;
		c.rcv_nxt += t.len + (t.seg.flags & TCP_FIN ? 1 : 0);
		fin = t.seg.flags & TCP_FIN;
		if (!have_header) {
			uint32_t take = len < HTTP_HEADER_MAX - hlen ? len : HTTP_HEADER_MAX - hlen;
			efi_memcpy(hdr + hlen, data, take);
			hlen += take;
			int r = nb_http_resp_parse(hdr, hlen, &resp);
			if (r < 0 || (r > 0 && (fin || hlen == HTTP_HEADER_MAX))) {
				http_fail("HTTP: %s: the server's answer is not an HTTP/1.x response", url);
				s = EFI_PROTOCOL_ERROR;
				goto reset;
			}
			if (r > 0) {
				http_send(&c, c.snd_nxt, TCP_ACK, NULL, 0);
				continue;
			}
			have_header = true;
			if (EFI_ERROR(s = http_check(&resp, url)))
				goto reset;
			/* the body's first bytes came with the header: they are past it in hdr, and data
			 * holds what did not fit there */
			uint32_t in_hdr = hlen - resp.header_len;
			if (in_hdr && EFI_ERROR(s = fw_net_sink_put(k, hdr + resp.header_len, in_hdr)))
				goto too_big;
			data += take;
			len -= take;
		}
		if (len && EFI_ERROR(s = fw_net_sink_put(k, data, len)))
			goto too_big;
		http_send(&c, c.snd_nxt, TCP_ACK, NULL, 0);
	}
	if (resp.has_length && k->got != resp.length) {
		http_fail("HTTP: %s ended after %llu of %llu bytes", url, (unsigned long long)k->got,
			  (unsigned long long)resp.length);
		s = EFI_END_OF_FILE;
		goto reset;
	}
	/* Done: our FIN (the server's, if it came, is acknowledged in it); nobody waits for the rest. */
	http_send(&c, c.snd_nxt, TCP_FIN | TCP_ACK, NULL, 0);
	return EFI_SUCCESS;
too_big:
	if (s == EFI_BAD_BUFFER_SIZE)
		http_fail("HTTP: %s is larger than the firmware takes for a boot file", url);
	else
		http_fail("HTTP: out of memory for %s", url);
reset:
	http_send(&c, c.snd_nxt, TCP_RST | TCP_ACK, NULL, 0);
	return s;
}
