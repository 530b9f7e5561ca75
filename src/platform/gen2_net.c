#include "platform/gen2_net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gen2_net_init(struct gen2_net *n, struct vmbus_server *srv, pthread_mutex_t *srv_lock,
		   const struct guest_mem *mem, uint32_t nr_vcpus, const char *seed)
{
	memset(n, 0, sizeof(*n));
	n->srv = srv;
	n->srv_lock = srv_lock;
	n->mem = mem;
	n->nr_vcpus = nr_vcpus ? nr_vcpus : 1;
	snprintf(n->seed, sizeof(n->seed), "%s", seed ? seed : "");
	pthread_mutex_init(&n->lock, NULL);
}

int gen2_net_add(struct gen2_net *n, const struct nic_config *c, char *err, size_t errlen)
{
	pthread_mutex_lock(&n->lock);
	int slot = -1;
	for (uint32_t i = 0; i < GEN2_NET_MAX && slot < 0; i++)
		if (!n->nic[i])
			slot = (int)i;
	if (slot < 0) {
		pthread_mutex_unlock(&n->lock);
		snprintf(err, errlen, "--nic: at most %u network adapters", GEN2_NET_MAX);
		return -ENOSPC;
	}
	uint32_t queues = c->queues ? c->queues : (n->nr_vcpus < 8 ? n->nr_vcpus : 8);
	struct net_backend *be;
	int rc = nic_backend_open(c, queues, &be, err, errlen);
	if (rc) {
		pthread_mutex_unlock(&n->lock);
		return rc;
	}
	uint32_t instance = n->next_instance++;
	struct netvsp_config vc = { .mem = n->mem, .backend = be, .mtu = c->mtu, .max_queues = queues,
				    .instance = instance, .threaded = true };
	if (c->has_mac)
		memcpy(vc.mac, c->mac, 6);
	else
		nic_mac_generate(n->seed, instance, vc.mac);
	if (n->srv_lock)
		pthread_mutex_lock(n->srv_lock);
	rc = netvsp_create(n->srv, &vc, &n->nic[slot]);
	if (!rc && c->link_down)
		netvsp_set_link(n->nic[slot], false);
	if (n->srv_lock)
		pthread_mutex_unlock(n->srv_lock);
	if (rc) {
		net_backend_destroy(be);
		pthread_mutex_unlock(&n->lock);
		snprintf(err, errlen, "--nic: cannot add the network adapter: %s", strerror(-rc));
		return rc;
	}
	n->cfg[slot] = *c;
	memcpy(n->mac[slot], vc.mac, 6);
	n->instance[slot] = instance;
	pthread_mutex_unlock(&n->lock);
	return slot;
}

int gen2_net_remove(struct gen2_net *n, uint32_t slot)
{
	pthread_mutex_lock(&n->lock);
	if (slot >= GEN2_NET_MAX || !n->nic[slot]) {
		pthread_mutex_unlock(&n->lock);
		return -ENOENT;
	}
	if (n->srv_lock)
		pthread_mutex_lock(n->srv_lock);
	netvsp_destroy(n->nic[slot]);
	if (n->srv_lock)
		pthread_mutex_unlock(n->srv_lock);
	n->nic[slot] = NULL;
	pthread_mutex_unlock(&n->lock);
	return 0;
}

int gen2_net_set_link(struct gen2_net *n, uint32_t slot, bool up)
{
	pthread_mutex_lock(&n->lock);
	int rc = slot < GEN2_NET_MAX && n->nic[slot] ? 0 : -ENOENT;
	if (!rc)
		netvsp_set_link(n->nic[slot], up);
	pthread_mutex_unlock(&n->lock);
	return rc;
}

void gen2_net_destroy(struct gen2_net *n)
{
	for (uint32_t i = 0; i < GEN2_NET_MAX; i++)
		gen2_net_remove(n, i);
	pthread_mutex_destroy(&n->lock);
}

/* --- control commands --------------------------------------------------------------------------- */
static int parse_slot(const char *s, uint32_t *slot)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || !*s || v >= GEN2_NET_MAX)
		return -EINVAL;
	*slot = (uint32_t)v;
	return 0;
}

static int cmd_list(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	struct gen2_net *n = ctx;
	size_t off = 0;
	pthread_mutex_lock(&n->lock);
	for (uint32_t i = 0; i < GEN2_NET_MAX && off < cap; i++) {
		if (!n->nic[i])
			continue;
		struct netvsp_stats st;
		netvsp_get_stats(n->nic[i], &st);
		const uint8_t *m = n->mac[i];
		off += (size_t)snprintf(reply + off, cap - off,
					"%s%u: %s=%s mac=%02x:%02x:%02x:%02x:%02x:%02x link=%s channels=%u rx=%llu tx=%llu",
					off ? "; " : "", i, n->cfg[i].kind == NIC_TAP ? "tap" : "pair", n->cfg[i].name,
					m[0], m[1], m[2], m[3], m[4], m[5], st.link_up ? "up" : "down", st.channels_open,
					(unsigned long long)st.rx_packets, (unsigned long long)st.tx_packets);
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
	if (gen2_net_set_link(ctx, slot, up)) {
		snprintf(reply, cap, "no network adapter %u (see nic-list)", slot);
		return -ENOENT;
	}
	snprintf(reply, cap, "adapter %u cable %s", slot, up ? "connected" : "disconnected");
	return 0;
}

static int cmd_speed(void *ctx, int argc, char **argv, char *reply, size_t cap)
{
	struct gen2_net *n = ctx;
	uint32_t slot;
	char *end;
	unsigned long long mbit = argc == 3 ? strtoull(argv[2], &end, 10) : 0;
	if (argc != 3 || parse_slot(argv[1], &slot) || *end || !mbit || mbit > 1000000) {
		snprintf(reply, cap, "usage: nic-speed N MBIT (1-1000000)");
		return -EINVAL;
	}
	pthread_mutex_lock(&n->lock);
	int rc = n->nic[slot] ? 0 : -ENOENT;
	if (!rc)
		netvsp_set_link_speed(n->nic[slot], mbit * 1000000ull);
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
	rc = gen2_net_add(ctx, &c, reply, cap);
	if (rc < 0)
		return rc;
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
	if (gen2_net_remove(ctx, slot)) {
		snprintf(reply, cap, "no network adapter %u (see nic-list)", slot);
		return -ENOENT;
	}
	snprintf(reply, cap, "removed adapter %u", slot);
	return 0;
}

int gen2_net_control_register(struct gen2_net *n, struct control *c)
{
	int rc = control_register(c, "nic-list", "nic-list", cmd_list, n);
	if (!rc)
		rc = control_register(c, "nic-link", "nic-link N up|down", cmd_link, n);
	if (!rc)
		rc = control_register(c, "nic-speed", "nic-speed N MBIT", cmd_speed, n);
	if (!rc)
		rc = control_register(c, "nic-add", "nic-add tap=NAME[,mac=..][,queues=N]|pair=ID", cmd_add, n);
	if (!rc)
		rc = control_register(c, "nic-remove", "nic-remove N", cmd_remove, n);
	return rc;
}
