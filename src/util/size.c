#include "util/size.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int size_parse(const char *s, uint64_t default_unit, uint64_t *out)
{
	char *end;
	/* A decimal number: strtod would also take "nan", "inf", hex floats and leading spaces. */
	if (!((*s >= '0' && *s <= '9') || (*s == '.' && s[1] >= '0' && s[1] <= '9')))
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0 || memchr(s, 'x', (size_t)(end - s)) ||
	    memchr(s, 'X', (size_t)(end - s)))
		return -EINVAL;
	uint64_t mul = default_unit;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	case 'p': case 'P': mul = 1ull << 50; end++; break;
	default: break;
	}
	if (mul != default_unit || *end) {
		if (!strcasecmp(end, "ib") || !strcasecmp(end, "b"))
			end += strlen(end);
	}
	if (*end || v * (double)mul > 9.2e18)
		return -EINVAL;
	*out = (uint64_t)(v * (double)mul + 0.5);
	return 0;
}
