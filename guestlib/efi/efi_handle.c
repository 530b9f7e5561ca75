#include "efi/efi_handle.h"

#include "efi/efi_lib.h"

#define DP_MAX (64u << 10)
#define OPEN_DRIVER_MASK (EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE)

struct efi_db_open {
	struct efi_db_open *next;
	EFI_HANDLE agent, controller;
	uint32_t attributes, count;
};

struct efi_db_iface {
	struct efi_db_iface *next;
	EFI_GUID guid;
	void *iface;
	struct efi_db_open *opens;
};

struct efi_db_handle {
	struct efi_db_handle *next;
	struct efi_db_iface *ifaces;
};

struct efi_db_pending {
	struct efi_db_pending *next;
	EFI_HANDLE handle;
};

struct efi_db_notify {
	struct efi_db_notify *next;
	EFI_GUID guid;
	EFI_EVENT event;
	struct efi_db_pending *pending, *pending_tail;
};

static const EFI_GUID dp_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;

static void *db_alloc(struct efi_db *db, size_t size)
{
	void *p = db->ops.alloc(db->ops.ctx, size);
	if (p)
		efi_memset(p, 0, size);
	return p;
}

void efi_db_init(struct efi_db *db, const struct efi_db_ops *ops)
{
	efi_memset(db, 0, sizeof(*db));
	db->ops = *ops;
}

static void free_iface(struct efi_db *db, struct efi_db_iface *i)
{
	while (i->opens) {
		struct efi_db_open *o = i->opens;
		i->opens = o->next;
		db->ops.free(db->ops.ctx, o);
	}
	db->ops.free(db->ops.ctx, i);
}

void efi_db_destroy(struct efi_db *db)
{
	while (db->head) {
		struct efi_db_handle *h = db->head;
		db->head = h->next;
		while (h->ifaces) {
			struct efi_db_iface *i = h->ifaces;
			h->ifaces = i->next;
			free_iface(db, i);
		}
		db->ops.free(db->ops.ctx, h);
	}
	while (db->notifies) {
		struct efi_db_notify *n = db->notifies;
		db->notifies = n->next;
		while (n->pending) {
			struct efi_db_pending *p = n->pending;
			n->pending = p->next;
			db->ops.free(db->ops.ctx, p);
		}
		db->ops.free(db->ops.ctx, n);
	}
	db->tail = NULL;
}

static struct efi_db_handle *lookup(const struct efi_db *db, EFI_HANDLE h)
{
	for (struct efi_db_handle *r = db->head; r; r = r->next)
		if (r == (struct efi_db_handle *)h)
			return r;
	return NULL;
}

bool efi_db_handle_valid(const struct efi_db *db, EFI_HANDLE h)
{
	return h && lookup(db, h);
}

static struct efi_db_iface *find_iface(struct efi_db_handle *h, const EFI_GUID *g)
{
	for (struct efi_db_iface *i = h->ifaces; i; i = i->next)
		if (efi_guid_eq(&i->guid, g))
			return i;
	return NULL;
}

static void unlink_handle(struct efi_db *db, struct efi_db_handle *h)
{
	struct efi_db_handle **pp = &db->head, *prev = NULL;
	while (*pp && *pp != h) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = h->next;
	if (db->tail == h)
		db->tail = prev;
	db->ops.free(db->ops.ctx, h);
}

static void notify(struct efi_db *db, const EFI_GUID *g, struct efi_db_handle *h)
{
	for (struct efi_db_notify *n = db->notifies; n; n = n->next) {
		if (!efi_guid_eq(&n->guid, g))
			continue;
		struct efi_db_pending *p = db_alloc(db, sizeof(*p));
		if (!p)
			continue;
		p->handle = h;
		if (n->pending_tail)
			n->pending_tail->next = p;
		else
			n->pending = p;
		n->pending_tail = p;
		if (db->ops.signal)
			db->ops.signal(db->ops.ctx, n->event);
	}
}

