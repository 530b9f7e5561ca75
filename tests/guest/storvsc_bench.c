/* storvsp seen from a guest: exits to userspace per request in steady state (target 0).
 *
 * Run with --disk FILE (any raw image of >= 8 MiB) --debugcon stdio. The guest opens
 * the first SCSI controller's channel with the shared VMBus client, runs the storvsc init sequence
 * (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION 6.2, QUERY_PROPERTIES, END_INITIALIZATION) and then,
 * per case, a warm-up followed by N 4 KiB random READ(10)/WRITE(10) SRBs at queue depth 1 and 32,
 * each as one GPA_DIRECT packet, as Linux's storvsc sends them. It waits the way the real client
 * does: the channel interrupt (SynIC SINT2, vector 0xF3, raised when the host writes into an empty
 * host->guest ring), EOI through the local APIC, HLT while idle. One more case polls the ring with
 * interrupts off, for comparison. The window of each case is bracketed by two reads of the test
 * device's exit counter (TESTDEV_MMIO_EXITS), so the count is exact. Prints one line per case:
 *   storvsc-bench: CASE requests=N exits=E exits_per_request=X.XXX interrupts=I us_per_request=U
 * Keep the loop small: every guest instruction is emulated on some hosts (~0.7 us each).
 */
#include "gen2vm/proto/storvsp.h"
#include "gen2vm/proto/testdev.h"
#include "hvguest.h"

#define N 2000u
#define WARMUP 64u
#define QD_MAX 32u
#define INIT_ID 0xFFFFFFFFFFFFFFFDull /* Linux's VMBUS_RQST_INIT */
#define SINT2_VECTOR 0xF3
#define LAPIC 0xFEE00000ull
#define DISK_BLOCKS (8u << 20) / 512u /* the first 8 MiB */

static struct vmbus_client cl;
static struct vmbus_client_channel ch;
static uint64_t rxbuf[1024];
static uint8_t *bufs;
static volatile uint8_t *events;
volatile uint64_t sint_irqs;

/* The channel interrupt: count it, EOI the local APIC (in-kernel: no exit), return to the HLT. */
void sint_isr(void);
__asm__(".text\n"
	".globl sint_isr\n"
	"sint_isr:\n"
	"	push %rax\n"
	"	movabs $sint_irqs, %rax\n"
	"	lock incq (%rax)\n"
	"	movabs $0xFEE000B0, %rax\n"
	"	movl $0, (%rax)\n"
	"	pop %rax\n"
	"	iretq\n");

static uint32_t exits_now(void)
{
	return mmio_read32(TESTDEV_MMIO_BASE + TESTDEV_MMIO_EXITS);
}

/* Next packet from the host: 0 with its payload at *pk, or a VMBus error. irq: sleep on the channel
 * interrupt while the ring is empty, else spin (interrupts off). */
static int recv(bool irq, uint64_t *trans_id, struct storvsp_packet **pk)
{
	uint8_t bit = (uint8_t)(1u << (ch.relid % 8));
	for (;;) {
		/* Clear the flag first: a packet written after the ring check below sets it again and
		 * interrupts (the host raises the interrupt only when the flag goes from 0 to 1). */
		if (irq)
			__atomic_and_fetch(&events[ch.relid / 8], (uint8_t)~bit, __ATOMIC_SEQ_CST);
		uint32_t len;
		int r = vmbus_client_recv(&ch, rxbuf, sizeof(rxbuf), &len);
		if (r == 0) {
			vmbus_client_recv_done(&ch);
			struct vmbus_packet_descriptor d;
			memcpy(&d, rxbuf, sizeof(d));
			uint32_t off = d.offset8 * 8u;
			if (off < sizeof(d) || len < off + 12)
				return -1;
			*trans_id = d.trans_id;
			*pk = (struct storvsp_packet *)((uint8_t *)rxbuf + off);
			return 0;
		}
		if (r != -VMBUS_EAGAIN)
			return r;
		if (!irq) {
			cpu_relax();
			continue;
		}
		/* STI's one-instruction shadow covers HLT: an interrupt that arrived since the check
		 * wakes the HLT instead of being taken before it. */
		__asm__ volatile("cli");
		if (events[ch.relid / 8] & bit)
			__asm__ volatile("sti" ::: "memory");
		else
			__asm__ volatile("sti; hlt" ::: "memory");
	}
}

static int ctrl(struct storvsp_packet *pk)
{
	pk->flags = STORVSP_FLAG_REQUEST_COMPLETION;
	if (vmbus_client_send(&ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, INIT_ID, NULL, 0,
			      pk, sizeof(*pk)))
		return -1;
	for (;;) {
		uint64_t id;
		struct storvsp_packet *r;
		if (recv(false, &id, &r))
			return -1;
		if (id == INIT_ID) {
			memcpy(pk, r, sizeof(*pk));
			return 0;
		}
	}
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* One 4 KiB SRB from buffer slot, trans_id = slot + 1. */
static int submit(unsigned slot, bool write)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	uint32_t lba = (uint32_t)(rng >> 33) % (DISK_BLOCKS / 8) * 8;
	struct storvsp_packet pk = { .operation = STORVSP_OP_EXECUTE_SRB, .flags = STORVSP_FLAG_REQUEST_COMPLETION };
	pk.srb.length = sizeof(pk.srb);
	pk.srb.cdb_length = 10;
	pk.srb.sense_info_length = STORVSP_SENSE_SIZE;
	pk.srb.data_in = write ? STORVSP_DATA_OUT : STORVSP_DATA_IN;
	pk.srb.data_transfer_length = 4096;
	pk.srb.cdb[0] = write ? 0x2A : 0x28;
	pk.srb.cdb[2] = (uint8_t)(lba >> 24);
	pk.srb.cdb[3] = (uint8_t)(lba >> 16);
	pk.srb.cdb[4] = (uint8_t)(lba >> 8);
	pk.srb.cdb[5] = (uint8_t)lba;
	pk.srb.cdb[8] = 8;
	/* GPA_DIRECT: reserved, one range of 4096 bytes at offset 0, its page frame. */
	uint64_t ext[3] = { 1ull << 32, 4096, (uint64_t)(bufs + slot * 4096ul) >> 12 };
	return vmbus_client_send(&ch, VM_PKT_DATA_USING_GPA_DIRECT, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
				 slot + 1, ext, sizeof(ext), &pk, sizeof(pk));
}

