/* Fuzzes the ring reader (and the writer's view of read_index) over a hostile ring: the input
 * supplies the header indices and the data area; the reader must return packets inside bounds or
 * -EPROTO, never touch memory outside the ring; packets read are then parsed. Data is a heap block of exactly the ring size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmbus/ring.h"
#include "vmbus_ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 16)
		return 0;
	uint32_t w, r, ring_size = 4096u << (data[0] & 3);
	memcpy(&w, data + 4, 4);
	memcpy(&r, data + 8, 4);
	bool mirrored = data[1] & 1;
	struct vmbus_ring_header *hdr = calloc(1, sizeof(*hdr));
	uint8_t *ring = malloc(mirrored ? 2u * ring_size : ring_size);
	size_t n = size - 16 < ring_size ? size - 16 : ring_size;
	memset(ring, 0, ring_size);
	memcpy(ring, data + 16, n);
	if (mirrored)
		memcpy(ring + ring_size, ring, ring_size);
	struct vmbus_ring rr, ww;
	hdr->read_index = r & (ring_size - 1) & ~7u;
	if (vmbus_ring_init(&rr, hdr, ring, ring_size, mirrored) == 0) {
		hdr->write_index = w; /* hostile, unvalidated */
		uint8_t *buf = malloc(ring_size);
		uint32_t len;
		int rc;
		for (int k = 0; k < 64 && (rc = vmbus_ring_read(&rr, buf, data[2] & 1 ? 64 : ring_size, &len)) != -VMBUS_EAGAIN; k++) {
			if (rc == 0 && len > ring_size)
				abort();
			struct vmbus_packet pk;
			if (rc == 0 && vmbus_packet_parse(buf, len, &pk) == 0) {
				uint64_t cur = 0;
				struct vmbus_packet_range pr;
				while (vmbus_packet_next_range(&pk, &cur, &pr))
					(void)vmbus_packet_range_pfn(&pr, pr.nr_pfns - 1);
				for (uint32_t x = 0; x < pk.xfer_count; x++)
					(void)vmbus_packet_xfer_range(&pk, x);
			}
			if (rc == -VMBUS_EPROTO)
				break;
			if (rc == -VMBUS_EMSGSIZE)
				break;
		}
		vmbus_ring_read_commit(&rr);
		vmbus_ring_unmask(&rr);
		free(buf);
	}
	/* The writer facing a hostile read_index. */
	memset(hdr, 0, sizeof(*hdr));
	if (vmbus_ring_init(&ww, hdr, ring, ring_size, mirrored) == 0) {
		hdr->read_index = r;
		bool sig;
		for (int k = 0; k < 8; k++)
			if (vmbus_ring_write(&ww, 6, 0, k, NULL, 0, data + 16, (uint32_t)(size - 16) % ring_size, &sig))
				break;
	}
	free(ring);
	free(hdr);
	return 0;
}
