#include "platform/bootopt.h"
#include "util/text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "efi/efi_dptext.h"
#include "efi/efi_lib.h"
#include "gen2vm/proto/fw.h"
#include "gen2vm/proto/fw_var.h"
#include "gen2vm/proto/guid.h"
#include "gen2vm/proto/vmbus.h"
#include "devices/netvsp.h"
#include "devices/vmdev.h"
#include "util/log.h"

#define BOOT_VAR_ATTR (EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS)

static const EFI_GUID global_guid = EFI_GLOBAL_VARIABLE_GUID;
static const EFI_GUID vendor_guid = GEN2VM_VENDOR_GUID;

void bootopt_scsi_instance(unsigned controller, uint8_t out[16])
{
	/* Must stay equal to storvsp_create()'s instance_id. */
	struct vmbus_guid g = VMBUS_GUID(0x5c5e0000u + controller, 0x6765, 0x6e32, 0x76, 0x6d, 0x53, 0x43, 0x53, 0x49,
					 0x00, (uint8_t)controller);
	memcpy(out, g.b, 16);
}

void bootopt_device_path(unsigned controller, unsigned lun, struct efi_dp_vmbus_scsi *dp)
{
	uint8_t inst[16];
	bootopt_scsi_instance(controller, inst);
	efi_dp_vmbus_scsi_init(dp, inst, 0, (uint16_t)lun);
}

/* A device entry's path is exactly one of ours; returns its controller and lun. */
static bool dp_is_device(const uint8_t *dp, size_t len, unsigned *controller, unsigned *lun)
{
	if (len != sizeof(struct efi_dp_vmbus_scsi))
		return false;
	struct efi_dp_vmbus_scsi d;
	memcpy(&d, dp, sizeof(d));
	for (unsigned c = 0; c < 4u; c++) {
		struct efi_dp_vmbus_scsi ref;
		bootopt_device_path(c, d.scsi.Lun, &ref);
		if (d.scsi.Lun < 64 && !memcmp(&ref, &d, sizeof(d))) {
			*controller = c;
			*lun = d.scsi.Lun;
			return true;
		}
	}
	return false;
}

void bootopt_nic_path(unsigned instance, const uint8_t mac[6], struct efi_dp_vmbus_mac *dp)
{
	struct vmbus_guid g;
	netvsp_instance_id(instance, &g);
	efi_dp_vmbus_mac_init(dp, g.b, mac);
}

/* A network entry's path is exactly one of ours: the adapter's instance (its MAC may have changed). */
static bool dp_is_nic(const uint8_t *dp, size_t len, unsigned *instance)
{
	if (len != sizeof(struct efi_dp_vmbus_mac))
		return false;
	struct efi_dp_vmbus_mac d, ref;
	memcpy(&d, dp, sizeof(d));
	for (unsigned i = 0; i < VMDEV_NICS_MAX; i++) {
		bootopt_nic_path(i, d.mac.MacAddress.Addr, &ref);
		if (!memcmp(&ref, &d, sizeof(d))) {
			*instance = i;
			return true;
		}
	}
	return false;
}

