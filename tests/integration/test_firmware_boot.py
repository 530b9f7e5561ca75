"""UEFI boot through gen2vm's own firmware: the boot manager with the host-owned NVRAM, and real EFI
binaries none of which we wrote (Debian's systemd-boot, GRUB built with grub-mkstandalone and
grub-mkrescue, the signed shim -> GRUB chain), each on a GPT disk with a FAT ESP made here, or on a DVD.

Firmware code runs in guest kernel mode, which this host emulates instruction by instruction, so each
boot costs seconds; the Linux boot to init costs minutes and is done once."""
import json
import os
import re
import shutil
import time

import pytest

import efi_images as ei
from conftest import BUILD, VmProcess, gen2vm_binary, have_kvm, run
from linux_guest import INIT_PRELUDE, host_program, make_initramfs
from rfb import RfbClient

pytestmark = [
    pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
    pytest.mark.skipif(not ei.have_tools("mkfs.vfat", "mcopy", "mmd", "sfdisk"),
                       reason="needs dosfstools, mtools and fdisk (scripts/deps.sh test)"),
]

EFI = os.path.join(BUILD, "efi")
CMDLINE = "console=ttyS0 panic=-1 loglevel=7"


class Vm(VmProcess):
    """gen2vm with the firmware: COM1 and the debug console in files, -v for the firmware's events."""

    def __init__(self, tmp_path, args, name="vm"):
        com1, dcon = str(tmp_path / f"{name}.com1"), str(tmp_path / f"{name}.debugcon")
        sock = str(tmp_path / f"{name}.sock")
        super().__init__(["-v", "--stats", "--memory", "512M", "--com1", "file:" + com1, "--debugcon",
                          "file:" + dcon, "--control", sock] + list(args), consoles=(com1, dcon), sock=sock)


def esp_disk(tmp_path, name, files, size_mb=40):
    fat = ei.make_fat(str(tmp_path / f"{name}.fat"), files, size_mb=size_mb)
    disk = ei.make_gpt_disk(str(tmp_path / f"{name}.img"), fat)
    os.unlink(fat)
    return disk


def firmware_show(nvram):
    return json.loads(run(gen2vm_binary(), "firmware", "show", "--nvram", nvram, "--json").stdout)


def test_nothing_to_boot_gives_a_boot_summary(tmp_path):
    """A blank disk and an empty DVD drive: the host made a device entry for each; the firmware tries
    both and says why each failed; gen2vm ends with exit code 5 and the summary."""
    nvram = str(tmp_path / "vm.nvram")
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", blank, "--dvd", "empty"])
    rc = vm.finish()
    assert rc == 5, vm.err[-3000:]
    assert "no operating system was loaded" in vm.err
    summary = vm.err[vm.err.index("no operating system was loaded"):]
    assert re.search(r"1\. Boot0000 \"[^\"]*SCSI[^\"]*\": no FAT file system", summary), summary
    assert re.search(r"2\. Boot0001 \"[^\"]*DVD[^\"]*\": no media in the drive", summary), summary
    assert "Boot summary" in vm.out()
    entries = firmware_show(nvram)["entries"]
    assert [e["type"] for e in entries] == ["device", "device"], entries


