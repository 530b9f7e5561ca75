/* Secure Boot's policy in the VMM (src/platform/secboot.c): the signature-list parser, Hyper-V's
 * templates built from Microsoft's certificates, the setting in the store, the variables a boot sees,
 * and the guest's writes to the keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/nvram.h"
#include "platform/sb_keys.h"
#include "platform/secboot.h"

static const EFI_GUID gglobal = EFI_GLOBAL_VARIABLE_GUID;
static const EFI_GUID gdb = EFI_IMAGE_SECURITY_DATABASE_GUID;
static const EFI_GUID gvendor = GEN2VM_VENDOR_GUID;
static const EFI_GUID gx509 = EFI_CERT_X509_GUID;
static const EFI_GUID gsha = EFI_CERT_SHA256_GUID;
static const EFI_GUID gms = EFI_SIG_OWNER_MICROSOFT;

/* A list of n signatures of type/size, each data byte = its index; returns its size. */
static size_t esl(uint8_t *out, const EFI_GUID *type, uint32_t hdr, uint32_t sig_size, unsigned n)
{
	EFI_SIGNATURE_LIST l = { *type, (uint32_t)(28 + hdr + n * sig_size), hdr, sig_size };
	memcpy(out, &l, sizeof(l));
	memset(out + 28, 0xee, hdr);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *s = out + 28 + hdr + i * sig_size;
		memcpy(s, &gms, 16);
		memset(s + 16, (int)i, sig_size - 16);
	}
	return l.SignatureListSize;
}

struct seen {
	unsigned n, x509, sha;
	size_t last_len;
	uint8_t last_first;
	int stop_at;
};

static int count_sig(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *data, size_t len)
{
	struct seen *s = opaque;
	s->n++;
	s->x509 += efi_guid_eq(type, &gx509);
	s->sha += efi_guid_eq(type, &gsha);
	s->last_len = len;
	s->last_first = data[0];
	assert_true(efi_guid_eq(owner, &gms));
	return s->stop_at && (int)s->n == s->stop_at ? 42 : 0;
}

static void test_esl_walk(void **state)
{
	uint8_t b[1024];
	size_t len = esl(b, &gsha, 0, 48, 3);
	len += esl(b + len, &gx509, 4, 100, 2);
	struct seen s = { 0 };
	assert_int_equal(secboot_esl_walk(b, len, count_sig, &s), 0);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.sha, 3);
	assert_int_equal(s.x509, 2);
	assert_int_equal(s.last_len, 84);
	assert_int_equal(s.last_first, 1);
	assert_int_equal(secboot_esl_walk(b, len, NULL, NULL), 0);
	/* fn's verdict stops the walk */
	struct seen s2 = { .stop_at = 2 };
	assert_int_equal(secboot_esl_walk(b, len, count_sig, &s2), 42);
	assert_int_equal(s2.n, 2);
	/* an empty database is well formed (no keys) */
	assert_int_equal(secboot_esl_walk(b, 0, NULL, NULL), 0);
}

static void test_esl_malformed(void **state)
{
	uint8_t b[512], m[512];
	size_t len = esl(b, &gsha, 0, 48, 2);
	/* every truncation is refused */
	for (size_t l = 1; l < len; l++)
		assert_int_equal(secboot_esl_walk(b, l, NULL, NULL), -EINVAL);
	/* a trailing partial list header */
	assert_int_equal(secboot_esl_walk(b, len + 5, NULL, NULL), -EINVAL);
	struct {
		size_t off;
		uint32_t v;
	} bad[] = {
		{ 16, 0 },          /* list size below its header */
		{ 16, 27 },
		{ 16, 1000 },       /* beyond the buffer */
		{ 16, 28 + 48 + 1 },/* not a whole number of signatures */
		{ 20, 100 },        /* header larger than the list */
		{ 24, 0 },          /* zero signature size: no endless loop */
		{ 24, 16 },         /* a signature with no data */
		{ 24, 96 },         /* SHA-256 entries are 48 bytes */
		{ 16, 28 },         /* a list with no signature */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(m, b, len);
		efi_put32(m + bad[i].off, bad[i].v);
		assert_int_equal(secboot_esl_walk(m, len, NULL, NULL), -EINVAL);
	}
	/* certificate-hash revocations: the hash and a 16-byte time, nothing else */
	static const EFI_GUID tbs[3] = { EFI_CERT_X509_SHA256_GUID, EFI_CERT_X509_SHA384_GUID,
					 EFI_CERT_X509_SHA512_GUID };
	for (unsigned i = 0; i < 3; i++) {
		uint32_t good = 16 + 32 + 16 * i + 16;
		assert_int_equal(secboot_sig_fixed_size(&tbs[i]), good - 16);
		assert_int_equal(secboot_esl_walk(m, esl(m, &tbs[i], 0, good, 2), NULL, NULL), 0);
		assert_int_equal(secboot_esl_walk(m, esl(m, &tbs[i], 0, good - 16, 2), NULL, NULL), -EINVAL);
		assert_int_equal(secboot_esl_walk(m, esl(m, &tbs[i], 0, good + 1, 2), NULL, NULL), -EINVAL);
	}
	static const EFI_GUID x509 = EFI_CERT_X509_GUID;
	assert_int_equal(secboot_sig_fixed_size(&x509), 0);
}

