/* PE32+ (x64) image loader: validation, section mapping and base relocation (PE/COFF specification;
 * UEFI 2.10 section 2.1.1).
 *
 * The image file is hostile: every offset and size is checked, in 64-bit arithmetic, against the file
 * and the image before use. A corrupt image gets EFI_LOAD_ERROR, an image for another machine or
 * subsystem EFI_UNSUPPORTED; neither reads or writes outside the file buffer or the destination.
 *
 * Use: efi_pe_parse(), allocate img.size_of_image bytes (aligned to img.section_alignment, at
 * img.image_base if img.relocs_stripped), then efi_pe_load() into it.
 */
#ifndef GEN2VM_GUESTLIB_EFI_PE_H
#define GEN2VM_GUESTLIB_EFI_PE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen2vm/proto/efi.h"

struct efi_pe_image {
	uint64_t image_base;        /* preferred load address */
	uint32_t size_of_image;     /* bytes to allocate */
	uint32_t size_of_headers;
	uint32_t entry_rva;         /* entry point, relative to the load address */
	uint32_t section_alignment; /* a power of two */
	uint16_t subsystem;         /* PE_SUBSYSTEM_EFI_* */
	uint16_t num_sections;
	uint32_t sections_off;      /* file offset of the section table */
	uint32_t reloc_rva, reloc_size;
	bool relocs_stripped;       /* must be loaded at image_base */
};

/* Validates the headers and the section table of file[0, size). */
EFI_STATUS efi_pe_parse(const void *file, size_t size, struct efi_pe_image *img);

/* Copies headers and sections into dest (img->size_of_image bytes, which will run at load_addr),
 * zero-fills each section's uninitialised tail (nothing else is zeroed), then applies base relocations
 * for load_addr - image_base. img must come from efi_pe_parse() of the same file. */
EFI_STATUS efi_pe_load(const void *file, size_t size, const struct efi_pe_image *img, void *dest,
		       uint64_t load_addr);

#endif
