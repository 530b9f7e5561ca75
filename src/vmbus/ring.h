/* Host-side packet parsing: the descriptor-specific headers of packets read from a guest ring
 * (INBAND, COMP, GPA_DIRECT with any number of ranges, XFER_PAGES), every length bounds-checked.
 * Parse the copy vmbus_ring_read made (never the shared ring: the guest could change it meanwhile).
 * Writing is vmbus_channel_send / vmbus_ring_write with the type-specific header as `ext`.
 */
#ifndef GEN2VM_VMBUS_RING_H
#define GEN2VM_VMBUS_RING_H

#include <stdint.h>

#include "gen2vm/proto/vmbus.h"
#include "vmbus_ring.h"

struct vmbus_packet {
	uint16_t type, flags;
	uint64_t trans_id;
	const uint8_t *payload; /* at offset8 * 8 */
	uint32_t payload_len;   /* len8 * 8 - offset8 * 8 (includes the sender's padding) */
	/* VM_PKT_DATA_USING_GPA_DIRECT: range_count ranges, all validated, at `ranges` */
	uint32_t range_count;
	const uint8_t *ranges;
	/* VM_PKT_DATA_USING_XFER_PAGES */
	uint16_t xfer_pageset_id;
	uint8_t xfer_sender_owns;
	uint32_t xfer_count;
	const uint8_t *xfer_ranges; /* xfer_count struct vmbus_xfer_page_range, unaligned */
};

/* Parses a packet of len bytes (as returned by vmbus_ring_read). Returns 0 or -EPROTO (bad offsets,
 * ranges that do not fit before the payload, empty or overlong GPA ranges). */
int vmbus_packet_parse(const void *buf, uint32_t len, struct vmbus_packet *p);

/* One GPA_DIRECT range: byte_count bytes from byte_offset into the first of nr_pfns pages. */
struct vmbus_packet_range {
	uint32_t byte_count, byte_offset, nr_pfns;
	const uint8_t *pfns; /* nr_pfns u64, unaligned: use vmbus_packet_range_pfn */
};

/* Iterates the ranges of a parsed GPA_DIRECT packet: *cursor starts at 0. Returns 1 with *r filled,
 * 0 after the last one. (Parse already validated them.) */
int vmbus_packet_next_range(const struct vmbus_packet *p, uint64_t *cursor, struct vmbus_packet_range *r);
uint64_t vmbus_packet_range_pfn(const struct vmbus_packet_range *r, uint32_t i);
struct vmbus_xfer_page_range vmbus_packet_xfer_range(const struct vmbus_packet *p, uint32_t i);

#endif
