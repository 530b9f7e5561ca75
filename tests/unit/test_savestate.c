/* The saved-state file (src/vmm/savestate.c): a file the writer made reads back section by section
 * and memory run by run; a truncated, altered or foreign file, and one saved from another machine,
 * are refused with a reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/vmdev.h"
#include "disk/crc32c.h"
#include "vmm/savestate.h"

#define CFG "{\"memory\": \"64M\", \"cpus\": 2}"
#define RAM (4u * SAVESTATE_PAGE)

struct fixture {
	struct guest_mem mem;
	uint8_t ram[RAM];
	uint8_t *file;
	size_t len;
};

/* Guest memory of two regions: [0, 2 pages) and [1 MiB, 1 MiB + 2 pages). */
static void fixture_mem(struct fixture *x)
{
	memset(&x->mem, 0, sizeof(x->mem));
	x->mem.nr_regions = 2;
	x->mem.ram_size = RAM;
	x->mem.memfd = -1;
	x->mem.region[0] = (struct guest_mem_region){ .gpa = 0, .size = 2 * SAVESTATE_PAGE, .hva = x->ram };
	x->mem.region[1] = (struct guest_mem_region){ .gpa = 0x100000, .size = 2 * SAVESTATE_PAGE,
						      .hva = x->ram + 2 * SAVESTATE_PAGE };
}

/* Writes a file with a vCPU section, a device section and memory with pages 1 and 2 non-zero. */
static void fixture_write(struct fixture *x)
{
	fixture_mem(x);
	memset(x->ram, 0, sizeof(x->ram));
	memset(x->ram + SAVESTATE_PAGE, 0xAB, SAVESTATE_PAGE);
	memset(x->ram + 2 * SAVESTATE_PAGE, 0xCD, 17);
	FILE *f = tmpfile();
	assert_non_null(f);
	struct savestate_writer w;
	assert_int_equal(savestate_write_begin(&w, fileno(f), CFG, strlen(CFG), 2, RAM), 0);
	assert_int_equal(savestate_write_section(&w, SAVESTATE_SEC_VCPU, 1, "regs", 4), 0);
	assert_int_equal(savestate_write_section(&w, SAVESTATE_SEC_DEVICE, 3, "storvsp!!", 9), 0);
	assert_int_equal(savestate_write_memory(&w, &x->mem), 0);
	assert_int_equal(savestate_write_end(&w), 0);
	x->len = (size_t)w.off;
	x->file = malloc(x->len);
	assert_non_null(x->file);
	assert_int_equal(pread(fileno(f), x->file, x->len, 0), (ssize_t)x->len);
	fclose(f);
}

static void test_roundtrip(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	fixture_write(x);
	assert_int_equal(x->len % SAVESTATE_ALIGN, 0);
	struct savestate_file f;
	char err[256] = "";
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), 0);
	assert_int_equal(savestate_check_machine(&f, CFG, strlen(CFG), 2, RAM, err, sizeof(err)), 0);
	struct savestate_sec s;
	assert_int_equal(savestate_find(&f, SAVESTATE_SEC_VCPU, 1, &s), 0);
	assert_int_equal(s.len, 4);
	assert_memory_equal(s.data, "regs", 4);
	assert_int_equal(savestate_find(&f, SAVESTATE_SEC_DEVICE, 3, &s), 0);
	assert_int_equal(s.len, 9);
	assert_int_equal(savestate_find(&f, SAVESTATE_SEC_VCPU, 0, &s), -ENOENT);
	/* Pages 1 and 2 are non-zero but in different regions: two runs, the zero pages left out. */
	unsigned runs = 0;
	size_t pos = 0;
	while (savestate_next(&f, &pos, &s))
		runs += s.type == SAVESTATE_SEC_MEMORY;
	assert_int_equal(runs, 2);
	assert_true(x->len < RAM);
	assert_int_equal(savestate_check_memory(&f, &x->mem, err, sizeof(err)), 0);
	uint8_t want[RAM];
	memcpy(want, x->ram, RAM);
	memset(x->ram, 0, RAM);
	assert_int_equal(savestate_load_memory(&f, &x->mem), 0);
	assert_memory_equal(x->ram, want, RAM);
	free(x->file);
	free(x);
}

