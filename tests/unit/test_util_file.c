/* The safe open, the bounded reader and the socket helpers (src/util/file.c), and message-safe text
 * (src/util/text.c): what every user-named path goes through. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/file.h"
#include "util/text.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/g2vm-file-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const char *p(const char *name)
{
	static char buf[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_open_refuses_without_blocking(void **state)
{
	char why[160];
	assert_int_equal(mkfifo(p("fifo"), 0600), 0);
	time_t t0 = time(NULL);
	/* Opening a FIFO for reading blocks until a writer comes: never here. */
	assert_int_equal(file_open_user(p("fifo"), O_RDONLY, 0, FILE_REG, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "is a FIFO (named pipe), not a regular file"));
	assert_int_equal(file_open_user(p("fifo"), O_RDWR, 0, FILE_REG | FILE_BLK, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "not a regular file or block device"));
	assert_true(time(NULL) - t0 < 2);
	assert_int_equal(file_open_user(dir, O_RDONLY, 0, FILE_REG, why, sizeof(why)), -EISDIR);
	assert_non_null(strstr(why, "is a directory"));
	assert_int_equal(file_open_user("/dev/zero", O_RDONLY, 0, FILE_REG, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "is a character device"));
	int fd = file_open_user("/dev/null", O_WRONLY, 0, FILE_REG | FILE_CHR, why, sizeof(why));
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	assert_int_equal(file_open_user(p("absent"), O_RDONLY, 0, FILE_REG, why, sizeof(why)), -ENOENT);
	fd = file_open_user(p("made"), O_WRONLY | O_CREAT, 0600, FILE_REG, why, sizeof(why));
	assert_true(fd >= 0);
	close(fd);
	char big[5000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(file_open_user(big, O_RDONLY, 0, FILE_REG, why, sizeof(why)), -ENAMETOOLONG);
}

static void test_read_is_bounded(void **state)
{
	char why[160];
	uint8_t *d;
	size_t n;
	write_file(p("doc"), "{\"memory\": \"512M\"}");
	assert_int_equal(file_read_user(p("doc"), 100, &d, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 18);
	assert_int_equal(d[n], 0);
	free(d);
	assert_int_equal(file_read_user(p("doc"), 10, &d, &n, why, sizeof(why)), -EFBIG);
	assert_non_null(strstr(why, "is 18 bytes, more than the 10"));
	assert_null(d);
	/* A device that never ends is refused before a byte is read. */
	assert_int_equal(file_read_user("/dev/zero", 1 << 20, &d, &n, why, sizeof(why)), -EINVAL);
	write_file(p("empty"), "");
	assert_int_equal(file_read_user(p("empty"), 10, &d, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 0);
	free(d);
}

static void test_socket_replaces_only_stale_sockets(void **state)
{
	char why[200];
	int fd;
	struct file_socket_id id;
	/* An ordinary file is not replaced. */
	write_file(p("p.txt"), "precious");
	assert_int_equal(file_socket_listen(p("p.txt"), 4, NULL, &fd, &id, why, sizeof(why)), -EEXIST);
	assert_non_null(strstr(why, "is a regular file, not a socket"));
	struct stat st;
	assert_int_equal(stat(p("p.txt"), &st), 0);
	assert_int_equal(st.st_size, 8);
	/* A live socket of someone else is not replaced, and stays reachable. */
	int other = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", p("live.sock"));
	assert_int_equal(bind(other, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(other, 1), 0);
	assert_int_equal(file_socket_listen(p("live.sock"), 4, NULL, &fd, &id, why, sizeof(why)), -EADDRINUSE);
	assert_non_null(strstr(why, "another process is listening"));
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	close(c);
	/* Once it is gone, its socket file is stale: replaced. */
	close(other);
	assert_int_equal(file_socket_listen(p("live.sock"), 4, NULL, &fd, &id, why, sizeof(why)), 0);
	/* Removed at close only while it is still ours. */
	file_socket_unlink(p("live.sock"), &id);
	assert_int_equal(access(p("live.sock"), F_OK), -1);
	close(fd);
	assert_int_equal(file_socket_listen(p("mine.sock"), 4, NULL, &fd, &id, why, sizeof(why)), 0);
	close(fd);
	unlink(p("mine.sock"));
	write_file(p("mine.sock"), "someone else's file now");
	file_socket_unlink(p("mine.sock"), &id);
	assert_int_equal(access(p("mine.sock"), F_OK), 0);
	/* The group and mode asked for are the socket file's. */
	struct file_socket_access acc = { .gid = getgid(), .mode = 0640 };
	assert_int_equal(file_socket_listen(p("acc.sock"), 4, &acc, &fd, &id, why, sizeof(why)), 0);
	assert_int_equal(lstat(p("acc.sock"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_gid, getgid());
	file_socket_unlink(p("acc.sock"), &id);
	close(fd);
}

static void test_text_show(void **state)
{
	assert_string_equal(text_show("disk.vhdx"), "disk.vhdx");
	assert_string_equal(text_show("a\nb\x01"), "a\\x0ab\\x01");
	assert_string_equal(text_show("\xff\xfe"), "\\xff\\xfe");
	assert_string_equal(text_show("é"), "é");
	assert_string_equal(text_show(NULL), "(null)");
	char *big = malloc(100001);
	memset(big, 'A', 100000);
	big[100000] = 0;
	big[0] = '/';
	big[99999] = 'Z';
	const char *s = text_show(big);
	assert_true(strlen(s) < TEXT_SHOW_MAX);
	assert_non_null(strstr(s, "...(100000 bytes)..."));
	assert_int_equal(s[0], '/');
	assert_int_equal(s[strlen(s) - 1], 'Z');
	free(big);
	assert_true(text_is_utf8("plain é ✓"));
	assert_false(text_is_utf8("\xc3\x28"));
	assert_false(text_is_utf8("\xed\xa0\x80")); /* a surrogate */
	char *u = text_utf8_dup("a\xff" "b");
	assert_string_equal(u, "a\\xffb");
	assert_true(text_is_utf8(u));
	free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_refuses_without_blocking),
		cmocka_unit_test(test_read_is_bounded),
		cmocka_unit_test(test_socket_replaces_only_stale_sockets),
		cmocka_unit_test(test_text_show),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
