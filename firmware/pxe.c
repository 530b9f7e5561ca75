/* PXE over IPv4 on every synthetic network adapter: EFI_PXE_BASE_CODE_PROTOCOL (DHCP with the PXE
 * options, TFTP for loaded images such as shim, the Mode that GRUB's efinet reads its configuration
 * from) and EFI_LOAD_FILE_PROTOCOL on the adapter's handle, which the boot manager's "EFI Network"
 * entries reach through LoadImage.
 *
 * A small IPv4 stack over the adapter's SNP: ARP (answered and cached), UDP, no fragments, no
 * routing beyond one default router. Everything is polled with bounded waits. The packet parsers
 * are guestlib/netboot_wire.c (unit-tested and fuzzed on the host). A failed boot attempt leaves a
 * sentence for the boot summary (fw_pxe_failure). With NetworkBootPreferredProtocol at IPv6 (or a
 * loader's Start(UseIpv6)), pxe6.c speaks IPv6 and DHCPv6 instead: UDP send and receive and DHCP go
 * there; TFTP, the protocol's other calls and LoadFile are shared.
 */
#include "net.h"
#include "storage.h"

#include "efi/efi_fmt.h"
#include "gen2vm/proto/efi_bs.h"
#include "netboot_wire.h"

#define PXE_DHCP_TIMEOUT_S 16u       /* Hyper-V's firmware gives up on DHCP after about as long */
#define PXE_DHCP_RESEND_US 4000000ull
#define PXE_ACK_TIMEOUT_US 4000000ull
#define PXE_TFTP_TIMEOUT_US 2000000ull
#define PXE_TFTP_RETRIES 5u
#define PXE_TFTP_BLKSIZE 1468u       /* fills a 1500-byte MTU: 20 IP + 8 UDP + 4 TFTP */
#define PXE_ARP_ENTRIES 8u
#define PXE_DNS_TRIES 3
#define PXE_DNS_TIMEOUT_US 2000000ull
#define PXE_FILE_MAX (1024ull << 20) /* a boot file larger than this is refused */

struct pxe_dev {
	EFI_PXE_BASE_CODE_PROTOCOL pxe;
	EFI_LOAD_FILE_PROTOCOL lf;
	EFI_PXE_BASE_CODE_MODE *mode; /* 10 KiB: allocated */
	struct fw_net_dev *nd;
	EFI_SIMPLE_NETWORK_PROTOCOL *snp;
	uint8_t mac[6], ip[4], mask[4], router[4];
	uint8_t server[16];          /* IPv4: the first 4 bytes */
	bool configured, has_router, has_dns;
	uint8_t dns[4];              /* DHCP option 6 */
	char bootfile[NB_BOOTFILE_MAX];
	struct {
		uint8_t ip[4], mac[6];
	} arp[PXE_ARP_ENTRIES];
	uint32_t arp_n, arp_next;
	uint16_t ip_id, port_next;
	uint8_t *file;               /* LoadFile's download, kept between its two calls */
	uint64_t file_size;
	struct pxe6 v6;              /* v6.on: Started for IPv6 */
};

static uint8_t pxe_rx[1600] __attribute__((aligned(8)));
static uint8_t pxe_tx[1600] __attribute__((aligned(8)));
static char pxe_why[160];
static const uint8_t ip_bcast[4] = { 255, 255, 255, 255 }, mac_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

const char *fw_pxe_failure(void)
{
	/* Taken once: the next entry's failure is its own. */
	static char taken[sizeof(pxe_why)];
	if (!pxe_why[0])
		return NULL;
	efi_memcpy(taken, pxe_why, sizeof(taken));
	pxe_why[0] = 0;
	return taken;
}

void fw_pxe_vfail(const char *fmt, va_list ap)
{
	efi_vsnprintf(pxe_why, sizeof(pxe_why), fmt, ap);
	fw_printf("network: %s\n", pxe_why);
}

void pxe_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fw_pxe_vfail(fmt, ap);
	va_end(ap);
}

/* Bytes of an address in the protocol the adapter was started with. */
static uint32_t pxe_alen(const struct pxe_dev *d)
{
	return d->v6.on ? 16 : 4;
}

bool fw_pxe_is_v6(const struct pxe_dev *d)
{
	return d->v6.on;
}

