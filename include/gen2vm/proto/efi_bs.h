/* Boot-services additions to gen2vm/proto/efi.h: event group GUIDs (UEFI 2.10 7.1), the LoadFile and
 * LoadFile2 protocols (13.1, 13.2) LoadImage reads files through, the memory-mapped device path node
 * (10.3.2.3) the firmware gives images it starts from memory, and Linux's initrd media device path.
 * Shared by the firmware and the EFI test applications; only <stdint.h>. */
#ifndef GEN2VM_PROTO_EFI_BS_H
#define GEN2VM_PROTO_EFI_BS_H

#include <stdint.h>

#include "gen2vm/proto/efi.h"

#define EFI_EVENT_GROUP_EXIT_BOOT_SERVICES \
	EFI_GUID_INIT(0x27abf055, 0xb1b8, 0x4c26, 0x80, 0x48, 0x74, 0x8f, 0x37, 0xba, 0xa2, 0xdf)
#define EFI_EVENT_GROUP_BEFORE_EXIT_BOOT_SERVICES \
	EFI_GUID_INIT(0x8be0e274, 0x3970, 0x4b44, 0x80, 0xc5, 0x1a, 0xb9, 0x50, 0x2f, 0x3b, 0xfc)
#define EFI_EVENT_GROUP_VIRTUAL_ADDRESS_CHANGE \
	EFI_GUID_INIT(0x13fa7698, 0xc831, 0x49c7, 0x87, 0xea, 0x8f, 0x43, 0xfc, 0xc2, 0x51, 0x96)
#define EFI_EVENT_GROUP_MEMORY_MAP_CHANGE \
	EFI_GUID_INIT(0x78bee926, 0x692f, 0x48fd, 0x9e, 0xdb, 0x01, 0x42, 0x2e, 0xf0, 0xd7, 0xab)
#define EFI_EVENT_GROUP_READY_TO_BOOT \
	EFI_GUID_INIT(0x7ce88fb3, 0x4bd7, 0x4679, 0x87, 0xa8, 0xa8, 0xd8, 0xde, 0xe5, 0x0d, 0x2b)
#define EFI_EVENT_GROUP_RESET_SYSTEM \
	EFI_GUID_INIT(0x62da6a56, 0x13fb, 0x485a, 0xa8, 0xda, 0xa3, 0xdd, 0x79, 0x12, 0xcb, 0x6b)

#define EFI_LOAD_FILE_PROTOCOL_GUID \
	EFI_GUID_INIT(0x56ec3091, 0x954c, 0x11d2, 0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_LOAD_FILE2_PROTOCOL_GUID \
	EFI_GUID_INIT(0x4006c0c1, 0xfcb3, 0x403e, 0x99, 0x6d, 0x4a, 0x6c, 0x87, 0x24, 0xe0, 0x6d)
/* LoadFile and LoadFile2 share this layout; LoadFile2 callers pass BootPolicy = FALSE. */
typedef struct EFI_LOAD_FILE_PROTOCOL EFI_LOAD_FILE_PROTOCOL;
struct EFI_LOAD_FILE_PROTOCOL {
	EFI_STATUS(EFIAPI *LoadFile)(EFI_LOAD_FILE_PROTOCOL *This, EFI_DEVICE_PATH_PROTOCOL *FilePath,
				     BOOLEAN BootPolicy, UINTN *BufferSize, void *Buffer);
};
_Static_assert(sizeof(EFI_LOAD_FILE_PROTOCOL) == 8, "EFI_LOAD_FILE_PROTOCOL");

/* EFI_DRIVER_BINDING_PROTOCOL (UEFI 2.10 11.1): how a UEFI driver (iPXE's, for one) offers to manage
 * a controller; ConnectController calls Supported, then Start. */
#define EFI_DRIVER_BINDING_PROTOCOL_GUID \
	EFI_GUID_INIT(0x18a031ab, 0xb443, 0x4d1a, 0xa5, 0xc0, 0x0c, 0x09, 0x26, 0x1e, 0x9f, 0x71)
typedef struct EFI_DRIVER_BINDING_PROTOCOL EFI_DRIVER_BINDING_PROTOCOL;
struct EFI_DRIVER_BINDING_PROTOCOL {
	EFI_STATUS(EFIAPI *Supported)(EFI_DRIVER_BINDING_PROTOCOL *This, EFI_HANDLE Controller,
				      EFI_DEVICE_PATH_PROTOCOL *RemainingDevicePath);
	EFI_STATUS(EFIAPI *Start)(EFI_DRIVER_BINDING_PROTOCOL *This, EFI_HANDLE Controller,
				  EFI_DEVICE_PATH_PROTOCOL *RemainingDevicePath);
	EFI_STATUS(EFIAPI *Stop)(EFI_DRIVER_BINDING_PROTOCOL *This, EFI_HANDLE Controller, UINTN NumberOfChildren,
				 EFI_HANDLE *ChildHandleBuffer);
	uint32_t Version;
	EFI_HANDLE ImageHandle;
	EFI_HANDLE DriverBindingHandle;
};
_Static_assert(sizeof(EFI_DRIVER_BINDING_PROTOCOL) == 48, "EFI_DRIVER_BINDING_PROTOCOL");

/* The vendor media node Linux's EFI stub looks up (with LoadFile2) to fetch its initrd. */
#define LINUX_EFI_INITRD_MEDIA_GUID \
	EFI_GUID_INIT(0x5568e427, 0x68fc, 0x4f3d, 0xac, 0x74, 0xca, 0x55, 0x52, 0x31, 0xcc, 0x68)

#define HW_MEMMAP_DP 0x03
typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	uint32_t MemoryType;
	EFI_PHYSICAL_ADDRESS StartingAddress;
	EFI_PHYSICAL_ADDRESS EndingAddress; /* inclusive */
} __attribute__((packed)) MEMMAP_DEVICE_PATH;
_Static_assert(sizeof(MEMMAP_DEVICE_PATH) == 24, "MEMMAP_DEVICE_PATH");

#endif
