/* PE32+ loader (guestlib/efi/efi_pe.c): a small image built here, loaded and relocated, then
 * corrupted in every way the loader must refuse without reading or writing out of bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_pe.h"

#define BASE 0x140000000ull
#define FILE_SIZE 0x800
#define IMAGE_SIZE 0x5000

struct pe_file {
	uint8_t b[FILE_SIZE];
};

static struct pe_section_header *section(struct pe_file *p, int i)
{
	return (struct pe_section_header *)(p->b + 64 + sizeof(struct pe_nt_headers64)) + i;
}

static struct pe_nt_headers64 *nt(struct pe_file *p)
{
	return (struct pe_nt_headers64 *)(p->b + 64);
}

/* .text at 0x1000 holds a pointer to .data (0x2000) that needs a DIR64 fixup; .data has a 0x1e00-byte
 * uninitialised tail; .reloc at 0x4000. */
static void build(struct pe_file *p)
{
	memset(p, 0, sizeof(*p));
	struct pe_dos_header *dos = (void *)p->b;
	dos->e_magic = PE_DOS_MAGIC;
	dos->e_lfanew = 64;
	struct pe_nt_headers64 *h = nt(p);
	h->signature = PE_NT_SIGNATURE;
	h->file.machine = PE_MACHINE_X64;
	h->file.number_of_sections = 3;
	h->file.size_of_optional_header = sizeof(h->opt) + sizeof(h->dirs);
	h->file.characteristics = PE_FILE_EXECUTABLE_IMAGE;
	h->opt.magic = PE_OPT_MAGIC_PE32PLUS;
	h->opt.address_of_entry_point = 0x1000;
	h->opt.image_base = BASE;
	h->opt.section_alignment = 0x1000;
	h->opt.file_alignment = 0x200;
	h->opt.size_of_image = IMAGE_SIZE;
	h->opt.size_of_headers = 0x200;
	h->opt.subsystem = PE_SUBSYSTEM_EFI_APPLICATION;
	h->opt.number_of_rva_and_sizes = PE_NUM_DIRS;
	h->dirs[PE_DIR_BASERELOC] = (struct pe_data_directory){ 0x4000, 12 };
	const struct pe_section_header s[3] = {
		{ ".text", 0x100, 0x1000, 0x200, 0x200, 0, 0, 0, 0, PE_SCN_CNT_CODE | PE_SCN_MEM_EXECUTE },
		{ ".data", 0x2000, 0x2000, 0x200, 0x400, 0, 0, 0, 0, PE_SCN_CNT_INITIALIZED_DATA },
		{ ".reloc", 12, 0x4000, 0x200, 0x600, 0, 0, 0, 0, PE_SCN_MEM_DISCARDABLE },
	};
	memcpy(section(p, 0), s, sizeof(s));
	uint64_t ptr = BASE + 0x2000;
	memcpy(p->b + 0x200 + 0x10, &ptr, 8);       /* .text+0x10: pointer to .data */
	memset(p->b + 0x200 + 0x20, 0xc3, 0x10);      /* some "code" */
	memset(p->b + 0x400, 0x5a, 0x200);           /* .data initialised part */
	uint32_t blk[2] = { 0x1000, 12 };
	memcpy(p->b + 0x600, blk, 8);
	uint16_t ent[2] = { (PE_REL_BASED_DIR64 << 12) | 0x010, 0 };
	memcpy(p->b + 0x608, ent, 4);
}

static uint8_t *image_buf(void)
{
	uint8_t *d = NULL;
	assert_int_equal(posix_memalign((void **)&d, 4096, IMAGE_SIZE), 0);
	memset(d, 0xee, IMAGE_SIZE); /* stale contents the loader must overwrite where it matters */
	return d;
}

static void test_load_and_relocate(void **state)
{
	static struct pe_file p;
	build(&p);
	struct efi_pe_image img;
	assert_int_equal(efi_pe_parse(p.b, sizeof(p.b), &img), EFI_SUCCESS);
	assert_int_equal(img.size_of_image, IMAGE_SIZE);
	assert_int_equal(img.entry_rva, 0x1000);
	assert_int_equal(img.image_base, BASE);
	assert_int_equal(img.subsystem, PE_SUBSYSTEM_EFI_APPLICATION);
	assert_false(img.relocs_stripped);

	uint8_t *d = image_buf();
	uint64_t at = 0x7f0000000ull;
	assert_int_equal(efi_pe_load(p.b, sizeof(p.b), &img, d, at), EFI_SUCCESS);
	assert_memory_equal(d, p.b, 0x200); /* headers */
	uint64_t ptr;
	memcpy(&ptr, d + 0x1010, 8);
	assert_int_equal(ptr, at + 0x2000); /* DIR64 applied */
	assert_int_equal(d[0x1020], 0xc3);
	assert_int_equal(d[0x10ff], 0);     /* .text: virtual size 0x100 < raw 0x200: only 0x100 copied */
	assert_int_equal(d[0x1100], 0xee);  /* beyond the section: untouched */
	assert_int_equal(d[0x21ff], 0x5a);
	for (int i = 0x2200; i < 0x4000; i++)
		assert_int_equal(d[i], 0); /* uninitialised tail zeroed */

	/* Loading at the preferred base applies nothing. */
	assert_int_equal(efi_pe_load(p.b, sizeof(p.b), &img, d, BASE), EFI_SUCCESS);
	memcpy(&ptr, d + 0x1010, 8);
	assert_int_equal(ptr, BASE + 0x2000);
	assert_int_equal(efi_pe_load(p.b, sizeof(p.b), &img, d, BASE + 1), EFI_INVALID_PARAMETER);
	free(d);
}

