/* The integration services (src/devices/ic*.c) driven through the loopback guest: version
 * negotiation for every framework/service pair Linux's hv_utils can choose, answers a hostile guest
 * may give (unoffered versions, counts 0, truncated, wrong transaction ids, garbage), the heartbeat
 * and its loss, the shutdown verb (accepted, refused, restart, --force and its timeout), time sync's
 * layout per version with fake clocks, and the integration-services setting. The guest side here is
 * written from the wire format (include/gen2vm/proto/ic.h), answering like Linux's hv_utils. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"
#include "ic_fixture.h"
#include "support/loopback.h"
#include "util/log.h"

/* ---- fake host hooks ---- */

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned fake_stops;
static bool fake_stop_reboot;
static char fake_stop_why[256];

static void fake_stop_vm(void *opaque, bool reboot, const char *why)
{
	pthread_mutex_lock(&fake_lock);
	fake_stops++;
	fake_stop_reboot = reboot;
	snprintf(fake_stop_why, sizeof(fake_stop_why), "%s", why);
	pthread_mutex_unlock(&fake_lock);
}

static unsigned fake_stops_get(void)
{
	pthread_mutex_lock(&fake_lock);
	unsigned n = fake_stops;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

#define FAKE_UTC 0x01dc5a1b2c3d4e5full
#define FAKE_REF 0x0000001234567890ull

static volatile int64_t fake_utc_shift; /* 100 ns units: the VM's clock moved */

static uint64_t fake_utc_now(void *opaque)
{
	return FAKE_UTC + (uint64_t)fake_utc_shift;
}

static uint64_t fake_ref_time_now(void *opaque)
{
	return FAKE_REF;
}

/* ---- a VM with its integration services, and a guest ---- */


/* ---- a VM with its integration services, and a guest (ic_fixture.h) ---- */

/* list: --integration-services (NULL: the defaults); ref: give the reference time hook. */
static void fx_init(struct fx *f, const char *list, bool ref)
{
	fake_stops = 0;
	struct vmdev_host hooks = { .stop_vm = fake_stop_vm, .utc_now = fake_utc_now,
				    .ref_time_now = ref ? fake_ref_time_now : NULL };
	ic_fx_init(f, list, &hooks);
}

static const struct ic_version hb_all[] = { { 3, 0 }, { 1, 0 } };
static const struct ic_version sd_all[] = { { 3, 2 }, { 3, 1 }, { 3, 0 }, { 1, 0 } };
static const struct ic_version ts_all[] = { { 4, 0 }, { 3, 0 }, { 1, 0 } };

/* ---- the session, pure ---- */

static const struct ic_service_def test_def = {
	.name = "test", .msgtype = IC_MSG_SHUTDOWN, .fw = ic_fx_fw_all, .nr_fw = 2, .msg = sd_all, .nr_msg = 4,
};

/* An answer to the session's NEGOTIATE in buf (as built) with counts c and versions fw/msg. */
static uint32_t nego_answer(uint8_t *buf, int len, uint16_t c, struct ic_version fw, struct ic_version msg)
{
	struct ic_msg_hdr h = ic_hdr_of(buf);
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(buf + sizeof(struct ic_pipe_hdr), &h, sizeof(h));
	struct ic_negotiate n = { .icframe_vercnt = c, .icmsg_vercnt = c };
	memcpy(buf + IC_HDRS_SIZE, &n, sizeof(n));
	memcpy(buf + IC_HDRS_SIZE + 8, &fw, 4);
	memcpy(buf + IC_HDRS_SIZE + 12, &msg, 4);
	return (uint32_t)len;
}

static void test_session_every_pair(void **state)
{
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 4; j++) {
			struct ic_session s;
			ic_session_init(&s, &test_def);
			uint8_t buf[IC_PACKET_MAX];
			uint64_t trans;
			int len = ic_session_start(&s, buf, sizeof(buf), &trans);
			assert_int_equal(len, IC_HDRS_SIZE + 8 + 6 * 4);
			assert_int_equal(s.state, IC_NEGOTIATING);
			struct ic_reply r;
			const char *why;
			uint32_t n = nego_answer(buf, len, 1, ic_fx_fw_all[i], sd_all[j]);
			assert_int_equal(ic_session_reply(&s, trans, buf, n, &r, &why), IC_REPLY_NEGOTIATED);
			assert_int_equal(s.state, IC_READY);
			assert_int_equal(s.fw.major, ic_fx_fw_all[i].major);
			assert_int_equal(s.msg.major, sd_all[j].major);
			assert_int_equal(s.msg.minor, sd_all[j].minor);
			/* Requests carry the chosen versions. */
			uint32_t body = 0x12345678;
			len = ic_session_request(&s, &body, 4, buf, sizeof(buf), &trans);
			assert_int_equal(len, IC_HDRS_SIZE + 4);
			struct ic_msg_hdr h = ic_hdr_of(buf);
			assert_int_equal(h.icverframe.major, ic_fx_fw_all[i].major);
			assert_int_equal(h.icvermsg.minor, sd_all[j].minor);
			assert_int_equal(h.icmsgtype, IC_MSG_SHUTDOWN);
			assert_int_equal(h.icmsgsize, 4);
			h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
			h.status = IC_E_FAIL;
			memcpy(buf + 8, &h, sizeof(h));
			assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), IC_REPLY_MESSAGE);
			assert_int_equal(r.status, IC_E_FAIL);
			assert_int_equal(r.body_len, 4);
			/* Answered: a second answer is stale. */
			assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -ESTALE);
		}
}

