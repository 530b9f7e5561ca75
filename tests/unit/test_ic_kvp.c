/* The KVP integration service (src/devices/ic_kvp.c) through the loopback guest: negotiation for
 * every version pair hv_kvp.c can choose, the reading of a fake guest's AUTO and GUEST pools (UTF-16
 * round trip, non-ASCII and surrogate pairs), kvp-set / kvp-delete reaching the guest, malformed
 * answers (sizes too big, odd byte counts, no terminator, wrong index, short), and a guest without
 * hv_kvp_daemon (the NEGOTIATE unanswered), whose daemon went away (E_FAIL) or that never answers. The guest side answers like Linux's
 * hv_kvp.c + hv_kvp_daemon, written from the wire format (include/gen2vm/proto/ic.h). */
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

#define PKT_MAX 16384
#define KVP_LEN PADDED(IC_HDRS_SIZE + sizeof(struct ic_kvp_msg))

static const struct ic_version kvp_all[] = { { 4, 0 }, { 3, 0 }, { 1, 0 } };

static void kvp_negotiate(struct fx *f, struct vmbus_client_channel *ch, struct ic_version fw, struct ic_version msg)
{
	uint8_t pkt[PKT_MAX];
	uint32_t len;
	uint64_t trans;
	assert_true(ic_guest_wait(f, ch, pkt, &len, &trans, 1000));
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	assert_int_equal(h.icmsgtype, IC_MSG_NEGOTIATE);
	struct ic_negotiate n;
	memcpy(&n, pkt + IC_HDRS_SIZE, sizeof(n));
	assert_int_equal(n.icframe_vercnt, 2);
	assert_int_equal(n.icmsg_vercnt, 3);
	struct ic_version v[5];
	memcpy(v, pkt + IC_HDRS_SIZE + sizeof(n), sizeof(v));
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(v[2 + i].major, kvp_all[i].major);
		assert_int_equal(v[2 + i].minor, kvp_all[i].minor);
	}
	n.icframe_vercnt = n.icmsg_vercnt = 1;
	memcpy(pkt + IC_HDRS_SIZE, &n, sizeof(n));
	v[0] = fw;
	v[1] = msg;
	memcpy(pkt + IC_HDRS_SIZE + sizeof(n), v, 8);
	ic_guest_respond(ch, trans, pkt, len, 0);
}

/* ---- a fake guest: the kernel and hv_kvp_daemon ---- */

struct item {
	const char *key, *value;
};

static const struct item auto_items[] = {
	{ "FullyQualifiedDomainName", "debian.example" },
	{ "IntegrationServicesVersion", "6.1.0" },
	{ "OSName", "D\xc3\xa9" "bian \xe2\x9c\x93 \xf0\x9d\x84\x9e" }, /* é, U+2713, U+1D11E (a surrogate pair) */
	{ "ProcessorArchitecture", "x86_64" },
};
static const struct item guest_items[] = { { "MyGuestKey", "42" } };

enum guest_mode { G_DAEMON, G_NODAEMON, G_SILENT };

struct guest {
	enum guest_mode mode;
	/* Corrupts the answer to AUTO item index `bad_index` with `bad` (0: none). */
	int bad;
	uint32_t bad_index;
	uint32_t answer_status; /* SET/DELETE status */
	int ip_bad;             /* GET_IP_INFO: 1 no NUL in the address list, 2 short, 3 another operation */
	unsigned ip_infos;
	char last_key[1024], last_value[4096];
	uint8_t last_op, last_pool;
	uint32_t last_key_size, last_value_size, last_value_type;
	unsigned enumerates, sets, deletes;
};

static uint32_t put_string(uint8_t *field, size_t cap, const char *s)
{
	int n = ic_kvp_utf16_encode(s, strlen(s), field, cap, 4096);
	assert_true(n > 0);
	return (uint32_t)n;
}

enum { BAD_KEY_BIG = 1, BAD_ODD, BAD_NO_NUL, BAD_VALUE_BIG, BAD_SHORT, BAD_INDEX, BAD_SURROGATE, BAD_TYPE, BAD_ZERO };

#define KVP_IP_LEN PADDED(IC_HDRS_SIZE + sizeof(struct ic_kvp_ip_msg))

