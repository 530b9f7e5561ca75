/* The firmware screen's pure parts (guestlib/efi/efi_gfxcon.c): GOP Blt, the text console drawn with
 * the 8x16 font (glyph placement, colours, cursor, wrapping, scrolling, escape sequences swallowed,
 * clipping of what is marked dirty), the screen's size taken from the video device's resolution
 * list (and a hostile list refused), and the synthetic keyboard's scan codes as EFI keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_font8x16.h"
#include "efi/efi_gfxcon.h"
#include "gen2vm/proto/synthvid.h"

#define W 40u /* 5 columns of 8 pixels */
#define H 56u /* 3 rows of 16 pixels, 8 pixels to spare: the grid is centred 4 pixels down */

static uint32_t px[W * H];
static struct efi_gfx_fb fb;

static void fb_reset(void)
{
	memset(px, 0x5a, sizeof(px));
	fb = (struct efi_gfx_fb){ px, W, H, W, { 0, 0, 0, 0 } };
}

/* True when the cell at (col,row) of c shows ch in fg on bg (the cursor row excluded when asked). */
static bool cell_is(const struct efi_gfxcon *c, uint32_t col, uint32_t row, unsigned ch, uint32_t fg, uint32_t bg,
		    bool skip_cursor)
{
	const uint8_t *g = efi_font8x16[ch - EFI_FONT_FIRST];
	for (uint32_t j = 0; j < 16; j++) {
		if (skip_cursor && j >= 14)
			continue;
		for (uint32_t i = 0; i < 8; i++) {
			uint32_t v = px[(c->y0 + row * 16 + j) * W + c->x0 + col * 8 + i];
			if (v != ((g[j] & (0x80u >> i)) ? fg : bg))
				return false;
		}
	}
	return true;
}

static void put(struct efi_gfxcon *c, const char *s)
{
	while (*s)
		efi_gfxcon_putc(c, (uint8_t)*s++);
}

static void test_text_placement(void **state)
{
	fb_reset();
	struct efi_gfxcon c;
	assert_false(efi_gfxcon_init(&c, &fb, 6, 3)); /* 48 pixels do not fit 40 */
	assert_false(efi_gfxcon_init(&c, &fb, 5, 4));
	assert_true(efi_gfxcon_init(&c, &fb, 5, 3));
	assert_int_equal(c.x0, 0);
	assert_int_equal(c.y0, 4);
	/* Cleared to black, cursor drawn at (0,0). */
	assert_int_equal(px[0], 0);
	assert_int_equal(px[(4 + 15) * W], 0xffffff); /* the cursor's underline, XORed on black */
	struct efi_gfx_rect r;
	assert_true(efi_gfx_dirty_take(&fb, &r));
	assert_int_equal(r.x2, W);
	assert_int_equal(r.y2, H);
	assert_false(efi_gfx_dirty_take(&fb, &r));

	efi_gfxcon_set_attr(&c, EFI_TEXT_ATTR(EFI_WHITE, EFI_BLUE));
	put(&c, "Ab");
	assert_true(cell_is(&c, 0, 0, 'A', 0xffffff, 0x0000aa, false));
	assert_true(cell_is(&c, 1, 0, 'b', 0xffffff, 0x0000aa, false));
	assert_int_equal(c.col, 2);
	/* Only the two cells and the cursor moves are dirty. */
	assert_true(efi_gfx_dirty_take(&fb, &r));
	assert_int_equal(r.x1, 0);
	assert_int_equal(r.y1, 4);
	assert_int_equal(r.x2, 24);
	assert_int_equal(r.y2, 20);
	/* The cursor moved on with the text: the cell after it carries the underline. */
	assert_int_equal(px[(4 + 15) * W + 16], 0xffffff);
	efi_gfxcon_enable_cursor(&c, false);
	assert_int_equal(px[(4 + 15) * W + 16], 0);

	/* CR, LF, BS; goto. */
	put(&c, "\r\nx\bY");
	assert_true(cell_is(&c, 0, 1, 'Y', 0xffffff, 0x0000aa, false));
	assert_true(efi_gfxcon_goto(&c, 4, 2));
	assert_false(efi_gfxcon_goto(&c, 5, 0));
	assert_false(efi_gfxcon_goto(&c, 0, 3));
	assert_int_equal(c.col, 4);
	assert_int_equal(c.row, 2);
	/* The margin above the grid is never drawn on by text. */
	for (uint32_t i = 0; i < W * 4; i++)
		assert_int_equal(px[i], 0);
}

