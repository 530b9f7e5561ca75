/* printf-style formatting for the firmware (freestanding, no libc): %%, %c, %s, %ls (a CHAR16 string),
 * %d %i %u %x %X %p with the h, hh, l, ll, z and j modifiers, a width, and the '0' and '-' flags.
 * Anything else is copied as it is. Output is always NUL-terminated when n > 0; the return value is
 * the length the whole output would have had (as C's snprintf). */
#ifndef GEN2VM_GUESTLIB_EFI_FMT_H
#define GEN2VM_GUESTLIB_EFI_FMT_H

#include <stdarg.h>
#include <stddef.h>

#include "gen2vm/proto/efi.h"

int efi_vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
int efi_snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The specification's name of a status ("EFI_NOT_FOUND"), or "EFI status 0x..." in buf (32 bytes). */
const char *efi_status_str(EFI_STATUS s, char buf[32]);
/* A GUID in registry format (8-4-4-4-12, upper case) into buf (37 bytes). Returns buf. */
char *efi_guid_str(const EFI_GUID *g, char buf[37]);

#endif
