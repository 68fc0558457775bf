// Whole-file reads and atomic writes. An atomic write goes to `<path>.tmp.<unique>` in the
// same directory and is renamed over `path`, so readers never see a half-written file and an
// interrupted run leaves either the old file or the new one. Errors throw DataError naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hpa::data {

std::vector<uint8_t> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);
void write_file_atomic(const std::string& path, const void* bytes, size_t size);
inline void write_file_atomic(const std::string& path, std::string_view text) {
  write_file_atomic(path, text.data(), text.size());
}
inline void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace hpa::data
