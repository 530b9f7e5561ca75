/* The backup integration service (VSS, "volume shadow copy"; class 35fa2e29-..., Linux's
 * hv_snapshot.c with its user-space hv_vss_daemon). On by default, as on Hyper-V; "vss" (or
 * "backup") in --integration-services.
 *
 * What a host needs it for: a consistent copy of a running guest's disks. `freeze` asks the guest
 * to flush and freeze its file systems (Linux's daemon runs FIFREEZE on every mounted read-write
 * /dev/ file system but vfat, the root last); while frozen, the disk images can be copied or
 * snapshotted on the host; `thaw` lets the guest write again.
 *
 * Control verbs:
 *   freeze [--timeout S] [--auto-thaw S]  sends FREEZE and waits for the guest's answer, up to S s
 *                                         (50 by default, 55 at most: freezing syncs the file
 *                                         systems, which takes seconds, but the control client gives
 *                                         up after 60 s; the guest's kernel itself gives its daemon
 *                                         15 min, and a later answer is still counted). With
 *                                         --auto-thaw the host thaws by itself S s after the guest
 *                                         froze, unless `thaw` came first (the device's timer).
 *   thaw                                  sends THAW and waits up to ic_vss_thaw_wait_ms.
 *   vss                                   frozen or not, since when, the version agreed.
 *
 * The guest's side, as Linux has it: service version 5.0 only (the first with FREEZE/THAW, so the
 * host offers only it); the kernel answers E_FAIL at once while no hv_vss_daemon is registered,
 * relays FREEZE/THAW to the daemon otherwise and answers with the daemon's result, or E_FAIL when the
 * daemon is silent (15 min for FREEZE, 30 s for THAW); while one is with the daemon it reads nothing
 * else from the channel. A daemon whose freeze fails thaws what it froze and answers E_FAIL.
 *
 * One request is outstanding at a time (the framework's rule): a verb that stops waiting leaves it
 * outstanding, and its answer, when it comes, is logged and taken into account (a late "frozen" must
 * not be forgotten: the guest cannot write until it is thawed). A THAW replaces an unanswered
 * FREEZE; the FREEZE's answer is then dropped by the framework as stale, and the guest reads the
 * THAW after it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "devices/ic_vss.h"
#include "ui/control.h"
#include "util/clock.h"
#include "util/log.h"

static const struct ic_version vss_versions[] = { { 5, 0 } };

static const struct ic_service_def vss_def = {
	.name = "backup (VSS)",
	.msgtype = IC_MSG_VSS,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = vss_versions,
	.nr_msg = 1,
};

uint32_t ic_vss_thaw_wait_ms = 35000;
uint32_t ic_vss_second_ms = 1000;

/* The verb's wait: the control socket serves one command at a time and its client gives up after
 * CONTROL_CLIENT_TIMEOUT_S (60 s), so a freeze waits at most a little less than that; a FREEZE the
 * guest has not answered by then stays outstanding, and `vss` shows when it is answered. */
#define VSS_TIMEOUT_DEFAULT 50u
#define VSS_TIMEOUT_MAX     55u
_Static_assert(VSS_TIMEOUT_MAX < CONTROL_CLIENT_TIMEOUT_S, "the control client waits for a freeze's answer");
#define VSS_AUTO_THAW_MAX   86400u

struct vss {
	struct ic_dev *d; /* NULL: not offered */
	/* Everything below under d->lock. */
	uint64_t sent_trans;   /* the last request sent (0: none yet) */
	uint8_t sent_op;       /* its IC_VSS_OP_* */
	uint64_t sent_mono_ns;
	bool outstanding;      /* it has no answer yet */
	bool waited;           /* a verb waits for it: its answer is not "late" */
	bool by_timer;         /* the auto-thaw sent it: its answer is not "late" either */
	uint64_t answered_trans;
	uint32_t status;       /* answered_trans's status */
	bool malformed;        /* answered_trans's answer was dropped */
	uint64_t answer_ms;    /* how long the guest took */
	bool frozen;           /* the guest answered a FREEZE ok, and no THAW since */
	uint64_t frozen_real_ns, frozen_mono_ns;
	unsigned auto_thaw_s;  /* the outstanding FREEZE's --auto-thaw (0: none) */
	bool auto_armed;       /* the timer will thaw */
	unsigned auto_armed_s;
	uint64_t auto_at_mono_ns;
};

