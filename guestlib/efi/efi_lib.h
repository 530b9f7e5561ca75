/* The firmware's tiny freestanding C library: memory and UCS-2 string helpers, GUID comparison and
 * the UEFI CRC32. Compiled for both worlds (firmware and host unit tests); names carry an efi_ prefix
 * so they never collide with a libc or the test guests' runtime. */
#ifndef GEN2VM_GUESTLIB_EFI_LIB_H
#define GEN2VM_GUESTLIB_EFI_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

void efi_memcpy(void *dst, const void *src, size_t n);
void efi_memmove(void *dst, const void *src, size_t n);
void efi_memset(void *dst, int c, size_t n);
int efi_memcmp(const void *a, const void *b, size_t n);
bool efi_guid_eq(const EFI_GUID *a, const EFI_GUID *b);

/* UCS-2 strings (CHAR16, NUL-terminated). efi_strnlen16 stops at max. */
size_t efi_strnlen16(const CHAR16 *s, size_t max);
/* ASCII-only case folding: FAT and the UEFI file protocol compare names case-insensitively. */
CHAR16 efi_toupper16(CHAR16 c);

/* The CRC32 of UEFI 2.10 section 4.2 (IEEE 802.3, reflected, init and final xor 0xffffffff), as
 * CalculateCrc32 and GPT use it. efi_crc32_update continues a CRC over more bytes:
 * efi_crc32(a ++ b) == efi_crc32_update(efi_crc32(a), b). */
uint32_t efi_crc32(const void *data, size_t n);
uint32_t efi_crc32_update(uint32_t crc, const void *data, size_t n);

/* Little-endian loads from byte buffers of any alignment. */
static inline uint16_t efi_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | b[1] << 8);
}
static inline uint32_t efi_le32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t efi_le64(const void *p)
{
	return efi_le32(p) | (uint64_t)efi_le32((const uint8_t *)p + 4) << 32;
}
static inline void efi_put16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void efi_put32(void *p, uint32_t v)
{
	efi_put16(p, (uint16_t)v);
	efi_put16((uint8_t *)p + 2, (uint16_t)(v >> 16));
}

#endif
