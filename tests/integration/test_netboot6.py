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
from test_netboot import (GRUBNET_RUNS, MAC, MAC_HEX, NetNs, dns_args, firmware_show, grubnet_tftp_root, http_server,
                          sh, summary_of)

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

    def dnsmasq6(self, tftp_root, boot_file, log, url=None, dns=(), first="fd42:214::10", last="fd42:214::50",
                 stateless=False):
        """dnsmasq: RAs for fd42:214::/64, DHCPv6 addresses from it, the boot-file URL (url, or
        tftp://[HOST_IP6]/boot_file), TFTP; with dns (host records), the DNS server too (option 23).
        stateless: RAs with the M flag off and an autonomous prefix, DHCPv6 for options only."""
        if not shutil.which("dnsmasq"):
            pytest.fail("dnsmasq is missing (scripts/deps.sh test installs dnsmasq-base)")
        extra = ["--dhcp-option=option6:dns-server,[::]"] if dns else []
        self.start("dnsmasq", "--no-daemon", *dns_args(dns), *extra, "--interface=" + self.tap, "--bind-interfaces",
                   "--enable-ra", "--dhcp-range=" + ("fd42:214::,ra-stateless" if stateless else
                                                     "%s,%s,64,1h" % (first, last)),
                   "--dhcp-leasefile=%s/leases" % self.tmp, "--conf-file=/dev/null",
                   "--dhcp-option=option6:bootfile-url," + (url or "tftp://[%s]/%s" % (HOST_IP6, boot_file)),
                   "--enable-tftp", "--tftp-root=" + str(tftp_root), "--log-dhcp", "--log-facility=" + str(log),
                   "--user=root")
        time.sleep(1)


# Another node holding fd42:214::99: unsolicited neighbour advertisements for it (RFC 4861 7.2.6), ten
# a second to all nodes, with the target link-layer address 02:00:00:00:00:99 (the kernel fills the
# ICMPv6 checksum of a raw socket).
NA_SENDER = r"""
import socket, struct, time
tap = "%s"
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(tap))
na = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, "fd42:214::99")
na += bytes([2, 1, 2, 0, 0, 0, 0, 0x99])
while True:
    s.sendto(na, ("ff02::1", 0, 0, socket.if_nametoindex(tap)))
    time.sleep(0.1)
"""


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


