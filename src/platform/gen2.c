#include "platform/gen2.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <json-c/json.h>

#include "devices/acpi_pm.h"
#include "devices/ioapic.h"
#include "devices/rtc.h"
#include "devices/synthkbd.h"
#include "devices/synthmouse.h"
#include "devices/synthvid.h"
#include "devices/testports.h"
#include "devices/uart.h"
#include "hv/cpuid.h"
#include "hv/hv.h"
#include "platform/acpi.h"
#include "platform/firmware.h"
#include "platform/fw_misc.h"
#include "platform/smbios.h"
#include "platform/bootopt.h"
#include "platform/nvram.h"
#include "platform/secboot.h"
#include "ui/control.h"
#include "disk/disk.h"
#include "gen2vm/proto/fw.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/text.h"
#include "vmbus/host.h"
#include "vmm/boot.h"
#include "vmm/complete.h"
#include "vmm/loader.h"
#include "util/file.h"
#include "vmm/savestate.h"
#include "vmm/stats.h"
#include "vmm/vm.h"

#define GEN2_MMIO_LOW_BASE FW_MMIO_LOW_BASE /* 128 MiB below the IOAPIC, for VMBus devices (video); */
#define GEN2_MMIO_LOW_SIZE FW_MMIO_LOW_SIZE /* the firmware's GOP puts the VRAM at its start */
#define GEN2_MMIO_HIGH_SIZE (64ull << 30)
#define COM1_IRQ 4
/* The memslot of device memory (vmdev_host.map_ram): after guest RAM's, which take 0..regions-1. */
#define GEN2_DEV_RAM_SLOT GUEST_MEM_MAX_REGIONS

/* What outlives one VM instance across guest resets, as on Hyper-V it belongs to the VM: the UEFI
 * variables (non-volatile ones survive a reset even without a file), the firmware clock's offset and
 * the random system UUID drawn for a VM without --uuid or NVRAM. gen2_run owns it. */
struct gen2_life {
	struct nvram *nv; /* NULL without firmware */
	struct fw_misc misc;
	bool have_random_uuid;
	uint8_t random_uuid[16];
	struct vnc *vnc; /* the VNC server and its viewers stay through a guest reset */
};

struct gen2 {
	const struct gen2_config *cfg;
	struct gen2_life *life;
	struct vm vm;
	struct hv_partition hv;
	struct hv_vp vps[VM_MAX_VCPUS];
	bool hv_ready;
	/* Host TSC minus guest TSC (KVM starts the guest's at 0 when the vCPUs are created; refined at
	 * every TIME_REF_COUNT read): the integration services' reference time from any thread. */
	_Atomic uint64_t tsc_base;
	struct ioapic ioapic;
	struct uart com1;
	struct rtc rtc;
	struct vmbus_host *vmbus;
	struct vmdev_set devices; /* every VMBus device class the configuration asks for */
	pthread_mutex_t forced_lock;
	char forced_why[256]; /* the reason a device gave for stopping the VM (gen2_dev_stop_vm) */
	struct control *control;
	struct vnc *vnc; /* with --vnc or --web-console */
	struct console com1_con, debug_con;
	struct testports testports; /* with --debugcon */
	bool has_com1, has_debug;
	struct firmware fw;
	struct nvram *nv; /* life->nv */
	struct secboot_host sec; /* FW_OP_IMAGE_VERIFY's state for this boot */
	/* Device memory (gen2_dev_map_ram): allocated at the first map, freed after the VM. */
	pthread_mutex_t dev_ram_lock;
	void *dev_ram;
	uint64_t dev_ram_size, dev_ram_gpa;
	bool dev_ram_mapped;
};

/* ---- CPUID (the policy is src/hv/cpuid.c's) ---- */

static int gen2_setup_cpuid(struct gen2 *g)
{
	struct x86_cpuid_entry *sup;
	unsigned nsup;
	int r = kvm_supported_cpuid(g->vm.kvm, &sup, &nsup);
	if (r) {
		log_error("cannot read the host's CPUID: %s", strerror(-r));
		return r;
	}
	struct x86_cpuid_entry *e = calloc(HV_CPUID_MAX, sizeof(*e));
	if (!e) {
		free(sup);
		return -ENOMEM;
	}
	int n = hv_cpuid_build(&g->hv, sup, nsup, g->cfg->processor_compat, e, HV_CPUID_MAX);
	free(sup);
	r = n < 0 ? n : 0;
	for (unsigned v = 0; !r && v < g->vm.nr_vcpus; v++) {
		hv_cpuid_set_vcpu(e, (unsigned)n, v, g->vm.nr_vcpus);
		if ((r = kvm_vcpu_set_cpuid(g->vm.vcpus[v].kvm, e, (unsigned)n)))
			log_error("cannot set the CPUID of vCPU %u: %s", v, strerror(-r));
	}
	free(e);
	return r;
}

/* ---- MSRs, hypercalls, crash ---- */

static int gen2_msr_read(void *opaque, struct vcpu *v, uint32_t index, uint64_t *value)
{
	struct gen2 *g = opaque;
	if (index - HV_MSR_FIRST < HV_MSR_COUNT)
		return hv_msr_read(&g->hv, &g->vps[v->id], index, value);
	return -ENOENT;
}

static int gen2_msr_write(void *opaque, struct vcpu *v, uint32_t index, uint64_t value)
{
	struct gen2 *g = opaque;
	if (index - HV_MSR_FIRST < HV_MSR_COUNT)
		return hv_msr_write(&g->hv, &g->vps[v->id], index, value);
	return -ENOENT;
}

/* The hypercall page's slow path (OUT 0x91), decoded by src/hv/; KVM then skips the OUT. */
static void gen2_hypercall(struct vcpu *v, void *opaque)
{
	struct gen2 *g = opaque;
	struct x86_regs r;
	if (kvm_vcpu_get_regs(v->kvm, &r))
		return;
	hv_hypercall(&g->hv, v->id, &r);
	kvm_vcpu_set_regs(v->kvm, &r);
}

static uint16_t gen2_post_message(void *opaque, uint32_t vp, uint64_t input_gpa)
{
	struct gen2 *g = opaque;
	return vmbus_host_post_message(g->vmbus, vp, input_gpa);
}

static uint16_t gen2_signal_event(void *opaque, uint32_t connection_id)
{
	struct gen2 *g = opaque;
	return vmbus_host_signal_event(g->vmbus, connection_id);
}

static void gen2_interrupt(void *opaque, uint32_t vp, uint8_t vector)
{
	struct gen2 *g = opaque;
	/* Fixed, edge, physical destination = the VP's APIC id (= VP index). */
	kvm_vm_signal_msi(g->vm.kvm, 0xFEE00000ull | (uint64_t)vp << 12, vector);
}

static uint64_t gen2_guest_tsc(void *opaque, uint32_t vp)
{
	struct gen2 *g = opaque;
	uint64_t tsc = 0;
	/* Only ever called on VP vp's own thread (its TIME_REF_COUNT read), outside KVM_RUN. */
	if (vp < g->vm.nr_vcpus && !kvm_vcpu_get_msr(g->vm.vcpus[vp].kvm, 0x10, &tsc) && tsc)
		atomic_store(&g->tsc_base, __rdtsc() - tsc);
	return tsc;
}

/* ---- the VMBus devices' host hooks (src/devices/vmdev.h) ---- */

