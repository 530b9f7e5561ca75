#include "hv/hv.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

/* MSR numbers (TLFS). */
#define MSR_GUEST_OS_ID 0x40000000u
#define MSR_HYPERCALL 0x40000001u
#define MSR_VP_INDEX 0x40000002u
#define MSR_TIME_REF_COUNT 0x40000020u
#define MSR_TSC_FREQUENCY 0x40000022u
#define MSR_APIC_FREQUENCY 0x40000023u
#define MSR_VP_ASSIST_PAGE 0x40000073u
#define MSR_SCONTROL 0x40000080u
#define MSR_SVERSION 0x40000081u
#define MSR_SIEFP 0x40000082u
#define MSR_SIMP 0x40000083u
#define MSR_EOM 0x40000084u
#define MSR_SINT0 0x40000090u
#define MSR_SINT15 0x4000009Fu
#define MSR_CRASH_P0 0x40000100u
#define MSR_CRASH_P4 0x40000104u
#define MSR_CRASH_CTL 0x40000105u
#define MSR_TSC_INVARIANT_CONTROL 0x40000118u

#define CRASH_CTL_NOTIFY (1ull << 63)
#define CRASH_CTL_NOTIFY_MSG (1ull << 62)
#define SINT_MASKED (1ull << 16)

/* Partition privileges (CPUID 0x40000003.EAX): SynIC, hypercall, VP index, frequency MSRs, invariant TSC. */
#define HV_FEAT_EAX ((1u << 2) | (1u << 5) | (1u << 6) | (1u << 11) | (1u << 15))
#define HV_FEAT_EBX ((1u << 4) | (1u << 5))          /* PostMessages, SignalEvents */
#define HV_FEAT_EDX ((1u << 8) | (1u << 10))         /* frequency MSRs available, crash MSRs */
#define HV_HINT_DEPRECATE_AEOI (1u << 9)

static uint64_t hv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void hv_partition_init(struct hv_partition *hv, const struct guest_mem *mem, unsigned nr_vps, uint64_t tsc_hz,
		       uint64_t apic_hz, const struct hv_ops *ops)
{
	memset(hv, 0, sizeof(*hv));
	pthread_mutex_init(&hv->lock, NULL);
	hv->mem = mem;
	hv->nr_vps = nr_vps;
	hv->tsc_hz = tsc_hz;
	hv->apic_hz = apic_hz;
	hv->start_ns = hv_now_ns();
	if (ops)
		hv->ops = *ops;
}

void hv_vp_init(struct hv_vp *vp, uint32_t index)
{
	memset(vp, 0, sizeof(*vp));
	vp->index = index;
	for (int i = 0; i < 16; i++)
		vp->sint[i] = SINT_MASKED;
}

static int hv_cpuid_add(struct x86_cpuid_entry *e, unsigned *n, unsigned max, uint32_t fn, uint32_t a, uint32_t b,
			uint32_t c, uint32_t d)
{
	for (unsigned i = 0; i < *n; i++)
		if (e[i].function == fn) {
			e[i] = (struct x86_cpuid_entry){ .function = fn, .eax = a, .ebx = b, .ecx = c, .edx = d };
			return 0;
		}
	if (*n >= max)
		return -ENOSPC;
	e[(*n)++] = (struct x86_cpuid_entry){ .function = fn, .eax = a, .ebx = b, .ecx = c, .edx = d };
	return 0;
}

int hv_cpuid_fill(struct hv_partition *hv, struct x86_cpuid_entry *e, unsigned *n, unsigned max)
{
	for (unsigned i = 0; i < *n; i++) {
		if (e[i].function == 1)
			e[i].ecx |= 1u << 31; /* hypervisor present */
		if (e[i].function == 0x80000007)
			e[i].edx |= 1u << 8; /* invariant TSC */
	}
	int r = 0;
	/* "Microsoft Hv": max leaf 0x4000000A. No KVM signature anywhere: KVM would win detection. */
	r |= hv_cpuid_add(e, n, max, 0x40000000, 0x4000000A, 0x7263694D, 0x666F736F, 0x76482074);
	r |= hv_cpuid_add(e, n, max, 0x40000001, 0x31237648, 0, 0, 0); /* "Hv#1" */
	r |= hv_cpuid_add(e, n, max, 0x40000002, 20348, 10u << 16, 0, 0); /* build, version 10.0 */
	r |= hv_cpuid_add(e, n, max, 0x40000003, HV_FEAT_EAX, HV_FEAT_EBX, 0, HV_FEAT_EDX);
	r |= hv_cpuid_add(e, n, max, 0x40000004, HV_HINT_DEPRECATE_AEOI, 0xFFFFFFFF, 0, 0);
	r |= hv_cpuid_add(e, n, max, 0x40000005, hv->nr_vps, hv->nr_vps * 2, 0, 0);
	for (uint32_t f = 0x40000006; f <= 0x4000000A; f++)
		r |= hv_cpuid_add(e, n, max, f, 0, 0, 0, 0);
	/* Linux reads the "VS#1" leaves unconditionally: answer with zeroes, not whatever KVM returns. */
	r |= hv_cpuid_add(e, n, max, 0x40000080, 0, 0, 0, 0);
	r |= hv_cpuid_add(e, n, max, 0x40000081, 0, 0, 0, 0);
	r |= hv_cpuid_add(e, n, max, 0x40000082, 0, 0, 0, 0);
	return r ? -ENOSPC : 0;
}

