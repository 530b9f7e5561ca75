/* The UEFI variable store the VMM owns for its firmware (UEFI 2.10 section 8.2; requests in
 * include/gen2vm/proto/fw_var.h). A pure module: no VM, no KVM; the only I/O is its file.
 *
 * Volatile variables live until nvram_vm_reset() (each guest reset). Non-volatile ones live as long
 * as the store, and with a file (--nvram) are written to it atomically at every change (a temporary
 * file, fsync, rename, fsync of the directory). A store opened on a file holds a lock on PATH.lock
 * (fcntl, records the pid) so that a second gen2vm cannot use the same file at once.
 *
 * File format (ours; all little-endian): a 48-byte header {magic "G2VMNVRM", u32 version = 1,
 * u32 header size = 48, u8 system_uuid[16], u32 nr_vars, u32 body_size, u32 body_crc32 (UEFI CRC),
 * u32 header_crc32 (of the 44 bytes before it)}, then nr_vars records {u32 attributes,
 * u32 name_size, u32 data_size, EFI_GUID guid, name, data}. Only non-volatile variables are stored.
 *
 * Thread safety: nvram_host_call() takes the store's lock; every other function needs it held
 * (nvram_lock) when the store is shared with a running VM (boot entries on hot add/remove).
 */
#ifndef GEN2VM_PLATFORM_NVRAM_H
#define GEN2VM_PLATFORM_NVRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

struct nvram;

/* Opens the store. path NULL: a store in memory only (non-volatile variables live as long as it).
 * Otherwise path is loaded, or created with a fresh system UUID when it does not exist and create is
 * true. lock: take PATH.lock (gen2vm run, firmware set/reset); a store opened without it must not be
 * written. Returns 0, or -errno with a one-line message naming the file and the fix in err:
 * -EBUSY in use by another process, -EINVAL corrupt or foreign file or not a regular file (a FIFO
 * or device is never opened), -EISDIR a directory, -EFBIG larger than any store, -ENOENT absent
 * (create false), others from the file system. Nothing is created next to a path that is not a
 * regular file. */
int nvram_open(const char *path, bool create, bool lock, struct nvram **out, char *err, size_t errlen);

/* Writes a fresh default store to path (a new system UUID, no variables), replacing the file that is
 * there (gen2vm firmware reset); anything but a regular file at path is refused (-EISDIR, -EINVAL).
 * Takes the lock for the duration. 0 or -errno with err. */
int nvram_reset_file(const char *path, char *err, size_t errlen);

/* Releases the lock and frees the store (NULL is fine). */
void nvram_close(struct nvram *nv);

/* A guest reset: drops volatile variables and the runtime latch. */
void nvram_vm_reset(struct nvram *nv);

void nvram_lock(struct nvram *nv);
void nvram_unlock(struct nvram *nv);

/* The per-VM SMBIOS type 1 UUID made when the store was created (SMBIOS byte order). */
const uint8_t *nvram_system_uuid(const struct nvram *nv);

/* The path of the file, or NULL for a store in memory. */
const char *nvram_path(const struct nvram *nv);

/* A request from the host itself (nvram_set_ascii: the CLI, boot entries, Secure Boot's setting), never
 * from the guest (nvram_host_call masks it off): it may write Secure Boot's keys (secboot.h). */
#define NVRAM_F_HOST (1u << 31)

/* Variable services with UEFI semantics; they return EFI_STATUS. name/name_size as VariableName and
 * its size in bytes with the NUL. flags: FW_VAR_F_* (runtime, firmware), NVRAM_F_HOST. Each successful change of a
 * non-volatile variable is written to the file before returning; a failed write answers
 * EFI_DEVICE_ERROR and leaves the store as it was. */
uint64_t nvram_get(struct nvram *nv, const CHAR16 *name, size_t name_size, const EFI_GUID *guid, uint32_t flags,
		   uint32_t *attributes, void *data, size_t *data_size);
uint64_t nvram_set(struct nvram *nv, const CHAR16 *name, size_t name_size, const EFI_GUID *guid, uint32_t flags,
		   uint32_t attributes, const void *data, size_t data_size);
/* GetNextVariableName: name/name_size is the previous name (an empty name: the first); buf_cap is the
 * caller's name buffer. On success the next name is written to out (out_cap bytes of room, at least
 * buf_cap or the name's size) and *guid updated; *next_size is the next name's size, also on
 * EFI_BUFFER_TOO_SMALL. */
uint64_t nvram_next_name(struct nvram *nv, const CHAR16 *name, size_t name_size, EFI_GUID *guid, uint32_t flags,
			 size_t buf_cap, CHAR16 *out, size_t out_cap, size_t *next_size);
uint64_t nvram_query(struct nvram *nv, uint32_t attributes, uint32_t flags, uint64_t *max_storage,
		     uint64_t *remaining, uint64_t *max_var_size);

/* The host-call handler for FW_OP_VAR_* (firmware_op_fn, opaque = the store): copies and checks every
 * field of the guest's request before use. */
uint64_t nvram_host_call(void *opaque, uint32_t op, void *req, uint32_t req_size);

/* Host-side helpers for boot entries and the CLI: ASCII names in the given GUID, as the firmware
 * would (FW_VAR_F_FIRMWARE). nvram_get_ascii returns the data (malloc'd, *size) or NULL when absent. */
void *nvram_get_ascii(struct nvram *nv, const char *name, const EFI_GUID *guid, size_t *size, uint32_t *attributes);
uint64_t nvram_set_ascii(struct nvram *nv, const char *name, const EFI_GUID *guid, uint32_t attributes,
			 const void *data, size_t size);

/* Whether a variable name (size in bytes with its NUL) is the ASCII string a. */
bool nvram_name_eq_ascii(const CHAR16 *n, size_t size, const char *a);

/* Iteration for the host (CLI): the i-th variable in store order, false past the end. */
bool nvram_var_at(const struct nvram *nv, size_t i, const CHAR16 **name, size_t *name_size, EFI_GUID *guid,
		  uint32_t *attributes, const void **data, size_t *data_size);

/* Parses a file image (exposed for the fuzzer and unit tests): 0 and a store in memory, or -EINVAL
 * with the reason in err. */
int nvram_load_buffer(const void *buf, size_t len, struct nvram **out, char *err, size_t errlen);

#endif
