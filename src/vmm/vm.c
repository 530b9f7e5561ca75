#include "vmm/vm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

int vm_create(struct vm *vm, uint64_t ram_size, unsigned nr_vcpus, char *err, size_t errlen)
{
	memset(vm, 0, sizeof(*vm));
	vm->exit_kind = VM_EXIT_NONE;
	vm->mem.memfd = -1;
	vm->vcpu_port = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	bus_init(&vm->pio, "port I/O");
	bus_init(&vm->mmio, "MMIO");
	if (nr_vcpus < 1 || nr_vcpus > VM_MAX_VCPUS) {
		snprintf(err, errlen, "--cpus %u: must be between 1 and %d", nr_vcpus, VM_MAX_VCPUS);
		return -EINVAL;
	}
	int r = kvm_vm_create(&vm->kvm, 24, err, errlen);
	if (r)
		return r;
	r = guest_mem_init(&vm->mem, ram_size);
	if (r) {
		if (r == -EINVAL)
			snprintf(err, errlen, "--memory: %" PRIu64 " MiB is not a multiple of 2 MiB", ram_size >> 20);
		else
			snprintf(err, errlen, "--memory %" PRIu64 "M: cannot allocate guest RAM (%s)", ram_size >> 20,
				 strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		struct guest_mem_region *g = &vm->mem.region[i];
		r = kvm_vm_set_memory(vm->kvm, i, g->gpa, g->size, g->hva);
		if (r) {
			snprintf(err, errlen, "cannot map %" PRIu64 " MiB of guest RAM into KVM: %s", g->size >> 20,
				 strerror(-r));
			return r;
		}
	}
	vm->nr_vcpus = nr_vcpus;
	for (unsigned i = 0; i < nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->vm = vm;
		v->id = i;
		r = kvm_vcpu_create(vm->kvm, i, &v->kvm);
		if (r) {
			snprintf(err, errlen, "cannot create vCPU %u: %s", i, strerror(-r));
			return r;
		}
		r = kvm_vcpu_setup_lapic(v->kvm);
		if (r) {
			snprintf(err, errlen, "cannot set up the local APIC of vCPU %u: %s", i, strerror(-r));
			return r;
		}
	}
	atomic_store(&vm->run_state, VM_RUNNING);
	return 0;
}

/* Called with vm->lock held: a vCPU thread unbinds itself under the lock before it ends, so no kick can
 * signal a thread that has been joined. */
static void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].kvm)
			kvm_vcpu_kick(vm->vcpus[i].kvm);
}

void vm_stop(struct vm *vm, enum vm_exit_kind kind, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->exit_kind == VM_EXIT_NONE) {
		vm->exit_kind = kind;
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(vm->exit_msg, sizeof(vm->exit_msg), fmt, ap);
			va_end(ap);
		}
	}
	atomic_store(&vm->run_state, VM_STOPPING);
	pthread_cond_broadcast(&vm->cond);
	vm_kick_all(vm);
	pthread_mutex_unlock(&vm->lock);
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->run_state) == VM_RUNNING)
		atomic_store(&vm->run_state, VM_PAUSED);
	vm_kick_all(vm);
	while (atomic_load(&vm->run_state) == VM_PAUSED && vm->nr_parked + vm->nr_exited < vm->nr_vcpus)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->run_state) == VM_PAUSED)
		atomic_store(&vm->run_state, VM_RUNNING);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static bool vcpu_handle_exit(struct vcpu *v, struct vcpu_exit *x);