int bootopt_parse(const void *data, size_t size, struct bootopt_entry *e)
{
	const uint8_t *b = data;
	memset(e, 0, sizeof(*e));
	if (size < 8)
		return -EINVAL;
	e->attributes = efi_le32(b);
	size_t fpl = efi_le16(b + 4), i = 6, k = 0;
	for (;; i += 2) {
		if (i + 2 > size)
			return -EINVAL;
		uint16_t c = efi_le16(b + i);
		if (!c)
			break;
		if (k + 1 < sizeof(e->desc))
			e->desc[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	e->desc[k] = 0;
	i += 2;
	if (fpl > size - i)
		return -EINVAL;
	e->dp = malloc(fpl ? fpl : 1);
	if (!e->dp)
		return -ENOMEM;
	memcpy(e->dp, b + i, fpl);
	e->dp_len = fpl;
	e->device = dp_is_device(e->dp, fpl, &e->controller, &e->lun);
	e->dvd = e->device && !strncmp(e->desc, "EFI SCSI DVD", 12);
	e->nic = !e->device && dp_is_nic(e->dp, fpl, &e->nic_instance);
	return 0;
}

void *bootopt_build(uint32_t attributes, const char *desc, const void *dp, size_t dp_len, size_t *size)
{
	size_t dl = strlen(desc);
	size_t n = 6 + (dl + 1) * 2 + dp_len;
	uint8_t *b = malloc(n);
	if (!b)
		return NULL;
	efi_put32(b, attributes);
	efi_put16(b + 4, (uint16_t)dp_len);
	for (size_t i = 0; i <= dl; i++)
		efi_put16(b + 6 + 2 * i, (uint16_t)(unsigned char)desc[i]);
	memcpy(b + 6 + (dl + 1) * 2, dp, dp_len);
	*size = n;
	return b;
}

static void boot_name(uint16_t num, char out[9])
{
	snprintf(out, 9, "Boot%04X", num);
}

/* Boot#### in the global GUID: its number, or -1. */
static int boot_var_num(const CHAR16 *name, size_t size, const EFI_GUID *g)
{
	if (size != 18 || !efi_guid_eq(g, &global_guid) || name[0] != 'B' || name[1] != 'o' || name[2] != 'o' ||
	    name[3] != 't')
		return -1;
	int v = 0;
	for (int i = 4; i < 8; i++) {
		int h = gen2vm_hex_digit_upper(name[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static uint16_t *order_get(struct nvram *nv, unsigned *n)
{
	size_t sz = 0;
	uint16_t *o = nvram_get_ascii(nv, "BootOrder", &global_guid, &sz, NULL);
	*n = o ? (unsigned)(sz / 2) : 0;
	return o;
}

static int order_put(struct nvram *nv, const uint16_t *o, unsigned n)
{
	uint64_t s = nvram_set_ascii(nv, "BootOrder", &global_guid, BOOT_VAR_ATTR, o, n * 2u);
	if (s == EFI_NOT_FOUND && n == 0)
		return 0;
	return s ? -EIO : 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return (int)((const struct bootopt_entry *)a)->num - (int)((const struct bootopt_entry *)b)->num;
}

int bootopt_load(struct nvram *nv, struct bootopt_list *l)
{
	memset(l, 0, sizeof(*l));
	l->pause_after_failure = -1;
	struct bootopt_entry *all = malloc(BOOTOPT_MAX * sizeof(*all));
	unsigned na = 0;
	if (!all)
		return -ENOMEM;
	const CHAR16 *name;
	size_t ns, ds;
	EFI_GUID g;
	uint32_t attr;
	const void *data;
	for (size_t i = 0; nvram_var_at(nv, i, &name, &ns, &g, &attr, &data, &ds); i++) {
		int num = boot_var_num(name, ns, &g);
		if (num < 0 || na == BOOTOPT_MAX)
			continue;
		struct bootopt_entry e;
		int r = bootopt_parse(data, ds, &e);
		if (r == -ENOMEM) {
			for (unsigned k = 0; k < na; k++)
				free(all[k].dp);
			free(all);
			return r;
		}
		if (r) {
			snprintf(e.desc, sizeof(e.desc), "(malformed Boot%04X)", num);
			e.dp = NULL;
			e.dp_len = 0;
		}
		e.num = (uint16_t)num;
		all[na++] = e;
	}
	qsort(all, na, sizeof(all[0]), entry_cmp);
	unsigned no;
	uint16_t *order = order_get(nv, &no);
	for (unsigned i = 0; i < no; i++)
		for (unsigned k = 0; k < na; k++)
			if (all[k].num == order[i] && !all[k].in_order) {
				all[k].in_order = true;
				l->e[l->n++] = all[k];
				break;
			}
	free(order);
	for (unsigned k = 0; k < na; k++)
		if (!all[k].in_order)
			l->e[l->n++] = all[k];
	free(all);
	size_t sz;
	uint8_t *v;
	if ((v = nvram_get_ascii(nv, "Timeout", &global_guid, &sz, NULL))) {
		if (sz == 2) {
			l->has_timeout = true;
			l->timeout = efi_le16(v);
		}
		free(v);
	}
	if ((v = nvram_get_ascii(nv, "BootNext", &global_guid, &sz, NULL))) {
		if (sz == 2) {
			l->has_next = true;
			l->next = efi_le16(v);
		}
		free(v);
	}
	if ((v = nvram_get_ascii(nv, "PauseAfterBootFailure", &vendor_guid, &sz, NULL))) {
		if (sz == 1)
			l->pause_after_failure = v[0] ? 1 : 0;
		free(v);
	}
	if ((v = nvram_get_ascii(nv, "NetworkBootPreferredProtocol", &vendor_guid, &sz, NULL))) {
		l->net_ipv6 = sz == 1 && v[0] == 6;
		free(v);
	}
	return 0;
}

void bootopt_list_free(struct bootopt_list *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->e[i].dp);
	l->n = 0;
}

static int order_remove(struct nvram *nv, uint16_t num)
{
	unsigned n, k = 0;
	uint16_t *o = order_get(nv, &n);
	if (!o)
		return 0;
	for (unsigned i = 0; i < n; i++)
		if (o[i] != num)
			o[k++] = o[i];
	int r = k == n ? 0 : order_put(nv, o, k);
	free(o);
	return r;
}

static int order_append(struct nvram *nv, uint16_t num)
{
	unsigned n;
	uint16_t *o = order_get(nv, &n);
	for (unsigned i = 0; i < n; i++)
		if (o[i] == num) {
			free(o);
			return 0;
		}
	uint16_t *no = realloc(o, (n + 1) * sizeof(*no));
	if (!no) {
		free(o);
		return -ENOMEM;
	}
	no[n] = num;
	int r = order_put(nv, no, n + 1);
	free(no);
	return r;
}

/* The entry number holding this device, or -1. */
static int device_find(struct bootopt_list *l, unsigned controller, unsigned lun)
{
	for (unsigned i = 0; i < l->n; i++)
		if (l->e[i].device && l->e[i].controller == controller && l->e[i].lun == lun)
			return l->e[i].num;
	return -1;
}

static int free_num(const struct bootopt_list *l)
{
	for (unsigned num = 0; num <= 0xffff; num++) {
		bool used = false;
		for (unsigned i = 0; i < l->n && !used; i++)
			used = l->e[i].num == num;
		if (!used)
			return (int)num;
	}
	return -1;
}

int bootopt_device_added(struct nvram *nv, const struct bootopt_device *d)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		return -ENOMEM;
	}
	int num = device_find(l, d->controller, d->lun);
	char desc[96];
	snprintf(desc, sizeof(desc), "EFI SCSI %s (controller %u, LUN %u)", d->dvd ? "DVD" : "Device", d->controller,
		 d->lun);
	bool need_write = true;
	if (num >= 0)
		for (unsigned i = 0; i < l->n; i++)
			if (l->e[i].num == num && !strcmp(l->e[i].desc, desc))
				need_write = false;
	bool is_new = num < 0;
	if (is_new)
		num = l->n < BOOTOPT_MAX ? free_num(l) : -1;
	bootopt_list_free(l);
	free(l);
	if (num < 0) {
		log_error("NVRAM: no room for another boot entry (%u entries)", BOOTOPT_MAX);
		return -ENOSPC;
	}
	int r = 0;
	if (need_write) {
		struct efi_dp_vmbus_scsi dp;
		bootopt_device_path(d->controller, d->lun, &dp);
		size_t sz;
		void *opt = bootopt_build(LOAD_OPTION_ACTIVE, desc, &dp, sizeof(dp), &sz);
		char name[9];
		boot_name((uint16_t)num, name);
		r = !opt ? -ENOMEM : nvram_set_ascii(nv, name, &global_guid, BOOT_VAR_ATTR, opt, sz) ? -EIO : 0;
		free(opt);
	}
	/* An entry the guest took out of BootOrder stays out: only a new device goes in. */
	if (!r && is_new)
		r = order_append(nv, (uint16_t)num);
	if (r)
		log_error("NVRAM: cannot add the boot entry of controller %u LUN %u", d->controller, d->lun);
	return r;
}

int bootopt_device_removed(struct nvram *nv, unsigned controller, unsigned lun)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		return -ENOMEM;
	}
	int num, r = 0;
	/* one device could have several entries if the guest copied one: remove them all */
	while (!r && (num = device_find(l, controller, lun)) >= 0) {
		char name[9];
		boot_name((uint16_t)num, name);
		if (nvram_set_ascii(nv, name, &global_guid, 0, NULL, 0) != EFI_SUCCESS)
			r = -EIO;
		else
			r = order_remove(nv, (uint16_t)num);
		for (unsigned i = 0; i < l->n; i++)
			if (l->e[i].num == num)
				l->e[i].device = false;
	}
	bootopt_list_free(l);
	free(l);
	return r;
}

int bootopt_sync(struct nvram *nv, const struct bootopt_device *devs, unsigned n)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		return -ENOMEM;
	}
	int r = 0;
	for (unsigned i = 0; i < l->n && !r; i++) {
		if (!l->e[i].device)
			continue;
		bool present = false;
		for (unsigned k = 0; k < n && !present; k++)
			present = devs[k].controller == l->e[i].controller && devs[k].lun == l->e[i].lun;
		if (!present)
			r = bootopt_device_removed(nv, l->e[i].controller, l->e[i].lun);
	}
	bootopt_list_free(l);
	free(l);
	for (unsigned k = 0; k < n && !r; k++)
		r = bootopt_device_added(nv, &devs[k]);
	return r;
}

