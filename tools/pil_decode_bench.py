#!/usr/bin/env python3
"""PNG decoding with PIL on the same files as bench/bench_data_io, side by side.

usage: pil_decode_bench.py [--dir DIR] [--bench BUILD/bench_data_io] [--rounds N]

Decodes every *.png under DIR (default /tmp/hpa_bench_png, which bench_data_io creates)
from memory into a numpy array, as a training pipeline would, and reports images/s on
wall-clock and on this thread's CPU time (the CPU figure is the fair one on a shared
machine). With --bench it then runs the C++ decoders on the same files in the same
invocation and prints the ratios.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import time

try:
    import numpy as np
    from PIL import Image
except ImportError as error:
    print(f"pil_decode_bench.py: missing Python module: {error.name}", file=sys.stderr)
    sys.exit(3)


def pil_rate(files, rounds):
    for data in files[:4]:  # warm-up
        np.asarray(Image.open(io.BytesIO(data)))
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(rounds):
        for data in files:
            a = np.asarray(Image.open(io.BytesIO(data)))
            assert a.dtype == np.uint8
    n = rounds * len(files)
    return n / (time.perf_counter() - wall), n / (time.thread_time() - cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/hpa_bench_png")
    parser.add_argument("--bench", help="path to bench_data_io, run on the same files")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    results = {}
    if args.bench:  # first, so it creates the default file set when missing
        env = dict(os.environ, HPA_BENCH_PNG_DIR=args.dir) if os.path.isdir(args.dir) else dict(os.environ)
        out = subprocess.run([args.bench, "--benchmark_filter=BM_PngDecode", "--benchmark_format=json"],
                             env=env, check=True, capture_output=True, text=True).stdout
        for b in json.loads(out)["benchmarks"]:
            # Google Benchmark's items_per_second is per CPU second; real_time gives the wall rate.
            seconds = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            results[b["name"].replace("BM_PngDecode", "")] = (1.0 / seconds, b["items_per_second"])

    paths = sorted(os.path.join(root, f) for root, _, names in os.walk(args.dir) for f in names if f.endswith(".png"))
    if not paths:
        sys.exit(f"pil_decode_bench.py: no PNG files under {args.dir}")
    files = [open(p, "rb").read() for p in paths]
    print(f"{len(files)} PNG files from {args.dir}, mean {sum(map(len, files)) / len(files) / 1024:.0f} KB, "
          f"PIL {Image.__version__}")
    results["PIL"] = pil_rate(files, args.rounds)

    pil_cpu = results["PIL"][1]
    print(f"{'decoder':<12} {'images/s (wall)':>16} {'images/s (CPU)':>15} {'vs PIL (CPU)':>13}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<12} {wall:16.1f} {cpu:15.1f} {cpu / pil_cpu:12.2f}x")


if __name__ == "__main__":
    main()
