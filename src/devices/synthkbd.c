/* The synthetic keyboard: see synthkbd.h. Facts (versions, layouts, what the guest checks) from
 * Linux's drivers/input/serio/hyperv-keyboard.c, cited in include/gen2vm/proto/synthkbd.h. */
#include "devices/synthkbd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "gen2vm/proto/savestate.h"
#include "gen2vm/proto/synthkbd.h"
#include "util/log.h"

/* ---- scan code set 1, US layout ---- */

static const struct {
	const char *name;
	uint8_t make;
	bool e0;
} kbd_names[] = {
	{ "esc", 0x01, false },       { "escape", 0x01, false },    { "backspace", 0x0e, false },
	{ "tab", 0x0f, false },       { "enter", 0x1c, false },     { "return", 0x1c, false },
	{ "space", 0x39, false },     { "minus", 0x0c, false },     { "capslock", 0x3a, false },
	{ "numlock", 0x45, false },   { "scrolllock", 0x46, false }, { "ctrl", 0x1d, false },
	{ "rctrl", 0x1d, true },      { "shift", 0x2a, false },     { "rshift", 0x36, false },
	{ "alt", 0x38, false },       { "altgr", 0x38, true },      { "ralt", 0x38, true },
	{ "win", 0x5b, true },        { "super", 0x5b, true },      { "meta", 0x5b, true },
	{ "menu", 0x5d, true },       { "insert", 0x52, true },     { "ins", 0x52, true },
	{ "delete", 0x53, true },     { "del", 0x53, true },        { "home", 0x47, true },
	{ "end", 0x4f, true },        { "pageup", 0x49, true },     { "pgup", 0x49, true },
	{ "pagedown", 0x51, true },   { "pgdn", 0x51, true },       { "up", 0x48, true },
	{ "down", 0x50, true },       { "left", 0x4b, true },       { "right", 0x4d, true },
	{ "f11", 0x57, false },       { "f12", 0x58, false },
};

/* Printable ASCII from 0x20: the make code, and bit 7 set when the character is shifted. 0: none. */
static const uint8_t kbd_ascii[95] = {
	[' ' - 32] = 0x39,        ['!' - 32] = 0x80 | 0x02, ['"' - 32] = 0x80 | 0x28, ['#' - 32] = 0x80 | 0x04,
	['$' - 32] = 0x80 | 0x05, ['%' - 32] = 0x80 | 0x06, ['&' - 32] = 0x80 | 0x08, ['\'' - 32] = 0x28,
	['(' - 32] = 0x80 | 0x0a, [')' - 32] = 0x80 | 0x0b, ['*' - 32] = 0x80 | 0x09, ['+' - 32] = 0x80 | 0x0d,
	[',' - 32] = 0x33,        ['-' - 32] = 0x0c,        ['.' - 32] = 0x34,        ['/' - 32] = 0x35,
	['0' - 32] = 0x0b,        ['1' - 32] = 0x02,        ['2' - 32] = 0x03,        ['3' - 32] = 0x04,
	['4' - 32] = 0x05,        ['5' - 32] = 0x06,        ['6' - 32] = 0x07,        ['7' - 32] = 0x08,
	['8' - 32] = 0x09,        ['9' - 32] = 0x0a,        [':' - 32] = 0x80 | 0x27, [';' - 32] = 0x27,
	['<' - 32] = 0x80 | 0x33, ['=' - 32] = 0x0d,        ['>' - 32] = 0x80 | 0x34, ['?' - 32] = 0x80 | 0x35,
	['@' - 32] = 0x80 | 0x03, ['[' - 32] = 0x1a,        ['\\' - 32] = 0x2b,       [']' - 32] = 0x1b,
	['^' - 32] = 0x80 | 0x07, ['_' - 32] = 0x80 | 0x0c, ['`' - 32] = 0x29,        ['{' - 32] = 0x80 | 0x1a,
	['|' - 32] = 0x80 | 0x2b, ['}' - 32] = 0x80 | 0x1b, ['~' - 32] = 0x80 | 0x29,
};

