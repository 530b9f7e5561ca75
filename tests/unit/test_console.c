/* The synthetic console devices (src/devices/synthkbd.c, synthmouse.c, synthvid.c): off unless
 * --synthetic-console, the handshakes as Linux's hyperv_keyboard and hid-hyperv do them, the host's
 * keys and pointer reaching the guest as those drivers read them, and hostile guest messages
 * dropped; the video VRAM mapped through a fake vmdev_host.map_ram and the screenshot read back. The
 * guest side is the loopback guest (tests/support/loopback.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <json-c/json.h>
#include <png.h>

#include "devices/console.h"
#include "devices/synthkbd.h"
#include "devices/synthmouse.h"
#include "devices/synthvid.h"
#include "devices/vmdev.h"
#include "vmm/savestate.h"
#include "efi/efi_gfxcon.h"
#include "gen2vm/proto/synthhid.h"
#include "gen2vm/proto/synthkbd.h"
#include "support/loopback.h"
#include "ui/vnc.h"

#define PADDED(n) (((uint32_t)(n) + 7u) & ~7u)

struct cfx {
	struct vmbus_loopback lb;
	pthread_mutex_t lock;
	struct vmdev_host h;
	struct vmdev_config cfg;
	struct vmdev_set set;
	struct vmbus_client_channel ch;
	/* The fake map_ram: malloc'ed memory, allocated once as the machine's is. */
	uint8_t *ram;
	uint64_t ram_size, ram_gpa;
	bool ram_mapped;
	unsigned maps, unmaps;
	/* The fake dirty log (ram_written, with cfx_log): pages the test says the guest wrote. */
	uint64_t written[SYNTHVID_VRAM_SIZE / 4096 / 64];
	unsigned written_calls;
};

static int cfx_map_ram(void *opaque, uint64_t gpa, uint64_t size, void **host)
{
	struct cfx *f = opaque;
	if (!f->ram) {
		if (!(f->ram = calloc(1, size)))
			return -ENOMEM;
		f->ram_size = size;
	} else if (size != f->ram_size) {
		return -EBUSY;
	}
	f->ram_gpa = gpa;
	f->ram_mapped = true;
	f->maps++;
	*host = f->ram;
	return 0;
}

static int cfx_unmap_ram(void *opaque)
{
	struct cfx *f = opaque;
	f->ram_mapped = false;
	f->unmaps++;
	return 0;
}

static int cfx_ram_written(void *opaque, uint64_t *bitmap)
{
	struct cfx *f = opaque;
	__atomic_fetch_add(&f->written_calls, 1, __ATOMIC_SEQ_CST);
	if (!f->ram_mapped)
		return -ENOENT;
	for (size_t i = 0; i < sizeof(f->written) / sizeof(f->written[0]); i++)
		bitmap[i] = __atomic_exchange_n(&f->written[i], 0, __ATOMIC_SEQ_CST); /* the VNC thread's */
	return 0;
}

/* Marks bytes [off, off + len) of the VRAM written in the fake log. */
static void cfx_write_log(struct cfx *f, uint64_t off, uint64_t len)
{
	for (uint64_t pg = off / 4096; pg <= (off + len - 1) / 4096; pg++)
		__atomic_fetch_or(&f->written[pg / 64], 1ull << (pg % 64), __ATOMIC_SEQ_CST);
}

/* gen2's windows: 128 MiB below the IOAPIC and 64 GiB high up (the loopback's RAM is 64 MiB at 0). */
#define CFX_MMIO_LOW 0xf0000000ull
#define CFX_MMIO_HIGH 0x1000000000ull

/* The screen the next fixture's VM is configured for (--video; 0x0: the default). */
static struct synthvid_screen_size cfx_video;
/* Whether the next fixture's host keeps a dirty log of the VRAM (vmdev_host.ram_written). */
static bool cfx_log;

static void cfx_init_host(struct cfx *f, bool on, bool with_ram)
{
	memset(f, 0, sizeof(*f));
	char err[256];
	if (on)
		assert_int_equal(vmdev_config_add_option(&f->cfg, "synthetic-console", NULL, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_validate(&f->cfg, err, sizeof(err)), 0);
	assert_int_equal(vmbus_loopback_init(&f->lb, 64ull << 20, 1, NULL), 0);
	pthread_mutex_init(&f->lock, NULL);
	f->h = (struct vmdev_host){ .srv = f->lb.srv, .srv_lock = &f->lock, .mem = &f->lb.mem, .nr_vcpus = 1,
				    .vm_name = "t", .mmio = { { CFX_MMIO_LOW, 128ull << 20 }, { CFX_MMIO_HIGH, 64ull << 30 } },
				    .video = cfx_video };
	if (with_ram) {
		f->h.opaque = f;
		f->h.map_ram = cfx_map_ram;
		f->h.unmap_ram = cfx_unmap_ram;
		if (cfx_log)
			f->h.ram_written = cfx_ram_written;
	}
	assert_int_equal(vmdev_set_create(&f->set, &f->h, &f->cfg, err, sizeof(err)), 0);
	assert_int_equal(vmbus_client_connect(&f->lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&f->lb.cl), 0);
}

static void cfx_init(struct cfx *f, bool on)
{
	cfx_init_host(f, on, false);
}

static void cfx_destroy(struct cfx *f)
{
	vmdev_set_destroy(&f->set);
	vmdev_config_free(&f->cfg);
	vmbus_loopback_destroy(&f->lb);
	pthread_mutex_destroy(&f->lock);
	free(f->ram);
}

static const struct vmbus_client_offer *cfx_offer(struct cfx *f, const char *guid)
{
	struct vmbus_guid g;
	assert_int_equal(vmbus_guid_parse(guid, &g), 0);
	return vmbus_client_find_offer(&f->lb.cl, &g, 0);
}

/* Opens the device's channel with the drivers' rings: 40 KiB for the keyboard and mouse (10 pages;
 * VMBUS_RING_SIZE(36 KiB)), 256 KiB for video. */
static void cfx_open_ring(struct cfx *f, const char *guid, uint32_t ring)
{
	const struct vmbus_client_offer *o = cfx_offer(f, guid);
	assert_non_null(o);
	assert_int_equal(vmbus_client_channel_open(&f->lb.cl, &f->ch, o->msg.child_relid, ring, ring, 0, NULL, 0), 0);
}

static void cfx_open(struct cfx *f, const char *guid)
{
	cfx_open_ring(f, guid, 40960);
}

static void *cfx_state(struct cfx *f, const char *cls)
{
	for (unsigned i = 0; i < f->set.n; i++)
		if (!strcmp(f->set.run[i].cls->name, cls))
			return f->set.run[i].state;
	fail_msg("no class %s", cls);
	return NULL;
}

static int cfx_verb(struct cfx *f, const char *cmd, char *reply, size_t len)
{
	char buf[1024], *argv[32];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", cmd);
	for (char *save, *t = strtok_r(buf, " ", &save); t && argc < 32; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	for (unsigned i = 0; i < f->set.n; i++)
		for (const struct vmdev_verb *v = f->set.run[i].cls->verbs; v && v->name; v++)
			if (!strcmp(v->name, argv[0]))
				return v->fn(f->set.run[i].state, argc, argv, reply, len);
	fail_msg("no verb %s", argv[0]);
	return -1;
}

/* A host packet's payload, false when none waits. */
static bool cfx_recv(struct cfx *f, uint8_t *pkt, uint32_t *len)
{
	static uint8_t raw[4096];
	uint32_t n;
	if (vmbus_client_recv(&f->ch, raw, sizeof(raw), &n))
		return false;
	vmbus_client_recv_done(&f->ch);
	struct vmbus_packet_descriptor d;
	memcpy(&d, raw, sizeof(d));
	assert_int_equal(d.type, VM_PKT_DATA_INBAND);
	*len = n - d.offset8 * 8u;
	memcpy(pkt, raw + d.offset8 * 8u, *len);
	return true;
}

/* As the drivers send: INBAND with a completion requested. */
static void cfx_send(struct cfx *f, const void *msg, uint32_t len)
{
	assert_int_equal(vmbus_client_send(&f->ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
					   0x1234, NULL, 0, msg, len),
			 0);
}

/* ---- off by default ---- */

static void test_off_by_default(void **state)
{
	struct cfx f;
	cfx_init(&f, false);
	assert_null(cfx_offer(&f, SYNTHKBD_CLASS_GUID_TEXT));
	assert_null(cfx_offer(&f, SYNTHHID_CLASS_GUID_TEXT));
	assert_null(cfx_offer(&f, SYNTHVID_CLASS_GUID_TEXT));
	char reply[256];
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "--synthetic-console"));
	assert_int_equal(cfx_verb(&f, "mouse 1 2", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "--synthetic-console"));
	cfx_destroy(&f);

	/* JSON: "synthetic_console": true (one value, not an array); other types are refused. */
	struct vmdev_config cfg = { 0 };
	char err[256];
	struct json_object *t = json_object_new_boolean(1), *s = json_object_new_string("yes");
	assert_int_equal(vmdev_config_add_json(&cfg, "synthetic_console", t, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_add_json(&cfg, "synthetic_console", s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "true or false"));
	void *items[1] = { cfg.items[0].cfg };
	assert_true(console_settings_enabled(items, 1));
	assert_false(console_settings_enabled(NULL, 0));
	json_object_put(t);
	json_object_put(s);
	vmdev_config_free(&cfg);
}

/* ---- the keyboard ---- */

/* hyperv-keyboard.c's probe: PROTOCOL_REQUEST 1.0, then the response it checks for ACCEPTED. */
static void kbd_connect(struct cfx *f, uint32_t version, uint32_t want_status)
{
	cfx_open(f, SYNTHKBD_CLASS_GUID_TEXT);
	uint8_t pkt[256];
	uint32_t len;
	assert_false(cfx_recv(f, pkt, &len)); /* the guest speaks first */
	struct synthkbd_protocol_request rq = { { SYNTHKBD_MSG_PROTOCOL_REQUEST }, version };
	cfx_send(f, &rq, sizeof(rq));
	assert_true(cfx_recv(f, pkt, &len));
	assert_int_equal(len, PADDED(sizeof(struct synthkbd_protocol_response)));
	struct synthkbd_protocol_response rs;
	memcpy(&rs, pkt, sizeof(rs));
	assert_int_equal(rs.hdr.type, SYNTHKBD_MSG_PROTOCOL_RESPONSE);
	assert_int_equal(rs.status, want_status);
}

/* The next n key events into ev; checks each is a well-formed EVENT. */
static void kbd_events(struct cfx *f, struct synthkbd_keystroke *ev, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t pkt[256];
		uint32_t len;
		assert_true(cfx_recv(f, pkt, &len));
		assert_int_equal(len, PADDED(sizeof(*ev)));
		memcpy(&ev[i], pkt, sizeof(*ev));
		assert_int_equal(ev[i].hdr.type, SYNTHKBD_MSG_EVENT);
		assert_int_equal(ev[i].reserved, 0);
	}
	uint8_t pkt[256];
	uint32_t len;
	assert_false(cfx_recv(f, pkt, &len));
}

