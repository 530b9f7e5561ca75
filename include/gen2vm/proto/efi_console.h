/* UEFI protocols of the firmware's consoles and miscellaneous services that efi.h does not carry:
 * Simple Text Output/Input(Ex) (UEFI 2.10 chapter 12), RNG (37.5), Device Path To Text (10.6), the
 * configuration table GUIDs (4.6) for ACPI and SMBIOS, and device path subtypes beyond efi.h's
 * (LoadFile2, the Linux initrd media path and HW_MEMMAP_DP are in efi_bs.h). Shared by the VMM, the
 * firmware and the test guests. */
#ifndef GEN2VM_PROTO_EFI_CONSOLE_H
#define GEN2VM_PROTO_EFI_CONSOLE_H

#include "gen2vm/proto/efi.h"

/* --- Simple Text Output (12.4) --------------------------------------------------------------------- */
#define EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL_GUID \
	EFI_GUID_INIT(0x387477c2, 0x69c7, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)

#define EFI_BLACK        0x00
#define EFI_BLUE         0x01
#define EFI_GREEN        0x02
#define EFI_CYAN         0x03
#define EFI_RED          0x04
#define EFI_MAGENTA      0x05
#define EFI_BROWN        0x06
#define EFI_LIGHTGRAY    0x07
#define EFI_BRIGHT       0x08
#define EFI_WHITE        0x0f
#define EFI_BACKGROUND_BLACK 0x00
#define EFI_TEXT_ATTR(fg, bg) ((fg) | ((bg) << 4))

typedef struct {
	int32_t MaxMode;
	int32_t Mode;
	int32_t Attribute;
	int32_t CursorColumn;
	int32_t CursorRow;
	BOOLEAN CursorVisible;
} SIMPLE_TEXT_OUTPUT_MODE;
_Static_assert(sizeof(SIMPLE_TEXT_OUTPUT_MODE) == 24, "SIMPLE_TEXT_OUTPUT_MODE");

typedef struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL;
struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL {
	EFI_STATUS(EFIAPI *Reset)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, BOOLEAN ExtendedVerification);
	EFI_STATUS(EFIAPI *OutputString)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, CHAR16 *String);
	EFI_STATUS(EFIAPI *TestString)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, CHAR16 *String);
	EFI_STATUS(EFIAPI *QueryMode)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN ModeNumber, UINTN *Columns,
				      UINTN *Rows);
	EFI_STATUS(EFIAPI *SetMode)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN ModeNumber);
	EFI_STATUS(EFIAPI *SetAttribute)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN Attribute);
	EFI_STATUS(EFIAPI *ClearScreen)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This);
	EFI_STATUS(EFIAPI *SetCursorPosition)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, UINTN Column, UINTN Row);
	EFI_STATUS(EFIAPI *EnableCursor)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *This, BOOLEAN Visible);
	SIMPLE_TEXT_OUTPUT_MODE *Mode;
};
_Static_assert(sizeof(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL) == 80, "EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL");

/* --- Simple Text Input (12.3) and Ex (12.2) ---------------------------------------------------------- */
#define EFI_SIMPLE_TEXT_INPUT_PROTOCOL_GUID \
	EFI_GUID_INIT(0x387477c1, 0x69c7, 0x11d2, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b)
#define EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL_GUID \
	EFI_GUID_INIT(0xdd9e7534, 0x7762, 0x4698, 0x8c, 0x14, 0xf5, 0x85, 0x17, 0xa6, 0x25, 0xaa)

/* EFI_INPUT_KEY.ScanCode (Table 12.2) */
#define SCAN_NULL      0x00
#define SCAN_UP        0x01
#define SCAN_DOWN      0x02
#define SCAN_RIGHT     0x03
#define SCAN_LEFT      0x04
#define SCAN_HOME      0x05
#define SCAN_END       0x06
#define SCAN_INSERT    0x07
#define SCAN_DELETE    0x08
#define SCAN_PAGE_UP   0x09
#define SCAN_PAGE_DOWN 0x0a
#define SCAN_F1        0x0b /* F1..F10 are 0x0b..0x14 */
#define SCAN_F10       0x14
#define SCAN_F11       0x15
#define SCAN_F12       0x16
#define SCAN_ESC       0x17

