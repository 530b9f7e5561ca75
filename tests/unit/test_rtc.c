/* The CMOS real-time clock (src/devices/rtc.c): what Linux's mc146818 code and hwclock read and write. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "devices/rtc.h"
#include "util/civil.h"

static int64_t fake_secs;

static int64_t clock_get(void *o)
{
	(void)o;
	return fake_secs;
}

static void clock_set(void *o, int64_t s)
{
	(void)o;
	fake_secs = s;
}

static struct rtc r;

static int setup(void **state)
{
	fake_secs = civil_days_from_date(2026, 12, 6) * 86400 + 22 * 3600 + 58 * 60 + 7; /* a Sunday */
	rtc_init(&r, &(struct rtc_clock){ clock_get, clock_set, NULL });
	return 0;
}

static int teardown(void **state)
{
	rtc_destroy(&r);
	return 0;
}

static uint8_t rd(uint8_t reg)
{
	uint8_t v = reg;
	rtc_io(&r, 0, &v, 1, true);
	v = 0xAA;
	rtc_io(&r, 1, &v, 1, false);
	return v;
}

static void wr(uint8_t reg, uint8_t val)
{
	rtc_io(&r, 0, &reg, 1, true);
	rtc_io(&r, 1, &val, 1, true);
}

static void test_bcd_24h_time(void **state)
{
	assert_int_equal(rd(0x00), 0x07);
	assert_int_equal(rd(0x02), 0x58);
	assert_int_equal(rd(0x04), 0x22);
	assert_int_equal(rd(0x06), 1); /* Sunday */
	assert_int_equal(rd(0x07), 0x06);
	assert_int_equal(rd(0x08), 0x12);
	assert_int_equal(rd(0x09), 0x26);
	assert_int_equal(rd(RTC_CENTURY_REG), 0x20);
	assert_int_equal(rd(0x0A) & 0x80, 0); /* never an update in progress */
	assert_int_equal(rd(0x0D), 0x80);      /* valid RAM and time */
	assert_int_equal(rd(0x0C), 0);
	/* The NMI mask bit of the index port does not change the register chosen. */
	uint8_t idx = 0x80 | 0x04, v;
	rtc_io(&r, 0, &idx, 1, true);
	rtc_io(&r, 1, &v, 1, false);
	assert_int_equal(v, 0x22);
	v = 0;
	rtc_io(&r, 0, &v, 1, false);
	assert_int_equal(v, 0); /* untouched: the bus pre-fills reads of the write-only index port */
}

static void test_binary_and_12h(void **state)
{
	wr(0x0B, 0x04); /* binary, 12-hour */
	assert_int_equal(rd(0x04), 10 | 0x80); /* 22:58 is 10 PM */
	assert_int_equal(rd(0x02), 58);
	assert_int_equal(rd(0x09), 26);
	fake_secs -= 22 * 3600; /* 00:58: 12 AM */
	assert_int_equal(rd(0x04), 12);
	fake_secs += 12 * 3600; /* 12:58: 12 PM */
	assert_int_equal(rd(0x04), 12 | 0x80);
}

static void test_set_time_as_hwclock_does(void **state)
{
	/* hwclock --systohc: SET, write every field, clear SET; the clock moves only at the end. */
	int64_t before = fake_secs;
	wr(0x0B, 0x02 | 0x80);
	wr(0x00, 0x30);
	wr(0x02, 0x15);
	wr(0x04, 0x09);
	wr(0x07, 0x29);
	wr(0x08, 0x02);
	wr(0x09, 0x24);
	assert_int_equal(fake_secs, before);
	assert_int_equal(rd(0x02), 0x15); /* reads show the frozen value */
	wr(0x0B, 0x02);
	assert_int_equal(fake_secs, civil_days_from_date(2024, 2, 29) * 86400 + 9 * 3600 + 15 * 60 + 30);
	assert_int_equal(rd(0x06), 5); /* derived: a Thursday */
	/* Without SET a single write takes effect at once. */
	wr(RTC_CENTURY_REG, 0x21);
	assert_int_equal(fake_secs, civil_days_from_date(2124, 2, 29) * 86400 + 9 * 3600 + 15 * 60 + 30);
}

static void test_cmos_ram_and_hostile_values(void **state)
{
	for (unsigned i = 0x0E; i < 0x80; i++)
		if (i != RTC_CENTURY_REG)
			wr((uint8_t)i, (uint8_t)(i * 7));
	for (unsigned i = 0x0E; i < 0x80; i++)
		if (i != RTC_CENTURY_REG)
			assert_int_equal(rd((uint8_t)i), (uint8_t)(i * 7));
	wr(0x0D, 0x00); /* read-only */
	assert_int_equal(rd(0x0D), 0x80);
	wr(0x0A, 0xFF); /* UIP stays clear */
	assert_int_equal(rd(0x0A), 0x7F);
	/* Nonsense fields (month 0x99, hour 0xFF) move the clock somewhere, never crash or hang. */
	wr(0x08, 0x99);
	wr(0x04, 0xFF);
	wr(0x07, 0x00);
	(void)rd(0x09);
	/* Wide accesses use the first byte. */
	uint8_t buf[4] = { 0x0D, 0, 0, 0 };
	rtc_io(&r, 0, buf, 4, true);
	memset(buf, 0xFF, sizeof(buf));
	rtc_io(&r, 1, buf, 4, false);
	assert_int_equal(buf[0], 0x80);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bcd_24h_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binary_and_12h, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_time_as_hwclock_does, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmos_ram_and_hostile_values, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
