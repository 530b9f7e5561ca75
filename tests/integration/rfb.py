"""A small RFB 3.8 client for tests and benches (RFC 6143): no authentication, Raw pixels, the
DesktopSize and rich-cursor pseudo-encodings. It keeps the whole frame as the server's 32-bit
little-endian XRGB (B, G, R, X in memory), what gen2vm's and QEMU's servers hold, so what it sees
compares byte for byte with a guest's pattern."""
import socket
import struct

RAW, CURSOR, DESKTOP_SIZE = 0, -239, -223


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c:
            raise EOFError("RFB: the server closed the connection after %d of %d bytes" % (len(b), n))
        b += c
    return bytes(b)


class RfbClient:
    """One viewer on a connected socket (TCP or unix). After the handshake: w, h, frame, the server's
    own pixel format and its desktop name."""

    def __init__(self, sock):
        self.s = sock
        ver = recv_exact(sock, 12)
        assert ver.startswith(b"RFB 003."), ver
        sock.sendall(b"RFB 003.008\n" if ver >= b"RFB 003.008\n" else ver)
        n = recv_exact(sock, 1)[0]
        types = recv_exact(sock, n)
        if 1 not in types:
            raise RuntimeError("RFB: the server wants authentication: %r" % types)
        sock.sendall(b"\x01")
        assert recv_exact(sock, 4) == b"\0\0\0\0"
        sock.sendall(b"\x01")  # shared: other viewers stay
        self.w, self.h = struct.unpack(">HH", recv_exact(sock, 4))
        self.server_format = recv_exact(sock, 16)  # what the server holds (bpp, ..., shifts at 10..12)
        self.name = recv_exact(sock, struct.unpack(">I", recv_exact(sock, 4))[0])
        # 32 bpp true colour, little-endian BGRX; Raw, the pointer apart from the frame, resizes as messages.
        sock.sendall(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        sock.sendall(struct.pack(">BxHiii", 2, 3, RAW, CURSOR, DESKTOP_SIZE))
        self.frame = bytearray(self.w * self.h * 4)

    @classmethod
    def tcp(cls, port, host="127.0.0.1", timeout=60):
        return cls(socket.create_connection((host, port), timeout=timeout))

    @classmethod
    def unix(cls, path, timeout=60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    def request(self, incremental=False):
        self.s.sendall(struct.pack(">BBHHHH", 3, 1 if incremental else 0, 0, 0, self.w, self.h))

    def update(self, incremental=False):
        """Asks for an update and reads it into frame: the pixels' area it covered (a resize starts
        a new, black frame of the new size)."""
        self.request(incremental)
        while True:
            t = recv_exact(self.s, 1)[0]
            if t == 2:  # bell: the type alone
                continue
            if t == 3:  # server cut text: padding, the length, the text
                recv_exact(self.s, struct.unpack(">3xI", recv_exact(self.s, 7))[0])
                continue
            if t == 1:  # colour map entries: padding, first colour, number, 6 bytes each
                recv_exact(self.s, struct.unpack(">3xH", recv_exact(self.s, 5))[0] * 6)
                continue
            assert t == 0, "RFB: unknown server message %d" % t
            nr = struct.unpack(">xH", recv_exact(self.s, 3))[0]
            break
        area = 0
        for _ in range(nr):
            x, y, rw, rh, enc = struct.unpack(">HHHHi", recv_exact(self.s, 12))
            if enc == DESKTOP_SIZE:
                self.w, self.h = rw, rh
                self.frame = bytearray(rw * rh * 4)
                continue
            if enc == CURSOR:  # the pointer's image and mask
                recv_exact(self.s, rw * rh * 4 + (rw + 7) // 8 * rh)
                continue
            if enc != RAW:
                raise RuntimeError("RFB: encoding %d not asked for" % enc)
            data = recv_exact(self.s, rw * rh * 4)
            for r in range(rh):
                o = ((y + r) * self.w + x) * 4
                self.frame[o:o + rw * 4] = data[r * rw * 4:(r + 1) * rw * 4]
            area += rw * rh
        return area

    def key(self, keysym):
        """A key pressed and released (KeyEvent, an X keysym: 0xff54 Down, 0xff0d Return...)."""
        self.s.sendall(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
