/* AML encoder. Opcode values and encodings: ACPI 6.5, chapter 20 (AML grammar) and section 6.4
 * (resource descriptors). */
#include "platform/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/guid.h"

enum {
	AML_ZERO = 0x00, AML_ONE = 0x01, AML_ONES = 0xFF, AML_NAME = 0x08, AML_BYTE = 0x0A,
	AML_WORD = 0x0B, AML_DWORD = 0x0C, AML_STRING = 0x0D, AML_QWORD = 0x0E, AML_SCOPE = 0x10,
	AML_BUFFER = 0x11, AML_PACKAGE = 0x12, AML_METHOD = 0x14, AML_RETURN = 0xA4,
	AML_EXT = 0x5B, AML_EXT_DEVICE = 0x82,
	AML_DUAL_NAME = 0x2E, AML_MULTI_NAME = 0x2F, AML_ROOT = 0x5C, AML_PARENT = 0x5E,
};

/* The largest PkgLength value: 28 bits. */
#define AML_PKGLEN_MAX ((1u << 28) - 1)

void aml_init(struct aml *a)
{
	*a = (struct aml){ 0 };
}

void aml_free(struct aml *a)
{
	free(a->data);
	*a = (struct aml){ 0 };
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static bool aml_reserve(struct aml *a, size_t n)
{
	if (a->err)
		return false;
	if (n > SIZE_MAX - a->len) {
		aml_fail(a, -ENOMEM);
		return false;
	}
	if (a->len + n <= a->cap)
		return true;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + n)
		cap *= 2;
	uint8_t *p = realloc(a->data, cap);
	if (!p) {
		aml_fail(a, -ENOMEM);
		return false;
	}
	a->data = p;
	a->cap = cap;
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!n || !aml_reserve(a, n))
		return;
	memcpy(a->data + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];
	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

/* Inserts n bytes at offset at, shifting what follows: how a PkgLength lands in front of a body whose
 * size was unknown when it began. */
static void aml_insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memmove(a->data + at + n, a->data + at, a->len - at);
	memcpy(a->data + at, p, n);
	a->len += n;
}

size_t aml_pkglen_encode(uint8_t out[4], size_t body_len)
{
	/* The value counts its own bytes; one byte holds 6 bits, each further byte adds 8 (the lead byte
	 * then keeps only 4), so the limits are 63, 2^12-1, 2^20-1 and 2^28-1. */
	static const size_t lim[4] = { 0x3F, 0xFFF, 0xFFFFF, AML_PKGLEN_MAX };
	for (size_t n = 1; n <= 4; n++) {
		if (body_len > lim[n - 1] - n)
			continue;
		size_t v = body_len + n;
		if (n == 1) {
			out[0] = (uint8_t)v;
			return 1;
		}
		out[0] = (uint8_t)(((n - 1) << 6) | (v & 0xF));
		for (size_t i = 1; i < n; i++)
			out[i] = (uint8_t)(v >> (4 + 8 * (i - 1)));
		return n;
	}
	return 0;
}

static void aml_pkglen_insert(struct aml *a, size_t mark)
{
	if (a->err)
		return;
	uint8_t enc[4];
	size_t n = aml_pkglen_encode(enc, a->len - mark);
	if (!n) {
		aml_fail(a, -E2BIG);
		return;
	}
	aml_insert(a, mark, enc, n);
}

static bool aml_seg_char_ok(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

void aml_namestring(struct aml *a, const char *path)
{
	if (a->err)
		return;
	uint8_t prefix[256];
	size_t np = 0;
	if (*path == '\\')
		prefix[np++] = AML_ROOT, path++;
	else
		while (*path == '^' && np < sizeof(prefix))
			prefix[np++] = AML_PARENT, path++;

	uint8_t segs[255][4];
	size_t nseg = 0;
	while (*path) {
		if (nseg == 255)
			goto bad;
		size_t k = 0;
		for (; *path && *path != '.'; path++, k++) {
			if (k == 4 || !aml_seg_char_ok(*path, k == 0))
				goto bad;
			segs[nseg][k] = (uint8_t)*path;
		}
		if (k == 0)
			goto bad;
		for (; k < 4; k++)
			segs[nseg][k] = '_';
		nseg++;
		if (*path == '.' && !*++path)
			goto bad; /* trailing dot */
	}

	if (nseg == 0 && np == 0)
		goto bad;
	aml_bytes(a, prefix, np);
	if (nseg == 0) {
		aml_byte(a, 0x00); /* NullName: "\" or "^" alone, a scope itself */
		return;
	}
	if (nseg == 2)
		aml_byte(a, AML_DUAL_NAME);
	else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)nseg);
	}
	aml_bytes(a, segs, nseg * 4);
	return;
