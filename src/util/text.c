#include "util/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_SHOW_RING 8
#define TEXT_SHOW_KEEP 60 /* bytes kept at each end of a long text (escaped: up to 4 times as many) */

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when s does not start one. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	uint32_t cp, min;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		n = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
		return 0;
	return n;
}

bool text_is_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq_len(p);
		if (!n)
			return false;
		p += n;
	}
	return true;
}

/* Appends s[0..len) to out (room for cap bytes, *o used), escaping what a one-line message cannot
 * carry. Stops before overflowing. */
static void show_append(char *out, size_t cap, size_t *o, const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len(s + i);
		if (n && s[i] >= 0x20 && s[i] != 0x7f && i + n <= len) {
			if (*o + n >= cap)
				return;
			memcpy(out + *o, s + i, n);
			*o += n;
			i += n;
		} else {
			if (*o + 4 >= cap)
				return;
			snprintf(out + *o, cap - *o, "\\x%02x", s[i]);
			*o += 4;
			i++;
		}
	}
}

const char *text_show(const char *s)
{
	static __thread char ring[TEXT_SHOW_RING][TEXT_SHOW_MAX];
	static __thread unsigned next;
	char *out = ring[next++ % TEXT_SHOW_RING];
	size_t o = 0;
	if (!s)
		s = "(null)";
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s);
	if (len <= 2 * TEXT_SHOW_KEEP + 16) {
		show_append(out, TEXT_SHOW_MAX, &o, u, len);
	} else {
		/* Cut on character boundaries so that the ends stay valid UTF-8. */
		size_t head = TEXT_SHOW_KEEP, tail = len - TEXT_SHOW_KEEP;
		while (head > 0 && (u[head] & 0xc0) == 0x80)
			head--;
		while (tail < len && (u[tail] & 0xc0) == 0x80)
			tail++;
		char mid[48];
		int m = snprintf(mid, sizeof(mid), "...(%zu bytes)...", len);
		show_append(out, TEXT_SHOW_MAX, &o, u, head);
		memcpy(out + o, mid, (size_t)m);
		o += (size_t)m;
		show_append(out, TEXT_SHOW_MAX, &o, u + tail, len - tail);
	}
	out[o] = 0;
	return out;
}

char *text_utf8_dup(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	char *out = malloc(len * 4 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	while (*p) {
		size_t n = utf8_seq_len(p);
		if (n) {
			memcpy(out + o, p, n);
			o += n;
			p += n;
		} else {
			o += (size_t)sprintf(out + o, "\\x%02x", *p++);
		}
	}
	out[o] = 0;
	return out;
}
