#include "efi/efi_conio.h"

size_t efi_ucs2_to_utf8(const CHAR16 *s, size_t *used, char *out, size_t cap, bool *bad)
{
	size_t i = 0, k = 0;
	for (; s[i]; ) {
		uint32_t c = s[i];
		size_t step = 1;
		if (c >= 0xd800 && c <= 0xdbff && s[i + 1] >= 0xdc00 && s[i + 1] <= 0xdfff) {
			c = 0x10000 + ((c - 0xd800) << 10) + (s[i + 1] - 0xdc00u);
			step = 2;
		} else if (c >= 0xd800 && c <= 0xdfff) {
			c = '?';
			if (bad)
				*bad = true;
		}
		size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
		if (k + n > cap)
			break;
		if (n == 1) {
			out[k] = (char)c;
		} else {
			static const uint8_t lead[5] = { 0, 0, 0xc0, 0xe0, 0xf0 };
			for (size_t j = n - 1; j > 0; j--) {
				out[k + j] = (char)(0x80 | (c & 0x3f));
				c >>= 6;
			}
			out[k] = (char)(lead[n] | c);
		}
		k += n;
		i += step;
	}
	if (used)
		*used = i;
	return k;
}

static size_t put_uint(char *buf, unsigned v)
{
	char t[10];
	size_t n = 0, k = 0;
	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		buf[k++] = t[--n];
	return k;
}

size_t efi_ansi_attr(char *buf, unsigned attr)
{
	/* EFI orders colours blue-green-red (bit 0 = blue), ANSI red-green-blue. */
	static const char ansi[8] = { '0', '4', '2', '6', '1', '5', '3', '7' };
	size_t k = 0;
	buf[k++] = 0x1b;
	buf[k++] = '[';
	buf[k++] = '0';
	buf[k++] = ';';
	if (attr & EFI_BRIGHT) {
		buf[k++] = '1';
		buf[k++] = ';';
	}
	buf[k++] = '3';
	buf[k++] = ansi[attr & 7];
	buf[k++] = ';';
	buf[k++] = '4';
	buf[k++] = ansi[(attr >> 4) & 7];
	buf[k++] = 'm';
	return k;
}

size_t efi_ansi_goto(char *buf, unsigned col, unsigned row)
{
	size_t k = 0;
	buf[k++] = 0x1b;
	buf[k++] = '[';
	k += put_uint(buf + k, row + 1);
	buf[k++] = ';';
	k += put_uint(buf + k, col + 1);
	buf[k++] = 'H';
	return k;
}

void efi_keydec_reset(struct efi_keydec *d)
{
	d->len = 0;
	d->utf8_need = 0;
	d->cp = 0;
	d->last_cr = false;
	d->skip = false;
}

bool efi_keydec_pending(const struct efi_keydec *d)
{
	return d->len || d->utf8_need || d->skip;
}

unsigned efi_keydec_timeout(struct efi_keydec *d, EFI_INPUT_KEY out[1])
{
	bool lone_esc = d->len == 1;
	efi_keydec_reset(d);
	if (!lone_esc)
		return 0;
	out[0] = (EFI_INPUT_KEY){ SCAN_ESC, 0 };
	return 1;
}

/* "ESC [ n ~" codes (VT220/xterm): index = n. */
static uint16_t keydec_tilde(unsigned n)
{
	switch (n) {
	case 1: case 7: return SCAN_HOME;
	case 2: return SCAN_INSERT;
	case 3: return SCAN_DELETE;
	case 4: case 8: return SCAN_END;
	case 5: return SCAN_PAGE_UP;
	case 6: return SCAN_PAGE_DOWN;
	case 11: case 12: case 13: case 14: case 15: return (uint16_t)(SCAN_F1 + n - 11);
	case 17: case 18: case 19: case 20: case 21: return (uint16_t)(SCAN_F1 + 5 + n - 17);
	case 23: return SCAN_F11;
	case 24: return SCAN_F12;
	}
	return SCAN_NULL;
}

