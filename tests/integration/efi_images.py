"""Disk and DVD images for firmware boot tests, made with real tools (sfdisk, mkfs.vfat, mtools,
xorriso, grub-mkstandalone/grub-mkrescue), and Debian's real EFI binaries (systemd-boot, shim,
signed GRUB) fetched with apt-get download into build/efi-debs (no root, nothing installed)."""
import os
import shutil
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, "build", "efi-debs")
PACKAGES = ["systemd-boot-efi", "shim-signed", "grub-efi-amd64-signed", "ipxe"]


def have_tools(*names):
    return all(shutil.which(n) or os.path.exists(os.path.join("/usr/sbin", n)) for n in names)


def fetch_efi_binaries():
    """dict(systemd_boot, shim, grub_signed, grubnet_signed, ipxe): paths of Debian's own EFI binaries."""
    # The stamp lists the packages unpacked so far: a package added to PACKAGES later is fetched alone
    # into the same tree (the nested host has no network; tests/check_integration.py prefetches).
    stamp = os.path.join(CACHE, "ready")
    have = open(stamp).read().split() if os.path.exists(stamp) else None
    if have is None:
        shutil.rmtree(CACHE, ignore_errors=True)
        os.makedirs(CACHE)
        have = []
    elif not have:  # a stamp from before it listed them: the first three were fetched together
        have = PACKAGES[:3]
    missing = [p for p in PACKAGES if p not in have]
    if missing:
        subprocess.run(["apt-get", "download", "-q"] + missing, cwd=CACHE, check=True, capture_output=True)
        for deb in [f for f in os.listdir(CACHE) if f.endswith(".deb")]:
            subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=CACHE, check=True)
            os.unlink(os.path.join(CACHE, deb))
        with open(stamp, "w") as f:
            f.write("\n".join(have + missing) + "\n")
    x = os.path.join(CACHE, "x", "usr", "lib")
    return {
        "systemd_boot": os.path.join(x, "systemd", "boot", "efi", "systemd-bootx64.efi"),
        "shim": os.path.join(x, "shim", "shimx64.efi.signed"),
        "grub_signed": os.path.join(x, "grub", "x86_64-efi-signed", "grubx64.efi.signed"),
        # the network GRUB (same package): its prefix is /grub on the TFTP server it was loaded from
        "grubnet_signed": os.path.join(x, "grub", "x86_64-efi-signed", "grubnetx64.efi.signed"),
        # iPXE with every driver, its EFI SNP driver among them (Debian's /usr/lib/ipxe/ipxe.efi links here)
        "ipxe": os.path.join(CACHE, "x", "boot", "ipxe.efi"),
    }


