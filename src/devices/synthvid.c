/* The synthetic video device: see synthvid.h. Facts (versions, layouts, what the guest checks)
 * from Linux's drivers/gpu/drm/hyperv/hyperv_drm_proto.c and drivers/video/fbdev/hyperv_fb.c,
 * cited in include/gen2vm/proto/synthvid.h. */
#include "devices/synthvid.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <png.h>

#include "gen2vm/proto/savestate.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

/* gen2vm's own list: every mode fits SYNTHVID_VRAM_MB at 32 bpp; the default (first) is 1024x768. */
const struct synthvid_screen_size synthvid_resolutions[] = {
	{ 1024, 768 }, { 640, 480 },   { 800, 600 },  { 1152, 864 },  { 1280, 720 },  { 1280, 800 },
	{ 1280, 1024 }, { 1366, 768 }, { 1440, 900 }, { 1600, 900 }, { 1600, 1200 }, { 1920, 1080 },
};
const unsigned synthvid_nr_resolutions = sizeof(synthvid_resolutions) / sizeof(synthvid_resolutions[0]);
_Static_assert(1920u * 1080u * 4u <= SYNTHVID_VRAM_MB << 20, "the largest mode fits the VRAM");
_Static_assert(sizeof(synthvid_resolutions) / sizeof(synthvid_resolutions[0]) < SYNTHVID_MAX_RESOLUTION_COUNT,
	       "the standard list and a configured screen fit one RESOLUTION_RESPONSE");

int synthvid_mode_parse(const char *s, struct synthvid_screen_size *out, char *err, size_t errlen)
{
	unsigned long w = 0, h = 0;
	char *end = NULL;
	if (s[0] >= '0' && s[0] <= '9')
		w = strtoul(s, &end, 10);
	if (end && (*end == 'x' || *end == 'X') && end[1] >= '0' && end[1] <= '9') {
		h = strtoul(end + 1, &end, 10);
		if (*end)
			h = 0;
	}
	if (!h) {
		snprintf(err, errlen, "'%s' is not a screen size: give WIDTHxHEIGHT, e.g. 1600x1200", text_show(s));
		return -EINVAL;
	}
	/* h is checked against the VRAM only once w is small: w * h cannot overflow. */
	if (w < SYNTHVID_MIN_WIDTH || h < SYNTHVID_MIN_HEIGHT || w > SYNTHVID_MAX_WIDTH || h > SYNTHVID_VRAM_SIZE ||
	    w * h * 4 > SYNTHVID_VRAM_SIZE) {
		snprintf(err, errlen,
			 "a screen of %s is not possible: at least %ux%u, and at 32 bits a pixel it must fit "
			 "the %u MiB of video memory (1920x1080 and 1600x1200 do)",
			 text_show(s), SYNTHVID_MIN_WIDTH, SYNTHVID_MIN_HEIGHT, SYNTHVID_VRAM_MB);
		return -EINVAL;
	}
	*out = (struct synthvid_screen_size){ (uint16_t)w, (uint16_t)h };
	return 0;
}

unsigned synthvid_modes_build(struct synthvid_screen_size max, struct synthvid_screen_size *out, unsigned *def)
{
	if (!max.width || !max.height)
		max = synthvid_resolutions[0];
	unsigned n = 0;
	bool have = false;
	for (unsigned i = 0; i < synthvid_nr_resolutions; i++) {
		struct synthvid_screen_size m = synthvid_resolutions[i];
		if (m.width > max.width || m.height > max.height)
			continue;
		if (m.width == max.width && m.height == max.height) {
			have = true;
			*def = n;
		}
		out[n++] = m;
	}
	if (!have) {
		*def = n;
		out[n++] = max;
	}
	return n;
}

/* With the lock held: one synthvid message (type, body of n bytes) in the pipe framing. */
static int vid_send(struct console_dev *d, uint32_t type, const void *body, uint32_t n)
{
	uint8_t buf[sizeof(struct synthvid_pipe_hdr) + sizeof(struct synthvid_hdr) +
		    sizeof(struct synthvid_resolution_resp)];
	if (n > sizeof(buf) - 16)
		return -EMSGSIZE;
	struct synthvid_hdr h = { type, (uint32_t)sizeof(h) + n };
	struct synthvid_pipe_hdr p = { SYNTHVID_PIPE_DATA, h.size };
	memcpy(buf, &p, sizeof(p));
	memcpy(buf + sizeof(p), &h, sizeof(h));
	memcpy(buf + sizeof(p) + sizeof(h), body, n);
	return console_dev_send(d, buf, (uint32_t)(sizeof(p) + sizeof(h) + n), 0);
}

