/* Hyper-V TLFS emulation without KVM: CPUID, MSRs, hypercall page, reference time, crash MSRs, and
 * the SynIC's message slots (msg_pending/EOM flow control) and event flags. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hv/cpuid.h"
#include "hv/hv.h"

#define SIMP 0x10000ull
#define SIEFP 0x11000ull

struct fx {
	struct guest_mem mem;
	struct hv_partition hv;
	struct hv_vp vps[2];
	unsigned irqs[2];
	uint8_t last_vector;
	uint64_t tsc;
	uint32_t posted_vp, signalled;
	uint64_t posted_gpa;
	int crashed;
	char crash_msg[64];
};

static void fx_interrupt(void *o, uint32_t vp, uint8_t vector)
{
	struct fx *f = o;
	f->irqs[vp]++;
	f->last_vector = vector;
}

static uint64_t fx_tsc(void *o, uint32_t vp)
{
	return ((struct fx *)o)->tsc;
}

static void fx_crash(void *o, const uint64_t p[5], const char *msg)
{
	struct fx *f = o;
	f->crashed++;
	strncpy(f->crash_msg, msg ? msg : "", sizeof(f->crash_msg) - 1);
}

static uint16_t fx_post(void *o, uint32_t vp, uint64_t gpa)
{
	struct fx *f = o;
	f->posted_vp = vp;
	f->posted_gpa = gpa;
	return HV_STATUS_SUCCESS;
}

static uint16_t fx_signal(void *o, uint32_t conn)
{
	struct fx *f = o;
	f->signalled = conn;
	return conn == 99 ? HV_STATUS_INVALID_CONNECTION_ID : HV_STATUS_SUCCESS;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_int_equal(guest_mem_init(&f->mem, 16 << 20), 0);
	struct hv_ops ops = { .opaque = f, .crash = fx_crash, .interrupt = fx_interrupt, .guest_tsc = fx_tsc,
			       .post_message = fx_post, .signal_event = fx_signal };
	hv_partition_init(&f->hv, &f->mem, f->vps, 2, 2500000000ull, 1000000000ull, &ops);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	hv_partition_destroy(&f->hv);
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static uint64_t rd(struct fx *f, unsigned vp, uint32_t msr)
{
	uint64_t v = 0xdead;
	assert_int_equal(hv_msr_read(&f->hv, &f->vps[vp], msr, &v), 0);
	return v;
}

static void wr(struct fx *f, unsigned vp, uint32_t msr, uint64_t v)
{
	assert_int_equal(hv_msr_write(&f->hv, &f->vps[vp], msr, v), 0);
}

static void test_cpuid(void **state)
{
	struct fx *f = *state;
	struct x86_cpuid_entry e[32] = { { .function = 1, .ecx = 0 }, { .function = 0x40000000, .eax = 0x40000001,
									  .ebx = 0x4b4d564b /* KVMK */ } };
	unsigned n = 2;
	assert_int_equal(hv_cpuid_fill(&f->hv, e, &n, 32), 0);
	assert_true(e[0].ecx & (1u << 31));
	/* The KVM signature is replaced, not kept beside. */
	assert_int_equal(e[1].ebx, 0x7263694D);
	assert_int_equal(e[1].eax, 0x4000000A);
	bool feat = false, hints = false;
	for (unsigned i = 0; i < n; i++) {
		if (e[i].function == HV_CPUID_FEATURES) {
			feat = true;
			/* hypercall + VP index are what Linux requires to pick Hyper-V */
			assert_true(e[i].eax & HV_FEAT_HYPERCALL);
			assert_true(e[i].eax & HV_FEAT_VP_INDEX);
			assert_false(e[i].ebx & HV_FEAT_EBX_CPU_MANAGEMENT);
		}
		if (e[i].function == HV_CPUID_ENLIGHTENMENT_INFO) {
			hints = true;
			assert_true(e[i].eax & HV_HINT_DEPRECATING_AEOI);
		}
	}
	assert_true(feat && hints);
	unsigned small = 2;
	assert_int_equal(hv_cpuid_fill(&f->hv, e, &small, 3), -ENOSPC);
}

