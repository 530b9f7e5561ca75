/* Raw firmware console: COM1 (a polled 16550) and the debug console port, as the hand-off block
 * says they exist, and the screen (video.c) for what fw_puts writes. The SimpleTextOutput/Input protocols (conio.c) are built on these. */
#include "fw.h"

#include "conio.h"
#include "efi/efi_fmt.h"

#define COM1 0x3f8
#define DEBUGCON 0xe9

static bool has_com1, has_debugcon;
/* Bytes COM1's transmit FIFO takes before its LSR must be read again: one LSR exit per 16 bytes
 * instead of one per byte (each port access is an exit to the VMM). */
static unsigned com1_room;

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

/* One exit for a whole run of bytes: KVM hands string port I/O to the VMM in batches. */
static inline void outsb(uint16_t port, const char *s, size_t n)
{
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(port) : "memory");
}

static void com1_write(const char *s, size_t n)
{
	while (n) {
		if (!com1_room) {
			/* The VMM's UART drains at once; the bound keeps a wedged one from hanging us. */
			for (int i = 0; i < 1000 && !(inb(COM1 + 5) & 0x20); i++)
				;
			com1_room = 16; /* THRE with FIFOs on: the whole 16-byte FIFO is empty */
		}
		size_t k = n < com1_room ? n : com1_room;
		outsb(COM1, s, k);
		com1_room -= (unsigned)k;
		s += k;
		n -= k;
	}
}

unsigned fw_console_present(void)
{
	return (has_com1 ? FW_CON_COM1 : 0) | (has_debugcon ? FW_CON_DEBUGCON : 0);
}

void fw_console_write(const char *s, size_t n, unsigned to)
{
	if ((to & FW_CON_DEBUGCON) && has_debugcon && n)
		outsb(DEBUGCON, s, n);
	if ((to & FW_CON_COM1) && has_com1)
		com1_write(s, n);
}

bool fw_console_getc(uint8_t *c)
{
	if (!has_com1 || !(inb(COM1 + 5) & 0x01))
		return false;
	*c = inb(COM1);
	return true;
}

void fw_puts(const char *s)
{
	unsigned all = FW_CON_COM1 | FW_CON_DEBUGCON;
	while (*s) {
		size_t n = 0;
		while (s[n] && s[n] != '\n')
			n++;
		fw_console_write(s, n, all);
		fw_screen_write(s, n);
		s += n;
		if (*s == '\n') {
			fw_console_write("\r\n", 2, all);
			fw_screen_write("\r\n", 2);
			s++;
		}
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
