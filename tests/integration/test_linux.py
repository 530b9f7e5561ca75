"""The real client: Debian's stock cloud kernel, unmodified, with its Hyper-V drivers and a busybox
userspace, booted by `gen2vm run`. These tests need a host whose KVM runs guest user mode: where it
cannot (nested PVM), `make check` runs them in the nested test host (tests/nested).

The checks share three VM runs:
- one 2-vCPU boot to userspace that checks the VMM core (2 CPUs online, power-off), the Hyper-V
  interface and VMBus (detection, clocksource, VMBus 5.x, offers with class GUIDs, unload and
  reload) and storvsp (ext4 disk written and read back by the host, ISO on the DVD, hot add and
  remove from the control socket, sub-channels in use);
- one 4-vCPU, 4 GiB boot (memory above the 32-bit gap) that restarts itself with `reboot -f` and
  powers off on its second boot;
- one boot that panics on purpose (crash MSRs -> exit code 4).
"""
import hashlib
import os
import re
import subprocess

import pytest

from conftest import VmProcess, have_kvm
from linux_guest import INIT_PRELUDE, make_initramfs, symbol_for

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"), pytest.mark.real_guest]

BOOT_TIMEOUT = 600
CMDLINE = "console=ttyS0 panic=-1 loglevel=7"
VM_ARGS = ["--memory", "512M"]
SCSI_CLASS = "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}"
ECHO_CLASS = "{67656e32-766d-4563-8000-0000000000e1}"

LOAD_MODULES = 'for m in $(cat /modules/order); do insmod /modules/$m || echo "INSMOD-FAILED $m"; done\n'


class Vm(VmProcess):
    """A direct-boot Linux VM with COM1 in a file, and a failure report naming a blocking instruction
    (RIP, bytes, System.map symbol)."""

    default_where = "out"

    def __init__(self, tmp_path, kernel, initrd, extra, reboot=False):
        self.kernel = kernel
        log, sock = str(tmp_path / "com1.log"), str(tmp_path / "vm.sock")
        super().__init__(["--kernel", kernel["vmlinuz"], "--initrd", initrd, "--cmdline", CMDLINE, "--com1",
                          "file:" + log, "--control", sock, "--stats"] + VM_ARGS + extra +
                         ([] if reboot else ["--no-reboot"]), consoles=(log,), sock=sock)

    def console(self):
        return self.out()

    def wait_for(self, pattern, timeout=BOOT_TIMEOUT, where=None):
        return super().wait_for(pattern, timeout, where)

    def finish(self, timeout=BOOT_TIMEOUT):
        rc = super().finish(timeout)
        self.blocked = None
        m = re.search(r"cannot complete instruction: RIP=(0x[0-9a-f]+) bytes ([0-9a-f ]+)", self.err)
        if m:
            self.blocked = "an instruction gen2vm cannot complete: RIP=%s (%s) bytes %s" % (
                m.group(1), symbol_for(self.kernel["system_map"], m.group(1)), m.group(2).strip())
        return rc

    def fail_if_blocked(self):
        if self.blocked:
            pytest.fail("boot blocked by " + self.blocked + "\n" + self.err[-2000:])


