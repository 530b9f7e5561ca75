#include "kvm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"

#define KVM_KICK_SIGNAL SIGUSR1
#define MAX_ROUTES 256

struct kvm_vm {
	int sys_fd;
	int vm_fd;
	int run_size;
	pthread_mutex_t route_lock;
	unsigned nr_routes;
	struct kvm_irq_routing_entry routes[MAX_ROUTES];
};

struct kvm_vcpu {
	struct kvm_vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	atomic_bool thread_bound;
	size_t xsave_size;
};

static int kvm_fail(char *err, size_t errlen, int e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int kvm_fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -e;
}

static int kvm_enable_cap(int fd, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg0 } };
	return ioctl(fd, KVM_ENABLE_CAP, &c) < 0 ? -errno : 0;
}

int kvm_vm_create(struct kvm_vm **out, unsigned nr_ioapic_pins, char *err, size_t errlen)
{
	static const struct {
		int cap;
		const char *name;
	} required[] = {
		{ KVM_CAP_SPLIT_IRQCHIP, "split irqchip" },
		{ KVM_CAP_X86_USER_SPACE_MSR, "user-space MSR exits" },
		{ KVM_CAP_X86_MSR_FILTER, "MSR filter" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_SIGNAL_MSI, "MSI injection" },
		{ KVM_CAP_IRQFD, "irqfd" },
		{ KVM_CAP_IOEVENTFD, "ioeventfd" },
		{ KVM_CAP_VCPU_EVENTS, "vCPU events" },
		{ KVM_CAP_XSAVE, "XSAVE state" },
	};
	*out = NULL;
	int sys = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (sys < 0) {
		int e = errno;
		if (e == ENOENT)
			return kvm_fail(err, errlen, e, "/dev/kvm: not found (enable virtualization and load the kvm module)");
		if (e == EACCES || e == EPERM)
			return kvm_fail(err, errlen, e, "/dev/kvm: permission denied (add your user to the 'kvm' group, or run as root)");
		return kvm_fail(err, errlen, e, "/dev/kvm: %s", strerror(e));
	}
	int ver = ioctl(sys, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		close(sys);
		return kvm_fail(err, errlen, ENOTSUP, "/dev/kvm: KVM API version %d, gen2vm needs %d (host kernel too old)",
				ver, KVM_API_VERSION);
	}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(sys, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			close(sys);
			return kvm_fail(err, errlen, ENOTSUP, "/dev/kvm: the host's KVM lacks %s (needs Linux 5.10 or later)",
					required[i].name);
		}
	}
	struct kvm_vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		close(sys);
		return kvm_fail(err, errlen, ENOMEM, "out of memory");
	}
	vm->sys_fd = sys;
	pthread_mutex_init(&vm->route_lock, NULL);
	vm->run_size = ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->vm_fd = ioctl(sys, KVM_CREATE_VM, 0);
	int e;
	if (vm->vm_fd < 0) {
		e = errno;
		kvm_fail(err, errlen, e, "KVM_CREATE_VM: %s", strerror(e));
		goto fail;
	}
	/* Real-mode TSS for VMX hosts; harmless elsewhere. It sits in the MMIO gap, never in RAM. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	if ((e = -kvm_enable_cap(vm->vm_fd, KVM_CAP_SPLIT_IRQCHIP, nr_ioapic_pins))) {
		kvm_fail(err, errlen, e, "cannot create the split irqchip: %s", strerror(e));
		goto fail;
	}
	e = -kvm_enable_cap(vm->vm_fd, KVM_CAP_X86_USER_SPACE_MSR,
			    KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL);
	if (e) {
		kvm_fail(err, errlen, e, "cannot enable user-space MSR exits: %s", strerror(e));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	kvm_vm_destroy(vm);
	return -e;
}

void kvm_vm_destroy(struct kvm_vm *vm)
{
	if (!vm)
		return;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	close(vm->sys_fd);
	pthread_mutex_destroy(&vm->route_lock);
	free(vm);
}

static int kvm_vm_set_region(struct kvm_vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uintptr_t)hva,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_vm_set_memory(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	return kvm_vm_set_region(vm, slot, 0, gpa, size, hva);
}

int kvm_vm_set_memory_logged(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	return kvm_vm_set_region(vm, slot, KVM_MEM_LOG_DIRTY_PAGES, gpa, size, hva);
}

int kvm_vm_dirty_log(struct kvm_vm *vm, uint32_t slot, uint64_t *bitmap)
{
	struct kvm_dirty_log l = { .slot = slot, .dirty_bitmap = bitmap };
	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &l) < 0 ? -errno : 0;
}

int kvm_vm_filter_msrs(struct kvm_vm *vm, const struct kvm_msr_range *ranges, unsigned n)
{
	if (n > KVM_MSR_FILTER_MAX_RANGES)
		return -EINVAL;
	struct kvm_msr_filter f = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
	uint8_t *bitmaps[KVM_MSR_FILTER_MAX_RANGES] = { 0 };
	int r = 0;
	for (unsigned i = 0; i < n; i++) {
		/* A clear bit denies: the access exits to us. */
		bitmaps[i] = calloc(1, (ranges[i].count + 7) / 8);
		if (!bitmaps[i]) {
			r = -ENOMEM;
			goto out;
		}
		f.ranges[i] = (struct kvm_msr_filter_range){
			.flags = (ranges[i].read ? KVM_MSR_FILTER_READ : 0) | (ranges[i].write ? KVM_MSR_FILTER_WRITE : 0),
			.nmsrs = ranges[i].count, .base = ranges[i].first, .bitmap = bitmaps[i],
		};
	}
	r = ioctl(vm->vm_fd, KVM_X86_SET_MSR_FILTER, &f) < 0 ? -errno : 0;
