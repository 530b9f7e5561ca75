/* The synthetic mouse (class cfa8b69e-..., Linux's hid-hyperv): wire format in
 * include/gen2vm/proto/synthhid.h. The guest asks for protocol 2.0; the host approves it (any other
 * is refused), sends the device info with a HID report descriptor of gen2vm's own (an absolute
 * pointer, X and Y 0..0x7FFF, three buttons, a wheel), and once the guest has acknowledged it sends
 * one 6-byte input report per pointer change (SYNTHMOUSE_REPORT_*). Offered with
 * --synthetic-console (src/devices/console.h).
 *
 * Control verb: `mouse X Y [BUTTONS]` (0..32767; buttons: bit 0 left, 1 right, 2 middle). */
#ifndef GEN2VM_DEVICES_SYNTHMOUSE_H
#define GEN2VM_DEVICES_SYNTHMOUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/console.h"

#define SYNTHMOUSE_AXIS_MAX 0x7fffu

/* The input report (no report id): buttons (bits 0..2), X and Y little-endian, wheel (signed). */
#define SYNTHMOUSE_REPORT_SIZE 6u

/* The report descriptor gen2vm sends, and its length. */
extern const uint8_t synthmouse_report_desc[];
extern const uint16_t synthmouse_report_desc_len;

enum synthmouse_state {
	SYNTHMOUSE_CLOSED,    /* no channel */
	SYNTHMOUSE_OPEN,      /* channel open, no protocol request yet */
	SYNTHMOUSE_INFO_SENT, /* version approved, device info sent, waiting for the ACK */
	SYNTHMOUSE_READY,     /* the guest acknowledged: input reports go out */
	SYNTHMOUSE_REFUSED,   /* the guest asked for a version other than 2.0 */
};

struct synthmouse {
	struct console_dev *d; /* NULL: not offered */
	enum synthmouse_state state; /* d->lock */
	uint32_t version;            /* the version the guest asked for */
	uint64_t reports;            /* input reports sent */
};

/* One pointer state: x and y 0..SYNTHMOUSE_AXIS_MAX (absolute), buttons bits 0..2 (left, right,
 * middle), wheel a relative step. Takes the device lock. 0, -EINVAL (out of range), -ENOTCONN (not
 * offered, or the guest has not acknowledged the device info), -EAGAIN (ring full), -EBUSY (the VM
 * is being saved) or -errno. */
int synthmouse_send(struct synthmouse *m, uint16_t x, uint16_t y, uint8_t buttons, int8_t wheel);

#endif