MAIN_INIT = r"""
echo "GEN2VM-MARKER cpus=$(grep -c ^processor /proc/cpuinfo) online=$(cat /sys/devices/system/cpu/online)"
""" + LOAD_MODULES + r"""
for i in $(seq 1 600); do [ -b /dev/sda ] && [ -b /dev/sr0 ] && break; sleep 0.1; done
for d in /sys/bus/vmbus/devices/*; do
  echo "VMBUS-DEVICE $(cat $d/class_id) channels=$(ls $d/channels 2>/dev/null | wc -l)"
done
mount -t ext4 /dev/sda /mnt && echo "MOUNTED-SDA"
echo "SDA-SUM $(sha256sum /mnt/payload.bin | cut -d' ' -f1)"
echo "written by the guest on gen2vm" > /mnt/from-guest.txt
dd if=/mnt/payload.bin of=/mnt/copy.bin bs=64k 2>/dev/null
sync
umount /mnt && echo "UMOUNTED-SDA"
mkdir -p /cdrom && mount -t iso9660 -o ro /dev/sr0 /cdrom && echo "MOUNTED-SR0"
echo "ISO-FILE $(cat /cdrom/hello.txt)"
umount /cdrom
echo "READY-FOR-HOTADD"
for i in $(seq 1 600); do [ -e /sys/class/block/sdb ] && break; sleep 0.1; done
[ -e /sys/class/block/sdb ] && echo "HOTADD-SEEN sdb $(cat /sys/class/block/sdb/size)"
ls /sys/class/block/sdb/device/scsi_device/ 2>/dev/null | sed 's/^/HOTADD-ADDR /'
echo "READY-FOR-HOTREMOVE"
for i in $(seq 1 600); do [ -e /sys/class/block/sdb ] || break; sleep 0.1; done
[ -e /sys/class/block/sdb ] || echo "HOTREMOVE-SEEN"
rmmod sr_mod sd_mod hv_storvsc
rmmod hv_vmbus && echo "VMBUS-UNLOADED"
insmod /modules/hv_vmbus.ko && echo "VMBUS-RELOADED"
for i in $(seq 1 100); do [ -n "$(ls /sys/bus/vmbus/devices 2>/dev/null)" ] && break; sleep 0.1; done
sleep 0.5
for d in /sys/bus/vmbus/devices/*; do echo "VMBUS-DEVICE-AGAIN $(cat $d/class_id)"; done
echo "DMESG-BEGIN"; dmesg | grep -iE "hyper-v|hyperv|vmbus|clocksource|sched_clock|rtc"; echo "DMESG-END"
poweroff -f
"""


def test_debian_kernel_on_gen2vm(tmp_path, kernel):
    """Issues: VMM core (boot, SMP, power-off), Hyper-V interface and VMBus, storvsp."""
    src = tmp_path / "rootfs"
    src.mkdir()
    payload = os.urandom(3 << 20)
    (src / "payload.bin").write_bytes(payload)
    disk = tmp_path / "disk.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(disk), "64M"], check=True)
    iso_src = tmp_path / "iso"
    iso_src.mkdir()
    (iso_src / "hello.txt").write_text("hello from the DVD\n")
    iso = tmp_path / "test.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(iso_src)], check=True,
                   capture_output=True)
    hot = tmp_path / "hot.img"
    hot.write_bytes(b"\0" * (16 << 20))
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + MAIN_INIT, kernel["modules"],
                   ["hv_vmbus", "hv_storvsc", "sd_mod", "sr_mod", "isofs"])

    vm = Vm(tmp_path, kernel, initrd, ["--cpus", "2", "--test-devices", "--disk", str(disk), "--dvd", str(iso)])
    added = removed = None
    if vm.wait_for("READY-FOR-HOTADD"):
        # LUN 0 is the disk, LUN 1 the DVD: the hot-added disk takes LUN 2.
        added = vm.control("disk-add", str(hot), "lun=2")
        if vm.wait_for("READY-FOR-HOTREMOVE", 120):
            removed = vm.control("disk-remove", "lun=2")
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()

    # The machine, its ACPI tables and the Hyper-V interface as Linux sees them.
    assert "Hypervisor detected: Microsoft Hyper-V" in console, console[-3000:] + err[-3000:]
    assert "clocksource: hyperv_clocksource_tsc_page" in console, console[-3000:]
    assert "Hyper-V: LAPIC Timer Frequency" in console
    assert re.search(r"ACPI: (RSDP|XSDT|FACP|APIC|DSDT) ", console), console[:3000]
    assert "IOAPIC[0]: apic_id 0" in console
    assert "smp: Brought up 1 node, 2 CPUs" in console, console[-3000:]
    # The CMOS RTC gives the guest its wall clock at boot (no "Unable to read current time").
    assert "Unable to read current time from RTC" not in console, console[-3000:]
    # The VMM core: Debian's kernel reached its userspace on 2 vCPUs and powered off through ACPI.
    assert "GEN2VM-MARKER cpus=2 online=0-1" in console, console[-3000:] + err[-3000:]
    assert "INSMOD-FAILED" not in console, console[-3000:]
    dmesg = console[console.find("DMESG-BEGIN"):]
    assert "hyperv_clocksource_tsc_page" in dmesg, dmesg
    assert re.search(r"Vmbus version:5\.[0-3]", dmesg), dmesg
    assert "VMBUS-DEVICE " + ECHO_CLASS in console, console[-3000:]
    assert "VMBUS-DEVICE " + SCSI_CLASS in console, console[-3000:]
    assert "VMBUS-UNLOADED" in console and "VMBUS-RELOADED" in console, console[-3000:]
    assert "VMBUS-DEVICE-AGAIN " + SCSI_CLASS in console, console[-3000:]
    # storvsp: the disk, the DVD, hot add/remove, and sub-channels on 2 vCPUs.
    assert "MOUNTED-SDA" in console and "UMOUNTED-SDA" in console, console[-3000:]
    assert "SDA-SUM " + hashlib.sha256(payload).hexdigest() in console
    assert "ISO-FILE hello from the DVD" in console, console[-3000:]
    chans = re.search(r"VMBUS-DEVICE %s channels=(\d+)" % re.escape(SCSI_CLASS), console)
    assert chans and int(chans.group(1)) >= 2, console[-3000:]
    assert added and "ok: controller 0 lun 2" in added, (added, console[-3000:])
    assert "HOTADD-SEEN sdb 32768" in console, console[-3000:]
    assert re.search(r"HOTADD-ADDR \d+:0:0:2", console), console[-3000:]
    assert removed is not None and "HOTREMOVE-SEEN" in console, console[-3000:]
    assert rc == 0, err[-3000:]
    # The host finds what the guest wrote, intact and consistent, after the guest's sync and power-off.
    got = subprocess.run(["debugfs", "-R", "cat /from-guest.txt", str(disk)], capture_output=True, text=True)
    assert got.stdout == "written by the guest on gen2vm\n", got.stdout + got.stderr
    copy = subprocess.run(["debugfs", "-R", "cat /copy.bin", str(disk)], capture_output=True).stdout
    assert hashlib.sha256(copy).hexdigest() == hashlib.sha256(payload).hexdigest()
    fsck = subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


