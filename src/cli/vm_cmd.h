/* `gen2vm vm VERB ...`: VMs kept in the VM store (src/mgmt/store.h) and managed by name, as
 * Hyper-V's New-VM/Get-VM/Start-VM/Stop-VM/Set-VM... do. argv[0] is "vm". Returns the process exit
 * code (src/cli/exit.h): 0 success, 1 failed while working, 2 bad usage or input (nothing changed:
 * an unknown VM, a bad value, a VM that runs where it must be off). */
#ifndef GEN2VM_CLI_VM_CMD_H
#define GEN2VM_CLI_VM_CMD_H

int cli_vm_main(int argc, char **argv);

#endif
