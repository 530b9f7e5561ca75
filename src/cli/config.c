#include "cli/config.h"
#include "util/size.h"
#include "devices/synthvid.h"
#include "platform/fw_misc.h"
#include "platform/smbios.h"

#include "devices/console.h"
#include "util/file.h"
#include "util/text.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static const char run_usage_head[] =
	"usage: gen2vm run [OPTIONS]\n"
	"\n"
	"Runs a generation 2 virtual machine until the guest powers off.\n"
	"\n"
	"  --memory SIZE              guest RAM: 512M, 2G... (a bare number is MiB; default 512M)\n"
	"  --cpus N                   virtual processors (default 1)\n"
	"  --kernel PATH              Linux kernel for direct boot (bzImage or vmlinux)\n"
	"  --initrd PATH              initial ramdisk for --kernel or --efi\n"
	"  --cmdline TEXT             kernel command line\n"
	"  --elf PATH                 a freestanding test guest (ELF) entered in 64-bit mode\n"
	"                             (without --kernel or --elf the VM boots through its UEFI firmware)\n"
	"  --firmware PATH            a UEFI firmware image to use instead of the built-in one\n"
	"  --efi PATH                 an EFI application the firmware starts from memory before the\n"
	"                             boot manager (with --initrd and --cmdline, a Linux EFI-stub kernel)\n"
	"  --nvram PATH               the VM's UEFI variables and boot entries, kept in this file\n"
	"                             (created when absent; see gen2vm firmware --help). Without it\n"
	"                             they last as long as this gen2vm process\n"
	"  --uuid UUID                the SMBIOS system UUID (8-4-4-4-12 hex digits; default: a\n"
	"                             random one per run)\n"
	"  --com1 stdio|file:PATH|socket:PATH|none\n"
	"                             the COM1 serial port (off by default); socket:PATH is a Unix\n"
	"                             socket where clients attach (several at once, see --com1-attach)\n"
	"  --com1-attach PATH         also a Unix socket where clients attach to COM1 (e.g. socat, gen2vm vm\n"
	"                             console): each gets the output from then on and its input goes to the\n"
	"                             guest; a client that does not keep up loses output, never the guest\n"
	"  --debugcon stdio|file:PATH|none\n"
	"                             the debug console port 0xE9 for test guests (off by default)\n"
	"  --vnc unix:PATH|HOST:PORT  show the screen and take keyboard and pointer over VNC (RFB), several\n"
	"                             viewers at once; HOST is an IPv4 address or localhost, and one outside\n"
	"                             127.0.0.0/8 needs --vnc-password-file. Needs --synthetic-console\n"
	"  --vnc-password-file FILE   VNC authentication with the password on FILE's first line (VNC uses\n"
	"                             its first 8 bytes)\n"
	"  --web-console HOST:PORT    a web page with the screen, keyboard and pointer (Debian's noVNC) at\n"
	"                             http://HOST:PORT/vnc.html (loopback unless a password is set); the\n"
	"                             URL to open is printed and shown by `control SOCK vnc`\n";