static int count_only(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *data, size_t len)
{
	(*(unsigned *)opaque)++;
	return 0;
}

static unsigned db_count(enum secboot_template t, const char *which)
{
	uint8_t *b;
	size_t len;
	unsigned n = 0;
	assert_int_equal(secboot_template_db(t, which, &b, &len), 0);
	assert_int_equal(secboot_esl_walk(b, len, count_only, &n), 0);
	free(b);
	return n;
}

static bool db_has(enum secboot_template t, const uint8_t *esl_data, size_t esl_size)
{
	uint8_t *b;
	size_t len;
	assert_int_equal(secboot_template_db(t, "db", &b, &len), 0);
	bool found = false;
	for (size_t off = 0; b && off + esl_size <= len; off++)
		found |= !memcmp(b + off, esl_data, esl_size);
	free(b);
	return found;
}

static void test_templates(void **state)
{
	/* The generated keys are well-formed lists of certificates (and dbx of hashes). */
	assert_int_equal(secboot_esl_walk(sb_key_pk, sb_key_pk_size, NULL, NULL), 0);
	assert_int_equal(secboot_esl_walk(sb_key_kek_microsoft, sb_key_kek_microsoft_size, NULL, NULL), 0);
	assert_int_equal(secboot_esl_walk(sb_key_db_windows_pca, sb_key_db_windows_pca_size, NULL, NULL), 0);
	assert_int_equal(secboot_esl_walk(sb_key_db_uefi_ca, sb_key_db_uefi_ca_size, NULL, NULL), 0);
	assert_int_equal(secboot_esl_walk(sb_key_dbx, sb_key_dbx_size, NULL, NULL), 0);
	assert_int_equal(db_count(SECBOOT_TEMPLATE_WINDOWS, "db"), 1);
	assert_true(db_has(SECBOOT_TEMPLATE_WINDOWS, sb_key_db_windows_pca, sb_key_db_windows_pca_size));
	assert_false(db_has(SECBOOT_TEMPLATE_WINDOWS, sb_key_db_uefi_ca, sb_key_db_uefi_ca_size));
	assert_int_equal(db_count(SECBOOT_TEMPLATE_UEFI_CA, "db"), 2);
	assert_true(db_has(SECBOOT_TEMPLATE_UEFI_CA, sb_key_db_windows_pca, sb_key_db_windows_pca_size));
	assert_true(db_has(SECBOOT_TEMPLATE_UEFI_CA, sb_key_db_uefi_ca, sb_key_db_uefi_ca_size));
	assert_int_equal(db_count(SECBOOT_TEMPLATE_OSS_SHIELDED, "db"), 1);
	assert_true(db_has(SECBOOT_TEMPLATE_OSS_SHIELDED, sb_key_db_uefi_ca, sb_key_db_uefi_ca_size));
	for (enum secboot_template t = SECBOOT_TEMPLATE_WINDOWS; t <= SECBOOT_TEMPLATE_OSS_SHIELDED; t++) {
		assert_int_equal(db_count(t, "PK"), 1);
		assert_int_equal(db_count(t, "KEK"), 1);
		assert_int_equal(db_count(t, "dbx"), 1);
	}
	uint8_t *b;
	size_t len;
	assert_int_equal(secboot_template_db(SECBOOT_TEMPLATE_NONE, "db", &b, &len), 0);
	assert_null(b);
	assert_int_equal(len, 0);
	assert_int_equal(secboot_template_db(SECBOOT_TEMPLATE_WINDOWS, "dbq", &b, &len), -EINVAL);
	/* custom keys come from files, not from a template; "custom" is not a name the user gives */
	assert_int_equal(secboot_template_db(SECBOOT_TEMPLATE_CUSTOM, "db", &b, &len), -EINVAL);

	enum secboot_template t;
	assert_int_equal(secboot_template_parse("microsoftuefiCERTIFICATEauthority", &t), 0);
	assert_int_equal(t, SECBOOT_TEMPLATE_UEFI_CA);
	assert_int_equal(secboot_template_parse("None", &t), 0);
	assert_int_equal(t, SECBOOT_TEMPLATE_NONE);
	assert_int_equal(secboot_template_parse("Microsoft", &t), -EINVAL);
	assert_int_equal(secboot_template_parse("custom", &t), -EINVAL);
	assert_string_equal(secboot_template_name(SECBOOT_TEMPLATE_OSS_SHIELDED), "OpenSourceShieldedVM");
}

