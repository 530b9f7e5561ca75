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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_esl_walk),
		cmocka_unit_test(test_esl_malformed),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_settings_and_boot_variables),
		cmocka_unit_test(test_guest_cannot_touch_keys),
		cmocka_unit_test(test_file_keeps_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
