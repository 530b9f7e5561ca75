/* The firmware's events, timers and TPL rules (firmware/event.c), compiled for the host: notify
 * order by TPL then signal order, event groups, wait events, polled timers, type validation, and
 * runtime events surviving ExitBootServices. Time is the host's TSC with a stated frequency. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../firmware/event.c"

struct fw_state fw;
static struct fw_handoff ho;
static EFI_BOOT_SERVICES bs;
static uint8_t *ram;
static int watchdog_checks;

void fw_bs_watchdog_check(uint64_t now)
{
	watchdog_checks++;
}

static int setup(void **state)
{
	memset(&fw, 0, sizeof(fw));
	events = rt_events = NULL;
	memset(qhead, 0, sizeof(qhead));
	memset(qtail, 0, sizeof(qtail));
	pending = 0;
	next_deadline = UINT64_MAX;
	ho.tsc_hz = 1000000000; /* the real TSC runs faster: timers only fire earlier, never later */
	fw.ho = &ho;
	fw.tpl = TPL_APPLICATION;
	assert_int_equal(posix_memalign((void **)&ram, 4096, 64 * 4096), 0);
	efi_mem_init(&fw.mem);
	assert_int_equal(efi_mem_add(&fw.mem, (uint64_t)(uintptr_t)ram, 64, EfiConventionalMemory, 0), EFI_SUCCESS);
	fw_event_init(&bs);
	return 0;
}

static int teardown(void **state)
{
	free(ram);
	return 0;
}

static char order[32];
static unsigned norder;
static void EFIAPI record(EFI_EVENT e, void *ctx)
{
	order[norder++] = *(const char *)ctx;
	order[norder] = 0;
}

static void EFIAPI count(EFI_EVENT e, void *ctx)
{
	(*(int *)ctx)++;
}

static void notify_order_is_tpl_then_signal_order(void **state)
{
	static const char A = 'A', B = 'B', C = 'C', D = 'D';
	EFI_EVENT a, b, c, d;
	norder = 0;
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record, (void *)&A, &a), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_NOTIFY, record, (void *)&B, &b), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record, (void *)&C, &c), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_HIGH_LEVEL, record, (void *)&D, &d), EFI_SUCCESS);
	assert_int_equal(bs.RaiseTPL(TPL_HIGH_LEVEL), TPL_APPLICATION);
	bs.SignalEvent(c);
	bs.SignalEvent(a);
	bs.SignalEvent(b);
	bs.SignalEvent(d);
	bs.SignalEvent(a); /* already signalled: no second notification */
	assert_int_equal(norder, 0);
	bs.RestoreTPL(TPL_NOTIFY);
	assert_string_equal(order, "D");
	bs.RestoreTPL(TPL_APPLICATION);
	assert_string_equal(order, "DBCA");
	assert_int_equal(fw.tpl, TPL_APPLICATION);
	/* At TPL_APPLICATION a signal notifies before SignalEvent returns; at its own TPL it waits. */
	bs.SignalEvent(a);
	assert_string_equal(order, "DBCAA");
	bs.RaiseTPL(TPL_CALLBACK);
	bs.SignalEvent(a);
	assert_string_equal(order, "DBCAA");
	bs.RestoreTPL(TPL_APPLICATION);
	assert_string_equal(order, "DBCAAA");
	/* A notification is consumed: CheckEvent refuses signal events anyway. */
	assert_int_equal(bs.CheckEvent(a), EFI_INVALID_PARAMETER);
}

static void raise_and_restore_rules(void **state)
{
	assert_int_equal(bs.RaiseTPL(TPL_NOTIFY), TPL_APPLICATION);
	assert_int_equal(bs.RaiseTPL(TPL_CALLBACK), TPL_NOTIFY); /* lowering through RaiseTPL is ignored */
	assert_int_equal(fw.tpl, TPL_NOTIFY);
	bs.RestoreTPL(TPL_APPLICATION);
	assert_int_equal(fw.tpl, TPL_APPLICATION);
	bs.RestoreTPL(40); /* above TPL_HIGH_LEVEL: ignored */
	assert_int_equal(fw.tpl, TPL_APPLICATION);
}

