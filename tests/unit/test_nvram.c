/* The host-owned UEFI variable store (src/platform/nvram.c): UEFI 2.10 8.2 semantics, the guest's
 * requests, and its file (atomic, checked, locked). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/nvram.h"

#define NV EFI_VARIABLE_NON_VOLATILE
#define BS EFI_VARIABLE_BOOTSERVICE_ACCESS
#define RT EFI_VARIABLE_RUNTIME_ACCESS

static const EFI_GUID g1 = EFI_GUID_INIT(0x11111111, 0x2222, 0x3333, 1, 2, 3, 4, 5, 6, 7, 8);
static const EFI_GUID g2 = EFI_GUID_INIT(0x99999999, 0x2222, 0x3333, 1, 2, 3, 4, 5, 6, 7, 8);
static const EFI_GUID gglobal = EFI_GLOBAL_VARIABLE_GUID;

/* UCS-2 of an ASCII literal; returns its size with the NUL. */
static size_t u16(const char *a, CHAR16 *out)
{
	size_t n = strlen(a);
	for (size_t i = 0; i <= n; i++)
		out[i] = (unsigned char)a[i];
	return (n + 1) * 2;
}

static uint64_t set(struct nvram *nv, const char *name, const EFI_GUID *g, uint32_t flags, uint32_t attr,
		    const void *data, size_t size)
{
	CHAR16 n[256];
	size_t ns = u16(name, n);
	return nvram_set(nv, n, ns, g, flags, attr, data, size);
}

static uint64_t get(struct nvram *nv, const char *name, const EFI_GUID *g, uint32_t flags, uint32_t *attr,
		    void *data, size_t *size)
{
	CHAR16 n[256];
	size_t ns = u16(name, n);
	return nvram_get(nv, n, ns, g, flags, attr, data, size);
}

static struct nvram *mem_store(void)
{
	struct nvram *nv;
	char err[256];
	assert_int_equal(nvram_open(NULL, true, false, &nv, err, sizeof(err)), 0);
	return nv;
}

static void test_set_get_replace_delete(void **state)
{
	struct nvram *nv = mem_store();
	uint8_t buf[64];
	size_t sz = sizeof(buf);
	uint32_t attr = 0;
	assert_int_equal(get(nv, "Foo", &g1, 0, &attr, buf, &sz), EFI_NOT_FOUND);
	assert_int_equal(set(nv, "Foo", &g1, 0, BS, "abc", 3), EFI_SUCCESS);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "Foo", &g1, 0, &attr, buf, &sz), EFI_SUCCESS);
	assert_int_equal(sz, 3);
	assert_int_equal(attr, BS);
	assert_memory_equal(buf, "abc", 3);
	/* same name, other GUID: another variable */
	assert_int_equal(get(nv, "Foo", &g2, 0, &attr, buf, &sz), EFI_NOT_FOUND);
	/* too small a buffer: the size needed, and the attributes */
	sz = 2;
	attr = 0;
	assert_int_equal(get(nv, "Foo", &g1, 0, &attr, buf, &sz), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(sz, 3);
	assert_int_equal(attr, BS);
	/* replace */
	assert_int_equal(set(nv, "Foo", &g1, 0, BS, "hello", 5), EFI_SUCCESS);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "Foo", &g1, 0, NULL, buf, &sz), EFI_SUCCESS);
	assert_int_equal(sz, 5);
	/* attributes must match an existing variable's */
	assert_int_equal(set(nv, "Foo", &g1, 0, BS | RT, "x", 1), EFI_INVALID_PARAMETER);
	/* append */
	assert_int_equal(set(nv, "Foo", &g1, 0, BS | EFI_VARIABLE_APPEND_WRITE, "!!", 2), EFI_SUCCESS);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "Foo", &g1, 0, NULL, buf, &sz), EFI_SUCCESS);
	assert_int_equal(sz, 7);
	assert_memory_equal(buf, "hello!!", 7);
	/* appending nothing changes nothing */
	assert_int_equal(set(nv, "Foo", &g1, 0, BS | EFI_VARIABLE_APPEND_WRITE, NULL, 0), EFI_SUCCESS);
	/* delete with size 0 */
	assert_int_equal(set(nv, "Foo", &g1, 0, BS, NULL, 0), EFI_SUCCESS);
	assert_int_equal(get(nv, "Foo", &g1, 0, NULL, buf, &sz), EFI_NOT_FOUND);
	assert_int_equal(set(nv, "Foo", &g1, 0, BS, NULL, 0), EFI_NOT_FOUND);
	/* delete with attributes 0 */
	assert_int_equal(set(nv, "Bar", &g1, 0, BS | RT, "1", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "Bar", &g1, 0, 0, "1", 1), EFI_SUCCESS);
	assert_int_equal(get(nv, "Bar", &g1, 0, NULL, buf, &sz), EFI_NOT_FOUND);
	nvram_close(nv);
}

