#include "net/nic.h"
#include "util/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/guid.h"


static bool parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	if (len != 17)
		return false;
	for (int i = 0; i < 6; i++) {
		int h = gen2vm_hex_digit(s[3 * i]), l = gen2vm_hex_digit(s[3 * i + 1]);
		if (h < 0 || l < 0 || (i < 5 && s[3 * i + 2] != ':' && s[3 * i + 2] != '-'))
			return false;
		mac[i] = (uint8_t)(h << 4 | l);
	}
	return true;
}

static bool parse_u32(const char *s, size_t len, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char buf[16];
	if (!len || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = 0;
	char *end;
	unsigned long v = strtoul(buf, &end, 10);
	if (*end || buf[0] == '-' || v < lo || v > hi)
		return false;
	*out = (uint32_t)v;
	return true;
}

int nic_config_parse(const char *spec, struct nic_config *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *p = spec;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t klen = eq ? (size_t)(eq - p) : len;
		const char *v = eq ? eq + 1 : "";
		size_t vlen = eq ? len - klen - 1 : 0;
#define KEY(k) (klen == strlen(k) && !strncmp(p, k, klen))
		if (KEY("legacy")) {
			snprintf(err, errlen,
				 "--nic %s: a legacy network adapter cannot be added to a generation 2 virtual machine; "
				 "it exists only on generation 1. Remove ',legacy' to use the synthetic network adapter",
				 text_show(spec));
			return -EINVAL;
		} else if (KEY("tap") || KEY("pair")) {
			if (out->kind || !vlen || vlen >= sizeof(out->name)) {
				snprintf(err, errlen, "--nic %s: give one backend, tap=NAME or pair=ID (1-%zu characters)",
					 text_show(spec), sizeof(out->name) - 1);
				return -EINVAL;
			}
			out->kind = KEY("tap") ? NIC_TAP : NIC_PAIR;
			memcpy(out->name, v, vlen);
			out->name[vlen] = 0;
			if (out->kind == NIC_TAP && vlen >= 16) {
				snprintf(err, errlen, "--nic %s: tap names are at most 15 characters", text_show(spec));
				return -EINVAL;
			}
		} else if (KEY("mac")) {
			if (!parse_mac(v, vlen, out->mac) || (out->mac[0] & 1)) {
				snprintf(err, errlen,
					 "--nic %s: mac must be a unicast address like 02:15:5d:12:34:56", text_show(spec));
				return -EINVAL;
			}
			out->has_mac = true;
		} else if (KEY("queues")) {
			if (!parse_u32(v, vlen, 1, NET_BE_MAX_QUEUES, &out->queues)) {
				snprintf(err, errlen, "--nic %s: queues must be 1-%u", text_show(spec), NET_BE_MAX_QUEUES);
				return -EINVAL;
			}
		} else if (KEY("mtu")) {
			if (!parse_u32(v, vlen, 576, 9000, &out->mtu)) {
				snprintf(err, errlen, "--nic %s: mtu must be 576-9000", text_show(spec));
				return -EINVAL;
			}
		} else if (KEY("link")) {
			if (vlen == 4 && !strncmp(v, "down", 4))
				out->link_down = true;
			else if (!(vlen == 2 && !strncmp(v, "up", 2))) {
				snprintf(err, errlen, "--nic %s: link must be up or down", text_show(spec));
				return -EINVAL;
			}
		} else {
			char key[64];
			snprintf(key, sizeof(key), "%.*s", (int)(klen < sizeof(key) ? klen : sizeof(key) - 1), p);
			snprintf(err, errlen, "--nic %s: unknown setting '%s' (tap=, pair=, mac=, queues=, mtu=, link=)",
				 text_show(spec), text_show(key));
			return -EINVAL;
		}
#undef KEY
		p = comma ? comma + 1 : NULL;
	}
	if (!out->kind) {
		snprintf(err, errlen, "--nic %s: say where frames go: tap=NAME or pair=ID", text_show(spec));
		return -EINVAL;
	}
	return 0;
}

void nic_mac_generate(const char *seed, uint32_t index, uint8_t mac[6])
{
	uint64_t h = 1469598103934665603ull;
	for (const char *s = seed ? seed : ""; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	for (int i = 0; i < 4; i++)
		h = (h ^ (uint8_t)(index >> (8 * i))) * 1099511628211ull;
	h ^= h >> 29;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
	mac[0] = (uint8_t)((mac[0] & 0xFC) | 0x02); /* locally administered, unicast */
}

int nic_backend_open(const struct nic_config *n, uint32_t queues, struct net_backend **out, char *err,
		     size_t errlen)
{
	if (n->kind == NIC_TAP)
		return net_tap_open(n->name, queues, out, err, errlen);
	/* The shared pair: its other end may be another gen2vm process (two VMs on one "cable"). */
	return net_pair_open_shared(n->name, queues, out, err, errlen);
}
