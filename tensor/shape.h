// Shape: up to 5 dimensions held inline (no heap), sizes as int64_t. Tensors are dense
// row-major, so a shape alone fixes the strides.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "tensor/error.h"

namespace hpa {

class Shape {
 public:
  static constexpr int kMaxDims = 5;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

  int size() const { return n_; }
  int64_t operator[](int i) const { return d_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return d_[static_cast<size_t>(i)]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < n_; ++i) n *= d_[static_cast<size_t>(i)];
    return n;
  }
  // Row-major stride of dimension i (in elements).
  int64_t stride(int i) const {
    int64_t s = 1;
    for (int j = i + 1; j < n_; ++j) s *= d_[static_cast<size_t>(j)];
    return s;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }

  void push_back(int64_t v) {
    HPA_CHECK(n_ < kMaxDims, "Shape: more than ", kMaxDims, " dimensions");
    HPA_CHECK(v >= 0, "Shape: negative size ", v);
    d_[static_cast<size_t>(n_++)] = v;
  }

  bool operator==(const Shape& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i)
      if (d_[static_cast<size_t>(i)] != o.d_[static_cast<size_t>(i)]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < n_; ++i) s += (i ? ", " : "") + std::to_string(d_[static_cast<size_t>(i)]);
    return s + "]";
  }

 private:
  template <class It>
  void assign(It b, It e) {
    for (; b != e; ++b) push_back(*b);
  }
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

// Normalizes a possibly negative dimension index against `ndim`; throws naming `op`.
inline int normalize_dim(int dim, int ndim, const char* op) {
  const int d = dim < 0 ? dim + ndim : dim;
  HPA_CHECK(d >= 0 && d < ndim, op, ": dimension ", dim, " out of range for a ", ndim, "-D tensor");
  return d;
}

}  // namespace hpa