/* The devices' options (src/devices/vmdev.h) go between the two. */
static const char run_usage_tail[] =
	"  --processor-compatibility  limit CPUID to a baseline every x86-64 host offers\n"
	"  --clock-slowdown N         tell the guest its TSC and APIC timer run N times faster than they\n"
	"                             do: its ticks and timeouts stretch N times in real time. For hosts\n"
	"                             whose KVM emulates guest kernel mode (see README); default 1\n"
 "  --video WxH                the screen the synthetic video device offers as its largest and\n"
	"                             default (default 1024x768; at most what fits 8 MiB: 1920x1080)\n"
	"  --clock-offset [+|-]S      the VM's clock runs S seconds ahead of (or behind) the host's UTC;\n"
	"                             `gen2vm control SOCK clock --offset S` changes it while it runs\n"
	"  --no-reboot                end when the guest resets (exit code 3) instead of restarting it\n"
	"  --sigterm shutdown|turn-off\n"
	"                             what SIGTERM does: ask the guest to shut down through its shutdown\n"
	"                             service, turning it off if it still runs after --sigterm-timeout\n"
	"                             (default; a guest without the service is turned off at once), or\n"
	"                             turn it off. A second signal always turns it off\n"
	"  --sigterm-timeout S        seconds the guest gets after SIGTERM (default 60)\n"
	"  --config FILE              read these settings from a JSON document (see README)\n"
	"  --control PATH             a control socket: gen2vm control PATH disk-add|disk-remove|dvd-insert|\n"
	"                             dvd-eject|pause|resume|stop|save|status|help ...\n"
	"  --restore FILE             resume the VM from the state `gen2vm control PATH save FILE` wrote,\n"
	"                             instead of booting it; the other options must be the same as then\n"
	"  --stats                    print exit counts, timings and memory use when the VM ends\n"
	"  --log-unclaimed            log port and MMIO accesses no device claims\n"
	"  -v, --verbose              more messages (twice for debug)\n"
	"  -h, --help                 this help\n"
	"\n"
	"SIGINT and SIGHUP turn the VM off in order (disks closed, the control socket removed); SIGTERM\n"
	"too, after asking the guest to shut down (--sigterm).\n"
	"\n"
	"Exit codes: 0 the guest powered off, 1 gen2vm failed, 2 bad usage or configuration (nothing\n"
	"changed), 3 the guest reset (with --no-reboot), 4 the guest crashed, 5 the firmware found nothing\n"
	"to boot, 6 the VM's state was saved, 128+N stopped by signal N.\n";

void run_usage_print(FILE *f)
{
	fputs(run_usage_head, f);
	vmdev_usage_print(f);
	fputs(run_usage_tail, f);
}

int parse_size(const char *s, uint64_t *bytes)
{
	return size_parse(s, 1ull << 20, bytes);
}

static int set_memory(struct run_config *rc, const char *s, char *err, size_t errlen)
{
	uint64_t b;
	if (parse_size(s, &b) || b == 0) {
		snprintf(err, errlen, "--memory '%s': expected a size such as 512M or 2G", text_show(s));
		return -EINVAL;
	}
	if (b % (2u << 20)) {
		snprintf(err, errlen, "--memory '%s': must be a multiple of 2 MiB", text_show(s));
		return -EINVAL;
	}
	struct sysinfo si;
	if (sysinfo(&si) == 0) {
		uint64_t host = (uint64_t)si.totalram * si.mem_unit;
		if (b > host) {
			snprintf(err, errlen, "--memory '%s': more than this host's %llu MiB of RAM", text_show(s),
				 (unsigned long long)(host >> 20));
			return -EINVAL;
		}
	}
	rc->vm.memory = b;
	return 0;
}

static int set_uuid(struct run_config *rc, const char *what, const char *s, char *err, size_t errlen)
{
	if (smbios_uuid_parse(s, rc->vm.uuid)) {
		snprintf(err, errlen, "%s '%s': expected a UUID such as 12345678-9abc-def0-1234-56789abcdef0", what,
			 text_show(s));
		return -EINVAL;
	}
	rc->vm.has_uuid = true;
	return 0;
}

static int set_vnc(struct run_config *rc, bool web, const char *what, const char *v, char *err, size_t errlen)
{
	return vnc_addr_parse(what, v, !web, web ? &rc->vm.vnc.web : &rc->vm.vnc.vnc, err, errlen);
}

static int set_sigterm(struct run_config *rc, const char *what, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "shutdown") && strcmp(v, "turn-off")) {
		snprintf(err, errlen, "%s '%s': expected shutdown or turn-off", what, text_show(v));
		return -EINVAL;
	}
	rc->vm.sigterm_turn_off = !strcmp(v, "turn-off");
	return 0;
}

static int set_sigterm_timeout(struct run_config *rc, const char *what, const char *v, char *err, size_t errlen)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end || n < 1 || n > 86400) {
		snprintf(err, errlen, "%s '%s': expected seconds from 1 to 86400", what, text_show(v));
		return -EINVAL;
	}
	rc->vm.sigterm_timeout = (unsigned)n;
	return 0;
}

