/* Raw firmware console: COM1 (a polled 16550) and the debug console port, as the hand-off block
 * says they exist. The SimpleTextOutput/Input protocols (conio.c) are built on these. */
#include "fw.h"

#include "efi/efi_fmt.h"

#define COM1 0x3f8
#define DEBUGCON 0xe9

static bool has_com1, has_debugcon;

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

void fw_console_init(void)
{
	has_com1 = fw.ho->flags & FW_FLAG_COM1;
	has_debugcon = fw.ho->flags & FW_FLAG_DEBUGCON;
	if (has_com1) {
		outb(COM1 + 1, 0x00); /* no interrupts: the firmware polls */
		outb(COM1 + 3, 0x80); /* DLAB: 115200 baud */
		outb(COM1 + 0, 0x01);
		outb(COM1 + 1, 0x00);
		outb(COM1 + 3, 0x03); /* 8N1 */
		outb(COM1 + 2, 0x07); /* FIFOs on and cleared */
		outb(COM1 + 4, 0x03); /* DTR, RTS */
	}
}

static void fw_putc(char c)
{
	if (has_debugcon)
		outb(DEBUGCON, (uint8_t)c);
	if (has_com1) {
		/* The VMM's UART drains at once; the bound keeps a wedged one from hanging us. */
		for (int i = 0; i < 1000 && !(inb(COM1 + 5) & 0x20); i++)
			;
		outb(COM1, (uint8_t)c);
	}
}

void fw_puts(const char *s)
{
	for (; *s; s++) {
		if (*s == '\n')
			fw_putc('\r');
		fw_putc(*s);
	}
}

void fw_vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	efi_vsnprintf(buf, sizeof(buf), fmt, ap);
	fw_puts(buf);
}

void fw_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fw_vprintf(fmt, ap);
	va_end(ap);
}
