#!/usr/bin/env bash
# Boot benchmark (see bench/boot.py): in the nested test host where this host's KVM cannot run guest
# user mode, directly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if /usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); from conftest import guest_user_mode_works; sys.exit(0 if guest_user_mode_works() else 1)'; then
	exec /usr/bin/python3 bench/boot.py
fi
echo "bench/boot: this host's KVM cannot run guest user mode: running in the nested test host" >&2
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); sys.path.insert(0, "tests/nested"); import linux_guest, nested; linux_guest.fetch_kernel(); nested.fetch()'
exec tests/nested/run --timeout 3000 -- /usr/bin/python3 bench/boot.py
