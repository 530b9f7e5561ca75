/* Building device paths (UEFI 2.10 chapter 10) the firmware and the host must agree on: the path of
 * a SCSI LUN on a VMBus storage controller (include/gen2vm/proto/fw.h), end nodes, file path nodes,
 * and appending paths. Freestanding; compiled for the firmware and the host. */
#ifndef GEN2VM_GUESTLIB_EFI_DEVPATH_H
#define GEN2VM_GUESTLIB_EFI_DEVPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/efi_net.h"

/* VenHw(FW_VMBUS_DP_GUID, instance)/Scsi(target, lun) plus the end node. */
struct efi_dp_vmbus_scsi {
	VENDOR_DEVICE_PATH vmbus;
	uint8_t instance[16]; /* the controller's VMBus instance GUID, as its offer carries it */
	SCSI_DEVICE_PATH scsi;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed));
_Static_assert(sizeof(struct efi_dp_vmbus_scsi) == 20 + 16 + 8 + 4, "efi_dp_vmbus_scsi");

void efi_dp_vmbus_scsi_init(struct efi_dp_vmbus_scsi *dp, const uint8_t instance[16], uint16_t target, uint16_t lun);

/* VenHw(FW_VMBUS_DP_GUID, instance)/MAC(mac, 1) plus the end node: a synthetic network adapter, as the
 * firmware installs it and the host writes it into its "EFI Network" boot entries (Hyper-V's form:
 * the VMBus node, then the MAC node). */
struct efi_dp_vmbus_mac {
	VENDOR_DEVICE_PATH vmbus;
	uint8_t instance[16]; /* the adapter's VMBus instance GUID, as its offer carries it */
	MAC_ADDR_DEVICE_PATH mac;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed));
_Static_assert(sizeof(struct efi_dp_vmbus_mac) == 20 + 16 + 37 + 4, "efi_dp_vmbus_mac");

void efi_dp_vmbus_mac_init(struct efi_dp_vmbus_mac *dp, const uint8_t instance[16], const uint8_t mac[6]);

/* Writes an end-of-entire-path node. */
void efi_dp_set_end(EFI_DEVICE_PATH_PROTOCOL *n);
static inline uint16_t efi_dp_node_len(const EFI_DEVICE_PATH_PROTOCOL *n)
{
	return (uint16_t)(n->Length[0] | n->Length[1] << 8);
}
static inline void efi_dp_set_node_len(EFI_DEVICE_PATH_PROTOCOL *n, uint16_t len)
{
	n->Length[0] = (uint8_t)len;
	n->Length[1] = (uint8_t)(len >> 8);
}

/* Bytes of a whole path including its end node, walking at most max bytes; 0 when malformed (a node
 * shorter than its header, or no end node within max). */
size_t efi_dp_size(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max);
/* The node after n (n must not be an end node). */
static inline const EFI_DEVICE_PATH_PROTOCOL *efi_dp_next(const EFI_DEVICE_PATH_PROTOCOL *n)
{
	return (const EFI_DEVICE_PATH_PROTOCOL *)((const uint8_t *)n + efi_dp_node_len(n));
}
/* True when every node of prefix (up to its end node) starts path, node for node. Both must be
 * well formed (efi_dp_size() != 0). */
bool efi_dp_has_prefix(const EFI_DEVICE_PATH_PROTOCOL *path, const EFI_DEVICE_PATH_PROTOCOL *prefix);
/* The first node of (type, subtype) in a well-formed path, or NULL. */
const EFI_DEVICE_PATH_PROTOCOL *efi_dp_find(const EFI_DEVICE_PATH_PROTOCOL *path, uint8_t type, uint8_t subtype);
/* Writes a + b (a's end node dropped) into out (cap bytes). Returns the size written, 0 when it does
 * not fit or either path is malformed. */
size_t efi_dp_append(const EFI_DEVICE_PATH_PROTOCOL *a, const EFI_DEVICE_PATH_PROTOCOL *b, void *out, size_t cap);
/* Writes a file path node for name (UCS-2) followed by an end node into out. Returns the size, 0
 * when it does not fit. */
size_t efi_dp_file(const CHAR16 *name, void *out, size_t cap);

#endif
