#include "hv/hv.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/savestate.h"
#include "util/log.h"

#define CRASH_CTL_NOTIFY (1ull << 63)
#define CRASH_CTL_NOTIFY_MSG (1ull << 62)
#define SINT_MASKED (1ull << 16)
#define SINT_VECTOR(v) ((uint8_t)((v) & 0xff))

/* Partition privileges: time reference count, SynIC, hypercall, VP index, reference TSC page, frequency
 * MSRs, invariant TSC. No synthetic timers: the in-kernel LAPIC timer needs no exits. */
#define HV_FEAT_EAX (HV_FEAT_TIME_REF_COUNT | HV_FEAT_SYNIC | HV_FEAT_HYPERCALL | HV_FEAT_VP_INDEX | \
		     HV_FEAT_REFERENCE_TSC | HV_FEAT_FREQUENCY_MSRS | HV_FEAT_ACCESS_TSC_INVARIANT)
#define HV_FEAT_EBX (HV_FEAT_EBX_POST_MESSAGES | HV_FEAT_EBX_SIGNAL_EVENTS)
#define HV_FEAT_EDX (HV_FEAT_EDX_FREQUENCY_MSRS_AVAILABLE | HV_FEAT_EDX_GUEST_CRASH_MSR_AVAILABLE)

void hv_partition_init(struct hv_partition *hv, const struct guest_mem *mem, struct hv_vp *vps, unsigned nr_vps,
		       uint64_t tsc_hz, uint64_t apic_hz, const struct hv_ops *ops)
{
	memset(hv, 0, sizeof(*hv));
	pthread_mutex_init(&hv->lock, NULL);
	hv->mem = mem;
	hv->vps = vps;
	hv->nr_vps = nr_vps;
	hv->tsc_hz = tsc_hz;
	hv->apic_hz = apic_hz;
	if (tsc_hz)
		hv->tsc_scale = (uint64_t)(((unsigned __int128)10000000u << 64) / tsc_hz);
	if (ops)
		hv->ops = *ops;
	for (unsigned i = 0; i < nr_vps; i++) {
		struct hv_vp *vp = &vps[i];
		memset(vp, 0, sizeof(*vp));
		vp->index = i;
		pthread_mutex_init(&vp->lock, NULL);
		for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			vp->sint[s] = SINT_MASKED;
	}
}

void hv_partition_destroy(struct hv_partition *hv)
{
	for (unsigned i = 0; i < hv->nr_vps; i++) {
		struct hv_vp *vp = &hv->vps[i];
		for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++) {
			while (vp->head[s]) {
				struct hv_queued_msg *m = vp->head[s];
				vp->head[s] = m->next;
				free(m);
			}
		}
		pthread_mutex_destroy(&vp->lock);
	}
	pthread_mutex_destroy(&hv->lock);
}

static int hv_cpuid_add(struct x86_cpuid_entry *e, unsigned *n, unsigned max, uint32_t fn, uint32_t a, uint32_t b,
			uint32_t c, uint32_t d)
{
	struct x86_cpuid_entry v = { .function = fn, .eax = a, .ebx = b, .ecx = c, .edx = d };
	for (unsigned i = 0; i < *n; i++)
		if (e[i].function == fn) {
			e[i] = v;
			return 0;
		}
	if (*n >= max)
		return -ENOSPC;
	e[(*n)++] = v;
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
	/* "Microsoft Hv", max leaf 0x4000000A. No KVM signature anywhere: KVM would win detection and
	 * hv_vmbus requires the guest to have chosen Hyper-V. */
	r |= hv_cpuid_add(e, n, max, HV_CPUID_VENDOR_AND_MAX, 0x4000000A, HV_CPUID_SIGNATURE_EBX,
			  HV_CPUID_SIGNATURE_ECX, HV_CPUID_SIGNATURE_EDX);
	r |= hv_cpuid_add(e, n, max, HV_CPUID_INTERFACE, HV_CPUID_INTERFACE_HV1, 0, 0, 0);
	r |= hv_cpuid_add(e, n, max, HV_CPUID_VERSION, 20348, 10u << 16, 0, 0); /* build, version 10.0 */
	r |= hv_cpuid_add(e, n, max, HV_CPUID_FEATURES, HV_FEAT_EAX, HV_FEAT_EBX, 0, HV_FEAT_EDX);
	r |= hv_cpuid_add(e, n, max, HV_CPUID_ENLIGHTENMENT_INFO, HV_HINT_DEPRECATING_AEOI, 0xFFFFFFFF, 0, 0);
	r |= hv_cpuid_add(e, n, max, HV_CPUID_IMPLEMENT_LIMITS, hv->nr_vps, hv->nr_vps * 2, 0, 0);
	for (uint32_t f = 0x40000006; f <= 0x4000000A; f++)
		r |= hv_cpuid_add(e, n, max, f, 0, 0, 0, 0);
	/* Linux reads the "VS#1" leaves unconditionally: answer zeroes, not whatever KVM would. */
	for (uint32_t f = 0x40000080; f <= 0x40000082; f++)
		r |= hv_cpuid_add(e, n, max, f, 0, 0, 0, 0);
	return r ? -ENOSPC : 0;
}

