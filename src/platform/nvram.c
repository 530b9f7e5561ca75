#include "platform/nvram.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/secboot.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

#define NVRAM_MAGIC "G2VMNVRM"
#define NVRAM_VERSION 1u
#define NVRAM_HDR 48u
#define NVRAM_REC 28u /* attributes, name_size, data_size, guid */

struct nvram_var {
	EFI_GUID guid;
	uint32_t attr;
	CHAR16 *name;
	size_t name_size;
	uint8_t *data;
	size_t data_size;
};

struct nvram {
	char *path;     /* NULL: in memory */
	int lock_fd;    /* -1: no lock held */
	uint8_t uuid[16];
	struct nvram_var *v;
	size_t n, cap;
	bool runtime;   /* latched: ExitBootServices seen in this VM run */
	pthread_mutex_t lock;
};

static const EFI_GUID global_guid = EFI_GLOBAL_VARIABLE_GUID;

/* Global variables the OS may read but only the firmware sets (UEFI 2.10 table 3-1, "read only"). */
static const char *const readonly_names[] = {
	"BootCurrent", "BootOptionSupport", "LangCodes", "PlatformLangCodes", "OsIndicationsSupported",
	"HwErrRecSupport", "SecureBoot", "SetupMode", "AuditMode", "DeployedMode", "SignatureSupport",
	"VendorKeys", "PK", NULL,
};

bool nvram_name_eq_ascii(const CHAR16 *n, size_t size, const char *a)
{
	size_t len = strlen(a);
	if (size != (len + 1) * 2)
		return false;
	for (size_t i = 0; i < len; i++)
		if (n[i] != (unsigned char)a[i])
			return false;
	return true;
}

static bool var_readonly(const CHAR16 *name, size_t size, const EFI_GUID *g)
{
	if (!efi_guid_eq(g, &global_guid))
		return false;
	for (unsigned i = 0; readonly_names[i]; i++)
		if (nvram_name_eq_ascii(name, size, readonly_names[i]))
			return true;
	return false;
}

/* A name is at least one character, NUL-terminated exactly at its end, without an earlier NUL. */
static bool name_valid(const CHAR16 *name, size_t size)
{
	if (size < 4 || size > FW_VAR_NAME_MAX || (size & 1))
		return false;
	size_t len = size / 2 - 1;
	return name[len] == 0 && efi_strnlen16(name, len) == len;
}

static struct nvram_var *var_find(struct nvram *nv, const CHAR16 *name, size_t size, const EFI_GUID *g)
{
	for (size_t i = 0; i < nv->n; i++) {
		struct nvram_var *v = &nv->v[i];
		if (v->name_size == size && efi_guid_eq(&v->guid, g) && !memcmp(v->name, name, size))
			return v;
	}
	return NULL;
}

static bool var_visible(const struct nvram *nv, const struct nvram_var *v)
{
	return !nv->runtime || (v->attr & EFI_VARIABLE_RUNTIME_ACCESS);
}

static size_t var_cost(size_t name_size, size_t data_size)
{
	return FW_VAR_OVERHEAD + name_size + data_size;
}

static size_t store_used(const struct nvram *nv, bool nonvolatile)
{
	size_t used = 0;
	for (size_t i = 0; i < nv->n; i++)
		if (!!(nv->v[i].attr & EFI_VARIABLE_NON_VOLATILE) == nonvolatile)
			used += var_cost(nv->v[i].name_size, nv->v[i].data_size);
	return used;
}

static void var_free(struct nvram_var *v)
{
	free(v->name);
	free(v->data);
}

/* ---- the file ---- */

static void put32(uint8_t *p, uint32_t v)
{
	efi_put32(p, v);
}

