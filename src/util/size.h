/* Sizes as users write them: 512M, 1.5GiB, 64T, 4096K. */
#ifndef GEN2VM_UTIL_SIZE_H
#define GEN2VM_UTIL_SIZE_H

#include <stdint.h>

/* Parses a non-negative size with an optional K/M/G/T/P suffix (powers of 1024; "B"/"iB" may follow).
 * A bare number is in default_unit bytes (1 for image sizes, 1 MiB for memory as in Hyper-V).
 * Returns 0, or -EINVAL for malformed text or a size beyond 2^63. */
int size_parse(const char *s, uint64_t default_unit, uint64_t *out);

#endif
