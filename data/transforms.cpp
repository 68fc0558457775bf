// Image transforms; see transforms.h for the conventions.
#include "data/transforms.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "data/error.h"

namespace hpa::data {
namespace {

// One output sample of a separable resampling: sum of weight * input[index].
struct Taps {
  std::vector<int> first, count;  // per output: taps [first, first + count) in index/weight
  std::vector<int> index;
  std::vector<float> weight;
};

// Area averaging for out <= in: output o covers input [o*s, (o+1)*s), s = in / out, and each
// input pixel contributes the length of its overlap / s. Bilinear for out > in, with
// half-pixel centres (src = (o + 0.5) / scale - 0.5) clamped at the edges.
Taps make_taps(int in, int out) {
  Taps taps;
  taps.first.resize(out);
  taps.count.resize(out);
  if (out <= in) {
    const double scale = static_cast<double>(in) / out;
    for (int o = 0; o < out; ++o) {
      const double begin = o * scale, end = (o + 1) * scale;
      taps.first[o] = static_cast<int>(taps.index.size());
      for (int i = static_cast<int>(std::floor(begin)); i < in && i < end; ++i) {
        const double overlap = std::min<double>(end, i + 1) - std::max<double>(begin, i);
        if (overlap <= 1e-12) continue;
        taps.index.push_back(i);
        taps.weight.push_back(static_cast<float>(overlap / scale));
      }
      taps.count[o] = static_cast<int>(taps.index.size()) - taps.first[o];
    }
  } else {
    const double scale = static_cast<double>(out) / in;
    for (int o = 0; o < out; ++o) {
      const double src = std::clamp((o + 0.5) / scale - 0.5, 0.0, static_cast<double>(in - 1));
      const int i0 = static_cast<int>(std::floor(src));
      const int i1 = std::min(i0 + 1, in - 1);
      const float t = static_cast<float>(src - i0);
      taps.first[o] = static_cast<int>(taps.index.size());
      taps.index.insert(taps.index.end(), {i0, i1});
      taps.weight.insert(taps.weight.end(), {1.0f - t, t});
      taps.count[o] = 2;
    }
  }
  return taps;
}

uint8_t round_to_u8(float v) { return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f)); }

// A dihedral element as an affine map from output (y, x) to input (y, x):
// src_y = yy*y + yx*x + y0, src_x = xy*y + xx*x + x0.
struct IndexMap {
  int yy, yx, y0, xy, xx, x0;
};

// out[x] = sum of weight * in[index] over the taps of x (the gathering pass).
void resample_row(const Taps& taps, const float* in, int out_width, uint8_t* out) {
  for (int x = 0; x < out_width; ++x) {
    float sum = 0;
    const int first = taps.first[x], end = first + taps.count[x];
    for (int k = first; k < end; ++k) sum += taps.weight[k] * in[taps.index[k]];
    out[x] = round_to_u8(sum);
  }
}
template <typename In>
void resample_row(const Taps& taps, const In* in, int out_width, float* out) {
  for (int x = 0; x < out_width; ++x) {
    float sum = 0;
    const int first = taps.first[x], end = first + taps.count[x];
    for (int k = first; k < end; ++k) sum += taps.weight[k] * in[taps.index[k]];
    out[x] = sum;
  }
}

// acc = sum over the taps of weight * row[index] (whole rows: contiguous, vectorizes).
template <typename In>
void blend_rows(const Taps& taps, int o, const In* in, int width, float* __restrict acc) {
  std::fill(acc, acc + width, 0.0f);
  const int first = taps.first[o], end = first + taps.count[o];
  for (int k = first; k < end; ++k) {
    const float w = taps.weight[k];
    const In* __restrict line = in + static_cast<size_t>(taps.index[k]) * width;
    for (int x = 0; x < width; ++x) acc[x] += w * line[x];
  }
}

}  // namespace

