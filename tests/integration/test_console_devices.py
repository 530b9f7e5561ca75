"""The synthetic keyboard and mouse with the real clients: Debian's stock cloud kernel with its
unmodified hyperv_keyboard (a serio port under the kernel's own AT keyboard driver) and hid_hyperv
(a HID device through hid and evdev). One boot with --synthetic-console:
- text typed with `control type` and `control key enter` is read by a shell from the guest's first
  virtual terminal, as a user's typing would be;
- `control mouse X Y BUTTONS` reaches the guest as absolute pointer events with the same X and Y and a
  left button press (read from the mouse's /dev/input/event node).
Two more boots prove the screen, with the cloud kernel's hyperv_fb at 1600x1200 and the generic
kernel's hyperv_drm at a resolution the guest picks: fbcon's text is read back from a screenshot by
OCR, and a pattern drawn through /dev/fb0 comes back from `control screenshot` pixel for pixel.
"""
import os
import re
import struct
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run
import efi_images as ei
from screen import fb_pattern, have_ocr, ocr, png_read_rgb
from linux_guest import INIT_PRELUDE, generic_kernel, host_program, make_initramfs
from test_firmware_boot import Vm as FirmwareVm, esp_disk
from test_linux import LOAD_MODULES, Vm

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"), pytest.mark.real_guest]

INIT = LOAD_MODULES + r"""
for i in $(seq 1 150); do grep -q "Vmbus HID" /proc/bus/input/devices && grep -q "AT Translated" /proc/bus/input/devices && break; sleep 0.2; done
grep -E "^(N|H):" /proc/bus/input/devices | sed 's/^/INPUT-DEV /'
mkdir -p /dev/input
for e in /sys/class/input/event*; do n=${e##*/}; [ -e /dev/input/$n ] || mknod /dev/input/$n c $(cut -d: -f1 $e/dev) $(cut -d: -f2 $e/dev); done
[ -e /dev/tty1 ] || mknod /dev/tty1 c 4 1
exec 3< /dev/tty1
echo "KBD-READY"
read -r line <&3
echo "TYPED [$line]"
ev=$(awk '/^N:.*Vmbus HID/{f=1} f && /^H:/{print; exit}' /proc/bus/input/devices | grep -o 'event[0-9]*')
echo "MOUSE-NODE $ev"
dd if=/dev/input/$ev of=/tmp/ev bs=24 count=8 2>/dev/null &
sleep 1
echo "MOUSE-READY"
wait
echo "MOUSE-EVENTS $(od -An -v -tx1 /tmp/ev | tr -d ' \n')"
poweroff -f
"""


def ctl(vm, *args):
    return run(gen2vm_binary(), "control", vm.sock, *args, check=False).stdout.strip()


def test_keyboard_and_mouse_with_linux(tmp_path, kernel):
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + INIT, kernel["modules"],
                   ["hv_vmbus", "hyperv_keyboard", "hid_hyperv", "hid_generic", "evdev"])
    vm = Vm(tmp_path, kernel, initrd, ["--synthetic-console"])
    r = {}
    if vm.wait_for("KBD-READY"):
        r["type"] = ctl(vm, "type", "hello gen2vm 42")
        r["enter"] = ctl(vm, "key", "enter")
        if vm.wait_for("MOUSE-READY", 300):
            r["press"] = ctl(vm, "mouse", "1000", "2000", "1")
            time.sleep(0.5)
            r["release"] = ctl(vm, "mouse", "1000", "2000", "0")
    rc = vm.finish()
    console, err = vm.console(), vm.err
    vm.fail_if_blocked()
    assert "KBD-READY" in console, console[-3000:] + err[-3000:]
    assert "INSMOD-FAILED" not in console, console[-3000:]
    assert "Vmbus HID" in console and "AT Translated" in console, console[-3000:]
    assert r.get("type", "").startswith("ok: typed 15 characters"), r
    assert r.get("enter", "").startswith("ok"), r
    assert "TYPED [hello gen2vm 42]" in console, (r, console[-3000:])
    assert r.get("press", "").startswith("ok") and r.get("release", "").startswith("ok"), (r, console[-3000:])
    m = re.search(r"MOUSE-EVENTS ([0-9a-f]*)", console)
    assert m, console[-3000:]
    raw = bytes.fromhex(m.group(1))
    events = [struct.unpack_from("<qqHHi", raw, i)[2:] for i in range(0, len(raw) - 23, 24)]
    assert (3, 0, 1000) in events and (3, 1, 2000) in events, events  # EV_ABS ABS_X / ABS_Y
    assert (1, 0x110, 1) in events, events  # EV_KEY BTN_LEFT pressed
    assert rc == 0, err[-3000:]


# ---- the screen ----

OCR_MARKER = "HELLO FROM THE GUEST SCREEN"

