// CPU twin of the fills. Every element is independent, so the loops split over threads
// freely without changing a single value.
#include "kernels/fill.h"

#include <cstring>

#include "tensor/error.h"

namespace hpa::kernels {

namespace {

constexpr int64_t kParallelMinElements = 1 << 15;

template <class U>
void fill_units(U* out, int64_t n, U value) {
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) out[i] = value;
}

}  // namespace

void fill_pattern_cpu(void* out, int64_t n, int element_bytes, uint64_t pattern) {
  switch (element_bytes) {
    case 1:
      return fill_units(static_cast<uint8_t*>(out), n, static_cast<uint8_t>(pattern));
    case 2:
      return fill_units(static_cast<uint16_t*>(out), n, static_cast<uint16_t>(pattern));
    case 4:
      return fill_units(static_cast<uint32_t*>(out), n, static_cast<uint32_t>(pattern));
    case 8:
      return fill_units(static_cast<uint64_t*>(out), n, pattern);
  }
  HPA_FAIL("fill_pattern_cpu: element size ", element_bytes, " is not 1, 2, 4 or 8 bytes");
}

template <class T>
void fill_uniform_cpu(T* out, int64_t n, const PhiloxDraw& draw) {
#pragma omp parallel for if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_element<T>(static_cast<uint64_t>(i), draw);
}

template <class T>
void fill_normal_cpu(T* out, int64_t n, const PhiloxDraw& draw) {
#pragma omp parallel for if (n >= kParallelMinElements / 8)
  for (int64_t i = 0; i < n; ++i) out[i] = normal_element<T>(static_cast<uint64_t>(i), draw);
}

template void fill_uniform_cpu<float>(float*, int64_t, const PhiloxDraw&);
template void fill_uniform_cpu<double>(double*, int64_t, const PhiloxDraw&);
template void fill_normal_cpu<float>(float*, int64_t, const PhiloxDraw&);
template void fill_normal_cpu<double>(double*, int64_t, const PhiloxDraw&);

}  // namespace hpa::kernels
