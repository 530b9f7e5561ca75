#!/usr/bin/env bash
# Runs the demo VM (scripts/demo.sh prepares it): KERNEL INITRD DISK. As root, the adapter sits on a tap
# in a network namespace of its own, where dnsmasq serves DHCP; otherwise the VM has no network.
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=$1 initrd=$2 disk=$3
args=(run --memory 512M --cpus 2 --kernel "$kernel" --initrd "$initrd" --cmdline "console=ttyS0 quiet panic=-1"
      --com1 stdio --disk "$disk")
ns=""
if [ "$(id -u)" = 0 ] && command -v dnsmasq >/dev/null; then
	ns=g2demo$$; tap=g2dtap$$
	cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$ns" 2>/dev/null || true; }
	trap cleanup EXIT
	ip netns add "$ns"
	ip -n "$ns" tuntap add "$tap" mode tap multi_queue
	ip -n "$ns" addr add 10.214.0.1/24 dev "$tap"
	ip -n "$ns" link set "$tap" up
	ip netns exec "$ns" dnsmasq --port=0 --interface="$tap" --bind-interfaces --dhcp-range=10.214.0.10,10.214.0.50,1h \
		--dhcp-leasefile=/dev/null --conf-file=/dev/null --pid-file= --log-facility=/dev/null
	args+=(--nic "tap=$tap")
	ip netns exec "$ns" build/gen2vm "${args[@]}"
else
	build/gen2vm "${args[@]}"
fi
