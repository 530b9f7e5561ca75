/* The guest services (file copy) integration service (src/devices/ic_fcopy.c) driven through the
 * loopback guest: negotiation of file copy 1.1, a small and a multi-fragment copy (the names in
 * UTF-16LE, non-ASCII too, the flags, the bytes at their offsets), the guest's refusals (exists, no
 * daemon), a guest that stops answering or answers garbage (CANCEL and a reason), cancellation, host
 * paths that are not regular files refused at once, and the setting being off by default. The guest
 * side answers like Linux's hv_fcopy.c (the same packet back, its status in the header). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
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
#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"
#include "ic_fixture.h"
#include "support/loopback.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- a VM with its integration services, and a guest ---- */


static const struct ic_version fc_all[] = { { 1, 1 } };

/* ---- the pure parts ---- */

static void assert_u16(const void *wire, const char *want_ascii_or_null, const uint16_t *want16)
{
	uint16_t got[IC_FCOPY_MAX_PATH];
	memcpy(got, wire, sizeof(got));
	if (want_ascii_or_null) {
		size_t n = strlen(want_ascii_or_null);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(got[i], (unsigned char)want_ascii_or_null[i]);
		for (size_t i = n; i < IC_FCOPY_MAX_PATH; i++)
			assert_int_equal(got[i], 0);
	} else {
		size_t i = 0;
		for (; want16[i]; i++)
			assert_int_equal(got[i], want16[i]);
		assert_int_equal(got[i], 0);
	}
}

static void test_split(void **state)
{
	uint16_t d[IC_FCOPY_MAX_PATH], n[IC_FCOPY_MAX_PATH];
	const char *why = "";
	assert_int_equal(ic_fcopy_split("/tmp/a.txt", d, n, &why), 0);
	assert_u16(d, "/tmp/", NULL);
	assert_u16(n, "a.txt", NULL);
	assert_int_equal(ic_fcopy_split("/a", d, n, &why), 0);
	assert_u16(d, "/", NULL);
	assert_u16(n, "a", NULL);
	assert_int_equal(ic_fcopy_split("/x/y//z", d, n, &why), 0);
	assert_u16(d, "/x/y/", NULL);
	assert_u16(n, "z", NULL);
	/* U+00FC, U+20AC, U+1F600 (a surrogate pair) */
	assert_int_equal(ic_fcopy_split("/h/j\xc3\xbcrg/\xe2\x82\xac\xf0\x9f\x98\x80", d, n, &why), 0);
	const uint16_t wd[] = { '/', 'h', '/', 'j', 0xfc, 'r', 'g', '/', 0 };
	const uint16_t wn[] = { 0x20ac, 0xd83d, 0xde00, 0 };
	assert_u16(d, NULL, wd);
	assert_u16(n, NULL, wn);
	assert_int_equal(ic_fcopy_split("tmp/a", d, n, &why), -EINVAL);
	assert_string_equal(why, "is not an absolute path");
	assert_int_equal(ic_fcopy_split("/tmp/", d, n, &why), -EINVAL);
	assert_int_equal(ic_fcopy_split("/tmp/..", d, n, &why), -EINVAL);
	assert_int_equal(ic_fcopy_split("/tmp/\xff", d, n, &why), -EINVAL);
	assert_string_equal(why, "is not UTF-8");
	char lng[600] = "/d/";
	memset(lng + 3, 'x', 259);
	assert_int_equal(ic_fcopy_split(lng, d, n, &why), 0);
	lng[3 + 259] = 'x';
	assert_int_equal(ic_fcopy_split(lng, d, n, &why), -EINVAL);
	/* a directory of 258 bytes and its slash: 259 */
	memset(lng, 0, sizeof(lng));
	lng[0] = '/';
	memset(lng + 1, 'y', 257);
	strcat(lng, "/f");
	assert_int_equal(ic_fcopy_split(lng, d, n, &why), 0);
	lng[258] = 'y';
	strcpy(lng + 259, "/f");
	assert_int_equal(ic_fcopy_split(lng, d, n, &why), -EINVAL);
	char buf[256];
	ic_fcopy_status_text(IC_FCOPY_START, IC_E_ALREADY_EXISTS, "/g", buf, sizeof(buf));
	assert_string_equal(buf, "/g exists in the guest (use --overwrite)");
	ic_fcopy_status_text(IC_FCOPY_START, IC_E_FAIL, "/g", buf, sizeof(buf));
	assert_non_null(strstr(buf, "hv_fcopy_daemon"));
}

