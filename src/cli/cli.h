#ifndef GEN2VM_CLI_CLI_H
#define GEN2VM_CLI_CLI_H

/* Entry point of the gen2vm command line. Returns the process exit code (cli/exit.h, README "Exit
 * codes"). Ignores SIGPIPE for the whole process. */
int cli_main(int argc, char **argv);

#endif
