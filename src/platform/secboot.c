#include "platform/secboot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_sec.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/authenticode.h"
#include "util/clock.h"
#include "vmm/vm.h"
#include "platform/nvram.h"
#include "platform/sb_keys.h"
#include "util/log.h"
#include "vmm/memory.h"

static const EFI_GUID global_guid = EFI_GLOBAL_VARIABLE_GUID;
static const EFI_GUID image_db_guid = EFI_IMAGE_SECURITY_DATABASE_GUID;
static const EFI_GUID vendor_guid = GEN2VM_VENDOR_GUID;
static const EFI_GUID sha256_guid = EFI_CERT_SHA256_GUID;
static const EFI_GUID x509_guid = EFI_CERT_X509_GUID;

#define SETTING_ATTR (EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS)
#define STATE_ATTR (EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS)

static const char *const template_names[SECBOOT_TEMPLATE_COUNT] = {
	[SECBOOT_TEMPLATE_NONE] = "none",
	[SECBOOT_TEMPLATE_WINDOWS] = "MicrosoftWindows",
	[SECBOOT_TEMPLATE_UEFI_CA] = "MicrosoftUEFICertificateAuthority",
	[SECBOOT_TEMPLATE_OSS_SHIELDED] = "OpenSourceShieldedVM",
	[SECBOOT_TEMPLATE_CUSTOM] = "custom",
};

const char *secboot_template_name(enum secboot_template t)
{
	return (unsigned)t < SECBOOT_TEMPLATE_COUNT ? template_names[t] : "unknown";
}

int secboot_template_parse(const char *name, enum secboot_template *out)
{
	for (unsigned i = 0; i < SECBOOT_TEMPLATE_COUNT; i++)
		if (i != SECBOOT_TEMPLATE_CUSTOM && !strcasecmp(name, template_names[i])) {
			*out = (enum secboot_template)i;
			return 0;
		}
	return -EINVAL;
}

size_t secboot_sig_fixed_size(const EFI_GUID *type)
{
	static const EFI_GUID x509_sha256 = EFI_CERT_X509_SHA256_GUID, x509_sha384 = EFI_CERT_X509_SHA384_GUID,
			      x509_sha512 = EFI_CERT_X509_SHA512_GUID;
	if (efi_guid_eq(type, &sha256_guid))
		return EFI_SHA256_SIZE;
	if (efi_guid_eq(type, &x509_sha256))
		return 32 + sizeof(EFI_TIME);
	if (efi_guid_eq(type, &x509_sha384))
		return 48 + sizeof(EFI_TIME);
	if (efi_guid_eq(type, &x509_sha512))
		return 64 + sizeof(EFI_TIME);
	return 0;
}

int secboot_esl_walk(const void *buf, size_t len, secboot_sig_fn fn, void *opaque)
{
	const uint8_t *p = buf;
	size_t off = 0;
	while (off < len) {
		if (len - off < sizeof(EFI_SIGNATURE_LIST))
			return -EINVAL;
		EFI_SIGNATURE_LIST l;
		memcpy(&l, p + off, sizeof(l));
		size_t room = len - off;
		if (l.SignatureListSize > room || l.SignatureListSize < sizeof(l) ||
		    l.SignatureHeaderSize > l.SignatureListSize - sizeof(l) || l.SignatureSize <= sizeof(EFI_SIGNATURE_DATA))
			return -EINVAL;
		EFI_GUID type = l.SignatureType;
		size_t body = l.SignatureListSize - sizeof(l) - l.SignatureHeaderSize;
		if (!body || body % l.SignatureSize)
			return -EINVAL;
		size_t fixed = secboot_sig_fixed_size(&type);
		if (fixed && l.SignatureSize != sizeof(EFI_SIGNATURE_DATA) + fixed)
			return -EINVAL;
		const uint8_t *s = p + off + sizeof(l) + l.SignatureHeaderSize;
		for (size_t i = 0; fn && i < body / l.SignatureSize; i++, s += l.SignatureSize) {
			EFI_GUID owner;
			memcpy(&owner, s, sizeof(owner));
			int r = fn(opaque, &type, &owner, s + sizeof(owner), l.SignatureSize - sizeof(owner));
			if (r)
				return r;
		}
		off += l.SignatureListSize;
	}
	return 0;
}