static void test_session_bad_answers(void **state)
{
	struct ic_session s;
	ic_session_init(&s, &test_def);
	uint8_t buf[IC_PACKET_MAX], keep[IC_PACKET_MAX];
	uint64_t trans;
	struct ic_reply r;
	const char *why = NULL;
	/* Nothing asked yet. */
	assert_int_equal(ic_session_reply(&s, 1, buf, 0, &r, &why), -ESTALE);
	int len = ic_session_start(&s, buf, sizeof(buf), &trans);
	memcpy(keep, buf, sizeof(keep));
	/* An unoffered version, either kind. */
	nego_answer(buf, len, 1, (struct ic_version){ 2, 0 }, sd_all[0]);
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	assert_non_null(strstr(why, "not offered"));
	nego_answer(buf, len, 1, ic_fx_fw_all[0], (struct ic_version){ 4, 0 });
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	/* Counts other than 1/1 and 0/0. */
	nego_answer(buf, len, 2, ic_fx_fw_all[0], sd_all[0]);
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	/* Truncated: the headers, the version pair. */
	nego_answer(buf, len, 1, ic_fx_fw_all[0], sd_all[0]);
	for (uint32_t n = 0; n < IC_HDRS_SIZE + 16; n++)
		assert_int_equal(ic_session_reply(&s, trans, buf, n, &r, &why), -EPROTO);
	/* Another VMBus transaction: stale; another header transaction id, not a response, another type. */
	assert_int_equal(ic_session_reply(&s, trans + 1, buf, (uint32_t)len, &r, &why), -ESTALE);
	struct ic_msg_hdr h = ic_hdr_of(buf);
	h.ictransaction_id++;
	memcpy(buf + 8, &h, sizeof(h));
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	h.ictransaction_id--;
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST;
	memcpy(buf + 8, &h, sizeof(h));
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.icmsgtype = IC_MSG_HEARTBEAT;
	memcpy(buf + 8, &h, sizeof(h));
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), -EPROTO);
	/* Garbage. */
	srand(7);
	for (int k = 0; k < 2000; k++) {
		for (size_t i = 0; i < 64; i++)
			buf[i] = (uint8_t)rand();
		int rc = ic_session_reply(&s, trans, buf, (uint32_t)(rand() % 65), &r, &why);
		assert_true(rc == -EPROTO || rc == IC_REPLY_REFUSED || rc == IC_REPLY_NEGOTIATED);
		if (rc != -EPROTO)
			break;
	}
	/* Still negotiating after all that: a right answer goes through; before it, requests wait. */
	ic_session_init(&s, &test_def);
	len = ic_session_start(&s, buf, sizeof(buf), &trans);
	assert_int_equal(ic_session_request(&s, "x", 1, keep, sizeof(keep), &trans), -EAGAIN);
	nego_answer(buf, len, 0, (struct ic_version){ 0, 0 }, (struct ic_version){ 0, 0 });
	assert_int_equal(ic_session_reply(&s, trans, buf, (uint32_t)len, &r, &why), IC_REPLY_REFUSED);
	assert_int_equal(s.state, IC_REFUSED);
	assert_int_equal(ic_session_request(&s, "x", 1, keep, sizeof(keep), &trans), -EAGAIN);
}

