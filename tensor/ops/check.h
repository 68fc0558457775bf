// Argument checks shared by the functional ops. Each throws hpa::Error whose message
// starts with the op's name and shows the offending tensors as dtype[shape] device.
#pragma once

#include "tensor/tensor.h"

namespace hpa::check {

inline void defined(const char* op, const Tensor& t, const char* arg) {
  HPA_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

inline void floating(const char* op, const Tensor& t, const char* arg) {
  defined(op, t, arg);
  HPA_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": argument '", arg,
            "' must be f32 or f64, got ", t.desc());
}

inline void dims(const char* op, const Tensor& t, int n, const char* arg) {
  defined(op, t, arg);
  HPA_CHECK(t.dim() == n, op, ": argument '", arg, "' must be ", n, "-D, got ", t.desc());
}

inline void same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  HPA_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", a.desc(), " and ", b.desc());
}

inline void same_device(const char* op, const Tensor& a, const Tensor& b) {
  HPA_CHECK(a.device() == b.device(), op, ": device mismatch between ", a.desc(), " and ", b.desc(),
            " (move one explicitly with .to(device))");
}

inline void same_shape(const char* op, const Tensor& a, const Tensor& b) {
  HPA_CHECK(a.shape() == b.shape(), op, ": shape mismatch between ", a.desc(), " and ", b.desc());
}

// Until the CUDA backend provides a twin, an op on a non-CPU tensor fails loudly
// instead of copying to the host.
inline void cpu_only(const char* op, const Tensor& t) {
  HPA_CHECK(t.is_cpu(), op, ": no CUDA twin in this build for ", t.desc());
}

}  // namespace hpa::check
