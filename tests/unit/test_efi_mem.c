/* Firmware memory map, page allocator and pool (guestlib/efi/efi_mem.c), over host memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_lib.h"
#include "efi/efi_mem.h"

#define RAM_PAGES 256 /* 1 MiB of host memory acts as guest RAM */

struct fixture {
	struct efi_mem m;
	uint8_t *ram;
	uint64_t base;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_int_equal(posix_memalign((void **)&f->ram, 4096, RAM_PAGES * 4096), 0);
	f->base = (uint64_t)(uintptr_t)f->ram;
	efi_mem_init(&f->m);
	assert_int_equal(efi_mem_add(&f->m, f->base, RAM_PAGES, EfiConventionalMemory, EFI_MEMORY_WB), EFI_SUCCESS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->ram);
	free(f);
	return 0;
}

/* Reads the map back as an array of descriptors (stepping by DescriptorSize, as loaders must). */
static size_t get_map(struct efi_mem *m, EFI_MEMORY_DESCRIPTOR *out, size_t max, UINTN *key)
{
	UINTN size = 0, dsize = 0;
	uint32_t ver = 0;
	assert_int_equal(efi_mem_get_map(m, &size, NULL, key, &dsize, &ver), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(dsize, EFI_MEM_DESC_SIZE);
	assert_true(dsize >= sizeof(EFI_MEMORY_DESCRIPTOR));
	assert_int_equal(ver, 1);
	uint8_t *buf = malloc(size);
	assert_int_equal(efi_mem_get_map(m, &size, NULL, key, &dsize, &ver), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_get_map(m, &size, (void *)buf, key, &dsize, &ver), EFI_SUCCESS);
	size_t n = size / dsize;
	assert_true(n <= max);
	for (size_t i = 0; i < n; i++)
		memcpy(&out[i], buf + i * dsize, sizeof(out[i]));
	free(buf);
	return n;
}

static void test_add_and_overlap(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(efi_mem_add(&f->m, f->base + 4096, 1, EfiReservedMemoryType, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_add(&f->m, f->base - 4096, 2, EfiReservedMemoryType, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_add(&f->m, f->base + 1, 1, EfiReservedMemoryType, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_add(&f->m, 0x1000, 0, EfiReservedMemoryType, 0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_add(&f->m, UINT64_MAX - 4095, 2, EfiReservedMemoryType, 0), EFI_INVALID_PARAMETER);
	/* A reserved range right after RAM stays a separate range and can never be freed. */
	uint64_t after = f->base + RAM_PAGES * 4096ull;
	assert_int_equal(efi_mem_add(&f->m, after, 4, EfiReservedMemoryType, 0), EFI_SUCCESS);
	EFI_MEMORY_DESCRIPTOR d[8];
	UINTN key;
	assert_int_equal(get_map(&f->m, d, 8, &key), 2);
	assert_int_equal(d[0].Type, EfiConventionalMemory);
	assert_int_equal(d[0].PhysicalStart, f->base);
	assert_int_equal(d[0].NumberOfPages, RAM_PAGES);
	assert_int_equal(d[0].Attribute, EFI_MEMORY_WB);
	assert_int_equal(d[1].Type, EfiReservedMemoryType);
	assert_int_equal(efi_mem_free_pages(&f->m, after, 4), EFI_NOT_FOUND);
}

static void test_allocate_types_and_keys(void **state)
{
	struct fixture *f = *state;
	EFI_MEMORY_DESCRIPTOR d[8];
	UINTN key0, key;
	get_map(&f->m, d, 8, &key0);

	/* AnyPages: top-down. */
	EFI_PHYSICAL_ADDRESS a = 0;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, 3, &a), EFI_SUCCESS);
	assert_int_equal(a, f->base + (RAM_PAGES - 3) * 4096ull);
	memset((void *)(uintptr_t)a, 0xab, 3 * 4096); /* the memory is really ours */
	assert_int_equal(get_map(&f->m, d, 8, &key), 2);
	assert_int_not_equal(key, key0);
	assert_int_equal(efi_mem_check_key(&f->m, key0), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_check_key(&f->m, key), EFI_SUCCESS);
	assert_int_equal(d[1].Type, EfiLoaderData);
	assert_int_equal(d[1].NumberOfPages, 3);

	/* MaxAddress: the whole block must end at or below the limit (inclusive). */
	EFI_PHYSICAL_ADDRESS m = f->base + 16 * 4096 - 1;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateMaxAddress, EfiBootServicesData, 2, &m), EFI_SUCCESS);
	assert_int_equal(m, f->base + 14 * 4096);
	m = f->base + 4096 - 1;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateMaxAddress, EfiBootServicesData, 2, &m),
			 EFI_OUT_OF_RESOURCES);

	/* Address: exact, and only if entirely free. */
	EFI_PHYSICAL_ADDRESS x = f->base + 13 * 4096;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAddress, EfiLoaderCode, 2, &x), EFI_NOT_FOUND);
	x = f->base + 12 * 4096;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAddress, EfiLoaderCode, 2, &x), EFI_SUCCESS);
	assert_int_equal(x, f->base + 12 * 4096);
	x = f->base + 5;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAddress, EfiLoaderCode, 1, &x), EFI_INVALID_PARAMETER);
	x = f->base + RAM_PAGES * 4096ull;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAddress, EfiLoaderCode, 1, &x), EFI_NOT_FOUND);
	x = UINT64_MAX & ~4095ull;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAddress, EfiLoaderCode, 4, &x), EFI_NOT_FOUND);

	/* Bad memory types and sizes. */
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiConventionalMemory, 1, &a),
			 EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiPersistentMemory, 1, &a),
			 EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, 0x100, 1, &a), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pages(&f->m, MaxAllocateType, EfiLoaderData, 1, &a), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, 1, NULL), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, RAM_PAGES, &a),
			 EFI_OUT_OF_RESOURCES);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, UINT64_MAX, &a),
			 EFI_OUT_OF_RESOURCES);
	EFI_PHYSICAL_ADDRESS oem = 0;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, 0x80000001u, 1, &oem), EFI_SUCCESS);

	/* Runtime ranges carry EFI_MEMORY_RUNTIME in the map. */
	EFI_PHYSICAL_ADDRESS rt = 0;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiRuntimeServicesData, 1, &rt), EFI_SUCCESS);
	size_t n = get_map(&f->m, d, 8, &key);
	bool seen = false;
	for (size_t i = 0; i < n; i++) {
		if (d[i].PhysicalStart == rt) {
			seen = true;
			assert_int_equal(d[i].Type, EfiRuntimeServicesData);
			assert_int_equal(d[i].Attribute, EFI_MEMORY_WB | EFI_MEMORY_RUNTIME);
		}
		if (i)
			assert_int_equal(d[i].PhysicalStart,
					 d[i - 1].PhysicalStart + d[i - 1].NumberOfPages * 4096);
	}
	assert_true(seen);
}

