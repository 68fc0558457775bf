#include "tensor/tensor.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <iomanip>
#include <sstream>

#include "kernels/cast.h"
#include "kernels/fill.h"
#include "tensor/autograd.h"
#include "tensor/random.h"
#ifdef HPA_WITH_CUDA
#include "tensor/cuda_backend.h"
#endif

namespace hpa {

// ---- Storage --------------------------------------------------------------------------

Storage::Storage(size_t n, Device d) : bytes(n), device(d) { data = allocator_for(d).allocate(n); }

Storage::~Storage() {
  if (data) allocator_for(device).deallocate(data, bytes);
}

// ---- helpers --------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  HPA_CHECK(impl_ != nullptr, "use of an undefined Tensor");
  return *impl_;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl().storage->data) + impl().byte_offset;
}

int64_t Tensor::size(int d) const { return shape()[normalize_dim(d, dim(), "Tensor::size")]; }

std::string Tensor::desc() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape().str() + " " + device().str();
}

namespace {

// Reads element i of a host buffer of any dtype as double.
double load_as_double(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::i32: return static_cast<const int32_t*>(p)[i];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::u8: return static_cast<const uint8_t*>(p)[i];
    case DType::boolean: return static_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
    case DType::bf16: return kernels::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::f16: return kernels::f16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}

void store_from_double(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(p)[i] = v; break;
    case DType::i32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DType::boolean: static_cast<uint8_t*>(p)[i] = v != 0.0 ? 1 : 0; break;
    case DType::bf16: static_cast<uint16_t*>(p)[i] = kernels::float_to_bf16(static_cast<float>(v)); break;
    case DType::f16: static_cast<uint16_t*>(p)[i] = kernels::float_to_f16(static_cast<float>(v)); break;
  }
}

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t n) {
  if (n == 0) return;
  if (dd.is_cpu() && sd.is_cpu()) {
    std::memcpy(dst, src, n);
  } else if (dd.is_cpu()) {
    device_backend(sd.type).copy_device_to_host(dst, src, n, sd.index);
  } else if (sd.is_cpu()) {
    device_backend(dd.type).copy_host_to_device(dst, src, n, dd.index);
  } else {
    HPA_CHECK(dd == sd, "copy between two different devices ", sd, " -> ", dd,
              " is not supported; go through the host explicitly");
    device_backend(dd.type).copy_device_to_device(dst, src, n, dd.index);
  }
}

#ifdef HPA_WITH_CUDA
kernels::Stream stream_of(Device device) { return static_cast<kernels::Stream>(cuda::stream(device.index)); }
#else
[[noreturn]] void no_cuda(const char* op, Device device) {
  HPA_FAIL(op, ": this build has no CUDA backend, got device ", device);
}
#endif

// The bytes of one element of `dtype` holding `value`, converted as every host value is
// (store_from_double), in the low bytes of the result.
uint64_t element_pattern(DType dtype, double value) {
  unsigned char bytes[sizeof(uint64_t)] = {};
  store_from_double(bytes, dtype, 0, value);
  uint64_t pattern = 0;
  std::memcpy(&pattern, bytes, sizeof pattern);
  return pattern;
}

// A new f32 or f64 tensor on `device` holding uniform (normal == false) or normal draws.
Tensor philox_filled(const Shape& shape, DType dtype, Device device, const kernels::PhiloxDraw& draw,
                     bool normal) {
  Tensor t = Tensor::empty(shape, dtype, device);
  const int64_t n = t.numel();
  dispatch_float(dtype, normal ? "randn" : "rand", [&](auto tag) {
    using T = decltype(tag);
    T* out = t.data<T>();
    if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
      if (normal) {
        kernels::fill_normal_cuda(out, n, draw, stream_of(device));
      } else {
        kernels::fill_uniform_cuda(out, n, draw, stream_of(device));
      }
#else
      no_cuda(normal ? "randn" : "rand", device);
#endif
    } else if (normal) {
      kernels::fill_normal_cpu(out, n, draw);
    } else {
      kernels::fill_uniform_cpu(out, n, draw);
    }
  });
  return t;
}

// A host tensor filled by f(i) -> double, then moved to `device`.
template <class F>
Tensor host_filled(const Shape& shape, DType dtype, Device device, F&& f) {
  Tensor t = Tensor::empty(shape, dtype, Device::cpu());
  void* p = t.data_ptr();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) store_from_double(p, dtype, i, f(i));
  return t.to(device);
}

struct ReshapeBackward : Node {
  Shape input_shape;
  const char* name() const override { return "reshape"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& g) override {
    NoGradGuard guard;
    return {g[0].reshape(input_shape)};
  }
};

}  // namespace

