"""UEFI Secure Boot with Hyper-V's templates, proven with real signed binaries none of which we wrote:
Debian's shim (signed by Microsoft's UEFI CA), Debian's signed GRUB and kernel, an unsigned systemd-boot,
and images signed here with sbsigntool and keys made here (openssl, efitools' cert-to-efi-sig-list).

Host-side: `gen2vm firmware check-image` (the VMM's verdict code, the same LoadImage asks for) against
osslsigncode's and sbsign's Authenticode digests. In the nested test host: the firmware refusing and
admitting images, the boot summary naming each refused image and why, and Linux reporting Secure Boot."""
import hashlib
import os
import re
import struct
import subprocess
import uuid

import pytest

import efi_images as ei
from conftest import BUILD, VmProcess, gen2vm_binary, have_kvm, run

EFI = os.path.join(BUILD, "efi")
SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
X509_SHA256_GUID = uuid.UUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")

needs_tools = pytest.mark.skipif(not ei.have_tools("sbsign", "cert-to-efi-sig-list", "osslsigncode", "openssl"),
                                 reason="needs sbsigntool, efitools, osslsigncode (scripts/deps.sh test)")


def g2(*args, check=True):
    return run(gen2vm_binary(), *args, check=check)


def check_image(nvram, *files):
    """{file: (allowed, reason, sha256)} from gen2vm firmware check-image."""
    r = g2("firmware", "check-image", "--nvram", nvram, *files, check=False)
    assert r.returncode in (0, 1), r.stderr
    out = {}
    for m in re.finditer(r"^(.*): (allowed|refused): (.*)\n  Authenticode SHA-256 ([0-9a-f]{64})$", r.stdout, re.M):
        out[m.group(1)] = (m.group(2) == "allowed", m.group(3), m.group(4))
    assert len(out) == len(files), r.stdout
    assert r.returncode == (0 if all(v[0] for v in out.values()) else 1)
    return out


