/* The integration components framework (src/devices/ic.h): the session state machine, the
 * "integration-services" setting, and the VMBus glue every IC device shares. */
#include "devices/ic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "util/log.h"
#include "util/text.h"

const struct ic_version ic_framework_versions[2] = { { 3, 0 }, { 1, 0 } };

struct ic_tunables ic_tunables = { .heartbeat_ms = 2000, .lost_beats = 3, .timesync_ms = 5000,
				   .kvp_ms = 30000, .verb_wait_ms = 2000 };

/* ---- the session ---- */

void ic_session_init(struct ic_session *s, const struct ic_service_def *def)
{
	memset(s, 0, sizeof(*s));
	s->def = def;
	s->next_trans = 1;
}

/* Both headers and body into buf; the header carries the agreed versions (before NEGOTIATE: the
 * first offered, as the guest ignores them there). */
static int ic_build(struct ic_session *s, uint16_t type, const void *body, uint32_t len, uint8_t *buf, size_t cap,
		    uint64_t *trans)
{
	if (len > UINT16_MAX || IC_HDRS_SIZE + len > cap)
		return -EMSGSIZE;
	struct ic_pipe_hdr p = { .flags = 0, .msgsize = (uint32_t)sizeof(struct ic_msg_hdr) + len };
	struct ic_msg_hdr h = {
		.icverframe = s->state == IC_READY ? s->fw : s->def->fw[0],
		.icmsgtype = type,
		.icvermsg = s->state == IC_READY ? s->msg : s->def->msg[0],
		.icmsgsize = (uint16_t)len,
		.ictransaction_id = (uint8_t)s->next_trans,
		.icflags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST,
	};
	memcpy(buf, &p, sizeof(p));
	memcpy(buf + sizeof(p), &h, sizeof(h));
	if (len)
		memcpy(buf + IC_HDRS_SIZE, body, len);
	s->pending = true;
	s->pending_type = type;
	s->pending_trans = s->next_trans++;
	*trans = s->pending_trans;
	return (int)(IC_HDRS_SIZE + len);
}

int ic_session_start(struct ic_session *s, uint8_t *buf, size_t cap, uint64_t *trans)
{
	uint8_t body[sizeof(struct ic_negotiate) + 16 * sizeof(struct ic_version)];
	struct ic_negotiate n = { .icframe_vercnt = (uint16_t)s->def->nr_fw, .icmsg_vercnt = (uint16_t)s->def->nr_msg };
	memcpy(body, &n, sizeof(n));
	size_t off = sizeof(n);
	memcpy(body + off, s->def->fw, s->def->nr_fw * sizeof(struct ic_version));
	off += s->def->nr_fw * sizeof(struct ic_version);
	memcpy(body + off, s->def->msg, s->def->nr_msg * sizeof(struct ic_version));
	off += s->def->nr_msg * sizeof(struct ic_version);
	s->state = IC_NEGOTIATING;
	return ic_build(s, IC_MSG_NEGOTIATE, body, (uint32_t)off, buf, cap, trans);
}

int ic_session_request(struct ic_session *s, const void *body, uint32_t len, uint8_t *buf, size_t cap,
		       uint64_t *trans)
{
	if (s->state != IC_READY)
		return -EAGAIN;
	return ic_build(s, s->def->msgtype, body, len, buf, cap, trans);
}

void ic_session_cancel(struct ic_session *s)
{
	s->pending = false;
}

void ic_session_close(struct ic_session *s)
{
	s->state = IC_CLOSED;
	s->pending = false;
}

static bool ic_version_in(struct ic_version v, const struct ic_version *list, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (list[i].major == v.major && list[i].minor == v.minor)
			return true;
	return false;
}

