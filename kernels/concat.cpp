// CPU twin of concat / split: one memcpy per (outer index, piece), spread over threads
// when the tensor is large enough.
#include "kernels/concat.h"

#include <cstring>
#include <vector>

namespace hpa::kernels {

namespace {

constexpr int64_t kParallelMinBytes = 1 << 18;

// Calls copy(piece, outer index, byte offset in the piece, byte offset in the joined
// tensor, bytes) for every block.
template <class F>
void for_each_block(const ConcatArgs& args, F copy) {
  std::vector<int64_t> start(static_cast<size_t>(args.num_pieces));  // offset along the dimension
  int64_t s = 0;
  for (int p = 0; p < args.num_pieces; ++p) {
    start[static_cast<size_t>(p)] = s;
    s += args.sizes[p];
  }
  const int64_t joined_row = args.total * args.inner_bytes;
  const int64_t blocks = args.outer * args.num_pieces;
#pragma omp parallel for if (args.outer * joined_row >= kParallelMinBytes)
  for (int64_t b = 0; b < blocks; ++b) {
    const int p = static_cast<int>(b % args.num_pieces);
    const int64_t o = b / args.num_pieces;
    const int64_t bytes = args.sizes[p] * args.inner_bytes;
    copy(p, o * bytes, o * joined_row + start[static_cast<size_t>(p)] * args.inner_bytes, bytes);
  }
}

}  // namespace

void concat_cpu(const void* const* pieces, void* joined, const ConcatArgs& args) {
  char* dst = static_cast<char*>(joined);
  for_each_block(args, [&](int p, int64_t piece_offset, int64_t joined_offset, int64_t bytes) {
    if (bytes == 0) return;
    std::memcpy(dst + joined_offset, static_cast<const char*>(pieces[p]) + piece_offset,
                static_cast<size_t>(bytes));
  });
}

void split_cpu(const void* joined, void* const* pieces, const ConcatArgs& args) {
  const char* src = static_cast<const char*>(joined);
  for_each_block(args, [&](int p, int64_t piece_offset, int64_t joined_offset, int64_t bytes) {
    if (bytes == 0 || pieces[p] == nullptr) return;
    std::memcpy(static_cast<char*>(pieces[p]) + piece_offset, src + joined_offset,
                static_cast<size_t>(bytes));
  });
}

}  // namespace hpa::kernels
