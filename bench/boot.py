"""bench/boot: gen2vm booting Debian's stock cloud kernel with a busybox initramfs.

Prints process start -> first guest instruction, -> the init marker on COM1, the exits by type, the
instructions gen2vm completed for KVM, and the VMM's own RSS beyond guest RAM; then QEMU on the same
kernel and initramfs if qemu-system-x86_64 is installed, with the ratio (or QEMU's outcome)."""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs  # noqa: E402

MARKER = "Run /init as init process"  # the kernel's own line: time to init, userspace or not
USER_MARKER = "GEN2VM-BENCH-INIT"
CMDLINE = ("console=ttyS0 panic=-1 loglevel=7 init_on_alloc=0 cryptomgr.notests mitigations=off "
           "clearcpuid=ssse3,avx,aes,pclmulqdq,sha_ni")
LIMIT = int(os.environ.get("BOOT_BENCH_TIMEOUT", "900"))


def watch(path, proc, t0, found):
    while proc.poll() is None:
        try:
            if MARKER in open(path, errors="replace").read():
                found.append(time.monotonic() - t0)
                return
        except FileNotFoundError:
            pass
        time.sleep(0.05)


def run(cmd, log, limit=LIMIT):
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = []
    th = threading.Thread(target=watch, args=(log, p, t0, found))
    th.start()
    try:
        out, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    th.join()
    return p.returncode, time.monotonic() - t0, (found[0] if found else None), out, err


def main():
    k = fetch_kernel()
    work = os.path.join(ROOT, "build", "bench-boot")
    os.makedirs(work, exist_ok=True)
    initrd = os.path.join(work, "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + "echo %s\npoweroff -f\n" % USER_MARKER)
    log = os.path.join(work, "com1.log")
    rc, total, marker, _, err = run([os.path.join(ROOT, "build", "gen2vm"), "run", "--memory", "256M",
                                     "--kernel", k["vmlinuz"], "--initrd", initrd, "--cmdline", CMDLINE,
                                     "--com1", "file:" + log, "--stats", "--clock-slowdown", "8",
                                     "--no-reboot"], log)
    stats = {}
    m = re.search(r"gen2vm-stats: (.*)", err)
    if m:
        stats = dict(kv.split("=") for kv in m.group(1).split())
    print("bench/boot: Debian %s, 1 vCPU, 256 MiB, busybox initramfs" % k["version"])
    print("  gen2vm: exit code %d, total %.1f s" % (rc, total))
    print("    process start -> first guest instruction: %.1f ms" %
          (int(stats.get("start_to_first_instruction_us", 0)) / 1000))
    print("    process start -> kernel runs init:        %s" % ("%.1f s" % marker if marker else "not reached"))
    user = USER_MARKER in open(log, errors="replace").read()
    print("    init's first line on COM1 (userspace):     %s" % ("yes" if user else
          "no: this host's KVM (PVM) does not complete guest SYSCALLs (README)"))
    print("    exits: " + ", ".join("%s %s" % (k2[6:], v) for k2, v in stats.items() if k2.startswith("exits_")))
    print("    instructions completed for KVM: %s" % stats.get("completed_instructions", "?"))
    print("    VMM RSS beyond guest RAM: %s KiB (guest RAM touched: %s KiB)" %
          (stats.get("vmm_rss_kib", "?"), stats.get("guest_ram_touched_kib", "?")))
    if rc != 0:
        print("    gen2vm error: " + err.strip().splitlines()[-1] if err.strip() else "")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        print("  QEMU: qemu-system-x86_64 not installed (apt-get install qemu-system-x86): no comparison")
        return
    qlog = os.path.join(work, "qemu-com1.log")
    qrc, qtotal, qmarker, qout, qerr = run([qemu, "-enable-kvm", "-cpu", "host", "-m", "256", "-smp", "1",
                                            "-kernel", k["vmlinuz"], "-initrd", initrd, "-append", CMDLINE,
                                            "-display", "none", "-serial", "file:" + qlog, "-no-reboot",
                                            "-monitor", "none"], qlog,
                                           limit=int(os.environ.get("BOOT_BENCH_QEMU_TIMEOUT", "300")))
    if qmarker:
        print("  QEMU: kernel runs init after %.1f s; gen2vm/QEMU time to init = %.2f" % (
            qmarker, (marker or total) / qmarker))
    else:
        why = re.search(r"(KVM internal error.*|emulation failure.*)", qerr + qout)
        print("  QEMU: did not reach init in %.1f s (exit %s; stopped by the bench if None): %s" % (
            qtotal, qrc, why.group(1).strip() if why else (qerr.strip().splitlines() or ["timed out"])[-1]))


if __name__ == "__main__":
    main()