static int set_clock_offset(struct run_config *rc, const char *what, const char *v, char *err, size_t errlen)
{
	if (fw_misc_offset_parse(v, &rc->vm.clock_offset_s)) {
		snprintf(err, errlen, "%s '%s': expected seconds from -%lld to +%lld (100 years)", what, text_show(v),
			 FW_MISC_OFFSET_MAX, FW_MISC_OFFSET_MAX);
		return -EINVAL;
	}
	return 0;
}

static int set_video(struct run_config *rc, const char *what, const char *v, char *err, size_t errlen)
{
	char why[200];
	if (synthvid_mode_parse(v, &rc->vm.video, why, sizeof(why))) {
		snprintf(err, errlen, "%s: %s", what, why);
		return -EINVAL;
	}
	return 0;
}

static int set_cpus(struct run_config *rc, const char *s, char *err, size_t errlen)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*end || end == s || n < 1 || n > VM_MAX_VCPUS) {
		snprintf(err, errlen, "--cpus '%s': expected a number from 1 to %d", text_show(s), VM_MAX_VCPUS);
		return -EINVAL;
	}
	rc->vm.cpus = (unsigned)n;
	return 0;
}

static int set_console(struct console_spec *spec, const char *opt, const char *s, char *err, size_t errlen)
{
	char e[200];
	if (console_spec_parse(s, spec, e, sizeof(e))) {
		snprintf(err, errlen, "%s %s", opt, e);
		return -EINVAL;
	}
	return 0;
}

static int set_attach(struct run_config *rc, const char *opt, const char *s, char *err, size_t errlen)
{
	if (!*s || strlen(s) >= sizeof(((struct console_spec *)0)->path)) {
		snprintf(err, errlen, "%s '%s': expected the path of a Unix socket (1 to 255 bytes)", opt, text_show(s));
		return -EINVAL;
	}
	rc->vm.com1_attach = s;
	return 0;
}

static const char *own(struct run_config *rc, const char *s)
{
	if (rc->nr_owned == sizeof(rc->owned) / sizeof(rc->owned[0]))
		return NULL;
	char *d = strdup(s);
	if (d)
		rc->owned[rc->nr_owned++] = d;
	return d;
}

/* An input the VM reads at start (kernel, initrd, firmware...): checked now, so that a missing file
 * or a FIFO, device or directory is one clear line before anything starts. */
static int file_exists(const char *opt, const char *path, char *err, size_t errlen)
{
	char why[160];
	int fd = file_open_user(path, O_RDONLY, 0, FILE_REG, why, sizeof(why));
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	snprintf(err, errlen, "%s %s: %s", opt, text_show(path), why);
	return fd;
}

/* Where a JSON document is malformed, as "line N" (json-c reports a byte offset). */
static unsigned json_line_of(const char *text, size_t off)
{
	unsigned line = 1;
	for (size_t i = 0; i < off && text[i]; i++)
		line += text[i] == '\n';
	return line;
}

/* Parses a whole JSON document: NULL with the reason in err when it is malformed, has trailing text
 * or is not valid UTF-8, or is just "null" (which json-c parses to NULL). */