static void groups_signal_every_member_in_creation_order(void **state)
{
	static const EFI_GUID g = EFI_GUID_INIT(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
	static const EFI_GUID ebs = EFI_EVENT_GROUP_EXIT_BOOT_SERVICES;
	static const char A = 'a', B = 'b', E = 'e', F = 'f';
	EFI_EVENT a, b, e, f;
	norder = 0;
	order[0] = 0;
	assert_int_equal(bs.CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record, &A, &g, &a), EFI_SUCCESS);
	assert_int_equal(bs.CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record, &B, &g, &b), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(EVT_SIGNAL_EXIT_BOOT_SERVICES, TPL_NOTIFY, record, (void *)&E, &e), EFI_SUCCESS);
	assert_int_equal(bs.CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, record, &F, &ebs, &f), EFI_SUCCESS);
	bs.SignalEvent(b);
	assert_string_equal(order, "ab");
	fw_event_signal_group(&g);
	assert_string_equal(order, "abab");
	/* ExitBootServices' group runs whatever the TPL: there is no later RestoreTPL to wait for. */
	bs.RaiseTPL(TPL_HIGH_LEVEL);
	fw_event_signal_group_now(&ebs);
	assert_string_equal(order, "ababef");
	assert_int_equal(fw.tpl, TPL_HIGH_LEVEL);
	bs.RestoreTPL(TPL_APPLICATION);
	assert_int_equal(bs.CreateEventEx(EVT_SIGNAL_EXIT_BOOT_SERVICES, TPL_NOTIFY, record, &E, &g, &e),
			 EFI_INVALID_PARAMETER);
}

static void EFIAPI wait_notify(EFI_EVENT e, void *ctx)
{
	if (++*(int *)ctx == 3)
		fw_event_signal(e);
}

static void wait_events_ask_their_notify_function(void **state)
{
	EFI_EVENT w, plain;
	int calls = 0;
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_WAIT, TPL_NOTIFY, wait_notify, &calls, &w), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(0, 0, NULL, NULL, &plain), EFI_SUCCESS);
	UINTN idx = 7;
	EFI_EVENT list[2] = { plain, w };
	assert_int_equal(bs.WaitForEvent(2, list, &idx), EFI_SUCCESS);
	assert_int_equal(idx, 1);
	assert_int_equal(calls, 3);
	assert_int_equal(bs.CheckEvent(plain), EFI_NOT_READY);
	bs.SignalEvent(plain);
	assert_int_equal(bs.CheckEvent(plain), EFI_SUCCESS);
	assert_int_equal(bs.CheckEvent(plain), EFI_NOT_READY);
	bs.RaiseTPL(TPL_CALLBACK);
	assert_int_equal(bs.WaitForEvent(1, &plain, &idx), EFI_UNSUPPORTED);
	bs.RestoreTPL(TPL_APPLICATION);
	assert_int_equal(bs.WaitForEvent(0, list, &idx), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CloseEvent(w), EFI_SUCCESS);
	assert_int_equal(bs.CheckEvent(w), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CloseEvent(w), EFI_INVALID_PARAMETER);
}

