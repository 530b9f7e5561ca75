/* See efi_gfxcon.h. */
#include "efi/efi_gfxcon.h"

#include "efi/efi_font8x16.h"
#include "efi/efi_lib.h"
#include "gen2vm/proto/synthvid.h"

/* ---- frame buffer ---- */

static int32_t clampi(int32_t v, int32_t lo, int32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void efi_gfx_dirty_add(struct efi_gfx_fb *fb, int32_t x1, int32_t y1, int32_t x2, int32_t y2)
{
	int32_t w = (int32_t)fb->width, h = (int32_t)fb->height;
	x1 = clampi(x1, 0, w);
	x2 = clampi(x2, 0, w);
	y1 = clampi(y1, 0, h);
	y2 = clampi(y2, 0, h);
	if (x1 >= x2 || y1 >= y2)
		return;
	struct efi_gfx_rect *d = &fb->dirty;
	if (d->x1 >= d->x2 || d->y1 >= d->y2) {
		*d = (struct efi_gfx_rect){ x1, y1, x2, y2 };
		return;
	}
	if (x1 < d->x1)
		d->x1 = x1;
	if (y1 < d->y1)
		d->y1 = y1;
	if (x2 > d->x2)
		d->x2 = x2;
	if (y2 > d->y2)
		d->y2 = y2;
}

bool efi_gfx_dirty_take(struct efi_gfx_fb *fb, struct efi_gfx_rect *r)
{
	struct efi_gfx_rect d = fb->dirty;
	fb->dirty = (struct efi_gfx_rect){ 0, 0, 0, 0 };
	if (d.x1 >= d.x2 || d.y1 >= d.y2)
		return false;
	*r = d;
	return true;
}

/* The first row pixel by pixel, the others copied from it: efi_memcpy moves 8 bytes a step, which
 * matters where the firmware's instructions are emulated one by one and a 1600x1200 screen is
 * cleared. */
static void fill(struct efi_gfx_fb *fb, uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t v)
{
	uint32_t *first = fb->px + (size_t)y * fb->stride + x;
	for (uint32_t i = 0; i < w; i++)
		first[i] = v;
	for (uint32_t j = 1; j < h; j++)
		efi_memcpy(first + (size_t)j * fb->stride, first, (size_t)w * sizeof(uint32_t));
	efi_gfx_dirty_add(fb, (int32_t)x, (int32_t)y, (int32_t)(x + w), (int32_t)(y + h));
}

static uint32_t px_of(const EFI_GRAPHICS_OUTPUT_BLT_PIXEL *p)
{
	return (uint32_t)p->Red << 16 | (uint32_t)p->Green << 8 | p->Blue;
}

EFI_STATUS efi_gfx_blt(struct efi_gfx_fb *fb, EFI_GRAPHICS_OUTPUT_BLT_PIXEL *buf, unsigned op, UINTN sx, UINTN sy,
		       UINTN dx, UINTN dy, UINTN w, UINTN h, UINTN delta)
{
	if (op >= EfiGraphicsOutputBltOperationMax || !w || !h || !buf)
		return EFI_INVALID_PARAMETER;
	if (!delta)
		delta = w * sizeof(*buf);
	/* The rectangle read from or written to the screen must lie on it (no overflow: each term is
	 * first bounded by the screen). */
	UINTN W = fb->width, H = fb->height;
	bool src_screen = op == EfiBltVideoToBltBuffer || op == EfiBltVideoToVideo;
	bool dst_screen = op != EfiBltVideoToBltBuffer;
	if (w > W || h > H)
		return EFI_INVALID_PARAMETER;
	if (src_screen && (sx > W - w || sy > H - h))
		return EFI_INVALID_PARAMETER;
	if (dst_screen && (dx > W - w || dy > H - h))
		return EFI_INVALID_PARAMETER;
	if (op != EfiBltVideoFill && op != EfiBltVideoToVideo && delta < w * sizeof(*buf))
		return EFI_INVALID_PARAMETER;
	uint8_t *b = (uint8_t *)buf;
	switch (op) {
	case EfiBltVideoFill:
		fill(fb, (uint32_t)dx, (uint32_t)dy, (uint32_t)w, (uint32_t)h, px_of(buf));
		return EFI_SUCCESS;
	case EfiBltVideoToBltBuffer:
		for (UINTN j = 0; j < h; j++) {
			const uint32_t *s = fb->px + (sy + j) * fb->stride + sx;
			EFI_GRAPHICS_OUTPUT_BLT_PIXEL *d = (void *)(b + (dy + j) * delta + dx * sizeof(*buf));
			for (UINTN i = 0; i < w; i++)
				d[i] = (EFI_GRAPHICS_OUTPUT_BLT_PIXEL){ (uint8_t)s[i], (uint8_t)(s[i] >> 8),
									(uint8_t)(s[i] >> 16), 0 };
		}
		return EFI_SUCCESS;
	case EfiBltBufferToVideo:
		for (UINTN j = 0; j < h; j++) {
			const EFI_GRAPHICS_OUTPUT_BLT_PIXEL *s = (void *)(b + (sy + j) * delta + sx * sizeof(*buf));
			uint32_t *d = fb->px + (dy + j) * fb->stride + dx;
			for (UINTN i = 0; i < w; i++)
				d[i] = px_of(&s[i]);
		}
		break;
	default: /* EfiBltVideoToVideo: the rectangles may overlap */
		for (UINTN n = 0; n < h; n++) {
			UINTN j = dy > sy ? h - 1 - n : n;
			efi_memmove(fb->px + (dy + j) * fb->stride + dx, fb->px + (sy + j) * fb->stride + sx,
				    w * sizeof(uint32_t));
		}
		break;
	}
	efi_gfx_dirty_add(fb, (int32_t)dx, (int32_t)dy, (int32_t)(dx + w), (int32_t)(dy + h));
	return EFI_SUCCESS;
}

bool efi_gfx_mode_from_resolutions(const void *body, uint32_t n, uint64_t vram, uint32_t *width, uint32_t *height)
{
	struct synthvid_resolution_resp r;
	if (n < sizeof(r))
		return false;
	efi_memcpy(&r, body, sizeof(r));
	if (!r.resolution_count || r.resolution_count > SYNTHVID_MAX_RESOLUTION_COUNT ||
	    r.default_resolution_index >= r.resolution_count)
		return false;
	uint32_t w = r.supported_resolution[r.default_resolution_index].width;
	uint32_t h = r.supported_resolution[r.default_resolution_index].height;
	if (w < 640 || h < 480 || w > 4096 || (uint64_t)w * 4 * h > vram)
		return false;
	*width = w;
	*height = h;
	return true;
}

uint32_t efi_gfx_colour(unsigned colour)
{
	static const uint32_t pal[16] = {
		0x000000, 0x0000aa, 0x00aa00, 0x00aaaa, 0xaa0000, 0xaa00aa, 0xaa5500, 0xaaaaaa,
		0x555555, 0x5555ff, 0x55ff55, 0x55ffff, 0xff5555, 0xff55ff, 0xffff55, 0xffffff,
	};
	return pal[colour & 15];
}

/* ---- text ---- */

static uint32_t fg_of(const struct efi_gfxcon *c)
{
	return efi_gfx_colour(c->attr & 15);
}

static uint32_t bg_of(const struct efi_gfxcon *c)
{
	return efi_gfx_colour((c->attr >> 4) & 7);
}

/* The cursor is an underline in the cell's last two pixel rows, drawn by XOR so that drawing it
 * again restores the glyph below without a copy of the text. */
static void cursor_xor(struct efi_gfxcon *c)
{
	uint32_t x = c->x0 + c->col * EFI_GFX_CELL_W, y = c->y0 + c->row * EFI_GFX_CELL_H + EFI_GFX_CELL_H - 2;
	for (uint32_t j = 0; j < 2; j++)
		for (uint32_t i = 0; i < EFI_GFX_CELL_W; i++)
			c->fb->px[(size_t)(y + j) * c->fb->stride + x + i] ^= 0xffffff;
	efi_gfx_dirty_add(c->fb, (int32_t)x, (int32_t)y, (int32_t)(x + EFI_GFX_CELL_W), (int32_t)(y + 2));
	c->cursor_drawn = !c->cursor_drawn;
}

static void cursor_hide(struct efi_gfxcon *c)
{
	if (c->cursor_drawn)
		cursor_xor(c);
}

static void cursor_show(struct efi_gfxcon *c)
{
	if (c->cursor_on && !c->cursor_drawn)
		cursor_xor(c);
}

bool efi_gfxcon_init(struct efi_gfxcon *c, struct efi_gfx_fb *fb, uint32_t cols, uint32_t rows)
{
	if (!cols || !rows || cols > fb->width / EFI_GFX_CELL_W || rows > fb->height / EFI_GFX_CELL_H)
		return false;
	*c = (struct efi_gfxcon){ .fb = fb, .cols = cols, .rows = rows };
	c->x0 = (fb->width - cols * EFI_GFX_CELL_W) / 2;
	c->y0 = (fb->height - rows * EFI_GFX_CELL_H) / 2;
	c->attr = EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK);
	c->cursor_on = true;
	efi_gfxcon_clear(c);
	return true;
}

