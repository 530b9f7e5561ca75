/* Device path to text (UEFI 2.10 section 10.6): the text form of the nodes the firmware and OS
 * loaders use (PciRoot/Acpi, Pci, MemoryMapped, VenHw/VenMsg/VenMedia, Scsi, Uri, HD, CDROM, file
 * paths, Fv/FvFile, Offset) and the generic form (HardwarePath(4,0A0B)...) for every other node.
 * The EFI_DEVICE_PATH_TO_TEXT_PROTOCOL (firmware/tables.c) and the boot manager's summary use it.
 * Freestanding; compiled for the firmware and the host unit tests.
 *
 * Output goes to a CHAR16 buffer (wide) or to a char buffer (ASCII: non-ASCII file name
 * characters becoming '?'), always NUL-terminated when cap > 0; the return value is the length the
 * whole text would have had, as snprintf's, so a caller can size a buffer with a first call. */
#ifndef GEN2VM_GUESTLIB_EFI_DPTEXT_H
#define GEN2VM_GUESTLIB_EFI_DPTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "gen2vm/proto/efi.h"

/* One node (its own length bounds what is read; a node shorter than its fixed part gets the generic
 * form). */
size_t efi_dp_node_text16(const EFI_DEVICE_PATH_PROTOCOL *node, CHAR16 *out, size_t cap);
/* A whole path: nodes joined by '/', instances by ','; reading stops at the end-of-path node or
 * after max bytes; a malformed node (shorter than its header, running past max) ends the text with
 * "/?" rather than being read. */
size_t efi_dp_text16(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max, CHAR16 *out, size_t cap);
size_t efi_dp_text8(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max, char *out, size_t cap);

#endif