# The guest's drawing program: writes /pattern (FB_W x FB_H pixels, given when it is compiled, of XRGB, rows packed) into
# /dev/fb0 through mmap, as X or a console would. hyperv_fb draws into a shadow buffer and copies only
# what its deferred I/O saw written to the VRAM: a write() to /dev/fb0 (dd) never reaches the VRAM
# on Debian's 6.1 kernel, an mmap write does; fsync flushes the deferred I/O at once. busybox has no
# tool for it (no fbsplash in Debian's busybox-static), so it is built here, linked against this
# machine's libc (host_program packs the libraries).
FBWRITE_C = r"""
#include <fcntl.h>
#include <linux/fb.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	unsigned w = FB_W, h = FB_H;
	int fb = open("/dev/fb0", O_RDWR), in = open(argv[1], O_RDONLY);
	struct fb_var_screeninfo v;
	struct fb_fix_screeninfo f;
	if (fb < 0 || in < 0 || ioctl(fb, FBIOGET_VSCREENINFO, &v) || ioctl(fb, FBIOGET_FSCREENINFO, &f)) {
		perror("FBWRITE-FAILED");
		return 1;
	}
	printf("FB-GEOMETRY %ux%u %u bpp stride %u size %u\n", v.xres, v.yres, v.bits_per_pixel, f.line_length,
	       f.smem_len);
	if (v.xres != w || v.yres != h || v.bits_per_pixel != 32) {
		printf("FBWRITE-FAILED unexpected geometry\n");
		return 1;
	}
	unsigned char *p = mmap(NULL, f.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	static unsigned char row[FB_W * 4];
	if (p == MAP_FAILED) {
		perror("FBWRITE-FAILED mmap");
		return 1;
	}
	for (unsigned y = 0; y < h; y++) {
		if (read(in, row, sizeof(row)) != (ssize_t)sizeof(row)) {
			printf("FBWRITE-FAILED short pattern\n");
			return 1;
		}
		memcpy(p + (size_t)y * f.line_length, row, sizeof(row));
	}
	msync(p, f.smem_len, MS_SYNC);
	fsync(fb);
	return 0;
}
"""

SCREEN_INIT = LOAD_MODULES + r"""
# The firmware's GOP gives the kernel an early efifb at fb0; the video driver takes its place once
# it probes.
for i in $(seq 1 150); do grep -qx "FB_NAME_WANTED" /sys/class/graphics/fb0/name 2>/dev/null && break; sleep 0.2; done
[ -e /dev/fb0 ] || mknod /dev/fb0 c 29 0
echo "FB-NAME $(cat /sys/class/graphics/fb0/name)"
echo "FB-VIRTUAL-SIZE $(cat /sys/class/graphics/fb0/virtual_size)"
echo "FB-STRIDE $(cat /sys/class/graphics/fb0/stride)"
# Text first: the framebuffer console (fbcon on hyperv_fb) shows what is written to tty1.
[ -e /dev/tty1 ] || mknod /dev/tty1 c 4 1
printf '\033[2J\033[H\n  %s\n\n' "OCR_MARKER" > /dev/tty1
echo "TEXT-SHOWN"
sleep 10
# The framebuffer console would draw its cursor over the pattern: let it go.
echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null
for c in /sys/class/vtconsole/vtcon*; do grep -q "frame buffer" $c/name && echo 0 > $c/bind; done
if FBWRITE_PATH /pattern; then
  sleep 1  # hyperv_fb's refresh throttle (HZ/20) may still hold the last rectangle
  echo "FB-WRITTEN"
fi
for i in $(seq 1 60); do [ -e /never ] && break; sleep 1; done
poweroff -f
"""