/* The VM's table: KVM's signature leaves dropped, compatibility mode's baseline, per-vCPU APIC ids. */
static void test_cpuid_policy(void **state)
{
	struct fx *f = *state;
	const struct x86_cpuid_entry host[] = {
		{ .function = 1, .ebx = 0x00010800, .ecx = 0xfffa3203u, .edx = 0xffffffffu },
		{ .function = 7, .index = 0, .eax = 2, .ebx = 0xffffffffu },
		{ .function = 0xb, .index = 0 },
		{ .function = 0x40000000, .ebx = 0x4b4d564b },
		{ .function = 0x40000001, .eax = 0x01000000 },
	};
	struct x86_cpuid_entry e[HV_CPUID_MAX];
	int n = hv_cpuid_build(&f->hv, host, 5, false, e, HV_CPUID_MAX);
	assert_true(n > 3);
	for (int i = 0; i < n; i++)
		assert_int_not_equal(e[i].ebx, 0x4b4d564b); /* no KVM signature */
	assert_int_equal(e[1].ebx, 0xffffffffu);      /* leaf 7 kept without the policy */
	n = hv_cpuid_build(&f->hv, host, 5, true, e, HV_CPUID_MAX);
	assert_int_equal(e[1].ebx, 0);                /* ... and cleared with it */
	assert_int_equal(e[0].ecx & (1u << 28), 0);   /* AVX is not in the baseline */
	assert_true(e[0].ecx & (1u << 31));           /* the hypervisor bit is */
	hv_cpuid_set_vcpu(e, (unsigned)n, 3, 4);
	assert_int_equal(e[0].ebx >> 24, 3);
	assert_int_equal(e[0].ebx >> 16 & 0xff, 4);
	assert_int_equal(e[2].edx, 3);
	assert_int_equal(hv_cpuid_build(&f->hv, host, 5, false, e, 4), -ENOSPC);
}

/* The hypercall page's slow path: the control word decoded, inputs fetched, the status in RAX. */
static void test_hypercalls(void **state)
{
	struct fx *f = *state;
	struct x86_regs r = { 0 };
	r.gpr[X86_RCX] = HVCALL_POST_MESSAGE;
	r.gpr[X86_RDX] = 0x5000;
	hv_hypercall(&f->hv, 1, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_SUCCESS);
	assert_int_equal(f->posted_vp, 1);
	assert_int_equal(f->posted_gpa, 0x5000);
	r.gpr[X86_RCX] = HVCALL_POST_MESSAGE | 1u << 16; /* no fast form */
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_INVALID_HYPERCALL_INPUT);
	r.gpr[X86_RCX] = HVCALL_SIGNAL_EVENT | 1u << 16; /* fast: the connection id in RDX */
	r.gpr[X86_RDX] = 99;
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_INVALID_CONNECTION_ID);
	uint64_t conn = 17;
	assert_int_equal(guest_mem_write(&f->mem, 0x6000, &conn, 8), 0);
	r.gpr[X86_RCX] = HVCALL_SIGNAL_EVENT;
	r.gpr[X86_RDX] = 0x6000;
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_SUCCESS);
	assert_int_equal(f->signalled, 17);
	r.gpr[X86_RDX] = 0x6004; /* misaligned input */
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_INVALID_ALIGNMENT);
	r.gpr[X86_RDX] = 1ull << 60; /* outside guest RAM */
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_INVALID_ALIGNMENT);
	r.gpr[X86_RCX] = 0x0002; /* a call Hyper-V has that we do not */
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_INVALID_HYPERCALL_CODE);
	r.gpr[X86_RCX] = HVCALL_POST_MESSAGE | 1ull << 40; /* reserved bits */
	hv_hypercall(&f->hv, 0, &r);
	assert_int_equal(r.gpr[X86_RAX], HV_STATUS_SUCCESS); /* as before the move: the code decides */
}

