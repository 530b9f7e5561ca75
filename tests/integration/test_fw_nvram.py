"""The VM's NVRAM file as a user sees it: `gen2vm run --nvram F` makes device boot entries for its drives,
and `gen2vm firmware show|set|reset` reads and edits them."""
import fcntl
import json
import os

import pytest

from conftest import have_kvm, run_vm

NO_BOOT = 5  # the firmware found nothing to boot


def fw(*args):
    return run_vm(["firmware"] + list(args), timeout=60)


def show(nv):
    rc, out, err = fw("show", "--nvram", nv, "--json", "--variables")
    assert rc == 0, err
    return json.loads(out)


def image(tmp_path, name, size=1 << 20):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)
    return str(p)


def boot(nv, *drives):
    rc, out, err = run_vm(["run", "--nvram", nv, "--memory", "256M"] + list(drives), timeout=120)
    assert rc == NO_BOOT, (rc, out, err)
    return err


needs_kvm = pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")


@needs_kvm
def test_run_creates_device_entries_and_appends_new_drives(tmp_path):
    nv = str(tmp_path / "vm.nvram")
    d0 = image(tmp_path, "d0.img")
    boot(nv, "--disk", d0, "--dvd", "empty")
    s = show(nv)
    entries = s["entries"]
    assert [(e["type"], e["drive"], e["lun"]) for e in entries] == [("device", "disk", 0), ("device", "dvd", 1)]
    assert entries[0]["description"] == "EFI SCSI Device (controller 0, LUN 0)"
    assert entries[1]["description"] == "EFI SCSI DVD (controller 0, LUN 1)"
    assert all(e["active"] and e["in_boot_order"] for e in entries)
    assert entries[0]["device_path"].upper().startswith("VENHW(9B17E5A2-0891-42DD-B653-80B5C22809BA,")
    assert entries[0]["device_path"].endswith("/Scsi(0x0,0x0)")
    uuid = s["system_uuid"]
    # The firmware's runtime services reached the host's store: it set the language variables.
    names = {v["name"] for v in s["variables"]}
    assert {"PlatformLang", "Lang", "BootOrder", "Boot0000", "Boot0001"} <= names, names

    # The same drives again: nothing changes. One more disk: it goes to the bottom.
    boot(nv, "--disk", d0, "--dvd", "empty")
    assert [e["number"] for e in show(nv)["entries"]] == ["0000", "0001"]
    d1 = image(tmp_path, "d1.img")
    boot(nv, "--disk", d0, "--dvd", "empty", "--disk", d1 + ",lun=5")
    s = show(nv)
    assert [(e["number"], e["drive"], e["lun"]) for e in s["entries"]] == [
        ("0000", "disk", 0), ("0001", "dvd", 1), ("0002", "disk", 5)]
    assert s["system_uuid"] == uuid  # the VM keeps its identity

    # The user's order survives a restart; a drive that is gone loses its entry.
    rc, out, err = fw("set", "--nvram", nv, "--first-boot-device", "disk:0:5")
    assert rc == 0, err
    boot(nv, "--disk", d0, "--disk", d1 + ",lun=5")
    assert [(e["number"], e["lun"]) for e in show(nv)["entries"]] == [("0002", 5), ("0000", 0)]


