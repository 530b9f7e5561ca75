/* The firmware's VMBus client: Hyper-V guest OS id, hypercall page and SynIC on the boot processor,
 * polled. SINT2 gets a vector but stays unmasked only so that our hv.c delivers messages into the
 * SIMP slot (a masked SINT drops them); interrupts are off in the firmware, so the vector never fires
 * here (0xF3 is Linux's Hyper-V callback vector, harmless if the OS sees a stale request).
 *
 * At ExitBootServices the channels are closed and UNLOAD sent, then the SynIC and hypercall page are
 * switched off, as Hyper-V's own firmware leaves them: the OS's VMBus driver connects afresh.
 */
#include "storage.h"

#include "gen2vm/proto/hv.h"

#define FW_VMBUS_SINT_VECTOR 0xF3u
#define FW_VMBUS_MSG_TIMEOUT_US 2000000ull
#define FW_VMBUS_MAX_CHANNELS 16u

static uint8_t hv_hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t hv_simp[4096] __attribute__((aligned(4096)));
static uint8_t hv_siefp[4096] __attribute__((aligned(4096)));
static uint8_t hv_input[4096] __attribute__((aligned(4096)));

static struct vmbus_client vmbus_cl;
static bool vmbus_up;
static bool vmbus_exiting; /* ExitBootServices: the memory map is final, free nothing */
static struct vmbus_client_channel *vmbus_chans[FW_VMBUS_MAX_CHANNELS];
static struct {
	void (*fn)(void *ctx);
	void *ctx;
} vmbus_on_exit[FW_VMBUS_MAX_CHANNELS];
static uint32_t vmbus_nr_chans;

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

static uint64_t hv_hypercall(uint64_t control, uint64_t in, uint64_t out)
{
	uint64_t status;
	register uint64_t r8 __asm__("r8") = out;
	__asm__ volatile("call *%[page]"
			 : "=a"(status), "+c"(control), "+d"(in), "+r"(r8)
			 : [page] "r"(hv_hypercall_page)
			 : "r9", "r10", "r11", "memory", "cc");
	return status;
}

static uint16_t op_post(void *ctx, uint32_t conn, const void *msg, uint32_t len)
{
	(void)ctx;
	struct hv_input_post_message *in = (void *)hv_input;
	if (len > sizeof(in->payload))
		return 5; /* HV_STATUS_INVALID_PARAMETER */
	in->connection_id = conn;
	in->reserved = 0;
	in->message_type = HVMSG_VMBUS;
	in->payload_size = len;
	efi_memcpy(in->payload, msg, len);
	return (uint16_t)hv_hypercall(HVCALL_POST_MESSAGE, (uint64_t)(uintptr_t)hv_input, 0);
}

static int op_next(void *ctx, void *buf, uint32_t *len)
{
	(void)ctx;
	struct hv_message *slot = (struct hv_message *)hv_simp + VMBUS_MESSAGE_SINT;
	uint64_t end = fw_stor_now_us() + FW_VMBUS_MSG_TIMEOUT_US;
	for (;;) {
		for (unsigned spin = 0; spin < 64; spin++) {
			if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE) == HVMSG_NONE) {
				__asm__ volatile("pause");
				continue;
			}
			uint32_t n = slot->header.payload_size;
			if (n > sizeof(slot->payload))
				n = sizeof(slot->payload);
			*len = n;
			efi_memcpy(buf, slot->payload, (n + 7) & ~7u); /* buf holds 240 bytes (the ops contract) */
			__atomic_store_n(&slot->header.message_type, HVMSG_NONE, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&slot->header.message_flags, __ATOMIC_SEQ_CST) & HV_MESSAGE_FLAG_PENDING)
				wrmsr(HV_MSR_EOM, 0);
			return 0;
		}
		if (fw_stor_now_us() > end)
			return -VMBUS_ETIMEDOUT;
	}
}

static void op_signal(void *ctx, uint32_t conn)
{
	(void)ctx;
	hv_hypercall(HVCALL_SIGNAL_EVENT | (1u << 16), conn, 0);
}

static void *op_alloc(void *ctx, uint32_t n)
{
	(void)ctx;
	return fw_stor_alloc_pages(n);
}

static void op_free(void *ctx, void *p, uint32_t n)
{
	(void)ctx;
	if (!vmbus_exiting)
		fw_stor_free_pages(p, n);
}

static uint64_t op_v2p(void *ctx, const void *p)
{
	(void)ctx;
	return fw_virt_to_phys(p);
}

static const struct vmbus_client_ops fw_vmbus_ops = {
	.post_message = op_post, .next_message = op_next, .signal_event = op_signal,
	.alloc_pages = op_alloc, .free_pages = op_free, .virt_to_phys = op_v2p,
};

static void hv_synic_off(void)
{
	wrmsr(HV_MSR_SCONTROL, 0);
	wrmsr(HV_MSR_SINT0 + VMBUS_MESSAGE_SINT, 1ull << 16); /* masked, the reset value */
	wrmsr(HV_MSR_SIMP, 0);
	wrmsr(HV_MSR_SIEFP, 0);
	wrmsr(HV_MSR_HYPERCALL, 0);
	wrmsr(HV_MSR_GUEST_OS_ID, 0);
}

