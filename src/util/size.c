#include "util/size.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int size_parse(const char *s, uint64_t default_unit, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0 || *s == '-')
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