/* The file image of the non-volatile variables (malloc'd). */
static uint8_t *store_serialize(const struct nvram *nv, size_t *len)
{
	size_t body = 0;
	uint32_t count = 0;
	for (size_t i = 0; i < nv->n; i++)
		if (nv->v[i].attr & EFI_VARIABLE_NON_VOLATILE) {
			body += NVRAM_REC + nv->v[i].name_size + nv->v[i].data_size;
			count++;
		}
	uint8_t *buf = malloc(NVRAM_HDR + body);
	if (!buf)
		return NULL;
	uint8_t *p = buf + NVRAM_HDR;
	for (size_t i = 0; i < nv->n; i++) {
		const struct nvram_var *v = &nv->v[i];
		if (!(v->attr & EFI_VARIABLE_NON_VOLATILE))
			continue;
		put32(p, v->attr);
		put32(p + 4, (uint32_t)v->name_size);
		put32(p + 8, (uint32_t)v->data_size);
		memcpy(p + 12, &v->guid, 16);
		memcpy(p + NVRAM_REC, v->name, v->name_size);
		memcpy(p + NVRAM_REC + v->name_size, v->data, v->data_size);
		p += NVRAM_REC + v->name_size + v->data_size;
	}
	memcpy(buf, NVRAM_MAGIC, 8);
	put32(buf + 8, NVRAM_VERSION);
	put32(buf + 12, NVRAM_HDR);
	memcpy(buf + 16, nv->uuid, 16);
	put32(buf + 32, count);
	put32(buf + 36, (uint32_t)body);
	put32(buf + 40, efi_crc32(buf + NVRAM_HDR, body));
	put32(buf + 44, efi_crc32(buf, 44));
	*len = NVRAM_HDR + body;
	return buf;
}

static int store_save(struct nvram *nv)
{
	if (!nv->path)
		return 0;
	size_t len;
	uint8_t *buf = store_serialize(nv, &len);
	if (!buf)
		return -ENOMEM;
	char why[400];
	int r = file_replace_user(nv->path, buf, len, why, sizeof(why));
	free(buf);
	if (r)
		log_error("%s: cannot write the NVRAM file: %s (the variable change was refused)", text_show(nv->path), why);
	return r;
}

static struct nvram *store_new(void)
{
	struct nvram *nv = calloc(1, sizeof(*nv));
	if (nv) {
		nv->lock_fd = -1;
		pthread_mutex_init(&nv->lock, NULL);
	}
	return nv;
}

