#include "cli/cli.h"
#include "cli/vhd_cmd.h"

#include <stdio.h>
#include <string.h>

int cli_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help")) {
		printf("usage: gen2vm run [options]\n");
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "vhd"))
		return cli_vhd_main(argc - 1, argv + 1);
	fprintf(stderr, "gen2vm: unknown command '%s' (see gen2vm --help)\n", argv[1]);
	return 2;
}
