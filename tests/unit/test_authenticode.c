/* Authenticode's PE hash and the db/dbx verdict (src/platform/authenticode.c) on PE images built here:
 * the ranges hashed (checksum and certificate-table entry left out, sections in file order, data after
 * them without the certificate table), malformed images, and hash entries in db and dbx. Signed images
 * (PKCS#7) are proven against real Debian binaries and sbsign/osslsigncode in
 * tests/integration/test_secure_boot.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "efi/efi_lib.h"
#include "platform/authenticode.h"
#include "platform/secboot.h"

#define PE 0x40u
#define OPT (PE + 24)
#define OPT_SIZE 0xf0u
#define SECTIONS (OPT + OPT_SIZE)
#define CHECKSUM (OPT + 64)
#define CERT_ENTRY (OPT + 112 + 4 * 8)
#define HEADERS 0x200u
#define LEN 0x618u

/* A PE32+ image: two sections listed out of file order, a certificate table of 24 bytes at its end. */
static uint8_t *make_pe(void)
{
	uint8_t *p = calloc(1, LEN);
	p[0] = 'M';
	p[1] = 'Z';
	efi_put32(p + 0x3c, PE);
	memcpy(p + PE, "PE\0\0", 4);
	efi_put16(p + PE + 4, 0x8664);
	efi_put16(p + PE + 6, 2);
	efi_put16(p + PE + 20, OPT_SIZE);
	efi_put16(p + OPT, 0x20b);
	efi_put32(p + OPT + 60, HEADERS);
	efi_put32(p + CHECKSUM, 0xdeadbeef);
	efi_put32(p + OPT + 108, 16);
	efi_put32(p + CERT_ENTRY, 0x600);
	efi_put32(p + CERT_ENTRY + 4, 0x18);
	uint8_t *s = p + SECTIONS;
	memcpy(s, ".data", 5);
	efi_put32(s + 16, 0x200);
	efi_put32(s + 20, 0x400);
	memcpy(s + 40, ".text", 5);
	efi_put32(s + 40 + 16, 0x200);
	efi_put32(s + 40 + 20, 0x200);
	for (unsigned i = HEADERS; i < 0x600; i++)
		p[i] = (uint8_t)(i * 7);
	efi_put32(p + 0x600, 0x18); /* a WIN_CERTIFICATE of another type: not a signature */
	efi_put16(p + 0x604, 0x0200);
	efi_put16(p + 0x606, 0x0001);
	return p;
}

static void sha256_of_ranges(const uint8_t *p, const size_t (*r)[2], unsigned n, uint8_t out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n; i++)
		EVP_DigestUpdate(c, p + r[i][0], r[i][1]);
	EVP_DigestFinal_ex(c, out, &len);
	EVP_MD_CTX_free(c);
}

static void test_hash_ranges(void **state)
{
	uint8_t *p = make_pe();
	struct authenticode_pe *pe = malloc(sizeof(*pe));
	char why[200];
	assert_int_equal(authenticode_parse(p, LEN, pe, why, sizeof(why)), 0);
	const size_t want[][2] = {
		{ 0, CHECKSUM },
		{ CHECKSUM + 4, CERT_ENTRY - CHECKSUM - 4 },
		{ CERT_ENTRY + 8, HEADERS - CERT_ENTRY - 8 },
		{ 0x200, 0x200 }, /* .text first: file order, not table order */
		{ 0x400, 0x200 },
	};
	assert_int_equal(pe->nr_ranges, 5);
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(pe->range[i].off, want[i][0]);
		assert_int_equal(pe->range[i].len, want[i][1]);
	}
	assert_int_equal(pe->cert_off, 0x600);
	assert_int_equal(pe->cert_size, 0x18);
	uint8_t h[64], ref[32];
	assert_int_equal(authenticode_digest(p, pe, "SHA256", h), 32);
	sha256_of_ranges(p, want, 5, ref);
	assert_memory_equal(h, ref, 32);
	/* the checksum, the certificate table and its entry do not change the hash */
	efi_put32(p + CHECKSUM, 1);
	p[0x610] ^= 0xff;
	assert_int_equal(authenticode_parse(p, LEN, pe, why, sizeof(why)), 0);
	assert_int_equal(authenticode_digest(p, pe, "SHA256", h), 32);
	assert_memory_equal(h, ref, 32);
	/* data after the sections (before the certificate table) does */
	efi_put32(p + CERT_ENTRY, 0x608);
	efi_put32(p + CERT_ENTRY + 4, 0x10);
	assert_int_equal(authenticode_parse(p, LEN, pe, why, sizeof(why)), 0);
	assert_int_equal(pe->nr_ranges, 6);
	assert_int_equal(pe->range[5].off, 0x600);
	assert_int_equal(pe->range[5].len, 8);
	free(pe);
	free(p);
}