static uint8_t get_u8(struct nvram *nv, const char *name, const EFI_GUID *g, uint32_t *attr)
{
	size_t sz = 0;
	uint8_t *d = nvram_get_ascii(nv, name, g, &sz, attr);
	assert_non_null(d);
	assert_int_equal(sz, 1);
	uint8_t v = d[0];
	free(d);
	return v;
}

static void test_settings_and_boot_variables(void **state)
{
	struct nvram *nv;
	char err[256];
	assert_int_equal(nvram_open(NULL, true, false, &nv, err, sizeof(err)), 0);
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	/* a new store: off, Hyper-V's default template, no keys yet */
	assert_false(s.enabled);
	assert_int_equal(s.template_id, SECBOOT_TEMPLATE_WINDOWS);
	assert_false(s.pk_enrolled);
	assert_false(secboot_vm_start(nv));
	uint32_t attr;
	assert_int_equal(get_u8(nv, "SetupMode", &gglobal, &attr), 1);
	assert_int_equal(attr, EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS);
	assert_int_equal(get_u8(nv, "SecureBoot", &gglobal, NULL), 0);

	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_UEFI_CA, true), 0);
	secboot_settings_get(nv, &s);
	assert_true(s.enabled && s.pk_enrolled);
	assert_int_equal(s.template_id, SECBOOT_TEMPLATE_UEFI_CA);
	size_t sz;
	void *db = nvram_get_ascii(nv, "db", &gdb, &sz, &attr);
	assert_non_null(db);
	assert_int_equal(attr, EFI_SECURE_DB_ATTRIBUTES);
	assert_int_equal(sz, sb_key_db_windows_pca_size + sb_key_db_uefi_ca_size);
	free(db);
	void *kek = nvram_get_ascii(nv, "KEK", &gglobal, &sz, &attr);
	assert_non_null(kek);
	assert_int_equal(sz, sb_key_kek_microsoft_size);
	free(kek);
	assert_true(secboot_vm_start(nv));
	assert_int_equal(get_u8(nv, "SecureBoot", &gglobal, NULL), 1);
	assert_int_equal(get_u8(nv, "SetupMode", &gglobal, NULL), 0);

	/* another template replaces the databases */
	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_WINDOWS, true), 0);
	db = nvram_get_ascii(nv, "db", &gdb, &sz, NULL);
	assert_int_equal(sz, sb_key_db_windows_pca_size);
	free(db);
	/* none: no keys, Setup Mode, Secure Boot not in force though on */
	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_NONE, true), 0);
	assert_null(nvram_get_ascii(nv, "PK", &gglobal, &sz, NULL));
	assert_null(nvram_get_ascii(nv, "db", &gdb, &sz, NULL));
	assert_false(secboot_vm_start(nv));
	assert_int_equal(get_u8(nv, "SetupMode", &gglobal, NULL), 1);
	/* off keeps the keys */
	assert_int_equal(secboot_settings_set(nv, false, SECBOOT_TEMPLATE_UEFI_CA, true), 0);
	assert_false(secboot_vm_start(nv));
	assert_int_equal(get_u8(nv, "SecureBoot", &gglobal, NULL), 0);
	secboot_settings_get(nv, &s);
	assert_true(!s.enabled && s.pk_enrolled);
	nvram_close(nv);
}