/* Every truncation of a valid image is refused or loads within bounds (ASan watches). */
static void test_truncated(void **state)
{
	static struct pe_file p;
	build(&p);
	uint8_t *d = image_buf();
	for (size_t n = 0; n < sizeof(p.b); n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, p.b, n);
		struct efi_pe_image img;
		EFI_STATUS st = efi_pe_parse(copy, n, &img);
		if (n < 0x800 - 0x200 + 12)
			assert_int_equal(st, EFI_LOAD_ERROR); /* sections outside the file */
		if (!EFI_ERROR(st))
			assert_int_equal(efi_pe_load(copy, n, &img, d, 0x100000), EFI_SUCCESS);
		free(copy);
	}
	free(d);
}

typedef void (*corrupt_fn)(struct pe_file *p);
static void c_magic(struct pe_file *p) { p->b[0] = 'X'; }
static void c_lfanew(struct pe_file *p) { ((struct pe_dos_header *)p->b)->e_lfanew = 0xfffffff0u; }
static void c_lfanew_edge(struct pe_file *p) { ((struct pe_dos_header *)p->b)->e_lfanew = FILE_SIZE - 8; }
static void c_sig(struct pe_file *p) { nt(p)->signature = 0x4551; }
static void c_optsize(struct pe_file *p) { nt(p)->file.size_of_optional_header = 100; }
static void c_optsize_big(struct pe_file *p) { nt(p)->file.size_of_optional_header = 0xffff; }
static void c_ndirs(struct pe_file *p) { nt(p)->opt.number_of_rva_and_sizes = 0x40000000u; }
static void c_nsec(struct pe_file *p) { nt(p)->file.number_of_sections = 0xffff; }
static void c_nosec(struct pe_file *p) { nt(p)->file.number_of_sections = 0; }
static void c_align(struct pe_file *p) { nt(p)->opt.section_alignment = 0x1800; }
static void c_hdrs(struct pe_file *p) { nt(p)->opt.size_of_headers = 0x10000; }
static void c_entry(struct pe_file *p) { nt(p)->opt.address_of_entry_point = IMAGE_SIZE; }
static void c_image0(struct pe_file *p) { nt(p)->opt.size_of_image = 0; }
static void c_sec_raw(struct pe_file *p) { section(p, 1)->pointer_to_raw_data = 0xfffffe00u; }
static void c_sec_raw_size(struct pe_file *p) { section(p, 1)->size_of_raw_data = 0x1000; section(p, 1)->virtual_size = 0x1000; }
static void c_sec_va(struct pe_file *p) { section(p, 1)->virtual_address = 0xffffff00u; }
static void c_sec_vsize(struct pe_file *p) { section(p, 1)->virtual_size = 0xffffffffu; }
static void c_reloc_dir(struct pe_file *p) { nt(p)->dirs[PE_DIR_BASERELOC].size = 0xfffffff0u; }
static void c_reloc_blk(struct pe_file *p) { uint32_t v = 4; memcpy(p->b + 0x604, &v, 4); }
static void c_reloc_blk_big(struct pe_file *p) { uint32_t v = 0x1000; memcpy(p->b + 0x604, &v, 4); }
static void c_reloc_target(struct pe_file *p) { uint32_t v = IMAGE_SIZE - 4; memcpy(p->b + 0x600, &v, 4); }
static void c_reloc_type(struct pe_file *p) { uint16_t v = (7 << 12) | 0x10; memcpy(p->b + 0x608, &v, 2); }
static void c_stripped(struct pe_file *p) { nt(p)->file.characteristics |= PE_FILE_RELOCS_STRIPPED; }

static void test_bad_images(void **state)
{
	static const corrupt_fn bad[] = { c_magic, c_lfanew, c_lfanew_edge, c_sig, c_optsize, c_optsize_big,
					  c_ndirs, c_nsec, c_nosec, c_align, c_hdrs, c_entry, c_image0, c_sec_raw,
					  c_sec_raw_size, c_sec_va, c_sec_vsize, c_reloc_dir, c_reloc_blk,
					  c_reloc_blk_big, c_reloc_target, c_reloc_type, c_stripped };
	uint8_t *d = image_buf();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		static struct pe_file p;
		build(&p);
		bad[i](&p);
		struct efi_pe_image img;
		EFI_STATUS st = efi_pe_parse(p.b, sizeof(p.b), &img);
		if (!EFI_ERROR(st))
			st = efi_pe_load(p.b, sizeof(p.b), &img, d, 0x200000);
		if (st != EFI_LOAD_ERROR) {
			free(d);
			fail_msg("corruption %zu: status %#llx, want EFI_LOAD_ERROR", i, (unsigned long long)st);
		}
	}
	free(d);
}

static void test_unsupported(void **state)
{
	static struct pe_file p;
	struct efi_pe_image img;
	build(&p);
	nt(&p)->file.machine = 0x14c; /* i386 */
	assert_int_equal(efi_pe_parse(p.b, sizeof(p.b), &img), EFI_UNSUPPORTED);
	build(&p);
	nt(&p)->opt.magic = PE_OPT_MAGIC_PE32;
	assert_int_equal(efi_pe_parse(p.b, sizeof(p.b), &img), EFI_UNSUPPORTED);
	build(&p);
	nt(&p)->opt.subsystem = 3; /* Windows console */
	assert_int_equal(efi_pe_parse(p.b, sizeof(p.b), &img), EFI_UNSUPPORTED);
	assert_int_equal(efi_pe_parse(NULL, 0, &img), EFI_LOAD_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_and_relocate),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_images),
		cmocka_unit_test(test_unsupported),
	};
	return cmocka_run_group_tests_name("efi_pe", tests, NULL, NULL);
}