/* n requests at queue depth qd; 0 or an error code for the exit port. */
static int run_ios(unsigned n, unsigned qd, bool write, bool irq)
{
	unsigned sent = 0, done = 0;
	for (; sent < qd && sent < n; sent++)
		if (submit(sent, write))
			return 20;
	while (done < n) {
		uint64_t id;
		struct storvsp_packet *pk;
		if (recv(irq, &id, &pk))
			return 21;
		if (id == 0)
			continue; /* ENUMERATE_BUS */
		if (id > qd || pk->status || pk->srb.srb_status != SRB_STATUS_SUCCESS) {
			gprintf("storvsc-bench: request %u failed (status %x, srb %x)\n", id, (uint64_t)pk->status,
				(uint64_t)pk->srb.srb_status);
			return 22;
		}
		done++;
		if (sent < n) {
			if (submit((unsigned)id - 1, write))
				return 23;
			sent++;
		}
	}
	return 0;
}

static int run_case(const char *name, unsigned qd, bool write, bool irq, uint64_t hz)
{
	int r = run_ios(WARMUP, qd, write, irq);
	if (r)
		return r;
	uint64_t irq0 = sint_irqs;
	uint32_t e0 = exits_now();
	uint64_t t0 = rdtsc();
	r = run_ios(N, qd, write, irq);
	uint64_t t1 = rdtsc();
	uint32_t e1 = exits_now();
	if (r)
		return r;
	uint32_t exits = e1 - e0 - 1; /* the second read's own exit */
	uint64_t per_mille = (uint64_t)exits * 1000 / N;
	uint64_t us = hz ? (t1 - t0) * 1000000 / hz / N : 0;
	gprintf("storvsc-bench: %s requests=%u exits=%u exits_per_request=%u.%u%u%u interrupts=%u us_per_request=%u\n",
		name, (uint64_t)N, (uint64_t)exits, per_mille / 1000, per_mille / 100 % 10, per_mille / 10 % 10,
		per_mille % 10, sint_irqs - irq0, us);
	return 0;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	hvguest_init();
	events = hvguest_event_flags(2);
	vmbus_client_init(&cl, &hvguest_vmbus_ops);
	if (vmbus_client_connect(&cl, 0, 0) || vmbus_client_request_offers(&cl))
		return 1;
	struct vmbus_guid cls;
	vmbus_guid_parse(STORVSP_SCSI_CLASS_GUID_TEXT, &cls);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&cl, &cls, 0);
	if (!o) {
		gputs("storvsc-bench: no SCSI controller (run with --disk FILE)\n");
		return 2;
	}
	uint8_t userdata[24] = { 0 };
	if (vmbus_client_channel_open(&cl, &ch, o->msg.child_relid, 64 << 10, 64 << 10, 0, userdata, sizeof(userdata)))
		return 3;
	bufs = hvguest_vmbus_ops.alloc_pages(NULL, QD_MAX);
	if (!bufs)
		return 4;
	struct storvsp_packet pk = { .operation = STORVSP_OP_BEGIN_INITIALIZATION };
	if (ctrl(&pk) || pk.status)
		return 5;
	pk = (struct storvsp_packet){ .operation = STORVSP_OP_QUERY_PROTOCOL_VERSION };
	pk.version.major_minor = STORVSP_VERSION_WIN10;
	if (ctrl(&pk) || pk.status)
		return 6;
	pk = (struct storvsp_packet){ .operation = STORVSP_OP_QUERY_PROPERTIES };
	if (ctrl(&pk) || pk.status)
		return 7;
	pk = (struct storvsp_packet){ .operation = STORVSP_OP_END_INITIALIZATION };
	if (ctrl(&pk) || pk.status)
		return 8;
	gputs("storvsc-bench: storvsp initialised (protocol 6.2)\n");
	uint64_t hz = 0;
	rdmsr_safe(HV_MSR_TSC_FREQUENCY, &hz);

	guest_idt_set(SINT2_VECTOR, sint_isr, 0);
	mmio_write32(LAPIC + 0xF0, 0x1FF); /* software-enable the local APIC */
	__asm__ volatile("sti");
	static const struct {
		const char *name;
		unsigned qd;
		bool write, irq;
	} cases[] = {
		{ "read-qd1", 1, false, true },   { "write-qd1", 1, true, true },
		{ "read-qd32", 32, false, true }, { "write-qd32", 32, true, true },
		{ "read-qd1-polled", 1, false, false },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!cases[i].irq)
			__asm__ volatile("cli");
		int r = run_case(cases[i].name, cases[i].qd, cases[i].write, cases[i].irq, hz);
		if (r)
			return r;
	}
	guest_poweroff();
}