EFI_STATUS efi_db_install(struct efi_db *db, EFI_HANDLE *handle, const EFI_GUID *protocol, void *iface)
{
	if (!handle || !protocol)
		return EFI_INVALID_PARAMETER;
	struct efi_db_handle *h = NULL;
	if (*handle) {
		h = lookup(db, *handle);
		if (!h)
			return EFI_INVALID_PARAMETER;
		if (find_iface(h, protocol))
			return EFI_INVALID_PARAMETER;
	}
	struct efi_db_iface *i = db_alloc(db, sizeof(*i));
	if (!i)
		return EFI_OUT_OF_RESOURCES;
	if (!h) {
		h = db_alloc(db, sizeof(*h));
		if (!h) {
			db->ops.free(db->ops.ctx, i);
			return EFI_OUT_OF_RESOURCES;
		}
		if (db->tail)
			db->tail->next = h;
		else
			db->head = h;
		db->tail = h;
	}
	i->guid = *protocol;
	i->iface = iface;
	/* Append: ProtocolsPerHandle lists protocols in installation order. */
	struct efi_db_iface **pp = &h->ifaces;
	while (*pp)
		pp = &(*pp)->next;
	*pp = i;
	*handle = h;
	notify(db, protocol, h);
	return EFI_SUCCESS;
}

/* Asks BY_DRIVER openers to let go, drops the informational opens, and reports whether the interface
 * is now free of driver/child/exclusive opens. */
static EFI_STATUS release_opens(struct efi_db *db, struct efi_db_handle *h, struct efi_db_iface *i)
{
	for (int round = 0; round < 8; round++) {
		struct efi_db_open *o;
		for (o = i->opens; o; o = o->next)
			if (o->attributes & EFI_OPEN_PROTOCOL_BY_DRIVER)
				break;
		if (!o || !db->ops.disconnect)
			break;
		if (EFI_ERROR(db->ops.disconnect(db->ops.ctx, h, o->agent)))
			break;
		if (!lookup(db, h) || find_iface(h, &i->guid) != i)
			return EFI_ACCESS_DENIED; /* the driver's Stop() changed the handle under us */
	}
	for (struct efi_db_open *o = i->opens; o; o = o->next)
		if (o->attributes & (OPEN_DRIVER_MASK | EFI_OPEN_PROTOCOL_BY_CHILD_CONTROLLER))
			return EFI_ACCESS_DENIED;
	while (i->opens) {
		struct efi_db_open *o = i->opens;
		i->opens = o->next;
		db->ops.free(db->ops.ctx, o);
	}
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_uninstall(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void *iface)
{
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h || !protocol)
		return EFI_INVALID_PARAMETER;
	struct efi_db_iface *i = find_iface(h, protocol);
	if (!i || i->iface != iface)
		return EFI_NOT_FOUND;
	EFI_STATUS st = release_opens(db, h, i);
	if (EFI_ERROR(st))
		return st;
	struct efi_db_iface **pp = &h->ifaces;
	while (*pp != i)
		pp = &(*pp)->next;
	*pp = i->next;
	free_iface(db, i);
	if (!h->ifaces)
		unlink_handle(db, h);
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_reinstall(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void *old_iface,
			    void *new_iface)
{
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h || !protocol)
		return EFI_INVALID_PARAMETER;
	struct efi_db_iface *i = find_iface(h, protocol);
	if (!i || i->iface != old_iface)
		return EFI_NOT_FOUND;
	EFI_STATUS st = release_opens(db, h, i);
	if (EFI_ERROR(st))
		return st;
	i->iface = new_iface;
	notify(db, protocol, h);
	return EFI_SUCCESS;
}

static bool dp_equal(const EFI_DEVICE_PATH_PROTOCOL *a, const EFI_DEVICE_PATH_PROTOCOL *b)
{
	int64_t la = efi_dp_len(a, DP_MAX), lb = efi_dp_len(b, DP_MAX);
	return la >= 0 && la == lb && !efi_memcmp(a, b, (size_t)la);
}

