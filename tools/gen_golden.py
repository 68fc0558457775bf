#!/usr/bin/python3
"""Golden reference data for tests/test_golden.cpp, computed with PyTorch in float64.

For every case this writes, into tests/golden/<case>/:
  <input>.npy            the inputs (random from a fixed per-case seed),
  <output>.npy           PyTorch's outputs,
  upstream_<output>.npy  a fixed random upstream gradient for each differentiable output,
  grad_<input>.npy       the gradient of sum_k <output_k, upstream_k> with respect to each
                         differentiable input (one backward pass covers the whole
                         vector-Jacobian product),
and tests/golden/README.md lists every case with its parameters. The C++ test hard-codes
the same parameters per case name; a mismatch shows up as a failing test, never a pass.

The files are committed, so the C++ test needs neither Python nor torch. To regenerate
(after changing a case, or to check that the stored data is reproducible):

    /usr/bin/python3 tools/gen_golden.py            # rewrites tests/golden/
    /usr/bin/python3 tools/gen_golden.py --check    # compares against the stored files

Use Debian's /usr/bin/python3 (python3-torch, python3-numpy), not another interpreter on
PATH. Inputs come from numpy's legacy RandomState, whose streams are frozen across NumPy
versions, so regenerating changes nothing unless a case changes.

Conventions the engine's ops follow (and these cases pin down):
  - adaptive concat pooling (ACP) is cat([adaptive_avg_pool2d(x, 1), adaptive_max_pool2d(x, 1)], 1):
    AVERAGE FIRST, then max;
  - per-sample losses are the MEAN over classes of the class-weighted elementwise loss;
  - focal loss: (1 - p_t)^gamma * bce with p_t = p*y + (1-p)*(1-y), p = sigmoid(x);
  - hard-sample top-k: the k largest losses, ties broken by the lower index.
"""

import argparse
import os
import shutil
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
MAX_TOTAL_BYTES = 2 * 1024 * 1024

torch.set_default_dtype(torch.float64)

CASES = []  # (name, description, builder)


def case(name, description):
    def register(builder):
        CASES.append((name, description, builder))
        return builder

    return register


