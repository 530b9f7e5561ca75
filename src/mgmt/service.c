#include "mgmt/service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/exit.h"
#include "mgmt/api.h"
#include "mgmt/http.h"
#include "mgmt/store.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/text.h"

#define SVC_VMS_MAX 1024
#define SVC_CONNS_MAX 128
#define SVC_OPS_MAX 64
#define SVC_READ_TIMEOUT_MS 10000  /* a request must arrive whole within this */
#define SVC_WRITE_TIMEOUT_MS 30000 /* and its answer be taken within this */
#define SVC_EVENTS_BUF_MAX (256u << 10) /* an event client this far behind is dropped */
#define SVC_OUTPUT_MAX (4u << 20)  /* what an operation's child may print (vm list of 1024 VMs fits) */

enum svc_state { SVC_OFF, SVC_RUNNING, SVC_PAUSED };
static const char *const svc_state_name[] = { "Off", "Running", "Paused" };

struct svc_vm {
	char name[STORE_NAME_MAX + 1]; /* "" for a free slot */
	enum svc_state state;
	pid_t pid;
	int pidfd;
	int status; /* the exit status waitpid gave, -1 unknown */
	bool hb_checking, hb_lost; /* a heartbeat look under way; the last one said lost */
};

enum svc_conn_kind { CONN_FREE, CONN_READING, CONN_WAITING, CONN_WRITING, CONN_EVENTS };

struct svc_conn {
	enum svc_conn_kind kind;
	int fd;
	unsigned serial; /* tells an operation whether its connection is still the one that asked */
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off, out_cap;
	uint64_t deadline_ms;
};

struct svc_op {
	pid_t pid; /* 0: a free slot */
	int conn;  /* -1: no client waits (an automatic start) */
	unsigned serial;
	enum api_op op;
	char name[STORE_NAME_MAX + 1];
	int out, err, code; /* memfds the child prints into */
};

/* A directory of the store watched by inotify (a VM's, or one that may become a VM's). */
struct svc_watch {
	int wd; /* 0: free */
	char name[STORE_NAME_MAX + 1];
};

struct svc {
	char root[PATH_MAX];
	char exe[PATH_MAX];
	char boot_id[64];
	int ep, lfd, sfd, tfd, ifd, root_wd;
	struct svc_watch watches[SVC_VMS_MAX];
	struct file_socket_id sock_id;
	unsigned serial;
	struct svc_vm vms[SVC_VMS_MAX];
	struct svc_conn conns[SVC_CONNS_MAX];
	struct svc_op ops[SVC_OPS_MAX];
};

/* epoll's u64: what kind of descriptor and its index. */
enum { EV_LISTEN = 1, EV_SIGNAL, EV_CONN, EV_VM, EV_TIMER, EV_INOTIFY };

/* How often the running VMs' heartbeat is looked at (GEN2VMD_HEARTBEAT_CHECK_S overrides it, for
 * tests): a guest whose heartbeat service stops answering gets a "heartbeat_lost" event. */
#define SVC_HEARTBEAT_CHECK_S 10
#define EV(kind, i) (((uint64_t)(kind) << 32) | (uint32_t)(i))

static void svc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void svc_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "gen2vmd: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* A line in the VM's own vm.log too: its history in one place, whoever started it. */
static void svc_vm_log(const struct svc *s, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void svc_vm_log(const struct svc *s, const char *name, const char *fmt, ...)
{
	char line[512], p[PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	svc_log("VM '%s': %s", name, line);
	if (store_path(s->root, name, STORE_RUN_LOG, p, sizeof(p)))
		return;
	int fd = open(p, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return;
	struct stat st;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode)) {
		time_t now = time(NULL);
		char stamp[64];
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
		dprintf(fd, "---- gen2vmd %s: %s ----\n", stamp, line);
	}
	close(fd);
}

/* ---- connections ---- */

static void svc_conn_close(struct svc *s, int i)
{
	struct svc_conn *c = &s->conns[i];
	if (c->kind == CONN_FREE)
		return;
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->kind = CONN_FREE;
	c->fd = -1;
}

/* Appends to the connection's output; false when that would pass max (the caller drops it). */
static bool svc_conn_put(struct svc_conn *c, const char *data, size_t len, size_t max)
{
	if (c->out_len - c->out_off + len > max)
		return false;
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + len)
			cap *= 2;
		char *n = realloc(c->out, cap);
		if (!n)
			return false;
		c->out = n;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return true;
}

/* Writes what it can; false when the connection is done with (closed). */
static bool svc_conn_flush(struct svc *s, int i)
{
	struct svc_conn *c = &s->conns[i];
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct epoll_event ev = { .events = EPOLLOUT | (c->kind == CONN_EVENTS ? EPOLLIN : 0) | EPOLLRDHUP,
						  .data.u64 = EV(EV_CONN, i) };
			epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return true;
		}
		if (n <= 0) {
			svc_conn_close(s, i);
			return false;
		}
		c->out_off += (size_t)n;
	}
	if (c->kind == CONN_WRITING) {
		/* One request per connection: the answer said Connection: close. */
		svc_conn_close(s, i);
		return false;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV(EV_CONN, i) };
	epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
	return true;
}

static void svc_respond(struct svc *s, int i, int status, const char *body)
{
	struct svc_conn *c = &s->conns[i];
	char head[256];
	size_t bl = strlen(body);
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, http_status_text(status), bl + 1);
	c->kind = CONN_WRITING;
	c->deadline_ms = clock_mono_ms() + SVC_WRITE_TIMEOUT_MS;
	if (!svc_conn_put(c, head, (size_t)n, SIZE_MAX) || !svc_conn_put(c, body, bl, SIZE_MAX) ||
	    !svc_conn_put(c, "\n", 1, SIZE_MAX)) {
		svc_conn_close(s, i);
		return;
	}
	svc_conn_flush(s, i);
}

static void svc_respond_error(struct svc *s, int i, const char *code, const char *message, int exit_code)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(e, "exit_code", json_object_new_int(exit_code));
	json_object_object_add(o, "error", e);
	svc_respond(s, i, api_error_status(code), json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
										      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* ---- events ---- */

static void svc_event(struct svc *s, const char *name, const char *event, const char *state, int exit_code)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "vm", json_object_new_string(name));
	json_object_object_add(o, "event", json_object_new_string(event));
	if (state)
		json_object_object_add(o, "state", json_object_new_string(state));
	if (exit_code >= 0)
		json_object_object_add(o, "exit_code", json_object_new_int(exit_code));
	json_object_object_add(o, "time", json_object_new_int64((int64_t)time(NULL)));
	const char *line = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	for (int i = 0; i < SVC_CONNS_MAX; i++) {
		struct svc_conn *c = &s->conns[i];
		if (c->kind != CONN_EVENTS)
			continue;
		/* A client that does not read its events is dropped, never waited for. */
		if (!svc_conn_put(c, line, strlen(line), SVC_EVENTS_BUF_MAX) || !svc_conn_put(c, "\n", 1, SVC_EVENTS_BUF_MAX)) {
			svc_log("an event client fell %u KiB behind: dropped", SVC_EVENTS_BUF_MAX >> 10);
			svc_conn_close(s, i);
			continue;
		}
		svc_conn_flush(s, i);
	}
	json_object_put(o);
}

