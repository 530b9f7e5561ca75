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
