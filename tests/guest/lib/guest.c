#include "guest.h"

#include <stdarg.h>

#define LAPIC 0xFEE00000ull
#define TRAMP 0x8000ull

volatile unsigned guest_last_exception;
volatile unsigned ap_next_index = 1;
volatile unsigned ap_checked_in;
static void (*volatile ap_fn)(unsigned);

/* String instructions: kernel-mode guest code is emulated one instruction at a time on PVM hosts,
 * and a rep string instruction counts as one. */
void *memset(void *d, int c, size_t n)
{
	void *r = d;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *r = d;
	size_t q = n / 8;
	__asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(q) : : "memory");
	n &= 7;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

void *memmove(void *d, const void *s, size_t n)
{
	if ((uintptr_t)d <= (uintptr_t)s || (uintptr_t)d >= (uintptr_t)s + n)
		return memcpy(d, s, n);
	unsigned char *p = (unsigned char *)d + n;
	const unsigned char *q = (const unsigned char *)s + n;
	while (n--)
		*--p = *--q;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

void gputs(const char *s)
{
	while (*s)
		outb(DEBUGCON_PORT, (uint8_t)*s++);
}

void gput_hex(uint64_t v)
{
	char b[19] = "0x";
	int n = 2;
	for (int i = 60; i >= 0; i -= 4) {
		unsigned d = (v >> i) & 15;
		if (d || n > 2 || i == 0)
			b[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
	}
	b[n] = 0;
	gputs(b);
}

void gput_dec(uint64_t v)
{
	char b[21];
	int n = 20;
	b[n] = 0;
	do {
		b[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	gputs(b + n);
}

/* %s %u %x (64-bit arguments for %u/%x: pass uint64_t or unsigned, promoted via va_arg of uint64_t) */
void gprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			outb(DEBUGCON_PORT, (uint8_t)*fmt);
			continue;
		}
		switch (*++fmt) {
		case 's': gputs(va_arg(ap, const char *)); break;
		case 'u': gput_dec(va_arg(ap, uint64_t)); break;
		case 'x': gput_hex(va_arg(ap, uint64_t)); break;
		case '%': outb(DEBUGCON_PORT, '%'); break;
		default: return;
		}
	}
	va_end(ap);
}

int rdmsr_safe(uint32_t msr, uint64_t *v)
{
	uint32_t lo = 0, hi = 0;
	guest_last_exception = 0;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr) : "memory");
	*v = (uint64_t)hi << 32 | lo;
	return guest_last_exception == 14 ? -1 : 0;
}

int wrmsr_safe(uint32_t msr, uint64_t v)
{
	guest_last_exception = 0;
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
	return guest_last_exception == 14 ? -1 : 0;
}

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));

void guest_idt_set(unsigned vector, void *handler, unsigned dpl)
{
	uint64_t a = (uint64_t)handler;
	idt[vector] = (struct idt_entry){ (uint16_t)a, 0x10, 0, (uint8_t)(0x8e | dpl << 5), (uint16_t)(a >> 16),
					  (uint32_t)(a >> 32), 0 };
}

#define EXC(n) extern char guest_exc##n[];
EXC(0) EXC(1) EXC(2) EXC(3) EXC(4) EXC(5) EXC(6) EXC(7) EXC(8) EXC(9) EXC(10) EXC(11) EXC(12) EXC(13)
EXC(14) EXC(15) EXC(16) EXC(17) EXC(18) EXC(19)

void guest_idt_init(void)
{
	char *h[20] = { guest_exc0,  guest_exc1,  guest_exc2,  guest_exc3,  guest_exc4,  guest_exc5,  guest_exc6,
			guest_exc7,  guest_exc8,  guest_exc9,  guest_exc10, guest_exc11, guest_exc12, guest_exc13,
			guest_exc14, guest_exc15, guest_exc16, guest_exc17, guest_exc18, guest_exc19 };
	for (int i = 0; i < 20; i++) {
		uint64_t a = (uint64_t)h[i];
		idt[i] = (struct idt_entry){ (uint16_t)a, 0x10, 0, 0x8e, (uint16_t)(a >> 16), (uint32_t)(a >> 32), 0 };
	}
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" ::"m"(d));
}

void guest_ap_entry(unsigned index);
void guest_ap_entry(unsigned index)
{
	__atomic_add_fetch(&ap_checked_in, 1, __ATOMIC_SEQ_CST);
	if (ap_fn)
		ap_fn(index);
}

extern char ap_tramp_start[], ap_tramp_end[];

int guest_start_aps(unsigned ncpus, void (*ap_main)(unsigned index))
{
	ap_fn = ap_main;
	memcpy((void *)TRAMP, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
	mmio_write32(LAPIC + 0xF0, 0x1FF); /* software-enable the LAPIC */
	mmio_write32(LAPIC + 0x310, 0);
	mmio_write32(LAPIC + 0x300, 0x000C4500); /* INIT, all excluding self */
	for (int i = 0; i < 2; i++) {
		mmio_write32(LAPIC + 0x310, 0);
		mmio_write32(LAPIC + 0x300, 0x000C4600 | (TRAMP >> 12)); /* SIPI */
	}
	for (unsigned long spins = 0; spins < 2000000000ul; spins++) {
		if (__atomic_load_n(&ap_checked_in, __ATOMIC_SEQ_CST) >= ncpus - 1)
			return 0;
		cpu_relax();
	}
	return -1;
}

void guest_fatal_exception(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cs);
void guest_fatal_exception(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cs)
{
	gprintf("guest: exception %u (error %x) at RIP %x, CS %x\n", vector, error, rip, cs);
	guest_exit(0x100 + (uint32_t)vector);
}

void guest_poweroff(void)
{
	outb(ACPI_SLEEP_CONTROL, 5 << 2 | 0x20);
	for (;;)
		__asm__ volatile("hlt");
}

void guest_reset(void)
{
	outb(ACPI_RESET, 1);
	for (;;)
		__asm__ volatile("hlt");
}

void guest_exit(uint32_t code)
{
	outl(DEBUGEXIT_PORT, code);
	for (;;)
		__asm__ volatile("cli; hlt");
}