Image resize(const Image& src, int out_height, int out_width) {
  if (out_height <= 0 || out_width <= 0 || src.height <= 0 || src.width <= 0)
    throw data_error("resize: bad size ", src.height, "x", src.width, " -> ", out_height, "x", out_width);
  if (out_height == src.height && out_width == src.width) return src;
  const Taps horizontal = make_taps(src.width, out_width), vertical = make_taps(src.height, out_height);
  Image out(src.channels, out_height, out_width);
  // The gathering horizontal pass is the slow one, so it runs on the fewer rows: after the
  // vertical pass when the height shrinks, before it otherwise.
  if (out_height <= src.height) {
    std::vector<float> row(src.width);
    for (int c = 0; c < src.channels; ++c)
      for (int o = 0; o < out_height; ++o) {
        blend_rows(vertical, o, src.channel(c), src.width, row.data());
        resample_row(horizontal, row.data(), out_width, out.channel(c) + static_cast<size_t>(o) * out_width);
      }
  } else {
    std::vector<float> rows(static_cast<size_t>(src.height) * out_width), acc(out_width);
    for (int c = 0; c < src.channels; ++c) {
      for (int y = 0; y < src.height; ++y)
        resample_row(horizontal, src.channel(c) + static_cast<size_t>(y) * src.width, out_width,
                     rows.data() + static_cast<size_t>(y) * out_width);
      for (int o = 0; o < out_height; ++o) {
        blend_rows(vertical, o, rows.data(), out_width, acc.data());
        uint8_t* dst = out.channel(c) + static_cast<size_t>(o) * out_width;
        for (int x = 0; x < out_width; ++x) dst[x] = round_to_u8(acc[x]);
      }
    }
  }
  return out;
}

Image crop(const Image& src, int top, int left, int height, int width) {
  if (height <= 0 || width <= 0 || top < 0 || left < 0 || top + height > src.height ||
      left + width > src.width)
    throw data_error("crop: window ", height, "x", width, " at (", top, ", ", left, ") does not fit in a ",
                     src.height, "x", src.width, " image");
  Image out(src.channels, height, width);
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < height; ++y)
      std::memcpy(&out.at(c, y, 0), src.channel(c) + static_cast<size_t>(top + y) * src.width + left, width);
  return out;
}

Image center_crop(const Image& src, int height, int width) {
  return crop(src, (src.height - height) / 2, (src.width - width) / 2, height, width);
}

Image random_crop(const Image& src, int height, int width, Rng& rng) {
  if (height <= 0 || width <= 0 || height > src.height || width > src.width)
    throw data_error("random_crop: window ", height, "x", width, " does not fit in a ", src.height, "x",
                     src.width, " image");
  const int top = static_cast<int>(rng.range(0, src.height - height));
  const int left = static_cast<int>(rng.range(0, src.width - width));
  return crop(src, top, left, height, width);
}

Image dihedral(const Image& src, int k) {
  if (k < 0 || k >= kDihedralCount) throw data_error("dihedral: element ", k, " outside 0..7");
  // Build the output->input index map by applying the steps to the identity map. For the
  // current image J (h x w) with J(y, x) = I(map(y, x)):
  //   flip:      K(y, x) = J(y, w-1-x)             (same size)
  //   rotate CCW: K(y, x) = J(x, w-1-y)             (size w x h)
  IndexMap m{1, 0, 0, 0, 1, 0};
  int h = src.height, w = src.width;
  auto substitute = [&m](int yy, int yx, int y0, int xy, int xx, int x0) {
    // new map(y, x) = old map(Y, X) with Y = yy*y + yx*x + y0, X = xy*y + xx*x + x0
    IndexMap n;
    n.yy = m.yy * yy + m.yx * xy;
    n.yx = m.yy * yx + m.yx * xx;
    n.y0 = m.yy * y0 + m.yx * x0 + m.y0;
    n.xy = m.xy * yy + m.xx * xy;
    n.xx = m.xy * yx + m.xx * xx;
    n.x0 = m.xy * y0 + m.xx * x0 + m.x0;
    m = n;
  };
  if (k & 4) substitute(1, 0, 0, 0, -1, w - 1);
  for (int r = 0; r < (k & 3); ++r) {
    substitute(0, 1, 0, -1, 0, w - 1);
    std::swap(h, w);
  }
  Image out(src.channels, h, w);
  const int64_t in_w = src.width;
  const int64_t row_step = m.yy * in_w + m.xy, col_step = m.yx * in_w + m.xx, start = m.y0 * in_w + m.x0;
  for (int c = 0; c < src.channels; ++c) {
    const uint8_t* in = src.channel(c);
    uint8_t* dst = out.channel(c);
    for (int y = 0; y < h; ++y) {
      int64_t p = start + y * row_step;
      for (int x = 0; x < w; ++x, p += col_step) *dst++ = in[p];
    }
  }
  return out;
}