#define KS(code, inf) ((uint32_t)(code) | (uint32_t)(inf) << 16)
static uint32_t ks(const struct synthkbd_keystroke *e)
{
	return KS(e->make_code, e->info);
}

static void test_keyboard(void **state)
{
	struct cfx f;
	cfx_init(&f, true);
	char reply[256];
	struct synthkbd *k = cfx_state(&f, "keyboard");
	/* Before the guest's driver: a clear error. */
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "the guest's keyboard driver (hyperv_keyboard) has not connected");
	kbd_connect(&f, SYNTHKBD_VERSION_1_0, SYNTHKBD_PROTOCOL_ACCEPTED);
	assert_true(k->connected);

	struct synthkbd_keystroke ev[64];
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	assert_int_equal(ks(&ev[0]), KS(0x1c, 0));
	assert_int_equal(ks(&ev[1]), KS(0x1c, SYNTHKBD_INFO_BREAK));

	/* Ctrl, Alt, E0 Delete down; up in reverse. */
	assert_int_equal(cfx_verb(&f, "key ctrl-alt-del", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 6);
	static const uint32_t cad[6] = { KS(0x1d, 0), KS(0x38, 0), KS(0x53, SYNTHKBD_INFO_E0),
					 KS(0x53, SYNTHKBD_INFO_E0 | SYNTHKBD_INFO_BREAK), KS(0x38, SYNTHKBD_INFO_BREAK),
					 KS(0x1d, SYNTHKBD_INFO_BREAK) };
	for (int i = 0; i < 6; i++)
		assert_int_equal(ks(&ev[i]), cad[i]);

	assert_int_equal(cfx_verb(&f, "key f12", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	assert_int_equal(ks(&ev[0]), KS(0x58, 0));
	assert_int_equal(cfx_verb(&f, "key f1", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	assert_int_equal(ks(&ev[0]), KS(0x3b, 0));
	assert_int_equal(cfx_verb(&f, "key up", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	assert_int_equal(ks(&ev[0]), KS(0x48, SYNTHKBD_INFO_E0));
	assert_int_equal(cfx_verb(&f, "key frobnicate", reply, sizeof(reply)), -EINVAL);
	assert_non_null(strstr(reply, "unknown key"));
	assert_int_equal(cfx_verb(&f, "key ctrl-", reply, sizeof(reply)), -EINVAL);

	/* "Hi !": shift h, i, space, shift 1. */
	assert_int_equal(cfx_verb(&f, "type Hi !", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 12);
	static const uint32_t hi[12] = { KS(0x2a, 0), KS(0x23, 0), KS(0x23, 2), KS(0x2a, 2), KS(0x17, 0), KS(0x17, 2),
					 KS(0x39, 0), KS(0x39, 2), KS(0x2a, 0), KS(0x02, 0), KS(0x02, 2), KS(0x2a, 2) };
	for (int i = 0; i < 12; i++)
		assert_int_equal(ks(&ev[i]), hi[i]);
	/* A character with no key sends nothing. */
	size_t bad = 99;
	assert_int_equal(synthkbd_type(k, "ab\x01", &bad), -EINVAL);
	assert_int_equal(bad, 2);
	uint8_t pkt[256];
	uint32_t len;
	assert_false(cfx_recv(&f, pkt, &len));

	/* The C API, with prefixes; make codes beyond 7 bits and both prefixes are refused. */
	assert_int_equal(synthkbd_send_scancode(k, 0x1d, false, true, false), 0);
	kbd_events(&f, ev, 1);
	assert_int_equal(ks(&ev[0]), KS(0x1d, SYNTHKBD_INFO_E1));
	assert_int_equal(synthkbd_send_scancode(k, 0x80, false, false, false), -EINVAL);
	assert_int_equal(synthkbd_send_scancode(k, 0x1d, true, true, false), -EINVAL);

	/* A full ring: nothing half sent (the guest does not read). */
	int r = 0;
	unsigned sent = 0;
	while ((r = synthkbd_press(k, "ctrl-alt-del")) == 0)
		sent++;
	assert_int_equal(r, -EAGAIN);
	assert_true(sent > 100);
	unsigned got = 0;
	while (cfx_recv(&f, pkt, &len))
		got++;
	assert_int_equal(got, sent * 6);
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	char longtext[SYNTHKBD_TYPE_MAX + 8];
	memset(longtext, 'a', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	assert_int_equal(synthkbd_type(k, longtext, NULL), -E2BIG);

	cfx_destroy(&f);
}

static void test_keyboard_leds_and_hostile(void **state)
{
	struct cfx f;
	cfx_init(&f, true);
	struct synthkbd *k = cfx_state(&f, "keyboard");
	char reply[256];
	/* Another version is refused, and keys do not go. */
	kbd_connect(&f, 0x00020000u, 0);
	assert_false(k->connected);
	assert_int_equal(cfx_verb(&f, "type x", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "hyperv_keyboard"));

	/* Short, unknown, host-only: dropped, no answer. (The ring pads every payload to 8 bytes with
	 * zeros, so a truncated request or LED message cannot reach the device through it.) */
	uint8_t junk[16] = { 0 };
	cfx_send(&f, junk, 2);
	struct synthkbd_hdr h = { 99 };
	cfx_send(&f, &h, sizeof(h));
	struct synthkbd_keystroke ev = { { SYNTHKBD_MSG_EVENT }, 0x1c, 0, 0 };
	cfx_send(&f, &ev, sizeof(ev));
	struct synthkbd_protocol_request rq = { { SYNTHKBD_MSG_PROTOCOL_REQUEST }, SYNTHKBD_VERSION_1_0 };
	struct synthkbd_led_indicators led = { { SYNTHKBD_MSG_LED_INDICATORS }, SYNTHKBD_LED_CAPS_LOCK };
	uint8_t pkt[256];
	uint32_t len;
	assert_false(cfx_recv(&f, pkt, &len));
	assert_int_equal(k->leds, 0);
	assert_false(k->connected);

	/* Now the right request, then the LEDs (6 bytes, or 8 as a Windows guest pads it). */
	cfx_send(&f, &rq, sizeof(rq));
	assert_true(cfx_recv(&f, pkt, &len));
	assert_true(k->connected);
	cfx_send(&f, &led, sizeof(led));
	assert_int_equal(k->leds, SYNTHKBD_LED_CAPS_LOCK);
	uint8_t led8[8] = { SYNTHKBD_MSG_LED_INDICATORS, 0, 0, 0, SYNTHKBD_LED_NUM_LOCK | 0xf8, 0xff, 0, 0 };
	cfx_send(&f, led8, sizeof(led8));
	assert_int_equal(k->leds, SYNTHKBD_LED_NUM_LOCK); /* unknown bits dropped */
	struct json_object *o = json_object_new_object();
	char text[256] = "";
	vmdev_set_status(&f.set, o, text, sizeof(text));
	assert_non_null(strstr(text, "keyboard connected"));
	json_object_put(o);

	/* Closing forgets the connection; reopening needs a new request. */
	vmbus_client_channel_close(&f.ch);
	assert_false(k->connected);
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), -ENOTCONN);
	kbd_connect(&f, SYNTHKBD_VERSION_1_0, SYNTHKBD_PROTOCOL_ACCEPTED);
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), 0);
	cfx_destroy(&f);
}

/* ---- the mouse ---- */

/* A synthhid message as hid-hyperv sends it: pipe {DATA, 8 + n}, {type, n}, body. */
static uint32_t hid_msg(uint8_t *buf, uint32_t type, const void *body, uint32_t n)
{
	struct synthhid_pipe_hdr p = { SYNTHHID_PIPE_DATA, 8 + n };
	struct synthhid_hdr h = { type, n };
	memcpy(buf, &p, 8);
	memcpy(buf + 8, &h, 8);
	memcpy(buf + 16, body, n);
	return 16 + n;
}

/* hid-hyperv's probe up to the ACK; returns the report descriptor's length. */
static void mouse_connect(struct cfx *f, uint32_t version, bool approve)
{
	cfx_open(f, SYNTHHID_CLASS_GUID_TEXT);
	uint8_t buf[512], pkt[4096];
	uint32_t len;
	assert_false(cfx_recv(f, pkt, &len));
	cfx_send(f, buf, hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &version, 4));
	/* The response: exactly what fits hid-hyperv's 21-byte buffer. */
	assert_true(cfx_recv(f, pkt, &len));
	assert_int_equal(len, PADDED(21));
	struct synthhid_pipe_hdr p;
	struct synthhid_protocol_response rs;
	memcpy(&p, pkt, 8);
	memcpy(&rs, pkt + 8, sizeof(rs));
	assert_int_equal(p.type, SYNTHHID_PIPE_DATA);
	assert_int_equal(p.size, 13);
	assert_int_equal(rs.hdr.type, SYNTHHID_MSG_PROTOCOL_RESPONSE);
	assert_int_equal(rs.hdr.size, 5);
	assert_int_equal(rs.version, version);
	assert_int_equal(rs.approved, approve);
	if (!approve) {
		assert_false(cfx_recv(f, pkt, &len));
		return;
	}
	/* The device info, read as mousevsc_on_receive_device_info does. */
	assert_true(cfx_recv(f, pkt, &len));
	struct synthhid_device_info di;
	memcpy(&p, pkt, 8);
	memcpy(&di, pkt + 8, sizeof(di));
	assert_int_equal(p.type, SYNTHHID_PIPE_DATA);
	assert_int_equal(di.hdr.type, SYNTHHID_MSG_DEVICE_INFO);
	assert_int_equal(p.size, 8 + di.hdr.size);
	assert_true(p.size >= sizeof(struct synthhid_dev_info)); /* its WARN_ON */
	assert_int_equal(di.info.size, 32);
	assert_int_equal(di.hid.bLength, 9);
	assert_int_equal(di.hid.bNumDescriptors, 1);
	assert_int_equal(di.hid.bReportType, 0x22);
	assert_int_equal(di.hid.wDescriptorLength, synthmouse_report_desc_len);
	assert_int_equal(di.hdr.size, 32 + 9 + synthmouse_report_desc_len);
	assert_true(len >= 8 + p.size);
	const uint8_t *rd = pkt + 8 + 8 + 32 + di.hid.bLength;
	assert_memory_equal(rd, synthmouse_report_desc, synthmouse_report_desc_len);
	assert_int_not_equal(rd[14], 0x25); /* hid-hyperv's SA-167 rewrite leaves it alone */
	uint8_t reserved = 0;
	cfx_send(f, buf, hid_msg(buf, SYNTHHID_MSG_DEVICE_INFO_ACK, &reserved, 1));
}

static void test_mouse(void **state)
{
	struct cfx f;
	cfx_init(&f, true);
	struct synthmouse *m = cfx_state(&f, "mouse");
	char reply[256];
	assert_int_equal(cfx_verb(&f, "mouse 100 200", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "the guest's mouse driver (hid_hyperv) has not connected");
	mouse_connect(&f, SYNTHHID_VERSION_2_0, true);
	assert_int_equal(m->state, SYNTHMOUSE_READY);

	assert_int_equal(cfx_verb(&f, "mouse 32767 0x1234 5", reply, sizeof(reply)), 0);
	uint8_t pkt[256];
	uint32_t len;
	assert_true(cfx_recv(&f, pkt, &len));
	struct synthhid_pipe_hdr p;
	struct synthhid_hdr h;
	memcpy(&p, pkt, 8);
	memcpy(&h, pkt + 8, 8);
	assert_int_equal(p.type, SYNTHHID_PIPE_DATA);
	assert_int_equal(h.type, SYNTHHID_MSG_INPUT_REPORT);
	assert_int_equal(h.size, SYNTHMOUSE_REPORT_SIZE);
	assert_int_equal(p.size, 8 + SYNTHMOUSE_REPORT_SIZE);
	static const uint8_t want[6] = { 5, 0xff, 0x7f, 0x34, 0x12, 0 };
	assert_memory_equal(pkt + 16, want, 6);
	assert_int_equal(synthmouse_send(m, 1, 2, 0, -1), 0);
	assert_true(cfx_recv(&f, pkt, &len));
	assert_int_equal(pkt[16 + 5], 0xff);

	assert_int_equal(cfx_verb(&f, "mouse 32768 0", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(cfx_verb(&f, "mouse -1 0", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(cfx_verb(&f, "mouse 1 1 8", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(cfx_verb(&f, "mouse 1", reply, sizeof(reply)), -EINVAL);
	assert_false(cfx_recv(&f, pkt, &len));
	cfx_destroy(&f);
}

static void test_mouse_hostile(void **state)
{
	struct cfx f;
	cfx_init(&f, true);
	struct synthmouse *m = cfx_state(&f, "mouse");
	mouse_connect(&f, 0x00010000u, false); /* 1.0: refused */
	assert_int_equal(m->state, SYNTHMOUSE_REFUSED);
	assert_int_equal(synthmouse_send(m, 1, 1, 0, 0), -ENOTCONN);

	uint8_t buf[512], pkt[4096];
	uint32_t len, v = SYNTHHID_VERSION_2_0;
	/* Sizes beyond the packet, a pipe type other than DATA, short packets, an ACK out of turn,
	 * the host's own messages: all dropped without an answer. */
	uint32_t n = hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &v, 4);
	buf[4] = 200; /* pipe size */
	cfx_send(&f, buf, n);
	n = hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &v, 4);
	buf[12] = 5; /* synthhid size beyond the pipe's */
	cfx_send(&f, buf, n);
	n = hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &v, 4);
	buf[0] = 2; /* pipe type */
	cfx_send(&f, buf, n);
	cfx_send(&f, buf, 12);
	n = hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &v, 2); /* no room for the version */
	cfx_send(&f, buf, n);
	uint8_t zero = 0;
	cfx_send(&f, buf, hid_msg(buf, SYNTHHID_MSG_DEVICE_INFO_ACK, &zero, 1));
	cfx_send(&f, buf, hid_msg(buf, SYNTHHID_MSG_INPUT_REPORT, buf + 100, 6));
	cfx_send(&f, buf, hid_msg(buf, 77, &zero, 1));
	assert_false(cfx_recv(&f, pkt, &len));
	assert_int_equal(m->state, SYNTHMOUSE_REFUSED);

	/* A right request then: approved, info, ACK, ready. */
	cfx_send(&f, buf, hid_msg(buf, SYNTHHID_MSG_PROTOCOL_REQUEST, &v, 4));
	assert_true(cfx_recv(&f, pkt, &len));
	assert_true(cfx_recv(&f, pkt, &len));
	assert_int_equal(m->state, SYNTHMOUSE_INFO_SENT);
	assert_int_equal(synthmouse_send(m, 1, 1, 0, 0), -ENOTCONN);
	cfx_send(&f, buf, hid_msg(buf, SYNTHHID_MSG_DEVICE_INFO_ACK, &zero, 1));
	assert_int_equal(m->state, SYNTHMOUSE_READY);
	assert_int_equal(synthmouse_send(m, 1, 1, 0, 0), 0);
	vmbus_client_channel_close(&f.ch);
	assert_int_equal(m->state, SYNTHMOUSE_CLOSED);
	assert_int_equal(synthmouse_send(m, 1, 1, 0, 0), -ENOTCONN);
	cfx_destroy(&f);
}

/* ---- video ---- */

/* A synthvid message as hyperv_drm sends it: pipe {DATA, 8 + n}, {type, 8 + n}, body. */
static uint32_t vid_msg(uint8_t *buf, uint32_t type, const void *body, uint32_t n)
{
	struct synthvid_pipe_hdr p = { SYNTHVID_PIPE_DATA, 8 + n };
	struct synthvid_hdr h = { type, 8 + n };
	memcpy(buf, &p, 8);
	memcpy(buf + 8, &h, 8);
	memcpy(buf + 16, body, n);
	return 16 + n;
}

/* The next host message: its type, body into body (the whole packet's payload in pkt). */
static uint32_t vid_recv(struct cfx *f, uint8_t *body, uint32_t *n)
{
	uint8_t pkt[4096];
	uint32_t len;
	assert_true(cfx_recv(f, pkt, &len));
	struct synthvid_pipe_hdr p;
	struct synthvid_hdr h;
	memcpy(&p, pkt, 8);
	memcpy(&h, pkt + 8, 8);
	assert_int_equal(p.type, SYNTHVID_PIPE_DATA);
	assert_int_equal(p.size, h.size); /* as hyperv_drm builds it */
	assert_true(h.size >= 8 && 8 + h.size <= len);
	*n = h.size - 8;
	memcpy(body, pkt + 16, *n);
	return h.type;
}

static void vid_send_msg(struct cfx *f, uint32_t type, const void *body, uint32_t n)
{
	uint8_t buf[1024];
	cfx_send(f, buf, vid_msg(buf, type, body, n));
}

static void test_video(void **state)
{
	struct cfx f;
	cfx_init(&f, true);
	struct synthvid *v = cfx_state(&f, "video");
	const struct vmbus_client_offer *o = cfx_offer(&f, SYNTHVID_CLASS_GUID_TEXT);
	assert_non_null(o);
	assert_int_equal(o->msg.offer.mmio_megabytes, SYNTHVID_VRAM_MB);
	cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
	uint8_t body[1024];
	uint32_t n;

	/* Before the version nothing is taken; 3.0 (Windows 7's) is refused, 3.5 accepted. */
	struct synthvid_dirt dirt = { 0, 1, { { 0, 0, 10, 10 } } };
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &dirt, sizeof(dirt));
	struct synthvid_version_req vr = { SYNTHVID_VERSION_WIN7 };
	vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	struct synthvid_version_resp vs;
	assert_int_equal(n, sizeof(vs));
	memcpy(&vs, body, sizeof(vs));
	assert_int_equal(vs.version, SYNTHVID_VERSION_WIN7);
	assert_int_equal(vs.is_accepted, 0);
	vr.version = SYNTHVID_VERSION_WIN10;
	assert_int_equal(vr.version, 0x00050003u);
	vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	memcpy(&vs, body, sizeof(vs));
	assert_int_equal(vs.is_accepted, 1);
	assert_int_equal(vs.max_video_outputs, 1);

	/* The resolutions, as hyperv_drm checks them. */
	struct synthvid_resolution_req rr = { SYNTHVID_MAX_RESOLUTION_COUNT };
	vid_send_msg(&f, SYNTHVID_MSG_RESOLUTION_REQUEST, &rr, sizeof(rr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_RESOLUTION_RESPONSE);
	struct synthvid_resolution_resp rs;
	assert_int_equal(n, sizeof(rs));
	memcpy(&rs, body, sizeof(rs));
	assert_int_equal(rs.resolution_count, v->nr_modes);
	assert_int_equal(rs.resolution_count, 3); /* 640x480, 800x600, 1024x768: Hyper-V's default maximum */
	assert_true(rs.resolution_count > 0 && rs.default_resolution_index < rs.resolution_count);
	assert_int_equal(rs.supported_resolution[rs.default_resolution_index].width, 1024);
	for (unsigned i = 0; i < rs.resolution_count; i++)
		assert_true((uint32_t)rs.supported_resolution[i].width * rs.supported_resolution[i].height * 4 <=
			    SYNTHVID_VRAM_MB << 20);

	/* The VRAM: the ack echoes user_ctx, then the host asks for dirty rectangles. */
	struct synthvid_vram_location vl = { 0xf8000000ull, 1, CFX_MMIO_LOW + (64ull << 20) };
	vid_send_msg(&f, SYNTHVID_MSG_VRAM_LOCATION, &vl, sizeof(vl));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	struct synthvid_vram_location_ack va;
	memcpy(&va, body, sizeof(va));
	assert_int_equal(va.user_ctx, 0xf8000000ull);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
	assert_int_equal(body[0], 1); /* is_dirt_needed */
	assert_true(v->vram_set);
	assert_int_equal(v->vram_gpa, CFX_MMIO_LOW + (64ull << 20));
	assert_null(v->vram); /* no map_ram: acknowledged, nothing backs it */

	/* The screen: all dirty at first. */
	struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, 1024, 768, 4096 } } };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	struct synthvid_rect r;
	struct synthvid_geometry g;
	assert_true(synthvid_dirty_take(v, &r, &g));
	assert_true(g.valid);
	assert_int_equal(g.width, 1024);
	assert_int_equal(r.x2, 1024);
	assert_int_equal(r.y2, 768);
	assert_false(synthvid_dirty_take(v, &r, NULL));

	/* Rectangles accumulate into their bounding box, clipped to the screen. */
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &dirt, sizeof(dirt));
	uint8_t two[2 + 32] = { 0, 2 };
	struct synthvid_rect rects[2] = { { 100, 200, 110, 220 }, { -5, 300, 5000, 301 } };
	memcpy(two + 2, rects, sizeof(rects));
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, two, sizeof(two));
	assert_true(synthvid_dirty_take(v, &r, NULL));
	assert_int_equal(r.x1, 0);
	assert_int_equal(r.y1, 0);
	assert_int_equal(r.x2, 1024);
	assert_int_equal(r.y2, 301);
	/* More rectangles than bytes, empty and inverted ones: nothing. */
	two[1] = 9;
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, two, sizeof(two));
	struct synthvid_dirt inv = { 0, 1, { { 50, 50, 40, 60 } } };
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &inv, sizeof(inv));
	assert_false(synthvid_dirty_take(v, &r, NULL));

	/* hyperv_drm's hidden hardware pointer: a position and a 1x1 ARGB shape. */
	struct synthvid_pointer_position pp = { 1, 0, 0, 0 };
	vid_send_msg(&f, SYNTHVID_MSG_POINTER_POSITION, &pp, sizeof(pp));
	struct synthvid_pointer_shape ps = { SYNTHVID_CURSOR_COMPLETE, 1, 1, 1, 0, 0, { 0, 1, 1, 1 } };
	vid_send_msg(&f, SYNTHVID_MSG_POINTER_SHAPE, &ps, sizeof(ps));
	assert_true(v->ptr_visible);
	assert_int_equal(v->ptr_w, 1);
	ps.width = 200;
	vid_send_msg(&f, SYNTHVID_MSG_POINTER_SHAPE, &ps, sizeof(ps));
	assert_int_equal(v->ptr_w, 1);

	/* A screen that does not fit the VRAM, or not 32 bpp: kept as invalid, nothing dirty. */
	su.output[0].height_pixels = 100000;
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	assert_false(synthvid_dirty_take(v, &r, &g));
	assert_false(g.valid);
	su.output[0].height_pixels = 768;
	su.output[0].depth_bits = 16;
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	assert_false(synthvid_dirty_take(v, &r, &g));

	/* Sizes beyond the packet, an unknown type: dropped, no answer. */
	uint8_t buf[64];
	uint32_t len = vid_msg(buf, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	buf[4] = 100;
	cfx_send(&f, buf, len);
	len = vid_msg(buf, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	buf[12] = 4; /* smaller than its own header */
	cfx_send(&f, buf, len);
	vid_send_msg(&f, 77, &vr, sizeof(vr));
	uint8_t pkt[64];
	assert_false(cfx_recv(&f, pkt, &len));
	struct json_object *jo = json_object_new_object();
	char text[256] = "";
	vmdev_set_status(&f.set, jo, text, sizeof(text));
	assert_non_null(strstr(text, "video connected"));
	json_object_put(jo);

	/* 3.2: no resolution list; a closed channel forgets the protocol. */
	vmbus_client_channel_close(&f.ch);
	assert_int_equal(v->version, 0);
	assert_false(v->ptr_visible);
	cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
	vr.version = SYNTHVID_VERSION_WIN8;
	vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	assert_int_equal(body[4], 1);
	vid_send_msg(&f, SYNTHVID_MSG_RESOLUTION_REQUEST, &rr, sizeof(rr));
	assert_false(cfx_recv(&f, pkt, &len));
	cfx_destroy(&f);
}

/* The pixel the tests draw at (x, y), as 32 bpp XRGB. */
static uint32_t vid_pattern(uint32_t x, uint32_t y)
{
	return (x & 0xffu) << 16 | (y & 0xffu) << 8 | ((x ^ y) * 7u & 0xffu);
}

/* Reads path as 8-bit RGB with libpng's simplified API: the pixels (malloc'ed), or NULL. */
static uint8_t *vid_png_read(const char *path, uint32_t *w, uint32_t *h)
{
	png_image img;
	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&img, path))
		return NULL;
	img.format = PNG_FORMAT_RGB;
	uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
	if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL)) {
		free(px);
		png_image_free(&img);
		return NULL;
	}
	*w = img.width;
	*h = img.height;
	return px;
}