static json_object *json_parse_document(const char *text, size_t len, char *why, size_t whylen)
{
	if (len > INT32_MAX || strlen(text) != len) {
		snprintf(why, whylen, "malformed JSON (it contains a NUL byte)");
		return NULL;
	}
	json_tokener *tok = json_tokener_new();
	if (!tok) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
#ifdef JSON_TOKENER_VALIDATE_UTF8
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
#endif
	/* With its NUL: json-c ends a trailing literal ("null", a number) only at a terminator. */
	json_object *root = json_tokener_parse_ex(tok, text, (int)len + 1);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (je == json_tokener_continue || je == json_tokener_error_parse_eof) {
		snprintf(why, whylen, strspn(text, " \t\r\n") == len ? "empty file (expected a JSON object)"
								  : "malformed JSON (the document ends before it is complete)");
		return NULL;
	}
	if (je != json_tokener_success) {
		snprintf(why, whylen, "malformed JSON at line %u (%s)", json_line_of(text, end), json_tokener_error_desc(je));
		return NULL;
	}
	for (size_t i = end; i < len; i++) { /* (json-c stops after the first value) */
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r') {
			snprintf(why, whylen, "malformed JSON at line %u (text after the end of the document)",
				 json_line_of(text, i));
			json_object_put(root);
			return NULL;
		}
	}
	if (!root)
		snprintf(why, whylen, "expected a JSON object at the top level, found null");
	return root;
}

/* Appends len bytes and a NUL to the configuration's identity (struct gen2_config.identity). */
static int identity_add(struct run_config *rc, const void *data, size_t len)
{
	uint8_t *p = realloc(rc->identity, rc->vm.identity_len + len + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p + rc->vm.identity_len, data, len);
	p[rc->vm.identity_len + len] = 0;
	rc->identity = p;
	rc->vm.identity = p;
	rc->vm.identity_len += len + 1;
	return 0;
}

int run_config_load_json(struct run_config *rc, const char *path, char *err, size_t errlen)
{
	uint8_t *text;
	size_t len;
	char why[200];
	int r = file_read_user(path, RUN_CONFIG_MAX_BYTES, &text, &len, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "--config %s: %s", text_show(path), why);
		return r;
	}
	r = run_config_apply_json(rc, (const char *)text, len, path, err, errlen);
	if (!r)
		r = identity_add(rc, text, len);
	free(text);
	return r;
}

const char *const run_config_json_keys[] = { "schema", "generation", "memory", "cpus", "kernel", "initrd",
					     "cmdline", "elf", "firmware", "efi", "nvram", "uuid", "com1",
					     "com1_attach", "debugcon", "processor_compatibility", "no_reboot", "sigterm",
					     "sigterm_timeout", "clock_offset", "video", "vnc", "vnc_password_file",
					     "web_console", "automatic_start", "automatic_stop", NULL };

/* "schema" and "generation" describe the document rather than set anything: a document written for
 * a later reader, or for a machine this gen2vm does not build, is refused instead of half-understood. */
static int check_document_kind(const char *key, long long v, char *err, size_t errlen)
{
	if (!strcmp(key, "schema") && v != RUN_CONFIG_SCHEMA) {
		snprintf(err, errlen, "\"schema\" %lld: this gen2vm reads version %d documents%s", v, RUN_CONFIG_SCHEMA,
			 v > RUN_CONFIG_SCHEMA ? " (a newer gen2vm wrote it: upgrade gen2vm)" : "");
		return -EINVAL;
	}
	if (!strcmp(key, "generation") && v != 2) {
		snprintf(err, errlen, v == 1 ? "\"generation\" 1: generation 1 VMs are not supported yet"
					     : "\"generation\" %lld: expected 2 (a generation 2 VM)", v);
		return -EINVAL;
	}
	return 0;
}

