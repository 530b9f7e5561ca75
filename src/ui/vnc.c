/* The VNC server and web console: see vnc.h. libvncserver is used as a library on one thread of
 * ours (rfbProcessEvents with a zero timeout after our own poll), never with its own threads. */
#include "ui/vnc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rfb/rfb.h>

#include "devices/synthkbd.h"
#include "devices/synthmouse.h"
#include "devices/synthvid.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

/* ---- settings (pure) ---- */

int vnc_addr_parse(const char *what, const char *spec, bool allow_unix, struct vnc_addr *a, char *err, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	const char *want = allow_unix ? "unix:PATH or HOST:PORT (e.g. 127.0.0.1:5900)" : "HOST:PORT (e.g. 127.0.0.1:6080)";
	if (allow_unix && !strncmp(spec, "unix:", 5)) {
		const char *path = spec + 5;
		if (!*path || strlen(path) >= sizeof(a->path)) {
			snprintf(err, errlen, "%s '%s': the socket path must be 1 to %zu bytes", what, text_show(spec),
				 sizeof(a->path) - 1);
			return -EINVAL;
		}
		a->kind = VNC_ADDR_UNIX;
		snprintf(a->path, sizeof(a->path), "%s", path);
		return 0;
	}
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= 64) {
		snprintf(err, errlen, "%s '%s': expected %s", what, text_show(spec), want);
		return -EINVAL;
	}
	char host[64];
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof(host), "127.0.0.1");
	struct in_addr in;
	if (inet_pton(AF_INET, host, &in) != 1) {
		snprintf(err, errlen, "%s '%s': the host must be an IPv4 address or localhost (expected %s)", what,
			 text_show(spec), want);
		return -EINVAL;
	}
	char *end;
	const char *ps = colon + 1;
	long port = strtol(ps, &end, 10);
	if (!*ps || *end || port < 1 || port > 65535 || *ps == '+' || *ps == '-' || *ps == ' ') {
		snprintf(err, errlen, "%s '%s': the port must be a number from 1 to 65535", what, text_show(spec));
		return -EINVAL;
	}
	a->kind = VNC_ADDR_TCP;
	inet_ntop(AF_INET, &in, a->host, sizeof(a->host));
	a->port = (uint16_t)port;
	return 0;
}

