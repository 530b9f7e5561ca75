#include "platform/authenticode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "efi/efi_lib.h"
#include "platform/secboot.h"

#define PE_MAX_SECTIONS 1024u
_Static_assert(PE_MAX_SECTIONS + 4 <= sizeof(((struct authenticode_pe *)0)->range) /
	       sizeof(((struct authenticode_pe *)0)->range[0]), "authenticode ranges");

#define WIN_CERT_REVISION_2_0 0x0200u
#define WIN_CERT_TYPE_PKCS_SIGNED_DATA 0x0002u

static void add_range(struct authenticode_pe *pe, size_t off, size_t len)
{
	if (len)
		pe->range[pe->nr_ranges++] = (typeof(pe->range[0])){ off, len };
}

int authenticode_parse(const uint8_t *img, size_t len, struct authenticode_pe *pe, char *why, size_t whylen)
{
	pe->nr_ranges = 0;
	pe->cert_off = pe->cert_size = 0;
	if (len > AUTHENTICODE_IMAGE_MAX) {
		snprintf(why, whylen, "larger than %u MiB", AUTHENTICODE_IMAGE_MAX >> 20);
		return -EINVAL;
	}
	if (len < 64 || img[0] != 'M' || img[1] != 'Z') {
		snprintf(why, whylen, "not a PE image (no MZ header)");
		return -EINVAL;
	}
	size_t pe_off = efi_le32(img + 0x3c);
	if (pe_off > len - 24 || memcmp(img + pe_off, "PE\0\0", 4)) {
		snprintf(why, whylen, "not a PE image (no PE signature)");
		return -EINVAL;
	}
	unsigned nsec = efi_le16(img + pe_off + 6), opt_size = efi_le16(img + pe_off + 20);
	size_t opt = pe_off + 24;
	if (opt_size > len - opt || opt_size < 96) {
		snprintf(why, whylen, "truncated PE optional header");
		return -EINVAL;
	}
	uint16_t magic = efi_le16(img + opt);
	size_t nrva_off, dirs;
	if (magic == 0x10b) {
		nrva_off = opt + 92;
		dirs = opt + 96;
	} else if (magic == 0x20b) {
		nrva_off = opt + 108;
		dirs = opt + 112;
	} else {
		snprintf(why, whylen, "unknown PE optional header magic 0x%x", magic);
		return -EINVAL;
	}
	size_t opt_end = opt + opt_size, checksum = opt + 64;
	if (nrva_off + 4 > opt_end) {
		snprintf(why, whylen, "truncated PE optional header");
		return -EINVAL;
	}
	size_t headers = efi_le32(img + opt + 60);
	uint32_t nrva = efi_le32(img + nrva_off);
	size_t sec_table = opt_end;
	if (nsec > PE_MAX_SECTIONS || (size_t)nsec * 40 > len - sec_table) {
		snprintf(why, whylen, "bad PE section table (%u sections)", nsec);
		return -EINVAL;
	}
	if (headers > len || headers < checksum + 4) {
		snprintf(why, whylen, "bad PE SizeOfHeaders 0x%zx", headers);
		return -EINVAL;
	}
	add_range(pe, 0, checksum);
	if (nrva > 4) {
		size_t entry = dirs + 4 * 8;
		if (entry + 8 > opt_end || entry + 8 > headers) {
			snprintf(why, whylen, "the certificate table entry lies outside the headers");
			return -EINVAL;
		}
		add_range(pe, checksum + 4, entry - (checksum + 4));
		add_range(pe, entry + 8, headers - (entry + 8));
		pe->cert_off = efi_le32(img + entry);
		pe->cert_size = efi_le32(img + entry + 4);
		if (!pe->cert_size)
			pe->cert_off = 0;
		else if (pe->cert_off > len || pe->cert_size > len - pe->cert_off || pe->cert_off < headers) {
			snprintf(why, whylen, "the certificate table lies outside the file");
			return -EINVAL;
		}
	} else {
		add_range(pe, checksum + 4, headers - (checksum + 4));
	}
	/* Sections by file offset (an insertion sort: at most PE_MAX_SECTIONS, usually a handful). */
	uint16_t order[PE_MAX_SECTIONS];
	unsigned n = 0;
	for (unsigned i = 0; i < nsec; i++) {
		const uint8_t *s = img + sec_table + i * 40;
		size_t raw_size = efi_le32(s + 16), raw_off = efi_le32(s + 20);
		if (!raw_size)
			continue;
		if (raw_off > len || raw_size > len - raw_off) {
			snprintf(why, whylen, "section %u lies outside the file", i + 1);
			return -EINVAL;
		}
		unsigned k = n++;
		while (k && efi_le32(img + sec_table + order[k - 1] * 40 + 20) > raw_off) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = (uint16_t)i;
	}
	size_t sum = headers;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *s = img + sec_table + order[i] * 40;
		add_range(pe, efi_le32(s + 20), efi_le32(s + 16));
		sum += efi_le32(s + 16);
	}
	/* Data after the sections, except the certificate table (at the file's end). */
	if (len > sum && len - sum > pe->cert_size)
		add_range(pe, sum, len - sum - pe->cert_size);
	return 0;
}

