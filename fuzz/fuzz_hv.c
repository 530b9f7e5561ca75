/* libFuzzer target for the guest-facing Hyper-V interface and the COM1 UART: the synthetic MSRs
 * (src/hv/hv.c: hypercall page, reference TSC page, SynIC pages and SINTs, EOM, crash MSRs with the
 * guest's crash message read from its memory), message delivery and event flags against pages the
 * guest rewrites at will, the 16550's registers (src/devices/uart.c) and, where /dev/kvm opens, the
 * I/O APIC's register window (src/devices/ioapic.c; its interrupts go to a real, vCPU-less KVM VM).
 *
 * Input: a sequence of operations, each a u8 opcode then its operands:
 *   0 MSR write: u8 vp, u16 index (0x40000000 + index % 0x200), u64 value
 *   1 MSR read:  u8 vp, u16 index
 *   2 post a message: u8 vp, u8 sint, u32 type, u8 len, len bytes
 *   3 signal an event: u8 vp, u8 sint, u16 flag
 *   4 poll the queues
 *   5 the guest writes its memory: u32 gpa (within 64 MiB), u8 len, len bytes
 *   6 UART access: u8 port (0-7), u8 value, u8 write?
 *   7 UART input: u8 len, len bytes
 *   8 I/O APIC MMIO: u8 offset (0x00 or 0x10 mostly), u32 value, u8 write?
 *   9 I/O APIC pin: u8 pin, u8 level;  10 EOI: u8 vector
 *  11 CMOS RTC access (src/devices/rtc.c): u8 port (0 index, 1 data), u8 value, u8 write?, u8 width
 * Values that look like page numbers are folded into guest RAM half of the time, so that the pages
 * get enabled. Must never crash, leak, or touch memory outside guest RAM. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/ioapic.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "hv/hv.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NVPS 2
#define RAM (64ull << 20)

static struct guest_mem mem;
static struct kvm_vm *kvm; /* NULL without /dev/kvm: the I/O APIC operations are skipped */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	if (guest_mem_init(&mem, RAM))
		abort();
	char err[256];
	if (kvm_vm_create(&kvm, IOAPIC_PINS, err, sizeof(err)))
		kvm = NULL;
	return 0;
}

static void crash_cb(void *opaque, const uint64_t p[5], const char *msg)
{
	if (msg)
		(void)strlen(msg); /* the message must be a string */
}

static void interrupt_cb(void *opaque, uint32_t vp, uint8_t vector)
{
	if (vp >= NVPS)
		abort();
}

static uint64_t tsc_cb(void *opaque, uint32_t vp)
{
	return 123456789ull * (vp + 1);
}

static void irq_cb(void *opaque, bool level)
{
}

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint64_t rd(struct rd *r, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && r->n; i++, r->p++, r->n--)
		v |= (uint64_t)*r->p << (8 * i);
	return v;
}

static int64_t rtc_secs;

static int64_t rtc_get(void *o)
{
	return rtc_secs;
}

