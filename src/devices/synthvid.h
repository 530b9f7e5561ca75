/* The synthetic video device (class da0a7802-..., Linux's hyperv_drm and hyperv_fb): wire format in
 * include/gen2vm/proto/synthvid.h. The guest negotiates 3.5 or 3.2 (others
 * refused), asks for the supported resolutions (3.5), tells where its VRAM is (acknowledged with its
 * user_ctx), then the screen's geometry (situation update), pointer position and shape, and, once
 * the host's FEATURE_CHANGE asks for them (sent after the VRAM ack), dirty rectangles. The device
 * keeps the geometry, the VRAM GPA and one bounding rectangle of everything dirty since the host
 * last took it. Offered with --synthetic-console (src/devices/console.h) with
 * SYNTHVID_VRAM_MB in its offer's mmio_megabytes.
 *
 * The VRAM: the guest places it (vmbus_allocate_mmio) inside an MMIO window of VMOD's _CRS; a
 * location that is not page-aligned, not wholly in a window (vmdev_host.mmio) or over RAM is refused
 * (logged, not acknowledged: the guest's driver gives up). An accepted one is mapped as RAM through
 * vmdev_host.map_ram, so the guest draws without exits; a move maps the same memory at the new place.
 * A closed channel resets only the protocol (version, pointer): the VRAM stays mapped with the last
 * geometry, as the firmware's GOP frame buffer must outlive ExitBootServices for the OS's early
 * console (efifb); only a VRAM_LOCATION without a GPA unmaps it. Control verb: `screenshot FILE.png`
 * writes the screen (geometry from the last situation update) as an RGB PNG, also after the channel
 * closed.
 *
 * The firmware (firmware/video.c) is a client too: its Graphics Output Protocol puts the VRAM at the
 * start of the low MMIO window.
 *
 * A display (src/ui/vnc.c) reads the screen through synthvid_display_*: it is woken by an eventfd
 * when something is to be drawn, copies what changed under the device lock, and draws elsewhere.
 */
#ifndef GEN2VM_DEVICES_SYNTHVID_H
#define GEN2VM_DEVICES_SYNTHVID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/console.h"
#include "gen2vm/proto/synthvid.h"

/* The VRAM the device offers (the offer's mmio_megabytes). The guest learns its size from there
 * (hyperv_drm always; hyperv_fb under 3.5, and SYNTHVID_FB_SIZE_WIN8 under 3.2, the same 8 MiB): the
 * VRAM_LOCATION names only where, and that range is mapped with exactly this size. */
#define SYNTHVID_VRAM_MB 8u /* SYNTHVID_FB_SIZE_WIN8: 1920x1080 at 32 bpp fits */
#define SYNTHVID_VRAM_SIZE ((uint64_t)SYNTHVID_VRAM_MB << 20)
_Static_assert(SYNTHVID_VRAM_SIZE == SYNTHVID_FB_SIZE_WIN8, "3.2 guests assume SYNTHVID_FB_SIZE_WIN8");

struct synthvid_geometry {
	bool active;
	uint32_t vram_offset;
	uint8_t depth_bits;
	uint32_t width, height, pitch;
	bool valid; /* 32 bpp, pitch >= width * 4, and the frame fits the VRAM */
};

struct synthvid {
	struct console_dev *d; /* NULL: not offered */
	/* The resolutions offered (fixed at creation). */
	struct synthvid_screen_size modes[SYNTHVID_MAX_RESOLUTION_COUNT];
	unsigned nr_modes, default_mode;
	/* All below under d->lock. */
	uint32_t version;      /* the accepted version, 0 before */
	bool vram_set;         /* the guest said where its VRAM is (checked, and mapped when the host can) */
	uint64_t vram_gpa;
	bool vram_mapped;      /* vmdev_host.map_ram mapped it: vram is its host address */
	uint8_t *vram;         /* SYNTHVID_VRAM_SIZE bytes the guest writes at any time; NULL: not backed */
	struct synthvid_geometry geo;
	bool ptr_visible;
	int32_t ptr_x, ptr_y;
	uint32_t ptr_w, ptr_h, ptr_hot_x, ptr_hot_y;
	bool ptr_shape;              /* the guest sent an ARGB shape: ptr_argb holds ptr_w x ptr_h pixels */
	uint32_t ptr_shape_seq;      /* counts the shapes received (a display redraws on a change) */
	uint8_t ptr_argb[SYNTHVID_CURSOR_MAX_X * SYNTHVID_CURSOR_MAX_Y * 4]; /* B, G, R, A per pixel */
	bool dirty;                  /* dirt holds something */
	struct synthvid_rect dirt;   /* the bounding box, clipped to the screen */
	uint64_t dirt_messages;
	/* The driver now connected sends DIRT (one has come since its channel opened): a display need
	 * not compare the VRAM for drawing it is not told of, unless that driver is the firmware's. */
	bool announces;
	bool fw_phase;   /* gen2vm's firmware owns the machine (synthvid_firmware_phase) */
	bool fw_session; /* the channel now open was opened then: the firmware's GOP driver */
};

/* The standard resolutions gen2vm knows, in order; the first (1024x768) is the default screen. */
extern const struct synthvid_screen_size synthvid_resolutions[];
extern const unsigned synthvid_nr_resolutions;

