#include "devices/uart.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "gen2vm/proto/savestate.h"

#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IIR_NONE 0x01
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_FIFO 0xc0
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_MSR_CTS_DSR_DCD 0xb0

void uart_init(struct uart *u, void (*out)(void *, const uint8_t *, unsigned), void *out_opaque,
	       void (*set_irq)(void *, bool), void *irq_opaque)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->out = out;
	u->out_opaque = out_opaque;
	u->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	u->msr = UART_MSR_CTS_DSR_DCD;
	u->dll = 12; /* 9600 baud until the guest programs it */
	u->set_irq = set_irq;
	u->irq_opaque = irq_opaque;
}

/* Recomputes the interrupt line; called with the lock held. Returns the level to signal. */
static uint8_t uart_iir(const struct uart *u)
{
	uint8_t fifo = (u->fcr & 1) ? UART_IIR_FIFO : 0;
	if ((u->ier & UART_IER_RDI) && u->rx_count)
		return UART_IIR_RDI | fifo;
	if ((u->ier & UART_IER_THRI) && u->thr_irq)
		return UART_IIR_THRI | fifo;
	return UART_IIR_NONE | fifo;
}

static void uart_update_irq(struct uart *u, bool *changed, bool *level)
{
	bool l = !(uart_iir(u) & UART_IIR_NONE);
	*changed = l != u->irq_level;
	u->irq_level = l;
	*level = l;
}

static void uart_write_out(struct uart *u, uint8_t c)
{
	if (u->out)
		u->out(u->out_opaque, &c, 1);
	u->tx_bytes++;
}

void uart_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct uart *u = opaque;
	bool changed, level;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&u->lock);
	bool dlab = u->lcr & UART_LCR_DLAB;
	if (is_write) {
		uint8_t v = *data;
		switch (off) {
		case 0:
			if (dlab) {
				u->dll = v;
			} else if (u->mcr & UART_MCR_LOOP) {
				if (u->rx_count < UART_FIFO)
					u->rx[(u->rx_head + u->rx_count++) % UART_FIFO] = v;
				u->thr_irq = true;
			} else {
				uart_write_out(u, v);
				u->thr_irq = true; /* transmitted instantly */
			}
			break;
		case 1:
			if (dlab) {
				u->dlm = v;
			} else {
				/* Enabling THRI with an empty THR raises the interrupt at once (16550 behaviour). */
				if (!(u->ier & UART_IER_THRI) && (v & UART_IER_THRI))
					u->thr_irq = true;
				u->ier = v & 0x0f;
			}
			break;
		case 2:
			u->fcr = v;
			if (v & 0x02)
				u->rx_count = 0;
			break;
		case 3:
			u->lcr = v;
			break;
		case 4:
			u->mcr = v & 0x1f;
			break;
		case 7:
			u->scr = v;
			break;
		default:
			break;
		}
	} else {
		uint8_t v = 0xff;
		switch (off) {
		case 0:
			if (dlab) {
				v = u->dll;
			} else if (u->rx_count) {
				v = u->rx[u->rx_head];
				u->rx_head = (u->rx_head + 1) % UART_FIFO;
				u->rx_count--;
			} else {
				v = 0;
			}
			break;
		case 1:
			v = dlab ? u->dlm : u->ier;
			break;
		case 2:
			v = uart_iir(u);
			if ((v & 0x0f) == UART_IIR_THRI)
				u->thr_irq = false; /* reading IIR acknowledges THR empty */
			break;
		case 3:
			v = u->lcr;
			break;
		case 4:
			v = u->mcr;
			break;
		case 5:
			v = u->lsr | (u->rx_count ? UART_LSR_DR : 0);
			break;
		case 6:
			v = (u->mcr & UART_MCR_LOOP) ? (uint8_t)((u->mcr & 0x0c) << 4 | (u->mcr & 0x03) << 4)
						     : u->msr;
			break;
		case 7:
			v = u->scr;
			break;
		}
		*data = v;
	}
	uart_update_irq(u, &changed, &level);
	pthread_mutex_unlock(&u->lock);
	if (changed && u->set_irq)
		u->set_irq(u->irq_opaque, level);
}

unsigned uart_input(struct uart *u, const uint8_t *data, unsigned len)
{
	bool changed, level;
	unsigned n = 0;
	pthread_mutex_lock(&u->lock);
	while (n < len && u->rx_count < UART_FIFO)
		u->rx[(u->rx_head + u->rx_count++) % UART_FIFO] = data[n++];
	uart_update_irq(u, &changed, &level);
	pthread_mutex_unlock(&u->lock);
	if (changed && u->set_irq)
		u->set_irq(u->irq_opaque, level);
	return n;
}

int uart_attach(struct uart *u, struct bus *pio, uint16_t base)
{
	return bus_register(pio, base, 8, uart_io, u, "uart");
}

void uart_save(struct uart *u, struct savestate_uart *out)
{
	_Static_assert(sizeof(out->rx) == UART_FIFO, "UART FIFO");
	pthread_mutex_lock(&u->lock);
	*out = (struct savestate_uart){ .ier = u->ier, .iir_pending = u->iir_pending, .lcr = u->lcr, .mcr = u->mcr,
					.lsr = u->lsr, .msr = u->msr, .scr = u->scr, .dll = u->dll, .dlm = u->dlm,
					.fcr = u->fcr, .thr_irq = u->thr_irq, .irq_level = u->irq_level,
					.rx_head = (uint8_t)u->rx_head, .rx_count = (uint8_t)u->rx_count };
	memcpy(out->rx, u->rx, sizeof(out->rx));
	pthread_mutex_unlock(&u->lock);
}

int uart_restore(struct uart *u, const struct savestate_uart *in)
{
	if (in->rx_head >= UART_FIFO || in->rx_count > UART_FIFO || in->thr_irq > 1 || in->irq_level > 1)
		return -EINVAL;
	pthread_mutex_lock(&u->lock);
	u->ier = in->ier;
	u->iir_pending = in->iir_pending;
	u->lcr = in->lcr;
	u->mcr = in->mcr;
	u->lsr = in->lsr;
	u->msr = in->msr;
	u->scr = in->scr;
	u->dll = in->dll;
	u->dlm = in->dlm;
	u->fcr = in->fcr;
	u->thr_irq = in->thr_irq;
	u->rx_head = in->rx_head;
	u->rx_count = in->rx_count;
	memcpy(u->rx, in->rx, sizeof(u->rx));
	u->irq_level = false;
	bool changed, level;
	uart_update_irq(u, &changed, &level);
	pthread_mutex_unlock(&u->lock);
	if (changed && u->set_irq)
		u->set_irq(u->irq_opaque, level);
	return 0;
}
