"""The nested test host itself (tests/nested/run): it boots, its /dev/kvm and 9p work, the command's
directory, output and exit code come back both ways, and a command that hangs is ended with a clear
message within its timeout. It runs on the bare host (it starts the nested host itself)."""
import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "nested", "run")

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-system-x86_64"),
                                reason="qemu-system-x86 is not installed (scripts/deps.sh test)")


def nested(*cmd, timeout=None, cwd=ROOT):
    args = [RUN] + (["--timeout", str(timeout)] if timeout else []) + ["--"] + list(cmd)
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=900)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def test_command_runs_with_kvm_9p_cwd_output_and_exit_code(tmp_path):
    marker = tmp_path / "from-host.txt"
    marker.write_text("written on the bare host\n")
    script = ("cat %s; pwd; test -c /dev/kvm && echo KVM-OK; grep -c 9p /proc/filesystems; "
              "grep -q ' / 9p ' /proc/mounts && echo ROOT-IS-9P; "
              "echo to-stderr >&2; echo written-inside > %s/from-nested.txt; exit 7") % (marker, tmp_path)
    rc, out, err, _ = nested("/bin/sh", "-c", script, cwd=str(tmp_path))
    assert rc == 7, out + err
    lines = out.splitlines()
    assert lines[0] == "written on the bare host", out + err
    assert lines[1] == str(tmp_path), out  # the current directory is kept
    assert "KVM-OK" in lines and "ROOT-IS-9P" in lines, out + err
    assert "to-stderr" in err and "to-stderr" not in out
    assert (tmp_path / "from-nested.txt").read_text() == "written-inside\n"  # writes reach the host
    rc, out, err, _ = nested("/bin/true")
    assert rc == 0, out + err


def test_hung_command_is_ended_with_a_message():
    rc, out, err, took = nested("/bin/sleep", "100000", timeout=20)
    assert rc == 124, out + err
    assert "did not end within 20 s" in err, err
    assert took < 20 + 180, took  # boot + timeout + teardown, not the sleep
