/* The guest services (file copy) integration service (class 34d14be3-..., Linux's hv_fcopy.c with
 * its user-space hv_fcopy_daemon): `copy-file HOSTPATH GUESTPATH [--overwrite] [--create-dirs]`
 * copies a host file into the guest as Hyper-V's Copy-VMFile does. Off unless "fcopy" (or
 * "guest-services") is in --integration-services, as on Hyper-V.
 *
 * One copy at a time, on a worker thread this device owns: the control socket serves one command at
 * a time (src/ui/control.c), and a copy of tens of MiB is thousands of round trips through the
 * guest's kernel and daemon. The verb starts the worker and waits at most ic_tunables.verb_wait_ms
 * for it: a small copy or an early refusal ("exists", no daemon) is answered at once, a longer one
 * says "copying ..." and `copy-file-status` shows its progress and then its outcome;
 * `copy-file-cancel` stops it between two messages.
 *
 * The guest's side, as Linux has it: the kernel answers E_FAIL at once while no daemon has opened
 * /dev/vmbus/hv_fcopy, relays each message to the daemon otherwise, and answers E_FAIL itself when
 * the daemon is silent for 30 s; while a message is with the daemon it reads nothing else from the
 * channel. The worker therefore sends one message, waits for its answer (ic_fcopy_answer_ms), and
 * only then the next. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/ic.h"
#include "devices/ic_fcopy.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/log.h"
#include "util/text.h"

/* Linux offers only 1.1 (WIN8_SRV_VERSION); the framework versions are the common ones. */
static const struct ic_version fc_versions[] = { { 1, 1 } };

static const struct ic_service_def fc_def = {
	.name = "file copy",
	.msgtype = IC_MSG_FCOPY,
	.fw = ic_framework_versions,
	.nr_fw = 2,
	.msg = fc_versions,
	.nr_msg = 1,
};

_Static_assert(IC_HDRS_SIZE + sizeof(struct ic_fcopy_data) <= IC_PACKET_MAX, "a WRITE fits ic_dev_send");

uint32_t ic_fcopy_answer_ms = 35000;

enum fc_state { FC_NONE, FC_RUNNING, FC_DONE, FC_FAILED };

struct fc {
	struct ic_dev *d; /* NULL: not offered */
	/* Everything below under d->lock. */
	uint64_t sent_trans, answered_trans;
	uint32_t sent_op, status;
	enum fc_state state;
	bool thread_live; /* a worker to join */
	bool quit;        /* the device goes away */
	bool cancel;      /* copy-file-cancel */
	pthread_t thread;
	int fd;
	int err; /* FC_FAILED: the verb's -errno */
	uint32_t flags;
	uint64_t size, done, t0_ns, t1_ns;
	char host[TEXT_SHOW_MAX], guest[TEXT_SHOW_MAX]; /* as shown in messages */
	char reason[TEXT_SHOW_MAX + 256];                            /* FC_FAILED */
	struct ic_fcopy_start start;
	struct ic_fcopy_data data;
};

/* ---- pure parts ---- */

/* Valid UTF-8 (checked by the caller) of len bytes into NUL-terminated UTF-16LE (cap units). */
static int fc_utf16(const char *s, size_t len, uint16_t *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		const unsigned char *p = (const unsigned char *)s + i;
		uint32_t c;
		if (p[0] < 0x80) {
			c = p[0];
			i += 1;
		} else if (p[0] < 0xe0) {
			c = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
			i += 2;
		} else if (p[0] < 0xf0) {
			c = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
			i += 3;
		} else {
			c = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 | (uint32_t)(p[2] & 0x3f) << 6 |
			    (p[3] & 0x3f);
			i += 4;
		}
		if (c >= 0x10000) {
			if (o + 2 >= cap)
				return -EINVAL;
			c -= 0x10000;
			out[o++] = (uint16_t)(0xd800 + (c >> 10));
			out[o++] = (uint16_t)(0xdc00 + (c & 0x3ff));
		} else {
			if (o + 1 >= cap)
				return -EINVAL;
			out[o++] = (uint16_t)c;
		}
	}
	while (o < cap)
		out[o++] = 0;
	return 0;
}

