/* The gen2vmd API's HTTP request parser (src/mgmt/http.c) and routes and error codes (src/mgmt/api.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mgmt/api.h"
#include "mgmt/http.h"

static long parse(const char *s, struct http_request *r)
{
	return http_request_parse(s, strlen(s), r);
}

static void test_complete_requests(void **state)
{
	struct http_request r;
	const char *get = "GET /v1/vms?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";
	assert_int_equal(parse(get, &r), (long)strlen(get));
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.path, "/v1/vms");
	assert_string_equal(r.query, "x=1");
	assert_int_equal(r.body_len, 0);
	const char *put = "PUT /v1/vms/a HTTP/1.1\r\nContent-Length:  5 \r\n\r\nhello";
	assert_int_equal(parse(put, &r), (long)strlen(put));
	assert_int_equal(r.body_len, 5);
	assert_memory_equal(r.body, "hello", 5);
	/* Bare LF line ends, HTTP/1.0. */
	assert_int_equal(parse("GET / HTTP/1.0\n\n", &r), 16);
}

static void test_incomplete_requests(void **state)
{
	struct http_request r;
	const char *put = "PUT /v1/vms/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
	for (size_t n = 0; n < strlen(put); n++)
		assert_int_equal(http_request_parse(put, n, &r), 0);
	/* Trailing bytes past the body belong to nothing: the request's length says where it ends. */
	assert_int_equal(parse("GET / HTTP/1.1\r\n\r\nEXTRA", &r), 18);
}

static void test_bad_requests(void **state)
{
	struct http_request r;
	static const char *const bad[] = {
		"\r\n\r\n", "GET\r\n\r\n", "GET / \r\n\r\n", "GET x HTTP/1.1\r\n\r\n", "GET / HTTP/1.1 x\r\n\r\n",
		"GET / FTP/1.1\r\n\r\n", "G(T / HTTP/1.1\r\n\r\n", "GET /\x01 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\n: empty\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length:\r\n\r\n", "GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n",
		"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"TOOLONGMETHOD / HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], &r) != -EINVAL)
			fail_msg("accepted or misjudged: %s", bad[i]);
	assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &r), -EINVAL);
	assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n", &r), -ENOSYS);
	assert_int_equal(parse("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -ENOSYS);
	assert_int_equal(parse("PUT / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", &r), -EMSGSIZE);
	assert_int_equal(parse("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", &r), -EMSGSIZE);
}

static void test_bounds(void **state)
{
	struct http_request r;
	size_t n = HTTP_HEADER_MAX + 100;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'a', n);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	/* Headers that never end: refused once HTTP_HEADER_MAX bytes have come, not before. */
	assert_int_equal(http_request_parse(big, HTTP_HEADER_MAX - 1, &r), 0);
	assert_int_equal(http_request_parse(big, HTTP_HEADER_MAX, &r), -E2BIG);
	assert_int_equal(http_request_parse(big, n, &r), -E2BIG);
	/* A blank line just past the bound does not count. */
	memcpy(big + HTTP_HEADER_MAX - 2, "\r\n\r\n", 4);
	assert_int_equal(http_request_parse(big, n, &r), -E2BIG);
	/* A target longer than HTTP_TARGET_MAX. */
	memset(big, 'a', n);
	memcpy(big, "GET /", 5);
	memcpy(big + 5 + HTTP_TARGET_MAX, " HTTP/1.1\r\n\r\n", 13);
	big[5 + HTTP_TARGET_MAX + 13] = 0;
	assert_int_equal(parse(big, &r), -E2BIG);
	free(big);
}

static void test_routes(void **state)
{
	struct api_route r;
	const char *code;
	static const struct {
		const char *method, *path;
		int status;
		enum api_op op;
		const char *name;
	} cases[] = {
		{ "GET", "/v1/vms", 0, API_LIST, "" },
		{ "GET", "/v1/vms/", 0, API_LIST, "" },
		{ "GET", "/v1/vms/web-1", 0, API_GET, "web-1" },
		{ "PUT", "/v1/vms/a", 0, API_CREATE, "a" },
		{ "PATCH", "/v1/vms/a", 0, API_MODIFY, "a" },
		{ "DELETE", "/v1/vms/a", 0, API_DELETE, "a" },
		{ "POST", "/v1/vms/a/start", 0, API_START, "a" },
		{ "POST", "/v1/vms/a/shutdown", 0, API_SHUTDOWN, "a" },
		{ "POST", "/v1/vms/a/terminate", 0, API_TERMINATE, "a" },
		{ "POST", "/v1/vms/a/restart", 0, API_RESTART, "a" },
		{ "POST", "/v1/vms/a/pause", 0, API_PAUSE, "a" },
		{ "POST", "/v1/vms/a/resume", 0, API_RESUME, "a" },
		{ "GET", "/v1/events", 0, API_EVENTS, "" },
		{ "POST", "/v1/events", 405, 0, NULL },
		{ "POST", "/v1/vms", 405, 0, NULL },
		{ "GET", "/v1/vms/a/start", 405, 0, NULL },
		{ "POST", "/v1/vms/a/explode", 404, 0, NULL },
		{ "GET", "/v2/vms", 404, 0, NULL },
		{ "GET", "/v1/vmsx", 404, 0, NULL },
		{ "GET", "/v1/vms/..", 400, 0, NULL },
		{ "GET", "/v1/vms/.hidden", 400, 0, NULL },
		{ "GET", "/v1/vms/%2e%2e", 400, 0, NULL },
		{ "GET", "/v1/vms/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 400, 0, NULL },
		{ "POST", "/v1/vms//start", 400, 0, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int s = api_route_match(cases[i].method, cases[i].path, &r, &code);
		if (s != cases[i].status)
			fail_msg("%s %s: %d, expected %d", cases[i].method, cases[i].path, s, cases[i].status);
		if (!s) {
			assert_int_equal(r.op, cases[i].op);
			assert_string_equal(r.name, cases[i].name);
		} else {
			assert_int_equal(api_error_status(code), s);
		}
	}
}

static void test_error_codes(void **state)
{
	assert_int_equal(api_error_status("VmNotFound"), 404);
	assert_int_equal(api_error_status("Conflict"), 409);
	assert_int_equal(api_error_status("VmRunning"), 409);
	assert_int_equal(api_error_status("InvalidConfig"), 400);
	assert_int_equal(api_error_status("no such code"), 500);
	assert_string_equal(api_error_code(-EBUSY), "Conflict");
	assert_string_equal(api_error_code(-EEXIST), "VmExists");
	assert_string_equal(api_error_code(-EIO), "Failed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_requests), cmocka_unit_test(test_incomplete_requests),
		cmocka_unit_test(test_bad_requests),      cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_routes),            cmocka_unit_test(test_error_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