def test_removable_media_path_and_pause_after_boot_failure(tmp_path):
    """Device entries fall back to \\EFI\\BOOT\\BOOTX64.EFI. With PauseAfterBootFailure on, the firmware
    waits after the blank disk fails until the host says "continue", then boots the next disk.
    On the way, `control reset` restarts the machine in place: a VNC viewer connected before it stays
    connected and sees the firmware's screen of the new boot."""
    nvram = str(tmp_path / "vm.nvram")
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    good = esp_disk(tmp_path, "good", {"EFI/BOOT/BOOTX64.EFI": os.path.join(EFI, "hello.efi")})
    run(gen2vm_binary(), "firmware", "reset", "--nvram", nvram)
    run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--pause-after-boot-failure", "on")
    vnc = str(tmp_path / "vnc.sock")
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", blank, "--disk", good, "--synthetic-console", "--vnc", "unix:" + vnc])
    assert vm.wait_for(r"paused after a boot failure", 60), vm.err[-3000:]
    viewer = RfbClient.unix(vnc)

    def screen():
        """(w, h, whether it shows anything but one colour), after a whole update (a resize comes
        alone: the pixels follow on the next request)."""
        for _ in range(3):
            if viewer.update():
                break
        f = bytes(viewer.frame)
        return viewer.w, viewer.h, f != f[:4] * (len(f) // 4)
    before = screen()
    assert before == (1024, 768, True), before  # the firmware's text on its 1024x768 screen
    assert vm.control("reset").startswith("ok"), vm.err[-2000:]
    assert vm.wait_for(r"paused after a boot failure[\s\S]*paused after a boot failure", 60), vm.err[-3000:]
    assert "restarting the VM after a guest reset" in vm.err
    # The same connection: the new boot's screen, and the server still counts the viewer.
    after = screen()
    assert after == (1024, 768, True), after
    assert "1 viewer connected" in vm.control("vnc"), vm.control("vnc")
    viewer.close()
    time.sleep(1)
    assert "hello from EFI" not in vm.out()
    vm.control("continue")
    assert vm.wait_for(r"hello from EFI", 60, where="out"), vm.out()[-2000:]
    rc = vm.finish()
    assert rc == 5
    assert "\\EFI\\BOOT\\BOOTX64.EFI returned EFI_SUCCESS" in vm.err
    m = re.search(r"starting \\EFI\\BOOT\\BOOTX64.EFI(?: at \S+)? \(([\d.]+) ms after the firmware's start, (\d+) exits\)", vm.err)
    assert m, vm.err[-2000:]


def test_guest_file_entry_survives_restart_and_first_boot_device(tmp_path):
    """Like efibootmgr: an EFI program creates a File entry (HD(...)/File(...)) first in BootOrder and
    restarts the VM; the firmware boots through it (BootCurrent says so), it shows in `gen2vm firmware
    show` as a file entry, and --first-boot-device / --boot-order edit the order without losing it."""
    nvram = str(tmp_path / "vm.nvram")
    app = os.path.join(EFI, "bootentry.efi")
    disk = esp_disk(tmp_path, "os", {"EFI/BOOT/BOOTX64.EFI": app, "EFI/gen2vm/entry.efi": app})
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", disk, "--dvd", "empty"])
    rc = vm.finish()
    out = vm.out()
    assert "ENTRY-CREATED Boot0100" in out, out[-2000:] + vm.err[-2000:]
    assert "restarting the VM after a guest reset" in vm.err
    assert "BOOTED-FROM-FILE-ENTRY BootCurrent=0100" in out, out[-2000:] + vm.err[-2000:]
    assert rc == 0, vm.err[-2000:]
    show = firmware_show(nvram)
    kinds = [(e["number"], e["type"]) for e in show["entries"]]
    assert kinds[0] == ("0100", "file"), kinds
    assert {k for _, k in kinds} == {"file", "device"} and len(kinds) == 3, kinds
    text = run(gen2vm_binary(), "firmware", "show", "--nvram", nvram).stdout
    assert "gen2vm test OS" in text and "\\EFI\\gen2vm\\entry.efi" in text, text
    # The DVD to the top: the rest keep their order, the file entry is not lost.
    run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--first-boot-device", "dvd")
    order = [e["number"] for e in firmware_show(nvram)["entries"]]
    assert order[1:] == [n for n, _ in kinds if n != order[0]] and len(order) == 3
    # A boot order that drops the file entry is refused.
    r = run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--boot-order",
            ",".join(n for n in order if n != "0100"), check=False)
    assert r.returncode != 0 and "0100" in r.stderr and "missing from the order" in r.stderr, r.stderr


# Linux booted through UEFI: efivarfs shows the firmware's variables. The first boot lists the boot
# entries gen2vm made, creates one of its own with efibootmgr, puts it first and restarts; the second
# boot (through that entry) reports BootCurrent and powers off.
EFIBOOTMGR_INIT = r"""
for m in $(cat /modules/order); do insmod /modules/$m || echo "INSMOD-FAILED $m"; done
echo "INIT-REACHED-THROUGH-UEFI"
mount -t efivarfs efivarfs /sys/firmware/efi/efivars && echo "EFIVARFS-MOUNTED"
for i in $(seq 1 300); do [ -b /dev/sda1 ] && break; sleep 0.1; done
if efibootmgr | grep -q "^Boot[0-9A-F]*\* efibootmgr entry"; then
  efibootmgr | sed 's/^/SECOND-BOOT /'
  poweroff -f
fi
efibootmgr -v | sed 's/^/FIRST-BOOT /'
efibootmgr -c -d /dev/sda -p 1 -L "efibootmgr entry" -l '\EFI\BOOT\BOOTX64.EFI' >/dev/null && echo "ENTRY-CREATED"
efibootmgr | sed 's/^/AFTER-CREATE /'
reboot -f
"""


