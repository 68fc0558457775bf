#!/usr/bin/python3
"""Parity of hpa's models with PyTorch: same weights, same batch -> same logits, loss, every
parameter gradient and the updated BatchNorm statistics.

References: torchvision for resnet18/34/50/101/152, resnext50_32x4d, densenet121/169; timm
(pip's timm, pinned and installed by scripts/setup.sh) for the two models hpa mirrors from
it: se_resnext50_32x4d (timm's seresnext50_32x4d, the ResNet-class one) and inception_v4.
gapnet_pl has no reference implementation.

For one configuration (model, head, input size, batch, mode, dtype) this
  1. builds the reference with random weights from a fixed seed, the paper's 4-channel stem
     (the first convolution replaced by one with 4 input channels: conv1 of the ResNets,
     features.conv0 of DenseNet, features.0.conv of inception_v4) and a 28-class head, and
     randomizes every BatchNorm's weight, bias, running statistics and num_batches_tracked
     (the references' init leaves them at 1/0/0/1, where a transposed weight/bias or
     mean/var would go unnoticed);
  2. writes its state_dict with tools/convert_weights.py's pure-Python safetensors writer
     and a random input [N, 4, H, W] and {0,1} targets [N, 28] as .npy;
  3. runs `hpa_model check` on them (forward in the mode, loss = mean BCE-with-logits over
     all N x 28 elements, backward) and, in PyTorch, the same forward, loss and backward;
  4. compares logits, loss, every parameter gradient by name and, in training mode, every
     BatchNorm buffer after the forward (running_mean, running_var; num_batches_tracked
     exactly), and checks that hpa wrote exactly the expected keys.

Heads (models/classifier.h):
  gap  the reference's own head, its linear layer (torchvision: fc / classifier; timm:
       fc / last_linear) replaced by Linear(C, 28).
  acp  adaptive concat pooling, cat([avg, max], 1) -- average first, as the engine --
       then per buffering layer (units u, dropout p): BatchNorm1d, Dropout(p), Linear, ReLU;
       then BatchNorm1d, Linear(., 28). Built from plain torch.nn modules (no fastai).
       Parity needs dropout 0 ("512:0"): the two frameworks draw different masks.
DenseNet's torchvision forward hard-codes average pooling, so the acp variant wraps its
`features` in a module that applies relu -> ACP -> flatten -> classifier; the state_dict
keys are unchanged (features.*, classifier.*). timm's models pool through a `global_pool`
child (pool and flatten), which the acp variant replaces by timm's own
SelectAdaptivePool2d("catavgmax", flatten=True) (also average first); the linear child
(fc, last_linear) becomes the acp Sequential.

Tolerances (float64, the default): an element passes when
    |hpa - torch| <= RTOL * |torch| + ATOL * max|torch over the tensor|,  RTOL = ATOL = 1e-10.
Both sides compute the same formulas in a different order, so they differ by rounding
only: f64's unit roundoff is 1.1e-16, and the longest chains here (a 3x3x512 dot product,
tens of layers forward and back, BatchNorm's mean subtraction) amplify it by a few orders
of magnitude at most. Measured on the test's cases: worst element 0.4% of the tolerance
(max relative error 2e-10 on gradient elements 1000x below their tensor's largest, 1e-12
elsewhere). The bound stays 500x below float32's rounding (6e-8 relative): an op that
computes in float32 inside the f64 path, or any real formula difference, fails (the test
checks that a float32-rounded reference is rejected). The absolute term is relative to the
tensor's largest magnitude because gradient elements near zero are sums of terms of the
tensor's scale that cancel; their rounding error is of that scale, not of their own.
Comparing at float64 also keeps ReLU and max-pool kinks out of reach: a pre-activation
within 1e-16 of zero is needed to flip a branch, where float32 flips one every few runs.
Ill-conditioned configurations: with the acp head at batch 2, the head's BatchNorm1d over
two samples cancels almost all of the gradient it passes back, and the backbone's gradients
carry rounding far above the tolerance's estimate: on the ResNeXts (resnext50_32x4d,
se_resnext50_32x4d; acp 512:0, 64x64, batch 2, seed 2) PyTorch against itself with every
weight moved by one ulp differs by up to 7.5x the tolerance. Compare those with gap, or
acp at batch 3 (65x71: 0.07x).

--dtype f32 is a report, not a check (see run_case): hpa's f32 and PyTorch's f32 errors
against PyTorch's f64, side by side.

Usage (Debian's /usr/bin/python3 with python3-torch and python3-torchvision; timm's models
need timm too: run scripts/setup.sh):
    /usr/bin/python3 tools/torch_parity.py --build-dir build --model resnet50
    /usr/bin/python3 tools/torch_parity.py --build-dir build --model inception_v4 --size 107
    /usr/bin/python3 tools/torch_parity.py --build-dir build --model densenet121 --head acp \\
        --buffering 512:0 --size 65x71 --batch 3 --mode eval
inception_v4 needs at least 75x75, and at that size its last blocks run at 1x1, where
training-mode BatchNorm makes the result nearly independent of the earlier weights: 107x107
is the smallest input with a 2x2 final map.
Exit status 0 when every compared tensor is within tolerance (f64) and hpa wrote exactly
the expected keys, 1 otherwise.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_weights import read_safetensors, write_safetensors  # noqa: E402 (the tools/ sibling)

# The registry names of hpa that torchvision also has, and those mirrored from timm (hpa's
# name -> timm's; gapnet_pl has no reference implementation).
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                      "densenet121", "densenet169")
TIMM_MODELS = {"se_resnext50_32x4d": "seresnext50_32x4d", "inception_v4": "inception_v4"}
MODELS = TORCHVISION_MODELS + tuple(TIMM_MODELS)
TIMM_MISSING = "timm is not installed: run scripts/setup.sh (it installs the pinned timm with pip)"
CLASSES = 28
IN_CHANNELS = 4
TOLERANCES = {"f64": (1e-10, 1e-10)}  # (RTOL, ATOL relative to max|torch|)


class AdaptiveConcatPool2d(nn.Module):
    """[N, C, H, W] -> [N, 2C, 1, 1]: average then max (the engine's and golden tests' order)."""

    def forward(self, x):
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)


def acp_head(channels, classes, buffering):
    """models/classifier.h's acp head: [BN1d, Dropout, Linear, ReLU] per buffering layer, BN1d, Linear."""
    layers, width = [], 2 * channels
    for units, p in buffering:
        layers += [nn.BatchNorm1d(width), nn.Dropout(p), nn.Linear(width, units), nn.ReLU()]
        width = units
    layers += [nn.BatchNorm1d(width), nn.Linear(width, classes)]
    return nn.Sequential(*layers)


