/* Authenticode (Microsoft's "Windows Authenticode Portable Executable Signature Format"), as UEFI
 * Secure Boot uses it (UEFI 2.10 32.2.3 and 32.5): the PE image hash and the PKCS#7 SignedData in the
 * certificate table, verified with OpenSSL against the signature databases.
 *
 * Everything here reads a private copy of the image (the caller's): a pure module, no VM.
 */
#ifndef GEN2VM_PLATFORM_AUTHENTICODE_H
#define GEN2VM_PLATFORM_AUTHENTICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest image verified: bigger than any boot loader or kernel, small enough to hash quickly. */
#define AUTHENTICODE_IMAGE_MAX (256u << 20)

struct authenticode_pe {
	/* The ranges the hash covers, in the order hashed (headers without the checksum and the
	 * certificate-table entry, then sections sorted by file offset, then data after them). */
	struct { size_t off, len; } range[1100];
	unsigned nr_ranges;
	size_t cert_off, cert_size; /* the certificate table (file offsets), 0 when the image has none */
};

/* Parses a PE32 or PE32+ image into the ranges its Authenticode hash covers. 0, or -EINVAL with the
 * reason in why ("not a PE image", "section 3 lies outside the file"...). */
int authenticode_parse(const uint8_t *img, size_t len, struct authenticode_pe *pe, char *why, size_t whylen);

/* The image's Authenticode digest with the named OpenSSL digest ("SHA256"...). out needs 64 bytes;
 * returns the digest's length, or -EINVAL / -ENOMEM. */
int authenticode_digest(const uint8_t *img, const struct authenticode_pe *pe, const char *md, uint8_t *out);

/* Walks the certificate table: calls fn for each WIN_CERTIFICATE of type PKCS_SIGNED_DATA (revision
 * 2.0) with its PKCS#7 DER. Returns -EINVAL when an entry is malformed (a length past the table),
 * fn's first nonzero return, or 0. */
typedef int (*authenticode_sig_fn)(void *opaque, const uint8_t *der, size_t len);
int authenticode_signatures(const uint8_t *img, const struct authenticode_pe *pe, authenticode_sig_fn fn,
			    void *opaque);

/* The verdict on an image against db and dbx (EFI signature lists, either may be NULL/0):
 *   refused when its SHA-256 is in dbx, or a certificate of a signature that verifies is in dbx;
 *   allowed when a PKCS#7 signature verifies (its signed digest equals the image's, its signer
 *   chains to an X.509 certificate of db: a trust anchor, whatever the time or key usage), or when
 *   its SHA-256 is in db; refused otherwise.
 * Returns 0 (allowed) or -EACCES (refused), -EINVAL (not a PE image), -ENOMEM; why says which rule
 * decided, naming signers by their subject CN. sha256 (32 bytes, may be NULL) receives the image's
 * Authenticode SHA-256 when it could be computed. */
int authenticode_verify(const uint8_t *img, size_t len, const uint8_t *db, size_t db_len, const uint8_t *dbx,
			size_t dbx_len, uint8_t *sha256, char *why, size_t whylen);

/* A PKCS#7 SignedData with detached content (an authenticated variable's, UEFI 2.10 8.2.2: a bare
 * SignedData or a ContentInfo) over content, its single signer chaining to an X.509 certificate of
 * trust (signature lists). 0, -EACCES with why, -ENOMEM. */
int pkcs7_verify_detached(const uint8_t *der, size_t len, const uint8_t *content, size_t clen, const uint8_t *trust,
			  size_t trust_len, char *why, size_t whylen);

#endif
