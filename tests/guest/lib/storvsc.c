/* A storvsc for test guests (see storvsc.h). */
#include "storvsc.h"

#define INIT_ID 0xFFFFFFFFFFFFFFFDull /* Linux's VMBUS_RQST_INIT */

void gstorvsc_irq_enable(void)
{
	hvguest_channel_irq_install();
	__asm__ volatile("sti");
}

int gstorvsc_recv(struct gstorvsc *s, bool irq, uint64_t *id)
{
	uint32_t relid = s->ch.relid;
	uint8_t bit = (uint8_t)(1u << (relid % 8));
	for (;;) {
		/* Clear the flag first: a packet written after the ring check below sets it again and
		 * interrupts (the host raises the interrupt only when the flag goes from 0 to 1). */
		if (irq)
			__atomic_and_fetch(&s->events[relid / 8], (uint8_t)~bit, __ATOMIC_SEQ_CST);
		uint32_t len;
		int r = vmbus_client_recv(&s->ch, s->rxbuf, sizeof(s->rxbuf), &len);
		if (r == 0) {
			vmbus_client_recv_done(&s->ch);
			return storvsc_client_parse(s->rxbuf, len, id, &s->reply);
		}
		if (r != -VMBUS_EAGAIN)
			return r;
		if (!irq) {
			cpu_relax();
			continue;
		}
		/* STI's one-instruction shadow covers HLT: an interrupt that arrived since the check
		 * wakes the HLT instead of being taken before it. */
		__asm__ volatile("cli");
		if (s->events[relid / 8] & bit)
			__asm__ volatile("sti" ::: "memory");
		else
			__asm__ volatile("sti; hlt" ::: "memory");
	}
}

static int ctrl(void *opaque, struct storvsp_packet *pk)
{
	struct gstorvsc *s = opaque;
	pk->flags = STORVSP_FLAG_REQUEST_COMPLETION;
	if (vmbus_client_send(&s->ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, INIT_ID, NULL,
			      0, pk, sizeof(*pk)))
		return -1;
	for (;;) {
		uint64_t id;
		if (gstorvsc_recv(s, false, &id))
			return -1;
		if (id == INIT_ID) {
			*pk = s->reply;
			return 0;
		}
	}
}

int gstorvsc_open(struct gstorvsc *s)
{
	hvguest_init();
	s->events = hvguest_event_flags(2);
	if (hvguest_vmbus_connect(&s->cl))
		return 1;
	struct vmbus_guid cls;
	vmbus_guid_parse(STORVSP_SCSI_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&s->cl, &cls, 0);
	if (!o) {
		gputs("storvsc: no SCSI controller (run with --disk FILE)\n");
		return 2;
	}
	uint8_t userdata[24] = { 0 };
	if (vmbus_client_channel_open(&s->cl, &s->ch, o->msg.child_relid, 64 << 10, 64 << 10, 0, userdata,
				      sizeof(userdata)))
		return 3;
	uint16_t version;
	struct storvsp_properties props;
	if (storvsc_client_init(ctrl, s, STORVSP_VERSION_WIN10, &version, &props))
		return 4;
	return 0;
}

int gstorvsc_submit(struct gstorvsc *s, uint64_t id, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in,
		    void *buf, uint32_t len)
{
	struct storvsp_packet pk;
	storvsc_client_srb(&pk, cdb, cdb_len, 0, data_in, len);
	return storvsc_client_send(&s->ch, id, &pk, (uint64_t)buf, buf ? len : 0); /* identity-mapped */
}

int gstorvsc_run(struct gstorvsc *s, uint64_t id, const uint8_t *cdb, uint8_t cdb_len, uint8_t data_in, void *buf,
		 uint32_t len)
{
	int r = gstorvsc_submit(s, id, cdb, cdb_len, data_in, buf, len);
	for (uint64_t got = 0; !r && got != id;)
		r = gstorvsc_recv(s, false, &got);
	return r;
}
