/* The shared pair backend: two endpoints, normally in two gen2vm processes, joined by an AF_UNIX
 * SOCK_SEQPACKET connection (one datagram = struct virtio_net_hdr + one frame).
 *
 * Rendezvous by two abstract names per pair and user (abstract names live in the network namespace
 * and vanish with the socket, so a crashed VM leaves nothing behind):
 *   L = "\0gen2vm-pair/<euid>/L/<id>"  the listening end
 *   C = "\0gen2vm-pair/<euid>/C/<id>"  claimed (bound, never used for traffic) by the connecting end
 * The first opener binds L and listens; the second finds L taken, claims C and connects to L; a third
 * finds both taken and is refused with -EBUSY. Holding C for the whole life of the connecting end is
 * what makes the third opener's refusal immediate and race-free without a handshake.
 *
 * Everything is non-blocking: the listener accepts in recv (its listening socket is in the queue-0
 * rx epoll set, so the frontend's worker wakes for it). A peer that goes away is an unplugged cable:
 * carrier turns false (the guest sees the link go down), frames are dropped, a line is logged, and
 * the pair comes back when a new peer appears (the
 * connecting end retries connect() from recv, rate-limited, woken by a timer in the queue-0 rx set so
 * the frontend need not poll; a listener simply accepts the next one; a connecting end whose listener
 * went away takes over L if it is free). Carrier changes only inside send and recv.
 *
 * The peer process is as untrusted as a guest: every datagram is bounds-checked and its header
 * validated; the peer must run under our effective uid (SO_PEERCRED).
 *
 * All queues share the one connection: frames are received on queue 0 (the frontend's primary worker
 * always serves it) and any queue may send. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net/backend.h"
#include "util/clock.h"
#include "util/log.h"

#define XPAIR_MIN_FRAME 14u   /* an Ethernet header */
#define XPAIR_RETRY_NS 200000000ull

struct xpair {
	struct net_backend be;
	char id[64];
	pthread_mutex_t lock; /* fds below; held across each (non-blocking) socket call */
	int lfd;              /* our listening socket on L, or -1 */
	int claim_fd;         /* our bound socket on C while we are the connecting end, or -1 */
	int cfd;              /* the connection to the peer, or -1 (cable unplugged) */
	int epfd;             /* queue 0's rx_fd: lfd, cfd and tfd */
	int tfd;              /* retry timer of a connecting end without a connection */
	bool retry_armed;
	int idle_fd[NET_BE_MAX_QUEUES]; /* queues > 0: never readable (frames arrive on queue 0) */
	uint64_t next_retry_ns;
	bool had_peer;
	bool connected; /* cfd >= 0, for carrier without the lock */
	uint64_t dropped_bad; /* datagrams refused by validation */
};

/* Abstract address of role 'L' or 'C'; returns the address length. */
static socklen_t xp_addr(const char *id, char role, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "gen2vm-pair/%u/%c/%s", (unsigned)geteuid(), role,
			 id);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int xp_socket(void)
{
	return socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* A bound socket on role's name: the fd, -EADDRINUSE when another end holds it, or -errno. */
static int xp_bind(const char *id, char role)
{
	struct sockaddr_un sa;
	socklen_t len = xp_addr(id, role, &sa);
	int fd = xp_socket();
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* The peer must be us (same effective uid): another user could have bound our names first. */
static bool xp_peer_trusted(struct xpair *x, int fd)
{
	struct ucred uc;
	socklen_t l = sizeof(uc);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0 || uc.uid != geteuid()) {
		log_warn("pair %s: refusing a peer of another user", x->id);
		return false;
	}
	return true;
}

/* Makes queue 0's rx_fd readable at monotonic time ns (0: now), so that the frontend calls recv,
 * which retries the peer. Lock held. */
static void xp_retry_at(struct xpair *x, uint64_t ns)
{
	if (!ns)
		ns = 1; /* an absolute time in the past: fires at once (0 would disarm) */
	struct itimerspec its = { .it_value = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) } };
	if (timerfd_settime(x->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		x->retry_armed = true;
}

/* Installs fd as the connection. Lock held. */
static void xp_attach(struct xpair *x, int fd)
{
	int sz = 1 << 20; /* room for a burst; the kernel caps it at wmem_max */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	x->cfd = fd;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	epoll_ctl(x->epfd, EPOLL_CTL_ADD, fd, &ev);
	__atomic_store_n(&x->connected, true, __ATOMIC_RELEASE);
	log_info("pair %s: peer connected", x->id);
	x->had_peer = true;
}

/* The peer went away: cable unplugged until a new one appears. Lock held. */
static void xp_detach(struct xpair *x, const char *why)
{
	if (x->cfd < 0)
		return;
	epoll_ctl(x->epfd, EPOLL_CTL_DEL, x->cfd, NULL);
	close(x->cfd);
	x->cfd = -1;
	__atomic_store_n(&x->connected, false, __ATOMIC_RELEASE);
	x->next_retry_ns = 0;
	if (x->lfd < 0)
		xp_retry_at(x, 0);
	log_warn("pair %s: peer %s; frames are dropped until a new peer opens pair=%s", x->id, why, x->id);
}

/* Becomes the listening end: binds L, listens, and watches it in the queue-0 rx set. 0, -EADDRINUSE
 * (another end holds L) or -errno. Lock held (or not yet shared). */
static int xp_listen(struct xpair *x)
{
	int lfd = xp_bind(x->id, 'L');
	if (lfd < 0)
		return lfd;
	if (listen(lfd, 4) < 0) {
		int e = errno;
		close(lfd);
		return -e;
	}
	x->lfd = lfd;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(x->epfd, EPOLL_CTL_ADD, lfd, &ev);
	return 0;
}

/* Connecting end: (re)connects to L; when L is free (the listener went away), becomes the listener
 * itself. Lock held, no connection. */
static void xp_connect(struct xpair *x)
{
	struct sockaddr_un sa;
	socklen_t len = xp_addr(x->id, 'L', &sa);
	int fd = xp_socket();
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, len) == 0) {
		if (xp_peer_trusted(x, fd))
			xp_attach(x, fd);
		else
			close(fd);
		return;
	}
	int e = errno;
	close(fd);
	if (e != ECONNREFUSED && e != ENOENT)
		return; /* EAGAIN: its backlog is full; try later */
	if (xp_listen(x))
		return;
	close(x->claim_fd); /* the next peer claims C */
	x->claim_fd = -1;
}

