/* `gen2vm service run|stop-vms`: gen2vmd (src/mgmt/service.h). argv[0] is "service". Returns the
 * process exit code (src/cli/exit.h). */
#ifndef GEN2VM_CLI_SERVICE_CMD_H
#define GEN2VM_CLI_SERVICE_CMD_H

int cli_service_main(int argc, char **argv);

#endif
