"""The control socket of a running VM, as a user drives it with `gen2vm control`."""
import json
import subprocess
import time

import pytest

from conftest import gen2vm_binary, guest_elf, have_kvm, run_vm

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")


def ctl(sock, *args):
    return run_vm(["control", sock] + list(args), timeout=30)


def start(tmp_path, *extra):
    sock = str(tmp_path / "vm.sock")
    p = subprocess.Popen([gen2vm_binary(), "run", "--elf", guest_elf("idle"), "--debugcon", "stdio",
                          "--control", sock] + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for _ in range(100):
        if ctl(sock, "status")[0] == 0:
            break
        time.sleep(0.1)
    return p, sock


def test_pause_resume_stop(tmp_path):
    p, sock = start(tmp_path)
    try:
        # The run state first; then the heartbeat (this guest has no integration services driver).
        assert ctl(sock, "status")[1].strip() == "ok: running; heartbeat no contact"
        assert ctl(sock, "pause")[0] == 0
        assert ctl(sock, "status")[1].strip().startswith("ok: paused;")
        assert ctl(sock, "resume")[0] == 0
        rc, out, _ = ctl(sock, "status", "--json")
        doc = json.loads(out.strip()[len("ok: "):])
        assert rc == 0 and doc["state"] == "running" and doc["heartbeat"] == {"state": "no contact"}, out
        assert doc["uptime_s"] >= 0
        assert ctl(sock, "status", "--bogus")[1].strip() == "error: usage: status [--json]"
        # The VM's clock: shown, moved ahead, refused with a reason when the offset is not a number.
        rc, out, _ = ctl(sock, "clock")
        assert rc == 0 and "(host UTC +0 s)" in out, out
        rc, out, _ = ctl(sock, "clock", "--offset", "+3600")
        assert rc == 0 and "(host UTC +3600 s)" in out and "steps its clock" in out, out
        rc, out, _ = ctl(sock, "clock", "--offset", "soon")
        assert rc == 1 and "clock --offset 'soon': expected seconds" in out, out
        rc, out, _ = ctl(sock, "frobnicate")
        assert rc == 1 and "unknown command 'frobnicate'" in out
        rc, out, _ = ctl(sock, "help")
        assert rc == 0 and "disk-add PATH" in out
        assert ctl(sock, "stop")[0] == 0
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()
        p.wait()


def test_storage_commands_report_errors(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * (1 << 20))
    p, sock = start(tmp_path)
    try:
        rc, out, _ = ctl(sock, "disk-add", str(img))
        assert rc == 0 and out.strip() == "ok: controller 0 lun 0", out
        rc, out, _ = ctl(sock, "disk-add", str(img), "lun=0")
        assert rc == 1 and "taken" in out or "in use" in out, out
        rc, out, _ = ctl(sock, "disk-remove", "lun=5")
        assert rc == 1 and "no drive at lun 5" in out
        rc, out, _ = ctl(sock, "dvd-eject", "lun=0")
        assert rc == 1 and "not a DVD drive" in out
        rc, out, _ = ctl(sock, "disk-add", "/nonexistent.vhdx")
        assert rc == 1 and "/nonexistent.vhdx" in out
        assert ctl(sock, "disk-remove", "lun=0")[0] == 0
        ctl(sock, "stop")
        p.wait(timeout=30)
    finally:
        p.kill()
        p.wait()


def test_unreachable_socket(tmp_path):
    rc, _, err = ctl(str(tmp_path / "none.sock"), "status")
    assert rc == 2 and "is the VM running with --control" in err