static void test_malformed(void **state)
{
	struct authenticode_pe *pe = malloc(sizeof(*pe));
	char why[200];
	struct {
		size_t off;
		uint32_t v;
		unsigned width;
		const char *says;
	} bad[] = {
		{ 0, 0, 2, "no MZ" },
		{ 0x3c, LEN, 4, "no PE signature" },
		{ 0x3c, 0xfffffff0u, 4, "no PE signature" },
		{ OPT, 0x999, 2, "magic" },
		{ PE + 6, 2000, 2, "section table" },
		{ OPT + 60, LEN + 1, 4, "SizeOfHeaders" },
		{ OPT + 60, 0x10, 4, "SizeOfHeaders" },
		{ SECTIONS + 20, LEN - 0x100, 4, "section 1 lies outside" },
		{ SECTIONS + 16, 0xffffffffu, 4, "section 1 lies outside" },
		{ CERT_ENTRY + 4, 0x19, 4, "certificate table" },
		{ CERT_ENTRY, 0xfffffff0u, 4, "certificate table" },
		{ PE + 20, 0x10, 2, "optional header" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *p = make_pe();
		if (bad[i].width == 2)
			efi_put16(p + bad[i].off, (uint16_t)bad[i].v);
		else
			efi_put32(p + bad[i].off, bad[i].v);
		why[0] = 0;
		assert_int_equal(authenticode_parse(p, LEN, pe, why, sizeof(why)), -EINVAL);
		if (!strstr(why, bad[i].says))
			fail_msg("case %zu: '%s' does not say '%s'", i, why, bad[i].says);
		free(p);
	}
	/* every truncation is refused or parsed within bounds (ASan watches) */
	uint8_t *p = make_pe();
	for (size_t len = 0; len < LEN; len++) {
		uint8_t *t = malloc(len ? len : 1);
		memcpy(t, p, len);
		if (!authenticode_parse(t, len, pe, why, sizeof(why))) {
			uint8_t h[64];
			assert_int_equal(authenticode_digest(t, pe, "SHA256", h), 32);
		}
		free(t);
	}
	free(p);
	free(pe);
}

/* An EFI signature list of one SHA-256. */
static size_t hash_esl(uint8_t *out, const uint8_t h[32])
{
	static const EFI_GUID sha = EFI_CERT_SHA256_GUID;
	EFI_SIGNATURE_LIST l = { sha, 28 + 48, 0, 48 };
	memcpy(out, &l, 28);
	memset(out + 28, 0, 16);
	memcpy(out + 44, h, 32);
	return 76;
}

static void test_verdicts(void **state)
{
	uint8_t *p = make_pe(), h[32], esl[76], other[32] = { 1 };
	char why[300];
	/* unsigned, empty databases */
	assert_int_equal(authenticode_verify(p, LEN, NULL, 0, NULL, 0, h, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "not signed"));
	/* its hash in db admits it; in dbx too, dbx wins */
	size_t n = hash_esl(esl, h);
	assert_int_equal(authenticode_verify(p, LEN, esl, n, NULL, 0, NULL, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "in db"));
	assert_int_equal(authenticode_verify(p, LEN, esl, n, esl, n, NULL, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "in dbx"));
	uint8_t esl2[76];
	size_t n2 = hash_esl(esl2, other);
	assert_int_equal(authenticode_verify(p, LEN, esl2, n2, esl2, n2, NULL, why, sizeof(why)), -EACCES);
	/* the templates' certificates do not admit an unsigned image */
	uint8_t *db;
	size_t db_len;
	assert_int_equal(secboot_template_db(SECBOOT_TEMPLATE_UEFI_CA, "db", &db, &db_len), 0);
	assert_int_equal(authenticode_verify(p, LEN, db, db_len, NULL, 0, NULL, why, sizeof(why)), -EACCES);
	/* a signature that is not PKCS#7: refused with the reason */
	efi_put16(p + 0x606, 0x0002);
	assert_int_equal(authenticode_verify(p, LEN, db, db_len, NULL, 0, NULL, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "not an Authenticode PKCS#7"));
	/* a certificate entry longer than the table */
	efi_put32(p + 0x600, 0x40);
	assert_int_equal(authenticode_verify(p, LEN, db, db_len, NULL, 0, NULL, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "malformed"));
	/* not a PE image at all */
	assert_int_equal(authenticode_verify((const uint8_t *)"hello", 5, db, db_len, NULL, 0, NULL, why, sizeof(why)),
			 -EINVAL);
	free(db);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_ranges),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_verdicts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
