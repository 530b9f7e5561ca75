"""Crash safety: SIGKILL the writer at random moments during writes, block allocations and trims
(160 kills), `vhd compact` while it moves blocks and truncates (40 VHDX and 12 VHD attempts) and
merges, then reopen: the log replays, qemu-img check finds no error, and every write flushed before
the kill reads back (the verifier checks byte by byte; compacted VHDs are compared with the data
from before)."""
import os
import random
import signal
import subprocess
import time

from conftest import run


def _kill_after(args, delay):
    p = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    p.wait()
    return p


def _qemu_check(path, fmt="vhdx"):
    r = run("qemu-img", "check", "-f", fmt, path, check=False)
    assert r.returncode == 0, f"qemu-img check {path}: {r.stdout}{r.stderr}"


def test_kill_during_writes_allocations_trims(gen2vm_fast, qemu, tmp_path):
    rng = random.Random(20240601)
    kills = 0
    t0 = time.time()
    compact_kills = compact_done = 0
    # 8 images x 25 kills: fresh images keep allocations frequent (1 MiB blocks, 64 MiB disk).
    # Every fifth kill lands in `vhd compact` instead (the writer's trims leave free space for it
    # to fill; a whole compact takes about 0.15 s here), which the writer then resumes after.
    for img_no in range(8):
        img = tmp_path / f"crash{img_no}.vhdx"
        journal = tmp_path / f"crash{img_no}.journal"
        seed = rng.randrange(1 << 30)
        run(gen2vm_fast, "vhd", "new", img, "--size", "64M", "--block-size", "1M")
        for k in range(25):
            if k % 5 == 4:
                p = _kill_after([gen2vm_fast, "vhd", "compact", img], rng.uniform(0.0, 0.15))
                assert p.returncode in (0, -signal.SIGKILL), p.stderr.read().decode()
                compact_kills += p.returncode == -signal.SIGKILL
                compact_done += p.returncode == 0
            else:
                p = _kill_after([gen2vm_fast, "vhd", "selftest-writer", img, "--seed", seed,
                                 "--journal", journal], rng.uniform(0.01, 0.25))
                assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()
                kills += 1
            r = run(gen2vm_fast, "vhd", "selftest-verify", img, "--seed", seed, "--journal", journal,
                    check=False)
            assert r.returncode == 0, r.stdout + r.stderr
            _qemu_check(img)
    assert kills >= 160
    assert compact_kills >= 10, (compact_kills, compact_done)  # most land inside a compact
    print(f"{kills} writer kills, {compact_kills} compact kills ({compact_done} compacts finished)"
          f" in {time.time() - t0:.1f}s")


