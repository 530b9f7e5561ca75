/* Guest physical memory: one memfd holds all guest RAM, mapped once into the VMM.
 *
 * Layout (gen2 machine): RAM from GPA 0 up to the 32-bit MMIO gap, the rest above 4 GiB.
 * The memfd can be shared with device threads, other processes and snapshot code.
 *
 * All accessors range-check: a GPA range is valid only when every byte lies in guest RAM.
 * They never fault on a guest-supplied address.
 */
#ifndef GEN2VM_VMM_MEMORY_H
#define GEN2VM_VMM_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4
#define GUEST_MMIO_GAP_START 0xE0000000ull /* low RAM ends here: [3.5 GiB, 4 GiB) is MMIO */
#define GUEST_HIGH_RAM_START 0x100000000ull

struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	uint64_t fd_offset; /* offset of this region inside the memfd */
};

struct guest_mem {
	struct guest_mem_region region[GUEST_MEM_MAX_REGIONS];
	unsigned nr_regions;
	uint64_t ram_size; /* total bytes of RAM */
	int memfd;         /* -1 for memory not backed by a memfd */
	uint8_t *base;     /* the whole memfd mapping */
};

/* Allocates ram_size bytes (multiple of 2 MiB, at least 2 MiB) of RAM in a memfd and maps it,
 * split below the MMIO gap and above 4 GiB. The pages are allocated lazily by the host kernel.
 * Returns 0, -EINVAL (bad size), -ENOMEM (host cannot map it) or another -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t ram_size);

/* Makes every byte of RAM zero again, giving the host its pages back (a restore starts from zeros:
 * the saved state leaves zero pages out). No vCPU may run. 0 or -errno. */
int guest_mem_clear(struct guest_mem *m);

/* Unmaps and closes. Safe on a zeroed or already destroyed struct. */
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) if the whole range is inside one RAM region, else NULL.
 * len 0 is valid when gpa is in RAM. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copies to/from guest RAM; the range must lie inside one region.
 * Return 0, or -EFAULT when any byte is outside RAM (then nothing is copied). */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, size_t len);

/* True when [gpa, gpa+len) lies wholly in guest RAM (overflow-safe). */
int guest_mem_valid(const struct guest_mem *m, uint64_t gpa, uint64_t len);

#endif
