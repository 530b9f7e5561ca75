/* The firmware's network stack: netvsc.c binds every synthetic network adapter (NVSP/RNDIS over
 * VMBus, guestlib/netvsc_client for the wire formats) and offers it as one handle with
 * EFI_SIMPLE_NETWORK_PROTOCOL and the device path VenHw(FW_VMBUS_DP_GUID, instance)/MAC(mac, 1).
 */
#ifndef GEN2VM_FIRMWARE_NET_H
#define GEN2VM_FIRMWARE_NET_H

#include "fw.h"

#include "gen2vm/proto/efi_net.h"

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

#endif