int run_config_apply_json(struct run_config *rc, const char *text, size_t len, const char *path, char *err,
			  size_t errlen)
{
	char why[200];
	int r = 0;
	json_object *root = json_parse_document(text, len, why, sizeof(why));
	if (!root) {
		snprintf(err, errlen, "--config %s: %s", text_show(path), why);
		return -EINVAL;
	}
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, errlen, "--config %s: expected a JSON object at the top level, found %s", text_show(path),
			 json_type_to_name(json_object_get_type(root)));
		r = -EINVAL;
		goto out;
	}
	json_object_object_foreach(root, key, val) {
		char e[1024] = "";
		enum json_type t = json_object_get_type(val);
		const char *sv = t == json_type_string ? json_object_get_string(val) : NULL;
		char num[32];
		if (t == json_type_int) {
			snprintf(num, sizeof(num), "%lld", (long long)json_object_get_int64(val));
			sv = num;
		}
		if ((!strcmp(key, "schema") || !strcmp(key, "generation")) && t == json_type_int) {
			r = check_document_kind(key, (long long)json_object_get_int64(val), e, sizeof(e));
		} else if (!strcmp(key, "memory") && sv) {
			r = set_memory(rc, sv, e, sizeof(e));
		} else if (!strcmp(key, "cpus") && t == json_type_int) {
			r = set_cpus(rc, sv, e, sizeof(e));
		} else if ((!strcmp(key, "kernel") || !strcmp(key, "initrd") || !strcmp(key, "cmdline") ||
			    !strcmp(key, "elf") || !strcmp(key, "firmware") || !strcmp(key, "efi") || !strcmp(key, "nvram")) &&
			   t == json_type_string) {
			const char *s = own(rc, sv);
			if (!s) {
				r = -ENOMEM;
			} else if (!strcmp(key, "kernel")) {
				rc->vm.kernel = s;
			} else if (!strcmp(key, "initrd")) {
				rc->vm.initrd = s;
			} else if (!strcmp(key, "elf")) {
				rc->vm.elf = s;
			} else if (!strcmp(key, "firmware")) {
				rc->vm.firmware = s;
			} else if (!strcmp(key, "efi")) {
				rc->vm.efi = s;
			} else if (!strcmp(key, "nvram")) {
				rc->vm.nvram = s;
			} else {
				rc->vm.cmdline = s;
			}
		} else if (!strcmp(key, "uuid") && t == json_type_string) {
			r = set_uuid(rc, "\"uuid\"", sv, e, sizeof(e));
		} else if (!strcmp(key, "com1") && t == json_type_string) {
			r = set_console(&rc->vm.com1, "com1", sv, e, sizeof(e));
		} else if (!strcmp(key, "com1_attach") && t == json_type_string) {
			const char *o = own(rc, sv);
			r = o ? set_attach(rc, "\"com1_attach\"", o, e, sizeof(e)) : -ENOMEM;
		} else if (!strcmp(key, "debugcon") && t == json_type_string) {
			r = set_console(&rc->vm.debugcon, "debugcon", sv, e, sizeof(e));
		} else if (!strcmp(key, "vnc") && t == json_type_string) {
			r = set_vnc(rc, false, "\"vnc\"", sv, e, sizeof(e));
		} else if (!strcmp(key, "web_console") && t == json_type_string) {
			r = set_vnc(rc, true, "\"web_console\"", sv, e, sizeof(e));
		} else if (!strcmp(key, "vnc_password_file") && t == json_type_string) {
			if (!(rc->vm.vnc.password_file = own(rc, sv)))
				r = -ENOMEM;
		} else if (!strcmp(key, "processor_compatibility") && t == json_type_boolean) {
			rc->vm.processor_compat = json_object_get_boolean(val);
		} else if (!strcmp(key, "no_reboot") && t == json_type_boolean) {
			rc->vm.no_reboot = json_object_get_boolean(val);
		} else if (!strcmp(key, "sigterm") && t == json_type_string) {
			r = set_sigterm(rc, "\"sigterm\"", sv, e, sizeof(e));
		} else if (!strcmp(key, "sigterm_timeout") && t == json_type_int) {
			r = set_sigterm_timeout(rc, "\"sigterm_timeout\"", num, e, sizeof(e));
		} else if (!strcmp(key, "video") && t == json_type_string) {
			r = set_video(rc, "\"video\"", sv, e, sizeof(e));
		} else if (!strcmp(key, "clock_offset") && t == json_type_int) {
			r = set_clock_offset(rc, "\"clock_offset\"", num, e, sizeof(e));
		} else if (!strcmp(key, "automatic_start") && sv && t == json_type_string) {
			/* gen2vmd's setting, not the run's: checked here so that the store never keeps a bad one. */
			if (strcmp(sv, "never") && strcmp(sv, "always") && strcmp(sv, "if_running")) {
				snprintf(e, sizeof(e), "\"automatic_start\" '%s': expected never, always or if_running", text_show(sv));
				r = -EINVAL;
			}
		} else if (!strcmp(key, "automatic_stop") && sv && t == json_type_string) {
			if (strcmp(sv, "shutdown") && strcmp(sv, "turn_off") && strcmp(sv, "save")) {
				snprintf(e, sizeof(e), "\"automatic_stop\" '%s': expected shutdown, save or turn_off", text_show(sv));
				r = -EINVAL;
			}
		} else if (vmdev_class_by_json_key(key)) {
			r = vmdev_config_add_json(&rc->vm.devices, key, val, e, sizeof(e));
		} else {
			bool is_known = false;
			for (size_t i = 0; run_config_json_keys[i]; i++)
				is_known |= !strcmp(key, run_config_json_keys[i]);
			snprintf(e, sizeof(e), is_known ? "\"%s\" has the wrong type" : "unknown setting \"%s\"", text_show(key));
			r = -EINVAL;
		}
		if (r) {
			snprintf(err, errlen, "--config %s: %s", text_show(path), e);
			goto out;
		}
	}