/* Without a connection: accept one (listener) or retry connect (connecting end). Lock held. */
static void xp_try_peer(struct xpair *x)
{
	if (x->retry_armed) { /* the timer fired (or will: keep it armed till then) */
		uint64_t v;
		if (read(x->tfd, &v, sizeof(v)) == sizeof(v))
			x->retry_armed = false;
	}
	if (x->lfd >= 0) {
		int fd;
		while ((fd = accept4(x->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
			if (!xp_peer_trusted(x, fd)) {
				close(fd);
				continue;
			}
			/* Only the holder of C connects, so a newcomer means the old peer is gone even if
			 * its hang-up has not been read yet. */
			if (x->cfd >= 0)
				xp_detach(x, "was replaced");
			xp_attach(x, fd);
		}
		return;
	}
	if (x->cfd >= 0)
		return;
	uint64_t now = clock_mono_ns();
	if (now < x->next_retry_ns)
		return;
	x->next_retry_ns = now + XPAIR_RETRY_NS;
	xp_connect(x);
	if (x->cfd < 0 && x->lfd < 0)
		xp_retry_at(x, x->next_retry_ns);
}

static int xp_send(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		   int iovcnt)
{
	struct xpair *x = (struct xpair *)be;
	struct iovec v[66];
	size_t total = 0;
	if (iovcnt > 64 || vh->gso_type != VIRTIO_NET_HDR_GSO_NONE)
		return -EMSGSIZE;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > NET_PAIR_FRAME_MAX)
		return -EMSGSIZE;
	/* No offloads (caps 0): the frame is complete; the header says nothing more. */
	struct virtio_net_hdr h = { 0 };
	v[0] = (struct iovec){ &h, sizeof(h) };
	memcpy(v + 1, iov, (size_t)iovcnt * sizeof(*iov));
	struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)iovcnt + 1 };
	pthread_mutex_lock(&x->lock);
	if (x->cfd < 0)
		xp_try_peer(x);
	if (x->cfd >= 0 && sendmsg(x->cfd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
			xp_detach(x, "went away");
		/* EAGAIN: the peer is behind; drop as a full NIC queue would */
	}
	pthread_mutex_unlock(&x->lock);
	return 0;
}

