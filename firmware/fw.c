/* Start-up, host calls and fault reporting. */
#include "fw.h"

#include "efi/efi_fmt.h"
#include "gen2vm/proto/hv.h"

struct fw_state fw;

/* One request buffer for events and panics: the firmware is single-threaded. Static, so it lies in
 * the firmware image (below 4 GiB, physically contiguous). */
static union {
	struct fw_event_req ev;
	uint8_t raw[sizeof(struct fw_event_req) + FW_EVENT_TEXT_MAX];
} fw_evbuf __attribute__((aligned(16)));

static inline void fw_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

uint64_t fw_virt_to_phys(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

EFI_STATUS fw_host_call(void *req)
{
	struct fw_host_req *h = req;
	uint64_t gpa = fw_virt_to_phys(req);
	if (gpa >= (1ull << 32) || (gpa & 7))
		return EFI_INVALID_PARAMETER;
	h->status = EFI_DEVICE_ERROR; /* what stays when no VMM answered */
	fw_outl(FW_HOST_PORT, (uint32_t)gpa);
	return *(volatile uint64_t *)&h->status;
}

static void fw_host_vevent(uint32_t op, uint32_t code, const char *fmt, va_list ap)
{
	int n = efi_vsnprintf(fw_evbuf.ev.text, FW_EVENT_TEXT_MAX + 1, fmt, ap);
	if (n < 0)
		n = 0;
	if ((unsigned)n > FW_EVENT_TEXT_MAX)
		n = FW_EVENT_TEXT_MAX;
	fw_evbuf.ev.hdr.op = op;
	fw_evbuf.ev.hdr.size = (uint32_t)(sizeof(fw_evbuf.ev) + (unsigned)n);
	fw_evbuf.ev.code = code;
	fw_evbuf.ev.len = (uint32_t)n;
	fw_host_call(&fw_evbuf.ev);
}

void fw_host_event(uint32_t code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fw_host_vevent(FW_OP_EVENT, code, fmt, ap);
	va_end(ap);
}

void fw_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fw_puts("gen2vm firmware: fatal: ");
	fw_vprintf(fmt, ap);
	fw_puts("\n");
	va_end(ap);
	va_start(ap, fmt);
	fw_host_vevent(FW_OP_PANIC, 0, fmt, ap);
	va_end(ap);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- exceptions ---- */

struct fw_exc_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

void fw_exception(struct fw_exc_frame *f);
void fw_exception(struct fw_exc_frame *f)
{
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	fw_panic("CPU exception %llu (error code 0x%llx) at RIP 0x%llx, RSP 0x%llx, CR2 0x%llx, RAX 0x%llx, "
		 "RCX 0x%llx, RDX 0x%llx",
		 (unsigned long long)f->vector, (unsigned long long)f->error, (unsigned long long)f->rip,
		 (unsigned long long)f->rsp, (unsigned long long)cr2, (unsigned long long)f->rax,
		 (unsigned long long)f->rcx, (unsigned long long)f->rdx);
}

struct fw_idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

extern const uint64_t fw_exc_table[22];
extern const char fw_irq[];
static struct fw_idt_entry fw_idt[256] __attribute__((aligned(16)));

/* A double fault has a stack of its own (IST 1 of our TSS): a fault whose delivery fails because the
 * stack pointer is bad (a loader's corrupted RSP) then still reaches fw_exception and is reported
 * with the registers of the code that faulted, instead of ending in a triple fault that the VMM can
 * only report as the reset state. The GDT is the VMM's (code 0x10, data 0x18) plus the TSS at 0x20. */
struct fw_tss {
	uint32_t rsv0;
	uint64_t rsp[3], rsv1, ist[7], rsv2;
	uint16_t rsv3, iomap;
} __attribute__((packed));
_Static_assert(sizeof(struct fw_tss) == 104, "64-bit TSS");
#define FW_TSS_SEL 0x20u
#define FW_DF_IST 1u
static struct fw_tss fw_tss __attribute__((aligned(16)));
static uint8_t fw_df_stack[16384] __attribute__((aligned(16)));
static uint64_t fw_gdt[6] __attribute__((aligned(16)));

static void fw_gdt_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) old, gdtr;
	__asm__ volatile("sgdt %0" : "=m"(old));
	/* Ours only where the VMM's is the one we know (the two flat segments at 0x10 and 0x18). */
	if (old.limit < 0x1f)
		return;
	efi_memcpy(fw_gdt, (const void *)(uintptr_t)old.base, 4 * 8);
	fw_tss.ist[FW_DF_IST - 1] = (uint64_t)(uintptr_t)(fw_df_stack + sizeof(fw_df_stack));
	fw_tss.iomap = sizeof(fw_tss); /* no I/O permission bitmap */
	uint64_t b = (uint64_t)(uintptr_t)&fw_tss, lim = sizeof(fw_tss) - 1;
	fw_gdt[4] = (lim & 0xffff) | (b & 0xffffff) << 16 | 0x89ull << 40 | (lim >> 16 & 0xf) << 48 |
		    (b >> 24 & 0xff) << 56; /* present, DPL 0, available 64-bit TSS */
	fw_gdt[5] = b >> 32;
	gdtr.limit = sizeof(fw_gdt) - 1;
	gdtr.base = (uint64_t)(uintptr_t)fw_gdt;
	__asm__ volatile("lgdt %0" : : "m"(gdtr) : "memory");
	__asm__ volatile("ltr %w0" : : "r"((uint16_t)FW_TSS_SEL) : "memory");
}