// ---- factories ------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    std::memset(t.data_ptr(), 0, t.nbytes());
  } else {
    device_backend(device.type).memset_zero(t.data_ptr(), t.nbytes(), device.index);
  }
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  const uint64_t pattern = element_pattern(dtype, value);
  const int element_bytes = static_cast<int>(dtype_size(dtype));
  if (device.is_cuda()) {
#ifdef HPA_WITH_CUDA
    kernels::fill_pattern_cuda(t.data_ptr(), t.numel(), element_bytes, pattern, stream_of(device));
#else
    no_cuda("full", device);
#endif
  } else {
    kernels::fill_pattern_cpu(t.data_ptr(), t.numel(), element_bytes, pattern);
  }
  return t;
}

// arange is computed on the host and copied: it is small and rare, and a device kernel
// would have to keep nvcc from fusing start + step * i into an FMA to match the CPU.
Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  HPA_CHECK(n >= 0, "arange: negative length ", n);
  return host_filled(Shape{n}, dtype, device, [](int64_t i) { return static_cast<double>(i); });
}

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
  HPA_CHECK(step != 0.0, "arange: step must be non-zero");
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  return host_filled(Shape{n}, dtype, device, [&](int64_t i) { return start + step * static_cast<double>(i); });
}

// f32 and f64 draws are made on their device by the fill kernels; other dtypes are drawn
// on the host (as double, converted like any host value) and copied.
Tensor Tensor::rand(const Shape& shape, DType dtype, Device device, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  const uint64_t seed = g.seed(), offset = g.next_offset();
  const kernels::PhiloxDraw draw{seed, offset};
  if (dtype == DType::f32 || dtype == DType::f64) return philox_filled(shape, dtype, device, draw, false);
  return host_filled(shape, dtype, device, [&](int64_t i) {
    return static_cast<double>(kernels::uniform_element<float>(static_cast<uint64_t>(i), draw));
  });
}

Tensor Tensor::randn(const Shape& shape, DType dtype, Device device, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  const uint64_t seed = g.seed(), offset = g.next_offset();
  const kernels::PhiloxDraw draw{seed, offset};
  if (dtype == DType::f32 || dtype == DType::f64) return philox_filled(shape, dtype, device, draw, true);
  return host_filled(shape, dtype, device, [&](int64_t i) {
    return kernels::normal_element<double>(static_cast<uint64_t>(i), draw);
  });
}

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full(Shape{}, value, dtype, device); }

// ---- data access ----------------------------------------------------------------------

double Tensor::item() const {
  HPA_CHECK(numel() == 1, "item: tensor must hold exactly one element, got ", desc());
  Tensor host = to(Device::cpu());
  return load_as_double(host.data_ptr(), dtype(), 0);
}

// ---- conversions and views ------------------------------------------------------------

Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  Tensor out = empty(shape(), dtype(), d);
  out.impl().layout = layout();
  copy_bytes(out.data_ptr(), d, data_ptr(), device(), nbytes());
  return out;
}

