"""The nested test host: a command run inside a QEMU (TCG) virtual machine whose emulated CPU has AMD-V,
booting Debian's stock kernel with kvm_amd, with this machine's root shared over 9p and chrooted into.

On hosts whose KVM cannot run a guest's user mode (PVM), real guest operating systems run there.

    tests/nested/run [--timeout S] [--cpus N] [--memory MIB] [--] COMMAND [ARG...]

The command runs with the current directory and the environment kept, its output streamed, and its exit
code returned. The nested host's own failures end the run with a message and a code of their own:
124 the command did not end within --timeout, 125 the nested host failed (boot, 9p, kernel panic,
soft lockup, emulator abort). Everything is fetched with apt once and cached under build/nested/."""
import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from linux_guest import Cpio, module_load_order  # noqa: E402

CACHE = os.path.join(ROOT, "build", "nested")
EXIT_TIMEOUT = 124
EXIT_HOST_FAILED = 125
BUSYBOX = "/bin/busybox"
# kvm_amd for /dev/kvm; 9p over virtio for the shared root; virtio_console for the command's output;
# tun, veth, bridge and loop for the network and block-device tests.
MODULES = ["virtio_pci", "virtio_console", "9pnet_virtio", "9p", "kvm_amd", "tun", "veth", "bridge", "loop"]
# The init inside: modules, the shared root, then the command in a chroot. What it prints on the
# console (ttyS0, kept in console.log) tells the runner how far it got.
INIT = r"""#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "NESTED-FAILED: $*"; echo "nested host: $*" > /dev/hvc1; poweroff -f; }
# Module parameters come from the kernel command line as nested.MODULE=p1=v1,p2=v2 (e.g. nested.kvm_amd=).
for m in $(cat /modules/order); do
	n=${m%.ko}; n=$(echo $n | tr - _)
	insmod /modules/$m $(sed -n "s/.*nested\.$n=\([^ ]*\).*/\1/p" /proc/cmdline | tr , ' ') || fail "insmod $m failed"
done
# Guest RAM (gen2vm's memfd) in 2 MiB pages where it can be: KVM then maps nested guests with 2 MiB
# nested page table entries, and the emulated CPU takes a nested page fault 512 times less often (its
# nested-SVM fault, README "The nested test host", comes with nested page faults during event delivery).
echo force > /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
run=$(sed -n 's/.*nested\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose host /host || fail "the 9p mount of the host's root failed"
[ -r "/host$run/cmd.sh" ] || fail "the 9p share does not show $run/cmd.sh"
[ -c /dev/kvm ] || fail "no /dev/kvm after insmod kvm_amd (is SVM in the emulated CPU?)"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs -o size=75% tmpfs /host/dev/shm
# The nested host's own /run (network namespaces, pid files): the host's must not see them, nor the
# nested host a namespace file a killed earlier run left behind.
mount -t tmpfs -o size=64m,mode=755 tmpfs /host/run && mkdir -p /host/run/lock /host/run/netns
# The command's output as it wrote it: no CR added before each LF.
stty -F /dev/hvc0 raw -echo; stty -F /dev/hvc1 raw -echo
echo "NESTED-RUNNING"
chroot /host /bin/sh "$run/cmd.sh" </dev/null >/dev/hvc0 2>/dev/hvc1
rc=$?
echo $rc > "/host$run/rc"
sync
echo "NESTED-EXIT $rc"
poweroff -f
"""


def log(msg):
    print("nested host: " + msg, file=sys.stderr, flush=True)


