/* The VM's screen, keyboard and pointer over RFB (VNC), and a web console, in gen2vm's own process,
 * with Debian's libvncserver (and its WebSocket support and HTTP server serving Debian's noVNC).
 *
 *  --vnc unix:PATH | HOST:PORT    an RFB server (several viewers at once); HOST an IPv4 address or
 *                                 localhost. A HOST outside 127.0.0.0/8 needs --vnc-password-file.
 *  --vnc-password-file FILE       VNC authentication with the file's first line (VNC uses only its
 *                                 first 8 bytes).
 *  --web-console HOST:PORT        noVNC (/usr/share/novnc) over HTTP on HOST:PORT (a small static
 *                                 file server of ours: libvncserver's own takes one connection at a
 *                                 time, and browsers load noVNC's modules over several); the page
 *                                 connects by WebSocket (libvncserver's) to the RFB port: --vnc's TCP
 *                                 port, or one chosen in 5900..5999 on HOST when --vnc is a unix
 *                                 socket or absent.
 * All need --synthetic-console: the screen is the synthetic video device's VRAM (synthvid), keys go
 * to synthkbd, the pointer to synthmouse.
 *
 * THREADS. Everything RFB runs on one thread of its own: it is woken by an eventfd that synthvid
 * writes on the clean -> dirty edge, copies what changed under the device lock into its own frame
 * and sends it from there, so a vCPU or the VMBus thread never waits for a viewer. An idle screen
 * costs nothing: with no viewer the thread sleeps until the guest announces a change (the frame is
 * kept up to date, so a new viewer sees it at once). With a viewer, while the screen is drawn untold
 * (the firmware's, where boot loaders write its frame buffer; Linux efifb; a driver without DIRT), it
 * also compares the VRAM against its frame ten times a second, reading KVM's dirty log first (an
 * unchanged screen: one ioctl); once the OS's driver sends DIRT there is no tick at all. Input reaches the guest's drivers without waiting (a full ring drops the event);
 * before a driver connects events are dropped. */
#ifndef GEN2VM_UI_VNC_H
#define GEN2VM_UI_VNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct synthvid;
struct synthkbd;
struct synthmouse;

enum vnc_addr_kind { VNC_ADDR_NONE, VNC_ADDR_TCP, VNC_ADDR_UNIX };

struct vnc_addr {
	enum vnc_addr_kind kind;
	char host[16];  /* TCP: the IPv4 address, dotted */
	uint16_t port;  /* TCP: 1..65535 */
	char path[108]; /* UNIX: the socket path (sun_path's size) */
};

struct vnc_config {
	struct vnc_addr vnc;       /* --vnc */
	const char *password_file; /* --vnc-password-file, or NULL */
	struct vnc_addr web;       /* --web-console (TCP only) */
};

/* Where Debian's novnc package puts the page. */
#define VNC_NOVNC_DIR "/usr/share/novnc"

/* Parses spec as `unix:PATH` (when allow_unix) or `HOST:PORT` into *a. what names the option in the
 * message ("--vnc", "\"web_console\""). 0 or -EINVAL with a one-line err. Pure. */
int vnc_addr_parse(const char *what, const char *spec, bool allow_unix, struct vnc_addr *a, char *err, size_t errlen);

/* Whether a is reachable only from this host: a unix socket, or TCP in 127.0.0.0/8. */
bool vnc_addr_is_loopback(const struct vnc_addr *a);

/* Reads a VNC password file: a regular, readable, non-empty file; the password is its first line
 * (without the line end), at most pwlen - 1 bytes. 0 or -errno with a one-line err naming the file
 * and the fix. */
int vnc_password_file_read(const char *path, char *pw, size_t pwlen, char *err, size_t errlen);

/* Checks the settings together: a listener outside loopback needs a password file (read and checked
 * here), a password file or a web console needs something to protect or serve, and all need the
 * synthetic console. 0 or -EINVAL with err. */
int vnc_config_validate(const struct vnc_config *c, bool synthetic_console, char *err, size_t errlen);

/* A viewer's pointer at (x, y) on a w x h frame, as synthmouse's absolute 0..SYNTHMOUSE_AXIS_MAX
 * (the last pixel maps to the maximum; outside the frame is clamped). Pure. */
void vnc_pointer_scale(int x, int y, uint32_t w, uint32_t h, uint16_t *ax, uint16_t *ay);

/* An RFB button mask as synthmouse's buttons (bits 0..2) and wheel step (button 4 up: +1, 5 down: -1). */
void vnc_buttons_convert(int mask, uint8_t *buttons, int8_t *wheel);

/* The web console's answer to an HTTP request (req, len bytes, at least its first line): the file's
 * path below VNC_NOVNC_DIR in path ("/" is "/vnc.html"; the query dropped) and the returned
 * Content-Type; NULL for anything but a GET of a plain path (no "..", "//", "%", "\\" or control
 * characters). Pure. */
const char *vnc_http_target(const char *req, size_t len, char *path, size_t pathlen);
/* Whether a whole request head (NUL-terminated) asks for a WebSocket upgrade: a header line
 * "Upgrade: websocket" in any case, after the request line. Such a request on the web console's port
 * is handed, unread, to the RFB server (the page's WebSocket and its files share one port). */
bool vnc_http_is_websocket(const char *req);

struct vnc;

/* Starts the server for c (validated) on its own thread, the devices being those of the running VM
 * (they outlive it). 0 or -errno with err (a port in use, noVNC missing...). */
int vnc_start(struct vnc **out, const struct vnc_config *c, struct synthvid *vid, struct synthkbd *kbd,
	      struct synthmouse *mouse, char *err, size_t errlen);

/* Between two instances of the VM (a guest reset rebuilds the machine): vnc_detach lets go of the
 * devices before they are destroyed (the viewers stay connected and keep the last frame; their keys
 * and pointer are dropped), vnc_attach gives the new instance's devices (its screen is then taken
 * whole). Any thread but the server's own; vnc_detach(NULL) is fine. */
void vnc_detach(struct vnc *v);
void vnc_attach(struct vnc *v, struct synthvid *vid, struct synthkbd *kbd, struct synthmouse *mouse);

/* Stops the thread, disconnects the viewers, removes a unix socket and frees. NULL is fine. */
void vnc_stop(struct vnc *v);

/* How many viewers are connected now. Any thread. */
unsigned vnc_viewers(struct vnc *v);

/* Its part of `status`: "vnc" in o (address, web console URL, viewers) and a phrase in text. */
void vnc_status(struct vnc *v, struct json_object *o, char *text, size_t len);

/* The control verb `vnc`: where it listens, the web console's URL, the viewers connected. */
int vnc_verb(void *opaque, int argc, char **argv, char *reply, size_t len);

#endif
