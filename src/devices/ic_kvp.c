/* The KVP (key-value pair exchange) integration service (class a9a0f4e7-..., Linux hv_utils' KVP,
 * relayed by the guest's kernel to hv_kvp_daemon). Versions offered: 4.0, 3.0, 1.0, as
 * drivers/hv/hv_kvp.c lists them; the operations used here have one layout in all three.
 *
 * Linux's hv_kvp.c leaves the channel unread until hv_kvp_daemon registers: without the daemon even
 * the NEGOTIATE goes unanswered (the session stays IC_NEGOTIATING, which the verbs report as "is
 * hv_kvp_daemon running?"); the daemon's start answers it. While the daemon handles a request the
 * kernel reads nothing more, and it fails the request with IC_E_FAIL when the daemon goes away
 * (and after HV_UTIL_TIMEOUT, 30 s, without an answer).
 *
 * What the host does, one request at a time (the protocol's rule):
 *  - reads the guest's values: ENUMERATE on pool AUTO with index 0, 1, 2... until the guest answers
 *    a non-zero status (hv_kvp_daemon: HV_S_CONT past the last item), then the same on pool GUEST;
 *    when the channel opens, every ic_tunables.kvp_ms (30 s) and when the `kvp` verb asks;
 *  - then, with version 4.0, asks for each network adapter's addresses (GET_IP_INFO, the adapter
 *    named by its MAC; vmdev_host.nics lists them), as Hyper-V does for Get-VMNetworkAdapter;
 *  - pushes the host's pool (EXTERNAL, 0), which the user sets with `kvp-set` and `kvp-delete`, with
 *    SET and DELETE; the pool is kept here and pushed again whenever the channel opens (a rebooted
 *    guest starts from its own file, /var/lib/hyperv/.kvp_pool_0).
 * A request the guest has not answered after two ticks is given up (its late answer is stale).
 * Every answer is checked (operation, pool, index, sizes, UTF-16) before anything is kept: a
 * malformed one is logged with log_guest and dropped (an ENUMERATE item is skipped).
 *
 * Control verbs: `kvp [--json]`, `kvp-set KEY VALUE`, `kvp-delete KEY`; the VM's `status` shows the
 * adapters' addresses. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/text.h"

static const struct ic_version kvp_versions[] = { { 4, 0 }, { 3, 0 }, { 1, 0 } };

static const struct ic_service_def kvp_def = {
	.name = "KVP",
	.msgtype = IC_MSG_KVP,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = kvp_versions,
	.nr_msg = 3,
};

/* ---- UTF-8 <-> UTF-16LE ---- */

/* One code point from s (n bytes left) into *cp; returns its length, or 0 when invalid. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t len;
	uint32_t c, min;
	if ((s[0] & 0xE0) == 0xC0)
		len = 2, c = s[0] & 0x1F, min = 0x80;
	else if ((s[0] & 0xF0) == 0xE0)
		len = 3, c = s[0] & 0x0F, min = 0x800;
	else if ((s[0] & 0xF8) == 0xF0)
		len = 4, c = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

static void put16(uint8_t *p, uint32_t u)
{
	p[0] = (uint8_t)u;
	p[1] = (uint8_t)(u >> 8);
}

int ic_kvp_utf16_encode(const char *s, size_t len, uint8_t *out, size_t cap, size_t utf8_max)
{
	if (len + 1 > utf8_max)
		return -E2BIG;
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = utf8_next(u + i, len - i, &cp);
		if (!k || cp == 0)
			return -EINVAL;
		i += k;
		size_t need = cp >= 0x10000 ? 4 : 2;
		if (o + need + 2 > cap)
			return -E2BIG;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			put16(out + o, 0xD800 | (cp >> 10));
			put16(out + o + 2, 0xDC00 | (cp & 0x3FF));
		} else {
			put16(out + o, cp);
		}
		o += need;
	}
	if (o + 2 > cap)
		return -E2BIG;
	put16(out + o, 0);
	return (int)(o + 2);
}

int ic_kvp_utf16_decode(const uint8_t *in, uint32_t size, size_t cap, char *out, size_t outcap, const char **why)
{
	if (size == 0 || size > cap) {
		*why = "has a string size of 0 or beyond its field";
		return -EPROTO;
	}
	if (size & 1) {
		*why = "has an odd UTF-16 byte count";
		return -EPROTO;
	}
	uint32_t units = size / 2;
	if (in[size - 2] | in[size - 1]) {
		*why = "has a string without its terminating NUL";
		return -EPROTO;
	}
	size_t o = 0;
	for (uint32_t i = 0; i + 1 < units; i++) {
		uint32_t c = in[2 * i] | (uint32_t)in[2 * i + 1] << 8;
		if (c == 0) {
			*why = "has a NUL inside a string";
			return -EPROTO;
		}
		if (c >= 0xD800 && c <= 0xDFFF) {
			uint32_t lo = i + 2 < units ? (in[2 * i + 2] | (uint32_t)in[2 * i + 3] << 8) : 0;
			if (c >= 0xDC00 || lo < 0xDC00 || lo > 0xDFFF) {
				*why = "has an unpaired UTF-16 surrogate";
				return -EPROTO;
			}
			c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
			i++;
		}
		if (o + 5 > outcap) {
			*why = "has a string longer than this host keeps";
			return -EPROTO;
		}
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xC0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xE0 | (c >> 12));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else {
			out[o++] = (char)(0xF0 | (c >> 18));
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		}
	}
	out[o] = 0;
	return (int)o;
}

/* ---- the device ---- */

