/* UEFI storage protocols (UEFI 2.10 chapters 13.7, 13.8, 13.18) that include/gen2vm/proto/efi.h does
 * not define: DiskIo, PartitionInfo and the file system volume label information type. */
#ifndef GEN2VM_PROTO_EFI_STORAGE_H
#define GEN2VM_PROTO_EFI_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

#define EFI_DISK_IO_PROTOCOL_REVISION 0x00010000ull
typedef struct EFI_DISK_IO_PROTOCOL EFI_DISK_IO_PROTOCOL;
struct EFI_DISK_IO_PROTOCOL {
	uint64_t Revision;
	EFI_STATUS(EFIAPI *ReadDisk)(EFI_DISK_IO_PROTOCOL *This, uint32_t MediaId, uint64_t Offset, UINTN BufferSize,
				     void *Buffer);
	EFI_STATUS(EFIAPI *WriteDisk)(EFI_DISK_IO_PROTOCOL *This, uint32_t MediaId, uint64_t Offset, UINTN BufferSize,
				      void *Buffer);
};
_Static_assert(sizeof(EFI_DISK_IO_PROTOCOL) == 24, "EFI_DISK_IO_PROTOCOL");

#define EFI_PARTITION_INFO_PROTOCOL_GUID \
	EFI_GUID_INIT(0x8cf2f62c, 0xbc9b, 0x4821, 0x80, 0x8d, 0xec, 0x9e, 0xc4, 0x21, 0xa1, 0xa0)
#define EFI_PARTITION_INFO_PROTOCOL_REVISION 0x0001000u
#define PARTITION_TYPE_OTHER 0x00u
#define PARTITION_TYPE_MBR 0x01u
#define PARTITION_TYPE_GPT 0x02u

typedef struct {
	uint32_t Revision;
	uint32_t Type;   /* PARTITION_TYPE_* */
	uint8_t System;  /* 1: an EFI system partition */
	uint8_t Reserved[7];
	union {
		struct mbr_partition Mbr;
		struct gpt_entry Gpt;
	} Info;
} __attribute__((packed)) EFI_PARTITION_INFO_PROTOCOL;
_Static_assert(sizeof(EFI_PARTITION_INFO_PROTOCOL) == 144, "EFI_PARTITION_INFO_PROTOCOL");

#define EFI_FILE_SYSTEM_VOLUME_LABEL_ID \
	EFI_GUID_INIT(0xdb47d7d3, 0xfe81, 0x11d3, 0x9a, 0x35, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d)

#endif
