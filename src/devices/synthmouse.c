/* The synthetic mouse: see synthmouse.h. Facts (versions, layouts, sizes the guest checks) from
 * Linux's drivers/hid/hid-hyperv.c, cited in include/gen2vm/proto/synthhid.h. */
#include "devices/synthmouse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "gen2vm/proto/savestate.h"
#include "gen2vm/proto/synthhid.h"
#include "util/log.h"

/* gen2vm's own report descriptor (HID 1.11 items): an absolute pointer, because the host knows
 * where the pointer is on its display, not how far it moved. Byte 14 is 0x29 (Usage Maximum), so
 * hid-hyperv's rewrite of a 0x25 there leaves it alone. */
const uint8_t synthmouse_report_desc[] = {
	0x05, 0x01,       /* Usage Page (Generic Desktop) */
	0x09, 0x02,       /* Usage (Mouse) */
	0xa1, 0x01,       /* Collection (Application) */
	0x09, 0x01,       /*   Usage (Pointer) */
	0xa1, 0x00,       /*   Collection (Physical) */
	0x05, 0x09,       /*     Usage Page (Button) */
	0x19, 0x01,       /*     Usage Minimum (1) */
	0x29, 0x03,       /*     Usage Maximum (3) */
	0x15, 0x00,       /*     Logical Minimum (0) */
	0x25, 0x01,       /*     Logical Maximum (1) */
	0x95, 0x03,       /*     Report Count (3) */
	0x75, 0x01,       /*     Report Size (1) */
	0x81, 0x02,       /*     Input (Data, Variable, Absolute): the buttons */
	0x95, 0x01,       /*     Report Count (1) */
	0x75, 0x05,       /*     Report Size (5) */
	0x81, 0x03,       /*     Input (Constant): padding to a byte */
	0x05, 0x01,       /*     Usage Page (Generic Desktop) */
	0x09, 0x30,       /*     Usage (X) */
	0x09, 0x31,       /*     Usage (Y) */
	0x15, 0x00,       /*     Logical Minimum (0) */
	0x26, 0xff, 0x7f, /*     Logical Maximum (32767) */
	0x75, 0x10,       /*     Report Size (16) */
	0x95, 0x02,       /*     Report Count (2) */
	0x81, 0x02,       /*     Input (Data, Variable, Absolute): X, Y */
	0x09, 0x38,       /*     Usage (Wheel) */
	0x15, 0x81,       /*     Logical Minimum (-127) */
	0x25, 0x7f,       /*     Logical Maximum (127) */
	0x75, 0x08,       /*     Report Size (8) */
	0x95, 0x01,       /*     Report Count (1) */
	0x81, 0x06,       /*     Input (Data, Variable, Relative): the wheel */
	0xc0,             /*   End Collection */
	0xc0,             /* End Collection */
};
const uint16_t synthmouse_report_desc_len = sizeof(synthmouse_report_desc);
_Static_assert(sizeof(synthmouse_report_desc) > 14, "byte 14 exists");

/* The ids the guest's hid_device takes (Linux prints them; nothing matches on them): Microsoft's
 * vendor id and a product id of gen2vm's own. */
#define MOUSE_VENDOR  0x045eu
#define MOUSE_PRODUCT 0x6776u /* "gv" */
#define MOUSE_VERSION 0x0001u

/* With the lock held: one synthhid message (hdr + body of n bytes after it) in the pipe framing. */
static int mouse_send_msg(struct console_dev *d, uint32_t type, const void *body, uint32_t n, uint64_t trans)
{
	uint8_t buf[sizeof(struct synthhid_pipe_hdr) + sizeof(struct synthhid_hdr) + 256];
	if (n > sizeof(buf) - 16)
		return -EMSGSIZE;
	struct synthhid_pipe_hdr p = { SYNTHHID_PIPE_DATA, (uint32_t)sizeof(struct synthhid_hdr) + n };
	struct synthhid_hdr h = { type, n };
	memcpy(buf, &p, sizeof(p));
	memcpy(buf + sizeof(p), &h, sizeof(h));
	memcpy(buf + sizeof(p) + sizeof(h), body, n);
	return console_dev_send(d, buf, (uint32_t)(sizeof(p) + sizeof(h) + n), trans);
}