/* The guest's interfaces: the adapter with MAC 00:15:5D:01:02:03 has addresses; no other. */
static int guest_ip_info(struct vmbus_client_channel *ch, struct guest *g, uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct ic_kvp_ip_msg m;
	memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
	assert_int_equal(ic_hdr_of(pkt).icmsgsize, sizeof(m));
	assert_int_equal(m.operation, IC_KVP_OP_GET_IP_INFO);
	g->ip_infos++;
	char mac[300];
	const char *why;
	assert_true(ic_kvp_utf16_decode((const uint8_t *)&m + offsetof(struct ic_kvp_ip_msg, ip.adapter_id), 36,
					256, mac, sizeof(mac), &why) == 17);
	if (g->mode != G_DAEMON || strcmp(mac, "00:15:5D:01:02:03")) {
		ic_guest_respond(ch, trans, pkt, len, IC_E_FAIL);
		return m.operation;
	}
	uint8_t *ip = (uint8_t *)&m + offsetof(struct ic_kvp_ip_msg, ip);
	m.ip.addr_family = IC_KVP_ADDR_FAMILY_IPV4 | IC_KVP_ADDR_FAMILY_IPV6;
	m.ip.dhcp_enabled = 1;
	put_string(ip + offsetof(struct ic_kvp_ipaddr_value, ip_addr), 2048, "10.0.0.5;fe80::215:5dff:fe01:203");
	put_string(ip + offsetof(struct ic_kvp_ipaddr_value, sub_net), 2048, "255.255.255.0;64");
	put_string(ip + offsetof(struct ic_kvp_ipaddr_value, gate_way), 1024, "10.0.0.1");
	put_string(ip + offsetof(struct ic_kvp_ipaddr_value, dns_addr), 2048, "10.0.0.1");
	if (g->ip_bad == 1)
		memset(ip + offsetof(struct ic_kvp_ipaddr_value, ip_addr), 'x', 2048);
	if (g->ip_bad == 3)
		m.operation = IC_KVP_OP_ENUMERATE;
	memcpy(pkt + IC_HDRS_SIZE, &m, sizeof(m));
	ic_guest_respond(ch, trans, pkt, g->ip_bad == 2 ? IC_HDRS_SIZE + 100 : len, IC_S_OK);
	return m.operation;
}

