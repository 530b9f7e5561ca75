/* The smallest HTTP/1.1 the gen2vmd API needs (src/mgmt/service.c): one request per connection, a
 * request line, headers and a Content-Length body, strictly bounded. The client is hostile: every
 * byte is checked, nothing is read past the bounds, and the parser never allocates. */
#ifndef GEN2VM_MGMT_HTTP_H
#define GEN2VM_MGMT_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEADER_MAX 8192      /* request line and headers, with the blank line */
#define HTTP_BODY_MAX (1u << 20)  /* a VM document is at most 1 MiB (the run reader's bound) */
#define HTTP_TARGET_MAX 1024

struct http_request {
	char method[8];              /* "GET", "PUT"... */
	char path[HTTP_TARGET_MAX];  /* the target without its query */
	char query[256];             /* after '?', or "" */
	size_t header_len;           /* bytes of request line and headers with the blank line */
	size_t body_len;             /* Content-Length (0 without one) */
	const char *body;            /* into the buffer given to http_request_parse */
};

/* Parses the request at buf[0..len) (what has arrived so far). Returns the whole request's length
 * (headers and body) once it is complete, 0 when more bytes are needed (and may come within the
 * bounds), or an error the server answers and closes on: -EINVAL malformed (400), -E2BIG headers
 * past HTTP_HEADER_MAX or a target past HTTP_TARGET_MAX (431), -EMSGSIZE Content-Length past
 * HTTP_BODY_MAX (413), -ENOSYS a Transfer-Encoding or an HTTP version other than 1.0/1.1 (501).
 * req's pointers point into buf. */
long http_request_parse(const char *buf, size_t len, struct http_request *req);

/* The reason phrase of status ("Not Found"), "Unknown" for one this server never sends. */
const char *http_status_text(int status);

#endif
