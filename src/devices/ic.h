/* The integration components (IC) framework: what every Hyper-V utility service (shutdown,
 * heartbeat, time sync; later KVP, VSS, file copy) shares. Wire format: include/gen2vm/proto/ic.h.
 *
 * Two layers:
 *  - struct ic_session: the protocol as a pure state machine, no I/O. The host speaks first: it
 *    offers framework and service versions (NEGOTIATE), the guest picks one of each, then the host
 *    sends requests and the guest answers each with the same packet marked RESPONSE. One request is
 *    outstanding at a time; a new one replaces it (its late answer is then ignored). Every field of
 *    a guest answer is checked against the packet's length and against what was asked.
 *  - struct ic_dev: one IC device on a VM's VMBus (offer, channel open/close, draining the guest's
 *    ring, a timerfd for periodic requests), calling back into the service's own state machine
 *    (ic_shutdown.c, ic_heartbeat.c, ic_timesync.c, ic_kvp.c) through struct ic_dev_ops.
 *
 * Which services a VM offers: the settings-only class "integration-services"
 * (--integration-services LIST, JSON "integration_services"), consulted by every service class
 * through vmdev_class.settings_from; shutdown, heartbeat, time sync, KVP and VSS (backup) are on
 * by default, as on Hyper-V.
 */
#ifndef GEN2VM_DEVICES_IC_H
#define GEN2VM_DEVICES_IC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/vmdev.h"
#include "gen2vm/proto/ic.h"

/* ---- the protocol (pure) ---- */

/* A service: its message type and the versions the host offers, in the order it lists them. */
struct ic_service_def {
	const char *name; /* "shutdown", "heartbeat", "time sync" (log lines) */
	uint16_t msgtype; /* IC_MSG_* */
	const struct ic_version *fw, *msg;
	unsigned nr_fw, nr_msg; /* each 1..8 */
};

/* The framework versions Linux's hv_utils knows (3.0, 1.0); every service offers both. */
extern const struct ic_version ic_framework_versions[2];

enum ic_state {
	IC_CLOSED,      /* no channel */
	IC_NEGOTIATING, /* NEGOTIATE sent */
	IC_READY,       /* versions agreed: requests may go out */
	IC_REFUSED,     /* the guest answered counts 0: it speaks none of the versions offered */
};

struct ic_session {
	const struct ic_service_def *def;
	enum ic_state state;
	struct ic_version fw, msg; /* the chosen versions (IC_READY) */
	bool pending;              /* a request waits for its answer */
	uint16_t pending_type;
	uint64_t pending_trans;    /* its VMBus transaction id (the low byte is the header's) */
	uint64_t next_trans;
};

/* A guest's answer to the pending request. */
struct ic_reply {
	uint16_t type;   /* IC_MSG_* */
	uint32_t status; /* the guest's HRESULT */
	const uint8_t *body;
	uint32_t body_len; /* the bytes after the headers (the guest's icmsgsize is not trusted) */
};

/* ic_session_reply's results (>= 0). */
#define IC_REPLY_NEGOTIATED 1 /* state is now IC_READY; fw and msg say what was chosen */
#define IC_REPLY_REFUSED    2 /* state is now IC_REFUSED */
#define IC_REPLY_MESSAGE    3 /* an answer to a service request: *out */

/* An IC packet's largest payload this host builds: a KVP request (the whole struct ic_kvp_msg,
 * 7458 bytes, fits Linux's 12 KiB rings and its 16 KiB receive buffer) or a file copy WRITE. */
#define IC_PACKET_MAX (IC_HDRS_SIZE + (sizeof(struct ic_kvp_msg) > sizeof(struct ic_fcopy_data) \
					       ? sizeof(struct ic_kvp_msg) : sizeof(struct ic_fcopy_data)))

/* A closed session of service def. */
void ic_session_init(struct ic_session *s, const struct ic_service_def *def);

/* The channel opened: builds the NEGOTIATE request into buf (cap >= IC_PACKET_MAX) and moves to
 * IC_NEGOTIATING. Returns its length; *trans is the VMBus transaction id to send it with. */
