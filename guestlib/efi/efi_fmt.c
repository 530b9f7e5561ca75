#include "efi/efi_fmt.h"

#include <stdbool.h>
#include <stdint.h>

struct out {
	char *buf;
	size_t n, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->n)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, bool neg, unsigned base, bool upper, unsigned width, bool zero,
		    bool left)
{
	char tmp[24];
	unsigned k = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[k++] = digits[v % base];
		v /= base;
	} while (v);
	unsigned len = k + (neg ? 1 : 0);
	if (neg && zero)
		put(o, '-');
	for (; !left && len < width; len++)
		put(o, zero ? '0' : ' ');
	if (neg && !zero)
		put(o, '-');
	while (k)
		put(o, tmp[--k]);
	for (; left && len < width; len++)
		put(o, ' ');
}

int efi_vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
	struct out o = { buf, n, 0 };
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			put(&o, *p);
			continue;
		}
		const char *start = p++;
		bool zero = false, left = false;
		for (; *p == '0' || *p == '-'; p++) {
			if (*p == '0')
				zero = true;
			else
				left = true;
		}
		unsigned width = 0;
		for (; *p >= '0' && *p <= '9'; p++)
			width = width * 10 + (unsigned)(*p - '0');
		int lng = 0; /* 0 int, 1 long, 2 long long; h/hh read an int anyway */
		for (;; p++) {
			if (*p == 'l')
				lng++;
			else if (*p == 'z' || *p == 'j')
				lng = 2;
			else if (*p != 'h')
				break;
		}
		switch (*p) {
		case '%':
			put(&o, '%');
			break;
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			unsigned len = 0;
			if (lng) {
				const CHAR16 *s = va_arg(ap, const CHAR16 *);
				if (!s)
					s = u"(null)";
				for (const CHAR16 *q = s; *q; q++)
					len++;
				for (; !left && len < width; len++)
					put(&o, ' ');
				for (; *s; s++)
					put(&o, *s < 0x80 ? (char)*s : '?');
			} else {
				const char *s = va_arg(ap, const char *);
				if (!s)
					s = "(null)";
				for (const char *q = s; *q; q++)
					len++;
				for (; !left && len < width; len++)
					put(&o, ' ');
				for (; *s; s++)
					put(&o, *s);
			}
			for (; left && len < width; len++)
				put(&o, ' ');
			break;
		}
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(&o, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, v < 0, 10, false, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			put_num(&o, v, false, *p == 'u' ? 10 : 16, *p == 'X', width, zero, left);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), false, 16, false, 0, false, false);
			break;
		default: /* unknown: copy the directive as it is */
			for (const char *q = start; q <= p && *q; q++)
				put(&o, *q);
			if (!*p)
				p--;
			break;
		}
	}
	if (n)
		buf[o.len < n ? o.len : n - 1] = 0;
	return (int)o.len;
}

int efi_snprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = efi_vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

const char *efi_status_str(EFI_STATUS s, char buf[32])
{
	static const char *const errs[] = {
		[1] = "EFI_LOAD_ERROR", [2] = "EFI_INVALID_PARAMETER", [3] = "EFI_UNSUPPORTED",
		[4] = "EFI_BAD_BUFFER_SIZE", [5] = "EFI_BUFFER_TOO_SMALL", [6] = "EFI_NOT_READY",
		[7] = "EFI_DEVICE_ERROR", [8] = "EFI_WRITE_PROTECTED", [9] = "EFI_OUT_OF_RESOURCES",
		[10] = "EFI_VOLUME_CORRUPTED", [11] = "EFI_VOLUME_FULL", [12] = "EFI_NO_MEDIA",
		[13] = "EFI_MEDIA_CHANGED", [14] = "EFI_NOT_FOUND", [15] = "EFI_ACCESS_DENIED",
		[16] = "EFI_NO_RESPONSE", [17] = "EFI_NO_MAPPING", [18] = "EFI_TIMEOUT", [19] = "EFI_NOT_STARTED",
		[20] = "EFI_ALREADY_STARTED", [21] = "EFI_ABORTED", [22] = "EFI_ICMP_ERROR",
		[23] = "EFI_TFTP_ERROR", [24] = "EFI_PROTOCOL_ERROR", [25] = "EFI_INCOMPATIBLE_VERSION",
		[26] = "EFI_SECURITY_VIOLATION", [27] = "EFI_CRC_ERROR", [28] = "EFI_END_OF_MEDIA",
		[31] = "EFI_END_OF_FILE", [32] = "EFI_INVALID_LANGUAGE", [33] = "EFI_COMPROMISED_DATA",
	};
	const uint64_t err_bit = 1ull << 63;
	if (s == 0)
		return "EFI_SUCCESS";
	if ((s & err_bit) && (s & ~err_bit) < sizeof(errs) / sizeof(errs[0]) && errs[s & ~err_bit])
		return errs[s & ~err_bit];
	efi_snprintf(buf, 32, "EFI status 0x%llx", (unsigned long long)s);
	return buf;
}

char *efi_guid_str(const EFI_GUID *g, char buf[37])
{
	efi_snprintf(buf, 37, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", g->Data1, g->Data2, g->Data3,
		     g->Data4[0], g->Data4[1], g->Data4[2], g->Data4[3], g->Data4[4], g->Data4[5], g->Data4[6],
		     g->Data4[7]);
	return buf;
}