static void vid_check_png(const char *path, uint32_t w, uint32_t h)
{
	uint32_t pw, ph;
	uint8_t *px = vid_png_read(path, &pw, &ph);
	assert_non_null(px);
	assert_int_equal(pw, w);
	assert_int_equal(ph, h);
	unsigned bad = 0;
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			uint32_t want = vid_pattern(x, y);
			const uint8_t *p = px + ((size_t)y * w + x) * 3;
			bad += p[0] != (uint8_t)(want >> 16) || p[1] != (uint8_t)(want >> 8) || p[2] != (uint8_t)want;
		}
	free(px);
	assert_int_equal(bad, 0);
}

static void vid_vram_at(struct cfx *f, uint64_t gpa)
{
	struct synthvid_vram_location vl = { gpa, 1, gpa };
	vid_send_msg(f, SYNTHVID_MSG_VRAM_LOCATION, &vl, sizeof(vl));
}

/* The VRAM mapped where the guest puts it (and only where it may), the pixels it writes there read
 * back from the screenshot's PNG. */
/* --video WxH: what is accepted, and the list the guest is offered for it. */
static void test_video_modes(void **state)
{
	(void)state;
	struct synthvid_screen_size m, out[SYNTHVID_MAX_RESOLUTION_COUNT];
	char err[256];
	assert_int_equal(synthvid_mode_parse("1600x1200", &m, err, sizeof(err)), 0);
	assert_int_equal(m.width, 1600);
	assert_int_equal(m.height, 1200);
	assert_int_equal(synthvid_mode_parse("1920X1080", &m, err, sizeof(err)), 0);
	static const char *const bad[] = { "", "x", "1600", "1600x", "x1200", "1600x1200x32", "-1600x1200",
					   "1600 x1200", "1600x1200 ", "0x0" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(synthvid_mode_parse(bad[i], &m, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "WIDTHxHEIGHT"));
	}
	/* Too small, or more than the VRAM holds. */
	static const char *const big[] = { "639x480", "640x479", "2560x1440", "3840x2160", "4097x480",
					   "99999999999999999999x1", "640x99999999999999999999" };
	for (unsigned i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		assert_int_equal(synthvid_mode_parse(big[i], &m, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "8 MiB"));
	}

	/* 1600x1200: every standard mode within it, itself the default. */
	unsigned def = 99, n = synthvid_modes_build((struct synthvid_screen_size){ 1600, 1200 }, out, &def);
	assert_true(n >= 2 && n <= SYNTHVID_MAX_RESOLUTION_COUNT && def < n);
	assert_int_equal(out[def].width, 1600);
	assert_int_equal(out[def].height, 1200);
	for (unsigned i = 0; i < n; i++)
		assert_true(out[i].width <= 1600 && out[i].height <= 1200);
	/* A size not in the standard list is added as the default. */
	n = synthvid_modes_build((struct synthvid_screen_size){ 1000, 700 }, out, &def);
	assert_int_equal(def, n - 1);
	assert_int_equal(out[def].width, 1000);
	assert_int_equal(out[def].height, 700);
	assert_int_equal(out[0].width, 640); /* 640x480 and 800x600 fit */
	assert_int_equal(n, 3);
	/* 0x0: the default, 1024x768. */
	n = synthvid_modes_build((struct synthvid_screen_size){ 0, 0 }, out, &def);
	assert_int_equal(out[def].width, 1024);
	assert_int_equal(out[def].height, 768);
}