static void test_msrs(void **state)
{
	struct fx *f = *state;
	assert_int_equal(rd(f, 1, HV_MSR_VP_INDEX), 1);
	wr(f, 0, HV_MSR_GUEST_OS_ID, 0x8100000000060100ull);
	assert_int_equal(rd(f, 1, HV_MSR_GUEST_OS_ID), 0x8100000000060100ull); /* partition-wide */
	assert_int_equal(rd(f, 0, HV_MSR_TSC_FREQUENCY), 2500000000ull);
	assert_int_equal(rd(f, 0, HV_MSR_APIC_FREQUENCY), 1000000000ull);
	assert_int_equal(rd(f, 0, HV_MSR_SINT0 + 2), 1ull << 16); /* masked at reset */
	uint64_t v;
	assert_int_equal(hv_msr_read(&f->hv, &f->vps[0], 0x400000F0, &v), -ENOENT);
	assert_int_equal(hv_msr_write(&f->hv, &f->vps[0], HV_MSR_VP_INDEX, 3), -EINVAL);
	/* A SINT with a reserved vector (< 16) unmasked is refused (#GP), as on Hyper-V. */
	assert_int_equal(hv_msr_write(&f->hv, &f->vps[0], HV_MSR_SINT0 + 2, 0x05), -EINVAL);
	wr(f, 0, HV_MSR_VP_ASSIST_PAGE, 0x5001);
	assert_int_equal(rd(f, 0, HV_MSR_VP_ASSIST_PAGE), 0x5001);
}

static void test_hypercall_page(void **state)
{
	struct fx *f = *state;
	wr(f, 0, HV_MSR_HYPERCALL, 0x20000 | 1);
	assert_int_equal(rd(f, 0, HV_MSR_HYPERCALL), 0x20001);
	uint8_t *p = guest_mem_ptr(&f->mem, 0x20000, 32);
	static const uint8_t endbr[] = { 0xf3, 0x0f, 0x1e, 0xfa };
	assert_memory_equal(p, endbr, 4);
	/* The slow path is OUT imm8 to the hypercall port followed by RET. */
	bool found = false;
	for (int i = 4; i < 30; i++)
		if (p[i] == 0xe6 && p[i + 1] == HV_HYPERCALL_PORT && p[i + 2] == 0xc3)
			found = true;
	assert_true(found);
	/* Clearing the guest OS id disables the page (kexec, crash paths). */
	wr(f, 0, HV_MSR_GUEST_OS_ID, 0);
	assert_int_equal(rd(f, 0, HV_MSR_HYPERCALL) & 1, 0);
}

static void test_reference_time(void **state)
{
	struct fx *f = *state;
	wr(f, 0, HV_MSR_REFERENCE_TSC, 0x30000 | 1);
	struct hv_reference_tsc_page *p = guest_mem_ptr(&f->mem, 0x30000, 4096);
	assert_int_not_equal(p->tsc_sequence, 0);
	/* 2.5 GHz: one second of TSC is 10^7 units of 100 ns. */
	uint64_t ref = (uint64_t)(((unsigned __int128)2500000000ull * p->tsc_scale) >> 64) + (uint64_t)p->tsc_offset;
	assert_true(ref >= 9999999 && ref <= 10000000);
	f->tsc = 5000000000ull; /* two seconds */
	uint64_t count = rd(f, 0, HV_MSR_TIME_REF_COUNT);
	assert_true(count >= 19999998 && count <= 20000000);
}

static void test_crash_msrs(void **state)
{
	struct fx *f = *state;
	memcpy(guest_mem_ptr(&f->mem, 0x40000, 16), "Kernel panic!!", 14);
	wr(f, 0, HV_MSR_CRASH_P0, 0x1234);
	wr(f, 0, HV_MSR_CRASH_P0 + 3, 0x40000);
	wr(f, 0, HV_MSR_CRASH_P0 + 4, 14);
	assert_int_equal(f->crashed, 0);
	assert_true(rd(f, 0, HV_MSR_CRASH_CTL) & (1ull << 63));
	wr(f, 0, HV_MSR_CRASH_CTL, (1ull << 63) | (1ull << 62));
	assert_int_equal(f->crashed, 1);
	assert_string_equal(f->crash_msg, "Kernel panic!!");
}

static void synic_on(struct fx *f, unsigned vp)
{
	wr(f, vp, HV_MSR_SIMP, (SIMP + vp * 0x2000) | 1);
	wr(f, vp, HV_MSR_SIEFP, (SIEFP + vp * 0x2000) | 1);
	wr(f, vp, HV_MSR_SINT0 + 2, 0xF3);
	wr(f, vp, HV_MSR_SCONTROL, 1);
}

static struct hv_message *slot(struct fx *f, unsigned vp, unsigned sint)
{
	return guest_mem_ptr(&f->mem, SIMP + vp * 0x2000 + sint * 256, 256);
}

