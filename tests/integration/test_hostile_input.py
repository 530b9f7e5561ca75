"""Hostile and careless host-side input (issue 14): the command line, JSON configs, disk images, NVRAM
files, special files and the control socket, as a careless or hostile user gives them.

Every case generates its own bad input and checks what a user would see: a one-line error naming the
thing, the exit code from the README's table, the VM (when one runs) still answering `status`, no
hang (each command is bounded in time), and every input file byte-identical afterwards unless the
command was meant to change it (a repair). The suite runs the sanitized build (build/san/gen2vm), so
an ASan/UBSan report fails the case too (the sanitizers abort, and stderr is no longer one line).

The number of cases is printed by test_case_count and stated in the README."""
import errno
import hashlib
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import zlib

import pytest

from conftest import BUILD, gen2vm_binary, guest_elf, have_kvm, loopback_up

needs_kvm = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
MiB = 1 << 20
USAGE, FAILED = 2, 1  # README "Exit codes"
CMD_TIMEOUT = 30      # no command may take longer: a hang is a failure


# ---------------------------------------------------------------------------------------------------
# running gen2vm and judging what it said

class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return f"rc={self.rc}\nstdout={self.out[:2000]!r}\nstderr={self.err[:2000]!r}"


def _env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return env


def g2(*args, timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL):
    """Runs the sanitized gen2vm; arguments may be bytes (non-UTF-8 paths). Output is decoded with
    surrogateescape so that raw bytes survive for the checks."""
    argv = [os.fsencode(gen2vm_binary())] + [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=_env(), stdin=stdin)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gen2vm {args!r:.300} hung (more than {timeout} s)")
    dec = lambda b: b.decode("utf-8", "surrogateescape")
    return Result(p.returncode, dec(p.stdout), dec(p.stderr))


def one_line_error(r, rc, *names):
    """r failed with exit code rc and said so in one line that names each of names."""
    lines = [l for l in r.err.splitlines() if l.strip()]
    assert r.rc == rc, r
    assert len(lines) == 1, r
    assert len(lines[0]) < 2000, r  # a 100 KB argument must not make a 100 KB message
    for n in names:
        assert n in lines[0], (n, r)
    assert "AddressSanitizer" not in r.err and "runtime error" not in r.err, r
    return lines[0]


class Snapshot:
    """The bytes and kind of every file under the given roots (and of extra paths), to prove that a
    refused command changed nothing. Sockets and FIFOs are compared by kind and inode only."""

    def __init__(self, *roots):
        self.roots = [str(r) for r in roots]
        self.state = self._take()

    def _take(self):
        st = {}
        for root in self.roots:
            paths = [root]
            if os.path.isdir(root) and not os.path.islink(root):
                for dp, dns, fns in os.walk(root):
                    paths += [os.path.join(dp, n) for n in dns + fns]
            for p in paths:
                try:
                    s = os.lstat(p)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(s.st_mode):
                    with open(p, "rb") as f:
                        st[p] = ("file", hashlib.sha256(f.read()).hexdigest(), s.st_size)
                else:
                    st[p] = (stat.S_IFMT(s.st_mode), s.st_ino)
        return st

    def unchanged(self, allow=()):
        now = self._take()
        allow = {str(a) for a in allow}
        diff = {p for p in set(now) | set(self.state) if now.get(p) != self.state.get(p)} - allow
        assert not diff, {p: (self.state.get(p), now.get(p)) for p in diff}


# ---------------------------------------------------------------------------------------------------
# image builders: valid images from gen2vm itself, then damaged on purpose

