/* The network device class: synthetic network adapters (netvsp.c), each on a backend (a tap or a
 * pair, src/net/nic.h). Settings: --nic and the JSON "nics" array. Adapters can be hot added and
 * removed, their cables connected and disconnected. Verbs: nic-list, nic-link, nic-speed, nic-add,
 * nic-remove. Adapter numbers are slots: a removed adapter's number is taken by the next one added. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/netvsp.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/netvsc.h"
#include "gen2vm/proto/savestate.h"
#include "net/nic.h"

/* Hyper-V's limit of synthetic network adapters per VM. */
#define NET_MAX_ADAPTERS 64u

struct net_slot {
	struct netvsp *nic; /* NULL: free */
	struct nic_config cfg;
	uint8_t mac[6];
};

struct net {
	struct vmdev_host h;
	pthread_mutex_t lock; /* the slots */
	struct net_slot *slot;
	uint32_t nr_slots, next_instance;
	/* A copy of the adapters' slots and MACs for vmdev_class.nics, under a leaf lock: callers may
	 * hold device locks that rank below the slots' lock (which is held while taking the server's). */
	pthread_mutex_t macs_lock;
	struct vmdev_nic macs[NET_MAX_ADAPTERS];
	unsigned nr_macs;
	/* An adapter was hot added or removed (n->lock): the VM no longer has the adapters its
	 * configuration gave it at start, which a restore builds, so it cannot be saved. */
	bool hot_changed;
};

/* Refreshes n->macs from the slots (n->lock held). */
static void net_macs_publish(struct net *n)
{
	pthread_mutex_lock(&n->macs_lock);
	n->nr_macs = 0;
	for (uint32_t i = 0; i < n->nr_slots && n->nr_macs < NET_MAX_ADAPTERS; i++)
		if (n->slot[i].nic) {
			n->macs[n->nr_macs].slot = i;
			memcpy(n->macs[n->nr_macs].mac, n->slot[i].mac, 6);
			n->nr_macs++;
		}
	pthread_mutex_unlock(&n->macs_lock);
}

static unsigned net_nics(void *state, struct vmdev_nic *out, unsigned max)
{
	struct net *n = state;
	pthread_mutex_lock(&n->macs_lock);
	unsigned k = n->nr_macs < max ? n->nr_macs : max;
	memcpy(out, n->macs, k * sizeof(*out));
	pthread_mutex_unlock(&n->macs_lock);
	return k;
}

/* Creates the backend and the adapter (queues: the entry's, else one per vCPU up to 8), offered to
 * the guest at once if it is running (hot add). Returns the slot (>= 0) or -errno with err. */
static int net_add(struct net *n, const struct nic_config *c, char *err, size_t errlen)
{
	pthread_mutex_lock(&n->lock);
	uint32_t slot = 0;
	while (slot < n->nr_slots && n->slot[slot].nic)
		slot++;
	if (slot == n->nr_slots) {
		struct net_slot *v = slot < NET_MAX_ADAPTERS ? realloc(n->slot, (slot + 1) * sizeof(*v)) : NULL;
		if (!v) {
			pthread_mutex_unlock(&n->lock);
			snprintf(err, errlen, slot < NET_MAX_ADAPTERS ? "--nic: out of memory"
								      : "--nic: a VM has at most %u network adapters",
				 NET_MAX_ADAPTERS);
			return slot < NET_MAX_ADAPTERS ? -ENOMEM : -ENOSPC;
		}
		n->slot = v;
		memset(&n->slot[slot], 0, sizeof(n->slot[slot]));
		n->nr_slots++;
	}
	uint32_t nr_vcpus = n->h.nr_vcpus ? n->h.nr_vcpus : 1;
	uint32_t queues = c->queues ? c->queues : (nr_vcpus < 8 ? nr_vcpus : 8);
	struct net_backend *be;
	int rc = nic_backend_open(c, queues, &be, err, errlen);
	if (rc) {
		pthread_mutex_unlock(&n->lock);
		return rc;
	}
	uint32_t instance = n->next_instance++;
	struct netvsp_config vc = { .mem = n->h.mem, .backend = be, .mtu = c->mtu, .max_queues = queues,
				    .instance = instance, .threaded = true };
	if (c->has_mac)
		memcpy(vc.mac, c->mac, 6);
	else
		nic_mac_generate(n->h.vm_name, instance, vc.mac);
	pthread_mutex_lock(n->h.srv_lock);
	rc = netvsp_create(n->h.srv, &vc, &n->slot[slot].nic);
	if (!rc && c->link_down)
		netvsp_set_link(n->slot[slot].nic, false);
	pthread_mutex_unlock(n->h.srv_lock);
	if (rc) {
		net_backend_destroy(be);
		pthread_mutex_unlock(&n->lock);
		snprintf(err, errlen, "--nic: cannot add the network adapter: %s", strerror(-rc));
		return rc;
	}
	n->slot[slot].cfg = *c;
	memcpy(n->slot[slot].mac, vc.mac, 6);
	net_macs_publish(n);
	pthread_mutex_unlock(&n->lock);
	return (int)slot;
}