const char *fw_pxe_addr_text(const struct pxe_dev *d, const uint8_t *a)
{
	static char t[48];
	if (d->v6.on)
		nb_ip6_text(t, a);
	else
		efi_snprintf(t, sizeof(t), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	return t;
}

static struct pxe_dev *pxe_of_lf(EFI_LOAD_FILE_PROTOCOL *lf)
{
	return (struct pxe_dev *)((uint8_t *)lf - offsetof(struct pxe_dev, lf));
}

/* ---- link and IPv4 ---- */
static EFI_STATUS pxe_link_up(struct pxe_dev *d)
{
	EFI_SIMPLE_NETWORK_PROTOCOL *snp = d->snp;
	if (snp->Mode->State == EfiSimpleNetworkStopped && EFI_ERROR(snp->Start(snp)))
		return EFI_DEVICE_ERROR;
	if (snp->Mode->State == EfiSimpleNetworkStarted && EFI_ERROR(snp->Initialize(snp, 0, 0)))
		return EFI_DEVICE_ERROR;
	uint32_t want = EFI_SIMPLE_NETWORK_RECEIVE_UNICAST | EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST;
	if ((snp->Mode->ReceiveFilterSetting & want) != want &&
	    EFI_ERROR(snp->ReceiveFilters(snp, want, 0, 0, 0, NULL)))
		return EFI_DEVICE_ERROR;
	return EFI_SUCCESS;
}

static void arp_learn(struct pxe_dev *d, const uint8_t ip[4], const uint8_t mac[6])
{
	for (uint32_t i = 0; i < d->arp_n; i++)
		if (!efi_memcmp(d->arp[i].ip, ip, 4)) {
			efi_memcpy(d->arp[i].mac, mac, 6);
			return;
		}
	uint32_t i = d->arp_n < PXE_ARP_ENTRIES ? d->arp_n++ : d->arp_next++ % PXE_ARP_ENTRIES;
	efi_memcpy(d->arp[i].ip, ip, 4);
	efi_memcpy(d->arp[i].mac, mac, 6);
	EFI_PXE_BASE_CODE_MODE *m = d->mode;
	m->ArpCacheEntries = d->arp_n;
	efi_memset(&m->ArpCache[i], 0, sizeof(m->ArpCache[i]));
	efi_memcpy(m->ArpCache[i].IpAddr.v4, ip, 4);
	efi_memcpy(m->ArpCache[i].MacAddr.Addr, mac, 6);
}

static bool arp_lookup(struct pxe_dev *d, const uint8_t ip[4], uint8_t mac[6])
{
	for (uint32_t i = 0; i < d->arp_n; i++)
		if (!efi_memcmp(d->arp[i].ip, ip, 4)) {
			efi_memcpy(mac, d->arp[i].mac, 6);
			return true;
		}
	return false;
}

static EFI_STATUS pxe_tx_frame(struct pxe_dev *d, uint32_t len)
{
	EFI_STATUS s = d->snp->Transmit(d->snp, 0, len, pxe_tx, NULL, NULL, NULL);
	void *done;
	d->snp->GetStatus(d->snp, NULL, &done); /* collect the recycled buffer: it is ours again */
	return s;
}

/* Receives one frame into pxe_rx (ARP handled here). Returns true with a frame that is not ARP and its
 * size; *any says whether a frame was taken at all. */
static bool pxe_rx_frame(struct pxe_dev *d, uint32_t *size, bool *any)
{
	UINTN n = sizeof(pxe_rx);
	EFI_STATUS s = d->snp->Receive(d->snp, NULL, &n, pxe_rx, NULL, NULL, NULL);
	*any = s == EFI_SUCCESS;
	if (EFI_ERROR(s))
		return false;
	struct nb_arp a;
	if (!nb_arp_parse(pxe_rx, (uint32_t)n, &a)) {
		if (d->configured && !efi_memcmp(a.tpa, d->ip, 4)) {
			arp_learn(d, a.spa, a.sha);
			if (a.op == ARP_OP_REQUEST) {
				uint32_t k = nb_arp_build(pxe_tx, sizeof(pxe_tx), ARP_OP_REPLY, a.sha, d->mac, d->ip, a.sha, a.spa);
				pxe_tx_frame(d, k);
			}
		}
		return false;
	}
	*size = (uint32_t)n;
	return true;
}

/* Receives one frame. Returns true with a UDP datagram to port (0: any) and to us or broadcast in *u;
 * *any says whether a frame was taken at all. */
static bool pxe_rx_one(struct pxe_dev *d, uint16_t port, struct nb_udp *u, bool *any)
{
	if (d->v6.on)
		return fw_pxe6_rx(&d->v6, port, u, any);
	uint32_t size;
	if (!pxe_rx_frame(d, &size, any))
		return false;
	if (nb_udp4_parse(pxe_rx, size, u) || (port && u->dport != port))
		return false;
	return !d->configured || !efi_memcmp(u->dip, d->ip, 4) || !efi_memcmp(u->dip, ip_bcast, 4);
}

/* The end of a wait's round in which no frame came: false once end_us (fw_stor_now_us) has passed,
 * else true after a short pause, so an idle adapter is not polled, nor the clock read (an exit), flat
 * out. While frames come, the clock is not read at all. */
static bool pxe_idle(uint64_t end_us)
{
	if (fw_stor_now_us() >= end_us)
		return false;
	for (unsigned i = 0; i < 64; i++)
		__asm__ volatile("pause");
	return true;
}

/* Waits until a UDP datagram to port arrives (true) or until end (false). */
static bool pxe_wait_udp(struct pxe_dev *d, uint16_t port, uint64_t end, struct nb_udp *u)
{
	for (;;) {
		bool any;
		if (pxe_rx_one(d, port, u, &any))
			return true;
		if (!any && !pxe_idle(end))
			return false;
	}
}

static EFI_STATUS pxe_resolve(struct pxe_dev *d, const uint8_t ip[4], uint8_t mac[6])
{
	if (!efi_memcmp(ip, ip_bcast, 4)) {
		efi_memcpy(mac, mac_bcast, 6);
		return EFI_SUCCESS;
	}
	const uint8_t *hop = ip;
	for (int i = 0; i < 4; i++)
		if ((ip[i] & d->mask[i]) != (d->ip[i] & d->mask[i])) {
			if (!d->has_router)
				return EFI_NO_MAPPING;
			hop = d->router;
			break;
		}
	for (int tries = 0; tries < 4; tries++) {
		if (arp_lookup(d, hop, mac))
			return EFI_SUCCESS;
		static const uint8_t zero[6];
		uint32_t n = nb_arp_build(pxe_tx, sizeof(pxe_tx), ARP_OP_REQUEST, mac_bcast, d->mac, d->ip, zero, hop);
		pxe_tx_frame(d, n);
		uint64_t end = fw_stor_now_us() + 1000000;
		struct nb_udp u;
		while (fw_stor_now_us() < end && !arp_lookup(d, hop, mac)) {
			bool any;
			pxe_rx_one(d, 0, &u, &any);
		}
	}
	return arp_lookup(d, hop, mac) ? EFI_SUCCESS : EFI_NO_MAPPING;
}

static EFI_STATUS pxe_udp_send(struct pxe_dev *d, const uint8_t *dip, uint16_t sport, uint16_t dport,
			       const void *data, uint32_t len)
{
	if (d->v6.on)
		return fw_pxe6_udp_send(&d->v6, dip, sport, dport, data, len);
	uint8_t dmac[6];
	EFI_STATUS s = pxe_resolve(d, dip, dmac);
	if (EFI_ERROR(s))
		return s;
	static const uint8_t any[4];
	uint32_t n = nb_udp4_build(pxe_tx, sizeof(pxe_tx), dmac, d->mac, d->configured ? d->ip : any, dip, sport, dport,
				   data, len, d->ip_id++);
	return n ? pxe_tx_frame(d, n) : EFI_BAD_BUFFER_SIZE;
}

/* ---- TCP segments, for http.c ---- */
EFI_STATUS fw_pxe_tcp_send(struct pxe_dev *d, const uint8_t *dip, const struct nb_tcp_seg *seg, const void *data,
			   uint32_t len)
{
	if (d->v6.on)
		return fw_pxe6_tcp_send(&d->v6, dip, seg, data, len);
	uint8_t dmac[6];
	EFI_STATUS s = pxe_resolve(d, dip, dmac);
	if (EFI_ERROR(s))
		return s;
	uint32_t n = nb_tcp4_build(pxe_tx, sizeof(pxe_tx), dmac, d->mac, d->ip, dip, seg, data, len, d->ip_id++);
	return n ? pxe_tx_frame(d, n) : EFI_BAD_BUFFER_SIZE;
}

/* Receives one frame: true with a TCP segment from sip to one of our addresses and port in *t. */
static bool pxe_tcp_rx(struct pxe_dev *d, const uint8_t *sip, uint16_t port, struct nb_tcp *t, bool *any)
{
	uint32_t size;
	if (d->v6.on) {
		const uint8_t *f = fw_pxe6_rx_frame(&d->v6, &size, any);
		return f && !nb_tcp6_parse(f, size, t) && t->seg.dport == port && fw_pxe6_is_ours(&d->v6, t->dip) &&
		       !efi_memcmp(t->sip, sip, 16);
	}
	return pxe_rx_frame(d, &size, any) && !nb_tcp4_parse(pxe_rx, size, t) && t->seg.dport == port &&
	       !efi_memcmp(t->dip, d->ip, 4) && !efi_memcmp(t->sip, sip, 4);
}

bool fw_pxe_tcp_wait(struct pxe_dev *d, const uint8_t *sip, uint16_t port, uint64_t end_us, struct nb_tcp *t)
{
	for (;;) {
		bool any;
		if (pxe_tcp_rx(d, sip, port, t, &any))
			return true;
		if (!any && !pxe_idle(end_us))
			return false;
	}
}

EFI_STATUS fw_pxe_dns_resolve(struct pxe_dev *d, const char *name, uint8_t *addr)
{
	bool v6 = d->v6.on, have = v6 ? d->v6.has_dns : d->has_dns;
	const uint8_t *server = v6 ? d->v6.dns : d->dns;
	if (!have) {
		pxe_fail("DNS: %s is a host name, but the DHCP%s answer named no DNS server", name, v6 ? "v6" : "");
		return EFI_NOT_FOUND;
	}
	uint16_t qtype = v6 ? DNS_TYPE_AAAA : DNS_TYPE_A;
	static uint8_t msg[DNS_NAME_MAX + 32];
	uint16_t id = (uint16_t)((uint32_t)fw_time_100ns() * 2654435761u >> 16);
	uint32_t n = nb_dns_query(msg, sizeof(msg), id, name, qtype);
	if (!n) {
		pxe_fail("DNS: %s is not a host name the firmware can look up", name);
		return EFI_INVALID_PARAMETER;
	}
	uint16_t lport = fw_pxe_local_port(d);
	fw_host_event(FW_EV_LOG, "network boot: DNS %s %s from %s", v6 ? "AAAA" : "A", name, fw_pxe_addr_text(d, server));
	for (int tries = 0; tries < PXE_DNS_TRIES; tries++) {
		if (EFI_ERROR(pxe_udp_send(d, server, lport, DNS_PORT, msg, n))) {
			pxe_fail("DNS: the server %s does not answer %s", fw_pxe_addr_text(d, server),
				 v6 ? "neighbour solicitations" : "ARP");
			return EFI_NO_RESPONSE;
		}
		struct nb_udp u;
		uint64_t end = fw_stor_now_us() + PXE_DNS_TIMEOUT_US;
		while (pxe_wait_udp(d, lport, end, &u)) {
			if (u.sport != DNS_PORT || efi_memcmp(u.sip, server, pxe_alen(d)))
				continue;
			uint8_t rcode;
			int r = nb_dns_answer(u.data, u.len, id, qtype, addr, &rcode);
			if (!r)
				return EFI_SUCCESS;
			if (r > 0) {
				pxe_fail("DNS: %s: %s (from %s)", name, rcode == DNS_RCODE_NXDOMAIN ? "no such name" :
					 v6 ? "no IPv6 address (AAAA)" : "no IPv4 address (A)", fw_pxe_addr_text(d, server));
				return EFI_NOT_FOUND;
			}
			if (rcode) {
				pxe_fail("DNS: %s: the server %s answered with error %u", name, fw_pxe_addr_text(d, server),
					 rcode);
				return EFI_DEVICE_ERROR;
			}
		}
	}
	pxe_fail("DNS: no answer from %s for %s", fw_pxe_addr_text(d, server), name);
	return EFI_TIMEOUT;
}

uint16_t fw_pxe_local_port(struct pxe_dev *d)
{
	return (uint16_t)(49152 + (d->port_next++ % 16000));
}

/* ---- DHCPv4 ---- */
static void pxe_mode_addresses(struct pxe_dev *d)
{
	EFI_PXE_BASE_CODE_MODE *m = d->mode;
	efi_memset(&m->StationIp, 0, sizeof(m->StationIp));
	efi_memset(&m->SubnetMask, 0, sizeof(m->SubnetMask));
	efi_memcpy(m->StationIp.v4, d->ip, 4);
	efi_memcpy(m->SubnetMask.v4, d->mask, 4);
	m->RouteTableEntries = 0;
	if (d->has_router) {
		EFI_PXE_BASE_CODE_ROUTE_ENTRY *r = &m->RouteTable[0];
		efi_memset(r, 0, sizeof(*r));
		efi_memcpy(r->GwAddr.v4, d->router, 4);
		m->RouteTableEntries = 1;
	}
}

static void pxe_uuid(uint8_t out[16])
{
	efi_memcpy(out, fw.ho->system_uuid, 16);
}

/* DISCOVER/OFFER/REQUEST/ACK. On success the adapter is configured and Mode has the packets. */
static EFI_STATUS pxe_dhcp(struct pxe_dev *d)
{
	EFI_STATUS s = pxe_link_up(d);
	if (EFI_ERROR(s)) {
		pxe_fail("the network adapter could not be started");
		return s;
	}
	d->configured = false;
	EFI_PXE_BASE_CODE_MODE *m = d->mode;
	m->DhcpAckReceived = m->DhcpDiscoverValid = 0;
	struct nb_dhcp4_req rq = { .type = DHCP_DISCOVER };
	efi_memcpy(rq.mac, d->mac, 6);
	pxe_uuid(rq.uuid);
	rq.xid = (uint32_t)fw_time_100ns() ^ (uint32_t)d->mac[5] << 24 ^ (uint32_t)d->mac[4] << 16;
	static uint8_t msg[400];
	uint64_t start = fw_stor_now_us(), end = start + PXE_DHCP_TIMEOUT_S * 1000000ull;
	struct nb_dhcp4_reply offer, r;
	bool have_offer = false;
	fw_host_event(FW_EV_LOG, "network boot: adapter %u: DHCP", d->nd->nr);
	while (!have_offer && fw_stor_now_us() < end) {
		rq.secs = (uint16_t)((fw_stor_now_us() - start) / 1000000);
		uint32_t n = nb_dhcp4_build(msg, sizeof(msg), &rq);
		if (EFI_ERROR(pxe_udp_send(d, ip_bcast, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, msg, n)))
			break;
		if (!m->DhcpDiscoverValid) {
			efi_memset(&m->DhcpDiscover, 0, sizeof(m->DhcpDiscover));
			efi_memcpy(m->DhcpDiscover.Raw, msg, n);
			m->DhcpDiscoverValid = 1;
		}
		uint64_t resend = fw_stor_now_us() + PXE_DHCP_RESEND_US;
		struct nb_udp u;
		while (!have_offer && pxe_wait_udp(d, DHCP_CLIENT_PORT, resend < end ? resend : end, &u))
			have_offer = !nb_dhcp4_parse(u.data, u.len, rq.xid, d->mac, &offer) && offer.type == DHCP_OFFER &&
				     offer.has_server_id;
	}
	if (!have_offer) {
		pxe_fail("no DHCP offer in %u s", PXE_DHCP_TIMEOUT_S);
		return EFI_TIMEOUT;
	}
	rq.type = DHCP_REQUEST;
	efi_memcpy(rq.req_ip, offer.yiaddr, 4);
	efi_memcpy(rq.server_id, offer.server_id, 4);
	for (int tries = 0; tries < 3; tries++) {
		uint32_t n = nb_dhcp4_build(msg, sizeof(msg), &rq);
		pxe_udp_send(d, ip_bcast, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, msg, n);
		uint64_t until = fw_stor_now_us() + PXE_ACK_TIMEOUT_US;
		struct nb_udp u;
		while (pxe_wait_udp(d, DHCP_CLIENT_PORT, until, &u)) {
			if (nb_dhcp4_parse(u.data, u.len, rq.xid, d->mac, &r) ||
			    (r.has_server_id && efi_memcmp(r.server_id, offer.server_id, 4)))
				continue;
			if (r.type == DHCP_NAK) {
				pxe_fail("the DHCP server refused the offered address (DHCPNAK)");
				return EFI_ACCESS_DENIED;
			}
			if (r.type != DHCP_ACK)
				continue;
			efi_memcpy(d->ip, r.yiaddr, 4);
			efi_memcpy(d->mask, r.has_mask ? r.mask : (const uint8_t[4]){ 255, 255, 255, 0 }, 4);
			d->has_router = r.has_router;
			efi_memcpy(d->router, r.router, 4);
			d->has_dns = r.has_dns;
			efi_memcpy(d->dns, r.dns, 4);
			/* The TFTP server: siaddr (next-server), else option 66 as an address, else the DHCP server. */
			static const uint8_t zero[4];
			efi_memcpy(d->server, efi_memcmp(r.siaddr, zero, 4) ? r.siaddr : offer.server_id, 4);
			efi_memcpy(d->bootfile, r.bootfile[0] ? r.bootfile : offer.bootfile, sizeof(d->bootfile));
			d->configured = true;
			efi_memset(&m->DhcpAck, 0, sizeof(m->DhcpAck));
			efi_memcpy(m->DhcpAck.Raw, u.data, u.len < sizeof(m->DhcpAck.Raw) ? u.len : sizeof(m->DhcpAck.Raw));
			m->DhcpAckReceived = 1;
			pxe_mode_addresses(d);
			fw_printf("network: adapter %u: address %u.%u.%u.%u, boot server %u.%u.%u.%u, boot file \"%s\"\n",
				  d->nd->nr, d->ip[0], d->ip[1], d->ip[2], d->ip[3], d->server[0], d->server[1], d->server[2],
				  d->server[3], d->bootfile);
			return EFI_SUCCESS;
		}
	}
	pxe_fail("no DHCP acknowledgement from %u.%u.%u.%u", offer.server_id[0], offer.server_id[1], offer.server_id[2],
		 offer.server_id[3]);
	return EFI_TIMEOUT;
}

/* DHCP in the protocol the adapter was started with. */
static EFI_STATUS pxe_dhcp_any(struct pxe_dev *d)
{
	if (!d->v6.on)
		return pxe_dhcp(d);
	EFI_STATUS s = fw_pxe6_dhcp(&d->v6, d->mode);
	d->configured = d->v6.configured;
	if (!EFI_ERROR(s)) {
		efi_memcpy(d->server, d->v6.server, 16);
		efi_memcpy(d->bootfile, d->v6.bootfile, sizeof(d->bootfile));
	}
	return s;
}

/* ---- TFTP ---- */
EFI_STATUS fw_net_sink_put(struct fw_net_sink *k, const uint8_t *data, uint32_t len)
{
	if (k->got + len > PXE_FILE_MAX)
		return EFI_BAD_BUFFER_SIZE;
	if (k->got + len > k->cap) {
		if (!k->grow) {
			k->got += len; /* keep counting: the caller learns the size it needs */
			return EFI_BUFFER_TOO_SMALL;
		}
		uint64_t ncap = k->cap ? k->cap * 2 : 1u << 20;
		while (ncap < k->got + len)
			ncap *= 2;
		uint8_t *nb = fw_alloc(ncap);
		if (!nb)
			return EFI_OUT_OF_RESOURCES;
		if (k->got)
			efi_memcpy(nb, k->buf, k->got);
		fw_free(k->buf);
		k->buf = nb;
		k->cap = ncap;
	}
	if (k->buf && len)
		efi_memcpy(k->buf + k->got, data, len);
	k->got += len;
	return EFI_SUCCESS;
}

static EFI_STATUS pxe_tftp_get(struct pxe_dev *d, const uint8_t *server, const char *file, struct fw_net_sink *k,
			       UINTN *blksize_io)
{
	static uint8_t msg[600];
	uint16_t lport = fw_pxe_local_port(d), sport = 0;
	uint32_t most = PXE_TFTP_BLKSIZE - (d->v6.on ? 20 : 0); /* IPv6's header is 20 bytes longer */
	uint32_t blksize = blksize_io && *blksize_io >= 512 && *blksize_io <= most ? (uint32_t)*blksize_io : most;
	uint32_t n = nb_tftp_rrq(msg, sizeof(msg), file, blksize, true);
	if (!n) {
		pxe_fail("TFTP: the file name \"%s\" is too long", file);
		return EFI_INVALID_PARAMETER;
	}
	uint8_t ack[4];
	uint32_t ack_len = n;
	const uint8_t *resend = msg; /* the RRQ until the server answers, then the last ACK */
	uint16_t last = 0;
	uint32_t bs = TFTP_DEFAULT_BLKSIZE, tries = 0;
	EFI_STATUS keep = EFI_SUCCESS;
	bool started = false;
	if (EFI_ERROR(pxe_udp_send(d, server, lport, TFTP_PORT, msg, n))) {
		pxe_fail("TFTP: the server %s does not answer %s", fw_pxe_addr_text(d, server),
			 d->v6.on ? "neighbour solicitations" : "ARP");
		return EFI_NO_RESPONSE;
	}
	for (;;) {
		struct nb_udp u;
		if (!pxe_wait_udp(d, lport, fw_stor_now_us() + PXE_TFTP_TIMEOUT_US, &u)) {
			if (++tries > PXE_TFTP_RETRIES) {
				if (!started)
					pxe_fail("TFTP: no answer from %s for %s", fw_pxe_addr_text(d, server), file);
				else
					pxe_fail("TFTP: %s: timed out after block %u", file, last);
				return EFI_TIMEOUT;
			}
			pxe_udp_send(d, server, lport, started ? sport : TFTP_PORT, resend, ack_len);
			continue;
		}
		if (efi_memcmp(u.sip, server, pxe_alen(d)) || (started && u.sport != sport))
			continue; /* another peer: not our transfer */
		struct nb_tftp t;
		if (nb_tftp_parse(u.data, u.len, &t))
			continue;
		if (!started) {
			started = true;
			sport = u.sport;
		}
		tries = 0;
		if (t.op == TFTP_ERROR) {
			d->mode->TftpErrorReceived = 1;
			d->mode->TftpError.ErrorCode = (uint8_t)t.err;
			efi_snprintf(d->mode->TftpError.ErrorString, sizeof(d->mode->TftpError.ErrorString), "%s", t.msg);
			if (t.err == TFTP_ERR_NOT_FOUND)
				pxe_fail("TFTP: file not found: %s", file);
			else if (t.err == TFTP_ERR_ACCESS)
				pxe_fail("TFTP: access denied: %s", file);
			else
				pxe_fail("TFTP: %s: server error %u (%s)", file, t.err, t.msg);
			return t.err == TFTP_ERR_NOT_FOUND ? EFI_NOT_FOUND : t.err == TFTP_ERR_ACCESS ? EFI_ACCESS_DENIED
												       : EFI_TFTP_ERROR;
		}
		if (t.op == TFTP_OACK && last == 0 && resend == msg) {
			if (t.has_blksize) {
				if (t.blksize > blksize)
					return EFI_PROTOCOL_ERROR;
				bs = t.blksize;
			}
			k->has_tsize = t.has_tsize;
			k->tsize = t.tsize;
			if (k->size_only && t.has_tsize) {
				uint32_t e = nb_tftp_error(msg, sizeof(msg), TFTP_ERR_OPTION, "size only");
				pxe_udp_send(d, server, lport, sport, msg, e);
				return EFI_SUCCESS;
			}
			if (t.has_tsize && t.tsize > PXE_FILE_MAX) {
				pxe_fail("TFTP: %s is too large (%llu bytes)", file, (unsigned long long)t.tsize);
				return EFI_BAD_BUFFER_SIZE;
			}
		} else if (t.op == TFTP_DATA) {
			if (t.block == (uint16_t)(last + 1)) {
				if (t.len > bs)
					return EFI_PROTOCOL_ERROR;
				EFI_STATUS s = fw_net_sink_put(k, t.data, t.len);
				if (s == EFI_BUFFER_TOO_SMALL)
					keep = s;
				else if (EFI_ERROR(s))
					return s;
				last = t.block;
			} else if (t.block != last) {
				continue; /* neither the next block nor a duplicate of the last: ignored */
			}
		} else {
			continue;
		}
		nb_tftp_ack(ack, sizeof(ack), last);
		resend = ack;
		ack_len = sizeof(ack);
		pxe_udp_send(d, server, lport, sport, ack, sizeof(ack));
		if (t.op == TFTP_DATA && t.len < bs && t.block == last) {
			if (blksize_io)
				*blksize_io = bs;
			return keep;
		}
	}
}

/* ---- EFI_PXE_BASE_CODE_PROTOCOL ---- */
static struct pxe_dev *pxe_of(EFI_PXE_BASE_CODE_PROTOCOL *p)
{
	return (struct pxe_dev *)p; /* pxe is the first member */
}

/* The prologue of the calls that need Start: This checked, *d set. */
static EFI_STATUS pxe_enter(EFI_PXE_BASE_CODE_PROTOCOL *this, struct pxe_dev **d)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	*d = pxe_of(this);
	return (*d)->mode->Started ? EFI_SUCCESS : EFI_NOT_STARTED;
}

