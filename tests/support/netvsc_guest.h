/* A minimal netvsc guest driver over the loopback guest (src/vmbus/loopback.h): NVSP init, receive and
 * send buffers, RNDIS control, frames both ways, sub-channels. Unit tests, the bench and the fuzzers
 * drive netvsp through it, the way Linux hv_netvsc drives it (same message order and sizes).
 * Single-threaded like the loopback; functions return 0 or -errno unless stated.
 */
#ifndef GEN2VM_SUPPORT_NETVSC_GUEST_H
#define GEN2VM_SUPPORT_NETVSC_GUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gen2vm/proto/netvsc.h"
#include "net/backend.h"
#include "support/loopback.h"

#define NETVSC_GUEST_RING (256u << 10)

struct netvsc_guest_frame {
	const uint8_t *data;
	uint32_t len;
	bool has_csum, has_lso, has_vlan;
	uint32_t csum, lso, vlan; /* PPI values as on the wire */
};

struct netvsc_guest {
	struct vmbus_loopback *lb;
	uint32_t nchan;
	struct vmbus_client_channel ch[NET_BE_MAX_QUEUES];
	uint8_t *rbuf, *sbuf;
	uint32_t rbuf_size, sbuf_size, rgpadl, sgpadl;
	uint32_t rsec_size, rsec_n, ssec_size;
	uint32_t version;
	uint64_t next_tid;
	uint32_t next_req;
	/* Called for each data frame received (RNDIS PACKET): chan index, frame, and its PPIs. */
	void (*on_frame)(void *ctx, uint32_t chan, const uint8_t *f, uint32_t len, const uint32_t *csum,
			 const uint32_t *vlan, const uint32_t *hash);
	void *ctx;
	/* Filled by netvsc_guest_poll. */
	uint32_t last_send_status;   /* status of the last RNDIS_PKT completion */
	uint32_t send_completions;
	uint8_t ctl[4096];           /* last RNDIS control reply / indication */
	uint32_t ctl_len;
	uint32_t indications, last_indication;
	uint32_t xfer_packets, xfer_ranges, rx_frames;
	uint32_t bad_replies;
	uint32_t too_big; /* ranges longer than the announced section size (Linux drops them) */
	uint32_t cur_chan;     /* the channel whose packet is being handled */
	pthread_mutex_t *lock; /* threaded netvsp: the server lock, held around every call into the server */
	uint32_t wait_ms;      /* threaded netvsp: how long to wait for an answer (0: inline, none) */
	bool hold_completions;       /* do not complete receive transactions (tests of section exhaustion) */
	uint64_t held[1024];
	uint32_t nheld;
};

/* Connects the loopback client if needed, opens the first netvsc offer, negotiates NVSP version
 * (0 = the newest, as Linux tries), sends NDIS config/version and the buffers (0 sizes: 16 MiB / 1 MiB
 * as Linux; smaller for tests). Returns 0, -ENODEV (no offer), -EPROTO (version refused) or -EIO. */
int netvsc_guest_open(struct netvsc_guest *g, struct vmbus_loopback *lb, uint32_t version, uint32_t rbuf_size,
		      uint32_t sbuf_size);
/* The same for a threaded netvsp: lock is the server lock (held around every call into the server),
 * replies are waited for up to wait_ms. */
int netvsc_guest_open_locked(struct netvsc_guest *g, struct vmbus_loopback *lb, uint32_t version,
			     uint32_t rbuf_size, uint32_t sbuf_size, pthread_mutex_t *lock, uint32_t wait_ms);
/* RNDIS INITIALIZE + standard queries Linux makes; returns the RNDIS status or -errno. */
int netvsc_guest_rndis_init(struct netvsc_guest *g);
/* Closes channels and tears buffers down. */
void netvsc_guest_close(struct netvsc_guest *g);

/* Sends an NVSP message on channel c with completion requested and waits for the completion,
 * copied to reply (may be NULL). */
int netvsc_guest_nvsp(struct netvsc_guest *g, uint32_t c, const struct nvsp_message *m, struct nvsp_message *reply);

/* Sends raw RNDIS bytes (a control message or several) via send section 0 (or GPA direct when
 * gpa is true) and processes what comes back. Returns the RNDIS_PKT completion status (NVSP_STAT_*). */
int netvsc_guest_rndis_raw(struct netvsc_guest *g, uint32_t c, uint32_t chan_type, const void *msg, uint32_t len,
			   bool gpa);

/* QUERY/SET: returns the RNDIS status (out/outlen get the data), or -errno when no reply came. */
int netvsc_guest_query(struct netvsc_guest *g, uint32_t oid, const void *in, uint32_t inlen, void *out,
		       uint32_t *outlen);
int netvsc_guest_set(struct netvsc_guest *g, uint32_t oid, const void *in, uint32_t inlen);

/* Sends n frames batched in one send section (GPA direct for one frame that does not fit). Returns the
 * completion status. */
int netvsc_guest_send(struct netvsc_guest *g, uint32_t c, const struct netvsc_guest_frame *f, uint32_t n);

/* Processes everything waiting on channel c (completions, received RNDIS messages, which it completes).
 * Returns the number of packets handled. */
int netvsc_guest_poll(struct netvsc_guest *g, uint32_t c);
/* Completes held receive transactions. */
void netvsc_guest_release_held(struct netvsc_guest *g, uint32_t c);

/* NVSP SUBCHANNEL request for n, then opens every sub-channel offered. Returns the count granted. */
int netvsc_guest_subchannels(struct netvsc_guest *g, uint32_t n);

#endif
