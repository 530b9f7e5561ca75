/* The host side of the firmware's time and entropy calls (FW_OP_TIME_GET/SET, FW_OP_RNG in
 * include/gen2vm/proto/fw.h): the VM's wall clock is the host's UTC clock plus an offset that
 * TIME_SET moves, kept for the life of the process (a restart of the VM within it keeps it); entropy
 * comes from getrandom(). */
#ifndef GEN2VM_PLATFORM_FW_MISC_H
#define GEN2VM_PLATFORM_FW_MISC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fw_misc {
	/* Runtime services run on any vCPU: the fields below change together under lock. */
	pthread_mutex_t lock;
	/* VM wall clock minus host UTC, as seconds and nanoseconds (0..999999999): in nanoseconds
	 * alone an int64 stops short of the year 2262, and EFI_TIME goes to 9999. */
	int64_t offset_s;
	int32_t offset_ns;
	int16_t time_zone;   /* what the last TIME_SET gave, returned by TIME_GET */
	uint8_t daylight;
	int64_t (*now_ns)(void); /* the host's UTC clock: CLOCK_REALTIME, replaced by unit tests */
};

void fw_misc_init(struct fw_misc *m);

/* A firmware_op_fn (platform/firmware.h) for FW_OP_MISC_FIRST..FW_OP_MISC_LAST: opaque is a
 * struct fw_misc, req the whole request (req_size bytes of guest memory, which the guest may change
 * while we read: every field is copied before it is checked). Returns the EFI_STATUS for the
 * request: EFI_INVALID_PARAMETER for a size or field out of range, EFI_UNSUPPORTED for an unknown
 * op, EFI_DEVICE_ERROR when the host has no entropy to give. */
uint64_t fw_misc_handle(void *opaque, uint32_t op, void *req, uint32_t req_size);

/* The VM's wall clock in whole seconds since 1970 (host UTC + the offset), and setting it (the
 * nanoseconds of the new second start at 0): the CMOS RTC reads and sets the same clock as GetTime
 * and SetTime. opaque is a struct fw_misc (these fit struct rtc_clock). */
int64_t fw_misc_clock_get(void *opaque);
void fw_misc_clock_set(void *opaque, int64_t secs);
/* The same clock in 100 ns units since 1601-01-01 (Windows FILETIME, the integration services'
 * time sync), 0 before 1601. */
uint64_t fw_misc_clock_filetime(void *opaque);

/* The offset from host UTC in whole seconds (rounded down), and setting it (--clock-offset, the
 * `clock` verb). The integration services' time sync notices the jump at its next sample and steps
 * the guest's clock. */
int64_t fw_misc_clock_offset_get(struct fw_misc *m);
void fw_misc_clock_offset_set(struct fw_misc *m, int64_t secs);

/* Parses an offset in seconds ("3600", "+3600", "-86400"), at most FW_MISC_OFFSET_MAX either way.
 * 0 or -EINVAL. */
#define FW_MISC_OFFSET_MAX 3155760000ll /* 100 years */
int fw_misc_offset_parse(const char *s, int64_t *out);

#endif
