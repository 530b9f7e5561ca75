/* Hyper-V TLFS wire formats: synthetic MSRs, CPUID leaves, hypercalls, SynIC pages, reference TSC page.
 *
 * Shared by the VMM, the firmware and the test guests: only <stdint.h>, <stdbool.h>, <stddef.h>.
 * All fields are little-endian; every struct is packed and its size asserted.
 * Source of the facts: shared/reference/hyperv-guest-interface.md sections 1.x and 3.1.
 */
#ifndef GEN2VM_PROTO_HV_H
#define GEN2VM_PROTO_HV_H

#include <stddef.h>
#include <stdint.h>

#define HV_PAGE_SIZE  4096u
#define HV_PAGE_SHIFT 12

/* --- CPUID leaves ------------------------------------------------------------------------------- */
#define HV_CPUID_VENDOR_AND_MAX     0x40000000u /* EAX max leaf; EBX/ECX/EDX "Microsoft Hv" */
#define HV_CPUID_INTERFACE          0x40000001u /* EAX "Hv#1" */
#define HV_CPUID_VERSION            0x40000002u
#define HV_CPUID_FEATURES           0x40000003u
#define HV_CPUID_ENLIGHTENMENT_INFO 0x40000004u
#define HV_CPUID_IMPLEMENT_LIMITS   0x40000005u
#define HV_CPUID_HARDWARE_FEATURES  0x40000006u

#define HV_CPUID_SIGNATURE_EBX 0x7263694Du /* "Micr" */
#define HV_CPUID_SIGNATURE_ECX 0x666F736Fu /* "osof" */
#define HV_CPUID_SIGNATURE_EDX 0x76482074u /* "t Hv" */
#define HV_CPUID_INTERFACE_HV1 0x31237648u /* "Hv#1" */

/* 0x40000003.EAX: partition privileges (low half) */
#define HV_FEAT_VP_RUNTIME        (1u << 0)
#define HV_FEAT_TIME_REF_COUNT    (1u << 1)
#define HV_FEAT_SYNIC             (1u << 2)
#define HV_FEAT_SYNTIMERS         (1u << 3)
#define HV_FEAT_APIC_ACCESS       (1u << 4)
#define HV_FEAT_HYPERCALL         (1u << 5)
#define HV_FEAT_VP_INDEX          (1u << 6)
#define HV_FEAT_RESET             (1u << 7)
#define HV_FEAT_STATS             (1u << 8)
#define HV_FEAT_REFERENCE_TSC     (1u << 9)
#define HV_FEAT_GUEST_IDLE        (1u << 10)
#define HV_FEAT_FREQUENCY_MSRS    (1u << 11)
#define HV_FEAT_ACCESS_TSC_INVARIANT (1u << 15)
/* 0x40000003.EBX: partition privileges (high half) */
#define HV_FEAT_EBX_POST_MESSAGES  (1u << 4)
#define HV_FEAT_EBX_SIGNAL_EVENTS  (1u << 5)
#define HV_FEAT_EBX_CPU_MANAGEMENT (1u << 12) /* makes Linux the root partition: never set */
#define HV_FEAT_EBX_ISOLATION      (1u << 22) /* never set */
/* 0x40000003.EDX: misc features */
#define HV_FEAT_EDX_FREQUENCY_MSRS_AVAILABLE (1u << 8)
#define HV_FEAT_EDX_GUEST_CRASH_MSR_AVAILABLE (1u << 10)
#define HV_FEAT_EDX_STIMER_DIRECT_MODE       (1u << 19)
/* 0x40000004.EAX: recommendations */
#define HV_HINT_DEPRECATING_AEOI (1u << 9) /* mandatory on this host, see reference 3.3 */

/* --- synthetic MSRs ------------------------------------------------------------------------------ */
#define HV_MSR_GUEST_OS_ID      0x40000000u
/* The guest OS id Hyper-V's own generation 2 UEFI firmware writes (it does not follow the documented
 * layout). Loaders with a VMBus driver of their own (iPXE) look for it and then leave the bus to the
 * firmware, using its Simple Network Protocol instead of taking the connection over. */
