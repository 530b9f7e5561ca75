"""`make integration`: the pytest suite in tests/integration, on the right host for each test.

A probe decides (not a module name): the freestanding guest tests/guest/usermode.elf makes two system
calls from ring 3. Where they enter the guest's ring 0 (hardware VMX/SVM), every test runs here.
Where they do not (nested PVM: a guest's user mode cannot make system calls), the tests marked
real_guest (a real guest OS with its userspace, real EFI loaders to Linux) run inside the nested test
host (tests/nested/run), and all others here: instruction completion only happens on such a host,
and the freestanding-guest, CLI, disk and firmware tests need no guest userspace.

Everything the nested host needs from the network (kernels, EFI binaries: apt) is fetched before it
starts. The last line sums up both runs as "N passed, N failed"."""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "nested"))
PY = "/usr/bin/python3"
# The real-guest run's own limit (the whole pytest inside the nested host) and each test's.
NESTED_TIMEOUT = int(os.environ.get("GEN2VM_NESTED_TIMEOUT", "2400"))
TEST_TIMEOUT = int(os.environ.get("GEN2VM_TEST_TIMEOUT", "900"))


def host_runs_guest_user_mode():
    """True when a guest's SYSCALL from ring 3 reaches its ring 0 on this host's KVM."""
    from conftest import guest_user_mode_works
    return guest_user_mode_works()


def prefetch():
    """What the real-guest tests fetch with apt, fetched here (the nested host has no network)."""
    import efi_images
    import linux_guest
    import nested
    linux_guest.fetch_kernel()
    linux_guest.fetch_hyperv_daemons()
    efi_images.fetch_efi_binaries()
    nested.fetch()


def counts(text):
    """pytest's closing line as {'passed': n, 'failed': n, ...}."""
    found = {}
    for line in text.splitlines()[::-1]:
        if re.search(r"\d+ (passed|failed|error|skipped|deselected)", line) and " in " in line:
            for n, what in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", line):
                found[what.rstrip("s") if what.startswith("error") else what] = int(n)
            break
    return found


RESULT_LINE = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS|RERUN)\b")