static void EFIAPI fw_vmbus_exit_boot_services(EFI_EVENT ev, void *ctx)
{
	(void)ev;
	(void)ctx;
	if (!vmbus_up)
		return;
	vmbus_exiting = true;
	for (uint32_t i = vmbus_nr_chans; i-- > 0;) {
		if (vmbus_on_exit[i].fn && vmbus_chans[i]->open)
			vmbus_on_exit[i].fn(vmbus_on_exit[i].ctx);
		if (vmbus_chans[i]->open)
			vmbus_client_channel_close(vmbus_chans[i]);
	}
	vmbus_nr_chans = 0;
	vmbus_client_unload(&vmbus_cl);
	hv_synic_off();
	vmbus_up = false;
}

EFI_STATUS fw_vmbus_init(void)
{
	/* Hyper-V's CPUID leaves say whether the MSRs exist: 0x40000000 "Microsoft Hv", 0x40000003
	 * EAX bits 2 (SynIC) and 5 (hypercall MSRs). */
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000000u), "c"(0));
	if (b != 0x7263694d || a < 0x40000005u) /* "Micr" */
		return EFI_NOT_FOUND;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000003u), "c"(0));
	if ((a & ((1u << 2) | (1u << 5))) != ((1u << 2) | (1u << 5)))
		return EFI_NOT_FOUND;
	/* The guest OS id tells Hyper-V who calls: we say what Hyper-V's own firmware says, as a loader
	 * that would otherwise reset the VMBus connection under us (iPXE) checks for exactly that. */
	wrmsr(HV_MSR_GUEST_OS_ID, HV_GUEST_OS_ID_HYPERV_UEFI);
	wrmsr(HV_MSR_HYPERCALL, fw_virt_to_phys(hv_hypercall_page) | 1);
	efi_memset(hv_simp, 0, sizeof(hv_simp));
	wrmsr(HV_MSR_SIMP, fw_virt_to_phys(hv_simp) | 1);
	wrmsr(HV_MSR_SIEFP, fw_virt_to_phys(hv_siefp) | 1);
	wrmsr(HV_MSR_SINT0 + VMBUS_MESSAGE_SINT, FW_VMBUS_SINT_VECTOR);
	wrmsr(HV_MSR_SCONTROL, 1);
	vmbus_client_init(&vmbus_cl, &fw_vmbus_ops);
	int rc = vmbus_client_connect(&vmbus_cl, (uint32_t)rdmsr(HV_MSR_VP_INDEX), 0);
	if (!rc)
		rc = vmbus_client_request_offers(&vmbus_cl);
	if (rc) {
		fw_printf("storage: VMBus connection failed (%d)\n", rc);
		hv_synic_off();
		return EFI_DEVICE_ERROR;
	}
	vmbus_up = true;
	if (fw.bs) {
		EFI_EVENT ev;
		EFI_STATUS s = fw.bs->CreateEvent(EVT_SIGNAL_EXIT_BOOT_SERVICES, TPL_NOTIFY, fw_vmbus_exit_boot_services,
						 NULL, &ev);
		if (EFI_ERROR(s))
			fw_printf("storage: no ExitBootServices event (0x%llx): VMBus stays connected\n",
				  (unsigned long long)s);
	}
	return EFI_SUCCESS;
}

struct vmbus_client *fw_vmbus_client(void)
{
	return vmbus_up ? &vmbus_cl : NULL;
}

EFI_STATUS fw_vmbus_channel_open(struct vmbus_client_channel *ch, uint32_t relid, uint32_t ring_bytes)
{
	if (!vmbus_up || vmbus_nr_chans == FW_VMBUS_MAX_CHANNELS)
		return EFI_OUT_OF_RESOURCES;
	uint8_t userdata[24] = { 0 };
	int rc = vmbus_client_channel_open(&vmbus_cl, ch, relid, ring_bytes, ring_bytes, 0, userdata,
					   sizeof(userdata));
	if (rc)
		return rc == -VMBUS_ENOMEM ? EFI_OUT_OF_RESOURCES : EFI_DEVICE_ERROR;
	/* Polled: the host need not interrupt us for each packet. */
	vmbus_ring_mask(&ch->in);
	vmbus_on_exit[vmbus_nr_chans].fn = NULL;
	vmbus_chans[vmbus_nr_chans++] = ch;
	return EFI_SUCCESS;
}

void fw_vmbus_channel_on_exit(struct vmbus_client_channel *ch, void (*fn)(void *ctx), void *ctx)
{
	for (uint32_t i = 0; i < vmbus_nr_chans; i++)
		if (vmbus_chans[i] == ch) {
			vmbus_on_exit[i].fn = fn;
			vmbus_on_exit[i].ctx = ctx;
		}
}

EFI_STATUS fw_vmbus_recv(struct vmbus_client_channel *ch, void *buf, uint32_t cap, uint32_t *len,
			 uint64_t timeout_us)
{
	uint64_t end = 0;
	for (;;) {
		int rc = vmbus_client_recv(ch, buf, cap, len);
		if (!rc) {
			vmbus_client_recv_done(ch);
			return EFI_SUCCESS;
		}
		if (rc != -VMBUS_EAGAIN)
			return EFI_DEVICE_ERROR;
		/* Every instruction is emulated: spin on the one word the host moves, and read the clock
		 * (an exit) only now and then. */
		const volatile uint32_t *wi = (const volatile uint32_t *)(const void *)ch->in.hdr; /* write_index: offset 0, page aligned */
		uint32_t seen = *wi;
		for (unsigned spin = 0; spin < 256 && *wi == seen; spin++)
			__asm__ volatile("pause");
		uint64_t now = fw_stor_now_us();
		if (!end)
			end = now + timeout_us;
		else if (now > end)
			return EFI_TIMEOUT;
	}
}