/* The version request (the guest's first message): answer, and send the device info when approved. */
static void mouse_protocol_request(struct console_dev *d, struct synthmouse *m, const uint8_t *body, uint32_t n,
				   uint64_t trans)
{
	uint32_t version;
	if (n < sizeof(version)) {
		log_guest("synthetic mouse: a protocol request of %u bytes dropped", n);
		return;
	}
	memcpy(&version, body, sizeof(version));
	m->version = version;
	bool ok = version == SYNTHHID_VERSION_2_0;
	struct {
		uint32_t version;
		uint8_t approved;
	} __attribute__((packed)) rs = { version, ok };
	_Static_assert(sizeof(rs) + sizeof(struct synthhid_hdr) == sizeof(struct synthhid_protocol_response), "rs");
	int r = mouse_send_msg(d, SYNTHHID_MSG_PROTOCOL_RESPONSE, &rs, sizeof(rs), trans);
	if (!ok) {
		log_guest("synthetic mouse: version %u.%u refused (2.0 is the one supported)", version >> 16,
			  version & 0xffff);
		m->state = SYNTHMOUSE_REFUSED;
		return;
	}
	/* The guest waits 5 s for this after the response (hid-hyperv.c). */
	struct {
		struct synthhid_dev_info info;
		struct synthhid_hid_descriptor hid;
		uint8_t report[sizeof(synthmouse_report_desc)];
	} __attribute__((packed)) di = {
		.info = { .size = sizeof(struct synthhid_dev_info), .vendor = MOUSE_VENDOR, .product = MOUSE_PRODUCT,
			  .version = MOUSE_VERSION },
		.hid = { .bLength = sizeof(struct synthhid_hid_descriptor), .bDescriptorType = 0x21, .bcdHID = 0x0101,
			 .bNumDescriptors = 1, .bReportType = 0x22, .wDescriptorLength = sizeof(synthmouse_report_desc) },
	};
	memcpy(di.report, synthmouse_report_desc, sizeof(synthmouse_report_desc));
	if (!r)
		r = mouse_send_msg(d, SYNTHHID_MSG_DEVICE_INFO, &di, sizeof(di), 0);
	if (r) {
		log_warn("synthetic mouse: cannot answer the protocol request: %s", strerror(-r));
		m->state = SYNTHMOUSE_OPEN;
		return;
	}
	m->state = SYNTHMOUSE_INFO_SENT;
}

static void mouse_packet(struct console_dev *d, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct synthmouse *m = d->svc;
	struct synthhid_pipe_hdr p;
	struct synthhid_hdr h;
	if (len < sizeof(p) + sizeof(h)) {
		log_guest("synthetic mouse: a packet of %u bytes dropped (too short for its headers)", len);
		return;
	}
	memcpy(&p, pkt, sizeof(p));
	memcpy(&h, pkt + sizeof(p), sizeof(h));
	/* Both sizes are the guest's word: each must fit in what came. */
	if (p.type != SYNTHHID_PIPE_DATA || p.size > len - sizeof(p) || p.size < sizeof(h) ||
	    h.size > p.size - sizeof(h)) {
		log_guest("synthetic mouse: a packet with pipe type %u, sizes %u/%u in %u bytes dropped", p.type, p.size,
			  h.size, len);
		return;
	}
	const uint8_t *body = pkt + sizeof(p) + sizeof(h);
	switch (h.type) {
	case SYNTHHID_MSG_PROTOCOL_REQUEST:
		mouse_protocol_request(d, m, body, h.size, trans);
		break;
	case SYNTHHID_MSG_DEVICE_INFO_ACK:
		if (m->state != SYNTHMOUSE_INFO_SENT) {
			log_guest("synthetic mouse: a device info ACK out of turn dropped");
			return;
		}
		m->state = SYNTHMOUSE_READY;
		log_debug("synthetic mouse: the guest's driver connected (version 2.0)");
		break;
	default:
		log_guest("synthetic mouse: a message of type %u (%u bytes) dropped", h.type, h.size);
		break;
	}
}

static void mouse_opened(struct console_dev *d)
{
	struct synthmouse *m = d->svc;
	m->state = SYNTHMOUSE_OPEN;
}

static void mouse_closed(struct console_dev *d)
{
	struct synthmouse *m = d->svc;
	m->state = SYNTHMOUSE_CLOSED;
}

static const struct console_dev_ops mouse_ops = { .opened = mouse_opened, .packet = mouse_packet, .closed = mouse_closed };

int synthmouse_send(struct synthmouse *m, uint16_t x, uint16_t y, uint8_t buttons, int8_t wheel)
{
	if (x > SYNTHMOUSE_AXIS_MAX || y > SYNTHMOUSE_AXIS_MAX || buttons > 7 || wheel == -128)
		return -EINVAL;
	if (!m->d)
		return -ENOTCONN;
	uint8_t rep[SYNTHMOUSE_REPORT_SIZE] = { buttons, (uint8_t)x, (uint8_t)(x >> 8), (uint8_t)y, (uint8_t)(y >> 8),
						(uint8_t)wheel };
	pthread_mutex_lock(&m->d->lock);
	int r = m->state != SYNTHMOUSE_READY ? -ENOTCONN : m->d->input_held ? -EBUSY : 0;
	if (!r) {
		r = mouse_send_msg(m->d, SYNTHHID_MSG_INPUT_REPORT, rep, sizeof(rep), 0);
		if (!r)
			m->reports++;
	}
	pthread_mutex_unlock(&m->d->lock);
	return r;
}

/* ---- the class ---- */

static bool mouse_number(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	if (!*s || *s == '-' || *s == '+')
		return false;
	*out = strtoul(s, &end, 0);
	return !*end && *out <= max;
}

