// Pooling ops: windowed max/avg pools, the global pools and the paper's adaptive concat
// pooling (ACP), dispatched to the CPU loops or the CUDA twins by the input's device. Max
// pools save the argmax of every output (i32, an index within the plane, on the input's
// device) so backward routes gradients to exactly the elements forward picked, ties
// included; average pools save nothing but the geometry.
#include "tensor/ops/pool.h"

#include <limits>
#include <string>

#include "kernels/concat_pool.h"
#include "kernels/pool.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

void check_nchw(const char* op, const Tensor& x) {
  check::floating(op, x, "x");
  HPA_CHECK(x.dim() == 4, op, ": input must be 4-D NCHW, got ", x.desc());
}

std::string describe(const Pool2dOptions& o) {
  return detail::concat("kernel ", o.kernel_h, "x", o.kernel_w, ", stride ", o.stride_h, "x", o.stride_w,
                        ", pad ", o.pad_h, "x", o.pad_w, o.ceil_mode ? ", ceil_mode" : "");
}

kernels::Pool2dArgs pool_args(const char* op, const Tensor& x, const Pool2dOptions& o) {
  check_nchw(op, x);
  HPA_CHECK(o.kernel_h >= 1 && o.kernel_w >= 1, op, ": kernel size must be positive, got ", describe(o),
            " for input ", x.desc());
  HPA_CHECK(o.stride_h >= 1 && o.stride_w >= 1, op, ": stride must be positive, got ", describe(o),
            " for input ", x.desc());
  HPA_CHECK(o.pad_h >= 0 && o.pad_w >= 0, op, ": padding must be >= 0, got ", describe(o), " for input ",
            x.desc());
  // PyTorch's rule; it also guarantees that every window overlaps the input.
  HPA_CHECK(o.pad_h <= o.kernel_h / 2 && o.pad_w <= o.kernel_w / 2, op,
            ": padding must be at most half the kernel size, got ", describe(o), " for input ", x.desc());
  kernels::Pool2dArgs a;
  a.planes = x.size(0) * x.size(1);
  a.in_h = x.size(2);
  a.in_w = x.size(3);
  a.kernel_h = o.kernel_h;
  a.kernel_w = o.kernel_w;
  a.stride_h = o.stride_h;
  a.stride_w = o.stride_w;
  a.pad_h = o.pad_h;
  a.pad_w = o.pad_w;
  a.count_include_pad = o.count_include_pad;
  a.out_h = kernels::pool_output_size(a.in_h, o.kernel_h, o.stride_h, o.pad_h, o.ceil_mode);
  a.out_w = kernels::pool_output_size(a.in_w, o.kernel_w, o.stride_w, o.pad_w, o.ceil_mode);
  HPA_CHECK(a.out_h >= 1 && a.out_w >= 1, op, ": output size ", a.out_h, "x", a.out_w,
            " is too small for input ", x.desc(), " with ", describe(o));
  return a;
}

Shape pooled_shape(const Tensor& x, int64_t h, int64_t w) { return Shape{x.size(0), x.size(1), h, w}; }

struct MaxPool2dBackward : Node {
  kernels::Pool2dArgs args;
  Shape input_shape;
  Tensor argmax;  // i32 [N, C, out_h, out_w]
  const char* name() const override { return "max_pool2d"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    Tensor grad_x = Tensor::empty(input_shape, g.dtype(), g.device());
    dispatch_float(g.dtype(), name(), [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::max_pool2d_backward_cuda(g.data<T>(), argmax.data<int32_t>(), args, grad_x.data<T>(),
                                          stream_of(g));
#else
        no_cuda(name(), g);
#endif
      } else {
        kernels::max_pool2d_backward_cpu(g.data<T>(), argmax.data<int32_t>(), args, grad_x.data<T>());
      }
    });
    return {grad_x};
  }
  void release_saved() override { argmax = Tensor(); }
};

struct AvgPool2dBackward : Node {
  kernels::Pool2dArgs args;
  Shape input_shape;
  const char* name() const override { return "avg_pool2d"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    Tensor grad_x = Tensor::empty(input_shape, g.dtype(), g.device());
    dispatch_float(g.dtype(), name(), [&](auto tag) {
      using T = decltype(tag);
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::avg_pool2d_backward_cuda(g.data<T>(), args, grad_x.data<T>(), stream_of(g));
#else
        no_cuda(name(), g);
#endif
      } else {
        kernels::avg_pool2d_backward_cpu(g.data<T>(), args, grad_x.data<T>());
      }
    });
    return {grad_x};
  }
};

// The three global pools differ only in which of the two outputs (average, maximum)
// exist and where they sit in the result.
enum class GlobalPool { average, maximum, concat };

const char* global_pool_name(GlobalPool kind) {
  switch (kind) {
    case GlobalPool::average:
      return "global_avg_pool2d";
    case GlobalPool::maximum:
      return "global_max_pool2d";
    case GlobalPool::concat:
      return "adaptive_concat_pool2d";
  }
  return "?";
}

