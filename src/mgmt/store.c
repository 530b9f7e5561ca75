#include "mgmt/store.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/config.h"
#include "util/file.h"
#include "util/text.h"

int store_name_check(const char *name, char *err, size_t errlen)
{
	size_t n = strlen(name);
	if (n == 0 || n > STORE_NAME_MAX) {
		snprintf(err, errlen, "VM name '%s': expected 1 to %d characters", text_show(name), STORE_NAME_MAX);
		return -EINVAL;
	}
	if (name[0] == '.' || name[0] == '-') {
		snprintf(err, errlen, "VM name '%s': may not start with '%c'", text_show(name), name[0]);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-')) {
			snprintf(err, errlen, "VM name '%s': only letters, digits, '.', '_' and '-' are allowed",
				 text_show(name));
			return -EINVAL;
		}
	}
	return 0;
}

int store_root_resolve(const char *opt, char *out, size_t len, char *err, size_t errlen)
{
	const char *env = getenv("GEN2VM_STORE"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	int n;
	if (opt && *opt)
		n = snprintf(out, len, "%s", opt);
	else if (env && *env)
		n = snprintf(out, len, "%s", env);
	else if (xdg && *xdg == '/') /* the XDG spec: a relative value is invalid and ignored */
		n = snprintf(out, len, "%s/gen2vm", xdg);
	else if (home && *home)
		n = snprintf(out, len, "%s/.local/share/gen2vm", home);
	else {
		snprintf(err, errlen, "no VM store: HOME is not set (give --store DIR or set GEN2VM_STORE)");
		return -ENOENT;
	}
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "VM store '%s': path too long", text_show(out));
		return -ENAMETOOLONG;
	}
	return 0;
}

int store_path(const char *root, const char *name, const char *file, char *out, size_t len)
{
	int n = file ? snprintf(out, len, "%s/%s/%s", root, name, file) : snprintf(out, len, "%s/%s", root, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* mkdir -p for the root: the store is private to its user (VM disks and consoles). */
static int store_mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		int r = mkdir(path, 0700) && errno != EEXIST ? -errno : 0;
		*p = '/';
		if (r)
			return r;
	}
	return mkdir(path, 0700) && errno != EEXIST ? -errno : 0;
}

int store_vm_create_dir(const char *root, const char *name, char *err, size_t errlen)
{
	char dir[4096];
	int r;
	if (snprintf(dir, sizeof(dir), "%s", root) >= (int)sizeof(dir) || store_path(root, name, NULL, dir, sizeof(dir))) {
		snprintf(err, errlen, "VM store '%s': path too long", text_show(root));
		return -ENAMETOOLONG;
	}
	char rootcopy[4096];
	snprintf(rootcopy, sizeof(rootcopy), "%s", root);
	if ((r = store_mkdirs(rootcopy))) {
		snprintf(err, errlen, "VM store %s: cannot create it: %s", text_show(root), strerror(-r));
		return r;
	}
	struct stat st;
	if (stat(root, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "VM store %s: not a directory", text_show(root));
		return -ENOTDIR;
	}
	if (mkdir(dir, 0700)) {
		r = -errno;
		if (r == -EEXIST)
			snprintf(err, errlen, "a VM named '%s' already exists (gen2vm vm remove %s, or choose another name)",
				 text_show(name), text_show(name));
		else
			snprintf(err, errlen, "%s: cannot create the VM's directory: %s", text_show(dir), strerror(-r));
		return r;
	}
	return 0;
}

int store_vm_exists(const char *root, const char *name, char *err, size_t errlen)
{
	char p[4096];
	struct stat st;
	if (store_path(root, name, STORE_CONFIG, p, sizeof(p))) {
		snprintf(err, errlen, "VM '%s': path too long", text_show(name));
		return -ENAMETOOLONG;
	}
	if (stat(p, &st) == 0)
		return 0;
	int r = -errno;
	if (r == -ENOENT || r == -ENOTDIR)
		snprintf(err, errlen, "no VM named '%s' in %s (gen2vm vm list shows them)", text_show(name), text_show(root));
	else
		snprintf(err, errlen, "%s: %s", text_show(p), strerror(-r));
	return r == -ENOTDIR ? -ENOENT : r;
}

static int store_lock_open(const char *dir, const char *file, int flags)
{
	char p[4096];
	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	/* O_NOFOLLOW: a symlink planted in the VM's directory must not make us create files elsewhere. */
	int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | flags, 0600);
	return fd < 0 ? -errno : fd;
}

