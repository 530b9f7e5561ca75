/* The UEFI CRC32 (guestlib/efi/efi_lib.c) against published check values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "efi/efi_lib.h"

static void test_vectors(void **state)
{
	assert_int_equal(efi_crc32("", 0), 0);
	assert_int_equal(efi_crc32("123456789", 9), 0xcbf43926u); /* the CRC-32/ISO-HDLC check value */
	assert_int_equal(efi_crc32("a", 1), 0xe8b7be43u);
	assert_int_equal(efi_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414fa339u);
}

static void test_against_zlib_any_alignment(void **state)
{
	static uint8_t buf[4096 + 16];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 7));
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < 300; len += 7)
			assert_int_equal(efi_crc32(buf + off, len), (uint32_t)crc32(0, buf + off, (uInt)len));
	/* Incremental updates equal one pass. */
	uint32_t c = efi_crc32(buf, 1000);
	c = efi_crc32_update(c, buf + 1000, 3096);
	assert_int_equal(c, efi_crc32(buf, 4096));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_against_zlib_any_alignment),
	};
	return cmocka_run_group_tests_name("efi_crc32", tests, NULL, NULL);
}
