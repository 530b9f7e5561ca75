"""Network boot from the firmware over the synthetic network adapter, against real peers: a tap in a
network namespace this test creates, with Linux's own ARP and small servers on the host side.

test_snp_*: tests/efi/snp_test.efi (started from memory with --efi) drives the firmware's Simple
Network Protocol as a network loader does and reports PASS/FAIL lines on the debug console.
test_pxe_*: the boot manager's "EFI Network" entry (made by gen2vm for each adapter) boots over PXE:
Debian's dnsmasq answers DHCP (matching the firmware's client-architecture option) and serves TFTP;
the firmware loads Debian's signed grubnetx64.efi, which reads its grub.cfg and loads the Debian kernel
and an initramfs over TFTP to a userspace marker. A DHCP server that never answers gives a
boot-summary line and the next entry is tried.
test_http_*: HTTP boot: the DHCP answer's boot file is an http:// URL, which the firmware fetches over
its own TCP from Python's http.server in the namespace (GRUB then reads its grub.cfg over TFTP); an
HTTP 404 is named in the boot summary."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import efi_images as ei
from conftest import BUILD, gen2vm_binary, have_kvm
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the tap and the network namespace")]

SNP_TEST = os.path.join(BUILD, "efi", "snp_test.efi")
HOST_IP = "10.214.0.1"
MAC = "00:15:5d:42:00:07"
MAC_HEX = MAC.replace(":", "").upper()
CMDLINE = "console=ttyS0 panic=-1 loglevel=7"

# A UDP echo server on port 7 (what snp_test talks to).
UDP_ECHO = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('%s', 7))\n"
            "while True:\n"
            "    d, a = s.recvfrom(65536)\n"
            "    s.sendto(d, a)\n" % HOST_IP)


def sh(*cmd, check=True):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


def ns_exec(ns, *cmd):
    return ["ip", "netns", "exec", ns] + list(cmd)


class NetNs:
    """A namespace with a tap at HOST_IP/24 and the servers started in it (killed at the end)."""

    def __init__(self, tmp_path):
        self.ns, self.tap = "g2nb%d" % os.getpid(), "g2nbt%d" % (os.getpid() % 100000)
        self.tmp = tmp_path
        self.procs = []

    def __enter__(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "tuntap", "add", self.tap, "mode", "tap")
        sh("ip", "-n", self.ns, "addr", "add", HOST_IP + "/24", "dev", self.tap)
        sh("ip", "-n", self.ns, "link", "set", self.tap, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        return self

    def start(self, *cmd, log=None):
        """cmd in the namespace; its stdout and stderr in the file log (else dropped)."""
        out = open(log, "w") if log else subprocess.DEVNULL
        self.procs.append(subprocess.Popen(ns_exec(self.ns, *cmd), stdout=out, stderr=subprocess.STDOUT if log
                                           else subprocess.DEVNULL))
        if log:
            out.close()

    def dnsmasq(self, tftp_root, boot_file, log, ipxe_boot_file=None, dns=()):
        """Debian's dnsmasq: DHCPv4 on the tap, the boot file only for x64 UEFI PXE clients (option 93 =
        7), TFTP from tftp_root; its log (with --log-dhcp's option dump) in log. With ipxe_boot_file, a
        client whose user class (option 77) is "iPXE" gets that instead: iPXE's second DHCP. With dns
        (host records "NAME,ADDRESS"), dnsmasq is also the DNS server the DHCP answer names (option 6),
        authoritative for .test (NXDOMAIN for other names there)."""
        if not shutil.which("dnsmasq"):
            pytest.fail("dnsmasq is missing (scripts/deps.sh test installs dnsmasq-base)")
        boot = ["--dhcp-boot=tag:efi64," + boot_file]
        if ipxe_boot_file:
            boot = ["--dhcp-userclass=set:ipxe,iPXE", "--dhcp-boot=tag:efi64,tag:!ipxe," + boot_file,
                    "--dhcp-boot=tag:ipxe," + ipxe_boot_file]
        self.start("dnsmasq", "--no-daemon", *dns_args(dns), "--interface=" + self.tap, "--bind-interfaces",
                   "--dhcp-range=10.214.0.10,10.214.0.50,1h", "--dhcp-leasefile=%s/leases" % self.tmp,
                   "--conf-file=/dev/null", "--dhcp-match=set:efi64,option:client-arch,7", *boot,
                   "--enable-tftp", "--tftp-root=" + str(tftp_root),
                   "--log-dhcp", "--log-facility=" + str(log),
                   "--user=root")  # pytest's directories are root's alone: TFTP reads them as root
        time.sleep(1)

    def run_vm(self, args, timeout=300):
        """gen2vm in the namespace; returns (exit code, stderr)."""
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        # stderr goes to a file kept with the test's files: a VM that hangs still leaves its log, and
        # its registers (read through the control socket) say where it hangs.
        errf, ctl = self.tmp / "gen2vm.err", str(self.tmp / "vm.sock")
        with open(errf, "w") as f:
            p = subprocess.Popen(ns_exec(self.ns, gen2vm_binary(), *args, "--control", ctl), stdout=subprocess.DEVNULL,
                                 stderr=f, env=env, stdin=subprocess.DEVNULL)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                regs = []
                for _ in range(3):
                    try:
                        r = subprocess.run([gen2vm_binary(), "control", ctl, "regs"], capture_output=True, text=True,
                                           timeout=30)
                        regs.append(r.stdout + r.stderr)
                    except subprocess.TimeoutExpired:
                        regs.append("(no answer to regs in 30 s)")
                    time.sleep(1)
                try:  # the adapter's side: frames each way, receive sections and transactions the guest holds
                    r = subprocess.run([gen2vm_binary(), "control", ctl, "nic-list"], capture_output=True, text=True,
                                       timeout=30)
                    regs.append(r.stdout + r.stderr)
                except subprocess.TimeoutExpired:
                    regs.append("(no answer to nic-list in 30 s)")
                p.kill()
                p.wait()
                (self.tmp / "regs.txt").write_text("\n".join(regs))
                out = (self.tmp / "com1.log").read_text(errors="replace") if (self.tmp / "com1.log").exists() else ""
                pytest.fail("the VM still ran after %d s; its registers, three times a second apart, and nic-list:\n%s\n"
                            "--- console:\n%s\n--- gen2vm:\n%s" % (timeout, "\n".join(regs), out[-2000:],
                                                                    errf.read_text(errors="replace")[-2000:]))
        return rc, errf.read_text(errors="replace")

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()
        sh("ip", "netns", "del", self.ns, check=False)


def test_snp_against_linux_on_a_tap(tmp_path):
    if not os.path.exists(SNP_TEST):
        pytest.skip(SNP_TEST + " not built (make efi-apps)")
    with NetNs(tmp_path) as n:
        n.start("/usr/bin/python3", "-c", UDP_ECHO)
        time.sleep(0.5)
        log = tmp_path / "debugcon.log"
        rc, err = n.run_vm(["run", "--memory", "256M", "--debugcon", "file:%s" % log, "--efi", SNP_TEST,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
    text = log.read_text(errors="replace") if log.exists() else ""
    failed = [l for l in text.splitlines() if l.startswith("FAIL ")]
    assert not failed, "\n".join(failed) + "\n" + text + err[-3000:]
    for name in ("handles", "device_path", "mode", "stopped_rules", "start_initialize", "mcast_ip_to_mac", "arp",
                 "tx_recycled", "udp_echo", "shutdown_stop"):
        assert "PASS " + name in text, text + err[-3000:]
    assert "snp_test: MAC " + MAC in text, text
    assert "network: adapter 0, MAC " + MAC in text, text  # the firmware names the adapter on its console
    assert rc == 0, err[-3000:]


def firmware_show(nvram):
    r = subprocess.run([gen2vm_binary(), "firmware", "show", "--nvram", nvram, "--json"], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def summary_of(err):
    assert "no operating system was loaded" in err, err[-3000:]
    return err[err.index("no operating system was loaded"):]


# The grubnetx64 boots fail in the nested test host when its emulator loses the guest's state (issue 18,
# README): there they run only when GEN2VM_RUN_FLAKY=1 asks (a failure costs the 360 s VM timeout and
# tells nothing new); on a host whose KVM runs guests directly they always run.
GRUBNET_RUNS = os.environ.get("GEN2VM_NESTED") != "1" or os.environ.get("GEN2VM_RUN_FLAKY") == "1"


def grubnet_tftp_root(tmp_path, marker):
    """A TFTP root with Debian's signed grubnetx64.efi, its grub.cfg (which echoes the server GRUB
    found), the Debian kernel and an initramfs that prints marker."""
    grub = ei.fetch_efi_binaries()["grubnet_signed"]
    k = fetch_kernel()
    root = tmp_path / "tftp"
    (root / "grub").mkdir(parents=True)
    shutil.copy(grub, root / "grubnetx64.efi")
    shutil.copy(k["vmlinuz"], root / "vmlinuz")
    make_initramfs(str(root / "initrd.img"), INIT_PRELUDE + "echo %s\npoweroff -f\n" % marker)
    # grubnetx64's built-in prefix is /grub on the TFTP server it came from: $prefix/grub.cfg.
    (root / "grub" / "grub.cfg").write_text('echo "GRUBNET-CONFIG-FROM $net_default_server"\n'
                                            f'linux /vmlinuz {CMDLINE}\ninitrd /initrd.img\nboot\n')
    return root


@pytest.mark.real_guest
@pytest.mark.xfail(strict=False, reason="not reliable in the loaded nested test host (issue 18): the VM can triple-fault "
                   "or hang while GRUB fetches the kernel (dnsmasq: failed sending vmlinuz) with the network healthy; "
                   "a hang's registers were the nested host kernel's, i.e. its emulated AMD-V lost the guest's state "
                   "(README); 6 of 9 runs passed on 2026-12-07, 3 of 4 with three busy loops on 2026-12-08",
                   run=GRUBNET_RUNS)
def test_pxe_boots_signed_grubnetx64_to_linux_userspace(tmp_path):
    root = grubnet_tftp_root(tmp_path, "USERSPACE-OVER-PXE")
    nvram, com1 = str(tmp_path / "vm.nvram"), tmp_path / "com1.log"
    log = tmp_path / "dnsmasq.log"
    with NetNs(tmp_path) as n:
        n.dnsmasq(root, "grubnetx64.efi", log)
        rc, err = n.run_vm(["run", "--memory", "512M", "--nvram", nvram, "--com1", "file:%s" % com1,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "--no-reboot", "-v"], timeout=360)
    out = com1.read_text(errors="replace") if com1.exists() else ""
    dlog = log.read_text(errors="replace") if log.exists() else ""
    assert "GRUBNET-CONFIG-FROM " + HOST_IP in out, out[-3000:] + err[-3000:] + dlog[-3000:]
    assert "USERSPACE-OVER-PXE" in out, out[-3000:] + err[-3000:]
    # dnsmasq saw a UEFI x64 PXE client (vendor class, architecture, UUID) and served the files.
    assert "PXEClient:Arch:00007:UNDI:003016" in dlog, dlog[-3000:]
    assert re.search(r"sent \S*grubnetx64\.efi to 10\.214\.0\.", dlog), dlog[-3000:]
    assert re.search(r"sent \S*vmlinuz to 10\.214\.0\.", dlog), dlog[-3000:]
    entries = firmware_show(nvram)["entries"]
    assert [(e["type"], e["description"]) for e in entries] == [("device", "EFI Network (%s)" % MAC_HEX)], entries
    assert entries[0]["device_path"].endswith("/MAC(%s,0x1)" % MAC_HEX), entries
    assert rc == 0, err[-3000:]


def dns_args(records):
    """dnsmasq's DNS: off, or serving records ("NAME,ADDRESS") and NXDOMAIN for the rest of .test."""
    if not records:
        return ["--port=0"]
    return ["--port=53", "--no-resolv", "--no-hosts", "--local=/test/"] + ["--host-record=" + r for r in records]


