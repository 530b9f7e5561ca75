/* The firmware's Simple Network Protocol as a network loader uses it (GRUB's efinet, iPXE's snpnet):
 * it finds the adapter's handle and its VenHw()/MAC() device path, starts and initialises SNP,
 * resolves the host (10.214.0.1) with ARP, answers the host's ARP for us (10.214.0.77), sends a
 * full-size UDP datagram to port 7 and expects the same bytes back from the test's echo server,
 * then shuts SNP down and checks the state rules. One PASS/FAIL line per check on the debug console
 * and the failure count through the debug exit port. */
#include "efiapp.h"

#include "efi/efi_devpath.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/efi_net.h"
#include "netboot_wire.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

static EFI_GUID snp_guid = EFI_SIMPLE_NETWORK_PROTOCOL_GUID;
static EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static const uint8_t host_ip[4] = { 10, 214, 0, 1 }, my_ip[4] = { 10, 214, 0, 77 };
static uint8_t my_mac[6], host_mac[6];
static bool have_host;
static unsigned passed, failed;
static EFI_SIMPLE_NETWORK_PROTOCOL *snp;
static uint8_t rx[1600], tx[1600];
#define PAYLOAD 1472u /* a 1514-byte frame */

static void check(bool ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(bool ok, const char *name, const char *fmt, ...)
{
	char buf[160];
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	app_printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, buf);
	if (ok)
		passed++;
	else
		failed++;
}

/* An ARP packet after a 14-byte header the SNP fills in (HeaderSize 14). */
static EFI_STATUS arp_send(uint16_t op, const uint8_t *tha, const uint8_t *tpa)
{
	EFI_MAC_ADDRESS dst = { { 0 } };
	if (op == 1)
		efi_memset(dst.Addr, 0xff, 6);
	else
		efi_memcpy(dst.Addr, tha, 6);
	uint16_t proto = 0x0806;
	uint8_t *a = tx + 14;
	static const uint8_t hdr[6] = { 0, 1, 8, 0, 6, 4 };
	efi_memcpy(a, hdr, 6);
	nb_put16(a + 6, op);
	efi_memcpy(a + 8, my_mac, 6);
	efi_memcpy(a + 14, my_ip, 4);
	efi_memcpy(a + 18, tha, 6);
	efi_memcpy(a + 24, tpa, 4);
	return snp->Transmit(snp, 14, 14 + 28, tx, NULL, &dst, &proto);
}

/* Handles ARP (answers requests for us, learns the host); returns the UDP payload of a datagram from
 * the host's port 7 (and its length), or NULL. */
static const uint8_t *frame_in(const uint8_t *f, UINTN len, uint32_t *plen)
{
	if (len >= 42 && nb_be16(f + 12) == 0x0806) {
		const uint8_t *a = f + 14;
		if (nb_be16(a) == 1 && nb_be16(a + 2) == 0x0800 && !efi_memcmp(a + 24, my_ip, 4)) {
			if (nb_be16(a + 6) == 1)
				arp_send(2, a + 8, a + 14);
			else if (nb_be16(a + 6) == 2 && !efi_memcmp(a + 14, host_ip, 4)) {
				efi_memcpy(host_mac, a + 8, 6);
				have_host = true;
			}
		}
		return NULL;
	}
	if (len < 42 || nb_be16(f + 12) != 0x0800 || f[14] != 0x45 || f[23] != 17 || efi_memcmp(f + 30, my_ip, 4))
		return NULL;
	uint32_t tot = nb_be16(f + 16);
	if (tot < 28 || tot > len - 14 || nb_be16(f + 34) != 7)
		return NULL;
	*plen = tot - 28;
	return f + 42;
}