static void vid_version(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	struct synthvid_version_req rq;
	if (n < sizeof(rq)) {
		log_guest("synthetic video: a version request of %u bytes dropped", n);
		return;
	}
	memcpy(&rq, b, sizeof(rq));
	bool ok = rq.version == SYNTHVID_VERSION_WIN10 || rq.version == SYNTHVID_VERSION_WIN8;
	struct synthvid_version_resp rs = { rq.version, ok, 1 };
	if (!ok) /* the guest falls back to 3.2 itself when it may */
		log_guest("synthetic video: version %u.%u refused (3.5 and 3.2 are supported)", rq.version & 0xffff,
			  rq.version >> 16);
	int r = vid_send(d, SYNTHVID_MSG_VERSION_RESPONSE, &rs, sizeof(rs));
	if (r)
		log_warn("synthetic video: cannot answer the version request: %s", strerror(-r));
	if (ok && !r)
		v->version = rq.version;
}

static void vid_resolutions(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	struct synthvid_resolution_req rq;
	if (n < sizeof(rq) || v->version != SYNTHVID_VERSION_WIN10) {
		log_guest("synthetic video: a resolution request (%u bytes, version %u.%u) dropped", n,
			  v->version & 0xffff, v->version >> 16);
		return;
	}
	memcpy(&rq, b, sizeof(rq));
	struct synthvid_resolution_resp rs;
	memset(&rs, 0, sizeof(rs)); /* no EDID: Linux reads none of it */
	/* nr_modes is below SYNTHVID_MAX_RESOLUTION_COUNT (the _Static_assert on the standard list). */
	unsigned count = v->nr_modes < rq.maximum_resolution_count ? v->nr_modes : rq.maximum_resolution_count;
	rs.resolution_count = (uint8_t)count;
	/* A guest asking for fewer than the list still gets a default inside what it took. */
	rs.default_resolution_index = count > v->default_mode ? (uint8_t)v->default_mode : 0;
	memcpy(rs.supported_resolution, v->modes, count * sizeof(rs.supported_resolution[0]));
	int r = vid_send(d, SYNTHVID_MSG_RESOLUTION_RESPONSE, &rs, sizeof(rs));
	if (r)
		log_warn("synthetic video: cannot answer the resolution request: %s", strerror(-r));
}

/* With the lock held: the VRAM no longer mapped (the guest said it has none, or left). */
static void vid_vram_unmap(struct console_dev *d, struct synthvid *v)
{
	if (v->vram_mapped && d->host.unmap_ram) {
		int r = d->host.unmap_ram(d->host.opaque);
		if (r)
			log_warn("synthetic video: cannot unmap the VRAM: %s", strerror(-r));
	}
	v->vram_mapped = false;
	v->vram = NULL;
}

static void vid_vram(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	struct synthvid_vram_location l;
	if (n < sizeof(l) || !v->version) {
		log_guest("synthetic video: a VRAM location (%u bytes) before the version, or short, dropped", n);
		return;
	}
	memcpy(&l, b, sizeof(l));
	if (!l.is_vram_gpa_specified) {
		/* No VRAM (Linux always gives one): nothing to show. */
		vid_vram_unmap(d, v);
		v->vram_set = false;
		v->vram_gpa = 0;
	} else {
		const char *why;
		if (vmdev_mmio_check(&d->host, l.vram_gpa, SYNTHVID_VRAM_SIZE, &why)) {
			/* Not acknowledged: the guest's driver gives up after its wait instead of drawing into
			 * memory nobody backs. */
			log_guest("synthetic video: VRAM at 0x%" PRIx64 " (%u MiB) refused: %s", l.vram_gpa, SYNTHVID_VRAM_MB,
				  why);
			return;
		}
		if (d->host.map_ram) {
			void *host;
			int r = d->host.map_ram(d->host.opaque, l.vram_gpa, SYNTHVID_VRAM_SIZE, &host);
			if (r) {
				log_warn("synthetic video: cannot map the VRAM at 0x%" PRIx64 ": %s", l.vram_gpa, strerror(-r));
				return;
			}
			v->vram = host;
			v->vram_mapped = true;
		}
		v->vram_set = true;
		v->vram_gpa = l.vram_gpa;
	}
	struct synthvid_vram_location_ack ack = { l.user_ctx };
	int r = vid_send(d, SYNTHVID_MSG_VRAM_LOCATION_ACK, &ack, sizeof(ack));
	/* Ask for dirty rectangles: without them the guest tells nothing of what it draws. */
	struct synthvid_feature_change fc = { 1, 0, 0, 0 };
	if (!r)
		r = vid_send(d, SYNTHVID_MSG_FEATURE_CHANGE, &fc, sizeof(fc));
	if (r)
		log_warn("synthetic video: cannot answer the VRAM location: %s", strerror(-r));
}

