/* The shared pair backend (src/net/pair_sock.c): rendezvous, a third opener refused, frames both ways,
 * hostile datagrams from the peer refused, a peer that goes away and a new one that plugs back in,
 * and two processes (fork). Ids carry our pid: concurrent test runs must not meet. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/backend.h"

static char ID[64];

static void make_id(const char *tag)
{
	snprintf(ID, sizeof(ID), "unit-%d-%s", (int)getpid(), tag);
}

static int send_frame(struct net_backend *be, uint32_t q, uint32_t len, uint8_t seed)
{
	uint8_t f[9216];
	for (uint32_t i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
	struct virtio_net_hdr vh = { 0 };
	struct iovec iov = { f, len };
	return be->ops->send(be, q, &vh, &iov, 1);
}

/* Waits up to ms for a frame on queue 0; returns recv's result. */
static int recv_wait(struct net_backend *be, uint8_t *buf, uint32_t cap, int ms)
{
	struct virtio_net_hdr vh;
	for (;;) {
		int n = be->ops->recv(be, 0, &vh, buf, cap);
		if (n != -EAGAIN || ms <= 0)
			return n;
		struct pollfd p = { .fd = be->ops->rx_fd(be, 0), .events = POLLIN };
		poll(&p, 1, 10);
		ms -= 10;
	}
}

static void check_frame(const uint8_t *f, int n, uint32_t len, uint8_t seed)
{
	assert_int_equal(n, (int)len);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(f[i], (uint8_t)(seed + i * 7));
}

static void test_rendezvous_and_frames(void **state)
{
	make_id("basic");
	char err[256] = "";
	struct net_backend *a, *b, *c;
	assert_int_equal(net_pair_open_shared(ID, 1, &a, err, sizeof(err)), 0);
	assert_false(a->ops->carrier(a)); /* nobody at the other end yet */
	assert_int_equal(net_pair_open_shared(ID, 2, &b, err, sizeof(err)), 0);
	assert_true(b->ops->carrier(b));
	assert_int_equal(net_pair_open_shared(ID, 1, &c, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, ID));
	assert_int_equal(a->caps, 0);
	static uint8_t buf[9216];
	/* Both ways, sizes from the minimum to jumbo; b sends from its second queue too. */
	for (uint32_t k = 0; k < 200; k++) {
		uint32_t len = 14 + (k * 997) % 9203;
		assert_int_equal(send_frame(a, 0, len, (uint8_t)k), 0);
		check_frame(buf, recv_wait(b, buf, sizeof(buf), 1000), len, (uint8_t)k);
		assert_int_equal(send_frame(b, k & 1, len, (uint8_t)~k), 0);
		check_frame(buf, recv_wait(a, buf, sizeof(buf), 1000), len, (uint8_t)~k);
	}
	assert_true(a->ops->carrier(a));
	struct virtio_net_hdr vh;
	assert_int_equal(b->ops->recv(b, 1, &vh, buf, sizeof(buf)), -EAGAIN); /* frames come on queue 0 */
	/* Too big for the receiver's buffer: refused, and the next frame is intact. */
	assert_int_equal(send_frame(a, 0, 1500, 1), 0);
	assert_int_equal(send_frame(a, 0, 60, 2), 0);
	assert_int_equal(recv_wait(b, buf, 1000, 1000), -EMSGSIZE);
	check_frame(buf, recv_wait(b, buf, sizeof(buf), 1000), 60, 2);
	/* The sender refuses what the pair cannot carry. */
	static uint8_t big[9217];
	struct virtio_net_hdr vh0 = { 0 };
	struct iovec iov = { big, sizeof(big) };
	assert_int_equal(a->ops->send(a, 0, &vh0, &iov, 1), -EMSGSIZE);
	net_backend_destroy(b);
	net_backend_destroy(a);
}

