/* UEFI and the on-disk formats the firmware parses: EFI base types, status codes, memory map, the
 * system/boot/runtime service tables, device path nodes, the protocols the firmware implements, PE/COFF
 * (PE32+), GPT, MBR, FAT12/16/32 and the El Torito boot catalog.
 *
 * Shared by the VMM, the firmware and the test guests: only <stdint.h>, <stddef.h>.
 * Facts: UEFI Specification 2.10 (chapters 2, 4, 5, 7, 10, 13), Microsoft PE/COFF Specification,
 * Microsoft FAT Specification (2005), El Torito Bootable CD-ROM Format Specification 1.0.
 *
 * Naming: EFI ABI types keep the specification's names (EFI_STATUS, EFI_BOOT_SERVICES...) so they can
 * be checked against it line by line; on-disk formats use lower-case structs. Every service pointer uses
 * the Microsoft x64 calling convention (EFIAPI). ABI tables are naturally aligned (as C on x64 lays them
 * out, which is what the specification assumes); on-disk formats are packed.
 */
#ifndef GEN2VM_PROTO_EFI_H
#define GEN2VM_PROTO_EFI_H

#include <stddef.h>
#include <stdint.h>

#define EFIAPI __attribute__((ms_abi))

/* --- base types (UEFI 2.3.1) ------------------------------------------------------------------------ */
typedef uint64_t UINTN;
typedef int64_t INTN;
typedef uint8_t BOOLEAN;
typedef uint16_t CHAR16;
typedef uint64_t EFI_STATUS;
typedef void *EFI_HANDLE;
typedef void *EFI_EVENT;
typedef UINTN EFI_TPL;
typedef uint64_t EFI_LBA;
typedef uint64_t EFI_PHYSICAL_ADDRESS;
typedef uint64_t EFI_VIRTUAL_ADDRESS;

typedef struct {
	uint32_t Data1;
	uint16_t Data2;
	uint16_t Data3;
	uint8_t Data4[8];
} EFI_GUID;
_Static_assert(sizeof(EFI_GUID) == 16, "EFI_GUID");

#define EFI_GUID_INIT(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7) \
	{ (a), (b), (c), { (d0), (d1), (d2), (d3), (d4), (d5), (d6), (d7) } }

/* --- status codes (Appendix D) ---------------------------------------------------------------------- */
#define EFI_ERROR_BIT (1ull << 63)
#define EFIERR(n) (EFI_ERROR_BIT | (uint64_t)(n))
#define EFI_ERROR(s) (((EFI_STATUS)(s) & EFI_ERROR_BIT) != 0)

#define EFI_SUCCESS              0ull
#define EFI_LOAD_ERROR           EFIERR(1)
#define EFI_INVALID_PARAMETER    EFIERR(2)
#define EFI_UNSUPPORTED          EFIERR(3)
#define EFI_BAD_BUFFER_SIZE      EFIERR(4)
#define EFI_BUFFER_TOO_SMALL     EFIERR(5)
#define EFI_NOT_READY            EFIERR(6)
#define EFI_DEVICE_ERROR         EFIERR(7)
#define EFI_WRITE_PROTECTED      EFIERR(8)
#define EFI_OUT_OF_RESOURCES     EFIERR(9)
#define EFI_VOLUME_CORRUPTED     EFIERR(10)
#define EFI_VOLUME_FULL          EFIERR(11)
#define EFI_NO_MEDIA             EFIERR(12)
#define EFI_MEDIA_CHANGED        EFIERR(13)
#define EFI_NOT_FOUND            EFIERR(14)
#define EFI_ACCESS_DENIED        EFIERR(15)
#define EFI_NO_RESPONSE          EFIERR(16)
#define EFI_NO_MAPPING           EFIERR(17)
#define EFI_TIMEOUT              EFIERR(18)
#define EFI_NOT_STARTED          EFIERR(19)
#define EFI_ALREADY_STARTED      EFIERR(20)
#define EFI_ABORTED              EFIERR(21)
#define EFI_ICMP_ERROR           EFIERR(22)
#define EFI_TFTP_ERROR           EFIERR(23)
#define EFI_PROTOCOL_ERROR       EFIERR(24)
#define EFI_INCOMPATIBLE_VERSION EFIERR(25)
#define EFI_SECURITY_VIOLATION   EFIERR(26)
#define EFI_CRC_ERROR            EFIERR(27)
#define EFI_END_OF_MEDIA         EFIERR(28)
#define EFI_END_OF_FILE          EFIERR(31)
#define EFI_INVALID_LANGUAGE     EFIERR(32)
#define EFI_COMPROMISED_DATA     EFIERR(33)

#define EFI_WARN_UNKNOWN_GLYPH    1ull
#define EFI_WARN_DELETE_FAILURE   2ull
#define EFI_WARN_WRITE_FAILURE    3ull
#define EFI_WARN_BUFFER_TOO_SMALL 4ull

/* --- TPL (7.1) --------------------------------------------------------------------------------------- */
#define TPL_APPLICATION 4
#define TPL_CALLBACK    8
#define TPL_NOTIFY      16
#define TPL_HIGH_LEVEL  31

/* --- memory (7.2) ----------------------------------------------------------------------------------- */
typedef enum {
	EfiReservedMemoryType,
	EfiLoaderCode,
	EfiLoaderData,
	EfiBootServicesCode,
	EfiBootServicesData,
	EfiRuntimeServicesCode,
	EfiRuntimeServicesData,
	EfiConventionalMemory,
	EfiUnusableMemory,
	EfiACPIReclaimMemory,
	EfiACPIMemoryNVS,
	EfiMemoryMappedIO,
	EfiMemoryMappedIOPortSpace,
	EfiPalCode,
	EfiPersistentMemory,
	EfiUnacceptedMemoryType,
	EfiMaxMemoryType
} EFI_MEMORY_TYPE;
_Static_assert(sizeof(EFI_MEMORY_TYPE) == 4, "EFI_MEMORY_TYPE");

typedef enum { AllocateAnyPages, AllocateMaxAddress, AllocateAddress, MaxAllocateType } EFI_ALLOCATE_TYPE;