static int store_append(struct nvram *nv, const EFI_GUID *g, uint32_t attr, const CHAR16 *name, size_t name_size,
			const void *data, size_t data_size)
{
	if (nv->n == nv->cap) {
		size_t cap = nv->cap ? nv->cap * 2 : 32;
		struct nvram_var *v = realloc(nv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		nv->v = v;
		nv->cap = cap;
	}
	struct nvram_var *v = &nv->v[nv->n];
	v->guid = *g;
	v->attr = attr;
	v->name = malloc(name_size);
	v->data = malloc(data_size ? data_size : 1);
	if (!v->name || !v->data) {
		var_free(v);
		return -ENOMEM;
	}
	memcpy(v->name, name, name_size);
	if (data_size)
		memcpy(v->data, data, data_size);
	v->name_size = name_size;
	v->data_size = data_size;
	nv->n++;
	return 0;
}

int nvram_load_buffer(const void *buf, size_t len, struct nvram **out, char *err, size_t errlen)
{
	const uint8_t *b = buf;
	*out = NULL;
	if (len < NVRAM_HDR || memcmp(b, NVRAM_MAGIC, 8)) {
		snprintf(err, errlen, "not a gen2vm NVRAM file (bad signature)");
		return -EINVAL;
	}
	if (efi_le32(b + 44) != efi_crc32(b, 44)) {
		snprintf(err, errlen, "the NVRAM file's header is corrupt (bad checksum)");
		return -EINVAL;
	}
	if (efi_le32(b + 8) != NVRAM_VERSION || efi_le32(b + 12) != NVRAM_HDR) {
		snprintf(err, errlen, "NVRAM file version %u is not supported by this gen2vm", efi_le32(b + 8));
		return -EINVAL;
	}
	uint32_t count = efi_le32(b + 32), body = efi_le32(b + 36);
	if (body != len - NVRAM_HDR || efi_le32(b + 40) != efi_crc32(b + NVRAM_HDR, body)) {
		snprintf(err, errlen, "the NVRAM file is corrupt (truncated or bad checksum)");
		return -EINVAL;
	}
	struct nvram *nv = store_new();
	if (!nv)
		return -ENOMEM;
	memcpy(nv->uuid, b + 16, 16);
	const uint8_t *p = b + NVRAM_HDR, *end = b + len;
	size_t used = 0;
	for (uint32_t i = 0; i < count; i++) {
		if ((size_t)(end - p) < NVRAM_REC)
			goto corrupt;
		uint32_t attr = efi_le32(p), ns = efi_le32(p + 4), ds = efi_le32(p + 8);
		EFI_GUID g;
		memcpy(&g, p + 12, 16);
		if (ns > FW_VAR_NAME_MAX || ds > FW_VAR_DATA_MAX || (size_t)(end - p) - NVRAM_REC < (size_t)ns + ds)
			goto corrupt;
		CHAR16 name[FW_VAR_NAME_MAX / 2];
		memcpy(name, p + NVRAM_REC, ns);
		if (!name_valid(name, ns) || !(attr & EFI_VARIABLE_NON_VOLATILE) ||
		    !(attr & EFI_VARIABLE_BOOTSERVICE_ACCESS) ||
		    (attr & ~(EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS |
			      EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS)) ||
		    var_find(nv, name, ns, &g))
			goto corrupt;
		used += var_cost(ns, ds);
		if (used > FW_VAR_NV_STORE)
			goto corrupt;
		if (store_append(nv, &g, attr, name, ns, p + NVRAM_REC + ns, ds)) {
			nvram_close(nv);
			return -ENOMEM;
		}
		p += NVRAM_REC + ns + ds;
	}
	if (p != end)
		goto corrupt;
	*out = nv;
	return 0;
corrupt:
	nvram_close(nv);
	snprintf(err, errlen, "the NVRAM file is corrupt (a bad variable record)");
	return -EINVAL;
}

static int lock_take(const char *path, int *fd_out, char *err, size_t errlen)
{
	char lp[PATH_MAX];
	if (snprintf(lp, sizeof(lp), "%s.lock", path) >= (int)sizeof(lp)) {
		snprintf(err, errlen, "%s: path too long", text_show(path));
		return -ENAMETOOLONG;
	}
	char why[160];
	int fd = file_open_user(lp, O_RDWR | O_CREAT, 0644, FILE_REG, why, sizeof(why));
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create its lock file %s: %s", text_show(path), text_show(lp), why);
		return fd;
	}
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &fl)) {
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		long pid = !fcntl(fd, F_GETLK, &q) && q.l_type != F_UNLCK ? (long)q.l_pid : -1;
		close(fd);
		if (pid > 0)
			snprintf(err, errlen, "%s: in use by pid %ld (another gen2vm uses this NVRAM file; stop that VM first)",
				 text_show(path), pid);
		else
			snprintf(err, errlen, "%s: in use by another gen2vm (stop that VM first)", text_show(path));
		return -EBUSY;
	}
	*fd_out = fd;
	return 0;
}

/* An NVRAM store is at most this large: the variables' space plus their records. */
#define NVRAM_FILE_MAX (16u << 20)

/* Whether path may be an NVRAM file: a regular file, or nothing yet when create is true. Checked
 * before the lock file is made next to it, so that `--nvram /dev/null`, a directory or a mistyped
 * path creates nothing. */
static int nvram_path_check(const char *path, bool create, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st)) {
		int e = errno;
		if (e == ENOENT && create)
			return 0;
		if (e == ENOENT)
			snprintf(err, errlen, "%s: no such NVRAM file (gen2vm run --nvram %s creates it)", text_show(path),
				 text_show(path));
		else
			snprintf(err, errlen, "%s: %s", text_show(path), strerror(e));
		return -e;
	}
	if (S_ISREG(st.st_mode))
		return 0;
	snprintf(err, errlen, "%s: is %s, not an NVRAM file (--nvram takes a file; gen2vm creates it when absent)",
		 text_show(path), file_kind_name(&st));
	return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
}
static void uuid_make(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16) {
		uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		for (int i = 0; i < 16; i++)
			u[i] = (uint8_t)(t >> (i % 8 * 8)) ^ (uint8_t)(i * 37);
	}
	u[7] = (uint8_t)((u[7] & 0x0f) | 0x40); /* version 4 (SMBIOS order: time_hi is little-endian) */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
}