bool vnc_addr_is_loopback(const struct vnc_addr *a)
{
	if (a->kind == VNC_ADDR_UNIX)
		return true;
	if (a->kind != VNC_ADDR_TCP)
		return false;
	struct in_addr in;
	return inet_pton(AF_INET, a->host, &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

int vnc_password_file_read(const char *path, char *pw, size_t pwlen, char *err, size_t errlen)
{
	uint8_t *data;
	size_t len;
	char why[200];
	int r = file_read_user(path, 4096, &data, &len, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "--vnc-password-file %s: %s (give a readable regular file whose first line is the password)",
			 text_show(path), why);
		return r;
	}
	size_t n = 0;
	while (n < len && data[n] != '\n' && data[n] != '\r')
		n++;
	if (n == 0 || memchr(data, 0, n)) {
		free(data);
		snprintf(err, errlen, "--vnc-password-file %s: %s (write the password on its first line)", text_show(path),
			 n ? "the password holds a NUL byte" : "the first line is empty");
		return -EINVAL;
	}
	if (n >= pwlen) {
		free(data);
		snprintf(err, errlen, "--vnc-password-file %s: the password is longer than %zu bytes (VNC uses only 8)",
			 text_show(path), pwlen - 1);
		return -EINVAL;
	}
	memcpy(pw, data, n);
	pw[n] = 0;
	free(data);
	return 0;
}

int vnc_config_validate(const struct vnc_config *c, bool synthetic_console, char *err, size_t errlen)
{
	bool any = c->vnc.kind != VNC_ADDR_NONE || c->web.kind != VNC_ADDR_NONE;
	if (!any) {
		if (c->password_file) {
			snprintf(err, errlen, "--vnc-password-file needs --vnc or --web-console");
			return -EINVAL;
		}
		return 0;
	}
	const char *opt = c->vnc.kind != VNC_ADDR_NONE ? "--vnc" : "--web-console";
	if (!synthetic_console) {
		snprintf(err, errlen, "%s shows the synthetic video device: add --synthetic-console", opt);
		return -EINVAL;
	}
	if (c->web.kind != VNC_ADDR_NONE && c->web.kind != VNC_ADDR_TCP) {
		snprintf(err, errlen, "--web-console: expected HOST:PORT");
		return -EINVAL;
	}
	if (c->vnc.kind == VNC_ADDR_TCP && c->web.kind == VNC_ADDR_TCP && c->vnc.port == c->web.port) {
		snprintf(err, errlen, "--web-console %s:%u: the same port as --vnc; give another one", c->web.host, c->web.port);
		return -EINVAL;
	}
	const struct vnc_addr *open = !vnc_addr_is_loopback(&c->vnc) && c->vnc.kind != VNC_ADDR_NONE ? &c->vnc
				      : !vnc_addr_is_loopback(&c->web) && c->web.kind != VNC_ADDR_NONE ? &c->web
													  : NULL;
	if (open && !c->password_file) {
		snprintf(err, errlen, "%s %s:%u: a listener outside loopback needs --vnc-password-file (or listen on 127.0.0.1)",
			 open == &c->vnc ? "--vnc" : "--web-console", open->host, open->port);
		return -EINVAL;
	}
	if (c->password_file) {
		char pw[256];
		int r = vnc_password_file_read(c->password_file, pw, sizeof(pw), err, errlen);
		memset(pw, 0, sizeof(pw));
		if (r)
			return r;
	}
	return 0;
}

void vnc_pointer_scale(int x, int y, uint32_t w, uint32_t h, uint16_t *ax, uint16_t *ay)
{
	int64_t cx = x < 0 ? 0 : x, cy = y < 0 ? 0 : y;
	if (w < 2 || h < 2) {
		*ax = *ay = 0;
		return;
	}
	if (cx > (int64_t)w - 1)
		cx = (int64_t)w - 1;
	if (cy > (int64_t)h - 1)
		cy = (int64_t)h - 1;
	/* Rounded to the nearest step: pixel w - 1 is the axis maximum, pixel 0 its minimum. */
	*ax = (uint16_t)((cx * SYNTHMOUSE_AXIS_MAX + ((int64_t)w - 1) / 2) / ((int64_t)w - 1));
	*ay = (uint16_t)((cy * SYNTHMOUSE_AXIS_MAX + ((int64_t)h - 1) / 2) / ((int64_t)h - 1));
}

void vnc_buttons_convert(int mask, uint8_t *buttons, int8_t *wheel)
{
	/* RFB: bit 0 left, 1 middle, 2 right; synthmouse: bit 0 left, 1 right, 2 middle. */
	*buttons = (uint8_t)((mask & 1) | (mask & 4 ? 2 : 0) | (mask & 2 ? 4 : 0));
	*wheel = mask & 8 ? 1 : mask & 16 ? -1 : 0;
}

const char *vnc_http_target(const char *req, size_t len, char *path, size_t pathlen)
{
	/* "GET /path[?query] HTTP/1.x": the first line only. */
	const char *end = memchr(req, '\n', len);
	if (!end || len < 4 || memcmp(req, "GET ", 4))
		return NULL;
	const char *p = req + 4, *q = p;
	while (q < end && *q != ' ' && *q != '?' && *q != '#')
		q++;
	size_t n = (size_t)(q - p);
	if (!n || *p != '/' || n >= pathlen)
		return NULL;
	memcpy(path, p, n);
	path[n] = 0;
	if (!strcmp(path, "/"))
		snprintf(path, pathlen, "/vnc.html");
	/* Only plain names below the page's directory: no "..", no percent escapes (noVNC's own
	 * files need none), no control characters or backslashes. */
	if (strstr(path, "..") || strstr(path, "//"))
		return NULL;
	for (const char *c = path; *c; c++)
		if ((unsigned char)*c < 0x21 || *c == '%' || *c == '\\' || (unsigned char)*c >= 0x7f)
			return NULL;
	const char *dot = strrchr(path, '.');
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript" }, { ".css", "text/css" },
		{ ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
		{ ".json", "application/json" }, { ".woff", "font/woff" }, { ".woff2", "font/woff2" },
		{ ".ttf", "font/ttf" }, { ".mp3", "audio/mpeg" }, { ".oga", "audio/ogg" }, { ".ogg", "audio/ogg" },
	};
	for (size_t i = 0; dot && !strchr(dot, '/') && i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(dot, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}

/* ---- the server ---- */

#define VNC_PLACEHOLDER_W 640u
#define VNC_PLACEHOLDER_H 480u
#define VNC_COMPARE_MS 100 /* the compare of unannounced drawing: 10 Hz, only with a viewer */
/* The web console's HTTP server: a page loads some 60 files, several at once (a browser opens parallel
 * connections, which libvncserver's own HTTP server cannot take: it drops a connection when the
 * next one comes). Each connection: one GET, its file, closed. */
#define VNC_HTTP_CONNS 16
#define VNC_HTTP_TIMEOUT_MS 10000
#define VNC_HTTP_FILE_MAX (4u << 20)

struct vnc_http {
	int fd; /* -1: free */
	char req[2048];
	size_t rlen;
	uint8_t *out;
	size_t olen, off;
	uint64_t deadline;
	uint64_t repeek; /* a partial request is looked at again then (0: wait for input) */
};

struct vnc {
	struct vnc_config cfg;
	char password[256];
	char *passwords[2]; /* libvncserver's list form: { password, NULL } */
	/* The running VM's devices; NULL between two VM instances (a guest reset): the server and its
	 * viewers outlive the VM instance, as Hyper-V's console connection outlives a reboot. The
	 * thread uses them only under dev_lock; vnc_attach/vnc_detach change them under it. */
	pthread_mutex_t dev_lock;
	struct synthvid *vid;
	struct synthkbd *kbd;
	struct synthmouse *mouse;
	bool attached_anew; /* the thread takes the whole new screen */
	rfbScreenInfoPtr screen;
	rfbCursorPtr default_cursor;
	uint8_t *fb;      /* what viewers see, SYNTHVID_VRAM_SIZE bytes (any valid geometry fits) */
	uint8_t *scratch; /* the compare's copy of the VRAM */
	uint32_t w, h;
	bool guest_shown; /* fb shows the guest's screen (else the placeholder) */
	uint32_t cursor_seq;
	bool cursor_custom;
	int efd, stopfd, unix_fd;
	int http_fd; /* the web console's listener, -1: none */
	struct vnc_http http[VNC_HTTP_CONNS];
	pthread_t thread;
	bool thread_started;
	int prev_mask;
	unsigned shift_held; /* bit 0 left, bit 1 right */
	_Atomic unsigned viewers;
	uint16_t rfb_port; /* the TCP port viewers and the web page use (0: none) */
	char where[200];   /* the --vnc address as given */
	char url[300];     /* the web console's URL, "" without */
};

static void vnc_lib_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vnc_lib_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	log_debug("vnc: %s", buf);
}

/* After libvncserver (re)initialised the format (rfbGetScreen, rfbNewFramebuffer): synthvid's pixels
 * are 32-bit little-endian XRGB (B, G, R, X in memory). Viewers' translation follows the format. */
static void vnc_format_set(struct vnc *v)
{
	rfbPixelFormat *f = &v->screen->serverFormat;
	f->redShift = 16;
	f->greenShift = 8;
	f->blueShift = 0;
	rfbClientIteratorPtr it = rfbGetClientIterator(v->screen);
	rfbClientPtr cl;
	while ((cl = rfbClientIteratorNext(it)))
		v->screen->setTranslateFunction(cl);
	rfbReleaseClientIterator(it);
}

static void vnc_resize(struct vnc *v, uint32_t w, uint32_t h)
{
	rfbNewFramebuffer(v->screen, (char *)v->fb, (int)w, (int)h, 8, 3, 4);
	vnc_format_set(v);
	v->w = w;
	v->h = h;
}

/* Before the guest has a screen (or after it closed it): a dark 640x480 frame. */
static void vnc_placeholder(struct vnc *v)
{
	uint32_t *px = (uint32_t *)v->fb;
	for (size_t i = 0; i < (size_t)VNC_PLACEHOLDER_W * VNC_PLACEHOLDER_H; i++)
		px[i] = 0x00202830u;
	v->guest_shown = false;
	vnc_resize(v, VNC_PLACEHOLDER_W, VNC_PLACEHOLDER_H);
}

/* Takes what the guest announced (all: the whole screen) into fb and tells the viewers. */
static void vnc_refresh(struct vnc *v, bool all)
{
	struct synthvid_geometry g;
	struct synthvid_rect r;
	int n = synthvid_display_take(v->vid, v->fb, SYNTHVID_VRAM_SIZE, all, &g, &r);
	if (n < 0) {
		if (v->guest_shown)
			vnc_placeholder(v);
		return;
	}
	if (!v->guest_shown || g.width != v->w || g.height != v->h) {
		if (!all && (n == 0 || r.x1 || r.y1 || (uint32_t)r.x2 != g.width || (uint32_t)r.y2 != g.height)) {
			vnc_refresh(v, true);
			return;
		}
		v->guest_shown = true;
		vnc_resize(v, g.width, g.height); /* marks everything modified */
		return;
	}
	if (n == 1)
		rfbMarkRectAsModified(v->screen, r.x1, r.y1, r.x2, r.y2);
}

/* Drawing the guest did not announce: the VRAM against fb, the changed rows' bounding box copied.
 * Only the rows the guest wrote since the last compare (KVM's dirty log of the VRAM: an idle screen
 * costs one ioctl, no copy), or all of them when full or where the host keeps no log. */
static void vnc_compare(struct vnc *v, bool full)
{
	struct synthvid_geometry g;
	struct synthvid_rect r;
	int n = full ? -ENOTSUP : synthvid_display_written(v->vid, v->scratch, SYNTHVID_VRAM_SIZE, &g, &r);
	if (n == 0)
		return;
	if (n < 0 && n != -EAGAIN)
		n = synthvid_display_take(v->vid, v->scratch, SYNTHVID_VRAM_SIZE, true, &g, &r);
	if (n < 0 || !v->guest_shown || g.width != v->w || g.height != v->h) {
		if (n >= 0 || v->guest_shown)
			vnc_refresh(v, true);
		return;
	}
	size_t stride = (size_t)g.width * 4;
	int32_t y1 = -1, y2 = -1, x1 = (int32_t)g.width, x2 = 0;
	for (uint32_t y = (uint32_t)r.y1; y < (uint32_t)r.y2; y++) {
		const uint32_t *a = (const uint32_t *)(v->scratch + y * stride), *b = (const uint32_t *)(v->fb + y * stride);
		if (!memcmp(a, b, stride))
			continue;
		int32_t l = 0, rr = (int32_t)g.width;
		while (a[l] == b[l])
			l++;
		while (a[rr - 1] == b[rr - 1])
			rr--;
		if (y1 < 0)
			y1 = (int32_t)y;
		y2 = (int32_t)y + 1;
		x1 = l < x1 ? l : x1;
		x2 = rr > x2 ? rr : x2;
		memcpy(v->fb + y * stride, v->scratch + y * stride, stride);
	}
	if (y1 >= 0)
		rfbMarkRectAsModified(v->screen, x1, y1, x2, y2);
}

/* The guest's pointer shape as a rich cursor with alpha, or the default arrow without one. */
static void vnc_cursor_update(struct vnc *v)
{
	static struct synthvid_pointer p; /* 36 KiB: not on the stack; only this thread uses it */
	if (!synthvid_display_pointer(v->vid, &p) || p.seq == v->cursor_seq)
		return;
	v->cursor_seq = p.seq;
	if (!p.shape) {
		if (v->cursor_custom)
			rfbSetCursor(v->screen, v->default_cursor);
		v->cursor_custom = false;
		return;
	}
	size_t n = (size_t)p.w * p.h;
	char *src = malloc(n + 1), *mask = malloc(n + 1);
	unsigned char *rich = malloc(n * 4), *alpha = malloc(n);
	if (!src || !mask || !rich || !alpha)
		goto fail;
	/* RFB's cursor mask is one bit a pixel: the mostly opaque ones are shown. Linux's 1x1 shape of
	 * alpha 1 (its way of hiding the host's pointer) is then hidden, as on Hyper-V. */
	for (size_t i = 0; i < n; i++) {
		src[i] = 'x';
		alpha[i] = p.argb[i * 4 + 3];
		mask[i] = alpha[i] >= 0x80 ? 'x' : ' ';
	}
	src[n] = mask[n] = 0;
	rfbCursorPtr c = rfbMakeXCursor((int)p.w, (int)p.h, src, mask);
	free(src);
	free(mask);
	src = mask = NULL;
	if (!c)
		goto fail;
	memcpy(rich, p.argb, n * 4); /* B, G, R, A: the server format with the alpha byte as padding */
	c->richSource = rich;
	c->alphaSource = alpha;
	c->cleanupRichSource = TRUE;
	c->xhot = (unsigned short)(p.hot_x < p.w ? p.hot_x : p.w - 1);
	c->yhot = (unsigned short)(p.hot_y < p.h ? p.hot_y : p.h - 1);
	rfbSetCursor(v->screen, c); /* frees our previous one (cleanup set), never the default */
	v->cursor_custom = true;
	return;
fail:
	free(src);
	free(mask);
	free(rich);
	free(alpha);
	log_warn("vnc: out of memory for the pointer shape");
}

static void vnc_key(rfbBool down, rfbKeySym keysym, rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;
	if (keysym == 0xffe1 || keysym == 0xffe2) {
		unsigned bit = keysym == 0xffe1 ? 1u : 2u;
		v->shift_held = down ? v->shift_held | bit : v->shift_held & ~bit;
	}
	struct synthkbd_key k;
	int shift;
	if (!v->kbd)
		return; /* between two VM instances */
	if (!synthkbd_key_of_keysym((uint32_t)keysym, &k, &shift)) {
		log_debug("vnc: keysym 0x%lx has no key on the US layout; dropped", (unsigned long)keysym);
		return;
	}
	int r;
	if (down && shift == 1 && !v->shift_held) {
		/* A shifted character from a viewer that sent no Shift (noVNC, xdotool type): shift it here. */
		r = synthkbd_send_scancode(v->kbd, 0x2a, false, false, false);
		r = r ? r : synthkbd_send_scancode(v->kbd, k.make, k.e0, false, false);
		r = r ? r : synthkbd_send_scancode(v->kbd, 0x2a, false, false, true);
	} else {
		r = synthkbd_send_scancode(v->kbd, k.make, k.e0, false, !down);
	}
	if (r)
		log_debug("vnc: a key event dropped: %s", strerror(-r));
}

static void vnc_pointer(int mask, int x, int y, rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;
	uint16_t ax, ay;
	uint8_t buttons;
	int8_t wheel;
	vnc_pointer_scale(x, y, v->w, v->h, &ax, &ay);
	vnc_buttons_convert(mask, &buttons, &wheel);
	if ((v->prev_mask & 24) == (mask & 24))
		wheel = 0; /* a wheel step is the button's press; its release and held repeats are none */
	v->prev_mask = mask;
	int r = v->mouse ? synthmouse_send(v->mouse, ax, ay, buttons, wheel) : -ENODEV;
	if (r)
		log_debug("vnc: a pointer event dropped: %s", strerror(-r));
	rfbDefaultPtrAddEvent(mask, x, y, cl);
}

static void vnc_client_gone(rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;
	atomic_fetch_sub(&v->viewers, 1);
#ifdef LIBVNCSERVER_WITH_WEBSOCKETS
	/* libvncserver 0.9.14 (Debian 12) never frees a WebSocket viewer's context (fixed upstream after
	 * it, "Fix memory leak on client disconnect"). The hook runs after the socket closed and nothing
	 * reads the context later; NULL keeps a fixed library from freeing it twice. */
	free(cl->wsctx);
	cl->wsctx = NULL;
#endif
	log_info("vnc: a viewer left (%s)", cl->host ? cl->host : "?");
}

static enum rfbNewClientAction vnc_new_client(rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;
	atomic_fetch_add(&v->viewers, 1);
	cl->clientGoneHook = vnc_client_gone;
	log_info("vnc: a viewer connected (%s)", cl->host ? cl->host : "?");
	return RFB_CLIENT_ACCEPT;
}

static void vnc_http_close(struct vnc_http *h)
{
	if (h->fd >= 0)
		close(h->fd);
	free(h->out);
	memset(h, 0, sizeof(*h));
	h->fd = -1;
}

static void vnc_http_accept(struct vnc *v)
{
	int fd = accept4(v->http_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (unsigned i = 0; i < VNC_HTTP_CONNS; i++)
		if (v->http[i].fd < 0) {
			v->http[i].fd = fd;
			v->http[i].deadline = clock_mono_ms() + VNC_HTTP_TIMEOUT_MS;
			return;
		}
	close(fd); /* all busy: the browser tries again */
}

/* The response to a whole request: the file, or 404 / 400. */
static void vnc_http_answer(struct vnc_http *h)
{
	char path[256], full[512];
	const char *type = vnc_http_target(h->req, h->rlen, path, sizeof(path));
	uint8_t *data = NULL;
	size_t len = 0;
	if (type) {
		snprintf(full, sizeof(full), "%s%s", VNC_NOVNC_DIR, path);
		char why[128];
		if (file_read_user(full, VNC_HTTP_FILE_MAX, &data, &len, why, sizeof(why))) {
			log_debug("vnc: web console: %s: %s", path, why);
			data = NULL;
		}
	}
	char head[256];
	int n = data ? snprintf(head, sizeof(head),
				"HTTP/1.0 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-cache\r\n"
				"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
				type, len)
		     : snprintf(head, sizeof(head), "HTTP/1.0 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
				type ? "404 Not Found" : "400 Bad Request");
	h->out = malloc((size_t)n + len);
	if (h->out) {
		memcpy(h->out, head, (size_t)n);
		if (data)
			memcpy(h->out + n, data, len);
		h->olen = (size_t)n + len;
	}
	free(data);
}

bool vnc_http_is_websocket(const char *req)
{
	/* The request's headers (NUL-terminated): an "Upgrade: websocket" line, any case and spacing. */
	for (const char *l = strchr(req, '\n'); l && l[1] && l[1] != '\r' && l[1] != '\n'; l = strchr(l + 1, '\n')) {
		const char *p = l + 1;
		if (strncasecmp(p, "upgrade:", 8))
			continue;
		for (p += 8; *p == ' ' || *p == '\t'; p++)
			;
		if (!strncasecmp(p, "websocket", 9))
			return true;
	}
	return false;
}

/* The page's WebSocket comes to this port as well, so the browser never meets libvncserver's own
 * detection of WebSocket viewers on the RFB port: that one waits only 100 ms for the request's first
 * bytes and takes a slower browser (Chromium in an emulated machine) for a plain VNC viewer. Here the
 * request is only peeked at until it is whole; a WebSocket upgrade is then handed to libvncserver
 * with its request still unread, which its detection finds at once. */
static void vnc_http_io(struct vnc *v, struct vnc_http *h)
{
	if (!h->out) {
		ssize_t r = recv(h->fd, h->req, sizeof(h->req) - 1, MSG_PEEK | MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			vnc_http_close(h);
			return;
		}
		h->rlen = r > 0 ? (size_t)r : 0;
		h->req[h->rlen] = 0;
		/* memmem: a request may hold NUL bytes (then it is refused, but at once). */
		if (!memmem(h->req, h->rlen, "\r\n\r\n", 4) && !memmem(h->req, h->rlen, "\n\n", 2) &&
		    h->rlen < sizeof(h->req) - 1) {
			h->repeek = clock_mono_ms() + 20; /* the rest is still on its way: no busy loop on POLLIN */
			return;
		}
		if (vnc_http_is_websocket(h->req) && !memcmp(h->req, "GET ", 4)) {
			int fd = h->fd;
			h->fd = -1;
			vnc_http_close(h);
			if (!rfbNewClient(v->screen, fd))
				close(fd);
			return;
		}
		if (recv(h->fd, h->req, h->rlen, MSG_DONTWAIT) != (ssize_t)h->rlen) {
			vnc_http_close(h);
			return;
		}
		vnc_http_answer(h);
		if (!h->out) {
			vnc_http_close(h);
			return;
		}
	}
	ssize_t w = send(h->fd, h->out + h->off, h->olen - h->off, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w < 0 && errno != EAGAIN && errno != EINTR) {
		vnc_http_close(h);
		return;
	}
	if (w > 0)
		h->off += (size_t)w;
	if (h->off == h->olen) {
		shutdown(h->fd, SHUT_WR);
		vnc_http_close(h);
	}
}

/* Whether a WebSocket viewer has input libvncserver read from its socket but not yet handled (the
 * socket then polls empty). */
static bool vnc_ws_pending(rfbScreenInfoPtr s)
{
	bool pending = false;
#ifdef LIBVNCSERVER_WITH_WEBSOCKETS
	rfbClientIteratorPtr it = rfbGetClientIterator(s);
	rfbClientPtr cl;
	while (!pending && (cl = rfbClientIteratorNext(it)))
		pending = cl->wsctx && cl->sock != RFB_INVALID_SOCKET && webSocketsHasDataInBuffer(cl);
	rfbReleaseClientIterator(it);
#else
	(void)s;
#endif
	return pending;
}

static void *vnc_thread(void *arg)
{
	struct vnc *v = arg;
	pthread_setname_np(pthread_self(), "vnc"); /* named in /proc (bench/console) */
	uint64_t next_compare = 0;
	bool full_due = true; /* the next compare looks at everything (a new viewer) */
	for (;;) {
		struct pollfd pf[FD_SETSIZE + 8 + VNC_HTTP_CONNS];
		nfds_t n = 0;
		pf[n++] = (struct pollfd){ v->stopfd, POLLIN, 0 };
		pf[n++] = (struct pollfd){ v->efd, POLLIN, 0 };
		if (v->unix_fd >= 0)
			pf[n++] = (struct pollfd){ v->unix_fd, POLLIN, 0 };
		/* libvncserver's own sockets: listeners and viewers (allFds), and its HTTP server's. */
		rfbScreenInfoPtr s = v->screen;
		for (int fd = 0; fd <= s->maxFd && fd < FD_SETSIZE; fd++)
			if (FD_ISSET(fd, &s->allFds))
				pf[n++] = (struct pollfd){ fd, POLLIN, 0 };
		nfds_t http0 = n;
		bool http_busy = false, repeek = false;
		if (v->http_fd >= 0) {
			pf[n++] = (struct pollfd){ v->http_fd, POLLIN, 0 };
			for (unsigned i = 0; i < VNC_HTTP_CONNS; i++) {
				struct vnc_http *h = &v->http[i];
				pf[n++] = (struct pollfd){ h->fd, (short)(h->fd < 0 ? 0 : h->out ? POLLOUT : h->repeek ? 0 : POLLIN), 0 };
				http_busy |= h->fd >= 0;
				repeek |= h->fd >= 0 && h->repeek;
			}
		}
		/* No timeout at all while nobody watches, or while the OS's video driver tells what it
		 * draws (DIRT): the thread wakes for the guest's DIRT, a viewer's bytes, a new viewer. The
		 * compare ticks only while someone watches and the guest draws untold: the firmware's
		 * screen, on which boot loaders such as GRUB write directly; the OS's efifb; a driver that
		 * sends no DIRT. Each tick is one look at KVM's dirty log (vnc_compare), ten a second.
		 * A new viewer gets one whole compare. */
		int timeout = -1;
		bool watching = atomic_load(&v->viewers) > 0;
		full_due |= !watching;
		pthread_mutex_lock(&v->dev_lock);
		bool compare = v->vid && watching && (full_due || !synthvid_display_announced(v->vid));
		pthread_mutex_unlock(&v->dev_lock);
		if (compare) {
			uint64_t now = clock_mono_ms();
			timeout = next_compare > now ? (int)(next_compare - now) : 0;
		}
		if (watching && vnc_ws_pending(s))
			timeout = 0; /* input a WebSocket viewer left decoded in libvncserver's buffer */
		if (http_busy && (timeout < 0 || timeout > 1000))
			timeout = 1000; /* the HTTP connections' deadlines */
		if (repeek && (timeout < 0 || timeout > 20))
			timeout = 20;
		int pr = poll(pf, n, timeout);
		if (pr < 0 && errno != EINTR) {
			log_error("vnc: poll: %s", strerror(errno));
			break;
		}
		if (pf[0].revents)
			break;
		pthread_mutex_lock(&v->dev_lock);
		if (pf[1].revents) {
			uint64_t c;
			if (read(v->efd, &c, sizeof(c)) < 0) {
				/* EAGAIN: someone else's wake-up was already taken */
			}
			if (v->vid) {
				if (v->attached_anew && v->cursor_custom) {
					/* The new instance has no pointer shape yet: the default arrow. */
					rfbSetCursor(v->screen, v->default_cursor);
					v->cursor_custom = false;
				}
				vnc_refresh(v, v->attached_anew);
				vnc_cursor_update(v);
				if (v->attached_anew)
					full_due = true;
				v->attached_anew = false;
			}
		}
		if (v->unix_fd >= 0 && pf[2].revents) {
			int fd = accept4(v->unix_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0 && !rfbNewClient(v->screen, fd))
				close(fd);
		}
		if (v->http_fd >= 0) {
			uint64_t now = clock_mono_ms();
			for (unsigned i = 0; i < VNC_HTTP_CONNS; i++) {
				struct vnc_http *h = &v->http[i];
				if (h->fd >= 0 && (pf[http0 + 1 + i].revents || (h->repeek && now >= h->repeek))) {
					h->repeek = 0;
					vnc_http_io(v, h);
				}
				if (h->fd >= 0 && now > h->deadline)
					vnc_http_close(h);
			}
			if (pf[http0].revents)
				vnc_http_accept(v);
		}
		if (compare && v->vid && clock_mono_ms() >= next_compare) {
			/* The first compare for a new viewer looks at everything (the log holds what
			 * was written since the last compare; a moved VRAM starts a new log). */
			vnc_compare(v, full_due);
			full_due = false;
			vnc_cursor_update(v);
			next_compare = clock_mono_ms() + VNC_COMPARE_MS;
		}
		rfbProcessEvents(v->screen, 0); /* viewers' keys and pointer go to the devices: under dev_lock */
		pthread_mutex_unlock(&v->dev_lock);
	}
	return NULL;
}

static int vnc_unix_listen(const char *path, char *err, size_t errlen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "--vnc unix:%s: %s", text_show(path), strerror(errno));
		return -errno;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* A stale socket of a previous run is replaced; anything else at the path is kept. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "--vnc unix:%s: %s", text_show(path), strerror(e));
		return -e;
	}
	return fd;
}

