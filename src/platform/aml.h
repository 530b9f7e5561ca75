/* A small AML (ACPI Machine Language) encoder: just what gen2vm's DSDT needs.
 *
 * Bytes go into a growable buffer. Errors are sticky: every emitter returns nothing, the first failure
 * (-ENOMEM, or -EINVAL for a malformed name, id or range) is kept in aml.err and later calls do
 * nothing, so a builder emits a whole table and checks once at the end.
 *
 * Nested objects (Scope, Device, Method, Package, ResourceTemplate) are written as begin/end pairs:
 * *_begin() returns a mark, the body is emitted, *_end(mark) inserts the PkgLength (1 to 4 bytes,
 * always the shortest form) in front of the body. Pairs must nest properly.
 *
 * Names are ASL-style strings: "\\" is the root, "^" a parent prefix, segments are separated by '.',
 * and a segment shorter than 4 characters is padded with '_' ("UAR" -> "UAR_"), as iasl does.
 */
#ifndef GEN2VM_PLATFORM_AML_H
#define GEN2VM_PLATFORM_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *data; /* owned; malloc'd */
	size_t len;
	size_t cap;
	int err; /* 0, or the first -errno */
};

/* An empty buffer; allocates nothing until the first byte. */
void aml_init(struct aml *a);
/* Frees the bytes and leaves the buffer empty and reusable. */
void aml_free(struct aml *a);

/* Raw bytes, for callers that bring pre-built AML (e.g. a device's term list). */
void aml_bytes(struct aml *a, const void *p, size_t n);

/* Encodes a PkgLength whose value (the body plus the encoding itself) covers body_len bytes of body.
 * Writes 1-4 bytes to out and returns their count, or 0 when the length exceeds AML's 2^28-1 limit. */
size_t aml_pkglen_encode(uint8_t out[4], size_t body_len);

/* A NameString (see the naming rules above). */
void aml_namestring(struct aml *a, const char *path);

/* Data objects. aml_int picks the shortest encoding: ZeroOp, OneOp, OnesOp (all 64 bits set: the DSDT
 * is revision 2, so integers are 64-bit), then Byte/Word/DWord/QWordPrefix. */
void aml_int(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
void aml_buffer(struct aml *a, const void *p, size_t n);
/* The compressed 32-bit EISA id of a 7-character PNP id ("PNP0501" -> 0x0105D041) as an integer. */
void aml_eisaid(struct aml *a, const char *id);
/* The same value as a pure function; 0 for a malformed id (a valid one is never 0). */
uint32_t aml_eisaid_encode(const char *id);

/* Name(path, <the next emitted data object>). */
void aml_name(struct aml *a, const char *path);
void aml_name_int(struct aml *a, const char *path, uint64_t v);
void aml_name_string(struct aml *a, const char *path, const char *s);
void aml_name_eisaid(struct aml *a, const char *path, const char *id);

/* Return(<the next emitted term>). */
void aml_return(struct aml *a);

/* Nested objects. Each *_end takes the mark its *_begin returned. */
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
/* nargs 0-7; serialized sets MethodFlags bit 3 (sync level 0). */
size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
/* The caller emits exactly nelems (<= 255) data objects before aml_package_end. */
size_t aml_package_begin(struct aml *a, unsigned nelems);
void aml_end(struct aml *a, size_t mark); /* closes a Scope, Device, Method or Package */

/* ResourceTemplate(): a Buffer of resource descriptors closed by an EndTag (checksum 0). */
size_t aml_restemplate_begin(struct aml *a);
void aml_restemplate_end(struct aml *a, size_t mark);

/* Descriptors, only between aml_restemplate_begin and _end. Memory ranges are fixed (MinFixed,
 * MaxFixed), positive-decode, non-cacheable, read-write; producer marks a window handed to children
 * (ResourceProducer), otherwise the device consumes it. len 0 or a range past the top is -EINVAL. */
void aml_res_qword_memory(struct aml *a, uint64_t base, uint64_t len, bool producer);
void aml_res_dword_memory(struct aml *a, uint32_t base, uint32_t len, bool producer);
/* IO(Decode16, base, base, 1, len): a fixed range. */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
/* IRQNoFlags(){irq}: an ISA interrupt 0-15 (edge, active high, exclusive). */
void aml_res_irq_noflags(struct aml *a, unsigned irq);
/* Interrupt(ResourceConsumer, ...){gsi}: one extended interrupt. */
void aml_res_interrupt(struct aml *a, uint32_t gsi, bool edge, bool active_low, bool shared);

#endif