/* The guest's SetVariable requests as the firmware forwards them. */
static uint64_t guest_set(struct nvram *nv, const char *name, const EFI_GUID *g, uint32_t flags, uint32_t attr,
			  const void *data, uint32_t size)
{
	size_t n = strlen(name);
	uint32_t ns = (uint32_t)(n + 1) * 2;
	uint32_t total = (uint32_t)sizeof(struct fw_var_req) + ns + size;
	struct fw_var_req *r = calloc(1, total);
	r->hdr.op = FW_OP_VAR_SET;
	r->hdr.size = total;
	r->flags = flags;
	r->attributes = attr;
	r->name_size = ns;
	r->data_size = size;
	memcpy(&r->guid, g, sizeof(*g));
	for (size_t i = 0; i < n; i++)
		efi_put16(r->payload + 2 * i, (uint8_t)name[i]);
	if (size)
		memcpy(r->payload + ns, data, size);
	uint64_t s = nvram_host_call(nv, FW_OP_VAR_SET, r, total);
	free(r);
	return s;
}

static void test_guest_cannot_touch_keys(void **state)
{
	struct nvram *nv;
	char err[256];
	assert_int_equal(nvram_open(NULL, true, false, &nv, err, sizeof(err)), 0);
	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_UEFI_CA, true), 0);
	secboot_vm_start(nv);
	const uint32_t nvbsrt = 7;
	uint8_t junk[48] = { 1 };
	/* delete, replace, or add to any database, even claiming to be the firmware or the host */
	for (uint32_t flags = 0; flags < 4; flags++) {
		uint32_t f = flags | NVRAM_F_HOST;
		assert_int_equal(guest_set(nv, "db", &gdb, f, 0, NULL, 0), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "db", &gdb, f, EFI_SECURE_DB_ATTRIBUTES, junk, 48), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "dbx", &gdb, f, 0, NULL, 0), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "KEK", &gglobal, f, nvbsrt | 0x40, junk, 48), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "PK", &gglobal, f, 0, NULL, 0), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "dbt", &gdb, f, nvbsrt, junk, 1), EFI_SECURITY_VIOLATION);
		uint8_t off = 0;
		assert_int_equal(guest_set(nv, "SecureBootEnable", &gvendor, f, 3, &off, 1), EFI_SECURITY_VIOLATION);
		assert_int_equal(guest_set(nv, "SecureBoot", &gglobal, f & ~NVRAM_F_HOST & ~FW_VAR_F_FIRMWARE, 6, &off, 1),
				 EFI_WRITE_PROTECTED);
	}
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	assert_true(s.enabled && s.pk_enrolled && s.template_id == SECBOOT_TEMPLATE_UEFI_CA);
	/* what shim writes before ExitBootServices still works: its volatile MokListRT */
	nvram_vm_reset(nv);
	secboot_vm_start(nv);
	static const EFI_GUID shim = EFI_GUID_INIT(0x605dab50, 0xe046, 0x4300, 0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23);
	assert_int_equal(guest_set(nv, "MokListRT", &shim, 0, 6, junk, 48), EFI_SUCCESS);
	nvram_close(nv);
}

static void test_file_keeps_keys(void **state)
{
	char dir[] = "/tmp/g2vm_secboot_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], err[256];
	snprintf(path, sizeof(path), "%s/vm.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), 0);
	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_OSS_SHIELDED, true), 0);
	nvram_close(nv);
	assert_int_equal(nvram_open(path, false, true, &nv, err, sizeof(err)), 0);
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	assert_true(s.enabled && s.pk_enrolled);
	assert_int_equal(s.template_id, SECBOOT_TEMPLATE_OSS_SHIELDED);
	size_t sz;
	uint32_t attr;
	void *db = nvram_get_ascii(nv, "db", &gdb, &sz, &attr);
	assert_non_null(db);
	assert_int_equal(attr, EFI_SECURE_DB_ATTRIBUTES);
	assert_memory_equal(db, sb_key_db_uefi_ca, sb_key_db_uefi_ca_size);
	free(db);
	nvram_close(nv);
	char lock[300];
	snprintf(lock, sizeof(lock), "%s.lock", path);
	unlink(lock);
	unlink(path);
	rmdir(dir);
}

/* ---- authenticated writes, signed here as efitools' sign-efi-sig-list signs them ---- */

struct key {
	EVP_PKEY *pkey;
	X509 *cert;
};

