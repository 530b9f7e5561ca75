/* The Hyper-V synthetic video device over VMBus: the wire format Linux's hyperv_drm and hyperv_fb
 * speak. Facts from drivers/gpu/drm/hyperv/hyperv_drm_proto.c (message types, packed layouts,
 * versions minor << 16 | major, the 10 s waits, 256 KiB rings, the guest checking the VRAM ack's
 * user_ctx and the resolution list's count and default index, FEATURE_CHANGE's is_dirt_needed
 * turning DIRT on) and drivers/video/fbdev/hyperv_fb.c (the same negotiation: 3.5 on VMBus 4.0/5.0
 * falling back to 3.2, 3.2 on VMBus 2.4/3.0, 3.5 otherwise; older kernels also 3.0 on Windows 7's
 * VMBus, which gen2vm does not speak).
 *
 * Every packet is one INBAND payload: struct synthvid_pipe_hdr (type PIPE_DATA, size: the bytes
 * after it), then struct synthvid_hdr whose size counts itself and the message after it. */
#ifndef GEN2VM_PROTO_SYNTHVID_H
#define GEN2VM_PROTO_SYNTHVID_H

#include <stdint.h>

#define SYNTHVID_CLASS_GUID_TEXT "da0a7802-e377-4aac-8e77-0558eb1073f8" /* HV_SYNTHVID_GUID */

#define SYNTHVID_VERSION(major, minor) ((uint32_t)(minor) << 16 | (uint32_t)(major))
#define SYNTHVID_VERSION_WIN7  SYNTHVID_VERSION(3, 0) /* 16 bpp; removed from Linux */
#define SYNTHVID_VERSION_WIN8  SYNTHVID_VERSION(3, 2) /* 32 bpp, at most 1600x1200 */
#define SYNTHVID_VERSION_WIN10 SYNTHVID_VERSION(3, 5) /* adds the resolution request */

/* What the WIN8 protocol means (hyperv_drm_proto.c): 32 bpp, 1600x1200 at most, 8 MiB of VRAM. */
#define SYNTHVID_DEPTH_WIN8   32u
#define SYNTHVID_WIDTH_WIN8   1600u
#define SYNTHVID_HEIGHT_WIN8  1200u
#define SYNTHVID_FB_SIZE_WIN8 (8u << 20)

#define SYNTHVID_PIPE_DATA 1u

#define SYNTHVID_MSG_ERROR               0u
#define SYNTHVID_MSG_VERSION_REQUEST     1u  /* guest -> host */
#define SYNTHVID_MSG_VERSION_RESPONSE    2u  /* host -> guest */
#define SYNTHVID_MSG_VRAM_LOCATION       3u  /* guest -> host */
#define SYNTHVID_MSG_VRAM_LOCATION_ACK   4u  /* host -> guest */
#define SYNTHVID_MSG_SITUATION_UPDATE    5u  /* guest -> host */
#define SYNTHVID_MSG_SITUATION_UPDATE_ACK 6u /* host -> guest (Linux sends user_ctx 0, waits for none) */
#define SYNTHVID_MSG_POINTER_POSITION    7u  /* guest -> host */
#define SYNTHVID_MSG_POINTER_SHAPE       8u  /* guest -> host */
#define SYNTHVID_MSG_FEATURE_CHANGE      9u  /* host -> guest */
#define SYNTHVID_MSG_DIRT                10u /* guest -> host */
#define SYNTHVID_MSG_RESOLUTION_REQUEST  13u /* guest -> host (3.5) */
#define SYNTHVID_MSG_RESOLUTION_RESPONSE 14u /* host -> guest (3.5) */

struct synthvid_pipe_hdr {
	uint32_t type; /* SYNTHVID_PIPE_DATA */
	uint32_t size; /* bytes after this header (Linux: the synthvid_hdr's size) */
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_pipe_hdr) == 8, "synthvid_pipe_hdr");

