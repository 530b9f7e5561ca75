/* The machine's power-management ports: the sleep control, sleep status and reset registers the
 * hardware-reduced FADT names (include/gen2vm/proto/acpi_pm.h), and port 0x80 (POST codes, Linux's io_delay),
 * which a PC absorbs and so does this machine. S5 turns the VM off; the reset value resets it. */
#ifndef GEN2VM_DEVICES_ACPI_PM_H
#define GEN2VM_DEVICES_ACPI_PM_H

#include <stdbool.h>
#include <stdint.h>

#include "gen2vm/proto/acpi_pm.h"
#include "vmm/vm.h"

enum acpi_pm_event {
	ACPI_PM_NONE,        /* SLP_EN clear: nothing to do */
	ACPI_PM_POWER_OFF,   /* S5: stop the VM */
	ACPI_PM_UNSUPPORTED, /* a sleep type never advertised: log it (guest-caused) and ignore it */
};

/* Decodes a byte written to ACPI_PORT_SLEEP_CONTROL. */
enum acpi_pm_event acpi_pm_decode_sleep_control(uint8_t value);
/* True when writing value to port asks for a machine reset. */
bool acpi_pm_is_reset(uint16_t port, uint8_t value);

/* Claims the ports on vm's port bus; the VM stops (VM_EXIT_POWEROFF / VM_EXIT_RESET) when the guest
 * asks. Returns 0 or -errno (a port already claimed). */
int acpi_pm_attach(struct vm *vm);

#endif