/* Waits up to ms for one request and answers it like the guest; returns its operation or -1. */
static int guest_serve(struct fx *f, struct vmbus_client_channel *ch, struct guest *g, int ms)
{
	uint8_t pkt[PKT_MAX];
	uint32_t len;
	uint64_t trans;
	if (!ic_guest_wait(f, ch, pkt, &len, &trans, ms))
		return -1;
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	assert_int_equal(h.icmsgtype, IC_MSG_KVP);
	if (len == KVP_IP_LEN)
		return guest_ip_info(ch, g, pkt, len, trans);
	assert_int_equal(len, KVP_LEN);
	assert_int_equal(h.icmsgsize, sizeof(struct ic_kvp_msg));
	struct ic_kvp_msg m;
	memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
	g->last_op = m.hdr.operation;
	g->last_pool = m.hdr.pool;
	if (g->mode == G_SILENT)
		return m.hdr.operation;
	if (g->mode == G_NODAEMON) { /* the daemon went away: hv_kvp.c fails the request */
		ic_guest_respond(ch, trans, pkt, len, IC_E_FAIL);
		return m.hdr.operation;
	}
	uint32_t status = IC_S_OK;
	const char *why;
	switch (m.hdr.operation) {
	case IC_KVP_OP_SET:
		g->sets++;
		g->last_key_size = m.body.set.key_size;
		g->last_value_size = m.body.set.value_size;
		g->last_value_type = m.body.set.value_type;
		assert_true(ic_kvp_utf16_decode(m.body.set.key, m.body.set.key_size, IC_KVP_KEY_BYTES, g->last_key,
						sizeof(g->last_key), &why) >= 0);
		assert_true(ic_kvp_utf16_decode(m.body.set.value, m.body.set.value_size, IC_KVP_VALUE_BYTES,
						g->last_value, sizeof(g->last_value), &why) >= 0);
		status = g->answer_status;
		break;
	case IC_KVP_OP_DELETE:
		g->deletes++;
		g->last_key_size = m.body.del.key_size;
		assert_true(ic_kvp_utf16_decode(m.body.del.key, m.body.del.key_size, IC_KVP_KEY_BYTES, g->last_key,
						sizeof(g->last_key), &why) >= 0);
		status = g->answer_status;
		break;
	case IC_KVP_OP_ENUMERATE: {
		g->enumerates++;
		const struct item *items = m.hdr.pool == IC_KVP_POOL_AUTO ? auto_items : guest_items;
		uint32_t n = m.hdr.pool == IC_KVP_POOL_AUTO ? 4 : 1;
		uint32_t i = m.body.enumerate.index;
		if (m.hdr.pool != IC_KVP_POOL_AUTO && m.hdr.pool != IC_KVP_POOL_GUEST)
			fail_msg("enumerate of pool %u", m.hdr.pool);
		if (i >= n) {
			status = IC_KVP_S_CONT;
			break;
		}
		struct ic_kvp_value *v = &m.body.enumerate.data;
		v->value_type = IC_KVP_REG_SZ;
		v->key_size = put_string(v->key, sizeof(v->key), items[i].key);
		v->value_size = put_string(v->value, sizeof(v->value), items[i].value);
		if (g->bad && m.hdr.pool == IC_KVP_POOL_AUTO && i == g->bad_index) {
			switch (g->bad) {
			case BAD_KEY_BIG: v->key_size = 514; break;
			case BAD_ODD: v->value_size -= 1; break;
			case BAD_NO_NUL: v->key[v->key_size - 2] = 'x'; break;
			case BAD_VALUE_BIG: v->value_size = 0x80000000u; break;
			case BAD_SHORT: len = IC_HDRS_SIZE + 40; break;
			case BAD_INDEX: m.body.enumerate.index++; break;
			case BAD_SURROGATE: v->key[0] = 0x00, v->key[1] = 0xD8; break;
			case BAD_TYPE: v->value_type = 7; break;
			case BAD_ZERO: v->key_size = 0; break;
			}
		}
		break;
	}
	default:
		fail_msg("operation %u", m.hdr.operation);
	}
	memcpy(pkt + IC_HDRS_SIZE, &m, sizeof(m));
	ic_guest_respond(ch, trans, pkt, len, status);
	return m.hdr.operation;
}

/* Serves until no request comes for ms. */
static void guest_serve_all(struct fx *f, struct vmbus_client_channel *ch, struct guest *g, int ms)
{
	while (guest_serve(f, ch, g, ms) >= 0)
		;
}

/* A verb on another thread (it waits for the guest), the guest served meanwhile. */
static int verb_served(struct fx *f, struct vmbus_client_channel *ch, struct guest *g, const char *cmd, char *reply,
		       size_t len)
{
	struct ic_fx_call c;
	ic_fx_verb_start(&c, f, cmd);
	while (!ic_fx_verb_done(&c))
		guest_serve(f, ch, g, 5);
	int rc = ic_fx_verb_join(&c);
	snprintf(reply, len, "%s", c.reply);
	return rc;
}

/* ---- tests ---- */

