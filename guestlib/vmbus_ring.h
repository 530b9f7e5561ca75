/* VMBus ring buffer engine, one implementation for both ends of a channel (freestanding C).
 *
 * A channel has two rings. The host reads the guest->host ring and writes the host->guest ring; the
 * guest does the opposite. The rules are symmetric, so the host (src/vmbus) and the guest library
 * (vmbus_client) share this code; they differ only in which ring they read.
 *
 * The other end is hostile: every index it writes is validated (below the data size, 8-byte aligned),
 * every packet header is bounds-checked before a byte is copied, and a corrupt ring enters a sticky
 * failed state (-VMBUS_EPROTO) instead of ever reading or writing out of bounds.
 *
 * Concurrency: one reader and one writer per ring, each single-threaded (the caller serialises its own
 * side). The other side may be running on another CPU at any time.
 *
 * Barrier pairs (same protocol as Linux drivers/hv/ring_buffer.c):
 *  [A] writer: packet bytes, then RELEASE store of write_index   pairs with
 *      reader: ACQUIRE load of write_index, then packet bytes.
 *  [B] reader: packet loads, then RELEASE store of read_index     pairs with
 *      writer: ACQUIRE load of read_index, then overwrite of the freed bytes.
 *  [C] writer: store write_index; FULL barrier; load interrupt_mask, then read_index   pairs with
 *      reader (vmbus_ring_unmask): store interrupt_mask = 0; FULL barrier; load write_index.
 *      Either the writer sees the unmasked ring and signals, or the reader sees the new packet.
 *  [D] writer (ring full): store pending_send_sz; FULL barrier; reload read_index   pairs with
 *      reader (vmbus_ring_read_commit): store read_index; FULL barrier; load pending_send_sz.
 *      Either the writer sees the freed space, or the reader sees pending_send_sz and signals.
 */
#ifndef GEN2VM_GUESTLIB_VMBUS_RING_H
#define GEN2VM_GUESTLIB_VMBUS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/vmbus.h"

/* Error numbers (returned negated). Linux errno values, so VMM code can compare them with -EAGAIN etc.;
 * freestanding code has no <errno.h>. */
#define VMBUS_EIO       5
#define VMBUS_ENOMEM    12
#define VMBUS_EBUSY     16
#define VMBUS_ENODEV    19
#define VMBUS_EINVAL    22
#define VMBUS_ENOSPC    28
#define VMBUS_EAGAIN    11
#define VMBUS_EPROTO    71
#define VMBUS_EMSGSIZE  90
#define VMBUS_ETIMEDOUT 110

struct vmbus_ring {
	struct vmbus_ring_header *hdr; /* shared with the other end */
	uint8_t *data;                 /* data area, size bytes (twice that if mirrored) */
	uint32_t size;
	bool mirrored;       /* data is mapped twice back to back: a wrapping copy needs no split */
	bool failed;         /* the other end corrupted the ring; sticky until re-init */
	uint32_t priv_read;  /* reader: first unconsumed byte (published by vmbus_ring_read_commit) */
	uint32_t start_read; /* reader: read_index as last published */
	uint32_t priv_write; /* writer: our write_index (the shared copy is never trusted) */
};

/* Binds a ring to its header page and data area (data_size: a multiple of 8, at least 4096, at most
 * 2 GiB). Adopts the indices in the header, which must be valid (0 for a fresh ring).
 * Returns 0 or -VMBUS_EINVAL (bad size) / -VMBUS_EPROTO (bad indices in the header). */
int vmbus_ring_init(struct vmbus_ring *r, void *hdr, void *data, uint32_t data_size, bool mirrored);

/* --- reader side --- */

/* Copies the next packet (descriptor, body and padding: desc.len8 * 8 bytes; no trailer) into buf and
 * consumes it (privately: vmbus_ring_read_commit publishes). *len gets the packet length.
 * Returns 0; -VMBUS_EAGAIN when the ring is empty; -VMBUS_EMSGSIZE when cap < *len (nothing consumed);
 * -VMBUS_EPROTO when the ring is corrupt (bad write_index, bad descriptor, packet longer than the data
 * present). The descriptor in buf is the validated one even if the other end rewrites the ring. */
int vmbus_ring_read(struct vmbus_ring *r, void *buf, uint32_t cap, uint32_t *len);

/* Publishes the consumed packets ([B]) and applies the pending_send_sz rule ([D]): returns true when
 * the writer was waiting for space and now has more than it asked for, i.e. the caller must signal. */
bool vmbus_ring_read_commit(struct vmbus_ring *r);

/* Bytes of unread packets (0 when empty or failed). */
uint32_t vmbus_ring_avail_read(struct vmbus_ring *r);

/* interrupt_mask: set it while draining so the writer does not signal for every packet. After
 * vmbus_ring_unmask, drain again if it returns true (a packet arrived while masked, [C]). */
void vmbus_ring_mask(struct vmbus_ring *r);
bool vmbus_ring_unmask(struct vmbus_ring *r);

/* --- writer side --- */

/* Writes one packet: a descriptor {type, offset8 = (16 + ext_len) / 8, len8, flags, trans_id}, then
 * ext (ext_len bytes, a multiple of 8: the type-specific header after the descriptor), then payload
 * (len bytes), zero padding to 8 bytes and the trailer. *signal (may be NULL) is set when the reader
 * must be signalled: its interrupt_mask is 0 and the ring was empty before this packet.
 * Returns 0; -VMBUS_EAGAIN when the ring is full (pending_send_sz is then set: the reader signals once
 * it has freed enough, retry then); -VMBUS_EMSGSIZE when the packet could never fit;
 * -VMBUS_EINVAL for ext_len not a multiple of 8; -VMBUS_EPROTO when the ring is corrupt. */
int vmbus_ring_write(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		     const void *ext, uint32_t ext_len, const void *payload, uint32_t len, bool *signal);

/* Bytes that a write could use now, trailer included ("full" means free <= packet size). */
uint32_t vmbus_ring_avail_write(struct vmbus_ring *r);

/* Total ring bytes (descriptor, padding and trailer included) of a packet. */
static inline uint32_t vmbus_ring_packet_bytes(uint32_t ext_len, uint32_t len)
{
	return ((uint32_t)sizeof(struct vmbus_packet_descriptor) + ext_len + len + 7u) / 8u * 8u +
	       VMBUS_PACKET_TRAILER_SIZE;
}

/* Small freestanding helpers (no libc in the firmware and test guests). */
void vmbus_mem_copy(void *dst, const void *src, size_t n);
void vmbus_mem_zero(void *dst, size_t n);

#endif
