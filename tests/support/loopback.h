/* Loopback guest: the guest-side client library wired straight to a server in one process, over a
 * guest_mem, with no KVM. Unit tests, fuzzers and benches drive the host side through it.
 *
 * Messages the server posts are queued here (as the SynIC would) and handed to the client in order;
 * signals in both directions are synchronous calls (guest HvSignalEvent -> device rx_ready at once).
 * Device fds watched with vmbus_channel_watch_fd are serviced by vmbus_loopback_wait on the caller's
 * thread. Not thread-safe; the server lock is implicit (one thread): device threads' deferred work
 * (vmbus_server_run_deferred) runs when the guest looks for a message and finds none queued.
 */
#ifndef GEN2VM_SUPPORT_LOOPBACK_H
#define GEN2VM_SUPPORT_LOOPBACK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmbus/server.h"
#include "vmbus/watch.h"
#include "vmbus_client.h"
#include "vmm/memory.h"

struct vmbus_loopback_msg {
	uint32_t vp, len;
	uint64_t buf[HV_MESSAGE_PAYLOAD_QWORD_COUNT];
};

struct vmbus_loopback {
	struct guest_mem mem;
	struct vmbus_server *srv;
	struct vmbus_client cl;
	struct vmbus_client_ops ops;
	struct vmbus_loopback_msg *q; /* ring of queued host->guest messages */
	uint32_t q_head, q_len, q_cap;
	uint32_t busy_limit;          /* tx_busy() above this many queued messages */
	uint64_t alloc_next, alloc_base, alloc_end; /* bump allocator for guest pages */
	uint32_t alloc_live;
	uint64_t host_signals;  /* signal_guest calls */
	uint64_t guest_signals; /* HvSignalEvent calls */
	uint32_t last_signal_vp;
	uint8_t events[HV_EVENT_FLAGS_COUNT / 8]; /* relid bits set by signal_guest */
	uint32_t opened, closed; /* channel_opened / channel_closed notifications */
	uint32_t work_pending;   /* notifier.work_pending calls (atomic: device threads make them) */
	int epfd;                /* watched device fds (vmbus_channel_watch_fd) */
	/* When set, the guest's HvSignalEvent calls are only recorded, and vmbus_loopback_wait delivers
	 * them: the device then sees the guest's burst of packets at once, as the VMM's service thread
	 * does when it wakes on a doorbell (benches). Clear: delivered at once (unit tests). */
	bool defer_signals;
	uint32_t deferred[64], nr_deferred;
	struct vmbus_watches watches;
};

/* Creates guest RAM of ram_size bytes (see guest_mem_init), a server with nr_vps VPs (cfg may be NULL
 * for defaults; its mem is ignored) and an initialised, unconnected client. Returns 0 or -errno. */
int vmbus_loopback_init(struct vmbus_loopback *lb, uint64_t ram_size, uint32_t nr_vps,
			const struct vmbus_server_config *cfg);
void vmbus_loopback_destroy(struct vmbus_loopback *lb);

/* The loopback's service "thread" is the caller's: delivers the guest signals defer_signals held
 * back (then only checks the fds), else waits up to timeout_ms (0: just checks, -1: for ever) for a
 * watched device fd (I/O completions); runs the callbacks of those that fired. Returns how many
 * signals and callbacks ran, or -errno. */
int vmbus_loopback_wait(struct vmbus_loopback *lb, int timeout_ms);

/* Tests and clears the event flag of relid. */
bool vmbus_loopback_event_take(struct vmbus_loopback *lb, uint32_t relid);

/* Pops the next queued host->guest message into buf (240 bytes); returns its length, or -1 if none.
 * With none queued, first runs the server's deferred work (which may queue some). */
int vmbus_loopback_pop(struct vmbus_loopback *lb, void *buf);

/* Posts a raw message as the guest would (HvPostMessage from VP 0); returns the HV status. */
uint16_t vmbus_loopback_post(struct vmbus_loopback *lb, uint32_t connection_id, const void *msg, uint32_t len);

#endif
