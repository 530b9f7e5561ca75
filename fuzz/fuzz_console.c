/* libFuzzer target for the synthetic console devices (src/devices/synthkbd.c, synthmouse.c,
 * synthvid.c): what a guest's hyperv_keyboard, hid-hyperv, hyperv_drm or hyperv_fb could send.
 * The VM offers the three (--synthetic-console) on a loopback VMBus; the guest opens one and sends
 * from the input, while the host injects keys and pointer states and reads the video state.
 *
 * Input: byte 0 (bits 0-1: the device, 0 keyboard, 1 mouse, 2 video, 3 keyboard; bit 2: do the
 * Linux driver's handshake right first, so the later messages are reached; bit 3: close and reopen
 * the channel half way). Then records: u8 kind, u8 length, bytes. Kind % 4: 0 a raw INBAND packet
 * of the record's bytes; 1 a message in the device's framing (keyboard: u32 type then the rest;
 * mouse and video: pipe and message headers with the right sizes) of type bytes[0] and body the
 * rest; 2 the same framing with both size fields taken from bytes[1..2] (lies about sizes); 3 a
 * host action (key, type, mouse verbs, synthmouse_send, synthvid_dirty_take and a display's reads
 * (synthvid_display_take, synthvid_display_pointer, with its eventfd set), the VM's status). The
 * handshake also sends a 2x2 ARGB pointer shape, so the shape store is reached with an image.
 * Must never crash, hang or leak. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <json-c/json.h>

#include "devices/synthkbd.h"
#include "devices/synthmouse.h"
#include "devices/synthvid.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/synthhid.h"
#include "gen2vm/proto/synthkbd.h"
#include "gen2vm/proto/synthvid.h"
#include "support/loopback.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	return 0;
}

static const char *const fz_guids[3] = { SYNTHKBD_CLASS_GUID_TEXT, SYNTHHID_CLASS_GUID_TEXT, SYNTHVID_CLASS_GUID_TEXT };
static const uint32_t fz_rings[3] = { 40960, 40960, 256 * 1024 };

struct fz {
	struct vmbus_loopback lb;
	struct vmbus_client_channel ch;
	uint32_t relid;
	unsigned dev;
};

/* The guest reads whatever the host sent (its answers are not checked here: the unit tests do). */
static void fz_drain(struct fz *z)
{
	static uint8_t raw[4096];
	uint32_t n;
	while (vmbus_client_recv(&z->ch, raw, sizeof(raw), &n) == 0)
		;
	vmbus_client_recv_done(&z->ch);
}

static void fz_send(struct fz *z, const void *b, uint32_t len)
{
	vmbus_client_send(&z->ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 1, NULL, 0, b, len);
	fz_drain(z);
}

/* A message of type with body (n bytes) in the device's framing; sizes: NULL for the right ones,
 * else the pipe's and the message's size fields. */
static void fz_framed(struct fz *z, uint32_t type, const uint8_t *body, uint32_t n, const uint32_t *sizes)
{
	uint8_t buf[16 + 256];
	if (z->dev == 0) {
		memcpy(buf, &type, 4);
		memcpy(buf + 4, body, n);
		fz_send(z, buf, 4 + n);
		return;
	}
	/* mouse: the message size excludes its header; video: it includes it. */
	uint32_t ps = 8 + n, hs = z->dev == 1 ? n : 8 + n;
	if (sizes) {
		ps = sizes[0];
		hs = sizes[1];
	}
	uint32_t pipe[2] = { 1, ps }, hdr[2] = { type, hs };
	memcpy(buf, pipe, 8);
	memcpy(buf + 8, hdr, 8);
	memcpy(buf + 16, body, n);
	fz_send(z, buf, 16 + n);
}