int authenticode_digest(const uint8_t *img, const struct authenticode_pe *pe, const char *md_name, uint8_t *out)
{
	const EVP_MD *md = EVP_get_digestbyname(md_name);
	if (!md)
		return -EINVAL;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok = c && EVP_DigestInit_ex(c, md, NULL);
	for (unsigned i = 0; ok && i < pe->nr_ranges; i++)
		ok = EVP_DigestUpdate(c, img + pe->range[i].off, pe->range[i].len);
	ok = ok && EVP_DigestFinal_ex(c, out, &n);
	EVP_MD_CTX_free(c);
	return ok ? (int)n : -ENOMEM;
}

int authenticode_signatures(const uint8_t *img, const struct authenticode_pe *pe, authenticode_sig_fn fn,
			    void *opaque)
{
	size_t off = 0;
	const uint8_t *t = img + pe->cert_off;
	while (pe->cert_size - off >= 8) {
		uint32_t l = efi_le32(t + off);
		uint16_t rev = efi_le16(t + off + 4), type = efi_le16(t + off + 6);
		if (l < 8 || l > pe->cert_size - off)
			return -EINVAL;
		if (rev == WIN_CERT_REVISION_2_0 && type == WIN_CERT_TYPE_PKCS_SIGNED_DATA) {
			int r = fn(opaque, t + off + 8, l - 8);
			if (r)
				return r;
		}
		size_t step = ((size_t)l + 7) & ~(size_t)7; /* entries are 8-byte aligned */
		if (step > pe->cert_size - off)
			break;
		off += step;
	}
	return 0;
}

/* ---- verification ---- */

struct db_scan {
	const uint8_t *want; /* a SHA-256, a DER certificate or a TBSCertificate hash */
	size_t want_len;
	const EFI_GUID *type; /* entries of this type; a hash type's entries may carry more (a revocation time) */
	X509_STORE *store;    /* db: collect X.509 entries here instead */
};

static const EFI_GUID guid_x509 = EFI_CERT_X509_GUID, guid_sha256 = EFI_CERT_SHA256_GUID;

static int db_entry(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *data, size_t len)
{
	struct db_scan *s = opaque;
	if (s->store) {
		if (!efi_guid_eq(type, &guid_x509))
			return 0;
		const unsigned char *p = data;
		X509 *c = d2i_X509(NULL, &p, (long)len);
		if (c) {
			X509_STORE_add_cert(s->store, c);
			X509_free(c);
		}
		return 0;
	}
	if (!efi_guid_eq(type, s->type))
		return 0;
	/* an X.509 entry is the whole certificate; a TBS-hash entry is the hash then TimeOfRevocation, which
	 * is not honoured: without timestamped signatures (dbt) nothing shows an image was signed before it */
	bool prefix = !efi_guid_eq(type, &guid_x509) && !efi_guid_eq(type, &guid_sha256);
	return len == s->want_len + (prefix ? sizeof(EFI_TIME) : 0) && !memcmp(data, s->want, s->want_len);
}

/* Whether the database holds this entry of this type. A malformed database holds nothing: the host
 * wrote it, and the parser refuses it whole. */
static bool db_holds(const uint8_t *db, size_t len, const uint8_t *want, size_t want_len, const EFI_GUID *type)
{
	struct db_scan s = { want, want_len, type, NULL };
	return db && secboot_esl_walk(db, len, db_entry, &s) == 1;
}

struct verify {
	const uint8_t *img;
	const struct authenticode_pe *pe;
	X509_STORE *store;
	const uint8_t *dbx;
	size_t dbx_len;
	unsigned nr_sigs;
	bool allowed, revoked;
	char why[300]; /* the first refusal's reason */
};

static void cn_of(X509 *c, char *out, size_t len)
{
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, out, (int)len) < 0)
		snprintf(out, len, "(no common name)");
}

