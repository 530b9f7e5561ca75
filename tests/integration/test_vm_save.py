"""Saving a VM (Hyper-V's Stop-VM -Save / Start-VM of a saved VM) with a real guest: Debian's kernel
booted through UEFI and systemd-boot from a VHDX (as test_vm_store's real guest), a busybox shell on
COM1, the graphical console `vm new` gives (hyperv_fb drawing the framebuffer console,
hyperv_keyboard) and, as root, a network adapter on a tap whose host side is the guest's peer
(hv_netvsc). The guest's state survives `vm stop --save` + `vm start`: a tmpfs marker, a running
loop, disk I/O on the SCSI disk, the screen (the same pixels in `screenshot` and through the VNC
server), keys typed into a shell on the guest's tty1 with `type` and `key enter`, pings to the peer
with the same driver (no reset), the heartbeat, and the shutdown service afterwards; then the
service saves it as the host goes down (automatic_stop save) and restores it at the next boot
(automatic_start if_running). A truncated or altered state file, and one saved from another
configuration, are refused and the VM stays Saved. Needs /dev/kvm (the nested test host)."""
import json
import os
import re
import shutil
import time

import socket
import subprocess

import pytest

from conftest import gen2vm_binary, have_kvm
from screen import png_read_rgb
from test_vm_service import Service, env_direct
from test_vm_store import guest_sh, listing, ok, userspace_vhdx, vm
from test_vnc import rfb_frame_on


def wait_console(store, marker, timeout):
    console = os.path.join(str(store), "guest", "console.log")
    end, text = time.time() + timeout, ""
    while time.time() < end:
        with open(console, errors="replace") as f:
            text = f.read()
        if marker in text:
            return text
        time.sleep(2)
    raise AssertionError("no %r on COM1:\n%s" % (marker, text[-3000:]))


def control(store, *args):
    d = os.path.join(str(store), "guest")
    return subprocess.run([gen2vm_binary(), "control", "control.sock"] + list(args), cwd=d, capture_output=True,
                          text=True, timeout=60)