/* The Linux driver's handshake, as right as it is. */
static void fz_handshake(struct fz *z)
{
	if (z->dev == 0) {
		uint32_t v = SYNTHKBD_VERSION_1_0;
		fz_framed(z, SYNTHKBD_MSG_PROTOCOL_REQUEST, (const uint8_t *)&v, 4, NULL);
	} else if (z->dev == 1) {
		uint32_t v = SYNTHHID_VERSION_2_0;
		uint8_t zero = 0;
		fz_framed(z, SYNTHHID_MSG_PROTOCOL_REQUEST, (const uint8_t *)&v, 4, NULL);
		fz_framed(z, SYNTHHID_MSG_DEVICE_INFO_ACK, &zero, 1, NULL);
	} else {
		uint32_t v = SYNTHVID_VERSION_WIN10;
		struct synthvid_resolution_req rr = { 64 };
		struct synthvid_vram_location vl = { 0xf8000000ull, 1, 0xf8000000ull };
		struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, 1024, 768, 4096 } } };
		fz_framed(z, SYNTHVID_MSG_VERSION_REQUEST, (const uint8_t *)&v, 4, NULL);
		fz_framed(z, SYNTHVID_MSG_RESOLUTION_REQUEST, (const uint8_t *)&rr, sizeof(rr), NULL);
		fz_framed(z, SYNTHVID_MSG_VRAM_LOCATION, (const uint8_t *)&vl, sizeof(vl), NULL);
		fz_framed(z, SYNTHVID_MSG_SITUATION_UPDATE, (const uint8_t *)&su, sizeof(su), NULL);
		uint8_t shape[offsetof(struct synthvid_pointer_shape, data) + 16] = { 0 };
		struct synthvid_pointer_shape ps = { SYNTHVID_CURSOR_COMPLETE, 1, 2, 2, 1, 1, { 0 } };
		memcpy(shape, &ps, offsetof(struct synthvid_pointer_shape, data));
		memset(shape + offsetof(struct synthvid_pointer_shape, data), 0x80, 16);
		fz_framed(z, SYNTHVID_MSG_POINTER_SHAPE, shape, sizeof(shape), NULL);
	}
}

static int fz_verb(struct vmdev_set *set, int argc, char **argv)
{
	char reply[1024];
	for (unsigned i = 0; i < set->n; i++)
		for (const struct vmdev_verb *v = set->run[i].cls->verbs; v && v->name; v++)
			if (!strcmp(v->name, argv[0]))
				return v->fn(set->run[i].state, argc, argv, reply, sizeof(reply));
	return -1;
}

static void *fz_state(struct vmdev_set *set, const char *name)
{
	for (unsigned i = 0; i < set->n; i++)
		if (!strcmp(set->run[i].cls->name, name))
			return set->run[i].state;
	abort();
}

/* A host action picked by b (len bytes). */
static void fz_action(struct fz *z, struct vmdev_set *set, const uint8_t *b, unsigned len)
{
	unsigned act = len ? b[0] % 6 : 0;
	switch (act) {
	case 0: {
		static const char *const keys[] = { "enter", "ctrl-alt-del", "f12", "shift-a", "up", "-", "ctrl--", "x-" };
		char a0[] = "key", a1[16];
		snprintf(a1, sizeof(a1), "%s", keys[len > 1 ? b[1] % 8 : 0]);
		char *argv[] = { a0, a1, NULL };
		fz_verb(set, 2, argv);
		break;
	}
	case 1: {
		char a0[] = "type", text[64];
		unsigned n = len > 1 ? len - 1 : 0;
		if (n > sizeof(text) - 1)
			n = sizeof(text) - 1;
		memcpy(text, b + 1, n);
		text[n] = '\0';
		char *argv[] = { a0, text, NULL };
		fz_verb(set, 2, argv);
		break;
	}
	case 2: {
		char a0[] = "mouse", x[16], y[16], bt[8];
		snprintf(x, sizeof(x), "%u", len > 2 ? (unsigned)(b[1] | b[2] << 8) : 0);
		snprintf(y, sizeof(y), "%u", len > 3 ? (unsigned)b[3] << 7 : 0);
		snprintf(bt, sizeof(bt), "%u", len > 4 ? b[4] % 9 : 0);
		char *argv[] = { a0, x, y, bt, NULL };
		fz_verb(set, 4, argv);
		break;
	}
	case 3:
		synthmouse_send(fz_state(set, "mouse"), len > 1 ? b[1] : 0, 5, len > 2 ? b[2] : 0,
				len > 3 ? (int8_t)b[3] : 0);
		break;
	case 4: {
		struct synthvid_rect r;
		struct synthvid_geometry g;
		synthvid_dirty_take(fz_state(set, "video"), &r, &g);
		/* A display's reads: the screen copied out, the pointer. */
		static uint8_t *frame;
		static struct synthvid_pointer ptr;
		if (!frame && !(frame = malloc(SYNTHVID_VRAM_SIZE)))
			abort();
		synthvid_display_take(fz_state(set, "video"), frame, SYNTHVID_VRAM_SIZE, len > 1 && (b[1] & 1), &g, &r);
		synthvid_display_pointer(fz_state(set, "video"), &ptr);
		break;
	}
	default: {
		char text[512] = "";
		struct json_object *o = json_object_new_object();
		vmdev_set_status(set, o, text, sizeof(text));
		json_object_put(o);
		break;
	}
	}
	fz_drain(z);
}

