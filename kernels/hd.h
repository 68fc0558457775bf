// HPA_HD marks a function callable from both host and device code. Per-element math is
// written once as an HPA_HD inline function in a kernels/<op>.h header and called by the
// CPU twin (<op>.cpp) and the CUDA twin (<op>.cu), so the two can never drift apart.
#pragma once

#if defined(__CUDACC__)
#define HPA_HD __host__ __device__
#else
#define HPA_HD
#endif

// CUDA launchers take the stream as hpa::kernels::Stream, which is cudaStream_t without
// including the CUDA headers, so kernels/<op>.h stays includable from plain C++.
struct CUstream_st;
namespace hpa::kernels {
using Stream = CUstream_st*;
}  // namespace hpa::kernels
