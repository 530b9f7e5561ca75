/* The machine's hardware-reduced ACPI power-management registers, all byte-wide I/O ports named by
 * the FADT's Generic Address Structures (src/platform/acpi.c builds the FADT, src/devices/acpi_pm.c
 * is the device, firmware/rt.c uses them for ResetSystem). Shared by the VMM and the firmware.
 *
 * SLEEP_CONTROL: the guest writes SLP_TYP << 2 | SLP_EN to enter a sleep state. Reads return 0.
 * SLEEP_STATUS: the guest writes WAK_STS (bit 7) to clear it before sleeping, then polls it for the
 *   wake-up that never comes for S5. Reads return 0, writes are ignored.
 * RESET: writing ACPI_RESET_VALUE resets the machine; other writes are ignored. */
#ifndef GEN2VM_PROTO_ACPI_PM_H
#define GEN2VM_PROTO_ACPI_PM_H

#define ACPI_PORT_SLEEP_CONTROL 0x400
#define ACPI_PORT_SLEEP_STATUS  0x401
#define ACPI_PORT_RESET         0x402
#define ACPI_RESET_VALUE        0x01

#define ACPI_SLEEP_TYP_SHIFT 2
#define ACPI_SLEEP_TYP_MASK  0x1C
#define ACPI_SLEEP_EN        0x20
#define ACPI_WAK_STS         0x80
/* The SLP_TYP value \_S5 advertises: the only sleep state the machine offers. */
#define ACPI_SLP_TYP_S5      5

#endif