void hv_hypercall(struct hv_partition *hv, uint32_t vp, struct x86_regs *r)
{
	uint64_t control = r->gpr[X86_RCX];
	uint16_t code = (uint16_t)control;
	bool fast = control & (1ull << 16);
	uint16_t status = HV_STATUS_INVALID_HYPERCALL_CODE;
	if (code == HVCALL_POST_MESSAGE && hv->ops.post_message) {
		/* The message is at most a page: only the slow form exists. */
		status = fast ? HV_STATUS_INVALID_HYPERCALL_INPUT : hv->ops.post_message(hv->ops.opaque, vp, r->gpr[X86_RDX]);
	} else if (code == HVCALL_SIGNAL_EVENT && hv->ops.signal_event) {
		uint64_t in = r->gpr[X86_RDX];
		if (!fast) { /* the input is an 8-byte-aligned GPA holding the connection id */
			uint64_t word = 0;
			if ((in & 7) || guest_mem_read(hv->mem, in, &word, sizeof(word)))
				in = ~0ull;
			else
				in = word;
		}
		status = in == ~0ull ? HV_STATUS_INVALID_ALIGNMENT : hv->ops.signal_event(hv->ops.opaque, (uint32_t)in);
	} else if (control >> 32 || (control & 0xfc00000ull)) {
		status = HV_STATUS_INVALID_HYPERCALL_INPUT; /* reserved bits set */
	}
	if (status == HV_STATUS_INVALID_HYPERCALL_CODE)
		log_guest("hypercall 0x%04x is not implemented", code);
	r->gpr[X86_RAX] = status;
}

/* ENDBR64 (IBT kernels keep IBT on); the fast HvSignalEvent (control 0x1005D) becomes OUT 0x92 with
 * EAX = connection id, which an ioeventfd per open channel turns into a doorbell with no exit to
 * userspace; everything else is OUT 0x91 (imm8 form: RDX and R8 stay intact for the VMM to read). */
static void hv_write_hypercall_page(struct hv_partition *hv, uint64_t gpa)
{
	static const uint8_t stub[] = {
		0xf3, 0x0f, 0x1e, 0xfa,             /* endbr64 */
		0x81, 0xf9, 0x5d, 0x00, 0x01, 0x00, /* cmp ecx, 0x1005d */
		0x75, 0x07,                         /* jne slow */
		0x89, 0xd0,                         /* mov eax, edx */
		0xe7, HV_SIGNAL_PORT,               /* out 0x92, eax */
		0x31, 0xc0,                         /* xor eax, eax */
		0xc3,                               /* ret */
		0xe6, HV_HYPERCALL_PORT,            /* slow: out 0x91, al */
		0xc3,                               /* ret */
	};
	uint8_t *p = guest_mem_ptr(hv->mem, gpa, 4096);
	if (!p) {
		log_guest("hypercall page at GPA 0x%llx is outside RAM", (unsigned long long)gpa);
		return;
	}
	memcpy(p, stub, sizeof(stub));
	memset(p + sizeof(stub), 0xcc, 4096 - sizeof(stub));
}

