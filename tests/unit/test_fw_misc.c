/* The firmware's time and entropy host calls (src/platform/fw_misc.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/fw.h"
#include "platform/fw_misc.h"
#include "util/civil.h"

static int64_t fake_now;
static int64_t fake_clock(void)
{
	return fake_now;
}

static void setup_misc(struct fw_misc *m)
{
	fw_misc_init(m);
	m->now_ns = fake_clock;
}

static struct fw_time_req time_req(uint32_t op)
{
	struct fw_time_req r;
	memset(&r, 0, sizeof(r));
	r.hdr.op = op;
	r.hdr.size = sizeof(r);
	return r;
}

static void test_calendar(void **state)
{
	assert_int_equal(civil_days_from_date(1970, 1, 1), 0);
	assert_int_equal(civil_days_from_date(2000, 3, 1), 11017);
	assert_int_equal(civil_days_from_date(1900, 1, 1), -25567);
	int64_t y;
	unsigned m, d;
	/* every day of four centuries there and back */
	for (int64_t z = civil_days_from_date(1900, 1, 1); z < civil_days_from_date(2300, 1, 1); z++) {
		civil_date_from_days(z, &y, &m, &d);
		if (civil_days_from_date(y, m, d) != z)
			fail_msg("day %lld", (long long)z);
	}
	civil_date_from_days(civil_days_from_date(2024, 2, 29), &y, &m, &d);
	assert_true(y == 2024 && m == 2 && d == 29);
}

static void test_get(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	/* 2026-11-22 03:04:05.123456789 UTC */
	fake_now = (civil_days_from_date(2026, 11, 22) * 86400 + 3 * 3600 + 4 * 60 + 5) * 1000000000ll + 123456789;
	struct fw_time_req r = time_req(FW_OP_TIME_GET);
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r)), EFI_SUCCESS);
	assert_int_equal(r.year, 2026);
	assert_int_equal(r.month, 11);
	assert_int_equal(r.day, 22);
	assert_int_equal(r.hour, 3);
	assert_int_equal(r.minute, 4);
	assert_int_equal(r.second, 5);
	assert_int_equal(r.nanosecond, 123456789);
	assert_int_equal(r.time_zone, 0);
	assert_int_equal(r.daylight, 0);
	/* a size that disagrees with the payload */
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r) - 1), EFI_INVALID_PARAMETER);
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r) + 8), EFI_INVALID_PARAMETER);
	assert_int_equal(fw_misc_handle(&m, 0x2f, &r, sizeof(r)), EFI_UNSUPPORTED);
}

static void test_set_moves_clock(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	fake_now = civil_days_from_date(2026, 1, 1) * 86400 * 1000000000ll;
	struct fw_time_req s = time_req(FW_OP_TIME_SET);
	s.year = 1999, s.month = 12, s.day = 31, s.hour = 23, s.minute = 59, s.second = 58;
	s.time_zone = -60;
	s.daylight = 1;
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_SET, &s, sizeof(s)), EFI_SUCCESS);
	/* three seconds later on the host: the VM's clock has crossed into 2000 */
	fake_now += 3000000000ll;
	struct fw_time_req r = time_req(FW_OP_TIME_GET);
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r)), EFI_SUCCESS);
	assert_int_equal(r.year, 2000);
	assert_int_equal(r.month, 1);
	assert_int_equal(r.day, 1);
	assert_int_equal(r.hour, 0);
	assert_int_equal(r.minute, 0);
	assert_int_equal(r.second, 1);
	assert_int_equal(r.time_zone, -60);
	assert_int_equal(r.daylight, 1);
}

/* The integration services' time sync reads the same clock as FILETIME (100 ns since 1601). */
static void test_filetime(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	fake_now = 1234567890123456789ll; /* 2009-02-13T23:31:30.123456789Z */
	assert_true(fw_misc_clock_filetime(&m) == 116444736000000000ull + 12345678901234567ull);
	fw_misc_clock_set(&m, 0); /* the VM's clock at 1970-01-01T00:00:00 */
	assert_true(fw_misc_clock_filetime(&m) == 116444736000000000ull);
	fw_misc_clock_set(&m, -11644473600ll - 5); /* before 1601 */
	assert_true(fw_misc_clock_filetime(&m) == 0);
}