/* The firmware's screen follows --video: what the device answers to the firmware's resolution
 * request (firmware/video.c asks for SYNTHVID_MAX_RESOLUTION_COUNT after 3.5 is accepted), read by
 * the firmware's own parser, is the configured screen; 1024x768 without --video. */
static void test_video_firmware_screen(void **state)
{
	static const struct {
		struct synthvid_screen_size video;
		uint32_t w, h;
	} t[] = {
		{ { 0, 0 }, 1024, 768 }, { { 1600, 1200 }, 1600, 1200 }, { { 1920, 1080 }, 1920, 1080 },
		{ { 1000, 700 }, 1000, 700 }, { { 640, 480 }, 640, 480 },
	};
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct cfx f;
		cfx_video = t[i].video;
		cfx_init(&f, true);
		cfx_video = (struct synthvid_screen_size){ 0, 0 };
		const struct vmbus_client_offer *o = cfx_offer(&f, SYNTHVID_CLASS_GUID_TEXT);
		assert_non_null(o);
		cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 16 * 1024); /* the firmware's ring */
		uint8_t body[1024];
		uint32_t n;
		struct synthvid_version_req vr = { SYNTHVID_VERSION_WIN10 };
		vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
		assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
		struct synthvid_resolution_req rr = { SYNTHVID_MAX_RESOLUTION_COUNT };
		vid_send_msg(&f, SYNTHVID_MSG_RESOLUTION_REQUEST, &rr, sizeof(rr));
		assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_RESOLUTION_RESPONSE);
		uint32_t w = 0, h = 0;
		assert_true(efi_gfx_mode_from_resolutions(body, n, (uint64_t)o->msg.offer.mmio_megabytes << 20, &w, &h));
		assert_int_equal(w, t[i].w);
		assert_int_equal(h, t[i].h);
		cfx_destroy(&f);
	}
}