static EFI_STATUS EFIAPI pxe_start(EFI_PXE_BASE_CODE_PROTOCOL *this, BOOLEAN ipv6)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of(this);
	if (d->mode->Started)
		return EFI_ALREADY_STARTED;
	EFI_STATUS s = pxe_link_up(d);
	if (!EFI_ERROR(s) && ipv6)
		s = fw_pxe6_start(&d->v6);
	if (EFI_ERROR(s))
		return s;
	if (ipv6 || d->mode->UsingIpv6)
		d->configured = false; /* another protocol's (or another start's) IPv6 address is not ours now */
	d->mode->UsingIpv6 = ipv6 ? 1 : 0;
	d->mode->Started = 1;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI pxe_stop(EFI_PXE_BASE_CODE_PROTOCOL *this)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	if (!pxe_of(this)->mode->Started)
		return EFI_NOT_STARTED;
	pxe_of(this)->mode->Started = 0;
	pxe_of(this)->v6.on = false;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI pxe_dhcp_call(EFI_PXE_BASE_CODE_PROTOCOL *this, BOOLEAN sort)
{
	if (!this)
		return EFI_INVALID_PARAMETER;
	if (!pxe_of(this)->mode->Started)
		return EFI_NOT_STARTED;
	return pxe_dhcp_any(pxe_of(this));
}