/* ---- over VMBus ---- */

static char tmpdir[64];

static const char *tp(const char *name)
{
	static char b[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(b[i], sizeof(b[i]), "%s/%s", tmpdir, name);
	return b[i];
}

/* A host file of len bytes of a pattern; returns its bytes (static). */
static const uint8_t *make_file(const char *path, size_t len)
{
	static uint8_t data[1 << 16];
	assert_true(len <= sizeof(data));
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7 + i / 251);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return data;
}

/* The next host message (waits up to 3 s); returns its operation. */
static uint32_t guest_next(struct fx *f, struct vmbus_client_channel *ch, uint8_t *pkt, uint32_t *len, uint64_t *trans)
{
	assert_true(ic_guest_wait(f, ch, pkt, len, trans, 3000));
	struct ic_msg_hdr h = ic_hdr_of(pkt);
	assert_int_equal(h.icmsgtype, IC_MSG_FCOPY);
	assert_int_equal(h.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.icvermsg.major, 1);
	assert_int_equal(h.icvermsg.minor, 1);
	assert_int_equal(PADDED(IC_HDRS_SIZE + h.icmsgsize), *len);
	assert_true(*len >= IC_HDRS_SIZE + sizeof(struct ic_fcopy_hdr));
	struct ic_fcopy_hdr fh;
	memcpy(&fh, pkt + IC_HDRS_SIZE, sizeof(fh));
	return fh.operation;
}

/* A VM offering file copy with its channel open and negotiated. */
static void fx_ready(struct fx *f, struct vmbus_client_channel *ch)
{
	ic_fx_init(f, "default,fcopy", NULL);
	ic_fx_open(f, IC_FCOPY_CLASS_GUID_TEXT, ch);
	ic_guest_negotiate(ch, fc_all, 1, (struct ic_version){ 3, 0 }, (struct ic_version){ 1, 1 });
}

/* Plays a guest that accepts everything; checks START (names, flags, size) and the bytes. */
static void guest_accept_copy(struct fx *f, struct vmbus_client_channel *ch, const char *dir, const uint16_t *name16,
			      uint32_t flags, const uint8_t *want, size_t size)
{
	static uint8_t pkt[8192];
	static uint8_t got[1 << 16];
	uint32_t len;
	uint64_t trans;
	assert_int_equal(guest_next(f, ch, pkt, &len, &trans), IC_FCOPY_START);
	assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(struct ic_fcopy_start)));
	struct ic_fcopy_start st;
	memcpy(&st, pkt + IC_HDRS_SIZE, sizeof(st));
	assert_u16((const uint8_t *)&st + offsetof(struct ic_fcopy_start, path_name), dir, NULL);
	assert_u16((const uint8_t *)&st + offsetof(struct ic_fcopy_start, file_name), NULL, name16);
	assert_int_equal(st.copy_flags, flags);
	assert_int_equal(st.file_size, size);
	ic_guest_respond(ch, trans, pkt, len, IC_S_OK);
	size_t at = 0;
	for (;;) {
		uint32_t op = guest_next(f, ch, pkt, &len, &trans);
		if (op == IC_FCOPY_COMPLETE) {
			ic_guest_respond(ch, trans, pkt, len, IC_S_OK);
			break;
		}
		assert_int_equal(op, IC_FCOPY_WRITE);
		assert_int_equal(len, PADDED(IC_HDRS_SIZE + sizeof(struct ic_fcopy_data)));
		struct ic_fcopy_data m;
		memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
		assert_int_equal(m.offset, at);
		assert_true(m.size > 0 && m.size <= IC_FCOPY_FRAGMENT);
		assert_true(at + m.size <= size);
		assert_true(m.size == IC_FCOPY_FRAGMENT || at + m.size == size);
		memcpy(got + at, m.data, m.size);
		at += m.size;
		ic_guest_respond(ch, trans, pkt, len, IC_S_OK);
	}
	assert_int_equal(at, size);
	assert_memory_equal(got, want, size);
}