def _sh(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode:
        raise RuntimeError(f"{args} failed: {r.stderr}")
    return r


def make_fat(path, files, size_mb=40, fat=32, label="ESP"):
    """A FAT volume image holding files: {"EFI/BOOT/BOOTX64.EFI": host path or bytes}."""
    if os.path.exists(path):
        os.unlink(path)
    _sh("mkfs.vfat", "-C", "-F", str(fat), "-n", label, path, str(size_mb * 1024))
    made = set()
    for dest, src in sorted(files.items()):
        parts = dest.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                _sh("mmd", "-i", path, "::" + d)
                made.add(d)
        if isinstance(src, (bytes, str)) and not (isinstance(src, str) and os.path.exists(src)):
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(src.encode() if isinstance(src, str) else src)
            _sh("mcopy", "-i", path, tmp, "::" + dest)
            os.unlink(tmp)
        else:
            _sh("mcopy", "-i", path, src, "::" + dest)
    return path


def make_gpt_disk(path, esp_image=None, size_mb=None, esp_type=True):
    """A raw GPT disk with one partition at 1 MiB holding esp_image (an ESP unless esp_type=False)."""
    esp_bytes = os.path.getsize(esp_image) if esp_image else 16 << 20
    total = size_mb << 20 if size_mb else (1 << 20) + esp_bytes + (1 << 20)
    with open(path, "wb") as f:
        f.truncate(total)
    ptype = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" if esp_type else "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    _sh("sfdisk", "-q", path, input=f"label: gpt\nstart=2048, size={esp_bytes // 512}, type={ptype}\n")
    if esp_image:
        with open(esp_image, "rb") as src, open(path, "r+b") as dst:
            dst.seek(1 << 20)
            shutil.copyfileobj(src, dst, 1 << 20)
    return path


def make_blank_disk(path, size_mb=16):
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    return path


def linux_userspace_vhdx(tmp_path, marker, gen2vm, serial_shell=False, modules=()):
    """A VHDX whose ESP boots Debian's cloud kernel through systemd-boot into a busybox userspace
    that prints marker on COM1 and stays up (hv_vmbus and hv_utils loaded, so the shutdown service
    can power it off; modules: more to load). serial_shell: a shell reads commands from COM1 (its
    output goes there too). gen2vm: the binary that converts the raw image. Returns the VHDX's path."""
    from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs
    kernel = fetch_kernel()
    efi_bins = fetch_efi_binaries()
    initrd = os.path.join(str(tmp_path), "initrd.cpio")
    shell = "setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' &\n" if serial_shell else ""
    init = (INIT_PRELUDE + "for m in $(cat /modules/order); do insmod /modules/$m || echo INSMOD-FAILED $m; done\n"
            f"{shell}echo {marker}\nwhile true; do sleep 1; done\n")
    make_initramfs(initrd, init, kernel["modules"], ["hv_vmbus", "hv_utils"] + list(modules))
    fat = make_fat(os.path.join(str(tmp_path), "esp.fat"), {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["systemd_boot"],
        "loader/loader.conf": "timeout 0\ndefault debian.conf\n",
        "loader/entries/debian.conf": "title Debian\nlinux /vmlinuz\ninitrd /initrd.img\n"
                                      "options console=ttyS0 panic=-1\n",
        "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=80)
    raw = make_gpt_disk(os.path.join(str(tmp_path), "esp.img"), fat)
    vhdx = os.path.join(str(tmp_path), "os.vhdx")
    subprocess.run([gen2vm, "vhd", "convert", raw, vhdx], check=True, capture_output=True)
    return vhdx


def _el_torito_efi_lba(iso):
    """The first 2048-byte block of the El Torito EFI boot image (the FAT the firmware boots from)
    of iso: the boot record volume descriptor (block 17) names the boot catalog, whose validation
    entry or a section header with platform 0xEF leads to the entry."""
    with open(iso, "rb") as f:
        f.seek(17 * 2048)
        brvd = f.read(2048)
        if brvd[0] != 0 or brvd[1:6] != b"CD001" or not brvd[7:30].startswith(b"EL TORITO SPECIFICATION"):
            raise RuntimeError(f"{iso}: no El Torito boot record")
        f.seek(int.from_bytes(brvd[0x47:0x4b], "little") * 2048)
        cat = f.read(2048)
    platform = cat[1]  # the validation entry's platform: the default entry's
    for off in range(32, len(cat), 32):
        e = cat[off:off + 32]
        if e[0] in (0x90, 0x91):  # a section header: its entries follow
            platform = e[1]
        elif e[0] in (0x88, 0x00) and platform == 0xEF and any(e):
            return int.from_bytes(e[8:12], "little")
        elif not any(e):
            break
    raise RuntimeError(f"{iso}: no EFI entry in the El Torito catalog")


def dvd_prompt_iso(path, grub_cfg, prompt_efi):
    """A grub-mkrescue ISO with a "Press any key to boot from CD or DVD" loader in front of GRUB, as
    Windows media have cdboot.efi in front of bootmgr: in the El Torito EFI image, prompt_efi
    (build/efi/cdprompt.efi) becomes \\EFI\\BOOT\\BOOTX64.EFI and GRUB \\EFI\\BOOT\\GRUBX64.EFI,
    which the prompt starts when a key comes. GRUB reads grub_cfg (text) from the ISO."""
    root = path + ".root"
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "boot", "grub"))
    with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
        f.write(grub_cfg)
    _sh("grub-mkrescue", "-o", path, root, "--modules=echo")
    shutil.rmtree(root)
    img = f"{path}@@{_el_torito_efi_lba(path) * 2048}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    _sh("mmove", "-i", img, "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/GRUBX64.EFI", env=env)
    _sh("mcopy", "-i", img, prompt_efi, "::/EFI/BOOT/BOOTX64.EFI", env=env)
    return path