/* ---- templates ---- */

struct part {
	const uint8_t *data;
	const size_t *size;
};

/* Which lists make each database of each template. Hyper-V's MicrosoftWindows trusts the Windows
 * PCA only; MicrosoftUEFICertificateAuthority adds the third-party UEFI CA (shim, Linux distributions);
 * OpenSourceShieldedVM is built from the UEFI CA alone (README: Hyper-V's exact set is not in what
 * Debian ships). All share Microsoft's KEK, the PK and the dbx Debian's ovmf enrols. */
static int template_parts(enum secboot_template t, const char *which, struct part out[2])
{
	if ((unsigned)t >= SECBOOT_TEMPLATE_COUNT || t == SECBOOT_TEMPLATE_CUSTOM)
		return -EINVAL;
	if (t == SECBOOT_TEMPLATE_NONE)
		return 0;
	if (!strcmp(which, "PK")) {
		out[0] = (struct part){ sb_key_pk, &sb_key_pk_size };
		return 1;
	}
	if (!strcmp(which, "KEK")) {
		out[0] = (struct part){ sb_key_kek_microsoft, &sb_key_kek_microsoft_size };
		return 1;
	}
	if (!strcmp(which, "dbx")) {
		out[0] = (struct part){ sb_key_dbx, &sb_key_dbx_size };
		return 1;
	}
	if (strcmp(which, "db"))
		return -EINVAL;
	int n = 0;
	if (t != SECBOOT_TEMPLATE_OSS_SHIELDED)
		out[n++] = (struct part){ sb_key_db_windows_pca, &sb_key_db_windows_pca_size };
	if (t != SECBOOT_TEMPLATE_WINDOWS)
		out[n++] = (struct part){ sb_key_db_uefi_ca, &sb_key_db_uefi_ca_size };
	return n;
}

int secboot_template_db(enum secboot_template t, const char *which, uint8_t **out, size_t *len)
{
	struct part parts[2];
	*out = NULL;
	*len = 0;
	int n = template_parts(t, which, parts);
	if (n <= 0)
		return n;
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += *parts[i].size;
	uint8_t *b = malloc(total);
	if (!b)
		return -ENOMEM;
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		memcpy(b + off, parts[i].data, *parts[i].size);
		off += *parts[i].size;
	}
	*out = b;
	*len = total;
	return 0;
}

/* ---- the setting ---- */

static int get_u8(struct nvram *nv, const char *name, const EFI_GUID *g, int dflt)
{
	size_t sz = 0;
	uint8_t *d = nvram_get_ascii(nv, name, g, &sz, NULL);
	int v = d && sz == 1 ? d[0] : dflt;
	free(d);
	return v;
}

static bool pk_enrolled(struct nvram *nv)
{
	size_t sz = 0;
	void *d = nvram_get_ascii(nv, "PK", &global_guid, &sz, NULL);
	free(d);
	return d && sz > 0;
}

void secboot_settings_get(struct nvram *nv, struct secboot_settings *s)
{
	s->enabled = get_u8(nv, "SecureBootEnable", &vendor_guid, 0) == 1;
	int t = get_u8(nv, "SecureBootTemplate", &vendor_guid, SECBOOT_TEMPLATE_WINDOWS);
	s->template_id = t < SECBOOT_TEMPLATE_COUNT ? (enum secboot_template)t : SECBOOT_TEMPLATE_WINDOWS;
	s->pk_enrolled = pk_enrolled(nv);
}

static const char *const db_names[] = { "dbx", "db", "KEK", "PK" }; /* PK last: Setup Mode until then */

/* Replaces (len 0: removes) one database; the old value goes first, whatever its attributes. */
static int db_replace(struct nvram *nv, const char *n, const uint8_t *b, size_t len)
{
	const EFI_GUID *g = n[0] == 'd' ? &image_db_guid : &global_guid;
	size_t osz;
	void *old = nvram_get_ascii(nv, n, g, &osz, NULL);
	uint64_t s = old ? nvram_set_ascii(nv, n, g, 0, NULL, 0) : EFI_SUCCESS;
	free(old);
	if (s == EFI_SUCCESS && len)
		s = nvram_set_ascii(nv, n, g, EFI_SECURE_DB_ATTRIBUTES, b, len);
	return s == EFI_SUCCESS ? 0 : -EIO;
}

