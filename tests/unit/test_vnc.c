/* The VNC front end's pure parts (src/ui/vnc.c, synthkbd's keysym table, synthvid's pointer shape
 * check): X keysyms to set-1 keys, the pointer scaled to synthmouse's axes, RFB buttons, the
 * password file. The server itself is tested against the video device in test_console.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/synthkbd.h"
#include "devices/synthmouse.h"
#include "devices/synthvid.h"
#include "ui/vnc.h"

static void key(uint32_t keysym, uint8_t make, bool e0, int shift)
{
	struct synthkbd_key k;
	int sh;
	if (!synthkbd_key_of_keysym(keysym, &k, &sh))
		fail_msg("keysym 0x%x: no key", keysym);
	if (k.make != make || k.e0 != e0 || sh != shift)
		fail_msg("keysym 0x%x: 0x%02x e0=%d shift=%d, expected 0x%02x e0=%d shift=%d", keysym, k.make, k.e0, sh,
			 make, e0, shift);
}

static void test_keysyms(void **state)
{
	/* Letters, digits, punctuation with the shift the keysym implies. */
	key('a', 0x1e, false, 0);
	key('A', 0x1e, false, 1);
	key('z', 0x2c, false, 0);
	key('Q', 0x10, false, 1);
	key('1', 0x02, false, 0);
	key('!', 0x02, false, 1);
	key('0', 0x0b, false, 0);
	key(')', 0x0b, false, 1);
	key(' ', 0x39, false, 0);
	key('-', 0x0c, false, 0);
	key('_', 0x0c, false, 1);
	key('/', 0x35, false, 0);
	key('?', 0x35, false, 1);
	key('~', 0x29, false, 1);
	key('|', 0x2b, false, 1);
	key(';', 0x27, false, 0);
	key(':', 0x27, false, 1);
	key('"', 0x28, false, 1);
	/* Function keys. */
	key(0xffbe, 0x3b, false, -1); /* F1 */
	key(0xffc7, 0x44, false, -1); /* F10 */
	key(0xffc8, 0x57, false, -1); /* F11 */
	key(0xffc9, 0x58, false, -1); /* F12 */
	/* Editing and movement: E0 in set 1. */
	key(0xff52, 0x48, true, -1); /* Up */
	key(0xff54, 0x50, true, -1); /* Down */
	key(0xff51, 0x4b, true, -1); /* Left */
	key(0xff53, 0x4d, true, -1); /* Right */
	key(0xff50, 0x47, true, -1); /* Home */
	key(0xff57, 0x4f, true, -1); /* End */
	key(0xff55, 0x49, true, -1); /* Prior */
	key(0xff56, 0x51, true, -1); /* Next */
	key(0xff63, 0x52, true, -1); /* Insert */
	key(0xffff, 0x53, true, -1); /* Delete */
	key(0xff0d, 0x1c, false, -1); /* Return */
	key(0xff8d, 0x1c, true, -1);  /* KP_Enter */
	key(0xff1b, 0x01, false, -1); /* Escape */
	key(0xff09, 0x0f, false, -1); /* Tab */
	key(0xff08, 0x0e, false, -1); /* BackSpace */
	/* Modifiers, left and right. */
	key(0xffe1, 0x2a, false, -1); /* Shift_L */
	key(0xffe2, 0x36, false, -1); /* Shift_R */
	key(0xffe3, 0x1d, false, -1); /* Control_L */
	key(0xffe4, 0x1d, true, -1);  /* Control_R */
	key(0xffe9, 0x38, false, -1); /* Alt_L */
	key(0xffea, 0x38, true, -1);  /* Alt_R */
	key(0xffeb, 0x5b, true, -1);  /* Super_L */
	key(0xffec, 0x5c, true, -1);  /* Super_R */
	assert_true(synthkbd_keysym_is_shift(0xffe1));
	assert_true(synthkbd_keysym_is_shift(0xffe2));
	assert_false(synthkbd_keysym_is_shift(0xffe3));
	/* Nothing for what has no key on a US keyboard. */
	struct synthkbd_key k;
	int sh;
	assert_false(synthkbd_key_of_keysym(0x00e9, &k, &sh)); /* eacute */
	assert_false(synthkbd_key_of_keysym(0x1f, &k, &sh));
	assert_false(synthkbd_key_of_keysym(0x7f, &k, &sh));
	assert_false(synthkbd_key_of_keysym(0xffbd, &k, &sh));
	assert_false(synthkbd_key_of_keysym(0x1000000, &k, &sh));
}

