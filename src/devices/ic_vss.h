/* The backup (VSS, volume shadow copy) integration service, src/devices/ic_vss.c: what its unit tests
 * and fuzzer reach besides the control verbs. Wire format: struct ic_vss_msg in
 * include/gen2vm/proto/ic.h. */
#ifndef GEN2VM_DEVICES_IC_VSS_H
#define GEN2VM_DEVICES_IC_VSS_H

#include <stdint.h>

/* How long `thaw` waits for the guest's answer: 35 s by default. Linux's kernel gives its daemon
 * 30 s (HV_UTIL_TIMEOUT) for a THAW and then answers E_FAIL itself, so a longer silence means the
 * guest's side is stuck. Tests and the fuzzer shorten it. */
extern uint32_t ic_vss_thaw_wait_ms;

/* Milliseconds in one second of `freeze --timeout S` and `--auto-thaw S`: 1000. The verbs speak in
 * seconds (freezing syncs the file systems, which takes seconds); tests and the fuzzer shrink the
 * unit so that a timeout or an auto-thaw takes milliseconds. */
extern uint32_t ic_vss_second_ms;

#endif