EFI_STATUS efi_db_install_multiple(struct efi_db *db, EFI_HANDLE *handle, size_t n,
				   const EFI_GUID *const *protocols, void *const *ifaces)
{
	if (!handle)
		return EFI_INVALID_PARAMETER;
	for (size_t k = 0; k < n; k++) {
		if (!protocols[k])
			return EFI_INVALID_PARAMETER;
		if (!efi_guid_eq(protocols[k], &dp_guid) || !ifaces[k])
			continue;
		for (struct efi_db_handle *h = db->head; h; h = h->next) {
			struct efi_db_iface *i = find_iface(h, &dp_guid);
			if (i && i->iface && dp_equal(i->iface, ifaces[k]))
				return EFI_ALREADY_STARTED;
		}
	}
	EFI_HANDLE h = *handle;
	size_t done = 0;
	EFI_STATUS st = EFI_SUCCESS;
	for (; done < n; done++) {
		st = efi_db_install(db, &h, protocols[done], ifaces[done]);
		if (EFI_ERROR(st))
			break;
	}
	if (!EFI_ERROR(st)) {
		*handle = h;
		return EFI_SUCCESS;
	}
	while (done--) /* a handle this call created disappears with its last protocol */
		efi_db_uninstall(db, h, protocols[done], ifaces[done]);
	return st;
}

EFI_STATUS efi_db_uninstall_multiple(struct efi_db *db, EFI_HANDLE handle, size_t n,
				     const EFI_GUID *const *protocols, void *const *ifaces)
{
	if (!handle || !lookup(db, handle))
		return EFI_INVALID_PARAMETER;
	/* Check everything first, so a failure leaves the handle as it was. */
	struct efi_db_handle *h = handle;
	for (size_t k = 0; k < n; k++) {
		struct efi_db_iface *i = protocols[k] ? find_iface(h, protocols[k]) : NULL;
		if (!i || i->iface != ifaces[k])
			return EFI_INVALID_PARAMETER;
	}
	size_t done = 0;
	for (; done < n; done++)
		if (EFI_ERROR(efi_db_uninstall(db, handle, protocols[done], ifaces[done])))
			break;
	if (done == n)
		return EFI_SUCCESS;
	EFI_HANDLE again = lookup(db, handle) ? handle : NULL;
	while (done--)
		efi_db_install(db, &again, protocols[done], ifaces[done]);
	return EFI_INVALID_PARAMETER;
}