class DenseNetWithPool(nn.Module):
    """torchvision DenseNet's forward with the pooling as a module (its own hard-codes average)."""

    def __init__(self, features, pool, classifier):
        super().__init__()
        self.features = features
        self.pool = pool
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(F.relu(self.features(x))), 1))


def parse_buffering(spec):
    """"1024:0.5,512:0" -> [(1024, 0.5), (512, 0.0)]; "" or "none" -> []."""
    if spec in ("", "none"):
        return []
    layers = []
    for item in spec.split(","):
        units, _, p = item.partition(":")
        layers.append((int(units), float(p)))
    return layers


def import_timm():
    """The timm module; RuntimeError(TIMM_MISSING) when it is not installed."""
    try:
        import timm
    except ImportError as e:
        raise RuntimeError(TIMM_MISSING) from e
    return timm


def widened_conv(old, in_channels):
    """`old`'s convolution (no bias) with `in_channels` inputs."""
    return nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                     old.groups, bias=False)


def build_timm_model(name, head, buffering, classes, in_channels):
    """timm's reference of hpa's `name`: stem conv widened, its head replaced (see the docstring)."""
    timm = import_timm()
    from timm.layers import SelectAdaptivePool2d
    model = timm.create_model(TIMM_MODELS[name], pretrained=False)
    if name == "inception_v4":
        model.features[0].conv = widened_conv(model.features[0].conv, in_channels)
        head_name = "last_linear"
    else:
        model.conv1 = widened_conv(model.conv1, in_channels)
        head_name = "fc"
    channels = getattr(model, head_name).in_features
    if head == "gap":
        setattr(model, head_name, nn.Linear(channels, classes))
    else:
        model.global_pool = SelectAdaptivePool2d(pool_type="catavgmax", flatten=True)
        setattr(model, head_name, acp_head(channels, classes, buffering))
    return model