out:
	json_object_put(root);
	return r;
}

/* What no single setting says: the combinations, and the input files being there. */
static int run_config_check(struct run_config *rc, char *err, size_t errlen)
{
	int r;
	if (rc->vm.kernel && rc->vm.elf) {
		snprintf(err, errlen, "--kernel and --elf cannot be used together");
		return -EINVAL;
	}
	if ((rc->vm.kernel || rc->vm.elf) && (rc->vm.firmware || rc->vm.efi)) {
		snprintf(err, errlen, "%s boots without the UEFI firmware: drop %s", rc->vm.kernel ? "--kernel" : "--elf",
			 rc->vm.firmware ? "--firmware" : "--efi");
		return -EINVAL;
	}
	if ((rc->vm.kernel || rc->vm.elf) && rc->vm.nvram) {
		snprintf(err, errlen, "%s boots without the UEFI firmware: drop --nvram", rc->vm.kernel ? "--kernel" : "--elf");
		return -EINVAL;
	}
	if ((rc->vm.initrd || rc->vm.cmdline) && !rc->vm.kernel && !rc->vm.efi) {
		snprintf(err, errlen, "--initrd and --cmdline need --kernel (or --efi)");
		return -EINVAL;
	}
	const struct { const char *opt, *path; } inputs[] = {
		{ "--firmware", rc->vm.firmware }, { "--efi", rc->vm.efi }, { "--kernel", rc->vm.kernel },
		{ "--initrd", rc->vm.initrd }, { "--elf", rc->vm.elf },
	};
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
		if (inputs[i].path && (r = file_exists(inputs[i].opt, inputs[i].path, err, errlen)))
			return r;
	/* The last --synthetic-console (or "synthetic_console") wins, as for the devices themselves. */
	bool console = false;
	for (unsigned i = 0; i < rc->vm.devices.n; i++)
		if (rc->vm.devices.items[i].cls == &console_settings_class)
			console = rc->vm.devices.items[i].cfg && *(const bool *)rc->vm.devices.items[i].cfg;
	return vnc_config_validate(&rc->vm.vnc, console, err, errlen);
}

enum { O_MEMORY = 256, O_CPUS, O_KERNEL, O_INITRD, O_CMDLINE, O_ELF, O_COM1, O_COM1_ATTACH, O_DEBUGCON, O_COMPAT,
       O_NOREBOOT, O_CONFIG, O_STATS, O_UNCLAIMED, O_CONTROL, O_SLOWDOWN, O_CLOCK_OFFSET, O_VIDEO,
       O_FIRMWARE, O_EFI, O_NVRAM, O_UUID, O_DEVICE, O_SIGTERM, O_SIGTERM_TIMEOUT, O_VNC, O_VNC_PASSWORD,
       O_WEB_CONSOLE, O_RESTORE };

