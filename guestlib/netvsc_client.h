/* netvsc guest side, the protocol pieces without I/O (freestanding C): parsing what netvsp sends
 * (transfer-page packets, RNDIS data messages) and building what a client sends (RNDIS data, QUERY and
 * SET messages). Shared by the host-side loopback client (src/devices/netvsc_guest.c: unit tests,
 * bench, fuzzers) and the test guests (tests/guest/netping.c), so both speak the same bytes.
 * Everything is bounds-checked: a test client must not be fooled by a broken host either. */
#ifndef GEN2VM_GUESTLIB_NETVSC_CLIENT_H
#define GEN2VM_GUESTLIB_NETVSC_CLIENT_H

#include <stdint.h>

#include "gen2vm/proto/netvsc.h"
#include "gen2vm/proto/vmbus.h"

/* A packet from the host (pkt: descriptor first, len bytes): its descriptor in *desc and the NVSP
 * message at offset8 * 8 in *m (what the packet holds of it, the rest zeroed). Returns 0, or -1 when
 * the packet is shorter than a descriptor or its offset lies outside it. */
int netvsc_packet_peel(const uint8_t *pkt, uint32_t len, struct vmbus_packet_descriptor *desc,
		       struct nvsp_message *m);

/* *m becomes NVSP's "send RNDIS packet" for one send-buffer section: channel_type
 * NVSP_CHANNEL_TYPE_DATA or _CONTROL, size bytes of RNDIS message in that section. */
void netvsc_rndis_msg_init(struct nvsp_message *m, uint32_t channel_type, uint32_t section, uint32_t size);

/* *m becomes the receive completion that hands a transfer-page packet's receive-buffer sections back
 * to the host (NVSP "send RNDIS packet complete", success). The caller sends it as VM_PKT_COMP with
 * that packet's transaction id; until it does, the host cannot reuse the sections. */
void netvsc_rx_complete_init(struct nvsp_message *m);

/* For a VM_PKT_DATA_USING_XFER_PAGES packet (pkt: descriptor first, len bytes) whose NVSP message
 * starts at the descriptor's offset8 * 8: calls fn for each range that lies inside the receive
 * buffer (rbuf, rbuf_size bytes) and holds at least an RNDIS header. Returns the number of ranges
 * passed to fn, or -1 when the packet is not a transfer-page packet or its range list is cut short. */
int netvsc_xfer_for_each(const uint8_t *pkt, uint32_t len, const uint8_t *rbuf, uint32_t rbuf_size,
			 void (*fn)(void *ctx, const uint8_t *msg, uint32_t len), void *ctx);

/* An RNDIS data message (msg, len bytes, header included): *frame and *flen get its frame, *p its
 * body. Returns 0, or -1 when it is not a data message or its offsets leave the message. */
int netvsc_rndis_packet_parse(const uint8_t *msg, uint32_t len, struct rndis_packet *p, const uint8_t **frame,
			      uint32_t *flen);

/* The value of per-packet info `type` in the data message parsed into p (4 bytes): 0, or -1 when
 * absent or malformed. */
int netvsc_rndis_ppi_get(const uint8_t *msg, uint32_t len, const struct rndis_packet *p, uint32_t type,
			 uint32_t *value);

/* Builds an RNDIS data message for a frame of flen bytes at out (cap bytes), with the per-packet info
 * elements ppi_type[i] = ppi_value[i] (4-byte values; nppi <= 4). Returns its length (8-aligned,
 * padding zeroed) or 0 when it does not fit. */
uint32_t netvsc_rndis_packet_build(uint8_t *out, uint32_t cap, const uint8_t *frame, uint32_t flen,
				   const uint32_t *ppi_type, const uint32_t *ppi_value, uint32_t nppi);

/* Builds an RNDIS QUERY or SET (type) for oid with inlen bytes of input. Returns its length, or 0
 * when it does not fit in cap. */
uint32_t netvsc_rndis_request_build(uint8_t *out, uint32_t cap, uint32_t type, uint32_t req_id, uint32_t oid,
				    const void *in, uint32_t inlen);

#endif
