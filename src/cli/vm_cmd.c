#include "cli/vm_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/config.h"
#include "cli/exit.h"
#include "cli/fw_cmd.h"
#include "cli/vhd_cmd.h"
#include "devices/disk_spec.h"
#include "devices/vmdev.h"
#include "disk/disk.h"
#include "mgmt/api.h"
#include "mgmt/client.h"
#include "mgmt/service.h"
#include "mgmt/store.h"
#include "net/nic.h"
#include "platform/nvram.h"
#include "ui/control.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/text.h"

static const char vm_usage[] =
	"usage: gen2vm vm [--store DIR] COMMAND NAME [OPTIONS]\n"
	"\n"
	"VMs kept by name in the VM store: DIR, else $GEN2VM_STORE, else $XDG_DATA_HOME/gen2vm or\n"
	"~/.local/share/gen2vm. Each VM is a directory holding vm.json (the document gen2vm run --config\n"
	"reads), nvram.bin, the disks the store created, console.log (COM1) and vm.log (gen2vm's messages).\n"
	"\n"
	"  new NAME [--generation 2] [--memory 512M] [--cpus 1] [--disk new:SIZE|PATH[,OPTS]]...\n"
	"           [--dvd ISO|empty[,OPTS]]... [--nic SPEC]... [--console on|off]\n"
	"                          a new VM (new:64G makes a dynamic VHDX in the VM's directory;\n"
	"                          OPTS and SPEC as gen2vm run --disk/--dvd/--nic take them); its\n"
	"                          console (keyboard, mouse, video, VNC on vnc.sock) is on unless\n"
	"                          --console off\n"
	"  list [--json]           every VM: state, CPU usage, memory, uptime, generation, status\n"
	"  show NAME [--json]      a VM's document and state\n"
	"  start NAME              run it in the background (gen2vm run with its document)\n"
	"  stop NAME [--turn-off|--save] [--timeout S]\n"
	"                          ask the guest to shut down and wait S seconds (default 60);\n"
	"                          --turn-off turns it off at once (a saved VM: deletes its saved state);\n"
	"                          --save saves its state into the VM's directory (vm.save) and ends it:\n"
	"                          it is then Saved, and vm start resumes it where it was\n"
	"  restart NAME [--turn-off|--save] [--timeout S]\n"
	"  discard-state NAME      delete a saved VM's saved state (it is then Off)\n"
	"  pause NAME | resume NAME\n"
	"  remove NAME             delete an off VM and the files the store made (never a disk added by PATH)\n"
	"  set NAME [--memory SIZE] [--cpus N] [--video WxH] [--integration-services LIST]\n"
	"           [--processor-compatibility on|off] [--console on|off] [--vnc unix:PATH|HOST:PORT|off]\n"
	"           [--web-console HOST:PORT|off] [--vnc-password-file FILE|off]     (the VM must be off)\n"
	"                          --console on: the synthetic keyboard, mouse and video with a VNC server\n"
	"                          on vnc.sock in the VM's directory (or where --vnc says)\n"
	"  add-disk NAME new:SIZE|PATH[,OPTS]     remove-disk NAME lun=N[,controller=C]|PATH\n"
	"  add-dvd NAME ISO|empty[,OPTS]          set-dvd NAME ISO|empty [lun=N[,controller=C]]\n"
	"  remove-dvd NAME lun=N[,controller=C]\n"
	"  add-nic NAME SPEC                      remove-nic NAME INDEX (0 is the first in show)\n"
	"                          disks and DVDs change on a running VM too (hot add/remove, media\n"
	"                          change), and network adapters (hot add/remove); the rest need it off\n"
	"  firmware NAME show|set|reset [OPTIONS]\n"
	"                          gen2vm firmware on the VM's nvram.bin (gen2vm firmware --help)\n"
	"  console NAME [--follow] attach to the running VM's COM1: its output from now on, and what you\n"
	"                          type goes to the guest (Ctrl-] detaches; several may attach at once);\n"
	"                          --follow prints console.log and follows it while the VM runs (read-only;\n"
	"                          Ctrl-C ends it), also for a VM that is off\n"
	"  connect NAME            where the running VM's graphical console is: its VNC socket or address,\n"
	"                          its web console's URL (gen2vm vm set NAME --console on gives it one)\n";

/* How long `vm start` waits for the control socket, and `vm stop --turn-off` for the process. */
#define VM_START_WAIT_S 120
#define VM_TURN_OFF_WAIT_S 30
#define VM_SAVE_WAIT_S 600 /* how long `vm stop --save` waits for a VM still writing its state */
#define VM_CONFIG_LOCK_WAIT_MS 5000
/* The control socket answers at once when the VM is healthy; list and show must not hang on one
 * that is not (control_request waits CONTROL_CLIENT_TIMEOUT_S). */
#define VM_CONTROL_QUICK_MS 2000
#define VM_CONTROL_SLOW_MS 60000
#define CONTROL_REPLY_BUF (CONTROL_REPLY_MAX + 16)

struct vm {
	char root[2048];
	const char *name;
	char dir[4096];
	const char *cmd; /* "new", "start"... for messages */
};

static void vm_msleep(unsigned ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 }, NULL);
}

static int vm_err(const struct vm *v, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The API's error code (src/mgmt/api.h) of the first error: set before vm_err where the -errno alone
 * does not say it (a VM that is running, one that is not found...), else derived from the -errno. */
static const char *vm_code;

static int vm_err(const struct vm *v, int r, const char *fmt, ...)
{
	va_list ap;
	if (!vm_code)
		vm_code = api_error_code(r);
	va_start(ap, fmt);
	fprintf(stderr, "gen2vm vm %s: ", v->cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return cli_exit_code(r);
}

/* <dir>/file into out; the directory's path was checked to leave room for the store's names. */
static void vm_file(const struct vm *v, const char *file, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", v->dir, file);
	if (n < 0 || (size_t)n >= len)
		out[0] = 0;
}

/* Resolves the store and the VM's directory. must_exist: the VM's vm.json must be there. Returns 0
 * or an exit code (the error printed). */
static int vm_resolve(struct vm *v, const char *store, const char *name, bool must_exist)
{
	char err[512];
	int r;
	v->name = name;
	if ((r = store_name_check(name, err, sizeof(err))))
		return vm_code = "InvalidName", vm_err(v, r, "%s", err);
	if ((r = store_root_resolve(store, v->root, sizeof(v->root), err, sizeof(err))))
		return vm_err(v, r, "%s", err);
	if (store_path(v->root, name, NULL, v->dir, sizeof(v->dir)))
		return vm_err(v, -ENAMETOOLONG, "VM store %s: path too long", text_show(v->root));
	if (must_exist && (r = store_vm_exists(v->root, name, err, sizeof(err)))) {
		vm_code = r == -ENOENT ? "VmNotFound" : NULL;
		return vm_err(v, r, "%s", err);
	}
	return 0;
}

/* The prelude of a verb on one VM, named by argv[1]: args_ok false (a wrong argument count, an
 * option where NAME goes) refuses the command with usage, without looking at argv[1]; otherwise the
 * store and the VM, which must exist, are resolved. Returns 0 or an exit code (the error printed). */
static int vm_named(struct vm *v, const char *store, bool args_ok, const char *usage, char **argv)
{
	if (!args_ok)
		return vm_err(v, -EINVAL, "%s", usage);
	return vm_resolve(v, store, argv[1], true);
}

/* Reports r, a failure to read or write the VM's document (err: the store's message), with the API
 * code InvalidConfig when the document itself is at fault. Returns the exit code. */
static int vm_doc_err(const struct vm *v, int r, const char *err)
{
	vm_code = r == -EINVAL ? "InvalidConfig" : NULL;
	return vm_err(v, r, "%s", err);
}

/* ---- the control socket ---- */

/* Connects to the Unix socket file in the VM's directory, reached from it: a deep store would
 * otherwise pass the 107 bytes a socket path may have. Returns the descriptor or -errno. */
static int vm_socket_connect(const struct vm *v, const char *file)
{
	char p[PATH_MAX];
	vm_file(v, file, p, sizeof(p));
	return p[0] ? client_unix_connect(p) : -ENAMETOOLONG;
}

/* Sends argv as one command line to the VM's control socket and reads the reply line. The socket is
 * reached relative to the VM's directory: a deep store would otherwise pass the 107 bytes a Unix
 * socket path may have. Returns 0 ("ok", the detail in reply), -EIO ("error: ...", the message in
 * reply), or -errno when the VM could not be reached or did not answer within timeout_ms. peer (may
 * be NULL) gets the pid of the process that listens on the socket. */
static int vm_control_peer(const struct vm *v, unsigned timeout_ms, int argc, const char *const *argv, char *reply,
			   size_t len, pid_t *peer)
{
	char line[4096];
	size_t n = 0;
	reply[0] = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strpbrk(a, "\"\n\r"))
			return -EINVAL; /* the control socket's words cannot hold these */
		bool quote = !*a || strpbrk(a, " \t");
		int w = snprintf(line + n, sizeof(line) - n, "%s%s%s%s", i ? " " : "", quote ? "\"" : "", a, quote ? "\"" : "");
		if (w < 0 || (size_t)w >= sizeof(line) - n - 1)
			return -E2BIG;
		n += (size_t)w;
	}
	line[n++] = '\n';
	int fd = vm_socket_connect(v, STORE_CONTROL);
	int r = fd < 0 ? fd : 0;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (!r && peer)
		*peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) ? 0 : cred.pid;
	if (!r && send(fd, line, n, MSG_NOSIGNAL) != (ssize_t)n)
		r = -errno ? -errno : -EIO;
	char buf[CONTROL_REPLY_BUF];
	size_t got = 0;
	uint64_t t0 = clock_mono_ms();
	while (!r && !memchr(buf, '\n', got)) {
		long el = (long)(clock_mono_ms() - t0);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (el >= (long)timeout_ms || poll(&p, 1, (int)(timeout_ms - el)) == 0) {
			r = -ETIMEDOUT;
			break;
		}
		ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || got + (size_t)k >= sizeof(buf) - 1)
			r = k < 0 ? -errno : -ECONNRESET;
		else
			got += (size_t)k;
	}
	close(fd);
	if (r)
		return r;
	buf[got] = 0;
	*strchr(buf, '\n') = 0;
	if (!strncmp(buf, "ok", 2)) {
		const char *detail = buf + 2 + (buf[2] == ':');
		snprintf(reply, len, "%s", detail + (*detail == ' '));
		return 0;
	}
	snprintf(reply, len, "%s", !strncmp(buf, "error: ", 7) ? buf + 7 : buf);
	return -EIO;
}

static int vm_control(const struct vm *v, unsigned timeout_ms, int argc, const char *const *argv, char *reply,
		      size_t len)
{
	return vm_control_peer(v, timeout_ms, argc, argv, reply, len, NULL);
}

/* ---- state ---- */

enum vm_state { VM_OFF, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING, VM_SAVED };
static const char *const vm_state_name[] = { "Off", "Starting", "Running", "Paused", "Stopping", "Saved" };

/* Whether the VM has a saved state (STORE_SAVED): it is then Saved while no process runs it. */
static bool vm_is_saved(const struct vm *v)
{
	char p[PATH_MAX];
	struct stat st;
	return snprintf(p, sizeof(p), "%s/%s", v->dir, STORE_SAVED) < (int)sizeof(p) && !lstat(p, &st) &&
	       S_ISREG(st.st_mode);
}

struct vm_status {
	enum vm_state state;
	pid_t pid;
	long long uptime_s; /* -1: unknown */
	char heartbeat[64];
	json_object *runtime; /* the control socket's status --json, or NULL */
};

/* A VM is running when a process holds its run lock and its control socket answers status; one that
 * holds the lock but does not answer (yet) is Starting. */
static void vm_status_get(const struct vm *v, struct vm_status *s)
{
	memset(s, 0, sizeof(*s));
	s->uptime_s = -1;
	if (store_run_lock_held(v->dir) != 1) {
		s->state = vm_is_saved(v) ? VM_SAVED : VM_OFF;
		return;
	}
	s->state = VM_STARTING;
	s->pid = store_run_pid(v->dir);
	char reply[CONTROL_REPLY_BUF];
	const char *args[] = { "status", "--json" };
	if (vm_control(v, VM_CONTROL_QUICK_MS, 2, args, reply, sizeof(reply)))
		return;
	json_object *o = json_tokener_parse(reply), *j;
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return;
	}
	s->runtime = o;
	const char *st = json_object_object_get_ex(o, "state", &j) ? json_object_get_string(j) : "";
	s->state = !strcmp(st, "paused") ? VM_PAUSED : !strcmp(st, "stopping") ? VM_STOPPING : VM_RUNNING;
	if (json_object_object_get_ex(o, "uptime_s", &j))
		s->uptime_s = json_object_get_int64(j);
	json_object *hb;
	if (json_object_object_get_ex(o, "heartbeat", &hb) && json_object_object_get_ex(hb, "state", &j))
		snprintf(s->heartbeat, sizeof(s->heartbeat), "heartbeat %s", json_object_get_string(j));
}

