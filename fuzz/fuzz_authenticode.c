/* libFuzzer target for Secure Boot's image check (src/platform/authenticode.c): the PE image a guest
 * hands LoadImage, its section table, its certificate table and the PKCS#7 SignedData in it, as the
 * VMM parses them for FW_OP_IMAGE_VERIFY.
 *
 * Input: the whole input is the image, checked against the UEFI CA template's db and dbx. Must never
 * crash, leak or read outside the image. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform/authenticode.h"
#include "platform/secboot.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *db, *dbx;
	static size_t db_len, dbx_len;
	if (!db) {
		log_set_level(LOG_ERROR);
		secboot_template_db(SECBOOT_TEMPLATE_UEFI_CA, "db", &db, &db_len);
		secboot_template_db(SECBOOT_TEMPLATE_UEFI_CA, "dbx", &dbx, &dbx_len);
	}
	uint8_t *img = malloc(size ? size : 1);
	if (!img)
		return 0;
	memcpy(img, data, size);
	char why[300];
	uint8_t h[32];
	authenticode_verify(img, size, db, db_len, dbx, dbx_len, h, why, sizeof(why));
	free(img);
	return 0;
}
