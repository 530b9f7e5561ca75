"""The firmware's boot services as an EFI application sees them: tests/efi/svc_test.efi runs inside
the VM (started from memory with --efi) and reports one PASS/FAIL line per service group on the
debug console, then its failure count through the debug exit port."""
import os
import re
import zlib

import pytest

from conftest import BUILD, have_kvm, run_vm

pytestmark = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")

SVC_TEST = os.path.join(BUILD, "efi", "svc_test.efi")
HELLO = os.path.join(BUILD, "efi", "hello.efi")

# Every check svc_test.c runs (the runtime services one may be a SKIP while they are missing).
CHECKS = ["system_table", "boot_services_table", "memory_map", "pages_and_map_key", "pool", "protocols",
          "protocol_notify", "device_path_and_controllers", "tpl_notify_order", "check_and_wait_events",
          "event_groups", "timers", "load_start_exit", "load_bad_images", "load_from_device_path",
          "load_from_file_system", "own_loaded_image", "initrd_load_file2", "crc_copy_set_misc",
          "config_tables", "high_memory", "exit_boot_services"]


def _need(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} not built (make efi-apps)")


def _run_svc_test(tmp_path, memory="256M", extra=()):
    _need(SVC_TEST)
    log = tmp_path / "debugcon.log"
    rc, out, err = run_vm(["run", "--memory", memory, "--debugcon", f"file:{log}", "--efi", SVC_TEST,
                           "--cmdline", "svc-test \u00e9", "--stats", "-v", *extra], timeout=300)
    text = log.read_text(errors="replace") if log.exists() else ""
    return rc, text, err


def _assert_all_passed(rc, text, err):
    failed = [l for l in text.splitlines() if l.startswith("FAIL ")]
    assert not failed, "\n".join(failed) + "\n" + err
    for name in CHECKS:
        assert f"PASS {name}" in text, f"check {name} did not pass:\n{text}\n{err}"
    rt = "PASS runtime_services" in text or "SKIP runtime_services" in text
    assert rt, text
    m = re.search(r"svc_test: (\d+) passed, (\d+) failed", text)
    assert m and m.group(2) == "0", text
    assert rc == 0, f"exit code {rc}\n{err}"
    assert "called ExitBootServices" in err, err


def test_boot_services_inside_the_vm(tmp_path):
    rc, text, err = _run_svc_test(tmp_path)
    _assert_all_passed(rc, text, err)
    # The firmware reports the image's start (the benchmarks' end point) before running it.
    assert "firmware: starting MemoryMapped(" in err, err


def test_boot_services_with_ram_above_4g(tmp_path):
    """5 GiB: RAM above 4 GiB is mapped by the firmware and handed out like any other."""
    rc, text, err = _run_svc_test(tmp_path, memory="5G")
    _assert_all_passed(rc, text, err)
    assert "above 4 GiB: wrote and read" in text, text


def test_initrd_is_offered_through_load_file2(tmp_path):
    """--initrd reaches the --efi image as Linux's EFI stub asks for it (LoadFile2, initrd media path)."""
    data = os.urandom(20000)
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(data)
    rc, text, err = _run_svc_test(tmp_path, extra=("--initrd", str(initrd)))
    _assert_all_passed(rc, text, err)
    assert f"svc_test: initrd {len(data)} bytes, crc32 0x{zlib.crc32(data):08x}" in text, text


def test_hello_returns_to_the_firmware(tmp_path):
    _need(HELLO)
    log = tmp_path / "debugcon.log"
    rc, out, err = run_vm(["run", "--memory", "256M", "--debugcon", f"file:{log}", "--efi", HELLO, "-v"])
    text = log.read_text(errors="replace")
    assert "hello from EFI" in text, text + err
    # hello returns EFI_SUCCESS; the boot manager finds nothing else to boot (exit code 5).
    assert "the image given with --efi: it returned EFI_SUCCESS" in text, text
    assert rc == 5, err


def test_a_fault_on_a_bad_stack_is_reported_not_a_triple_fault(tmp_path):
    """An image whose stack pointer is unmapped faults, and delivering that fault faults again: the double
    fault has a stack of its own, so the firmware reports it with the image's registers."""
    _need(HELLO)
    log = tmp_path / "debugcon.log"
    rc, out, err = run_vm(["run", "--memory", "256M", "--debugcon", f"file:{log}", "--efi", HELLO,
                           "--cmdline", "badstack"])
    assert "pushing onto an unmapped stack" in log.read_text(errors="replace"), err
    assert "triple fault" not in err, err
    assert re.search(r"firmware fault: CPU exception 8 .*RSP 0x4000000000", err), err
    assert rc == 4, err


def test_a_corrupt_image_is_a_load_error_not_a_fault(tmp_path):
    _need(HELLO)
    data = bytearray(open(HELLO, "rb").read())
    pe = int.from_bytes(data[60:64], "little")
    data[pe + 4 + 20 + 16:pe + 4 + 20 + 20] = b"\xff\xff\xff\x7f"  # entry point outside the image
    bad = tmp_path / "bad.efi"
    bad.write_bytes(bytes(data))
    log = tmp_path / "debugcon.log"
    rc, out, err = run_vm(["run", "--memory", "256M", "--debugcon", f"file:{log}", "--efi", str(bad)])
    text = log.read_text(errors="replace")
    assert "does not load" in text and "0x8000000000000001" in text, text  # EFI_LOAD_ERROR
    assert rc == 5, err  # nothing booted, no firmware fault (that would be 4)
