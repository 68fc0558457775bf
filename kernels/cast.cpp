// CPU twin of the f32 <-> f64 buffer casts.
#include "kernels/cast.h"

namespace hpa::kernels {

template <class Src, class Dst>
void cast_cpu(const Src* src, Dst* dst, int64_t n) {
#pragma omp parallel for simd if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = cast_element<Dst>(src[i]);
}

template void cast_cpu<float, double>(const float*, double*, int64_t);
template void cast_cpu<double, float>(const double*, float*, int64_t);

}  // namespace hpa::kernels