bad:
	aml_fail(a, -EINVAL);
}

/* Shortest encoding of an integer; returns its length (1-9). */
static size_t aml_int_encode(uint8_t out[9], uint64_t v)
{
	unsigned w;
	if (v == 0 || v == 1 || v == UINT64_MAX) {
		out[0] = v == 0 ? AML_ZERO : v == 1 ? AML_ONE : AML_ONES;
		return 1;
	}
	if (v <= 0xFF)
		out[0] = AML_BYTE, w = 1;
	else if (v <= 0xFFFF)
		out[0] = AML_WORD, w = 2;
	else if (v <= 0xFFFFFFFF)
		out[0] = AML_DWORD, w = 4;
	else
		out[0] = AML_QWORD, w = 8;
	for (unsigned i = 0; i < w; i++)
		out[1 + i] = (uint8_t)(v >> (8 * i));
	return 1 + w;
}

void aml_int(struct aml *a, uint64_t v)
{
	uint8_t enc[9];
	aml_bytes(a, enc, aml_int_encode(enc, v));
}

void aml_string(struct aml *a, const char *s)
{
	/* AML strings are ASCII 0x01-0x7F, NUL-terminated. */
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p > 0x7F) {
			aml_fail(a, -EINVAL);
			return;
		}
	}
	aml_byte(a, AML_STRING);
	aml_bytes(a, s, strlen(s) + 1);
}

/* Turns the bytes from mark to the end into a Buffer's body: inserts PkgLength and BufferSize in
 * front of them (the BufferOp is already before mark). */
static void aml_buffer_close(struct aml *a, size_t mark)
{
	if (a->err)
		return;
	uint8_t size[9], pl[4];
	size_t ns = aml_int_encode(size, a->len - mark);
	size_t np = aml_pkglen_encode(pl, ns + a->len - mark);
	if (!np) {
		aml_fail(a, -E2BIG);
		return;
	}
	aml_insert(a, mark, size, ns);
	aml_insert(a, mark, pl, np);
}

void aml_buffer(struct aml *a, const void *p, size_t n)
{
	aml_byte(a, AML_BUFFER);
	size_t mark = a->len;
	aml_bytes(a, p, n);
	aml_buffer_close(a, mark);
}

uint32_t aml_eisaid_encode(const char *id)
{
	/* Three letters at 5 bits each ('A' = 1), then four hex digits; stored big-endian, so the integer
	 * read back little-endian has the bytes swapped. */
	if (strlen(id) != 7)
		return 0;
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		v = (v << 5) | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		int h = gen2vm_hex_digit_upper(id[i]);
		if (h < 0)
			return 0;
		v = (v << 4) | (uint32_t)h;
	}
	return __builtin_bswap32(v);
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = aml_eisaid_encode(id);
	if (!v) {
		aml_fail(a, -EINVAL);
		return;
	}
	/* Always DWordPrefix, as iasl emits EisaId(): the value is an identifier, not a number. */
	aml_byte(a, AML_DWORD);
	aml_le(a, v, 4);
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME);
	aml_namestring(a, path);
}

void aml_name_int(struct aml *a, const char *path, uint64_t v)
{
	aml_name(a, path);
	aml_int(a, v);
}

void aml_name_string(struct aml *a, const char *path, const char *s)
{
	aml_name(a, path);
	aml_string(a, s);
}

void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name(a, path);
	aml_eisaid(a, id);
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN);
}

