/* PXE over IPv6 on a synthetic network adapter (chosen by NetworkBootPreferredProtocol, Hyper-V's
 * Set-VMFirmware -NetworkBootPreferredProtocol): the link-local address from the MAC (EUI-64),
 * neighbour discovery (answering solicitations for our addresses, resolving neighbours, taking a
 * Router Advertisement's router and prefix), and DHCPv6 with the PXE options whose boot-file URL
 * (RFC 5970) names the TFTP server and file. pxe.c keeps the protocol interfaces, TFTP and LoadFile
 * and calls in here for what differs by IP version: UDP send and receive and the DHCP exchange.
 *
 * Duplicate address detection is not done: the firmware's addresses live for one boot attempt, and
 * a DHCPv6 server hands out addresses it knows to be free. Extension headers and fragments are not
 * followed (nothing a boot server sends needs them). The parsers are guestlib/netboot6_wire.c.
 */
#include "net.h"
#include "storage.h"

#include "efi/efi_fmt.h"
#include "gen2vm/proto/fw_var.h"

#define PXE6_DHCP_TIMEOUT_S 16u /* as long as the IPv4 client waits for an offer */
#define PXE6_SOLICIT_FIRST_US 1000000ull /* RFC 8415 7.6 SOL_TIMEOUT, doubling to ... */
#define PXE6_SOLICIT_MAX_US 4000000ull   /* ... a cap that fits a 16 s attempt */
#define PXE6_REPLY_TIMEOUT_US 4000000ull
#define PXE6_NS_TIMEOUT_US 1000000ull    /* RFC 4861 RETRANS_TIMER */
#define PXE6_DAD_US 1000000ull           /* RetransTimer once (DupAddrDetectTransmits 1) */
#define PXE6_RTR_SOLICITATIONS 3u       /* RFC 4861 10: MAX_RTR_SOLICITATIONS */
#define PXE6_RA_WAIT_US 1000000ull       /* for the answer to our router solicitation */

static uint8_t pxe6_rx_buf[1600] __attribute__((aligned(8)));
static uint8_t pxe6_tx_buf[1600] __attribute__((aligned(8)));
static const uint8_t all_routers[16] = { 0xff, 0x02, [15] = 2 };
static const uint8_t all_dhcp[16] = { 0xff, 0x02, [13] = 1, [15] = 2 }; /* All_DHCP_Relay_Agents_and_Servers */
static const uint8_t ip6_zero[16];

bool fw_pxe6_preferred(void)
{
	EFI_GUID g = GEN2VM_VENDOR_GUID;
	uint8_t v = 0;
	UINTN size = sizeof(v);
	if (!fw.rt || !fw.rt->GetVariable ||
	    EFI_ERROR(fw.rt->GetVariable((CHAR16 *)u"NetworkBootPreferredProtocol", &g, NULL, &size, &v)) || size != 1)
		return false; /* unset: IPv4, Hyper-V's default */
	return v == 6;
}

static EFI_STATUS tx_frame(struct pxe6 *s, uint32_t len)
{
	if (!len)
		return EFI_BAD_BUFFER_SIZE;
	EFI_STATUS st = s->snp->Transmit(s->snp, 0, len, pxe6_tx_buf, NULL, NULL, NULL);
	void *done;
	s->snp->GetStatus(s->snp, NULL, &done); /* collect the recycled buffer: it is ours again */
	return st;
}

bool fw_pxe6_is_ours(const struct pxe6 *s, const uint8_t ip[16])
{
	return !efi_memcmp(ip, s->ll, 16) || (s->configured && !efi_memcmp(ip, s->ip, 16));
}

/* The source for a destination: link-local for link-local and multicast peers, else ours. */
static const uint8_t *src_for(const struct pxe6 *s, const uint8_t dip[16])
{
	return s->configured && !nb_ip6_is_linklocal(dip) && !nb_ip6_is_mcast(dip) ? s->ip : s->ll;
}

