#!/usr/bin/env bash
# Userspace exits per packet of the synthetic network adapter in a guest run: two VMs on one
# --nic pair (tests/guest/netping.c: one answers, one pings). A run of N and one of 2N echoes are
# differenced, so setup cancels out, and the debug console's bytes (one port exit each; the summary's
# numbers vary in width) are not counted; each echo is one frame sent and one
# received on each VM. Both ways of waiting are measured: interrupts (SynIC SINT + LAPIC EOI + HLT,
# as a real client) and polling the ring.
#   usage: bench/netvsp_exits.sh [N]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
BIN=build/gen2vm
ELF=build/guest/netping.elf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run COUNT MODE -> "pinger_exits responder_exits" and the pinger's summary line in $tmp/summary
run() {
	local count=$1 mode=$2 id="bench-$$-$1-$2"
	local hx
	hx=$(printf "%02x:%02x" $((count >> 8)) $((count & 255)))
	"$BIN" run --elf "$ELF" --debugcon stdio --stats --nic "pair=$id,mac=02:$mode:00:00:00:01" \
		>"$tmp/r.out" 2>"$tmp/r.err" &
	local rp=$!
	"$BIN" run --elf "$ELF" --debugcon stdio --stats --nic "pair=$id,mac=02:$mode:$hx:00:02" \
		>"$tmp/p.out" 2>"$tmp/p.err" || { cat "$tmp/p.out" "$tmp/p.err" >&2; exit 1; }
	wait $rp || { cat "$tmp/r.out" "$tmp/r.err" >&2; exit 1; }
	grep -h "replies" "$tmp/p.out" >"$tmp/summary"
	local e
	for f in p r; do
		e=$(grep -o 'exits_[a-z_]*=[0-9]*' "$tmp/$f.err" | awk -F= '{ s += $2 } END { print s + 0 }')
		printf "%s " $((${e:-0} - $(wc -c <"$tmp/$f.out")))
	done
}

for mode in 00 01; do
	name=$([ $mode = 00 ] && echo interrupts || echo polling)
	read -r p1 r1 <<<"$(run "$N" $mode)"
	read -r p2 r2 <<<"$(run $((2 * N)) $mode)"
	echo "netvsp-exits ($name): pinger $p1 -> $p2 exits for $N -> $((2 * N)) echoes:" \
		"$(awk "BEGIN { printf \"%.3f\", ($p2 - $p1) / $N }") per echo;" \
		"responder $r1 -> $r2: $(awk "BEGIN { printf \"%.3f\", ($r2 - $r1) / $N }") per echo"
	sed "s/^/  $name, $((2 * N)) echoes: /" "$tmp/summary"
done
