/* Network adapter settings: the --nic option / JSON "nics" entries, MAC generation, and opening the
 * backend an entry names. */
#ifndef GEN2VM_NET_NIC_H
#define GEN2VM_NET_NIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/backend.h"

enum nic_kind { NIC_TAP = 1, NIC_PAIR = 2 };

struct nic_config {
	enum nic_kind kind;
	char name[64];    /* tap interface name, or pair id */
	bool has_mac;
	uint8_t mac[6];
	uint32_t queues;  /* 0 = one per vCPU (up to 8) */
	uint32_t mtu;     /* 0 = 1500 */
	bool link_down;   /* start with the cable disconnected */
};

/* Parses "tap=NAME[,mac=xx:xx:xx:xx:xx:xx][,queues=N][,mtu=N][,link=down]" or "pair=ID[,...]".
 * ",legacy" is refused: a generation 2 VM has no legacy network adapter. Returns 0 or -EINVAL with
 * a message naming the problem and the fix in err. */
int nic_config_parse(const char *spec, struct nic_config *out, char *err, size_t errlen);

/* A stable, locally administered unicast MAC from a per-VM seed (e.g. the VM's name or UUID) and the
 * adapter's index: the same VM gets the same addresses on every start. */
void nic_mac_generate(const char *seed, uint32_t index, uint8_t mac[6]);

/* Opens the backend of n with `queues` queues. Returns 0 or -errno with a message in err. */
int nic_backend_open(const struct nic_config *n, uint32_t queues, struct net_backend **out, char *err,
		     size_t errlen);



/* One entry of the JSON config's "nics" array: either the --nic string, or an object
 * {"tap": NAME | "pair": ID, "mac": "02:..", "queues": N, "mtu": N, "link": "up"|"down", "legacy": true}.
 * Returns 0 or -EINVAL with the message in err (json_object is json-c's). */
struct json_object;
int nic_config_from_json(struct json_object *v, struct nic_config *out, char *err, size_t errlen);

/* The --nic line for `gen2vm run --help`. */
#define NIC_USAGE                                                                                         \
	"  --nic tap=NAME[,mac=MAC][,queues=N][,mtu=N][,link=down] | pair=ID[,...]\n"                        \
	"                             a synthetic network adapter (repeatable); the tap is created if\n"     \
	"                             missing and we may; MAC defaults to a stable generated one;\n"        \
	"                             pair=ID joins this adapter to the one another gen2vm (same user)\n"   \
	"                             opens with the same ID\n"
#endif
