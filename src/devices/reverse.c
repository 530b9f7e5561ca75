/* The reversing echo device: the README's worked example of a VMBus device ("Adding a VMBus device"),
 * and a test device (--reverse-echo). Each INBAND packet the guest sends comes back as an INBAND
 * packet with the same transaction id and its payload bytes in reverse order (the payload as the ring
 * carries it: padded with zeros to a multiple of 8 bytes, so the padding comes first); other packets
 * are dropped. Its class GUID is REVERSE_CLASS_GUID_TEXT (include/gen2vm/proto/testdev.h).
 *
 * All a device needs is here: the VMBus callbacks (open, close, rx_ready), the class entry (its
 * option, create, destroy), and one line in vmdev_classes[] (src/devices/vmdev.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/vmdev.h"
#include "gen2vm/proto/testdev.h"

struct reverse {
	struct vmdev_host host;
	struct vmbus_device *dev;
};

/* Per open channel: one packet, and whether its answer still waits for room in the guest's ring. */
struct reverse_chan {
	uint8_t *buf;
	uint32_t cap;
	bool owed;
	uint64_t trans_id;
	uint32_t off, len;
};

static int reverse_open(void *ctx, struct vmbus_channel *chan)
{
	struct reverse_chan *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->cap = vmbus_channel_rx_ring(chan)->size; /* no packet is larger than its ring */
	if (!(rc->buf = malloc(rc->cap))) {
		free(rc);
		return -ENOMEM;
	}
	vmbus_channel_set_priv(chan, rc);
	return 0;
}

static void reverse_close(void *ctx, struct vmbus_channel *chan)
{
	struct reverse_chan *rc = vmbus_channel_priv(chan);
	if (rc)
		free(rc->buf);
	free(rc);
	vmbus_channel_set_priv(chan, NULL);
}

/* Sends the owed answer; false while the guest's ring is full (it signals when it makes room). */
static bool reverse_flush(struct vmbus_channel *chan, struct reverse_chan *rc)
{
	if (rc->owed && vmbus_channel_send(chan, VM_PKT_DATA_INBAND, 0, rc->trans_id, NULL, 0, rc->buf + rc->off,
					   rc->len) == -EAGAIN)
		return false;
	rc->owed = false;
	return true;
}

/* Drains the guest's ring. The guest signals only when it writes into a ring it sees empty, and it
 * sees the read index we publish, so the ring is masked while we drain and checked once more after
 * unmasking: a packet that came in between would otherwise wait for a signal that never comes. */
static void reverse_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct reverse_chan *rc = vmbus_channel_priv(chan);
	struct vmbus_ring *rx = vmbus_channel_rx_ring(chan);
	uint32_t len;
	vmbus_ring_mask(rx);
	for (;;) {
		while (reverse_flush(chan, rc) && vmbus_channel_recv(chan, rc->buf, rc->cap, &len) == 0) {
			struct vmbus_packet_descriptor d;
			memcpy(&d, rc->buf, sizeof(d));
			if (d.type != VM_PKT_DATA_INBAND) /* the ring checked offset8 against len */
				continue;
			rc->off = d.offset8 * 8u;
			rc->len = len - rc->off;
			for (uint32_t i = 0; i < rc->len / 2; i++) {
				uint8_t t = rc->buf[rc->off + i];
				rc->buf[rc->off + i] = rc->buf[rc->off + rc->len - 1 - i];
				rc->buf[rc->off + rc->len - 1 - i] = t;
			}
			rc->trans_id = d.trans_id;
			rc->owed = true;
		}
		vmbus_channel_recv_done(chan);
		if (rc->owed || !vmbus_ring_unmask(rx))
			break; /* owed: the guest signals when it makes room in its ring */
		vmbus_ring_mask(rx);
	}
	vmbus_ring_unmask(rx);
}

static const struct vmbus_device_ops reverse_ops = {
	.open = reverse_open,
	.close = reverse_close,
	.rx_ready = reverse_rx_ready,
};

/* ---- the class ---- */

static int reverse_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	return 0; /* a flag: nothing to keep */
}

static int reverse_create(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
			  size_t errlen)
{
	struct reverse *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "the reversing echo device: out of memory");
		return -ENOMEM;
	}
	r->host = *h;
	struct vmbus_device_desc d = {
		.name = "reverse",
		.instance_id = VMBUS_GUID(0x7e570100u, 0x9c1e, 0x4e0b, 0x8e, 0x31, 0x67, 0x65, 0x6e, 0x32, 0x76, 0x6d),
		.ops = &reverse_ops,
		.ctx = r,
	};
	vmbus_guid_parse(REVERSE_CLASS_GUID_TEXT, &d.class_id);
	int rc = vmdev_device_offer(h, &d, &r->dev);
	if (rc) {
		snprintf(err, errlen, "cannot offer the reversing echo device: %s", strerror(-rc));
		free(r);
		return rc;
	}
	*state = r;
	return 0;
}

static void reverse_destroy(void *state)
{
	struct reverse *r = state;
	if (!r)
		return;
	vmdev_device_withdraw(&r->host, r->dev);
	free(r);
}

static const struct vmdev_option reverse_options[] = { { "reverse-echo", false }, { NULL, false } };

const struct vmdev_class reverse_class = {
	.name = "reverse",
	.class_guid = REVERSE_CLASS_GUID_TEXT,
	.options = reverse_options,
	.usage = "  --reverse-echo             offer the reversing echo device (a test device)\n",
	.parse_option = reverse_parse_option,
	.create = reverse_create,
	.destroy = reverse_destroy,
};
