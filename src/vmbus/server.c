#include "vmbus/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen2vm/proto/savestate.h"
#include "util/buf.h"
#include "util/log.h"

_Static_assert(VMBUS_EAGAIN == EAGAIN && VMBUS_EPROTO == EPROTO && VMBUS_EMSGSIZE == EMSGSIZE &&
		       VMBUS_EINVAL == EINVAL && VMBUS_ENOMEM == ENOMEM && VMBUS_ETIMEDOUT == ETIMEDOUT,
	       "guestlib error numbers are Linux errno values");

enum chan_state {
	CHAN_UNOFFERED, /* registered; no relid */
	CHAN_OFFERED,   /* offered to the guest */
	CHAN_OPEN,      /* rings mapped, device running */
	CHAN_RESCINDED, /* RESCIND sent; waiting for RELID_RELEASED */
};

struct vmbus_channel {
	struct vmbus_server *srv;
	struct vmbus_device *dev;
	enum chan_state state;
	uint16_t sub_index;
	uint32_t relid;
	uint32_t target_vp; /* atomic: MODIFYCHANNEL changes it while device threads signal */
	bool opening;       /* inside ops->open: signals are deferred until OPEN_RESULT is out */
	bool signal_deferred;
	bool broken_logged;
	bool retired; /* a sub-channel rescinded when its primary closed: on srv->retired, not in dev->chan */
	struct vmbus_channel *next_retired;
	struct vmbus_gpadl *ring_gpadl;
	uint32_t ring_offset; /* OPENCHANNEL's downstream ring page offset */
	struct vmbus_view view_rx, view_tx;
	struct vmbus_ring rx, tx;
	uint8_t userdata[VMBUS_OFFER_USER_DEFINED_BYTES];
	void *priv;
};

struct vmbus_device {
	struct vmbus_server *srv;
	struct vmbus_device_desc desc;
	struct vmbus_device *next;
	bool removed;         /* written under async_lock too: device threads read it */
	uint16_t sub_wanted;  /* async_lock: sub-channels asked for (offered, pending, or to be created) */
	uint16_t nr_channels; /* primary + sub-channels created so far */
	uint16_t nr_live;     /* channels not yet freed (a removed device waits for RELID_RELEASED) */
	struct vmbus_channel *chan[];
};

struct vmbus_server {
	struct vmbus_server_config cfg;
	struct vmbus_server_notifier n;
	bool connected;
	bool offers_requested;
	uint32_t version;
	uint32_t target_vcpu;
	uint64_t interrupt_page, monitor_page1, monitor_page2; /* < 5.0: noted; no channel uses them */
	struct vmbus_channel *relid_map[VMBUS_MAX_RELID + 1];
	struct vmbus_device *devices;
	struct vmbus_channel *retired; /* rescinded sub-channels waiting for RELID_RELEASED */
	struct vmbus_gpadl *gpadls; /* live and tearing-down GPADLs (async_lock) */
	uint32_t nr_gpadls;
	uint64_t gpadl_pages;
	/* What device threads may touch outside the server lock (server.h: "callable from any of the
	 * device's threads"): the GPADL list and its references, sub-channel requests, and the work they
	 * leave for the next server call. Lock order: server lock -> async_lock; nothing is sent to the
	 * guest by a device thread: srv_run_deferred sends it, under the server lock. */
	pthread_mutex_t async_lock;
	bool deferred;                 /* atomic: torndown or a sub_wanted waits for srv_run_deferred */
	struct vmbus_gpadl *torndown;  /* released by their last user: GPADL_TORNDOWN still to send */
};

static const uint32_t supported_versions[] = {
	VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1, VMBUS_VERSION_WIN10_V5,
	VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,      VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
};

/* --- outbound ------------------------------------------------------------------------------------ */

static void srv_send(struct vmbus_server *s, uint32_t vp, void *msg, uint32_t len)
{
	int rc = s->n.post_to_guest(s->n.ctx, vp, msg, len);
	if (rc)
		log_warn("vmbus: message %u to VP %u lost (%d)", ((struct vmbus_channel_message_header *)msg)->msgtype,
			 vp, rc);
}

#define SEND(s, m) srv_send((s), (s)->target_vcpu, &(m), sizeof(m))

static void srv_send_header_only(struct vmbus_server *s, uint32_t type)
{
	struct vmbus_channel_message_header h = { .msgtype = type };
	SEND(s, h);
}

/* --- GPADLs ------------------------------------------------------------------------------------- */

static struct vmbus_gpadl *gpadl_find(struct vmbus_server *s, uint32_t id)
{
	for (struct vmbus_gpadl *g = s->gpadls; g; g = g->next)
		if (g->id == id && !g->tearing_down)
			return g;
	return NULL;
}

static void gpadl_unlink(struct vmbus_server *s, struct vmbus_gpadl *g)
{
	for (struct vmbus_gpadl **pp = &s->gpadls; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			s->nr_gpadls--;
			s->gpadl_pages -= g->reserved_pfns;
			return;
		}
}

static void gpadl_free(struct vmbus_gpadl *g)
{
	vmbus_gpadl_release_storage(g);
	free(g);
}

/* Drops a reference (async_lock held); the last one completes a pending teardown, whose TORNDOWN
 * srv_run_deferred sends. Returns true when it queued one. */
static bool gpadl_put_locked(struct vmbus_server *s, struct vmbus_gpadl *g)
{
	if (--g->refs)
		return false;
	if (g->orphaned) {
		gpadl_free(g);
	} else if (g->tearing_down) {
		gpadl_unlink(s, g);
		g->next = s->torndown;
		s->torndown = g;
		__atomic_store_n(&s->deferred, true, __ATOMIC_RELEASE);
		return true;
	}
	return false;
}

static void gpadl_put(struct vmbus_server *s, struct vmbus_gpadl *g)
{
	pthread_mutex_lock(&s->async_lock);
	gpadl_put_locked(s, g);
	pthread_mutex_unlock(&s->async_lock);
}

/* Forgets every GPADL of relid (all of them when relid == 0): referenced ones are orphaned. */
static void gpadl_drop_all(struct vmbus_server *s, uint32_t relid)
{
	pthread_mutex_lock(&s->async_lock);
	struct vmbus_gpadl **pp = &s->gpadls;
	while (*pp) {
		struct vmbus_gpadl *g = *pp;
		if (relid && g->relid != relid) {
			pp = &g->next;
			continue;
		}
		gpadl_unlink(s, g);
		if (g->refs)
			g->orphaned = true;
		else
			gpadl_free(g);
	}
	if (!relid) /* a new connection: the old one's pending TORNDOWNs mean nothing to it */
		while (s->torndown) {
			struct vmbus_gpadl *g = s->torndown;
			s->torndown = g->next;
			gpadl_free(g);
		}
	pthread_mutex_unlock(&s->async_lock);
}

/* --- channels ----------------------------------------------------------------------------------- */

static struct vmbus_channel *chan_by_relid(struct vmbus_server *s, uint32_t relid)
{
	return relid && relid <= VMBUS_MAX_RELID ? s->relid_map[relid] : NULL;
}

