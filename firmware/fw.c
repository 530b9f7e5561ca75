/* Start-up, host calls and fault reporting. */
#include "fw.h"

#include "efi/efi_fmt.h"

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
static struct fw_idt_entry fw_idt[32] __attribute__((aligned(16)));

static void fw_idt_init(void)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (unsigned i = 0; i < 22; i++) {
		uint64_t h = fw_exc_table[i];
		fw_idt[i] = (struct fw_idt_entry){ (uint16_t)h, cs, 0, 0x8e, (uint16_t)(h >> 16), (uint32_t)(h >> 32), 0 };
	}
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(fw_idt) - 1, (uint64_t)(uintptr_t)fw_idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

/* ---- main ---- */

void fw_main(const struct fw_handoff *ho);
void fw_main(const struct fw_handoff *ho)
{
	fw.ho = ho;
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
	fw_bootmgr_run();
	fw_panic("the boot manager returned");
}
