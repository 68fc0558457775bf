// File I/O for the engine's own files (safetensors weights, training checkpoints): a
// positioned reader that knows the file size up front, and atomic writes.
//
// An atomic write streams into a temporary file `.<name>.tmp.<pid>.<n>` in the target's
// directory (same filesystem, so the final rename is atomic), fsyncs it, renames it over
// the target and fsyncs the directory. Readers therefore see the old file or the new one,
// never a mix; a failure at any step (including an exception thrown by the caller between
// writes) removes the temporary and leaves the previous file untouched. Only a process
// killed mid-write can leave a stray temporary behind (never the target).
//
// The data library has its own copy of these helpers (data/file_io.h): data/ and the
// engine do not depend on each other. Every error is an hpa::Error "<op>: <path>: <why>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hpa {

// A read-only regular file of known size, read at explicit offsets.
class InputFile {
 public:
  // `op` names the caller in error messages ("load_safetensors").
  InputFile(const std::string& path, const char* op);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Reads exactly n bytes at `offset`; the caller has checked offset + n <= size().
  void read_at(uint64_t offset, void* dst, size_t n) const;

 private:
  std::string path_;
  const char* op_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Streams a file into place atomically (see the top of this file). Call write() any number
// of times, then commit(); destroying the writer without a commit() discards everything.
class AtomicFileWriter {
 public:
  AtomicFileWriter(const std::string& path, const char* op);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* bytes, size_t n);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // fsync, close, rename over the target, fsync the directory.
  void commit();
  const std::string& temp_path() const { return temp_; }

 private:
  [[noreturn]] void abort_with(int err, const char* stage, bool injected = false);
  void discard();

  std::string path_, temp_;
  const char* op_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
  int64_t fail_after_ = -1;  // inject_atomic_write_failure, taken over at construction
};

// The whole of [bytes, bytes + size) as the new contents of `path`, atomically.
void write_file_atomic(const std::string& path, const void* bytes, size_t size,
                       const char* op = "write_file_atomic");

// Test hook: the next AtomicFileWriter on this thread fails with EIO ("injected failure")
// once more than `after_bytes` bytes have been written, or at commit() just before the
// rename when the file is not larger than that. Negative disarms it. Used by the tests to
// show that a write dying half way leaves the previous file readable.
void inject_atomic_write_failure(int64_t after_bytes);

}  // namespace hpa
