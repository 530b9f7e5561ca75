#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/config.h"
#include "cli/fw_cmd.h"
#include "cli/vhd_cmd.h"
#include "ui/control.h"
#include "util/log.h"
#include "vmm/vm.h"

static const char usage[] =
	"usage: gen2vm COMMAND [OPTIONS]\n"
	"\n"
	"gen2vm runs Hyper-V generation 2-compatible virtual machines on KVM.\n"
	"\n"
	"Commands:\n"
	"  run        run a virtual machine (gen2vm run --help)\n"
	"  control SOCKET COMMAND [ARGS...]\n"
	"             send a command to a running VM's --control socket (help lists them)\n"
	"  vhd        create, inspect, convert, resize, merge and compact VHDX/VHD images\n"
	"  firmware   show or change a VM's UEFI boot entries in its --nvram file\n"
	"  help CMD   show the help of a command\n"
	"\n"
	"Exit codes of run: 0 powered off, 1 error, 2 usage, 3 reset (--no-reboot), 4 guest crashed, 5 nothing to boot.\n";

/* gen2vm control SOCKET COMMAND [ARGS...]: prints the VM's reply; exit 0 ok, 1 error, 2 unreachable. */
static int cli_control(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[1], "--help")) {
		fputs("usage: gen2vm control SOCKET COMMAND [ARGS...]\n"
		      "  e.g. gen2vm control vm.sock disk-add /images/data.vhdx lun=2\n"
		      "       gen2vm control vm.sock dvd-insert /isos/tools.iso lun=1\n"
		      "       gen2vm control vm.sock help\n", argc < 3 ? stderr : stdout);
		return argc < 3 ? 2 : 0;
	}
	char reply[CONTROL_REPLY_MAX + 16];
	int r = control_request(argv[1], argc - 2, argv + 2, reply, sizeof(reply));
	if (r == 0 || r == -EIO) {
		printf("%s\n", reply);
		return r ? 1 : 0;
	}
	fprintf(stderr, "gen2vm control: %s: %s (is the VM running with --control %s?)\n", argv[1], strerror(-r),
		argv[1]);
	return 2;
}

static int cli_run(int argc, char **argv)
{
	uint64_t start = vm_now_ns();
	struct run_config rc;
	char err[512] = "";
	int r = run_config_parse(&rc, argc, argv, err, sizeof(err));
	if (r) {
		if (r < 0)
			fprintf(stderr, "gen2vm run: %s\n", err);
		run_config_free(&rc);
		return r > 0 ? 0 : 2;
	}
	if (rc.verbose)
		log_set_level(rc.verbose > 1 ? LOG_DEBUG : LOG_INFO);
	rc.vm.start_ns = start;
	r = gen2_run(&rc.vm);
	run_config_free(&rc);
	if (r >= 0)
		return r;
	/* Configuration problems (bad kernel, does not fit...) are usage errors; KVM failures are not. */
	return (r == -ENOEXEC || r == -E2BIG || r == -ENOENT || r == -EINVAL || r == -EACCES) ? 2 : 1;
}

int cli_main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		if (argc > 2 && !strcmp(argv[2], "run")) {
			fputs(run_usage, stdout);
			return 0;
		}
		if (argc > 2 && !strcmp(argv[2], "vhd")) {
			char *a[] = { "vhd", "--help", NULL };
			return cli_vhd_main(2, a);
		}
		fputs(usage, stdout);
		return argc > 2 ? 2 : 0;
	}
	if (!strcmp(cmd, "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "control"))
		return cli_control(argc - 1, argv + 1);
	if (!strcmp(cmd, "vhd"))
		return cli_vhd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "firmware"))
		return cli_firmware_main(argc - 1, argv + 1);
	fprintf(stderr, "gen2vm: unknown command '%s' (see gen2vm --help)\n", cmd);
	return 2;
}
