#!/usr/bin/env python3
"""Turns the static-PIE ELF that tests/efi/efi.ld links (at address 0, first page free) into a PE32+
EFI image: sections .text, .rdata (from .rodata), .data (with .bss as its uninitialised tail) and
.reloc, whose DIR64 base relocations come from the ELF's R_X86_64_RELATIVE records. ELF addresses
are the image's RVAs. Anything the format of the input does not allow (another relocation type, an
allocated section outside the three) is an error, not a silently broken image.

usage: elf2efi.py [--subsystem N] IN.elf OUT.efi
"""
import struct
import sys

FILE_ALIGN = 0x200
SECT_ALIGN = 0x1000
R_X86_64_RELATIVE = 8
SHF_ALLOC = 2
SHT_NOBITS = 8
SHT_RELA = 4
IGNORED = {".dynamic", ".rela.dyn", ".dynsym", ".dynstr", ".hash", ".gnu.hash"}


def align(v, a):
    return (v + a - 1) & ~(a - 1)


def die(msg):
    sys.stderr.write("elf2efi: " + msg + "\n")
    sys.exit(1)


def read_elf(data):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        die("not a little-endian ELF64 file")
    (e_type, e_machine, _, e_entry, _, e_shoff, _, _, _, _, e_shentsize, e_shnum,
     e_shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    if e_machine != 62:
        die("not an x86-64 ELF file")
    secs = []
    for i in range(e_shnum):
        (name, typ, flags, addr, off, size, link, info, algn, entsize) = struct.unpack_from(
            "<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
        secs.append(dict(name=name, type=typ, flags=flags, addr=addr, off=off, size=size))
    strtab = secs[e_shstrndx]
    for s in secs:
        raw = data[strtab["off"] + s["name"]:]
        s["name"] = raw[:raw.index(b"\0")].decode()
    return e_entry, secs


def main(argv):
    subsystem = 10
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--subsystem":
        subsystem = int(args[1], 0)
        args = args[2:]
    if len(args) != 2:
        die("usage: elf2efi.py [--subsystem N] IN.elf OUT.efi")
    data = open(args[0], "rb").read()
    entry, secs = read_elf(data)
    by_name = {s["name"]: s for s in secs}
    for s in secs:
        if s["flags"] & SHF_ALLOC and s["size"] and s["name"] not in IGNORED | {".text", ".rodata", ".data", ".bss"}:
            die(f"allocated section {s['name']} is not placed by efi.ld")

    image = {}  # RVA -> bytes of initialised data
    pe_secs = []  # (name, rva, vsize, initialised bytes, characteristics)
    text = by_name.get(".text")
    if not text or not text["size"]:
        die("no .text")
    pe_secs.append((b".text", text["addr"], text["size"], data[text["off"]:text["off"] + text["size"]],
                    0x60000020))
    ro = by_name.get(".rodata")
    if ro and ro["size"]:
        pe_secs.append((b".rdata", ro["addr"], ro["size"], data[ro["off"]:ro["off"] + ro["size"]], 0x40000040))
    dat, bss = by_name.get(".data"), by_name.get(".bss")
    if dat and dat["size"] or bss and bss["size"]:
        start = dat["addr"] if dat and dat["size"] else bss["addr"]
        end = max((s["addr"] + s["size"]) for s in (dat, bss) if s and s["size"])
        init = bytearray(data[dat["off"]:dat["off"] + dat["size"]]) if dat and dat["size"] else bytearray()
        pe_secs.append((b".data", start, end - start, init, 0xc0000040))

    # Base relocations.
    relocs = []
    for s in secs:
        if s["type"] != SHT_RELA:
            continue
        for off in range(s["off"], s["off"] + s["size"], 24):
            r_offset, r_info, r_addend = struct.unpack_from("<QQq", data, off)
            if r_info & 0xffffffff != R_X86_64_RELATIVE:
                die(f"relocation type {r_info & 0xffffffff} at 0x{r_offset:x} is not supported "
                    "(build with -fpie -fvisibility=hidden)")
            relocs.append((r_offset, r_addend))
    # The stored value must be the link-time address (image base 0): the loader adds the load address.
    fixed = []
    for name, rva, vsize, init, ch in pe_secs:
        init = bytearray(init)
        for r_offset, r_addend in relocs:
            if rva <= r_offset and r_offset + 8 <= rva + len(init):
                struct.pack_into("<Q", init, r_offset - rva, r_addend)
            elif rva <= r_offset < rva + vsize:
                die(f"relocation at 0x{r_offset:x} lies in uninitialised data")
        fixed.append((name, rva, vsize, bytes(init), ch))
    pe_secs = fixed
    blocks = b""
    pages = {}
    for r_offset, _ in relocs:
        pages.setdefault(r_offset & ~0xfff, []).append(r_offset & 0xfff)
    for page in sorted(pages):
        ents = [(10 << 12) | o for o in sorted(pages[page])]
        if len(ents) % 2:
            ents.append(0)  # IMAGE_REL_BASED_ABSOLUTE padding keeps blocks 4-byte aligned
        blocks += struct.pack("<II", page, 8 + 2 * len(ents)) + struct.pack(f"<{len(ents)}H", *ents)
    last = pe_secs[-1]
    reloc_rva = align(last[1] + last[2], SECT_ALIGN)
    if not blocks:
        blocks = struct.pack("<IIHH", 0, 12, 0, 0)  # an empty block: the image is relocatable
    pe_secs.append((b".reloc", reloc_rva, len(blocks), blocks, 0x42000040))

    nsec = len(pe_secs)
    hdr_size = align(64 + 4 + 20 + 240 + 40 * nsec, FILE_ALIGN)
    size_of_image = align(reloc_rva + len(blocks), SECT_ALIGN)
    if pe_secs[0][1] < hdr_size:
        die(".text must start after the headers (efi.ld: . = 0x1000)")
    out = bytearray(hdr_size)
    file_off = hdr_size
    sec_hdrs = b""
    raw = []
    code_size = init_size = uninit_size = 0
    for name, rva, vsize, init, ch in pe_secs:
        rsize = align(len(init), FILE_ALIGN)
        sec_hdrs += struct.pack("<8sIIIIIIHHI", name, vsize, rva, rsize, file_off if rsize else 0, 0, 0, 0, 0, ch)
        raw.append(init + b"\0" * (rsize - len(init)))
        file_off += rsize
        if ch & 0x20:
            code_size += rsize
        else:
            init_size += rsize
            uninit_size += max(0, vsize - len(init))
    dos = bytearray(64)
    struct.pack_into("<H", dos, 0, 0x5A4D)
    struct.pack_into("<I", dos, 60, 64)
    coff = struct.pack("<HHIIIHH", 0x8664, nsec, 0, 0, 0, 240, 0x0002 | 0x0020 | 0x0004 | 0x0008 | 0x0200)
    dirs = [(0, 0)] * 16
    dirs[5] = (reloc_rva, len(blocks))
    opt = struct.pack("<HBBIIIII", 0x20B, 2, 40, code_size, init_size, uninit_size, entry, pe_secs[0][1])
    opt += struct.pack("<QIIHHHHHHIIIIHHQQQQII", 0, SECT_ALIGN, FILE_ALIGN, 0, 0, 0, 0, 0, 0, 0,
                       size_of_image, hdr_size, 0, subsystem, 0x0020 | 0x0040 | 0x0100,
                       0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    opt += b"".join(struct.pack("<II", *d) for d in dirs)
    assert len(opt) == 240
    hdr = bytes(dos) + b"PE\0\0" + coff + opt + sec_hdrs
    out[:len(hdr)] = hdr
    out += b"".join(raw)
    with open(args[1], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv)
