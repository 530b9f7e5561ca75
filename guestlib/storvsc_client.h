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

/* Parses one packet read from the channel (buf, len as vmbus_client_recv returned them): *id its
 * transaction id (0 for the host's own ENUMERATE_BUS), *pk its payload, zero-padded. Returns 0 or
 * -VMBUS_EPROTO when the descriptor does not fit the packet. */
int storvsc_client_parse(const void *buf, uint32_t len, uint64_t *id, struct storvsp_packet *pk);

#endif
