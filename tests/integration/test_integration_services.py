"""The integration services with the real client: Debian's stock cloud kernel and its unmodified
hv_utils module, under busybox init (so that a shutdown goes through init's stop step, as on a
distribution). Three VM runs:
- one with hv_utils: the versions negotiated, heartbeat ok, lost while the VM is paused and ok again,
  the guest's clock (set wrong before hv_utils loads) stepped to the host's by time sync, the
  Hyper-V PTP clock; `shutdown --reboot` restarts the guest through its init, and on the second boot
  `shutdown` powers it off through its init (exit code 0);
- one stopped with SIGTERM, which asks the guest to shut down through its init;
- one without hv_utils and with only the shutdown service offered: the others are not offered, and
  `shutdown --force --timeout 5` turns the VM off after the timeout, saying so.
KVP, file copy and backup (VSS) run with Debian's hyperv-daemons, in runs of their own below.
"""
import re
import signal
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run
from linux_guest import INIT_PRELUDE, make_initramfs
from test_linux import LOAD_MODULES, Vm

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"), pytest.mark.real_guest]

IC_CLASSES = {
    "shutdown": "{0e0b6031-5213-4934-818b-38d90ced39db}",
    "timesync": "{9527e630-d0ae-497b-adce-e80ab0175caf}",
    "heartbeat": "{57164f39-9115-4e78-ab55-382f3bd5422d}",
}

# /init sets the clock wrong, loads the modules and hands over to busybox init, whose inittab runs
# the test script once and, on poweroff or reboot (which hv_utils starts with /sbin/poweroff or
# /sbin/reboot), the stop step.
BUSYBOX_INIT = r"""
date -s @1000000000 >/dev/null
""" + LOAD_MODULES + r"""
mkdir -p /sbin /etc
for c in init poweroff reboot halt; do ln -sf /bin/busybox /sbin/$c; done
cat > /etc/inittab <<'EOF'
::once:/bin/sh /etc/rc.test
::shutdown:/bin/sh -c 'echo GEN2VM-STOP-STEP-RAN > /dev/console'
EOF
cat > /etc/rc.test <<'EOF'
for i in $(seq 1 100); do [ -e /sys/class/ptp/ptp0 ] && break; sleep 0.1; done
sleep 1
echo "GUEST-EPOCH $(date +%s)"
for p in /sys/class/ptp/ptp*; do [ -e $p ] && echo "PTP-CLOCK $(cat $p/clock_name)"; done
for d in /sys/bus/vmbus/devices/*; do echo "VMBUS-DEVICE $(cat $d/class_id)"; done
dmesg | grep -E "IC version" | sed 's/^.*\] /IC-DMESG /'
echo "IC-READY"
EOF
exec /sbin/init
"""


def ctl(vm, *args):
    """The control socket's answer, "ok: ..." or "error: ..." (an error is an answer here)."""
    return run(gen2vm_binary(), "control", vm.sock, *args, check=False).stdout


def wait_count(vm, text, n, timeout=600):
    """Waits until text appears n times on the console."""
    end = time.time() + timeout
    while time.time() < end:
        if vm.console().count(text) >= n:
            return True
        if vm.p.poll() is not None:
            return vm.console().count(text) >= n
        time.sleep(0.2)
    return False


