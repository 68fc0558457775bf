// Hashes of image data, of two unrelated kinds:
//  - perceptual hashes of one 8-bit plane (pHash, dHash): 64-bit fingerprints that stay
//    within a few bits under brightness/contrast change, mild noise, blur, recompression and
//    a shift by a pixel or two, and differ in about half their bits between unrelated images;
//    compared by Hamming distance (popcount of the xor).
//  - XXH64 (Collet's xxHash, 64-bit variant, re-implemented from its public specification):
//    the fast checksum of the packed cache; equal to the reference implementation's output.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace hpa::data {

// pHash: the plane is area-averaged to 32x32, a 2-D DCT-II is taken, and bit k (k < 63) of the
// result says whether the k-th of the 63 lowest-frequency AC coefficients (the 8x8 top-left
// block without the DC term, row-major) exceeds their median. Bit 63 is always 0. The DC term
// is left out so that a change of brightness (an offset) does not move any bit; a change of
// contrast (a gain) scales every coefficient and the median alike.
uint64_t phash64(const uint8_t* plane, int width, int height, ptrdiff_t row_stride);

// dHash: the plane is area-averaged to 9x8 and bit (8*y + x) says whether cell (x, y) is
// brighter than its right neighbour. Cheaper and a little less robust to blur than pHash.
uint64_t dhash64(const uint8_t* plane, int width, int height, ptrdiff_t row_stride);

inline int hamming_distance(uint64_t a, uint64_t b) { return std::popcount(a ^ b); }

// XXH64 of a byte range, and the same computed in pieces (update as data arrives).
uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

class Xxh64Stream {
 public:
  explicit Xxh64Stream(uint64_t seed = 0);
  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  uint64_t acc_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buffer_[32];
  size_t buffered_ = 0;
};

}  // namespace hpa::data
