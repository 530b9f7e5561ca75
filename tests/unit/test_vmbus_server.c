/* VMBus server state machine through the loopback guest: negotiation, offers, open/close, rescind,
 * unload and reconnect, sub-channels, and a suite of malformed messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/testdev.h"
#include "support/loopback.h"

#define RAM (64ull << 20)

static struct vmbus_guid td_class(void)
{
	struct vmbus_guid g;
	assert_int_equal(vmbus_guid_parse(TESTDEV_CLASS_GUID_TEXT, &g), 0);
	return g;
}

static void test_guid_parse(void **state)
{
	struct vmbus_guid g, want = VMBUS_GUID(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f);
	static const uint8_t bytes[16] = { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d,
					   0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f", &g), 0);
	assert_memory_equal(g.b, bytes, 16);
	assert_memory_equal(want.b, bytes, 16);
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7", &g), -1);
	assert_int_equal(vmbus_guid_parse("ba6163d9x04a1-4d29-b605-72e2ffb1dc7f", &g), -1);
	assert_int_equal(vmbus_guid_parse("ba6163d9-04a1-4d29-b605-72e2ffb1dc7fz", &g), -1);
}

/* Every version Linux 6.1 offers is accepted; a host capped lower makes the client step down. */
static void test_versions(void **state)
{
	static const uint32_t vs[] = { VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
				       VMBUS_VERSION_WIN10_V5, VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,
				       VMBUS_VERSION_WIN8_1, VMBUS_VERSION_WIN8 };
	for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
		struct vmbus_loopback lb;
		struct vmbus_server_config cfg = { .max_version = vs[i] };
		assert_int_equal(vmbus_loopback_init(&lb, RAM, 2, &cfg), 0);
		assert_int_equal(vmbus_client_connect(&lb.cl, 1, 0), 0);
		assert_int_equal(lb.cl.version, vs[i]);
		assert_int_equal(vmbus_server_version(lb.srv), vs[i]);
		assert_int_equal(vmbus_server_message_vp(lb.srv), 1);
		assert_int_equal(lb.cl.msg_conn_id, VMBUS_MESSAGE_CONNECTION_ID);
		vmbus_loopback_destroy(&lb);
	}
}

static uint32_t pop_type(struct vmbus_loopback *lb, uint64_t *buf)
{
	int n = vmbus_loopback_pop(lb, buf);
	assert_true(n >= 8);
	return (uint32_t)buf[0];
}

static void test_version_refusals(void **state)
{
	struct vmbus_loopback lb;
	uint64_t buf[30];
	struct vmbus_server_config cfg = { .max_version = VMBUS_VERSION_WIN10 };
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, &cfg), 0);
	struct vmbus_channel_initiate_contact m = { .header.msgtype = CHANNELMSG_INITIATE_CONTACT,
						    .vmbus_version_requested = VMBUS_VERSION_WIN10_V5_3,
						    .msg_sint = VMBUS_MESSAGE_SINT };
	/* An old host has no connection 4: the guest moves on at once. */
	assert_int_equal(vmbus_loopback_post(&lb, 4, &m, sizeof(m)), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_loopback_post(&lb, 99, &m, sizeof(m)), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_loopback_post(&lb, 1, &m, 241), HV_STATUS_INVALID_PARAMETER);
	assert_int_equal(vmbus_server_post_message(lb.srv, 0, 1, 0, &m, sizeof(m)), HV_STATUS_INVALID_PARAMETER);
	/* Unknown versions, 5.x on connection 1 and 4.0 beyond the cap: version_supported = 0. */
	uint32_t bad[] = { 0x00000D, VMBUS_MAKE_VERSION(1, 0), VMBUS_MAKE_VERSION(4, 2), VMBUS_MAKE_VERSION(6, 0),
			   VMBUS_VERSION_WIN10_V5 };
	for (size_t i = 0; i < 5; i++) {
		m.vmbus_version_requested = bad[i];
		assert_int_equal(vmbus_loopback_post(&lb, 1, &m, sizeof(m)), HV_STATUS_SUCCESS);
		assert_int_equal(pop_type(&lb, buf), CHANNELMSG_VERSION_RESPONSE);
		assert_int_equal(((struct vmbus_channel_version_response *)buf)->version_supported, 0);
	}
	/* target_vcpu out of range. */
	m.vmbus_version_requested = VMBUS_VERSION_WIN10;
	m.target_vcpu = 5;
	assert_int_equal(vmbus_loopback_post(&lb, 1, &m, sizeof(m)), HV_STATUS_SUCCESS);
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_VERSION_RESPONSE);
	assert_int_equal(((struct vmbus_channel_version_response *)buf)->version_supported, 0);
	assert_int_equal(vmbus_server_version(lb.srv), 0);
	vmbus_loopback_destroy(&lb);

	/* A 5.x host refuses 5.0 posted with a wrong SINT. */
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	m.target_vcpu = 0;
	m.vmbus_version_requested = VMBUS_VERSION_WIN10_V5;
	m.msg_sint = 3;
	assert_int_equal(vmbus_loopback_post(&lb, 4, &m, sizeof(m)), HV_STATUS_SUCCESS);
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_VERSION_RESPONSE);
	assert_int_equal(((struct vmbus_channel_version_response *)buf)->version_supported, 0);
	/* The client refuses to go below what it may ask for. */
	assert_int_equal(vmbus_client_connect(&lb.cl, 0, VMBUS_MAKE_VERSION(2, 3)), -VMBUS_ENODEV);
	vmbus_loopback_destroy(&lb);
}