// ---- the fused crop + dihedral -----------------------------------------------------------

namespace {

constexpr size_t kLine = 64;  // bytes in a cache line

#if defined(__SSE2__)
// One vector register of bytes: 32 with AVX2, 16 with SSE2 (every x86-64).
#if defined(__AVX2__)
using Vec = __m256i;
constexpr size_t kVec = 32;
inline Vec load_vec(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void store_vec(uint8_t* p, Vec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
inline void stream_vec(uint8_t* p, Vec v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v); }
inline Vec reverse_vec(Vec v) {
  const __m256i in_lane = _mm256_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13,
                                           12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, in_lane), 0x4E);
}
#else
using Vec = __m128i;
constexpr size_t kVec = 16;
inline Vec load_vec(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void store_vec(uint8_t* p, Vec v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
inline void stream_vec(uint8_t* p, Vec v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), v); }
inline Vec reverse_vec(Vec v) {
#if defined(__SSSE3__)
  return _mm_shuffle_epi8(v, _mm_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
#else
  // Swap the bytes of each 16-bit word, reverse the words of each half, swap the halves.
  v = _mm_or_si128(_mm_slli_epi16(v, 8), _mm_srli_epi16(v, 8));
  v = _mm_shufflehi_epi16(_mm_shufflelo_epi16(v, 0x1B), 0x1B);
  return _mm_shuffle_epi32(v, 0x4E);
#endif
}
#endif
// Non-temporal stores fill whole cache lines only: a line that mixes them with ordinary
// stores (the unaligned head and tail of a row, or the next row's head) forces the partial
// line out of the write-combining buffer, and that runs at a tenth of copy speed.
inline size_t to_line(const uint8_t* p) { return (kLine - reinterpret_cast<uintptr_t>(p) % kLine) % kLine; }
#endif

// dst[0, len) = src[0, len).
void copy_row(uint8_t* dst, const uint8_t* src, size_t len, bool streaming) {
#if defined(__SSE2__)
  if (streaming && len >= 2 * kLine) {
    size_t i = to_line(dst);  // ordinary stores up to the first line boundary
    if (i > 0) std::memcpy(dst, src, i);
    for (; i + kLine <= len; i += kLine)
      for (size_t v = 0; v < kLine; v += kVec) stream_vec(dst + i + v, load_vec(src + i + v));
    if (i < len) std::memcpy(dst + i, src + i, len - i);  // (no call per row when the row is whole lines)
    return;
  }
#endif
  std::memcpy(dst, src, len);
}

// dst[len-1-j] = src[j] for j in [0, len): a row reversed. The source is read upwards and
// the destination written downwards (the hardware prefetchers follow ascending reads best).
void copy_row_reversed(uint8_t* dst, const uint8_t* src, size_t len, bool streaming) {
  size_t j = 0;
#if defined(__SSE2__)
  if (streaming && len >= 2 * kLine) {
    // Ordinary stores until the destination end dst + len - j is on a line boundary.
    const size_t head = reinterpret_cast<uintptr_t>(dst + len) % kLine;
    for (; j < head; ++j) dst[len - 1 - j] = src[j];
    for (; j + kLine <= len; j += kLine)
      for (size_t v = 0; v < kLine; v += kVec)
        stream_vec(dst + len - j - v - kVec, reverse_vec(load_vec(src + j + v)));
  } else {
    for (; j + kVec <= len; j += kVec) store_vec(dst + len - j - kVec, reverse_vec(load_vec(src + j)));
  }
#else
  (void)streaming;
#endif
  for (; j < len; ++j) dst[len - 1 - j] = src[j];
}

// A block transpose: kBlockRuns runs of kBlockBytes bytes (run j starts at run[j], one run
// per source row, read in increasing address order) become kBlockBytes output rows of
// kBlockRuns bytes: output row i holds byte i of every run and is stored at out + i*stride.
#if defined(__SSE2__)
// Four in-place stages of unpacks (bytes, words, dwords, qwords) on pairs of registers
// transpose 16 runs of 16 bytes. The stages work within 128-bit lanes: with AVX2 each
// register is loaded with run j in its low lane and run j + 16 in its high lane, and the
// same instructions turn 32 runs into 16 whole 32-byte output rows.
struct Sse2Ops {
  using V = __m128i;
  static constexpr int kRuns = 16;
  static V load(const uint8_t* const* run, int j) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(run[j]));
  }
  static V lo8(V a, V b) { return _mm_unpacklo_epi8(a, b); }
  static V hi8(V a, V b) { return _mm_unpackhi_epi8(a, b); }
  static V lo16(V a, V b) { return _mm_unpacklo_epi16(a, b); }
  static V hi16(V a, V b) { return _mm_unpackhi_epi16(a, b); }
  static V lo32(V a, V b) { return _mm_unpacklo_epi32(a, b); }
  static V hi32(V a, V b) { return _mm_unpackhi_epi32(a, b); }
  static V lo64(V a, V b) { return _mm_unpacklo_epi64(a, b); }
  static V hi64(V a, V b) { return _mm_unpackhi_epi64(a, b); }
  static void store(uint8_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
};
#if defined(__AVX2__)
struct Avx2Ops {
  using V = __m256i;
  static constexpr int kRuns = 32;
  static V load(const uint8_t* const* run, int j) {
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(run[j]));
    const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(run[j + 16]));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1);
  }
  static V lo8(V a, V b) { return _mm256_unpacklo_epi8(a, b); }
  static V hi8(V a, V b) { return _mm256_unpackhi_epi8(a, b); }
  static V lo16(V a, V b) { return _mm256_unpacklo_epi16(a, b); }
  static V hi16(V a, V b) { return _mm256_unpackhi_epi16(a, b); }
  static V lo32(V a, V b) { return _mm256_unpacklo_epi32(a, b); }
  static V hi32(V a, V b) { return _mm256_unpackhi_epi32(a, b); }
  static V lo64(V a, V b) { return _mm256_unpacklo_epi64(a, b); }
  static V hi64(V a, V b) { return _mm256_unpackhi_epi64(a, b); }
  static void store(uint8_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
};
using BlockOps = Avx2Ops;
#else
using BlockOps = Sse2Ops;
#endif
constexpr int kBlockRuns = BlockOps::kRuns, kBlockBytes = 16;