static EFI_STATUS EFIAPI pxe_discover(EFI_PXE_BASE_CODE_PROTOCOL *this, uint16_t type, uint16_t *layer, BOOLEAN bis,
				      void *info)
{
	return this && pxe_of(this)->mode->Started ? EFI_UNSUPPORTED : EFI_NOT_STARTED;
}

static EFI_STATUS EFIAPI pxe_mtftp(EFI_PXE_BASE_CODE_PROTOCOL *this, EFI_PXE_BASE_CODE_TFTP_OPCODE op, void *buf,
				   BOOLEAN overwrite, uint64_t *size, UINTN *blksize, EFI_IP_ADDRESS *server,
				   uint8_t *name, EFI_PXE_BASE_CODE_MTFTP_INFO *info, BOOLEAN dont_use_buffer)
{
	if (!this || !size || !server || !name)
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of(this);
	if (!d->mode->Started)
		return EFI_NOT_STARTED;
	if (!d->configured)
		return EFI_NO_MAPPING;
	char file[NB_BOOTFILE_MAX];
	size_t k = 0;
	for (; name[k] && k + 1 < sizeof(file); k++)
		file[k] = (char)name[k];
	file[k] = 0;
	if (name[k])
		return EFI_INVALID_PARAMETER;
	struct fw_net_sink sink = { 0 };
	EFI_STATUS s;
	d->mode->TftpErrorReceived = 0;
	switch (op) {
	case EFI_PXE_BASE_CODE_TFTP_GET_FILE_SIZE:
		sink.size_only = true;
		s = pxe_tftp_get(d, server->v6, file, &sink, blksize);
		if (EFI_ERROR(s) && s != EFI_BUFFER_TOO_SMALL)
			return s;
		*size = sink.has_tsize ? sink.tsize : sink.got;
		return EFI_SUCCESS;
	case EFI_PXE_BASE_CODE_TFTP_READ_FILE:
		if (!dont_use_buffer && !buf && *size)
			return EFI_INVALID_PARAMETER;
		sink.buf = dont_use_buffer ? NULL : buf;
		sink.cap = dont_use_buffer ? 0 : *size;
		s = pxe_tftp_get(d, server->v6, file, &sink, blksize);
		if (s == EFI_BUFFER_TOO_SMALL || (!EFI_ERROR(s) && dont_use_buffer)) {
			*size = sink.got;
			return dont_use_buffer ? EFI_SUCCESS : EFI_BUFFER_TOO_SMALL;
		}
		if (!EFI_ERROR(s))
			*size = sink.got;
		return s;
	default:
		return EFI_UNSUPPORTED;
	}
}

