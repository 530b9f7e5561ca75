"""The firmware on the screen and the keyboard, as a user at the VM's console sees them: gen2vm's own
firmware draws its text on the synthetic video device (GOP) and reads the synthetic keyboard, merged
with COM1. One boot with --synthetic-console, two disks (a blank one, then a systemd-boot ESP) and
PauseAfterBootFailure on:
- the firmware's "press Esc or F2" prompt is answered with `control key f2`: its boot menu opens and
  is read back from a screenshot by OCR (tesseract); Esc leaves it;
- the blank disk fails: the firmware's failure line and its "press a key" prompt are on the screen
  (OCR), and `control key enter` answers the prompt;
- Debian's systemd-boot (a real client of GOP/ConOut/ConIn) shows its menu with a timeout: OCR finds
  the second entry's title in a screenshot, and `key down` + `key enter` boot that entry, whose
  program says on COM1 which entry started it.
"""
import collections
import os
import re
import shutil
import subprocess
import time

import pytest

import efi_images as ei
from conftest import gen2vm_binary, have_kvm, run
from test_console_devices import png_read_rgb
from test_firmware_boot import EFI, Vm, esp_disk

pytestmark = [
    pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
    pytest.mark.skipif(not shutil.which("tesseract"), reason="needs tesseract-ocr (scripts/deps.sh test)"),
    pytest.mark.skipif(not ei.have_tools("mkfs.vfat", "mcopy", "mmd", "sfdisk"),
                       reason="needs dosfstools, mtools and fdisk (scripts/deps.sh test)"),
    pytest.mark.real_guest,
]


def ctl(vm, *args):
    return run(gen2vm_binary(), "control", vm.sock, *args, check=False).stdout.strip()


def _text_grid_pgm(w, px, x0, y0, cols, rows, scale=3):
    """The text grid of cols x rows 8x16 cells at (x0, y0) as a PGM for tesseract: in each cell the
    most common colour is the background (white), every other pixel ink (black), so highlighted
    (inverse) text reads like the rest; scaled up 3x, as the 8x16 font is small for OCR."""
    width = cols * 8
    out = bytearray()
    for r in range(rows):
        band = [bytearray(width) for _ in range(16)]
        for c in range(cols):
            cell = []
            for j in range(16):
                o = ((y0 + r * 16 + j) * w + x0 + c * 8) * 3
                cell.append([bytes(px[o + 3 * i:o + 3 * i + 3]) for i in range(8)])
            bg = collections.Counter(p for row in cell for p in row).most_common(1)[0][0]
            for j in range(16):
                for i in range(8):
                    band[j][c * 8 + i] = 255 if cell[j][i] == bg else 0
        for j in range(16):
            out += bytes(b for b in band[j] for _ in range(scale)) * scale
    return b"P5\n%d %d\n255\n" % (width * scale, rows * 16 * scale) + bytes(out)


def shot(vm, tmp_path, name):
    """A screenshot now (its PNG's path); read later with ocr(), as OCR is slow on this host and
    systemd-boot's menu counts down meanwhile."""
    png = str(tmp_path / f"{name}.png")
    reply = ctl(vm, "screenshot", png)
    assert reply.startswith("ok"), reply
    return png


def ocr(png):
    """The screen's text as tesseract reads it, for the two grids text can be on: 80x25 centred on
    1024x768 (the firmware's mode 0) and 128x48 (the whole screen)."""
    w, h, px = png_read_rgb(png)
    assert (w, h) == (1024, 768), (w, h)
    text = ""
    for i, grid in enumerate([(192, 184, 80, 25), (0, 0, 128, 48)]):
        pgm = png[:-4] + f"-{i}.pgm"
        with open(pgm, "wb") as f:
            f.write(_text_grid_pgm(w, px, *grid))
        r = subprocess.run(["tesseract", pgm, "-"], capture_output=True, text=True, timeout=300)
        text += r.stdout + "\n"
    return text


def test_firmware_screen_keyboard_and_systemd_boot_menu(tmp_path):
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
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    nvram = str(tmp_path / "vm.nvram")
    run(gen2vm_binary(), "firmware", "reset", "--nvram", nvram)
    run(gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--pause-after-boot-failure", "on")
    vm = Vm(tmp_path, ["--nvram", nvram, "--disk", blank, "--disk", disk, "--synthetic-console"])
    shots, keys = {}, []
    try:
        # The firmware's own boot menu, opened from the keyboard during its start window. The key is
        # sent as soon as the firmware's keyboard driver takes keys (typed ahead: the window is short
        # and this host slow), and waits in the ring until the window reads it.
        end = time.time() + 90
        while time.time() < end and vm.p.poll() is None:
            r = ctl(vm, "key", "f2")
            if r.startswith("ok"):
                keys.append(r)
                break
            time.sleep(0.2)
        if keys and vm.wait_for(r"press Esc or F2 for the boot menu", 60, where="out"):
            if vm.wait_for(r"gen2vm boot menu", 20, where="out"):
                time.sleep(0.5)
                shots["menu"] = shot(vm, tmp_path, "menu")
                keys.append(ctl(vm, "key", "esc"))
        # The blank disk fails; the pause prompt is answered from the keyboard.
        if vm.wait_for(r"paused after a boot failure", 60):
            time.sleep(0.5)
            shots["failure"] = shot(vm, tmp_path, "failure")
            keys.append(ctl(vm, "key", "enter"))
        # systemd-boot's menu, counting down from 120 s.
        if vm.wait_for(r"Bravo entry", 60, where="out"):
            time.sleep(1)
            shots["sdboot"] = shot(vm, tmp_path, "sdboot")
            keys.append(ctl(vm, "key", "down"))
            time.sleep(0.3)
            keys.append(ctl(vm, "key", "enter"))
            vm.wait_for(r"hello: load options", 30, where="out")
    finally:
        vm.stop()
    texts = {k: ocr(v) for k, v in shots.items()}
    out, err = vm.out(), vm.err
    tail = out[-3000:] + "\n--- log ---\n" + err[-3000:]
    assert "press Esc or F2 for the boot menu" in out, tail
    assert all(k.startswith("ok") for k in keys), (keys, tail)
    assert "menu" in texts, tail
    # OCR of the 8x16 font is good, not perfect (the title "gen2vm boot menu" has come back as
    # "greneva boot mer"): the longest line is the marker, and the two entries are counted.
    assert "Esc goes on with the boot order" in texts["menu"], texts
    assert len(re.findall(r"Device", texts["menu"])) >= 2, texts
    assert "boot menu: Boot" not in err  # Esc chose nothing
    assert "failure" in texts, tail
    # "no FAT file system" wraps at the 80th column; OCR reads "no" as "mM" at times.
    assert "FAT file" in texts["failure"], texts
    assert "press a key" in texts["failure"], texts
    assert "sdboot" in texts, tail
    assert "Bravo entry" in texts["sdboot"] and "Alpha entry" in texts["sdboot"], texts
    assert "hello: load options [second-entry]" in out, tail
    assert "first-entry" not in out, tail
