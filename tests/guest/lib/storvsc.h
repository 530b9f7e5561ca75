/* A storvsc for test guests: the first SCSI controller's primary channel, the init sequence, SRBs
 * (guestlib/storvsc_client builds and parses the packets), and waiting for replies either on the
 * channel interrupt (SynIC SINT2 -> local APIC, EOI to the APIC, HLT while idle) or by polling. */
#ifndef GEN2VM_GUEST_STORVSC_H
#define GEN2VM_GUEST_STORVSC_H

#include "hvguest.h"
#include "storvsc_client.h"

struct gstorvsc {
	struct vmbus_client cl;
	struct vmbus_client_channel ch;
	volatile uint8_t *events; /* SIEF slot of SINT2 */
	uint64_t rxbuf[512];
	struct storvsp_packet reply; /* the last packet gstorvsc_recv returned */
};

/* Calls hvguest_init, connects VMBus, opens the first SCSI controller's channel and runs
 * BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION (6.2), QUERY_PROPERTIES, END_INITIALIZATION.
 * Returns 0 or a small positive error code (the step that failed). */
int gstorvsc_open(struct gstorvsc *s);

/* hvguest_channel_irq_install, then sets IF (hvguest_channel_irqs counts the interrupts). */
void gstorvsc_irq_enable(void);

/* Sends an SRB (lun 0) with the buffer buf (identity-mapped, physically contiguous) as request id.
 * Returns 0 or a VMBus error (-VMBUS_EAGAIN: ring full). */
int gstorvsc_submit(struct gstorvsc *s, uint64_t id, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in,
		    void *buf, uint32_t len);

/* The next packet from the host into s->reply: 0 with *id, or a VMBus error. irq: sleep on the
 * channel interrupt while the ring is empty (gstorvsc_irq_enable first), else spin. */
int gstorvsc_recv(struct gstorvsc *s, bool irq, uint64_t *id);

/* submit + wait for that id (polled); s->reply holds the answer. Returns 0 or a VMBus error. */
int gstorvsc_run(struct gstorvsc *s, uint64_t id, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in, void *buf,
		 uint32_t len);

#endif