static void test_text_wrap_scroll(void **state)
{
	fb_reset();
	struct efi_gfxcon c;
	assert_true(efi_gfxcon_init(&c, &fb, 5, 3));
	efi_gfxcon_enable_cursor(&c, false);
	put(&c, "abcdefghij"); /* two full rows, the cursor wraps to row 2 */
	assert_int_equal(c.row, 2);
	assert_int_equal(c.col, 0);
	assert_true(cell_is(&c, 4, 0, 'e', 0xaaaaaa, 0, false));
	assert_true(cell_is(&c, 0, 1, 'f', 0xaaaaaa, 0, false));
	put(&c, "klmno"); /* the last cell of the last row: the screen scrolls */
	assert_int_equal(c.row, 2);
	assert_int_equal(c.col, 0);
	assert_true(cell_is(&c, 0, 0, 'f', 0xaaaaaa, 0, false));
	assert_true(cell_is(&c, 4, 1, 'o', 0xaaaaaa, 0, false));
	assert_true(cell_is(&c, 0, 2, ' ', 0xaaaaaa, 0, false));
	put(&c, "\n\n");
	assert_true(cell_is(&c, 0, 0, ' ', 0xaaaaaa, 0, false));
	/* Scrolling stayed inside the grid: the bottom margin is still black. */
	for (uint32_t i = (H - 4) * W; i < W * H; i++)
		assert_int_equal(px[i], 0);
	/* Escape sequences do not reach the screen. */
	efi_gfxcon_goto(&c, 0, 0);
	put(&c, "\x1b[1;31m\x1b[2J\x1b" "cZ");
	assert_int_equal(c.col, 1);
	assert_true(cell_is(&c, 0, 0, 'Z', 0xaaaaaa, 0, false));
	/* Unknown code points are '?', box drawing approximated. */
	efi_gfxcon_putc(&c, 0x4e2d);
	efi_gfxcon_putc(&c, 0x2500);
	assert_true(cell_is(&c, 1, 0, '?', 0xaaaaaa, 0, false));
	assert_true(cell_is(&c, 2, 0, '-', 0xaaaaaa, 0, false));
}

