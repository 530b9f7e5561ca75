#include "cli/fw_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/exit.h"
#include "gen2vm/proto/fw_var.h"
#include "platform/authenticode.h"
#include "platform/bootopt.h"
#include "platform/nvram.h"
#include "platform/secboot.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

static const char fw_usage[] =
	"usage: gen2vm firmware show --nvram FILE [--json] [--variables]\n"
	"       gen2vm firmware set --nvram FILE [--first-boot-device dvd|disk:C:L|file:N|nic[:N]]\n"
	"                           [--boot-order XXXX,XXXX,...] [--pause-after-boot-failure on|off]\n"
	"                           [--timeout S] [--network-boot-preferred-protocol ipv4|ipv6]\n"
	"       gen2vm firmware set --nvram FILE [--secure-boot on|off] [--secure-boot-template NAME]\n"
	"                           [--secure-boot-keys PK|KEK|db|dbx=FILE]...\n"
	"       gen2vm firmware reset --nvram FILE\n"
	"       gen2vm firmware check-image --nvram FILE IMAGE...\n"
	"\n"
	"The UEFI boot entries and settings of a VM, kept in the NVRAM file that gen2vm run --nvram FILE\n"
	"uses (and creates). Device entries (one per SCSI disk and DVD drive, and one per network adapter)\n"
	"are made by gen2vm when a device is added; file entries are made by the guest (efibootmgr,\n"
	"installers) and are kept.\n"
	"  show                        boot entries in boot order, Timeout, BootNext, PauseAfterBootFailure,\n"
	"                              NetworkBootPreferredProtocol\n"
	"  --variables                 also every stored (non-volatile) variable\n"
	"  --first-boot-device dvd     the first DVD drive boots first (disk:C:L a disk at controller C,\n"
	"                              LUN L; file:N the N-th file entry; nic[:N] network adapter N's\n"
	"                              \"EFI Network\" entry); the others keep their order\n"
	"  --boot-order 0003,0001,...  the whole boot order, from the numbers show prints: every entry\n"
	"                              exactly once\n"
	"  --pause-after-boot-failure on|off\n"
	"                              wait for a key before trying the next entry after a failure\n"
	"  --timeout S                 the UEFI Timeout: at every start the firmware waits S seconds for\n"
	"                              Esc or F2 (its boot menu; 65535: until a key). 0, the default:\n"
	"                              1.5 s while a VNC or web console viewer watches, else no wait\n"
	"                              (a key typed ahead still opens the menu)\n"
	"  --network-boot-preferred-protocol ipv4|ipv6\n"
	"                              what the \"EFI Network\" entries speak: DHCPv4 and TFTP (the\n"
	"                              default), or DHCPv6 (SLAAC/RA, boot-file URL) and TFTP over IPv6\n"
	"  --secure-boot on|off        verify every boot loader and driver against the template's keys\n"
	"  --secure-boot-template NAME Hyper-V's templates: MicrosoftWindows (Windows only, the default),\n"
	"                              MicrosoftUEFICertificateAuthority (also shim-signed Linux),\n"
	"                              OpenSourceShieldedVM, or none (no keys: Setup Mode); enrols its keys\n"
	"  --secure-boot-keys DB=FILE  replace PK, KEK, db or dbx with the EFI signature lists in FILE\n"
	"                              (repeatable; after the template; the template becomes \"custom\")\n"
	"  reset                       replace the file with a fresh store (a new system UUID, no entries;\n"
	"                              the Secure Boot setting is kept and its template's keys enrolled)\n"
	"  check-image IMAGE...        whether this VM's db and dbx admit each EFI image, and why, with its\n"
	"                              Authenticode SHA-256 (exit 1 when one is refused)\n";

static void guid_text(const EFI_GUID *g, char out[40])
{
	snprintf(out, 40, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", g->Data1, g->Data2, g->Data3, g->Data4[0],
		 g->Data4[1], g->Data4[2], g->Data4[3], g->Data4[4], g->Data4[5], g->Data4[6], g->Data4[7]);
}

