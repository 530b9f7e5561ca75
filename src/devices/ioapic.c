#include "devices/ioapic.h"

#include <errno.h>
#include <string.h>

#include "gen2vm/proto/savestate.h"
#include "util/log.h"

#define RTE_MASKED (1ull << 16)
#define RTE_LEVEL (1ull << 15)
#define RTE_REMOTE_IRR (1ull << 14)
#define RTE_DEST_LOGICAL (1ull << 11)
#define RTE_RO_BITS (RTE_REMOTE_IRR | (1ull << 12)) /* Remote IRR and delivery status are read-only */

void ioapic_init(struct ioapic *io, struct kvm_vm *kvm)
{
	memset(io, 0, sizeof(*io));
	pthread_mutex_init(&io->lock, NULL);
	io->kvm = kvm;
	for (int i = 0; i < IOAPIC_PINS; i++)
		io->rte[i] = RTE_MASKED;
}

static void ioapic_msi(uint64_t rte, uint64_t *addr, uint32_t *data)
{
	uint32_t dest = (uint32_t)(rte >> 56);
	*addr = 0xFEE00000ull | (uint64_t)dest << 12 | ((rte & RTE_DEST_LOGICAL) ? 1u << 2 : 0);
	*data = (uint32_t)(rte & 0xff) | (uint32_t)((rte >> 8) & 7) << 8 | ((rte & RTE_LEVEL) ? 1u << 15 | 1u << 14 : 0);
}

/* Delivers pin if its state asks for it; lock held. */
static void ioapic_service(struct ioapic *io, unsigned pin)
{
	uint64_t rte = io->rte[pin];
	if (rte & RTE_MASKED)
		return;
	if (rte & RTE_LEVEL) {
		if (!(io->level & (1u << pin)) || (rte & RTE_REMOTE_IRR))
			return;
		io->rte[pin] |= RTE_REMOTE_IRR;
	}
	uint64_t addr;
	uint32_t data;
	ioapic_msi(rte, &addr, &data);
	io->delivered++;
	if (kvm_vm_signal_msi(io->kvm, addr, data) < 0)
		log_debug("ioapic: MSI for pin %u not delivered", pin);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, bool level)
{
	if (pin >= IOAPIC_PINS)
		return;
	pthread_mutex_lock(&io->lock);
	bool was = io->level & (1u << pin);
	if (level)
		io->level |= 1u << pin;
	else
		io->level &= ~(1u << pin);
	if (level && (!was || (io->rte[pin] & RTE_LEVEL)))
		ioapic_service(io, pin);
	pthread_mutex_unlock(&io->lock);
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	pthread_mutex_lock(&io->lock);
	for (unsigned i = 0; i < IOAPIC_PINS; i++) {
		if ((io->rte[i] & 0xff) == vector && (io->rte[i] & RTE_LEVEL)) {
			io->rte[i] &= ~RTE_REMOTE_IRR;
			ioapic_service(io, i);
		}
	}
	pthread_mutex_unlock(&io->lock);
}

static uint32_t ioapic_read_reg(struct ioapic *io)
{
	uint32_t sel = io->ioregsel & 0xff;
	if (sel == 0)
		return io->id << 24;
	if (sel == 1)
		return (IOAPIC_PINS - 1) << 16 | 0x20;
	if (sel == 2)
		return io->id << 24;
	if (sel >= 0x10 && sel < 0x10 + 2 * IOAPIC_PINS) {
		uint64_t rte = io->rte[(sel - 0x10) / 2];
		return (sel & 1) ? (uint32_t)(rte >> 32) : (uint32_t)rte;
	}
	return 0xffffffff;
}

static void ioapic_write_reg(struct ioapic *io, uint32_t v)
{
	uint32_t sel = io->ioregsel & 0xff;
	if (sel == 0) {
		io->id = (v >> 24) & 0xf;
		return;
	}
	if (sel < 0x10 || sel >= 0x10 + 2 * IOAPIC_PINS)
		return;
	unsigned pin = (sel - 0x10) / 2;
	uint64_t old = io->rte[pin], rte = old;
	if (sel & 1)
		rte = (rte & 0xffffffffull) | (uint64_t)v << 32;
	else
		rte = (rte & 0xffffffff00000000ull) | (v & ~RTE_RO_BITS) | (old & RTE_RO_BITS);
	io->rte[pin] = rte;
	/* Install the route so KVM asks for EOI exits of level-triggered vectors. */
	uint64_t addr;
	uint32_t data;
	ioapic_msi(rte, &addr, &data);
	if (!(rte & RTE_MASKED))
		kvm_vm_add_msi_route(io->kvm, pin, addr, data);
	ioapic_service(io, pin);
}

void ioapic_mmio(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct ioapic *io = opaque;
	if (len != 4)
		return; /* the IOAPIC only decodes 32-bit accesses */
	uint32_t v;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&io->lock);
	if (off == 0x00) {
		if (is_write)
			io->ioregsel = v;
		else
			v = io->ioregsel;
	} else if (off == 0x10) {
		if (is_write)
			ioapic_write_reg(io, v);
		else
			v = ioapic_read_reg(io);
	} else if (off == 0x40 && is_write) {
		pthread_mutex_unlock(&io->lock);
		ioapic_eoi(io, (uint8_t)v);
		return;
	} else {
		v = 0;
	}
	if (!is_write)
		memcpy(data, &v, 4);
	pthread_mutex_unlock(&io->lock);
}

int ioapic_attach(struct ioapic *io, struct bus *mmio)
{
	return bus_register(mmio, IOAPIC_BASE, IOAPIC_SIZE, ioapic_mmio, io, "ioapic");
}

void ioapic_save(struct ioapic *io, struct savestate_ioapic *out)
{
	pthread_mutex_lock(&io->lock);
	*out = (struct savestate_ioapic){ .ioregsel = io->ioregsel, .id = io->id, .level = io->level, .nr_pins = IOAPIC_PINS };
	memcpy(out->rte, io->rte, sizeof(out->rte));
	pthread_mutex_unlock(&io->lock);
}

int ioapic_restore(struct ioapic *io, const struct savestate_ioapic *in)
{
	_Static_assert(sizeof(in->rte) == sizeof(io->rte), "IOAPIC pins");
	if (in->nr_pins != IOAPIC_PINS)
		return -EINVAL;
	pthread_mutex_lock(&io->lock);
	io->ioregsel = in->ioregsel;
	io->id = in->id & 0xf;
	io->level = in->level & ((1u << IOAPIC_PINS) - 1);
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		io->rte[pin] = in->rte[pin];
		uint64_t addr;
		uint32_t data;
		ioapic_msi(io->rte[pin], &addr, &data);
		if (!(io->rte[pin] & RTE_MASKED))
			kvm_vm_add_msi_route(io->kvm, pin, addr, data);
	}
	pthread_mutex_unlock(&io->lock);
	return 0;
}