/* The letters in alphabetical order. */
static const uint8_t kbd_letters[26] = { 0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25, 0x26, 0x32,
					 0x31, 0x18, 0x19, 0x10, 0x13, 0x1f, 0x14, 0x16, 0x2f, 0x11, 0x2d, 0x15, 0x2c };

#define KBD_SHIFT 0x2a

bool synthkbd_key_of_char(char c, struct synthkbd_key *key, bool *shift)
{
	*key = (struct synthkbd_key){ 0, false };
	*shift = false;
	if (c == '\n') {
		key->make = 0x1c;
		return true;
	}
	if (c == '\t') {
		key->make = 0x0f;
		return true;
	}
	if (c >= 'a' && c <= 'z') {
		key->make = kbd_letters[c - 'a'];
		return true;
	}
	if (c >= 'A' && c <= 'Z') {
		key->make = kbd_letters[c - 'A'];
		*shift = true;
		return true;
	}
	if (c < 0x20 || c > 0x7e || !kbd_ascii[c - 32])
		return false;
	key->make = kbd_ascii[c - 32] & 0x7f;
	*shift = kbd_ascii[c - 32] & 0x80;
	return true;
}

bool synthkbd_key_by_name(const char *name, struct synthkbd_key *key)
{
	for (size_t i = 0; i < sizeof(kbd_names) / sizeof(kbd_names[0]); i++)
		if (!strcasecmp(kbd_names[i].name, name)) {
			*key = (struct synthkbd_key){ kbd_names[i].make, kbd_names[i].e0 };
			return true;
		}
	/* f1..f10 are consecutive; f11 and f12 are in the table. */
	if ((name[0] == 'f' || name[0] == 'F') && name[1] >= '1' && name[1] <= '9' &&
	    (!name[2] || (name[1] == '1' && name[2] == '0' && !name[3]))) {
		unsigned n = name[2] ? 10 : (unsigned)(name[1] - '0');
		*key = (struct synthkbd_key){ (uint8_t)(0x3b + n - 1), false };
		return true;
	}
	return false;
}

/* X keysyms (X11's keysymdef.h values, which RFB uses) of the keys that are no character. */
static const struct {
	uint32_t keysym;
	uint8_t make;
	bool e0;
} kbd_keysyms[] = {
	{ 0xff08, 0x0e, false }, /* BackSpace */     { 0xff09, 0x0f, false }, /* Tab */
	{ 0xfe20, 0x0f, false }, /* ISO_Left_Tab */  { 0xff0d, 0x1c, false }, /* Return */
	{ 0xff1b, 0x01, false }, /* Escape */        { 0xff8d, 0x1c, true },  /* KP_Enter */
	{ 0xff50, 0x47, true },  /* Home */          { 0xff51, 0x4b, true },  /* Left */
	{ 0xff52, 0x48, true },  /* Up */            { 0xff53, 0x4d, true },  /* Right */
	{ 0xff54, 0x50, true },  /* Down */          { 0xff55, 0x49, true },  /* Prior */
	{ 0xff56, 0x51, true },  /* Next */          { 0xff57, 0x4f, true },  /* End */
	{ 0xff63, 0x52, true },  /* Insert */        { 0xffff, 0x53, true },  /* Delete */
	{ 0xff67, 0x5d, true },  /* Menu */          { 0xff7f, 0x45, false }, /* Num_Lock */
	{ 0xff14, 0x46, false }, /* Scroll_Lock */   { 0xffe5, 0x3a, false }, /* Caps_Lock */
	{ 0xffe1, 0x2a, false }, /* Shift_L */       { 0xffe2, 0x36, false }, /* Shift_R */
	{ 0xffe3, 0x1d, false }, /* Control_L */     { 0xffe4, 0x1d, true },  /* Control_R */
	{ 0xffe7, 0x38, false }, /* Meta_L: Alt */   { 0xffe8, 0x38, true },  /* Meta_R */
	{ 0xffe9, 0x38, false }, /* Alt_L */         { 0xffea, 0x38, true },  /* Alt_R */
	{ 0xfe03, 0x38, true },  /* ISO_Level3_Shift (AltGr) */
	{ 0xffeb, 0x5b, true },  /* Super_L */       { 0xffec, 0x5c, true },  /* Super_R */
	{ 0xffc8, 0x57, false }, /* F11 */           { 0xffc9, 0x58, false }, /* F12 */
};

