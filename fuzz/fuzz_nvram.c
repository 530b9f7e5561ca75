/* libFuzzer target for the variable store (src/platform/nvram.c): the guest's FW_OP_VAR_* requests
 * and the NVRAM file loader.
 *
 * Input: byte 0 picks the mode. Even: the rest is an NVRAM file image (bit 1: with its sizes and
 * checksums fixed up, to reach the record parser); when it loads, the boot
 * entries in it are listed and edited. Odd: the rest is a sequence of requests (u8 op - 0x10, u16
 * size, then size bytes) run against one store in memory, each copied into a buffer of exactly that
 * size, as the VMM hands them over. Must never crash, leak or read outside the request. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/bootopt.h"
#include "platform/nvram.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct nvram *nv;
	log_set_level(LOG_ERROR);
	if (size < 1)
		return 0;
	if (!(data[0] & 1)) {
		/* Bit 1 set: fix the checksums up so the record parser is reached. */
		uint8_t *img = malloc(size);
		if (!img)
			return 0;
		memcpy(img, data + 1, size - 1);
		size_t len = size - 1;
		if ((data[0] & 2) && len >= 48) {
			efi_put32(img + 36, (uint32_t)(len - 48));
			efi_put32(img + 40, efi_crc32(img + 48, len - 48));
			efi_put32(img + 44, efi_crc32(img, 44));
		}
		int r = nvram_load_buffer(img, len, &nv, err, sizeof(err));
		free(img);
		if (r)
			return 0;
		struct bootopt_list *l = malloc(sizeof(*l));
		if (l && !bootopt_load(nv, l)) {
			char t[1024];
			for (unsigned i = 0; i < l->n; i++)
				bootopt_dp_to_text(l->e[i].dp, l->e[i].dp_len, t, sizeof(t));
			bootopt_list_free(l);
		}
		free(l);
		struct bootopt_device d = { 0, 1, true };
		bootopt_device_added(nv, &d);
		bootopt_set_first(nv, "file:1", err, sizeof(err));
		bootopt_device_removed(nv, 0, 1);
		nvram_close(nv);
		return 0;
	}
	if (nvram_open(NULL, true, false, &nv, err, sizeof(err)))
		return 0;
	size_t off = 1;
	while (off + 3 <= size) {
		uint32_t op = 0x10u + data[off];
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		off += 3;
		if (len > size - off)
			len = size - off;
		uint8_t *req = malloc(len ? len : 1);
		if (!req)
			break;
		memcpy(req, data + off, len);
		nvram_host_call(nv, op, req, (uint32_t)len);
		free(req);
		off += len;
	}
	nvram_close(nv);
	return 0;
}
