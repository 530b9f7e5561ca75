#include "cli/cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/config.h"
#include "cli/exit.h"
#include "cli/fw_cmd.h"
#include "cli/vhd_cmd.h"
#include "cli/service_cmd.h"
#include "cli/vm_cmd.h"
#include "ui/control.h"
#include "platform/gen2.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/text.h"
#include "vmm/vm.h"

_Static_assert((int)CLI_EXIT_OK == (int)VM_EXIT_POWEROFF && (int)CLI_EXIT_FAILED == (int)VM_EXIT_ERROR &&
		       (int)CLI_EXIT_RESET == (int)VM_EXIT_RESET && (int)CLI_EXIT_CRASH == (int)VM_EXIT_CRASH &&
		       (int)CLI_EXIT_NO_BOOT == (int)VM_EXIT_NO_BOOT && (int)CLI_EXIT_SAVED == (int)VM_EXIT_SAVED,
	       "a VM's end is its exit code");

int cli_exit_code(int err)
{
	switch (-err) {
	case 0:
		return CLI_EXIT_OK;
	case EINVAL: case ENOENT: case ENOTDIR: case EISDIR: case EACCES: case EPERM: case ELOOP: case EBUSY:
	case ENXIO: case ENODEV: case EFBIG: case E2BIG: case ENOEXEC: case ENAMETOOLONG: case EEXIST: case EROFS:
	case ETXTBSY: case EADDRINUSE: case ENOTSOCK: case EOPNOTSUPP: case EDOM: case ERANGE: case EILSEQ:
		return CLI_EXIT_USAGE;
	default:
		return CLI_EXIT_FAILED;
	}
}

static const char usage[] =
	"usage: gen2vm COMMAND [OPTIONS]\n"
	"\n"
	"gen2vm runs Hyper-V generation 2-compatible virtual machines on KVM.\n"
	"\n"
	"Commands:\n"
	"  vm         VMs kept by name in the VM store: new, list, show, start, stop, set, add-disk...\n"
	"             (gen2vm vm --help)\n"
	"  service    gen2vmd: supervise the VM store's VMs, serve their JSON API (gen2vm service --help)\n"
	"  run        run a virtual machine (gen2vm run --help)\n"
	"  control SOCKET COMMAND [ARGS...]\n"
	"             send a command to a running VM's --control socket (help lists them)\n"
	"  vhd        create, inspect, convert, resize, merge and compact VHDX/VHD images\n"
	"  firmware   show or change a VM's UEFI boot entries in its --nvram file\n"
	"  help CMD   show the help of a command\n"
	"\n"
	"Exit codes: 0 success (run: the guest powered off), 1 failed while working, 2 bad usage or input\n"
	"(nothing changed), 3 reset (--no-reboot), 4 guest crashed, 5 nothing to boot, 128+N stopped by signal N.\n";

/* gen2vm control SOCKET COMMAND [ARGS...]: prints the VM's reply; exit 0 ok, 1 the VM answered an
 * error, 2 usage or unreachable. */
static int cli_control(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[1], "--help")) {
		fputs("usage: gen2vm control SOCKET COMMAND [ARGS...]\n"
		      "  e.g. gen2vm control vm.sock disk-add /images/data.vhdx lun=2\n"
		      "       gen2vm control vm.sock dvd-insert /isos/tools.iso lun=1\n"
		      "       gen2vm control vm.sock help\n", argc < 3 ? stderr : stdout);
		return argc < 3 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	char reply[CONTROL_REPLY_MAX + 16];
	int r = control_request(argv[1], argc - 2, argv + 2, reply, sizeof(reply));
	if (r == 0 || r == -EIO) {
		printf("%s\n", reply);
		return r ? CLI_EXIT_FAILED : CLI_EXIT_OK;
	}
	if (r == -E2BIG)
		fprintf(stderr, "gen2vm control: the command is longer than %d bytes\n", CONTROL_LINE_MAX - 2);
	else if (r == -ETIMEDOUT || r == -ECONNRESET)
		fprintf(stderr, "gen2vm control: %s: the VM did not answer (%s)\n", text_show(argv[1]),
			r == -ETIMEDOUT ? "no reply within 60 s" : "it closed the connection");
	else
		fprintf(stderr, "gen2vm control: %s: %s (is the VM running with --control %s?)\n", text_show(argv[1]),
			strerror(-r), text_show(argv[1]));
	return CLI_EXIT_USAGE;
}