#define EFI_MEMORY_UC            0x0000000000000001ull
#define EFI_MEMORY_WC            0x0000000000000002ull
#define EFI_MEMORY_WT            0x0000000000000004ull
#define EFI_MEMORY_WB            0x0000000000000008ull
#define EFI_MEMORY_UCE           0x0000000000000010ull
#define EFI_MEMORY_WP            0x0000000000001000ull
#define EFI_MEMORY_RP            0x0000000000002000ull
#define EFI_MEMORY_XP            0x0000000000004000ull
#define EFI_MEMORY_NV            0x0000000000008000ull
#define EFI_MEMORY_MORE_RELIABLE 0x0000000000010000ull
#define EFI_MEMORY_RO            0x0000000000020000ull
#define EFI_MEMORY_SP            0x0000000000040000ull
#define EFI_MEMORY_RUNTIME       0x8000000000000000ull

#define EFI_PAGE_SHIFT 12
#define EFI_PAGE_SIZE  4096ull
#define EFI_MEMORY_DESCRIPTOR_VERSION 1

typedef struct {
	uint32_t Type;
	uint32_t Pad;
	EFI_PHYSICAL_ADDRESS PhysicalStart;
	EFI_VIRTUAL_ADDRESS VirtualStart;
	uint64_t NumberOfPages;
	uint64_t Attribute;
} EFI_MEMORY_DESCRIPTOR;
_Static_assert(sizeof(EFI_MEMORY_DESCRIPTOR) == 40, "EFI_MEMORY_DESCRIPTOR");
_Static_assert(offsetof(EFI_MEMORY_DESCRIPTOR, PhysicalStart) == 8, "EFI_MEMORY_DESCRIPTOR");

/* --- tables (4.2) ----------------------------------------------------------------------------------- */
typedef struct {
	uint64_t Signature;
	uint32_t Revision;
	uint32_t HeaderSize;
	uint32_t CRC32;
	uint32_t Reserved;
} EFI_TABLE_HEADER;
_Static_assert(sizeof(EFI_TABLE_HEADER) == 24, "EFI_TABLE_HEADER");

#define EFI_SYSTEM_TABLE_SIGNATURE   0x5453595320494249ull /* "IBI SYST" */
#define EFI_BOOT_SERVICES_SIGNATURE  0x56524553544f4f42ull /* "BOOTSERV" */
#define EFI_RUNTIME_SERVICES_SIGNATURE 0x56524553544e5552ull /* "RUNTSERV" */
#define EFI_2_100_SYSTEM_TABLE_REVISION ((2u << 16) | 100u)
#define EFI_SPECIFICATION_VERSION EFI_2_100_SYSTEM_TABLE_REVISION

typedef struct {
	uint8_t Type;
	uint8_t SubType;
	uint8_t Length[2];
} EFI_DEVICE_PATH_PROTOCOL;
_Static_assert(sizeof(EFI_DEVICE_PATH_PROTOCOL) == 4, "EFI_DEVICE_PATH_PROTOCOL");

typedef struct {
	uint16_t Year;
	uint8_t Month;
	uint8_t Day;
	uint8_t Hour;
	uint8_t Minute;
	uint8_t Second;
	uint8_t Pad1;
	uint32_t Nanosecond;
	int16_t TimeZone;
	uint8_t Daylight;
	uint8_t Pad2;
} EFI_TIME;
_Static_assert(sizeof(EFI_TIME) == 16, "EFI_TIME");

typedef struct {
	uint32_t Resolution;
	uint32_t Accuracy;
	BOOLEAN SetsToZero;
} EFI_TIME_CAPABILITIES;

typedef enum { EfiResetCold, EfiResetWarm, EfiResetShutdown, EfiResetPlatformSpecific } EFI_RESET_TYPE;

typedef enum { EFI_NATIVE_INTERFACE } EFI_INTERFACE_TYPE;
typedef enum { AllHandles, ByRegisterNotify, ByProtocol } EFI_LOCATE_SEARCH_TYPE;
typedef enum { TimerCancel, TimerPeriodic, TimerRelative } EFI_TIMER_DELAY;

#define EFI_OPEN_PROTOCOL_BY_HANDLE_PROTOCOL  0x00000001u
#define EFI_OPEN_PROTOCOL_GET_PROTOCOL        0x00000002u
#define EFI_OPEN_PROTOCOL_TEST_PROTOCOL       0x00000004u
#define EFI_OPEN_PROTOCOL_BY_CHILD_CONTROLLER 0x00000008u
#define EFI_OPEN_PROTOCOL_BY_DRIVER           0x00000010u
#define EFI_OPEN_PROTOCOL_EXCLUSIVE           0x00000020u

typedef struct {
	EFI_HANDLE AgentHandle;
	EFI_HANDLE ControllerHandle;
	uint32_t Attributes;
	uint32_t OpenCount;
} EFI_OPEN_PROTOCOL_INFORMATION_ENTRY;
_Static_assert(sizeof(EFI_OPEN_PROTOCOL_INFORMATION_ENTRY) == 24, "EFI_OPEN_PROTOCOL_INFORMATION_ENTRY");

#define EVT_TIMER                         0x80000000u
#define EVT_RUNTIME                       0x40000000u
#define EVT_NOTIFY_WAIT                   0x00000100u
#define EVT_NOTIFY_SIGNAL                 0x00000200u
#define EVT_SIGNAL_EXIT_BOOT_SERVICES     0x00000201u
#define EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE 0x60000202u

typedef void(EFIAPI *EFI_EVENT_NOTIFY)(EFI_EVENT Event, void *Context);
typedef EFI_STATUS(EFIAPI *EFI_IMAGE_UNLOAD)(EFI_HANDLE ImageHandle);

typedef struct {
	EFI_GUID CapsuleGuid;
	uint32_t HeaderSize;
	uint32_t Flags;
	uint32_t CapsuleImageSize;
} EFI_CAPSULE_HEADER;

struct EFI_SYSTEM_TABLE;