static EFI_STATUS EFIAPI pxe_udp_write(EFI_PXE_BASE_CODE_PROTOCOL *this, uint16_t flags, EFI_IP_ADDRESS *dip,
				       uint16_t *dport, EFI_IP_ADDRESS *gw, EFI_IP_ADDRESS *sip, uint16_t *sport,
				       UINTN *hsize, void *hdr, UINTN *size, void *buf)
{
	if (!this || !dip || !dport || !size || !buf || (hsize && *hsize && !hdr))
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of(this);
	if (!d->mode->Started)
		return EFI_NOT_STARTED;
	UINTN hl = hsize ? *hsize : 0;
	if (hl + *size > 1472u - (d->v6.on ? 20u : 0u)) /* one 1500-byte packet: IPv6's header is 20 bytes longer */
		return EFI_BAD_BUFFER_SIZE;
	static uint8_t payload[1472];
	if (hl)
		efi_memcpy(payload, hdr, hl);
	efi_memcpy(payload + hl, buf, *size);
	uint16_t from = sport && *sport ? *sport : (uint16_t)(49152 + (d->port_next++ % 16000));
	if (sport)
		*sport = from;
	return pxe_udp_send(d, dip->v6, from, *dport, payload, (uint32_t)(hl + *size));
}

#define PXE_OPFLAGS_ANY_SRC_IP 0x0001u
#define PXE_OPFLAGS_ANY_SRC_PORT 0x0002u
#define PXE_OPFLAGS_ANY_DEST_IP 0x0004u
#define PXE_OPFLAGS_ANY_DEST_PORT 0x0008u