static void test_other_machine_refused(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	fixture_write(x);
	struct savestate_file f;
	char err[256] = "";
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), 0);
	const char *other = "{\"memory\": \"64M\", \"cpus\": 4}";
	assert_int_equal(savestate_check_machine(&f, other, strlen(other), 2, RAM, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "another configuration"));
	assert_int_equal(savestate_check_machine(&f, CFG, strlen(CFG), 4, RAM, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vCPUs"));
	assert_int_equal(savestate_check_machine(&f, CFG, strlen(CFG), 2, 2 * RAM, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "RAM"));
	/* Memory runs outside this machine's RAM are refused before anything is copied. */
	x->mem.region[1].gpa = 0x200000;
	assert_int_equal(savestate_check_memory(&f, &x->mem, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not in guest RAM"));
	free(x->file);
	free(x);
}

static void test_truncated_refused(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	fixture_write(x);
	struct savestate_file f;
	char err[256];
	/* Every length short of the whole file is refused (and never read past). */
	for (size_t len = 0; len < x->len; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, x->file, len);
		err[0] = 0;
		assert_int_equal(savestate_open(&f, copy, len, err, sizeof(err)), -EINVAL);
		assert_true(err[0]);
		free(copy);
	}
	/* And bytes after the end. */
	uint8_t *longer = calloc(1, x->len + 8);
	memcpy(longer, x->file, x->len);
	assert_int_equal(savestate_open(&f, longer, x->len + 8, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "after its end"));
	free(longer);
	free(x->file);
	free(x);
}

static void test_altered_refused(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	fixture_write(x);
	struct savestate_file f;
	char err[256];
	/* Any flipped bit anywhere is refused. */
	for (size_t i = 0; i < x->len; i += 7) {
		x->file[i] ^= 0x10;
		err[0] = 0;
		assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), -EINVAL);
		assert_true(err[0]);
		x->file[i] ^= 0x10;
	}
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), 0);
	memcpy(x->file, "NOTSAVED", 8);
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a gen2vm saved-state file"));
	free(x->file);
	free(x);
}

/* Fields that a consistent CRC does not excuse: a section length past the end, another version, a
 * memory run that overflows or is misaligned. */
static void test_hostile_fields(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));
	fixture_write(x);
	struct savestate_file f;
	char err[256];
	size_t end = x->len - 24; /* the END section */
	struct savestate_header h;
	memcpy(&h, x->file, sizeof(h));
	h.version = 2;
	memcpy(x->file, &h, sizeof(h));
	uint32_t crc = crc32c(0, x->file, end);
	memcpy(x->file + end + 16, &crc, 4);
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version 2"));
	h.version = SAVESTATE_VERSION;
	memcpy(x->file, &h, sizeof(h));
	/* The first section's length made huge. */
	size_t first = sizeof(h) + ((strlen(CFG) + 7) & ~7ul);
	uint64_t huge = ~0ull - 3;
	memcpy(x->file + first + 8, &huge, 8);
	crc = crc32c(0, x->file, end);
	memcpy(x->file + end + 16, &crc, 4);
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "truncated"));
	free(x->file);

	/* A memory run whose page count overflows the GPA arithmetic. */
	FILE *t = tmpfile();
	struct savestate_writer w;
	savestate_write_begin(&w, fileno(t), CFG, strlen(CFG), 2, RAM);
	struct {
		struct savestate_mem_run run;
		uint8_t page[SAVESTATE_PAGE];
	} m = { .run = { .gpa = 0x1000, .pages = 1ull << 52 } };
	savestate_write_section(&w, SAVESTATE_SEC_MEMORY, 0, &m, sizeof(m));
	m.run = (struct savestate_mem_run){ .gpa = 0x1001, .pages = 1 };
	savestate_write_section(&w, SAVESTATE_SEC_MEMORY, 1, &m, sizeof(m));
	assert_int_equal(savestate_write_end(&w), 0);
	x->len = (size_t)w.off;
	x->file = malloc(x->len);
	assert_int_equal(pread(fileno(t), x->file, x->len, 0), (ssize_t)x->len);
	fclose(t);
	assert_int_equal(savestate_open(&f, x->file, x->len, err, sizeof(err)), 0);
	assert_int_equal(savestate_check_memory(&f, &x->mem, err, sizeof(err)), -EINVAL);
	assert_int_equal(savestate_load_memory(&f, &x->mem), -EFAULT);
	free(x->file);
	free(x);
}

/* Device memory (the video RAM): written sparsely, read back exactly; every hostile header and run
 * (unaligned, overlapping, past the memory's end, too large, bytes left over) refused. */