/* utime + stime of pid in clock ticks, or -1. */
static long long vm_cpu_ticks(pid_t pid)
{
	char p[64], buf[1024];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *q = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (!q)
		return -1;
	unsigned long long ut, st;
	/* After ")": state (field 3) ... utime (14), stime (15). */
	if (sscanf(q + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* ---- the document ---- */

static const char *vm_format_name(unsigned flag)
{
	static const char *const names[] = { "raw", "vhd", "vhdx" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flag && disk_format_flag(names[i]) == flag)
			return names[i];
	return NULL;
}

/* A disk or DVD entry as the document keeps it: an object with every setting explicit. */
static json_object *vm_disk_json(const struct disk_spec *d)
{
	json_object *o = json_object_new_object();
	if (d->path)
		json_object_object_add(o, "path", json_object_new_string(d->path));
	if (d->dvd)
		json_object_object_add(o, "dvd", json_object_new_boolean(true));
	if (d->readonly)
		json_object_object_add(o, "readonly", json_object_new_boolean(true));
	if (d->native_4k)
		json_object_object_add(o, "native_4k", json_object_new_boolean(true));
	json_object_object_add(o, "controller", json_object_new_int(d->controller));
	json_object_object_add(o, "lun", json_object_new_int(d->lun));
	if (d->serial)
		json_object_object_add(o, "serial", json_object_new_string(d->serial));
	if (vm_format_name(d->format))
		json_object_object_add(o, "format", json_object_new_string(vm_format_name(d->format)));
	return o;
}

static json_object *vm_doc_array(json_object *doc, const char *key)
{
	json_object *a;
	if (json_object_object_get_ex(doc, key, &a) && json_object_is_type(a, json_type_array))
		return a;
	a = json_object_new_array();
	json_object_object_add(doc, key, a);
	return a;
}

/* Entry i of the document's "disks" as a disk_spec (the caller frees it). */
static int vm_doc_disk(json_object *disks, size_t i, struct disk_spec *d)
{
	char err[256];
	return disk_spec_from_json(json_object_array_get_idx(disks, i), d, err, sizeof(err));
}

/* A LUN for a new drive on controller c: the first one no entry of the document uses (every entry
 * the store writes has its LUN, so the VM sees the drives where the document says). */
static int vm_doc_free_lun(json_object *disks, int c)
{
	bool used[64] = { false };
	for (size_t i = 0; i < json_object_array_length(disks); i++) {
		struct disk_spec d;
		if (vm_doc_disk(disks, i, &d))
			continue;
		if (d.controller == c && d.lun >= 0 && d.lun < 64)
			used[d.lun] = true;
		disk_spec_free(&d);
	}
	for (int l = 0; l < 64; l++)
		if (!used[l])
			return l;
	return -1;
}

static bool vm_doc_lun_used(json_object *disks, int c, int lun)
{
	bool used = false;
	for (size_t i = 0; i < json_object_array_length(disks); i++) {
		struct disk_spec d;
		if (vm_doc_disk(disks, i, &d))
			continue;
		used |= d.controller == c && d.lun == lun;
		disk_spec_free(&d);
	}
	return used;
}

/* Whether path is a disk image this VM's store made: diskN.vhdx in its directory. Only these are
 * ever deleted (vm remove); a disk added by PATH is the user's. */
static bool vm_store_disk_name(const char *base)
{
	unsigned n;
	char canon[32];
	if (sscanf(base, "disk%u.vhdx", &n) != 1)
		return false;
	snprintf(canon, sizeof(canon), "disk%u.vhdx", n);
	return !strcmp(base, canon);
}

/* Makes a new dynamic VHDX of size bytes in the VM's directory; its path into out. */
static int vm_disk_create(const struct vm *v, uint64_t size, char *out, size_t len)
{
	for (unsigned n = 0; n < 1000; n++) {
		int w = snprintf(out, len, "%s/disk%u.vhdx", v->dir, n);
		if (w < 0 || (size_t)w >= len)
			return -ENAMETOOLONG;
		struct stat st;
		if (lstat(out, &st) == 0)
			continue;
		struct disk_create_opts o = { .format = "vhdx", .size = size };
		int r = disk_create(out, &o);
		if (r != -EEXIST)
			return r;
	}
	return -EEXIST;
}

/* Turns a --disk/--dvd argument the user gave into a document entry: new:SIZE is created now (its
 * path into created), a PATH must be there and is kept absolute (the document is read from the VM's
 * directory), the LUN is made explicit. Returns 0 or an exit code (the error printed). */
static int vm_drive_make(const struct vm *v, json_object *disks, const char *arg, bool dvd, char *created,
			 size_t clen, json_object **entry)
{
	char err[1024];
	struct disk_spec d;
	int r = disk_spec_parse(arg, dvd, &d, err, sizeof(err));
	if (r)
		return vm_err(v, r, "%s", err);
	created[0] = 0;
	char abs[PATH_MAX];
	if (d.path && !dvd && !strncmp(d.path, "new:", 4)) {
		unsigned long long size;
		if (cli_size_parse(d.path + 4, &size) || size == 0) {
			disk_spec_free(&d);
			return vm_err(v, -EINVAL, "--disk '%s': expected new:SIZE such as new:64G, or a PATH", text_show(arg));
		}
		if (d.format && d.format != disk_format_flag("vhdx")) {
			disk_spec_free(&d);
			return vm_err(v, -EINVAL, "--disk '%s': a new disk is a VHDX (drop format=)", text_show(arg));
		}
		if ((r = vm_disk_create(v, size, created, clen))) {
			disk_spec_free(&d);
			return vm_err(v, r, "cannot create a %s disk in %s: %s", text_show(d.path + 4), text_show(v->dir),
				      strerror(-r));
		}
		free(d.path);
		d.path = strdup(created);
	} else if (d.path) {
		char why[200];
		int fd = file_open_user(d.path, O_RDONLY, 0, FILE_REG | FILE_BLK, why, sizeof(why));
		if (fd < 0) {
			r = vm_err(v, fd, "%s %s: %s", dvd ? "--dvd" : "--disk", text_show(d.path), why);
			disk_spec_free(&d);
			return r;
		}
		close(fd);
		if (!realpath(d.path, abs)) {
			r = vm_err(v, -errno, "%s: %s", text_show(d.path), strerror(errno));
			disk_spec_free(&d);
			return r;
		}
		char rdir[PATH_MAX];
		const char *dir = realpath(v->dir, rdir) ? rdir : v->dir;
		size_t dl = strlen(dir);
		if (!strncmp(abs, dir, dl) && abs[dl] == '/') {
			disk_spec_free(&d);
			return vm_err(v, -EINVAL, "%s: is inside the VM's own directory, where the store keeps its files "
					      "(move it elsewhere, or use new:SIZE)", text_show(abs));
		}
		free(d.path);
		d.path = strdup(abs);
	}
	if (d.lun == DISK_SPEC_AUTO)
		d.lun = vm_doc_free_lun(disks, d.controller);
	if (d.lun < 0 || vm_doc_lun_used(disks, d.controller, d.lun)) {
		r = vm_err(v, -EINVAL, "controller %d %s: %s", d.controller, d.lun < 0 ? "" : "LUN taken",
			   d.lun < 0 ? "every LUN is taken (use controller=1..3)" : "choose another lun=N");
		if (created[0])
			unlink(created);
		disk_spec_free(&d);
		return r;
	}
	*entry = vm_disk_json(&d);
	disk_spec_free(&d);
	return 0;
}

/* ---- locks around changes ---- */

/* The run lock, told apart from the instant a `vm list` or `vm show` elsewhere holds it shared to
 * look: a few tries before -EBUSY means a process runs the VM. */
static int vm_run_lock(const struct vm *v)
{
	int r = -EBUSY;
	for (int i = 0; i < 10 && r == -EBUSY; i++) {
		r = store_run_lock(v->dir);
		if (r == -EBUSY)
			vm_msleep(30);
	}
	return r;
}

struct vm_change {
	int run_fd;    /* the run lock, held while the VM must stay off; -1 when it runs */
	int config_fd; /* the config lock */
	json_object *doc;
};

/* Takes what a change needs: the config lock and the document; and the run lock unless the change
 * may be made on a running VM (hot), in which case *running says whether it runs. A VM that runs
 * where it must be off gives an error naming what cannot change (what). Returns 0 or an exit code. */
static int vm_change_begin(const struct vm *v, struct vm_change *c, bool hot, bool *running, const char *what)
{
	char err[1536];
	c->run_fd = c->config_fd = -1;
	c->doc = NULL;
	if (running)
		*running = false;
	/* The config lock first, then the run lock, in every command that takes both: a change that
	 * finds the run lock taken knows it is a VM that runs, not another change. */
	int r = store_config_lock(v->dir, VM_CONFIG_LOCK_WAIT_MS);
	if (r < 0)
		return vm_err(v, r, "VM '%s': %s", text_show(v->name),
			      r == -EBUSY ? "another gen2vm is changing its configuration (busy; try again)" : strerror(-r));
	c->config_fd = r;
	r = vm_run_lock(v);
	if (r == -EBUSY) {
		if (!hot) {
			close(c->config_fd);
			vm_code = "VmRunning";
			return vm_err(v, r, "VM '%s' is running: %s cannot be changed while it runs (stop it first: gen2vm vm "
					    "stop %s)", text_show(v->name), what, text_show(v->name));
		}
		if (running)
			*running = true;
	} else if (r < 0) {
		close(c->config_fd);
		return vm_err(v, r, "%s: cannot take its run lock: %s", text_show(v->dir), strerror(-r));
	} else {
		c->run_fd = r;
		if (vm_is_saved(v)) {
			/* As Hyper-V: a saved VM resumes on the hardware it was saved with. */
			close(c->run_fd);
			close(c->config_fd);
			vm_code = "VmSaved";
			return vm_err(v, -EBUSY, "VM '%s' is saved: %s cannot be changed while it has a saved state (gen2vm vm "
						 "start %s resumes it; gen2vm vm discard-state %s deletes the state)",
				      text_show(v->name), what, text_show(v->name), text_show(v->name));
		}
	}
	if ((r = store_doc_read(v->dir, &c->doc, err, sizeof(err)))) {
		close(c->config_fd);
		if (c->run_fd >= 0)
			close(c->run_fd);
		return vm_doc_err(v, r, err);
	}
	return 0;
}

static int vm_change_end(const struct vm *v, struct vm_change *c, bool write)
{
	char err[1536];
	int rc = CLI_EXIT_OK;
	if (write) {
		int r = store_doc_write(v->dir, c->doc, err, sizeof(err));
		if (r)
			rc = vm_doc_err(v, r, err);
	}
	json_object_put(c->doc);
	close(c->config_fd);
	if (c->run_fd >= 0)
		close(c->run_fd);
	return rc;
}

/* ---- new ---- */

static void vm_new_undo(const struct vm *v, char (*created)[PATH_MAX], unsigned n)
{
	char p[PATH_MAX];
	for (unsigned i = 0; i < n; i++)
		unlink(created[i]);
	static const char *const files[] = { STORE_CONFIG, STORE_CONFIG ".tmp", STORE_NVRAM, STORE_NVRAM ".lock",
					     STORE_NVRAM ".tmp", STORE_CONFIG_LOCK, STORE_RUN_LOCK };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		vm_file(v, files[i], p, sizeof(p));
		unlink(p);
	}
	rmdir(v->dir);
}

#define VM_ARGS_MAX 256

static bool vm_store_disk_name(const char *base);

/* A directory without vm.json whose locks nobody holds is what a `vm new` or `vm remove` killed
 * half-way left (vm.json is written last and removed first): not a VM. A new VM of that name takes
 * it over, removing what the store made there, so a crash never makes a name unusable. */
static void vm_leftover_clear(const struct vm *v)
{
	char p[PATH_MAX], err[256];
	struct stat st;
	if (lstat(v->dir, &st) || !S_ISDIR(st.st_mode) || store_vm_exists(v->root, v->name, err, sizeof(err)) != -ENOENT)
		return;
	int cl = store_config_lock(v->dir, 0);
	int lock = cl >= 0 ? store_run_lock(v->dir) : -1;
	if (cl >= 0 && lock >= 0) {
		static const char *const files[] = { STORE_CONFIG ".tmp", STORE_NVRAM, STORE_NVRAM ".lock", STORE_NVRAM ".tmp",
						     STORE_CONSOLE_LOG, STORE_RUN_LOG, STORE_CONTROL, STORE_CONSOLE_SOCK,
						     STORE_VNC_SOCK };
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			vm_file(v, files[i], p, sizeof(p));
			unlink(p);
		}
		DIR *d = opendir(v->dir);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (!vm_store_disk_name(e->d_name))
				continue;
			vm_file(v, e->d_name, p, sizeof(p));
			unlink(p);
		}
		if (d)
			closedir(d);
		vm_file(v, STORE_CONFIG_LOCK, p, sizeof(p));
		unlink(p);
		vm_file(v, STORE_RUN_LOCK, p, sizeof(p));
		unlink(p);
		rmdir(v->dir);
	}
	if (lock >= 0)
		close(lock);
	if (cl >= 0)
		close(cl);
}