bool synthkbd_key_of_keysym(uint32_t keysym, struct synthkbd_key *key, int *shift)
{
	*key = (struct synthkbd_key){ 0, false };
	*shift = -1;
	if (keysym >= 0x20 && keysym <= 0x7e) {
		bool sh;
		if (!synthkbd_key_of_char((char)keysym, key, &sh))
			return false;
		*shift = sh;
		return true;
	}
	if (keysym >= 0xffbe && keysym <= 0xffc7) { /* F1..F10: consecutive in both */
		key->make = (uint8_t)(0x3b + keysym - 0xffbe);
		return true;
	}
	for (size_t i = 0; i < sizeof(kbd_keysyms) / sizeof(kbd_keysyms[0]); i++)
		if (kbd_keysyms[i].keysym == keysym) {
			*key = (struct synthkbd_key){ kbd_keysyms[i].make, kbd_keysyms[i].e0 };
			return true;
		}
	return false;
}

bool synthkbd_keysym_is_shift(uint32_t keysym)
{
	return keysym == 0xffe1 || keysym == 0xffe2;
}

/* ---- the protocol ---- */

static void kbd_packet(struct console_dev *d, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct synthkbd *k = d->svc;
	struct synthkbd_hdr h;
	if (len < sizeof(h)) {
		log_guest("synthetic keyboard: a packet of %u bytes dropped (no message type)", len);
		return;
	}
	memcpy(&h, pkt, sizeof(h));
	switch (h.type) {
	case SYNTHKBD_MSG_PROTOCOL_REQUEST: {
		struct synthkbd_protocol_request rq;
		if (len < sizeof(rq)) {
			log_guest("synthetic keyboard: a protocol request of %u bytes dropped", len);
			return;
		}
		memcpy(&rq, pkt, sizeof(rq));
		bool ok = rq.version == SYNTHKBD_VERSION_1_0;
		struct synthkbd_protocol_response rs = { { SYNTHKBD_MSG_PROTOCOL_RESPONSE },
							 ok ? SYNTHKBD_PROTOCOL_ACCEPTED : 0 };
		k->version = rq.version;
		if (!ok)
			log_guest("synthetic keyboard: version %u.%u refused (only 1.0 is defined)", rq.version >> 16,
				  rq.version & 0xffff);
		/* The guest waits 10 s for the answer (hyperv-keyboard.c); a full ring this early means a
		 * broken guest, and it will time out. */
		int r = console_dev_send(d, &rs, sizeof(rs), trans);
		if (r)
			log_warn("synthetic keyboard: cannot answer the protocol request: %s", strerror(-r));
		k->connected = ok && !r;
		if (k->connected)
			log_debug("synthetic keyboard: the guest's driver connected (version 1.0)");
		break;
	}
	case SYNTHKBD_MSG_LED_INDICATORS: {
		struct synthkbd_led_indicators l;
		if (len < sizeof(l)) {
			log_guest("synthetic keyboard: an LED message of %u bytes dropped", len);
			return;
		}
		memcpy(&l, pkt, sizeof(l));
		k->leds = l.led_flags & (SYNTHKBD_LED_SCROLL_LOCK | SYNTHKBD_LED_NUM_LOCK | SYNTHKBD_LED_CAPS_LOCK);
		break;
	}
	default: /* the host's own messages (RESPONSE, EVENT) and unknown types */
		log_guest("synthetic keyboard: a message of type %u (%u bytes) dropped", h.type, len);
		break;
	}
}