/* EFI_TIME reaches 9999: an offset kept in int64 nanoseconds would overflow past 2262. */
static void test_set_far_future(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	fake_now = civil_days_from_date(2026, 11, 22) * 86400 * 1000000000ll + 987654321;
	struct fw_time_req s = time_req(FW_OP_TIME_SET);
	s.year = 9999, s.month = 12, s.day = 31, s.hour = 23, s.minute = 59, s.second = 59;
	s.nanosecond = 123456789;
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_SET, &s, sizeof(s)), EFI_SUCCESS);
	fake_now += 500000000ll; /* half a second later */
	struct fw_time_req r = time_req(FW_OP_TIME_GET);
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r)), EFI_SUCCESS);
	assert_true(r.year == 9999 && r.month == 12 && r.day == 31 && r.hour == 23 && r.minute == 59 &&
		    r.second == 59);
	assert_int_equal(r.nanosecond, 623456789);
	/* and back to the earliest time EFI_TIME has */
	s.year = 1900, s.month = 1, s.day = 1, s.hour = 0, s.minute = 0, s.second = 0, s.nanosecond = 999999999;
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_SET, &s, sizeof(s)), EFI_SUCCESS);
	fake_now += 2;
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r)), EFI_SUCCESS);
	assert_true(r.year == 1900 && r.month == 1 && r.day == 1 && r.hour == 0 && r.minute == 0 && r.second == 1);
	assert_int_equal(r.nanosecond, 1);
}

static void test_set_range_checks(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	fake_now = 0;
	struct fw_time_req ok = time_req(FW_OP_TIME_SET);
	ok.year = 2024, ok.month = 2, ok.day = 29, ok.hour = 23, ok.minute = 59, ok.second = 59;
	ok.nanosecond = 999999999;
	ok.time_zone = 2047; /* unspecified */
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_SET, &ok, sizeof(ok)), EFI_SUCCESS);
	struct fw_time_req bad[12];
	for (int i = 0; i < 12; i++)
		bad[i] = ok;
	bad[0].year = 1899;
	bad[1].year = 10000;
	bad[2].month = 0;
	bad[3].month = 13;
	bad[4].day = 0;
	bad[5].year = 2023; /* 2023-02-29 */
	bad[6].hour = 24;
	bad[7].minute = 60;
	bad[8].second = 60;
	bad[9].nanosecond = 1000000000;
	bad[10].time_zone = 1441;
	bad[11].daylight = 4;
	for (int i = 0; i < 12; i++)
		if (fw_misc_handle(&m, FW_OP_TIME_SET, &bad[i], sizeof(bad[i])) != EFI_INVALID_PARAMETER)
			fail_msg("bad time %d accepted", i);
	/* the rejected sets left the clock where the good one put it */
	struct fw_time_req r = time_req(FW_OP_TIME_GET);
	fw_misc_handle(&m, FW_OP_TIME_GET, &r, sizeof(r));
	assert_true(r.year == 2024 && r.month == 2 && r.day == 29 && r.second == 59);
	assert_int_equal(r.time_zone, 2047);
	bad[0] = ok;
	bad[0].time_zone = -1440;
	assert_int_equal(fw_misc_handle(&m, FW_OP_TIME_SET, &bad[0], sizeof(bad[0])), EFI_SUCCESS);
}

static void test_rng(void **state)
{
	struct fw_misc m;
	setup_misc(&m);
	size_t sz = sizeof(struct fw_rng_req) + FW_RNG_MAX;
	struct fw_rng_req *r = calloc(1, sz + 8);
	r->hdr.op = FW_OP_RNG;
	r->len = 64;
	r->hdr.size = (uint32_t)(sizeof(*r) + 64);
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, r->hdr.size), EFI_SUCCESS);
	int nonzero = 0;
	for (int i = 0; i < 64; i++)
		nonzero += r->data[i] != 0;
	assert_true(nonzero > 32);
	for (unsigned i = 64; i < FW_RNG_MAX; i++)
		assert_int_equal(r->data[i], 0); /* nothing past len */
	r->len = FW_RNG_MAX;
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, (uint32_t)sz), EFI_SUCCESS);
	/* longer than the request, longer than the maximum, a request too short for its header */
	r->len = 65;
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, (uint32_t)(sizeof(*r) + 64)), EFI_INVALID_PARAMETER);
	r->len = FW_RNG_MAX + 1;
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, (uint32_t)sz + 8), EFI_INVALID_PARAMETER);
	r->len = 0xffffffffu;
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, (uint32_t)sz), EFI_INVALID_PARAMETER);
	r->len = 0;
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, 16), EFI_INVALID_PARAMETER);
	assert_int_equal(fw_misc_handle(&m, FW_OP_RNG, r, sizeof(*r)), EFI_SUCCESS);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calendar),
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_set_moves_clock),
		cmocka_unit_test(test_set_far_future),
		cmocka_unit_test(test_filetime),
		cmocka_unit_test(test_set_range_checks),
		cmocka_unit_test(test_rng),
	};
	return cmocka_run_group_tests_name("fw_misc", tests, NULL, NULL);
}
