/* bench/signal: the cost of one HvSignalEvent through the hypercall page's fast path (an OUT that an
 * ioeventfd absorbs in the kernel) against a plain port exit to userspace, measured in the guest. */
#include "gen2vm/proto/testdev.h"
#include "hvguest.h"

#define N 2000

int guest_main(unsigned ncpus, uint64_t rsdp)
{
	guest_idt_init();
	hvguest_init();
	static struct vmbus_client cl;
	static struct vmbus_client_channel ch;
	struct vmbus_guid cls;
	vmbus_guid_parse(TESTDEV_CLASS_GUID_TEXT, &cls);
	if (hvguest_vmbus_connect(&cl))
		return 1;
	const struct vmbus_client_offer *o = vmbus_client_find_offer(&cl, &cls, 0);
	if (!o || vmbus_client_channel_open(&cl, &ch, o->msg.child_relid, 16384, 16384, 0, NULL, 0))
		return 2;
	uint64_t hz = 0;
	rdmsr_safe(HV_MSR_TSC_FREQUENCY, &hz);
	uint64_t t0 = rdtsc();
	for (unsigned i = 0; i < N; i++)
		hvguest_hypercall(HVCALL_SIGNAL_EVENT | (1u << 16), ch.connection_id, 0);
	uint64_t t1 = rdtsc();
	for (unsigned i = 0; i < N; i++)
		outl(0x92, ch.connection_id + 1000); /* no ioeventfd matches: the same OUT exits to gen2vm */
	uint64_t t2 = rdtsc();
	for (unsigned i = 0; i < N; i++)
		outl(0x92, ch.connection_id); /* the doorbell alone, without the page's instructions */
	uint64_t t3 = rdtsc();
	uint64_t sig = (t1 - t0) / N, port = (t2 - t1) / N, bell = (t3 - t2) / N;
	gprintf("signal-bench: doorbell OUT handled in userspace %u ns; the same OUT absorbed by the ioeventfd %u ns "
		"(%u.%ux faster); whole HvSignalEvent through the hypercall page %u ns\n",
		port * 1000000000ull / hz, bell * 1000000000ull / hz, port / bell, (port * 10 / bell) % 10,
		sig * 1000000000ull / hz);
	guest_poweroff();
}