#define KVP_QUEUE     16u /* SET/DELETE requests waiting to go out */
#define KVP_ITEMS_MAX 64u /* items read per pool; a guest that lists more is cut there */
#define KVP_HOST_MAX  64u /* entries of the host's pool */

/* The UTF-8 forms: at most 3 bytes per UTF-16 unit (a surrogate pair is 4 bytes for 2 units). */
#define KVP_KEY_UTF8   (IC_KVP_KEY_BYTES / 2 * 3 + 1)
#define KVP_VALUE_UTF8 (IC_KVP_VALUE_BYTES / 2 * 3 + 1)

/* Outcomes of a SET/DELETE besides the guest's status. */
#define KVP_ST_NONE      0xFFFFFFFFu /* not done yet */
#define KVP_ST_UNSENT    0xFFFFFFFEu /* could not be sent (channel closed, ring full) */
#define KVP_ST_MALFORMED 0xFFFFFFFDu /* the guest's answer was malformed */
#define KVP_ST_LOST      0xFFFFFFFCu /* no answer by the next tick */

struct kvp_item {
	char *key, *value;
};

struct kvp_list {
	struct kvp_item v[KVP_ITEMS_MAX];
	unsigned n;
};

struct kvp_op {
	uint8_t op; /* IC_KVP_OP_SET / DELETE, on pool EXTERNAL */
	uint64_t id;
	char *key, *value;
};

enum kvp_busy { KVP_IDLE, KVP_BUSY_OP, KVP_BUSY_ENUM };

#define KVP_PHASE_IP 0xFFu /* enum_pool while the adapters' addresses are read (GET_IP_INFO) */
#define KVP_IP_UTF8  (IC_KVP_IP_ADDR_UNITS * 3 + 1)

/* One adapter's addresses as the guest reported them. */
struct kvp_adapter {
	struct vmdev_nic nic;
	uint32_t status; /* the guest's answer (IC_E_FAIL: no interface with this MAC), or KVP_ST_* */
	uint8_t family, dhcp;
	char *ip, *subnet, *gateway, *dns; /* ';'-separated lists, as hv_kvp_daemon gives them */
};

struct kvp_adapters {
	struct kvp_adapter v[VMDEV_NICS_MAX];
	unsigned n;
};

struct kvp {
	struct ic_dev *d; /* NULL: not offered */
	/* Under d->lock. */
	struct kvp_list pools[2]; /* the last complete reading: [0] AUTO, [1] GUEST */
	struct kvp_list staging;  /* the reading under way, of enum_pool */
	struct kvp_list host;     /* pool EXTERNAL as the user set it (value NULL: none) */
	struct kvp_adapters adapters, ip_staging; /* the last complete reading, the one under way */
	struct kvp_op q[KVP_QUEUE];
	unsigned qhead, qn;
	enum kvp_busy busy;
	struct kvp_op cur; /* BUSY_OP */
	uint64_t cur_tick; /* ticks when it went out */
	bool enumerating;
	uint8_t enum_pool;
	uint32_t enum_index;
	uint64_t readings;        /* complete readings since the channel opened */
	uint64_t attempts;        /* readings ended, complete or not */
	uint32_t last_fail;       /* status that ended the last reading at its first item (0: none) */
	uint64_t next_id;
	uint64_t st_id[KVP_QUEUE]; /* the last outcomes, by id % KVP_QUEUE */
	uint32_t st[KVP_QUEUE];
	uint64_t ticks;
	struct vmdev_host vh;
	struct ic_kvp_msg m, ans; /* a request being built, an answer read */
	struct ic_kvp_ip_msg ipm; /* a GET_IP_INFO, or its answer */
	char ipbuf[KVP_IP_UTF8];  /* an address list being decoded */
	char key[KVP_KEY_UTF8], value[KVP_VALUE_UTF8]; /* an item being decoded */
};

static void kvp_list_clear(struct kvp_list *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	l->n = 0;
}

static void kvp_adapters_clear(struct kvp_adapters *a)
{
	for (unsigned i = 0; i < a->n; i++) {
		struct kvp_adapter *x = &a->v[i];
		free(x->ip);
		free(x->subnet);
		free(x->gateway);
		free(x->dns);
	}
	memset(a, 0, sizeof(*a));
}

static void kvp_op_free(struct kvp_op *o)
{
	free(o->key);
	free(o->value);
	o->key = o->value = NULL;
}

static void kvp_done(struct kvp *k, uint64_t id, uint32_t status)
{
	k->st_id[id % KVP_QUEUE] = id;
	k->st[id % KVP_QUEUE] = status;
}

static uint32_t kvp_outcome(const struct kvp *k, uint64_t id)
{
	return k->st_id[id % KVP_QUEUE] == id ? k->st[id % KVP_QUEUE] : KVP_ST_NONE;
}

/* The reading ends (complete or not). */
static void kvp_enum_end(struct kvp *k, bool complete, uint32_t fail)
{
	k->enumerating = false;
	kvp_list_clear(&k->staging);
	kvp_adapters_clear(&k->ip_staging);
	k->attempts++;
	k->last_fail = fail;
	if (complete)
		k->readings++;
}

/* The GET_IP_INFO for the adapter at enum_index into k->ipm: its MAC as the guest's sysfs spells
 * it, in upper case. */