void efi_gfxcon_clear(struct efi_gfxcon *c)
{
	c->cursor_drawn = false; /* painted over */
	fill(c->fb, 0, 0, c->fb->width, c->fb->height, bg_of(c));
	c->col = c->row = 0;
	cursor_show(c);
}

static void scroll(struct efi_gfxcon *c)
{
	struct efi_gfx_fb *fb = c->fb;
	uint32_t w = c->cols * EFI_GFX_CELL_W, lines = (c->rows - 1) * EFI_GFX_CELL_H;
	for (uint32_t j = 0; j < lines; j++)
		efi_memmove(fb->px + (size_t)(c->y0 + j) * fb->stride + c->x0,
			    fb->px + (size_t)(c->y0 + j + EFI_GFX_CELL_H) * fb->stride + c->x0, w * sizeof(uint32_t));
	fill(fb, c->x0, c->y0 + lines, w, EFI_GFX_CELL_H, bg_of(c));
	efi_gfx_dirty_add(fb, (int32_t)c->x0, (int32_t)c->y0, (int32_t)(c->x0 + w), (int32_t)(c->y0 + lines));
}

static void newline(struct efi_gfxcon *c)
{
	if (c->row + 1 < c->rows)
		c->row++;
	else
		scroll(c);
}

/* The font's index for a code point: Latin-1 as it is, the box-drawing and block characters that
 * menus use approximated by ASCII, anything else '?'. */