static EFI_STATUS add_open(struct efi_db *db, struct efi_db_iface *i, EFI_HANDLE agent, EFI_HANDLE controller,
			   uint32_t attributes)
{
	for (struct efi_db_open *o = i->opens; o; o = o->next) {
		if (o->agent == agent && o->controller == controller && o->attributes == attributes) {
			o->count++;
			return EFI_SUCCESS;
		}
	}
	struct efi_db_open *o = db_alloc(db, sizeof(*o));
	if (!o)
		return EFI_OUT_OF_RESOURCES;
	*o = (struct efi_db_open){ .next = i->opens, .agent = agent, .controller = controller,
				   .attributes = attributes, .count = 1 };
	i->opens = o;
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_open(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void **iface,
		       EFI_HANDLE agent, EFI_HANDLE controller, uint32_t attributes)
{
	if (!protocol)
		return EFI_INVALID_PARAMETER;
	if (!iface && attributes != EFI_OPEN_PROTOCOL_TEST_PROTOCOL)
		return EFI_INVALID_PARAMETER;
	if (iface && attributes != EFI_OPEN_PROTOCOL_TEST_PROTOCOL)
		*iface = NULL;
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h)
		return EFI_INVALID_PARAMETER;
	switch (attributes) {
	case EFI_OPEN_PROTOCOL_BY_CHILD_CONTROLLER:
		if (!efi_db_handle_valid(db, agent) || !efi_db_handle_valid(db, controller) || handle == controller)
			return EFI_INVALID_PARAMETER;
		break;
	case EFI_OPEN_PROTOCOL_BY_DRIVER:
	case EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE:
		if (!efi_db_handle_valid(db, agent) || !efi_db_handle_valid(db, controller))
			return EFI_INVALID_PARAMETER;
		break;
	case EFI_OPEN_PROTOCOL_EXCLUSIVE:
		if (!efi_db_handle_valid(db, agent))
			return EFI_INVALID_PARAMETER;
		break;
	case EFI_OPEN_PROTOCOL_BY_HANDLE_PROTOCOL:
	case EFI_OPEN_PROTOCOL_GET_PROTOCOL:
	case EFI_OPEN_PROTOCOL_TEST_PROTOCOL:
		break;
	default:
		return EFI_INVALID_PARAMETER;
	}
	struct efi_db_iface *i = find_iface(h, protocol);
	if (!i)
		return EFI_UNSUPPORTED;
	if (attributes == EFI_OPEN_PROTOCOL_TEST_PROTOCOL)
		return EFI_SUCCESS;

	/* Conflicts with existing opens (UEFI 7.3, OpenProtocol's attribute table). */
	bool by_driver_same = false, by_driver_other = false, exclusive = false, exclusive_same = false;
	for (struct efi_db_open *o = i->opens; o; o = o->next) {
		if (o->attributes & EFI_OPEN_PROTOCOL_EXCLUSIVE) {
			exclusive = true;
			exclusive_same |= o->agent == agent;
		}
		if (o->attributes & EFI_OPEN_PROTOCOL_BY_DRIVER) {
			if (o->agent == agent)
				by_driver_same = true;
			else
				by_driver_other = true;
		}
	}
	switch (attributes) {
	case EFI_OPEN_PROTOCOL_BY_CHILD_CONTROLLER:
		if (exclusive)
			return EFI_ACCESS_DENIED;
		break;
	case EFI_OPEN_PROTOCOL_BY_DRIVER:
		if (by_driver_same && !exclusive) {
			*iface = i->iface;
			return EFI_ALREADY_STARTED;
		}
		if (by_driver_other || exclusive)
			return EFI_ACCESS_DENIED;
		break;
	case EFI_OPEN_PROTOCOL_BY_DRIVER | EFI_OPEN_PROTOCOL_EXCLUSIVE:
	case EFI_OPEN_PROTOCOL_EXCLUSIVE:
		if (exclusive_same) {
			*iface = i->iface;
			return EFI_ALREADY_STARTED;
		}
		if (exclusive)
			return EFI_ACCESS_DENIED;
		if (by_driver_other || by_driver_same) {
			/* Exclusive access takes the interface from its BY_DRIVER users. */
			for (int round = 0; round < 8; round++) {
				struct efi_db_open *o;
				for (o = i->opens; o; o = o->next)
					if (o->attributes & EFI_OPEN_PROTOCOL_BY_DRIVER)
						break;
				if (!o)
					break;
				if (!db->ops.disconnect || EFI_ERROR(db->ops.disconnect(db->ops.ctx, h, o->agent)))
					return EFI_ACCESS_DENIED;
				if (!lookup(db, h) || find_iface(h, protocol) != i)
					return EFI_ACCESS_DENIED;
			}
			for (struct efi_db_open *o = i->opens; o; o = o->next)
				if (o->attributes & EFI_OPEN_PROTOCOL_BY_DRIVER)
					return EFI_ACCESS_DENIED;
		}
		break;
	default:
		break;
	}
	EFI_STATUS st = add_open(db, i, agent, controller, attributes);
	if (EFI_ERROR(st))
		return st;
	*iface = i->iface;
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_handle_protocol(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, void **iface,
				  EFI_HANDLE firmware_image)
{
	return efi_db_open(db, handle, protocol, iface, firmware_image, NULL, EFI_OPEN_PROTOCOL_BY_HANDLE_PROTOCOL);
}

EFI_STATUS efi_db_close(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol, EFI_HANDLE agent,
			EFI_HANDLE controller)
{
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h || !protocol || !efi_db_handle_valid(db, agent) || (controller && !lookup(db, controller)))
		return EFI_INVALID_PARAMETER;
	struct efi_db_iface *i = find_iface(h, protocol);
	if (!i)
		return EFI_NOT_FOUND;
	bool found = false;
	for (struct efi_db_open **pp = &i->opens; *pp;) {
		struct efi_db_open *o = *pp;
		if (o->agent == agent && o->controller == controller) {
			*pp = o->next;
			db->ops.free(db->ops.ctx, o);
			found = true;
		} else {
			pp = &o->next;
		}
	}
	return found ? EFI_SUCCESS : EFI_NOT_FOUND;
}