static void test_copy(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch);
	char reply[1024], cmd[512];
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "no file copy yet");

	/* small, to a non-ASCII name */
	const uint8_t *want = make_file(tp("small"), 5);
	struct ic_fx_call c;
	snprintf(cmd, sizeof(cmd), "copy-file %s /home/j\xc3\xb6rg/na\xc3\xafve\xe2\x82\xac.txt --create-dirs", tp("small"));
	ic_fx_verb_start(&c, &f, cmd);
	const uint16_t n1[] = { 'n', 'a', 0xef, 'v', 'e', 0x20ac, '.', 't', 'x', 't', 0 };
	uint8_t w1[5];
	memcpy(w1, want, 5);
	const uint16_t d1[] = { '/', 'h', 'o', 'm', 'e', '/', 'j', 0xf6, 'r', 'g', '/', 0 };
	/* the directory has a non-ASCII letter: compare as UTF-16 */
	{
		static uint8_t pkt[8192];
		uint32_t len;
		uint64_t trans;
		assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
		struct ic_fcopy_start st;
		memcpy(&st, pkt + IC_HDRS_SIZE, sizeof(st));
		assert_u16((const uint8_t *)&st + offsetof(struct ic_fcopy_start, path_name), NULL, d1);
		assert_u16((const uint8_t *)&st + offsetof(struct ic_fcopy_start, file_name), NULL, n1);
		assert_int_equal(st.copy_flags, IC_FCOPY_CREATE_PATH);
		assert_int_equal(st.file_size, 5);
		ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
		assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
		struct ic_fcopy_data m;
		memcpy(&m, pkt + IC_HDRS_SIZE, sizeof(m));
		assert_int_equal(m.offset, 0);
		assert_int_equal(m.size, 5);
		assert_memory_equal(m.data, w1, 5);
		assert_int_equal(m.data[5], 0);
		ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
		assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_COMPLETE);
		ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	}
	assert_int_equal(ic_fx_verb_join(&c), 0);
	assert_non_null(strstr(c.reply, "copied "));
	assert_non_null(strstr(c.reply, ": 5 bytes in "));

	/* several fragments, the last one partial */
	size_t size = 3 * IC_FCOPY_FRAGMENT + 1568;
	want = make_file(tp("big"), size);
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/big.bin --overwrite", tp("big"));
	ic_fx_verb_start(&c, &f, cmd);
	const uint16_t n2[] = { 'b', 'i', 'g', '.', 'b', 'i', 'n', 0 };
	guest_accept_copy(&f, &ch, "/tmp/", n2, IC_FCOPY_OVERWRITE, want, size);
	assert_int_equal(ic_fx_verb_join(&c), 0);
	assert_non_null(strstr(c.reply, "/tmp/big.bin: 20000 bytes in "));
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, "copied "));

	/* an empty file: START and COMPLETE only */
	want = make_file(tp("empty"), 0);
	snprintf(cmd, sizeof(cmd), "copy-file %s /e", tp("empty"));
	ic_fx_verb_start(&c, &f, cmd);
	const uint16_t n3[] = { 'e', 0 };
	guest_accept_copy(&f, &ch, "/", n3, 0, want, 0);
	assert_int_equal(ic_fx_verb_join(&c), 0);
	ic_fx_destroy(&f);
}