def test_shutdown_heartbeat_timesync_with_hv_utils(tmp_path, kernel):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + BUSYBOX_INIT, kernel["modules"], ["hv_vmbus", "hv_utils"])
    vm = Vm(tmp_path, kernel, initrd, ["--cpus", "2"], reboot=True)
    ready = vm.wait_for("IC-READY")
    host_epoch = time.time()
    hb = ts = hb_lost = hb_back = reboot = None
    if ready:
        hb = vm.control("heartbeat")
        ts = vm.control("timesync")
        vm.control("pause")
        time.sleep(8)  # 4 beats of 2 s go unanswered
        hb_lost = vm.control("heartbeat")
        vm.control("resume")
        for _ in range(60):
            hb_back = vm.control("heartbeat")
            if hb_back.startswith("ok: heartbeat ok"):
                break
            time.sleep(0.5)
        reboot = vm.control("shutdown", "--reboot")
    second = wait_count(vm, "IC-READY", 2)
    off = vm.control("shutdown") if second else None
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()

    assert ready, console[-3000:] + err[-3000:]
    assert "INSMOD-FAILED" not in console, console[-3000:]
    for name, cls in IC_CLASSES.items():
        assert "VMBUS-DEVICE " + cls in console, (name, console[-3000:])
    # Linux negotiated the newest versions it knows with what gen2vm offers.
    assert "IC-DMESG hv_utils: Heartbeat IC version 3.0" in console, console[-3000:]
    assert "IC-DMESG hv_utils: Shutdown IC version 3.2" in console, console[-3000:]
    assert "IC-DMESG hv_utils: TimeSync IC version 4.0" in console, console[-3000:]
    assert hb and hb.startswith("ok: heartbeat ok (version 3.0"), hb
    assert ts and ts.startswith("ok: time sync ok (version 4.0"), ts
    assert hb_lost and "lost" in hb_lost, hb_lost
    assert "warning: heartbeat: the guest stopped answering" in err, err[-3000:]
    assert hb_back and hb_back.startswith("ok: heartbeat ok"), hb_back
    # Time sync stepped the clock set to 2001 at boot to the host's.
    m = re.search(r"GUEST-EPOCH (\d+)", console)
    assert m and abs(int(m.group(1)) - host_epoch) <= 3, (m and m.group(1), host_epoch)
    assert "PTP-CLOCK hyperv" in console, console[-3000:]
    # A restart and a power-off, both through the guest's init (its stop step ran each time).
    assert reboot and reboot.startswith("ok: the guest accepted to restart"), reboot
    assert err.count("gen2vm-stats:") == 2, err[-3000:]  # two boots of one VM
    assert second, console[-3000:] + err[-3000:]
    assert off and off.startswith("ok: the guest accepted to shut down"), off
    assert console.count("GEN2VM-STOP-STEP-RAN") == 2, console[-3000:]
    assert "Restart request received - graceful restart initiated" in console, console[-3000:]
    assert "Shutdown request received - graceful shutdown initiated" in console, console[-3000:]
    assert rc == 0, err[-3000:]


def test_sigterm_shuts_the_guest_down_through_its_init(tmp_path, kernel):
    """SIGTERM to gen2vm (a service manager stopping the VM) asks the guest to shut down: its init's
    stop step runs, then the process ends with 128 + SIGTERM and a line saying what happened."""
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + BUSYBOX_INIT, kernel["modules"], ["hv_vmbus", "hv_utils"])
    vm = Vm(tmp_path, kernel, initrd, ["--sigterm-timeout", "120"])
    ready = vm.wait_for("IC-READY")
    if ready:
        vm.p.send_signal(signal.SIGTERM)
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert ready, console[-3000:] + err[-3000:]
    assert "SIGTERM: the guest was asked to shut down; it is turned off if it still runs in 120 s" in err, err
    assert "Shutdown request received - graceful shutdown initiated" in console, console[-3000:]
    assert console.count("GEN2VM-STOP-STEP-RAN") == 1, console[-3000:]
    assert "reboot: Power down" in console, console[-3000:]
    assert rc == 128 + signal.SIGTERM, err[-3000:]


NO_UTILS_INIT = LOAD_MODULES + r"""
for d in /sys/bus/vmbus/devices/*; do echo "VMBUS-DEVICE $(cat $d/class_id)"; done
echo "NO-UTILS-READY"
while true; do sleep 1000; done
"""


def test_force_turns_off_a_guest_without_the_service(tmp_path, kernel):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + NO_UTILS_INIT, kernel["modules"], ["hv_vmbus"])
    vm = Vm(tmp_path, kernel, initrd, ["--integration-services", "shutdown"])
    ready = vm.wait_for("NO-UTILS-READY")
    hb = forced = None
    t0 = time.time()
    if ready:
        hb = vm.control("heartbeat")
        forced = vm.control("shutdown", "--force", "--timeout", "5")
        t0 = time.time()
    rc = vm.finish(120)
    took = time.time() - t0
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert ready, console[-3000:] + err[-3000:]
    assert "VMBUS-DEVICE " + IC_CLASSES["shutdown"] in console, console[-3000:]
    assert "VMBUS-DEVICE " + IC_CLASSES["heartbeat"] not in console, console[-3000:]
    assert "VMBUS-DEVICE " + IC_CLASSES["timesync"] not in console, console[-3000:]
    assert hb and "not offered" in hb, hb
    assert forced and "no guest shutdown service connected: turned off if it still runs in 5 s" in forced, forced
    assert took >= 4, took
    assert "warning: the guest did not shut down within 5 s of the shutdown request: turned off" in err, err[-3000:]
    assert rc == 0, err[-3000:]


