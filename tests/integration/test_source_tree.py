"""The tree's layering rules (README, "Architecture"), checked on the sources: configuration flows
one way (platform/ never includes cli/), devices sit below the machine (devices/ include neither
platform/ nor cli/), only src/kvm/ includes linux/kvm.h, and every VMBus device class the registry
lists is defined in src/devices/."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")


def includes(subdir):
    for dirpath, _, files in os.walk(os.path.join(SRC, subdir)):
        for f in files:
            if f.endswith((".c", ".h")):
                path = os.path.join(dirpath, f)
                for n, line in enumerate(open(path, encoding="utf-8"), 1):
                    m = re.match(r'\s*#\s*include\s*[<"]([^>"]+)[>"]', line)
                    if m:
                        yield os.path.relpath(path, ROOT), n, m.group(1)


def test_platform_never_includes_cli():
    bad = ["%s:%d %s" % i for i in includes("platform") if i[2].startswith("cli/")]
    assert not bad, bad


def test_devices_include_neither_platform_nor_cli():
    bad = ["%s:%d %s" % i for i in includes("devices") if i[2].startswith(("platform/", "cli/"))]
    assert not bad, bad


def test_only_the_kvm_layer_includes_linux_kvm_h():
    bad = ["%s:%d" % i[:2] for i in includes("") if i[2] == "linux/kvm.h" and not i[0].startswith("src/kvm/")]
    assert not bad, bad


def test_every_registered_device_class_is_defined_in_devices():
    table = open(os.path.join(SRC, "devices", "vmdev.c"), encoding="utf-8").read()
    names = re.findall(r"^\t&(\w+_class),$", table, re.M)
    assert "reverse_class" in names and "storvsp_class" in names, names
    defined = {}
    for f in os.listdir(os.path.join(SRC, "devices")):
        if f.endswith(".c"):
            for name in re.findall(r"^const struct vmdev_class (\w+) = \{", open(os.path.join(SRC, "devices", f)).read(), re.M):
                defined[name] = f
    assert set(names) == set(defined), (names, defined)