static void nic_desc(const uint8_t mac[6], char *out, size_t cap)
{
	/* Hyper-V names an adapter by its MAC in this form (boot summary: "Network Adapter (00155D...)") */
	snprintf(out, cap, "EFI Network (%02X%02X%02X%02X%02X%02X)", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

int bootopt_nic_sync(struct nvram *nv, const struct bootopt_nic *nics, unsigned n)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		return -ENOMEM;
	}
	int r = 0;
	bool have[VMDEV_NICS_MAX] = { false };
	for (unsigned i = 0; i < l->n && !r; i++) {
		const struct bootopt_entry *e = &l->e[i];
		if (!e->nic)
			continue;
		struct efi_dp_vmbus_mac dp;
		bool keep = false;
		for (unsigned k = 0; k < n && !keep; k++) {
			bootopt_nic_path(nics[k].instance, nics[k].mac, &dp);
			keep = e->dp_len == sizeof(dp) && !memcmp(e->dp, &dp, sizeof(dp));
			if (keep && nics[k].instance < VMDEV_NICS_MAX)
				have[nics[k].instance] = true;
		}
		if (keep)
			continue;
		char name[9];
		boot_name(e->num, name);
		r = nvram_set_ascii(nv, name, &global_guid, 0, NULL, 0) != EFI_SUCCESS ? -EIO : order_remove(nv, e->num);
	}
	for (unsigned k = 0; k < n && !r; k++) {
		if (nics[k].instance >= VMDEV_NICS_MAX || have[nics[k].instance])
			continue;
		int num = l->n < BOOTOPT_MAX ? free_num(l) : -1;
		if (num < 0) {
			log_error("NVRAM: no room for another boot entry (%u entries)", BOOTOPT_MAX);
			r = -ENOSPC;
			break;
		}
		struct efi_dp_vmbus_mac dp;
		bootopt_nic_path(nics[k].instance, nics[k].mac, &dp);
		char desc[64], name[9];
		nic_desc(nics[k].mac, desc, sizeof(desc));
		size_t sz;
		void *opt = bootopt_build(LOAD_OPTION_ACTIVE, desc, &dp, sizeof(dp), &sz);
		boot_name((uint16_t)num, name);
		r = !opt ? -ENOMEM : nvram_set_ascii(nv, name, &global_guid, BOOT_VAR_ATTR, opt, sz) ? -EIO : 0;
		free(opt);
		if (!r)
			r = order_append(nv, (uint16_t)num);
		if (!r) { /* taken: the next adapter gets another number */
			l->e[l->n] = (struct bootopt_entry){ .num = (uint16_t)num };
			l->n++;
		}
	}
	bootopt_list_free(l);
	free(l);
	if (r)
		log_error("NVRAM: cannot update the network boot entries");
	return r;
}

