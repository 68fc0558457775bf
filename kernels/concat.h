// Joining and splitting contiguous tensors along one dimension. With outer = the product
// of the sizes before the dimension and inner_bytes = the bytes of one step along it,
// piece p is `outer` blocks of sizes[p] * inner_bytes, interleaved in the joined tensor.
// The copies move bytes, so they serve every dtype; split is the same walk in reverse,
// which is also concat's backward (and concat is split's).
//
// The CUDA twins take the same host array of (device) piece pointers and do all pieces in
// one launch per 64 pieces, moving 16-byte units when sizes and pointers allow.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace hpa::kernels {

struct ConcatArgs {
  int64_t outer = 1;        // product of the sizes before the dimension
  int64_t inner_bytes = 0;  // bytes per unit of the dimension: product of later sizes * element size
  int64_t total = 0;        // size of the dimension in the joined tensor (sum of sizes)
  int num_pieces = 0;
  const int64_t* sizes = nullptr;  // num_pieces sizes along the dimension
};

// joined <- pieces (writes =).
void concat_cpu(const void* const* pieces, void* joined, const ConcatArgs& args);
// pieces <- joined (writes =). A null piece pointer skips that piece (a gradient that
// no input needs).
void split_cpu(const void* joined, void* const* pieces, const ConcatArgs& args);

// CUDA twins (kernels/concat.cu): the same contracts, pointers to device memory (the
// `pieces` array itself lives on the host), work queued on `stream`.
void concat_cuda(const void* const* pieces, void* joined, const ConcatArgs& args, Stream stream);
void split_cuda(const void* joined, void* const* pieces, const ConcatArgs& args, Stream stream);

}  // namespace hpa::kernels