/* Before a hot removal: the cable out, so the guest stops its transmit queues, and a moment (the
 * adapter's sends quiet for NET_QUIESCE_QUIET_MS, at most NET_QUIESCE_MAX_MS) for what is already in
 * its ring to be taken and completed. Linux's hv_netvsc, removing the device at the rescind, waits
 * for every send the host has not completed; a channel withdrawn under a busy sender leaves it
 * waiting for good, and the interface never goes. */
#define NET_QUIESCE_STEP_MS 100
#define NET_QUIESCE_QUIET_MS 500
#define NET_QUIESCE_MAX_MS 5000

static void net_quiesce(struct netvsp *nic)
{
	struct netvsp_stats st;
	netvsp_get_stats(nic, &st);
	if (!st.channels_open)
		return; /* the guest's driver does not use it: nothing in flight */
	netvsp_set_link(nic, false);
	/* Both ways: the guest also owes completions for what it received (its remove waits for those). */
	uint64_t last = st.tx_packets + st.rx_packets;
	for (unsigned quiet = 0, waited = 0; quiet < NET_QUIESCE_QUIET_MS && waited < NET_QUIESCE_MAX_MS;
	     waited += NET_QUIESCE_STEP_MS) {
		nanosleep(&(struct timespec){ .tv_nsec = NET_QUIESCE_STEP_MS * 1000000L }, NULL);
		netvsp_get_stats(nic, &st);
		quiet = st.tx_packets + st.rx_packets == last ? quiet + NET_QUIESCE_STEP_MS : 0;
		last = st.tx_packets + st.rx_packets;
	}
}

/* Removal of slot: hot (the nic-remove verb: quiesced, then rescinded) or as the VM ends. 0 or -ENOENT. */
static int net_remove(struct net *n, uint32_t slot, bool hot)
{
	pthread_mutex_lock(&n->lock);
	if (slot >= n->nr_slots || !n->slot[slot].nic) {
		pthread_mutex_unlock(&n->lock);
		return -ENOENT;
	}
	if (hot)
		net_quiesce(n->slot[slot].nic);
	pthread_mutex_lock(n->h.srv_lock);
	netvsp_destroy(n->slot[slot].nic);
	pthread_mutex_unlock(n->h.srv_lock);
	n->slot[slot].nic = NULL;
	net_macs_publish(n);
	pthread_mutex_unlock(&n->lock);
	return 0;
}

static void net_destroy(void *state)
{
	struct net *n = state;
	if (!n)
		return;
	for (uint32_t i = 0; i < n->nr_slots; i++)
		net_remove(n, i, false);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->macs_lock);
	free(n->slot);
	free(n);
}

static int net_create(const struct vmdev_host *h, void *const *cfgs, unsigned nr, void **state, char *err,
		      size_t errlen)
{
	struct net *n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "--nic: out of memory");
		return -ENOMEM;
	}
	n->h = *h;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->macs_lock, NULL);
	for (unsigned i = 0; i < nr; i++) {
		int r = net_add(n, cfgs[i], err, errlen);
		if (r < 0) {
			net_destroy(n);
			return r;
		}
	}
	*state = n;
	return 0;
}

static int net_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	return nic_config_parse(arg, cfg, err, errlen);
}

static int net_parse_json(struct json_object *v, void *cfg, char *err, size_t errlen)
{
	return nic_config_from_json(v, cfg, err, errlen);
}

static int net_validate(void *const *cfgs, unsigned n, char *err, size_t errlen)
{
	if (n > NET_MAX_ADAPTERS) {
		snprintf(err, errlen, "--nic: %u network adapters; a VM has at most %u", n, NET_MAX_ADAPTERS);
		return -EINVAL;
	}
	return 0;
}

/* --- control commands --------------------------------------------------------------------------- */
static int parse_slot(const char *s, uint32_t *slot)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || !*s || v >= NET_MAX_ADAPTERS)
		return -EINVAL;
	*slot = (uint32_t)v;
	return 0;
}