static void test_bad_parameters(void **state)
{
	struct nvram *nv = mem_store();
	CHAR16 n[8] = { 'A', 0, 'B', 0 };
	/* empty names, sizes that are odd, too short or without the NUL at the end */
	assert_int_equal(nvram_set(nv, n + 1, 2, &g1, 0, BS, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_set(nv, n, 3, &g1, 0, BS, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_set(nv, n, 6, &g1, 0, BS, "x", 1), EFI_INVALID_PARAMETER); /* interior NUL */
	CHAR16 nonul[2] = { 'A', 'B' };
	assert_int_equal(nvram_set(nv, nonul, 4, &g1, 0, BS, "x", 1), EFI_INVALID_PARAMETER);
	/* RT without BS; NV alone; unknown bits; hardware error records */
	assert_int_equal(set(nv, "X", &g1, 0, RT, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "X", &g1, 0, NV, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "X", &g1, 0, BS | 0x100, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "X", &g1, 0, NV | BS | RT | EFI_VARIABLE_HARDWARE_ERROR_RECORD, "x", 1),
			 EFI_INVALID_PARAMETER);
	/* authenticated variables: no Secure Boot yet */
	assert_int_equal(set(nv, "X", &g1, 0, NV | BS | RT | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS, "x", 1),
			 EFI_UNSUPPORTED);
	assert_int_equal(set(nv, "X", &g1, 0, NV | BS | EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS, "x", 1), EFI_UNSUPPORTED);
	assert_int_equal(set(nv, "X", &g1, 0, NV | BS | EFI_VARIABLE_ENHANCED_AUTHENTICATED_ACCESS, "x", 1),
			 EFI_UNSUPPORTED);
	/* too much data for one variable */
	static uint8_t big[FW_VAR_DATA_MAX + 1];
	assert_int_equal(set(nv, "X", &g1, 0, BS, big, sizeof(big)), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "X", &g1, 0, BS, big, FW_VAR_DATA_MAX), EFI_SUCCESS);
	assert_int_equal(set(nv, "X", &g1, 0, BS | EFI_VARIABLE_APPEND_WRITE, big, 1), EFI_OUT_OF_RESOURCES);
	/* read-only global variables: only the firmware before ExitBootServices */
	uint32_t v = 1;
	assert_int_equal(set(nv, "BootOptionSupport", &gglobal, 0, BS | RT, &v, 4), EFI_WRITE_PROTECTED);
	assert_int_equal(set(nv, "BootOptionSupport", &gglobal, FW_VAR_F_FIRMWARE, BS | RT, &v, 4), EFI_SUCCESS);
	assert_int_equal(set(nv, "BootOptionSupport", &gglobal, 0, BS | RT, NULL, 0), EFI_WRITE_PROTECTED);
	/* empty name on get: not found */
	size_t sz = 4;
	assert_int_equal(nvram_get(nv, n + 1, 2, &g1, 0, NULL, big, &sz), EFI_NOT_FOUND);
	nvram_close(nv);
}

static void test_quotas(void **state)
{
	struct nvram *nv = mem_store();
	static uint8_t data[FW_VAR_DATA_MAX];
	char name[16];
	unsigned i;
	uint64_t s = EFI_SUCCESS;
	for (i = 0; i < 100 && s == EFI_SUCCESS; i++) {
		snprintf(name, sizeof(name), "V%u", i);
		s = set(nv, name, &g1, 0, BS, data, sizeof(data));
	}
	assert_int_equal(s, EFI_OUT_OF_RESOURCES);
	assert_true(i > 1 && i <= FW_VAR_VOL_STORE / FW_VAR_DATA_MAX + 1);
	uint64_t max, rem, maxv;
	assert_int_equal(nvram_query(nv, BS, 0, &max, &rem, &maxv), EFI_SUCCESS);
	assert_int_equal(max, FW_VAR_VOL_STORE);
	assert_true(rem < FW_VAR_DATA_MAX);
	assert_int_equal(nvram_query(nv, NV | BS, 0, &max, &rem, &maxv), EFI_SUCCESS);
	assert_int_equal(max, FW_VAR_NV_STORE);
	assert_int_equal(rem, FW_VAR_NV_STORE);
	assert_true(maxv >= FW_VAR_DATA_MAX);
	assert_int_equal(nvram_query(nv, 0, 0, &max, &rem, &maxv), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_query(nv, RT, 0, &max, &rem, &maxv), EFI_INVALID_PARAMETER);
	/* time-based authenticated variables (Secure Boot's databases) share the non-volatile store; the
	 * deprecated count-based kind is not supported */
	assert_int_equal(nvram_query(nv, NV | BS | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS, 0, &max, &rem, &maxv),
			 EFI_SUCCESS);
	assert_int_equal(nvram_query(nv, NV | BS | EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS, 0, &max, &rem, &maxv),
			 EFI_UNSUPPORTED);
	/* at runtime only runtime storage can be asked about */
	/* the attributes of an append to db, as Linux's efivarfs asks before writing it */
	assert_int_equal(nvram_query(nv, NV | BS | RT | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS |
					     EFI_VARIABLE_APPEND_WRITE, 0, &max, &rem, &maxv),
			 EFI_SUCCESS);
	assert_int_equal(nvram_query(nv, EFI_VARIABLE_APPEND_WRITE, 0, &max, &rem, &maxv), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_query(nv, NV | BS, FW_VAR_F_RUNTIME, &max, &rem, &maxv), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_query(nv, NV | BS | RT, FW_VAR_F_RUNTIME, &max, &rem, &maxv), EFI_SUCCESS);
	nvram_close(nv);
}

static void test_runtime_rules(void **state)
{
	struct nvram *nv = mem_store();
	uint8_t buf[16];
	size_t sz = sizeof(buf);
	assert_int_equal(set(nv, "BsOnly", &g1, 0, NV | BS, "a", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "VolRt", &g1, 0, BS | RT, "b", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "NvRt", &g1, 0, NV | BS | RT, "c", 1), EFI_SUCCESS);
	/* after ExitBootServices: boot-services variables are gone */
	assert_int_equal(get(nv, "BsOnly", &g1, FW_VAR_F_RUNTIME, NULL, buf, &sz), EFI_NOT_FOUND);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "VolRt", &g1, FW_VAR_F_RUNTIME, NULL, buf, &sz), EFI_SUCCESS);
	/* the latch holds even when a later request forgets the flag */
	sz = sizeof(buf);
	assert_int_equal(get(nv, "BsOnly", &g1, 0, NULL, buf, &sz), EFI_NOT_FOUND);
	/* volatile runtime variables are read-only; non-volatile ones may change */
	assert_int_equal(set(nv, "VolRt", &g1, 0, BS | RT, "x", 1), EFI_WRITE_PROTECTED);
	assert_int_equal(set(nv, "NvRt", &g1, 0, NV | BS | RT, "x", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "New", &g1, 0, BS | RT, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "New2", &g1, 0, NV | BS, "x", 1), EFI_INVALID_PARAMETER);
	assert_int_equal(set(nv, "New3", &g1, 0, NV | BS | RT, "x", 1), EFI_SUCCESS);
	/* boot-services variables do not exist for the OS: nothing to delete */
	assert_int_equal(set(nv, "BsOnly", &g1, 0, 0, NULL, 0), EFI_NOT_FOUND);
	assert_int_equal(set(nv, "New3", &g1, 0, 0, NULL, 0), EFI_SUCCESS);
	/* the firmware flag no longer helps */
	uint32_t v = 0;
	assert_int_equal(set(nv, "BootCurrent", &gglobal, FW_VAR_F_FIRMWARE, BS | RT, &v, 2), EFI_WRITE_PROTECTED);
	/* a guest reset: volatile variables go, the latch too */
	nvram_vm_reset(nv);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "VolRt", &g1, 0, NULL, buf, &sz), EFI_NOT_FOUND);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "BsOnly", &g1, 0, NULL, buf, &sz), EFI_SUCCESS);
	nvram_close(nv);
}