static void connect_and_offer(struct vmbus_loopback *lb)
{
	assert_int_equal(vmbus_client_connect(&lb->cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&lb->cl), 0);
}

static void test_offers(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td[3];
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(testdev_create(lb.srv, i, 0, &td[i]), 0);
	connect_and_offer(&lb);
	assert_int_equal(lb.cl.nr_offers, 3);
	struct vmbus_guid cls = td_class();
	for (uint32_t i = 0; i < 3; i++) {
		const struct vmbus_channel_offer_channel *o = &lb.cl.offers[i].msg;
		assert_int_equal(o->child_relid, i + 1);
		assert_int_equal(o->connection_id, VMBUS_CHANNEL_CONNECTION_BASE + i + 1);
		assert_int_equal(o->is_dedicated_interrupt, 1);
		assert_int_equal(o->monitor_allocated, 0);
		assert_int_equal(o->offer.sub_channel_index, 0);
		assert_true(vmbus_guid_equal(&o->offer.if_type, &cls));
		assert_int_equal(o->offer.if_instance.b[0], i);
	}
	/* Hot add: offered at once, no ALLOFFERS_DELIVERED. */
	struct testdev *late;
	assert_int_equal(testdev_create(lb.srv, 9, 0, &late), 0);
	assert_int_equal(vmbus_client_poll(&lb.cl), 0);
	assert_int_equal(lb.cl.nr_offers, 4);
	assert_int_equal(lb.cl.offers[3].msg.child_relid, 4);
	assert_int_equal(vmbus_client_poll(&lb.cl), -VMBUS_ETIMEDOUT);
	/* Signals for unknown connection ids are refused; for offered, unopened channels ignored. */
	assert_int_equal(vmbus_server_signal_event(lb.srv, 5), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_server_signal_event(lb.srv, VMBUS_CHANNEL_CONNECTION_BASE + 77),
			 HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_server_signal_event(lb.srv, VMBUS_CHANNEL_CONNECTION_BASE + 1), HV_STATUS_SUCCESS);
	testdev_destroy(late);
	for (uint32_t i = 0; i < 3; i++)
		testdev_destroy(td[i]);
	vmbus_loopback_destroy(&lb);
}

static void echo_once(struct vmbus_client_channel *ch, uint32_t len, uint8_t seed)
{
	uint8_t out[4096], in[4200];
	for (uint32_t i = 0; i < len; i++)
		out[i] = (uint8_t)(seed + i * 7);
	assert_int_equal(vmbus_client_send(ch, VM_PKT_DATA_INBAND, 0, seed, NULL, 0, out, len), 0);
	uint32_t n;
	assert_int_equal(vmbus_client_recv(ch, in, sizeof(in), &n), 0);
	vmbus_client_recv_done(ch);
	struct vmbus_packet_descriptor d;
	memcpy(&d, in, sizeof(d));
	assert_int_equal(d.type, VM_PKT_DATA_INBAND);
	assert_int_equal(d.trans_id, seed);
	assert_int_equal(n - d.offset8 * 8u, (len + 7) / 8 * 8);
	assert_memory_equal(in + d.offset8 * 8u, out, len);
}

