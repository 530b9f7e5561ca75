"""A VM that "runs" without /dev/kvm, for the tests of the VM store (test_vm_store.py) and of the
service (test_vm_service.py): it holds the VM's run lock as the gen2vm run process does (a pid
written in it) and answers on the VM's control socket as gen2vm's does.

FakeVm serves from a thread of the test. `python3 fake_vm.py DIR` is the same VM as a process of its
own, for the service, which watches the pid in the lock (a process working in the VM's directory):
it prints "ready" once it answers and ends (its socket removed) on shutdown, stop or a save."""
import fcntl
import json
import os
import socket
import sys
import threading


def listen_in(d, name):
    """A listening Unix socket d/name, bound from d: the path may pass a Unix socket's 107 bytes, as
    the store's own client knows."""
    cwd = os.getcwd()
    os.chdir(d)
    try:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(name)
    finally:
        os.chdir(cwd)
    srv.listen(8)
    return srv


class FakeVm:
    """The VM of directory d. Its control socket answers `status --json` (state, uptime_s, and the
    heartbeat the file d/hb holds, "ok" without it) and `status` as gen2vm does; every other command
    is recorded in .commands and answered from replies ("ok" when not there). A command answered
    "ok" is carried out: pause and resume change the state, `save PATH` writes PATH (relative to d),
    and shutdown, stop and save end the VM: on_end() (nothing when None: a guest that ignores them)."""

    def __init__(self, d, uptime=7, replies=None, on_end=None):
        self.dir = d
        self.uptime = uptime
        self.replies = replies or {}
        self.on_end = on_end
        self.commands = []
        self.state = "running"
        self.fd = None
        self.srv = None

    def lock(self):
        """Takes the run lock with this process's pid in it, as gen2vm run does."""
        self.fd = os.open(os.path.join(self.dir, "run.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, b"%d\n" % os.getpid(), 0)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def listen(self):
        try:
            os.unlink(os.path.join(self.dir, "control.sock"))
        except FileNotFoundError:
            pass
        self.srv = listen_in(self.dir, "control.sock")

    def answer(self, cmd):
        """The reply to one command line, and whether the VM ends after it."""
        if cmd == "status --json":
            hb_path = os.path.join(self.dir, "hb")  # what a test makes the heartbeat say
            hb = open(hb_path).read().strip() if os.path.exists(hb_path) else "ok"
            return "ok: " + json.dumps({"state": self.state, "uptime_s": self.uptime, "heartbeat": {"state": hb}}), False
        if cmd == "status":
            return "ok: running", False
        self.commands.append(cmd)
        reply = self.replies.get(cmd, "ok")
        if reply != "ok":
            return reply, False
        if cmd in ("pause", "resume"):
            self.state = "paused" if cmd == "pause" else "running"
        if cmd.startswith("save "):  # the VM's state saved: the file written, the process ends
            with open(os.path.join(self.dir, cmd[5:]), "wb") as f:
                f.write(b"G2VMSAVE")
        return reply, cmd in ("shutdown", "stop") or cmd.startswith("save ")

    def serve(self):
        """Answers one command a connection until the socket is closed."""
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                line = b""
                while not line.endswith(b"\n"):
                    d = c.recv(4096)
                    if not d:
                        break
                    line += d
                reply, ends = self.answer(line.decode().strip())
                c.sendall((reply + "\n").encode())
            if ends and self.on_end:
                self.on_end()

    def serve_in_thread(self):
        self.listen()
        threading.Thread(target=self.serve, daemon=True).start()

    def close(self):
        self.release()
        if self.srv:
            self.srv.close()
            try:
                os.unlink(os.path.join(self.dir, "control.sock"))
            except FileNotFoundError:
                pass


def main(d):
    vm = FakeVm(d)

    def end():
        os.unlink(os.path.join(d, "control.sock"))
        sys.exit(0)

    vm.on_end = end
    os.chdir(d)  # as gen2vm run's process does: the service takes a pid working elsewhere for a stranger's
    vm.lock()
    vm.listen()
    print("ready", flush=True)
    vm.serve()


if __name__ == "__main__":
    main(sys.argv[1])
