#!/usr/bin/env bash
# Exits to userspace per storvsp request in steady state, counted exactly by the guest itself
# (tests/guest/storvsc_bench.c brackets each run of 2000 4 KiB SRBs with reads of the test device's
# exit counter). Target: 0. us_per_request is the guest's own time, dominated by instruction
# emulation on PVM hosts; it is not a throughput figure (bench/storvsp is).
cd "$(dirname "$0")/.."
img=$(mktemp /tmp/g2vm-bench-exits-XXXXXX)
trap 'rm -f "$img"' EXIT
truncate -s 64M "$img"
build/gen2vm run --elf build/guest/storvsc_bench.elf --debugcon stdio --disk "$img" | grep storvsc-bench