#define HV_GUEST_OS_ID_HYPERV_UEFI (1ull << 40)
#define HV_MSR_HYPERCALL        0x40000001u
#define HV_MSR_VP_INDEX         0x40000002u
#define HV_MSR_RESET            0x40000003u
#define HV_MSR_VP_RUNTIME       0x40000010u
#define HV_MSR_TIME_REF_COUNT   0x40000020u
#define HV_MSR_REFERENCE_TSC    0x40000021u
#define HV_MSR_TSC_FREQUENCY    0x40000022u
#define HV_MSR_APIC_FREQUENCY   0x40000023u
#define HV_MSR_VP_ASSIST_PAGE   0x40000073u
#define HV_MSR_SCONTROL         0x40000080u
#define HV_MSR_SVERSION         0x40000081u
#define HV_MSR_SIEFP            0x40000082u
#define HV_MSR_SIMP             0x40000083u
#define HV_MSR_EOM              0x40000084u
#define HV_MSR_SINT0            0x40000090u /* SINTn = HV_MSR_SINT0 + n, n < 16 */
#define HV_MSR_STIMER0_CONFIG   0x400000B0u
#define HV_MSR_STIMER0_COUNT    0x400000B1u
#define HV_MSR_CRASH_P0         0x40000100u /* P0..P4 = 0x40000100..0x40000104 */
#define HV_MSR_CRASH_CTL        0x40000105u
#define HV_MSR_TSC_INVARIANT_CONTROL 0x40000118u

#define HV_HYPERCALL_ENABLE     (1ull << 0)
#define HV_HYPERCALL_LOCKED     (1ull << 1)
#define HV_VP_ASSIST_ENABLE     (1ull << 0)
#define HV_REFERENCE_TSC_ENABLE (1ull << 0)
#define HV_SCONTROL_ENABLE      (1ull << 0)
#define HV_SIMP_ENABLE          (1ull << 0) /* SIMP and SIEFP: GPA in bits 12..63 */
#define HV_SIEFP_ENABLE         (1ull << 0)
#define HV_SINT_VECTOR_MASK     0xFFull
#define HV_SINT_MASKED          (1ull << 16)
#define HV_SINT_AUTO_EOI        (1ull << 17)
#define HV_SINT_POLLING         (1ull << 18)
#define HV_SINT_RESET_VALUE     HV_SINT_MASKED
#define HV_CRASH_CTL_NOTIFY     (1ull << 63)
#define HV_CRASH_CTL_NOTIFY_MSG (1ull << 62)

/* --- hypercalls ---------------------------------------------------------------------------------- */
#define HVCALL_POST_MESSAGE 0x005Cu
#define HVCALL_SIGNAL_EVENT 0x005Du

/* Control word in RCX. */
#define HV_HYPERCALL_CODE_MASK       0xFFFFull
#define HV_HYPERCALL_FAST            (1ull << 16)
#define HV_HYPERCALL_VARHEAD_SHIFT   17
#define HV_HYPERCALL_VARHEAD_MASK    (0x3FFull << 17)
#define HV_HYPERCALL_REP_COUNT_SHIFT 32
#define HV_HYPERCALL_REP_COUNT_MASK  (0xFFFull << 32)
#define HV_HYPERCALL_REP_START_SHIFT 48
#define HV_HYPERCALL_REP_START_MASK  (0xFFFull << 48)
/* Result in RAX: status [15:0], reps completed [43:32]. */
#define HV_HYPERCALL_RESULT_STATUS_MASK 0xFFFFull
#define HV_HYPERCALL_RESULT_REPS_SHIFT  32

