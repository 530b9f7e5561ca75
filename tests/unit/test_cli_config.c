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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes), cmocka_unit_test(test_defaults_and_options),
		cmocka_unit_test(test_errors_name_the_problem), cmocka_unit_test(test_json_config),
		cmocka_unit_test(test_json_errors),
	};
	return cmocka_run_group_tests_name("cli_config", tests, setup, teardown);
}
