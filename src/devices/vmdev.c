#include "devices/vmdev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "ui/control.h"
#include "util/clock.h"
#include "util/text.h"
#include "vmm/savestate.h"
#include "vmm/vm.h"

extern const struct vmdev_class storvsp_class, netvsp_class, testdev_class, reverse_class, ic_settings_class,
	ic_shutdown_class, ic_heartbeat_class, ic_timesync_class, ic_kvp_class, ic_fcopy_class, ic_vss_class,
	console_settings_class, synthkbd_class, synthmouse_class, synthvid_class;

/* One line per device. The order is the order of creation (and the reverse of teardown). */
const struct vmdev_class *const vmdev_classes[] = {
	&storvsp_class,
	&netvsp_class,
	&testdev_class,
	&reverse_class,
	&ic_settings_class,
	&ic_shutdown_class,
	&ic_heartbeat_class,
	&ic_timesync_class,
	&ic_kvp_class,
	&ic_fcopy_class,
	&ic_vss_class,
	&console_settings_class,
	&synthkbd_class,
	&synthmouse_class,
	&synthvid_class,
	NULL,
};

const struct vmdev_class *vmdev_class_by_option(const char *name, const struct vmdev_option **opt)
{
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++)
		for (const struct vmdev_option *o = (*c)->options; o && o->name; o++)
			if (!strcmp(o->name, name)) {
				if (opt)
					*opt = o;
				return *c;
			}
	return NULL;
}

const struct vmdev_class *vmdev_class_by_json_key(const char *key)
{
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++)
		if ((*c)->json_key && !strcmp((*c)->json_key, key))
			return *c;
	return NULL;
}

static void config_item_free(const struct vmdev_class *cls, void *cfg)
{
	if (cfg && cls->free_config)
		cls->free_config(cfg);
	free(cfg);
}

/* A new item of cls parsed by parse(arg) (a class hook, called through one of two shapes), appended. */
static int config_add(struct vmdev_config *c, const struct vmdev_class *cls, const char *opt, const char *arg,
		      struct json_object *json, const char *what, char *err, size_t errlen)
{
	void *cfg = cls->config_size ? calloc(1, cls->config_size) : NULL;
	struct vmdev_item *n = realloc(c->items, (c->n + 1) * sizeof(*n));
	if ((cls->config_size && !cfg) || !n) {
		free(cfg);
		if (n)
			c->items = n;
		snprintf(err, errlen, "%s: out of memory", what);
		return -ENOMEM;
	}
	c->items = n;
	int r = json ? cls->parse_json(json, cfg, err, errlen) : cls->parse_option(opt, arg, cfg, err, errlen);
	if (r) {
		free(cfg); /* the hook left nothing in it to free */
		return r;
	}
	c->items[c->n++] = (struct vmdev_item){ cls, cfg };
	return 0;
}

int vmdev_config_add_option(struct vmdev_config *c, const char *opt, const char *arg, char *err, size_t errlen)
{
	const struct vmdev_class *cls = vmdev_class_by_option(opt, NULL);
	if (!cls) {
		snprintf(err, errlen, "unknown option '--%s' (see gen2vm run --help)", text_show(opt));
		return -EINVAL;
	}
	char what[64];
	snprintf(what, sizeof(what), "--%s", opt);
	return config_add(c, cls, opt, arg, NULL, what, err, errlen);
}

int vmdev_config_add_json(struct vmdev_config *c, const char *key, struct json_object *v, char *err, size_t errlen)
{
	const struct vmdev_class *cls = vmdev_class_by_json_key(key);
	if (cls && cls->parse_json && cls->json_scalar) {
		char what[64];
		snprintf(what, sizeof(what), "\"%s\"", key);
		return config_add(c, cls, NULL, NULL, v, what, err, errlen);
	}
	if (!cls || !cls->parse_json || !json_object_is_type(v, json_type_array)) {
		snprintf(err, errlen, cls ? "\"%s\" has the wrong type (expected an array)" : "unknown setting \"%s\"",
			 text_show(key));
		return -EINVAL;
	}
	char what[64];
	snprintf(what, sizeof(what), "\"%s\"", key);
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		int r = config_add(c, cls, NULL, NULL, json_object_array_get_idx(v, i), what, err, errlen);
		if (r)
			return r;
	}
	return 0;
}

/* The items of cls, in order, in a new array (NULL when there are none or no memory: *n says). */
static void **config_items_of(const struct vmdev_config *c, const struct vmdev_class *cls, unsigned *n)
{
	*n = vmdev_config_count(c, cls);
	void **v = *n ? calloc(*n, sizeof(*v)) : NULL;
	if (!v)
		return NULL;
	unsigned k = 0;
	for (unsigned i = 0; i < c->n; i++)
		if (c->items[i].cls == cls)
			v[k++] = c->items[i].cfg;
	return v;
}

unsigned vmdev_config_count(const struct vmdev_config *c, const struct vmdev_class *cls)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->n; i++)
		n += c->items[i].cls == cls;
	return n;
}