/* ---- every service, every pair, over VMBus ---- */

static void test_negotiate_every_service_pair(void **state)
{
	struct {
		const char *guid;
		const struct ic_version *v;
		unsigned n;
		uint16_t type;
	} svc[] = {
		{ IC_HEARTBEAT_CLASS_GUID_TEXT, hb_all, 2, IC_MSG_HEARTBEAT },
		{ IC_SHUTDOWN_CLASS_GUID_TEXT, sd_all, 4, IC_MSG_SHUTDOWN },
		{ IC_TIMESYNC_CLASS_GUID_TEXT, ts_all, 3, IC_MSG_TIMESYNC },
	};
	struct fx f;
	fx_init(&f, NULL, true);
	for (unsigned k = 0; k < 3; k++)
		for (unsigned i = 0; i < 2; i++)
			for (unsigned j = 0; j < svc[k].n; j++) {
				struct vmbus_client_channel ch;
				ic_fx_open(&f, svc[k].guid, &ch);
				ic_guest_negotiate(&ch, svc[k].v, svc[k].n, ic_fx_fw_all[i], svc[k].v[j]);
				if (svc[k].type != IC_MSG_SHUTDOWN) { /* the first beat or sample follows */
					uint8_t pkt[4096];
					uint32_t len;
					uint64_t trans;
					assert_true(ic_guest_recv(&ch, pkt, &len, &trans));
					struct ic_msg_hdr h = ic_hdr_of(pkt);
					assert_int_equal(h.icmsgtype, svc[k].type);
					assert_int_equal(h.icverframe.major, ic_fx_fw_all[i].major);
					assert_int_equal(h.icvermsg.major, svc[k].v[j].major);
					assert_int_equal(h.icvermsg.minor, svc[k].v[j].minor);
				}
				vmbus_client_channel_close(&ch);
			}
	ic_fx_destroy(&f);
}