static void note(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct verify *v, const char *fmt, ...)
{
	if (v->why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
}

/* Whether dbx revokes a certificate: by its whole DER (EFI_CERT_X509) or by the SHA-256/384/512 of its
 * TBSCertificate (EFI_CERT_X509_SHA256/384/512, as Microsoft's dbx updates revoke CAs). */
static bool cert_in_dbx(struct verify *v, X509 *c)
{
	static const EFI_GUID tbs_types[3] = { EFI_CERT_X509_SHA256_GUID, EFI_CERT_X509_SHA384_GUID,
					       EFI_CERT_X509_SHA512_GUID };
	static const char *const tbs_mds[3] = { "SHA256", "SHA384", "SHA512" };
	unsigned char *der = NULL;
	int n = i2d_X509(c, &der);
	bool hit = n > 0 && db_holds(v->dbx, v->dbx_len, der, (size_t)n, &guid_x509);
	OPENSSL_free(der);
	der = NULL;
	n = hit ? 0 : i2d_re_X509_tbs(c, &der);
	for (unsigned i = 0; n > 0 && !hit && i < 3; i++) {
		uint8_t h[EVP_MAX_MD_SIZE];
		unsigned hl = 0;
		EVP_MD *md = EVP_MD_fetch(NULL, tbs_mds[i], NULL);
		if (md && EVP_Digest(der, (size_t)n, h, &hl, md, NULL))
			hit = db_holds(v->dbx, v->dbx_len, h, hl, &tbs_types[i]);
		EVP_MD_free(md);
	}
	OPENSSL_free(der);
	return hit;
}

/* The signed content for PKCS7_verify. Not a bare memory BIO: for those OpenSSL 3.0 makes a copy that
 * it leaks when the SignedData is unusable; behind a buffering filter it reads the caller's BIO.
 * Freed with BIO_free_all. */
static BIO *content_bio(const void *data, size_t len)
{
	BIO *mem = BIO_new_mem_buf(data, (int)len), *buf = mem ? BIO_new(BIO_f_buffer()) : NULL;
	if (!buf) {
		BIO_free(mem);
		return NULL;
	}
	return BIO_push(buf, mem);
}

static void signer_names(X509 *signer, char cn[128], char issuer[128])
{
	cn_of(signer, cn, 128);
	if (X509_NAME_get_text_by_NID(X509_get_issuer_name(signer), NID_commonName, issuer, 128) < 0)
		snprintf(issuer, 128, "(no common name)");
}

/* The signer's chain to a trust anchor of store (the context holds the chain), or NULL. UEFI's rules,
 * not the web's: the databases' certificates are trust anchors even when they are not self-signed,
 * expired certificates still sign (firmware has no trusted clock), and code signing certificates carry
 * no S/MIME or TLS purpose. */
static X509_STORE_CTX *signer_chain(X509 *signer, STACK_OF(X509) *certs, X509_STORE *store)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	if (!ctx || !X509_STORE_CTX_init(ctx, store, signer, certs)) {
		X509_STORE_CTX_free(ctx);
		return NULL;
	}
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
	X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		X509_STORE_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue, messageDigest DigestInfo }:
 * the signed bytes are its value without the SEQUENCE's tag and length. */
static bool spc_content(PKCS7 *p7, const unsigned char **inner, long *inner_len, X509_SIG **digest)
{
	static const char spc_indirect_data[] = "1.3.6.1.4.1.311.2.1.4";
	PKCS7 *c = p7->d.sign->contents;
	if (!c || !c->type || !c->d.other)
		return false;
	ASN1_OBJECT *want = OBJ_txt2obj(spc_indirect_data, 1);
	bool is_spc = want && !OBJ_cmp(c->type, want);
	ASN1_OBJECT_free(want);
	if (!is_spc || c->d.other->type != V_ASN1_SEQUENCE)
		return false;
	const unsigned char *p = c->d.other->value.sequence->data;
	long total = c->d.other->value.sequence->length, l;
	int tag, cls;
	if (ASN1_get_object(&p, &l, &tag, &cls, total) & 0x80 || tag != V_ASN1_SEQUENCE)
		return false;
	*inner = p;
	*inner_len = l;
	const unsigned char *q = p, *end = p + l;
	long l1;
	if (ASN1_get_object(&q, &l1, &tag, &cls, end - q) & 0x80 || l1 > end - q)
		return false;
	q += l1;
	*digest = d2i_X509_SIG(NULL, &q, end - q);
	return *digest != NULL;
}

