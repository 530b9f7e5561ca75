/* Control socket of a running VM: a Unix stream socket; each connection sends command lines
 * ("nic-link 0 down") and gets one reply line per command ("ok ..." or "error: ..."). Subsystems
 * register their commands; a thread serves the socket. Minimal and self-contained on purpose (the
 * storage and network engineers each add commands; merge by registering more). */
#ifndef GEN2VM_UI_CONTROL_H
#define GEN2VM_UI_CONTROL_H

#include <stddef.h>

struct control;

/* A command handler: argv[0] is the command word. Writes a reply (without "ok"/"error:" prefix) and
 * returns 0 for success or a negative errno for failure. Runs on the control thread. */
typedef int (*control_fn)(void *ctx, int argc, char **argv, char *reply, size_t cap);

/* Listens on path (an existing socket file is replaced) and starts the serving thread.
 * Returns 0 or -errno. */
int control_open(const char *path, struct control **out);

/* Adds a command; usage is shown by "help". Returns 0, -EEXIST or -ENOSPC. Thread-safe. */
int control_register(struct control *c, const char *cmd, const char *usage, control_fn fn, void *ctx);

/* Runs one command line as a connection would (tests, scripted use). Writes the reply line. */
void control_execute(struct control *c, const char *line, char *reply, size_t cap);

/* Stops the thread, closes and unlinks the socket. NULL is fine. */
void control_close(struct control *c);

#endif
