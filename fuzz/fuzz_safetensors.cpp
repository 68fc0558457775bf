// libFuzzer target: the safetensors reader (tensor/safetensors.h) on arbitrary bytes, twice:
// as given, and with the 8-byte header length rewritten so that the header ends at the last
// '}' of the input. A mutation of the JSON almost always changes its length, so the second
// pass is what lets the fuzzer explore the JSON parser and the header validation instead
// of the length check. An hpa::Error is the expected answer to bad input.
//
// Oracle for inputs that load: every tensor fits the input, and writing the tensors back
// (safetensors_to_bytes) and reading that again gives the same names, dtypes, shapes and
// bytes; anything else aborts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tensor/safetensors.h"

namespace {

bool same(const hpa::NamedTensors& a, const hpa::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const hpa::Tensor &x = a[i].second, &y = b[i].second;
    if (a[i].first != b[i].first || x.dtype() != y.dtype() || x.shape() != y.shape()) return false;
    if (x.nbytes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) != 0) return false;
  }
  return true;
}

void exercise(const uint8_t* data, size_t size) {
  hpa::NamedTensors tensors;
  hpa::SafetensorsMetadata metadata;
  try {
    tensors = hpa::parse_safetensors(data, size, "fuzz.safetensors", &metadata);
  } catch (const hpa::Error&) {
    return;
  }
  for (const auto& [name, t] : tensors)
    if (!t.is_cpu() || t.nbytes() > size) std::abort();
  // Names and metadata that were read are valid UTF-8, so they can be written back.
  const std::string bytes = hpa::safetensors_to_bytes(tensors, metadata);
  hpa::SafetensorsMetadata again_metadata;
  const hpa::NamedTensors again = hpa::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                         bytes.size(), "fuzz round trip", &again_metadata);
  if (!same(tensors, again) || again_metadata != metadata) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  exercise(data, size);
  if (size > 8) {
    size_t close = size;
    for (size_t i = size; i-- > 8;)
      if (data[i] == '}') {
        close = i;
        break;
      }
    if (close < size) {
      std::vector<uint8_t> sealed(data, data + size);
      const uint64_t n = close + 1 - 8;
      for (int i = 0; i < 8; ++i) sealed[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
      exercise(sealed.data(), sealed.size());
    }
  }
  return 0;
}
