/* The pair backend: two in-process endpoints joined back to back. Each queue is a bounded ring of
 * frame slots guarded by a mutex, with an eventfd that polls readable while frames wait. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/backend.h"

#define PAIR_SLOTS 256u

struct pair_slot {
	uint32_t len;
	uint8_t data[NET_PAIR_FRAME_MAX];
};

struct pair_queue {
	pthread_mutex_t lock;
	uint32_t head, count;
	int efd;
	struct pair_slot *slots;
};

struct pair_end {
	struct net_backend be;
	struct pair *pair;
	struct pair_queue q[NET_BE_MAX_QUEUES];
};

struct pair {
	char id[64];
	struct pair_end *end[2];
	struct pair *next;
};

static pthread_mutex_t pairs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pair *pairs;

static struct pair_end *peer_of(struct pair_end *e)
{
	struct pair *p = e->pair;
	return p->end[0] == e ? p->end[1] : p->end[0];
}

static int pair_send(struct net_backend *be, uint32_t q, const struct virtio_net_hdr *vh, const struct iovec *iov,
		     int iovcnt)
{
	struct pair_end *e = (struct pair_end *)be;
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > NET_PAIR_FRAME_MAX || vh->gso_type != VIRTIO_NET_HDR_GSO_NONE)
		return -EMSGSIZE;
	pthread_mutex_lock(&pairs_lock); /* the peer may come and go */
	struct pair_end *p = peer_of(e);
	if (p) {
		struct pair_queue *pq = &p->q[q % p->be.nr_queues];
		pthread_mutex_lock(&pq->lock);
		if (pq->count < PAIR_SLOTS) {
			struct pair_slot *s = &pq->slots[(pq->head + pq->count) % PAIR_SLOTS];
			size_t off = 0;
			for (int i = 0; i < iovcnt; i++) {
				memcpy(s->data + off, iov[i].iov_base, iov[i].iov_len);
				off += iov[i].iov_len;
			}
			s->len = (uint32_t)total;
			if (pq->count++ == 0) {
				uint64_t one = 1;
				if (write(pq->efd, &one, sizeof(one)) < 0) {
					/* cannot fail for an eventfd below its maximum */
				}
			}
		} /* else: the receiver is behind; drop as a full NIC queue would */
		pthread_mutex_unlock(&pq->lock);
	}
	pthread_mutex_unlock(&pairs_lock);
	return 0;
}

static int pair_recv(struct net_backend *be, uint32_t q, struct virtio_net_hdr *vh, void *buf, uint32_t cap)
{
	struct pair_end *e = (struct pair_end *)be;
	struct pair_queue *pq = &e->q[q];
	int rc;
	pthread_mutex_lock(&pq->lock);
	if (!pq->count) {
		uint64_t v;
		if (read(pq->efd, &v, sizeof(v)) < 0) {
			/* already clear */
		}
		rc = -EAGAIN;
	} else {
		struct pair_slot *s = &pq->slots[pq->head];
		pq->head = (pq->head + 1) % PAIR_SLOTS;
		pq->count--;
		if (s->len > cap) {
			rc = -EMSGSIZE;
		} else {
			memcpy(buf, s->data, s->len);
			rc = (int)s->len;
		}
	}
	pthread_mutex_unlock(&pq->lock);
	memset(vh, 0, sizeof(*vh));
	vh->flags = VIRTIO_NET_HDR_F_DATA_VALID; /* it never left this host */
	return rc;
}

static int pair_rx_fd(struct net_backend *be, uint32_t q)
{
	return ((struct pair_end *)be)->q[q].efd;
}

static void pair_end_free(struct pair_end *e)
{
	for (uint32_t i = 0; i < e->be.nr_queues; i++) {
		if (e->q[i].efd >= 0)
			close(e->q[i].efd);
		free(e->q[i].slots);
		pthread_mutex_destroy(&e->q[i].lock);
	}
	free(e);
}

static void pair_destroy(struct net_backend *be)
{
	struct pair_end *e = (struct pair_end *)be;
	pthread_mutex_lock(&pairs_lock);
	struct pair *p = e->pair;
	p->end[p->end[0] == e ? 0 : 1] = NULL;
	if (!p->end[0] && !p->end[1]) {
		for (struct pair **pp = &pairs; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		free(p);
	}
	pthread_mutex_unlock(&pairs_lock);
	pair_end_free(e);
}

static const struct net_backend_ops pair_ops = {
	.send = pair_send, .recv = pair_recv, .rx_fd = pair_rx_fd, .destroy = pair_destroy,
};

int net_pair_open(const char *id, uint32_t nr_queues, struct net_backend **out)
{
	if (!id || !*id || strlen(id) >= 64 || !nr_queues || nr_queues > NET_BE_MAX_QUEUES)
		return -EINVAL;
	struct pair_end *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->be.ops = &pair_ops;
	e->be.nr_queues = nr_queues;
	snprintf(e->be.desc, sizeof(e->be.desc), "pair %s", id);
	for (uint32_t i = 0; i < nr_queues; i++) {
		pthread_mutex_init(&e->q[i].lock, NULL);
		e->q[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		e->q[i].slots = malloc(PAIR_SLOTS * sizeof(struct pair_slot));
		if (e->q[i].efd < 0 || !e->q[i].slots) {
			e->be.nr_queues = i + 1;
			pair_end_free(e);
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&pairs_lock);
	struct pair *p = pairs;
	while (p && strcmp(p->id, id))
		p = p->next;
	int rc = 0;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			rc = -ENOMEM;
		} else {
			snprintf(p->id, sizeof(p->id), "%s", id);
			p->next = pairs;
			pairs = p;
		}
	}
	if (!rc) {
		if (!p->end[0])
			p->end[0] = e;
		else if (!p->end[1])
			p->end[1] = e;
		else
			rc = -EBUSY;
	}
	if (!rc)
		e->pair = p;
	pthread_mutex_unlock(&pairs_lock);
	if (rc) {
		pair_end_free(e);
		return rc;
	}
	*out = &e->be;
	return 0;
}