static int mouse_verb(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct synthmouse *m = state;
	unsigned long x, y, b = 0;
	if (argc < 3 || argc > 4 || !mouse_number(argv[1], SYNTHMOUSE_AXIS_MAX, &x) ||
	    !mouse_number(argv[2], SYNTHMOUSE_AXIS_MAX, &y) || (argc == 4 && !mouse_number(argv[3], 7, &b))) {
		snprintf(reply, len, "usage: mouse X Y [BUTTONS] (X, Y 0..32767; buttons 0..7: 1 left, 2 right, 4 middle)");
		return -EINVAL;
	}
	int r = synthmouse_send(m, (uint16_t)x, (uint16_t)y, (uint8_t)b, 0);
	if (!m->d)
		snprintf(reply, len, "the synthetic mouse is not offered (see --synthetic-console)");
	else if (r == -ENOTCONN)
		snprintf(reply, len, "the guest's mouse driver (hid_hyperv) has not connected");
	else if (r == -EAGAIN)
		snprintf(reply, len, "the guest is not reading its mouse ring (full); nothing was sent");
	else if (r == -EBUSY)
		snprintf(reply, len, "the VM is being saved; nothing was sent");
	else if (r)
		snprintf(reply, len, "cannot send the pointer: %s", strerror(-r));
	else
		snprintf(reply, len, "sent");
	return r;
}

static int mouse_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
			size_t errlen)
{
	struct synthmouse *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "the synthetic mouse: out of memory");
		return -ENOMEM;
	}
	if (console_settings_enabled(cfgs, n)) {
		int r = console_dev_create(&m->d, h, "mouse", SYNTHHID_CLASS_GUID_TEXT, 0x7e570402u, 0, &mouse_ops, m, err,
					   errlen);
		if (r) {
			free(m);
			return r;
		}
	}
	*state = m;
	return 0;
}

static void mouse_destroy(void *state)
{
	struct synthmouse *m = state;
	if (!m)
		return;
	console_dev_destroy(m->d);
	free(m);
}

static void mouse_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct synthmouse *m = state;
	if (!m->d)
		return;
	pthread_mutex_lock(&m->d->lock);
	static const char *const names[] = { "no contact", "negotiating", "negotiating", "connected", "refused" };
	const char *st = names[m->state];
	struct json_object *j = json_object_new_object();
	if (j) {
		json_object_object_add(j, "state", json_object_new_string(st));
		json_object_object_add(o, "mouse", j);
	}
	snprintf(text, len, "mouse %s", st);
	pthread_mutex_unlock(&m->d->lock);
}

static const struct vmdev_verb mouse_verbs[] = {
	{ "mouse", "mouse X Y [BUTTONS]", mouse_verb },
	{ NULL, NULL, NULL },
};

/* ---- saving ---- */

static int mouse_quiesce(void *state, unsigned timeout_ms)
{
	console_dev_hold(((struct synthmouse *)state)->d, true);
	return 0;
}

static void mouse_thaw(void *state)
{
	console_dev_hold(((struct synthmouse *)state)->d, false);
}

static int mouse_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct synthmouse *m = state;
	struct savestate_synthmouse s = { 0 };
	if (m->d) {
		pthread_mutex_lock(&m->d->lock);
		s = (struct savestate_synthmouse){ .state = m->state, .version = m->version, .reports = m->reports };
		pthread_mutex_unlock(&m->d->lock);
	}
	return console_dev_save(m->d, &s, sizeof(s), out, len);
}

/* After the VMBus restore reopened the channel (mouse_opened made it OPEN): the handshake's state as
 * it was, so the guest's driver needs no new one. */
static int mouse_restore(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct synthmouse *m = state;
	struct savestate_synthmouse s;
	int r = console_dev_restore_len(m->d, len, sizeof(s), err, errlen);
	if (r || !m->d)
		return r;
	memcpy(&s, buf, sizeof(s));
	pthread_mutex_lock(&m->d->lock);
	bool approved = s.version == SYNTHHID_VERSION_2_0;
	const char *why = s.state > SYNTHMOUSE_REFUSED ? "an unknown state"
			  : (s.state == SYNTHMOUSE_CLOSED) != !m->d->chan ? "a state that does not fit the channel"
			  : ((s.state == SYNTHMOUSE_INFO_SENT || s.state == SYNTHMOUSE_READY) && !approved) ||
					  (s.state == SYNTHMOUSE_REFUSED && approved)
				  ? "a version its state could not have"
				  : NULL;
	if (!why) {
		m->state = (enum synthmouse_state)s.state;
		m->version = s.version;
		m->reports = s.reports;
	}
	pthread_mutex_unlock(&m->d->lock);
	if (why) {
		snprintf(err, errlen, "bad state: %s", why);
		return -EINVAL;
	}
	return 0;
}

const struct vmdev_class synthmouse_class = {
	.name = "mouse",
	.class_guid = SYNTHHID_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &console_settings_class,
	.create = mouse_create,
	.destroy = mouse_destroy,
	.verbs = mouse_verbs,
	.status = mouse_status,
	.quiesce = mouse_quiesce,
	.thaw = mouse_thaw,
	.save = mouse_save,
	.restore = mouse_restore,
};
