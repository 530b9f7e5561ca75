/* The KVM layer: the only code in gen2vm that includes <linux/kvm.h>.
 *
 * Everything above this layer sees KVM through these functions and gen2vm's own types (vmm/x86.h).
 * All functions return 0 or a negative errno unless stated otherwise; none of them exits the process.
 */
#ifndef GEN2VM_KVM_KVM_H
#define GEN2VM_KVM_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/x86.h"

struct kvm_vm;
struct kvm_vcpu;

/* Opens /dev/kvm, checks the API version and the capabilities gen2vm relies on, and creates a VM with
 * a split irqchip (in-kernel LAPICs, userspace IOAPIC with nr_ioapic_pins routes, no PIC/PIT) and
 * userspace MSR exits. On failure returns -errno and writes a user-facing explanation to err
 * ("/dev/kvm: permission denied (add your user to the kvm group)"). *out is owned by the caller. */
int kvm_vm_create(struct kvm_vm **out, unsigned nr_ioapic_pins, char *err, size_t errlen);
void kvm_vm_destroy(struct kvm_vm *vm);

/* Maps guest RAM [gpa, gpa+size) to host memory at hva. slot numbers are the caller's choice. */
int kvm_vm_set_memory(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva);
/* The same, with KVM's dirty page log on the slot (KVM_MEM_LOG_DIRTY_PAGES): the guest's first write
 * to a page after each kvm_vm_dirty_log is recorded, in the kernel, without an exit to us. */
int kvm_vm_set_memory_logged(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva);
/* Copies a logged slot's dirty bitmap (one bit a 4 KiB page from the slot's start, in 64-bit words:
 * room for the slot's pages rounded up to 64) into bitmap and clears it (the pages are write-protected
 * again). 0 or -errno. */
int kvm_vm_dirty_log(struct kvm_vm *vm, uint32_t slot, uint64_t *bitmap);

/* MSR ranges that exit to userspace (KVM_X86_SET_MSR_FILTER denies them in-kernel). */
struct kvm_msr_range {
	uint32_t first, count;
	bool read, write;
};
/* Installs the whole filter (it replaces any earlier one). At most 16 ranges. */
int kvm_vm_filter_msrs(struct kvm_vm *vm, const struct kvm_msr_range *ranges, unsigned n);

/* Injects an MSI (address/data as the LAPIC sees them). */
int kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t address, uint32_t data);

/* Binds an eventfd to an MSI through a GSI route so that a write to efd interrupts without a syscall
 * into the VMM; gsi is the caller's route number (>= nr_ioapic_pins). Routes are replaced as a set. */
int kvm_vm_add_msi_route(struct kvm_vm *vm, uint32_t gsi, uint64_t address, uint32_t data);
int kvm_vm_irqfd(struct kvm_vm *vm, int efd, uint32_t gsi, bool assign);

/* Port I/O doorbell: a guest write of `len` bytes to `port` (matching `datamatch` when has_match)
 * signals efd in the kernel, with no exit to userspace. */
int kvm_vm_ioeventfd(struct kvm_vm *vm, int efd, uint16_t port, uint8_t len, bool has_match,
		     uint64_t datamatch, bool assign);

/* The host's KVM_GET_SUPPORTED_CPUID table; caller frees *out. */
int kvm_supported_cpuid(struct kvm_vm *vm, struct x86_cpuid_entry **out, unsigned *count);


/* ---- vCPUs ---- */

enum vcpu_exit_reason {
	VCPU_EXIT_INTR,       /* KVM_RUN interrupted (kick, immediate_exit, signal): check VM state */
	VCPU_EXIT_IO,
	VCPU_EXIT_MMIO,
	VCPU_EXIT_MSR_READ,
	VCPU_EXIT_MSR_WRITE,
	VCPU_EXIT_EMULATION,  /* KVM's emulator rejected an instruction: insn bytes attached */
	VCPU_EXIT_SHUTDOWN,   /* triple fault */
	VCPU_EXIT_HLT,
	VCPU_EXIT_SYSTEM_EVENT,
	VCPU_EXIT_IOAPIC_EOI,
	VCPU_EXIT_INTERNAL,   /* other internal error */
	VCPU_EXIT_FAIL_ENTRY,
	VCPU_EXIT_OTHER,
	VCPU_EXIT__COUNT
};

/* One exit. Pointers point into the vCPU's shared run area: valid until the next kvm_vcpu_run. */
struct vcpu_exit {
	enum vcpu_exit_reason reason;
	uint32_t raw_reason; /* KVM's own number, for messages */
	union {
		struct {
			uint16_t port;
			uint8_t size;  /* 1, 2 or 4 */
			bool write;
			uint32_t count; /* >1 for rep ins/outs: `count` items of `size` bytes back to back */
			uint8_t *data;
		} io;
		struct {
			uint64_t addr;
			uint8_t len;
			bool write;
			uint8_t *data;
		} mmio;
		struct {
			uint32_t index;
			uint64_t *data;  /* read: the handler stores the value; write: the value written */
			uint8_t *error;  /* set to 1 to inject #GP */
		} msr;
		struct {
			uint32_t suberror;
			uint8_t insn_len;
			uint8_t insn[15];
			uint32_t ndata;
			uint64_t data[16];
		} internal;
		struct {
			uint32_t type;
		} system_event;
		struct {
			uint8_t vector;
		} eoi;