static int cmd_list(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	struct net *n = ctx;
	size_t off = 0;
	pthread_mutex_lock(&n->lock);
	for (uint32_t i = 0; i < n->nr_slots && off < cap; i++) {
		if (!n->slot[i].nic)
			continue;
		struct netvsp_stats st;
		struct netvsp_rx_state rx;
		netvsp_get_stats(n->slot[i].nic, &st);
		netvsp_get_rx_state(n->slot[i].nic, &rx);
		const uint8_t *m = n->slot[i].mac;
		off += (size_t)snprintf(reply + off, cap - off,
					"%s%u: %s=%s mac=%02x:%02x:%02x:%02x:%02x:%02x link=%s channels=%u rx=%llu tx=%llu "
					"rx_dropped=%llu tx_dropped=%llu bad=%llu sections_held=%u/%u txns_held=%u parked=%u "
					"owed=%u waiters=%u",
					off ? "; " : "", i, n->slot[i].cfg.kind == NIC_TAP ? "tap" : "pair", n->slot[i].cfg.name,
					m[0], m[1], m[2], m[3], m[4], m[5], st.link_up ? "up" : "down", st.channels_open,
					(unsigned long long)st.rx_packets, (unsigned long long)st.tx_packets,
					(unsigned long long)st.rx_dropped, (unsigned long long)st.tx_dropped,
					(unsigned long long)st.bad_messages, rx.sections_held, rx.sections, rx.txns_held, rx.parked,
					rx.owed, rx.waiters);
	}
	pthread_mutex_unlock(&n->lock);
	if (!off)
		snprintf(reply, cap, "no network adapters");
	return 0;
}

static int cmd_link(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	uint32_t slot;
	if (argc != 3 || parse_slot(argv[1], &slot) || (strcmp(argv[2], "up") && strcmp(argv[2], "down"))) {
		snprintf(reply, cap, "usage: nic-link N up|down");
		return -EINVAL;
	}
	bool up = !strcmp(argv[2], "up");
	struct net *n = ctx;
	pthread_mutex_lock(&n->lock);
	int rc = slot < n->nr_slots && n->slot[slot].nic ? 0 : -ENOENT;
	if (!rc)
		netvsp_set_link(n->slot[slot].nic, up);
	pthread_mutex_unlock(&n->lock);
	if (rc) {
		snprintf(reply, cap, "no network adapter %u (see nic-list)", slot);
		return -ENOENT;
	}
	snprintf(reply, cap, "adapter %u cable %s", slot, up ? "connected" : "disconnected");
	return 0;
}

static int cmd_speed(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	struct net *n = ctx;
	uint32_t slot;
	char *end;
	unsigned long long mbit = argc == 3 ? strtoull(argv[2], &end, 10) : 0;
	if (argc != 3 || parse_slot(argv[1], &slot) || *end || !mbit || mbit > 1000000) {
		snprintf(reply, cap, "usage: nic-speed N MBIT (1-1000000)");
		return -EINVAL;
	}
	pthread_mutex_lock(&n->lock);
	int rc = slot < n->nr_slots && n->slot[slot].nic ? 0 : -ENOENT;
	if (!rc)
		netvsp_set_link_speed(n->slot[slot].nic, mbit * 1000000ull);
	pthread_mutex_unlock(&n->lock);
	if (rc)
		snprintf(reply, cap, "no network adapter %u (see nic-list)", slot);
	else
		snprintf(reply, cap, "adapter %u reports %llu Mbit/s", slot, mbit);
	return rc;
}

static int cmd_add(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	struct nic_config c;
	if (argc != 2) {
		snprintf(reply, cap, "usage: nic-add tap=NAME[,mac=..][,queues=N] | pair=ID");
		return -EINVAL;
	}
	int rc = nic_config_parse(argv[1], &c, reply, cap);
	if (rc)
		return rc;
	struct net *n = ctx;
	rc = net_add(n, &c, reply, cap);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&n->lock);
	n->hot_changed = true;
	pthread_mutex_unlock(&n->lock);
	snprintf(reply, cap, "added adapter %d", rc);
	return 0;
}

static int cmd_remove(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	uint32_t slot;
	if (argc != 2 || parse_slot(argv[1], &slot)) {
		snprintf(reply, cap, "usage: nic-remove N");
		return -EINVAL;
	}
	struct net *n = ctx;
	if (net_remove(n, slot, true)) {
		snprintf(reply, cap, "no network adapter %u (see nic-list)", slot);
		return -ENOENT;
	}
	pthread_mutex_lock(&n->lock);
	n->hot_changed = true;
	pthread_mutex_unlock(&n->lock);
	snprintf(reply, cap, "removed adapter %u", slot);
	return 0;
}

static const struct vmdev_option net_options[] = { { "nic", true }, { NULL, false } };

