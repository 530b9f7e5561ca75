#include "devices/testdev.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vmdev.h"
#include "util/log.h"

struct testdev {
	struct vmbus_server *srv;
	struct vmbus_device *dev;
	uint64_t echoed;
};

/* Per open channel: one packet buffer and, when the host->guest ring was full, the echo still owed. */
struct testdev_chan {
	uint8_t *buf;
	uint32_t cap;
	bool pending;
	uint16_t pending_type;
	uint64_t pending_id;
	uint32_t pending_off, pending_len;
};

static int td_open(void *ctx, struct vmbus_channel *chan)
{
	struct testdev_chan *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return -ENOMEM;
	/* No packet can be larger than the ring it arrives in. */
	tc->cap = vmbus_channel_rx_ring(chan)->size;
	tc->buf = malloc(tc->cap);
	if (!tc->buf) {
		free(tc);
		return -ENOMEM;
	}
	vmbus_channel_set_priv(chan, tc);
	return 0;
}

static void td_close(void *ctx, struct vmbus_channel *chan)
{
	struct testdev_chan *tc = vmbus_channel_priv(chan);
	if (tc) {
		free(tc->buf);
		free(tc);
	}
	vmbus_channel_set_priv(chan, NULL);
}

/* Sends what the last packet owes; false when the ring is full (retry on the next rx_ready). */
static bool td_flush(struct testdev *td, struct vmbus_channel *chan, struct testdev_chan *tc)
{
	if (!tc->pending)
		return true;
	int rc = vmbus_channel_send(chan, tc->pending_type, 0, tc->pending_id, NULL, 0, tc->buf + tc->pending_off,
				    tc->pending_len);
	if (rc == -EAGAIN)
		return false;
	tc->pending = false;
	if (rc == 0 && tc->pending_type == VM_PKT_DATA_INBAND)
		td->echoed++;
	return true;
}

static void td_handle(struct testdev *td, struct vmbus_channel *chan, struct testdev_chan *tc, uint32_t len)
{
	struct vmbus_packet_descriptor d;
	memcpy(&d, tc->buf, sizeof(d));
	uint32_t off = d.offset8 * 8u, plen = len - off;
	if (d.type != VM_PKT_DATA_INBAND)
		return;
	struct testdev_ctl ctl;
	if ((d.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED) && plen >= sizeof(ctl)) {
		memcpy(&ctl, tc->buf + off, sizeof(ctl));
		if (ctl.magic == TESTDEV_CTL_MAGIC && ctl.op == TESTDEV_OP_SUBCHANNELS) {
			/* Recorded here; the server sends the offers when this call returns (the
			 * request is legal from any of our threads, no server lock involved). */
			int n = vmbus_device_offer_subchannels(vmbus_channel_device(chan), (uint16_t)ctl.count);
			struct testdev_ctl_reply r = { .status = n < 0 ? 1u : 0u, .offered = n < 0 ? 0u : (uint32_t)n };
			memcpy(tc->buf, &r, sizeof(r));
			*tc = (struct testdev_chan){ .buf = tc->buf, .cap = tc->cap, .pending = true,
						     .pending_type = VM_PKT_COMP, .pending_id = d.trans_id,
						     .pending_off = 0, .pending_len = sizeof(r) };
			return;
		}
	}
	tc->pending = true;
	tc->pending_type = VM_PKT_DATA_INBAND;
	tc->pending_id = d.trans_id;
	tc->pending_off = off;
	tc->pending_len = plen;
}

static void td_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct testdev *td = ctx;
	struct testdev_chan *tc = vmbus_channel_priv(chan);
	struct vmbus_ring *rx = vmbus_channel_rx_ring(chan);
	/* Masked while draining: the guest need not signal for packets we are about to see anyway. */
	vmbus_ring_mask(rx);
	for (;;) {
		while (td_flush(td, chan, tc)) {
			uint32_t len;
			int rc = vmbus_channel_recv(chan, tc->buf, tc->cap, &len);
			if (rc)
				break;
			td_handle(td, chan, tc, len);
		}
		vmbus_channel_recv_done(chan);
		if (tc->pending) /* blocked on a full ring: the guest signals when it frees space */
			break;
		if (!vmbus_ring_unmask(rx))
			return;
		vmbus_ring_mask(rx);
	}
	vmbus_ring_unmask(rx);
}

static const struct vmbus_device_ops td_ops = {
	.open = td_open,
	.close = td_close,
	.rx_ready = td_rx_ready,
};

int testdev_create(struct vmbus_server *srv, uint32_t instance, uint16_t max_subchannels, struct testdev **out)
{
	struct testdev *td = calloc(1, sizeof(*td));
	if (!td)
		return -ENOMEM;
	td->srv = srv;
	struct vmbus_device_desc d = {
		.name = "testdev",
		.instance_id = VMBUS_GUID(0x7e570000u + instance, 0x9c1e, 0x4e0b, 0x8e, 0x31, 0x67, 0x65, 0x6e, 0x32,
					  0x76, 0x6d),
		.max_subchannels = max_subchannels,
		.ops = &td_ops,
		.ctx = td,
	};
	vmbus_guid_parse(TESTDEV_CLASS_GUID_TEXT, &d.class_id);
	int rc = vmbus_server_device_add(srv, &d, &td->dev);
	if (rc) {
		free(td);
		return rc;
	}
	*out = td;
	return 0;
}

void testdev_destroy(struct testdev *td)
{
	if (!td)
		return;
	vmbus_server_device_remove(td->srv, td->dev);
	free(td);
}

uint64_t testdev_echoed(const struct testdev *td)
{
	return td->echoed;
}

struct vmbus_device *testdev_vmbus_device(struct testdev *td)
{
	return td->dev;
}

/* ---- the device class: --test-devices ---- */

struct testdev_class_state {
	pthread_mutex_t *srv_lock;
	struct testdev *td;
};

static int td_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	return 0; /* a flag: nothing to keep */
}

static void td_class_destroy(void *state)
{
	struct testdev_class_state *s = state;
	if (!s)
		return;
	pthread_mutex_lock(s->srv_lock);
	testdev_destroy(s->td);
	pthread_mutex_unlock(s->srv_lock);
	free(s);
}

static int td_class_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
			   size_t errlen)
{
	struct testdev_class_state *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "the VMBus test device: out of memory");
		return -ENOMEM;
	}
	s->srv_lock = h->srv_lock;
	pthread_mutex_lock(h->srv_lock);
	int r = testdev_create(h->srv, 0, 4, &s->td); /* one device however often the flag is given */
	pthread_mutex_unlock(h->srv_lock);
	if (r) {
		free(s);
		snprintf(err, errlen, "cannot create the VMBus test device: %s", strerror(-r));
		return r;
	}
	*state = s;
	return 0;
}

static const struct vmdev_option td_options[] = { { "test-devices", false }, { NULL, false } };

const struct vmdev_class testdev_class = {
	.name = "testdev",
	.class_guid = TESTDEV_CLASS_GUID_TEXT,
	.options = td_options,
	.usage = "  --test-devices             offer the VMBus echo device test guests use\n",
	.parse_option = td_parse_option,
	.create = td_class_create,
	.destroy = td_class_destroy,
};