static const char *vss_op_name(uint8_t op)
{
	switch (op) {
	case IC_VSS_OP_FREEZE: return "FREEZE";
	case IC_VSS_OP_THAW: return "THAW";
	default: return "a request";
	}
}

/* ---- the device's side (lock held) ---- */

static void vss_auto_disarm(struct vss *v)
{
	if (v->auto_armed)
		ic_dev_timer_set(v->d, 0, 0);
	v->auto_armed = false;
}

static int vss_send(struct vss *v, uint8_t op, bool waited, bool by_timer)
{
	struct ic_vss_msg m = { .hdr.operation = op }; /* flags: Linux reads them in no request */
	uint64_t trans;
	int r = ic_dev_send(v->d, &m, sizeof(m), &trans);
	if (r)
		return r;
	v->sent_trans = trans;
	v->sent_op = op;
	v->sent_mono_ns = clock_mono_ns();
	v->outstanding = true;
	v->waited = waited;
	v->by_timer = by_timer;
	return 0;
}

/* Arms the auto-thaw S s from now (S "seconds" of ic_vss_second_ms; never 0 ms, which disarms). */
static void vss_auto_arm(struct vss *v, unsigned s)
{
	uint64_t ms = (uint64_t)s * ic_vss_second_ms;
	if (ms == 0)
		ms = 1;
	if (ms > UINT32_MAX)
		ms = UINT32_MAX;
	if (ic_dev_timer_set(v->d, (uint32_t)ms, 0)) {
		log_warn("backup (VSS): cannot arm the auto-thaw timer: thaw the guest with `thaw`");
		return;
	}
	v->auto_armed = true;
	v->auto_armed_s = s;
	v->auto_at_mono_ns = clock_mono_ns() + ms * 1000000ull;
}

static void vss_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct vss *v = d->svc;
	uint8_t op = v->sent_op;
	bool late = !v->waited && !v->by_timer;
	unsigned auto_s = v->auto_thaw_s;
	v->auto_thaw_s = 0;
	v->outstanding = false;
	v->waited = false;
	v->answered_trans = v->sent_trans;
	v->status = r->status;
	v->malformed = false;
	v->answer_ms = (clock_mono_ns() - v->sent_mono_ns) / 1000000ull;
	/* hv_snapshot answers in place: the message we sent, its operation unchanged. */
	struct ic_vss_msg m;
	if (r->body_len < sizeof(m)) {
		log_guest("backup (VSS): an answer of %u bytes to %s dropped (the message is %zu)", r->body_len,
			  vss_op_name(op), sizeof(m));
		v->malformed = true;
		return;
	}
	memcpy(&m, r->body, sizeof(m));
	if (m.hdr.operation != op) {
		log_guest("backup (VSS): an answer naming operation %u to %s dropped", m.hdr.operation, vss_op_name(op));
		v->malformed = true;
		return;
	}
	if (op == IC_VSS_OP_FREEZE && r->status == IC_S_OK) {
		v->frozen = true;
		v->frozen_real_ns = clock_real_ns();
		v->frozen_mono_ns = clock_mono_ns();
		if (auto_s)
			vss_auto_arm(v, auto_s);
		if (late)
			log_warn("backup (VSS): a late answer: the guest's file systems are frozen now (after %" PRIu64
				 " ms)%s", v->answer_ms, v->auto_armed ? "; auto-thaw armed" : "; thaw them with `thaw`");
		else
			log_info("backup (VSS): the guest's file systems are frozen (%" PRIu64 " ms)", v->answer_ms);
	} else if (op == IC_VSS_OP_THAW && r->status == IC_S_OK) {
		v->frozen = false;
		vss_auto_disarm(v);
		log_info("backup (VSS): the guest's file systems are thawed%s (%" PRIu64 " ms)",
			 v->by_timer ? " (auto-thaw)" : late ? " (a late answer)" : "", v->answer_ms);
	} else if (r->status != IC_S_OK) {
		/* A failed THAW leaves `frozen` as it was: the guest may still be frozen. A verb waiting for
		 * the answer says so itself; nobody else would hear of it. */
		const char *how = v->by_timer ? " (auto-thaw)" : late ? " (a late answer)" : "";
		if (late || v->by_timer)
			log_warn("backup (VSS): the guest refused %s (status 0x%08x)%s%s", vss_op_name(op), r->status,
				 how, v->frozen ? ": its file systems may still be frozen" : "");
		else
			log_info("backup (VSS): the guest refused %s (status 0x%08x)", vss_op_name(op), r->status);
	}
}