static int verify_one(void *opaque, const uint8_t *der, size_t len)
{
	struct verify *v = opaque;
	v->nr_sigs++;
	const unsigned char *p = der;
	PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
	X509_SIG *dig = NULL;
	BIO *in = NULL;
	STACK_OF(X509) *signers = NULL;
	X509_STORE_CTX *ctx = NULL;
	const unsigned char *inner;
	long inner_len;
	if (!p7 || !PKCS7_type_is_signed(p7) || !spc_content(p7, &inner, &inner_len, &dig)) {
		note(v, "its signature %u is not an Authenticode PKCS#7 SignedData", v->nr_sigs);
		goto out;
	}
	/* Any certificate the signature carries that dbx lists revokes the image. */
	STACK_OF(X509) *certs = p7->d.sign->cert;
	for (int i = 0; certs && i < sk_X509_num(certs); i++)
		if (cert_in_dbx(v, sk_X509_value(certs, i))) {
			char cn[128];
			cn_of(sk_X509_value(certs, i), cn, sizeof(cn));
			v->revoked = true;
			snprintf(v->why, sizeof(v->why), "its signer certificate '%s' is revoked (in dbx)", cn);
			goto out;
		}
	const X509_ALGOR *alg;
	const ASN1_OCTET_STRING *want;
	const ASN1_OBJECT *aobj;
	X509_SIG_get0(dig, &alg, &want);
	X509_ALGOR_get0(&aobj, NULL, NULL, alg);
	const EVP_MD *md = EVP_get_digestbyobj(aobj);
	uint8_t got[EVP_MAX_MD_SIZE];
	int n = md ? authenticode_digest(v->img, v->pe, EVP_MD_get0_name(md), got) : -EINVAL;
	if (n <= 0) {
		note(v, "its signature %u uses an unsupported digest algorithm", v->nr_sigs);
		goto out;
	}
	if (ASN1_STRING_length(want) != n || memcmp(ASN1_STRING_get0_data(want), got, (size_t)n)) {
		note(v, "changed after signing (signature %u's digest differs)", v->nr_sigs);
		goto out;
	}
	/* The signature over the signed attributes and content; the chain is checked below, against db. */
	in = content_bio(inner, (size_t)inner_len);
	if (!in || PKCS7_verify(p7, NULL, NULL, in, NULL, PKCS7_BINARY | PKCS7_NOVERIFY) != 1) {
		note(v, "its signature %u does not verify (a bad PKCS#7 signature)", v->nr_sigs);
		goto out;
	}
	signers = PKCS7_get0_signers(p7, NULL, 0);
	if (!signers || sk_X509_num(signers) != 1) {
		note(v, "its signature %u has no single signer", v->nr_sigs);
		goto out;
	}
	X509 *signer = sk_X509_value(signers, 0);
	char cn[128], issuer[128];
	if (!(ctx = signer_chain(signer, certs, v->store))) {
		signer_names(signer, cn, issuer);
		note(v, "signer '%s' (issuer '%s') not in db", cn, issuer);
		goto out;
	}
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
	for (int i = 0; chain && i < sk_X509_num(chain); i++)
		if (cert_in_dbx(v, sk_X509_value(chain, i))) {
			cn_of(sk_X509_value(chain, i), cn, sizeof(cn));
			v->revoked = true;
			snprintf(v->why, sizeof(v->why), "its signer's chain holds '%s', which is revoked (in dbx)", cn);
			goto out;
		}
	v->allowed = true;
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(signers);
	BIO_free_all(in);
	X509_SIG_free(dig);
	PKCS7_free(p7);
	ERR_clear_error(); /* OpenSSL's per-thread error queue: nothing of this image stays in it */
	return v->revoked ? 1 : 0;
}

int authenticode_verify(const uint8_t *img, size_t len, const uint8_t *db, size_t db_len, const uint8_t *dbx,
			size_t dbx_len, uint8_t *sha256, char *why, size_t whylen)
{
	struct authenticode_pe *pe = malloc(sizeof(*pe));
	struct verify *v = calloc(1, sizeof(*v));
	X509_STORE *store = X509_STORE_new();
	int r = -ENOMEM;
	if (!pe || !v || !store) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if ((r = authenticode_parse(img, len, pe, why, whylen)))
		goto out;
	uint8_t h[EVP_MAX_MD_SIZE];
	if (authenticode_digest(img, pe, "SHA256", h) != 32) {
		snprintf(why, whylen, "cannot compute its SHA-256");
		r = -ENOMEM;
		goto out;
	}
	if (sha256)
		memcpy(sha256, h, 32);
	if (db_holds(dbx, dbx_len, h, 32, &guid_sha256)) {
		snprintf(why, whylen, "its SHA-256 is in dbx (revoked)");
		r = -EACCES;
		goto out;
	}
	struct db_scan collect = { .store = store };
	if (db)
		secboot_esl_walk(db, db_len, db_entry, &collect);
	*v = (struct verify){ .img = img, .pe = pe, .store = store, .dbx = dbx, .dbx_len = dbx_len };
	if (authenticode_signatures(img, pe, verify_one, v) < 0 && !v->revoked) {
		snprintf(why, whylen, "its certificate table is malformed");
		r = -EACCES;
		goto out;
	}
	if (v->revoked) {
		snprintf(why, whylen, "%s", v->why);
		r = -EACCES;
	} else if (v->allowed) {
		snprintf(why, whylen, "a signature chains to db");
		r = 0;
	} else if (db_holds(db, db_len, h, 32, &guid_sha256)) {
		snprintf(why, whylen, "its SHA-256 is in db");
		r = 0;
	} else {
		snprintf(why, whylen, "%s", !v->nr_sigs ? "not signed, and its hash is not in db"
					    : v->why[0] ? v->why : "its signatures do not verify");
		r = -EACCES;
	}
out:
	X509_STORE_free(store);
	free(v);
	free(pe);
	return r;
}

