/* GPT, MBR and El Torito discovery (guestlib/efi/efi_part.c) over in-memory disks: tables written
 * here (CRCs by zlib), corrupted, and an ISO made by xorriso. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "efi/efi_lib.h"
#include "efi/efi_part.h"

struct mdisk {
	uint8_t *data;
	uint32_t bs;
	uint64_t blocks;
	int fail_reads;
	int reads;
};

static EFI_STATUS md_read(void *ctx, uint64_t lba, uint32_t count, void *buf)
{
	struct mdisk *d = ctx;
	d->reads++;
	if (d->fail_reads)
		return EFI_DEVICE_ERROR;
	assert_true(lba <= d->blocks && count <= d->blocks - lba); /* the parser stays in bounds */
	memcpy(buf, d->data + lba * d->bs, (size_t)count * d->bs);
	return EFI_SUCCESS;
}

static struct efi_blk md_blk(struct mdisk *d)
{
	return (struct efi_blk){ .block_size = d->bs, .num_blocks = d->blocks, .read = md_read, .ctx = d };
}

static const EFI_GUID esp = EFI_PART_TYPE_EFI_SYSTEM_PART_GUID;
static const EFI_GUID linux_fs = EFI_GUID_INIT(0x0fc63daf, 0x8483, 0x4772, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4);

static void gpt_write_header(struct mdisk *d, uint64_t my, uint64_t alt, uint64_t entries, uint32_t ecrc)
{
	struct gpt_header h = { .signature = GPT_HEADER_SIGNATURE, .revision = GPT_HEADER_REVISION_1_0,
				.header_size = 92, .my_lba = my, .alternate_lba = alt, .first_usable_lba = 34,
				.last_usable_lba = d->blocks - 34, .partition_entry_lba = entries,
				.number_of_partition_entries = 128, .size_of_partition_entry = 128,
				.partition_entry_array_crc32 = ecrc };
	h.disk_guid.Data1 = 0x1234;
	h.header_crc32 = (uint32_t)crc32(0, (void *)&h, 92);
	memcpy(d->data + my * d->bs, &h, sizeof(h));
}

/* 4 MiB disk (512-byte blocks): ESP at 2048..4095, Linux at 4096..8000, entry 5 unused between. */
static struct mdisk *make_gpt(uint32_t bs)
{
	struct mdisk *d = calloc(1, sizeof(*d));
	d->bs = bs;
	d->blocks = (4u << 20) / bs;
	d->data = calloc(1, 4u << 20);
	struct mbr *m = (void *)d->data;
	m->partition[0] = (struct mbr_partition){ .os_type = MBR_TYPE_EFI_PROTECTIVE, .starting_lba = 1,
						  .size_in_lba = (uint32_t)d->blocks - 1 };
	m->signature = MBR_SIGNATURE;
	struct gpt_entry e[128];
	memset(e, 0, sizeof(e));
	e[0].partition_type_guid = esp;
	e[0].unique_partition_guid.Data1 = 0xaaaa;
	e[0].starting_lba = 40;
	e[0].ending_lba = 99;
	e[3].partition_type_guid = linux_fs;
	e[3].starting_lba = 100;
	e[3].ending_lba = d->blocks - 34;
	e[3].attributes = 1ull << 60;
	uint32_t ecrc = (uint32_t)crc32(0, (void *)e, sizeof(e));
	memcpy(d->data + 2 * bs, e, sizeof(e));
	uint64_t alt_entries = d->blocks - 1 - sizeof(e) / bs;
	memcpy(d->data + alt_entries * bs, e, sizeof(e));
	gpt_write_header(d, 1, d->blocks - 1, 2, ecrc);
	gpt_write_header(d, d->blocks - 1, 1, alt_entries, ecrc);
	return d;
}

static void free_disk(struct mdisk *d)
{
	free(d->data);
	free(d);
}