static void test_blt(void **state)
{
	fb_reset();
	EFI_GRAPHICS_OUTPUT_BLT_PIXEL red = { 0, 0, 0xff, 0 }, buf[4 * 3];
	struct efi_gfx_rect r;
	assert_int_equal(efi_gfx_blt(&fb, &red, EfiBltVideoFill, 0, 0, 2, 3, 4, 2, 0), EFI_SUCCESS);
	assert_int_equal(px[3 * W + 2], 0xff0000);
	assert_int_equal(px[4 * W + 5], 0xff0000);
	assert_int_equal(px[5 * W + 2], 0x5a5a5a5a);
	assert_true(efi_gfx_dirty_take(&fb, &r));
	assert_int_equal(r.x1, 2);
	assert_int_equal(r.y1, 3);
	assert_int_equal(r.x2, 6);
	assert_int_equal(r.y2, 5);
	/* Clipping: a rectangle off the screen is refused whole. */
	assert_int_equal(efi_gfx_blt(&fb, &red, EfiBltVideoFill, 0, 0, W - 3, 0, 4, 1, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_gfx_blt(&fb, &red, EfiBltVideoFill, 0, 0, 0, 0, 0, 1, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_gfx_blt(&fb, &red, 7, 0, 0, 0, 0, 1, 1, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_gfx_blt(&fb, &red, EfiBltVideoFill, 0, 0, 0, (UINTN)-1, 1, 2, 0), EFI_INVALID_PARAMETER);
	assert_false(efi_gfx_dirty_take(&fb, &r));
	/* Video to buffer, at an offset in a buffer of 4 pixels a row. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(efi_gfx_blt(&fb, buf, EfiBltVideoToBltBuffer, 1, 3, 1, 1, 2, 2, 4 * sizeof(buf[0])), EFI_SUCCESS);
	assert_int_equal(buf[5].Red, 0x5a);
	assert_int_equal(buf[6].Red, 0xff);
	assert_int_equal(buf[6].Blue, 0);
	assert_int_equal(buf[10].Red, 0xff);
	assert_false(efi_gfx_dirty_take(&fb, &r));
	/* Buffer to video. */
	buf[0] = (EFI_GRAPHICS_OUTPUT_BLT_PIXEL){ 1, 2, 3, 0 };
	assert_int_equal(efi_gfx_blt(&fb, buf, EfiBltBufferToVideo, 0, 0, 10, 10, 1, 1, 0), EFI_SUCCESS);
	assert_int_equal(px[10 * W + 10], 0x030201);
	/* Video to video, overlapping downwards. */
	assert_int_equal(efi_gfx_blt(&fb, buf, EfiBltVideoToVideo, 2, 3, 2, 4, 4, 2, 0), EFI_SUCCESS);
	assert_int_equal(px[4 * W + 2], 0xff0000);
	assert_int_equal(px[5 * W + 2], 0xff0000);
	assert_int_equal(px[3 * W + 2], 0xff0000);
}

/* A RESOLUTION_RESPONSE's body listing count modes, the default at index def. */
static struct synthvid_resolution_resp res_resp(unsigned count, unsigned def, const struct synthvid_screen_size *m)
{
	struct synthvid_resolution_resp r;
	memset(&r, 0, sizeof(r));
	r.resolution_count = (uint8_t)count;
	r.default_resolution_index = (uint8_t)def;
	for (unsigned i = 0; i < count && i < SYNTHVID_MAX_RESOLUTION_COUNT; i++)
		r.supported_resolution[i] = m[i];
	return r;
}

static void test_mode_from_resolutions(void **state)
{
	const uint64_t vram = 8u << 20;
	static const struct synthvid_screen_size modes[] = { { 640, 480 }, { 1024, 768 }, { 1600, 1200 }, { 1920, 1080 } };
	uint32_t w = 0, h = 0;
	/* The default entry, whichever it is (what --video sets). */
	struct synthvid_resolution_resp r = res_resp(4, 2, modes);
	assert_true(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	assert_int_equal(w, 1600);
	assert_int_equal(h, 1200);
	r = res_resp(4, 3, modes);
	assert_true(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	assert_int_equal(w, 1920);
	assert_int_equal(h, 1080);
	r = res_resp(1, 0, modes);
	assert_true(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	assert_int_equal(w, 640);
	assert_int_equal(h, 480);

	/* Refused, *width and *height untouched: a short message, no modes, a default index outside
	 * the list, a count beyond the array, a screen that does not fit the VRAM or is too small for
	 * 80x25 text or too wide. */
	w = h = 7;
	r = res_resp(4, 2, modes);
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r) - 1, vram, &w, &h));
	assert_false(efi_gfx_mode_from_resolutions(&r, 0, vram, &w, &h));
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), 1600u * 1200u * 4u - 1, &w, &h));
	r = res_resp(0, 0, modes);
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	r = res_resp(4, 4, modes);
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	r = res_resp(4, 255, modes);
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	r = res_resp(4, 0, modes);
	r.resolution_count = SYNTHVID_MAX_RESOLUTION_COUNT + 1;
	assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	static const struct synthvid_screen_size bad[] = { { 2560, 1600 }, { 639, 480 }, { 640, 479 }, { 0, 0 },
							   { 65535, 1 }, { 8192, 256 }, { 65535, 65535 } };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = res_resp(1, 0, &bad[i]);
		assert_false(efi_gfx_mode_from_resolutions(&r, sizeof(r), vram, &w, &h));
	}
	assert_int_equal(w, 7);
	assert_int_equal(h, 7);
}

