/* GUIDs in their canonical text form, and hexadecimal digits: one parser for the VMM, the firmware and
 * the tests (VMBus class and instance ids, the SMBIOS system UUID, EFI GUIDs). Freestanding: only
 * <stdint.h>.
 */
#ifndef GEN2VM_PROTO_GUID_H
#define GEN2VM_PROTO_GUID_H

#include <stdint.h>

/* The value of one hexadecimal digit (either case), or -1. */
static inline int gen2vm_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The value of one upper-case hexadecimal digit, or -1: for names that must be written upper-case
 * (UEFI's Boot####, EISA ids). */
static inline int gen2vm_hex_digit_upper(int c)
{
	return c >= 'a' && c <= 'f' ? -1 : gen2vm_hex_digit(c);
}

/* Parses "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f" (exactly 36 characters, then NUL; either case) into the
 * 16 bytes of the Windows, EFI and SMBIOS (2.6+) byte order: the first three fields little-endian, the
 * rest as written. Returns 0, or -1 on malformed text (then out is unchanged). */
static inline int gen2vm_guid_parse(const char *s, uint8_t out[16])
{
	/* Byte i of the result comes from the text's digit pair at pos[i]. */
	static const uint8_t pos[16] = { 6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34 };
	for (int i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : gen2vm_hex_digit(s[i]) < 0)
			return -1;
	}
	if (s[36] != '\0')
		return -1;
	for (int i = 0; i < 16; i++)
		out[i] = (uint8_t)(gen2vm_hex_digit(s[pos[i]]) << 4 | gen2vm_hex_digit(s[pos[i] + 1]));
	return 0;
}

#endif