static void kvp_ip_request(struct kvp *k)
{
	const uint8_t *m = k->ip_staging.v[k->enum_index].nic.mac;
	char mac[18];
	snprintf(mac, sizeof(mac), "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
	memset(&k->ipm, 0, sizeof(k->ipm));
	k->ipm.operation = IC_KVP_OP_GET_IP_INFO;
	k->ipm.pool = IC_KVP_POOL_EXTERNAL;
	ic_kvp_utf16_encode(mac, strlen(mac), (uint8_t *)&k->ipm + offsetof(struct ic_kvp_ip_msg, ip.adapter_id),
			    sizeof(k->ipm.ip.adapter_id),
			    sizeof(k->ipm.ip.adapter_id));
}

/* Sends the next request when none is out (the lock held): queued SET/DELETEs first, then the
 * reading under way. */
static void kvp_pump(struct ic_dev *d)
{
	struct kvp *k = d->svc;
	while (k->busy == KVP_IDLE) {
		memset(&k->m, 0, sizeof(k->m));
		k->m.hdr.pool = IC_KVP_POOL_EXTERNAL;
		if (k->qn) {
			k->cur = k->q[k->qhead];
			k->qhead = (k->qhead + 1) % KVP_QUEUE;
			k->qn--;
			k->m.hdr.operation = k->cur.op;
			int r;
			if (k->cur.op == IC_KVP_OP_SET) {
				k->m.body.set.value_type = IC_KVP_REG_SZ;
				r = ic_kvp_utf16_encode(k->cur.key, strlen(k->cur.key), k->m.body.set.key,
							IC_KVP_KEY_BYTES, IC_KVP_KEY_BYTES);
				k->m.body.set.key_size = (uint32_t)r; /* checked by the verb */
				r = ic_kvp_utf16_encode(k->cur.value, strlen(k->cur.value), k->m.body.set.value,
							IC_KVP_VALUE_BYTES, IC_KVP_VALUE_BYTES);
				k->m.body.set.value_size = (uint32_t)r;
			} else {
				r = ic_kvp_utf16_encode(k->cur.key, strlen(k->cur.key), k->m.body.del.key,
							IC_KVP_KEY_BYTES, IC_KVP_KEY_BYTES);
				k->m.body.del.key_size = (uint32_t)r;
			}
			if (ic_dev_send(d, &k->m, sizeof(k->m), NULL)) {
				kvp_done(k, k->cur.id, KVP_ST_UNSENT);
				kvp_op_free(&k->cur);
				continue;
			}
			k->busy = KVP_BUSY_OP;
			k->cur_tick = k->ticks;
			return;
		}
		if (!k->enumerating)
			return;
		if (k->enum_pool == KVP_PHASE_IP) {
			kvp_ip_request(k);
			if (ic_dev_send(d, &k->ipm, sizeof(k->ipm), NULL)) {
				kvp_enum_end(k, false, 0);
				return;
			}
			k->busy = KVP_BUSY_ENUM;
			k->cur_tick = k->ticks;
			return;
		}
		k->m.hdr.operation = IC_KVP_OP_ENUMERATE;
		k->m.hdr.pool = k->enum_pool;
		k->m.body.enumerate.index = k->enum_index;
		if (ic_dev_send(d, &k->m, sizeof(k->m), NULL)) {
			kvp_enum_end(k, false, 0);
			return;
		}
		k->busy = KVP_BUSY_ENUM;
		k->cur_tick = k->ticks;
	}
}

static void kvp_enum_start(struct ic_dev *d)
{
	struct kvp *k = d->svc;
	if (k->enumerating)
		return;
	k->enumerating = true;
	k->enum_pool = IC_KVP_POOL_AUTO;
	k->enum_index = 0;
	kvp_list_clear(&k->staging);
	kvp_pump(d);
}

/* Queues a SET (value) or DELETE (value NULL) of key; returns its id, 0 when out of memory or the
 * queue is full. */
static uint64_t kvp_queue(struct kvp *k, const char *key, const char *value)
{
	if (k->qn == KVP_QUEUE)
		return 0;
	struct kvp_op o = { .op = value ? IC_KVP_OP_SET : IC_KVP_OP_DELETE, .id = ++k->next_id };
	o.key = strdup(key);
	o.value = value ? strdup(value) : NULL;
	if (!o.key || (value && !o.value)) {
		kvp_op_free(&o);
		return 0;
	}
	k->q[(k->qhead + k->qn) % KVP_QUEUE] = o;
	k->qn++;
	return o.id;
}

static void kvp_ready(struct ic_dev *d)
{
	struct kvp *k = d->svc;
	for (unsigned i = 0; i < k->host.n; i++)
		kvp_queue(k, k->host.v[i].key, k->host.v[i].value);
	kvp_enum_start(d);
	ic_dev_timer_set(d, ic_tunables.kvp_ms, ic_tunables.kvp_ms);
}

/* One item of an ENUMERATE answer (status 0) into staging; false when malformed (*why). */
static bool kvp_take_item(struct kvp *k, const struct ic_kvp_msg *m, const char **why)
{
	const struct ic_kvp_value *v = &m->body.enumerate.data;
	char *key = k->key, *value = k->value;
	if (ic_kvp_utf16_decode(v->key, v->key_size, IC_KVP_KEY_BYTES, key, KVP_KEY_UTF8, why) < 0)
		return false;
	switch (v->value_type) {
	case IC_KVP_REG_SZ:
		if (ic_kvp_utf16_decode(v->value, v->value_size, IC_KVP_VALUE_BYTES, value, KVP_VALUE_UTF8, why) < 0)
			return false;
		break;
	case IC_KVP_REG_U32:
	case IC_KVP_REG_U64: {
		/* A little-endian number of 4 or 8 bytes (this host is little-endian too). */
		uint32_t size = v->value_type == IC_KVP_REG_U32 ? 4 : 8;
		uint64_t x = 0;
		if (v->value_size != size) {
			*why = size == 4 ? "has a REG_U32 value whose size is not 4" : "has a REG_U64 value whose size is not 8";
			return false;
		}
		memcpy(&x, v->value, size);
		snprintf(value, KVP_VALUE_UTF8, "%" PRIu64, x);
		break;
	}
	default:
		*why = "has an unknown value type";
		return false;
	}
	struct kvp_item it = { strdup(key), strdup(value) };
	if (!it.key || !it.value) {
		free(it.key);
		free(it.value);
		return true; /* out of memory: the item is missing, the guest did nothing wrong */
	}
	k->staging.v[k->staging.n++] = it;
	return true;
}

/* The addresses are read (or there are none to read): they replace the last reading's, and the
 * reading is complete. */
static void kvp_ip_done(struct kvp *k)
{
	kvp_adapters_clear(&k->adapters);
	k->adapters = k->ip_staging;
	memset(&k->ip_staging, 0, sizeof(k->ip_staging));
	kvp_enum_end(k, true, 0);
}

/* One list field (units UTF-16 units) of a GET_IP_INFO answer, NUL-terminated within it, as a
 * new UTF-8 string in *out; false when malformed (*why) or out of memory (*why NULL). */
static bool kvp_ip_field(struct kvp *k, const void *field, unsigned units, char **out, const char **why)
{
	const uint8_t *f = field;
	unsigned nul = 0;
	while (nul < units && (f[2 * nul] | f[2 * nul + 1]))
		nul++;
	if (nul == units) {
		*why = "has an address list without its terminating NUL";
		return false;
	}
	if (ic_kvp_utf16_decode(f, (nul + 1) * 2, units * 2, k->ipbuf, sizeof(k->ipbuf), why) < 0)
		return false;
	*out = strdup(k->ipbuf);
	*why = NULL;
	return *out != NULL;
}

/* An answer to the GET_IP_INFO of the adapter at enum_index. */
static void kvp_ip_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct kvp *k = d->svc;
	struct kvp_adapter *a = &k->ip_staging.v[k->enum_index];
	struct ic_kvp_ip_msg *m = &k->ipm;
	const char *why = NULL;
	memset(m, 0, sizeof(*m));
	memcpy(m, r->body, r->body_len < sizeof(*m) ? r->body_len : sizeof(*m));
	if (r->body_len < sizeof(*m))
		why = "is shorter than a GET_IP_INFO";
	else if (m->operation != IC_KVP_OP_GET_IP_INFO)
		why = "answers another operation";
	a->status = r->status;
	if (!why && r->status == IC_S_OK) {
		a->family = m->ip.addr_family;
		a->dhcp = m->ip.dhcp_enabled;
		if (kvp_ip_field(k, (const uint8_t *)m + offsetof(struct ic_kvp_ip_msg, ip.ip_addr), IC_KVP_IP_ADDR_UNITS, &a->ip, &why) &&
		    kvp_ip_field(k, (const uint8_t *)m + offsetof(struct ic_kvp_ip_msg, ip.sub_net), IC_KVP_IP_ADDR_UNITS, &a->subnet, &why) &&
		    kvp_ip_field(k, (const uint8_t *)m + offsetof(struct ic_kvp_ip_msg, ip.gate_way), IC_KVP_GATEWAY_UNITS, &a->gateway, &why))
			kvp_ip_field(k, (const uint8_t *)m + offsetof(struct ic_kvp_ip_msg, ip.dns_addr), IC_KVP_IP_ADDR_UNITS, &a->dns, &why);
	}
	if (why) {
		log_guest("KVP integration service: a GET_IP_INFO answer (adapter %u) that %s was dropped", a->nic.slot, why);
		a->status = KVP_ST_MALFORMED;
	}
	if (++k->enum_index >= k->ip_staging.n)
		kvp_ip_done(k);
}