/* The timestamp of a database's last authenticated write (UEFI 2.10 8.2.2: each write must be newer),
 * kept in a gen2vm variable beside it: "SbTimePK"... (16 bytes of EFI_TIME; absent: never written). */
static void time_name(const char *which, char out[16])
{
	snprintf(out, 16, "SbTime%s", which);
}

/* The host's writes (templates, files) start a database's history afresh. */
static int db_set_host(struct nvram *nv, const char *n, const uint8_t *b, size_t len)
{
	char tn[16];
	time_name(n, tn);
	size_t osz;
	void *old = nvram_get_ascii(nv, tn, &vendor_guid, &osz, NULL);
	free(old);
	if (old && nvram_set_ascii(nv, tn, &vendor_guid, 0, NULL, 0))
		return -EIO;
	return db_replace(nv, n, b, len);
}

int secboot_settings_set(struct nvram *nv, bool enabled, enum secboot_template t, bool enroll)
{
	uint8_t e = enabled, tv = (uint8_t)t;
	if ((unsigned)t >= SECBOOT_TEMPLATE_COUNT || (enroll && t == SECBOOT_TEMPLATE_CUSTOM))
		return -EINVAL;
	if (nvram_set_ascii(nv, "SecureBootEnable", &vendor_guid, SETTING_ATTR, &e, 1) ||
	    nvram_set_ascii(nv, "SecureBootTemplate", &vendor_guid, SETTING_ATTR, &tv, 1))
		return -EIO;
	if (!enroll)
		return 0;
	for (unsigned i = 0; i < sizeof(db_names) / sizeof(db_names[0]); i++) {
		uint8_t *b;
		size_t len;
		int r = secboot_template_db(t, db_names[i], &b, &len);
		if (r)
			return r;
		r = db_set_host(nv, db_names[i], b, len);
		free(b);
		if (r)
			return r;
	}
	return 0;
}

static int count_x509(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *data, size_t len)
{
	static const EFI_GUID x509 = EFI_CERT_X509_GUID;
	unsigned *n = opaque;
	*n += efi_guid_eq(type, &x509) ? 1 : 100; /* anything but a certificate disqualifies a PK */
	return 0;
}

int secboot_set_db(struct nvram *nv, const char *which, const uint8_t *esl, size_t len, char *why, size_t whylen)
{
	unsigned n = 0;
	if (strcmp(which, "PK") && strcmp(which, "KEK") && strcmp(which, "db") && strcmp(which, "dbx")) {
		snprintf(why, whylen, "'%s' is not a Secure Boot database (PK, KEK, db or dbx)", which);
		return -EINVAL;
	}
	if (len > FW_VAR_DATA_MAX || secboot_esl_walk(esl, len, count_x509, &n)) {
		snprintf(why, whylen, "not EFI signature lists%s (efitools' cert-to-efi-sig-list and "
			 "hash-to-efi-sig-list make them)", len > FW_VAR_DATA_MAX ? " (too large)" : "");
		return -EINVAL;
	}
	if (!strcmp(which, "PK") && len && n != 1) {
		snprintf(why, whylen, "a PK holds exactly one X.509 certificate");
		return -EINVAL;
	}
	uint8_t tv = SECBOOT_TEMPLATE_CUSTOM;
	if (db_set_host(nv, which, esl, len) ||
	    nvram_set_ascii(nv, "SecureBootTemplate", &vendor_guid, SETTING_ATTR, &tv, 1)) {
		snprintf(why, whylen, "cannot write %s", which);
		return -EIO;
	}
	return 0;
}

bool secboot_vm_start(struct nvram *nv)
{
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	uint8_t on = s.enabled && s.pk_enrolled, setup = !s.pk_enrolled, zero = 0, deployed = 0;
	/* The signature types LoadImage's verification understands (UEFI 2.10 3.3, SignatureSupport). */
	EFI_GUID support[2] = { sha256_guid, x509_guid };
	/* Failures here leave a variable absent, which the OS reads as Secure Boot off: the safe side
	 * for what it reports, and the VMM's own decision uses the return value. */
	nvram_set_ascii(nv, "SecureBoot", &global_guid, STATE_ATTR, &on, 1);
	nvram_set_ascii(nv, "SetupMode", &global_guid, STATE_ATTR, &setup, 1);
	nvram_set_ascii(nv, "AuditMode", &global_guid, STATE_ATTR, &zero, 1);
	nvram_set_ascii(nv, "DeployedMode", &global_guid, STATE_ATTR, &deployed, 1);
	nvram_set_ascii(nv, "SignatureSupport", &global_guid, STATE_ATTR, support, sizeof(support));
	return on;
}

