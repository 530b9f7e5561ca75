"""The synthetic network adapter against real peers: Debian's kernel with hv_netvsc in the guest; on the
host side of a tap in a network namespace this test creates, dnsmasq serves DHCP and small servers
send and receive a blob. One 2-vCPU boot covers DHCP, pings both ways, a transfer each way with
checksums, jumbo frames and a cable disconnect/reconnect from the control socket."""
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run_vm
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs, symbol_for
from test_linux import CMDLINE, LOAD_MODULES

HOST_IP = "10.213.0.1"
BLOB = int(os.environ.get("GEN2VM_NET_BLOB_MIB", "64")) << 20

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr add $ip/${mask:-24} dev $interface
"""

INIT = LOAD_MODULES + r"""
ip link set lo up
for i in $(seq 1 300); do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
ip link set eth0 up
udhcpc -i eth0 -q -n -t 30 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1
echo "NET-IP $(ip -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -d' ' -f2)"
echo "NET-QUEUES $(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)"
ping -c 3 -W 5 HOST_IP >/dev/null && echo "NET-PING ok"
wget -q -O /tmp/blob http://HOST_IP:8000/blob && echo "NET-RX $(sha256sum /tmp/blob | cut -d' ' -f1)"
nc HOST_IP 9000 < /tmp/blob && echo "NET-TX-DONE"
rm -f /tmp/blob
ip link set eth0 mtu 9000 && echo "NET-JUMBO-READY"
last=$(cat /sys/class/net/eth0/carrier)
for i in $(seq 1 1200); do
  c=$(cat /sys/class/net/eth0/carrier 2>/dev/null)
  if [ "$c" != "$last" ]; then echo "NET-CARRIER $c"; last=$c; [ "$c" = 1 ] && break; fi
  [ -e /tmp/done ] && break
  sleep 0.1
done
poweroff -f
""".replace("HOST_IP", HOST_IP)

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the tap and the network namespace")


def sh(*cmd, check=True):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True)


def ns_exec(ns, *cmd):
    return ["ip", "netns", "exec", ns] + list(cmd)


@pytest.fixture
def netns(tmp_path):
    if not shutil.which("dnsmasq"):
        pytest.fail("dnsmasq is missing (scripts/deps.sh test installs dnsmasq-base)")
    ns, tap = "g2vn%d" % os.getpid(), "g2vt%d" % (os.getpid() % 100000)
    sh("ip", "netns", "add", ns)
    procs = []
    try:
        sh("ip", "-n", ns, "tuntap", "add", tap, "mode", "tap", "multi_queue")
        sh("ip", "-n", ns, "addr", "add", HOST_IP + "/24", "dev", tap)
        sh("ip", "-n", ns, "link", "set", tap, "mtu", "9000")
        sh("ip", "-n", ns, "link", "set", tap, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        blob = tmp_path / "www" / "blob"
        blob.parent.mkdir()
        data = os.urandom(BLOB)
        blob.write_bytes(data)
        procs.append(subprocess.Popen(ns_exec(ns, "dnsmasq", "--no-daemon", "--port=0", "--interface=" + tap,
                                              "--bind-interfaces", "--dhcp-range=10.213.0.10,10.213.0.50,1h",
                                              "--dhcp-leasefile=%s/leases" % tmp_path, "--conf-file=/dev/null"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(ns_exec(ns, "/usr/bin/python3", "-m", "http.server", "8000", "--bind",
                                              HOST_IP, "--directory", str(blob.parent)),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        received = tmp_path / "received"
        procs.append(subprocess.Popen(ns_exec(ns, "/usr/bin/python3", "-c",
                                              "import socket,sys\n"
                                              "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                              "s.bind(('%s', 9000)); s.listen(1); c,_=s.accept()\n"
                                              "f=open(sys.argv[1],'wb')\n"
                                              "while True:\n"
                                              "    b=c.recv(1<<20)\n"
                                              "    if not b: break\n"
                                              "    f.write(b)\n"
                                              "f.close()\n" % HOST_IP, str(received))))
        yield ns, tap, hashlib.sha256(data).hexdigest(), received
    finally:
        for p in procs:
            p.kill()
            p.wait()
        sh("ip", "netns", "del", ns, check=False)


def start_in_ns(ns, k, initrd, log, sock, nic):
    """gen2vm in the namespace (where the tap is): Debian's kernel, 2 vCPUs, COM1 to log, the control
    socket at sock (reachable from outside: a path), one adapter. Returns the process and a dict that
    gets its stderr as "err"."""
    p = subprocess.Popen(ns_exec(ns, gen2vm_binary(), "run", "--kernel", k["vmlinuz"], "--initrd", initrd,
                                 "--cmdline", CMDLINE, "--memory", "512M", "--cpus", "2", "--com1", "file:" + log,
                                 "--control", sock, "--nic", nic),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    threading.Thread(target=lambda: out.update(err=p.stderr.read()), daemon=True).start()
    return p, out


def ended(out, log, k):
    """After the VM process ended: its stderr and console, failing the test with the blocking
    instruction's symbol if gen2vm could not complete one."""
    time.sleep(0.5)
    err = out.get("err", "")
    console = open(log, errors="replace").read() if os.path.exists(log) else ""
    m = re.search(r"cannot complete instruction: RIP=(0x[0-9a-f]+) bytes ([0-9a-f ]+)", err)
    if m:
        pytest.fail("blocked at RIP=%s (%s) bytes %s" % (m.group(1), symbol_for(k["system_map"], m.group(1)),
                                                         m.group(2)))
    return err, console


