#!/usr/bin/env bash
# Guest-measured cost of HvSignalEvent (ioeventfd doorbell) vs a plain port exit (tests/guest/signal_bench.c).
cd "$(dirname "$0")/.."
build/gen2vm run --elf build/guest/signal_bench.elf --debugcon stdio --test-devices | grep signal-bench