/* A guest that answers badly is logged and ignored; the device keeps working. */
static void test_hostile_answers_over_vmbus(void **state)
{
	struct fx f;
	fx_init(&f, NULL, true);
	char reply[256];
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_HEARTBEAT_CLASS_GUID_TEXT, &ch);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	assert_true(ic_guest_recv(&ch, pkt, &len, &trans));
	/* Garbage of every length up to the NEGOTIATE's, a wrong VMBus transaction, a completion. */
	uint8_t junk[128];
	for (uint32_t n = 0; n <= len; n += 4) {
		memset(junk, 0xA5 ^ n, sizeof(junk));
		assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, trans, NULL, 0, junk, n), 0);
	}
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_DATA_INBAND, 0, trans + 5, NULL, 0, pkt, len), 0);
	assert_int_equal(vmbus_client_send(&ch, VM_PKT_COMP, 0, trans, NULL, 0, pkt, len), 0);
	/* An unoffered version. */
	uint8_t bad[4096];
	memcpy(bad, pkt, len);
	nego_answer(bad, (int)len, 1, ic_fx_fw_all[0], (struct ic_version){ 9, 9 });
	ic_guest_send(&ch, trans, bad, len);
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "not answered the version negotiation"));
	/* Then the right answer. */
	nego_answer(pkt, (int)len, 1, ic_fx_fw_all[0], hb_all[0]);
	ic_guest_send(&ch, trans, pkt, len);
	assert_true(ic_guest_recv(&ch, pkt, &len, &trans));
	assert_int_equal(ic_hdr_of(pkt).icmsgtype, IC_MSG_HEARTBEAT);
	vmbus_client_channel_close(&ch);

	/* Counts 0: the guest speaks none of them. */
	ic_fx_open(&f, IC_HEARTBEAT_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, hb_all, 2, (struct ic_version){ 0, 0 }, (struct ic_version){ 0, 0 });
	assert_false(ic_guest_recv(&ch, pkt, &len, &trans));
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "none of the heartbeat versions"));
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
}

/* ---- heartbeat ---- */

static void test_heartbeat_and_loss(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.heartbeat_ms = 20;
	struct fx f;
	fx_init(&f, NULL, true);
	char reply[256];
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "no contact"));
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat extra", reply, sizeof(reply)), -EINVAL);

	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_HEARTBEAT_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, hb_all, 2, ic_fx_fw_all[0], hb_all[0]);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	/* A few beats answered seq + 1. */
	for (int i = 0; i < 3; i++) {
		assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
		assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(struct ic_heartbeat)));
		assert_int_equal(ic_hdr_of(pkt).icmsgsize, sizeof(struct ic_heartbeat));
		struct ic_heartbeat hb;
		memcpy(&hb, pkt + IC_HDRS_SIZE, sizeof(hb));
		hb.seq_num++;
		memcpy(pkt + IC_HDRS_SIZE, &hb, sizeof(hb));
		ic_guest_respond(&ch, trans, pkt, len, 0);
	}
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "ok (version 3.0, 3 beats); last beat "));
	/* Wrong answers (same sequence, short body) do not count; then silence: lost. */
	assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
	ic_guest_respond(&ch, trans, pkt, len, 0);
	for (int i = 0; i < 10; i++) {
		assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
		if (i == 0)
			ic_guest_respond(&ch, trans, pkt, IC_HDRS_SIZE + 4, 0);
	}
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "lost ("));
	/* The guest comes back. */
	while (ic_guest_recv(&ch, pkt, &len, &trans))
		;
	assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
	struct ic_heartbeat hb;
	memcpy(&hb, pkt + IC_HDRS_SIZE, sizeof(hb));
	hb.seq_num++;
	memcpy(pkt + IC_HDRS_SIZE, &hb, sizeof(hb));
	ic_guest_respond(&ch, trans, pkt, len, 0);
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "ok (version 3.0, 4 beats)"));
	vmbus_client_channel_close(&ch);
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "no contact (the guest has not opened"));
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

/* ---- shutdown ---- */

/* Runs the shutdown verb on another thread (it waits for the guest) and answers the request with
 * status (no answer when status is 1); returns the request's flags and timeout. */
static void shutdown_round(struct fx *f, struct vmbus_client_channel *ch, const char *cmd, uint32_t status,
			   struct ic_fx_call *c, struct ic_shutdown *seen)
{
	ic_fx_verb_start(c, f, cmd);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	int i = 0;
	while (!ic_guest_recv(ch, pkt, &len, &trans) && i++ < 2000)
		usleep(1000);
	assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(struct ic_shutdown)));
	assert_int_equal(ic_hdr_of(pkt).icmsgtype, IC_MSG_SHUTDOWN);
	memcpy(seen, pkt + IC_HDRS_SIZE, sizeof(*seen));
	if (status != 1)
		ic_guest_respond(ch, trans, pkt, len, status);
	ic_fx_verb_join(c);
}