static void test_open_close_rescind_unload(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 4, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	connect_and_offer(&lb);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 16384, 16384, 2, NULL, 0), 0);
	assert_int_equal(lb.opened, 1);
	echo_once(&ch, 100, 1);
	assert_true(vmbus_loopback_event_take(&lb, 1));
	assert_int_equal(lb.last_signal_vp, 2);
	/* Opening twice fails cleanly. */
	struct vmbus_client_channel ch2;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch2, 1, 8192, 8192, 0, NULL, 0), -VMBUS_EIO);
	/* MODIFYCHANNEL moves the interrupts (5.3: with a response). */
	assert_int_equal(vmbus_client_modify_channel(&lb.cl, 1, 3), 0);
	echo_once(&ch, 8, 2);
	assert_int_equal(lb.last_signal_vp, 3);
	assert_int_equal(vmbus_client_modify_channel(&lb.cl, 1, 4), -VMBUS_EIO);
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(lb.closed, 1);
	/* Reopen, then hot-remove while open: closed, rescinded; relid reusable after RELID_RELEASED. */
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	testdev_destroy(td);
	assert_int_equal(lb.closed, 2);
	assert_int_equal(vmbus_client_poll(&lb.cl), 0);
	assert_true(lb.cl.offers[0].rescinded);
	assert_int_equal(vmbus_client_channel_close(&ch), 0); /* the guest may still close and tear down */
	assert_int_equal(testdev_create(lb.srv, 1, 0, &td), 0);
	assert_int_equal(vmbus_client_poll(&lb.cl), 0);
	assert_int_equal(lb.cl.offers[0].msg.child_relid, 1);
	assert_true(lb.cl.offers[0].rescinded); /* relid 1 still held: the new device got relid 2 */
	assert_int_equal(lb.cl.offers[1].msg.child_relid, 2);
	assert_int_equal(vmbus_client_release_relid(&lb.cl, 1), 0);
	/* Unload with an open channel, then reconnect from scratch (kexec). */
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 2, 8192, 8192, 0, NULL, 0), 0);
	assert_int_equal(vmbus_client_unload(&lb.cl), 0);
	assert_int_equal(vmbus_server_version(lb.srv), 0);
	assert_int_equal(lb.closed, 3);
	connect_and_offer(&lb);
	assert_int_equal(lb.cl.nr_offers, 1);
	assert_int_equal(lb.cl.offers[0].msg.child_relid, 1);
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	echo_once(&ch, 4000, 3);
	/* INITIATE_CONTACT while connected resets too (a kernel that skipped UNLOAD). */
	vmbus_client_init(&lb.cl, &lb.ops);
	connect_and_offer(&lb);
	assert_int_equal(lb.closed, 4);
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	echo_once(&ch, 1, 4);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

