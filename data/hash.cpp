#include "data/hash.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "data/error.h"

namespace hpa::data {

namespace {

// Area average of the plane onto a cols x rows grid. Cell boundaries are integer pixel
// positions (floor(k * size / cells)); a cell is never empty, so planes smaller than the grid
// still hash (each pixel then covers several cells).
template <int Cols, int Rows>
std::array<float, Cols * Rows> area_average(const uint8_t* plane, int width, int height, ptrdiff_t stride,
                                            const char* what) {
  if (plane == nullptr || width <= 0 || height <= 0 || stride < width)
    throw DataError(std::string(what) + ": bad plane " + std::to_string(width) + "x" +
                    std::to_string(height) + " with row stride " + std::to_string(stride));
  std::array<int, Cols + 1> x_edge{};
  for (int k = 0; k <= Cols; ++k)
    x_edge[static_cast<size_t>(k)] = static_cast<int>(int64_t{k} * width / Cols);
  std::array<double, Cols * Rows> sums{};
  for (int cy = 0; cy < Rows; ++cy) {
    int y0 = static_cast<int>(int64_t{cy} * height / Rows);
    int y1 = static_cast<int>(int64_t{cy + 1} * height / Rows);
    y1 = std::max(y1, y0 + 1);
    y0 = std::min(y0, height - 1);
    for (int cx = 0; cx < Cols; ++cx) {
      int x0 = std::min(x_edge[static_cast<size_t>(cx)], width - 1);
      int x1 = std::max(x_edge[static_cast<size_t>(cx + 1)], x0 + 1);
      uint64_t s = 0;
      for (int y = y0; y < y1; ++y) {
        const uint8_t* row = plane + static_cast<ptrdiff_t>(y) * stride;
        for (int x = x0; x < x1; ++x) s += row[x];
      }
      sums[static_cast<size_t>(cy * Cols + cx)] =
          static_cast<double>(s) / (static_cast<double>(y1 - y0) * (x1 - x0));
    }
  }
  std::array<float, Cols * Rows> cells{};
  for (size_t i = 0; i < cells.size(); ++i) cells[i] = static_cast<float>(sums[i]);
  return cells;
}

// cos((2x + 1) u pi / 64) for the 32-point DCT-II, u < 8 (only the low frequencies are used).
const std::array<double, 8 * 32>& dct_table() {
  static const std::array<double, 8 * 32> table = [] {
    std::array<double, 8 * 32> t{};
    for (int u = 0; u < 8; ++u)
      for (int x = 0; x < 32; ++x)
        t[static_cast<size_t>(u * 32 + x)] = std::cos((2.0 * x + 1.0) * u * M_PI / 64.0);
    return t;
  }();
  return table;
}

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ull;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ull;

inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}
inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  acc = std::rotl(acc, 31);
  return acc * kPrime1;
}
inline uint64_t xxh_merge(uint64_t acc, uint64_t value) {
  acc ^= xxh_round(0, value);
  return acc * kPrime1 + kPrime4;
}

}  // namespace

uint64_t phash64(const uint8_t* plane, int width, int height, ptrdiff_t row_stride) {
  const std::array<float, 32 * 32> small = area_average<32, 32>(plane, width, height, row_stride, "phash64");
  const auto& cosine = dct_table();
  // Separable DCT: 8 coefficients along each row, then 8 along each resulting column.
  std::array<double, 32 * 8> rows{};
  for (int y = 0; y < 32; ++y)
    for (int u = 0; u < 8; ++u) {
      double s = 0;
      for (int x = 0; x < 32; ++x)
        s += small[static_cast<size_t>(y * 32 + x)] * cosine[static_cast<size_t>(u * 32 + x)];
      rows[static_cast<size_t>(y * 8 + u)] = s;
    }
  std::array<double, 63> ac{};
  size_t k = 0;
  for (int v = 0; v < 8; ++v)
    for (int u = 0; u < 8; ++u) {
      if (u == 0 && v == 0) continue;
      double s = 0;
      for (int y = 0; y < 32; ++y)
        s += rows[static_cast<size_t>(y * 8 + u)] * cosine[static_cast<size_t>(v * 32 + y)];
      ac[k++] = s;
    }
  std::array<double, 63> sorted = ac;
  std::nth_element(sorted.begin(), sorted.begin() + 31, sorted.end());
  const double median = sorted[31];
  uint64_t bits = 0;
  for (size_t i = 0; i < ac.size(); ++i)
    if (ac[i] > median) bits |= uint64_t{1} << i;
  return bits;
}

uint64_t dhash64(const uint8_t* plane, int width, int height, ptrdiff_t row_stride) {
  const std::array<float, 9 * 8> small = area_average<9, 8>(plane, width, height, row_stride, "dhash64");
  uint64_t bits = 0;
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      if (small[static_cast<size_t>(y * 9 + x)] > small[static_cast<size_t>(y * 9 + x + 1)])
        bits |= uint64_t{1} << (8 * y + x);
  return bits;
}

Xxh64Stream::Xxh64Stream(uint64_t seed)
    : acc_{seed + kPrime1 + kPrime2, seed + kPrime2, seed, seed - kPrime1}, seed_(seed), buffer_{} {}

void Xxh64Stream::update(const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ + size < 32) {
    if (size > 0) std::memcpy(buffer_ + buffered_, p, size);
    buffered_ += size;
    return;
  }
  if (buffered_ > 0) {
    const size_t fill = 32 - buffered_;
    std::memcpy(buffer_ + buffered_, p, fill);
    for (int lane = 0; lane < 4; ++lane) acc_[lane] = xxh_round(acc_[lane], read64(buffer_ + 8 * lane));
    p += fill;
    size -= fill;
    buffered_ = 0;
  }
  uint64_t a0 = acc_[0], a1 = acc_[1], a2 = acc_[2], a3 = acc_[3];
  while (size >= 32) {
    a0 = xxh_round(a0, read64(p));
    a1 = xxh_round(a1, read64(p + 8));
    a2 = xxh_round(a2, read64(p + 16));
    a3 = xxh_round(a3, read64(p + 24));
    p += 32;
    size -= 32;
  }
  acc_[0] = a0, acc_[1] = a1, acc_[2] = a2, acc_[3] = a3;
  if (size > 0) std::memcpy(buffer_, p, size);
  buffered_ = size;
}

uint64_t Xxh64Stream::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = std::rotl(acc_[0], 1) + std::rotl(acc_[1], 7) + std::rotl(acc_[2], 12) + std::rotl(acc_[3], 18);
    for (uint64_t a : acc_) h = xxh_merge(h, a);
  } else {
    h = seed_ + kPrime5;
  }
  h += total_;
  const unsigned char* p = buffer_;
  size_t left = buffered_;
  while (left >= 8) {
    h ^= xxh_round(0, read64(p));
    h = std::rotl(h, 27) * kPrime1 + kPrime4;
    p += 8;
    left -= 8;
  }
  if (left >= 4) {
    h ^= static_cast<uint64_t>(read32(p)) * kPrime1;
    h = std::rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
    left -= 4;
  }
  while (left > 0) {
    h ^= static_cast<uint64_t>(*p) * kPrime5;
    h = std::rotl(h, 11) * kPrime1;
    ++p;
    --left;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

uint64_t xxh64(const void* data, size_t size, uint64_t seed) {
  Xxh64Stream stream(seed);
  stream.update(data, size);
  return stream.digest();
}

}  // namespace hpa::data
