/* Handle/protocol database (guestlib/efi/efi_handle.c): the protocol handler services' semantics
 * and error codes as UEFI 2.10 section 7.3 states them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_handle.h"
#include "efi/efi_lib.h"

static const EFI_GUID g_a = EFI_GUID_INIT(0x11111111, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8);
static const EFI_GUID g_b = EFI_GUID_INIT(0x22222222, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8);
static const EFI_GUID g_dp = EFI_DEVICE_PATH_PROTOCOL_GUID;

struct ctx {
	struct efi_db db;
	int signals;
	int disconnects;
	bool release_on_disconnect;
	EFI_HANDLE img;
};

static void *t_alloc(void *c, size_t n) { return malloc(n); }
static void t_free(void *c, void *p) { free(p); }
static void t_signal(void *c, EFI_EVENT e) { ((struct ctx *)c)->signals++; }

/* DisconnectController as a driver's Stop() would do it: close its BY_DRIVER open. */
static EFI_STATUS t_disconnect(void *c, EFI_HANDLE controller, EFI_HANDLE agent)
{
	struct ctx *x = c;
	x->disconnects++;
	if (!x->release_on_disconnect)
		return EFI_DEVICE_ERROR;
	efi_db_close(&x->db, controller, &g_a, agent, controller);
	return EFI_SUCCESS;
}

static int setup(void **state)
{
	struct ctx *x = calloc(1, sizeof(*x));
	struct efi_db_ops ops = { t_alloc, t_free, t_disconnect, t_signal, x };
	efi_db_init(&x->db, &ops);
	static int img_iface;
	assert_int_equal(efi_db_install(&x->db, &x->img, &g_b, &img_iface), EFI_SUCCESS);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *x = *state;
	efi_db_destroy(&x->db);
	free(x);
	return 0;
}

static void test_install_uninstall(void **state)
{
	struct ctx *x = *state;
	int ia, ib;
	EFI_HANDLE h = NULL;
	assert_int_equal(efi_db_install(&x->db, NULL, &g_a, &ia), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_install(&x->db, &h, NULL, &ia), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_install(&x->db, &h, &g_a, &ia), EFI_SUCCESS);
	assert_non_null(h);
	assert_int_equal(efi_db_install(&x->db, &h, &g_a, &ib), EFI_INVALID_PARAMETER); /* already there */
	assert_int_equal(efi_db_install(&x->db, &h, &g_b, &ib), EFI_SUCCESS);
	EFI_HANDLE bogus = (EFI_HANDLE)&ia;
	assert_int_equal(efi_db_install(&x->db, &bogus, &g_b, &ib), EFI_INVALID_PARAMETER);

	void *p;
	assert_int_equal(efi_db_handle_protocol(&x->db, h, &g_a, &p, x->img), EFI_SUCCESS);
	assert_ptr_equal(p, &ia);
	assert_int_equal(efi_db_handle_protocol(&x->db, bogus, &g_a, &p, x->img), EFI_INVALID_PARAMETER);

	EFI_GUID **list;
	UINTN n;
	assert_int_equal(efi_db_protocols_per_handle(&x->db, h, &list, &n), EFI_SUCCESS);
	assert_int_equal(n, 2);
	assert_true(efi_guid_eq(list[0], &g_a));
	assert_true(efi_guid_eq(list[1], &g_b));
	free(list);

	assert_int_equal(efi_db_uninstall(&x->db, h, &g_a, &ib), EFI_NOT_FOUND); /* wrong interface */
	assert_int_equal(efi_db_uninstall(&x->db, h, &g_a, &ia), EFI_SUCCESS);
	assert_int_equal(efi_db_uninstall(&x->db, h, &g_a, &ia), EFI_NOT_FOUND);
	assert_true(efi_db_handle_valid(&x->db, h));
	assert_int_equal(efi_db_uninstall(&x->db, h, &g_b, &ib), EFI_SUCCESS);
	assert_false(efi_db_handle_valid(&x->db, h)); /* the last protocol took the handle with it */
	assert_int_equal(efi_db_handle_protocol(&x->db, h, &g_b, &p, x->img), EFI_INVALID_PARAMETER);
}

