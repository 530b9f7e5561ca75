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
