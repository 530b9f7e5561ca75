/* The VMBus device registry: every synthetic device gen2vm offers is one file that defines a
 * struct vmdev_class, plus one line in vmdev_classes[] (src/devices/vmdev.c).
 *
 * A class says how its settings are written (command-line options, a JSON key), parses and validates
 * them into items of its own, creates its devices on a VM's VMBus server from those items, owns the
 * control-socket verbs that act on them (hot add/remove, media changes...), and tears them down.
 * Configuration flows one way: cli/ (options and the JSON document) parses through the table into a
 * struct vmdev_config, validated once; the machine builder (platform/) hands it to vmdev_set_create
 * and never looks inside an item. Adding a device: README, "Adding a VMBus device" (the reversing
 * echo device, src/devices/reverse.c, is the worked example).
 *
 * THREADS. A class's create/destroy run on the thread that builds or tears down the VM, its verbs on
 * the control socket's thread; what a class shares between the two it locks itself. The device's own
 * callbacks run as the VMBus device API says (src/vmbus/server.h). The server lock is for the class's
 * glue only (adding and removing devices), never for a device's data path.
 */
#ifndef GEN2VM_DEVICES_VMDEV_H
#define GEN2VM_DEVICES_VMDEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "gen2vm/proto/synthvid.h"
#include "vmbus/server.h"
#include "vmm/memory.h"

struct control;
struct json_object;

/* A drive the storage class attached or removed: the machine keeps its boot entries. */
struct vmdev_drive {
	unsigned controller, lun;
	bool dvd;
};

/* A network adapter a class offers (the integration services ask the guest about each one). */
struct vmdev_nic {
	unsigned slot;
	uint8_t mac[6];
};
#define VMDEV_NICS_MAX 64u

/* A guest-physical MMIO window that ACPI offers VMBus devices (\_SB.VMOD's _CRS): where Linux's
 * vmbus_allocate_mmio places device memory such as the video VRAM. */
struct vmdev_mmio_window {
	uint64_t base, size; /* size 0: no window */
};
#define VMDEV_MMIO_WINDOWS 2u /* below 4 GiB and above RAM */

/* What the machine gives every class. */
struct vmdev_host {
	struct vmbus_server *srv;
	pthread_mutex_t *srv_lock; /* held around vmbus_server_device_add/remove (and creation) */
	const struct guest_mem *mem;
	unsigned nr_vcpus;
	const char *vm_name; /* a stable per-VM seed (generated MACs): the control socket path, or "gen2vm" */
	/* Optional. The drives present at start, in configuration order (the machine syncs its boot
	 * entries with them; 0 or -errno with the message logged), and each one hot added or removed. */
	void *opaque;
	int (*drives_present)(void *opaque, const struct vmdev_drive *d, unsigned n);
	void (*drive_changed)(void *opaque, const struct vmdev_drive *d, bool added);
	/* Optional. Turns the VM off (reboot: resets it instead), e.g. when a guest did not shut down
	 * in time; why goes to the log. Callable from any thread; returns at once. */
	void (*stop_vm)(void *opaque, bool reboot, const char *why);
	/* Optional. The VM's wall clock (host UTC plus the firmware clock's offset) in 100 ns units
	 * since 1601-01-01; without it, host UTC. */
	uint64_t (*utc_now)(void *opaque);
	/* Optional. The partition's reference time now (TIME_REF_COUNT, 100 ns units), from any thread;
	 * without it, services that need it are not offered in the versions that do. */
	uint64_t (*ref_time_now)(void *opaque);
	/* Optional. The VM's network adapters now (at most max into out); returns how many. Callable
	 * from any thread with any device lock held: the classes answer it under a leaf lock. */
	unsigned (*nics)(void *opaque, struct vmdev_nic *out, unsigned max);
	/* The screen the VM is configured for (--video; 0x0: the default). */
	struct synthvid_screen_size video;
	/* The windows in VMOD's _CRS (all zero: none; guest addresses in them are then refused). */
	struct vmdev_mmio_window mmio[VMDEV_MMIO_WINDOWS];
	/* Optional. Device memory the guest reaches as plain RAM (a memslot: its accesses never exit),
	 * such as the video VRAM. map_ram maps size bytes at gpa (the caller checked it with
	 * vmdev_mmio_check) and gives the host address in *host. The machine allocates the memory (zeroed)
	 * at the first call and keeps it for the VM instance's life, so a guest that moves it keeps its
	 * contents and *host stays valid until the class's destroy has run; a later call (same size) moves
	 * the one mapping, the old address no longer maps. One such mapping per VM: -EBUSY for another
	 * size. unmap_ram removes the mapping (the memory and *host stay). Any thread; 0 or -errno. */
	int (*map_ram)(void *opaque, uint64_t gpa, uint64_t size, void **host);
	int (*unmap_ram)(void *opaque);
	/* Optional. Which pages of the map_ram memory the guest wrote since the last call (KVM's dirty
	 * log: written in the kernel, no exit), one bit a 4 KiB page from the memory's start, into bitmap
	 * (size / 4096 bits, rounded up to 64-bit words), and starts over. A move (map_ram elsewhere)
	 * starts over too. -ENOENT when nothing is mapped. Any thread; 0 or -errno. */
	int (*ram_written)(void *opaque, uint64_t *bitmap);
};