static const struct vmdev_verb net_verbs[] = {
	{ "nic-list", "nic-list", cmd_list },
	{ "nic-link", "nic-link N up|down", cmd_link },
	{ "nic-speed", "nic-speed N MBIT", cmd_speed },
	{ "nic-add", "nic-add tap=NAME[,mac=..][,queues=N]|pair=ID", cmd_add },
	{ "nic-remove", "nic-remove N", cmd_remove },
	{ NULL, NULL, NULL },
};

/* Saving: struct savestate_netvsp_class, then each adapter's state (netvsp_save) in slot order. The
 * backends are opened again from the configuration by the restored VM's create. While the VM is
 * being saved the adapters' workers are held (quiesce), so nothing moves between their state and
 * the guest's RAM being written; a save that failed lets them go (thaw). */
static int net_save_quiesce(void *state, unsigned timeout_ms)
{
	struct net *n = state;
	int r = 0;
	pthread_mutex_lock(&n->lock);
	for (uint32_t i = 0; i < n->nr_slots && !r; i++)
		if (n->slot[i].nic)
			r = netvsp_hold(n->slot[i].nic, timeout_ms);
	pthread_mutex_unlock(&n->lock);
	return r;
}

static void net_save_thaw(void *state)
{
	struct net *n = state;
	pthread_mutex_lock(&n->lock);
	for (uint32_t i = 0; i < n->nr_slots; i++)
		if (n->slot[i].nic)
			netvsp_release(n->slot[i].nic);
	pthread_mutex_unlock(&n->lock);
}

static int net_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct net *n = state;
	struct savestate_netvsp_class h = { 0 };
	uint8_t *b = NULL;
	size_t l = 0;
	pthread_mutex_lock(&n->lock);
	if (n->hot_changed) {
		pthread_mutex_unlock(&n->lock);
		snprintf(err, errlen, "a VM whose network adapters changed since it started (hot add or remove) cannot be "
				      "saved (a restored VM is built from its configuration): restart it, then save");
		return -EOPNOTSUPP;
	}
	for (uint32_t i = 0; i < n->nr_slots; i++)
		h.nr_adapters += n->slot[i].nic != NULL;
	int r = 0;
	if (!(b = malloc(sizeof(h))))
		r = -ENOMEM;
	else
		memcpy(b, &h, (l = sizeof(h)));
	for (uint32_t i = 0; i < n->nr_slots && !r; i++)
		if (n->slot[i].nic)
			r = netvsp_save(n->slot[i].nic, i, &b, &l);
	pthread_mutex_unlock(&n->lock);
	if (r) {
		free(b);
		snprintf(err, errlen, "out of memory");
		return r;
	}
	*out = b;
	*len = l;
	return 0;
}

static int net_restore(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct net *n = state;
	struct savestate_netvsp_class h;
	/* A state saved before adapters were saved (no adapter then) is empty. */
	if (!len) {
		memset(&h, 0, sizeof(h));
	} else if (len < sizeof(h)) {
		snprintf(err, errlen, "bad state length %zu", len);
		return -EINVAL;
	} else {
		memcpy(&h, buf, sizeof(h));
	}
	size_t off = len ? sizeof(h) : 0;
	int r = 0;
	pthread_mutex_lock(&n->lock);
	uint32_t have = 0;
	for (uint32_t i = 0; i < n->nr_slots; i++)
		have += n->slot[i].nic != NULL;
	if (h.nr_adapters != have || h.reserved) {
		snprintf(err, errlen, "saved with %u network adapters, the VM has %u", h.nr_adapters, have);
		r = -EINVAL;
	}
	for (uint32_t i = 0; i < n->nr_slots && !r; i++) {
		if (!n->slot[i].nic)
			continue;
		size_t used = 0;
		char why[200] = "";
		if ((r = netvsp_restore(n->slot[i].nic, i, buf + off, len - off, &used, why, sizeof(why))))
			snprintf(err, errlen, "adapter %u: %s", i, why);
		off += used;
	}
	pthread_mutex_unlock(&n->lock);
	if (!r && off != len) {
		snprintf(err, errlen, "bytes after the adapters' state");
		r = -EINVAL;
	}
	return r;
}

const struct vmdev_class netvsp_class = {
	.name = "netvsp",
	.class_guid = NETVSC_CLASS_GUID_TEXT,
	.options = net_options,
	.usage = NIC_USAGE,
	.json_key = "nics",
	.always = true,
	.config_size = sizeof(struct nic_config),
	.parse_option = net_parse_option,
	.parse_json = net_parse_json,
	.validate = net_validate,
	.create = net_create,
	.destroy = net_destroy,
	.verbs = net_verbs,
	.nics = net_nics,
	.quiesce = net_save_quiesce,
	.thaw = net_save_thaw,
	.save = net_save,
	.restore = net_restore,
};