DAEMONS_INIT = LOAD_MODULES + r"""
hostname kvp-guest
mkdir -p /var/lib /etc
printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n' > /etc/os-release
echo "ICS-NODAEMON-READY"
sleep 8
/usr/sbin/hv_kvp_daemon -n > /tmp/kvp.log 2>&1 &
/usr/sbin/hv_fcopy_daemon -n > /tmp/fcopy.log 2>&1 &
echo "DAEMONS-STARTED"
sleep 2
mkdir -p /var/lib/hyperv
printf 'GuestKey' | dd of=/tmp/k bs=512 conv=sync 2>/dev/null
printf 'from the guest' | dd of=/tmp/v bs=2048 conv=sync 2>/dev/null
cat /tmp/k /tmp/v >> /var/lib/hyperv/.kvp_pool_1
echo "GUEST-KEY-WRITTEN"
has() { grep -aq "$1" /var/lib/hyperv/.kvp_pool_0 2>/dev/null; }
for i in $(seq 1 3000); do has Foo && break; sleep 0.2; done
has Foo && echo "POOL0-HAS-FOO value=$(has 'bär' && echo ok) pre=$(has before && echo ok)"
for i in $(seq 1 3000); do has Foo || break; sleep 0.2; done
has Foo || echo "POOL0-FOO-GONE"
for i in $(seq 1 6000); do has CopyDone && break; sleep 0.2; done
echo "COPIED $(stat -c %s /tmp/in/sub/copied.bin) $(sha256sum /tmp/in/sub/copied.bin | cut -d' ' -f1)"
cat /tmp/kvp.log /tmp/fcopy.log | sed 's/^/DAEMON-LOG /' | head -40
poweroff -f
"""


def test_kvp_and_file_copy_with_the_daemons(tmp_path, kernel):
    """Debian's hv_kvp_daemon and hv_fcopy_daemon, unmodified: the guest's values reach the host, a key
    the host sets lands in the guest's pool 0 (and goes on delete), a key the guest writes reaches
    the host, and a 32 MiB file copied into the guest arrives byte-identical; before the daemons run,
    each verb says what is missing."""
    import hashlib
    import json
    import os
    from linux_guest import daemon_files, fetch_hyperv_daemons
    root = fetch_hyperv_daemons()
    files = {}
    for d in ("/usr/sbin/hv_kvp_daemon", "/usr/sbin/hv_fcopy_daemon"):
        files.update(daemon_files(root, d))
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + DAEMONS_INIT, kernel["modules"], ["hv_vmbus", "hv_utils"],
                   extra_files=files)
    payload = os.urandom(32 << 20)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    vm = Vm(tmp_path, kernel, initrd, ["--integration-services", "default,fcopy"])
    r = {}
    if vm.wait_for("ICS-NODAEMON-READY"):
        r["kvp-before"] = ctl(vm, "kvp")
        r["pre"] = ctl(vm, "kvp-set", "Pre", "before")
        r["copy-before"] = ctl(vm, "copy-file", str(src), "/tmp/x.bin")
    if vm.wait_for("GUEST-KEY-WRITTEN"):
        for _ in range(120):
            r["kvp"] = ctl(vm, "kvp")
            if "OSName=" in r["kvp"] and "guest/GuestKey=" in r["kvp"]:
                break
            time.sleep(1)
        r["json"] = ctl(vm, "kvp", "--json")
        r["set"] = ctl(vm, "kvp-set", "Foo", "bär")
        if vm.wait_for("POOL0-HAS-FOO", 120):
            r["delete"] = ctl(vm, "kvp-delete", "Foo")
        if vm.wait_for("POOL0-FOO-GONE", 120):
            r["copy"] = ctl(vm, "copy-file", str(src), "/tmp/in/sub/copied.bin", "--create-dirs")
            for _ in range(900):
                r["status"] = ctl(vm, "copy-file-status")
                if "copying" not in r["status"]:
                    break
                time.sleep(1)
            ctl(vm, "kvp-set", "CopyDone", "1")
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "ICS-NODAEMON-READY" in console, console[-3000:] + err[-3000:]
    assert "is hv_kvp_daemon running?" in r.get("kvp-before", ""), r
    assert "kept" in r.get("pre", ""), r
    assert "hv_fcopy_daemon" in r.get("copy-before", ""), r
    assert "OSName=Debian GNU/Linux" in r.get("kvp", ""), (r, console[-3000:])
    assert "FullyQualifiedDomainName=" in r["kvp"] and "guest/GuestKey=from the guest" in r["kvp"], r
    doc = json.loads(r["json"].split(": ", 1)[1])
    assert doc["guest"]["GuestKey"] == "from the guest", doc
    assert r.get("set", "").startswith("ok:"), r
    assert "POOL0-HAS-FOO value=ok pre=ok" in console, console[-3000:]
    assert r.get("delete", "").startswith("ok:") and "POOL0-FOO-GONE" in console, (r, console[-3000:])
    assert r.get("status", "").startswith("ok: copied"), r
    assert "COPIED %d %s" % (len(payload), hashlib.sha256(payload).hexdigest()) in console, console[-3000:]
    assert rc == 0, err[-3000:]


