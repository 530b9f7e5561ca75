/* UEFI Secure Boot's policy in the VMM: Hyper-V's templates (which authorities a VM trusts), the
 * Secure Boot setting kept in the NVRAM file, the variables the firmware and the OS read (SecureBoot,
 * SetupMode, SignatureSupport, AuditMode, DeployedMode), and the EFI signature-list parser
 * (include/gen2vm/proto/efi_sec.h).
 *
 * The keys live in the variable store (src/platform/nvram.c) as PK, KEK (EFI_GLOBAL_VARIABLE_GUID),
 * db and dbx (EFI_IMAGE_SECURITY_DATABASE_GUID) with EFI_SECURE_DB_ATTRIBUTES; only the host
 * (gen2vm firmware set/reset) writes them, the guest reads them. The setting is two gen2vm vendor
 * variables the guest can neither read at runtime nor write: "SecureBootEnable" (UINT8 0/1) and
 * "SecureBootTemplate" (UINT8, enum secboot_template). A store without them is off, MicrosoftWindows
 * (Hyper-V's default template), keys not yet enrolled.
 *
 * Locking: like nvram.h's host helpers, every function needs the store's lock when a VM shares it.
 */
#ifndef GEN2VM_PLATFORM_SECBOOT_H
#define GEN2VM_PLATFORM_SECBOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi_sec.h"

struct nvram;

/* Stored values: never renumber. */
enum secboot_template {
	SECBOOT_TEMPLATE_NONE = 0,            /* no keys: Setup Mode */
	SECBOOT_TEMPLATE_WINDOWS = 1,         /* MicrosoftWindows */
	SECBOOT_TEMPLATE_UEFI_CA = 2,         /* MicrosoftUEFICertificateAuthority */
	SECBOOT_TEMPLATE_OSS_SHIELDED = 3,    /* OpenSourceShieldedVM */
	SECBOOT_TEMPLATE_CUSTOM = 4,          /* keys the user set from files (secboot_set_db) */
	SECBOOT_TEMPLATE_COUNT
};

/* Hyper-V's name of a template ("MicrosoftWindows"...; "none"). */
const char *secboot_template_name(enum secboot_template t);
/* Hyper-V's names, case-insensitive (as PowerShell takes them); not "custom". 0, or -EINVAL. */
int secboot_template_parse(const char *name, enum secboot_template *out);

/* The signature-list walk: calls fn for each signature of buf (a PK/KEK/db/dbx value) with its list's
 * type, its owner and its data. Returns -EINVAL when buf is not a well-formed sequence of lists
 * (sizes that disagree, a truncated list, a zero signature size, an entry of a fixed-size type whose
 * size is not that, a list with no signature), fn's first nonzero return, or 0. fn NULL: only the check. The walk
 * never reads outside [buf, buf + len). */
typedef int (*secboot_sig_fn)(void *opaque, const EFI_GUID *type, const EFI_GUID *owner, const uint8_t *data,
			      size_t len);
int secboot_esl_walk(const void *buf, size_t len, secboot_sig_fn fn, void *opaque);

/* The data size every signature of this type has (EFI_CERT_SHA256: 32; EFI_CERT_X509_SHA256/384/512:
 * the hash and a 16-byte TimeOfRevocation), or 0 for a type of variable size (X.509) or unknown. */
size_t secboot_sig_fixed_size(const EFI_GUID *type);

/* The template's databases, concatenated signature lists (malloc'd, *len; NULL with len 0 when the
 * template leaves it empty). which: "PK", "KEK", "db" or "dbx". -ENOMEM, -EINVAL or 0. */
int secboot_template_db(enum secboot_template t, const char *which, uint8_t **out, size_t *len);

struct secboot_settings {
	bool enabled;
	enum secboot_template template_id;
	bool pk_enrolled; /* PK holds a key (User Mode); false: Setup Mode */
};
void secboot_settings_get(struct nvram *nv, struct secboot_settings *s);

/* Stores the setting. With enroll, PK/KEK/db/dbx are replaced by the template's (removed for none).
 * Returns 0 or -EIO (the store reported the failed write). */
int secboot_settings_set(struct nvram *nv, bool enabled, enum secboot_template t, bool enroll);

/* Replaces one database (which: "PK", "KEK", "db" or "dbx") with esl, signature lists the user gave
 * (checked: -EINVAL with why when malformed or, for PK, not exactly one X.509 certificate); the
 * template becomes "custom". An empty esl removes the database (an empty PK: Setup Mode).
 * 0, -EINVAL, -EIO. */
int secboot_set_db(struct nvram *nv, const char *which, const uint8_t *esl, size_t len, char *why, size_t whylen);

/* At each VM start (after nvram_vm_reset): the volatile SecureBoot, SetupMode, AuditMode,
 * DeployedMode and SignatureSupport variables from the setting and the enrolled PK. Returns whether
 * Secure Boot is in force for this boot (on, and a PK enrolled). */
bool secboot_vm_start(struct nvram *nv);

/* The image security check LoadImage asks for (and gen2vm firmware check-image): img against the
 * store's db and dbx (authenticode.h). 0 allowed, -EACCES refused, -EINVAL not a PE image, -ENOMEM;
 * why names the rule that decided; sha256 (NULL or 32 bytes) gets the image's Authenticode SHA-256. */
int secboot_verify_image(struct nvram *nv, const uint8_t *img, size_t len, uint8_t *sha256, char *why,
			 size_t whylen);

/* The host side of FW_OP_IMAGE_VERIFY (include/gen2vm/proto/fw_sec.h), a firmware_op_fn with this
 * as its opaque. active: Secure Boot is in force for this boot (secboot_vm_start). The caller
 * (firmware.c) refuses the op after ExitBootServices. */
struct guest_mem;
struct secboot_host {
	struct nvram *nv;
	const struct guest_mem *mem;
	bool active;
};
uint64_t secboot_host_call(void *opaque, uint32_t op, void *req, uint32_t req_size);

/* A guest's SetVariable of a protected variable (secboot_var_protected): PK, KEK, db and dbx take a
 * time-based authenticated write (UEFI 2.10 8.2.2: EFI_VARIABLE_AUTHENTICATION_2, PKCS#7 over
 * name || GUID || attributes || timestamp || data; the signer in PK for PK and KEK, in KEK or PK for db
 * and dbx; Setup Mode (no PK): a new PK self-signed, the others unchecked; timestamps newer than the
 * last write's unless APPEND_WRITE). Everything else protected: EFI_SECURITY_VIOLATION. Returns an
 * EFI_STATUS; a refusal is logged (rate-limited) with the reason. */
uint64_t secboot_auth_write(struct nvram *nv, const uint16_t *name, size_t name_size, const EFI_GUID *guid,
			    uint32_t attributes, const void *data, size_t size);

/* Whether a guest write to this variable touches Secure Boot's keys or setting (PK, KEK, db, dbx,
 * dbt, dbr, and the two setting variables): such writes are the host's only. */
bool secboot_var_protected(const uint16_t *name, size_t name_size, const EFI_GUID *guid);

#endif
