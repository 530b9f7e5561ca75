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
/* Waits up to timeout_us microseconds (0: just look; UINT64_MAX: forever) for a key on COM1 or the
 * synthetic keyboard.
 * EFI_SUCCESS with *key, EFI_TIMEOUT when none came, EFI_NOT_READY when there is no input
 * console at all. For the boot manager's PauseAfterBootFailure and its boot menu. Time is
 * fw_time_100ns(). It polls COM1 (one exit per poll) and the keyboard's ring (no exit), and
 * runs fw_event_poll() between polls so that timers keep firing. */
EFI_STATUS fw_conio_read_key(EFI_INPUT_KEY *key, uint64_t timeout_us);

/* Called by video.c once the screen is there: the text console's current mode, attribute and
 * cursor are applied to it. */
void fw_conio_screen_attached(void);

/* ---- video.c: the synthetic video device, GOP, and the text console drawn on it ---- */
/* After fw_vmbus_init: connects to the synthetic video device (when the VMM offers it), places its
 * VRAM at FW_MMIO_LOW_BASE, sets the device's default resolution (--video; 1024x768 without it) at
 * 32 bpp and installs the Graphics Output Protocol with a device path. EFI_NOT_FOUND without VMBus
 * or the device; then there is no screen and nothing changes. */
EFI_STATUS fw_video_init(void);
/* True while the text console can draw (the screen is up and ExitBootServices has not happened). */
bool fw_screen_present(void);
/* Whether a text mode of cols x rows 8x16 cells fits the screen. */
bool fw_screen_mode_fits(uint32_t cols, uint32_t rows);
/* The whole screen in 8x16 cells; false when there is no screen. */
bool fw_screen_cells(uint32_t *cols, uint32_t *rows);
/* The text console's operations; each does nothing without a screen, and tells the host what
 * changed (one DIRT rectangle a call). fw_screen_write takes the bytes fw_puts writes (ASCII; other
 * UTF-8 characters shown as '?'), fw_screen_write16 UCS-2; both swallow escape sequences. */
void fw_screen_set_mode(uint32_t cols, uint32_t rows); /* centred, cleared */
void fw_screen_write(const char *s, size_t n);
void fw_screen_write16(const CHAR16 *s, size_t n);
void fw_screen_clear(void);
void fw_screen_goto(uint32_t col, uint32_t row);
void fw_screen_set_attr(uint8_t attr);
void fw_screen_enable_cursor(bool on);

/* ---- kbd.c: the synthetic keyboard ---- */
/* After fw_vmbus_init: opens the synthetic keyboard (when offered) and negotiates protocol 1.0.
 * EFI_NOT_FOUND without VMBus or the device. */
EFI_STATUS fw_kbd_init(void);
/* True while the keyboard is connected (until ExitBootServices closes it). */
bool fw_kbd_present(void);
/* The next key typed on it, polled (no wait): false when none is waiting. */
bool fw_kbd_poll(EFI_INPUT_KEY *key);
/* The modifier and lock state, for SimpleTextInputEx (both marked valid). */
void fw_kbd_state(uint32_t *shift, uint8_t *toggle);

/* ---- tables.c ---- */
/* len bytes of the host's entropy (FW_OP_RNG) into out: EFI_SUCCESS or EFI_DEVICE_ERROR. For
 * firmware users of randomness (the RNG protocol's backend). */
EFI_STATUS fw_rng_fill(void *out, size_t len);

/* Device path text for log lines and the boot summary: efi_dp_text8 (guestlib/efi/efi_dptext.h). */

#endif