int store_run_lock(const char *dir)
{
	int fd = store_lock_open(dir, STORE_RUN_LOCK, 0);
	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return r;
	}
	return fd;
}

int store_run_lock_held(const char *dir)
{
	int fd = store_lock_open(dir, STORE_RUN_LOCK, O_CLOEXEC);
	if (fd < 0)
		return fd;
	int r = 0;
	if (flock(fd, LOCK_SH | LOCK_NB))
		r = errno == EWOULDBLOCK ? 1 : -errno;
	close(fd); /* releases the shared lock if we got it */
	return r;
}

pid_t store_run_pid(const char *dir)
{
	char p[4096], buf[32];
	if (snprintf(p, sizeof(p), "%s/%s", dir, STORE_RUN_LOCK) >= (int)sizeof(p))
		return 0;
	int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	long v = strtol(buf, NULL, 10);
	return v > 1 && v < (1l << 22) ? (pid_t)v : 0;
}

int store_config_lock(const char *dir, unsigned wait_ms)
{
	int fd = store_lock_open(dir, STORE_CONFIG_LOCK, O_CLOEXEC);
	if (fd < 0)
		return fd;
	/* Polled rather than blocking: a client that hangs holding the lock must give "busy", not hang
	 * every other client. */
	for (unsigned waited = 0;; waited += 20) {
		if (!flock(fd, LOCK_EX | LOCK_NB))
			return fd;
		if (errno != EWOULDBLOCK || waited >= wait_ms) {
			int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
			close(fd);
			return r;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000000 }, NULL);
	}
}

/* The run reader's check, from the VM's directory: a relative path in the document (a kernel, a disk)
 * means what it means to the run process `vm start` spawns there. */
static int store_doc_check(const char *dir, const char *text, size_t len, const char *name, char *err,
			   size_t errlen)
{
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cwd < 0 || chdir(dir)) {
		int r = -errno;
		if (cwd >= 0)
			close(cwd);
		snprintf(err, errlen, "%s: %s", text_show(dir), strerror(-r));
		return r;
	}
	int r = run_config_check_json(text, len, name, err, errlen);
	if (fchdir(cwd) && !r) {
		r = -errno;
		snprintf(err, errlen, "cannot return to the working directory: %s", strerror(-r));
	}
	close(cwd);
	return r;
}

int store_doc_read(const char *dir, struct json_object **doc, char *err, size_t errlen)
{
	char p[4096], why[200];
	uint8_t *text;
	size_t len;
	*doc = NULL;
	if (snprintf(p, sizeof(p), "%s/%s", dir, STORE_CONFIG) >= (int)sizeof(p)) {
		snprintf(err, errlen, "%s: path too long", text_show(dir));
		return -ENAMETOOLONG;
	}
	int r = file_read_user(p, RUN_CONFIG_MAX_BYTES, &text, &len, why, sizeof(why));
	if (r) {
		snprintf(err, errlen, "%s: %s", text_show(p), why);
		return r;
	}
	r = store_doc_check(dir, (const char *)text, len, p, err, errlen);
	if (!r) {
		*doc = json_tokener_parse((const char *)text);
		if (!*doc || !json_object_is_type(*doc, json_type_object)) {
			json_object_put(*doc);
			*doc = NULL;
			snprintf(err, errlen, "%s: malformed JSON", text_show(p));
			r = -EINVAL;
		}
	}
	free(text);
	return r;
}

int store_doc_write(const char *dir, struct json_object *doc, char *err, size_t errlen)
{
	char p[4096], why[200];
	if (snprintf(p, sizeof(p), "%s/%s", dir, STORE_CONFIG) >= (int)sizeof(p)) {
		snprintf(err, errlen, "%s: path too long", text_show(dir));
		return -ENAMETOOLONG;
	}
	const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		return -ENOMEM;
	size_t len = strlen(text);
	int r = store_doc_check(dir, text, len, p, err, errlen);
	if (r)
		return r;
	/* With a final newline: the document is for people to read and edit too. */
	char *buf = malloc(len + 2);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, len);
	buf[len] = '\n';
	r = file_replace_user(p, buf, len + 1, why, sizeof(why));
	free(buf);
	if (r)
		snprintf(err, errlen, "%s: cannot write it: %s", text_show(p), why);
	return r;
}