static void test_subchannels(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 4, &td), 0);
	connect_and_offer(&lb);
	struct vmbus_client_channel ch, sub[3];
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	struct testdev_ctl ctl = { .magic = TESTDEV_CTL_MAGIC, .op = TESTDEV_OP_SUBCHANNELS, .count = 3 };
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 42,
					   NULL, 0, &ctl, sizeof(ctl)), 0);
	uint8_t buf[64];
	uint32_t n;
	assert_int_equal(vmbus_client_recv(&ch, buf, sizeof(buf), &n), 0);
	struct vmbus_packet_descriptor d;
	memcpy(&d, buf, sizeof(d));
	assert_int_equal(d.type, VM_PKT_COMP);
	assert_int_equal(d.trans_id, 42);
	struct testdev_ctl_reply r;
	memcpy(&r, buf + d.offset8 * 8, sizeof(r));
	assert_int_equal(r.status, 0);
	assert_int_equal(r.offered, 3);
	struct vmbus_guid cls = td_class();
	while (vmbus_client_poll(&lb.cl) == 0)
		;
	assert_int_equal(lb.cl.nr_offers, 4);
	for (uint16_t i = 1; i <= 3; i++) {
		const struct vmbus_client_offer *o = vmbus_client_find_offer(&lb.cl, &cls, i);
		assert_non_null(o);
		assert_memory_equal(&o->msg.offer.if_instance, &lb.cl.offers[0].msg.offer.if_instance, 16);
		assert_int_equal(vmbus_client_channel_open(&lb.cl, &sub[i - 1], o->msg.child_relid, 8192, 8192, 0, NULL, 0), 0);
		echo_once(&sub[i - 1], 64, (uint8_t)i);
	}
	/* Beyond max_subchannels: refused. */
	ctl.count = 2;
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 43,
					   NULL, 0, &ctl, sizeof(ctl)), 0);
	assert_int_equal(vmbus_client_recv(&ch, buf, sizeof(buf), &n), 0);
	memcpy(&r, buf + 16, sizeof(r));
	assert_int_equal(r.status, 1);
	/* Removal rescinds all four. */
	testdev_destroy(td);
	int rescinded = 0;
	while (vmbus_client_poll(&lb.cl) == 0)
		;
	for (uint32_t i = 0; i < lb.cl.nr_offers; i++)
		rescinded += lb.cl.offers[i].rescinded;
	assert_int_equal(rescinded, 4);
	for (uint32_t i = 1; i <= 4; i++)
		assert_int_equal(vmbus_client_release_relid(&lb.cl, i), 0);
	vmbus_loopback_destroy(&lb);
}

static void ask_subchannels(struct vmbus_client_channel *ch, uint32_t count, uint64_t tid, uint32_t want_status)
{
	struct testdev_ctl ctl = { .magic = TESTDEV_CTL_MAGIC, .op = TESTDEV_OP_SUBCHANNELS, .count = count };
	assert_int_equal(vmbus_client_send(ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, tid,
					   NULL, 0, &ctl, sizeof(ctl)), 0);
	uint8_t buf[64];
	uint32_t n;
	assert_int_equal(vmbus_client_recv(ch, buf, sizeof(buf), &n), 0);
	struct vmbus_packet_descriptor d;
	memcpy(&d, buf, sizeof(d));
	struct testdev_ctl_reply r;
	memcpy(&r, buf + d.offset8 * 8, sizeof(r));
	assert_int_equal(r.status, want_status);
}

/* hv_netvsc's MTU change (and any driver rebind): the guest closes the sub-channels and the primary,
 * opens the primary again and asks for sub-channels again. As on Hyper-V the old ones are rescinded
 * when the primary closes, and new offers (new relids) answer the new request even before the guest
 * has released the old relids. */
