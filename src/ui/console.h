/* Where a character device's bytes go: "stdio", "file:PATH", "socket:PATH" (a listening Unix socket;
 * the first client to connect gets the output and its input goes to the guest). */
#ifndef GEN2VM_UI_CONSOLE_H
#define GEN2VM_UI_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
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

struct console {
	struct console_spec spec;
	int out_fd;    /* where guest output goes; -1 until a socket client connects */
	int in_fd;
	int listen_fd;
	bool own_out;
	console_input_fn input;
	void *opaque;
	pthread_t thread;
	bool thread_started;
	int stop_pipe[2];
	struct file_socket_id sock_id; /* socket: the file to remove at close */
	bool truncate_pending;         /* file: truncate at console_commit (first open in this process) */
	bool created, committed;       /* file: made by console_open; the VM started */
	dev_t file_dev;
	ino_t file_ino;
};

/* Opens the console. For a socket, out_fd stays -1 until a client connects (output is dropped until
 * then) and out_fd is swapped in by the console thread; a file at the socket's path is replaced only
 * when it is a stale socket (file_socket_listen). A file is a regular file or a character device,
 * opened without blocking and not yet truncated (console_commit). Returns 0 or -errno (a message
 * naming the path in err). */
int console_open(struct console *c, const struct console_spec *spec, console_input_fn input, void *opaque,
		 char *err, size_t errlen);
/* The VM starts: a console file opened for the first time in this process is truncated now. */
void console_commit(struct console *c);
/* Closes the console and removes its socket file; a console file it created is removed again when
 * the VM never started (console_commit) and nothing was written. */
void console_close(struct console *c);

/* Current output fd (for devices that write); -1 means drop. */
int console_out_fd(const struct console *c);

#endif
