/* Hyper-V TLFS emulation: CPUID leaves 0x40000000+, synthetic MSRs, hypercall page, reference time,
 * crash MSRs and the SynIC (message slots with msg_pending/EOM flow control, event flags).
 *
 * No KVM here: the VMM routes MSR exits in 0x40000000-0x400001FF to hv_msr_read/hv_msr_write, reads the
 * CPUID entries from hv_cpuid_fill, and supplies interrupt injection and the guest TSC through hv_ops.
 * Thread safety: partition-wide state is under hv->lock; a VP's registers are written by its own vCPU
 * thread; a VP's message queues are under vp->lock, so hv_synic_post/hv_synic_signal may be called from
 * any thread.
 */
#ifndef GEN2VM_HV_HV_H
#define GEN2VM_HV_HV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gen2vm/proto/hv.h"
#include "vmm/memory.h"
#include "vmm/x86.h"

#define HV_MSR_FIRST 0x40000000u
#define HV_MSR_COUNT 0x200u
#define HV_HYPERCALL_PORT 0x91 /* the hypercall page's OUT imm8 (not 0x80, io_delay) */
#define HV_SIGNAL_PORT 0x92    /* the page's fast HvSignalEvent: OUT imm8, EAX = connection id */
#define HV_SYNIC_QUEUE_MAX 1024 /* queued messages per SINT before posts are refused */

struct hv_queued_msg {
	struct hv_queued_msg *next;
	uint32_t type;
	uint8_t len;
	uint8_t payload[HV_MESSAGE_PAYLOAD_BYTE_COUNT];
};

struct hv_vp {
	uint32_t index;
	uint64_t vp_assist;
	uint64_t scontrol, siefp, simp;
	uint64_t sint[HV_SYNIC_SINT_COUNT];
	pthread_mutex_t lock; /* the queues */
	struct hv_queued_msg *head[HV_SYNIC_SINT_COUNT], *tail[HV_SYNIC_SINT_COUNT];
	unsigned qlen[HV_SYNIC_SINT_COUNT];
	uint64_t delivered, interrupts;
};

/* What the partition asks of the VMM. */
struct hv_ops {
	void *opaque;
	/* The guest reported a crash through the crash MSRs; msg may be NULL. */
	void (*crash)(void *opaque, const uint64_t p[5], const char *msg);
	/* Interrupt VP vp with a fixed, edge-triggered vector (a SINT's). */
	void (*interrupt)(void *opaque, uint32_t vp, uint8_t vector);
	/* The VP's current guest TSC (for TIME_REF_COUNT); 0 when unknown. */
	uint64_t (*guest_tsc)(void *opaque, uint32_t vp);
	/* HvPostMessage from VP vp with its input page at input_gpa; returns the HV status. Optional
	 * (without it the hypercall is not implemented). */
	uint16_t (*post_message)(void *opaque, uint32_t vp, uint64_t input_gpa);
	/* HvSignalEvent on connection_id; returns the HV status. Optional, as post_message. */
	uint16_t (*signal_event)(void *opaque, uint32_t connection_id);
};

struct hv_partition {
	pthread_mutex_t lock;
	const struct guest_mem *mem;
	struct hv_ops ops;
	unsigned nr_vps;
	struct hv_vp *vps; /* nr_vps entries, owned by the caller */
	uint64_t tsc_hz, apic_hz;
	uint64_t tsc_scale; /* 2^64 * 10^7 / tsc_hz: ref time = guest_tsc * scale >> 64 */
	uint64_t guest_os_id;
	uint64_t hypercall;
	uint64_t reference_tsc;
	uint64_t crash_p[5];
	bool crashed;
};

/* vps: nr_vps VP structs the caller owns; hv_partition_init initialises them (VP index = array index). */
void hv_partition_init(struct hv_partition *hv, const struct guest_mem *mem, struct hv_vp *vps, unsigned nr_vps,
		       uint64_t tsc_hz, uint64_t apic_hz, const struct hv_ops *ops);
/* Frees queued messages. */
void hv_partition_destroy(struct hv_partition *hv);

/* Appends the hypervisor CPUID leaves to e[*n] (room for `max` entries in all) and sets the
 * hypervisor-present bit of leaf 1. Returns 0 or -ENOSPC. */
int hv_cpuid_fill(struct hv_partition *hv, struct x86_cpuid_entry *e, unsigned *n, unsigned max);

/* Synthetic MSR access for one VP. Return 0, or -ENOENT/-EINVAL: the guest gets #GP, as on Hyper-V. */
int hv_msr_read(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t *value);
int hv_msr_write(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t value);

/* Executes the hypercall VP vp made through the hypercall page's slow path (OUT HV_HYPERCALL_PORT):
 * r holds its registers (RCX the control word, RDX/R8 the input and output GPAs or fast inputs);
 * the status goes to r's RAX, which the caller writes back. A malformed control word or input gets
 * the status Hyper-V gives it; an unknown call code a rate-limited log line. */
void hv_hypercall(struct hv_partition *hv, uint32_t vp, struct x86_regs *r);

/* Queues a message (len <= 240) for SINT sint of VP vp and delivers it when the slot is free: written
 * payload first, type last, then the SINT's interrupt; a busy slot gets msg_pending and the next message
 * goes out on EOM. Returns 0, -EINVAL (bad vp/sint/len), -EAGAIN (queue full), -ENOMEM. */
int hv_synic_post(struct hv_partition *hv, uint32_t vp, unsigned sint, uint32_t type, const void *payload,
		  unsigned len);
/* Sets event flag `flag` of SINT sint in VP vp's SIEF page; interrupts when the flag was clear.
 * Returns 0, -EINVAL, or -EAGAIN when the SynIC or SIEF page is disabled (the event is dropped). */
int hv_synic_signal(struct hv_partition *hv, uint32_t vp, unsigned sint, unsigned flag);
/* Retries delivery of every queued message (a safety net, called from a timer). */
void hv_synic_poll(struct hv_partition *hv);
/* The partition's state for a saved VM (struct savestate_hv and what follows it): allocates *out
 * (*len bytes; the caller frees it). The vCPUs must be paused. 0 or -ENOMEM. */
int hv_save(struct hv_partition *hv, uint8_t **out, size_t *len);
/* Loads what hv_save wrote into a partition just initialised with the same number of VPs. buf is host
 * input: every count, SINT and length is checked. 0, or -EINVAL with a reason in err. */
int hv_restore(struct hv_partition *hv, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* Messages waiting in all queues. */
unsigned hv_synic_queued(struct hv_partition *hv);

#endif
