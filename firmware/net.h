/* The firmware's network stack: netvsc.c binds every synthetic network adapter (NVSP/RNDIS over
 * VMBus, guestlib/netvsc_client for the wire formats) and offers it as one handle with
 * EFI_SIMPLE_NETWORK_PROTOCOL and the device path VenHw(FW_VMBUS_DP_GUID, instance)/MAC(mac, 1).
 */
#ifndef GEN2VM_FIRMWARE_NET_H
#define GEN2VM_FIRMWARE_NET_H

#include "fw.h"

#include <stdarg.h>

#include "gen2vm/proto/efi_net.h"
#include "netboot_wire.h"

/* One adapter, as the boot manager and the PXE code see it. */
struct fw_net_dev {
	EFI_HANDLE handle;
	EFI_SIMPLE_NETWORK_PROTOCOL *snp;
	EFI_DEVICE_PATH_PROTOCOL *path; /* VenHw(...)/MAC(...) */
	uint8_t mac[6];
	uint32_t nr;                    /* adapter number in offer order, from 0 */
	struct fw_net_dev *next;
};

/* Binds every netvsc offer (after fw_vmbus_init). Returns the number of adapters. */
uint32_t fw_netvsc_init(void);
/* The adapters in offer order. */
struct fw_net_dev *fw_net_devices(void);

/* ---- pxe.c ---- */
/* Installs EFI_PXE_BASE_CODE_PROTOCOL and EFI_LOAD_FILE_PROTOCOL (PXE over IPv4: DHCP, then the boot
 * file over TFTP) on every adapter's handle. Returns the count. */
uint32_t fw_pxe_init(void);
/* Why the last network boot attempt (LoadFile on an adapter) failed, in words for the boot summary
 * ("no DHCP offer in 16 s", "TFTP: file not found: NAME"), or NULL when it did not fail. Reading it
 * clears it. */
const char *fw_pxe_failure(void);
/* Sets the boot summary's sentence for this attempt (and prints it). */
void pxe_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- pxe6.c: the IPv6 half of an adapter's PXE base code ---- */
#define PXE6_NEIGH_ENTRIES 8u
struct pxe6 {
	EFI_SIMPLE_NETWORK_PROTOCOL *snp;
	uint8_t mac[6];
	uint32_t nr;
	bool on;                       /* started for IPv6 (Mode.UsingIpv6) */
	bool configured;               /* DHCPv6 gave an address */
	uint8_t ll[16], ip[16];        /* link-local (EUI-64) and the DHCPv6 address */
	uint8_t router[16], prefix[16];/* from a Router Advertisement */
	uint8_t prefix_len;
	bool has_router, has_prefix;
	bool ra_seen, prefix_auto;     /* a Router Advertisement came; its prefix is autonomous /64 */
	uint8_t ra_flags;              /* its M and O flags */
	uint8_t server[16];            /* the boot file URL's server */
	uint8_t dns[16];               /* DHCPv6 option 23 */
	bool has_dns;
	uint8_t tentative[16];         /* the address duplicate address detection is probing */
	bool dad_active, dad_conflict;
	uint8_t dad_mac[6];            /* who has it */
	char bootfile[NB_BOOTFILE_MAX];/* its path */
	struct {
		uint8_t ip[16], mac[6];
	} neigh[PXE6_NEIGH_ENTRIES];
	uint32_t neigh_n, neigh_next;
};
/* Whether NetworkBootPreferredProtocol (gen2vm's variable, set by gen2vm firmware set
 * --network-boot-preferred-protocol) asks for IPv6. */
bool fw_pxe6_preferred(void);
/* Starts IPv6 on the adapter: the link-local address and multicast reception. */
EFI_STATUS fw_pxe6_start(struct pxe6 *s);
/* Router solicitation, then DHCPv6 Solicit/Advertise/Request/Reply with the boot-file URL; Mode's
 * StationIp, DhcpDiscover (our Solicit) and DhcpAck (the server's Reply) are filled. A failure
 * leaves its sentence (pxe_fail). */
EFI_STATUS fw_pxe6_dhcp(struct pxe6 *s, EFI_PXE_BASE_CODE_MODE *m);
EFI_STATUS fw_pxe6_udp_send(struct pxe6 *s, const uint8_t dip[16], uint16_t sport, uint16_t dport, const void *data,
			    uint32_t len);