/* A new VM's console: as Hyper-V gives every generation 2 VM, the synthetic keyboard, mouse and
 * video with a VNC server on vnc.sock in its directory, unless the document already says
 * (synthetic_console) or on is false (`vm new --console off`). gen2vm run itself offers them only
 * when asked; the store writes its default into the document, so a VM keeps what it was made with. */
static void vm_console_default(json_object *doc, bool on)
{
	if (json_object_object_get_ex(doc, "synthetic_console", NULL))
		return;
	json_object_object_add(doc, "synthetic_console", json_object_new_boolean(on));
	if (on && !json_object_object_get_ex(doc, "vnc", NULL) && !json_object_object_get_ex(doc, "web_console", NULL))
		json_object_object_add(doc, "vnc", json_object_new_string("unix:" STORE_VNC_SOCK));
}

/* `vm new NAME --from DOCUMENT` (the API's create from a document): the document as it is (with the
 * console on when it does not say, vm_console_default), checked by the run reader from the VM's
 * directory before it is kept. Its drives must exist. */
static int vm_new_from(struct vm *v, const char *from)
{
	char why[200], err[2048];
	uint8_t *data;
	size_t len;
	int r = file_read_user(from, 1 << 20, &data, &len, why, sizeof(why));
	if (r)
		return vm_err(v, r, "--from %s: %s", text_show(from), why);
	json_tokener *tok = json_tokener_new();
	json_object *doc = tok ? json_tokener_parse_ex(tok, (const char *)data, (int)len) : NULL;
	bool whole = tok && json_tokener_get_error(tok) == json_tokener_success && tok->char_offset == (int)len;
	if (tok)
		json_tokener_free(tok);
	free(data);
	if (!doc || !whole || !json_object_is_type(doc, json_type_object)) {
		json_object_put(doc);
		vm_code = "InvalidConfig";
		return vm_err(v, -EINVAL, "--from %s: not a JSON object (a VM document: docs/vm-config.schema.json)",
			      text_show(from));
	}
	if (!json_object_object_get_ex(doc, "schema", NULL))
		json_object_object_add(doc, "schema", json_object_new_int(RUN_CONFIG_SCHEMA));
	if (!json_object_object_get_ex(doc, "generation", NULL))
		json_object_object_add(doc, "generation", json_object_new_int(2));
	vm_console_default(doc, true);
	vm_leftover_clear(v);
	if ((r = store_vm_create_dir(v->root, v->name, err, sizeof(err)))) {
		json_object_put(doc);
		return vm_err(v, r, "%s", err);
	}
	int lock = store_run_lock(v->dir), cl = store_config_lock(v->dir, 0);
	char p[PATH_MAX];
	vm_file(v, STORE_NVRAM, p, sizeof(p));
	int rc = 0;
	if ((r = nvram_reset_file(p, err, sizeof(err))))
		rc = vm_err(v, r, "%s", err);
	if (!rc && (r = store_doc_write(v->dir, doc, err, sizeof(err))))
		rc = vm_doc_err(v, r, err);
	json_object_put(doc);
	if (rc)
		vm_new_undo(v, NULL, 0);
	if (cl >= 0)
		close(cl);
	if (lock >= 0)
		close(lock);
	if (!rc)
		printf("VM '%s' created in %s\n", text_show(v->name), text_show(v->dir));
	return rc;
}

static int vm_new(struct vm *v, const char *store, int argc, char **argv)
{
	enum { O_GEN = 256, O_MEM, O_CPUS, O_DISK, O_DVD, O_NIC, O_CONSOLE, O_FROM, O_HELP };
	static const struct option opts[] = {
		{ "generation", required_argument, NULL, O_GEN }, { "memory", required_argument, NULL, O_MEM },
		{ "cpus", required_argument, NULL, O_CPUS },      { "disk", required_argument, NULL, O_DISK },
		{ "dvd", required_argument, NULL, O_DVD },        { "nic", required_argument, NULL, O_NIC },
		{ "console", required_argument, NULL, O_CONSOLE }, { "from", required_argument, NULL, O_FROM },
		{ "help", no_argument, NULL, O_HELP },
		{ 0 },
	};
	const char *memory = "512M", *cpus = "1", *from = NULL, *console = "on";
	bool others = false;
	const char *drives[VM_ARGS_MAX];
	bool drive_dvd[VM_ARGS_MAX];
	const char *nics[VM_ARGS_MAX];
	unsigned nd = 0, nn = 0;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case O_GEN:
			if (!strcmp(optarg, "1"))
				return vm_err(v, -EOPNOTSUPP, "--generation 1: generation 1 VMs are not supported yet "
							      "(gen2vm makes generation 2 VMs: drop --generation)");
			if (strcmp(optarg, "2"))
				return vm_err(v, -EINVAL, "--generation '%s': expected 2", text_show(optarg));
			break;
		case O_MEM: memory = optarg; others = true; break;
		case O_CPUS: cpus = optarg; others = true; break;
		case O_FROM: from = optarg; break;
		case O_CONSOLE:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return vm_err(v, -EINVAL, "--console '%s': expected on (the default: a VNC socket in the VM's "
							  "directory) or off", text_show(optarg));
			console = optarg;
			others = true;
			break;
		case O_DISK:
		case O_DVD:
			if (nd == VM_ARGS_MAX)
				return vm_err(v, -E2BIG, "too many drives (at most %d)", VM_ARGS_MAX);
			others = true;
			drive_dvd[nd] = c == O_DVD;
			drives[nd++] = optarg;
			break;
		case O_NIC:
			if (nn == VM_ARGS_MAX)
				return vm_err(v, -E2BIG, "too many network adapters");
			others = true;
			nics[nn++] = optarg;
			break;
		case O_HELP: fputs(vm_usage, stdout); return CLI_EXIT_OK;
		case ':': return vm_err(v, -EINVAL, "option '%s' needs a value", text_show(argv[optind - 1]));
		default: return vm_err(v, -EINVAL, "unknown option '%s' (see gen2vm vm --help)", text_show(argv[optind - 1]));
		}
	}
	if (optind != argc - 1)
		return vm_err(v, -EINVAL, optind == argc ? "missing the VM's NAME" : "unexpected argument '%s'",
			      text_show(argv[optind + (optind < argc - 1)]));
	if (from && others)
		return vm_err(v, -EINVAL, "--from DOCUMENT takes no other option (the document says it all)");
	int rc = vm_resolve(v, store, argv[optind], false);
	if (rc)
		return rc;
	if (from)
		return vm_new_from(v, from);
	/* Every value checked by gen2vm run's own parsers before anything is made: one message, and
	 * the same one as `run` gives. new:SIZE parses as a disk PATH here; it is made below. */
	char *rargv[2 * VM_ARGS_MAX * 2 + 8];
	int ra = 0;
	rargv[ra++] = "run";
	rargv[ra++] = "--memory";
	rargv[ra++] = (char *)memory;
	rargv[ra++] = "--cpus";
	rargv[ra++] = (char *)cpus;
	for (unsigned i = 0; i < nd; i++) {
		rargv[ra++] = drive_dvd[i] ? "--dvd" : "--disk";
		rargv[ra++] = (char *)drives[i];
	}
	for (unsigned i = 0; i < nn; i++) {
		rargv[ra++] = "--nic";
		rargv[ra++] = (char *)nics[i];
	}
	rargv[ra] = NULL;
	struct run_config rcfg;
	char err[2048];
	int r = run_config_parse(&rcfg, ra, rargv, err, sizeof(err));
	run_config_free(&rcfg);
	if (r)
		return vm_err(v, r, "%s", err);
	vm_leftover_clear(v);
	if ((r = store_vm_create_dir(v->root, v->name, err, sizeof(err))))
		return vm_err(v, r, "%s", err);
	/* The new directory is ours: its locks keep a `vm start` or a change of the half-made VM away
	 * (and both lock files exist from now on, so later commands only lock them). */
	int lock = store_run_lock(v->dir), cl = store_config_lock(v->dir, 0);
	static char created[VM_ARGS_MAX][PATH_MAX];
	unsigned nc = 0;
	json_object *doc = json_object_new_object();
	json_object_object_add(doc, "schema", json_object_new_int(RUN_CONFIG_SCHEMA));
	json_object_object_add(doc, "generation", json_object_new_int(2));
	json_object_object_add(doc, "memory", json_object_new_string(memory));
	json_object_object_add(doc, "cpus", json_object_new_int(atoi(cpus)));
	json_object *disks = json_object_new_array();
	json_object_object_add(doc, "disks", disks);
	for (unsigned i = 0; i < nd && !rc; i++) {
		json_object *e;
		rc = vm_drive_make(v, disks, drives[i], drive_dvd[i], created[nc], sizeof(created[nc]), &e);
		if (!rc) {
			nc += created[nc][0] != 0;
			json_object_array_add(disks, e);
		}
	}
	json_object *jn = json_object_new_array();
	json_object_object_add(doc, "nics", jn);
	for (unsigned i = 0; i < nn; i++)
		json_object_array_add(jn, json_object_new_string(nics[i]));
	vm_console_default(doc, !strcmp(console, "on"));
	char p[PATH_MAX];
	vm_file(v, STORE_NVRAM, p, sizeof(p));
	if (!rc && (r = nvram_reset_file(p, err, sizeof(err))))
		rc = vm_err(v, r, "%s", err);
	if (!rc && (r = store_doc_write(v->dir, doc, err, sizeof(err))))
		rc = vm_err(v, r, "%s", err);
	json_object_put(doc);
	if (rc)
		vm_new_undo(v, created, nc);
	if (cl >= 0)
		close(cl);
	if (lock >= 0)
		close(lock);
	if (rc)
		return rc;
	printf("VM '%s' created in %s\n", text_show(v->name), text_show(v->dir));
	return CLI_EXIT_OK;
}

/* ---- list and show ---- */

static json_object *vm_doc_peek(const struct vm *v)
{
	json_object *doc = NULL;
	char err[1536];
	store_doc_read(v->dir, &doc, err, sizeof(err));
	return doc;
}

static long long vm_doc_memory(json_object *doc)
{
	json_object *j;
	uint64_t b;
	if (doc && json_object_object_get_ex(doc, "memory", &j) && !parse_size(json_object_get_string(j), &b))
		return (long long)b;
	return 512ll << 20;
}

static void vm_uptime_text(long long s, char *out, size_t len)
{
	if (s < 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

/* vm list's output from its JSON form: the same whether the list came from the store or gen2vmd. */
static void vm_list_print(json_object *arr, bool json)
{
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		return;
	}
	printf("%-20s %-9s %-9s %-14s %-10s %-10s %s\n", "Name", "State", "CPUUsage", "AssignedMemory", "Uptime",
	       "Generation", "Status");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *j;
		char cpus[16], memtxt[24], up[32];
		if (json_object_object_get_ex(o, "cpu_usage_percent", &j) && j)
			snprintf(cpus, sizeof(cpus), "%.0f%%", json_object_get_double(j));
		else
			snprintf(cpus, sizeof(cpus), "-");
		long long mem = json_object_object_get_ex(o, "assigned_memory_bytes", &j) ? json_object_get_int64(j) : 0;
		snprintf(memtxt, sizeof(memtxt), "%lld MB", mem >> 20);
		vm_uptime_text(json_object_object_get_ex(o, "uptime_s", &j) && j ? json_object_get_int64(j) : -1, up, sizeof(up));
		const char *name = json_object_object_get_ex(o, "name", &j) ? json_object_get_string(j) : "";
		const char *state = json_object_object_get_ex(o, "state", &j) ? json_object_get_string(j) : "";
		const char *status = json_object_object_get_ex(o, "status", &j) ? json_object_get_string(j) : "";
		printf("%-20s %-9s %-9s %-14s %-10s %-10d %s\n", text_show(name), text_show(state), cpus, memtxt, up, 2,
		       text_show(status));
	}
}

#define VM_LIST_MAX 1024
#define VM_CPU_SAMPLE_MS 250