int bootopt_set_order(struct nvram *nv, const uint16_t *order, unsigned n, char *err, size_t errlen)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int r = 0;
	for (unsigned i = 0; i < n && !r; i++) {
		bool known = false;
		for (unsigned k = 0; k < l->n; k++)
			known |= l->e[k].num == order[i];
		if (!known) {
			snprintf(err, errlen, "there is no boot entry %04X (gen2vm firmware show lists them)", order[i]);
			r = -EINVAL;
		}
		for (unsigned k = 0; k < i && !r; k++)
			if (order[k] == order[i]) {
				snprintf(err, errlen, "boot entry %04X is listed twice", order[i]);
				r = -EINVAL;
			}
	}
	for (unsigned k = 0; k < l->n && !r; k++) {
		bool listed = false;
		for (unsigned i = 0; i < n; i++)
			listed |= order[i] == l->e[k].num;
		if (!listed) {
			snprintf(err, errlen, "boot entry %04X (%s) is missing from the order; list every entry", l->e[k].num,
				 l->e[k].desc);
			r = -EINVAL;
		}
	}
	bootopt_list_free(l);
	free(l);
	if (!r && (r = order_put(nv, order, n)))
		snprintf(err, errlen, "cannot write BootOrder");
	return r;
}

/* A decimal number of at most max at s (digits only: no sign, no spaces); returns where it ends, or
 * NULL. */
static const char *bootopt_number(const char *s, unsigned max, unsigned *out)
{
	unsigned long v = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9' && v <= max)
		v = v * 10 + (unsigned long)(*p++ - '0');
	if (p == s || v > max)
		return NULL;
	*out = (unsigned)v;
	return p;
}