static void test_subchannels_after_primary_reopen(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 2, &td), 0);
	connect_and_offer(&lb);
	struct vmbus_guid cls = td_class();
	struct vmbus_client_channel ch, sub[2];
	uint32_t old_relids[2];
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	ask_subchannels(&ch, 2, 1, 0);
	while (vmbus_client_poll(&lb.cl) == 0)
		;
	for (uint16_t i = 1; i <= 2; i++) {
		const struct vmbus_client_offer *o = vmbus_client_find_offer(&lb.cl, &cls, i);
		assert_non_null(o);
		old_relids[i - 1] = o->msg.child_relid;
		assert_int_equal(vmbus_client_channel_open(&lb.cl, &sub[i - 1], o->msg.child_relid, 8192, 8192, 0, NULL, 0), 0);
	}
	assert_int_equal(vmbus_device_subchannel_count(testdev_vmbus_device(td)), 2);
	/* Close sub-channels, then the primary (Linux's vmbus_close order). */
	for (int i = 0; i < 2; i++)
		assert_int_equal(vmbus_client_channel_close(&sub[i]), 0);
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	while (vmbus_client_poll(&lb.cl) == 0)
		;
	int rescinded = 0;
	for (uint32_t i = 0; i < lb.cl.nr_offers; i++)
		if (lb.cl.offers[i].rescinded) {
			rescinded++;
			assert_true(lb.cl.offers[i].msg.child_relid == old_relids[0] ||
				    lb.cl.offers[i].msg.child_relid == old_relids[1]);
		}
	assert_int_equal(rescinded, 2);
	assert_int_equal(vmbus_device_subchannel_count(testdev_vmbus_device(td)), 0);
	/* Reopen and ask again before releasing the old relids: new offers, new relids. */
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	ask_subchannels(&ch, 2, 2, 0);
	while (vmbus_client_poll(&lb.cl) == 0)
		;
	for (uint16_t i = 1; i <= 2; i++) {
		const struct vmbus_client_offer *o = vmbus_client_find_offer(&lb.cl, &cls, i);
		assert_non_null(o);
		assert_true(o->msg.child_relid != old_relids[0] && o->msg.child_relid != old_relids[1]);
		assert_int_equal(vmbus_client_channel_open(&lb.cl, &sub[i - 1], o->msg.child_relid, 8192, 8192, 0, NULL, 0), 0);
		echo_once(&sub[i - 1], 64, (uint8_t)i);
	}
	ask_subchannels(&ch, 1, 3, 1); /* still at most max_subchannels */
	for (int i = 0; i < 2; i++)
		assert_int_equal(vmbus_client_release_relid(&lb.cl, old_relids[i]), 0);
	/* A released relid is not released twice; an unknown one is refused quietly. */
	assert_int_equal(vmbus_client_release_relid(&lb.cl, old_relids[0]), 0);
	/* One retired relid left unreleased on purpose: the reset (unload) must free it. */
	assert_int_equal(vmbus_client_channel_close(&sub[0]), 0);
	assert_int_equal(vmbus_client_channel_close(&sub[1]), 0);
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(vmbus_client_unload(&lb.cl), 0);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