/* With the lock held: wakes the display, if any. Called on edges only (see synthvid_display_notify):
 * the eventfd counts, so a write the display has not read yet is harmless. */
static void vid_notify(struct console_dev *d)
{
	if (d->notify_fd >= 0) {
		uint64_t one = 1;
		if (write(d->notify_fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is full, the display is awake anyway. */
		}
	}
}

/* Whether a geometry (the guest's word) can be shown: 32 bpp, the frame inside the VRAM. */
static bool vid_geometry_valid(const struct synthvid_geometry *g)
{
	uint64_t end = (uint64_t)g->vram_offset + (uint64_t)g->pitch * g->height;
	return g->depth_bits == SYNTHVID_DEPTH_WIN8 && g->width && g->height && g->width <= 0x4000 &&
	       (uint64_t)g->pitch >= (uint64_t)g->width * 4 && end <= SYNTHVID_VRAM_SIZE;
}

static void vid_situation(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	struct synthvid_situation_update s;
	if (n < sizeof(s)) {
		log_guest("synthetic video: a situation update of %u bytes dropped", n);
		return;
	}
	memcpy(&s, b, sizeof(s));
	if (s.video_output_count < 1) {
		log_guest("synthetic video: a situation update with no output dropped");
		return;
	}
	/* Only output 0 exists (max_video_outputs 1): the rest is ignored. */
	const struct synthvid_output_situation *o = &s.output[0];
	struct synthvid_geometry g = { o->active, o->vram_offset, o->depth_bits, o->width_pixels, o->height_pixels,
				       o->pitch_bytes, false };
	g.valid = vid_geometry_valid(&g);
	if (!g.valid && g.active)
		log_guest("synthetic video: a screen of %ux%u, %u bpp, pitch %u at VRAM offset %u does not fit; not shown",
			  g.width, g.height, g.depth_bits, g.pitch, g.vram_offset);
	v->geo = g;
	/* A new geometry: everything is to be drawn again. */
	v->dirty = g.valid;
	v->dirt = (struct synthvid_rect){ 0, 0, (int32_t)(g.valid ? g.width : 0), (int32_t)(g.valid ? g.height : 0) };
	vid_notify(d); /* a geometry change is always news, even to a screen that was already dirty */
}

static void vid_dirt(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	if (n < 2) {
		log_guest("synthetic video: a dirt message of %u bytes dropped", n);
		return;
	}
	unsigned count = b[1];
	if (n - 2 < count * sizeof(struct synthvid_rect)) {
		log_guest("synthetic video: a dirt message of %u rectangles in %u bytes dropped", count, n);
		return;
	}
	v->dirt_messages++;
	v->announces = true;
	if (!v->geo.valid)
		return;
	int32_t w = (int32_t)v->geo.width, h = (int32_t)v->geo.height;
	for (unsigned i = 0; i < count; i++) {
		struct synthvid_rect r;
		memcpy(&r, b + 2 + i * sizeof(r), sizeof(r));
		/* Clip to the screen; the guest's coordinates are its word only. */
		r.x1 = r.x1 < 0 ? 0 : r.x1 > w ? w : r.x1;
		r.x2 = r.x2 < 0 ? 0 : r.x2 > w ? w : r.x2;
		r.y1 = r.y1 < 0 ? 0 : r.y1 > h ? h : r.y1;
		r.y2 = r.y2 < 0 ? 0 : r.y2 > h ? h : r.y2;
		if (r.x1 >= r.x2 || r.y1 >= r.y2)
			continue;
		if (!v->dirty) {
			v->dirt = r;
			v->dirty = true;
			vid_notify(d); /* the clean -> dirty edge only: later dirt joins what is pending */
			continue;
		}
		if (r.x1 < v->dirt.x1)
			v->dirt.x1 = r.x1;
		if (r.y1 < v->dirt.y1)
			v->dirt.y1 = r.y1;
		if (r.x2 > v->dirt.x2)
			v->dirt.x2 = r.x2;
		if (r.y2 > v->dirt.y2)
			v->dirt.y2 = r.y2;
	}
}

static void vid_pointer_position(struct synthvid *v, const uint8_t *b, uint32_t n)
{
	struct synthvid_pointer_position p;
	if (n < sizeof(p)) {
		log_guest("synthetic video: a pointer position of %u bytes dropped", n);
		return;
	}
	memcpy(&p, b, sizeof(p));
	v->ptr_visible = p.is_visible;
	v->ptr_x = p.image_x;
	v->ptr_y = p.image_y;
}

int synthvid_pointer_shape_check(const uint8_t *b, uint32_t n, const char **why)
{
	struct synthvid_pointer_shape s;
	if (n < offsetof(struct synthvid_pointer_shape, data)) {
		*why = "shorter than its header";
		return -EINVAL;
	}
	memcpy(&s, b, offsetof(struct synthvid_pointer_shape, data));
	if (s.width > SYNTHVID_CURSOR_MAX_X || s.height > SYNTHVID_CURSOR_MAX_Y) {
		*why = "larger than 96x96";
		return -EINVAL;
	}
	if (s.hot_x > s.width || s.hot_y > s.height) {
		*why = "its hot spot is outside it";
		return -EINVAL;
	}
	/* At most 96 * 96 * 4 bytes: no overflow. */
	if (s.is_argb && (uint64_t)s.width * s.height * 4 > n - offsetof(struct synthvid_pointer_shape, data)) {
		*why = "its image is longer than the message";
		return -EINVAL;
	}
	return 0;
}

static void vid_pointer_shape(struct console_dev *d, struct synthvid *v, const uint8_t *b, uint32_t n)
{
	const char *why;
	if (synthvid_pointer_shape_check(b, n, &why)) {
		log_guest("synthetic video: a pointer shape of %u bytes dropped: %s", n, why);
		return;
	}
	struct synthvid_pointer_shape s;
	memcpy(&s, b, offsetof(struct synthvid_pointer_shape, data));
	v->ptr_w = s.width;
	v->ptr_h = s.height;
	v->ptr_hot_x = s.hot_x;
	v->ptr_hot_y = s.hot_y;
	/* Only whole ARGB shapes are kept for a display; the monochrome form is not used by Linux and
	 * its layout is not described anywhere gen2vm's sources cite. */
	v->ptr_shape = s.is_argb && s.part_idx == SYNTHVID_CURSOR_COMPLETE && s.width && s.height;
	if (v->ptr_shape)
		memcpy(v->ptr_argb, b + offsetof(struct synthvid_pointer_shape, data), (size_t)s.width * s.height * 4);
	v->ptr_shape_seq++;
	vid_notify(d);
}

static void vid_packet(struct console_dev *d, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct synthvid *v = d->svc;
	struct synthvid_pipe_hdr p;
	struct synthvid_hdr h;
	if (len < sizeof(p) + sizeof(h)) {
		log_guest("synthetic video: a packet of %u bytes dropped (too short for its headers)", len);
		return;
	}
	memcpy(&p, pkt, sizeof(p));
	memcpy(&h, pkt + sizeof(p), sizeof(h));
	if (p.type != SYNTHVID_PIPE_DATA || p.size > len - sizeof(p) || h.size < sizeof(h) || h.size > p.size) {
		log_guest("synthetic video: a packet with pipe type %u, sizes %u/%u in %u bytes dropped", p.type, p.size,
			  h.size, len);
		return;
	}
	const uint8_t *b = pkt + sizeof(p) + sizeof(h);
	uint32_t n = h.size - (uint32_t)sizeof(h);
	if (h.type != SYNTHVID_MSG_VERSION_REQUEST && !v->version) {
		log_guest("synthetic video: a message of type %u before the version dropped", h.type);
		return;
	}
	switch (h.type) {
	case SYNTHVID_MSG_VERSION_REQUEST: vid_version(d, v, b, n); break;
	case SYNTHVID_MSG_RESOLUTION_REQUEST: vid_resolutions(d, v, b, n); break;
	case SYNTHVID_MSG_VRAM_LOCATION: vid_vram(d, v, b, n); break;
	case SYNTHVID_MSG_SITUATION_UPDATE: vid_situation(d, v, b, n); break;
	case SYNTHVID_MSG_DIRT: vid_dirt(d, v, b, n); break;
	case SYNTHVID_MSG_POINTER_POSITION: vid_pointer_position(v, b, n); break;
	case SYNTHVID_MSG_POINTER_SHAPE: vid_pointer_shape(d, v, b, n); break;
	default:
		log_guest("synthetic video: a message of type %u (%u bytes) dropped", h.type, n);
		break;
	}
}

/* A closed channel forgets the protocol (version, pointer): the guest negotiates again when it
 * reopens. The VRAM stays mapped where it was, with the last geometry: the firmware closes its
 * channel at ExitBootServices and the OS's early console (Linux's efifb, from GOP's FrameBufferBase)
 * goes on drawing there, so the range must stay memory and the screenshot must still show it. The
 * OS keeps that range out of other devices' way (Linux's vmbus reserves screen_info's frame buffer);
 * its video driver's VRAM_LOCATION moves the mapping, one without a GPA drops it. */
static void vid_closed(struct console_dev *d)
{
	struct synthvid *v = d->svc;
	v->version = 0;
	if (v->announces) {
		v->announces = false;
		vid_notify(d); /* from now on the display compares */
	}
	v->ptr_visible = false;
	v->ptr_x = v->ptr_y = 0;
	v->ptr_w = v->ptr_h = v->ptr_hot_x = v->ptr_hot_y = 0;
}

static void vid_opened(struct console_dev *d)
{
	struct synthvid *v = d->svc;
	v->fw_session = v->fw_phase;
}

static const struct console_dev_ops vid_ops = { .opened = vid_opened, .packet = vid_packet, .closed = vid_closed };

bool synthvid_dirty_take(struct synthvid *v, struct synthvid_rect *r, struct synthvid_geometry *geo)
{
	if (!v->d)
		return false;
	pthread_mutex_lock(&v->d->lock);
	bool dirty = v->dirty;
	if (dirty)
		*r = v->dirt;
	if (geo)
		*geo = v->geo;
	v->dirty = false;
	pthread_mutex_unlock(&v->d->lock);
	return dirty;
}

/* ---- a display ---- */

void synthvid_display_notify(struct synthvid *v, int fd)
{
	if (!v->d)
		return;
	pthread_mutex_lock(&v->d->lock);
	v->d->notify_fd = fd;
	pthread_mutex_unlock(&v->d->lock);
}

int synthvid_display_take(struct synthvid *v, uint8_t *dst, size_t cap, bool all, struct synthvid_geometry *geo,
			  struct synthvid_rect *r)
{
	if (!v->d)
		return -ENODEV;
	pthread_mutex_lock(&v->d->lock);
	struct synthvid_geometry g = v->geo;
	*geo = g;
	int ret = 0;
	bool shown = v->vram && g.valid;
	if (!shown) {
		v->dirty = false;
		ret = -EAGAIN;
		goto out;
	}
	if ((uint64_t)g.width * 4 * g.height > cap) {
		ret = -ENOSPC;
		goto out;
	}
	struct synthvid_rect c = { 0, 0, (int32_t)g.width, (int32_t)g.height };
	if (!all) {
		if (!v->dirty)
			goto out;
		c = v->dirt; /* clipped to this geometry when it was added */
	}
	v->dirty = false;
	size_t row = (size_t)(c.x2 - c.x1) * 4;
	for (int32_t y = c.y1; y < c.y2; y++)
		memcpy(dst + (size_t)y * g.width * 4 + (size_t)c.x1 * 4,
		       v->vram + g.vram_offset + (size_t)y * g.pitch + (size_t)c.x1 * 4, row);
	*r = c;
	ret = 1;
out:
	pthread_mutex_unlock(&v->d->lock);
	return ret;
}

int synthvid_display_written(struct synthvid *v, uint8_t *dst, size_t cap, struct synthvid_geometry *geo,
			     struct synthvid_rect *r)
{
	if (!v->d)
		return -ENODEV;
	struct console_dev *d = v->d;
	if (!d->host.ram_written)
		return -ENOTSUP;
	pthread_mutex_lock(&d->lock);
	struct synthvid_geometry g = v->geo;
	*geo = g;
	int ret = 0;
	uint64_t bm[SYNTHVID_VRAM_SIZE / 4096 / 64];
	if (!v->vram || !g.valid) {
		ret = -EAGAIN;
		goto out;
	}
	if ((uint64_t)g.width * 4 * g.height > cap) {
		ret = -ENOSPC;
		goto out;
	}
	int e = d->host.ram_written(d->host.opaque, bm);
	if (e) {
		ret = e == -ENOENT ? 0 : e; /* not mapped: the guest can write nothing */
		goto out;
	}
	/* The written pages among those the screen's rows are on (offset + pitch * height fits: valid). */
	uint64_t start = g.vram_offset, end = start + (uint64_t)g.pitch * g.height;
	int64_t first = -1, last = -1;
	for (uint64_t pg = start / 4096; pg <= (end - 1) / 4096; pg++)
		if (bm[pg / 64] >> (pg % 64) & 1) {
			if (first < 0)
				first = (int64_t)pg;
			last = (int64_t)pg;
		}
	if (first < 0)
		goto out;
	uint64_t lo = (uint64_t)first * 4096, hi = (uint64_t)(last + 1) * 4096;
	uint32_t y1 = lo > start ? (uint32_t)((lo - start) / g.pitch) : 0;
	uint64_t y2 = (hi - start + g.pitch - 1) / g.pitch;
	if (y2 > g.height)
		y2 = g.height;
	for (uint32_t y = y1; y < y2; y++)
		memcpy(dst + (size_t)y * g.width * 4, v->vram + g.vram_offset + (size_t)y * g.pitch, (size_t)g.width * 4);
	*r = (struct synthvid_rect){ 0, (int32_t)y1, (int32_t)g.width, (int32_t)y2 };
	ret = 1;
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

bool synthvid_display_announced(struct synthvid *v)
{
	if (!v->d)
		return false;
	pthread_mutex_lock(&v->d->lock);
	bool a = v->announces && !v->fw_session;
	pthread_mutex_unlock(&v->d->lock);
	return a;
}

void synthvid_firmware_phase(struct synthvid *v, bool firmware)
{
	if (!v->d)
		return;
	pthread_mutex_lock(&v->d->lock);
	v->fw_phase = firmware;
	pthread_mutex_unlock(&v->d->lock);
}

bool synthvid_display_pointer(struct synthvid *v, struct synthvid_pointer *p)
{
	if (!v->d)
		return false;
	pthread_mutex_lock(&v->d->lock);
	p->visible = v->ptr_visible;
	p->x = v->ptr_x;
	p->y = v->ptr_y;
	p->shape = v->ptr_shape;
	p->w = v->ptr_shape ? v->ptr_w : 0;
	p->h = v->ptr_shape ? v->ptr_h : 0;
	p->hot_x = v->ptr_shape ? v->ptr_hot_x : 0;
	p->hot_y = v->ptr_shape ? v->ptr_hot_y : 0;
	p->seq = v->ptr_shape_seq;
	if (v->ptr_shape)
		memcpy(p->argb, v->ptr_argb, (size_t)v->ptr_w * v->ptr_h * 4);
	pthread_mutex_unlock(&v->d->lock);
	return true;
}

/* ---- the screenshot ---- */

struct vid_png_buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void vid_png_write(png_structp png, png_bytep data, size_t n)
{
	struct vid_png_buf *b = png_get_io_ptr(png);
	if (b->oom)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 1u << 16;
		while (n > cap - b->len)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void vid_png_flush(png_structp png)
{
	(void)png;
}

/* Encodes w x h pixels of 32 bpp XRGB (little-endian: B, G, R, X in memory; hyperv_fb's and
 * hyperv_drm's format), pitch bytes a row, as an 8-bit RGB PNG in *b. 0 or -ENOMEM / -EIO. */
static int vid_png_encode(const uint8_t *px, uint32_t w, uint32_t h, uint32_t pitch, struct vid_png_buf *b)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	uint8_t *row = malloc((size_t)w * 3);
	int r = -ENOMEM;
	if (!png || !info || !row)
		goto out;
	/* libpng reports its errors by longjmp; nothing below changes a local the error path reads. */
	if (setjmp(png_jmpbuf(png))) {
		r = -EIO;
		goto out;
	}
	png_set_write_fn(png, b, vid_png_write, vid_png_flush);
	/* A screenshot is wanted now: fast compression, the file is a little larger. */
	png_set_compression_level(png, 1);
	png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
		     PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (uint32_t y = 0; y < h; y++) {
		const uint8_t *s = px + (size_t)y * pitch;
		for (uint32_t x = 0; x < w; x++) {
			row[x * 3] = s[x * 4 + 2];
			row[x * 3 + 1] = s[x * 4 + 1];
			row[x * 3 + 2] = s[x * 4];
		}
		png_write_row(png, row);
	}
	png_write_end(png, NULL);
	r = b->oom ? -ENOMEM : 0;
out:
	png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
	free(row);
	return r;
}

/* `screenshot FILE`: the screen as the guest last drew it, as a PNG. The frame is copied under the
 * device lock (the guest keeps drawing: a frame caught mid-draw is what the screen showed) and
 * encoded outside it, so the guest's messages do not wait for the encoder. */
static int vid_verb_screenshot(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct synthvid *v = state;
	if (argc != 2) {
		snprintf(reply, len, "usage: screenshot FILE.png");
		return -EINVAL;
	}
	const char *path = argv[1];
	if (!v->d) {
		snprintf(reply, len, "the synthetic video device is not offered (run with --synthetic-console)");
		return -ENODEV;
	}
	pthread_mutex_lock(&v->d->lock);
	struct synthvid_geometry g = v->geo;
	/* A closed channel keeps the VRAM and geometry (vid_closed): what was drawn last is shown. */
	const char *no = !v->vram_set && (!v->d->chan || !v->version) ? "the guest's video driver has not connected"
			 : !v->vram_set			  ? "no VRAM location yet"
			 : !v->vram			  ? "the VRAM is not backed by memory on this host"
			 : !g.valid			  ? "the guest has not given a usable screen geometry yet"
							  : NULL;
	uint8_t *frame = NULL;
	size_t size = (size_t)g.pitch * g.height;
	if (!no && (frame = malloc(size)))
		memcpy(frame, v->vram + g.vram_offset, size); /* the situation update checked it fits */
	pthread_mutex_unlock(&v->d->lock);
	if (no) {
		snprintf(reply, len, "%s", no);
		return -EAGAIN;
	}
	if (!frame) {
		snprintf(reply, len, "out of memory");
		return -ENOMEM;
	}
	struct vid_png_buf b = { 0 };
	int r = vid_png_encode(frame, g.width, g.height, g.pitch, &b);
	free(frame);
	char why[256] = "";
	if (r)
		snprintf(why, sizeof(why), "cannot encode the PNG: %s", strerror(-r));
	else
		r = file_replace_user(path, b.p, b.len, why, sizeof(why));
	free(b.p);
	if (r) {
		snprintf(reply, len, "%s: %s", text_show(path), why);
		return r;
	}
	snprintf(reply, len, "%ux%u written to %s", g.width, g.height, text_show(path));
	return 0;
}

static const struct vmdev_verb vid_verbs[] = {
	{ "screenshot", "screenshot FILE.png", vid_verb_screenshot },
	{ NULL, NULL, NULL },
};

/* ---- the class ---- */

static int vid_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen)
{
	struct synthvid *v = calloc(1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "the synthetic video device: out of memory");
		return -ENOMEM;
	}
	v->nr_modes = synthvid_modes_build(h->video, v->modes, &v->default_mode);
	if (console_settings_enabled(cfgs, n)) {
		/* hyperv_drm and hyperv_fb size their VRAM from the offer's mmio_megabytes. */
		int r = console_dev_create(&v->d, h, "video", SYNTHVID_CLASS_GUID_TEXT, 0x7e570403u, SYNTHVID_VRAM_MB,
					   &vid_ops, v, err, errlen);
		if (r) {
			free(v);
			return r;
		}
	}
	*state = v;
	return 0;
}

