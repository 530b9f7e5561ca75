/* The VMBus echo test device's wire format (src/devices/testdev.h describes the behaviour); shared
 * with the test guests. */
#ifndef GEN2VM_PROTO_TESTDEV_H
#define GEN2VM_PROTO_TESTDEV_H

#include <stdint.h>

/* A class of gen2vm's own, which no guest driver claims (it used to be synthetic Fibre Channel's,
 * which Linux's hv_storvsc then probed and failed). */
#define TESTDEV_CLASS_GUID_TEXT "67656e32-766d-4563-8000-0000000000e1"
/* The reversing echo device (src/devices/reverse.c): each INBAND packet comes back with its payload
 * bytes in reverse order. */
#define REVERSE_CLASS_GUID_TEXT "67656e32-766d-4563-8000-0000000000e2"
#define TESTDEV_CTL_MAGIC 0x56454454u /* "TDEV" */
#define TESTDEV_OP_SUBCHANNELS 1u

/* The test guests' MMIO page (with --debugcon): 16 scratch dwords at 0..0x3C, and at
 * TESTDEV_MMIO_EXITS a read-only counter of the VM's exits to userspace so far (all vCPUs, low 32
 * bits), counting the exit of that read itself: a guest brackets a window with two reads and takes
 * (second - first - 1) as the exits inside it. */
#define TESTDEV_MMIO_BASE 0xFEBF0000ull
#define TESTDEV_MMIO_EXITS 0x100u

struct testdev_ctl {
	uint32_t magic;
	uint32_t op;
	uint32_t count;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct testdev_ctl) == 16, "testdev_ctl");

struct testdev_ctl_reply {
	uint32_t status;
	uint32_t offered;
} __attribute__((packed));
_Static_assert(sizeof(struct testdev_ctl_reply) == 8, "testdev_ctl_reply");

#endif