/* The pool being read is complete: it replaces the last reading of it; then the next pool. */
static void kvp_pool_done(struct kvp *k)
{
	struct kvp_list *dst = &k->pools[k->enum_pool == IC_KVP_POOL_AUTO ? 0 : 1];
	kvp_list_clear(dst);
	*dst = k->staging;
	k->staging.n = 0;
	if (k->enum_pool == IC_KVP_POOL_AUTO) {
		k->enum_pool = IC_KVP_POOL_GUEST;
		k->enum_index = 0;
		return;
	}
	/* The addresses: version 4.0 has GET_IP_INFO. */
	kvp_adapters_clear(&k->ip_staging);
	struct vmdev_nic nics[VMDEV_NICS_MAX];
	unsigned n = k->d->s.msg.major >= 4 && k->vh.nics ? k->vh.nics(k->vh.opaque, nics, VMDEV_NICS_MAX) : 0;
	for (unsigned i = 0; i < n; i++)
		k->ip_staging.v[i].nic = nics[i];
	k->ip_staging.n = n;
	if (n) {
		k->enum_pool = KVP_PHASE_IP;
		k->enum_index = 0;
		return;
	}
	kvp_ip_done(k);
}

/* An answer to an ENUMERATE (whole: long enough for one). */
static void kvp_enum_reply(struct ic_dev *d, const struct ic_reply *r, const struct ic_kvp_msg *m, bool whole)
{
	struct kvp *k = d->svc;
	const char *why = NULL;
	if (!whole)
		why = "is shorter than an ENUMERATE";
	else if (m->hdr.operation != IC_KVP_OP_ENUMERATE || m->hdr.pool != k->enum_pool)
		why = "answers another operation or pool";
	else if (m->body.enumerate.index != k->enum_index)
		why = "answers another index";
	if (!why && r->status != IC_S_OK) {
		/* No daemon: the guest's kernel fails the first item (IC_E_FAIL). Otherwise the end of
		 * the pool (hv_kvp_daemon: HV_S_CONT); an empty GUEST pool ends at its first item. */
		if (k->enum_index == 0 && k->enum_pool == IC_KVP_POOL_AUTO && r->status != IC_KVP_S_CONT)
			kvp_enum_end(k, false, r->status);
		else
			kvp_pool_done(k);
		return;
	}
	if (!why)
		kvp_take_item(k, m, &why);
	if (why)
		log_guest("KVP integration service: an ENUMERATE answer (pool %u, item %u) that %s was dropped",
			  k->enum_pool, k->enum_index, why);
	/* A dropped item is skipped: the reading goes on, up to KVP_ITEMS_MAX. */
	if (++k->enum_index >= KVP_ITEMS_MAX || k->staging.n >= KVP_ITEMS_MAX) {
		log_guest("KVP integration service: the guest lists more than %u items in pool %u; the rest is ignored",
			  KVP_ITEMS_MAX, k->enum_pool);
		kvp_pool_done(k);
	}
}