static void test_shutdown(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.verb_wait_ms = 200;
	struct fx f;
	fx_init(&f, NULL, true);
	char reply[256];
	/* Nobody listening. */
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "no guest shutdown service connected");
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown --timeout 0", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown --bogus", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(fake_stops_get(), 0);
	/* --force without a connected service: the guest gets the timeout, then the VM is turned off. */
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown --force --timeout 1", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "no guest shutdown service connected: turned off if it still runs in 1 s");
	assert_int_equal(fake_stops_get(), 0);
	for (int i = 0; i < 400 && fake_stops_get() < 1; i++)
		usleep(5000);
	assert_int_equal(fake_stops_get(), 1);
	assert_false(fake_stop_reboot);
	assert_non_null(strstr(fake_stop_why, "did not shut down within 1 s"));

	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_SHUTDOWN_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, sd_all, 4, ic_fx_fw_all[0], sd_all[0]);
	struct ic_fx_call c;
	struct ic_shutdown m;
	shutdown_round(&f, &ch, "shutdown", IC_S_OK, &c, &m);
	assert_int_equal(c.rc, 0);
	assert_string_equal(c.reply, "the guest accepted to shut down");
	assert_int_equal(m.flags, 0);
	assert_int_equal(m.timeout_seconds, 60);
	shutdown_round(&f, &ch, "shutdown --reboot --timeout 30", IC_S_OK, &c, &m);
	assert_int_equal(m.flags, IC_SHUTDOWN_FLAG_RESTART);
	assert_int_equal(m.timeout_seconds, 30);
	assert_string_equal(c.reply, "the guest accepted to restart");
	shutdown_round(&f, &ch, "shutdown", IC_E_FAIL, &c, &m);
	assert_int_equal(c.rc, -EIO);
	assert_string_equal(c.reply, "the guest refused to shut down (status 0x80004005)");
	shutdown_round(&f, &ch, "shutdown", 1, &c, &m);
	assert_int_equal(c.rc, -ETIMEDOUT);
	assert_int_equal(fake_stops_get(), 1);

	/* --force: refused, turned off at once; accepted but still running after the timeout: off. */
	shutdown_round(&f, &ch, "shutdown --force", IC_E_FAIL, &c, &m);
	assert_int_equal(c.rc, 0);
	assert_int_equal(m.flags, IC_SHUTDOWN_FLAG_FORCE);
	for (int i = 0; i < 200 && fake_stops_get() < 2; i++)
		usleep(5000);
	assert_int_equal(fake_stops_get(), 2);
	shutdown_round(&f, &ch, "shutdown --force --reboot --timeout 1", IC_S_OK, &c, &m);
	assert_string_equal(c.reply, "the guest accepted to restart; reset if it still runs in 1 s");
	assert_int_equal(fake_stops_get(), 2);
	for (int i = 0; i < 400 && fake_stops_get() < 3; i++)
		usleep(5000);
	assert_int_equal(fake_stops_get(), 3);
	assert_true(fake_stop_reboot);
	assert_non_null(strstr(fake_stop_why, "did not restart within 1 s"));
	vmbus_client_channel_close(&ch);

	/* Version 3.0 cannot restart. */
	ic_fx_open(&f, IC_SHUTDOWN_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, sd_all, 4, ic_fx_fw_all[1], sd_all[2]);
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown --reboot", reply, sizeof(reply)), -EOPNOTSUPP);
	assert_non_null(strstr(reply, "cannot restart"));
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

/* ---- time sync ---- */

