#include "mgmt/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

#define CLIENT_RESP_MAX (16u << 20)

int client_unix_connect(const char *sock)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(sock, '/');
	const char *base = slash ? slash + 1 : sock;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(base) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, base, strlen(base));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int cwd = -1, r = 0;
	if (slash) {
		size_t dl = (size_t)(slash - sock);
		if (dl >= sizeof(dir)) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(dir, sock, dl);
		dir[dl] = 0;
		cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cwd < 0 || chdir(dl ? dir : "/"))
			r = -errno;
	}
	if (!r && connect(fd, (struct sockaddr *)&a, sizeof(a)))
		r = -errno;
	if (cwd >= 0) {
		if (fchdir(cwd) && !r)
			r = -errno;
		close(cwd);
	}
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

int client_request(const char *sock, const char *method, const char *path, const char *body, unsigned timeout_ms,
		   int *status, char **resp)
{
	*resp = NULL;
	int fd = client_unix_connect(sock);
	if (fd < 0)
		return fd == -ENOTDIR ? -ENOENT : fd;
	size_t bl = body ? strlen(body) : 0;
	char head[1024];
	int hl = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.1\r\nHost: gen2vmd\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			  "Connection: close\r\n\r\n", method, path, bl);
	int r = 0;
	if (hl < 0 || (size_t)hl >= sizeof(head))
		r = -E2BIG;
	if (!r && (send(fd, head, (size_t)hl, MSG_NOSIGNAL) != hl || (bl && send(fd, body, bl, MSG_NOSIGNAL) != (ssize_t)bl)))
		r = -errno;
	char *buf = NULL;
	size_t got = 0, cap = 0;
	uint64_t t0 = clock_mono_ms();
	while (!r) {
		long el = (long)(clock_mono_ms() - t0);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (el >= (long)timeout_ms || poll(&p, 1, (int)(timeout_ms - el)) == 0) {
			r = -ETIMEDOUT;
			break;
		}
		if (got + 65536 + 1 > cap) {
			if (cap >= CLIENT_RESP_MAX) {
				r = -EFBIG;
				break;
			}
			cap = cap ? cap * 2 : 65536 * 2;
			char *n = realloc(buf, cap);
			if (!n) {
				r = -ENOMEM;
				break;
			}
			buf = n;
		}
		ssize_t k = recv(fd, buf + got, 65536, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			r = -errno;
		else if (k == 0)
			break; /* the service closes each connection after its answer */
		else
			got += (size_t)k;
	}
	close(fd);
	if (r) {
		free(buf);
		return r;
	}
	if (!buf) {
		return -EPROTO;
	}
	buf[got] = 0;
	char *end = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.1 ", 9) || !end || sscanf(buf + 9, "%3d", status) != 1) {
		free(buf);
		return -EPROTO;
	}
	memmove(buf, end + 4, got - (size_t)(end + 4 - buf) + 1);
	*resp = buf;
	return 0;
}
