"""The real client: Debian's stock cloud kernel, unmodified, booted by `gen2vm run` on this machine.

Each boot costs minutes here (guest kernel mode is emulated instruction by instruction), so the
checks share few boots: one 2-vCPU boot to init that also exercises VMBus (load, enumerate, unload,
reload), and one boot that panics on purpose.
"""
import os
import re

import pytest

from conftest import have_kvm, run_vm
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs, symbol_for

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")

BOOT_TIMEOUT = 900
# Guest-side choices that save minutes of emulated kernel-mode work here (the kernel is unchanged):
# no zeroing of every allocated page, no crypto self-tests, no retpoline thunks.
CMDLINE = "console=ttyS0 panic=-1 quiet init_on_alloc=0 cryptomgr.notests mitigations=off"


@pytest.fixture(scope="module")
def kernel():
    return fetch_kernel()


def boot(tmp_path, kernel, init, modules=(), cpus=1, extra=(), memory="256M"):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + init, kernel["modules"], modules)
    log = tmp_path / "com1.log"
    rc, out, err = run_vm(["run", "--kernel", kernel["vmlinuz"], "--initrd", initrd, "--cmdline", CMDLINE,
                           "--memory", memory, "--cpus", str(cpus), "--com1", "file:" + str(log), "--stats"]
                          + list(extra), timeout=BOOT_TIMEOUT)
    console = log.read_text(errors="replace") if log.exists() else ""
    # If an instruction blocked the boot, say which one and where (RIP -> System.map symbol).
    m = re.search(r"cannot complete instruction: RIP=(0x[0-9a-f]+) bytes ([0-9a-f ]+)", err)
    if m:
        pytest.fail("boot blocked by an instruction gen2vm cannot complete: RIP=%s (%s) bytes %s\n%s" % (
            m.group(1), symbol_for(kernel["system_map"], m.group(1)), m.group(2), err[-2000:]))
    return rc, console, err


LOAD_MODULES = 'for m in $(cat /modules/order); do insmod /modules/$m || echo "INSMOD-FAILED $m"; done\n'

VMBUS_INIT = """
echo "GEN2VM-MARKER cpus=$(grep -c ^processor /proc/cpuinfo) online=$(cat /sys/devices/system/cpu/online)"
""" + LOAD_MODULES + """
sleep 1
for d in /sys/bus/vmbus/devices/*; do echo "VMBUS-DEVICE $(cat $d/class_id)"; done
rmmod hv_vmbus && echo "VMBUS-UNLOADED"
""" + LOAD_MODULES + """
sleep 1
for d in /sys/bus/vmbus/devices/*; do echo "VMBUS-DEVICE-AGAIN $(cat $d/class_id)"; done
echo "DMESG-BEGIN"; dmesg | grep -iE "hyper-v|hyperv|vmbus|clocksource|sched_clock"; echo "DMESG-END"
poweroff -f
"""


def test_debian_kernel_boots_smp_and_enumerates_vmbus(tmp_path, kernel):
    rc, console, err = boot(tmp_path, kernel, VMBUS_INIT, modules=["hv_vmbus"], cpus=2,
                            extra=["--test-devices"])
    assert "GEN2VM-MARKER cpus=2 online=0-1" in console, console[-3000:] + err[-2000:]
    assert rc == 0, err[-2000:]
    # Issue 3: Hyper-V detected, its clocksource registered, VMBus 5.x negotiated, the echo device
    # enumerated with its class GUID, and hv_vmbus unloaded (UNLOAD) and loaded again (reconnect).
    dmesg = console[console.index("DMESG-BEGIN"):]
    assert "Hypervisor detected: Microsoft Hyper-V" in console
    assert "hyperv_clocksource_tsc_page" in dmesg, dmesg
    assert re.search(r"Vmbus version:5\.[0-3]", dmesg), dmesg
    assert "VMBUS-DEVICE {2f9bcc4a-0069-4af3-b76b-6fd0be528cda}" in console, console[-3000:]
    assert "VMBUS-UNLOADED" in console
    assert "VMBUS-DEVICE-AGAIN {2f9bcc4a-0069-4af3-b76b-6fd0be528cda}" in console, console[-3000:]
    assert "INSMOD-FAILED" not in console


def test_guest_panic_is_reported_as_a_crash(tmp_path, kernel):
    init = LOAD_MODULES + "echo PANICKING-NOW\necho c > /proc/sysrq-trigger\nsleep 60\n"
    rc, console, err = boot(tmp_path, kernel, init, modules=["hv_vmbus"])
    assert "PANICKING-NOW" in console, console[-3000:]
    assert rc == 4, err[-2000:]
    assert "guest crashed: P0=0x" in err, err[-2000:]
    # Linux writes the panic message through the crash MSRs (P3 = GPA, P4 = length).
    assert "sysrq" in err.lower() or "Kernel panic" in err, err[-3000:]
