#include "devices/testports.h"

#include <string.h>
#include <unistd.h>

#include "util/log.h"

static void testports_console_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct testports *tp = opaque;
	if (is_write && tp->out)
		tp->out(tp->out_opaque, data, 1);
}

static void testports_exit_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct testports *tp = opaque;
	if (!is_write)
		return;
	uint32_t code = 0;
	memcpy(&code, data, len < 4 ? len : 4);
	if (code == 0)
		vm_stop(tp->vm, VM_EXIT_POWEROFF, "test guest reported success");
	else
		vm_stop(tp->vm, VM_EXIT_ERROR, "test guest reported failure %u", code);
}

/* 16 scratch dwords; anything else in the page reads as zero. */
static void testports_mmio(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct testports *tp = opaque;
	struct vm *vm = tp->vm;
	if (off == TESTDEV_MMIO_EXITS && len == 4 && !is_write) {
		/* Other vCPUs' counters are read without their lock: exact for the reading vCPU, close for the
		 * rest (a test guest measures on one vCPU). The reading exit was counted before dispatch. */
		uint64_t n = 0;
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			for (int k = 0; k < VCPU_EXIT__COUNT; k++)
				n += __atomic_load_n(&vm->vcpus[i].exits[k], __ATOMIC_RELAXED);
		uint32_t v = (uint32_t)n;
		memcpy(data, &v, 4);
		return;
	}
	if (len != 4 || (off & 3) || off >= sizeof(tp->regs)) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write)
		memcpy(&tp->regs[off / 4], data, 4);
	else
		memcpy(data, &tp->regs[off / 4], 4);
}

int testports_attach(struct testports *tp, struct vm *vm, void (*out)(void *, const uint8_t *, unsigned),
		     void *out_opaque)
{
	tp->vm = vm;
	tp->out = out;
	tp->out_opaque = out_opaque;
	int r = bus_register(&vm->pio, TESTPORTS_DEBUGCON, 1, testports_console_io, tp, "debugcon");
	r = r ? r : bus_register(&vm->pio, TESTPORTS_EXIT, 4, testports_exit_io, tp, "debugexit");
	return r ? r : bus_register(&vm->mmio, TESTDEV_MMIO_BASE, 0x1000, testports_mmio, tp, "testdev");
}