static int vm_list(struct vm *v, const char *store, int argc, char **argv)
{
	bool json = argc == 2 && !strcmp(argv[1], "--json");
	if (argc > 2 || (argc == 2 && !json))
		return vm_err(v, -EINVAL, "usage: gen2vm vm list [--json]");
	char err[512];
	int r = store_root_resolve(store, v->root, sizeof(v->root), err, sizeof(err));
	if (r)
		return vm_err(v, r, "%s", err);
	static char names[VM_LIST_MAX][STORE_NAME_MAX + 1];
	unsigned n = 0;
	DIR *d = opendir(v->root);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) && n < VM_LIST_MAX) {
			struct vm t = { .cmd = "list" };
			if (store_name_check(e->d_name, err, sizeof(err)))
				continue;
			snprintf(t.root, sizeof(t.root), "%s", v->root);
			if (store_vm_exists(v->root, e->d_name, err, sizeof(err)))
				continue;
			memcpy(names[n++], e->d_name, strlen(e->d_name) + 1); /* at most STORE_NAME_MAX: checked */
		}
		closedir(d);
	} else if (errno != ENOENT) {
		return vm_err(v, -errno, "VM store %s: %s", text_show(v->root), strerror(errno));
	}
	qsort(names, n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	static struct vm_status st[VM_LIST_MAX];
	static long long ticks[VM_LIST_MAX];
	bool sample = false;
	for (unsigned i = 0; i < n; i++) {
		struct vm t = { .cmd = "list", .name = names[i] };
		store_path(v->root, names[i], NULL, t.dir, sizeof(t.dir));
		vm_status_get(&t, &st[i]);
		ticks[i] = st[i].pid ? vm_cpu_ticks(st[i].pid) : -1;
		sample |= ticks[i] >= 0;
	}
	/* CPU usage as Hyper-V shows it: the share of the whole host's processors the VM's process used,
	 * here over a short interval measured now. */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN), hz = sysconf(_SC_CLK_TCK);
	if (sample)
		vm_msleep(VM_CPU_SAMPLE_MS);
	json_object *arr = json_object_new_array();
	for (unsigned i = 0; i < n; i++) {
		struct vm t = { .cmd = "list", .name = names[i] };
		store_path(v->root, names[i], NULL, t.dir, sizeof(t.dir));
		double cpu = -1;
		if (ticks[i] >= 0) {
			long long now = vm_cpu_ticks(st[i].pid);
			if (now >= ticks[i] && ncpu > 0 && hz > 0)
				cpu = 100.0 * (double)(now - ticks[i]) / (double)hz / (VM_CPU_SAMPLE_MS / 1000.0) / (double)ncpu;
		}
		json_object *doc = vm_doc_peek(&t);
		bool off = st[i].state == VM_OFF || st[i].state == VM_SAVED;
		long long mem = off ? 0 : vm_doc_memory(doc);
		const char *status = off ? "" : st[i].heartbeat[0] ? st[i].heartbeat
								 : st[i].state == VM_STARTING ? "not answering on its control socket"
												: "";
		if (!doc)
			status = "vm.json is not valid (gen2vm vm show shows why)";
		{
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(names[i]));
			json_object_object_add(o, "state", json_object_new_string(vm_state_name[st[i].state]));
			json_object_object_add(o, "cpu_usage_percent", cpu >= 0 ? json_object_new_double(cpu) : NULL);
			json_object_object_add(o, "cpu_usage_interval_ms",
					       cpu >= 0 ? json_object_new_int(VM_CPU_SAMPLE_MS) : NULL);
			json_object_object_add(o, "assigned_memory_bytes", json_object_new_int64(mem));
			json_object_object_add(o, "uptime_s", st[i].uptime_s >= 0 ? json_object_new_int64(st[i].uptime_s) : NULL);
			json_object_object_add(o, "generation", json_object_new_int(2));
			json_object_object_add(o, "status", json_object_new_string(status));
			json_object_object_add(o, "pid", st[i].pid ? json_object_new_int(st[i].pid) : NULL);
			json_object_array_add(arr, o);
		}
		json_object_put(doc);
		json_object_put(st[i].runtime);
	}
	vm_list_print(arr, json);
	json_object_put(arr);
	return CLI_EXIT_OK;
}

/* vm show's output from its JSON form: the same whether it came from the store or gen2vmd. */
static void vm_show_print(json_object *o, bool json)
{
	if (json) {
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		return;
	}
	json_object *j, *doc = NULL, *rt = NULL, *hb;
	json_object_object_get_ex(o, "config", &doc);
	if (!json_object_is_type(doc, json_type_object))
		doc = NULL;
	json_object_object_get_ex(o, "runtime", &rt);
	const char *name = json_object_object_get_ex(o, "name", &j) ? json_object_get_string(j) : "";
	const char *state = json_object_object_get_ex(o, "state", &j) ? json_object_get_string(j) : "";
	const char *dir = json_object_object_get_ex(o, "directory", &j) ? json_object_get_string(j) : "";
	char up[32], heartbeat[80] = "-";
	vm_uptime_text(rt && json_object_object_get_ex(rt, "uptime_s", &j) ? json_object_get_int64(j) : -1, up, sizeof(up));
	if (rt && json_object_object_get_ex(rt, "heartbeat", &hb) && json_object_object_get_ex(hb, "state", &j))
		snprintf(heartbeat, sizeof(heartbeat), "heartbeat %s", json_object_get_string(j));
	printf("Name:       %s\nState:      %s\nDirectory:  %s\n", text_show(name), text_show(state), text_show(dir));
	if (strcmp(state, "Off") && strcmp(state, "Saved"))
		printf("Uptime:     %s\nStatus:     %s\n", up, text_show(heartbeat));
	printf("Generation: 2\nMemory:     %s\nCPUs:       %d\n",
	       doc && json_object_object_get_ex(doc, "memory", &j) ? json_object_get_string(j) : "512M",
	       doc && json_object_object_get_ex(doc, "cpus", &j) ? json_object_get_int(j) : 1);
	json_object *disks = NULL, *nics = NULL;
	if (doc && json_object_object_get_ex(doc, "disks", &disks) && json_object_is_type(disks, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(disks); i++) {
			struct disk_spec d;
			if (vm_doc_disk(disks, i, &d))
				continue;
			printf("%-11s controller %d, LUN %d: %s%s\n", d.dvd ? "DVD:" : "Disk:", d.controller, d.lun,
			       d.path ? text_show(d.path) : "(empty)", d.readonly ? " (read-only)" : "");
			disk_spec_free(&d);
		}
	}
	if (doc && json_object_object_get_ex(doc, "nics", &nics) && json_object_is_type(nics, json_type_array))
		for (size_t i = 0; i < json_object_array_length(nics); i++)
			printf("NIC %zu:      %s\n", i, json_object_to_json_string_ext(json_object_array_get_idx(nics, i),
										    JSON_C_TO_STRING_PLAIN));
	printf("Document:   %s/%s\n", text_show(dir), STORE_CONFIG);
}

static int vm_show(struct vm *v, const char *store, int argc, char **argv)
{
	bool json = argc == 3 && !strcmp(argv[2], "--json");
	int rc = vm_named(v, store, argc == 2 || json, "usage: gen2vm vm show NAME [--json]", argv);
	if (rc)
		return rc;
	char err[1536];
	json_object *doc;
	int r = store_doc_read(v->dir, &doc, err, sizeof(err));
	if (r)
		return vm_doc_err(v, r, err);
	struct vm_status s;
	vm_status_get(v, &s);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(v->name));
	json_object_object_add(o, "state", json_object_new_string(vm_state_name[s.state]));
	json_object_object_add(o, "directory", json_object_new_string(v->dir));
	json_object_object_add(o, "pid", s.pid ? json_object_new_int(s.pid) : NULL);
	json_object_object_add(o, "config", json_object_get(doc));
	json_object_object_add(o, "runtime", s.runtime ? json_object_get(s.runtime) : NULL);
	vm_show_print(o, json);
	json_object_put(o);
	json_object_put(s.runtime);
	json_object_put(doc);
	return CLI_EXIT_OK;
}

/* ---- start, stop ---- */

/* The lines vm.log got from off on: what gen2vm run said when it failed. */
static void vm_log_tail(const struct vm *v, off_t off, char *out, size_t len)
{
	char p[PATH_MAX];
	vm_file(v, STORE_RUN_LOG, p, sizeof(p));
	out[0] = 0;
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	char buf[4096];
	struct stat st;
	if (!fstat(fd, &st) && st.st_size - off > (off_t)sizeof(buf) - 1)
		off = st.st_size - (off_t)sizeof(buf) + 1;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, off);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	/* The last non-empty line is the error; the ones before it are context already in the log. */
	char *end = buf + n;
	while (end > buf && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = 0;
	char *line = strrchr(buf, '\n');
	const char *last = line ? line + 1 : buf;
	size_t l = strlen(last) < len - 1 ? strlen(last) : len - 1;
	memcpy(out, last, l);
	out[l] = 0;
}

static int vm_start_one(struct vm *v)
{
	char err[1536], p[PATH_MAX];
	json_object *doc;
	int r = store_doc_read(v->dir, &doc, err, sizeof(err));
	if (r)
		return vm_doc_err(v, r, err);
	/* A VM that boots a kernel (or test ELF) directly has no firmware, so no NVRAM: run refuses one. */
	bool firmware = !json_object_object_get_ex(doc, "kernel", NULL) && !json_object_object_get_ex(doc, "elf", NULL);
	json_object_put(doc);
	int lock = vm_run_lock(v);
	if (lock == -EBUSY)
		return vm_code = "VmRunning", vm_err(v, lock, "VM '%s' is already running (gen2vm vm stop %s stops it)", text_show(v->name),
			      text_show(v->name));
	if (lock < 0)
		return vm_err(v, lock, "%s: cannot take its run lock: %s", text_show(v->dir), strerror(-lock));
	bool saved = vm_is_saved(v);
	/* The last run's pid goes now: until the child writes its own, `vm stop --turn-off` must find
	 * none rather than a pid the system may have given to another process. */
	if (ftruncate(lock, 0)) {
		r = -errno;
		close(lock);
		return vm_err(v, r, "%s/%s: %s", text_show(v->dir), STORE_RUN_LOCK, strerror(-r));
	}
	vm_file(v, STORE_RUN_LOG, p, sizeof(p));
	int log = open(p, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (log < 0) {
		close(lock);
		return vm_err(v, -errno, "%s: %s", text_show(p), strerror(errno));
	}
	off_t off = lseek(log, 0, SEEK_END);
	time_t now = time(NULL);
	char stamp[64];
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	dprintf(log, "---- gen2vm vm start %s: %s ----\n", v->name, stamp);
	off = lseek(log, 0, SEEK_END);
	char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (el <= 0) {
		close(log);
		close(lock);
		return vm_err(v, -errno, "cannot find the gen2vm binary (/proc/self/exe): %s", strerror(errno));
	}
	exe[el] = 0;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		close(log);
		close(lock);
		return vm_err(v, r, "fork: %s", strerror(-r));
	}
	if (pid == 0) {
		/* The VM's process: its own session (no terminal's signals reach it), the VM's directory as
		 * its working directory (the runtime paths are relative: a deep store would not fit a Unix
		 * socket path), stdio to vm.log, and the run lock inherited for its whole life. */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (setsid() < 0 || chdir(v->dir) || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(CLI_EXIT_FAILED);
		char pidtxt[32];
		int n = snprintf(pidtxt, sizeof(pidtxt), "%d\n", (int)getpid());
		if (ftruncate(lock, 0) || pwrite(lock, pidtxt, (size_t)n, 0) != n)
			_exit(CLI_EXIT_FAILED);
		signal(SIGPIPE, SIG_DFL);
		/* --restore comes last and only when saved: the options before it are the machine's identity,
		 * the same for the run that saved the state. */
		char *args[] = { "gen2vm", "run", "--config", STORE_CONFIG, "--control", STORE_CONTROL, "--com1",
				 "file:" STORE_CONSOLE_LOG, "--com1-attach", STORE_CONSOLE_SOCK, NULL, NULL, NULL, NULL, NULL };
		int na = 10;
		if (firmware) {
			args[na++] = "--nvram";
			args[na++] = STORE_NVRAM;
		}
		if (saved) {
			args[na++] = "--restore";
			args[na++] = STORE_SAVED;
		}
		execv(exe, args);
		dprintf(2, "gen2vm vm start: cannot run %s: %s\n", exe, strerror(errno));
		_exit(CLI_EXIT_FAILED);
	}
	close(log);
	close(lock);
	for (unsigned waited = 0; waited < VM_START_WAIT_S * 1000; waited += 100) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			char tail[1024];
			vm_log_tail(v, off, tail, sizeof(tail));
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			if (code == CLI_EXIT_OK) {
				printf("VM '%s' started and its guest powered off at once (see %s/%s)\n", text_show(v->name),
				       text_show(v->dir), STORE_CONSOLE_LOG);
				return CLI_EXIT_OK;
			}
			vm_code = "StartFailed";
			fprintf(stderr, "gen2vm vm start: VM '%s' did not %s (exit code %d): %s (the whole log: %s/%s)%s\n",
				text_show(v->name), saved ? "resume from its saved state" : "start", code,
				tail[0] ? tail : "no message", text_show(v->dir), STORE_RUN_LOG,
				saved ? "; it stays saved (gen2vm vm discard-state deletes the state)" : "");
			return code == CLI_EXIT_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
		}
		char reply[CONTROL_REPLY_BUF];
		const char *args[] = { "status" };
		pid_t peer = 0;
		/* Our child's socket, not another process's that listens there (run refuses to replace a
		 * live socket and ends: the loop sees it exit). */
		if (vm_control_peer(v, VM_CONTROL_QUICK_MS, 1, args, reply, sizeof(reply), &peer) == 0 && peer == pid) {
			/* The control socket answers only once the state is loaded: the saved state has served. */
			if (saved) {
				vm_file(v, STORE_SAVED, p, sizeof(p));
				if (unlink(p) < 0 && errno != ENOENT)
					fprintf(stderr, "gen2vm vm start: %s: %s\n", text_show(p), strerror(errno));
			}
			printf("VM '%s' is running%s (pid %d; COM1 in %s/%s)\n", text_show(v->name),
			       saved ? ", resumed from its saved state" : "", (int)pid, text_show(v->dir), STORE_CONSOLE_LOG);
			return CLI_EXIT_OK;
		}
		vm_msleep(100);
	}
	return vm_err(v, -ETIMEDOUT, "VM '%s' (pid %d) did not answer on its control socket within %d s (see %s/%s; "
				     "gen2vm vm stop %s --turn-off ends it)",
		      text_show(v->name), (int)pid, VM_START_WAIT_S, text_show(v->dir), STORE_RUN_LOG, text_show(v->name));
}