def screen_proof(tmp_path, kernel, efi_bins, modules, fb_name, video, w, h, cmdline_extra=""):
    """One boot through gen2vm's UEFI firmware and systemd-boot (a video driver takes its Generation 2
    path only when efi_enabled(EFI_BOOT); on a direct --kernel boot hyperv_fb looks for Hyper-V's
    Generation 1 PCI video device and gives up) with the video driver in modules: the framebuffer
    console's text is read back from a screenshot by OCR; then a program draws a known w x h pattern
    through /dev/fb0 and `control screenshot` must give back exactly those pixels."""
    fbwrite = str(tmp_path / "fbwrite")
    (tmp_path / "fbwrite.c").write_text(FBWRITE_C)
    run("cc", "-O2", f"-DFB_W={w}", f"-DFB_H={h}", "-o", fbwrite, str(tmp_path / "fbwrite.c"))
    pattern = fb_pattern(w, h)
    extra = host_program(fbwrite)
    # At a path of its own: tmp_path may lie under /dev (/dev/shm), which the guest's devtmpfs hides.
    extra["usr/local/bin/fbwrite"] = extra.pop(fbwrite.lstrip("/"))
    extra["pattern"] = pattern
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + SCREEN_INIT.replace("FBWRITE_PATH", "/usr/local/bin/fbwrite")
                   .replace("OCR_MARKER", OCR_MARKER).replace("FB_NAME_WANTED", fb_name), kernel["modules"], modules,
                   extra_files=extra)
    cmdline = "console=ttyS0 panic=-1 loglevel=7 " + cmdline_extra
    disk = esp_disk(tmp_path, "screen", {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["systemd_boot"],
        "loader/loader.conf": "timeout 0\ndefault debian.conf\n",
        "loader/entries/debian.conf": f"title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions {cmdline}\n",
        "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=120)
    vm = FirmwareVm(tmp_path, ["--disk", disk, "--no-reboot", "--synthetic-console", "--video", video])
    shot = str(tmp_path / "out.png")
    replies, got, text_shots = [], None, []
    if vm.wait_for("TEXT-SHOWN", 900, where="out"):
        # The guest shows the text for 10 s: a few screenshots in that time, read afterwards.
        for i in range(3):
            time.sleep(1)
            p = str(tmp_path / f"text{i}.png")
            if ctl(vm, "screenshot", p).startswith("ok"):
                text_shots.append(p)
    want = bytes(v for i, v in enumerate(pattern) if i % 4 != 3)  # B, G, R per pixel
    want = bytes(want[i + 2 - 2 * (i % 3)] for i in range(len(want)))  # -> R, G, B
    if vm.wait_for("FB-WRITTEN", 900, where="out"):
        # The guest's last copy to the VRAM may trail its fsync by a refresh period: a few tries.
        for _ in range(10):
            replies.append(ctl(vm, "screenshot", shot))
            if replies[-1].startswith("ok") and os.path.exists(shot):
                got = png_read_rgb(shot)
                if got[2] == want:
                    break
            time.sleep(1)
    rc = vm.finish(timeout=900)
    out, err = vm.out(), vm.err
    assert "INSMOD-FAILED" not in out, out[-3000:]
    # Nobody watched the screen and the NVRAM asks for no Timeout: the firmware offered no boot menu
    # window (a console nobody watches costs no boot time).
    assert "firmware: press Esc or F2" not in out, out[-3000:]
    assert f"FB-NAME {fb_name}" in out, out[-3000:] + err[-3000:]
    assert f"FB-VIRTUAL-SIZE {w},{h}" in out, out[-3000:]
    assert f"FB-STRIDE {w * 4}" in out, out[-3000:]
    assert "FB-WRITTEN" in out, out[-3000:] + err[-3000:]
    # fbcon's text, read by OCR from the top of the screen (8x16 glyphs, 3 lines down).
    texts = [ocr(p, box=(0, 0, 400, 80)) for p in text_shots]
    assert any(OCR_MARKER in t.upper() for t in texts), texts
    assert replies and replies[-1] == f"ok: {w}x{h} written to {shot}", (replies, err[-3000:])
    assert got is not None and got[:2] == (w, h), got and got[:2]
    bad = [i // 3 for i in range(0, len(want), 3) if got[2][i:i + 3] != want[i:i + 3]]
    assert not bad, "%d pixels differ, first at (%d, %d)" % (len(bad), bad[0] % w, bad[0] // w)
    assert rc == 0, err[-3000:]


SCREEN_TOOLS = ei.have_tools("mkfs.vfat", "mcopy", "mmd", "sfdisk", "cc") and have_ocr()
SCREEN_TOOLS_WHY = "needs dosfstools, mtools, fdisk, tesseract-ocr and a C compiler (scripts/deps.sh test)"


@pytest.mark.skipif(not SCREEN_TOOLS, reason=SCREEN_TOOLS_WHY)
def test_screen_with_hyperv_fb(tmp_path, kernel, efi_bins):
    """Debian's cloud kernel's unmodified hyperv_fb with --video 1600x1200: it takes that screen (the
    default the device offers) and places its VRAM in VMOD's MMIO window."""
    screen_proof(tmp_path, kernel, efi_bins, ["hv_vmbus", "hyperv_fb"], "hyperv_fb", "1600x1200", 1600, 1200)


@pytest.mark.skipif(not SCREEN_TOOLS, reason=SCREEN_TOOLS_WHY)
def test_screen_with_hyperv_drm(tmp_path, efi_bins):
    """Debian's generic kernel's unmodified hyperv_drm (DRM, with its fbdev emulation as /dev/fb0),
    the VM's screen up to 1920x1080, and the guest choosing another resolution itself
    (video=Virtual-1:1280x720): the device follows the guest's mode set."""
    screen_proof(tmp_path, generic_kernel(), efi_bins, ["hv_vmbus", "hyperv_drm"], "hyperv_drmdrmfb", "1920x1080",
                 1280, 720, "video=Virtual-1:1280x720")
