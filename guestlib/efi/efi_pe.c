#include "efi/efi_pe.h"

#include "efi/efi_lib.h"

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* [off, off + len) lies within [0, limit). */
static bool in_bounds(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

EFI_STATUS efi_pe_parse(const void *file, size_t size, struct efi_pe_image *img)
{
	const uint8_t *f = file;
	struct pe_dos_header dos;
	struct pe_file_header fh;
	struct pe_optional_header64 opt;

	if (!file || !img || size < sizeof(dos))
		return EFI_LOAD_ERROR;
	efi_memcpy(&dos, f, sizeof(dos));
	if (dos.e_magic != PE_DOS_MAGIC)
		return EFI_LOAD_ERROR;
	uint64_t nt = dos.e_lfanew;
	if (!in_bounds(nt, 4 + sizeof(fh) + 2, size))
		return EFI_LOAD_ERROR;
	if (efi_le32(f + nt) != PE_NT_SIGNATURE)
		return EFI_LOAD_ERROR;
	efi_memcpy(&fh, f + nt + 4, sizeof(fh));
	uint64_t opt_off = nt + 4 + sizeof(fh);
	if (fh.machine != PE_MACHINE_X64)
		return EFI_UNSUPPORTED;
	if (efi_le16(f + opt_off) != PE_OPT_MAGIC_PE32PLUS)
		return efi_le16(f + opt_off) == PE_OPT_MAGIC_PE32 ? EFI_UNSUPPORTED : EFI_LOAD_ERROR;
	if (fh.size_of_optional_header < sizeof(opt) || !in_bounds(opt_off, fh.size_of_optional_header, size))
		return EFI_LOAD_ERROR;
	efi_memcpy(&opt, f + opt_off, sizeof(opt));

	if (opt.subsystem != PE_SUBSYSTEM_EFI_APPLICATION && opt.subsystem != PE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER &&
	    opt.subsystem != PE_SUBSYSTEM_EFI_RUNTIME_DRIVER)
		return EFI_UNSUPPORTED;
	if (!is_pow2(opt.section_alignment) || !is_pow2(opt.file_alignment) || !opt.size_of_image ||
	    opt.size_of_headers > opt.size_of_image || opt.size_of_headers > size)
		return EFI_LOAD_ERROR;
	if (opt.number_of_rva_and_sizes > PE_NUM_DIRS ||
	    sizeof(opt) + (uint64_t)opt.number_of_rva_and_sizes * sizeof(struct pe_data_directory) >
		    fh.size_of_optional_header)
		return EFI_LOAD_ERROR;
	if (!opt.address_of_entry_point || opt.address_of_entry_point >= opt.size_of_image)
		return EFI_LOAD_ERROR;
	if (opt.image_base & 0xfff)
		return EFI_LOAD_ERROR;

	uint64_t sec_off = opt_off + fh.size_of_optional_header;
	uint64_t sec_len = (uint64_t)fh.number_of_sections * sizeof(struct pe_section_header);
	if (!fh.number_of_sections || !in_bounds(sec_off, sec_len, opt.size_of_headers))
		return EFI_LOAD_ERROR;
	for (uint32_t i = 0; i < fh.number_of_sections; i++) {
		struct pe_section_header s;
		efi_memcpy(&s, f + sec_off + i * sizeof(s), sizeof(s));
		uint64_t vsize = s.virtual_size ? s.virtual_size : s.size_of_raw_data;
		uint64_t copy = s.size_of_raw_data < vsize ? s.size_of_raw_data : vsize;
		if (!in_bounds(s.virtual_address, vsize, opt.size_of_image))
			return EFI_LOAD_ERROR;
		if (copy && !in_bounds(s.pointer_to_raw_data, copy, size))
			return EFI_LOAD_ERROR;
	}

	*img = (struct efi_pe_image){
		.image_base = opt.image_base,
		.size_of_image = opt.size_of_image,
		.size_of_headers = opt.size_of_headers,
		.entry_rva = opt.address_of_entry_point,
		.section_alignment = opt.section_alignment,
		.subsystem = opt.subsystem,
		.num_sections = fh.number_of_sections,
		.sections_off = (uint32_t)sec_off,
		.relocs_stripped = (fh.characteristics & PE_FILE_RELOCS_STRIPPED) != 0,
	};
	if (opt.number_of_rva_and_sizes > PE_DIR_BASERELOC) {
		struct pe_data_directory d;
		efi_memcpy(&d, f + opt_off + sizeof(opt) + PE_DIR_BASERELOC * sizeof(d), sizeof(d));
		if (d.size && !in_bounds(d.virtual_address, d.size, opt.size_of_image))
			return EFI_LOAD_ERROR;
		img->reloc_rva = d.size ? d.virtual_address : 0;
		img->reloc_size = d.size;
	}
	return EFI_SUCCESS;
}

static EFI_STATUS relocate(uint8_t *dest, const struct efi_pe_image *img, uint64_t delta)
{
	uint64_t at = img->reloc_rva, end = (uint64_t)img->reloc_rva + img->reloc_size;
	while (end - at >= sizeof(struct pe_base_relocation)) {
		uint32_t page = efi_le32(dest + at), bsize = efi_le32(dest + at + 4);
		if (!page && !bsize)
			break; /* zero padding after the last block */
		if (bsize < sizeof(struct pe_base_relocation) || bsize > end - at)
			return EFI_LOAD_ERROR;
		for (uint64_t e = at + 8; e + 2 <= at + bsize; e += 2) {
			uint16_t ent = efi_le16(dest + e);
			uint64_t target = (uint64_t)page + (ent & 0xfff);
			switch (ent >> 12) {
			case PE_REL_BASED_ABSOLUTE:
				break;
			case PE_REL_BASED_DIR64: {
				if (!in_bounds(target, 8, img->size_of_image))
					return EFI_LOAD_ERROR;
				uint64_t v = efi_le64(dest + target) + delta;
				efi_put32(dest + target, (uint32_t)v);
				efi_put32(dest + target + 4, (uint32_t)(v >> 32));
				break;
			}
			case PE_REL_BASED_HIGHLOW:
				if (!in_bounds(target, 4, img->size_of_image))
					return EFI_LOAD_ERROR;
				efi_put32(dest + target, efi_le32(dest + target) + (uint32_t)delta);
				break;
			default:
				return EFI_LOAD_ERROR;
			}
		}
		at += bsize;
	}
	return EFI_SUCCESS;
}

EFI_STATUS efi_pe_load(const void *file, size_t size, const struct efi_pe_image *img, void *dest,
		       uint64_t load_addr)
{
	const uint8_t *f = file;
	uint8_t *d = dest;
	if (!file || !img || !dest || img->size_of_headers > size || img->size_of_headers > img->size_of_image)
		return EFI_INVALID_PARAMETER;
	if (load_addr & 0xfff)
		return EFI_INVALID_PARAMETER;
	efi_memcpy(d, f, img->size_of_headers);
	for (uint32_t i = 0; i < img->num_sections; i++) {
		struct pe_section_header s;
		efi_memcpy(&s, f + img->sections_off + i * sizeof(s), sizeof(s));
		uint64_t vsize = s.virtual_size ? s.virtual_size : s.size_of_raw_data;
		uint64_t copy = s.size_of_raw_data < vsize ? s.size_of_raw_data : vsize;
		/* Rechecked: img is the caller's, the bounds are what keep dest and file safe. */
		if (!in_bounds(s.virtual_address, vsize, img->size_of_image) ||
		    (copy && !in_bounds(s.pointer_to_raw_data, copy, size)))
			return EFI_LOAD_ERROR;
		if (copy)
			efi_memcpy(d + s.virtual_address, f + s.pointer_to_raw_data, copy);
		if (vsize > copy)
			efi_memset(d + s.virtual_address + copy, 0, vsize - copy);
	}
	uint64_t delta = load_addr - img->image_base;
	if (!delta)
		return EFI_SUCCESS;
	if (img->relocs_stripped)
		return EFI_LOAD_ERROR;
	if (!in_bounds(img->reloc_rva, img->reloc_size, img->size_of_image))
		return EFI_LOAD_ERROR;
	return relocate(d, img, delta);
}
