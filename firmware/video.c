/* The screen: a synthetic video (synthvid) client and the Graphics Output Protocol on it, plus the
 * text console conio.c draws there (guestlib/efi/efi_gfxcon.c). One mode, 32 bpp, BGRX, pitch
 * width * 4: the device's default resolution, which is what --video sets (as Hyper-V's firmware
 * follows Set-VMVideo), asked for with the 3.5 protocol's RESOLUTION_REQUEST; 1024x768 when the
 * device speaks only 3.2 or its answer is unusable. The VRAM is put at the start of VMOD's low MMIO
 * window (FW_MMIO_LOW_BASE): GOP's FrameBufferBase, which Linux copies to screen_info.lfb_base for
 * efifb and which its vmbus driver keeps out of other devices' way. The VMM keeps that mapping and
 * the geometry when fw_vmbus closes our channel at ExitBootServices (src/devices/synthvid.c), so the
 * OS goes on drawing into real memory.
 *
 * Everything is polled. After each drawing call one DIRT message with the bounding rectangle of
 * what changed tells the host's display; what the host sends us (FEATURE_CHANGE...) is drained then. */
#include "conio.h"
#include "storage.h"

#include "efi/efi_devpath.h"
#include "efi/efi_gfxcon.h"
#include "gen2vm/proto/efi_gop.h"
#include "gen2vm/proto/synthvid.h"

#define VID_DEFAULT_WIDTH 1024u
#define VID_DEFAULT_HEIGHT 768u
#define VID_VRAM_GPA FW_MMIO_LOW_BASE
#define VID_RING_BYTES (16u << 10)
#define VID_TIMEOUT_US 2000000ull

static struct vmbus_client_channel vid_ch;
static bool vid_up;         /* negotiated, VRAM placed, geometry sent */
static uint32_t vid_vram_size;
static uint32_t vid_width = VID_DEFAULT_WIDTH, vid_height = VID_DEFAULT_HEIGHT;
static struct efi_gfx_fb vid_fb;
static struct efi_gfxcon vid_con;
static bool vid_con_up;
static uint8_t vid_rx[512] __attribute__((aligned(8)));

static EFI_GRAPHICS_OUTPUT_MODE_INFORMATION vid_info;
static EFI_GRAPHICS_OUTPUT_PROTOCOL_MODE vid_mode;
static EFI_GRAPHICS_OUTPUT_PROTOCOL vid_gop;
static EFI_HANDLE vid_handle;
static struct {
	VENDOR_DEVICE_PATH vmbus;
	uint8_t instance[16]; /* the channel's instance GUID, as its offer carries it */
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed)) vid_dp;

/* One synthvid message in the pipe framing (include/gen2vm/proto/synthvid.h). */
static EFI_STATUS vid_send(uint32_t type, const void *body, uint32_t n)
{
	uint8_t buf[sizeof(struct synthvid_pipe_hdr) + sizeof(struct synthvid_hdr) + 64];
	if (n > 64 || !vid_ch.open)
		return EFI_DEVICE_ERROR;
	struct synthvid_hdr h = { type, (uint32_t)sizeof(h) + n };
	struct synthvid_pipe_hdr p = { SYNTHVID_PIPE_DATA, h.size };
	efi_memcpy(buf, &p, sizeof(p));
	efi_memcpy(buf + sizeof(p), &h, sizeof(h));
	efi_memcpy(buf + sizeof(p) + sizeof(h), body, n);
	int rc = vmbus_client_send(&vid_ch, VM_PKT_DATA_INBAND, 0, 0, NULL, 0, buf,
				   (uint32_t)(sizeof(p) + sizeof(h) + n));
	return rc ? EFI_DEVICE_ERROR : EFI_SUCCESS;
}

/* Waits for a message of type want; its body into vid_rx, *body pointing at it. Other messages
 * (FEATURE_CHANGE before we care) are skipped. */
