/* The unit tests' integration-services fixture: a VM's VMBus server with its integration services
 * from the registry (src/devices/vmdev.h), a loopback guest, and the guest side of the IC protocol
 * as Linux's hv_utils speaks it (receive a host request, answer it in place, negotiate). Shared by
 * test_ic.c, test_ic_kvp.c, test_ic_fcopy.c and test_ic_vss.c. */
#ifndef GEN2VM_TESTS_IC_FIXTURE_H
#define GEN2VM_TESTS_IC_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"
#include "support/loopback.h"

struct fx {
	struct vmbus_loopback lb;
	pthread_mutex_t lock;
	struct vmdev_host h;
	struct vmdev_config cfg;
	struct vmdev_set set;
};

/* The ring pads every payload to 8 bytes, and the guest sees the padding (Linux too). */
#define PADDED(n) (((uint32_t)(n) + 7u) & ~7u)

extern const struct ic_version ic_fx_fw_all[2]; /* the framework versions the host offers: 3.0, 1.0 */

/* Creates the VM (list: --integration-services, NULL for the defaults; hooks: stop_vm, utc_now,
 * ref_time_now, nics and opaque are taken from it, NULL for none) and connects the guest. */
void ic_fx_init(struct fx *f, const char *list, const struct vmdev_host *hooks);
void ic_fx_destroy(struct fx *f);
/* Runs the verb cmd ("name arg ...", split at spaces) of the running class named cls (NULL: any). */
int ic_fx_verb(struct fx *f, const char *cls, const char *cmd, char *reply, size_t len);
/* A verb run on a thread of its own, for the verbs that wait for the guest's answer: the loopback
 * guest (the test's thread) answers meanwhile. */
struct ic_fx_call {
	struct fx *f;
	char cmd[512];
	char reply[1024];
	int rc;
	bool done;
	pthread_t t;
};
void ic_fx_verb_start(struct ic_fx_call *c, struct fx *f, const char *cmd);
/* Whether it has returned (the guest can stop serving). */
bool ic_fx_verb_done(struct ic_fx_call *c);
/* Waits for it to return: its return code (its reply in c->reply). */
int ic_fx_verb_join(struct ic_fx_call *c);
const struct vmbus_client_offer *ic_fx_offer(struct fx *f, const char *guid);
/* Opens the service's channel with hv_utils' 12 KiB rings. */
void ic_fx_open(struct fx *f, const char *guid, struct vmbus_client_channel *ch);

/* A host packet: its payload copied to pkt (room for 16 KiB), its length and transaction id; false
 * when none is waiting. */
bool ic_guest_recv(struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans);
/* Like ic_guest_recv, but lets the host's timers fire for up to ms. */
bool ic_guest_wait(struct fx *f, struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans,
		   int ms);
struct ic_msg_hdr ic_hdr_of(const uint8_t *pkt);
void ic_guest_send(struct vmbus_client_channel *ch, uint64_t trans, const uint8_t *pkt, uint32_t len);
/* Answers in place as hv_utils does: marks it a response with status. */
void ic_guest_respond(struct vmbus_client_channel *ch, uint64_t trans, uint8_t *pkt, uint32_t len, uint32_t status);
/* Receives the NEGOTIATE, checks the versions offered (the framework's and want_msg), and answers
 * fw/msg (counts 0 when fw.major is 0). */
void ic_guest_negotiate(struct vmbus_client_channel *ch, const struct ic_version *want_msg, unsigned nr_msg,
			struct ic_version fw, struct ic_version msg);

#endif
