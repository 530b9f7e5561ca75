/* Device path to text (guestlib/efi/efi_dptext.c) against the texts of UEFI 2.10 section 10.6. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "efi/efi_devpath.h"
#include "efi/efi_dptext.h"
#include "efi/efi_lib.h"
#include "gen2vm/proto/efi_bs.h"
#include "gen2vm/proto/efi_console.h"
#include "gen2vm/proto/fw.h"

static uint8_t path[1024];
static size_t plen;

static void p_reset(void)
{
	plen = 0;
}
static void p_node(uint8_t type, uint8_t sub, const void *data, size_t n)
{
	path[plen] = type;
	path[plen + 1] = sub;
	efi_put16(path + plen + 2, (uint16_t)(4 + n));
	if (n)
		memcpy(path + plen + 4, data, n);
	plen += 4 + n;
}
static void p_end(void)
{
	p_node(END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, NULL, 0);
}

static void expect8(const char *want)
{
	char out[512];
	size_t n = efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
	/* the wide form says the same */
	CHAR16 w[512];
	size_t m = efi_dp_text16((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, w, 512);
	assert_int_equal(m, n);
	for (size_t i = 0; i <= n; i++)
		assert_int_equal(w[i], (CHAR16)(unsigned char)want[i]);
}

static void test_boot_file_path(void **state)
{
	struct efi_dp_vmbus_scsi dp;
	const uint8_t inst[16] = { 0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8 };
	efi_dp_vmbus_scsi_init(&dp, inst, 0, 1);
	p_reset();
	memcpy(path, &dp, sizeof(dp) - 4); /* without its end node */
	plen = sizeof(dp) - 4;
	HARDDRIVE_DEVICE_PATH hd;
	memset(&hd, 0, sizeof(hd));
	hd.PartitionNumber = 1;
	hd.PartitionStart = 0x800;
	hd.PartitionSize = 0x1000;
	const EFI_GUID sig = EFI_GUID_INIT(0x6a4f1b2e, 0x1234, 0x5678, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44);
	memcpy(hd.Signature, &sig, 16);
	hd.MBRType = MBR_TYPE_EFI_PARTITION_TABLE_HEADER;
	hd.SignatureType = SIGNATURE_TYPE_GUID;
	p_node(MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP, (uint8_t *)&hd + 4, sizeof(hd) - 4);
	const CHAR16 file[] = u"\\EFI\\BOOT\\BOOTX64.EFI";
	p_node(MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, file, sizeof(file));
	p_end();
	expect8("VenHw(9B17E5A2-0891-42DD-B653-80B5C22809BA,78563412BC9AF0DE0102030405060708)/Scsi(0x0,0x1)/"
		"HD(1,GPT,6A4F1B2E-1234-5678-9ABC-DEF011223344,0x800,0x1000)/\\EFI\\BOOT\\BOOTX64.EFI");
}

static void test_other_nodes(void **state)
{
	p_reset();
	uint8_t acpi[8] = { 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0 };
	p_node(ACPI_DEVICE_PATH, ACPI_DP, acpi, 8);
	uint8_t pci[2] = { 0x2, 0x1f }; /* function, device */
	p_node(HARDWARE_DEVICE_PATH, HW_PCI_DP, pci, 2);
	p_end();
	expect8("PciRoot(0x0)/Pci(0x1f,0x2)");

	p_reset();
	uint8_t acpi2[8] = { 0xd0, 0x41, 0x01, 0x05, 1, 0, 0, 0 }; /* PNP0501, UID 1 */
	p_node(ACPI_DEVICE_PATH, ACPI_DP, acpi2, 8);
	p_end();
	expect8("Acpi(PNP0501,0x1)");

	/* the Linux initrd media path */
	p_reset();
	const EFI_GUID g = LINUX_EFI_INITRD_MEDIA_GUID;
	p_node(MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, &g, 16);
	p_end();
	expect8("VenMedia(5568E427-68FC-4F3D-AC74-CA555231CC68)");

	/* MBR partition, CD-ROM boot image, URI */
	p_reset();
	HARDDRIVE_DEVICE_PATH hd;
	memset(&hd, 0, sizeof(hd));
	hd.PartitionNumber = 2;
	hd.PartitionStart = 2048;
	hd.PartitionSize = 4096;
	efi_put32(hd.Signature, 0x1234abcd);
	hd.MBRType = MBR_TYPE_PCAT;
	hd.SignatureType = SIGNATURE_TYPE_MBR;
	p_node(MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP, (uint8_t *)&hd + 4, sizeof(hd) - 4);
	p_end();
	expect8("HD(2,MBR,0x1234abcd,0x800,0x1000)");

	p_reset();
	uint8_t cd[20] = { 0 };
	cd[4] = 0x10; /* start 0x10 */
	cd[12] = 0x20;
	p_node(MEDIA_DEVICE_PATH, MEDIA_CDROM_DP, cd, 20);
	p_end();
	expect8("CDROM(0x0,0x10,0x20)");

	p_reset();
	p_node(MESSAGING_DEVICE_PATH, MSG_URI_DP, "http://x/y", 10);
	p_end();
	expect8("Uri(http://x/y)");
}

