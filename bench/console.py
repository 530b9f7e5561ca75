"""bench/console: what the console costs the VMM, gen2vm against QEMU, with the same Debian generic
kernel and busybox initramfs in the same host, and the same VNC client.

- gen2vm: --synthetic-console --video 1600x1200 --vnc, booted through its UEFI firmware and
  systemd-boot; the guest's screen is Debian's unmodified hyperv_drm (fbdev emulation: /dev/fb0;
  each change reaches the VMM as a DIRT message, and the VNC thread copies what it names).
- QEMU: -M q35 -accel kvm -vga std -vnc, direct kernel boot; the guest's screen is Debian's bochs
  DRM driver at 1600x1200 (video=Virtual-1:1600x1200); QEMU finds changes by dirty-logging the VRAM
  on its 30 ms display refresh timer.

The guest shows its screen and keeps it still for IDLE_SECONDS with no viewer attached, then a VNC
client (RFB 3.8, Raw encoding, here in Python) attaches and asks for incremental updates as fast as
they come, the screen stays still for IDLE_SECONDS more, and the guest draws FRAMES full 1600x1200
frames through /dev/fb0, each a new colour, two a second. Measured from /proc/PID/task: the VMM's
CPU time outside its vCPU threads (gen2vm's "vcpuN", QEMU's "CPU N/KVM"): what the display, VNC and
the VMM's other services cost, not the guest's own drawing; and each of those threads' wake-ups
(voluntary and involuntary context switches) per second.
- idle, no viewer / idle, viewer: CPU time per second while the screen does not change (target ~0),
  and the thread that woke most often;
- per update: CPU time of the drawing window, less the viewer-attached idle rate over it, per full
  frame the viewer received.

Where this host's KVM cannot run guest user mode (nested PVM) or there is no KVM, bench/console.sh
runs it in the nested test host, where every CPU is emulated (TCG): compare the ratio, not the
milliseconds."""
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import efi_images as ei  # noqa: E402
from conftest import loopback_up  # noqa: E402
from linux_guest import INIT_PRELUDE, generic_kernel, host_program, make_initramfs  # noqa: E402
from rfb import RfbClient  # noqa: E402

W, H = 1600, 1200
IDLE_SECONDS = int(os.environ.get("CONSOLE_BENCH_IDLE", "10"))
FRAMES = int(os.environ.get("CONSOLE_BENCH_FRAMES", "20"))
ATTACH_SECONDS = int(os.environ.get("CONSOLE_BENCH_ATTACH", "8"))  # the viewer's time to connect
LIMIT = int(os.environ.get("CONSOLE_BENCH_TIMEOUT", "1200"))

FBLOOP_C = r"""
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
/* fbloop N: N full frames through /dev/fb0's mmap, each one colour, two a second. */
int main(int argc, char **argv)
{
	int n = atoi(argv[1]), fb = open("/dev/fb0", O_RDWR);
	struct fb_var_screeninfo v;
	struct fb_fix_screeninfo f;
	if (fb < 0 || ioctl(fb, FBIOGET_VSCREENINFO, &v) || ioctl(fb, FBIOGET_FSCREENINFO, &f)) {
		perror("FBLOOP-FAILED");
		return 1;
	}
	printf("FB-GEOMETRY %ux%u %u bpp stride %u\n", v.xres, v.yres, v.bits_per_pixel, f.line_length);
	fflush(stdout);
	uint8_t *p = mmap(NULL, f.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	if (p == MAP_FAILED) {
		perror("FBLOOP-FAILED mmap");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		uint32_t c = 0x00102030u * (uint32_t)(i + 1) ^ 0x00a05010u;
		for (unsigned y = 0; y < v.yres; y++) {
			uint32_t *row = (uint32_t *)(p + (size_t)y * f.line_length);
			for (unsigned x = 0; x < v.xres; x++)
				row[x] = c;
		}
		msync(p, f.smem_len, MS_SYNC);
		fsync(fb);
		struct timespec ts = { 0, 500000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}
"""

INIT = r"""
for m in $(cat /modules/order); do insmod /modules/$m || echo "INSMOD-FAILED $m"; done
for i in $(seq 1 600); do grep -qx "FB_NAME" /sys/class/graphics/fb0/name 2>/dev/null && break; sleep 0.2; done
[ -e /dev/fb0 ] || mknod /dev/fb0 c 29 0
echo "FB-NAME $(cat /sys/class/graphics/fb0/name) $(cat /sys/class/graphics/fb0/virtual_size)"
echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
for c in /sys/class/vtconsole/vtcon*; do grep -q "frame buffer" $c/name && echo 0 > $c/bind; done
sleep 3
echo "IDLE-START"
sleep @IDLE@
echo "IDLE-END VIEWER-WANTED"
sleep @ATTACH@
echo "VIEWED-START"
sleep @IDLE@
echo "VIEWED-END"
/usr/local/bin/fbloop @FRAMES@ && echo "FRAMES-DONE"
sleep 3
echo "BENCH-END"
poweroff -f
"""