/* Waits up to wait_s for the VM's process to end (its run lock to be released). */
static bool vm_wait_off(const struct vm *v, unsigned wait_s)
{
	for (unsigned waited = 0;; waited += 100) {
		if (store_run_lock_held(v->dir) != 1)
			return true;
		if (waited >= wait_s * 1000)
			return false;
		vm_msleep(100);
	}
}

/* Whether pid is a gen2vm process (the pid in the lock file could be stale and reused). */
static bool vm_pid_is_gen2vm(pid_t pid)
{
	char p[64], exe[PATH_MAX];
	snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(p, exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = 0;
	const char *base = strrchr(exe, '/');
	return base && !strncmp(base + 1, "gen2vm", 6);
}

/* Deletes a saved state (Hyper-V's "Delete saved state"), under the run lock: the VM is then Off.
 * Refused while the VM runs. */
static int vm_discard_state(struct vm *v)
{
	int lock = vm_run_lock(v);
	if (lock == -EBUSY)
		return vm_code = "VmRunning", vm_err(v, lock, "VM '%s' is running: it has no saved state to delete",
						     text_show(v->name));
	if (lock < 0)
		return vm_err(v, lock, "%s: cannot take its run lock: %s", text_show(v->dir), strerror(-lock));
	char p[PATH_MAX];
	vm_file(v, STORE_SAVED, p, sizeof(p));
	int r = unlink(p) < 0 ? -errno : 0;
	close(lock);
	if (r == -ENOENT) {
		printf("VM '%s' has no saved state (it is off)\n", text_show(v->name));
		return CLI_EXIT_OK;
	}
	if (r)
		return vm_err(v, r, "%s: %s", text_show(p), strerror(-r));
	printf("VM '%s': its saved state was deleted (it is off)\n", text_show(v->name));
	return CLI_EXIT_OK;
}

/* Stop-VM -Save: the run process writes vm.save (atomically, under its run lock) and ends. */
static int vm_save_one(struct vm *v)
{
	if (store_run_lock_held(v->dir) != 1)
		return vm_code = "VmNotRunning", vm_err(v, -EINVAL, "VM '%s' is not running: there is nothing to save%s",
							text_show(v->name), vm_is_saved(v) ? " (it is saved already)" : "");
	char reply[CONTROL_REPLY_BUF];
	const char *args[] = { "save", STORE_SAVED };
	int r = vm_control(v, VM_CONTROL_SLOW_MS, 2, args, reply, sizeof(reply));
	/* What the VM cannot save (a device without saving) is a refusal of the request, not a failure. */
	if (r == -EIO && (strstr(reply, "not support") || strstr(reply, "cannot be saved")))
		r = -EOPNOTSUPP;
	/* A large VM may take longer to write than a control request waits: the process says how it
	 * went by ending, with the state in place. */
	if ((r == -ETIMEDOUT || r == -ECONNRESET) && vm_wait_off(v, VM_SAVE_WAIT_S) && vm_is_saved(v))
		r = 0;
	if (r)
		return vm_err(v, r, "VM '%s' was not saved: %s", text_show(v->name),
			      r == -EIO || r == -EOPNOTSUPP ? reply : strerror(-r));
	if (!vm_wait_off(v, VM_TURN_OFF_WAIT_S))
		return vm_err(v, -ETIMEDOUT, "VM '%s': its state was saved, but its process did not end within %d s",
			      text_show(v->name), VM_TURN_OFF_WAIT_S);
	printf("VM '%s' saved (%s/%s; gen2vm vm start %s resumes it)\n", text_show(v->name), text_show(v->dir),
	       STORE_SAVED, text_show(v->name));
	return CLI_EXIT_OK;
}

static int vm_stop_one(struct vm *v, bool turn_off, unsigned timeout_s)
{
	if (store_run_lock_held(v->dir) != 1) {
		if (turn_off && vm_is_saved(v))
			return vm_discard_state(v);
		printf("VM '%s' is %s\n", text_show(v->name), vm_is_saved(v) ? "saved (gen2vm vm stop --turn-off, or "
										      "vm discard-state, deletes the saved state)"
									    : "off");
		return CLI_EXIT_OK;
	}
	char reply[CONTROL_REPLY_BUF];
	if (!turn_off) {
		const char *args[] = { "shutdown" };
		int r = vm_control(v, VM_CONTROL_SLOW_MS, 1, args, reply, sizeof(reply));
		if (r)
			return vm_err(v, r == -EIO ? r : -EIO, "VM '%s': the guest was not asked to shut down: %s "
								"(gen2vm vm stop %s --turn-off turns it off)",
				      text_show(v->name), r == -EIO ? reply : strerror(-r), text_show(v->name));
		if (!vm_wait_off(v, timeout_s))
			return vm_err(v, -ETIMEDOUT, "VM '%s': the guest did not shut down within %u s (gen2vm vm stop %s "
						     "--turn-off turns it off)",
				      text_show(v->name), timeout_s, text_show(v->name));
		printf("VM '%s' shut down\n", text_show(v->name));
		return CLI_EXIT_OK;
	}
	const char *args[] = { "stop" };
	int r = vm_control(v, VM_CONTROL_QUICK_MS, 1, args, reply, sizeof(reply));
	if ((!r && vm_wait_off(v, VM_TURN_OFF_WAIT_S))) {
		printf("VM '%s' turned off\n", text_show(v->name));
		return CLI_EXIT_OK;
	}
	/* The last resort: the process does not answer or does not end. The run lock goes with it. */
	pid_t pid = store_run_pid(v->dir);
	if (pid > 0 && vm_pid_is_gen2vm(pid) && !kill(pid, SIGKILL) && vm_wait_off(v, VM_TURN_OFF_WAIT_S)) {
		printf("VM '%s' turned off (its process %d killed: it did not answer on its control socket)\n",
		       text_show(v->name), (int)pid);
		return CLI_EXIT_OK;
	}
	return vm_err(v, -EIO, "VM '%s' could not be turned off: %s (its process: %s)", text_show(v->name),
		      r ? strerror(-r) : "it did not end", pid > 0 ? "see its pid in run.lock" : "unknown");
}

static int vm_stop_opts(struct vm *v, int argc, char **argv, bool *turn_off, bool *save, unsigned *timeout_s)
{
	*turn_off = *save = false;
	*timeout_s = 60;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--turn-off")) {
			*turn_off = true;
		} else if (!strcmp(argv[i], "--save")) {
			*save = true;
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;
			long t = strtol(argv[++i], &end, 10);
			if (!*argv[i] || *end || t < 1 || t > 86400)
				return vm_err(v, -EINVAL, "--timeout '%s': expected seconds from 1 to 86400", text_show(argv[i]));
			*timeout_s = (unsigned)t;
		} else {
			return vm_err(v, -EINVAL, "unknown option '%s' (see gen2vm vm --help)", text_show(argv[i]));
		}
	}
	return 0;
}

static int vm_power(struct vm *v, const char *store, int argc, char **argv)
{
	int rc = vm_named(v, store, argc >= 2, "missing the VM's NAME (see gen2vm vm --help)", argv);
	if (rc)
		return rc;
	if (!strcmp(v->cmd, "start")) {
		if (argc > 2)
			return vm_err(v, -EINVAL, "unexpected argument '%s'", text_show(argv[2]));
		return vm_start_one(v);
	}
	if (!strcmp(v->cmd, "pause") || !strcmp(v->cmd, "resume")) {
		if (argc > 2)
			return vm_err(v, -EINVAL, "unexpected argument '%s'", text_show(argv[2]));
		if (store_run_lock_held(v->dir) != 1)
			return vm_code = "VmNotRunning", vm_err(v, -EINVAL, "VM '%s' is not running (gen2vm vm start %s)", text_show(v->name),
				      text_show(v->name));
		char reply[CONTROL_REPLY_BUF];
		const char *args[] = { v->cmd };
		int r = vm_control(v, VM_CONTROL_SLOW_MS, 1, args, reply, sizeof(reply));
		if (r)
			return vm_err(v, r, "VM '%s': %s", text_show(v->name), r == -EIO ? reply : strerror(-r));
		printf("VM '%s' %s\n", text_show(v->name), !strcmp(v->cmd, "pause") ? "paused" : "resumed");
		return CLI_EXIT_OK;
	}
	if (!strcmp(v->cmd, "discard-state")) {
		if (argc > 2)
			return vm_err(v, -EINVAL, "unexpected argument '%s'", text_show(argv[2]));
		return vm_discard_state(v);
	}
	bool turn_off, save;
	unsigned timeout_s;
	if ((rc = vm_stop_opts(v, argc, argv, &turn_off, &save, &timeout_s)))
		return rc;
	if (save && turn_off)
		return vm_err(v, -EINVAL, "--save and --turn-off: choose one");
	rc = save ? vm_save_one(v) : vm_stop_one(v, turn_off, timeout_s);
	if (rc || strcmp(v->cmd, "restart"))
		return rc;
	return vm_start_one(v);
}

/* ---- remove ---- */

static int vm_remove(struct vm *v, const char *store, int argc, char **argv)
{
	int rc = vm_named(v, store, argc == 2, "usage: gen2vm vm remove NAME", argv);
	if (rc)
		return rc;
	int cl = store_config_lock(v->dir, VM_CONFIG_LOCK_WAIT_MS);
	if (cl < 0)
		return vm_err(v, cl, "VM '%s': %s", text_show(v->name),
			      cl == -EBUSY ? "another gen2vm is changing its configuration (busy; try again)" : strerror(-cl));
	int lock = vm_run_lock(v);
	if (lock < 0) {
		close(cl);
		if (lock == -EBUSY)
			return vm_code = "VmRunning", vm_err(v, lock, "VM '%s' is running: a running VM cannot be removed (stop it first: gen2vm vm "
					       "stop %s)", text_show(v->name), text_show(v->name));
		return vm_err(v, lock, "%s: cannot take its run lock: %s", text_show(v->dir), strerror(-lock));
	}
	/* Only what the store makes, by name: a disk the user added by PATH lives elsewhere (adding one
	 * from inside this directory is refused), and anything else found here is left with the
	 * directory. vm.json goes first: from then on the VM no longer exists, whatever else fails. */
	static const char *const files[] = { STORE_CONFIG, STORE_CONFIG ".tmp", STORE_SAVED, STORE_SAVED ".tmp",
					     STORE_NVRAM, STORE_NVRAM ".tmp",
					     STORE_NVRAM ".lock", STORE_CONSOLE_LOG, STORE_RUN_LOG, STORE_CONTROL,
					     STORE_CONSOLE_SOCK, STORE_VNC_SOCK };
	char p[PATH_MAX];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		vm_file(v, files[i], p, sizeof(p));
		if (unlink(p) && errno != ENOENT) {
			int r = -errno;
			close(cl);
			close(lock);
			return vm_err(v, r, "%s: cannot remove it: %s", text_show(p), strerror(-r));
		}
	}
	DIR *d = opendir(v->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!vm_store_disk_name(e->d_name))
				continue;
			vm_file(v, e->d_name, p, sizeof(p));
			unlink(p);
		}
		closedir(d);
	}
	vm_file(v, STORE_CONFIG_LOCK, p, sizeof(p));
	unlink(p);
	vm_file(v, STORE_RUN_LOCK, p, sizeof(p));
	unlink(p);
	close(cl);
	close(lock);
	if (rmdir(v->dir)) {
		printf("VM '%s' removed; %s kept: it holds files the store did not make\n", text_show(v->name),
		       text_show(v->dir));
		return CLI_EXIT_OK;
	}
	printf("VM '%s' removed\n", text_show(v->name));
	return CLI_EXIT_OK;
}

/* ---- set and the devices ---- */