static void neigh_learn(struct pxe6 *s, const uint8_t ip[16], const uint8_t mac[6])
{
	for (uint32_t i = 0; i < s->neigh_n; i++)
		if (!efi_memcmp(s->neigh[i].ip, ip, 16)) {
			efi_memcpy(s->neigh[i].mac, mac, 6);
			return;
		}
	uint32_t i = s->neigh_n < PXE6_NEIGH_ENTRIES ? s->neigh_n++ : s->neigh_next++ % PXE6_NEIGH_ENTRIES;
	efi_memcpy(s->neigh[i].ip, ip, 16);
	efi_memcpy(s->neigh[i].mac, mac, 6);
}

static bool neigh_lookup(const struct pxe6 *s, const uint8_t ip[16], uint8_t mac[6])
{
	for (uint32_t i = 0; i < s->neigh_n; i++)
		if (!efi_memcmp(s->neigh[i].ip, ip, 16)) {
			efi_memcpy(mac, s->neigh[i].mac, 6);
			return true;
		}
	return false;
}

static EFI_STATUS send_icmp6(struct pxe6 *s, const uint8_t dmac[6], const uint8_t sip[16], const uint8_t dip[16],
			     const uint8_t *msg, uint32_t len)
{
	return tx_frame(s, nb_icmp6_build(pxe6_tx_buf, sizeof(pxe6_tx_buf), dmac, s->mac, sip, dip, msg, len));
}

/* Neighbour discovery: answers solicitations for our addresses, learns from advertisements and
 * solicitations with a source link-layer address, and takes a Router Advertisement's router and
 * its first prefix. */
static void nd_input(struct pxe6 *s, const struct nb_nd *nd)
{
	uint8_t msg[64];
	/* RFC 4862 5.4.3/5.4.4: while an address is tentative, an advertisement for it, or another
	 * node's probe for it (a solicitation from ::), means someone else has it. */
	if (s->dad_active && !efi_memcmp(nd->target, s->tentative, 16) &&
	    (nd->type == ICMPV6_NEIGH_ADVERT ||
	     (nd->type == ICMPV6_NEIGH_SOLICIT && !efi_memcmp(nd->sip, ip6_zero, 16) && efi_memcmp(nd->smac, s->mac, 6)))) {
		s->dad_conflict = true;
		efi_memcpy(s->dad_mac, nd->type == ICMPV6_NEIGH_ADVERT && nd->has_lladdr ? nd->lladdr : nd->smac, 6);
		return;
	}
	switch (nd->type) {
	case ICMPV6_NEIGH_SOLICIT:
		if (!fw_pxe6_is_ours(s, nd->target))
			return;
		if (efi_memcmp(nd->sip, ip6_zero, 16)) {
			if (nd->has_lladdr)
				neigh_learn(s, nd->sip, nd->lladdr);
			/* RFC 4861 7.2.4: solicited NA to the solicitor, at the address it asked from */
			uint32_t n = nb_nd_na(msg, sizeof(msg), nd->target, ND_NA_SOLICITED | ND_NA_OVERRIDE, s->mac);
			send_icmp6(s, nd->has_lladdr ? nd->lladdr : nd->smac, nd->target, nd->sip, msg, n);
		}
		return;
	case ICMPV6_NEIGH_ADVERT:
		if (nd->has_lladdr || !nb_ip6_is_mcast(nd->dip))
			neigh_learn(s, nd->target, nd->has_lladdr ? nd->lladdr : nd->smac);
		return;
	case ICMPV6_ROUTER_ADVERT:
		if (nd->has_lladdr)
			neigh_learn(s, nd->sip, nd->lladdr);
		if (!s->ra_seen) {
			s->ra_seen = true;
			s->ra_flags = nd->ra_flags;
		}
		if (nd->router_lifetime && !s->has_router) {
			efi_memcpy(s->router, nd->sip, 16);
			s->has_router = true;
		}
		if (nd->has_prefix && (nd->prefix_flags & ND_OPT_PREFIX_ONLINK) && !s->has_prefix) {
			efi_memcpy(s->prefix, nd->prefix, 16);
			s->prefix_len = nd->prefix_len;
			s->has_prefix = true;
			/* RFC 4862 5.5.3: an autonomous /64 is one an address can be made in */
			s->prefix_auto = (nd->prefix_flags & ND_OPT_PREFIX_AUTO) && nd->prefix_len == 64;
		}
		return;
	default:
		return;
	}
}