static void test_timesync_layouts(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.timesync_ms = 20;
	struct fx f;
	fx_init(&f, NULL, true);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	for (unsigned j = 0; j < 3; j++) {
		struct vmbus_client_channel ch;
		ic_fx_open(&f, IC_TIMESYNC_CLASS_GUID_TEXT, &ch);
		ic_guest_negotiate(&ch, ts_all, 3, ic_fx_fw_all[0], ts_all[j]);
		for (int k = 0; k < 2; k++) { /* SYNC first, then SAMPLEs */
			assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
			uint8_t want = k ? IC_TIMESYNC_FLAG_SAMPLE : IC_TIMESYNC_FLAG_SYNC;
			if (ts_all[j].major == 4) {
				struct ic_timesync_v4 m;
				assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(m)));
				assert_int_equal(ic_hdr_of(pkt).icmsgsize, sizeof(m));
				memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
				assert_true(m.parenttime == FAKE_UTC);
				assert_true(m.vmreferencetime == FAKE_REF);
				assert_int_equal(m.flags, want);
			} else {
				struct ic_timesync_v3 m;
				assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(m)));
				assert_int_equal(ic_hdr_of(pkt).icmsgsize, sizeof(m));
				memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
				assert_true(m.parenttime == FAKE_UTC);
				assert_true(m.childtime == 0);
				assert_int_equal(m.flags, want);
			}
			ic_guest_respond(&ch, trans, pkt, len, 0);
		}
		char reply[256], want[64];
		assert_int_equal(ic_fx_verb(&f, "timesync", "timesync", reply, sizeof(reply)), 0);
		snprintf(want, sizeof(want), "ok (version %u.0, ", ts_all[j].major);
		assert_non_null(strstr(reply, want));
		assert_non_null(strstr(reply, "2 answered, 0 clock steps)"));
		vmbus_client_channel_close(&ch);
		assert_int_equal(ic_fx_verb(&f, "timesync", "timesync", reply, sizeof(reply)), 0);
		assert_non_null(strstr(reply, "no contact"));
	}
	ic_fx_destroy(&f);
	/* Without a reference time source, 4.0 is not offered. */
	fx_init(&f, NULL, false);
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_TIMESYNC_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, ts_all + 1, 2, ic_fx_fw_all[0], ts_all[1]);
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

/* The VM's clock moves (`clock --offset`): the next tick steps the guest with SYNC. */
static void test_timesync_step(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.timesync_ms = 20;
	struct fx f;
	fx_init(&f, NULL, true);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_TIMESYNC_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, ts_all, 3, ic_fx_fw_all[0], ts_all[0]);
	struct ic_timesync_v4 m;
	for (int k = 0; k < 5; k++) {
		if (k == 2)
			fake_utc_shift = 36000000000ll; /* one hour ahead */
		assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
		memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
		uint8_t want = k == 0 || k == 2 ? IC_TIMESYNC_FLAG_SYNC : IC_TIMESYNC_FLAG_SAMPLE;
		if (m.flags != want)
			fail_msg("sample %d: flags %u", k, m.flags);
		assert_true(m.parenttime == FAKE_UTC + (k >= 2 ? 36000000000ull : 0));
		ic_guest_respond(&ch, trans, pkt, len, 0);
	}
	char reply[256];
	assert_int_equal(ic_fx_verb(&f, "timesync", "timesync", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "1 clock steps)"));
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	fake_utc_shift = 0;
	ic_tunables = saved;
}