static int xp_recv(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap)
{
	struct xpair *x = (struct xpair *)be;
	memset(vh, 0, sizeof(*vh));
	if (q != 0)
		return -EAGAIN;
	pthread_mutex_lock(&x->lock);
	if (x->cfd < 0)
		xp_try_peer(x);
	if (x->cfd < 0) {
		pthread_mutex_unlock(&x->lock);
		return -EAGAIN;
	}
	struct virtio_net_hdr h;
	struct iovec v[2] = { { &h, sizeof(h) }, { buf, cap } };
	struct msghdr m = { .msg_iov = v, .msg_iovlen = 2 };
	/* MSG_TRUNC: the datagram's real length, so an oversized one is recognised, not cut. */
	ssize_t n = recvmsg(x->cfd, &m, MSG_DONTWAIT | MSG_TRUNC);
	int rc;
	if (n < 0) {
		rc = -errno;
		if (rc == -EAGAIN) {
			/* Nothing waiting: the moment to accept a newcomer (only the holder of C can
			 * connect, so one means our peer was replaced), without a syscall per frame. */
			xp_try_peer(x);
		} else if (rc == -ECONNRESET) {
			xp_detach(x, "went away");
			rc = -EAGAIN;
		} else if (rc == -EINTR) {
			rc = -EAGAIN;
		}
	} else if (n == 0) { /* SEQPACKET: end of stream (no empty datagrams are sent) */
		xp_detach(x, "went away");
		rc = -EAGAIN;
	} else if ((size_t)n < sizeof(h) + XPAIR_MIN_FRAME || (size_t)n - sizeof(h) > NET_PAIR_FRAME_MAX ||
		   h.flags || h.gso_type != VIRTIO_NET_HDR_GSO_NONE || h.hdr_len || h.gso_size || h.csum_start ||
		   h.csum_offset) {
		x->dropped_bad++;
		rc = -EPROTO;
	} else if ((size_t)n - sizeof(h) > cap) {
		rc = -EMSGSIZE;
	} else {
		rc = (int)((size_t)n - sizeof(h));
	}
	pthread_mutex_unlock(&x->lock);
	/* vh stays zero: the peer's checksums were not verified here, the guest checks them. */
	return rc;
}

static int xp_rx_fd(struct net_backend *be, uint32_t q)
{
	struct xpair *x = (struct xpair *)be;
	return q ? x->idle_fd[q] : x->epfd;
}

static bool xp_carrier(struct net_backend *be)
{
	return __atomic_load_n(&((struct xpair *)be)->connected, __ATOMIC_ACQUIRE);
}

static void xp_destroy(struct net_backend *be)
{
	struct xpair *x = (struct xpair *)be;
	int fds[] = { x->cfd, x->lfd, x->claim_fd, x->epfd, x->tfd };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (uint32_t q = 1; q < NET_BE_MAX_QUEUES; q++)
		if (x->idle_fd[q] >= 0)
			close(x->idle_fd[q]);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

static const struct net_backend_ops xpair_ops = {
	.send = xp_send, .recv = xp_recv, .rx_fd = xp_rx_fd, .destroy = xp_destroy, .carrier = xp_carrier,
};

int net_pair_open_shared(const char *id, uint32_t nr_queues, struct net_backend **out, char *err, size_t errlen)
{
	if (!id || !*id || strlen(id) >= 64 || !nr_queues || nr_queues > NET_BE_MAX_QUEUES) {
		snprintf(err, errlen, "pair '%s': the id must be 1-63 characters and queues 1-%u", id ? id : "",
			 NET_BE_MAX_QUEUES);
		return -EINVAL;
	}
	struct xpair *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->be.ops = &xpair_ops;
	x->be.nr_queues = nr_queues;
	snprintf(x->be.desc, sizeof(x->be.desc), "pair %s", id);
	snprintf(x->id, sizeof(x->id), "%s", id);
	pthread_mutex_init(&x->lock, NULL);
	x->lfd = x->claim_fd = x->cfd = x->epfd = x->tfd = -1;
	for (uint32_t q = 0; q < NET_BE_MAX_QUEUES; q++)
		x->idle_fd[q] = -1;
	int rc = 0;
	x->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (x->epfd < 0 || (x->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		rc = -errno;
	if (!rc) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = x->tfd };
		if (epoll_ctl(x->epfd, EPOLL_CTL_ADD, x->tfd, &ev) < 0)
			rc = -errno;
	}
	for (uint32_t q = 1; q < nr_queues && !rc; q++)
		if ((x->idle_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			rc = -errno;
	if (rc) {
		snprintf(err, errlen, "pair %s: %s", id, strerror(-rc));
		xp_destroy(&x->be);
		return rc;
	}
	rc = xp_listen(x);
	if (rc == -EADDRINUSE) {
		rc = 0;
		int c = xp_bind(id, 'C');
		if (c == -EADDRINUSE) {
			snprintf(err, errlen,
				 "pair %s: both ends of this pair are already open (by other gen2vm processes of this "
				 "user); a pair joins exactly two adapters: pick another id",
				 id);
			rc = -EBUSY;
		} else if (c < 0) {
			rc = c;
		} else {
			x->claim_fd = c;
			xp_connect(x); /* a listener that is just going away: recv retries */
			if (x->cfd < 0 && x->lfd < 0)
				xp_retry_at(x, 0);
		}
	}
	if (rc) {
		if (rc != -EBUSY)
			snprintf(err, errlen, "pair %s: cannot bind its socket: %s", id, strerror(-rc));
		xp_destroy(&x->be);
		return rc;
	}
	*out = &x->be;
	return 0;
}
