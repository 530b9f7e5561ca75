#include "vmm/decompress.h"

#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK (8u << 20)

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Grows *buf to at least need bytes (doubling), bounded by max. */
static int grow(uint8_t **buf, size_t *cap, size_t need, size_t max)
{
	if (need <= *cap)
		return 0;
	if (need > max)
		return -EFBIG;
	size_t n = *cap ? *cap : 1 << 20;
	while (n < need)
		n *= 2;
	if (n > max)
		n = max;
	uint8_t *p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static int dec_lz4_legacy(const uint8_t *in, size_t inlen, uint8_t **out, size_t *cap, size_t *len, size_t max)
{
	size_t pos = 4;
	while (pos + 4 <= inlen) {
		uint32_t csize = rd32(in + pos);
		if (csize == LZ4_LEGACY_MAGIC) { /* concatenated stream */
			pos += 4;
			continue;
		}
		if (csize > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK) || pos + 4 + csize > inlen)
			break; /* the trailing 4-byte size Linux appends, or the end */
		int r = grow(out, cap, *len + LZ4_LEGACY_BLOCK, max);
		if (r)
			return r;
		int n = LZ4_decompress_safe((const char *)in + pos + 4, (char *)*out + *len, (int)csize,
					    LZ4_LEGACY_BLOCK);
		if (n < 0)
			return -EINVAL;
		*len += (size_t)n;
		pos += 4 + csize;
	}
	return *len ? 0 : -EINVAL;
}

static int dec_gzip(const uint8_t *in, size_t inlen, uint8_t **out, size_t *cap, size_t *len, size_t max)
{
	z_stream z = { 0 };
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)inlen;
	int ret = 0;
	for (;;) {
		if ((ret = grow(out, cap, *len + (1 << 20), max)))
			break;
		z.next_out = *out + *len;
		z.avail_out = (uInt)(*cap - *len);
		int zr = inflate(&z, Z_NO_FLUSH);
		*len = *cap - z.avail_out;
		if (zr == Z_STREAM_END)
			break;
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			ret = -EINVAL;
			break;
		}
		if (zr == Z_BUF_ERROR && z.avail_in == 0) {
			ret = -EINVAL; /* truncated */
			break;
		}
	}
	inflateEnd(&z);
	return ret;
}

static int dec_xz(const uint8_t *in, size_t inlen, uint8_t **out, size_t *cap, size_t *len, size_t max)
{
	lzma_stream s = LZMA_STREAM_INIT;
	if (lzma_stream_decoder(&s, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
		return -ENOMEM;
	s.next_in = in;
	s.avail_in = inlen;
	int ret = 0;
	for (;;) {
		if ((ret = grow(out, cap, *len + (1 << 20), max)))
			break;
		s.next_out = *out + *len;
		s.avail_out = *cap - *len;
		lzma_ret lr = lzma_code(&s, LZMA_FINISH);
		*len = *cap - s.avail_out;
		if (lr == LZMA_STREAM_END)
			break;
		if (lr != LZMA_OK) {
			ret = lr == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
	}
	lzma_end(&s);
	return ret;
}

static int dec_zstd(const uint8_t *in, size_t inlen, uint8_t **out, size_t *cap, size_t *len, size_t max)
{
	ZSTD_DStream *d = ZSTD_createDStream();
	if (!d)
		return -ENOMEM;
	ZSTD_inBuffer ib = { in, inlen, 0 };
	int ret = 0;
	for (;;) {
		if ((ret = grow(out, cap, *len + (1 << 20), max)))
			break;
		ZSTD_outBuffer ob = { *out + *len, *cap - *len, 0 };
		size_t zr = ZSTD_decompressStream(d, &ob, &ib);
		*len += ob.pos;
		if (ZSTD_isError(zr)) {
			ret = -EINVAL;
			break;
		}
		if (zr == 0)
			break;
		if (ib.pos == ib.size && ob.pos < ob.size) {
			ret = -EINVAL;
			break;
		}
	}
	ZSTD_freeDStream(d);
	return ret;
}

int decompress_buffer(const uint8_t *in, size_t inlen, size_t size_hint, size_t max_out, uint8_t **out,
		      size_t *outlen, const char **format)
{
	int (*fn)(const uint8_t *, size_t, uint8_t **, size_t *, size_t *, size_t);
	*out = NULL;
	*outlen = 0;
	*format = "unknown";
	if (inlen >= 4 && rd32(in) == LZ4_LEGACY_MAGIC) {
		fn = dec_lz4_legacy;
		*format = "lz4";
	} else if (inlen >= 2 && in[0] == 0x1f && in[1] == 0x8b) {
		fn = dec_gzip;
		*format = "gzip";
	} else if (inlen >= 6 && !memcmp(in, "\xfd" "7zXZ\0", 6)) {
		fn = dec_xz;
		*format = "xz";
	} else if (inlen >= 4 && rd32(in) == 0xFD2FB528u) {
		fn = dec_zstd;
		*format = "zstd";
	} else {
		return -ENOTSUP;
	}
	size_t cap = 0, len = 0;
	uint8_t *buf = NULL;
	if (size_hint && size_hint <= max_out) {
		int r = grow(&buf, &cap, size_hint + LZ4_LEGACY_BLOCK, max_out + LZ4_LEGACY_BLOCK);
		if (r)
			return r;
	}
	int r = fn(in, inlen, &buf, &cap, &len, max_out + LZ4_LEGACY_BLOCK);
	if (r == 0 && len > max_out)
		r = -EFBIG;
	if (r) {
		free(buf);
		return r;
	}
	*out = buf;
	*outlen = len;
	return 0;
}
