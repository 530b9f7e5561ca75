"""Debian's own cloud kernel as a real client: fetched with apt-get (cached under build/linux), and a
busybox initramfs with chosen modules, written as a newc cpio here (no root, no cpio tool)."""
import os
import re
import shutil
import struct
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, "build", "linux")
BUSYBOX = "/bin/busybox"


def kernel_package():
    """The versioned package the cloud-amd64 metapackage points at, e.g. linux-image-6.1.0-56-cloud-amd64."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", out)
    if not m:
        raise RuntimeError("apt-cache knows no linux-image-cloud-amd64 (run apt-get update)")
    return m.group(1)


def fetch_kernel():
    """Returns dict(vmlinuz, modules, system_map, version), downloading once."""
    stamp = os.path.join(CACHE, "ready")
    if not os.path.exists(stamp):
        shutil.rmtree(CACHE, ignore_errors=True)
        os.makedirs(CACHE)
        pkg = kernel_package()
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=CACHE, check=True, capture_output=True)
        deb = [f for f in os.listdir(CACHE) if f.endswith(".deb")][0]
        subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=CACHE, check=True)
        os.unlink(os.path.join(CACHE, deb))
        open(stamp, "w").close()
    boot = os.path.join(CACHE, "x", "boot")
    vmlinuz = [f for f in os.listdir(boot) if f.startswith("vmlinuz-")][0]
    version = vmlinuz[len("vmlinuz-"):]
    return {
        "vmlinuz": os.path.join(boot, vmlinuz),
        "system_map": os.path.join(boot, "System.map-" + version),
        "modules": os.path.join(CACHE, "x", "lib", "modules", version),
        "version": version,
    }


def generic_kernel():
    """Debian's generic kernel (linux-image-amd64: it has hyperv_drm, which the cloud kernel lacks),
    the one the nested test host boots and fetches under build/nested/kernel (tests/nested/nested.py
    fetch(), which `make check` runs before the tests). Returns the same dict as fetch_kernel."""
    x = os.path.join(ROOT, "build", "nested", "kernel", "x")
    if not os.path.exists(os.path.join(ROOT, "build", "nested", "kernel", "ready")):
        raise RuntimeError("Debian's generic kernel is not fetched yet: run tests/nested/run once (or make check)")
    boot = os.path.join(x, "boot")
    vmlinuz = [f for f in os.listdir(boot) if f.startswith("vmlinuz-")][0]
    version = vmlinuz[len("vmlinuz-"):]
    return {
        "vmlinuz": os.path.join(boot, vmlinuz),
        "system_map": os.path.join(boot, "System.map-" + version),
        "modules": os.path.join(x, "lib", "modules", version),
        "version": version,
    }


def fetch_hyperv_daemons():
    """Debian's hyperv-daemons (hv_kvp_daemon, hv_vss_daemon, hv_fcopy_daemon and the KVP helper
    scripts), unpacked once under build/linux/daemons; returns that directory."""
    ddir = os.path.join(CACHE, "daemons")
    stamp = os.path.join(ddir, "ready")
    if not os.path.exists(stamp):
        shutil.rmtree(ddir, ignore_errors=True)
        os.makedirs(ddir)
        subprocess.run(["apt-get", "download", "-q", "hyperv-daemons"], cwd=ddir, check=True, capture_output=True)
        deb = [f for f in os.listdir(ddir) if f.endswith(".deb")][0]
        subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=ddir, check=True)
        os.unlink(os.path.join(ddir, deb))
        open(stamp, "w").close()
    return os.path.join(ddir, "x")


def daemon_files(root, path):
    """extra_files entries for make_initramfs: a program unpacked under root (path as installed, e.g.
    /usr/sbin/hv_kvp_daemon) at its installed path, with the shared libraries ldd names."""
    files = {path.lstrip("/"): (open(root + path, "rb").read(), 0o755)}
    out = subprocess.run(["ldd", root + path], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", out):
        files[lib.lstrip("/")] = (open(os.path.realpath(lib), "rb").read(), 0o755)
    return files


def _modinfo_depends(path):
    """The depends= field of a module's .modinfo section (ELF64)."""
    data = open(path, "rb").read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sec = lambda i: struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    strtab = sec(shstrndx)
    for i in range(shnum):
        name_off, _, _, _, off, size, _, _, _, _ = sec(i)
        end = data.index(b"\0", strtab[4] + name_off)
        if data[strtab[4] + name_off:end] == b".modinfo":
            for field in data[off:off + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return [d for d in field[8:].decode().split(",") if d]
    return []


def module_load_order(modules_dir, names):
    """.ko paths (relative to modules_dir) for names and everything they depend on, dependencies first."""
    index = {}
    for dirpath, _, files in os.walk(modules_dir):
        for f in files:
            if f.endswith(".ko"):
                index[f[:-3].replace("-", "_")] = os.path.relpath(os.path.join(dirpath, f), modules_dir)
    order = []

    def visit(name):
        name = name.replace("-", "_")
        if name not in index:
            return  # built into the kernel
        rel = index[name]
        if rel in order:
            return
        for dep in _modinfo_depends(os.path.join(modules_dir, rel)):
            visit(dep)
        order.append(rel)

    for n in names:
        visit(n)
    return order


class Cpio:
    """A newc ("070701") archive, as the kernel unpacks an initramfs."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        self.out += hdr.encode() + name_b
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o100644):
        self._entry(name, mode, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def make_initramfs(path, init_script, modules_dir=None, modules=(), extra_files=None):
    """Writes an uncompressed initramfs (the guest would spend seconds decompressing) with busybox,
    /init, and the .ko files of `modules` plus their dependencies under /modules, listed in load order
    in /modules/order."""
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "modules", "etc"):
        c.dir(d)
    c.file("bin/busybox", open(BUSYBOX, "rb").read(), 0o100755)
    c.symlink("bin/sh", "busybox")
    c.file("init", init_script.encode(), 0o100755)
    order = module_load_order(modules_dir, modules) if modules else []
    for rel in order:
        c.file("modules/" + os.path.basename(rel), open(os.path.join(modules_dir, rel), "rb").read())
    c.file("modules/order", "".join(os.path.basename(r) + "\n" for r in order).encode())
    made = {"bin", "dev", "proc", "sys", "tmp", "mnt", "modules", "etc"}
    for name, data in (extra_files or {}).items():
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                c.dir(d)
                made.add(d)
        if isinstance(data, tuple):  # (bytes, mode)
            c.file(name, data[0], 0o100000 | data[1])
        else:
            c.file(name, data)
    with open(path, "wb") as f:
        f.write(c.finish())
    return order


def host_program(path):
    """extra_files entries for make_initramfs: a dynamically linked program of this machine (Debian's
    own build, e.g. /usr/bin/efibootmgr) with the shared libraries ldd names, at the same paths."""
    files = {path.lstrip("/"): (open(path, "rb").read(), 0o755)}
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", out):
        real = os.path.realpath(lib)
        files[lib.lstrip("/")] = (open(real, "rb").read(), 0o755)
    return files


INIT_PRELUDE = """#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
"""


def real_system_map(system_map):
    """Debian ships a stub System.map ("the real one is in the -dbg package"): fetch that package's
    System.map once (only when a failure needs symbols) and return its path."""
    with open(system_map) as f:
        if "dbg package" not in f.readline():
            return system_map
    version = os.path.basename(system_map)[len("System.map-"):]
    dbg = os.path.join(CACHE, "dbg")
    real = os.path.join(dbg, "usr", "lib", "debug", "boot", "System.map-" + version)
    if not os.path.exists(real):
        os.makedirs(dbg, exist_ok=True)
        pkg = "linux-image-%s-dbg" % version
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=dbg, check=True, capture_output=True)
        deb = [f for f in os.listdir(dbg) if f.endswith(".deb")][0]
        subprocess.run("dpkg-deb --fsys-tarfile %s | tar -x --wildcards '*/System.map-*'" % deb, shell=True,
                       cwd=dbg, check=True)
        os.unlink(os.path.join(dbg, deb))
    return real


def symbol_for(system_map, rip):
    """The System.map symbol containing address rip (hex string or int), for failure reports."""
    rip = int(rip, 16) if isinstance(rip, str) else rip
    best = None
    try:
        system_map = real_system_map(system_map)
    except (OSError, subprocess.CalledProcessError) as e:
        return "? (no symbols: %s)" % e
    with open(system_map) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            a, name = int(parts[0], 16), parts[2]
            if a <= rip and (best is None or a > best[0]):
                best = (a, name)
    return "%s+0x%x" % (best[1], rip - best[0]) if best else "?"
