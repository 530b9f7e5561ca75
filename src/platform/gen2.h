/* The generation 2 machine: what devices it has and how a VM of it is put together and run.
 *
 * Devices (README "The machine"): in-kernel local APICs, a userspace I/O APIC, the ACPI
 * power-management ports of a hardware-reduced FADT (sleep control/status, reset), the Hyper-V
 * synthetic interface (CPUID leaves, MSRs, hypercall port), optionally COM1 (16550) and a debug
 * console port for test guests. No PIC, PIT, i8042, HPET, PCI or legacy video.
 */
#ifndef GEN2VM_PLATFORM_GEN2_H
#define GEN2VM_PLATFORM_GEN2_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/vmdev.h"
#include "ui/console.h"
#include "ui/vnc.h"

struct gen2_config {
	uint64_t memory;   /* bytes */
	unsigned cpus;
	const char *kernel;   /* Linux direct boot */
	const char *initrd;
	const char *cmdline;
	const char *elf;      /* a freestanding test guest entered in 64-bit mode (instead of a kernel) */
	/* Neither kernel nor elf: UEFI boot through the firmware (built-in, or this file). */
	const char *firmware;
	const char *efi;      /* an EFI image the firmware starts from memory (with initrd and cmdline) */
	const char *nvram;    /* UEFI variables persist in this file (src/platform/nvram.h), or NULL */
	bool has_uuid;        /* the SMBIOS system UUID is uuid (--uuid); else a random one per run */
	uint8_t uuid[16];     /* in SMBIOS byte order */
	struct console_spec com1;
	const char *com1_attach; /* a Unix socket where clients attach to COM1 (--com1-attach), or NULL */
	struct console_spec debugcon;
	struct vnc_config vnc; /* --vnc, --vnc-password-file, --web-console (validated) */
	bool processor_compat; /* Hyper-V's processor compatibility mode: a conservative CPUID */
	unsigned clock_slowdown; /* 0/1: real time; N: the guest's clocks run N times slower (see --help) */
	struct synthvid_screen_size video; /* the screen (--video); 0x0: the default 1024x768 */
	int64_t clock_offset_s;  /* the VM's wall clock minus host UTC at start (--clock-offset) */
	bool no_reboot;        /* a guest reset ends the process (exit code 3) instead of restarting */
	bool sigterm_turn_off; /* SIGTERM turns the VM off at once, instead of asking the guest to shut down */
	unsigned sigterm_timeout; /* seconds a guest asked by SIGTERM gets before it is turned off; 0: 60 */
	bool stats;            /* print exit counts and timings when the VM ends */
	const char *control;   /* control socket path (gen2vm control PATH COMMAND...), or NULL */
	bool log_unclaimed;    /* log accesses no device claims */
	uint64_t start_ns;     /* process start, for the boot benchmark */
	struct vmdev_config devices; /* the VMBus devices' settings, validated (src/devices/vmdev.h) */
	/* A saved state to resume from instead of booting (--restore), or NULL. */
	const char *restore;
	/* What identifies the machine's configuration (the command line and the --config document it
	 * read): a state saved by `save` carries it, and a restore with other bytes is refused. */
	const uint8_t *identity;
	size_t identity_len;
};

/* Builds and runs the VM until it ends. Returns an enum vm_exit_kind (>= 0), 128 + the signal when
 * gen2_stop_request stopped it, or -errno for a configuration problem (message already printed). */
int gen2_run(const struct gen2_config *cfg);

/* Stops the running VM (or the one being set up, before it starts) as if it were turned off, and
 * makes gen2_run return 128 + sig after its teardown. The first SIGTERM instead asks the guest to shut
 * down through its shutdown service, when it has one connected (unless sigterm_turn_off), turning it
 * off if it still runs after sigterm_timeout; a second signal turns it off at once. Thread-safe; for
 * the thread that takes SIGINT/SIGTERM/SIGHUP. */
void gen2_stop_request(int sig);

#endif