static void check_gpt_parts(struct mdisk *d, bool want_alt)
{
	struct efi_blk b = md_blk(d);
	static uint8_t scratch[8192];
	struct efi_part p[8];
	uint32_t n = 99;
	bool alt = !want_alt;
	assert_int_equal(efi_gpt_scan(&b, scratch, sizeof(scratch), p, 8, &n, &alt), EFI_SUCCESS);
	assert_int_equal(alt, want_alt);
	assert_int_equal(n, 2);
	assert_int_equal(p[0].kind, EFI_PART_GPT);
	assert_int_equal(p[0].number, 1);
	assert_int_equal(p[0].start, 40);
	assert_int_equal(p[0].blocks, 60);
	assert_true(efi_guid_eq(&p[0].type_guid, &esp));
	assert_int_equal(efi_le32(p[0].signature), 0xaaaa);
	assert_int_equal(p[1].number, 4);
	assert_int_equal(p[1].start, 100);
	assert_int_equal(p[1].attributes, 1ull << 60);
	/* The generic scan goes through the protective MBR to the same result. */
	assert_int_equal(efi_part_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_SUCCESS);
	assert_int_equal(n, 2);
	HARDDRIVE_DEVICE_PATH hd;
	assert_int_equal(efi_part_devpath_node(&p[0], &hd), sizeof(hd));
	assert_int_equal(hd.Header.Type, MEDIA_DEVICE_PATH);
	assert_int_equal(hd.Header.SubType, MEDIA_HARDDRIVE_DP);
	assert_int_equal(hd.Header.Length[0], 42);
	assert_int_equal(hd.PartitionNumber, 1);
	assert_int_equal(hd.SignatureType, SIGNATURE_TYPE_GUID);
	assert_int_equal(hd.MBRType, 2);
}

static void test_gpt(void **state)
{
	struct mdisk *d = make_gpt(512);
	check_gpt_parts(d, false);
	/* Small scratch: entries are streamed one block at a time, same answer. */
	struct efi_blk b = md_blk(d);
	uint8_t small[512];
	struct efi_part p[1];
	uint32_t n;
	assert_int_equal(efi_gpt_scan(&b, small, sizeof(small), p, 1, &n, NULL), EFI_SUCCESS);
	assert_int_equal(n, 1); /* only as many as fit */
	assert_int_equal(efi_gpt_scan(&b, small, 100, p, 1, &n, NULL), EFI_UNSUPPORTED);
	d->fail_reads = 1;
	assert_int_equal(efi_gpt_scan(&b, small, sizeof(small), p, 1, &n, NULL), EFI_DEVICE_ERROR);
	free_disk(d);
	d = make_gpt(4096); /* 4Kn disk */
	check_gpt_parts(d, false);
	free_disk(d);
}

static void test_gpt_alternate(void **state)
{
	/* Primary header CRC broken. */
	struct mdisk *d = make_gpt(512);
	d->data[512 + 40] ^= 1;
	check_gpt_parts(d, true);
	free_disk(d);
	/* Primary entry array broken (header fine, array CRC mismatch). */
	d = make_gpt(512);
	d->data[2 * 512 + 33] ^= 0x80;
	check_gpt_parts(d, true);
	free_disk(d);
	/* Primary signature gone. */
	d = make_gpt(512);
	memset(d->data + 512, 0, 8);
	check_gpt_parts(d, true);
	free_disk(d);
	/* Both broken: no table. */
	d = make_gpt(512);
	d->data[512 + 40] ^= 1;
	d->data[(d->blocks - 1) * 512 + 40] ^= 1;
	struct efi_blk b = md_blk(d);
	uint8_t scratch[4096];
	struct efi_part p[4];
	uint32_t n = 7;
	assert_int_equal(efi_gpt_scan(&b, scratch, sizeof(scratch), p, 4, &n, NULL), EFI_NOT_FOUND);
	assert_int_equal(n, 0);
	free_disk(d);
}

