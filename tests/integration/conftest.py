import os
import subprocess
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")


def gen2vm_binary():
    """The sanitized build is what the suite tests (make check builds it)."""
    san = os.path.join(BUILD, "san", "gen2vm")
    return san if os.path.exists(san) else os.path.join(BUILD, "gen2vm")


@pytest.fixture
def gen2vm():
    return gen2vm_binary()


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