static int run_config_parse_opts(struct run_config *rc, int argc, char **argv, const struct option *opts, char *err,
				 size_t errlen);

int run_config_parse(struct run_config *rc, int argc, char **argv, char *err, size_t errlen)
{
	static const struct option base[] = {
		{ "memory", required_argument, NULL, O_MEMORY },
		{ "cpus", required_argument, NULL, O_CPUS },
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "elf", required_argument, NULL, O_ELF },
		{ "firmware", required_argument, NULL, O_FIRMWARE },
		{ "efi", required_argument, NULL, O_EFI },
		{ "nvram", required_argument, NULL, O_NVRAM },
		{ "uuid", required_argument, NULL, O_UUID },
		{ "com1", required_argument, NULL, O_COM1 },
		{ "com1-attach", required_argument, NULL, O_COM1_ATTACH },
		{ "debugcon", required_argument, NULL, O_DEBUGCON },
		{ "vnc", required_argument, NULL, O_VNC },
		{ "vnc-password-file", required_argument, NULL, O_VNC_PASSWORD },
		{ "web-console", required_argument, NULL, O_WEB_CONSOLE },
		{ "processor-compatibility", no_argument, NULL, O_COMPAT },
		{ "no-reboot", no_argument, NULL, O_NOREBOOT },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "stats", no_argument, NULL, O_STATS },
		{ "log-unclaimed", no_argument, NULL, O_UNCLAIMED },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "restore", required_argument, NULL, O_RESTORE },
		{ "clock-slowdown", required_argument, NULL, O_SLOWDOWN },
		{ "clock-offset", required_argument, NULL, O_CLOCK_OFFSET },
		{ "video", required_argument, NULL, O_VIDEO },
		{ "sigterm", required_argument, NULL, O_SIGTERM },
		{ "sigterm-timeout", required_argument, NULL, O_SIGTERM_TIMEOUT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
	};
	memset(rc, 0, sizeof(*rc));
	/* The devices' options come from the registry. */
	size_t nbase = sizeof(base) / sizeof(base[0]), n = nbase;
	for (const struct vmdev_class *const *cls = vmdev_classes; *cls; cls++)
		for (const struct vmdev_option *o = (*cls)->options; o && o->name; o++)
			n++;
	struct option *opts = calloc(n + 1, sizeof(*opts));
	if (!opts) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(opts, base, sizeof(base));
	n = nbase;
	for (const struct vmdev_class *const *cls = vmdev_classes; *cls; cls++)
		for (const struct vmdev_option *o = (*cls)->options; o && o->name; o++)
			opts[n++] = (struct option){ o->name, o->has_arg ? required_argument : no_argument, NULL, O_DEVICE };
	int r = run_config_parse_opts(rc, argc, argv, opts, err, errlen);
	free(opts);
	if (!r)
		r = vmdev_config_validate(&rc->vm.devices, err, errlen);
	if (r)
		run_config_free(rc); /* a refused command line holds nothing (callers may parse again) */
	return r;
}

