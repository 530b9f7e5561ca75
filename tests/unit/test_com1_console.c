/* COM1's console (src/ui/console.c) with an attach socket: several clients at once, each getting the
 * output from its attach on, their input reaching the device, and a client that does not read never
 * holding up the writer (the vCPU). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ui/console.h"
#include "util/clock.h"

static char dir[64];

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/g2v-com1-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* What the device took, fed by the console thread; room for a few bytes at a time, as a UART's FIFO. */
struct sink {
	pthread_mutex_t lock;
	char got[4096];
	unsigned len;
	unsigned per_call;
};

static unsigned sink_input(void *opaque, const unsigned char *d, unsigned n)
{
	struct sink *s = opaque;
	pthread_mutex_lock(&s->lock);
	unsigned k = n < s->per_call ? n : s->per_call;
	if (k > sizeof(s->got) - s->len)
		k = (unsigned)(sizeof(s->got) - s->len);
	memcpy(s->got + s->len, d, k);
	s->len += k;
	pthread_mutex_unlock(&s->lock);
	return k;
}

static int attach(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* The last 4 bytes of a stream read in pieces. */
static void tail_keep(char tail[4], const char *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memmove(tail, tail + 1, 3);
		tail[3] = d[i];
	}
}

/* Reads until want bytes came or ms passed; returns how many. */
static size_t read_for(int fd, char *buf, size_t want, int ms)
{
	size_t got = 0;
	while (got < want) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, ms) <= 0)
			break;
		ssize_t n = read(fd, buf + got, want - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Waits until the console thread has taken n clients (accepting is asynchronous). */
static void wait_clients(struct console *c, unsigned n)
{
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&c->hub->lock);
		unsigned have = c->hub->nr_clients;
		pthread_mutex_unlock(&c->hub->lock);
		if (have == n)
			return;
		usleep(1000);
	}
	fail_msg("the console has not got %u clients", n);
}

static void open_socket_console(struct console *c, struct sink *s, char *path, size_t len)
{
	char err[256] = "", spec_text[300], name[32];
	static int seq;
	snprintf(name, sizeof(name), "com1-%d.sock", seq++); /* a failed test's socket stays with its test */
	path_in_dir(path, len, name);
	snprintf(spec_text, sizeof(spec_text), "socket:%s", path);
	struct console_spec spec;
	assert_int_equal(console_spec_parse(spec_text, &spec, err, sizeof(err)), 0);
	pthread_mutex_init(&s->lock, NULL);
	int r = console_open(c, &spec, NULL, sink_input, s, err, sizeof(err));
	if (r)
		fail_msg("console_open: %s", err);
}

static void test_clients_get_output_from_their_attach_on(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 4096 };
	char path[128], buf[64];
	open_socket_console(&c, &s, path, sizeof(path));
	console_write(&c, (const unsigned char *)"before anyone", 13); /* dropped: nobody attached */
	int a = attach(path), b = attach(path);
	wait_clients(&c, 2);
	console_write(&c, (const unsigned char *)"one", 3);
	assert_int_equal(read_for(a, buf, 3, 2000), 3);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(read_for(b, buf, 3, 2000), 3);
	assert_memory_equal(buf, "one", 3);
	int late = attach(path);
	wait_clients(&c, 3);
	console_write(&c, (const unsigned char *)"two", 3);
	assert_int_equal(read_for(late, buf, 3, 2000), 3);
	assert_memory_equal(buf, "two", 3); /* not "one", nor what came before anyone attached */
	assert_int_equal(read_for(a, buf, 3, 2000), 3);
	assert_memory_equal(buf, "two", 3);
	/* One leaves; the others go on. */
	close(b);
	wait_clients(&c, 2);
	console_write(&c, (const unsigned char *)"three", 5);
	assert_int_equal(read_for(late, buf, 5, 2000), 5);
	assert_memory_equal(buf, "three", 5);
	close(a);
	close(late);
	console_close(&c);
	struct stat st;
	assert_int_equal(lstat(path, &st), -1); /* the socket file is removed */
}