out:
	for (unsigned i = 0; i < n; i++)
		free(bitmaps[i]);
	return r;
}

int kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t address, uint32_t data)
{
	struct kvm_msi m = { .address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data };
	int r = ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m);
	return r < 0 ? -errno : 0;
}

int kvm_vm_add_msi_route(struct kvm_vm *vm, uint32_t gsi, uint64_t address, uint32_t data)
{
	pthread_mutex_lock(&vm->route_lock);
	unsigned i;
	for (i = 0; i < vm->nr_routes; i++)
		if (vm->routes[i].gsi == gsi)
			break;
	if (i == vm->nr_routes) {
		if (vm->nr_routes == MAX_ROUTES) {
			pthread_mutex_unlock(&vm->route_lock);
			return -ENOSPC;
		}
		vm->nr_routes++;
	}
	vm->routes[i] = (struct kvm_irq_routing_entry){
		.gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data },
	};
	size_t sz = sizeof(struct kvm_irq_routing) + vm->nr_routes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *tab = calloc(1, sz);
	int r = -ENOMEM;
	if (tab) {
		tab->nr = vm->nr_routes;
		memcpy(tab->entries, vm->routes, vm->nr_routes * sizeof(vm->routes[0]));
		r = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, tab) < 0 ? -errno : 0;
		free(tab);
	}
	pthread_mutex_unlock(&vm->route_lock);
	return r;
}

