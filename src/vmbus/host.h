/* The VMBus host of a running VM: the pure server (vmbus/server.h) behind one lock, wired to the
 * SynIC (hv/hv.h) for messages and events, and to KVM for doorbells.
 *
 * Guest -> host signals of open channels arrive through an ioeventfd per channel on HV_SIGNAL_PORT
 * (datamatch = connection id): the hypercall page's fast HvSignalEvent path, which never leaves the
 * kernel's vCPU loop. A service thread reads the eventfds, calls the server, and retries queued SynIC
 * messages on a timer as a safety net. The same thread runs the device fds watched through
 * vmbus_channel_watch_fd (I/O completions), and the server's deferred work (notifier.work_pending:
 * sub-channel offers and GPADL_TORNDOWNs a device's own thread asked for) under the lock.
 *
 * Devices never get the lock: only the VMM's own code calls the server (through vmbus_host_lock, or
 * the mutex for platform code that locks it itself, such as gen2_net's hot add and removal).
 */
#ifndef GEN2VM_VMBUS_HOST_H
#define GEN2VM_VMBUS_HOST_H

#include <pthread.h>
#include <stdint.h>

#include "hv/hv.h"
#include "kvm/kvm.h"
#include "vmm/bus.h"
#include "vmbus/server.h"

struct vmbus_host;

/* Creates the host and starts its service thread. kvm may be NULL (no doorbells: signals then arrive
 * as port exits through vmbus_host_signal_event). Returns 0 or -errno. */
int vmbus_host_create(struct vmbus_host **out, const struct guest_mem *mem, struct hv_partition *hv,
		      struct kvm_vm *kvm);
/* Stops the thread, destroys the server (and its devices) and frees everything. NULL is fine. */
void vmbus_host_destroy(struct vmbus_host *h);

/* The server, for adding devices; hold vmbus_host_lock around every call into it. */
struct vmbus_server *vmbus_host_server(struct vmbus_host *h);
void vmbus_host_lock(struct vmbus_host *h);
void vmbus_host_unlock(struct vmbus_host *h);
/* The same lock, for the device classes' glue that calls vmbus_server_* (device add/remove) from the
 * setup, teardown and control-socket threads (struct vmdev_host.srv_lock). Never handed to a device. */
pthread_mutex_t *vmbus_host_mutex(struct vmbus_host *h);

/* Saving a VM: quiet holds the server lock and keeps the service thread's device callbacks (I/O
 * completions, the integration services' timers) and its SynIC retries from running, so that nothing writes guest memory
 * or the devices' state until unquiet. The vCPUs must be paused and the devices quiesced first
 * (their completions need the thread). Returns with h's lock held: calls into the server are fine. */
void vmbus_host_quiet(struct vmbus_host *h);
void vmbus_host_unquiet(struct vmbus_host *h);

/* HvPostMessage from VP vp with its input page at input_gpa: returns the HV status for RAX. */
uint16_t vmbus_host_post_message(struct vmbus_host *h, uint32_t vp, uint64_t input_gpa);
/* HvSignalEvent for connection_id (slow path, or a doorbell without an ioeventfd). */
uint16_t vmbus_host_signal_event(struct vmbus_host *h, uint32_t connection_id);

/* Claims HV_SIGNAL_PORT on the port bus: the hypercall page's fast HvSignalEvent (OUT, EAX = the
 * connection id) reaches the host there when no ioeventfd matched (a channel not open, or a host
 * without doorbells). 0 or -errno. */
int vmbus_host_attach_signal_port(struct vmbus_host *h, struct bus *pio);

#endif