static void test_input_of_every_client_reaches_the_device(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 1 }; /* a full FIFO: one byte at a time */
	char path[128];
	open_socket_console(&c, &s, path, sizeof(path));
	int a = attach(path), b = attach(path);
	wait_clients(&c, 2);
	assert_int_equal(send(a, "echo hi\n", 8, 0), 8);
	for (int i = 0; i < 2000 && s.len < 8; i++)
		usleep(1000);
	assert_int_equal(send(b, "ls\n", 3, 0), 3);
	for (int i = 0; i < 2000 && s.len < 11; i++)
		usleep(1000);
	pthread_mutex_lock(&s.lock);
	assert_int_equal(s.len, 11);
	assert_memory_equal(s.got, "echo hi\nls\n", 11);
	pthread_mutex_unlock(&s.lock);
	close(a);
	close(b);
	console_close(&c);
}

/* Reads fd until the output's last bytes are "END\n"; returns how many bytes came. */
static size_t read_to_end(int fd, const char *who)
{
	char buf[65536], tail[4] = "";
	size_t got = 0;
	while (memcmp(tail, "END\n", 4)) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 5000) <= 0)
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		tail_keep(tail, buf, (size_t)n);
	}
	if (memcmp(tail, "END\n", 4))
		fail_msg("the %s got %zu bytes ending in %02x %02x %02x %02x", who, got, tail[0], tail[1], tail[2], tail[3]);
	return got;
}

static double now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

/* A client that never reads: the writer goes on at full speed, a reading client gets everything up
 * to the end, and the stuck one loses the middle, not the latest output. */
static void test_a_stuck_client_never_holds_up_the_writer(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 4096 };
	char path[128];
	open_socket_console(&c, &s, path, sizeof(path));
	int stuck = attach(path), reader = attach(path);
	wait_clients(&c, 2);
	static char line[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
	const size_t total = 16u << 20;
	size_t rd = 0;
	char buf[65536];
	double t0 = now_s(), worst = 0;
	for (size_t w = 0; w < total; w += sizeof(line) - 1) {
		double t = now_s();
		console_write(&c, (const unsigned char *)line, sizeof(line) - 1);
		if (now_s() - t > worst)
			worst = now_s() - t;
		/* The reader keeps up (drained as the writer goes, as a terminal would). */
		ssize_t n;
		while ((n = recv(reader, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			rd += (size_t)n;
	}
	console_write(&c, (const unsigned char *)"END\n", 4);
	double took = now_s() - t0;
	assert_true(took < 30);
	assert_true(worst < 0.5); /* a write never waits for a client */
	/* The reader gets the end; what it lost (if the thread fell behind) was said in the log. */
	rd += read_to_end(reader, "reader");
	/* The stuck client: what its socket held, then the latest output; far less than was written. */
	size_t st = read_to_end(stuck, "stuck client");
	assert_true(st < total / 2);
	assert_true(st > 0);
	close(stuck);
	close(reader);
	console_close(&c);
}

static void test_clients_past_the_limit_are_told_and_closed(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 4096 };
	char path[128], buf[256];
	open_socket_console(&c, &s, path, sizeof(path));
	int fds[CONSOLE_CLIENTS];
	for (int i = 0; i < CONSOLE_CLIENTS; i++)
		fds[i] = attach(path);
	wait_clients(&c, CONSOLE_CLIENTS);
	int extra = attach(path);
	size_t n = read_for(extra, buf, sizeof(buf) - 1, 2000);
	buf[n] = 0;
	assert_non_null(strstr(buf, "16 clients attached already"));
	assert_int_equal(read(extra, buf, 1), 0); /* then closed */
	close(extra);
	console_write(&c, (const unsigned char *)"x", 1);
	assert_int_equal(read_for(fds[CONSOLE_CLIENTS - 1], buf, 1, 2000), 1);
	for (int i = 0; i < CONSOLE_CLIENTS; i++)
		close(fds[i]);
	console_close(&c);
}

/* file:PATH with an attach socket (what `vm start` runs): the log gets everything, clients what came
 * after their attach. */
static void test_the_log_and_the_attach_socket_together(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 4096 };
	char log[128], sock[128], spec_text[200], err[256] = "", buf[64];
	pthread_mutex_init(&s.lock, NULL);
	path_in_dir(log, sizeof(log), "console.log");
	path_in_dir(sock, sizeof(sock), "console.sock");
	snprintf(spec_text, sizeof(spec_text), "file:%s", log);
	struct console_spec spec;
	assert_int_equal(console_spec_parse(spec_text, &spec, err, sizeof(err)), 0);
	if (console_open(&c, &spec, sock, sink_input, &s, err, sizeof(err)))
		fail_msg("console_open: %s", err);
	console_commit(&c);
	console_write(&c, (const unsigned char *)"boot\n", 5);
	int a = attach(sock);
	wait_clients(&c, 1);
	console_write(&c, (const unsigned char *)"login: ", 7);
	assert_int_equal(read_for(a, buf, 7, 2000), 7);
	assert_memory_equal(buf, "login: ", 7);
	assert_int_equal(send(a, "root\n", 5, 0), 5);
	for (int i = 0; i < 2000 && s.len < 5; i++)
		usleep(1000);
	assert_int_equal(s.len, 5);
	close(a);
	console_close(&c);
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, "boot\nlogin: ", 12);
	unlink(log);
}

