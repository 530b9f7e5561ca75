#include "hvguest.h"


static uint8_t hypercall_page[4096] __attribute__((aligned(4096)));
static uint8_t simp[4096] __attribute__((aligned(4096)));
static uint8_t siefp[4096] __attribute__((aligned(4096)));
static uint8_t input[4096] __attribute__((aligned(4096)));
static uint8_t pool[8 << 20] __attribute__((aligned(4096)));
static size_t pool_used;

void hvguest_init(void)
{
	wrmsr_safe(HV_MSR_GUEST_OS_ID, 0x8100000000060100ull);
	wrmsr_safe(HV_MSR_HYPERCALL, (uint64_t)hypercall_page | 1);
	wrmsr_safe(HV_MSR_SIMP, (uint64_t)simp | 1);
	wrmsr_safe(HV_MSR_SIEFP, (uint64_t)siefp | 1);
	wrmsr_safe(HV_MSR_SINT0 + 2, HVGUEST_SINT_VECTOR);
	wrmsr_safe(HV_MSR_SCONTROL, 1);
}

volatile uint8_t *hvguest_event_flags(unsigned sint)
{
	return siefp + (sint % 16) * 256;
}

struct interrupt_frame;
static volatile uint64_t channel_irqs;

__attribute__((interrupt)) static void channel_isr(struct interrupt_frame *f)
{
	(void)f;
	channel_irqs++;
	hvguest_lapic_eoi();
}

void hvguest_channel_irq_install(void)
{
	guest_idt_set(HVGUEST_SINT_VECTOR, (void *)channel_isr, 0);
	mmio_write32(HVGUEST_LAPIC + 0xF0, 0x1FF); /* software-enable the local APIC */
}

uint64_t hvguest_channel_irqs(void)
{
	return channel_irqs;
}

uint64_t hvguest_call(const void *page, uint64_t control, uint64_t in, uint64_t out)
{
	uint64_t status;
	register uint64_t r8 __asm__("r8") = out;
	__asm__ volatile("call *%[page]"
			 : "=a"(status), "+c"(control), "+d"(in), "+r"(r8)
			 : [page] "r"(page)
			 : "r9", "r10", "r11", "memory", "cc");
	return status;
}

uint64_t hvguest_hypercall(uint64_t control, uint64_t in, uint64_t out)
{
	return hvguest_call(hypercall_page, control, in, out);
}

static uint16_t op_post(void *ctx, uint32_t conn, const void *msg, uint32_t len)
{
	struct hv_input_post_message *in = (void *)input;
	in->connection_id = conn;
	in->reserved = 0;
	in->message_type = HVMSG_VMBUS;
	in->payload_size = len;
	memcpy(in->payload, msg, len);
	return (uint16_t)hvguest_hypercall(HVCALL_POST_MESSAGE, (uint64_t)input, 0);
}

static int op_next(void *ctx, void *buf, uint32_t *len)
{
	struct hv_message *slot = (struct hv_message *)simp + 2;
	for (unsigned long spin = 0; spin < 50000000ul; spin++) {
		if (__atomic_load_n(&slot->header.message_type, __ATOMIC_ACQUIRE) == HVMSG_NONE) {
			cpu_relax();
			continue;
		}
		*len = slot->header.payload_size;
		memcpy(buf, slot->payload, *len);
		/* Free the slot, then EOM if the host queued more (the guest's half of the handshake). */
		__atomic_store_n(&slot->header.message_type, HVMSG_NONE, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&slot->header.message_flags, __ATOMIC_SEQ_CST) & HV_MESSAGE_FLAG_PENDING)
			wrmsr_safe(HV_MSR_EOM, 0);
		return 0;
	}
	return -VMBUS_ETIMEDOUT;
}

static void op_signal(void *ctx, uint32_t conn)
{
	hvguest_hypercall(HVCALL_SIGNAL_EVENT | (1u << 16), conn, 0);
}

static void *op_alloc(void *ctx, uint32_t n)
{
	if (pool_used + n * 4096ul > sizeof(pool))
		return NULL;
	void *p = pool + pool_used;
	pool_used += n * 4096ul;
	memset(p, 0, n * 4096ul);
	return p;
}

static void op_free(void *ctx, void *p, uint32_t n)
{
	if ((uint8_t *)p + n * 4096ul == pool + pool_used)
		pool_used -= n * 4096ul; /* a stack: the last allocation comes back first on close */
}

static uint64_t op_v2p(void *ctx, const void *p)
{
	return (uint64_t)p; /* identity-mapped */
}

const struct vmbus_client_ops hvguest_vmbus_ops = {
	.post_message = op_post, .next_message = op_next, .signal_event = op_signal,
	.alloc_pages = op_alloc, .free_pages = op_free, .virt_to_phys = op_v2p,
};

int hvguest_roundtrip(struct vmbus_client_channel *ch, uint64_t id, const void *out, uint32_t len, void *in,
		      uint32_t cap, uint32_t *n)
{
	int r;
	while ((r = vmbus_client_send(ch, VM_PKT_DATA_INBAND, 0, id, NULL, 0, out, len)) == -VMBUS_EAGAIN)
		cpu_relax();
	if (r)
		return r;
	for (unsigned long spin = 0; (r = vmbus_client_recv(ch, in, cap, n)) == -VMBUS_EAGAIN; spin++) {
		if (spin > 100000000ul)
			return -VMBUS_ETIMEDOUT;
		cpu_relax();
	}
	vmbus_client_recv_done(ch);
	return r;
}

int hvguest_vmbus_connect(struct vmbus_client *cl)
{
	vmbus_client_init(cl, &hvguest_vmbus_ops);
	int r = vmbus_client_connect(cl, 0, 0);
	return r ? r : vmbus_client_request_offers(cl);
}
