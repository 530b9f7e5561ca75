/* Boot entries in the variable store (src/platform/bootopt.c): device entries appended and removed
 * with their drives, file entries kept, boot order editing, EFI_LOAD_OPTION parsing, device path text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_lib.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/bootopt.h"
#include "platform/nvram.h"

#define ATTR (EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS)

static const EFI_GUID gglobal = EFI_GLOBAL_VARIABLE_GUID;

static struct nvram *mem_store(void)
{
	struct nvram *nv;
	char err[256];
	assert_int_equal(nvram_open(NULL, true, false, &nv, err, sizeof(err)), 0);
	return nv;
}

/* A guest-made file entry: HD(1,GPT,...)/\EFI\debian\shimx64.efi */
static void add_file_entry(struct nvram *nv, uint16_t num, const char *desc)
{
	uint8_t dp[42 + 4 + 2 * 32 + 4];
	memset(dp, 0, sizeof(dp));
	dp[0] = MEDIA_DEVICE_PATH;
	dp[1] = MEDIA_HARDDRIVE_DP;
	efi_put16(dp + 2, 42);
	efi_put32(dp + 4, 1);
	dp[8] = 0x00;
	dp[9] = 0x08; /* start 0x800 */
	dp[16] = 0x00;
	dp[17] = 0x00;
	dp[18] = 0x10; /* size 0x100000 */
	dp[40] = MBR_TYPE_EFI_PARTITION_TABLE_HEADER;
	dp[41] = SIGNATURE_TYPE_GUID;
	const char *path = "\\EFI\\debian\\shimx64.efi";
	size_t pl = strlen(path);
	uint8_t *f = dp + 42;
	f[0] = MEDIA_DEVICE_PATH;
	f[1] = MEDIA_FILEPATH_DP;
	efi_put16(f + 2, (uint16_t)(4 + (pl + 1) * 2));
	for (size_t i = 0; i <= pl; i++)
		efi_put16(f + 4 + 2 * i, (uint16_t)(unsigned char)path[i]);
	uint8_t *end = f + 4 + (pl + 1) * 2;
	end[0] = END_DEVICE_PATH_TYPE;
	end[1] = END_ENTIRE_DEVICE_PATH_SUBTYPE;
	efi_put16(end + 2, 4);
	size_t dpl = (size_t)(end + 4 - dp), sz;
	void *opt = bootopt_build(LOAD_OPTION_ACTIVE, desc, dp, dpl, &sz);
	char name[16];
	snprintf(name, sizeof(name), "Boot%04X", num);
	assert_int_equal(nvram_set_ascii(nv, name, &gglobal, ATTR, opt, sz), EFI_SUCCESS);
	free(opt);
	/* the guest appends itself to BootOrder, as efibootmgr does by default (at the top) */
	size_t osz = 0;
	uint16_t *o = nvram_get_ascii(nv, "BootOrder", &gglobal, &osz, NULL);
	uint16_t *no = malloc(osz + 2);
	no[0] = num;
	if (o)
		memcpy(no + 1, o, osz);
	assert_int_equal(nvram_set_ascii(nv, "BootOrder", &gglobal, ATTR, no, osz + 2), EFI_SUCCESS);
	free(o);
	free(no);
}

static unsigned order_of(struct nvram *nv, uint16_t *out)
{
	size_t sz = 0;
	uint16_t *o = nvram_get_ascii(nv, "BootOrder", &gglobal, &sz, NULL);
	if (o)
		memcpy(out, o, sz);
	free(o);
	return (unsigned)(sz / 2);
}