/* The text console on a 1600x1200 screen: 80x25 centred (the firmware's mode 0) and the whole
 * screen, 200x75 (its last mode there); a clear paints every pixel of the frame buffer. */
static void test_text_large_screen(void **state)
{
	const uint32_t w = 1600, h = 1200;
	uint32_t *big = malloc((size_t)w * h * 4);
	assert_non_null(big);
	memset(big, 0x5a, (size_t)w * h * 4);
	struct efi_gfx_fb f = { big, w, h, w, { 0, 0, 0, 0 } };
	struct efi_gfxcon c;
	assert_true(efi_gfxcon_init(&c, &f, 80, 25));
	assert_int_equal(c.x0, (1600 - 640) / 2);
	assert_int_equal(c.y0, (1200 - 400) / 2);
	for (size_t i = 0; i < (size_t)w * h; i++)
		if (big[i] != 0 && big[i] != 0xffffff) /* black, or the cursor's underline */
			fail_msg("pixel %zu not cleared: 0x%x", i, big[i]);
	assert_false(efi_gfxcon_init(&c, &f, 201, 75));
	assert_false(efi_gfxcon_init(&c, &f, 200, 76));
	assert_true(efi_gfxcon_init(&c, &f, 200, 75));
	assert_int_equal(c.x0, 0);
	assert_int_equal(c.y0, 0);
	efi_gfxcon_enable_cursor(&c, false);
	efi_gfxcon_set_attr(&c, EFI_TEXT_ATTR(EFI_BRIGHT | EFI_BROWN, EFI_BLUE));
	efi_gfxcon_goto(&c, 199, 74);
	efi_gfxcon_putc(&c, 'Q'); /* the last cell: drawn, then the screen scrolls */
	const uint8_t *g = efi_font8x16['Q' - EFI_FONT_FIRST];
	for (uint32_t j = 0; j < 16; j++)
		for (uint32_t i = 0; i < 8; i++)
			assert_int_equal(big[(size_t)(73 * 16 + j) * w + 199 * 8 + i], (g[j] & (0x80u >> i)) ? 0xffff55u : 0x0000aau);
	/* The new last row is in the background colour, to the screen's last pixel. */
	assert_int_equal(big[(size_t)w * h - 1], 0x0000aa);
	efi_gfxcon_clear(&c);
	for (size_t i = 0; i < (size_t)w * h; i++)
		if (big[i] != 0x0000aa)
			fail_msg("pixel %zu not cleared to blue: 0x%x", i, big[i]);
	free(big);
}