static void test_reinstall_and_notify(void **state)
{
	struct ctx *x = *state;
	int ia, ia2, ev;
	void *reg, *p;
	assert_int_equal(efi_db_register_notify(&x->db, &g_a, &ev, &reg), EFI_SUCCESS);
	EFI_HANDLE h = NULL, h2 = NULL;
	assert_int_equal(efi_db_install(&x->db, &h, &g_a, &ia), EFI_SUCCESS);
	assert_int_equal(x->signals, 1);
	assert_int_equal(efi_db_reinstall(&x->db, h, &g_a, &ia2, &ia), EFI_NOT_FOUND);
	assert_int_equal(efi_db_reinstall(&x->db, h, &g_a, &ia, &ia2), EFI_SUCCESS);
	assert_int_equal(x->signals, 2);
	assert_int_equal(efi_db_install(&x->db, &h2, &g_a, &ia), EFI_SUCCESS);
	/* Each notification hands out the handles in order, once each. */
	EFI_HANDLE got;
	UINTN size = sizeof(got);
	assert_int_equal(efi_db_locate_handle(&x->db, ByRegisterNotify, NULL, reg, &size, &got), EFI_SUCCESS);
	assert_ptr_equal(got, h);
	assert_int_equal(efi_db_locate_protocol(&x->db, &g_a, reg, &p), EFI_SUCCESS);
	assert_ptr_equal(p, &ia2); /* h again, after the reinstall */
	assert_int_equal(efi_db_locate_protocol(&x->db, &g_a, reg, &p), EFI_SUCCESS);
	assert_ptr_equal(p, &ia);
	assert_int_equal(efi_db_locate_protocol(&x->db, &g_a, reg, &p), EFI_NOT_FOUND);
	assert_null(p);
	size = sizeof(got);
	assert_int_equal(efi_db_locate_handle(&x->db, ByRegisterNotify, NULL, &ia, &size, &got), EFI_INVALID_PARAMETER);
}

static void test_open_attributes(void **state)
{
	struct ctx *x = *state;
	int ia, d1i, d2i;
	EFI_HANDLE h = NULL, drv1 = NULL, drv2 = NULL;
	assert_int_equal(efi_db_install(&x->db, &h, &g_a, &ia), EFI_SUCCESS);
	assert_int_equal(efi_db_install(&x->db, &drv1, &g_b, &d1i), EFI_SUCCESS);
	assert_int_equal(efi_db_install(&x->db, &drv2, &g_b, &d2i), EFI_SUCCESS);
	void *p = (void *)1;

	assert_int_equal(efi_db_open(&x->db, h, &g_a, NULL, drv1, h, EFI_OPEN_PROTOCOL_TEST_PROTOCOL), EFI_SUCCESS);
	assert_int_equal(efi_db_open(&x->db, h, &g_b, NULL, drv1, h, EFI_OPEN_PROTOCOL_TEST_PROTOCOL), EFI_UNSUPPORTED);
	assert_int_equal(efi_db_open(&x->db, h, &g_b, &p, drv1, h, EFI_OPEN_PROTOCOL_GET_PROTOCOL), EFI_UNSUPPORTED);
	assert_null(p);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, NULL, drv1, h, EFI_OPEN_PROTOCOL_GET_PROTOCOL), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, 0x40), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, NULL, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, NULL, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_BY_CHILD_CONTROLLER),
			 EFI_INVALID_PARAMETER); /* handle == controller */

	/* BY_DRIVER: once per driver; a second driver is refused. */
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_SUCCESS);
	assert_ptr_equal(p, &ia);
	p = NULL;
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_ALREADY_STARTED);
	assert_ptr_equal(p, &ia);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_ACCESS_DENIED);
	/* Informational opens always work. */
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_GET_PROTOCOL), EFI_SUCCESS);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_GET_PROTOCOL), EFI_SUCCESS);

	EFI_OPEN_PROTOCOL_INFORMATION_ENTRY *e;
	UINTN n;
	assert_int_equal(efi_db_open_info(&x->db, h, &g_a, &e, &n), EFI_SUCCESS);
	assert_int_equal(n, 2);
	assert_ptr_equal(e[0].AgentHandle, drv1);
	assert_int_equal(e[0].Attributes, EFI_OPEN_PROTOCOL_BY_DRIVER);
	assert_int_equal(e[0].OpenCount, 1);
	assert_ptr_equal(e[1].AgentHandle, drv2);
	assert_int_equal(e[1].Attributes, EFI_OPEN_PROTOCOL_GET_PROTOCOL);
	assert_int_equal(e[1].OpenCount, 2);
	free(e);
	assert_int_equal(efi_db_open_info(&x->db, h, &g_b, &e, &n), EFI_NOT_FOUND);

	/* Uninstall with a BY_DRIVER opener that will not let go: EFI_ACCESS_DENIED, nothing changes. */
	x->release_on_disconnect = false;
	assert_int_equal(efi_db_uninstall(&x->db, h, &g_a, &ia), EFI_ACCESS_DENIED);
	assert_true(x->disconnects > 0);
	/* EXCLUSIVE by drv2: drv1 must be disconnected first, which it now accepts. */
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE),
			 EFI_ACCESS_DENIED);
	x->release_on_disconnect = true;
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE),
			 EFI_SUCCESS);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv2, h, EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE),
			 EFI_ALREADY_STARTED);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_ACCESS_DENIED);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_EXCLUSIVE), EFI_ACCESS_DENIED);

	/* CloseProtocol. */
	assert_int_equal(efi_db_close(&x->db, h, &g_a, drv1, h), EFI_NOT_FOUND);
	assert_int_equal(efi_db_close(&x->db, h, &g_a, NULL, h), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_close(&x->db, h, &g_a, drv2, (EFI_HANDLE)&ia), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_close(&x->db, h, &g_b, drv2, h), EFI_NOT_FOUND);
	assert_int_equal(efi_db_close(&x->db, h, &g_a, drv2, h), EFI_SUCCESS); /* both drv2 opens */
	assert_int_equal(efi_db_open_info(&x->db, h, &g_a, &e, &n), EFI_SUCCESS);
	assert_int_equal(n, 0);
	free(e);
	assert_int_equal(efi_db_open(&x->db, h, &g_a, &p, drv1, h, EFI_OPEN_PROTOCOL_BY_DRIVER), EFI_SUCCESS);
	assert_int_equal(efi_db_uninstall(&x->db, h, &g_a, &ia), EFI_SUCCESS); /* drv1 let go */
}

