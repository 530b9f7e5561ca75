"""Network boot from the firmware over the synthetic network adapter, against real peers: a tap in a
network namespace this test creates, with Linux's own ARP and small servers on the host side.

test_snp_*: tests/efi/snp_test.efi (started from memory with --efi) drives the firmware's Simple
Network Protocol as a network loader does and reports PASS/FAIL lines on the debug console."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import BUILD, gen2vm_binary, have_kvm

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the tap and the network namespace")]

SNP_TEST = os.path.join(BUILD, "efi", "snp_test.efi")
HOST_IP = "10.214.0.1"
MAC = "00:15:5d:42:00:07"

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

    def start(self, *cmd):
        self.procs.append(subprocess.Popen(ns_exec(self.ns, *cmd), stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def run_vm(self, args, timeout=300):
        """gen2vm in the namespace; returns (exit code, stderr)."""
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        p = subprocess.run(ns_exec(self.ns, gen2vm_binary(), *args), capture_output=True, text=True,
                           timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr

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