class Case:
    """Inputs of one case; `run` evaluates the op and its backward and collects arrays."""

    def __init__(self, name):
        self.rng = np.random.RandomState(zlib.crc32(name.encode()))
        self.inputs = {}
        self.differentiable = []

    def randn(self, name, *shape, scale=1.0, grad=True):
        return self.add(name, self.rng.standard_normal(shape) * scale, grad)

    def uniform(self, name, low, high, *shape, grad=True):
        return self.add(name, self.rng.uniform(low, high, shape), grad)

    def add(self, name, array, grad=True):
        array = np.asarray(array)
        self.inputs[name] = array
        if grad:
            self.differentiable.append(name)
        return array

    def run(self, fn):
        """fn(tensors) -> tensor or dict name -> tensor. Outputs that require a gradient get
        an upstream gradient; the others (running stats, indices) are saved as they are."""
        tensors = {
            k: torch.tensor(v, requires_grad=k in self.differentiable) if v.dtype == np.float64 else torch.tensor(v)
            for k, v in self.inputs.items()
        }
        outputs = fn(tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = {"out": outputs}
        arrays = {k: v for k, v in self.inputs.items()}
        objective = None
        for name, out in outputs.items():
            arrays[name] = out.detach().numpy().copy()
            if out.requires_grad:
                upstream = self.rng.standard_normal(tuple(out.shape))
                arrays["upstream_" + name] = upstream
                term = (out * torch.tensor(upstream)).sum()
                objective = term if objective is None else objective + term
        if self.differentiable:
            assert objective is not None, "differentiable inputs but no differentiable output"
            objective.backward()
            for name in self.differentiable:
                grad = tensors[name].grad
                arrays["grad_" + name] = (torch.zeros_like(tensors[name]) if grad is None else grad).numpy().copy()
        return arrays


# ---- convolution ---------------------------------------------------------------------


def conv_case(name, description, x_shape, w_shape, bias, stride, padding, dilation, groups):
    @case(name, description)
    def build():
        c = Case(name)
        c.randn("x", *x_shape)
        c.randn("weight", *w_shape, scale=0.5)
        if bias:
            c.randn("bias", w_shape[0])
        return c.run(
            lambda t: F.conv2d(t["x"], t["weight"], t.get("bias"), stride=stride, padding=padding,
                               dilation=dilation, groups=groups))


conv_case("conv2d_stride2_pad1", "x[2,3,7,6] w[4,3,3,3] bias, stride 2, padding 1", (2, 3, 7, 6), (4, 3, 3, 3),
          True, 2, 1, 1, 1)
conv_case("conv2d_dilation2", "x[1,2,8,7] w[3,2,3,3] bias, stride 1, padding 2, dilation 2", (1, 2, 8, 7),
          (3, 2, 3, 3), True, 1, 2, 2, 1)
conv_case("conv2d_rect_asymmetric", "x[2,2,7,6] w[3,2,3,2] bias, stride (2,1), padding (1,0), dilation (1,2)",
          (2, 2, 7, 6), (3, 2, 3, 2), True, (2, 1), (1, 0), (1, 2), 1)
conv_case("conv2d_groups2", "x[2,4,5,5] w[6,2,3,3] no bias, stride 1, padding 0, groups 2", (2, 4, 5, 5),
          (6, 2, 3, 3), False, 1, 0, 1, 2)
conv_case("conv2d_resnext_grouped3x3",
          "ResNeXt-style grouped 3x3: x[2,16,5,5] w[16,4,3,3] no bias, stride 1, padding 1, groups 4",
          (2, 16, 5, 5), (16, 4, 3, 3), False, 1, 1, 1, 4)
conv_case("conv2d_grouped_stride2", "x[1,6,6,5] w[6,2,3,3] bias, stride 2, padding 1, groups 3", (1, 6, 6, 5),
          (6, 2, 3, 3), True, 2, 1, 1, 3)
conv_case("conv2d_1x1", "pointwise: x[2,5,3,4] w[7,5,1,1] bias", (2, 5, 3, 4), (7, 5, 1, 1), True, 1, 0, 1, 1)


# ---- linear --------------------------------------------------------------------------


@case("linear", "x[4,5] w[3,5] bias[3]")
def _():
    c = Case("linear")
    c.randn("x", 4, 5)
    c.randn("weight", 3, 5)
    c.randn("bias", 3)
    return c.run(lambda t: F.linear(t["x"], t["weight"], t["bias"]))


@case("linear_no_bias", "x[1,6] w[2,6] no bias (batch 1)")
def _():
    c = Case("linear_no_bias")
    c.randn("x", 1, 6)
    c.randn("weight", 2, 6)
    return c.run(lambda t: F.linear(t["x"], t["weight"]))


# ---- batch norm ----------------------------------------------------------------------


def batch_norm_case(name, training):
    @case(name, "x[3,4,3,2] gamma beta [4], running stats, momentum 0.1, eps 1e-5, "
          + ("training (batch stats; running_*_after hold the updated buffers)" if training else "eval"))
    def build():
        c = Case(name)
        c.randn("x", 3, 4, 3, 2, scale=2.0)
        c.uniform("weight", 0.5, 1.5, 4)
        c.randn("bias", 4)
        c.randn("running_mean", 4, grad=False)
        c.uniform("running_var", 0.5, 2.0, 4, grad=False)

        def fn(t):
            mean, var = t["running_mean"].clone(), t["running_var"].clone()
            out = F.batch_norm(t["x"], mean, var, t["weight"], t["bias"], training=training, momentum=0.1, eps=1e-5)
            return {"out": out, "running_mean_after": mean, "running_var_after": var}

        return c.run(fn)


batch_norm_case("batch_norm2d_train", True)
batch_norm_case("batch_norm2d_eval", False)


# ---- pooling -------------------------------------------------------------------------


def pool_case(name, description, kind, x_shape, kernel, stride, padding, ceil_mode, count_include_pad=True):
    @case(name, description)
    def build():
        c = Case(name)
        c.randn("x", *x_shape)
        if kind == "max":
            return c.run(lambda t: F.max_pool2d(t["x"], kernel, stride, padding, ceil_mode=ceil_mode))
        return c.run(lambda t: F.avg_pool2d(t["x"], kernel, stride, padding, ceil_mode=ceil_mode,
                                            count_include_pad=count_include_pad))


pool_case("max_pool2d_k3s2p1", "x[2,3,7,7] kernel 3 stride 2 padding 1 (ResNet stem)", "max", (2, 3, 7, 7), 3, 2,
          1, False)
pool_case("max_pool2d_ceil", "x[1,2,6,6] kernel 3 stride 2 ceil_mode", "max", (1, 2, 6, 6), 3, 2, 0, True)
pool_case("max_pool2d_rect", "x[2,2,5,6] kernel (3,2) stride (2,1) padding (1,0)", "max", (2, 2, 5, 6), (3, 2),
          (2, 1), (1, 0), False)
pool_case("avg_pool2d_k3s2p1", "x[2,3,7,7] kernel 3 stride 2 padding 1, count_include_pad True", "avg",
          (2, 3, 7, 7), 3, 2, 1, False, True)
pool_case("avg_pool2d_exclude_pad", "x[2,3,7,7] kernel 3 stride 2 padding 1, count_include_pad False", "avg",
          (2, 3, 7, 7), 3, 2, 1, False, False)
pool_case("avg_pool2d_ceil_pad",
          "x[1,2,6,6] kernel 3 stride 2 padding 1 ceil_mode, count_include_pad True (the last window is cut at "
          "the padded edge, so its divisor is 2x3, not 3x3)", "avg", (1, 2, 6, 6), 3, 2, 1, True, True)
pool_case("avg_pool2d_ceil_exclude_pad", "x[1,2,6,6] kernel 3 stride 2 padding 1 ceil_mode, count_include_pad False",
          "avg", (1, 2, 6, 6), 3, 2, 1, True, False)
pool_case("avg_pool2d_k2s2", "x[2,4,4,6] kernel 2 stride 2 (DenseNet transition)", "avg", (2, 4, 4, 6), 2, 2, 0,
          False)


@case("global_avg_pool2d", "x[2,3,4,5] -> [2,3,1,1]")
def _():
    c = Case("global_avg_pool2d")
    c.randn("x", 2, 3, 4, 5)
    return c.run(lambda t: F.adaptive_avg_pool2d(t["x"], 1))


@case("global_max_pool2d", "x[2,3,4,5] -> [2,3,1,1]")
def _():
    c = Case("global_max_pool2d")
    c.randn("x", 2, 3, 4, 5)
    return c.run(lambda t: F.adaptive_max_pool2d(t["x"], 1))


@case("adaptive_concat_pool2d", "x[2,3,4,5] -> [2,6,1,1] = cat([avg, max], 1): average first")
def _():
    c = Case("adaptive_concat_pool2d")
    c.randn("x", 2, 3, 4, 5)
    return c.run(lambda t: torch.cat([F.adaptive_avg_pool2d(t["x"], 1), F.adaptive_max_pool2d(t["x"], 1)], 1))


@case("adaptive_concat_pool2d_1x1", "x[1,4,1,1] (1x1 spatial): avg == max == x")
def _():
    c = Case("adaptive_concat_pool2d_1x1")
    c.randn("x", 1, 4, 1, 1)
    return c.run(lambda t: torch.cat([F.adaptive_avg_pool2d(t["x"], 1), F.adaptive_max_pool2d(t["x"], 1)], 1))


# ---- elementwise ---------------------------------------------------------------------


def unary_case(name, fn, make_input):
    @case(name, "x[3,4,5]")
    def build():
        c = Case(name)
        make_input(c)
        return c.run(lambda t: fn(t["x"]))


unary_case("relu", torch.relu, lambda c: c.randn("x", 3, 4, 5))
unary_case("selu", torch.selu, lambda c: c.randn("x", 3, 4, 5, scale=2.0))
unary_case("sigmoid", torch.sigmoid, lambda c: c.randn("x", 3, 4, 5, scale=3.0))
unary_case("exp", torch.exp, lambda c: c.randn("x", 3, 4, 5))
unary_case("log", torch.log, lambda c: c.uniform("x", 0.05, 5.0, 3, 4, 5))


def binary_case(name, op, a_shape, b_shape, b_away_from_zero=False):
    @case(name, "a%s %s b%s (broadcast)" % (list(a_shape), name.split("_")[0], list(b_shape)))
    def build():
        c = Case(name)
        c.randn("a", *a_shape)
        if b_away_from_zero:
            magnitude = c.rng.uniform(0.5, 2.0, b_shape)
            sign = np.where(c.rng.uniform(size=b_shape) < 0.5, -1.0, 1.0)
            c.add("b", magnitude * sign)
        else:
            c.randn("b", *b_shape)
        return c.run(lambda t: op(t["a"], t["b"]))


binary_case("add_channel_bias", torch.add, (2, 3, 4, 5), (1, 3, 1, 1))
binary_case("add_trailing", torch.add, (2, 3, 4), (4,))
binary_case("sub_both_sides", torch.sub, (2, 1, 4), (3, 1))
binary_case("mul_se_gate", torch.mul, (2, 3, 4, 5), (2, 3, 1, 1))
binary_case("mul_both_sides", torch.mul, (2, 1, 4, 1), (3, 1, 5))
binary_case("div_same_shape", torch.div, (3, 4), (3, 4), b_away_from_zero=True)
binary_case("div_broadcast", torch.div, (2, 3, 4), (3, 1), b_away_from_zero=True)
binary_case("div_scalar_tensor", torch.div, (2, 3), (), b_away_from_zero=True)


# ---- reductions ----------------------------------------------------------------------


def reduce_case(name, op, dims, keepdim):
    @case(name, "x[2,3,4,5], dims %s, keepdim %s" % (dims, keepdim))
    def build():
        c = Case(name)
        c.randn("x", 2, 3, 4, 5)
        if dims is None:
            return c.run(lambda t: op(t["x"]))
        return c.run(lambda t: op(t["x"], dim=dims, keepdim=keepdim))


reduce_case("sum_dims_1_3", torch.sum, [1, 3], False)
reduce_case("sum_last_keepdim", torch.sum, [-1], True)
reduce_case("sum_all", torch.sum, None, False)
reduce_case("mean_dims_0_2_keepdim", torch.mean, [0, 2], True)
reduce_case("mean_hw", torch.mean, [2, 3], False)
reduce_case("mean_all", torch.mean, None, False)


# ---- concat / split ------------------------------------------------------------------


@case("concat_dim1", "cat([a[2,3,4], b[2,1,4], c[2,2,4]], dim 1)")
def _():
    c = Case("concat_dim1")
    c.randn("a", 2, 3, 4)
    c.randn("b", 2, 1, 4)
    c.randn("c", 2, 2, 4)
    return c.run(lambda t: torch.cat([t["a"], t["b"], t["c"]], 1))


@case("concat_dim0", "cat([a[1,3], b[2,3]], dim 0)")
def _():
    c = Case("concat_dim0")
    c.randn("a", 1, 3)
    c.randn("b", 2, 3)
    return c.run(lambda t: torch.cat([t["a"], t["b"]], 0))


@case("split_dim1", "split(x[2,6,3], [1,2,3], dim 1) -> out0, out1, out2")
def _():
    c = Case("split_dim1")
    c.randn("x", 2, 6, 3)
    return c.run(lambda t: {"out%d" % i: p for i, p in enumerate(torch.split(t["x"], [1, 2, 3], 1))})


@case("split_last_dim", "split(x[3,5], [2,3], dim -1) -> out0, out1")
def _():
    c = Case("split_last_dim")
    c.randn("x", 3, 5)
    return c.run(lambda t: {"out%d" % i: p for i, p in enumerate(torch.split(t["x"], [2, 3], -1))})


# ---- losses --------------------------------------------------------------------------


def bce_per_sample(x, y, w):
    return F.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none").mean(1)


def focal_per_sample(x, y, w, gamma):
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    loss = (1 - p_t) ** gamma * F.binary_cross_entropy_with_logits(x, y, reduction="none")
    if w is not None:
        loss = loss * w
    return loss.mean(1)


def loss_case(name, description, kind, logits, targets, weights, gamma=2.0):
    @case(name, description)
    def build():
        c = Case(name)
        c.add("logits", logits(c.rng))
        c.add("targets", targets(c.rng), grad=False)
        if weights is not None:
            c.add("class_weights", weights(c.rng), grad=False)
        if kind == "bce":
            return c.run(lambda t: bce_per_sample(t["logits"], t["targets"], t.get("class_weights")))
        return c.run(lambda t: focal_per_sample(t["logits"], t["targets"], t.get("class_weights"), gamma))


N, C = 4, 5
normal_logits = lambda rng: rng.standard_normal((N, C)) * 2.0
hard_targets = lambda rng: (rng.uniform(size=(N, C)) < 0.4).astype(np.float64)
soft_targets = lambda rng: rng.uniform(size=(N, C))
class_weights = lambda rng: rng.uniform(0.2, 3.0, C)
EXTREME = np.array([[-100.0, -30.0, -1e-3, 0.0, 30.0, 100.0], [100.0, 30.0, 1e-3, 0.0, -30.0, -100.0]])
extreme_logits = lambda rng: EXTREME.copy()
extreme_targets = lambda rng: np.array([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]])