/* Checks a guest-chosen [gpa, gpa + size) for device memory: size and gpa page-aligned, no overflow,
 * wholly inside one of h's MMIO windows, no byte in guest RAM. 0, or -EINVAL with *why saying which
 * (a constant string). */
int vmdev_mmio_check(const struct vmdev_host *h, uint64_t gpa, uint64_t size, const char **why);

/* A command-line option of a class: --NAME ARG, or the flag --NAME. */
struct vmdev_option {
	const char *name;
	bool has_arg;
};

/* A control-socket verb: fn(state, argc, argv, reply, len) answers in reply, with the reason when it
 * fails (0 or -errno). */
struct vmdev_verb {
	const char *name, *usage;
	int (*fn)(void *state, int argc, char **argv, char *reply, size_t len);
};

struct vmdev_class {
	const char *name;       /* for messages: "storvsp", "netvsp"... */
	const char *class_guid; /* the VMBus class it offers (NULL: none, a settings-only class) */
	const struct vmdev_option *options; /* ends with { NULL }; NULL: none */
	const char *usage;      /* its lines in `gen2vm run --help` */
	const char *json_key;   /* the JSON document's array of its items ("disks"); NULL: none */
	bool json_scalar;       /* json_key holds one value, not an array: parse_json gets it as one item */
	bool always;            /* created even without items (controller 0 and adapters can be hot added) */
	/* Optional: create gets the items of this other class instead of its own (several classes
	 * sharing one setting, e.g. the integration services' list). A class without create only holds
	 * settings: it is never created. */
	const struct vmdev_class *settings_from;
	/* Its items: config_size bytes each, allocated zeroed by the registry (0: a flag with no item
	 * data; cfg is then NULL). parse_option fills one from option opt's argument (NULL for a flag),
	 * parse_json from one element of the json_key array: 0, or -errno with err naming the option, the
	 * problem and the fix, leaving nothing to free. free_config (optional) releases what an item
	 * holds; the registry frees the item itself. */
	size_t config_size;
	int (*parse_option)(const char *opt, const char *arg, void *cfg, char *err, size_t errlen);
	int (*parse_json)(struct json_object *v, void *cfg, char *err, size_t errlen);
	void (*free_config)(void *cfg);
	/* Optional: checks the class's items together (counts, clashes). 0 or -EINVAL with err. */
	int (*validate)(void *const *cfgs, unsigned n, char *err, size_t errlen);
	/* Creates the class's devices from its n items (in configuration order) before the guest runs.
	 * *state: the class's running state. 0 or -errno with err (or err empty: the message was logged). */
	int (*create)(const struct vmdev_host *h, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen);
	/* After the vCPUs stopped: hot-removes and frees what create made. */
	void (*destroy)(void *state);
	const struct vmdev_verb *verbs; /* ends with { NULL }; NULL: none */
	/* Optional: the VM is asked to stop (SIGTERM). Asks the guest to shut down, turning the VM off
	 * if it still runs after timeout_s. 0, or -ENOTCONN when the guest cannot take the request (the
	 * caller turns the VM off itself). */
	int (*stop_request)(void *state, unsigned timeout_s);
	/* Optional: its network adapters now, as vmdev_host.nics (under a leaf lock of its own). */
	unsigned (*nics)(void *state, struct vmdev_nic *out, unsigned max);
	/* Optional: its part of the VM's `status`: members added to o (the --json form) and a short
	 * phrase in text (len bytes; left empty when it has nothing to say). Control thread. */
	void (*status)(void *state, struct json_object *o, char *text, size_t len);
	/* Saving the VM (Hyper-V's saved state). A running class without save makes the VM's `save`
	 * refuse, naming the class; a class whose devices cannot be saved as they are now (e.g. a network
	 * adapter) returns -EOPNOTSUPP from save with err saying why. The vCPUs are paused throughout.
	 * quiesce (optional) waits up to timeout_ms for the class's devices to finish what they have in
	 * flight (disk I/O, replies the guest has not got), and may hold their own threads still (the
	 * network adapters' workers, the console's input) until the VM ends or thaw (optional) lets them
	 * go again after a save that failed; without the server lock: 0 or -EBUSY (thaw runs then too).
	 * save runs with the server lock held and allocates *out (*len bytes, may be 0) in the class's
	 * own format: 0 or -errno with err. restore runs after the VMBus server was restored (its
	 * channels reopened: the devices' open callbacks ran), with the server lock held, on a class
	 * just created from the same configuration; buf is host input: 0 or -EINVAL with err. */
	int (*quiesce)(void *state, unsigned timeout_ms);
	void (*thaw)(void *state);
	int (*save)(void *state, uint8_t **out, size_t *len, char *err, size_t errlen);
	int (*restore)(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen);
};

