/* The backup (VSS) integration service (src/devices/ic_vss.c) driven through the loopback guest:
 * negotiation of VSS 5.0 (with either framework version, and a guest that refuses), freeze answered
 * ok / E_FAIL, a guest that does not answer in time (the request stays outstanding; a late answer is
 * counted, an answer to a replaced request ignored), thaw (also when not frozen), auto-thaw, not
 * offered, no contact, and malformed or short answers. The guest side answers like Linux's
 * hv_snapshot.c: the same packet back, its result in the header's status. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "devices/ic_vss.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"
#include "ic_fixture.h"
#include "support/loopback.h"

static const struct ic_version vss_all[] = { { 5, 0 } };

/* A VM offering VSS (list NULL: the defaults) with its channel open and 5.0 agreed on fw. */
static void fx_ready(struct fx *f, struct vmbus_client_channel *ch, const char *list, struct ic_version fw)
{
	ic_fx_init(f, list, NULL);
	ic_fx_open(f, IC_VSS_CLASS_GUID_TEXT, ch);
	ic_guest_negotiate(ch, vss_all, 1, fw, (struct ic_version){ 5, 0 });
}

/* The next host request (waits up to 3 s, letting the host's timers fire): checks its framing and
 * returns its operation. */
static uint8_t guest_next(struct fx *f, struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans)
{
	assert_true(ic_guest_wait(f, ch, pkt, len, trans, 3000));
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	assert_int_equal(h.icmsgtype, IC_MSG_VSS);
	assert_int_equal(h.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.icvermsg.major, 5);
	assert_int_equal(h.icvermsg.minor, 0);
	assert_int_equal(h.icmsgsize, sizeof(struct ic_vss_msg));
	assert_int_equal(*len, PADDED(IC_HDRS_SIZE + sizeof(struct ic_vss_msg)));
	struct ic_vss_msg m;
	memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
	for (int i = 0; i < 7; i++)
		assert_int_equal(m.hdr.reserved[i], 0);
	assert_int_equal(m.flags, 0);
	return m.hdr.operation;
}

static void status_is(struct fx *f, const char *want_sub)
{
	char reply[512];
	assert_int_equal(ic_fx_verb(f, NULL, "vss", reply, sizeof(reply)), 0);
	if (!strstr(reply, want_sub))
		fail_msg("vss: '%s' lacks '%s'", reply, want_sub);
}

/* freeze, the guest answers status; returns the verb's result. */
static int freeze_answered(struct fx *f, struct vmbus_client_channel *ch, const char *cmd, uint32_t status,
			   struct ic_fx_call *c)
{
	uint8_t pkt[256];
	uint32_t len;
	uint64_t trans;
	ic_fx_verb_start(c, f, cmd);
	assert_int_equal(guest_next(f, ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	ic_guest_respond(ch, trans, pkt, len, status);
	return ic_fx_verb_join(c);
}

static int thaw_answered(struct fx *f, struct vmbus_client_channel *ch, uint32_t status, struct ic_fx_call *c)
{
	uint8_t pkt[256];
	uint32_t len;
	uint64_t trans;
	ic_fx_verb_start(c, f, "thaw");
	assert_int_equal(guest_next(f, ch, pkt, &len, &trans), IC_VSS_OP_THAW);
	ic_guest_respond(ch, trans, pkt, len, status);
	return ic_fx_verb_join(c);
}

static void test_negotiate(void **state)
{
	/* each framework version the host offers, with the one service version (5.0) */
	for (unsigned i = 0; i < 2; i++) {
		struct fx f;
		struct vmbus_client_channel ch;
		fx_ready(&f, &ch, NULL, ic_fx_fw_all[i]);
		status_is(&f, "vss ok (version 5.0; not frozen)");
		ic_fx_destroy(&f);
	}
	/* a guest that speaks none of them */
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, "vss", (struct ic_version){ 0, 0 });
	status_is(&f, "vss no contact (the guest speaks none of the backup (VSS) versions offered (5.0))");
	char reply[512];
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "no contact"));
	ic_fx_destroy(&f);
}