/* A device stops the VM for the host (shutdown --force): the line on stderr says so even without -v. */
static void gen2_dev_stop_vm(void *opaque, bool reboot, const char *why)
{
	struct gen2 *g = opaque;
	pthread_mutex_lock(&g->forced_lock);
	snprintf(g->forced_why, sizeof(g->forced_why), "%s", why);
	pthread_mutex_unlock(&g->forced_lock);
	vm_stop(&g->vm, reboot ? VM_EXIT_RESET : VM_EXIT_POWEROFF, "%s", why);
}

static uint64_t gen2_dev_utc_now(void *opaque)
{
	struct gen2 *g = opaque;
	return fw_misc_clock_filetime(&g->life->misc);
}

/* TIME_REF_COUNT as a VP would read it now (hv.c: guest TSC * tsc_scale >> 64). */
static uint64_t gen2_dev_ref_time_now(void *opaque)
{
	struct gen2 *g = opaque;
	uint64_t tsc = __rdtsc() - atomic_load(&g->tsc_base);
	return (uint64_t)(((unsigned __int128)tsc * g->hv.tsc_scale) >> 64);
}

static unsigned gen2_dev_nics(void *opaque, struct vmdev_nic *out, unsigned max)
{
	struct gen2 *g = opaque;
	return vmdev_set_nics(&g->devices, out, max);
}

static void gen2_mmio_windows(const struct gen2 *g, struct vmdev_mmio_window *low, struct vmdev_mmio_window *high);

/* vmdev_host.map_ram: one memslot of anonymous memory. KVM takes KVM_SET_USER_MEMORY_REGION while
 * the vCPUs run; a move deletes the old slot before adding the new one (a slot's address cannot
 * change in place). */
static int gen2_dev_map_ram(void *opaque, uint64_t gpa, uint64_t size, void **host)
{
	struct gen2 *g = opaque;
	/* The classes checked gpa; checked again here, as a memslot over RAM or over another device
	 * would be this layer's fault. */
	struct vmdev_host w = { .mem = &g->vm.mem };
	gen2_mmio_windows(g, &w.mmio[0], &w.mmio[1]);
	const char *why;
	if (vmdev_mmio_check(&w, gpa, size, &why))
		return -EINVAL;
	pthread_mutex_lock(&g->dev_ram_lock);
	int r = 0;
	if (!g->dev_ram) {
		/* Anonymous and NORESERVE: the host pays only for the pages the guest draws on. */
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			r = -errno;
			goto out;
		}
		g->dev_ram = p;
		g->dev_ram_size = size;
	} else if (size != g->dev_ram_size) {
		r = -EBUSY;
		goto out;
	}
	if (g->dev_ram_mapped && g->dev_ram_gpa != gpa) {
		if ((r = kvm_vm_set_memory(g->vm.kvm, GEN2_DEV_RAM_SLOT, g->dev_ram_gpa, 0, g->dev_ram)))
			goto out;
		g->dev_ram_mapped = false;
	}
	if (!g->dev_ram_mapped) {
		/* Logged: a display learns from the log which rows the guest wrote (gen2_dev_ram_written). */
		if ((r = kvm_vm_set_memory_logged(g->vm.kvm, GEN2_DEV_RAM_SLOT, gpa, size, g->dev_ram)))
			goto out;
		g->dev_ram_gpa = gpa;
		g->dev_ram_mapped = true;
	}
	*host = g->dev_ram;
out:
	pthread_mutex_unlock(&g->dev_ram_lock);
	return r;
}

static int gen2_dev_unmap_ram(void *opaque)
{
	struct gen2 *g = opaque;
	int r = 0;
	pthread_mutex_lock(&g->dev_ram_lock);
	if (g->dev_ram_mapped && !(r = kvm_vm_set_memory(g->vm.kvm, GEN2_DEV_RAM_SLOT, g->dev_ram_gpa, 0, g->dev_ram)))
		g->dev_ram_mapped = false;
	pthread_mutex_unlock(&g->dev_ram_lock);
	return r;
}

/* firmware.watched: a VNC or web console viewer is attached. */
static bool gen2_watched(void *opaque)
{
	struct gen2 *g = opaque;
	return g->vnc && vnc_viewers(g->vnc) > 0;
}

/* firmware.boot_services_ended: the firmware's screen is the OS's now. */
static void gen2_boot_services_ended(void *opaque)
{
	struct gen2 *g = opaque;
	struct synthvid *vid = vmdev_set_state(&g->devices, "video");
	if (vid)
		synthvid_firmware_phase(vid, false);
}

/* vmdev_host.ram_written: KVM's dirty log of the device memory's slot. */
static int gen2_dev_ram_written(void *opaque, uint64_t *bitmap)
{
	struct gen2 *g = opaque;
	pthread_mutex_lock(&g->dev_ram_lock);
	int r = g->dev_ram_mapped ? kvm_vm_dirty_log(g->vm.kvm, GEN2_DEV_RAM_SLOT, bitmap) : -ENOENT;
	if (g->dev_ram_mapped && r == -ENOENT)
		r = -EIO; /* KVM keeps no log there: not "nothing mapped", which means nothing written */
	pthread_mutex_unlock(&g->dev_ram_lock);
	return r;
}

static void gen2_crash(void *opaque, const uint64_t p[5], const char *msg)
{
	struct gen2 *g = opaque;
	/* The guest's message (Linux: the tail of its log, up to a page) goes out whole, now; the exit
	 * line keeps the parameters. */
	if (msg)
		fprintf(stderr, "gen2vm: the guest's crash message:\n%s\n", msg);
	vm_stop(&g->vm, VM_EXIT_CRASH,
		"guest crashed: P0=0x%016" PRIx64 " P1=0x%016" PRIx64 " P2=0x%016" PRIx64 " P3=0x%016" PRIx64
		" P4=0x%016" PRIx64,
		p[0], p[1], p[2], p[3], p[4]);
}

/* ---- ports (the devices are src/devices/acpi_pm.c, testports.c, uart.c, rtc.c) ---- */

static void gen2_com1_irq(void *opaque, bool level)
{
	ioapic_set_irq(opaque, COM1_IRQ, level);
}

static unsigned gen2_com1_input(void *opaque, const unsigned char *d, unsigned n)
{
	return uart_input(opaque, d, n);
}

static void gen2_console_out(void *opaque, const uint8_t *d, unsigned n)
{
	console_write(opaque, d, n);
}

static void gen2_eoi(void *opaque, uint8_t vector)
{
	ioapic_eoi(opaque, vector);
}

/* ---- control socket commands ---- */

static int gen2_ctl_vm(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	if (!strcmp(argv[0], "pause"))
		vm_pause(&g->vm);
	else if (!strcmp(argv[0], "resume"))
		vm_resume(&g->vm);
	else if (!strcmp(argv[0], "reset")) /* a hard reset, as Restart-VM -Force: the process, its VNC viewers and sockets stay */
		vm_stop(&g->vm, VM_EXIT_RESET, "reset from the control socket");
	else
		vm_stop(&g->vm, VM_EXIT_POWEROFF, "turned off from the control socket");
	return 0;
}

/* `status [--json]`: the run state first (what scripts match), then what the devices say (heartbeat,
 * the guest's addresses...). */