struct GlobalPoolBackward : Node {
  GlobalPool kind = GlobalPool::average;
  kernels::ConcatPoolArgs args;
  Shape input_shape;
  Tensor argmax;  // i32 [N, C]; undefined for the average pool
  const char* name() const override { return global_pool_name(kind); }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override {
    const Tensor& g = grad_outputs[0];
    Tensor grad_x = Tensor::empty(input_shape, g.dtype(), g.device());
    dispatch_float(g.dtype(), name(), [&](auto tag) {
      using T = decltype(tag);
      const T* gp = g.data<T>();
      const T* grad_avg = kind == GlobalPool::maximum ? nullptr : gp;
      const T* grad_max = kind == GlobalPool::average  ? nullptr
                          : kind == GlobalPool::concat ? gp + args.c
                                                       : gp;
      const int32_t* argmax_p = argmax.defined() ? argmax.data<int32_t>() : nullptr;
      if (g.is_cuda()) {
#ifdef HPA_WITH_CUDA
        kernels::concat_pool_backward_cuda(grad_avg, grad_max, argmax_p, args, grad_x.data<T>(),
                                           stream_of(g));
#else
        no_cuda(name(), g);
#endif
      } else {
        kernels::concat_pool_backward_cpu(grad_avg, grad_max, argmax_p, args, grad_x.data<T>());
      }
    });
    return {grad_x};
  }
  void release_saved() override { argmax = Tensor(); }
};

Tensor global_pool(const Tensor& x, GlobalPool kind) {
  const char* op = global_pool_name(kind);
  check_nchw(op, x);
  const int64_t hw = x.size(2) * x.size(3);
  HPA_CHECK(hw >= 1, op, ": needs a non-empty spatial plane, got ", x.desc());
  HPA_CHECK(hw <= std::numeric_limits<int32_t>::max(), op, ": plane too large for i32 argmax, got ",
            x.desc());
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t out_channels = kind == GlobalPool::concat ? 2 * c : c;
  kernels::ConcatPoolArgs args{n, c, hw, out_channels};
  Tensor y = Tensor::empty(Shape{n, out_channels, 1, 1}, x.dtype(), x.device());
  Tensor argmax;
  if (kind != GlobalPool::average) argmax = Tensor::empty(Shape{n, c}, DType::i32, x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    T* avg = kind == GlobalPool::maximum ? nullptr : yp;
    T* max = kind == GlobalPool::average ? nullptr : kind == GlobalPool::concat ? yp + c : yp;
    int32_t* argmax_p = argmax.defined() ? argmax.data<int32_t>() : nullptr;
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::concat_pool_forward_cuda(x.data<T>(), args, avg, max, argmax_p, stream_of(x));
#else
      no_cuda(op, x);
#endif
    } else {
      kernels::concat_pool_forward_cpu(x.data<T>(), args, avg, max, argmax_p);
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<GlobalPoolBackward>();
    node->kind = kind;
    node->args = args;
    node->input_shape = x.shape();
    node->argmax = argmax;
    record(node, {x}, {y});
  }
  return y;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options) {
  constexpr const char* op = "max_pool2d";
  const kernels::Pool2dArgs a = pool_args(op, x, options);
  HPA_CHECK(a.in_h * a.in_w <= std::numeric_limits<int32_t>::max(), op,
            ": plane too large for i32 argmax, got ", x.desc());
  const Shape out_shape = pooled_shape(x, a.out_h, a.out_w);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor argmax = Tensor::empty(out_shape, DType::i32, x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::max_pool2d_forward_cuda(x.data<T>(), a, y.data<T>(), argmax.data<int32_t>(), stream_of(x));
#else
      no_cuda(op, x);
#endif
    } else {
      kernels::max_pool2d_forward_cpu(x.data<T>(), a, y.data<T>(), argmax.data<int32_t>());
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<MaxPool2dBackward>();
    node->args = a;
    node->input_shape = x.shape();
    node->argmax = argmax;
    record(node, {x}, {y});
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options) {
  constexpr const char* op = "avg_pool2d";
  const kernels::Pool2dArgs a = pool_args(op, x, options);
  Tensor y = Tensor::empty(pooled_shape(x, a.out_h, a.out_w), x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    if (x.is_cuda()) {
#ifdef HPA_WITH_CUDA
      kernels::avg_pool2d_forward_cuda(x.data<T>(), a, y.data<T>(), stream_of(x));
#else
      no_cuda(op, x);
#endif
    } else {
      kernels::avg_pool2d_forward_cpu(x.data<T>(), a, y.data<T>());
    }
  });
  if (needs_grad({x})) {
    auto node = std::make_shared<AvgPool2dBackward>();
    node->args = a;
    node->input_shape = x.shape();
    record(node, {x}, {y});
  }
  return y;
}

Tensor global_avg_pool2d(const Tensor& x) { return global_pool(x, GlobalPool::average); }
Tensor global_max_pool2d(const Tensor& x) { return global_pool(x, GlobalPool::maximum); }
Tensor adaptive_concat_pool2d(const Tensor& x) { return global_pool(x, GlobalPool::concat); }

}  // namespace hpa
