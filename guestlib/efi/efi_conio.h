/* The pure parts of the firmware's serial text console (firmware/conio.c): UCS-2 to UTF-8 for
 * output, ANSI/VT sequences for attributes and cursor moves, and the decoder that turns the bytes a
 * terminal sends (UTF-8 and VT100/xterm/Linux-console escape sequences) into EFI_INPUT_KEYs.
 * Freestanding; compiled for the firmware and the host unit tests. */
#ifndef GEN2VM_GUESTLIB_EFI_CONIO_H
#define GEN2VM_GUESTLIB_EFI_CONIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi_console.h"

/* Converts a NUL-terminated UCS-2 string to UTF-8, stopping when out (cap bytes) cannot take the
 * next character whole. Surrogate pairs become one 4-byte character; an unpaired surrogate becomes
 * '?' and sets *bad (when bad is not NULL). Returns the bytes written (no NUL is added) and, in
 * *used, the CHAR16s consumed, so a caller can continue from s + *used. */
size_t efi_ucs2_to_utf8(const CHAR16 *s, size_t *used, char *out, size_t cap, bool *bad);

/* The ANSI SGR sequence for an EFI text attribute (EFI_TEXT_ATTR(fg, bg), bits 0-6) into buf (at
 * least 24 bytes). Returns its length. */
size_t efi_ansi_attr(char *buf, unsigned attr);
/* "ESC[row;colH" for a zero-based position into buf (at least 24 bytes). Returns its length. */
size_t efi_ansi_goto(char *buf, unsigned col, unsigned row);

/* Input decoding. One decoder per terminal; zero-initialise it (or efi_keydec_reset). */
struct efi_keydec {
	uint8_t seq[12];  /* an escape sequence in progress, seq[0] == ESC */
	uint8_t len;
	uint8_t utf8_need; /* continuation bytes still expected */
	uint32_t cp;       /* the code point being assembled */
	bool skip;         /* swallowing the rest of an overlong sequence */
	bool last_cr;      /* the last byte was CR: a LF right after it is the same Enter */
};

void efi_keydec_reset(struct efi_keydec *d);
/* Feeds one byte. Writes the keys it completes to out (at most 2: an unrecognised ESC-prefixed
 * byte gives ESC and then that key) and returns how many. Enter (CR, LF or CR LF) gives CHAR_CARRIAGE_RETURN,
 * DEL and BS give CHAR_BACKSPACE; unknown or overlong sequences are dropped whole. */
unsigned efi_keydec_feed(struct efi_keydec *d, uint8_t byte, EFI_INPUT_KEY out[2]);
/* True while bytes of an escape sequence or a UTF-8 character are pending. */
bool efi_keydec_pending(const struct efi_keydec *d);
/* No byte came within the escape timeout: a lone ESC becomes the Esc key (returns 1), any other
 * partial sequence is dropped (returns 0). */
unsigned efi_keydec_timeout(struct efi_keydec *d, EFI_INPUT_KEY out[1]);

#endif
