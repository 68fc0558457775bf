// Shared test helpers:
//  - expect_close: |a-b| <= atol + rtol*|ref| elementwise, NaN/Inf never pass, and the
//    failure message reports the worst element as a fraction of its tolerance;
//  - gradcheck: compares the autograd gradient of every input with central finite
//    differences of the scalar L = sum(f(inputs) * R), R a fixed random projection, so
//    one check covers the whole Jacobian-vector product in O(numel) forward passes;
//  - separated_values: random values whose pairwise gaps are at least `gap`, so kinks
//    (ReLU at 0, ties of max) are never straddled by a finite-difference step.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <cstring>
#include <vector>

#include "tensor/autograd.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace hpa::test {

inline std::vector<double> as_doubles(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  if (h.dtype() != DType::f64) h = h.to(DType::f64);
  return h.to_vector<double>();
}

// Checks actual against reference; returns a testing::AssertionResult for EXPECT_TRUE.
inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& reference, double atol,
                                            double rtol, const std::string& what = "") {
  if (actual.shape() != reference.shape())
    return ::testing::AssertionFailure() << what << ": shape " << actual.shape() << " vs reference "
                                         << reference.shape();
  const auto a = as_doubles(actual), r = as_doubles(reference);
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(r[i])) {
      return ::testing::AssertionFailure() << what << ": non-finite value at " << i << " (actual " << a[i]
                                           << ", reference " << r[i] << ")";
    }
    const double frac = std::abs(a[i] - r[i]) / (atol + rtol * std::abs(r[i]));
    if (frac > worst) {
      worst = frac;
      worst_i = i;
    }
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": element " << worst_i << " actual " << a[worst_i]
                                       << " reference " << r[worst_i] << " is off by " << worst
                                       << "x the tolerance (atol " << atol << ", rtol " << rtol << ")";
}

