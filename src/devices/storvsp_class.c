/* The storage device class: synthetic SCSI controllers (storvsp.c) with their disks and DVD drives.
 * Settings: --disk / --dvd and the JSON "disks" array (disk_spec.h). Controller 0 always exists, so
 * that disks can be hot added; controllers 1-3 exist when a setting names them. Verbs: disk-add,
 * dvd-add, disk-remove, dvd-insert, dvd-eject. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/disk_spec.h"
#include "devices/storvsp.h"
#include "devices/vmdev.h"
#include "disk/disk.h"
#include "gen2vm/proto/storvsp.h"
#include "util/log.h"
#include "util/text.h"

struct storage {
	struct vmdev_host h;
	struct storvsp *ctrl[STORVSP_MAX_CONTROLLERS];
};

static int storage_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	return disk_spec_parse(arg, !strcmp(opt, "dvd"), cfg, err, errlen);
}

static int storage_parse_json(struct json_object *v, void *cfg, char *err, size_t errlen)
{
	return disk_spec_from_json(v, cfg, err, errlen);
}

static void storage_free_config(void *cfg)
{
	disk_spec_free(cfg);
}

static int storage_validate(void *const *cfgs, unsigned n, char *err, size_t errlen)
{
	if (n > STORVSP_MAX_CONTROLLERS * STORVSP_MAX_LUNS) {
		snprintf(err, errlen, "%u disks and DVD drives: a VM has at most %u (4 controllers of 64)", n,
			 STORVSP_MAX_CONTROLLERS * STORVSP_MAX_LUNS);
		return -EINVAL;
	}
	return 0;
}

static void storage_destroy(void *state)
{
	struct storage *st = state;
	if (!st)
		return;
	pthread_mutex_lock(st->h.srv_lock);
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++)
		storvsp_destroy(st->ctrl[i]);
	pthread_mutex_unlock(st->h.srv_lock);
	free(st);
}

/* Controller 0 and every controller a setting names, each allowing nr_vcpus - 1 sub-channels; then
 * the drives in order (an automatic LUN is the first free one at its turn). */
static int storage_create_locked(struct storage *st, void *const *cfgs, unsigned n, struct vmdev_drive *drives)
{
	const struct vmdev_host *h = &st->h;
	uint16_t sub = h->nr_vcpus > 1 ? (uint16_t)(h->nr_vcpus - 1 > 63 ? 63 : h->nr_vcpus - 1) : 0;
	int rc = 0;
	for (unsigned i = 0; i <= n && !rc; i++) {
		unsigned c = i < n ? (unsigned)((const struct disk_spec *)cfgs[i])->controller : 0;
		if (!st->ctrl[c])
			rc = storvsp_create(h->srv, h->mem, c, sub, &st->ctrl[c]);
	}
	for (unsigned i = 0; i < n && !rc; i++) {
		const struct disk_spec *d = cfgs[i];
		struct storvsp *s = st->ctrl[d->controller];
		int lun = d->lun == DISK_SPEC_AUTO ? storvsp_free_lun(s) : d->lun;
		if (lun < 0) {
			log_error("%s: controller %d has no free LUN", d->path ? text_show(d->path) : "dvd", d->controller);
			rc = -ENOSPC;
			break;
		}
		struct storvsp_disk_opts o = { .path = d->path, .dvd = d->dvd, .readonly = d->readonly,
					       .native_4k = d->native_4k, .serial = d->serial, .format = d->format };
		rc = storvsp_attach(s, (uint32_t)lun, &o);
		if (rc == -EEXIST)
			log_error("%s: controller %d LUN %d is already taken", d->path ? text_show(d->path) : "dvd",
				  d->controller, lun);
		drives[i] = (struct vmdev_drive){ (unsigned)d->controller, (unsigned)lun, d->dvd };
	}
	return rc;
}

static int storage_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
			  size_t errlen)
{
	struct storage *st = calloc(1, sizeof(*st));
	struct vmdev_drive *drives = calloc(n ? n : 1, sizeof(*drives));
	if (!st || !drives) {
		free(st);
		free(drives);
		snprintf(err, errlen, "storage: out of memory");
		return -ENOMEM;
	}
	st->h = *h;
	pthread_mutex_lock(h->srv_lock);
	int rc = storage_create_locked(st, cfgs, n, drives);
	pthread_mutex_unlock(h->srv_lock);
	/* The errors were logged naming the disk ("disk.img: in use by ..."). */
	if (!rc && h->drives_present)
		rc = h->drives_present(h->opaque, drives, n);
	free(drives);
	if (rc) {
		storage_destroy(st);
		return rc;
	}
	*state = st;
	return 0;
}

