/* The handle and protocol database behind the protocol handler services of UEFI 2.10 section 7.3:
 * Install/Reinstall/Uninstall(Multiple)ProtocolInterface, HandleProtocol, OpenProtocol/CloseProtocol
 * with their attribute rules, OpenProtocolInformation, ProtocolsPerHandle, LocateHandle(Buffer),
 * LocateProtocol, RegisterProtocolNotify and LocateDevicePath.
 *
 * Handles are opaque pointers to records owned by the database, valid until their last protocol is
 * uninstalled; every handle a caller passes in is looked up before use, so a stale or forged handle gets
 * EFI_INVALID_PARAMETER instead of a dereference. Return codes follow the specification's tables.
 *
 * Memory comes from ops.alloc/ops.free: in the firmware the boot-services pool, because the buffers
 * OpenProtocolInformation, ProtocolsPerHandle and LocateHandleBuffer return are the caller's to FreePool.
 * Driver-model hooks: ops.disconnect is DisconnectController (used when a BY_DRIVER opener must let go);
 * ops.signal signals a RegisterProtocolNotify event. Both may be NULL.
 */
#ifndef GEN2VM_GUESTLIB_EFI_HANDLE_H
#define GEN2VM_GUESTLIB_EFI_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

struct efi_db_ops {
	void *(*alloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *p);
	EFI_STATUS (*disconnect)(void *ctx, EFI_HANDLE controller, EFI_HANDLE agent);
	void (*signal)(void *ctx, EFI_EVENT event);
	void *ctx;
};

struct efi_db_handle;
struct efi_db_notify;

struct efi_db {
	struct efi_db_handle *head, *tail; /* creation order: LocateHandle's order */
	struct efi_db_notify *notifies;
	struct efi_db_ops ops;
};

void efi_db_init(struct efi_db *db, const struct efi_db_ops *ops);
/* Frees every record (handles, interfaces are the installers'). */
void efi_db_destroy(struct efi_db *db);
bool efi_db_handle_valid(const struct efi_db *db, EFI_HANDLE h);

EFI_STATUS efi_db_install(struct efi_db *db, EFI_HANDLE *handle, const EFI_GUID *protocol, void *iface);
EFI_STATUS efi_db_reinstall(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void *old_iface,
			    void *new_iface);
EFI_STATUS efi_db_uninstall(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void *iface);
/* The Multiple variants with the varargs already split into n (GUID, interface) pairs. All or nothing;
 * a device path already installed on another handle gives EFI_ALREADY_STARTED. */
EFI_STATUS efi_db_install_multiple(struct efi_db *db, EFI_HANDLE *handle, size_t n,
				   const EFI_GUID *const *protocols, void *const *ifaces);
EFI_STATUS efi_db_uninstall_multiple(struct efi_db *db, EFI_HANDLE handle, size_t n,
				     const EFI_GUID *const *protocols, void *const *ifaces);

EFI_STATUS efi_db_open(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void **iface,
		       EFI_HANDLE agent, EFI_HANDLE controller, uint32_t attributes);
EFI_STATUS efi_db_close(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, EFI_HANDLE agent,
			EFI_HANDLE controller);
/* HandleProtocol: OpenProtocol BY_HANDLE_PROTOCOL on behalf of the firmware's image handle. */
EFI_STATUS efi_db_handle_protocol(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void **iface,
				  EFI_HANDLE firmware_image);
EFI_STATUS efi_db_open_info(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol,
			    EFI_OPEN_PROTOCOL_INFORMATION_ENTRY **entries, UINTN *count);
EFI_STATUS efi_db_protocols_per_handle(struct efi_db *db, EFI_HANDLE handle, EFI_GUID ***protocols,
				       UINTN *count);

EFI_STATUS efi_db_register_notify(struct efi_db *db, const EFI_GUID *protocol, EFI_EVENT event,
				  void **registration);
EFI_STATUS efi_db_locate_handle(struct efi_db *db, EFI_LOCATE_SEARCH_TYPE type, const EFI_GUID *protocol,
				void *key, UINTN *size, EFI_HANDLE *buf);
EFI_STATUS efi_db_locate_handle_buffer(struct efi_db *db, EFI_LOCATE_SEARCH_TYPE type,
				       const EFI_GUID *protocol, void *key, UINTN *count, EFI_HANDLE **buf);
EFI_STATUS efi_db_locate_protocol(struct efi_db *db, const EFI_GUID *protocol, void *registration,
				  void **iface);
EFI_STATUS efi_db_locate_device_path(struct efi_db *db, const EFI_GUID *protocol,
				     EFI_DEVICE_PATH_PROTOCOL **path, EFI_HANDLE *device);

/* Bytes of a device path up to (not including) its first end node, walking at most max bytes;
 * -1 when a node is shorter than its header or the walk runs past max without an end node. */
int64_t efi_dp_len(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max);

#endif
