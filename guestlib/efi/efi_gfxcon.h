/* The pure parts of the firmware's screen (firmware/video.c, firmware/conio.c): Graphics Output
 * Blt on a 32-bit frame buffer, a text console drawn on it with an 8x16 font (glyph placement,
 * colours, cursor, scrolling, clipping), both keeping one bounding rectangle of what they changed
 * so that the caller tells the display; and the translation of the synthetic keyboard's set-1 scan
 * codes into EFI keys. Freestanding; compiled for the firmware and the host unit tests. */
#ifndef GEN2VM_GUESTLIB_EFI_GFXCON_H
#define GEN2VM_GUESTLIB_EFI_GFXCON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/efi_gop.h"

#define EFI_GFX_CELL_W 8u
#define EFI_GFX_CELL_H 16u

/* x1,y1 inclusive, x2,y2 exclusive; empty when x1 >= x2 or y1 >= y2. */
struct efi_gfx_rect {
	int32_t x1, y1, x2, y2;
};

/* A frame buffer of width x height pixels, stride pixels a row, each 0x00RRGGBB (B, G, R, X in
 * memory: EFI's PixelBlueGreenRedReserved8BitPerColor). */
struct efi_gfx_fb {
	uint32_t *px;
	uint32_t width, height, stride;
	struct efi_gfx_rect dirty; /* everything drawn since efi_gfx_dirty_take */
};

/* Adds a rectangle (clipped to the screen) to fb->dirty. */
void efi_gfx_dirty_add(struct efi_gfx_fb *fb, int32_t x1, int32_t y1, int32_t x2, int32_t y2);
/* Takes fb->dirty (false: nothing changed) and empties it. */
bool efi_gfx_dirty_take(struct efi_gfx_fb *fb, struct efi_gfx_rect *r);

/* GOP Blt (UEFI 2.10 12.9.2.3) on fb: buf holds the caller's pixels, delta its bytes a row (0: width
 * pixels). EFI_INVALID_PARAMETER for an unknown operation, a zero size, a NULL buf, or a rectangle
 * that does not lie wholly on the screen (nothing is drawn then); marks what changed dirty. */
EFI_STATUS efi_gfx_blt(struct efi_gfx_fb *fb, EFI_GRAPHICS_OUTPUT_BLT_PIXEL *buf, unsigned op, UINTN sx, UINTN sy,
		       UINTN dx, UINTN dy, UINTN w, UINTN h, UINTN delta);

/* The screen the firmware takes from the synthetic video device's resolution list: body is what
 * followed the synthvid header of a RESOLUTION_RESPONSE, n its bytes. True with the default entry
 * (the one --video sets) in *width, *height when the message is whole, its count and default index
 * are in range and that screen is usable at 32 bits a pixel with a pitch of width * 4: at least
 * 640x480 (80x25 text fits), at most 4096 wide, within vram bytes. False otherwise (the caller
 * keeps its own default). */
bool efi_gfx_mode_from_resolutions(const void *body, uint32_t n, uint64_t vram, uint32_t *width, uint32_t *height);

/* The 0x00RRGGBB of an EFI text colour (0-15: EFI_BLACK...EFI_WHITE, the PC's 16 colours). */
uint32_t efi_gfx_colour(unsigned colour);

/* A text console of cols x rows cells centred on fb. Escape sequences (ESC [ ... final byte, and
 * ESC plus one byte) written to it are swallowed, so text meant for a serial terminal can be
 * passed through. */
struct efi_gfxcon {
	struct efi_gfx_fb *fb;
	uint32_t cols, rows;
	uint32_t x0, y0;    /* the pixel of cell (0, 0) */
	uint32_t col, row;  /* the cursor */
	uint8_t attr;       /* EFI_TEXT_ATTR(fg, bg) */
	bool cursor_on;     /* EnableCursor */
	bool cursor_drawn;  /* the cursor's underline is on the screen (drawn by XOR) */
	uint8_t esc;        /* escape filter: 0 none, 1 after ESC, 2 inside ESC [ */
};

/* False (and c untouched) when cols x rows cells do not fit fb. Else sets c up with the cursor at
 * (0, 0), attr EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK), the cursor on, and clears the screen. */
bool efi_gfxcon_init(struct efi_gfxcon *c, struct efi_gfx_fb *fb, uint32_t cols, uint32_t rows);
/* Fills the whole screen with the background colour, cursor to (0, 0). */
void efi_gfxcon_clear(struct efi_gfxcon *c);
/* One character: CR, LF (scrolls at the last row), BS (not past column 0), else a glyph (Latin-1
 * from the font, box drawing approximated, anything else '?') at the cursor, which moves on,
 * wrapping to the next line and scrolling after the last column of the last row. */
void efi_gfxcon_putc(struct efi_gfxcon *c, uint32_t ch);
/* Cursor to (col, row); false (nothing changed) when outside the grid. */
bool efi_gfxcon_goto(struct efi_gfxcon *c, uint32_t col, uint32_t row);
void efi_gfxcon_set_attr(struct efi_gfxcon *c, uint8_t attr);
void efi_gfxcon_enable_cursor(struct efi_gfxcon *c, bool on);

/* ---- the synthetic keyboard ---- */

/* Modifier and lock state, kept from the makes and breaks seen. */
struct efi_kbd {
	bool lshift, rshift, lctrl, rctrl, lalt, ralt, lwin, rwin;
	bool caps, num, scroll;
};

/* One key event of the synthetic keyboard: make_code in scan code set 1 (without the 0x80 break
 * bit), e0 for the 0xE0 prefix, brk for a release. Updates the modifiers and locks; returns true and
 * fills *key for a press that is an EFI key (ScanCode for Esc, arrows, F1-F12, Home/End/PgUp/PgDn,
 * Ins/Del; UnicodeChar for printable keys with Shift and CapsLock applied, Enter 0x0d, Backspace
 * 0x08, Tab 0x09; the keypad as digits with NumLock, else as the cursor keys). Modifier keys and
 * releases give none. */
bool efi_kbd_event(struct efi_kbd *k, uint16_t make_code, bool e0, bool brk, EFI_INPUT_KEY *key);
/* EFI_KEY_STATE of SimpleTextInputEx: KeyShiftState and KeyToggleState, both marked valid. */
uint32_t efi_kbd_shift_state(const struct efi_kbd *k);
uint8_t efi_kbd_toggle_state(const struct efi_kbd *k);

#endif
