/* VHD-specific operations for `gen2vm vhd` (the I/O path only needs disk.h): resize is an offline
 * tool (vhd_tools.c), the query reads the open image (vhd.c). */
#ifndef GEN2VM_DISK_VHD_H
#define GEN2VM_DISK_VHD_H

#include "disk/disk.h"

/* The W2ru (relative) and W2ku (absolute) parent locators of a differencing VHD (either may be
 * NULL); strings belong to d. -EINVAL if d is not a dynamic/differencing VHD. */
int vhd_parent_paths(struct disk *d, const char **rel, const char **abs);

/* Grows a VHD (fixed, dynamic or differencing) to size bytes (a multiple of 512, at most 2040 GiB),
 * crash-safely (see vhd_tools.c). Shrinking is refused. Returns 0 or -errno (logged, naming the file). */
int vhd_resize(struct disk *d, uint64_t size);

#endif