/* ---- verbs ---- */

/* Parses "key=N" words (lun=, controller=), format= and flags; the first other word is the path. */
static int storage_verb_args(int argc, char **argv, const char **path, int *lun, int *ctrl, bool *ro,
			     unsigned *format, char *reply, size_t len)
{
	*path = NULL;
	*lun = -1;
	*ctrl = 0;
	*ro = false;
	*format = 0;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strncmp(argv[i], "lun=", 4) || !strncmp(argv[i], "controller=", 11)) {
			bool is_lun = argv[i][0] == 'l';
			const char *num = strchr(argv[i], '=') + 1;
			long v = strtol(num, &end, 10);
			if (!*num || *end || v < 0 || v > (is_lun ? 63 : 3)) {
				snprintf(reply, len, "'%s': lun is 0..63, controller 0..3", text_show(argv[i]));
				return -EINVAL;
			}
			*(is_lun ? lun : ctrl) = (int)v;
		} else if (!strncmp(argv[i], "format=", 7)) {
			if (!(*format = disk_format_flag(argv[i] + 7))) {
				snprintf(reply, len, "'%s': format is raw, vhd or vhdx", text_show(argv[i]));
				return -EINVAL;
			}
		} else if (!strcmp(argv[i], "readonly")) {
			*ro = true;
		} else if (!*path) {
			*path = argv[i];
		} else {
			snprintf(reply, len, "unexpected word '%s'", text_show(argv[i]));
			return -EINVAL;
		}
	}
	return 0;
}

static int storage_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct storage *st = state;
	const char *path;
	int lun, ctrl;
	bool ro;
	unsigned format;
	int r = storage_verb_args(argc, argv, &path, &lun, &ctrl, &ro, &format, reply, len);
	if (r)
		return r;
	bool add = !strcmp(argv[0], "disk-add") || !strcmp(argv[0], "dvd-add");
	bool dvd = !strcmp(argv[0], "dvd-add");
	if ((add && !dvd && !path) || (!strcmp(argv[0], "dvd-insert") && !path)) {
		snprintf(reply, len, "%s needs a path", argv[0]);
		return -EINVAL;
	}
	if (!add && lun < 0) {
		snprintf(reply, len, "%s needs lun=N", argv[0]);
		return -EINVAL;
	}
	if ((ro || format) && !add) {
		snprintf(reply, len, "%s takes no %s", argv[0], ro ? "readonly" : "format=");
		return -EINVAL;
	}
	log_last_error_clear();
	pthread_mutex_lock(st->h.srv_lock);
	struct storvsp *s = st->ctrl[ctrl];
	if (!s) {
		pthread_mutex_unlock(st->h.srv_lock);
		snprintf(reply, len, "controller %d does not exist (start the VM with a disk on it)", ctrl);
		return -ENOENT;
	}
	if (add) {
		if (lun < 0)
			lun = storvsp_free_lun(s);
		struct storvsp_disk_opts o = { .path = path && strcmp(path, "empty") ? path : NULL, .dvd = dvd,
					       .readonly = ro, .format = format };
		r = lun < 0 ? lun : storvsp_attach(s, (uint32_t)lun, &o);
	} else if (!strcmp(argv[0], "disk-remove")) {
		r = storvsp_detach(s, (uint32_t)lun);
	} else {
		r = storvsp_change_media(s, (uint32_t)lun, !strcmp(argv[0], "dvd-insert") ? path : NULL, format);
	}
	pthread_mutex_unlock(st->h.srv_lock);
	if (r == 0 && st->h.drive_changed && (add || !strcmp(argv[0], "disk-remove"))) {
		struct vmdev_drive d = { (unsigned)ctrl, (unsigned)lun, dvd };
		st->h.drive_changed(st->h.opaque, &d, add);
	}
	if (r == 0 && add)
		snprintf(reply, len, "controller %d lun %d", ctrl, lun);
	else if (r && log_last_error()[0]) /* the image's own error: names the file and what is wrong */
		snprintf(reply, len, "%s", strlen(log_last_error()) < len ? log_last_error() : text_show(log_last_error()));
	else if (r == -EEXIST)
		snprintf(reply, len, "lun %d of controller %d is taken", lun, ctrl);
	else if (r == -ENOSPC)
		snprintf(reply, len, "controller %d has no free lun", ctrl);
	else if (r == -ENOENT && !add)
		snprintf(reply, len, "no drive at lun %d of controller %d", lun, ctrl);
	else if (r == -EINVAL && !add)
		snprintf(reply, len, "lun %d of controller %d is not a DVD drive", lun, ctrl);
	else if (r)
		snprintf(reply, len, "%s: %s", path ? text_show(path) : argv[0], strerror(-r));
	return r;
}