static void test_freeze_thaw(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, NULL, (struct ic_version){ 3, 0 });
	struct ic_fx_call c;
	assert_int_equal(freeze_answered(&f, &ch, "freeze", IC_S_OK, &c), 0);
	assert_non_null(strstr(c.reply, "the guest's file systems are frozen (hv_vss_daemon answered in "));
	status_is(&f, "frozen since ");
	/* The VM's status says so too. */
	char reply[512] = "";
	struct json_object *o = json_object_new_object(), *b, *v;
	vmdev_set_status(&f.set, o, reply, sizeof(reply));
	assert_non_null(strstr(reply, "; file systems frozen since "));
	assert_true(json_object_object_get_ex(o, "backup", &b) && json_object_object_get_ex(b, "state", &v));
	assert_string_equal(json_object_get_string(v), "frozen");
	json_object_put(o);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -EALREADY);
	assert_non_null(strstr(reply, "already frozen"));
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	assert_string_equal(c.reply, "thawed");
	status_is(&f, "not frozen");
	/* again, with a --timeout */
	assert_int_equal(freeze_answered(&f, &ch, "freeze --timeout 5", IC_S_OK, &c), 0);
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	/* bad arguments go nowhere */
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze --timeout 0", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze --timeout 56", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze --timeout x", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze --auto-thaw -1", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze now", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "thaw now", reply, sizeof(reply)), -EINVAL);
	uint8_t pkt[256];
	uint32_t len;
	uint64_t trans;
	assert_false(ic_guest_recv(&ch, pkt, &len, &trans));
	ic_fx_destroy(&f);
}

static void test_refused(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, NULL, (struct ic_version){ 3, 0 });
	struct ic_fx_call c;
	/* no hv_vss_daemon: Linux's kernel answers E_FAIL at once */
	assert_int_equal(freeze_answered(&f, &ch, "freeze", IC_E_FAIL, &c), -EIO);
	assert_string_equal(c.reply, "the guest refused to freeze (status 0x80004005: is hv_vss_daemon running?)");
	status_is(&f, "not frozen");
	/* thaw while not frozen still goes out, and says so */
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	assert_string_equal(c.reply, "thawed (this host had not seen the guest frozen)");
	assert_int_equal(thaw_answered(&f, &ch, IC_E_FAIL, &c), -EIO);
	assert_non_null(strstr(c.reply, "the guest refused to thaw (status 0x80004005"));
	/* a refused THAW leaves a frozen guest frozen */
	assert_int_equal(freeze_answered(&f, &ch, "freeze", IC_S_OK, &c), 0);
	assert_int_equal(thaw_answered(&f, &ch, IC_E_FAIL, &c), -EIO);
	status_is(&f, "frozen since ");
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	status_is(&f, "not frozen");
	ic_fx_destroy(&f);
}

