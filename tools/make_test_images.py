#!/usr/bin/env python3
"""Writes reference images with other tools (PIL, tifffile, numpy, pypng, libtiff's tiffcp) for
tests/test_data_io.cpp.

usage: make_test_images.py OUT_DIR

For every image OUT_DIR/<name> it writes OUT_DIR/<name>.raw, the exact samples that went
into the file (or, for lossy JPEG, what PIL decodes from it), interleaved height x width x
channels, little-endian, and one line in OUT_DIR/manifest.txt:
    <name> <width> <height> <channels> <bits> <exact|lossy>
Exits with status 3 and a message on stderr when numpy, PIL, tifffile or pypng (Debian:
python3-png) is missing, or tiffcp (Debian: libtiff-tools), so the C++ test can skip instead
of fail. scripts/setup.sh installs them all.
"""
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    from PIL import Image
    import png  # pypng: the one writer here of interlaced (Adam7) PNGs
    import tifffile
except ImportError as error:  # the C++ test turns this into a skip
    print(f"make_test_images.py: missing Python module: {error.name}", file=sys.stderr)
    sys.exit(3)
if shutil.which("tiffcp") is None:
    print("make_test_images.py: tiffcp (libtiff-tools) not found", file=sys.stderr)
    sys.exit(3)

WIDTH, HEIGHT = 53, 37  # odd sizes: partial tiles, partial strips, odd rows