bool secboot_var_protected(const uint16_t *name, size_t name_size, const EFI_GUID *guid)
{
	if (efi_guid_eq(guid, &global_guid))
		return nvram_name_eq_ascii(name, name_size, "PK") || nvram_name_eq_ascii(name, name_size, "KEK");
	if (efi_guid_eq(guid, &image_db_guid))
		return nvram_name_eq_ascii(name, name_size, "db") || nvram_name_eq_ascii(name, name_size, "dbx") ||
		       nvram_name_eq_ascii(name, name_size, "dbt") || nvram_name_eq_ascii(name, name_size, "dbr");
	if (efi_guid_eq(guid, &vendor_guid))
		return nvram_name_eq_ascii(name, name_size, "SecureBootEnable") ||
		       nvram_name_eq_ascii(name, name_size, "SecureBootTemplate") ||
		       nvram_name_eq_ascii(name, name_size, "SbTimePK") || nvram_name_eq_ascii(name, name_size, "SbTimeKEK") ||
		       nvram_name_eq_ascii(name, name_size, "SbTimedb") || nvram_name_eq_ascii(name, name_size, "SbTimedbx");
	return false;
}

int secboot_verify_image(struct nvram *nv, const uint8_t *img, size_t len, uint8_t *sha256, char *why,
			 size_t whylen)
{
	size_t db_len = 0, dbx_len = 0;
	uint8_t *db = nvram_get_ascii(nv, "db", &image_db_guid, &db_len, NULL);
	uint8_t *dbx = nvram_get_ascii(nv, "dbx", &image_db_guid, &dbx_len, NULL);
	int r = authenticode_verify(img, len, db, db_len, dbx, dbx_len, sha256, why, whylen);
	free(db);
	free(dbx);
	return r;
}

uint64_t secboot_host_call(void *opaque, uint32_t op, void *req, uint32_t req_size)
{
	struct secboot_host *h = opaque;
	struct fw_image_verify_req r;
	if (op != FW_OP_IMAGE_VERIFY) {
		log_guest("firmware: unknown Secure Boot request %u", op);
		return EFI_UNSUPPORTED;
	}
	if (req_size != sizeof(r)) {
		log_guest("firmware: image verification request of %u bytes", req_size);
		return EFI_INVALID_PARAMETER;
	}
	memcpy(&r, req, sizeof(r)); /* one snapshot: the guest may rewrite the request */
	struct fw_image_verify_req *out = req;
	out->flags = 0;
	out->reason_len = 0;
	if (!h->active)
		return EFI_SUCCESS;
	char why[FW_VERIFY_REASON_MAX + 1];
	uint64_t st, t0 = 0, t1 = 0;
	const void *img = r.image_size ? guest_mem_ptr(h->mem, r.image_gpa, r.image_size) : NULL;
	if (!img) {
		log_guest("firmware: image to verify at 0x%llx (%llu bytes) is not in RAM", (unsigned long long)r.image_gpa,
			  (unsigned long long)r.image_size);
		return EFI_INVALID_PARAMETER;
	}
	if (r.image_size > AUTHENTICODE_IMAGE_MAX) {
		snprintf(why, sizeof(why), "larger than %u MiB", AUTHENTICODE_IMAGE_MAX >> 20);
		st = EFI_SECURITY_VIOLATION;
	} else {
		/* Our own copy: nothing the guest does meanwhile changes what was hashed. */
		t0 = clock_mono_ns();
		uint8_t *copy = malloc(r.image_size);
		if (!copy)
			return EFI_OUT_OF_RESOURCES;
		memcpy(copy, img, r.image_size);
		nvram_lock(h->nv);
		int v = secboot_verify_image(h->nv, copy, r.image_size, NULL, why, sizeof(why));
		nvram_unlock(h->nv);
		free(copy);
		if (v == -ENOMEM)
			return EFI_OUT_OF_RESOURCES;
		st = v ? EFI_SECURITY_VIOLATION : EFI_SUCCESS;
		t1 = clock_mono_ns();
	}
	/* The verdicts are few per boot, but a guest could ask in a loop: rate-limited. */
	/* The time it took is what Secure Boot adds to the image's load (bench/firmware reads it). */
	log_guest("firmware: Secure Boot %s an image of %llu bytes: %s (%.2f ms)", st ? "refused" : "admitted",
		  (unsigned long long)r.image_size, why, (double)(t1 - t0) / 1e6);
	size_t n = strlen(why);
	memcpy(out->reason, why, n);
	out->reason_len = (uint32_t)n;
	out->flags = FW_VERIFY_F_CHECKED;
	return st;
}