/* vmdev_class.save and .restore of a class whose host side keeps nothing the guest relies on across
 * a save (the integration services): the state is empty, and restoring the VMBus reopens the
 * channel, on which the device speaks first again (the services' NEGOTIATE, which Linux's hv_utils
 * and Windows answer at any time; time sync then steps the guest's clock to the VM's, the clock
 * adjustment a restored guest needs). restore refuses a state that is not empty. */
int vmdev_save_nothing(void *state, uint8_t **out, size_t *len, char *err, size_t errlen);
int vmdev_restore_nothing(void *state, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* Offers a device on h's VMBus (hot when the guest runs) and withdraws it, each under the server
 * lock, as a class's create/destroy glue does. Offer returns 0 or -errno from vmbus_server_device_add;
 * withdraw of NULL is fine. */
int vmdev_device_offer(const struct vmdev_host *h, const struct vmbus_device_desc *desc, struct vmbus_device **out);
void vmdev_device_withdraw(const struct vmdev_host *h, struct vmbus_device *dev);

/* The registry, NULL-terminated. */
extern const struct vmdev_class *const vmdev_classes[];

/* A VM's device settings: items in the order they were given. */
struct vmdev_item {
	const struct vmdev_class *cls;
	void *cfg;
};
struct vmdev_config {
	struct vmdev_item *items;
	unsigned n;
};

/* The class and option index that take --name, or NULL. */
const struct vmdev_class *vmdev_class_by_option(const char *name, const struct vmdev_option **opt);
/* The class whose JSON key is key, or NULL. */
const struct vmdev_class *vmdev_class_by_json_key(const char *key);

/* Parses --opt arg (arg NULL for a flag) with its class and appends the item. 0, -EINVAL or
 * -ENOMEM with err. */
int vmdev_config_add_option(struct vmdev_config *c, const char *opt, const char *arg, char *err, size_t errlen);
/* Parses every element of the array v (a json_object of type array) under key, or v itself for a
 * json_scalar class. 0 or -errno with err. */
int vmdev_config_add_json(struct vmdev_config *c, const char *key, struct json_object *v, char *err, size_t errlen);
/* Runs every class's validate on its items. 0 or -EINVAL with err. */
int vmdev_config_validate(const struct vmdev_config *c, char *err, size_t errlen);
/* The number of items of cls. */
unsigned vmdev_config_count(const struct vmdev_config *c, const struct vmdev_class *cls);
void vmdev_config_free(struct vmdev_config *c);

/* The running devices of a VM: one state per class created. */
struct vmdev_running {
	const struct vmdev_class *cls;
	void *state;
};
struct vmdev_set {
	unsigned n;
	struct vmdev_running *run;
};

/* Creates, in registry order, every class that has items (or is `always`). On failure what was
 * created is destroyed and err says why (may be empty: logged). 0 or -errno. */
int vmdev_set_create(struct vmdev_set *s, const struct vmdev_host *h, const struct vmdev_config *c, char *err,
		     size_t errlen);
/* Registers every running class's verbs on the control socket. 0 or -errno. */
int vmdev_set_register_verbs(struct vmdev_set *s, struct control *ctl);
/* Passes a stop request to the first running class that takes one (stop_request). 0, or -ENOTCONN
 * when none could. */
int vmdev_set_stop_request(struct vmdev_set *s, unsigned timeout_s);
/* Every running class's network adapters (vmdev_class.nics), at most max; returns how many. */
unsigned vmdev_set_nics(struct vmdev_set *s, struct vmdev_nic *out, unsigned max);
/* Every running class's status (vmdev_class.status): members added to o, phrases appended to text
 * (len bytes, NUL-terminated) each after "; ". */
void vmdev_set_status(struct vmdev_set *s, struct json_object *o, char *text, size_t len);
/* Saving: the name of the first running class that cannot save (no save callback), or NULL. */
const char *vmdev_set_unsaveable(const struct vmdev_set *s);
/* Runs every class's quiesce (vmdev_class.quiesce) within timeout_ms in all. 0, or -EBUSY with err
 * naming the class that is still busy. */
int vmdev_set_quiesce(struct vmdev_set *s, unsigned timeout_ms, char *err, size_t errlen);
/* After a save that failed (the VM runs on): every running class's thaw (vmdev_class.thaw). */
void vmdev_set_thaw(struct vmdev_set *s);
struct savestate_writer;
struct savestate_file;
/* Writes one SAVESTATE_SEC_DEVICE section per running class (index: its position in the set; the
 * content starts with the class name in 16 bytes, NUL-padded). Server lock held. 0 or -errno with err. */
int vmdev_set_save(struct vmdev_set *s, struct savestate_writer *w, char *err, size_t errlen);
/* Gives every running class its section back (server lock held, after the VMBus server's restore).
 * 0, or -EINVAL with err (a missing, extra or foreign section, or the class's refusal). */
int vmdev_set_restore(struct vmdev_set *s, const struct savestate_file *f, char *err, size_t errlen);

/* The running state of the class named name ("video", "keyboard"...), NULL when it is not running:
 * for the machine's glue that joins devices to a front end (the VNC server). */
void *vmdev_set_state(const struct vmdev_set *s, const char *name);
/* Destroys the classes in reverse order. A zeroed set is fine. */
void vmdev_set_destroy(struct vmdev_set *s);

/* `gen2vm run --help` lines of every class. */
void vmdev_usage_print(FILE *f);

#endif
