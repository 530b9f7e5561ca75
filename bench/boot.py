"""bench/boot: gen2vm against QEMU (-M microvm and -M q35, -accel kvm) booting the same Debian kernel
and busybox initramfs to the same init marker, in the same host, median of N runs each (BOOT_RUNS,
default 5). Prints wall time from process start to the marker, exits to userspace by type (counted by
the host kernel's kvm:kvm_userspace_exit tracepoint, the same for both VMMs) and the VMM's peak RSS,
with the ratios against QEMU microvm.

Where this host's KVM cannot run guest user mode (nested PVM), the whole bench runs in the nested test
host (tests/nested): bench/boot.sh decides. There every time is under full emulation (TCG): compare the
ratios, not the seconds."""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs  # noqa: E402

MARKER = "GEN2VM-BENCH-INIT"
# The same command line for every VMM; quiet keeps console output (2 exits a byte on any 16550) out of
# what is measured.
CMDLINE = "console=ttyS0 quiet panic=-1"
RUNS = int(os.environ.get("BOOT_RUNS", "5"))
LIMIT = int(os.environ.get("BOOT_BENCH_TIMEOUT", "300"))
TRACE = "/sys/kernel/tracing"


def tracing_on():
    """Counts kvm_userspace_exit events per exit reason through tracefs; None where it is unavailable."""
    if not os.path.isdir(TRACE + "/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACE], capture_output=True)
    ev = TRACE + "/events/kvm/kvm_userspace_exit/enable"
    if not os.path.exists(ev):
        return None
    with open(TRACE + "/buffer_size_kb", "w") as f:
        f.write("65536")
    with open(TRACE + "/trace", "w") as f:
        f.write("")
    with open(ev, "w") as f:
        f.write("1")
    return ev


def tracing_collect(ev):
    """The exits traced since tracing_on, by reason (one VM runs at a time, so all are its own)."""
    with open(ev, "w") as f:
        f.write("0")
    counts = {}
    with open(TRACE + "/trace", errors="replace") as f:
        for line in f:
            if "kvm_userspace_exit" in line and "reason" in line:
                reason = line.split("reason")[1].strip().split()[0].strip("()")
                counts[reason] = counts.get(reason, 0) + 1
    with open(TRACE + "/trace", "w") as f:
        f.write("")
    return counts


def boot(cmd, log):
    """One boot: (seconds to the marker or None, exit counts by reason, peak RSS KiB, exit code)."""
    if os.path.exists(log):
        os.unlink(log)
    ev = tracing_on()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = status = ru = None
    # os.wait4 (not Popen.poll, which would reap the child first) gives the VMM's own peak RSS.
    while time.monotonic() - t0 < LIMIT:
        pid, st, r = os.wait4(p.pid, os.WNOHANG)
        if pid:
            status, ru = st, r
            break
        if marker is None and os.path.exists(log) and MARKER in open(log, errors="replace").read():
            marker = time.monotonic() - t0
        time.sleep(0.01)
    if status is None:
        p.kill()
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if marker is None and os.path.exists(log) and MARKER in open(log, errors="replace").read():
        marker = time.monotonic() - t0
    counts = tracing_collect(ev) if ev else {}
    return marker, counts, ru.ru_maxrss, os.waitstatus_to_exitcode(status)


def main():
    k = fetch_kernel()
    work = os.path.join(ROOT, "build", "bench-boot")
    os.makedirs(work, exist_ok=True)
    initrd = os.path.join(work, "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "echo %s\npoweroff -f\n" % MARKER)
    log = os.path.join(work, "com1.log")
    gen2vm = os.path.join(ROOT, "build", "gen2vm")
    qemu = "/usr/bin/qemu-system-x86_64"
    common_q = ["-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-serial", "file:" + log, "-no-reboot", "-kernel", k["vmlinuz"],
                "-initrd", initrd, "-append", CMDLINE]
    vmms = [
        ("gen2vm", [gen2vm, "run", "--memory", "256M", "--cpus", "1", "--kernel", k["vmlinuz"], "--initrd", initrd,
                    "--cmdline", CMDLINE, "--com1", "file:" + log, "--no-reboot"]),
        ("QEMU microvm", [qemu, "-M", "microvm"] + common_q),
        ("QEMU q35", [qemu, "-M", "q35"] + common_q),
    ]
    print("bench/boot: Debian %s, 1 vCPU, 256 MiB, busybox initramfs, command line \"%s\", %d runs each"
          % (k["version"], CMDLINE, RUNS))
    res = {}
    for turn in range(RUNS):  # interleaved, so the host's drifts fall on all alike
        for name, cmd in vmms:
            res.setdefault(name, []).append(boot(cmd, log))
    summary = {}
    for name, _ in vmms:
        runs = res[name]
        times = [m for m, _, _, _ in runs if m is not None]
        exits = [sum(c.values()) for _, c, _, _ in runs]
        rss = [r for _, _, r, _ in runs]
        kinds = {}
        for _, c, _, _ in runs:
            for kk, v in c.items():
                kinds[kk] = kinds.get(kk, 0) + v
        summary[name] = (statistics.median(times) if times else None, statistics.median(exits) if exits else 0,
                         statistics.median(rss))
        t, e, r = summary[name]
        print("  %-13s start -> init marker: %s (%d of %d runs reached it); exits to userspace: %d "
              "(median; by type over all runs: %s); peak RSS %.1f MiB" % (
                  name, "%.2f s" % t if t else "not reached", len(times), len(runs), e,
                  ", ".join("%s %d" % kv for kv in sorted(kinds.items(), key=lambda kv: -kv[1])) or "not traced",
                  r / 1024))
    g, m = summary["gen2vm"], summary["QEMU microvm"]
    if g[0] and m[0]:
        print("  gen2vm/QEMU microvm: time to init %.2fx (goal <= 0.50: %s), exits %.2fx, RSS %.2fx" % (
            g[0] / m[0], "MET" if g[0] / m[0] <= 0.5 else "not met", g[1] / max(m[1], 1), g[2] / m[2]))
    q = summary["QEMU q35"]
    if g[0] and q[0]:
        print("  gen2vm/QEMU q35:     time to init %.2fx, exits %.2fx, RSS %.2fx" % (
            g[0] / q[0], g[1] / max(q[1], 1), g[2] / q[2]))
    print("  gen2vm exits to userspace, start to power-off: %d (goal <= 2,000: %s)" % (
        g[1], "MET" if g[1] <= 2000 else "not met"))


if __name__ == "__main__":
    main()
