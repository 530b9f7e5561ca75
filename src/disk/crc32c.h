/* CRC-32C (Castagnoli), as used by VHDX headers, region tables, metadata and log entries. */
#ifndef GEN2VM_DISK_CRC32C_H
#define GEN2VM_DISK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: crc32c(0, ...) starts one; the result is final (already inverted). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
