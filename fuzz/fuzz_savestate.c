/* libFuzzer target for the saved-state file reader (src/vmm/savestate.c), the host input that
 * `gen2vm run --restore FILE` reads.
 *
 * Input: byte 0's bit 0 set: the END section's CRC is fixed up so the structure checks behind it are
 * reached; the rest is the file. When it opens, every section is walked, the machine check runs, and
 * the memory runs are checked and loaded into a small guest memory of two regions, and the Hyper-V
 * partition's and COM1's sections go to their readers, and the device memory (video RAM) section is
 * checked and loaded into a small buffer when its size fits. Must never crash,
 * leak or touch memory outside the file and the guest's RAM. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/uart.h"
#include "disk/crc32c.h"
#include "hv/hv.h"
#include "vmm/savestate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fz_ram[4 * SAVESTATE_PAGE];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	uint8_t *file = malloc(len ? len : 1);
	if (!file)
		return 0;
	memcpy(file, data + 1, len);
	/* The END section is the file's last 24 bytes; its CRC covers what comes before. */
	if ((data[0] & 1) && len >= 24) {
		uint32_t crc = crc32c(0, file, len - 24);
		memcpy(file + len - 8, &crc, 4);
	}
	struct guest_mem m = { .nr_regions = 2, .ram_size = sizeof(fz_ram), .memfd = -1 };
	m.region[0] = (struct guest_mem_region){ .gpa = 0, .size = 2 * SAVESTATE_PAGE, .hva = fz_ram };
	m.region[1] = (struct guest_mem_region){ .gpa = 0x100000, .size = 2 * SAVESTATE_PAGE,
						 .hva = fz_ram + 2 * SAVESTATE_PAGE };
	struct savestate_file f;
	char err[256];
	if (!savestate_open(&f, file, len, err, sizeof(err))) {
		size_t pos = 0, total = 0;
		struct savestate_sec s;
		while (savestate_next(&f, &pos, &s))
			total += s.len ? s.data[0] + s.data[s.len - 1] : 0;
		(void)total;
		savestate_find(&f, SAVESTATE_SEC_VCPU, 0, &s);
		savestate_check_machine(&f, "{}", 2, 1, sizeof(fz_ram), err, sizeof(err));
		if (!savestate_check_memory(&f, &m, err, sizeof(err)))
			savestate_load_memory(&f, &m);
		/* The sections whose readers need no KVM: the Hyper-V partition and COM1. */
		struct hv_partition hv;
		struct hv_vp vp;
		hv_partition_init(&hv, &m, &vp, 1, 1000000000ull, 1000000000ull, NULL);
		if (!savestate_find(&f, SAVESTATE_SEC_HV, 0, &s))
			hv_restore(&hv, s.data, s.len, err, sizeof(err));
		hv_partition_destroy(&hv);
		struct savestate_uart su;
		if (!savestate_find(&f, SAVESTATE_SEC_PLATFORM, 0, &s) && s.len == sizeof(su)) {
			struct uart u;
			memcpy(&su, s.data, sizeof(su));
			uart_init(&u, NULL, NULL, NULL, NULL);
			uart_restore(&u, &su);
			pthread_mutex_destroy(&u.lock);
		}
		struct savestate_devmem dm;
		static uint8_t fz_dev[16 * SAVESTATE_PAGE];
		if (!savestate_find(&f, SAVESTATE_SEC_DEVMEM, 0, &s) && !savestate_devmem_check(&s, &dm, err, sizeof(err)) &&
		    dm.size <= sizeof(fz_dev))
			savestate_devmem_load(&s, fz_dev, dm.size);
	}
	free(file);
	return 0;
}