int ic_session_reply(struct ic_session *s, uint64_t trans, const uint8_t *pkt, uint32_t len, struct ic_reply *out,
		     const char **why)
{
	if (!s->pending || trans != s->pending_trans)
		return -ESTALE;
	if (len < IC_HDRS_SIZE) {
		*why = "is shorter than its headers";
		return -EPROTO;
	}
	struct ic_msg_hdr h;
	memcpy(&h, pkt + sizeof(struct ic_pipe_hdr), sizeof(h));
	if (h.icmsgtype != s->pending_type) {
		*why = "answers another message type";
		return -EPROTO;
	}
	if (!(h.icflags & IC_FLAG_RESPONSE)) {
		*why = "is not marked as a response";
		return -EPROTO;
	}
	if (h.ictransaction_id != (uint8_t)s->pending_trans) {
		*why = "carries another transaction id in its header";
		return -EPROTO;
	}
	const uint8_t *body = pkt + IC_HDRS_SIZE;
	uint32_t blen = len - (uint32_t)IC_HDRS_SIZE;
	if (h.icmsgtype != IC_MSG_NEGOTIATE) {
		s->pending = false;
		*out = (struct ic_reply){ .type = h.icmsgtype, .status = h.status, .body = body, .body_len = blen };
		return IC_REPLY_MESSAGE;
	}
	/* The guest answers in place: counts 1/1 and the chosen pair, or 0/0 when nothing fits. */
	struct ic_negotiate n;
	if (blen < sizeof(n) + 2 * sizeof(struct ic_version)) {
		*why = "NEGOTIATE answer is truncated";
		return -EPROTO;
	}
	memcpy(&n, body, sizeof(n));
	if (n.icframe_vercnt == 0 && n.icmsg_vercnt == 0) {
		s->pending = false;
		s->state = IC_REFUSED;
		return IC_REPLY_REFUSED;
	}
	if (n.icframe_vercnt != 1 || n.icmsg_vercnt != 1) {
		*why = "NEGOTIATE answer does not choose one version of each kind";
		return -EPROTO;
	}
	struct ic_version fw, msg;
	memcpy(&fw, body + sizeof(n), sizeof(fw));
	memcpy(&msg, body + sizeof(n) + sizeof(fw), sizeof(msg));
	if (!ic_version_in(fw, s->def->fw, s->def->nr_fw) || !ic_version_in(msg, s->def->msg, s->def->nr_msg)) {
		*why = "NEGOTIATE answer chooses a version that was not offered";
		return -EPROTO;
	}
	s->pending = false;
	s->state = IC_READY;
	s->fw = fw;
	s->msg = msg;
	return IC_REPLY_NEGOTIATED;
}

/* ---- the "integration-services" setting ---- */

static const struct {
	const char *name;
	uint32_t mask;
} ic_names[] = {
	{ "shutdown", IC_SVC_SHUTDOWN }, { "heartbeat", IC_SVC_HEARTBEAT }, { "timesync", IC_SVC_TIMESYNC },
	{ "time-sync", IC_SVC_TIMESYNC }, { "kvp", IC_SVC_KVP },               { "default", IC_SVC_DEFAULT },
	{ "none", 0 },                     { "fcopy", IC_SVC_FCOPY },           { "guest-services", IC_SVC_FCOPY },
	{ "vss", IC_SVC_VSS },             { "backup", IC_SVC_VSS },
};

/* One name of the list into *mask. */
static int ic_name_parse(const char *name, size_t len, uint32_t *mask, char *err, size_t errlen, const char *what)
{
	for (size_t i = 0; i < sizeof(ic_names) / sizeof(ic_names[0]); i++)
		if (strlen(ic_names[i].name) == len && !strncmp(ic_names[i].name, name, len)) {
			*mask |= ic_names[i].mask;
			return 0;
		}
	char shown[64];
	snprintf(shown, sizeof(shown), "%.*s", (int)(len < 40 ? len : 40), name);
	snprintf(err, errlen, "%s: unknown integration service '%s' (use shutdown, heartbeat, timesync, kvp, vss, fcopy, default or none)",
		 what, text_show(shown));
	return -EINVAL;
}

static int ic_settings_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	uint32_t mask = 0;
	const char *p = arg;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		int r = ic_name_parse(p, len, &mask, err, errlen, "--integration-services");
		if (r)
			return r;
		if (!c)
			break;
		p = c + 1;
	}
	memcpy(cfg, &mask, sizeof(mask));
	return 0;
}

static int ic_settings_parse_json(struct json_object *v, void *cfg, char *err, size_t errlen)
{
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "\"integration_services\": each element is a service name (\"shutdown\", "
				      "\"heartbeat\", \"timesync\", \"kvp\", \"vss\", \"fcopy\", \"default\" or \"none\")");
		return -EINVAL;
	}
	uint32_t mask = 0;
	const char *s = json_object_get_string(v);
	int r = ic_name_parse(s, strlen(s), &mask, err, errlen, "\"integration_services\"");
	if (!r)
		memcpy(cfg, &mask, sizeof(mask));
	return r;
}

bool ic_settings_enabled(void *const *cfgs, unsigned n, uint32_t bit)
{
	uint32_t mask = n ? 0 : IC_SVC_DEFAULT;
	for (unsigned i = 0; i < n; i++) {
		uint32_t m;
		memcpy(&m, cfgs[i], sizeof(m));
		mask |= m;
	}
	return mask & bit;
}

static const struct vmdev_option ic_settings_options[] = { { "integration-services", true }, { NULL, false } };