struct synthvid_hdr {
	uint32_t type; /* SYNTHVID_MSG_* */
	uint32_t size; /* this header and the message after it */
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_hdr) == 8, "synthvid_hdr");

struct synthvid_version_req {
	uint32_t version;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_version_req) == 4, "synthvid_version_req");

struct synthvid_version_resp {
	uint32_t version;
	uint8_t is_accepted;
	uint8_t max_video_outputs;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_version_resp) == 6, "synthvid_version_resp");

struct synthvid_vram_location {
	uint64_t user_ctx; /* Linux: the GPA again; the ack must echo it */
	uint8_t is_vram_gpa_specified;
	uint64_t vram_gpa;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_vram_location) == 17, "synthvid_vram_location");

struct synthvid_vram_location_ack {
	uint64_t user_ctx;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_vram_location_ack) == 8, "synthvid_vram_location_ack");

struct synthvid_output_situation {
	uint8_t active;
	uint32_t vram_offset; /* Linux: always 0 */
	uint8_t depth_bits;
	uint32_t width_pixels;
	uint32_t height_pixels;
	uint32_t pitch_bytes;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_output_situation) == 18, "synthvid_output_situation");

struct synthvid_situation_update {
	uint64_t user_ctx;
	uint8_t video_output_count; /* outputs follow; Linux sends 1 */
	struct synthvid_output_situation output[1];
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_situation_update) == 27, "synthvid_situation_update");

struct synthvid_pointer_position {
	uint8_t is_visible;
	uint8_t video_output;
	int32_t image_x, image_y;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_pointer_position) == 10, "synthvid_pointer_position");

#define SYNTHVID_CURSOR_MAX_X    96u
#define SYNTHVID_CURSOR_MAX_Y    96u
#define SYNTHVID_CURSOR_COMPLETE 0xffu /* part_idx (-1): the whole shape in one message */

struct synthvid_pointer_shape {
	uint8_t part_idx;
	uint8_t is_argb;
	uint32_t width, height; /* at most 96 x 96 */
	uint32_t hot_x, hot_y;
	uint8_t data[4]; /* the image, 4 bytes a pixel for ARGB; Linux sends a 1x1 shape */
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_pointer_shape) == 22, "synthvid_pointer_shape");

struct synthvid_feature_change {
	uint8_t is_dirt_needed; /* the guest sends DIRT (hyperv_drm then hides the host's pointer) */
	uint8_t is_ptr_pos_needed;
	uint8_t is_ptr_shape_needed;
	uint8_t is_situ_needed;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_feature_change) == 4, "synthvid_feature_change");

struct synthvid_rect {
	int32_t x1, y1; /* top left */
	int32_t x2, y2; /* bottom right, exclusive */
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_rect) == 16, "synthvid_rect");

struct synthvid_dirt {
	uint8_t video_output;
	uint8_t dirt_count; /* rectangles follow */
	struct synthvid_rect rect[1];
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_dirt) == 18, "synthvid_dirt");

#define SYNTHVID_EDID_BLOCK_SIZE      128u
#define SYNTHVID_MAX_RESOLUTION_COUNT 64u

struct synthvid_resolution_req {
	uint8_t maximum_resolution_count; /* Linux: 64 */
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_resolution_req) == 1, "synthvid_resolution_req");

struct synthvid_screen_size {
	uint16_t width, height;
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_screen_size) == 4, "synthvid_screen_size");

/* Linux refuses a count of 0 or a default index >= count. */
struct synthvid_resolution_resp {
	uint8_t edid_block[SYNTHVID_EDID_BLOCK_SIZE];
	uint8_t resolution_count;
	uint8_t default_resolution_index;
	uint8_t is_standard;
	struct synthvid_screen_size supported_resolution[SYNTHVID_MAX_RESOLUTION_COUNT];
} __attribute__((packed));
_Static_assert(sizeof(struct synthvid_resolution_resp) == 387, "synthvid_resolution_resp");

#endif
