/* The firmware's consoles beyond fw.h's raw output: direct writes to chosen consoles and polled
 * COM1 input (console.c), the text protocols built on them (conio.c), and the helpers the boot
 * manager uses (a key read with a timeout, device path text for its boot summary). */
#ifndef GEN2VM_FIRMWARE_CONIO_H
#define GEN2VM_FIRMWARE_CONIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi_console.h"

/* ---- console.c ---- */
#define FW_CON_COM1 1u
#define FW_CON_DEBUGCON 2u
/* The consoles the VMM gave us (FW_CON_* bits). */
unsigned fw_console_present(void);
/* Writes n bytes as they are (no "\n" translation) to the consoles in to (FW_CON_* bits) that
 * exist. Escape sequences go to FW_CON_COM1 only: the debug console is a log. */
void fw_console_write(const char *s, size_t n, unsigned to);
/* One byte COM1 has received, polled (no wait): false when none is waiting or there is no COM1. */
bool fw_console_getc(uint8_t *c);

/* ---- conio.c ---- */
/* The console protocols (valid after fw_conio_init, also when boot services are missing). */
extern EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL fw_conout;
extern EFI_SIMPLE_TEXT_INPUT_PROTOCOL fw_conin;
extern EFI_SIMPLE_TEXT_INPUT_EX_PROTOCOL fw_conin_ex;
/* Waits up to timeout_us microseconds (0: just look; UINT64_MAX: forever) for a key on COM1.
 * EFI_SUCCESS with *key, EFI_TIMEOUT when none came, EFI_NOT_READY when there is no input
 * console at all. For the boot manager's PauseAfterBootFailure and its boot menu. Time is
 * fw_time_100ns(). It polls COM1 (one exit per poll) and runs fw_event_poll() between polls so
 * that timers keep firing. */
EFI_STATUS fw_conio_read_key(EFI_INPUT_KEY *key, uint64_t timeout_us);

/* ---- tables.c ---- */
/* len bytes of the host's entropy (FW_OP_RNG) into out: EFI_SUCCESS or EFI_DEVICE_ERROR. For
 * firmware users of randomness (the RNG protocol's backend). */
EFI_STATUS fw_rng_fill(void *out, size_t len);

/* Device path text for log lines and the boot summary: efi_dp_text8 (guestlib/efi/efi_dptext.h). */

#endif
