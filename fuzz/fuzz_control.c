/* libFuzzer target for the control socket (src/ui/control.c), which any local process that can reach
 * the socket talks to: the server's line handling (partial lines, several lines in one write, lines
 * too long, bytes that are not text, EOF in the middle of a line) and the command-line splitter.
 *
 * Input: byte 0 says how to cut the rest into writes (chunk length 1 + byte0 % 64; bit 7: close
 * without reading the replies). The rest goes to a live control server over a real connection; the
 * replies are read until the server closes. Every reply must be one line starting with "ok" or
 * "error: ", and the server must answer a status request afterwards. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ui/control.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct control *ctl;
static char sock_path[64];

/* Echoes its words back, so that the splitter's output is checked for being one line. */
static int echo_cmd(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	size_t used = 0;
	reply[0] = 0;
	for (int i = 1; i < argc && used < len; i++)
		used += (size_t)snprintf(reply + used, len - used, "%s[%s]", i > 1 ? " " : "", argv[i]);
	return argc > 3 ? -EINVAL : 0;
}

static int status_cmd(void *opaque, int argc, char **argv, char *reply, size_t len)
{
	snprintf(reply, len, "running");
	return 0;
}

static void cleanup(void)
{
	control_close(ctl);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	snprintf(sock_path, sizeof(sock_path), "/tmp/g2vm-fuzz-ctl-%d.sock", (int)getpid());
	char err[256];
	if (control_open(&ctl, sock_path, err, sizeof(err)) || control_register(ctl, "echo", "echo", echo_cmd, NULL) ||
	    control_register(ctl, "status", "status", status_cmd, NULL) || control_start(ctl))
		abort();
	atexit(cleanup);
	return 0;
}

static int ctl_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		abort();
	return fd;
}

/* Reads until the server closes (bounded: it must, within its idle timeout); checks each line. */
static void read_replies(int fd)
{
	char buf[65536];
	size_t got = 0;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, (CONTROL_IDLE_MS + 2000)) <= 0)
			abort(); /* the server neither answered nor hung up */
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			got = 0; /* long streams of replies: only the lines' shape matters */
	}
	buf[got] = 0;
	for (char *l = buf; *l;) {
		char *nl = strchr(l, '\n');
		if (strncmp(l, "ok", 2) && strncmp(l, "error: ", 7) && got < sizeof(buf) - 1 && nl)
			abort();
		if (!nl)
			break;
		l = nl + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = 1 + data[0] % 64;
	bool rude = data[0] & 0x80;
	/* The splitter on its own, on a NUL-terminated copy. */
	char *line = malloc(size);
	memcpy(line, data + 1, size - 1);
	line[size - 1] = 0;
	char *words[CONTROL_MAX_ARGS];
	control_split(line, words, CONTROL_MAX_ARGS);
	free(line);

	int fd = ctl_connect();
	for (size_t off = 1; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (send(fd, data + off, n, MSG_NOSIGNAL) < 0)
			break; /* the server hung up (a line too long): right */
	}
	shutdown(fd, SHUT_WR);
	if (!rude)
		read_replies(fd);
	close(fd);
	/* Whatever that client did, the next one is served. */
	fd = ctl_connect();
	if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7)
		abort();
	shutdown(fd, SHUT_WR);
	char r[64] = "";
	struct pollfd p = { fd, POLLIN, 0 };
	if (poll(&p, 1, 5000) <= 0 || read(fd, r, sizeof(r) - 1) <= 0 || strncmp(r, "ok: running\n", 12))
		abort();
	close(fd);
	return 0;
}
