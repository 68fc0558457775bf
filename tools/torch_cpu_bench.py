#!/usr/bin/python3
"""PyTorch (CPU, float32) at the shapes of bench/bench_cpu_ops.cpp, timed the same way.

Run it with Debian's interpreter and torch (/usr/bin/python3, python3-torch 1.13), not a
pyenv python that may be first on PATH. tools/run_cpu_bench.sh runs it next to the hpa
benchmark and prints the ratios.

Timing, matching the Google Benchmark setup of bench_cpu_ops (manual wall time):
two warm-up calls, then per repetition as many calls as fill --min-time seconds (the
first repetition picks the count, like Google Benchmark), each call timed with
perf_counter, allocation and release of its result included; the repetition's mean is
one sample and the reported time is the median of --repetitions samples.

What is timed on the PyTorch side:
  conv2d_fwd         F.conv2d under no_grad
  conv2d_bwd_data    aten::convolution_backward with output_mask (True, False, False):
  conv2d_bwd_filter  ... and (False, True, False); what autograd's ConvolutionBackward0
                     calls when only x (or only w) requires grad. On this build it goes to
                     oneDNN (mkldnn) whenever more than one thread is used. Each conv also
                     runs with channels_last tensors (NAME@channels_last), where oneDNN
                     skips the per-call reorders of the activations.
  linear_fwd         F.linear (x w^T + b) under no_grad
  linear_bwd         torch.autograd.grad of F.linear w.r.t. x, w, b (dx, dw, db) through
                     a graph built once (retain_graph), so only the backward is timed
  concat_pool_fwd    cat(adaptive_avg_pool2d(x, 1), adaptive_max_pool2d(x, 1)) (hpa's
                     avg-then-max order; fastai's AdaptiveConcatPool2d concatenates max
                     first, the same work), under no_grad
  concat_pool_bwd    torch.autograd.grad of that w.r.t. x
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# Same names and shapes as bench/bench_cpu_ops.cpp: (name, N, C_in, H, W, C_out, k, stride, pad, groups)
CONV_CASES = [
    ("8x64x56x56_3x3_64", 8, 64, 56, 56, 64, 3, 1, 1, 1),
    ("8x256x28x28_1x1_128", 8, 256, 28, 28, 128, 1, 1, 0, 1),
    ("8x128x28x28_3x3_128", 8, 128, 28, 28, 128, 3, 1, 1, 1),
    ("8x4x224x224_7x7s2_64", 8, 4, 224, 224, 64, 7, 2, 3, 1),
    ("8x128x56x56_3x3_128_g32", 8, 128, 56, 56, 128, 3, 1, 1, 32),
]
LINEAR_CASES = [("64x2048_1024", 64, 2048, 1024), ("64x4096_1024", 64, 4096, 1024)]
POOL_CASE = ("32x2048x16x16", 32, 2048, 16, 16)


def measure(fn, repetitions, min_time):
    """Median over repetitions of the mean per-call wall time (seconds)."""
    for _ in range(2):
        fn()
    # Pick the per-repetition call count the way Google Benchmark does: grow until a batch
    # of calls lasts min_time.
    iters = 1
    while True:
        total = 0.0
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            total += time.perf_counter() - t0
        if total >= min_time or iters >= 1_000_000:
            break
        multiplier = 1.4 * min_time / max(total, 1e-9)
        if total < min_time / 10:
            multiplier = min(multiplier, 10.0)
        iters = max(iters + 1, int(iters * multiplier))
    samples = [total / iters]
    for _ in range(repetitions - 1):
        total = 0.0
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            total += time.perf_counter() - t0
        samples.append(total / iters)
    return statistics.median(samples), samples, iters


def conv_benchmarks(formats):
    out = []
    for name, n, cin, h, w, cout, k, s, p, g in CONV_CASES:
        gen = torch.Generator().manual_seed(1)
        x0 = torch.randn(n, cin, h, w, generator=gen)
        w0 = torch.randn(cout, cin // g, k, k, generator=gen)
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        gy0 = torch.randn(n, cout, ho, wo, generator=gen)
        flop = 2.0 * n * cout * ho * wo * (cin // g) * k * k
        for fmt in formats:
            memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            x, wt, gy = (t.contiguous(memory_format=memory_format) for t in (x0, w0, gy0))
            suffix = "" if fmt == "nchw" else "@" + fmt

            def fwd(x=x, wt=wt, s=s, p=p, g=g):
                with torch.no_grad():
                    return F.conv2d(x, wt, None, s, p, 1, g)

            def bwd(mask, x=x, wt=wt, gy=gy, s=s, p=p, g=g):
                return lambda: torch.ops.aten.convolution_backward(gy, x, wt, None, [s, s], [p, p], [1, 1], False,
                                                                   [0, 0], g, mask)

            out.append(("conv2d_fwd/" + name + suffix, fwd, flop, 0.0))
            out.append(("conv2d_bwd_data/" + name + suffix, bwd([True, False, False]), flop, 0.0))
            out.append(("conv2d_bwd_filter/" + name + suffix, bwd([False, True, False]), flop, 0.0))
    return out


def linear_benchmarks():
    out = []
    for name, batch, fin, fout in LINEAR_CASES:
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch, fin, generator=gen)
        w = torch.randn(fout, fin, generator=gen)
        b = torch.randn(fout, generator=gen)
        gy = torch.randn(batch, fout, generator=gen)
        flop = 2.0 * batch * fin * fout

        def fwd(x=x, w=w, b=b):
            with torch.no_grad():
                return F.linear(x, w, b)

        xr, wr, br = (t.clone().requires_grad_(True) for t in (x, w, b))
        yr = F.linear(xr, wr, br)

        def bwd(xr=xr, wr=wr, br=br, yr=yr, gy=gy):
            return torch.autograd.grad(yr, (xr, wr, br), gy, retain_graph=True)

        out.append(("linear_fwd/" + name, fwd, flop, 0.0))
        out.append(("linear_bwd/" + name, bwd, 2 * flop, 0.0))
    return out


def pool_benchmarks():
    name, n, c, h, w = POOL_CASE
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=gen)
    gy = torch.randn(n, 2 * c, 1, 1, generator=gen)
    x_bytes, y_bytes = 4.0 * n * c * h * w, 4.0 * n * 2 * c

    def acp(t):
        return torch.cat([F.adaptive_avg_pool2d(t, 1), F.adaptive_max_pool2d(t, 1)], 1)

    def fwd():
        with torch.no_grad():
            return acp(x)

    xr = x.clone().requires_grad_(True)
    yr = acp(xr)

    def bwd():
        return torch.autograd.grad(yr, xr, gy, retain_graph=True)

    return [("concat_pool_fwd/" + name, fwd, 0.0, x_bytes + y_bytes),
            ("concat_pool_bwd/" + name, bwd, 0.0, x_bytes + y_bytes)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per repetition (default 0.5)")
    parser.add_argument("--filter", default="", help="regular expression a benchmark name must match")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--conv-formats", default="nchw,channels_last",
                        help="memory formats for the convolutions, comma-separated: nchw (the engine's layout; "
                             "oneDNN reorders to its blocked layout and back on every call) and channels_last "
                             "(PyTorch's faster CPU path, reported as NAME@channels_last)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    benches = conv_benchmarks(args.conv_formats.split(",")) + linear_benchmarks() + pool_benchmarks()
    results = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn "
          f"{torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", file=sys.stderr)
    print(f"{'benchmark':45s} {'median ms':>10s} {'GFLOP/s':>9s} {'GB/s':>7s} {'calls':>6s}")
    for name, fn, flop, nbytes in benches:
        if not re.search(args.filter, name):
            continue
        median, samples, iters = measure(fn, args.repetitions, args.min_time)
        r = {"name": name, "median_s": median, "samples_s": samples, "calls_per_repetition": iters}
        if flop:
            r["gflops"] = flop / median / 1e9
        if nbytes:
            r["gbps"] = nbytes / median / 1e9
        results.append(r)
        print(f"{name:45s} {median * 1e3:10.3f} {r.get('gflops', 0):9.2f} {r.get('gbps', 0):7.2f} {iters:6d}",
              flush=True)
    if args.json:
        context = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                   "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
                   "repetitions": args.repetitions, "min_time_s": args.min_time,
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
        with open(args.json, "w") as f:
            json.dump({"context": context, "benchmarks": results}, f, indent=1)


if __name__ == "__main__":
    main()
