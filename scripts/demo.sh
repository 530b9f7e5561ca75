#!/usr/bin/env bash
# The demo: Debian's stock cloud kernel (fetched with apt-get) boots on gen2vm with a busybox userspace,
# mounts its synthetic SCSI disk, gets an address from dnsmasq over the synthetic network adapter,
# pings its host and powers off. COM1 is this terminal.
#
# Where this host's KVM cannot run guest user mode (nested PVM), the VM runs inside the nested test
# host (tests/nested); with hardware virtualization it runs here. The network part needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/gen2vm ] || make -j2
mkdir -p build/demo
/usr/bin/python3 - <<'PY'
import os, subprocess, sys
sys.path.insert(0, "tests/integration")
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs
k = fetch_kernel()
init = INIT_PRELUDE + r"""
echo
echo "=== Hello from $(uname -sr) on gen2vm: $(nproc) CPUs, $(grep MemTotal /proc/meminfo | tr -s ' ')"
dmesg | grep -m1 -i "hypervisor detected"
for m in $(cat /modules/order); do insmod /modules/$m; done
for i in $(seq 1 100); do [ -b /dev/sda ] && [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
echo "=== The synthetic SCSI disk (hv_storvsc), mounted:"
mount -t ext4 /dev/sda /mnt && df -h /mnt | tail -1 && cat /mnt/hello.txt
echo "=== The synthetic network adapter (hv_netvsc), DHCP from dnsmasq on the host:"
ip link set lo up; ip link set eth0 up
if udhcpc -i eth0 -q -n -t 10 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1; then
  ip -4 addr show eth0 | grep inet
  ping -c 2 -W 3 10.214.0.1 | grep -E "bytes from|packet loss"
else
  echo "(no DHCP server: the network part of the demo needs root on the host)"
fi
echo "=== Powering off"
umount /mnt
poweroff -f
"""
script = "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add $ip/${mask:-24} dev $interface\nexit 0\n"
make_initramfs("build/demo/initrd.cpio", init, k["modules"], ["hv_vmbus", "hv_storvsc", "sd_mod", "ext4", "hv_netvsc"],
               extra_files={"etc/udhcpc.script": (script.encode(), 0o755)})
os.makedirs("build/demo/disk", exist_ok=True)
open("build/demo/disk/hello.txt", "w").write("This file sits on a disk image on the host.\n")
subprocess.run(["mkfs.ext4", "-q", "-F", "-d", "build/demo/disk", "build/demo/disk.img", "32M"], check=True)
open("build/demo/kernel", "w").write(k["vmlinuz"])
PY
vm=(scripts/demo-vm.sh "$(cat build/demo/kernel)" build/demo/initrd.cpio build/demo/disk.img)
if /usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); from conftest import guest_user_mode_works; sys.exit(0 if guest_user_mode_works() else 1)'; then
	exec "${vm[@]}"
fi
echo "gen2vm demo: this host's KVM cannot run guest user mode (nested PVM): running the VM in the nested test host (tests/nested)" >&2
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/nested"); import nested; nested.fetch()'
exec tests/nested/run --timeout 300 -- "${vm[@]}"
