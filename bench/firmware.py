"""bench/firmware: gen2vm's own UEFI firmware, from its first instruction to the OS loader's entry.

Two boots on a GPT disk with a FAT ESP: one whose ESP holds only our smallest EFI program (the
"empty ESP" case: the firmware's whole path, storage and FAT included, up to StartImage), and one with
Debian's systemd-boot loading the Debian kernel's EFI stub (up to the stub's ExitBootServices). Prints
milliseconds and exits from the firmware's start (the VMM's hand-off) to each point, and the guest
instructions that time stands for on this host (kernel mode is emulated here at about 0.7 us per
instruction, so time / 0.7 us estimates them: KVM does not count them for us). Then QEMU with
Debian's OVMF on the same disk if both are installed, or its outcome.

Secure Boot's cost per image: Debian's signed shim (as BOOTX64.EFI) starting Debian's signed GRUB,
whose grub.cfg prints a marker and halts, with Secure Boot on (the UEFI CA template) and off. For
gen2vm the VMM's own figure for the one image the firmware checks (shim: GRUB is shim's to check) and
the firmware's start -> shim time on and off; for QEMU + OVMF (the secboot build with Microsoft's keys
enrolled, against the plain build) the wall-clock time to GRUB's marker, on and off, median of 3.

Network boot: our small EFI program over PXE (DHCP then TFTP from Debian's dnsmasq on a tap in a
network namespace; root only), to the program's start, against QEMU + OVMF booting the same file from
the same server through a virtio-net adapter (OVMF's own PXE driver, no option ROM)."""
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


