#!/usr/bin/python3
"""PyTorch's side of `hpa_bench step`: the same training step, timed the same way, printed
with the same JSON keys.

One step = optimizer.zero_grad(set_to_none=True), forward in training mode, loss =
binary_cross_entropy_with_logits (mean over all B x K elements), backward, SGD update (lr
0.01, momentum 0.9). The model is the torchvision or timm reference with the 4-channel
stem and the gap or acp head that tools/torch_parity.py builds (so the same architecture
as hpa's registry name; timm's two need timm). The batch is fixed: random uint8 pixels as float (/255), made once on the
host and moved to the device, with random {0,1} targets (a quarter positive). W warm-up
steps, then N timed steps with time.perf_counter, each bracketed by
torch.cuda.synchronize() on cuda; median, min and mean step time and images/s = B / median.

Defaults follow hpa_bench: contiguous (NCHW) tensors; --channels-last converts the model
and the batch to channels_last (what cuDNN and oneDNN prefer). --threads T calls
torch.set_num_threads(T) (0: PyTorch's default). float32 only by default; --dtype f64
exists for symmetry with hpa_bench.

On cuda the math matches hpa's defaults: TF32 tensor-core math for the f32 convolutions
and GEMMs (hpa's cuda::allow_tf32(), on by default; PyTorch's default leaves it off for
matmuls) and cuDNN's algorithm search (torch.backends.cudnn.benchmark; hpa runs cudnnFind
in the warm-up). --no-tf32 turns TF32 off for both (compare with hpa_bench --no-tf32).

Usage (Debian's /usr/bin/python3 with python3-torch and python3-torchvision):
    /usr/bin/python3 tools/torch_step_bench.py --model resnet18 --batch 2 --size 64 --json
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_parity import MODELS, build_torch_model, parse_buffering  # noqa: E402 (tools/ sibling)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--head", default="gap", choices=("gap", "acp"))
    p.add_argument("--buffering", default="none", help='acp buffering layers, e.g. "1024:0.5"')
    p.add_argument("--classes", type=int, default=28)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--dtype", default="f32", choices=("f32", "f64"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels-last", action="store_true", help="model and batch in channels_last memory format")
    p.add_argument("--no-tf32", action="store_true", help="cuda: IEEE f32 convolutions and GEMMs (no TF32)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.batch < 1 or args.size < 1 or args.iters < 1 or args.warmup < 0 or args.threads < 0:
        p.error("--batch, --size and --iters must be >= 1; --warmup and --threads >= 0")
    if args.head == "gap" and args.buffering != "none":
        p.error("--buffering needs --head acp")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch.cuda.is_available() is False")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tf32 = device.type == "cuda" and not args.no_tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    dtype = torch.float32 if args.dtype == "f32" else torch.float64
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    model = build_torch_model(args.model, args.head, parse_buffering(args.buffering), args.classes, 4, args.seed)
    model = model.to(device=device, dtype=dtype, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    gen = torch.Generator().manual_seed(args.seed + 7)
    pixels = torch.randint(0, 256, (args.batch, 4, args.size, args.size), generator=gen, dtype=torch.uint8)
    x = (pixels.to(dtype) / 255.0).to(device).contiguous(memory_format=memory_format)
    y = (torch.rand(args.batch, args.classes, generator=gen) < 0.25).to(dtype).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = None
    for _ in range(args.warmup):
        loss = step()
    sync()
    times_ms = []
    for _ in range(args.iters):
        sync()
        t0 = time.perf_counter()
        loss = step()
        sync()
        times_ms.append((time.perf_counter() - t0) * 1000.0)
    last_loss = float(loss)
    if last_loss != last_loss or abs(last_loss) == float("inf"):
        raise SystemExit(f"torch_step_bench: {args.model} loss is {last_loss}")
    median_ms = statistics.median(times_ms)
    result = {
        "framework": "torch",
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "device": str(device),
        "dtype": args.dtype,
        "head": args.head,
        "buffering": args.buffering,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "iters": args.iters,
        "median_ms": median_ms,
        "min_ms": min(times_ms),
        "mean_ms": statistics.fmean(times_ms),
        "images_per_s": args.batch * 1000.0 / median_ms,
        "loss": last_loss,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "channels_last": args.channels_last,
        "tf32": tf32,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch_step_bench: {args.model} (head {args.head}), batch {args.batch} x 4 x {args.size} x {args.size},"
              f" {result['device']} {args.dtype}, {result['threads']} threads"
              f"{', channels_last' if args.channels_last else ''}")
        print(f"  {args.iters} timed steps after {args.warmup} warm-up: median {median_ms:.2f} ms,"
              f" min {result['min_ms']:.2f} ms, mean {result['mean_ms']:.2f} ms")
        print(f"  {result['images_per_s']:.2f} images/s; final loss {last_loss:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