static int gen2_ctl_status(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	bool json = argc == 2 && !strcmp(argv[1], "--json");
	if (argc > 2 || (argc == 2 && !json)) {
		snprintf(reply, len, "usage: status [--json]");
		return -EINVAL;
	}
	int st = atomic_load(&g->vm.run_state);
	const char *state = st == VM_RUNNING ? "running" : st == VM_PAUSED ? "paused" : "stopping";
	struct json_object *o = json_object_new_object();
	if (!o) {
		snprintf(reply, len, "out of memory");
		return -ENOMEM;
	}
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "uptime_s", json_object_new_int64((int64_t)((clock_mono_ns() - g->cfg->start_ns) / 1000000000ull)));
	char text[CONTROL_REPLY_MAX];
	snprintf(text, sizeof(text), "%s", state);
	vmdev_set_status(&g->devices, o, text, sizeof(text));
	if (g->vnc) {
		char part[512] = "";
		vnc_status(g->vnc, o, part, sizeof(part));
		size_t used = strlen(text);
		if (part[0] && used + 2 < sizeof(text))
			snprintf(text + used, sizeof(text) - used, "; %s", part);
	}
	int r = 0;
	if (json) {
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		if (strlen(s) < len) {
			snprintf(reply, len, "%s", s);
		} else {
			snprintf(reply, len, "the status (%zu bytes of JSON) does not fit one reply; use `status`", strlen(s));
			r = -EMSGSIZE;
		}
	} else {
		snprintf(reply, len, "%s", text);
	}
	json_object_put(o);
	return r;
}

/* `clock [--offset [+|-]S | --set @EPOCH]`: the VM's wall clock (what the firmware, the RTC and
 * the time sync service give the guest), and moving it. */
static int gen2_ctl_clock(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	struct fw_misc *m = &g->life->misc;
	const char *usage = "usage: clock [--offset [+|-]SECONDS | --set @UNIX-SECONDS]";
	bool changed = false;
	if (argc == 3 && !strcmp(argv[1], "--offset")) {
		int64_t off;
		if (fw_misc_offset_parse(argv[2], &off)) {
			snprintf(reply, len, "clock --offset '%s': expected seconds from -%lld to +%lld (100 years)",
				 text_show(argv[2]), FW_MISC_OFFSET_MAX, FW_MISC_OFFSET_MAX);
			return -EINVAL;
		}
		fw_misc_clock_offset_set(m, off);
		changed = true;
	} else if (argc == 3 && !strcmp(argv[1], "--set") && argv[2][0] == '@') {
		int64_t t, host = (int64_t)time(NULL);
		if (fw_misc_offset_parse(argv[2] + 1, &t) || t < 0 || (t - host > FW_MISC_OFFSET_MAX || host - t > FW_MISC_OFFSET_MAX)) {
			snprintf(reply, len, "clock --set '%s': expected @ and seconds since 1970 within 100 years of now",
				 text_show(argv[2]));
			return -EINVAL;
		}
		fw_misc_clock_set(m, t);
		changed = true;
	} else if (argc != 1) {
		snprintf(reply, len, "%s", usage);
		return -EINVAL;
	}
	time_t now = (time_t)fw_misc_clock_get(m);
	struct tm tm;
	char when[40];
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(reply, len, "VM clock %s (host UTC %+lld s)%s", when, (long long)fw_misc_clock_offset_get(m),
		 changed ? "; the guest's time sync service steps its clock at its next sample (within 5 s)" : "");
	return 0;
}

/* Parks the vCPUs to read where each one is (diagnosing a guest that hangs), then lets them go on. */
static int gen2_ctl_regs(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	bool was_running = atomic_load(&g->vm.run_state) == VM_RUNNING;
	vm_pause(&g->vm);
	size_t used = 0;
	reply[0] = 0;
	for (unsigned i = 0; i < g->vm.nr_vcpus && used < len; i++) {
		struct x86_regs r = { 0 };
		struct x86_sregs s = { 0 };
		kvm_vcpu_get_regs(g->vm.vcpus[i].kvm, &r);
		kvm_vcpu_get_sregs(g->vm.vcpus[i].kvm, &s);
		used += (size_t)snprintf(reply + used, len - used,
					 "%svcpu%u rip=0x%" PRIx64 " rsp=0x%" PRIx64 " rflags=0x%" PRIx64 " cr3=0x%" PRIx64
					 " cpl=%u rax=0x%" PRIx64 " rcx=0x%" PRIx64 " rdx=0x%" PRIx64 " rsi=0x%" PRIx64
					 " rdi=0x%" PRIx64 "%s",
					 i ? "; " : "", i, r.rip, r.gpr[X86_RSP], r.rflags, s.cr3, s.ss.dpl, r.gpr[X86_RAX],
					 r.gpr[X86_RCX], r.gpr[X86_RDX], r.gpr[X86_RSI], r.gpr[X86_RDI],
					 kvm_vcpu_is_waiting_sipi(g->vm.vcpus[i].kvm) ? " (waiting for SIPI)" : "");
	}
	if (was_running)
		vm_resume(&g->vm);
	return 0;
}

/* ---- saving and restoring (Hyper-V's saved state) ---- */

#define GEN2_SAVE_QUIESCE_MS 10000u

/* What the machine itself cannot save: NULL when it can, else why. */
static const char *gen2_unsaveable(struct gen2 *g)
{
	static char why[128];
	const char *cls = vmdev_set_unsaveable(&g->devices);
	if (cls) {
		snprintf(why, sizeof(why), "the %s device does not support saving yet", cls);
		return why;
	}
	if (!g->cfg->identity)
		return "the VM was started without a configuration identity";
	if (g->has_debug)
		return "the debug console port does not support saving";
	return NULL;
}

/* Writes the whole state to fd: vCPUs, the partition, the platform devices, the VMBus server and its
 * devices, then RAM. vCPUs paused, devices quiesced, the VMBus host quiet. 0 or -errno with err. */
static int gen2_save_write(struct gen2 *g, int fd, char *err, size_t errlen)
{
	struct vm *vm = &g->vm;
	struct savestate_writer w;
	savestate_write_begin(&w, fd, g->cfg->identity, g->cfg->identity_len, vm->nr_vcpus, vm->mem.ram_size);
	int r = 0;
	for (unsigned i = 0; i < vm->nr_vcpus && !r; i++) {
		uint8_t *b;
		size_t n;
		if ((r = kvm_vcpu_state_save(vm->vcpus[i].kvm, &b, &n))) {
			snprintf(err, errlen, "cannot read vCPU %u's state: %s", i, strerror(-r));
			return r;
		}
		r = savestate_write_section(&w, SAVESTATE_SEC_VCPU, i, b, n);
		free(b);
	}
	uint8_t *b;
	size_t n;
	if (!r && !(r = hv_save(&g->hv, &b, &n))) {
		r = savestate_write_section(&w, SAVESTATE_SEC_HV, 0, b, n);
		free(b);
	}
	struct savestate_ioapic io;
	ioapic_save(&g->ioapic, &io);
	savestate_write_section(&w, SAVESTATE_SEC_IOAPIC, 0, &io, sizeof(io));
	if (g->has_com1) {
		struct savestate_uart u;
		uart_save(&g->com1, &u);
		savestate_write_section(&w, SAVESTATE_SEC_PLATFORM, 0, &u, sizeof(u));
	}
	struct savestate_rtc rtc = { 0 };
	rtc_save(&g->rtc, &rtc);
	rtc.clock_offset_s = fw_misc_clock_offset_get(&g->life->misc);
	r = r ? r : savestate_write_section(&w, SAVESTATE_SEC_PLATFORM, 1, &rtc, sizeof(rtc));
	if (r) {
		snprintf(err, errlen, "cannot write the state: %s", strerror(-r));
		return r;
	}
	if ((r = vmdev_set_save(&g->devices, &w, err, errlen)))
		return r;
	if ((r = vmbus_server_save(vmbus_host_server(g->vmbus), &b, &n))) {
		snprintf(err, errlen, r == -EBUSY ? "the guest is in the middle of changing a VMBus channel (try again)"
						  : "cannot save the VMBus state: %s", strerror(-r));
		return r;
	}
	savestate_write_section(&w, SAVESTATE_SEC_VMBUS, 0, b, n);
	free(b);
	/* The video RAM: where it is mapped is the video device's state, its contents the machine's. */
	pthread_mutex_lock(&g->dev_ram_lock);
	if (g->dev_ram)
		savestate_write_devmem(&w, g->dev_ram, g->dev_ram_size, g->dev_ram_gpa, g->dev_ram_mapped);
	pthread_mutex_unlock(&g->dev_ram_lock);
	savestate_write_memory(&w, &vm->mem);
	if ((r = savestate_write_end(&w)) || (fsync(fd) < 0 && (r = -errno)))
		snprintf(err, errlen, "cannot write the state: %s", strerror(-r));
	return r;
}