static void test_next_name(void **state)
{
	struct nvram *nv = mem_store();
	assert_int_equal(set(nv, "A", &g1, 0, BS, "1", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "LongerName", &g2, 0, BS | RT, "2", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "C", &g1, 0, NV | BS | RT, "3", 1), EFI_SUCCESS);
	CHAR16 name[64] = { 0 }, out[64];
	EFI_GUID g = { 0 };
	size_t next = 0;
	/* the first, with a big enough buffer */
	assert_int_equal(nvram_next_name(nv, name, 2, &g, 0, sizeof(out), out, sizeof(out), &next), EFI_SUCCESS);
	assert_int_equal(next, 4);
	assert_int_equal(out[0], 'A');
	assert_true(efi_guid_eq(&g, &g1));
	/* the next one does not fit: its size is reported */
	memcpy(name, out, next);
	assert_int_equal(nvram_next_name(nv, name, next, &g, 0, 8, out, sizeof(out), &next), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(next, 22);
	assert_int_equal(nvram_next_name(nv, name, 4, &g, 0, 64, out, sizeof(out), &next), EFI_SUCCESS);
	assert_true(efi_guid_eq(&g, &g2));
	memcpy(name, out, next);
	assert_int_equal(nvram_next_name(nv, name, next, &g, 0, 64, out, sizeof(out), &next), EFI_SUCCESS);
	assert_int_equal(out[0], 'C');
	memcpy(name, out, next);
	assert_int_equal(nvram_next_name(nv, name, next, &g, 0, 64, out, sizeof(out), &next), EFI_NOT_FOUND);
	/* a name and GUID that are not a variable */
	EFI_GUID other = g2;
	assert_int_equal(nvram_next_name(nv, name, 4, &other, 0, 64, out, sizeof(out), &next), EFI_INVALID_PARAMETER);
	/* a name not terminated within the buffer the caller says it has */
	assert_int_equal(nvram_next_name(nv, name, 4, &g, 0, 2, out, sizeof(out), &next), EFI_INVALID_PARAMETER);
	/* at runtime, boot-services variables are skipped */
	name[0] = 0;
	assert_int_equal(nvram_next_name(nv, name, 2, &g, FW_VAR_F_RUNTIME, 64, out, sizeof(out), &next), EFI_SUCCESS);
	assert_int_equal(out[0], 'L');
	nvram_close(nv);
}

/* Requests as the firmware sends them, and hostile ones. */
static void test_host_requests(void **state)
{
	struct nvram *nv = mem_store();
	static uint8_t req[FW_VAR_REQ_MAX];
	struct fw_var_req *r = (struct fw_var_req *)req;
	CHAR16 n[16];
	size_t ns = u16("Hello", n);
	memset(req, 0, sizeof(req));
	r->attributes = NV | BS | RT;
	r->name_size = (uint32_t)ns;
	r->data_size = 5;
	r->guid = g1;
	memcpy(r->payload, n, ns);
	memcpy(r->payload + ns, "world", 5);
	uint32_t size = (uint32_t)(sizeof(*r) + ns + 5);
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_SET, req, size), EFI_SUCCESS);
	/* get with a capacity larger than the request: only what the request holds may be written */
	memset(r->payload + ns, 0, 5);
	r->data_size = 100;
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_GET, req, (uint32_t)(sizeof(*r) + ns + 5)), EFI_SUCCESS);
	assert_int_equal(r->data_size, 5);
	assert_memory_equal(r->payload + ns, "world", 5);
	r->data_size = 2;
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_GET, req, (uint32_t)(sizeof(*r) + ns + 2)), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(r->data_size, 5);
	/* capacity fine, but no room in the request: not BUFFER_TOO_SMALL (the caller would loop) */
	r->data_size = 10;
	assert_int_not_equal(nvram_host_call(nv, FW_OP_VAR_GET, req, (uint32_t)(sizeof(*r) + ns + 2)), EFI_SUCCESS);
	/* sizes that lie */
	r->name_size = 4000;
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_GET, req, (uint32_t)(sizeof(*r) + ns)), EFI_INVALID_PARAMETER);
	r->name_size = (uint32_t)ns;
	r->data_size = 0xffffffffu;
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_SET, req, (uint32_t)(sizeof(*r) + ns)), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_SET, req, 20), EFI_INVALID_PARAMETER);
	assert_int_equal(nvram_host_call(nv, 0x1e, req, size), EFI_UNSUPPORTED);
	/* next name */
	memset(r, 0, sizeof(*r) + 2);
	r->name_size = 2;
	r->data_size = 100;
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_NEXT_NAME, req, (uint32_t)sizeof(*r) + FW_VAR_NAME_MAX), EFI_SUCCESS);
	assert_int_equal(r->name_size, ns);
	assert_memory_equal(r->payload, n, ns);
	assert_memory_equal(req + 32, &g1, 16);
	/* query */
	struct fw_var_query_req q = { .attributes = NV | BS };
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_QUERY_INFO, &q, sizeof(q)), EFI_SUCCESS);
	assert_int_equal(q.max_storage, FW_VAR_NV_STORE);
	assert_true(q.remaining < FW_VAR_NV_STORE);
	assert_int_equal(nvram_host_call(nv, FW_OP_VAR_QUERY_INFO, &q, sizeof(q) - 8), EFI_INVALID_PARAMETER);
	nvram_close(nv);
}

