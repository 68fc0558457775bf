// Codec dispatch by magic bytes, JPEG through stb_image, the stain-plane rule and the
// four-file sample reader. PNG lives in png.cpp, TIFF in tiff.cpp.
#include "data/image.h"

#include <stb/stb_image.h>

#include <cstring>

#include "data/error.h"
#include "data/file_io.h"
#include "data/image_limits.h"

namespace hpa::data {

FileKind sniff_file_kind(const uint8_t* bytes, size_t size) {
  if (size >= 8 && std::memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) == 0) return FileKind::png;
  if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return FileKind::jpeg;
  if (size >= 4 && (std::memcmp(bytes, "II*\0", 4) == 0 || std::memcmp(bytes, "MM\0*", 4) == 0 ||
                    std::memcmp(bytes, "II+\0", 4) == 0 || std::memcmp(bytes, "MM\0+", 4) == 0))
    return FileKind::tiff;
  return FileKind::unknown;
}

DecodedImage decode_jpeg_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  if (size < 4 || size > static_cast<size_t>(INT32_MAX)) throw data_error(name, ": not a JPEG file");
  // stb_image decodes a truncated JPEG without complaint (it pads the entropy data with
  // zeros), so require the end-of-image marker, allowing trailing zero padding.
  size_t end = size;
  while (end > 2 && bytes[end - 1] == 0) --end;
  if (end < 4 || bytes[end - 2] != 0xFF || bytes[end - 1] != 0xD9)
    throw data_error(name, ": truncated JPEG (no end-of-image marker)");
  int width = 0, height = 0, channels = 0;
  const int length = static_cast<int>(size);
  if (!stbi_info_from_memory(bytes, length, &width, &height, &channels))
    throw data_error(name, ": corrupt JPEG (", stbi_failure_reason(), ")");
  check_image_dimensions(width, height, channels, 1, name);
  uint8_t* pixels = stbi_load_from_memory(bytes, length, &width, &height, &channels, 0);
  if (!pixels) throw data_error(name, ": corrupt JPEG (", stbi_failure_reason(), ")");
  DecodedImage out;
  out.width = width;
  out.height = height;
  out.channels = channels;
  out.bit_depth = 8;
  out.samples8.assign(pixels, pixels + static_cast<size_t>(width) * height * channels);
  stbi_image_free(pixels);
  return out;
}

DecodedImage decode_image_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  switch (sniff_file_kind(bytes, size)) {
    case FileKind::png:
      return decode_png_memory(bytes, size, name);
    case FileKind::jpeg:
      return decode_jpeg_memory(bytes, size, name);
    case FileKind::tiff:
      return decode_tiff_memory(bytes, size, name);
    case FileKind::unknown:
      break;
  }
  if (size == 0) throw data_error(name, ": empty file");
  throw data_error(name, ": not a PNG, JPEG or TIFF file");
}

DecodedImage decode_image_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image_memory(bytes.data(), bytes.size(), path);
}

Image stain_plane(const DecodedImage& decoded, Stain stain) {
  Image plane(1, decoded.height, decoded.width);
  const size_t n = plane.plane_size();
  const int channels = decoded.channels;
  uint8_t* out = plane.pixels.data();
  // Which interleaved sample to take; -1 = the mean of R and G (yellow from a colour file).
  int source = 0;
  if (channels >= 3) source = stain == Stain::yellow ? -1 : static_cast<int>(stain);
  if (decoded.bit_depth == 16) {
    const uint16_t* in = decoded.samples16.data();
    for (size_t i = 0; i < n; ++i, in += channels) {
      const unsigned v = source >= 0 ? in[source] : (unsigned{in[0]} + in[1] + 1) / 2;
      out[i] = sixteen_to_eight_bits(static_cast<uint16_t>(v));
    }
  } else if (channels == 1) {
    std::memcpy(out, decoded.samples8.data(), n);
  } else {
    const uint8_t* in = decoded.samples8.data();
    for (size_t i = 0; i < n; ++i, in += channels)
      out[i] = source >= 0 ? in[source] : static_cast<uint8_t>((unsigned{in[0]} + in[1] + 1) / 2);
  }
  return plane;
}

Image read_stain_plane(const std::string& path, Stain stain, int expected_height, int expected_width) {
  const DecodedImage decoded = decode_image_file(path);
  if ((expected_height > 0 && decoded.height != expected_height) ||
      (expected_width > 0 && decoded.width != expected_width))
    throw data_error(path, ": image is ", decoded.width, "x", decoded.height, ", expected ",
                     expected_width > 0 ? expected_width : decoded.width, "x",
                     expected_height > 0 ? expected_height : decoded.height);
  return stain_plane(decoded, stain);
}

Image load_sample_image(const DatasetIndex& index, size_t i, int expected_size) {
  Image image;
  std::string first_path;
  for (Stain stain : kStains) {
    const std::string path = index.channel_path(i, stain);
    Image plane = read_stain_plane(path, stain, expected_size, expected_size);
    if (stain == Stain::red) {
      image = Image(kNumChannels, plane.height, plane.width);
      first_path = path;
    } else if (plane.height != image.height || plane.width != image.width) {
      throw data_error(path, ": image is ", plane.width, "x", plane.height, " but ", first_path, " is ",
                       image.width, "x", image.height);
    }
    std::memcpy(image.channel(static_cast<int>(stain)), plane.pixels.data(), plane.plane_size());
  }
  return image;
}

}  // namespace hpa::data