static int run_config_parse_opts(struct run_config *rc, int argc, char **argv, const struct option *opts, char *err,
				 size_t errlen)
{
	int c, r = 0, idx = 0;
	rc->vm.memory = 512ull << 20;
	rc->vm.cpus = 1;
	optind = 0;
	opterr = 0;
	/* The machine's identity, which a saved state must match: the options that build it (not those
	 * that only say how this process runs: --restore, --verbose, --stats) and the documents read. */
	for (int i = 1; i < argc && !r; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--restore") && i + 1 < argc)
			i++;
		else if (strncmp(a, "--restore=", 10) && strcmp(a, "-v") && strcmp(a, "--verbose") && strcmp(a, "--stats"))
			r = identity_add(rc, a, strlen(a));
	}
	if (r) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	while ((c = getopt_long(argc, argv, "+:vh", opts, &idx)) != -1) {
		switch (c) {
		case O_MEMORY: r = set_memory(rc, optarg, err, errlen); break;
		case O_CPUS: r = set_cpus(rc, optarg, err, errlen); break;
		case O_KERNEL: rc->vm.kernel = optarg; break;
		case O_INITRD: rc->vm.initrd = optarg; break;
		case O_CMDLINE: rc->vm.cmdline = optarg; break;
		case O_ELF: rc->vm.elf = optarg; break;
		case O_FIRMWARE: rc->vm.firmware = optarg; break;
		case O_EFI: rc->vm.efi = optarg; break;
		case O_NVRAM: rc->vm.nvram = optarg; break;
		case O_UUID: r = set_uuid(rc, "--uuid", optarg, err, errlen); break;
		case O_COM1: r = set_console(&rc->vm.com1, "--com1", optarg, err, errlen); break;
		case O_COM1_ATTACH: r = set_attach(rc, "--com1-attach", optarg, err, errlen); break;
		case O_DEBUGCON: r = set_console(&rc->vm.debugcon, "--debugcon", optarg, err, errlen); break;
		case O_VNC: r = set_vnc(rc, false, "--vnc", optarg, err, errlen); break;
		case O_VNC_PASSWORD: rc->vm.vnc.password_file = optarg; break;
		case O_WEB_CONSOLE: r = set_vnc(rc, true, "--web-console", optarg, err, errlen); break;
		case O_COMPAT: rc->vm.processor_compat = true; break;
		case O_NOREBOOT: rc->vm.no_reboot = true; break;
		case O_CONFIG: r = run_config_load_json(rc, optarg, err, errlen); break;
		case O_STATS: rc->vm.stats = true; break;
		case O_UNCLAIMED: rc->vm.log_unclaimed = true; break;
		case O_CONTROL: rc->vm.control = optarg; break;
		case O_RESTORE: rc->vm.restore = optarg; break;
		case O_SLOWDOWN: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || end == optarg || n < 1 || n > 1000) {
				snprintf(err, errlen, "--clock-slowdown '%s': expected a factor from 1 to 1000", text_show(optarg));
				return -EINVAL;
			}
			rc->vm.clock_slowdown = (unsigned)n;
			break;
		}
		case O_CLOCK_OFFSET: r = set_clock_offset(rc, "--clock-offset", optarg, err, errlen); break;
		case O_VIDEO: r = set_video(rc, "--video", optarg, err, errlen); break;
		case O_SIGTERM: r = set_sigterm(rc, "--sigterm", optarg, err, errlen); break;
		case O_SIGTERM_TIMEOUT: r = set_sigterm_timeout(rc, "--sigterm-timeout", optarg, err, errlen); break;
		case O_DEVICE:
			r = vmdev_config_add_option(&rc->vm.devices, opts[idx].name, optarg, err, errlen);
			break;
		case 'v': rc->verbose++; break;
		case 'h': run_usage_print(stdout); return 1;
		case ':':
			snprintf(err, errlen, "option '%s' needs a value", text_show(argv[optind - 1]));
			return -EINVAL;
		default:
			snprintf(err, errlen, "unknown option '%s' (see gen2vm run --help)", text_show(argv[optind - 1]));
			return -EINVAL;
		}
		if (r)
			return r;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see gen2vm run --help)", text_show(argv[optind]));
		return -EINVAL;
	}
	return run_config_check(rc, err, errlen);
}

void run_config_free(struct run_config *rc)
{
	for (unsigned i = 0; i < rc->nr_owned; i++)
		free(rc->owned[i]);
	rc->nr_owned = 0;
	free(rc->identity);
	rc->identity = NULL;
	vmdev_config_free(&rc->vm.devices);
}

int run_config_check_json(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
	struct run_config rc;
	char *argv[] = { "run", NULL };
	int r = run_config_parse(&rc, 1, argv, err, errlen);
	if (!r)
		r = run_config_apply_json(&rc, text, len, name, err, errlen);
	if (!r && !(r = vmdev_config_validate(&rc.vm.devices, err, errlen)))
		r = run_config_check(&rc, err, errlen);
	run_config_free(&rc);
	return r;
}