static void test_video_screen(void **state)
{
	struct cfx f;
	cfx_init_host(&f, true, true);
	struct synthvid *v = cfx_state(&f, "video");
	char dir[] = "/tmp/gen2vm-screen-XXXXXX", path[128], reply[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/shot.png", dir);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "screenshot %s", path);

	/* Before the driver is there. */
	assert_true(cfx_verb(&f, cmd, reply, sizeof(reply)) < 0);
	assert_string_equal(reply, "the guest's video driver has not connected");
	assert_int_equal(cfx_verb(&f, "screenshot", reply, sizeof(reply)), -EINVAL);

	cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
	uint8_t body[1024], pkt[64];
	uint32_t n, len;
	struct synthvid_version_req vr = { SYNTHVID_VERSION_WIN10 };
	vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	assert_true(cfx_verb(&f, cmd, reply, sizeof(reply)) < 0);
	assert_string_equal(reply, "no VRAM location yet");

	/* Hostile locations: unaligned, straddling the low window's end, below it (the 32-bit gap's
	 * start), wrapping, beyond the high window. No ack, nothing mapped. */
	const uint64_t bad[] = { CFX_MMIO_LOW + 0x800, CFX_MMIO_LOW + (124ull << 20), 0xe0000000ull,
				 0xfffffffffff00000ull, CFX_MMIO_HIGH + (64ull << 30) - (4ull << 20), 0 };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vid_vram_at(&f, bad[i]);
		assert_false(cfx_recv(&f, pkt, &len));
	}
	assert_int_equal(f.maps, 0);
	assert_false(v->vram_set);
	/* A window over RAM (a host's mistake) still never maps the guest's RAM. */
	/* (the device keeps its own copy of the host: changed there) */
	v->d->host.mmio[1] = (struct vmdev_mmio_window){ 0, 1ull << 30 };
	vid_vram_at(&f, 32ull << 20);
	assert_false(cfx_recv(&f, pkt, &len));
	assert_int_equal(f.maps, 0);
	v->d->host.mmio[1] = f.h.mmio[1];

	/* The guest's choice: mapped, acknowledged, dirt asked for. */
	vid_vram_at(&f, CFX_MMIO_LOW);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
	assert_int_equal(f.maps, 1);
	assert_int_equal(f.ram_gpa, CFX_MMIO_LOW);
	assert_int_equal(f.ram_size, SYNTHVID_VRAM_SIZE);
	assert_ptr_equal(v->vram, f.ram);
	assert_true(cfx_verb(&f, cmd, reply, sizeof(reply)) < 0);
	assert_string_equal(reply, "the guest has not given a usable screen geometry yet");

	/* 1024x768 with a pitch wider than the row: the padding is not part of the picture. */
	struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, 1024, 768, 4160 } } };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	memset(f.ram, 0xee, SYNTHVID_VRAM_SIZE);
	for (uint32_t y = 0; y < 768; y++)
		for (uint32_t x = 0; x < 1024; x++) {
			uint32_t px = vid_pattern(x, y) | 0xff000000u; /* X is not alpha: ignored */
			memcpy(f.ram + (size_t)y * 4160 + x * 4, &px, 4);
		}
	assert_int_equal(cfx_verb(&f, cmd, reply, sizeof(reply)), 0);
	char want[256];
	snprintf(want, sizeof(want), "1024x768 written to %s", path);
	assert_string_equal(reply, want);
	vid_check_png(path, 1024, 768);

	/* Moved: the same memory at the new place, the picture kept; an existing file is replaced. */
	vid_vram_at(&f, CFX_MMIO_HIGH + (1ull << 20));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
	assert_int_equal(f.maps, 2);
	assert_int_equal(f.ram_gpa, CFX_MMIO_HIGH + (1ull << 20));
	su.output[0] = (struct synthvid_output_situation){ 1, 0, 32, 640, 480, 640 * 4 };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	for (uint32_t y = 0; y < 480; y++)
		for (uint32_t x = 0; x < 640; x++) {
			uint32_t px = vid_pattern(x, y);
			memcpy(f.ram + ((size_t)y * 640 + x) * 4, &px, 4);
		}
	assert_int_equal(cfx_verb(&f, cmd, reply, sizeof(reply)), 0);
	vid_check_png(path, 640, 480);

	/* Never over something that is not a regular file; a directory that does not exist. */
	char fifo[160], cmd2[256];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(cmd2, sizeof(cmd2), "screenshot %s", fifo);
	assert_true(cfx_verb(&f, cmd2, reply, sizeof(reply)) < 0);
	assert_non_null(strstr(reply, "not a regular file"));
	struct stat st;
	assert_int_equal(stat(fifo, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	snprintf(cmd2, sizeof(cmd2), "screenshot %s", dir);
	assert_true(cfx_verb(&f, cmd2, reply, sizeof(reply)) < 0);
	snprintf(cmd2, sizeof(cmd2), "screenshot %s/no/such.png", dir);
	assert_true(cfx_verb(&f, cmd2, reply, sizeof(reply)) < 0);

	/* The guest's driver leaves (the firmware at ExitBootServices): the VRAM stays mapped with the
	 * last geometry, so what the OS's efifb draws there is still shown. */
	vmbus_client_channel_close(&f.ch);
	assert_int_equal(f.unmaps, 0);
	assert_true(f.ram_mapped);
	assert_ptr_equal(v->vram, f.ram);
	assert_int_equal(v->version, 0);
	assert_true(v->geo.valid);
	assert_int_equal(cfx_verb(&f, cmd, reply, sizeof(reply)), 0);
	vid_check_png(path, 640, 480);

	/* The OS's driver connects afresh and moves the VRAM: the same memory, mapped at the new place. */
	cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
	vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	vid_vram_at(&f, CFX_MMIO_LOW + (1ull << 20));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
	assert_int_equal(f.ram_gpa, CFX_MMIO_LOW + (1ull << 20));
	assert_true(f.ram_mapped);
	vid_check_png(path, 640, 480);

	/* No VRAM at all: the range is RAM no longer. */
	struct synthvid_vram_location none = { 0, 0, 0 };
	vid_send_msg(&f, SYNTHVID_MSG_VRAM_LOCATION, &none, sizeof(none));
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
	assert_int_equal(f.unmaps, 1);
	assert_false(f.ram_mapped);
	assert_null(v->vram);
	vmbus_client_channel_close(&f.ch);

	unlink(path);
	unlink(fifo);
	assert_int_equal(rmdir(dir), 0);
	cfx_destroy(&f);
}

/* ---- a display: the eventfd, the copy, the pointer; the VNC server with a raw RFB client ---- */

static void vid_send_big(struct cfx *f, uint32_t type, const void *body, uint32_t n)
{
	uint8_t *buf = malloc(16 + n);
	assert_non_null(buf);
	cfx_send(f, buf, vid_msg(buf, type, body, n));
	free(buf);
}

static uint64_t efd_take(int fd)
{
	uint64_t c = 0;
	if (read(fd, &c, sizeof(c)) != sizeof(c))
		return 0;
	return c;
}

static void rfb_read(int s, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(s, (uint8_t *)buf + got, n - got);
		if (r <= 0)
			fail_msg("RFB: read %zd after %zu of %zu bytes", r, got, n);
		got += (size_t)r;
	}
}

static int rfb_connect(uint16_t port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s >= 0);
	struct timeval tv = { 10, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001) };
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