# 4 GiB: 3.5 GiB below the 32-bit gap, 0.5 GiB above it (Linux's Normal zone, which its page allocator
# takes from first). A 1 GiB tmpfs file fills the memory above 4 GiB and more, and reads back intact.
# (More is not written: the nested test host's emulator resets itself when a nested guest writes about
# 3 GiB; see README, "The nested test host".)
BIG_INIT = LOAD_MODULES + r"""
echo "BIG-NPROC $(nproc)"
echo "BIG-MEMTOTAL-KB $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
grep "System RAM" /proc/iomem | sed 's/^/BIG-IOMEM /'
normal_free() { awk '/^Node .*zone +Normal/{z=1} z&&/^ +pages free/{print $3*4; exit}' /proc/zoneinfo; }
echo "BIG-NORMAL-FREE-BEFORE-KB $(normal_free)"
mkdir -p /big && mount -t tmpfs -o size=1100m tmpfs /big
cat $(i=0; while [ $i -lt 1024 ]; do echo /seed; i=$((i+1)); done) > /big/file  # one process
echo "BIG-NORMAL-FREE-AFTER-KB $(normal_free)"
echo "BIG-FILE-BYTES $(stat -c %s /big/file)"
dd if=/big/file of=/dev/null bs=1M 2>/dev/null && echo "BIG-READ-ALL-OK"
# Hashing all of it takes minutes in the nested test host's emulator: 16 chunks across the file instead.
for off in 0 1 2 127 128 255 256 511 512 640 767 768 896 1021 1022 1023; do
  dd if=/big/file bs=1M skip=$off count=1 2>/dev/null | sha256sum | cut -d' ' -f1
done | sort | uniq -c | sed 's/^ */BIG-CHUNK-SUMS /'
echo "BIG-MEMFREE-KB $(grep MemFree /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
poweroff -f
"""

# `reboot -f`: the VM restarts, and its second boot (told by a flag on the disk) powers off.
REBOOT_INIT = LOAD_MODULES + r"""
# The flag disk must be there before it is read or written (a write to a missing /dev/sda would create
# a file in /dev, and every boot would take itself for the first one).
for i in $(seq 1 600); do [ -b /dev/sda ] && break; sleep 0.1; done
[ -b /dev/sda ] || echo "NO-SDA"
if [ "$(dd if=/dev/sda bs=16 count=1 2>/dev/null | head -c 11)" = "SECOND-BOOT" ]; then
  echo "SECOND-BOOT-REACHED"
  poweroff -f
fi
printf SECOND-BOOT | dd of=/dev/sda conv=notrunc 2>/dev/null; sync
echo "REBOOTING"
reboot -f
"""