def test_http_boot_over_ipv6_from_the_dhcpv6_boot_file_url(tmp_path):
    """UEFI HTTP boot over IPv6: the DHCPv6 boot-file URL is http://[fd42:214::1]:8080/hello.efi; the
    firmware fetches it from Python's http.server over its own TCP over IPv6, not over TFTP, and it
    runs. A second URL names the server by a host name (looked up as AAAA from the DNS server of
    DHCPv6's option 23) and a file it does not have: the 404 in the boot summary."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(HELLO, root / "hello.efi")
    url = "http://[%s]:8080/hello.efi" % HOST_IP6
    nvram, dbg, dlog, hlog = str(tmp_path / "vm.nvram"), tmp_path / "debugcon.log", tmp_path / "dnsmasq.log", \
        tmp_path / "http.log"
    set_ipv6(nvram)
    with NetNs6(tmp_path) as n:
        http_server(n, root, hlog, host=HOST_IP6)
        n.dnsmasq6(root, None, dlog, url=url)
        rc, err = n.run_vm(["run", "--memory", "256M", "--nvram", nvram, "--debugcon", "file:%s" % dbg,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
    text = dbg.read_text(errors="replace") if dbg.exists() else ""
    h = hlog.read_text(errors="replace")
    d = dlog.read_text(errors="replace") if dlog.exists() else ""
    why = "\n".join([text[-3000:], err[-3000:], h[-2000:], d[-2000:]])
    assert "network boot: HTTP " + url in err, why
    assert re.search(r'"GET /hello\.efi HTTP/1\.1" 200', h), why
    assert re.search(r"network: adapter 0: address fd42:214::[0-9a-f]+, boot server fd42:214::1, boot file "
                     r"\"http://\[fd42:214::1\]:8080/hello\.efi\"", text), why
    assert "hello from EFI" in text, why
    assert not re.search(r"sent \S*hello\.efi", d), why  # not over TFTP
    missing = "http://boot.test:8080/missing.efi"
    with NetNs6(tmp_path) as n:
        http_server(n, root, hlog, host=HOST_IP6)
        n.dnsmasq6(root, None, dlog, url=missing, dns=["boot.test," + HOST_IP6])
        rc, err = n.run_vm(["run", "--memory", "256M", "--nvram", nvram, "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert "network boot: DNS AAAA boot.test from %s" % HOST_IP6 in err, err[-3000:]
    assert re.search(r"Boot0000 \"EFI Network \(%s\)\": HTTP: file not found: %s \(404 File not found\)"
                     % (MAC_HEX, re.escape(missing)), s), s


def test_pxe6_stateless_slaac_and_information_request(tmp_path):
    """The router says addresses are autoconfigured (RA: M flag off, an autonomous /64): the firmware
    makes its address from the prefix and its MAC (SLAAC), asks DHCPv6 only for options
    (Information-Request) and boots the program from the boot-file URL over TFTP."""
    root = tmp_path / "tftp"
    root.mkdir()
    shutil.copy(HELLO, root / "hello.efi")
    nvram, dbg, log = str(tmp_path / "vm.nvram"), tmp_path / "debugcon.log", tmp_path / "dnsmasq.log"
    set_ipv6(nvram)
    with NetNs6(tmp_path) as n:
        n.dnsmasq6(root, "hello.efi", log, stateless=True)
        rc, err = n.run_vm(["run", "--memory", "256M", "--nvram", nvram, "--debugcon", "file:%s" % dbg,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
    text = dbg.read_text(errors="replace") if dbg.exists() else ""
    dlog = log.read_text(errors="replace") if log.exists() else ""
    why = text[-3000:] + err[-3000:] + dlog[-3000:]
    m = [int(x, 16) for x in MAC.split(":")]
    iid = "%x:%x:%x:%x" % ((m[0] ^ 2) << 8 | m[1], m[2] << 8 | 0xff, 0xfe00 | m[3], m[4] << 8 | m[5])
    assert "SLAAC and DHCPv6 information request" in err, why
    assert re.search(r"network: adapter 0: address fd42:214::%s \(SLAAC\), boot server fd42:214::1, "
                     r"boot file \"hello\.efi\"" % iid, text), why
    assert "hello from EFI" in text, why
    assert "information-request" in dlog.lower(), dlog[-3000:]


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
                   "the kernel (three triple faults, one hang whose registers were the nested host kernel's)",
                   run=GRUBNET_RUNS)
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
    found" (the IPv4 words: the TFTP client is shared). A DHCPv6 address another node has: duplicate
    address detection finds it."""
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
    # Duplicate address detection: the only address DHCPv6 can give, fd42:214::99, is another node's
    # (a program on the link advertises it as 02:00:00:00:00:99's), and the firmware does not use it.
    with NetNs6(tmp_path) as n:
        n.start("/usr/bin/python3", "-c", NA_SENDER % n.tap)
        tap_mac = "02:00:00:00:00:99"
        n.dnsmasq6(root, "missing.efi", tmp_path / "dnsmasq-dad.log", first="fd42:214::99", last="fd42:214::99")
        rc, err = n.run_vm(["run", "--memory", "256M", "--nvram", nvram, "--disk", blank, "-v",
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC)])
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert re.search(r"1\. Boot0001 \"EFI Network \(%s\)\": the DHCPv6 address fd42:214::99 is in use by %s "
                     r"\(duplicate address detection\)" % (MAC_HEX, tap_mac), s), s