def osslsigncode_digest(path):
    r = subprocess.run(["osslsigncode", "verify", "-in", path], capture_output=True, text=True)
    m = re.search(r"Calculated message digest\s*:\s*([0-9A-F]{64})", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return m.group(1).lower()


def sha256_esl(digest_hex):
    """An EFI signature list of one SHA-256 (as efitools' hash-to-efi-sig-list writes)."""
    return SHA256_GUID.bytes_le + struct.pack("<III", 28 + 48, 0, 48) + bytes(16) + bytes.fromhex(digest_hex)


def der_tbs(cert_der):
    """The TBSCertificate of a DER certificate: the first element of its outer SEQUENCE."""
    def header(b, i):  # (offset of the contents, their length) of the element at i
        n = b[i + 1]
        if n < 0x80:
            return i + 2, n
        k = n & 0x7f
        return i + 2 + k, int.from_bytes(b[i + 2:i + 2 + k], "big")
    start, _ = header(cert_der, 0)
    body, length = header(cert_der, start)
    return cert_der[start:body + length]


def x509_sha256_esl(tbs_sha256):
    """An EFI signature list revoking a certificate by its TBS hash (EFI_CERT_X509_SHA256: the hash and
    a zero TimeOfRevocation, which means always)."""
    return X509_SHA256_GUID.bytes_le + struct.pack("<III", 28 + 64, 0, 64) + bytes(16) + tbs_sha256 + bytes(16)


def patched(src, dst, offset_from_pe, value):
    """A copy of a PE with one byte of its COFF header changed (offset from the PE signature)."""
    data = bytearray(open(src, "rb").read())
    pe = struct.unpack_from("<I", data, 0x3c)[0]
    data[pe + offset_from_pe] = value
    open(dst, "wb").write(bytes(data))
    return dst


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A test db key and certificate, and images made from our hello.efi: A signed with it, B a
    different image (another COFF timestamp) signed with it, A with one byte changed after signing."""
    d = tmp_path_factory.mktemp("sbkeys")
    key, crt = str(d / "db.key"), str(d / "db.crt")
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=gen2vm test db key", "-keyout", key, "-out", crt, "-days", "3650"],
                   check=True, capture_output=True)
    esl = str(d / "db.esl")
    subprocess.run(["cert-to-efi-sig-list", crt, esl], check=True, capture_output=True)
    hello = os.path.join(EFI, "hello.efi")
    a = str(d / "helloA.efi")
    subprocess.run(["sbsign", "--key", key, "--cert", crt, "--output", a, hello], check=True, capture_output=True)
    b_src = patched(hello, str(d / "helloB-unsigned.efi"), 8, 0x5a)  # TimeDateStamp
    b = str(d / "helloB.efi")
    subprocess.run(["sbsign", "--key", key, "--cert", crt, "--output", b, b_src], check=True, capture_output=True)
    tampered = patched(a, str(d / "helloA-tampered.efi"), 8, 0x77)
    return {"dir": d, "key": key, "crt": crt, "db_esl": esl, "A": a, "B": b, "tampered": tampered, "hello": hello}


def store(tmp_path, name, *set_args):
    nv = str(tmp_path / name)
    g2("firmware", "reset", "--nvram", nv)
    if set_args:
        g2("firmware", "set", "--nvram", nv, *set_args)
    return nv


@needs_tools
def test_check_image_templates_and_authenticode_digests(tmp_path, efi_bins, keys):
    """The VMM's verdicts: shim admitted by the UEFI CA template and refused by the Windows one (as on
    Hyper-V), Debian's GRUB (signed by Debian's CA, which only shim trusts) refused by db, an unsigned
    systemd-boot refused; Authenticode SHA-256 equal to osslsigncode's and to what sbsign signed."""
    uefi_ca = store(tmp_path, "ca.nvram", "--secure-boot", "on", "--secure-boot-template",
                    "MicrosoftUEFICertificateAuthority")
    windows = store(tmp_path, "win.nvram", "--secure-boot", "on", "--secure-boot-template", "MicrosoftWindows")
    shim, grub, sdboot = efi_bins["shim"], efi_bins["grub_signed"], efi_bins["systemd_boot"]
    v = check_image(uefi_ca, shim, grub, sdboot)
    assert v[shim][0] and "chains to db" in v[shim][1]
    assert not v[grub][0] and "Debian Secure Boot Signer" in v[grub][1] and "not in db" in v[grub][1]
    assert not v[sdboot][0] and "not signed" in v[sdboot][1]
    w = check_image(windows, shim)
    assert not w[shim][0] and "Microsoft Windows UEFI Driver Publisher" in w[shim][1], w
    assert "Microsoft Corporation UEFI CA 2011" in w[shim][1]
    # Authenticode digests: ours against osslsigncode's (GRUB, our signed hello) and against the one
    # sbsign put in the signature (a verdict past the digest check means they are equal).
    assert v[grub][2] == osslsigncode_digest(grub)
    assert check_image(uefi_ca, keys["A"])[keys["A"]][2] == osslsigncode_digest(keys["A"])
    # sbsign pads a file to 8 bytes before it signs; our hello.efi is already a multiple of 8
    assert check_image(uefi_ca, keys["hello"])[keys["hello"]][2] == osslsigncode_digest(keys["A"])


@needs_tools
def test_check_image_custom_db_dbx_and_tampering(tmp_path, keys):
    """db with our own certificate (efitools' cert-to-efi-sig-list): images it signed are admitted;
    one whose SHA-256 is in dbx is refused though signed; one byte changed after signing is refused."""
    b_hash = check_image(store(tmp_path, "probe.nvram"), keys["B"])[keys["B"]][2]
    dbx = tmp_path / "dbx.esl"
    dbx.write_bytes(sha256_esl(b_hash))
    nv = store(tmp_path, "custom.nvram", "--secure-boot", "on", "--secure-boot-keys", "db=" + keys["db_esl"],
               "--secure-boot-keys", "dbx=" + str(dbx))
    shown = run(gen2vm_binary(), "firmware", "show", "--nvram", nv).stdout
    assert "Secure Boot: on, template custom" in shown, shown
    v = check_image(nv, keys["A"], keys["B"], keys["tampered"], keys["hello"])
    assert v[keys["A"]][0], v
    assert not v[keys["B"]][0] and "in dbx" in v[keys["B"]][1]
    assert not v[keys["tampered"]][0] and "changed after signing" in v[keys["tampered"]][1]
    assert not v[keys["hello"]][0] and "not signed" in v[keys["hello"]][1]
    # the unsigned image is admitted by its hash in db
    db_hash = tmp_path / "dbhash.esl"
    db_hash.write_bytes(sha256_esl(v[keys["hello"]][2]))
    g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "db=" + str(db_hash))
    assert check_image(nv, keys["hello"])[keys["hello"]][0]
    # reset keeps custom keys (no template to restore them from)
    g2("firmware", "reset", "--nvram", nv)
    assert check_image(nv, keys["hello"])[keys["hello"]][0]
    # bad input: named, nothing changed
    r = g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "PK=" + keys["crt"], check=False)
    assert r.returncode == 2 and "not EFI signature lists" in r.stderr, r.stderr
    r = g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "dbq=" + str(dbx), check=False)
    assert r.returncode == 2 and "not a Secure Boot database" in r.stderr, r.stderr