static int vm_set(struct vm *v, const char *store, int argc, char **argv)
{
	int rc = vm_named(v, store, argc >= 2, "missing the VM's NAME (see gen2vm vm --help)", argv);
	if (rc)
		return rc;
	const char *memory = NULL, *cpus = NULL, *video = NULL, *ics = NULL, *compat = NULL, *console = NULL,
		   *vnc = NULL, *web = NULL, *pwfile = NULL;
	static const char opt_list[] = "--memory, --cpus, --video, --integration-services, --processor-compatibility, "
				       "--console, --vnc, --web-console or --vnc-password-file";
	for (int i = 2; i < argc; i++) {
		static const char *const names[] = { "--memory", "--cpus", "--video", "--integration-services",
						     "--processor-compatibility", "--console", "--vnc", "--web-console",
						     "--vnc-password-file" };
		const char **vals[] = { &memory, &cpus, &video, &ics, &compat, &console, &vnc, &web, &pwfile };
		const char **dst = NULL;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (!strcmp(argv[i], names[k]))
				dst = vals[k];
		if (!dst)
			return vm_err(v, -EINVAL, "unknown option '%s' (%s)", text_show(argv[i]), opt_list);
		if (i + 1 >= argc)
			return vm_err(v, -EINVAL, "option '%s' needs a value", argv[i]);
		*dst = argv[++i];
	}
	if (!memory && !cpus && !video && !ics && !compat && !console && !vnc && !web && !pwfile)
		return vm_err(v, -EINVAL, "nothing to set: give %s", opt_list);
	if (compat && strcmp(compat, "on") && strcmp(compat, "off"))
		return vm_err(v, -EINVAL, "--processor-compatibility '%s': expected on or off", text_show(compat));
	if (console && strcmp(console, "on") && strcmp(console, "off"))
		return vm_err(v, -EINVAL, "--console '%s': expected on (a VNC socket in the VM's directory) or off",
			      text_show(console));
	if (console && !strcmp(console, "off") && ((vnc && strcmp(vnc, "off")) || (web && strcmp(web, "off"))))
		return vm_err(v, -EINVAL, "--console off takes the VNC server and the web console away: drop --vnc and "
					  "--web-console");
	/* A password file is kept by its absolute path: the VM reads it from its own directory. */
	char pwabs[PATH_MAX];
	if (pwfile && strcmp(pwfile, "off")) {
		char why[200];
		int fd = file_open_user(pwfile, O_RDONLY, 0, FILE_REG, why, sizeof(why));
		if (fd < 0)
			return vm_err(v, fd, "--vnc-password-file %s: %s", text_show(pwfile), why);
		close(fd);
		if (!realpath(pwfile, pwabs))
			return vm_err(v, -errno, "--vnc-password-file %s: %s", text_show(pwfile), strerror(errno));
		pwfile = pwabs;
	}
	/* The values are checked by gen2vm run's parsers, before anything is locked or read. */
	char *rargv[24] = { "run" };
	int ra = 1;
	if (memory)
		rargv[ra++] = "--memory", rargv[ra++] = (char *)memory;
	if (cpus)
		rargv[ra++] = "--cpus", rargv[ra++] = (char *)cpus;
	if (video)
		rargv[ra++] = "--video", rargv[ra++] = (char *)video;
	if (ics)
		rargv[ra++] = "--integration-services", rargv[ra++] = (char *)ics;
	if (vnc && strcmp(vnc, "off"))
		rargv[ra++] = "--vnc", rargv[ra++] = (char *)vnc;
	if (web && strcmp(web, "off"))
		rargv[ra++] = "--web-console", rargv[ra++] = (char *)web;
	if ((vnc && strcmp(vnc, "off")) || (web && strcmp(web, "off")))
		rargv[ra++] = "--synthetic-console";
	if (pwfile && strcmp(pwfile, "off"))
		rargv[ra++] = "--vnc-password-file", rargv[ra++] = (char *)pwfile;
	struct run_config rcfg;
	char err[2048];
	int r = run_config_parse(&rcfg, ra, rargv, err, sizeof(err));
	run_config_free(&rcfg);
	if (r)
		return vm_err(v, r, "%s", err);
	struct vm_change c;
	const char *what = memory ? "its memory" : cpus ? "its number of virtual processors"
				 : video ? "its video resolution" : ics ? "its integration services"
				 : compat ? "its processor compatibility" : "its console";
	if ((rc = vm_change_begin(v, &c, false, NULL, what)))
		return rc;
	if (memory)
		json_object_object_add(c.doc, "memory", json_object_new_string(memory));
	if (cpus)
		json_object_object_add(c.doc, "cpus", json_object_new_int(atoi(cpus)));
	if (video)
		json_object_object_add(c.doc, "video", json_object_new_string(video));
	if (compat)
		json_object_object_add(c.doc, "processor_compatibility", json_object_new_boolean(!strcmp(compat, "on")));
	if (ics) {
		/* The document keeps the list as an array of the names given (the option's commas). */
		json_object *a = json_object_new_array();
		char *copy = strdup(ics), *save = NULL;
		for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
			json_object_array_add(a, json_object_new_string(t));
		free(copy);
		json_object_object_add(c.doc, "integration_services", a);
	}
	/* The console: the synthetic devices with a VNC server (its socket in the VM's directory unless
	 * --vnc says where), the run config's own keys. */
	if (console && !strcmp(console, "off")) {
		static const char *const keys[] = { "synthetic_console", "vnc", "web_console", "vnc_password_file" };
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			json_object_object_del(c.doc, keys[k]);
	}
	if (console && !strcmp(console, "on") && !vnc && !json_object_object_get_ex(c.doc, "vnc", NULL))
		json_object_object_add(c.doc, "vnc", json_object_new_string("unix:" STORE_VNC_SOCK));
	const char *const keyed[][2] = { { "vnc", vnc }, { "web_console", web }, { "vnc_password_file", pwfile } };
	for (size_t k = 0; k < sizeof(keyed) / sizeof(keyed[0]); k++) {
		if (!keyed[k][1])
			continue;
		if (!strcmp(keyed[k][1], "off"))
			json_object_object_del(c.doc, keyed[k][0]);
		else
			json_object_object_add(c.doc, keyed[k][0], json_object_new_string(keyed[k][1]));
	}
	if ((console && !strcmp(console, "on")) || (vnc && strcmp(vnc, "off")) || (web && strcmp(web, "off")))
		json_object_object_add(c.doc, "synthetic_console", json_object_new_boolean(true));
	rc = vm_change_end(v, &c, true);
	if (!rc)
		printf("VM '%s' changed\n", text_show(v->name));
	return rc;
}

/* "lun=N[,controller=C]" into *lun and *ctl. */
static int vm_parse_slot(const char *s, int *lun, int *ctl)
{
	char *copy = strdup(s), *save = NULL;
	int r = copy ? 0 : -ENOMEM;
	*lun = -1;
	*ctl = 0;
	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !r; t = strtok_r(NULL, ",", &save)) {
		char *end;
		long n;
		if (!strncmp(t, "lun=", 4) && (n = strtol(t + 4, &end, 10), t[4] && !*end && n >= 0 && n <= 63))
			*lun = (int)n;
		else if (!strncmp(t, "controller=", 11) && (n = strtol(t + 11, &end, 10), t[11] && !*end && n >= 0 && n <= 3))
			*ctl = (int)n;
		else
			r = -EINVAL;
	}
	free(copy);
	return r ? r : *lun < 0 ? -EINVAL : 0;
}

/* The index of the drive at (ctl, lun), or by path, of the kind dvd; -1 when there is none. */
static int vm_doc_find_drive(json_object *disks, bool dvd, int ctl, int lun, const char *path)
{
	char abs[PATH_MAX];
	if (path && !realpath(path, abs))
		snprintf(abs, sizeof(abs), "%s", path);
	for (size_t i = 0; i < json_object_array_length(disks); i++) {
		struct disk_spec d;
		if (vm_doc_disk(disks, i, &d))
			continue;
		bool hit = d.dvd == dvd && (path ? d.path && (!strcmp(d.path, abs) || !strcmp(d.path, path))
						 : d.controller == ctl && d.lun == lun);
		disk_spec_free(&d);
		if (hit)
			return (int)i;
	}
	return -1;
}

/* A change the running VM was asked for and did not make: its reply (r == -EIO) or why it did not
 * answer. Returns the exit code (the error printed). */
static int vm_hot_err(const struct vm *v, int r, const char *reply)
{
	if (r == -EIO)
		return vm_err(v, -EINVAL, "VM '%s' (running): %s", text_show(v->name), reply);
	return vm_err(v, -EBUSY, "VM '%s' runs but its control socket does not answer (%s): try again once it has "
				 "started, or stop it first (gen2vm vm stop %s)",
		      text_show(v->name), strerror(-r), text_show(v->name));
}

static int vm_hot(const struct vm *v, int argc, const char *const *args)
{
	char reply[CONTROL_REPLY_BUF];
	int r = vm_control(v, VM_CONTROL_SLOW_MS, argc, args, reply, sizeof(reply));
	return r ? vm_hot_err(v, r, reply) : 0;
}

/* Hot removal of the document's adapter entry (index idx) from the running VM. The VM numbers its
 * adapters by slot, which the document's order does not follow once adapters came and went (a new
 * one takes the lowest free slot): the slot is found in its nic-list by the entry's backend (tap
 * NAME or pair ID) and MAC when the entry names one. Returns 0 or an exit code (the error printed). */
