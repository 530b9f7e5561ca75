/* libFuzzer target for the firmware's PE32+ loader (guestlib/efi/efi_pe.c).
 *
 * Input: a whole image file. Parsed, then loaded (up to 16 MiB of image) at an address other than its
 * preferred base so relocations run. Must never crash or touch memory outside the file and the image. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "efi/efi_pe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct efi_pe_image img;
	if (EFI_ERROR(efi_pe_parse(data, size, &img)) || img.size_of_image > (16u << 20))
		return 0;
	uint8_t *dest = NULL;
	if (posix_memalign((void **)&dest, 4096, img.size_of_image))
		return 0;
	(void)efi_pe_load(data, size, &img, dest, img.image_base + 0x200000);
	free(dest);
	return 0;
}
