/* The synthetic console devices' shared parts: the "synthetic-console" setting and the VMBus glue
 * of one device (see console.h). */
#include "devices/console.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "util/log.h"

/* ---- the "synthetic-console" setting ---- */

static int console_settings_parse_option(const char *opt, const char *arg, void *cfg, char *err, size_t errlen)
{
	*(bool *)cfg = true; /* a flag */
	return 0;
}

static int console_settings_parse_json(struct json_object *v, void *cfg, char *err, size_t errlen)
{
	if (!json_object_is_type(v, json_type_boolean)) {
		snprintf(err, errlen, "\"synthetic_console\" is true or false");
		return -EINVAL;
	}
	*(bool *)cfg = json_object_get_boolean(v);
	return 0;
}

bool console_settings_enabled(void *const *cfgs, unsigned n)
{
	return n && *(const bool *)cfgs[n - 1];
}

static const struct vmdev_option console_settings_options[] = { { "synthetic-console", false }, { NULL, false } };

const struct vmdev_class console_settings_class = {
	.name = "synthetic-console",
	.options = console_settings_options,
	.usage = "  --synthetic-console        offer the synthetic keyboard, mouse and video devices (the\n"
		 "                             screen: --vnc, --web-console, control verb screenshot)\n",
	.json_key = "synthetic_console",
	.json_scalar = true,
	.config_size = sizeof(bool),
	.parse_option = console_settings_parse_option,
	.parse_json = console_settings_parse_json,
};

/* ---- one device on a VMBus ---- */

int console_dev_send(struct console_dev *d, const void *msg, uint32_t len, uint64_t trans)
{
	if (!d->chan)
		return -ENOTCONN;
	return vmbus_channel_send(d->chan, VM_PKT_DATA_INBAND, 0, trans, NULL, 0, msg, len);
}

uint32_t console_dev_tx_room(struct console_dev *d)
{
	return d->chan ? vmbus_ring_avail_write(vmbus_channel_tx_ring(d->chan)) : 0;
}

static int console_dev_open(void *ctx, struct vmbus_channel *chan)
{
	struct console_dev *d = ctx;
	uint32_t cap = vmbus_channel_rx_ring(chan)->size; /* no packet is larger than its ring */
	uint8_t *rx = malloc(cap);
	if (!rx)
		return -ENOMEM;
	pthread_mutex_lock(&d->lock);
	free(d->rx);
	d->rx = rx;
	d->rx_cap = cap;
	d->chan = chan;
	if (d->ops->opened)
		d->ops->opened(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void console_dev_close(void *ctx, struct vmbus_channel *chan)
{
	struct console_dev *d = ctx;
	pthread_mutex_lock(&d->lock);
	d->chan = NULL;
	if (d->ops->closed)
		d->ops->closed(d);
	pthread_mutex_unlock(&d->lock);
}

static void console_dev_inband(void *ctx, const uint8_t *pkt, uint32_t len, uint64_t trans)
{
	struct console_dev *d = ctx;
	d->ops->packet(d, pkt, len, trans);
}

static void console_dev_rx_ready(void *ctx, struct vmbus_channel *chan)
{
	struct console_dev *d = ctx;
	pthread_mutex_lock(&d->lock);
	vmbus_channel_drain_inband(chan, d->rx, d->rx_cap, d->name, console_dev_inband, d, &d->chan);
	pthread_mutex_unlock(&d->lock);
}

static const struct vmbus_device_ops console_dev_vmbus_ops = {
	.open = console_dev_open,
	.close = console_dev_close,
	.rx_ready = console_dev_rx_ready,
};

int console_dev_create(struct console_dev **out, const struct vmdev_host *h, const char *name, const char *class_guid,
		       uint32_t instance, uint16_t mmio_megabytes, const struct console_dev_ops *ops, void *svc,
		       char *err, size_t errlen)
{
	struct console_dev *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "the synthetic %s: out of memory", name);
		return -ENOMEM;
	}
	d->name = name;
	d->ops = ops;
	d->svc = svc;
	d->host = *h;
	pthread_mutex_init(&d->lock, NULL);
	d->notify_fd = -1;
	/* The instance GUIDs spell "gen2vm" in their last bytes: stable across runs, as Hyper-V's. */
	struct vmbus_device_desc desc = {
		.name = name,
		.instance_id = VMBUS_GUID(instance, 0x9c1e, 0x4e0b, 0x8e, 0x31, 0x67, 0x65, 0x6e, 0x32, 0x76, 0x6d),
		.mmio_megabytes = mmio_megabytes,
		.ops = &console_dev_vmbus_ops,
		.ctx = d,
	};
	vmbus_guid_parse(class_guid, &desc.class_id);
	int r = vmdev_device_offer(h, &desc, &d->vdev);
	if (r) {
		snprintf(err, errlen, "cannot offer the synthetic %s: %s", name, strerror(-r));
		console_dev_destroy(d);
		return r;
	}
	*out = d;
	return 0;
}

void console_dev_destroy(struct console_dev *d)
{
	if (!d)
		return;
	vmdev_device_withdraw(&d->host, d->vdev);
	pthread_mutex_destroy(&d->lock);
	free(d->rx);
	free(d);
}

int console_dev_save(const struct console_dev *d, const void *rec, size_t n, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (!d)
		return 0;
	if (!(*out = malloc(n)))
		return -ENOMEM;
	memcpy(*out, rec, n);
	*len = n;
	return 0;
}

int console_dev_restore_len(const struct console_dev *d, size_t len, size_t n, char *err, size_t errlen)
{
	if (len != (d ? n : 0)) {
		snprintf(err, errlen, "its state has %zu bytes, expected %zu", len, d ? n : (size_t)0);
		return -EINVAL;
	}
	return 0;
}

void console_dev_hold(struct console_dev *d, bool held)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->input_held = held;
	pthread_mutex_unlock(&d->lock);
}