static void test_utf16(void **state)
{
	uint8_t b[IC_KVP_KEY_BYTES];
	char out[1024];
	const char *why;
	const char *s = auto_items[2].value;
	int n = ic_kvp_utf16_encode(s, strlen(s), b, sizeof(b), 512);
	/* D é b i a n ' ' ✓ ' ' U+1D11E (2 units) NUL: 12 units */
	assert_int_equal(n, 24);
	assert_int_equal(b[2], 0xE9);
	assert_int_equal(b[19], 0xD8); /* the high surrogate, little-endian */
	assert_int_equal(ic_kvp_utf16_decode(b, (uint32_t)n, sizeof(b), out, sizeof(out), &why), (int)strlen(s));
	assert_string_equal(out, s);
	assert_int_equal(ic_kvp_utf16_encode("", 0, b, sizeof(b), 512), 2);
	/* Not UTF-8: a lone continuation byte, an overlong form, a surrogate, an embedded NUL. */
	assert_int_equal(ic_kvp_utf16_encode("\x80", 1, b, sizeof(b), 512), -EINVAL);
	assert_int_equal(ic_kvp_utf16_encode("\xc0\xaf", 2, b, sizeof(b), 512), -EINVAL);
	assert_int_equal(ic_kvp_utf16_encode("\xed\xa0\x80", 3, b, sizeof(b), 512), -EINVAL);
	assert_int_equal(ic_kvp_utf16_encode("a\0b", 3, b, sizeof(b), 512), -EINVAL);
	/* Too long: 255 units fit a key, 256 do not; nor 512 bytes of UTF-8. */
	char big[600];
	memset(big, 'k', sizeof(big));
	assert_int_equal(ic_kvp_utf16_encode(big, 255, b, sizeof(b), 512), 512);
	assert_int_equal(ic_kvp_utf16_encode(big, 256, b, sizeof(b), 512), -E2BIG);
	assert_int_equal(ic_kvp_utf16_encode("\xc3\xa9\xc3\xa9", 4, b, sizeof(b), 4), -E2BIG);
	/* Decoding a guest's string. */
	n = ic_kvp_utf16_encode("ab", 2, b, sizeof(b), 512);
	assert_int_equal(ic_kvp_utf16_decode(b, 0, sizeof(b), out, sizeof(out), &why), -EPROTO);
	assert_int_equal(ic_kvp_utf16_decode(b, 5, sizeof(b), out, sizeof(out), &why), -EPROTO);
	assert_non_null(strstr(why, "odd"));
	assert_int_equal(ic_kvp_utf16_decode(b, 4, sizeof(b), out, sizeof(out), &why), -EPROTO);
	assert_non_null(strstr(why, "terminating NUL"));
	assert_int_equal(ic_kvp_utf16_decode(b, 514, 512, out, sizeof(out), &why), -EPROTO);
	b[2] = 0; /* "a\0" then NUL */
	assert_int_equal(ic_kvp_utf16_decode(b, 6, sizeof(b), out, sizeof(out), &why), -EPROTO);
	assert_non_null(strstr(why, "NUL inside"));
	uint8_t lone[] = { 0x00, 0xDC, 0, 0 };
	assert_int_equal(ic_kvp_utf16_decode(lone, 4, 4, out, sizeof(out), &why), -EPROTO);
	uint8_t high_end[] = { 0x00, 0xD8, 0, 0 };
	assert_int_equal(ic_kvp_utf16_decode(high_end, 4, 4, out, sizeof(out), &why), -EPROTO);
	assert_non_null(strstr(why, "surrogate"));
	/* The longest the guest can send decodes within the host's buffer. */
	uint8_t v[IC_KVP_VALUE_BYTES];
	for (unsigned i = 0; i + 2 < sizeof(v); i += 2)
		v[i] = 0x13, v[i + 1] = 0x27; /* U+2713: 3 bytes of UTF-8 each */
	v[sizeof(v) - 2] = v[sizeof(v) - 1] = 0;
	static char vo[IC_KVP_VALUE_BYTES / 2 * 3 + 1];
	assert_int_equal(ic_kvp_utf16_decode(v, sizeof(v), sizeof(v), vo, sizeof(vo), &why), 1023 * 3);
}

static void test_negotiate_every_pair(void **state)
{
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 3; j++) {
			struct vmbus_client_channel ch;
			ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
			kvp_negotiate(&f, &ch, ic_fx_fw_all[i], kvp_all[j]);
			/* The reading of the AUTO pool starts at once. */
			uint8_t pkt[PKT_MAX];
			uint32_t len;
			uint64_t trans;
			assert_true(ic_guest_wait(&f, &ch, pkt, &len, &trans, 1000));
			struct ic_msg_hdr h = ic_hdr_of(pkt);
			assert_int_equal(h.icmsgtype, IC_MSG_KVP);
			assert_int_equal(h.icverframe.major, ic_fx_fw_all[i].major);
			assert_int_equal(h.icvermsg.major, kvp_all[j].major);
			assert_int_equal(len, KVP_LEN);
			struct ic_kvp_msg m;
			memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
			assert_int_equal(m.hdr.operation, IC_KVP_OP_ENUMERATE);
			assert_int_equal(m.hdr.pool, IC_KVP_POOL_AUTO);
			assert_int_equal(m.body.enumerate.index, 0);
			vmbus_client_channel_close(&ch);
		}
	ic_fx_destroy(&f);
}

