/* A virtual machine: KVM VM, guest RAM, the PIO and MMIO buses, and one thread per vCPU.
 *
 * Life cycle: vm_create -> (machine code registers devices, loads images, sets vCPU state)
 * -> vm_start -> vm_wait (returns how the guest ended) -> vm_destroy.
 * vm_pause/vm_resume/vm_stop may be called from any thread, including vCPU threads and signal-safe
 * contexts' helper threads (not from signal handlers).
 */
#ifndef GEN2VM_VMM_VM_H
#define GEN2VM_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvm/kvm.h"
#include "vmm/bus.h"
#include "vmm/memory.h"

#define VM_MAX_VCPUS 64

/* How a VM ended; also the process exit code (see cli/cli.h). */
enum vm_exit_kind {
	VM_EXIT_NONE = -1,
	VM_EXIT_POWEROFF = 0,
	VM_EXIT_ERROR = 1,
	VM_EXIT_RESET = 3,
	VM_EXIT_CRASH = 4,
	VM_EXIT_NO_BOOT = 5, /* the firmware found nothing it could boot */
	VM_EXIT_SAVED = 6,   /* its state was saved (control `save`); the process ends */
};

struct vm;
struct vcpu;

/* Handler for MSRs routed to userspace. Return 0 when handled (reads fill *value), -ENOENT when the
 * MSR is unknown (the guest then gets #GP, as on hardware/Hyper-V), other -errno for #GP too. */
struct vm_msr_ops {
	void *opaque;
	int (*read)(void *opaque, struct vcpu *vcpu, uint32_t index, uint64_t *value);
	int (*write)(void *opaque, struct vcpu *vcpu, uint32_t index, uint64_t value);
};

/* Called on a vCPU thread when KVM could not emulate an instruction. Returns 0 when the instruction
 * was completed (or an exception queued) and the vCPU may run on; -errno stops the VM (the callee
 * has already stopped it with a message). */
typedef int (*vm_emulation_fn)(struct vcpu *vcpu, const uint8_t *insn, unsigned insn_len);

/* A port that needs the vCPU's registers (the hypercall page's OUT): called on the vCPU thread for
 * an OUT to vm->vcpu_port; it may read and write the vCPU's registers. */
typedef void (*vm_vcpu_port_fn)(struct vcpu *vcpu, void *opaque);

struct vcpu {
	struct vm *vm;
	unsigned id;
	struct kvm_vcpu *kvm;
	pthread_t thread;
	bool started;
	void *hv; /* per-vCPU Hyper-V state (src/hv) */
	uint64_t exits[VCPU_EXIT__COUNT]; /* counted by this vCPU's thread only */
	uint64_t completed_insns;
	uint64_t first_run_ns;          /* CLOCK_MONOTONIC at the first KVM_RUN */
};

enum vm_run_state { VM_RUNNING, VM_PAUSED, VM_STOPPING };

struct vm {
	struct kvm_vm *kvm;
	struct guest_mem mem;
	struct bus pio, mmio;
	unsigned nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct vm_msr_ops msr;
	vm_emulation_fn emulate;
	int vcpu_port; /* -1: none */
	vm_vcpu_port_fn vcpu_port_fn;
	void *vcpu_port_opaque;
	void (*eoi)(void *opaque, uint8_t vector); /* level-triggered EOI from a LAPIC */
	void *eoi_opaque;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_int run_state;
	unsigned nr_parked;   /* vCPU threads waiting in the pause loop */
	unsigned nr_exited;   /* vCPU threads that returned */
	enum vm_exit_kind exit_kind;
	char exit_msg[512];
};

/* Creates the KVM VM, maps ram_size bytes of RAM and creates nr_vcpus vCPUs (APIC ids 0..n-1).
 * On failure returns -errno with a user-facing message in err. */
int vm_create(struct vm *vm, uint64_t ram_size, unsigned nr_vcpus, char *err, size_t errlen);

/* Stops the vCPU threads if still running and frees everything. */
void vm_destroy(struct vm *vm);

/* Starts one thread per vCPU. */
int vm_start(struct vm *vm);

/* Blocks until the VM stops; joins the vCPU threads and returns the first recorded exit kind. */
enum vm_exit_kind vm_wait(struct vm *vm);

/* Ends the VM. The first call's kind and message win; later calls are ignored. */
void vm_stop(struct vm *vm, enum vm_exit_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Parks every vCPU outside KVM_RUN; returns when all are parked (or the VM is stopping).
 * Must not be called from a vCPU thread. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/* True when this host's KVM is PVM (module kvm_pvm): guest kernel mode is emulated, and SYSCALL from
 * the user mode of a guest that is not PVM-aware never reaches ring 0 (see README). */
bool vm_host_is_pvm(void);

#endif
