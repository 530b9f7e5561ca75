/* The firmware console's pure parts (guestlib/efi/efi_conio.c): UCS-2 to UTF-8, ANSI sequences, and
 * the decoder of what a terminal sends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "efi/efi_conio.h"

static void test_utf8(void **state)
{
	char out[64];
	size_t used;
	bool bad = false;
	/* ASCII, e-acute, a box-drawing line, the euro sign, G clef (a surrogate pair) */
	const CHAR16 s[] = { 'A', 0x00e9, 0x2500, 0x20ac, 0xd834, 0xdd1e, '\r', '\n', 0 };
	size_t n = efi_ucs2_to_utf8(s, &used, out, sizeof(out), &bad);
	const char want[] = "A\xc3\xa9\xe2\x94\x80\xe2\x82\xac\xf0\x9d\x84\x9e\r\n";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(out, want, n);
	assert_int_equal(used, 8);
	assert_false(bad);

	/* An unpaired surrogate is '?' and reported. */
	const CHAR16 b[] = { 0xdc00, 'x', 0xd800, 0 };
	n = efi_ucs2_to_utf8(b, &used, out, sizeof(out), &bad);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "?x?", 3);
	assert_true(bad);

	/* A full buffer stops before a character that does not fit whole. */
	const CHAR16 c[] = { 'a', 'b', 0x20ac, 'c', 0 };
	n = efi_ucs2_to_utf8(c, &used, out, 4, NULL);
	assert_int_equal(n, 2);
	assert_int_equal(used, 2);
	n = efi_ucs2_to_utf8(c + used, &used, out, 4, NULL);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\xe2\x82\xac" "c", 4);
	assert_int_equal(used, 2);
}

static void test_ansi(void **state)
{
	char buf[24];
	size_t n = efi_ansi_attr(buf, EFI_TEXT_ATTR(EFI_LIGHTGRAY, EFI_BLACK));
	assert_int_equal(n, strlen("\x1b[0;37;40m"));
	assert_memory_equal(buf, "\x1b[0;37;40m", n);
	n = efi_ansi_attr(buf, EFI_TEXT_ATTR(EFI_WHITE, EFI_BLUE));
	assert_memory_equal(buf, "\x1b[0;1;37;44m", n);
	n = efi_ansi_attr(buf, EFI_TEXT_ATTR(EFI_RED | EFI_BRIGHT, EFI_CYAN)); /* EFI red is ANSI 1 */
	assert_memory_equal(buf, "\x1b[0;1;31;46m", n);
	n = efi_ansi_attr(buf, EFI_TEXT_ATTR(EFI_BROWN, EFI_MAGENTA));
	assert_memory_equal(buf, "\x1b[0;33;45m", n);
	n = efi_ansi_goto(buf, 0, 0);
	assert_memory_equal(buf, "\x1b[1;1H", n);
	n = efi_ansi_goto(buf, 79, 24);
	assert_int_equal(n, 8);
	assert_memory_equal(buf, "\x1b[25;80H", n);
}

/* Feeds a byte string, collecting keys; ends with the timeout (a pause in typing). */
static unsigned feed(const char *s, size_t len, EFI_INPUT_KEY *keys, bool pause)
{
	struct efi_keydec d;
	memset(&d, 0, sizeof(d));
	unsigned n = 0;
	for (size_t i = 0; i < len; i++)
		n += efi_keydec_feed(&d, (uint8_t)s[i], keys + n);
	if (pause)
		n += efi_keydec_timeout(&d, keys + n);
	return n;
}

static void expect_scan(const char *seq, uint16_t scan)
{
	EFI_INPUT_KEY k[8];
	unsigned n = feed(seq, strlen(seq), k, false);
	if (n != 1 || k[0].ScanCode != scan || k[0].UnicodeChar)
		fail_msg("sequence \\e%s: %u keys, first scan 0x%x (want 0x%x)", seq + 1, n, n ? k[0].ScanCode : 0, scan);
}

