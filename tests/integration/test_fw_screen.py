"""The firmware on the screen and the keyboard, as a user at the VM's console sees them: gen2vm's own
firmware draws its text on the synthetic video device (GOP) and reads the synthetic keyboard, merged
with COM1. One boot with --synthetic-console and --video 1600x1200, two DVD drives holding a
grub-mkrescue ISO with a "Press any key to boot from CD or DVD" loader in front of GRUB (as Windows
media have one), two disks (a blank one, then a systemd-boot ESP) and PauseAfterBootFailure on:
- the firmware's screen follows --video: every screenshot is 1600x1200 and its text is read back by
  OCR (tesseract); the loader on the DVD finds a 1600x1200 GOP mode and a 200x75 text mode;
- the firmware's "press Esc or F2" prompt, there with nobody watching because the NVRAM's Timeout asks
  for 3 s (`firmware set --timeout 3`), is answered with `control key f2`: its boot menu opens and is
  read back from a screenshot; Esc leaves it;
- the first DVD's "Press any key to boot from CD or DVD" is on the screen; no key comes, the loader
  gives up and the firmware goes on with the next boot entry (after PauseAfterBootFailure's prompt,
  answered with `key enter`);
- the second DVD's prompt is answered with `key enter`: GRUB starts from the DVD and prints its
  marker, then returns to the firmware;
- the blank disk fails: the firmware's failure line and its "press a key" prompt are on the screen,
  and `control key enter` answers the prompt;
- Debian's systemd-boot (a real client of GOP/ConOut/ConIn) shows its menu with a timeout: OCR finds
  the second entry's title in a screenshot, and Down and Return sent by a VNC viewer (RFB KeyEvents
  on the VM's --vnc socket) boot that entry, whose program says on COM1 which entry started it.

Each step that fails says which it was, with the COM1 output, the VMM's log and the screenshots so
far (kept in the test's tmp_path)."""
import os
import re
import shutil
import time

import pytest

import efi_images as ei
from conftest import gen2vm_binary, have_kvm, run
from rfb import RfbClient
from screen import ocr_text_grids, png_read_rgb
from test_firmware_boot import EFI, Vm, esp_disk

pytestmark = [
    pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
    pytest.mark.skipif(not shutil.which("tesseract"), reason="needs tesseract-ocr (scripts/deps.sh test)"),
    pytest.mark.skipif(not ei.have_tools("mkfs.vfat", "mcopy", "mmd", "mmove", "sfdisk", "grub-mkrescue", "xorriso"),
                       reason="needs dosfstools, mtools, fdisk, grub-efi-amd64-bin and xorriso (scripts/deps.sh test)"),
    pytest.mark.real_guest,
]

WIDTH, HEIGHT = 1600, 1200
PROMPT = "Press any key to boot from CD or DVD"
PAUSED = r"paused after a boot failure"


def ctl(vm, *args):
    return run(gen2vm_binary(), "control", vm.sock, *args, check=False).stdout.strip()


def shot(vm, tmp_path, name):
    """A screenshot now (its PNG's path); read later with ocr(), as OCR is slow on this host and
    systemd-boot's menu counts down meanwhile."""
    png = str(tmp_path / f"{name}.png")
    reply = ctl(vm, "screenshot", png)
    assert reply.startswith("ok"), f"screenshot {name}: {reply}"
    return png