def pattern(channels, bits, seed):
    """Smooth gradients plus noise: every value and every filter type gets exercised."""
    rng = np.random.default_rng(seed)
    top = 255 if bits == 8 else 65535
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    planes = []
    for c in range(channels):
        base = (x * (c + 3) * 7 + y * 11 * (c + 1)) % (top + 1)
        noise = rng.integers(0, top // 8 + 1, size=(HEIGHT, WIDTH))
        planes.append((base + noise) % (top + 1))
    a = np.stack(planes, axis=-1).astype(np.uint8 if bits == 8 else np.uint16)
    a[0, 0, :] = 0  # the extremes are always present
    a[-1, -1, :] = top
    return a


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = []

    def record(name, array, kind="exact"):
        a = np.ascontiguousarray(array)
        if a.ndim == 2:
            a = a[:, :, None]
        a.astype(a.dtype.newbyteorder("<")).tofile(os.path.join(out, name + ".raw"))
        manifest.append(f"{name} {a.shape[1]} {a.shape[0]} {a.shape[2]} {a.dtype.itemsize * 8} {kind}")

    gray8 = pattern(1, 8, 1)[:, :, 0]
    gray16 = pattern(1, 16, 2)[:, :, 0]
    rgb8 = pattern(3, 8, 3)
    rgba8 = pattern(4, 8, 4)
    rgb16 = pattern(3, 16, 5)

    # PNG through PIL (zlib, adaptive filters), 8 and 16 bit, gray, RGB, RGBA, palette.
    Image.fromarray(gray8, "L").save(os.path.join(out, "pil_gray8.png"))
    record("pil_gray8.png", gray8)
    Image.fromarray(gray8, "L").save(os.path.join(out, "pil_gray8_optimized.png"), optimize=True)
    record("pil_gray8_optimized.png", gray8)
    Image.fromarray(gray16.astype(np.uint16), "I;16").save(os.path.join(out, "pil_gray16.png"))
    record("pil_gray16.png", gray16)
    Image.fromarray(rgb8, "RGB").save(os.path.join(out, "pil_rgb8.png"))
    record("pil_rgb8.png", rgb8)
    Image.fromarray(rgba8, "RGBA").save(os.path.join(out, "pil_rgba8.png"))
    record("pil_rgba8.png", rgba8)
    palette = (gray8 // 16).astype(np.uint8)
    p = Image.fromarray(palette, "P")
    p.putpalette([v for i in range(16) for v in (i * 16, 255 - i * 16, i * 8)] + [0] * (3 * 240))
    p.save(os.path.join(out, "pil_palette.png"))
    record("pil_palette.png", np.asarray(p.convert("RGB")))

    # Interlaced (Adam7) PNG through pypng: seven passes of partial sizes at 53 x 37.
    def interlaced(name, array, **kwargs):
        rows = array.reshape(array.shape[0], -1)
        with open(os.path.join(out, name), "wb") as f:
            png.Writer(array.shape[1], array.shape[0], interlace=True, **kwargs).write(f, rows.tolist())
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(29)[28] == 1, name + " is not interlaced"  # IHDR's interlace method
        record(name, array)

    interlaced("pypng_gray8_interlaced.png", gray8, greyscale=True, bitdepth=8)
    interlaced("pypng_gray16_interlaced.png", gray16, greyscale=True, bitdepth=16)
    interlaced("pypng_rgb8_interlaced.png", rgb8, greyscale=False, bitdepth=8)

    # JPEG through PIL (libjpeg): lossy, so the reference is PIL's own decode of the file.
    smooth = ((np.mgrid[0:HEIGHT, 0:WIDTH][1] * 4 + np.mgrid[0:HEIGHT, 0:WIDTH][0] * 3) % 256).astype(np.uint8)
    Image.fromarray(smooth, "L").save(os.path.join(out, "pil_gray.jpg"), quality=95)
    record("pil_gray.jpg", np.asarray(Image.open(os.path.join(out, "pil_gray.jpg"))), "lossy")
    smooth_rgb = np.stack([smooth, 255 - smooth, smooth // 2], axis=-1)
    Image.fromarray(smooth_rgb, "RGB").save(os.path.join(out, "pil_rgb.jpg"), quality=95, subsampling=0)
    record("pil_rgb.jpg", np.asarray(Image.open(os.path.join(out, "pil_rgb.jpg"))), "lossy")

    # TIFF through tifffile: 8/16 bit, none/deflate compression, strips/tiles, planar layouts.
    def tiff(name, array, reference=None, **kwargs):
        tifffile.imwrite(os.path.join(out, name), array, **kwargs)
        record(name, array if reference is None else reference)

    tiff("tifffile_gray8.tif", gray8)
    tiff("tifffile_gray16.tif", gray16)
    tiff("tifffile_gray8_deflate.tif", gray8, compression="zlib")
    tiff("tifffile_gray16_deflate.tif", gray16, compression="zlib")
    tiff("tifffile_gray8_strips.tif", gray8, rowsperstrip=5)
    tiff("tifffile_gray8_tiled.tif", gray8, tile=(16, 16))
    tiff("tifffile_gray16_tiled_deflate.tif", gray16, tile=(16, 32), compression="zlib")
    tiff("tifffile_rgb8.tif", rgb8, photometric="rgb")
    # Separate planes are written plane by plane; the reader interleaves them.
    tiff("tifffile_rgb16_separate.tif", np.moveaxis(rgb16, -1, 0), rgb16, photometric="rgb", planarconfig="separate")
    tiff("tifffile_rgb8_separate_tiled.tif", np.moveaxis(rgb8, -1, 0), rgb8, photometric="rgb",
         planarconfig="separate", tile=(16, 16))
    tifffile.imwrite(os.path.join(out, "tifffile_miniswhite8.tif"), gray8, photometric="miniswhite")
    record("tifffile_miniswhite8.tif", 255 - gray8)  # min-is-white is inverted on read
    # TIFF through PIL's libtiff: LZW and PackBits.
    Image.fromarray(gray8, "L").save(os.path.join(out, "pil_gray8_lzw.tif"), compression="tiff_lzw")
    record("pil_gray8_lzw.tif", gray8)
    Image.fromarray(gray8, "L").save(os.path.join(out, "pil_gray8_packbits.tif"), compression="packbits")
    record("pil_gray8_packbits.tif", gray8)

    # JPEG-in-TIFF as YCbCr (2x2 chroma subsampling): what tiffcp writes from an RGB TIFF with
    # -c jpeg. Lossy, so the reference is PIL's decode. Checked to be YCbCr: PIL itself writes
    # JPEG-in-TIFF as RGB, which would not exercise the reader's YCbCr conversion.
    smooth_tif = os.path.join(out, "smooth_rgb.tif")
    tifffile.imwrite(smooth_tif, smooth_rgb, photometric="rgb")
    ycbcr = os.path.join(out, "tiffcp_ycbcr_jpeg.tif")
    subprocess.run(["tiffcp", "-c", "jpeg:95", smooth_tif, ycbcr], check=True)
    os.remove(smooth_tif)
    with tifffile.TiffFile(ycbcr) as t:
        page = t.pages[0]
        assert page.photometric == 6 and page.compression == 7, (page.photometric, page.compression)
    record("tiffcp_ycbcr_jpeg.tif", np.asarray(Image.open(ycbcr).convert("RGB")), "lossy")

    # Unsupported on purpose: 32-bit float samples must be refused with a clear error.
    tifffile.imwrite(os.path.join(out, "unsupported_float32.tif"), gray8.astype(np.float32))

    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