static void vid_destroy(void *state)
{
	struct synthvid *v = state;
	if (!v)
		return;
	console_dev_destroy(v->d);
	free(v);
}

static void vid_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct synthvid *v = state;
	if (!v->d)
		return;
	pthread_mutex_lock(&v->d->lock);
	struct json_object *j = json_object_new_object();
	const char *st = !v->d->chan ? "no contact" : !v->version ? "negotiating" : "connected";
	if (j) {
		json_object_object_add(j, "state", json_object_new_string(st));
		if (v->geo.valid) {
			json_object_object_add(j, "width", json_object_new_int((int32_t)v->geo.width));
			json_object_object_add(j, "height", json_object_new_int((int32_t)v->geo.height));
		}
		json_object_object_add(o, "video", j);
	}
	if (v->geo.valid)
		snprintf(text, len, "video %s (%ux%u)", st, v->geo.width, v->geo.height);
	else
		snprintf(text, len, "video %s", st);
	pthread_mutex_unlock(&v->d->lock);
}

/* ---- saving ---- */

_Static_assert(SAVESTATE_SYNTHVID_CURSOR_BYTES == sizeof(((struct synthvid *)0)->ptr_argb), "cursor bytes");

static int vid_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct synthvid *v = state;
	if (!v->d)
		return console_dev_save(NULL, NULL, 0, out, len);
	struct savestate_synthvid *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&v->d->lock);
	*s = (struct savestate_synthvid){
		.version = v->version, .vram_set = v->vram_set, .vram_mapped = v->vram_mapped, .announces = v->announces,
		.fw_phase = v->fw_phase, .vram_gpa = v->vram_set ? v->vram_gpa : 0, .fw_session = v->fw_session,
		.geo_active = v->geo.active, .geo_depth_bits = v->geo.depth_bits, .ptr_visible = v->ptr_visible,
		.geo_vram_offset = v->geo.vram_offset, .geo_width = v->geo.width, .geo_height = v->geo.height,
		.geo_pitch = v->geo.pitch, .ptr_x = v->ptr_x, .ptr_y = v->ptr_y, .ptr_w = v->ptr_w, .ptr_h = v->ptr_h,
		.ptr_hot_x = v->ptr_hot_x, .ptr_hot_y = v->ptr_hot_y, .ptr_shape = v->ptr_shape,
		.ptr_shape_seq = v->ptr_shape_seq,
	};
	if (v->ptr_shape)
		memcpy(s->ptr_argb, v->ptr_argb, (size_t)v->ptr_w * v->ptr_h * 4);
	pthread_mutex_unlock(&v->d->lock);
	int r = console_dev_save(v->d, s, sizeof(*s), out, len);
	free(s);
	return r;
}