static EFI_STATUS EFIAPI pxe_udp_read(EFI_PXE_BASE_CODE_PROTOCOL *this, uint16_t flags, EFI_IP_ADDRESS *dip,
				      uint16_t *dport, EFI_IP_ADDRESS *sip, uint16_t *sport, UINTN *hsize, void *hdr,
				      UINTN *size, void *buf)
{
	if (!this || !size || !buf || (hsize && *hsize && !hdr))
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of(this);
	if (!d->mode->Started)
		return EFI_NOT_STARTED;
	if (!(flags & PXE_OPFLAGS_ANY_DEST_PORT) && !dport)
		return EFI_INVALID_PARAMETER;
	/* One poll pass: UdpRead returns EFI_TIMEOUT when nothing for it is waiting (callers loop). */
	for (;;) {
		struct nb_udp u;
		bool any;
		bool hit = pxe_rx_one(d, (flags & PXE_OPFLAGS_ANY_DEST_PORT) ? 0 : *dport, &u, &any);
		if (!any)
			return EFI_TIMEOUT;
		if (!hit)
			continue;
		if (!(flags & PXE_OPFLAGS_ANY_SRC_IP) && sip && efi_memcmp(u.sip, sip->v6, pxe_alen(d)))
			continue;
		if (!(flags & PXE_OPFLAGS_ANY_SRC_PORT) && sport && u.sport != *sport)
			continue;
		UINTN hl = hsize ? *hsize : 0;
		if (u.len < hl)
			continue;
		if (u.len - hl > *size) {
			*size = u.len - hl;
			return EFI_BUFFER_TOO_SMALL;
		}
		if (hl)
			efi_memcpy(hdr, u.data, hl);
		efi_memcpy(buf, u.data + hl, u.len - hl);
		*size = u.len - hl;
		if (sip && (flags & PXE_OPFLAGS_ANY_SRC_IP))
			efi_memcpy(sip->v6, u.sip, pxe_alen(d));
		if (sport && (flags & PXE_OPFLAGS_ANY_SRC_PORT))
			*sport = u.sport;
		if (dip && (flags & PXE_OPFLAGS_ANY_DEST_IP))
			efi_memcpy(dip->v6, u.dip, pxe_alen(d));
		if (dport && (flags & PXE_OPFLAGS_ANY_DEST_PORT))
			*dport = u.dport;
		return EFI_SUCCESS;
	}
}

