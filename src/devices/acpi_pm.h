/* The machine's power-management ports: the sleep control, sleep status and reset registers the
 * hardware-reduced FADT names (src/platform/acpi.h), and port 0x80 (POST codes, Linux's io_delay),
 * which a PC absorbs and so does this machine. S5 turns the VM off; the reset value resets it. */
#ifndef GEN2VM_DEVICES_ACPI_PM_H
#define GEN2VM_DEVICES_ACPI_PM_H

#include "vmm/vm.h"

/* Claims the ports on vm's port bus; the VM stops (VM_EXIT_POWEROFF / VM_EXIT_RESET) when the guest
 * asks. Returns 0 or -errno (a port already claimed). */
int acpi_pm_attach(struct vm *vm);

#endif