/* ---- the state file ---- */

static void svc_state_save(struct svc *s)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	json_object_object_add(o, "boot_id", json_object_new_string(s->boot_id));
	for (int i = 0; i < SVC_VMS_MAX; i++)
		if (s->vms[i].name[0] && s->vms[i].state != SVC_OFF)
			json_object_array_add(a, json_object_new_string(s->vms[i].name));
	json_object_object_add(o, "running", a);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	char p[PATH_MAX + 64], why[200];
	snprintf(p, sizeof(p), "%s/%s", s->root, SERVICE_STATE);
	if (file_replace_user(p, text, strlen(text), why, sizeof(why)))
		svc_log("%s: %s", text_show(p), why);
	json_object_put(o);
}

/* The array under key of the store's file (gen2vmd.state's "running", gen2vmd.stopped's "stopped"),
 * and whether it was written in this boot (*same_boot) or another; NULL when there is none. */
static json_object *svc_list_load(const char *root, const char *file, const char *key, const char *boot_id,
				  bool *same_boot)
{
	char p[PATH_MAX + 64], why[200];
	uint8_t *data;
	size_t len;
	*same_boot = false;
	snprintf(p, sizeof(p), "%s/%s", root, file);
	if (file_read_user(p, 1 << 20, &data, &len, why, sizeof(why)))
		return NULL;
	json_object *o = json_tokener_parse((const char *)data), *b, *a;
	free(data);
	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &a) ||
	    !json_object_is_type(a, json_type_array)) {
		json_object_put(o);
		return NULL;
	}
	*same_boot = json_object_object_get_ex(o, "boot_id", &b) && !strcmp(json_object_get_string(b), boot_id);
	json_object_get(a);
	json_object_put(o);
	return a;
}

/* The names the state file says ran, if it was written in this boot (same) or another. */
static json_object *svc_state_load(struct svc *s, bool *same_boot)
{
	return svc_list_load(s->root, SERVICE_STATE, "running", s->boot_id, same_boot);
}

/* Whether the array a (may be NULL) holds the string name. */
static bool svc_list_has(json_object *a, const char *name)
{
	for (size_t k = 0; a && k < json_object_array_length(a); k++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(a, k)), name))
			return true;
	return false;
}

/* The host's boot id (empty when it cannot be read). */
static void svc_boot_id(char *out, size_t len)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, len - 1) : 0;
	if (fd >= 0)
		close(fd);
	out[n > 0 ? n : 0] = 0;
	out[strcspn(out, "\n")] = 0;
}

/* ---- VMs ---- */

static struct svc_vm *svc_vm_find(struct svc *s, const char *name, bool add)
{
	struct svc_vm *free_slot = NULL;
	for (int i = 0; i < SVC_VMS_MAX; i++) {
		if (!strcmp(s->vms[i].name, name))
			return &s->vms[i];
		if (!s->vms[i].name[0] && !free_slot)
			free_slot = &s->vms[i];
	}
	if (!add || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
	free_slot->pidfd = -1;
	free_slot->status = -1;
	return free_slot;
}

static void svc_vm_set_state(struct svc *s, struct svc_vm *v, enum svc_state st)
{
	if (v->state == st)
		return;
	v->state = st;
	/* Durable before announced: a client that saw the event finds the state file agreeing. */
	svc_state_save(s);
	svc_event(s, v->name, "state", svc_state_name[st], -1);
}

/* The VM's process ended: what its exit status says, then Off. */
static void svc_vm_ended(struct svc *s, struct svc_vm *v)
{
	if (v->pidfd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, v->pidfd, NULL);
		close(v->pidfd);
		v->pidfd = -1;
	}
	int code = v->status < 0 ? -1 : WIFEXITED(v->status) ? WEXITSTATUS(v->status) : 128 + WTERMSIG(v->status);
	if (code == CLI_EXIT_CRASH) {
		svc_vm_log(s, v->name, "the guest crashed (exit code %d); not restarted", code);
		svc_event(s, v->name, "crashed", NULL, code);
	} else if (code == CLI_EXIT_SAVED) {
		svc_vm_log(s, v->name, "its state was saved (exit code %d)", code);
		svc_event(s, v->name, "saved", NULL, code);
	} else if (code >= 0) {
		svc_vm_log(s, v->name, "its process %d ended (exit code %d)", (int)v->pid, code);
	} else {
		svc_vm_log(s, v->name, "its process %d ended", (int)v->pid);
	}
	v->pid = 0;
	v->status = -1;
	svc_vm_set_state(s, v, SVC_OFF);
}

/* Looks at the VM in the store: whether a process holds its run lock, and which. A new one is
 * watched by a pidfd. hint: the state an operation just left it in (Running or Paused), or -1. */
static void svc_vm_refresh(struct svc *s, const char *name, int hint)
{
	char dir[PATH_MAX], err[256];
	struct svc_vm *v = svc_vm_find(s, name, false);
	if (store_path(s->root, name, NULL, dir, sizeof(dir)))
		return;
	bool exists = !store_vm_exists(s->root, name, err, sizeof(err));
	int held = exists ? store_run_lock_held(dir) : 0;
	pid_t pid = held == 1 ? store_run_pid(dir) : 0;
	if (held != 1 || pid <= 0) {
		/* Off (or a start that has not written its pid yet: its operation refreshes it again). */
		if (v && v->state != SVC_OFF && v->pidfd < 0)
			svc_vm_set_state(s, v, SVC_OFF);
		if (v && !exists && v->state == SVC_OFF)
			v->name[0] = 0;
		return;
	}
	if (!v && !(v = svc_vm_find(s, name, true)))
		return;
	if (v->pidfd < 0 || v->pid != pid) {
		if (v->pidfd >= 0) {
			epoll_ctl(s->ep, EPOLL_CTL_DEL, v->pidfd, NULL);
			close(v->pidfd);
		}
		v->pid = pid;
		v->status = -1;
		v->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		/* The pid in the lock file may be a past run's (a change holds the lock now) and reused by
		 * another process since: the VM's process works in the VM's directory, which a stranger does
		 * not. Checked after the pidfd was taken, so it is the process the pidfd watches. */
		char cwd[PATH_MAX + 64], rdir[PATH_MAX], link[64];
		snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
		ssize_t cl = readlink(link, cwd, sizeof(cwd) - 1);
		bool ours = cl > 0 && realpath(dir, rdir) && (size_t)cl == strlen(rdir) && !memcmp(cwd, rdir, (size_t)cl);
		if (v->pidfd < 0 || !ours || store_run_lock_held(dir) != 1) {
			if (v->pidfd >= 0)
				close(v->pidfd);
			v->pidfd = -1;
			v->pid = 0;
			if (v->state != SVC_OFF)
				svc_vm_set_state(s, v, SVC_OFF);
			return;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_VM, v - s->vms) };
		epoll_ctl(s->ep, EPOLL_CTL_ADD, v->pidfd, &ev);
		svc_vm_log(s, name, "running (process %d)", (int)pid);
	}
	svc_vm_set_state(s, v, hint == SVC_PAUSED ? SVC_PAUSED : hint == SVC_RUNNING || v->state == SVC_OFF ? SVC_RUNNING
													     : v->state);
}