class Viewer(threading.Thread):
    """An RFB 3.8 client (tests/integration/rfb.py: no authentication, Raw): asks for incremental
    updates one after another and records each update's time and the pixels it covered."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.updates, self.error, self.size, self.stop = addr, [], None, None, False

    def run(self):
        try:
            end = time.time() + LIMIT
            while True:
                try:
                    s = socket.create_connection(self.addr, timeout=5)
                    break
                except OSError:
                    if time.time() > end:
                        raise
                    time.sleep(0.5)
            s.settimeout(LIMIT)
            c = RfbClient(s)
            self.size = (c.w, c.h)
            incremental = False
            while not self.stop:
                area = c.update(incremental)
                incremental = True
                self.size = (c.w, c.h)
                self.updates.append((time.monotonic(), area))
        except Exception as e:  # reported by the caller (not the end of the VM after the measurement)
            if not self.stop:
                self.error = repr(e)


def thread_stats(pid):
    """{tid: (name, CPU seconds, context switches)} of the process's threads now."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        switches = sum(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        out[tid] = (comm, (int(fields[11]) + int(fields[12])) / tick, switches)
    return out


def window(a, b, vcpu):
    """Between two samples (time, thread_stats): CPU seconds per second outside vCPU threads, and per
    non-vCPU thread (name, CPU ms per second, wake-ups per second), the busiest first."""
    (t0, s0), (t1, s1) = a, b
    dt = t1 - t0
    threads, cpu = [], 0.0
    for tid, (name, c1, w1) in s1.items():
        if vcpu(name):
            continue
        c0, w0 = s0[tid][1:] if tid in s0 else (0.0, 0)
        cpu += c1 - c0
        threads.append((name, (c1 - c0) / dt * 1000, (w1 - w0) / dt))
    threads.sort(key=lambda x: (-x[2], -x[1]))
    return cpu / dt, threads


MARKS = ("IDLE-START", "IDLE-END", "VIEWED-START", "VIEWED-END", "FRAMES-DONE", "BENCH-END")


def run_one(name, cmd, log, addr, vcpu):
    """Runs one VM: returns a dict of the figures, or the reason it could not."""
    if os.path.exists(log):
        os.unlink(log)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    viewer = Viewer(addr)
    marks, res = {}, {"name": name}
    t0 = time.monotonic()
    text = ""
    try:
        while time.monotonic() - t0 < LIMIT and p.poll() is None:
            text = open(log, errors="replace").read() if os.path.exists(log) else ""
            for m in MARKS:
                if m not in marks and m in text:
                    marks[m] = (time.monotonic(), thread_stats(p.pid))
                    if m == "IDLE-END":
                        viewer.start()
            if "BENCH-END" in marks or "INSMOD-FAILED" in text or "FBLOOP-FAILED" in text:
                break
            time.sleep(0.05)
        res["console"] = text[-1500:]
    finally:
        viewer.stop = True
        if p.poll() is None:
            time.sleep(1)
            p.kill()
        p.wait()
    res["stderr"] = p.stderr.read().decode(errors="replace")[-1500:]
    first = next((t for t, a in viewer.updates if a), None)
    if viewer.error or not viewer.size or not all(m in marks for m in MARKS[:5]):
        res["failed"] = "viewer: %s; marks seen: %s" % (viewer.error or ("connected" if viewer.size else
                                                                           "never connected"), sorted(marks))
        return res
    if first is None or first > marks["VIEWED-START"][0]:
        res["failed"] = "the viewer had no picture by VIEWED-START (increase CONSOLE_BENCH_ATTACH)"
        return res
    res["idle"] = window(marks["IDLE-START"], marks["IDLE-END"], vcpu)
    res["viewed"] = window(marks["VIEWED-START"], marks["VIEWED-END"], vcpu)
    ti1, tf1 = marks["VIEWED-END"][0], marks.get("BENCH-END", marks["FRAMES-DONE"])[0]
    draw_rate, _ = window(marks["VIEWED-END"], marks.get("BENCH-END", marks["FRAMES-DONE"]), vcpu)
    full = [t for t, a in viewer.updates if ti1 <= t <= tf1 and a >= W * H]
    res["frames"] = len(full)
    res["viewed_updates"] = sum(1 for t, a in viewer.updates if marks["VIEWED-START"][0] <= t <= ti1 and a)
    res["size"] = viewer.size
    if full:
        res["ms_per_update"] = (draw_rate - res["viewed"][0]) * (tf1 - ti1) / len(full) * 1000
    return res


def busiest(threads):
    return ", ".join("%s %.1f ms/s %.1f wake-ups/s" % t for t in threads[:4] if t[1] >= 0.05 or t[2] >= 0.05) or "-"