Tensor Tensor::to(DType t) const {
  if (dtype() == t) return *this;
  const bool f32_to_f64 = dtype() == DType::f32 && t == DType::f64;
  const bool f64_to_f32 = dtype() == DType::f64 && t == DType::f32;
  HPA_CHECK(is_cpu() || f32_to_f64 || f64_to_f32, "Tensor::to(", dtype_name(t),
            "): on CUDA only f32 <-> f64 casts run on the device; tensor is ", desc(),
            " (cast on the CPU: .to(Device::cpu()).to(dtype))");
  Tensor out = empty(shape(), t, device());
  out.impl().layout = layout();
  const void* src = data_ptr();
  void* dst = out.data_ptr();
  const int64_t n = numel();
  if (is_cuda()) {
#ifdef HPA_WITH_CUDA
    if (f32_to_f64) {
      kernels::cast_cuda(static_cast<const float*>(src), static_cast<double*>(dst), n, stream_of(device()));
    } else {
      kernels::cast_cuda(static_cast<const double*>(src), static_cast<float*>(dst), n, stream_of(device()));
    }
#else
    no_cuda("Tensor::to(dtype)", device());
#endif
  } else if (f64_to_f32) {
    kernels::cast_cpu(static_cast<const double*>(src), static_cast<float*>(dst), n);
  } else if (f32_to_f64) {
    kernels::cast_cpu(static_cast<const float*>(src), static_cast<double*>(dst), n);
  } else {
    for (int64_t i = 0; i < n; ++i) store_from_double(dst, t, i, load_as_double(src, dtype(), i));
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.impl().layout = layout();
  copy_bytes(out.data_ptr(), device(), data_ptr(), device(), nbytes());
  return out;
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  HPA_CHECK(new_shape.numel() == numel(), "reshape: cannot view ", desc(), " as ", new_shape, " (",
            numel(), " vs ", new_shape.numel(), " elements)");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = this->impl().storage;
  impl->byte_offset = this->impl().byte_offset;
  impl->shape = new_shape;
  impl->dtype = dtype();
  Tensor out(std::move(impl));
  if (needs_grad({*this})) {
    auto node = std::make_shared<ReshapeBackward>();
    node->input_shape = shape();
    record(node, {*this}, {out});
  }
  return out;
}

Tensor Tensor::flatten(int start_dim) const {
  const int s = normalize_dim(start_dim, dim(), "flatten");
  Shape out;
  for (int i = 0; i < s; ++i) out.push_back(shape()[i]);
  int64_t rest = 1;
  for (int i = s; i < dim(); ++i) rest *= shape()[i];
  out.push_back(rest);
  return reshape(out);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = this->impl().storage;
  impl->byte_offset = this->impl().byte_offset;
  impl->shape = shape();
  impl->dtype = dtype();
  impl->layout = layout();
  return Tensor(std::move(impl));
}

void Tensor::set_layout(Layout l) {
  HPA_CHECK(l == Layout::NCHW || dim() == 4, "set_layout: NHWC needs a 4-D tensor, got ", desc());
  impl().layout = l;
}

// ---- autograd -------------------------------------------------------------------------

Tensor& Tensor::set_requires_grad(bool value) {
  HPA_CHECK(is_leaf() || value, "set_requires_grad(false) on a non-leaf tensor; use detach()");
  HPA_CHECK(!value || is_floating(dtype()), "set_requires_grad: only floating tensors can require a "
            "gradient, got ", desc());
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    HPA_CHECK(g.shape() == shape() && g.dtype() == dtype() && g.device() == device(),
              "set_grad: gradient ", g.desc(), " does not match tensor ", desc());
  }
  impl().grad = g.impl_ptr();
}

void Tensor::zero_grad() { impl().grad.reset(); }

void Tensor::backward(const Tensor& grad_output) const {
  HPA_CHECK(requires_grad(), "backward: tensor ", desc(), " does not require a gradient (no input "
            "of the graph has requires_grad, or it was computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    HPA_CHECK(numel() == 1, "backward: without a gradient argument the tensor must hold one "
              "element, got ", desc());
    seed = ones(shape(), dtype(), device());
  }
  HPA_CHECK(seed.shape() == shape() && seed.dtype() == dtype() && seed.device() == device(),
            "backward: gradient ", seed.desc(), " does not match tensor ", desc());
  run_backward({*this}, {seed});
}

// ---- in-place helpers -----------------------------------------------------------------

void Tensor::fill_(double value) {
  Tensor src = full(shape(), value, dtype(), device());
  copy_from(src);
}

void Tensor::copy_from(const Tensor& src) {
  HPA_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_from: source ", src.desc(),
            " does not match destination ", desc());
  copy_bytes(data_ptr(), device(), src.data_ptr(), src.device(), nbytes());
}

// ---- printing -------------------------------------------------------------------------

std::string Tensor::to_string(int max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(" << desc();
  if (requires_grad()) os << ", requires_grad";
  if (grad_fn()) os << ", grad_fn=" << grad_fn()->name();
  os << ")\n";
  Tensor host = to(Device::cpu());
  const void* p = host.data_ptr();
  const DType t = dtype();
  os << std::setprecision(6);
  if (dim() == 0) {
    os << load_as_double(p, t, 0);
    return os.str();
  }
  // Recursive bracketed print, eliding the middle of long dimensions.
  std::function<void(int, int64_t, int)> rec = [&](int d, int64_t base, int indent) {
    const int64_t n = shape()[d];
    const int64_t stride = shape().stride(d);
    os << "[";
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "...";
        i = n - max_per_dim / 2 - 1;
        if (d + 1 < dim()) os << ",\n" << std::string(static_cast<size_t>(indent + 1), ' ');
        else os << ", ";
        continue;
      }
      if (d + 1 == dim()) {
        os << load_as_double(p, t, base + i);
      } else {
        rec(d + 1, base + i * stride, indent + 1);
      }
      if (i + 1 < n) {
        if (d + 1 < dim()) os << ",\n" << std::string(static_cast<size_t>(indent + 1), ' ');
        else os << ", ";
      }
    }
    os << "]";
  };
  rec(0, 0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace hpa
