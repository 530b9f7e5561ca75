/* The exit codes of every gen2vm command: one table (README "Exit codes"), used by every error path.
 * Whether an error is the user's input or a failure while working is decided in one place,
 * cli_exit_code(), from the -errno the operation returned. */
#ifndef GEN2VM_CLI_EXIT_H
#define GEN2VM_CLI_EXIT_H

enum cli_exit {
	CLI_EXIT_OK = 0,      /* success; run: the guest powered off */
	CLI_EXIT_FAILED = 1,  /* a valid command failed while carrying it out: an I/O error or full disk,
			       * a host or KVM failure; control: the VM answered an error */
	CLI_EXIT_USAGE = 2,   /* bad usage or unusable input, and nothing was changed: an unknown command
			       * or option, a malformed value, an input file that is missing, unreadable,
			       * of the wrong kind, corrupt, foreign or in use; control: VM unreachable */
	CLI_EXIT_RESET = 3,   /* run: the guest reset and --no-reboot was given */
	CLI_EXIT_CRASH = 4,   /* run: the guest crashed */
	CLI_EXIT_NO_BOOT = 5, /* run: the firmware found nothing to boot */
	CLI_EXIT_SAVED = 6,   /* run: the VM's state was saved (control `save FILE`) and the process ended */
	CLI_EXIT_SIGNAL = 128, /* run: + the signal number (SIGINT, SIGTERM, SIGHUP) that stopped the VM */
};

/* The exit code for the result of an operation: 0 -> CLI_EXIT_OK; an -errno that says the input is
 * unusable (-EINVAL, -ENOENT, -EACCES, -EBUSY, -ELOOP, -EISDIR...) -> CLI_EXIT_USAGE; any other
 * -errno (-EIO, -ENOSPC, -ENOMEM...) -> CLI_EXIT_FAILED. */
int cli_exit_code(int err);

#endif
