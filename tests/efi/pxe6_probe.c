/* What a network-booted loader (shim, GRUB's efinet) finds after an IPv6 network boot: the PXE Base
 * Code Protocol on the handle it was loaded from, its Mode (UsingIpv6, StationIp, the DHCPv6 Reply in
 * DhcpAck with the boot-file URL), and Mtftp over IPv6 from the URL's server: the size of a file and
 * the file itself (the name in the load options' absence: "hello.efi"). One PASS/FAIL line per check on
 * the debug console, then the failure count through the debug exit port. */
#include "efiapp.h"

#include "gen2vm/proto/efi_net.h"
#include "netboot_wire.h"

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);

static unsigned failed;

static void check(bool ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(bool ok, const char *name, const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	app_printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, buf);
	failed += !ok;
}

/* The boot-file URL (option 59) at the top level of a DHCPv6 message, NUL-terminated into url. */
static bool find_url(const uint8_t *p, uint32_t n, char *url, uint32_t cap)
{
	for (uint32_t o = 4; o + 4 <= n;) {
		uint32_t code = nb_be16(p + o), len = nb_be16(p + o + 2);
		if (len > n - o - 4)
			return false;
		if (code == DHCP6_OPT_BOOTFILE_URL && len < cap) {
			efi_memcpy(url, p + o + 4, len);
			url[len] = 0;
			return true;
		}
		o += 4 + len;
	}
	return false;
}

EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_init(image, st);
	static EFI_GUID li_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID, pxe_guid = EFI_PXE_BASE_CODE_PROTOCOL_GUID;
	EFI_LOADED_IMAGE_PROTOCOL *li = NULL;
	EFI_PXE_BASE_CODE_PROTOCOL *pxe = NULL;
	app_bs->HandleProtocol(image, &li_guid, (void **)&li);
	if (li)
		app_bs->HandleProtocol(li->DeviceHandle, &pxe_guid, (void **)&pxe);
	check(pxe != NULL, "pxe_on_device", "the PXE Base Code Protocol on the handle we were loaded from");
	if (!pxe) {
		app_exit_vm(1);
		return EFI_NOT_FOUND;
	}
	EFI_PXE_BASE_CODE_MODE *m = pxe->Mode;
	char ip[48], url[NB_BOOTFILE_MAX], path[NB_BOOTFILE_MAX];
	nb_ip6_text(ip, m->StationIp.v6);
	check(m->Started && m->UsingIpv6 && m->DhcpAckReceived, "mode", "Started %u UsingIpv6 %u DhcpAckReceived %u, "
	      "StationIp %s", m->Started, m->UsingIpv6, m->DhcpAckReceived, ip);
	bool has_url = find_url(m->DhcpAck.Raw, sizeof(m->DhcpAck.Raw), url, sizeof(url));
	check(m->DhcpAck.Raw[0] == DHCP6_REPLY && has_url, "dhcp_ack", "message type %u, boot-file URL %s",
	      m->DhcpAck.Raw[0], has_url ? url : "(none)");
	EFI_IP_ADDRESS server = { { 0 } };
	bool url_ok = has_url && !nb_tftp6_url(url, server.v6, path, sizeof(path));
	char sv[48];
	nb_ip6_text(sv, server.v6);
	check(url_ok, "url", "server %s, file %s", sv, url_ok ? path : "?");
	static uint8_t name[] = "hello.efi";
	uint64_t size = 0;
	EFI_STATUS s = pxe->Mtftp(pxe, EFI_PXE_BASE_CODE_TFTP_GET_FILE_SIZE, NULL, 0, &size, NULL, &server, name, NULL, 0);
	check(!EFI_ERROR(s) && size > 0, "mtftp_size", "status 0x%llx, %llu bytes", (unsigned long long)s,
	      (unsigned long long)size);
	void *buf = NULL;
	uint64_t got = size;
	if (size && !EFI_ERROR(app_bs->AllocatePool(EfiLoaderData, size, &buf))) {
		s = pxe->Mtftp(pxe, EFI_PXE_BASE_CODE_TFTP_READ_FILE, buf, 0, &got, NULL, &server, name, NULL, 0);
		check(!EFI_ERROR(s) && got == size && ((uint8_t *)buf)[0] == 'M' && ((uint8_t *)buf)[1] == 'Z',
		      "mtftp_read", "status 0x%llx, %llu bytes, starts %02x %02x", (unsigned long long)s,
		      (unsigned long long)got, ((uint8_t *)buf)[0], ((uint8_t *)buf)[1]);
		app_bs->FreePool(buf);
	}
	static uint8_t missing[] = "no-such-file";
	s = pxe->Mtftp(pxe, EFI_PXE_BASE_CODE_TFTP_GET_FILE_SIZE, NULL, 0, &size, NULL, &server, missing, NULL, 0);
	check(s == EFI_NOT_FOUND && m->TftpErrorReceived, "mtftp_missing", "status 0x%llx", (unsigned long long)s);
	app_printf("pxe6_probe: %u failed\n", failed);
	app_exit_vm(failed);
	return EFI_SUCCESS;
}