/* ---- operations: `gen2vm vm ...` children ---- */

static int svc_memfd(const char *name)
{
	return (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
}

/* Starts `gen2vm vm --store ROOT argv...`; conn (or -1) gets the answer when it ends. extra (or -1)
 * is handed to the child as fd 4 (a document to read). 0 or -errno. */
static int svc_op_start(struct svc *s, int conn, enum api_op op, const char *name, const char *const *argv,
			int extra)
{
	struct svc_op *o = NULL;
	for (int i = 0; i < SVC_OPS_MAX && !o; i++)
		if (!s->ops[i].pid)
			o = &s->ops[i];
	if (!o)
		return -EAGAIN;
	int out = svc_memfd("out"), err = svc_memfd("err"), code = svc_memfd("code");
	if (out < 0 || err < 0 || code < 0) {
		int r = -errno;
		close(out), close(err), close(code);
		return r;
	}
	char *args[64];
	int n = 0;
	args[n++] = "gen2vm";
	args[n++] = "vm";
	args[n++] = "--store";
	args[n++] = s->root;
	for (int i = 0; argv[i] && n < 63; i++)
		args[n++] = (char *)argv[i];
	args[n] = NULL;
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(out), close(err), close(code);
		return r;
	}
	if (pid == 0) {
		/* The loop's signals are blocked for its signalfd: the child (and the VM it may start)
		 * must get them as usual. */
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(code, 3) < 0 ||
		    (extra >= 0 && dup2(extra, 4) < 0))
			_exit(CLI_EXIT_FAILED);
		setenv(SERVICE_ENV_DIRECT, "1", 1);
		setenv(SERVICE_ENV_CODE_FD, "3", 1);
		execv(s->exe, args);
		_exit(CLI_EXIT_FAILED);
	}
	o->pid = pid;
	o->conn = conn;
	o->serial = conn >= 0 ? s->conns[conn].serial : 0;
	o->op = op;
	snprintf(o->name, sizeof(o->name), "%s", name ? name : "");
	o->out = out;
	o->err = err;
	o->code = code;
	return 0;
}

/* The whole of a memfd, NUL-terminated, trailing newlines cut (the caller frees). */
static char *svc_memfd_text(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	if (len < 0 || len > (off_t)SVC_OUTPUT_MAX)
		len = len < 0 ? 0 : (off_t)SVC_OUTPUT_MAX;
	char *t = malloc((size_t)len + 1);
	if (!t)
		return NULL;
	ssize_t n = pread(fd, t, (size_t)len, 0);
	n = n < 0 ? 0 : n;
	while (n > 0 && t[n - 1] == '\n')
		n--;
	t[n] = 0;
	return t;
}

static void svc_op_done(struct svc *s, struct svc_op *o, int status)
{
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : CLI_EXIT_FAILED;
	char *out = svc_memfd_text(o->out), *err = svc_memfd_text(o->err), *ecode = svc_memfd_text(o->code);
	close(o->out), close(o->err), close(o->code);
	if (o->op == API_LIST && !code) {
		/* A list looks at every VM: one started or stopped without the service is seen now. */
		DIR *d = opendir(s->root);
		struct dirent *e;
		char why[256];
		while (d && (e = readdir(d)))
			if (!store_name_check(e->d_name, why, sizeof(why)))
				svc_vm_refresh(s, e->d_name, -1);
		if (d)
			closedir(d);
	}
	if (o->name[0]) {
		int hint = -1;
		if (!code)
			hint = o->op == API_PAUSE ? SVC_PAUSED : (o->op == API_RESUME || o->op == API_START ||
								  o->op == API_RESTART) ? SVC_RUNNING : -1;
		svc_vm_refresh(s, o->name, hint);
		if (o->conn < 0 && o->op == API_START && code)
			svc_vm_log(s, o->name, "automatic start failed: %s", err ? err : "");
	}
	if (o->conn < 0 && o->op == API_GET) {
		/* A heartbeat look: vm show's runtime says what the VM's heartbeat service sees. */
		struct svc_vm *v = svc_vm_find(s, o->name, false);
		json_object *j = !code && out ? json_tokener_parse(out) : NULL, *rt, *hb, *st;
		bool lost = j && json_object_object_get_ex(j, "runtime", &rt) && json_object_object_get_ex(rt, "heartbeat", &hb) &&
			    json_object_object_get_ex(hb, "state", &st) && !strcmp(json_object_get_string(st), "lost");
		json_object_put(j);
		if (v) {
			v->hb_checking = false;
			if (lost && !v->hb_lost && v->state == SVC_RUNNING) {
				svc_vm_log(s, v->name, "heartbeat lost: the guest's heartbeat service stopped answering");
				svc_event(s, v->name, "heartbeat_lost", NULL, -1);
			}
			v->hb_lost = lost;
		}
	}
	int i = o->conn;
	if (i >= 0 && s->conns[i].kind == CONN_WAITING && s->conns[i].serial == o->serial) {
		if (code) {
			const char *c = ecode && ecode[0] ? ecode : code == CLI_EXIT_USAGE ? "InvalidArgument" : "Failed";
			svc_respond_error(s, i, c, err && err[0] ? err : "the operation failed", code);
		} else if (o->op == API_LIST || o->op == API_GET) {
			svc_respond(s, i, 200, out ? out : "null");
		} else {
			json_object *r = json_object_new_object();
			json_object_object_add(r, "vm", json_object_new_string(o->name));
			json_object_object_add(r, "message", json_object_new_string(out ? out : ""));
			struct svc_vm *v = svc_vm_find(s, o->name, false);
			if (o->op != API_DELETE)
				json_object_object_add(r, "state", json_object_new_string(svc_state_name[v ? v->state : SVC_OFF]));
			svc_respond(s, i, o->op == API_CREATE ? 201 : 200,
				    json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			json_object_put(r);
		}
	}
	free(out), free(err), free(ecode);
	memset(o, 0, sizeof(*o));
}

/* ---- requests ---- */

static const char *svc_json_str(json_object *o, const char *key)
{
	json_object *j;
	if (!json_object_object_get_ex(o, key, &j))
		return NULL;
	return json_object_get_string(j);
}

/* PATCH's body into a vm verb's arguments: the settings of `vm set`, or one drive or adapter change. */
static int svc_modify_args(json_object *b, const char *name, const char **argv, char (*bufs)[64], const char **why)
{
	static const struct {
		const char *key, *opt;
	} sets[] = {
		{ "memory", "--memory" }, { "cpus", "--cpus" }, { "video", "--video" },
		{ "integration_services", "--integration-services" }, { "processor_compatibility", "--processor-compatibility" },
		{ "console", "--console" }, { "vnc", "--vnc" }, { "web_console", "--web-console" },
		{ "vnc_password_file", "--vnc-password-file" },
	};
	static const struct {
		const char *key, *verb;
	} devs[] = {
		{ "add_disk", "add-disk" }, { "remove_disk", "remove-disk" }, { "add_dvd", "add-dvd" },
		{ "set_dvd", "set-dvd" }, { "remove_dvd", "remove-dvd" }, { "add_nic", "add-nic" }, { "remove_nic", "remove-nic" },
	};
	int n = 0, nb = 0, nset = 0, ndev = 0;
	argv[n++] = "set";
	argv[n++] = name;
	json_object_object_foreach(b, key, val) {
		bool known = !strcmp(key, "slot");
		for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
			if (strcmp(key, sets[k].key))
				continue;
			known = true;
			nset++;
			argv[n++] = sets[k].opt;
			if (json_object_is_type(val, json_type_boolean)) {
				argv[n++] = json_object_get_boolean(val) ? "on" : "off";
			} else if (json_object_is_type(val, json_type_array)) {
				/* The list as the option takes it: names joined by commas. */
				char *t = bufs[nb++];
				t[0] = 0;
				for (size_t x = 0; x < json_object_array_length(val); x++) {
					size_t l = strlen(t);
					snprintf(t + l, 64 - l, "%s%s", x ? "," : "", json_object_get_string(json_object_array_get_idx(val, x)));
				}
				argv[n++] = t;
			} else {
				argv[n++] = json_object_get_string(val);
			}
		}
		for (size_t k = 0; k < sizeof(devs) / sizeof(devs[0]); k++) {
			if (strcmp(key, devs[k].key))
				continue;
			known = true;
			ndev++;
			argv[0] = devs[k].verb;
			argv[2] = json_object_get_string(val);
		}
		if (!known) {
			*why = "unknown change (memory, cpus, video, integration_services, processor_compatibility, console, vnc, "
			       "web_console, vnc_password_file, or one of "
			       "add_disk, remove_disk, add_dvd, set_dvd (with slot), remove_dvd, add_nic, remove_nic)";
			return -EINVAL;
		}
	}
	if ((nset && ndev) || ndev > 1 || (!nset && !ndev)) {
		*why = !nset && !ndev ? "nothing to change" : "one drive or adapter change per request, without settings";
		return -EINVAL;
	}
	if (ndev) {
		n = 3;
		const char *slot = svc_json_str(b, "slot");
		if (slot && !strcmp(argv[0], "set-dvd"))
			argv[n++] = slot;
	}
	argv[n] = NULL;
	return 0;
}