// True when actual and reference have the same dtype, shape and bytes (NaN payloads,
// signed zeros and infinities included): for copies and gathers, which must be exact.
inline ::testing::AssertionResult same_bits(const Tensor& actual, const Tensor& reference, const std::string& what = "") {
  if (actual.dtype() != reference.dtype() || actual.shape() != reference.shape())
    return ::testing::AssertionFailure() << what << ": " << actual.desc() << " vs reference " << reference.desc();
  const Tensor a = actual.to(Device::cpu()), r = reference.to(Device::cpu());
  const auto* pa = static_cast<const unsigned char*>(a.data_ptr());
  const auto* pr = static_cast<const unsigned char*>(r.data_ptr());
  const size_t element = dtype_size(a.dtype());
  for (size_t i = 0; i < a.nbytes(); i += element) {
    if (std::memcmp(pa + i, pr + i, element) != 0) {
      return ::testing::AssertionFailure() << what << ": element " << i / element << " differs in its bits (actual "
                                           << as_doubles(a)[i / element] << ", reference "
                                           << as_doubles(r)[i / element] << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

#define EXPECT_ALL_CLOSE(actual, ref, atol, rtol) EXPECT_TRUE(::hpa::test::all_close(actual, ref, atol, rtol, #actual))

// Random values in [-scale, scale] with pairwise gaps >= gap and none within gap/2 of 0.
inline Tensor separated_values(const Shape& shape, DType dtype, uint64_t seed, double gap = 1e-2) {
  const int64_t n = shape.numel();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double k = static_cast<double>(i) - static_cast<double>(n) / 2.0;
    v[static_cast<size_t>(i)] = (k + (k >= 0 ? 0.5 : -0.5)) * gap;
  }
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  Tensor t = Tensor::from_vector(v, shape);
  return t.to(dtype);
}

// Random normal values from a fixed seed.
inline Tensor randn(const Shape& shape, DType dtype, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(shape, dtype, Device::cpu(), &g);
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Finite-difference check in double. `inputs` must be f64 CPU tensors; those with
// requires_grad set are checked. Returns a failure describing the worst mismatch.
inline ::testing::AssertionResult gradcheck(const Fn& f, std::vector<Tensor> inputs, double eps = 1e-6,
                                            double atol = 1e-5, double rtol = 1e-4, uint64_t seed = 7) {
  for (auto& t : inputs) {
    if (!t.defined()) continue;
    if (t.dtype() != DType::f64)
      return ::testing::AssertionFailure() << "gradcheck needs f64 inputs, got " << t.desc();
  }
  // Analytic gradients.
  Tensor out = f(inputs);
  if (out.dtype() != DType::f64) return ::testing::AssertionFailure() << "gradcheck: output " << out.desc();
  Generator g(seed);
  const Tensor proj = Tensor::randn(out.shape(), DType::f64, Device::cpu(), &g);
  const auto R = proj.to_vector<double>();
  for (auto& t : inputs)
    if (t.defined() && t.requires_grad()) t.zero_grad();
  out.backward(proj);
  auto scalar_of = [&](const std::vector<Tensor>& in) {
    NoGradGuard ng;
    const auto v = f(in).to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i] * R[i];
    return s;
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& t = inputs[k];
    if (!t.defined() || !t.requires_grad()) continue;
    Tensor analytic = t.grad();
    if (!analytic.defined()) analytic = Tensor::zeros(t.shape(), DType::f64);
    const auto a = analytic.to_vector<double>();
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double orig = p[i];
      p[i] = orig + eps;
      const double up = scalar_of(inputs);
      p[i] = orig - eps;
      const double down = scalar_of(inputs);
      p[i] = orig;
      const double numeric = (up - down) / (2 * eps);
      const double err = std::abs(numeric - a[static_cast<size_t>(i)]);
      if (!std::isfinite(a[static_cast<size_t>(i)]) || err > atol + rtol * std::abs(numeric)) {
        return ::testing::AssertionFailure() << "gradcheck: input " << k << " " << t.desc() << " element " << i
                                             << ": analytic " << a[static_cast<size_t>(i)] << " numeric "
                                             << numeric << " (|diff| " << err << ")";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs f on float copies of f64 inputs with gradients and compares the float outputs and
// gradients with the double ones: the float path of the typed tests.
inline ::testing::AssertionResult float_matches_double(const Fn& f, const std::vector<Tensor>& inputs64,
                                                       double atol = 1e-4, double rtol = 1e-3,
                                                       uint64_t seed = 7) {
  std::vector<Tensor> in64, in32;
  for (const auto& t : inputs64) {
    if (!t.defined()) {
      in64.emplace_back();
      in32.emplace_back();
      continue;
    }
    Tensor a = t.detach().clone(), b = t.detach().to(DType::f32).clone();
    if (t.requires_grad()) {
      a.set_requires_grad();
      b.set_requires_grad();
    }
    in64.push_back(a);
    in32.push_back(b);
  }
  Tensor o64 = f(in64), o32 = f(in32);
  if (o32.dtype() != DType::f32) return ::testing::AssertionFailure() << "float path returned " << o32.desc();
  auto r = all_close(o32, o64, atol, rtol, "float output");
  if (!r) return r;
  Generator g(seed);
  Tensor proj = Tensor::randn(o64.shape(), DType::f64, Device::cpu(), &g);
  if (o64.requires_grad()) {
    o64.backward(proj);
    o32.backward(proj.to(DType::f32));
    for (size_t k = 0; k < in64.size(); ++k) {
      if (!in64[k].defined() || !in64[k].requires_grad()) continue;
      r = all_close(in32[k].grad(), in64[k].grad(), atol, rtol, "float gradient of input " + std::to_string(k));
      if (!r) return r;
    }
  }
  return ::testing::AssertionSuccess();
}

// Expects `stmt` to throw hpa::Error whose message contains every string in `needles`.
#define EXPECT_HPA_ERROR(stmt, ...)                                                          \
  do {                                                                                       \
    try {                                                                                    \
      stmt;                                                                                  \
      ADD_FAILURE() << "expected hpa::Error from " #stmt;                                    \
    } catch (const ::hpa::Error& e) {                                                        \
      for (const std::string& needle : std::vector<std::string>{__VA_ARGS__})               \
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)                     \
            << "message '" << e.what() << "' lacks '" << needle << "'";                      \
    }                                                                                        \
  } while (0)

}  // namespace hpa::test
