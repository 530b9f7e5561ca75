/* The saved-state file (include/gen2vm/proto/savestate.h): a writer that streams sections to a file
 * descriptor, and a reader that checks a whole file in memory before anything is taken from it.
 *
 * The reader trusts nothing: every length, offset, count and GPA is range-checked, the CRC covers the
 * whole file, and each failure gets a one-line reason naming what is wrong ("truncated: ends inside
 * section 12", "saved for another configuration"). Section contents are their owners' to check. */
#ifndef GEN2VM_VMM_SAVESTATE_H
#define GEN2VM_VMM_SAVESTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/savestate.h"
#include "vmm/memory.h"

#define SAVESTATE_CONFIG_MAX (1u << 20) /* a larger configuration copy is refused */

/* ---- writing ---- */

struct savestate_writer {
	int fd;
	uint32_t crc;  /* of everything written so far */
	uint64_t off;
	int error;     /* the first -errno; later calls do nothing */
	uint32_t mem_runs;
};

/* Starts a file on fd (positioned at its start, normally an empty temporary file): header and
 * configuration copy. 0 or -errno; an error sticks to w, so callers may check only the last call. */
int savestate_write_begin(struct savestate_writer *w, int fd, const void *config, size_t config_len,
			  unsigned nr_vcpus, uint64_t ram_size);
/* Appends one section of len bytes. 0 or the sticky -errno. */
int savestate_write_section(struct savestate_writer *w, uint32_t type, uint32_t index, const void *data,
			    size_t len);
/* Appends m's RAM as MEMORY sections, leaving out pages of zeros. The VM must be paused and its
 * devices quiet (nothing writes guest memory meanwhile). 0 or the sticky -errno. */
int savestate_write_memory(struct savestate_writer *w, const struct guest_mem *m);
/* Appends the DEVMEM section of device memory mem (size bytes, a multiple of 4096, at most
 * SAVESTATE_DEVMEM_MAX), mapped at gpa when mapped, leaving out pages of zeros. Nothing writes mem
 * meanwhile (the vCPUs are paused). 0 or the sticky -errno. */
int savestate_write_devmem(struct savestate_writer *w, const uint8_t *mem, uint64_t size, uint64_t gpa, bool mapped);
/* Appends the END section. The caller then fsyncs and renames the file into place. 0 or -errno. */
int savestate_write_end(struct savestate_writer *w);

/* ---- reading ---- */

struct savestate_file {
	const uint8_t *buf;
	size_t len;
	struct savestate_header hdr; /* a copy, checked */
	const uint8_t *config;
	size_t config_len;
	size_t first; /* offset of the first section */
	size_t end;   /* offset of the END section */
};

struct savestate_sec {
	uint32_t type, index;
	const uint8_t *data; /* inside the file's buffer */
	size_t len;
};

/* Checks buf (a whole state file, len bytes, which must stay mapped while f is used): magic,
 * version, header and configuration sizes, every section's bounds and type, the END section and the
 * CRC, and no bytes after END. 0, or -EINVAL with a reason in err (errlen bytes). */
int savestate_open(struct savestate_file *f, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* The section after *pos (start with *pos = 0) other than END: true and *s filled, or false at END.
 * Only on a file savestate_open accepted. */
bool savestate_next(const struct savestate_file *f, size_t *pos, struct savestate_sec *s);
/* The first section of type and index: 0, or -ENOENT. */
int savestate_find(const struct savestate_file *f, uint32_t type, uint32_t index, struct savestate_sec *s);

/* Refuses a file saved from another machine: 0, or -EINVAL with err saying which of the
 * configuration, the vCPU count or the RAM size differs. */
int savestate_check_machine(const struct savestate_file *f, const void *config, size_t config_len,
			    unsigned nr_vcpus, uint64_t ram_size, char *err, size_t errlen);

/* Checks every MEMORY section against m (well-formed runs, page-aligned, wholly inside one RAM
 * region, no overflow): 0, or -EINVAL with err. */
int savestate_check_memory(const struct savestate_file *f, const struct guest_mem *m, char *err, size_t errlen);
/* Copies every MEMORY run into m (after savestate_check_memory accepted the file): 0 or -EFAULT. */
int savestate_load_memory(const struct savestate_file *f, const struct guest_mem *m);

/* Checks a DEVMEM section (its header and every run: well-formed, increasing, inside the memory, the
 * section's bytes exactly used) and gives its header in *out: 0, or -EINVAL with err. */
int savestate_devmem_check(const struct savestate_sec *s, struct savestate_devmem *out, char *err, size_t errlen);
/* Copies the runs of a DEVMEM section savestate_devmem_check accepted into mem (size bytes, the
 * header's size; the caller zeroed it): 0, or -EINVAL when size is not the section's. */
int savestate_devmem_load(const struct savestate_sec *s, uint8_t *mem, uint64_t size);

#endif
