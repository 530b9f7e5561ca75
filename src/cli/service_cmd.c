#include "cli/service_cmd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/exit.h"
#include "mgmt/service.h"
#include "util/text.h"

static const char service_usage[] =
	"usage: gen2vm service run [--store DIR] [--socket PATH] [--group GROUP]\n"
	"       gen2vm service stop-vms [--store DIR] [--timeout S]\n"
	"\n"
	"  run        gen2vmd: supervise the VM store's VMs and serve the JSON API (HTTP/1.1 on a Unix\n"
	"             socket, default DIR/gen2vmd.sock, reachable by its owner and group) until SIGTERM;\n"
	"             the VMs keep running when it ends. The vm verbs use it while it runs.\n"
	"             --group: the socket belongs to GROUP, whose members may then do anything the\n"
	"             service's user may; the store's directory becomes 0710 for it (the VMs' stay 0700)\n"
	"  stop-vms   apply each running VM's automatic_stop (shutdown, turned off after S seconds,\n"
	"             default 120; or turn_off) and wait: what contrib/gen2vmd.service does at host shutdown\n";

int cli_service_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(service_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	const char *store = NULL, *sock = NULL, *group = NULL;
	unsigned timeout = 120;
	bool run = !strcmp(argv[1], "run"), stop = !strcmp(argv[1], "stop-vms");
	if (!run && !stop) {
		fprintf(stderr, "gen2vm service: unknown command '%s' (run or stop-vms)\n", text_show(argv[1]));
		return CLI_EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc || (strcmp(o, "--store") && strcmp(o, run ? "--socket" : "--timeout") &&
				      (!run || strcmp(o, "--group")))) {
			fprintf(stderr, "gen2vm service %s: %s '%s' (see gen2vm service --help)\n", argv[1],
				i + 1 >= argc && o[0] == '-' ? "missing the value of" : "unknown option", text_show(o));
			return CLI_EXIT_USAGE;
		}
		const char *val = argv[++i];
		if (!strcmp(o, "--store")) {
			store = val;
		} else if (!strcmp(o, "--socket")) {
			sock = val;
		} else if (!strcmp(o, "--group")) {
			group = val;
		} else {
			char *end;
			long t = strtol(val, &end, 10);
			if (!*val || *end || t < 1 || t > 86400) {
				fprintf(stderr, "gen2vm service stop-vms: --timeout '%s': expected seconds from 1 to 86400\n",
					text_show(val));
				return CLI_EXIT_USAGE;
			}
			timeout = (unsigned)t;
		}
	}
	return run ? service_run(store, sock, group) : service_stop_vms(store, timeout);
}