/* With the lock held: the whole screen is to be drawn again; the display is woken. */
static void vid_all_dirty(struct synthvid *v)
{
	v->dirty = v->geo.valid;
	v->dirt = (struct synthvid_rect){ 0, 0, (int32_t)(v->geo.valid ? v->geo.width : 0),
					  (int32_t)(v->geo.valid ? v->geo.height : 0) };
	vid_notify(v->d);
}

/* What a restored state must be (the file is host input): NULL when s fits d, else why not. */
static const char *vid_restore_check(const struct console_dev *d, const struct savestate_synthvid *s)
{
	const char *why = NULL;
	bool open = d->chan != NULL;
	if (s->version && s->version != SYNTHVID_VERSION_WIN10 && s->version != SYNTHVID_VERSION_WIN8)
		return "an unknown protocol version";
	if ((s->version || s->announces) && !open)
		return "a connected driver on a channel that is closed";
	if (s->vram_set > 1 || s->vram_mapped > 1 || s->announces > 1 || s->fw_phase > 1 || s->fw_session > 1 ||
	    s->geo_active > 1 || s->ptr_visible > 1 || s->ptr_shape > 1 || s->reserved)
		return "a flag out of range";
	if (s->vram_mapped != (s->vram_set && d->host.map_ram) || (!s->vram_set && s->vram_gpa))
		return "a VRAM mapping this host would not have made";
	if (s->vram_set && vmdev_mmio_check(&d->host, s->vram_gpa, SYNTHVID_VRAM_SIZE, &why))
		return why;
	if (s->ptr_w > SYNTHVID_CURSOR_MAX_X || s->ptr_h > SYNTHVID_CURSOR_MAX_Y || s->ptr_hot_x > s->ptr_w ||
	    s->ptr_hot_y > s->ptr_h || (s->ptr_shape && (!s->ptr_w || !s->ptr_h)))
		return "a bad pointer shape";
	return NULL;
}

