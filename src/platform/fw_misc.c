#include "platform/fw_misc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gen2vm/proto/efi.h"
#include "gen2vm/proto/fw.h"
#include "util/civil.h"
#include "util/clock.h"
#include "util/log.h"

#define EFI_UNSPECIFIED_TIMEZONE 2047
#define NS_PER_S 1000000000ll

static int64_t fw_misc_realtime_ns(void)
{
	return (int64_t)clock_real_ns();
}

void fw_misc_init(struct fw_misc *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
	m->now_ns = fw_misc_realtime_ns;
}

/* Brings *ns (within one second either side of the range) into 0..NS_PER_S-1, carrying into *s. */
static void fw_misc_ns_carry(int64_t *s, int64_t *ns)
{
	if (*ns < 0) {
		*ns += NS_PER_S;
		(*s)--;
	} else if (*ns >= NS_PER_S) {
		*ns -= NS_PER_S;
		(*s)++;
	}
}

/* The VM's clock now: the host's plus the offset the guest set, in seconds and nanoseconds. */
static void fw_misc_clock_now(struct fw_misc *m, int64_t *s, int64_t *ns)
{
	int64_t now = m->now_ns();
	pthread_mutex_lock(&m->lock);
	*s = now / NS_PER_S + m->offset_s;
	*ns = now % NS_PER_S + m->offset_ns;
	pthread_mutex_unlock(&m->lock);
	fw_misc_ns_carry(s, ns);
}

static uint64_t fw_misc_time_get(struct fw_misc *m, struct fw_time_req *r)
{
	int64_t s, ns;
	fw_misc_clock_now(m, &s, &ns);
	pthread_mutex_lock(&m->lock);
	int16_t tz = m->time_zone;
	uint8_t dl = m->daylight;
	pthread_mutex_unlock(&m->lock);
	int64_t days = s / 86400, sod = s % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	int64_t y;
	unsigned mo, d;
	civil_date_from_days(days, &y, &mo, &d);
	if (y < 1900)
		y = 1900; /* cannot happen with SET's range check, but EFI_TIME must stay valid */
	r->year = (uint16_t)y;
	r->month = (uint8_t)mo;
	r->day = (uint8_t)d;
	r->hour = (uint8_t)(sod / 3600);
	r->minute = (uint8_t)(sod / 60 % 60);
	r->second = (uint8_t)(sod % 60);
	r->nanosecond = (uint32_t)ns;
	r->pad1 = r->pad2 = 0;
	r->time_zone = tz;
	r->daylight = dl;
	return EFI_SUCCESS;
}

static uint64_t fw_misc_time_set(struct fw_misc *m, const struct fw_time_req *g)
{
	struct fw_time_req r;
	memcpy(&r, g, sizeof(r)); /* once: the guest may change it while we check */
	if (r.year < 1900 || r.year > 9999 || r.month < 1 || r.month > 12 || r.day < 1 ||
	    r.day > civil_month_days(r.year, r.month) || r.hour > 23 || r.minute > 59 || r.second > 59 ||
	    r.nanosecond > 999999999u || (r.time_zone != EFI_UNSPECIFIED_TIMEZONE &&
					  (r.time_zone < -1440 || r.time_zone > 1440)) ||
	    (r.daylight & ~3u)) {
		log_guest("firmware: SetTime with a field out of range (%u-%u-%u %u:%u:%u.%u, zone %d, daylight 0x%x)",
			  r.year, r.month, r.day, r.hour, r.minute, r.second, r.nanosecond, r.time_zone, r.daylight);
		return EFI_INVALID_PARAMETER;
	}
	int64_t secs = civil_days_from_date(r.year, r.month, r.day) * 86400 + r.hour * 3600 + r.minute * 60 +
		       r.second;
	int64_t now = m->now_ns();
	int64_t off_s = secs - now / NS_PER_S, off_ns = (int64_t)r.nanosecond - now % NS_PER_S;
	fw_misc_ns_carry(&off_s, &off_ns);
	pthread_mutex_lock(&m->lock);
	m->offset_s = off_s;
	m->offset_ns = (int32_t)off_ns;
	m->time_zone = r.time_zone;
	m->daylight = r.daylight;
	pthread_mutex_unlock(&m->lock);
	return EFI_SUCCESS;
}

static uint64_t fw_misc_rng(struct fw_rng_req *r, uint32_t size)
{
	if (size < sizeof(*r)) {
		log_guest("firmware: RNG request of %u bytes, shorter than its header", size);
		return EFI_INVALID_PARAMETER;
	}
	uint32_t len = r->len; /* once */
	if (len > FW_RNG_MAX || len > size - sizeof(*r)) {
		log_guest("firmware: RNG request for %u bytes in a %u-byte request", len, size);
		return EFI_INVALID_PARAMETER;
	}
	uint8_t buf[FW_RNG_MAX];
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_error("firmware RNG: getrandom: %s", strerror(errno));
			return EFI_DEVICE_ERROR;
		}
		got += (size_t)n;
	}
	memcpy(r->data, buf, len);
	return EFI_SUCCESS;
}

int64_t fw_misc_clock_get(void *opaque)
{
	int64_t s, ns;
	fw_misc_clock_now(opaque, &s, &ns);
	return s;
}

uint64_t fw_misc_clock_filetime(void *opaque)
{
	int64_t s, ns;
	fw_misc_clock_now(opaque, &s, &ns);
	/* 11644473600 s from 1601 to 1970; past 9999 (EFI_TIME's end) is not reachable. */
	int64_t since1601 = s + 11644473600ll;
	return since1601 < 0 ? 0 : (uint64_t)since1601 * 10000000ull + (uint64_t)ns / 100;
}

void fw_misc_clock_set(void *opaque, int64_t secs)
{
	struct fw_misc *m = opaque;
	int64_t now = m->now_ns();
	int64_t off_s = secs - now / NS_PER_S, off_ns = -(now % NS_PER_S);
	fw_misc_ns_carry(&off_s, &off_ns);
	pthread_mutex_lock(&m->lock);
	m->offset_s = off_s;
	m->offset_ns = (int32_t)off_ns;
	pthread_mutex_unlock(&m->lock);
}

int64_t fw_misc_clock_offset_get(struct fw_misc *m)
{
	pthread_mutex_lock(&m->lock);
	int64_t s = m->offset_s; /* offset_ns is 0..NS_PER_S-1: whole seconds round down */
	pthread_mutex_unlock(&m->lock);
	return s;
}

void fw_misc_clock_offset_set(struct fw_misc *m, int64_t secs)
{
	pthread_mutex_lock(&m->lock);
	m->offset_s = secs;
	m->offset_ns = 0;
	pthread_mutex_unlock(&m->lock);
}

int fw_misc_offset_parse(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v > FW_MISC_OFFSET_MAX || v < -FW_MISC_OFFSET_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

uint64_t fw_misc_handle(void *opaque, uint32_t op, void *req, uint32_t req_size)
{
	struct fw_misc *m = opaque;
	switch (op) {
	case FW_OP_TIME_GET:
	case FW_OP_TIME_SET:
		if (req_size != sizeof(struct fw_time_req)) {
			log_guest("firmware: time request of %u bytes (expected %zu)", req_size, sizeof(struct fw_time_req));
			return EFI_INVALID_PARAMETER;
		}
		return op == FW_OP_TIME_GET ? fw_misc_time_get(m, req) : fw_misc_time_set(m, req);
	case FW_OP_RNG:
		return fw_misc_rng(req, req_size);
	}
	log_guest("firmware: unknown misc host call 0x%x", op);
	return EFI_UNSUPPORTED;
}
