/* The VMBus echo test device's wire format (src/devices/testdev.h describes the behaviour); shared
 * with the test guests. */
#ifndef GEN2VM_PROTO_TESTDEV_H
#define GEN2VM_PROTO_TESTDEV_H

#include <stdint.h>

#define TESTDEV_CLASS_GUID_TEXT "2f9bcc4a-0069-4af3-b76b-6fd0be528cda"
#define TESTDEV_CTL_MAGIC 0x56454454u /* "TDEV" */
#define TESTDEV_OP_SUBCHANNELS 1u

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
