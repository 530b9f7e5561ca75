#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/config.h"
#include "devices/disk_spec.h"
#include "devices/vmdev.h"
#include "mgmt/store.h"
#include "net/nic.h"

static char root[128];

static int setup(void **state)
{
	strcpy(root, "/tmp/gen2vm-test-store-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void test_names(void **state)
{
	char err[256];
	const char *good[] = { "a", "web-01", "A.b_c", "0", "x.", "1234567890123456789012345678901234567890123456789012345678901234" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(store_name_check(good[i], err, sizeof(err)), 0);
	const char *bad[] = { "", ".", "..", ".hidden", "-rf", "a/b", "a b", "caf\xc3\xa9", "a\nb", "x*",
			      "12345678901234567890123456789012345678901234567890123456789012345" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(store_name_check(bad[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "VM name"));
	}
}

static void test_root(void **state)
{
	char out[256], err[256];
	setenv("GEN2VM_STORE", "/env/store", 1);
	setenv("XDG_DATA_HOME", "/xdg", 1);
	setenv("HOME", "/home/u", 1);
	assert_int_equal(store_root_resolve("/opt/s", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/opt/s");
	assert_int_equal(store_root_resolve(NULL, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/env/store");
	unsetenv("GEN2VM_STORE");
	assert_int_equal(store_root_resolve(NULL, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/xdg/gen2vm");
	setenv("XDG_DATA_HOME", "relative", 1); /* invalid per the XDG spec: ignored */
	assert_int_equal(store_root_resolve(NULL, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/home/u/.local/share/gen2vm");
	unsetenv("XDG_DATA_HOME");
	unsetenv("HOME");
	assert_int_equal(store_root_resolve(NULL, out, sizeof(out), err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "--store"));
	char small[8];
	assert_int_equal(store_root_resolve("/a/long/path", small, sizeof(small), err, sizeof(err)), -ENAMETOOLONG);
	assert_int_equal(store_path("/r", "vm", "vm.json", out, sizeof(out)), 0);
	assert_string_equal(out, "/r/vm/vm.json");
	assert_int_equal(store_path("/r", "vm", NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "/r/vm");
	assert_int_equal(store_path("/r", "vm", "vm.json", small, sizeof(small)), -ENAMETOOLONG);
}

static void vm_dir(char *out, size_t len, const char *name)
{
	assert_int_equal(store_path(root, name, NULL, out, len), 0);
}

static void test_create_dir(void **state)
{
	char err[512], nested[256], dir[256];
	snprintf(nested, sizeof(nested), "%s/deep/store", root);
	assert_int_equal(store_vm_exists(nested, "vm1", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no VM named 'vm1'"));
	assert_int_equal(store_vm_create_dir(nested, "vm1", err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(store_path(nested, "vm1", NULL, dir, sizeof(dir)), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(nested, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(store_vm_create_dir(nested, "vm1", err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "already exists"));
	/* The directory alone is not a VM: vm.json makes it one. */
	assert_int_equal(store_vm_exists(nested, "vm1", err, sizeof(err)), -ENOENT);
}

static const char good_doc[] = "{ \"schema\": 1, \"generation\": 2, \"memory\": \"64M\", \"cpus\": 2, "
			       "\"disks\": [ { \"dvd\": true, \"controller\": 0, \"lun\": 1 } ], \"nics\": [ \"pair=x\" ] }";

static char *file_text(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

static void test_doc_round_trip(void **state)
{
	char err[2048], dir[256], p[300];
	assert_int_equal(store_vm_create_dir(root, "rt", err, sizeof(err)), 0);
	vm_dir(dir, sizeof(dir), "rt");
	json_object *doc = json_tokener_parse(good_doc), *back;
	assert_non_null(doc);
	assert_int_equal(store_doc_write(dir, doc, err, sizeof(err)), 0);
	assert_int_equal(store_vm_exists(root, "rt", err, sizeof(err)), 0);
	assert_int_equal(store_doc_read(dir, &back, err, sizeof(err)), 0);
	assert_true(json_object_equal(doc, back));
	json_object_put(back);
	snprintf(p, sizeof(p), "%s/vm.json", dir);
	char before[8192];
	snprintf(before, sizeof(before), "%s", file_text(p));
	/* A document the run reader refuses is never written: the old one stays, whole, and no
	 * temporary file is left. */
	const char *bad[][2] = { { "memory", "\"3Q\"" }, { "generation", "1" }, { "schema", "2" }, { "bogus", "1" },
				 { "cpus", "0" }, { "kernel", "\"/nonexistent/vmlinuz\"" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_object *b = json_tokener_parse(good_doc);
		json_object_object_add(b, bad[i][0], json_tokener_parse(bad[i][1]));
		err[0] = 0;
		assert_int_not_equal(store_doc_write(dir, b, err, sizeof(err)), 0);
		assert_true(err[0]);
		json_object_put(b);
		assert_string_equal(file_text(p), before);
		char tmp[320];
		snprintf(tmp, sizeof(tmp), "%s.tmp", p);
		assert_int_equal(access(tmp, F_OK), -1);
	}
	json_object *b = json_tokener_parse(good_doc);
	json_object_object_add(b, "generation", json_object_new_int(1));
	store_doc_write(dir, b, err, sizeof(err));
	assert_non_null(strstr(err, "generation 1 VMs are not supported yet"));
	json_object_put(b);
	/* Relative paths mean the VM's directory, whatever the caller's working directory. */
	char kp[320];
	snprintf(kp, sizeof(kp), "%s/vmlinuz", dir);
	FILE *k = fopen(kp, "w");
	assert_non_null(k);
	fclose(k);
	b = json_tokener_parse("{ \"kernel\": \"vmlinuz\" }");
	int cwd = open(".", O_RDONLY | O_DIRECTORY);
	assert_true(cwd >= 0);
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(store_doc_write(dir, b, err, sizeof(err)), 0);
	assert_int_equal(store_doc_read(dir, &back, err, sizeof(err)), 0);
	char here[64];
	assert_non_null(getcwd(here, sizeof(here)));
	assert_string_equal(here, "/"); /* the check went back where it was */
	assert_int_equal(fchdir(cwd), 0);
	close(cwd);
	json_object_put(back);
	json_object_put(b);
	unlink(kp);
	assert_int_not_equal(store_doc_read(dir, &back, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "vmlinuz"));
	/* A document spoiled by hand is reported on read, naming the file. */
	FILE *f = fopen(p, "w");
	fputs("{ \"memory\": ", f);
	fclose(f);
	assert_int_equal(store_doc_read(dir, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vm.json"));
	assert_null(back);
	json_object_put(doc);
}

static void test_run_lock(void **state)
{
	char err[256], dir[256];
	assert_int_equal(store_vm_create_dir(root, "lk", err, sizeof(err)), 0);
	vm_dir(dir, sizeof(dir), "lk");
	assert_int_equal(store_run_lock_held(dir), 0);
	int fd = store_run_lock(dir);
	assert_true(fd >= 0);
	assert_int_equal(store_run_lock_held(dir), 1);
	assert_int_equal(store_run_lock(dir), -EBUSY);
	close(fd);
	assert_int_equal(store_run_lock_held(dir), 0);
	/* Held by a process that is killed with SIGKILL: the lock goes with it. */
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int l = store_run_lock(dir);
		char c = l >= 0 ? 'y' : 'n';
		if (l >= 0) {
			char pidtxt[16];
			int n = snprintf(pidtxt, sizeof(pidtxt), "%d\n", (int)getpid());
			if (pwrite(l, pidtxt, (size_t)n, 0) != n)
				c = 'n';
		}
		if (write(pipefd[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c = 0;
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(store_run_lock_held(dir), 1);
	assert_int_equal(store_run_pid(dir), pid);
	assert_int_equal(store_run_lock(dir), -EBUSY);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(store_run_lock_held(dir), 0);
	fd = store_run_lock(dir);
	assert_true(fd >= 0);
	close(fd);
	close(pipefd[0]);
	close(pipefd[1]);
}

static void test_config_lock(void **state)
{
	char err[256], dir[256];
	assert_int_equal(store_vm_create_dir(root, "cl", err, sizeof(err)), 0);
	vm_dir(dir, sizeof(dir), "cl");
	int a = store_config_lock(dir, 0);
	assert_true(a >= 0);
	assert_int_equal(store_config_lock(dir, 100), -EBUSY);
	close(a);
	int b = store_config_lock(dir, 100);
	assert_true(b >= 0);
	close(b);
}

/* docs/vm-config.schema.json describes exactly the keys the reader takes: each top-level key of the
 * reader and of the device classes is there, and each key there is accepted. */
static json_object *schema_load(void)
{
	json_object *s = json_object_from_file("docs/vm-config.schema.json");
	assert_non_null(s);
	return s;
}

static json_object *schema_props(json_object *o)
{
	json_object *p;
	assert_true(json_object_object_get_ex(o, "properties", &p));
	return p;
}

/* The object alternative of an array property's items. */
static json_object *schema_item_object(json_object *props, const char *key)
{
	json_object *prop, *items, *alts;
	assert_true(json_object_object_get_ex(props, key, &prop));
	assert_true(json_object_object_get_ex(prop, "items", &items));
	assert_true(json_object_object_get_ex(items, "oneOf", &alts));
	for (size_t i = 0; i < json_object_array_length(alts); i++) {
		json_object *alt = json_object_array_get_idx(alts, i), *t;
		if (json_object_object_get_ex(alt, "type", &t) && !strcmp(json_object_get_string(t), "object"))
			return alt;
	}
	fail_msg("%s: no object form in the schema", key);
	return NULL;
}

static void test_schema_top_level(void **state)
{
	json_object *s = schema_load(), *props = schema_props(s), *x;
	unsigned n = 0;
	for (size_t i = 0; run_config_json_keys[i]; i++, n++)
		if (!json_object_object_get_ex(props, run_config_json_keys[i], &x))
			fail_msg("the reader takes \"%s\", the schema does not describe it", run_config_json_keys[i]);
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++) {
		if (!(*c)->json_key)
			continue;
		n++;
		if (!json_object_object_get_ex(props, (*c)->json_key, &x))
			fail_msg("the device class %s takes \"%s\", the schema does not describe it", (*c)->name, (*c)->json_key);
	}
	json_object_object_foreach(props, key, val) {
		bool known = vmdev_class_by_json_key(key) != NULL;
		for (size_t i = 0; run_config_json_keys[i]; i++)
			known |= !strcmp(key, run_config_json_keys[i]);
		if (!known)
			fail_msg("the schema describes \"%s\", the reader does not take it", key);
	}
	assert_int_equal((unsigned)json_object_object_length(props), n);
	json_object_put(s);
}

/* A value the schema's description of key allows, for the reverse check. */
static json_object *schema_sample(json_object *prop)
{
	json_object *t, *e;
	if (json_object_object_get_ex(prop, "enum", &e))
		return json_object_get(json_object_array_get_idx(e, json_object_array_length(e) - 1));
	assert_true(json_object_object_get_ex(prop, "type", &t));
	const char *ty = json_object_get_string(t);
	if (!strcmp(ty, "boolean"))
		return json_object_new_boolean(true);
	if (!strcmp(ty, "integer"))
		return json_object_new_int(1);
	return json_object_new_string("s");
}

static void test_schema_disks_and_nics(void **state)
{
	json_object *s = schema_load(), *props = schema_props(s);
	char err[512];
	json_object_object_foreach(schema_props(schema_item_object(props, "disks")), dk, dv) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "path", json_object_new_string("x.img"));
		json_object_object_add(o, dk, !strcmp(dk, "path") ? json_object_new_string("x.img") : schema_sample(dv));
		struct disk_spec d;
		err[0] = 0;
		if (disk_spec_from_json(o, &d, err, sizeof(err)))
			fail_msg("disks: the schema describes \"%s\", the reader says: %s", dk, err);
		disk_spec_free(&d);
		json_object_put(o);
	}
	json_object_object_foreach(schema_props(schema_item_object(props, "nics")), nk, nv) {
		if (!strcmp(nk, "legacy"))
			continue; /* described so that the refusal is documented: true is refused */
		json_object *o = json_object_new_object();
		if (strcmp(nk, "tap"))
			json_object_object_add(o, "pair", json_object_new_string("p"));
		json_object *val = !strcmp(nk, "mac")	 ? json_object_new_string("02:00:00:00:00:01")
				   : !strcmp(nk, "mtu") ? json_object_new_int(1500)
							: schema_sample(nv);
		json_object_object_add(o, nk, val);
		struct nic_config c;
		err[0] = 0;
		if (nic_config_from_json(o, &c, err, sizeof(err)))
			fail_msg("nics: the schema describes \"%s\", the reader says: %s", nk, err);
		json_object_put(o);
	}
	json_object *o = json_tokener_parse("{\"pair\": \"p\", \"legacy\": true}");
	struct nic_config c;
	assert_int_equal(nic_config_from_json(o, &c, err, sizeof(err)), -EINVAL);
	json_object_put(o);
	json_object_put(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_root),
		cmocka_unit_test_setup_teardown(test_create_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doc_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_lock, setup, teardown),
		cmocka_unit_test(test_schema_top_level),
		cmocka_unit_test(test_schema_disks_and_nics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
