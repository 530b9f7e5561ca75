"""The synthetic keyboard and mouse with the real clients: Debian's stock cloud kernel with its
unmodified hyperv_keyboard (a serio port under the kernel's own AT keyboard driver) and hid_hyperv
(a HID device through hid and evdev). One boot with --synthetic-console:
- text typed with `control type` and `control key enter` is read by a shell from the guest's first
  virtual terminal, as a user's typing would be;
- `control mouse X Y BUTTONS` reaches the guest as absolute pointer events with the same X and Y and a
  left button press (read from the mouse's /dev/input/event node).
The video device and the screen (VRAM window, VNC, screenshots) are not proven here yet.
"""
import re
import struct
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs
from test_linux import LOAD_MODULES, Vm

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"), pytest.mark.real_guest]

INIT = LOAD_MODULES + r"""
for i in $(seq 1 150); do grep -q "Vmbus HID" /proc/bus/input/devices && grep -q "AT Translated" /proc/bus/input/devices && break; sleep 0.2; done
grep -E "^(N|H):" /proc/bus/input/devices | sed 's/^/INPUT-DEV /'
mkdir -p /dev/input
for e in /sys/class/input/event*; do n=${e##*/}; [ -e /dev/input/$n ] || mknod /dev/input/$n c $(cut -d: -f1 $e/dev) $(cut -d: -f2 $e/dev); done
[ -e /dev/tty1 ] || mknod /dev/tty1 c 4 1
exec 3< /dev/tty1
echo "KBD-READY"
read -r line <&3
echo "TYPED [$line]"
ev=$(awk '/^N:.*Vmbus HID/{f=1} f && /^H:/{print; exit}' /proc/bus/input/devices | grep -o 'event[0-9]*')
echo "MOUSE-NODE $ev"
dd if=/dev/input/$ev of=/tmp/ev bs=24 count=8 2>/dev/null &
sleep 1
echo "MOUSE-READY"
wait
echo "MOUSE-EVENTS $(od -An -v -tx1 /tmp/ev | tr -d ' \n')"
poweroff -f
"""


@pytest.fixture(scope="module")
def kernel():
    return fetch_kernel()


def ctl(vm, *args):
    return run(gen2vm_binary(), "control", vm.sock, *args, check=False).stdout.strip()


def test_keyboard_and_mouse_with_linux(tmp_path, kernel):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + INIT, kernel["modules"],
                   ["hv_vmbus", "hyperv_keyboard", "hid_hyperv", "hid_generic", "evdev"])
    vm = Vm(tmp_path, kernel, initrd, ["--synthetic-console"])
    r = {}
    if vm.wait_for("KBD-READY"):
        r["type"] = ctl(vm, "type", "hello gen2vm 42")
        r["enter"] = ctl(vm, "key", "enter")
        if vm.wait_for("MOUSE-READY", 300):
            r["press"] = ctl(vm, "mouse", "1000", "2000", "1")
            time.sleep(0.5)
            r["release"] = ctl(vm, "mouse", "1000", "2000", "0")
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "KBD-READY" in console, console[-3000:] + err[-3000:]
    assert "INSMOD-FAILED" not in console, console[-3000:]
    assert "Vmbus HID" in console and "AT Translated" in console, console[-3000:]
    assert r.get("type", "").startswith("ok: typed 15 characters"), r
    assert r.get("enter", "").startswith("ok"), r
    assert "TYPED [hello gen2vm 42]" in console, (r, console[-3000:])
    assert r.get("press", "").startswith("ok") and r.get("release", "").startswith("ok"), (r, console[-3000:])
    m = re.search(r"MOUSE-EVENTS ([0-9a-f]*)", console)
    assert m, console[-3000:]
    raw = bytes.fromhex(m.group(1))
    events = [struct.unpack_from("<qqHHi", raw, i)[2:] for i in range(0, len(raw) - 23, 24)]
    assert (3, 0, 1000) in events and (3, 1, 2000) in events, events  # EV_ABS ABS_X / ABS_Y
    assert (1, 0x110, 1) in events, events  # EV_KEY BTN_LEFT pressed
    assert rc == 0, err[-3000:]