/* Malformed control messages: dropped or refused, never a crash; state stays consistent. */
static void test_malformed(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	uint64_t buf[30];
	uint8_t raw[240];
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	/* Before connecting, everything but INITIATE_CONTACT/UNLOAD is dropped. */
	struct vmbus_channel_message_header h = { .msgtype = CHANNELMSG_REQUESTOFFERS };
	assert_int_equal(vmbus_loopback_post(&lb, 1, &h, sizeof(h)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(&lb, buf), -1);
	connect_and_offer(&lb);
	/* Short, unknown and host->guest-only types. */
	assert_int_equal(vmbus_loopback_post(&lb, 1, &h, 4), HV_STATUS_SUCCESS);
	for (uint32_t t = 0; t < 40; t++) {
		memset(raw, 0, sizeof(raw));
		raw[0] = (uint8_t)t;
		if (t == CHANNELMSG_UNLOAD || t == CHANNELMSG_INITIATE_CONTACT || t == CHANNELMSG_REQUESTOFFERS)
			continue;
		for (uint32_t len = 8; len <= 24; len += 4)
			assert_int_equal(vmbus_loopback_post(&lb, 1, raw, len), HV_STATUS_SUCCESS);
	}
	while (vmbus_loopback_pop(&lb, buf) >= 0)
		; /* failure answers are fine; nothing must be left half-done */
	/* Messages after connect must use the negotiated connection id. */
	struct vmbus_channel_relid_msg cl = { .header.msgtype = CHANNELMSG_CLOSECHANNEL, .child_relid = 1 };
	assert_int_equal(vmbus_loopback_post(&lb, 4, &cl, sizeof(cl)), HV_STATUS_SUCCESS);
	/* Unknown relids everywhere. */
	struct vmbus_channel_open_channel op = { .header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = 3000 };
	assert_int_equal(vmbus_loopback_post(&lb, 1, &op, sizeof(op)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(&lb, buf), -1);
	cl.child_relid = 0;
	vmbus_loopback_post(&lb, 1, &cl, sizeof(cl));
	cl.header.msgtype = CHANNELMSG_RELID_RELEASED;
	cl.child_relid = 1; /* not rescinded */
	vmbus_loopback_post(&lb, 1, &cl, sizeof(cl));
	assert_int_equal(vmbus_loopback_pop(&lb, buf), -1);
	/* Open with a missing GPADL, then with bad downstream offsets / VP: OPEN_RESULT failure. */
	op.child_relid = 1;
	op.openid = 1;
	op.ringbuffer_gpadlhandle = 0x1234;
	assert_int_equal(vmbus_loopback_post(&lb, 1, &op, sizeof(op)), HV_STATUS_SUCCESS);
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
	assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	void *ring = lb.ops.alloc_pages(&lb, 8);
	uint32_t gpadl;
	assert_int_equal(vmbus_client_gpadl_create(&lb.cl, 1, ring, 8 * 4096, &gpadl), 0);
	op.ringbuffer_gpadlhandle = gpadl;
	uint32_t offs[] = { 0, 1, 7, 8, 1000 };
	for (size_t i = 0; i < 5; i++) {
		op.downstream_ringbuffer_pageoffset = offs[i];
		vmbus_loopback_post(&lb, 1, &op, sizeof(op));
		assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
		assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	}
	op.downstream_ringbuffer_pageoffset = 4;
	op.target_vp = 1;
	vmbus_loopback_post(&lb, 1, &op, sizeof(op));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
	assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	/* Out-of-range ring indices written by the guest before opening. */
	op.target_vp = 0;
	((struct vmbus_ring_header *)ring)->write_index = 4 * 4096 * 2;
	vmbus_loopback_post(&lb, 1, &op, sizeof(op));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
	assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	((struct vmbus_ring_header *)ring)->write_index = 12; /* misaligned */
	vmbus_loopback_post(&lb, 1, &op, sizeof(op));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
	assert_int_not_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	((struct vmbus_ring_header *)ring)->write_index = 0;
	vmbus_loopback_post(&lb, 1, &op, sizeof(op));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_OPENCHANNEL_RESULT);
	assert_int_equal(((struct vmbus_channel_open_result *)buf)->status, 0);
	/* Teardown of an in-use ring GPADL waits for the close. */
	struct vmbus_channel_gpadl_teardown tdm = { .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = 1,
						    .gpadl = gpadl };
	vmbus_loopback_post(&lb, 1, &tdm, sizeof(tdm));
	assert_int_equal(vmbus_loopback_pop(&lb, buf), -1);
	cl.header.msgtype = CHANNELMSG_CLOSECHANNEL;
	cl.child_relid = 1;
	vmbus_loopback_post(&lb, 1, &cl, sizeof(cl));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_GPADL_TORNDOWN);
	assert_int_equal(((struct vmbus_channel_gpadl_torndown *)buf)->gpadl, gpadl);
	/* Teardown of an unknown GPADL is dropped. */
	vmbus_loopback_post(&lb, 1, &tdm, sizeof(tdm));
	assert_int_equal(vmbus_loopback_pop(&lb, buf), -1);
	/* MODIFYCHANNEL of a closed channel: failure response. */
	struct vmbus_channel_modifychannel mc = { .header.msgtype = CHANNELMSG_MODIFYCHANNEL, .child_relid = 1 };
	vmbus_loopback_post(&lb, 1, &mc, sizeof(mc));
	assert_int_equal(pop_type(&lb, buf), CHANNELMSG_MODIFYCHANNEL_RESPONSE);
	assert_int_not_equal(((struct vmbus_channel_modifychannel_response *)buf)->status, 0);
	/* The channel still works after all that. */
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	echo_once(&ch, 333, 9);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

/* The SynIC queue is full: HvPostMessage asks the guest to retry and consumes nothing. */
static void test_tx_busy(void **state)
{
	struct vmbus_loopback lb;
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	lb.busy_limit = 0;
	struct vmbus_channel_initiate_contact m = { .header.msgtype = CHANNELMSG_INITIATE_CONTACT,
						    .vmbus_version_requested = VMBUS_VERSION_WIN10_V5_2,
						    .msg_sint = VMBUS_MESSAGE_SINT };
	assert_int_equal(vmbus_loopback_post(&lb, 4, &m, sizeof(m)), HV_STATUS_INSUFFICIENT_BUFFERS);
	assert_int_equal(vmbus_server_version(lb.srv), 0);
	lb.busy_limit = 100;
	assert_int_equal(vmbus_loopback_post(&lb, 4, &m, sizeof(m)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_server_version(lb.srv), VMBUS_VERSION_WIN10_V5_2);
	vmbus_loopback_destroy(&lb);
}

/* The device side of the concurrency model: a device's own thread (no server call on its stack, no
 * server lock anywhere) holds a GPADL, and the guest's GPADL_TEARDOWN waits for its release. The
 * release and a sub-channel request made on that thread send nothing themselves: they queue the work
 * and wake the host (notifier.work_pending), whose vmbus_server_run_deferred sends the offers and
 * the TORNDOWN. */
struct thr_dev {
	struct vmbus_device *dev;
	struct vmbus_channel *chan;
	uint32_t gpadl_id;
	struct vmbus_gpadl *held, *got;
	int offered;
};

static int thr_open(void *ctx, struct vmbus_channel *chan)
{
	((struct thr_dev *)ctx)->chan = chan;
	return 0;
}

static void thr_close(void *ctx, struct vmbus_channel *chan)
{
}

static void thr_rx_ready(void *ctx, struct vmbus_channel *chan)
{
}

static void *thr_acquire(void *arg)
{
	struct thr_dev *d = arg;
	d->got = vmbus_channel_gpadl_acquire(d->chan, d->gpadl_id);
	return NULL;
}

static void *thr_release_and_offer(void *arg)
{
	struct thr_dev *d = arg;
	vmbus_channel_gpadl_release(d->chan, d->held);
	d->held = NULL;
	d->offered = vmbus_device_offer_subchannels(d->dev, 2);
	return NULL;
}

static void run_in_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_device_thread_gpadl_and_subchannels(void **state)
{
	static const struct vmbus_device_ops ops = { .open = thr_open, .close = thr_close, .rx_ready = thr_rx_ready };
	struct vmbus_loopback lb;
	struct thr_dev d = { 0 };
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 1, NULL), 0);
	struct vmbus_device_desc desc = { .name = "thr", .class_id = td_class(), .max_subchannels = 2, .ops = &ops,
					  .ctx = &d };
	assert_int_equal(vmbus_server_device_add(lb.srv, &desc, &d.dev), 0);
	connect_and_offer(&lb);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	void *buf = lb.ops.alloc_pages(&lb, 4);
	assert_int_equal(vmbus_client_gpadl_create(&lb.cl, 1, buf, 4 * 4096, &d.gpadl_id), 0);

	run_in_thread(thr_acquire, &d);
	assert_non_null(d.got);
	d.held = d.got;
	uint64_t m[30];
	struct vmbus_channel_gpadl_teardown tdm = { .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = 1,
						    .gpadl = d.gpadl_id };
	assert_int_equal(vmbus_loopback_post(&lb, lb.cl.msg_conn_id, &tdm, sizeof(tdm)), HV_STATUS_SUCCESS);
	assert_int_equal(vmbus_loopback_pop(&lb, m), -1); /* held: the TORNDOWN waits */
	run_in_thread(thr_acquire, &d);
	assert_null(d.got); /* being torn down: no new users */

	uint32_t kicks = lb.work_pending;
	run_in_thread(thr_release_and_offer, &d);
	assert_int_equal(d.offered, 2);
	assert_int_equal(vmbus_device_subchannel_count(d.dev), 2);
	assert_int_equal(lb.work_pending, kicks + 2); /* the host was woken, once per request */
	assert_int_equal(lb.q_len, 0);                /* and nothing went out from the device's thread */

	vmbus_server_run_deferred(lb.srv); /* what the host's service thread does when woken */
	uint32_t offers = 0, torndown = 0;
	int n;
	while (lb.q_len && (n = vmbus_loopback_pop(&lb, m)) > 0) {
		if (m[0] == CHANNELMSG_OFFERCHANNEL) {
			const struct vmbus_channel_offer_channel *o = (const void *)m;
			assert_int_equal(o->offer.sub_channel_index, offers + 1);
			offers++;
		} else {
			assert_int_equal((uint32_t)m[0], CHANNELMSG_GPADL_TORNDOWN);
			assert_int_equal(((struct vmbus_channel_gpadl_torndown *)m)->gpadl, d.gpadl_id);
			torndown++;
		}
	}
	assert_int_equal(offers, 2);
	assert_int_equal(torndown, 1);
	/* Beyond max_subchannels: refused at once, nothing queued. */
	assert_int_equal(vmbus_device_offer_subchannels(d.dev, 1), -EINVAL);
	vmbus_server_run_deferred(lb.srv);
	assert_int_equal(lb.q_len, 0);
	/* Closing the primary retires its sub-channels: the count starts again. */
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(vmbus_device_subchannel_count(d.dev), 0);
	vmbus_server_device_remove(lb.srv, d.dev);
	vmbus_loopback_destroy(&lb);
}

