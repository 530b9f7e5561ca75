/* libFuzzer target for storvsp's VMBus side (src/devices/storvsp.c), what a guest's storvsc sends:
 * VSTOR packets inband and with GPA ranges (GPA_DIRECT), SRBs whose lengths, CDBs and range lists
 * come from the input, control operations out of order. fuzz_scsi covers the SCSI core behind it.
 *
 * Input: byte 0 mode (bits 0-1: 0 a raw inband packet, 1 a raw GPA_DIRECT packet (range list then
 * packet from the input), 2 an SRB over a range list built from the input inside or just outside
 * guest RAM, 3 a burst of control packets; bit 2: open a sub-channel first; bit 3: the LUN is a DVD
 * drive). The rest feeds the chosen packet. After it, the controller must still complete a TEST UNIT
 * READY. Must never crash, leak, or touch memory outside guest RAM and the disk. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "support/storvsc_guest.h"
#include "devices/storvsp.h"
#include "util/log.h"
#include "support/loopback.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char disk_path[64], iso_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR + 0);
	int d = memfd_create("fuzz-storvsp-disk", 0), i = memfd_create("fuzz-storvsp-iso", 0);
	if (d < 0 || i < 0 || ftruncate(d, 1 << 20) || ftruncate(i, 1 << 20))
		abort();
	snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", d);
	snprintf(iso_path, sizeof(iso_path), "/proc/self/fd/%d", i);
	return 0;
}

static void drain(struct storvsc_guest *g)
{
	struct storvsc_io io;
	uint64_t id;
	for (int k = 0, idle = 0; k < 64 && idle < 3; k++) {
		storvsc_guest_wait(g, 1);
		bool any = false;
		for (uint32_t c = 0; c < g->nr_channels; c++)
			while (storvsc_guest_reap(g, c, &io, &id) >= 0)
				any = true;
		idle = any ? 0 : idle + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct vmbus_loopback lb;
	if (vmbus_loopback_init(&lb, 32ull << 20, 2, NULL))
		return 0;
	struct storvsp *sv;
	struct storvsp_disk_opts o = { .path = (mode & 8) ? iso_path : disk_path, .dvd = mode & 8 };
	struct storvsc_guest g;
	if (storvsp_create(lb.srv, &lb.mem, 0, 1, &sv) || storvsp_attach(sv, 0, &o) ||
	    vmbus_client_connect(&lb.cl, 0, 0) || vmbus_client_request_offers(&lb.cl) ||
	    storvsc_guest_open(&g, &lb, 1, 0))
		abort();
	if (mode & 4)
		storvsc_guest_subchannels(&g, 1);
	uint8_t *buf = storvsc_guest_alloc(&g, 64 << 10);
	uint64_t gpa = (uint64_t)(buf - (uint8_t *)lb.mem.region[0].hva) + lb.mem.region[0].gpa;
	struct storvsp_packet pk;
	memset(&pk, 0, sizeof(pk));
	switch (mode & 3) {
	case 0:
		vmbus_client_send(&g.ch[0], VM_PKT_DATA_INBAND, 1, 7, NULL, 0, p, n < 4096 ? n : 4096);
		break;
	case 1: {
		size_t ext = n < 256 ? n & ~7u : 256;
		size_t rest = n - ext < 128 ? n - ext : 128;
		if (ext >= 8)
			vmbus_client_send(&g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, 8, p, (uint32_t)ext, p + ext, (uint32_t)rest);
		break;
	}
	case 2: {
		/* One range: offset and length from the input, pages inside our buffer or just past RAM. */
		uint32_t off = 0, len = 0, pages = 1;
		memcpy(&off, p, n < 4 ? n : 4);
		if (n > 4)
			memcpy(&len, p + 4, n - 4 < 4 ? n - 4 : 4);
		off %= 8192;
		len %= 65536 + 4096;
		pages = (off + len + 4095) / 4096 + (n > 8 ? p[8] % 3 : 0);
		if (pages > 20)
			pages = 20;
		uint64_t ext[24] = { 1ull << 32, (uint64_t)off << 32 | len };
		for (uint32_t k = 0; k < pages; k++)
			ext[2 + k] = (n > 9 && (p[9] & 1) && k == pages - 1) ? (32ull << 20) >> 12 : (gpa >> 12) + k % 16;
		pk.operation = STORVSP_OP_EXECUTE_SRB;
		pk.flags = 1;
		size_t take = n > 10 ? n - 10 : 0;
		memcpy(pk.buffer, p + (n > 10 ? 10 : n), take < sizeof(pk.buffer) ? take : sizeof(pk.buffer));
		pk.srb.data_transfer_length = len;
		vmbus_client_send(&g.ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, 9, ext, (uint32_t)(8 * (2 + pages)), &pk,
				  sizeof(pk));
		break;
	}
	default:
		for (size_t k = 0; k + 8 <= n && k < 8 * 16; k += 8) {
			memset(&pk, 0, sizeof(pk));
			pk.operation = p[k] % 16;
			pk.flags = p[k + 1];
			memcpy(pk.buffer, p + k + 2, 6);
			vmbus_client_send(&g.ch[0], VM_PKT_DATA_INBAND, 1, 100 + k, NULL, 0, &pk, sizeof(pk));
		}
		break;
	}
	drain(&g);
	/* The controller still serves a well-formed request (unless the guest's packets legitimately
	 * reset or closed it: then nothing is checked). */
	struct storvsc_io io = { .cdb = { 0 }, .cdb_len = 6, .data_in = STORVSP_DATA_NONE };
	storvsc_guest_run(&g, &io);
	storvsc_guest_close(&g);
	storvsp_destroy(sv);
	vmbus_loopback_destroy(&lb);
	return 0;
}
