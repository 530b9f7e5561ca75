#include "devices/acpi_pm.h"

#include <string.h>

#include "util/log.h"

enum acpi_pm_event acpi_pm_decode_sleep_control(uint8_t value)
{
	if (!(value & ACPI_SLEEP_EN))
		return ACPI_PM_NONE;
	unsigned typ = (value & ACPI_SLEEP_TYP_MASK) >> ACPI_SLEEP_TYP_SHIFT;
	return typ == ACPI_SLP_TYP_S5 ? ACPI_PM_POWER_OFF : ACPI_PM_UNSUPPORTED;
}

bool acpi_pm_is_reset(uint16_t port, uint8_t value)
{
	return port == ACPI_PORT_RESET && value == ACPI_RESET_VALUE;
}

static void acpi_pm_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct vm *vm = opaque;
	uint16_t port = (uint16_t)(ACPI_PORT_SLEEP_CONTROL + off);
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (port == ACPI_PORT_SLEEP_CONTROL) {
		enum acpi_pm_event ev = acpi_pm_decode_sleep_control(data[0]);
		if (ev == ACPI_PM_POWER_OFF)
			vm_stop(vm, VM_EXIT_POWEROFF, "guest powered off");
		else if (ev == ACPI_PM_UNSUPPORTED)
			log_guest("sleep state 0x%02x is not offered by this machine; ignored", data[0]);
	} else if (acpi_pm_is_reset(port, data[0])) {
		vm_stop(vm, VM_EXIT_RESET, "guest reset");
	}
}

static void acpi_pm_post_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	if (!is_write)
		memset(data, 0xff, len); /* nothing drives the bus: reads float */
}

int acpi_pm_attach(struct vm *vm)
{
	int r = bus_register(&vm->pio, ACPI_PORT_SLEEP_CONTROL, 3, acpi_pm_io, vm, "acpi-pm");
	return r ? r : bus_register(&vm->pio, 0x80, 1, acpi_pm_post_io, vm, "post");
}