/* `save FILE`: pauses the VM, quiesces its devices, writes FILE (atomically: a temporary file renamed
 * over it) and ends the VM with VM_EXIT_SAVED. Anything refused leaves the VM running as it was. */
static int gen2_ctl_save(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	if (argc != 2) {
		snprintf(reply, len, "usage: save FILE");
		return -EINVAL;
	}
	const char *why = gen2_unsaveable(g);
	if (why) {
		snprintf(reply, len, "cannot save the VM: %s", why);
		return -EOPNOTSUPP;
	}
	int state = atomic_load(&g->vm.run_state);
	if (state == VM_STOPPING) {
		snprintf(reply, len, "cannot save the VM: it is stopping");
		return -EINVAL;
	}
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= (int)sizeof(tmp)) {
		snprintf(reply, len, "save: the path is too long");
		return -ENAMETOOLONG;
	}
	int fd = file_open_user(tmp, O_WRONLY | O_CREAT | O_NOFOLLOW, 0600, FILE_REG, reply, len);
	if (fd < 0) {
		char w[256];
		snprintf(w, sizeof(w), "%s", reply);
		snprintf(reply, len, "save: %s: %s", text_show(tmp), w);
		return fd;
	}
	if (ftruncate(fd, 0) < 0) {
		int e = errno;
		close(fd);
		snprintf(reply, len, "save: %s: %s", text_show(tmp), strerror(e));
		return -e;
	}
	vm_pause(&g->vm);
	char err[512] = "";
	int r = vmdev_set_quiesce(&g->devices, GEN2_SAVE_QUIESCE_MS, err, sizeof(err));
	if (!r) {
		vmbus_host_quiet(g->vmbus);
		r = gen2_save_write(g, fd, err, sizeof(err));
		vmbus_host_unquiet(g->vmbus);
	}
	if (close(fd) < 0 && !r) {
		r = -errno;
		snprintf(err, sizeof(err), "cannot write the state: %s", strerror(-r));
	}
	if (!r && rename(tmp, argv[1]) < 0) {
		r = -errno;
		snprintf(err, sizeof(err), "cannot rename %s: %s", text_show(tmp), strerror(-r));
	}
	if (r) {
		unlink(tmp);
		vmdev_set_thaw(&g->devices); /* the devices' threads that quiesce held go on with the VM */
		if (state == VM_RUNNING)
			vm_resume(&g->vm);
		snprintf(reply, len, "cannot save the VM: %s%s", err, state == VM_RUNNING ? " (it runs on)" : "");
		return r;
	}
	vm_stop(&g->vm, VM_EXIT_SAVED, "the VM's state was saved to %s", text_show(argv[1]));
	snprintf(reply, len, "saved to %s", text_show(argv[1]));
	return 0;
}

static int gen2_restore_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int gen2_restore_fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "--restore %s: %s", text_show(path), what);
	return -EINVAL;
}

/* The device memory's contents (the DEVMEM section), after the devices' restore: the device that
 * maps it (the video device) has mapped it where the state says, or the state does not hold together.
 * Memory that was not mapped when saved is allocated here, for a later map to find its contents. */
static int gen2_restore_dev_ram(struct gen2 *g, const struct savestate_file *f, char *err, size_t errlen)
{
	struct savestate_sec s;
	struct savestate_devmem dm;
	bool have = !savestate_find(f, SAVESTATE_SEC_DEVMEM, 0, &s);
	if (have && savestate_devmem_check(&s, &dm, err, errlen))
		return -EINVAL;
	int r = 0;
	pthread_mutex_lock(&g->dev_ram_lock);
	if (!have) {
		if (g->dev_ram)
			r = -EINVAL;
	} else if ((g->dev_ram && g->dev_ram_size != dm.size) || (!g->dev_ram && dm.mapped) ||
		   dm.mapped != g->dev_ram_mapped || (dm.mapped && dm.gpa != g->dev_ram_gpa)) {
		r = -EINVAL;
	} else if (!g->dev_ram) {
		void *p = mmap(NULL, dm.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			r = -errno;
			snprintf(err, errlen, "cannot allocate the device memory: %s", strerror(-r));
		} else {
			g->dev_ram = p;
			g->dev_ram_size = dm.size;
		}
	}
	if (r == -EINVAL)
		snprintf(err, errlen, "the device memory (video RAM) does not fit the video device's state");
	if (!r && have && savestate_devmem_load(&s, g->dev_ram, g->dev_ram_size))
		r = -EINVAL;
	pthread_mutex_unlock(&g->dev_ram_lock);
	struct synthvid *vid = vmdev_set_state(&g->devices, "video");
	if (!r && have && vid) /* a display that drew the screen before its contents came draws it again */
		synthvid_screen_changed(vid);
	return r;
}

