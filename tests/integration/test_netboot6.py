"""Network boot over IPv6 (gen2vm firmware set --network-boot-preferred-protocol ipv6, Hyper-V's
Set-VMFirmware -NetworkBootPreferredProtocol IPv6), against real peers: the tap in a network namespace
of test_netboot.py with an IPv6 address, and Debian's dnsmasq sending Router Advertisements, answering
DHCPv6 (a stateful range) with the boot-file URL option (RFC 5970) tftp://[server]/file, and serving
TFTP over IPv6. Linux answers the firmware's neighbour solicitations and solicits its address.

test_pxe6_boots_an_efi_app: the "EFI Network" entry fetches tests/efi/hello.efi over TFTP/IPv6 and
it runs. test_pxe6_mode_and_mtftp_for_a_loader: tests/efi/pxe6_probe.efi, booted the same way, finds
what shim and GRUB read: the PXE Mode (UsingIpv6, StationIp, the DHCPv6 Reply in DhcpAck) and Mtftp
over IPv6. test_pxe6_boots_signed_grubnetx64_to_linux_userspace: Debian's signed grubnetx64.efi finds
its server and grub.cfg from the firmware's PXE mode (UsingIpv6, the DHCPv6 reply in DhcpAck) and
loads the kernel and an initramfs over IPv6 to a userspace marker. test_pxe6_no_dhcpv6_server: a
boot-summary line, then the next BootOrder entry."""
import os
import re
import shutil
import subprocess
import time

import pytest

import efi_images as ei
from conftest import BUILD, gen2vm_binary, have_kvm
from test_netboot import MAC, MAC_HEX, NetNs, firmware_show, grubnet_tftp_root, sh, summary_of

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the tap and the network namespace")]

HELLO = os.path.join(BUILD, "efi", "hello.efi")
PROBE = os.path.join(BUILD, "efi", "pxe6_probe.efi")
HOST_IP6 = "fd42:214::1"


class NetNs6(NetNs):
    """test_netboot's namespace, its tap also at HOST_IP6/64 (no duplicate address detection: the
    address is usable at once, before the VM has opened the tap)."""

    def __enter__(self):
        super().__enter__()
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=0" % self.tap)
        sh("ip", "-n", self.ns, "addr", "add", HOST_IP6 + "/64", "dev", self.tap, "nodad")
        return self

    def dnsmasq6(self, tftp_root, boot_file, log):
        """dnsmasq: RAs for fd42:214::/64, DHCPv6 addresses from it, the boot-file URL, TFTP."""
        if not shutil.which("dnsmasq"):
            pytest.fail("dnsmasq is missing (scripts/deps.sh test installs dnsmasq-base)")
        self.start("dnsmasq", "--no-daemon", "--port=0", "--interface=" + self.tap, "--bind-interfaces",
                   "--enable-ra", "--dhcp-range=fd42:214::10,fd42:214::50,64,1h",
                   "--dhcp-leasefile=%s/leases" % self.tmp, "--conf-file=/dev/null",
                   "--dhcp-option=option6:bootfile-url,tftp://[%s]/%s" % (HOST_IP6, boot_file),
                   "--enable-tftp", "--tftp-root=" + str(tftp_root), "--log-dhcp", "--log-facility=" + str(log),
                   "--user=root")
        time.sleep(1)