int ic_fcopy_split(const char *g, uint16_t path_name[IC_FCOPY_MAX_PATH], uint16_t file_name[IC_FCOPY_MAX_PATH],
		   const char **why)
{
	size_t n = strlen(g);
	if (g[0] != '/') {
		*why = "is not an absolute path";
		return -EINVAL;
	}
	if (g[n - 1] == '/') {
		*why = "names a directory, not a file (it ends with '/')";
		return -EINVAL;
	}
	if (!text_is_utf8(g)) {
		*why = "is not UTF-8";
		return -EINVAL;
	}
	const char *slash = strrchr(g, '/');
	const char *name = slash + 1;
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		*why = "ends with . or ..";
		return -EINVAL;
	}
	/* The directory with one trailing slash ("/tmp/", "/" at the root): Linux's daemon checks (and
	 * with CREATE_PATH creates) only the components of path_name that a '/' follows, so without it the
	 * last directory would never be created. It opens path_name + "/" + file_name; "//" is harmless. */
	size_t dlen = (size_t)(slash - g);
	while (dlen > 0 && g[dlen - 1] == '/')
		dlen--;
	dlen++; /* one slash */
	/* The guest's kernel converts each name to at most W_MAX_PATH - 1 bytes of UTF-8 (cutting a longer
	 * one short), so this is the limit, whatever its length in UTF-16. */
	if (dlen > IC_FCOPY_MAX_PATH - 1 || strlen(name) > IC_FCOPY_MAX_PATH - 1) {
		*why = "has a directory or file name longer than 259 bytes";
		return -EINVAL;
	}
	if (fc_utf16(g, dlen, path_name, IC_FCOPY_MAX_PATH) || fc_utf16(name, strlen(name), file_name, IC_FCOPY_MAX_PATH)) {
		*why = "has a directory or file name longer than 259 UTF-16 units";
		return -EINVAL;
	}
	return 0;
}

void ic_fcopy_status_text(uint32_t op, uint32_t status, const char *shown, char *buf, size_t len)
{
	if (status == IC_E_ALREADY_EXISTS) {
		snprintf(buf, len, "%s exists in the guest (use --overwrite)", shown);
	} else if (status == IC_E_DISK_FULL) {
		snprintf(buf, len, "the guest's disk is full");
	} else if (status == IC_E_FAIL && op == IC_FCOPY_START) {
		/* Linux answers E_FAIL itself when no daemon listens; its daemon answers it too when it
		 * cannot create the directory or open the file: the status cannot tell them apart. */
		snprintf(buf, len,
			 "the guest refused to create %s (E_FAIL): the guest's file copy service is not running "
			 "(hv_fcopy_daemon), or it cannot create the file there (missing directory: --create-dirs; "
			 "permissions)",
			 shown);
	} else if (status == IC_E_FAIL) {
		snprintf(buf, len, "the guest failed to write %s (E_FAIL: its file copy service stopped, or a write error)",
			 shown);
	} else {
		snprintf(buf, len, "the guest failed the copy to %s (status 0x%08x)", shown, status);
	}
}

/* ---- the worker ---- */

static void fc_reply(struct ic_dev *d, const struct ic_reply *r)
{
	struct fc *f = d->svc;
	struct ic_fcopy_hdr h;
	/* Linux answers with the very packet it got: at least the header, naming the same operation. */
	if (r->body_len < sizeof(h)) {
		log_guest("file copy integration service: an answer shorter than its header was dropped");
		return;
	}
	memcpy(&h, r->body, sizeof(h));
	if (h.operation != f->sent_op) {
		log_guest("file copy integration service: an answer for operation %u (not %u) was dropped", h.operation,
			  f->sent_op);
		return;
	}
	f->answered_trans = f->sent_trans;
	f->status = r->status;
}

