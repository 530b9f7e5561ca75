/* The shutdown integration service (class 0e0b6031-..., Linux hv_utils' shutdown): the control verb
 * `shutdown [--reboot] [--timeout S] [--force]` asks the guest to power off (or restart); the guest
 * answers S_OK and runs its init's poweroff/reboot, or answers an error HRESULT (Linux: E_FAIL for
 * what it cannot do). The verb waits for that answer (ic_tunables.verb_wait_ms) and says what
 * happened.
 *
 * --force: if the guest refuses, has no shutdown service connected, or is still running S seconds
 * (--timeout, default 60, also the message's timeout_seconds) after the request, the VM is turned
 * off (reset with --reboot) through vmdev_host.stop_vm. The deadline is kept by a watchdog thread
 * waiting on a condition variable, not by the channel: a guest that is shutting down closes it.
 * Restart needs service version 3.1 or later (Linux has it since 3.1; 3.2 added hibernation, which
 * this host never asks for). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/ic.h"
#include "util/clock.h"
#include "util/log.h"

static const struct ic_version sd_versions[] = { { 3, 2 }, { 3, 1 }, { 3, 0 }, { 1, 0 } };

static const struct ic_service_def sd_def = {
	.name = "shutdown",
	.msgtype = IC_MSG_SHUTDOWN,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = sd_versions,
	.nr_msg = 4,
};

#define SD_TIMEOUT_DEFAULT 60u
#define SD_TIMEOUT_MAX     86400u

struct sd {
	struct ic_dev *d; /* NULL: not offered */
	struct vmdev_host host;
	/* Under d->lock: the request the verb waits for, and its answer. */
	uint64_t sent_trans, answered_trans;
	uint32_t status;
	/* The --force watchdog, under wlock. */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	pthread_t wthread;
	bool wstarted, wquit, armed, wreboot;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	unsigned wtimeout;
};

static void sd_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct sd *s = d->svc;
	s->answered_trans = s->sent_trans;
	s->status = r->status;
	if (r->status == IC_S_OK)
		log_info("shutdown: the guest accepted the request");
	else
		log_info("shutdown: the guest refused the request (status 0x%08x)", r->status);
}

static const struct ic_dev_ops sd_ops = { .reply = sd_reply };

/* ---- the --force watchdog ---- */

static void sd_stop_now(struct sd *s, bool reboot, const char *why)
{
	if (s->host.stop_vm)
		s->host.stop_vm(s->host.opaque, reboot, why);
}

static void *sd_watchdog(void *arg)
{
	struct sd *s = arg;
	pthread_setname_np(pthread_self(), "shutdown-wdog"); /* named in /proc (bench/console) */
	pthread_mutex_lock(&s->wlock);
	while (!s->wquit) {
		if (!s->armed) {
			pthread_cond_wait(&s->wcond, &s->wlock);
			continue;
		}
		struct timespec t = { .tv_sec = (time_t)(s->deadline_ns / 1000000000ull),
				      .tv_nsec = (long)(s->deadline_ns % 1000000000ull) };
		pthread_cond_timedwait(&s->wcond, &s->wlock, &t);
		if (s->wquit || !s->armed || clock_mono_ns() < s->deadline_ns)
			continue;
		s->armed = false;
		bool reboot = s->wreboot;
		char why[128];
		snprintf(why, sizeof(why), "the guest did not %s within %u s of the shutdown request: %s",
			 reboot ? "restart" : "shut down", s->wtimeout, reboot ? "reset" : "turned off");
		pthread_mutex_unlock(&s->wlock);
		sd_stop_now(s, reboot, why);
		pthread_mutex_lock(&s->wlock);
	}
	pthread_mutex_unlock(&s->wlock);
	return NULL;
}

