/* libFuzzer target for the VHD parser (footer, dynamic header, BAT, bitmaps, locators). */
#include "fuzz_common.h"

#include <endian.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct disk_create_opts o = { .format = "vhd", .size = 16 << 20, .block_size = 1 << 20 };
	fz_template_make(&o);
	return 0;
}

static void fix_sum(uint8_t *img, size_t off, size_t n, size_t at)
{
	uint32_t s = 0;
	for (size_t i = 0; i < n; i++)
		if (i < at || i >= at + 4)
			s += img[off + i];
	s = htobe32(~s);
	memcpy(img + off + at, &s, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *img, *dirty;
	const struct fz_tpl *t = fz_template_copy(data, size, &img, &dirty);
	size_t len = t->len, npg = len / 4096 + 1;
	int flags = fz_patch(img, len, data, size, dirty);
	if (flags >= 0) {
		if (!(flags & 0x10)) {
			fix_sum(img, 0, 512, 64);
			fix_sum(img, len - 512, 512, 64);
			fix_sum(img, 512, 1024, 36);
		}
		if (flags & 0x20) /* turn it into a differencing disk */
			img[len - 512 + 63] = 4;
		/* checksum fix-ups touch pages the patches may not have */
		for (size_t pg = 0; pg < 80 && pg < npg; pg++)
			dirty[pg] = 1;
		dirty[npg - 1] = 1;
		if (len % 4096 == 0 && npg >= 2)
			dirty[npg - 2] = 1;
		fz_exercise(img, len, flags, dirty);
	}
	free(dirty);
	free(img);
	return 0;
}