/* RFB 3.8 without authentication up to ServerInit; the frame's size in *w, *h. Raw encoding only. */
static int rfb_open(uint16_t port, uint16_t *w, uint16_t *h)
{
	int s = rfb_connect(port);
	char ver[12];
	rfb_read(s, ver, 12);
	assert_memory_equal(ver, "RFB 003.008\n", 12);
	assert_int_equal(write(s, "RFB 003.008\n", 12), 12);
	uint8_t n, types[16];
	rfb_read(s, &n, 1);
	assert_true(n >= 1 && n <= 16);
	rfb_read(s, types, n);
	assert_non_null(memchr(types, 1, n)); /* None: no password set */
	uint8_t one = 1;
	assert_int_equal(write(s, &one, 1), 1);
	uint32_t result;
	rfb_read(s, &result, 4);
	assert_int_equal(result, 0);
	assert_int_equal(write(s, &one, 1), 1); /* ClientInit: shared */
	uint8_t init[24];
	rfb_read(s, init, 24);
	*w = (uint16_t)(init[0] << 8 | init[1]);
	*h = (uint16_t)(init[2] << 8 | init[3]);
	/* The pixel format: 32 bpp, depth 24, little-endian, true colour, R at 16, G at 8, B at 0. */
	assert_int_equal(init[4], 32);
	assert_int_equal(init[6], 0);
	assert_true(init[7] != 0); /* libvncserver sends its TRUE, 0xff */
	assert_int_equal(init[14], 16);
	assert_int_equal(init[15], 8);
	assert_int_equal(init[16], 0);
	uint32_t nl = (uint32_t)init[20] << 24 | (uint32_t)init[21] << 16 | (uint32_t)init[22] << 8 | init[23];
	char name[64];
	assert_true(nl < sizeof(name));
	rfb_read(s, name, nl);
	uint8_t enc[8] = { 2, 0, 0, 1, 0, 0, 0, 0 }; /* SetEncodings: raw */
	assert_int_equal(write(s, enc, 8), 8);
	return s;
}

/* One FramebufferUpdate asked for (x, y, w, h) and read into frame (fw pixels a row); returns the
 * bounding box of the rectangles received. */
static void rfb_update(int s, bool incremental, uint16_t fw, uint16_t fh, uint32_t *frame, uint16_t bb[4])
{
	uint8_t req[10] = { 3, incremental, 0, 0, 0, 0, (uint8_t)(fw >> 8), (uint8_t)fw, (uint8_t)(fh >> 8), (uint8_t)fh };
	assert_int_equal(write(s, req, 10), 10);
	uint8_t hdr[4];
	rfb_read(s, hdr, 4);
	assert_int_equal(hdr[0], 0);
	unsigned nr = (unsigned)hdr[2] << 8 | hdr[3];
	bb[0] = bb[1] = 0xffff;
	bb[2] = bb[3] = 0;
	for (unsigned i = 0; i < nr; i++) {
		uint8_t rh[12];
		rfb_read(s, rh, 12);
		uint16_t x = (uint16_t)(rh[0] << 8 | rh[1]), y = (uint16_t)(rh[2] << 8 | rh[3]);
		uint16_t w = (uint16_t)(rh[4] << 8 | rh[5]), h = (uint16_t)(rh[6] << 8 | rh[7]);
		assert_memory_equal(rh + 8, "\0\0\0\0", 4); /* raw */
		assert_true(x + w <= fw && y + h <= fh);
		for (uint16_t r = 0; r < h; r++)
			rfb_read(s, frame + (size_t)(y + r) * fw + x, (size_t)w * 4);
		bb[0] = x < bb[0] ? x : bb[0];
		bb[1] = y < bb[1] ? y : bb[1];
		bb[2] = x + w > bb[2] ? (uint16_t)(x + w) : bb[2];
		bb[3] = y + h > bb[3] ? (uint16_t)(y + h) : bb[3];
	}
}

static uint16_t free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t l = sizeof(sa);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &l), 0);
	close(s);
	return ntohs(sa.sin_port);
}

/* Opens the video channel as hyperv_drm does: version 3.5, the VRAM at the low window's start. */
static void vid_connect_vram(struct cfx *f)
{
	cfx_open_ring(f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
	uint8_t body[1024];
	uint32_t n;
	struct synthvid_version_req vr = { SYNTHVID_VERSION_WIN10 };
	vid_send_msg(f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
	assert_int_equal(vid_recv(f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
	vid_vram_at(f, CFX_MMIO_LOW);
	assert_int_equal(vid_recv(f, body, &n), SYNTHVID_MSG_VRAM_LOCATION_ACK);
	assert_int_equal(vid_recv(f, body, &n), SYNTHVID_MSG_FEATURE_CHANGE);
}

/* The compare's source (synthvid_display_written): only the rows on the pages the host's dirty log
 * names are copied, nothing when nothing was written; without a log the caller is told to compare
 * everything. */
static void test_video_display_written(void **state)
{
	(void)state;
	struct cfx f;
	cfx_init_host(&f, true, true); /* no log */
	struct synthvid *v = cfx_state(&f, "video");
	uint8_t *dst = calloc(1, SYNTHVID_VRAM_SIZE);
	struct synthvid_geometry g;
	struct synthvid_rect r;
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), -ENOTSUP);
	cfx_destroy(&f);

	cfx_log = true;
	cfx_init_host(&f, true, true);
	cfx_log = false;
	v = cfx_state(&f, "video");
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), -EAGAIN); /* no screen */
	vid_connect_vram(&f);
	/* 800x600, pitch 3328, 4096 bytes into the VRAM. */
	struct synthvid_situation_update su = { 0, 1, { { 1, 4096, 32, 800, 600, 3328 } } };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	for (uint32_t y = 0; y < 600; y++)
		for (uint32_t x = 0; x < 800; x++) {
			uint32_t px = vid_pattern(x, y);
			memcpy(f.ram + 4096 + (size_t)y * 3328 + x * 4, &px, 4);
		}
	assert_int_equal(synthvid_display_written(v, dst, 800 * 600 * 4 - 1, &g, &r), -ENOSPC);
	unsigned calls = f.written_calls;
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 0); /* nothing logged */
	assert_int_equal(f.written_calls, calls + 1);
	/* Row 100, pixels 10..11: one page, 4096 + 332800 + 40 = 336936, page 82 (335872..339967): rows
	 * (335872 - 4096) / 3328 = 99 up to (339968 - 4096 + 3327) / 3328 = 101. */
	cfx_write_log(&f, 4096 + 100 * 3328 + 40, 8);
	memset(dst, 0, SYNTHVID_VRAM_SIZE);
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 1);
	assert_int_equal(r.x1, 0);
	assert_int_equal(r.x2, 800);
	assert_int_equal(r.y1, 99);
	assert_int_equal(r.y2, 101);
	uint32_t px;
	memcpy(&px, dst + ((size_t)100 * 800 + 10) * 4, 4);
	assert_int_equal(px, vid_pattern(10, 100));
	memcpy(&px, dst + ((size_t)99 * 800 + 799) * 4, 4);
	assert_int_equal(px, vid_pattern(799, 99));
	memcpy(&px, dst + ((size_t)101 * 800) * 4, 4);
	assert_int_equal(px, 0); /* row 101 not copied */
	/* The log was taken: nothing the next time. The pages before and after the screen are not it. */
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 0);
	cfx_write_log(&f, 0, 4096);
	cfx_write_log(&f, 489 * 4096, 4096); /* the screen ends at 4096 + 600 * 3328 = 2000896, in page 488 */
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 0);
	/* Both ends of the screen: every row from the first to the last. */
	cfx_write_log(&f, 4096, 1);
	cfx_write_log(&f, 4096 + 599 * 3328 + 3199, 1);
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 1);
	assert_int_equal(r.y1, 0);
	assert_int_equal(r.y2, 600);
	/* A host that unmapped it: nothing written. */
	f.ram_mapped = false;
	cfx_write_log(&f, 4096, 1);
	assert_int_equal(synthvid_display_written(v, dst, SYNTHVID_VRAM_SIZE, &g, &r), 0);
	free(dst);
	cfx_destroy(&f);
}

/* Whether a display may rely on DIRT alone: only for the OS's driver once it has sent one, never for
 * the firmware's (boot loaders draw on its frame buffer untold), never after the channel closed. */
static void test_video_announced(void **state)
{
	(void)state;
	struct cfx f;
	cfx_init_host(&f, true, true);
	struct synthvid *v = cfx_state(&f, "video");
	struct synthvid_dirt d1 = { 0, 1, { { 0, 0, 8, 8 } } };
	uint8_t body[1024];
	uint32_t n;
	struct synthvid_version_req vr = { SYNTHVID_VERSION_WIN10 };
	for (int os = 0; os < 2; os++) {
		synthvid_firmware_phase(v, !os); /* the firmware's channel, then (after ExitBootServices) the OS's */
		cfx_open_ring(&f, SYNTHVID_CLASS_GUID_TEXT, 256 * 1024);
		vid_send_msg(&f, SYNTHVID_MSG_VERSION_REQUEST, &vr, sizeof(vr));
		assert_int_equal(vid_recv(&f, body, &n), SYNTHVID_MSG_VERSION_RESPONSE);
		assert_false(synthvid_display_announced(v));
		vid_send_msg(&f, SYNTHVID_MSG_DIRT, &d1, sizeof(d1));
		assert_int_equal(synthvid_display_announced(v), os);
		vmbus_client_channel_close(&f.ch);
		assert_false(synthvid_display_announced(v));
	}
	cfx_destroy(&f);
}