const uint8_t *fw_pxe6_rx_frame(struct pxe6 *s, uint32_t *size, bool *any)
{
	UINTN n = sizeof(pxe6_rx_buf);
	EFI_STATUS st = s->snp->Receive(s->snp, NULL, &n, pxe6_rx_buf, NULL, NULL, NULL);
	*any = st == EFI_SUCCESS;
	if (EFI_ERROR(st))
		return NULL;
	struct nb_nd nd;
	if (!nb_nd_parse(pxe6_rx_buf, (uint32_t)n, &nd)) {
		nd_input(s, &nd);
		return NULL;
	}
	*size = (uint32_t)n;
	return pxe6_rx_buf;
}

bool fw_pxe6_rx(struct pxe6 *s, uint16_t port, struct nb_udp *u, bool *any)
{
	uint32_t size;
	const uint8_t *f = fw_pxe6_rx_frame(s, &size, any);
	if (!f || nb_udp6_parse(f, size, u) || (port && u->dport != port))
		return false;
	return fw_pxe6_is_ours(s, u->dip) || nb_ip6_is_mcast(u->dip);
}

static bool on_link(const struct pxe6 *s, const uint8_t ip[16])
{
	if (nb_ip6_is_linklocal(ip) || !s->has_router)
		return true; /* no router: every peer is a neighbour (RFC 4861 5.2 leaves this to us) */
	if (!s->has_prefix)
		return false;
	uint32_t bits = s->prefix_len;
	for (uint32_t i = 0; i < 16 && bits; i++) {
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
		if ((ip[i] ^ s->prefix[i]) & mask)
			return false;
		bits = bits >= 8 ? bits - 8 : 0;
	}
	return true;
}

static EFI_STATUS resolve(struct pxe6 *s, const uint8_t dip[16], uint8_t mac[6])
{
	if (nb_ip6_is_mcast(dip)) {
		nb_ip6_mcast_mac(mac, dip);
		return EFI_SUCCESS;
	}
	const uint8_t *hop = on_link(s, dip) ? dip : s->router;
	for (int tries = 0; tries < 3; tries++) {
		if (neigh_lookup(s, hop, mac))
			return EFI_SUCCESS;
		uint8_t msg[64], sol[16], smac[6];
		nb_ip6_solicited(sol, hop);
		nb_ip6_mcast_mac(smac, sol);
		send_icmp6(s, smac, src_for(s, hop), sol, msg, nb_nd_ns(msg, sizeof(msg), hop, s->mac));
		uint64_t end = fw_stor_now_us() + PXE6_NS_TIMEOUT_US;
		while (fw_stor_now_us() < end && !neigh_lookup(s, hop, mac)) {
			struct nb_udp u;
			bool any;
			fw_pxe6_rx(s, 0, &u, &any);
		}
	}
	return neigh_lookup(s, hop, mac) ? EFI_SUCCESS : EFI_NO_MAPPING;
}

EFI_STATUS fw_pxe6_udp_send(struct pxe6 *s, const uint8_t dip[16], uint16_t sport, uint16_t dport, const void *data,
			    uint32_t len)
{
	uint8_t dmac[6];
	EFI_STATUS st = resolve(s, dip, dmac);
	if (EFI_ERROR(st))
		return st;
	return tx_frame(s, nb_udp6_build(pxe6_tx_buf, sizeof(pxe6_tx_buf), dmac, s->mac, src_for(s, dip), dip, sport,
					 dport, data, len));
}

