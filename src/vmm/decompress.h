/* Host-side decompression of a bzImage payload, so that the guest does not spend minutes running its
 * own decompressor instruction by instruction. */
#ifndef GEN2VM_VMM_DECOMPRESS_H
#define GEN2VM_VMM_DECOMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Detects gzip, xz, zstd or LZ4 (legacy frame, as Linux uses) from the magic bytes and decompresses
 * in[0..inlen) into a malloc'd buffer (*out, *outlen; the caller frees it). size_hint is the expected
 * output size (0 if unknown). *format names the format found.
 * Returns 0, -ENOTSUP (unknown or unsupported format), -EINVAL (corrupt data), -EFBIG (output larger
 * than max_out), -ENOMEM. */
int decompress_buffer(const uint8_t *in, size_t inlen, size_t size_hint, size_t max_out, uint8_t **out,
		      size_t *outlen, const char **format);

#endif
