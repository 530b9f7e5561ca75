#!/usr/bin/env bash
# Firmware benchmark (see bench/firmware.py).
exec /usr/bin/python3 "$(dirname "$0")/firmware.py"