static uint32_t chan_connection_id(const struct vmbus_channel *c)
{
	return VMBUS_CHANNEL_CONNECTION_BASE + c->relid;
}

static void chan_offer(struct vmbus_server *s, struct vmbus_channel *c)
{
	uint32_t relid = 1;
	while (relid <= VMBUS_MAX_RELID && s->relid_map[relid])
		relid++;
	if (relid > VMBUS_MAX_RELID) {
		log_error("vmbus: %s: no free relid, channel not offered", c->dev->desc.name);
		return;
	}
	s->relid_map[relid] = c;
	c->relid = relid;
	c->state = CHAN_OFFERED;
	const struct vmbus_device_desc *d = &c->dev->desc;
	struct vmbus_channel_offer_channel m = {
		.header.msgtype = CHANNELMSG_OFFERCHANNEL,
		.offer = { .if_type = d->class_id, .if_instance = d->instance_id, .chn_flags = d->chn_flags,
			   .mmio_megabytes = d->mmio_megabytes, .sub_channel_index = c->sub_index },
		.child_relid = relid,
		.is_dedicated_interrupt = 1, /* the guest then signals by hypercall only, never the int page */
		.connection_id = chan_connection_id(c),
	};
	memcpy(m.offer.user_def, d->user_def, sizeof(m.offer.user_def));
	SEND(s, m);
}

static void chan_close(struct vmbus_server *s, struct vmbus_channel *c)
{
	if (c->state != CHAN_OPEN)
		return;
	c->dev->desc.ops->close(c->dev->desc.ctx, c);
	vmbus_view_unmap(&c->view_rx);
	vmbus_view_unmap(&c->view_tx);
	memset(&c->rx, 0, sizeof(c->rx));
	memset(&c->tx, 0, sizeof(c->tx));
	gpadl_put(s, c->ring_gpadl);
	c->ring_gpadl = NULL;
	c->priv = NULL;
	c->state = CHAN_OFFERED;
	if (s->n.channel_closed)
		s->n.channel_closed(s->n.ctx, c->relid, chan_connection_id(c));
}

static void device_free_if_done(struct vmbus_server *s, struct vmbus_device *dev)
{
	if (!dev->removed || dev->nr_live)
		return;
	for (struct vmbus_device **pp = &s->devices; *pp; pp = &(*pp)->next)
		if (*pp == dev) {
			*pp = dev->next;
			break;
		}
	free(dev);
}

/* Frees a channel of a removed device (its relid, if any, is released); the caller then calls
 * device_free_if_done. */
static void chan_free(struct vmbus_server *s, struct vmbus_channel *c)
{
	struct vmbus_device *dev = c->dev;
	if (c->relid) {
		s->relid_map[c->relid] = NULL;
		gpadl_drop_all(s, c->relid);
	}
	if (c->retired)
		for (struct vmbus_channel **pp = &s->retired; *pp; pp = &(*pp)->next_retired)
			if (*pp == c) {
				*pp = c->next_retired;
				break;
			}
	for (uint16_t i = 0; i < dev->nr_channels; i++)
		if (dev->chan[i] == c)
			dev->chan[i] = NULL;
	free(c);
	dev->nr_live--;
}

static struct vmbus_channel *chan_new(struct vmbus_device *dev, uint16_t sub_index);

/* Creates and offers the sub-channels devices asked for, and sends the GPADL_TORNDOWNs their
 * releases completed (server lock held). Every entry point ends with it, so work a device queued in
 * a callback goes out before the entry returns. Offers go first, then the TORNDOWNs, oldest first:
 * the two are unrelated for the guest. */
static void srv_run_deferred(struct vmbus_server *s)
{
	if (!__atomic_load_n(&s->deferred, __ATOMIC_ACQUIRE))
		return; /* the common case: one load on the doorbell path */
	pthread_mutex_lock(&s->async_lock);
	__atomic_store_n(&s->deferred, false, __ATOMIC_RELAXED);
	struct vmbus_gpadl *done = s->torndown;
	s->torndown = NULL;
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next) {
		while (!dev->removed && dev->nr_channels < dev->sub_wanted + 1u) {
			struct vmbus_channel *c = chan_new(dev, dev->nr_channels);
			if (!c) {
				log_error("vmbus: %s: out of memory for sub-channels", dev->desc.name);
				dev->sub_wanted = (uint16_t)(dev->nr_channels - 1);
				break;
			}
			if (s->offers_requested)
				chan_offer(s, c);
		}
	}
	pthread_mutex_unlock(&s->async_lock);
	/* Oldest first: the list is pushed at the head. */
	struct vmbus_gpadl *rev = NULL;
	while (done) {
		struct vmbus_gpadl *g = done;
		done = g->next;
		g->next = rev;
		rev = g;
	}
	while (rev) {
		struct vmbus_gpadl *g = rev;
		rev = g->next;
		struct vmbus_channel_gpadl_torndown m = { .header.msgtype = CHANNELMSG_GPADL_TORNDOWN, .gpadl = g->id };
		gpadl_free(g);
		SEND(s, m);
	}
}

/* --- connection ----------------------------------------------------------------------------------- */

/* Back to the disconnected state: every channel closed and unoffered, every GPADL gone. */
static void srv_reset(struct vmbus_server *s)
{
	while (s->retired) {
		struct vmbus_channel *c = s->retired;
		s->retired = c->next_retired;
		s->relid_map[c->relid] = NULL;
		c->dev->nr_live--;
		free(c);
	}
	for (struct vmbus_device *dev = s->devices, *next; dev; dev = next) {
		next = dev->next;
		for (uint16_t i = 0; i < dev->nr_channels; i++) {
			struct vmbus_channel *c = dev->chan[i];
			if (!c)
				continue;
			chan_close(s, c);
			if (c->relid)
				s->relid_map[c->relid] = NULL;
			c->relid = 0;
			c->state = CHAN_UNOFFERED;
		}
		if (dev->removed) {
			for (uint16_t i = 0; i < dev->nr_channels; i++)
				if (dev->chan[i]) {
					free(dev->chan[i]);
					dev->chan[i] = NULL;
					dev->nr_live--;
				}
			device_free_if_done(s, dev);
		}
	}
	gpadl_drop_all(s, 0);
	s->connected = false;
	s->offers_requested = false;
	s->version = 0;
	s->interrupt_page = s->monitor_page1 = s->monitor_page2 = 0;
}

static bool version_known(uint32_t v)
{
	for (size_t i = 0; i < sizeof(supported_versions) / sizeof(supported_versions[0]); i++)
		if (supported_versions[i] == v)
			return true;
	return false;
}