/* The auto-thaw timer. */
static void vss_tick(struct ic_dev *d)
{
	struct vss *v = d->svc;
	if (!v->auto_armed)
		return;
	v->auto_armed = false;
	if (!v->frozen || v->outstanding) /* thawed already, or a THAW on its way */
		return;
	int r = vss_send(v, IC_VSS_OP_THAW, false, true);
	if (r == -EAGAIN) {
		unsigned s = v->auto_armed_s;
		vss_auto_arm(v, 1); /* the ring is full: try again in a second */
		v->auto_armed_s = s;
		return;
	}
	if (r)
		log_warn("backup (VSS): auto-thaw: cannot send THAW: %s", strerror(-r));
	else
		log_info("backup (VSS): auto-thaw after %u s: THAW sent", v->auto_armed_s);
}

static void vss_closed(struct ic_dev *d)
{
	struct vss *v = d->svc;
	if (v->frozen)
		log_warn("backup (VSS): the guest closed the channel while its file systems were frozen");
	v->outstanding = false;
	v->waited = false;
	v->frozen = false;
	v->auto_armed = false; /* the framework disarmed the timer */
	v->auto_thaw_s = 0;
}

static const struct ic_dev_ops vss_ops = { .reply = vss_reply, .tick = vss_tick, .closed = vss_closed };

/* ---- the verbs ---- */

/* Whether requests can go out (lock held); if not, what is missing into buf. */
static bool vss_contact(struct ic_dev *d, char *buf, size_t len)
{
	if (!d->chan)
		snprintf(buf, len, "the guest has not opened the backup (VSS) channel: is hv_utils loaded?");
	else if (d->s.state == IC_REFUSED)
		snprintf(buf, len, "the guest speaks none of the backup (VSS) versions offered (5.0)");
	else if (d->s.state != IC_READY)
		snprintf(buf, len, "the guest has not answered the backup (VSS) version negotiation: is hv_utils loaded?");
	else
		return true;
	return false;
}