/* Returns false when the vCPU must leave its loop. */
static bool vcpu_check_state(struct vcpu *v)
{
	struct vm *vm = v->vm;
	kvm_vcpu_clear_kick(v->kvm);
	int st = atomic_load(&vm->run_state);
	if (st == VM_RUNNING)
		return true;
	if (st == VM_STOPPING)
		return false;
	/* Parked with its instruction whole, so that a paused VM's state may be read (regs) or saved:
	 * the last exit's completion (an IN's or MMIO read's data, an MSR read's value, RIP past a port
	 * write) happens in the next KVM_RUN, which with immediate_exit set does only that and returns
	 * EINTR, or, for a string instruction, exits again for its next piece, handled as usual. */
	struct vcpu_exit x;
	for (;;) {
		kvm_vcpu_kick(v->kvm); /* on its own thread: immediate_exit only */
		if (kvm_vcpu_run(v->kvm, &x) || x.reason == VCPU_EXIT_INTR)
			break;
		v->exits[x.reason]++;
		if (!vcpu_handle_exit(v, &x))
			return false;
	}
	kvm_vcpu_clear_kick(v->kvm);
	pthread_mutex_lock(&vm->lock);
	vm->nr_parked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->run_state) == VM_PAUSED)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->nr_parked--;
	st = atomic_load(&vm->run_state);
	pthread_mutex_unlock(&vm->lock);
	return st == VM_RUNNING;
}

static void vcpu_do_io(struct vcpu *v, struct vcpu_exit *x)
{
	uint8_t *p = x->io.data;
	if (x->io.write && x->io.port == v->vm->vcpu_port && v->vm->vcpu_port_fn) {
		v->vm->vcpu_port_fn(v, v->vm->vcpu_port_opaque);
		return;
	}
	for (uint32_t i = 0; i < x->io.count; i++, p += x->io.size)
		bus_access(&v->vm->pio, x->io.port, p, x->io.size, x->io.write);
}

bool vm_host_is_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

static void vcpu_do_msr(struct vcpu *v, struct vcpu_exit *x)
{
	struct vm_msr_ops *ops = &v->vm->msr;
	int r = -ENOENT;
	if (x->reason == VCPU_EXIT_MSR_READ) {
		uint64_t val = 0;
		if (ops->read)
			r = ops->read(ops->opaque, v, x->msr.index, &val);
		*x->msr.data = val;
	} else if (ops->write) {
		r = ops->write(ops->opaque, v, x->msr.index, *x->msr.data);
	}
	if (r) {
		*x->msr.error = 1;
		log_debug("vCPU %u: %s of MSR 0x%x -> #GP", v->id, x->reason == VCPU_EXIT_MSR_READ ? "read" : "write",
			  x->msr.index);
	}
}

static void vcpu_stop_with_regs(struct vcpu *v, enum vm_exit_kind kind, const char *what)
{
	struct x86_regs r = { 0 };
	kvm_vcpu_get_regs(v->kvm, &r);
	vm_stop(v->vm, kind, "vCPU %u: %s at RIP=0x%016" PRIx64, v->id, what, r.rip);
}

