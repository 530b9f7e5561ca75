/* libFuzzer target for Secure Boot's variable input (src/platform/secboot.c): the EFI signature lists
 * of PK/KEK/db/dbx, and the guest's time-based authenticated writes of them
 * (EFI_VARIABLE_AUTHENTICATION_2 with PKCS#7, then signature lists).
 *
 * Input: byte 0 picks the mode. Even: the rest is a signature database, walked to the last byte of
 * each signature. Odd: the rest is a SetVariable of db (bit 1: dbx; bit 2: APPEND_WRITE; bit 3: PK)
 * from the guest against a store with the UEFI CA template. Must never crash, hang, leak or read
 * outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/fw_var.h"
#include "platform/nvram.h"
#include "platform/secboot.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int touch(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *d, size_t len)
{
	unsigned *sum = opaque;
	*sum += type->Data1 + owner->Data1 + (len ? d[0] + d[len - 1] : 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	log_set_level(LOG_ERROR);
	/* An exact-size copy so that ASan sees any read past the end. */
	size_t len = size - 1;
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		return 0;
	memcpy(b, data + 1, len);
	if (!(data[0] & 1)) {
		unsigned sum = 0;
		secboot_esl_walk(b, len, touch, &sum);
	} else {
		static const EFI_GUID image_db = EFI_IMAGE_SECURITY_DATABASE_GUID, global = EFI_GLOBAL_VARIABLE_GUID;
		struct nvram *nv;
		char err[200];
		if (!nvram_open(NULL, true, false, &nv, err, sizeof(err))) {
			secboot_settings_set(nv, true, SECBOOT_TEMPLATE_UEFI_CA, true);
			secboot_vm_start(nv);
			const char *name = data[0] & 8 ? "PK" : data[0] & 2 ? "dbx" : "db";
			uint32_t attr = EFI_SECURE_DB_ATTRIBUTES | (data[0] & 4 ? EFI_VARIABLE_APPEND_WRITE : 0);
			uint16_t n16[4];
			size_t nl = strlen(name);
			for (size_t i = 0; i <= nl; i++)
				n16[i] = (uint8_t)name[i];
			nvram_set(nv, n16, (nl + 1) * 2, name[0] == 'P' ? &global : &image_db, 0, attr, b, len);
			nvram_close(nv);
		}
	}
	free(b);
	return 0;
}