static void test_locate(void **state)
{
	struct ctx *x = *state;
	int ia, ib;
	EFI_HANDLE h1 = NULL, h2 = NULL, buf[4];
	assert_int_equal(efi_db_install(&x->db, &h1, &g_a, &ia), EFI_SUCCESS);
	assert_int_equal(efi_db_install(&x->db, &h2, &g_a, &ib), EFI_SUCCESS);
	UINTN size = 0;
	assert_int_equal(efi_db_locate_handle(&x->db, ByProtocol, &g_a, NULL, &size, NULL), EFI_BUFFER_TOO_SMALL);
	assert_int_equal(size, 2 * sizeof(EFI_HANDLE));
	size = sizeof(EFI_HANDLE);
	assert_int_equal(efi_db_locate_handle(&x->db, ByProtocol, &g_a, NULL, &size, buf), EFI_BUFFER_TOO_SMALL);
	size = sizeof(buf);
	assert_int_equal(efi_db_locate_handle(&x->db, ByProtocol, &g_a, NULL, &size, buf), EFI_SUCCESS);
	assert_int_equal(size, 2 * sizeof(EFI_HANDLE));
	assert_ptr_equal(buf[0], h1);
	assert_ptr_equal(buf[1], h2);
	size = sizeof(buf);
	assert_int_equal(efi_db_locate_handle(&x->db, AllHandles, NULL, NULL, &size, buf), EFI_SUCCESS);
	assert_int_equal(size, 3 * sizeof(EFI_HANDLE)); /* the image handle too */
	assert_int_equal(efi_db_locate_handle(&x->db, ByProtocol, NULL, NULL, &size, buf), EFI_INVALID_PARAMETER);
	assert_int_equal(efi_db_locate_handle(&x->db, 7, &g_a, NULL, &size, buf), EFI_INVALID_PARAMETER);
	static const EFI_GUID none = EFI_GUID_INIT(0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	assert_int_equal(efi_db_locate_handle(&x->db, ByProtocol, &none, NULL, &size, buf), EFI_NOT_FOUND);

	EFI_HANDLE *hb;
	UINTN n;
	assert_int_equal(efi_db_locate_handle_buffer(&x->db, ByProtocol, &g_a, NULL, &n, &hb), EFI_SUCCESS);
	assert_int_equal(n, 2);
	assert_ptr_equal(hb[1], h2);
	free(hb);
	assert_int_equal(efi_db_locate_handle_buffer(&x->db, ByProtocol, &none, NULL, &n, &hb), EFI_NOT_FOUND);
	assert_int_equal(efi_db_locate_handle_buffer(&x->db, ByProtocol, &g_a, NULL, NULL, &hb), EFI_INVALID_PARAMETER);

	void *p;
	assert_int_equal(efi_db_locate_protocol(&x->db, &g_a, NULL, &p), EFI_SUCCESS);
	assert_ptr_equal(p, &ia);
	assert_int_equal(efi_db_locate_protocol(&x->db, &none, NULL, &p), EFI_NOT_FOUND);
	assert_int_equal(efi_db_locate_protocol(&x->db, &g_a, NULL, NULL), EFI_INVALID_PARAMETER);
}

/* Device paths: VenHw(guid)/Scsi(0,0) for the disk, plus HD(1,...) for a partition. */
struct dp_disk {
	VENDOR_DEVICE_PATH ven;
	SCSI_DEVICE_PATH scsi;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed));
struct dp_part {
	VENDOR_DEVICE_PATH ven;
	SCSI_DEVICE_PATH scsi;
	HARDDRIVE_DEVICE_PATH hd;
	EFI_DEVICE_PATH_PROTOCOL end;
} __attribute__((packed));