EFI_STATUS fw_pxe6_tcp_send(struct pxe6 *s, const uint8_t dip[16], const struct nb_tcp_seg *seg, const void *data,
			    uint32_t len)
{
	uint8_t dmac[6];
	EFI_STATUS st = resolve(s, dip, dmac);
	if (EFI_ERROR(st))
		return st;
	return tx_frame(s, nb_tcp6_build(pxe6_tx_buf, sizeof(pxe6_tx_buf), dmac, s->mac, src_for(s, dip), dip, seg, data,
					 len));
}

EFI_STATUS fw_pxe6_start(struct pxe6 *s)
{
	nb_ip6_linklocal(s->ll, s->mac);
	s->configured = s->has_router = s->has_prefix = s->ra_seen = s->prefix_auto = false;
	s->ra_flags = 0;
	s->neigh_n = s->neigh_next = 0;
	/* Neighbour solicitations come to solicited-node groups and advertisements to all-nodes: take
	 * every multicast frame (the adapter has no IPv6 group list of its own to keep). */
	EFI_SIMPLE_NETWORK_PROTOCOL *snp = s->snp;
	if (!(snp->Mode->ReceiveFilterSetting & EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST) &&
	    EFI_ERROR(snp->ReceiveFilters(snp, EFI_SIMPLE_NETWORK_RECEIVE_PROMISCUOUS_MULTICAST, 0, 0, 0, NULL)))
		return EFI_DEVICE_ERROR;
	s->on = true;
	return EFI_SUCCESS;
}

/* Takes frames (neighbour discovery handled, anything else dropped) until nd_input sets *done or
 * until end. */
static void nd_listen(struct pxe6 *s, uint64_t end, const bool *done)
{
	while (!*done && fw_stor_now_us() < end) {
		struct nb_udp u;
		bool any;
		fw_pxe6_rx(s, 0, &u, &any);
	}
}

/* Duplicate address detection (RFC 4862 5.4, DupAddrDetectTransmits 1): a probe for addr from ::
 * to its solicited-node group, then RetransTimer (1 s) of listening. True when someone else has it
 * (s->dad_mac says who). */
static bool dad_conflict(struct pxe6 *s, const uint8_t addr[16])
{
	uint8_t msg[64], sol[16], smac[6];
	efi_memcpy(s->tentative, addr, 16);
	s->dad_conflict = false;
	s->dad_active = true;
	nb_ip6_solicited(sol, addr);
	nb_ip6_mcast_mac(smac, sol);
	send_icmp6(s, smac, ip6_zero, sol, msg, nb_nd_ns(msg, sizeof(msg), addr, NULL));
	nd_listen(s, fw_stor_now_us() + PXE6_DAD_US, &s->dad_conflict);
	s->dad_active = false;
	return s->dad_conflict;
}

/* Waits for a DHCPv6 message to our client port until end; true with it parsed into *r. */
static bool dhcp6_wait(struct pxe6 *s, uint64_t end, const struct nb_dhcp6_req *rq, struct nb_dhcp6_reply *r,
		       struct nb_udp *u)
{
	while (fw_stor_now_us() < end) {
		bool any;
		if (fw_pxe6_rx(s, DHCP6_CLIENT_PORT, u, &any) && u->sport == DHCP6_SERVER_PORT &&
		    !nb_dhcp6_parse(u->data, u->len, rq->xid, rq->uuid, r))
			return true;
		if (!any)
			for (unsigned i = 0; i < 64; i++)
				__asm__ volatile("pause");
	}
	return false;
}

static void mode_packet(EFI_PXE_BASE_CODE_PACKET *p, const void *data, uint32_t len)
{
	efi_memset(p, 0, sizeof(*p));
	efi_memcpy(p->Raw, data, len < sizeof(p->Raw) ? len : sizeof(p->Raw));
}

