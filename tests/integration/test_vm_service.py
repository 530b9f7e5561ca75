"""gen2vmd (`gen2vm service run`): the host service that supervises the VM store's VMs and serves
their JSON API on a Unix socket. Everything but a booting guest runs here without /dev/kvm: a VM
that "runs" is a small separate process (FAKE_VM) that holds the VM's run lock with its own pid in
it, as the gen2vm run process does, and answers on its control socket; it ends on shutdown or stop.
The real-guest test (a VHDX with systemd-boot, through curl and the event stream) needs /dev/kvm
and a guest user mode that works (the nested test host)."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import gen2vm_binary, have_kvm, run

FAKE_VM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_vm.py")


def env_direct(direct=False):
    e = dict(os.environ)  # GEN2VMD_HEARTBEAT_CHECK_S passes through
    e.pop("GEN2VM_STORE", None)
    e.pop("GEN2VM_DIRECT", None)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    if direct:
        e["GEN2VM_DIRECT"] = "1"
    return e


def vm(store, *args, direct=False, timeout=200, cwd=None):
    return subprocess.run([gen2vm_binary(), "vm", "--store", str(store)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=env_direct(direct),
                          stdin=subprocess.DEVNULL, cwd=cwd)


def ok(store, *args, **kw):
    r = vm(store, *args, **kw)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def group_alive(pgid):
    """Whether a process of group pgid still runs (zombies do not count: they hold nothing, and
    a container's init may never reap them)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class Service:
    def __init__(self, store, tmp_path, *extra):
        self.store = str(store)
        self.sock = os.path.join(self.store, "gen2vmd.sock")
        self.log = open(str(tmp_path / ("gen2vmd-%d.log" % time.monotonic_ns())), "w+")
        self.p = subprocess.Popen([gen2vm_binary(), "service", "run", "--store", self.store, *extra], stdout=self.log,
                                  stderr=subprocess.STDOUT, env=env_direct(), start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.answers():
                return
            assert self.p.poll() is None, self.text()
            time.sleep(0.02)
        raise AssertionError("the service did not answer: " + self.text())

    def answers(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            s.close()
            return True
        except OSError:
            return False

    def text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_text(self, needle, timeout=20):
        """The service's output once it holds needle (it answers on its socket before it has said
        everything about it): the output at the deadline otherwise."""
        deadline = time.time() + timeout
        while needle not in self.text() and time.time() < deadline:
            time.sleep(0.05)
        return self.text()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            assert self.p.wait(20) == 0, self.text()

    def kill9(self):
        # The whole group: the service and the `gen2vm vm` operations it runs (VMs are in their own sessions).
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait(20)
        deadline = time.time() + 10  # until the group is gone, as systemd waits for a unit's cgroup
        while time.time() < deadline and group_alive(self.p.pid):
            time.sleep(0.01)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def service(store, tmp_path):
    os.makedirs(str(store), exist_ok=True)
    s = Service(store, tmp_path)
    yield s
    s.stop()


def curl(sock, method, path, body=None):
    args = ["curl", "-sS", "--path-as-is", "--max-time", "200", "--unix-socket", sock, "-X", method, "-w", "\n%{http_code}",
            "http://gen2vmd" + path]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary",
                 body if isinstance(body, str) else json.dumps(body)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=220)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


def api_error(sock, method, path, body, status, code, says=None):
    st, j = curl(sock, method, path, body)
    assert st == status and j["error"]["code"] == code, (method, path, st, j)
    assert j["error"]["message"] and "\n" not in j["error"]["message"], j
    if says:
        assert says in j["error"]["message"], j
    return j


def fake_vm(store, name):
    p = subprocess.Popen([sys.executable, FAKE_VM, os.path.join(str(store), name)], stdout=subprocess.PIPE,
                         text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "ready"
    return p


class Events:
    """A client of GET /v1/events: newline-delimited JSON, kept open."""

    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock)
        self.s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.buf = b""
        self.head = False

    def next(self, timeout=30):
        deadline = time.time() + timeout
        while True:
            if not self.head and b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                assert head.startswith(b"HTTP/1.1 200"), head
                self.head = True
            if self.head and b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return json.loads(line)
            left = deadline - time.time()
            assert left > 0, "no event within %d s (got %r)" % (timeout, self.buf)
            self.s.settimeout(left)
            d = self.s.recv(65536)
            assert d, "the event stream ended"
            self.buf += d

    def until(self, vm_name, **want):
        seen = []
        while True:
            e = self.next()
            seen.append(e)
            if e["vm"] == vm_name and all(e.get(k) == v for k, v in want.items()):
                return seen

    def close(self):
        self.s.close()


def test_help_lists_service():
    r = run(gen2vm_binary(), "--help")
    assert "  service " in r.stdout, r.stdout
    r = run(gen2vm_binary(), "service", "--help")
    assert "gen2vm service run" in r.stdout and "stop-vms" in r.stdout


def test_socket_is_owner_and_group_only(service):
    st = os.stat(service.sock)
    assert st.st_mode & 0o777 == 0o660, oct(st.st_mode)


def as_user(uid, groups):
    def drop():
        os.setgroups(groups)
        os.setgid(groups[0] if groups else uid)
        os.setuid(uid)
    return drop


def test_group_reaches_the_socket_and_nothing_else(tmp_path):
    """--group: the socket is 0660 GROUP, the store's root 0710 GROUP (entered, not listed), the VMs'
    directories stay 0700. As root the test also connects as a member and as a stranger."""
    import grp
    root = os.geteuid() == 0
    group = grp.getgrgid(os.getgid()).gr_name if not root else "daemon"
    gid = grp.getgrnam(group).gr_gid
    base = tempfile.mkdtemp(prefix="g2v-group-")  # under /tmp: searchable to the way down
    os.chmod(base, 0o711)
    store = os.path.join(base, "store")
    try:
        ok(store, "new", "priv", "--memory", "64M", direct=True)
        s = Service(store, tmp_path, "--group", group)
        try:
            # the socket and the store are the group's from the moment the socket answers
            st = os.stat(s.sock)
            assert (st.st_mode & 0o777, st.st_gid) == (0o660, gid), (oct(st.st_mode), st.st_gid)
            st = os.stat(store)
            assert (st.st_mode & 0o777, st.st_gid) == (0o710, gid), (oct(st.st_mode), st.st_gid)
            assert os.stat(os.path.join(store, "priv")).st_mode & 0o777 == 0o700
            if root:
                nobody = 65534
                probe = ("import socket,sys; c=socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); "
                         "c.sendall(b'GET /v1/vms HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); print(c.recv(12).decode())")
                member = subprocess.run([sys.executable, "-c", probe, s.sock], capture_output=True, text=True,
                                        preexec_fn=as_user(nobody, [gid]), timeout=30)
                assert member.stdout.startswith("HTTP/1.1 200"), (member.stdout, member.stderr)
                stranger = subprocess.run([sys.executable, "-c", probe, s.sock], capture_output=True, text=True,
                                          preexec_fn=as_user(nobody, [nobody]), timeout=30)
                assert "Permission denied" in stranger.stderr, stranger.stderr
                lister = subprocess.run(["ls", store], capture_output=True, text=True,
                                        preexec_fn=as_user(nobody, [gid]), timeout=30)
                assert lister.returncode != 0 and "Permission denied" in lister.stderr, lister
            s.stop()  # all it said
            text = s.text()
            assert "the group %s reaches it" % group in text and "cannot enter" not in text, text
        finally:
            s.stop()
    finally:
        shutil.rmtree(base)
    # A directory above the store that the group cannot enter: said when the service starts.
    if root:
        hidden = tmp_path / "hidden"
        os.makedirs(str(hidden))
        os.chmod(str(hidden), 0o700)
        s = Service(hidden / "store", tmp_path, "--group", group)
        try:
            text = s.wait_text("warning: the group daemon cannot enter %s" % hidden)
            assert "warning: the group daemon cannot enter %s" % hidden in text, text
        finally:
            s.stop()
    r = subprocess.run([gen2vm_binary(), "service", "run", "--store", str(tmp_path / "x"), "--group", "no-such-group-9"],
                       capture_output=True, text=True, timeout=30, env=env_direct())
    assert r.returncode == 2 and "--group 'no-such-group-9': no such group" in r.stderr, r.stderr
    assert not os.path.exists(str(tmp_path / "x" / "gen2vmd.sock"))


def test_a_second_service_on_the_store_is_refused(service, store, tmp_path):
    r = subprocess.run([gen2vm_binary(), "service", "run", "--store", str(store)], capture_output=True, text=True,
                       timeout=30, env=env_direct())
    assert r.returncode == 2 and "already running" in r.stderr, r.stderr
    assert service.answers()


def test_api_create_modify_delete_and_errors(service, store, tmp_path):
    s = service.sock
    assert curl(s, "GET", "/v1/vms") == (200, [])
    st, j = curl(s, "PUT", "/v1/vms/a", {"options": ["--memory", "64M"]})
    assert st == 201 and j["vm"] == "a" and "created" in j["message"], j
    st, j = curl(s, "PUT", "/v1/vms/b", {"memory": "128M", "cpus": 2, "automatic_start": "never"})
    assert st == 201, j
    with open(os.path.join(str(store), "b", "vm.json")) as f:
        d = json.load(f)
    assert d["memory"] == "128M" and d["cpus"] == 2 and d["schema"] == 1 and d["automatic_start"] == "never"
    # The console is on unless the document says: the synthetic devices, VNC on vnc.sock.
    assert d["synthetic_console"] is True and d["vnc"] == "unix:vnc.sock", d
    with open(os.path.join(str(store), "a", "vm.json")) as f:
        d = json.load(f)
    assert d["synthetic_console"] is True and d["vnc"] == "unix:vnc.sock", d
    st, j = curl(s, "PUT", "/v1/vms/quiet", {"memory": "64M", "synthetic_console": False})
    assert st == 201, j
    with open(os.path.join(str(store), "quiet", "vm.json")) as f:
        assert json.load(f)["synthetic_console"] is False
    st, j = curl(s, "PUT", "/v1/vms/quiet2", {"options": ["--memory", "64M", "--console", "off"]})
    assert st == 201, j
    with open(os.path.join(str(store), "quiet2", "vm.json")) as f:
        assert json.load(f)["synthetic_console"] is False
    for name in ("quiet", "quiet2"):
        assert curl(s, "DELETE", "/v1/vms/" + name)[0] == 200
    api_error(s, "PUT", "/v1/vms/b", {"memory": "64M"}, 409, "VmExists")
    api_error(s, "PUT", "/v1/vms/c", {"memory": "3Q"}, 400, "InvalidConfig", says="3Q")
    api_error(s, "PUT", "/v1/vms/c", {"automatic_stop": "sometimes"}, 400, "InvalidConfig", says="shutdown, save or turn_off")
    api_error(s, "PUT", "/v1/vms/c", {"bogus": 1}, 400, "InvalidConfig", says="bogus")
    st, j = curl(s, "PUT", "/v1/vms/nl", '{"memory": "64M"}\n\n')  # a document file's last newline
    assert st == 201, j
    api_error(s, "PUT", "/v1/vms/c", '{"memory": "64M"} x', 400, "BadRequest")
    api_error(s, "PUT", "/v1/vms/c", "not json", 400, "BadRequest")
    api_error(s, "PUT", "/v1/vms/c", "[1]", 400, "BadRequest")
    api_error(s, "PUT", "/v1/vms/c", {"cpus": 0}, 400, "InvalidConfig")
    assert not os.path.exists(os.path.join(str(store), "c"))
    st, j = curl(s, "GET", "/v1/vms/b")
    assert st == 200 and j["name"] == "b" and j["state"] == "Off" and j["config"]["cpus"] == 2, j
    st, j = curl(s, "PATCH", "/v1/vms/b", {"cpus": 3, "memory": "256M", "processor_compatibility": True})
    assert st == 200 and j["state"] == "Off", j
    st, j = curl(s, "GET", "/v1/vms/b")
    assert j["config"]["cpus"] == 3 and j["config"]["memory"] == "256M" and j["config"]["processor_compatibility"]
    st, j = curl(s, "PATCH", "/v1/vms/b", {"console": True})
    assert st == 200, j
    st, j = curl(s, "GET", "/v1/vms/b")
    assert j["config"]["vnc"] == "unix:vnc.sock" and j["config"]["synthetic_console"] is True, j
    api_error(s, "PATCH", "/v1/vms/b", {"web_console": "0.0.0.0:80"}, 400, "InvalidArgument", says="password")
    st, j = curl(s, "PATCH", "/v1/vms/b", {"add_disk": "new:8M"})
    assert st == 200, j
    st, j = curl(s, "GET", "/v1/vms/b")
    assert len(j["config"]["disks"]) == 1 and j["config"]["disks"][0]["path"].endswith("disk0.vhdx"), j
    st, j = curl(s, "PATCH", "/v1/vms/b", {"add_dvd": "empty"})
    assert st == 200, j
    st, j = curl(s, "PATCH", "/v1/vms/b", {"remove_disk": "lun=0"})
    assert st == 200, j
    api_error(s, "PATCH", "/v1/vms/b", {"cpus": 99}, 400, "InvalidArgument", says="99")
    api_error(s, "PATCH", "/v1/vms/b", {"colour": "red"}, 400, "BadRequest")
    api_error(s, "PATCH", "/v1/vms/b", {"add_dvd": "empty", "add_nic": "x"}, 400, "BadRequest")
    api_error(s, "PATCH", "/v1/vms/b", {}, 400, "BadRequest")
    api_error(s, "PATCH", "/v1/vms/zz", {"cpus": 2}, 404, "VmNotFound")
    api_error(s, "PATCH", "/v1/vms/b", {"remove_disk": "lun=9"}, 400, "InvalidArgument")
    api_error(s, "POST", "/v1/vms/zz/start", None, 404, "VmNotFound")
    api_error(s, "POST", "/v1/vms/b/pause", None, 409, "VmNotRunning")
    api_error(s, "GET", "/v1/nothing", None, 404, "NotFound")
    api_error(s, "DELETE", "/v1/vms", None, 405, "MethodNotAllowed")
    api_error(s, "GET", "/v1/vms/..", None, 400, "InvalidName")
    st, j = curl(s, "POST", "/v1/vms/b/shutdown")
    assert st == 200 and "is off" in j["message"], j
    st, j = curl(s, "GET", "/v1/vms")
    assert [v["name"] for v in j] == ["a", "b", "nl"] and all(v["state"] == "Off" for v in j), j
    st, j = curl(s, "DELETE", "/v1/vms/b")
    assert st == 200 and "removed" in j["message"], j
    assert not os.path.exists(os.path.join(str(store), "b"))
    api_error(s, "GET", "/v1/vms/b", None, 404, "VmNotFound")
    api_error(s, "DELETE", "/v1/vms/b", None, 404, "VmNotFound")
    assert "PATCH /v1/vms/b" in service.text()


def test_two_clients_changing_one_vm_get_a_conflict_not_a_torn_file(service, store):
    import fcntl
    import threading
    ok(store, "new", "c", "--memory", "64M", direct=True)
    # A change kept waiting on the VM's config lock past 5 s: Conflict, and nothing changed.
    fd = os.open(os.path.join(str(store), "c", ".lock-config"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        j = api_error(service.sock, "PATCH", "/v1/vms/c", {"cpus": 4}, 409, "Conflict", says="busy")
        assert j["error"]["exit_code"] == 2
    finally:
        os.close(fd)
    # Many at once: each either applied whole or refused, the document always whole.
    results = []

    def change(i):
        results.append(curl(service.sock, "PATCH", "/v1/vms/c", {"cpus": 1 + i % 4, "memory": "%dM" % (64 + 2 * i)}))
    ts = [threading.Thread(target=change, args=(i,)) for i in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(st == 200 or (st == 409 and j["error"]["code"] == "Conflict") for st, j in results), results
    st, j = curl(service.sock, "GET", "/v1/vms/c")
    i = (int(j["config"]["memory"][:-1]) - 64) // 2
    assert j["config"]["cpus"] == 1 + i % 4, j  # both settings from one request


def test_start_failure_reaches_the_api_client(service, store, tmp_path):
    disk = tmp_path / "gone.img"
    with open(str(disk), "wb") as f:
        f.truncate(1 << 20)
    ok(store, "new", "k", "--memory", "64M", "--disk", str(disk), direct=True)
    os.unlink(str(disk))  # a VM that cannot start on any host
    j = api_error(service.sock, "POST", "/v1/vms/k/start", None, 500, "StartFailed", says="did not start")
    assert j["error"]["exit_code"] == 2
    st, j = curl(service.sock, "GET", "/v1/vms/k")
    assert j["state"] == "Off"


def test_running_vm_conflicts_and_events(service, store):
    ok(store, "new", "r", "--memory", "64M", direct=True)
    ev = Events(service.sock)
    f = fake_vm(store, "r")
    try:
        # Started outside the service: it learns of it when it next looks (any request naming it).
        st, j = curl(service.sock, "GET", "/v1/vms/r")
        assert st == 200 and j["state"] == "Running" and j["pid"] == f.pid, j
        api_error(service.sock, "PATCH", "/v1/vms/r", {"cpus": 2}, 409, "VmRunning", says="is running")
        api_error(service.sock, "DELETE", "/v1/vms/r", None, 409, "VmRunning")
        api_error(service.sock, "POST", "/v1/vms/r/start", None, 409, "VmRunning", says="already running")
        assert ev.until("r", event="state", state="Running")
        st, j = curl(service.sock, "POST", "/v1/vms/r/pause")
        assert st == 200 and j["state"] == "Paused", j
        assert ev.until("r", event="state", state="Paused")
        st, j = curl(service.sock, "POST", "/v1/vms/r/resume")
        assert st == 200 and j["state"] == "Running", j
        assert ev.until("r", event="state", state="Running")
        st, j = curl(service.sock, "POST", "/v1/vms/r/terminate")
        assert st == 200 and "turned off" in j["message"], j
        assert ev.until("r", event="state", state="Off")
        f.wait(10)
    finally:
        f.kill()
        ev.close()


def test_vms_started_and_ended_around_the_service_are_events(service, store):
    """No request names the VM: the service sees its process start (its control socket appears) and
    end (its pidfd), from inotify on the store, not by polling."""
    ev = Events(service.sock)
    ok(store, "new", "around", "--memory", "64M", direct=True)  # a directory made after the service started
    for round in range(2):
        t0 = time.time()
        f = fake_vm(store, "around")
        try:
            assert ev.until("around", event="state", state="Running")
            assert time.time() - t0 < 5
            t0 = time.time()
            os.kill(f.pid, signal.SIGKILL)  # a VM process killed
            f.wait(10)
            assert ev.until("around", event="state", state="Off")
            assert time.time() - t0 < 5
        finally:
            f.kill()
            f.wait()
    assert "VM 'around': running (process" in service.text()
    ev.close()


def test_heartbeat_lost_is_an_event(store, tmp_path, monkeypatch):
    os.makedirs(str(store))
    ok(store, "new", "h", "--memory", "64M", direct=True)
    f = fake_vm(store, "h")
    monkeypatch.setenv("GEN2VMD_HEARTBEAT_CHECK_S", "1")
    s = Service(store, tmp_path)
    try:
        ev = Events(s.sock)
        assert ev.next()["state"] == "Running"
        time.sleep(1.5)  # looked at once at least while the heartbeat is ok: no event
        with open(os.path.join(str(store), "h", "hb"), "w") as fh:
            fh.write("lost")
        seen = ev.until("h", event="heartbeat_lost")
        assert [e["event"] for e in seen] == ["heartbeat_lost"], seen
        assert "heartbeat lost" in s.wait_text("heartbeat lost")
        ev.close()
    finally:
        f.kill()
        s.stop()


def test_service_killed_and_restarted_finds_the_running_vm(store, tmp_path):
    os.makedirs(str(store))
    ok(store, "new", "r", "--memory", "64M", direct=True)
    f = fake_vm(store, "r")
    try:
        s1 = Service(store, tmp_path)
        st, j = curl(s1.sock, "GET", "/v1/vms/r")
        assert j["state"] == "Running"
        s1.kill9()
        assert f.poll() is None  # the VM outlives the service
        s2 = Service(store, tmp_path)
        try:
            ev = Events(s2.sock)
            # Found at start: the stream opens with where each VM stands.
            e = ev.next()
            assert e == {"vm": "r", "event": "state", "state": "Running", "time": e["time"]}, e
            with open(os.path.join(str(store), "gen2vmd.state")) as fh:
                assert json.load(fh)["running"] == ["r"]
            f.kill()  # the VM's process dies under it
            assert ev.until("r", event="state", state="Off")
            with open(os.path.join(str(store), "gen2vmd.state")) as fh:
                assert json.load(fh)["running"] == []
            ev.close()
        finally:
            s2.stop()
    finally:
        f.kill()


def test_automatic_start_after_a_reboot_only(store, tmp_path):
    """A VM that ran when the service last saw it is started again after a reboot (another boot id in
    gen2vmd.state), not after a restart of the service alone; "never" never is."""
    os.makedirs(str(store))
    disk = tmp_path / "gone.img"
    with open(str(disk), "wb") as f:
        f.truncate(1 << 20)
    ok(store, "new", "a", "--memory", "64M", "--disk", str(disk), direct=True)
    ok(store, "new", "n", "--memory", "64M", direct=True)
    doc = os.path.join(str(store), "n", "vm.json")
    with open(doc) as f:
        d = json.load(f)
    d["automatic_start"] = "never"
    with open(doc, "w") as f:
        json.dump(d, f)
    os.unlink(str(disk))  # its start fails here and on a KVM host: we see it tried in vm.log
    state = os.path.join(str(store), "gen2vmd.state")
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    for boot_id, tried in ((boot, False), ("another-boot", True)):
        with open(state, "w") as f:
            json.dump({"boot_id": boot_id, "running": ["a", "n"]}, f)
        s = Service(store, tmp_path)
        deadline = time.time() + 30
        while time.time() < deadline and tried and "automatic start failed" not in s.text():
            time.sleep(0.1)
        s.stop()
        assert ("VM 'a': automatic start (if_running)" in s.text()) == tried, s.text()
        assert "VM 'n': automatic start" not in s.text()


def test_stop_vms_applies_each_automatic_stop(store, tmp_path):
    """`gen2vm service stop-vms` (the unit's stop at host shutdown): shutdown through the guest by
    default, turn_off and save where the document says so, all at once; off VMs are left alone."""
    os.makedirs(str(store))
    for n in ("s", "t", "v", "off"):
        ok(store, "new", n, "--memory", "64M", direct=True)
    for n, action in (("t", "turn_off"), ("v", "save")):
        docp = os.path.join(str(store), n, "vm.json")
        with open(docp) as f:
            d = json.load(f)
        d["automatic_stop"] = action
        with open(docp, "w") as f:
            json.dump(d, f)
    fs, ft, fv = fake_vm(store, "s"), fake_vm(store, "t"), fake_vm(store, "v")
    try:
        r = subprocess.run([gen2vm_binary(), "service", "stop-vms", "--store", str(store), "--timeout", "20"],
                           capture_output=True, text=True, timeout=60, env=env_direct())
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "VM 's' shut down" in r.stdout and "VM 't' turned off" in r.stdout and "'off'" not in r.stdout, r.stdout
        assert "VM 'v' saved" in r.stdout, r.stdout
        assert fs.wait(10) == 0 and ft.wait(10) == 0 and fv.wait(10) == 0
        assert os.path.exists(os.path.join(str(store), "v", "vm.save"))
        assert {v["name"]: v["state"] for v in json.loads(ok(store, "list", "--json", direct=True).stdout)}["v"] == "Saved"
    finally:
        fs.kill()
        ft.kill()
        fv.kill()
    r = subprocess.run([gen2vm_binary(), "service", "stop-vms", "--timeout", "0"], capture_output=True, text=True,
                       timeout=30, env=env_direct())
    assert r.returncode == 2 and "--timeout '0'" in r.stderr, r.stderr


def test_vms_stopped_with_the_host_start_again_after_the_reboot(store, tmp_path):
    """The VMs `service stop-vms` stopped (or saved) as the host went down ran then, though the
    service saw them end: gen2vmd.stopped names them, and the service of the next boot starts those
    whose automatic_start is if_running (a saved one by restoring it, as vm start does); never is
    never; a restart of the service in the same boot starts none. The file is looked at once."""
    os.makedirs(str(store))
    for n in ("a", "v", "n"):
        ok(store, "new", n, "--memory", "64M", direct=True)
    for n, key, value in (("v", "automatic_stop", "save"), ("n", "automatic_start", "never")):
        docp = os.path.join(str(store), n, "vm.json")
        with open(docp) as f:
            d = json.load(f)
        d[key] = value
        with open(docp, "w") as f:
            json.dump(d, f)
    fakes = [fake_vm(store, n) for n in ("a", "v", "n")]
    stopped = os.path.join(str(store), "gen2vmd.stopped")
    s = Service(store, tmp_path)
    try:
        r = subprocess.run([gen2vm_binary(), "service", "stop-vms", "--store", str(store), "--timeout", "20"],
                           capture_output=True, text=True, timeout=60, env=env_direct())
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert all(f.wait(10) == 0 for f in fakes)
        assert os.path.exists(os.path.join(str(store), "v", "vm.save"))
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(os.path.join(str(store), "gen2vmd.state")) as f:
                if json.load(f)["running"] == []:
                    break
            time.sleep(0.1)
        with open(os.path.join(str(store), "gen2vmd.state")) as f:
            assert json.load(f)["running"] == []  # the service saw them end
    finally:
        s.stop()
        for f in fakes:
            f.kill()
    with open(stopped) as f:
        st = json.load(f)
    assert sorted(st["stopped"]) == ["a", "n", "v"], st
    # The same boot (the shutdown did not happen after all): nothing starts, the file is gone.
    s = Service(store, tmp_path)
    s.stop()
    assert "automatic start" not in s.text(), s.text()
    assert not os.path.exists(stopped)
    # The next boot.
    st["boot_id"] = "another-boot"
    with open(stopped, "w") as f:
        json.dump(st, f)
    s = Service(store, tmp_path)
    try:
        s.wait_text("VM 'a': automatic start")  # in the order the store lists them: either first
        text = s.wait_text("VM 'v': automatic start")
        assert "VM 'a': automatic start (if_running; stopped as the host went down)" in text, text
        assert "VM 'v': automatic start (if_running; stopped as the host went down)" in text, text
        assert "VM 'n': automatic start" not in text, text
        deadline = time.time() + 10  # deleted once every VM was looked at
        while time.time() < deadline and os.path.exists(stopped):
            time.sleep(0.05)
        assert not os.path.exists(stopped)
        # v's start is a restore (of the fake VM's state, refused on this host): it says so.
        text = s.wait_text("VM 'v': automatic start failed", 60)
        assert "resume from its saved state" in text, text
    finally:
        s.stop()


def test_deep_store_path_does_not_break_the_service_socket(tmp_path):
    store = tmp_path / ("d" * 60) / ("e" * 60) / "store"
    os.makedirs(str(store))
    assert len(os.path.join(str(store), "gen2vmd.sock")) > 108
    s = Service.__new__(Service)
    s.store, s.sock = str(store), os.path.join(str(store), "gen2vmd.sock")
    s.log = open(str(tmp_path / "deep.log"), "w+")
    s.p = subprocess.Popen([gen2vm_binary(), "service", "run", "--store", str(store)], stdout=s.log,
                           stderr=subprocess.STDOUT, env=env_direct(), start_new_session=True)
    try:
        deadline = time.time() + 20
        while "serving" not in s.text() and time.time() < deadline:
            assert s.p.poll() is None, s.text()
            time.sleep(0.05)
        ok(store, "new", "deep", "--memory", "64M")
        r = ok(store, "list")
        assert "deep" in r.stdout
        text = s.wait_text("PUT /v1/vms/deep")
        assert "GET /v1/vms" in text and "PUT /v1/vms/deep" in text, text
    finally:
        s.stop()
    assert not os.path.exists(s.sock)  # removed on SIGTERM


def normalize(text, store):
    # Through the service a relative PATH is sent made absolute (the service runs elsewhere): the
    # messages that echo it name it so.
    return text.replace(str(store), "STORE").replace(os.path.dirname(str(store)) + "/", "")


CLI_SCRIPT = [
    ("new", "a", "--memory", "64M"),
    ("new", "a"),
    ("new", "b", "--disk", "new:16M", "--dvd", "empty"),
    ("new", "c", "--memory", "3Q"),
    ("new", "..x"),
    ("new", "d", "--disk", "missing.vhdx"),
    ("new", "e", "--from", "doc.json"),
    ("set", "a", "--cpus", "2", "--memory", "128M"),
    ("set", "a", "--cpus", "99"),
    ("set", "a", "--bogus", "1"),
    ("set", "a"),
    ("set", "zz", "--cpus", "2"),
    ("stop", "a", "--save"),
    ("set", "b", "--console", "on"),
    ("set", "b", "--web-console", "127.0.0.1:6080", "--vnc", "127.0.0.1:5901"),
    ("set", "b", "--vnc", "0.0.0.0:5900"),
    ("set", "b", "--console", "sometimes"),
    ("connect", "b"),
    ("set", "b", "--console", "off"),
    ("connect", "b"),
    ("add-disk", "a", "new:8M"),
    ("add-disk", "a", "new:8M,lun=0"),
    ("add-dvd", "a", "empty"),
    ("set-dvd", "a", "empty"),
    ("remove-disk", "a", "lun=0"),
    ("remove-disk", "a", "lun=7"),
    ("remove-dvd", "a", "lun=1"),
    ("add-nic", "a", "bogus=1"),
    ("add-nic", "a", "x", "--legacy"),
    ("remove-nic", "a", "3"),
    ("show", "a"),
    ("show", "a", "--json"),
    ("show", "zz"),
    ("list",),
    ("list", "--json"),
    ("list", "--bogus"),
    ("start", "zz"),
    ("pause", "a"),
    ("resume", "a"),
    ("stop", "a"),
    ("stop", "a", "--timeout", "0"),
    ("stop", "a", "--turn-off"),
    ("restart", "zz"),
    ("remove", "b"),
    ("remove", "b"),
    ("remove", "zz", "extra"),
    ("console", "zz"),
    ("firmware", "zz", "show"),
    ("firmware", "a", "show", "--nvram", "x"),
    ("bogus-verb", "a"),
]


def test_cli_gives_the_same_results_with_and_without_the_service(tmp_path):
    with open(str(tmp_path / "doc.json"), "w") as f:
        json.dump({"memory": "96M", "cpus": 2}, f)
    results = {}
    for mode in ("direct", "service"):
        store = tmp_path / mode
        os.makedirs(str(store))
        s = Service(store, tmp_path) if mode == "service" else None
        try:
            out = []
            for args in CLI_SCRIPT:
                r = vm(store, *args, cwd=str(tmp_path))
                out.append((args, r.returncode, normalize(r.stdout, store), normalize(r.stderr, store)))
            # Changes refused while the VM runs, the same way.
            f = fake_vm(store, "a")
            try:
                for args in (("set", "a", "--cpus", "1"), ("remove", "a"), ("start", "a"), ("remove-nic", "a", "0")):
                    r = vm(store, *args, cwd=str(tmp_path))
                    out.append((args, r.returncode, normalize(r.stdout, store), normalize(r.stderr, store)))
                r = vm(store, "stop", "a", cwd=str(tmp_path))
                out.append((("stop", "a"), r.returncode, normalize(r.stdout, store), normalize(r.stderr, store)))
            finally:
                f.kill()
                f.wait()
            results[mode] = out
            if s:
                # The verbs went through the API, not around it.
                for path in ("PUT /v1/vms/a", "PATCH /v1/vms/a", "GET /v1/vms", "POST /v1/vms/a/shutdown",
                             "DELETE /v1/vms/b", "GET /v1/vms/a"):
                    assert path in s.wait_text(path), (path, s.text())
        finally:
            if s:
                s.stop()
    for d, sv in zip(results["direct"], results["service"]):
        # vm list samples CPU usage: running VMs differ in that column only; none runs here.
        assert d == sv, "\ndirect:  %r\nservice: %r" % (d, sv)
    # Every verb's error path was exercised: usage, unknown VM, bad value, running VM.
    codes = {rc for _, rc, _, _ in results["direct"]}
    assert codes == {0, 2}, results["direct"]


def raw(sock, data, read=True, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.settimeout(timeout)
    try:
        s.sendall(data)
    except OSError:
        pass
    out = b""
    if read:
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except OSError:
            pass
    s.close()
    return out


def test_hostile_clients_do_not_hurt_the_service(service, store):
    s = service.sock
    ok(store, "new", "h", "--memory", "64M", direct=True)
    assert raw(s, b"\x00\xff garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(s, b"GET /v1/vms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 501 ")
    assert raw(s, b"PUT /v1/vms/x HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n").startswith(b"HTTP/1.1 413 ")
    # A 100 MB header: refused once 8 KiB have come; the rest is never read.
    big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    big.connect(s)
    big.settimeout(10)
    sent = 0
    try:
        chunk = b"GET /v1/vms HTTP/1.1\r\nX: " + b"a" * (1 << 20)
        while sent < 100 << 20:
            big.sendall(chunk)
            sent += len(chunk)
            chunk = b"a" * (1 << 20)
    except OSError:
        pass
    assert sent < 100 << 20  # the service answered 431 and closed the connection long before
    big.close()
    # Idle and half-sent clients, and event clients that never read, while others are served.
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(20)]
    for c in idle:
        c.connect(s)
    idle[0].sendall(b"GET /v1/vm")
    deaf = []
    for _ in range(5):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(s)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET /v1/events HTTP/1.1\r\n\r\n")
        deaf.append(c)
    t0 = time.time()
    for _ in range(10):
        st, j = curl(s, "GET", "/v1/vms/h")
        assert st == 200 and j["name"] == "h"
    assert time.time() - t0 < 30
    # More clients than it serves at once: the extra ones are told so, none waits forever.
    many = []
    for _ in range(150):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(s)
        many.append(c)
    for c in many:
        c.close()
    for c in idle + deaf:
        c.close()
    st, j = curl(s, "GET", "/v1/vms")
    assert st == 200 and [v["name"] for v in j] == ["h"]
    assert service.p.poll() is None


def test_crash_at_random_points_leaves_every_vm_loadable(store, tmp_path):
    """The service, its operations and the VMs' processes killed with SIGKILL at random points of
    create, modify, start and remove, 100 times: every VM in the store then loads and validates, and
    every name can be made again."""
    os.makedirs(str(store))
    rnd = random.Random(int(os.environ.get("GEN2VM_CRASH_SEED", "12345")))
    names = ["v%d" % i for i in range(4)]
    requests = [
        lambda n: ("PUT", "/v1/vms/" + n, {"options": ["--memory", "64M", "--disk", "new:8M", "--disk", "new:8M"]}),
        lambda n: ("PUT", "/v1/vms/" + n, {"memory": "64M", "cpus": 2}),
        lambda n: ("PATCH", "/v1/vms/" + n, {"cpus": rnd.randint(1, 4)}),
        lambda n: ("PATCH", "/v1/vms/" + n, {"add_disk": "new:8M"}),
        lambda n: ("PATCH", "/v1/vms/" + n, {"remove_disk": "lun=0"}),
        lambda n: ("POST", "/v1/vms/%s/start" % n, None),
        lambda n: ("POST", "/v1/vms/%s/terminate" % n, None),
        lambda n: ("DELETE", "/v1/vms/" + n, None),
    ]
    s = Service(store, tmp_path)
    fakes = []
    try:
        for it in range(100):
            if s.p.poll() is not None:
                s = Service(store, tmp_path)
            name = rnd.choice(names)
            conns = []
            for _ in range(rnd.randint(1, 3)):
                method, path, body = rnd.choice(requests)(rnd.choice(names))
                data = json.dumps(body).encode() if body is not None else b""
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    c.connect(s.sock)
                except OSError as e:
                    raise AssertionError("iteration %d: %s; the service: %r\n%s" % (it, e, s.p.poll(), s.text()))
                c.sendall(b"%s %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(),
                                                                                 len(data), data))
                conns.append(c)
            if rnd.random() < 0.2 and os.path.exists(os.path.join(str(store), name, "vm.json")):
                try:
                    fakes.append(fake_vm(store, name))
                except AssertionError:
                    pass  # its lock is taken: it runs, or a change holds it
            time.sleep(rnd.random() * 0.15)
            if rnd.random() < 0.6:
                s.kill9()
            for f in fakes:
                if rnd.random() < 0.5:
                    f.kill()
                    f.wait()
            fakes = [f for f in fakes if f.poll() is None]
            for c in conns:
                c.close()
            # Whatever was killed where: each vm.json there is whole (replaced atomically, never torn).
            for n in names:
                try:
                    with open(os.path.join(str(store), n, "vm.json")) as fh:
                        d = json.load(fh)
                except FileNotFoundError:
                    continue
                assert d["schema"] == 1 and d["generation"] == 2, (it, n, d)
            if it % 20 == 19:
                for n in names:
                    if os.path.exists(os.path.join(str(store), n, "vm.json")):
                        r = vm(store, "show", n, "--json", direct=True)
                        assert r.returncode == 0, (it, n, r.stderr)
    finally:
        s.kill9()
        for f in fakes:
            f.kill()
            f.wait()
    time.sleep(0.5)  # the last operations, if any outlived the group kill, end
    for n in names:
        if os.path.exists(os.path.join(str(store), n, "vm.json")):
            r = vm(store, "show", n, "--json", direct=True)
            assert r.returncode == 0, (n, r.stderr)
            assert json.loads(r.stdout)["state"] == "Off"
        else:
            ok(store, "new", n, "--memory", "64M", direct=True)
        ok(store, "set", n, "--cpus", "3", direct=True)
        ok(store, "remove", n, direct=True)
    listed = json.loads(ok(store, "list", "--json", direct=True).stdout)
    assert listed == [], listed


# ---- the real guest: through the service with curl and the event stream ----

@pytest.mark.real_guest
@pytest.mark.skipif(not have_kvm(), reason="needs /dev/kvm")
def test_real_guest_through_the_service(tmp_path):
    import efi_images as ei
    if not ei.have_tools("mkfs.vfat", "mcopy", "mmd", "sfdisk"):
        pytest.skip("needs dosfstools, mtools and fdisk (scripts/deps.sh test)")
    vhdx = ei.linux_userspace_vhdx(tmp_path, "VM-SERVICE-USERSPACE-MARKER", gen2vm_binary())
    store = tmp_path / "store"
    os.makedirs(str(store))
    s = Service(store, tmp_path)
    try:
        st, j = curl(s.sock, "PUT", "/v1/vms/guest", {"memory": "512M", "cpus": 2, "disks": [vhdx]})
        assert st == 201, j
        ev = Events(s.sock)
        st, j = curl(s.sock, "POST", "/v1/vms/guest/start")
        assert st == 200 and j["state"] == "Running", j
        assert ev.until("guest", event="state", state="Running")
        console = os.path.join(str(store), "guest", "console.log")
        deadline = time.time() + 600
        text = ""
        while time.time() < deadline:
            with open(console, errors="replace") as f:
                text = f.read()
            if "VM-SERVICE-USERSPACE-MARKER" in text:
                break
            time.sleep(2)
        assert "VM-SERVICE-USERSPACE-MARKER" in text, text[-3000:]
        # The service restarted while the VM runs finds it again.
        s.kill9()
        s = Service(store, tmp_path)
        ev.close()
        ev = Events(s.sock)
        assert ev.next()["state"] == "Running"
        st, j = curl(s.sock, "GET", "/v1/vms")
        assert j[0]["state"] == "Running", j
        st, j = curl(s.sock, "POST", "/v1/vms/guest/shutdown", {"timeout": 150})
        assert st == 200 and "shut down" in j["message"], j
        assert ev.until("guest", event="state", state="Off")
        ev.close()
    finally:
        vm(store, "stop", "guest", "--turn-off", direct=True)
        s.stop()