static void fw_idt_init(void)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	uint16_t tr;
	__asm__ volatile("str %w0" : "=r"(tr));
	for (unsigned i = 0; i < 256; i++) {
		uint64_t h = i < 22 ? fw_exc_table[i] : i >= 32 ? (uint64_t)(uintptr_t)fw_irq : 0;
		uint8_t ist = i == 8 && tr == FW_TSS_SEL ? FW_DF_IST : 0;
		if (h)
			fw_idt[i] = (struct fw_idt_entry){ (uint16_t)h, cs, ist, 0x8e, (uint16_t)(h >> 16),
							   (uint32_t)(h >> 32), 0 };
	}
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(fw_idt) - 1, (uint64_t)(uintptr_t)fw_idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

/* ---- the boot-services tick ----
 * UEFI 2.10 2.3.4: in boot services interrupts are enabled and the timer interrupt is the only one
 * serviced. Everything here is polled (fw_event_poll), but loaders idle with HLT and wait for that
 * interrupt to wake them (iPXE does between polls of the network and the keyboard): a periodic
 * local-APIC timer at 100 Hz provides it, and fw_irq only ends it. ExitBootServices stops it. */
#define LAPIC_MMIO 0xfee00000u
#define LAPIC_SVR 0xf0u
#define LAPIC_LVT_TIMER 0x320u
#define LAPIC_TIMER_INIT 0x380u
#define LAPIC_TIMER_DIV 0x3e0u
#define FW_TICK_VECTOR 0x40u
#define FW_TICK_HZ 100u

static void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(LAPIC_MMIO + reg) = v;
}

static void fw_tick_start(void)
{
	uint32_t a, b, c, d;
	uint64_t hz = 1000000000u; /* KVM's local APIC counts at 1 GHz; Hyper-V's MSR says so where offered */
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(HV_CPUID_FEATURES), "c"(0));
	if (a & HV_FEAT_FREQUENCY_MSRS) {
		__asm__ volatile("rdmsr" : "=a"(a), "=d"(d) : "c"(HV_MSR_APIC_FREQUENCY));
		if (((uint64_t)d << 32 | a) >= 1000000u)
			hz = (uint64_t)d << 32 | a;
	}
	lapic_write(LAPIC_SVR, 0x100u | 0xffu); /* software-enabled, spurious vector 0xff */
	lapic_write(LAPIC_TIMER_DIV, 0xbu);      /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, FW_TICK_VECTOR | 1u << 17); /* periodic */
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)(hz / FW_TICK_HZ));
	__asm__ volatile("sti");
}

void fw_tick_stop(void)
{
	lapic_write(LAPIC_LVT_TIMER, 1u << 16); /* masked */
	lapic_write(LAPIC_TIMER_INIT, 0);
	/* A tick already pending is taken here (STI acts after the next instruction), not left for the
	 * OS to find once it enables interrupts. */
	__asm__ volatile("sti; nop; cli" ::: "memory");
}

/* ---- main ---- */

void fw_main(const struct fw_handoff *ho);
void fw_main(const struct fw_handoff *ho)
{
	fw.ho = ho;
	fw_gdt_init();
	fw_idt_init();
	fw_console_init();
	if (ho->magic != FW_HANDOFF_MAGIC || ho->version != FW_HANDOFF_VERSION || ho->size != sizeof(*ho) ||
	    ho->nr_mem > FW_MEM_MAX)
		fw_panic("the hand-off block from the VMM is not one this firmware understands (version %u)",
			 ho->version);
	fw_host_event(FW_EV_START, "%s", FW_VERSION);
	EFI_STATUS s;
	if ((s = fw_bs_init()))
		fw_panic("boot services failed to start (status 0x%llx)", (unsigned long long)s);
	if ((s = fw_rt_init()))
		fw_printf("gen2vm firmware: runtime services: status 0x%llx\n", (unsigned long long)s);
	if ((s = fw_conio_init()))
		fw_printf("gen2vm firmware: console protocols: status 0x%llx\n", (unsigned long long)s);
	if ((s = fw_tables_init()))
		fw_printf("gen2vm firmware: configuration tables: status 0x%llx\n", (unsigned long long)s);
	if ((s = fw_storage_init()))
		fw_printf("gen2vm firmware: storage: status 0x%llx\n", (unsigned long long)s);
	fw_tick_start();
	fw_bootmgr_run();
	fw_panic("the boot manager returned");
}