/* What a Reply configures (r, the datagram u; adv: the Advertise before it, whose options stand in
 * for ones the Reply lacks, or NULL): the address (probed by DAD first), the DNS server, Mode's
 * StationIp, SubnetMask and DhcpAck, and the boot file from the boot-file URL. */
static EFI_STATUS dhcp6_take(struct pxe6 *s, EFI_PXE_BASE_CODE_MODE *m, const uint8_t addr[16],
			     const struct nb_dhcp6_reply *r, const struct nb_dhcp6_reply *adv, const struct nb_udp *u)
{
	char a[48];
	nb_ip6_text(a, addr);
	/* The Reply's bytes first: u's data lies in the receive buffer, which the probe's frames reuse. */
	mode_packet(&m->DhcpAck, u->data, u->len);
	if (dad_conflict(s, addr)) {
		pxe_fail("the %s address %s is in use by %02x:%02x:%02x:%02x:%02x:%02x (duplicate address detection)",
			 adv ? "DHCPv6" : "autoconfigured (SLAAC)", a, s->dad_mac[0], s->dad_mac[1], s->dad_mac[2],
			 s->dad_mac[3], s->dad_mac[4], s->dad_mac[5]);
		return EFI_NO_MAPPING;
	}
	efi_memcpy(s->ip, addr, 16);
	s->configured = true;
	s->has_dns = r->has_dns || (adv && adv->has_dns);
	efi_memcpy(s->dns, r->has_dns || !adv ? r->dns : adv->dns, 16);
	m->DhcpAckReceived = 1;
	efi_memset(&m->StationIp, 0, sizeof(m->StationIp));
	efi_memcpy(m->StationIp.v6, s->ip, 16);
	/* An IA_NA address carries no prefix length: the RA's, else /128 (RFC 8415 21.6) */
	efi_memset(&m->SubnetMask, 0, sizeof(m->SubnetMask));
	for (uint32_t b = 0, plen = s->has_prefix ? s->prefix_len : 128; b < plen; b++)
		m->SubnetMask.v6[b / 8] |= (uint8_t)(0x80 >> (b % 8));
	const char *url = r->bootfile_url[0] || !adv ? r->bootfile_url : adv->bootfile_url;
	if (!url[0] && (r->url_too_long || (adv && adv->url_too_long))) {
		pxe_fail("the DHCPv6 boot-file URL is longer than %u bytes", NB_BOOTFILE_MAX - 1);
		return EFI_UNSUPPORTED;
	}
	if (!url[0]) {
		pxe_fail("the DHCPv6 answer names no boot file (option 59, the boot-file URL)");
		return EFI_NOT_FOUND;
	}
	static struct nb_http_url hu;
	static char path[NB_BOOTFILE_MAX];
	if (nb_http_url_parse(url, &hu, path, sizeof(path)) == 0) {
		/* HTTP boot over IPv6 (UEFI 2.10 24.7.2): the URL is the boot file (pxe.c, http.c). */
		efi_memcpy(s->server, hu.ip, 16);
		efi_memcpy(s->bootfile, url, sizeof(s->bootfile)); /* both NB_BOOTFILE_MAX, NUL-terminated */
	} else if (nb_tftp6_url(url, s->server, s->bootfile, sizeof(s->bootfile))) {
		pxe_fail("the DHCPv6 boot-file URL is not tftp://[IPv6 address]/path or http://HOST[:port]/path: %.80s",
			 url);
		return EFI_UNSUPPORTED;
	}
	char srv[48];
	nb_ip6_text(srv, s->server);
	fw_printf("network: adapter %u: address %s%s, boot server %s, boot file \"%s\"\n", s->nr, a,
		  adv ? "" : " (SLAAC)", srv, s->bootfile);
	return EFI_SUCCESS;
}