def build_torch_model(name, head="gap", buffering=(), classes=CLASSES, in_channels=IN_CHANNELS, seed=0):
    """The torchvision or timm reference of hpa's `name` with the 4-channel stem and the given head."""
    if name not in MODELS:
        raise ValueError(f"no reference for '{name}' (have: {', '.join(MODELS)})")
    if head not in ("gap", "acp"):
        raise ValueError(f"head '{head}' is unknown (known: gap, acp)")
    if head == "gap" and buffering:
        raise ValueError("buffering layers need the acp head")
    torch.manual_seed(seed)
    if name in TIMM_MODELS:
        return build_timm_model(name, head, buffering, classes, in_channels)
    model = getattr(torchvision.models, name)(weights=None)
    if name.startswith("densenet"):
        old = model.features.conv0
        model.features.conv0 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                                         bias=False)
        channels = model.classifier.in_features
        if head == "gap":
            model.classifier = nn.Linear(channels, classes)
        else:
            model = DenseNetWithPool(model.features, AdaptiveConcatPool2d(), acp_head(channels, classes, buffering))
    else:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        channels = model.fc.in_features
        if head == "gap":
            model.fc = nn.Linear(channels, classes)
        else:
            model.avgpool = AdaptiveConcatPool2d()
            model.fc = acp_head(channels, classes, buffering)
    return model


def randomize_batchnorm(model, seed):
    """Random BN weight, bias, running stats and counter, so that each is distinguishable."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def parse_size(s):
    """"64" -> (64, 64); "65x71" -> (65, 71)."""
    parts = s.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"size '{s}' is not S or HxW")
    return int(parts[0]), int(parts[1])


class Stats:
    """Worst errors of one kind of tensor (logits, gradients, ...) over a case."""

    def __init__(self):
        self.tensors = 0
        self.max_abs = 0.0
        self.max_rel = 0.0  # |a - r| / |r| over elements with |r| >= 1e-3 max|r| (near-zero ones excluded)
        self.max_tol = 0.0  # worst |a - r| / (RTOL |r| + ATOL max|r|): above 1 fails
        self.scaled = []  # per tensor: max|a - r| / max|r|
        self.worst = ""

    def add(self, name, actual, ref, rtol, atol):
        self.tensors += 1
        a = np.asarray(actual, dtype=np.float64)
        r = np.asarray(ref, dtype=np.float64)
        if a.shape != r.shape:
            self.max_tol = float("inf")
            self.worst = f"{name}: shape {a.shape} vs torch {r.shape}"
            return
        if r.size == 0:
            return
        err = np.abs(a - r)
        scale = float(np.max(np.abs(r)))
        allowed = rtol * np.abs(r) + atol * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(allowed > 0, err / allowed, np.where(err > 0, np.inf, 0.0))
        frac = np.where(np.isfinite(a) & np.isfinite(r), frac, np.inf)
        big = np.abs(r) >= 1e-3 * scale
        rel = float(np.max(err[big] / np.abs(r[big]))) if scale > 0 and big.any() else 0.0
        self.max_abs = max(self.max_abs, float(np.max(err)))
        self.max_rel = max(self.max_rel, rel)
        self.scaled.append(float(np.max(err)) / scale if scale > 0 else float(np.max(err)))
        i = int(np.argmax(frac))
        if frac.flat[i] > self.max_tol or not self.worst:
            self.max_tol = max(self.max_tol, float(frac.flat[i]))
            where = np.unravel_index(i, r.shape) if r.ndim else ()
            self.worst = f"{name}[{where}]: hpa {a.flat[i]!r} torch {r.flat[i]!r}"

    def ok(self):
        return self.max_tol <= 1.0


def to_numpy(t):
    return t.detach().cpu().numpy().copy()


def torch_step(name, head, buffering, state, x, y, mode, torch_dtype, seed):
    """PyTorch's side of `hpa_model check`: {logits, loss, parameter gradients, buffers.* after the forward}."""
    model = build_torch_model(name, head, buffering, seed=seed).to(torch_dtype)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.train(mode == "train")
    logits = model(x.to(torch_dtype))
    loss = F.binary_cross_entropy_with_logits(logits, y.to(torch_dtype))
    loss.backward()
    out = {"logits": to_numpy(logits), "loss": to_numpy(loss)}
    for n, p in model.named_parameters():
        out[n] = to_numpy(p.grad) if p.grad is not None else None
    if mode == "train":
        out.update({"buffers." + n: to_numpy(b) for n, b in model.named_buffers()})
    return out