static EFI_STATUS EFIAPI pxe_set_ip_filter(EFI_PXE_BASE_CODE_PROTOCOL *this, EFI_PXE_BASE_CODE_IP_FILTER *f)
{
	if (!this || !f || f->IpCnt > EFI_PXE_BASE_CODE_MAX_IPCNT)
		return EFI_INVALID_PARAMETER;
	if (!pxe_of(this)->mode->Started)
		return EFI_NOT_STARTED;
	pxe_of(this)->mode->IpFilter = *f; /* our receive path already takes ours and broadcasts */
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI pxe_arp(EFI_PXE_BASE_CODE_PROTOCOL *this, EFI_IP_ADDRESS *ip, EFI_MAC_ADDRESS *mac)
{
	if (!this || !ip)
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of(this);
	if (!d->mode->Started)
		return EFI_NOT_STARTED;
	if (!d->configured)
		return EFI_NO_MAPPING;
	if (d->v6.on)
		return EFI_UNSUPPORTED; /* ARP is IPv4's: IPv6 neighbours are resolved as packets go */
	uint8_t m[6];
	EFI_STATUS s = pxe_resolve(d, ip->v4, m);
	if (!EFI_ERROR(s) && mac) {
		efi_memset(mac, 0, sizeof(*mac));
		efi_memcpy(mac->Addr, m, 6);
	}
	return EFI_ERROR(s) ? EFI_TIMEOUT : s;
}

static EFI_STATUS EFIAPI pxe_set_parameters(EFI_PXE_BASE_CODE_PROTOCOL *this, BOOLEAN *auto_arp, BOOLEAN *send_guid,
					    uint8_t *ttl, uint8_t *tos, BOOLEAN *callbacks)
{
	struct pxe_dev *d;
	EFI_STATUS s = pxe_enter(this, &d);
	if (EFI_ERROR(s))
		return s;
	EFI_PXE_BASE_CODE_MODE *m = d->mode;
	if (auto_arp)
		m->AutoArp = *auto_arp;
	if (send_guid)
		m->SendGUID = *send_guid;
	if (ttl)
		m->TTL = *ttl;
	if (tos)
		m->ToS = *tos;
	if (callbacks && *callbacks)
		return EFI_INVALID_PARAMETER; /* no callback protocol here */
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI pxe_set_station_ip(EFI_PXE_BASE_CODE_PROTOCOL *this, EFI_IP_ADDRESS *ip, EFI_IP_ADDRESS *mask)
{
	struct pxe_dev *d;
	EFI_STATUS s = pxe_enter(this, &d);
	if (EFI_ERROR(s))
		return s;
	if (d->v6.on) {
		/* IPv6: the address only (a prefix comes from the router's advertisement) */
		if (ip) {
			efi_memcpy(d->v6.ip, ip->v6, 16);
			d->v6.configured = d->configured = true;
			d->mode->StationIp = *ip;
		}
		return EFI_SUCCESS;
	}
	if (ip) {
		efi_memcpy(d->ip, ip->v4, 4);
		d->configured = true;
	}
	if (mask)
		efi_memcpy(d->mask, mask->v4, 4);
	pxe_mode_addresses(d);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI pxe_set_packets(EFI_PXE_BASE_CODE_PROTOCOL *this, BOOLEAN *dv, BOOLEAN *ar, BOOLEAN *pr,
					 BOOLEAN *pdv, BOOLEAN *prr, BOOLEAN *pbr, EFI_PXE_BASE_CODE_PACKET *disc,
					 EFI_PXE_BASE_CODE_PACKET *ack, EFI_PXE_BASE_CODE_PACKET *proxy,
					 EFI_PXE_BASE_CODE_PACKET *pxed, EFI_PXE_BASE_CODE_PACKET *pxer,
					 EFI_PXE_BASE_CODE_PACKET *pxeb)
{
	struct pxe_dev *d;
	EFI_STATUS s = pxe_enter(this, &d);
	if (EFI_ERROR(s))
		return s;
	EFI_PXE_BASE_CODE_MODE *m = d->mode;
	if (dv)
		m->DhcpDiscoverValid = *dv;
	if (ar)
		m->DhcpAckReceived = *ar;
	if (pr)
		m->ProxyOfferReceived = *pr;
	if (pdv)
		m->PxeDiscoverValid = *pdv;
	if (prr)
		m->PxeReplyReceived = *prr;
	if (pbr)
		m->PxeBisReplyReceived = *pbr;
	if (disc)
		m->DhcpDiscover = *disc;
	if (ack)
		m->DhcpAck = *ack;
	if (proxy)
		m->ProxyOffer = *proxy;
	if (pxed)
		m->PxeDiscover = *pxed;
	if (pxer)
		m->PxeReply = *pxer;
	if (pxeb)
		m->PxeBisReply = *pxeb;
	return EFI_SUCCESS;
}

/* ---- LoadFile: the boot file from DHCP, over TFTP ---- */
static EFI_STATUS EFIAPI pxe_load_file(EFI_LOAD_FILE_PROTOCOL *this, EFI_DEVICE_PATH_PROTOCOL *path, BOOLEAN boot,
				       UINTN *size, void *buf)
{
	if (!this || !size)
		return EFI_INVALID_PARAMETER;
	struct pxe_dev *d = pxe_of_lf(this);
	if (path && path->Type != END_DEVICE_PATH_TYPE)
		return EFI_NOT_FOUND; /* a file below the adapter: this is not a file system */
	if (!d->file) {
		/* First call: DHCP, then the whole file (one download serves both calls). */
		pxe_why[0] = 0;
		bool v6 = fw_pxe6_preferred();
		if (d->mode->Started && d->v6.on != v6)
			pxe_stop(&d->pxe); /* started by a loader in the other protocol: ours is the preferred one */
		if (!d->mode->Started && EFI_ERROR(pxe_start(&d->pxe, v6))) {
			pxe_fail("the network adapter could not be started");
			return EFI_DEVICE_ERROR;
		}
		EFI_STATUS s = pxe_dhcp_any(d);
		if (EFI_ERROR(s))
			return s;
		if (!d->bootfile[0]) {
			pxe_fail("the DHCP answer names no boot file (DHCP option 67 or the BOOTP file field)");
			return EFI_NOT_FOUND;
		}
		struct fw_net_sink sink = { .grow = true };
		if (fw_http_is_url(d->bootfile)) {
			/* HTTP boot: the DHCP answer gave a URL */
			fw_host_event(FW_EV_LOG, "network boot: HTTP %s", d->bootfile);
			s = fw_http_get(d, d->bootfile, &sink);
		} else {
			fw_host_event(FW_EV_LOG, "network boot: TFTP %s %s", fw_pxe_addr_text(d, d->server), d->bootfile);
			s = pxe_tftp_get(d, d->server, d->bootfile, &sink, NULL);
		}
		if (EFI_ERROR(s)) {
			fw_free(sink.buf);
			return s;
		}
		if (!sink.got) {
			fw_free(sink.buf);
			pxe_fail("%s: %s is empty", fw_http_is_url(d->bootfile) ? "HTTP" : "TFTP", d->bootfile);
			return EFI_LOAD_ERROR;
		}
		d->file = sink.buf;
		d->file_size = sink.got;
		fw_printf("network: adapter %u: %s, %llu bytes\n", d->nd->nr, d->bootfile, (unsigned long long)sink.got);
	}
	if (!buf || *size < d->file_size) {
		*size = d->file_size;
		return EFI_BUFFER_TOO_SMALL;
	}
	efi_memcpy(buf, d->file, d->file_size);
	*size = d->file_size;
	fw_free(d->file);
	d->file = NULL;
	return EFI_SUCCESS;
}

uint32_t fw_pxe_init(void)
{
	uint32_t n = 0;
	for (struct fw_net_dev *nd = fw_net_devices(); nd; nd = nd->next) {
		struct pxe_dev *d = fw_stor_zalloc(sizeof(*d));
		EFI_PXE_BASE_CODE_MODE *m = fw_stor_zalloc(sizeof(*m));
		if (!d || !m) {
			fw_stor_free(d);
			fw_stor_free(m);
			break;
		}
		d->nd = nd;
		d->snp = nd->snp;
		d->mode = m;
		efi_memcpy(d->mac, nd->mac, 6);
		d->v6.snp = nd->snp;
		d->v6.nr = nd->nr;
		efi_memcpy(d->v6.mac, nd->mac, 6);
		m->Ipv6Available = m->Ipv6Supported = 1;
		m->AutoArp = 1;
		m->TTL = 64;
		d->pxe = (EFI_PXE_BASE_CODE_PROTOCOL){
			.Revision = EFI_PXE_BASE_CODE_PROTOCOL_REVISION, .Start = pxe_start, .Stop = pxe_stop,
			.Dhcp = pxe_dhcp_call, .Discover = pxe_discover, .Mtftp = pxe_mtftp, .UdpWrite = pxe_udp_write,
			.UdpRead = pxe_udp_read, .SetIpFilter = pxe_set_ip_filter, .Arp = pxe_arp,
			.SetParameters = pxe_set_parameters, .SetStationIp = pxe_set_station_ip,
			.SetPackets = pxe_set_packets, .Mode = m,
		};
		d->lf.LoadFile = pxe_load_file;
		static const EFI_GUID pxe_guid = EFI_PXE_BASE_CODE_PROTOCOL_GUID, lf_guid = EFI_LOAD_FILE_PROTOCOL_GUID;
		const EFI_GUID *guids[2] = { &pxe_guid, &lf_guid };
		void *ifaces[2] = { &d->pxe, &d->lf };
		EFI_HANDLE h = nd->handle;
		EFI_STATUS s = fw_stor_install(&h, 2, guids, ifaces);
		if (EFI_ERROR(s)) {
			fw_printf("network: adapter %u: PXE install failed (0x%llx)\n", nd->nr, (unsigned long long)s);
			continue;
		}
		n++;
	}
	return n;
}