static void svc_request(struct svc *s, int i, const struct http_request *req)
{
	struct svc_conn *c = &s->conns[i];
	struct api_route rt;
	const char *code;
	int st = api_route_match(req->method, req->path, &rt, &code);
	svc_log("%s %s", req->method, text_show(req->path));
	if (st) {
		svc_respond_error(s, i, code, st == 404 ? "no such resource (see README: the service's API)"
					     : st == 405 ? "this method does not apply to this resource" : "not a VM name",
				  CLI_EXIT_USAGE);
		return;
	}
	if (rt.op == API_EVENTS) {
		static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-cache\r\n"
					   "Connection: close\r\n\r\n";
		c->kind = CONN_EVENTS;
		c->deadline_ms = 0;
		svc_conn_put(c, head, sizeof(head) - 1, SVC_EVENTS_BUF_MAX);
		/* The present first: a client sees where each VM stands, then each change. */
		json_object *a = json_object_new_array();
		for (int k = 0; k < SVC_VMS_MAX; k++)
			if (s->vms[k].name[0] && s->vms[k].state != SVC_OFF)
				json_object_array_add(a, json_object_new_string(s->vms[k].name));
		for (size_t k = 0; k < json_object_array_length(a); k++) {
			const char *n = json_object_get_string(json_object_array_get_idx(a, k));
			char line[256];
			int l = snprintf(line, sizeof(line), "{\"vm\":\"%s\",\"event\":\"state\",\"state\":\"%s\",\"time\":%lld}\n", n,
					 svc_state_name[svc_vm_find(s, n, false)->state], (long long)time(NULL));
			svc_conn_put(c, line, (size_t)l, SVC_EVENTS_BUF_MAX);
		}
		json_object_put(a);
		svc_conn_flush(s, i);
		return;
	}
	json_object *body = NULL;
	if (rt.op == API_CREATE || rt.op == API_MODIFY || req->body_len) {
		json_tokener *tok = json_tokener_new();
		if (tok) {
			body = json_tokener_parse_ex(tok, req->body ? req->body : "", (int)req->body_len);
			/* One JSON value, whitespace after it allowed (a document file's last newline). */
			size_t end = json_tokener_get_error(tok) == json_tokener_success ? (size_t)tok->char_offset : 0;
			while (end && end < req->body_len && strchr(" \t\r\n", req->body[end]) && req->body[end])
				end++;
			if (json_tokener_get_error(tok) != json_tokener_success || end != req->body_len) {
				json_object_put(body);
				body = NULL;
			}
			json_tokener_free(tok);
		}
		if (!body || !json_object_is_type(body, json_type_object)) {
			json_object_put(body);
			svc_respond_error(s, i, "BadRequest", "the body must be one JSON object", CLI_EXIT_USAGE);
			return;
		}
	}
	const char *argv[64];
	char bufs[8][64], tmo[32];
	int n = 0, extra = -1;
	const char *why = NULL;
	json_object *j;
	switch (rt.op) {
	case API_LIST: argv[n++] = "list"; argv[n++] = "--json"; break;
	case API_GET: argv[n++] = "show"; argv[n++] = rt.name; argv[n++] = "--json"; break;
	case API_DELETE: argv[n++] = "remove"; argv[n++] = rt.name; break;
	case API_START: argv[n++] = "start"; argv[n++] = rt.name; break;
	case API_PAUSE: argv[n++] = "pause"; argv[n++] = rt.name; break;
	case API_RESUME: argv[n++] = "resume"; argv[n++] = rt.name; break;
	case API_TERMINATE: argv[n++] = "stop"; argv[n++] = rt.name; argv[n++] = "--turn-off"; break;
	case API_SHUTDOWN:
	case API_RESTART:
		argv[n++] = rt.op == API_SHUTDOWN ? "stop" : "restart";
		argv[n++] = rt.name;
		if (body && json_object_object_get_ex(body, "timeout", &j)) {
			snprintf(tmo, sizeof(tmo), "%s", json_object_get_string(j));
			argv[n++] = "--timeout";
			argv[n++] = tmo;
		}
		if (body && json_object_object_get_ex(body, "turn_off", &j) && json_object_get_boolean(j))
			argv[n++] = "--turn-off";
		if (body && json_object_object_get_ex(body, "save", &j) && json_object_get_boolean(j))
			argv[n++] = "--save";
		break;
	case API_CREATE:
		argv[n++] = "new";
		argv[n++] = rt.name;
		if (json_object_object_get_ex(body, "options", &j)) {
			/* `vm new`'s options, as its command line takes them. */
			if (!json_object_is_type(j, json_type_array) || json_object_array_length(j) > 50) {
				why = "\"options\": expected an array of vm new's options";
				break;
			}
			for (size_t k = 0; k < json_object_array_length(j); k++)
				argv[n++] = json_object_get_string(json_object_array_get_idx(j, k));
		} else {
			/* A document: handed to the child as fd 4, checked there by the run reader. */
			extra = svc_memfd("doc");
			if (extra < 0 || pwrite(extra, req->body, req->body_len, 0) != (ssize_t)req->body_len) {
				why = "out of memory";
				break;
			}
			argv[n++] = "--from";
			argv[n++] = "/proc/self/fd/4";
		}
		break;
	case API_MODIFY:
		if (svc_modify_args(body, rt.name, argv, bufs, &why))
			break;
		while (argv[n])
			n++;
		break;
	case API_EVENTS: break;
	}
	argv[n] = NULL;
	if (why) {
		if (extra >= 0)
			close(extra);
		json_object_put(body);
		svc_respond_error(s, i, "BadRequest", why, CLI_EXIT_USAGE);
		return;
	}
	c->kind = CONN_WAITING;
	c->deadline_ms = 0;
	/* Nothing more is read from it until the answer: a client cannot keep the loop busy meanwhile. */
	struct epoll_event ev = { .events = 0, .data.u64 = EV(EV_CONN, i) };
	epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
	int r = svc_op_start(s, i, rt.op, argv[0] && strcmp(argv[0], "list") ? rt.name : NULL, argv, extra);
	if (extra >= 0)
		close(extra);
	json_object_put(body); /* argv points into it until the child has it */
	if (r)
		svc_respond_error(s, i, "ServiceBusy", r == -EAGAIN ? "too many operations at once: try again" : strerror(-r),
				  CLI_EXIT_FAILED);
}