@needs_kvm
def test_second_vm_on_the_same_file_is_refused(tmp_path):
    nv = str(tmp_path / "vm.nvram")
    fw("reset", "--nvram", nv)
    with open(nv + ".lock", "a+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running gen2vm holds it
        rc, out, err = run_vm(["run", "--nvram", nv, "--memory", "256M"], timeout=60)
        assert rc != 0 and f"in use by pid {os.getpid()}" in err, err
        rc, out, err = fw("set", "--nvram", nv, "--pause-after-boot-failure", "on")
        assert rc == 2 and "in use by pid" in err, err  # in use: nothing changed (README "Exit codes")
        # reading is fine while a VM runs
        assert fw("show", "--nvram", nv)[0] == 0


@needs_kvm
def test_corrupt_file_is_refused_until_reset(tmp_path):
    nv = str(tmp_path / "vm.nvram")
    boot(nv, "--dvd", "empty")
    data = bytearray(open(nv, "rb").read())
    data[60] ^= 0xFF
    open(nv, "wb").write(bytes(data))
    rc, out, err = run_vm(["run", "--nvram", nv, "--memory", "256M"], timeout=60)
    assert rc != 0 and rc != NO_BOOT
    assert nv in err and f"gen2vm firmware reset --nvram {nv}" in err, err
    assert open(nv, "rb").read() == bytes(data)  # left alone
    rc, out, err = fw("show", "--nvram", nv)
    assert rc == 2 and "corrupt" in err and "firmware reset" in err
    assert fw("reset", "--nvram", nv)[0] == 0
    assert show(nv)["entries"] == []
    boot(nv, "--dvd", "empty")
    assert [e["drive"] for e in show(nv)["entries"]] == ["dvd"]


def _make_store(tmp_path):
    """A store with device entries and two guest-made file entries, built without a VM: the unit
    tests cover the entry editing; here the CLI's parsing, output and exit codes."""
    nv = str(tmp_path / "cli.nvram")
    assert fw("reset", "--nvram", nv)[0] == 0
    return nv


def test_cli_round_trips(tmp_path):
    nv = _make_store(tmp_path)
    s = show(nv)
    assert s["entries"] == [] and s["pause_after_boot_failure"] is False and s["timeout"] is None
    rc, out, err = fw("set", "--nvram", nv, "--pause-after-boot-failure", "on")
    assert rc == 0, err
    assert show(nv)["pause_after_boot_failure"] is True
    rc, out, err = fw("show", "--nvram", nv)
    assert rc == 0 and "PauseAfterBootFailure: on" in out and "(none" in out
    assert fw("set", "--nvram", nv, "--pause-after-boot-failure", "off")[0] == 0
    assert show(nv)["pause_after_boot_failure"] is False
    # The UEFI Timeout: how long the firmware's boot menu prompt waits at every start.
    assert fw("set", "--nvram", nv, "--timeout", "5")[0] == 0
    assert show(nv)["timeout"] == 5
    assert "Timeout: 5 s" in fw("show", "--nvram", nv)[1]
    assert fw("set", "--nvram", nv, "--timeout", "0")[0] == 0
    assert show(nv)["timeout"] == 0
    # nothing to move: a clear error naming the file, exit code 2 (a request the input cannot satisfy)
    rc, out, err = fw("set", "--nvram", nv, "--first-boot-device", "dvd")
    assert rc == 2 and nv in err and "no DVD boot entry" in err
    rc, out, err = fw("set", "--nvram", nv, "--boot-order", "0001")
    assert rc == 2 and "no boot entry 0001" in err
    # Hyper-V's -NetworkBootPreferredProtocol: IPv4 unless set; its names in either case
    assert show(nv)["network_boot_preferred_protocol"] == "ipv4"
    assert fw("set", "--nvram", nv, "--network-boot-preferred-protocol", "IPv6")[0] == 0
    assert show(nv)["network_boot_preferred_protocol"] == "ipv6"
    rc, out, err = fw("show", "--nvram", nv)
    assert rc == 0 and "NetworkBootPreferredProtocol: IPv6" in out
    assert fw("set", "--nvram", nv, "--network-boot-preferred-protocol", "ipv4")[0] == 0
    assert show(nv)["network_boot_preferred_protocol"] == "ipv4"


def test_cli_usage_errors(tmp_path):
    nv = _make_store(tmp_path)
    for args, needle in [
        (["show"], "--nvram FILE is required"),
        (["set", "--nvram", nv], "nothing to set"),
        (["set", "--nvram", nv, "--first-boot-device", "floppy"], None),
        (["set", "--nvram", nv, "--boot-order", "zz"], "hexadecimal"),
        (["set", "--nvram", nv, "--pause-after-boot-failure", "maybe"], "expected on or off"),
        (["set", "--nvram", nv, "--timeout", "-1"], "expected seconds from 0 to 65535"),
        (["set", "--nvram", nv, "--timeout", "65536"], "expected seconds from 0 to 65535"),
        (["set", "--nvram", nv, "--timeout", "soon"], "expected seconds from 0 to 65535"),
        (["show", "--nvram", nv, "--timeout", "3"], "option not valid here"),
        (["set", "--nvram", nv, "--network-boot-preferred-protocol", "ipv5"], "expected ipv4 or ipv6"),
        (["show", "--nvram", nv, "--network-boot-preferred-protocol", "ipv6"], "option not valid here"),
        (["frobnicate", "--nvram", nv], "unknown command"),
        (["show", "--nvram", nv, "--bogus"], "unknown or incomplete option"),
    ]:
        rc, out, err = fw(*args)
        if needle is None:
            # bad syntax is a usage error like --boot-order's (it was 1 here, 2 there)
            assert rc == 2 and "expected dvd, disk:CONTROLLER:LUN" in err, (args, err)
        else:
            assert rc == 2 and needle in err, (args, err)
    missing = str(tmp_path / "absent.nvram")
    rc, out, err = fw("show", "--nvram", missing)
    assert rc == 2 and missing in err and "gen2vm run --nvram" in err
    rc, out, err = fw("--help")
    assert rc == 0 and "--first-boot-device" in out


@needs_kvm
def test_hot_add_and_remove_update_boot_entries(tmp_path):
    """A drive added through the control socket gets a device entry at the bottom of the boot order;
    removed, it loses it. The VM is held in the firmware by PauseAfterBootFailure (the first of two
    blank disks fails to boot and the boot manager waits for "continue" before the second)."""
    import subprocess
    import time
    nv = str(tmp_path / "vm.nvram")
    sock = str(tmp_path / "vm.sock")
    blank = image(tmp_path, "blank.img")
    blank2 = image(tmp_path, "blank2.img")
    extra = image(tmp_path, "extra.img")
    assert fw("reset", "--nvram", nv)[0] == 0
    assert fw("set", "--nvram", nv, "--pause-after-boot-failure", "on")[0] == 0
    log = open(tmp_path / "vm.log", "w+")
    from conftest import gen2vm_binary
    p = subprocess.Popen([gen2vm_binary(), "run", "-v", "--memory", "256M", "--nvram", nv, "--control", sock,
                          "--disk", blank, "--disk", blank2], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=log)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if "paused after a boot failure" in open(tmp_path / "vm.log").read():
                break
            time.sleep(0.2)
        else:
            pytest.fail("the firmware did not pause after the first boot failure:\n" + open(tmp_path / "vm.log").read())
        rc, out, err = run_vm(["control", sock, "disk-add", extra], timeout=30)
        assert rc == 0 and "controller 0 lun 2" in out, (out, err)
        assert [(e["number"], e["lun"]) for e in show(nv)["entries"]] == [("0000", 0), ("0001", 1), ("0002", 2)]
        rc, out, err = run_vm(["control", sock, "dvd-add", "empty", "lun=7"], timeout=30)
        assert rc == 0, (out, err)
        assert [(e["drive"], e["lun"]) for e in show(nv)["entries"]] == [("disk", 0), ("disk", 1), ("disk", 2),
                                                                         ("dvd", 7)]
        rc, out, err = run_vm(["control", sock, "disk-remove", "lun=2"], timeout=30)
        assert rc == 0, (out, err)
        assert [(e["number"], e["lun"]) for e in show(nv)["entries"]] == [("0000", 0), ("0001", 1), ("0003", 7)]
        run_vm(["control", sock, "stop"], timeout=30)
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cli_secure_boot_templates(tmp_path):
    """Secure Boot's setting as `gen2vm firmware` shows and sets it: Hyper-V's template names, the
    template's keys enrolled in the file (db and dbx in the image security database GUID, time-based
    authenticated attributes), kept by `firmware reset`."""
    nv = _make_store(tmp_path)
    s = show(nv)
    # a fresh store: off, Hyper-V's default template, its keys enrolled
    assert (s["secure_boot"], s["secure_boot_template"], s["secure_boot_keys_enrolled"]) == (
        False, "MicrosoftWindows", True)
    rc, out, err = fw("show", "--nvram", nv)
    assert "Secure Boot: off, template MicrosoftWindows" in out, out

    def db(s, name="db"):
        return [v for v in s["variables"] if v["name"] == name][0]
    assert db(s)["guid"] == "d719b2cb-3d3a-4596-a3bc-dad00e67656f" and db(s)["attributes"] == 0x27
    windows_db = db(s)["size"]

    rc, out, err = fw("set", "--nvram", nv, "--secure-boot", "on", "--secure-boot-template",
                      "MicrosoftUEFICertificateAuthority")
    assert rc == 0, err
    s = show(nv)
    assert (s["secure_boot"], s["secure_boot_template"]) == (True, "MicrosoftUEFICertificateAuthority")
    assert db(s)["size"] > windows_db  # the UEFI CA beside the Windows PCA
    assert {v["name"] for v in s["variables"]} >= {"PK", "KEK", "db", "dbx"}

    # reset: a fresh store with the same setting and its template's keys
    assert fw("reset", "--nvram", nv)[0] == 0
    s = show(nv)
    assert (s["secure_boot"], s["secure_boot_template"], s["secure_boot_keys_enrolled"]) == (
        True, "MicrosoftUEFICertificateAuthority", True)

    # none: no keys at all (Setup Mode), said so
    assert fw("set", "--nvram", nv, "--secure-boot-template", "none")[0] == 0
    s = show(nv)
    assert s["secure_boot_keys_enrolled"] is False
    assert not {"PK", "KEK", "db", "dbx"} & {v["name"] for v in s["variables"]}
    rc, out, err = fw("show", "--nvram", nv)
    assert "Secure Boot: on, template none (no platform key enrolled: Setup Mode" in out, out
    assert fw("set", "--nvram", nv, "--secure-boot", "off")[0] == 0
    assert show(nv)["secure_boot"] is False

    for args, needle in [
        (["--secure-boot", "maybe"], "--secure-boot 'maybe': expected on or off"),
        (["--secure-boot-template", "Windows"], "expected MicrosoftWindows, MicrosoftUEFICertificateAuthority"),
    ]:
        rc, out, err = fw("set", "--nvram", nv, *args)
        assert rc == 2 and needle in err, (args, err)
    rc, out, err = fw("show", "--nvram", nv, "--secure-boot", "on")
    assert rc == 2 and "option not valid here" in err


def test_secure_boot_keys_are_microsofts(tmp_path):
    """The templates' certificates are Microsoft's public ones, as Debian's ovmf package enrols them;
    the checked-in generated file matches a fresh run of its generator where that package is installed."""
    import subprocess
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    fd = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    if not os.path.exists(fd):
        pytest.skip("Debian's ovmf is not installed (scripts/deps.sh test)")
    r = subprocess.run([os.path.join(root, "scripts", "sb_keys_gen.py"), "--check"], capture_output=True)
    assert r.returncode == 0, "src/platform/sb_keys_gen.c differs from scripts/sb_keys_gen.py's output"
    src = open(os.path.join(root, "src", "platform", "sb_keys_gen.c")).read()
    for cn in ["Microsoft Corporation KEK CA 2011", "Microsoft Windows Production PCA 2011",
               "Microsoft Corporation UEFI CA 2011"]:
        assert cn in src