static void timers_fire_when_polled(void **state)
{
	EFI_EVENT t, p;
	int ticks = 0;
	assert_int_equal(bs.CreateEvent(EVT_TIMER, 0, NULL, NULL, &t), EFI_SUCCESS);
	assert_int_equal(bs.CreateEvent(EVT_TIMER | EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count, &ticks, &p), EFI_SUCCESS);
	assert_int_equal(bs.SetTimer(t, TimerRelative, 0), EFI_SUCCESS); /* the next tick */
	assert_int_equal(bs.CheckEvent(t), EFI_SUCCESS);
	assert_int_equal(bs.CheckEvent(t), EFI_NOT_READY); /* relative timers fire once */
	assert_int_equal(bs.SetTimer(t, TimerRelative, 100000000000ull), EFI_SUCCESS);
	assert_int_equal(bs.CheckEvent(t), EFI_NOT_READY);
	assert_int_equal(bs.SetTimer(t, TimerCancel, 0), EFI_SUCCESS);
	/* A periodic timer fires again and again; raised TPL holds its notifications back. */
	assert_int_equal(bs.SetTimer(p, TimerPeriodic, 1), EFI_SUCCESS);
	fw_event_poll();
	fw_event_poll();
	assert_true(ticks >= 1);
	int before = ticks;
	bs.RaiseTPL(TPL_NOTIFY);
	for (volatile int i = 0; i < 100000; i++)
		;
	fw_event_poll();
	assert_int_equal(ticks, before);
	bs.RestoreTPL(TPL_APPLICATION);
	assert_int_equal(ticks, before + 1);
	assert_int_equal(bs.SetTimer(p, TimerCancel, 0), EFI_SUCCESS);
	fw_event_poll();
	assert_int_equal(ticks, before + 1);
	EFI_EVENT plain;
	assert_int_equal(bs.CreateEvent(0, 0, NULL, NULL, &plain), EFI_SUCCESS);
	assert_int_equal(bs.SetTimer(plain, TimerRelative, 1), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.SetTimer(t, (EFI_TIMER_DELAY)3, 1), EFI_INVALID_PARAMETER);
}

static void create_validates_types(void **state)
{
	EFI_EVENT e;
	int n;
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_WAIT | EVT_NOTIFY_SIGNAL, TPL_CALLBACK, count, &n, &e),
			 EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, NULL, &n, &e), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, TPL_APPLICATION, count, &n, &e), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(EVT_NOTIFY_SIGNAL, 32, count, &n, &e), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(0x1, 0, NULL, NULL, &e), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(0x00400000, 0, NULL, NULL, &e), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.CreateEvent(0, 0, NULL, NULL, NULL), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.SignalEvent(NULL), EFI_INVALID_PARAMETER);
	assert_int_equal(bs.SignalEvent((EFI_EVENT)&n), EFI_INVALID_PARAMETER);
}

static void runtime_events_outlive_exit_boot_services(void **state)
{
	static const EFI_GUID vac = EFI_EVENT_GROUP_VIRTUAL_ADDRESS_CHANGE;
	EFI_EVENT rt, boot;
	int rt_hits = 0, boot_hits = 0;
	assert_int_equal(bs.CreateEvent(EVT_SIGNAL_VIRTUAL_ADDRESS_CHANGE, TPL_NOTIFY, count, &rt_hits, &rt), EFI_SUCCESS);
	assert_int_equal(efi_mem_type_at(&fw.mem, (uint64_t)(uintptr_t)rt), EfiRuntimeServicesData);
	assert_int_equal(bs.CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_NOTIFY, count, &boot_hits, &vac, &boot), EFI_SUCCESS);
	assert_int_equal(efi_mem_type_at(&fw.mem, (uint64_t)(uintptr_t)boot), EfiBootServicesData);
	fw.boot_services_done = true;
	fw_event_signal_group_now(&vac);
	assert_int_equal(rt_hits, 1);
	assert_int_equal(boot_hits, 0); /* its memory may belong to the OS by now: never touched */
	EFI_EVENT e;
	assert_int_equal(bs.CreateEvent(0, 0, NULL, NULL, &e), EFI_UNSUPPORTED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(notify_order_is_tpl_then_signal_order, setup, teardown),
		cmocka_unit_test_setup_teardown(raise_and_restore_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(groups_signal_every_member_in_creation_order, setup, teardown),
		cmocka_unit_test_setup_teardown(wait_events_ask_their_notify_function, setup, teardown),
		cmocka_unit_test_setup_teardown(timers_fire_when_polled, setup, teardown),
		cmocka_unit_test_setup_teardown(create_validates_types, setup, teardown),
		cmocka_unit_test_setup_teardown(runtime_events_outlive_exit_boot_services, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