static void kvp_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct kvp *k = d->svc;
	enum kvp_busy was = k->busy;
	k->busy = KVP_IDLE;
	/* The guest answers the whole message in place; what each operation needs of it: */
	struct ic_kvp_msg *m = &k->ans;
	memset(m, 0, sizeof(*m));
	memcpy(m, r->body, r->body_len < sizeof(*m) ? r->body_len : sizeof(*m));
	if (was == KVP_BUSY_ENUM && k->enum_pool == KVP_PHASE_IP) {
		kvp_ip_reply(d, r);
	} else if (was == KVP_BUSY_ENUM) {
		size_t need = offsetof(struct ic_kvp_msg, body) + sizeof(struct ic_kvp_enumerate);
		kvp_enum_reply(d, r, m, r->body_len >= need);
	} else if (was == KVP_BUSY_OP) {
		size_t need = offsetof(struct ic_kvp_msg, body) + sizeof(struct ic_kvp_hdr);
		uint32_t st = r->status;
		if (r->body_len < need || m->hdr.operation != k->cur.op || m->hdr.pool != IC_KVP_POOL_EXTERNAL) {
			log_guest("KVP integration service: an answer to %s that is short or answers another operation was "
				  "dropped", k->cur.op == IC_KVP_OP_SET ? "SET" : "DELETE");
			st = KVP_ST_MALFORMED;
		}
		kvp_done(k, k->cur.id, st);
		kvp_op_free(&k->cur);
	}
	kvp_pump(d);
}

static void kvp_tick(struct ic_dev *d)
{
	struct kvp *k = d->svc;
	k->ticks++;
	/* A request out since before the last tick: the guest's kernel fails a request its daemon
	 * leaves unanswered after 30 s (HV_UTIL_TIMEOUT), so no answer is coming while its daemon is
	 * gone. Forget it (a late answer is then stale) and go on. */
	if (k->busy != KVP_IDLE && k->ticks - k->cur_tick >= 2) {
		ic_session_cancel(&d->s);
		if (k->busy == KVP_BUSY_OP) {
			kvp_done(k, k->cur.id, KVP_ST_LOST);
			kvp_op_free(&k->cur);
		} else {
			kvp_enum_end(k, false, KVP_ST_LOST);
		}
		k->busy = KVP_IDLE;
		log_info("KVP integration service: the guest did not answer (is hv_kvp_daemon running?)");
	}
	kvp_enum_start(d);
	kvp_pump(d);
}

static void kvp_closed(struct ic_dev *d)
{
	struct kvp *k = d->svc;
	if (k->busy == KVP_BUSY_OP)
		kvp_done(k, k->cur.id, KVP_ST_UNSENT);
	kvp_op_free(&k->cur);
	while (k->qn) {
		kvp_done(k, k->q[k->qhead].id, KVP_ST_UNSENT);
		kvp_op_free(&k->q[k->qhead]);
		k->qhead = (k->qhead + 1) % KVP_QUEUE;
		k->qn--;
	}
	k->busy = KVP_IDLE;
	k->enumerating = false;
	kvp_list_clear(&k->staging);
	kvp_list_clear(&k->pools[0]);
	kvp_list_clear(&k->pools[1]);
	kvp_adapters_clear(&k->adapters);
	k->readings = k->attempts = 0;
	k->last_fail = 0;
}

static const struct ic_dev_ops kvp_ops = { .ready = kvp_ready, .reply = kvp_reply, .tick = kvp_tick, .closed = kvp_closed };

/* ---- the verbs ---- */

#define KVP_NO_DAEMON "the guest's KVP service does not answer (is hv_kvp_daemon running?)"

/* With the lock held: whether the session can take requests; the reason in reply when not. */
static bool kvp_connected(struct ic_dev *d, char *reply, size_t len)
{
	if (!d->chan)
		snprintf(reply, len, "no guest KVP service connected (the guest has not opened the KVP channel)");
	else if (d->s.state == IC_REFUSED)
		snprintf(reply, len, "no guest KVP service connected (the guest speaks none of the KVP versions offered)");
	else if (d->s.state != IC_READY) /* Linux answers the NEGOTIATE once its daemon registers */
		snprintf(reply, len, KVP_NO_DAEMON);
	else
		return true;
	return false;
}