def _sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def kernel_package():
    out = _sh(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends: (linux-image-\S+-amd64)", out)
    if not m:
        raise RuntimeError("apt-cache knows no linux-image-amd64 (run apt-get update)")
    return m.group(1)


# The emulator: Debian's QEMU from bookworm-backports (10.0). Bookworm's own 7.2 runs nested SVM with a
# fault: an interrupt injected into the nested guest at VMRUN can be delivered a second time, later,
# to whichever level then runs (seen as nested-kernel panics on the guest's GS base, soft lockups and
# guest kernels taking an interrupt inside an interrupt entry: about 1 boot in 11 with thread=multi,
# 1 in 40 with thread=single). 10.0 showed none in the same runs. It is fetched with apt-get download
# through a private apt configuration under build/nested/apt (the machine's sources are not touched)
# and unpacked under build/nested/qemu; it runs with bookworm's libraries.
QEMU_PACKAGES = ["qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios"]
QEMU_SUITE = "bookworm-backports"


def _private_apt(adir):
    opts = ["-o", "Dir::Etc::SourceList=" + os.path.join(adir, "sources.list"), "-o", "Dir::Etc::SourceParts=-",
            "-o", "Dir::State::Lists=" + os.path.join(adir, "lists"), "-o", "Dir::Cache=" + os.path.join(adir, "cache"),
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root", "-q"]
    return opts


def fetch_qemu(quiet=False):
    """Path of the qemu-system-x86_64 to use and the firmware directories it needs (-L)."""
    qdir = os.path.join(CACHE, "qemu")
    stamp = os.path.join(qdir, "ready")
    if not os.path.exists(stamp):
        if not quiet:
            log("fetching QEMU from %s with apt-get download (once)" % QEMU_SUITE)
        adir = os.path.join(CACHE, "apt")
        shutil.rmtree(qdir, ignore_errors=True)
        shutil.rmtree(adir, ignore_errors=True)
        for d in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(adir, d))
        with open(os.path.join(adir, "sources.list"), "w") as f:
            f.write("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                    "http://deb.debian.org/debian %s main\n" % QEMU_SUITE)
        opts = _private_apt(adir)
        _sh(["apt-get"] + opts + ["update"])
        os.makedirs(qdir)
        _sh(["apt-get"] + opts + ["download"] + ["%s/%s" % (p, QEMU_SUITE) for p in QEMU_PACKAGES], cwd=qdir)
        for deb in [f for f in os.listdir(qdir) if f.endswith(".deb")]:
            _sh(["dpkg-deb", "-x", deb, "x"], cwd=qdir)
            os.unlink(os.path.join(qdir, deb))
        shutil.rmtree(adir, ignore_errors=True)
        open(stamp, "w").close()
    x = os.path.join(qdir, "x")
    return (os.path.join(x, "usr", "bin", "qemu-system-x86_64"),
            [os.path.join(x, "usr", "share", "qemu"), os.path.join(x, "usr", "share", "seabios")])


def fetch(quiet=False):
    """Fetches the kernel once and (re)builds the initramfs when this file changed. Returns
    (vmlinuz, initrd). Only apt: nothing else is downloaded."""
    kdir = os.path.join(CACHE, "kernel")
    stamp = os.path.join(kdir, "ready")
    if not os.path.exists(stamp):
        if not quiet:
            log("fetching Debian's linux-image-amd64 with apt-get download (once)")
        shutil.rmtree(kdir, ignore_errors=True)
        os.makedirs(kdir)
        _sh(["apt-get", "download", "-q", kernel_package()], cwd=kdir)
        deb = [f for f in os.listdir(kdir) if f.endswith(".deb")][0]
        _sh(["dpkg-deb", "-x", deb, "x"], cwd=kdir)
        os.unlink(os.path.join(kdir, deb))
        open(stamp, "w").close()
    boot = os.path.join(kdir, "x", "boot")
    vmlinuz = os.path.join(boot, [f for f in os.listdir(boot) if f.startswith("vmlinuz-")][0])
    version = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    modules = os.path.join(kdir, "x", "lib", "modules", version)
    initrd = os.path.join(CACHE, "initrd.cpio")
    if not os.path.exists(initrd) or os.path.getmtime(initrd) < os.path.getmtime(__file__):
        c = Cpio()
        for d in ("bin", "dev", "proc", "sys", "modules", "host"):
            c.dir(d)
        c.file("bin/busybox", open(BUSYBOX, "rb").read(), 0o100755)
        c.symlink("bin/sh", "busybox")
        c.file("init", INIT.encode(), 0o100755)
        order = module_load_order(modules, MODULES)
        for rel in order:
            c.file("modules/" + os.path.basename(rel), open(os.path.join(modules, rel), "rb").read())
        c.file("modules/order", "".join(os.path.basename(r) + "\n" for r in order).encode())
        tmp = initrd + ".tmp"
        with open(tmp, "wb") as f:
            f.write(c.finish())
        os.replace(tmp, initrd)
    fetch_qemu(quiet)
    return vmlinuz, initrd


# Variables of this process that mean nothing inside (or would mislead the command there).
_DROP_ENV = {"TMPDIR", "OLDPWD", "SHLVL", "_", "DISPLAY", "SSH_AUTH_SOCK", "SSH_CONNECTION", "SSH_CLIENT",
             "SSH_TTY", "XDG_RUNTIME_DIR"}


def command_script(argv, cwd, env):
    lines = ["# written by tests/nested/nested.py: the command, its directory and environment"]
    for k, v in sorted(env.items()):
        if k in _DROP_ENV or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            continue
        lines.append("export %s=%s" % (k, shlex.quote(v)))
    # The nested host's own temporary files live in memory (pytest's unlinked capture files fail on 9p).
    lines.append("export TMPDIR=/dev/shm GEN2VM_NESTED=1")
    if not os.isatty(1):
        # The command writes to a terminal inside (hvc0), but ours is a pipe or file: no colours.
        lines.append("export PY_COLORS=0 NO_COLOR=1")
    lines.append("cd %s || exit 125" % shlex.quote(cwd))
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


FAILURE_PATTERNS = [
    (r"NESTED-FAILED: (.*)", "{0}"),
    (r"watchdog: BUG: soft lockup - (CPU#\d+ stuck for \d+s)", "soft lockup in its kernel ({0})"),
    (r"INFO: (task \S+ blocked for more than \d+ seconds)", "a hung task in its kernel ({0})"),
    (r"Kernel panic - not syncing: (.*)", "kernel panic: {0}"),
]


def diagnose(console):
    for pat, msg in FAILURE_PATTERNS:
        m = re.search(pat, console)
        if m:
            return msg.format(*[g.strip() for g in m.groups()])
    return None


def _copy(src, dst):
    while True:
        b = os.read(src, 65536)
        if not b:
            break
        while b:
            b = b[os.write(dst, b):]
    os.close(src)


def run(argv, timeout=3600, cpus=2, memory=8192, boot_timeout=180, env=None, cwd=None):
    """Runs argv in the nested host; returns its exit code (or EXIT_TIMEOUT / EXIT_HOST_FAILED)."""
    vmlinuz, initrd = fetch()
    cwd = os.path.realpath(cwd or os.getcwd())
    runs = os.path.join(CACHE, "runs")
    os.makedirs(runs, exist_ok=True)
    rundir = tempfile.mkdtemp(prefix="run-", dir=runs)
    try:
        with open(os.path.join(rundir, "cmd.sh"), "w") as f:
            f.write(command_script(argv, cwd, dict(os.environ if env is None else env)))
        console = os.path.join(rundir, "console.log")
        # The command's stdout and stderr reach ours through pipes that this process copies (QEMU
        # opening our own fds by path would write at offsets of its own into a shared file).
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cmdline = ("console=ttyS0 loglevel=4 panic=-1 softlockup_panic=1 mitigations=off "
                   "nested.run=" + rundir + " " + os.environ.get("NESTED_APPEND", ""))
        qemu_bin, qemu_dirs = fetch_qemu()
        qemu = [qemu_bin] + [a for d in qemu_dirs for a in ("-L", d)] + [
                "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus), "-m", str(memory),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", vmlinuz, "-initrd", initrd, "-append", cmdline,
                "-serial", "file:" + console,
                # CPU resets with their register state (a triple fault ends the run through one).
                "-d", "cpu_reset,guest_errors", "-D", os.path.join(rundir, "qemu.log"),
                "-virtfs", "local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap",
                "-device", "virtio-serial-pci",
                "-chardev", "file,id=out,path=/proc/self/fd/%d" % out_w,
                "-chardev", "file,id=err,path=/proc/self/fd/%d" % err_w,
                "-device", "virtconsole,chardev=out", "-device", "virtconsole,chardev=err"]
        sys.stdout.flush()
        sys.stderr.flush()
        p = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True, pass_fds=(out_w, err_w))
        os.close(out_w)
        os.close(err_w)
        copiers = [threading.Thread(target=_copy, args=(r, w)) for r, w in ((out_r, 1), (err_r, 2))]
        for c in copiers:
            c.start()
        qout = []
        threading.Thread(target=lambda: qout.append(p.stdout.read()), daemon=True).start()
        t0 = time.monotonic()
        started = None
        reason = None
        while p.poll() is None:
            time.sleep(0.25)
            text = open(console, errors="replace").read() if os.path.exists(console) else ""
            if started is None and "NESTED-RUNNING" in text:
                started = time.monotonic()
            now = time.monotonic()
            if started is None and now - t0 > boot_timeout:
                reason = "did not start the command within %d s" % boot_timeout
            elif started is not None and now - started > timeout:
                reason = "the command did not end within %d s" % timeout
            if reason:
                os.killpg(p.pid, signal.SIGKILL)
                break
        p.wait()
        for c in copiers:
            c.join()
        text = open(console, errors="replace").read() if os.path.exists(console) else ""
        rcfile = os.path.join(rundir, "rc")
        if reason is None and os.path.exists(rcfile):
            return int(open(rcfile).read().strip() or EXIT_HOST_FAILED)
        why = reason or diagnose(text) or ("the emulator ended with code %d: %s" % (
            p.returncode, (qout[0] if qout else "").strip()[-500:]) if p.returncode else
            "it ended without the command's exit code")
        log(why)
        tail = "\n".join(text.splitlines()[-25:])
        if tail:
            log("its console's last lines (all of it: build/nested/console.log):\n" + tail)
        return EXIT_TIMEOUT if reason and "did not end" in reason else EXIT_HOST_FAILED
    finally:
        # The last run's console and emulator log stay for a look after a failure.
        for name in ("console.log", "qemu.log"):
            if os.path.exists(os.path.join(rundir, name)):
                os.replace(os.path.join(rundir, name), os.path.join(CACHE, name))
        shutil.rmtree(rundir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(prog="tests/nested/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=int, default=3600, help="seconds the command may run (default 3600)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--memory", type=int, default=8192, help="MiB (default 8192)")
    ap.add_argument("--fetch", action="store_true", help="only fetch and build the kernel and initramfs")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.fetch:
        fetch()
        return 0
    argv = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not argv:
        ap.error("no command given")
    return run(argv, timeout=a.timeout, cpus=a.cpus, memory=a.memory)


if __name__ == "__main__":
    sys.exit(main())
