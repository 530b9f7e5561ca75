/* The time synchronization integration service (class 9527e630-..., Linux hv_utils' timesync):
 * once the versions are agreed the host sends a SYNC sample (the guest steps its clock to it), then
 * a SAMPLE every ic_tunables.timesync_ms (5 s, as Hyper-V). The time is the VM's wall clock
 * (vmdev_host.utc_now: host UTC plus the firmware clock's offset) in 100 ns units since 1601.
 *
 * Version 4.0 pairs it with the partition's reference time at the sample (vmdev_host.ref_time_now)
 * so the guest can correct for the delay before it reads the message; without that hook only 3.0
 * and 1.0 are offered (the guest then reads its reference time when the message arrives). Linux
 * answers every sample with the same packet; the answers carry nothing we use, so they are only
 * checked by the framework.
 *
 * The VM's clock can move while the guest runs (`clock --offset`, a host clock step, the guest's own
 * RTC write): each tick compares the VM's clock with the host's monotonic clock, and when they
 * drifted apart by more than TS_JUMP_100NS since the last sample, the tick sends SYNC instead of
 * SAMPLE, so the guest steps to the new time (Linux steps only on SYNC; SAMPLEs feed its PTP clock).
 *
 * Control verb: `timesync` says ok (version, samples sent and answered) / no contact / not offered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/ic.h"
#include "util/clock.h"
#include "util/log.h"

static const struct ic_version ts_versions_v4[] = { { 4, 0 }, { 3, 0 }, { 1, 0 } };

static const struct ic_service_def ts_def_v4 = {
	.name = "time sync",
	.msgtype = IC_MSG_TIMESYNC,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = ts_versions_v4,
	.nr_msg = 3,
};
static const struct ic_service_def ts_def_v3 = {
	.name = "time sync",
	.msgtype = IC_MSG_TIMESYNC,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = ts_versions_v4 + 1,
	.nr_msg = 2,
};

uint32_t ic_timesync_body(struct ic_version v, uint64_t parenttime, uint64_t reftime, uint8_t flags, void *buf)
{
	if (v.major >= 4) {
		struct ic_timesync_v4 m = { .parenttime = parenttime, .vmreferencetime = reftime, .flags = flags };
		memcpy(buf, &m, sizeof(m));
		return sizeof(m);
	}
	struct ic_timesync_v3 m = { .parenttime = parenttime, .flags = flags };
	memcpy(buf, &m, sizeof(m));
	return sizeof(m);
}

#define TS_JUMP_100NS 5000000ll /* 0.5 s */

struct ts {
	struct ic_dev *d; /* NULL: not offered */
	struct vmdev_host host;
	uint64_t sent, answered; /* samples since the versions were agreed */
	uint64_t steps;          /* SYNCs sent for a clock that moved */
	int64_t gap;             /* VM clock minus host monotonic clock (100 ns) at the last sample */
};

static uint64_t ts_utc_now(const struct ts *t)
{
	if (t->host.utc_now)
		return t->host.utc_now(t->host.opaque);
	return clock_real_ns() / 100 + IC_TIME_UNIX_EPOCH;
}

/* One sample (the lock held). The reference time is read right after the clock: the pair is what
 * the guest corrects with. */
static void ts_send(struct ic_dev *d, uint8_t flags)
{
	struct ts *t = d->svc;
	uint8_t body[32];
	uint64_t utc = ts_utc_now(t);
	uint64_t ref = t->host.ref_time_now ? t->host.ref_time_now(t->host.opaque) : 0;
	t->gap = (int64_t)(utc - clock_mono_ns() / 100);
	uint32_t len = ic_timesync_body(d->s.msg, utc, ref, flags, body);
	int r = ic_dev_send(d, body, len, NULL);
	if (!r)
		t->sent++;
	else if (r != -ENOTCONN)
		log_debug("time sync: cannot send a sample: %s", strerror(-r));
}

static void ts_ready(struct ic_dev *d)
{
	struct ts *t = d->svc;
	t->sent = t->answered = 0; /* since the channel opened */
	ts_send(d, IC_TIMESYNC_FLAG_SYNC);
	ic_dev_timer_set(d, ic_tunables.timesync_ms, ic_tunables.timesync_ms);
}

static void ts_tick(struct ic_dev *d)
{
	struct ts *t = d->svc;
	int64_t moved = (int64_t)(ts_utc_now(t) - clock_mono_ns() / 100) - t->gap;
	if (moved > TS_JUMP_100NS || moved < -TS_JUMP_100NS) {
		log_info("time sync: the VM's clock moved by %+.1f s: stepping the guest's clock", (double)moved / 1e7);
		t->steps++;
		ts_send(d, IC_TIMESYNC_FLAG_SYNC);
		return;
	}
	ts_send(d, IC_TIMESYNC_FLAG_SAMPLE);
}

static void ts_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct ts *t = d->svc;
	t->answered++;
}

static const struct ic_dev_ops ts_ops = { .ready = ts_ready, .reply = ts_reply, .tick = ts_tick };

/* ---- the class ---- */

static int ts_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct ts *t = state;
	if (argc > 1) {
		snprintf(reply, len, "usage: timesync");
		return -EINVAL;
	}
	if (!t->d) {
		snprintf(reply, len, "time sync not offered (see --integration-services)");
		return 0;
	}
	struct ic_dev *d = t->d;
	pthread_mutex_lock(&d->lock);
	if (!d->chan)
		snprintf(reply, len, "time sync no contact (the guest has not opened the time sync channel)");
	else if (d->s.state == IC_REFUSED)
		snprintf(reply, len, "time sync no contact (the guest speaks none of the time sync versions offered)");
	else if (d->s.state != IC_READY)
		snprintf(reply, len, "time sync no contact (the guest has not answered the version negotiation)");
	else
		snprintf(reply, len, "time sync ok (version %u.%u, %llu samples sent, %llu answered, %llu clock steps)",
			 d->s.msg.major, d->s.msg.minor, (unsigned long long)t->sent, (unsigned long long)t->answered,
			 (unsigned long long)t->steps);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void ts_init(void *svc, const struct vmdev_host *host)
{
	struct ts *t = svc;
	t->host = *host;
}

static const struct ic_service_class ts_class = {
	.what = "the time sync integration service",
	.bit = IC_SVC_TIMESYNC,
	.class_guid = IC_TIMESYNC_CLASS_GUID_TEXT,
	.instance = 0x7e570303u,
	.ops = &ts_ops,
	.size = sizeof(struct ts),
	.init = ts_init,
};

/* Version 4.0 needs the reference time: without the hook, 3.0 and 1.0 only. */
static int ts_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		     size_t errlen)
{
	return ic_service_create(&ts_class, host->ref_time_now ? &ts_def_v4 : &ts_def_v3, host, cfgs, n, state, err,
				 errlen);
}

static void ts_destroy(void *state)
{
	ic_service_destroy(&ts_class, state);
}


static const struct vmdev_verb ts_verbs[] = {
	{ "timesync", "timesync", ts_verb },
	{ NULL, NULL, NULL },
};

const struct vmdev_class ic_timesync_class = {
	.name = "timesync",
	.class_guid = IC_TIMESYNC_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = ts_create,
	.destroy = ts_destroy,
	.save = vmdev_save_nothing,
	.restore = vmdev_restore_nothing,
	.verbs = ts_verbs,
};