/* Loads a checked state file into the machine gen2_setup built (its vCPUs not started). */
static int gen2_restore_load(struct gen2 *g, const struct savestate_file *f, const char *path, char *err,
			     size_t errlen)
{
	struct vm *vm = &g->vm;
	struct savestate_sec s;
	char why[512] = "";
	/* RAM first: what is restored after it may write to it at once (the SynIC delivers the queued
	 * messages into the guest's message page from the service thread). */
	int r = guest_mem_clear(&vm->mem);
	if (r || (r = savestate_load_memory(f, &vm->mem)))
		return gen2_restore_fail(err, errlen, path, "cannot load guest memory: %s", strerror(-r));
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (savestate_find(f, SAVESTATE_SEC_VCPU, i, &s))
			return gen2_restore_fail(err, errlen, path, "vCPU %u's state is missing", i);
		if (kvm_vcpu_state_restore(vm->vcpus[i].kvm, s.data, s.len, why, sizeof(why)))
			return gen2_restore_fail(err, errlen, path, "%s", why);
	}
	if (savestate_find(f, SAVESTATE_SEC_HV, 0, &s) || hv_restore(&g->hv, s.data, s.len, why, sizeof(why)))
		return gen2_restore_fail(err, errlen, path, "%s", why[0] ? why : "the Hyper-V state is missing");
	struct savestate_ioapic io;
	if (savestate_find(f, SAVESTATE_SEC_IOAPIC, 0, &s) || s.len != sizeof(io) || (memcpy(&io, s.data, sizeof(io)), 0) ||
	    ioapic_restore(&g->ioapic, &io))
		return gen2_restore_fail(err, errlen, path, "bad I/O APIC state");
	bool com1 = !savestate_find(f, SAVESTATE_SEC_PLATFORM, 0, &s);
	if (com1 != g->has_com1)
		return gen2_restore_fail(err, errlen, path, "COM1's state does not fit the VM");
	struct savestate_uart u;
	if (com1 && (s.len != sizeof(u) || (memcpy(&u, s.data, sizeof(u)), uart_restore(&g->com1, &u))))
		return gen2_restore_fail(err, errlen, path, "bad COM1 state");
	struct savestate_rtc rtc;
	if (savestate_find(f, SAVESTATE_SEC_PLATFORM, 1, &s) || s.len != sizeof(rtc) ||
	    (memcpy(&rtc, s.data, sizeof(rtc)), rtc_restore(&g->rtc, &rtc)) || rtc.clock_offset_s > FW_MISC_OFFSET_MAX ||
	    rtc.clock_offset_s < -FW_MISC_OFFSET_MAX)
		return gen2_restore_fail(err, errlen, path, "bad RTC state");
	fw_misc_clock_offset_set(&g->life->misc, rtc.clock_offset_s);
	/* The partition's reference time follows the restored guest TSC. */
	uint64_t tsc = 0;
	if (!kvm_vcpu_get_msr(vm->vcpus[0].kvm, 0x10, &tsc))
		atomic_store(&g->tsc_base, __rdtsc() - tsc);
	if (savestate_find(f, SAVESTATE_SEC_VMBUS, 0, &s))
		return gen2_restore_fail(err, errlen, path, "the VMBus state is missing");
	vmbus_host_lock(g->vmbus);
	struct vmbus_server *srv = vmbus_host_server(g->vmbus);
	r = vmbus_server_restore(srv, s.data, s.len, why, sizeof(why));
	if (!r)
		r = vmdev_set_restore(&g->devices, f, why, sizeof(why));
	/* The video device mapped its VRAM again where it was: now its contents. */
	if (!r)
		r = gen2_restore_dev_ram(g, f, why, sizeof(why));
	if (!r)
		vmbus_server_kick_open(srv);
	vmbus_host_unlock(g->vmbus);
	if (r)
		return gen2_restore_fail(err, errlen, path, "%s", why);
	return 0;
}

/* --restore FILE: the state replaces the boot gen2_setup prepared. The whole file is checked before
 * anything is taken from it; a refusal leaves the file as it was. 0 or -errno (logged). */
static int gen2_restore(struct gen2 *g, const char *path)
{
	char why[256] = "", err[768];
	int fd = file_open_user(path, O_RDONLY, 0, FILE_REG, why, sizeof(why));
	if (fd < 0) {
		log_error("--restore %s: %s", text_show(path), why);
		return fd;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		close(fd);
		log_error("--restore %s: not a gen2vm saved-state file (empty)", text_show(path));
		return -EINVAL;
	}
	const uint8_t *buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (buf == MAP_FAILED) {
		log_error("--restore %s: %s", text_show(path), strerror(errno));
		return -EIO;
	}
	struct savestate_file f;
	int r = savestate_open(&f, buf, (size_t)st.st_size, why, sizeof(why));
	if (r)
		gen2_restore_fail(err, sizeof(err), path, "%s", why);
	else if ((r = savestate_check_machine(&f, g->cfg->identity, g->cfg->identity_len, g->vm.nr_vcpus,
					      g->vm.mem.ram_size, why, sizeof(why))) ||
		 (r = savestate_check_memory(&f, &g->vm.mem, why, sizeof(why))))
		gen2_restore_fail(err, sizeof(err), path, "%s", why);
	else
		r = gen2_restore_load(g, &f, path, err, sizeof(err));
	munmap((void *)buf, (size_t)st.st_size);
	if (r)
		log_error("%s", err);
	else
		fprintf(stderr, "gen2vm: resumed from the saved state in %s\n", text_show(path));
	return r;
}

static int gen2_ctl_continue(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	struct gen2 *g = opaque;
	firmware_continue(&g->fw);
	snprintf(reply, len, "the firmware goes on with the next boot entry if it was paused");
	return 0;
}

/* The storage class's drives at start: one boot entry each (Hyper-V's firmware lists every drive). */
static int gen2_drives_present(void *opaque, const struct vmdev_drive *d, unsigned n)
{
	struct gen2 *g = opaque;
	if (!g->nv)
		return 0;
	struct bootopt_device *devs = calloc(n ? n : 1, sizeof(*devs));
	if (!devs)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		devs[i] = (struct bootopt_device){ d[i].controller, d[i].lun, d[i].dvd };
	nvram_lock(g->nv);
	int r = bootopt_sync(g->nv, devs, n);
	nvram_unlock(g->nv);
	free(devs);
	if (r)
		log_error("%s: cannot update the boot entries", nvram_path(g->nv) ? nvram_path(g->nv) : "NVRAM");
	return r;
}

/* The network adapters at start: one "EFI Network" entry each, after the drives' (as Hyper-V orders
 * them). At start an adapter's slot is its instance (both count from 0); hot-added adapters get none. */
static void gen2_nics_present(struct gen2 *g)
{
	struct vmdev_nic nics[VMDEV_NICS_MAX];
	struct bootopt_nic b[VMDEV_NICS_MAX];
	if (!g->nv)
		return;
	unsigned n = vmdev_set_nics(&g->devices, nics, VMDEV_NICS_MAX);
	for (unsigned i = 0; i < n; i++) {
		b[i].instance = nics[i].slot;
		memcpy(b[i].mac, nics[i].mac, 6);
	}
	nvram_lock(g->nv);
	bootopt_nic_sync(g->nv, b, n);
	nvram_unlock(g->nv);
}

/* A drive hot added goes to the bottom of the boot order; a removed one leaves it. */
static void gen2_drive_changed(void *opaque, const struct vmdev_drive *d, bool added)
{
	struct gen2 *g = opaque;
	if (!g->nv)
		return;
	struct bootopt_device b = { d->controller, d->lun, d->dvd };
	nvram_lock(g->nv);
	if (added)
		bootopt_device_added(g->nv, &b);
	else
		bootopt_device_removed(g->nv, d->controller, d->lun);
	nvram_unlock(g->nv);
}