loss_case("bce_weighted", "logits[4,5], {0,1} targets, class weights[5]", "bce", normal_logits, hard_targets,
          class_weights)
loss_case("bce_soft_targets_unweighted", "logits[4,5], soft targets in [0,1], no weights", "bce", normal_logits,
          soft_targets, None)
loss_case("bce_extreme_logits", "logits +-100, +-30, +-1e-3, 0 against both labels (stability)", "bce",
          extreme_logits, extreme_targets, None)
loss_case("focal_weighted", "gamma 2, logits[4,5], {0,1} targets, class weights[5]", "focal", normal_logits,
          hard_targets, class_weights)
loss_case("focal_unweighted", "gamma 2, logits[4,5], {0,1} targets, no weights", "focal", normal_logits,
          hard_targets, None)
loss_case("focal_extreme_logits", "gamma 2, logits +-100, +-30, +-1e-3, 0 against both labels (stability)",
          "focal", extreme_logits, extreme_targets, None)


def hard_sample_case(name, losses, k):
    @case(name, "losses %s, k %d: the k largest, ties to the lower index" % (list(losses), k))
    def build():
        c = Case(name)
        c.add("losses", np.array(losses, dtype=np.float64))
        # torch.topk does not promise an order among ties, so the reference order is a
        # stable sort: larger loss first, then lower index.
        order = sorted(range(len(losses)), key=lambda i: (-losses[i], i))[:k]
        index = torch.tensor(order, dtype=torch.int64)
        return c.run(lambda t: {"out": t["losses"][index], "indices": index})