int nvram_open(const char *path, bool create, bool lock, struct nvram **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!path) {
		struct nvram *nv = store_new();
		if (!nv)
			return -ENOMEM;
		uuid_make(nv->uuid);
		*out = nv;
		return 0;
	}
	int lfd = -1, r;
	if ((r = nvram_path_check(path, create, err, errlen)))
		return r;
	if (lock && (r = lock_take(path, &lfd, err, errlen)))
		return r;
	uint8_t *buf = NULL;
	size_t len = 0;
	struct nvram *nv = NULL;
	char why[160];
	r = file_read_user(path, NVRAM_FILE_MAX, &buf, &len, why, sizeof(why));
	if (r == -ENOENT && create) {
		nv = store_new();
		if (!nv) {
			r = -ENOMEM;
			goto fail;
		}
		uuid_make(nv->uuid);
		nv->path = strdup(path);
		if (!nv->path || (r = store_save(nv))) {
			r = r ? r : -ENOMEM;
			snprintf(err, errlen, "%s: cannot create the NVRAM file: %s", text_show(path), strerror(-r));
			goto fail;
		}
	} else if (r) {
		if (r == -ENOENT)
			snprintf(err, errlen, "%s: no such NVRAM file (gen2vm run --nvram %s creates it)", text_show(path),
				 text_show(path));
		else if (r == -EFBIG || r == -EISDIR || r == -EINVAL)
			snprintf(err, errlen, "%s: %s, not an NVRAM file (--nvram takes a file; gen2vm creates it when "
				 "absent)", text_show(path), why);
		else
			snprintf(err, errlen, "%s: cannot read the NVRAM file: %s", text_show(path), why);
		goto fail;
	} else {
		r = nvram_load_buffer(buf, len, &nv, why, sizeof(why));
		free(buf);
		if (r) {
			snprintf(err, errlen, "%s: %s; `gen2vm firmware reset --nvram %s` makes a fresh one (its "
				 "boot entries and variables are lost)", text_show(path), why, text_show(path));
			goto fail;
		}
		nv->path = strdup(path);
		if (!nv->path) {
			r = -ENOMEM;
			goto fail;
		}
	}
	nv->lock_fd = lfd;
	*out = nv;
	return 0;
fail:
	if (nv)
		nvram_close(nv);
	if (lfd >= 0)
		close(lfd);
	return r;
}

int nvram_reset_file(const char *path, char *err, size_t errlen)
{
	int lfd, r;
	if ((r = nvram_path_check(path, true, err, errlen)) || (r = lock_take(path, &lfd, err, errlen)))
		return r;
	struct nvram *nv = store_new();
	if (!nv) {
		close(lfd);
		return -ENOMEM;
	}
	uuid_make(nv->uuid);
	nv->path = strdup(path);
	r = nv->path ? store_save(nv) : -ENOMEM;
	if (r)
		snprintf(err, errlen, "%s: cannot write the NVRAM file: %s", text_show(path), strerror(-r));
	nvram_close(nv);
	close(lfd);
	return r;
}

void nvram_close(struct nvram *nv)
{
	if (!nv)
		return;
	for (size_t i = 0; i < nv->n; i++)
		var_free(&nv->v[i]);
	free(nv->v);
	free(nv->path);
	if (nv->lock_fd >= 0)
		close(nv->lock_fd);
	pthread_mutex_destroy(&nv->lock);
	free(nv);
}

void nvram_vm_reset(struct nvram *nv)
{
	size_t k = 0;
	for (size_t i = 0; i < nv->n; i++) {
		if (nv->v[i].attr & EFI_VARIABLE_NON_VOLATILE)
			nv->v[k++] = nv->v[i];
		else
			var_free(&nv->v[i]);
	}
	nv->n = k;
	nv->runtime = false;
}

void nvram_lock(struct nvram *nv)
{
	pthread_mutex_lock(&nv->lock);
}

void nvram_unlock(struct nvram *nv)
{
	pthread_mutex_unlock(&nv->lock);
}

const uint8_t *nvram_system_uuid(const struct nvram *nv)
{
	return nv->uuid;
}

const char *nvram_path(const struct nvram *nv)
{
	return nv->path;
}

/* ---- the services ---- */

static void flags_latch(struct nvram *nv, uint32_t flags)
{
	if (flags & FW_VAR_F_RUNTIME)
		nv->runtime = true;
}

