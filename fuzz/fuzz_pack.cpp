// libFuzzer target: the pack reader (data/pack.h) on arbitrary bytes, twice: as given, and
// with the header and payload checksums recomputed over the input. A mutated file almost
// never passes a 64-bit checksum, so the second pass is what lets the fuzzer reach the layout,
// label and id validation and the per-sample accessors. A DataError is the expected answer.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "data/error.h"
#include "data/hash.h"
#include "data/pack.h"

namespace {

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void exercise(const uint8_t* data, size_t size) {
  using namespace hpa::data;
  try {
    const PackReader pack = PackReader::from_memory(data, size, "fuzz.pack", /*verify_checksum=*/true);
    uint64_t sink = 0;
    for (int64_t i = 0; i < pack.count(); ++i) {
      sink += pack.labels(i) + pack.id(i).size() + pack.sample_checksum(i);
      const uint8_t* image = pack.image(i);
      sink += image[0] + image[pack.sample_bytes() - 1];
      if (const uint8_t* transposed = pack.transposed_image(i)) sink += transposed[0];
      try {
        pack.verify_sample(i);
      } catch (const DataError&) {
      }
    }
    if (sink == 0x5eed) std::memset(&sink, 0, sizeof sink);  // keep the reads alive
  } catch (const DataError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  exercise(data, size);
  constexpr size_t kHeader = hpa::data::kPackHeaderBytes;
  if (size >= kHeader) {
    std::vector<uint8_t> sealed(data, data + size);
    put64(sealed.data() + 96, hpa::data::xxh64(sealed.data() + kHeader, size - kHeader));
    put64(sealed.data() + 104, hpa::data::xxh64(sealed.data(), 104));
    exercise(sealed.data(), sealed.size());
  }
  return 0;
}