static int vnc_tcp_listen(const struct vnc_addr *a, char *err, size_t errlen)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "--web-console: %s", strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(a->port) };
	inet_pton(AF_INET, a->host, &sa.sin_addr);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 32)) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "--web-console %s:%u: %s", a->host, a->port, strerror(e));
		return -e;
	}
	return fd;
}

int vnc_start(struct vnc **out, const struct vnc_config *c, struct synthvid *vid, struct synthkbd *kbd,
	      struct synthmouse *mouse, char *err, size_t errlen)
{
	*out = NULL;
	if (c->web.kind == VNC_ADDR_TCP && access(VNC_NOVNC_DIR "/vnc.html", R_OK)) {
		snprintf(err, errlen, "--web-console: %s/vnc.html not found: install Debian's novnc package (apt-get install novnc)",
			 VNC_NOVNC_DIR);
		return -ENOENT;
	}
	struct vnc *v = calloc(1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "vnc: out of memory");
		return -ENOMEM;
	}
	v->cfg = *c;
	pthread_mutex_init(&v->dev_lock, NULL);
	v->vid = vid;
	v->kbd = kbd;
	v->mouse = mouse;
	v->efd = v->stopfd = v->unix_fd = v->http_fd = -1;
	for (unsigned i = 0; i < VNC_HTTP_CONNS; i++)
		v->http[i].fd = -1;
	int r = -ENOMEM;
	v->fb = calloc(1, SYNTHVID_VRAM_SIZE);
	v->scratch = calloc(1, SYNTHVID_VRAM_SIZE);
	if (!v->fb || !v->scratch) {
		snprintf(err, errlen, "vnc: out of memory");
		goto fail;
	}
	if (c->password_file && (r = vnc_password_file_read(c->password_file, v->password, sizeof(v->password), err, errlen)))
		goto fail;
	v->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	v->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->efd < 0 || v->stopfd < 0) {
		r = -errno;
		snprintf(err, errlen, "vnc: eventfd: %s", strerror(errno));
		goto fail;
	}
	if (c->vnc.kind == VNC_ADDR_UNIX && (r = v->unix_fd = vnc_unix_listen(c->vnc.path, err, errlen)) < 0)
		goto fail;
	rfbLog = vnc_lib_log;
	rfbErr = vnc_lib_log;
	int argc = 0;
	v->screen = rfbGetScreen(&argc, NULL, VNC_PLACEHOLDER_W, VNC_PLACEHOLDER_H, 8, 3, 4);
	if (!v->screen) {
		r = -ENOMEM;
		snprintf(err, errlen, "vnc: cannot create the RFB screen");
		goto fail;
	}
	rfbScreenInfoPtr s = v->screen;
	s->screenData = v;
	s->desktopName = "gen2vm";
	s->frameBuffer = (char *)v->fb;
	s->alwaysShared = TRUE; /* several viewers at once */
	s->deferUpdateTime = 0; /* sent at once: deferring would need timed wake-ups */
	s->maxClientWait = 5000; /* a viewer that stops reading or writing holds the thread at most 5 s */
	s->kbdAddEvent = vnc_key;
	s->ptrAddEvent = vnc_pointer;
	s->newClientHook = vnc_new_client;
	s->ipv6port = 0; /* IPv4 only: the address given is the only one listened on */
	v->default_cursor = s->cursor;
	struct in_addr in;
	if (c->vnc.kind == VNC_ADDR_TCP) {
		inet_pton(AF_INET, c->vnc.host, &in);
		s->listenInterface = in.s_addr;
		s->port = c->vnc.port;
		s->autoPort = FALSE;
	} else if (c->web.kind == VNC_ADDR_TCP) {
		/* The page needs a TCP port for its WebSocket: one on the web console's address. */
		inet_pton(AF_INET, c->web.host, &in);
		s->listenInterface = in.s_addr;
		s->autoPort = TRUE;
	} else {
		s->port = 0; /* a unix socket only: no TCP listener */
		s->autoPort = FALSE;
	}
	if (c->web.kind == VNC_ADDR_TCP && (r = v->http_fd = vnc_tcp_listen(&c->web, err, errlen)) < 0)
		goto fail;
	if (c->password_file) {
		v->passwords[0] = v->password;
		s->authPasswdData = v->passwords;
		s->passwordCheck = rfbCheckPasswordByList;
	}
	vnc_placeholder(v);
	rfbInitServer(s);
	if ((c->vnc.kind == VNC_ADDR_TCP || c->web.kind == VNC_ADDR_TCP) && s->listenSock == RFB_INVALID_SOCKET) {
		r = -EADDRINUSE;
		if (c->vnc.kind == VNC_ADDR_TCP)
			snprintf(err, errlen, "--vnc %s:%u: cannot listen there (in use, or not this host's address)",
				 c->vnc.host, c->vnc.port);
		else
			snprintf(err, errlen, "--web-console %s: no free port for its WebSocket in 5900..5999", c->web.host);
		goto fail;
	}
	v->rfb_port = s->listenSock != RFB_INVALID_SOCKET ? (uint16_t)s->port : 0;
	if (c->vnc.kind == VNC_ADDR_UNIX)
		snprintf(v->where, sizeof(v->where), "unix:%s", c->vnc.path);
	else if (c->vnc.kind == VNC_ADDR_TCP)
		snprintf(v->where, sizeof(v->where), "%s:%u", c->vnc.host, c->vnc.port);
	if (c->web.kind == VNC_ADDR_TCP)
		snprintf(v->url, sizeof(v->url), "http://%s:%u/vnc.html?autoconnect=1&host=%s&port=%u", c->web.host,
			 c->web.port, c->web.host, c->web.port);
	synthvid_display_notify(vid, v->efd);
	vnc_refresh(v, true); /* a guest already drawing (a restart of the display) */
	if ((r = -pthread_create(&v->thread, NULL, vnc_thread, v))) {
		synthvid_display_notify(vid, -1);
		snprintf(err, errlen, "vnc: cannot start its thread: %s", strerror(-r));
		goto fail;
	}
	v->thread_started = true;
	if (v->where[0])
		fprintf(stderr, "gen2vm: VNC on %s\n", v->where);
	if (v->url[0])
		fprintf(stderr, "gen2vm: web console: %s\n", v->url);
	*out = v;
	return 0;
