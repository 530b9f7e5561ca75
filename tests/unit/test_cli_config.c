#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/config.h"

static char kernel[64], json[64];

static int setup(void **state)
{
	strcpy(kernel, "/tmp/gen2vm-test-kernel-XXXXXX");
	int fd = mkstemp(kernel);
	assert_true(fd >= 0);
	close(fd);
	strcpy(json, "/tmp/gen2vm-test-json-XXXXXX");
	fd = mkstemp(json);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	unlink(kernel);
	unlink(json);
	return 0;
}

static int parse(struct run_config *rc, char *err, const char *a0, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, a0);
	for (const char *a = a0; a && argc < 31; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return run_config_parse(rc, argc, argv, err, 256);
}

static void write_json(const char *text)
{
	FILE *f = fopen(json, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_sizes(void **state)
{
	uint64_t b;
	assert_int_equal(parse_size("512M", &b), 0);
	assert_int_equal(b, 512ull << 20);
	assert_int_equal(parse_size("2G", &b), 0);
	assert_int_equal(b, 2ull << 30);
	assert_int_equal(parse_size("1024", &b), 0); /* MiB, as Hyper-V */
	assert_int_equal(b, 1ull << 30);
	assert_int_equal(parse_size("4GiB", &b), 0);
	assert_int_equal(b, 4ull << 30);
	assert_int_equal(parse_size("12X", &b), -EINVAL);
	assert_int_equal(parse_size("-1G", &b), -EINVAL);
	assert_int_equal(parse_size("", &b), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999T", &b), -EINVAL);
}

static void test_defaults_and_options(void **state)
{
	struct run_config rc;
	char err[256];
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--cpus", "2", "--memory", "1G", "--cmdline",
			       "console=ttyS0", "--com1", "stdio", "--processor-compatibility", NULL), 0);
	assert_int_equal(rc.vm.cpus, 2);
	assert_int_equal(rc.vm.memory, 1ull << 30);
	assert_string_equal(rc.vm.cmdline, "console=ttyS0");
	assert_int_equal(rc.vm.com1.kind, CONSOLE_STDIO);
	assert_true(rc.vm.processor_compat);
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, NULL), 0);
	assert_int_equal(rc.vm.memory, 512ull << 20);
	assert_int_equal(rc.vm.cpus, 1);
	assert_int_equal(rc.vm.com1.kind, CONSOLE_NONE); /* COM1 is off by default */
	assert_false(rc.vm.sigterm_turn_off);             /* SIGTERM asks the guest first */
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--sigterm", "turn-off", "--sigterm-timeout", "5",
			       NULL), 0);
	assert_true(rc.vm.sigterm_turn_off);
	assert_int_equal(rc.vm.sigterm_timeout, 5);
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--sigterm", "nicely", NULL), -EINVAL);
	assert_non_null(strstr(err, "expected shutdown or turn-off"));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--sigterm-timeout", "0", NULL), -EINVAL);
	run_config_free(&rc);
	write_json("{\"sigterm\": \"turn-off\", \"sigterm_timeout\": 9}");
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--config", json, NULL), 0);
	assert_true(rc.vm.sigterm_turn_off);
	assert_int_equal(rc.vm.sigterm_timeout, 9);
	run_config_free(&rc);
}