static void test_enumerate(void **state)
{
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	char reply[1024];
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "no guest KVP service connected"));
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp --bogus", reply, sizeof(reply)), -EINVAL);
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[0]);
	struct guest g = { .mode = G_DAEMON };
	guest_serve_all(&f, &ch, &g, 50);
	assert_int_equal(g.enumerates, 4 + 1 + 1 + 1); /* AUTO 0-3 and its end, GUEST 0 and its end */
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "FullyQualifiedDomainName=debian.example; IntegrationServicesVersion=6.1.0; "
				   "OSName=D\xc3\xa9" "bian \xe2\x9c\x93 \xf0\x9d\x84\x9e; ProcessorArchitecture=x86_64; "
				   "guest/MyGuestKey=42");
	assert_int_equal(verb_served(&f, &ch, &g, "kvp --json", reply, sizeof(reply)), 0);
	struct json_object *o = json_tokener_parse(reply), *a, *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "auto", &a));
	assert_true(json_object_object_get_ex(a, "OSName", &v));
	assert_string_equal(json_object_get_string(v), auto_items[2].value);
	assert_true(json_object_object_get_ex(o, "guest", &a));
	assert_true(json_object_object_get_ex(a, "MyGuestKey", &v));
	assert_true(json_object_object_get_ex(o, "host", &a));
	assert_int_equal(json_object_object_length(a), 0);
	json_object_put(o);
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
}

static void test_set_delete(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.verb_wait_ms = 1000;
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	char reply[1024];
	/* Before the guest connects: kept, pushed when it does. */
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp-set Early v1", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "kept"));
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp-set", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp-set \xff v", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp-delete Nope", reply, sizeof(reply)), -ENOENT);
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[1]);
	struct guest g = { .mode = G_DAEMON };
	assert_int_equal(guest_serve(&f, &ch, &g, 1000), IC_KVP_OP_SET);
	assert_string_equal(g.last_key, "Early");
	assert_int_equal(g.last_pool, IC_KVP_POOL_EXTERNAL);
	guest_serve_all(&f, &ch, &g, 50);
	/* A set while connected: the value is the rest of the line, sizes in bytes with the NUL. */
	assert_int_equal(verb_served(&f, &ch, &g, "kvp-set Clé bar baz", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "Clé set in the guest's pool 0 (/var/lib/hyperv/.kvp_pool_0)");
	assert_int_equal(g.last_op, IC_KVP_OP_SET);
	assert_int_equal(g.last_pool, IC_KVP_POOL_EXTERNAL);
	assert_string_equal(g.last_key, "Clé");
	assert_string_equal(g.last_value, "bar baz");
	assert_int_equal(g.last_key_size, 8);
	assert_int_equal(g.last_value_size, 16);
	assert_int_equal(g.last_value_type, IC_KVP_REG_SZ);
	/* It shows among the host's values. */
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "; host/Early=v1; host/Clé=bar baz"));
	assert_int_equal(verb_served(&f, &ch, &g, "kvp-delete Clé", reply, sizeof(reply)), 0);
	assert_int_equal(g.last_op, IC_KVP_OP_DELETE);
	assert_string_equal(g.last_key, "Clé");
	assert_int_equal(g.last_key_size, 8);
	assert_string_equal(reply, "Clé deleted in the guest's pool 0 (/var/lib/hyperv/.kvp_pool_0)");
	/* The guest has no such key. */
	g.answer_status = IC_KVP_S_CONT;
	assert_int_equal(verb_served(&f, &ch, &g, "kvp-delete Gone", reply, sizeof(reply)), -ENOENT);
	assert_non_null(strstr(reply, "refused (status 0x80070103)"));
	vmbus_client_channel_close(&ch);
	/* Reconnected: the host's pool (Early only now) is pushed again. */
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[0]);
	g = (struct guest){ .mode = G_DAEMON };
	guest_serve_all(&f, &ch, &g, 50);
	assert_int_equal(g.sets, 1);
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