/* Handles one exit; returns false when the vCPU must stop. */
static bool vcpu_handle_exit(struct vcpu *v, struct vcpu_exit *x)
{
	struct vm *vm = v->vm;
	switch (x->reason) {
	case VCPU_EXIT_INTR:
		return true;
	case VCPU_EXIT_IO:
		vcpu_do_io(v, x);
		return true;
	case VCPU_EXIT_MMIO:
		bus_access(&vm->mmio, x->mmio.addr, x->mmio.data, x->mmio.len, x->mmio.write);
		return true;
	case VCPU_EXIT_MSR_READ:
	case VCPU_EXIT_MSR_WRITE:
		vcpu_do_msr(v, x);
		return true;
	case VCPU_EXIT_EMULATION:
		if (vm->emulate) {
			if (vm->emulate(v, x->internal.insn, x->internal.insn_len) == 0) {
				v->completed_insns++;
				return true;
			}
			return false;
		}
		vcpu_stop_with_regs(v, VM_EXIT_ERROR, "KVM cannot emulate an instruction");
		return false;
	case VCPU_EXIT_SHUTDOWN: {
		/* A triple fault resets a PC, so the caller reboots or stops as for a reset; but unlike a
		 * reset the guest asked for, it is a guest failure: say so on stderr with the state that
		 * explains it, whatever the log level. */
		struct x86_regs r = { 0 };
		struct x86_sregs sr = { 0 };
		kvm_vcpu_get_regs(v->kvm, &r);
		kvm_vcpu_get_sregs(v->kvm, &sr);
		/* KVM on AMD reinitialises the vCPU on a shutdown intercept: then all we read is the reset state. */
		bool lost = sr.cs.selector == 0xf000 && r.rip == 0xfff0;
		log_warn("vCPU %u: triple fault (the guest's exception handling failed; the VM resets)%s: RIP=0x%016" PRIx64
			 " RSP=0x%016" PRIx64 " RFLAGS=0x%" PRIx64 " CS=0x%04x CR0=0x%" PRIx64 " CR2=0x%016" PRIx64
			 " CR3=0x%016" PRIx64 " CR4=0x%" PRIx64 " EFER=0x%" PRIx64 " IDT=0x%016" PRIx64 "/%u",
			 v->id, lost ? "; this host's KVM reset the vCPU before its state could be read" : "", r.rip, r.gpr[X86_RSP], r.rflags, sr.cs.selector, sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.efer,
			 sr.idt.base, (unsigned)sr.idt.limit);
		vm_stop(vm, VM_EXIT_RESET, "vCPU %u: triple fault at RIP=0x%016" PRIx64, v->id, r.rip);
		return false;
	}
	case VCPU_EXIT_HLT:
		return true;
	case VCPU_EXIT_SYSTEM_EVENT:
		vm_stop(vm, VM_EXIT_RESET, "vCPU %u: system event %u", v->id, x->system_event.type);
		return false;
	case VCPU_EXIT_IOAPIC_EOI:
		if (vm->eoi)
			vm->eoi(vm->eoi_opaque, x->eoi.vector);
		return true;
	case VCPU_EXIT_INTERNAL: {
		char msg[96];
		snprintf(msg, sizeof(msg), "KVM internal error (suberror %u)", x->internal.suberror);
		vcpu_stop_with_regs(v, VM_EXIT_ERROR, msg);
		return false;
	}
	case VCPU_EXIT_FAIL_ENTRY:
		vm_stop(vm, VM_EXIT_ERROR, "vCPU %u: KVM failed to enter the guest (hardware reason 0x%" PRIx64 ")",
			v->id, x->hw_reason);
		return false;
	default:
		vm_stop(vm, VM_EXIT_ERROR, "vCPU %u: unexpected KVM exit %u", v->id, x->raw_reason);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	kvm_vcpu_bind_thread(v->kvm);
	struct vcpu_exit x;
	while (vcpu_check_state(v)) {
		if (!v->first_run_ns)
			v->first_run_ns = clock_mono_ns();
		int r = kvm_vcpu_run(v->kvm, &x);
		if (r) {
			vm_stop(vm, VM_EXIT_ERROR, "vCPU %u: KVM_RUN failed: %s", v->id, strerror(-r));
			break;
		}
		v->exits[x.reason]++;
		if (!vcpu_handle_exit(v, &x))
			break;
	}
	pthread_mutex_lock(&vm->lock);
	kvm_vcpu_unbind_thread(v->kvm);
	vm->nr_exited++;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm_start(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (r) {
			vm_stop(vm, VM_EXIT_ERROR, "cannot start vCPU thread %u: %s", i, strerror(r));
			return -r;
		}
		v->started = true;
	}
	return 0;
}

enum vm_exit_kind vm_wait(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->started) {
			pthread_join(v->thread, NULL);
			v->started = false;
		}
	}
	return vm->exit_kind == VM_EXIT_NONE ? VM_EXIT_ERROR : vm->exit_kind;
}

void vm_destroy(struct vm *vm)
{
	if (atomic_load(&vm->run_state) != VM_STOPPING)
		vm_stop(vm, VM_EXIT_ERROR, NULL);
	vm_wait(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		kvm_vcpu_destroy(vm->vcpus[i].kvm);
	kvm_vm_destroy(vm->kvm);
	guest_mem_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	vm->kvm = NULL;
}
