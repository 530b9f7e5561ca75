#include "ic_fixture.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

const struct ic_version ic_fx_fw_all[2] = { { 3, 0 }, { 1, 0 } };

void ic_fx_init(struct fx *f, const char *list, const struct vmdev_host *hooks)
{
	memset(f, 0, sizeof(*f));
	char err[256];
	if (list)
		assert_int_equal(vmdev_config_add_option(&f->cfg, "integration-services", list, err, sizeof(err)), 0);
	assert_int_equal(vmdev_config_validate(&f->cfg, err, sizeof(err)), 0);
	assert_int_equal(vmbus_loopback_init(&f->lb, 64ull << 20, 1, NULL), 0);
	pthread_mutex_init(&f->lock, NULL);
	f->h = (struct vmdev_host){ .srv = f->lb.srv, .srv_lock = &f->lock, .mem = &f->lb.mem, .nr_vcpus = 1,
				    .vm_name = "t" };
	if (hooks) {
		f->h.opaque = hooks->opaque;
		f->h.stop_vm = hooks->stop_vm;
		f->h.utc_now = hooks->utc_now;
		f->h.ref_time_now = hooks->ref_time_now;
		f->h.nics = hooks->nics;
	}
	assert_int_equal(vmdev_set_create(&f->set, &f->h, &f->cfg, err, sizeof(err)), 0);
	assert_int_equal(vmbus_client_connect(&f->lb.cl, 0, 0), 0);
	assert_int_equal(vmbus_client_request_offers(&f->lb.cl), 0);
}

void ic_fx_destroy(struct fx *f)
{
	vmdev_set_destroy(&f->set);
	vmdev_config_free(&f->cfg);
	vmbus_loopback_destroy(&f->lb);
	pthread_mutex_destroy(&f->lock);
}

int ic_fx_verb(struct fx *f, const char *cls, const char *cmd, char *reply, size_t len)
{
	char buf[4096], *argv[16];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", cmd);
	for (char *save, *t = strtok_r(buf, " ", &save); t && argc < 16; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	for (unsigned i = 0; i < f->set.n; i++)
		for (const struct vmdev_verb *v = f->set.run[i].cls->verbs; v && v->name; v++)
			if (!strcmp(v->name, argv[0]) && (!cls || !strcmp(f->set.run[i].cls->name, cls)))
				return v->fn(f->set.run[i].state, argc, argv, reply, len);
	fail_msg("no verb %s", argv[0]);
	return -1;
}

static void *ic_fx_call_thread(void *arg)
{
	struct ic_fx_call *c = arg;
	c->rc = ic_fx_verb(c->f, NULL, c->cmd, c->reply, sizeof(c->reply));
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
	return NULL;
}

void ic_fx_verb_start(struct ic_fx_call *c, struct fx *f, const char *cmd)
{
	memset(c, 0, sizeof(*c));
	c->f = f;
	snprintf(c->cmd, sizeof(c->cmd), "%s", cmd);
	assert_int_equal(pthread_create(&c->t, NULL, ic_fx_call_thread, c), 0);
}

bool ic_fx_verb_done(struct ic_fx_call *c)
{
	return __atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
}

int ic_fx_verb_join(struct ic_fx_call *c)
{
	assert_int_equal(pthread_join(c->t, NULL), 0);
	return c->rc;
}

const struct vmbus_client_offer *ic_fx_offer(struct fx *f, const char *guid)
{
	struct vmbus_guid g;
	assert_int_equal(vmbus_guid_parse(guid, &g), 0);
	return vmbus_client_find_offer(&f->lb.cl, &g, 0);
}

void ic_fx_open(struct fx *f, const char *guid, struct vmbus_client_channel *ch)
{
	const struct vmbus_client_offer *o = ic_fx_offer(f, guid);
	assert_non_null(o);
	assert_int_equal(vmbus_client_channel_open(&f->lb.cl, ch, o->msg.child_relid, 12288, 12288, 0, NULL, 0), 0);
}

bool ic_guest_recv(struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans)
{
	static uint8_t raw[16384 + 64];
	uint32_t n;
	if (vmbus_client_recv(ch, raw, sizeof(raw), &n))
		return false;
	vmbus_client_recv_done(ch);
	struct vmbus_packet_descriptor d;
	memcpy(&d, raw, sizeof(d));
	assert_int_equal(d.type, VM_PKT_DATA_INBAND);
	*len = n - d.offset8 * 8u;
	memcpy(pkt, raw + d.offset8 * 8u, *len);
	*trans = d.trans_id;
	return true;
}

bool ic_guest_wait(struct fx *f, struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans,
		   int ms)
{
	for (int i = 0; i <= ms / 5; i++) {
		if (ic_guest_recv(ch, pkt, len, trans))
			return true;
		vmbus_loopback_wait(&f->lb, 5);
	}
	return false;
}

struct ic_msg_hdr ic_hdr_of(const uint8_t *pkt)
{
	struct ic_msg_hdr h;
	memcpy(&h, pkt + sizeof(struct ic_pipe_hdr), sizeof(h));
	return h;
}

void ic_guest_send(struct vmbus_client_channel *ch, uint64_t trans, const uint8_t *pkt, uint32_t len)
{
	assert_int_equal(vmbus_client_send(ch, VM_PKT_DATA_INBAND, 0, trans, NULL, 0, pkt, len), 0);
}

void ic_guest_respond(struct vmbus_client_channel *ch, uint64_t trans, uint8_t *pkt, uint32_t len, uint32_t status)
{
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.status = status;
	memcpy(pkt + sizeof(struct ic_pipe_hdr), &h, sizeof(h));
	ic_guest_send(ch, trans, pkt, len);
}

void ic_guest_negotiate(struct vmbus_client_channel *ch, const struct ic_version *want_msg, unsigned nr_msg,
			struct ic_version fw, struct ic_version msg)
{
	uint8_t pkt[4096];
	uint32_t len;
	uint64_t trans;
	assert_true(ic_guest_recv(ch, pkt, &len, &trans));
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	assert_int_equal(h.icmsgtype, IC_MSG_NEGOTIATE);
	assert_int_equal(h.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.ictransaction_id, (uint8_t)trans);
	struct ic_negotiate n;
	memcpy(&n, pkt + IC_HDRS_SIZE, sizeof(n));
	assert_int_equal(n.icframe_vercnt, 2);
	assert_int_equal(n.icmsg_vercnt, nr_msg);
	assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(n) + (2 + nr_msg) * 4));
	assert_int_equal(h.icmsgsize, sizeof(n) + (2 + nr_msg) * 4);
	struct ic_version v[16];
	memcpy(v, pkt + IC_HDRS_SIZE + sizeof(n), (2 + nr_msg) * 4);
	assert_int_equal(v[0].major, 3);
	assert_int_equal(v[1].major, 1);
	for (unsigned i = 0; i < nr_msg; i++) {
		assert_int_equal(v[2 + i].major, want_msg[i].major);
		assert_int_equal(v[2 + i].minor, want_msg[i].minor);
	}
	n.icframe_vercnt = n.icmsg_vercnt = fw.major ? 1 : 0;
	memcpy(pkt + IC_HDRS_SIZE, &n, sizeof(n));
	v[0] = fw;
	v[1] = msg;
	memcpy(pkt + IC_HDRS_SIZE + sizeof(n), v, 8);
	ic_guest_respond(ch, trans, pkt, len, 0);
}
