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
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs

pytestmark = [
    pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
    pytest.mark.skipif(not ei.have_tools("mkfs.vfat", "mcopy", "mmd", "sfdisk"),
                       reason="needs dosfstools, mtools and fdisk (scripts/deps.sh test)"),
]

EFI = os.path.join(BUILD, "efi")
PVM = os.path.exists("/sys/module/kvm_pvm")
CMDLINE = ("console=ttyS0 panic=-1 loglevel=7 init_on_alloc=0 cryptomgr.notests mitigations=off "
           "clearcpuid=ssse3,avx,aes,pclmulqdq,sha_ni")


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
    waits after the blank disk fails until the host says "continue", then boots the next disk."""
    nvram = str(tmp_path / "vm.nvram")
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    good = esp_disk(tmp_path, "good", {"EFI/BOOT/BOOTX64.EFI": os.path.join(EFI, "hello.efi")})
    run(gen2vm_binary(), "firmware", "reset", "--nvram", nvram)
    run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--pause-after-boot-failure", "on")
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", blank, "--disk", good])
    assert vm.wait_for(r"paused after a boot failure", 60), vm.err[-3000:]
    time.sleep(1)
    assert "hello from EFI" not in vm.out()
    vm.control("continue")
    assert vm.wait_for(r"hello from EFI", 60, where="out"), vm.out()[-2000:]
    rc = vm.finish()
    assert rc == 5
    assert "\\EFI\\BOOT\\BOOTX64.EFI returned EFI_SUCCESS" in vm.err
    m = re.search(r"starting \\EFI\\BOOT\\BOOTX64.EFI \(([\d.]+) ms after the firmware's start, (\d+) exits\)", vm.err)
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


@pytest.fixture(scope="module")
def kernel():
    return fetch_kernel()


@pytest.fixture(scope="module")
def efi_bins():
    return ei.fetch_efi_binaries()


def test_systemd_boot_loads_linux_to_init(tmp_path, kernel, efi_bins):
    """Debian's systemd-boot reads its loader entry, loads the Debian kernel's EFI stub with an
    initramfs; the kernel boots to init. On PVM hosts init's first system call cannot enter ring 0
    (see test_linux.py), so there the kernel's panic after "Run /init" ends the boot (exit code 4)."""
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "echo INIT-REACHED-THROUGH-UEFI\npoweroff -f\n")
    disk = esp_disk(tmp_path, "sdboot", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["systemd_boot"],
        "loader/loader.conf": "timeout 0\ndefault debian.conf\n",
        "loader/entries/debian.conf": f"title Debian (systemd-boot)\nlinux /vmlinuz\ninitrd /initrd.img\n"
                                      f"options {CMDLINE}\n",
        "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=80)
    vm = Vm(tmp_path, ["--disk", disk, "--clock-slowdown", "8", "--no-reboot"])
    assert vm.wait_for(r"ExitBootServices", 600), vm.err[-3000:] + vm.out()[-3000:]
    rc = vm.finish(timeout=1500)
    out = vm.out()
    assert "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path" in out, out[-3000:]
    assert "Linux version" in out, out[-3000:]
    # Linux knows the firmware, its tables and the SMBIOS system, and after SetVirtualAddressMap it
    # still reaches the runtime services (efivars registers only then).
    assert "efi: EFI v2.100 by gen2vm" in out and "DMI: gen2vm Virtual Machine" in out, out[:3000]
    assert "Registered efivars operations" in out, out[-3000:]
    assert "Run /init as init process" in out, out[-3000:] + vm.err[-3000:]
    if PVM:
        assert rc == 4 and "guest crashed" in vm.err, vm.err[-3000:]
    else:
        assert "INIT-REACHED-THROUGH-UEFI" in out and rc == 0


def _grub_cfg(marker):
    return f'echo "{marker}"\nhalt\n'


def test_grub_standalone_loads_linux(tmp_path, kernel):
    """A GRUB built with grub-mkstandalone finds the ESP by a file on it, reads it, and loads the
    Debian kernel and an initrd; the kernel's EFI stub reaches ExitBootServices (the boot to init
    itself is test_systemd_boot_loads_linux_to_init's)."""
    if not shutil.which("grub-mkstandalone"):
        pytest.skip("needs grub-efi-amd64-bin (scripts/deps.sh test)")
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "poweroff -f\n")
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
    vm = Vm(tmp_path, ["--disk", disk, "--clock-slowdown", "8", "--no-reboot"])
    reached = vm.wait_for(r"ExitBootServices", 900)
    vm.stop()
    out = vm.out()
    assert "GRUB-STANDALONE-RUNNING" in out and "GRUB-ROOT-hd0,gpt1" in out, out[-3000:] + vm.err[-2000:]
    assert "MARKER-FILE-CONTENTS" in out and "GRUB-LOADED-LINUX" in out, out[-3000:]
    assert reached, out[-3000:] + vm.err[-3000:]


def test_signed_shim_chains_to_grub(tmp_path, efi_bins):
    """Debian's signed shim (Secure Boot off) starts grubx64.efi beside it, which reads
    \\EFI\\debian\\grub.cfg. Shim hashes the image it starts (SHA-256 and SHA-1 in C, every instruction
    emulated here: minutes for Debian's 4 MiB signed GRUB), so this test chains to a small GRUB built
    with grub-mkimage; test_signed_shim_starts_signed_grub below runs the all-signed chain."""
    if not shutil.which("grub-mkimage"):
        pytest.skip("needs grub-efi-amd64-bin (scripts/deps.sh test)")
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


@pytest.mark.skipif(not os.environ.get("GEN2VM_SLOW_TESTS"), reason="about 30 minutes here: GEN2VM_SLOW_TESTS=1")
def test_signed_shim_starts_signed_grub(tmp_path, efi_bins):
    """The all-signed chain: Debian's shim loads Debian's signed GRUB, which reads
    \\EFI\\debian\\grub.cfg from the ESP."""
    disk = esp_disk(tmp_path, "shim", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["shim"], "EFI/BOOT/grubx64.efi": efi_bins["grub_signed"],
        "EFI/debian/grub.cfg": 'echo "SIGNED-GRUB-RUNNING"\nhalt\n'})
    vm = Vm(tmp_path, ["--disk", disk])
    rc = vm.finish(timeout=2400)
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