fail:
	vnc_stop(v);
	return r;
}

void vnc_stop(struct vnc *v)
{
	if (!v)
		return;
	if (v->thread_started) {
		vnc_detach(v);
		uint64_t one = 1;
		if (write(v->stopfd, &one, sizeof(one)) < 0)
			log_warn("vnc: cannot wake its thread: %s", strerror(errno));
		pthread_join(v->thread, NULL);
	}
	if (v->screen) {
		rfbShutdownServer(v->screen, TRUE);
		/* Viewers' records go in the next processing round. */
		rfbProcessEvents(v->screen, 0);
		if (v->cursor_custom)
			rfbSetCursor(v->screen, v->default_cursor);
		rfbScreenCleanup(v->screen);
	}
	for (unsigned i = 0; i < VNC_HTTP_CONNS; i++)
		if (v->http[i].fd >= 0)
			vnc_http_close(&v->http[i]);
	if (v->http_fd >= 0)
		close(v->http_fd);
	if (v->unix_fd >= 0) {
		close(v->unix_fd);
		unlink(v->cfg.vnc.path);
	}
	if (v->efd >= 0)
		close(v->efd);
	if (v->stopfd >= 0)
		close(v->stopfd);
	memset(v->password, 0, sizeof(v->password));
	free(v->fb);
	free(v->scratch);
	pthread_mutex_destroy(&v->dev_lock);
	free(v);
}