inline void transpose_block(const uint8_t* const run[kBlockRuns], uint8_t* out, size_t stride) {
  using Ops = BlockOps;
  using V = Ops::V;
  // After each stage, a[k] holds, for a group of runs, a range of bytes i (see the comments).
  V a[16];
  for (int p = 0; p < 8; ++p) {  // a[2p + h]: runs 2p..2p+1, bytes 8h..8h+7
    const V x = Ops::load(run, 2 * p), y = Ops::load(run, 2 * p + 1);
    a[2 * p] = Ops::lo8(x, y);
    a[2 * p + 1] = Ops::hi8(x, y);
  }
  for (int q = 0; q < 4; ++q)  // a[4q + 2g + h]: runs 4q..4q+3, bytes 8h + 4g + 0..3
    for (int h = 0; h < 2; ++h) {
      const V x = a[4 * q + h], y = a[4 * q + 2 + h];
      a[4 * q + h] = Ops::lo16(x, y);
      a[4 * q + 2 + h] = Ops::hi16(x, y);
    }
  for (int u = 0; u < 2; ++u)  // a[8u + 4e + m]: runs 8u..8u+7, bytes (start of m) + 2e + 0..1
    for (int m = 0; m < 4; ++m) {
      const V x = a[8 * u + m], y = a[8 * u + 4 + m];
      a[8 * u + m] = Ops::lo32(x, y);
      a[8 * u + 4 + m] = Ops::hi32(x, y);
    }
  for (int m = 0; m < 8; ++m) {  // runs 0..15 of byte i and i + 1: output rows i and i + 1
    const int i = (m & 1) * 8 + ((m >> 1) & 1) * 4 + (m >> 2) * 2;
    Ops::store(out + static_cast<size_t>(i) * stride, Ops::lo64(a[m], a[8 + m]));
    Ops::store(out + static_cast<size_t>(i + 1) * stride, Ops::hi64(a[m], a[8 + m]));
  }
}
#else
constexpr int kBlockRuns = 8, kBlockBytes = 8;
// 8x8 bytes in eight little-endian words: swap off-diagonal 4x4, 2x2, then 1x1 blocks.
inline void transpose_block(const uint8_t* const run[kBlockRuns], uint8_t* out, size_t stride) {
  static_assert(std::endian::native == std::endian::little,
                "the 8x8 block transpose assumes little-endian words");
  uint64_t a[8];
  for (int j = 0; j < 8; ++j) std::memcpy(&a[j], run[j], 8);
  for (int j = 0; j < 4; ++j) {
    const uint64_t t = ((a[j] >> 32) ^ a[j + 4]) & 0x00000000FFFFFFFFull;
    a[j] ^= t << 32;
    a[j + 4] ^= t;
  }
  for (int j : {0, 1, 4, 5}) {
    const uint64_t t = ((a[j] >> 16) ^ a[j + 2]) & 0x0000FFFF0000FFFFull;
    a[j] ^= t << 16;
    a[j + 2] ^= t;
  }
  for (int j : {0, 2, 4, 6}) {
    const uint64_t t = ((a[j] >> 8) ^ a[j + 1]) & 0x00FF00FF00FF00FFull;
    a[j] ^= t << 8;
    a[j + 1] ^= t;
  }
  for (int i = 0; i < 8; ++i) std::memcpy(out + static_cast<size_t>(i) * stride, &a[i], 8);
}
#endif

