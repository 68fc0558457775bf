#!/usr/bin/python3
"""The command-line apps hpa_model (summary, check) and hpa_bench (step), run as a user runs
them, with their numbers checked against independent counts from torchvision.

summary:
  - resnet50, 3x224x224, 1000 classes, gap: parameters = 25,557,032 (torchvision's
    published count, and the sum over its state_dict's parameters) and forward FLOPs
    within 1% of 8.2 GFLOPs: the well-known ~4.1 GMACs of ResNet-50 at 224x224, counted as
    2 FLOPs per multiply-add. The FLOPs also equal, to rounding, an independent count of
    2 x multiply-adds of every Conv2d and Linear call of torchvision's model (forward hooks).
  - densenet121, 4x64x64, 28 classes, acp "1024:0.5": parameters and FLOPs equal those of
    the torchvision model with the same stem and head (tools/torch_parity.py builds it), and
    every Conv2d, Linear and BatchNorm of that model appears in hpa's layer table under the
    same qualified name (a backbone that bypassed the recorder would be caught here).
  - activation_bytes is the sum of the layer rows' output sizes; the text form prints the
    totals; unknown model / bad --input / bad --head / missing --classes: exit 2, one line.
check: a weight file with a missing, an unexpected and a shape-mismatched key fails with
  one error naming all three and the file; --train with --eval is a usage error.
bench: `hpa_bench step` (resnet18, batch 2, size 64) prints the JSON keys that
  tools/torch_step_bench.py prints too (both are run); --device cuda fails clearly on a
  machine without a GPU or a build without CUDA.

Run by ctest as `/usr/bin/python3 test_hpa_model.py --build-dir DIR`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_parity  # noqa: E402
from convert_weights import write_safetensors  # noqa: E402

FAILURES = []


def expect(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILURES.append(what)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def torch_counts(model, input_shape):
    """(parameters, 2 x multiply-adds of Conv2d and Linear calls, {qualified name: type}) of a forward."""
    flops = [0]

    def conv_hook(m, inp, out):
        flops[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        flops[0] += 2 * (inp[0].numel() // m.in_features) * m.in_features * m.out_features

    names = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear_hook)
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            names[name] = type(m).__name__
    model.eval()
    with torch.no_grad():
        model(torch.zeros(input_shape))
    return sum(p.numel() for p in model.parameters()), flops[0], names


def summary_json(hpa_model, *flags):
    r = run([hpa_model, "summary", "--json", *flags])
    if r.returncode != 0:
        expect(False, f"summary {' '.join(flags)} exits 0 (stderr: {r.stderr.strip()})")
        return None
    return json.loads(r.stdout)


def test_summary_resnet50(hpa_model):
    print("summary resnet50 3x224x224, 1000 classes, gap")
    s = summary_json(hpa_model, "--model", "resnet50", "--input", "3x224x224", "--classes", "1000", "--head", "gap")
    if s is None:
        return
    params, flops, names = torch_counts(torchvision.models.resnet50(weights=None), (1, 3, 224, 224))
    expect(s["params"] == 25_557_032, f"params {s['params']:,} == 25,557,032")
    expect(params == 25_557_032, f"torchvision's own count {params:,} == 25,557,032")
    expect(abs(s["flops"] / 8.2e9 - 1) < 0.01, f"flops {s['flops'] / 1e9:.4f} G within 1% of 8.2 G (2 x 4.1 GMACs)")
    expect(abs(s["flops"] - flops) <= 1e-9 * flops, f"flops equal torchvision's hook count {flops / 1e9:.6f} G")
    layer_names = {l["name"] for l in s["layers"]}
    missing = sorted(set(names) - layer_names)
    expect(not missing, f"every torchvision conv/linear/BN is a layer row ({len(names)}; missing: {missing[:5]})")
    bytes_sum = sum(4 * int(np.prod(l["output"])) for l in s["layers"])
    expect(s["activation_bytes"] == bytes_sum and bytes_sum > 0,
           f"activation_bytes {s['activation_bytes']:,} == sum of the rows' f32 outputs {bytes_sum:,}")
    expect(s["model"] == "resnet50" and s["input"] == [3, 224, 224], "model and input echoed")


def test_summary_densenet_acp(hpa_model):
    print("summary densenet121 4x64x64, 28 classes, acp 1024:0.5")
    s = summary_json(hpa_model, "--model", "densenet121", "--input", "4x64x64", "--classes", "28", "--head", "acp",
                     "--buffering", "1024:0.5")
    if s is None:
        return
    ref = torch_parity.build_torch_model("densenet121", "acp", [(1024, 0.5)])
    params, flops, names = torch_counts(ref, (1, 4, 64, 64))
    expect(s["params"] == params, f"params {s['params']:,} == torchvision + acp head {params:,}")
    expect(abs(s["flops"] - flops) <= 1e-9 * flops, f"flops {s['flops']:.6g} == torchvision hook count {flops:.6g}")
    rows = {l["name"]: l["type"] for l in s["layers"]}
    missing = sorted(n for n in names if n not in rows)
    expect(not missing, f"every torchvision conv/linear/BN is a layer row ({len(names)}; missing: {missing[:5]})")
    wrong = sorted(n for n, t in names.items() if n in rows and rows[n] != t)
    expect(not wrong, f"layer types agree with torchvision's ({wrong[:5]})")
    last = s["layers"][-1]
    expect(last["output"] == [1, 28] and last["type"] == "Linear", f"last row is the 28-class Linear ({last})")


def test_summary_text_and_errors(hpa_model):
    print("summary text form and errors")
    r = run([hpa_model, "summary", "--model", "resnet18", "--input", "4x64x64", "--classes", "28", "--head", "gap"])
    expect(r.returncode == 0 and "parameters:" in r.stdout and "GFLOPs" in r.stdout and "layer1.0.conv1" in r.stdout,
           "text summary prints the table and totals")
    cases = [
        (["--model", "resnet5", "--input", "3x224x224", "--classes", "10", "--head", "gap"], ["unknown model", "resnet50"]),
        (["--model", "resnet18", "--input", "3x224", "--classes", "10", "--head", "gap"], ["--input", "CxHxW"]),
        (["--model", "resnet18", "--input", "3x0x224", "--classes", "10", "--head", "gap"], ["--input"]),
        (["--model", "resnet18", "--input", "3xax224", "--classes", "10", "--head", "gap"], ["--input"]),
        (["--model", "resnet18", "--input", "3x224x224", "--classes", "10", "--head", "avg"], ["--head", "gap, acp"]),
        (["--model", "resnet18", "--input", "3x224x224", "--head", "gap"], ["--classes"]),
        (["--model", "resnet18", "--input", "3x64x64", "--classes", "10", "--head", "gap", "--buffering", "1024:0.5"],
         ["--buffering", "acp"]),
    ]
    for flags, words in cases:
        r = run([hpa_model, "summary", *flags])
        err = r.stderr.strip()
        expect(r.returncode == 2 and err.count("\n") == 0 and all(w in err for w in words),
               f"{' '.join(flags[:6])}...: exit 2, one line naming {words} (got {r.returncode}: {err!r:.160})")


def test_check_errors(hpa_model, tmp):
    print("check: bad weights and flags")
    model = torch_parity.build_torch_model("resnet18", "gap")
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    del state["layer1.0.bn1.running_mean"]
    state["bogus.weight"] = np.zeros(3, dtype=np.float32)
    state["fc.weight"] = np.zeros((10, 512), dtype=np.float32)
    weights = os.path.join(tmp, "bad.safetensors")
    write_safetensors(weights, state)
    x, y = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(x, np.zeros((2, 4, 32, 32), dtype=np.float32))
    np.save(y, np.zeros((2, 28), dtype=np.float32))
    base = [hpa_model, "check", "--model", "resnet18", "--head", "gap", "--classes", "28", "--input", x, "--target", y,
            "--out", os.path.join(tmp, "out.safetensors")]
    r = run(base + ["--weights", weights])
    err = r.stderr.strip()
    expect(r.returncode == 1 and all(w in err for w in ("layer1.0.bn1.running_mean", "bogus.weight", "fc.weight", weights)),
           f"missing, unexpected and mismatched keys and the file named (got {r.returncode}: {err!r:.300})")
    r = run(base + ["--weights", weights, "--train", "--eval"])
    expect(r.returncode == 2 and "--eval" in r.stderr, f"--train with --eval is a usage error ({r.stderr.strip()!r})")
    r = run(base + ["--weights", os.path.join(tmp, "absent.safetensors")])
    expect(r.returncode == 1 and "absent.safetensors" in r.stderr, f"a missing weight file is named ({r.stderr.strip()!r})")


BENCH_KEYS = {"model", "batch", "size", "device", "dtype", "head", "threads", "warmup", "iters", "median_ms", "min_ms",
              "mean_ms", "images_per_s", "loss", "peak_memory_bytes"}


def test_bench(build_dir):
    print("hpa_bench step and tools/torch_step_bench.py")
    hpa_bench = os.path.join(build_dir, "hpa_bench")
    flags = ["--model", "resnet18", "--batch", "2", "--size", "64", "--warmup", "1", "--iters", "3", "--threads", "1",
             "--json"]
    r = run([hpa_bench, "step", *flags])
    if r.returncode != 0:
        expect(False, f"hpa_bench step exits 0 (stderr: {r.stderr.strip()})")
        return
    h = json.loads(r.stdout)
    expect(BENCH_KEYS <= h.keys(), f"hpa_bench JSON keys (missing {sorted(BENCH_KEYS - h.keys())})")
    expect(h["median_ms"] > 0 and h["min_ms"] <= h["median_ms"] and
           abs(h["images_per_s"] - 2000.0 / h["median_ms"]) < 1e-9 * h["images_per_s"],
           f"median {h['median_ms']:.1f} ms >= min {h['min_ms']:.1f} ms, images/s = batch / median")
    expect(h["threads"] == 1 and h["device"] == "cpu" and np.isfinite(h["loss"]), "threads, device and a finite loss")
    r = run([sys.executable, os.path.join(ROOT, "tools", "torch_step_bench.py"), *flags])
    if r.returncode != 0:
        expect(False, f"torch_step_bench.py exits 0 (stderr: {r.stderr.strip()[-300:]})")
        return
    t = json.loads(r.stdout)
    expect(BENCH_KEYS <= t.keys(), f"torch_step_bench JSON keys (missing {sorted(BENCH_KEYS - t.keys())})")
    print(f"  hpa   {h['median_ms']:.1f} ms/step, torch {t['median_ms']:.1f} ms/step (1 thread; not a benchmark)")
    r = run([hpa_bench, "step", "--model", "resnet18", "--batch", "2", "--size", "64", "--device", "cuda"])
    if r.returncode == 0:
        print("  (a GPU is present: --device cuda ran)")
    else:
        expect(r.returncode == 1 and "cuda" in r.stderr and r.stderr.strip().count("\n") == 0,
               f"--device cuda without a GPU: one clear line ({r.stderr.strip()!r})")
    r = run([hpa_bench, "step", "--model", "resnet18", "--batch", "0", "--size", "64"])
    expect(r.returncode == 2 and "--batch" in r.stderr, f"--batch 0 is a usage error ({r.stderr.strip()!r})")


def main():
    p = argparse.ArgumentParser(description="hpa_model and hpa_bench command-line tests")
    p.add_argument("--build-dir", required=True)
    args = p.parse_args()
    hpa_model = torch_parity.find_hpa_model(args.build_dir, None)
    test_summary_resnet50(hpa_model)
    test_summary_densenet_acp(hpa_model)
    test_summary_text_and_errors(hpa_model)
    with tempfile.TemporaryDirectory(prefix="hpa_model_test_") as tmp:
        test_check_errors(hpa_model, tmp)
    test_bench(args.build_dir)
    print(f"test_hpa_model: {len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