/* "S" of --timeout/--auto-thaw: 1..max. */
static int vss_seconds(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || end == s || s[0] == '-' || v < 1 || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* The device, locked, when the guest's service can take a request; else NULL with the reason in
 * reply (not offered, or no contact and why). */
static struct ic_dev *vss_lock_contact(struct vss *v, char *reply, size_t len)
{
	if (!v->d) {
		snprintf(reply, len, "no backup (VSS) integration service: not offered (see --integration-services)");
		return NULL;
	}
	pthread_mutex_lock(&v->d->lock);
	char why[160];
	if (!vss_contact(v->d, why, sizeof(why))) {
		pthread_mutex_unlock(&v->d->lock);
		snprintf(reply, len, "no contact: %s", why);
		return NULL;
	}
	return v->d;
}

/* Waits for the answer to trans (lock held) until deadline; true when it came. */
static bool vss_wait(struct vss *v, uint64_t trans, uint64_t deadline)
{
	struct ic_dev *d = v->d;
	while (v->answered_trans != trans && v->sent_trans == trans && d->chan && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	if (v->answered_trans == trans)
		return true;
	if (v->sent_trans == trans)
		v->waited = false; /* its answer, if any, will be logged as late */
	return false;
}

static int vss_freeze_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct vss *v = state;
	unsigned timeout = VSS_TIMEOUT_DEFAULT, auto_thaw = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			if (vss_seconds(argv[++i], VSS_TIMEOUT_MAX, &timeout)) {
				snprintf(reply, len, "--timeout takes seconds, 1 to %u", VSS_TIMEOUT_MAX);
				return -EINVAL;
			}
		} else if (!strcmp(argv[i], "--auto-thaw") && i + 1 < argc) {
			if (vss_seconds(argv[++i], VSS_AUTO_THAW_MAX, &auto_thaw)) {
				snprintf(reply, len, "--auto-thaw takes seconds, 1 to %u", VSS_AUTO_THAW_MAX);
				return -EINVAL;
			}
		} else {
			snprintf(reply, len, "usage: freeze [--timeout S] [--auto-thaw S]");
			return -EINVAL;
		}
	}
	struct ic_dev *d = vss_lock_contact(v, reply, len);
	if (!d)
		return -ENOTCONN;
	if (v->frozen) {
		double ago = (double)(clock_mono_ns() - v->frozen_mono_ns) / 1e9;
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "already frozen (%.1f s ago): thaw first", ago);
		return -EALREADY;
	}
	if (v->outstanding) {
		double ago = (double)(clock_mono_ns() - v->sent_mono_ns) / 1e9;
		const char *op = vss_op_name(v->sent_op);
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "the guest has not answered the %s sent %.1f s ago yet (its kernel gives "
				     "hv_vss_daemon up to 15 min to freeze); `thaw` replaces it", op, ago);
		return -EBUSY;
	}
	int r = vss_send(v, IC_VSS_OP_FREEZE, true, false);
	if (r) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "cannot send FREEZE to the guest: %s", strerror(-r));
		return r;
	}
	v->auto_thaw_s = auto_thaw;
	uint64_t trans = v->sent_trans;
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout * ic_vss_second_ms * 1000000ull;
	bool answered = vss_wait(v, trans, deadline);
	bool malformed = v->malformed, chan = d->chan != NULL;
	uint32_t status = v->status;
	uint64_t ms = v->answer_ms;
	bool replaced = v->sent_trans != trans;
	pthread_mutex_unlock(&d->lock);
	if (answered && malformed) {
		snprintf(reply, len, "the guest's answer to FREEZE was malformed (logged): its file systems may be "
				     "frozen; `thaw` to be sure");
		return -EPROTO;
	}
	if (answered && status == IC_S_OK) {
		if (auto_thaw)
			snprintf(reply, len, "the guest's file systems are frozen (hv_vss_daemon answered in %" PRIu64
					     " ms); auto-thaw in %u s unless `thaw` comes first", ms, auto_thaw);
		else
			snprintf(reply, len, "the guest's file systems are frozen (hv_vss_daemon answered in %" PRIu64
					     " ms)", ms);
		return 0;
	}
	if (answered) {
		snprintf(reply, len, "the guest refused to freeze (status 0x%08x: is hv_vss_daemon running?)", status);
		return -EIO;
	}
	if (!chan) {
		snprintf(reply, len, "the guest closed the backup (VSS) channel before answering FREEZE");
		return -ECONNRESET;
	}
	if (replaced) {
		snprintf(reply, len, "the FREEZE was replaced by another request before the guest answered it");
		return -ECANCELED;
	}
	snprintf(reply, len, "no answer within %u s: the FREEZE stays outstanding and a late answer will be logged "
			     "(`vss` shows it; `thaw` replaces it)%s", timeout,
		 auto_thaw ? "; the auto-thaw applies to a late freeze too" : "");
	return -ETIMEDOUT;
}

static int vss_thaw_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct vss *v = state;
	if (argc > 1) {
		snprintf(reply, len, "usage: thaw");
		return -EINVAL;
	}
	struct ic_dev *d = vss_lock_contact(v, reply, len);
	if (!d)
		return -ENOTCONN;
	/* Sent even when we never saw it frozen: a FREEZE of ours may have been answered after its verb
	 * gave up, or by a guest that lost the answer; FITHAW on a file system that is not frozen is
	 * harmless and Linux's daemon counts it a success. */
	bool was_frozen = v->frozen;
	bool freeze_pending = v->outstanding && v->sent_op == IC_VSS_OP_FREEZE;
	int r = vss_send(v, IC_VSS_OP_THAW, true, false);
	if (r) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "cannot send THAW to the guest: %s", strerror(-r));
		return r;
	}
	vss_auto_disarm(v); /* only now: an auto-thaw still armed must not be lost to a THAW not sent */
	uint64_t trans = v->sent_trans;
	bool answered = vss_wait(v, trans, clock_mono_ns() + (uint64_t)ic_vss_thaw_wait_ms * 1000000ull);
	bool malformed = v->malformed, chan = d->chan != NULL;
	uint32_t status = v->status;
	pthread_mutex_unlock(&d->lock);
	const char *note = was_frozen ? "" : " (this host had not seen the guest frozen)";
	if (answered && malformed) {
		snprintf(reply, len, "the guest's answer to THAW was malformed (logged): its file systems may still be frozen");
		return -EPROTO;
	}
	if (answered && status == IC_S_OK) {
		snprintf(reply, len, "thawed%s", note);
		return 0;
	}
	if (answered) {
		snprintf(reply, len, "the guest refused to thaw (status 0x%08x: is hv_vss_daemon running?)%s", status, note);
		return -EIO;
	}
	if (!chan) {
		snprintf(reply, len, "the guest closed the backup (VSS) channel before answering THAW");
		return -ECONNRESET;
	}
	snprintf(reply, len, "no answer within %.1f s: the THAW stays outstanding and a late answer will be logged%s",
		 (double)ic_vss_thaw_wait_ms / 1000.0,
		 freeze_pending ? " (the guest reads it only after answering the earlier FREEZE: its kernel gives "
				  "hv_vss_daemon up to 15 min)"
				: "");
	return -ETIMEDOUT;
}