static void on_initiate_contact(struct vmbus_server *s, uint32_t vp, uint32_t conn, const void *p)
{
	struct vmbus_channel_initiate_contact m;
	memcpy(&m, p, sizeof(m));
	uint32_t v = m.vmbus_version_requested;
	if (s->connected) {
		/* A new kernel (kexec without UNLOAD) or firmware handing over: start from scratch. */
		log_guest("vmbus: INITIATE_CONTACT while connected; resetting the connection");
		srv_reset(s);
	}
	bool ok = version_known(v) && v <= s->cfg.max_version;
	/* 5.0 and later must come on connection 4 and name SINT 2; older ones on connection 1. */
	if (ok && v >= VMBUS_VERSION_WIN10_V5)
		ok = conn == VMBUS_MESSAGE_CONNECTION_ID_4 && m.msg_sint == VMBUS_MESSAGE_SINT;
	else if (ok)
		ok = conn == VMBUS_MESSAGE_CONNECTION_ID;
	uint32_t target = m.target_vcpu;
	if (target >= s->cfg.nr_vps) {
		log_guest("vmbus: INITIATE_CONTACT target_vcpu %u out of range", target);
		ok = false;
		target = vp;
	}
	s->target_vcpu = target;
	if (ok) {
		s->connected = true;
		s->version = v;
		if (v < VMBUS_VERSION_WIN10_V5) {
			s->interrupt_page = m.interrupt_page;
			s->monitor_page1 = m.monitor_page1;
			s->monitor_page2 = m.monitor_page2;
		}
		log_info("vmbus: guest connected, version %u.%u, messages to VP %u", v >> 16, v & 0xFFFF, target);
	}
	struct vmbus_channel_version_response r = {
		.header.msgtype = CHANNELMSG_VERSION_RESPONSE,
		.version_supported = ok,
		.msg_conn_id = VMBUS_SERVER_MSG_CONNECTION_ID,
	};
	SEND(s, r);
}

static void on_request_offers(struct vmbus_server *s)
{
	if (s->offers_requested) {
		log_guest("vmbus: REQUESTOFFERS twice");
	} else {
		s->offers_requested = true;
		for (struct vmbus_device *dev = s->devices; dev; dev = dev->next)
			for (uint16_t i = 0; i < dev->nr_channels; i++)
				if (dev->chan[i] && dev->chan[i]->state == CHAN_UNOFFERED)
					chan_offer(s, dev->chan[i]);
	}
	srv_send_header_only(s, CHANNELMSG_ALLOFFERS_DELIVERED);
}

static void gpadl_created_reply(struct vmbus_server *s, uint32_t relid, uint32_t id, uint32_t status)
{
	struct vmbus_channel_gpadl_created r = {
		.header.msgtype = CHANNELMSG_GPADL_CREATED, .child_relid = relid, .gpadl = id, .creation_status = status
	};
	SEND(s, r);
}

/* Feeds bytes into g; on completion or failure answers GPADL_CREATED (and frees g on failure). */
static void gpadl_feed_and_answer(struct vmbus_server *s, struct vmbus_gpadl *g, const void *bytes, uint32_t len)
{
	/* Pages are counted when a range is announced, so half-sent GPADLs cannot exceed the limit. */
	uint64_t budget = s->cfg.max_gpadl_pages - s->gpadl_pages, before = g->reserved_pfns;
	int rc = vmbus_gpadl_feed(g, bytes, len, s->cfg.mem, &budget);
	s->gpadl_pages += g->reserved_pfns - before;
	if (rc == 0)
		return;
	if (rc == 1) {
		gpadl_created_reply(s, g->relid, g->id, 0);
		return;
	}
	log_guest("vmbus: GPADL %#x rejected (%s)", g->id,
		  rc == -EFAULT   ? "page outside guest RAM" :
		  rc == -ENOSPC   ? "over the GPADL page limit" :
		  rc == -ENOMEM   ? "out of memory" : "malformed range buffer");
	uint32_t relid = g->relid, id = g->id;
	gpadl_unlink(s, g);
	gpadl_free(g);
	gpadl_created_reply(s, relid, id, VMBUS_STATUS_UNSUCCESSFUL);
}