static struct key key_make(const char *cn)
{
	struct key k;
	k.pkey = EVP_RSA_gen(2048);
	assert_non_null(k.pkey);
	k.cert = X509_new();
	ASN1_INTEGER_set(X509_get_serialNumber(k.cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(k.cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(k.cert), 3600);
	X509_set_pubkey(k.cert, k.pkey);
	X509_NAME *n = X509_get_subject_name(k.cert);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(k.cert, n);
	assert_true(X509_sign(k.cert, k.pkey, EVP_sha256()) > 0);
	return k;
}

static void key_free(struct key *k)
{
	X509_free(k->cert);
	EVP_PKEY_free(k->pkey);
}

/* A signature list holding the key's certificate; returns its size. */
static size_t cert_esl(const struct key *k, uint8_t *out)
{
	unsigned char *der = NULL;
	int n = i2d_X509(k->cert, &der);
	EFI_SIGNATURE_LIST l = { gx509, (uint32_t)(28 + 16 + n), 0, (uint32_t)(16 + n) };
	memcpy(out, &l, 28);
	memcpy(out + 28, &gms, 16);
	memcpy(out + 44, der, (size_t)n);
	OPENSSL_free(der);
	return l.SignatureListSize;
}

/* EFI_VARIABLE_AUTHENTICATION_2 || payload, signed by k over name || guid || attr || time || payload. */
static size_t auth_blob(const struct key *k, const char *name, const EFI_GUID *g, uint32_t attr, uint16_t year,
			uint8_t second, const uint8_t *payload, size_t plen, uint8_t *out)
{
	uint8_t t[16] = { 0 }, content[8192];
	efi_put16(t, year);
	t[2] = 1;
	t[3] = 1;
	t[6] = second;
	size_t nl = strlen(name), c = 0;
	for (size_t i = 0; i < nl; i++, c += 2)
		efi_put16(content + c, (uint8_t)name[i]);
	memcpy(content + c, g, 16);
	efi_put32(content + c + 16, attr);
	memcpy(content + c + 20, t, 16);
	if (plen)
		memcpy(content + c + 36, payload, plen);
	c += 36 + plen;
	BIO *in = BIO_new_mem_buf(content, (int)c);
	PKCS7 *p7 = PKCS7_sign(k->cert, k->pkey, NULL, in, PKCS7_DETACHED | PKCS7_BINARY | PKCS7_NOATTR);
	assert_non_null(p7);
	unsigned char *der = NULL;
	int n = i2d_PKCS7(p7, &der);
	memcpy(out, t, 16);
	efi_put32(out + 16, (uint32_t)(24 + n));
	efi_put16(out + 20, 0x0200);
	efi_put16(out + 22, 0x0ef1);
	static const EFI_GUID pkcs7 = EFI_CERT_TYPE_PKCS7_GUID;
	memcpy(out + 24, &pkcs7, 16);
	memcpy(out + 40, der, (size_t)n);
	if (plen)
		memcpy(out + 40 + n, payload, plen);
	OPENSSL_free(der);
	PKCS7_free(p7);
	BIO_free(in);
	return 40 + (size_t)n + plen;
}

static size_t var_size(struct nvram *nv, const char *name, const EFI_GUID *g)
{
	size_t sz = 0;
	void *d = nvram_get_ascii(nv, name, g, &sz, NULL);
	free(d);
	return d ? sz : 0;
}

static void test_authenticated_writes(void **state)
{
	char dir[] = "/tmp/g2vm_sbauth_XXXXXX", path[256], err[256], why[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), 0);
	assert_int_equal(secboot_settings_set(nv, true, SECBOOT_TEMPLATE_UEFI_CA, true), 0);
	struct key pk = key_make("test PK"), kek = key_make("test KEK"), other = key_make("not enrolled");
	uint8_t esl[4096], blob[16384], hash[76];
	size_t n = cert_esl(&pk, esl);
	assert_int_equal(secboot_set_db(nv, "PK", esl, n, why, sizeof(why)), 0);
	secboot_vm_start(nv);
	const uint32_t A = EFI_SECURE_DB_ATTRIBUTES, APPEND = EFI_SECURE_DB_ATTRIBUTES | EFI_VARIABLE_APPEND_WRITE;
	size_t db0 = var_size(nv, "db", &gdb);
	uint8_t h[32];
	memset(h, 0x42, 32);
	memset(hash, 0, sizeof(hash));
	EFI_SIGNATURE_LIST l = { gsha, 76, 0, 48 };
	memcpy(hash, &l, 28);
	memcpy(hash + 44, h, 32);

	/* a db append signed by a key that is neither PK nor KEK: refused, nothing changes */
	size_t bl = auth_blob(&other, "db", &gdb, APPEND, 2026, 1, hash, 76, blob);
	assert_int_equal(guest_set(nv, "db", &gdb, 0, APPEND, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	assert_int_equal(var_size(nv, "db", &gdb), db0);
	/* the KEK replaced by the PK holder (runtime, as Linux's efivarfs writes) */
	n = cert_esl(&kek, esl);
	bl = auth_blob(&pk, "KEK", &gglobal, A, 2026, 1, esl, n, blob);
	assert_int_equal(guest_set(nv, "KEK", &gglobal, FW_VAR_F_RUNTIME, A, blob, (uint32_t)bl), EFI_SUCCESS);
	assert_int_equal(var_size(nv, "KEK", &gglobal), n);
	/* the same write again (a replay: not newer), and an older one: refused */
	assert_int_equal(guest_set(nv, "KEK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	bl = auth_blob(&pk, "KEK", &gglobal, A, 2025, 1, esl, n, blob);
	assert_int_equal(guest_set(nv, "KEK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	/* the KEK signed by itself may not replace the KEK */
	bl = auth_blob(&kek, "KEK", &gglobal, A, 2027, 1, esl, n, blob);
	assert_int_equal(guest_set(nv, "KEK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	/* db append by the new KEK: accepted (older timestamps are fine for appends) */
	bl = auth_blob(&kek, "db", &gdb, APPEND, 2020, 1, hash, 76, blob);
	assert_int_equal(guest_set(nv, "db", &gdb, 0, APPEND, blob, (uint32_t)bl), EFI_SUCCESS);
	assert_int_equal(var_size(nv, "db", &gdb), db0 + 76);
	/* the payload changed after signing */
	bl = auth_blob(&kek, "dbx", &gdb, A, 2026, 2, hash, 76, blob);
	blob[bl - 1] ^= 1;
	assert_int_equal(guest_set(nv, "dbx", &gdb, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	/* signed for db, presented as dbx */
	bl = auth_blob(&kek, "db", &gdb, A, 2026, 3, hash, 76, blob);
	assert_int_equal(guest_set(nv, "dbx", &gdb, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	/* without the time-based attribute, or not in the authenticated form */
	assert_int_equal(guest_set(nv, "dbx", &gdb, 0, 7, hash, 76), EFI_SECURITY_VIOLATION);
	assert_int_equal(guest_set(nv, "dbx", &gdb, 0, A, hash, 30), EFI_SECURITY_VIOLATION);
	/* kept in the file */
	nvram_close(nv);
	assert_int_equal(nvram_open(path, false, true, &nv, err, sizeof(err)), 0);
	assert_int_equal(var_size(nv, "db", &gdb), db0 + 76);
	assert_int_equal(var_size(nv, "KEK", &gglobal), n);
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	assert_int_equal(s.template_id, SECBOOT_TEMPLATE_CUSTOM);
	/* the PK holder deletes the PK: Setup Mode; then a new PK must be self-signed */
	bl = auth_blob(&pk, "PK", &gglobal, A, 2026, 5, NULL, 0, blob);
	assert_int_equal(guest_set(nv, "PK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SUCCESS);
	assert_int_equal(var_size(nv, "PK", &gglobal), 0);
	assert_int_equal(get_u8(nv, "SetupMode", &gglobal, NULL), 1);
	n = cert_esl(&other, esl);
	bl = auth_blob(&pk, "PK", &gglobal, A, 2026, 6, esl, n, blob);
	assert_int_equal(guest_set(nv, "PK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SECURITY_VIOLATION);
	bl = auth_blob(&other, "PK", &gglobal, A, 2026, 6, esl, n, blob);
	assert_int_equal(guest_set(nv, "PK", &gglobal, 0, A, blob, (uint32_t)bl), EFI_SUCCESS);
	assert_int_equal(get_u8(nv, "SetupMode", &gglobal, NULL), 0);
	nvram_close(nv);
	key_free(&pk);
	key_free(&kek);
	key_free(&other);
	char lock[300];
	snprintf(lock, sizeof(lock), "%s.lock", path);
	unlink(lock);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_esl_walk),
		cmocka_unit_test(test_esl_malformed),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_settings_and_boot_variables),
		cmocka_unit_test(test_guest_cannot_touch_keys),
		cmocka_unit_test(test_file_keeps_keys),
		cmocka_unit_test(test_authenticated_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