/* Sends rq (its elapsed time counted from start) to all DHCPv6 servers, the first one sent as Mode's
 * DhcpDiscover. Returns when to send it again (*rt doubles up to PXE6_SOLICIT_MAX_US, RFC 8415
 * 15), 0 when it cannot be sent. */
static uint64_t dhcp6_send(struct pxe6 *s, EFI_PXE_BASE_CODE_MODE *m, struct nb_dhcp6_req *rq, uint64_t start,
			   uint64_t *rt)
{
	static uint8_t msg[600];
	uint64_t el = (fw_stor_now_us() - start) / 10000;
	rq->elapsed = (uint16_t)(el > 0xffff ? 0xffff : el);
	uint32_t n = nb_dhcp6_build(msg, sizeof(msg), rq);
	if (EFI_ERROR(fw_pxe6_udp_send(s, all_dhcp, DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, msg, n)))
		return 0;
	if (!m->DhcpDiscoverValid) {
		mode_packet(&m->DhcpDiscover, msg, n);
		m->DhcpDiscoverValid = 1;
	}
	uint64_t resend = fw_stor_now_us() + *rt;
	*rt = *rt * 2 > PXE6_SOLICIT_MAX_US ? PXE6_SOLICIT_MAX_US : *rt * 2;
	return resend;
}

/* Stateless (RFC 8415 6.1, the router's M flag off): our address from the advertised /64 prefix,
 * then an Information-Request for the boot-file URL and DNS server. */
static EFI_STATUS dhcp6_stateless(struct pxe6 *s, EFI_PXE_BASE_CODE_MODE *m, struct nb_dhcp6_req *rq,
				  uint64_t start)
{
	uint8_t addr[16];
	nb_ip6_slaac(addr, s->prefix, s->mac);
	char ll[48];
	nb_ip6_text(ll, s->ll);
	fw_host_event(FW_EV_LOG, "network boot: adapter %u: SLAAC and DHCPv6 information request from %s", s->nr, ll);
	rq->type = DHCP6_INFORMATION_REQUEST;
	rq->xid = (rq->xid + 1) & 0xffffff; /* a transaction of its own, after Solicits that went unanswered */
	struct nb_dhcp6_reply r;
	struct nb_udp u;
	uint64_t end = start + PXE6_DHCP_TIMEOUT_S * 1000000ull, rt = PXE6_SOLICIT_FIRST_US, resend;
	while (fw_stor_now_us() < end && (resend = dhcp6_send(s, m, rq, start, &rt)))
		while (dhcp6_wait(s, resend < end ? resend : end, rq, &r, &u))
			if (r.type == DHCP6_REPLY && r.status == DHCP6_STATUS_SUCCESS)
				return dhcp6_take(s, m, addr, &r, NULL, &u);
	pxe_fail("no DHCPv6 reply to the information request in %u s (the router's M flag is off: stateless)",
		 PXE6_DHCP_TIMEOUT_S);
	return EFI_TIMEOUT;
}

static void router_solicit(struct pxe6 *s)
{
	uint8_t msg[64], rsmac[6];
	nb_ip6_mcast_mac(rsmac, all_routers);
	send_icmp6(s, rsmac, s->ll, all_routers, msg, nb_nd_rs(msg, sizeof(msg), s->mac));
}

/* Whether the router said addresses are not managed (M off) and gave a prefix to make one in. */
static bool stateless(const struct pxe6 *s)
{
	return s->ra_seen && !(s->ra_flags & ND_RA_MANAGED) && s->prefix_auto;
}