static void test_devmem(void **state)
{
	(void)state;
	const uint64_t size = 8 * SAVESTATE_PAGE;
	uint8_t *mem = calloc(1, size), *back = calloc(1, size);
	memset(mem + SAVESTATE_PAGE, 0x5A, 2 * SAVESTATE_PAGE);
	mem[6 * SAVESTATE_PAGE + 100] = 7;
	FILE *t = tmpfile();
	struct savestate_writer w;
	savestate_write_begin(&w, fileno(t), CFG, strlen(CFG), 2, RAM);
	assert_int_equal(savestate_write_devmem(&w, mem, size, 0xf0000000ull, true), 0);
	assert_int_equal(savestate_write_end(&w), 0);
	size_t len = (size_t)w.off;
	uint8_t *file = malloc(len);
	assert_int_equal(pread(fileno(t), file, len, 0), (ssize_t)len);
	fclose(t);
	struct savestate_file f;
	struct savestate_sec s;
	struct savestate_devmem h;
	char err[256];
	assert_int_equal(savestate_open(&f, file, len, err, sizeof(err)), 0);
	assert_int_equal(savestate_find(&f, SAVESTATE_SEC_DEVMEM, 0, &s), 0);
	assert_int_equal(s.len, sizeof(h) + 2 * sizeof(struct savestate_devmem_run) + 3 * SAVESTATE_PAGE);
	assert_int_equal(savestate_devmem_check(&s, &h, err, sizeof(err)), 0);
	assert_int_equal(h.size, size);
	assert_int_equal(h.gpa, 0xf0000000ull);
	assert_int_equal(h.mapped, 1);
	assert_int_equal(h.nr_runs, 2);
	assert_int_equal(savestate_devmem_load(&s, back, size - SAVESTATE_PAGE), -EINVAL);
	assert_int_equal(savestate_devmem_load(&s, back, size), 0);
	assert_memory_equal(back, mem, size);
	/* Hostile fields in a copy of the section. */
	uint8_t *c = malloc(s.len);
	struct savestate_sec cs = s;
	cs.data = c;
	struct savestate_devmem_run r0, r1;
	memcpy(&r0, s.data + sizeof(h), sizeof(r0));
	memcpy(&r1, s.data + sizeof(h) + sizeof(r0) + r0.pages * SAVESTATE_PAGE, sizeof(r1));
	size_t r1_off = sizeof(h) + sizeof(r0) + (size_t)r0.pages * SAVESTATE_PAGE;
	struct {
		size_t off;
		uint64_t value;
	} bad[] = {
		{ 0, 0 },                                      /* size 0 */
		{ 0, size + 1 },                               /* size unaligned */
		{ 0, SAVESTATE_DEVMEM_MAX + SAVESTATE_PAGE },  /* too large */
		{ 0, 2 * SAVESTATE_PAGE },                     /* a run past the end */
		{ 8, 0xf0000001ull },                          /* gpa unaligned */
		{ sizeof(h), 1 },                              /* run offset unaligned */
		{ sizeof(h), size },                           /* run at the end */
		{ sizeof(h) + 8, 0 },                          /* no pages */
		{ sizeof(h) + 8, 1ull << 62 },                 /* pages overflow */
		{ r1_off, 0 },                                 /* runs overlap, not increasing */
		{ r1_off + 8, 3 },                             /* run longer than the section */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(c, s.data, s.len);
		memcpy(c + bad[i].off, &bad[i].value, 8);
		assert_int_equal(savestate_devmem_check(&cs, &h, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "device memory"));
		assert_int_equal(savestate_devmem_load(&cs, back, size), -EINVAL);
	}
	memcpy(c, s.data, s.len);
	uint32_t flags[2] = { 2, 2 }; /* mapped 2, nr_runs 2 */
	memcpy(c + 16, flags, 4);
	assert_int_equal(savestate_devmem_check(&cs, &h, err, sizeof(err)), -EINVAL);
	flags[0] = 0; /* not mapped, yet a gpa */
	memcpy(c + 16, flags, 4);
	assert_int_equal(savestate_devmem_check(&cs, &h, err, sizeof(err)), -EINVAL);
	memcpy(c, s.data, s.len);
	cs.len = s.len - 8; /* bytes missing */
	assert_int_equal(savestate_devmem_check(&cs, &h, err, sizeof(err)), -EINVAL);
	cs.len = 10;
	assert_int_equal(savestate_devmem_check(&cs, &h, err, sizeof(err)), -EINVAL);
	(void)r1;
	free(c);
	free(file);
	free(mem);
	free(back);
}

/* Every class created for every VM (always) can be saved: a default VM never has its save refused
 * for a device it did not ask for. */
static void test_default_classes_save(void **state)
{
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++)
		if ((*c)->always && (*c)->create) {
			print_message("%s\n", (*c)->name);
			assert_non_null((*c)->save);
			assert_non_null((*c)->restore);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_other_machine_refused),
		cmocka_unit_test(test_truncated_refused),
		cmocka_unit_test(test_altered_refused),
		cmocka_unit_test(test_hostile_fields),
		cmocka_unit_test(test_devmem),
		cmocka_unit_test(test_default_classes_save),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
