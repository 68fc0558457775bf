// Tensor: a refcounted handle to a dense, row-major block of one dtype on one device.
//
// Design rules a reader would otherwise have to guess:
//  - Tensors are always contiguous. A view (reshape, flatten) shares the storage and
//    may start at a byte offset; anything that would need strides (split along
//    channels, transpose) copies instead. Kernels therefore take plain pointers.
//  - Copying a Tensor copies the handle, not the data (like std::shared_ptr).
//  - A tensor lives on one device. Moving it is the explicit call .to(device); ops never
//    copy to the host behind your back.
//  - Autograd state (requires_grad, grad, grad_fn) lives in the TensorImpl, so every
//    handle to the same tensor sees the same gradient.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/allocator.h"
#include "tensor/dtype.h"
#include "tensor/shape.h"

namespace hpa {

struct Node;
class Generator;

// Owns one allocation on one device.
struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t bytes = 0;
  Device device;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t byte_offset = 0;
  Shape shape;
  DType dtype = DType::f32;
  Layout layout = Layout::NCHW;

  // Autograd. A leaf has requires_grad and no grad_fn; a result of a recorded op has a
  // grad_fn and output_nr says which output of that node it is.
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;
  std::shared_ptr<TensorImpl> grad;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories -------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  // 0, 1, ..., n-1 (or start, start+step, ... below end).
  static Tensor arange(int64_t n, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor arange(double start, double end, double step, DType dtype = DType::f32,
                       Device device = Device::cpu());
  // Uniform [0,1) and standard normal from the Philox stream of `gen` (the default
  // generator when null). Same seed and offset => same values on every device.
  static Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
                     Generator* gen = nullptr);
  static Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
                      Generator* gen = nullptr);
  // Copies host values into a new CPU tensor of the matching dtype.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());

  // ---- metadata ----------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int dim() const { return shape().size(); }
  int64_t size(int d) const;  // negative d counts from the end
  int64_t numel() const { return shape().numel(); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  Layout layout() const { return impl().layout; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  // "f32[8, 64, 56, 56] cpu": the form error messages use.
  std::string desc() const;

  // ---- data --------------------------------------------------------------------------
  void* data_ptr() const;
  // Typed pointer (host or device memory, depending on device()); checks the dtype.
  template <class T>
  T* data() const;
  // Copies to a host vector (from any device); checks the dtype.
  template <class T>
  std::vector<T> to_vector() const;
  // Value of a one-element tensor as double (copies from the device if needed).
  double item() const;

  // ---- conversions and views -----------------------------------------------------------
  Tensor to(Device device) const;   // copy to another device (this tensor if already there)
  Tensor to(DType dtype) const;     // cast (this tensor if already that dtype); not differentiable
  Tensor clone() const;             // deep copy, same device; not differentiable
  Tensor reshape(const Shape& shape) const;  // view with the same element count; differentiable
  Tensor flatten(int start_dim = 1) const;   // view merging dims start_dim..end; differentiable
  Tensor detach() const;            // shares storage, cut from the graph
  void set_layout(Layout layout);

  // ---- autograd ----------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  // Marks a leaf as needing a gradient. Returns *this for chaining.
  Tensor& set_requires_grad(bool value = true);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  // The accumulated gradient (undefined until a backward reaches this tensor).
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient
  // Back-propagates from this tensor. Without an argument it must hold one element and
  // the seed gradient is 1. Gradients accumulate (+=) into the .grad of leaves.
  void backward(const Tensor& grad_output = Tensor()) const;

  // ---- in-place helpers for optimizers and initializers (never recorded) ---------------
  void fill_(double value);
  void copy_from(const Tensor& src);  // same shape and dtype; any devices

  std::string to_string(int max_per_dim = 6) const;
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- template definitions -------------------------------------------------------------
template <class T>
T* Tensor::data() const {
  HPA_CHECK(dtype() == dtype_of<T>::value, "Tensor::data: tensor is ", dtype_name(dtype()),
            ", requested ", dtype_name(dtype_of<T>::value));
  return static_cast<T*>(data_ptr());
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  HPA_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: ",
            values.size(), " values for shape ", shape);
  Tensor t = empty(shape, dtype_of<T>::value, Device::cpu());
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu());
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}

}  // namespace hpa