# The backup (VSS) service with Debian's hv_vss_daemon: an ext4 disk mounted on /mnt and a writer
# that appends a TICK line to the console after each write and sync to it. First no daemon runs (the
# guest's kernel refuses a FREEZE at once), then the daemon starts. The guest powers off by itself
# after 400 ticks (about 200 s of unfrozen time) should the host's `shutdown` at the end not reach it.
VSS_INIT = LOAD_MODULES + r"""
for i in $(seq 1 600); do [ -b /dev/sda ] && break; sleep 0.1; done
[ -b /dev/sda ] || echo "NO-SDA"
mount -t ext4 /dev/sda /mnt || echo "MOUNT-FAILED"
grep ' /mnt ' /proc/mounts | sed 's/^/VSS-MOUNT /'
echo 0 > /tmp/ticks
( n=0; while :; do date > /mnt/tick; sync; n=$((n+1)); echo $n > /tmp/ticks; echo "TICK $n"; sleep 0.5; done ) &
echo "VSS-NODAEMON-READY"
sleep 15
dmesg | grep -E "VSS IC version" | sed 's/^.*\] /IC-DMESG /'
/usr/sbin/hv_vss_daemon -n > /tmp/vss.log 2>&1 &
sleep 2
echo "VSS-DAEMON-STARTED"
while [ "$(cat /tmp/ticks)" -lt 400 ]; do sleep 1; done
sed 's/^/DAEMON-LOG /' /tmp/vss.log | head -20
echo "VSS-GUEST-DONE"
poweroff -f
"""