static void test_pointer_scale(void **state)
{
	uint16_t x, y;
	vnc_pointer_scale(0, 0, 1024, 768, &x, &y);
	assert_int_equal(x, 0);
	assert_int_equal(y, 0);
	vnc_pointer_scale(1023, 767, 1024, 768, &x, &y);
	assert_int_equal(x, SYNTHMOUSE_AXIS_MAX);
	assert_int_equal(y, SYNTHMOUSE_AXIS_MAX);
	vnc_pointer_scale(512, 384, 1025, 769, &x, &y); /* the middle pixel: the middle of the axis */
	assert_int_equal(x, 16384);
	assert_int_equal(y, 16384);
	/* Outside the frame: clamped. */
	vnc_pointer_scale(-5, 5000, 640, 480, &x, &y);
	assert_int_equal(x, 0);
	assert_int_equal(y, SYNTHMOUSE_AXIS_MAX);
	/* Degenerate frames do not divide by zero. */
	vnc_pointer_scale(3, 3, 1, 0, &x, &y);
	assert_int_equal(x, 0);
	/* Monotonic over a row. */
	uint16_t prev = 0;
	for (int i = 0; i < 1920; i++) {
		vnc_pointer_scale(i, 0, 1920, 1080, &x, &y);
		assert_true(x >= prev);
		prev = x;
	}

	uint8_t b;
	int8_t w;
	vnc_buttons_convert(1, &b, &w);
	assert_int_equal(b, 1);
	assert_int_equal(w, 0);
	vnc_buttons_convert(4, &b, &w); /* RFB right is bit 2; synthmouse's bit 1 */
	assert_int_equal(b, 2);
	vnc_buttons_convert(2, &b, &w); /* RFB middle is bit 1; synthmouse's bit 2 */
	assert_int_equal(b, 4);
	vnc_buttons_convert(8, &b, &w);
	assert_int_equal(b, 0);
	assert_int_equal(w, 1);
	vnc_buttons_convert(16 | 1, &b, &w);
	assert_int_equal(b, 1);
	assert_int_equal(w, -1);
}