/* ---- authenticated writes (UEFI 2.10 8.2.2, time-based) ---- */

#define WIN_CERT_TYPE_EFI_GUID 0x0EF1u

/* EFI_TIME as a number that orders like the time; the fields the spec wants zero must be. */
static bool auth_time(const uint8_t t[16], uint64_t *key, uint32_t *ns)
{
	if (t[7] || t[12] || t[13] || t[14] || t[15])
		return false; /* Pad1, TimeZone, Daylight, Pad2 */
	*key = (uint64_t)efi_le16(t) << 40 | (uint64_t)t[2] << 32 | (uint64_t)t[3] << 24 | (uint64_t)t[4] << 16 |
	       (uint64_t)t[5] << 8 | t[6];
	*ns = efi_le32(t + 8);
	return *ns == 0;
}

static uint64_t refuse(const char *which, const char *why)
{
	log_guest("firmware: a write of %s was refused: %s", which, why);
	return EFI_SECURITY_VIOLATION;
}

uint64_t secboot_auth_write(struct nvram *nv, const uint16_t *name, size_t name_size, const EFI_GUID *guid,
			    uint32_t attributes, const void *data, size_t size)
{
	static const EFI_GUID pkcs7_guid = EFI_CERT_TYPE_PKCS7_GUID;
	const char *which = NULL;
	for (unsigned i = 0; i < 4; i++)
		if (nvram_name_eq_ascii(name, name_size, db_names[i]) &&
		    efi_guid_eq(guid, db_names[i][0] == 'd' ? &image_db_guid : &global_guid))
			which = db_names[i];
	if (!which || (attributes & ~EFI_VARIABLE_APPEND_WRITE) != EFI_SECURE_DB_ATTRIBUTES)
		return EFI_SECURITY_VIOLATION; /* the setting, dbt/dbr, or a write without the time-based form */
	bool append = attributes & EFI_VARIABLE_APPEND_WRITE;
	const uint8_t *d = data;
	/* EFI_VARIABLE_AUTHENTICATION_2: EFI_TIME, then WIN_CERTIFICATE_UEFI_GUID {dwLength, wRevision,
	 * wCertificateType, CertType, CertData}, then the new value. */
	if (size < 16 + 24)
		return refuse(which, "no EFI_VARIABLE_AUTHENTICATION_2 header");
	uint32_t cert_len = efi_le32(d + 16);
	EFI_GUID cert_type;
	memcpy(&cert_type, d + 24, 16);
	if (efi_le16(d + 20) != 0x0200 || efi_le16(d + 22) != WIN_CERT_TYPE_EFI_GUID ||
	    !efi_guid_eq(&cert_type, &pkcs7_guid) || cert_len < 24 || cert_len > size - 16)
		return refuse(which, "not a PKCS#7 WIN_CERTIFICATE_UEFI_GUID");
	uint64_t tkey;
	uint32_t tns;
	if (!auth_time(d, &tkey, &tns))
		return refuse(which, "its timestamp has non-zero Pad, Nanosecond, TimeZone or Daylight");
	const uint8_t *cert = d + 16 + 24, *payload = d + 16 + cert_len;
	size_t cert_size = cert_len - 24, plen = size - 16 - cert_len;
	char why[300];
	unsigned nx509 = 0;
	if (secboot_esl_walk(payload, plen, count_x509, &nx509))
		return refuse(which, "its data are not EFI signature lists");
	if (!strcmp(which, "PK") && (append || (plen && nx509 != 1)))
		return refuse(which, "a PK is one X.509 certificate");
	char tn[16];
	time_name(which, tn);
	size_t osz = 0;
	uint8_t *old_time = nvram_get_ascii(nv, tn, &vendor_guid, &osz, NULL);
	uint64_t okey = 0;
	uint32_t ons = 0;
	if (old_time && osz == 16)
		auth_time(old_time, &okey, &ons);
	free(old_time);
	if (!append && okey && tkey <= okey)
		return refuse(which, "its timestamp is not newer than the last write's");
	/* What was signed: VariableName (without its NUL) || VendorGuid || Attributes || TimeStamp || Data. */
	size_t nl = name_size - 2, clen = nl + 16 + 4 + 16 + plen;
	uint8_t *content = malloc(clen);
	if (!content)
		return EFI_OUT_OF_RESOURCES;
	memcpy(content, name, nl);
	memcpy(content + nl, guid, 16);
	efi_put32(content + nl + 16, attributes);
	memcpy(content + nl + 20, d, 16);
	memcpy(content + nl + 36, payload, plen);
	/* Who may write: in User Mode the PK holder writes PK and KEK, a KEK (or PK) holder db and dbx. In
	 * Setup Mode (no PK) only a new PK must be self-signed. */
	size_t pk_len = 0, kek_len = 0;
	uint8_t *pk = nvram_get_ascii(nv, "PK", &global_guid, &pk_len, NULL);
	uint8_t *kek = which[0] == 'd' ? nvram_get_ascii(nv, "KEK", &global_guid, &kek_len, NULL) : NULL;
	uint8_t *trust = NULL;
	size_t tlen = 0;
	bool setup = !pk || !pk_len;
	int r = 0;
	if (setup && !strcmp(which, "PK")) {
		trust = plen ? malloc(plen) : NULL;
		if (trust)
			memcpy(trust, payload, tlen = plen);
	} else if (!setup) {
		tlen = pk_len + kek_len;
		trust = malloc(tlen);
		if (trust) {
			memcpy(trust, pk, pk_len);
			if (kek_len)
				memcpy(trust + pk_len, kek, kek_len);
		}
	}
	if (trust || (setup && plen)) {
		r = trust ? pkcs7_verify_detached(cert, cert_size, content, clen, trust, tlen, why, sizeof(why)) : -ENOMEM;
		if (r == -ENOMEM)
			snprintf(why, sizeof(why), "out of memory");
	}
	free(content);
	free(trust);
	free(pk);
	free(kek);
	if (r)
		return refuse(which, why);
	/* The new value: appended lists after the old ones (duplicates are kept), or a replacement; an
	 * empty replacement deletes (an empty PK: Setup Mode). */
	size_t old_len = 0;
	uint8_t *old = append ? nvram_get_ascii(nv, which, which[0] == 'd' ? &image_db_guid : &global_guid, &old_len, NULL)
			      : NULL;
	uint8_t *nv_data = malloc(old_len + plen + 1);
	if (!nv_data) {
		free(old);
		return EFI_OUT_OF_RESOURCES;
	}
	if (old_len)
		memcpy(nv_data, old, old_len);
	if (plen)
		memcpy(nv_data + old_len, payload, plen);
	free(old);
	uint8_t tv = SECBOOT_TEMPLATE_CUSTOM;
	bool newer = tkey > okey;
	r = (append && !plen) ? 0 : db_replace(nv, which, nv_data, old_len + plen);
	free(nv_data);
	if (!r && newer)
		r = nvram_set_ascii(nv, tn, &vendor_guid, SETTING_ATTR, d, 16) ? -EIO : 0;
	if (!r)
		r = nvram_set_ascii(nv, "SecureBootTemplate", &vendor_guid, SETTING_ATTR, &tv, 1) ? -EIO : 0;
	if (!r && !strcmp(which, "PK")) {
		uint8_t setup_now = !plen;
		r = nvram_set_ascii(nv, "SetupMode", &global_guid, STATE_ATTR, &setup_now, 1) ? -EIO : 0;
	}
	log_guest("firmware: the guest wrote %s (%s, %zu bytes of signature lists)", which, append ? "appended" : "replaced",
		  plen);
	return r ? EFI_DEVICE_ERROR : EFI_SUCCESS;
}
