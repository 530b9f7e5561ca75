/* Variable services between the firmware and the VMM (host-call ops 0x10-0x1f, include/gen2vm/proto/fw.h):
 * the VMM owns the UEFI variable store, as Hyper-V does; the firmware's runtime services forward each
 * call. Also the variable attributes (UEFI 2.10 8.2), EFI_LOAD_OPTION (3.1.3) and gen2vm's vendor GUID.
 *
 * Names are UCS-2, NUL-terminated; name_size counts bytes including the NUL (as VariableNameSize).
 * Every request carries FW_VAR_F_RUNTIME once ExitBootServices has succeeded; the VMM also latches
 * it (a request without it after one with it is still treated as runtime until the VM resets).
 */
#ifndef GEN2VM_PROTO_FW_VAR_H
#define GEN2VM_PROTO_FW_VAR_H

#include <stdint.h>

#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/fw.h"

/* --- variable attributes (UEFI 2.10 8.2.1) ----------------------------------------------------------- */
#define EFI_VARIABLE_NON_VOLATILE                          0x00000001u
#define EFI_VARIABLE_BOOTSERVICE_ACCESS                    0x00000002u
#define EFI_VARIABLE_RUNTIME_ACCESS                        0x00000004u
#define EFI_VARIABLE_HARDWARE_ERROR_RECORD                 0x00000008u
#define EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS            0x00000010u /* deprecated */
#define EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS 0x00000020u
#define EFI_VARIABLE_APPEND_WRITE                          0x00000040u
#define EFI_VARIABLE_ENHANCED_AUTHENTICATED_ACCESS         0x00000080u
#define EFI_VARIABLE_ATTRIBUTES_MASK                       0x000000ffu


/* --- EFI_LOAD_OPTION (UEFI 2.10 3.1.3): Boot#### variables ---------------------------------------------
 * uint32 Attributes, uint16 FilePathListLength, CHAR16 Description[] (NUL-terminated), then
 * FilePathListLength bytes of device paths, then optional data up to the variable's end. */
#define LOAD_OPTION_ACTIVE          0x00000001u
#define LOAD_OPTION_FORCE_RECONNECT 0x00000002u
#define LOAD_OPTION_HIDDEN          0x00000008u
#define LOAD_OPTION_CATEGORY        0x00001f00u
#define LOAD_OPTION_CATEGORY_BOOT   0x00000000u
#define LOAD_OPTION_CATEGORY_APP    0x00000100u

struct efi_load_option_hdr {
	uint32_t attributes;
	uint16_t file_path_list_length;
} __attribute__((packed));
_Static_assert(sizeof(struct efi_load_option_hdr) == 6, "efi_load_option_hdr");

/* BootOptionSupport bits (3.1.4) and OsIndications bits (8.5.4). */
#define EFI_BOOT_OPTION_SUPPORT_KEY     0x00000001u
#define EFI_BOOT_OPTION_SUPPORT_APP     0x00000002u
#define EFI_BOOT_OPTION_SUPPORT_SYSPREP 0x00000010u
#define EFI_OS_INDICATIONS_BOOT_TO_FW_UI 0x0000000000000001ull

/* gen2vm's own variables: "PauseAfterBootFailure" (UINT8 0/1, NV+BS+RT), read by the boot manager;
 * "NetworkBootPreferredProtocol" (UINT8 4 or 6, NV+BS+RT; absent: 4), read by the PXE code. */
#define GEN2VM_VENDOR_GUID \
	EFI_GUID_INIT(0x3c1e6b0d, 0x52a4, 0x4d8e, 0x9f, 0x26, 0x67, 0x65, 0x6e, 0x32, 0x76, 0x6d)

/* --- limits the VMM enforces ------------------------------------------------------------------------- */
#define FW_VAR_NAME_MAX  1024u          /* bytes of a name with its NUL */
#define FW_VAR_DATA_MAX  (32u * 1024)   /* bytes of one variable's data */
#define FW_VAR_NV_STORE  (256u * 1024)  /* non-volatile store: names + data + 32 bytes a variable */
#define FW_VAR_VOL_STORE (64u * 1024)   /* volatile store, same accounting */
#define FW_VAR_OVERHEAD  32u

/* --- requests ----------------------------------------------------------------------------------------- */
enum fw_var_op {
	/* in: name_size, guid, data_size = caller's buffer capacity; payload = name.
	 * out: attributes, data_size = the variable's size (also on EFI_BUFFER_TOO_SMALL), payload
	 * after the name = the data when it fits in both the capacity and the request. */
	FW_OP_VAR_GET = 0x10,
	/* in: name_size, guid, attributes, data_size; payload = name then data. */
	FW_OP_VAR_SET = 0x11,
	/* in: name_size, guid = the previous name (name_size 2 with an empty name: the first variable),
	 * data_size = the caller's name buffer capacity in bytes. out: name_size = the next name's size
	 * (also on EFI_BUFFER_TOO_SMALL), guid, payload = the next name (the request must have room). */
	FW_OP_VAR_NEXT_NAME = 0x12,
	FW_OP_VAR_QUERY_INFO = 0x13, /* struct fw_var_query_req */
};

#define FW_VAR_F_RUNTIME  (1u << 0) /* ExitBootServices has succeeded */
/* The firmware itself writes a variable the OS may only read (BootCurrent, BootOptionSupport...):
 * honoured before ExitBootServices only. */
#define FW_VAR_F_FIRMWARE (1u << 1)

struct fw_var_req {
	struct fw_host_req hdr;
	uint32_t flags;      /* FW_VAR_F_* */
	uint32_t attributes;
	uint32_t name_size;
	uint32_t data_size;
	EFI_GUID guid;
	uint8_t payload[];   /* name (name_size bytes), then data */
} __attribute__((packed));
_Static_assert(sizeof(struct fw_var_req) == 48, "fw_var_req");

struct fw_var_query_req {
	struct fw_host_req hdr;
	uint32_t flags;
	uint32_t attributes;
	uint64_t max_storage;   /* out: MaximumVariableStorageSize */
	uint64_t remaining;     /* out: RemainingVariableStorageSize */
	uint64_t max_var_size;  /* out: MaximumVariableSize */
} __attribute__((packed));
_Static_assert(sizeof(struct fw_var_query_req) == 48, "fw_var_query_req");

/* The largest request the firmware needs: a name and a full variable. */
#define FW_VAR_REQ_MAX (sizeof(struct fw_var_req) + FW_VAR_NAME_MAX + FW_VAR_DATA_MAX)
_Static_assert(FW_VAR_REQ_MAX <= FW_HOST_REQ_MAX, "FW_VAR_REQ_MAX");

#endif
