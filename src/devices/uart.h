/* A 16550A UART (COM1). Output goes to a write callback (src/ui/console.c: a file, stdio, attached
 * clients); input comes through uart_input(), called from the console thread.
 *
 * Interrupts: the UART raises its IRQ line through set_irq (edge: the IOAPIC pin is asserted and
 * deasserted by the line level), for THR empty and received data, as the IER enables.
 */
#ifndef GEN2VM_DEVICES_UART_H
#define GEN2VM_DEVICES_UART_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define UART_FIFO 16

struct uart {
	pthread_mutex_t lock;
	void (*out)(void *opaque, const uint8_t *data, unsigned len); /* the guest's output, or NULL */
	void *out_opaque;
	uint8_t ier, iir_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx[UART_FIFO];
	unsigned rx_head, rx_count;
	bool thr_irq;        /* THR-empty interrupt pending until IIR is read or THR written */
	bool irq_level;
	void (*set_irq)(void *opaque, bool level);
	void *irq_opaque;
	uint64_t tx_bytes;
};

/* out (may be NULL: dropped) receives the guest's output, byte by byte as the guest writes it. */
void uart_init(struct uart *u, void (*out)(void *, const uint8_t *, unsigned), void *out_opaque,
	       void (*set_irq)(void *, bool), void *irq_opaque);

/* Registers the 8 ports at base on the PIO bus. */
struct savestate_uart;
/* Its registers and receive FIFO for a saved VM, and back (restore checks the FIFO indices: 0 or
 * -EINVAL; the interrupt line is raised again as it was). */
void uart_save(struct uart *u, struct savestate_uart *out);
int uart_restore(struct uart *u, const struct savestate_uart *in);

int uart_attach(struct uart *u, struct bus *pio, uint16_t base);

/* Queues received bytes; returns how many fitted in the FIFO. Thread-safe. */
unsigned uart_input(struct uart *u, const uint8_t *data, unsigned len);

/* The bus handler (exposed for unit tests). */
void uart_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

#endif