uint64_t nvram_get(struct nvram *nv, const CHAR16 *name, size_t name_size, const EFI_GUID *guid, uint32_t flags,
		   uint32_t *attributes, void *data, size_t *data_size)
{
	flags_latch(nv, flags);
	if (name_size >= 2 && name_size <= FW_VAR_NAME_MAX && !(name_size & 1) && name[0] == 0)
		return EFI_NOT_FOUND;
	if (!name_valid(name, name_size))
		return EFI_INVALID_PARAMETER;
	struct nvram_var *v = var_find(nv, name, name_size, guid);
	if (!v || !var_visible(nv, v))
		return EFI_NOT_FOUND;
	if (attributes)
		*attributes = v->attr;
	size_t cap = *data_size;
	*data_size = v->data_size;
	if (cap < v->data_size)
		return EFI_BUFFER_TOO_SMALL;
	if (v->data_size)
		memcpy(data, v->data, v->data_size);
	return EFI_SUCCESS;
}

uint64_t nvram_set(struct nvram *nv, const CHAR16 *name, size_t name_size, const EFI_GUID *guid, uint32_t flags,
		   uint32_t attributes, const void *data, size_t data_size)
{
	flags_latch(nv, flags);
	const uint32_t auth = EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS |
			      EFI_VARIABLE_ENHANCED_AUTHENTICATED_ACCESS;
	if (!name_valid(name, name_size))
		return EFI_INVALID_PARAMETER;
	if (attributes & ~EFI_VARIABLE_ATTRIBUTES_MASK)
		return EFI_INVALID_PARAMETER;
	bool host = flags & NVRAM_F_HOST;
	/* Secure Boot's keys and setting: the host writes them (gen2vm firmware set/reset); the guest
	 * only with a signed, time-based authenticated write of the keys, even from boot services code
	 * claiming to be the firmware. */
	if (!host && secboot_var_protected(name, name_size, guid))
		return secboot_auth_write(nv, name, name_size, guid, attributes, data, data_size);
	/* The host stores the databases with their time-based attribute, as the OS expects to read
	 * them; the guest's authenticated writes of other variables are not supported. */
	if ((attributes & auth) && !(host && (attributes & auth) == EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS))
		return EFI_UNSUPPORTED;
	if (attributes & EFI_VARIABLE_HARDWARE_ERROR_RECORD)
		return EFI_INVALID_PARAMETER;
	bool append = attributes & EFI_VARIABLE_APPEND_WRITE;
	uint32_t attr = attributes & ~EFI_VARIABLE_APPEND_WRITE;
	if ((attr & EFI_VARIABLE_RUNTIME_ACCESS) && !(attr & EFI_VARIABLE_BOOTSERVICE_ACCESS))
		return EFI_INVALID_PARAMETER;
	if (attr && !(attr & EFI_VARIABLE_BOOTSERVICE_ACCESS))
		return EFI_INVALID_PARAMETER;
	if (data_size > FW_VAR_DATA_MAX)
		return EFI_INVALID_PARAMETER;
	bool firmware = (flags & FW_VAR_F_FIRMWARE) && !nv->runtime;
	if (!firmware && var_readonly(name, name_size, guid))
		return EFI_WRITE_PROTECTED;
	struct nvram_var *v = var_find(nv, name, name_size, guid);
	if (v && !var_visible(nv, v))
		v = NULL; /* boot-services-only variables do not exist for the OS */
	bool del = attr == 0 || (data_size == 0 && !append);
	if (nv->runtime && del && !v)
		return append ? EFI_SUCCESS : EFI_NOT_FOUND;
	if (nv->runtime) {
		/* After ExitBootServices only NV+BS+RT variables may change; runtime volatile ones are
		 * read-only data. */
		uint32_t eff = attr ? attr : (v ? v->attr : 0);
		if (!(eff & EFI_VARIABLE_RUNTIME_ACCESS) || !(eff & EFI_VARIABLE_NON_VOLATILE))
			return v ? EFI_WRITE_PROTECTED : EFI_INVALID_PARAMETER;
	}
	if (del) {
		if (!v)
			return append ? EFI_SUCCESS : EFI_NOT_FOUND;
		if (attr && attr != v->attr)
			return EFI_INVALID_PARAMETER;
		if (append)
			return EFI_SUCCESS; /* appending nothing changes nothing */
		struct nvram_var old = *v;
		size_t idx = (size_t)(v - nv->v);
		memmove(v, v + 1, (nv->n - idx - 1) * sizeof(*v));
		nv->n--;
		if ((old.attr & EFI_VARIABLE_NON_VOLATILE) && store_save(nv)) {
			/* put it back where it was: the file still has it */
			memmove(nv->v + idx + 1, nv->v + idx, (nv->n - idx) * sizeof(*v));
			nv->v[idx] = old;
			nv->n++;
			return EFI_DEVICE_ERROR;
		}
		var_free(&old);
		return EFI_SUCCESS;
	}
	if (v && v->attr != attr)
		return EFI_INVALID_PARAMETER;
	size_t new_size = append && v ? v->data_size + data_size : data_size;
	if (new_size > FW_VAR_DATA_MAX)
		return EFI_OUT_OF_RESOURCES;
	bool nvol = attr & EFI_VARIABLE_NON_VOLATILE;
	size_t used = store_used(nv, nvol) - (v ? var_cost(v->name_size, v->data_size) : 0);
	if (used + var_cost(name_size, new_size) > (nvol ? FW_VAR_NV_STORE : FW_VAR_VOL_STORE))
		return EFI_OUT_OF_RESOURCES;
	if (!v) {
		if (store_append(nv, guid, attr, name, name_size, data, data_size))
			return EFI_OUT_OF_RESOURCES;
		if (nvol && store_save(nv)) {
			var_free(&nv->v[--nv->n]);
			return EFI_DEVICE_ERROR;
		}
		return EFI_SUCCESS;
	}
	uint8_t *nd = malloc(new_size ? new_size : 1);
	if (!nd)
		return EFI_OUT_OF_RESOURCES;
	size_t off = append ? v->data_size : 0;
	if (append)
		memcpy(nd, v->data, v->data_size);
	if (data_size)
		memcpy(nd + off, data, data_size);
	uint8_t *od = v->data;
	size_t osz = v->data_size;
	v->data = nd;
	v->data_size = new_size;
	if (nvol && store_save(nv)) {
		v->data = od;
		v->data_size = osz;
		free(nd);
		return EFI_DEVICE_ERROR;
	}
	free(od);
	return EFI_SUCCESS;
}