int ic_session_start(struct ic_session *s, uint8_t *buf, size_t cap, uint64_t *trans);

/* Builds a service request with body (len bytes) into buf, replacing any pending request. Returns
 * its length, -EAGAIN when the session is not IC_READY, or -EMSGSIZE. */
int ic_session_request(struct ic_session *s, const void *body, uint32_t len, uint8_t *buf, size_t cap,
		       uint64_t *trans);

/* Forgets the pending request (it could not be sent). */
void ic_session_cancel(struct ic_session *s);

/* The channel closed: back to IC_CLOSED. */
void ic_session_close(struct ic_session *s);

/* A guest INBAND packet (payload pkt of len bytes, VMBus transaction id trans). Returns
 * IC_REPLY_* with *out filled for IC_REPLY_MESSAGE; -ESTALE when it answers no pending request
 * (late, duplicate or unasked: drop it quietly); -EPROTO when it is malformed, with *why saying how
 * (the caller logs it with log_guest and drops it; the request stays pending). */
int ic_session_reply(struct ic_session *s, uint64_t trans, const uint8_t *pkt, uint32_t len,
		     struct ic_reply *out, const char **why);

/* ---- settings ---- */

#define IC_SVC_SHUTDOWN  0x1u
#define IC_SVC_HEARTBEAT 0x2u
#define IC_SVC_TIMESYNC  0x4u
#define IC_SVC_KVP       0x8u
#define IC_SVC_FCOPY     0x10u /* off by default, as Hyper-V's guest services */
#define IC_SVC_VSS       0x20u /* on by default, as Hyper-V's "Backup (volume shadow copy)" */
#define IC_SVC_DEFAULT   (IC_SVC_SHUTDOWN | IC_SVC_HEARTBEAT | IC_SVC_TIMESYNC | IC_SVC_KVP | IC_SVC_VSS)

/* The settings-only class (no devices): its items are uint32_t masks of IC_SVC_*. */
extern const struct vmdev_class ic_settings_class;

/* Whether service bit is on given ic_settings_class's n items: the union of the items, or
 * IC_SVC_DEFAULT when there are none. */
bool ic_settings_enabled(void *const *cfgs, unsigned n, uint32_t bit);

/* ---- one IC device on a VMBus ---- */

/* Periods and waits; the defaults are what the services document. Unit tests shorten them. */
struct ic_tunables {
	uint32_t heartbeat_ms; /* 2000, as Hyper-V (Linux's hv_util.c: "every two seconds") */
	uint32_t lost_beats;   /* 3: missed answers in a row before the heartbeat counts as lost */
	uint32_t timesync_ms;  /* 5000, as Hyper-V samples */
	uint32_t kvp_ms;       /* 30000: how often the guest's KVP values are read again */
	uint32_t verb_wait_ms; /* 2000: how long a control verb waits for the guest's answer (hv_utils
				* answers from its channel callback at once; the control socket serves
				* one command at a time, so the wait stays short) */
};
extern struct ic_tunables ic_tunables;

struct ic_dev;

/* The service's side. Every hook runs with the device lock held: reply and ready on the channel's
 * service thread, tick on it too (the timer), closed on whatever thread closes the channel. */
struct ic_dev_ops {
	void (*ready)(struct ic_dev *d);                           /* versions agreed */
	void (*reply)(struct ic_dev *d, const struct ic_reply *r); /* an answer to a request */
	void (*tick)(struct ic_dev *d);                            /* the timer fired */
	void (*closed)(struct ic_dev *d);                          /* the channel closed */
};

struct ic_dev {
	const struct ic_service_def *def;
	const struct ic_dev_ops *ops;
	void *svc; /* the service's state */
	struct vmdev_host host;
	struct vmbus_device *vdev;
	/* Guards everything below; verbs take it too. Never held while taking the server lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every answer and state change (verbs wait on it) */
	struct vmbus_channel *chan;
	struct ic_session s;
	int timerfd;
	bool watched;
	uint8_t *rx;
	uint32_t rx_cap;
};

/* Offers the device (class GUID class_guid, instance instance) for service def. Returns 0 or
 * -errno with err. */