static void test_timeout_then_late(void **state)
{
	uint32_t saved_s = ic_vss_second_ms, saved_t = ic_vss_thaw_wait_ms;
	ic_vss_second_ms = 50;
	ic_vss_thaw_wait_ms = 100;
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, NULL, (struct ic_version){ 3, 0 });
	uint8_t pkt[256], fpkt[256];
	uint32_t len, flen;
	uint64_t trans, ftrans;
	struct ic_fx_call c;
	char reply[512];

	/* 1: the guest is slow; its late "frozen" is taken into account */
	ic_fx_verb_start(&c, &f, "freeze --timeout 2");
	assert_int_equal(guest_next(&f, &ch, fpkt, &flen, &ftrans), IC_VSS_OP_FREEZE);
	assert_int_equal(ic_fx_verb_join(&c), -ETIMEDOUT);
	assert_non_null(strstr(c.reply, "no answer within 2 s: the FREEZE stays outstanding and a late answer will be logged"));
	status_is(&f, "not frozen; FREEZE sent ");
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -EBUSY);
	assert_false(ic_guest_recv(&ch, pkt, &len, &trans)); /* nothing more went out */
	ic_guest_respond(&ch, ftrans, fpkt, flen, IC_S_OK);
	status_is(&f, "frozen since ");
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	assert_string_equal(c.reply, "thawed");

	/* 2: a THAW replaces the unanswered FREEZE; the FREEZE's late answer is then ignored */
	ic_fx_verb_start(&c, &f, "freeze --timeout 1");
	assert_int_equal(guest_next(&f, &ch, fpkt, &flen, &ftrans), IC_VSS_OP_FREEZE);
	assert_int_equal(ic_fx_verb_join(&c), -ETIMEDOUT);
	ic_fx_verb_start(&c, &f, "thaw");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_THAW);
	ic_guest_respond(&ch, ftrans, fpkt, flen, IC_S_OK); /* as Linux: the FREEZE first */
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), 0);
	assert_string_equal(c.reply, "thawed (this host had not seen the guest frozen)");
	status_is(&f, "not frozen)");
	/* a duplicate answer, and one nobody asked for: dropped quietly */
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	ic_guest_respond(&ch, ftrans, fpkt, flen, IC_S_OK);
	status_is(&f, "vss ok (version 5.0; not frozen)");

	/* 3: thaw with no answer */
	ic_fx_verb_start(&c, &f, "thaw");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_THAW);
	assert_int_equal(ic_fx_verb_join(&c), -ETIMEDOUT);
	assert_non_null(strstr(c.reply, "no answer within 0.1 s: the THAW stays outstanding"));
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	status_is(&f, "vss ok (version 5.0; not frozen)");

	/* 4: the guest closes the channel while a freeze waits */
	ic_fx_verb_start(&c, &f, "freeze --timeout 55");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	vmbus_client_channel_close(&ch);
	assert_int_equal(ic_fx_verb_join(&c), -ECONNRESET);
	status_is(&f, "vss no contact (the guest has not opened the backup (VSS) channel: is hv_utils loaded?)");
	ic_fx_destroy(&f);
	ic_vss_second_ms = saved_s;
	ic_vss_thaw_wait_ms = saved_t;
}

static void test_auto_thaw(void **state)
{
	uint32_t saved_s = ic_vss_second_ms;
	ic_vss_second_ms = 20;
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, NULL, (struct ic_version){ 3, 0 });
	struct ic_fx_call c;
	uint8_t pkt[256];
	uint32_t len;
	uint64_t trans;
	assert_int_equal(freeze_answered(&f, &ch, "freeze --auto-thaw 3", IC_S_OK, &c), 0);
	assert_non_null(strstr(c.reply, "; auto-thaw in 3 s unless `thaw` comes first"));
	status_is(&f, "; auto-thaw in ");
	/* the host thaws by itself */
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_THAW);
	status_is(&f, "frozen since "); /* until the guest answers */
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	status_is(&f, "vss ok (version 5.0; not frozen)");
	/* a thaw first disarms it */
	assert_int_equal(freeze_answered(&f, &ch, "freeze --auto-thaw 5", IC_S_OK, &c), 0);
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);
	assert_false(ic_guest_wait(&f, &ch, pkt, &len, &trans, 300));
	/* a freeze without it is not thawed behind the user's back */
	assert_int_equal(freeze_answered(&f, &ch, "freeze", IC_S_OK, &c), 0);
	assert_false(ic_guest_wait(&f, &ch, pkt, &len, &trans, 300));
	status_is(&f, "frozen since ");
	ic_fx_destroy(&f);
	ic_vss_second_ms = saved_s;
}

static void test_not_offered(void **state)
{
	struct fx f;
	ic_fx_init(&f, "shutdown,heartbeat,timesync,kvp", NULL);
	assert_null(ic_fx_offer(&f, IC_VSS_CLASS_GUID_TEXT));
	char reply[512];
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "no backup (VSS) integration service: not offered (see --integration-services)");
	assert_int_equal(ic_fx_verb(&f, NULL, "thaw", reply, sizeof(reply)), -ENOTCONN);
	status_is(&f, "vss not offered (see --integration-services)");
	ic_fx_destroy(&f);
	/* on by default, and under both its names */
	const char *lists[] = { NULL, "default", "none,vss", "backup" };
	for (unsigned i = 0; i < 4; i++) {
		ic_fx_init(&f, lists[i], NULL);
		assert_non_null(ic_fx_offer(&f, IC_VSS_CLASS_GUID_TEXT));
		ic_fx_destroy(&f);
	}
	assert_true(ic_settings_enabled(NULL, 0, IC_SVC_VSS));
}