static void hv_write_reference_tsc(struct hv_partition *hv, uint64_t msr)
{
	uint8_t *raw = guest_mem_ptr(hv->mem, msr & ~0xfffull, sizeof(struct hv_reference_tsc_page));
	struct hv_reference_tsc_page *p = (struct hv_reference_tsc_page *)raw;
	/* The page is page-aligned: its sequence word is aligned for atomics (see hv_synic_deliver). */
	uint32_t *seq = (uint32_t *)(void *)raw;
	if (!p) {
		log_guest("reference TSC page at GPA 0x%llx is outside RAM", (unsigned long long)(msr & ~0xfffull));
		return;
	}
	/* The guest TSC starts near 0 when the VM is created, so reference time = TSC * scale. */
	__atomic_store_n(seq, 0, __ATOMIC_RELEASE);
	p->tsc_scale = hv->tsc_scale;
	p->tsc_offset = 0;
	__atomic_store_n(seq, hv->tsc_scale ? 1 : 0, __ATOMIC_RELEASE); /* 0: use the MSR */
}

static void hv_report_crash(struct hv_partition *hv, uint64_t ctl)
{
	char msg[4096];
	const char *m = NULL;
	if (ctl & CRASH_CTL_NOTIFY_MSG) {
		/* Linux: P3 = message GPA, P4 = length. */
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

/* ---- SynIC ---- */

static void hv_interrupt(struct hv_partition *hv, struct hv_vp *vp, uint64_t sint)
{
	vp->interrupts++;
	if (hv->ops.interrupt)
		hv->ops.interrupt(hv->ops.opaque, vp->index, SINT_VECTOR(sint));
}

static bool hv_sint_live(const struct hv_vp *vp, unsigned sint)
{
	uint64_t s = __atomic_load_n(&vp->sint[sint], __ATOMIC_ACQUIRE);
	return (__atomic_load_n(&vp->scontrol, __ATOMIC_ACQUIRE) & 1) && !(s & SINT_MASKED);
}

/* Moves the head of the queue into the SIMP slot if it is free; vp->lock held. */
static void hv_synic_deliver(struct hv_partition *hv, struct hv_vp *vp, unsigned sint)
{
	uint64_t simp = __atomic_load_n(&vp->simp, __ATOMIC_ACQUIRE);
	if (!vp->head[sint] || !(simp & 1) || !hv_sint_live(vp, sint))
		return;
	uint8_t *raw = guest_mem_ptr(hv->mem, (simp & ~0xfffull) + sint * HV_MESSAGE_SIZE, HV_MESSAGE_SIZE);
	if (!raw)
		return;
	struct hv_message *slot = (struct hv_message *)raw;
	/* The slot is 256-byte aligned in guest RAM: its type word is naturally aligned, which the packed
	 * struct cannot tell the compiler (clang would call out-of-line atomics). */
	_Static_assert(offsetof(struct hv_message_header, message_type) == 0, "type word first");
	uint32_t *type = (uint32_t *)(void *)raw;
	if (__atomic_load_n(type, __ATOMIC_ACQUIRE) != HVMSG_NONE) {
		/* Busy: ask for an EOM, then look again in case the guest freed the slot meanwhile
		 * (it clears the type before it reads msg_pending). */
		__atomic_fetch_or(&slot->header.message_flags, HV_MESSAGE_FLAG_PENDING, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(type, __ATOMIC_SEQ_CST) != HVMSG_NONE)
			return;
	}
	struct hv_queued_msg *m = vp->head[sint];
	vp->head[sint] = m->next;
	if (!m->next)
		vp->tail[sint] = NULL;
	vp->qlen[sint]--;
	memcpy(slot->payload, m->payload, m->len);
	slot->header.payload_size = m->len;
	slot->header.sender = 0;
	slot->header.message_flags = vp->head[sint] ? HV_MESSAGE_FLAG_PENDING : 0;
	__atomic_store_n(type, m->type, __ATOMIC_RELEASE);
	free(m);
	vp->delivered++;
	hv_interrupt(hv, vp, vp->sint[sint]);
}

static void hv_synic_deliver_all(struct hv_partition *hv, struct hv_vp *vp)
{
	pthread_mutex_lock(&vp->lock);
	for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++)
		hv_synic_deliver(hv, vp, s);
	pthread_mutex_unlock(&vp->lock);
}

int hv_synic_post(struct hv_partition *hv, uint32_t vpi, unsigned sint, uint32_t type, const void *payload,
		  unsigned len)
{
	if (vpi >= hv->nr_vps || sint >= HV_SYNIC_SINT_COUNT || len > HV_MESSAGE_PAYLOAD_BYTE_COUNT ||
	    type == HVMSG_NONE)
		return -EINVAL;
	struct hv_vp *vp = &hv->vps[vpi];
	struct hv_queued_msg *m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->type = type;
	m->len = (uint8_t)len;
	memcpy(m->payload, payload, len);
	pthread_mutex_lock(&vp->lock);
	if (vp->qlen[sint] >= HV_SYNIC_QUEUE_MAX) {
		pthread_mutex_unlock(&vp->lock);
		free(m);
		return -EAGAIN;
	}
	if (vp->tail[sint])
		vp->tail[sint]->next = m;
	else
		vp->head[sint] = m;
	vp->tail[sint] = m;
	vp->qlen[sint]++;
	hv_synic_deliver(hv, vp, sint);
	pthread_mutex_unlock(&vp->lock);
	return 0;
}

int hv_synic_signal(struct hv_partition *hv, uint32_t vpi, unsigned sint, unsigned flag)
{
	if (vpi >= hv->nr_vps || sint >= HV_SYNIC_SINT_COUNT || flag >= HV_EVENT_FLAGS_COUNT)
		return -EINVAL;
	struct hv_vp *vp = &hv->vps[vpi];
	uint64_t siefp = __atomic_load_n(&vp->siefp, __ATOMIC_ACQUIRE);
	if (!(siefp & 1) || !(__atomic_load_n(&vp->scontrol, __ATOMIC_ACQUIRE) & 1))
		return -EAGAIN;
	uint8_t *flags = guest_mem_ptr(hv->mem, (siefp & ~0xfffull) + sint * 256, 256);
	if (!flags)
		return -EAGAIN;
	uint8_t bit = (uint8_t)(1u << (flag & 7));
	uint8_t old = __atomic_fetch_or(&flags[flag / 8], bit, __ATOMIC_SEQ_CST);
	/* A flag still set means the guest has not scanned since the last interrupt: it will see this one. */
	if (!(old & bit) && hv_sint_live(vp, sint))
		hv_interrupt(hv, vp, vp->sint[sint]);
	return 0;
}

void hv_synic_poll(struct hv_partition *hv)
{
	for (unsigned i = 0; i < hv->nr_vps; i++)
		hv_synic_deliver_all(hv, &hv->vps[i]);
}

unsigned hv_synic_queued(struct hv_partition *hv)
{
	unsigned n = 0;
	for (unsigned i = 0; i < hv->nr_vps; i++)
		for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			n += __atomic_load_n(&hv->vps[i].qlen[s], __ATOMIC_RELAXED);
	return n;
}

/* ---- MSRs ---- */

int hv_msr_read(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t *value)
{
	switch (index) {
	case HV_MSR_GUEST_OS_ID:
		*value = hv->guest_os_id;
		return 0;
	case HV_MSR_HYPERCALL:
		*value = hv->hypercall;
		return 0;
	case HV_MSR_VP_INDEX:
		*value = vp->index;
		return 0;
	case HV_MSR_TIME_REF_COUNT: {
		uint64_t tsc = hv->ops.guest_tsc ? hv->ops.guest_tsc(hv->ops.opaque, vp->index) : 0;
		*value = (uint64_t)(((unsigned __int128)tsc * hv->tsc_scale) >> 64);
		return 0;
	}
	case HV_MSR_REFERENCE_TSC:
		*value = hv->reference_tsc;
		return 0;
	case HV_MSR_TSC_FREQUENCY:
		*value = hv->tsc_hz;
		return 0;
	case HV_MSR_APIC_FREQUENCY:
		*value = hv->apic_hz;
		return 0;
	case HV_MSR_VP_ASSIST_PAGE:
		*value = vp->vp_assist;
		return 0;
	case HV_MSR_SCONTROL:
		*value = vp->scontrol;
		return 0;
	case HV_MSR_SVERSION:
		*value = 1;
		return 0;
	case HV_MSR_SIEFP:
		*value = vp->siefp;
		return 0;
	case HV_MSR_SIMP:
		*value = vp->simp;
		return 0;
	case HV_MSR_EOM:
		*value = 0;
		return 0;
	case HV_MSR_CRASH_CTL:
		*value = CRASH_CTL_NOTIFY | CRASH_CTL_NOTIFY_MSG;
		return 0;
	case HV_MSR_TSC_INVARIANT_CONTROL:
		*value = 1;
		return 0;
	default:
		if (index >= HV_MSR_SINT0 && index < HV_MSR_SINT0 + HV_SYNIC_SINT_COUNT) {
			*value = vp->sint[index - HV_MSR_SINT0];
			return 0;
		}
		if (index >= HV_MSR_CRASH_P0 && index < HV_MSR_CRASH_P0 + 5) {
			*value = hv->crash_p[index - HV_MSR_CRASH_P0];
			return 0;
		}
		return -ENOENT;
	}
}

int hv_msr_write(struct hv_partition *hv, struct hv_vp *vp, uint32_t index, uint64_t value)
{
	switch (index) {
	case HV_MSR_GUEST_OS_ID:
		pthread_mutex_lock(&hv->lock);
		hv->guest_os_id = value;
		if (!value)
			hv->hypercall &= ~1ull; /* clearing the guest OS id disables the hypercall page */
		pthread_mutex_unlock(&hv->lock);
		return 0;
	case HV_MSR_HYPERCALL:
		pthread_mutex_lock(&hv->lock);
		hv->hypercall = value & ~0xffcull;
		if (value & 1)
			hv_write_hypercall_page(hv, value & ~0xfffull);
		pthread_mutex_unlock(&hv->lock);
		return 0;
	case HV_MSR_REFERENCE_TSC:
		pthread_mutex_lock(&hv->lock);
		hv->reference_tsc = value & ~0xffeull;
		if (value & 1)
			hv_write_reference_tsc(hv, value);
		pthread_mutex_unlock(&hv->lock);
		return 0;
	case HV_MSR_VP_INDEX:
	case HV_MSR_TIME_REF_COUNT:
	case HV_MSR_TSC_FREQUENCY:
	case HV_MSR_APIC_FREQUENCY:
	case HV_MSR_SVERSION:
		return -EINVAL; /* read-only: #GP */
	case HV_MSR_VP_ASSIST_PAGE:
		vp->vp_assist = value;
		return 0;
	case HV_MSR_SCONTROL:
		__atomic_store_n(&vp->scontrol, value & 1, __ATOMIC_RELEASE);
		break;
	case HV_MSR_SIEFP:
		__atomic_store_n(&vp->siefp, value & ~0xffeull, __ATOMIC_RELEASE);
		break;
	case HV_MSR_SIMP:
		__atomic_store_n(&vp->simp, value & ~0xffeull, __ATOMIC_RELEASE);
		break;
	case HV_MSR_EOM:
		break;
	case HV_MSR_TSC_INVARIANT_CONTROL:
		return 0;
	case HV_MSR_CRASH_CTL:
		if (value & CRASH_CTL_NOTIFY) {
			pthread_mutex_lock(&hv->lock);
			hv_report_crash(hv, value);
			pthread_mutex_unlock(&hv->lock);
		}
		return 0;
	default:
		if (index >= HV_MSR_SINT0 && index < HV_MSR_SINT0 + HV_SYNIC_SINT_COUNT) {
			if ((value & 0xff) < 16 && !(value & SINT_MASKED))
				return -EINVAL; /* vectors 0-15 are reserved: #GP as on Hyper-V */
			__atomic_store_n(&vp->sint[index - HV_MSR_SINT0], value & 0x700ffull, __ATOMIC_RELEASE);
			break;
		}
		if (index >= HV_MSR_CRASH_P0 && index < HV_MSR_CRASH_P0 + 5) {
			pthread_mutex_lock(&hv->lock);
			hv->crash_p[index - HV_MSR_CRASH_P0] = value;
			pthread_mutex_unlock(&hv->lock);
			return 0;
		}
		return -ENOENT;
	}
	/* EOM, or a SynIC register that may have enabled delivery: move queued messages on. */
	hv_synic_deliver_all(hv, vp);
	return 0;
}

/* ---- saved state ---- */

int hv_save(struct hv_partition *hv, uint8_t **out, size_t *len)
{
	size_t n = sizeof(struct savestate_hv) + hv->nr_vps * sizeof(struct savestate_hv_vp);
	for (unsigned i = 0; i < hv->nr_vps; i++)
		for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			n += hv->vps[i].qlen[s] * sizeof(struct savestate_hv_msg);
	uint8_t *buf = calloc(1, n), *p = buf;
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&hv->lock);
	struct savestate_hv h = { .guest_os_id = hv->guest_os_id, .hypercall = hv->hypercall,
				  .reference_tsc = hv->reference_tsc, .crashed = hv->crashed, .nr_vps = hv->nr_vps };
	memcpy(h.crash_p, hv->crash_p, sizeof(h.crash_p));
	pthread_mutex_unlock(&hv->lock);
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	for (unsigned i = 0; i < hv->nr_vps; i++) {
		struct hv_vp *vp = &hv->vps[i];
		pthread_mutex_lock(&vp->lock);
		struct savestate_hv_vp v = { .vp_assist = vp->vp_assist, .scontrol = vp->scontrol, .siefp = vp->siefp,
					     .simp = vp->simp };
		memcpy(v.sint, vp->sint, sizeof(v.sint));
		uint8_t *vpp = p;
		p += sizeof(v);
		for (unsigned s = 0; s < HV_SYNIC_SINT_COUNT; s++)
			for (struct hv_queued_msg *m = vp->head[s]; m; m = m->next) {
				struct savestate_hv_msg sm = { .type = m->type, .sint = (uint8_t)s, .len = m->len };
				memcpy(sm.payload, m->payload, m->len);
				memcpy(p, &sm, sizeof(sm));
				p += sizeof(sm);
				v.nr_queued++;
			}
		pthread_mutex_unlock(&vp->lock);
		memcpy(vpp, &v, sizeof(v));
	}
	*out = buf;
	*len = (size_t)(p - buf);
	return 0;
}

