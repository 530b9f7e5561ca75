#include "mgmt/http.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static bool http_is_tchar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Where the header block ends (just past its blank line) within buf[0..len), or 0. A bare LF is
 * taken as a line end too (curl never sends one; a hand-typed request may). */
static size_t http_header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* One line [s, e) without its CR. */
static const char *http_line_end(const char *s, const char *end)
{
	const char *e = memchr(s, '\n', (size_t)(end - s));
	return e ? e : end;
}

long http_request_parse(const char *buf, size_t len, struct http_request *req)
{
	memset(req, 0, sizeof(*req));
	size_t scan = len < HTTP_HEADER_MAX ? len : HTTP_HEADER_MAX;
	size_t hl = http_header_end(buf, scan);
	if (!hl)
		return len >= HTTP_HEADER_MAX ? -E2BIG : 0;
	const char *p = buf, *end = buf + hl;
	/* The request line: METHOD SP TARGET SP HTTP/1.x */
	const char *le = http_line_end(p, end);
	const char *lend = le > p && le[-1] == '\r' ? le - 1 : le;
	size_t m = 0;
	while (p < lend && http_is_tchar(*p) && m < sizeof(req->method) - 1)
		req->method[m++] = *p++;
	if (!m || p >= lend || *p != ' ')
		return -EINVAL;
	p++;
	const char *t = p;
	while (p < lend && *p != ' ') {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -EINVAL;
		p++;
	}
	size_t tl = (size_t)(p - t);
	if (!tl || *t != '/')
		return -EINVAL;
	const char *q = memchr(t, '?', tl);
	size_t pl = q ? (size_t)(q - t) : tl, ql = q ? tl - pl - 1 : 0;
	if (pl >= sizeof(req->path) || ql >= sizeof(req->query))
		return -E2BIG;
	memcpy(req->path, t, pl);
	if (q)
		memcpy(req->query, q + 1, ql);
	if (p >= lend || *p != ' ')
		return -EINVAL;
	p++;
	if ((size_t)(lend - p) != 8 || memcmp(p, "HTTP/1.", 7))
		return -EINVAL;
	if (p[7] != '0' && p[7] != '1')
		return -ENOSYS;
	/* The headers: only Content-Length and Transfer-Encoding matter; the rest are checked for form. */
	bool have_cl = false;
	size_t cl = 0;
	for (p = le + 1; p < end;) {
		le = http_line_end(p, end);
		lend = le > p && le[-1] == '\r' ? le - 1 : le;
		if (lend == p)
			break; /* the blank line */
		const char *n = p;
		while (p < lend && http_is_tchar(*p))
			p++;
		if (p == n || p >= lend || *p != ':')
			return -EINVAL;
		size_t nl = (size_t)(p - n);
		p++;
		while (p < lend && (*p == ' ' || *p == '\t'))
			p++;
		const char *v = p;
		for (const char *c = v; c < lend; c++)
			if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
				return -EINVAL;
		const char *ve = lend;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (nl == 14 && !strncasecmp(n, "Content-Length", 14)) {
			size_t x = 0;
			if (ve == v)
				return -EINVAL;
			for (const char *c = v; c < ve; c++) {
				if (*c < '0' || *c > '9')
					return -EINVAL;
				if (x > HTTP_BODY_MAX)
					return -EMSGSIZE; /* before it could overflow */
				x = x * 10 + (size_t)(*c - '0');
			}
			if (x > HTTP_BODY_MAX)
				return -EMSGSIZE;
			if (have_cl && x != cl)
				return -EINVAL; /* two lengths: request smuggling's raw material */
			have_cl = true;
			cl = x;
		} else if (nl == 17 && !strncasecmp(n, "Transfer-Encoding", 17)) {
			return -ENOSYS;
		}
		p = le + 1;
	}
	req->header_len = hl;
	req->body_len = cl;
	if (len - hl < cl)
		return 0;
	req->body = buf + hl;
	return (long)(hl + cl);
}