def test_backup_freeze_and_thaw_with_the_daemon(tmp_path, kernel):
    """Debian's hv_vss_daemon, unmodified: without it the guest refuses to freeze; with it `freeze`
    freezes the guest's ext4 file system (its writer stops), `thaw` lets it write again, `freeze
    --auto-thaw` thaws by itself, and a second `freeze` while frozen is refused."""
    import subprocess
    from linux_guest import daemon_files, fetch_hyperv_daemons
    root = fetch_hyperv_daemons()
    files = daemon_files(root, "/usr/sbin/hv_vss_daemon")
    initrd = str(tmp_path / "initrd.cpio")
    # ext4's own dependencies (jbd2, mbcache, crc16) come with it; crc32c is asked for through the
    # crypto API, so its generic module is listed (module_load_order skips what is built in; not
    # crc32c_intel, which refuses a CPU without SSE4.2).
    make_initramfs(initrd, INIT_PRELUDE + VSS_INIT, kernel["modules"],
                   ["hv_vmbus", "hv_utils", "hv_storvsc", "sd_mod", "crc32c_generic", "ext4"],
                   extra_files=files)
    disk = tmp_path / "disk.img"
    subprocess.run(["mkfs.ext4", "-F", "-q", str(disk), "64M"], check=True)
    vm = Vm(tmp_path, kernel, initrd, ["--disk", str(disk)])
    ticks = lambda: vm.console().count("TICK ")
    r = {}
    if vm.wait_for("VSS-NODAEMON-READY"):
        for _ in range(60):  # hv_utils negotiates the service when it loads; give it time
            r["status-nodaemon"] = ctl(vm, "vss")
            if "vss ok" in r["status-nodaemon"]:
                break
            time.sleep(0.5)
        r["freeze-nodaemon"] = ctl(vm, "freeze", "--timeout", "20")
    if vm.wait_for("VSS-DAEMON-STARTED"):
        for _ in range(20):  # until the daemon has registered with the guest's kernel
            r["freeze"] = ctl(vm, "freeze")
            if "is hv_vss_daemon running?" not in r["freeze"]:
                break
            time.sleep(1)
        r["status-frozen"] = ctl(vm, "vss")
        r["vm-status-frozen"] = ctl(vm, "status")
        r["again"] = ctl(vm, "freeze")
        time.sleep(1)  # a write that was under way when the freeze came may still print its TICK
        r["n0"] = ticks()
        time.sleep(3)
        r["n1"] = ticks()
        r["thaw"] = ctl(vm, "thaw")
        end = time.time() + 30
        while time.time() < end and ticks() < r["n1"] + 2:
            time.sleep(0.2)
        r["n2"] = ticks()
        r["status-thawed"] = ctl(vm, "vss")
        # the host thaws by itself
        r["auto"] = ctl(vm, "freeze", "--auto-thaw", "3")
        time.sleep(1)
        r["a0"] = ticks()
        end = time.time() + 30
        while time.time() < end and ticks() < r["a0"] + 2:
            time.sleep(0.2)
        r["a1"] = ticks()
        r["status-auto"] = ctl(vm, "vss")
        r["thaw-unfrozen"] = ctl(vm, "thaw")
        r["shutdown"] = ctl(vm, "shutdown")
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "VSS-NODAEMON-READY" in console, console[-3000:] + err[-3000:]
    assert "INSMOD-FAILED" not in console and "NO-SDA" not in console and "MOUNT-FAILED" not in console, \
        console[-3000:]
    assert "VSS-MOUNT /dev/sda /mnt ext4" in console, console[-3000:]
    assert "IC-DMESG hv_utils: VSS IC version 5.0" in console, console[-3000:]
    assert r.get("status-nodaemon", "").startswith("ok: vss ok (version 5.0; not frozen"), r
    # No daemon registered: Linux's kernel answers E_FAIL at once.
    assert "the guest refused to freeze (status 0x80004005: is hv_vss_daemon running?)" in r.get(
        "freeze-nodaemon", ""), r
    assert r.get("freeze", "").startswith("ok: the guest's file systems are frozen (hv_vss_daemon answered in "), r
    assert "frozen since" in r.get("status-frozen", ""), r
    assert "; file systems frozen since " in r.get("vm-status-frozen", ""), r
    assert "already frozen" in r.get("again", ""), r
    # Frozen: the writer blocks in its write to /mnt, and no TICK comes for 3 s.
    assert r["n1"] == r["n0"], r
    assert r.get("thaw", "").strip() == "ok: thawed", r
    assert r["n2"] >= r["n1"] + 2, r
    assert "not frozen" in r.get("status-thawed", ""), r
    assert r.get("auto", "").startswith("ok: the guest's file systems are frozen") and \
        "auto-thaw in 3 s" in r["auto"], r
    assert r["a1"] >= r["a0"] + 2, r
    assert "not frozen" in r.get("status-auto", ""), r
    assert r.get("thaw-unfrozen", "").strip() == "ok: thawed (this host had not seen the guest frozen)", r
    assert r.get("shutdown", "").startswith("ok: the guest accepted to shut down"), r
    assert rc == 0, err[-3000:]
