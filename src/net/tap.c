/* The tap backend: one non-blocking fd per queue, each with a virtio-net header. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net/backend.h"

struct tap {
	struct net_backend be;
	int fd[NET_BE_MAX_QUEUES];
};

static int tap_send(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		    int iovcnt)
{
	struct tap *t = (struct tap *)be;
	struct iovec v[66];
	if (iovcnt > 64 || q >= be->nr_queues)
		return -EMSGSIZE;
	v[0] = (struct iovec){ (void *)vh, sizeof(*vh) };
	memcpy(v + 1, iov, (size_t)iovcnt * sizeof(*iov));
	ssize_t n = writev(t->fd[q], v, iovcnt + 1);
	if (n < 0) {
		/* A full tap queue or a downed interface drops the frame, as a NIC would. */
		if (errno == EAGAIN || errno == EIO || errno == ENOBUFS)
			return 0;
		return errno == EINVAL ? -EMSGSIZE : -errno;
	}
	return 0;
}

static int tap_recv(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap)
{
	struct tap *t = (struct tap *)be;
	struct iovec v[2] = { { vh, sizeof(*vh) }, { buf, cap } };
	ssize_t n = readv(t->fd[q], v, 2);
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(*vh))
		return -EAGAIN;
	return (int)(n - (ssize_t)sizeof(*vh));
}

static int tap_rx_fd(struct net_backend *be, uint32_t q)
{
	return ((struct tap *)be)->fd[q];
}

static void tap_destroy(struct net_backend *be)
{
	struct tap *t = (struct tap *)be;
	for (uint32_t i = 0; i < be->nr_queues; i++)
		if (t->fd[i] >= 0)
			close(t->fd[i]);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.send = tap_send, .recv = tap_recv, .rx_fd = tap_rx_fd, .destroy = tap_destroy,
};

int net_tap_open(const char *name, uint32_t nr_queues, struct net_backend **out, char *err, size_t errlen)
{
	if (!name || !*name || strlen(name) >= IFNAMSIZ || !nr_queues || nr_queues > NET_BE_MAX_QUEUES) {
		snprintf(err, errlen, "tap '%s': the name must be 1-%d characters and queues 1-%u", name ? name : "",
			 IFNAMSIZ - 1, NET_BE_MAX_QUEUES);
		return -EINVAL;
	}
	struct tap *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->be.ops = &tap_ops;
	t->be.nr_queues = nr_queues;
	t->be.caps = NET_BE_CAP_CSUM | NET_BE_CAP_TSO;
	snprintf(t->be.desc, sizeof(t->be.desc), "tap %s", name);
	for (uint32_t i = 0; i < NET_BE_MAX_QUEUES; i++)
		t->fd[i] = -1;
	for (uint32_t i = 0; i < nr_queues; i++) {
		int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "tap %s: cannot open /dev/net/tun: %s (load the tun module)", name,
				 strerror(e));
			tap_destroy(&t->be);
			return -e;
		}
		t->fd[i] = fd;
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (nr_queues > 1 ? IFF_MULTI_QUEUE : 0);
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			int e = errno;
			if (e == EPERM)
				snprintf(err, errlen,
					 "tap %s: permission denied: create it first (ip tuntap add %s mode tap user $USER%s) "
					 "or run with CAP_NET_ADMIN",
					 name, name, nr_queues > 1 ? " multi_queue" : "");
			else if (e == EINVAL)
				snprintf(err, errlen, "tap %s: exists with other flags (queues=%u needs %s tap)", name,
					 nr_queues, nr_queues > 1 ? "a multi_queue" : "a single-queue");
			else
				snprintf(err, errlen, "tap %s: %s", name, strerror(e));
			tap_destroy(&t->be);
			return -e;
		}
		int hs = sizeof(struct virtio_net_hdr);
		/* No offloads toward us: the kernel hands us complete, checksummed frames that any guest
		 * can take; offloads from the guest (checksum, TSO) still pass down through the header. */
		if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
			int e = errno;
			snprintf(err, errlen, "tap %s: cannot set the vnet header: %s", name, strerror(e));
			tap_destroy(&t->be);
			return -e;
		}
	}
	*out = &t->be;
	return 0;
}
