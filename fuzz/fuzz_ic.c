/* libFuzzer target for the integration services (src/devices/ic*.c): what a guest's hv_utils sends
 * back to the host's requests. The VM offers its default services (shutdown, heartbeat, time sync,
 * KVP, backup; file copy too when the input picks it) on a loopback VMBus; the guest opens one of
 * them and answers from the input.
 *
 * Input: byte 0 (bits 0-1: the service, 0 shutdown, 1 heartbeat, 2 time sync, 3 KVP; bit 4 set:
 * backup (VSS) instead; bit 5 set: file copy instead; bit 2: answer the NEGOTIATE right first, with
 * the version pair byte 1 picks, so the service's own answers are reached; bit 3: close and reopen
 * the channel half way). Then records: u8 kind, u8 length, bytes.
 * Kind % 4: 0 the host's last packet answered in place with the record's bytes patched over it from
 * offset 8 (the IC header and body; for KVP, whose message is 7430 bytes, the first two bytes give
 * the offset so that sizes, keys and values are all reached), 1 a raw INBAND packet of the
 * record's bytes with the pending transaction id, 2 the same with the record's first byte as
 * transaction id, 3 a host action (the shutdown verb, the heartbeat verb and the VM's status, the
 * timers; for KVP, which asks for the addresses of one adapter after the pools, the kvp, kvp --json,
 * kvp-set and kvp-delete verbs instead of the timers; for VSS freeze, freeze --auto-thaw, thaw and
 * vss; for fcopy copy-file of a 20000-byte file, copy-file-status and copy-file-cancel). Must never crash, hang, leak or answer twice. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "devices/ic.h"
#include "devices/ic_vss.h"
#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"
#include "support/loopback.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_stop_vm(void *opaque, bool reboot, const char *why)
{
}

static uint64_t fz_clock(void *opaque)
{
	return 0x01dc000000000000ull;
}

/* One network adapter, so that KVP 4.0 asks for its addresses (GET_IP_INFO) after the pools. */
static unsigned fz_nics(void *opaque, struct vmdev_nic *out, unsigned max)
{
	if (!max)
		return 0;
	out[0] = (struct vmdev_nic){ 0, { 0x00, 0x15, 0x5d, 0x01, 0x02, 0x03 } };
	return 1;
}

static char fz_src[64]; /* a host file of 20000 bytes for copy-file (four WRITEs) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	/* No waiting: the verbs send and return, the guest's answers come from the input. */
	ic_tunables.verb_wait_ms = 0;
	ic_vss_thaw_wait_ms = 0;
	snprintf(fz_src, sizeof(fz_src), "/tmp/fuzz_ic-src-XXXXXX");
	int fd = mkstemp(fz_src);
	static uint8_t blob[20000];
	if (fd < 0 || write(fd, blob, sizeof(blob)) != (ssize_t)sizeof(blob))
		abort();
	close(fd);
	ic_vss_second_ms = 0; /* freeze --timeout S returns at once; --auto-thaw S fires after 1 ms */
	return 0;
}

static const char *const fz_guids[6] = { IC_SHUTDOWN_CLASS_GUID_TEXT, IC_HEARTBEAT_CLASS_GUID_TEXT,
					 IC_TIMESYNC_CLASS_GUID_TEXT, IC_KVP_CLASS_GUID_TEXT,
					 IC_VSS_CLASS_GUID_TEXT,      IC_FCOPY_CLASS_GUID_TEXT };

struct fz {
	struct vmbus_loopback lb;
	struct vmbus_client_channel ch;
	uint32_t relid;
	uint8_t last[16384]; /* the host's last packet (payload) */
	uint32_t last_len;
	uint64_t last_trans;
};

static void fz_drain(struct fz *z)
{
	static uint8_t raw[16384];
	uint32_t n;
	while (vmbus_client_recv(&z->ch, raw, sizeof(raw), &n) == 0) {
		struct vmbus_packet_descriptor d;
		memcpy(&d, raw, sizeof(d));
		uint32_t off = d.offset8 * 8u;
		if (off <= n && n - off <= sizeof(z->last)) {
			z->last_len = n - off;
			memcpy(z->last, raw + off, z->last_len);
			z->last_trans = d.trans_id;
		}
	}
	vmbus_client_recv_done(&z->ch);
}