static uint32_t glyph_of(uint32_t ch)
{
	if (ch >= EFI_FONT_FIRST && ch <= EFI_FONT_LAST && ch != 0x7f)
		return ch;
	if (ch >= 0x2500 && ch <= 0x257f) {
		if (ch <= 0x2501 || ch == 0x2550)
			return '-';
		if (ch <= 0x2503 || ch == 0x2551)
			return '|';
		return '+';
	}
	if (ch == 0x2588 || ch == 0x2592 || ch == 0x2591 || ch == 0x2593)
		return '#';
	if (ch == 0x25b2 || ch == 0x2191)
		return '^';
	if (ch == 0x25bc || ch == 0x2193)
		return 'v';
	if (ch == 0x25ba || ch == 0x2192)
		return '>';
	if (ch == 0x25c4 || ch == 0x2190)
		return '<';
	return '?';
}

static void draw_glyph(struct efi_gfxcon *c, uint32_t ch)
{
	const uint8_t *g = efi_font8x16[glyph_of(ch) - EFI_FONT_FIRST];
	uint32_t fg = fg_of(c), bg = bg_of(c);
	uint32_t x = c->x0 + c->col * EFI_GFX_CELL_W, y = c->y0 + c->row * EFI_GFX_CELL_H;
	for (uint32_t j = 0; j < EFI_GFX_CELL_H; j++) {
		uint32_t *row = c->fb->px + (size_t)(y + j) * c->fb->stride + x;
		for (uint32_t i = 0; i < EFI_GFX_CELL_W; i++)
			row[i] = (g[j] & (0x80u >> i)) ? fg : bg;
	}
	efi_gfx_dirty_add(c->fb, (int32_t)x, (int32_t)y, (int32_t)(x + EFI_GFX_CELL_W), (int32_t)(y + EFI_GFX_CELL_H));
}