uint64_t nvram_next_name(struct nvram *nv, const CHAR16 *name, size_t name_size, EFI_GUID *guid, uint32_t flags,
			 size_t buf_cap, CHAR16 *out, size_t out_cap, size_t *next_size)
{
	flags_latch(nv, flags);
	size_t i = 0;
	if (name_size < 2 || (name_size & 1) || name_size > FW_VAR_NAME_MAX || name_size > buf_cap)
		return EFI_INVALID_PARAMETER;
	if (name[0] != 0) {
		if (!name_valid(name, name_size))
			return EFI_INVALID_PARAMETER;
		struct nvram_var *v = var_find(nv, name, name_size, guid);
		if (!v || !var_visible(nv, v))
			return EFI_INVALID_PARAMETER;
		i = (size_t)(v - nv->v) + 1;
	}
	for (; i < nv->n && !var_visible(nv, &nv->v[i]); i++)
		;
	if (i >= nv->n)
		return EFI_NOT_FOUND;
	const struct nvram_var *v = &nv->v[i];
	*next_size = v->name_size;
	if (buf_cap < v->name_size)
		return EFI_BUFFER_TOO_SMALL;
	if (out_cap < v->name_size)
		return EFI_DEVICE_ERROR; /* the caller gave less room than it claimed */
	memcpy(out, v->name, v->name_size);
	*guid = v->guid;
	return EFI_SUCCESS;
}