static int gen2_setup_control(struct gen2 *g, const char *path)
{
	char err[256];
	int r = control_open(&g->control, path, err, sizeof(err));
	if (r) {
		log_error("%s", err);
		return r;
	}
	control_register(g->control, "status", "status [--json]", gen2_ctl_status, g);
	control_register(g->control, "pause", "pause", gen2_ctl_vm, g);
	control_register(g->control, "resume", "resume", gen2_ctl_vm, g);
	control_register(g->control, "stop", "stop (turn off)", gen2_ctl_vm, g);
	control_register(g->control, "reset", "reset (hard reset, as pressing the reset button; with --no-reboot the VM ends)",
			 gen2_ctl_vm, g);
	control_register(g->control, "regs", "regs (where each vCPU is)", gen2_ctl_regs, g);
	control_register(g->control, "clock", "clock [--offset [+|-]S | --set @UNIX-SECONDS]", gen2_ctl_clock, g);
	control_register(g->control, "save", "save FILE (save the VM's state and end it; gen2vm run --restore FILE)",
			 gen2_ctl_save, g);
	if (!g->cfg->kernel && !g->cfg->elf)
		control_register(g->control, "continue", "continue (after a boot failure, with PauseAfterBootFailure)",
				 gen2_ctl_continue, g);
	if (g->vnc)
		control_register(g->control, "vnc", "vnc (where the VNC server and web console listen, viewers)", vnc_verb,
				 g->vnc);
	if ((r = vmdev_set_register_verbs(&g->devices, g->control))) {
		log_error("%s: cannot register the devices' commands: %s", text_show(path), strerror(-r));
		return r;
	}
	return control_start(g->control);
}

/* ---- assembly ---- */

/* SMBIOS for the firmware at FW_SMBIOS_GPA, with the system UUID (--uuid, else a random one drawn
 * once per process so a guest reset keeps it) also returned in uuid for the hand-off block. */
static int gen2_build_smbios(struct gen2 *g, uint8_t uuid[16])
{
	struct gen2_life *life = g->life;
	struct vm *vm = &g->vm;
	if (g->cfg->has_uuid) {
		memcpy(uuid, g->cfg->uuid, 16);
	} else if (g->nv) {
		memcpy(uuid, nvram_system_uuid(g->nv), 16); /* the VM's own, kept in its NVRAM file */
	} else {
		if (!life->have_random_uuid) {
			uint8_t *u = life->random_uuid;
			if (getrandom(u, 16, 0) != 16) {
				log_error("SMBIOS: no random system UUID (getrandom failed); give --uuid");
				return -EIO;
			}
			u[7] = (uint8_t)((u[7] & 0x0f) | 0x40); /* version 4 (SMBIOS byte order) */
			u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
			life->have_random_uuid = true;
		}
		memcpy(uuid, life->random_uuid, 16);
	}
	struct smbios_config sc = {
		.bios_version = "0.1", .bios_date = "11/22/2026", .bios_major = 0, .bios_minor = 1,
		.nr_vcpus = vm->nr_vcpus,
	};
	memcpy(sc.uuid, uuid, 16);
	for (unsigned i = 0; i < vm->mem.nr_regions && sc.nr_ram < SMBIOS_RAM_MAX; i++) {
		sc.ram[sc.nr_ram].start = vm->mem.region[i].gpa;
		sc.ram[sc.nr_ram++].size = vm->mem.region[i].size;
	}
	uint8_t *buf = guest_mem_ptr(&vm->mem, FW_SMBIOS_GPA, FW_SMBIOS_SIZE);
	if (!buf)
		return -E2BIG;
	int n = smbios_build(&sc, FW_SMBIOS_GPA, buf, FW_SMBIOS_SIZE);
	if (n < 0) {
		log_error("SMBIOS: the tables do not fit in %llu bytes", FW_SMBIOS_SIZE);
		return n;
	}
	return 0;
}

/* The MMIO windows VMOD's _CRS offers VMBus devices: one below the IOAPIC, one above RAM (1 GiB
 * aligned). The device classes get the same ones (vmdev_host.mmio) to check the guest's choices. */
static void gen2_mmio_windows(const struct gen2 *g, struct vmdev_mmio_window *low, struct vmdev_mmio_window *high)
{
	uint64_t high_base = g->vm.mem.ram_size > GUEST_MMIO_GAP_START
				     ? GUEST_HIGH_RAM_START + (g->vm.mem.ram_size - GUEST_MMIO_GAP_START)
				     : GUEST_HIGH_RAM_START;
	high_base = (high_base + (1ull << 30) - 1) & ~((1ull << 30) - 1);
	*low = (struct vmdev_mmio_window){ GEN2_MMIO_LOW_BASE, GEN2_MMIO_LOW_SIZE };
	*high = (struct vmdev_mmio_window){ high_base, GEN2_MMIO_HIGH_SIZE };
}

static int gen2_build_acpi(struct gen2 *g, uint64_t *rsdp)
{
	struct vmdev_mmio_window low, high;
	gen2_mmio_windows(g, &low, &high);
	struct acpi_config ac = {
		.nr_vcpus = g->vm.nr_vcpus,
		.com1 = g->has_com1,
		.rtc = true,
		.ioapic = true,
		.vmbus = true,
		.mmio_low = { low.base, low.size },
		.mmio_high = { high.base, high.size },
	};
	uint8_t *buf = guest_mem_ptr(&g->vm.mem, BOOT_ACPI_GPA, BOOT_ACPI_TABLES_MAX);
	if (!buf)
		return -E2BIG;
	ssize_t n = acpi_tables_build(&ac, buf, BOOT_ACPI_TABLES_MAX, BOOT_ACPI_GPA, rsdp);
	if (n < 0) {
		log_error("cannot build the ACPI tables: %s", strerror((int)-n));
		return (int)n;
	}
	return 0;
}

/* A guest that resets by jumping to the reset vector finds a PC's BIOS entry there, which resets the
 * machine. Linux does this as its last resort, and it is the one it reaches first under a hardware-reduced
 * FADT without EFI runtime services (a direct boot): it then skips the reset register and the keyboard
 * controller, tries EFI, and jumps to F000:FFF0 in real mode. The stub writes ACPI_RESET_VALUE to the
 * reset register; then halts, should the write be lost. */
static int gen2_write_reset_vector(struct vm *vm)
{
	const uint8_t stub[16] = {
		0xba, ACPI_PORT_RESET & 0xff, ACPI_PORT_RESET >> 8, /* mov dx, ACPI_PORT_RESET */
		0xb0, ACPI_RESET_VALUE,                              /* mov al, ACPI_RESET_VALUE */
		0xee,                                                /* out dx, al */
		0xf4,                                                /* 1: hlt */
		0xeb, 0xfd,                                          /* jmp 1b */
	};
	return guest_mem_write(&vm->mem, BOOT_RESET_VECTOR_GPA, stub, sizeof(stub));
}

