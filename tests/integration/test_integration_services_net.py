"""The integration services that need a network and a guest userspace, with the real clients: Debian's
stock cloud kernel (hv_vmbus, hv_utils, hv_netvsc) and Debian's unmodified hv_kvp_daemon, on a tap in
a network namespace where dnsmasq serves DHCP. One boot covers:
- the guest's DHCP address of its synthetic adapter reaching the host through KVP (GET_IP_INFO, the
  adapter named by its MAC): in `kvp`, in `status` and in `status --json`, beside the heartbeat;
- the guest's clock following the VM's clock when it moves while the guest runs (`clock --offset`):
  the time sync service steps it.
"""
import json
import re
import subprocess
import time

import pytest

from conftest import gen2vm_binary, have_kvm
from linux_guest import INIT_PRELUDE, daemon_files, fetch_hyperv_daemons, fetch_kernel, make_initramfs
from test_linux import LOAD_MODULES
from test_netvsp_linux import (UDHCPC_SCRIPT, ended, needs_root, netns,  # noqa: F401 (netns: a fixture)
                               start_in_ns, wait_console)

pytestmark = [pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm"), pytest.mark.real_guest]

INIT = LOAD_MODULES + r"""
hostname kvp-net-guest
mkdir -p /var/lib/hyperv /etc
printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\n' > /etc/os-release
ip link set lo up
for i in $(seq 1 300); do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
ip link set eth0 up
udhcpc -i eth0 -q -n -t 30 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1
echo "NET-IP $(ip -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -d' ' -f2) MAC $(cat /sys/class/net/eth0/address)"
/usr/sbin/hv_kvp_daemon -n > /tmp/kvp.log 2>&1 &
has() { grep -aq "$1" /var/lib/hyperv/.kvp_pool_0 2>/dev/null; }
for i in $(seq 1 3000); do echo "GUEST-EPOCH $(date +%s)"; has ClockDone && break; sleep 1; done
sed 's/^/DAEMON-LOG /' /tmp/kvp.log | head -20
poweroff -f
"""


def epochs(console):
    return [int(x) for x in re.findall(r"GUEST-EPOCH (\d+)", console)]


@needs_root
def test_guest_addresses_and_clock_offset(netns, tmp_path):
    ns, tap, _, _ = netns
    k = fetch_kernel()
    files = {"etc/udhcpc.script": (UDHCPC_SCRIPT.encode(), 0o755)}
    files.update(daemon_files(fetch_hyperv_daemons(), "/usr/sbin/hv_kvp_daemon"))
    initrd = str(tmp_path / "initrd.cpio")
    make_initramfs(initrd, INIT_PRELUDE + INIT, k["modules"], ["hv_vmbus", "hv_utils", "hv_netvsc"],
                   extra_files=files)
    log, sock = str(tmp_path / "com1.log"), str(tmp_path / "vm.sock")
    p, out = start_in_ns(ns, k, initrd, log, sock, "tap=%s" % tap)

    def ctl(*args):
        return subprocess.run([gen2vm_binary(), "control", sock] + list(args), capture_output=True,
                              text=True).stdout.strip()

    r = {}
    ip = mac = None
    try:
        m = wait_console(log, r"NET-IP (10\.213\.0\.\d+) MAC ([0-9a-f:]{17})", p, 900)
        if m:
            ip, mac = m.group(1), m.group(2).upper()
            want = "adapter 0 (%s): %s" % (mac, ip)
            for _ in range(180):
                r["kvp"] = ctl("kvp")
                if want in r["kvp"]:
                    break
                time.sleep(1)
            r["status"] = ctl("status")
            r["json"] = ctl("status", "--json")
            # The VM's clock moves a day ahead while the guest runs.
            r["clock"] = ctl("clock", "--offset", "+86400")
            end = time.time() + 300
            while time.time() < end and p.poll() is None:
                text = open(log, errors="replace").read()
                e = epochs(text)
                if e and e[-1] > time.time() + 43200:
                    break
                time.sleep(0.5)
            time.sleep(3)  # a few lines after the step
            e = epochs(open(log, errors="replace").read())
            r["after"] = (e[-1] - (time.time() + 86400)) if e else None
            r["timesync"] = ctl("timesync")
            ctl("kvp-set", "ClockDone", "1")
        rc = p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err, console = ended(out, log, k)
    assert ip, console[-3000:] + err[-2000:]
    # The guest's DHCP address, attributed to the adapter by its MAC, in kvp and status.
    assert "adapter 0 (%s): %s" % (mac, ip) in r.get("kvp", ""), (r, console[-3000:])
    assert r["status"].startswith("ok: running; heartbeat ok (last beat "), r
    assert "guest adapter 0 (%s): %s" % (mac, ip) in r["status"], r
    doc = json.loads(r["json"][len("ok: "):])
    assert doc["state"] == "running" and doc["heartbeat"]["state"] == "ok", doc
    assert doc["heartbeat"]["last_beat_age_s"] < 10, doc
    assert doc["adapters"][0]["mac"] == mac and ip in doc["adapters"][0]["addresses"], doc
    # The clock: the guest followed the VM's clock a day ahead, to within 3 s (one line a second).
    assert "(host UTC +86400 s)" in r["clock"], r
    assert r["after"] is not None and -3 <= r["after"] <= 2, (r, epochs(console)[-10:])
    assert "1 clock steps" in r["timesync"], r
    assert rc == 0, err[-2000:]