static void test_device_entries_append_and_remove(void **state)
{
	struct nvram *nv = mem_store();
	struct bootopt_device devs[2] = { { 0, 0, false }, { 0, 1, true } };
	assert_int_equal(bootopt_sync(nv, devs, 2), 0);
	struct bootopt_list l;
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_int_equal(l.n, 2);
	assert_true(l.e[0].device && !l.e[0].dvd && l.e[0].lun == 0);
	assert_true(l.e[1].device && l.e[1].dvd && l.e[1].lun == 1);
	assert_string_equal(l.e[0].desc, "EFI SCSI Device (controller 0, LUN 0)");
	assert_string_equal(l.e[1].desc, "EFI SCSI DVD (controller 0, LUN 1)");
	/* the path is the one the firmware's storage driver builds */
	struct efi_dp_vmbus_scsi dp;
	bootopt_device_path(0, 1, &dp);
	assert_int_equal(l.e[1].dp_len, sizeof(dp));
	assert_memory_equal(l.e[1].dp, &dp, sizeof(dp));
	bootopt_list_free(&l);
	/* syncing again changes nothing */
	assert_int_equal(bootopt_sync(nv, devs, 2), 0);
	uint16_t o[16];
	assert_int_equal(order_of(nv, o), 2);
	/* the guest adds a file entry; a new disk goes to the bottom */
	add_file_entry(nv, 7, "debian");
	struct bootopt_device d3 = { 1, 2, false };
	assert_int_equal(bootopt_device_added(nv, &d3), 0);
	assert_int_equal(order_of(nv, o), 4);
	assert_int_equal(o[0], 7);
	assert_int_equal(o[1], 0);
	assert_int_equal(o[2], 1);
	assert_int_equal(o[3], 2); /* the lowest free number */
	/* removing the DVD drive removes its entry only */
	assert_int_equal(bootopt_device_removed(nv, 0, 1), 0);
	assert_int_equal(order_of(nv, o), 3);
	assert_int_equal(o[0], 7);
	assert_int_equal(o[1], 0);
	assert_int_equal(o[2], 2);
	size_t sz;
	assert_null(nvram_get_ascii(nv, "Boot0001", &gglobal, &sz, NULL));
	/* the guest takes disk 0 out of BootOrder: it stays out at the next start */
	uint16_t without0[] = { 7, 2 };
	assert_int_equal(nvram_set_ascii(nv, "BootOrder", &gglobal, ATTR, without0, sizeof(without0)), EFI_SUCCESS);
	struct bootopt_device again[2] = { { 0, 0, false }, { 1, 2, false } };
	assert_int_equal(bootopt_sync(nv, again, 2), 0);
	assert_int_equal(order_of(nv, o), 2);
	assert_memory_equal(o, without0, sizeof(without0));
	uint16_t with0[] = { 7, 0, 2 };
	assert_int_equal(nvram_set_ascii(nv, "BootOrder", &gglobal, ATTR, with0, sizeof(with0)), EFI_SUCCESS);
	/* at the next start without controller 1's disk: its entry goes, the file entry stays */
	assert_int_equal(bootopt_sync(nv, devs, 1), 0);
	assert_int_equal(order_of(nv, o), 2);
	assert_int_equal(o[0], 7);
	assert_int_equal(o[1], 0);
	nvram_close(nv);
}

/* One "EFI Network" entry per adapter, after the drives; a changed MAC replaces its entry; an adapter
 * that went takes its entry along; --first-boot-device nic[:N]. */