/* Status codes (16 bits). */
#define HV_STATUS_SUCCESS                  0x0000u
#define HV_STATUS_INVALID_HYPERCALL_CODE   0x0002u
#define HV_STATUS_INVALID_HYPERCALL_INPUT  0x0003u
#define HV_STATUS_INVALID_ALIGNMENT        0x0004u
#define HV_STATUS_INVALID_PARAMETER        0x0005u
#define HV_STATUS_ACCESS_DENIED            0x0006u
#define HV_STATUS_INVALID_PARTITION_STATE  0x0007u
#define HV_STATUS_OPERATION_DENIED         0x0008u
#define HV_STATUS_INSUFFICIENT_MEMORY      0x000Bu
#define HV_STATUS_INVALID_VP_INDEX         0x000Eu
#define HV_STATUS_INVALID_PORT_ID          0x0011u
#define HV_STATUS_INVALID_CONNECTION_ID    0x0012u
#define HV_STATUS_INSUFFICIENT_BUFFERS     0x0013u

/* --- SynIC messages and event flags ---------------------------------------------------------------- */
#define HV_SYNIC_SINT_COUNT           16u
#define HV_MESSAGE_SIZE               256u
#define HV_MESSAGE_PAYLOAD_BYTE_COUNT 240u
#define HV_MESSAGE_PAYLOAD_QWORD_COUNT 30u
#define HV_EVENT_FLAGS_COUNT          2048u /* bits per SINT slot of the SIEF page */

#define HVMSG_NONE          0x00000000u /* an empty slot */
#define HVMSG_VMBUS         0x00000001u /* the type VMBus uses for channel messages */
#define HVMSG_TIMER_EXPIRED 0x80000010u
#define HV_MESSAGE_FLAG_PENDING 0x01u /* message_flags bit 0: more queued, write EOM */

struct hv_message_header {
	uint32_t message_type;
	uint8_t payload_size;
	uint8_t message_flags;
	uint16_t reserved;
	uint64_t sender; /* or port id */
} __attribute__((packed));
_Static_assert(sizeof(struct hv_message_header) == 16, "hv_message_header");

struct hv_message {
	struct hv_message_header header;
	uint64_t payload[HV_MESSAGE_PAYLOAD_QWORD_COUNT];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_message) == HV_MESSAGE_SIZE, "hv_message");

/* SIMP: one message slot per SINT. */
struct hv_message_page {
	struct hv_message sint_message[HV_SYNIC_SINT_COUNT];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_message_page) == HV_PAGE_SIZE, "hv_message_page");

/* SIEFP: one 2048-bit flag array per SINT; for VMBus, bit N of slot 2 = relid N pending. */
struct hv_synic_event_flags {
	uint8_t flags[HV_EVENT_FLAGS_COUNT / 8];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_synic_event_flags) == 256, "hv_synic_event_flags");

struct hv_synic_event_flags_page {
	struct hv_synic_event_flags sintevent_flags[HV_SYNIC_SINT_COUNT];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_synic_event_flags_page) == HV_PAGE_SIZE, "hv_synic_event_flags_page");

/* HvPostMessage (slow) input page. connection_id uses bits 23:0. */
struct hv_input_post_message {
	uint32_t connection_id;
	uint32_t reserved;
	uint32_t message_type;
	uint32_t payload_size;
	uint64_t payload[HV_MESSAGE_PAYLOAD_QWORD_COUNT];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_input_post_message) == 256, "hv_input_post_message");
#define HV_CONNECTION_ID_MASK 0x00FFFFFFu

/* HvSignalEvent (fast): RDX = connection_id | (u64)flag_number << 32. */
#define HV_SIGNAL_EVENT_FLAG_SHIFT 32

/* --- reference TSC page ----------------------------------------------------------------------------
 * ref_time(100 ns) = ((tsc * tsc_scale) >> 64) + tsc_offset; tsc_sequence 0 = invalid (use the MSR). */
struct hv_reference_tsc_page {
	uint32_t tsc_sequence;
	uint32_t reserved1;
	uint64_t tsc_scale;
	int64_t tsc_offset;
	uint64_t reserved2[509];
} __attribute__((packed));
_Static_assert(sizeof(struct hv_reference_tsc_page) == HV_PAGE_SIZE, "hv_reference_tsc_page");
_Static_assert(offsetof(struct hv_reference_tsc_page, tsc_offset) == 16, "tsc_offset");

#endif