		uint64_t hw_reason;
	};
};

/* Creates vCPU `id` (also its APIC id). With the in-kernel LAPIC, vCPUs other than 0 wait for
 * INIT/SIPI inside KVM_RUN. */
int kvm_vcpu_create(struct kvm_vm *vm, unsigned id, struct kvm_vcpu **out);
void kvm_vcpu_destroy(struct kvm_vcpu *vcpu);

/* Runs until the next exit and fills *exit. Returns 0, or -errno when KVM_RUN itself failed
 * (EINTR is not a failure: it is reported as VCPU_EXIT_INTR). */
int kvm_vcpu_run(struct kvm_vcpu *vcpu, struct vcpu_exit *exit);

/* Makes the vCPU leave KVM_RUN soon (or not enter it): callable from any thread. Signals the thread
 * bound with kvm_vcpu_bind_thread, if any; the caller must exclude a concurrent kvm_vcpu_unbind_thread
 * (a thread that has ended and been joined must never be signalled: glibc may crash on it). */
void kvm_vcpu_kick(struct kvm_vcpu *vcpu);
/* Records the calling thread as this vCPU's and installs the kick signal handler. */
void kvm_vcpu_bind_thread(struct kvm_vcpu *vcpu);
/* Called by the vCPU thread before it ends: later kicks no longer signal it. */
void kvm_vcpu_unbind_thread(struct kvm_vcpu *vcpu);
/* Clears a pending kick (call before deciding to run again). */
void kvm_vcpu_clear_kick(struct kvm_vcpu *vcpu);

int kvm_vcpu_get_regs(struct kvm_vcpu *vcpu, struct x86_regs *r);
int kvm_vcpu_set_regs(struct kvm_vcpu *vcpu, const struct x86_regs *r);
int kvm_vcpu_get_sregs(struct kvm_vcpu *vcpu, struct x86_sregs *s);
int kvm_vcpu_set_sregs(struct kvm_vcpu *vcpu, const struct x86_sregs *s);
int kvm_vcpu_set_cpuid(struct kvm_vcpu *vcpu, const struct x86_cpuid_entry *e, unsigned count);
int kvm_vcpu_get_msr(struct kvm_vcpu *vcpu, uint32_t index, uint64_t *value);
int kvm_vcpu_set_msr(struct kvm_vcpu *vcpu, uint32_t index, uint64_t value);
/* TSC frequency this vCPU runs at, in kHz (0 if unknown). */
uint32_t kvm_vcpu_tsc_khz(struct kvm_vcpu *vcpu);
/* Reads XCR0. */
int kvm_vcpu_get_xcr0(struct kvm_vcpu *vcpu, uint64_t *xcr0);

/* The extended state in the standard XSAVE layout. size is the buffer size (>= kvm_vcpu_xsave_size). */
size_t kvm_vcpu_xsave_size(struct kvm_vcpu *vcpu);
int kvm_vcpu_get_xsave(struct kvm_vcpu *vcpu, void *buf, size_t size);
int kvm_vcpu_set_xsave(struct kvm_vcpu *vcpu, const void *buf, size_t size);

/* Queues an exception (with an optional error code; CR2 for #PF is set through sregs by the caller)
 * or a software interrupt for delivery at the next entry. */
int kvm_vcpu_inject_exception(struct kvm_vcpu *vcpu, uint8_t vector, bool has_error, uint32_t error_code);
int kvm_vcpu_inject_soft_interrupt(struct kvm_vcpu *vcpu, uint8_t vector, uint8_t insn_len);

/* Sets the LAPIC's LINT0 to ExtINT-less virtual wire and LINT1 to NMI, as firmware would. */
int kvm_vcpu_setup_lapic(struct kvm_vcpu *vcpu);

/* The vCPU's whole architectural state, for a saved VM: general, segment, control and debug
 * registers, XSAVE state and XCRs, the MSRs KVM keeps (KVM_GET_MSR_INDEX_LIST: TSC, APIC base, SYSCALL
 * MSRs, PAT...), the LAPIC, pending events and the MP state. save allocates *out (*len bytes, the
 * caller frees it) in this layer's own format: records of u32 tag, u32 length, then the bytes padded
 * to 8. The vCPU must be outside KVM_RUN. 0 or -errno. */
int kvm_vcpu_state_save(struct kvm_vcpu *vcpu, uint8_t **out, size_t *len);
/* Loads what kvm_vcpu_state_save wrote into a vCPU created but not yet run (its CPUID set). buf is
 * host input: every record's tag and length is checked, and each one must be there exactly once;
 * KVM checks the values. 0, or -EINVAL with a reason in err (errlen bytes), or the -errno of the
 * ioctl that refused (also with a reason). */
int kvm_vcpu_state_restore(struct kvm_vcpu *vcpu, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* True when the vCPU sits waiting for INIT/SIPI (an AP that was never started). */
bool kvm_vcpu_is_waiting_sipi(struct kvm_vcpu *vcpu);

#endif
