// Internal to the image readers: size limits that keep a corrupt or hostile header from
// requesting gigabytes. The largest real HPA image is 3072² x 4 channels x 16 bits (75 MB).
#pragma once

#include <cstdint>
#include <string>

#include "data/error.h"

namespace hpa::data {

constexpr int kMaxImageSide = 1 << 15;
constexpr int64_t kMaxImageBytes = int64_t{1} << 30;

inline void check_image_dimensions(int64_t width, int64_t height, int64_t channels, int64_t bytes_per_sample,
                                   const std::string& name) {
  if (width <= 0 || height <= 0) throw data_error(name, ": bad image size ", width, "x", height);
  if (width > kMaxImageSide || height > kMaxImageSide ||
      width * height * channels * bytes_per_sample > kMaxImageBytes)
    throw data_error(name, ": image too large (", width, "x", height, "x", channels, ", limit ",
                     kMaxImageSide, " per side and ", kMaxImageBytes, " bytes)");
}

}  // namespace hpa::data