static void test_video_display_vnc(void **state)
{
	struct cfx f;
	cfx_log = true; /* the compare reads the fake dirty log */
	cfx_init_host(&f, true, true);
	cfx_log = false;
	struct synthvid *v = cfx_state(&f, "video");
	/* The firmware's screen: it sends DIRT, and boot loaders draw on it untold (the compare runs). */
	synthvid_firmware_phase(v, true);
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(efd >= 0);
	synthvid_display_notify(v, efd);
	uint8_t *dst = calloc(1, SYNTHVID_VRAM_SIZE);
	struct synthvid_geometry g;
	struct synthvid_rect r;
	assert_int_equal(synthvid_display_take(v, dst, SYNTHVID_VRAM_SIZE, true, &g, &r), -EAGAIN);

	vid_connect_vram(&f);
	assert_int_equal(efd_take(efd), 0); /* nothing to show yet: no wake-up */

	/* A geometry: one wake-up; the whole screen copied, packed (the pitch's padding dropped). */
	struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, 800, 600, 3328 } } };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	for (uint32_t y = 0; y < 600; y++)
		for (uint32_t x = 0; x < 800; x++) {
			uint32_t px = vid_pattern(x, y);
			memcpy(f.ram + (size_t)y * 3328 + x * 4, &px, 4);
		}
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(synthvid_display_take(v, dst, 800 * 600 * 4 - 1, false, &g, &r), -ENOSPC);
	assert_int_equal(synthvid_display_take(v, dst, SYNTHVID_VRAM_SIZE, false, &g, &r), 1);
	assert_int_equal(g.width, 800);
	assert_int_equal(r.x2, 800);
	assert_int_equal(r.y2, 600);
	for (uint32_t y = 0; y < 600; y += 7)
		for (uint32_t x = 0; x < 800; x += 3) {
			uint32_t px;
			memcpy(&px, dst + ((size_t)y * 800 + x) * 4, 4);
			assert_int_equal(px, vid_pattern(x, y));
		}
	assert_int_equal(synthvid_display_take(v, dst, SYNTHVID_VRAM_SIZE, false, &g, &r), 0);

	/* Dirt: one wake-up on the clean -> dirty edge however many messages follow. */
	struct synthvid_dirt d1 = { 0, 1, { { 10, 20, 30, 40 } } }, d2 = { 0, 1, { { 100, 5, 101, 6 } } };
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &d1, sizeof(d1));
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &d2, sizeof(d2));
	assert_int_equal(efd_take(efd), 1);
	assert_int_equal(synthvid_display_take(v, dst, SYNTHVID_VRAM_SIZE, false, &g, &r), 1);
	assert_int_equal(r.x1, 10);
	assert_int_equal(r.y1, 5);
	assert_int_equal(r.x2, 101);
	assert_int_equal(r.y2, 40);
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &d1, sizeof(d1));
	assert_int_equal(efd_take(efd), 1);

	/* A pointer shape of 4x3 ARGB kept whole; one whose image runs past the message dropped. */
	struct {
		struct synthvid_pointer_shape s;
		uint8_t more[4 * 3 * 4 - 4];
	} __attribute__((packed)) ps = { { SYNTHVID_CURSOR_COMPLETE, 1, 4, 3, 1, 2, { 0 } }, { 0 } };
	for (unsigned i = 0; i < 4 * 3 * 4; i++)
		((uint8_t *)&ps.s.data)[i] = (uint8_t)(i + 1);
	vid_send_big(&f, SYNTHVID_MSG_POINTER_SHAPE, &ps, sizeof(ps));
	assert_int_equal(efd_take(efd), 1);
	static struct synthvid_pointer p;
	assert_true(synthvid_display_pointer(v, &p));
	assert_true(p.shape);
	assert_int_equal(p.w, 4);
	assert_int_equal(p.h, 3);
	assert_int_equal(p.hot_y, 2);
	assert_int_equal(p.argb[0], 1);
	assert_int_equal(p.argb[47], 48);
	uint32_t seq = p.seq;
	ps.s.width = 5;
	vid_send_big(&f, SYNTHVID_MSG_POINTER_SHAPE, &ps, sizeof(ps));
	assert_int_equal(efd_take(efd), 0);
	assert_true(synthvid_display_pointer(v, &p));
	assert_int_equal(p.seq, seq);
	assert_int_equal(p.w, 4);
	/* The largest shape. */
	size_t big = offsetof(struct synthvid_pointer_shape, data) + 96 * 96 * 4;
	uint8_t *bs = calloc(1, big);
	struct synthvid_pointer_shape hdr = { SYNTHVID_CURSOR_COMPLETE, 1, 96, 96, 0, 0, { 0 } };
	memcpy(bs, &hdr, offsetof(struct synthvid_pointer_shape, data));
	bs[big - 1] = 0xab;
	vid_send_big(&f, SYNTHVID_MSG_POINTER_SHAPE, bs, (uint32_t)big);
	free(bs);
	assert_true(synthvid_display_pointer(v, &p));
	assert_int_equal(p.w, 96);
	assert_int_equal(p.argb[96 * 96 * 4 - 1], 0xab);
	/* A transparent 1x1 shape (Linux hides the host's pointer so): a viewer's frame shows no pointer. */
	struct synthvid_pointer_shape clear = { SYNTHVID_CURSOR_COMPLETE, 1, 1, 1, 0, 0, { 0 } };
	vid_send_msg(&f, SYNTHVID_MSG_POINTER_SHAPE, &clear, sizeof(clear));
	synthvid_display_notify(v, -1);
	close(efd);

	/* The VNC server on the same device: a raw RFB client sees the guest's pixels. */
	struct vnc_config c = { 0 };
	c.vnc.kind = VNC_ADDR_TCP;
	snprintf(c.vnc.host, sizeof(c.vnc.host), "127.0.0.1");
	c.vnc.port = free_port();
	struct vnc *vn;
	char err[256];
	assert_int_equal(vnc_start(&vn, &c, v, cfx_state(&f, "keyboard"), cfx_state(&f, "mouse"), err, sizeof(err)), 0);
	uint16_t w, h, bb[4];
	int s = rfb_open(c.vnc.port, &w, &h);
	assert_int_equal(w, 800);
	assert_int_equal(h, 600);
	uint32_t *frame = calloc((size_t)w * h, 4);
	rfb_update(s, false, w, h, frame, bb);
	unsigned bad = 0;
	for (uint32_t y = 0; y < 600; y++)
		for (uint32_t x = 0; x < 800; x++)
			bad += (frame[y * 800 + x] & 0xffffff) != (vid_pattern(x, y) & 0xffffff);
	assert_int_equal(bad, 0);

	/* The guest draws and says so: the next incremental update carries it. */
	for (uint32_t y = 300; y < 310; y++)
		for (uint32_t x = 400; x < 420; x++) {
			uint32_t px = 0x00123456;
			memcpy(f.ram + (size_t)y * 3328 + x * 4, &px, 4);
		}
	struct synthvid_dirt d3 = { 0, 1, { { 400, 300, 420, 310 } } };
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &d3, sizeof(d3));
	rfb_update(s, true, w, h, frame, bb);
	assert_true(bb[0] <= 400 && bb[1] <= 300 && bb[2] >= 420 && bb[3] >= 310);
	assert_int_equal(frame[305 * 800 + 410] & 0xffffff, 0x123456);

	/* Drawing without DIRT (efifb, firmware GOP): the compare with a viewer attached finds it, on
	 * the pages the dirty log names (an idle screen: the log alone, no copy). */
	unsigned calls = __atomic_load_n(&f.written_calls, __ATOMIC_SEQ_CST);
	for (uint32_t x = 0; x < 16; x++) {
		uint32_t px = 0x00abcdef;
		memcpy(f.ram + (size_t)500 * 3328 + (700 + x) * 4, &px, 4);
	}
	cfx_write_log(&f, (size_t)500 * 3328 + 700 * 4, 16 * 4);
	rfb_update(s, true, w, h, frame, bb);
	assert_int_equal(frame[500 * 800 + 705] & 0xffffff, 0xabcdef);
	assert_true(__atomic_load_n(&f.written_calls, __ATOMIC_SEQ_CST) > calls);

	/* Hostile viewers: a wrong protocol version is dropped; one that connects and says nothing, and
	 * one that never reads, keep nothing else from working. */
	int bad1 = rfb_connect(c.vnc.port);
	char ver[12];
	rfb_read(bad1, ver, 12);
	assert_int_equal(write(bad1, "GARBAGE!!!!\n", 12), 12);
	char x;
	assert_true(read(bad1, &x, 1) <= 0);
	close(bad1);
	int mute = rfb_connect(c.vnc.port);
	uint16_t w2, h2;
	int s2 = rfb_open(c.vnc.port, &w2, &h2);
	rfb_update(s2, false, w2, h2, frame, bb);
	assert_int_equal(frame[305 * 800 + 410] & 0xffffff, 0x123456);
	char reply[512];
	assert_int_equal(vnc_verb(vn, 1, (char *[]){ "vnc" }, reply, sizeof(reply)), 0);
	char want[64];
	snprintf(want, sizeof(want), "listening on 127.0.0.1:%u", c.vnc.port);
	assert_non_null(strstr(reply, want));
	assert_non_null(strstr(reply, "viewers connected"));
	struct json_object *jo = json_object_new_object();
	char text[256] = "";
	vnc_status(vn, jo, text, sizeof(text));
	assert_non_null(strstr(text, want + 13));
	json_object_put(jo);
	/* The guest leaves: the placeholder, 640x480 (the viewer learns the size if it asked to). */
	vmbus_client_channel_close(&f.ch);
	close(s);
	close(s2);
	close(mute);
	vnc_stop(vn);
	free(frame);
	free(dst);
	cfx_destroy(&f);
}

/* ---- saving ---- */

/* The three devices saved as gen2 saves them (vmdev_set_save, the VMBus server, the VRAM as the
 * DEVMEM section) into a state file, then a new process's devices on the same guest (server reset,
 * classes made again, memory the machine allocates anew) restored from it: the guest's drivers go
 * on with no new handshake (keys and pointer reach them), the screen is what it was (screenshot),
 * and hostile states are refused. */