def compare(hpa, ref, rtol, atol):
    """Per-kind Stats of hpa's outputs against `ref` (both dicts from the same key set), and problems."""
    problems = []
    missing, extra = sorted(ref.keys() - hpa.keys()), sorted(hpa.keys() - ref.keys())
    for what, keys in (("keys missing from hpa's output", missing), ("unexpected keys in hpa's output", extra)):
        if keys:
            problems.append(f"{what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
    stats = {k: Stats() for k in ("logits", "loss", "gradients", "bn_stats")}
    for key, r in ref.items():
        if key not in hpa:
            continue
        if r is None:
            problems.append(f"torch has no gradient for {key}")
        elif key.endswith("num_batches_tracked"):
            if int(np.asarray(hpa[key])) != int(r):
                problems.append(f"{key}: hpa {int(np.asarray(hpa[key]))}, torch {int(r)}")
        else:
            kind = key if key in ("logits", "loss") else "bn_stats" if key.startswith("buffers.") else "gradients"
            stats[kind].add(key, hpa[key], r, rtol, atol)
    return stats, problems


def run_case(hpa_model, name, head="gap", buffering="none", size=(64, 64), batch=2, mode="train", dtype="f64",
             seed=0, workdir=None, corrupt=None, quiet=False):
    """One comparison. Returns (ok, {kind: Stats}, problems). `corrupt(state)` may alter the
    weights given to hpa only (the test's proof that a wrong model is caught).

    f64: hpa against PyTorch in float64, within TOLERANCES["f64"].
    f32: a report, not a check. Weights and input are rounded to float32 values; hpa's f32
    run and PyTorch's f32 run are each compared with PyTorch's f64 run on the same values
    (the truth), kind by kind. No tolerance decides it, because an f32 comparison of
    gradients is ill-posed: a ReLU input or a max-pool candidate within rounding of the
    kink takes the other branch in one framework, which moves every gradient below it by
    up to the size of that element's gradient (seen: resnet18, 65x71 eval, one element of
    layer2.1's output at 4.7e-6 is zeroed in one run only, and layer2.1.bn2.bias's
    gradient moves by 0.7% of its scale). Only failures to run and wrong keys fail it.
    """
    layers = parse_buffering(buffering)
    model = build_torch_model(name, head, layers, seed=seed)
    randomize_batchnorm(model, seed + 1)
    state = {k: to_numpy(v.double() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(batch, IN_CHANNELS, size[0], size[1], generator=gen, dtype=torch.float64)
    y = (torch.rand(batch, CLASSES, generator=gen, dtype=torch.float64) < 0.3).double()
    np_dtype = np.float64 if dtype == "f64" else np.float32
    if dtype == "f32":  # the same values in both precisions
        state = {k: v.astype(np.float32).astype(np.float64) if v.dtype == np.float64 else v for k, v in state.items()}
        x = x.float().double()

    own_dir = None
    if workdir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="hpa_parity_")
        workdir = own_dir.name
    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f"{name}_{k}") for k in ("weights.safetensors", "x.npy", "y.npy", "out.safetensors")}
    given = {k: v.astype(np_dtype) if v.dtype == np.float64 else v.copy() for k, v in state.items()}
    if corrupt is not None:
        corrupt(given)
    write_safetensors(paths["weights.safetensors"], given)
    np.save(paths["x.npy"], x.numpy().astype(np_dtype))
    np.save(paths["y.npy"], y.numpy().astype(np_dtype))
    cmd = [hpa_model, "check", "--model", name, "--head", head, "--buffering", buffering, "--classes", str(CLASSES),
           "--weights", paths["weights.safetensors"], "--input", paths["x.npy"], "--target", paths["y.npy"],
           "--out", paths["out.safetensors"], "--" + mode, "--dtype", dtype]
    run = subprocess.run(cmd, capture_output=True, text=True)
    hpa = read_safetensors(paths["out.safetensors"]) if run.returncode == 0 else None
    if own_dir:
        own_dir.cleanup()
    if hpa is None:
        return False, {}, [f"hpa_model check failed ({run.returncode}): {run.stderr.strip()}"]

    truth = torch_step(name, head, layers, state, x, y, mode, torch.float64, seed)
    rtol, atol = TOLERANCES["f64"]
    if dtype == "f64":
        stats, problems = compare(hpa, truth, rtol, atol)
        problems += [f"{kind}: worst element {s.max_tol:.3g}x the tolerance at {s.worst}"
                     for kind, s in stats.items() if not s.ok()]
        if not quiet:
            print_summary(name, head, buffering, size, batch, mode, dtype, stats, problems)
        return not problems, stats, problems
    reference = torch_step(name, head, layers, state, x, y, mode, torch.float32, seed)
    stats, problems = compare(hpa, truth, rtol, atol)
    torch_stats, _ = compare(reference, truth, rtol, atol)
    if not quiet:
        print_f32_report(name, head, buffering, size, batch, mode, stats, torch_stats, problems)
    return not problems, stats, problems


