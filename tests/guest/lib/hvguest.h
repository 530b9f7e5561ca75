/* Guest-side Hyper-V plumbing for test guests: hypercall page, SynIC pages (polled: interrupts stay
 * off), and the platform ops the shared VMBus client library needs. */
#ifndef GEN2VM_GUEST_HVGUEST_H
#define GEN2VM_GUEST_HVGUEST_H

#include "guest.h"
#include "vmbus_client.h"

#define HVGUEST_SINT_VECTOR 0xF3 /* SINT2: VMBus channel interrupts */
#define HVGUEST_LAPIC 0xFEE00000ull

/* Sets the guest OS id, the hypercall page, SIMP/SIEFP, SINT2 (HVGUEST_SINT_VECTOR) and SCONTROL. */
void hvguest_init(void);
uint64_t hvguest_hypercall(uint64_t control, uint64_t in, uint64_t out);
/* Calls the hypercall page at `page` (RCX control, RDX/R8 inputs); returns RAX. */
uint64_t hvguest_call(const void *page, uint64_t control, uint64_t in, uint64_t out);
extern const struct vmbus_client_ops hvguest_vmbus_ops;
/* The SynIC event flags of sint (256 bytes of the SIEF page): bit relid is set by a channel signal. */
volatile uint8_t *hvguest_event_flags(unsigned sint);

/* The channel interrupt the way Linux takes it: installs a handler on HVGUEST_SINT_VECTOR that counts
 * and EOIs the local APIC (in KVM's kernel: no exit), and software-enables the local APIC. IF stays
 * as it is; the caller drains the rings and clears the event flags outside the handler. */
void hvguest_channel_irq_install(void);
/* Channel interrupts taken so far. */
uint64_t hvguest_channel_irqs(void);

/* Connects the VMBus client cl (vmbus_client_init with hvguest_vmbus_ops, the newest version the host
 * takes, VP 0) and asks for the offers. Returns 0 or the client library's error. */
int hvguest_vmbus_connect(struct vmbus_client *cl);

/* One request and its answer on an open channel, polled: sends len bytes of out as an INBAND packet
 * with trans_id id (waiting while the ring is full), then waits (up to about 10^8 polls) for the next
 * packet from the host and reads it, with its descriptor, into in (cap bytes); *n is its length.
 * Returns 0, -VMBUS_ETIMEDOUT when no answer came, or the client library's error. */
int hvguest_roundtrip(struct vmbus_client_channel *ch, uint64_t id, const void *out, uint32_t len, void *in,
		      uint32_t cap, uint32_t *n);

static inline void hvguest_lapic_eoi(void)
{
	mmio_write32(HVGUEST_LAPIC + 0xB0, 0);
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

#endif