static void test_keys_sequences(void **state)
{
	expect_scan("\x1b[A", SCAN_UP);
	expect_scan("\x1b[B", SCAN_DOWN);
	expect_scan("\x1b[C", SCAN_RIGHT);
	expect_scan("\x1b[D", SCAN_LEFT);
	expect_scan("\x1bOA", SCAN_UP); /* application cursor mode */
	expect_scan("\x1b[1;5C", SCAN_RIGHT); /* Ctrl+Right: the modifier is dropped */
	expect_scan("\x1b[H", SCAN_HOME);
	expect_scan("\x1b[F", SCAN_END);
	expect_scan("\x1bOH", SCAN_HOME);
	expect_scan("\x1b[1~", SCAN_HOME);
	expect_scan("\x1b[4~", SCAN_END);
	expect_scan("\x1b[2~", SCAN_INSERT);
	expect_scan("\x1b[3~", SCAN_DELETE);
	expect_scan("\x1b[5~", SCAN_PAGE_UP);
	expect_scan("\x1b[6~", SCAN_PAGE_DOWN);
	expect_scan("\x1bOP", SCAN_F1);
	expect_scan("\x1bOS", SCAN_F1 + 3);
	expect_scan("\x1b[11~", SCAN_F1);
	expect_scan("\x1b[15~", SCAN_F1 + 4);
	expect_scan("\x1b[17~", SCAN_F1 + 5);
	expect_scan("\x1b[21~", SCAN_F10);
	expect_scan("\x1b[23~", SCAN_F11);
	expect_scan("\x1b[24~", SCAN_F12);
	expect_scan("\x1b[[A", SCAN_F1); /* Linux console */
	expect_scan("\x1b[[E", SCAN_F1 + 4);
}

static void test_keys_plain(void **state)
{
	EFI_INPUT_KEY k[16];
	unsigned n = feed("aZ\r\n\x7f\x08\t\x03", 8, k, false);
	uint16_t want[] = { 'a', 'Z', CHAR_CARRIAGE_RETURN, CHAR_BACKSPACE, CHAR_BACKSPACE, CHAR_TAB, 3 };
	assert_int_equal(n, 7); /* CR LF is one Enter */
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(k[i].ScanCode, SCAN_NULL);
		assert_int_equal(k[i].UnicodeChar, want[i]);
	}
	n = feed("\n\n", 2, k, false); /* LF alone (a pipe) is Enter each time */
	assert_int_equal(n, 2);
	assert_int_equal(k[1].UnicodeChar, CHAR_CARRIAGE_RETURN);
	/* UTF-8 input */
	n = feed("\xc3\xa9\xe2\x82\xac", 5, k, false);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].UnicodeChar, 0xe9);
	assert_int_equal(k[1].UnicodeChar, 0x20ac);
	/* broken UTF-8: the lead is dropped, the next byte taken afresh; 4-byte characters are not UCS-2 */
	n = feed("\xc3x\xf0\x9d\x84\x9ey", 7, k, false);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].UnicodeChar, 'x');
	assert_int_equal(k[1].UnicodeChar, 'y');
}

static void test_keys_escape(void **state)
{
	EFI_INPUT_KEY k[16];
	/* a lone ESC is the Esc key only after the pause */
	struct efi_keydec d;
	memset(&d, 0, sizeof(d));
	assert_int_equal(efi_keydec_feed(&d, 0x1b, k), 0);
	assert_true(efi_keydec_pending(&d));
	assert_int_equal(efi_keydec_timeout(&d, k), 1);
	assert_int_equal(k[0].ScanCode, SCAN_ESC);
	assert_false(efi_keydec_pending(&d));
	/* ESC ESC [A: Esc, then Up */
	unsigned n = feed("\x1b\x1b[A", 4, k, false);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].ScanCode, SCAN_ESC);
	assert_int_equal(k[1].ScanCode, SCAN_UP);
	/* Alt+x: Esc, then x */
	n = feed("\x1bx", 2, k, false);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].ScanCode, SCAN_ESC);
	assert_int_equal(k[1].UnicodeChar, 'x');
	/* unknown sequences vanish whole, the next key still decodes */
	n = feed("\x1b[99~\x1b[Zq", 9, k, false);
	assert_int_equal(n, 1);
	assert_int_equal(k[0].UnicodeChar, 'q');
	/* an overlong sequence is dropped, not overflowed */
	n = feed("\x1b[111111111111111111111111111~r", 31, k, false);
	assert_int_equal(n, 1);
	assert_int_equal(k[0].UnicodeChar, 'r');
	/* a partial sequence at a pause is dropped without a key */
	n = feed("\x1b[1", 3, k, true);
	assert_int_equal(n, 0);
	/* a control byte inside a sequence ends it and counts itself */
	n = feed("\x1b[\r", 3, k, false);
	assert_int_equal(n, 1);
	assert_int_equal(k[0].UnicodeChar, CHAR_CARRIAGE_RETURN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_ansi),
		cmocka_unit_test(test_keys_sequences),
		cmocka_unit_test(test_keys_plain),
		cmocka_unit_test(test_keys_escape),
	};
	return cmocka_run_group_tests_name("fw_conio", tests, NULL, NULL);
}