/* Arms the watchdog for timeout seconds from now (an earlier deadline already armed stays). */
static int sd_watchdog_arm(struct sd *s, unsigned timeout, bool reboot)
{
	pthread_mutex_lock(&s->wlock);
	int r = 0;
	if (!s->wstarted) {
		r = -pthread_create(&s->wthread, NULL, sd_watchdog, s);
		s->wstarted = !r;
	}
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout * 1000000000ull;
	if (!r && (!s->armed || deadline < s->deadline_ns)) {
		s->armed = true;
		s->deadline_ns = deadline;
		s->wreboot = reboot;
		s->wtimeout = timeout;
		pthread_cond_broadcast(&s->wcond);
	}
	pthread_mutex_unlock(&s->wlock);
	return r;
}

/* ---- the verb ---- */

static int sd_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct sd *s = state;
	bool reboot = false, force = false;
	unsigned timeout = SD_TIMEOUT_DEFAULT;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reboot")) {
			reboot = true;
		} else if (!strcmp(argv[i], "--force")) {
			force = true;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || end == argv[i] || argv[i][0] == '-' || v < 1 || v > SD_TIMEOUT_MAX) {
				snprintf(reply, len, "--timeout takes seconds, 1 to %u", SD_TIMEOUT_MAX);
				return -EINVAL;
			}
			timeout = (unsigned)v;
		} else {
			snprintf(reply, len, "usage: shutdown [--reboot] [--timeout S] [--force]");
			return -EINVAL;
		}
	}
	const char *what = reboot ? "restart" : "shut down";
	const char *stop = reboot ? "reset the VM" : "turned the VM off";
	if (force && !s->host.stop_vm) {
		snprintf(reply, len, "--force: this VM cannot be stopped from here");
		return -EOPNOTSUPP;
	}
	if (!s->d) {
		if (force) {
			sd_stop_now(s, reboot, "shutdown --force: no guest shutdown service (not offered)");
			snprintf(reply, len, "no guest shutdown service (not offered): %s", stop);
			return 0;
		}
		snprintf(reply, len, "no guest shutdown service: not offered (see --integration-services)");
		return -ENOTCONN;
	}
	struct ic_dev *d = s->d;
	pthread_mutex_lock(&d->lock);
	if (d->s.state != IC_READY) {
		pthread_mutex_unlock(&d->lock);
		if (force) {
			/* The guest may still be starting, or stop by itself: it gets the timeout. */
			int r = sd_watchdog_arm(s, timeout, reboot);
			if (r) {
				sd_stop_now(s, reboot, "shutdown --force: no guest shutdown service connected");
				snprintf(reply, len, "no guest shutdown service connected: %s", stop);
				return 0;
			}
			snprintf(reply, len, "no guest shutdown service connected: %s if it still runs in %u s",
				 reboot ? "reset" : "turned off", timeout);
			return 0;
		}
		snprintf(reply, len, "no guest shutdown service connected");
		return -ENOTCONN;
	}
	bool can_restart = d->s.msg.major > 3 || (d->s.msg.major == 3 && d->s.msg.minor >= 1);
	if (reboot && !can_restart) {
		snprintf(reply, len, "the guest's shutdown service (version %u.%u) cannot restart", d->s.msg.major,
			 d->s.msg.minor);
		pthread_mutex_unlock(&d->lock);
		return -EOPNOTSUPP;
	}
	struct ic_shutdown m = { 0 }; /* no reason code and no display message: Linux reads neither */
	m.timeout_seconds = timeout;
	m.flags = (reboot ? IC_SHUTDOWN_FLAG_RESTART : 0) | (force ? IC_SHUTDOWN_FLAG_FORCE : 0);
	uint64_t trans;
	int r = ic_dev_send(d, &m, sizeof(m), &trans);
	if (r) {
		pthread_mutex_unlock(&d->lock);
		if (force) {
			sd_stop_now(s, reboot, "shutdown --force: the request could not be sent");
			snprintf(reply, len, "cannot send the request (%s): %s", strerror(-r), stop);
			return 0;
		}
		snprintf(reply, len, "cannot send the request to the guest: %s", strerror(-r));
		return r;
	}
	s->sent_trans = trans;
	if (force && (r = sd_watchdog_arm(s, timeout, reboot))) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "the request went out, but the --force watchdog cannot start: %s", strerror(-r));
		return r;
	}
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_tunables.verb_wait_ms * 1000000ull;
	while (s->answered_trans != trans && d->chan && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	bool answered = s->answered_trans == trans;
	uint32_t status = s->status;
	pthread_mutex_unlock(&d->lock);
	char tail[96] = "";
	if (force)
		snprintf(tail, sizeof(tail), "; %s if it still runs in %u s", reboot ? "reset" : "turned off", timeout);
	if (answered && status == IC_S_OK) {
		snprintf(reply, len, "the guest accepted to %s%s", what, tail);
		return 0;
	}
	if (answered) {
		if (force) {
			sd_watchdog_arm(s, 0, reboot); /* now */
			snprintf(reply, len, "the guest refused to %s (status 0x%08x): %s", what, status, stop);
			return 0;
		}
		snprintf(reply, len, "the guest refused to %s (status 0x%08x)", what, status);
		return -EIO;
	}
	snprintf(reply, len, "the guest did not answer the request within %u ms%s", ic_tunables.verb_wait_ms, tail);
	return force ? 0 : -ETIMEDOUT;
}