int vmdev_config_validate(const struct vmdev_config *c, char *err, size_t errlen)
{
	for (const struct vmdev_class *const *cls = vmdev_classes; *cls; cls++) {
		if (!(*cls)->validate)
			continue;
		unsigned n;
		void **v = config_items_of(c, *cls, &n);
		if (n && !v) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		int r = (*cls)->validate(v, n, err, errlen);
		free(v);
		if (r)
			return r;
	}
	return 0;
}

void vmdev_config_free(struct vmdev_config *c)
{
	for (unsigned i = 0; i < c->n; i++)
		config_item_free(c->items[i].cls, c->items[i].cfg);
	free(c->items);
	c->items = NULL;
	c->n = 0;
}

int vmdev_set_create(struct vmdev_set *s, const struct vmdev_host *h, const struct vmdev_config *c, char *err,
		     size_t errlen)
{
	unsigned nr = 0;
	while (vmdev_classes[nr])
		nr++;
	memset(s, 0, sizeof(*s));
	if (!(s->run = calloc(nr, sizeof(*s->run)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	err[0] = 0;
	for (unsigned k = 0; k < nr; k++) {
		const struct vmdev_class *cls = vmdev_classes[k];
		if (!cls->create)
			continue;
		unsigned n;
		void **v = config_items_of(c, cls->settings_from ? cls->settings_from : cls, &n);
		if (n && !v) {
			snprintf(err, errlen, "out of memory");
			vmdev_set_destroy(s);
			return -ENOMEM;
		}
		if (!n && !cls->always)
			continue;
		void *state = NULL;
		int r = cls->create(h, v, n, &state, err, errlen);
		free(v);
		if (r) {
			vmdev_set_destroy(s);
			return r;
		}
		s->run[s->n++] = (struct vmdev_running){ cls, state };
	}
	return 0;
}

int vmdev_set_register_verbs(struct vmdev_set *s, struct control *ctl)
{
	for (unsigned i = 0; i < s->n; i++)
		for (const struct vmdev_verb *v = s->run[i].cls->verbs; v && v->name; v++) {
			int r = control_register(ctl, v->name, v->usage, v->fn, s->run[i].state);
			if (r)
				return r;
		}
	return 0;
}

int vmdev_set_stop_request(struct vmdev_set *s, unsigned timeout_s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->run[i].cls->stop_request && s->run[i].cls->stop_request(s->run[i].state, timeout_s) == 0)
			return 0;
	return -ENOTCONN;
}

int vmdev_device_offer(const struct vmdev_host *h, const struct vmbus_device_desc *desc, struct vmbus_device **out)
{
	pthread_mutex_lock(h->srv_lock);
	int r = vmbus_server_device_add(h->srv, desc, out);
	pthread_mutex_unlock(h->srv_lock);
	return r;
}

void vmdev_device_withdraw(const struct vmdev_host *h, struct vmbus_device *dev)
{
	if (!dev)
		return;
	pthread_mutex_lock(h->srv_lock);
	vmbus_server_device_remove(h->srv, dev);
	pthread_mutex_unlock(h->srv_lock);
}

unsigned vmdev_set_nics(struct vmdev_set *s, struct vmdev_nic *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->n && n < max; i++)
		if (s->run[i].cls->nics)
			n += s->run[i].cls->nics(s->run[i].state, out + n, max - n);
	return n;
}

void vmdev_set_status(struct vmdev_set *s, struct json_object *o, char *text, size_t len)
{
	size_t used = strlen(text);
	for (unsigned i = 0; i < s->n; i++) {
		if (!s->run[i].cls->status)
			continue;
		char part[CONTROL_REPLY_MAX] = "";
		s->run[i].cls->status(s->run[i].state, o, part, sizeof(part));
		if (part[0] && used + 2 < len)
			used += (size_t)snprintf(text + used, len - used, "; %s", part);
		if (used >= len)
			used = len - 1;
	}
}

void *vmdev_set_state(const struct vmdev_set *s, const char *name)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->run[i].cls->name, name))
			return s->run[i].state;
	return NULL;
}

void vmdev_set_destroy(struct vmdev_set *s)
{
	while (s->n) {
		s->n--;
		s->run[s->n].cls->destroy(s->run[s->n].state);
	}
	free(s->run);
	s->run = NULL;
}

void vmdev_usage_print(FILE *f)
{
	for (const struct vmdev_class *const *c = vmdev_classes; *c; c++)
		if ((*c)->usage)
			fputs((*c)->usage, f);
}

