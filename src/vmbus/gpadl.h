/* GPADLs (guest physical address descriptor lists) on the host: assembling them from GPADL_HEADER and
 * GPADL_BODY messages, and mapping guest pages into one contiguous host view.
 *
 * Guest RAM lives in a memfd, so any list of guest pages can be mapped back to back into a contiguous
 * host virtual range with mmap(MAP_FIXED | MAP_SHARED) from that memfd: devices and the ring code then
 * see a GPADL as plain memory, and a ring's data area can be mapped twice so a packet that wraps is
 * still contiguous.
 *
 * Not thread-safe: the server serialises assembly; a completed GPADL is immutable.
 */
#ifndef GEN2VM_VMBUS_GPADL_H
#define GEN2VM_VMBUS_GPADL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

struct vmbus_gpadl_range {
	uint32_t byte_count;
	uint32_t byte_offset; /* < 4096, into the range's first page */
	uint32_t pfn_first;   /* index of its first page in vmbus_gpadl.pfns */
	uint32_t nr_pfns;
};

struct vmbus_gpadl {
	uint32_t id;    /* the guest's handle */
	uint32_t relid; /* the channel it was created for */
	uint32_t nr_ranges;
	uint32_t nr_pfns;
	struct vmbus_gpadl_range *ranges;
	uint64_t *pfns; /* every one checked to be a page of guest RAM */

	/* assembly state (private to gpadl.c) */
	uint32_t want_ranges;  /* rangecount of the header */
	uint16_t range_buflen; /* as sent: the buffer length truncated to 16 bits */
	uint32_t range_left;   /* pfns still to come in the current range */
	uint64_t buf_bytes;    /* range-buffer bytes received */
	uint32_t cap_pfns, cap_ranges;
	uint64_t reserved_pfns; /* pages of all ranges announced so far (counted against the budget) */
	bool complete;

	/* server bookkeeping (private to server.c) */
	uint32_t refs;
	bool tearing_down; /* GPADL_TEARDOWN received; TORNDOWN goes out when refs drops to 0 */
	bool orphaned;     /* the connection was reset while referenced: free on the last release */
	struct vmbus_gpadl *next;
};

/* Starts assembling a GPADL from a GPADL_HEADER. rangecount must be 1..VMBUS_GPADL_MAX_RANGES.
 * Returns 0 or -EINVAL. */
#define VMBUS_GPADL_MAX_RANGES 16384u
int vmbus_gpadl_begin(struct vmbus_gpadl *g, uint32_t id, uint32_t relid, uint32_t rangecount,
		      uint16_t range_buflen);

/* Feeds range-buffer bytes (a multiple of 8: range headers and pfns). Every pfn is checked against
 * mem; *budget is the number of pages this GPADL may still add (decremented as ranges are accepted).
 * Returns 1 when the GPADL is now complete, 0 when more bytes are expected, -EPROTO for a malformed
 * buffer (bad range, bytes beyond the last range, range_buflen mismatch), -EFAULT for a page outside
 * guest RAM, -ENOSPC when over budget, -ENOMEM. After an error the GPADL must only be freed. */
int vmbus_gpadl_feed(struct vmbus_gpadl *g, const void *bytes, uint32_t len, const struct guest_mem *mem,
		     uint64_t *budget);

/* Frees the arrays (not g itself). Safe on a zeroed struct. */
void vmbus_gpadl_release_storage(struct vmbus_gpadl *g);

/* A contiguous host view of guest pages. */
struct vmbus_view {
	uint8_t *base;
	size_t len;
};

/* Maps pages pfns[0..n) back to back, then pages pfns[repeat_from..n) once more right after them
 * (repeat_from == n: no repetition). Runs of consecutive pages become one mmap each.
 * mem must be memfd-backed and every pfn inside it. Returns 0, -EINVAL, -EFAULT (pfn not in RAM),
 * -ENOTSUP (memory not in a memfd) or -errno from mmap. */
int vmbus_view_map(struct vmbus_view *v, const struct guest_mem *mem, const uint64_t *pfns, uint32_t n,
		   uint32_t repeat_from);

/* Unmaps; safe on a zeroed view. */
void vmbus_view_unmap(struct vmbus_view *v);

#endif