static int hv_restore_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "Hyper-V partition state: %s", what);
	return -EINVAL;
}

int hv_restore(struct hv_partition *hv, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct savestate_hv h;
	if (len < sizeof(h))
		return hv_restore_fail(err, errlen, "truncated");
	memcpy(&h, buf, sizeof(h));
	if (h.nr_vps != hv->nr_vps || h.crashed > 1)
		return hv_restore_fail(err, errlen, "another number of VPs");
	size_t off = sizeof(h);
	for (unsigned i = 0; i < hv->nr_vps; i++) {
		struct hv_vp *vp = &hv->vps[i];
		struct savestate_hv_vp v;
		if (len - off < sizeof(v))
			return hv_restore_fail(err, errlen, "truncated VP");
		memcpy(&v, buf + off, sizeof(v));
		off += sizeof(v);
		if (v.nr_queued > HV_SYNIC_QUEUE_MAX || v.nr_queued > (len - off) / sizeof(struct savestate_hv_msg))
			return hv_restore_fail(err, errlen, "bad queued message count");
		vp->vp_assist = v.vp_assist;
		vp->scontrol = v.scontrol;
		vp->siefp = v.siefp;
		vp->simp = v.simp;
		memcpy(vp->sint, v.sint, sizeof(vp->sint));
		for (uint32_t k = 0; k < v.nr_queued; k++) {
			struct savestate_hv_msg sm;
			memcpy(&sm, buf + off, sizeof(sm));
			off += sizeof(sm);
			if (sm.sint >= HV_SYNIC_SINT_COUNT || sm.len > HV_MESSAGE_PAYLOAD_BYTE_COUNT || sm.type == HVMSG_NONE)
				return hv_restore_fail(err, errlen, "bad queued message");
			struct hv_queued_msg *m = calloc(1, sizeof(*m));
			if (!m)
				return -ENOMEM;
			m->type = sm.type;
			m->len = sm.len;
			memcpy(m->payload, sm.payload, sm.len);
			if (vp->tail[sm.sint])
				vp->tail[sm.sint]->next = m;
			else
				vp->head[sm.sint] = m;
			vp->tail[sm.sint] = m;
			vp->qlen[sm.sint]++;
		}
	}
	if (off != len)
		return hv_restore_fail(err, errlen, "bytes after its end");
	hv->guest_os_id = h.guest_os_id;
	hv->hypercall = h.hypercall;
	hv->reference_tsc = h.reference_tsc;
	memcpy(hv->crash_p, h.crash_p, sizeof(hv->crash_p));
	hv->crashed = h.crashed;
	return 0;
}
