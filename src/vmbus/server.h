/* The VMBus host: connection and channel protocol as a pure state machine.
 *
 * No I/O and no threads: the caller holds one lock (the "server lock") around every vmbus_server_*
 * call, and the server talks outward only through struct vmbus_server_notifier. Devices plug in with
 * struct vmbus_device_desc / vmbus_device_ops and never see that lock: what they may call from their
 * own threads (GPADL references, sub-channel requests) is guarded by a small lock inside the server
 * (taken after the server lock, never before it), and whatever that has to tell the guest is sent by
 * the next server call or vmbus_server_run_deferred (the host runs it when notifier.work_pending
 * wakes it). Implements VMBus 2.4 .. 5.3 as Linux
 * negotiates it (shared/reference/hyperv-guest-interface.md 3.4-3.5).
 *
 * WIRING (what the KVM/SynIC layer calls and provides):
 *   guest HvPostMessage (hypercall 0x5C)  -> vmbus_server_post_message(), return its status in RAX
 *   guest HvSignalEvent (hypercall 0x5D)  -> vmbus_server_signal_event(), return its status in RAX
 *   notifier.post_to_guest                <- queue one message for SINT2 of a VP (slot writer)
 *   notifier.signal_guest                 <- set bit relid in that VP's SIEF slot 2, inject SINT2
 *   notifier.channel_opened / _closed     <- optional: (un)register an ioeventfd for a connection id
 *   VM reset                              -> vmbus_server_reset()
 *
 * The guest is hostile: every message is validated (size, state, relid, GPADL, VP index); a bad one is
 * logged with log_guest() and answered the way a failed request is answered on Hyper-V (failure status
 * in GPADL_CREATED / OPEN_RESULT) or dropped when there is nothing to answer.
 */
#ifndef GEN2VM_VMBUS_SERVER_H
#define GEN2VM_VMBUS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/vmbus.h"
#include "vmbus/gpadl.h"
#include "vmbus_ring.h"
#include "vmm/memory.h"

struct vmbus_server;
struct vmbus_channel;
struct vmbus_device;

/* A channel's signal connection id (HvSignalEvent from the guest): VMBUS_CHANNEL_CONNECTION_BASE + relid. */
#define VMBUS_CHANNEL_CONNECTION_BASE 16u
/* The message connection id the server tells a >= 5.0 guest to use for everything after INITIATE_CONTACT. */
#define VMBUS_SERVER_MSG_CONNECTION_ID VMBUS_MESSAGE_CONNECTION_ID

struct vmbus_server_notifier {
	void *ctx;
	/* Queue msg (a complete channel message, len <= 240, HVMSG_VMBUS type) for SINT2 of vp, in order.
	 * Called with the server lock held; must not call back into the server. Returns 0 or -errno
	 * (the message is then lost; the server logs it). Required. */
	int (*post_to_guest)(void *ctx, uint32_t vp, const void *msg, uint32_t len);
	/* Set event flag relid in vp's SIEF page slot 2 and interrupt vp. May be called by device threads
	 * WITHOUT the server lock (only while the channel is open): must be thread-safe. Required. */
	void (*signal_guest)(void *ctx, uint32_t vp, uint32_t relid);
	/* Optional: true while the SynIC queues are too long; HvPostMessage then returns
	 * HV_STATUS_INSUFFICIENT_BUFFERS without consuming the message, and the guest retries. */
	bool (*tx_busy)(void *ctx);
	/* Optional: a channel was opened / closed (e.g. to add or remove an ioeventfd for connection_id). */
	void (*channel_opened)(void *ctx, uint32_t relid, uint32_t connection_id);
	void (*channel_closed)(void *ctx, uint32_t relid, uint32_t connection_id);
	/* Optional (devices that complete I/O on the channel's thread need it): call cb(arg) on the thread
	 * that services the channel's doorbells whenever fd signals readable, edge-triggered (the fd is
	 * never read for the caller: an eventfd may simply count up). cb runs WITHOUT the server lock and
	 * must not call watch_fd/unwatch_fd. Returns 0 or -errno. */
	int (*watch_fd)(void *ctx, int fd, void (*cb)(void *arg), void *arg);
	/* Stops watching fd; when it returns, cb is not running and will not run again. */
	void (*unwatch_fd)(void *ctx, int fd);
	/* Optional: a device thread left work for the server outside a server call (a GPADL_TORNDOWN
	 * its release completed, sub-channels to offer): call vmbus_server_run_deferred soon, with the
	 * server lock, from a thread that is not in a server call (the host wakes its service thread).
	 * May be called from any thread, with or without the server lock; must not call into the
	 * server. Without it the work waits for the next vmbus_server_* entry call. */
	void (*work_pending)(void *ctx);
};