def main():
    loopback_up()  # the nested test host boots with its loopback interface down
    k = generic_kernel()
    work = os.path.join(ROOT, "build", "bench-console")
    os.makedirs(work, exist_ok=True)
    src, fbloop = os.path.join(work, "fbloop.c"), os.path.join(work, "fbloop")
    with open(src, "w") as f:
        f.write(FBLOOP_C)
    subprocess.run(["cc", "-O2", "-o", fbloop, src], check=True)
    extra = host_program(fbloop)
    extra["usr/local/bin/fbloop"] = extra.pop(fbloop.lstrip("/"))
    log = os.path.join(work, "com1.log")
    script = INIT.replace("@IDLE@", str(IDLE_SECONDS)).replace("@FRAMES@", str(FRAMES)).replace(
        "@ATTACH@", str(ATTACH_SECONDS))
    cmdline = "console=ttyS0 panic=-1 quiet"
    vnc_port, qemu_display = 5990, 91

    # gen2vm: UEFI and systemd-boot (hyperv_drm places its VRAM from VMOD's _CRS, as on Hyper-V).
    g_initrd = os.path.join(work, "initrd-gen2vm.cpio")
    make_initramfs(g_initrd, INIT_PRELUDE + script.replace("FB_NAME", "hyperv_drmdrmfb"), k["modules"],
                   ["hv_vmbus", "hyperv_drm"], extra_files=extra)
    efi = ei.fetch_efi_binaries()
    fat = ei.make_fat(os.path.join(work, "esp.fat"), {
        "EFI/BOOT/BOOTX64.EFI": efi["systemd_boot"],
        "loader/loader.conf": "timeout 0\ndefault debian.conf\n",
        "loader/entries/debian.conf": "title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n" % cmdline,
        "vmlinuz": k["vmlinuz"], "initrd.img": g_initrd}, size_mb=120)
    disk = ei.make_gpt_disk(os.path.join(work, "esp.img"), fat)
    os.unlink(fat)
    gen2vm = [os.path.join(ROOT, "build", "gen2vm"), "run", "--memory", "512M", "--cpus", "1", "--disk", disk,
              "--no-reboot", "--com1", "file:" + log, "--synthetic-console", "--video", "%dx%d" % (W, H),
              "--vnc", "127.0.0.1:%d" % vnc_port]
    # QEMU: the same kernel and script with the bochs DRM driver on -vga std.
    q_initrd = os.path.join(work, "initrd-qemu.cpio")
    make_initramfs(q_initrd, INIT_PRELUDE + script.replace("FB_NAME", "bochs-drmdrmfb"), k["modules"],
                   ["bochs"], extra_files=extra)
    qemu = ["/usr/bin/qemu-system-x86_64", "-name", "bench,debug-threads=on", "-M", "q35", "-accel", "kvm",
            "-cpu", "host", "-m", "512", "-smp", "1",
            "-nodefaults", "-no-user-config", "-vga", "std", "-vnc", "127.0.0.1:%d" % qemu_display,
            "-serial", "file:" + log, "-no-reboot", "-kernel", k["vmlinuz"], "-initrd", q_initrd,
            "-append", cmdline + " video=Virtual-1:%dx%d" % (W, H)]
    print("bench/console: Debian %s, 1 vCPU, %dx%d, %d s idle without a viewer, %d s idle with a VNC viewer "
          "attached, then %d full frames (2 a second); CPU time of the VMM outside its vCPU threads" % (
              k["version"], W, H, IDLE_SECONDS, IDLE_SECONDS, FRAMES), flush=True)
    only = os.environ.get("CONSOLE_BENCH_ONLY", "")  # "gen2vm" or "qemu": one of the two
    results = [
        run_one("gen2vm", gen2vm, log, ("127.0.0.1", vnc_port), lambda c: c.startswith("vcpu"))
        if only != "qemu" else {"name": "gen2vm", "failed": "not run (CONSOLE_BENCH_ONLY)"},
        run_one("QEMU q35 -vga std", qemu, log, ("127.0.0.1", 5900 + qemu_display), lambda c: c.startswith("CPU "))
        if only != "gen2vm" else {"name": "QEMU q35 -vga std", "failed": "not run (CONSOLE_BENCH_ONLY)"},
    ]
    for r in results:
        if "failed" in r:
            print("  %-18s could not be measured: %s\n    console ends: %s\n    stderr ends: %s" % (
                r["name"], r["failed"], r.get("console", "")[-600:], r.get("stderr", "")[-600:]), flush=True)
            continue
        print("  %-18s idle, no viewer: %.2f ms CPU per second (%s)" % (r["name"], r["idle"][0] * 1000,
                                                                        busiest(r["idle"][1])))
        print("  %-18s idle, viewer:    %.2f ms CPU per second (%s; %d updates sent)" % (
            "", r["viewed"][0] * 1000, busiest(r["viewed"][1]), r["viewed_updates"]))
        print("  %-18s per full-screen update: %s (%d full frames received, screen %s)" % (
            "", "%.1f ms CPU" % r["ms_per_update"] if "ms_per_update" in r else "none received", r["frames"],
            "%dx%d" % r["size"] if r.get("size") else "?"), flush=True)
    g, q = results
    if "ms_per_update" in g and "ms_per_update" in q and q["ms_per_update"] > 0:
        print("  gen2vm/QEMU: per update %.2fx; idle without a viewer %.2f vs %.2f ms/s, with one %.2f vs %.2f "
              "ms/s (target: ~0)" % (g["ms_per_update"] / q["ms_per_update"], g["idle"][0] * 1000,
                                     q["idle"][0] * 1000, g["viewed"][0] * 1000, q["viewed"][0] * 1000))
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