static void test_malformed(void **state)
{
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	char reply[1024];
	for (int bad = BAD_KEY_BIG; bad <= BAD_ZERO; bad++) {
		struct vmbus_client_channel ch;
		ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
		kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[0]);
		struct guest g = { .mode = G_DAEMON, .bad = bad, .bad_index = 1 };
		guest_serve_all(&f, &ch, &g, 50);
		/* Item 1 is dropped, the others are kept. */
		assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
		if (strstr(reply, "IntegrationServicesVersion") || !strstr(reply, "ProcessorArchitecture=x86_64"))
			fail_msg("corruption %d: %s", bad, reply);
		assert_non_null(strstr(reply, "FullyQualifiedDomainName=debian.example; OSName="));
		vmbus_client_channel_close(&ch);
	}
	ic_fx_destroy(&f);
}

static void test_no_daemon(void **state)
{
	struct ic_tunables saved = ic_tunables;
	ic_tunables.verb_wait_ms = 200;
	ic_tunables.kvp_ms = 100;
	struct fx f;
	ic_fx_init(&f, NULL, NULL);
	char reply[1024];
	struct vmbus_client_channel ch;
	/* No daemon registered: Linux's hv_kvp.c leaves even the NEGOTIATE unread. */
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "the guest's KVP service does not answer (is hv_kvp_daemon running?)");
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp-set K V0", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "K kept; the guest gets it when its KVP service connects (is hv_kvp_daemon running?)");
	/* The daemon registers (the NEGOTIATE is answered late), then goes away: the kernel fails
	 * what it was asked (IC_E_FAIL). */
	vmbus_loopback_wait(&f.lb, 300);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[1], kvp_all[2]);
	struct guest g = { .mode = G_NODAEMON };
	assert_int_equal(guest_serve(&f, &ch, &g, 1000), IC_KVP_OP_SET); /* the kept K first */
	assert_int_equal(guest_serve(&f, &ch, &g, 1000), IC_KVP_OP_ENUMERATE);
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), -EIO);
	assert_string_equal(reply, "the guest's KVP service does not answer (is hv_kvp_daemon running?)");
	assert_int_equal(verb_served(&f, &ch, &g, "kvp-set K V", reply, sizeof(reply)), -EIO);
	assert_string_equal(reply, "the guest's KVP service does not answer (is hv_kvp_daemon running?)");
	/* A guest that never answers: the verb gives up, and so does the device at its next ticks. */
	g.mode = G_SILENT;
	assert_int_equal(verb_served(&f, &ch, &g, "kvp-set K V2", reply, sizeof(reply)), -ETIMEDOUT);
	assert_string_equal(reply, "the guest's KVP service does not answer (is hv_kvp_daemon running?)");
	/* The daemon starts: the next tick's reading goes through. */
	g.mode = G_DAEMON;
	for (int i = 0; i < 100 && g.enumerates < 7; i++)
		guest_serve(&f, &ch, &g, 10);
	assert_true(g.enumerates >= 7);
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "OSName="));
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
	ic_tunables = saved;
}

/* Two adapters; the guest has an interface for the first. */
static unsigned two_nics(void *opaque, struct vmdev_nic *out, unsigned max)
{
	static const struct vmdev_nic n[2] = { { 0, { 0x00, 0x15, 0x5d, 0x01, 0x02, 0x03 } },
					       { 3, { 0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c } } };
	unsigned k = max < 2 ? max : 2;
	memcpy(out, n, k * sizeof(*out));
	return k;
}

