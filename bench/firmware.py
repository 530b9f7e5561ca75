"""bench/firmware: gen2vm's own UEFI firmware, from its first instruction to the OS loader's entry.

Two boots on a GPT disk with a FAT ESP: one whose ESP holds only our smallest EFI program (the
"empty ESP" case: the firmware's whole path, storage and FAT included, up to StartImage), and one with
Debian's systemd-boot loading the Debian kernel's EFI stub (up to the stub's ExitBootServices). Prints
milliseconds and exits from the firmware's start (the VMM's hand-off) to each point, and the guest
instructions that time stands for on this host (kernel mode is emulated here at about 0.7 us per
instruction, so time / 0.7 us estimates them: KVM does not count them for us). Then QEMU with
Debian's OVMF on the same disk if both are installed, or its outcome."""
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import efi_images as ei  # noqa: E402
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs  # noqa: E402

GEN2VM = os.path.join(ROOT, "build", "gen2vm")
US_PER_INSN = 0.7
CMDLINE = ("console=ttyS0 panic=-1 loglevel=7 init_on_alloc=0 cryptomgr.notests mitigations=off "
           "clearcpuid=ssse3,avx,aes,pclmulqdq,sha_ni")


def boot(disk, until, limit):
    """Runs the VM with -v until the log shows `until` (or it ends); returns (events, stats, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen([GEN2VM, "run", "-v", "--stats", "--memory", "512M", "--disk", disk, "--no-reboot",
                          "--clock-slowdown", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = ""
    while time.monotonic() - t0 < limit:
        line = p.stderr.readline()
        if not line:
            break
        err += line
        if until in line:
            break
    p.kill()
    err += p.stderr.read()
    p.wait()
    return err, time.monotonic() - t0


def report(name, err):
    m = re.search(r"starting (\S+) \(([\d.]+) ms after the firmware's start, (\d+) exits\)", err)
    e = re.search(r"ExitBootServices", err)
    if m:
        ms = float(m.group(2))
        print("  %-34s firmware start -> %s: %8.1f ms, %6s exits, ~%.1f M instructions" % (
            name, m.group(1), ms, m.group(3), ms * 1000 / US_PER_INSN / 1e6))
    else:
        print("  %-34s the loader was not reached: %s" % (name, (err.strip().splitlines() or ["?"])[-1]))
    return m, e


def main():
    work = os.path.join(ROOT, "build", "bench-firmware")
    os.makedirs(work, exist_ok=True)
    print("bench/firmware: gen2vm's UEFI firmware on this host (1 vCPU, 512 MiB)")
    hello = os.path.join(ROOT, "build", "efi", "hello.efi")
    fat = ei.make_fat(os.path.join(work, "small.fat"), {"EFI/BOOT/BOOTX64.EFI": hello})
    small = ei.make_gpt_disk(os.path.join(work, "small.img"), fat)
    err, _ = boot(small, "every boot entry failed", 120)
    report("ESP with one small EFI program", err)

    bins = ei.fetch_efi_binaries()
    k = fetch_kernel()
    initrd = os.path.join(work, "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "poweroff -f\n")
    fat = ei.make_fat(os.path.join(work, "sdboot.fat"), {
        "EFI/BOOT/BOOTX64.EFI": bins["systemd_boot"], "loader/loader.conf": "timeout 0\ndefault d.conf\n",
        "loader/entries/d.conf": "title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n" % CMDLINE,
        "vmlinuz": k["vmlinuz"], "initrd.img": initrd}, size_mb=80)
    sdboot = ei.make_gpt_disk(os.path.join(work, "sdboot.img"), fat)
    t0 = time.monotonic()
    err, secs = boot(sdboot, "ExitBootServices", 900)
    m, e = report("systemd-boot -> Linux EFI stub", err)
    if e:
        print("  %-34s firmware start -> the kernel's ExitBootServices: %.1f s (systemd-boot, and the EFI stub "
              "decompressing the kernel before it exits boot services: LZ4 on ~40 MiB, every instruction "
              "emulated here)" % ("", secs))
    ovmf = "/usr/share/OVMF/OVMF_CODE.fd"
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu or not os.path.exists(ovmf):
        print("  QEMU + OVMF: not installed (apt-get install qemu-system-x86 ovmf): no comparison")
        return
    vars_fd = os.path.join(work, "OVMF_VARS.fd")
    shutil.copy("/usr/share/OVMF/OVMF_VARS.fd", vars_fd)
    log = os.path.join(work, "qemu.log")
    t0 = time.monotonic()
    q = subprocess.run([qemu, "-enable-kvm", "-cpu", "host", "-m", "512", "-display", "none", "-no-reboot",
                        "-drive", "if=pflash,format=raw,readonly=on,file=" + ovmf,
                        "-drive", "if=pflash,format=raw,file=" + vars_fd, "-drive", "format=raw,file=" + small,
                        "-serial", "file:" + log, "-monitor", "none"], capture_output=True, text=True, timeout=300)
    out = open(log, errors="replace").read() if os.path.exists(log) else ""
    if "hello from EFI" in out:
        print("  QEMU + OVMF: the small program ran after %.1f s" % (time.monotonic() - t0))
    else:
        why = (q.stderr.strip().splitlines() or ["no output"])[-1]
        print("  QEMU + OVMF: did not reach the program (exit %d after %.1f s): %s" % (
            q.returncode, time.monotonic() - t0, why))


if __name__ == "__main__":
    main()
