/* Storage of the generation 2 machine: the synthetic SCSI controllers and their disks/DVD drives
 * from the configuration (struct disk_spec list). Kept apart from gen2.c so the machine only calls
 * gen2_add_storage() once its VMBus server exists (with the server lock held, or before vCPUs run). */
#ifndef GEN2VM_PLATFORM_GEN2_STORAGE_H
#define GEN2VM_PLATFORM_GEN2_STORAGE_H

#include "cli/disk_spec.h"
#include "devices/storvsp.h"

struct gen2_storage {
	struct storvsp *ctrl[STORVSP_MAX_CONTROLLERS];
};

/* Creates controller 0 (always, so disks can be hot-added later) and every controller a spec names,
 * each allowing cpus - 1 sub-channels, then attaches the disks in order (lun AUTO = first free).
 * Errors name the disk ("disk.img: in use by ..."); on error everything is undone. 0 or -errno. */
int gen2_add_storage(struct vmbus_server *srv, const struct guest_mem *mem, unsigned cpus,
		     const struct disk_spec *disks, unsigned nr_disks, struct gen2_storage *st);

/* Hot-removes every controller. */
void gen2_storage_destroy(struct gen2_storage *st);

#endif