static void svc_conn_read(struct svc *s, int i)
{
	struct svc_conn *c = &s->conns[i];
	char buf[65536];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == 0 && c->kind == CONN_WAITING) {
			/* A client that half-closed after its request still gets the answer. */
			struct epoll_event ev = { .events = 0, .data.u64 = EV(EV_CONN, i) };
			epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		if (n <= 0) {
			svc_conn_close(s, i);
			return;
		}
		if (c->kind != CONN_READING)
			continue; /* nothing more is read from a client that has asked */
		size_t room = HTTP_HEADER_MAX + HTTP_BODY_MAX - c->in_len;
		size_t take = (size_t)n < room ? (size_t)n : room;
		char *in = realloc(c->in, c->in_len + take + 1);
		if (!in) {
			svc_conn_close(s, i);
			return;
		}
		c->in = in;
		memcpy(c->in + c->in_len, buf, take);
		c->in_len += take;
		struct http_request req;
		long r = http_request_parse(c->in, c->in_len, &req);
		if (r == 0 && c->in_len < HTTP_HEADER_MAX + HTTP_BODY_MAX)
			continue;
		if (r <= 0) {
			const char *code = r == -E2BIG ? "HeaderTooLarge" : r == -EMSGSIZE ? "TooLarge" : r == -ENOSYS ? "NotSupported"
															: "BadRequest";
			svc_respond_error(s, i, code, r == -E2BIG ? "request headers too large" : r == -EMSGSIZE ? "body too large (at most 1 MiB)"
						     : r == -ENOSYS ? "only HTTP/1.1 requests with a Content-Length body" : "malformed HTTP request",
					  CLI_EXIT_USAGE);
			return;
		}
		svc_request(s, i, &req);
		return;
	}
}

/* A free connection slot. When all are taken, those whose client has gone are freed first, then
 * the oldest that has not finished its request is dropped: idle clients cannot lock others out.
 * SVC_CONNS_MAX when every slot serves a request or an event stream. */
static int svc_conn_slot(struct svc *s)
{
	int oldest = -1;
	for (int i = 0; i < SVC_CONNS_MAX; i++) {
		struct svc_conn *c = &s->conns[i];
		if (c->kind == CONN_FREE)
			return i;
		char b;
		if (c->kind == CONN_READING && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
			svc_conn_close(s, i);
			return i;
		}
		if (c->kind == CONN_READING && (oldest < 0 || c->serial < s->conns[oldest].serial))
			oldest = i;
	}
	if (oldest < 0)
		return SVC_CONNS_MAX;
	svc_conn_close(s, oldest);
	return oldest;
}

static void svc_accept(struct svc *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int i = svc_conn_slot(s);
		if (i == SVC_CONNS_MAX) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
						   "Content-Length: 75\r\nConnection: close\r\n\r\n"
						   "{\"error\":{\"code\":\"ServiceBusy\",\"message\":\"too many clients\",\"exit_code\":1}}\n";
			send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		struct svc_conn *c = &s->conns[i];
		memset(c, 0, sizeof(*c));
		c->kind = CONN_READING;
		c->fd = fd;
		c->serial = ++s->serial;
		c->deadline_ms = clock_mono_ms() + SVC_READ_TIMEOUT_MS;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV(EV_CONN, i) };
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev))
			svc_conn_close(s, i);
	}
}

/* ---- children ---- */

static void svc_reap(struct svc *s)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		bool found = false;
		for (int i = 0; i < SVC_OPS_MAX && !found; i++) {
			if (s->ops[i].pid == pid) {
				svc_op_done(s, &s->ops[i], status);
				found = true;
			}
		}
		for (int i = 0; i < SVC_VMS_MAX && !found; i++) {
			if (s->vms[i].name[0] && s->vms[i].pid == pid) {
				s->vms[i].status = status;
				svc_vm_ended(s, &s->vms[i]);
				found = true;
			}
		}
		/* Anything else is a VM's process that ended before its start was noticed, or a
		 * grandchild: reaped, nothing to say. */
	}
}