static void test_free_and_merge(void **state)
{
	struct fixture *f = *state;
	EFI_PHYSICAL_ADDRESS a = 0, b = 0;
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, 4, &a), EFI_SUCCESS);
	assert_int_equal(efi_mem_allocate_pages(&f->m, AllocateAnyPages, EfiLoaderData, 4, &b), EFI_SUCCESS);
	assert_int_equal(b + 4 * 4096, a);
	EFI_MEMORY_DESCRIPTOR d[8];
	UINTN key;
	assert_int_equal(get_map(&f->m, d, 8, &key), 2); /* adjacent equal types merge */
	assert_int_equal(efi_mem_free_pages(&f->m, a + 1, 1), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_free_pages(&f->m, f->base, 1), EFI_NOT_FOUND); /* free RAM */
	assert_int_equal(efi_mem_free_pages(&f->m, a, 5), EFI_NOT_FOUND);     /* runs past the allocation */
	assert_int_equal(efi_mem_free_pages(&f->m, a, UINT64_MAX), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_free_pages(&f->m, b + 4096, 2), EFI_SUCCESS); /* a hole in the middle */
	assert_int_equal(get_map(&f->m, d, 8, &key), 4);
	assert_int_equal(efi_mem_free_pages(&f->m, b + 4096, 2), EFI_NOT_FOUND); /* double free */
	assert_int_equal(efi_mem_free_pages(&f->m, b, 1), EFI_SUCCESS);
	assert_int_equal(efi_mem_free_pages(&f->m, b + 3 * 4096, 5), EFI_SUCCESS);
	assert_int_equal(get_map(&f->m, d, 8, &key), 1);
	assert_int_equal(d[0].NumberOfPages, RAM_PAGES);
	assert_int_equal(efi_mem_check_key(&f->m, key), EFI_SUCCESS);
}

