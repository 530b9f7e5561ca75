#include "efi/efi_devpath.h"

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw.h"

void efi_dp_set_end(EFI_DEVICE_PATH_PROTOCOL *n)
{
	n->Type = END_DEVICE_PATH_TYPE;
	n->SubType = END_ENTIRE_DEVICE_PATH_SUBTYPE;
	efi_dp_set_node_len(n, sizeof(*n));
}

void efi_dp_vmbus_scsi_init(struct efi_dp_vmbus_scsi *dp, const uint8_t instance[16], uint16_t target, uint16_t lun)
{
	const EFI_GUID g = FW_VMBUS_DP_GUID;
	dp->vmbus.Header.Type = HARDWARE_DEVICE_PATH;
	dp->vmbus.Header.SubType = HW_VENDOR_DP;
	efi_dp_set_node_len(&dp->vmbus.Header, sizeof(dp->vmbus) + 16);
	efi_memcpy(&dp->vmbus.Guid, &g, sizeof(g));
	efi_memcpy(dp->instance, instance, 16);
	dp->scsi.Header.Type = MESSAGING_DEVICE_PATH;
	dp->scsi.Header.SubType = MSG_SCSI_DP;
	efi_dp_set_node_len(&dp->scsi.Header, sizeof(dp->scsi));
	dp->scsi.Pun = target;
	dp->scsi.Lun = lun;
	efi_dp_set_end(&dp->end);
}