def boot(disk, until, limit, extra=()):
    """Runs the VM with -v until the log shows `until` (or it ends); returns (log, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen([GEN2VM, "run", "-v", "--stats", "--memory", "512M", "--disk", disk, "--no-reboot",
                          "--clock-slowdown", "8"] + list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
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
    m = re.search(r"starting (\S+)(?: at \S+)? \(([\d.]+) ms after the firmware's start, (\d+) exits\)", err)
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
    if os.environ.get("BENCH_NO_OVMF"):
        # In the nested test host, QEMU + OVMF under its KVM has twice ended the host's own emulator
        # (TCG assertion bql_locked, 2026-12-07): gen2vm's figures alone.
        qemu = None
        print("  QEMU + OVMF: left out (BENCH_NO_OVMF)")
    elif not qemu or not os.path.exists(ovmf):
        print("  QEMU + OVMF: not installed (apt-get install qemu-system-x86 ovmf): no comparison")
        return
    else:
        ovmf_small(qemu, ovmf, work, small)
    secure_boot(qemu, work, bins)
    network_boot(qemu, ovmf, work, hello)


def network_boot(qemu, ovmf, work, hello):
    print("bench/firmware: network boot (PXE: DHCP and TFTP of a small EFI program)")
    if os.geteuid() != 0 or not shutil.which("dnsmasq"):
        print("  needs root (a tap in a network namespace) and dnsmasq: not measured")
        return
    import pathlib
    from test_netboot import MAC, NetNs, ns_exec  # the tests' namespace, tap and dnsmasq
    root = pathlib.Path(work) / "tftp"
    root.mkdir(exist_ok=True)
    shutil.copy(hello, root / "hello.efi")
    marker = "hello from EFI"
    runs = []
    for i in range(3):
        with NetNs(pathlib.Path(work)) as n:
            n.dnsmasq(root, "hello.efi", pathlib.Path(work) / "dnsmasq.log")
            t0 = time.monotonic()
            p = subprocess.Popen(ns_exec(n.ns, GEN2VM, "run", "-v", "--memory", "256M", "--no-reboot",
                                         "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "--com1", "stdio"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = p.communicate(timeout=300)
            wall = time.monotonic() - t0
        # "starting the network boot file (...)": the name has spaces.
        m = re.search(r"starting (.+?) \(([\d.]+) ms after the firmware's start, (\d+) exits\)", err)
        runs.append((float(m.group(2)) if m else None, int(m.group(3)) if m else None, wall if marker in out else None))
    ok = [r for r in runs if r[0] is not None and r[2] is not None]
    if not ok:
        print("  gen2vm: the program was not reached over the network")
    else:
        ok.sort()
        fw_ms, exits, wall = ok[len(ok) // 2]
        print("  gen2vm: firmware start -> the program over PXE: %.1f ms, %d exits; process start -> its "
              "output: %.2f s (median of %d)" % (fw_ms, exits, wall, len(ok)))
    if not qemu:
        return
    walls = []
    for i in range(3):
        with NetNs(pathlib.Path(work)) as n:
            n.dnsmasq(root, "hello.efi", pathlib.Path(work) / "dnsmasq.log")
            vars_fd = os.path.join(work, "OVMF_VARS-net.fd")
            shutil.copy("/usr/share/OVMF/OVMF_VARS.fd", vars_fd)
            log = os.path.join(work, "qemu-net.log")
            if os.path.exists(log):
                os.unlink(log)
            t0 = time.monotonic()
            p = subprocess.Popen(ns_exec(n.ns, qemu, "-enable-kvm", "-cpu", "host", "-m", "256", "-display", "none",
                                         "-no-reboot", "-drive", "if=pflash,format=raw,readonly=on,file=" + ovmf,
                                         "-drive", "if=pflash,format=raw,file=" + vars_fd,
                                         "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % n.tap,
                                         "-device", "virtio-net-pci,netdev=n0,mac=%s,romfile=" % MAC,
                                         "-serial", "file:" + log, "-monitor", "none"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls.append(until_marker(p, t0, log, marker, 240))
    t = median(walls)
    if t is None:
        print("  QEMU + OVMF (virtio-net, OVMF's PXE): the program was not reached in 240 s")
    else:
        print("  QEMU + OVMF (virtio-net, OVMF's PXE): process start -> the program's output: %.2f s (median of %d)"
              % (t, len([w for w in walls if w is not None])))


def gen2vm_nvram(path, *set_args):
    subprocess.run([GEN2VM, "firmware", "reset", "--nvram", path], check=True, capture_output=True)
    if set_args:
        subprocess.run([GEN2VM, "firmware", "set", "--nvram", path] + list(set_args), check=True,
                       capture_output=True)
    return path


def qemu_until(qemu, code, vars_src, work, disk, marker, limit=600):
    """QEMU + OVMF (pflash code and a fresh copy of vars_src) until COM1 shows marker: seconds or None."""
    vars_fd = os.path.join(work, "vars.fd")
    shutil.copy(vars_src, vars_fd)
    log = os.path.join(work, "qemu-sb.log")
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.monotonic()
    p = subprocess.Popen([qemu, "-enable-kvm", "-cpu", "host", "-m", "512", "-display", "none", "-no-reboot",
                          "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
                          "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
                          "-drive", "if=pflash,format=raw,unit=1,file=" + vars_fd,
                          "-drive", "format=raw,file=" + disk, "-serial", "file:" + log, "-monitor", "none"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return until_marker(p, t0, log, marker, limit)


def until_marker(p, t0, log, marker, limit):
    """Seconds from t0 until the serial log shows marker (None: p ended or limit passed); p is killed."""
    got = None
    while time.monotonic() - t0 < limit and p.poll() is None:
        if os.path.exists(log) and marker in open(log, errors="replace").read():
            got = time.monotonic() - t0
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    return got


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def secure_boot(qemu, work, bins):
    print("bench/firmware: Secure Boot's cost per image (Debian's signed shim -> signed GRUB)")
    marker = "BENCH-GRUB-REACHED"
    fat = ei.make_fat(os.path.join(work, "sb.fat"), {
        "EFI/BOOT/BOOTX64.EFI": bins["shim"], "EFI/BOOT/grubx64.efi": bins["grub_signed"],
        "EFI/debian/grub.cfg": 'echo "%s"\nhalt\n' % marker}, size_mb=40)
    disk = ei.make_gpt_disk(os.path.join(work, "sb.img"), fat)
    on = gen2vm_nvram(os.path.join(work, "sb-on.nvram"), "--secure-boot", "on", "--secure-boot-template",
                      "MicrosoftUEFICertificateAuthority")
    off = gen2vm_nvram(os.path.join(work, "sb-off.nvram"), "--secure-boot", "off")
    starts = {}
    for name, nv in (("on", on), ("off", off)):
        err, secs = boot(disk, "starting \\EFI\\BOOT\\BOOTX64.EFI", 300, ["--nvram", nv])
        m = re.search(r"starting \S+ \(([\d.]+) ms after the firmware's start", err)
        starts[name] = float(m.group(1)) if m else None
        v = re.search(r"Secure Boot (admitted|refused) an image of (\d+) bytes: (.*) \(([\d.]+) ms\)", err)
        if v:
            print("  gen2vm, Secure Boot %-3s the VMM checked shim (%s bytes): %s, %s in %s ms (OpenSSL, one exit)" % (
                name, v.group(2), v.group(1), v.group(3), v.group(4)))
    if None not in starts.values():
        print("  gen2vm: firmware start -> shim: %.1f ms with Secure Boot on, %.1f ms off (difference %+.1f ms)" % (
            starts["on"], starts["off"], starts["on"] - starts["off"]))
    else:
        print("  gen2vm: shim was not reached (on: %s, off: %s)" % (starts["on"], starts["off"]))
    if not qemu:
        return
    code_sb, vars_ms = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    code, vars_plain = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
    if not all(os.path.exists(f) for f in (code_sb, vars_ms, code, vars_plain)):
        print("  QEMU + OVMF: the 4M secboot builds are not installed (ovmf): no comparison")
        return
    t_on = median([qemu_until(qemu, code_sb, vars_ms, work, disk, marker) for _ in range(3)])
    t_off = median([qemu_until(qemu, code, vars_plain, work, disk, marker) for _ in range(3)])
    if t_on is None or t_off is None:
        print("  QEMU + OVMF: GRUB's marker was not reached (on: %s, off: %s)" % (t_on, t_off))
        return
    print("  QEMU + OVMF (q35, SMM): start -> GRUB's marker: %.2f s with Secure Boot on (Microsoft's keys), "
          "%.2f s off (difference %+.2f s; wall clock, median of 3; includes shim checking GRUB in both)" % (
              t_on, t_off, t_on - t_off))


def ovmf_small(qemu, ovmf, work, small):
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