static void kbd_closed(struct console_dev *d)
{
	struct synthkbd *k = d->svc;
	k->connected = false;
}

static const struct console_dev_ops kbd_ops = { .packet = kbd_packet, .closed = kbd_closed };

/* ---- sending keys ---- */

struct kbd_event {
	uint8_t make;
	bool e0, e1, brk;
};

/* With the lock held: n events whole, or none when the ring cannot take them all. */
static int kbd_send_events(struct synthkbd *k, const struct kbd_event *ev, unsigned n)
{
	if (!k->d || !k->connected)
		return -ENOTCONN;
	if (k->d->input_held)
		return -EBUSY;
	uint64_t need = (uint64_t)n * vmbus_ring_packet_bytes(0, sizeof(struct synthkbd_keystroke));
	if (console_dev_tx_room(k->d) <= need) /* "full" means free <= the packet's bytes */
		return -EAGAIN;
	for (unsigned i = 0; i < n; i++) {
		struct synthkbd_keystroke ks = {
			.hdr = { SYNTHKBD_MSG_EVENT },
			.make_code = ev[i].make,
			.info = (ev[i].e0 ? SYNTHKBD_INFO_E0 : 0) | (ev[i].e1 ? SYNTHKBD_INFO_E1 : 0) |
				(ev[i].brk ? SYNTHKBD_INFO_BREAK : 0),
		};
		int r = console_dev_send(k->d, &ks, sizeof(ks), 0);
		if (r)
			return r;
		k->events++;
	}
	return 0;
}

int synthkbd_send_scancode(struct synthkbd *k, uint16_t make, bool e0, bool e1, bool brk)
{
	/* The guest ORs 0x80 into the code for a break: a code with it set would read as one. */
	if (!make || make > 0x7f || (e0 && e1))
		return -EINVAL;
	if (!k->d)
		return -ENOTCONN;
	struct kbd_event ev = { (uint8_t)make, e0, e1, brk };
	pthread_mutex_lock(&k->d->lock);
	int r = kbd_send_events(k, &ev, 1);
	pthread_mutex_unlock(&k->d->lock);
	return r;
}

#define KBD_COMBO_MAX 8