/* The hypercall page: ENDBR64 (so IBT kernels keep IBT on), OUT imm8 (leaves RDX intact), RET. */
static void hv_write_hypercall_page(struct hv_partition *hv, uint64_t gpa)
{
	static const uint8_t stub[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0xe6, HV_HYPERCALL_PORT, 0xc3 };
	uint8_t *p = guest_mem_ptr(hv->mem, gpa, 4096);
	if (!p) {
		log_guest("hypercall page at GPA 0x%llx is outside RAM", (unsigned long long)gpa);
		return;
	}
	memcpy(p, stub, sizeof(stub));
	memset(p + sizeof(stub), 0xcc, 4096 - sizeof(stub)); /* int3 fill, like a real hypervisor */
}

static void hv_report_crash(struct hv_partition *hv, uint64_t ctl)
{
	char msg[4096];
	const char *m = NULL;
	if (ctl & CRASH_CTL_NOTIFY_MSG) {
		/* P3 = message GPA, P4 = length (Linux convention). */
		uint64_t len = hv->crash_p[4] < sizeof(msg) - 1 ? hv->crash_p[4] : sizeof(msg) - 1;
		if (guest_mem_read(hv->mem, hv->crash_p[3], msg, len) == 0) {
			msg[len] = 0;
			m = msg;
		}
	}
	hv->crashed = true;
	if (hv->ops.crash)
		hv->ops.crash(hv->ops.opaque, hv->crash_p, m);
}

int hv_msr_read(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t *value)
{
	switch (index) {
	case MSR_GUEST_OS_ID:
		*value = hv->guest_os_id;
		return 0;
	case MSR_HYPERCALL:
		*value = hv->hypercall;
		return 0;
	case MSR_VP_INDEX:
		*value = vp->index;
		return 0;
	case MSR_TIME_REF_COUNT:
		*value = (hv_now_ns() - hv->start_ns) / 100;
		return 0;
	case MSR_TSC_FREQUENCY:
		*value = hv->tsc_hz;
		return 0;
	case MSR_APIC_FREQUENCY:
		*value = hv->apic_hz;
		return 0;
	case MSR_VP_ASSIST_PAGE:
		*value = vp->vp_assist;
		return 0;
	case MSR_SCONTROL:
		*value = vp->scontrol;
		return 0;
	case MSR_SVERSION:
		*value = 1;
		return 0;
	case MSR_SIEFP:
		*value = vp->siefp;
		return 0;
	case MSR_SIMP:
		*value = vp->simp;
		return 0;
	case MSR_EOM:
		*value = 0;
		return 0;
	case MSR_CRASH_CTL:
		*value = CRASH_CTL_NOTIFY | CRASH_CTL_NOTIFY_MSG;
		return 0;
	case MSR_TSC_INVARIANT_CONTROL:
		*value = 1;
		return 0;
	default:
		if (index >= MSR_SINT0 && index <= MSR_SINT15) {
			*value = vp->sint[index - MSR_SINT0];
			return 0;
		}
		if (index >= MSR_CRASH_P0 && index <= MSR_CRASH_P4) {
			*value = hv->crash_p[index - MSR_CRASH_P0];
			return 0;
		}
		return -ENOENT;
	}
}

int hv_msr_write(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t value)
{
	switch (index) {
	case MSR_GUEST_OS_ID:
		pthread_mutex_lock(&hv->lock);
		hv->guest_os_id = value;
		if (!value)
			hv->hypercall &= ~1ull; /* clearing the guest OS id disables the hypercall page */
		pthread_mutex_unlock(&hv->lock);
		return 0;
	case MSR_HYPERCALL:
		pthread_mutex_lock(&hv->lock);
		/* Bit 1 (locked) and the reserved bits 2..11 are kept as written only where defined. */
		hv->hypercall = value & ~0xffcull;
		if (value & 1)
			hv_write_hypercall_page(hv, value & ~0xfffull);
		pthread_mutex_unlock(&hv->lock);
		return 0;
	case MSR_VP_ASSIST_PAGE:
		vp->vp_assist = value;
		return 0;
	case MSR_SCONTROL:
		vp->scontrol = value & 1;
		return 0;
	case MSR_SIEFP:
		vp->siefp = value & ~0xffeull;
		return 0;
	case MSR_SIMP:
		vp->simp = value & ~0xffeull;
		return 0;
	case MSR_EOM:
		return 0;
	case MSR_TSC_INVARIANT_CONTROL:
		return 0;
	case MSR_CRASH_CTL:
		if (value & CRASH_CTL_NOTIFY) {
			pthread_mutex_lock(&hv->lock);
			hv_report_crash(hv, value);
			pthread_mutex_unlock(&hv->lock);
		}
		return 0;
	default:
		if (index >= MSR_SINT0 && index <= MSR_SINT15) {
			if ((value & 0xff) < 16 && !(value & SINT_MASKED))
				return -EINVAL; /* vectors 0-15 are reserved: #GP as on Hyper-V */
			vp->sint[index - MSR_SINT0] = value & 0x700ffull;
			return 0;
		}
		if (index >= MSR_CRASH_P0 && index <= MSR_CRASH_P4) {
			pthread_mutex_lock(&hv->lock);
			hv->crash_p[index - MSR_CRASH_P0] = value;
			pthread_mutex_unlock(&hv->lock);
			return 0;
		}
		return -ENOENT;
	}
}