/* --- runtime services (8) --------------------------------------------------------------------------- */
typedef struct {
	EFI_TABLE_HEADER Hdr;
	EFI_STATUS(EFIAPI *GetTime)(EFI_TIME *Time, EFI_TIME_CAPABILITIES *Capabilities);
	EFI_STATUS(EFIAPI *SetTime)(EFI_TIME *Time);
	EFI_STATUS(EFIAPI *GetWakeupTime)(BOOLEAN *Enabled, BOOLEAN *Pending, EFI_TIME *Time);
	EFI_STATUS(EFIAPI *SetWakeupTime)(BOOLEAN Enable, EFI_TIME *Time);
	EFI_STATUS(EFIAPI *SetVirtualAddressMap)(UINTN MemoryMapSize, UINTN DescriptorSize,
						 uint32_t DescriptorVersion, EFI_MEMORY_DESCRIPTOR *VirtualMap);
	EFI_STATUS(EFIAPI *ConvertPointer)(UINTN DebugDisposition, void **Address);
	EFI_STATUS(EFIAPI *GetVariable)(CHAR16 *VariableName, EFI_GUID *VendorGuid, uint32_t *Attributes,
					UINTN *DataSize, void *Data);
	EFI_STATUS(EFIAPI *GetNextVariableName)(UINTN *VariableNameSize, CHAR16 *VariableName,
						EFI_GUID *VendorGuid);
	EFI_STATUS(EFIAPI *SetVariable)(CHAR16 *VariableName, EFI_GUID *VendorGuid, uint32_t Attributes,
					UINTN DataSize, void *Data);
	EFI_STATUS(EFIAPI *GetNextHighMonotonicCount)(uint32_t *HighCount);
	void(EFIAPI *ResetSystem)(EFI_RESET_TYPE ResetType, EFI_STATUS ResetStatus, UINTN DataSize,
				  void *ResetData);
	EFI_STATUS(EFIAPI *UpdateCapsule)(EFI_CAPSULE_HEADER **CapsuleHeaderArray, UINTN CapsuleCount,
					  EFI_PHYSICAL_ADDRESS ScatterGatherList);
	EFI_STATUS(EFIAPI *QueryCapsuleCapabilities)(EFI_CAPSULE_HEADER **CapsuleHeaderArray,
						     UINTN CapsuleCount, uint64_t *MaximumCapsuleSize,
						     EFI_RESET_TYPE *ResetType);
	EFI_STATUS(EFIAPI *QueryVariableInfo)(uint32_t Attributes, uint64_t *MaximumVariableStorageSize,
					      uint64_t *RemainingVariableStorageSize,
					      uint64_t *MaximumVariableSize);
} EFI_RUNTIME_SERVICES;
_Static_assert(sizeof(EFI_RUNTIME_SERVICES) == 24 + 14 * 8, "EFI_RUNTIME_SERVICES");

