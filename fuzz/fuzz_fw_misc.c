/* libFuzzer target for what the guest hands the console and misc code: the firmware time and RNG
 * host calls (src/platform/fw_misc.c), device paths turned into text (guestlib/efi/efi_dptext.c)
 * and terminal input bytes (guestlib/efi/efi_conio.c).
 *
 * Input: byte 0 picks the target; for host calls the rest is the request (its size as given), for
 * device paths the path, for input the byte stream. Must never crash, hang or read outside it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_conio.h"
#include "efi/efi_dptext.h"
#include "gen2vm/proto/fw.h"
#include "platform/fw_misc.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fw_misc m;
	static int ready;
	if (!ready) {
		fw_misc_init(&m);
		log_set_level(LOG_ERROR);
		ready = 1;
	}
	if (size < 1)
		return 0;
	uint8_t what = data[0];
	data++, size--;
	switch (what % 3) {
	case 0: {
		/* the handler gets exactly the request's bytes, as the VMM maps them */
		if (size < sizeof(struct fw_host_req) || size > FW_HOST_REQ_MAX)
			return 0;
		uint8_t *req = malloc(size);
		memcpy(req, data, size);
		uint32_t op = FW_OP_MISC_FIRST + (what >> 2) % 4;
		fw_misc_handle(&m, op, req, (uint32_t)size);
		free(req);
		break;
	}
	case 1: {
		uint8_t *dp = malloc(size ? size : 1);
		memcpy(dp, data, size);
		char out8[256];
		CHAR16 out16[64];
		efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)dp, size, out8, sizeof(out8));
		efi_dp_text16((const EFI_DEVICE_PATH_PROTOCOL *)dp, size, out16, 64);
		if (size >= 4 && (size_t)(dp[2] | dp[3] << 8) <= size && (dp[2] | dp[3] << 8) >= 4)
			efi_dp_node_text16((const EFI_DEVICE_PATH_PROTOCOL *)dp, out16, 64);
		free(dp);
		break;
	}
	default: {
		struct efi_keydec d;
		memset(&d, 0, sizeof(d));
		EFI_INPUT_KEY k[2];
		for (size_t i = 0; i < size; i++) {
			unsigned n = efi_keydec_feed(&d, data[i], k);
			if (n > 2)
				abort();
		}
		efi_keydec_timeout(&d, k);
		if (efi_keydec_pending(&d))
			abort();
		break;
	}
	}
	return 0;
}
