"""storvsp with the real client: Debian's kernel loads hv_storvsc, sd_mod and sr_mod, mounts an ext4
disk made here, checks and writes files, reads an ISO from the DVD drive, and sees a disk hot-added and
hot-removed through the control socket. One 2-vCPU boot (sub-channels in use) covers it all."""
import hashlib
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import gen2vm_binary, have_kvm
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs, symbol_for
from test_linux import CMDLINE, LOAD_MODULES

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")

INIT = LOAD_MODULES + r"""
for i in $(seq 1 600); do [ -b /dev/sda ] && [ -b /dev/sr0 ] && break; sleep 0.2; done
mount -t ext4 /dev/sda /mnt && echo "MOUNTED-SDA"
echo "SDA-SUM $(sha256sum /mnt/payload.bin | cut -d' ' -f1)"
echo "written by the guest on gen2vm" > /mnt/from-guest.txt
dd if=/dev/urandom of=/mnt/big.bin bs=1M count=8 2>/dev/null
echo "BIG-SUM $(sha256sum /mnt/big.bin | cut -d' ' -f1)"
sync
umount /mnt && echo "UMOUNTED-SDA"
mkdir -p /cdrom && mount -t iso9660 -o ro /dev/sr0 /cdrom && echo "MOUNTED-SR0"
echo "ISO-FILE $(cat /cdrom/hello.txt)"
umount /cdrom
for d in /sys/bus/vmbus/devices/*; do
  if [ "$(cat $d/class_id)" = "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}" ]; then
    echo "SCSI-CHANNELS $(ls $d/channels | wc -l)"
  fi
done
echo "READY-FOR-HOTADD"
for i in $(seq 1 600); do [ -e /sys/class/block/sdb ] && break; sleep 0.2; done
[ -e /sys/class/block/sdb ] && echo "HOTADD-SEEN sdb $(cat /sys/class/block/sdb/size)"
echo "READY-FOR-HOTREMOVE"
for i in $(seq 1 600); do [ -e /sys/class/block/sdb ] || break; sleep 0.2; done
[ -e /sys/class/block/sdb ] || echo "HOTREMOVE-SEEN"
poweroff -f
"""


def wait_for(path, text, proc, timeout):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return True
        time.sleep(0.5)
    return False


def test_storvsp_with_linux(tmp_path):
    k = fetch_kernel()
    # An ext4 disk with a known file, made without root (mkfs.ext4 -d).
    src = tmp_path / "rootfs"
    src.mkdir()
    payload = os.urandom(3 << 20)
    (src / "payload.bin").write_bytes(payload)
    disk = tmp_path / "disk.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(disk), "64M"], check=True)
    iso_src = tmp_path / "iso"
    iso_src.mkdir()
    (iso_src / "hello.txt").write_text("hello from the DVD\n")
    iso = tmp_path / "test.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(iso_src)], check=True,
                   capture_output=True)
    hot = tmp_path / "hot.img"
    hot.write_bytes(b"\0" * (16 << 20))

    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + INIT, k["modules"], ["hv_vmbus", "hv_storvsc", "sd_mod", "sr_mod", "isofs"])
    log, sock = str(tmp_path / "com1.log"), str(tmp_path / "vm.sock")
    p = subprocess.Popen([gen2vm_binary(), "run", "--kernel", k["vmlinuz"], "--initrd", initrd, "--cmdline", CMDLINE,
                          "--memory", "256M", "--cpus", "2", "--com1", "file:" + log, "--control", sock,
                          "--disk", str(disk), "--dvd", str(iso)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    threading.Thread(target=lambda: out.update(err=p.stderr.read()), daemon=True).start()
    try:
        if wait_for(log, "READY-FOR-HOTADD", p, 900):
            r = subprocess.run([gen2vm_binary(), "control", sock, "disk-add", str(hot), "lun=1"],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
            if wait_for(log, "READY-FOR-HOTREMOVE", p, 300):
                r = subprocess.run([gen2vm_binary(), "control", sock, "disk-remove", "lun=1"],
                                   capture_output=True, text=True)
                assert r.returncode == 0, r.stdout + r.stderr
        rc = p.wait(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    time.sleep(0.5)
    err = out.get("err", "")
    console = open(log, errors="replace").read() if os.path.exists(log) else ""
    m = re.search(r"cannot complete instruction: RIP=(0x[0-9a-f]+) bytes ([0-9a-f ]+)", err)
    if m:
        pytest.fail("blocked at RIP=%s (%s) bytes %s" % (m.group(1), symbol_for(k["system_map"], m.group(1)),
                                                         m.group(2)))
    assert "MOUNTED-SDA" in console, console[-3000:] + err[-2000:]
    assert "SDA-SUM " + hashlib.sha256(payload).hexdigest() in console
    assert "UMOUNTED-SDA" in console
    assert "ISO-FILE hello from the DVD" in console, console[-3000:]
    chans = re.search(r"SCSI-CHANNELS (\d+)", console)
    assert chans and int(chans.group(1)) >= 2, console[-3000:]  # primary + sub-channel with 2 vCPUs
    assert "HOTADD-SEEN sdb 32768" in console, console[-3000:]
    assert "HOTREMOVE-SEEN" in console, console[-3000:]
    assert rc == 0, err[-2000:]
    # The host finds what the guest wrote, intact, after the guest's sync and power-off.
    got = subprocess.run(["debugfs", "-R", "cat /from-guest.txt", str(disk)], capture_output=True, text=True)
    assert got.stdout == "written by the guest on gen2vm\n", got.stdout + got.stderr
    big = subprocess.run(["debugfs", "-R", "cat /big.bin", str(disk)], capture_output=True).stdout
    assert "BIG-SUM " + hashlib.sha256(big).hexdigest() in console
    fsck = subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