static void test_guest_errors(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch);
	static uint8_t pkt[8192];
	uint32_t len, ans_len;
	uint64_t trans;
	char cmd[512];
	struct ic_fx_call c;
	make_file(tp("f"), 10000);
	uint32_t saved_wait = ic_fcopy_answer_ms;

	/* exists: no CANCEL (Linux's daemon would delete the guest's file) */
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("f"));
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_guest_respond(&ch, trans, pkt, len, IC_E_ALREADY_EXISTS);
	assert_int_equal(ic_fx_verb_join(&c), -EEXIST);
	assert_non_null(strstr(c.reply, "/tmp/x exists in the guest (use --overwrite)"));
	assert_false(ic_guest_wait(&f, &ch, pkt, &len, &trans, 50));

	/* no daemon: Linux's kernel answers E_FAIL at once */
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_guest_respond(&ch, trans, pkt, len, IC_E_FAIL);
	assert_int_equal(ic_fx_verb_join(&c), -EIO);
	assert_non_null(strstr(c.reply, "the guest's file copy service is not running (hv_fcopy_daemon)"));
	assert_false(ic_guest_wait(&f, &ch, pkt, &len, &trans, 50));

	/* a WRITE fails (disk full): CANCEL, then the reason */
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
	ic_guest_respond(&ch, trans, pkt, len, IC_E_DISK_FULL);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_CANCEL);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(ic_fx_verb_join(&c), -ENOSPC);
	assert_non_null(strstr(c.reply, "failed after 6144 of 10000 bytes: the guest's disk is full"));

	/* no answer, and hostile answers (dropped): the wait ends, CANCEL goes out */
	ic_fcopy_answer_ms = 300;
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
	/* shorter than the fcopy header */
	ans_len = IC_HDRS_SIZE + 8;
	ic_guest_respond(&ch, trans, pkt, ans_len, IC_S_OK);
	/* another operation */
	struct ic_fcopy_hdr fh;
	memcpy(&fh, pkt + IC_HDRS_SIZE, sizeof(fh));
	fh.operation = IC_FCOPY_COMPLETE;
	memcpy(pkt + IC_HDRS_SIZE, &fh, sizeof(fh));
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	/* another transaction */
	fh.operation = IC_FCOPY_WRITE;
	memcpy(pkt + IC_HDRS_SIZE, &fh, sizeof(fh));
	ic_guest_respond(&ch, trans + 1, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_CANCEL);
	ic_guest_respond(&ch, trans, pkt, len, IC_E_FAIL); /* no daemon any more: fine */
	assert_int_equal(ic_fx_verb_join(&c), -ETIMEDOUT);
	assert_non_null(strstr(c.reply, "failed after 0 of 10000 bytes: the guest did not answer within 300 ms"));

	/* the channel closes under the copy */
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	assert_int_equal(vmbus_client_channel_close(&ch), 0);
	assert_int_equal(ic_fx_verb_join(&c), -ENOTCONN);
	assert_non_null(strstr(c.reply, "closed its file copy channel"));
	ic_fcopy_answer_ms = saved_wait;
	ic_fx_destroy(&f);
}

static void test_busy_and_cancel(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	fx_ready(&f, &ch);
	static uint8_t pkt[8192];
	uint32_t len;
	uint64_t trans;
	char cmd[512], reply[1024];
	struct ic_fx_call c;
	make_file(tp("f"), 20000);
	uint32_t saved = ic_tunables.verb_wait_ms;
	ic_tunables.verb_wait_ms = 100;
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("f"));
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
	/* the verb's short wait ended: the copy goes on behind it */
	assert_int_equal(ic_fx_verb_join(&c), 0);
	assert_non_null(strstr(c.reply, "0 of 20000 bytes (0%) so far; see copy-file-status"));
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_WRITE);
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)), 0);
	assert_non_null(strstr(reply, ": 6144 of 20000 bytes (30%)"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -EBUSY);
	assert_non_null(strstr(reply, "one copy at a time"));
	/* cancel: takes effect once this WRITE is answered */
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-cancel", reply, sizeof(reply)), 0);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_CANCEL);
	ic_guest_respond(&ch, trans, pkt, len, IC_S_OK);
	for (int i = 0; i < 200; i++) {
		if (ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)) != 0)
			break;
		usleep(5000);
	}
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)), -ECANCELED);
	assert_non_null(strstr(reply, "failed after 12288 of 20000 bytes: cancelled"));
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-cancel", reply, sizeof(reply)), -ESRCH);
	ic_tunables.verb_wait_ms = saved;

	/* the VM goes away in the middle of a copy: the worker stops */
	ic_fx_verb_start(&c, &f, cmd);
	assert_int_equal(guest_next(&f, &ch, pkt, &len, &trans), IC_FCOPY_START);
	ic_fx_verb_join(&c);
	ic_fx_destroy(&f);
}

