#!/usr/bin/env bash
# Boots Debian's stock cloud kernel (fetched with apt-get) with a busybox initramfs on gen2vm, with
# COM1 on this terminal, and powers off. Takes minutes on hosts whose KVM emulates guest kernel mode.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/gen2vm ] || make -j2
mkdir -p build/demo
/usr/bin/python3 - <<'PY'
import sys
sys.path.insert(0, "tests/integration")
from linux_guest import INIT_PRELUDE, fetch_kernel, make_initramfs
k = fetch_kernel()
init = INIT_PRELUDE + """
echo
echo "Hello from $(uname -sr) on gen2vm: $(grep -c ^processor /proc/cpuinfo) CPU(s), $(grep MemTotal /proc/meminfo)"
dmesg | grep -i "hypervisor detected"
poweroff -f
"""
make_initramfs("build/demo/initrd.cpio", init)
open("build/demo/kernel", "w").write(k["vmlinuz"])
PY
cmdline="console=ttyS0 panic=-1 quiet"
extra=()
if [ -e /sys/module/kvm_pvm ]; then
	# This host's KVM emulates guest kernel mode (README: "Hosts whose KVM emulates guest kernel mode"):
	# skip minutes of emulated work, keep the kernel off SIMD, dilate guest time. Its userspace cannot
	# make system calls there, so the demo ends when init starts.
	cmdline="$cmdline init_on_alloc=0 cryptomgr.notests mitigations=off clearcpuid=ssse3,avx,aes,pclmulqdq,sha_ni"
	extra=(--clock-slowdown 8 --no-reboot)
	echo "gen2vm demo: PVM host detected; the kernel boots to init, whose first system call this host cannot run" >&2
fi
exec build/gen2vm run --memory 256M --cpus "${CPUS:-1}" --kernel "$(cat build/demo/kernel)" \
	--initrd build/demo/initrd.cpio --cmdline "$cmdline" --com1 stdio --stats "${extra[@]}"
