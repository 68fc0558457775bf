// sum and mean: argument checks, dispatch to kernels/reduce.h (CPU loop or CUDA twin, by
// the input's device), and the backward node, which stretches the gradient back over the
// reduced dimensions (times 1/count for mean).
#include "tensor/ops/reduce.h"

#include <memory>
#include <sstream>

#include "kernels/elementwise.h"
#include "kernels/reduce.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

std::string dims_str(const std::vector<int>& dims) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  return os.str() + "]";
}

struct ReduceBackward : Node {
  bool is_mean = false;
  Shape input_shape;
  Shape kept_shape;  // the output with the reduced dimensions left as size 1
  double scale = 1.0;

  const char* name() const override { return is_mean ? "mean" : "sum"; }

  // grad_x = scale * grad_out stretched over the reduced dimensions (writes =).
  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];
    Tensor grad_x = Tensor::empty(input_shape, g.dtype(), g.device());
    const auto args =
        kernels::make_broadcast_args(input_shape.begin(), input_shape.size(), kept_shape.begin(),
                                     kept_shape.size(), input_shape.begin(), input_shape.size());
    dispatch_float(g.dtype(), name(), [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::broadcast_scaled_cuda(g.data<T>(), grad_x.data<T>(), args, static_cast<T>(scale),
                                       stream_of(g));
#else
        no_cuda(name(), g);
#endif
      } else {
        kernels::broadcast_scaled_cpu(g.data<T>(), grad_x.data<T>(), args, static_cast<T>(scale));
      }
    });
    return {grad_x};
  }
};

// all: reduce every dimension to a 0-D result (dims and keepdim ignored).
Tensor reduce(const char* op, const Tensor& x, const std::vector<int>& dims, bool keepdim, bool all,
              bool is_mean) {
  check::floating(op, x, "x");
  const int ndim = x.dim();
  bool reduce_dim[Shape::kMaxDims] = {};
  if (all) {
    for (int d = 0; d < ndim; ++d) reduce_dim[d] = true;
  } else {
    for (int dim : dims) {
      HPA_CHECK(dim >= -ndim && dim < ndim, op, ": dimension ", dim, " out of range for ", x.desc());
      const int d = dim < 0 ? dim + ndim : dim;
      HPA_CHECK(!reduce_dim[d], op, ": dimension ", dim, " appears more than once in ", dims_str(dims),
                " for ", x.desc());
      reduce_dim[d] = true;
    }
  }
  Shape kept_shape, out_shape;
  int64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    if (reduce_dim[d]) {
      count *= x.shape()[d];
      kept_shape.push_back(1);
      if (keepdim && !all) out_shape.push_back(1);
    } else {
      kept_shape.push_back(x.shape()[d]);
      out_shape.push_back(x.shape()[d]);
    }
  }
  // The mean of nothing is 0 * (1/0) = NaN, as in PyTorch.
  const double scale = is_mean ? 1.0 / static_cast<double>(count) : 1.0;
  const auto args = kernels::make_reduce_args(x.shape().begin(), ndim, reduce_dim, scale);
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      // Chunk partials of the two-pass shapes; freed right away, which the caching
      // allocator's stream-ordered reuse makes safe.
      const int64_t workspace_elements = kernels::reduce_sum_cuda_workspace_elements(args);
      Tensor workspace;
      if (workspace_elements > 0) workspace = Tensor::empty({workspace_elements}, DType::f64, x.device());
      kernels::reduce_sum_cuda(x.data<T>(), out.data<T>(), args,
                               workspace.defined() ? workspace.data<double>() : nullptr, stream_of(x));
#else
      no_cuda(op, x);
#endif
    } else {
      kernels::reduce_sum_cpu(x.data<T>(), out.data<T>(), args);
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<ReduceBackward>();
    node->is_mean = is_mean;
    node->input_shape = x.shape();
    node->kept_shape = kept_shape;
    node->scale = scale;
    record(node, {x}, {out});
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce("sum", x, dims, keepdim, false, false);
}
Tensor mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return reduce("mean", x, dims, keepdim, false, true);
}
Tensor sum(const Tensor& x) { return reduce("sum", x, {}, false, true, false); }
Tensor mean(const Tensor& x) { return reduce("mean", x, {}, false, true, true); }

}  // namespace hpa
