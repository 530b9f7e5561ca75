/* User-supplied text (paths, option values, JSON keys) as it may appear in a one-line message or in
 * JSON output. Arguments come from a careless or hostile user: a 100 KB value must not push the
 * reason out of the message, a newline must not split it, and bytes that are not UTF-8 must not make
 * JSON output invalid. */
#ifndef GEN2VM_UTIL_TEXT_H
#define GEN2VM_UTIL_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Longest text text_show() returns, with its terminating NUL. */
#define TEXT_SHOW_MAX 600

/* s for a message: control characters and bytes that are not UTF-8 as \xNN, and a text longer than
 * 136 bytes cut in the middle with "...(N bytes)..." so that both ends stay visible. s NULL
 * gives "(null)". The result lives in a per-thread ring of 8 buffers: valid until the eighth later
 * call on the same thread, enough for one message. Never fails. */
const char *text_show(const char *s);

/* Whether s is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
bool text_is_utf8(const char *s);

/* s as valid UTF-8 for JSON output: bytes that are not UTF-8 become the four characters \xNN
 * (a backslash, 'x', two hex digits). Returns a malloc'ed string, NULL when out of memory. */
char *text_utf8_dup(const char *s);

#endif