/* Every stored variable: name, GUID, attributes, size (diagnostics and tests). */
static void fw_show_variables(struct nvram *nv, json_object *arr)
{
	const CHAR16 *name;
	size_t ns, ds;
	EFI_GUID g;
	uint32_t attr;
	const void *data;
	if (!arr)
		printf("Variables:\n");
	for (size_t i = 0; nvram_var_at(nv, i, &name, &ns, &g, &attr, &data, &ds); i++) {
		char n[FW_VAR_NAME_MAX / 2], gt[40];
		size_t k = 0;
		for (; k + 1 < sizeof(n) && name[k]; k++)
			n[k] = name[k] >= 0x20 && name[k] < 0x7f ? (char)name[k] : '?';
		n[k] = 0;
		guid_text(&g, gt);
		if (arr) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(n));
			json_object_object_add(o, "guid", json_object_new_string(gt));
			json_object_object_add(o, "attributes", json_object_new_int64(attr));
			json_object_object_add(o, "size", json_object_new_int64((int64_t)ds));
			json_object_array_add(arr, o);
		} else {
			printf("  %s-%s  attributes 0x%x, %zu bytes\n", gt, n, attr, ds);
		}
	}
}

/* Secure Boot's setting: "Secure Boot: on, template MicrosoftWindows" (or JSON keys secure_boot,
 * secure_boot_template, secure_boot_keys_enrolled). */
static void fw_show_secure_boot(struct nvram *nv, json_object *j)
{
	struct secboot_settings sb;
	secboot_settings_get(nv, &sb);
	const char *t = secboot_template_name(sb.template_id);
	if (j) {
		json_object_object_add(j, "secure_boot", json_object_new_boolean(sb.enabled));
		json_object_object_add(j, "secure_boot_template", json_object_new_string(t));
		json_object_object_add(j, "secure_boot_keys_enrolled", json_object_new_boolean(sb.pk_enrolled));
		return;
	}
	printf("Secure Boot: %s, template %s%s\n", sb.enabled ? "on" : "off", t,
	       sb.pk_enrolled ? "" : " (no platform key enrolled: Setup Mode, nothing is verified)");
}

/* --secure-boot / --secure-boot-template: the template's keys are enrolled when the template is named,
 * or when Secure Boot is turned on in a store that has none yet. */
static int fw_set_secure_boot(struct nvram *nv, const char *on, const char *tname, char *const *keys, unsigned nkeys,
			      char *err, size_t errlen)
{
	struct secboot_settings sb;
	secboot_settings_get(nv, &sb);
	enum secboot_template t = sb.template_id;
	if (tname)
		secboot_template_parse(tname, &t); /* checked before the store was opened */
	bool enabled = on ? !strcmp(on, "on") : sb.enabled;
	bool enroll = tname || (enabled && !sb.pk_enrolled && !nkeys && t != SECBOOT_TEMPLATE_CUSTOM);
	int r = secboot_settings_set(nv, enabled, t, enroll);
	if (r) {
		snprintf(err, errlen, "cannot write the Secure Boot setting");
		return r;
	}
	for (unsigned i = 0; i < nkeys && !r; i++) {
		char name[8], why[400];
		const char *eq = strchr(keys[i], '=');
		size_t nl = eq ? (size_t)(eq - keys[i]) : 0;
		if (!eq || nl >= sizeof(name)) {
			snprintf(err, errlen, "--secure-boot-keys '%s': expected PK=FILE, KEK=FILE, db=FILE or dbx=FILE",
				 text_show(keys[i]));
			return -EINVAL;
		}
		memcpy(name, keys[i], nl);
		name[nl] = 0;
		uint8_t *esl = NULL;
		size_t len = 0;
		r = file_read_user(eq + 1, FW_VAR_DATA_MAX + 1, &esl, &len, why, sizeof(why));
		if (!r)
			r = secboot_set_db(nv, name, esl, len, why, sizeof(why));
		free(esl);
		if (r)
			snprintf(err, errlen, "--secure-boot-keys %s: %s", text_show(keys[i]), why);
	}
	return r;
}

/* firmware reset keeps the Secure Boot setting of the old file (when it can be read) and enrols its
 * template's keys in the fresh store. */