/* Appends "KEY=VALUE" items to reply, "; " between them, while they fit. */
static void kvp_text(const struct kvp_list *l, const char *prefix, char *reply, size_t len, size_t *o, bool *cut)
{
	for (unsigned i = 0; i < l->n && !*cut; i++) {
		char item[2 * TEXT_SHOW_MAX + 16];
		int n = snprintf(item, sizeof(item), "%s%s%s=%s", *o ? "; " : "", prefix, text_show(l->v[i].key),
				 text_show(l->v[i].value));
		if (*o + (size_t)n + 8 > len) { /* room for "; ..." */
			*cut = true;
			break;
		}
		memcpy(reply + *o, item, (size_t)n + 1);
		*o += (size_t)n;
	}
}

/* "adapter 0 (00:15:5D:0A:0B:0C): 10.0.0.5, fe80::1" (the lead names the adapter; addresses only
 * with what: the status line). */
static void kvp_adapter_text(const struct kvp_adapter *a, char *out, size_t len)
{
	const uint8_t *m = a->nic.mac;
	int n = snprintf(out, len, "adapter %u (%02X:%02X:%02X:%02X:%02X:%02X): ", a->nic.slot, m[0], m[1], m[2], m[3],
			 m[4], m[5]);
	if (n < 0 || (size_t)n >= len)
		return;
	out += n, len -= (size_t)n;
	if (a->status == IC_E_FAIL)
		snprintf(out, len, "no interface with this MAC in the guest");
	else if (a->status == KVP_ST_MALFORMED)
		snprintf(out, len, "the guest's answer was malformed");
	else if (a->status != IC_S_OK)
		snprintf(out, len, "the guest did not say (status 0x%08x)", a->status);
	else if (!a->ip || !a->ip[0])
		snprintf(out, len, "no addresses");
	else {
		size_t o = 0;
		for (const char *p = a->ip; *p && o + 3 < len; p++) {
			if (*p == ';') {
				out[o++] = ',';
				out[o++] = ' ';
			} else {
				out[o++] = *p;
			}
		}
		out[o] = 0;
		if (a->dhcp && o + 8 < len)
			snprintf(out + o, len - o, " (DHCP)");
	}
}

/* A ';'-separated list as a JSON array of strings. */
static struct json_object *kvp_json_split(const char *list)
{
	struct json_object *arr = json_object_new_array();
	for (const char *p = list ? list : ""; arr && *p;) {
		const char *e = strchr(p, ';');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n) {
			char *item = strndup(p, n), *clean = item ? text_utf8_dup(item) : NULL;
			if (clean)
				json_object_array_add(arr, json_object_new_string(clean));
			free(clean);
			free(item);
		}
		p += n + (e ? 1 : 0);
	}
	return arr;
}