/* Emits the opcode, returns the mark where the PkgLength goes, then the name. */
static size_t aml_named_begin(struct aml *a, const uint8_t *op, size_t oplen, const char *path)
{
	aml_bytes(a, op, oplen);
	size_t mark = a->len;
	aml_namestring(a, path);
	return mark;
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	static const uint8_t op[] = { AML_SCOPE };
	return aml_named_begin(a, op, sizeof(op), path);
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	static const uint8_t op[] = { AML_EXT, AML_EXT_DEVICE };
	return aml_named_begin(a, op, sizeof(op), path);
}

size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	static const uint8_t op[] = { AML_METHOD };
	size_t mark = aml_named_begin(a, op, sizeof(op), path);
	if (nargs > 7)
		aml_fail(a, -EINVAL);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	return mark;
}

size_t aml_package_begin(struct aml *a, unsigned nelems)
{
	aml_byte(a, AML_PACKAGE);
	size_t mark = a->len;
	if (nelems > 255)
		aml_fail(a, -EINVAL);
	aml_byte(a, (uint8_t)nelems);
	return mark;
}

void aml_end(struct aml *a, size_t mark)
{
	aml_pkglen_insert(a, mark);
}

size_t aml_restemplate_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER);
	return a->len;
}

void aml_restemplate_end(struct aml *a, size_t mark)
{
	static const uint8_t end_tag[] = { 0x79, 0x00 }; /* checksum 0: "treat as correct" */
	aml_bytes(a, end_tag, sizeof(end_tag));
	aml_buffer_close(a, mark);
}

static void aml_res_address(struct aml *a, uint8_t tag, unsigned w, uint64_t base, uint64_t len,
			    bool producer)
{
	uint64_t top = w == 8 ? UINT64_MAX : 0xFFFFFFFFu;
	if (!len || len - 1 > top - base) {
		aml_fail(a, -EINVAL);
		return;
	}
	uint16_t dlen = (uint16_t)(3 + 5 * w); /* flags + granularity/min/max/translation/length */
	aml_byte(a, tag);
	aml_le(a, dlen, 2);
	aml_byte(a, 0); /* resource type: memory range */
	/* General flags: MaxFixed (bit 3), MinFixed (bit 2), positive decode, consumer (bit 0). */
	aml_byte(a, (uint8_t)(0x0C | (producer ? 0 : 1)));
	aml_byte(a, 0x01); /* type-specific: read-write, non-cacheable, AddressRangeMemory */
	aml_le(a, 0, w);   /* granularity: none, the range is fixed */
	aml_le(a, base, w);
	aml_le(a, base + len - 1, w);
	aml_le(a, 0, w); /* translation offset */
	aml_le(a, len, w);
}

void aml_res_qword_memory(struct aml *a, uint64_t base, uint64_t len, bool producer)
{
	aml_res_address(a, 0x8A, 8, base, len, producer);
}

void aml_res_dword_memory(struct aml *a, uint32_t base, uint32_t len, bool producer)
{
	aml_res_address(a, 0x87, 4, base, len, producer);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	if (!len || base + len - 1 > 0xFFFF) {
		aml_fail(a, -EINVAL);
		return;
	}
	const uint8_t d[] = {
		0x47, 0x01, /* small item 8 (I/O port), 7 bytes; 16-bit decode */
		(uint8_t)base, (uint8_t)(base >> 8), (uint8_t)base, (uint8_t)(base >> 8), 0x01, len,
	};
	aml_bytes(a, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		aml_fail(a, -EINVAL);
		return;
	}
	const uint8_t d[] = { 0x22, (uint8_t)(1u << irq), (uint8_t)((1u << irq) >> 8) };
	aml_bytes(a, d, sizeof(d));
}

void aml_res_interrupt(struct aml *a, uint32_t gsi, bool edge, bool active_low, bool shared)
{
	aml_byte(a, 0x89);
	aml_le(a, 6, 2); /* flags, count, one DWORD; no resource source */
	aml_byte(a, (uint8_t)(0x01 | (edge ? 0x02 : 0) | (active_low ? 0x04 : 0) | (shared ? 0x08 : 0)));
	aml_byte(a, 1);
	aml_le(a, gsi, 4);
}
