"""Synthetic network adapter against real peers: a stock Debian kernel with hv_netvsc in the guest,
dnsmasq DHCP and an HTTP server in a private network namespace on the host side of the tap.

Needs: /dev/kvm, root (tap + netns), dnsmasq, and a kernel + initrd given by environment:
  GEN2VM_NET_KERNEL  a Debian vmlinuz (hv_vmbus, hv_netvsc as modules are fine)
  GEN2VM_NET_INITRD  an initramfs whose /init honours `nettest=` on the command line (contract below)
Skipped when any is missing, and until the VMM has VMBus wired to KVM (the lead's SynIC work).

Initrd /init contract (busybox is enough):
  - load hv_vmbus / hv_netvsc if modular; bring up every ethN;
  - for nettest=basic: `udhcpc -i eth0 -q`, print "NET-IP <addr>", `ping -c 3 10.213.0.1`, print
    "NET-PING ok" on success; `wget -O /dev/null http://10.213.0.1:8000/blob` (64 MiB) and print
    "NET-WGET <bytes> <seconds>"; `ip link set eth0 mtu 9000 && ping -c 3 -s 8000 -M do 10.213.0.1`
    -> "NET-JUMBO ok"; then it polls /sys/class/net/eth0/carrier every 100 ms for 20 s and prints
    "NET-CARRIER 0" / "NET-CARRIER 1" on each change; then powers off;
  - for nettest=pair: eth0 and eth1 are two adapters on one pair backend; it moves eth1 into a
    namespace, addresses 192.168.77.1/.2, pings across, prints "NET-PAIR ok", powers off.
Control socket: the VM is started with --control PATH (the lead's option); link flap uses
`nic-link 0 down` / `nic-link 0 up` there.
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import gen2vm_binary, have_kvm

KERNEL = os.environ.get("GEN2VM_NET_KERNEL")
INITRD = os.environ.get("GEN2VM_NET_INITRD")

pytestmark = [
    pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for tap and netns"),
    pytest.mark.skipif(not (KERNEL and INITRD and os.path.exists(KERNEL) and os.path.exists(INITRD)),
                       reason="set GEN2VM_NET_KERNEL and GEN2VM_NET_INITRD (see module docstring)"),
    pytest.mark.skipif(not shutil.which("dnsmasq"), reason="dnsmasq not installed"),
]


def sh(*cmd, check=True):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


@pytest.fixture
def netns(tmp_path):
    """A namespace with a multi-queue tap at 10.213.0.1/24, dnsmasq and an HTTP server with a 64 MiB blob."""
    ns = f"g2vn{os.getpid()}"
    tap = f"g2vn{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "-n", ns, "tuntap", "add", tap, "mode", "tap", "multi_queue")
        sh("ip", "-n", ns, "addr", "add", "10.213.0.1/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "mtu", "9000")
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        blob = tmp_path / "blob"
        with open(blob, "wb") as f:
            f.truncate(64 << 20)
        dns = subprocess.Popen(["ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--port=0",
                                f"--interface={tap}", "--bind-interfaces",
                                "--dhcp-range=10.213.0.10,10.213.0.50,1h", f"--dhcp-leasefile={tmp_path}/leases"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        http = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-m", "http.server", "8000",
                                 "--bind", "10.213.0.1", "--directory", str(tmp_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield ns, tap
        dns.terminate()
        http.terminate()
        dns.wait()
        http.wait()
    finally:
        sh("ip", "netns", "del", ns, check=False)


def start_vm(ns, args, control):
    cmd = ["ip", "netns", "exec", ns, gen2vm_binary(), "run", "--memory", "1G", "--cpus", "2",
           "--kernel", KERNEL, "--initrd", INITRD, "--com1", "stdio", "--control", control] + args
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ctl(path, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(100):
        try:
            s.connect(path)
            break
        except OSError:
            time.sleep(0.1)
    s.sendall((line + "\n").encode())
    reply = s.makefile().readline().strip()
    s.close()
    return reply


def wait_line(proc, prefix, timeout=120):
    end = time.time() + timeout
    seen = []
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no '{prefix}' line; guest said:\n" + "".join(seen[-40:]))


def test_dhcp_ping_transfer_jumbo_link_flap(netns, tmp_path):
    ns, tap = netns
    control = str(tmp_path / "ctl.sock")
    vm = start_vm(ns, ["--nic", f"tap={tap},queues=2", "--cmdline", "console=ttyS0 nettest=basic quiet"], control)
    try:
        assert wait_line(vm, "NET-IP").split()[1].startswith("10.213.0.")
        wait_line(vm, "NET-PING ok")
        _, nbytes, secs = wait_line(vm, "NET-WGET", timeout=300).split()
        assert int(nbytes) == 64 << 20
        print(f"64 MiB in {secs} s")
        wait_line(vm, "NET-JUMBO ok")
        assert ctl(control, "nic-link 0 down").startswith("ok")
        wait_line(vm, "NET-CARRIER 0")
        assert ctl(control, "nic-link 0 up").startswith("ok")
        wait_line(vm, "NET-CARRIER 1")
        assert "link=up" in ctl(control, "nic-list")
    finally:
        vm.kill()
        vm.wait()


def test_two_adapters_on_a_pair(netns, tmp_path):
    ns, _ = netns
    control = str(tmp_path / "ctl.sock")
    vm = start_vm(ns, ["--nic", "pair=p0", "--nic", "pair=p0", "--cmdline", "console=ttyS0 nettest=pair quiet"],
                  control)
    try:
        wait_line(vm, "NET-PAIR ok")
    finally:
        vm.kill()
        vm.wait()


def test_legacy_adapter_refused(tmp_path):
    r = subprocess.run([gen2vm_binary(), "run", "--kernel", KERNEL, "--nic", "tap=x,legacy"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "generation 1" in r.stderr