/* Saving a VM: the server's state (connection, GPADLs, an open channel) saved, the server reset as a
 * new VM's would be, and restored: the channel is open again on the same ring, with the same relid,
 * and carries traffic with the guest's unchanged channel. Every truncation and many altered bytes
 * of the state are refused without harm, leaving the server disconnected. */
static void test_save_restore(void **state)
{
	struct vmbus_loopback lb;
	struct testdev *td;
	assert_int_equal(vmbus_loopback_init(&lb, RAM, 2, NULL), 0);
	assert_int_equal(testdev_create(lb.srv, 0, 0, &td), 0);
	connect_and_offer(&lb);
	struct vmbus_client_channel ch;
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 16384, 16384, 1, NULL, 0), 0);
	echo_once(&ch, 100, 1);
	uint8_t *buf;
	size_t len;
	assert_int_equal(vmbus_server_save(lb.srv, &buf, &len), 0);
	uint32_t version = vmbus_server_version(lb.srv);
	char err[256];
	for (size_t cut = 0; cut < len; cut += 3) {
		vmbus_server_reset(lb.srv);
		err[0] = 0;
		assert_int_equal(vmbus_server_restore(lb.srv, buf, cut, err, sizeof(err)), -EINVAL);
		assert_true(err[0]);
		assert_int_equal(vmbus_server_version(lb.srv), 0);
	}
	uint8_t *bad = malloc(len);
	for (size_t i = 0; i < len; i += 5) {
		memcpy(bad, buf, len);
		bad[i] ^= 0x81;
		vmbus_server_reset(lb.srv);
		vmbus_server_restore(lb.srv, bad, len, err, sizeof(err)); /* refused or harmless: never a crash */
	}
	free(bad);
	vmbus_server_reset(lb.srv);
	int opened = lb.opened;
	assert_int_equal(vmbus_server_restore(lb.srv, buf, len, err, sizeof(err)), 0);
	free(buf);
	assert_int_equal(vmbus_server_version(lb.srv), version);
	assert_int_equal(lb.opened, opened + 1);
	echo_once(&ch, 2000, 5);
	assert_int_equal(lb.last_signal_vp, 1);
	/* A restored server goes on as before: the guest closes and reopens. */
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(vmbus_client_channel_open(&lb.cl, &ch, 1, 8192, 8192, 0, NULL, 0), 0);
	echo_once(&ch, 8, 6);
	/* A server with a different device in that place refuses the state. */
	assert_int_equal(vmbus_server_save(lb.srv, &buf, &len), 0);
	testdev_destroy(td);
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	vmbus_server_reset(lb.srv);
	assert_int_equal(testdev_create(lb.srv, 7, 0, &td), 0);
	assert_int_equal(vmbus_server_restore(lb.srv, buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "another device"));
	free(buf);
	testdev_destroy(td);
	vmbus_loopback_destroy(&lb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guid_parse),
		cmocka_unit_test(test_save_restore),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_version_refusals),
		cmocka_unit_test(test_offers),
		cmocka_unit_test(test_open_close_rescind_unload),
		cmocka_unit_test(test_subchannels),
		cmocka_unit_test(test_subchannels_after_primary_reopen),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_tx_busy),
		cmocka_unit_test(test_device_thread_gpadl_and_subchannels),
	};
	return cmocka_run_group_tests_name("vmbus_server", tests, NULL, NULL);
}
