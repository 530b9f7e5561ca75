/* Events, timers and task priority levels (UEFI 2.10 7.1). There are no interrupts: timers are
 * checked by fw_event_poll(), which every waiting service and RestoreTPL calls. Notify functions
 * are queued per TPL and run, highest TPL first and in signal order within a TPL, whenever the
 * current TPL drops below theirs. */
#include "fw.h"

#include "gen2vm/proto/hv.h"

#define EVENT_MAGIC 0x544e5645u /* "EVNT" */
#define TPL_LEVELS 32

struct fw_event {
	uint32_t magic;
	uint32_t type;
	EFI_TPL tpl;
	EFI_EVENT_NOTIFY notify;
	void *ctx;
	EFI_GUID group;
	bool has_group;
	bool signaled;
	bool queued;
	bool armed;
	uint64_t trigger, period; /* 100 ns */
	struct fw_event *next;    /* all events of its list (boot-time or runtime) */
	struct fw_event *qnext;   /* notify queue of its TPL */
};

/* Two lists: events in boot-services pool die with ExitBootServices; EVT_RUNTIME ones live in
 * runtime memory and are the only ones walked afterwards (virtual address change). */
static struct fw_event *events, *rt_events;
static struct fw_event *qhead[TPL_LEVELS], *qtail[TPL_LEVELS];
static uint32_t pending; /* bit n: queue n not empty */
static uint64_t next_deadline = UINT64_MAX;
static uint64_t tsc_scale; /* 2^64 * 1e7 / TSC Hz; 0: use the reference counter MSR */

/* ---- time ---- */

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static void cpuid(uint32_t leaf, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

/* An MSR read is a VM exit (about 11 us here); RDTSC is one instruction. So the TSC frequency is
 * fetched once (hand-off block, else the Hyper-V frequency MSR) and the TSC is scaled after. */
static void time_init(void)
{
	uint64_t hz = fw.ho->tsc_hz;
	uint32_t r[4];
	cpuid(HV_CPUID_VENDOR_AND_MAX, r);
	bool hv = r[1] == HV_CPUID_SIGNATURE_EBX && r[2] == HV_CPUID_SIGNATURE_ECX && r[3] == HV_CPUID_SIGNATURE_EDX &&
		  r[0] >= HV_CPUID_FEATURES;
	if (!hz && hv) {
		cpuid(HV_CPUID_FEATURES, r);
		if (r[0] & HV_FEAT_FREQUENCY_MSRS)
			hz = rdmsr(HV_MSR_TSC_FREQUENCY);
	}
	if (hz >= 1000000)
		tsc_scale = (uint64_t)(((unsigned __int128)10000000u << 64) / hz);
}

uint64_t fw_time_100ns(void)
{
	if (tsc_scale)
		return (uint64_t)(((unsigned __int128)rdtsc() * tsc_scale) >> 64);
	return rdmsr(HV_MSR_TIME_REF_COUNT);
}

/* ---- queues ---- */

static struct fw_event *lookup(EFI_EVENT e)
{
	struct fw_event *ev = e;
	if (!ev)
		return NULL;
	for (struct fw_event *p = fw.boot_services_done ? NULL : events; p; p = p->next)
		if (p == ev)
			return ev;
	for (struct fw_event *p = rt_events; p; p = p->next)
		if (p == ev)
			return ev;
	return NULL;
}

static void enqueue(struct fw_event *e)
{
	if (e->queued)
		return;
	e->queued = true;
	e->qnext = NULL;
	if (qtail[e->tpl])
		qtail[e->tpl]->qnext = e;
	else
		qhead[e->tpl] = e;
	qtail[e->tpl] = e;
	pending |= 1u << e->tpl;
}

static void dequeue(struct fw_event *e)
{
	if (!e->queued)
		return;
	struct fw_event **pp = &qhead[e->tpl], *prev = NULL;
	while (*pp && *pp != e) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (*pp)
		*pp = e->qnext;
	if (qtail[e->tpl] == e)
		qtail[e->tpl] = prev;
	if (!qhead[e->tpl])
		pending &= ~(1u << e->tpl);
	e->queued = false;
}

/* Runs queued notify functions above floor, highest TPL first, each at its own TPL. Leaves fw.tpl
 * at the level of the last one run: the caller restores it. */
static void dispatch(EFI_TPL floor)
{
	for (;;) {
		uint32_t above = pending & ~((2u << floor) - 1);
		if (!above)
			return;
		EFI_TPL level = 31 - (EFI_TPL)__builtin_clz(above);
		struct fw_event *e = qhead[level];
		dequeue(e);
		fw.tpl = level;
		if (e->type & EVT_NOTIFY_SIGNAL)
			e->signaled = false; /* a signal event is consumed by its notification */
		e->notify(e, e->ctx);
	}
}

static void dispatch_now(void)
{
	EFI_TPL cur = fw.tpl;
	if (cur < TPL_HIGH_LEVEL && (pending >> (cur + 1))) {
		dispatch(cur);
		fw.tpl = cur;
	}
}

static void signal_one(struct fw_event *e)
{
	if (e->signaled)
		return;
	e->signaled = true;
	if (e->type & EVT_NOTIFY_SIGNAL)
		enqueue(e);
}

static void signal_group(const EFI_GUID *g)
{
	for (struct fw_event *p = fw.boot_services_done ? NULL : events; p; p = p->next)
		if (p->has_group && efi_guid_eq(&p->group, g))
			signal_one(p);
	for (struct fw_event *p = rt_events; p; p = p->next)
		if (p->has_group && efi_guid_eq(&p->group, g))
			signal_one(p);
}

EFI_STATUS fw_event_signal(EFI_EVENT event)
{
	struct fw_event *e = lookup(event);
	if (!e)
		return EFI_INVALID_PARAMETER;
	if (e->has_group)
		signal_group(&e->group);
	else
		signal_one(e);
	dispatch_now();
	return EFI_SUCCESS;
}

void fw_event_signal_group(const EFI_GUID *group)
{
	signal_group(group);
	dispatch_now();
}

void fw_event_signal_group_now(const EFI_GUID *group)
{
	signal_group(group);
	EFI_TPL cur = fw.tpl;
	dispatch(0);
	fw.tpl = cur;
}

/* ---- timers ---- */

static void recompute_deadline(void)
{
	uint64_t d = UINT64_MAX;
	for (struct fw_event *p = events; p; p = p->next)
		if (p->armed && p->trigger < d)
			d = p->trigger;
	for (struct fw_event *p = rt_events; p; p = p->next)
		if (p->armed && p->trigger < d)
			d = p->trigger;
	next_deadline = d;
}

static uint64_t last_watchdog_check;

void fw_event_poll(void)
{
	if (fw.boot_services_done)
		return;
	uint64_t now = fw_time_100ns();
	if (now - last_watchdog_check >= 10000000u) { /* once a second is plenty */
		last_watchdog_check = now;
		fw_bs_watchdog_check(now);
	}
	if (now < next_deadline)
		return;
	for (int pass = 0; pass < 2; pass++) {
		for (struct fw_event *p = pass ? rt_events : events; p; p = p->next) {
			if (!p->armed || p->trigger > now)
				continue;
			if (p->period) {
				/* Skip missed periods rather than firing a burst. */
				uint64_t late = now - p->trigger;
				p->trigger += (late / p->period + 1) * p->period;
			} else {
				p->armed = false;
			}
			signal_one(p);
		}
	}
	recompute_deadline();
	dispatch_now();
}

static EFI_STATUS EFIAPI ev_set_timer(EFI_EVENT event, EFI_TIMER_DELAY type, uint64_t time)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	struct fw_event *e = lookup(event);
	if (!e || !(e->type & EVT_TIMER) || (unsigned)type > TimerRelative)
		return EFI_INVALID_PARAMETER;
	e->armed = false;
	if (type != TimerCancel) {
		/* 0 means "the next tick": the next poll. A periodic timer of 0 ticks once per poll. */
		uint64_t now = fw_time_100ns();
		e->trigger = time > UINT64_MAX - now ? UINT64_MAX : now + time;
		e->period = type == TimerPeriodic ? (time ? time : 1) : 0;
		e->armed = true;
	}
	recompute_deadline();
	return EFI_SUCCESS;
}