/* --- boot services (7) ------------------------------------------------------------------------------ */
typedef struct {
	EFI_TABLE_HEADER Hdr;
	/* task priority */
	EFI_TPL(EFIAPI *RaiseTPL)(EFI_TPL NewTpl);
	void(EFIAPI *RestoreTPL)(EFI_TPL OldTpl);
	/* memory */
	EFI_STATUS(EFIAPI *AllocatePages)(EFI_ALLOCATE_TYPE Type, EFI_MEMORY_TYPE MemoryType, UINTN Pages,
					  EFI_PHYSICAL_ADDRESS *Memory);
	EFI_STATUS(EFIAPI *FreePages)(EFI_PHYSICAL_ADDRESS Memory, UINTN Pages);
	EFI_STATUS(EFIAPI *GetMemoryMap)(UINTN *MemoryMapSize, EFI_MEMORY_DESCRIPTOR *MemoryMap,
					 UINTN *MapKey, UINTN *DescriptorSize, uint32_t *DescriptorVersion);
	EFI_STATUS(EFIAPI *AllocatePool)(EFI_MEMORY_TYPE PoolType, UINTN Size, void **Buffer);
	EFI_STATUS(EFIAPI *FreePool)(void *Buffer);
	/* events and timers */
	EFI_STATUS(EFIAPI *CreateEvent)(uint32_t Type, EFI_TPL NotifyTpl, EFI_EVENT_NOTIFY NotifyFunction,
					void *NotifyContext, EFI_EVENT *Event);
	EFI_STATUS(EFIAPI *SetTimer)(EFI_EVENT Event, EFI_TIMER_DELAY Type, uint64_t TriggerTime);
	EFI_STATUS(EFIAPI *WaitForEvent)(UINTN NumberOfEvents, EFI_EVENT *Event, UINTN *Index);
	EFI_STATUS(EFIAPI *SignalEvent)(EFI_EVENT Event);
	EFI_STATUS(EFIAPI *CloseEvent)(EFI_EVENT Event);
	EFI_STATUS(EFIAPI *CheckEvent)(EFI_EVENT Event);
	/* protocol handlers */
	EFI_STATUS(EFIAPI *InstallProtocolInterface)(EFI_HANDLE *Handle, EFI_GUID *Protocol,
						     EFI_INTERFACE_TYPE InterfaceType, void *Interface);
	EFI_STATUS(EFIAPI *ReinstallProtocolInterface)(EFI_HANDLE Handle, EFI_GUID *Protocol,
						       void *OldInterface, void *NewInterface);
	EFI_STATUS(EFIAPI *UninstallProtocolInterface)(EFI_HANDLE Handle, EFI_GUID *Protocol,
						       void *Interface);
	EFI_STATUS(EFIAPI *HandleProtocol)(EFI_HANDLE Handle, EFI_GUID *Protocol, void **Interface);
	void *Reserved;
	EFI_STATUS(EFIAPI *RegisterProtocolNotify)(EFI_GUID *Protocol, EFI_EVENT Event, void **Registration);
	EFI_STATUS(EFIAPI *LocateHandle)(EFI_LOCATE_SEARCH_TYPE SearchType, EFI_GUID *Protocol,
					 void *SearchKey, UINTN *BufferSize, EFI_HANDLE *Buffer);
	EFI_STATUS(EFIAPI *LocateDevicePath)(EFI_GUID *Protocol, EFI_DEVICE_PATH_PROTOCOL **DevicePath,
					     EFI_HANDLE *Device);
	EFI_STATUS(EFIAPI *InstallConfigurationTable)(EFI_GUID *Guid, void *Table);
	/* images */
	EFI_STATUS(EFIAPI *LoadImage)(BOOLEAN BootPolicy, EFI_HANDLE ParentImageHandle,
				      EFI_DEVICE_PATH_PROTOCOL *DevicePath, void *SourceBuffer,
				      UINTN SourceSize, EFI_HANDLE *ImageHandle);
	EFI_STATUS(EFIAPI *StartImage)(EFI_HANDLE ImageHandle, UINTN *ExitDataSize, CHAR16 **ExitData);
	EFI_STATUS(EFIAPI *Exit)(EFI_HANDLE ImageHandle, EFI_STATUS ExitStatus, UINTN ExitDataSize,
				 CHAR16 *ExitData);
	EFI_STATUS(EFIAPI *UnloadImage)(EFI_HANDLE ImageHandle);
	EFI_STATUS(EFIAPI *ExitBootServices)(EFI_HANDLE ImageHandle, UINTN MapKey);
	/* miscellaneous */
	EFI_STATUS(EFIAPI *GetNextMonotonicCount)(uint64_t *Count);
	EFI_STATUS(EFIAPI *Stall)(UINTN Microseconds);
	EFI_STATUS(EFIAPI *SetWatchdogTimer)(UINTN Timeout, uint64_t WatchdogCode, UINTN DataSize,
					     CHAR16 *WatchdogData);
	/* driver support */
	EFI_STATUS(EFIAPI *ConnectController)(EFI_HANDLE ControllerHandle, EFI_HANDLE *DriverImageHandle,
					      EFI_DEVICE_PATH_PROTOCOL *RemainingDevicePath, BOOLEAN Recursive);
	EFI_STATUS(EFIAPI *DisconnectController)(EFI_HANDLE ControllerHandle, EFI_HANDLE DriverImageHandle,
						 EFI_HANDLE ChildHandle);
	/* open and close protocol */
	EFI_STATUS(EFIAPI *OpenProtocol)(EFI_HANDLE Handle, EFI_GUID *Protocol, void **Interface,
					 EFI_HANDLE AgentHandle, EFI_HANDLE ControllerHandle,
					 uint32_t Attributes);
	EFI_STATUS(EFIAPI *CloseProtocol)(EFI_HANDLE Handle, EFI_GUID *Protocol, EFI_HANDLE AgentHandle,
					  EFI_HANDLE ControllerHandle);
	EFI_STATUS(EFIAPI *OpenProtocolInformation)(EFI_HANDLE Handle, EFI_GUID *Protocol,
						    EFI_OPEN_PROTOCOL_INFORMATION_ENTRY **EntryBuffer,
						    UINTN *EntryCount);
	/* library services */
	EFI_STATUS(EFIAPI *ProtocolsPerHandle)(EFI_HANDLE Handle, EFI_GUID ***ProtocolBuffer,
					       UINTN *ProtocolBufferCount);
	EFI_STATUS(EFIAPI *LocateHandleBuffer)(EFI_LOCATE_SEARCH_TYPE SearchType, EFI_GUID *Protocol,
					       void *SearchKey, UINTN *NoHandles, EFI_HANDLE **Buffer);
	EFI_STATUS(EFIAPI *LocateProtocol)(EFI_GUID *Protocol, void *Registration, void **Interface);
	EFI_STATUS(EFIAPI *InstallMultipleProtocolInterfaces)(EFI_HANDLE *Handle, ...);
	EFI_STATUS(EFIAPI *UninstallMultipleProtocolInterfaces)(EFI_HANDLE Handle, ...);
	/* 32-bit CRC */
	EFI_STATUS(EFIAPI *CalculateCrc32)(void *Data, UINTN DataSize, uint32_t *Crc32);
	/* miscellaneous */
	void(EFIAPI *CopyMem)(void *Destination, void *Source, UINTN Length);
	void(EFIAPI *SetMem)(void *Buffer, UINTN Size, uint8_t Value);
	EFI_STATUS(EFIAPI *CreateEventEx)(uint32_t Type, EFI_TPL NotifyTpl, EFI_EVENT_NOTIFY NotifyFunction,
					  const void *NotifyContext, const EFI_GUID *EventGroup,
					  EFI_EVENT *Event);
} EFI_BOOT_SERVICES;
_Static_assert(sizeof(EFI_BOOT_SERVICES) == 24 + 44 * 8, "EFI_BOOT_SERVICES");
_Static_assert(offsetof(EFI_BOOT_SERVICES, OpenProtocol) == 0x118, "EFI_BOOT_SERVICES.OpenProtocol");
_Static_assert(offsetof(EFI_BOOT_SERVICES, CalculateCrc32) == 0x158, "EFI_BOOT_SERVICES.CalculateCrc32");

typedef struct {
	EFI_GUID VendorGuid;
	void *VendorTable;
} EFI_CONFIGURATION_TABLE;
_Static_assert(sizeof(EFI_CONFIGURATION_TABLE) == 24, "EFI_CONFIGURATION_TABLE");

typedef struct EFI_SYSTEM_TABLE {
	EFI_TABLE_HEADER Hdr;
	CHAR16 *FirmwareVendor;
	uint32_t FirmwareRevision;
	EFI_HANDLE ConsoleInHandle;
	void *ConIn; /* EFI_SIMPLE_TEXT_INPUT_PROTOCOL * */
	EFI_HANDLE ConsoleOutHandle;
	void *ConOut; /* EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL * */
	EFI_HANDLE StandardErrorHandle;
	void *StdErr;
	EFI_RUNTIME_SERVICES *RuntimeServices;
	EFI_BOOT_SERVICES *BootServices;
	UINTN NumberOfTableEntries;
	EFI_CONFIGURATION_TABLE *ConfigurationTable;
} EFI_SYSTEM_TABLE;
_Static_assert(sizeof(EFI_SYSTEM_TABLE) == 120, "EFI_SYSTEM_TABLE");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, BootServices) == 96, "EFI_SYSTEM_TABLE.BootServices");

typedef EFI_STATUS(EFIAPI *EFI_IMAGE_ENTRY_POINT)(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable);

/* --- device paths (10) ------------------------------------------------------------------------------ */
#define HARDWARE_DEVICE_PATH  0x01
#define ACPI_DEVICE_PATH      0x02
#define MESSAGING_DEVICE_PATH 0x03
#define MEDIA_DEVICE_PATH     0x04
#define BBS_DEVICE_PATH       0x05
#define END_DEVICE_PATH_TYPE  0x7f
#define END_ENTIRE_DEVICE_PATH_SUBTYPE   0xff
#define END_INSTANCE_DEVICE_PATH_SUBTYPE 0x01