/* Headers with a valid CRC but hostile fields are refused. */
static void test_gpt_hostile_header(void **state)
{
	static const struct { size_t off; uint64_t val; int width; } bad[] = {
		{ offsetof(struct gpt_header, header_size), 8000, 4 },
		{ offsetof(struct gpt_header, header_size), 10, 4 },
		{ offsetof(struct gpt_header, my_lba), 2, 8 },
		{ offsetof(struct gpt_header, last_usable_lba), 1ull << 40, 8 },
		{ offsetof(struct gpt_header, first_usable_lba), 1, 8 },
		{ offsetof(struct gpt_header, partition_entry_lba), (1ull << 62), 8 },
		{ offsetof(struct gpt_header, partition_entry_lba), 40, 8 }, /* inside the usable area */
		{ offsetof(struct gpt_header, number_of_partition_entries), 0xffffffff, 4 },
		{ offsetof(struct gpt_header, number_of_partition_entries), 0, 4 },
		{ offsetof(struct gpt_header, size_of_partition_entry), 0x80000000u, 4 },
		{ offsetof(struct gpt_header, size_of_partition_entry), 129, 4 },
		{ offsetof(struct gpt_header, size_of_partition_entry), 64, 4 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mdisk *d = make_gpt(512);
		for (int which = 0; which < 2; which++) {
			uint8_t *h = d->data + (which ? (d->blocks - 1) : 1) * 512;
			memcpy(h + bad[i].off, &bad[i].val, bad[i].width);
			memset(h + 16, 0, 4);
			uint32_t c = (uint32_t)crc32(0, h, 92);
			memcpy(h + 16, &c, 4);
		}
		struct efi_blk b = md_blk(d);
		uint8_t scratch[4096];
		struct efi_part p[4];
		uint32_t n;
		EFI_STATUS st = efi_gpt_scan(&b, scratch, sizeof(scratch), p, 4, &n, NULL);
		if (st != EFI_NOT_FOUND)
			fail_msg("case %zu: %#llx", i, (unsigned long long)st);
		free_disk(d);
	}
}

static void put_part(uint8_t *sector, int i, uint8_t type, uint32_t start, uint32_t size)
{
	struct mbr_partition p = { .os_type = type, .starting_lba = start, .size_in_lba = size };
	memcpy(sector + 446 + 16 * i, &p, 16);
	sector[510] = 0x55;
	sector[511] = 0xaa;
}

static void test_mbr(void **state)
{
	struct mdisk d = { .bs = 512, .blocks = 8192 };
	d.data = calloc(1, 8192 * 512);
	efi_put32(d.data + 440, 0xcafef00d);
	put_part(d.data, 0, 0x0c, 2048, 1000);
	put_part(d.data, 1, MBR_TYPE_EXTENDED_LBA, 4000, 4000);
	/* EBR chain: logical at 4000+63, next EBR at ext+2000 with one more logical; then a loop back. */
	put_part(d.data + 4000 * 512, 0, 0x83, 63, 500);
	put_part(d.data + 4000 * 512, 1, MBR_TYPE_EXTENDED_CHS, 2000, 1000);
	put_part(d.data + 6000 * 512, 0, 0x83, 63, 900);
	put_part(d.data + 6000 * 512, 1, MBR_TYPE_EXTENDED_CHS, 0, 1000); /* backwards: ends the chain */
	struct efi_blk b = md_blk(&d);
	uint8_t scratch[4096];
	struct efi_part p[8];
	uint32_t n;
	assert_int_equal(efi_part_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_SUCCESS);
	assert_int_equal(n, 3);
	assert_int_equal(p[0].number, 1);
	assert_int_equal(p[0].start, 2048);
	assert_int_equal(p[0].mbr_type, 0x0c);
	assert_int_equal(efi_le32(p[0].signature), 0xcafef00d);
	assert_int_equal(p[1].number, 5);
	assert_int_equal(p[1].start, 4063);
	assert_int_equal(p[2].number, 6);
	assert_int_equal(p[2].start, 6063);
	assert_int_equal(p[2].blocks, 900);
	HARDDRIVE_DEVICE_PATH hd;
	efi_part_devpath_node(&p[0], &hd);
	assert_int_equal(hd.SignatureType, SIGNATURE_TYPE_MBR);
	assert_int_equal(hd.MBRType, MBR_TYPE_PCAT);

	/* Insane tables are not MBRs: a partition past the end, overlap, bad boot flag. */
	put_part(d.data, 2, 0x83, 8000, 500);
	assert_int_equal(efi_mbr_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_NOT_FOUND);
	put_part(d.data, 2, 0x83, 2500, 100);
	assert_int_equal(efi_mbr_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_NOT_FOUND);
	put_part(d.data, 2, 0, 0, 0);
	d.data[446] = 0x12;
	assert_int_equal(efi_mbr_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_NOT_FOUND);
	d.data[446] = 0;
	d.data[510] = 0;
	assert_int_equal(efi_part_scan(&b, scratch, sizeof(scratch), p, 8, &n), EFI_NOT_FOUND);
	free(d.data);
}

static void test_eltorito_xorriso(void **state)
{
	char dir[] = "/tmp/g2vm-eltorito-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && mkdir -p root/boot && head -c 1474560 /dev/urandom > root/boot/efi.img && "
		 "echo hello > root/readme && xorriso -as mkisofs -quiet -o disk.iso -e boot/efi.img "
		 "-no-emul-boot root >/dev/null 2>&1", dir);
	if (system(cmd)) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
		skip();
	}
	snprintf(cmd, sizeof(cmd), "%s/disk.iso", dir);
	FILE *f = fopen(cmd, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	struct mdisk d = { .bs = 2048, .blocks = (uint64_t)size / 2048, .data = malloc((size_t)size) };
	assert_int_equal(fread(d.data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	struct efi_blk b = md_blk(&d);
	uint8_t scratch[2048];
	struct efi_part p[4];
	uint32_t n;
	assert_int_equal(efi_part_scan(&b, scratch, sizeof(scratch), p, 4, &n), EFI_SUCCESS);
	assert_int_equal(n, 1);
	assert_int_equal(p[0].kind, EFI_PART_ELTORITO);
	assert_int_equal(p[0].number, 0);
	assert_int_equal(p[0].media_type, ELTORITO_MEDIA_NOEMU);
	assert_int_equal(p[0].blocks, 1474560 / 2048);
	/* The partition holds the file's bytes. */
	snprintf(cmd, sizeof(cmd), "%s/root/boot/efi.img", dir);
	f = fopen(cmd, "rb");
	uint8_t head[2048];
	assert_int_equal(fread(head, 1, sizeof(head), f), sizeof(head));
	fclose(f);
	assert_memory_equal(d.data + p[0].start * 2048, head, sizeof(head));
	CDROM_DEVICE_PATH cd;
	assert_int_equal(efi_part_devpath_node(&p[0], &cd), sizeof(cd));
	assert_int_equal(cd.Header.SubType, MEDIA_CDROM_DP);
	assert_int_equal(cd.PartitionStart, p[0].start);

	/* A broken validation checksum hides the catalog. */
	uint32_t cat = efi_le32(d.data + 17 * 2048 + 0x47);
	d.data[cat * 2048 + 28] ^= 1;
	assert_int_equal(efi_eltorito_scan(&b, scratch, sizeof(scratch), p, 4, &n), EFI_NOT_FOUND);
	d.data[cat * 2048 + 28] ^= 1;
	/* A catalog pointer past the end of the disk. */
	efi_put32(d.data + 17 * 2048 + 0x47, 0xfffffff0u);
	assert_int_equal(efi_eltorito_scan(&b, scratch, sizeof(scratch), p, 4, &n), EFI_NOT_FOUND);
	free(d.data);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpt),
		cmocka_unit_test(test_gpt_alternate),
		cmocka_unit_test(test_gpt_hostile_header),
		cmocka_unit_test(test_mbr),
		cmocka_unit_test(test_eltorito_xorriso),
	};
	return cmocka_run_group_tests_name("efi_part", tests, NULL, NULL);
}
