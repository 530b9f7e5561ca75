/* `gen2vm firmware show|set|reset --nvram FILE`: the VM's UEFI boot entries and settings kept in its
 * NVRAM file (Get-VMFirmware / Set-VMFirmware). argv[0] is "firmware". Returns the process exit
 * code: 0 success, 1 operation failed (the reason was printed naming the file), 2 usage error. */
#ifndef GEN2VM_CLI_FW_CMD_H
#define GEN2VM_CLI_FW_CMD_H

int cli_firmware_main(int argc, char **argv);

#endif
