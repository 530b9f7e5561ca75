/* One bus type for port I/O and MMIO: sorted, non-overlapping ranges, one handler signature.
 *
 * Removal is safe against concurrent accesses: bus_access() holds the bus's read lock while a handler
 * runs and bus_unregister() takes the write lock, so once unregister returns, no vCPU is inside the
 * removed handler and its opaque may be freed. A handler must therefore never (un)register on the bus
 * that called it.
 *
 * Unclaimed accesses are never fatal: writes are dropped, reads return all ones; they are counted and,
 * with bus->log_unclaimed, logged (rate limited).
 */
#ifndef GEN2VM_VMM_BUS_H
#define GEN2VM_VMM_BUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* offset is relative to the range's base; data holds len bytes (little-endian). For a read the
 * handler fills data (it arrives pre-filled with 0xff). */
typedef void (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_handler_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name; /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base */
	unsigned nr, cap;
	atomic_ulong unclaimed_reads, unclaimed_writes;
	bool log_unclaimed;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);

/* Claims [base, base+len). Returns 0, -EEXIST when it overlaps a claimed range, -EINVAL for len 0 or
 * wrap-around, -ENOMEM. name must outlive the registration. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque, const char *name);

/* Releases the range that starts at base. Returns 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base);

/* Dispatches one access of len bytes (1..8) at addr. Returns true when a device claimed it. */
bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, unsigned len, bool is_write);

#endif