def wait_console(path, pattern, proc, timeout):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        text = open(path, errors="replace").read() if os.path.exists(path) else ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(0.5)
    return None


@needs_root
@pytest.mark.real_guest
def test_netvsp_with_linux(netns, tmp_path):
    ns, tap, want_sum, received = netns
    k = fetch_kernel()
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + INIT, k["modules"], ["hv_vmbus", "hv_netvsc"],
                   extra_files={"etc/udhcpc.script": (UDHCPC_SCRIPT.encode(), 0o755)})
    log, sock = str(tmp_path / "com1.log"), str(tmp_path / "vm.sock")
    p, out = start_in_ns(ns, k, initrd, log, sock, "tap=%s,queues=2" % tap)
    ip = host_ping = jumbo = None
    try:
        m = wait_console(log, r"NET-IP (10\.213\.0\.\d+)", p, 900)
        if m:
            ip = m.group(1)
            host_ping = sh(*ns_exec(ns, "ping", "-c", "3", "-W", "10", ip), check=False)
        if wait_console(log, "NET-JUMBO-READY", p, 900):
            # 8000 bytes with "don't fragment": only passes when 9000-byte frames cross netvsp both ways.
            jumbo = sh(*ns_exec(ns, "ping", "-c", "3", "-W", "10", "-M", "do", "-s", "8000", ip), check=False)
            r = subprocess.run([gen2vm_binary(), "control", sock, "nic-link", "0", "down"], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stdout + r.stderr
            if wait_console(log, "NET-CARRIER 0", p, 120):
                r = subprocess.run([gen2vm_binary(), "control", sock, "nic-link", "0", "up"], capture_output=True,
                                   text=True)
                assert r.returncode == 0, r.stdout + r.stderr
        rc = p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err, console = ended(out, log, k)
    assert ip, console[-3000:] + err[-2000:]
    assert "NET-PING ok" in console, console[-3000:]
    assert host_ping and host_ping.returncode == 0, host_ping.stdout if host_ping else None
    assert "NET-QUEUES 2" in console, console[-3000:]  # vRSS: two receive queues on two vCPUs
    assert "NET-RX " + want_sum in console, console[-3000:]
    assert "NET-TX-DONE" in console, console[-3000:]
    assert hashlib.sha256(received.read_bytes()).hexdigest() == want_sum
    assert jumbo and jumbo.returncode == 0, (jumbo.stdout + jumbo.stderr) if jumbo else console[-2000:]
    assert "NET-CARRIER 0" in console and "NET-CARRIER 1" in console, console[-3000:]
    assert rc == 0, err[-2000:]


def test_legacy_adapter_refused_on_gen2(tmp_path):
    rc, _, err = run_vm(["run", "--kernel", "/bin/true", "--nic", "tap=x,legacy"])
    assert rc == 2
    assert "generation 1" in err


# Two Linux VMs joined by `--nic pair=`: no tap, no root. Each pings the other until it answers (both
# directions), then A sends 16 MiB of random data to B with busybox nc and both print its checksum.
PAIR_A, PAIR_B = "10.214.0.1", "10.214.0.2"
PAIR_COMMON = LOAD_MODULES + r"""
ip link set lo up
for i in $(seq 1 300); do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
ip addr add SELF/24 dev eth0
ip link set eth0 up
for i in $(seq 1 120); do ping -c 1 -W 2 PEER >/dev/null 2>&1 && { echo "PAIR-PING ok"; break; }; done
"""
PAIR_INIT_A = PAIR_COMMON.replace("SELF", PAIR_A).replace("PEER", PAIR_B) + r"""
dd if=/dev/urandom of=/tmp/blob bs=1M count=16 2>/dev/null
echo "PAIR-TX $(sha256sum /tmp/blob | cut -d' ' -f1)"
for i in $(seq 1 120); do nc PEER 9000 < /tmp/blob && { echo "PAIR-TX-DONE"; break; }; sleep 1; done
poweroff -f
""".replace("PEER", PAIR_B)
PAIR_INIT_B = PAIR_COMMON.replace("SELF", PAIR_B).replace("PEER", PAIR_A) + r"""
nc -l -p 9000 > /tmp/blob
echo "PAIR-RX $(sha256sum /tmp/blob | cut -d' ' -f1)"
poweroff -f
"""


@pytest.mark.real_guest
def test_two_linux_vms_on_a_nic_pair(tmp_path):
    k = fetch_kernel()
    pair = "g2vp%d" % os.getpid()
    procs, logs, errs = [], [], []
    for name, init, mac in (("a", PAIR_INIT_A, "02:00:00:00:21:01"), ("b", PAIR_INIT_B, "02:00:00:00:21:02")):
        initrd = str(tmp_path / ("initrd-%s.cpio" % name))
        make_initramfs(initrd, INIT_PRELUDE + init, k["modules"], ["hv_vmbus", "hv_netvsc"])
        log = str(tmp_path / ("com1-%s.log" % name))
        p = subprocess.Popen([gen2vm_binary(), "run", "--kernel", k["vmlinuz"], "--initrd", initrd,
                              "--cmdline", CMDLINE, "--memory", "256M", "--cpus", "1", "--com1", "file:" + log,
                              "--nic", "pair=%s,mac=%s" % (pair, mac)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        err = {}
        threading.Thread(target=lambda p=p, err=err: err.update(text=p.stderr.read()), daemon=True).start()
        procs.append(p)
        logs.append(log)
        errs.append(err)
    try:
        rcs = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    time.sleep(0.5)
    con = [open(l, errors="replace").read() if os.path.exists(l) else "" for l in logs]
    err = [e.get("text", "") for e in errs]
    for c, e in zip(con, err):
        assert "PAIR-PING ok" in c, c[-3000:] + e[-2000:]
    tx = re.search(r"PAIR-TX ([0-9a-f]{64})", con[0])
    assert tx and "PAIR-TX-DONE" in con[0], con[0][-3000:]
    assert "PAIR-RX " + tx.group(1) in con[1], con[1][-3000:]
    assert rcs == [0, 0], err[0][-2000:] + err[1][-2000:]