/* ---- the class ---- */

/* The watchdog thread (a forced shutdown's timeout) ends before the device goes. */
static void sd_stop(void *svc)
{
	struct sd *s = svc;
	if (s->wstarted) {
		pthread_mutex_lock(&s->wlock);
		s->wquit = true;
		pthread_cond_broadcast(&s->wcond);
		pthread_mutex_unlock(&s->wlock);
		pthread_join(s->wthread, NULL);
	}
}

static void sd_init(void *svc, const struct vmdev_host *host)
{
	struct sd *s = svc;
	s->host = *host;
	pthread_mutex_init(&s->wlock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wcond, &ca);
	pthread_condattr_destroy(&ca);
}

static void sd_fini(void *svc)
{
	struct sd *s = svc;
	pthread_cond_destroy(&s->wcond);
	pthread_mutex_destroy(&s->wlock);
}

static const struct ic_service_class sd_class = {
	.what = "the shutdown integration service",
	.bit = IC_SVC_SHUTDOWN,
	.class_guid = IC_SHUTDOWN_CLASS_GUID_TEXT,
	.instance = 0x7e570301u,
	.ops = &sd_ops,
	.size = sizeof(struct sd),
	.init = sd_init,
	.stop = sd_stop,
	.fini = sd_fini,
};

static void sd_destroy(void *state)
{
	ic_service_destroy(&sd_class, state);
}

static int sd_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		     size_t errlen)
{
	return ic_service_create(&sd_class, &sd_def, host, cfgs, n, state, err, errlen);
}


static const struct vmdev_verb sd_verbs[] = {
	{ "shutdown", "shutdown [--reboot] [--timeout S] [--force]", sd_verb },
	{ NULL, NULL, NULL },
};

/* The VM is asked to stop (SIGTERM): a forced shutdown request when the guest's service is there. */
static int sd_stop_request(void *state, unsigned timeout_s)
{
	struct sd *s = state;
	if (!s->d)
		return -ENOTCONN;
	pthread_mutex_lock(&s->d->lock);
	bool ready = s->d->s.state == IC_READY;
	pthread_mutex_unlock(&s->d->lock);
	if (!ready)
		return -ENOTCONN;
	char t[16], reply[256];
	snprintf(t, sizeof(t), "%u", timeout_s);
	char *argv[] = { "shutdown", "--force", "--timeout", t, NULL };
	int r = sd_verb(s, 4, argv, reply, sizeof(reply));
	log_info("shutdown request: %s", reply);
	return r;
}

const struct vmdev_class ic_shutdown_class = {
	.name = "shutdown",
	.class_guid = IC_SHUTDOWN_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = sd_create,
	.destroy = sd_destroy,
	.save = vmdev_save_nothing,
	.restore = vmdev_restore_nothing,
	.verbs = sd_verbs,
	.stop_request = sd_stop_request,
};
