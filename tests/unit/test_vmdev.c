/* The VMBus device registry (src/devices/vmdev.h): a device added by one file and one table line
 * (the reversing echo device) is found by its option, created from a configuration, offered to the
 * guest and answers it; the registry's settings errors name the option and the fix. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vmdev.h"
#include "gen2vm/proto/testdev.h"
#include "support/loopback.h"

static void test_reverse_device_from_the_table(void **state)
{
	const struct vmdev_option *opt = NULL;
	const struct vmdev_class *cls = vmdev_class_by_option("reverse-echo", &opt);
	assert_non_null(cls);
	assert_string_equal(cls->name, "reverse");
	assert_false(opt->has_arg);
	assert_string_equal(cls->class_guid, REVERSE_CLASS_GUID_TEXT);

	char err[256];
	struct vmdev_config cfg = { 0 };
	assert_int_equal(vmdev_config_add_option(&cfg, "reverse-echo", NULL, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_count(&cfg, cls), 1);
	assert_int_equal(vmdev_config_validate(&cfg, err, sizeof(err)), 0);

	struct vmbus_loopback lb;
	assert_int_equal(vmbus_loopback_init(&lb, 64ull << 20, 1, NULL), 0);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct vmdev_host h = { .srv = lb.srv, .srv_lock = &lock, .mem = &lb.mem, .nr_vcpus = 1, .vm_name = "t" };
	struct vmdev_set set;
	assert_int_equal(vmdev_set_create(&set, &h, &cfg, err, sizeof(err)), 0);
	/* The classes that always exist (storage, network, the integration services shutdown,
	 * heartbeat, time sync, KVP, file copy and backup, the synthetic keyboard, mouse and video: the
	 * settings-only classes are never created) and the one asked for; not the echo device. */
	assert_int_equal(set.n, 12);
	assert_ptr_equal(set.run[2].cls, cls);

	assert_int_equal(vmbus_client_connect(&lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb.cl), 0);
	struct vmbus_guid g;
	assert_int_equal(vmbus_guid_parse(REVERSE_CLASS_GUID_TEXT, &g), 0);
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&lb.cl, &g, 0);
	assert_non_null(o);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, o->msg.child_relid, 16384, 16384, 0, NULL, 0), 0);
	static const char msg[] = "gen2vm reverses!";
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, 42, NULL, 0, msg, 16), 0);
	uint8_t in[256];
	uint32_t n;
	assert_int_equal(vmbus_client_recv(&ch, in, sizeof(in), &n), 0);
	vmbus_client_recv_done(&ch);
	struct vmbus_packet_descriptor d;
	memcpy(&d, in, sizeof(d));
	assert_int_equal(d.type, VM_PKT_DATA_INBAND);
	assert_int_equal(d.trans_id, 42);
	assert_int_equal(n - d.offset8 * 8u, 16);
	assert_memory_equal(in + d.offset8 * 8u, "!sesrever mv2neg", 16);
	vmbus_client_channel_close(&ch);

	vmdev_set_destroy(&set);
	assert_int_equal(set.n, 0);
	vmdev_config_free(&cfg);
	vmbus_loopback_destroy(&lb);
}

static void test_settings_errors(void **state)
{
	char err[256];
	struct vmdev_config cfg = { 0 };
	assert_int_equal(vmdev_config_add_option(&cfg, "frobnicate", "x", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--frobnicate"));
	assert_int_equal(vmdev_config_add_option(&cfg, "nic", "tap=t0,legacy", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "generation 1"));
	assert_int_equal(vmdev_config_add_option(&cfg, "disk", "a.img,lun=99", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "lun=99"));
	assert_int_equal(cfg.n, 0);
	/* More adapters than a VM may have: refused once, when the settings are validated. */
	for (int i = 0; i < 65; i++)
		assert_int_equal(vmdev_config_add_option(&cfg, "nic", "pair=x", err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_validate(&cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 64"));
	vmdev_config_free(&cfg);
	assert_non_null(vmdev_class_by_json_key("disks"));
	assert_non_null(vmdev_class_by_json_key("nics"));
	assert_null(vmdev_class_by_json_key("reverse-echo"));
	/* Every class's help lines are in `gen2vm run --help`. */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	vmdev_usage_print(f);
	fclose(f);
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++)
		for (const struct vmdev_option *o = (*c)->options; o && o->name; o++) {
			char want[64];
			snprintf(want, sizeof(want), "--%s", o->name);
			assert_non_null(strstr(text, want));
		}
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reverse_device_from_the_table),
		cmocka_unit_test(test_settings_errors),
	};
	return cmocka_run_group_tests_name("vmdev", tests, NULL, NULL);
}