/* A live socket of another process at the attach path is refused, and left alone. */
static void test_a_live_socket_is_not_taken_over(void **state)
{
	(void)state;
	struct console c, other;
	struct sink s = { .per_call = 4096 };
	char path[128], err[256] = "";
	open_socket_console(&other, &s, path, sizeof(path));
	struct console_spec none = { .kind = CONSOLE_NONE };
	assert_int_equal(console_open(&c, &none, path, sink_input, &s, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, path));
	int a = attach(path); /* still the first one's */
	wait_clients(&other, 1);
	close(a);
	console_close(&other);
}

/* stdio (a terminal's input, here a pipe) with a full attach socket: input from both reaches the
 * device, output goes to every client. */
static void test_stdio_and_a_full_attach_socket(void **state)
{
	(void)state;
	struct console c;
	struct sink s = { .per_call = 4096 };
	char sock[128], err[256] = "", buf[16];
	pthread_mutex_init(&s.lock, NULL);
	path_in_dir(sock, sizeof(sock), "stdio-attach.sock");
	int in[2], saved_in = dup(STDIN_FILENO);
	assert_int_equal(pipe(in), 0);
	dup2(in[0], STDIN_FILENO);
	struct console_spec spec = { .kind = CONSOLE_STDIO };
	int out[2], saved_out = dup(STDOUT_FILENO);
	assert_int_equal(pipe(out), 0);
	dup2(out[1], STDOUT_FILENO);
	if (console_open(&c, &spec, sock, sink_input, &s, err, sizeof(err)))
		fail_msg("console_open: %s", err);
	int fds[CONSOLE_CLIENTS];
	for (int i = 0; i < CONSOLE_CLIENTS; i++)
		fds[i] = attach(sock);
	wait_clients(&c, CONSOLE_CLIENTS);
	assert_int_equal(write(in[1], "ab", 2), 2);
	assert_int_equal(send(fds[CONSOLE_CLIENTS - 1], "c", 1, 0), 1);
	for (int i = 0; i < 2000 && s.len < 3; i++)
		usleep(1000);
	assert_int_equal(s.len, 3);
	console_write(&c, (const unsigned char *)"hi", 2);
	for (int i = 0; i < CONSOLE_CLIENTS; i++) {
		assert_int_equal(read_for(fds[i], buf, 2, 2000), 2);
		assert_memory_equal(buf, "hi", 2);
		close(fds[i]);
	}
	assert_int_equal(read_for(out[0], buf, 2, 2000), 2); /* stdout too */
	console_close(&c);
	dup2(saved_in, STDIN_FILENO);
	dup2(saved_out, STDOUT_FILENO);
	close(saved_in);
	close(saved_out);
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clients_get_output_from_their_attach_on),
		cmocka_unit_test(test_input_of_every_client_reaches_the_device),
		cmocka_unit_test(test_a_stuck_client_never_holds_up_the_writer),
		cmocka_unit_test(test_clients_past_the_limit_are_told_and_closed),
		cmocka_unit_test(test_the_log_and_the_attach_socket_together),
		cmocka_unit_test(test_a_live_socket_is_not_taken_over),
		cmocka_unit_test(test_stdio_and_a_full_attach_socket),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