int kvm_vm_irqfd(struct kvm_vm *vm, int efd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd f = { .fd = (uint32_t)efd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	return ioctl(vm->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int kvm_vm_ioeventfd(struct kvm_vm *vm, int efd, uint16_t port, uint8_t len, bool has_match,
		     uint64_t datamatch, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = datamatch, .addr = port, .len = len, .fd = efd,
		.flags = KVM_IOEVENTFD_FLAG_PIO | (has_match ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int kvm_supported_cpuid(struct kvm_vm *vm, struct x86_cpuid_entry **out, unsigned *count)
{
	const unsigned max = 512;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return -ENOMEM;
	c->nent = max;
	if (ioctl(vm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int e = errno;
		free(c);
		return -e;
	}
	struct x86_cpuid_entry *e = calloc(c->nent ? c->nent : 1, sizeof(*e));
	if (!e) {
		free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *k = &c->entries[i];
		e[i] = (struct x86_cpuid_entry){
			.function = k->function, .index = k->index,
			.indexed = !!(k->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
			.eax = k->eax, .ebx = k->ebx, .ecx = k->ecx, .edx = k->edx,
		};
	}
	*count = c->nent;
	*out = e;
	free(c);
	return 0;
}

/* ---- vCPUs ---- */

static void kvm_kick_handler(int sig)
{
	(void)sig; /* its only job is to interrupt KVM_RUN with EINTR */
}

int kvm_vcpu_create(struct kvm_vm *vm, unsigned id, struct kvm_vcpu **out)
{
	struct kvm_vcpu *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		int e = errno;
		free(v);
		return -e;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int e = errno;
		close(v->fd);
		free(v);
		return -e;
	}
	int sz = ioctl(vm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	v->xsave_size = sz > (int)sizeof(struct kvm_xsave) ? (size_t)sz : sizeof(struct kvm_xsave);
	*out = v;
	return 0;
}

void kvm_vcpu_destroy(struct kvm_vcpu *v)
{
	if (!v)
		return;
	munmap(v->run, (size_t)v->vm->run_size);
	close(v->fd);
	free(v);
}

/* Installs the no-op kick handler without SA_RESTART, so that KVM_RUN returns EINTR. */
static void kvm_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = kvm_kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(KVM_KICK_SIGNAL, &sa, NULL);
}

void kvm_vcpu_bind_thread(struct kvm_vcpu *v)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, kvm_install_kick_handler);
	v->thread = pthread_self();
	atomic_store(&v->thread_bound, true);
}

void kvm_vcpu_unbind_thread(struct kvm_vcpu *v)
{
	atomic_store(&v->thread_bound, false);
}

void kvm_vcpu_kick(struct kvm_vcpu *v)
{
	/* immediate_exit covers the window between the vCPU's last state check and KVM_RUN;
	 * the signal covers a vCPU already inside KVM_RUN. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (atomic_load(&v->thread_bound) && !pthread_equal(v->thread, pthread_self()))
		pthread_kill(v->thread, KVM_KICK_SIGNAL);
}

void kvm_vcpu_clear_kick(struct kvm_vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

static void kvm_fill_internal(struct kvm_run *run, struct vcpu_exit *x)
{
	x->internal.suberror = run->internal.suberror;
	x->internal.ndata = run->internal.ndata > 16 ? 16 : run->internal.ndata;
	memcpy(x->internal.data, run->internal.data, x->internal.ndata * sizeof(uint64_t));
	x->internal.insn_len = 0;
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		uint8_t n = run->emulation_failure.insn_size;
		if (n > 15)
			n = 15;
		x->internal.insn_len = n;
		memcpy(x->internal.insn, run->emulation_failure.insn_bytes, n);
	}
}

int kvm_vcpu_run(struct kvm_vcpu *v, struct vcpu_exit *x)
{
	struct kvm_run *run = v->run;
	memset(x, 0, sizeof(*x));
	if (ioctl(v->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			x->reason = VCPU_EXIT_INTR;
			return 0;
		}
		return -errno;
	}
	x->raw_reason = run->exit_reason;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		x->reason = VCPU_EXIT_IO;
		x->io.port = run->io.port;
		x->io.size = run->io.size;
		x->io.write = run->io.direction == KVM_EXIT_IO_OUT;
		x->io.count = run->io.count;
		x->io.data = (uint8_t *)run + run->io.data_offset;
		break;
	case KVM_EXIT_MMIO:
		x->reason = VCPU_EXIT_MMIO;
		x->mmio.addr = run->mmio.phys_addr;
		x->mmio.len = (uint8_t)run->mmio.len;
		x->mmio.write = run->mmio.is_write;
		x->mmio.data = run->mmio.data;
		break;
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		x->reason = run->exit_reason == KVM_EXIT_X86_RDMSR ? VCPU_EXIT_MSR_READ : VCPU_EXIT_MSR_WRITE;
		x->msr.index = run->msr.index;
		x->msr.data = (uint64_t *)&run->msr.data;
		x->msr.error = &run->msr.error;
		run->msr.error = 0;
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		x->reason = run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? VCPU_EXIT_EMULATION
										    : VCPU_EXIT_INTERNAL;
		kvm_fill_internal(run, x);
		break;
	case KVM_EXIT_SHUTDOWN:
		x->reason = VCPU_EXIT_SHUTDOWN;
		break;
	case KVM_EXIT_HLT:
		x->reason = VCPU_EXIT_HLT;
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		x->reason = VCPU_EXIT_SYSTEM_EVENT;
		x->system_event.type = run->system_event.type;
		break;
	case KVM_EXIT_IOAPIC_EOI:
		x->reason = VCPU_EXIT_IOAPIC_EOI;
		x->eoi.vector = run->eoi.vector;
		break;
	case KVM_EXIT_FAIL_ENTRY:
		x->reason = VCPU_EXIT_FAIL_ENTRY;
		x->hw_reason = run->fail_entry.hardware_entry_failure_reason;
		break;
	case KVM_EXIT_INTR:
		x->reason = VCPU_EXIT_INTR;
		break;

	default:
		x->reason = VCPU_EXIT_OTHER;
		break;
	}
	return 0;
}

static void kvm_seg_from(struct x86_seg *d, const struct kvm_segment *s)
{
	*d = (struct x86_seg){ .base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
			       .present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l, .g = s->g,
			       .avl = s->avl, .unusable = s->unusable };
}

static void kvm_seg_to(struct kvm_segment *d, const struct x86_seg *s)
{
	*d = (struct kvm_segment){ .base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
				   .present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l,
				   .g = s->g, .avl = s->avl, .unusable = s->unusable };
}

int kvm_vcpu_get_regs(struct kvm_vcpu *v, struct x86_regs *r)
{
	struct kvm_regs k;
	if (ioctl(v->fd, KVM_GET_REGS, &k) < 0)
		return -errno;
	uint64_t g[16] = { k.rax, k.rcx, k.rdx, k.rbx, k.rsp, k.rbp, k.rsi, k.rdi,
			   k.r8,  k.r9,  k.r10, k.r11, k.r12, k.r13, k.r14, k.r15 };
	memcpy(r->gpr, g, sizeof(g));
	r->rip = k.rip;
	r->rflags = k.rflags;
	return 0;
}

int kvm_vcpu_set_regs(struct kvm_vcpu *v, const struct x86_regs *r)
{
	const uint64_t *g = r->gpr;
	struct kvm_regs k = {
		.rax = g[0], .rcx = g[1], .rdx = g[2], .rbx = g[3], .rsp = g[4], .rbp = g[5], .rsi = g[6],
		.rdi = g[7], .r8 = g[8], .r9 = g[9], .r10 = g[10], .r11 = g[11], .r12 = g[12], .r13 = g[13],
		.r14 = g[14], .r15 = g[15], .rip = r->rip, .rflags = r->rflags,
	};
	return ioctl(v->fd, KVM_SET_REGS, &k) < 0 ? -errno : 0;
}

int kvm_vcpu_get_sregs(struct kvm_vcpu *v, struct x86_sregs *s)
{
	struct kvm_sregs k;
	if (ioctl(v->fd, KVM_GET_SREGS, &k) < 0)
		return -errno;
	kvm_seg_from(&s->cs, &k.cs);
	kvm_seg_from(&s->ds, &k.ds);
	kvm_seg_from(&s->es, &k.es);
	kvm_seg_from(&s->fs, &k.fs);
	kvm_seg_from(&s->gs, &k.gs);
	kvm_seg_from(&s->ss, &k.ss);
	kvm_seg_from(&s->tr, &k.tr);
	kvm_seg_from(&s->ldt, &k.ldt);
	s->gdt = (struct x86_dtable){ k.gdt.base, k.gdt.limit };
	s->idt = (struct x86_dtable){ k.idt.base, k.idt.limit };
	s->cr0 = k.cr0;
	s->cr2 = k.cr2;
	s->cr3 = k.cr3;
	s->cr4 = k.cr4;
	s->cr8 = k.cr8;
	s->efer = k.efer;
	s->apic_base = k.apic_base;
	return 0;
}

int kvm_vcpu_set_sregs(struct kvm_vcpu *v, const struct x86_sregs *s)
{
	struct kvm_sregs k;
	/* Read first: interrupt_bitmap must be preserved. */
	if (ioctl(v->fd, KVM_GET_SREGS, &k) < 0)
		return -errno;
	kvm_seg_to(&k.cs, &s->cs);
	kvm_seg_to(&k.ds, &s->ds);
	kvm_seg_to(&k.es, &s->es);
	kvm_seg_to(&k.fs, &s->fs);
	kvm_seg_to(&k.gs, &s->gs);
	kvm_seg_to(&k.ss, &s->ss);
	kvm_seg_to(&k.tr, &s->tr);
	kvm_seg_to(&k.ldt, &s->ldt);
	k.gdt.base = s->gdt.base;
	k.gdt.limit = s->gdt.limit;
	k.idt.base = s->idt.base;
	k.idt.limit = s->idt.limit;
	k.cr0 = s->cr0;
	k.cr2 = s->cr2;
	k.cr3 = s->cr3;
	k.cr4 = s->cr4;
	k.cr8 = s->cr8;
	k.efer = s->efer;
	k.apic_base = s->apic_base;
	return ioctl(v->fd, KVM_SET_SREGS, &k) < 0 ? -errno : 0;
}

int kvm_vcpu_set_cpuid(struct kvm_vcpu *v, const struct x86_cpuid_entry *e, unsigned count)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + count * sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return -ENOMEM;
	c->nent = count;
	for (unsigned i = 0; i < count; i++)
		c->entries[i] = (struct kvm_cpuid_entry2){
			.function = e[i].function, .index = e[i].index,
			.flags = e[i].indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
			.eax = e[i].eax, .ebx = e[i].ebx, .ecx = e[i].ecx, .edx = e[i].edx,
		};
	int r = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return r;
}

/* struct kvm_msrs ends in a flexible array: one entry goes in a buffer sized for both (a struct
 * that embeds kvm_msrs before the entry is a GNU extension clang warns about). */
union kvm_one_msr {
	struct kvm_msrs h;
	uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
};

int kvm_vcpu_get_msr(struct kvm_vcpu *v, uint32_t index, uint64_t *value)
{
	union kvm_one_msr m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = 1;
	m.h.entries[0].index = index;
	int r = ioctl(v->fd, KVM_GET_MSRS, &m);
	if (r < 0)
		return -errno;
	if (r != 1)
		return -EINVAL;
	*value = m.h.entries[0].data;
	return 0;
}

int kvm_vcpu_set_msr(struct kvm_vcpu *v, uint32_t index, uint64_t value)
{
	union kvm_one_msr m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = 1;
	m.h.entries[0].index = index;
	m.h.entries[0].data = value;
	int r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return -errno;
	return r == 1 ? 0 : -EINVAL;
}

uint32_t kvm_vcpu_tsc_khz(struct kvm_vcpu *v)
{
	int r = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	return r > 0 ? (uint32_t)r : 0;
}

int kvm_vcpu_get_xcr0(struct kvm_vcpu *v, uint64_t *xcr0)
{
	struct kvm_xcrs x;
	if (ioctl(v->fd, KVM_GET_XCRS, &x) < 0)
		return -errno;
	for (unsigned i = 0; i < x.nr_xcrs; i++)
		if (x.xcrs[i].xcr == 0) {
			*xcr0 = x.xcrs[i].value;
			return 0;
		}
	*xcr0 = 1; /* x87 only: XSAVE was never enabled */
	return 0;
}

size_t kvm_vcpu_xsave_size(struct kvm_vcpu *v)
{
	return v->xsave_size;
}

int kvm_vcpu_get_xsave(struct kvm_vcpu *v, void *buf, size_t size)
{
	if (size < v->xsave_size)
		return -ENOSPC;
	unsigned long req = v->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	return ioctl(v->fd, req, buf) < 0 ? -errno : 0;
}

int kvm_vcpu_set_xsave(struct kvm_vcpu *v, const void *buf, size_t size)
{
	if (size < v->xsave_size)
		return -ENOSPC;
	return ioctl(v->fd, KVM_SET_XSAVE, buf) < 0 ? -errno : 0;
}

int kvm_vcpu_inject_exception(struct kvm_vcpu *v, uint8_t vector, bool has_error, uint32_t error_code)
{
	struct kvm_vcpu_events ev;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.flags = 0; /* leave NMI, SIPI and SMM state alone */
	ev.exception.injected = 1;
	ev.exception.nr = vector;
	ev.exception.has_error_code = has_error;
	ev.exception.error_code = error_code;
	return ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? -errno : 0;
}

int kvm_vcpu_inject_soft_interrupt(struct kvm_vcpu *v, uint8_t vector, uint8_t insn_len)
{
	(void)insn_len; /* RIP already points past the instruction */
	struct kvm_vcpu_events ev;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.flags = 0;
	ev.interrupt.injected = 1;
	ev.interrupt.nr = vector;
	ev.interrupt.soft = 1;
	return ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? -errno : 0;
}

int kvm_vcpu_setup_lapic(struct kvm_vcpu *v)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	uint32_t *lint0 = (uint32_t *)&l.regs[0x350], *lint1 = (uint32_t *)&l.regs[0x360];
	*lint0 = (*lint0 & ~0x700u) | 0x700u; /* ExtINT */
	*lint1 = (*lint1 & ~0x700u) | 0x400u; /* NMI */
	return ioctl(v->fd, KVM_SET_LAPIC, &l) < 0 ? -errno : 0;
}

bool kvm_vcpu_is_waiting_sipi(struct kvm_vcpu *v)
{
	struct kvm_mp_state mp;
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
		return false;
	return mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED;
}

/* ---- saved state ---- */

enum kvm_state_tag {
	KVM_STATE_REGS = 1,
	KVM_STATE_SREGS,
	KVM_STATE_XSAVE,
	KVM_STATE_XCRS,
	KVM_STATE_MSRS,
	KVM_STATE_LAPIC,
	KVM_STATE_EVENTS,
	KVM_STATE_MP,
	KVM_STATE_DEBUGREGS,
	KVM_STATE__COUNT
};
#define KVM_STATE_MSRS_MAX 1024u

struct kvm_state_rec {
	uint32_t tag, len;
};

/* The fixed-size parts of a vCPU's state, as KVM gives and takes them. */
struct kvm_state_fixed {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dr;
};

static void kvm_state_put(struct buf *b, uint32_t tag, const void *data, size_t len)
{
	struct kvm_state_rec r = { tag, (uint32_t)len };
	buf_put(b, &r, sizeof(r));
	buf_put(b, data, len);
	buf_put(b, NULL, ((len + 7) & ~(size_t)7) - len);
}

/* The MSRs KVM asks userspace to save, as a kvm_msrs with their indices filled (caller frees). */
static struct kvm_msrs *kvm_msrs_to_save(struct kvm_vcpu *v)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(v->vm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	uint32_t n = probe.nmsrs < KVM_STATE_MSRS_MAX ? probe.nmsrs : KVM_STATE_MSRS_MAX;
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + n * sizeof(uint32_t));
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	if (!list || !m)
		goto fail;
	list->nmsrs = n;
	if (ioctl(v->vm->sys_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
		goto fail;
	m->nmsrs = list->nmsrs < n ? list->nmsrs : n;
	for (uint32_t i = 0; i < m->nmsrs; i++)
		m->entries[i].index = list->indices[i];
	free(list);
	return m;
fail:
	free(list);
	free(m);
	return NULL;
}

int kvm_vcpu_state_save(struct kvm_vcpu *v, uint8_t **out, size_t *len)
{
	struct buf b = { 0 };
	struct kvm_state_fixed st;
	void *xsave = calloc(1, v->xsave_size);
	struct kvm_msrs *msrs = kvm_msrs_to_save(v);
	*out = NULL;
	*len = 0;
	int r = 0;
	if (!xsave || !msrs)
		r = -ENOMEM;
	else if (ioctl(v->fd, KVM_GET_REGS, &st.regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &st.sregs) < 0 ||
		 kvm_vcpu_get_xsave(v, xsave, v->xsave_size) || ioctl(v->fd, KVM_GET_XCRS, &st.xcrs) < 0 ||
		 ioctl(v->fd, KVM_GET_LAPIC, &st.lapic) < 0 || ioctl(v->fd, KVM_GET_VCPU_EVENTS, &st.ev) < 0 ||
		 ioctl(v->fd, KVM_GET_MP_STATE, &st.mp) < 0 || ioctl(v->fd, KVM_GET_DEBUGREGS, &st.dr) < 0)
		r = -errno;
	if (!r) {
		/* One at a time: KVM_GET_MSRS stops at the first MSR it cannot read, and the list holds MSRs
		 * of features this VM does not have (its Hyper-V MSRs are gen2vm's own, for instance). */
		uint32_t kept = 0;
		for (uint32_t i = 0; i < msrs->nmsrs; i++) {
			uint64_t val;
			if (!kvm_vcpu_get_msr(v, msrs->entries[i].index, &val)) {
				msrs->entries[kept].index = msrs->entries[i].index;
				msrs->entries[kept].reserved = 0;
				msrs->entries[kept++].data = val;
			}
		}
		msrs->nmsrs = kept;
	}
	if (!r) {
		kvm_state_put(&b, KVM_STATE_SREGS, &st.sregs, sizeof(st.sregs));
		kvm_state_put(&b, KVM_STATE_REGS, &st.regs, sizeof(st.regs));
		kvm_state_put(&b, KVM_STATE_XSAVE, xsave, v->xsave_size);
		kvm_state_put(&b, KVM_STATE_XCRS, &st.xcrs, sizeof(st.xcrs));
		kvm_state_put(&b, KVM_STATE_LAPIC, &st.lapic, sizeof(st.lapic));
		kvm_state_put(&b, KVM_STATE_MSRS, msrs->entries, msrs->nmsrs * sizeof(msrs->entries[0]));
		kvm_state_put(&b, KVM_STATE_EVENTS, &st.ev, sizeof(st.ev));
		kvm_state_put(&b, KVM_STATE_MP, &st.mp, sizeof(st.mp));
		kvm_state_put(&b, KVM_STATE_DEBUGREGS, &st.dr, sizeof(st.dr));
		r = b.error;
	}
	free(xsave);
	free(msrs);
	if (r) {
		free(b.p);
		return r;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

/* Sets the saved MSRs one by one. The TSC and the APIC base must be taken; another MSR KVM refuses
 * (one it lists but this host cannot set as it read it) is logged and left as it is. 0 or -errno. */
static int kvm_state_set_msrs(struct kvm_vcpu *v, const struct kvm_msrs *m)
{
	for (uint32_t i = 0; i < m->nmsrs; i++) {
		uint32_t idx = m->entries[i].index;
		int r = kvm_vcpu_set_msr(v, idx, m->entries[i].data);
		if (r && (idx == 0x10 || idx == 0x1b)) /* IA32_TSC, IA32_APIC_BASE */
			return r;
		if (r)
			log_warn("vCPU %u: KVM did not take back MSR 0x%x (%s)", v->id, idx, strerror(-r));
	}
	return 0;
}

/* The fixed size of a record, 0 for the variable ones (XSAVE, MSRS). */
static size_t kvm_state_size(uint32_t tag)
{
	switch (tag) {
	case KVM_STATE_REGS: return sizeof(struct kvm_regs);
	case KVM_STATE_SREGS: return sizeof(struct kvm_sregs);
	case KVM_STATE_XCRS: return sizeof(struct kvm_xcrs);
	case KVM_STATE_LAPIC: return sizeof(struct kvm_lapic_state);
	case KVM_STATE_EVENTS: return sizeof(struct kvm_vcpu_events);
	case KVM_STATE_MP: return sizeof(struct kvm_mp_state);
	case KVM_STATE_DEBUGREGS: return sizeof(struct kvm_debugregs);
	default: return 0;
	}
}

int kvm_vcpu_state_restore(struct kvm_vcpu *v, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	const uint8_t *rec[KVM_STATE__COUNT] = { 0 };
	size_t rlen[KVM_STATE__COUNT] = { 0 };
	for (size_t off = 0; off < len;) {
		struct kvm_state_rec r;
		if (len - off < sizeof(r))
			return kvm_fail(err, errlen, EINVAL, "vCPU %u state: truncated record", v->id);
		memcpy(&r, buf + off, sizeof(r));
		size_t padded = ((size_t)r.len + 7) & ~(size_t)7;
		if (r.len > len - off - sizeof(r) || padded > len - off - sizeof(r))
			return kvm_fail(err, errlen, EINVAL, "vCPU %u state: record %u overruns it", v->id, r.tag);
		if (!r.tag || r.tag >= KVM_STATE__COUNT || rec[r.tag])
			return kvm_fail(err, errlen, EINVAL, "vCPU %u state: unknown or repeated record %u", v->id, r.tag);
		size_t want = kvm_state_size(r.tag);
		bool ok = want ? r.len == want
			       : r.tag == KVM_STATE_XSAVE ? r.len >= sizeof(struct kvm_xsave) && r.len <= v->xsave_size
							  : r.len % sizeof(struct kvm_msr_entry) == 0 &&
								    r.len / sizeof(struct kvm_msr_entry) <= KVM_STATE_MSRS_MAX;
		if (!ok)
			return kvm_fail(err, errlen, EINVAL, "vCPU %u state: record %u has a bad length (%u)", v->id, r.tag,
					r.len);
		rec[r.tag] = buf + off + sizeof(r);
		rlen[r.tag] = r.len;
		off += sizeof(r) + padded;
	}
	for (unsigned t = 1; t < KVM_STATE__COUNT; t++)
		if (!rec[t])
			return kvm_fail(err, errlen, EINVAL, "vCPU %u state: record %u is missing", v->id, t);

	struct kvm_state_fixed st;
	memcpy(&st.regs, rec[KVM_STATE_REGS], sizeof(st.regs));
	memcpy(&st.sregs, rec[KVM_STATE_SREGS], sizeof(st.sregs));
	memcpy(&st.xcrs, rec[KVM_STATE_XCRS], sizeof(st.xcrs));
	memcpy(&st.lapic, rec[KVM_STATE_LAPIC], sizeof(st.lapic));
	memcpy(&st.ev, rec[KVM_STATE_EVENTS], sizeof(st.ev));
	memcpy(&st.mp, rec[KVM_STATE_MP], sizeof(st.mp));
	memcpy(&st.dr, rec[KVM_STATE_DEBUGREGS], sizeof(st.dr));
	if (st.xcrs.nr_xcrs > KVM_MAX_XCRS)
		return kvm_fail(err, errlen, EINVAL, "vCPU %u state: %u XCRs", v->id, st.xcrs.nr_xcrs);
	uint32_t nmsrs = (uint32_t)(rlen[KVM_STATE_MSRS] / sizeof(struct kvm_msr_entry));
	void *xsave = calloc(1, v->xsave_size);
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + (nmsrs ? nmsrs : 1) * sizeof(struct kvm_msr_entry));
	if (!xsave || !msrs) {
		free(xsave);
		free(msrs);
		return kvm_fail(err, errlen, ENOMEM, "vCPU %u state: out of memory", v->id);
	}
	memcpy(xsave, rec[KVM_STATE_XSAVE], rlen[KVM_STATE_XSAVE]);
	msrs->nmsrs = nmsrs;
	memcpy(msrs->entries, rec[KVM_STATE_MSRS], rlen[KVM_STATE_MSRS]);
	/* Order matters: the APIC base (in sregs) before the LAPIC, the LAPIC before the TSC deadline
	 * MSR, the MP state and events last. */
	const char *what = NULL;
	int r = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &st.sregs) < 0)
		what = "segment and control registers";
	else if (ioctl(v->fd, KVM_SET_REGS, &st.regs) < 0)
		what = "registers";
	else if (ioctl(v->fd, KVM_SET_XSAVE, xsave) < 0)
		what = "XSAVE state";
	else if (ioctl(v->fd, KVM_SET_XCRS, &st.xcrs) < 0)
		what = "XCRs";
	else if (ioctl(v->fd, KVM_SET_LAPIC, &st.lapic) < 0)
		what = "LAPIC";
	else if ((r = kvm_state_set_msrs(v, msrs)) < 0)
		what = "MSRs";
	else if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &st.ev) < 0)
		what = "pending events";
	else if (ioctl(v->fd, KVM_SET_MP_STATE, &st.mp) < 0)
		what = "MP state";
	else if (ioctl(v->fd, KVM_SET_DEBUGREGS, &st.dr) < 0)
		what = "debug registers";
	int e = what && !strcmp(what, "MSRs") ? -r : errno;
	free(xsave);
	free(msrs);
	if (what)
		return kvm_fail(err, errlen, e, "vCPU %u state: KVM refused its %s (%s)", v->id, what, strerror(e));
	return 0;
}