static int fz_verb(struct vmdev_set *set, const char *name, int argc, char **argv)
{
	char reply[1024];
	for (unsigned i = 0; i < set->n; i++)
		for (const struct vmdev_verb *v = set->run[i].cls->verbs; v && v->name; v++)
			if (!strcmp(v->name, name))
				return v->fn(set->run[i].state, argc, argv, reply, sizeof(reply));
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned mode = data[0], pair = data[1];
	unsigned svc = (mode & 32) ? 5 : (mode & 16) ? 4 : mode & 3;
	const uint8_t *p = data + 2;
	size_t n = size - 2;
	struct fz *z = calloc(1, sizeof(*z));
	if (!z || vmbus_loopback_init(&z->lb, 32ull << 20, 1, NULL))
		abort();
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct vmdev_host h = { .srv = z->lb.srv, .srv_lock = &lock, .mem = &z->lb.mem, .nr_vcpus = 1, .vm_name = "f",
				.stop_vm = fz_stop_vm, .utc_now = fz_clock, .ref_time_now = fz_clock,
				.nics = fz_nics };
	struct vmdev_config cfg = { 0 };
	struct vmdev_set set;
	char err[256];
	if (svc == 5 && vmdev_config_add_option(&cfg, "integration-services", "default,fcopy", err, sizeof(err)))
		abort();
	struct vmbus_guid g;
	if (vmdev_set_create(&set, &h, &cfg, err, sizeof(err)) || vmbus_client_connect(&z->lb.cl, 0, 0) ||
	    vmbus_client_request_offers(&z->lb.cl) || vmbus_guid_parse(fz_guids[svc], &g))
		abort();
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&z->lb.cl, &g, 0);
	if (!o)
		abort();
	z->relid = o->msg.child_relid;
	if (vmbus_client_channel_open(&z->lb.cl, &z->ch, z->relid, 12288, 12288, 0, NULL, 0))
		abort();
	fz_drain(z);
	if ((mode & 4) && z->last_len >= IC_HDRS_SIZE + 8) {
		/* A right answer: counts 1/1 and a pair from those offered. */
		struct ic_negotiate ng;
		memcpy(&ng, z->last + IC_HDRS_SIZE, sizeof(ng));
		unsigned nf = ng.icframe_vercnt, nm = ng.icmsg_vercnt;
		if (nf && nm && z->last_len >= IC_HDRS_SIZE + 8 + 4 * (nf + nm)) {
			struct ic_version v[2];
			memcpy(&v[0], z->last + IC_HDRS_SIZE + 8 + 4 * ((pair & 15) % nf), 4);
			memcpy(&v[1], z->last + IC_HDRS_SIZE + 8 + 4 * (nf + (pair >> 4) % nm), 4);
			ng.icframe_vercnt = ng.icmsg_vercnt = 1;
			memcpy(z->last + IC_HDRS_SIZE, &ng, sizeof(ng));
			memcpy(z->last + IC_HDRS_SIZE + 8, v, 8);
			z->last[8 + 17] = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
			vmbus_client_send(&z->ch, VM_PKT_DATA_INBAND, 0, z->last_trans, NULL, 0, z->last, z->last_len);
			fz_drain(z);
		}
	}
	bool kvp = svc == 3, vss = svc == 4, fcopy = svc == 5;
	size_t half = n / 2;
	bool reopened = false;
	for (size_t k = 0; k + 2 <= n;) {
		if ((mode & 8) && !reopened && k >= half) {
			reopened = true;
			vmbus_client_channel_close(&z->ch);
			if (vmbus_client_channel_open(&z->lb.cl, &z->ch, z->relid, 12288, 12288, 0, NULL, 0))
				abort();
			fz_drain(z);
		}
		unsigned kind = p[k] % 4, len = p[k + 1];
		k += 2;
		if (len > n - k)
			len = (unsigned)(n - k);
		const uint8_t *b = p + k;
		k += len;
		switch (kind) {
		case 0: {
			uint8_t pkt[16384];
			memcpy(pkt, z->last, z->last_len);
			uint32_t plen = z->last_len;
			if (kvp && len >= 2 && plen > 8) {
				uint32_t at = 8 + ((b[0] | (uint32_t)b[1] << 8) % (plen - 8)), take = len - 2;
				if (take > plen - at)
					take = plen - at;
				memcpy(pkt + at, b + 2, take);
			} else if (len && plen > 8) {
				uint32_t at = 8 + (b[0] % (plen - 8)), take = len - 1;
				if (take > plen - at)
					take = plen - at;
				memcpy(pkt + at, b + 1, take);
			}
			vmbus_client_send(&z->ch, VM_PKT_DATA_INBAND, 0, z->last_trans, NULL, 0, pkt, plen);
			break;
		}
		case 1:
			vmbus_client_send(&z->ch, VM_PKT_DATA_INBAND, 0, z->last_trans, NULL, 0, b, len);
			break;
		case 2:
			vmbus_client_send(&z->ch, VM_PKT_DATA_INBAND, 0, len ? b[0] : 0, NULL, 0, b, len);
			break;
		default: {
			unsigned act = len ? b[0] % 4 : 0;
			if (act == 0) {
				char a0[] = "shutdown", a1[] = "--reboot";
				char *argv[] = { a0, a1, NULL };
				fz_verb(&set, "shutdown", len > 1 && (b[1] & 1) ? 2 : 1, argv);
			} else if (act == 1) {
				char a0[] = "heartbeat", text[1024] = "";
				char *argv[] = { a0, NULL };
				fz_verb(&set, "heartbeat", 1, argv);
				struct json_object *o = json_object_new_object(); /* the VM's `status` */
				vmdev_set_status(&set, o, text, sizeof(text));
				json_object_put(o);
			} else if (kvp && len > 1) {
				char a0[] = "kvp", j[] = "--json", s0[] = "kvp-set", d0[] = "kvp-delete", key[] = "K\xc3\xa9y",
				     val[] = "v";
				char *show[] = { a0, j, NULL }, *set_[] = { s0, key, val, NULL }, *del[] = { d0, key, NULL };
				switch (b[1] & 3) {
				case 0: fz_verb(&set, "kvp", 1, show); break;
				case 1: fz_verb(&set, "kvp", 2, show); break;
				case 2: fz_verb(&set, "kvp-set", 3, set_); break;
				default: fz_verb(&set, "kvp-delete", 2, del); break;
				}
			} else if (fcopy && len > 1) {
				char c0[] = "copy-file", dst[] = "/tmp/d/x", ow[] = "--overwrite", cd[] = "--create-dirs",
				     s0[] = "copy-file-status", k0[] = "copy-file-cancel";
				char *cp[] = { c0, fz_src, dst, ow, cd, NULL }, *st[] = { s0, NULL }, *ca[] = { k0, NULL };
				switch (b[1] & 3) {
				case 0: fz_verb(&set, "copy-file", 3, cp); break;
				case 1: fz_verb(&set, "copy-file", 5, cp); break;
				case 2: fz_verb(&set, "copy-file-status", 1, st); break;
				default: fz_verb(&set, "copy-file-cancel", 1, ca); break;
				}
			} else if (vss && len > 1) {
				char f0[] = "freeze", at[] = "--auto-thaw", one[] = "1", t0[] = "thaw", v0[] = "vss";
				char *fr[] = { f0, at, one, NULL }, *th[] = { t0, NULL }, *st[] = { v0, NULL };
				switch (b[1] & 3) {
				case 0: fz_verb(&set, "freeze", 1, fr); break;
				case 1: fz_verb(&set, "freeze", 3, fr); break;
				case 2: fz_verb(&set, "thaw", 1, th); break;
				default: fz_verb(&set, "vss", 1, st); break;
				}
			} else {
				vmbus_loopback_wait(&z->lb, vss ? 2 : 0); /* VSS: long enough for a 1 ms auto-thaw */
			}
			break;
		}
		}
		fz_drain(z);
	}
	vmbus_client_channel_close(&z->ch);
	vmdev_set_destroy(&set);
	vmdev_config_free(&cfg);
	vmbus_loopback_destroy(&z->lb);
	free(z);
	return 0;
}
