/* CMOS real-time clock (see rtc.h). */
#include "devices/rtc.h"

#include <errno.h>
#include <string.h>

#include "gen2vm/proto/savestate.h"
#include "util/civil.h"

enum {
	REG_SEC = 0x00, REG_MIN = 0x02, REG_HOUR = 0x04, REG_WDAY = 0x06, REG_MDAY = 0x07, REG_MONTH = 0x08,
	REG_YEAR = 0x09, REG_A = 0x0A, REG_B = 0x0B, REG_C = 0x0C, REG_D = 0x0D,
};
#define B_SET 0x80u
#define B_BINARY 0x04u /* DM: binary rather than BCD */
#define B_24H 0x02u
#define D_VRT 0x80u    /* valid RAM and time */
#define HOUR_PM 0x80u

static void date_from_time(int64_t t, struct rtc_date *d)
{
	int64_t days = t / 86400, sod = t % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	civil_date_from_days(days, &d->year, &d->month, &d->mday);
	d->wday = (unsigned)(((days + 4) % 7 + 7) % 7) + 1; /* 1970-01-01 was a Thursday; Sunday is 1 */
	d->hour = (unsigned)(sod / 3600);
	d->min = (unsigned)(sod / 60 % 60);
	d->sec = (unsigned)(sod % 60);
}

/* Fields out of range (a guest may write anything) carry over as the calendar does. */
static int64_t time_from_date(const struct rtc_date *d)
{
	unsigned month = d->month >= 1 && d->month <= 12 ? d->month : 1;
	return (civil_days_from_date(d->year, month, 1) + (int64_t)d->mday - 1) * 86400 + (int64_t)d->hour * 3600 +
	       (int64_t)d->min * 60 + d->sec;
}

/* The date and time the registers show now. */
static void now_locked(const struct rtc *r, struct rtc_date *d)
{
	if (r->ram[REG_B] & B_SET)
		*d = r->frozen;
	else
		date_from_time(r->clock.get(r->clock.opaque), d);
}

static uint8_t to_reg(const struct rtc *r, unsigned v)
{
	v %= 100;
	return r->ram[REG_B] & B_BINARY ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static unsigned from_reg(const struct rtc *r, uint8_t v)
{
	return r->ram[REG_B] & B_BINARY ? v : (unsigned)(v >> 4) * 10 + (v & 0xF);
}

static bool is_time_reg(uint8_t reg)
{
	return reg == REG_SEC || reg == REG_MIN || reg == REG_HOUR || reg == REG_WDAY || reg == REG_MDAY ||
	       reg == REG_MONTH || reg == REG_YEAR || reg == RTC_CENTURY_REG;
}

static uint8_t time_reg_read(const struct rtc *r, uint8_t reg)
{
	struct rtc_date d;
	now_locked(r, &d);
	switch (reg) {
	case REG_SEC: return to_reg(r, d.sec);
	case REG_MIN: return to_reg(r, d.min);
	case REG_HOUR:
		if (r->ram[REG_B] & B_24H)
			return to_reg(r, d.hour);
		return (uint8_t)(to_reg(r, d.hour % 12 ? d.hour % 12 : 12) | (d.hour >= 12 ? HOUR_PM : 0));
	case REG_WDAY: return to_reg(r, d.wday);
	case REG_MDAY: return to_reg(r, d.mday);
	case REG_MONTH: return to_reg(r, d.month);
	case REG_YEAR: return to_reg(r, (unsigned)(d.year % 100));
	default: return to_reg(r, (unsigned)(d.year / 100)); /* century */
	}
}

/* One field written; the day of the week is derived from the date when the clock is set. */
static void time_reg_write(const struct rtc *r, struct rtc_date *d, uint8_t reg, uint8_t v)
{
	switch (reg) {
	case REG_SEC: d->sec = from_reg(r, v); break;
	case REG_MIN: d->min = from_reg(r, v); break;
	case REG_HOUR:
		if (r->ram[REG_B] & B_24H)
			d->hour = from_reg(r, v);
		else
			d->hour = from_reg(r, v & 0x7F) % 12 + (v & HOUR_PM ? 12 : 0);
		break;
	case REG_WDAY: d->wday = from_reg(r, v); break;
	case REG_MDAY: d->mday = from_reg(r, v); break;
	case REG_MONTH: d->month = from_reg(r, v); break;
	case REG_YEAR: d->year = d->year / 100 * 100 + from_reg(r, v); break;
	default: d->year = (int64_t)from_reg(r, v) * 100 + d->year % 100; break; /* century */
	}
}

void rtc_init(struct rtc *r, const struct rtc_clock *clock)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->clock = *clock;
	r->ram[REG_A] = 0x26;  /* 32.768 kHz time base, 1024 Hz rate: what PC firmware leaves */
	r->ram[REG_B] = B_24H; /* BCD, 24-hour */
	r->ram[REG_D] = D_VRT;
}

