/* Network backends: where the frames of a synthetic adapter go. A frontend (netvsp) and a backend meet
 * at struct net_backend_ops; each backend has nr_queues queues. A queue is normally used by one
 * thread, but recv may briefly run on one queue in two threads (while the frontend hands the queue
 * from one worker to another): recv and send must be safe for that (a tap fd is; the pair locks).
 *
 * Frames carry a struct virtio_net_hdr (linux/virtio_net.h) describing checksum and segmentation
 * offload, the format a tap with IFF_VNET_HDR speaks; backends that cannot offload report caps 0 and
 * are only given complete frames.
 *
 * Never blocking: send and recv return -EAGAIN instead of waiting; rx_fd is readable (poll/epoll)
 * when recv may have a frame.
 */
#ifndef GEN2VM_NET_BACKEND_H
#define GEN2VM_NET_BACKEND_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define NET_BE_CAP_CSUM 0x1u /* accepts VIRTIO_NET_HDR_F_NEEDS_CSUM */
#define NET_BE_CAP_TSO  0x2u /* accepts GSO TCPv4/TCPv6 frames up to 64 KiB */
#define NET_BE_MAX_QUEUES 16u
#define NET_FRAME_MAX 65550u /* a GSO frame with its headers */
#define NET_PAIR_FRAME_MAX 9216u /* both pair backends: jumbo frames, no TSO, so nothing larger */

struct net_backend;

struct net_backend_ops {
	/* Sends one frame gathered from iov (the vnet header separately). Returns 0 (sent, or dropped as
	 * a full NIC queue drops), -EMSGSIZE (frame refused) or -errno for a dead backend. */
	int (*send)(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		    int iovcnt);
	/* Receives one frame into buf (cap bytes); *vh gets its header. Returns the frame length,
	 * -EAGAIN when none is waiting, or -errno. A frame longer than cap is dropped (-EMSGSIZE). */
	int (*recv)(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap);
	/* An fd that polls readable while queue q may have a frame. */
	int (*rx_fd)(struct net_backend *be, uint32_t q);
	void (*destroy)(struct net_backend *be);
	/* Optional (NULL: always true): whether frames can reach a peer now, i.e. the cable is plugged
	 * in at the far end. Cheap, any thread. It may change only inside send and recv (a backend
	 * whose peer can come and go makes queue 0's rx_fd readable when it should look, e.g. on a
	 * timer, as the shared pair does): the frontend reads it after its calls and shows the guest
	 * the result as the link state, with no polling interval. */
	bool (*carrier)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	uint32_t nr_queues;
	uint32_t caps; /* NET_BE_CAP_* */
	char desc[80]; /* for messages: "tap tap0", "pair 7" */
};

/* Opens tap interface name with nr_queues queues (IFF_VNET_HDR, IFF_MULTI_QUEUE when > 1). An existing
 * tap is attached to; a missing one is created when we may (CAP_NET_ADMIN) and goes away with us.
 * Returns 0 or -errno with a message naming the interface and the fix in err. */
int net_tap_open(const char *name, uint32_t nr_queues, struct net_backend **out, char *err, size_t errlen);

/* Opens one end of the in-process pair id (two adapters, e.g. of two VMs in one process, or a test).
 * The first open creates the pair, the second connects to it; a third gets -EBUSY. Frames sent
 * before the peer exists are dropped, as on an unplugged cable. Queue q sends to the peer's queue
 * q % peer->nr_queues. */
int net_pair_open(const char *id, uint32_t nr_queues, struct net_backend **out);

/* Opens one end of the shared pair id: the other end is normally another gen2vm process of the same
 * user and network namespace (an AF_UNIX SOCK_SEQPACKET connection; see src/net/pair_sock.c), though
 * both ends may be in one process. Ids are distinct from net_pair_open's in-process ones. The first
 * open listens, the second connects; a third gets -EBUSY (err names the id). While no peer is
 * connected (not yet, or it went away) frames are dropped as on an unplugged cable; a new peer plugs
 * it back; carrier says which. Frames are received on queue 0; any queue sends. Returns 0 or -errno
 * with a message in err. */
int net_pair_open_shared(const char *id, uint32_t nr_queues, struct net_backend **out, char *err, size_t errlen);

static inline void net_backend_destroy(struct net_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

#endif
