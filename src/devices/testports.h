/* What freestanding test guests talk to (with --debugcon): the debug console port (each byte written
 * is console output), the exit port (a 32-bit write of 0 ends the VM as powered off, anything else as
 * a failure with that code), and an MMIO page of 16 scratch dwords with a counter of the VM's exits
 * (include/gen2vm/proto/testdev.h). Not part of the generation 2 machine a guest OS sees. */
#ifndef GEN2VM_DEVICES_TESTPORTS_H
#define GEN2VM_DEVICES_TESTPORTS_H

#include <stdint.h>

#include "gen2vm/proto/testdev.h"
#include "vmm/vm.h"

#define TESTPORTS_DEBUGCON 0xE9 /* each byte written is console output */
#define TESTPORTS_EXIT 0xF4     /* 32-bit write: 0 = success, else a failure code */

struct testports {
	struct vm *vm;
	void (*out)(void *opaque, const uint8_t *data, unsigned len); /* console bytes, or NULL */
	void *out_opaque;
	uint32_t regs[16];
};

/* Claims the ports and the MMIO page of vm for tp; console bytes go to out (may be NULL). 0 or -errno. */
int testports_attach(struct testports *tp, struct vm *vm, void (*out)(void *, const uint8_t *, unsigned),
		     void *out_opaque);

#endif