void rtc_destroy(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

static uint8_t rtc_read_locked(struct rtc *r)
{
	uint8_t reg = r->index;
	if (is_time_reg(reg))
		return time_reg_read(r, reg);
	if (reg == REG_C)
		return 0; /* no interrupt source is wired, so no flag is ever raised */
	return r->ram[reg];
}

static void rtc_write_locked(struct rtc *r, uint8_t v)
{
	uint8_t reg = r->index;
	if (is_time_reg(reg)) {
		struct rtc_date d;
		now_locked(r, &d);
		time_reg_write(r, &d, reg, v);
		if (r->ram[REG_B] & B_SET)
			r->frozen = d;
		else
			r->clock.set(r->clock.opaque, time_from_date(&d));
		return;
	}
	switch (reg) {
	case REG_A:
		r->ram[REG_A] = v & 0x7F; /* UIP is read-only */
		break;
	case REG_B:
		if ((v & B_SET) && !(r->ram[REG_B] & B_SET))
			date_from_time(r->clock.get(r->clock.opaque), &r->frozen);
		else if (!(v & B_SET) && (r->ram[REG_B] & B_SET))
			r->clock.set(r->clock.opaque, time_from_date(&r->frozen)); /* counts on from now */
		r->ram[REG_B] = v;
		break;
	case REG_C:
	case REG_D:
		break; /* read-only */
	default:
		r->ram[reg] = v;
		break;
	}
}

void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct rtc *r = opaque;
	pthread_mutex_lock(&r->lock);
	if (offset == 0) {
		if (is_write) {
			r->index = data[0] & 0x7F;
			r->nmi_masked = data[0] & 0x80;
		}
		/* A read of the index port gets the bus's all-ones: it is write-only on PC chipsets. */
	} else if (is_write) {
		rtc_write_locked(r, data[0]);
	} else {
		data[0] = rtc_read_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	(void)len; /* wider accesses use their first byte; the rest read as all ones */
}

int rtc_attach(struct rtc *r, struct bus *pio)
{
	return bus_register(pio, RTC_PORT, 2, rtc_io, r, "cmos-rtc");
}

void rtc_save(struct rtc *r, struct savestate_rtc *out)
{
	_Static_assert(sizeof(out->ram) == sizeof(r->ram), "RTC RAM");
	pthread_mutex_lock(&r->lock);
	out->index = r->index;
	out->nmi_masked = r->nmi_masked;
	memcpy(out->ram, r->ram, sizeof(out->ram));
	/* A guest in the middle of setting the clock (SET) would lose its half-written date: it is kept
	 * as the clock instead, as if it had cleared SET. */
	if (r->ram[REG_B] & B_SET)
		out->ram[REG_B] &= (uint8_t)~B_SET;
	pthread_mutex_unlock(&r->lock);
}

int rtc_restore(struct rtc *r, const struct savestate_rtc *in)
{
	if (in->index > 0x7F || in->nmi_masked > 1)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	r->index = in->index;
	r->nmi_masked = in->nmi_masked;
	memcpy(r->ram, in->ram, sizeof(r->ram));
	r->ram[REG_A] &= 0x7F;
	pthread_mutex_unlock(&r->lock);
	return 0;
}