static EFI_STATUS vid_wait(uint32_t want, const uint8_t **body, uint32_t *n)
{
	uint64_t end = fw_stor_now_us() + VID_TIMEOUT_US;
	for (;;) {
		uint64_t now = fw_stor_now_us();
		if (now >= end)
			return EFI_TIMEOUT;
		uint32_t len;
		EFI_STATUS s = fw_vmbus_recv(&vid_ch, vid_rx, sizeof(vid_rx), &len, end - now);
		if (EFI_ERROR(s))
			return s;
		const struct vmbus_packet_descriptor *d = (const void *)vid_rx;
		uint32_t off = d->offset8 * 8u;
		if (len < sizeof(*d) || off > len ||
		    len - off < sizeof(struct synthvid_pipe_hdr) + sizeof(struct synthvid_hdr))
			continue;
		struct synthvid_hdr h;
		efi_memcpy(&h, vid_rx + off + sizeof(struct synthvid_pipe_hdr), sizeof(h));
		uint32_t avail = len - off - (uint32_t)(sizeof(struct synthvid_pipe_hdr) + sizeof(h));
		if (h.type != want || h.size < sizeof(h) || h.size - sizeof(h) > avail)
			continue;
		*body = vid_rx + off + sizeof(struct synthvid_pipe_hdr) + sizeof(h);
		*n = h.size - (uint32_t)sizeof(h);
		return EFI_SUCCESS;
	}
}

/* Drops what the host sent since (FEATURE_CHANGE and the like): the firmware needs none of it, and
 * a full ring would stall the host. */
static void vid_drain(void)
{
	uint32_t len;
	while (vid_ch.open && vmbus_client_recv(&vid_ch, vid_rx, sizeof(vid_rx), &len) == 0)
		vmbus_client_recv_done(&vid_ch);
}

/* Tells the host what changed since the last call. After ExitBootServices the channel is closed
 * and the OS owns the screen: nothing is sent. */
static void vid_flush(void)
{
	struct efi_gfx_rect r;
	if (!efi_gfx_dirty_take(&vid_fb, &r) || !vid_ch.open)
		return;
	vid_drain();
	struct synthvid_dirt d = { 0, 1, { { r.x1, r.y1, r.x2, r.y2 } } };
	vid_send(SYNTHVID_MSG_DIRT, &d, sizeof(d)); /* a full ring drops it: the host shows it later */
}

/* ---- Graphics Output Protocol ---- */

