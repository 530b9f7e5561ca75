/* Test device: a VMBus echo channel, for tests and benches only (enabled with --test-devices).
 *
 * Every INBAND packet the guest sends comes back as an INBAND packet with the same trans_id and the
 * same payload bytes (offset8..len8, i.e. padded to 8 bytes). One control request, sent INBAND with
 * VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, asks for sub-channels:
 *   struct testdev_ctl { u32 magic TESTDEV_CTL_MAGIC; u32 op TESTDEV_OP_SUBCHANNELS; u32 count; u32 rsvd }
 * answered by a VM_PKT_COMP with the same trans_id and { u32 status (0 ok); u32 offered }.
 * Sub-channels echo too. Packets other than INBAND are dropped.
 *
 * Threads: everything runs in rx_ready, on the thread servicing the channel (the device model of
 * vmbus/server.h); a full host->guest ring holds the echo until the guest signals that it read.
 */
#ifndef GEN2VM_DEVICES_TESTDEV_H
#define GEN2VM_DEVICES_TESTDEV_H

#include <stdint.h>

#include "gen2vm/proto/testdev.h"
#include "vmbus/server.h"

struct testdev;

/* Registers an echo device with instance number `instance` (makes the instance GUID) and room for
 * max_subchannels sub-channels. Call with the server lock held. Returns 0 or -errno. */
int testdev_create(struct vmbus_server *srv, uint32_t instance, uint16_t max_subchannels, struct testdev **out);

/* The device's VMBus handle (for tests that look at its channels). */
struct vmbus_device *testdev_vmbus_device(struct testdev *td);

/* Hot-removes the device (channels rescinded) and frees it. Server lock held. NULL is fine. */
void testdev_destroy(struct testdev *td);

/* Packets echoed so far (all channels). */
uint64_t testdev_echoed(const struct testdev *td);

#endif