def http_server(n, root, log, host=HOST_IP):
    """Python's http.server on host (HOST_IP, or an IPv6 address) port 8080 in the namespace, serving
    root; its request log in log."""
    f = open(log, "w")
    n.procs.append(subprocess.Popen(ns_exec(n.ns, "/usr/bin/python3", "-m", "http.server", "8080", "--bind", host,
                                            "--directory", str(root)), stdout=f, stderr=f))
    time.sleep(1)


@pytest.mark.real_guest
def test_http_boot_loads_grubnetx64_from_the_url_in_the_dhcp_answer(tmp_path):
    grub = ei.fetch_efi_binaries()["grubnet_signed"]
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    shutil.copy(grub, root / "grubnetx64.efi")
    (root / "grub" / "grub.cfg").write_text('echo "GRUB-OVER-HTTP-FROM $net_default_server"\nhalt\n')
    url = "http://%s:8080/grubnetx64.efi" % HOST_IP
    nvram, com1 = str(tmp_path / "vm.nvram"), tmp_path / "com1.log"
    dlog, hlog = tmp_path / "dnsmasq.log", tmp_path / "http.log"
    with NetNs(tmp_path) as n:
        http_server(n, root, hlog)
        n.dnsmasq(root, url, dlog)
        rc, err = n.run_vm(["run", "--memory", "512M", "--nvram", nvram, "--com1", "file:%s" % com1,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "--no-reboot", "-v"], timeout=900)
    out = com1.read_text(errors="replace") if com1.exists() else ""
    h = hlog.read_text(errors="replace")
    d = dlog.read_text(errors="replace") if dlog.exists() else ""
    why = "\n".join([out[-3000:], err[-3000:], h[-2000:], d[-2000:]])
    assert "network boot: HTTP " + url in err, why
    assert re.search(r'"GET /grubnetx64\.efi HTTP/1\.1" 200', h), why
    assert "grubnetx64.efi, %d bytes" % os.path.getsize(grub) in out, why  # the whole file, as served
    assert not re.search(r"sent \S*grubnetx64\.efi", d), why                # not over TFTP
    assert "GRUB-OVER-HTTP-FROM " + HOST_IP in out, why
    assert rc == 0, why


