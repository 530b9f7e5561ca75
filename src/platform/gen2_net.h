/* Network adapters of a generation 2 VM: attach the --nic entries to the VMBus server, hot add and
 * remove them while the VM runs, connect/disconnect their cables, and the control-socket commands for
 * all of that. Self-contained: the machine passes its server, the server lock, guest RAM, its vCPU
 * count and a stable per-VM seed (for generated MACs).
 *
 * WIRING (the lead, in platform/gen2.c once the machine has a struct vmbus_server):
 *   struct gen2_net net;
 *   gen2_net_init(&net, srv, &srv_lock, &mem, cpus, seed);       before the guest runs
 *   for each nic: gen2_net_add(&net, &cfg->nics[i], err, sizeof(err))   -> fail the start on error
 *   gen2_net_control_register(&net, control)                     when a control socket exists
 *   gen2_net_destroy(&net)                                        after the vCPUs stopped
 */
#ifndef GEN2VM_PLATFORM_GEN2_NET_H
#define GEN2VM_PLATFORM_GEN2_NET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/netvsp.h"
#include "net/nic.h"
#include "ui/control.h"
#include "vmbus/server.h"
#include "vmm/memory.h"

#define GEN2_NET_MAX 8u

struct gen2_net {
	struct vmbus_server *srv;
	pthread_mutex_t *srv_lock;
	const struct guest_mem *mem;
	uint32_t nr_vcpus;
	char seed[128];
	pthread_mutex_t lock; /* the slots below */
	struct netvsp *nic[GEN2_NET_MAX];
	struct nic_config cfg[GEN2_NET_MAX];
	uint8_t mac[GEN2_NET_MAX][6];
	uint32_t instance[GEN2_NET_MAX];
	uint32_t next_instance;
};

void gen2_net_init(struct gen2_net *n, struct vmbus_server *srv, pthread_mutex_t *srv_lock,
		   const struct guest_mem *mem, uint32_t nr_vcpus, const char *seed);

/* Creates the backend and the adapter (queues: the entry's, else one per vCPU up to 8), offered to
 * the guest at once if it is running (hot add). Takes the server lock itself. Returns the slot (>= 0)
 * or -errno with a message in err. */
int gen2_net_add(struct gen2_net *n, const struct nic_config *c, char *err, size_t errlen);

/* Hot removal (rescind) of slot. Returns 0 or -ENOENT. */
int gen2_net_remove(struct gen2_net *n, uint32_t slot);

/* Cable connect (up) / disconnect. Returns 0 or -ENOENT. */
int gen2_net_set_link(struct gen2_net *n, uint32_t slot, bool up);

/* Registers nic-list, nic-link, nic-speed, nic-add, nic-remove. */
int gen2_net_control_register(struct gen2_net *n, struct control *c);

void gen2_net_destroy(struct gen2_net *n);

#endif
