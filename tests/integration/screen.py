"""Reading the guest's screen in tests: PNG decoding (zlib only: what `control screenshot` writes),
the XRGB test pattern a guest draws, and OCR of a screen region with Debian's tesseract."""
import os
import shutil
import struct
import subprocess
import tempfile
import zlib


def png_read_rgb(path):
    """(width, height, pixels as R, G, B bytes) of an 8-bit RGB or RGBA PNG, decoded with zlib only."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, color, _, _, interlace = ihdr
    assert depth == 8 and color in (2, 6) and interlace == 0, ihdr
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xff
            elif f == 2:
                line[i] = (line[i] + b) & 0xff
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xff
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        out += line if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3)
        prev = line
    return w, h, bytes(out)


def fb_pattern(w, h):
    """w x h XRGB pixels (little-endian B, G, R, X), no two neighbours alike, X bytes set to show
    they are not alpha."""
    rows = []
    for y in range(h):
        rows.append(b"".join(bytes(((x * 7 + y * 3) & 0xff, (x ^ y) & 0xff, (x + y * 5) & 0xff, 0xff))
                             for x in range(w)))
    return b"".join(rows)


def have_ocr():
    return shutil.which("tesseract") is not None


def ocr(png, box=None, scale=3):
    """The text tesseract reads in a screenshot (or in box = (x, y, w, h) of it). Console fonts are
    8 or 9 pixels wide, too small for tesseract: the region is made grey, inverted when the screen is
    dark (tesseract wants dark text on light) and enlarged scale times before reading."""
    w, h, px = png_read_rgb(png)
    x0, y0, bw, bh = box or (0, 0, w, h)
    bw, bh = min(bw, w - x0), min(bh, h - y0)
    grey = bytearray()
    total = 0
    for y in range(y0, y0 + bh):
        row = px[(y * w + x0) * 3:(y * w + x0 + bw) * 3]
        g = bytes((row[i] * 3 + row[i + 1] * 6 + row[i + 2]) // 10 for i in range(0, len(row), 3))
        total += sum(g)
        grey += g
    if total < 128 * bw * bh:  # mostly dark: light text on a dark screen
        grey = bytearray(255 - v for v in grey)
    out = bytearray()
    for y in range(bh):
        line = bytes(v for v in grey[y * bw:(y + 1) * bw] for _ in range(scale))
        out += line * scale
    with tempfile.TemporaryDirectory() as d:
        pgm = os.path.join(d, "screen.pgm")
        with open(pgm, "wb") as f:
            f.write(b"P5\n%d %d\n255\n" % (bw * scale, bh * scale))
            f.write(out)
        r = subprocess.run(["tesseract", pgm, "-", "--psm", "6"], capture_output=True, text=True, timeout=300)
    return r.stdout
