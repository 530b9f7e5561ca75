/* Boot entries in the variable store (UEFI 2.10 3.1): Boot#### (EFI_LOAD_OPTION), BootOrder,
 * BootNext, Timeout, and gen2vm's PauseAfterBootFailure, as the host edits them.
 *
 * Two kinds of entry, as on Hyper-V: device entries (one per SCSI disk and DVD drive, device path
 * exactly VenHw(FW_VMBUS_DP_GUID, controller instance)/Scsi(0, lun)) which the host appends to the
 * bottom of BootOrder when the device appears and deletes when it goes; and file entries (any other
 * path, made by the guest: efibootmgr, installers) which the host never deletes.
 *
 * Every function works on a store the caller has locked when a VM shares it (nvram_lock).
 */
#ifndef GEN2VM_PLATFORM_BOOTOPT_H
#define GEN2VM_PLATFORM_BOOTOPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efi/efi_devpath.h"
#include "platform/nvram.h"

#define BOOTOPT_MAX 512u

struct bootopt_device {
	unsigned controller; /* 0..3 */
	unsigned lun;        /* 0..63 */
	bool dvd;
};

/* A network adapter: one "EFI Network" entry each, device path
 * VenHw(FW_VMBUS_DP_GUID, adapter instance)/MAC(mac, 1), kept after the drives in BootOrder. */
struct bootopt_nic {
	unsigned instance; /* netvsp_config.instance */
	uint8_t mac[6];
};

struct bootopt_entry {
	uint16_t num;        /* Boot#### */
	uint32_t attributes; /* LOAD_OPTION_* */
	char desc[256];      /* the description as UTF-8 (non-ASCII shown as '?') */
	bool device;         /* a device entry (see above) */
	bool dvd;            /* a device entry for a DVD drive */
	unsigned controller, lun; /* device entries */
	bool nic;            /* a network adapter's entry (see struct bootopt_nic); not a device entry */
	unsigned nic_instance;
	uint8_t *dp;         /* the device path list (malloc'd) */
	size_t dp_len;
	bool in_order;       /* listed in BootOrder */
};

struct bootopt_list {
	struct bootopt_entry e[BOOTOPT_MAX]; /* in BootOrder order, then those not in BootOrder by number */
	unsigned n;
	bool has_timeout, has_next;
	uint16_t timeout, next;
	int pause_after_failure; /* -1 unset, 0, 1 */
	bool net_ipv6;           /* NetworkBootPreferredProtocol: IPv6 (else IPv4, the default) */
};

/* The controller's VMBus instance GUID bytes as storvsp offers them (src/devices/storvsp.c). */
void bootopt_scsi_instance(unsigned controller, uint8_t out[16]);
/* The device path of a SCSI LUN, as the firmware's storage driver builds it. */
void bootopt_device_path(unsigned controller, unsigned lun, struct efi_dp_vmbus_scsi *dp);

/* Parses an EFI_LOAD_OPTION: 0, or -EINVAL when malformed (lengths outside the data, no NUL). */
int bootopt_parse(const void *data, size_t size, struct bootopt_entry *e);
/* Builds an EFI_LOAD_OPTION from an ASCII description (malloc'd, *size). NULL on ENOMEM. */
void *bootopt_build(uint32_t attributes, const char *desc, const void *dp, size_t dp_len, size_t *size);

/* Reads every Boot#### entry, BootOrder and the settings. 0 or -ENOMEM. Free with bootopt_list_free. */
int bootopt_load(struct nvram *nv, struct bootopt_list *l);
void bootopt_list_free(struct bootopt_list *l);

/* A device appeared: a new entry is made and appended to the bottom of BootOrder; an existing one
 * only has its description refreshed (a guest that took it out of BootOrder keeps it out).
 * Returns 0 or -EIO/-ENOSPC (logged). */
int bootopt_device_added(struct nvram *nv, const struct bootopt_device *d);
/* A device went: its entry and its BootOrder slot are deleted. 0 (also when there was none) or -EIO. */
int bootopt_device_removed(struct nvram *nv, unsigned controller, unsigned lun);
/* At VM start: deletes the device entries of devices not in devs, then adds those missing (in devs'
 * order). 0 or -errno. */
int bootopt_sync(struct nvram *nv, const struct bootopt_device *devs, unsigned n);

/* The device path of a network adapter, as the firmware's netvsc driver builds it. */
void bootopt_nic_path(unsigned instance, const uint8_t mac[6], struct efi_dp_vmbus_mac *dp);
/* At VM start: deletes the network entries of adapters not in nics (by instance and MAC), then adds
 * those missing at the bottom of BootOrder, described "EFI Network (MAC)". 0 or -errno. */
int bootopt_nic_sync(struct nvram *nv, const struct bootopt_nic *nics, unsigned n);

/* Rewrites BootOrder: order must name every existing entry exactly once (so no entry, least of all a
 * file entry, is lost by mistake). 0, or -EINVAL with the reason in err. */
int bootopt_set_order(struct nvram *nv, const uint16_t *order, unsigned n, char *err, size_t errlen);
/* Moves one entry to the top of BootOrder keeping the others' order. which: "dvd" (the first DVD
 * entry), "disk:C:L", "file:N" (the N-th file entry, from 1, in BootOrder order), "nic:N" (the network
 * entry of adapter N, from 0) or "nic" (the lowest-numbered adapter's). 0 or -EINVAL/-ENOENT
 * with err. */
int bootopt_set_first(struct nvram *nv, const char *which, char *err, size_t errlen);
/* The UEFI Timeout variable (UINT16 seconds): how long gen2vm's firmware offers its boot menu at every
 * start (0: only while a viewer watches the screen; 0xFFFF: until a key). 0 or -EIO. */
int bootopt_set_timeout(struct nvram *nv, uint16_t seconds);
/* PauseAfterBootFailure (GEN2VM_VENDOR_GUID, UINT8). 0 or -EIO. */
int bootopt_set_pause(struct nvram *nv, bool on);
/* NetworkBootPreferredProtocol (GEN2VM_VENDOR_GUID, UINT8 4 or 6: the IP version the firmware's
 * network boot speaks, Hyper-V's Set-VMFirmware -NetworkBootPreferredProtocol). 0 or -EIO. */
int bootopt_set_net_protocol(struct nvram *nv, bool ipv6);

/* Device path as text into out (the UEFI text form the firmware's DevicePathToText gives: efi_dptext.h),
 * never reading past len; always NUL-terminated when cap > 0. */
void bootopt_dp_to_text(const uint8_t *dp, size_t len, char *out, size_t cap);

#endif