static void test_map_full(void **state)
{
	struct fixture *f = *state;
	/* Alternate types page by page until the map is full: the allocator reports it, never corrupts. */
	EFI_STATUS st = EFI_SUCCESS;
	int i;
	for (i = 0; i < RAM_PAGES && !EFI_ERROR(st); i++) {
		EFI_PHYSICAL_ADDRESS a = f->base + (uint64_t)i * 4096;
		st = efi_mem_allocate_pages(&f->m, AllocateAddress, (i & 1) ? EfiLoaderData : EfiLoaderCode, 1, &a);
	}
	assert_int_equal(st, EFI_OUT_OF_RESOURCES);
	assert_true(f->m.n <= EFI_MEM_MAX_RANGES);
	EFI_MEMORY_DESCRIPTOR *d = malloc(sizeof(*d) * EFI_MEM_MAX_RANGES);
	UINTN key;
	size_t n = get_map(&f->m, d, EFI_MEM_MAX_RANGES, &key);
	uint64_t total = 0;
	for (size_t k = 0; k < n; k++)
		total += d[k].NumberOfPages;
	assert_int_equal(total, RAM_PAGES);
	free(d);
}

static void test_pool(void **state)
{
	struct fixture *f = *state;
	void *p[64];
	for (int i = 0; i < 64; i++) {
		UINTN size = (UINTN)(i * 37) % 3000;
		assert_int_equal(efi_mem_allocate_pool(&f->m, EfiBootServicesData, size, &p[i]), EFI_SUCCESS);
		assert_int_equal((uintptr_t)p[i] & 15, 0);
		assert_int_equal(efi_mem_type_at(&f->m, (uintptr_t)p[i]), EfiBootServicesData);
		memset(p[i], i, size);
	}
	for (int i = 0; i < 64; i++) {
		UINTN size = (UINTN)(i * 37) % 3000;
		for (UINTN k = 0; k < size; k++)
			assert_int_equal(((uint8_t *)p[i])[k], i);
	}
	/* Large pool allocations are page-backed and give their pages back. */
	void *big;
	UINTN key0, key1;
	EFI_MEMORY_DESCRIPTOR d[16];
	get_map(&f->m, d, 16, &key0);
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiLoaderData, 20000, &big), EFI_SUCCESS);
	assert_int_equal(efi_mem_type_at(&f->m, (uintptr_t)big + 19999), EfiLoaderData);
	assert_int_equal(efi_mem_free_pool(&f->m, big), EFI_SUCCESS);
	get_map(&f->m, d, 16, &key1);
	assert_int_not_equal(key0, key1);
	assert_int_equal(efi_mem_type_at(&f->m, (uintptr_t)big), EfiConventionalMemory);

	for (int i = 0; i < 64; i++)
		assert_int_equal(efi_mem_free_pool(&f->m, p[i]), EFI_SUCCESS);
	/* Double free, interior pointers, NULL and foreign pointers are refused. */
	assert_int_equal(efi_mem_free_pool(&f->m, p[3]), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_free_pool(&f->m, NULL), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_free_pool(&f->m, (uint8_t *)p[5] + 8), EFI_INVALID_PARAMETER);
	int local;
	assert_int_equal(efi_mem_free_pool(&f->m, &local), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiConventionalMemory, 8, &big), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiLoaderData, 8, NULL), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiLoaderData, UINT64_MAX - 8, &big), EFI_OUT_OF_RESOURCES);
	/* Freed chunks are reused. */
	void *again;
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiBootServicesData, 10, &again), EFI_SUCCESS);
	assert_int_equal(efi_mem_free_pool(&f->m, again), EFI_SUCCESS);
	/* Zero-size requests get a real, freeable pointer. */
	assert_int_equal(efi_mem_allocate_pool(&f->m, EfiLoaderData, 0, &again), EFI_SUCCESS);
	assert_non_null(again);
	assert_int_equal(efi_mem_free_pool(&f->m, again), EFI_SUCCESS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_and_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocate_types_and_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_and_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
	};
	return cmocka_run_group_tests_name("efi_mem", tests, NULL, NULL);
}