def case_label(name, head, buffering, size, batch, mode, dtype):
    return (f"{name} {head}{'' if head == 'gap' else ' ' + buffering} {batch}x{IN_CHANNELS}x{size[0]}x{size[1]}"
            f" {mode} {dtype}")


def print_summary(name, head, buffering, size, batch, mode, dtype, stats, problems):
    rtol, atol = TOLERANCES["f64"]
    print(f"{case_label(name, head, buffering, size, batch, mode, dtype)}: {'OK' if not problems else 'MISMATCH'}"
          f" (rtol {rtol:g}, atol {atol:g} x max|torch|)")
    for kind, s in stats.items():
        if s.tensors:
            print(f"  {kind:<10} {s.tensors:4d} tensors  max abs {s.max_abs:.3e}  max rel {s.max_rel:.3e}"
                  f"  worst {s.max_tol:.3g} x tol")
    for p in problems:
        print(f"  FAIL {p}")
    sys.stdout.flush()


def print_f32_report(name, head, buffering, size, batch, mode, stats, torch_stats, problems):
    print(f"{case_label(name, head, buffering, size, batch, mode, 'f32')}: report against PyTorch float64"
          f" (error / max|f64| per tensor; median and worst over the tensors of a kind){' FAIL' if problems else ''}")
    for kind, s in stats.items():
        t = torch_stats[kind]
        if s.tensors and t.tensors:
            print(f"  {kind:<10} {s.tensors:4d} tensors  hpa f32: median {np.median(s.scaled):.2e} worst"
                  f" {max(s.scaled):.2e}   torch f32: median {np.median(t.scaled):.2e} worst {max(t.scaled):.2e}")
    for p in problems:
        print(f"  FAIL {p}")
    sys.stdout.flush()


def find_hpa_model(build_dir, explicit):
    path = explicit or os.path.join(build_dir, "hpa_model")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"torch_parity: {path} is not an executable (build the hpa_model target, or pass --hpa-model)")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--head", default="gap", choices=("gap", "acp"))
    p.add_argument("--buffering", default=None, help='acp buffering layers (default "512:0"; dropout must be 0)')
    p.add_argument("--size", type=parse_size, default=(64, 64), help="S or HxW (default 64)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--mode", default="train", choices=("train", "eval"))
    p.add_argument("--dtype", default="f64", choices=("f64", "f32"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-dir", default="build", help="where hpa_model is (default build)")
    p.add_argument("--hpa-model", default=None, help="path of the hpa_model executable (overrides --build-dir)")
    p.add_argument("--keep", default=None, metavar="DIR", help="write the exchanged files to DIR and keep them")
    args = p.parse_args(argv)
    buffering = args.buffering if args.buffering is not None else ("512:0" if args.head == "acp" else "none")
    if args.head == "gap" and buffering != "none":
        p.error("--buffering needs --head acp")
    if any(d > 0 for _, d in parse_buffering(buffering)):
        print("torch_parity: warning: dropout > 0 draws different masks in the two frameworks; expect a mismatch",
              file=sys.stderr)
    hpa_model = find_hpa_model(args.build_dir, args.hpa_model)
    if args.model in TIMM_MODELS:
        try:
            import_timm()
        except RuntimeError as e:
            raise SystemExit(f"torch_parity: {e}")
    ok, _, _ = run_case(hpa_model, args.model, args.head, buffering, args.size, args.batch, args.mode, args.dtype,
                        args.seed, args.keep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