void vnc_detach(struct vnc *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->dev_lock);
	if (v->vid)
		synthvid_display_notify(v->vid, -1);
	v->vid = NULL;
	v->kbd = NULL;
	v->mouse = NULL;
	pthread_mutex_unlock(&v->dev_lock);
}

void vnc_attach(struct vnc *v, struct synthvid *vid, struct synthkbd *kbd, struct synthmouse *mouse)
{
	pthread_mutex_lock(&v->dev_lock);
	v->vid = vid;
	v->kbd = kbd;
	v->mouse = mouse;
	v->attached_anew = true;
	v->cursor_seq = UINT32_MAX; /* the new device's first shape differs from it */
	pthread_mutex_unlock(&v->dev_lock);
	synthvid_display_notify(vid, v->efd);
	uint64_t one = 1;
	if (write(v->efd, &one, sizeof(one)) < 0)
		log_warn("vnc: cannot wake its thread: %s", strerror(errno));
}

unsigned vnc_viewers(struct vnc *v)
{
	return atomic_load(&v->viewers);
}

void vnc_status(struct vnc *v, struct json_object *o, char *text, size_t len)
{
	if (!v)
		return;
	unsigned viewers = atomic_load(&v->viewers);
	struct json_object *j = json_object_new_object();
	if (j) {
		if (v->where[0])
			json_object_object_add(j, "address", json_object_new_string(v->where));
		if (v->rfb_port)
			json_object_object_add(j, "port", json_object_new_int(v->rfb_port));
		if (v->url[0])
			json_object_object_add(j, "web_console", json_object_new_string(v->url));
		json_object_object_add(j, "viewers", json_object_new_int((int32_t)viewers));
		json_object_object_add(o, "vnc", j);
	}
	if (v->where[0])
		snprintf(text, len, "vnc %s (%u viewer%s)", v->where, viewers, viewers == 1 ? "" : "s");
	else
		snprintf(text, len, "web console %s (%u viewer%s)", v->url, viewers, viewers == 1 ? "" : "s");
}

int vnc_verb(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct vnc *v = opaque;
	if (argc != 1) {
		snprintf(reply, len, "usage: vnc");
		return -EINVAL;
	}
	if (!v) {
		snprintf(reply, len, "no VNC server (run with --vnc or --web-console)");
		return -ENODEV;
	}
	unsigned viewers = atomic_load(&v->viewers);
	int n = snprintf(reply, len, "listening on %s", v->where[0] ? v->where : "-");
	if (v->rfb_port && v->cfg.vnc.kind != VNC_ADDR_TCP && n > 0 && (size_t)n < len)
		n += snprintf(reply + n, len - (size_t)n, " (WebSocket port %u)", v->rfb_port);
	if (v->url[0] && n > 0 && (size_t)n < len)
		n += snprintf(reply + n, len - (size_t)n, "; web console %s", v->url);
	if (n > 0 && (size_t)n < len)
		snprintf(reply + n, len - (size_t)n, "; %u viewer%s connected%s", viewers, viewers == 1 ? "" : "s",
			 v->cfg.password_file ? "; password required" : "");
	return 0;
}
