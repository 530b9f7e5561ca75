/* Small text helpers shared by the command-line and image parsers. */
#ifndef GEN2VM_UTIL_HEX_H
#define GEN2VM_UTIL_HEX_H

/* The value of one hexadecimal digit, or -1. */
static inline int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
