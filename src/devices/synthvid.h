/* The synthetic video device (class da0a7802-..., Linux's hyperv_drm and hyperv_fb): wire format in
 * include/gen2vm/proto/synthvid.h. Protocol only for now: the guest negotiates 3.5 or 3.2 (others
 * refused), asks for the supported resolutions (3.5), tells where its VRAM is (acknowledged with its
 * user_ctx), then the screen's geometry (situation update), pointer position and shape, and, once
 * the host's FEATURE_CHANGE asks for them (sent after the VRAM ack), dirty rectangles. The device
 * keeps the geometry, the VRAM GPA and one bounding rectangle of everything dirty since the host
 * last took it. Offered with --synthetic-console (src/devices/console.h) with
 * SYNTHVID_VRAM_MB in its offer's mmio_megabytes.
 *
 * NOT DONE: the VRAM's MMIO window (an ACPI _CRS range the guest's vmbus_allocate_mmio can take,
 * backed by a RAM memslot), so a real guest cannot place its VRAM yet; nothing reads the VRAM. */
#ifndef GEN2VM_DEVICES_SYNTHVID_H
#define GEN2VM_DEVICES_SYNTHVID_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/console.h"
#include "gen2vm/proto/synthvid.h"

#define SYNTHVID_VRAM_MB 8u /* SYNTHVID_FB_SIZE_WIN8: 1920x1080 at 32 bpp fits */

struct synthvid_geometry {
	bool active;
	uint32_t vram_offset;
	uint8_t depth_bits;
	uint32_t width, height, pitch;
	bool valid; /* 32 bpp, pitch >= width * 4, and the frame fits the VRAM */
};

struct synthvid {
	struct console_dev *d; /* NULL: not offered */
	/* All below under d->lock. */
	uint32_t version;      /* the accepted version, 0 before */
	bool vram_set;         /* the guest said where its VRAM is */
	uint64_t vram_gpa;
	struct synthvid_geometry geo;
	bool ptr_visible;
	int32_t ptr_x, ptr_y;
	uint32_t ptr_w, ptr_h, ptr_hot_x, ptr_hot_y;
	bool dirty;                  /* dirt holds something */
	struct synthvid_rect dirt;   /* the bounding box, clipped to the screen */
	uint64_t dirt_messages;
};

/* The resolutions offered (3.5's RESOLUTION_RESPONSE), in order, and the default's index. */
extern const struct synthvid_screen_size synthvid_resolutions[];
extern const unsigned synthvid_nr_resolutions, synthvid_default_resolution;

/* Takes the dirty bounding rectangle accumulated since the last call (false: nothing dirty) and
 * the current geometry (may be NULL). Takes the device lock. */
bool synthvid_dirty_take(struct synthvid *v, struct synthvid_rect *r, struct synthvid_geometry *geo);

#endif
