#include "platform/gen2_storage.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"
#include "util/text.h"

int gen2_add_storage(struct vmbus_server *srv, const struct guest_mem *mem, unsigned cpus,
		     const struct disk_spec *disks, unsigned nr_disks, struct gen2_storage *st)
{
	memset(st, 0, sizeof(*st));
	uint16_t sub = cpus > 1 ? (uint16_t)(cpus - 1 > 63 ? 63 : cpus - 1) : 0;
	int rc = 0;
	for (unsigned i = 0; i <= nr_disks && !rc; i++) {
		unsigned c = i < nr_disks ? (unsigned)disks[i].controller : 0;
		if (c >= STORVSP_MAX_CONTROLLERS) {
			rc = -EINVAL;
			break;
		}
		if (!st->ctrl[c])
			rc = storvsp_create(srv, mem, c, sub, &st->ctrl[c]);
	}
	for (unsigned i = 0; i < nr_disks && !rc; i++) {
		const struct disk_spec *d = &disks[i];
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
			log_error("%s: controller %d LUN %d is already taken", d->path ? text_show(d->path) : "dvd", d->controller, lun);
	}
	if (rc)
		gen2_storage_destroy(st);
	return rc;
}

void gen2_storage_destroy(struct gen2_storage *st)
{
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		storvsp_destroy(st->ctrl[i]);
		st->ctrl[i] = NULL;
	}
}