#define HW_VENDOR_DP 0x04
#define MSG_SCSI_DP  0x02
#define MSG_VENDOR_DP 0x0a
#define MEDIA_HARDDRIVE_DP 0x01
#define MEDIA_CDROM_DP     0x02
#define MEDIA_VENDOR_DP    0x03
#define MEDIA_FILEPATH_DP  0x04

#define MBR_TYPE_PCAT                 0x01
#define MBR_TYPE_EFI_PARTITION_TABLE_HEADER 0x02
#define NO_DISK_SIGNATURE   0x00
#define SIGNATURE_TYPE_MBR  0x01
#define SIGNATURE_TYPE_GUID 0x02

typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	uint32_t PartitionNumber;
	uint64_t PartitionStart;
	uint64_t PartitionSize;
	uint8_t Signature[16];
	uint8_t MBRType;
	uint8_t SignatureType;
} __attribute__((packed)) HARDDRIVE_DEVICE_PATH;
_Static_assert(sizeof(HARDDRIVE_DEVICE_PATH) == 42, "HARDDRIVE_DEVICE_PATH");

typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	uint32_t BootEntry;
	uint64_t PartitionStart;
	uint64_t PartitionSize;
} __attribute__((packed)) CDROM_DEVICE_PATH;
_Static_assert(sizeof(CDROM_DEVICE_PATH) == 24, "CDROM_DEVICE_PATH");

typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	EFI_GUID Guid;
} __attribute__((packed)) VENDOR_DEVICE_PATH;
_Static_assert(sizeof(VENDOR_DEVICE_PATH) == 20, "VENDOR_DEVICE_PATH");

typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	uint16_t Pun;
	uint16_t Lun;
} __attribute__((packed)) SCSI_DEVICE_PATH;
_Static_assert(sizeof(SCSI_DEVICE_PATH) == 8, "SCSI_DEVICE_PATH");

typedef struct {
	EFI_DEVICE_PATH_PROTOCOL Header;
	CHAR16 PathName[]; /* NUL-terminated */
} __attribute__((packed)) FILEPATH_DEVICE_PATH;
_Static_assert(sizeof(FILEPATH_DEVICE_PATH) == 4, "FILEPATH_DEVICE_PATH");

