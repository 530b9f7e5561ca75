/* netvsp: the synthetic network adapter (host side of Linux hv_netvsc / Windows netvsc).
 *
 * NVSP 2 .. 6.1 over VMBus, RNDIS 1.0 / NDIS 6.30 control (src/devices/rndis.h), receive and send
 * buffers with sectioned allocation, the data path both ways with several RNDIS packets per message,
 * checksum/LSO/VLAN per-packet info mapped to the backend's virtio-net header, and vRSS: up to
 * max_queues channels (the primary and its sub-channels), the guest's indirection table and key
 * deciding which channel a received frame goes to.
 *
 * THREADS. Two modes:
 *  - inline (cfg.threaded = false; unit tests, fuzzing, the loopback bench): everything runs in the
 *    caller's thread: rx_ready drains the guest's ring at once, netvsp_poll() moves backend frames to
 *    the guest.
 *  - threaded (the VMM): each open channel has a worker thread, which blocks in poll (no timeout) on
 *    its backend queue(s) and an eventfd. The eventfd is kicked by rx_ready (the guest sent packets,
 *    or made room in a host->guest ring that held packets back), by a freed receive section when the
 *    worker's queue stalled for want of one, and by close. Workers write host->guest rings under a
 *    per-channel lock; GPADL acquire/release and sub-channel requests are the server's any-thread
 *    calls (vmbus/server.h), so the adapter never sees the server lock and close can join a worker
 *    at any time. The backend's carrier is looked at after each round of a worker (it only changes
 *    inside send/recv). vCPU threads never block on the backend.
 *
 * The guest is hostile: every NVSP/RNDIS field, section index, length and GPA is checked; a bad message
 * gets the failure status the client expects (NVSP_STAT_FAIL, RNDIS_STATUS_*), a rate-limited log line,
 * and nothing else.
 *
 * The implementation: netvsp.c (lifecycle), netvsp_nvsp.c (protocol), netvsp_buf.c (buffers),
 * netvsp_data.c (data path); their shared state, lock order and internal contracts: netvsp_priv.h.
 */
#ifndef GEN2VM_DEVICES_NETVSP_H
#define GEN2VM_DEVICES_NETVSP_H

#include <stdbool.h>
#include <stdint.h>

#include "net/backend.h"
#include "vmbus/server.h"
#include "vmm/memory.h"

struct netvsp;

struct netvsp_config {
	const struct guest_mem *mem; /* guest RAM (the server's) */
	struct net_backend *backend; /* owned by the adapter from a successful create on */
	uint8_t mac[6];
	uint32_t mtu;        /* 0 = 1500; up to 9000 */
	uint32_t max_queues; /* channels offered for vRSS (primary + sub-channels); 0 = backend's queues */
	uint32_t instance;   /* distinguishes adapters' instance GUIDs (0, 1, ...) */
	bool threaded;
};

/* The VMBus instance GUID of adapter `instance` (netvsp_config.instance): the firmware's device path
 * of the adapter carries it, so the host's network boot entries are built from it. */
void netvsp_instance_id(uint32_t instance, struct vmbus_guid *out);

/* Registers the adapter with the server (offered at REQUESTOFFERS, or at once: hot add). Call with the
 * server lock held. Returns 0, -EINVAL or -ENOMEM; on failure the backend stays the caller's. */
int netvsp_create(struct vmbus_server *srv, const struct netvsp_config *cfg, struct netvsp **out);

/* Hot removal (rescind) and free, backend included. Call with the server lock held. NULL is fine. */
void netvsp_destroy(struct netvsp *nv);

/* Cable connect/disconnect: updates MEDIA_CONNECT_STATUS and indicates the change to the guest.
 * While down, frames both ways are dropped. Thread-safe. The guest sees the link up while this says
 * up and the backend has a carrier (net_backend_ops.carrier: a pair's peer is there); the adapter
 * follows the carrier by itself (each worker after its round, or netvsp_poll inline). */
void netvsp_set_link(struct netvsp *nv, bool up);

/* Reported link speed (bit/s; default 10 Gbit/s): LINK_SPEED and a speed-change indication. */
void netvsp_set_link_speed(struct netvsp *nv, uint64_t bps);

/* Inline mode: moves up to budget waiting backend frames to the guest and retries sends the guest's
 * full ring held back. Returns frames delivered. */
uint32_t netvsp_poll(struct netvsp *nv, uint32_t budget);

struct netvsp_stats {
	uint64_t tx_packets, tx_bytes, tx_dropped; /* guest -> backend */
	uint64_t rx_packets, rx_bytes, rx_dropped; /* backend -> guest */
	uint64_t bad_messages;                     /* malformed NVSP/RNDIS from the guest */
	uint32_t nvsp_version, channels_open, rss_enabled, link_up;
};
void netvsp_get_stats(struct netvsp *nv, struct netvsp_stats *st);

/* The receive path's state, for a guest that stops receiving (nic-list shows it): receive sections
 * the guest holds of all, receive transactions it has not completed, channels whose full ring holds a
 * batch back (parked) or completions (owed), workers waiting for a section. */
struct netvsp_rx_state {
	uint32_t sections_held, sections, txns_held, parked, owed, waiters;
};
void netvsp_get_rx_state(struct netvsp *nv, struct netvsp_rx_state *rx);

/* Saving the VM (formats: struct savestate_netvsp and what follows it, proto/savestate.h).
 * netvsp_hold holds the adapter's workers between two rounds (nothing half done, no lock held) within
 * timeout_ms: 0, or -EBUSY (netvsp_release then too); netvsp_release lets them go on (a save that
 * failed). netvsp_save (workers held, server lock held) appends the adapter's state, with slot its
 * number, to *buf (*len bytes, realloc'ed): the NVSP and RNDIS state, the buffers' GPADLs, the
 * receive transactions the guest holds and the completions a full ring held back (receive batches
 * held back are dropped: their sections are free in the state). 0 or -ENOMEM.
 * netvsp_restore (server lock held, after the VMBus server's restore reopened the channels, on an
 * adapter just created) takes one adapter's state from buf (len bytes, host input: every field is
 * checked) and says in *used how many bytes it was: 0, or -EINVAL with err. The channels' workers
 * start at the next server call (vmbus_server_kick_open). */
int netvsp_hold(struct netvsp *nv, unsigned timeout_ms);
void netvsp_release(struct netvsp *nv);
int netvsp_save(struct netvsp *nv, uint32_t slot, uint8_t **buf, size_t *len);
int netvsp_restore(struct netvsp *nv, uint32_t slot, const uint8_t *buf, size_t len, size_t *used, char *err,
		   size_t errlen);

/* The smallest receive-buffer section the adapter announces (a 1500-byte frame and its RNDIS header).
 * For a larger MTU (the guest's, from NDIS_CONFIG, or the adapter's mtu=) each section holds one
 * whole frame: Linux refuses a receive range longer than the section size it was told. */
#define NETVSP_RECV_SECTION_SIZE 1728u
#define NETVSP_SEND_SECTION_SIZE 6144u

#endif