static int vm_nic_remove_hot(const struct vm *v, json_object *entry, int idx)
{
	char err[256], reply[CONTROL_REPLY_BUF];
	struct nic_config want;
	if (nic_config_from_json(entry, &want, err, sizeof(err)))
		return vm_err(v, -EINVAL, "VM '%s': its network adapter %d is not valid: %s", text_show(v->name), idx, err);
	const char *list[] = { "nic-list" };
	int r = vm_control(v, VM_CONTROL_QUICK_MS, 1, list, reply, sizeof(reply));
	if (r)
		return vm_hot_err(v, r, reply);
	const char *kind = want.kind == NIC_TAP ? "tap" : "pair";
	int found = -1, matches = 0;
	/* "0: tap=NAME mac=02:..:.. link=up ...; 2: pair=ID mac=..." */
	for (char *save = NULL, *e = strtok_r(reply, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
		unsigned slot;
		char backend[80], mac[24];
		if (sscanf(e, " %u: %79s mac=%23s", &slot, backend, mac) != 3)
			continue;
		char be[80];
		snprintf(be, sizeof(be), "%s=%s", kind, want.name);
		if (strcmp(backend, be))
			continue;
		if (want.has_mac) {
			char m[24];
			snprintf(m, sizeof(m), "%02x:%02x:%02x:%02x:%02x:%02x", want.mac[0], want.mac[1], want.mac[2],
				 want.mac[3], want.mac[4], want.mac[5]);
			if (strcasecmp(m, mac))
				continue;
		}
		found = (int)slot;
		matches++;
	}
	if (matches != 1)
		return vm_err(v, -EINVAL, matches ? "VM '%s' (running): several of its adapters use %s=%s and the document "
						    "does not say which is %d (no mac=): stop the VM to remove it"
						  : "VM '%s' (running) has no adapter on %s=%s (adapter %d of its document): "
						    "stop the VM to remove it from the document",
			      text_show(v->name), kind, text_show(want.name), idx);
	char slot[16];
	snprintf(slot, sizeof(slot), "%d", found);
	const char *args[] = { "nic-remove", slot };
	return vm_hot(v, 2, args);
}

static int vm_devices(struct vm *v, const char *store, int argc, char **argv)
{
	const char *cmd = v->cmd;
	bool legacy = false;
	int na = 0;
	char *pos[3];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--legacy") && !strcmp(cmd, "add-nic"))
			legacy = true;
		else if (na < 3)
			pos[na++] = argv[i];
		else
			return vm_err(v, -EINVAL, "unexpected argument '%s'", text_show(argv[i]));
	}
	if (legacy)
		return vm_err(v, -EOPNOTSUPP, "a legacy network adapter is not supported in a generation 2 virtual machine "
					      "(drop --legacy: the synthetic adapter is what generation 2 guests use)");
	bool set_dvd = !strcmp(cmd, "set-dvd");
	if (na < 2 || na > (set_dvd ? 3 : 2))
		return vm_err(v, -EINVAL, "usage: see gen2vm vm --help (%s NAME ...)", cmd);
	int rc = vm_resolve(v, store, pos[0], true);
	if (rc)
		return rc;
	const char *arg = pos[1];
	bool nic = strstr(cmd, "nic") != NULL, add = !strncmp(cmd, "add-", 4), dvd = strstr(cmd, "dvd") != NULL;
	bool hot_ok = strcmp(cmd, "remove-dvd");
	struct vm_change c;
	bool running;
	const char *what = nic ? "its network adapters" : "its drives";
	if ((rc = vm_change_begin(v, &c, hot_ok, &running, what)))
		return rc;
	char err[1024];
	if (nic) {
		json_object *nics = vm_doc_array(c.doc, "nics");
		if (add) {
			char *rargv[] = { "run", "--nic", (char *)arg, NULL };
			struct run_config rcfg;
			int r = run_config_parse(&rcfg, 3, rargv, err, sizeof(err));
			run_config_free(&rcfg);
			if (r) {
				vm_change_end(v, &c, false);
				return vm_err(v, r, "%s", err);
			}
			const char *args[] = { "nic-add", arg };
			if (running && (rc = vm_hot(v, 2, args))) {
				vm_change_end(v, &c, false);
				return rc;
			}
			json_object_array_add(nics, json_object_new_string(arg));
		} else {
			char *end;
			long i = strtol(arg, &end, 10);
			size_t have = json_object_array_length(nics);
			if (!*arg || *end || i < 0 || (size_t)i >= have) {
				vm_change_end(v, &c, false);
				return vm_err(v, -EINVAL, "VM '%s' has no network adapter %s (it has %zu; gen2vm vm show %s lists them)",
					      text_show(v->name), text_show(arg), have, text_show(v->name));
			}
			if (running && (rc = vm_nic_remove_hot(v, json_object_array_get_idx(nics, (size_t)i), (int)i))) {
				vm_change_end(v, &c, false);
				return rc;
			}
			json_object_array_del_idx(nics, (size_t)i, 1);
		}
		return vm_change_end(v, &c, true);
	}
	json_object *disks = vm_doc_array(c.doc, "disks");
	if (add) {
		char created[PATH_MAX];
		json_object *e;
		if ((rc = vm_drive_make(v, disks, arg, dvd, created, sizeof(created), &e))) {
			vm_change_end(v, &c, false);
			return rc;
		}
		if (running) {
			struct disk_spec d;
			disk_spec_from_json(e, &d, err, sizeof(err));
			char lun[16], ctl[24];
			snprintf(lun, sizeof(lun), "lun=%d", d.lun);
			snprintf(ctl, sizeof(ctl), "controller=%d", d.controller);
			const char *args[] = { dvd ? "dvd-add" : "disk-add", d.path ? d.path : "empty", lun, ctl,
					       d.readonly ? "readonly" : NULL };
			rc = vm_hot(v, d.readonly ? 5 : 4, args);
			disk_spec_free(&d);
			if (rc) {
				json_object_put(e);
				if (created[0])
					unlink(created);
				vm_change_end(v, &c, false);
				return rc;
			}
		}
		json_object_array_add(disks, e);
		rc = vm_change_end(v, &c, true);
		if (rc && created[0])
			unlink(created);
		return rc;
	}
	int lun = -1, ctl = 0, idx;
	const char *media = set_dvd ? arg : NULL;
	const char *slot = set_dvd ? (na == 3 ? pos[2] : NULL) : arg;
	if (slot && !strncmp(slot, "lun=", 4)) {
		if (vm_parse_slot(slot, &lun, &ctl)) {
			vm_change_end(v, &c, false);
			return vm_err(v, -EINVAL, "'%s': expected lun=N[,controller=C] (N 0..63, C 0..3)", text_show(slot));
		}
		idx = vm_doc_find_drive(disks, dvd, ctl, lun, NULL);
	} else if (slot) {
		idx = vm_doc_find_drive(disks, dvd, 0, 0, slot);
	} else {
		/* set-dvd without a slot: the VM's one DVD drive. */
		idx = -1;
		for (size_t i = 0; i < json_object_array_length(disks); i++) {
			struct disk_spec d;
			if (vm_doc_disk(disks, i, &d))
				continue;
			if (d.dvd) {
				if (idx >= 0) {
					disk_spec_free(&d);
					vm_change_end(v, &c, false);
					return vm_err(v, -EINVAL, "VM '%s' has several DVD drives: say which with lun=N[,controller=C]",
						      text_show(v->name));
				}
				idx = (int)i;
			}
			disk_spec_free(&d);
		}
	}
	if (idx < 0) {
		vm_change_end(v, &c, false);
		return vm_err(v, -ENOENT, "VM '%s' has no such %s (gen2vm vm show %s lists them)", text_show(v->name),
			      dvd ? "DVD drive" : "disk", text_show(v->name));
	}
	struct disk_spec d;
	if (vm_doc_disk(disks, (size_t)idx, &d)) {
		vm_change_end(v, &c, false);
		return vm_err(v, -EINVAL, "VM '%s': its drive %d is not valid", text_show(v->name), idx);
	}
	char lunt[16], ctlt[24];
	snprintf(lunt, sizeof(lunt), "lun=%d", d.lun);
	snprintf(ctlt, sizeof(ctlt), "controller=%d", d.controller);
	if (set_dvd) {
		char abs[PATH_MAX];
		free(d.path);
		d.path = NULL;
		if (strcmp(media, "empty")) {
			char why[200];
			int fd = file_open_user(media, O_RDONLY, 0, FILE_REG | FILE_BLK, why, sizeof(why));
			if (fd < 0 || !realpath(media, abs)) {
				disk_spec_free(&d);
				vm_change_end(v, &c, false);
				return vm_err(v, fd < 0 ? fd : -errno, "%s: %s", text_show(media), fd < 0 ? why : strerror(errno));
			}
			close(fd);
			d.path = strdup(abs);
		}
		if (running) {
			const char *ins[] = { "dvd-insert", d.path ? d.path : "", lunt, ctlt };
			const char *ej[] = { "dvd-eject", lunt, ctlt };
			if ((rc = d.path ? vm_hot(v, 4, ins) : vm_hot(v, 3, ej))) {
				disk_spec_free(&d);
				vm_change_end(v, &c, false);
				return rc;
			}
		}
		json_object_array_put_idx(disks, (size_t)idx, vm_disk_json(&d));
	} else {
		if (running) {
			const char *args[] = { "disk-remove", lunt, ctlt };
			if ((rc = vm_hot(v, 3, args))) {
				disk_spec_free(&d);
				vm_change_end(v, &c, false);
				return rc;
			}
		}
		json_object_array_del_idx(disks, (size_t)idx, 1);
		/* A disk the store made stays in the VM's directory until vm remove: removing a drive is
		 * not deleting its data (as Remove-VMHardDiskDrive keeps the VHDX). */
	}
	disk_spec_free(&d);
	return vm_change_end(v, &c, true);
}

/* ---- firmware, console ---- */

static int vm_firmware(struct vm *v, const char *store, int argc, char **argv)
{
	int rc = vm_named(v, store, argc >= 3, "usage: gen2vm vm firmware NAME show|set|reset [OPTIONS]", argv);
	if (rc)
		return rc;
	for (int i = 3; i < argc; i++)
		if (!strncmp(argv[i], "--nvram", 7))
			return vm_err(v, -EINVAL, "--nvram: the VM's own nvram.bin is used");
	char nv[PATH_MAX];
	vm_file(v, STORE_NVRAM, nv, sizeof(nv));
	char *fargv[64];
	int n = 0;
	fargv[n++] = "firmware";
	fargv[n++] = argv[2];
	fargv[n++] = "--nvram";
	fargv[n++] = nv;
	for (int i = 3; i < argc && n < 63; i++)
		fargv[n++] = argv[i];
	fargv[n] = NULL;
	return cli_firmware_main(n, fargv);
}

static volatile sig_atomic_t vm_console_quit;
static void vm_console_signal(int sig)
{
	vm_console_quit = sig;
}

/* --follow: COM1's output as console.log has it, followed while the VM runs (read-only). */
static int vm_console_follow(struct vm *v)
{
	char p[PATH_MAX];
	vm_file(v, STORE_CONSOLE_LOG, p, sizeof(p));
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno != ENOENT)
		return vm_err(v, -errno, "%s: %s", text_show(p), strerror(errno));
	signal(SIGINT, vm_console_signal);
	char buf[65536];
	for (;;) {
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : 0;
		if (n > 0) {
			if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
				break;
			continue;
		}
		fflush(stdout);
		if (vm_console_quit || store_run_lock_held(v->dir) != 1)
			break;
		vm_msleep(200);
		if (fd < 0)
			fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	}
	fflush(stdout);
	if (fd >= 0)
		close(fd);
	return CLI_EXIT_OK;
}

/* Writes all of data to fd (a terminal or pipe that may take it in parts). */
static bool vm_write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		data += w;
		len -= (size_t)w;
	}
	return true;
}

#define VM_CONSOLE_ESCAPE 0x1d /* Ctrl-], as telnet and virsh console */

/* Attached to the running VM's COM1 through its console socket: the terminal in raw mode (when
 * stdin is one) so every key goes to the guest, until Ctrl-] or the VM's end. */
static int vm_console_attach(struct vm *v)
{
	if (store_run_lock_held(v->dir) != 1)
		return vm_code = "VmNotRunning",
		       vm_err(v, -EINVAL, "VM '%s' is not running: there is no console to attach to (gen2vm vm start %s; "
					  "gen2vm vm console %s --follow prints its last COM1 output)",
			      text_show(v->name), text_show(v->name), text_show(v->name));
	int fd = vm_socket_connect(v, STORE_CONSOLE_SOCK);
	if (fd < 0)
		return vm_err(v, fd == -ECONNREFUSED ? -ENOENT : fd,
			      "VM '%s' offers no console to attach to (%s: %s; it is starting, or was started by a gen2vm "
			      "without console sockets): gen2vm vm console %s --follow shows its output",
			      text_show(v->name), STORE_CONSOLE_SOCK, strerror(-fd), text_show(v->name));
	struct termios saved;
	bool tty = isatty(STDIN_FILENO) && !tcgetattr(STDIN_FILENO, &saved);
	fprintf(stderr, "Connected to VM '%s' (COM1). Escape character is ^] (Ctrl-]).\n", text_show(v->name));
	if (tty) {
		struct termios raw = saved;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
	}
	/* No SA_RESTART: the signal ends the poll below and the terminal is restored. */
	struct sigaction sa = { .sa_handler = vm_console_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	bool in_open = true, detached = false, ended = false;
	char buf[16384];
	while (!vm_console_quit && !detached && !ended) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { in_open ? STDIN_FILENO : -1, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				ended = true;
				break;
			}
			if (!vm_write_all(STDOUT_FILENO, buf, (size_t)n))
				break; /* nowhere to show it */
		}
		if (p[1].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				in_open = false; /* a pipe that ended: keep showing the output */
				continue;
			}
			char *esc = memchr(buf, VM_CONSOLE_ESCAPE, (size_t)n);
			size_t k = esc ? (size_t)(esc - buf) : (size_t)n;
			if (k && send(fd, buf, k, MSG_NOSIGNAL) != (ssize_t)k) {
				ended = true;
				break;
			}
			detached = esc != NULL;
		}
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	close(fd);
	if (ended)
		fprintf(stderr, "\nVM '%s' closed its console (it stopped)\n", text_show(v->name));
	else
		fprintf(stderr, "\nDetached from VM '%s' (COM1)\n", text_show(v->name));
	return CLI_EXIT_OK;
}

static int vm_console(struct vm *v, const char *store, int argc, char **argv)
{
	bool follow = false;
	const char *name = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--follow") || !strcmp(argv[i], "--read-only"))
			follow = true;
		else if (!name && argv[i][0] != '-')
			name = argv[i];
		else
			return vm_err(v, -EINVAL, "usage: gen2vm vm console NAME [--follow]");
	}
	if (!name)
		return vm_err(v, -EINVAL, "usage: gen2vm vm console NAME [--follow]");
	int rc = vm_resolve(v, store, name, true);
	if (rc)
		return rc;
	return follow ? vm_console_follow(v) : vm_console_attach(v);
}

/* `vm connect`: where the running VM's graphical console is, as its control socket's vnc verb says,
 * with a socket path made absolute (the VM runs in its directory). */
static int vm_connect(struct vm *v, const char *store, int argc, char **argv)
{
	int rc = vm_named(v, store, argc == 2 && argv[1][0] != '-', "usage: gen2vm vm connect NAME", argv);
	if (rc)
		return rc;
	char err[1536];
	json_object *doc, *j;
	int r = store_doc_read(v->dir, &doc, err, sizeof(err));
	if (r)
		return vm_doc_err(v, r, err);
	bool has = json_object_object_get_ex(doc, "vnc", &j) || json_object_object_get_ex(doc, "web_console", &j);
	json_object_put(doc);
	if (!has)
		return vm_err(v, -EINVAL, "VM '%s' has no graphical console: gen2vm vm set %s --console on gives it one "
					  "(a VNC socket in its directory; --vnc HOST:PORT or --web-console HOST:PORT for TCP)",
			      text_show(v->name), text_show(v->name));
	if (store_run_lock_held(v->dir) != 1)
		return vm_code = "VmNotRunning",
		       vm_err(v, -EINVAL, "VM '%s' is not running: its console exists once it runs (gen2vm vm start %s)",
			      text_show(v->name), text_show(v->name));
	char reply[CONTROL_REPLY_BUF];
	const char *args[] = { "vnc" };
	r = vm_control(v, VM_CONTROL_QUICK_MS, 1, args, reply, sizeof(reply));
	if (r == -EIO)
		return vm_err(v, r, "VM '%s' runs without its console (%s): it was started before the console was set; "
				    "gen2vm vm restart %s", text_show(v->name), reply, text_show(v->name));
	if (r)
		return vm_err(v, -EBUSY, "VM '%s' does not answer on its control socket (%s): try again once it has started",
			      text_show(v->name), strerror(-r));
	/* "listening on WHERE[ (WebSocket port N)]; web console URL; N viewers connected..." */
	const char *on = strstr(reply, "listening on ");
	const char *web = strstr(reply, "; web console ");
	if (on) {
		on += strlen("listening on ");
		size_t n = strcspn(on, " ;");
		if (n && strncmp(on, "-", n)) {
			if (!strncmp(on, "unix:", 5) && on[5] != '/')
				printf("VNC: unix:%s/%.*s\n", text_show(v->dir), (int)(n - 5), on + 5);
			else
				printf("VNC: %.*s\n", (int)n, on);
		}
	}
	if (web) {
		web += strlen("; web console ");
		printf("Web console: %.*s\n", (int)strcspn(web, " ;"), web);
	}
	if (!on && !web)
		return vm_err(v, -EIO, "VM '%s': its control socket's vnc answer was not understood: %s", text_show(v->name),
			      reply);
	return CLI_EXIT_OK;
}

