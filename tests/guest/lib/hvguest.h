/* Guest-side Hyper-V plumbing for test guests: hypercall page, SynIC pages (polled: interrupts stay
 * off), and the platform ops the shared VMBus client library needs. */
#ifndef GEN2VM_GUEST_HVGUEST_H
#define GEN2VM_GUEST_HVGUEST_H

#include "guest.h"
#include "vmbus_client.h"

/* Sets the guest OS id, the hypercall page, SIMP/SIEFP, SINT2 (vector 0xF3) and SCONTROL. */
void hvguest_init(void);
uint64_t hvguest_hypercall(uint64_t control, uint64_t in, uint64_t out);
/* Calls the hypercall page at `page` (RCX control, RDX/R8 inputs); returns RAX. */
uint64_t hvguest_call(const void *page, uint64_t control, uint64_t in, uint64_t out);
extern const struct vmbus_client_ops hvguest_vmbus_ops;
/* The SynIC event flags of sint (256 bytes of the SIEF page): bit relid is set by a channel signal. */
volatile uint8_t *hvguest_event_flags(unsigned sint);

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

#endif