static const struct vmdev_option storage_options[] = { { "disk", true }, { "dvd", true }, { NULL, false } };

/* Saving: per controller slot, a present byte and the controller's 4 bytes (storvsp_save). */
#define STORAGE_SAVE_SLOT 5u

static int storage_quiesce(void *state, unsigned timeout_ms)
{
	struct storage *st = state;
	for (unsigned c = 0; c < STORVSP_MAX_CONTROLLERS; c++)
		if (st->ctrl[c] && storvsp_quiesce(st->ctrl[c], timeout_ms))
			return -EBUSY;
	return 0;
}

static int storage_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct storage *st = state;
	uint8_t *b = calloc(STORVSP_MAX_CONTROLLERS, STORAGE_SAVE_SLOT);
	if (!b)
		return -ENOMEM;
	for (unsigned c = 0; c < STORVSP_MAX_CONTROLLERS; c++) {
		if (!st->ctrl[c])
			continue;
		b[c * STORAGE_SAVE_SLOT] = 1;
		if (storvsp_save(st->ctrl[c], b + c * STORAGE_SAVE_SLOT + 1)) {
			free(b);
			snprintf(err, errlen, "SCSI controller %u still has I/O in flight", c);
			return -EBUSY;
		}
	}
	*out = b;
	*len = STORVSP_MAX_CONTROLLERS * STORAGE_SAVE_SLOT;
	return 0;
}

static int storage_restore(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct storage *st = state;
	if (len != STORVSP_MAX_CONTROLLERS * STORAGE_SAVE_SLOT) {
		snprintf(err, errlen, "bad state length %zu", len);
		return -EINVAL;
	}
	for (unsigned c = 0; c < STORVSP_MAX_CONTROLLERS; c++) {
		const uint8_t *slot = buf + c * STORAGE_SAVE_SLOT;
		if (slot[0] != (st->ctrl[c] != NULL) || (st->ctrl[c] && storvsp_restore(st->ctrl[c], slot + 1))) {
			snprintf(err, errlen, "SCSI controller %u: its saved state does not fit", c);
			return -EINVAL;
		}
	}
	return 0;
}

static const struct vmdev_verb storage_verbs[] = {
	{ "disk-add", "disk-add PATH [lun=N] [controller=N] [readonly] [format=raw|vhd|vhdx]", storage_verb },
	{ "dvd-add", "dvd-add [PATH|empty] [lun=N] [controller=N] [format=raw]", storage_verb },
	{ "disk-remove", "disk-remove lun=N [controller=N]", storage_verb },
	{ "dvd-insert", "dvd-insert PATH lun=N [controller=N] [format=raw]", storage_verb },
	{ "dvd-eject", "dvd-eject lun=N [controller=N]", storage_verb },
	{ NULL, NULL, NULL },
};

const struct vmdev_class storvsp_class = {
	.name = "storvsp",
	.class_guid = STORVSP_SCSI_CLASS_GUID_TEXT,
	.options = storage_options,
	.usage = "  --disk PATH[,readonly][,lun=N][,controller=N][,4k][,serial=S][,format=raw|vhd|vhdx]\n"
		 "                             a SCSI disk: raw image, block device, VHD or VHDX (repeatable;\n"
		 "                             the format is detected; a damaged image, or a file named .vhdx/.vhd\n"
		 "                             that is not one, is refused unless format=raw says otherwise)\n"
		 "  --dvd PATH|empty[,lun=N][,controller=N][,format=raw]\n"
		 "                             a SCSI DVD drive with an ISO image, or without media\n",
	.json_key = "disks",
	.always = true,
	.config_size = sizeof(struct disk_spec),
	.parse_option = storage_parse_option,
	.parse_json = storage_parse_json,
	.free_config = storage_free_config,
	.validate = storage_validate,
	.create = storage_create,
	.destroy = storage_destroy,
	.verbs = storage_verbs,
	.quiesce = storage_quiesce,
	.save = storage_save,
	.restore = storage_restore,
};
