#!/usr/bin/env bash
# Boot benchmark (see bench/boot.py).
exec /usr/bin/python3 "$(dirname "$0")/boot.py"