def test_four_vcpus_four_gib(tmp_path, kernel):
    """4 vCPUs, 4 GiB: the RAM above the 32-bit gap filled and read back."""
    initrd = str(tmp_path / "initrd.cpio")
    seed = os.urandom(1 << 20)
    make_initramfs(initrd, INIT_PRELUDE + BIG_INIT, kernel["modules"], ["hv_vmbus"], extra_files={"seed": seed})
    vm = Vm(tmp_path, kernel, initrd, ["--cpus", "4", "--memory", "4G"])
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "BIG-NPROC 4" in console, console[-3000:] + err[-2000:]
    kb = int(re.search(r"BIG-MEMTOTAL-KB (\d+)", console).group(1))
    assert kb > 3.5 * 1024 * 1024, kb
    assert re.search(r"BIG-IOMEM 1[0-9a-f]{8}-[0-9a-f]+ : System RAM", console), console[-3000:]
    # The file is the seed 1024 times over: all of it reads back, and 16 chunks spread over it (both
    # ends, the middle) each hash to the seed's sum.
    assert "BIG-FILE-BYTES %d" % (1024 << 20) in console, console[-3000:]
    assert "BIG-READ-ALL-OK" in console, console[-3000:]
    assert "BIG-CHUNK-SUMS 16 " + hashlib.sha256(seed).hexdigest() in console, console[-3000:]
    free = int(re.search(r"BIG-MEMFREE-KB (\d+)", console).group(1))
    assert free < kb - (1024 << 10), (free, kb)  # the file really sits in RAM
    # ... and in the RAM above 4 GiB: the Normal zone (all of it above the gap) is nearly used up.
    before = int(re.search(r"BIG-NORMAL-FREE-BEFORE-KB (\d+)", console).group(1))
    after = int(re.search(r"BIG-NORMAL-FREE-AFTER-KB (\d+)", console).group(1))
    assert before > 400 << 10 and after < before // 4, (before, after)
    assert rc == 0, err[-3000:]


def test_reboot_restarts_the_vm(tmp_path, kernel):
    """`reboot -f` in the guest restarts the VM, which boots again and then powers off: exit code 0.
    A direct boot has no EFI runtime services, so under the hardware-reduced FADT Linux restarts by
    jumping to the reset vector in real mode (machine_real_restart), where gen2vm's stub resets."""
    flag = tmp_path / "flag.img"
    flag.write_bytes(b"\0" * (1 << 20))
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + REBOOT_INIT, kernel["modules"], ["hv_vmbus", "hv_storvsc", "sd_mod"])
    vm = Vm(tmp_path, kernel, initrd, ["--cpus", "2", "--disk", str(flag)], reboot=True)
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "REBOOTING" in console and "SECOND-BOOT-REACHED" in console, console[-3000:] + err[-2000:]
    # Two boots, no more: the reboot restarted the VM once, and the second boot powered off.
    assert console.count("Linux version") == 2 and err.count("gen2vm-stats:") == 2, console[-3000:] + err[-2000:]
    assert "triple fault" not in err, err[-2000:]
    assert rc == 0, err[-3000:]


def test_guest_panic_is_reported_as_a_crash(tmp_path, kernel):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + LOAD_MODULES + "echo PANICKING-NOW\necho c > /proc/sysrq-trigger\nsleep 60\n",
                   kernel["modules"], ["hv_vmbus"])
    vm = Vm(tmp_path, kernel, initrd, ["--cpus", "1"])
    rc = vm.finish()
    vm.fail_if_blocked()
    assert "PANICKING-NOW" in vm.console(), vm.console()[-3000:]
    assert rc == 4, vm.err[-3000:]
    assert re.search(r"guest crashed: P0=0x[0-9a-f]{16} P1=0x[0-9a-f]{16} P2=0x[0-9a-f]{16} "
                     r"P3=0x[0-9a-f]{16} P4=0x[0-9a-f]{16}", vm.err), vm.err[-3000:]
    # Linux hands over its panic message through the crash MSRs (P3 = GPA, P4 = length).
    assert "sysrq" in vm.err.lower(), vm.err[-3000:]