static char dir[64];

static int setup_dir(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_nvram.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_file_persistence(void **state)
{
	char path[128], err[512];
	snprintf(path, sizeof(path), "%s/vm.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, false, true, &nv, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), 0);
	uint8_t uuid[16];
	memcpy(uuid, nvram_system_uuid(nv), 16);
	assert_int_equal(set(nv, "Keep", &g1, 0, NV | BS | RT, "persist", 7), EFI_SUCCESS);
	assert_int_equal(set(nv, "Gone", &g1, 0, BS | RT, "volatile", 8), EFI_SUCCESS);
	assert_int_equal(set(nv, "Del", &g1, 0, NV | BS, "x", 1), EFI_SUCCESS);
	assert_int_equal(set(nv, "Del", &g1, 0, NV | BS, NULL, 0), EFI_SUCCESS);
	nvram_close(nv);
	assert_int_equal(nvram_open(path, false, true, &nv, err, sizeof(err)), 0);
	assert_memory_equal(nvram_system_uuid(nv), uuid, 16);
	uint8_t buf[16];
	size_t sz = sizeof(buf);
	uint32_t attr;
	assert_int_equal(get(nv, "Keep", &g1, 0, &attr, buf, &sz), EFI_SUCCESS);
	assert_int_equal(attr, NV | BS | RT);
	assert_memory_equal(buf, "persist", 7);
	sz = sizeof(buf);
	assert_int_equal(get(nv, "Gone", &g1, 0, &attr, buf, &sz), EFI_NOT_FOUND);
	assert_int_equal(get(nv, "Del", &g1, 0, &attr, buf, &sz), EFI_NOT_FOUND);
	nvram_close(nv);
	/* no temporary file left behind */
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(access(tmp, F_OK), -1);
}

static void corrupt_at(const char *path, long off)
{
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	fseek(f, off, SEEK_SET);
	int c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x5a, f);
	fclose(f);
}

static void test_file_corrupt(void **state)
{
	char path[128], err[512];
	snprintf(path, sizeof(path), "%s/bad.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), 0);
	assert_int_equal(set(nv, "Keep", &g1, 0, NV | BS | RT, "persist", 7), EFI_SUCCESS);
	nvram_close(nv);
	/* a flipped data byte: the body CRC */
	corrupt_at(path, 48 + 30);
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "gen2vm firmware reset --nvram"));
	/* the file is left alone: only reset replaces it */
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), -EINVAL);
	assert_int_equal(nvram_reset_file(path, err, sizeof(err)), 0);
	assert_int_equal(nvram_open(path, false, true, &nv, err, sizeof(err)), 0);
	uint8_t buf[16];
	size_t sz = sizeof(buf);
	assert_int_equal(get(nv, "Keep", &g1, 0, NULL, buf, &sz), EFI_NOT_FOUND);
	nvram_close(nv);
	/* a foreign file */
	FILE *f = fopen(path, "wb");
	fputs("this is not an NVRAM file at all, but long enough to have a header", f);
	fclose(f);
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a gen2vm NVRAM file"));
	/* an empty file */
	f = fopen(path, "wb");
	fclose(f);
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), -EINVAL);
}