static void test_ip_info(void **state)
{
	struct fx f;
	struct vmdev_host hooks = { .nics = two_nics };
	ic_fx_init(&f, NULL, &hooks);
	char reply[2048];
	struct json_object *o = json_object_new_object();
	vmdev_set_status(&f.set, o, reply, sizeof(reply)); /* no reading yet: unknown */
	assert_non_null(strstr(reply, "guest addresses unknown"));
	json_object_put(o);
	/* Version 4.0: after the pools, one GET_IP_INFO per adapter, named by its MAC. */
	struct vmbus_client_channel ch;
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[0]);
	struct guest g = { .mode = G_DAEMON };
	guest_serve_all(&f, &ch, &g, 50);
	assert_int_equal(g.ip_infos, 2);
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "guest/MyGuestKey=42; adapter 0 (00:15:5D:01:02:03): 10.0.0.5, "
				      "fe80::215:5dff:fe01:203 (DHCP); adapter 3 (00:15:5D:0A:0B:0C): no interface "
				      "with this MAC in the guest"));
	assert_int_equal(verb_served(&f, &ch, &g, "kvp --json", reply, sizeof(reply)), 0);
	o = json_tokener_parse(reply);
	struct json_object *a, *x, *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "adapters", &a));
	assert_int_equal(json_object_array_length(a), 2);
	x = json_object_array_get_idx(a, 0);
	assert_true(json_object_object_get_ex(x, "mac", &v));
	assert_string_equal(json_object_get_string(v), "00:15:5D:01:02:03");
	assert_true(json_object_object_get_ex(x, "addresses", &v));
	assert_int_equal(json_object_array_length(v), 2);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 1)), "fe80::215:5dff:fe01:203");
	assert_true(json_object_object_get_ex(x, "gateways", &v));
	assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "10.0.0.1");
	assert_true(json_object_object_get_ex(x, "dhcp", &v) && json_object_get_boolean(v));
	x = json_object_array_get_idx(a, 1);
	assert_true(json_object_object_get_ex(x, "error", &v));
	assert_string_equal(json_object_get_string(v), "no interface with this MAC in the guest");
	json_object_put(o);
	/* The VM's status carries them. */
	o = json_object_new_object();
	reply[0] = 0;
	vmdev_set_status(&f.set, o, reply, sizeof(reply));
	assert_non_null(strstr(reply, "; guest adapter 0 (00:15:5D:01:02:03): 10.0.0.5, fe80::215:5dff:fe01:203 (DHCP)"));
	assert_true(json_object_object_get_ex(o, "adapters", &a));
	assert_int_equal(json_object_array_length(a), 2);
	assert_true(json_object_object_get_ex(o, "heartbeat", &a));
	json_object_put(o);
	/* Malformed answers: the adapter's addresses are dropped, the reading completes. */
	for (int bad = 1; bad <= 3; bad++) {
		g.ip_bad = bad;
		assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
		if (!strstr(reply, "adapter 0 (00:15:5D:01:02:03): the guest's answer was malformed"))
			fail_msg("corruption %d: %s", bad, reply);
	}
	vmbus_client_channel_close(&ch);
	/* Versions before 4.0 have no GET_IP_INFO. */
	ic_fx_open(&f, IC_KVP_CLASS_GUID_TEXT, &ch);
	kvp_negotiate(&f, &ch, ic_fx_fw_all[0], kvp_all[1]);
	g = (struct guest){ .mode = G_DAEMON };
	guest_serve_all(&f, &ch, &g, 50);
	assert_int_equal(g.ip_infos, 0);
	assert_int_equal(verb_served(&f, &ch, &g, "kvp", reply, sizeof(reply)), 0);
	assert_null(strstr(reply, "adapter"));
	vmbus_client_channel_close(&ch);
	ic_fx_destroy(&f);
}

static void test_settings(void **state)
{
	struct fx f;
	char reply[256];
	ic_fx_init(&f, "kvp", NULL);
	assert_non_null(ic_fx_offer(&f, IC_KVP_CLASS_GUID_TEXT));
	assert_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	ic_fx_destroy(&f);
	ic_fx_init(&f, "heartbeat", NULL);
	assert_null(ic_fx_offer(&f, IC_KVP_CLASS_GUID_TEXT));
	assert_int_equal(ic_fx_verb(&f, NULL, "kvp", reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "not offered"));
	ic_fx_destroy(&f);
	ic_fx_init(&f, NULL, NULL);
	assert_non_null(ic_fx_offer(&f, IC_KVP_CLASS_GUID_TEXT));
	ic_fx_destroy(&f);
}

int main(void)
{
	log_set_level(LOG_ERROR + 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf16),
		cmocka_unit_test(test_negotiate_every_pair),
		cmocka_unit_test(test_enumerate),
		cmocka_unit_test(test_set_delete),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_no_daemon),
		cmocka_unit_test(test_ip_info),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests_name("ic_kvp", tests, NULL, NULL);
}