static void svc_heartbeat_check(struct svc *s)
{
	uint64_t ticks;
	if (read(s->tfd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	for (int i = 0; i < SVC_VMS_MAX; i++) {
		struct svc_vm *v = &s->vms[i];
		if (!v->name[0] || v->state != SVC_RUNNING || v->hb_checking)
			continue;
		const char *argv[] = { "show", v->name, "--json", NULL };
		v->hb_checking = !svc_op_start(s, -1, API_GET, v->name, argv, -1);
	}
}

static void svc_vm_pidfd(struct svc *s, struct svc_vm *v)
{
	/* Our child (a VM this service started, reparented to it as subreaper): its status, reaped
	 * here; another's: it ended, its status is its parent's to know. */
	siginfo_t si = { 0 };
	if (!waitid(P_PIDFD, (id_t)v->pidfd, &si, WEXITED | WNOHANG) && si.si_pid == v->pid)
		v->status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
	svc_vm_ended(s, v);
}

/* ---- VMs started and stopped around the service ---- */

/* A VM started without the service (`GEN2VM_DIRECT=1 gen2vm vm start`, or `vm start` while the
 * service was stopping) is seen when its process makes its control socket: the service looks at it
 * then (its run lock and pid, as at start-up) and watches its process from then on (a pidfd), so
 * the event stream says Running and Off without a request naming it and without polling. vm.json
 * coming or going (a VM made or removed directly) is looked at the same way. The store's root is
 * watched for VM directories, each of them for these two names. */
static void svc_watch_dir(struct svc *s, const char *name)
{
	char err[256], dir[PATH_MAX];
	if (s->ifd < 0 || store_name_check(name, err, sizeof(err)) || store_path(s->root, name, NULL, dir, sizeof(dir)))
		return;
	struct svc_watch *free_slot = NULL;
	for (int i = 0; i < SVC_VMS_MAX; i++) {
		if (s->watches[i].wd && !strcmp(s->watches[i].name, name))
			return;
		if (!s->watches[i].wd && !free_slot)
			free_slot = &s->watches[i];
	}
	if (!free_slot)
		return;
	int wd = inotify_add_watch(s->ifd, dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR |
						IN_DONT_FOLLOW | IN_EXCL_UNLINK);
	if (wd < 0) {
		static bool said;
		if (errno == ENOSPC && !said) {
			said = true;
			svc_log("%s: no more inotify watches (fs.inotify.max_user_watches): VMs started around the "
				"service are seen at the next request that names them", text_show(dir));
		}
		return;
	}
	/* The same directory watched again (a name reused) gives the same wd: one slot for it. */
	for (int i = 0; i < SVC_VMS_MAX; i++)
		if (s->watches[i].wd == wd)
			s->watches[i].wd = 0;
	free_slot->wd = wd;
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
}

static void svc_inotify(struct svc *s)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(s->ifd, buf, sizeof(buf));
		if (n <= 0)
			return;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)p;
			p += sizeof(*e) + e->len;
			const char *file = e->len ? e->name : "";
			if (e->mask & IN_Q_OVERFLOW) {
				/* Events were lost: look at every VM the service knows. */
				for (int i = 0; i < SVC_VMS_MAX; i++)
					if (s->vms[i].name[0])
						svc_vm_refresh(s, s->vms[i].name, -1);
				continue;
			}
			if (e->wd == s->root_wd) {
				if ((e->mask & (IN_CREATE | IN_MOVED_TO)) && (e->mask & IN_ISDIR))
					svc_watch_dir(s, file);
				continue;
			}
			struct svc_watch *w = NULL;
			for (int i = 0; i < SVC_VMS_MAX && !w; i++)
				if (s->watches[i].wd == e->wd)
					w = &s->watches[i];
			if (!w)
				continue;
			if (e->mask & IN_IGNORED) {
				w->wd = 0; /* the directory went (vm remove) */
				continue;
			}
			if (!strcmp(file, STORE_CONTROL) || !strcmp(file, STORE_CONFIG))
				svc_vm_refresh(s, w->name, -1);
		}
	}
}

/* ---- start-up ---- */

static void svc_scan(struct svc *s)
{
	bool same_boot, stopped_same_boot;
	json_object *was = svc_state_load(s, &same_boot);
	/* The VMs stop-vms stopped as the host went down: they ran then (the service saw them end). */
	json_object *stopped = svc_list_load(s->root, SERVICE_STOPPED, "stopped", s->boot_id, &stopped_same_boot);
	DIR *d = opendir(s->root);
	struct dirent *e;
	char err[256];
	while (d && (e = readdir(d))) {
		if (store_name_check(e->d_name, err, sizeof(err)))
			continue;
		svc_watch_dir(s, e->d_name); /* before the look: a start right after it is seen */
		if (store_vm_exists(s->root, e->d_name, err, sizeof(err)))
			continue;
		svc_vm_refresh(s, e->d_name, -1);
		struct svc_vm *v = svc_vm_find(s, e->d_name, false);
		if (v && v->state != SVC_OFF)
			continue;
		char dir[PATH_MAX];
		json_object *doc = NULL;
		if (store_path(s->root, e->d_name, NULL, dir, sizeof(dir)))
			continue;
		/* Only a peek at one key: the start itself checks the whole document. */
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s/%s", dir, STORE_CONFIG);
		uint8_t *data;
		size_t len;
		if (!file_read_user(p, 1 << 20, &data, &len, err, sizeof(err))) {
			doc = json_tokener_parse((const char *)data);
			free(data);
		}
		const char *as = doc ? svc_json_str(doc, "automatic_start") : NULL;
		as = as ? as : "if_running";
		bool ran = svc_list_has(was, e->d_name) && !same_boot;
		bool host_stopped = svc_list_has(stopped, e->d_name) && !stopped_same_boot;
		bool start = !strcmp(as, "always") || (!strcmp(as, "if_running") && (ran || host_stopped));
		if (svc_list_has(was, e->d_name) && same_boot && strcmp(as, "always"))
			svc_vm_log(s, e->d_name, "ended while the service was away: not restarted");
		if (start) {
			/* A VM saved as the host went down is restored by the start (vm start of a Saved VM). */
			svc_vm_log(s, e->d_name, "automatic start (%s%s)", as,
				   host_stopped ? "; stopped as the host went down" : "");
			const char *argv[] = { "start", e->d_name, NULL };
			if (svc_op_start(s, -1, API_START, e->d_name, argv, -1))
				svc_vm_log(s, e->d_name, "automatic start could not begin");
		}
		json_object_put(doc);
	}
	if (d)
		closedir(d);
	json_object_put(was);
	json_object_put(stopped);
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", s->root, SERVICE_STOPPED);
	unlink(p); /* looked at: a later start of the service is not a reboot after it */
	svc_state_save(s);
}

/* Whether the group gid may search (enter) a directory of mode st: its owner's group, else others'. */
static bool svc_group_enters(const struct stat *st, gid_t gid)
{
	return st->st_gid == gid ? (st->st_mode & S_IXGRP) != 0 : (st->st_mode & S_IXOTH) != 0;
}

/* --group's gid (a name, else a number) into *gid. Returns 0, or -EINVAL (said) for no such group. */
static int svc_group_gid(const char *group, gid_t *gid)
{
	struct group *gr = getgrnam(group);
	char *end;
	unsigned long num = strtoul(group, &end, 10);
	if (!gr && *group && !*end)
		gr = getgrgid((gid_t)num);
	if (!gr) {
		svc_log("--group '%s': no such group (getent group lists them)", text_show(group));
		return -EINVAL;
	}
	*gid = gr->gr_gid;
	return 0;
}

