/* The Hyper-V synthetic HID device (the mouse) over VMBus: the wire format Linux's hid-hyperv
 * speaks. Facts from drivers/hid/hid-hyperv.c: message types 0..4, version 2.0, the pipe framing,
 * the packed layouts, the 5 s waits for the protocol response and for the device info, 36 KiB
 * rings, and the "SA-167" workaround (a report descriptor whose byte 14 is 0x25 gets it rewritten
 * to 0x29: ours must not have 0x25 there). The HID descriptor's layout is struct hid_descriptor of
 * include/linux/hid.h (the USB HID class descriptor, packed, 9 bytes with one report descriptor).
 *
 * Every packet is one INBAND payload: struct synthhid_pipe_hdr (type PIPE_DATA, size: the bytes
 * after it), then struct synthhid_hdr (type, size: the bytes after it), then the message. The guest
 * speaks first (PROTOCOL_REQUEST); the host answers PROTOCOL_RESPONSE, then INITIAL_DEVICE_INFO
 * with the report descriptor; the guest ACKs it, and from then on the host sends INPUT_REPORTs. */
#ifndef GEN2VM_PROTO_SYNTHHID_H
#define GEN2VM_PROTO_SYNTHHID_H

#include <stdint.h>

#define SYNTHHID_CLASS_GUID_TEXT "cfa8b69e-5b4a-4cc0-b98b-8ba1a1f3f95a" /* HV_MOUSE_GUID */

/* minor | major << 16: 2.0 ("RC > 2008/1/22") is what hid-hyperv.c requests. */
#define SYNTHHID_VERSION_2_0 0x00020000u

#define SYNTHHID_PIPE_DATA 1u /* pipe_prot_msg_type PIPE_MESSAGE_DATA; others are ignored by Linux */

#define SYNTHHID_MSG_PROTOCOL_REQUEST  0u /* guest -> host */
#define SYNTHHID_MSG_PROTOCOL_RESPONSE 1u /* host -> guest */
#define SYNTHHID_MSG_DEVICE_INFO       2u /* host -> guest */
#define SYNTHHID_MSG_DEVICE_INFO_ACK   3u /* guest -> host */
#define SYNTHHID_MSG_INPUT_REPORT      4u /* host -> guest */

struct synthhid_pipe_hdr {
	uint32_t type; /* SYNTHHID_PIPE_DATA */
	uint32_t size; /* bytes after this header */
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_pipe_hdr) == 8, "synthhid_pipe_hdr");

struct synthhid_hdr {
	uint32_t type; /* SYNTHHID_MSG_* */
	uint32_t size; /* bytes after this header */
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_hdr) == 8, "synthhid_hdr");

struct synthhid_protocol_request {
	struct synthhid_hdr hdr; /* size 4 */
	uint32_t version;
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_protocol_request) == 12, "synthhid_protocol_request");

/* Linux copies the pipe message into a 21-byte buffer and WARNs (dropping it) when pipe.size says
 * more than 13: the answer must be exactly this. */
struct synthhid_protocol_response {
	struct synthhid_hdr hdr; /* size 5 */
	uint32_t version;        /* the one requested */
	uint8_t approved;        /* 1: accepted; 0 fails the probe */
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_protocol_response) == 13, "synthhid_protocol_response");

/* struct hv_input_dev_info */
struct synthhid_dev_info {
	uint32_t size;
	uint16_t vendor, product, version; /* become the hid_device's ids */
	uint16_t reserved[11];
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_dev_info) == 32, "synthhid_dev_info");

/* The HID class descriptor with one report descriptor; the report descriptor follows it (Linux
 * takes it from bLength bytes after its start, wDescriptorLength bytes). */
struct synthhid_hid_descriptor {
	uint8_t bLength;         /* 9 */
	uint8_t bDescriptorType; /* 0x21 HID */
	uint16_t bcdHID;
	uint8_t bCountryCode;
	uint8_t bNumDescriptors; /* 1 */
	uint8_t bReportType;     /* 0x22 report */
	uint16_t wDescriptorLength;
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_hid_descriptor) == 9, "synthhid_hid_descriptor");

struct synthhid_device_info {
	struct synthhid_hdr hdr; /* size: 41 + the report descriptor */
	struct synthhid_dev_info info;
	struct synthhid_hid_descriptor hid;
	/* the report descriptor */
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_device_info) == 49, "synthhid_device_info");

struct synthhid_device_info_ack {
	struct synthhid_hdr hdr; /* size 1 */
	uint8_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_device_info_ack) == 9, "synthhid_device_info_ack");

/* hdr.size report bytes follow (Linux copies at most HID_MAX_BUFFER_SIZE of them). */
struct synthhid_input_report {
	struct synthhid_hdr hdr;
} __attribute__((packed));
_Static_assert(sizeof(struct synthhid_input_report) == 8, "synthhid_input_report");

#endif