/* SIGINT, SIGTERM and SIGHUP stop the VM in order (devices closed, the control socket removed)
 * instead of killing the process: they are blocked in every thread and taken here. */
struct cli_signals {
	sigset_t set;
	pthread_t thread;
	volatile int done;
};

static void *cli_signal_thread(void *arg)
{
	struct cli_signals *s = arg;
	pthread_setname_np(pthread_self(), "signals"); /* named in /proc (bench/console) */
	for (;;) {
		int sig;
		if (sigwait(&s->set, &sig))
			continue;
		if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
			return NULL;
		gen2_stop_request(sig);
	}
}

static int cli_run(int argc, char **argv)
{
	uint64_t start = clock_mono_ns();
	struct run_config rc;
	char err[2048] = "";
	int r = run_config_parse(&rc, argc, argv, err, sizeof(err));
	if (r) {
		if (r < 0)
			fprintf(stderr, "gen2vm run: %s\n", err);
		run_config_free(&rc);
		return r > 0 ? CLI_EXIT_OK : cli_exit_code(r);
	}
	if (rc.verbose)
		log_set_level(rc.verbose > 1 ? LOG_DEBUG : LOG_INFO);
	rc.vm.start_ns = start;
	/* Before any thread exists, so that every thread inherits the mask. */
	static struct cli_signals sigs;
	sigemptyset(&sigs.set);
	sigaddset(&sigs.set, SIGINT);
	sigaddset(&sigs.set, SIGTERM);
	sigaddset(&sigs.set, SIGHUP);
	sigset_t old;
	pthread_sigmask(SIG_BLOCK, &sigs.set, &old);
	bool sig_thread = pthread_create(&sigs.thread, NULL, cli_signal_thread, &sigs) == 0;
	r = gen2_run(&rc.vm);
	if (sig_thread) {
		__atomic_store_n(&sigs.done, 1, __ATOMIC_RELEASE);
		pthread_kill(sigs.thread, SIGHUP);
		pthread_join(sigs.thread, NULL);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	run_config_free(&rc);
	/* Configuration problems (bad kernel, bad disk, does not fit...) are usage errors; KVM failures
	 * are not. */
	return r >= 0 ? r : cli_exit_code(r);
}

int cli_main(int argc, char **argv)
{
	/* A peer that goes away (a control client, a console socket, a closed pipe on stdout) must give
	 * EPIPE where we write, never kill the VM. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(usage, stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(cmd, "help")) {
		if (argc > 2 && !strcmp(argv[2], "run")) {
			run_usage_print(stdout);
			return CLI_EXIT_OK;
		}
		if (argc > 2 && !strcmp(argv[2], "vm")) {
			char *a[] = { "vm", "--help", NULL };
			return cli_vm_main(2, a);
		}
		if (argc > 2 && !strcmp(argv[2], "vhd")) {
			char *a[] = { "vhd", "--help", NULL };
			return cli_vhd_main(2, a);
		}
		fputs(usage, stdout);
		return argc > 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (!strcmp(cmd, "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "control"))
		return cli_control(argc - 1, argv + 1);
	if (!strcmp(cmd, "vm"))
		return cli_vm_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "service"))
		return cli_service_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "vhd"))
		return cli_vhd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "firmware"))
		return cli_firmware_main(argc - 1, argv + 1);
	fprintf(stderr, "gen2vm: unknown command '%s' (see gen2vm --help)\n", text_show(cmd));
	return CLI_EXIT_USAGE;
}