static const struct ic_dev_ops fc_ops = { .reply = fc_reply };

/* With d->lock held: sends op's message (body, len) and waits for its answer. 0 with *status;
 * -ETIMEDOUT, -ENOTCONN (the channel closed), -ECANCELED (the device goes away) or a send error. */
static int fc_exchange(struct fc *f, uint32_t op, const void *body, uint32_t len, uint32_t *status)
{
	struct ic_dev *d = f->d;
	f->sent_op = op;
	uint64_t trans;
	int r = ic_dev_send(d, body, len, &trans);
	if (r)
		return r;
	f->sent_trans = trans;
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_fcopy_answer_ms * 1000000ull;
	while (f->answered_trans != trans && d->chan && !f->quit && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	if (f->answered_trans == trans) {
		*status = f->status;
		return 0;
	}
	return f->quit ? -ECANCELED : !d->chan ? -ENOTCONN : -ETIMEDOUT;
}

/* With d->lock held: why an exchange failed, into f->reason; returns the verb's -errno. */
static int fc_fail_reason(struct fc *f, uint32_t op, int r, uint32_t status)
{
	if (r == 0) {
		ic_fcopy_status_text(op, status, f->guest, f->reason, sizeof(f->reason));
		return status == IC_E_ALREADY_EXISTS ? -EEXIST : status == IC_E_DISK_FULL ? -ENOSPC : -EIO;
	}
	if (r == -ETIMEDOUT)
		snprintf(f->reason, sizeof(f->reason),
			 "the guest did not answer within %u ms (its file copy service (hv_fcopy_daemon) is stuck?)",
			 ic_fcopy_answer_ms);
	else if (r == -ENOTCONN)
		snprintf(f->reason, sizeof(f->reason), "the guest closed its file copy channel");
	else if (r == -ECANCELED)
		snprintf(f->reason, sizeof(f->reason), "the VM is going away");
	else
		snprintf(f->reason, sizeof(f->reason), "cannot send to the guest: %s", strerror(-r));
	return r;
}

static void *fc_worker(void *arg)
{
	struct fc *f = arg;
	pthread_setname_np(pthread_self(), "fcopy"); /* named in /proc (bench/console) */
	struct ic_dev *d = f->d;
	uint32_t status = 0;
	pthread_mutex_lock(&d->lock);
	int r = fc_exchange(f, IC_FCOPY_START, &f->start, sizeof(f->start), &status);
	if (r || status != IC_S_OK) {
		/* No CANCEL after a refused START: nothing was created, and Linux's daemon deletes the file
		 * it last named on CANCEL; daemons older than its 2020 hibernation fix keep that name after a
		 * refused START, so after "exists" it would be the guest's own file. */
		f->err = fc_fail_reason(f, IC_FCOPY_START, r, status);
		goto out;
	}
	struct ic_fcopy_data *m = &f->data;
	while (f->done < f->size) {
		if (f->cancel || f->quit) {
			snprintf(f->reason, sizeof(f->reason), "%s", f->quit ? "the VM is going away" : "cancelled");
			f->err = -ECANCELED;
			goto cancel;
		}
		uint64_t left = f->size - f->done;
		uint32_t want = left < IC_FCOPY_FRAGMENT ? (uint32_t)left : IC_FCOPY_FRAGMENT;
		uint64_t off = f->done;
		/* The file is read without the lock: the status verb and the guest's answers go on. */
		pthread_mutex_unlock(&d->lock);
		ssize_t n = pread(f->fd, m->data, want, (off_t)off);
		int e = errno;
		pthread_mutex_lock(&d->lock);
		if (n != (ssize_t)want) {
			if (n < 0)
				snprintf(f->reason, sizeof(f->reason), "cannot read the host file: %s", strerror(e));
			else
				snprintf(f->reason, sizeof(f->reason), "the host file shrank while being copied");
			f->err = n < 0 ? -e : -EIO;
			goto cancel;
		}
		memset(m->data + want, 0, IC_FCOPY_FRAGMENT - want); /* the last fragment's tail */
		m->hdr.operation = IC_FCOPY_WRITE;
		m->offset = off;
		m->size = want;
		r = fc_exchange(f, IC_FCOPY_WRITE, m, sizeof(*m), &status);
		if (r || status != IC_S_OK) {
			f->err = fc_fail_reason(f, IC_FCOPY_WRITE, r, status);
			goto cancel;
		}
		f->done += want;
	}
	struct ic_fcopy_hdr h = { .operation = IC_FCOPY_COMPLETE };
	r = fc_exchange(f, IC_FCOPY_COMPLETE, &h, sizeof(h), &status);
	if (r || status != IC_S_OK) {
		f->err = fc_fail_reason(f, IC_FCOPY_COMPLETE, r, status);
		goto cancel;
	}
	f->state = FC_DONE;
	log_info("file copy: %s copied to the guest's %s (%llu bytes)", f->host, f->guest, (unsigned long long)f->size);
	goto done;
cancel:
	/* The guest deletes its partial file. When the device goes away nobody waits for the answer. */
	if (d->chan && d->s.state == IC_READY) {
		struct ic_fcopy_hdr c = { .operation = IC_FCOPY_CANCEL };
		uint32_t st;
		if (f->quit)
			ic_dev_send(d, &c, sizeof(c), NULL);
		else if (fc_exchange(f, IC_FCOPY_CANCEL, &c, sizeof(c), &st) == 0 && st != IC_S_OK)
			log_debug("file copy integration service: the guest answered CANCEL with 0x%08x", st);
	}
out:
	f->state = FC_FAILED;
	log_info("file copy to the guest's %s failed: %s", f->guest, f->reason);
done:
	close(f->fd);
	f->fd = -1;
	f->t1_ns = clock_mono_ns();
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* ---- the verbs ---- */

/* With d->lock held (or no device): the copy's state for a reply. Returns the verb's result. */
static int fc_describe(struct fc *f, char *reply, size_t len)
{
	switch (f->state) {
	case FC_NONE:
		snprintf(reply, len, "no file copy yet");
		return 0;
	case FC_RUNNING:
		snprintf(reply, len, "copying %s to %s: %llu of %llu bytes (%u%%)", f->host, f->guest,
			 (unsigned long long)f->done, (unsigned long long)f->size,
			 f->size ? (unsigned)(f->done * 100 / f->size) : 0u);
		return 0;
	case FC_DONE: {
		uint64_t ms = (f->t1_ns - f->t0_ns) / 1000000ull;
		snprintf(reply, len, "copied %s to %s: %llu bytes in %llu.%03llu s", f->host, f->guest,
			 (unsigned long long)f->size, (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
		return 0;
	}
	case FC_FAILED:
		snprintf(reply, len, "copy of %s to %s failed after %llu of %llu bytes: %s", f->host, f->guest,
			 (unsigned long long)f->done, (unsigned long long)f->size, f->reason);
		return f->err ? f->err : -EIO;
	}
	return 0;
}

static int fc_verb_copy(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct fc *f = state;
	const char *host = NULL, *guest = NULL;
	uint32_t flags = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--overwrite"))
			flags |= IC_FCOPY_OVERWRITE;
		else if (!strcmp(argv[i], "--create-dirs"))
			flags |= IC_FCOPY_CREATE_PATH;
		else if (argv[i][0] != '-' && !host)
			host = argv[i];
		else if (argv[i][0] != '-' && !guest)
			guest = argv[i];
		else
			host = guest = NULL, i = argc;
	}
	if (!host || !guest) {
		snprintf(reply, len, "usage: copy-file HOSTPATH GUESTPATH [--overwrite] [--create-dirs]");
		return -EINVAL;
	}
	if (!f->d) {
		snprintf(reply, len, "no guest file copy service: not offered (add fcopy to --integration-services)");
		return -ENOTCONN;
	}
	uint16_t path16[IC_FCOPY_MAX_PATH], name16[IC_FCOPY_MAX_PATH];
	const char *why = "";
	if (ic_fcopy_split(guest, path16, name16, &why)) {
		snprintf(reply, len, "GUESTPATH %s %s", text_show(guest), why);
		return -EINVAL;
	}
	char fwhy[128];
	int fd = file_open_user(host, O_RDONLY, 0, FILE_REG, fwhy, sizeof(fwhy));
	if (fd < 0) {
		snprintf(reply, len, "%s: %s", text_show(host), fwhy);
		return fd;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		int r = -errno;
		close(fd);
		snprintf(reply, len, "%s: %s", text_show(host), strerror(-r));
		return r;
	}
	struct ic_dev *d = f->d;
	pthread_mutex_lock(&d->lock);
	if (f->state == FC_RUNNING) {
		int r = fc_describe(f, reply, len);
		size_t l = strlen(reply);
		snprintf(reply + l, len - l, " (one copy at a time: see copy-file-status)");
		pthread_mutex_unlock(&d->lock);
		close(fd);
		return r ? r : -EBUSY;
	}
	if (!d->chan || d->s.state != IC_READY) {
		pthread_mutex_unlock(&d->lock);
		close(fd);
		snprintf(reply, len, "no guest file copy service connected (the guest's hv_utils is not loaded, or "
				     "does not speak file copy 1.1)");
		return -ENOTCONN;
	}
	if (f->thread_live) { /* finished (not FC_RUNNING): it only has to return */
		pthread_join(f->thread, NULL);
		f->thread_live = false;
	}
	memset(&f->start, 0, sizeof(f->start));
	f->start.hdr.operation = IC_FCOPY_START;
	memcpy(f->start.file_name, name16, sizeof(name16));
	memcpy(f->start.path_name, path16, sizeof(path16));
	f->start.copy_flags = flags;
	f->start.file_size = (uint64_t)st.st_size;
	memset(&f->data, 0, sizeof(f->data));
	snprintf(f->host, sizeof(f->host), "%s", text_show(host));
	snprintf(f->guest, sizeof(f->guest), "%s", text_show(guest));
	f->fd = fd;
	f->flags = flags;
	f->size = (uint64_t)st.st_size;
	f->done = 0;
	f->err = 0;
	f->cancel = false;
	f->reason[0] = 0;
	f->t0_ns = f->t1_ns = clock_mono_ns();
	f->state = FC_RUNNING;
	int r = -pthread_create(&f->thread, NULL, fc_worker, f);
	if (r) {
		f->state = FC_NONE;
		f->fd = -1;
		pthread_mutex_unlock(&d->lock);
		close(fd);
		snprintf(reply, len, "cannot start the copy: %s", strerror(-r));
		return r;
	}
	f->thread_live = true;
	/* A short wait, so that a small copy or a refusal is answered here (the control socket serves one
	 * command at a time: a long copy goes on behind copy-file-status). */
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_tunables.verb_wait_ms * 1000000ull;
	while (f->state == FC_RUNNING && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	r = fc_describe(f, reply, len);
	if (f->state == FC_RUNNING) {
		size_t l = strlen(reply);
		snprintf(reply + l, len - l, " so far; see copy-file-status");
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int fc_verb_status(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct fc *f = state;
	if (argc != 1) {
		snprintf(reply, len, "usage: copy-file-status");
		return -EINVAL;
	}
	if (!f->d) {
		snprintf(reply, len, "file copy not offered (see --integration-services)");
		return 0;
	}
	pthread_mutex_lock(&f->d->lock);
	int r = fc_describe(f, reply, len);
	pthread_mutex_unlock(&f->d->lock);
	return r;
}

static int fc_verb_cancel(void *state, int argc, char **argv, char *reply, size_t len)
{
	struct fc *f = state;
	if (argc != 1) {
		snprintf(reply, len, "usage: copy-file-cancel");
		return -EINVAL;
	}
	if (!f->d) {
		snprintf(reply, len, "file copy not offered (see --integration-services)");
		return -ENOTCONN;
	}
	struct ic_dev *d = f->d;
	pthread_mutex_lock(&d->lock);
	if (f->state != FC_RUNNING) {
		pthread_mutex_unlock(&d->lock);
		snprintf(reply, len, "no file copy in progress");
		return -ESRCH;
	}
	f->cancel = true;
	uint64_t deadline = clock_mono_ns() + (uint64_t)ic_tunables.verb_wait_ms * 1000000ull;
	while (f->state == FC_RUNNING && clock_mono_ns() < deadline)
		ic_dev_wait(d, deadline);
	int r = fc_describe(f, reply, len);
	pthread_mutex_unlock(&d->lock);
	return r == -ECANCELED ? 0 : r;
}

/* ---- the class ---- */

/* The copy's worker ends before the device goes. */
static void fc_stop(void *svc)
{
	struct fc *f = svc;
	if (!f->d)
		return;
	pthread_mutex_lock(&f->d->lock);
	f->quit = true;
	pthread_cond_broadcast(&f->d->cond);
	bool live = f->thread_live;
	pthread_mutex_unlock(&f->d->lock);
	if (live)
		pthread_join(f->thread, NULL);
}

static void fc_init(void *svc, const struct vmdev_host *host)
{
	struct fc *f = svc;
	f->fd = -1;
}

static const struct ic_service_class fc_class = {
	.what = "the file copy integration service",
	.bit = IC_SVC_FCOPY,
	.class_guid = IC_FCOPY_CLASS_GUID_TEXT,
	.instance = 0x7e570307u,
	.ops = &fc_ops,
	.size = sizeof(struct fc),
	.init = fc_init,
	.stop = fc_stop,
};

static void fc_destroy(void *state)
{
	ic_service_destroy(&fc_class, state);
}

static int fc_create(const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		     size_t errlen)
{
	return ic_service_create(&fc_class, &fc_def, host, cfgs, n, state, err, errlen);
}

/* Saving: like the other services (their channel reopens and negotiates again), but not in the
 * middle of a copy, whose worker and host file cannot be carried over. */
static int fc_save(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct fc *f = state;
	bool busy = false;
	if (f->d) {
		pthread_mutex_lock(&f->d->lock);
		busy = f->state == FC_RUNNING;
		pthread_mutex_unlock(&f->d->lock);
	}
	if (busy) {
		snprintf(err, errlen, "a file copy is in progress (copy-file-status; copy-file-cancel ends it)");
		return -EBUSY;
	}
	return vmdev_save_nothing(state, out, len, err, errlen);
}

static const struct vmdev_verb fc_verbs[] = {
	{ "copy-file", "copy-file HOSTPATH GUESTPATH [--overwrite] [--create-dirs]", fc_verb_copy },
	{ "copy-file-status", "copy-file-status", fc_verb_status },
	{ "copy-file-cancel", "copy-file-cancel", fc_verb_cancel },
	{ NULL, NULL, NULL },
};

const struct vmdev_class ic_fcopy_class = {
	.name = "fcopy",
	.class_guid = IC_FCOPY_CLASS_GUID_TEXT,
	.always = true,
	.settings_from = &ic_settings_class,
	.create = fc_create,
	.destroy = fc_destroy,
	.verbs = fc_verbs,
	.save = fc_save,
	.restore = vmdev_restore_nothing,
};
