"""Reading the guest's screen in tests: PNG decoding (zlib, with numpy where rows allow: what
`control screenshot` writes), the XRGB test pattern a guest draws, and OCR of a screen region or of
a text grid with Debian's tesseract. numpy (Debian's python3-numpy, which novnc pulls in) keeps the
pixel work short where the tests run emulated (the nested test host): 1600x1200 screens are 5.8
million bytes."""
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

try:
    import numpy as np
except ImportError:  # pragma: no cover - the pure-Python paths below still work
    np = None


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
    if np is not None:
        return w, h, _unfilter_np(raw, w, h, bpp)
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


def _unfilter_np(raw, w, h, bpp):
    """The PNG rows of raw unfiltered with numpy (None, Sub and Up whole rows at once; Average and
    Paeth, which need each left neighbour first, byte by byte), as R, G, B bytes."""
    stride = w * bpp
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f, line = rows[y, 0], rows[y, 1:]
        if f == 0:
            cur = line.copy()
        elif f == 1:
            cur = np.cumsum(line.reshape(w, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif f == 2:
            cur = line + prev
        else:
            cur = bytearray(line.tobytes())
            pv = prev.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = pv[i], pv[i - bpp] if i >= bpp else 0
                if f == 3:
                    cur[i] = (cur[i] + ((a + b) >> 1)) & 0xff
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
            cur = np.frombuffer(bytes(cur), np.uint8)
        out[y] = cur
        prev = out[y]
    if bpp == 4:
        out = out.reshape(h, w, 4)[:, :, :3]
    return out.tobytes()


def text_grid_pgm(w, h, px, x0, y0, cols, rows, scale=3):
    """The text grid of cols x rows 8x16 cells at (x0, y0) of a w x h screen (px: R, G, B bytes) as a
    PGM for tesseract, or None when it holds no text: in each cell the colour of its top-left pixel
    is the background (the font's first pixel row is empty, the cursor is at the bottom) and shown
    white, every other pixel ink, black, so highlighted (inverse) text reads like the rest. Only the
    rows that hold text and the columns between the first and last ink are kept, in a white margin,
    scaled up (the 8x16 font is small for tesseract)."""
    if x0 < 0 or y0 < 0 or x0 + cols * 8 > w or y0 + rows * 16 > h:
        return None
    a = np.frombuffer(px, np.uint8).reshape(h, w, 3).astype(np.uint32)
    rgb = (a[:, :, 0] << 16) | (a[:, :, 1] << 8) | a[:, :, 2]
    g = rgb[y0:y0 + rows * 16, x0:x0 + cols * 8].reshape(rows, 16, cols, 8)
    ink = g != g[:, :1, :, :1]
    cells = ink.any(axis=(1, 3))
    keep = np.nonzero(cells.any(axis=1))[0]
    if not len(keep):
        return None
    used = np.nonzero(cells.any(axis=0))[0]
    c0, c1 = used[0], used[-1] + 1
    img = np.where(ink[keep][:, :, c0:c1, :], 0, 255).astype(np.uint8).reshape(len(keep) * 16, (c1 - c0) * 8)
    # A white margin: tesseract misreads text that touches the image's edge ("Frese" for "Press").
    img = np.pad(img, 16, constant_values=255)
    img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    return b"P5\n%d %d\n255\n" % (img.shape[1], img.shape[0]) + img.tobytes()


def ocr_text_grids(png, grids, keep_dir=None):
    """tesseract's reading of each text grid (x0, y0, cols, rows) of a screenshot that holds text,
    joined. The PGMs are kept beside png (or in keep_dir) for a failure's report."""
    w, h, px = png_read_rgb(png)
    text = ""
    for i, grid in enumerate(grids):
        pgm = text_grid_pgm(w, h, px, *grid)
        if pgm is None:
            continue
        path = os.path.join(keep_dir or os.path.dirname(png), os.path.basename(png)[:-4] + f"-{i}.pgm")
        with open(path, "wb") as f:
            f.write(pgm)
        r = subprocess.run(["tesseract", path, "-", "--psm", "6"], capture_output=True, text=True, timeout=300)
        text += r.stdout + "\n"
    return text


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
