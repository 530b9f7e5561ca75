"""The UEFI firmware's consoles as a user sees them: its text output on COM1 and the debug console
(through the SimpleTextOutput protocol's UCS-2 to UTF-8 path), and the --uuid setting behind its
SMBIOS tables."""
import json

import pytest

from conftest import have_kvm, run_vm

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")

NO_BOOT = 5


def boot(tmp_path, *extra):
    com1, debug = tmp_path / "com1.txt", tmp_path / "debug.txt"
    code, out, err = run_vm(["run", "--memory", "256M", "--com1", f"file:{com1}", "--debugcon", f"file:{debug}",
                             *extra])
    return code, com1.read_bytes(), debug.read_bytes(), err


def test_firmware_banner_on_both_consoles(tmp_path):
    code, com1, debug, err = boot(tmp_path)
    assert code == NO_BOOT, err
    # The banner is written by ConOut->OutputString: CHAR16 in, UTF-8 out, CR LF as the caller gave it.
    assert b"gen2vm firmware 0.1\r\n" in com1
    assert b"gen2vm firmware 0.1\r\n" in debug
    # The debug console is a log: no terminal control sequences reach it.
    assert b"\x1b" not in debug


def test_only_the_consoles_given_get_output(tmp_path):
    com1 = tmp_path / "com1.txt"
    code, out, err = run_vm(["run", "--memory", "256M", "--com1", f"file:{com1}"])
    assert code == NO_BOOT, err
    assert b"gen2vm firmware 0.1\r\n" in com1.read_bytes()


def test_uuid_option(tmp_path):
    code, _, _, err = boot(tmp_path, "--uuid", "12345678-1234-5678-9abc-def012345678")
    assert code == NO_BOOT, err
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"memory": "256M", "uuid": "12345678-1234-5678-9ABC-DEF012345678"}))
    code, _, err = run_vm(["run", "--config", str(cfg)])
    assert code == NO_BOOT, err


@pytest.mark.parametrize("bad", ["1234", "12345678-1234-5678-9abc-def01234567g", "12345678123456789abcdef012345678"])
def test_bad_uuid_is_refused_with_its_fix(tmp_path, bad):
    code, out, err = run_vm(["run", "--memory", "256M", "--uuid", bad])
    assert code not in (0, NO_BOOT)
    assert f"--uuid '{bad}'" in err and "expected a UUID" in err


# ---- the protocols from inside the VM (tests/efi/con_test.c) ----

import os
import subprocess
import time

from conftest import BUILD, gen2vm_binary

UUID = "12345678-1234-5678-9abc-def012345678"


def con_test_efi():
    path = os.path.join(BUILD, "efi", "con_test.efi")
    if not os.path.exists(path):
        pytest.skip("EFI test applications not built (make efi-apps)")
    return path


def test_protocols_inside_the_vm(tmp_path):
    debug = tmp_path / "debug.txt"
    code, out, err = run_vm(["run", "--memory", "256M", "--debugcon", f"file:{debug}", "--efi", con_test_efi(),
                             "--uuid", UUID])
    log = debug.read_text(errors="replace")
    assert "con_test: 0 failures" in log, log + err
    assert code == 0, err
    for name in ("conout.output", "conin.empty", "rng.getrng.big", "tables.acpi20", "tables.smbios3.uuid",
                 "dptext.path", "host.time.set", "rt.time.set"):
        assert f"con_test: ok {name}" in log
    # OutputString turned the UCS-2 text into UTF-8 on the debug console.
    assert "con_test: caf\u00e9 \u2500\u2500 \u20ac" in log


def test_keys_typed_on_com1_reach_the_efi_application(tmp_path):
    debug = tmp_path / "debug.txt"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.Popen([gen2vm_binary(), "run", "--memory", "256M", "--debugcon", f"file:{debug}",
                          "--com1", "stdio", "--efi", con_test_efi(), "--cmdline", "keys", "--uuid", UUID],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and "press keys" not in (debug.read_text(errors="replace")
                                                              if debug.exists() else ""):
            assert p.poll() is None, p.stderr.read().decode(errors="replace")
            time.sleep(0.05)
        # A letter, Up, F12 as a terminal sends them; then a lone Esc (nothing follows it for a while),
        # U+00E9 in UTF-8 and Enter.
        p.stdin.write(b"a\x1b[A\x1b[24~\x1b")
        p.stdin.flush()
        time.sleep(0.5)
        p.stdin.write("\u00e9\r".encode())
        p.stdin.flush()
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log = debug.read_text(errors="replace")
    assert "con_test: 0 failures" in log, log + err.decode(errors="replace")
    assert log.count("con_test: ok keys.key") == 6
    assert p.returncode == 0
