// NumPy .npy files: the interchange format for golden test data, weight dumps and
// debugging snapshots (np.load / np.save on the Python side).
//
// Supported: little-endian f32 '<f4', f64 '<f8', f16 '<f2', i32 '<i4', i64 '<i8', u8 '|u1'
// and bool '|b1'; C order; 0-D to 5-D (Shape's limit); format versions 1.0 and 2.0 on
// read. Writes use version 1.0 unless the header is too long for it (then 2.0), pad the
// header to 64 bytes as NumPy does, and are atomic: the bytes go to a temporary file in
// the target's directory, which is then renamed over the target, so a reader never sees
// a half-written file.
//
// Everything else is an hpa::Error naming the file and the problem, never a crash:
// big-endian or other dtypes, fortran_order True, more than 5 dimensions, a malformed
// header, truncated data, trailing bytes after the data, bool bytes other than 0 or 1.
// The header is validated against the real file size before anything is allocated, so a
// corrupt shape cannot trigger a huge allocation.
//
// Only CPU tensors are written: saving a CUDA tensor is an error asking for an explicit
// .to(Device::cpu()) (no silent device copies). Loaded tensors live on the CPU.
#pragma once

#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace hpa {

Tensor load_npy(const std::string& path);
void save_npy(const std::string& path, const Tensor& t);

// In-memory forms: `bytes` holds a whole .npy file; `name` is what error messages call it.
Tensor npy_from_bytes(std::string_view bytes, const std::string& name = "<memory>");
std::string npy_to_bytes(const Tensor& t);

}  // namespace hpa