@needs_tools
def test_check_image_dbx_revokes_certificates(tmp_path, keys):
    """dbx revokes a signer by its whole certificate (EFI_CERT_X509, efitools' cert-to-efi-sig-list) or
    by the SHA-256 of its TBSCertificate (EFI_CERT_X509_SHA256, as Microsoft's dbx updates do): every
    image it signed is then refused, whatever db says; a malformed entry is refused when set."""
    der = subprocess.run(["openssl", "x509", "-in", keys["crt"], "-outform", "DER"], check=True,
                         capture_output=True).stdout
    tbs_hash = hashlib.sha256(der_tbs(der)).digest()
    by_hash = tmp_path / "dbx-tbs.esl"
    by_hash.write_bytes(x509_sha256_esl(tbs_hash))
    for name, dbx in (("cert", keys["db_esl"]), ("tbs", str(by_hash))):
        nv = store(tmp_path, name + ".nvram", "--secure-boot", "on", "--secure-boot-keys", "db=" + keys["db_esl"],
                   "--secure-boot-keys", "dbx=" + dbx)
        v = check_image(nv, keys["A"])
        assert not v[keys["A"]][0], (name, v)
        assert "'gen2vm test db key' is revoked (in dbx)" in v[keys["A"]][1], (name, v)
    # a hash of another certificate revokes nothing
    other = tmp_path / "dbx-other.esl"
    other.write_bytes(x509_sha256_esl(hashlib.sha256(b"another certificate").digest()))
    nv = store(tmp_path, "other.nvram", "--secure-boot", "on", "--secure-boot-keys", "db=" + keys["db_esl"],
               "--secure-boot-keys", "dbx=" + str(other))
    assert check_image(nv, keys["A"])[keys["A"]][0]
    # an EFI_CERT_X509_SHA256 entry without its revocation time is not a signature list
    short = tmp_path / "dbx-short.esl"
    short.write_bytes(X509_SHA256_GUID.bytes_le + struct.pack("<III", 28 + 48, 0, 48) + bytes(16) + tbs_hash)
    r = g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "dbx=" + str(short), check=False)
    assert r.returncode == 2 and "not EFI signature lists" in r.stderr, r.stderr


# ---- in the nested test host ----------------------------------------------------------------------

class Vm(VmProcess):
    def __init__(self, tmp_path, args, name="vm"):
        com1, dcon = str(tmp_path / f"{name}.com1"), str(tmp_path / f"{name}.debugcon")
        sock = str(tmp_path / f"{name}.sock")
        super().__init__(["-v", "--memory", "768M", "--com1", "file:" + com1, "--debugcon", "file:" + dcon,
                          "--control", sock] + list(args), consoles=(com1, dcon), sock=sock)


def esp_disk(tmp_path, name, files):
    fat = ei.make_fat(str(tmp_path / f"{name}.fat"), files, size_mb=40)
    disk = ei.make_gpt_disk(str(tmp_path / f"{name}.img"), fat)
    os.unlink(fat)
    return disk


def failures(vm):
    """Each failed boot entry with its reason, as the firmware reported it to gen2vm's log (-v): the
    lines of the boot summary, whole."""
    return re.findall(r"firmware: boot entry failed: (.*)", vm.err)