int synthkbd_press(struct synthkbd *k, const char *name)
{
	struct synthkbd_key keys[KBD_COMBO_MAX + 1];
	unsigned n = 0;
	char buf[128];
	if (!*name || strlen(name) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", name);
	/* "ctrl-alt-del": every part is a key, held down in order; "-" alone is the minus key. */
	for (char *p = buf; *p;) {
		char *dash = strchr(p + 1, '-'); /* p + 1: a part may be "-" itself */
		if (dash)
			*dash = '\0';
		struct synthkbd_key key;
		bool shift = false;
		if (!synthkbd_key_by_name(p, &key) && !(p[0] && !p[1] && synthkbd_key_of_char(p[0], &key, &shift)))
			return -EINVAL;
		if (n + 1 + shift > KBD_COMBO_MAX)
			return -EINVAL;
		if (shift)
			keys[n++] = (struct synthkbd_key){ KBD_SHIFT, false };
		keys[n++] = key;
		if (!dash)
			break;
		p = dash + 1;
		if (!*p)
			return -EINVAL; /* a trailing dash */
	}
	struct kbd_event ev[2 * KBD_COMBO_MAX];
	for (unsigned i = 0; i < n; i++) {
		ev[i] = (struct kbd_event){ keys[i].make, keys[i].e0, false, false };
		ev[2 * n - 1 - i] = (struct kbd_event){ keys[i].make, keys[i].e0, false, true };
	}
	if (!k->d)
		return -ENOTCONN;
	pthread_mutex_lock(&k->d->lock);
	int r = kbd_send_events(k, ev, 2 * n);
	pthread_mutex_unlock(&k->d->lock);
	return r;
}

int synthkbd_type(struct synthkbd *k, const char *text, size_t *bad)
{
	size_t len = strlen(text);
	if (len > SYNTHKBD_TYPE_MAX)
		return -E2BIG;
	struct kbd_event *ev = malloc((len * 4 + 1) * sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	unsigned n = 0;
	for (size_t i = 0; i < len; i++) {
		struct synthkbd_key key;
		bool shift;
		if (!synthkbd_key_of_char(text[i], &key, &shift)) {
			if (bad)
				*bad = i;
			free(ev);
			return -EINVAL;
		}
		if (shift)
			ev[n++] = (struct kbd_event){ KBD_SHIFT, false, false, false };
		ev[n++] = (struct kbd_event){ key.make, key.e0, false, false };
		ev[n++] = (struct kbd_event){ key.make, key.e0, false, true };
		if (shift)
			ev[n++] = (struct kbd_event){ KBD_SHIFT, false, false, true };
	}
	int r = -ENOTCONN;
	if (k->d) {
		pthread_mutex_lock(&k->d->lock);
		r = kbd_send_events(k, ev, n);
		pthread_mutex_unlock(&k->d->lock);
	}
	free(ev);
	return r;
}

/* ---- the class ---- */

/* Why a key cannot go now, for the verbs' replies. */
static void kbd_why(struct synthkbd *k, int r, char *reply, size_t len)
{
	if (!k->d)
		snprintf(reply, len, "the synthetic keyboard is not offered (see --synthetic-console)");
	else if (r == -ENOTCONN)
		snprintf(reply, len, "the guest's keyboard driver (hyperv_keyboard) has not connected");
	else if (r == -EAGAIN)
		snprintf(reply, len, "the guest is not reading its keyboard ring (full); nothing was sent");
	else if (r == -EBUSY)
		snprintf(reply, len, "the VM is being saved; nothing was sent");
	else
		snprintf(reply, len, "cannot send the keys: %s", strerror(-r));
}

static int kbd_verb_key(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct synthkbd *k = state;
	if (argc != 2) {
		snprintf(reply, len, "usage: key NAME (enter, esc, tab, backspace, f1..f12, up, down, left, right, "
				     "home, end, pageup, pagedown, delete, a letter; combined with -: ctrl-alt-del, ctrl-c)");
		return -EINVAL;
	}
	int r = synthkbd_press(k, argv[1]);
	if (r == -EINVAL) {
		char shown[48];
		snprintf(shown, sizeof(shown), "%.40s", argv[1]);
		snprintf(reply, len, "unknown key '%s' (enter, esc, tab, f1..f12, up, ctrl-alt-del, ctrl-c...)", shown);
		return r;
	}
	if (r) {
		kbd_why(k, r, reply, len);
		return r;
	}
	snprintf(reply, len, "sent");
	return 0;
}

static int kbd_verb_type(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct synthkbd *k = state;
	if (argc < 2) {
		snprintf(reply, len, "usage: type TEXT (printable ASCII, US layout, up to %u characters)", SYNTHKBD_TYPE_MAX);
		return -EINVAL;
	}
	/* The control socket splits at spaces (a quoted argument keeps its own): the words are typed with
	 * one space between them. */
	char text[SYNTHKBD_TYPE_MAX + 1];
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		size_t w = strlen(argv[i]) + (i > 1);
		if (n + w > SYNTHKBD_TYPE_MAX) {
			snprintf(reply, len, "the text is longer than %u characters", SYNTHKBD_TYPE_MAX);
			return -E2BIG;
		}
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i > 1 ? " " : "", argv[i]);
	}
	size_t bad = 0;
	int r = synthkbd_type(k, text, &bad);
	if (r == -EINVAL) {
		snprintf(reply, len, "character %zu (0x%02x) has no key on a US keyboard", bad + 1, (uint8_t)text[bad]);
		return r;
	}
	if (r) {
		kbd_why(k, r, reply, len);
		return r;
	}
	snprintf(reply, len, "typed %zu characters", n);
	return 0;
}