/* Every truncation and every flipped byte of a valid image is refused or loads; never crashes. */
static void test_load_buffer_mutations(void **state)
{
	char path[128], err[512];
	snprintf(path, sizeof(path), "%s/m.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, true, false, &nv, err, sizeof(err)), 0);
	assert_int_equal(set(nv, "One", &g1, 0, NV | BS | RT, "1234", 4), EFI_SUCCESS);
	assert_int_equal(set(nv, "Two", &g2, 0, NV | BS, "56", 2), EFI_SUCCESS);
	nvram_close(nv);
	uint8_t img[512];
	FILE *f = fopen(path, "rb");
	size_t len = fread(img, 1, sizeof(img), f);
	fclose(f);
	assert_int_equal(nvram_load_buffer(img, len, &nv, err, sizeof(err)), 0);
	nvram_close(nv);
	for (size_t l = 0; l < len; l++) {
		assert_int_equal(nvram_load_buffer(img, l, &nv, err, sizeof(err)), -EINVAL);
		assert_null(nv);
	}
	for (size_t i = 0; i < len; i++) {
		img[i] ^= 0x01;
		assert_int_equal(nvram_load_buffer(img, len, &nv, err, sizeof(err)), -EINVAL);
		img[i] ^= 0x01;
	}
}

static void test_lock(void **state)
{
	char path[128], err[512];
	snprintf(path, sizeof(path), "%s/lock.nvram", dir);
	struct nvram *nv;
	assert_int_equal(nvram_open(path, true, true, &nv, err, sizeof(err)), 0);
	/* another process is refused and told who holds it */
	pid_t pid = fork();
	if (pid == 0) {
		struct nvram *o;
		char e[512];
		int r = nvram_open(path, true, true, &o, e, sizeof(e));
		char want[64];
		snprintf(want, sizeof(want), "in use by pid %d", (int)getppid());
		_exit(r == -EBUSY && strstr(e, want) ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* reading without the lock works (gen2vm firmware show on a running VM) */
	pid = fork();
	if (pid == 0) {
		struct nvram *o;
		char e[512];
		int r = nvram_open(path, false, false, &o, e, sizeof(e));
		_exit(r == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	nvram_close(nv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_get_replace_delete),
		cmocka_unit_test(test_bad_parameters),
		cmocka_unit_test(test_quotas),
		cmocka_unit_test(test_runtime_rules),
		cmocka_unit_test(test_next_name),
		cmocka_unit_test(test_host_requests),
		cmocka_unit_test(test_file_persistence),
		cmocka_unit_test(test_file_corrupt),
		cmocka_unit_test(test_load_buffer_mutations),
		cmocka_unit_test(test_lock),
	};
	return cmocka_run_group_tests_name("nvram", tests, setup_dir, teardown_dir);
}