inline void store_fence() {
#if defined(__SSE2__)
  _mm_sfence();  // non-temporal stores are weakly ordered: publish them before returning
#endif
}

// dst[0, 64) = src[0, 64), src 64-byte aligned; with `stream`, dst is too and the line is
// written with non-temporal stores.
inline void store_line(uint8_t* dst, const uint8_t* src, bool stream) {
#if defined(__SSE2__)
  if (stream) {
    for (size_t v = 0; v < kLine; v += kVec) stream_vec(dst + v, load_vec(src + v));
    return;
  }
#else
  (void)stream;
#endif
  std::memcpy(dst, src, kLine);
}

// out (n x n) = a transposing element of the n x n window at `window` (rows `stride` apart):
// out(y, x) = window(flip_x ? n-1-x : x, flip_y ? n-1-y : y), source row then column.
//
// The window is read in bands of 64 source rows, in ascending address order; a band is 64
// output columns. Per 16 source columns the band's block transposes fill a 16 x 64 tile in
// L1 (16 output rows, one whole cache line of each), which goes out as 16 lines, with
// non-temporal stores when every line is whole (n a multiple of 64, out on a line boundary).
// The next band is prefetched, a slice per tile, while the current one is transposed:
// source rows are a row apart, where the hardware prefetchers do not follow, and without
// the prefetch the reads wait on memory. A ragged last band (n % 64 rows) and
// ragged columns (n % 16) are copied byte by byte. Measured against the previous kernel
// (staging copy of the window, 64-row output bands) in docs/PERFORMANCE.md, data pipeline.
//
// `next`, when not null, is the window the caller transposes next (same stride and size, the
// sample's next plane): its first band is prefetched during the last band of this one, and
// `first_prefetched` tells the next call that its first band is on the way.
void transpose_window(const uint8_t* window, size_t stride, int n, bool flip_x, bool flip_y, uint8_t* out,
                      bool streaming, const uint8_t* next, bool first_prefetched) {
  constexpr int kBand = 64, kTileRows = 16;
  static_assert(kBand % kBlockRuns == 0 && kTileRows % kBlockBytes == 0);
  const size_t nn = static_cast<size_t>(n);
  const bool stream = streaming && nn % kLine == 0 && reinterpret_cast<uintptr_t>(out) % kLine == 0;
  const int bands = n / kBand, blocked_cols = n / kTileRows * kTileRows;
  alignas(64) uint8_t tile[kTileRows * kBand];
  auto out_row = [&](int source_col) {
    return out + static_cast<size_t>(flip_y ? n - 1 - source_col : source_col) * nn;
  };

  // Prefetch addresses of a band: every line of the contiguous span from its first row's
  // start to its last row's end, the bytes between the rows (outside the window) included.
  // One ascending run is 6-16% faster than the window's lines alone, row by row, though it
  // reads a third more lines for a 512 crop of a 768 plane (docs/PERFORMANCE.md).
  const size_t band_span = static_cast<size_t>(kBand - 1) * stride + nn;
  const int band_lines = static_cast<int>((band_span + kLine - 1) / kLine) + 1;  // +1: need not start a line
  // (The prefetch itself stays at the call sites: GCC 12 took a lambda holding only a
  // __builtin_prefetch for a pure function and deleted every call to it.)
  auto line_address = [&](const uint8_t* base, int band, int line) {
    return base + static_cast<size_t>(band) * kBand * stride +
           std::min(static_cast<size_t>(line) * kLine, band_span - 1);
  };
  if (bands > 0 && !first_prefetched)
    for (int line = 0; line < band_lines; ++line) __builtin_prefetch(line_address(window, 0, line), 0, 3);
  const int tiles = blocked_cols / kTileRows,
            lines_per_tile = tiles > 0 ? (band_lines + tiles - 1) / tiles : 0;

  for (int b = 0; b < bands; ++b) {
    const int r0 = b * kBand;                     // source rows r0 .. r0 + 63
    const int x0 = flip_x ? n - r0 - kBand : r0;  // their output columns x0 .. x0 + 63
    const uint8_t* run[kBand];                    // tile column t holds this source row
    for (int t = 0; t < kBand; ++t)
      run[t] = window + static_cast<size_t>(r0 + (flip_x ? kBand - 1 - t : t)) * stride;
    const bool last = b + 1 == bands;
    const uint8_t* ahead = last ? next : window;  // the band after this one: b + 1, or next's first
    const int ahead_band = last ? 0 : b + 1;
    int prefetched = ahead != nullptr ? 0 : band_lines;
    for (int c0 = 0; c0 < blocked_cols; c0 += kTileRows) {  // source columns c0 .. c0 + 15
      for (int i = 0; i < lines_per_tile && prefetched < band_lines; ++i)
        __builtin_prefetch(line_address(ahead, ahead_band, prefetched++), 0, 3);
      for (int tb = 0; tb < kBand; tb += kBlockRuns)
        for (int cb = 0; cb < kTileRows; cb += kBlockBytes) {
          const uint8_t* block[kBlockRuns];
          for (int j = 0; j < kBlockRuns; ++j) block[j] = run[tb + j] + c0 + cb;
          transpose_block(block, tile + cb * kBand + tb, kBand);
        }
      for (int i = 0; i < kTileRows; ++i) store_line(out_row(c0 + i) + x0, tile + i * kBand, stream);
    }
    for (int c = blocked_cols; c < n; ++c) {
      uint8_t* d = out_row(c) + x0;
      for (int t = 0; t < kBand; ++t) d[t] = run[t][c];
    }
  }
  for (int r = bands * kBand; r < n; ++r) {  // the ragged band, a source row at a time
    const uint8_t* s = window + static_cast<size_t>(r) * stride;
    const int x = flip_x ? n - 1 - r : r;
    for (int c = 0; c < n; ++c) out_row(c)[x] = s[c];
  }
  if (streaming) store_fence();
}

