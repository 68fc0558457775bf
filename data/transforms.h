// Geometric and photometric transforms on planar uint8 images (any channel count; samples
// are 4 x H x W), and the final uint8 -> float normalization.
//  - resize: area averaging on an axis that shrinks (each output pixel is the exact
//    area-weighted mean of the input pixels it covers, as OpenCV's INTER_AREA), bilinear
//    with half-pixel centres on an axis that grows. Rounded to nearest.
//  - dihedral(k), k in 0..7: k & 3 = number of 90° counter-clockwise rotations, k & 4 = a
//    horizontal flip applied first. dihedral_compose / dihedral_inverse give the group law.
//  - Randomness comes only from an Rng passed in (data/rng.h), so a (seed, sample, epoch)
//    stream reproduces the same augmentation on any thread.
//  - crop_dihedral_plane is the loader's hot path: the crop and the dihedral element in
//    one pass. Output rows are source rows read forwards (k = 0, 6) or backwards (k =
//    2, 4), always in ascending address order with rows prefetched a few ahead, at
//    memory-copy speed; or source columns (odd k, about 0.7-0.9 of a row copy on one
//    core): bands of 64 source rows, read in ascending order with the next band
//    prefetched, register-block transposes (32 rows by 16 bytes with AVX2, 16 by 16
//    with SSE2) into a 16 x 64 tile in L1, written out a whole cache line per output
//    row. With `streaming` the stores to `out` are non-temporal (x86) where they fill
//    whole cache lines: the destination is not read into the cache first, which saves a
//    third of the memory traffic for a batch buffer that is read much later; the
//    function ends with a store fence, so `out` is complete for any thread that
//    synchronizes with the caller afterwards. dihedral(crop(...)) is the slow, obvious
//    reference it is tested against.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "data/image.h"
#include "data/rng.h"

namespace hpa::data {

Image resize(const Image& src, int out_height, int out_width);

// Throws DataError when the window leaves the image or is empty.
Image crop(const Image& src, int top, int left, int height, int width);
Image center_crop(const Image& src, int height, int width);
// A uniformly placed window (every valid top-left equally likely).
Image random_crop(const Image& src, int height, int width, Rng& rng);

constexpr int kDihedralCount = 8;
Image dihedral(const Image& src, int k);
// dihedral(dihedral(x, a), b) == dihedral(x, dihedral_compose(a, b)).
int dihedral_compose(int first, int second);
int dihedral_inverse(int k);
// Dihedral element 5, a flip then a quarter turn, is the transpose: dihedral(I, 5)(y, x) =
// I(x, y). So dihedral(W, k) == dihedral(W^T, dihedral_compose(kDihedralTranspose, k)) for
// every k (the transpose is its own inverse), and the composed element keeps rows exactly
// when k transposes (odd k): what the loader uses with a pack's transposed copy.
constexpr int kDihedralTranspose = 5;

// out (n x n) = dihedral(crop(plane, top, left, n, n), k) for one height x width plane; out
// must not overlap the plane. Throws DataError when the window leaves the plane or k is
// outside 0..7.
void crop_dihedral_plane(const uint8_t* plane, int height, int width, int top, int left, int n, int k,
                         uint8_t* out, bool streaming);
// The same for every channel of a planar channels x height x width image into channels x n x n.
void crop_dihedral_into(const uint8_t* pixels, int channels, int height, int width, int top, int left, int n,
                        int k, uint8_t* out, bool streaming);

// Per-channel photometric jitter: v' = clamp(contrast * (v - mean_c) + mean_c + 255 * brightness),
// mean_c the channel's mean, contrast ~ U[1 - contrast_range, 1 + contrast_range],
// brightness ~ U[-brightness_range, brightness_range], drawn independently per channel.
void color_jitter(Image& image, double brightness_range, double contrast_range, Rng& rng);
// One channel's step of color_jitter with its two draws made (color_jitter draws contrast,
// then brightness, channel by channel): the loader jitters each plane while it is in cache.
void jitter_plane(uint8_t* plane, size_t size, double contrast, double brightness);

struct ChannelStats {
  std::array<double, kNumChannels> mean{};  // on the [0, 1] scale
  std::array<double, kNumChannels> std{};
};
// out[c][y][x] = (v / 255 - mean[c]) / std[c]; out holds channels x H x W floats. The image
// must have kNumChannels channels and every std must be > 0.
void normalize(const Image& image, const ChannelStats& stats, float* out);

// The training augmentation in one call: random crop to crop_size (skipped when
// crop_size <= 0 or equals the size), a random dihedral element, optional jitter.
struct AugmentOptions {
  int crop_size = 0;
  bool dihedral = true;
  double brightness = 0.0;  // jitter ranges; 0 disables
  double contrast = 0.0;
};
Image augment(const Image& src, const AugmentOptions& options, Rng& rng);

}  // namespace hpa::data
