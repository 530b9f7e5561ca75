#include "efiapp.h"

EFI_SYSTEM_TABLE *app_st;
EFI_BOOT_SERVICES *app_bs;
EFI_HANDLE app_image;

void app_init(EFI_HANDLE image, EFI_SYSTEM_TABLE *st)
{
	app_image = image;
	app_st = st;
	app_bs = st ? st->BootServices : NULL;
}

void app_debug(const char *s)
{
	for (; *s; s++)
		__asm__ volatile("outb %0, %1" : : "a"((uint8_t)*s), "Nd"((uint16_t)0xe9));
}

/* ConOut's OutputString is the second member of EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL (UEFI 12.4); the
 * struct is the console module's to define, so it is called through its slot here. */
typedef EFI_STATUS(EFIAPI *output_string_fn)(void *This, CHAR16 *String);

static void conout(const char *s)
{
	void *co = app_st ? app_st->ConOut : NULL;
	if (!co)
		return;
	output_string_fn out = ((output_string_fn *)co)[1];
	if (!out)
		return;
	CHAR16 buf[128];
	size_t n = 0;
	for (; *s; s++) {
		if (*s == '\n')
			buf[n++] = '\r';
		buf[n++] = (CHAR16)(uint8_t)*s;
		if (n >= 120) {
			buf[n] = 0;
			out(co, buf);
			n = 0;
		}
	}
	buf[n] = 0;
	if (n)
		out(co, buf);
}

void app_print(const char *s)
{
	app_debug(s);
	conout(s);
}

void app_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	efi_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	app_debug(buf);
}

void app_exit_vm(uint32_t code)
{
	__asm__ volatile("outl %0, %1" : : "a"(code), "Nd"((uint16_t)0xf4));
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* The compiler may emit calls to these for structure copies and initialisations. */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memcpy(void *d, const void *s, size_t n)
{
	efi_memcpy(d, s, n);
	return d;
}
void *memset(void *d, int c, size_t n)
{
	efi_memset(d, c, n);
	return d;
}
void *memmove(void *d, const void *s, size_t n)
{
	efi_memmove(d, s, n);
	return d;
}
int memcmp(const void *a, const void *b, size_t n)
{
	return efi_memcmp(a, b, n);
}