// dihedral(k) is a horizontal flip when k & 4, then (k & 3) counter-clockwise quarter turns,
// so out(p) = window(flip(rot^r(p))) with rot(y, x) = (x, n-1-y), flip(y, x) = (y, n-1-x).
// Composing these affine maps, the source offset of output (y, x) is origin + y*dy + x*dx
// with dx in {+1, -1, +width, -width}: output rows are source rows read forwards or
// backwards, or source columns (the transposes, odd k).
//
// crop_dihedral_plane, told the next plane the caller crops the same way (or null) and
// whether this one's first rows were prefetched: see transpose_window.
void crop_dihedral(const uint8_t* plane, int height, int width, int top, int left, int n, int k, uint8_t* out,
                   bool streaming, const uint8_t* next_plane, bool first_prefetched) {
  if (k < 0 || k >= kDihedralCount) throw data_error("crop_dihedral: element ", k, " outside 0..7");
  if (n <= 0 || top < 0 || left < 0 || top > height - n || left > width - n)
    throw data_error("crop_dihedral: window ", n, "x", n, " at (", top, ", ", left, ") does not fit in a ",
                     height, "x", width, " plane");
  struct Affine {  // source row (or column) of output (y, x) = c + cy*y + cx*x
    int64_t c, cy, cx;
  };
  Affine row{0, 1, 0}, col{0, 0, 1};
  for (int r = 0; r < (k & 3); ++r) {
    const Affine new_row = col;
    const Affine new_col{n - 1 - row.c, -row.cy, -row.cx};
    row = new_row;
    col = new_col;
  }
  if (k & 4) col = Affine{n - 1 - col.c, -col.cy, -col.cx};
  const size_t nn = static_cast<size_t>(n);
  const int64_t stride = width;
  const uint8_t* base = plane + static_cast<int64_t>(top) * stride + left;
  const uint8_t* next = next_plane ? next_plane + (base - plane) : nullptr;  // the same window there
  if (row.cx != 0) {  // source row = row.c + row.cx * x, source column = col.c + col.cy * y
    transpose_window(base, static_cast<size_t>(stride), n, row.cx < 0, col.cy < 0, out, streaming, next,
                     first_prefetched);
    return;
  }
  const int64_t dy = row.cy * stride, dx = col.cx;
  const uint8_t* window = base + row.c * stride + col.c;
  // Rows forwards (dx = 1) or backwards (dx = -1), taken in ascending source order: step i
  // copies the window's source row i. kRowsAhead steps ahead, a row is prefetched together
  // with the bytes before it back to the end of the row above (outside the window): the reads
  // become one ascending run of lines instead of a run per row, which the hardware prefetchers
  // break off at every page (the window's rows are a plane's width apart). 1.0-1.2x for the
  // row copies in a scratch A/B (docs/PERFORMANCE.md). The last steps prefetch the first
  // rows of the sample's next plane.
  constexpr int kRowsAhead = 4;
  const size_t gap = static_cast<size_t>(stride) - nn;
  for (int i = 0; i < n; ++i) {
    const int a = i + kRowsAhead;
    const uint8_t* ahead = a < n                          ? base + a * stride
                           : next != nullptr && a - n < n ? next + (a - n) * stride
                                                          : nullptr;
    if (ahead != nullptr) {
      // (At its call site: GCC 12 deletes a __builtin_prefetch wrapped in a small lambda.)
      for (const uint8_t* p = ahead - (a == n ? 0 : gap); p < ahead + nn; p += kLine)
        __builtin_prefetch(p, 0, 3);
      __builtin_prefetch(ahead + nn - 1, 0, 3);
    }
    const int y = dy > 0 ? i : n - 1 - i;
    const uint8_t* s = window + y * dy;
    if (dx == 1)
      copy_row(out + y * nn, s, nn, streaming);
    else
      copy_row_reversed(out + y * nn, s - (n - 1), nn, streaming);
  }
  if (streaming) store_fence();
}

}  // namespace