EFI_STATUS efi_db_open_info(struct efi_db *db, EFI_HANDLE handle, const EFI_GUID *protocol,
			    EFI_OPEN_PROTOCOL_INFORMATION_ENTRY **entries, UINTN *count)
{
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h || !protocol || !entries || !count)
		return EFI_INVALID_PARAMETER;
	struct efi_db_iface *i = find_iface(h, protocol);
	if (!i)
		return EFI_NOT_FOUND;
	UINTN n = 0;
	for (struct efi_db_open *o = i->opens; o; o = o->next)
		n++;
	EFI_OPEN_PROTOCOL_INFORMATION_ENTRY *e = db_alloc(db, (n ? n : 1) * sizeof(*e));
	if (!e)
		return EFI_OUT_OF_RESOURCES;
	UINTN k = n;
	for (struct efi_db_open *o = i->opens; o; o = o->next) /* list is newest first: report oldest first */
		e[--k] = (EFI_OPEN_PROTOCOL_INFORMATION_ENTRY){ o->agent, o->controller, o->attributes, o->count };
	*entries = e;
	*count = n;
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_protocols_per_handle(struct efi_db *db, EFI_HANDLE handle, EFI_GUID ***protocols,
				       UINTN *count)
{
	struct efi_db_handle *h = handle ? lookup(db, handle) : NULL;
	if (!h || !protocols || !count)
		return EFI_INVALID_PARAMETER;
	UINTN n = 0;
	for (struct efi_db_iface *i = h->ifaces; i; i = i->next)
		n++;
	EFI_GUID **g = db_alloc(db, (n ? n : 1) * sizeof(*g));
	if (!g)
		return EFI_OUT_OF_RESOURCES;
	n = 0;
	for (struct efi_db_iface *i = h->ifaces; i; i = i->next)
		g[n++] = &i->guid;
	*protocols = g;
	*count = n;
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_register_notify(struct efi_db *db, const EFI_GUID *protocol, EFI_EVENT event,
				  void **registration)
{
	if (!protocol || !event || !registration)
		return EFI_INVALID_PARAMETER;
	struct efi_db_notify *n = db_alloc(db, sizeof(*n));
	if (!n)
		return EFI_OUT_OF_RESOURCES;
	n->guid = *protocol;
	n->event = event;
	n->next = db->notifies;
	db->notifies = n;
	*registration = n;
	return EFI_SUCCESS;
}

static struct efi_db_notify *find_notify(struct efi_db *db, void *key)
{
	for (struct efi_db_notify *n = db->notifies; n; n = n->next)
		if (n == key)
			return n;
	return NULL;
}

/* The oldest pending handle of a registration that still carries its protocol (stale ones dropped). */
static struct efi_db_handle *peek_pending(struct efi_db *db, struct efi_db_notify *n)
{
	while (n->pending) {
		struct efi_db_handle *h = lookup(db, n->pending->handle);
		if (h && find_iface(h, &n->guid))
			return h;
		struct efi_db_pending *p = n->pending;
		n->pending = p->next;
		if (!n->pending)
			n->pending_tail = NULL;
		db->ops.free(db->ops.ctx, p);
	}
	return NULL;
}

static void pop_pending(struct efi_db *db, struct efi_db_notify *n)
{
	struct efi_db_pending *p = n->pending;
	n->pending = p->next;
	if (!n->pending)
		n->pending_tail = NULL;
	db->ops.free(db->ops.ctx, p);
}

EFI_STATUS efi_db_locate_handle(struct efi_db *db, EFI_LOCATE_SEARCH_TYPE type, const EFI_GUID *protocol,
				void *key, UINTN *size, EFI_HANDLE *buf)
{
	if (!size || (*size && !buf))
		return EFI_INVALID_PARAMETER;
	if (type == ByRegisterNotify) {
		struct efi_db_notify *n = key ? find_notify(db, key) : NULL;
		if (!n)
			return EFI_INVALID_PARAMETER;
		struct efi_db_handle *h = peek_pending(db, n);
		if (!h)
			return EFI_NOT_FOUND;
		if (*size < sizeof(EFI_HANDLE)) {
			*size = sizeof(EFI_HANDLE);
			return EFI_BUFFER_TOO_SMALL;
		}
		*size = sizeof(EFI_HANDLE);
		buf[0] = h;
		pop_pending(db, n);
		return EFI_SUCCESS;
	}
	if (type != AllHandles && (type != ByProtocol || !protocol))
		return EFI_INVALID_PARAMETER;
	UINTN n = 0, cap = *size / sizeof(EFI_HANDLE);
	for (struct efi_db_handle *h = db->head; h; h = h->next) {
		if (type == ByProtocol && !find_iface(h, protocol))
			continue;
		if (n < cap)
			buf[n] = h;
		n++;
	}
	if (!n)
		return EFI_NOT_FOUND;
	bool fits = n <= cap;
	*size = n * sizeof(EFI_HANDLE);
	return fits ? EFI_SUCCESS : EFI_BUFFER_TOO_SMALL;
}

EFI_STATUS efi_db_locate_handle_buffer(struct efi_db *db, EFI_LOCATE_SEARCH_TYPE type,
				       const EFI_GUID *protocol, void *key, UINTN *count, EFI_HANDLE **buf)
{
	if (!count || !buf)
		return EFI_INVALID_PARAMETER;
	*count = 0;
	*buf = NULL;
	UINTN size = 0;
	EFI_STATUS st = efi_db_locate_handle(db, type, protocol, key, &size, NULL);
	if (st != EFI_BUFFER_TOO_SMALL)
		return st;
	EFI_HANDLE *b = db_alloc(db, size);
	if (!b)
		return EFI_OUT_OF_RESOURCES;
	st = efi_db_locate_handle(db, type, protocol, key, &size, b);
	if (EFI_ERROR(st)) {
		db->ops.free(db->ops.ctx, b);
		return st;
	}
	*buf = b;
	*count = size / sizeof(EFI_HANDLE);
	return EFI_SUCCESS;
}

EFI_STATUS efi_db_locate_protocol(struct efi_db *db, const EFI_GUID *protocol, void *registration,
				  void **iface)
{
	if (!iface)
		return EFI_INVALID_PARAMETER;
	*iface = NULL;
	if (!protocol)
		return EFI_INVALID_PARAMETER;
	if (registration) {
		struct efi_db_notify *n = find_notify(db, registration);
		if (!n)
			return EFI_NOT_FOUND;
		struct efi_db_handle *h = peek_pending(db, n);
		if (!h)
			return EFI_NOT_FOUND;
		*iface = find_iface(h, protocol) ? find_iface(h, protocol)->iface : NULL;
		pop_pending(db, n);
		return *iface || find_iface(h, protocol) ? EFI_SUCCESS : EFI_NOT_FOUND;
	}
	for (struct efi_db_handle *h = db->head; h; h = h->next) {
		struct efi_db_iface *i = find_iface(h, protocol);
		if (i) {
			*iface = i->iface;
			return EFI_SUCCESS;
		}
	}
	return EFI_NOT_FOUND;
}

int64_t efi_dp_len(const EFI_DEVICE_PATH_PROTOCOL *dp, size_t max)
{
	const uint8_t *p = (const uint8_t *)dp;
	size_t off = 0;
	while (off + sizeof(EFI_DEVICE_PATH_PROTOCOL) <= max) {
		uint16_t len = efi_le16(p + off + 2);
		if (p[off] == END_DEVICE_PATH_TYPE)
			return (int64_t)off;
		if (len < sizeof(EFI_DEVICE_PATH_PROTOCOL) || len > max - off)
			return -1;
		off += len;
	}
	return -1;
}

EFI_STATUS efi_db_locate_device_path(struct efi_db *db, const EFI_GUID *protocol,
				     EFI_DEVICE_PATH_PROTOCOL **path, EFI_HANDLE *device)
{
	if (!protocol || !path || !*path || !device)
		return EFI_INVALID_PARAMETER;
	int64_t want = efi_dp_len(*path, DP_MAX);
	if (want < 0)
		return EFI_INVALID_PARAMETER;
	struct efi_db_handle *best = NULL;
	int64_t best_len = -1;
	for (struct efi_db_handle *h = db->head; h; h = h->next) {
		struct efi_db_iface *dp = find_iface(h, &dp_guid);
		if (!dp || !dp->iface || !find_iface(h, protocol))
			continue;
		int64_t len = efi_dp_len(dp->iface, DP_MAX);
		/* A whole-node prefix: equal bytes over a sequence of valid nodes end on a node boundary. */
		if (len < 0 || len > want || len <= best_len || efi_memcmp(dp->iface, *path, (size_t)len))
			continue;
		best = h;
		best_len = len;
	}
	if (!best)
		return EFI_NOT_FOUND;
	*device = best;
	*path = (EFI_DEVICE_PATH_PROTOCOL *)((uint8_t *)*path + best_len);
	return EFI_SUCCESS;
}