#define CHAR_NULL            0x0000
#define CHAR_BACKSPACE       0x0008
#define CHAR_TAB             0x0009
#define CHAR_LINEFEED        0x000a
#define CHAR_CARRIAGE_RETURN 0x000d

typedef struct {
	uint16_t ScanCode;
	CHAR16 UnicodeChar;
} EFI_INPUT_KEY;
_Static_assert(sizeof(EFI_INPUT_KEY) == 4, "EFI_INPUT_KEY");

typedef struct EFI_SIMPLE_TEXT_INPUT_PROTOCOL EFI_SIMPLE_TEXT_INPUT_PROTOCOL;
struct EFI_SIMPLE_TEXT_INPUT_PROTOCOL {
	EFI_STATUS(EFIAPI *Reset)(EFI_SIMPLE_TEXT_INPUT_PROTOCOL *This, BOOLEAN ExtendedVerification);
	EFI_STATUS(EFIAPI *ReadKeyStroke)(EFI_SIMPLE_TEXT_INPUT_PROTOCOL *This, EFI_INPUT_KEY *Key);
	EFI_EVENT WaitForKey;
};
_Static_assert(sizeof(EFI_SIMPLE_TEXT_INPUT_PROTOCOL) == 24, "EFI_SIMPLE_TEXT_INPUT_PROTOCOL");

typedef uint8_t EFI_KEY_TOGGLE_STATE;
#define EFI_SHIFT_STATE_VALID  0x80000000u
#define EFI_TOGGLE_STATE_VALID 0x80
#define EFI_KEY_STATE_EXPOSED  0x40
#define EFI_SCROLL_LOCK_ACTIVE 0x01
#define EFI_NUM_LOCK_ACTIVE    0x02
#define EFI_CAPS_LOCK_ACTIVE   0x04
#define EFI_RIGHT_SHIFT_PRESSED   0x00000001u
#define EFI_LEFT_SHIFT_PRESSED    0x00000002u
#define EFI_RIGHT_CONTROL_PRESSED 0x00000004u
#define EFI_LEFT_CONTROL_PRESSED  0x00000008u
#define EFI_RIGHT_ALT_PRESSED     0x00000010u
#define EFI_LEFT_ALT_PRESSED      0x00000020u
#define EFI_RIGHT_LOGO_PRESSED    0x00000040u
#define EFI_LEFT_LOGO_PRESSED     0x00000080u

typedef struct {
	uint32_t KeyShiftState;
	EFI_KEY_TOGGLE_STATE KeyToggleState;
} EFI_KEY_STATE;
_Static_assert(sizeof(EFI_KEY_STATE) == 8, "EFI_KEY_STATE");

typedef struct {
	EFI_INPUT_KEY Key;
	EFI_KEY_STATE KeyState;
} EFI_KEY_DATA;
_Static_assert(sizeof(EFI_KEY_DATA) == 12, "EFI_KEY_DATA");

typedef EFI_STATUS(EFIAPI *EFI_KEY_NOTIFY_FUNCTION)(EFI_KEY_DATA *KeyData);

typedef struct EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL;
struct EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL {
	EFI_STATUS(EFIAPI *Reset)(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, BOOLEAN ExtendedVerification);
	EFI_STATUS(EFIAPI *ReadKeyStrokeEx)(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_DATA *KeyData);
	EFI_EVENT WaitForKeyEx;
	EFI_STATUS(EFIAPI *SetState)(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_TOGGLE_STATE *KeyToggleState);
	EFI_STATUS(EFIAPI *RegisterKeyNotify)(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, EFI_KEY_DATA *KeyData,
					      EFI_KEY_NOTIFY_FUNCTION KeyNotificationFunction, void **NotifyHandle);
	EFI_STATUS(EFIAPI *UnregisterKeyNotify)(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL *This, void *NotificationHandle);
};
_Static_assert(sizeof(EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL) == 48, "EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL");