@pytest.mark.real_guest
def test_http_boot_by_host_name_and_the_failures_in_the_boot_summary(tmp_path):
    """The URL names its server by a host name: the firmware asks the DNS server the DHCP answer named
    (dnsmasq) for its address, then fetches over HTTP, and the program runs. A file the server does not
    have and a name that does not exist each give their line in the boot summary."""
    hello = os.path.join(BUILD, "efi", "hello.efi")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(hello, root / "hello.efi")
    dns = ["boot.test," + HOST_IP]

    def boot(url, name):
        dbg = tmp_path / ("%s.debugcon" % name)
        with NetNs(tmp_path) as n:
            http_server(n, root, tmp_path / ("%s.http.log" % name))
            n.dnsmasq(root, url, tmp_path / ("%s.dnsmasq.log" % name), dns=dns)
            rc, err = n.run_vm(["run", "--memory", "256M", "--debugcon", "file:%s" % dbg,
                                "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "-v"])
        return rc, err, dbg.read_text(errors="replace") if dbg.exists() else ""

    url = "http://boot.test:8080/hello.efi"
    rc, err, out = boot(url, "ok")
    h = (tmp_path / "ok.http.log").read_text(errors="replace")
    why = "\n".join([out[-3000:], err[-3000:], h[-2000:]])
    assert "network boot: DNS A boot.test from %s" % HOST_IP in err, why
    assert re.search(r'"GET /hello\.efi HTTP/1\.1" 200', h), why
    assert "hello from EFI" in out, why
    missing = "http://boot.test:8080/missing.efi"
    rc, err, _ = boot(missing, "404")
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert re.search(r"Boot0000 \"EFI Network \(%s\)\": HTTP: file not found: %s \(404 File not found\)"
                     % (MAC_HEX, re.escape(missing)), s), s
    rc, err, _ = boot("http://nosuch.test:8080/hello.efi", "nxdomain")
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert re.search(r"Boot0000 \"EFI Network \(%s\)\": DNS: nosuch\.test: no such name \(from %s\)"
                     % (MAC_HEX, re.escape(HOST_IP)), s), s


@pytest.mark.real_guest
def test_pxe_failures_in_the_boot_summary_then_the_next_entry(tmp_path):
    """No DHCP server: "no DHCP offer in 16 s", then the disk entry; a DHCP server whose boot file is
    missing: "TFTP: file not found". --first-boot-device nic puts the network entry first."""
    nvram = str(tmp_path / "vm.nvram")
    blank = ei.make_blank_disk(str(tmp_path / "blank.img"))
    args = ["run", "--memory", "256M", "--nvram", nvram, "--disk", blank, "-v"]
    with NetNs(tmp_path) as n:
        args += ["--nic", "tap=%s,mac=%s" % (n.tap, MAC)]
        rc, err = n.run_vm(args)
        s = summary_of(err)
        assert rc == 5, err[-3000:]
        assert re.search(r"1\. Boot0000 \"EFI SCSI Device[^\"]*\": no FAT file system", s), s
        assert re.search(r"2\. Boot0001 \"EFI Network \(%s\)\": no DHCP offer in 16 s" % MAC_HEX, s), s
        r = subprocess.run([gen2vm_binary(), "firmware", "set", "--nvram", nvram, "--first-boot-device", "nic"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert firmware_show(nvram)["entries"][0]["description"] == "EFI Network (%s)" % MAC_HEX
        root = tmp_path / "tftp"
        root.mkdir()
        n.dnsmasq(root, "missing.efi", tmp_path / "dnsmasq.log")
        rc, err = n.run_vm(args)
    s = summary_of(err)
    assert rc == 5, err[-3000:]
    assert re.search(r"1\. Boot0001 \"EFI Network \(%s\)\": TFTP: file not found: missing\.efi" % MAC_HEX, s), s
    assert re.search(r"2\. Boot0000 \"EFI SCSI Device[^\"]*\": no FAT file system", s), s


@pytest.mark.real_guest
def test_pxe_boots_ipxe_which_runs_a_script_over_http(tmp_path):
    """Debian's ipxe.efi over PXE/TFTP; it drives the adapter through the firmware's SNP, asks DHCP again
    (user class "iPXE": dnsmasq answers with an HTTP URL), fetches its script from a Python HTTP server
    in the namespace, echoes a marker on the console, and boots the Debian kernel and an initramfs it
    fetched over HTTP to a userspace marker."""
    ipxe = ei.fetch_efi_binaries()["ipxe"]
    k = fetch_kernel()
    tftp, www = tmp_path / "tftp", tmp_path / "www"
    tftp.mkdir()
    www.mkdir()
    shutil.copy(ipxe, tftp / "ipxe.efi")
    shutil.copy(k["vmlinuz"], www / "vmlinuz")
    make_initramfs(str(www / "initrd.img"), INIT_PRELUDE + "echo USERSPACE-OVER-IPXE\npoweroff -f\n")
    url = "http://%s:8080" % HOST_IP
    # initrd= names the image for the kernel's EFI stub, which reads it from iPXE's file system.
    (www / "boot.ipxe").write_text("#!ipxe\necho IPXE-SCRIPT-FROM ${next-server} ADDRESS ${ip}\n"
                                   f"kernel {url}/vmlinuz initrd=initrd.img {CMDLINE}\n"
                                   f"initrd {url}/initrd.img\nboot\n")
    nvram, com1 = str(tmp_path / "vm.nvram"), tmp_path / "com1.log"
    log, http_log = tmp_path / "dnsmasq.log", tmp_path / "http.log"
    with NetNs(tmp_path) as n:
        n.start("/usr/bin/python3", "-u", "-m", "http.server", "--bind", HOST_IP, "--directory", str(www), "8080",
                log=http_log)
        n.dnsmasq(tftp, "ipxe.efi", log, ipxe_boot_file=url + "/boot.ipxe")
        rc, err = n.run_vm(["run", "--memory", "512M", "--nvram", nvram, "--com1", "file:%s" % com1,
                            "--nic", "tap=%s,mac=%s" % (n.tap, MAC), "--no-reboot", "-v"], timeout=360)
    out = com1.read_text(errors="replace") if com1.exists() else ""
    dlog = log.read_text(errors="replace") if log.exists() else ""
    hlog = http_log.read_text(errors="replace") if http_log.exists() else ""
    why = "\n--- console:\n" + out[-3000:] + "\n--- gen2vm:\n" + err[-2000:] + "\n--- dnsmasq:\n" + dlog[-2000:] + \
          "\n--- HTTP server:\n" + hlog[-1500:]
    assert re.search(r"sent \S*ipxe\.efi to 10\.214\.0\.", dlog), why
    assert re.search(r'"GET /boot\.ipxe HTTP/1\.[01]" 200', hlog), why
    assert re.search(r"IPXE-SCRIPT-FROM %s ADDRESS 10\.214\.0\.\d+" % re.escape(HOST_IP), out), why
    assert re.search(r'"GET /vmlinuz HTTP/1\.[01]" 200', hlog), why
    assert "USERSPACE-OVER-IPXE" in out, why
    assert rc == 0, why
