/* libFuzzer target for the gen2vmd API's request parser and routes (src/mgmt/http.c, src/mgmt/api.c):
 * the bytes a hostile local client sends on the service's socket. Every prefix is parsed too, as the
 * service parses what has arrived so far. Must never crash, read out of bounds, or accept a request
 * longer than the input or past the bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/api.h"
#include "mgmt/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: ASan sees a read past the input. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	for (size_t n = size > 64 ? size - 64 : 0; n <= size; n++) {
		struct http_request r;
		long k = http_request_parse(buf, n, &r);
		if (k > 0) {
			if ((size_t)k > n || r.header_len > HTTP_HEADER_MAX || r.body_len > HTTP_BODY_MAX)
				abort();
			struct api_route route;
			const char *code;
			int s = api_route_match(r.method, r.path, &route, &code);
			if (s && api_error_status(code) != s)
				abort();
		}
	}
	free(buf);
	return 0;
}