@pytest.mark.real_guest
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
@needs_tools
def test_firmware_refuses_and_admits_images(tmp_path, efi_bins, keys):
    """Secure Boot on with our own db (and B's hash in dbx): the firmware refuses the unsigned
    systemd-boot, the revoked B and the tampered A, each named in the boot summary with the reason,
    and runs A. With the Windows template Debian's shim and an unsigned --efi image are refused. With
    Secure Boot off all run."""
    b_hash = check_image(store(tmp_path, "probe.nvram"), keys["B"])[keys["B"]][2]
    dbx = tmp_path / "dbx.esl"
    dbx.write_bytes(sha256_esl(b_hash))
    nv = store(tmp_path, "vm.nvram", "--secure-boot", "on", "--secure-boot-keys", "db=" + keys["db_esl"],
               "--secure-boot-keys", "dbx=" + str(dbx))
    disks = [esp_disk(tmp_path, "sdboot", {"EFI/BOOT/BOOTX64.EFI": efi_bins["systemd_boot"]}),
             esp_disk(tmp_path, "revoked", {"EFI/BOOT/BOOTX64.EFI": keys["B"]}),
             esp_disk(tmp_path, "tampered", {"EFI/BOOT/BOOTX64.EFI": keys["tampered"]}),
             esp_disk(tmp_path, "good", {"EFI/BOOT/BOOTX64.EFI": keys["A"]})]
    args = ["--nvram", nv]
    for d in disks:
        args += ["--disk", d]
    vm = Vm(tmp_path, args)
    rc = vm.finish(timeout=600)
    assert rc == 5, vm.err[-3000:]
    f = failures(vm)
    assert re.search(r"Boot0000 .*: \\EFI\\BOOT\\BOOTX64.EFI was refused by Secure Boot: not signed", f[0]), f
    assert re.search(r"Boot0001 .*: \\EFI\\BOOT\\BOOTX64.EFI was refused by Secure Boot: its SHA-256 is in dbx", f[1]), f
    assert re.search(r"Boot0002 .*: \\EFI\\BOOT\\BOOTX64.EFI was refused by Secure Boot: changed after signing", f[2]), f
    assert re.search(r"Boot0003 .*: \\EFI\\BOOT\\BOOTX64.EFI returned EFI_SUCCESS", f[3]), f
    assert "Boot summary" in vm.out()
    hellos = vm.out().count("hello from EFI")
    assert hellos >= 1, vm.out()[-2000:]

    # Secure Boot off: the same disks all run (systemd-boot without entries waits in its menu, so it
    # is replaced by the unsigned hello.efi); the VM's SecureBoot variable is then 0.
    g2("firmware", "set", "--nvram", nv, "--secure-boot", "off")
    disks[0] = esp_disk(tmp_path, "unsigned", {"EFI/BOOT/BOOTX64.EFI": keys["hello"]})
    args = ["--nvram", nv]
    for d in disks:
        args += ["--disk", d]
    vm = Vm(tmp_path, args, name="off")
    rc = vm.finish(timeout=600)
    assert rc == 5, vm.err[-3000:]
    assert vm.out().count("hello from EFI") == 4 * hellos, vm.out()[-3000:]
    assert "refused by Secure Boot" not in vm.err

    # The Windows template: Debian's shim (Microsoft's UEFI CA) is refused, as on Hyper-V.
    win = store(tmp_path, "win.nvram", "--secure-boot", "on", "--secure-boot-template", "MicrosoftWindows")
    shim_disk = esp_disk(tmp_path, "shim", {"EFI/BOOT/BOOTX64.EFI": efi_bins["shim"],
                                            "EFI/BOOT/grubx64.efi": efi_bins["grub_signed"]})
    # The image given with --efi is checked like any other: the unsigned hello.efi is refused.
    vm = Vm(tmp_path, ["--nvram", win, "--disk", shim_disk, "--efi", keys["hello"]], name="win")
    rc = vm.finish(timeout=600)
    assert rc == 5, vm.err[-3000:]
    f = failures(vm)
    assert re.search(r"the image given with --efi: it was refused by Secure Boot: not signed", f[0]), f
    assert re.search(r"Boot0000 .*: \\EFI\\BOOT\\BOOTX64.EFI was refused by Secure Boot: signer 'Microsoft "
                     r"Windows UEFI Driver Publisher' \(issuer 'Microsoft Corporation UEFI CA 2011'\) not in db", f[1]), f
    assert "hello from EFI" not in vm.out()


