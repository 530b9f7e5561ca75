#include "util/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_put(struct buf *b, const void *data, size_t len)
{
	if (b->error)
		return;
	if (b->cap - b->len < len) {
		size_t cap = b->cap * 2 + len + 256;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->error = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	if (data)
		memcpy(b->p + b->len, data, len);
	else
		memset(b->p + b->len, 0, len);
	b->len += len;
}