def test_kill_during_vhd_compact(gen2vm_fast, qemu, tmp_path):
    """VHD has no log: each step of a move (copy + sync, BAT entry + sync) and of the shrink (footer
    at the new end + sync, truncate) must leave a valid file that reads the same."""
    rng = random.Random(4242)
    frag = tmp_path / "frag.vhd"
    run(gen2vm_fast, "vhd", "new", frag, "--size", "160M", "--block-size", "1M")
    # Allocations in a scattered order and whole blocks zeroed then discarded: gaps everywhere.
    run("qemu-io", "-f", "vpc", *sum((["-c", f"write -P {0x30 + b % 64} {b}M 1M"] for b in
                                      rng.sample(range(150), 130)), []), frag)
    run("qemu-io", "-f", "vpc", "-c", "write -P 0 8M 16M", "-c", "write -P 0 40M 12M", frag)
    want = tmp_path / "want.raw"
    run("qemu-img", "convert", "-f", "vpc", "-O", "raw", frag, want)
    wanted = open(want, "rb").read()
    img, got = tmp_path / "c.vhd", tmp_path / "got.raw"
    # Kill moments spread over one whole compact's duration (the fastest of three measured here,
    # so that a loaded machine does not stretch the delays past the end of the compact).
    whole = 1e9
    for _ in range(3):
        run("cp", frag, img)
        t = time.time()
        run(gen2vm_fast, "vhd", "compact", img)
        whole = min(whole, time.time() - t)
    kills = 0
    for _ in range(12):
        run("cp", frag, img)
        p = _kill_after([gen2vm_fast, "vhd", "compact", img], rng.uniform(0.0, whole))
        kills += p.returncode == -signal.SIGKILL
        r = run("qemu-img", "compare", "-f", "vpc", "-F", "raw", img, want, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        if got.exists():
            got.unlink()
        run(gen2vm_fast, "vhd", "convert", img, got, "--to", "raw")
        assert open(got, "rb").read() == wanted
        # And the interrupted compact finishes from there.
        run(gen2vm_fast, "vhd", "compact", img)
        r = run("qemu-img", "compare", "-f", "vpc", "-F", "raw", img, want, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.getsize(img) < os.path.getsize(frag)
    print(f"{kills} kills during VHD compact (a whole one takes {whole:.3f}s)")
    assert kills >= 5


def test_kill_during_merge(gen2vm_fast, qemu, tmp_path):
    rng = random.Random(77)
    base = tmp_path / "base.vhdx"
    child = tmp_path / "child.vhdx"
    run("qemu-img", "create", "-f", "vhdx", "-o", "block_size=1M", base, "48M")
    run("qemu-io", "-f", "vhdx", "-c", "write -P 0x41 0 40M", base)
    run(gen2vm_fast, "vhd", "new", child, "--parent", base, "--block-size", "1M")
    run(gen2vm_fast, "vhd", "selftest-writer", child, "--seed", 5, "--journal", tmp_path / "j", "--ops", 300)
    want = tmp_path / "want.raw"
    run(gen2vm_fast, "vhd", "convert", child, want, "--to", "raw")
    kills = 0
    for _ in range(40):
        p = _kill_after([gen2vm_fast, "vhd", "merge", child], rng.uniform(0.002, 0.04))
        run(gen2vm_fast, "vhd", "repair", base)
        _qemu_check(base)
        if p.returncode == 0 or not child.exists():
            break  # done (possibly killed after removing the merged child)
        kills += 1
        # The merge writes the child's own data into the parent and keeps the parent's
        # DataWriteGuid, so the chain still opens and shows the same disk.
        got = tmp_path / "got.raw"
        if got.exists():
            got.unlink()
        run(gen2vm_fast, "vhd", "convert", child, got, "--to", "raw")
        assert open(got, "rb").read() == open(want, "rb").read()
    else:
        run(gen2vm_fast, "vhd", "merge", child)
    assert not child.exists()
    _qemu_check(base)
    r = run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", base, want, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"merge killed {kills} times before completing")


def test_qemu_replays_our_log(gen2vm_fast, qemu, tmp_path):
    """Our log entries are valid MS-VHDX: qemu's replay of a killed writer's image equals ours."""
    import shutil
    rng = random.Random(5)
    for i in range(5):
        img = tmp_path / f"l{i}.vhdx"
        run(gen2vm_fast, "vhd", "new", img, "--size", "64M", "--block-size", "1M")
        _kill_after([gen2vm_fast, "vhd", "selftest-writer", img, "--seed", i, "--journal",
                     tmp_path / f"j{i}"], rng.uniform(0.05, 0.3))
        theirs = tmp_path / f"q{i}.vhdx"
        shutil.copy(img, theirs)
        r = run("qemu-img", "check", "-r", "all", "-f", "vhdx", theirs, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        run(gen2vm_fast, "vhd", "selftest-verify", img, "--seed", i, "--journal", tmp_path / f"j{i}")
        a, b = tmp_path / f"a{i}.raw", tmp_path / f"b{i}.raw"
        run(gen2vm_fast, "vhd", "convert", img, a, "--to", "raw")
        run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", theirs, b)
        assert open(a, "rb").read() == open(b, "rb").read()
