import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binary():
    for p in ("build/san/gen2vm", "build/gen2vm"):
        full = os.path.join(ROOT, p)
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
    """The sanitized build is what the suite tests (make check builds it)."""
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