struct vmbus_server_config {
	const struct guest_mem *mem; /* guest RAM; memfd-backed so rings can be mapped */
	uint32_t nr_vps;             /* VP indexes 0..nr_vps-1 are valid targets */
	uint32_t max_version;        /* highest version accepted; 0 = VMBUS_VERSION_WIN10_V5_3. Below 5.0,
					posts on connection 4 get INVALID_CONNECTION_ID, as on old hosts */
	uint32_t max_gpadls;         /* live GPADLs per connection; 0 = 4096 */
	uint64_t max_gpadl_pages;    /* pages in all GPADLs; 0 = 1 Mi pages (8 MiB of host bookkeeping) */
};

/* Creates a disconnected server. Copies cfg and notifier. Returns 0, -EINVAL or -ENOMEM. */
int vmbus_server_create(const struct vmbus_server_config *cfg, const struct vmbus_server_notifier *n,
			struct vmbus_server **out);

/* Closes every channel (device close callbacks run), frees devices and GPADLs. NULL is fine. */
void vmbus_server_destroy(struct vmbus_server *s);

/* ENTRY: the guest's HvPostMessage. vp: the calling VP; connection_id: bits 23:0 of the input;
 * message_type and payload/len: as in the input page (len = payload_size, may exceed 240: refused).
 * Returns the HV status for RAX: HV_STATUS_SUCCESS (consumed, even when the message was malformed and
 * dropped, as on Hyper-V), HV_STATUS_INVALID_CONNECTION_ID (not a message port of this host),
 * HV_STATUS_INVALID_PARAMETER (bad type or size), HV_STATUS_INSUFFICIENT_BUFFERS (tx_busy: retry). */
uint16_t vmbus_server_post_message(struct vmbus_server *s, uint32_t vp, uint32_t connection_id,
				   uint32_t message_type, const void *payload, uint32_t len);

/* ENTRY: the guest's HvSignalEvent on connection_id (the channel's offer connection_id). Calls the
 * device's rx_ready when the channel is open. Returns HV_STATUS_SUCCESS or
 * HV_STATUS_INVALID_CONNECTION_ID (no offered channel has that id). */
uint16_t vmbus_server_signal_event(struct vmbus_server *s, uint32_t connection_id);

/* ENTRY: VM reset. Like UNLOAD but sends nothing: channels closed, GPADLs dropped, disconnected. */
void vmbus_server_reset(struct vmbus_server *s);

/* ENTRY: does what devices asked for from their own threads (notifier.work_pending): offers the
 * sub-channels requested and sends the GPADL_TORNDOWNs that waited for a device's release. Every
 * other entry call does it too, before it returns. Cheap when there is nothing to do. */
void vmbus_server_run_deferred(struct vmbus_server *s);

/* The server's state for a saved VM (struct savestate_vmbus and what follows it, proto/savestate.h):
 * the connection, every GPADL, every device's channels and their rings' GPADLs. Server lock held,
 * the vCPUs paused. Allocates *out (*len bytes). 0, -ENOMEM, or -EBUSY when the bus is between two
 * states that cannot be saved (a GPADL half sent or being torn down, a channel rescinded and not yet
 * released): the guest finishes those by itself, so a later save succeeds. */
int vmbus_server_save(struct vmbus_server *s, uint8_t **out, size_t *len);
/* Loads what vmbus_server_save wrote into a server that never connected, with the same devices
 * registered in the same order: the connection, the GPADLs (checked as the guest's messages are),
 * the channels' relids and offers, and opens the channels that were open (mapping their rings,
 * calling the devices' open callbacks and notifier.channel_opened; nothing is sent to the guest but
 * what the devices send at open). buf is host input: every count, index, relid, GPADL and page is
 * checked. Server lock held. 0, or -EINVAL with a reason in err; on failure the server is reset. */