/* Receives one frame (ND handled here). Returns true with a UDP datagram to port (0: any) and to one
 * of our addresses (or multicast) in *u; *any says whether a frame was taken at all. */
bool fw_pxe6_rx(struct pxe6 *s, uint16_t port, struct nb_udp *u, bool *any);
/* Receives one frame (ND handled here): the frame (in a buffer the next receive reuses) when it is
 * not ND, with its size; NULL otherwise. *any says whether a frame was taken at all. */
const uint8_t *fw_pxe6_rx_frame(struct pxe6 *s, uint32_t *size, bool *any);
/* Sends one TCP segment from our address (the next hop resolved by neighbour discovery). */
EFI_STATUS fw_pxe6_tcp_send(struct pxe6 *s, const uint8_t dip[16], const struct nb_tcp_seg *seg, const void *data,
			    uint32_t len);
/* Whether ip is one of our addresses (link-local or the DHCPv6 one). */
bool fw_pxe6_is_ours(const struct pxe6 *s, const uint8_t ip[16]);

/* A download's destination: a caller's buffer (cap bytes), or one that grows (fw_alloc'd, the caller
 * frees buf) with grow set. */
struct fw_net_sink {
	uint8_t *buf;      /* NULL: count only (or grow, with grow set) */
	uint64_t cap, got;
	bool grow;         /* reallocate buf as data comes (LoadFile without tsize) */
	bool size_only;    /* TFTP: stop after the OACK's tsize */
	uint64_t tsize;
	bool has_tsize;
};
/* Appends len bytes. EFI_BUFFER_TOO_SMALL (still counting) when a fixed buffer is full,
 * EFI_BAD_BUFFER_SIZE beyond the largest boot file, EFI_OUT_OF_RESOURCES. */
EFI_STATUS fw_net_sink_put(struct fw_net_sink *k, const uint8_t *data, uint32_t len);

/* The primitives http.c builds TCP on, for an adapter whose DHCP (v4 or v6) has completed; addresses
 * are in the adapter's protocol (4 or 16 bytes). */
struct pxe_dev;
/* Whether the adapter was started for IPv6. */
bool fw_pxe_is_v6(const struct pxe_dev *d);
/* An address of the adapter's protocol as text (a static buffer: the next call reuses it). */
const char *fw_pxe_addr_text(const struct pxe_dev *d, const uint8_t *a);
/* Sends one TCP segment (the next hop resolved by ARP or neighbour discovery). */
EFI_STATUS fw_pxe_tcp_send(struct pxe_dev *d, const uint8_t *dip, const struct nb_tcp_seg *seg, const void *data,
			   uint32_t len);
/* Waits until end_us (fw_time_100ns / 10) for a TCP segment from sip to our address and port: true
 * with it in *t (its data points into a buffer the next receive reuses). */
bool fw_pxe_tcp_wait(struct pxe_dev *d, const uint8_t *sip, uint16_t port, uint64_t end_us, struct nb_tcp *t);
/* The address (4 or 16 bytes, the adapter's protocol) of a host name, from the DNS server the DHCP
 * answer named (A or AAAA): EFI_SUCCESS, or an error with the boot summary's sentence set. */
EFI_STATUS fw_pxe_dns_resolve(struct pxe_dev *d, const char *name, uint8_t *addr);
/* A local port for a new transfer (49152 and up, a different one each time). */
uint16_t fw_pxe_local_port(struct pxe_dev *d);
/* Sets the sentence fw_pxe_failure returns (and prints it). */
void fw_pxe_vfail(const char *fmt, va_list ap);

/* ---- http.c ---- */
/* Whether a DHCP boot file is a URL for HTTP boot (http:// or https://). */
bool fw_http_is_url(const char *bootfile);
/* Downloads url (http://A.B.C.D[:port]/path, or http://[IPv6][:port]/path on an adapter started for
 * IPv6) over TCP on adapter d into k: EFI_SUCCESS, or an error
 * with the reason for the boot summary set (fw_pxe_failure): an unusable URL, no connection, an HTTP
 * status other than 200, a transfer that stops. */
EFI_STATUS fw_http_get(struct pxe_dev *d, const char *url, struct fw_net_sink *k);

#endif