/* --group, before the socket (sock, for messages) is made in the working directory: that directory
 * enterable by the group gid. The store's root is given to it with mode 0710 (enter, not list: the
 * VMs' own directories stay 0700, private to the service's user); another directory is the user's to
 * set, and a warning says when the group cannot enter it or one above it. */
static int svc_dir_group(struct svc *s, const char *sock, const char *group, gid_t gid)
{
	struct stat here, root;
	char dir[PATH_MAX];
	if (stat(".", &here) || stat(s->root, &root) || !getcwd(dir, sizeof(dir)))
		return -errno;
	if (here.st_dev == root.st_dev && here.st_ino == root.st_ino && (chown(".", (uid_t)-1, gid) || chmod(".", 0710))) {
		int r = -errno;
		svc_log("VM store %s: cannot give it to the group %s: %s", text_show(s->root), text_show(group), strerror(-r));
		return r;
	}
	/* This directory and those above it, up to /: the group must enter each. */
	for (;;) {
		struct stat st;
		const char *d = *dir ? dir : "/";
		if (!stat(d, &st) && !svc_group_enters(&st, gid)) {
			svc_log("warning: the group %s cannot enter %s, so it cannot reach %s: give that directory to the "
				"group (mode 0710) or make it searchable (o+x)", text_show(group), text_show(d), text_show(sock));
			break;
		}
		if (!*dir)
			break;
		*strrchr(dir, '/') = 0; /* "/a/b" to "/a", "/a" to "" (the root) */
	}
	return 0;
}

/* --group (NULL: none): the socket is the group's, mode 0660, and its directory enterable by the
 * group, before the socket listens. */
static int svc_setup(struct svc *s, const char *store_opt, const char *socket_path, const char *group, char *sock,
		     size_t socklen)
{
	char err[512];
	char root[PATH_MAX];
	int r = store_root_resolve(store_opt, root, sizeof(root), err, sizeof(err));
	if (r) {
		svc_log("%s", err);
		return r;
	}
	/* The root, made as the store makes it (0700), then absolute: the children run from elsewhere. */
	for (char *p = root + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(root, 0700);
		*p = '/';
	}
	if (mkdir(root, 0700) && errno != EEXIST) {
		svc_log("VM store %s: %s", text_show(root), strerror(errno));
		return -errno;
	}
	if (!realpath(root, s->root)) {
		svc_log("VM store %s: %s", text_show(root), strerror(errno));
		return -errno;
	}
	ssize_t el = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
	if (el <= 0)
		return -errno;
	s->exe[el] = 0;
	svc_boot_id(s->boot_id, sizeof(s->boot_id));
	if (socket_path)
		snprintf(sock, socklen, "%s", socket_path);
	else
		snprintf(sock, socklen, "%s/%s", s->root, SERVICE_SOCKET);
	/* The service works from the socket's directory and binds its name only: a deep store's path
	 * may pass the 107 bytes of a Unix socket address (the CLI's client connects the same way).
	 * Everything else it names is absolute. */
	char *slash = strrchr(sock, '/');
	if (slash) {
		*slash = 0;
		if (chdir(slash == sock ? "/" : sock)) {
			r = -errno;
			*slash = '/';
			svc_log("%s: %s", text_show(sock), strerror(-r));
			return r;
		}
		*slash = '/';
	}
	const char *bind_name = slash ? slash + 1 : sock;
	struct file_socket_access access = { .gid = (gid_t)-1, .mode = 0660 };
	if (group && ((r = svc_group_gid(group, &access.gid)) || (r = svc_dir_group(s, sock, group, access.gid))))
		return r;
	/* Only the socket's owner and group reach the API: they may do anything its user may. */
	mode_t old = umask(0117);
	/* A service just killed may leave the socket alive for a moment in its children's descriptors
	 * (an operation between fork and exec, dying with it): a little patience before "in use". */
	for (int tries = 0;
	     (r = file_socket_listen(bind_name, 64, group ? &access : NULL, &s->lfd, &s->sock_id, err, sizeof(err))) ==
		     -EADDRINUSE && tries < 20;
	     tries++)
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	umask(old);
	if (r) {
		const char *hint = r == -EADDRINUSE ? " (is gen2vmd already running?)" : "";
		if (group && r == -EPERM)
			hint = " (the service's user must be a member of the group)";
		svc_log("%s: %s%s", text_show(sock), err, hint);
		return r;
	}
	if (group)
		svc_log("%s: the group %s reaches it (mode 0660)", text_show(sock), text_show(group));
	fcntl(s->lfd, F_SETFL, fcntl(s->lfd, F_GETFL) | O_NONBLOCK);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGCHLD);
	sigaddset(&m, SIGTERM);
	sigaddset(&m, SIGINT);
	sigaddset(&m, SIGHUP);
	sigprocmask(SIG_BLOCK, &m, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sfd = signalfd(-1, &m, SFD_CLOEXEC | SFD_NONBLOCK);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->sfd < 0 || s->ep < 0)
		return -errno;
	/* What it starts stays its child when `vm start` exits: the VM's exit code tells a crash. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_LISTEN, 0) };
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev);
	ev.data.u64 = EV(EV_SIGNAL, 0);
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->sfd, &ev);
	const char *hb = getenv("GEN2VMD_HEARTBEAT_CHECK_S");
	long hbs = hb ? strtol(hb, NULL, 10) : SVC_HEARTBEAT_CHECK_S;
	hbs = hbs >= 1 && hbs <= 3600 ? hbs : SVC_HEARTBEAT_CHECK_S;
	s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec its = { .it_interval = { .tv_sec = hbs }, .it_value = { .tv_sec = hbs } };
	if (s->tfd < 0 || timerfd_settime(s->tfd, 0, &its, NULL))
		return -errno;
	ev.data.u64 = EV(EV_TIMER, 0);
	epoll_ctl(s->ep, EPOLL_CTL_ADD, s->tfd, &ev);
	s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	s->root_wd = s->ifd >= 0 ? inotify_add_watch(s->ifd, s->root, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) : -1;
	if (s->root_wd < 0) {
		svc_log("VM store %s: cannot watch it (%s): VMs started around the service are seen at the next request "
			"that names them", text_show(s->root), strerror(errno));
	} else {
		ev.data.u64 = EV(EV_INOTIFY, 0);
		epoll_ctl(s->ep, EPOLL_CTL_ADD, s->ifd, &ev);
	}
	for (int i = 0; i < SVC_CONNS_MAX; i++)
		s->conns[i].fd = -1;
	for (int i = 0; i < SVC_VMS_MAX; i++)
		s->vms[i].pidfd = -1;
	return 0;
}

int service_run(const char *store_opt, const char *socket_path, const char *group)
{
	static struct svc s;
	char sock[PATH_MAX + 64];
	int r = svc_setup(&s, store_opt, socket_path, group, sock, sizeof(sock));
	if (r)
		return cli_exit_code(r);
	svc_scan(&s);
	svc_log("serving the VM store %s on %s", text_show(s.root), text_show(sock));
	bool quit = false;
	while (!quit) {
		uint64_t now = clock_mono_ms(), next = 0;
		for (int i = 0; i < SVC_CONNS_MAX; i++) {
			struct svc_conn *c = &s.conns[i];
			if (c->kind == CONN_FREE || !c->deadline_ms)
				continue;
			if (c->deadline_ms <= now) {
				/* A slow or silent client: its slot goes to others. */
				if (c->kind == CONN_READING)
					svc_respond_error(&s, i, "RequestTimeout", "the request did not arrive in time", CLI_EXIT_USAGE);
				if (c->kind != CONN_FREE && c->deadline_ms <= now)
					svc_conn_close(&s, i);
				continue;
			}
			if (!next || c->deadline_ms < next)
				next = c->deadline_ms;
		}
		struct epoll_event evs[32];
		int n = epoll_wait(s.ep, evs, 32, next ? (int)(next - now) : -1);
		if (n < 0 && errno != EINTR) {
			svc_log("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int k = 0; k < n; k++) {
			uint32_t kind = (uint32_t)(evs[k].data.u64 >> 32), i = (uint32_t)evs[k].data.u64;
			if (kind == EV_LISTEN) {
				svc_accept(&s);
			} else if (kind == EV_SIGNAL) {
				struct signalfd_siginfo si;
				while (read(s.sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGCHLD)
						svc_reap(&s);
					else if (si.ssi_signo != SIGHUP)
						quit = true;
				}
			} else if (kind == EV_CONN && i < SVC_CONNS_MAX && s.conns[i].kind != CONN_FREE) {
				if (evs[k].events & EPOLLOUT)
					if (!svc_conn_flush(&s, (int)i))
						continue;
				if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					svc_conn_read(&s, (int)i);
			} else if (kind == EV_TIMER) {
				svc_heartbeat_check(&s);
			} else if (kind == EV_INOTIFY) {
				svc_inotify(&s);
			} else if (kind == EV_VM && i < SVC_VMS_MAX && s.vms[i].pidfd >= 0) {
				svc_vm_pidfd(&s, &s.vms[i]);
			}
		}
	}
	/* The VMs keep running: a restart of the service finds them again. Operations under way finish
	 * on their own (each is its own process). */
	const char *slash = strrchr(sock, '/');
	file_socket_unlink(slash ? slash + 1 : sock, &s.sock_id); /* from its directory, where it was made */
	svc_log("stopping; the running VMs keep running");
	return CLI_EXIT_OK;
}

