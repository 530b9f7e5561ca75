/* The proleptic Gregorian calendar as day counts: what the firmware's GetTime/SetTime and the CMOS
 * RTC both convert through. */
#ifndef GEN2VM_UTIL_CIVIL_H
#define GEN2VM_UTIL_CIVIL_H

#include <stdint.h>

/* Days since 1970-01-01 of year y, month m (1..12), day d (1..31); and back. */
int64_t civil_days_from_date(int64_t y, unsigned m, unsigned d);
void civil_date_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* Days in month m (1..12) of year y. */
unsigned civil_month_days(int64_t y, unsigned m);

#endif
