/* libFuzzer target for EFI signature lists (src/platform/secboot.c): the PK/KEK/db/dbx values the
 * VMM parses, from an NVRAM file or (authenticated writes) from the guest.
 *
 * Input: the whole input is a signature database; each signature's type, owner and data are read
 * to the last byte the walk reports. Must never crash, hang or read outside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform/secboot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int touch(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *d, size_t len)
{
	unsigned *sum = opaque;
	*sum += type->Data1 + owner->Data1 + (len ? d[0] + d[len - 1] : 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy so that ASan sees any read past the end. */
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		return 0;
	memcpy(b, data, size);
	unsigned sum = 0;
	secboot_esl_walk(b, size, touch, &sum);
	free(b);
	return 0;
}