int ic_dev_create(struct ic_dev **out, const struct vmdev_host *h, const struct ic_service_def *def,
		  const char *class_guid, struct vmbus_guid instance, const struct ic_dev_ops *ops, void *svc,
		  char *err, size_t errlen);
/* Hot-removes it (the channel closes: ops->closed runs) and frees it. NULL is fine. */
void ic_dev_destroy(struct ic_dev *d);

/* With the lock held: sends a service request with body. Returns 0 and the transaction id in
 * *trans (may be NULL), -ENOTCONN when the session is not ready, -EAGAIN when the guest's ring is
 * full, or another -errno. */
int ic_dev_send(struct ic_dev *d, const void *body, uint32_t len, uint64_t *trans);

/* With the lock held: arms the timer to fire after first_ms and then every interval_ms (0: once);
 * first_ms 0 disarms it. The timer is watched only while the channel is open. 0 or -errno. */
int ic_dev_timer_set(struct ic_dev *d, uint32_t first_ms, uint32_t interval_ms);

/* With the lock held: waits on d->cond until deadline_ns (CLOCK_MONOTONIC). False on timeout. */
bool ic_dev_wait(struct ic_dev *d, uint64_t deadline_ns);

/* ---- a service class's glue (create/destroy for struct vmdev_class) ---- */

/* What a service file tells ic_service_create. The service's state (size bytes, allocated zeroed)
 * begins with its struct ic_dev * (NULL when the service is not offered). */
struct ic_service_class {
	const char *what;       /* "the heartbeat integration service" (messages) */
	uint32_t bit;           /* IC_SVC_*: offered when the settings enable it */
	const char *class_guid; /* IC_*_CLASS_GUID_TEXT */
	uint32_t instance;      /* the first field of its instance GUID (0x7e5703NN), fixed per service */
	const struct ic_dev_ops *ops;
	size_t size;
	/* Optional: fills the fresh state before the device is offered; stop (its own threads) runs
	 * before the device goes, fini after. */
	void (*init)(void *svc, const struct vmdev_host *host);
	void (*stop)(void *svc);
	void (*fini)(void *svc);
};

/* A vmdev_class.create for service c speaking def: the state, and the device when offered. */
int ic_service_create(const struct ic_service_class *c, const struct ic_service_def *def,
		      const struct vmdev_host *host, void *const *cfgs, unsigned n, void **state, char *err,
		      size_t errlen);
/* Its vmdev_class.destroy (NULL is fine). */
void ic_service_destroy(const struct ic_service_class *c, void *state);

/* ---- services' pure parts (for tests) ---- */

/* The TIMESYNC body for service version v (4.0: struct ic_timesync_v4 with reftime; older:
 * struct ic_timesync_v3) into buf (>= 32 bytes); returns its length. */
uint32_t ic_timesync_body(struct ic_version v, uint64_t parenttime, uint64_t reftime, uint8_t flags, void *buf);

/* KVP strings (ic_kvp.c). UTF-8 text (len bytes, no NUL) to UTF-16LE with a NUL unit into out
 * (cap bytes); returns the byte count with the NUL (the wire's key_size/value_size), or -EINVAL
 * for invalid UTF-8 (overlong, surrogates, beyond U+10FFFF) or an embedded NUL, -E2BIG when it
 * does not fit cap or its UTF-8 form with a NUL exceeds utf8_max (the guest's daemon keeps UTF-8
 * records of 512 / 2048 bytes). */
int ic_kvp_utf16_encode(const char *s, size_t len, uint8_t *out, size_t cap, size_t utf8_max);
/* A guest's UTF-16LE string of size bytes (from an answer, size not yet trusted, buffer cap
 * bytes) to NUL-terminated UTF-8 in out (outcap >= 3 * cap / 2 + 1 always suffices). Returns its
 * length, or -EPROTO with *why: size odd, 0 or beyond cap, no NUL unit last, a NUL inside, an
 * unpaired surrogate. */
int ic_kvp_utf16_decode(const uint8_t *in, uint32_t size, size_t cap, char *out, size_t outcap, const char **why);

#endif
