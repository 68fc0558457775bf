// Positioned reads and atomic writes for the engine's files (see file_io.h).
#include "tensor/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace hpa {

namespace {

std::atomic<uint64_t> g_temp_counter{0};
thread_local int64_t g_injected_failure = -1;

// The directory a path's file lives in, for fsync after the rename ("." for a bare name).
std::string directory_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

void inject_atomic_write_failure(int64_t after_bytes) { g_injected_failure = after_bytes; }

// ---- InputFile ------------------------------------------------------------------------------

InputFile::InputFile(const std::string& path, const char* op) : path_(path), op_(op) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) HPA_FAIL(op_, ": ", path_, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    HPA_FAIL(op_, ": ", path_, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    HPA_FAIL(op_, ": ", path_, ": not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() { ::close(fd_); }

void InputFile::read_at(uint64_t offset, void* dst, size_t n) const {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) HPA_FAIL(op_, ": ", path_, ": read error at byte ", offset, ": ", std::strerror(errno));
    if (got == 0) HPA_FAIL(op_, ": ", path_, ": the file shrank while being read (EOF at byte ", offset, ")");
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

// ---- AtomicFileWriter -----------------------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(const std::string& path, const char* op) : path_(path), op_(op) {
  const std::filesystem::path target(path);
  if (path.empty() || !target.has_filename()) HPA_FAIL(op_, ": '", path, "': the path does not name a file");
  std::string name = ".";
  name += target.filename().string();
  name += ".tmp.";
  name += std::to_string(::getpid());
  name += '.';
  name += std::to_string(g_temp_counter.fetch_add(1));
  temp_ = (target.parent_path() / name).string();
  fail_after_ = g_injected_failure;
  g_injected_failure = -1;
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0)
    HPA_FAIL(op_, ": ", path_, ": cannot create the temporary file ", temp_, ": ", std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

void AtomicFileWriter::abort_with(int err, const char* stage, bool injected) {
  discard();
  committed_ = true;  // nothing left to clean up
  HPA_FAIL(op_, ": ", path_, ": ", stage, " failed: ", std::strerror(err),
           injected ? " (injected failure)" : "", "; the previous file, if any, is unchanged");
}

void AtomicFileWriter::write(const void* bytes, size_t n) {
  HPA_CHECK(fd_ >= 0 && !committed_, op_, ": ", path_, ": write after commit or failure");
  const char* p = static_cast<const char*>(bytes);
  if (fail_after_ >= 0 && written_ + n > static_cast<uint64_t>(fail_after_)) {
    // Write what fits before the fault, so the temporary really is half written.
    const uint64_t limit = static_cast<uint64_t>(fail_after_);
    while (written_ < limit) {
      const ssize_t put = ::write(fd_, p, static_cast<size_t>(limit - written_));
      if (put <= 0) break;
      written_ += static_cast<uint64_t>(put);
      p += put;
    }
    abort_with(EIO, "write", /*injected=*/true);
  }
  while (n > 0) {
    const ssize_t put = ::write(fd_, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) abort_with(errno, "write");
    p += put;
    n -= static_cast<size_t>(put);
    written_ += static_cast<uint64_t>(put);
  }
}

void AtomicFileWriter::commit() {
  HPA_CHECK(fd_ >= 0 && !committed_, op_, ": ", path_, ": commit after commit or failure");
  if (::fsync(fd_) != 0) abort_with(errno, "fsync");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) abort_with(errno, "close");
  if (fail_after_ >= 0) abort_with(EIO, "rename", /*injected=*/true);
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) abort_with(errno, "rename");
  committed_ = true;
  // Make the rename itself durable. Best effort: the new file is already in place, and
  // some filesystems cannot fsync a directory.
  const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomic(const std::string& path, const void* bytes, size_t size, const char* op) {
  AtomicFileWriter out(path, op);
  out.write(bytes, size);
  out.commit();
}

}  // namespace hpa