uint64_t nvram_query(struct nvram *nv, uint32_t attributes, uint32_t flags, uint64_t *max_storage,
		     uint64_t *remaining, uint64_t *max_var_size)
{
	flags_latch(nv, flags);
	/* APPEND_WRITE says how a write will go, not where it is kept: Linux's efivarfs asks with the
	 * attributes of the write it is about to make (an append to db, dbx) and refuses the write when
	 * the question is. */
	uint32_t attr = attributes & ~EFI_VARIABLE_APPEND_WRITE;
	if (!attr || (attr & ~EFI_VARIABLE_ATTRIBUTES_MASK))
		return EFI_INVALID_PARAMETER;
	if ((attr & EFI_VARIABLE_RUNTIME_ACCESS) && !(attr & EFI_VARIABLE_BOOTSERVICE_ACCESS))
		return EFI_INVALID_PARAMETER;
	/* Time-based authenticated variables share the non-volatile store (Secure Boot's databases). */
	if (attr & (EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS | EFI_VARIABLE_ENHANCED_AUTHENTICATED_ACCESS |
		    EFI_VARIABLE_HARDWARE_ERROR_RECORD))
		return EFI_UNSUPPORTED;
	if (nv->runtime && !(attr & EFI_VARIABLE_RUNTIME_ACCESS))
		return EFI_INVALID_PARAMETER;
	bool nvol = attr & EFI_VARIABLE_NON_VOLATILE;
	size_t total = nvol ? FW_VAR_NV_STORE : FW_VAR_VOL_STORE, used = store_used(nv, nvol);
	*max_storage = total;
	*remaining = used < total ? total - used : 0;
	*max_var_size = FW_VAR_DATA_MAX + FW_VAR_NAME_MAX;
	return EFI_SUCCESS;
}

/* ---- the guest's requests ---- */

static uint64_t nvram_request(struct nvram *nv, uint32_t op, void *req, uint8_t *copy, uint32_t req_size);
static uint64_t nvram_host_call_locked(struct nvram *nv, uint32_t op, void *req, uint32_t req_size);

uint64_t nvram_host_call(void *opaque, uint32_t op, void *req, uint32_t req_size)
{
	struct nvram *nv = opaque;
	nvram_lock(nv);
	uint64_t s = nvram_host_call_locked(nv, op, req, req_size);
	nvram_unlock(nv);
	return s;
}

static uint64_t nvram_host_call_locked(struct nvram *nv, uint32_t op, void *req, uint32_t req_size)
{
	if (op == FW_OP_VAR_QUERY_INFO) {
		struct fw_var_query_req q;
		if (req_size != sizeof(q)) {
			log_guest("firmware: QueryVariableInfo request of %u bytes", req_size);
			return EFI_INVALID_PARAMETER;
		}
		memcpy(&q, req, sizeof(q));
		uint64_t o[3];
		uint64_t s = nvram_query(nv, q.attributes, q.flags, &o[0], &o[1], &o[2]);
		if (s == EFI_SUCCESS)
			memcpy((uint8_t *)req + 24, o, sizeof(o));
		return s;
	}
	if (req_size < sizeof(struct fw_var_req) || req_size > FW_VAR_REQ_MAX) {
		log_guest("firmware: variable request %u of %u bytes", op, req_size);
		return EFI_INVALID_PARAMETER;
	}
	/* One snapshot of the request: the guest may rewrite it while we work. */
	uint8_t *copy = malloc(req_size);
	if (!copy)
		return EFI_OUT_OF_RESOURCES;
	memcpy(copy, req, req_size);
	uint64_t s = nvram_request(nv, op, req, copy, req_size);
	free(copy);
	return s;
}

