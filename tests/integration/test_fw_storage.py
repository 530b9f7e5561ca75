"""The firmware's storage stack (firmware/vmbus.c, storvsc.c, disk.c, fs.c): boots the firmware with
host-built disks and DVDs and checks the one line per device it prints, including hostile media
(malformed GPT, corrupt FAT) that must give a clean line rather than a fault or a hang."""
import os
import shutil
import struct
import subprocess
import zlib

import pytest

from conftest import have_kvm, run_vm

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")

TOOLS = ("mkfs.vfat", "mmd", "mcopy", "sfdisk", "xorriso")
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def need_tools():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip("missing " + ", ".join(missing) + " (scripts/deps.sh test)")


def sh(*args):
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    subprocess.run([str(a) for a in args], check=True, capture_output=True, env=env)


def make_fat(path, size_mb, fat, files):
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    sh("mkfs.vfat", "-F", fat, "-s", "1", path)
    dirs = sorted({os.path.dirname(n) for n in files if os.path.dirname(n)})
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                sh("mmd", "-i", path, "::/" + sub)
            except subprocess.CalledProcessError:
                pass
    for name, data in files.items():
        src = str(path) + ".tmp"
        with open(src, "wb") as f:
            f.write(data)
        sh("mcopy", "-i", path, src, "::/" + name)
        os.unlink(src)


def make_gpt_disk(tmp_path, name="disk.img"):
    """64 MiB GPT disk: a 40 MiB FAT32 ESP with \\EFI\\BOOT\\HELLO.TXT and a Linux partition."""
    disk = tmp_path / name
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    table = f"label: gpt\nstart=2048, size=81920, type={ESP_TYPE}\nstart=83968, type={LINUX_TYPE}\n"
    subprocess.run(["sfdisk", "-q", str(disk)], input=table.encode(), check=True, capture_output=True)
    esp = tmp_path / (name + ".esp")
    make_fat(esp, 40, "32", {"EFI/BOOT/HELLO.TXT": b"hello\n"})
    with open(esp, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(2048 * 512)
        shutil.copyfileobj(src, dst)
    os.unlink(esp)
    return disk


def make_iso(tmp_path):
    efi = tmp_path / "efi.img"
    make_fat(efi, 2, "12", {"EFI/BOOT/HELLO.TXT": b"hello\n"})
    root = tmp_path / "isoroot"
    root.mkdir()
    shutil.copy(efi, root / "efi.img")
    iso = tmp_path / "cd.iso"
    sh("xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-e", "efi.img", "-no-emul-boot", root)
    return iso


def boot(tmp_path, *media):
    log = tmp_path / "fw.log"
    args = ["run", "--memory", "256M", "--debugcon", f"file:{log}", "--stats"]
    for kind, path in media:
        args += [f"--{kind}", str(path)]
    rc, out, err = run_vm(args, timeout=120)
    text = log.read_text(errors="replace") if log.exists() else ""
    assert "fatal" not in text and "CPU exception" not in text, text + err
    assert rc == 5, f"rc {rc}\n{text}\n{err}"  # 5: nothing to boot (no boot manager yet)
    lines = [l.strip() for l in text.splitlines() if l.startswith("storage:")]
    return lines, err


def test_gpt_disk_and_eltorito_dvd(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    iso = make_iso(tmp_path)
    lines, err = boot(tmp_path, ("disk", disk), ("dvd", iso))
    assert "storage: SCSI 0:0 disk, 131072 x 512 bytes, GPT, 2 partitions, ESP FAT32" in lines, lines
    assert "storage: SCSI 0:1 DVD, 2048-byte blocks, El Torito, FAT12 volume" in lines, lines
    stats = [l for l in err.splitlines() if l.startswith("gen2vm-stats:")]
    print(stats)  # the storage start-up cost (exits) for the record


def test_empty_dvd_drive(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    lines, _ = boot(tmp_path, ("disk", disk), ("dvd", "empty"))
    assert "storage: SCSI 0:1 DVD, no media" in lines, lines


def gpt_header_at(disk, lba):
    with open(disk, "rb") as f:
        f.seek(lba * 512)
        return bytearray(f.read(512))


def put_gpt_header(disk, lba, hdr, fix_crc=True):
    if fix_crc:
        size = struct.unpack_from("<I", hdr, 12)[0]
        struct.pack_into("<I", hdr, 16, 0)
        struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr[:size])) & 0xffffffff)
    with open(disk, "r+b") as f:
        f.seek(lba * 512)
        f.write(hdr)


