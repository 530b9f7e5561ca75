/* storvsc wire helpers (freestanding C): the EXECUTE_SRB packet as Linux's hv_storvsc sends it and
 * the parsing of what comes back. Shared by the host-side loopback client (src/devices/storvsc_guest.c)
 * and the test guests (tests/guest/storvsc_*.c); waiting for replies stays with each caller, since
 * a host process polls its loopback and a guest sleeps on the channel interrupt. */
#ifndef GEN2VM_GUESTLIB_STORVSC_CLIENT_H
#define GEN2VM_GUESTLIB_STORVSC_CLIENT_H

#include <stdint.h>

#include "gen2vm/proto/storvsp.h"
#include "vmbus_client.h"

/* Most pages one request's buffer may span: 1 MiB that does not start on a page boundary. */
#define STORVSC_CLIENT_MAX_PAGES 257u

/* Fills *pk as an EXECUTE_SRB for cdb (its first min(cdb_len, 16) bytes; cdb_length says cdb_len) on path 0, target 0, lun, with data_in one of
 * STORVSP_DATA_* and a transfer of len bytes. */
void storvsc_client_srb(struct storvsp_packet *pk, const uint8_t *cdb, uint8_t cdb_len, uint8_t lun,
			uint8_t data_in, uint32_t len);

/* Sends pk as request id (completion requested): INBAND when len is 0, else GPA_DIRECT with one range
 * of len bytes at guest physical gpa (physically contiguous). Returns vmbus_client_send's result
 * (-VMBUS_EAGAIN: ring full), or -VMBUS_EINVAL when the buffer spans more than
 * STORVSC_CLIENT_MAX_PAGES pages. */
int storvsc_client_send(struct vmbus_client_channel *ch, uint64_t id, const struct storvsp_packet *pk, uint64_t gpa,
			uint32_t len);

/* One control round trip on the primary channel: sends *pk (completion requested), waits for the host's
 * answer to it and puts that answer's payload in *pk. Returns 0, or a negative code of the caller's
 * (-VMBUS_ETIMEDOUT for a timeout), which storvsc_client_init passes back unchanged. */
typedef int (*storvsc_client_ctrl_fn)(void *opaque, struct storvsp_packet *pk);

/* The initialisation handshake, as Linux's hv_storvsc does it: BEGIN_INITIALIZATION, then
 * QUERY_PROTOCOL_VERSION with version (or, when version is 0, WIN10, WIN8.1 and WIN8 in turn) until
 * the host accepts one, QUERY_PROPERTIES, END_INITIALIZATION. Returns 0 with *version_out and *props
 * set; ctrl's code when a round trip failed; -VMBUS_ENODEV when the host accepted no version;
 * -VMBUS_EPROTO when a version answer was not a completion; -VMBUS_EIO when another step failed. */
int storvsc_client_init(storvsc_client_ctrl_fn ctrl, void *opaque, uint16_t version, uint16_t *version_out,
			struct storvsp_properties *props);

/* Parses one packet read from the channel (buf, len as vmbus_client_recv returned them): *id its
 * transaction id (0 for the host's own ENUMERATE_BUS), *pk its payload, zero-padded. Returns 0 or
 * -VMBUS_EPROTO when the descriptor does not fit the packet. */
int storvsc_client_parse(const void *buf, uint32_t len, uint64_t *id, struct storvsp_packet *pk);

#endif