void crop_dihedral_plane(const uint8_t* plane, int height, int width, int top, int left, int n, int k,
                         uint8_t* out, bool streaming) {
  crop_dihedral(plane, height, width, top, left, n, k, out, streaming, nullptr, false);
}

void crop_dihedral_into(const uint8_t* pixels, int channels, int height, int width, int top, int left, int n,
                        int k, uint8_t* out, bool streaming) {
  const size_t plane = static_cast<size_t>(height) * width, out_plane = static_cast<size_t>(n) * n;
  for (int c = 0; c < channels; ++c)
    crop_dihedral(pixels + c * plane, height, width, top, left, n, k, out + c * out_plane, streaming,
                  c + 1 < channels ? pixels + (c + 1) * plane : nullptr, c > 0);
}

// Element k = R^r F^f (flip first, then r counter-clockwise quarter turns). With
// F R F = R^-1: (R^rb F^fb)(R^ra F^fa) = R^(rb + (fb ? -ra : ra)) F^(fa xor fb).
int dihedral_compose(int first, int second) {
  const int ra = first & 3, fa = first >> 2, rb = second & 3, fb = second >> 2;
  const int r = (rb + (fb ? 4 - ra : ra)) & 3;
  return r | ((fa ^ fb) << 2);
}

int dihedral_inverse(int k) { return (k & 4) ? k : (4 - (k & 3)) & 3; }

