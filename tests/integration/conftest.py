import errno
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from efi_images import fetch_efi_binaries
from linux_guest import fetch_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binary():
    full = gen2vm_binary()
    if os.access(full, os.X_OK):
        return full
    pytest.skip("gen2vm not built (make integration builds it)")


@pytest.fixture(scope="session")
def gen2vm():
    return _binary()


@pytest.fixture(scope="session")
def gen2vm_fast():
    """The release build, for tests that run the binary hundreds of times."""
    full = os.path.join(ROOT, "build/gen2vm")
    return full if os.access(full, os.X_OK) else _binary()


@pytest.fixture(scope="session")
def kernel():
    """Debian's kernel and its modules (linux_guest.fetch_kernel), fetched once into build/."""
    return fetch_kernel()


@pytest.fixture(scope="session")
def efi_bins():
    """Debian's EFI binaries (efi_images.fetch_efi_binaries), fetched once into build/efi-debs."""
    return fetch_efi_binaries()


@pytest.fixture(scope="session")
def qemu():
    if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
        pytest.skip("qemu-utils not installed (scripts/deps.sh test)")
    return True


def run(*args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


# ---- VM helpers ----

BUILD = os.path.join(ROOT, "build")


def gen2vm_binary():
    """The sanitized build is what the suite tests (make check builds it); GEN2VM_BINARY runs the tests on
    another build or a wrapper (a debugger, a tracer)."""
    if os.environ.get("GEN2VM_BINARY"):
        return os.environ["GEN2VM_BINARY"]
    san = os.path.join(BUILD, "san", "gen2vm")
    return san if os.path.exists(san) else os.path.join(BUILD, "gen2vm")


def run_vm(args, timeout=120, binary=None):
    """Runs gen2vm with args; returns (exit code, stdout, stderr)."""
    env = dict(os.environ)
    # KVM_RUN blocks in the kernel for long stretches; LSan's leak check at exit is what we want.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    p = subprocess.run([binary or gen2vm_binary()] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def guest_elf(name):
    return os.path.join(BUILD, "guest", name + ".elf")


def have_kvm():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def loopback_up():
    """Makes 127.0.0.1 reachable for the TCP tests (VNC, the web console): the nested test host boots
    with its loopback interface down. Brought up only when it is down and we may (root)."""
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 9))
    except OSError as e:
        if e.errno == errno.ENETUNREACH and os.geteuid() == 0:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    finally:
        s.close()


_user_mode = None


def guest_user_mode_works():
    """Whether this host's KVM runs a guest's user mode: tests/guest/usermode.elf's two SYSCALLs from
    ring 3 must reach its ring 0 (on nested PVM they do not). A probe, not a module name; make check
    passes its answer down in GEN2VM_GUEST_USER_MODE."""
    global _user_mode
    if _user_mode is None:
        known = os.environ.get("GEN2VM_GUEST_USER_MODE")
        if known in ("0", "1"):
            _user_mode = known == "1"
        elif not have_kvm():
            _user_mode = False
        else:
            try:
                p = subprocess.run([gen2vm_binary(), "run", "--elf", guest_elf("usermode"), "--debugcon", "stdio"],
                                   capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
                _user_mode = p.returncode == 0 and "handler ran at CPL 0" in p.stdout
            except (OSError, subprocess.TimeoutExpired):
                _user_mode = False
    return _user_mode


def pytest_configure(config):
    config.addinivalue_line("markers", "real_guest: boots a real guest OS to its userspace or needs real EFI "
                            "loaders that go on to Linux; where this host's KVM cannot run guest user mode, make "
                            "check runs these in the nested test host (tests/nested)")


def pytest_collection_modifyitems(config, items):
    marked = [i for i in items if i.get_closest_marker("real_guest")]
    if marked and not guest_user_mode_works():
        why = pytest.mark.skip(reason="this host's KVM cannot run guest user mode: `make check` runs this test in "
                                      "the nested test host (or: tests/nested/run python3 -m pytest ...)")
        for item in marked:
            item.add_marker(why)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under `make check` (GEN2VM_NO_SKIP=1) a skipped test fails: each skip in this suite is a guard for
    a host that lacks something (/dev/kvm, a tool, root), and a check CI silently did not make is a
    failure there, with the guard's reason."""
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("GEN2VM_NO_SKIP") == "1" and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        moved = os.environ.get("GEN2VM_KVM_ELSEWHERE")
        if moved and "needs /dev/kvm" in reason:
            # A host without /dev/kvm: make check runs this test in the nested test host instead.
            with open(moved, "a") as f:
                f.write(item.nodeid + "\n")
            return
        rep.outcome = "failed"
        rep.longrepr = "skipped under make check, where every test must run: " + reason


class VmProcess:
    """A running `gen2vm run`: stderr gathered by a thread (the VMM's log, --stats), consoles in files
    (read on demand), the control socket. Subclasses choose the arguments and the default text that
    wait_for searches: "err" (stderr) or "out" (the console files, in order)."""

    default_where = "err"

    def __init__(self, args, consoles=(), sock=None):
        self.consoles = list(consoles)
        self.sock = sock
        self.p = subprocess.Popen([gen2vm_binary(), "run"] + [str(a) for a in args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err = ""
        self._t = threading.Thread(target=self._read_err, daemon=True)
        self._t.start()

    def _read_err(self):
        for line in self.p.stderr:
            self.err += line

    def out(self):
        text = ""
        for f in self.consoles:
            if os.path.exists(f):
                text += open(f, errors="replace").read()
        return text

    def text(self, where=None):
        return self.err if (where or self.default_where) == "err" else self.out()

    def wait_for(self, pattern, timeout, where=None):
        """The first match of pattern, waiting up to timeout seconds or until the VM ends; None if absent."""
        end = time.time() + timeout
        while time.time() < end and self.p.poll() is None:
            m = re.search(pattern, self.text(where))
            if m:
                return m
            time.sleep(0.2)
        time.sleep(0.2)  # what the VM wrote just before it ended
        return re.search(pattern, self.text(where))

    def control(self, *args):
        return run(gen2vm_binary(), "control", self.sock, *args).stdout

    def finish(self, timeout=120):
        """Waits for the VM to end (killing it after timeout); returns its exit code. A VM still running
        after timeout fails the test with the end of its console and its log."""
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        self._t.join(5)
        if rc is None:
            pytest.fail("the VM was still running after %d s; its console ends:\n%s\nits log ends:\n%s"
                        % (timeout, self.out()[-3000:], self.err[-2000:]))
        return rc

    def stop(self):
        self.p.kill()
        return self.finish()