static void test_host_paths(void **state)
{
	struct fx f;
	struct vmbus_client_channel ch;
	char reply[1024], cmd[512];
	ic_fx_init(&f, "fcopy", NULL);
	make_file(tp("f"), 10);
	/* offered but not connected */
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("f"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -ENOTCONN);
	assert_non_null(strstr(reply, "no guest file copy service connected"));
	ic_fx_open(&f, IC_FCOPY_CLASS_GUID_TEXT, &ch);
	ic_guest_negotiate(&ch, fc_all, 1, (struct ic_version){ 3, 0 }, (struct ic_version){ 1, 1 });
	assert_int_equal(mkdir(tp("dir"), 0700), 0);
	assert_int_equal(mkfifo(tp("fifo"), 0600), 0);
	uint64_t t0 = clock_mono_ns();
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("dir"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -EISDIR);
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("fifo"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -EINVAL);
	assert_non_null(strstr(reply, "FIFO"));
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/x", tp("missing"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -ENOENT);
	assert_true(clock_mono_ns() - t0 < 1000000000ull);
	snprintf(cmd, sizeof(cmd), "copy-file %s tmp/x", tp("f"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -EINVAL);
	assert_non_null(strstr(reply, "is not an absolute path"));
	snprintf(cmd, sizeof(cmd), "copy-file %s /tmp/", tp("f"));
	assert_int_equal(ic_fx_verb(&f, NULL, cmd, reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file onlyone", reply, sizeof(reply)), -EINVAL);
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file a b --bogus", reply, sizeof(reply)), -EINVAL);
	assert_false(ic_guest_wait(&f, &ch, (uint8_t[8192]){ 0 }, &(uint32_t){ 0 }, &(uint64_t){ 0 }, 20));
	ic_fx_destroy(&f);
	unlink(tp("fifo"));
	rmdir(tp("dir"));
}

static void test_setting(void **state)
{
	struct fx f;
	char reply[256];
	ic_fx_init(&f, NULL, NULL);
	assert_null(ic_fx_offer(&f, IC_FCOPY_CLASS_GUID_TEXT));
	assert_non_null(ic_fx_offer(&f, IC_SHUTDOWN_CLASS_GUID_TEXT));
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file /etc/hostname /tmp/x", reply, sizeof(reply)), -ENOTCONN);
	assert_string_equal(reply, "no guest file copy service: not offered (add fcopy to --integration-services)");
	assert_int_equal(ic_fx_verb(&f, NULL, "copy-file-status", reply, sizeof(reply)), 0);
	ic_fx_destroy(&f);
	ic_fx_init(&f, "default,guest-services", NULL);
	assert_non_null(ic_fx_offer(&f, IC_FCOPY_CLASS_GUID_TEXT));
	assert_non_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	ic_fx_destroy(&f);
	ic_fx_init(&f, "fcopy", NULL);
	assert_non_null(ic_fx_offer(&f, IC_FCOPY_CLASS_GUID_TEXT));
	assert_null(ic_fx_offer(&f, IC_HEARTBEAT_CLASS_GUID_TEXT));
	ic_fx_destroy(&f);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/g2vm-fcopy-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	const char *names[] = { "small", "big", "empty", "f", "fifo", "dir" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		unlink(tp(names[i]));
		rmdir(tp(names[i]));
	}
	rmdir(tmpdir);
	return 0;
}

int main(void)
{
	log_set_level(LOG_ERROR + 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_guest_errors),
		cmocka_unit_test(test_busy_and_cancel),
		cmocka_unit_test(test_host_paths),
		cmocka_unit_test(test_setting),
	};
	return cmocka_run_group_tests_name("ic_fcopy", tests, setup, teardown);
}