int vmbus_server_restore(struct vmbus_server *s, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* After a restore: runs every open channel's rx_ready once, for packets the guest left in its rings
 * before the save (their signal was consumed then). Server lock held. */
void vmbus_server_kick_open(struct vmbus_server *s);

/* Negotiated version, 0 when disconnected. */
uint32_t vmbus_server_version(const struct vmbus_server *s);
/* The VP that receives channel messages (INITIATE_CONTACT.target_vcpu). */
uint32_t vmbus_server_message_vp(const struct vmbus_server *s);

/* ------------------------------------------------------------------------------------------------
 * Device API. The concurrency model (one for every device):
 *  - A device gets its channel at open. Its callbacks run on the thread that services the channel
 *    (the host's service thread for an ioeventfd doorbell, a vCPU for a port exit), with the server
 *    lock held by the caller; the device never takes or names that lock. Keep them short (rx_ready
 *    should drain a few packets or wake a worker).
 *  - Between open and close, the device may use the channel from the service thread (watch_fd
 *    callbacks) or from threads it owns: the channel API below, GPADL acquire/release and
 *    vmbus_device_offer_subchannels/subchannel_count are callable from any of them, with or without
 *    a server callback on the stack. Nothing a device calls blocks on the server lock.
 *  - vmbus_server_* (device add/remove included) still need the server lock: that is the VMM's
 *    business (storvsp_create, netvsp_create ... are called with it), not the device's threads'.
 *  - Completions arrive by an fd (eventfd, io_uring's): watch it on the service thread
 *    (vmbus_channel_watch_fd) or wait for it in a worker; nothing polls on a timer.
 */
struct vmbus_device_ops {
	/* The guest opened chan (rings mapped and validated). Return 0 or -errno (the guest gets a
	 * failed OPEN_RESULT). Signals raised here are delivered after OPEN_RESULT. */
	int (*open)(void *ctx, struct vmbus_channel *chan);
	/* chan is closing (guest CLOSECHANNEL, hot removal or reset): stop touching its rings and
	 * release its GPADL references before returning. */
	void (*close)(void *ctx, struct vmbus_channel *chan);
	/* The guest signalled chan: packets may be waiting, or space was freed in the host->guest ring. */
	void (*rx_ready)(void *ctx, struct vmbus_channel *chan);
	/* Placeholders for save/restore (not called yet). */
	int (*save)(void *ctx, struct vmbus_channel *chan, void *buf, size_t cap);
	int (*restore)(void *ctx, struct vmbus_channel *chan, const void *buf, size_t len);
};

struct vmbus_device_desc {
	const char *name; /* for log lines; the string must outlive the device */
	struct vmbus_guid class_id, instance_id;
	uint16_t chn_flags;      /* VMBUS_CHANNEL_* offer flags (e.g. NAMED_PIPE_MODE) */
	uint16_t mmio_megabytes;
	uint8_t user_def[VMBUS_OFFER_USER_DEFINED_BYTES]; /* pipe mode: u32 VMBUS_PIPE_TYPE_* first */
	uint16_t max_subchannels;
	const struct vmbus_device_ops *ops;
	void *ctx;
};

/* Registers a device; its primary channel is offered at the guest's REQUESTOFFERS, or at once when the
 * guest already asked (hot add). Returns 0 or -EINVAL / -ENOMEM. */
int vmbus_server_device_add(struct vmbus_server *s, const struct vmbus_device_desc *d, struct vmbus_device **out);

/* Hot removal: open channels are closed (ops->close runs), offered ones rescinded; the relids are freed
 * when the guest sends RELID_RELEASED. No callback runs after this returns; the handle is invalid. */
void vmbus_server_device_remove(struct vmbus_server *s, struct vmbus_device *dev);

/* Asks for n more sub-channels of dev (same GUIDs, sub_channel_index 1, 2, ...), at most
 * max_subchannels in all, while its primary channel is open (the guest asks on it). Callable from
 * any of the device's threads, in or out of a callback: the
 * request is recorded and the offers go out at the end of the current server call, or from
 * vmbus_server_run_deferred (notifier.work_pending). Returns the number of sub-channels the guest will
 * be offered in all (>= 0), or -EINVAL (too many, or the device is being removed).
 * When the guest closes the primary channel its sub-channels are rescinded (as on Hyper-V) and the
 * count starts again from 0: the guest asks for new ones after it opens the primary again. */
int vmbus_device_offer_subchannels(struct vmbus_device *dev, uint16_t n);

/* The sub-channels dev has asked for (offered, pending the guest's REQUESTOFFERS, or about to be
 * offered). Callable like vmbus_device_offer_subchannels. */
uint16_t vmbus_device_subchannel_count(const struct vmbus_device *dev);

/* ------------------------------------------------------------------------------------------------
 * Channel API for devices. Between open and close a device may use its channel from its own thread
 * without the server lock: the rings, send/recv and vmbus_channel_signal_guest.
 */
struct vmbus_ring *vmbus_channel_rx_ring(struct vmbus_channel *c); /* guest -> host (host reads) */
struct vmbus_ring *vmbus_channel_tx_ring(struct vmbus_channel *c); /* host -> guest (host writes) */
uint32_t vmbus_channel_relid(const struct vmbus_channel *c);
uint32_t vmbus_channel_connection_id(const struct vmbus_channel *c);
uint32_t vmbus_channel_target_vp(const struct vmbus_channel *c);
uint16_t vmbus_channel_subchannel_index(const struct vmbus_channel *c);
const uint8_t *vmbus_channel_open_userdata(const struct vmbus_channel *c); /* 120 bytes of OPENCHANNEL */
struct vmbus_device *vmbus_channel_device(struct vmbus_channel *c);
void vmbus_channel_set_priv(struct vmbus_channel *c, void *priv);
void *vmbus_channel_priv(const struct vmbus_channel *c);

/* dev's channels (primary first, by sub-channel index; an entry may be NULL), for the device's own
 * save and restore: *out is valid until the next server call. Server lock held. Returns how many. */
unsigned vmbus_device_channels(struct vmbus_device *dev, struct vmbus_channel *const **out);

/* Interrupts the guest for this channel (event flag relid on target_vp). */
void vmbus_channel_signal_guest(struct vmbus_channel *c);

/* Runs cb(arg) on the channel's service thread whenever fd becomes readable (see
 * vmbus_server_notifier.watch_fd: edge-triggered, without the server lock). Returns 0, or -EOPNOTSUPP
 * when the host has no service thread. Unwatch before closing fd. */
int vmbus_channel_watch_fd(struct vmbus_channel *c, int fd, void (*cb)(void *arg), void *arg);
void vmbus_channel_unwatch_fd(struct vmbus_channel *c, int fd);

/* Like vmbus_channel_send, but never signals: *signal_owed is set when the guest needs a signal, which
 * the caller sends once for a batch with vmbus_channel_signal_guest. */
int vmbus_channel_send_batched(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t trans_id,
			       const void *ext, uint32_t ext_len, const void *payload, uint32_t len,
			       bool *signal_owed);

/* Writes a packet to the host->guest ring (see vmbus_ring_write) and signals the guest if it needs it.
 * Returns 0, -EAGAIN (ring full: wait for rx_ready), -EMSGSIZE, -EINVAL or -EPROTO (channel broken). */
int vmbus_channel_send(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t trans_id,
		       const void *ext, uint32_t ext_len, const void *payload, uint32_t len);

/* Reads the next guest packet (see vmbus_ring_read). After a batch, call vmbus_channel_recv_done, which
 * publishes the read index and signals the guest if it was waiting for space. A -EPROTO ring is
 * logged once and stays broken until the guest reopens the channel. */
int vmbus_channel_recv(struct vmbus_channel *c, void *buf, uint32_t cap, uint32_t *len);
void vmbus_channel_recv_done(struct vmbus_channel *c);

/* A device's rx_ready for small control protocols (the integration services, the console devices),
 * called with the device's own lock held: drains c's receive ring into buf (cap bytes), handing each
 * INBAND packet's payload to fn; completions are skipped, other packet types dropped with a
 * rate-limited log line naming what. The ring is masked while draining and checked again after
 * unmasking (a packet that came in between would otherwise wait for a signal that never comes).
 * Stops early when *live becomes NULL (the channel went away under fn). */
typedef void (*vmbus_inband_fn)(void *ctx, const uint8_t *payload, uint32_t len, uint64_t trans);
void vmbus_channel_drain_inband(struct vmbus_channel *c, uint8_t *buf, uint32_t cap, const char *what,
				vmbus_inband_fn fn, void *ctx, struct vmbus_channel *const *live);

/* GPADLs a device uses beyond the ring (e.g. netvsc's receive buffer). Acquire returns the complete
 * GPADL with that id created for this channel's relid (NULL if none or being torn down) and holds it:
 * its GPADL_TORNDOWN waits for the release, and goes out after it (at the end of the current server
 * call, or from vmbus_server_run_deferred). Callable from any of the device's threads while the
 * channel is open, and from its close callback (the last chance to release). */
struct vmbus_gpadl *vmbus_channel_gpadl_acquire(struct vmbus_channel *c, uint32_t gpadl_id);
void vmbus_channel_gpadl_release(struct vmbus_channel *c, struct vmbus_gpadl *g);

#endif