/* After the VMBus restore reopened the channel (vid_opened ran). The VRAM is mapped again where the
 * guest put it; the machine then loads its contents (the DEVMEM section), and the display is told
 * that the whole screen is new. */
static int vid_restore(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct synthvid *v = state;
	struct console_dev *d = v->d;
	struct savestate_synthvid *s = NULL;
	int r = console_dev_restore_len(d, len, sizeof(*s), err, errlen);
	if (r || !d)
		return r;
	if (!(s = malloc(sizeof(*s))))
		return -ENOMEM;
	memcpy(s, buf, sizeof(*s));
	pthread_mutex_lock(&d->lock);
	const char *why = vid_restore_check(d, s);
	void *host = NULL;
	if (!why && s->vram_mapped && (r = d->host.map_ram(d->host.opaque, s->vram_gpa, SYNTHVID_VRAM_SIZE, &host)))
		why = "the VRAM cannot be mapped where it was";
	if (why) {
		pthread_mutex_unlock(&d->lock);
		snprintf(err, errlen, "bad state: %s", why);
		free(s);
		return -EINVAL;
	}
	v->version = s->version;
	v->vram_set = s->vram_set;
	v->vram_gpa = s->vram_gpa;
	v->vram_mapped = s->vram_mapped;
	v->vram = host;
	v->geo = (struct synthvid_geometry){ s->geo_active, s->geo_vram_offset, s->geo_depth_bits, s->geo_width,
					     s->geo_height, s->geo_pitch, false };
	v->geo.valid = vid_geometry_valid(&v->geo);
	v->ptr_visible = s->ptr_visible;
	v->ptr_x = s->ptr_x;
	v->ptr_y = s->ptr_y;
	v->ptr_w = s->ptr_w;
	v->ptr_h = s->ptr_h;
	v->ptr_hot_x = s->ptr_hot_x;
	v->ptr_hot_y = s->ptr_hot_y;
	v->ptr_shape = s->ptr_shape;
	v->ptr_shape_seq = s->ptr_shape_seq + 1; /* a display redraws the pointer */
	memset(v->ptr_argb, 0, sizeof(v->ptr_argb));
	if (v->ptr_shape)
		memcpy(v->ptr_argb, s->ptr_argb, (size_t)v->ptr_w * v->ptr_h * 4);
	v->announces = s->announces;
	v->fw_phase = s->fw_phase;
	v->fw_session = s->fw_session;
	vid_all_dirty(v);
	pthread_mutex_unlock(&d->lock);
	free(s);
	return 0;
}

void synthvid_screen_changed(struct synthvid *v)
{
	if (!v->d)
		return;
	pthread_mutex_lock(&v->d->lock);
	vid_all_dirty(v);
	pthread_mutex_unlock(&v->d->lock);
}

const struct vmdev_class synthvid_class = {
	.name = "video",
	.class_guid = SYNTHVID_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &console_settings_class,
	.create = vid_create,
	.destroy = vid_destroy,
	.status = vid_status,
	.verbs = vid_verbs,
	.save = vid_save,
	.restore = vid_restore,
};