static void test_messages_flow_control(void **state)
{
	struct fx *f = *state;
	/* Posted before the guest enabled the SynIC: held, delivered once SCONTROL is set. */
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_VMBUS, "one", 4), 0);
	assert_int_equal(f->irqs[0], 0);
	synic_on(f, 0);
	struct hv_message *m = slot(f, 0, 2);
	assert_int_equal(m->header.message_type, HVMSG_VMBUS);
	assert_string_equal((char *)m->payload, "one");
	assert_int_equal(m->header.message_flags, 0);
	assert_int_equal(f->irqs[0], 1);
	assert_int_equal(f->last_vector, 0xF3);
	/* Slot busy: the next message waits and the slot asks for an EOM. */
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_VMBUS, "two", 4), 0);
	assert_string_equal((char *)m->payload, "one");
	assert_int_equal(m->header.message_flags & HV_MESSAGE_FLAG_PENDING, HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(f->irqs[0], 1);
	assert_int_equal(hv_synic_queued(&f->hv), 1);
	/* The guest consumes (type = 0) and writes EOM: "two" arrives. */
	m->header.message_type = HVMSG_NONE;
	wr(f, 0, HV_MSR_EOM, 0);
	assert_string_equal((char *)m->payload, "two");
	assert_int_equal(f->irqs[0], 2);
	assert_int_equal(hv_synic_queued(&f->hv), 0);
	/* Guest freed the slot without EOM (no pending flag then): the poll delivers. */
	m->header.message_type = HVMSG_NONE;
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_VMBUS, "three", 6), 0);
	assert_string_equal((char *)m->payload, "three");
	/* Masked SINT: nothing delivered until unmasked. */
	m->header.message_type = HVMSG_NONE;
	wr(f, 0, HV_MSR_SINT0 + 2, 0xF3 | (1ull << 16));
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_VMBUS, "four", 5), 0);
	assert_int_equal(m->header.message_type, HVMSG_NONE);
	wr(f, 0, HV_MSR_SINT0 + 2, 0xF3);
	assert_string_equal((char *)m->payload, "four");
	/* Bad arguments. */
	assert_int_equal(hv_synic_post(&f->hv, 2, 2, HVMSG_VMBUS, "x", 1), -EINVAL);
	assert_int_equal(hv_synic_post(&f->hv, 0, 16, HVMSG_VMBUS, "x", 1), -EINVAL);
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_VMBUS, "x", 241), -EINVAL);
	assert_int_equal(hv_synic_post(&f->hv, 0, 2, HVMSG_NONE, "x", 1), -EINVAL);
}

static void test_queue_limit(void **state)
{
	struct fx *f = *state;
	for (unsigned i = 0; i < HV_SYNIC_QUEUE_MAX; i++)
		assert_int_equal(hv_synic_post(&f->hv, 1, 2, HVMSG_VMBUS, "q", 2), 0);
	assert_int_equal(hv_synic_post(&f->hv, 1, 2, HVMSG_VMBUS, "q", 2), -EAGAIN);
	/* teardown frees the queued messages (ASan would report a leak) */
}

static void test_event_flags(void **state)
{
	struct fx *f = *state;
	assert_int_equal(hv_synic_signal(&f->hv, 1, 2, 5), -EAGAIN); /* SynIC off: dropped */
	synic_on(f, 1);
	assert_int_equal(hv_synic_signal(&f->hv, 1, 2, 5), 0);
	uint8_t *flags = guest_mem_ptr(&f->mem, SIEFP + 0x2000 + 2 * 256, 256);
	assert_int_equal(flags[0], 1 << 5);
	assert_int_equal(f->irqs[1], 1);
	/* Already pending: no second interrupt. */
	assert_int_equal(hv_synic_signal(&f->hv, 1, 2, 5), 0);
	assert_int_equal(f->irqs[1], 1);
	assert_int_equal(hv_synic_signal(&f->hv, 1, 2, 2047), 0);
	assert_int_equal(flags[255], 0x80);
	assert_int_equal(f->irqs[1], 2);
	assert_int_equal(hv_synic_signal(&f->hv, 1, 2, 2048), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cpuid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cpuid_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hypercalls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hypercall_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reference_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_msrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_messages_flow_control, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_flags, setup, teardown),
	};
	return cmocka_run_group_tests_name("hv", tests, NULL, NULL);
}