/* The heartbeat in the VM's status: not offered, no contact, ok with the last beat. */
static void test_heartbeat_status(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.heartbeat_ms = 20;
	struct fx f;
	char text[512] = "";
	fx_init(&f, "none", true);
	struct json_object *o = json_object_new_object(), *hb, *v;
	vmdev_set_status(&f.set, o, text, sizeof(text));
	assert_string_equal(text, "; heartbeat not offered");
	json_object_put(o);
	ic_fx_destroy(&f);
	fx_init(&f, NULL, true);
	text[0] = 0;
	o = json_object_new_object();
	vmdev_set_status(&f.set, o, text, sizeof(text));
	assert_string_equal(text, "; heartbeat no contact");
	assert_true(json_object_object_get_ex(o, "heartbeat", &hb));
	assert_true(json_object_object_get_ex(hb, "state", &v));
	assert_string_equal(json_object_get_string(v), "no contact");
	json_object_put(o);
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_HEARTBEAT_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, hb_all, 2, ic_fx_fw_all[0], hb_all[0]);
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 500));
	struct ic_heartbeat b;
	memcpy(&b, pkt + IC_HDRS_SIZE, sizeof(b));
	b.seq_num++;
	memcpy(pkt + IC_HDRS_SIZE, &b, sizeof(b));
	ic_guest_respond(&ch, trans, pkt, len, 0);
	vmbus_loopback_wait(&f.lb, 50);
	text[0] = 0;
	o = json_object_new_object();
	vmdev_set_status(&f.set, o, text, sizeof(text));
	assert_non_null(strstr(text, "; heartbeat ok (last beat 20"));
	assert_true(json_object_object_get_ex(o, "heartbeat", &hb));
	assert_true(json_object_object_get_ex(hb, "state", &v));
	assert_string_equal(json_object_get_string(v), "ok");
	assert_true(json_object_object_get_ex(hb, "last_beat", &v));
	assert_int_equal(strlen(json_object_get_string(v)), 20); /* 2026-12-07T11:20:03Z */
	json_object_put(o);
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

/* ---- settings ---- */

static void test_settings(void **state)
{
	char err[256], reply[256];
	struct vmdev_config cfg = { 0 };
	assert_int_equal(vmdev_config_add_option(&cfg, "integration-services", "shutdown,bogus", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'bogus'"));
	assert_int_equal(vmdev_config_add_option(&cfg, "integration-services", "", err, sizeof(err)), -EINVAL);
	struct json_object *a = json_tokener_parse("[\"timesync\", \"heartbeat\"]");
	assert_int_equal(vmdev_config_add_json(&cfg, "integration_services", a, err, sizeof(err)), 0);
	json_object_put(a);
	a = json_tokener_parse("[3]");
	assert_int_equal(vmdev_config_add_json(&cfg, "integration_services", a, err, sizeof(err)), -EINVAL);
	json_object_put(a);
	assert_int_equal(cfg.n, 2);
	vmdev_config_free(&cfg);

	struct fx f;
	fx_init(&f, "heartbeat", true);
	assert_non_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	assert_null(ic_fx_offer(&f, IC_SHUTDOWN_CLASS_GUID_TEXT));
	assert_null(ic_fx_offer(&f, IC_TIMESYNC_CLASS_GUID_TEXT));
	assert_int_equal(ic_fx_verb(&f, "shutdown", "shutdown", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "not offered"));
	ic_fx_destroy(&f);
	fx_init(&f, "none", true);
	assert_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	assert_int_equal(ic_fx_verb(&f, "heartbeat", "heartbeat", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "heartbeat not offered (see --integration-services)");
	ic_fx_destroy(&f);
	fx_init(&f, NULL, true);
	assert_non_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	assert_non_null(ic_fx_offer(&f, IC_SHUTDOWN_CLASS_GUID_TEXT));
	assert_non_null(ic_fx_offer(&f, IC_TIMESYNC_CLASS_GUID_TEXT));
	ic_fx_destroy(&f);
}

int main(void)
{
	log_set_level(LOG_ERROR + 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_every_pair),
		cmocka_unit_test(test_session_bad_answers),
		cmocka_unit_test(test_negotiate_every_service_pair),
		cmocka_unit_test(test_hostile_answers_over_vmbus),
		cmocka_unit_test(test_heartbeat_and_loss),
		cmocka_unit_test(test_shutdown),
		cmocka_unit_test(test_timesync_layouts),
		cmocka_unit_test(test_timesync_step),
		cmocka_unit_test(test_heartbeat_status),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests_name("ic", tests, NULL, NULL);
}