def test_primary_gpt_damaged_uses_the_backup(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    hdr = gpt_header_at(disk, 1)
    hdr[30] ^= 0xff  # inside the header: its CRC no longer matches
    put_gpt_header(disk, 1, hdr, fix_crc=False)
    lines, _ = boot(tmp_path, ("disk", disk))
    assert "storage: SCSI 0:0 disk, 131072 x 512 bytes, GPT, 2 partitions, ESP FAT32" in lines, lines


def test_both_gpt_headers_damaged(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    for lba in (1, 131071):
        hdr = gpt_header_at(disk, lba)
        hdr[30] ^= 0xff
        put_gpt_header(disk, lba, hdr, fix_crc=False)
    lines, _ = boot(tmp_path, ("disk", disk))
    assert len(lines) == 1 and lines[0].startswith("storage: SCSI 0:0 disk, 131072 x 512 bytes, "), lines
    assert "no partition table" in lines[0], lines


def test_gpt_with_hostile_entry_count(tmp_path):
    """A header with a valid CRC claiming 2^31 entries: rejected or bounded, never a hang."""
    need_tools()
    disk = make_gpt_disk(tmp_path)
    for lba in (1, 131071):
        hdr = gpt_header_at(disk, lba)
        struct.pack_into("<I", hdr, 80, 0x7fffffff)
        put_gpt_header(disk, lba, hdr)
    lines, _ = boot(tmp_path, ("disk", disk))
    assert len(lines) == 1 and lines[0].startswith("storage: SCSI 0:0 disk, 131072 x 512 bytes, "), lines


def test_corrupt_fat_is_not_mounted(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    with open(disk, "r+b") as f:
        f.seek(2048 * 512 + 44)  # FAT32 root directory cluster, far past the volume's end
        f.write(struct.pack("<I", 0x0ffffff0))
    lines, _ = boot(tmp_path, ("disk", disk))
    assert "storage: SCSI 0:0 disk, 131072 x 512 bytes, GPT, 2 partitions, ESP corrupt FAT (not mounted)" in lines, lines


def test_not_quite_fat_is_no_file_system(tmp_path):
    need_tools()
    disk = make_gpt_disk(tmp_path)
    with open(disk, "r+b") as f:
        f.seek(2048 * 512 + 13)  # BPB sectors per cluster: 3 is no power of two
        f.write(b"\x03")
    lines, _ = boot(tmp_path, ("disk", disk))
    assert "storage: SCSI 0:0 disk, 131072 x 512 bytes, GPT, 2 partitions, ESP no file system" in lines, lines


def test_superfloppy_and_garbage_disk(tmp_path):
    need_tools()
    floppy = tmp_path / "floppy.img"
    make_fat(floppy, 16, "16", {"A.TXT": b"a"})
    junk = tmp_path / "junk.img"
    with open(junk, "wb") as f:
        f.write(os.urandom(1 << 20))
    lines, _ = boot(tmp_path, ("disk", floppy), ("disk", junk))
    assert "storage: SCSI 0:0 disk, 32768 x 512 bytes, no partition table, FAT16 volume" in lines, lines
    assert any(l.startswith("storage: SCSI 0:1 disk, 2048 x 512 bytes, ") for l in lines), lines
