/* The CMOS real-time clock (MC146818 register set) at ports 0x70-0x71, as Hyper-V's generation 2
 * machine has one: guests read the wall-clock time from it at boot (Linux's read_persistent_clock,
 * Windows' HAL) and keep 114 bytes of CMOS RAM in it. Without it Linux spends a second polling for
 * an update-in-progress bit that never clears, in 40,000 port exits, and starts at 1970.
 *
 * The time is the VM's wall clock (struct rtc_clock: the same one the firmware's GetTime/SetTime
 * use); a guest that writes the time registers (with or without the SET bit, as the MC146818 allows)
 * sets it. Every read computes the time afresh, so the update-in-progress bit never reads 1 and a
 * guest never waits on it. No interrupt is raised (the ACPI description lists no IRQ): the alarm,
 * update and periodic enables are kept as register bits only; Linux then polls for updates.
 */
#ifndef GEN2VM_DEVICES_RTC_H
#define GEN2VM_DEVICES_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define RTC_PORT 0x70
#define RTC_CENTURY_REG 0x32 /* FADT.CENTURY points here */

/* The VM's wall clock in seconds since 1970 (UTC), read and set. */
struct rtc_clock {
	int64_t (*get)(void *opaque);
	void (*set)(void *opaque, int64_t secs);
	void *opaque;
};

struct rtc {
	pthread_mutex_t lock;
	struct rtc_clock clock;
	uint8_t index;      /* selected register */
	bool nmi_masked;    /* bit 7 of the index port; this machine has no NMI source to mask */
	uint8_t ram[128];   /* registers A-D and the CMOS RAM (time registers come from the clock) */
	/* While SET is 1: the date and time fields as the guest wrote them (each on its own, as the
	 * part's registers are; they become the clock when SET is cleared). */
	struct rtc_date {
		int64_t year;
		unsigned month, mday, wday, hour, min, sec;
	} frozen;
};

void rtc_init(struct rtc *r, const struct rtc_clock *clock);
void rtc_destroy(struct rtc *r);

/* Claims ports 0x70-0x71. Returns 0 or -errno. */
struct savestate_rtc;
/* Its registers and CMOS RAM for a saved VM, and back (the clock offset field is the machine's:
 * neither touches it). restore checks the index: 0 or -EINVAL. */
void rtc_save(struct rtc *r, struct savestate_rtc *out);
int rtc_restore(struct rtc *r, const struct savestate_rtc *in);

int rtc_attach(struct rtc *r, struct bus *pio);

/* The bus handler (exposed for unit tests). */
void rtc_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

#endif