/* Runs exe with argv in a child and waits: true when it exited 0. */
static bool svc_run_ok(const char *exe, char *const argv[])
{
	pid_t c = fork();
	if (c == 0) {
		execv(exe, argv);
		_exit(CLI_EXIT_FAILED);
	}
	int st;
	return c > 0 && waitpid(c, &st, 0) == c && WIFEXITED(st) && !WEXITSTATUS(st);
}

int service_stop_vms(const char *store_opt, unsigned timeout_s)
{
	char root[PATH_MAX], err[512], exe[PATH_MAX], tmo[16];
	int r = store_root_resolve(store_opt, root, sizeof(root), err, sizeof(err));
	if (r) {
		svc_log("%s", err);
		return cli_exit_code(r);
	}
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (el <= 0)
		return CLI_EXIT_FAILED;
	exe[el] = 0;
	snprintf(tmo, sizeof(tmo), "%u", timeout_s);
	/* First the names of the VMs about to be stopped (gen2vmd.stopped): the next boot's service
	 * starts those of them whose automatic_start says if_running, as ran when the host went down. */
	char boot_id[64];
	svc_boot_id(boot_id, sizeof(boot_id));
	bool same;
	json_object *names = svc_list_load(root, SERVICE_STOPPED, "stopped", boot_id, &same);
	if (names && !same) {
		json_object_put(names);
		names = NULL;
	}
	if (!names)
		names = json_object_new_array();
	DIR *d = opendir(root);
	struct dirent *e;
	while (names && d && (e = readdir(d))) {
		char dir[PATH_MAX];
		if (!store_name_check(e->d_name, err, sizeof(err)) && !store_vm_exists(root, e->d_name, err, sizeof(err)) &&
		    !store_path(root, e->d_name, NULL, dir, sizeof(dir)) && store_run_lock_held(dir) == 1 &&
		    !svc_list_has(names, e->d_name))
			json_object_array_add(names, json_object_new_string(e->d_name));
	}
	if (names) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "boot_id", json_object_new_string(boot_id));
		json_object_object_add(o, "stopped", names);
		const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
		char p[PATH_MAX + 64], why[200];
		snprintf(p, sizeof(p), "%s/%s", root, SERVICE_STOPPED);
		if (file_replace_user(p, text, strlen(text), why, sizeof(why)))
			svc_log("%s: %s", text_show(p), why);
		json_object_put(o);
	}
	if (d)
		rewinddir(d);
	unsigned started = 0;
	while (d && (e = readdir(d))) {
		char dir[PATH_MAX], p[PATH_MAX + 64];
		if (store_name_check(e->d_name, err, sizeof(err)) || store_vm_exists(root, e->d_name, err, sizeof(err)) ||
		    store_path(root, e->d_name, NULL, dir, sizeof(dir)) || store_run_lock_held(dir) != 1)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, STORE_CONFIG);
		uint8_t *data;
		size_t len;
		json_object *doc = NULL;
		if (!file_read_user(p, 1 << 20, &data, &len, err, sizeof(err))) {
			doc = json_tokener_parse((const char *)data);
			free(data);
		}
		const char *as = doc ? svc_json_str(doc, "automatic_stop") : NULL;
		bool turn_off = as && !strcmp(as, "turn_off"), save = as && !strcmp(as, "save");
		json_object_put(doc);
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			setenv(SERVICE_ENV_DIRECT, "1", 1);
			/* A guest that does not shut down in time is turned off: the host is going down. */
			char *a1[] = { "gen2vm", "vm", "--store", root, "stop", e->d_name, "--timeout", tmo, NULL };
			char *a2[] = { "gen2vm", "vm", "--store", root, "stop", e->d_name, "--turn-off", NULL };
			char *a0[] = { "gen2vm", "vm", "--store", root, "stop", e->d_name, "--save", NULL };
			/* save: a VM that cannot be saved (a device without saving) is shut down instead. */
			if ((save && svc_run_ok(exe, a0)) || (!turn_off && svc_run_ok(exe, a1)))
				_exit(CLI_EXIT_OK);
			execv(exe, a2);
			_exit(CLI_EXIT_FAILED);
		}
		started += pid > 0;
	}
	if (d)
		closedir(d);
	int rc = CLI_EXIT_OK, st;
	for (unsigned i = 0; i < started; i++)
		if (wait(&st) > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
			rc = CLI_EXIT_FAILED;
	return rc;
}