def screenshot(store, path):
    r = control(store, "screenshot", path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return png_read_rgb(path)


def stable_screen(store, tmp_path, name):
    """The screen once two screenshots 2 s apart agree (the guest's driver copies to the VRAM on its
    own schedule)."""
    last = None
    for i in range(30):
        shot = screenshot(store, str(tmp_path / ("%s%d.png" % (name, i))))
        if shot == last:
            return shot
        last = shot
        time.sleep(2)
    raise AssertionError("the screen did not settle")


def vnc_frame(store):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(os.path.join(str(store), "guest", "vnc.sock"))
    return rfb_frame_on(s)


# The console's screen and keyboard in the guest: hyperv_fb's framebuffer console shows a line of text
# (the cursor does not blink: a steady screen), and a shell reads tty1, where the synthetic keyboard's
# keys go.
SCREEN_SETUP = ("for i in $(seq 1 150); do grep -q hyperv_fb /sys/class/graphics/fb0/name 2>/dev/null && break; "
                "sleep 0.2; done; echo FB $(cat /sys/class/graphics/fb0/name) $(cat /sys/class/graphics/fb0/virtual_size); "
                "[ -e /dev/tty1 ] || mknod /dev/tty1 c 4 1; echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
                "setsid sh -c 'exec sh </dev/tty1 >/dev/tty1 2>&1' & sleep 2; "
                "printf '\033[2J\033[H\n  THE SAVED SCREEN %s\n' $((6*7)) > /dev/tty1")


TAP, TAP_HOST, TAP_GUEST = "g2vsave0", "10.214.0.1", "10.214.0.2"
PING = "ping -c 3 -W 5 %s >/dev/null && echo PING-OK-$((6*7))" % TAP_HOST


def tap_up():
    """A persistent tap (as a host's bridge port would be): its host side is the guest's peer and
    outlives the VM's process, which opens it again at restore."""
    subprocess.run(["ip", "link", "del", TAP], capture_output=True)
    for cmd in (["ip", "tuntap", "add", TAP, "mode", "tap", "multi_queue"], ["ip", "addr", "add", TAP_HOST + "/24", "dev", TAP],
                ["ip", "link", "set", TAP, "up"]):
        subprocess.run(cmd, check=True, capture_output=True)


def start_refused(store, says):
    r = vm(store, "start", "guest")
    assert r.returncode != 0 and says in r.stderr and "it stays saved" in r.stderr, (r.returncode, r.stderr)
    assert listing(store)["guest"]["state"] == "Saved"


@pytest.mark.real_guest
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
def test_save_and_restore_a_linux_guest(tmp_path):
    vhdx = userspace_vhdx(tmp_path, "VM-SAVE-USERSPACE-MARKER",
                          ["hv_storvsc", "sd_mod", "hyperv_fb", "hyperv_keyboard", "hv_netvsc"])
    store = tmp_path / "store"
    net = os.geteuid() == 0
    if net:
        tap_up()
    # The graphical console is on, as vm new makes it.
    ok(store, "new", "guest", "--memory", "512M", "--cpus", "2", "--disk", vhdx, "--disk", "new:64M",
       *(["--nic", "tap=" + TAP] if net else []))
    d = os.path.join(str(store), "guest")
    with open(os.path.join(d, "vm.json")) as f:  # what the service does when the host goes down
        j = json.load(f)
    with open(os.path.join(d, "vm.json"), "w") as f:
        json.dump(dict(j, automatic_stop="save"), f)
    try:
        ok(store, "start", "guest")
        wait_console(store, "VM-SAVE-USERSPACE-MARKER", 650)
        # The state to keep: a tmpfs marker, a loop that counts, data on the second SCSI disk.
        out = guest_sh(store, "mkdir -p /mnt/t && mount -t tmpfs tmpfs /mnt/t && echo KEEP-$((6*7))-ME > /mnt/t/marker"
                              " && (i=0; while true; do i=$((i+1)); echo $i > /mnt/t/count; sleep 1; done) &"
                              " sleep 3; cat /mnt/t/count; ls /sys/block")
        assert "sdb" in out, out
        out = guest_sh(store, "dd if=/dev/urandom of=/mnt/t/a bs=4096 count=64 2>/dev/null; "
                              "dd if=/mnt/t/a of=/dev/sdb bs=4096 conv=fsync 2>/dev/null; md5sum /mnt/t/a")
        before_sum = re.search(r"([0-9a-f]{32})  /mnt/t/a", out).group(1)
        if net:
            out = guest_sh(store, "for i in $(seq 1 150); do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done; "
                                  "ip link set eth0 up && ip addr add %s/24 dev eth0 && sleep 2; %s" % (TAP_GUEST, PING),
                           timeout=180)
            assert "PING-OK-42" in out, out
        out = guest_sh(store, SCREEN_SETUP)
        assert "FB hyperv_fb 1024,768" in out, out
        screen = stable_screen(store, tmp_path, "before")
        assert screen[:2] == (1024, 768) and len(set(screen[2])) > 1, screen[:2]  # the text is on it
        with open(os.path.join(d, "run.lock")) as f:
            pid = int(f.read().split()[0])

        r = ok(store, "stop", "guest", "--save", timeout=300)
        assert "saved" in r.stdout, r.stdout
        v = listing(store)["guest"]
        assert v["state"] == "Saved", v
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        saved = os.path.join(d, "vm.save")
        print("state file: %d bytes for 512 MiB of RAM" % os.path.getsize(saved))
        with open(os.path.join(d, "vm.log"), errors="replace") as f:
            assert "state was saved" in f.read()

        # Hostile and foreign state files are refused; the VM stays Saved and its state intact.
        good = os.path.join(str(tmp_path), "good.save")
        shutil.copyfile(saved, good)
        with open(saved, "r+b") as f:
            f.truncate(os.path.getsize(good) // 2)
        start_refused(store, "truncated")
        shutil.copyfile(good, saved)
        with open(saved, "r+b") as f:
            f.seek(os.path.getsize(good) // 3)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x40]))
        start_refused(store, "damaged saved-state file")
        shutil.copyfile(good, saved)
        cfg = os.path.join(d, "vm.json")
        with open(cfg, "rb") as f:
            raw = f.read()
        with open(cfg, "w") as f:
            json.dump(dict(json.loads(raw), clock_offset=3600), f)
        start_refused(store, "another configuration")
        with open(cfg, "wb") as f:  # the identity is the document's bytes: exactly what the store wrote
            f.write(raw)
        shutil.copyfile(good, saved)

        time.sleep(10)  # the guest's clock must be moved on by the time sync service
        r = vm(store, "start", "guest")
        if r.returncode:
            with open(cfg) as f:
                raise AssertionError((r.stderr, f.read()))
        assert "resumed from its saved state" in r.stdout, r.stdout
        assert not os.path.exists(saved)
        # The same shell, where it was: the marker, the loop still counting, new commands run.
        out = guest_sh(store, "cat /mnt/t/marker; a=$(cat /mnt/t/count); sleep 3; b=$(cat /mnt/t/count); "
                              "echo COUNT $a $b; echo NEW-$((7*6))-CMD; date +%s")
        assert "KEEP-42-ME" in out and "NEW-42-CMD" in out, out
        a, b = map(int, re.search(r"COUNT (\d+) (\d+)", out).groups())
        assert b > a, out
        guest_now = int(re.findall(r"^(\d{9,})$", out, re.M)[-1])
        assert abs(guest_now - time.time()) < 30, (guest_now, time.time())
        # The screen as it was, in a screenshot and through the VNC server (the driver was not told
        # anything: the VRAM came back where it was, with its contents); then keys reach tty1's shell.
        after = screenshot(store, str(tmp_path / "after.png"))
        assert after == screen, "the screen changed across the save"
        w, h, frame = vnc_frame(store)
        assert (w, h) == (1024, 768)
        assert frame[2::4] == after[2][0::3] and frame[1::4] == after[2][1::3] and frame[0::4] == after[2][2::3]
        r = control(store, "type", "echo KBD-$((6*7))-TYPED > /tmp/kbd")
        assert r.returncode == 0 and "typed" in r.stdout, (r.stdout, r.stderr)
        assert control(store, "key", "enter").returncode == 0
        time.sleep(2)
        out = guest_sh(store, "cat /tmp/kbd")
        assert "KBD-42-TYPED" in out, out
        if net:  # the same adapter, its driver not reset: the peer answers
            out = guest_sh(store, PING + "; cat /sys/class/net/eth0/carrier", timeout=180)
            assert "PING-OK-42" in out, out
        # The service: stop-vms (the host going down) saves the VM, as its automatic_stop says, and
        # the service of the next boot (another boot id) restores it (automatic_start if_running).
        service = Service(store, tmp_path)
        try:
            r = subprocess.run([gen2vm_binary(), "service", "stop-vms", "--store", str(store), "--timeout", "120"],
                               capture_output=True, text=True, timeout=700, env=env_direct())
            assert r.returncode == 0 and "VM 'guest' saved" in r.stdout, (r.stdout, r.stderr)
        finally:
            service.stop()
        assert listing(store)["guest"]["state"] == "Saved"
        stopped = os.path.join(str(store), "gen2vmd.stopped")
        with open(stopped) as f:
            st = json.load(f)
        assert st["stopped"] == ["guest"], st
        with open(stopped, "w") as f:
            json.dump(dict(st, boot_id="another-boot"), f)
        service = Service(store, tmp_path)
        try:
            deadline = time.time() + 300  # vm start deletes the state once the VM answers
            while time.time() < deadline and (os.path.exists(saved) or listing(store)["guest"]["state"] != "Running"):
                time.sleep(2)
            assert listing(store)["guest"]["state"] == "Running", service.text()
            assert "automatic start (if_running; stopped as the host went down)" in service.text(), service.text()
            assert not os.path.exists(saved), service.text()
            out = guest_sh(store, "cat /mnt/t/marker; cat /tmp/kbd" + ("; " + PING if net else ""), timeout=180)
            assert "KEEP-42-ME" in out and "KBD-42-TYPED" in out, out
            assert not net or "PING-OK-42" in out, out
        finally:
            service.stop()
        # Disk I/O: what was written before the save reads back, and new writes and reads work.
        out = guest_sh(store, "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/sdb bs=4096 count=64 2>/dev/null | md5sum; "
                              "dd if=/dev/urandom of=/mnt/t/b bs=4096 count=32 2>/dev/null; "
                              "dd if=/mnt/t/b of=/dev/sdb bs=4096 seek=100 conv=fsync 2>/dev/null; sync; "
                              "echo 3 > /proc/sys/vm/drop_caches; md5sum /mnt/t/b; "
                              "dd if=/dev/sdb bs=4096 skip=100 count=32 2>/dev/null | md5sum")
        sums = re.findall(r"([0-9a-f]{32})", out)
        assert sums[0] == before_sum and sums[1] == sums[2], out
        time.sleep(6)  # beats of the heartbeat
        v = listing(store)["guest"]
        assert v["state"] == "Running" and v["status"] == "heartbeat ok", v
        # An adapter added hot: the VM no longer has the hardware its configuration gave it at start
        # (a restore builds that), so a save is refused naming why, and it runs on.
        ok(store, "add-nic", "guest", "pair=g2v-save-nic", timeout=120)
        r = vm(store, "stop", "guest", "--save")
        assert r.returncode == 2 and "network adapters changed since it started" in r.stderr, r.stderr
        assert listing(store)["guest"]["state"] == "Running"
        # And the shutdown service still works.
        r = ok(store, "stop", "guest", "--timeout", "150", timeout=250)
        assert "shut down" in r.stdout, r.stdout
        assert listing(store)["guest"]["state"] == "Off"
    finally:
        vm(store, "stop", "guest", "--turn-off")
        if net:
            subprocess.run(["ip", "link", "del", TAP], capture_output=True)
        with open(os.path.join(d, "vm.log"), errors="replace") as f:
            print(f.read()[-4000:])