namespace {
// The sum of n bytes, exact: a sum of absolute differences against zero adds up eight bytes
// into each 64-bit lane (2.5x faster than the byte loop the compiler makes of it).
uint64_t byte_sum(const uint8_t* p, size_t n) {
  uint64_t sum = 0;
  size_t i = 0;
#if defined(__AVX2__)
  __m256i acc = _mm256_setzero_si256();
  for (; i + 32 <= n; i += 32)
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(load_vec(p + i), _mm256_setzero_si256()));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#elif defined(__SSE2__)
  __m128i acc = _mm_setzero_si128();
  for (; i + 16 <= n; i += 16) acc = _mm_add_epi64(acc, _mm_sad_epu8(load_vec(p + i), _mm_setzero_si128()));
  alignas(16) uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc);
  sum = lanes[0] + lanes[1];
#endif
  for (; i < n; ++i) sum += p[i];
  return sum;
}

// p[i] = table[p[i]]. With AVX2, 32 bytes at a time: the table as 16 rows of 16 entries,
// each row looked up by the low nibble (one byte shuffle) and kept where the high nibble
// picks that row (a compare and a blend); 2x the byte loop on a 512² plane.
void apply_table(uint8_t* p, size_t n, const uint8_t table[256]) {
  size_t i = 0;
#if defined(__AVX2__)
  __m256i rows[16];
  for (int h = 0; h < 16; ++h)
    rows[h] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * h)));
  const __m256i low_nibble = _mm256_set1_epi8(0x0F);
  for (; i + kVec <= n; i += kVec) {
    const __m256i v = load_vec(p + i);
    const __m256i low = _mm256_and_si256(v, low_nibble);
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibble);
    __m256i r = _mm256_shuffle_epi8(rows[0], low);
    for (int h = 1; h < 16; ++h)
      r = _mm256_blendv_epi8(r, _mm256_shuffle_epi8(rows[h], low),
                             _mm256_cmpeq_epi8(high, _mm256_set1_epi8(static_cast<char>(h))));
    store_vec(p + i, r);
  }
#endif
  for (; i < n; ++i) p[i] = table[p[i]];
}
}  // namespace

void jitter_plane(uint8_t* p, size_t n, double contrast, double brightness) {
  const uint64_t sum = byte_sum(p, n);
  const double mean = n ? static_cast<double>(sum) / n : 0.0;
  uint8_t table[256];
  for (int v = 0; v < 256; ++v)
    table[v] = static_cast<uint8_t>(
        std::clamp(std::floor(contrast * (v - mean) + mean + 255.0 * brightness + 0.5), 0.0, 255.0));
  apply_table(p, n, table);
}

void color_jitter(Image& image, double brightness_range, double contrast_range, Rng& rng) {
  for (int c = 0; c < image.channels; ++c) {
    const double contrast = rng.uniform(1.0 - contrast_range, 1.0 + contrast_range);
    const double brightness = rng.uniform(-brightness_range, brightness_range);
    jitter_plane(image.channel(c), image.plane_size(), contrast, brightness);
  }
}

void normalize(const Image& image, const ChannelStats& stats, float* out) {
  if (image.channels != kNumChannels)
    throw data_error("normalize: image has ", image.channels, " channels, expected ", kNumChannels);
  const size_t n = image.plane_size();
  for (int c = 0; c < kNumChannels; ++c) {
    if (!(stats.std[c] > 0))
      throw data_error("normalize: std of channel ", c, " is ", stats.std[c], ", must be > 0");
    float table[256];
    for (int v = 0; v < 256; ++v) table[v] = static_cast<float>((v / 255.0 - stats.mean[c]) / stats.std[c]);
    const uint8_t* in = image.channel(c);
    float* dst = out + c * n;
    for (size_t i = 0; i < n; ++i) dst[i] = table[in[i]];
  }
}

Image augment(const Image& src, const AugmentOptions& options, Rng& rng) {
  Image out = options.crop_size > 0 && (options.crop_size != src.height || options.crop_size != src.width)
                  ? random_crop(src, options.crop_size, options.crop_size, rng)
                  : src;
  if (options.dihedral) {
    const int k = static_cast<int>(rng.below(kDihedralCount));
    if (k != 0) out = dihedral(out, k);
  }
  if (options.brightness > 0 || options.contrast > 0)
    color_jitter(out, options.brightness, options.contrast, rng);
  return out;
}

}  // namespace hpa::data
