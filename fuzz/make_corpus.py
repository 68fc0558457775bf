#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (standard library only).

Small valid files of each kind the readers accept, plus a few near-misses, so the fuzzers
start from deep inside the formats: PNG (8/16-bit gray, RGB, gray+alpha, palette, every
filter type), TIFF (strips and tiles, none/deflate/PackBits compression, 8/16-bit, RGB,
both byte orders, separate planes), CSV (train, submission, groups; CRLF; a bad label) and
packs (the layout of data/pack.h with its XXH64 checksums; test_data_pipe reads one back as
an independent check of the format), and interlaced (Adam7) PNGs. One seed is not written
here: tiff/ycbcr_jpeg_16x8.tif, a YCbCr JPEG-in-TIFF made by libtiff's tools
(`tiffcp -c jpeg:90` of a 16x8 RGB TIFF), since JPEG needs more than the standard library.
Re-run after a format change:
    python3 fuzz/make_corpus.py
The files with hexadecimal names are inputs libFuzzer found that add coverage, folded in with
`scripts/fuzz.sh --merge` (which keeps only small ones).
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def save(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# ---- PNG --------------------------------------------------------------------------------
def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png(width, height, depth, color, rows, palette=None):
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    raw = b"".join(bytes([i % 5]) + row for i, row in enumerate(rows))  # filters 0..4 in turn
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_interlaced(width, height, depth, color, rows, pixel_bytes):
    """Adam7: the seven passes' sub-images one after another (a pass with no pixels has no
    rows), each row with its own filter byte, 0..4 in turn."""
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 1))
    raw, n = b"", 0
    for x0, y0, dx, dy in ADAM7:
        columns = range(x0, width, dx)
        if not columns:
            continue
        for y in range(y0, height, dy):
            line = b"".join(rows[y][x * pixel_bytes:(x + 1) * pixel_bytes] for x in columns)
            raw += bytes([n % 5]) + line
            n += 1
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


save("png", "gray8_8x8.png", png(8, 8, 8, 0, [bytes((x * 30 + y * 7) % 256 for x in range(8)) for y in range(8)]))
save("png", "gray16_4x4.png", png(4, 4, 16, 0, [b"".join(struct.pack(">H", (x * 9000 + y * 300) % 65536) for x in range(4)) for y in range(4)]))
save("png", "rgb8_4x3.png", png(4, 3, 8, 2, [bytes((x * 40 + c * 80 + y) % 256 for x in range(4) for c in range(3)) for y in range(3)]))
save("png", "gray_alpha8_3x3.png", png(3, 3, 8, 4, [bytes((x * 50 + c * 200) % 256 for x in range(3) for c in range(2)) for y in range(3)]))
save("png", "palette4_4x2.png", png(4, 2, 4, 3, [bytes([0x01, 0x23]) for _ in range(2)], palette=bytes(range(48))))
save("png", "gray8_adam7_7x5.png", png_interlaced(7, 5, 8, 0, [bytes((x * 31 + y * 9) % 256 for x in range(7)) for y in range(5)], 1))
save("png", "gray16_adam7_3x3.png", png_interlaced(3, 3, 16, 0, [b"".join(struct.pack(">H", (x * 7000 + y * 500) % 65536) for x in range(3)) for y in range(3)], 2))
save("png", "rgb8_adam7_5x3.png", png_interlaced(5, 3, 8, 2, [bytes((x * 40 + c * 80 + y) % 256 for x in range(5) for c in range(3)) for y in range(3)], 3))
save("png", "truncated.png", png(8, 8, 8, 0, [bytes(8)] * 8)[:60])