static int vm_main_direct(int argc, char **argv)
{
	/* --store DIR anywhere before the verb's own arguments end. */
	const char *store = NULL;
	char *args[512];
	int n = 0;
	for (int i = 0; i < argc && n < 511; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc) {
			store = argv[++i];
		} else if (!strncmp(argv[i], "--store=", 8)) {
			store = argv[i] + 8;
		} else if (!strcmp(argv[i], "--store")) {
			fprintf(stderr, "gen2vm vm: option '--store' needs a DIR\n");
			return CLI_EXIT_USAGE;
		} else {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;
	if (n < 2 || !strcmp(args[1], "--help") || !strcmp(args[1], "-h") || !strcmp(args[1], "help")) {
		fputs(vm_usage, n < 2 ? stderr : stdout);
		return n < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	struct vm v = { .cmd = args[1] };
	const char *cmd = args[1];
	int vc = n - 1;
	char **va = args + 1;
	if (!strcmp(cmd, "new"))
		return vm_new(&v, store, vc, va);
	if (!strcmp(cmd, "list"))
		return vm_list(&v, store, vc, va);
	if (!strcmp(cmd, "show"))
		return vm_show(&v, store, vc, va);
	if (!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart") || !strcmp(cmd, "pause") ||
	    !strcmp(cmd, "resume") || !strcmp(cmd, "discard-state"))
		return vm_power(&v, store, vc, va);
	if (!strcmp(cmd, "remove"))
		return vm_remove(&v, store, vc, va);
	if (!strcmp(cmd, "set"))
		return vm_set(&v, store, vc, va);
	if (!strcmp(cmd, "add-disk") || !strcmp(cmd, "remove-disk") || !strcmp(cmd, "add-dvd") ||
	    !strcmp(cmd, "set-dvd") || !strcmp(cmd, "remove-dvd") || !strcmp(cmd, "add-nic") ||
	    !strcmp(cmd, "remove-nic"))
		return vm_devices(&v, store, vc, va);
	if (!strcmp(cmd, "firmware"))
		return vm_firmware(&v, store, vc, va);
	if (!strcmp(cmd, "console"))
		return vm_console(&v, store, vc, va);
	if (!strcmp(cmd, "connect"))
		return vm_connect(&v, store, vc, va);
	fprintf(stderr, "gen2vm vm: unknown command '%s' (see gen2vm vm --help)\n", text_show(cmd));
	return CLI_EXIT_USAGE;
}

/* ---- through gen2vmd ---- */

/* A path the user gave, absolute: the service runs the verb from its own directory. "new:SIZE",
 * "empty" and "lun=..." are not paths. Only the part before the first comma is the path. */
static void vm_abs_arg(const char *arg, char *out, size_t len)
{
	char cwd[PATH_MAX];
	if (arg[0] == '/' || !strncmp(arg, "new:", 4) || !strcmp(arg, "empty") || !strncmp(arg, "lun=", 4) ||
	    !getcwd(cwd, sizeof(cwd)) || snprintf(out, len, "%s/%s", cwd, arg) >= (int)len)
		snprintf(out, len, "%s", arg);
}

static json_object *vm_api_str(const char *s)
{
	return json_object_new_string(s);
}

/* The verb through the service's API when it answers on <root>/gen2vmd.sock: the same operation, run
 * by the same code (the service runs `gen2vm vm` itself), with the same output and exit code.
 * Returns -1 when the verb is to run here: no service, GEN2VM_DIRECT set, a verb the API does not
 * carry (firmware, console, help), or arguments of a shape only the verb's own parser answers
 * (their usage error changes nothing). */
static int vm_via_service(const char *store, int n, char **a)
{
	if (getenv(SERVICE_ENV_DIRECT) || n < 2)
		return -1;
	const char *cmd = a[1], *name = n > 2 ? a[2] : NULL;
	char root[2048], sock[2200], err[512], path[256], abs[PATH_MAX], abs2[PATH_MAX];
	if (store_root_resolve(store, root, sizeof(root), err, sizeof(err)))
		return -1;
	snprintf(sock, sizeof(sock), "%s/%s", root, SERVICE_SOCKET);
	struct stat st;
	if (stat(sock, &st) || !S_ISSOCK(st.st_mode))
		return -1;
	if (name && (name[0] == '-' || strlen(name) > STORE_NAME_MAX || store_name_check(name, err, sizeof(err))))
		return -1;
	const char *method = NULL;
	json_object *body = NULL;
	unsigned timeout_ms = 120000;
	bool list = !strcmp(cmd, "list"), show = !strcmp(cmd, "show"), json = false;
	if (list) {
		if (n > 3 || (n == 3 && strcmp(a[2], "--json")))
			return -1;
		json = n == 3;
		method = "GET";
		snprintf(path, sizeof(path), "/v1/vms");
	} else if (!name) {
		return -1;
	} else if (show) {
		if (n > 4 || (n == 4 && strcmp(a[3], "--json")))
			return -1;
		json = n == 4;
		method = "GET";
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
	} else if (!strcmp(cmd, "remove") || !strcmp(cmd, "start") || !strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		if (n != 3)
			return -1;
		method = cmd[0] == 'r' && cmd[2] == 'm' ? "DELETE" : "POST";
		snprintf(path, sizeof(path), cmd[0] == 'r' && cmd[2] == 'm' ? "/v1/vms/%s" : "/v1/vms/%s/%s", name, cmd);
		timeout_ms = (VM_START_WAIT_S + 60) * 1000;
	} else if (!strcmp(cmd, "stop") || !strcmp(cmd, "restart")) {
		bool turn_off = false;
		long t = 60;
		body = json_object_new_object();
		for (int i = 3; i < n; i++) {
			if (!strcmp(a[i], "--turn-off")) {
				turn_off = true;
			} else if (!strcmp(a[i], "--save")) {
				json_object_object_add(body, "save", json_object_new_boolean(true));
			} else if (!strcmp(a[i], "--timeout") && i + 1 < n) {
				char *end;
				t = strtol(a[++i], &end, 10);
				if (!*a[i] || *end || t < 1 || t > 86400) {
					json_object_put(body);
					return -1;
				}
				json_object_object_add(body, "timeout", json_object_new_int((int)t));
			} else {
				json_object_put(body);
				return -1;
			}
		}
		method = "POST";
		if (!strcmp(cmd, "stop")) {
			snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, turn_off ? "terminate" : "shutdown");
		} else {
			snprintf(path, sizeof(path), "/v1/vms/%s/restart", name);
			if (turn_off)
				json_object_object_add(body, "turn_off", json_object_new_boolean(true));
		}
		timeout_ms = (unsigned)(t + VM_TURN_OFF_WAIT_S * 2 + VM_START_WAIT_S + 60) * 1000;
	} else if (!strcmp(cmd, "new")) {
		json_object *opts = json_object_new_array();
		for (int i = 3; i < n; i++) {
			const char *o = a[i];
			bool takes_path = !strcmp(o, "--disk") || !strcmp(o, "--dvd") || !strcmp(o, "--from");
			json_object_array_add(opts, vm_api_str(o));
			if (takes_path && i + 1 < n) {
				vm_abs_arg(a[++i], abs, sizeof(abs));
				json_object_array_add(opts, vm_api_str(abs));
			}
		}
		body = json_object_new_object();
		json_object_object_add(body, "options", opts);
		method = "PUT";
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
	} else if (!strcmp(cmd, "set")) {
		static const char *const opts[][2] = { { "--memory", "memory" }, { "--cpus", "cpus" }, { "--video", "video" },
						       { "--integration-services", "integration_services" },
						       { "--processor-compatibility", "processor_compatibility" },
						       { "--console", "console" }, { "--vnc", "vnc" },
						       { "--web-console", "web_console" },
						       { "--vnc-password-file", "vnc_password_file" } };
		body = json_object_new_object();
		if (n < 5)
			goto direct;
		for (int i = 3; i < n; i += 2) {
			const char *key = NULL;
			for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
				if (!strcmp(a[i], opts[k][0]))
					key = opts[k][1];
			if (!key || i + 1 >= n)
				goto direct;
			if (!strcmp(key, "vnc_password_file") && strcmp(a[i + 1], "off")) {
				vm_abs_arg(a[i + 1], abs, sizeof(abs));
				json_object_object_add(body, key, vm_api_str(abs));
			} else {
				json_object_object_add(body, key, vm_api_str(a[i + 1]));
			}
		}
		method = "PATCH";
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
	} else if (!strcmp(cmd, "add-disk") || !strcmp(cmd, "remove-disk") || !strcmp(cmd, "add-dvd") ||
		   !strcmp(cmd, "set-dvd") || !strcmp(cmd, "remove-dvd") || !strcmp(cmd, "add-nic") ||
		   !strcmp(cmd, "remove-nic")) {
		bool set_dvd = !strcmp(cmd, "set-dvd"), nic = strstr(cmd, "nic") != NULL;
		if (n < 4 || n > (set_dvd ? 5 : 4))
			return -1;
		char key[16];
		snprintf(key, sizeof(key), "%s", cmd);
		key[strcspn(key, "-")] = '_';
		if (nic)
			snprintf(abs, sizeof(abs), "%s", a[3]);
		else
			vm_abs_arg(a[3], abs, sizeof(abs));
		body = json_object_new_object();
		json_object_object_add(body, key, vm_api_str(abs));
		if (n == 5) {
			vm_abs_arg(a[4], abs2, sizeof(abs2));
			json_object_object_add(body, "slot", vm_api_str(abs2));
		}
		method = "PATCH";
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
		timeout_ms = (VM_CONTROL_SLOW_MS + 60000);
	} else {
		return -1;
	}
	int status;
	char *resp;
	const char *text = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
	int r = client_request(sock, method, path, text, timeout_ms, &status, &resp);
	json_object_put(body);
	if (r == -ECONNREFUSED || r == -ENOENT)
		return -1; /* a socket left by a service that is gone: the store itself */
	if (r) {
		fprintf(stderr, "gen2vm vm %s: the service (%s) did not answer: %s\n", cmd, text_show(sock), strerror(-r));
		return CLI_EXIT_FAILED;
	}
	json_object *o = json_tokener_parse(resp), *e, *j;
	free(resp);
	int rc = CLI_EXIT_OK;
	if (!o) {
		fprintf(stderr, "gen2vm vm %s: the service answered %d without a JSON body\n", cmd, status);
		rc = CLI_EXIT_FAILED;
	} else if (json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "error", &e)) {
		const char *m = json_object_object_get_ex(e, "message", &j) ? json_object_get_string(j) : "failed";
		fprintf(stderr, "%s%s\n", strncmp(m, "gen2vm vm", 9) ? "gen2vm vm: " : "", m);
		rc = json_object_object_get_ex(e, "exit_code", &j) ? json_object_get_int(j) : CLI_EXIT_FAILED;
		rc = rc > 0 && rc < 256 ? rc : CLI_EXIT_FAILED;
	} else if (list) {
		vm_list_print(o, json);
	} else if (show) {
		vm_show_print(o, json);
	} else {
		const char *m = json_object_object_get_ex(o, "message", &j) ? json_object_get_string(j) : "";
		if (*m)
			printf("%s\n", m);
	}
	json_object_put(o);
	return rc;
direct:
	json_object_put(body);
	return -1;
}

int cli_vm_main(int argc, char **argv)
{
	vm_code = NULL;
	/* The service's descriptor for the error code stays with this process: a VM it starts must not
	 * inherit it. */
	const char *cfd = getenv(SERVICE_ENV_CODE_FD);
	int code_fd = cfd && *cfd >= '3' && *cfd <= '9' && !cfd[1] ? *cfd - '0' : -1;
	if (code_fd >= 0) {
		fcntl(code_fd, F_SETFD, FD_CLOEXEC);
		unsetenv(SERVICE_ENV_CODE_FD);
	}
	/* The service, when it runs, carries the verb: it sees every change the moment it is made. */
	const char *store = NULL;
	char *args[512];
	int n = 0;
	for (int i = 0; i < argc && n < 511; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store = argv[++i];
		else if (!strncmp(argv[i], "--store=", 8))
			store = argv[i] + 8;
		else
			args[n++] = argv[i];
	}
	args[n] = NULL;
	int rc = vm_via_service(store, n, args);
	if (rc >= 0) {
		fflush(NULL);
		return rc;
	}
	rc = vm_main_direct(argc, argv);
	/* For gen2vmd, which runs the verbs: the error's stable code besides its message. */
	if (rc && code_fd >= 0) {
		fflush(NULL);
		dprintf(code_fd, "%s\n", vm_code ? vm_code : rc == CLI_EXIT_USAGE ? "InvalidArgument" : "Failed");
	}
	return rc;
}
