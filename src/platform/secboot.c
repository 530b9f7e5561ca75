#include "platform/secboot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/nvram.h"
#include "platform/sb_keys.h"

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
};

const char *secboot_template_name(enum secboot_template t)
{
	return (unsigned)t < SECBOOT_TEMPLATE_COUNT ? template_names[t] : "unknown";
}

int secboot_template_parse(const char *name, enum secboot_template *out)
{
	for (unsigned i = 0; i < SECBOOT_TEMPLATE_COUNT; i++)
		if (!strcasecmp(name, template_names[i])) {
			*out = (enum secboot_template)i;
			return 0;
		}
	return -EINVAL;
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
		if (efi_guid_eq(&type, &sha256_guid) &&
		    l.SignatureSize != sizeof(EFI_SIGNATURE_DATA) + EFI_SHA256_SIZE)
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
	if ((unsigned)t >= SECBOOT_TEMPLATE_COUNT)
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

int secboot_settings_set(struct nvram *nv, bool enabled, enum secboot_template t, bool enroll)
{
	uint8_t e = enabled, tv = (uint8_t)t;
	if ((unsigned)t >= SECBOOT_TEMPLATE_COUNT)
		return -EINVAL;
	if (nvram_set_ascii(nv, "SecureBootEnable", &vendor_guid, SETTING_ATTR, &e, 1) ||
	    nvram_set_ascii(nv, "SecureBootTemplate", &vendor_guid, SETTING_ATTR, &tv, 1))
		return -EIO;
	if (!enroll)
		return 0;
	for (unsigned i = 0; i < sizeof(db_names) / sizeof(db_names[0]); i++) {
		const char *n = db_names[i];
		const EFI_GUID *g = n[0] == 'd' ? &image_db_guid : &global_guid;
		uint8_t *b;
		size_t len;
		int r = secboot_template_db(t, n, &b, &len);
		if (r)
			return r;
		/* Replacing: remove the old value first (its attributes may differ: a foreign file). */
		size_t osz;
		void *old = nvram_get_ascii(nv, n, g, &osz, NULL);
		uint64_t s = old ? nvram_set_ascii(nv, n, g, 0, NULL, 0) : EFI_SUCCESS;
		free(old);
		if (s == EFI_SUCCESS && len)
			s = nvram_set_ascii(nv, n, g, EFI_SECURE_DB_ATTRIBUTES, b, len);
		free(b);
		if (s != EFI_SUCCESS)
			return -EIO;
	}
	return 0;
}

bool secboot_vm_start(struct nvram *nv)
{
	struct secboot_settings s;
	secboot_settings_get(nv, &s);
	/* Until LoadImage verifies images the OS must not be told that Secure Boot is in force. */
	uint8_t on = 0 && s.enabled && s.pk_enrolled, setup = !s.pk_enrolled, zero = 0, deployed = 0;
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
		return nvram_name_eq_ascii(name, name_size, "SecureBootEnable") || nvram_name_eq_ascii(name, name_size, "SecureBootTemplate");
	return false;
}
