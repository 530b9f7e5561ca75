/* The tiny runtime of our EFI test applications (no gnu-efi): output to the debug console port
 * 0xE9 (EFI applications run at CPL0, so port I/O works) and to ConOut, printf through guestlib's
 * efi_fmt, the debug exit port 0xF4, and the mem* functions the compiler may call. */
#ifndef GEN2VM_TESTS_EFI_EFIAPP_H
#define GEN2VM_TESTS_EFI_EFIAPP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efi/efi_fmt.h"
#include "efi/efi_lib.h"
#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/efi_bs.h"

extern EFI_SYSTEM_TABLE *app_st;
extern EFI_BOOT_SERVICES *app_bs;
extern EFI_HANDLE app_image;

/* Remembers the entry arguments (call first in efi_main). */
void app_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st);
/* Text to the debug console only, and to the debug console plus ConOut (when non-NULL). */
void app_debug(const char *s);
void app_print(const char *s);
void app_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends the VM through the debug exit port: 0 = success, else a failure count. */
__attribute__((noreturn)) void app_exit_vm(uint32_t code);

#endif