static void test_errors_name_the_problem(void **state)
{
	struct run_config rc;
	char err[256];
	assert_int_equal(parse(&rc, err, "run", "--kernel", "/nonexistent/vmlinuz", NULL), -ENOENT);
	assert_non_null(strstr(err, "--kernel /nonexistent/vmlinuz: No such file or directory"));
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--bogus", NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown option '--bogus'"));
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--memory", "lots", NULL), -EINVAL);
	assert_non_null(strstr(err, "--memory 'lots'"));
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--memory", "100T", NULL), -EINVAL);
	assert_non_null(strstr(err, "more than this host's"));
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--memory", "3M", NULL), -EINVAL);
	assert_non_null(strstr(err, "multiple of 2 MiB"));
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--cpus", "0", NULL), -EINVAL);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--com1", "tty", NULL), -EINVAL);
	assert_non_null(strstr(err, "--com1 'tty': expected stdio"));
	/* Nothing given: a UEFI boot through the built-in firmware. */
	assert_int_equal(parse(&rc, err, "run", NULL), 0);
	assert_null(rc.vm.kernel);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--firmware", kernel, NULL), -EINVAL);
	assert_non_null(strstr(err, "boots without the UEFI firmware"));
	assert_int_equal(parse(&rc, err, "run", "--cmdline", "x", NULL), -EINVAL);
	assert_non_null(strstr(err, "need --kernel (or --efi)"));
	assert_int_equal(parse(&rc, err, "run", "--efi", "/nonexistent/app.efi", NULL), -ENOENT);
	assert_int_equal(parse(&rc, err, "run", "--kernel", NULL), -EINVAL);
	assert_non_null(strstr(err, "needs a value"));
	run_config_free(&rc);
}

static void test_json_config(void **state)
{
	struct run_config rc;
	char err[256], doc[512];
	snprintf(doc, sizeof(doc),
		 "{ \"memory\": \"768M\", \"cpus\": 2, \"kernel\": \"%s\", \"cmdline\": \"quiet\", "
		 "\"com1\": \"file:/tmp/x.log\", \"processor_compatibility\": true }", kernel);
	write_json(doc);
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), 0);
	assert_int_equal(rc.vm.memory, 768ull << 20);
	assert_int_equal(rc.vm.cpus, 2);
	assert_string_equal(rc.vm.kernel, kernel);
	assert_string_equal(rc.vm.cmdline, "quiet");
	assert_int_equal(rc.vm.com1.kind, CONSOLE_FILE);
	assert_string_equal(rc.vm.com1.path, "/tmp/x.log");
	assert_true(rc.vm.processor_compat);
	run_config_free(&rc);
	/* Options after --config override it. */
	assert_int_equal(parse(&rc, err, "run", "--config", json, "--cpus", "4", NULL), 0);
	assert_int_equal(rc.vm.cpus, 4);
	run_config_free(&rc);
	/* A bare number is MiB, as on the command line. */
	snprintf(doc, sizeof(doc), "{ \"memory\": 1024, \"kernel\": \"%s\" }", kernel);
	write_json(doc);
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), 0);
	assert_int_equal(rc.vm.memory, 1ull << 30);
	run_config_free(&rc);
}

static void test_json_errors(void **state)
{
	struct run_config rc;
	char err[256];
	write_json("{ \"memory\": \"512M\", ");
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "malformed JSON"));
	assert_null(strchr(err, '\n'));
	run_config_free(&rc);
	write_json("{ \"memroy\": \"512M\" }");
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown setting \"memroy\""));
	run_config_free(&rc);
	write_json("{ \"cpus\": \"two\" }");
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "\"cpus\" has the wrong type"));
	run_config_free(&rc);
	write_json("[1, 2]");
	assert_int_equal(parse(&rc, err, "run", "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "expected a JSON object"));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--config", "/nonexistent.json", NULL), -ENOENT);
	run_config_free(&rc);
}

/* --vnc, --vnc-password-file, --web-console and their JSON keys: one validated setting, and every
 * bad spec or combination a one-line error naming the option. */
