// libFuzzer target: the PNG reader (decode_png_memory, data/png.cpp) and the stain rule on
// arbitrary bytes. A DataError is the expected answer to bad input; a crash, a hang, a leak,
// a sanitizer report or a decoded image whose buffer disagrees with its size is a bug.
#include <cstddef>
#include <cstdint>

#include "data/error.h"
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hpa::data;
  try {
    const DecodedImage image = decode_png_memory(data, size, "fuzz.png");
    const size_t samples = static_cast<size_t>(image.width) * image.height * image.channels;
    const size_t held = image.bit_depth == 16 ? image.samples16.size() : image.samples8.size();
    if (held != samples) __builtin_trap();
    const Image plane = stain_plane(image, Stain::yellow);  // reads every sample
    if (plane.pixels.size() != static_cast<size_t>(image.width) * image.height) __builtin_trap();
  } catch (const DataError&) {
  }
  return 0;
}
