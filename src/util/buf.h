/* A growable byte buffer for building a record in memory (saved-state sections): appends never
 * fail loudly, the first allocation failure sticks in error and later appends do nothing. */
#ifndef GEN2VM_UTIL_BUF_H
#define GEN2VM_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *p; /* the caller frees it */
	size_t len, cap;
	int error; /* 0 or -ENOMEM */
};

/* Appends len bytes of data, or len zero bytes when data is NULL. */
void buf_put(struct buf *b, const void *data, size_t len);

#endif
