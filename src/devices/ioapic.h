/* The I/O APIC of the split irqchip (LAPICs are in KVM, the IOAPIC is ours): 24 pins, version 0x20,
 * at 0xFEC00000. A pin's redirection entry becomes an MSI delivered with KVM_SIGNAL_MSI; the entries
 * are also installed as GSI routes so that KVM reports EOIs of level-triggered vectors
 * (ioapic_eoi()). */
#ifndef GEN2VM_DEVICES_IOAPIC_H
#define GEN2VM_DEVICES_IOAPIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvm/kvm.h"
#include "vmm/bus.h"

#define IOAPIC_BASE 0xFEC00000ull
#define IOAPIC_SIZE 0x1000ull
#define IOAPIC_PINS 24

struct ioapic {
	pthread_mutex_t lock;
	struct kvm_vm *kvm;
	uint32_t ioregsel;
	uint32_t id;
	uint64_t rte[IOAPIC_PINS];
	uint32_t level; /* line levels, bit per pin */
	uint64_t delivered;
};

void ioapic_init(struct ioapic *io, struct kvm_vm *kvm);
struct savestate_ioapic;
/* Its state for a saved VM, and back (before the vCPUs run: the routes KVM needs for EOI exits of
 * level-triggered vectors are installed again). restore checks the pin count: 0 or -EINVAL. */
void ioapic_save(struct ioapic *io, struct savestate_ioapic *out);
int ioapic_restore(struct ioapic *io, const struct savestate_ioapic *in);
int ioapic_attach(struct ioapic *io, struct bus *mmio);
/* Sets a pin's input level. Thread-safe. */
void ioapic_set_irq(struct ioapic *io, unsigned pin, bool level);
/* A vCPU EOIed `vector`: clear Remote IRR of level-triggered pins with it and re-deliver if asserted. */
void ioapic_eoi(struct ioapic *io, uint8_t vector);
void ioapic_mmio(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

#endif