/* Receives for up to ms milliseconds; returns when want() is satisfied. */
static bool pump(uint32_t ms, bool (*want)(const uint8_t *, uint32_t), uint32_t *frames)
{
	for (uint32_t t = 0; t < ms; t++) {
		for (;;) {
			UINTN size = sizeof(rx), hs = 0;
			EFI_STATUS s = snp->Receive(snp, &hs, &size, rx, NULL, NULL, NULL);
			if (s == EFI_NOT_READY)
				break;
			if (EFI_ERROR(s))
				return false;
			(*frames)++;
			uint32_t plen = 0;
			const uint8_t *p = frame_in(rx, size, &plen);
			if (want(p, plen))
				return true;
		}
		app_bs->Stall(1000);
	}
	return false;
}

static bool want_host(const uint8_t *p, uint32_t len)
{
	return have_host;
}

static bool want_echo(const uint8_t *p, uint32_t len)
{
	if (!p || len != PAYLOAD)
		return false;
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 7 + 3))
			return false;
	return true;
}

static EFI_STATUS udp_send(void)
{
	uint8_t *f = tx;
	efi_memcpy(f, host_mac, 6);
	efi_memcpy(f + 6, my_mac, 6);
	nb_put16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	efi_memset(ip, 0, 20);
	ip[0] = 0x45;
	nb_put16(ip + 2, (uint16_t)(28 + PAYLOAD));
	ip[8] = 64;
	ip[9] = 17;
	efi_memcpy(ip + 12, my_ip, 4);
	efi_memcpy(ip + 16, host_ip, 4);
	nb_put16(ip + 10, nb_csum(ip, 20, 0));
	uint8_t *u = ip + 20;
	nb_put16(u, 7);
	nb_put16(u + 2, 7);
	nb_put16(u + 4, (uint16_t)(8 + PAYLOAD));
	nb_put16(u + 6, 0); /* no checksum (IPv4 allows it) */
	for (uint32_t i = 0; i < PAYLOAD; i++)
		u[8 + i] = (uint8_t)(i * 7 + 3);
	return snp->Transmit(snp, 0, 14 + 28 + PAYLOAD, tx, NULL, NULL, NULL);
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	EFI_HANDLE *hs = NULL;
	UINTN n = 0;
	app_bs->LocateHandleBuffer(ByProtocol, &snp_guid, NULL, &n, &hs);
	check(n >= 1, "handles", "%u SNP handle(s)", (unsigned)n);
	if (!n) {
		app_exit_vm(failed);
		return EFI_NOT_FOUND;
	}
	EFI_DEVICE_PATH_PROTOCOL *dp = NULL;
	app_bs->HandleProtocol(hs[0], &dp_guid, (void **)&dp);
	app_bs->HandleProtocol(hs[0], &snp_guid, (void **)&snp);
	const MAC_ADDR_DEVICE_PATH *mn = dp ? (const void *)efi_dp_find(dp, MESSAGING_DEVICE_PATH, MSG_MAC_ADDR_DP) : NULL;
	bool vmbus_first = dp && dp->Type == HARDWARE_DEVICE_PATH && dp->SubType == HW_VENDOR_DP;
	check(mn && vmbus_first && efi_dp_node_len(&mn->Header) == sizeof(*mn) && mn->IfType == 1, "device_path",
	      "VenHw()/MAC() node %s", mn ? "present" : "missing");
	EFI_SIMPLE_NETWORK_MODE *m = snp->Mode;
	efi_memcpy(my_mac, m->CurrentAddress.Addr, 6);
	app_printf("snp_test: MAC %02x:%02x:%02x:%02x:%02x:%02x\n", my_mac[0], my_mac[1], my_mac[2], my_mac[3],
		   my_mac[4], my_mac[5]);
	check(m->State == EfiSimpleNetworkStopped && m->HwAddressSize == 6 && m->MediaHeaderSize == 14 &&
		      m->MaxPacketSize == 1500 && mn && !efi_memcmp(mn->MacAddress.Addr, my_mac, 6) &&
		      !efi_memcmp(m->PermanentAddress.Addr, my_mac, 6),
	      "mode", "state %u, header %u, max packet %u", m->State, m->MediaHeaderSize, m->MaxPacketSize);
	uint32_t irq;
	void *txb;
	check(snp->Receive(snp, NULL, &n, rx, NULL, NULL, NULL) == EFI_NOT_STARTED &&
		      snp->Initialize(snp, 0, 0) == EFI_NOT_STARTED,
	      "stopped_rules", "Receive and Initialize refused before Start");
	EFI_STATUS s1 = snp->Start(snp), s2 = snp->Start(snp), s3 = snp->Initialize(snp, 0, 0);
	EFI_STATUS s4 = snp->ReceiveFilters(snp, EFI_SIMPLE_NETWORK_RECEIVE_UNICAST | EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST,
					    0, 0, 0, NULL);
	check(!s1 && s2 == EFI_ALREADY_STARTED && !s3 && !s4 && m->State == EfiSimpleNetworkInitialized &&
		      m->ReceiveFilterSetting == (EFI_SIMPLE_NETWORK_RECEIVE_UNICAST | EFI_SIMPLE_NETWORK_RECEIVE_BROADCAST),
	      "start_initialize", "Start 0x%llx, again 0x%llx, Initialize 0x%llx, filters 0x%llx, link %u",
	      (unsigned long long)s1, (unsigned long long)s2, (unsigned long long)s3, (unsigned long long)s4,
	      m->MediaPresent);
	EFI_IP_ADDRESS mip = { .v4 = { 224, 1, 2, 3 } };
	EFI_MAC_ADDRESS mmac;
	check(!snp->MCastIpToMac(snp, 0, &mip, &mmac) && mmac.Addr[0] == 1 && mmac.Addr[2] == 0x5e && mmac.Addr[3] == 1 &&
		      mmac.Addr[5] == 3,
	      "mcast_ip_to_mac", "224.1.2.3 -> %02x:%02x:%02x:%02x:%02x:%02x", mmac.Addr[0], mmac.Addr[1], mmac.Addr[2],
	      mmac.Addr[3], mmac.Addr[4], mmac.Addr[5]);
	uint32_t frames = 0;
	bool got = false;
	EFI_STATUS ts = EFI_SUCCESS;
	for (int tries = 0; tries < 5 && !got; tries++) {
		ts = arp_send(1, (const uint8_t[6]){ 0 }, host_ip);
		got = pump(1000, want_host, &frames);
	}
	txb = NULL;
	snp->GetStatus(snp, &irq, &txb);
	check(got && !ts, "arp", "host %02x:%02x:%02x:%02x:%02x:%02x (Transmit 0x%llx, %u frames)", host_mac[0],
	      host_mac[1], host_mac[2], host_mac[3], host_mac[4], host_mac[5], (unsigned long long)ts, frames);
	check(txb == tx, "tx_recycled", "GetStatus gave back the transmit buffer");
	got = false;
	for (int tries = 0; tries < 5 && !got && have_host; tries++) {
		ts = udp_send();
		got = pump(1000, want_echo, &frames);
	}
	check(got, "udp_echo", "%u-byte datagram sent and echoed (Transmit 0x%llx)", PAYLOAD, (unsigned long long)ts);
	EFI_STATUS s5 = snp->Shutdown(snp), s6 = snp->Receive(snp, NULL, &n, rx, NULL, NULL, NULL);
	EFI_STATUS s7 = snp->Stop(snp), s8 = snp->Stop(snp);
	check(!s5 && s6 == EFI_DEVICE_ERROR && !s7 && s8 == EFI_NOT_STARTED, "shutdown_stop",
	      "Shutdown 0x%llx, Receive after 0x%llx, Stop 0x%llx, again 0x%llx", (unsigned long long)s5,
	      (unsigned long long)s6, (unsigned long long)s7, (unsigned long long)s8);
	app_printf("snp_test: %u passed, %u failed\n", passed, failed);
	app_exit_vm(failed);
	return failed ? EFI_DEVICE_ERROR : EFI_SUCCESS;
}