static int kbd_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen)
{
	struct synthkbd *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "the synthetic keyboard: out of memory");
		return -ENOMEM;
	}
	if (console_settings_enabled(cfgs, n)) {
		int r = console_dev_create(&k->d, h, "keyboard", SYNTHKBD_CLASS_GUID_TEXT, 0x7e570401u, 0, &kbd_ops, k,
					   err, errlen);
		if (r) {
			free(k);
			return r;
		}
	}
	*state = k;
	return 0;
}

static void kbd_destroy(void *state)
{
	struct synthkbd *k = state;
	if (!k)
		return;
	console_dev_destroy(k->d);
	free(k);
}

/* `status`: JSON "keyboard": {"state", "leds"} when offered. */
static void kbd_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct synthkbd *k = state;
	if (!k->d)
		return; /* off by default: nothing to say */
	pthread_mutex_lock(&k->d->lock);
	const char *st = k->connected ? "connected" : k->d->chan ? "negotiating" : "no contact";
	struct json_object *j = json_object_new_object();
	if (j) {
		json_object_object_add(j, "state", json_object_new_string(st));
		json_object_object_add(j, "leds", json_object_new_int(k->leds));
		json_object_object_add(o, "keyboard", j);
	}
	snprintf(text, len, "keyboard %s", st);
	pthread_mutex_unlock(&k->d->lock);
}

static const struct vmdev_verb kbd_verbs[] = {
	{ "key", "key NAME", kbd_verb_key },
	{ "type", "type TEXT", kbd_verb_type },
	{ NULL, NULL, NULL },
};

/* ---- saving ---- */

static int kbd_quiesce(void *state, unsigned timeout_ms)
{
	console_dev_hold(((struct synthkbd *)state)->d, true);
	return 0;
}

static void kbd_thaw(void *state)
{
	console_dev_hold(((struct synthkbd *)state)->d, false);
}

static int kbd_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct synthkbd *k = state;
	struct savestate_synthkbd s = { 0 };
	if (k->d) {
		pthread_mutex_lock(&k->d->lock);
		s = (struct savestate_synthkbd){ .connected = k->connected, .version = k->version, .leds = k->leds,
						 .events = k->events };
		pthread_mutex_unlock(&k->d->lock);
	}
	return console_dev_save(k->d, &s, sizeof(s), out, len);
}

/* After the VMBus restore reopened the channel: the guest's driver stays connected. */
static int kbd_restore(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct synthkbd *k = state;
	struct savestate_synthkbd s;
	int r = console_dev_restore_len(k->d, len, sizeof(s), err, errlen);
	if (r || !k->d)
		return r;
	memcpy(&s, buf, sizeof(s));
	pthread_mutex_lock(&k->d->lock);
	const char *why = s.connected > 1 || s.reserved0 || s.reserved1 ? "a field out of range"
			  : s.connected && (!k->d->chan || s.version != SYNTHKBD_VERSION_1_0)
				  ? "a connected driver on a channel that is closed, or of another version"
			  : s.leds & ~(SYNTHKBD_LED_SCROLL_LOCK | SYNTHKBD_LED_NUM_LOCK | SYNTHKBD_LED_CAPS_LOCK)
				  ? "unknown LEDs"
				  : NULL;
	if (!why) {
		k->connected = s.connected;
		k->version = s.version;
		k->leds = s.leds;
		k->events = s.events;
	}
	pthread_mutex_unlock(&k->d->lock);
	if (why) {
		snprintf(err, errlen, "bad state: %s", why);
		return -EINVAL;
	}
	return 0;
}

const struct vmdev_class synthkbd_class = {
	.name = "keyboard",
	.class_guid = SYNTHKBD_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &console_settings_class,
	.create = kbd_create,
	.destroy = kbd_destroy,
	.verbs = kbd_verbs,
	.status = kbd_status,
	.quiesce = kbd_quiesce,
	.thaw = kbd_thaw,
	.save = kbd_save,
	.restore = kbd_restore,
};
