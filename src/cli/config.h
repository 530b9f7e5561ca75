/* `gen2vm run` settings from the command line and from a JSON document (--config vm.json).
 * The two take the same settings; command-line options given after --config override it. */
#ifndef GEN2VM_CLI_CONFIG_H
#define GEN2VM_CLI_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "platform/gen2.h"

struct run_config {
	struct gen2_config vm;
	char *owned[16]; /* strings the config owns (from JSON), freed by run_config_free */
	unsigned nr_owned;
	int verbose;
};

/* Parses `gen2vm run` arguments (argv[0] is "run"). Returns 0, 1 when --help was printed, or
 * -errno (-EINVAL, or from an input file: -ENOENT, -EISDIR...) with a one-line message naming the
 * problem in err. */
int run_config_parse(struct run_config *rc, int argc, char **argv, char *err, size_t errlen);

/* The largest JSON config accepted (a config is a few hundred bytes; this refuses /dev/zero-like
 * files and mistakes such as a disk image given as --config). */
#define RUN_CONFIG_MAX_BYTES (1u << 20)

/* Applies a JSON document's settings. The file must be a regular file of at most
 * RUN_CONFIG_MAX_BYTES holding one JSON object (strict JSON, UTF-8). Returns 0 or -errno (-EINVAL
 * malformed, -ENOENT missing, -EFBIG too large...) with a one-line message naming the file in err. */
int run_config_load_json(struct run_config *rc, const char *path, char *err, size_t errlen);

/* Parses a size such as 512M, 2G, 1T or 4096K (a bare number means MiB, as in Hyper-V). */
int parse_size(const char *s, uint64_t *bytes);

void run_config_free(struct run_config *rc);

/* Prints `gen2vm run --help` (the devices' options from the registry among the others). */
void run_usage_print(FILE *f);

#endif