/* ---- services ---- */

static EFI_STATUS create(uint32_t type, EFI_TPL tpl, EFI_EVENT_NOTIFY fn, const void *ctx, const EFI_GUID *group,
			 EFI_EVENT *out)
{
	static const EFI_GUID ebs = EFI_EVENT_GROUP_EXIT_BOOT_SERVICES;
	static const EFI_GUID vac = EFI_EVENT_GROUP_VIRTUAL_ADDRESS_CHANGE;
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	if (!out)
		return EFI_INVALID_PARAMETER;
	const uint32_t known = EVT_TIMER | EVT_RUNTIME | EVT_NOTIFY_WAIT | EVT_NOTIFY_SIGNAL | 0x3u | 0x20000000u;
	if (type & ~known)
		return EFI_INVALID_PARAMETER;
	if (type == EVT_SIGNAL_EXIT_BOOT_SERVICES || type == EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE) {
		if (group)
			return EFI_INVALID_PARAMETER;
		group = type == EVT_SIGNAL_EXIT_BOOT_SERVICES ? &ebs : &vac;
	} else if (type & 0x20000003u) {
		return EFI_INVALID_PARAMETER; /* those bits only come with the two types above */
	}
	bool wait = type & EVT_NOTIFY_WAIT, sig = type & EVT_NOTIFY_SIGNAL;
	if (wait && sig)
		return EFI_INVALID_PARAMETER;
	if (wait || sig) {
		/* A notification at or below TPL_APPLICATION could never run. */
		if (!fn || tpl <= TPL_APPLICATION || tpl > TPL_HIGH_LEVEL)
			return EFI_INVALID_PARAMETER;
	}
	struct fw_event *e = NULL;
	bool rt = type & EVT_RUNTIME;
	if (EFI_ERROR(efi_mem_allocate_pool(&fw.mem, rt ? EfiRuntimeServicesData : EfiBootServicesData, sizeof(*e),
					    (void **)&e)))
		return EFI_OUT_OF_RESOURCES;
	efi_memset(e, 0, sizeof(*e));
	e->magic = EVENT_MAGIC;
	e->type = type;
	e->tpl = (wait || sig) ? tpl : TPL_APPLICATION;
	e->notify = (wait || sig) ? fn : NULL;
	e->ctx = (void *)ctx;
	if (group) {
		e->group = *group;
		e->has_group = true;
	}
	struct fw_event **list = rt ? &rt_events : &events;
	struct fw_event **pp = list;
	while (*pp) /* creation order: group members are notified in it */
		pp = &(*pp)->next;
	*pp = e;
	*out = e;
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI ev_create(uint32_t type, EFI_TPL tpl, EFI_EVENT_NOTIFY fn, void *ctx, EFI_EVENT *out)
{
	return create(type, tpl, fn, ctx, NULL, out);
}

static EFI_STATUS EFIAPI ev_create_ex(uint32_t type, EFI_TPL tpl, EFI_EVENT_NOTIFY fn, const void *ctx,
				      const EFI_GUID *group, EFI_EVENT *out)
{
	return create(type, tpl, fn, ctx, group, out);
}

static EFI_STATUS EFIAPI ev_close(EFI_EVENT event)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	struct fw_event *e = lookup(event);
	if (!e)
		return EFI_INVALID_PARAMETER;
	dequeue(e);
	struct fw_event **pp = (e->type & EVT_RUNTIME) ? &rt_events : &events;
	while (*pp && *pp != e)
		pp = &(*pp)->next;
	if (*pp)
		*pp = e->next;
	bool armed = e->armed;
	e->magic = 0;
	efi_mem_free_pool(&fw.mem, e);
	if (armed)
		recompute_deadline();
	return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI ev_signal(EFI_EVENT event)
{
	return fw_event_signal(event);
}

static EFI_STATUS check(struct fw_event *e)
{
	if (e->type & EVT_NOTIFY_SIGNAL)
		return EFI_INVALID_PARAMETER;
	if (!e->signaled && (e->type & EVT_NOTIFY_WAIT)) {
		/* A wait event's notify function is how it learns that it should be signalled. */
		enqueue(e);
		dispatch_now();
	}
	if (e->signaled) {
		e->signaled = false;
		return EFI_SUCCESS;
	}
	return EFI_NOT_READY;
}

static EFI_STATUS EFIAPI ev_check(EFI_EVENT event)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	struct fw_event *e = lookup(event);
	if (!e)
		return EFI_INVALID_PARAMETER;
	fw_event_poll();
	return check(e);
}