/* --- protocol GUIDs ----------------------------------------------------------------------------------- */
#define EFI_DEVICE_PATH_PROTOCOL_GUID \
	EFI_GUID_INIT(0x09576e91, 0x6d3f, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_LOADED_IMAGE_PROTOCOL_GUID \
	EFI_GUID_INIT(0x5b1b31a1, 0x9562, 0x11d2, 0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_LOADED_IMAGE_DEVICE_PATH_PROTOCOL_GUID \
	EFI_GUID_INIT(0xbc62157e, 0x3e33, 0x4fec, 0x99, 0x20, 0x2d, 0x3b, 0x36, 0xd7, 0x50, 0xdf)
#define EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID \
	EFI_GUID_INIT(0x964e5b22, 0x6459, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_FILE_INFO_ID \
	EFI_GUID_INIT(0x09576e92, 0x6d3f, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_FILE_SYSTEM_INFO_ID \
	EFI_GUID_INIT(0x09576e93, 0x6d3f, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_BLOCK_IO_PROTOCOL_GUID \
	EFI_GUID_INIT(0x964e5b21, 0x6459, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_DISK_IO_PROTOCOL_GUID \
	EFI_GUID_INIT(0xce345171, 0xba0b, 0x11d2, 0x8e, 0x4f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_PART_TYPE_EFI_SYSTEM_PART_GUID \
	EFI_GUID_INIT(0xc12a7328, 0xf81f, 0x11d2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b)
#define EFI_GLOBAL_VARIABLE_GUID \
	EFI_GUID_INIT(0x8be4df61, 0x93ca, 0x11d2, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c)

/* --- protocols the firmware implements --------------------------------------------------------------- */
#define EFI_LOADED_IMAGE_PROTOCOL_REVISION 0x1000
typedef struct {
	uint32_t Revision;
	EFI_HANDLE ParentHandle;
	EFI_SYSTEM_TABLE *SystemTable;
	EFI_HANDLE DeviceHandle;
	EFI_DEVICE_PATH_PROTOCOL *FilePath;
	void *Reserved;
	uint32_t LoadOptionsSize;
	void *LoadOptions;
	void *ImageBase;
	uint64_t ImageSize;
	EFI_MEMORY_TYPE ImageCodeType;
	EFI_MEMORY_TYPE ImageDataType;
	EFI_IMAGE_UNLOAD Unload;
} EFI_LOADED_IMAGE_PROTOCOL;
_Static_assert(sizeof(EFI_LOADED_IMAGE_PROTOCOL) == 96, "EFI_LOADED_IMAGE_PROTOCOL");

typedef struct {
	uint32_t MediaId;
	BOOLEAN RemovableMedia;
	BOOLEAN MediaPresent;
	BOOLEAN LogicalPartition;
	BOOLEAN ReadOnly;
	BOOLEAN WriteCaching;
	uint32_t BlockSize;
	uint32_t IoAlign;
	EFI_LBA LastBlock;
	EFI_LBA LowestAlignedLba;                /* revision 2 */
	uint32_t LogicalBlocksPerPhysicalBlock;  /* revision 2 */
	uint32_t OptimalTransferLengthGranularity; /* revision 3 */
} EFI_BLOCK_IO_MEDIA;
_Static_assert(sizeof(EFI_BLOCK_IO_MEDIA) == 48, "EFI_BLOCK_IO_MEDIA");
_Static_assert(offsetof(EFI_BLOCK_IO_MEDIA, LastBlock) == 24, "EFI_BLOCK_IO_MEDIA.LastBlock");

#define EFI_BLOCK_IO_PROTOCOL_REVISION3 0x0002001fu
typedef struct EFI_BLOCK_IO_PROTOCOL EFI_BLOCK_IO_PROTOCOL;
struct EFI_BLOCK_IO_PROTOCOL {
	uint64_t Revision;
	EFI_BLOCK_IO_MEDIA *Media;
	EFI_STATUS(EFIAPI *Reset)(EFI_BLOCK_IO_PROTOCOL *This, BOOLEAN ExtendedVerification);
	EFI_STATUS(EFIAPI *ReadBlocks)(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba,
				       UINTN BufferSize, void *Buffer);
	EFI_STATUS(EFIAPI *WriteBlocks)(EFI_BLOCK_IO_PROTOCOL *This, uint32_t MediaId, EFI_LBA Lba,
					UINTN BufferSize, void *Buffer);
	EFI_STATUS(EFIAPI *FlushBlocks)(EFI_BLOCK_IO_PROTOCOL *This);
};
_Static_assert(sizeof(EFI_BLOCK_IO_PROTOCOL) == 48, "EFI_BLOCK_IO_PROTOCOL");

#define EFI_FILE_MODE_READ   0x0000000000000001ull
#define EFI_FILE_MODE_WRITE  0x0000000000000002ull
#define EFI_FILE_MODE_CREATE 0x8000000000000000ull

#define EFI_FILE_READ_ONLY  0x01ull
#define EFI_FILE_HIDDEN     0x02ull
#define EFI_FILE_SYSTEM     0x04ull
#define EFI_FILE_RESERVED   0x08ull
#define EFI_FILE_DIRECTORY  0x10ull
#define EFI_FILE_ARCHIVE    0x20ull
#define EFI_FILE_VALID_ATTR 0x37ull

#define EFI_FILE_PROTOCOL_REVISION  0x00010000ull
#define EFI_FILE_PROTOCOL_REVISION2 0x00020000ull

typedef struct {
	EFI_EVENT Event;
	EFI_STATUS Status;
	UINTN BufferSize;
	void *Buffer;
} EFI_FILE_IO_TOKEN;

typedef struct EFI_FILE_PROTOCOL EFI_FILE_PROTOCOL;
struct EFI_FILE_PROTOCOL {
	uint64_t Revision;
	EFI_STATUS(EFIAPI *Open)(EFI_FILE_PROTOCOL *This, EFI_FILE_PROTOCOL **NewHandle, CHAR16 *FileName,
				 uint64_t OpenMode, uint64_t Attributes);
	EFI_STATUS(EFIAPI *Close)(EFI_FILE_PROTOCOL *This);
	EFI_STATUS(EFIAPI *Delete)(EFI_FILE_PROTOCOL *This);
	EFI_STATUS(EFIAPI *Read)(EFI_FILE_PROTOCOL *This, UINTN *BufferSize, void *Buffer);
	EFI_STATUS(EFIAPI *Write)(EFI_FILE_PROTOCOL *This, UINTN *BufferSize, void *Buffer);
	EFI_STATUS(EFIAPI *GetPosition)(EFI_FILE_PROTOCOL *This, uint64_t *Position);
	EFI_STATUS(EFIAPI *SetPosition)(EFI_FILE_PROTOCOL *This, uint64_t Position);
	EFI_STATUS(EFIAPI *GetInfo)(EFI_FILE_PROTOCOL *This, EFI_GUID *InformationType, UINTN *BufferSize,
				    void *Buffer);
	EFI_STATUS(EFIAPI *SetInfo)(EFI_FILE_PROTOCOL *This, EFI_GUID *InformationType, UINTN BufferSize,
				    void *Buffer);
	EFI_STATUS(EFIAPI *Flush)(EFI_FILE_PROTOCOL *This);
	EFI_STATUS(EFIAPI *OpenEx)(EFI_FILE_PROTOCOL *This, EFI_FILE_PROTOCOL **NewHandle, CHAR16 *FileName,
				   uint64_t OpenMode, uint64_t Attributes, EFI_FILE_IO_TOKEN *Token);
	EFI_STATUS(EFIAPI *ReadEx)(EFI_FILE_PROTOCOL *This, EFI_FILE_IO_TOKEN *Token);
	EFI_STATUS(EFIAPI *WriteEx)(EFI_FILE_PROTOCOL *This, EFI_FILE_IO_TOKEN *Token);
	EFI_STATUS(EFIAPI *FlushEx)(EFI_FILE_PROTOCOL *This, EFI_FILE_IO_TOKEN *Token);
};
_Static_assert(sizeof(EFI_FILE_PROTOCOL) == 120, "EFI_FILE_PROTOCOL");

typedef struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL EFI_SIMPLE_FILE_SYSTEM_PROTOCOL;
struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL {
	uint64_t Revision;
	EFI_STATUS(EFIAPI *OpenVolume)(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *This, EFI_FILE_PROTOCOL **Root);
};
_Static_assert(sizeof(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL) == 16, "EFI_SIMPLE_FILE_SYSTEM_PROTOCOL");

typedef struct {
	uint64_t Size; /* of the whole structure, name included */
	uint64_t FileSize;
	uint64_t PhysicalSize;
	EFI_TIME CreateTime;
	EFI_TIME LastAccessTime;
	EFI_TIME ModificationTime;
	uint64_t Attribute;
	CHAR16 FileName[];
} EFI_FILE_INFO;
_Static_assert(sizeof(EFI_FILE_INFO) == 80, "EFI_FILE_INFO");

typedef struct {
	uint64_t Size;
	BOOLEAN ReadOnly;
	uint64_t VolumeSize;
	uint64_t FreeSpace;
	uint32_t BlockSize;
	CHAR16 VolumeLabel[];
} EFI_FILE_SYSTEM_INFO;
_Static_assert(offsetof(EFI_FILE_SYSTEM_INFO, VolumeLabel) == 36, "EFI_FILE_SYSTEM_INFO");

/* ======================================================================================================
 * PE/COFF (Microsoft PE/COFF Specification): only what a PE32+ x64 loader needs.
 * ==================================================================================================== */
#define PE_DOS_MAGIC 0x5a4d     /* "MZ" */
#define PE_NT_SIGNATURE 0x00004550u /* "PE\0\0" */
#define PE_MACHINE_X64 0x8664
#define PE_OPT_MAGIC_PE32 0x10b
#define PE_OPT_MAGIC_PE32PLUS 0x20b

#define PE_FILE_RELOCS_STRIPPED 0x0001
#define PE_FILE_EXECUTABLE_IMAGE 0x0002

#define PE_SUBSYSTEM_EFI_APPLICATION 10
#define PE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER 11
#define PE_SUBSYSTEM_EFI_RUNTIME_DRIVER 12

#define PE_DIR_EXPORT 0
#define PE_DIR_IMPORT 1
#define PE_DIR_RESOURCE 2
#define PE_DIR_EXCEPTION 3
#define PE_DIR_SECURITY 4
#define PE_DIR_BASERELOC 5
#define PE_DIR_DEBUG 6
#define PE_NUM_DIRS 16

#define PE_SCN_CNT_CODE 0x00000020u
#define PE_SCN_CNT_INITIALIZED_DATA 0x00000040u
#define PE_SCN_CNT_UNINITIALIZED_DATA 0x00000080u
#define PE_SCN_MEM_DISCARDABLE 0x02000000u
#define PE_SCN_MEM_EXECUTE 0x20000000u
#define PE_SCN_MEM_READ 0x40000000u
#define PE_SCN_MEM_WRITE 0x80000000u

#define PE_REL_BASED_ABSOLUTE 0
#define PE_REL_BASED_HIGHLOW 3
#define PE_REL_BASED_DIR64 10

struct pe_dos_header {
	uint16_t e_magic;
	uint8_t e_other[58];
	uint32_t e_lfanew; /* file offset of the NT headers */
} __attribute__((packed));
_Static_assert(sizeof(struct pe_dos_header) == 64, "pe_dos_header");

struct pe_file_header {
	uint16_t machine;
	uint16_t number_of_sections;
	uint32_t time_date_stamp;
	uint32_t pointer_to_symbol_table;
	uint32_t number_of_symbols;
	uint16_t size_of_optional_header;
	uint16_t characteristics;
} __attribute__((packed));
_Static_assert(sizeof(struct pe_file_header) == 20, "pe_file_header");

struct pe_data_directory {
	uint32_t virtual_address;
	uint32_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct pe_data_directory) == 8, "pe_data_directory");

/* The fixed part of the PE32+ optional header; number_of_rva_and_sizes directories follow. */
struct pe_optional_header64 {
	uint16_t magic;
	uint8_t major_linker_version;
	uint8_t minor_linker_version;
	uint32_t size_of_code;
	uint32_t size_of_initialized_data;
	uint32_t size_of_uninitialized_data;
	uint32_t address_of_entry_point;
	uint32_t base_of_code;
	uint64_t image_base;
	uint32_t section_alignment;
	uint32_t file_alignment;
	uint16_t major_os_version;
	uint16_t minor_os_version;
	uint16_t major_image_version;
	uint16_t minor_image_version;
	uint16_t major_subsystem_version;
	uint16_t minor_subsystem_version;
	uint32_t win32_version_value;
	uint32_t size_of_image;
	uint32_t size_of_headers;
	uint32_t checksum;
	uint16_t subsystem;
	uint16_t dll_characteristics;
	uint64_t size_of_stack_reserve;
	uint64_t size_of_stack_commit;
	uint64_t size_of_heap_reserve;
	uint64_t size_of_heap_commit;
	uint32_t loader_flags;
	uint32_t number_of_rva_and_sizes;
} __attribute__((packed));
_Static_assert(sizeof(struct pe_optional_header64) == 112, "pe_optional_header64");

struct pe_nt_headers64 {
	uint32_t signature;
	struct pe_file_header file;
	struct pe_optional_header64 opt;
	struct pe_data_directory dirs[PE_NUM_DIRS];
} __attribute__((packed));
_Static_assert(sizeof(struct pe_nt_headers64) == 264, "pe_nt_headers64");

struct pe_section_header {
	char name[8];
	uint32_t virtual_size;
	uint32_t virtual_address;
	uint32_t size_of_raw_data;
	uint32_t pointer_to_raw_data;
	uint32_t pointer_to_relocations;
	uint32_t pointer_to_linenumbers;
	uint16_t number_of_relocations;
	uint16_t number_of_linenumbers;
	uint32_t characteristics;
} __attribute__((packed));
_Static_assert(sizeof(struct pe_section_header) == 40, "pe_section_header");

/* A base relocation block: this header, then (size_of_block - 8) / 2 entries of type << 12 | offset. */
struct pe_base_relocation {
	uint32_t virtual_address;
	uint32_t size_of_block;
} __attribute__((packed));
_Static_assert(sizeof(struct pe_base_relocation) == 8, "pe_base_relocation");

/* ======================================================================================================
 * GPT (UEFI 5.3) and MBR (UEFI 5.2)
 * ==================================================================================================== */
#define GPT_HEADER_SIGNATURE 0x5452415020494645ull /* "EFI PART" */
#define GPT_HEADER_REVISION_1_0 0x00010000u
#define GPT_HEADER_MIN_SIZE 92u

struct gpt_header {
	uint64_t signature;
	uint32_t revision;
	uint32_t header_size;
	uint32_t header_crc32;
	uint32_t reserved;
	uint64_t my_lba;
	uint64_t alternate_lba;
	uint64_t first_usable_lba;
	uint64_t last_usable_lba;
	EFI_GUID disk_guid;
	uint64_t partition_entry_lba;
	uint32_t number_of_partition_entries;
	uint32_t size_of_partition_entry;
	uint32_t partition_entry_array_crc32;
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_header) == 92, "gpt_header");

struct gpt_entry {
	EFI_GUID partition_type_guid;
	EFI_GUID unique_partition_guid;
	uint64_t starting_lba;
	uint64_t ending_lba; /* inclusive */
	uint64_t attributes;
	CHAR16 partition_name[36];
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_entry) == 128, "gpt_entry");

#define MBR_SIGNATURE 0xaa55
#define MBR_TYPE_EFI_PROTECTIVE 0xee
#define MBR_TYPE_EFI_SYSTEM 0xef
#define MBR_TYPE_EXTENDED_CHS 0x05
#define MBR_TYPE_EXTENDED_LBA 0x0f
#define MBR_TYPE_EXTENDED_LINUX 0x85

struct mbr_partition {
	uint8_t boot_indicator;
	uint8_t starting_chs[3];
	uint8_t os_type;
	uint8_t ending_chs[3];
	uint32_t starting_lba;
	uint32_t size_in_lba;
} __attribute__((packed));
_Static_assert(sizeof(struct mbr_partition) == 16, "mbr_partition");

struct mbr {
	uint8_t boot_code[440];
	uint32_t unique_mbr_signature;
	uint16_t unknown;
	struct mbr_partition partition[4];
	uint16_t signature;
} __attribute__((packed));
_Static_assert(sizeof(struct mbr) == 512, "mbr");

/* ======================================================================================================
 * El Torito (Bootable CD-ROM Format Specification 1.0) over ISO 9660 (2048-byte sectors)
 * ==================================================================================================== */
#define ISO_SECTOR_SIZE 2048u
#define ISO_VD_FIRST_SECTOR 16u
#define ISO_VD_TYPE_BOOT_RECORD 0
#define ISO_VD_TYPE_PRIMARY 1
#define ISO_VD_TYPE_TERMINATOR 255
#define ELTORITO_SYSTEM_ID "EL TORITO SPECIFICATION"

struct iso_boot_record {
	uint8_t type;             /* 0 */
	char id[5];               /* "CD001" */
	uint8_t version;          /* 1 */
	char boot_system_id[32];  /* "EL TORITO SPECIFICATION", NUL padded */
	uint8_t boot_id[32];
	uint32_t catalog_sector;  /* absolute sector of the boot catalog */
	uint8_t unused[1973];
} __attribute__((packed));
_Static_assert(sizeof(struct iso_boot_record) == 2048, "iso_boot_record");

#define ELTORITO_PLATFORM_X86 0x00
#define ELTORITO_PLATFORM_EFI 0xef
#define ELTORITO_HEADER_VALIDATION 0x01
#define ELTORITO_HEADER_MORE 0x90
#define ELTORITO_HEADER_FINAL 0x91
#define ELTORITO_BOOTABLE 0x88
#define ELTORITO_MEDIA_NOEMU 0
#define ELTORITO_MEDIA_MASK 0x0f

struct eltorito_validation_entry {
	uint8_t header_id;   /* 1 */
	uint8_t platform_id;
	uint16_t reserved;
	char id_string[24];
	uint16_t checksum;   /* the 16 words of the entry sum to 0 */
	uint8_t key55;
	uint8_t keyaa;
} __attribute__((packed));
_Static_assert(sizeof(struct eltorito_validation_entry) == 32, "eltorito_validation_entry");

/* The initial/default entry and every section entry. */
struct eltorito_boot_entry {
	uint8_t boot_indicator; /* 0x88 bootable, 0x00 not */
	uint8_t media_type;     /* low nibble: 0 no emulation, 1-3 floppy, 4 hard disk */
	uint16_t load_segment;
	uint8_t system_type;
	uint8_t unused;
	uint16_t sector_count;  /* 512-byte virtual sectors */
	uint32_t load_rba;      /* 2048-byte sector */
	uint8_t selection[20];
} __attribute__((packed));
_Static_assert(sizeof(struct eltorito_boot_entry) == 32, "eltorito_boot_entry");

struct eltorito_section_header {
	uint8_t header_indicator; /* 0x90 more headers follow, 0x91 final */
	uint8_t platform_id;
	uint16_t section_entries;
	char id_string[28];
} __attribute__((packed));
_Static_assert(sizeof(struct eltorito_section_header) == 32, "eltorito_section_header");

/* ======================================================================================================
 * FAT12/16/32 (Microsoft FAT Specification)
 * ==================================================================================================== */
struct fat_bpb {
	uint8_t jmp_boot[3];
	char oem_name[8];
	uint16_t bytes_per_sector;
	uint8_t sectors_per_cluster;
	uint16_t reserved_sectors;
	uint8_t num_fats;
	uint16_t root_entries;
	uint16_t total_sectors16;
	uint8_t media;
	uint16_t fat_size16;
	uint16_t sectors_per_track;
	uint16_t num_heads;
	uint32_t hidden_sectors;
	uint32_t total_sectors32;
} __attribute__((packed));
_Static_assert(sizeof(struct fat_bpb) == 36, "fat_bpb");

/* Follows the BPB on FAT32 volumes. */
struct fat32_ext {
	uint32_t fat_size32;
	uint16_t ext_flags;
	uint16_t fs_version;
	uint32_t root_cluster;
	uint16_t fs_info;
	uint16_t backup_boot_sector;
	uint8_t reserved[12];
	uint8_t drive_number;
	uint8_t reserved1;
	uint8_t boot_signature;
	uint32_t volume_id;
	char volume_label[11];
	char fs_type[8];
} __attribute__((packed));
_Static_assert(sizeof(struct fat32_ext) == 54, "fat32_ext");

#define FAT_ATTR_READ_ONLY 0x01
#define FAT_ATTR_HIDDEN 0x02
#define FAT_ATTR_SYSTEM 0x04
#define FAT_ATTR_VOLUME_ID 0x08
#define FAT_ATTR_DIRECTORY 0x10
#define FAT_ATTR_ARCHIVE 0x20
#define FAT_ATTR_LONG_NAME 0x0f
#define FAT_ATTR_LONG_NAME_MASK 0x3f
#define FAT_DIRENT_FREE 0xe5
#define FAT_DIRENT_END 0x00
#define FAT_LFN_LAST 0x40

struct fat_dirent {
	char name[11];
	uint8_t attr;
	uint8_t nt_res; /* 0x08: base name lower case, 0x10: extension lower case */
	uint8_t crt_time_tenth;
	uint16_t crt_time;
	uint16_t crt_date;
	uint16_t lst_acc_date;
	uint16_t fst_clus_hi;
	uint16_t wrt_time;
	uint16_t wrt_date;
	uint16_t fst_clus_lo;
	uint32_t file_size;
} __attribute__((packed));
_Static_assert(sizeof(struct fat_dirent) == 32, "fat_dirent");

struct fat_lfn_entry {
	uint8_t ord;
	uint16_t name1[5];
	uint8_t attr; /* FAT_ATTR_LONG_NAME */
	uint8_t type; /* 0 */
	uint8_t checksum;
	uint16_t name2[6];
	uint16_t fst_clus_lo; /* 0 */
	uint16_t name3[2];
} __attribute__((packed));
_Static_assert(sizeof(struct fat_lfn_entry) == 32, "fat_lfn_entry");

#endif
