/* Network adapters of a running VM through the control socket: hot add (offer), cable
 * disconnect/connect (RNDIS indications), list, hot remove (rescind), the refused legacy adapter and
 * bad commands. The guest is the loopback netvsc guest; adapters are threaded as in the VMM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support/netvsc_guest.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/netvsc.h"
#include "net/nic.h"
#include "ui/control.h"
#include "support/loopback.h"

static int ctl_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void ctl(int fd, const char *cmd, char *reply, size_t cap)
{
	char line[512];
	snprintf(line, sizeof(line), "%s\n", cmd);
	assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	size_t n = 0;
	while (n < cap - 1) {
		ssize_t r = read(fd, reply + n, 1);
		assert_true(r == 1);
		if (reply[n] == '\n')
			break;
		n++;
	}
	reply[n] = 0;
}

static void test_control_hot_add_link_remove(void **state)
{
	struct vmbus_loopback lb;
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 2, NULL), 0);
	pthread_mutex_lock(&lock);
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	pthread_mutex_unlock(&lock);

	/* The network class from the registry, with no adapter configured (it exists for hot add). */
	struct vmdev_config cfg = { 0 };
	struct vmdev_host h = { .srv = lb.srv, .srv_lock = &lock, .mem = &lb.mem, .nr_vcpus = 2, .vm_name = "unit-vm" };
	struct vmdev_set set;
	char err[128];
	assert_int_equal(vmdev_set_create(&set, &h, &cfg, err, sizeof(err)), 0);
	char path[64];
	snprintf(path, sizeof(path), "/tmp/gen2vm-ctl-%d.sock", (int)getpid());
	struct control *c;
	assert_int_equal(control_open(&c, path, err, sizeof(err)), 0);
	assert_int_equal(control_start(c), 0);
	assert_int_equal(vmdev_set_register_verbs(&set, c), 0);
	int fd = ctl_connect(path);
	char r[1024];

	ctl(fd, "nic-list", r, sizeof(r));
	assert_string_equal(r, "ok: no network adapters");
	ctl(fd, "nic-add tap=tap0,legacy", r, sizeof(r));
	assert_non_null(strstr(r, "error:"));
	assert_non_null(strstr(r, "only on generation 1"));
	/* The far end of the cable, opened first so the adapter's end connects at once (carrier up). Pair
	 * ids meet across processes: concurrent runs must not. */
	char id[32], add[64];
	snprintf(id, sizeof(id), "ctl-unit-%d", (int)getpid());
	snprintf(add, sizeof(add), "nic-add pair=%s,queues=2", id);
	struct net_backend *peer;
	assert_int_equal(net_pair_open_shared(id, 1, &peer, err, sizeof(err)), 0);
	ctl(fd, add, r, sizeof(r));
	assert_string_equal(r, "ok: added adapter 0");

	/* The hot-added adapter was offered at once. */
	pthread_mutex_lock(&lock);
	while (vmbus_client_poll(&lb.cl) == 0) {
	}
	pthread_mutex_unlock(&lock);
	struct netvsc_guest g;
	assert_int_equal(netvsc_guest_open_locked(&g, &lb, 0, 1u << 20, 1u << 20, &lock, 2000), 0);
	assert_int_equal(netvsc_guest_rndis_init(&g), 0);
	uint8_t mac[6];
	uint32_t n = 6;
	assert_int_equal(netvsc_guest_query(&g, RNDIS_OID_802_3_PERMANENT_ADDRESS, NULL, 0, mac, &n), 0);
	uint8_t want[6];
	nic_mac_generate("unit-vm", 0, want);
	assert_memory_equal(mac, want, 6);

	ctl(fd, "nic-link 0 down", r, sizeof(r));
	assert_string_equal(r, "ok: adapter 0 cable disconnected");
	for (int i = 0; i < 2000 && !g.indications; i++) {
		netvsc_guest_poll(&g, 0);
		usleep(1000);
	}
	assert_int_equal(g.indications, 1);
	assert_int_equal(g.last_indication, RNDIS_STATUS_MEDIA_DISCONNECT);
	ctl(fd, "nic-list", r, sizeof(r));
	assert_non_null(strstr(r, "link=down"));
	ctl(fd, "nic-link 0 up", r, sizeof(r));
	for (int i = 0; i < 2000 && g.indications < 2; i++) {
		netvsc_guest_poll(&g, 0);
		usleep(1000);
	}
	assert_int_equal(g.last_indication, RNDIS_STATUS_MEDIA_CONNECT);

	ctl(fd, "nic-speed 0 40000", r, sizeof(r));
	assert_string_equal(r, "ok: adapter 0 reports 40000 Mbit/s");
	for (int i = 0; i < 2000 && g.indications < 3; i++) {
		netvsc_guest_poll(&g, 0);
		usleep(1000);
	}
	assert_int_equal(g.last_indication, RNDIS_STATUS_LINK_SPEED_CHANGE);
	ctl(fd, "nic-speed 0 x", r, sizeof(r));
	assert_non_null(strstr(r, "usage"));
	ctl(fd, "nic-link 5 down", r, sizeof(r));
	assert_non_null(strstr(r, "error: no network adapter 5"));
	ctl(fd, "nic-link 0 sideways", r, sizeof(r));
	assert_non_null(strstr(r, "usage"));
	ctl(fd, "frobnicate", r, sizeof(r));
	assert_non_null(strstr(r, "unknown command"));
	ctl(fd, "help", r, sizeof(r));
	assert_non_null(strstr(r, "nic-remove N"));

	/* Hot removal while the guest has it open: rescinded. */
	ctl(fd, "nic-remove 0", r, sizeof(r));
	assert_string_equal(r, "ok: removed adapter 0");
	pthread_mutex_lock(&lock);
	while (vmbus_client_poll(&lb.cl) == 0) {
	}
	struct vmbus_guid cls;
	vmbus_guid_parse(NETVSC_CLASS_GUID_TEXT, &cls);
	assert_null(vmbus_client_find_offer(&lb.cl, &cls, 0));
	vmbus_client_gpadl_teardown(&lb.cl, g.ch[0].relid, g.rgpadl);
	vmbus_client_gpadl_teardown(&lb.cl, g.ch[0].relid, g.sgpadl);
	pthread_mutex_unlock(&lock);
	ctl(fd, "nic-remove 0", r, sizeof(r));
	assert_non_null(strstr(r, "error:"));

	close(fd);
	control_close(c);
	assert_int_equal(access(path, F_OK), -1);
	vmdev_set_destroy(&set);
	net_backend_destroy(peer);
	vmbus_loopback_destroy(&lb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_hot_add_link_remove),
	};
	return cmocka_run_group_tests_name("gen2_net", tests, NULL, NULL);
}