/* The machine's VRAM backing, faked: one buffer for the whole run, as gen2 keeps one per VM. */
static uint8_t *fz_vram;
static uint64_t fz_vram_size;

static int fz_map_ram(void *opaque, uint64_t gpa, uint64_t size, void **host)
{
	if (!fz_vram) {
		fz_vram = calloc(1, size);
		fz_vram_size = size;
	}
	if (!fz_vram || size != fz_vram_size)
		return -ENOMEM;
	*host = fz_vram;
	return 0;
}

static int fz_unmap_ram(void *opaque)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct fz *z = calloc(1, sizeof(*z));
	if (!z || vmbus_loopback_init(&z->lb, 32ull << 20, 1, NULL))
		abort();
	z->dev = (mode & 3) == 3 ? 0 : mode & 3;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	/* gen2's MMIO windows, so that the guest's VRAM locations are checked and mapped as on a VM. */
	struct vmdev_host h = { .srv = z->lb.srv, .srv_lock = &lock, .mem = &z->lb.mem, .nr_vcpus = 1, .vm_name = "f",
				.mmio = { { 0xf0000000ull, 128ull << 20 }, { 0x1000000000ull, 64ull << 30 } },
				.map_ram = fz_map_ram, .unmap_ram = fz_unmap_ram };
	struct vmdev_config cfg = { 0 };
	struct vmdev_set set;
	char err[256];
	struct vmbus_guid g;
	if (vmdev_config_add_option(&cfg, "synthetic-console", NULL, err, sizeof(err)) ||
	    vmdev_set_create(&set, &h, &cfg, err, sizeof(err)) || vmbus_client_connect(&z->lb.cl, 0, 0) ||
	    vmbus_client_request_offers(&z->lb.cl) || vmbus_guid_parse(fz_guids[z->dev], &g))
		abort();
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&z->lb.cl, &g, 0);
	if (!o)
		abort();
	z->relid = o->msg.child_relid;
	/* A display's wake-up, as the VNC server sets it (drained at the end). */
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	synthvid_display_notify(fz_state(&set, "video"), efd);
	if (vmbus_client_channel_open(&z->lb.cl, &z->ch, z->relid, fz_rings[z->dev], fz_rings[z->dev], 0, NULL, 0))
		abort();
	if (mode & 4)
		fz_handshake(z);
	size_t half = n / 2;
	bool reopened = false;
	for (size_t k = 0; k + 2 <= n;) {
		if ((mode & 8) && !reopened && k >= half) {
			reopened = true;
			vmbus_client_channel_close(&z->ch);
			if (vmbus_client_channel_open(&z->lb.cl, &z->ch, z->relid, fz_rings[z->dev], fz_rings[z->dev], 0,
						      NULL, 0))
				abort();
			if (mode & 4)
				fz_handshake(z);
		}
		unsigned kind = p[k] % 4, len = p[k + 1];
		k += 2;
		if (len > n - k)
			len = (unsigned)(n - k);
		const uint8_t *b = p + k;
		k += len;
		switch (kind) {
		case 0:
			fz_send(z, b, len);
			break;
		case 1:
			if (len)
				fz_framed(z, b[0] % 16, b + 1, len - 1, NULL);
			break;
		case 2:
			if (len >= 3) {
				uint32_t sizes[2] = { b[1], b[2] };
				fz_framed(z, b[0] % 16, b + 3, len - 3, sizes);
			}
			break;
		default:
			fz_action(z, &set, b, len);
			break;
		}
	}
	vmbus_client_channel_close(&z->ch);
	synthvid_display_notify(fz_state(&set, "video"), -1);
	if (efd >= 0)
		close(efd);
	vmdev_set_destroy(&set);
	vmdev_config_free(&cfg);
	vmbus_loopback_destroy(&z->lb);
	free(z);
	return 0;
}