int vmdev_mmio_check(const struct vmdev_host *h, uint64_t gpa, uint64_t size, const char **why)
{
	const uint64_t page = 4096;
	*why = NULL;
	if (!size || size % page)
		*why = "its size is not a whole number of pages";
	else if (gpa % page)
		*why = "it is not page-aligned";
	else if (gpa + size < gpa)
		*why = "it wraps around the address space";
	if (*why)
		return -EINVAL;
	bool inside = false;
	for (unsigned i = 0; i < VMDEV_MMIO_WINDOWS && !inside; i++) {
		const struct vmdev_mmio_window *w = &h->mmio[i];
		inside = w->size && gpa >= w->base && gpa - w->base <= w->size && size <= w->size - (gpa - w->base);
	}
	if (!inside) {
		*why = "it is not inside an MMIO window the ACPI tables offer";
		return -EINVAL;
	}
	/* The windows never overlap RAM on gen2vm's machine; checked anyway, as a memslot over RAM would
	 * hand the guest's own memory to a device. */
	for (unsigned i = 0; h->mem && i < h->mem->nr_regions; i++) {
		const struct guest_mem_region *r = &h->mem->region[i];
		if (gpa < r->gpa + r->size && r->gpa < gpa + size) {
			*why = "it overlaps guest RAM";
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- saving ---- */

#define VMDEV_SAVE_NAME 16u

const char *vmdev_set_unsaveable(const struct vmdev_set *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!s->run[i].cls->save || !s->run[i].cls->restore)
			return s->run[i].cls->name;
	return NULL;
}

int vmdev_set_quiesce(struct vmdev_set *s, unsigned timeout_ms, char *err, size_t errlen)
{
	uint64_t end = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	for (unsigned i = 0; i < s->n; i++) {
		if (!s->run[i].cls->quiesce)
			continue;
		uint64_t now = clock_mono_ns();
		unsigned left = now < end ? (unsigned)((end - now) / 1000000u) : 0;
		if (s->run[i].cls->quiesce(s->run[i].state, left)) {
			snprintf(err, errlen, "%s: its I/O did not complete within %u ms", s->run[i].cls->name, timeout_ms);
			return -EBUSY;
		}
	}
	return 0;
}

void vmdev_set_thaw(struct vmdev_set *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->run[i].cls->thaw)
			s->run[i].cls->thaw(s->run[i].state);
}

int vmdev_set_save(struct vmdev_set *s, struct savestate_writer *w, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->n; i++) {
		const struct vmdev_class *cls = s->run[i].cls;
		uint8_t *data = NULL;
		size_t len = 0;
		char why[256] = "";
		int r = cls->save ? cls->save(s->run[i].state, &data, &len, why, sizeof(why)) : -EOPNOTSUPP;
		if (r) {
			snprintf(err, errlen, "%s: %s", cls->name, why[0] ? why : strerror(-r));
			free(data);
			return r;
		}
		uint8_t *sec = malloc(VMDEV_SAVE_NAME + len);
		if (!sec) {
			free(data);
			return -ENOMEM;
		}
		memset(sec, 0, VMDEV_SAVE_NAME);
		memcpy(sec, cls->name, strnlen(cls->name, VMDEV_SAVE_NAME - 1));
		if (len)
			memcpy(sec + VMDEV_SAVE_NAME, data, len);
		r = savestate_write_section(w, SAVESTATE_SEC_DEVICE, i, sec, VMDEV_SAVE_NAME + len);
		free(sec);
		free(data);
		if (r) {
			snprintf(err, errlen, "cannot write the state file: %s", strerror(-r));
			return r;
		}
	}
	return 0;
}

int vmdev_set_restore(struct vmdev_set *s, const struct savestate_file *f, char *err, size_t errlen)
{
	size_t pos = 0;
	struct savestate_sec sec;
	while (savestate_next(f, &pos, &sec))
		if (sec.type == SAVESTATE_SEC_DEVICE && sec.index >= s->n) {
			snprintf(err, errlen, "the state has a device the VM does not (section %u)", sec.index);
			return -EINVAL;
		}
	for (unsigned i = 0; i < s->n; i++) {
		const struct vmdev_class *cls = s->run[i].cls;
		char name[VMDEV_SAVE_NAME] = "";
		if (savestate_find(f, SAVESTATE_SEC_DEVICE, i, &sec) || sec.len < VMDEV_SAVE_NAME) {
			snprintf(err, errlen, "%s: its state is missing", cls->name);
			return -EINVAL;
		}
		memcpy(name, sec.data, VMDEV_SAVE_NAME - 1);
		if (strncmp(name, cls->name, VMDEV_SAVE_NAME - 1)) {
			snprintf(err, errlen, "%s: the state holds another device's (%s)", cls->name, text_show(name));
			return -EINVAL;
		}
		char why[256] = "";
		int r = cls->restore ? cls->restore(s->run[i].state, sec.data + VMDEV_SAVE_NAME, sec.len - VMDEV_SAVE_NAME,
						    why, sizeof(why))
				     : -EOPNOTSUPP;
		if (r) {
			snprintf(err, errlen, "%s: %s", cls->name, why[0] ? why : strerror(-r));
			return -EINVAL;
		}
	}
	return 0;
}

int vmdev_save_nothing(void *state, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	(void)state, (void)err, (void)errlen;
	*out = NULL;
	*len = 0;
	return 0;
}

int vmdev_restore_nothing(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	(void)state, (void)buf;
	if (len) {
		snprintf(err, errlen, "unexpected state (%zu bytes)", len);
		return -EINVAL;
	}
	return 0;
}