static void test_no_contact(void **state)
{
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	char reply[512];
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "no contact: the guest has not opened the backup (VSS) channel: is hv_utils loaded?");
	assert_int_equal(ic_fx_verb(&f, NULL, "thaw", reply, sizeof(reply)), -ENOTCONN);
	status_is(&f, "vss no contact (the guest has not opened");
	/* open, but the NEGOTIATE not answered */
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_VSS_CLASS_GUID_TEXT, &ch);
	assert_int_equal(ic_fx_verb(&f, NULL, "freeze", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "has not answered the backup (VSS) version negotiation"));
	ic_fx_destroy(&f);
}

static void test_malformed(void **state)
{
	uint32_t saved_s = ic_vss_second_ms;
	ic_vss_second_ms = 50;
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch, NULL, (struct ic_version){ 3, 0 });
	uint8_t pkt[256], bad[256];
	uint32_t len;
	uint64_t trans;
	struct ic_fx_call c;

	/* shorter than the headers, another message type, not a response: dropped, still pending */
	ic_fx_verb_start(&c, &f, "freeze --timeout 40");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	memcpy(bad, pkt, len);
	ic_guest_send(&ch, trans, bad, 8);
	ic_guest_send(&ch, trans, bad, IC_HDRS_SIZE - 1);
	struct ic_msg_hdr h = ic_hdr_of(bad);
	h.icmsgtype = IC_MSG_KVP;
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(bad + sizeof(struct ic_pipe_hdr), &h, sizeof(h));
	ic_guest_send(&ch, trans, bad, len);
	memcpy(bad, pkt, len);
	ic_guest_send(&ch, trans, bad, len); /* still marked a request */
	ic_guest_send(&ch, trans + 1000, bad, len); /* another transaction */
	status_is(&f, "FREEZE sent ");
	/* then the right answer */
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), 0);
	assert_int_equal(thaw_answered(&f, &ch, IC_S_OK, &c), 0);

	/* an answer with only the headers (no message) */
	ic_fx_verb_start(&c, &f, "freeze");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	ic_guest_respond(&ch, trans, pkt, IC_HDRS_SIZE, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), -EPROTO);
	assert_non_null(strstr(c.reply, "malformed"));
	status_is(&f, "not frozen");

	/* 4 bytes of message: short of the 12 */
	ic_fx_verb_start(&c, &f, "freeze");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	ic_guest_respond(&ch, trans, pkt, IC_HDRS_SIZE + 4, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), -EPROTO);

	/* an answer about another operation */
	ic_fx_verb_start(&c, &f, "freeze");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	pkt[IC_HDRS_SIZE] = IC_VSS_OP_THAW;
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), -EPROTO);
	status_is(&f, "vss ok (version 5.0; not frozen)");

	/* a thaw's malformed answer */
	ic_fx_verb_start(&c, &f, "thaw");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_THAW);
	ic_guest_respond(&ch, trans, pkt, IC_HDRS_SIZE + 3, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), -EPROTO);

	/* a longer answer than the request (padding, a guest's extra bytes) is fine */
	ic_fx_verb_start(&c, &f, "freeze");
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_VSS_OP_FREEZE);
	memset(pkt + len, 0xee, 64);
	ic_guest_respond(&ch, trans, pkt, len + 64, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), 0);
	ic_fx_destroy(&f);
	ic_vss_second_ms = saved_s;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_negotiate),     cmocka_unit_test(test_freeze_thaw), cmocka_unit_test(test_refused),
		cmocka_unit_test(test_timeout_then_late), cmocka_unit_test(test_auto_thaw), cmocka_unit_test(test_not_offered),
		cmocka_unit_test(test_no_contact),    cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