int bootopt_set_first(struct nvram *nv, const char *which, char *err, size_t errlen)
{
	struct bootopt_list *l = malloc(sizeof(*l));
	if (!l || bootopt_load(nv, l)) {
		free(l);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int num = -1, r = 0;
	unsigned c, lun, idx = 0;
	const char *p;
	if (!strcmp(which, "dvd")) {
		for (unsigned i = 0; i < l->n && num < 0; i++)
			if (l->e[i].dvd)
				num = l->e[i].num;
		if (num < 0)
			snprintf(err, errlen, "there is no DVD boot entry (start the VM with --dvd once)");
	} else if (!strncmp(which, "disk:", 5) && (p = bootopt_number(which + 5, 3, &c)) && *p == ':' &&
		   (p = bootopt_number(p + 1, 63, &lun)) && !*p) {
		for (unsigned i = 0; i < l->n && num < 0; i++)
			if (l->e[i].device && !l->e[i].dvd && l->e[i].controller == c && l->e[i].lun == lun)
				num = l->e[i].num;
		if (num < 0)
			snprintf(err, errlen, "there is no disk boot entry for controller %u LUN %u", c, lun);
	} else if (!strncmp(which, "file:", 5) && (p = bootopt_number(which + 5, BOOTOPT_MAX, &idx)) && !*p && idx) {
		unsigned k = 0;
		for (unsigned i = 0; i < l->n && num < 0; i++)
			if (!l->e[i].device && !l->e[i].nic && ++k == idx)
				num = l->e[i].num;
		if (num < 0)
			snprintf(err, errlen, "there is no file boot entry number %u (%u exist)", idx, k);
	} else if (!strcmp(which, "nic") || (!strncmp(which, "nic:", 4) && (p = bootopt_number(which + 4, 63, &idx)) &&
					       !*p)) {
		bool any = !which[3]; /* "nic": the lowest-numbered adapter's entry */
		unsigned best = ~0u;
		for (unsigned i = 0; i < l->n; i++)
			if (l->e[i].nic && (any ? l->e[i].nic_instance < best : l->e[i].nic_instance == idx && num < 0)) {
				num = l->e[i].num;
				best = l->e[i].nic_instance;
			}
		if (num < 0 && any)
			snprintf(err, errlen, "there is no network boot entry (start the VM with --nic once)");
		else if (num < 0)
			snprintf(err, errlen, "there is no network boot entry for adapter %u", idx);
	} else {
		snprintf(err, errlen, "'%s': expected dvd, disk:CONTROLLER:LUN (controller 0-3, LUN 0-63), file:N "
			 "(N from 1) or nic[:N] (adapter N from 0)", text_show(which));
		r = -EINVAL;
	}
	if (!r && num < 0)
		r = -ENOENT;
	uint16_t order[BOOTOPT_MAX];
	unsigned n = 0;
	if (!r) {
		order[n++] = (uint16_t)num;
		for (unsigned i = 0; i < l->n; i++)
			if (l->e[i].in_order && l->e[i].num != num)
				order[n++] = l->e[i].num;
		if ((r = order_put(nv, order, n)))
			snprintf(err, errlen, "cannot write BootOrder");
	}
	bootopt_list_free(l);
	free(l);
	return r;
}

int bootopt_set_timeout(struct nvram *nv, uint16_t seconds)
{
	uint8_t v[2] = { (uint8_t)seconds, (uint8_t)(seconds >> 8) };
	return nvram_set_ascii(nv, "Timeout", &global_guid, BOOT_VAR_ATTR, v, 2) ? -EIO : 0;
}

int bootopt_set_pause(struct nvram *nv, bool on)
{
	uint8_t v = on;
	return nvram_set_ascii(nv, "PauseAfterBootFailure", &vendor_guid, BOOT_VAR_ATTR, &v, 1) ? -EIO : 0;
}

int bootopt_set_net_protocol(struct nvram *nv, bool ipv6)
{
	uint8_t v = ipv6 ? 6 : 4;
	return nvram_set_ascii(nv, "NetworkBootPreferredProtocol", &vendor_guid, BOOT_VAR_ATTR, &v, 1) ? -EIO : 0;
}

/* ---- device paths as text ---- */

void bootopt_dp_to_text(const uint8_t *dp, size_t len, char *out, size_t cap)
{
	if (!cap)
		return;
	out[0] = 0;
	if (len)
		efi_dp_text8((const EFI_DEVICE_PATH_PROTOCOL *)dp, len, out, cap);
}