# ---- TIFF -------------------------------------------------------------------------------
def tiff(width, height, bits, spp, pixels, compression=1, big_endian=False, tile=None, planar=1):
    """pixels: bytes in the file's sample order (interleaved, or plane after plane)."""
    e = ">" if big_endian else "<"
    bps = bits // 8

    def compress(block):
        if compression == 8:
            return zlib.compress(block)
        if compression == 32773:  # PackBits: literal runs of up to 128 bytes
            out = b""
            for i in range(0, len(block), 128):
                piece = block[i:i + 128]
                out += bytes([len(piece) - 1]) + piece
            return out
        return block

    blocks = []
    if tile:
        tw, th = tile
        for p in range(spp if planar == 2 else 1):
            plane_spp = 1 if planar == 2 else spp
            plane = pixels[p * width * height * bps:(p + 1) * width * height * bps] if planar == 2 else pixels
            for ty in range(0, height, th):
                for tx in range(0, width, tw):
                    rows = []
                    for y in range(ty, ty + th):
                        row = b""
                        for x in range(tx, tx + tw):
                            if y < height and x < width:
                                at = (y * width + x) * plane_spp * bps
                                row += plane[at:at + plane_spp * bps]
                            else:
                                row += bytes(plane_spp * bps)
                        rows.append(row)
                    blocks.append(compress(b"".join(rows)))
    else:
        if planar == 2:
            size = width * height * bps
            blocks = [compress(pixels[p * size:(p + 1) * size]) for p in range(spp)]
        else:
            blocks = [compress(pixels)]
    data = b"".join(blocks)
    offsets, at = [], 8
    for b in blocks:
        offsets.append(at)
        at += len(b)
    ifd_at = 8 + len(data) + (len(data) & 1)
    entries = []
    extra = b""
    extra_at = ifd_at + 2 + 12 * 16 + 4

    def entry(tag, kind, values):
        nonlocal extra
        fmt = {3: "H", 4: "I"}[kind]
        payload = b"".join(struct.pack(e + fmt, v) for v in values)
        if len(payload) <= 4:
            value = payload + bytes(4 - len(payload))
        else:
            value = struct.pack(e + "I", extra_at + len(extra))
            extra += payload + (b"\0" if len(payload) & 1 else b"")
        entries.append(struct.pack(e + "HHI", tag, kind, len(values)) + value)

    entry(256, 4, [width])
    entry(257, 4, [height])
    entry(258, 3, [bits] * spp)
    entry(259, 3, [compression])
    entry(262, 3, [2 if spp >= 3 else 1])
    if not tile:
        entry(273, 4, offsets)
    entry(277, 3, [spp])
    if not tile:
        entry(278, 4, [height])
        entry(279, 4, [len(b) for b in blocks])
    entry(284, 3, [planar])
    if tile:
        entry(322, 4, [tile[0]])
        entry(323, 4, [tile[1]])
        entry(324, 4, offsets)
        entry(325, 4, [len(b) for b in blocks])
    entries.sort(key=lambda x: struct.unpack(e + "H", x[:2])[0])
    ifd = struct.pack(e + "H", len(entries)) + b"".join(entries) + struct.pack(e + "I", 0)
    ifd += bytes(12 * (16 - len(entries)))  # keep extra_at valid: pad to the 16-entry size
    head = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "I", ifd_at)
    return head + data + (b"\0" if len(data) & 1 else b"") + ifd + extra


g8 = bytes((x * 17 + y * 5) % 256 for y in range(6) for x in range(5))
save("tiff", "gray8_strip.tif", tiff(5, 6, 8, 1, g8))
save("tiff", "gray8_deflate.tif", tiff(5, 6, 8, 1, g8, compression=8))
save("tiff", "gray8_packbits_be.tif", tiff(5, 6, 8, 1, g8, compression=32773, big_endian=True))
g16 = b"".join(struct.pack("<H", (i * 2500) % 65536) for i in range(4 * 3))
save("tiff", "gray16_strip.tif", tiff(4, 3, 16, 1, g16))
save("tiff", "gray16_be.tif", tiff(4, 3, 16, 1, b"".join(struct.pack(">H", (i * 2500) % 65536) for i in range(12)), big_endian=True))
g20 = bytes((i * 7) % 256 for i in range(20 * 18))
save("tiff", "gray8_tiled.tif", tiff(20, 18, 8, 1, g20, tile=(16, 16)))
rgb = bytes((i * 11) % 256 for i in range(4 * 4 * 3))
save("tiff", "rgb8_strip.tif", tiff(4, 4, 8, 3, rgb))
save("tiff", "rgb8_planar.tif", tiff(4, 4, 8, 3, rgb, planar=2))
save("tiff", "truncated.tif", tiff(5, 6, 8, 1, g8)[:40])


