/* Hidden `gen2vm vhd selftest-writer|selftest-verify`, the two halves of the crash test
 * (tests/integration/test_vhd_crash.py): the writer applies a deterministic sequence of writes
 * and trims (op k is derived from seed and k), flushes after each and appends k to a journal
 * (fdatasync'ed), resuming after the journal's last op; the test SIGKILLs it at random moments.
 * The verifier reopens the image read-write (replaying the VHDX log) and checks that every
 * journaled op reads back; only the range of the op in flight at the kill may differ.
 * Exit codes: 0 ok, 1 mismatch or error (printed), 2 usage. */
#ifndef GEN2VM_CLI_VHD_SELFTEST_H
#define GEN2VM_CLI_VHD_SELFTEST_H

#include <stdint.h>

int vhd_selftest_writer(const char *path, uint64_t seed, const char *journal, uint64_t max_ops);
int vhd_selftest_verify(const char *path, uint64_t seed, const char *journal);

#endif