/* --- RNG (37.5) -------------------------------------------------------------------------------------- */
#define EFI_RNG_PROTOCOL_GUID \
	EFI_GUID_INIT(0x3152bca5, 0xeade, 0x433d, 0x86, 0x2e, 0xc0, 0x1c, 0xdc, 0x29, 0x1f, 0x44)
#define EFI_RNG_ALGORITHM_RAW \
	EFI_GUID_INIT(0xe43176d7, 0xb6e8, 0x4827, 0xb7, 0x84, 0x7f, 0xfd, 0xc4, 0xb6, 0x85, 0x61)

typedef EFI_GUID EFI_RNG_ALGORITHM;
typedef struct EFI_RNG_PROTOCOL EFI_RNG_PROTOCOL;
struct EFI_RNG_PROTOCOL {
	EFI_STATUS(EFIAPI *GetInfo)(EFI_RNG_PROTOCOL *This, UINTN *RNGAlgorithmListSize,
				    EFI_RNG_ALGORITHM *RNGAlgorithmList);
	EFI_STATUS(EFIAPI *GetRNG)(EFI_RNG_PROTOCOL *This, EFI_RNG_ALGORITHM *RNGAlgorithm, UINTN RNGValueLength,
				   uint8_t *RNGValue);
};

/* --- Device Path To Text (10.6) ------------------------------------------------------------------------ */
#define EFI_DEVICE_PATH_TO_TEXT_PROTOCOL_GUID \
	EFI_GUID_INIT(0x8b843e20, 0x8132, 0x4852, 0x90, 0xcc, 0x55, 0x1a, 0x4e, 0x4a, 0x7f, 0x1c)

typedef struct {
	CHAR16 *(EFIAPI *ConvertDeviceNodeToText)(const EFI_DEVICE_PATH_PROTOCOL *DeviceNode, BOOLEAN DisplayOnly,
						  BOOLEAN AllowShortcuts);
	CHAR16 *(EFIAPI *ConvertDevicePathToText)(const EFI_DEVICE_PATH_PROTOCOL *DevicePath, BOOLEAN DisplayOnly,
						  BOOLEAN AllowShortcuts);
} EFI_DEVICE_PATH_TO_TEXT_PROTOCOL;

/* --- configuration tables (4.6) --------------------------------------------------------------------- */
#define EFI_ACPI_20_TABLE_GUID \
	EFI_GUID_INIT(0x8868e871, 0xe4f1, 0x11d3, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81)
#define EFI_ACPI_10_TABLE_GUID \
	EFI_GUID_INIT(0xeb9d2d30, 0x2d88, 0x11d3, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d)
#define EFI_SMBIOS3_TABLE_GUID \
	EFI_GUID_INIT(0xf2fd1544, 0x9794, 0x4a2c, 0x99, 0x2e, 0xe5, 0xbb, 0xcf, 0x20, 0xe3, 0x94)

/* Device path subtypes beyond efi.h's */
#define HW_PCI_DP        0x01
#define ACPI_DP          0x01
#define MSG_USB_DP       0x05
#define MSG_MAC_ADDR_DP  0x0b
#define MSG_IPv4_DP      0x0c
#define MSG_URI_DP       0x18
#define MEDIA_PIWG_FW_FILE_DP 0x06
#define MEDIA_PIWG_FW_VOL_DP  0x07
#define MEDIA_RELATIVE_OFFSET_RANGE_DP 0x08
#define BBS_BBS_DP       0x01

#endif