static void test_network_entries(void **state)
{
	struct nvram *nv = mem_store();
	struct bootopt_device disk = { 0, 0, false };
	assert_int_equal(bootopt_sync(nv, &disk, 1), 0);
	struct bootopt_nic nics[2] = { { 0, { 0x00, 0x15, 0x5d, 0x42, 0x00, 0x07 } }, { 1, { 2, 0, 0, 0, 0, 9 } } };
	assert_int_equal(bootopt_nic_sync(nv, nics, 2), 0);
	assert_int_equal(bootopt_nic_sync(nv, nics, 2), 0); /* again: no change */
	uint16_t o[16];
	assert_int_equal(order_of(nv, o), 3);
	assert_int_equal(o[0], 0);
	struct bootopt_list l;
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_true(l.e[1].nic && !l.e[1].device && l.e[1].nic_instance == 0);
	assert_string_equal(l.e[1].desc, "EFI Network (00155D420007)");
	assert_true(l.e[2].nic && l.e[2].nic_instance == 1);
	struct efi_dp_vmbus_mac dp;
	bootopt_nic_path(0, nics[0].mac, &dp);
	assert_int_equal(l.e[1].dp_len, sizeof(dp));
	assert_memory_equal(l.e[1].dp, &dp, sizeof(dp));
	char t[256];
	bootopt_dp_to_text(l.e[1].dp, l.e[1].dp_len, t, sizeof(t));
	assert_string_equal(t, "VenHw(9B17E5A2-0891-42DD-B653-80B5C22809BA,0074656E7376704E8E3167656E32766D)"
			       "/MAC(00155D420007,0x1)");
	bootopt_list_free(&l);
	char err[256];
	assert_int_equal(bootopt_set_first(nv, "nic:1", err, sizeof(err)), 0);
	assert_int_equal(order_of(nv, o), 3);
	assert_int_equal(o[0], 2);
	assert_int_equal(bootopt_set_first(nv, "nic", err, sizeof(err)), 0);
	assert_int_equal(order_of(nv, o), 3);
	assert_int_equal(o[0], 1);
	assert_int_equal(bootopt_set_first(nv, "nic:5", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "adapter 5"));
	assert_int_equal(bootopt_set_first(nv, "nic:x", err, sizeof(err)), -EINVAL);
	/* file:N does not count network entries */
	assert_int_equal(bootopt_set_first(nv, "file:1", err, sizeof(err)), -ENOENT);
	/* adapter 1 is gone and adapter 0 has a new MAC: one entry, the new one */
	nics[0].mac[5] = 8;
	assert_int_equal(bootopt_nic_sync(nv, nics, 1), 0);
	assert_int_equal(bootopt_load(nv, &l), 0);
	unsigned n_nic = 0;
	for (unsigned i = 0; i < l.n; i++)
		if (l.e[i].nic) {
			n_nic++;
			assert_string_equal(l.e[i].desc, "EFI Network (00155D420008)");
		}
	assert_int_equal(n_nic, 1);
	assert_int_equal(l.n, 2);
	bootopt_list_free(&l);
	nvram_close(nv);
}

