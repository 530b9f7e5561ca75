/* Runtime for freestanding test guests (tests/guest/): ports, MSRs, MMIO, a console on the debug
 * port, an IDT that records exceptions, and SMP start-up. Guests implement
 *   int guest_main(unsigned ncpus, uint64_t rsdp);
 * whose return value is reported through the debug exit port (0 = success). */
#ifndef GEN2VM_GUEST_H
#define GEN2VM_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEBUGCON_PORT 0xE9
#define DEBUGEXIT_PORT 0xF4
#define ACPI_SLEEP_CONTROL 0x400
#define ACPI_RESET 0x402

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* The last exception taken (vector + 1, 0 = none); the IDT handler skips a faulting rdmsr/wrmsr. */
extern volatile unsigned guest_last_exception;

/* rdmsr/wrmsr that report #GP instead of dying: return 0, or -1 when the access faulted. */
int rdmsr_safe(uint32_t msr, uint64_t *v);
int wrmsr_safe(uint32_t msr, uint64_t v);

void gputs(const char *s);
void gput_hex(uint64_t v);
void gput_dec(uint64_t v);
void gprintf(const char *fmt, ...);

void guest_idt_init(void);
/* Installs an interrupt gate for vector with descriptor privilege dpl (3: reachable by int n from ring 3). */
void guest_idt_set(unsigned vector, void *handler, unsigned dpl);
/* Starts every AP (INIT-SIPI-SIPI); each runs ap_main(index) on its own stack (index 1..n-1).
 * Returns once all n-1 APs have checked in, or -1 after a timeout. */
int guest_start_aps(unsigned ncpus, void (*ap_main)(unsigned index));

__attribute__((noreturn)) void guest_poweroff(void);
__attribute__((noreturn)) void guest_reset(void);
__attribute__((noreturn)) void guest_exit(uint32_t code);

int guest_main(unsigned ncpus, uint64_t rsdp);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