EFI_STATUS fw_pxe6_dhcp(struct pxe6 *s, EFI_PXE_BASE_CODE_MODE *m)
{
	s->configured = false;
	s->ra_seen = false;
	m->DhcpAckReceived = m->DhcpDiscoverValid = 0;
	/* A router solicitation first: the advertisement gives the router, the on-link prefix and
	 * whether addresses come from DHCPv6 (M) or from the prefix (stateless). */
	router_solicit(s);
	uint32_t solicitations = 1;
	uint64_t start = fw_stor_now_us();
	nd_listen(s, start + PXE6_RA_WAIT_US, &s->ra_seen);

	struct nb_dhcp6_req rq = { .type = DHCP6_SOLICIT };
	efi_memcpy(rq.uuid, fw.ho->system_uuid, 16);
	rq.xid = ((uint32_t)fw_time_100ns() ^ (uint32_t)s->mac[5] << 16 ^ (uint32_t)s->mac[4] << 8) & 0xffffff;
	rq.iaid = nb_be32(s->mac + 2);
	if (stateless(s))
		return dhcp6_stateless(s, m, &rq, start);
	char ll[48];
	nb_ip6_text(ll, s->ll);
	struct nb_dhcp6_reply adv, r;
	struct nb_udp u;
	bool have_adv = false;
	uint64_t end = start + PXE6_DHCP_TIMEOUT_S * 1000000ull, rt = PXE6_SOLICIT_FIRST_US;
	fw_host_event(FW_EV_LOG, "network boot: adapter %u: DHCPv6 from %s", s->nr, ll);
	uint64_t resend;
	while (!have_adv && fw_stor_now_us() < end && (resend = dhcp6_send(s, m, &rq, start, &rt))) {
		while (!have_adv && dhcp6_wait(s, resend < end ? resend : end, &rq, &adv, &u))
			have_adv = adv.type == DHCP6_ADVERTISE && adv.status == DHCP6_STATUS_SUCCESS && adv.has_addr;
		/* A router may answer our solicitation late (RFC 4861 6.2.6: at most one advertisement
		 * every 3 s), or not at all (it was not ready): solicit again (RFC 4861 6.3.7, up to
		 * MAX_RTR_SOLICITATIONS), and once it says stateless, stop soliciting addresses nobody
		 * manages. */
		if (!s->ra_seen && solicitations < PXE6_RTR_SOLICITATIONS) {
			router_solicit(s);
			solicitations++;
		}
		if (!have_adv && stateless(s)) {
			m->DhcpDiscoverValid = 0;
			return dhcp6_stateless(s, m, &rq, start);
		}
	}
	if (!have_adv) {
		pxe_fail("no DHCPv6 advertise in %u s", PXE6_DHCP_TIMEOUT_S);
		return EFI_TIMEOUT;
	}
	rq.type = DHCP6_REQUEST;
	efi_memcpy(rq.server_id, adv.server_id, adv.server_id_len);
	rq.server_id_len = adv.server_id_len;
	efi_memcpy(rq.addr, adv.addr, 16);
	rq.has_addr = true;
	uint8_t msg[600];
	for (int tries = 0; tries < 3; tries++) {
		uint64_t el = (fw_stor_now_us() - start) / 10000;
		rq.elapsed = (uint16_t)(el > 0xffff ? 0xffff : el);
		uint32_t n = nb_dhcp6_build(msg, sizeof(msg), &rq);
		fw_pxe6_udp_send(s, all_dhcp, DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, msg, n);
		uint64_t until = fw_stor_now_us() + PXE6_REPLY_TIMEOUT_US;
		while (dhcp6_wait(s, until, &rq, &r, &u)) {
			if (r.type != DHCP6_REPLY || r.server_id_len != adv.server_id_len ||
			    efi_memcmp(r.server_id, adv.server_id, adv.server_id_len))
				continue;
			if (r.status != DHCP6_STATUS_SUCCESS || !r.has_addr) {
				pxe_fail("the DHCPv6 server gave no address (status %u)", r.status);
				return EFI_ACCESS_DENIED;
			}
			return dhcp6_take(s, m, r.addr, &r, &adv, &u);
		}
	}
	pxe_fail("no DHCPv6 reply to the request");
	return EFI_TIMEOUT;
}