static int gen2_setup(struct gen2 *g)
{
	const struct gen2_config *cfg = g->cfg;
	char err[256] = "";
	int r = vm_create(&g->vm, cfg->memory, cfg->cpus, err, sizeof(err));
	if (r) {
		log_error("%s", err);
		return r;
	}
	struct vm *vm = &g->vm;
	atomic_store(&g->tsc_base, __rdtsc());
	vm->pio.log_unclaimed = vm->mmio.log_unclaimed = cfg->log_unclaimed;

	uint32_t tsc_khz = kvm_vcpu_tsc_khz(vm->vcpus[0].kvm);
	struct hv_ops hops = { .opaque = g, .crash = gen2_crash, .interrupt = gen2_interrupt,
			       .guest_tsc = gen2_guest_tsc, .post_message = gen2_post_message,
			       .signal_event = gen2_signal_event };
	/* KVM's LAPIC timer counts at 1 GHz (a 1 ns bus cycle). */
	/* With --clock-slowdown N the guest is told both clocks run N times faster than they do: its
	 * timer ticks, timeouts and idea of a second all stretch N times in real time. */
	uint64_t slow = cfg->clock_slowdown ? cfg->clock_slowdown : 1;
	hv_partition_init(&g->hv, &vm->mem, g->vps, vm->nr_vcpus, (uint64_t)tsc_khz * 1000 * slow, 1000000000ull * slow,
			  &hops);
	g->hv_ready = true;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].hv = &g->vps[i];
	if ((r = vmbus_host_create(&g->vmbus, &vm->mem, &g->hv, vm->kvm))) {
		log_error("cannot start the VMBus host: %s", strerror(-r));
		return r;
	}
	/* MACs come from a per-VM seed: the control socket path names the VM when there is one. */
	struct vmdev_host dh = { .srv = vmbus_host_server(g->vmbus), .srv_lock = vmbus_host_mutex(g->vmbus),
				 .mem = &vm->mem, .nr_vcpus = vm->nr_vcpus, .vm_name = cfg->control ? cfg->control : "gen2vm",
				 .opaque = g, .drives_present = gen2_drives_present, .drive_changed = gen2_drive_changed,
				 .stop_vm = gen2_dev_stop_vm, .utc_now = gen2_dev_utc_now,
				 .ref_time_now = gen2_dev_ref_time_now, .nics = gen2_dev_nics,
				 .map_ram = gen2_dev_map_ram, .unmap_ram = gen2_dev_unmap_ram,
				 .ram_written = gen2_dev_ram_written, .video = cfg->video };
	gen2_mmio_windows(g, &dh.mmio[0], &dh.mmio[1]);
	if ((r = vmdev_set_create(&g->devices, &dh, &cfg->devices, err, sizeof(err)))) {
		if (err[0])
			log_error("%s", err);
		return r;
	}
	gen2_nics_present(g);
	struct kvm_msr_range msr_ranges[] = { { HV_MSR_FIRST, HV_MSR_COUNT, true, true } };
	if ((r = kvm_vm_filter_msrs(vm->kvm, msr_ranges, 1))) {
		log_error("cannot route the Hyper-V MSRs to gen2vm: %s", strerror(-r));
		return r;
	}
	vm->msr = (struct vm_msr_ops){ .opaque = g, .read = gen2_msr_read, .write = gen2_msr_write };
	vm->vcpu_port = HV_HYPERCALL_PORT;
	vm->vcpu_port_fn = gen2_hypercall;
	vm->vcpu_port_opaque = g;
	vm->emulate = vcpu_complete_instruction;
	if ((r = gen2_setup_cpuid(g)))
		return r;

	ioapic_init(&g->ioapic, vm->kvm);
	vm->eoi = gen2_eoi;
	vm->eoi_opaque = &g->ioapic;
	r = ioapic_attach(&g->ioapic, &vm->mmio);
	r = r ? r : acpi_pm_attach(vm);
	rtc_init(&g->rtc, &(struct rtc_clock){ fw_misc_clock_get, fw_misc_clock_set, &g->life->misc });
	r = r ? r : rtc_attach(&g->rtc, &vm->pio);
	r = r ? r : vmbus_host_attach_signal_port(g->vmbus, &vm->pio);
	if (r)
		return r;
	if (cfg->com1.kind != CONSOLE_NONE || cfg->com1_attach) {
		if ((r = console_open(&g->com1_con, &cfg->com1, cfg->com1_attach, gen2_com1_input, &g->com1, err,
				      sizeof(err)))) {
			log_error("%s %s", cfg->com1_attach && strstr(err, cfg->com1_attach) ? "--com1-attach" : "--com1", err);
			return r;
		}
		uart_init(&g->com1, gen2_console_out, &g->com1_con, gen2_com1_irq, &g->ioapic);
		if ((r = uart_attach(&g->com1, &vm->pio, ACPI_COM1_PORT)))
			return r;
		g->has_com1 = true;
	}
	if (cfg->debugcon.kind != CONSOLE_NONE) {
		if ((r = console_open(&g->debug_con, &cfg->debugcon, NULL, NULL, NULL, err, sizeof(err)))) {
			log_error("--debugcon %s", err);
			return r;
		}
		if ((r = testports_attach(&g->testports, vm, gen2_console_out, &g->debug_con)))
			return r;
		g->has_debug = true;
	}
	if (cfg->vnc.vnc.kind != VNC_ADDR_NONE || cfg->vnc.web.kind != VNC_ADDR_NONE) {
		/* The devices outlive its use: vnc_detach runs before vmdev_set_destroy. */
		struct synthvid *vid = vmdev_set_state(&g->devices, "video");
		struct synthkbd *kbd = vmdev_set_state(&g->devices, "keyboard");
		struct synthmouse *mouse = vmdev_set_state(&g->devices, "mouse");
		if (!vid || !kbd || !mouse) {
			log_error("--vnc: the synthetic console devices are not running");
			return -ENODEV;
		}
		if (g->life->vnc) {
			vnc_attach(g->life->vnc, vid, kbd, mouse);
		} else if ((r = vnc_start(&g->life->vnc, &cfg->vnc, vid, kbd, mouse, err, sizeof(err)))) {
			log_error("%s", err);
			return r;
		}
		g->vnc = g->life->vnc;
	}
	uint64_t rsdp = 0;
	if ((r = gen2_build_acpi(g, &rsdp)) || (r = gen2_write_reset_vector(vm)))
		return r;

	if (cfg->elf) {
		uint8_t *img;
		size_t len;
		uint64_t entry, end;
		if ((r = loader_read_file(cfg->elf, &img, &len)))
			return r;
		r = loader_elf_load(vm, img, len, cfg->elf, &entry, &end);
		free(img);
		if (r)
			return r;
		if ((r = boot_write_tables(vm)))
			return r;
		/* Test-guest ABI: RDI = number of vCPUs, RSI = RSDP address. */
		return boot_enter_long_mode(&vm->vcpus[0], entry, BOOT_STACK_TOP, rsdp, vm->nr_vcpus);
	}
	if (!cfg->kernel) {
		struct firmware_config fc = {
			.path = cfg->firmware, .efi = cfg->efi, .initrd = cfg->initrd, .cmdline = cfg->cmdline,
			.com1 = g->has_com1, .debugcon = g->has_debug, .rsdp_gpa = rsdp,
			.nvram_file = cfg->nvram != NULL,
		};
		if ((r = gen2_build_smbios(g, fc.system_uuid)))
			return r;
		fc.smbios_gpa = FW_SMBIOS_GPA;
		if ((r = firmware_setup(&g->fw, vm, &fc)))
			return r;
		if (g->nv) {
			g->fw.var_fn = nvram_host_call;
			g->fw.var_opaque = g->nv;
			g->sec.nv = g->nv;
			g->sec.mem = &vm->mem;
			g->fw.sec_fn = secboot_host_call;
			g->fw.sec_opaque = &g->sec;
		}
		g->fw.misc_fn = fw_misc_handle;
		g->fw.misc_opaque = &g->life->misc;
		g->fw.watched = gen2_watched;
		g->fw.boot_services_ended = gen2_boot_services_ended;
		g->fw.hooks_opaque = g;
		/* The video device's channel opened from now until ExitBootServices is the firmware's. */
		struct synthvid *vid = vmdev_set_state(&g->devices, "video");
		if (vid)
			synthvid_firmware_phase(vid, true);
		return 0;
	}
	struct linux_boot_config lc = { cfg->kernel, cfg->initrd, cfg->cmdline, rsdp };
	struct linux_boot_info info;
	if ((r = loader_linux_boot(vm, &lc, &info)))
		return r;
	log_info("%s: loaded as %s, entry 0x%" PRIx64, cfg->kernel, info.how, info.entry);
	return 0;
}

