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
"""
import re
import signal
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs
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


@pytest.fixture(scope="module")
def kernel():
    return fetch_kernel()


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