static int fw_reset_secure_boot(const char *path, char *err, size_t errlen)
{
	struct secboot_settings sb = { .enabled = false, .template_id = SECBOOT_TEMPLATE_WINDOWS };
	static const char *const names[4] = { "dbx", "db", "KEK", "PK" };
	static const EFI_GUID global = EFI_GLOBAL_VARIABLE_GUID, image_db = EFI_IMAGE_SECURITY_DATABASE_GUID;
	uint8_t *custom[4] = { 0 };
	size_t custom_len[4] = { 0 };
	struct nvram *nv;
	char why[512];
	if (!nvram_open(path, false, false, &nv, why, sizeof(why))) {
		secboot_settings_get(nv, &sb);
		/* Custom keys have no template to come from: they are carried over. */
		for (int i = 0; i < 4 && sb.template_id == SECBOOT_TEMPLATE_CUSTOM; i++)
			custom[i] = nvram_get_ascii(nv, names[i], names[i][0] == 'd' ? &image_db : &global, &custom_len[i],
						    NULL);
		nvram_close(nv);
	}
	int r = nvram_reset_file(path, err, errlen);
	if (!r && !(r = nvram_open(path, false, true, &nv, err, errlen))) {
		bool is_custom = sb.template_id == SECBOOT_TEMPLATE_CUSTOM;
		r = secboot_settings_set(nv, sb.enabled, sb.template_id, !is_custom);
		for (int i = 0; i < 4 && is_custom && !r; i++)
			r = secboot_set_db(nv, names[i], custom[i], custom_len[i], why, sizeof(why));
		if (r)
			snprintf(err, errlen, "%s: cannot write the Secure Boot keys", text_show(path));
		nvram_close(nv);
	}
	for (int i = 0; i < 4; i++)
		free(custom[i]);
	return r;
}

/* check-image: the verdict LoadImage would reach on each file with Secure Boot on. */
static int fw_check_images(struct nvram *nv, char **files, int n)
{
	int rc = CLI_EXIT_OK;
	for (int i = 0; i < n; i++) {
		uint8_t *img = NULL, h[32];
		size_t len = 0;
		char why[400];
		int r = file_read_user(files[i], AUTHENTICODE_IMAGE_MAX, &img, &len, why, sizeof(why));
		if (r) {
			fprintf(stderr, "gen2vm firmware check-image: %s: %s\n", text_show(files[i]), why);
			free(img);
			return cli_exit_code(r);
		}
		r = secboot_verify_image(nv, img, len, h, why, sizeof(why));
		free(img);
		if (r == -EINVAL || r == -ENOMEM) {
			fprintf(stderr, "gen2vm firmware check-image: %s: %s\n", text_show(files[i]), why);
			return cli_exit_code(r);
		}
		char hex[65];
		for (int k = 0; k < 32; k++)
			snprintf(hex + 2 * k, 3, "%02x", h[k]);
		printf("%s: %s: %s\n  Authenticode SHA-256 %s\n", text_show(files[i]), r ? "refused" : "allowed", why, hex);
		if (r)
			rc = CLI_EXIT_FAILED;
	}
	return rc;
}

