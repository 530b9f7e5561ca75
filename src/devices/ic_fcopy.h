/* The guest services (file copy) integration service, src/devices/ic_fcopy.c: what its unit tests
 * reach besides the control verbs. Wire format: struct ic_fcopy_* in include/gen2vm/proto/ic.h. */
#ifndef GEN2VM_DEVICES_IC_FCOPY_H
#define GEN2VM_DEVICES_IC_FCOPY_H

#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/ic.h"

/* How long the copy waits for the guest's answer to one message before it gives up (sends CANCEL).
 * 35 s by default: Linux's kernel answers E_FAIL by itself when its daemon has not answered within
 * 30 s (HV_UTIL_TIMEOUT), so a slower answer means the guest's side is stuck. Tests shorten it. */
extern uint32_t ic_fcopy_answer_ms;

/* Splits an absolute guest path (UTF-8) into START's path_name (its directory with one trailing
 * slash: "/tmp/", "/" at the root; Linux's daemon creates only components a '/' follows) and file_name, both UTF-16LE NUL-terminated, as Hyper-V's Copy-VMFile does with its
 * -DestinationPath. Returns 0, or -EINVAL with why: not absolute, ends with '/', names "." or "..",
 * not UTF-8, or a part longer than 259 bytes (the guest's kernel converts each to at most that). */
int ic_fcopy_split(const char *guest_path, uint16_t path_name[IC_FCOPY_MAX_PATH],
		   uint16_t file_name[IC_FCOPY_MAX_PATH], const char **why);

/* What a guest status means for message op of GUESTPATH shown, for the user: "GUESTPATH exists (use
 * --overwrite)", "the guest's disk is full"... into buf. */
void ic_fcopy_status_text(uint32_t op, uint32_t status, const char *shown, char *buf, size_t len);

#endif
