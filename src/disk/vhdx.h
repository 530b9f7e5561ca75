/* VHDX-specific operations for `gen2vm vhd` (the I/O path only needs disk.h): resize is an offline
 * tool (vhdx_tools.c), the queries read the open image (vhdx.c). */
#ifndef GEN2VM_DISK_VHDX_H
#define GEN2VM_DISK_VHDX_H

#include "disk/disk.h"

/* Grows a VHDX opened read-write to new_size bytes (a multiple of its logical sector size); the
 * BAT is moved to the end of the file when it must grow past its region. Crash-safe: one log
 * transaction switches size and BAT. Shrinking is refused (-EINVAL). 0 or -errno (logged). */
int vhdx_resize(struct disk *d, uint64_t new_size);

/* The parent locator's relative and absolute paths of a differencing VHDX (either may be NULL);
 * the strings belong to d. -EINVAL if d is not a VHDX. */
int vhdx_parent_paths(struct disk *d, const char **rel, const char **abs);

/* What replaying d's log did when it was opened ("3 log entries (sequence 7-9): ..."), or NULL when
 * it was closed cleanly (or d is not a VHDX). */
const char *vhdx_replay_summary(struct disk *d);

#endif
