/* libFuzzer target for what a user hands `gen2vm run`: the JSON config (src/cli/config.c, read back
 * from a file as --config does) and the command line's value parsers (--disk/--dvd, --nic, --com1,
 * --memory and sizes, --uuid), and the whole option parser.
 *
 * Input: byte 0 picks the mode. 0-1: the rest is a JSON config file. 2: the rest, split at NUL bytes,
 * is one value for each of the value parsers in turn. 3: the rest, split at NUL bytes, is an argv for
 * run_config_parse ("run" put first). Must never crash, hang, leak, or report an error without a
 * message. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/config.h"
#include "devices/disk_spec.h"
#include "net/nic.h"
#include "platform/smbios.h"
#include "ui/console.h"
#include "util/log.h"
#include "util/size.h"
#include "util/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failure must come with its one-line message. */
static void check(int r, const char *err)
{
	if (r < 0 && (!err[0] || strchr(err, '\n')))
		abort();
}

static void values(const char *p, const char *end)
{
	char err[2048];
	for (int k = 0; p < end; k++, p += strlen(p) + 1) {
		err[0] = 0;
		int r = 0;
		switch (k % 7) {
		case 0:
		case 1: {
			struct disk_spec d;
			r = disk_spec_parse(p, k % 7 == 1, &d, err, sizeof(err));
			if (!r)
				disk_spec_free(&d);
			break;
		}
		case 2: {
			struct nic_config n;
			r = nic_config_parse(p, &n, err, sizeof(err));
			break;
		}
		case 3: {
			struct console_spec c;
			r = console_spec_parse(p, &c, err, sizeof(err));
			break;
		}
		case 4: {
			uint64_t b;
			if (parse_size(p, &b) == 0 && b > (1ull << 63))
				abort();
			continue;
		}
		case 5: {
			uint8_t u[16];
			smbios_uuid_parse(p, u);
			text_show(p);
			continue;
		}
		default:
			free(text_utf8_dup(p));
			continue;
		}
		check(r, err);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERROR + 0);
	if (size < 1)
		return 0;
	/* NUL-terminated copy of the rest. */
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	const char *end = text + size - 1;
	struct run_config rc;
	char err[2048] = "";
	unsigned mode = data[0] % 4;
	if (mode < 2) {
		int fd = memfd_create("fuzz-config", 0);
		if (fd >= 0 && write(fd, data + 1, size - 1) == (ssize_t)(size - 1)) {
			char path[64];
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			memset(&rc, 0, sizeof(rc));
			check(run_config_load_json(&rc, path, err, sizeof(err)), err);
			run_config_free(&rc);
		}
		if (fd >= 0)
			close(fd);
	} else if (mode == 2) {
		values(text, end);
	} else {
		char *argv[64] = { "run" };
		int argc = 1;
		for (char *p = text; p < end && argc < 63; p += strlen(p) + 1)
			argv[argc++] = p;
		argv[argc] = NULL;
		int r = run_config_parse(&rc, argc, argv, err, sizeof(err));
		check(r, err);
		run_config_free(&rc);
	}
	free(text);
	return 0;
}