static EFI_STATUS EFIAPI gop_query_mode(EFI_GRAPHICS_OUTPUT_PROTOCOL *This, uint32_t mode, UINTN *size,
					EFI_GRAPHICS_OUTPUT_MODE_INFORMATION **info)
{
	if (mode != 0 || !size || !info)
		return EFI_INVALID_PARAMETER;
	void *p;
	if (EFI_ERROR(fw.bs->AllocatePool(EfiBootServicesData, sizeof(vid_info), &p)))
		return EFI_OUT_OF_RESOURCES;
	efi_memcpy(p, &vid_info, sizeof(vid_info));
	*info = p; /* the caller frees it */
	*size = sizeof(vid_info);
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI gop_set_mode(EFI_GRAPHICS_OUTPUT_PROTOCOL *This, uint32_t mode)
{
	if (mode != 0)
		return EFI_UNSUPPORTED;
	/* Setting a mode clears the screen to black (UEFI 12.9.2.2). */
	EFI_GRAPHICS_OUTPUT_BLT_PIXEL black = { 0, 0, 0, 0 };
	efi_gfx_blt(&vid_fb, &black, EfiBltVideoFill, 0, 0, 0, 0, vid_width, vid_height, 0);
	vid_con.cursor_drawn = false;
	vid_flush();
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI gop_blt(EFI_GRAPHICS_OUTPUT_PROTOCOL *This, EFI_GRAPHICS_OUTPUT_BLT_PIXEL *buf,
				 EFI_GRAPHICS_OUTPUT_BLT_OPERATION op, UINTN sx, UINTN sy, UINTN dx, UINTN dy, UINTN w,
				 UINTN h, UINTN delta)
{
	EFI_STATUS s = efi_gfx_blt(&vid_fb, buf, (unsigned)op, sx, sy, dx, dy, w, h, delta);
	vid_flush();
	return s;
}

/* ---- start-up ---- */

/* Opens the channel and goes through version, VRAM location and situation update. */
static EFI_STATUS vid_connect(const struct vmbus_client_offer *o)
{
	EFI_STATUS s = fw_vmbus_channel_open(&vid_ch, o->msg.child_relid, VID_RING_BYTES);
	if (EFI_ERROR(s))
		return s;
	const uint8_t *b;
	uint32_t n;
	/* 3.5 first, then 3.2, as Linux's drivers ask on a VMBus of 4.0 and later. */
	static const uint32_t versions[] = { SYNTHVID_VERSION_WIN10, SYNTHVID_VERSION_WIN8 };
	bool ok = false;
	uint32_t version = 0;
	for (unsigned i = 0; i < 2 && !ok; i++) {
		struct synthvid_version_req rq = { versions[i] };
		if (EFI_ERROR(s = vid_send(SYNTHVID_MSG_VERSION_REQUEST, &rq, sizeof(rq))) ||
		    EFI_ERROR(s = vid_wait(SYNTHVID_MSG_VERSION_RESPONSE, &b, &n)))
			return s;
		struct synthvid_version_resp rs;
		if (n < sizeof(rs))
			return EFI_DEVICE_ERROR;
		efi_memcpy(&rs, b, sizeof(rs));
		ok = rs.is_accepted != 0;
		version = versions[i];
	}
	if (!ok)
		return EFI_UNSUPPORTED;
	/* The VRAM: the offer's size (both versions mean 8 MiB), at the start of the low MMIO window. */
	vid_vram_size = o->msg.offer.mmio_megabytes ? (uint32_t)o->msg.offer.mmio_megabytes << 20 : SYNTHVID_FB_SIZE_WIN8;
	if (vid_vram_size < VID_DEFAULT_WIDTH * 4u * VID_DEFAULT_HEIGHT || vid_vram_size > FW_MMIO_LOW_SIZE)
		return EFI_UNSUPPORTED;
	/* The screen's size: the device's default resolution (3.5 only; a silent device or an unusable
	 * answer leaves 1024x768). */
	if (version == SYNTHVID_VERSION_WIN10) {
		struct synthvid_resolution_req rr = { SYNTHVID_MAX_RESOLUTION_COUNT };
		uint32_t w, h;
		if (!EFI_ERROR(vid_send(SYNTHVID_MSG_RESOLUTION_REQUEST, &rr, sizeof(rr))) &&
		    !EFI_ERROR(vid_wait(SYNTHVID_MSG_RESOLUTION_RESPONSE, &b, &n)) &&
		    efi_gfx_mode_from_resolutions(b, n, vid_vram_size, &w, &h)) {
			vid_width = w;
			vid_height = h;
		}
	}
	struct synthvid_vram_location vl = { VID_VRAM_GPA, 1, VID_VRAM_GPA };
	if (EFI_ERROR(s = vid_send(SYNTHVID_MSG_VRAM_LOCATION, &vl, sizeof(vl))) ||
	    EFI_ERROR(s = vid_wait(SYNTHVID_MSG_VRAM_LOCATION_ACK, &b, &n)))
		return s;
	struct synthvid_vram_location_ack ack;
	if (n < sizeof(ack))
		return EFI_DEVICE_ERROR;
	efi_memcpy(&ack, b, sizeof(ack));
	if (ack.user_ctx != VID_VRAM_GPA)
		return EFI_DEVICE_ERROR;
	struct synthvid_situation_update su = { 0, 1, { { 1, 0, 32, vid_width, vid_height, vid_width * 4u } } };
	return vid_send(SYNTHVID_MSG_SITUATION_UPDATE, &su, sizeof(su));
}

EFI_STATUS fw_video_init(void)
{
	struct vmbus_client *cl = fw_vmbus_client();
	if (!cl)
		return EFI_NOT_FOUND;
	struct vmbus_guid cls;
	vmbus_guid_parse(SYNTHVID_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(cl, &cls, 0);
	if (!o)
		return EFI_NOT_FOUND; /* no --synthetic-console: no screen, as before */
	EFI_STATUS s = vid_connect(o);
	if (EFI_ERROR(s)) {
		fw_printf("video: the synthetic video device did not connect (0x%llx): no screen\n",
			  (unsigned long long)s);
		if (vid_ch.open)
			vmbus_client_channel_close(&vid_ch);
		return s;
	}
	vid_fb = (struct efi_gfx_fb){ (uint32_t *)(uintptr_t)VID_VRAM_GPA, vid_width, vid_height, vid_width, { 0, 0, 0, 0 } };
	vid_info = (EFI_GRAPHICS_OUTPUT_MODE_INFORMATION){ 0, vid_width, vid_height, PixelBlueGreenRedReserved8BitPerColor,
							   { 0, 0, 0, 0 }, vid_width };
	vid_mode = (EFI_GRAPHICS_OUTPUT_PROTOCOL_MODE){ 1, 0, &vid_info, sizeof(vid_info), VID_VRAM_GPA, vid_vram_size };
	vid_gop = (EFI_GRAPHICS_OUTPUT_PROTOCOL){ gop_query_mode, gop_set_mode, gop_blt, &vid_mode };
	vid_up = true;
	vid_con_up = efi_gfxcon_init(&vid_con, &vid_fb, 80, 25);
	fw_host_event(FW_EV_LOG, "video: the screen is %ux%u, 32 bpp", vid_width, vid_height);
	fw_conio_screen_attached();
	vid_flush();

	const EFI_GUID vg = FW_VMBUS_DP_GUID;
	vid_dp.vmbus.Header.Type = HARDWARE_DEVICE_PATH;
	vid_dp.vmbus.Header.SubType = HW_VENDOR_DP;
	efi_dp_set_node_len(&vid_dp.vmbus.Header, sizeof(vid_dp.vmbus) + 16);
	efi_memcpy(&vid_dp.vmbus.Guid, &vg, sizeof(vg));
	efi_memcpy(vid_dp.instance, &o->msg.offer.if_instance, 16);
	efi_dp_set_end(&vid_dp.end);
	static const EFI_GUID gop_guid = EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID, dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
	const EFI_GUID *const guids[] = { &gop_guid, &dp_guid };
	void *const ifaces[] = { &vid_gop, &vid_dp };
	s = fw_stor_install(&vid_handle, 2, guids, ifaces);
	if (EFI_ERROR(s))
		fw_printf("video: cannot install the Graphics Output Protocol (0x%llx)\n", (unsigned long long)s);
	return s;
}

/* ---- the text console on the screen ---- */

bool fw_screen_present(void)
{
	return vid_con_up && !fw.boot_services_done;
}

bool fw_screen_mode_fits(uint32_t cols, uint32_t rows)
{
	return cols <= vid_width / EFI_GFX_CELL_W && rows <= vid_height / EFI_GFX_CELL_H;
}

bool fw_screen_cells(uint32_t *cols, uint32_t *rows)
{
	if (!vid_con_up)
		return false;
	*cols = vid_width / EFI_GFX_CELL_W;
	*rows = vid_height / EFI_GFX_CELL_H;
	return true;
}

void fw_screen_set_mode(uint32_t cols, uint32_t rows)
{
	if (!fw_screen_present())
		return;
	struct efi_gfxcon old = vid_con;
	if (efi_gfxcon_init(&vid_con, &vid_fb, cols, rows)) {
		/* Cleared in black by the init: again only for another background (each clear of a large
		 * screen costs a good part of a second where the firmware's instructions are emulated). */
		efi_gfxcon_set_attr(&vid_con, old.attr);
		efi_gfxcon_enable_cursor(&vid_con, old.cursor_on);
		if ((old.attr >> 4) & 7)
			efi_gfxcon_clear(&vid_con);
	}
	vid_flush();
}

void fw_screen_write(const char *s, size_t n)
{
	if (!fw_screen_present())
		return;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = (uint8_t)s[i];
		if (b < 0x80)
			efi_gfxcon_putc(&vid_con, b);
		else if ((b & 0xc0) != 0x80) /* UTF-8 beyond ASCII: one '?' for the character */
			efi_gfxcon_putc(&vid_con, '?');
	}
	vid_flush();
}

void fw_screen_write16(const CHAR16 *s, size_t n)
{
	if (!fw_screen_present())
		return;
	for (size_t i = 0; i < n; i++)
		efi_gfxcon_putc(&vid_con, s[i]);
	vid_flush();
}

void fw_screen_clear(void)
{
	if (!fw_screen_present())
		return;
	efi_gfxcon_clear(&vid_con);
	vid_flush();
}

void fw_screen_goto(uint32_t col, uint32_t row)
{
	if (!fw_screen_present())
		return;
	efi_gfxcon_goto(&vid_con, col, row);
	vid_flush();
}

void fw_screen_set_attr(uint8_t attr)
{
	if (fw_screen_present())
		efi_gfxcon_set_attr(&vid_con, attr);
}

void fw_screen_enable_cursor(bool on)
{
	if (!fw_screen_present())
		return;
	efi_gfxcon_enable_cursor(&vid_con, on);
	vid_flush();
}
