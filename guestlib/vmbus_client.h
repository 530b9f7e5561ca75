/* VMBus guest side (freestanding C): connect, list offers, GPADLs, open/close channels, packets.
 *
 * Used by our firmware, the test guests and the host-side loopback guest (src/vmbus/loopback.c).
 * Everything that touches the platform goes through struct vmbus_client_ops, so the same code runs
 * inside a VM (hypercalls, SynIC pages) and in a host process wired straight to the server.
 * Single-threaded: the caller serialises calls on one client. Functions return 0 or -VMBUS_E*.
 * Requests wait for their answer through ops->next_message; messages that arrive meanwhile
 * (offers, rescinds) are recorded, so nothing is lost.
 */
#ifndef GEN2VM_GUESTLIB_VMBUS_CLIENT_H
#define GEN2VM_GUESTLIB_VMBUS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/vmbus.h"
#include "vmbus_ring.h"

struct vmbus_client_ops {
	void *ctx;
	/* HvPostMessage(connection_id, message type 1, msg, len). Returns the HV status. */
	uint16_t (*post_message)(void *ctx, uint32_t connection_id, const void *msg, uint32_t len);
	/* Next VMBus message of SINT2 (payload only) into buf (240 bytes, 8-aligned), *len its size; the
	 * implementation frees the slot (EOM). Returns 0, or -VMBUS_ETIMEDOUT when none came in time. */
	int (*next_message)(void *ctx, void *buf, uint32_t *len);
	/* HvSignalEvent(connection_id, flag 0). */
	void (*signal_event)(void *ctx, uint32_t connection_id);
	/* n zeroed, page-aligned, virtually contiguous guest pages, or NULL; and their release. */
	void *(*alloc_pages)(void *ctx, uint32_t n);
	void (*free_pages)(void *ctx, void *p, uint32_t n);
	/* Guest physical address of a pointer returned by alloc_pages (or inside such pages). */
	uint64_t (*virt_to_phys)(void *ctx, const void *p);
};

#define VMBUS_CLIENT_MAX_OFFERS 64u
#define VMBUS_CLIENT_MAX_RELID_RESCINDS 64u

struct vmbus_client_offer {
	struct vmbus_channel_offer_channel msg;
	bool rescinded;
};

struct vmbus_client {
	const struct vmbus_client_ops *ops;
	bool connected;
	uint32_t version;
	uint32_t msg_conn_id; /* connection for every message after INITIATE_CONTACT */
	uint32_t target_vcpu;
	bool all_offers_delivered;
	uint32_t nr_offers;
	struct vmbus_client_offer offers[VMBUS_CLIENT_MAX_OFFERS];
	uint32_t next_gpadl;
	void *legacy_pages; /* interrupt page + 2 monitor pages for versions < 5.0 */
	uint64_t msg_buf[HV_MESSAGE_PAYLOAD_QWORD_COUNT];
};

struct vmbus_client_channel {
	struct vmbus_client *cl;
	uint32_t relid;
	uint32_t connection_id;
	uint32_t ring_gpadl;
	uint8_t *ring_mem;
	uint32_t ring_pages;
	struct vmbus_ring out; /* guest -> host: we write */
	struct vmbus_ring in;  /* host -> guest: we read */
	bool open;
};

void vmbus_client_init(struct vmbus_client *cl, const struct vmbus_client_ops *ops);

/* Negotiates the highest version <= max_version (0: no limit) the host accepts, trying 5.3, 5.2, 5.1,
 * 5.0, 4.1, 4.0, 3.0, 2.4 like Linux. Returns 0 (cl->version set), -VMBUS_ENODEV when none is
 * accepted, -VMBUS_ETIMEDOUT / -VMBUS_EIO on transport failure. */
int vmbus_client_connect(struct vmbus_client *cl, uint32_t target_vcpu, uint32_t max_version);

/* Sends REQUESTOFFERS and collects offers until ALLOFFERS_DELIVERED. */
int vmbus_client_request_offers(struct vmbus_client *cl);

/* The live (not rescinded) offer of class_id with that sub_channel_index, or NULL. */
const struct vmbus_client_offer *vmbus_client_find_offer(const struct vmbus_client *cl,
							  const struct vmbus_guid *class_id, uint16_t sub_index);

/* Handles one pending asynchronous message (offer, rescind), if any. Returns 0 when one was handled,
 * -VMBUS_ETIMEDOUT when none was waiting. */
int vmbus_client_poll(struct vmbus_client *cl);

/* Creates a GPADL for relid over size bytes at buf (page aligned, alloc_pages memory), or over the n
 * pages of an explicit pfn list (pages may repeat). Waits for GPADL_CREATED. *gpadl gets the handle.
 * -VMBUS_EIO when the host refused it. */
int vmbus_client_gpadl_create(struct vmbus_client *cl, uint32_t relid, const void *buf, uint32_t size,
			      uint32_t *gpadl);
int vmbus_client_gpadl_create_pfns(struct vmbus_client *cl, uint32_t relid, const uint64_t *pfns, uint32_t n,
				   uint32_t *gpadl);
/* GPADL_TEARDOWN, waits for GPADL_TORNDOWN. */
int vmbus_client_gpadl_teardown(struct vmbus_client *cl, uint32_t relid, uint32_t gpadl);

/* Allocates rings (send_bytes for guest->host, recv_bytes for host->guest: page multiples, >= 4096,
 * header pages added), creates their GPADL and opens relid on target_vp. -VMBUS_EIO when the host
 * answers a failed OPEN_RESULT (the ring memory is then released). */
int vmbus_client_channel_open(struct vmbus_client *cl, struct vmbus_client_channel *ch, uint32_t relid,
			      uint32_t send_bytes, uint32_t recv_bytes, uint32_t target_vp, const void *userdata,
			      uint32_t userdata_len);
/* CLOSECHANNEL, then tears the ring GPADL down and frees the rings. */
int vmbus_client_channel_close(struct vmbus_client_channel *ch);

/* MODIFYCHANNEL (>= 4.1); for 5.3 waits for the response (-VMBUS_EIO if it failed). */
int vmbus_client_modify_channel(struct vmbus_client *cl, uint32_t relid, uint32_t target_vp);
/* RELID_RELEASED after a rescind; forgets the offer. */
int vmbus_client_release_relid(struct vmbus_client *cl, uint32_t relid);
/* UNLOAD, waits for UNLOAD_RESPONSE; the client is then disconnected (offers forgotten). */
int vmbus_client_unload(struct vmbus_client *cl);

/* Packets: the ring engine plus the signalling rule (signal the host when vmbus_ring_* says so). */
int vmbus_client_send(struct vmbus_client_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		      const void *ext, uint32_t ext_len, const void *payload, uint32_t len);
int vmbus_client_recv(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len);
void vmbus_client_recv_done(struct vmbus_client_channel *ch);

/* Raw channel message (tests): posts on the negotiated message connection, retrying
 * INSUFFICIENT_BUFFERS. Returns 0 or -VMBUS_EIO with *hv_status (may be NULL) set. */
int vmbus_client_post(struct vmbus_client *cl, uint32_t connection_id, const void *msg, uint32_t len,
		      uint16_t *hv_status);

#endif