static int gen2_run_loop(const struct gen2_config *cfg, struct gen2_life *life);

/* In dependency order: nothing may still run that uses what is freed after it. The vCPUs stop
 * first; then every thread that reaches guest RAM or KVM (control socket, network workers, storage
 * I/O, the VMBus service thread, console input raising the UART's IRQ); guest RAM and KVM last. */
static void gen2_teardown(struct gen2 *g)
{
	control_close(g->control);
	vnc_detach(g->vnc); /* its thread sends to the devices; before they go (gen2_run stops it) */
	g->vnc = NULL;
	if (g->vm.kvm) {
		vm_stop(&g->vm, VM_EXIT_ERROR, NULL); /* no effect when the guest already ended it */
		vm_wait(&g->vm);
	}
	vmdev_set_destroy(&g->devices); /* each class takes the server lock itself */
	if (g->vmbus)
		vmbus_host_destroy(g->vmbus);
	if (g->has_com1 || g->com1_con.thread_started || g->com1_con.own_out || g->com1_con.hub)
		console_close(&g->com1_con);
	if (g->has_debug || g->debug_con.thread_started || g->debug_con.own_out)
		console_close(&g->debug_con);
	if (g->hv_ready)
		hv_partition_destroy(&g->hv);
	if (g->vm.kvm)
		vm_destroy(&g->vm);
	if (g->dev_ram) /* after the VM: no memslot points at it any more */
		munmap(g->dev_ram, g->dev_ram_size);
	rtc_destroy(&g->rtc); /* a zeroed mutex when setup stopped before the RTC */
}

/* The VM gen2_stop_request stops: the one between setup and teardown, if any. */
static pthread_mutex_t gen2_current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gen2 *gen2_current;
static int gen2_stop_sig;
static bool gen2_term_asked; /* a SIGTERM asked the guest to shut down */

void gen2_stop_request(int sig)
{
	pthread_mutex_lock(&gen2_current_lock);
	struct gen2 *g = gen2_current;
	if (sig == SIGTERM && g && !g->cfg->sigterm_turn_off && !gen2_term_asked && !gen2_stop_sig) {
		unsigned t = g->cfg->sigterm_timeout ? g->cfg->sigterm_timeout : 60;
		if (vmdev_set_stop_request(&g->devices, t) == 0) {
			gen2_term_asked = true;
			gen2_stop_sig = sig; /* the VM is not restarted when it ends; gen2_run returns 128 + sig */
			log_warn("SIGTERM: the guest was asked to shut down; it is turned off if it still runs in %u s "
				 "(another signal turns it off now)", t);
			pthread_mutex_unlock(&gen2_current_lock);
			return;
		}
	}
	if (!gen2_stop_sig || gen2_term_asked) {
		gen2_stop_sig = sig;
		gen2_term_asked = false;
	}
	if (g)
		vm_stop(&g->vm, VM_EXIT_POWEROFF, "stopped by signal %d (%s)", sig, strsignal(sig));
	pthread_mutex_unlock(&gen2_current_lock);
}

/* Makes g the one a signal stops (NULL: none); returns the signal already requested, or 0. */
static int gen2_current_set(struct gen2 *g)
{
	pthread_mutex_lock(&gen2_current_lock);
	gen2_current = g;
	int sig = gen2_stop_sig;
	if (g && sig)
		vm_stop(&g->vm, VM_EXIT_POWEROFF, "stopped by signal %d (%s)", sig, strsignal(sig));
	pthread_mutex_unlock(&gen2_current_lock);
	return sig;
}

int gen2_run(const struct gen2_config *cfg)
{
	/* The variable store outlives each VM instance: non-volatile variables survive a guest reset
	 * even without a file. */
	struct gen2_life *life = calloc(1, sizeof(*life));
	if (!life)
		return -ENOMEM;
	fw_misc_init(&life->misc);
	fw_misc_clock_offset_set(&life->misc, cfg->clock_offset_s);
	if (!cfg->kernel && !cfg->elf) {
		char err[512];
		int r = nvram_open(cfg->nvram, true, true, &life->nv, err, sizeof(err));
		if (r) {
			log_error("%s", err);
			free(life);
			return r;
		}
	}
	int ret = gen2_run_loop(cfg, life);
	vnc_stop(life->vnc);
	nvram_close(life->nv);
	free(life);
	return ret;
}

static int gen2_run_loop(const struct gen2_config *cfg, struct gen2_life *life)
{
	struct nvram *nv = life->nv;
	bool restored = false;
	for (;;) {
		struct gen2 *g = calloc(1, sizeof(*g));
		if (!g)
			return -ENOMEM;
		g->cfg = cfg;
		g->life = life;
		pthread_mutex_init(&g->forced_lock, NULL);
		pthread_mutex_init(&g->dev_ram_lock, NULL);
		g->nv = nv;
		if (nv) {
			nvram_vm_reset(nv); /* volatile variables last one boot */
			g->sec.active = secboot_vm_start(nv);
		}
		int r = gen2_setup(g);
		if (!r && cfg->restore && !restored) {
			restored = true; /* a guest reset after it boots afresh */
			r = gen2_restore(g, cfg->restore);
		}
		/* Last: a control socket that answers says the VM is ready (vm start resumes on it). */
		if (!r && cfg->control)
			r = gen2_setup_control(g, cfg->control);
		if (r) {
			gen2_teardown(g);
			pthread_mutex_destroy(&g->forced_lock);
			pthread_mutex_destroy(&g->dev_ram_lock);
			free(g);
			int sig = gen2_current_set(NULL);
			return sig ? 128 + sig : r;
		}
		/* The VM starts: only now may the consoles' files be truncated (a VM that never starts
		 * leaves them as they were). */
		console_commit(&g->com1_con);
		console_commit(&g->debug_con);
		gen2_current_set(g);
		vm_start(&g->vm);
		enum vm_exit_kind k = vm_wait(&g->vm);
		int sig = gen2_current_set(NULL);
		if (cfg->stats)
			vm_stats_print(&g->vm, cfg->start_ns, clock_mono_ns(), stderr);
		if (g->vm.exit_msg[0]) {
			pthread_mutex_lock(&g->forced_lock);
			bool forced = g->forced_why[0] && !strcmp(g->vm.exit_msg, g->forced_why);
			pthread_mutex_unlock(&g->forced_lock);
			if (forced)
				log_warn("%s", g->vm.exit_msg);
			else if (k == VM_EXIT_SAVED) /* what ended the process, said even without -v */
				fprintf(stderr, "gen2vm: %s\n", g->vm.exit_msg);
			else if (k == VM_EXIT_POWEROFF || k == VM_EXIT_RESET)
				log_info("%s", g->vm.exit_msg);
			else
				log_error("%s", g->vm.exit_msg);
		}
		gen2_teardown(g);
		pthread_mutex_destroy(&g->forced_lock);
		pthread_mutex_destroy(&g->dev_ram_lock);
		free(g);
		if (sig)
			return 128 + sig;
		if (k != VM_EXIT_RESET || cfg->no_reboot)
			return (int)k;
		log_info("restarting the VM after a guest reset");
	}
}