_CRC32C = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def poke(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def peek(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


GUID_BAT = bytes.fromhex("6677C22D23F600429D64115E9BFD4A08")
GUID_META = bytes.fromhex("06A27C8B90479A4BB8FE575F050F886E")
GUID_FILE_PARAMS = bytes.fromhex("3767A1CA36FA434DB3B633F0AA44E76B")
GUID_VDISK_SIZE = bytes.fromhex("2442A52F1BCD7648B2115DBED83BF4B8")
GUID_LOGICAL = bytes.fromhex("1DBF41816FA90947BA47F233A8FAAB5F")
H1, H2, R1, R2 = 64 << 10, 128 << 10, 192 << 10, 256 << 10


def new_vhdx(path, size="16M", block="1M", fill=False):
    """A dynamic VHDX made by gen2vm; fill: its first block allocated (converted from a raw file whose
    first MiB holds data), so that the BAT has an entry to damage."""
    if not fill:
        r = g2("vhd", "new", path, "--size", size, "--block-size", block)
        assert r.rc == 0, r
        return path
    raw = str(path) + ".src"
    with open(raw, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(16 * MiB)
    r = g2("vhd", "convert", raw, path, "--to", "vhdx", "--block-size", block)
    assert r.rc == 0, r
    os.unlink(raw)
    return path


def vhdx_regions(path):
    t = peek(path, R1, 64 << 10)
    n = struct.unpack_from("<I", t, 8)[0]
    regs = {}
    for i in range(n):
        guid, off, length, _ = struct.unpack_from("<16sQII", t, 16 + 32 * i)
        regs[guid] = (off, length)
    return regs


def vhdx_header_fix(path, edit):
    """Applies edit(bytearray of the 4 KiB header) to both headers and fixes their checksums."""
    for off in (H1, H2):
        h = bytearray(peek(path, off, 4096))
        edit(h)
        h[4:8] = b"\0\0\0\0"
        h[4:8] = struct.pack("<I", crc32c(bytes(h)))
        poke(path, off, bytes(h))


def vhdx_region_fix(path, edit):
    for off in (R1, R2):
        t = bytearray(peek(path, off, 64 << 10))
        edit(t)
        t[4:8] = b"\0\0\0\0"
        t[4:8] = struct.pack("<I", crc32c(bytes(t)))
        poke(path, off, bytes(t))


def vhdx_meta_item(path, guid):
    moff, _ = vhdx_regions(path)[GUID_META]
    t = peek(path, moff, 64 << 10)
    n = struct.unpack_from("<H", t, 10)[0]
    for i in range(n):
        item, off, length, flags = struct.unpack_from("<16sIII", t, 32 + 32 * i)
        if item == guid:
            return moff, 32 + 32 * i, moff + off
    raise KeyError(guid)


def vhdx_forge_log(path, descs, last_file_offset=None, seq=5):
    """Gives the image a pending log of one well-formed entry (checksums right) whose descriptors are
    descs: ("data", file_offset, 4096 bytes) or ("zero", file_offset, length)."""
    log_guid = os.urandom(16)
    log_off = struct.unpack_from("<Q", peek(path, H1, 4096), 72)[0]

    def set_guid(h):
        h[48:64] = log_guid
    vhdx_header_fix(path, set_guid)
    n = len(descs)
    ndata = sum(1 for d in descs if d[0] == "data")
    desc_bytes = (64 + 32 * n + 4095) // 4096 * 4096
    length = desc_bytes + 4096 * ndata
    size = os.path.getsize(path) if last_file_offset is None else last_file_offset
    e = bytearray(length)
    struct.pack_into("<4sIIIQII16sQQ", e, 0, b"loge", 0, length, 0, seq, n, 0, log_guid, size, size)
    k = 0
    for i, d in enumerate(descs):
        if d[0] == "data":
            sec = d[2]
            struct.pack_into("<4sIQQQ", e, 64 + 32 * i, b"desc", struct.unpack_from("<I", sec, 4092)[0],
                             struct.unpack_from("<Q", sec, 0)[0], d[1], seq)
            struct.pack_into("<4sI4084sI", e, desc_bytes + 4096 * k, b"data", seq >> 32, sec[8:4092],
                             seq & 0xFFFFFFFF)
            k += 1
        else:
            struct.pack_into("<4sIQQQ", e, 64 + 32 * i, b"zero", 0, d[2], d[1], seq)
    struct.pack_into("<I", e, 4, crc32c(bytes(e)))
    poke(path, log_off, bytes(e))


def new_vhd(path, size="8M", kind="dynamic"):
    r = g2("vhd", "new", path, "--size", size, f"--{kind}")
    assert r.rc == 0, r
    return path


def vhd_checksum(b, at):
    return (~sum(b[:at] + b[at + 4:])) & 0xFFFFFFFF


def vhd_footer_fix(path, edit, where="end"):
    size = os.path.getsize(path)
    offs = [size - 512] + ([0] if where == "both" else [])
    for off in offs:
        f = bytearray(peek(path, off, 512))
        edit(f)
        struct.pack_into(">I", f, 64, vhd_checksum(f, 64))
        poke(path, off, bytes(f))


def vhd_dynhdr_fix(path, edit):
    h = bytearray(peek(path, 512, 1024))
    edit(h)
    struct.pack_into(">I", h, 36, vhd_checksum(h, 36))
    poke(path, 512, bytes(h))


def new_nvram(path):
    r = g2("firmware", "reset", "--nvram", path)
    assert r.rc == 0, r
    return path


def nvram_with(path, count, body):
    """A store whose header checksums are right around body (a hostile record set)."""
    h = bytearray(peek(path, 0, 48))
    struct.pack_into("<III", h, 32, count, len(body), zlib.crc32(body))
    struct.pack_into("<I", h, 44, zlib.crc32(bytes(h[:44])))
    with open(path, "wb") as f:
        f.write(bytes(h) + body)


# ---------------------------------------------------------------------------------------------------
# the cases: (id, builder(tmp) -> (argv, rc, names[, allow_changed]))
# A builder makes its bad input under tmp and returns the command and what the error must name.

def _fifo(tmp, name="fifo"):
    p = tmp / name
    os.mkfifo(p)
    return p


def _dir(tmp, name="dir"):
    p = tmp / name
    p.mkdir()
    return p


def _sock(tmp, name="sock"):
    p = tmp / name
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()  # a socket file nobody listens on
    return p


def _file(tmp, name, data):
    p = tmp / name
    p.write_bytes(data)
    return p


IDLE = guest_elf("idle")
BIG = "A" * 100_000
NONUTF8 = b"\xff\xfe-not-utf8-\xc3\x28"


def run_args(*extra):
    return ["run", "--elf", IDLE, "--memory", "64M"] + list(extra)


SPECIAL_FILES = {
    "fifo": lambda t: (_fifo(t), "FIFO"),
    "dir": lambda t: (_dir(t), "directory"),
    "devzero": lambda t: ("/dev/zero", "character device"),
    "devnull": lambda t: ("/dev/null", "character device"),
    "socket": lambda t: (_sock(t), "socket"),
    "symlink-to-fifo": lambda t: (_symlink(t, _fifo(t, "target")), "FIFO"),
    "dangling-symlink": lambda t: (_symlink(t, t / "nothing-here"), "o such"),
    "symlink-loop": lambda t: (_loop(t), "Too many levels of symbolic links"),
}


def _symlink(tmp, target, name="link"):
    p = tmp / name
    os.symlink(target, p)
    return p


def _loop(tmp):
    a, b = tmp / "loop-a", tmp / "loop-b"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def special_cases():
    """Every special file where each user-named file is read: nothing may block or be created."""
    cases = []
    where = {
        "config": lambda p: (["run", "--config", p], ["--config"]),
        "nvram": lambda p: (["run", "--nvram", p, "--memory", "64M"], []),
        "disk": lambda p: (run_args("--disk", p), []),
        "dvd": lambda p: (run_args("--dvd", p), []),
        "kernel": lambda p: (["run", "--kernel", p], ["--kernel"]),
        "elf": lambda p: (["run", "--elf", p], ["--elf"]),
        "firmware": lambda p: (["run", "--firmware", p], ["--firmware"]),
        "vhd-inspect": lambda p: (["vhd", "inspect", p], []),
        "vhd-repair": lambda p: (["vhd", "repair", p], []),
        "vhd-convert": lambda p: (["vhd", "convert", p, "out.raw"], []),
        "vhd-parent": lambda p: (["vhd", "new", "child.vhdx", "--parent", p], []),
        "fw-show": lambda p: (["firmware", "show", "--nvram", p], []),
    }
    for w, mk in where.items():
        for kind, make in SPECIAL_FILES.items():
            if w not in ("config", "nvram", "disk", "vhd-inspect", "fw-show") and kind not in ("fifo", "dir",
                                                                                            "devzero", "symlink-to-fifo"):
                continue  # the rest share these code paths; every kind is covered above
            if w == "nvram" and kind == "dangling-symlink":
                continue  # a missing NVRAM file is created: not an error

            def build(tmp, mk=mk, make=make):
                path, why = make(tmp)
                argv, names = mk(path)
                shown = str(path)
                return argv, USAGE, names + [shown, why]
            cases.append((f"special-{w}-{kind}", build))
    return cases


def config_cases():
    def cfg(data, *names):
        def build(tmp):
            p = _file(tmp, "vm.json", data)
            return ["run", "--config", p], USAGE, ["--config", str(p)] + list(names)
        return build
    deep = b"[" * 5000 + b"]" * 5000
    return [
        ("config-null", cfg(b"null", "found null")),
        ("config-array", cfg(b"[1,2]", "found array")),
        ("config-number", cfg(b"42 ", "JSON object")),
        ("config-empty", cfg(b"", "empty file")),
        ("config-spaces", cfg(b"  \n\t ", "empty file")),
        ("config-truncated", cfg(b'{"memory": "512M", "cpus": ', "ends before it is complete")),
        ("config-trailing", cfg(b'{"memory": "512M"} {"cpus": 2}', "text after the end")),
        ("config-nul", cfg(b'{"memory": "5\x0012M"}', "NUL")),
        ("config-non-utf8", cfg(b'{"cmdline": "\xff\xfe"}', "malformed JSON")),
        ("config-deep", cfg(deep, "malformed JSON")),
        ("config-too-large", lambda tmp: (["run", "--config", _file(tmp, "big.json", b" " * (2 * MiB))], USAGE,
                                          ["is 2097152 bytes, more than the 1048576"])),
        ("config-unknown-key", cfg(b'{"kernal": "/boot/vmlinuz"}', 'unknown setting "kernal"')),
        ("config-wrong-type", cfg(b'{"cpus": "two"}', '"cpus" has the wrong type')),
        ("config-huge-key", cfg(b'{"' + b"k" * 100_000 + b'": 1}', "unknown setting", "(100000 bytes)")),
        ("config-non-utf8-key", cfg(b'{"\xc3\xa9t\xc3\xa9": 1}', "unknown setting")),
        ("config-memory-nan", cfg(b'{"memory": "nan"}', "expected a size")),
        ("config-disk-huge-path", lambda tmp: (["run", "--config", _file(tmp, "vm.json", json.dumps(
            {"elf": IDLE, "disks": ["/x/" + BIG]}).encode())], USAGE, ["File name too long", "(100003 bytes)"])),
        ("config-disk-bad-lun", cfg(json.dumps({"disks": [{"path": "x", "lun": -1}]}).encode(), '"lun"')),
        ("config-nic-huge", cfg(json.dumps({"nics": [{"tap": BIG}]}).encode(), "--nic tap=")),
    ]


def arg_cases():
    def args(argv, *names, rc=USAGE):
        return lambda tmp: (argv, rc, list(names))
    return [
        ("arg-memory-nan", args(["run", "--kernel", "/bin/true", "--memory", "nan"], "--memory 'nan'", "expected a size")),
        ("arg-memory-inf", args(["run", "--kernel", "/bin/true", "--memory", "inf"], "expected a size")),
        ("arg-memory-neg", args(["run", "--kernel", "/bin/true", "--memory", "-512M"], "expected a size")),
        ("arg-memory-hex", args(["run", "--kernel", "/bin/true", "--memory", "0x100"], "expected a size")),
        ("arg-memory-huge-exp", args(["run", "--kernel", "/bin/true", "--memory", "1e400"], "expected a size")),
        ("arg-memory-space", args(["run", "--kernel", "/bin/true", "--memory", " 512M"], "expected a size")),
        ("arg-memory-empty", args(["run", "--kernel", "/bin/true", "--memory", ""], "expected a size")),
        ("arg-memory-100k", args(["run", "--kernel", "/bin/true", "--memory", BIG], "--memory", "expected a size",
                                 "(100000 bytes)")),
        ("arg-memory-host", args(["run", "--kernel", "/bin/true", "--memory", "64T"], "more than this host's")),
        ("arg-cpus-100k", args(["run", "--kernel", "/bin/true", "--cpus", "9" * 100_000], "--cpus", "1 to")),
        ("arg-cpus-zero", args(["run", "--kernel", "/bin/true", "--cpus", "0"], "--cpus '0'")),
        ("arg-slowdown", args(["run", "--kernel", "/bin/true", "--clock-slowdown", "99999999999999999999"],
                              "--clock-slowdown")),
        ("arg-clock-offset-huge", args(["run", "--kernel", "/bin/true", "--clock-offset", "-99999999999"],
                                       "--clock-offset '-99999999999'", "100 years")),
        ("arg-clock-offset-text", args(["run", "--kernel", "/bin/true", "--clock-offset", "+1h"],
                                       "--clock-offset '+1h'", "expected seconds")),
        ("arg-video-huge", args(["run", "--kernel", "/bin/true", "--video", "3840x2160"], "--video",
                                "3840x2160 is not possible", "8 MiB")),
        ("arg-video-100k", args(["run", "--kernel", "/bin/true", "--video", "1" * 100_000 + "x1"], "--video",
                                "is not possible", "(100002 bytes)")),
        ("arg-uuid", args(["run", "--kernel", "/bin/true", "--uuid", NONUTF8], "--uuid", "\\xff")),
        ("arg-unknown-option", args(["run", b"--fr\xffob"], "unknown option", "\\xff")),
        ("arg-unknown-command", args([b"fr\xffob"], "unknown command", "\\xff")),
        ("arg-disk-100k", args(run_args("--disk", "/x/" + BIG), "File name too long", "(100003 bytes)")),
        ("arg-disk-non-utf8", args(run_args("--disk", b"/nonexistent/" + NONUTF8), "No such file", "\\xff")),
        ("arg-disk-newline", args(run_args("--disk", "/nonexistent/a\nb.vhdx"), "No such file", "\\x0a")),
        ("arg-disk-bad-lun", args(run_args("--disk", "x.vhdx,lun=-1"), "bad option 'lun=-1'")),
        ("arg-disk-bad-format", args(run_args("--disk", "x.vhdx,format=qcow2"), "format=qcow2")),
        ("arg-dvd-100k-option", args(run_args("--dvd", "x.iso," + BIG), "--dvd", f"({len('x.iso,' + BIG)} bytes)")),
        ("arg-kernel-non-utf8", args(["run", "--kernel", b"/nonexistent/" + NONUTF8], "--kernel", "\\xff")),
        ("arg-nic-100k", args(run_args("--nic", "tap=" + BIG), "--nic", "(100004 bytes)")),
        ("arg-nic-non-utf8", args(run_args("--nic", b"pair=" + NONUTF8 + b",queues=0"), "--nic", "\\xff",
                                  "queues must be")),
        ("arg-com1-100k", args(run_args("--com1", "file:" + BIG), "--com1", "too long")),
        ("arg-control-long", args(run_args("--control", "/tmp/" + "s" * 200), "--control", "too long")),
        ("arg-control-missing-dir", args(run_args("--control", "/nonexistent/dir/vm.sock"), "--control",
                                         "No such file")),
        ("arg-vhd-size-zero", args(["vhd", "new", "z.vhdx", "--size", "0"], "--size must be more than 0")),
        ("arg-vhd-size-missing", args(["vhd", "new", "z.vhdx"], "--size SIZE is required")),
        ("arg-vhd-size-nan", args(["vhd", "new", "z.vhdx", "--size", "nan"], "bad size 'nan'")),
        ("arg-vhd-size-huge", args(["vhd", "new", "z.vhdx", "--size", "1e30"], "bad size")),
        ("arg-vhd-extra", args(["vhd", "inspect", "a", "b"], "unexpected argument 'b'")),
        ("arg-vhd-unknown", args(["vhd", b"insp\xffect"], "unknown command", "\\xff")),
        ("arg-vhd-convert-to", args(["vhd", "convert", "a", "b", "--to", "qcow2"], "--to 'qcow2'")),
        ("arg-disk-twice", lambda tmp: (run_args("--disk", _file(tmp, "d.img", bytes(MiB)), "--disk", tmp / "d.img"),
                                        USAGE, ["d.img", "already in use by this gen2vm"])),
        ("arg-control-100k", args(["control", "/nonexistent.sock", BIG], "longer than")),
        ("arg-control-unreachable", args(["control", b"/nonexistent-" + NONUTF8, "status"], "is the VM running",
                                         "\\xff")),
    ]


def fw_cases():
    def fw(extra, *names):
        def build(tmp):
            nv = new_nvram(tmp / "vm.nvram")
            return ["firmware", "set", "--nvram", nv] + extra, USAGE, [str(nv)] + list(names)
        return build
    return [
        ("fw-first-neg-controller", fw(["--first-boot-device", "disk:-1:0"], "disk:-1:0", "controller 0-3")),
        ("fw-first-big-controller", fw(["--first-boot-device", "disk:4294967296:0"], "controller 0-3")),
        ("fw-first-big-lun", fw(["--first-boot-device", "disk:0:64"], "LUN 0-63")),
        ("fw-first-space", fw(["--first-boot-device", "disk: 1:0"], "expected dvd")),
        ("fw-first-file-zero", fw(["--first-boot-device", "file:0"], "file:N")),
        ("fw-first-file-neg", fw(["--first-boot-device", "file:-1"], "file:N")),
        ("fw-first-trailing", fw(["--first-boot-device", "disk:0:0x"], "expected dvd")),
        ("fw-first-nic-range", fw(["--first-boot-device", "nic:64"], "nic[:N]")),
        ("fw-first-missing", fw(["--first-boot-device", "dvd"], "no DVD boot entry")),
        ("fw-order-missing", fw(["--boot-order", "0001"], "no boot entry 0001")),
        ("fw-order-100k", lambda tmp: (["firmware", "set", "--nvram", new_nvram(tmp / "vm.nvram"), "--boot-order",
                                        "0001," * 20000], USAGE, ["--boot-order", "bytes)"])),
    ]


def nvram_cases():
    def bad(make, *names, cmd="show"):
        def build(tmp):
            nv = new_nvram(tmp / "vm.nvram")
            make(nv)
            argv = {"show": ["firmware", "show", "--nvram", nv],
                    "set": ["firmware", "set", "--nvram", nv, "--pause-after-boot-failure", "on"],
                    "run": ["run", "--nvram", nv, "--memory", "64M"]}[cmd]
            return argv, USAGE, [str(nv)] + list(names)
        return build

    def rand(nv):
        open(nv, "wb").write(os.urandom(4096))

    def hdr_crc(nv):
        poke(nv, 44, b"\0\0\0\0")

    def body_crc(nv):
        nvram_with(nv, 0, b"")
        poke(nv, 40, b"\x01\x02\x03\x04")

    def truncated(nv):
        nvram_with(nv, 1, b"\x07\0\0\0" + b"\x10\0\0\0" + b"\x04\0\0\0" + b"\0" * 16 + b"A\0B\0C\0\0\0")
        with open(nv, "r+b") as f:
            f.truncate(60)

    def version(nv):
        h = bytearray(peek(nv, 0, 48))
        struct.pack_into("<I", h, 8, 2)
        struct.pack_into("<I", h, 44, zlib.crc32(bytes(h[:44])))
        poke(nv, 0, bytes(h))

    def huge_name(nv):
        nvram_with(nv, 1, struct.pack("<III", 7, 0xFFFFFFF0, 0) + b"\0" * 16)

    def huge_count(nv):
        nvram_with(nv, 0xFFFFFFFF, b"")

    def bad_attr(nv):
        nvram_with(nv, 1, struct.pack("<III", 0x80000000, 4, 1) + b"\0" * 16 + b"A\0\0\0" + b"x")

    def empty(nv):
        open(nv, "wb").close()

    def too_big(nv):
        with open(nv, "wb") as f:
            f.truncate(17 * MiB)

    return [
        ("nvram-random", bad(rand, "not a gen2vm NVRAM file", "firmware reset")),
        ("nvram-header-crc", bad(hdr_crc, "bad checksum")),
        ("nvram-body-crc", bad(body_crc, "corrupt")),
        ("nvram-truncated", bad(truncated, "corrupt")),
        ("nvram-version", bad(version, "version 2")),
        ("nvram-huge-name", bad(huge_name, "bad variable record")),
        ("nvram-huge-count", bad(huge_count, "bad variable record")),
        ("nvram-bad-attributes", bad(bad_attr, "bad variable record")),
        ("nvram-empty", bad(empty, "bad signature")),
        ("nvram-too-big", bad(too_big, "more than")),
        ("nvram-set-random", bad(rand, "not a gen2vm NVRAM file", cmd="set")),
        ("nvram-set-huge-name", bad(huge_name, "bad variable record", cmd="set")),
        ("nvram-run-random", bad(rand, "not a gen2vm NVRAM file", cmd="run")),
        ("nvram-run-body-crc", bad(body_crc, "corrupt", cmd="run")),
        ("nvram-reset-fifo", lambda tmp: (["firmware", "reset", "--nvram", _fifo(tmp)], USAGE, ["FIFO"])),
        ("nvram-reset-dir", lambda tmp: (["firmware", "reset", "--nvram", _dir(tmp)], USAGE, ["directory"])),
        ("nvram-lock-is-fifo", lambda tmp: (["firmware", "set", "--nvram", _nvram_beside(tmp, ".lock"),
                                             "--pause-after-boot-failure", "on"], USAGE, ["lock file", "FIFO"])),
        ("nvram-tmp-is-fifo", lambda tmp: (["firmware", "set", "--nvram", _nvram_beside(tmp, ".tmp"),
                                            "--pause-after-boot-failure", "on"], FAILED, ["vm.nvram.tmp", "FIFO"])),
        ("nvram-missing-set", lambda tmp: (["firmware", "set", "--nvram", tmp / "absent.nvram",
                                            "--pause-after-boot-failure", "on"], USAGE, ["no such NVRAM file"])),
    ]


def _nvram_beside(tmp, suffix):
    """A good NVRAM file with a FIFO where its lock or temporary file goes."""
    nv = new_nvram(tmp / "vm.nvram")
    side = tmp / ("vm.nvram" + suffix)
    if side.exists():
        side.unlink()
    os.mkfifo(side)
    return nv


def vhdx_cases():
    def bad(make, *names, cmds=("inspect", "repair", "run", "resize")):
        out = []
        for cmd in cmds:
            def build(tmp, cmd=cmd):
                img = new_vhdx(tmp / "d.vhdx", fill=True)
                img = make(tmp, img) or img
                argv = {"inspect": ["vhd", "inspect", img], "repair": ["vhd", "repair", img],
                        "run": run_args("--disk", img), "resize": ["vhd", "resize", img, "--size", "32M"],
                        "compact": ["vhd", "compact", img]}[cmd]
                return argv, USAGE, [str(img)] + list(names)
            out.append((cmd, build))
        return out

    def zero_signature(tmp, img):
        poke(img, 0, b"\0" * 8)

    def random_named(tmp, img):
        os.unlink(img)
        p = _file(tmp, "x.vhdx", os.urandom(4096))
        return p

    def headers_crc(tmp, img):  # both copies: no valid one left
        for off in (H1, H2):
            poke(img, off + 100, b"\xff")

    def header_field(fmt, at, value):  # a field of both headers, checksums fixed
        return lambda tmp, img: vhdx_header_fix(img, lambda h: struct.pack_into(fmt, h, at, value))

    def log_huge(tmp, img):
        vhdx_header_fix(img, lambda h: (struct.pack_into("<I", h, 68, 128 * MiB), h.__setitem__(slice(48, 64), b"\1" * 16)))
        with open(img, "r+b") as f:
            f.truncate(200 * MiB)

    def regions_crc(tmp, img):
        for off in (R1, R2):
            poke(img, off + 100, b"\xff")

    def region_field(fmt, at, value):  # a field of both region tables, checksums fixed
        return lambda tmp, img: vhdx_region_fix(img, lambda t: struct.pack_into(fmt, t, at, value))

    def region_overlap(tmp, img):
        def edit(t):
            off = struct.unpack_from("<Q", t, 16 + 16)[0]
            struct.pack_into("<Q", t, 16 + 32 + 16, off)
        vhdx_region_fix(img, edit)

    def meta_sig(tmp, img):
        moff, _ = vhdx_regions(img)[GUID_META]
        poke(img, moff, b"XXXXXXXX")

    def meta_item_outside(tmp, img):
        moff, ent, _ = vhdx_meta_item(img, GUID_FILE_PARAMS)
        poke(img, moff + ent + 16, struct.pack("<I", 0x7FFFFFF0))

    def block_size(tmp, img):
        _, _, item = vhdx_meta_item(img, GUID_FILE_PARAMS)
        poke(img, item, struct.pack("<I", 3 * MiB))

    def vsize(tmp, img):
        _, _, item = vhdx_meta_item(img, GUID_VDISK_SIZE)
        poke(img, item, struct.pack("<Q", 1 << 60))

    def lsector(tmp, img):
        _, _, item = vhdx_meta_item(img, GUID_LOGICAL)
        poke(img, item, struct.pack("<I", 1000))

    def bat_outside(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        poke(img, boff + 8, struct.pack("<Q", (100000 * MiB) | 6))

    def bat_state(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        poke(img, boff + 8, struct.pack("<Q", 5))

    def bat_twice(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        poke(img, boff + 8, peek(img, boff, 8))

    def bat_on_meta(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        moff, _ = vhdx_regions(img)[GUID_META]
        poke(img, boff + 8, struct.pack("<Q", moff | 6))

    def truncated(tmp, img):
        with open(img, "r+b") as f:
            f.truncate(512 << 10)

    def log_zero_tib(tmp, img):
        vhdx_forge_log(img, [("zero", 4 * MiB, 1 << 40)])

    def log_bat_garbage(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        sec = bytearray(peek(img, boff, 4096))
        struct.pack_into("<Q", sec, 8, (100000 * MiB) | 6)
        vhdx_forge_log(img, [("data", boff, bytes(sec))])

    def log_into_log(tmp, img):
        vhdx_forge_log(img, [("data", MiB + (256 << 10), b"\x42" * 4096)])

    def log_free_space(tmp, img):
        vhdx_forge_log(img, [("zero", os.path.getsize(img) + 64 * MiB, MiB)])

    def log_low(tmp, img):
        vhdx_forge_log(img, [("data", 512 << 10, b"\x42" * 4096)])

    def log_grow_8t(tmp, img):
        boff, _ = vhdx_regions(img)[GUID_BAT]
        bat = peek(img, boff, 4096)
        vhdx_forge_log(img, [("data", boff, bat), ("zero", boff + 16 * 4096, 4096)], last_file_offset=8 << 40)
        sec = bytearray(bat)
        struct.pack_into("<Q", sec, 16, (50000 * MiB) | 6)  # and a block 50 GB out: past 4 GiB growth
        vhdx_forge_log(img, [("data", boff, bytes(sec))], last_file_offset=8 << 40)

    cases = []
    for name, make, names in [
        ("zeroed-signature", zero_signature, ["damaged VHDX", "format=raw"]),
        ("random-named-vhdx", random_named, ["named .vhdx but not a VHDX file", "format=raw"]),
        ("headers-checksum", headers_crc, ["neither header is valid"]),
        ("header-version", header_field("<H", 66, 2), ["unsupported VHDX version 2"]),
        ("log-misplaced", header_field("<Q", 72, 1 << 40), ["log at"]),
        ("log-length-huge", log_huge, ["larger than this tool accepts"]),
        ("regions-checksum", regions_crc, ["no valid region table"]),
        ("region-count", region_field("<I", 8, 100000), ["region table has 100000 entries"]),
        ("region-outside", region_field("<Q", 16 + 16, 1 << 40), ["outside the file"]),
        ("region-overlap", region_overlap, ["overlaps"]),
        ("metadata-signature", meta_sig, ["metadata table signature"]),
        ("metadata-item-outside", meta_item_outside, ["outside the metadata region"]),
        ("block-size", block_size, ["block size 3145728"]),
        ("virtual-size", vsize, ["virtual size"]),
        ("logical-sector", lsector, ["logical sector size 1000"]),
        ("bat-outside", bat_outside, ["points outside the file"]),
        ("bat-state", bat_state, ["invalid state 5"]),
        ("bat-twice", bat_twice, ["two BAT entries"]),
        ("bat-on-metadata", bat_on_meta, ["overlaps the metadata"]),
        ("truncated", truncated, ["truncated VHDX"]),
        ("log-zero-1tib", log_zero_tib, ["more than 4 GiB past the end", "file is unchanged"]),
        ("log-bat-garbage", log_bat_garbage, ["points outside the file", "file is unchanged"]),
        ("log-into-log", log_into_log, ["into the log itself"]),
        ("log-free-space", log_free_space, ["outside the image's metadata and blocks"]),
        ("log-below-regions", log_low, ["outside the image's metadata and blocks"]),
        ("log-grow-50g", log_grow_8t, ["file is unchanged"]),
    ]:
        cmds = ("inspect", "repair", "run", "resize") if name in ("zeroed-signature", "random-named-vhdx",
                                                                   "log-zero-1tib", "log-bat-garbage") else ("repair",)
        for cmd, build in bad(make, *names, cmds=cmds):
            cases.append((f"vhdx-{name}-{cmd}", build))
    return cases


def vhd_cases():
    def bad(kind, make, *names, cmd="inspect"):
        def build(tmp):
            img = new_vhd(tmp / "d.vhd", kind=kind)
            make(img)
            argv = {"inspect": ["vhd", "inspect", img], "run": run_args("--disk", img),
                    "resize": ["vhd", "resize", img, "--size", "16M"]}[cmd]
            return argv, USAGE, [str(img)] + list(names)
        return build

    def footer_crc(img):
        poke(img, os.path.getsize(img) - 512 + 64, b"\0\0\0\0")

    def dyn_crc(img):
        poke(img, 512 + 36, b"\0\0\0\0")

    def bat_outside(img):
        toff = struct.unpack_from(">Q", peek(img, 512, 1024), 16)[0]
        poke(img, toff, struct.pack(">I", 0x7FFFFFF0))

    def bat_overlap(img):
        toff = struct.unpack_from(">Q", peek(img, 512, 1024), 16)[0]
        poke(img, toff, struct.pack(">I", 2))  # sector 2: the dynamic header

    def block_size(img):
        vhd_dynhdr_fix(img, lambda h: struct.pack_into(">I", h, 32, 3 << 20))

    def size_zero(img):
        vhd_footer_fix(img, lambda f: struct.pack_into(">Q", f, 48, 0), where="both")

    def disk_type(img):
        vhd_footer_fix(img, lambda f: struct.pack_into(">I", f, 60, 7), where="both")

    def fixed_short(img):
        data = peek(img, os.path.getsize(img) - 512, 512)
        with open(img, "r+b") as f:
            f.truncate(MiB)
            f.seek(0, 2)
            f.write(data)

    def footers_gone(img):
        size = os.path.getsize(img)
        poke(img, size - 512, b"\0" * 512)
        poke(img, 0, b"\0" * 512)

    def random_named(img):
        with open(img, "wb") as f:
            f.write(os.urandom(8192))

    return [
        ("vhd-footer-checksum", bad("fixed", footer_crc, "footer checksum mismatch")),
        ("vhd-dynhdr-checksum", bad("dynamic", dyn_crc, "dynamic header checksum mismatch")),
        ("vhd-bat-outside", bad("dynamic", bat_outside, "points outside the file")),
        ("vhd-bat-overlap", bad("dynamic", bat_overlap, "BAT entry 0")),
        ("vhd-block-size", bad("dynamic", block_size, "block size")),
        ("vhd-size-zero", bad("dynamic", size_zero, "virtual size 0")),
        ("vhd-disk-type", bad("dynamic", disk_type, "disk type 7")),
        ("vhd-fixed-short", bad("fixed", fixed_short, "truncated VHD")),
        ("vhd-footers-gone", bad("dynamic", footers_gone, "damaged VHD", "format=raw")),
        ("vhd-footers-gone-run", bad("dynamic", footers_gone, "damaged VHD", cmd="run")),
        ("vhd-footers-gone-resize", bad("dynamic", footers_gone, "damaged VHD", cmd="resize")),
        ("vhd-random-named", bad("dynamic", random_named, "named .vhd but not a VHD file")),
        ("vhd-random-named-resize", bad("dynamic", random_named, "named .vhd but not a VHD file", cmd="resize")),
    ]


def chain_cases():
    def chain(make, *names, cmd="inspect"):
        def build(tmp):
            base = new_vhdx(tmp / "base.vhdx")
            child = tmp / "child.vhdx"
            r = g2("vhd", "new", child, "--parent", base)
            assert r.rc == 0, r
            make(tmp, base, child)
            argv = {"inspect": ["vhd", "inspect", child], "run": run_args("--disk", child),
                    "merge": ["vhd", "merge", child]}[cmd]
            return argv, USAGE, [str(child)] + list(names)
        return build

    def missing(tmp, base, child):
        os.rename(base, tmp / "moved.vhdx")

    def replaced(tmp, base, child):
        os.unlink(base)
        new_vhdx(base)

    def loop(tmp, base, child):
        os.unlink(base)
        os.symlink(child, base)

    def loop2(tmp, base, child):
        # base becomes a child of child: child -> base -> child
        grand = tmp / "grandchild.vhdx"
        r = g2("vhd", "new", grand, "--parent", child)
        assert r.rc == 0, r
        os.replace(grand, base)

    def fifo(tmp, base, child):
        os.unlink(base)
        os.mkfifo(base)

    def directory(tmp, base, child):
        os.unlink(base)
        os.mkdir(base)

    def raw_parent(tmp, base, child):
        os.unlink(base)
        base.write_bytes(os.urandom(MiB))

    return [
        ("chain-parent-missing", chain(missing, "parent disk not found")),
        ("chain-parent-missing-run", chain(missing, "parent disk not found", cmd="run")),
        ("chain-parent-missing-merge", chain(missing, "parent disk not found", cmd="merge")),
        ("chain-parent-replaced", chain(replaced, "identifier does not match")),
        ("chain-loop-symlink", chain(loop, "chain loops")),
        ("chain-loop-mutual", chain(loop2, "chain loops")),
        ("chain-loop-mutual-run", chain(loop2, "chain loops", cmd="run")),
        ("chain-parent-fifo", chain(fifo, "FIFO")),
        ("chain-parent-fifo-run", chain(fifo, "FIFO", cmd="run")),
        ("chain-parent-directory", chain(directory, "directory")),
        ("chain-parent-random", chain(raw_parent, "named .vhdx but not")),
    ]


def socket_path_cases():
    """--control and --com1 socket: never unlink what is not our own stale socket."""
    def sock_at(make, opt, *names):
        def build(tmp):
            p = make(tmp)
            flag = ["--control", p] if opt == "control" else ["--com1", f"socket:{p}"]
            return run_args(*flag), USAGE, [str(p)] + list(names)
        return build
    return [
        ("sockpath-control-file", sock_at(lambda t: _file(t, "p.txt", b"precious\n"), "control",
                                          "is a regular file, not a socket")),
        ("sockpath-com1-file", sock_at(lambda t: _file(t, "p.txt", b"precious\n"), "com1",
                                       "is a regular file, not a socket")),
        ("sockpath-control-dir", sock_at(_dir, "control", "is a directory")),
        ("sockpath-control-fifo", sock_at(_fifo, "control", "FIFO")),
        ("sockpath-com1-fifo", sock_at(_fifo, "com1", "FIFO")),
        ("sockpath-control-symlink", sock_at(lambda t: _symlink(t, _file(t, "target", b"x")), "control",
                                             "symbolic link")),
        ("sockpath-control-nodir", sock_at(lambda t: t / "no" / "vm.sock", "control", "No such file")),
    ]


def console_file_cases():
    """--com1/--debugcon file: a VM that never starts leaves the file as it was (and makes none)."""
    def con(make, opt="--com1"):
        def build(tmp):
            p = make(tmp)
            # --control at an ordinary file: the VM fails after its consoles were opened
            ctl = _file(tmp, "p.txt", b"precious\n")
            return run_args(opt, f"file:{p}", "--control", ctl), USAGE, ["--control", str(ctl)]
        return build
    return [
        ("console-file-kept", con(lambda t: _file(t, "com1.log", b"the last boot's log\n"))),
        ("console-debugcon-kept", con(lambda t: _file(t, "dbg.log", b"the last boot's log\n"), "--debugcon")),
        ("console-file-not-made", con(lambda t: t / "new.log")),
        ("console-file-fifo", lambda tmp: (run_args("--com1", f"file:{_fifo(tmp)}"), USAGE, ["FIFO"])),
        ("console-file-dir", lambda tmp: (run_args("--com1", f"file:{_dir(tmp)}"), USAGE, ["directory"])),
        ("console-file-socket", lambda tmp: (run_args("--debugcon", f"file:{_sock(tmp)}"), USAGE, ["socket"])),
    ]


def vm_store_cases():
    """gen2vm vm: a VM store whose vm.json was replaced by something that is not a document, and
    drives that are not images. Nothing in the store changes; a refused vm new leaves no directory."""
    def store_with(spoil):
        def setup(tmp):
            r = g2("vm", "--store", tmp / "store", "new", "a", "--dvd", "empty")
            assert r.rc == 0, r
            doc = tmp / "store" / "a" / "vm.json"
            if spoil:
                doc.unlink()
                spoil(doc)
            return tmp / "store"
        return setup

    def case(spoil, *args_names):
        args, names = args_names[:-1], args_names[-1]

        def build(tmp):
            store = store_with(spoil)(tmp)
            return ["vm", "--store", store] + [a(tmp) if callable(a) else a for a in args], USAGE, names
        return build
    return [
        ("vm-json-fifo", case(os.mkfifo, "show", "a", ["vm.json", "FIFO"])),
        ("vm-json-dir", case(os.mkdir, "set", "a", "--cpus", "2", ["vm.json", "directory"])),
        ("vm-json-devzero", case(lambda p: os.symlink("/dev/zero", p), "start", "a", ["vm.json", "character device"])),
        ("vm-json-malformed", case(lambda p: p.write_bytes(b'{"memory": '), "add-nic", "a", "pair=x",
                                   ["vm.json", "malformed"])),
        ("vm-json-huge", case(lambda p: p.write_bytes(b" " * (2 << 20)), "show", "a", ["vm.json", "more than the"])),
        ("vm-json-unknown-key", case(lambda p: p.write_bytes(b'{"colour": "blue"}'), "show", "a", ["vm.json", "colour"])),
        ("vm-add-disk-fifo", case(None, "add-disk", "a", lambda t: _fifo(t), ["FIFO"])),
        ("vm-add-dvd-dir", case(None, "add-dvd", "a", lambda t: _dir(t), ["directory"])),
        ("vm-set-dvd-devzero", case(None, "set-dvd", "a", "/dev/zero", ["/dev/zero", "character device"])),
        ("vm-new-disk-devzero", case(None, "new", "b", "--disk", "/dev/zero", ["/dev/zero", "character device"])),
        ("vm-new-disk-fifo", case(None, "new", "b", "--disk", lambda t: _fifo(t), ["FIFO"])),
        ("vm-name-hostile", case(None, "show", b"../a\xff", ["VM name"])),
    ]


CASES = (special_cases() + config_cases() + arg_cases() + fw_cases() + nvram_cases() + vhdx_cases() +
         vhd_cases() + chain_cases() + socket_path_cases() + console_file_cases() + vm_store_cases())


@pytest.mark.parametrize("name,build", CASES, ids=[c[0] for c in CASES])
def test_refused_and_unchanged(name, build, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, rc, names = build(tmp_path)
    if argv[0] == "run" and not have_kvm():
        pytest.skip("needs /dev/kvm")
    # Every file under tmp_path, inputs and their neighbours: nothing changes, nothing is created
    # (no lock file beside a FIFO, no console log of a VM that never started).
    snap = Snapshot(tmp_path)
    r = g2(*argv)
    one_line_error(r, rc, *names)
    snap.unchanged()


# ---------------------------------------------------------------------------------------------------
# cases that are meant to change a file, or to work

def test_log_replay_reported_and_bounded(tmp_path):
    """A log that records an 8 TiB file but writes only sound metadata: repair replays it, reports what
    it did, and does not grow the file past what the image uses. Read-only inspect first changes
    nothing."""
    img = new_vhdx(tmp_path / "d.vhdx", fill=True)
    boff, _ = vhdx_regions(img)[GUID_BAT]
    vhdx_forge_log(img, [("data", boff, peek(img, boff, 4096))], last_file_offset=8 << 40)
    before = os.path.getsize(img)
    snap = Snapshot(tmp_path)
    r = g2("vhd", "inspect", img)
    assert r.rc == 0 and "applied in memory only" in r.err, r
    snap.unchanged()
    r = g2("vhd", "repair", img)
    assert r.rc == 0, r
    assert "replayed its log (1 log entry" in r.out and "its recorded size 8796093022208 ignored" in r.out, r
    assert os.path.getsize(img) <= before
    r = g2("vhd", "repair", img)
    assert r.rc == 0 and "nothing to replay" in r.out, r


def test_json_output_is_valid_for_any_path(tmp_path):
    """A path that is not UTF-8 comes out of --json as valid JSON (its odd bytes as \\xNN)."""
    d = os.fsencode(tmp_path) + b"/" + NONUTF8
    os.mkdir(d)
    img = d + b"/d.vhdx"
    nv = d + b"/vm.nvram"
    assert g2("vhd", "new", img, "--size", "8M").rc == 0
    assert g2("firmware", "reset", "--nvram", nv).rc == 0
    for argv, key in ((["vhd", "inspect", "--json", img], "Path"), (["firmware", "show", "--json", "--nvram", nv], "nvram")):
        argv = [os.fsencode(gen2vm_binary())] + [a if isinstance(a, bytes) else a.encode() for a in argv]
        p = subprocess.run(argv, capture_output=True, timeout=CMD_TIMEOUT, env=_env())
        assert p.returncode == 0, p
        doc = json.loads(p.stdout.decode("utf-8"))  # raises on bytes that are not UTF-8
        assert "\\xff\\xfe-not-utf8-" in doc[key], doc[key]


def test_format_raw_overrides(tmp_path):
    """A file named .vhdx that is not one opens as raw when the user says so."""
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    img = _file(tmp_path, "x.vhdx", os.urandom(MiB))
    snap = Snapshot(tmp_path)
    sock = tmp_path / "vm.sock"
    vm = Vm(tmp_path, ["--disk", f"{img},format=raw,readonly"], sock=sock)
    try:
        assert vm.status() == "ok: running"
    finally:
        vm.close()
    snap.unchanged(allow=[sock, tmp_path / "debug.log", tmp_path / "vm.err"])


def test_socket_of_another_process_is_left_alone(tmp_path):
    """--control pointed at a live socket: refused, and the other process stays reachable."""
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    p = tmp_path / "other.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(p))
    srv.listen(4)
    try:
        r = g2(*run_args("--control", p))
        one_line_error(r, USAGE, str(p), "another process is listening")
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(p))  # still there, still ours
        c.close()
        r = g2(*run_args("--com1", f"socket:{p}"))
        one_line_error(r, USAGE, str(p), "another process is listening")
        assert stat.S_ISSOCK(os.lstat(p).st_mode)
    finally:
        srv.close()


def test_stale_socket_replaced_and_removed_on_signals(tmp_path):
    """A socket left by a killed gen2vm is replaced; SIGTERM and SIGINT stop the VM in order: exit
    128+N and the socket file is gone."""
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    sock = tmp_path / "vm.sock"
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        vm = Vm(tmp_path, [], sock=sock)
        assert vm.status() == "ok: running"
        vm.p.send_signal(sig)
        rc = vm.p.wait(timeout=30)
        vm.close()
        if sig == signal.SIGKILL:
            assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # stale: replaced by the next start
        else:
            assert rc == 128 + sig, (sig, rc, vm.err())
            assert not os.path.lexists(sock), sig


# ---------------------------------------------------------------------------------------------------
# a running VM and misbehaving control clients

class Vm:
    """gen2vm run with the idle test guest, a control socket, and what the case adds."""

    def __init__(self, tmp, extra, sock=None):
        self.sock = str(sock or tmp / "vm.sock")
        self.errf = open(tmp / "vm.err", "wb")
        self.p = subprocess.Popen([gen2vm_binary(), "run", "--elf", IDLE, "--memory", "64M", "--debugcon",
                                   f"file:{tmp / 'debug.log'}", "--control", self.sock] + [str(a) for a in extra],
                                  stdout=subprocess.DEVNULL, stderr=self.errf, stdin=subprocess.DEVNULL, env=_env())
        self.tmp = tmp
        for _ in range(300):
            if self.p.poll() is not None:
                raise AssertionError(f"the VM ended: {self.p.returncode}: {self.err()}")
            if os.path.exists(self.sock):
                try:
                    if self.status(timeout=2) == "ok: running":
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError("the VM did not answer: " + self.err())

    def err(self):
        return open(self.tmp / "vm.err", "rb").read().decode("utf-8", "replace")

    def request(self, line, timeout=5):
        """One command on its own connection; the reply line."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(self.sock)
            s.sendall(line if isinstance(line, bytes) else line.encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while not data.endswith(b"\n"):
                b = s.recv(65536)
                if not b:
                    break
                data += b
            return data.decode("utf-8", "surrogateescape").strip()
        finally:
            s.close()

    def status(self, timeout=5):
        """The run state the VM reports ("ok: running"), without what its devices add after ";"."""
        return self.request("status\n", timeout).split(";")[0]

    def fds(self):
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def settled_fds(self):
        """The descriptor count once the VM has closed the connections that just ended (a reply is
        read by the client a moment before the VM closes its end)."""
        last = None
        for _ in range(50):
            time.sleep(0.2)
            n = self.fds()
            if n == last:
                return n
            last = n
        return last

    def close(self):
        if self.p.poll() is None:
            try:
                self.request("stop\n")
            except OSError:
                pass
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.errf.close()


def connect(vm, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(vm.sock)
    return s


def fast_status(vm, budget=3.0):
    """The VM answers status promptly (within budget seconds, far below the 5 s a single idle client
    used to cost) while others misbehave."""
    t0 = time.time()
    assert vm.status() == "ok: running"
    assert time.time() - t0 < budget, time.time() - t0


def misbehave_early_close(vm):
    connect(vm).close()


def misbehave_no_read(vm):
    s = connect(vm)
    s.sendall(b"status\nhelp\nstatus\n")
    s.close()  # the replies meet a closed socket: was SIGPIPE, the VM died with 141


def misbehave_reset(vm):
    s = connect(vm)
    s.sendall(b"help\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def misbehave_garbage(vm, strict=True):
    s = connect(vm)
    s.sendall(bytes(random.randrange(1, 256) for _ in range(300)).replace(b"\n", b"") + b"\n")
    r = s.recv(4096)
    s.close()
    if r or strict:  # (under a flood a connection may be dropped as the oldest: then nothing comes)
        assert r.startswith(b"error: "), r
        assert r.count(b"\n") == 1, r


def misbehave_partial(vm):
    s = connect(vm)
    s.sendall(b"disk-add /some/where lun")
    s.close()


def misbehave_long_line(vm, n=1 << 20):
    s = connect(vm)
    try:
        s.sendall(b"x" * n + b"\n")
    except OSError:
        pass  # the VM closed the connection after 4 KiB: right
    try:
        r = s.recv(4096)
        assert r in (b"",) or r.startswith(b"error: command line longer than"), r
    except OSError:
        pass
    s.close()


def misbehave_pipeline(vm):
    s = connect(vm)
    try:
        s.sendall(b"status\n" * 20000)  # never reads: the VM stops reading too, then hangs up
    except OSError:
        pass
    s.close()


def misbehave_half_close(vm):
    s = connect(vm)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(100) == b""
    s.close()


def misbehave_slow(vm, nbytes=5, gap=0.05):
    s = connect(vm)
    try:
        for b in b"status\n"[:nbytes]:
            s.send(bytes([b]))
            time.sleep(gap)
    except OSError:
        pass
    s.close()


def misbehave_words(vm, strict=True):
    for line in (" ".join(["w"] * 100) + "\n", 'disk-add "unbalanced\n'):
        r = vm.request(line)
        if r or strict:
            assert r.startswith("error: malformed command line"), r


def misbehave_non_utf8(vm, strict=True):
    r = vm.request(b"st\xffatus\x00x\n")
    if r or strict:
        assert r.startswith("error: unknown command") and "\\xff" in r, r


MISBEHAVIOURS = [misbehave_early_close, misbehave_no_read, misbehave_reset, misbehave_garbage, misbehave_partial,
                 misbehave_long_line, misbehave_pipeline, misbehave_half_close, misbehave_slow, misbehave_words,
                 misbehave_non_utf8]


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    """One VM with a disk, a DVD and a NIC for the control-socket cases."""
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    tmp = tmp_path_factory.mktemp("vm")
    disk = tmp / "disk.raw"
    disk.write_bytes(b"\0" * (8 * MiB))
    iso = tmp / "dvd.iso"
    iso.write_bytes(b"\0" * (2 * MiB))
    v = Vm(tmp, ["--disk", disk, "--dvd", iso, "--nic", f"pair=hostile-{os.getpid()}"])
    yield v
    v.close()
    assert v.p.returncode == 0, v.err()
    assert "AddressSanitizer" not in v.err() and "runtime error" not in v.err(), v.err()


@pytest.mark.parametrize("how", MISBEHAVIOURS, ids=[m.__name__[len("misbehave_"):] for m in MISBEHAVIOURS])
def test_control_client_misbehaves(vm, how):
    for _ in range(5):
        how(vm)
        fast_status(vm)


def test_control_idle_and_slow_clients_do_not_block_others(vm):
    idle = [connect(vm) for _ in range(10)]
    slow = threading.Thread(target=misbehave_slow, args=(vm, 7, 1.0))  # a byte a second
    slow.start()
    try:
        for _ in range(10):
            fast_status(vm)
    finally:
        slow.join()
        for s in idle:
            s.close()


def test_control_idle_client_is_closed(vm):
    s = connect(vm, timeout=20)
    t0 = time.time()
    assert s.recv(100) == b""  # the VM hung up on it
    assert 4 < time.time() - t0 < 10


def test_control_fifty_at_once(vm):
    """50 clients at once: more than the VM serves together (32). The oldest are dropped; every
    well-behaved one that is not dropped gets its answer, and the VM keeps answering."""
    socks = [connect(vm) for _ in range(50)]
    answered = 0
    for s in socks:
        try:
            s.sendall(b"status\n")
            r = s.recv(200)
            # "ok: running; heartbeat ..." (the run state, then what the devices add)
            line = r.split(b"\n", 1)[0] + b"\n" if r.startswith(b"ok: running") else b"-"
            answered += line != b"-"
            # answered (and maybe dropped later, still open, as the oldest), or dropped before
            busy = b"error: too many control connections; this one was the oldest\n"
            assert r in (line, b"", busy, line + busy), r
        except OSError:
            pass
        s.close()
    assert answered >= 18
    fast_status(vm)
    results = []

    def one():
        try:
            results.append(vm.status(timeout=10))
        except OSError as e:
            results.append(str(e))
    ts = [threading.Thread(target=one) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results.count("ok: running") == 50, results


@pytest.mark.parametrize("what", ["fifo", "dir", "devzero", "damaged", "random-named", "twice", "missing",
                                  "bad-lun", "bad-format"])
def test_control_disk_add_refused(vm, what, tmp_path):
    """disk-add/dvd-add of what cannot be a disk: an error naming it, at once; the VM goes on."""
    p = {"fifo": lambda: _fifo(tmp_path), "dir": lambda: _dir(tmp_path), "devzero": lambda: "/dev/zero",
         "damaged": lambda: _zeroed_vhdx(tmp_path), "random-named": lambda: _file(tmp_path, "r.vhdx", os.urandom(8192)),
         "twice": lambda: vm.tmp / "disk.raw", "missing": lambda: tmp_path / "missing.vhdx",
         "bad-lun": lambda: "x.vhdx lun=-1", "bad-format": lambda: "x.vhdx format=qcow2"}[what]()
    want = {"fifo": "FIFO", "dir": "directory", "devzero": "character device", "damaged": "damaged VHDX",
            "random-named": "named .vhdx but not", "twice": "already in use by this gen2vm",
            "missing": "No such file", "bad-lun": "lun is 0..63", "bad-format": "format is raw"}[what]
    snap = Snapshot(tmp_path)
    for cmd in ("disk-add", "dvd-add"):
        t0 = time.time()
        r = vm.request(f"{cmd} {p}\n")
        assert time.time() - t0 < 2, r
        assert r.startswith("error: ") and want in r, (cmd, r)
        fast_status(vm)
    snap.unchanged()


def _zeroed_vhdx(tmp):
    img = new_vhdx(tmp / "z.vhdx")
    poke(img, 0, b"\0" * 8)
    return img


def test_control_dvd_insert_fifo(vm, tmp_path):
    f = _fifo(tmp_path)
    r = vm.request(f"dvd-insert {f} lun=1\n")
    assert r.startswith("error: ") and "FIFO" in r, r
    fast_status(vm)


def _free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _rfb_server_init(port):
    """A well-behaved RFB 3.8 viewer up to ServerInit: the frame's size."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        assert s.recv(12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.008\n")
        n = s.recv(1)[0]
        assert 1 in s.recv(n)
        s.sendall(b"\x01")
        assert s.recv(4) == b"\0\0\0\0"
        s.sendall(b"\x01")
        return struct.unpack(">HH", s.recv(4))
    finally:
        s.close()


@needs_kvm
def test_vnc_and_web_console_clients_misbehave(tmp_path):
    """--vnc and --web-console under hostile clients: a wrong protocol version, garbage, a viewer that
    asks for updates and never reads, one that connects and says nothing, HTTP requests that are
    garbage, partial, for files outside noVNC's directory, and more connections than are served. The VM
    keeps answering status at once, a proper viewer still gets the (placeholder) screen and the page
    is still served."""
    if not os.path.exists("/usr/share/novnc/vnc.html"):
        pytest.skip("needs Debian's novnc")
    loopback_up()
    vport, wport = _free_tcp_port(), _free_tcp_port()
    v = Vm(tmp_path, ["--synthetic-console", "--vnc", f"127.0.0.1:{vport}", "--web-console", f"127.0.0.1:{wport}"])
    held = []
    try:
        for _ in range(3):
            bad = socket.create_connection(("127.0.0.1", vport), timeout=10)
            bad.recv(12)
            bad.sendall(b"RFB 999.999\n" + bytes(random.randrange(256) for _ in range(500)))
            bad.close()
            fast_status(v)
        mute = socket.create_connection(("127.0.0.1", vport), timeout=10)
        held.append(mute)
        never = socket.create_connection(("127.0.0.1", vport), timeout=10)
        never.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        held.append(never)
        never.recv(12)
        never.sendall(b"RFB 003.008\n")
        time.sleep(0.3)
        never.sendall(b"\x01")
        time.sleep(0.3)
        never.sendall(b"\x01" + struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 480) * 200)
        fast_status(v)
        for req in (b"\x00\xff garbage\r\n\r\n", b"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
                    b"GET /vnc.html", b"POST / HTTP/1.0\r\n\r\n", b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n"):
            h = socket.create_connection(("127.0.0.1", wport), timeout=15)
            h.sendall(req)
            if req.endswith(b"\r\n\r\n"):
                r = h.recv(4096)
                assert r == b"" or r.startswith(b"HTTP/1.0 4"), (req[:40], r[:100])
            held.append(h)
        # WebSocket upgrades on the page's port go to the RFB server: a broken one (no key), one
        # that upgrades and then sends garbage frames, and a half request that never ends.
        for req in (b"GET /websockify HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                    b"GET /websockify HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    b"GET /websockify HTTP/1.1\r\nUpgrade: websocket\r\n"):
            h = socket.create_connection(("127.0.0.1", wport), timeout=15)
            h.sendall(req)
            time.sleep(0.3)
            try:
                h.sendall(bytes(random.randrange(256) for _ in range(300)))
            except OSError:
                pass  # closed already: the broken upgrade
            held.append(h)
            fast_status(v)
        held += [socket.create_connection(("127.0.0.1", wport), timeout=10) for _ in range(20)]
        fast_status(v)
        assert _rfb_server_init(vport) == (640, 480)
        for h in held:
            h.close()
        held = []
        time.sleep(0.5)
        h = socket.create_connection(("127.0.0.1", wport), timeout=10)
        h.sendall(b"GET /vnc.html?autoconnect=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            b = h.recv(65536)
            if not b:
                break
            data += b
        h.close()
        assert data.startswith(b"HTTP/1.0 200 OK\r\n") and b"noVNC" in data, data[:200]
        r = v.request("vnc\n")
        assert r.startswith(f"ok: listening on 127.0.0.1:{vport}; web console http://127.0.0.1:{wport}/"), r
        fast_status(v)
    finally:
        for h in held:
            h.close()
        v.close()
    assert v.p.returncode == 0, v.err()
    assert "AddressSanitizer" not in v.err() and "runtime error" not in v.err(), v.err()


# ---------------------------------------------------------------------------------------------------
# the proof: 10,000 misbehaving connections, the VM answers throughout, no descriptor leak

STRESS_CONNECTIONS = 10_000


def test_vm_survives_10000_misbehaving_connections(tmp_path):
    """A VM started with a disk, a DVD and a NIC keeps running and answers status through 10,000
    control connections that misbehave in the ways above (bounded in time: 10 minutes), with no file
    descriptor leak (/proc/PID/fd count back where it was)."""
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    disk = tmp_path / "disk.vhdx"
    new_vhdx(disk)
    iso = tmp_path / "dvd.iso"
    iso.write_bytes(b"\0" * (2 * MiB))
    vm = Vm(tmp_path, ["--disk", disk, "--dvd", iso, "--nic", f"pair=stress-{os.getpid()}"])
    try:
        fast_status(vm)
        base = vm.settled_fds()
        kinds = [misbehave_early_close, misbehave_no_read, misbehave_reset, lambda v: misbehave_garbage(v, False),
                 misbehave_partial, lambda v: misbehave_long_line(v, 64 << 10), misbehave_pipeline,
                 misbehave_half_close, lambda v: misbehave_slow(v, 3, 0.01), lambda v: misbehave_non_utf8(v, False),
                 lambda v: misbehave_words(v, False)]
        done, lock, errors = [0], threading.Lock(), []
        deadline = time.time() + 600
        held = []  # idle connections left open for a while, then dropped

        def worker(seed):
            rnd = random.Random(seed)
            while time.time() < deadline:
                with lock:
                    if done[0] >= STRESS_CONNECTIONS:
                        return
                    n = done[0]
                    done[0] += 1
                try:
                    if n % 50 == 0:
                        misbehave_long_line(vm)  # a whole 1 MB line now and then
                    elif n % 7 == 0:
                        s = connect(vm)  # idle: held open, closed later (or by the VM)
                        with lock:
                            held.append(s)
                            old = held.pop(0) if len(held) > 40 else None
                        if old:
                            old.close()
                    else:
                        rnd.choice(kinds)(vm)
                except (OSError, AssertionError) as e:
                    if not isinstance(e, OSError) or e.errno not in (errno.EPIPE, errno.ECONNRESET):
                        errors.append(repr(e))

        checks = [0]

        def watcher():
            while time.time() < deadline and done[0] < STRESS_CONNECTIONS:
                try:
                    t0 = time.time()
                    checks[0] += 1
                    r = vm.status(timeout=5)
                    if r != "ok: running" or time.time() - t0 > 3:
                        errors.append(f"status: {r!r} after {time.time() - t0:.1f} s")
                except OSError as e:
                    errors.append(f"status: {e}")
                time.sleep(0.2)

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)] + [threading.Thread(target=watcher)]
        t0 = time.time()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for s in held[:-5]:
            s.close()
        lingering = held[-5:]  # left open: the VM must close its ends itself (idle timeout)
        print(f"{done[0]} misbehaving connections in {time.time() - t0:.1f} s, {checks[0]} status checks, "
              f"descriptors {base} before")
        assert checks[0] >= 3
        assert done[0] >= STRESS_CONNECTIONS, f"only {done[0]} connections in the time allowed"
        assert not errors, errors[:20]
        assert vm.p.poll() is None, vm.err()
        r = g2("control", vm.sock, "status")
        assert r.rc == 0 and r.out.strip().split(";")[0] == "ok: running", r
        # Every connection closed by now, or within the idle timeout: the descriptors are back.
        deadline = time.time() + 2 * 5 + 5
        while vm.settled_fds() != base and time.time() < deadline:
            pass
        assert vm.settled_fds() == base, (base, vm.fds(), sorted(os.listdir(f"/proc/{vm.p.pid}/fd")))
        for s in lingering:
            assert s.recv(100) in (b"", b"error: too many control connections; this one was the oldest\n")
            s.close()
    finally:
        vm.close()
    assert vm.p.returncode == 0, vm.err()
    assert "AddressSanitizer" not in vm.err() and "runtime error" not in vm.err(), vm.err()


# ---------------------------------------------------------------------------------------------------
# gen2vmd's API socket (gen2vm service run): hostile local clients. No VM needs to run: the service's
# loop is what is attacked. After each case the service answers a well-formed request at once, and it
# ends cleanly (no sanitizer report) with as many descriptors as it had.

def svc_request(sock, data, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)  # blocking, as curl's: a full backlog makes it wait, not fail
    s.settimeout(timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except OSError:
        pass
    s.close()
    return out


def svc_fast_list(sock):
    t0 = time.time()
    r = svc_request(sock, b"GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200 ") and b'"name":"h"' in r, r[:500]
    assert time.time() - t0 < 5


def svc_misbehave_garbage(sock):
    for junk in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET\r\n\r\n", b"GET /v1/vms HTTP/9.9\r\n\r\n",
                 b"GET /v1/vms/\xff\xfe HTTP/1.1\r\n\r\n", b"GET /v1/vms\x00 HTTP/1.1\r\n\r\n",
                 b"PUT /v1/vms/x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"):
        r = svc_request(sock, junk)
        assert r.startswith(b"HTTP/1.1 400 ") or r.startswith(b"HTTP/1.1 501 "), (junk, r)
        assert b'"code":"' in r


def svc_misbehave_header_100mb(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    sent = 0
    try:
        s.sendall(b"GET /v1/vms HTTP/1.1\r\nX: ")
        chunk = b"a" * MiB
        while sent < 100 * MiB:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    assert sent < 100 * MiB  # it stopped reading and hung up long before
    s.close()


def svc_misbehave_body_too_large(sock):
    r = svc_request(sock, b"PUT /v1/vms/x HTTP/1.1\r\nContent-Length: 104857600\r\n\r\n" + b"{" * 65536)
    assert r.startswith(b"HTTP/1.1 413 "), r[:200]


def svc_misbehave_chunked(sock):
    r = svc_request(sock, b"PUT /v1/vms/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 501 "), r[:200]


def svc_misbehave_bad_json(sock):
    for body in (b"{", b"[]", b"{}{}", b'{"a":' * 5000, b"\xff\xfe", b'{"options": "x"}', b'{"options": [1, {}]}'):
        r = svc_request(sock, b"PUT /v1/vms/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert r.startswith(b"HTTP/1.1 4"), (body[:50], r[:300])
    for body in (b'{"cpus": {"deep": [1, 2]}}', b'{"add_disk": null}', b'{"remove_nic": -1}', b'{"slot": "x"}'):
        r = svc_request(sock, b"PATCH /v1/vms/h HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert r.startswith(b"HTTP/1.1 4"), (body[:50], r[:300])


def svc_misbehave_slow_and_idle(sock):
    idle = []
    for _ in range(10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        idle.append(s)
    idle[0].sendall(b"GET /v1/v")  # and never the rest
    for _ in range(3):
        svc_fast_list(sock)
    for s in idle:
        s.close()


def svc_misbehave_half_close(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(b"GET /v1/vms/h HTTP/1.1\r\n\r\n")
    s.shutdown(socket.SHUT_WR)  # a client that half-closes still gets its answer
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]


def svc_misbehave_early_close(sock):
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        s.sendall(b"GET /v1/vms HTTP/1.1\r\n\r\n")  # an operation starts, its client is gone
        s.close()


def svc_misbehave_events_never_read(sock):
    deaf = []
    for _ in range(5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(sock)
        s.sendall(b"GET /v1/events HTTP/1.1\r\n\r\n")
        deaf.append(s)
    for _ in range(3):
        svc_fast_list(sock)
    for s in deaf:
        s.close()


def svc_misbehave_too_many(sock):
    many = []
    for _ in range(200):  # more than it serves at once (128): the rest are told 503 and closed
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        many.append(s)
    for s in many:
        s.close()


SVC_MISBEHAVIOURS = [svc_misbehave_garbage, svc_misbehave_header_100mb, svc_misbehave_body_too_large,
                     svc_misbehave_chunked, svc_misbehave_bad_json, svc_misbehave_slow_and_idle,
                     svc_misbehave_half_close, svc_misbehave_early_close, svc_misbehave_events_never_read,
                     svc_misbehave_too_many]


@pytest.fixture(scope="module")
def gen2vmd(tmp_path_factory):
    from test_vm_service import Service
    tmp = tmp_path_factory.mktemp("gen2vmd")
    store = tmp / "store"
    os.makedirs(str(store))
    r = g2("vm", "--store", store, "new", "h", "--memory", "64M")
    assert r.rc == 0, r
    s = Service(store, tmp)
    time.sleep(0.3)
    base = len(os.listdir(f"/proc/{s.p.pid}/fd"))
    yield s
    deadline = time.time() + 15  # connections the cases left are closed by now or by their timeouts
    while len(os.listdir(f"/proc/{s.p.pid}/fd")) != base and time.time() < deadline:
        time.sleep(0.2)
    fds = len(os.listdir(f"/proc/{s.p.pid}/fd"))
    s.stop()
    text = s.text()
    assert fds == base, (base, fds)
    assert "AddressSanitizer" not in text and "runtime error" not in text, text[-3000:]


@pytest.mark.parametrize("how", SVC_MISBEHAVIOURS, ids=[m.__name__[len("svc_misbehave_"):] for m in SVC_MISBEHAVIOURS])
def test_service_client_misbehaves(gen2vmd, how):
    how(gen2vmd.sock)
    svc_fast_list(gen2vmd.sock)
    assert gen2vmd.p.poll() is None, gen2vmd.text()
