/* The heartbeat integration service (class 57164f39-..., Linux hv_utils' heartbeat): once the
 * versions are agreed the host sends a HEARTBEAT every ic_tunables.heartbeat_ms (2 s, Hyper-V's
 * period as Linux's hv_util.c describes it); the guest answers seq_num + 1. ic_tunables.lost_beats
 * (3) beats in a row without a right answer make the heartbeat "lost", logged once; a right answer
 * after that is logged too.
 *
 * Control verb: `heartbeat` says ok / lost / no contact / not offered and when the last beat came;
 * the VM's `status` (and `status --json`) carries the same. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "util/clock.h"
#include "util/log.h"

static const struct ic_version hb_versions[] = { { 3, 0 }, { 1, 0 } };

static const struct ic_service_def hb_def = {
	.name = "heartbeat",
	.msgtype = IC_MSG_HEARTBEAT,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = hb_versions,
	.nr_msg = 2,
};

struct hb {
	struct ic_dev *d; /* NULL: not offered */
	uint64_t seq;     /* of the beat last sent */
	unsigned missed;  /* beats in a row not answered right */
	bool lost, beat;  /* beat: the guest has answered a beat since the channel opened */
	bool awaiting;    /* the last beat (sent or not: a full ring counts too) has no right answer */
	uint64_t last_real_ns, last_mono_ns; /* when the last right answer came */
	uint64_t beats;   /* right answers, in all */
};

/* Sends the next beat (the lock held). The sequence starts at a value of the guest's choice on
 * Hyper-V; any start will do, the guest only adds one. */
static void hb_send(struct ic_dev *d)
{
	struct hb *h = d->svc;
	struct ic_heartbeat m = { .seq_num = ++h->seq };
	h->awaiting = true;
	int r = ic_dev_send(d, &m, sizeof(m), NULL);
	if (r && r != -ENOTCONN)
		log_debug("heartbeat: cannot send a beat: %s", strerror(-r));
}

static void hb_ready(struct ic_dev *d)
{
	struct hb *h = d->svc;
	h->missed = 0;
	hb_send(d);
	ic_dev_timer_set(d, ic_tunables.heartbeat_ms, ic_tunables.heartbeat_ms);
}

static void hb_tick(struct ic_dev *d)
{
	struct hb *h = d->svc;
	if (h->awaiting)
		h->missed++;
	if (h->missed >= ic_tunables.lost_beats && !h->lost) {
		h->lost = true;
		log_warn("heartbeat: the guest stopped answering (%u beats in a row)", h->missed);
	}
	hb_send(d);
}

static void hb_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct hb *h = d->svc;
	struct ic_heartbeat m;
	if (r->body_len < sizeof(m)) {
		log_guest("heartbeat: an answer of %u bytes dropped (the body is %zu)", r->body_len, sizeof(m));
		return;
	}
	memcpy(&m, r->body, sizeof(m));
	if (m.seq_num != h->seq + 1) {
		log_guest("heartbeat: an answer with sequence %" PRIu64 " to beat %" PRIu64 " dropped", m.seq_num, h->seq);
		return;
	}
	if (h->lost)
		log_info("heartbeat: the guest answers again");
	h->lost = false;
	h->missed = 0;
	h->awaiting = false;
	h->beat = true;
	h->beats++;
	h->last_real_ns = clock_real_ns();
	h->last_mono_ns = clock_mono_ns();
}

static void hb_closed(struct ic_dev *d)
{
	struct hb *h = d->svc;
	h->beat = false;
	h->lost = false;
	h->awaiting = false;
	h->missed = 0;
}

static const struct ic_dev_ops hb_ops = { .ready = hb_ready, .reply = hb_reply, .tick = hb_tick, .closed = hb_closed };

/* ---- the class ---- */

/* What the heartbeat is now, d->lock held: "ok", "lost" or "no contact", with the detail in
 * detail ("version 3.0, 120 beats"...) for the verb. */
