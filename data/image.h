// Image files in and out. An Image is planar uint8 channels x height x width, the layout of
// the batch hand-off (channels red, green, blue, yellow for a sample).
//  - Decoding picks the codec from the file's magic bytes, not its name: PNG through a fast
//    path for 8-bit gray (libdeflate) and libpng for the rest (both measured faster than
//    stb_image and PIL, see png.cpp), JPEG through stb_image, TIFF through libtiff (8 or
//    16 bits, unsigned, any compression libtiff reads, strips or tiles, contiguous or
//    separate planes).
//  - 16-bit samples become 8-bit by round(v / 257), the linear map of 0..65535 onto 0..255.
//    A fixed map keeps intensities comparable between images (expression level is signal;
//    per-image max scaling would erase it and amplify the noise of dim images) and commutes
//    with the dataset-wide mean/std normalization.
//  - An RGB(A) file of one stain (HPAv18 external data) is reduced to one plane: red -> R,
//    green -> G, blue -> B, yellow -> round((R + G) / 2), because the Atlas renders the yellow
//    (ER) stain as red + green. A gray file is used as is; alpha is ignored.
//  - Every failure (missing, unreadable, truncated, corrupt, unsupported depth, wrong size)
//    throws DataError naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/csv.h"

namespace hpa::data {

struct Image {
  int channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // channels x height x width

  Image() = default;
  Image(int channels_, int height_, int width_)
      : channels(channels_),
        height(height_),
        width(width_),
        pixels(static_cast<size_t>(channels_) * height_ * width_, 0) {}
  size_t plane_size() const { return static_cast<size_t>(height) * width; }
  uint8_t* channel(int c) { return pixels.data() + c * plane_size(); }
  const uint8_t* channel(int c) const { return pixels.data() + c * plane_size(); }
  uint8_t& at(int c, int y, int x) { return pixels[c * plane_size() + static_cast<size_t>(y) * width + x]; }
  uint8_t at(int c, int y, int x) const {
    return pixels[c * plane_size() + static_cast<size_t>(y) * width + x];
  }
  bool operator==(const Image&) const = default;
};

// A file as decoded, before the stain rule: interleaved samples (height x width x channels).
struct DecodedImage {
  int width = 0, height = 0, channels = 0;  // channels 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA)
  int bit_depth = 8;                        // 8 or 16
  std::vector<uint8_t> samples8;            // when bit_depth == 8
  std::vector<uint16_t> samples16;          // when bit_depth == 16
};

enum class FileKind { png, jpeg, tiff, unknown };
FileKind sniff_file_kind(const uint8_t* bytes, size_t size);

// Decodes a whole file held in memory; `name` is used in error messages (and the fuzzers
// call these directly). Throws DataError on any failure.
DecodedImage decode_image_memory(const uint8_t* bytes, size_t size, const std::string& name);
DecodedImage decode_png_memory(const uint8_t* bytes, size_t size, const std::string& name);
// The general libpng path alone (decode_png_memory uses it for all but 8-bit gray files);
// exposed so tests and bench/bench_data_io can compare it with the fast path.
DecodedImage decode_png_memory_libpng(const uint8_t* bytes, size_t size, const std::string& name);
DecodedImage decode_jpeg_memory(const uint8_t* bytes, size_t size, const std::string& name);
DecodedImage decode_tiff_memory(const uint8_t* bytes, size_t size, const std::string& name);
DecodedImage decode_image_file(const std::string& path);

constexpr uint8_t sixteen_to_eight_bits(uint16_t v) { return static_cast<uint8_t>((v + 128u) / 257u); }

// One stain plane (channels = 1) from a decoded image by the rules in the header comment.
Image stain_plane(const DecodedImage& decoded, Stain stain);
// Reads a file and reduces it to the stain's plane. expected_height/width > 0 are checked.
Image read_stain_plane(const std::string& path, Stain stain, int expected_height = 0, int expected_width = 0);

// The four channel files of sample i as a 4 x H x W image. The four must agree in size;
// expected_size > 0 additionally requires H = W = expected_size.
Image load_sample_image(const DatasetIndex& index, size_t i, int expected_size = 0);

// 8-bit grayscale PNG. compression_level 0..9 (zlib); the synthetic generator uses a low one.
std::vector<uint8_t> encode_png_gray(const uint8_t* pixels, int height, int width, int compression_level = 6);
// Writes the PNG to a temporary file beside `path` then renames it into place.
void write_png_gray(const std::string& path, const uint8_t* pixels, int height, int width,
                    int compression_level = 6);

}  // namespace hpa::data