static void rtc_set(void *o, int64_t s)
{
	rtc_secs = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_partition hv;
	struct hv_vp vps[NVPS];
	struct hv_ops ops = { .crash = crash_cb, .interrupt = interrupt_cb, .guest_tsc = tsc_cb };
	hv_partition_init(&hv, &mem, vps, NVPS, 2000000000ull, 1000000000ull, &ops);
	struct uart u;
	uart_init(&u, NULL, NULL, irq_cb, NULL);
	struct ioapic io;
	ioapic_init(&io, kvm);
	struct rtc rtc;
	rtc_secs = 1796601851; /* 2026-12-07 */
	rtc_init(&rtc, &(struct rtc_clock){ rtc_get, rtc_set, NULL });
	struct rd in = { data, size };
	while (in.n) {
		unsigned op = (unsigned)rd(&in, 1) % 12;
		switch (op) {
		case 0: {
			unsigned vp = (unsigned)rd(&in, 1) % NVPS;
			uint32_t index = HV_MSR_FIRST + (uint32_t)(rd(&in, 2) % HV_MSR_COUNT);
			uint64_t v = rd(&in, 8);
			if (v & 0x8000)
				v = (v & 0xfff) | ((v >> 12) % (RAM >> 12)) << 12; /* a page inside guest RAM */
			hv_msr_write(&hv, &vps[vp], index, v);
			break;
		}
		case 1: {
			unsigned vp = (unsigned)rd(&in, 1) % NVPS;
			uint64_t v;
			hv_msr_read(&hv, &vps[vp], HV_MSR_FIRST + (uint32_t)(rd(&in, 2) % HV_MSR_COUNT), &v);
			break;
		}
		case 2: {
			uint32_t vp = (uint32_t)rd(&in, 1), sint = (uint32_t)rd(&in, 1), type = (uint32_t)rd(&in, 4);
			unsigned len = (unsigned)rd(&in, 1);
			uint8_t payload[256] = { 0 };
			for (unsigned i = 0; i < len; i++)
				payload[i] = (uint8_t)rd(&in, 1);
			hv_synic_post(&hv, vp % 4, sint % 20, type, payload, len);
			break;
		}
		case 3: {
			uint32_t vp = (uint32_t)rd(&in, 1), sint = (uint32_t)rd(&in, 1);
			hv_synic_signal(&hv, vp % 4, sint % 20, (unsigned)rd(&in, 2));
			break;
		}
		case 4:
			hv_synic_poll(&hv);
			break;
		case 8: {
			unsigned off = (unsigned)rd(&in, 1);
			uint32_t v = (uint32_t)rd(&in, 4);
			bool wr = rd(&in, 1) & 1;
			if (kvm)
				ioapic_mmio(&io, off & 0x80 ? off : off & 0x10, (uint8_t *)&v, 4, wr);
			break;
		}
		case 9: {
			unsigned pin = (unsigned)rd(&in, 1), level = (unsigned)rd(&in, 1);
			if (kvm)
				ioapic_set_irq(&io, pin % (IOAPIC_PINS + 2), level & 1);
			break;
		}
		case 10: {
			uint8_t vector = (uint8_t)rd(&in, 1);
			if (kvm)
				ioapic_eoi(&io, vector);
			break;
		}
		case 5: {
			uint64_t gpa = rd(&in, 4) % RAM;
			unsigned len = (unsigned)rd(&in, 1);
			uint8_t b[256];
			for (unsigned i = 0; i < len; i++)
				b[i] = (uint8_t)rd(&in, 1);
			if (gpa + len <= RAM)
				guest_mem_write(&mem, gpa, b, len);
			break;
		}
		case 6: {
			uint8_t port = (uint8_t)(rd(&in, 1) % 8), v = (uint8_t)rd(&in, 1);
			bool wr = rd(&in, 1) & 1;
			uart_io(&u, port, &v, 1, wr);
			break;
		}
		case 7: {
			unsigned len = (unsigned)rd(&in, 1);
			uint8_t b[256];
			unsigned i = 0;
			for (; i < len && in.n; i++)
				b[i] = (uint8_t)rd(&in, 1);
			uart_input(&u, b, i);
			break;
		}
		case 11: {
			uint8_t port = (uint8_t)(rd(&in, 1) & 1), v[4] = { (uint8_t)rd(&in, 1), 0xFF, 0xFF, 0xFF };
			bool wr = rd(&in, 1) & 1;
			unsigned width = 1u << (rd(&in, 1) % 3);
			rtc_io(&rtc, port, v, width, wr);
			break;
		}
		}
	}
	rtc_destroy(&rtc);
	hv_partition_destroy(&hv);
	pthread_mutex_destroy(&u.lock);
	pthread_mutex_destroy(&io.lock);
	return 0;
}
