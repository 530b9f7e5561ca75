"""What a user sees from `gen2vm` on bad input: one clear line naming the problem, exit code 2."""
import json
import os

from conftest import run_vm


def one_line_error(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_help():
    rc, out, _ = run_vm(["--help"])
    assert rc == 0 and "run" in out
    rc, out, _ = run_vm(["run", "--help"])
    assert rc == 0 and "--memory SIZE" in out and "Exit codes" in out
    rc, out, _ = run_vm(["help", "run"])
    assert rc == 0 and "--kernel PATH" in out


def test_unknown_command_and_option():
    rc, _, err = run_vm(["frobnicate"])
    assert rc == 2 and "unknown command 'frobnicate'" in one_line_error(err)
    rc, _, err = run_vm(["run", "--kernel", "/bin/true", "--frob"])
    assert rc == 2 and "unknown option '--frob'" in one_line_error(err)


def test_missing_kernel_file():
    rc, _, err = run_vm(["run", "--kernel", "/nonexistent/vmlinuz"])
    assert rc == 2
    assert "/nonexistent/vmlinuz: No such file or directory" in one_line_error(err)


def test_not_a_kernel(tmp_path):
    from conftest import have_kvm
    import pytest
    if not have_kvm():
        pytest.skip("needs /dev/kvm")  # the kernel is read once the VM exists
    f = tmp_path / "notakernel"
    f.write_bytes(b"hello world" * 100)
    rc, _, err = run_vm(["run", "--kernel", str(f)])
    assert rc == 2, err
    assert "not a Linux kernel" in one_line_error(err)


def test_memory_larger_than_host():
    rc, _, err = run_vm(["run", "--kernel", "/bin/true", "--memory", "64T"])
    assert rc == 2 and "more than this host's" in one_line_error(err)


def test_malformed_json(tmp_path):
    f = tmp_path / "vm.json"
    f.write_text('{"memory": "512M", "cpus": ')
    rc, _, err = run_vm(["run", "--config", str(f)])
    assert rc == 2 and "malformed JSON" in one_line_error(err)
    f.write_text(json.dumps({"memory": "512M", "kernal": "/boot/vmlinuz"}))
    rc, _, err = run_vm(["run", "--config", str(f)])
    assert rc == 2 and 'unknown setting "kernal"' in one_line_error(err)


def test_json_config_runs_a_guest(tmp_path):
    from conftest import guest_elf, have_kvm
    import pytest
    if not have_kvm():
        pytest.skip("needs /dev/kvm")
    f = tmp_path / "vm.json"
    f.write_text(json.dumps({"memory": "64M", "cpus": 2, "elf": guest_elf("smp"), "debugcon": "stdio"}))
    rc, out, err = run_vm(["run", "--config", str(f)])
    assert rc == 0, err
    assert "smp: 2 cpus up" in out
