#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "vmm/memory.h"

static void test_layout_small(void **state)
{
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 64ull << 20), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_non_null(guest_mem_ptr(&m, 0, 64ull << 20));
	assert_null(guest_mem_ptr(&m, 1, 64ull << 20));
	assert_null(guest_mem_ptr(&m, (64ull << 20), 1));
	assert_null(guest_mem_ptr(&m, UINT64_MAX, 2)); /* overflow-safe */
	guest_mem_destroy(&m);
}

static void test_layout_split(void **state)
{
	struct guest_mem m;
	/* 4 GiB of RAM: the part above the gap lands at 4 GiB (lazily allocated, costs nothing). */
	assert_int_equal(guest_mem_init(&m, 4ull << 30), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_null(guest_mem_ptr(&m, GUEST_MMIO_GAP_START, 1));
	assert_non_null(guest_mem_ptr(&m, GUEST_HIGH_RAM_START, 4096));
	uint64_t high = (4ull << 30) - GUEST_MMIO_GAP_START;
	assert_non_null(guest_mem_ptr(&m, GUEST_HIGH_RAM_START + high - 1, 1));
	assert_null(guest_mem_ptr(&m, GUEST_HIGH_RAM_START + high, 1));
	uint32_t v = 0x12345678, r = 0;
	assert_int_equal(guest_mem_write(&m, GUEST_HIGH_RAM_START + 8, &v, 4), 0);
	assert_int_equal(guest_mem_read(&m, GUEST_HIGH_RAM_START + 8, &r, 4), 0);
	assert_int_equal(r, v);
	assert_int_equal(guest_mem_read(&m, GUEST_MMIO_GAP_START - 2, &r, 4), -EFAULT);
	guest_mem_destroy(&m);
}

static void test_bad_sizes(void **state)
{
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 0), -EINVAL);
	assert_int_equal(guest_mem_init(&m, 3ull << 20), -EINVAL);
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_small),
		cmocka_unit_test(test_layout_split),
		cmocka_unit_test(test_bad_sizes),
	};
	return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
