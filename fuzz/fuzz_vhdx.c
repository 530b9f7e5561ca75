/* libFuzzer target for the VHDX parser, log replay and I/O paths. */
#include "fuzz_common.h"
#include "disk/crc32c.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct disk_create_opts o = { .format = "vhdx", .size = 64 << 20, .block_size = 1 << 20 };
	fz_template_make(&o);
	return 0;
}

static void fix_crc(uint8_t *img, size_t len, size_t off, size_t n)
{
	if (off + n > len)
		return;
	memset(img + off + 4, 0, 4);
	uint32_t c = crc32c(0, img + off, n);
	memcpy(img + off + 4, &c, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *img, *dirty;
	const struct fz_tpl *t = fz_template_copy(data, size, &img, &dirty);
	size_t len = t->len, npg = len / 4096 + 1;
	int flags = fz_patch(img, len, data, size, dirty);
	if (flags >= 0) {
		if (!(flags & 0x10)) { /* make headers and region tables pass their checksums */
			fix_crc(img, len, 64 << 10, 4096);
			fix_crc(img, len, 128 << 10, 4096);
			fix_crc(img, len, 192 << 10, 64 << 10);
			fix_crc(img, len, 256 << 10, 64 << 10);
		}
		if (flags & 0x20) { /* a log entry at the log's start with a valid checksum */
			uint32_t el;
			memcpy(&el, img + (1 << 20) + 8, 4);
			if (el >= 4096 && el <= (1 << 20) && !(el % 4096))
				fix_crc(img, len, 1 << 20, el);
		}
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
