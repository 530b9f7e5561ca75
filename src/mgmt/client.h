/* A client of the gen2vmd API (src/mgmt/api.h): one HTTP/1.1 request on the service's Unix socket,
 * what the CLI's vm verbs use while the service runs. */
#ifndef GEN2VM_MGMT_CLIENT_H
#define GEN2VM_MGMT_CLIENT_H

#include <stddef.h>

/* Connects to the Unix stream socket at path from its directory (a path past the 107 bytes of a
 * socket address works; the working directory changes for the connect: single-threaded callers).
 * Returns the descriptor (close-on-exec) or -errno. */
int client_unix_connect(const char *path);

/* Sends METHOD PATH with body (NULL: none) to the socket at sock and waits up to timeout_ms for the
 * whole answer. The socket is reached from its directory, so a deep store's path may pass the 107
 * bytes of a Unix socket address (single-threaded callers: it changes the working directory for
 * the connect). Returns 0 with *status and *resp (the body, malloc'ed, NUL-terminated: the caller
 * frees it), -ECONNREFUSED or -ENOENT when no service listens there (the caller works without it),
 * or another -errno (-ETIMEDOUT, -EPROTO for an answer that is not HTTP). */
int client_request(const char *sock, const char *method, const char *path, const char *body, unsigned timeout_ms,
		   int *status, char **resp);

#endif