/* The screen a VM may get (--video WxH, JSON "video", as Hyper-V's Set-VMVideo sets it): at least
 * 640x480 (hyperv_fb's minimum), and its frame at 32 bpp must fit the VRAM (so 1920x1080 and
 * 1600x1200 do, 2560x1440 does not). */
#define SYNTHVID_MIN_WIDTH 640u
#define SYNTHVID_MIN_HEIGHT 480u
#define SYNTHVID_MAX_WIDTH 4096u

/* Parses "WxH" and checks it as above. 0, or -EINVAL with err naming the value and the limits. */
int synthvid_mode_parse(const char *s, struct synthvid_screen_size *out, char *err, size_t errlen);

/* The resolution list the device offers for a configured screen max (0x0: the default 1024x768):
 * every standard resolution that fits within it, and max itself, which is the default (the screen
 * the guest's driver starts with; it may pick any listed one, or any that fits the VRAM). Fills at
 * most SYNTHVID_MAX_RESOLUTION_COUNT entries of out; returns the count and the default's index. */
unsigned synthvid_modes_build(struct synthvid_screen_size max, struct synthvid_screen_size *out, unsigned *def);

/* Takes the dirty bounding rectangle accumulated since the last call (false: nothing dirty) and
 * the current geometry (may be NULL). Takes the device lock. */
bool synthvid_dirty_take(struct synthvid *v, struct synthvid_rect *r, struct synthvid_geometry *geo);

/* The pointer as the guest last described it (SYNTHVID_MSG_POINTER_POSITION and _SHAPE). */
struct synthvid_pointer {
	bool visible;
	int32_t x, y;
	bool shape; /* false: the guest sent no (valid ARGB) shape; w..argb are then 0 */
	uint32_t w, h, hot_x, hot_y, seq;
	uint8_t argb[SYNTHVID_CURSOR_MAX_X * SYNTHVID_CURSOR_MAX_Y * 4];
};

/* Checks a POINTER_SHAPE body of n bytes (after struct synthvid_hdr): the header fields present,
 * width and height at most 96, the hot spot inside, and for an ARGB shape width * height * 4 bytes of
 * image within the n bytes. 0 or -EINVAL with *why a constant string. Pure: for the device and tests. */
int synthvid_pointer_shape_check(const uint8_t *b, uint32_t n, const char **why);

/* Sets the display's wake-up: fd (an eventfd, or -1 to stop) gets a write of 1 on each clean -> dirty
 * edge and each pointer shape, never per message, so an idle guest costs the display nothing. The
 * caller keeps fd open until it set -1 again. No-op when the device is not offered. */
void synthvid_display_notify(struct synthvid *v, int fd);

/* For a display: under the device lock, the current geometry in *geo and whether the screen can be
 * shown (VRAM backed, a valid geometry). When it can and something is to be drawn (dirt since the
 * last take, or all), copies that rectangle (*r, clipped to the screen) out of the VRAM into dst, a
 * packed copy of the screen (geo->width * 4 bytes a row; cap bytes, at least that times
 * geo->height, else nothing is copied), and clears the dirt. Returns 1 when it copied, 0 when there
 * was nothing to copy, -EAGAIN when the screen cannot be shown (no driver, no VRAM, no valid geometry
 * yet), -ENODEV when the device is not offered, -ENOSPC when dst is too small for the geometry. */
int synthvid_display_take(struct synthvid *v, uint8_t *dst, size_t cap, bool all, struct synthvid_geometry *geo,
			  struct synthvid_rect *r);

/* For a display's compare: the rows of the screen the guest wrote in the VRAM since the last call,
 * as the host's dirty log of the mapping tells (vmdev_host.ram_written: no copy, no compare, when
 * nothing was written), copied like synthvid_display_take copies (whole rows: *r is 0..width x
 * y1..y2) without touching the dirt the guest announced. 1 when it copied, 0 when the guest wrote
 * nothing on the screen, -EAGAIN when the screen cannot be shown, -ENOTSUP when the host keeps no log
 * (compare everything instead), -ENOSPC, -ENODEV as synthvid_display_take, or another -errno of the
 * log. */
int synthvid_display_written(struct synthvid *v, uint8_t *dst, size_t cap, struct synthvid_geometry *geo,
			     struct synthvid_rect *r);

/* Whether a display may rely on the guest's DIRT alone: the driver now connected has sent DIRT since
 * its channel opened, and it is the OS's, not the firmware's (boot loaders such as GRUB draw on the
 * firmware's GOP frame buffer without telling it). false after the channel closes (the OS's efifb
 * draws on that frame buffer untold), and the display is woken then. Takes the device lock. */
bool synthvid_display_announced(struct synthvid *v);

/* Whether gen2vm's firmware owns the machine: true from the VM's start with the firmware until its
 * ExitBootServices (the platform says so). A channel opened meanwhile is the firmware's. No-op when
 * the device is not offered. */
void synthvid_firmware_phase(struct synthvid *v, bool firmware);

/* The whole screen is new (the machine loaded the VRAM's contents at a restore): a display draws
 * it all again. No-op when the device is not offered. */
void synthvid_screen_changed(struct synthvid *v);

/* The pointer now (copied under the device lock). false when the device is not offered. */
bool synthvid_display_pointer(struct synthvid *v, struct synthvid_pointer *p);

#endif