static int fw_show(struct nvram *nv, const char *path, bool json, bool vars)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		fprintf(stderr, "gen2vm firmware: out of memory\n");
		return CLI_EXIT_FAILED;
	}
	const uint8_t *u = nvram_system_uuid(nv);
	char uuid[40];
	snprintf(uuid, sizeof(uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[3], u[2],
		 u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	char dptext[1024];
	if (json) {
		json_object *j = json_object_new_object(), *arr = json_object_new_array();
		for (unsigned i = 0; i < l->n; i++) {
			const struct bootopt_entry *e = &l->e[i];
			json_object *o = json_object_new_object();
			char num[8];
			snprintf(num, sizeof(num), "%04X", e->num);
			bootopt_dp_to_text(e->dp, e->dp_len, dptext, sizeof(dptext));
			json_object_object_add(o, "number", json_object_new_string(num));
			json_object_object_add(o, "type", json_object_new_string(e->device || e->nic ? "device" : "file"));
			json_object_object_add(o, "description", json_object_new_string(e->desc));
			json_object_object_add(o, "device_path", json_object_new_string(dptext));
			json_object_object_add(o, "active", json_object_new_boolean(e->attributes & 1));
			json_object_object_add(o, "in_boot_order", json_object_new_boolean(e->in_order));
			if (e->device) {
				json_object_object_add(o, "drive", json_object_new_string(e->dvd ? "dvd" : "disk"));
				json_object_object_add(o, "controller", json_object_new_int((int)e->controller));
				json_object_object_add(o, "lun", json_object_new_int((int)e->lun));
			} else if (e->nic) {
				json_object_object_add(o, "network_adapter", json_object_new_int((int)e->nic_instance));
			}
			json_object_array_add(arr, o);
		}
		char *upath = text_utf8_dup(path); /* JSON strings are UTF-8; a path need not be */
		json_object_object_add(j, "nvram", json_object_new_string(upath ? upath : ""));
		free(upath);
		json_object_object_add(j, "system_uuid", json_object_new_string(uuid));
		json_object_object_add(j, "entries", arr);
		json_object_object_add(j, "timeout", l->has_timeout ? json_object_new_int(l->timeout) : NULL);
		char next[8];
		snprintf(next, sizeof(next), "%04X", l->next);
		json_object_object_add(j, "boot_next", l->has_next ? json_object_new_string(next) : NULL);
		json_object_object_add(j, "pause_after_boot_failure", json_object_new_boolean(l->pause_after_failure == 1));
		json_object_object_add(j, "network_boot_preferred_protocol", json_object_new_string(l->net_ipv6 ? "ipv6" : "ipv4"));
		fw_show_secure_boot(nv, j);
		if (vars) {
			json_object *va = json_object_new_array();
			fw_show_variables(nv, va);
			json_object_object_add(j, "variables", va);
		}
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else {
		printf("NVRAM: %s\nSystem UUID: %s\n", text_show(path), uuid);
		printf("Boot entries (in boot order):\n");
		if (!l->n)
			printf("  (none: gen2vm run adds one per disk and DVD drive)\n");
		for (unsigned i = 0; i < l->n; i++) {
			const struct bootopt_entry *e = &l->e[i];
			bootopt_dp_to_text(e->dp, e->dp_len, dptext, sizeof(dptext));
			printf("  %04X  %-6s %s%s%s\n        %s\n", e->num, e->device || e->nic ? "device" : "file", e->desc,
			       e->attributes & 1 ? "" : " (inactive)", e->in_order ? "" : " (not in BootOrder)", dptext);
		}
		if (l->has_timeout)
			printf("Timeout: %u s\n", l->timeout);
		else
			printf("Timeout: (not set)\n");
		if (l->has_next)
			printf("BootNext: %04X\n", l->next);
		printf("PauseAfterBootFailure: %s\n", l->pause_after_failure == 1 ? "on" : "off");
		printf("NetworkBootPreferredProtocol: %s\n", l->net_ipv6 ? "IPv6" : "IPv4");
		fw_show_secure_boot(nv, NULL);
		if (vars)
			fw_show_variables(nv, NULL);
	}
	bootopt_list_free(l);
	free(l);
	return CLI_EXIT_OK;
}

static int parse_order(const char *s, uint16_t *out, unsigned *n)
{
	*n = 0;
	while (*s) {
		char *end;
		unsigned long v = strtoul(s, &end, 16);
		if (end == s || end - s > 4 || v > 0xffff || (*end && *end != ',') || *n == BOOTOPT_MAX)
			return -EINVAL;
		out[(*n)++] = (uint16_t)v;
		s = *end ? end + 1 : end;
	}
	return *n ? 0 : -EINVAL;
}

int cli_firmware_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(fw_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	const char *sub = argv[1];
	bool check = !strcmp(sub, "check-image");
	if (strcmp(sub, "show") && strcmp(sub, "set") && strcmp(sub, "reset") && !check) {
		fprintf(stderr, "gen2vm firmware: unknown command '%s' (show, set, reset or check-image; see gen2vm "
				"firmware --help)\n",
			text_show(sub));
		return CLI_EXIT_USAGE;
	}
	enum { O_NVRAM = 256, O_JSON, O_FIRST, O_ORDER, O_PAUSE, O_TIMEOUT, O_HELP, O_VARS, O_SB, O_SB_TEMPLATE, O_SB_KEYS,
	       O_NETPROTO };
	static const struct option opts[] = {
		{ "nvram", required_argument, NULL, O_NVRAM },
		{ "json", no_argument, NULL, O_JSON },
		{ "first-boot-device", required_argument, NULL, O_FIRST },
		{ "boot-order", required_argument, NULL, O_ORDER },
		{ "pause-after-boot-failure", required_argument, NULL, O_PAUSE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, O_HELP },
		{ "variables", no_argument, NULL, O_VARS },
		{ "secure-boot", required_argument, NULL, O_SB },
		{ "secure-boot-template", required_argument, NULL, O_SB_TEMPLATE },
		{ "secure-boot-keys", required_argument, NULL, O_SB_KEYS },
		{ "network-boot-preferred-protocol", required_argument, NULL, O_NETPROTO },
		{ 0 },
	};
	const char *path = NULL, *first = NULL, *order = NULL, *pause = NULL, *timeout = NULL;
	const char *sb_on = NULL, *sb_template = NULL, *netproto = NULL;
	char *sb_keys[4];
	unsigned nsb_keys = 0;
	bool json = false, vars = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		switch (c) {
		case O_NVRAM: path = optarg; break;
		case O_JSON: json = true; break;
		case O_VARS: vars = true; break;
		case O_FIRST: first = optarg; break;
		case O_ORDER: order = optarg; break;
		case O_PAUSE: pause = optarg; break;
		case O_TIMEOUT: timeout = optarg; break;
		case O_SB: sb_on = optarg; break;
		case O_SB_TEMPLATE: sb_template = optarg; break;
		case O_NETPROTO: netproto = optarg; break;
		case O_SB_KEYS:
			if (nsb_keys == 4) {
				fprintf(stderr, "gen2vm firmware set: --secure-boot-keys: at most one each of PK, KEK, db and dbx\n");
				return CLI_EXIT_USAGE;
			}
			sb_keys[nsb_keys++] = optarg;
			break;
		case O_HELP: fputs(fw_usage, stdout); return CLI_EXIT_OK;
		default:
			fprintf(stderr, "gen2vm firmware %s: unknown or incomplete option '%s' (see gen2vm firmware --help)\n",
				sub, text_show(argv[optind]));
			return CLI_EXIT_USAGE;
		}
	}
	if (check && optind >= argc - 1) {
		fprintf(stderr, "gen2vm firmware check-image: name the EFI images to check\n");
		return CLI_EXIT_USAGE;
	}
	if (optind < argc - 1 && !check) {
		fprintf(stderr, "gen2vm firmware %s: unexpected argument '%s'\n", sub, text_show(argv[optind + 1]));
		return CLI_EXIT_USAGE;
	}
	if (!path) {
		fprintf(stderr, "gen2vm firmware %s: --nvram FILE is required\n", sub);
		return CLI_EXIT_USAGE;
	}
	bool is_set = !strcmp(sub, "set");
	bool sb_set = sb_on || sb_template || nsb_keys;
	if ((!is_set && (first || order || pause || timeout || sb_set || netproto)) || (strcmp(sub, "show") && (json || vars))) {
		fprintf(stderr, "gen2vm firmware %s: option not valid here (see gen2vm firmware --help)\n", sub);
		return CLI_EXIT_USAGE;
	}
	if (is_set && !first && !order && !pause && !timeout && !sb_set && !netproto) {
		fprintf(stderr, "gen2vm firmware set: nothing to set: give --first-boot-device, --boot-order, "
				"--pause-after-boot-failure, --timeout, --network-boot-preferred-protocol, --secure-boot or "
				"--secure-boot-template\n");
		return CLI_EXIT_USAGE;
	}
	if (is_set && first && order) {
		fprintf(stderr, "gen2vm firmware set: --first-boot-device and --boot-order cannot be used together\n");
		return CLI_EXIT_USAGE;
	}
	if (pause && strcmp(pause, "on") && strcmp(pause, "off")) {
		fprintf(stderr, "gen2vm firmware set: --pause-after-boot-failure '%s': expected on or off\n", text_show(pause));
		return CLI_EXIT_USAGE;
	}
	long tmo = 0;
	if (timeout) {
		char *end;
		tmo = strtol(timeout, &end, 10);
		if (!*timeout || *end || *timeout == '-' || *timeout == '+' || *timeout == ' ' || tmo < 0 || tmo > 65535) {
			fprintf(stderr, "gen2vm firmware set: --timeout '%s': expected seconds from 0 to 65535\n",
				text_show(timeout));
			return CLI_EXIT_USAGE;
		}
	}
	if (netproto && strcasecmp(netproto, "ipv4") && strcasecmp(netproto, "ipv6")) { /* Hyper-V writes IPv4 */
		fprintf(stderr, "gen2vm firmware set: --network-boot-preferred-protocol '%s': expected ipv4 or ipv6\n",
			text_show(netproto));
		return CLI_EXIT_USAGE;
	}
	if (sb_on && strcmp(sb_on, "on") && strcmp(sb_on, "off")) {
		fprintf(stderr, "gen2vm firmware set: --secure-boot '%s': expected on or off\n", text_show(sb_on));
		return CLI_EXIT_USAGE;
	}
	enum secboot_template sb_t;
	if (sb_template && secboot_template_parse(sb_template, &sb_t)) {
		fprintf(stderr, "gen2vm firmware set: --secure-boot-template '%s': expected MicrosoftWindows, "
				"MicrosoftUEFICertificateAuthority, OpenSourceShieldedVM or none\n", text_show(sb_template));
		return CLI_EXIT_USAGE;
	}
	uint16_t ord[BOOTOPT_MAX];
	unsigned nord = 0;
	if (order && parse_order(order, ord, &nord)) {
		fprintf(stderr, "gen2vm firmware set: --boot-order '%s': expected hexadecimal entry numbers separated by "
				"commas, e.g. 0003,0001\n", text_show(order));
		return CLI_EXIT_USAGE;
	}
	char err[1536];
	int r;
	if (!strcmp(sub, "reset")) {
		if ((r = fw_reset_secure_boot(path, err, sizeof(err)))) {
			fprintf(stderr, "gen2vm firmware reset: %s\n", err);
			return cli_exit_code(r);
		}
		printf("%s: a fresh NVRAM store (no boot entries; gen2vm run adds its drives; Secure Boot keys of its "
		       "template)\n", text_show(path));
		return CLI_EXIT_OK;
	}
	struct nvram *nv;
	/* show reads without the lock: a running VM replaces the file atomically, so a read sees a
	 * whole file; set takes it, so that the VM's changes and ours cannot overwrite each other. */
	if ((r = nvram_open(path, false, is_set, &nv, err, sizeof(err)))) {
		fprintf(stderr, "gen2vm firmware %s: %s\n", sub, err);
		return cli_exit_code(r);
	}
	int rc = CLI_EXIT_OK;
	if (check) {
		rc = fw_check_images(nv, argv + 1 + optind, argc - 1 - optind);
	} else if (!is_set) {
		rc = fw_show(nv, path, json, vars);
	} else {
		/* A failed write of the file is reported by the store itself (one line naming the file and
		 * why); only the other failures need a line here. */
		log_last_error_clear();
		if (first)
			r = bootopt_set_first(nv, first, err, sizeof(err));
		if (!r && order)
			r = bootopt_set_order(nv, ord, nord, err, sizeof(err));
		if (!r && pause && (r = bootopt_set_pause(nv, !strcmp(pause, "on"))))
			snprintf(err, sizeof(err), "cannot write PauseAfterBootFailure");
		if (!r && timeout && (r = bootopt_set_timeout(nv, (uint16_t)tmo)))
			snprintf(err, sizeof(err), "cannot write Timeout");
		if (!r && netproto && (r = bootopt_set_net_protocol(nv, !strcasecmp(netproto, "ipv6"))))
			snprintf(err, sizeof(err), "cannot write NetworkBootPreferredProtocol");
		if (!r && sb_set)
			r = fw_set_secure_boot(nv, sb_on, sb_template, sb_keys, nsb_keys, err, sizeof(err));
		if (r) {
			if (!log_last_error()[0])
				fprintf(stderr, "gen2vm firmware set: %s: %s\n", text_show(path), err);
			rc = cli_exit_code(r);
		}
	}
	nvram_close(nv);
	return rc;
}
