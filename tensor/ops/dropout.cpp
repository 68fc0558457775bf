// dropout / alpha_dropout, on the CPU loops or the CUDA twins by the input's device. A
// training call with p > 0 reserves one Philox draw (gen.next_offset()); eval mode and
// p = 0 return the input itself and draw nothing.
// The backward node saves (seed, offset), not the mask: the kernel recomputes the mask
// from the counter-based stream (kernels/dropout.h), so no activation-sized buffer stays
// alive between forward and backward.
// Range of p: dropout accepts [0, 1], p = 1 giving all zeros (as PyTorch); alpha_dropout
// accepts [0, 1), since its affine correction ((1-p)(1+p alpha'^2))^(-1/2) diverges at 1.
#include "tensor/ops/dropout.h"

#include "kernels/dropout.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

struct DropoutBackward : Node {
  kernels::DropoutArgs args;
  const char* op = "dropout";
  const char* name() const override { return op; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    Tensor grad_x = Tensor::empty(g.shape(), g.dtype(), g.device());
    dispatch_float(g.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::dropout_backward_cuda(g.data<T>(), g.numel(), args, grad_x.data<T>(), stream_of(g));
#else
        no_cuda(op, g);
#endif
      } else {
        kernels::dropout_backward_cpu(g.data<T>(), g.numel(), args, grad_x.data<T>());
      }
    });
    return {grad_x};
  }
};

Tensor apply_dropout(const char* op, const Tensor& x, kernels::DropoutArgs args, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  args.seed = g.seed();
  args.offset = g.next_offset();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::dropout_forward_cuda(x.data<T>(), x.numel(), args, y.data<T>(), stream_of(x));
#else
      no_cuda(op, x);
#endif
    } else {
      kernels::dropout_forward_cpu(x.data<T>(), x.numel(), args, y.data<T>());
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<DropoutBackward>();
    node->args = args;
    node->op = op;
    record(node, {x}, {y});
  }
  return y;
}

void check_input(const char* op, const Tensor& x) { check::floating(op, x, "x"); }

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  constexpr const char* op = "dropout";
  check_input(op, x);
  HPA_CHECK(p >= 0 && p <= 1, op, ": probability p must be in [0, 1], got ", p, " for input ", x.desc());
  if (!training || p == 0) return x;
  kernels::DropoutArgs args;
  args.p = p;
  args.kept_scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;  // p = 1 keeps nothing; avoid an infinite scale
  return apply_dropout(op, x, args, gen);
}

Tensor alpha_dropout(const Tensor& x, double p, bool training, Generator* gen) {
  constexpr const char* op = "alpha_dropout";
  check_input(op, x);
  HPA_CHECK(p >= 0 && p < 1, op, ": probability p must be in [0, 1), got ", p, " for input ", x.desc());
  if (!training || p == 0) return x;
  const kernels::AlphaDropoutAffine affine = kernels::alpha_dropout_affine(p);
  kernels::DropoutArgs args;
  args.p = p;
  args.kept_scale = affine.a;
  args.kept_shift = affine.b;
  args.dropped_value = affine.a * kernels::kAlphaDropoutSaturation + affine.b;
  return apply_dropout(op, x, args, gen);
}

}  // namespace hpa
