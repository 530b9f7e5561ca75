/* Building device paths (UEFI 2.10 chapter 10) the firmware and the host must agree on: the path of
 * a SCSI LUN on a VMBus storage controller (include/gen2vm/proto/fw.h), end nodes, file path nodes,
 * and appending paths. Freestanding; compiled for the firmware and the host. */
#ifndef GEN2VM_GUESTLIB_EFI_DEVPATH_H
#define GEN2VM_GUESTLIB_EFI_DEVPATH_H

#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

/* VenHw(FW_VMBUS_DP_GUID, instance)/Scsi(target, lun) plus the end node. */
struct efi_dp_vmbus_scsi {
	VENDOR_DEVICE_PATH vmbus;
	uint8_t instance[16]; /* the controller's VMBus instance GUID, as its offer carries it */
	SCSI_DEVICE_PATH scsi;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed));
_Static_assert(sizeof(struct efi_dp_vmbus_scsi) == 20 + 16 + 8 + 4, "efi_dp_vmbus_scsi");

void efi_dp_vmbus_scsi_init(struct efi_dp_vmbus_scsi *dp, const uint8_t instance[16], uint16_t target, uint16_t lun);

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

#endif