static void test_keys(void **state)
{
	struct efi_kbd k = { 0 };
	EFI_INPUT_KEY key;
	assert_true(efi_kbd_event(&k, 0x1e, false, false, &key)); /* a */
	assert_int_equal(key.UnicodeChar, 'a');
	assert_int_equal(key.ScanCode, 0);
	assert_false(efi_kbd_event(&k, 0x1e, false, true, &key)); /* its release */
	assert_false(efi_kbd_event(&k, 0x2a, false, false, &key)); /* left shift */
	assert_true(efi_kbd_event(&k, 0x1e, false, false, &key));
	assert_int_equal(key.UnicodeChar, 'A');
	assert_true(efi_kbd_event(&k, 0x02, false, false, &key));
	assert_int_equal(key.UnicodeChar, '!');
	assert_int_equal(efi_kbd_shift_state(&k), EFI_SHIFT_STATE_VALID | EFI_LEFT_SHIFT_PRESSED);
	assert_false(efi_kbd_event(&k, 0x2a, false, true, &key));
	/* CapsLock: letters only, Shift inverts it. */
	assert_false(efi_kbd_event(&k, 0x3a, false, false, &key));
	assert_false(efi_kbd_event(&k, 0x3a, false, true, &key));
	assert_int_equal(efi_kbd_toggle_state(&k), EFI_TOGGLE_STATE_VALID | EFI_CAPS_LOCK_ACTIVE);
	assert_true(efi_kbd_event(&k, 0x10, false, false, &key));
	assert_int_equal(key.UnicodeChar, 'Q');
	assert_true(efi_kbd_event(&k, 0x0c, false, false, &key));
	assert_int_equal(key.UnicodeChar, '-');
	efi_kbd_event(&k, 0x36, false, false, &key); /* right shift */
	assert_true(efi_kbd_event(&k, 0x10, false, false, &key));
	assert_int_equal(key.UnicodeChar, 'q');
	efi_kbd_event(&k, 0x36, false, true, &key);
	/* Control characters and scan codes. */
	static const struct {
		uint16_t make;
		bool e0;
		uint16_t scan, ch;
	} t[] = {
		{ 0x1c, false, 0, CHAR_CARRIAGE_RETURN }, { 0x1c, true, 0, CHAR_CARRIAGE_RETURN },
		{ 0x0e, false, 0, CHAR_BACKSPACE },       { 0x0f, false, 0, CHAR_TAB },
		{ 0x01, false, SCAN_ESC, 0 },             { 0x3b, false, SCAN_F1, 0 },
		{ 0x3c, false, SCAN_F1 + 1, 0 },          { 0x44, false, SCAN_F10, 0 },
		{ 0x57, false, SCAN_F11, 0 },             { 0x58, false, SCAN_F12, 0 },
		{ 0x48, true, SCAN_UP, 0 },               { 0x50, true, SCAN_DOWN, 0 },
		{ 0x4b, true, SCAN_LEFT, 0 },             { 0x4d, true, SCAN_RIGHT, 0 },
		{ 0x47, true, SCAN_HOME, 0 },             { 0x4f, true, SCAN_END, 0 },
		{ 0x49, true, SCAN_PAGE_UP, 0 },          { 0x51, true, SCAN_PAGE_DOWN, 0 },
		{ 0x52, true, SCAN_INSERT, 0 },           { 0x53, true, SCAN_DELETE, 0 },
		{ 0x48, false, SCAN_UP, 0 }, /* the keypad with NumLock off */
		{ 0x39, false, 0, ' ' },                  { 0x35, true, 0, '/' },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_true(efi_kbd_event(&k, t[i].make, t[i].e0, false, &key));
		assert_int_equal(key.ScanCode, t[i].scan);
		assert_int_equal(key.UnicodeChar, t[i].ch);
	}
	/* NumLock: the keypad gives digits; the E0 arrows stay arrows. */
	efi_kbd_event(&k, 0x45, false, false, &key);
	assert_true(efi_kbd_event(&k, 0x48, false, false, &key));
	assert_int_equal(key.UnicodeChar, '8');
	assert_true(efi_kbd_event(&k, 0x48, true, false, &key));
	assert_int_equal(key.ScanCode, SCAN_UP);
	/* Modifiers give no key; E0 2A (the fake shift of some keys) changes nothing. */
	assert_false(efi_kbd_event(&k, 0x1d, false, false, &key));
	assert_false(efi_kbd_event(&k, 0x38, true, false, &key));
	assert_int_equal(efi_kbd_shift_state(&k), EFI_SHIFT_STATE_VALID | EFI_LEFT_CONTROL_PRESSED | EFI_RIGHT_ALT_PRESSED);
	assert_false(efi_kbd_event(&k, 0x2a, true, false, &key));
	assert_false(k.lshift);
	/* Unknown codes give nothing. */
	assert_false(efi_kbd_event(&k, 0x7f, false, false, &key));
	assert_false(efi_kbd_event(&k, 0x10, true, false, &key));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_placement),
		cmocka_unit_test(test_text_wrap_scroll),
		cmocka_unit_test(test_blt),
		cmocka_unit_test(test_mode_from_resolutions),
		cmocka_unit_test(test_text_large_screen),
		cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests_name("fw_screen", tests, NULL, NULL);
}