const struct vmdev_class ic_settings_class = {
	.name = "integration-services",
	.options = ic_settings_options,
	.usage = "  --integration-services LIST  the Hyper-V integration services offered: shutdown, heartbeat,\n"
		 "                             timesync, kvp, vss (backup), default (those five) or none;\n"
		 "                             comma-separated;\n"
		 "                             fcopy (guest-services: copy-file) is off unless listed\n",
	.json_key = "integration_services",
	.config_size = sizeof(uint32_t),
	.parse_option = ic_settings_parse_option,
	.parse_json = ic_settings_parse_json,
};

/* ---- the VMBus glue ---- */

bool ic_dev_wait(struct ic_dev *d, uint64_t deadline_ns)
{
	struct timespec t = { .tv_sec = (time_t)(deadline_ns / 1000000000ull), .tv_nsec = (long)(deadline_ns % 1000000000ull) };
	return pthread_cond_timedwait(&d->cond, &d->lock, &t) == 0;
}

/* With the lock held: one packet to the guest. */
static int ic_dev_xmit(struct ic_dev *d, const uint8_t *buf, int len, uint64_t trans)
{
	int r = vmbus_channel_send(d->chan, VM_PKT_DATA_INBAND, 0, trans,
				   NULL, 0, buf, (uint32_t)len);
	if (r)
		ic_session_cancel(&d->s);
	return r;
}

int ic_dev_send(struct ic_dev *d, const void *body, uint32_t len, uint64_t *trans)
{
	if (!d->chan || d->s.state != IC_READY)
		return -ENOTCONN;
	uint8_t buf[IC_PACKET_MAX];
	uint64_t t;
	int n = ic_session_request(&d->s, body, len, buf, sizeof(buf), &t);
	if (n < 0)
		return n;
	int r = ic_dev_xmit(d, buf, n, t);
	if (!r && trans)
		*trans = t;
	return r;
}

int ic_dev_timer_set(struct ic_dev *d, uint32_t first_ms, uint32_t interval_ms)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = first_ms / 1000, .tv_nsec = (long)(first_ms % 1000) * 1000000 },
		.it_interval = { .tv_sec = interval_ms / 1000, .tv_nsec = (long)(interval_ms % 1000) * 1000000 },
	};
	return timerfd_settime(d->timerfd, 0, &its, NULL) ? -errno : 0;
}

/* The timer fired (service thread, no server lock): reads it (the watch is edge-triggered) and
 * lets the service act. */
static void ic_dev_timer_cb(void *arg)
{
	struct ic_dev *d = arg;
	uint64_t ticks;
	if (read(d->timerfd, &ticks, sizeof(ticks)) != (ssize_t)sizeof(ticks))
		return;
	pthread_mutex_lock(&d->lock);
	if (d->chan && d->ops->tick)
		d->ops->tick(d);
	pthread_mutex_unlock(&d->lock);
}