static void test_password_file(void **state)
{
	char path[] = "/tmp/gen2vm-vncpw-XXXXXX", pw[16], err[512];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hunter2\nrest\n", 13), 13);
	close(fd);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), 0);
	assert_string_equal(pw, "hunter2");
	/* CRLF, no newline at all. */
	FILE *f = fopen(path, "w");
	fputs("abc\r\n", f);
	fclose(f);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), 0);
	assert_string_equal(pw, "abc");
	f = fopen(path, "w");
	fputs("x", f);
	fclose(f);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), 0);
	assert_string_equal(pw, "x");
	/* Empty, an empty first line, too long for the buffer. */
	f = fopen(path, "w");
	fclose(f);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "the first line is empty"));
	f = fopen(path, "w");
	fputs("\nsecret\n", f);
	fclose(f);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), -EINVAL);
	f = fopen(path, "w");
	fputs("0123456789abcdefghij\n", f);
	fclose(f);
	assert_int_equal(vnc_password_file_read(path, pw, sizeof(pw), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than"));
	/* Not a regular file; missing; unreadable is covered by file_read_user's own tests. */
	assert_int_equal(vnc_password_file_read("/tmp", pw, sizeof(pw), err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "--vnc-password-file /tmp"));
	assert_int_equal(vnc_password_file_read("/nonexistent/pw", pw, sizeof(pw), err, sizeof(err)), -ENOENT);
	assert_int_equal(vnc_password_file_read("/dev/null", pw, sizeof(pw), err, sizeof(err)) < 0, 1);
	unlink(path);
}

static void test_addr(void **state)
{
	struct vnc_addr a;
	char err[256];
	assert_int_equal(vnc_addr_parse("--vnc", "127.0.0.2:1", true, &a, err, sizeof(err)), 0);
	assert_true(vnc_addr_is_loopback(&a));
	assert_int_equal(vnc_addr_parse("--vnc", "192.168.1.1:65535", true, &a, err, sizeof(err)), 0);
	assert_false(vnc_addr_is_loopback(&a));
	assert_int_equal(a.port, 65535);
	assert_int_equal(vnc_addr_parse("--vnc", "unix:/run/x.sock", true, &a, err, sizeof(err)), 0);
	assert_true(vnc_addr_is_loopback(&a));
	assert_int_equal(vnc_addr_parse("--web-console", "unix:/run/x.sock", false, &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(vnc_addr_parse("--vnc", ":5900", true, &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(vnc_addr_parse("--vnc", "127.0.0.1:+5", true, &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(vnc_addr_parse("--vnc", "127.0.0.1:5x", true, &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(vnc_addr_parse("--vnc", "::1:5900", true, &a, err, sizeof(err)), -EINVAL);
	char longpath[200];
	memset(longpath, 'p', sizeof(longpath));
	memcpy(longpath, "unix:", 5);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(vnc_addr_parse("--vnc", longpath, true, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "the socket path must be"));
}

/* The POINTER_SHAPE body check: sizes against the message's length. */
static void test_pointer_shape_check(void **state)
{
	static uint8_t b[sizeof(struct synthvid_pointer_shape) + 96 * 96 * 4];
	struct synthvid_pointer_shape s = { SYNTHVID_CURSOR_COMPLETE, 1, 96, 96, 95, 95, { 0 } };
	memcpy(b, &s, sizeof(s));
	const uint32_t hdr = (uint32_t)offsetof(struct synthvid_pointer_shape, data);
	const char *why;
	assert_int_equal(synthvid_pointer_shape_check(b, hdr + 96 * 96 * 4, &why), 0);
	assert_int_equal(synthvid_pointer_shape_check(b, hdr + 96 * 96 * 4 - 1, &why), -EINVAL);
	assert_string_equal(why, "its image is longer than the message");
	assert_int_equal(synthvid_pointer_shape_check(b, hdr - 1, &why), -EINVAL);
	assert_string_equal(why, "shorter than its header");
	s.width = 97;
	memcpy(b, &s, sizeof(s));
	assert_int_equal(synthvid_pointer_shape_check(b, sizeof(b), &why), -EINVAL);
	assert_string_equal(why, "larger than 96x96");
	s.width = 0xffffffffu;
	s.height = 0xffffffffu;
	memcpy(b, &s, sizeof(s));
	assert_int_equal(synthvid_pointer_shape_check(b, sizeof(b), &why), -EINVAL);
	s = (struct synthvid_pointer_shape){ SYNTHVID_CURSOR_COMPLETE, 1, 8, 8, 9, 0, { 0 } };
	memcpy(b, &s, sizeof(s));
	assert_int_equal(synthvid_pointer_shape_check(b, sizeof(b), &why), -EINVAL);
	assert_string_equal(why, "its hot spot is outside it");
	/* Linux's 1x1 shape: exactly its 4 bytes. A monochrome one carries no ARGB image to check. */
	s = (struct synthvid_pointer_shape){ SYNTHVID_CURSOR_COMPLETE, 1, 1, 1, 0, 0, { 0 } };
	memcpy(b, &s, sizeof(s));
	assert_int_equal(synthvid_pointer_shape_check(b, hdr + 4, &why), 0);
	assert_int_equal(synthvid_pointer_shape_check(b, hdr + 3, &why), -EINVAL);
	s.is_argb = 0;
	s.width = s.height = 32;
	memcpy(b, &s, sizeof(s));
	assert_int_equal(synthvid_pointer_shape_check(b, hdr, &why), 0);
}

static void test_http_is_websocket(void **state)
{
	(void)state;
	assert_true(vnc_http_is_websocket("GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
	assert_true(vnc_http_is_websocket("GET / HTTP/1.1\nUPGRADE:\tWebSocket\n\n"));
	/* not a header (the request line, a body), another protocol, headers without it */
	assert_false(vnc_http_is_websocket("GET /Upgrade: websocket HTTP/1.1\r\n\r\n"));
	assert_false(vnc_http_is_websocket("GET / HTTP/1.1\r\nHost: x\r\n\r\nUpgrade: websocket\r\n"));
	assert_false(vnc_http_is_websocket("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
	assert_false(vnc_http_is_websocket("GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n"));
	assert_false(vnc_http_is_websocket(""));
}

static void test_http_target(void **state)
{
	char path[128];
#define REQ(s) s, sizeof(s) - 1
	assert_string_equal(vnc_http_target(REQ("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), path, sizeof(path)),
			    "text/html; charset=utf-8");
	assert_string_equal(path, "/vnc.html");
	assert_string_equal(vnc_http_target(REQ("GET /vnc.html?autoconnect=1&port=5900 HTTP/1.1\r\n"), path, sizeof(path)),
			    "text/html; charset=utf-8");
	assert_string_equal(path, "/vnc.html");
	assert_string_equal(vnc_http_target(REQ("GET /app/ui.js HTTP/1.1\r\n"), path, sizeof(path)), "text/javascript");
	assert_string_equal(path, "/app/ui.js");
	assert_string_equal(vnc_http_target(REQ("GET /app/styles/base.css HTTP/1.1\r\n"), path, sizeof(path)), "text/css");
	assert_string_equal(vnc_http_target(REQ("GET /app/images/icons/novnc.svg HTTP/1.0\n"), path, sizeof(path)),
			    "image/svg+xml");
	assert_string_equal(vnc_http_target(REQ("GET /LICENSE HTTP/1.0\n"), path, sizeof(path)), "application/octet-stream");
	/* Out of the directory, escapes, other methods, no line end yet, too long: refused. */
	assert_null(vnc_http_target(REQ("GET /../../etc/passwd HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET /app/..%2f..%2fetc/passwd HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET //etc/passwd HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET /a\\b HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET etc/passwd HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("POST / HTTP/1.1\r\n"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET / HTTP/1.1"), path, sizeof(path)));
	assert_null(vnc_http_target(REQ("GET"), path, sizeof(path)));
	char small[4];
	assert_null(vnc_http_target(REQ("GET /vnc.html HTTP/1.1\r\n"), small, sizeof(small)));
#undef REQ
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keysyms),       cmocka_unit_test(test_pointer_scale),
		cmocka_unit_test(test_password_file), cmocka_unit_test(test_addr),
		cmocka_unit_test(test_pointer_shape_check), cmocka_unit_test(test_http_target),
		cmocka_unit_test(test_http_is_websocket),
	};
	return cmocka_run_group_tests_name("vnc", tests, NULL, NULL);
}