static const char *hb_state(struct hb *h, char *detail, size_t len)
{
	struct ic_dev *d = h->d;
	if (!d->chan) {
		snprintf(detail, len, "the guest has not opened the heartbeat channel");
		return "no contact";
	}
	if (d->s.state == IC_REFUSED) {
		snprintf(detail, len, "the guest speaks none of the heartbeat versions offered");
		return "no contact";
	}
	if (d->s.state != IC_READY) {
		snprintf(detail, len, "the guest has not answered the version negotiation");
		return "no contact";
	}
	if (h->lost) {
		snprintf(detail, len, "%u beats unanswered", h->missed);
		return "lost";
	}
	if (!h->beat) {
		snprintf(detail, len, "no beat answered yet, version %u.%u", d->s.msg.major, d->s.msg.minor);
		return "no contact";
	}
	snprintf(detail, len, "version %u.%u, %" PRIu64 " beats", d->s.msg.major, d->s.msg.minor, h->beats);
	return "ok";
}

/* The last beat's UTC time (ISO 8601) into when; false when none came. */
static bool hb_last(const struct hb *h, char *when, size_t len, double *ago_s)
{
	if (!h->last_real_ns)
		return false;
	time_t t = (time_t)(h->last_real_ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	*ago_s = (double)(clock_mono_ns() - h->last_mono_ns) / 1e9;
	return true;
}

static int hb_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct hb *h = state;
	if (argc > 1) {
		snprintf(reply, len, "usage: heartbeat");
		return -EINVAL;
	}
	if (!h->d) {
		snprintf(reply, len, "heartbeat not offered (see --integration-services)");
		return 0;
	}
	pthread_mutex_lock(&h->d->lock);
	char detail[128], when[32], last[96] = "";
	double ago;
	const char *st = hb_state(h, detail, sizeof(detail));
	if (hb_last(h, when, sizeof(when), &ago))
		snprintf(last, sizeof(last), "; last beat %s, %.1f s ago", when, ago);
	snprintf(reply, len, "heartbeat %s (%s)%s", st, detail, last);
	pthread_mutex_unlock(&h->d->lock);
	return 0;
}

/* `status`: "heartbeat ok (last beat 1.2 s ago)"; JSON "heartbeat": {"state", "last_beat", "last_beat_age_s"}. */
static void hb_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct hb *h = state;
	struct json_object *j = json_object_new_object();
	if (!j)
		return;
	if (!h->d) {
		json_object_object_add(j, "state", json_object_new_string("not offered"));
		snprintf(text, len, "heartbeat not offered");
	} else {
		pthread_mutex_lock(&h->d->lock);
		char detail[128], when[32];
		double ago;
		const char *st = hb_state(h, detail, sizeof(detail));
		json_object_object_add(j, "state", json_object_new_string(st));
		if (hb_last(h, when, sizeof(when), &ago)) {
			json_object_object_add(j, "last_beat", json_object_new_string(when));
			json_object_object_add(j, "last_beat_age_s", json_object_new_double((double)(int64_t)(ago * 10) / 10));
			snprintf(text, len, "heartbeat %s (last beat %s, %.1f s ago)", st, when, ago);
		} else {
			snprintf(text, len, "heartbeat %s", st);
		}
		pthread_mutex_unlock(&h->d->lock);
	}
	json_object_object_add(o, "heartbeat", j);
}

static const struct ic_service_class hb_class = {
	.what = "the heartbeat integration service",
	.bit = IC_SVC_HEARTBEAT,
	.class_guid = IC_HEARTBEAT_CLASS_GUID_TEXT,
	.instance = 0x7e570302u,
	.ops = &hb_ops,
	.size = sizeof(struct hb),
};

static int hb_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		     size_t errlen)
{
	return ic_service_create(&hb_class, &hb_def, host, cfgs, n, state, err, errlen);
}

static void hb_destroy(void *state)
{
	ic_service_destroy(&hb_class, state);
}


static const struct vmdev_verb hb_verbs[] = {
	{ "heartbeat", "heartbeat", hb_verb },
	{ NULL, NULL, NULL },
};

const struct vmdev_class ic_heartbeat_class = {
	.name = "heartbeat",
	.class_guid = IC_HEARTBEAT_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = hb_create,
	.destroy = hb_destroy,
	.save = vmdev_save_nothing,
	.restore = vmdev_restore_nothing,
	.verbs = hb_verbs,
	.status = hb_status,
};
