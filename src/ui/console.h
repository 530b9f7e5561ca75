/* Where a character device's bytes go: "stdio", "file:PATH", "socket:PATH" (a listening Unix socket
 * where clients attach), and optionally an attach socket besides a file or stdio (--com1-attach).
 *
 * An attach socket serves several clients at once, as a serial console server does: each gets the
 * output from the moment it attached, and what any of them sends goes to the guest. Output is kept in
 * a ring of CONSOLE_RING bytes; a client that falls further behind (it stopped reading, or reads
 * slower than the guest writes) loses the oldest part, with a rate-limited log line: the device that
 * writes (a vCPU) never waits for a client. */
#ifndef GEN2VM_UI_CONSOLE_H
#define GEN2VM_UI_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/file.h"

enum console_kind { CONSOLE_NONE, CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_SOCKET };

struct console_spec {
	enum console_kind kind;
	char path[256];
};

/* Parses "stdio", "file:PATH", "socket:PATH" or "none". Returns 0 or -EINVAL (message in err). */
int console_spec_parse(const char *s, struct console_spec *spec, char *err, size_t errlen);

/* Called with bytes read from the console's input; returns how many were taken. */
typedef unsigned (*console_input_fn)(void *opaque, const unsigned char *data, unsigned len);

#define CONSOLE_RING (64u << 10)  /* output buffered for attached clients (a power of two) */
#define CONSOLE_CLIENTS 16        /* clients attached at once; more are told so and closed */
#define CONSOLE_CLIENT_INPUT 256  /* bytes read from one client before the guest took them */

struct console_client {
	int fd;
	uint64_t pos;     /* the next output byte it gets (an offset in the stream of all output) */
	uint64_t lost;    /* output dropped for it and not logged yet */
	unsigned char in[CONSOLE_CLIENT_INPUT];
	unsigned in_off, in_len; /* input read from it that the guest has not taken yet */
};

/* An attach socket and its clients: the ring is written by the device (console_write) and read by
 * the console's thread, under lock. */
struct console_hub {
	int listen_fd;
	char path[256];
	struct file_socket_id sock_id;
	int wake_fd;               /* eventfd: new output for clients */
	pthread_mutex_t lock;
	uint64_t head;             /* bytes of output ever written */
	bool wake_pending;         /* wake_fd written since the thread last looked */
	unsigned nr_clients;       /* read by the writer without the lock: 0 means nobody to wake */
	struct console_client clients[CONSOLE_CLIENTS];
	unsigned char ring[CONSOLE_RING];
};

struct console {
	struct console_spec spec;
	struct console_hub *hub; /* an attach socket (socket:PATH, or the attach path), or NULL */
	int out_fd;    /* where guest output goes; -1 until a socket client connects */
	int in_fd;
	bool own_out;
	console_input_fn input;
	void *opaque;
	pthread_t thread;
	bool thread_started;
	int stop_pipe[2];
	bool truncate_pending;         /* file: truncate at console_commit (first open in this process) */
	bool created, committed;       /* file: made by console_open; the VM started */
	dev_t file_dev;
	ino_t file_ino;
};

/* Opens the console: spec's file or stdio, and an attach socket at attach (may be NULL; socket:PATH
 * is an attach socket without anything else). A file at a socket's path is replaced only when it is
 * a stale socket (file_socket_listen). A file is a regular file or a character device, opened
 * without blocking and not yet truncated (console_commit). Returns 0 or -errno (a message naming
 * the path in err). */
int console_open(struct console *c, const struct console_spec *spec, const char *attach, console_input_fn input,
		 void *opaque, char *err, size_t errlen);
/* The VM starts: a console file opened for the first time in this process is truncated now. */
void console_commit(struct console *c);
/* Closes the console and removes its socket file; a console file it created is removed again when
 * the VM never started (console_commit) and nothing was written. */
void console_close(struct console *c);

/* Output from the device: to the file or stdio, and to every attached client (never waiting for
 * one). Thread-safe; for the device's vCPU thread. */
void console_write(struct console *c, const unsigned char *data, unsigned len);

#endif
