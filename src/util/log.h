/* Logging for the VMM: one line per message on stderr, prefixed with the level (line breaks inside a
 * message become spaces).
 *
 * Messages caused by the guest go through log_guest(): a hostile guest must not be able to flood the
 * host's log, so those are rate limited per call site (10 lines per 5 s, then one "suppressed N" line).
 */
#ifndef GEN2VM_UTIL_LOG_H
#define GEN2VM_UTIL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Messages above this level are dropped. Default LOG_WARN; GEN2VM_LOG=debug|info|warn|error overrides. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last error message logged on this thread (also when errors are not printed), for callers that
 * report it elsewhere (a control socket reply); "" when none since log_last_error_clear(). */
#define LOG_LAST_ERROR_MAX 8192
const char *log_last_error(void);
void log_last_error_clear(void);

/* Text put before every message logged on this thread until popped, so that an error deep in a nested
 * operation still names what the user asked for in its one line ("child.vhdx: its parent " + the
 * parent's own message). Pushes nest; log_context_pop(the value push returned) undoes one. */
size_t log_context_push(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_context_pop(size_t saved);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Per-call-site state of a rate limiter; zero-initialised static storage is ready to use. */
struct log_ratelimit {
	uint64_t window_start_ns;
	uint32_t emitted;
	uint32_t suppressed;
};

/* True when a message may be printed now. Thread-safe. Reports suppressed lines when a window ends. */
bool log_ratelimit_ok(struct log_ratelimit *rl);

/* A warning caused by guest behaviour (malformed request, bad GPA...), rate limited per call site. */
#define log_guest(...)                                                                             \
	do {                                                                                       \
		static struct log_ratelimit rl_;                                                   \
		if (log_ratelimit_ok(&rl_))                                                        \
			log_msg(LOG_WARN, "guest: " __VA_ARGS__);                                  \
	} while (0)

#endif