/* The scan code of a final letter after "ESC [" or "ESC O" (modifiers ignored). */
static uint16_t keydec_letter(uint8_t c)
{
	switch (c) {
	case 'A': return SCAN_UP;
	case 'B': return SCAN_DOWN;
	case 'C': return SCAN_RIGHT;
	case 'D': return SCAN_LEFT;
	case 'H': return SCAN_HOME;
	case 'F': return SCAN_END;
	case 'P': return SCAN_F1;
	case 'Q': return SCAN_F1 + 1;
	case 'R': return SCAN_F1 + 2;
	case 'S': return SCAN_F1 + 3;
	}
	return SCAN_NULL;
}

/* A complete sequence in d->seq: its scan code, or SCAN_NULL for one we do not know. */
static uint16_t keydec_decode(const struct efi_keydec *d)
{
	const uint8_t *s = d->seq;
	uint8_t last = s[d->len - 1];
	if (s[1] == 'O')
		return d->len == 3 ? keydec_letter(last) : SCAN_NULL;
	/* s[1] == '[' */
	if (d->len == 4 && s[2] == '[' && last >= 'A' && last <= 'E') /* Linux console F1-F5 */
		return (uint16_t)(SCAN_F1 + last - 'A');
	unsigned n = 0;
	size_t i = 2;
	for (; i < d->len && s[i] >= '0' && s[i] <= '9'; i++)
		n = n * 10 + (s[i] - '0');
	if (last == '~')
		return keydec_tilde(n);
	return keydec_letter(last);
}

unsigned efi_keydec_feed(struct efi_keydec *d, uint8_t b, EFI_INPUT_KEY out[2])
{
	unsigned nk = 0;
	if (d->utf8_need) {
		if ((b & 0xc0) == 0x80) {
			d->cp = d->cp << 6 | (b & 0x3f);
			if (--d->utf8_need)
				return 0;
			if (d->cp < 0x80 || (d->cp >= 0xd800 && d->cp <= 0xdfff) || d->cp > 0xffff)
				return 0; /* overlong, a surrogate, or beyond UCS-2 */
			out[0] = (EFI_INPUT_KEY){ SCAN_NULL, (CHAR16)d->cp };
			return 1;
		}
		d->utf8_need = 0; /* a broken character: drop it, take b afresh */
	}
	if (d->skip) {
		if (b >= 0x20 && b <= 0x3f)
			return 0;
		d->skip = false;
		if (b >= 0x40 && b <= 0x7e)
			return 0; /* the final byte of the swallowed sequence */
	}
	if (d->len) {
		if (d->len == 1) {
			if (b == '[' || b == 'O') {
				d->seq[d->len++] = b;
				return 0;
			}
			/* ESC then something else (Alt+key, or ESC pressed twice): the Esc key, then b. */
			d->len = 0;
			out[nk++] = (EFI_INPUT_KEY){ SCAN_ESC, 0 };
		} else if (b < 0x20) {
			d->len = 0; /* a control byte breaks a garbled sequence: drop it, take b afresh */
		} else {
			d->seq[d->len++] = b;
			bool final = (b >= 0x40 && b <= 0x7e) && !(d->len == 3 && b == '[');
			if (!final && d->len < sizeof(d->seq))
				return 0;
			d->skip = !final; /* too long for any key we know: swallow the rest of it too */
			uint16_t scan = final ? keydec_decode(d) : SCAN_NULL;
			d->len = 0;
			if (scan == SCAN_NULL)
				return 0;
			out[0] = (EFI_INPUT_KEY){ scan, 0 };
			return 1;
		}
	}
	if (b == 0x1b) {
		d->seq[0] = b;
		d->len = 1;
		return nk;
	}
	CHAR16 c = b;
	if (b >= 0xc2 && b <= 0xef) {
		d->utf8_need = b >= 0xe0 ? 2 : 1;
		d->cp = b & (b >= 0xe0 ? 0x0f : 0x1f);
		return nk;
	}
	if (b >= 0x80)
		return nk; /* a stray continuation byte or a 4-byte lead: not UCS-2 */
	bool after_cr = d->last_cr;
	d->last_cr = b == '\r';
	if (b == '\n' && after_cr)
		return nk; /* CR LF is one Enter */
	if (b == '\n' || b == '\r')
		c = CHAR_CARRIAGE_RETURN;
	else if (b == 0x7f || b == 0x08)
		c = CHAR_BACKSPACE;
	out[nk++] = (EFI_INPUT_KEY){ SCAN_NULL, c };
	return nk;
}