def grids(w, h):
    """The text grids the firmware's console can be on: 80x25 centred (mode 0) and the whole screen
    (its last mode), the first left out where its cells line up with the second's."""
    whole = ((w - w // 8 * 8) // 2, (h - h // 16 * 16) // 2, w // 8, h // 16)
    small = ((w - 640) // 2, (h - 400) // 2, 80, 25)
    aligned = (small[0] - whole[0]) % 8 == 0 and (small[1] - whole[1]) % 16 == 0
    return [whole] if aligned else [small, whole]


def ocr(png):
    """The screen's text as tesseract reads it, after checking the screen's size."""
    w, h, _ = png_read_rgb(png)
    assert (w, h) == (WIDTH, HEIGHT), f"{png}: {w}x{h}, not the {WIDTH}x{HEIGHT} --video asked for"
    return ocr_text_grids(png, grids(w, h))


class Steps:
    """The boot's steps in order: each records whether it happened; the first that did not is
    reported with what the VM printed, its log and the screenshots taken."""

    def __init__(self, vm, tmp_path):
        self.vm, self.tmp, self.failed = vm, tmp_path, None

    def com1(self):
        p = self.tmp / "vm.com1"
        return p.read_text(errors="replace") if p.exists() else ""

    def wait(self, step, pattern, timeout, count=1, where="com1"):
        """True once pattern has been seen count times: in COM1 (where the firmware's ConOut and
        fw_printf go), "out" (COM1 and the debug console, where our EFI programs' app_printf lines
        go) or "err" (the VMM's log)."""
        if self.failed:
            return False
        end = time.time() + timeout
        while True:
            text = self.com1() if where == "com1" else self.vm.out() if where == "out" else self.vm.err
            if len(re.findall(pattern, text)) >= count:
                return True
            if time.time() >= end or self.vm.p.poll() is not None:
                self.failed = f"{step}: {pattern!r} not seen {count} time(s) within {timeout} s"
                return False
            time.sleep(0.2)

    def key(self, step, name):
        if self.failed:
            return False
        r = ctl(self.vm, "key", name)
        if not r.startswith("ok"):
            self.failed = f"{step}: key {name}: {r}"
        return not self.failed

    def report(self, what=""):
        shots = sorted(str(p) for p in self.tmp.glob("*.png"))
        return (f"{what}\n--- step that failed: {self.failed}\n--- COM1 ends:\n{self.com1()[-3000:]}"
                f"\n--- the VMM's log ends:\n{self.vm.err[-3000:]}\n--- screenshots: {shots}")


def test_firmware_screen_keyboard_dvd_prompt_and_systemd_boot_menu(tmp_path):
    efi = ei.fetch_efi_binaries()
    hello = os.path.join(EFI, "hello.efi")
    disk = esp_disk(tmp_path, "sdboot", {
        "EFI/BOOT/BOOTX64.EFI": efi["systemd_boot"],
        "EFI/gen2vm/hello.efi": hello,
        # systemd-boot lists entries by file name, descending (newest version first): entry-2.conf is
        # the first entry shown, and the default; entry-1.conf the second.
        "loader/loader.conf": "timeout 120\ndefault entry-2.conf\n",
        "loader/entries/entry-2.conf": "title Alpha entry\nefi /EFI/gen2vm/hello.efi\noptions first-entry\n",
        "loader/entries/entry-1.conf": "title Bravo entry\nefi /EFI/gen2vm/hello.efi\noptions second-entry\n",
    })
    # GRUB prints its marker and returns to the firmware (exit), which goes on with the boot order.
    iso = ei.dvd_prompt_iso(str(tmp_path / "prompt.iso"), 'echo "GRUB-FROM-DVD"\nexit\n',
                            os.path.join(EFI, "cdprompt.efi"))
    iso2 = str(tmp_path / "prompt2.iso")
    shutil.copyfile(iso, iso2)
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    nvram = str(tmp_path / "vm.nvram")
    run(gen2vm_binary(), "firmware", "reset", "--nvram", nvram)
    run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--pause-after-boot-failure", "on", "--timeout", "3")
    # The drives in this order make the boot order: DVD, DVD, blank disk, systemd-boot's disk.
    vnc = str(tmp_path / "vnc.sock")
    vm = Vm(tmp_path, ["--nvram", nvram, "--dvd", iso, "--dvd", iso2, "--disk", blank, "--disk", disk,
                       "--synthetic-console", "--video", f"{WIDTH}x{HEIGHT}", "--vnc", "unix:" + vnc])
    st = Steps(vm, tmp_path)
    shots = {}
    try:
        # The firmware's own boot menu, opened from the keyboard during its start window. The key is
        # sent as soon as the firmware's keyboard driver takes keys (typed ahead: the window is short
        # and this host slow), and waits in the ring until the window reads it.
        end = time.time() + 90
        while time.time() < end and vm.p.poll() is None:
            r = ctl(vm, "key", "f2")
            if r.startswith("ok"):
                break
            time.sleep(0.2)
        else:
            st.failed = f"F2 at start: the keyboard never took it ({r})"
        # Nobody watches the screen (no VNC viewer), but the NVRAM's Timeout asks for 3 s: the prompt is
        # shown and the key (typed ahead or within the window) opens the menu.
        if st.wait("the firmware's menu prompt (Timeout 3 s)", r"press Esc or F2 for the boot menu", 80) and \
                st.wait("the firmware's boot menu", r"gen2vm boot menu", 20):
            time.sleep(0.5)
            shots["menu"] = shot(vm, tmp_path, "menu")
            st.key("leaving the boot menu", "esc")
        # The first DVD: its prompt on the screen, no key; the loader gives up, the firmware pauses
        # (PauseAfterBootFailure) and goes on when a key answers the pause.
        if st.wait("the first DVD's prompt", PROMPT, 90):
            time.sleep(0.3)
            shots["dvd"] = shot(vm, tmp_path, "dvd")
            if st.wait("the first DVD giving up without a key", r"cdprompt: no key", 30) and \
                    st.wait("the pause after the first DVD", PAUSED, 60, where="err"):
                st.key("answering the pause after the first DVD", "enter")
        # The second DVD: the prompt answered from the console; GRUB starts and returns.
        if st.wait("the second DVD's prompt", PROMPT, 90, count=2) and \
                st.key("answering the second DVD's prompt", "enter") and \
                st.wait("GRUB from the second DVD", r"GRUB-FROM-DVD", 180) and \
                st.wait("the pause after GRUB returned", PAUSED, 60, count=2, where="err"):
            st.key("answering the pause after GRUB", "enter")
        # The blank disk fails; the pause prompt is answered from the keyboard.
        if st.wait("the pause after the blank disk", PAUSED, 60, count=3, where="err"):
            time.sleep(0.5)
            shots["failure"] = shot(vm, tmp_path, "failure")
            st.key("answering the pause after the blank disk", "enter")
        # systemd-boot's menu, counting down from 120 s.
        if st.wait("systemd-boot's menu", r"Bravo entry", 60):
            time.sleep(1)
            shots["sdboot"] = shot(vm, tmp_path, "sdboot")
            # A VNC viewer's keys (X keysyms, to synthkbd as scan codes, read by the firmware's ConIn).
            with RfbClient.unix(vnc) as viewer:
                viewer.update()
                viewer.key(0xff54)  # Down
                time.sleep(0.3)
                viewer.key(0xff0d)  # Return
                st.wait("systemd-boot's second entry, chosen through VNC", r"hello: load options", 30, where="out")
    finally:
        vm.stop()
    assert not st.failed, st.report()
    texts = {k: ocr(v) for k, v in shots.items()}
    out, err = vm.out(), vm.err
    report = st.report(f"OCR: {texts}")
    # The screen follows --video, seen from inside the VM: GOP's mode and ConOut's modes on it (the
    # last is the whole screen; on 1024x768 it would be 128x48, and 80x50 would not be offered).
    assert f"cdprompt: screen {WIDTH}x{HEIGHT}, text modes 80x25 80x50 100x31 200x75" in out, report
    assert f"video: the screen is {WIDTH}x{HEIGHT}, 32 bpp" in err, report
    # OCR of the 8x16 font is good, not perfect (the title "gen2vm boot menu" has come back as
    # "greneva boot mer"): the longest line is the marker, and the entries are counted.
    assert "Esc goes on with the boot order" in texts["menu"], report
    assert len(re.findall(r"EF. SCSI", texts["menu"])) >= 4, report
    assert "boot menu: Boot" not in err, report  # Esc chose nothing
    # The DVD's prompt on the screen; without a key the firmware went on to the next entry.
    assert PROMPT in texts["dvd"], report
    first = err.index("booting Boot0000")
    assert re.search(r"Boot0000 \"[^\"]*DVD[^\"]*\": \\EFI\\BOOT\\BOOTX64.EFI returned EFI_TIMEOUT", err[first:]), report
    assert "booting Boot0001" in err[first:], report
    # The second DVD's prompt answered: GRUB ran from it (its marker), then the boot order went on.
    assert "cdprompt: key" in out and "GRUB-FROM-DVD" in out, report
    # "no FAT file system" wraps at the 80th column; OCR reads "no" as "mM" at times.
    assert "FAT file" in texts["failure"], report
    assert "press a key" in texts["failure"], report
    assert "Bravo entry" in texts["sdboot"] and "Alpha entry" in texts["sdboot"], report
    assert "hello: load options [second-entry]" in out, report
    assert "first-entry" not in out, report
