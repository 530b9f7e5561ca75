#ifndef GEN2VM_CLI_CLI_H
#define GEN2VM_CLI_CLI_H

/* Entry point of the gen2vm command line. Returns the process exit code:
 * 0 success / guest powered off, 2 usage or configuration error, see cli.c for the rest. */
int cli_main(int argc, char **argv);

#endif