static void test_save_restore(void **state)
{
	(void)state;
	struct cfx f;
	cfx_init_host(&f, true, true);
	char reply[256], cmd[256], dir[] = "/tmp/gen2vm-save-XXXXXX", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/shot.png", dir);
	snprintf(cmd, sizeof(cmd), "screenshot %s", path);
	uint8_t pkt[4096], body[1024], buf[64];
	uint32_t len, n;
	/* The console off: nothing to keep (an empty section). */
	struct cfx off;
	cfx_init(&off, false);
	struct vmdev_set *os = &off.set;
	for (unsigned i = 0; i < os->n; i++)
		if (os->run[i].cls->settings_from == &console_settings_class) {
			uint8_t *o;
			size_t l;
			assert_int_equal(os->run[i].cls->save(os->run[i].state, &o, &l, reply, sizeof(reply)), 0);
			assert_int_equal(l, 0);
			assert_int_equal(os->run[i].cls->restore(os->run[i].state, (const uint8_t *)"x", 1, reply,
								 sizeof(reply)), -EINVAL);
		}
	cfx_destroy(&off);

	/* The guest's drivers connected: keyboard (LEDs set), mouse, video at 640x480 with a picture. */
	kbd_connect(&f, SYNTHKBD_VERSION_1_0, SYNTHKBD_PROTOCOL_ACCEPTED);
	struct synthkbd_led_indicators led = { { SYNTHKBD_MSG_LED_INDICATORS }, SYNTHKBD_LED_NUM_LOCK };
	cfx_send(&f, &led, sizeof(led));
	struct vmbus_client_channel kch = f.ch;
	mouse_connect(&f, SYNTHHID_VERSION_2_0, true);
	cfx_send(&f, buf, hid_msg(buf, SYNTHHID_MSG_DEVICE_INFO_ACK, "\0", 1));
	struct vmbus_client_channel mch = f.ch;
	assert_int_equal(((struct synthmouse *)cfx_state(&f, "mouse"))->state, SYNTHMOUSE_READY);
	vid_connect_vram(&f);
	struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, 640, 480, 640 * 4 } } };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	for (uint32_t y = 0; y < 480; y++)
		for (uint32_t x = 0; x < 640; x++) {
			uint32_t px = vid_pattern(x, y);
			memcpy(f.ram + ((size_t)y * 640 + x) * 4, &px, 4);
		}
	struct synthvid_dirt dirt = { 0, 1, { { 0, 0, 10, 10 } } };
	vid_send_msg(&f, SYNTHVID_MSG_DIRT, &dirt, sizeof(dirt));
	struct vmbus_client_channel vch = f.ch;
	assert_int_equal(cfx_verb(&f, cmd, reply, sizeof(reply)), 0);

	/* Saved: input held meanwhile (a key then is refused, not half sent). */
	for (unsigned i = 0; i < f.set.n; i++)
		if (f.set.run[i].cls->quiesce)
			assert_int_equal(f.set.run[i].cls->quiesce(f.set.run[i].state, 100), 0);
	f.ch = kch;
	assert_int_equal(cfx_verb(&f, "key a", reply, sizeof(reply)), -EBUSY);
	assert_string_equal(reply, "the VM is being saved; nothing was sent");
	assert_false(cfx_recv(&f, pkt, &len));
	vmdev_set_thaw(&f.set);
	assert_int_equal(cfx_verb(&f, "key a", reply, sizeof(reply)), 0);
	struct synthkbd_keystroke ev[4];
	kbd_events(&f, ev, 2);
	kch = f.ch;
	FILE *t = tmpfile();
	struct savestate_writer w;
	savestate_write_begin(&w, fileno(t), "{}", 2, 1, f.lb.mem.ram_size);
	char err[256] = "";
	assert_int_equal(vmdev_set_save(&f.set, &w, err, sizeof(err)), 0);
	uint8_t *vb;
	size_t vl;
	assert_int_equal(vmbus_server_save(f.lb.srv, &vb, &vl), 0);
	savestate_write_section(&w, SAVESTATE_SEC_VMBUS, 0, vb, vl);
	free(vb);
	assert_int_equal(savestate_write_devmem(&w, f.ram, f.ram_size, f.ram_gpa, f.ram_mapped), 0);
	assert_int_equal(savestate_write_end(&w), 0);
	size_t flen = (size_t)w.off;
	uint8_t *file = malloc(flen);
	assert_int_equal(pread(fileno(t), file, flen, 0), (ssize_t)flen);
	fclose(t);
	assert_true(flen < (2u << 20)); /* the 1.2 MB picture's pages, not the 8 MiB of VRAM */

	/* A new process: the server as a new VM's, the classes made again, no VRAM yet. */
	vmbus_server_reset(f.lb.srv);
	vmdev_set_destroy(&f.set);
	free(f.ram);
	f.ram = NULL;
	f.ram_mapped = false;
	f.maps = 0;
	assert_int_equal(vmdev_set_create(&f.set, &f.h, &f.cfg, err, sizeof(err)), 0);
	struct savestate_file sf;
	struct savestate_sec sec;
	assert_int_equal(savestate_open(&sf, file, flen, err, sizeof(err)), 0);
	assert_int_equal(savestate_find(&sf, SAVESTATE_SEC_VMBUS, 0, &sec), 0);
	assert_int_equal(vmbus_server_restore(f.lb.srv, sec.data, sec.len, err, sizeof(err)), 0);
	/* Hostile states, each refused before anything is taken: a version never negotiated, a VRAM
	 * outside the MMIO windows, a pointer too large, a mouse without a channel's state. */
	struct synthvid *v = cfx_state(&f, "video");
	for (unsigned i = 0; i < f.set.n; i++) {
		const struct vmdev_class *c = f.set.run[i].cls;
		if (strcmp(c->name, "video") && strcmp(c->name, "mouse") && strcmp(c->name, "keyboard"))
			continue;
		assert_int_equal(savestate_find(&sf, SAVESTATE_SEC_DEVICE, i, &sec), 0);
		uint8_t *bad = malloc(sec.len);
		size_t bl = sec.len - 16;
		memcpy(bad, sec.data + 16, bl);
		if (!strcmp(c->name, "video")) {
			struct savestate_synthvid *b = (struct savestate_synthvid *)bad;
			b->version = 7;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
			b->version = SYNTHVID_VERSION_WIN10;
			b->vram_gpa = 0x1000;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
			b->vram_gpa = CFX_MMIO_LOW;
			b->ptr_w = 97;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
			assert_int_equal(f.maps, 0);
		} else if (!strcmp(c->name, "mouse")) {
			struct savestate_synthmouse *b = (struct savestate_synthmouse *)bad;
			b->state = SYNTHMOUSE_CLOSED;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
			b->state = 9;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
		} else {
			struct savestate_synthkbd *b = (struct savestate_synthkbd *)bad;
			b->leds = 0x80;
			assert_int_equal(c->restore(f.set.run[i].state, bad, bl, err, sizeof(err)), -EINVAL);
		}
		assert_int_equal(c->restore(f.set.run[i].state, bad, bl - 1, err, sizeof(err)), -EINVAL);
		free(bad);
	}
	assert_int_equal(vmdev_set_restore(&f.set, &sf, err, sizeof(err)), 0);
	assert_int_equal(f.maps, 1);
	assert_int_equal(f.ram_gpa, CFX_MMIO_LOW);
	assert_int_equal(savestate_find(&sf, SAVESTATE_SEC_DEVMEM, 0, &sec), 0);
	struct savestate_devmem dm;
	assert_int_equal(savestate_devmem_check(&sec, &dm, err, sizeof(err)), 0);
	assert_int_equal(dm.mapped, 1);
	assert_int_equal(dm.gpa, CFX_MMIO_LOW);
	assert_int_equal(savestate_devmem_load(&sec, f.ram, f.ram_size), 0);
	vmbus_server_kick_open(f.lb.srv);
	free(file);

	/* The screen as it was, the status as it was, and the guest's drivers still connected. */
	remove(path);
	assert_int_equal(cfx_verb(&f, cmd, reply, sizeof(reply)), 0);
	vid_check_png(path, 640, 480);
	assert_true(synthvid_display_announced(v));
	struct json_object *o = json_object_new_object();
	char text[256] = "";
	vmdev_set_status(&f.set, o, text, sizeof(text));
	json_object_put(o);
	assert_non_null(strstr(text, "keyboard connected"));
	assert_non_null(strstr(text, "mouse connected"));
	assert_non_null(strstr(text, "video connected (640x480)"));
	assert_int_equal(((struct synthkbd *)cfx_state(&f, "keyboard"))->leds, SYNTHKBD_LED_NUM_LOCK);
	f.ch = kch;
	assert_int_equal(cfx_verb(&f, "key enter", reply, sizeof(reply)), 0);
	kbd_events(&f, ev, 2);
	assert_int_equal(ks(&ev[0]), KS(0x1c, 0));
	f.ch = mch;
	assert_int_equal(cfx_verb(&f, "mouse 10 20 1", reply, sizeof(reply)), 0);
	assert_true(cfx_recv(&f, pkt, &len));
	f.ch = vch;
	/* The video driver's next messages are taken: a new geometry. */
	su.output[0] = (struct synthvid_output_situation){ 1, 0, 32, 800, 600, 800 * 4 };
	vid_send_msg(&f, SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
	assert_false(cfx_recv(&f, body, &n));
	assert_int_equal(v->geo.width, 800);
	remove(path);
	rmdir(dir);
	cfx_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_by_default),
		cmocka_unit_test(test_keyboard),
		cmocka_unit_test(test_keyboard_leds_and_hostile),
		cmocka_unit_test(test_mouse),
		cmocka_unit_test(test_mouse_hostile),
		cmocka_unit_test(test_video),
		cmocka_unit_test(test_video_modes),
		cmocka_unit_test(test_video_firmware_screen),
		cmocka_unit_test(test_video_screen),
		cmocka_unit_test(test_video_display_written),
		cmocka_unit_test(test_video_announced),
		cmocka_unit_test(test_video_display_vnc),
		cmocka_unit_test(test_save_restore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