static void test_generic_and_instances(void **state)
{
	p_reset();
	uint8_t d[3] = { 0x0a, 0x0b, 0xff };
	p_node(HARDWARE_DEVICE_PATH, 0x77, d, 3);
	p_node(END_DEVICE_PATH_TYPE, END_INSTANCE_DEVICE_PATH_SUBTYPE, NULL, 0);
	p_node(MESSAGING_DEVICE_PATH, 0x55, NULL, 0);
	p_node(0x42, 0x01, d, 1);
	p_end();
	expect8("HardwarePath(119,0A0BFF),Msg(85)/Path(66,1,0A)");
	/* a node of a known subtype with a wrong length gets the generic form */
	p_reset();
	p_node(MESSAGING_DEVICE_PATH, MSG_SCSI_DP, d, 3);
	p_end();
	expect8("Msg(2,0A0BFF)");
}

static void test_malformed(void **state)
{
	char out[64];
	/* no end node within max */
	p_reset();
	uint8_t scsi[4] = { 1, 0, 2, 0 };
	p_node(MESSAGING_DEVICE_PATH, MSG_SCSI_DP, scsi, 4);
	efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_string_equal(out, "Scsi(0x1,0x2)/?");
	/* a node shorter than its header */
	p_reset();
	p_node(MESSAGING_DEVICE_PATH, MSG_SCSI_DP, scsi, 4);
	path[plen] = 1, path[plen + 1] = 1, path[plen + 2] = 2, path[plen + 3] = 0;
	plen += 4;
	efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_string_equal(out, "Scsi(0x1,0x2)/?");
	/* a node longer than what is left */
	p_reset();
	p_node(MESSAGING_DEVICE_PATH, MSG_SCSI_DP, scsi, 4);
	efi_put16(path + 2, 200);
	efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_string_equal(out, "?");
	/* a file path node without its NUL stays inside the node */
	p_reset();
	const CHAR16 f[3] = { 'a', 'b', 'c' };
	p_node(MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, f, 5); /* odd length: the half character is not read */
	p_end();
	efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_string_equal(out, "ab");
}

static void test_truncation(void **state)
{
	p_reset();
	uint8_t scsi[4] = { 1, 0, 2, 0 };
	p_node(MESSAGING_DEVICE_PATH, MSG_SCSI_DP, scsi, 4);
	p_end();
	char out[6];
	size_t n = efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, out, sizeof(out));
	assert_int_equal(n, 13);
	assert_string_equal(out, "Scsi(");
	assert_int_equal(efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)path, plen, NULL, 0), 13);
	CHAR16 w[32];
	n = efi_dp_node_text16((const EFI_DEVICE_PATH_PROTOCOL *)path, w, 32);
	assert_int_equal(n, 13);
	assert_int_equal(w[13], 0);
	assert_int_equal(w[0], 'S');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boot_file_path),
		cmocka_unit_test(test_other_nodes),
		cmocka_unit_test(test_generic_and_instances),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests_name("fw_devpath_text", tests, NULL, NULL);
}
