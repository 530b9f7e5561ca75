/* The synthetic console devices (keyboard, mouse, video): what the three share.
 *
 *  - The settings-only class "synthetic-console" (--synthetic-console, JSON "synthetic_console":
 *    true/false), consulted by the three device classes through vmdev_class.settings_from. Off by
 *    default in gen2vm run (minimal unless asked); the VM store writes true into a new VM's
 *    document (src/cli/vm_cmd.c, vm_console_default).
 *  - struct console_dev: one device on a VM's VMBus (offer, channel open/close, draining the
 *    guest's ring under the device lock), calling the device's protocol through struct
 *    console_dev_ops. Unlike the integration services the guest speaks first on all three, so
 *    nothing is sent at open and there is no timer.
 */
#ifndef GEN2VM_DEVICES_CONSOLE_H
#define GEN2VM_DEVICES_CONSOLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/vmdev.h"

/* The settings-only class: its items are one bool each (the last one given wins). */
extern const struct vmdev_class console_settings_class;

/* Whether the console devices are offered given console_settings_class's n items (off without any). */
bool console_settings_enabled(void *const *cfgs, unsigned n);

struct console_dev;

/* The device's protocol. Every hook runs with d->lock held: packet on the channel's service thread,
 * opened/closed on whatever thread opens or closes the channel. */
struct console_dev_ops {
	void (*opened)(struct console_dev *d);
	/* One INBAND packet from the guest (pkt: the payload, len bytes, not yet trusted). */
	void (*packet)(struct console_dev *d, const uint8_t *pkt, uint32_t len, uint64_t trans);
	void (*closed)(struct console_dev *d);
};

struct console_dev {
	const char *name; /* "keyboard", "mouse", "video" (log lines) */
	const struct console_dev_ops *ops;
	void *svc; /* the device's own state */
	struct vmdev_host host;
	struct vmbus_device *vdev;
	/* Guards everything below and the device's state; verbs take it too. Never held while taking
	 * the server lock. */
	pthread_mutex_t lock;
	struct vmbus_channel *chan;
	uint8_t *rx;
	uint32_t rx_cap;
	/* A display's wake-up eventfd (synthvid_display_notify), -1: none. Here rather than in the
	 * device's state because a closed channel resets that state, and the display outlives sessions. */
	int notify_fd;
	/* The host's input (keys, pointer) is held while the VM is being saved (console_dev_hold): the
	 * senders then get -EBUSY, so nothing reaches the guest's ring after the state was taken. */
	bool input_held;
};

/* Offers a device of class class_guid (instance GUID: instance, then "gen2vm"'s fixed tail) with
 * mmio_megabytes in its offer. Returns 0 or -errno with err. */
int console_dev_create(struct console_dev **out, const struct vmdev_host *h, const char *name, const char *class_guid,
		       uint32_t instance, uint16_t mmio_megabytes, const struct console_dev_ops *ops, void *svc,
		       char *err, size_t errlen);
/* Hot-removes it (the channel closes: ops->closed runs) and frees it. NULL is fine. */
void console_dev_destroy(struct console_dev *d);

/* Saving (vmdev_class.save/restore of the three classes, formats in proto/savestate.h): a class
 * whose device is not offered (the console is off) keeps nothing. console_dev_save copies rec (n
 * bytes, the device's record made under its lock) into *out, or nothing when d is NULL: 0 or
 * -ENOMEM. console_dev_restore_len checks a restored section's length: empty when d is NULL, n
 * bytes otherwise; 0 or -EINVAL with err. */
int console_dev_save(const struct console_dev *d, const void *rec, size_t n, uint8_t **out, size_t *len);
int console_dev_restore_len(const struct console_dev *d, size_t len, size_t n, char *err, size_t errlen);
/* Holds (or lets go again) the host's input to d (NULL is fine): see input_held. */
void console_dev_hold(struct console_dev *d, bool held);

/* With the lock held: one INBAND packet of len bytes to the guest (transaction id trans). Returns 0,
 * -ENOTCONN (no open channel), -EAGAIN (the guest's ring is full) or another -errno. */
int console_dev_send(struct console_dev *d, const void *msg, uint32_t len, uint64_t trans);

/* With the lock held: the bytes free in the host -> guest ring now (0 without a channel). Callers
 * that must send a group of packets whole (a key combination) check it first. */
uint32_t console_dev_tx_room(struct console_dev *d);

#endif