static void test_set_first_and_order(void **state)
{
	struct nvram *nv = mem_store();
	struct bootopt_device devs[3] = { { 0, 0, false }, { 0, 1, true }, { 0, 2, false } };
	assert_int_equal(bootopt_sync(nv, devs, 3), 0);
	add_file_entry(nv, 0x10, "first file");
	add_file_entry(nv, 0x11, "second file");
	uint16_t o[16];
	char err[256];
	/* order now: 0011 0010 0000 0001 0002 */
	assert_int_equal(bootopt_set_first(nv, "dvd", err, sizeof(err)), 0);
	assert_int_equal(order_of(nv, o), 5);
	uint16_t want1[] = { 1, 0x11, 0x10, 0, 2 };
	assert_memory_equal(o, want1, sizeof(want1));
	assert_int_equal(bootopt_set_first(nv, "disk:0:2", err, sizeof(err)), 0);
	order_of(nv, o);
	uint16_t want2[] = { 2, 1, 0x11, 0x10, 0 };
	assert_memory_equal(o, want2, sizeof(want2));
	/* file:2 is the second file entry in boot order: 0010 */
	assert_int_equal(bootopt_set_first(nv, "file:2", err, sizeof(err)), 0);
	order_of(nv, o);
	uint16_t want3[] = { 0x10, 2, 1, 0x11, 0 };
	assert_memory_equal(o, want3, sizeof(want3));
	assert_int_equal(bootopt_set_first(nv, "file:3", err, sizeof(err)), -ENOENT);
	assert_int_equal(bootopt_set_first(nv, "disk:1:0", err, sizeof(err)), -ENOENT);
	assert_int_equal(bootopt_set_first(nv, "floppy", err, sizeof(err)), -EINVAL);
	assert_int_equal(bootopt_set_first(nv, "disk:0:2x", err, sizeof(err)), -EINVAL);
	/* the whole order: every entry once */
	uint16_t full[] = { 0, 1, 2, 0x10, 0x11 };
	assert_int_equal(bootopt_set_order(nv, full, 5, err, sizeof(err)), 0);
	order_of(nv, o);
	assert_memory_equal(o, full, sizeof(full));
	uint16_t missing[] = { 0, 1, 2, 0x10 };
	assert_int_equal(bootopt_set_order(nv, missing, 4, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0011"));
	uint16_t dup[] = { 0, 1, 2, 0x10, 0x11, 0 };
	assert_int_equal(bootopt_set_order(nv, dup, 6, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	uint16_t unknown[] = { 0, 1, 2, 0x10, 0x11, 0x99 };
	assert_int_equal(bootopt_set_order(nv, unknown, 6, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0099"));
	order_of(nv, o);
	assert_memory_equal(o, full, sizeof(full)); /* refused changes left it alone */
	/* pause after boot failure */
	assert_int_equal(bootopt_set_pause(nv, true), 0);
	struct bootopt_list l;
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_int_equal(l.pause_after_failure, 1);
	bootopt_list_free(&l);
	assert_int_equal(bootopt_set_pause(nv, false), 0);
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_int_equal(l.pause_after_failure, 0);
	assert_false(l.net_ipv6); /* NetworkBootPreferredProtocol unset: IPv4 */
	bootopt_list_free(&l);
	assert_int_equal(bootopt_set_net_protocol(nv, true), 0);
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_true(l.net_ipv6);
	bootopt_list_free(&l);
	assert_int_equal(bootopt_set_net_protocol(nv, false), 0);
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_false(l.net_ipv6);
	bootopt_list_free(&l);
	nvram_close(nv);
}

static void test_parse_malformed(void **state)
{
	struct bootopt_entry e;
	uint8_t b[64] = { 1, 0, 0, 0, 8, 0, 'A', 0, 0, 0, 0x7f, 0xff, 4, 0 };
	assert_int_equal(bootopt_parse(b, 14, &e), -EINVAL); /* 8 bytes of path, 4 there */
	efi_put16(b + 4, 4);
	assert_int_equal(bootopt_parse(b, 14, &e), 0);
	assert_string_equal(e.desc, "A");
	free(e.dp);
	assert_int_equal(bootopt_parse(b, 7, &e), -EINVAL); /* no NUL */
	assert_int_equal(bootopt_parse(b, 3, &e), -EINVAL);
	/* a malformed Boot#### in the store is listed, not fatal */
	struct nvram *nv = mem_store();
	assert_int_equal(nvram_set_ascii(nv, "Boot0003", &gglobal, ATTR, b, 7), EFI_SUCCESS);
	struct bootopt_list l;
	assert_int_equal(bootopt_load(nv, &l), 0);
	assert_int_equal(l.n, 1);
	assert_non_null(strstr(l.e[0].desc, "malformed"));
	bootopt_list_free(&l);
	nvram_close(nv);
}

static void test_dp_text(void **state)
{
	char t[512];
	struct efi_dp_vmbus_scsi dp;
	bootopt_device_path(0, 3, &dp);
	bootopt_dp_to_text((const uint8_t *)&dp, sizeof(dp), t, sizeof(t));
	assert_string_equal(t, "VenHw(9B17E5A2-0891-42DD-B653-80B5C22809BA,00005E5C6567326E766D534353490000)/Scsi(0x0,0x3)");
	uint8_t cd[24 + 4] = { MEDIA_DEVICE_PATH, MEDIA_CDROM_DP, 24, 0, 1, 0, 0, 0, 0x10 };
	cd[24] = END_DEVICE_PATH_TYPE;
	cd[25] = END_ENTIRE_DEVICE_PATH_SUBTYPE;
	cd[26] = 4;
	bootopt_dp_to_text(cd, sizeof(cd), t, sizeof(t));
	assert_string_equal(t, "CDROM(0x1,0x10,0x0)");
	uint8_t odd[8] = { 0x03, 0x0b, 8, 0, 0xaa, 0xbb, 0xcc, 0xdd };
	bootopt_dp_to_text(odd, sizeof(odd), t, sizeof(t));
	assert_string_equal(t, "Msg(11,AABBCCDD)/?"); /* no end node: malformed tail */
	uint8_t bad[6] = { 0x03, 0x0b, 80, 0 };
	bootopt_dp_to_text(bad, sizeof(bad), t, sizeof(t));
	assert_string_equal(t, "?");
	/* a tiny buffer truncates, never overflows */
	bootopt_device_path(0, 3, &dp);
	bootopt_dp_to_text((const uint8_t *)&dp, sizeof(dp), t, 10);
	assert_true(strlen(t) < 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_device_entries_append_and_remove),
		cmocka_unit_test(test_network_entries),
		cmocka_unit_test(test_set_first_and_order),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_dp_text),
	};
	return cmocka_run_group_tests_name("bootopt", tests, NULL, NULL);
}
