/* storvsp seen from a guest: exits to userspace per request in steady state (target 0).
 *
 * Run with --disk FILE (any raw image of >= 8 MiB) --debugcon stdio. The guest opens
 * the first SCSI controller's channel with the shared VMBus client, runs the storvsc init sequence
 * (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION 6.2, QUERY_PROPERTIES, END_INITIALIZATION) and then,
 * per case, a warm-up followed by N 4 KiB random READ(10)/WRITE(10) SRBs at queue depth 1 and 32,
 * each as one GPA_DIRECT packet, as Linux's storvsc sends them. It waits the way the real client
 * does: the channel interrupt (SynIC SINT2, vector 0xF3, raised when the host writes into an empty
 * host->guest ring), EOI through the local APIC, HLT while idle. One more case polls the ring with
 * interrupts off, for comparison (the ring's interrupt mask stays clear: the host still raises the
 * interrupt, which stays pending). The window of each case is bracketed by two reads of the test
 * device's exit counter (TESTDEV_MMIO_EXITS), so the count is exact. Prints one line per case:
 *   storvsc-bench: CASE requests=N exits=E exits_per_request=X.XXX interrupts=I us_per_request=U
 * Keep the loop small: every guest instruction is emulated on some hosts (~0.7 us each).
 */
#include "gen2vm/proto/scsi.h"
#include "gen2vm/proto/testdev.h"
#include "storvsc.h"

#define N 2000u
#define WARMUP 64u
#define QD_MAX 32u
#define DISK_BLOCKS ((8u << 20) / 512u) /* the first 8 MiB */

static struct gstorvsc st;
static uint8_t bufs[QD_MAX * 4096] __attribute__((aligned(4096)));
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t exits_now(void)
{
	return mmio_read32(TESTDEV_MMIO_BASE + TESTDEV_MMIO_EXITS);
}

/* One 4 KiB READ(10)/WRITE(10) at a random LBA from buffer slot, request id slot + 1. */
static int submit(unsigned slot, bool write)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	uint32_t lba = (uint32_t)(rng >> 33) % (DISK_BLOCKS / 8) * 8;
	uint8_t cdb[10] = { write ? SCSI_OP_WRITE10 : SCSI_OP_READ10, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	return gstorvsc_submit(&st, slot + 1, cdb, sizeof(cdb), write ? STORVSP_DATA_OUT : STORVSP_DATA_IN,
			       bufs + slot * 4096ul, 4096);
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
		if (gstorvsc_recv(&st, irq, &id))
			return 21;
		if (id == 0)
			continue; /* ENUMERATE_BUS */
		if (id > qd || st.reply.status || st.reply.srb.srb_status != SRB_STATUS_SUCCESS) {
			gprintf("storvsc-bench: request %u failed (status %x, srb %x)\n", id, (uint64_t)st.reply.status,
				(uint64_t)st.reply.srb.srb_status);
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
	uint64_t irq0 = hvguest_channel_irqs();
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
	/* exit_counter: the counter at the window's start, the exits of the whole run so far (live). */
	gprintf("storvsc-bench: %s requests=%u exits=%u exits_per_request=%u.%u%u%u interrupts=%u us_per_request=%u "
		"exit_counter=%u\n",
		name, (uint64_t)N, (uint64_t)exits, per_mille / 1000, per_mille / 100 % 10, per_mille / 10 % 10,
		per_mille % 10, hvguest_channel_irqs() - irq0, us, (uint64_t)e0);
	return 0;
}

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	int r = gstorvsc_open(&st);
	if (r)
		return r;
	gputs("storvsc-bench: storvsp initialised (protocol 6.2)\n");
	uint64_t hz = 0;
	rdmsr_safe(HV_MSR_TSC_FREQUENCY, &hz);
	gstorvsc_irq_enable();
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
		if ((r = run_case(cases[i].name, cases[i].qd, cases[i].write, cases[i].irq, hz)))
			return r;
	}
	guest_poweroff();
}
