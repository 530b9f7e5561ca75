/* The firmware's memory map, page allocator and pool (UEFI 2.10 section 7.2).
 *
 * The map starts from the RAM ranges the VMM hands over (efi_mem_add) and is kept as a sorted array of
 * non-overlapping ranges, adjacent ranges of equal type and attributes merged. Every change of the map
 * (pages allocated or freed, including pages taken by the pool) bumps the map key, so the key that
 * GetMemoryMap returned is stale as soon as the map it described is, which is what ExitBootServices
 * checks (efi_mem_check_key).
 *
 * Addresses are identity-mapped: the allocator writes pool headers and free lists at the physical
 * addresses it hands out (host unit tests add a host buffer's address as "RAM"). Nothing here zeroes or
 * scans memory it has not been asked for: allocation cost is proportional to the number of map ranges.
 *
 * Not thread-safe; the boot-services layer serialises callers (raised TPL).
 */
#ifndef GEN2VM_GUESTLIB_EFI_MEM_H
#define GEN2VM_GUESTLIB_EFI_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

#define EFI_MEM_MAX_RANGES 256
/* The stride GetMemoryMap reports: larger than sizeof(EFI_MEMORY_DESCRIPTOR) on purpose, as callers
 * must step by DescriptorSize (UEFI 7.2: "the size of the descriptor may grow"). */
#define EFI_MEM_DESC_SIZE 48
#define EFI_MEM_POOL_CLASSES 8  /* 32, 64, ... 4096-byte chunks */
#define EFI_MEM_POOL_TYPES 8    /* distinct memory types that may own pool chunks */

struct efi_mem_range {
	uint64_t start; /* page aligned */
	uint64_t pages;
	uint64_t attr;
	uint32_t type;  /* EFI_MEMORY_TYPE or an OEM/OS value */
};

struct efi_pool_arena {
	uint32_t type;
	bool used;
	void *free[EFI_MEM_POOL_CLASSES];
};

struct efi_mem {
	struct efi_mem_range r[EFI_MEM_MAX_RANGES];
	uint32_t n;
	UINTN map_key;
	/* AllocateAnyPages takes the highest free range that ends at or below this address (0: none),
	 * then falls back to any range: keeps loaders that truncate pointers working. */
	uint64_t any_limit;
	struct efi_pool_arena arena[EFI_MEM_POOL_TYPES];
};

/* An empty map (no RAM). */
void efi_mem_init(struct efi_mem *m);

/* Adds a range to the map: RAM as EfiConventionalMemory, or reserved/ACPI/MMIO ranges as their type.
 * EFI_INVALID_PARAMETER when unaligned, empty, overflowing or overlapping an existing range;
 * EFI_OUT_OF_RESOURCES when the map is full. */
EFI_STATUS efi_mem_add(struct efi_mem *m, uint64_t start, uint64_t pages, uint32_t type, uint64_t attr);

/* AllocatePages: *addr is the limit (AllocateMaxAddress) or the address (AllocateAddress) on entry and
 * the allocation on success. Errors as UEFI 7.2: EFI_INVALID_PARAMETER (bad type, unaligned address,
 * zero or overflowing page count), EFI_OUT_OF_RESOURCES (no room, or map full), EFI_NOT_FOUND (an
 * AllocateAddress range that is not entirely free RAM). */
EFI_STATUS efi_mem_allocate_pages(struct efi_mem *m, EFI_ALLOCATE_TYPE how, uint32_t type, uint64_t pages,
				  EFI_PHYSICAL_ADDRESS *addr);

/* FreePages: the whole range must have been allocated (a single allocated type throughout, not free
 * RAM and not a range added as reserved); else EFI_NOT_FOUND. Unaligned: EFI_INVALID_PARAMETER. */
EFI_STATUS efi_mem_free_pages(struct efi_mem *m, EFI_PHYSICAL_ADDRESS addr, uint64_t pages);

/* GetMemoryMap, with the semantics and errors of UEFI 7.2 (EFI_BUFFER_TOO_SMALL sets *map_size to the
 * size needed). Descriptors are EFI_MEM_DESC_SIZE bytes apart. */
EFI_STATUS efi_mem_get_map(struct efi_mem *m, UINTN *map_size, EFI_MEMORY_DESCRIPTOR *map, UINTN *map_key,
			   UINTN *desc_size, uint32_t *desc_version);

/* ExitBootServices' check: EFI_SUCCESS when key is the current map key, else EFI_INVALID_PARAMETER. */
EFI_STATUS efi_mem_check_key(const struct efi_mem *m, UINTN key);

/* AllocatePool/FreePool. Pool memory is 16-byte aligned (UEFI asks for 8) and reported in the map as
 * the requested type. Small requests come from per-type chunk lists that never shrink; large ones are
 * whole pages. FreePool of a pointer that is not a live pool allocation: EFI_INVALID_PARAMETER. */
EFI_STATUS efi_mem_allocate_pool(struct efi_mem *m, uint32_t type, UINTN size, void **buf);
EFI_STATUS efi_mem_free_pool(struct efi_mem *m, void *buf);

/* The type of the range holding addr, or -1 when addr is outside the map. */
int64_t efi_mem_type_at(const struct efi_mem *m, uint64_t addr);

#endif
