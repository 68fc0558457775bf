// safetensors: the weight format of the engine (pretrained backbones converted from
// PyTorch by tools/convert_weights.py, the training checkpoints of train/checkpoint.h).
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
//   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [2, 3],
//    "data_offsets": [begin, end]}, ...}
// then the data section; offsets count from the start of the data section; tensors are
// little-endian and row-major (C order).
//
// Reading (load_safetensors, parse_safetensors):
//  - F32, F64, I32, I64 and U8 load as themselves; BOOL loads as u8 (each byte must be 0
//    or 1); F16 and BF16 are converted to f32 (exact: every half value is a float).
//    Loaded tensors live on the CPU, in the order of the header's keys.
//  - Everything is validated before it is trusted, and every problem is an hpa::Error
//    "load_safetensors: <file>: [key '<name>': ]<problem>": a header length beyond the file
//    or above 100 MB, malformed JSON or UTF-8, nesting deeper than 32, an array longer than
//    64, duplicate keys, unknown or missing fields, an unsupported dtype, a negative,
//    non-integer or overflowing dimension (the product of the non-zero dimensions must fit
//    in int64 even for an empty tensor), more than 5 dimensions (the engine's limit),
//    offsets that are reversed, out of range, overlapping, leave a gap or disagree with
//    shape x dtype size, a non-string metadata value, a BOOL byte other than 0 or 1.
//  - Trailing bytes: the tensors must cover the data section exactly (as the reference
//    implementation requires), so bytes after the last tensor are an error. Whitespace
//    after the JSON inside the header (the writers' alignment padding) is allowed.
//
// Writing (save_safetensors): f32, f64, i32, i64 and u8 tensors (boolean as BOOL) on any
// device, copied to the host; f16/bf16 are refused (cast first). Keys keep the given
// order in the header. The header is padded with spaces to a multiple of 8 bytes and the
// data sections are laid out by element size, largest first (stable), so every tensor
// starts at a multiple of its element size -- the most alignment the format allows, as
// it forbids gaps. Writes are atomic (tensor/file_io.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace hpa {

// Name -> tensor in a fixed order (what Module::state_dict returns).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using SafetensorsMetadata = std::map<std::string, std::string>;

// One header entry as stored (dtype as spelled in the file, e.g. "BF16").
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in header order
  SafetensorsMetadata metadata;
  uint64_t data_start = 0;  // 8 + N
};

NamedTensors load_safetensors(const std::string& path, SafetensorsMetadata* metadata = nullptr);
// The header alone, validated like a full load except for what needs the data (BOOL
// bytes): names, dtypes, shapes, offsets, metadata.
SafetensorsHeader read_safetensors_header(const std::string& path);
// `bytes` holds a whole file; `what` is what error messages call it.
NamedTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what,
                               SafetensorsMetadata* metadata = nullptr);

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata = {});
// The bytes save_safetensors would write.
std::string safetensors_to_bytes(const NamedTensors& tensors, const SafetensorsMetadata& metadata = {});

}  // namespace hpa
