/* Test helper: builds x86 page tables inside a guest_mem so the page walk and the instruction
 * completer can be tested without a CPU. Intermediate entries are P|W|U so the leaf's flags
 * decide; tests that need restrictive upper levels edit them through guest_pt_entry(). */
#ifndef GEN2VM_TESTS_GUEST_PT_H
#define GEN2VM_TESTS_GUEST_PT_H

#include <stdint.h>

#include "vmm/memory.h"

struct guest_pt {
	struct guest_mem *m;
	unsigned levels; /* 5, 4 (long mode), 3 (PAE), 2 (32-bit) */
	uint64_t root;   /* the CR3 value */
	uint64_t next, end;
};

/* Tables are allocated from [pool, pool+size) (4 KiB pages). Returns 0 or -ENOMEM. */
int guest_pt_init(struct guest_pt *pt, struct guest_mem *m, unsigned levels, uint64_t pool,
		  uint64_t size);

/* Maps la to pa with a leaf at leaf_level (1: 4 KiB, 2: 2 MiB or 4 MiB, 3: 1 GiB); flags are
 * the leaf's bits (P, W, U, NX...; PS is added for large leaves). Returns 0 or -ENOMEM. */
int guest_pt_map(struct guest_pt *pt, uint64_t la, uint64_t pa, unsigned leaf_level,
		 uint64_t flags);

/* Host pointer to the entry for la at level (levels..1), or NULL when the path is not present. */
void *guest_pt_entry(struct guest_pt *pt, uint64_t la, unsigned level);

#endif