/* The peer is untrusted: short, oversized and offload-claiming datagrams are refused one by one. */
static void test_hostile_peer(void **state)
{
	make_id("hostile");
	char err[256];
	struct net_backend *a;
	assert_int_equal(net_pair_open_shared(ID, 1, &a, err, sizeof(err)), 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int nl = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "gen2vm-pair/%u/L/%s", (unsigned)geteuid(), ID);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nl)),
			 0);
	static uint8_t d[12000], buf[9216];
	memset(d, 0xab, sizeof(d));
	struct virtio_net_hdr *h = (void *)d;
	memset(h, 0, sizeof(*h));
	assert_true(send(fd, d, 3, 0) == 3);                    /* shorter than a header */
	assert_true(send(fd, d, sizeof(*h) + 13, 0) > 0);       /* shorter than an Ethernet header */
	assert_true(send(fd, d, sizeof(*h) + 9217, 0) > 0);     /* longer than any pair frame */
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h->gso_size = 1000;
	assert_true(send(fd, d, sizeof(*h) + 100, 0) > 0);      /* claims an offload */
	memset(h, 0, sizeof(*h));
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->csum_offset = 60000;
	assert_true(send(fd, d, sizeof(*h) + 100, 0) > 0);
	memset(h, 0, sizeof(*h));
	assert_true(send(fd, d, sizeof(*h) + 64, 0) > 0);       /* a good one */
	int bad = 0, n;
	while ((n = recv_wait(a, buf, sizeof(buf), 1000)) < 0) {
		assert_true(n == -EPROTO || n == -EMSGSIZE);
		bad++;
	}
	assert_int_equal(bad, 5);
	assert_int_equal(n, 64);
	assert_int_equal(buf[0], 0xab);
	close(fd);
	net_backend_destroy(a);
}

static void nap_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* A peer that goes away unplugs the cable; a new one plugs it back, whichever end left. */
static void test_peer_replaced(void **state)
{
	make_id("replace");
	char err[256];
	static uint8_t buf[9216];
	struct net_backend *a, *b;
	assert_int_equal(net_pair_open_shared(ID, 1, &a, err, sizeof(err)), 0);
	assert_int_equal(net_pair_open_shared(ID, 1, &b, err, sizeof(err)), 0);
	assert_int_equal(send_frame(b, 0, 100, 1), 0);
	check_frame(buf, recv_wait(a, buf, sizeof(buf), 1000), 100, 1);
	/* The connecting end goes: sends are dropped, not failed. */
	net_backend_destroy(b);
	assert_int_equal(recv_wait(a, buf, sizeof(buf), 50), -EAGAIN);
	assert_false(a->ops->carrier(a)); /* the cable is unplugged */
	assert_int_equal(send_frame(a, 0, 100, 2), 0);
	assert_int_equal(net_pair_open_shared(ID, 1, &b, err, sizeof(err)), 0);
	assert_int_equal(send_frame(b, 0, 100, 3), 0);
	check_frame(buf, recv_wait(a, buf, sizeof(buf), 1000), 100, 3);
	assert_int_equal(send_frame(a, 0, 100, 4), 0);
	check_frame(buf, recv_wait(b, buf, sizeof(buf), 1000), 100, 4);
	/* The listening end goes: b takes over the name on its next retry, and a newcomer connects to it. */
	net_backend_destroy(a);
	assert_int_equal(recv_wait(b, buf, sizeof(buf), 400), -EAGAIN);
	assert_int_equal(net_pair_open_shared(ID, 1, &a, err, sizeof(err)), 0);
	assert_int_equal(send_frame(a, 0, 200, 5), 0);
	check_frame(buf, recv_wait(b, buf, sizeof(buf), 1000), 200, 5);
	assert_int_equal(send_frame(b, 0, 200, 6), 0);
	check_frame(buf, recv_wait(a, buf, sizeof(buf), 1000), 200, 6);
	net_backend_destroy(a);
	net_backend_destroy(b);
	nap_ms(1);
}

/* Two processes: the child echoes 100 frames back. */
static void test_two_processes(void **state)
{
	make_id("fork");
	char err[256];
	struct net_backend *a;
	assert_int_equal(net_pair_open_shared(ID, 1, &a, err, sizeof(err)), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct net_backend *b;
		static uint8_t f[9216];
		if (net_pair_open_shared(ID, 1, &b, err, sizeof(err)))
			_exit(2);
		for (int i = 0; i < 100; i++) {
			int n = recv_wait(b, f, sizeof(f), 5000);
			if (n < 0)
				_exit(3);
			struct virtio_net_hdr vh = { 0 };
			struct iovec iov = { f, (size_t)n };
			b->ops->send(b, 0, &vh, &iov, 1);
		}
		_exit(0);
	}
	static uint8_t buf[9216];
	for (uint32_t k = 0; k < 100; k++) {
		/* The child may not be connected yet: what is sent before is dropped, so retry. */
		int n;
		for (int tries = 0;; tries++) {
			assert_int_equal(send_frame(a, 0, 60 + k, (uint8_t)k), 0);
			n = recv_wait(a, buf, sizeof(buf), k ? 2000 : 500);
			if (n != -EAGAIN || tries > 50)
				break;
		}
		check_frame(buf, n, 60 + k, (uint8_t)k);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	net_backend_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rendezvous_and_frames),
		cmocka_unit_test(test_hostile_peer),
		cmocka_unit_test(test_peer_replaced),
		cmocka_unit_test(test_two_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
