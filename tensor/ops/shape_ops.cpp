// concat and split: argument checks, the byte copies of kernels/concat.h, and backward
// nodes. Each is the other's backward: concat's gradient is split into its inputs' shapes,
// and split's (multi-output) node joins its outputs' gradients, zeros included for
// outputs that received none (the engine materializes them). The copies run on the
// joined tensor's device: the CPU loop or the CUDA twin on that device's stream.
#include "tensor/ops/shape_ops.h"

#include <memory>
#include <sstream>

#include "kernels/concat.h"
#include "tensor/autograd.h"
#include "tensor/ops/check.h"
#include "tensor/ops/dispatch.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

namespace {

std::string sizes_str(const std::vector<int64_t>& sizes) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  return os.str() + "]";
}

// `sizes` must outlive the returned args (they point into it).
kernels::ConcatArgs concat_args(const Shape& joined, int dim, const std::vector<int64_t>& sizes,
                                DType dtype) {
  kernels::ConcatArgs args;
  args.outer = 1;
  for (int d = 0; d < dim; ++d) args.outer *= joined[d];
  args.inner_bytes = static_cast<int64_t>(dtype_size(dtype));
  for (int d = dim + 1; d < joined.size(); ++d) args.inner_bytes *= joined[d];
  args.total = joined[dim];
  args.num_pieces = static_cast<int>(sizes.size());
  args.sizes = sizes.data();
  return args;
}

int checked_dim(const char* op, const Tensor& t, int dim) {
  HPA_CHECK(t.dim() > 0, op, ": cannot ", op, " a 0-D tensor ", t.desc());
  HPA_CHECK(dim >= -t.dim() && dim < t.dim(), op, ": dimension ", dim, " out of range for ", t.desc());
  return dim < 0 ? dim + t.dim() : dim;
}

// Writes the pieces of `joined` into new tensors of `shapes`; pieces with want[i] false
// stay undefined.
std::vector<Tensor> split_into(const Tensor& joined, int dim, const std::vector<int64_t>& sizes,
                               const std::vector<Shape>& shapes, const std::vector<bool>& want) {
  std::vector<Tensor> pieces(sizes.size());
  std::vector<void*> ptrs(sizes.size(), nullptr);
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!want[i]) continue;
    pieces[i] = Tensor::empty(shapes[i], joined.dtype(), joined.device());
    ptrs[i] = pieces[i].data_ptr();
  }
  const auto args = concat_args(joined.shape(), dim, sizes, joined.dtype());
  if (joined.is_cuda()) {
#ifdef HPA_WITH_CUDA
    kernels::split_cuda(joined.data_ptr(), ptrs.data(), args, stream_of(joined));
#else
    no_cuda("split", joined);
#endif
  } else {
    kernels::split_cpu(joined.data_ptr(), ptrs.data(), args);
  }
  return pieces;
}

Tensor join(const std::vector<Tensor>& pieces, int dim, const std::vector<int64_t>& sizes,
            const Shape& joined_shape) {
  Tensor joined = Tensor::empty(joined_shape, pieces[0].dtype(), pieces[0].device());
  std::vector<const void*> ptrs;
  for (const Tensor& p : pieces) ptrs.push_back(p.data_ptr());
  const auto args = concat_args(joined_shape, dim, sizes, joined.dtype());
  if (joined.is_cuda()) {
#ifdef HPA_WITH_CUDA
    kernels::concat_cuda(ptrs.data(), joined.data_ptr(), args, stream_of(joined));
#else
    no_cuda("concat", joined);
#endif
  } else {
    kernels::concat_cpu(ptrs.data(), joined.data_ptr(), args);
  }
  return joined;
}

struct ConcatBackward : Node {
  int dim = 0;
  std::vector<int64_t> sizes;
  std::vector<Shape> input_shapes;

  const char* name() const override { return "concat"; }

  // grad_input[i] = the i-th slice of grad (writes =); only for inputs that need one.
  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    std::vector<bool> want(next.size());
    for (size_t i = 0; i < next.size(); ++i) want[i] = next[i].valid();
    return split_into(grads[0], dim, sizes, input_shapes, want);
  }
};

struct SplitBackward : Node {
  int dim = 0;
  std::vector<int64_t> sizes;
  Shape input_shape;

  const char* name() const override { return "split"; }

  // grad_x = the outputs' gradients joined (writes =).
  std::vector<Tensor> backward(const std::vector<Tensor>& grads) override {
    return {join(grads, dim, sizes, input_shape)};
  }
};

}  // namespace

Tensor concat(const std::vector<Tensor>& inputs, int dim) {
  HPA_CHECK(!inputs.empty(), "concat: empty list of inputs");
  for (size_t i = 0; i < inputs.size(); ++i)
    HPA_CHECK(inputs[i].defined(), "concat: input ", i, " is an undefined tensor");
  const Tensor& first = inputs[0];
  const int d = checked_dim("concat", first, dim);
  std::vector<int64_t> sizes;
  Shape joined_shape = first.shape();
  joined_shape[d] = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    check::same_device("concat", first, t);
    check::same_dtype("concat", first, t);
    bool match = t.dim() == first.dim();
    for (int k = 0; match && k < t.dim(); ++k) match = k == d || t.shape()[k] == first.shape()[k];
    HPA_CHECK(match, "concat: input ", i, " ", t.desc(), " does not match input 0 ", first.desc(),
              " outside dimension ", dim);
    sizes.push_back(t.shape()[d]);
    joined_shape[d] += t.shape()[d];
  }
  Tensor out = join(inputs, d, sizes, joined_shape);
  if (needs_grad(inputs)) {
    auto node = std::make_shared<ConcatBackward>();
    node->dim = d;
    node->sizes = sizes;
    for (const Tensor& t : inputs) node->input_shapes.push_back(t.shape());
    record(node, inputs, {out});
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  check::defined("split", x, "x");
  const int d = checked_dim("split", x, dim);
  HPA_CHECK(!sizes.empty(), "split: empty list of sizes for ", x.desc());
  int64_t total = 0;
  for (int64_t s : sizes) {
    HPA_CHECK(s >= 0, "split: negative size ", s, " in ", sizes_str(sizes), " for ", x.desc());
    total += s;
  }
  HPA_CHECK(total == x.shape()[d], "split: sizes ", sizes_str(sizes), " add up to ", total, " but dimension ",
            dim, " of ", x.desc(), " has size ", x.shape()[d]);
  std::vector<Shape> shapes;
  for (int64_t s : sizes) {
    Shape piece = x.shape();
    piece[d] = s;
    shapes.push_back(piece);
  }
  std::vector<Tensor> outputs = split_into(x, d, sizes, shapes, std::vector<bool>(sizes.size(), true));
  if (needs_grad({x})) {
    auto node = std::make_shared<SplitBackward>();
    node->dim = d;
    node->sizes = sizes;
    node->input_shape = x.shape();
    record(node, {x}, outputs);
  }
  return outputs;
}

}  // namespace hpa