def set_ipv6(nvram):
    for args in (["reset"], ["set", "--network-boot-preferred-protocol", "ipv6"]):
        r = subprocess.run([gen2vm_binary(), "firmware", args[0], "--nvram", nvram] + args[1:], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    assert firmware_show(nvram)["network_boot_preferred_protocol"] == "ipv6"


def boot_efi_files(tmp_path, files, boot):
    """Serves files (tests/efi builds) over TFTP and boots boot over IPv6 with the debug console on;
    returns (exit code, stderr, debug console, dnsmasq's log)."""
    for f in files:
        if not os.path.exists(f):
            pytest.skip(f + " not built (make efi-apps)")
    root = tmp_path / "tftp"
    root.mkdir()
    for f in files:
        shutil.copy(f, root / os.path.basename(f))
    nvram, dbg, log = str(tmp_path / "vm.nvram"), tmp_path / "debugcon.log", tmp_path / "dnsmasq.log"
    set_ipv6(nvram)
    with NetNs6(tmp_path) as n:
        n.dnsmasq6(root, boot, log)
        rc, err = n.run_vm(["run", "--memory", "256M", "--nvram", nvram, "--debugcon", "file:%s" % dbg,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
    text = dbg.read_text(errors="replace") if dbg.exists() else ""
    dlog = log.read_text(errors="replace") if log.exists() else ""
    return rc, err, text, dlog


def test_pxe6_boots_an_efi_app(tmp_path):
    rc, err, text, dlog = boot_efi_files(tmp_path, [HELLO], "hello.efi")
    diag = text[-3000:] + err[-3000:] + dlog[-3000:]
    assert "hello from EFI" in text, diag
    # The firmware's own words: its DHCPv6 address from the range, the server and file from the URL.
    assert re.search(r"network: adapter 0: address fd42:214::[0-9a-f]+, boot server fd42:214::1, "
                     r"boot file \"hello\.efi\"", text), diag
    # dnsmasq saw a UEFI x64 PXE client over DHCPv6 and served the file over IPv6.
    # (dnsmasq logs the vendor class by its enterprise number, PXE's 343, and the options asked for.)
    assert "vendor class: 343" in dlog and "requested options: 59:bootfile-url" in dlog, dlog[-3000:]
    assert re.search(r"sent \S*hello\.efi to fd42:214::", dlog), dlog[-3000:]


def test_pxe6_mode_and_mtftp_for_a_loader(tmp_path):
    rc, err, text, dlog = boot_efi_files(tmp_path, [PROBE, HELLO], "pxe6_probe.efi")
    failed = [l for l in text.splitlines() if l.startswith("FAIL ")]
    assert not failed, "\n".join(failed) + "\n" + text[-3000:] + err[-3000:]
    for name in ("pxe_on_device", "mode", "dhcp_ack", "url", "mtftp_size", "mtftp_read", "mtftp_missing"):
        assert "PASS " + name in text, text[-3000:] + err[-3000:] + dlog[-2000:]
    assert re.search(r"PASS dhcp_ack: message type 7, boot-file URL tftp://\[fd42:214::1\]/pxe6_probe\.efi", text), text
    assert re.search(r"sent \S*hello\.efi to fd42:214::", dlog), dlog[-3000:]
    assert rc == 0, err[-3000:]


@pytest.mark.real_guest
@pytest.mark.xfail(strict=False, reason="not reliable in the loaded nested test host, as over IPv4 (test_netboot.py, "
                   "issue 18): with three busy loops it failed 4 times in 5 runs on 2026-12-08 while GRUB fetched "
                   "the kernel (three triple faults, one hang whose registers were the nested host kernel's)")
def test_pxe6_boots_signed_grubnetx64_to_linux_userspace(tmp_path):
    root = grubnet_tftp_root(tmp_path, "USERSPACE-OVER-PXE6")
    nvram, com1, log = str(tmp_path / "vm.nvram"), tmp_path / "com1.log", tmp_path / "dnsmasq.log"
    set_ipv6(nvram)
    with NetNs6(tmp_path) as n:
        n.dnsmasq6(root, "grubnetx64.efi", log)
        rc, err = n.run_vm(["run", "--memory", "512M", "--nvram", nvram, "--com1", "file:%s" % com1,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "--no-reboot", "-v"], timeout=360)
    out = com1.read_text(errors="replace") if com1.exists() else ""
    dlog = log.read_text(errors="replace") if log.exists() else ""
    assert re.search(r"sent \S*grubnetx64\.efi to fd42:214::", dlog), out[-3000:] + err[-3000:] + dlog[-3000:]
    assert "GRUBNET-CONFIG-FROM " + HOST_IP6 in out, out[-3000:] + err[-3000:] + dlog[-3000:]
    assert re.search(r"sent \S*vmlinuz to fd42:214::", dlog), out[-3000:] + err[-3000:] + dlog[-3000:]
    assert "USERSPACE-OVER-PXE6" in out, out[-3000:] + err[-3000:]
    assert rc == 0, err[-3000:]


@pytest.mark.real_guest
def test_pxe6_no_dhcpv6_server_then_the_next_entry(tmp_path):
    """No DHCPv6 server on the link: "no DHCPv6 advertise in 16 s" for the network entry, then the
    disk entry after it in BootOrder. A DHCPv6 server whose boot file is missing: "TFTP: file not
    found" (the IPv4 words: the TFTP client is shared)."""
    nvram = str(tmp_path / "vm.nvram")
    set_ipv6(nvram)
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    with NetNs6(tmp_path) as n:
        args = ["run", "--memory", "256M", "--nvram", nvram, "--disk", blank, "-v",
                "--nic", "tap=%s,mac=%s" % (n.tap, MAC)]
        rc, err = n.run_vm(args)
        assert rc == 5, err[-3000:]
        r = subprocess.run([gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--first-boot-device", "nic"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rc, err = n.run_vm(args)
        s = summary_of(err)
        assert rc == 5, err[-3000:]
        assert re.search(r"1\. Boot0001 \"EFI Network \(%s\)\": no DHCPv6 advertise in 16 s" % MAC_HEX, s), s
        assert re.search(r"2\. Boot0000 \"EFI SCSI Device[^\"]*\": no FAT file system", s), s
        root = tmp_path / "tftp"
        root.mkdir()
        n.dnsmasq6(root, "missing.efi", tmp_path / "dnsmasq.log")
        rc, err = n.run_vm(args)
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert re.search(r"1\. Boot0001 \"EFI Network \(%s\)\": TFTP: file not found: missing\.efi" % MAC_HEX, s), s
    assert re.search(r"2\. Boot0000 \"EFI SCSI Device[^\"]*\": no FAT file system", s), s