static void test_vnc_options(void **state)
{
	struct run_config rc;
	char err[256];
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "localhost:5901",
			       "--web-console", "127.0.0.1:6080", NULL), 0);
	assert_int_equal(rc.vm.vnc.vnc.kind, VNC_ADDR_TCP);
	assert_string_equal(rc.vm.vnc.vnc.host, "127.0.0.1");
	assert_int_equal(rc.vm.vnc.vnc.port, 5901);
	assert_int_equal(rc.vm.vnc.web.kind, VNC_ADDR_TCP);
	assert_int_equal(rc.vm.vnc.web.port, 6080);
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "unix:/tmp/v.sock", NULL), 0);
	assert_int_equal(rc.vm.vnc.vnc.kind, VNC_ADDR_UNIX);
	assert_string_equal(rc.vm.vnc.vnc.path, "/tmp/v.sock");
	run_config_free(&rc);

	static const struct {
		const char *opt, *arg, *msg;
	} bad[] = {
		{ "--vnc", "5900", "--vnc '5900': expected unix:PATH or HOST:PORT" },
		{ "--vnc", "127.0.0.1:99999", "the port must be a number from 1 to 65535" },
		{ "--vnc", "127.0.0.1:", "the port must be a number" },
		{ "--vnc", "example.org:5900", "the host must be an IPv4 address or localhost" },
		{ "--vnc", "unix:", "the socket path must be" },
		{ "--web-console", "unix:/tmp/x", "the host must be an IPv4 address" },
		{ "--vnc", "10.1.2.3:5900", "needs --vnc-password-file" },
		{ "--web-console", "0.0.0.0:6080", "needs --vnc-password-file" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", bad[i].opt, bad[i].arg, NULL),
				 -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s %s: %s", bad[i].opt, bad[i].arg, err);
		assert_null(strchr(err, '\n'));
		run_config_free(&rc);
	}
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--vnc", "127.0.0.1:5900", NULL), -EINVAL);
	assert_non_null(strstr(err, "add --synthetic-console"));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "127.0.0.1:5900",
			       "--web-console", "127.0.0.1:5900", NULL), -EINVAL);
	assert_non_null(strstr(err, "the same port as --vnc"));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--vnc-password-file", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "needs --vnc or --web-console"));
	run_config_free(&rc);

	/* A password file: checked when the configuration is (empty here, then a directory). */
	write_json("");
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "0.0.0.0:5900",
			       "--vnc-password-file", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "the first line is empty"));
	assert_non_null(strstr(err, json));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "0.0.0.0:5900",
			       "--vnc-password-file", "/tmp", NULL), -EISDIR);
	assert_non_null(strstr(err, "--vnc-password-file /tmp"));
	run_config_free(&rc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--synthetic-console", "--vnc", "0.0.0.0:5900",
			       "--vnc-password-file", "/nonexistent/pw", NULL), -ENOENT);
	run_config_free(&rc);

	/* JSON. */
	char pw[] = "/tmp/gen2vm-test-pw-XXXXXX";
	int fd = mkstemp(pw);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "secret\n", 7), 7);
	close(fd);
	char doc[512];
	snprintf(doc, sizeof(doc),
		 "{\"synthetic_console\": true, \"vnc\": \"0.0.0.0:5902\", \"vnc_password_file\": \"%s\", "
		 "\"web_console\": \"127.0.0.1:6081\"}", pw);
	write_json(doc);
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--config", json, NULL), 0);
	assert_int_equal(rc.vm.vnc.vnc.port, 5902);
	assert_string_equal(rc.vm.vnc.password_file, pw);
	assert_int_equal(rc.vm.vnc.web.port, 6081);
	run_config_free(&rc);
	write_json("{\"synthetic_console\": true, \"vnc\": 5900}");
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "\"vnc\" has the wrong type"));
	run_config_free(&rc);
	write_json("{\"synthetic_console\": true, \"web_console\": \"nowhere\"}");
	assert_int_equal(parse(&rc, err, "run", "--kernel", kernel, "--config", json, NULL), -EINVAL);
	assert_non_null(strstr(err, "\"web_console\" 'nowhere'"));
	run_config_free(&rc);
	unlink(pw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes), cmocka_unit_test(test_defaults_and_options),
		cmocka_unit_test(test_errors_name_the_problem), cmocka_unit_test(test_json_config),
		cmocka_unit_test(test_json_errors), cmocka_unit_test(test_vnc_options),
	};
	return cmocka_run_group_tests_name("cli_config", tests, setup, teardown);
}