def run_pytest(cmd, env, timed=False):
    """Runs cmd, streaming its output; returns (exit code, output). timed: pytest -v's result lines
    are timed as they arrive (a test's time is the wait since the line before it: setup included),
    and the slowest are listed at the end, even when the run was cut short (pytest's own --durations
    is lost then)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    out, times = [], []
    last = time.monotonic()
    for line in p.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        out.append(line)
        m = RESULT_LINE.match(line)
        if timed and m:
            now = time.monotonic()
            times.append((now - last, m.group(1), m.group(2)))
            last = now
    rc = p.wait()
    if times:
        print("integration: the slowest tests here (seconds since the result before; %d results in %.0f s):"
              % (len(times), sum(t for t, _, _ in times)))
        for t, node, what in sorted(times, reverse=True)[:30]:
            print("%8.1f  %s %s" % (t, node, what))
        sys.stdout.flush()
    return rc, "".join(out)


# The nested host's emulator has a fault of its own (README, "The nested test host"): now and then it
# delivers an interrupt twice, which kills the nested host's kernel or a guest in it. So a real_guest
# test that fails runs once more (pytest-rerunfailures; its reruns are counted in the summary), and
# when the nested host itself dies, the tests it had not finished run in a new one. CI saw it die twice
# in one run (2026-12-07, a kernel panic in its exception entry both times), so up to three new hosts
# are started; each death names the test it interrupted and is counted in the summary line.
NESTED_ATTEMPTS = 4


def collect(args, env):
    """Node ids of the real_guest tests (collected here: collection runs no VM)."""
    p = subprocess.run([PY, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "real_guest",
                        "tests/integration"] + args, capture_output=True, text=True, env=env, cwd=ROOT)
    return [line for line in p.stdout.splitlines() if "::" in line]


OUTCOME = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "skipped", "XFAIL": "xfailed",
           "XPASS": "xpassed"}


def run_nested(args, env, extra=()):
    """The real_guest tests (and the extra node ids) in the nested test host: (exit code, counts)."""
    pending = collect(args, env) + [n for n in extra if n]
    counts = {}
    env = dict(env)
    env.pop("GEN2VM_GUEST_USER_MODE", None)  # the nested host answers for itself
    for attempt in range(NESTED_ATTEMPTS):
        cmd = [os.path.join(ROOT, "tests", "nested", "run"), "--timeout", str(NESTED_TIMEOUT), "--",
               PY, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "timeout", "--timeout=%d" % TEST_TIMEOUT,
               "-p", "rerunfailures", "--reruns", "1", "--durations=40"] + args + sorted(pending)
        rc, out = run_pytest(cmd, env, timed=True)
        for node, what in re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", out, re.M):
            counts[OUTCOME[what]] = counts.get(OUTCOME[what], 0) + 1
            if node in pending:
                pending.remove(node)
        reruns = len(re.findall(r"^tests/\S+::\S+ RERUN\b", out, re.M))
        if reruns:
            counts["rerun"] = counts.get("rerun", 0) + reruns
        if rc not in (124, 125) or not pending:  # pytest finished in the nested host: its verdict stands
            return rc, counts
        counts["host death"] = counts.get("host death", 0) + 1
        # pytest runs the node ids in the order given, so the first one pending is the interrupted one.
        print("integration: the nested test host failed (above) during %s" % sorted(pending)[0], flush=True)
        if attempt + 1 < NESTED_ATTEMPTS:
            print("integration: the %d test(s) it had not finished run in a new one" % len(pending), flush=True)
    counts["failed"] = counts.get("failed", 0) + len(pending)
    return 1, counts


def main(args):
    env = dict(os.environ)
    direct = host_runs_guest_user_mode()
    env["GEN2VM_GUEST_USER_MODE"] = "1" if direct else "0"
    env["GEN2VM_NO_SKIP"] = "1"  # a skip here is a check CI did not make: it fails (conftest.py)
    base = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=25", "tests/integration"] + args
    if direct:
        print("integration: this host's KVM runs guest user mode: every test runs here", flush=True)
        rc, _ = run_pytest(base, env)
        return rc
    from conftest import have_kvm
    moved = []
    if have_kvm():
        print("integration: this host's KVM cannot run guest user mode (tests/guest/usermode.c): the "
              "real_guest tests run in the nested test host (tests/nested), the others here", flush=True)
    else:
        # No KVM at all (e.g. a VM without nested virtualization): what needs /dev/kvm runs in the
        # nested host too; the conftest hook lists those tests instead of failing them.
        print("integration: this host has no /dev/kvm: the real_guest tests and every test that needs KVM run "
              "in the nested test host (tests/nested), the others here", flush=True)
        fd, listing = tempfile.mkstemp(prefix="gen2vm-kvm-tests-")
        os.close(fd)
        env["GEN2VM_KVM_ELSEWHERE"] = listing
    prefetch()
    total = {}
    rc_bare, out = run_pytest(base + ["-m", "not real_guest"], env)
    bare = counts(out)
    if env.get("GEN2VM_KVM_ELSEWHERE"):
        moved = sorted(set(open(env["GEN2VM_KVM_ELSEWHERE"]).read().split()))
        os.unlink(env.pop("GEN2VM_KVM_ELSEWHERE"))
        bare["skipped"] = bare.get("skipped", 0) - len(moved)  # they run below
    for k, v in bare.items():
        total[k] = total.get(k, 0) + v
    print("integration: the real_guest tests%s, in the nested test host" %
          (" and the %d that need KVM" % len(moved) if moved else ""), flush=True)
    rc_nested, got = run_nested(args, env, moved)
    for k, v in got.items():
        total[k] = total.get(k, 0) + v
    extra = "".join(", %d %s" % (total[k], k) for k in ("skipped", "xfailed", "error", "rerun", "host death") if total.get(k))
    print("integration: %d passed, %d failed%s" % (total.get("passed", 0), total.get("failed", 0), extra))
    return 0 if rc_bare == 0 and rc_nested == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