static struct json_object *kvp_json_adapters(const struct kvp_adapters *l)
{
	struct json_object *arr = json_object_new_array();
	for (unsigned i = 0; arr && i < l->n; i++) {
		const struct kvp_adapter *a = &l->v[i];
		struct json_object *o = json_object_new_object();
		if (!o)
			break;
		char mac[18];
		const uint8_t *m = a->nic.mac;
		snprintf(mac, sizeof(mac), "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
		json_object_object_add(o, "adapter", json_object_new_int((int)a->nic.slot));
		json_object_object_add(o, "mac", json_object_new_string(mac));
		if (a->status == IC_S_OK) {
			json_object_object_add(o, "addresses", kvp_json_split(a->ip));
			json_object_object_add(o, "subnets", kvp_json_split(a->subnet));
			json_object_object_add(o, "gateways", kvp_json_split(a->gateway));
			json_object_object_add(o, "dns", kvp_json_split(a->dns));
			json_object_object_add(o, "dhcp", json_object_new_boolean(a->dhcp));
		} else {
			char why[128];
			kvp_adapter_text(a, why, sizeof(why));
			json_object_object_add(o, "error", json_object_new_string(strstr(why, "): ") + 3));
		}
		json_object_array_add(arr, o);
	}
	return arr;
}

static struct json_object *kvp_json_list(const struct kvp_list *l)
{
	struct json_object *o = json_object_new_object();
	for (unsigned i = 0; o && i < l->n; i++) {
		char *kd = text_utf8_dup(l->v[i].key), *vd = text_utf8_dup(l->v[i].value);
		if (kd && vd)
			json_object_object_add(o, kd, json_object_new_string(vd));
		free(kd);
		free(vd);
	}
	return o;
}

static int kvp_format(struct kvp *k, bool json, char *reply, size_t len)
{
	if (json) {
		struct json_object *o = json_object_new_object();
		if (!o)
			goto nomem;
		json_object_object_add(o, "auto", kvp_json_list(&k->pools[0]));
		json_object_object_add(o, "guest", kvp_json_list(&k->pools[1]));
		json_object_object_add(o, "host", kvp_json_list(&k->host));
		json_object_object_add(o, "adapters", kvp_json_adapters(&k->adapters));
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		size_t n = strlen(s);
		if (n >= len) {
			json_object_put(o);
			snprintf(reply, len, "the guest's values (%zu bytes of JSON) do not fit one reply; use `kvp`", n);
			return -EMSGSIZE;
		}
		memcpy(reply, s, n + 1);
		json_object_put(o);
		return 0;
	}
	size_t o = 0;
	bool cut = false;
	reply[0] = 0;
	kvp_text(&k->pools[0], "", reply, len, &o, &cut);
	kvp_text(&k->pools[1], "guest/", reply, len, &o, &cut);
	kvp_text(&k->host, "host/", reply, len, &o, &cut);
	for (unsigned i = 0; i < k->adapters.n && !cut; i++) {
		char item[512];
		kvp_adapter_text(&k->adapters.v[i], item, sizeof(item));
		size_t n = strlen(item);
		if (o + n + 10 > len) {
			cut = true;
			break;
		}
		o += (size_t)snprintf(reply + o, len - o, "%s%s", o ? "; " : "", item);
	}
	if (cut)
		snprintf(reply + o, len - o, "%s...", o ? "; " : "");
	else if (!o)
		snprintf(reply, len, "no values");
	return 0;
nomem:
	snprintf(reply, len, "out of memory");
	return -ENOMEM;
}

static int kvp_verb_show(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct kvp *k = state;
	bool json = argc == 2 && !strcmp(argv[1], "--json");
	if (argc > 2 || (argc == 2 && !json)) {
		snprintf(reply, len, "usage: kvp [--json]");
		return -EINVAL;
	}
	if (!k->d) {
		snprintf(reply, len, "no guest KVP service: not offered (see --integration-services)");
		return -ENOTCONN;
	}
	struct ic_dev *d = k->d;
	pthread_mutex_lock(&d->lock);
	if (!kvp_connected(d, reply, len)) {
		pthread_mutex_unlock(&d->lock);
		return -ENOTCONN;
	}
	/* A fresh reading; the last one is shown when this one does not end in time. */
	uint64_t want = k->attempts + 1; /* the reading under way, or the one started here */
	kvp_enum_start(d);
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_tunables.verb_wait_ms * 1000000ull;
	while (k->attempts < want && d->chan && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	int r;
	if (!k->readings) {
		snprintf(reply, len, KVP_NO_DAEMON);
		r = k->attempts >= want ? -EIO : -ETIMEDOUT;
	} else {
		r = kvp_format(k, json, reply, len);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Finds key in the host's pool; its index or -1. */
static int kvp_host_find(const struct kvp *k, const char *key)
{
	for (unsigned i = 0; i < k->host.n; i++)
		if (!strcmp(k->host.v[i].key, key))
			return (int)i;
	return -1;
}

/* With the lock held: queues a SET/DELETE, waits for the guest's answer, says what happened. */
static int kvp_push(struct kvp *k, const char *key, const char *value, char *reply, size_t len)
{
	struct ic_dev *d = k->d;
	uint64_t id = kvp_queue(k, key, value);
	if (!id) {
		snprintf(reply, len, "too many requests waiting for the guest");
		return -EBUSY;
	}
	kvp_pump(d);
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_tunables.verb_wait_ms * 1000000ull;
	while (kvp_outcome(k, id) == KVP_ST_NONE && d->chan && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	uint32_t st = kvp_outcome(k, id);
	const char *what = value ? "set" : "deleted";
	switch (st) {
	case IC_S_OK:
		snprintf(reply, len, "%s %s in the guest's pool 0 (/var/lib/hyperv/.kvp_pool_0)", text_show(key), what);
		return 0;
	case KVP_ST_NONE:
		/* Still queued or in flight: a busy or slow guest (its daemon answers one request at a time)
		 * gets it in turn; the host keeps the value either way. */
		snprintf(reply, len, "%s %s by the host; the guest's KVP service has not confirmed it within %u ms (busy "
			 "or slow: `kvp` shows the guest's pools)", text_show(key), what, ic_tunables.verb_wait_ms);
		return 0;
	case KVP_ST_LOST:
		snprintf(reply, len, KVP_NO_DAEMON);
		return -ETIMEDOUT;
	case KVP_ST_UNSENT:
		snprintf(reply, len, "the request could not be sent (the channel closed or its ring is full)");
		return -EIO;
	case KVP_ST_MALFORMED:
		snprintf(reply, len, "the guest's answer was malformed");
		return -EPROTO;
	case IC_E_FAIL:
		snprintf(reply, len, KVP_NO_DAEMON);
		return -EIO;
	default:
		snprintf(reply, len, "the guest refused (status 0x%08x)", st);
		return value ? -EIO : -ENOENT;
	}
}

static int kvp_verb_set(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct kvp *k = state;
	if (argc < 3) {
		snprintf(reply, len, "usage: kvp-set KEY VALUE");
		return -EINVAL;
	}
	/* The control socket splits on spaces: the value is the rest of the line. */
	char value[IC_KVP_VALUE_BYTES + 1];
	size_t o = 0;
	for (int i = 2; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (o + n + 2 > sizeof(value)) {
			snprintf(reply, len, "the value is longer than the guest keeps (2047 bytes of UTF-8)");
			return -E2BIG;
		}
		if (i > 2)
			value[o++] = ' ';
		memcpy(value + o, argv[i], n);
		o += n;
	}
	value[o] = 0;
	uint8_t scratch[IC_KVP_VALUE_BYTES];
	int r = ic_kvp_utf16_encode(argv[1], strlen(argv[1]), scratch, IC_KVP_KEY_BYTES, IC_KVP_KEY_BYTES);
	if (r == -E2BIG) {
		snprintf(reply, len, "the key is longer than the guest keeps (511 bytes of UTF-8, 255 UTF-16 units)");
		return r;
	}
	if (r < 0 || r == 2) {
		snprintf(reply, len, "the key is empty or not UTF-8");
		return -EINVAL;
	}
	r = ic_kvp_utf16_encode(value, o, scratch, IC_KVP_VALUE_BYTES, IC_KVP_VALUE_BYTES);
	if (r < 0) {
		snprintf(reply, len, r == -E2BIG ? "the value is longer than the guest keeps (2047 bytes of UTF-8)"
						 : "the value is not UTF-8");
		return r;
	}
	if (!k->d) {
		snprintf(reply, len, "no guest KVP service: not offered (see --integration-services)");
		return -ENOTCONN;
	}
	struct ic_dev *d = k->d;
	pthread_mutex_lock(&d->lock);
	int i = kvp_host_find(k, argv[1]);
	char *nv = strdup(value), *nk = i < 0 ? strdup(argv[1]) : NULL;
	if (!nv || (i < 0 && !nk) || (i < 0 && k->host.n == KVP_HOST_MAX)) {
		bool full = i < 0 && k->host.n == KVP_HOST_MAX;
		pthread_mutex_unlock(&d->lock);
		free(nv);
		free(nk);
		snprintf(reply, len, full ? "the host's pool is full (64 keys)" : "out of memory");
		return full ? -ENOSPC : -ENOMEM;
	}
	if (i < 0) {
		i = (int)k->host.n++;
		k->host.v[i].key = nk;
	} else {
		free(k->host.v[i].value);
	}
	k->host.v[i].value = nv;
	if (d->s.state != IC_READY || !d->chan) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "%s kept; the guest gets it when its KVP service connects%s", text_show(argv[1]),
			 d->chan ? " (is hv_kvp_daemon running?)" : "");
		return 0;
	}
	r = kvp_push(k, argv[1], value, reply, len);
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int kvp_verb_delete(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct kvp *k = state;
	if (argc != 2) {
		snprintf(reply, len, "usage: kvp-delete KEY");
		return -EINVAL;
	}
	uint8_t scratch[IC_KVP_KEY_BYTES];
	int r = ic_kvp_utf16_encode(argv[1], strlen(argv[1]), scratch, sizeof(scratch), IC_KVP_KEY_BYTES);
	if (r < 0 || r == 2) {
		snprintf(reply, len, "the key is empty, not UTF-8 or too long");
		return -EINVAL;
	}
	if (!k->d) {
		snprintf(reply, len, "no guest KVP service: not offered (see --integration-services)");
		return -ENOTCONN;
	}
	struct ic_dev *d = k->d;
	pthread_mutex_lock(&d->lock);
	int i = kvp_host_find(k, argv[1]);
	if (i >= 0) {
		free(k->host.v[i].key);
		free(k->host.v[i].value);
		k->host.v[i] = k->host.v[--k->host.n];
	}
	if (d->s.state != IC_READY || !d->chan) {
		pthread_mutex_unlock(&d->lock);
		if (i < 0) {
			snprintf(reply, len, "no %s in the host's pool", text_show(argv[1]));
			return -ENOENT;
		}
		snprintf(reply, len, "%s removed from the host's pool (no guest KVP service connected)", text_show(argv[1]));
		return 0;
	}
	/* Deleted in the guest even when this host never set it: the guest's file outlives the host. */
	r = kvp_push(k, argv[1], NULL, reply, len);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* `status`: the adapters' addresses from the last reading. */
static void kvp_status(void *state, struct json_object *o, char *text, size_t len)
{
	struct kvp *k = state;
	if (!k->d)
		return;
	struct ic_dev *d = k->d;
	pthread_mutex_lock(&d->lock);
	if (k->readings) {
		json_object_object_add(o, "adapters", kvp_json_adapters(&k->adapters));
		size_t used = 0;
		for (unsigned i = 0; i < k->adapters.n && used + 16 < len; i++) {
			char item[512];
			kvp_adapter_text(&k->adapters.v[i], item, sizeof(item));
			used += (size_t)snprintf(text + used, len - used, "%s%s", used ? "; " : "guest ", item);
			if (used >= len)
				used = len - 1;
		}
	} else {
		struct vmdev_nic nics[1];
		if (k->vh.nics && k->vh.nics(k->vh.opaque, nics, 1))
			snprintf(text, len, "guest addresses unknown (no reading from the guest's KVP service: is "
					    "hv_kvp_daemon running?)");
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- the class ---- */

/* After the device is gone (its close ran kvp_closed): what the host keeps. */
static void kvp_fini(void *svc)
{
	struct kvp *k = svc;
	kvp_list_clear(&k->host);
	kvp_list_clear(&k->pools[0]);
	kvp_list_clear(&k->pools[1]);
	kvp_list_clear(&k->staging);
	kvp_adapters_clear(&k->adapters);
	kvp_adapters_clear(&k->ip_staging);
}

static void kvp_init(void *svc, const struct vmdev_host *host)
{
	struct kvp *k = svc;
	k->vh = *host;
}

static const struct ic_service_class kvp_class = {
	.what = "the KVP integration service",
	.bit = IC_SVC_KVP,
	.class_guid = IC_KVP_CLASS_GUID_TEXT,
	.instance = 0x7e570304u,
	.ops = &kvp_ops,
	.size = sizeof(struct kvp),
	.init = kvp_init,
	.fini = kvp_fini,
};

static void kvp_destroy(void *state)
{
	ic_service_destroy(&kvp_class, state);
}

static int kvp_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen)
{
	return ic_service_create(&kvp_class, &kvp_def, host, cfgs, n, state, err, errlen);
}

static const struct vmdev_verb kvp_verbs[] = {
	{ "kvp", "kvp [--json]", kvp_verb_show },
	{ "kvp-set", "kvp-set KEY VALUE", kvp_verb_set },
	{ "kvp-delete", "kvp-delete KEY", kvp_verb_delete },
	{ NULL, NULL, NULL },
};

const struct vmdev_class ic_kvp_class = {
	.name = "kvp",
	.class_guid = IC_KVP_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = kvp_create,
	.destroy = kvp_destroy,
	.save = vmdev_save_nothing,
	.restore = vmdev_restore_nothing,
	.verbs = kvp_verbs,
	.status = kvp_status,
};
