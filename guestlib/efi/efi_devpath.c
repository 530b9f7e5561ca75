#include "efi/efi_devpath.h"

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw.h"

void efi_dp_set_end(EFI_DEVICE_PATH_PROTOCOL *n)
{
	n->Type = END_DEVICE_PATH_TYPE;
	n->SubType = END_ENTIRE_DEVICE_PATH_SUBTYPE;
	efi_dp_set_node_len(n, sizeof(*n));
}

static void dp_vmbus_node(VENDOR_DEVICE_PATH *n, uint8_t *inst_out, const uint8_t instance[16])
{
	const EFI_GUID g = FW_VMBUS_DP_GUID;
	n->Header.Type = HARDWARE_DEVICE_PATH;
	n->Header.SubType = HW_VENDOR_DP;
	efi_dp_set_node_len(&n->Header, sizeof(*n) + 16);
	efi_memcpy(&n->Guid, &g, sizeof(g));
	efi_memcpy(inst_out, instance, 16);
}

void efi_dp_vmbus_mac_init(struct efi_dp_vmbus_mac *dp, const uint8_t instance[16], const uint8_t mac[6])
{
	dp_vmbus_node(&dp->vmbus, dp->instance, instance);
	dp->mac.Header.Type = MESSAGING_DEVICE_PATH;
	dp->mac.Header.SubType = 0x0b; /* MSG_MAC_ADDR_DP */
	efi_dp_set_node_len(&dp->mac.Header, sizeof(dp->mac));
	efi_memset(&dp->mac.MacAddress, 0, sizeof(dp->mac.MacAddress));
	efi_memcpy(dp->mac.MacAddress.Addr, mac, 6);
	dp->mac.IfType = NET_IFTYPE_ETHERNET;
	efi_dp_set_end(&dp->end);
}

void efi_dp_vmbus_scsi_init(struct efi_dp_vmbus_scsi *dp, const uint8_t instance[16], uint16_t target, uint16_t lun)
{
	dp_vmbus_node(&dp->vmbus, dp->instance, instance);
	dp->scsi.Header.Type = MESSAGING_DEVICE_PATH;
	dp->scsi.Header.SubType = MSG_SCSI_DP;
	efi_dp_set_node_len(&dp->scsi.Header, sizeof(dp->scsi));
	dp->scsi.Pun = target;
	dp->scsi.Lun = lun;
	efi_dp_set_end(&dp->end);
}

#define DP_MAX 4096 /* no path we build or accept is longer */

size_t efi_dp_size(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max)
{
	const uint8_t *p = (const uint8_t *)dp;
	size_t off = 0;
	while (off + sizeof(EFI_DEVICE_PATH_PROTOCOL) <= max) {
		uint16_t len = efi_le16(p + off + 2);
		if (len < sizeof(EFI_DEVICE_PATH_PROTOCOL) || len > max - off)
			return 0;
		if (p[off] == END_DEVICE_PATH_TYPE && p[off + 1] == END_ENTIRE_DEVICE_PATH_SUBTYPE)
			return off + len;
		off += len;
	}
	return 0;
}

static bool is_end(const EFI_DEVICE_PATH_PROTOCOL *n)
{
	return n->Type == END_DEVICE_PATH_TYPE && n->SubType == END_ENTIRE_DEVICE_PATH_SUBTYPE;
}

bool efi_dp_has_prefix(const EFI_DEVICE_PATH_PROTOCOL *path, const EFI_DEVICE_PATH_PROTOCOL *prefix)
{
	for (; !is_end(prefix); prefix = efi_dp_next(prefix), path = efi_dp_next(path)) {
		if (is_end(path))
			return false;
		uint16_t l = efi_dp_node_len(prefix);
		if (l != efi_dp_node_len(path) || efi_memcmp(prefix, path, l))
			return false;
	}
	return true;
}

const EFI_DEVICE_PATH_PROTOCOL *efi_dp_find(const EFI_DEVICE_PATH_PROTOCOL *path, uint8_t type, uint8_t subtype)
{
	for (; !is_end(path); path = efi_dp_next(path))
		if (path->Type == type && path->SubType == subtype)
			return path;
	return NULL;
}

size_t efi_dp_append(const EFI_DEVICE_PATH_PROTOCOL *a, const EFI_DEVICE_PATH_PROTOCOL *b, void *out, size_t cap)
{
	size_t la = efi_dp_size(a, DP_MAX), lb = efi_dp_size(b, DP_MAX);
	if (!la || !lb || la - sizeof(*a) + lb > cap)
		return 0;
	efi_memmove(out, a, la - sizeof(*a));
	efi_memmove((uint8_t *)out + la - sizeof(*a), b, lb);
	return la - sizeof(*a) + lb;
}

size_t efi_dp_file(const CHAR16 *name, void *out, size_t cap)
{
	size_t n = efi_strnlen16(name, DP_MAX);
	size_t node = sizeof(FILEPATH_DEVICE_PATH) + (n + 1) * sizeof(CHAR16);
	if (node > 0xffff || node + sizeof(EFI_DEVICE_PATH_PROTOCOL) > cap)
		return 0;
	EFI_DEVICE_PATH_PROTOCOL *h = out;
	h->Type = MEDIA_DEVICE_PATH;
	h->SubType = MEDIA_FILEPATH_DP;
	efi_dp_set_node_len(h, (uint16_t)node);
	efi_memcpy((uint8_t *)out + sizeof(*h), name, (n + 1) * sizeof(CHAR16));
	efi_dp_set_end((EFI_DEVICE_PATH_PROTOCOL *)((uint8_t *)out + node));
	return node + sizeof(EFI_DEVICE_PATH_PROTOCOL);
}
