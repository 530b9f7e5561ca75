/* The host's clocks as plain integers: every deadline, rate window, uptime and wall-clock stamp in
 * the VMM reads them here, so no module keeps its own timespec arithmetic. */
#ifndef GEN2VM_UTIL_CLOCK_H
#define GEN2VM_UTIL_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds: for deadlines and durations, since it never jumps when the wall
 * clock is set. Never fails; safe from any thread. */
uint64_t clock_mono_ns(void);

/* CLOCK_MONOTONIC in milliseconds (clock_mono_ns() / 1000000), for poll() timeout arithmetic. */
uint64_t clock_mono_ms(void);

/* CLOCK_REALTIME in nanoseconds since 1970-01-01 UTC: only for what the guest or a user sees as
 * the time of day (it jumps when the host's clock is set). Never fails; safe from any thread. */
uint64_t clock_real_ns(void);

#endif
