/* The guest side of storvsp over the loopback guest (tests, benches, fuzzers): what Linux's
 * hv_storvsc does on the wire, reduced to init, SRBs and sub-channels. Host-only (uses malloc).
 *
 * Data buffers must be guest RAM: storvsc_guest_alloc() hands out pages of the loopback guest.
 * storvsp completes I/O on the thread that services the loopback (vmbus_loopback_wait): this one. So
 * reaping an empty ring first runs whatever completed (without waiting), and storvsc_guest_wait
 * blocks until some I/O completes.
 */
#ifndef GEN2VM_SUPPORT_STORVSC_GUEST_H
#define GEN2VM_SUPPORT_STORVSC_GUEST_H

#include <stdint.h>

#include "gen2vm/proto/storvsp.h"
#include "support/loopback.h"

#define STORVSC_GUEST_MAX_CHANNELS 8u

struct storvsc_guest {
	struct vmbus_loopback *lb;
	uint32_t relid;
	uint16_t version;
	struct storvsp_properties props;
	uint32_t nr_channels;
	struct vmbus_client_channel ch[STORVSC_GUEST_MAX_CHANNELS];
	uint8_t rxbuf[4096];
	bool manual_wait; /* reap only reads the ring; the caller runs completions (storvsc_guest_wait) */
};

/* One SCSI command. data: guest RAM (storvsc_guest_alloc) or NULL; data_in: STORVSP_DATA_*. */
struct storvsc_io {
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint8_t data_in;
	uint8_t path, target, lun;
	void *data;
	uint32_t len;
	/* results */
	uint32_t status; /* vstor packet status */
	uint8_t srb_status, scsi_status, sense_len;
	uint8_t sense[STORVSP_SENSE_SIZE];
	uint32_t xfer;
};

/* Opens the controller's primary channel (relid) and runs the init sequence, offering only
 * `version` (0: 6.2, then 6.0, then 5.1, like Linux). Returns 0 or a negative error. */
int storvsc_guest_open(struct storvsc_guest *g, struct vmbus_loopback *lb, uint32_t relid, uint16_t version);

/* Sends one control packet on channel 0 (operation and union already set) and waits for the reply,
 * which overwrites *pk. Returns 0 or -ETIMEDOUT / a send error. */
int storvsc_guest_ctrl(struct storvsc_guest *g, struct storvsp_packet *pk);

/* CREATE_SUB_CHANNELS(n), then opens the offered sub-channels. Returns the channels now open. */
int storvsc_guest_subchannels(struct storvsc_guest *g, uint16_t n);

/* Sends io on channel chan with trans_id id (async). Returns 0 or -EAGAIN (ring full) / error. */
int storvsc_guest_submit(struct storvsc_guest *g, uint32_t chan, const struct storvsc_io *io, uint64_t id);
/* Takes one completion from chan: 0 with *id and io results filled, -EAGAIN when none is there.
 * Unsolicited packets (ENUMERATE_BUS) return 1 with *id = 0 and io->status = the operation. */
int storvsc_guest_reap(struct storvsc_guest *g, uint32_t chan, struct storvsc_io *io, uint64_t *id);
/* Blocks up to timeout_ms (-1: for ever) until storvsp completed some I/O and wrote its replies . 0 or -errno. */
int storvsc_guest_wait(struct storvsc_guest *g, int timeout_ms);
/* submit + wait (5 s). */
int storvsc_guest_run(struct storvsc_guest *g, struct storvsc_io *io);

/* len bytes of zeroed guest RAM (page-aligned), NULL when exhausted. */
void *storvsc_guest_alloc(struct storvsc_guest *g, uint32_t len);

/* Closes every channel. */
void storvsc_guest_close(struct storvsc_guest *g);

#endif
