/* The control socket of a running VM (`gen2vm run --control PATH`): a Unix stream socket taking one
 * command line at a time ("disk-add /img/x.vhdx lun=3"), each answered by one line: "ok" or
 * "ok: DETAILS", or "error: MESSAGE". A connection may send several lines. Devices and the machine
 * register their commands; later management APIs build on the same registry.
 *
 * Clients are untrusted: one thread serves up to CONTROL_MAX_CLIENTS connections at once without ever
 * blocking on one (non-blocking I/O, replies sent with MSG_NOSIGNAL), closes a connection
 * CONTROL_IDLE_MS after its last complete command, refuses lines longer than CONTROL_LINE_MAX, and
 * drops the oldest connection when a new one finds every slot taken. Commands run one at a time. */
#ifndef GEN2VM_UI_CONTROL_H
#define GEN2VM_UI_CONTROL_H

#include <stddef.h>

#define CONTROL_MAX_ARGS 16
#define CONTROL_REPLY_MAX 4096
#define CONTROL_LINE_MAX 4096 /* a longer line is answered with an error and the connection closed */
#define CONTROL_LINE_MAX_TEXT "4096"
#define CONTROL_MAX_CLIENTS 32 /* connections served at once; one more drops the oldest */
#define CONTROL_IDLE_MS 5000   /* a connection is closed this long after it connected or after its
				* last complete command (idle, trickling, or not reading its replies) */
#define CONTROL_CLIENT_TIMEOUT_S 60 /* control_request gives up on a VM that does not answer */

/* Runs a command; argv[0] is its name. Writes a detail (may stay empty) or an error message into
 * reply. Returns 0 for ok, -errno for an error. Called on the control thread. */
typedef int (*control_cmd_fn)(void *opaque, int argc, char **argv, char *reply, size_t replylen);

struct control;

/* Listens on path. A socket file left there by a gen2vm that died (nobody listens) is replaced; any
 * other file, or a socket another process listens on, is left alone and refused (file_socket_listen).
 * Returns 0 or -errno with a one-line message naming the path in err. */
int control_open(struct control **out, const char *path, char *err, size_t errlen);
/* Adds a command before or after control_start. name and help must outlive the control. */
int control_register(struct control *c, const char *name, const char *help, control_cmd_fn fn, void *opaque);
/* Starts the thread that serves connections. */
int control_start(struct control *c);
/* Runs one command line as a connection would (tests, scripted use); reply gets the reply line
 * without its newline. */
void control_execute(struct control *c, const char *line, char *reply, size_t len);
/* Stops serving (closing every connection), removes the socket file if it is still ours. NULL is
 * fine. */
void control_close(struct control *c);

/* Splits a command line into at most max words (double quotes group words; no escapes). Modifies
 * line. Returns the number of words or -EINVAL (unbalanced quote, too many words). */
int control_split(char *line, char **argv, int max);

/* Client side: sends argv as one line to the socket at path and copies the reply line (without its
 * newline) into reply. Returns 0 when the VM answered "ok", -EIO when it answered an error, or -errno
 * when it could not be reached (-ETIMEDOUT: no answer within CONTROL_CLIENT_TIMEOUT_S, -ECONNRESET: it
 * closed the connection without an answer). */
int control_request(const char *path, int argc, char **argv, char *reply, size_t replylen);

#endif