void efi_gfxcon_putc(struct efi_gfxcon *c, uint32_t ch)
{
	/* Escape sequences are for serial terminals: swallowed whole. */
	if (c->esc == 1) {
		c->esc = ch == '[' ? 2 : 0;
		return;
	}
	if (c->esc == 2) {
		if (ch >= 0x40 && ch <= 0x7e)
			c->esc = 0;
		else if (ch < 0x20 || ch > 0x3f)
			c->esc = 0; /* not a CSI sequence after all: drop it and this byte */
		return;
	}
	if (ch == 0x1b) {
		c->esc = 1;
		return;
	}
	cursor_hide(c);
	if (ch == '\r') {
		c->col = 0;
	} else if (ch == '\n') {
		newline(c);
	} else if (ch == '\b') {
		if (c->col)
			c->col--;
	} else if (ch >= 0x20 && (ch < 0xdc00 || ch > 0xdfff)) { /* a low surrogate adds nothing */
		draw_glyph(c, ch);
		if (++c->col >= c->cols) {
			c->col = 0;
			newline(c);
		}
	}
	cursor_show(c);
}

bool efi_gfxcon_goto(struct efi_gfxcon *c, uint32_t col, uint32_t row)
{
	if (col >= c->cols || row >= c->rows)
		return false;
	cursor_hide(c);
	c->col = col;
	c->row = row;
	cursor_show(c);
	return true;
}

void efi_gfxcon_set_attr(struct efi_gfxcon *c, uint8_t attr)
{
	c->attr = attr & 0x7f;
}

void efi_gfxcon_enable_cursor(struct efi_gfxcon *c, bool on)
{
	cursor_hide(c);
	c->cursor_on = on;
	cursor_show(c);
}

/* ---- keyboard ---- */

/* Set 1 make codes 0x00-0x39 without the E0 prefix: the character without and with Shift (0: not
 * a character key). */
static const char kbd_plain[0x3a] = {
	0, 0, '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '=', 0, 0,
	'q', 'w', 'e', 'r', 't', 'y', 'u', 'i', 'o', 'p', '[', ']', 0, 0, 'a', 's',
	'd', 'f', 'g', 'h', 'j', 'k', 'l', ';', '\'', '`', 0, '\\', 'z', 'x', 'c', 'v',
	'b', 'n', 'm', ',', '.', '/', 0, '*', 0, ' ',
};
static const char kbd_shift[0x3a] = {
	0, 0, '!', '@', '#', '$', '%', '^', '&', '*', '(', ')', '_', '+', 0, 0,
	'Q', 'W', 'E', 'R', 'T', 'Y', 'U', 'I', 'O', 'P', '{', '}', 0, 0, 'A', 'S',
	'D', 'F', 'G', 'H', 'J', 'K', 'L', ':', '"', '~', 0, '|', 'Z', 'X', 'C', 'V',
	'B', 'N', 'M', '<', '>', '?', 0, '*', 0, ' ',
};
/* The keypad 0x47-0x53: the digit (NumLock) and the cursor key (E0-prefixed or NumLock off). */
static const char kbd_pad_char[13] = { '7', '8', '9', '-', '4', '5', '6', '+', '1', '2', '3', '0', '.' };
static const uint8_t kbd_pad_scan[13] = {
	SCAN_HOME, SCAN_UP, SCAN_PAGE_UP, 0, SCAN_LEFT, 0, SCAN_RIGHT, 0, SCAN_END, SCAN_DOWN, SCAN_PAGE_DOWN,
	SCAN_INSERT, SCAN_DELETE,
};