static EFI_STATUS EFIAPI ev_wait(UINTN n, EFI_EVENT *list, UINTN *index)
{
	if (fw.boot_services_done)
		return EFI_UNSUPPORTED;
	if (!n || !list || !index)
		return EFI_INVALID_PARAMETER;
	if (fw.tpl != TPL_APPLICATION)
		return EFI_UNSUPPORTED;
	for (;;) {
		fw_event_poll();
		for (UINTN i = 0; i < n; i++) {
			struct fw_event *e = lookup(list[i]);
			EFI_STATUS s = e ? check(e) : EFI_INVALID_PARAMETER;
			if (s != EFI_NOT_READY) {
				*index = i;
				return s;
			}
		}
		__asm__ volatile("pause");
	}
}

static EFI_TPL EFIAPI ev_raise_tpl(EFI_TPL tpl)
{
	EFI_TPL old = fw.tpl;
	if (tpl > old && tpl <= TPL_HIGH_LEVEL)
		fw.tpl = tpl;
	return old;
}

static void EFIAPI ev_restore_tpl(EFI_TPL tpl)
{
	if (tpl > TPL_HIGH_LEVEL)
		return;
	if (tpl >= fw.tpl) {
		fw.tpl = tpl; /* raising through RestoreTPL is the caller's bug; do what it asked */
		return;
	}
	/* Timers that expired while the TPL was raised fire now ("interrupts" back on); their
	 * notifications queue at the raised TPL and run below, in order. */
	if (tpl < TPL_HIGH_LEVEL)
		fw_event_poll();
	dispatch(tpl);
	fw.tpl = tpl;
}

void fw_event_init(EFI_BOOT_SERVICES *bs)
{
	time_init();
	bs->RaiseTPL = ev_raise_tpl;
	bs->RestoreTPL = ev_restore_tpl;
	bs->CreateEvent = ev_create;
	bs->CreateEventEx = ev_create_ex;
	bs->SetTimer = ev_set_timer;
	bs->WaitForEvent = ev_wait;
	bs->SignalEvent = ev_signal;
	bs->CloseEvent = ev_close;
	bs->CheckEvent = ev_check;
}