static void fill_disk(struct dp_disk *d)
{
	memset(d, 0, sizeof(*d));
	d->ven.Header = (EFI_DEVICE_PATH_PROTOCOL){ HARDWARE_DEVICE_PATH, HW_VENDOR_DP, { 20, 0 } };
	d->ven.Guid = g_a;
	d->scsi.Header = (EFI_DEVICE_PATH_PROTOCOL){ MESSAGING_DEVICE_PATH, MSG_SCSI_DP, { 8, 0 } };
	d->end = (EFI_DEVICE_PATH_PROTOCOL){ END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { 4, 0 } };
}

static void test_device_paths(void **state)
{
	struct ctx *x = *state;
	static struct dp_disk disk;
	static struct dp_part part, query;
	fill_disk(&disk);
	memset(&part, 0, sizeof(part));
	part.ven = disk.ven;
	part.scsi = disk.scsi;
	part.hd.Header = (EFI_DEVICE_PATH_PROTOCOL){ MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP, { 42, 0 } };
	part.hd.PartitionNumber = 1;
	part.end = disk.end;
	query = part;
	int blk1, blk2;
	EFI_HANDLE hd = NULL, hp = NULL;
	const EFI_GUID *g[2] = { &g_dp, &g_a };
	void *i1[2] = { &disk, &blk1 }, *i2[2] = { &part, &blk2 };
	assert_int_equal(efi_db_install_multiple(&x->db, &hd, 2, g, i1), EFI_SUCCESS);
	assert_int_equal(efi_db_install_multiple(&x->db, &hp, 2, g, i2), EFI_SUCCESS);
	/* The same device path twice: refused, and nothing is left behind. */
	EFI_HANDLE dup = NULL;
	static struct dp_disk disk2;
	fill_disk(&disk2);
	void *i3[2] = { &disk2, &blk1 };
	UINTN before = 0, after = 0;
	efi_db_locate_handle(&x->db, AllHandles, NULL, NULL, &before, NULL);
	assert_int_equal(efi_db_install_multiple(&x->db, &dup, 2, g, i3), EFI_ALREADY_STARTED);
	efi_db_locate_handle(&x->db, AllHandles, NULL, NULL, &after, NULL);
	assert_int_equal(before, after);
	assert_null(dup);
	/* A failure part-way rolls back: protocol g_b given twice. */
	const EFI_GUID *gg[3] = { &g_b, &g_a, &g_b };
	void *ii[3] = { &blk1, &blk1, &blk2 };
	assert_int_equal(efi_db_install_multiple(&x->db, &dup, 3, gg, ii), EFI_INVALID_PARAMETER);
	assert_null(dup);
	efi_db_locate_handle(&x->db, AllHandles, NULL, NULL, &after, NULL);
	assert_int_equal(before, after);

	/* Longest match wins; the path is advanced past the matched part. */
	EFI_DEVICE_PATH_PROTOCOL *q = (EFI_DEVICE_PATH_PROTOCOL *)&query;
	EFI_HANDLE dev;
	assert_int_equal(efi_db_locate_device_path(&x->db, &g_a, &q, &dev), EFI_SUCCESS);
	assert_ptr_equal(dev, hp);
	assert_ptr_equal(q, &query.end);
	/* A path under the disk but on another partition matches the disk. */
	query.hd.PartitionNumber = 2;
	q = (EFI_DEVICE_PATH_PROTOCOL *)&query;
	assert_int_equal(efi_db_locate_device_path(&x->db, &g_a, &q, &dev), EFI_SUCCESS);
	assert_ptr_equal(dev, hd);
	assert_ptr_equal(q, &query.hd);
	/* Malformed input: a node shorter than its header. */
	query.hd.Header.Length[0] = 2;
	q = (EFI_DEVICE_PATH_PROTOCOL *)&query;
	assert_int_equal(efi_db_locate_device_path(&x->db, &g_a, &q, &dev), EFI_INVALID_PARAMETER);
	query.hd.Header.Length[0] = 42;
	q = (EFI_DEVICE_PATH_PROTOCOL *)&query;
	assert_int_equal(efi_db_locate_device_path(&x->db, &g_b, &q, &dev), EFI_NOT_FOUND); /* no DP with g_b */

	/* UninstallMultiple: all or nothing. */
	const EFI_GUID *gu[2] = { &g_dp, &g_b };
	assert_int_equal(efi_db_uninstall_multiple(&x->db, hp, 2, gu, i2), EFI_INVALID_PARAMETER);
	assert_true(efi_db_handle_valid(&x->db, hp));
	assert_int_equal(efi_db_uninstall_multiple(&x->db, hp, 2, g, i2), EFI_SUCCESS);
	assert_false(efi_db_handle_valid(&x->db, hp));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_uninstall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reinstall_and_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_paths, setup, teardown),
	};
	return cmocka_run_group_tests_name("efi_handle", tests, NULL, NULL);
}