static int vss_status_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct vss *v = state;
	if (argc > 1) {
		snprintf(reply, len, "usage: vss");
		return -EINVAL;
	}
	if (!v->d) {
		snprintf(reply, len, "vss not offered (see --integration-services)");
		return 0;
	}
	struct ic_dev *d = v->d;
	pthread_mutex_lock(&d->lock);
	char why[160];
	if (!vss_contact(d, why, sizeof(why))) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "vss no contact (%s)", why);
		return 0;
	}
	uint64_t now = clock_mono_ns();
	char state_s[128], pend[128] = "", autos[64] = "";
	if (v->frozen) {
		time_t t = (time_t)(v->frozen_real_ns / 1000000000ull);
		struct tm tm;
		gmtime_r(&t, &tm);
		char when[32];
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(state_s, sizeof(state_s), "frozen since %s, %.1f s ago", when,
			 (double)(now - v->frozen_mono_ns) / 1e9);
	} else {
		snprintf(state_s, sizeof(state_s), "not frozen");
	}
	if (v->outstanding)
		snprintf(pend, sizeof(pend), "; %s sent %.1f s ago, unanswered", vss_op_name(v->sent_op),
			 (double)(now - v->sent_mono_ns) / 1e9);
	if (v->auto_armed)
		snprintf(autos, sizeof(autos), "; auto-thaw in %.1f s",
			 v->auto_at_mono_ns > now ? (double)(v->auto_at_mono_ns - now) / 1e9 : 0.0);
	snprintf(reply, len, "vss ok (version %u.%u; %s%s%s)", d->s.msg.major, d->s.msg.minor, state_s, pend, autos);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* `status`: a frozen guest says so ("file systems frozen since ..."); JSON "backup": {"state"
 * ("frozen", "not frozen", "no contact", "not offered"), "frozen_since"}. */
static void vss_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct vss *v = state;
	struct json_object *j = json_object_new_object();
	if (!j)
		return;
	const char *st = "not offered";
	if (v->d) {
		pthread_mutex_lock(&v->d->lock);
		char why[160];
		st = !vss_contact(v->d, why, sizeof(why)) ? "no contact" : v->frozen ? "frozen" : "not frozen";
		if (v->frozen) {
			time_t t = (time_t)(v->frozen_real_ns / 1000000000ull);
			struct tm tm;
			char when[32];
			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
			json_object_object_add(j, "frozen_since", json_object_new_string(when));
			snprintf(text, len, "file systems frozen since %s (thaw ends it)", when);
		}
		pthread_mutex_unlock(&v->d->lock);
	}
	json_object_object_add(j, "state", json_object_new_string(st));
	json_object_object_add(o, "backup", j);
}

/* ---- the class ---- */

static const struct ic_service_class vss_class = {
	.what = "the backup (VSS) integration service",
	.bit = IC_SVC_VSS,
	.class_guid = IC_VSS_CLASS_GUID_TEXT,
	.instance = 0x7e570305u,
	.ops = &vss_ops,
	.size = sizeof(struct vss),
};

static int vss_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen)
{
	return ic_service_create(&vss_class, &vss_def, host, cfgs, n, state, err, errlen);
}

static void vss_destroy(void *state)
{
	ic_service_destroy(&vss_class, state);
}


static const struct vmdev_verb vss_verbs[] = {
	{ "freeze", "freeze [--timeout S] [--auto-thaw S]", vss_freeze_verb },
	{ "thaw", "thaw", vss_thaw_verb },
	{ "vss", "vss", vss_status_verb },
	{ NULL, NULL, NULL },
};

const struct vmdev_class ic_vss_class = {
	.name = "vss",
	.class_guid = IC_VSS_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = vss_create,
	.destroy = vss_destroy,
	.save = vmdev_save_nothing,
	.restore = vmdev_restore_nothing,
	.verbs = vss_verbs,
	.status = vss_status,
};
