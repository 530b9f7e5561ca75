/* The synthetic keyboard (class f912ad6d-..., Linux's hyperv_keyboard): wire format in
 * include/gen2vm/proto/synthkbd.h. The guest asks for protocol 1.0 and the host accepts it (any
 * other version is refused, as the only one defined); from then on the host sends one EVENT per
 * make or break in scan code set 1. The guest's LED state (Windows guests send it) is kept.
 * Offered with --synthetic-console (src/devices/console.h).
 *
 * Control verbs: `key NAME` (a key or a combination: enter, esc, f1..f12, up, ctrl-alt-del,
 * ctrl-c, shift-tab...) and `type TEXT` (US layout), once the guest's driver has connected. */
#ifndef GEN2VM_DEVICES_SYNTHKBD_H
#define GEN2VM_DEVICES_SYNTHKBD_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/console.h"

struct synthkbd {
	struct console_dev *d; /* NULL: not offered */
	bool connected;        /* the guest's protocol request was accepted (d->lock) */
	uint32_t version;      /* the version it asked for */
	uint16_t leds;         /* SYNTHKBD_LED_* the guest last set */
	uint64_t events;       /* EVENTs sent */
};

/* The longest text `type` and synthkbd_type take: each character is up to four events (a shifted
 * one), and the guest's 40 KiB ring holds about 1,100. */
#define SYNTHKBD_TYPE_MAX 256u

/* One key event: make is a set-1 make code 0x01..0x7F, e0/e1 its prefix, brk a release. Takes the
 * device lock. 0, -ENOTCONN (not offered, or the guest's driver has not connected), -EINVAL (make
 * out of range, or both prefixes), -EAGAIN (the guest's ring is full), -EBUSY (the VM is being
 * saved) or another -errno. */
int synthkbd_send_scancode(struct synthkbd *k, uint16_t make, bool e0, bool e1, bool brk);

/* Presses and releases a named key or combination ("enter", "ctrl-alt-del", "shift-a", "f12"): the
 * modifiers are pressed in order, the key pressed and released, the modifiers released in reverse.
 * Sent whole or not at all (the ring's room is checked first). 0, -EINVAL (unknown name) or as
 * synthkbd_send_scancode. */
int synthkbd_press(struct synthkbd *k, const char *name);

/* Types text (printable ASCII, \n as Enter, \t as Tab; at most SYNTHKBD_TYPE_MAX bytes) on a US
 * layout, shifting where needed. Sent whole or not at all. 0, -EINVAL (a character with no key:
 * *bad is its offset), -E2BIG or as synthkbd_send_scancode. */
int synthkbd_type(struct synthkbd *k, const char *text, size_t *bad);

/* One key event as scan code set 1 bytes, for tests and logs. */
struct synthkbd_key {
	uint8_t make;
	bool e0;
};

/* The key of a name ("enter", "f5", "a", "up"...), false when there is none. */
bool synthkbd_key_by_name(const char *name, struct synthkbd_key *key);

/* The key (and whether it needs shift) of an ASCII character on a US layout; false when none. */
bool synthkbd_key_of_char(char c, struct synthkbd_key *key, bool *shift);

/* What an X keysym (RFB's key events carry them) is on a US keyboard: its set-1 key, and *shift:
 * 1 when the keysym is the shifted character of its key ('A', '!'), 0 the unshifted one ('a', '1'),
 * -1 when shift does not matter (Enter, F5, the modifiers themselves). Covers printable ASCII
 * (keysyms 0x20..0x7e are ASCII), Return, Escape, Tab (and ISO_Left_Tab), BackSpace, F1-F12, the
 * arrows, Home/End/Prior/Next/Insert/Delete, KP_Enter, Menu, the lock keys, Shift/Control/Alt/Meta/
 * Super left and right, and ISO_Level3_Shift (AltGr). false for anything else. Pure. */
bool synthkbd_key_of_keysym(uint32_t keysym, struct synthkbd_key *key, int *shift);

/* Whether keysym is a Shift key (left or right): a display tracks them to know when a shifted
 * character needs a shift of its own. */
bool synthkbd_keysym_is_shift(uint32_t keysym);

#endif
