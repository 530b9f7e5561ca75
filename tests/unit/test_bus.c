#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "vmm/bus.h"

struct dev {
	uint64_t last_off;
	uint8_t reg[8];
	int writes;
};

static void dev_fn(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct dev *d = opaque;
	d->last_off = off;
	if (is_write) {
		memcpy(d->reg, data, len);
		d->writes++;
	} else {
		memcpy(data, d->reg, len);
	}
}

static void test_register_and_dispatch(void **state)
{
	struct bus b;
	struct dev a = { .reg = { 0x11, 0x22 } }, c = { 0 };
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x3f8, 8, dev_fn, &a, "com1"), 0);
	assert_int_equal(bus_register(&b, 0x100, 4, dev_fn, &c, "other"), 0);
	uint8_t v[2] = { 0 };
	assert_true(bus_access(&b, 0x3f9, v, 2, false));
	assert_int_equal(a.last_off, 1);
	assert_int_equal(v[0], 0x11);
	assert_int_equal(v[1], 0x22);
	uint8_t w = 0x5a;
	assert_true(bus_access(&b, 0x102, &w, 1, true));
	assert_int_equal(c.writes, 1);
	assert_int_equal(c.reg[0], 0x5a);
	bus_destroy(&b);
}

static void test_overlap_rejected(void **state)
{
	struct bus b;
	struct dev a = { 0 };
	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0x1000, 0x100, dev_fn, &a, "a"), 0);
	assert_int_equal(bus_register(&b, 0x10ff, 1, dev_fn, &a, "b"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf00, 0x101, dev_fn, &a, "c"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf00, 0x100, dev_fn, &a, "d"), 0);
	assert_int_equal(bus_register(&b, 0x1100, 0x10, dev_fn, &a, "e"), 0);
	assert_int_equal(bus_register(&b, 0, 0, dev_fn, &a, "zero"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, dev_fn, &a, "wrap"), -EINVAL);
	assert_int_equal(b.nr, 3);
	assert_true(b.ranges[0].base < b.ranges[1].base && b.ranges[1].base < b.ranges[2].base);
	bus_destroy(&b);
}

static void test_unclaimed_reads_all_ones(void **state)
{
	struct bus b;
	struct dev a = { 0 };
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x60, 1, dev_fn, &a, "a"), 0);
	uint8_t v[4] = { 0 };
	assert_false(bus_access(&b, 0x61, v, 4, false));
	assert_memory_equal(v, "\xff\xff\xff\xff", 4);
	/* An access straddling the end of a range is not the device's either. */
	assert_false(bus_access(&b, 0x60, v, 2, false));
	assert_false(bus_access(&b, 0x70, v, 1, true));
	assert_int_equal(atomic_load(&b.unclaimed_reads), 2);
	assert_int_equal(atomic_load(&b.unclaimed_writes), 1);
	bus_destroy(&b);
}

static void test_unregister(void **state)
{
	struct bus b;
	struct dev a = { 0 };
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x80, 1, dev_fn, &a, "a"), 0);
	assert_int_equal(bus_unregister(&b, 0x81), -ENOENT);
	assert_int_equal(bus_unregister(&b, 0x80), 0);
	uint8_t v = 0;
	assert_false(bus_access(&b, 0x80, &v, 1, true));
	assert_int_equal(a.writes, 0);
	bus_destroy(&b);
}

struct race {
	struct bus *b;
	volatile int stop;
};

static void *hammer(void *p)
{
	struct race *r = p;
	uint8_t v;
	while (!r->stop)
		bus_access(r->b, 0x200, &v, 1, false);
	return NULL;
}

static void test_concurrent_removal(void **state)
{
	/* Register/unregister while another thread dispatches: ASan would catch a use of a stale range. */
	struct bus b;
	struct dev a = { 0 };
	bus_init(&b, "pio");
	struct race r = { &b, 0 };
	pthread_t t;
	pthread_create(&t, NULL, hammer, &r);
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(bus_register(&b, 0x200, 1, dev_fn, &a, "a"), 0);
		assert_int_equal(bus_register(&b, 0x300 + (uint64_t)i, 1, dev_fn, &a, "b"), 0);
		assert_int_equal(bus_unregister(&b, 0x200), 0);
	}
	r.stop = 1;
	pthread_join(t, NULL);
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_and_dispatch), cmocka_unit_test(test_overlap_rejected),
		cmocka_unit_test(test_unclaimed_reads_all_ones), cmocka_unit_test(test_unregister),
		cmocka_unit_test(test_concurrent_removal),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
