/* The Hyper-V synthetic keyboard over VMBus: the wire format Linux's hyperv_keyboard speaks.
 * Facts from drivers/input/serio/hyperv-keyboard.c (message types, version 1.0, structure layouts,
 * the info bits, the 10 s wait for the protocol response, 10-page rings) and, for the LED message
 * Linux never sends, Microsoft's mu_msvm header hyperkbdprotocol.h (HK_MESSAGE_LED_INDICATORS_STATE).
 *
 * Every packet is one INBAND payload: a u32 message type, then the message. The guest speaks first
 * (PROTOCOL_REQUEST); the host answers PROTOCOL_RESPONSE and then sends EVENTs, one per make or
 * break of a key in scan code set 1. */
#ifndef GEN2VM_PROTO_SYNTHKBD_H
#define GEN2VM_PROTO_SYNTHKBD_H

#include <stdint.h>

#define SYNTHKBD_CLASS_GUID_TEXT "f912ad6d-2b17-48ea-bd65-f927a61c7684" /* HV_KBD_GUID */

/* major << 16 | minor; 1.0 is the only version hyperv-keyboard.c (and Windows 8+) requests. */
#define SYNTHKBD_VERSION_1_0 0x00010000u

#define SYNTHKBD_MSG_PROTOCOL_REQUEST  1u /* guest -> host */
#define SYNTHKBD_MSG_PROTOCOL_RESPONSE 2u /* host -> guest */
#define SYNTHKBD_MSG_EVENT             3u /* host -> guest */
#define SYNTHKBD_MSG_LED_INDICATORS    4u /* guest -> host (Windows guests; Linux never sends it) */

/* synthkbd_protocol_response.status */
#define SYNTHKBD_PROTOCOL_ACCEPTED 0x1u

/* synthkbd_keystroke.info: the guest emits 0xE0 / 0xE1 before the code and ORs 0x80 for a break. */
#define SYNTHKBD_INFO_UNICODE 0x1u /* not used by Linux: make_code is a UTF-16 unit */
#define SYNTHKBD_INFO_BREAK   0x2u
#define SYNTHKBD_INFO_E0      0x4u
#define SYNTHKBD_INFO_E1      0x8u

/* LED bits in synthkbd_led_indicators.led_flags: Windows' KEYBOARD_*_LOCK_ON values (ntddkbd.h,
 * KEYBOARD_INDICATOR_PARAMETERS.LedFlags). That the HK message's LedFlags carries those bits is
 * an inference from the shared name and width, not yet checked against a Windows guest. */
#define SYNTHKBD_LED_SCROLL_LOCK 0x1u
#define SYNTHKBD_LED_NUM_LOCK    0x2u
#define SYNTHKBD_LED_CAPS_LOCK   0x4u

struct synthkbd_hdr {
	uint32_t type; /* SYNTHKBD_MSG_* */
} __attribute__((packed));
_Static_assert(sizeof(struct synthkbd_hdr) == 4, "synthkbd_hdr");

struct synthkbd_protocol_request {
	struct synthkbd_hdr hdr;
	uint32_t version; /* SYNTHKBD_VERSION_1_0 */
} __attribute__((packed));
_Static_assert(sizeof(struct synthkbd_protocol_request) == 8, "synthkbd_protocol_request");

/* Linux drops a response shorter than this and fails the probe without the ACCEPTED bit. */
struct synthkbd_protocol_response {
	struct synthkbd_hdr hdr;
	uint32_t status; /* SYNTHKBD_PROTOCOL_ACCEPTED or 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct synthkbd_protocol_response) == 8, "synthkbd_protocol_response");

/* Linux drops an event shorter than this. */
struct synthkbd_keystroke {
	struct synthkbd_hdr hdr;
	uint16_t make_code; /* set 1, 0x01..0x7F (the guest adds 0x80 for a break) */
	uint16_t reserved;
	uint32_t info; /* SYNTHKBD_INFO_* */
} __attribute__((packed));
_Static_assert(sizeof(struct synthkbd_keystroke) == 12, "synthkbd_keystroke");

/* 6 bytes on the wire as declared; a Windows guest's compiler pads it to 8, so take >= 6. */
struct synthkbd_led_indicators {
	struct synthkbd_hdr hdr;
	uint16_t led_flags; /* SYNTHKBD_LED_* */
} __attribute__((packed));
_Static_assert(sizeof(struct synthkbd_led_indicators) == 6, "synthkbd_led_indicators");

#endif