bool efi_kbd_event(struct efi_kbd *k, uint16_t make, bool e0, bool brk, EFI_INPUT_KEY *key)
{
	bool down = !brk;
	/* Modifiers and locks first: they change state and give no key. */
	switch (make) {
	case 0x2a: if (!e0) { k->lshift = down; return false; } break; /* E0 2A: a fake shift */
	case 0x36: if (!e0) { k->rshift = down; return false; } break;
	case 0x1d: if (e0) k->rctrl = down; else k->lctrl = down; return false;
	case 0x38: if (e0) k->ralt = down; else k->lalt = down; return false;
	case 0x5b: if (e0) { k->lwin = down; return false; } break;
	case 0x5c: if (e0) { k->rwin = down; return false; } break;
	case 0x3a: if (down && !e0) k->caps = !k->caps; return false;
	case 0x45: if (down && !e0) k->num = !k->num; return false;
	case 0x46: if (down && !e0) k->scroll = !k->scroll; return false;
	default: break;
	}
	if (brk)
		return false;
	*key = (EFI_INPUT_KEY){ SCAN_NULL, CHAR_NULL };
	bool shift = k->lshift || k->rshift;
	if (e0) {
		if (make == 0x1c) /* keypad Enter */
			key->UnicodeChar = CHAR_CARRIAGE_RETURN;
		else if (make == 0x35) /* keypad / */
			key->UnicodeChar = '/';
		else if (make >= 0x47 && make <= 0x53 && kbd_pad_scan[make - 0x47])
			key->ScanCode = kbd_pad_scan[make - 0x47];
		else
			return false;
		return true;
	}
	if (make == 0x01)
		key->ScanCode = SCAN_ESC;
	else if (make == 0x0e)
		key->UnicodeChar = CHAR_BACKSPACE;
	else if (make == 0x0f)
		key->UnicodeChar = CHAR_TAB;
	else if (make == 0x1c)
		key->UnicodeChar = CHAR_CARRIAGE_RETURN;
	else if (make >= 0x3b && make <= 0x44)
		key->ScanCode = (uint16_t)(SCAN_F1 + (make - 0x3b));
	else if (make == 0x57)
		key->ScanCode = SCAN_F11;
	else if (make == 0x58)
		key->ScanCode = SCAN_F12;
	else if (make >= 0x47 && make <= 0x53) {
		unsigned i = make - 0x47u;
		if (k->num != shift || !kbd_pad_scan[i]) /* NumLock, or Shift with it off, gives digits */
			key->UnicodeChar = (CHAR16)kbd_pad_char[i];
		else
			key->ScanCode = kbd_pad_scan[i];
	} else if (make < sizeof(kbd_plain) && kbd_plain[make]) {
		char ch = kbd_plain[make];
		bool letter = ch >= 'a' && ch <= 'z';
		bool up = letter ? shift != k->caps : shift;
		key->UnicodeChar = (CHAR16)(up ? kbd_shift[make] : ch);
	} else {
		return false;
	}
	return true;
}

uint32_t efi_kbd_shift_state(const struct efi_kbd *k)
{
	return EFI_SHIFT_STATE_VALID | (k->rshift ? EFI_RIGHT_SHIFT_PRESSED : 0) | (k->lshift ? EFI_LEFT_SHIFT_PRESSED : 0) |
	       (k->rctrl ? EFI_RIGHT_CONTROL_PRESSED : 0) | (k->lctrl ? EFI_LEFT_CONTROL_PRESSED : 0) |
	       (k->ralt ? EFI_RIGHT_ALT_PRESSED : 0) | (k->lalt ? EFI_LEFT_ALT_PRESSED : 0) |
	       (k->rwin ? EFI_RIGHT_LOGO_PRESSED : 0) | (k->lwin ? EFI_LEFT_LOGO_PRESSED : 0);
}

uint8_t efi_kbd_toggle_state(const struct efi_kbd *k)
{
	return (uint8_t)(EFI_TOGGLE_STATE_VALID | (k->scroll ? EFI_SCROLL_LOCK_ACTIVE : 0) |
			 (k->num ? EFI_NUM_LOCK_ACTIVE : 0) | (k->caps ? EFI_CAPS_LOCK_ACTIVE : 0));
}
