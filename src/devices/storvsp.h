/* Synthetic SCSI controller (storvsp): the host side of Linux's hv_storvsc / Windows' storvsc.
 *
 * One controller = one VMBus device (SCSI class GUID, instance GUID from the controller number) with
 * up to STORVSP_MAX_LUNS logical units at path 0, target 0: disks (struct disk: raw, VHD, VHDX) and
 * DVD drives (an ISO or no media). Protocol versions WIN8 (5.1), WIN8.1 (6.0), WIN10 (6.2);
 * sub-channels on request (up to max_subchannels). SCSI commands run in the pure core (src/scsi);
 * data moves straight between guest RAM and the backend through src/disk/aio (io_uring for raw
 * images and block devices, a worker thread for VHD/VHDX). The thread that services the channel's
 * doorbell (the VMBus service thread through the ioeventfd; a vCPU only when a doorbell could not be
 * registered) decodes and submits to the channel's io_uring; the same service thread watches the
 * ring's completion eventfd (vmbus_channel_watch_fd), reaps and replies, one guest signal per batch.
 * Nothing on a vCPU thread waits for the disk. Needs a host with watch_fd (vmbus_host, loopback).
 *
 * Locking: every storvsp_* call below needs the VMBus server lock (as vmbus_server_* do).
 */
#ifndef GEN2VM_DEVICES_STORVSP_H
#define GEN2VM_DEVICES_STORVSP_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/server.h"
#include "vmm/memory.h"

#define STORVSP_MAX_CONTROLLERS 4u
#define STORVSP_MAX_LUNS 64u
#define STORVSP_MAX_TRANSFER (1u << 20)

struct storvsp;

struct storvsp_disk_opts {
	const char *path;   /* image, block device or ISO; NULL with dvd = an empty drive */
	bool dvd;           /* an MMC DVD drive (always read-only) */
	bool readonly;
	bool native_4k;     /* 4096-byte logical sectors (default: 512 logical, 4096 physical) */
	const char *serial; /* VPD 0x80; NULL derives one */
	unsigned format;    /* DISK_FORMAT_RAW/VHD/VHDX to insist on a format; 0 detects it (disk_open) */
};

/* Registers controller `index` (0..3) on srv. max_subchannels: how many sub-channels the guest may ask
 * for (typically vCPUs - 1; 0 = none). mem: guest RAM for GPA_DIRECT buffers. Returns 0 or -errno. */
int storvsp_create(struct vmbus_server *srv, const struct guest_mem *mem, uint32_t index,
		   uint16_t max_subchannels, struct storvsp **out);

/* Hot-removes the controller (channels closed after their I/O completes) and closes every disk. */
void storvsp_destroy(struct storvsp *s);

/* Attaches a disk or DVD drive at lun (0..63). Opens the image (errors are logged naming the file).
 * When the guest is running, it is told to rescan. Returns 0, -EEXIST (lun taken), -EINVAL or the
 * disk_open error. */
int storvsp_attach(struct storvsp *s, uint32_t lun, const struct storvsp_disk_opts *o);

/* Hot-removes lun (I/O in flight completes first; the image is closed after it). 0 or -ENOENT. */
int storvsp_detach(struct storvsp *s, uint32_t lun);

/* DVD media change: path inserts an ISO (replacing any; format as in storvsp_disk_opts), NULL ejects.
 * 0, -ENOENT (no such lun), -EINVAL (not a DVD drive) or the disk_open error. */
int storvsp_change_media(struct storvsp *s, uint32_t lun, const char *path, unsigned format);

/* First free lun, or -ENOSPC. */
int storvsp_free_lun(const struct storvsp *s);

/* Saving a VM. quiesce waits up to timeout_ms for every request of every open channel to complete
 * and its reply to reach the guest's ring (the vCPUs are paused: nothing new comes in); it does not
 * need the server lock (completions run on the service thread without it). 0 or -EBUSY. save (server
 * lock held) writes the controller's protocol state (negotiated version, initialised) into out[4]:
 * -EBUSY when a request is in flight after all. restore (server lock held, after the VMBus server
 * restored and reopened the channels) takes it back: 0 or -EINVAL for a version it does not speak. */
int storvsp_quiesce(struct storvsp *s, unsigned timeout_ms);
int storvsp_save(struct storvsp *s, uint8_t out[4]);
int storvsp_restore(struct storvsp *s, const uint8_t in[4]);

struct storvsp_stats {
	uint64_t srbs, reads, writes, flushes, discards, errors, guest_errors;
};
void storvsp_get_stats(const struct storvsp *s, struct storvsp_stats *st);

#endif