static uint64_t nvram_request(struct nvram *nv, uint32_t op, void *req, uint8_t *copy, uint32_t req_size)
{
	struct fw_var_req h;
	memcpy(&h, copy, sizeof(h));
	h.flags &= FW_VAR_F_RUNTIME | FW_VAR_F_FIRMWARE; /* never NVRAM_F_HOST from the guest */
	EFI_GUID guid = h.guid;
	size_t room = req_size - sizeof(h);
	uint8_t *payload = copy + sizeof(h), *gpay = (uint8_t *)req + sizeof(h);
	struct fw_var_req *out = req;
	if (h.name_size > room || h.name_size > FW_VAR_NAME_MAX || (h.name_size & 1) || h.name_size < 2)
		return EFI_INVALID_PARAMETER;
	CHAR16 name[FW_VAR_NAME_MAX / 2];
	memcpy(name, payload, h.name_size);
	switch (op) {
	case FW_OP_VAR_GET: {
		size_t cap = h.data_size, dsz = cap;
		if (cap > room - h.name_size)
			cap = dsz = room - h.name_size;
		uint32_t attr = 0;
		uint64_t s = nvram_get(nv, name, h.name_size, &guid, h.flags, &attr, payload + h.name_size, &dsz);
		/* BUFFER_TOO_SMALL against the caller's capacity, not the request's room */
		if (s == EFI_BUFFER_TOO_SMALL && dsz <= h.data_size)
			s = EFI_DEVICE_ERROR;
		if (s == EFI_SUCCESS || s == EFI_BUFFER_TOO_SMALL) {
			out->attributes = attr;
			out->data_size = (uint32_t)dsz;
		}
		if (s == EFI_SUCCESS)
			memcpy(gpay + h.name_size, payload + h.name_size, dsz);
		return s;
	}
	case FW_OP_VAR_SET:
		if (h.data_size > room - h.name_size)
			return EFI_INVALID_PARAMETER;
		return nvram_set(nv, name, h.name_size, &guid, h.flags, h.attributes, payload + h.name_size,
				 h.data_size);
	case FW_OP_VAR_NEXT_NAME: {
		CHAR16 next[FW_VAR_NAME_MAX / 2];
		size_t nsz = 0;
		EFI_GUID g = guid;
		/* The previous name must be terminated within the caller's buffer. */
		if (efi_strnlen16(name, h.name_size / 2) >= h.name_size / 2)
			return EFI_INVALID_PARAMETER;
		size_t plen = (efi_strnlen16(name, h.name_size / 2) + 1) * 2;
		uint64_t s = nvram_next_name(nv, name, plen, &g, h.flags, h.data_size < plen ? plen : h.data_size, next,
					     sizeof(next), &nsz);
		if (s == EFI_SUCCESS && nsz > room)
			s = EFI_DEVICE_ERROR;
		if (s == EFI_SUCCESS || s == EFI_BUFFER_TOO_SMALL)
			out->name_size = (uint32_t)nsz;
		if (s == EFI_SUCCESS) {
			memcpy(gpay, next, nsz);
			memcpy(&out->guid, &g, sizeof(g));
		}
		return s;
	}
	}
	log_guest("firmware: unknown variable request %u", op);
	return EFI_UNSUPPORTED;
}

/* ---- host helpers ---- */

static size_t ascii_to_ucs2(const char *a, CHAR16 *out, size_t cap)
{
	size_t n = strlen(a);
	if (n + 1 > cap)
		return 0;
	for (size_t i = 0; i <= n; i++)
		out[i] = (unsigned char)a[i];
	return (n + 1) * 2;
}

void *nvram_get_ascii(struct nvram *nv, const char *name, const EFI_GUID *guid, size_t *size, uint32_t *attributes)
{
	CHAR16 n[128];
	size_t ns = ascii_to_ucs2(name, n, 128);
	struct nvram_var *v = ns ? var_find(nv, n, ns, guid) : NULL;
	if (!v)
		return NULL;
	void *d = malloc(v->data_size ? v->data_size : 1);
	if (!d)
		return NULL;
	memcpy(d, v->data, v->data_size);
	*size = v->data_size;
	if (attributes)
		*attributes = v->attr;
	return d;
}

uint64_t nvram_set_ascii(struct nvram *nv, const char *name, const EFI_GUID *guid, uint32_t attributes,
			 const void *data, size_t size)
{
	CHAR16 n[128];
	size_t ns = ascii_to_ucs2(name, n, 128);
	if (!ns)
		return EFI_INVALID_PARAMETER;
	bool rt = nv->runtime;
	nv->runtime = false; /* the host is not the OS */
	uint64_t s = nvram_set(nv, n, ns, guid, FW_VAR_F_FIRMWARE | NVRAM_F_HOST, attributes, data, size);
	nv->runtime = rt;
	return s;
}

bool nvram_var_at(const struct nvram *nv, size_t i, const CHAR16 **name, size_t *name_size, EFI_GUID *guid,
		  uint32_t *attributes, const void **data, size_t *data_size)
{
	if (i >= nv->n)
		return false;
	const struct nvram_var *v = &nv->v[i];
	*name = v->name;
	*name_size = v->name_size;
	*guid = v->guid;
	*attributes = v->attr;
	*data = v->data;
	*data_size = v->data_size;
	return true;
}
