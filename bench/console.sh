#!/usr/bin/env bash
# Console benchmark (see bench/console.py): in the nested test host where this host's KVM cannot run
# guest user mode (or there is no KVM), directly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -c /dev/kvm ] && /usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); from conftest import guest_user_mode_works; sys.exit(0 if guest_user_mode_works() else 1)'; then
	exec /usr/bin/python3 bench/console.py
fi
echo "bench/console: this host's KVM cannot run guest user mode: running in the nested test host" >&2
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "tests/integration"); sys.path.insert(0, "tests/nested"); import efi_images, nested; efi_images.fetch_efi_binaries(); nested.fetch()'
exec tests/nested/run --timeout 3000 -- /usr/bin/python3 bench/console.py