TIED = [0.5, 1.25, 0.5, 2.0, 1.25, 0.125, 2.0, 0.75]
hard_sample_case("hard_sample_topk_tie_at_boundary", TIED, 3)
hard_sample_case("hard_sample_topk_ties_inside", TIED, 5)
hard_sample_case("hard_sample_topk_all", TIED, 8)


@case("effective_number_weights", "class counts [1, 10, 100, 1000, 5], alpha 0.999; weights scaled to sum C")
def _():
    counts = np.array([1, 10, 100, 1000, 5], dtype=np.int64)
    alpha = 0.999
    w = (1 - alpha) / (1 - np.power(alpha, counts.astype(np.float64)))
    w = w * len(counts) / w.sum()
    return {"class_counts": counts, "weights": w}


# ---- driver --------------------------------------------------------------------------


def build_all():
    result = {}
    for name, description, builder in CASES:
        assert name not in result, "duplicate case " + name
        result[name] = (description, builder())
    return result


def readme(cases):
    lines = [
        "# Golden data from PyTorch",
        "",
        "Generated by `tools/gen_golden.py` with torch %s (float64, CPU); read by `tests/test_golden.cpp`." %
        torch.__version__,
        "Do not edit by hand. Regenerate with `/usr/bin/python3 tools/gen_golden.py`;",
        "check reproducibility with `/usr/bin/python3 tools/gen_golden.py --check`.",
        "",
        "In each folder: the inputs, the outputs, `upstream_<output>.npy` (the fixed random upstream",
        "gradient of each differentiable output) and `grad_<input>.npy` (the gradient of",
        "sum_k <output_k, upstream_k> with respect to each differentiable input).",
        "",
        "| case | what | files |",
        "| --- | --- | --- |",
    ]
    for name, (description, arrays) in cases.items():
        files = ", ".join("%s%s" % (k, list(v.shape)) for k, v in arrays.items())
        lines.append("| `%s` | %s | %s |" % (name, description, files))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the stored files instead of writing")
    parser.add_argument("--out", default=GOLDEN, help="output folder (default: tests/golden)")
    args = parser.parse_args()
    cases = build_all()

    if args.check:
        bad = 0
        for name, (_, arrays) in cases.items():
            for key, value in arrays.items():
                path = os.path.join(args.out, name, key + ".npy")
                if not os.path.exists(path):
                    print("missing", path)
                    bad += 1
                    continue
                stored = np.load(path, allow_pickle=False)
                if stored.dtype != value.dtype or stored.shape != value.shape or not np.array_equal(stored, value):
                    print("differs", path, "max |diff|",
                          np.max(np.abs(stored - value)) if stored.shape == value.shape else "shape")
                    bad += 1
        print("%d cases, %d mismatching files" % (len(cases), bad))
        return 1 if bad else 0

    if os.path.isdir(args.out):
        # Drop stale cases: every folder that holds nothing but .npy files was written here.
        for entry in os.listdir(args.out):
            path = os.path.join(args.out, entry)
            if os.path.isdir(path) and all(f.endswith(".npy") for f in os.listdir(path)):
                shutil.rmtree(path)
    total = 0
    for name, (_, arrays) in cases.items():
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        for key, value in arrays.items():
            value = np.array(value, order="C")  # (ascontiguousarray would turn 0-D into 1-D)
            assert value.dtype in (np.float64, np.int64), (name, key, value.dtype)
            path = os.path.join(folder, key + ".npy")
            np.save(path, value)
            total += os.path.getsize(path)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(readme(cases))
    print("wrote %d cases, %.0f KiB of .npy files to %s" % (len(cases), total / 1024, args.out))
    if total > MAX_TOTAL_BYTES:
        print("error: golden data exceeds %d bytes" % MAX_TOTAL_BYTES)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