@pytest.mark.real_guest
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
@needs_tools
def test_shim_refuses_changed_grub(tmp_path, efi_bins):
    """The UEFI CA template: the firmware admits Debian's shim, and shim refuses a GRUB with one byte
    changed (its own dialog, which waits for a key: the test ends the VM there)."""
    ca = store(tmp_path, "ca.nvram", "--secure-boot", "on", "--secure-boot-template",
               "MicrosoftUEFICertificateAuthority")
    bad = bytearray(open(efi_bins["grub_signed"], "rb").read())
    bad[len(bad) // 2] ^= 0x01  # one byte in the middle of its code
    bad_grub = tmp_path / "grubx64-changed.efi"
    bad_grub.write_bytes(bytes(bad))
    changed = esp_disk(tmp_path, "changed", {"EFI/BOOT/BOOTX64.EFI": efi_bins["shim"],
                                             "EFI/BOOT/grubx64.efi": str(bad_grub),
                                             "EFI/debian/grub.cfg": 'echo "CHANGED-GRUB-RAN"\nhalt\n'})
    vm = Vm(tmp_path, ["--nvram", ca, "--disk", changed], name="changed")
    try:
        assert vm.wait_for(r"Verification failed: \(0x1A\) Security Violation", 600, where="out"), vm.out()[-3000:]
        assert re.search(r"Secure Boot admitted an image of \d+ bytes: a signature chains to db", vm.err), vm.err
        assert "CHANGED-GRUB-RAN" not in vm.out()
    finally:
        vm.p.kill()
        vm.p.wait()


DB_VAR = "/sys/firmware/efi/efivars/db-d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SB_INIT = r"""
for m in $(cat /modules/order); do insmod /modules/$m || echo "INSMOD-FAILED $m"; done
echo "SB-USERSPACE-REACHED"
mount -t efivarfs efivarfs /sys/firmware/efi/efivars && echo "EFIVARFS-MOUNTED"
echo "SECUREBOOT-VAR $(od -An -tx1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c)"
dmesg | grep -i -e "secure boot" -e "lockdown" | sed 's/^/KLOG /'
/usr/bin/chattr -i DB_VAR
dd if=/wrong.var of=DB_VAR bs=65536 conv=notrunc 2>/dev/null && echo "WRONG-ACCEPTED" || echo "WRONG-REFUSED"
dd if=/good.var of=DB_VAR bs=65536 conv=notrunc 2>/dev/null && echo "GOOD-ACCEPTED" || echo "GOOD-REFUSED"
poweroff -f
""".replace("DB_VAR", DB_VAR)


@pytest.mark.real_guest
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
@needs_tools
def test_shim_grub_kernel_boot_with_secure_boot(tmp_path, efi_bins, keys):
    """The UEFI CA template with our own KEK, Secure Boot on: the firmware admits Debian's shim against
    db; shim starts Debian's signed GRUB, which loads Debian's signed kernel through shim; Linux reaches
    userspace, reads SecureBoot = 1 from efivarfs and logs that Secure Boot is enabled. There it appends
    to db through efivarfs an entry signed by sign-efi-sig-list (efitools): signed by a key not in KEK
    it is refused, signed by the KEK it is accepted and is in the NVRAM file after the VM ends."""
    from linux_guest import INIT_PRELUDE, generic_kernel, host_program, make_initramfs
    if not ei.have_tools("sign-efi-sig-list"):
        pytest.skip("needs efitools (scripts/deps.sh test)")
    d = tmp_path
    for who in ("kek", "wrong"):
        subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        f"/CN=gen2vm test {who}", "-keyout", str(d / f"{who}.key"), "-out", str(d / f"{who}.crt"),
                        "-days", "3650"], check=True, capture_output=True)
    subprocess.run(["cert-to-efi-sig-list", str(d / "kek.crt"), str(d / "kek.esl")], check=True, capture_output=True)
    hello_hash = check_image(store(tmp_path, "probe.nvram"), keys["hello"])[keys["hello"]][2]
    (d / "hello.esl").write_bytes(sha256_esl(hello_hash))
    var = {}
    for who in ("kek", "wrong"):
        out = str(d / f"{who}.auth")
        subprocess.run(["sign-efi-sig-list", "-a", "-k", str(d / f"{who}.key"), "-c", str(d / f"{who}.crt"), "db",
                        str(d / "hello.esl"), out], check=True, capture_output=True)
        # efivarfs takes the attributes (NV|BS|RT|TIME_BASED|APPEND_WRITE) before the data
        var[who] = struct.pack("<I", 0x67) + open(out, "rb").read()
    kernel = generic_kernel()
    initrd = str(tmp_path / "initrd.cpio")
    # efivarfs makes db immutable (not one of the variables it deems removable): e2fsprogs' chattr
    # (busybox-static has none) lifts that before the writes.
    extra = host_program("/usr/bin/chattr")
    extra.update({"good.var": var["kek"], "wrong.var": var["wrong"]})
    make_initramfs(initrd, INIT_PRELUDE + SB_INIT, kernel["modules"], ["efivarfs"], extra_files=extra)
    nv = store(tmp_path, "vm.nvram", "--secure-boot", "on", "--secure-boot-template",
               "MicrosoftUEFICertificateAuthority", "--secure-boot-keys", "KEK=" + str(d / "kek.esl"))
    assert not check_image(nv, keys["hello"])[keys["hello"]][0]
    cfg = ('echo "SIGNED-GRUB-RUNNING"\nlinux /vmlinuz console=ttyS0 panic=-1\ninitrd /initrd.img\n'
           'echo "GRUB-LOADED-KERNEL"\nboot\n')
    fat = ei.make_fat(str(tmp_path / "os.fat"), {
        "EFI/BOOT/BOOTX64.EFI": efi_bins["shim"], "EFI/BOOT/grubx64.efi": efi_bins["grub_signed"],
        "EFI/debian/grub.cfg": cfg, "vmlinuz": kernel["vmlinuz"], "initrd.img": initrd}, size_mb=120)
    good = ei.make_gpt_disk(str(tmp_path / "os.img"), fat)
    os.unlink(fat)
    vm = Vm(tmp_path, ["--nvram", nv, "--disk", good], name="linux")
    rc = vm.finish(timeout=1100)
    out = vm.out()
    assert "SIGNED-GRUB-RUNNING" in out, out[-5000:] + vm.err[-3000:]
    assert "SB-USERSPACE-REACHED" in out, out[-5000:] + vm.err[-3000:]
    # efivarfs: 4 bytes of attributes (BS|RT = 06 00 00 00), then the value 01
    assert re.search(r"SECUREBOOT-VAR\s+06 00 00 00 01", out), out[-3000:]
    assert re.search(r"KLOG .*Secure boot enabled", out), out[-3000:]
    assert "WRONG-REFUSED" in out and "GOOD-ACCEPTED" in out, out[-3000:] + vm.err[-3000:]
    assert rc == 0, vm.err[-3000:]
    # the accepted append persisted: the image whose hash it carries is now admitted by db
    v = check_image(nv, keys["hello"])[keys["hello"]]
    assert v[0] and "its SHA-256 is in db" in v[1], v


def test_hostile_key_files_and_images(tmp_path):
    """Key files and images are user input: a FIFO, a device, a directory or a huge file gets a clear
    error naming it, never a hang, and the store is left as it was."""
    nv = store(tmp_path, "h.nvram", "--secure-boot", "on", "--secure-boot-template", "MicrosoftWindows")
    before = open(nv, "rb").read()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", str(tmp_path)):
        r = g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "db=" + path, check=False)
        assert r.returncode == 2 and path in r.stderr, (path, r.stderr)
        r = g2("firmware", "check-image", "--nvram", nv, path, check=False)
        assert r.returncode == 2 and path in r.stderr, (path, r.stderr)
    big = tmp_path / "big.esl"
    with open(big, "wb") as f:
        f.truncate(1 << 20)
    r = g2("firmware", "set", "--nvram", nv, "--secure-boot-keys", "db=" + str(big), check=False)
    assert r.returncode == 2, r.stderr
    r = g2("firmware", "check-image", "--nvram", nv, str(big), check=False)
    assert r.returncode == 2 and "not a PE image" in r.stderr, r.stderr
    assert open(nv, "rb").read() == before