static void on_gpadl_header_locked(struct vmbus_server *s, const uint8_t *p, uint32_t len)
{
	struct vmbus_channel_gpadl_header m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_channel *c = chan_by_relid(s, m.child_relid);
	const char *why = NULL;
	if (!c || c->state == CHAN_RESCINDED)
		why = "unknown relid";
	else if ((len - sizeof(m)) % 8)
		why = "bad length";
	else if (gpadl_find(s, m.gpadl))
		why = "handle in use";
	else if (s->nr_gpadls >= s->cfg.max_gpadls)
		why = "too many GPADLs";
	struct vmbus_gpadl *g = NULL;
	if (!why) {
		g = calloc(1, sizeof(*g));
		if (!g)
			why = "out of memory";
		else if (vmbus_gpadl_begin(g, m.gpadl, m.child_relid, m.rangecount, m.range_buflen))
			why = "bad range count";
	}
	if (why) {
		log_guest("vmbus: GPADL_HEADER %#x for relid %u rejected: %s", m.gpadl, m.child_relid, why);
		free(g);
		gpadl_created_reply(s, m.child_relid, m.gpadl, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	g->next = s->gpadls;
	s->gpadls = g;
	s->nr_gpadls++;
	gpadl_feed_and_answer(s, g, p + sizeof(m), len - (uint32_t)sizeof(m));
}

static void on_gpadl_body_locked(struct vmbus_server *s, const uint8_t *p, uint32_t len)
{
	struct vmbus_channel_gpadl_body m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_gpadl *g = gpadl_find(s, m.gpadl);
	if (!g || g->complete || len == sizeof(m)) {
		log_guest("vmbus: GPADL_BODY for %s GPADL %#x dropped", !g ? "unknown" : "complete", m.gpadl);
		return;
	}
	gpadl_feed_and_answer(s, g, p + sizeof(m), len - (uint32_t)sizeof(m));
}

static void on_gpadl_teardown_locked(struct vmbus_server *s, const void *p)
{
	struct vmbus_channel_gpadl_teardown m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_gpadl *g = gpadl_find(s, m.gpadl);
	if (!g || g->relid != m.child_relid) {
		log_guest("vmbus: GPADL_TEARDOWN of unknown GPADL %#x (relid %u)", m.gpadl, m.child_relid);
		return;
	}
	/* Held by an open ring or a device: TORNDOWN goes out when the last user lets go. */
	g->tearing_down = true;
	g->refs++;
	gpadl_put_locked(s, g);
}

/* The GPADL messages change the list device threads search (vmbus_channel_gpadl_acquire). */
static void on_gpadl_msg(struct vmbus_server *s, uint32_t type, const uint8_t *p, uint32_t len)
{
	pthread_mutex_lock(&s->async_lock);
	if (type == CHANNELMSG_GPADL_HEADER)
		on_gpadl_header_locked(s, p, len);
	else if (type == CHANNELMSG_GPADL_BODY)
		on_gpadl_body_locked(s, p, len);
	else
		on_gpadl_teardown_locked(s, p);
	pthread_mutex_unlock(&s->async_lock);
}

static void open_result(struct vmbus_server *s, const struct vmbus_channel_open_channel *m, uint32_t status)
{
	struct vmbus_channel_open_result r = { .header.msgtype = CHANNELMSG_OPENCHANNEL_RESULT,
					       .child_relid = m->child_relid, .openid = m->openid, .status = status };
	SEND(s, r);
}

/* Maps one ring (header page + data pages, data twice) of the ring GPADL. */
static int chan_map_ring(struct vmbus_server *s, struct vmbus_view *v, struct vmbus_ring *r, const uint64_t *pfns,
			 uint32_t n)
{
	int rc = vmbus_view_map(v, s->cfg.mem, pfns, n, 1);
	if (rc)
		return rc;
	return vmbus_ring_init(r, v->base, v->base + HV_PAGE_SIZE, (n - 1) * HV_PAGE_SIZE, true);
}

/* Opens c on ring GPADL ring_id (downstream ring from page off) as OPENCHANNEL asks, and on a restore:
 * checks, maps the rings, runs the device's open. 0; -EINVAL with *why saying what was refused; or the
 * device's -errno (logged, *why NULL). */
static int chan_open(struct vmbus_server *s, struct vmbus_channel *c, uint32_t ring_id, uint32_t off,
		     uint32_t target_vp, const uint8_t *userdata, const char **why)
{
	pthread_mutex_lock(&s->async_lock);
	struct vmbus_gpadl *g = gpadl_find(s, ring_id);
	pthread_mutex_unlock(&s->async_lock);
	*why = NULL;
	if (c->state != CHAN_OFFERED)
		*why = c->state == CHAN_OPEN ? "already open" : "rescinded";
	else if (!g || !g->complete || g->relid != c->relid)
		*why = "unknown ring GPADL";
	else if (g->nr_ranges != 1 || g->ranges[0].byte_offset || g->ranges[0].byte_count != g->nr_pfns * HV_PAGE_SIZE)
		*why = "ring GPADL is not whole pages";
	else if (g->nr_pfns < 4 || off < 2 || off > g->nr_pfns - 2 || g->nr_pfns - off > 0x80000u || off > 0x80000u)
		*why = "bad downstream_ringbuffer_pageoffset";
	else if (target_vp >= s->cfg.nr_vps)
		*why = "target_vp out of range";
	if (!*why) {
		int rc = chan_map_ring(s, &c->view_rx, &c->rx, g->pfns, off);
		if (!rc)
			rc = chan_map_ring(s, &c->view_tx, &c->tx, g->pfns + off, g->nr_pfns - off);
		if (rc) {
			*why = rc == -EPROTO ? "bad ring indices" : "cannot map ring";
			vmbus_view_unmap(&c->view_rx);
			vmbus_view_unmap(&c->view_tx);
		}
	}
	if (*why)
		return -EINVAL;
	pthread_mutex_lock(&s->async_lock);
	g->refs++; /* only the server tears down: g is still there */
	pthread_mutex_unlock(&s->async_lock);
	c->ring_gpadl = g;
	c->ring_offset = off;
	c->state = CHAN_OPEN;
	c->broken_logged = false;
	__atomic_store_n(&c->target_vp, target_vp, __ATOMIC_RELAXED);
	memcpy(c->userdata, userdata, sizeof(c->userdata));
	c->opening = true;
	c->signal_deferred = false;
	int rc = c->dev->desc.ops->open(c->dev->desc.ctx, c);
	c->opening = false;
	if (rc) {
		log_warn("vmbus: %s: open of relid %u failed (%d)", c->dev->desc.name, c->relid, rc);
		vmbus_view_unmap(&c->view_rx);
		vmbus_view_unmap(&c->view_tx);
		c->state = CHAN_OFFERED;
		c->ring_gpadl = NULL;
		gpadl_put(s, g);
		return rc; /* *why stays NULL: logged here */
	}
	return 0;
}

/* After chan_open (and the OPEN_RESULT, if any): doorbells, and the signals the open deferred. */
static void chan_opened(struct vmbus_server *s, struct vmbus_channel *c)
{
	if (s->n.channel_opened)
		s->n.channel_opened(s->n.ctx, c->relid, chan_connection_id(c));
	if (c->signal_deferred)
		vmbus_channel_signal_guest(c);
}

static void on_open_channel(struct vmbus_server *s, const void *p)
{
	struct vmbus_channel_open_channel m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_channel *c = chan_by_relid(s, m.child_relid);
	if (!c) {
		log_guest("vmbus: OPENCHANNEL for unknown relid %u", m.child_relid);
		return;
	}
	const char *why;
	int rc = chan_open(s, c, m.ringbuffer_gpadlhandle, m.downstream_ringbuffer_pageoffset, m.target_vp, m.userdata,
			   &why);
	if (rc) {
		if (why)
			log_guest("vmbus: OPENCHANNEL relid %u refused: %s", m.child_relid, why);
		open_result(s, &m, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	open_result(s, &m, 0);
	chan_opened(s, c);
}

/* Closes c and takes it from the guest: an offered channel is rescinded (freed at its RELID_RELEASED),
 * one never offered is freed now. Returns false when c was freed. */
static bool chan_withdraw(struct vmbus_server *s, struct vmbus_channel *c)
{
	chan_close(s, c);
	if (c->state == CHAN_OFFERED) {
		struct vmbus_channel_relid_msg m = { .header.msgtype = CHANNELMSG_RESCIND_CHANNELOFFER,
						     .child_relid = c->relid };
		c->state = CHAN_RESCINDED;
		SEND(s, m);
	} else if (c->state == CHAN_UNOFFERED) {
		chan_free(s, c);
		return false;
	}
	return true;
}

/* Hyper-V's rule: sub-channels live while their primary channel is open. When the guest closes the
 * primary (driver unbound, or hv_netvsc reattaching for an MTU or ring change) the sub-channels are
 * rescinded, and the next open asks for new ones, which come as new offers with new relids: Linux waits
 * for those offers before it uses the device again. */
static void dev_retire_subchannels(struct vmbus_server *s, struct vmbus_device *dev)
{
	for (uint16_t i = 1; i < dev->nr_channels; i++) {
		struct vmbus_channel *c = dev->chan[i];
		dev->chan[i] = NULL;
		if (c && chan_withdraw(s, c)) { /* kept findable for RELID_RELEASED */
			c->retired = true;
			c->next_retired = s->retired;
			s->retired = c;
		}
	}
	dev->nr_channels = 1;
	pthread_mutex_lock(&s->async_lock);
	dev->sub_wanted = 0;
	pthread_mutex_unlock(&s->async_lock);
}

static void on_close_channel(struct vmbus_server *s, const void *p)
{
	struct vmbus_channel_relid_msg m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_channel *c = chan_by_relid(s, m.child_relid);
	if (!c || (c->state != CHAN_OPEN && c->state != CHAN_RESCINDED)) {
		log_guest("vmbus: CLOSECHANNEL for relid %u that is not open", m.child_relid);
		return;
	}
	chan_close(s, c); /* a rescinded channel was closed already: nothing to do */
	if (c->sub_index == 0 && !c->dev->removed)
		dev_retire_subchannels(s, c->dev);
}

static void on_relid_released(struct vmbus_server *s, const void *p)
{
	struct vmbus_channel_relid_msg m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_channel *c = chan_by_relid(s, m.child_relid);
	if (!c || c->state != CHAN_RESCINDED) {
		log_guest("vmbus: RELID_RELEASED for relid %u that was not rescinded", m.child_relid);
		return;
	}
	struct vmbus_device *dev = c->dev;
	chan_free(s, c);
	device_free_if_done(s, dev);
}

static void on_modify_channel(struct vmbus_server *s, const void *p)
{
	struct vmbus_channel_modifychannel m;
	memcpy(&m, p, sizeof(m));
	struct vmbus_channel *c = chan_by_relid(s, m.child_relid);
	if (s->version < VMBUS_VERSION_WIN10_V4_1 || !c) {
		log_guest("vmbus: MODIFYCHANNEL for relid %u not allowed", m.child_relid);
		return;
	}
	uint32_t status = 0;
	if (m.target_vp >= s->cfg.nr_vps || c->state != CHAN_OPEN) {
		log_guest("vmbus: MODIFYCHANNEL relid %u to VP %u refused", m.child_relid, m.target_vp);
		status = VMBUS_STATUS_UNSUCCESSFUL;
	} else {
		__atomic_store_n(&c->target_vp, m.target_vp, __ATOMIC_RELAXED);
	}
	if (s->version >= VMBUS_VERSION_WIN10_V5_3) {
		struct vmbus_channel_modifychannel_response r = {
			.header.msgtype = CHANNELMSG_MODIFYCHANNEL_RESPONSE, .child_relid = m.child_relid, .status = status
		};
		SEND(s, r);
	}
}

static void on_unload(struct vmbus_server *s)
{
	srv_reset(s);
	srv_send_header_only(s, CHANNELMSG_UNLOAD_RESPONSE);
}

/* Minimum payload size per message type the guest may send; 0 = not a guest->host message. */
static uint32_t msg_min_size(uint32_t type)
{
	switch (type) {
	case CHANNELMSG_INITIATE_CONTACT: return sizeof(struct vmbus_channel_initiate_contact);
	case CHANNELMSG_REQUESTOFFERS:
	case CHANNELMSG_UNLOAD: return sizeof(struct vmbus_channel_message_header);
	case CHANNELMSG_OPENCHANNEL: return sizeof(struct vmbus_channel_open_channel);
	case CHANNELMSG_CLOSECHANNEL:
	case CHANNELMSG_RELID_RELEASED: return sizeof(struct vmbus_channel_relid_msg);
	case CHANNELMSG_GPADL_HEADER: return sizeof(struct vmbus_channel_gpadl_header);
	case CHANNELMSG_GPADL_BODY: return sizeof(struct vmbus_channel_gpadl_body);
	case CHANNELMSG_GPADL_TEARDOWN: return sizeof(struct vmbus_channel_gpadl_teardown);
	case CHANNELMSG_MODIFYCHANNEL: return sizeof(struct vmbus_channel_modifychannel);
	default: return 0;
	}
}

uint16_t vmbus_server_post_message(struct vmbus_server *s, uint32_t vp, uint32_t connection_id,
				   uint32_t message_type, const void *payload, uint32_t len)
{
	connection_id &= HV_CONNECTION_ID_MASK;
	bool port4 = connection_id == VMBUS_MESSAGE_CONNECTION_ID_4 && s->cfg.max_version >= VMBUS_VERSION_WIN10_V5;
	if (connection_id != VMBUS_MESSAGE_CONNECTION_ID && !port4)
		return HV_STATUS_INVALID_CONNECTION_ID;
	if (message_type == HVMSG_NONE || message_type >= 0x80000000u || len > HV_MESSAGE_PAYLOAD_BYTE_COUNT)
		return HV_STATUS_INVALID_PARAMETER;
	if (s->n.tx_busy && s->n.tx_busy(s->n.ctx))
		return HV_STATUS_INSUFFICIENT_BUFFERS;

	struct vmbus_channel_message_header h;
	if (len < sizeof(h)) {
		log_guest("vmbus: %u-byte message dropped", len);
		return HV_STATUS_SUCCESS;
	}
	memcpy(&h, payload, sizeof(h));
	uint32_t need = msg_min_size(h.msgtype);
	if (!need || len < need) {
		log_guest("vmbus: message type %u of %u bytes dropped", h.msgtype, len);
		return HV_STATUS_SUCCESS;
	}
	if (!s->connected && h.msgtype != CHANNELMSG_INITIATE_CONTACT && h.msgtype != CHANNELMSG_UNLOAD) {
		log_guest("vmbus: message type %u before INITIATE_CONTACT dropped", h.msgtype);
		return HV_STATUS_SUCCESS;
	}
	if (h.msgtype != CHANNELMSG_INITIATE_CONTACT && connection_id != VMBUS_SERVER_MSG_CONNECTION_ID) {
		log_guest("vmbus: message type %u on connection %u dropped", h.msgtype, connection_id);
		return HV_STATUS_SUCCESS;
	}
	switch (h.msgtype) {
	case CHANNELMSG_INITIATE_CONTACT: on_initiate_contact(s, vp, connection_id, payload); break;
	case CHANNELMSG_REQUESTOFFERS: on_request_offers(s); break;
	case CHANNELMSG_GPADL_HEADER:
	case CHANNELMSG_GPADL_BODY:
	case CHANNELMSG_GPADL_TEARDOWN: on_gpadl_msg(s, h.msgtype, payload, len); break;
	case CHANNELMSG_OPENCHANNEL: on_open_channel(s, payload); break;
	case CHANNELMSG_CLOSECHANNEL: on_close_channel(s, payload); break;
	case CHANNELMSG_RELID_RELEASED: on_relid_released(s, payload); break;
	case CHANNELMSG_MODIFYCHANNEL: on_modify_channel(s, payload); break;
	case CHANNELMSG_UNLOAD: on_unload(s); break;
	}
	srv_run_deferred(s);
	return HV_STATUS_SUCCESS;
}

uint16_t vmbus_server_signal_event(struct vmbus_server *s, uint32_t connection_id)
{
	connection_id &= HV_CONNECTION_ID_MASK;
	if (connection_id <= VMBUS_CHANNEL_CONNECTION_BASE)
		return HV_STATUS_INVALID_CONNECTION_ID;
	struct vmbus_channel *c = chan_by_relid(s, connection_id - VMBUS_CHANNEL_CONNECTION_BASE);
	if (!c)
		return HV_STATUS_INVALID_CONNECTION_ID;
	if (c->state == CHAN_OPEN)
		c->dev->desc.ops->rx_ready(c->dev->desc.ctx, c);
	srv_run_deferred(s);
	return HV_STATUS_SUCCESS;
}

void vmbus_server_reset(struct vmbus_server *s)
{
	srv_reset(s);
}

void vmbus_server_run_deferred(struct vmbus_server *s)
{
	srv_run_deferred(s);
}

uint32_t vmbus_server_version(const struct vmbus_server *s)
{
	return s->connected ? s->version : 0;
}

uint32_t vmbus_server_message_vp(const struct vmbus_server *s)
{
	return s->target_vcpu;
}

int vmbus_server_create(const struct vmbus_server_config *cfg, const struct vmbus_server_notifier *n,
			struct vmbus_server **out)
{
	*out = NULL;
	if (!cfg->mem || !cfg->nr_vps || !n->post_to_guest || !n->signal_guest)
		return -EINVAL;
	struct vmbus_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->n = *n;
	pthread_mutex_init(&s->async_lock, NULL);
	if (!s->cfg.max_version)
		s->cfg.max_version = VMBUS_VERSION_WIN10_V5_3;
	if (!s->cfg.max_gpadls)
		s->cfg.max_gpadls = 4096;
	if (!s->cfg.max_gpadl_pages)
		s->cfg.max_gpadl_pages = 1u << 20;
	*out = s;
	return 0;
}

void vmbus_server_destroy(struct vmbus_server *s)
{
	if (!s)
		return;
	srv_reset(s);
	while (s->devices) {
		struct vmbus_device *dev = s->devices;
		s->devices = dev->next;
		for (uint16_t i = 0; i < dev->nr_channels; i++)
			free(dev->chan[i]);
		free(dev);
	}
	pthread_mutex_destroy(&s->async_lock);
	free(s);
}

/* --- devices ------------------------------------------------------------------------------------- */

static struct vmbus_channel *chan_new(struct vmbus_device *dev, uint16_t sub_index)
{
	struct vmbus_channel *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->srv = dev->srv;
	c->dev = dev;
	c->sub_index = sub_index;
	dev->chan[dev->nr_channels++] = c;
	dev->nr_live++;
	return c;
}

int vmbus_server_device_add(struct vmbus_server *s, const struct vmbus_device_desc *d, struct vmbus_device **out)
{
	*out = NULL;
	const struct vmbus_device_ops *ops = d->ops;
	if (!ops || !ops->open || !ops->close || !ops->rx_ready || !d->name)
		return -EINVAL;
	struct vmbus_device *dev = calloc(1, sizeof(*dev) + (1u + d->max_subchannels) * sizeof(dev->chan[0]));
	if (!dev)
		return -ENOMEM;
	dev->srv = s;
	dev->desc = *d;
	struct vmbus_channel *c = chan_new(dev, 0);
	if (!c) {
		free(dev);
		return -ENOMEM;
	}
	struct vmbus_device **pp = &s->devices; /* keep registration order: it is the offer order */
	while (*pp)
		pp = &(*pp)->next;
	*pp = dev;
	if (s->offers_requested)
		chan_offer(s, c);
	*out = dev;
	srv_run_deferred(s);
	return 0;
}

void vmbus_server_device_remove(struct vmbus_server *s, struct vmbus_device *dev)
{
	pthread_mutex_lock(&s->async_lock);
	dev->removed = true; /* its sub-channel requests die with it */
	pthread_mutex_unlock(&s->async_lock);
	for (uint16_t i = 0; i < dev->nr_channels; i++) {
		struct vmbus_channel *c = dev->chan[i];
		if (c)
			chan_withdraw(s, c);
	}
	device_free_if_done(s, dev);
	srv_run_deferred(s); /* TORNDOWNs its close released */
}

unsigned vmbus_device_channels(struct vmbus_device *dev, struct vmbus_channel *const **out)
{
	*out = dev->chan;
	return dev->nr_channels;
}

uint16_t vmbus_device_subchannel_count(const struct vmbus_device *dev)
{
	pthread_mutex_lock(&dev->srv->async_lock);
	uint16_t n = dev->sub_wanted;
	pthread_mutex_unlock(&dev->srv->async_lock);
	return n;
}

int vmbus_device_offer_subchannels(struct vmbus_device *dev, uint16_t n)
{
	struct vmbus_server *s = dev->srv;
	pthread_mutex_lock(&s->async_lock);
	int rc = -EINVAL;
	if (!dev->removed && n <= dev->desc.max_subchannels - dev->sub_wanted) {
		dev->sub_wanted = (uint16_t)(dev->sub_wanted + n);
		rc = dev->sub_wanted;
		if (n)
			__atomic_store_n(&s->deferred, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->async_lock);
	if (rc > 0 && n && s->n.work_pending)
		s->n.work_pending(s->n.ctx);
	return rc;
}

/* --- channel API ------------------------------------------------------------------------------------ */

struct vmbus_ring *vmbus_channel_rx_ring(struct vmbus_channel *c) { return &c->rx; }
struct vmbus_ring *vmbus_channel_tx_ring(struct vmbus_channel *c) { return &c->tx; }
uint32_t vmbus_channel_relid(const struct vmbus_channel *c) { return c->relid; }
uint32_t vmbus_channel_connection_id(const struct vmbus_channel *c) { return chan_connection_id(c); }
uint16_t vmbus_channel_subchannel_index(const struct vmbus_channel *c) { return c->sub_index; }
const uint8_t *vmbus_channel_open_userdata(const struct vmbus_channel *c) { return c->userdata; }
struct vmbus_device *vmbus_channel_device(struct vmbus_channel *c) { return c->dev; }
void vmbus_channel_set_priv(struct vmbus_channel *c, void *priv) { c->priv = priv; }
void *vmbus_channel_priv(const struct vmbus_channel *c) { return c->priv; }

uint32_t vmbus_channel_target_vp(const struct vmbus_channel *c)
{
	return __atomic_load_n(&c->target_vp, __ATOMIC_RELAXED);
}

void vmbus_channel_signal_guest(struct vmbus_channel *c)
{
	if (c->opening) {
		c->signal_deferred = true;
		return;
	}
	c->srv->n.signal_guest(c->srv->n.ctx, vmbus_channel_target_vp(c), c->relid);
}

static void chan_report_broken(struct vmbus_channel *c)
{
	if (c->broken_logged)
		return;
	c->broken_logged = true;
	log_guest("vmbus: %s: relid %u ring corrupted by the guest; channel stopped", c->dev->desc.name, c->relid);
}

int vmbus_channel_send_batched(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t trans_id,
			       const void *ext, uint32_t ext_len, const void *payload, uint32_t len,
			       bool *signal_owed)
{
	bool sig = false;
	int rc = vmbus_ring_write(&c->tx, type, flags, trans_id, ext, ext_len, payload, len, &sig);
	if (rc == -EPROTO)
		chan_report_broken(c);
	if (!rc && sig)
		*signal_owed = true;
	return rc;
}

int vmbus_channel_send(struct vmbus_channel *c, uint16_t type, uint16_t flags, uint64_t trans_id,
		       const void *ext, uint32_t ext_len, const void *payload, uint32_t len)
{
	bool sig = false;
	int rc = vmbus_channel_send_batched(c, type, flags, trans_id, ext, ext_len, payload, len, &sig);
	if (sig)
		vmbus_channel_signal_guest(c);
	return rc;
}

int vmbus_channel_watch_fd(struct vmbus_channel *c, int fd, void (*cb)(void *arg), void *arg)
{
	if (!c->srv->n.watch_fd)
		return -EOPNOTSUPP;
	return c->srv->n.watch_fd(c->srv->n.ctx, fd, cb, arg);
}

void vmbus_channel_unwatch_fd(struct vmbus_channel *c, int fd)
{
	if (c->srv->n.unwatch_fd)
		c->srv->n.unwatch_fd(c->srv->n.ctx, fd);
}

int vmbus_channel_recv(struct vmbus_channel *c, void *buf, uint32_t cap, uint32_t *len)
{
	int rc = vmbus_ring_read(&c->rx, buf, cap, len);
	if (rc == -EPROTO)
		chan_report_broken(c);
	return rc;
}

void vmbus_channel_recv_done(struct vmbus_channel *c)
{
	if (vmbus_ring_read_commit(&c->rx))
		vmbus_channel_signal_guest(c);
}

struct vmbus_gpadl *vmbus_channel_gpadl_acquire(struct vmbus_channel *c, uint32_t gpadl_id)
{
	struct vmbus_server *s = c->srv;
	pthread_mutex_lock(&s->async_lock);
	struct vmbus_gpadl *g = gpadl_find(s, gpadl_id);
	if (g && (!g->complete || g->relid != c->relid))
		g = NULL;
	if (g)
		g->refs++;
	pthread_mutex_unlock(&s->async_lock);
	return g;
}

void vmbus_channel_gpadl_release(struct vmbus_channel *c, struct vmbus_gpadl *g)
{
	struct vmbus_server *s = c->srv;
	pthread_mutex_lock(&s->async_lock);
	bool queued = gpadl_put_locked(s, g);
	pthread_mutex_unlock(&s->async_lock);
	if (queued && s->n.work_pending)
		s->n.work_pending(s->n.ctx);
}

void vmbus_channel_drain_inband(struct vmbus_channel *c, uint8_t *buf, uint32_t cap, const char *what,
				vmbus_inband_fn fn, void *ctx, struct vmbus_channel *const *live)
{
	struct vmbus_ring *rx = vmbus_channel_rx_ring(c);
	uint32_t len;
	vmbus_ring_mask(rx);
	for (;;) {
		while (*live && vmbus_channel_recv(c, buf, cap, &len) == 0) {
			struct vmbus_packet_descriptor desc;
			memcpy(&desc, buf, sizeof(desc));
			if (desc.type != VM_PKT_DATA_INBAND) { /* completions: nothing to do */
				if (desc.type != VM_PKT_COMP)
					log_guest("%s: a packet of type %u dropped", what, desc.type);
				continue;
			}
			uint32_t off = desc.offset8 * 8u; /* the ring checked it against len */
			fn(ctx, buf + off, len - off, desc.trans_id);
		}
		vmbus_channel_recv_done(c);
		if (!vmbus_ring_unmask(rx))
			break;
		vmbus_ring_mask(rx);
	}
}

/* --- saved state ------------------------------------------------------------------------------------ */

int vmbus_server_save(struct vmbus_server *s, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	srv_run_deferred(s);
	struct buf b = { 0 };
	struct savestate_vmbus h = { .connected = s->connected, .offers_requested = s->offers_requested,
				     .version = s->version, .target_vcpu = s->target_vcpu,
				     .interrupt_page = s->interrupt_page, .monitor_page1 = s->monitor_page1,
				     .monitor_page2 = s->monitor_page2 };
	if (s->retired)
		return -EBUSY;
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next) {
		if (dev->removed)
			return -EBUSY;
		h.nr_devices++;
		for (uint16_t i = 0; i < dev->nr_channels; i++)
			if (!dev->chan[i] || dev->chan[i]->state == CHAN_RESCINDED)
				return -EBUSY;
	}
	pthread_mutex_lock(&s->async_lock);
	int rc = s->torndown ? -EBUSY : 0;
	for (struct vmbus_gpadl *g = s->gpadls; g && !rc; g = g->next) {
		if (!g->complete || g->tearing_down || g->orphaned)
			rc = -EBUSY;
		h.nr_gpadls++;
	}
	buf_put(&b, &h, sizeof(h));
	/* Oldest first, as the guest created them (the list is pushed at the head). */
	for (uint32_t k = h.nr_gpadls; k-- > 0 && !rc;) {
		struct vmbus_gpadl *g = s->gpadls;
		for (uint32_t j = 0; j < k; j++)
			g = g->next;
		struct savestate_vmbus_gpadl sg = { .id = g->id, .relid = g->relid, .nr_ranges = g->nr_ranges,
						    .buf_len = (uint32_t)(g->nr_ranges * 8u + g->nr_pfns * 8u) };
		buf_put(&b, &sg, sizeof(sg));
		for (uint32_t r = 0; r < g->nr_ranges; r++) {
			const struct vmbus_gpadl_range *gr = &g->ranges[r];
			uint32_t hdr[2] = { gr->byte_count, gr->byte_offset };
			buf_put(&b, hdr, sizeof(hdr));
			buf_put(&b, &g->pfns[gr->pfn_first], gr->nr_pfns * sizeof(uint64_t));
		}
	}
	pthread_mutex_unlock(&s->async_lock);
	for (struct vmbus_device *dev = s->devices; dev && !rc; dev = dev->next) {
		struct savestate_vmbus_device sd = { .nr_channels = dev->nr_channels, .sub_wanted = dev->sub_wanted };
		memcpy(sd.class_id, &dev->desc.class_id, 16);
		memcpy(sd.instance_id, &dev->desc.instance_id, 16);
		buf_put(&b, &sd, sizeof(sd));
		for (uint16_t i = 0; i < dev->nr_channels; i++) {
			const struct vmbus_channel *c = dev->chan[i];
			struct savestate_vmbus_channel sc = {
				.state = c->state == CHAN_OPEN ? SAVESTATE_CHAN_OPEN
					 : c->state == CHAN_OFFERED ? SAVESTATE_CHAN_OFFERED : SAVESTATE_CHAN_UNOFFERED,
				.relid = c->relid,
				.target_vp = __atomic_load_n(&c->target_vp, __ATOMIC_RELAXED),
				.ring_gpadl = c->ring_gpadl ? c->ring_gpadl->id : 0,
				.downstream_offset = c->ring_offset,
			};
			memcpy(sc.userdata, c->userdata, sizeof(sc.userdata));
			buf_put(&b, &sc, sizeof(sc));
		}
	}
	rc = rc ? rc : b.error;
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

static int srv_restore_fail(struct vmbus_server *s, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int srv_restore_fail(struct vmbus_server *s, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(err, errlen, "VMBus state: ");
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	srv_reset(s);
	return -EINVAL;
}

int vmbus_server_restore(struct vmbus_server *s, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct savestate_vmbus h;
	size_t off = sizeof(h);
	if (s->connected || len < sizeof(h))
		return srv_restore_fail(s, err, errlen, "truncated");
	memcpy(&h, buf, sizeof(h));
	if (h.connected > 1 || h.offers_requested > 1 || (h.connected && !version_known(h.version)) ||
	    h.version > s->cfg.max_version || h.target_vcpu >= s->cfg.nr_vps || (!h.connected && h.offers_requested))
		return srv_restore_fail(s, err, errlen, "bad connection");
	s->connected = h.connected;
	s->offers_requested = h.offers_requested;
	s->version = h.connected ? h.version : 0;
	s->target_vcpu = h.target_vcpu;
	s->interrupt_page = h.interrupt_page;
	s->monitor_page1 = h.monitor_page1;
	s->monitor_page2 = h.monitor_page2;
	/* The GPADLs' place in the file: they are created after the channels' relids exist. */
	size_t gpadl_off = off;
	if (h.nr_gpadls > s->cfg.max_gpadls)
		return srv_restore_fail(s, err, errlen, "too many GPADLs");
	for (uint32_t k = 0; k < h.nr_gpadls; k++) {
		struct savestate_vmbus_gpadl sg;
		if (len - off < sizeof(sg))
			return srv_restore_fail(s, err, errlen, "truncated GPADL");
		memcpy(&sg, buf + off, sizeof(sg));
		off += sizeof(sg);
		if (sg.buf_len > len - off || sg.buf_len % 8)
			return srv_restore_fail(s, err, errlen, "truncated GPADL");
		off += sg.buf_len;
	}
	/* Channels: relids and offers. */
	unsigned nr_devices = 0;
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next)
		nr_devices++;
	if (h.nr_devices != nr_devices)
		return srv_restore_fail(s, err, errlen, "saved with %u devices, the VM has %u", h.nr_devices, nr_devices);
	size_t chan_off = off;
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next) {
		struct savestate_vmbus_device sd;
		if (len - off < sizeof(sd))
			return srv_restore_fail(s, err, errlen, "truncated device");
		memcpy(&sd, buf + off, sizeof(sd));
		off += sizeof(sd);
		if (memcmp(sd.class_id, &dev->desc.class_id, 16) || memcmp(sd.instance_id, &dev->desc.instance_id, 16))
			return srv_restore_fail(s, err, errlen, "%s: another device was saved in its place", dev->desc.name);
		if (!sd.nr_channels || sd.nr_channels > 1u + dev->desc.max_subchannels || sd.sub_wanted > dev->desc.max_subchannels ||
		    sd.nr_channels > sd.sub_wanted + 1u || (sd.nr_channels > 1 && !h.offers_requested))
			return srv_restore_fail(s, err, errlen, "%s: bad channel count", dev->desc.name);
		if ((len - off) / sizeof(struct savestate_vmbus_channel) < sd.nr_channels)
			return srv_restore_fail(s, err, errlen, "truncated channels");
		while (dev->nr_channels < sd.nr_channels)
			if (!chan_new(dev, dev->nr_channels))
				return srv_restore_fail(s, err, errlen, "out of memory");
		dev->sub_wanted = sd.sub_wanted;
		for (uint16_t i = 0; i < sd.nr_channels; i++) {
			struct savestate_vmbus_channel sc;
			memcpy(&sc, buf + off, sizeof(sc));
			off += sizeof(sc);
			struct vmbus_channel *c = dev->chan[i];
			if (sc.state > SAVESTATE_CHAN_OPEN || (sc.state != SAVESTATE_CHAN_UNOFFERED) != h.offers_requested)
				return srv_restore_fail(s, err, errlen, "%s: bad channel state", dev->desc.name);
			if (sc.state == SAVESTATE_CHAN_UNOFFERED)
				continue;
			if (!sc.relid || sc.relid > VMBUS_MAX_RELID || s->relid_map[sc.relid])
				return srv_restore_fail(s, err, errlen, "%s: bad or repeated relid %u", dev->desc.name, sc.relid);
			s->relid_map[sc.relid] = c;
			c->relid = sc.relid;
			c->state = CHAN_OFFERED;
		}
	}
	if (off != len)
		return srv_restore_fail(s, err, errlen, "bytes after its end");
	/* GPADLs, checked as GPADL_HEADER/BODY are: each for an offered channel, pages in RAM. */
	off = gpadl_off;
	for (uint32_t k = 0; k < h.nr_gpadls; k++) {
		struct savestate_vmbus_gpadl sg;
		memcpy(&sg, buf + off, sizeof(sg));
		off += sizeof(sg);
		struct vmbus_gpadl *g = calloc(1, sizeof(*g));
		uint64_t budget = s->cfg.max_gpadl_pages - s->gpadl_pages;
		int rc = !g ? -ENOMEM : !chan_by_relid(s, sg.relid) || gpadl_find(s, sg.id) ? -EINVAL
			 : vmbus_gpadl_begin(g, sg.id, sg.relid, sg.nr_ranges, (uint16_t)sg.buf_len);
		if (!rc)
			rc = sg.buf_len ? vmbus_gpadl_feed(g, buf + off, sg.buf_len, s->cfg.mem, &budget) : -EPROTO;
		if (rc != 1) {
			if (g)
				gpadl_free(g);
			return srv_restore_fail(s, err, errlen, "GPADL %#x refused (%d)", sg.id, rc);
		}
		off += sg.buf_len;
		pthread_mutex_lock(&s->async_lock);
		g->next = s->gpadls;
		s->gpadls = g;
		s->nr_gpadls++;
		s->gpadl_pages += g->reserved_pfns;
		pthread_mutex_unlock(&s->async_lock);
	}
	/* The open channels: rings mapped and devices opened as OPENCHANNEL would. */
	off = chan_off;
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next) {
		struct savestate_vmbus_device sd;
		memcpy(&sd, buf + off, sizeof(sd));
		off += sizeof(sd);
		for (uint16_t i = 0; i < sd.nr_channels; i++) {
			struct savestate_vmbus_channel sc;
			memcpy(&sc, buf + off, sizeof(sc));
			off += sizeof(sc);
			if (sc.state != SAVESTATE_CHAN_OPEN)
				continue;
			const char *why;
			struct vmbus_channel *c = dev->chan[i];
			if (chan_open(s, c, sc.ring_gpadl, sc.downstream_offset, sc.target_vp, sc.userdata, &why))
				return srv_restore_fail(s, err, errlen, "%s: channel %u cannot be opened again: %s", dev->desc.name,
							c->relid, why ? why : "the device refused");
			chan_opened(s, c);
		}
	}
	return 0;
}

void vmbus_server_kick_open(struct vmbus_server *s)
{
	for (struct vmbus_device *dev = s->devices; dev; dev = dev->next)
		for (uint16_t i = 0; i < dev->nr_channels; i++)
			if (dev->chan[i] && dev->chan[i]->state == CHAN_OPEN)
				dev->desc.ops->rx_ready(dev->desc.ctx, dev->chan[i]);
	srv_run_deferred(s);
}
