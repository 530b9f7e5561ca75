#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/clock.h"

#define RL_WINDOW_NS (5ull * 1000000000ull)
#define RL_BURST 10

static enum log_level g_level = LOG_WARN;
static bool g_level_from_env;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_init_from_env(void)
{
	if (g_level_from_env)
		return;
	g_level_from_env = true;
	const char *e = getenv("GEN2VM_LOG");
	if (!e)
		return;
	if (!strcasecmp(e, "debug"))
		g_level = LOG_DEBUG;
	else if (!strcasecmp(e, "info"))
		g_level = LOG_INFO;
	else if (!strcasecmp(e, "warn"))
		g_level = LOG_WARN;
	else if (!strcasecmp(e, "error"))
		g_level = LOG_ERROR;
}

void log_set_level(enum log_level level)
{
	g_level_from_env = true; /* an explicit setting beats the environment */
	g_level = level;
}

enum log_level log_get_level(void)
{
	log_init_from_env();
	return g_level;
}

static __thread char g_last_error[LOG_LAST_ERROR_MAX];
static __thread char g_context[1024];

size_t log_context_push(const char *fmt, ...)
{
	size_t saved = strlen(g_context);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_context + saved, sizeof(g_context) - saved, fmt, ap);
	va_end(ap);
	return saved;
}

void log_context_pop(size_t saved)
{
	if (saved < sizeof(g_context))
		g_context[saved] = 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	if (level > log_get_level() && level != LOG_ERROR)
		return;
	/* Room for a path of PATH_MAX bytes and its reason: a message is never cut before its reason. */
	char buf[LOG_LAST_ERROR_MAX];
	size_t ctx = (size_t)snprintf(buf, sizeof(buf), "%s", g_context);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + ctx, sizeof(buf) - ctx, fmt, ap);
	va_end(ap);
	/* One message, one line, whatever a path or a guest's text holds. */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (level == LOG_ERROR)
		memcpy(g_last_error, buf, sizeof(buf));
	if (level > log_get_level())
		return;
	pthread_mutex_lock(&g_lock);
	fprintf(stderr, "gen2vm: %s: %s\n", names[level], buf);
	pthread_mutex_unlock(&g_lock);
}

const char *log_last_error(void)
{
	return g_last_error;
}

void log_last_error_clear(void)
{
	g_last_error[0] = 0;
}

bool log_ratelimit_ok(struct log_ratelimit *rl)
{
	uint64_t t = clock_mono_ns();
	bool ok;
	uint32_t dropped = 0;
	pthread_mutex_lock(&g_lock);
	if (rl->window_start_ns == 0 || t - rl->window_start_ns > RL_WINDOW_NS) {
		dropped = rl->suppressed;
		rl->window_start_ns = t;
		rl->emitted = 0;
		rl->suppressed = 0;
	}
	ok = rl->emitted < RL_BURST;
	if (ok)
		rl->emitted++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&g_lock);
	if (dropped)
		log_msg(LOG_WARN, "guest: %u similar messages suppressed", dropped);
	return ok;
}