@pytest.mark.real_guest
def test_systemd_boot_loads_linux_to_userspace_and_efibootmgr(tmp_path, kernel, efi_bins):
    """Debian's systemd-boot reads its loader entry, loads the Debian kernel's EFI stub with an
    initramfs; the kernel boots to userspace, where Debian's efibootmgr lists gen2vm's boot entries
    and adds one that survives the restart, boots, and shows in `gen2vm firmware show`."""
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + EFIBOOTMGR_INIT, kernel["modules"],
                   ["hv_vmbus", "hv_storvsc", "sd_mod", "efivarfs"], extra_files=host_program("/usr/bin/efibootmgr"))
    disk = esp_disk(tmp_path, "sdboot", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["systemd_boot"],
        "loader/loader.conf": "timeout 0\ndefault debian.conf\n",
        "loader/entries/debian.conf": f"title Debian (systemd-boot)\nlinux /vmlinuz\ninitrd /initrd.img\n"
                                      f"options {CMDLINE}\n",
        "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=80)
    nvram = str(tmp_path / "vm.nvram")
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", disk, "--cpus", "2"])
    rc = vm.finish(timeout=900)
    out = vm.out()
    assert "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path" in out, out[-3000:]
    # Linux knows the firmware, its tables and the SMBIOS system, and after SetVirtualAddressMap it
    # still reaches the runtime services (efivars registers only then).
    assert "efi: EFI v2.100 by gen2vm" in out and "DMI: gen2vm Virtual Machine" in out, out[:3000]
    assert "Registered efivars operations" in out, out[-3000:]
    assert "INIT-REACHED-THROUGH-UEFI" in out and "EFIVARFS-MOUNTED" in out, out[-3000:] + vm.err[-3000:]
    assert "INSMOD-FAILED" not in out, out[-3000:]
    # gen2vm's device entry for the disk, as efibootmgr reads it from the firmware.
    assert re.search(r"FIRST-BOOT Boot0000\* .*SCSI", out), out[-3000:]
    assert re.search(r"FIRST-BOOT BootCurrent: 0000", out), out[-3000:]
    assert "ENTRY-CREATED" in out, out[-3000:]
    new = re.search(r"AFTER-CREATE Boot([0-9A-F]{4})\* efibootmgr entry", out)
    assert new, out[-3000:]
    assert re.search(r"AFTER-CREATE BootOrder: %s," % new.group(1), out), out[-3000:]
    # The restart went through the new entry; the VM then powered off.
    assert "restarting the VM after a guest reset" in vm.err, vm.err[-2000:]
    assert re.search(r"SECOND-BOOT BootCurrent: %s" % new.group(1), out), out[-3000:] + vm.err[-2000:]
    assert rc == 0, vm.err[-2000:]
    show = firmware_show(nvram)
    entries = {e["number"]: e for e in show["entries"]}
    assert new.group(1) in entries and entries[new.group(1)]["type"] == "file", show
    assert entries[new.group(1)]["description"] == "efibootmgr entry", show
    assert show["entries"][0]["number"] == new.group(1), show


def _grub_cfg(marker):
    return f'echo "{marker}"\nhalt\n'


@pytest.mark.real_guest
def test_grub_standalone_loads_linux_to_userspace(tmp_path, kernel):
    """A GRUB built with grub-mkstandalone finds the ESP by a file on it, reads it, and loads the
    Debian kernel and an initrd, which boots to its userspace and powers off."""
    if not shutil.which("grub-mkstandalone"):
        pytest.fail("needs grub-efi-amd64-bin (scripts/deps.sh test)")
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "echo USERSPACE-THROUGH-GRUB\npoweroff -f\n")
    grub = str(tmp_path / "grubx64.efi")
    cfg = tmp_path / "grub.cfg"
    cfg.write_text('insmod part_gpt\ninsmod fat\necho "GRUB-STANDALONE-RUNNING"\n'
                   'search --no-floppy --file --set=root /marker.txt\necho "GRUB-ROOT-$root"\n'
                   'cat /marker.txt\n'
                   f'linux /vmlinuz {CMDLINE}\ninitrd /initrd.img\necho "GRUB-LOADED-LINUX"\nboot\n')
    run("grub-mkstandalone", "-O", "x86_64-efi", "-o", grub,
        "--modules=part_gpt fat halt echo search cat linux", f"boot/grub/grub.cfg={cfg}")
    disk = esp_disk(tmp_path, "grub", {"EFI/BOOT/BOOTX64.EFI": grub, "marker.txt": "MARKER-FILE-CONTENTS\n",
                                       "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=80)
    vm = Vm(tmp_path, ["--disk", disk, "--no-reboot"])
    rc = vm.finish(timeout=900)
    out = vm.out()
    assert "GRUB-STANDALONE-RUNNING" in out and "GRUB-ROOT-hd0,gpt1" in out, out[-3000:] + vm.err[-2000:]
    assert "MARKER-FILE-CONTENTS" in out and "GRUB-LOADED-LINUX" in out, out[-3000:]
    assert "USERSPACE-THROUGH-GRUB" in out, out[-3000:] + vm.err[-3000:]
    assert rc == 0, vm.err[-2000:]


def test_signed_shim_chains_to_grub(tmp_path, efi_bins):
    """Debian's signed shim (Secure Boot off) starts grubx64.efi beside it, which reads
    \\EFI\\debian\\grub.cfg. A small GRUB built with grub-mkimage keeps this test quick on hosts that
    emulate guest kernel mode; test_signed_shim_starts_signed_grub runs the all-signed chain."""
    if not shutil.which("grub-mkimage"):
        pytest.fail("needs grub-efi-amd64-bin (scripts/deps.sh test)")
    grub = str(tmp_path / "grubx64.efi")
    run("grub-mkimage", "-O", "x86_64-efi", "-o", grub, "-p", "/EFI/debian", "part_gpt", "fat", "normal",
        "configfile", "echo", "halt")
    disk = esp_disk(tmp_path, "shim", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["shim"], "EFI/BOOT/grubx64.efi": grub,
        "EFI/debian/grub.cfg": 'echo "GRUB-STARTED-BY-SHIM"\nhalt\n'})
    vm = Vm(tmp_path, ["--disk", disk])
    rc = vm.finish(timeout=900)
    out = vm.out()
    assert "GRUB-STARTED-BY-SHIM" in out, out[-3000:] + vm.err[-3000:]
    assert rc == 0, vm.err[-2000:]


@pytest.mark.real_guest
def test_signed_shim_starts_signed_grub(tmp_path, efi_bins):
    """The all-signed chain: Debian's shim loads Debian's signed GRUB (4 MiB, hashed by shim), which
    reads \\EFI\\debian\\grub.cfg. Minutes where guest kernel mode is emulated: it runs where
    hardware virtualization (or the nested test host) makes it quick."""
    disk = esp_disk(tmp_path, "shim", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["shim"], "EFI/BOOT/grubx64.efi": efi_bins["grub_signed"],
        "EFI/debian/grub.cfg": 'echo "SIGNED-GRUB-RUNNING"\nhalt\n'})
    vm = Vm(tmp_path, ["--disk", disk])
    rc = vm.finish(timeout=900)
    out = vm.out()
    assert "SIGNED-GRUB-RUNNING" in out, out[-3000:] + vm.err[-3000:]
    assert rc == 0, vm.err[-2000:]


def test_grub_mkrescue_dvd_boots_from_the_synthetic_dvd(tmp_path):
    if not shutil.which("grub-mkrescue") or not shutil.which("xorriso"):
        pytest.skip("needs grub-efi-amd64-bin and xorriso (scripts/deps.sh test)")
    root = tmp_path / "iso"
    (root / "boot" / "grub").mkdir(parents=True)
    (root / "boot" / "grub" / "grub.cfg").write_text('echo "GRUB-FROM-DVD"\nhalt\n')
    iso = str(tmp_path / "rescue.iso")
    run("grub-mkrescue", "-o", iso, str(root), "--modules=echo halt")
    vm = Vm(tmp_path, ["--dvd", iso])
    rc = vm.finish(timeout=600)
    out = vm.out()
    assert "GRUB-FROM-DVD" in out, out[-3000:] + vm.err[-3000:]
    assert rc == 0, vm.err[-2000:]