/* DER length octets (minimal form) into out; returns their count. */
static size_t der_len(uint8_t *out, size_t n)
{
	if (n < 0x80) {
		out[0] = (uint8_t)n;
		return 1;
	}
	size_t k = 0;
	for (size_t t = n; t; t >>= 8)
		k++;
	out[0] = (uint8_t)(0x80 | k);
	for (size_t i = 0; i < k; i++)
		out[1 + i] = (uint8_t)(n >> (8 * (k - 1 - i)));
	return 1 + k;
}

/* UEFI's authenticated variables carry a bare SignedData (UEFI 2.10 8.2.2); tools also write the
 * whole ContentInfo. Either way a PKCS7, or NULL. */
static PKCS7 *pkcs7_parse(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
	if (p7 || len > (64u << 10))
		return p7;
	ERR_clear_error();
	/* ContentInfo ::= SEQUENCE { contentType OID signedData, content [0] EXPLICIT SignedData } */
	static const uint8_t oid[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02 };
	uint8_t l0[10], l1[10];
	size_t n0 = der_len(l0, len), inner = sizeof(oid) + 1 + n0 + len, n1 = der_len(l1, inner);
	uint8_t *w = malloc(1 + n1 + inner);
	if (!w)
		return NULL;
	size_t k = 0;
	w[k++] = 0x30;
	memcpy(w + k, l1, n1);
	k += n1;
	memcpy(w + k, oid, sizeof(oid));
	k += sizeof(oid);
	w[k++] = 0xa0;
	memcpy(w + k, l0, n0);
	k += n0;
	memcpy(w + k, der, len);
	k += len;
	p = w;
	p7 = d2i_PKCS7(NULL, &p, (long)k);
	free(w);
	return p7;
}

int pkcs7_verify_detached(const uint8_t *der, size_t len, const uint8_t *content, size_t clen, const uint8_t *trust,
			  size_t trust_len, char *why, size_t whylen)
{
	PKCS7 *p7 = pkcs7_parse(der, len);
	X509_STORE *store = X509_STORE_new();
	BIO *in = NULL;
	STACK_OF(X509) *signers = NULL;
	X509_STORE_CTX *ctx = NULL;
	int r = -EACCES;
	if (!store) {
		snprintf(why, whylen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	if (!p7 || !PKCS7_type_is_signed(p7)) {
		snprintf(why, whylen, "the authentication is not a PKCS#7 SignedData");
		goto out;
	}
	struct db_scan collect = { .store = store };
	secboot_esl_walk(trust, trust_len, db_entry, &collect);
	in = content_bio(content, clen);
	if (!in || PKCS7_verify(p7, NULL, NULL, in, NULL, PKCS7_BINARY | PKCS7_NOVERIFY) != 1) {
		snprintf(why, whylen, "its signature does not verify over the variable's data");
		goto out;
	}
	signers = PKCS7_get0_signers(p7, NULL, 0);
	if (!signers || sk_X509_num(signers) != 1) {
		snprintf(why, whylen, "its signature has no single signer");
		goto out;
	}
	X509 *signer = sk_X509_value(signers, 0);
	if (!(ctx = signer_chain(signer, p7->d.sign->cert, store))) {
		char cn[128], issuer[128];
		signer_names(signer, cn, issuer);
		snprintf(why, whylen, "signed by '%s' (issued by '%s'), which is not a key allowed to write it", cn, issuer);
		goto out;
	}
	r = 0;
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(signers);
	BIO_free_all(in);
	PKCS7_free(p7);
	X509_STORE_free(store);
	ERR_clear_error();
	return r;
}