static int ic_dev_open(void *ctx, struct vmbus_channel *chan)
{
	struct ic_dev *d = ctx;
	uint32_t cap = vmbus_channel_rx_ring(chan)->size; /* no packet is larger than its ring */
	uint8_t *rx = malloc(cap);
	if (!rx)
		return -ENOMEM;
	pthread_mutex_lock(&d->lock);
	free(d->rx);
	d->rx = rx;
	d->rx_cap = cap;
	int r = vmbus_channel_watch_fd(chan, d->timerfd, ic_dev_timer_cb, d);
	if (r && r != -EOPNOTSUPP) {
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	if (r)
		log_warn("%s integration service: no timer on this host (nothing periodic is sent)", d->def->name);
	d->watched = !r;
	d->chan = chan;
	/* The host speaks first. The guest reads it after OPEN_RESULT. */
	uint8_t buf[IC_PACKET_MAX];
	uint64_t trans;
	int n = ic_session_start(&d->s, buf, sizeof(buf), &trans);
	if (n > 0 && ic_dev_xmit(d, buf, n, trans))
		log_warn("%s integration service: cannot send NEGOTIATE", d->def->name);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void ic_dev_close(void *ctx, struct vmbus_channel *chan)
{
	struct ic_dev *d = ctx;
	/* Unwatch without the lock: the timer callback takes it. */
	if (d->watched)
		vmbus_channel_unwatch_fd(chan, d->timerfd);
	pthread_mutex_lock(&d->lock);
	d->watched = false;
	ic_dev_timer_set(d, 0, 0);
	d->chan = NULL;
	ic_session_close(&d->s);
	if (d->ops->closed)
		d->ops->closed(d);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* One guest packet (the lock held). */
static void ic_dev_packet(struct ic_dev *d, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct ic_reply r;
	const char *why = "";
	int k = ic_session_reply(&d->s, trans, pkt, len, &r, &why);
	switch (k) {
	case IC_REPLY_NEGOTIATED:
		log_debug("%s integration service: framework %u.%u, service %u.%u", d->def->name, d->s.fw.major,
			  d->s.fw.minor, d->s.msg.major, d->s.msg.minor);
		if (d->ops->ready)
			d->ops->ready(d);
		break;
	case IC_REPLY_REFUSED:
		log_guest("%s integration service: the guest speaks none of the versions offered", d->def->name);
		break;
	case IC_REPLY_MESSAGE:
		if (d->ops->reply)
			d->ops->reply(d, &r);
		break;
	case -ESTALE:
		log_debug("%s integration service: an answer to no pending request (transaction %llu) dropped",
			  d->def->name, (unsigned long long)trans);
		break;
	default:
		log_guest("%s integration service: an answer that %s was dropped", d->def->name, why);
		break;
	}
	pthread_cond_broadcast(&d->cond);
}

static void ic_dev_inband(void *ctx, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	ic_dev_packet(ctx, pkt, len, trans);
}

static void ic_dev_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct ic_dev *d = ctx;
	pthread_mutex_lock(&d->lock);
	vmbus_channel_drain_inband(chan, d->rx, d->rx_cap, d->def->name, ic_dev_inband, d, &d->chan);
	pthread_mutex_unlock(&d->lock);
}

static const struct vmbus_device_ops ic_dev_ops_vmbus = {
	.open = ic_dev_open,
	.close = ic_dev_close,
	.rx_ready = ic_dev_rx_ready,
};

int ic_dev_create(struct ic_dev **out, const struct vmdev_host *h, const struct ic_service_def *def,
		  const char *class_guid, struct vmbus_guid instance, const struct ic_dev_ops *ops, void *svc,
		  char *err, size_t errlen)
{
	struct ic_dev *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "the %s integration service: out of memory", def->name);
		return -ENOMEM;
	}
	d->def = def;
	d->ops = ops;
	d->svc = svc;
	d->host = *h;
	d->timerfd = -1;
	ic_session_init(&d->s, def);
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
		int r = -errno;
		snprintf(err, errlen, "the %s integration service: no timer: %s", def->name, strerror(-r));
		ic_dev_destroy(d);
		return r;
	}
	/* Hyper-V offers the ICs as plain channels; Linux's hv_utils reads neither chn_flags nor
	 * user_def and opens them with 12 KiB rings. */
	struct vmbus_device_desc desc = { .name = def->name, .instance_id = instance, .ops = &ic_dev_ops_vmbus, .ctx = d };
	vmbus_guid_parse(class_guid, &desc.class_id);
	int r = vmdev_device_offer(h, &desc, &d->vdev);
	if (r) {
		snprintf(err, errlen, "cannot offer the %s integration service: %s", def->name, strerror(-r));
		ic_dev_destroy(d);
		return r;
	}
	*out = d;
	return 0;
}

void ic_dev_destroy(struct ic_dev *d)
{
	if (!d)
		return;
	vmdev_device_withdraw(&d->host, d->vdev);
	if (d->timerfd >= 0)
		close(d->timerfd);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d->rx);
	free(d);
}

/* ---- a service class's glue ---- */

int ic_service_create(const struct ic_service_class *c, const struct ic_service_def *def,
		      const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen)
{
	void *svc = calloc(1, c->size);
	if (!svc) {
		snprintf(err, errlen, "%s: out of memory", c->what);
		return -ENOMEM;
	}
	if (c->init)
		c->init(svc, host);
	if (ic_settings_enabled(cfgs, n, c->bit)) {
		/* The instance GUIDs spell "gen2vm" in their last bytes: stable across runs, as Hyper-V's. */
		struct vmbus_guid inst =
			VMBUS_GUID(c->instance, 0x9c1e, 0x4e0b, 0x8e, 0x31, 0x67, 0x65, 0x6e, 0x32, 0x76, 0x6d);
		int r = ic_dev_create((struct ic_dev **)svc, host, def, c->class_guid, inst, c->ops, svc, err, errlen);
		if (r) {
			ic_service_destroy(c, svc);
			return r;
		}
	}
	*state = svc;
	return 0;
}

void ic_service_destroy(const struct ic_service_class *c, void *state)
{
	if (!state)
		return;
	if (c->stop)
		c->stop(state);
	ic_dev_destroy(*(struct ic_dev **)state);
	if (c->fini)
		c->fini(state);
	free(state);
}