# ---- CSV --------------------------------------------------------------------------------
save("csv", "train.csv", b"Id,Target\n00070df0-bbc3-11e8-b2bc-ac1f6b6435d0,16 0\n000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0,7 1 2 0\n000a9596-bbc4-11e8-b2bc-ac1f6b6435d0,5\n")
save("csv", "train_crlf.csv", b"Id,Target\r\na,27\r\nb,0 25\r\n")
save("csv", "submission.csv", b"Id,Predicted\n00008af0-bad0-11e8-b2b8-ac1f6b6435d0,2 0\n0000a892-bacf-11e8-b2b8-ac1f6b6435d0,\n")
save("csv", "groups.csv", b"Id,group\na,0\nb,1\nc,0\n")
save("csv", "bad_label.csv", b"Id,Target\na,28\n")
save("csv", "duplicate.csv", b"Id,Target\na,1\na,2\n")


# ---- pack -------------------------------------------------------------------------------
M = (1 << 64) - 1
P1, P2, P3, P4, P5 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def xxh_round(acc, lane):
    return (rotl((acc + lane * P2) & M, 31) * P1) & M


def xxh64(data, seed=0):
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            v = [xxh_round(v[k], struct.unpack_from("<Q", data, i + 8 * k)[0]) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for x in v:
            h = ((h ^ xxh_round(0, x)) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ xxh_round(0, struct.unpack_from("<Q", data, i)[0]), 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ (struct.unpack_from("<I", data, i)[0] * P1 & M), 23) * P2 + P3) & M
        i += 4
    while i < n:
        h = (rotl(h ^ (data[i] * P5 & M), 11) * P1) & M
        i += 1
    h ^= h >> 33
    h = (h * P2) & M
    h ^= h >> 29
    h = (h * P3) & M
    return h ^ (h >> 32)


assert xxh64(b"abc") == 0x44BC2CF5AD770999
assert xxh64(b"The quick brown fox jumps over the lazy dog") == 0x0B242D361FDA71BC


def transposed(size, image):
    """The 4 planes of image, each transposed: out[c][x][y] = image[c][y][x]."""
    return bytes(image[c * size * size + y * size + x] for c in range(4) for x in range(size) for y in range(size))


def pack(size, samples, version=1, transposed_copy=False):
    """samples: list of (id, label list, image bytes of 4*size*size). Version 1 has no flags;
    version 2 may set flag bit 0, the transposed copy (each sample's planes, then the same
    planes transposed)."""
    align8 = lambda x: (x + 7) & ~7
    if transposed_copy:
        assert version >= 2
        samples = [(sid, labels, image + transposed(size, image)) for sid, labels, image in samples]
    count, sample_bytes = len(samples), (8 if transposed_copy else 4) * size * size
    ids = b"".join(s[0].encode() for s in samples)
    images_offset = 4096
    labels_offset = images_offset + count * sample_bytes
    id_offsets_offset = align8(labels_offset + count * 28)
    id_bytes_offset = id_offsets_offset + 8 * (count + 1)
    checksums_offset = align8(id_bytes_offset + len(ids))
    file_size = checksums_offset + 8 * count
    body = bytearray(file_size)
    offset = 0
    for i, (sid, labels, image) in enumerate(samples):
        body[images_offset + i * sample_bytes:images_offset + (i + 1) * sample_bytes] = image
        for c in labels:
            body[labels_offset + 28 * i + c] = 1
        struct.pack_into("<Q", body, id_offsets_offset + 8 * i, offset)
        offset += len(sid)
        struct.pack_into("<Q", body, checksums_offset + 8 * i, xxh64(bytes(image)))
    struct.pack_into("<Q", body, id_offsets_offset + 8 * count, offset)
    body[id_bytes_offset:id_bytes_offset + len(ids)] = ids
    header = struct.pack("<8sIIQIIII", b"HPAPACK\0", version, 128, count, size, 4, 28, 1 if transposed_copy else 0)
    header += struct.pack("<QQQQQQQ", images_offset, sample_bytes, labels_offset, id_offsets_offset, len(ids),
                          checksums_offset, file_size)
    header += struct.pack("<Q", xxh64(bytes(body[128:])))
    header += struct.pack("<Q", xxh64(header))
    header += bytes(128 - len(header))
    body[:128] = header
    return bytes(body)


save("pack", "two_samples_s2.pack", pack(2, [("a", [0, 25], bytes(range(16))), ("sample-2", [27], bytes(range(100, 116)))]))
save("pack", "empty.pack", pack(3, []))
save("pack", "transposed_copy_s3_v2.pack",
     pack(3, [("t0", [1], bytes(range(36))), ("t-1", [], bytes(range(200, 236)))], version=2, transposed_copy=True))
print("corpus written under", ROOT)
