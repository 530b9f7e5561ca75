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
	uint8_t *identity; /* vm.identity's bytes */
	unsigned nr_owned;
	int verbose;
};

/* Parses `gen2vm run` arguments (argv[0] is "run"). Returns 0, 1 when --help was printed, or
 * -errno (-EINVAL, or from an input file: -ENOENT, -EISDIR...) with a one-line message naming the
 * problem in err. Other than 0, nothing is left to free (run_config_free may still be called). */
int run_config_parse(struct run_config *rc, int argc, char **argv, char *err, size_t errlen);

/* The largest JSON config accepted (a config is a few hundred bytes; this refuses /dev/zero-like
 * files and mistakes such as a disk image given as --config). */
#define RUN_CONFIG_MAX_BYTES (1u << 20)

/* Applies a JSON document's settings. The file must be a regular file of at most
 * RUN_CONFIG_MAX_BYTES holding one JSON object (strict JSON, UTF-8). Returns 0 or -errno (-EINVAL
 * malformed, -ENOENT missing, -EFBIG too large...) with a one-line message naming the file in err. */
int run_config_load_json(struct run_config *rc, const char *path, char *err, size_t errlen);

/* Applies the len bytes of JSON at text (NUL-terminated after them) as run_config_load_json does
 * the file's; path names the document in messages. Returns 0 or -errno with err. */
int run_config_apply_json(struct run_config *rc, const char *text, size_t len, const char *path, char *err,
			  size_t errlen);

/* Checks a JSON document as `gen2vm run --config` would take it, without running anything: every
 * setting, the devices' items together, the combinations and the input files (kernel, firmware...)
 * being there. The VM store validates each vm.json with this before writing it. name names the
 * document in err. 0 or -errno (-EINVAL...) with err. */
int run_config_check_json(const char *text, size_t len, const char *name, char *err, size_t errlen);

/* The version of the JSON document this reader takes ("schema": 1); "generation": 2 is the only
 * generation. */
#define RUN_CONFIG_SCHEMA 1

/* Every top-level key of the JSON document the reader takes besides the device classes' json_key
 * (src/devices/vmdev.h), NULL-terminated: docs/vm-config.schema.json must describe each. */
extern const char *const run_config_json_keys[];

/* Parses a size such as 512M, 2G, 1T or 4096K (a bare number means MiB, as in Hyper-V). */
int parse_size(const char *s, uint64_t *bytes);

void run_config_free(struct run_config *rc);

/* Prints `gen2vm run --help` (the devices' options from the registry among the others). */
void run_usage_print(FILE *f);

#endif
