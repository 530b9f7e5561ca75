#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	pthread_rwlock_destroy(&b->lock);
	memset(b, 0, sizeof(*b));
}

/* Index of the first range whose end lies above addr (the only one that can contain it). */
static unsigned bus_lower_bound(const struct bus *b, uint64_t addr)
{
	unsigned lo = 0, hi = b->nr;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];
		if (r->base + r->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque, const char *name)
{
	if (len == 0 || base + len < base || !fn)
		return -EINVAL;
	int ret = 0;
	pthread_rwlock_wrlock(&b->lock);
	unsigned i = bus_lower_bound(b, base);
	if (i < b->nr && b->ranges[i].base < base + len) {
		ret = -EEXIST;
		goto out;
	}
	if (b->nr == b->cap) {
		unsigned cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *n = realloc(b->ranges, cap * sizeof(*n));
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		b->ranges = n;
		b->cap = cap;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->nr - i) * sizeof(*b->ranges));
	b->ranges[i] = (struct bus_range){ base, len, fn, opaque, name };
	b->nr++;
out:
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	int ret = -ENOENT;
	pthread_rwlock_wrlock(&b->lock);
	unsigned i = bus_lower_bound(b, base);
	if (i < b->nr && b->ranges[i].base == base) {
		memmove(&b->ranges[i], &b->ranges[i + 1], (b->nr - i - 1) * sizeof(*b->ranges));
		b->nr--;
		ret = 0;
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

bool bus_access(struct bus *b, uint64_t addr, uint8_t *data, unsigned len, bool is_write)
{
	if (!is_write)
		memset(data, 0xff, len);
	pthread_rwlock_rdlock(&b->lock);
	unsigned i = bus_lower_bound(b, addr);
	if (i < b->nr && b->ranges[i].base <= addr && addr - b->ranges[i].base + len <= b->ranges[i].len) {
		const struct bus_range *r = &b->ranges[i];
		r->fn(r->opaque, addr - r->base, data, len, is_write);
		pthread_rwlock_unlock(&b->lock);
		return true;
	}
	pthread_rwlock_unlock(&b->lock);
	atomic_fetch_add(is_write ? &b->unclaimed_writes : &b->unclaimed_reads, 1);
	if (b->log_unclaimed)
		log_guest("unclaimed %s %s at 0x%llx (%u bytes)", b->name, is_write ? "write" : "read",
			  (unsigned long long)addr, len);
	return false;
}
