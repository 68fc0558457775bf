// .npy reading and writing (format spec: numpy/lib/format.py, versions 1.0 and 2.0).
//
// Reading goes through one parser over a ByteSource (a file or a memory buffer) that
// knows how many bytes remain, so every size in the header is checked against the real
// input before it is trusted. The header is a Python dict literal; we parse the small
// subset NumPy writes (quoted strings, True/False, tuples of ints) by hand instead of
// pattern-matching, so reordered keys or extra spaces from other writers still load.
#include "tensor/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <vector>

namespace hpa {

static_assert(std::endian::native == std::endian::little,
              "npy I/O copies raw bytes and assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // NumPy aligns the start of the data to 64 bytes

// Builds the one error form of this file: "<op>: <file>: <problem>".
template <class... Parts>
[[noreturn]] void fail(const char* op, const std::string& name, const Parts&... parts) {
  HPA_FAIL(op, ": ", name, ": ", parts...);
}

// ---- dtypes ---------------------------------------------------------------------------

struct NpyType {
  DType dtype;
  const char* descr;  // what we write; NumPy's own spelling
};

constexpr NpyType kTypes[] = {
    {DType::f32, "<f4"}, {DType::f64, "<f8"}, {DType::f16, "<f2"},     {DType::i32, "<i4"},
    {DType::i64, "<i8"}, {DType::u8, "|u1"},  {DType::boolean, "|b1"},
};

constexpr const char* kSupportedList = "<f4, <f8, <f2, <i4, <i8, |u1, |b1";

std::optional<DType> dtype_from_descr(const std::string& descr) {
  if (descr.size() < 3) return std::nullopt;
  const char order = descr[0];
  const std::string kind_and_size = descr.substr(1);
  for (const NpyType& t : kTypes) {
    if (kind_and_size != std::string(t.descr + 1)) continue;
    // Byte order is meaningless for one-byte types: NumPy writes '|', but accept any.
    if (dtype_size(t.dtype) == 1 && (order == '|' || order == '<' || order == '>' || order == '='))
      return t.dtype;
    if (order == '<') return t.dtype;
  }
  return std::nullopt;
}

const char* descr_of(DType dtype) {
  for (const NpyType& t : kTypes)
    if (t.dtype == dtype) return t.descr;
  return nullptr;
}

// ---- input ----------------------------------------------------------------------------

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads exactly n bytes; the caller has checked n <= remaining().
  virtual void read(void* dst, size_t n) = 0;
  virtual uint64_t remaining() const = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  void read(void* dst, size_t n) override {
    if (n) std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
  }
  uint64_t remaining() const override { return bytes_.size() - pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("load_npy", path_, "cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      fail("load_npy", path_, "cannot stat: ", std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail("load_npy", path_, "not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  void read(void* dst, size_t n) override {
    char* p = static_cast<char*>(dst);
    while (n > 0) {
      const ssize_t got = ::read(fd_, p, n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("load_npy", path_, "read error: ", std::strerror(errno));
      if (got == 0) fail("load_npy", path_, "file shrank while being read");
      p += got;
      n -= static_cast<size_t>(got);
      pos_ += static_cast<uint64_t>(got);
    }
  }
  uint64_t remaining() const override { return size_ - pos_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t pos_ = 0;
};

// ---- header dict parser ---------------------------------------------------------------

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Printable form of (the start of) a header for error messages.
std::string quoted_header(std::string_view h) {
  std::string out = "\"";
  for (size_t i = 0; i < h.size() && i < 160; ++i) {
    const unsigned char c = static_cast<unsigned char>(h[i]);
    if (c == '\n')
      out += "\\n";
    else if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += "?";
  }
  if (h.size() > 160) out += "...";
  return out + "\"";
}

class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    skip_space();
    expect('{', "'{' opening the header dict");
    skip_space();
    while (!peek('}')) {
      const std::string key = parse_string("a quoted key");
      skip_space();
      expect(':', "':' after key '" + key + "'");
      skip_space();
      if (key == "descr") {
        if (seen_descr) error("duplicate key 'descr'");
        seen_descr = true;
        if (peek('[')) bad("unsupported dtype: structured arrays (descr is a list) are not supported");
        h.descr = parse_string("a quoted dtype string for 'descr'");
      } else if (key == "fortran_order") {
        if (seen_order) error("duplicate key 'fortran_order'");
        seen_order = true;
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        if (seen_shape) error("duplicate key 'shape'");
        seen_shape = true;
        h.shape = parse_shape();
      } else {
        error("unexpected key '" + key + "' (expected descr, fortran_order, shape)");
      }
      skip_space();
      if (!consume(',')) break;
      skip_space();
    }
    expect('}', "',' or '}' after a value");
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the closing '}'");
    if (!seen_descr) error("missing key 'descr'");
    if (!seen_order) error("missing key 'fortran_order'");
    if (!seen_shape) error("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) { fail("load_npy", name_, what); }
  [[noreturn]] void error(const std::string& what) {
    fail("load_npy", name_, "header parse error at column ", pos_, ": ", what, " in header ",
         quoted_header(s_));
  }

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool consume(char c) {
    if (!peek(c)) return false;
    ++pos_;
    return true;
  }
  void expect(char c, const std::string& what) {
    if (!consume(c)) error("expected " + what);
  }

  std::string parse_string(const std::string& what) {
    if (!peek('\'') && !peek('"')) error("expected " + what);
    const char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') error("escape sequences are not supported in header strings");
      out += s_[pos_++];
    }
    if (!consume(quote)) error("unterminated string");
    return out;
  }

  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    error("expected True or False for 'fortran_order'");
  }

  int64_t parse_dim() {
    if (peek('-')) error("negative dimension in 'shape'");
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
      error("expected an integer dimension in 'shape'");
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const int digit = s_[pos_++] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) error("dimension too large in 'shape'");
      v = v * 10 + digit;
    }
    consume('L');  // Python 2 long literal, as old NumPy wrote them
    return v;
  }

  std::vector<int64_t> parse_shape() {
    expect('(', "a tuple for 'shape'");
    std::vector<int64_t> dims;
    skip_space();
    while (!peek(')')) {
      dims.push_back(parse_dim());
      // Bounded long before the Shape check so garbage cannot grow this vector much.
      if (dims.size() > 64) bad("more than 64 dimensions in 'shape'");
      skip_space();
      if (!consume(',')) break;
      skip_space();
    }
    expect(')', "',' or ')' in 'shape'");
    return dims;
  }

  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;
};

uint32_t read_le(const unsigned char* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Tensor read_npy(ByteSource& src, const std::string& name) {
  constexpr const char* op = "load_npy";
  const uint64_t total = src.remaining();
  unsigned char prelude[12];
  if (total < kMagicLen + 2) fail(op, name, "too short to be a .npy file (", total, " bytes)");
  src.read(prelude, kMagicLen + 2);
  if (std::memcmp(prelude, kMagic, kMagicLen) != 0)
    fail(op, name, "not a .npy file (bad magic: expected \\x93NUMPY at the start)");
  const int major = prelude[6], minor = prelude[7];
  int len_bytes = 0;
  if (major == 1 && minor == 0) {
    len_bytes = 2;
  } else if (major == 2 && minor == 0) {
    len_bytes = 4;
  } else {
    fail(op, name, "unsupported .npy format version ", major, ".", minor, " (supported: 1.0, 2.0)");
  }
  if (src.remaining() < static_cast<uint64_t>(len_bytes))
    fail(op, name, "truncated header: the file ends inside the header length field");
  src.read(prelude + kMagicLen + 2, static_cast<size_t>(len_bytes));
  const uint32_t header_len = read_le(prelude + kMagicLen + 2, len_bytes);
  if (src.remaining() < header_len)
    fail(op, name, "truncated header: it declares ", header_len, " bytes but only ", src.remaining(),
         " follow");
  std::string header_text(header_len, '\0');
  src.read(header_text.data(), header_len);
  for (char c : header_text)
    if (static_cast<unsigned char>(c) >= 0x80 || c == '\0')
      fail(op, name, "header parse error: non-ASCII byte in header ", quoted_header(header_text));

  const Header h = HeaderParser(header_text, name).parse();

  std::string little_endian_twin = h.descr;
  if (!little_endian_twin.empty()) little_endian_twin[0] = '<';
  if (!h.descr.empty() && h.descr[0] == '>' && dtype_from_descr(little_endian_twin))
    fail(op, name, "unsupported dtype '", h.descr, "': big-endian data is not supported (convert in NumPy ",
         "with arr.astype(arr.dtype.newbyteorder('<')))");
  const std::optional<DType> dtype = dtype_from_descr(h.descr);
  if (!dtype) fail(op, name, "unsupported dtype '", h.descr, "' (supported: ", kSupportedList, ")");
  if (h.fortran_order)
    fail(op, name, "fortran_order True is not supported (save a C-order array: np.ascontiguousarray)");
  if (h.shape.size() > static_cast<size_t>(Shape::kMaxDims))
    fail(op, name, h.shape.size(), " dimensions, at most ", Shape::kMaxDims, " are supported");

  const uint64_t elem = dtype_size(*dtype);
  // The element count, without overflow: a zero dimension makes the others harmless.
  uint64_t count = 1;
  bool overflow = false;
  if (std::find(h.shape.begin(), h.shape.end(), 0) != h.shape.end()) {
    count = 0;
  } else {
    for (int64_t d : h.shape) {
      const uint64_t ud = static_cast<uint64_t>(d);
      if (count > std::numeric_limits<uint64_t>::max() / elem / ud) {
        overflow = true;
        break;
      }
      count *= ud;
    }
  }
  Shape shape;
  for (int64_t d : h.shape) shape.push_back(d);
  const std::string what = std::string(dtype_name(*dtype)) + shape.str();
  if (overflow) fail(op, name, "truncated data: shape ", what, " is larger than any file");
  const uint64_t data_bytes = count * elem;
  if (src.remaining() < data_bytes)
    fail(op, name, "truncated data: ", what, " needs ", data_bytes, " bytes but only ", src.remaining(),
         " follow the header");
  if (src.remaining() > data_bytes)
    fail(op, name, src.remaining() - data_bytes, " unexpected trailing bytes after the data of ", what);

  Tensor t = Tensor::empty(shape, *dtype, Device::cpu());
  src.read(t.data_ptr(), static_cast<size_t>(data_bytes));
  if (*dtype == DType::boolean) {
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    for (uint64_t i = 0; i < count; ++i)
      if (p[i] > 1)
        fail(op, name, "bool element ", i, " holds byte ", static_cast<int>(p[i]), " (expected 0 or 1)");
  }
  return t;
}

// ---- output ---------------------------------------------------------------------------

// Checks that `t` can be written and returns the magic, version, length and padded header.
std::string npy_prelude_and_header(const char* op, const std::string& name, const Tensor& t) {
  if (!t.defined()) fail(op, name, "cannot save an undefined tensor");
  if (!t.is_cpu())
    fail(op, name, "tensor ", t.desc(), " is not on the CPU; call .to(Device::cpu()) first (npy I/O never ",
         "copies between devices implicitly)");
  if (t.layout() != Layout::NCHW)
    fail(op, name, "tensor ", t.desc(),
         " is tagged NHWC; .npy holds plain row-major arrays, convert to NCHW first");
  const char* descr = descr_of(t.dtype());
  if (!descr)
    fail(op, name, "dtype ", dtype_name(t.dtype()), " has no NumPy equivalent (", t.desc(),
         "); cast it, e.g. .to(DType::f32)");

  std::string shape = "(";
  for (int i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape()[i]);
  if (t.dim() == 1) shape += ",";
  shape += ")";
  std::string dict =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";

  // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
  for (int len_bytes : {2, 4}) {
    const size_t prelude = kMagicLen + 2 + static_cast<size_t>(len_bytes);
    const size_t unpadded = prelude + dict.size() + 1;  // +1: the closing '\n'
    const size_t padded = (unpadded + kAlign - 1) / kAlign * kAlign;
    const size_t header_len = padded - prelude;
    if (len_bytes == 2 && header_len > 0xffff) continue;
    std::string out(kMagic, kMagicLen);
    out += static_cast<char>(len_bytes == 2 ? 1 : 2);
    out += static_cast<char>(0);
    for (int i = 0; i < len_bytes; ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xff);
    out += dict;
    out.append(padded - unpadded, ' ');
    out += '\n';
    return out;
  }
  fail(op, name, "header too long");
}

std::atomic<uint64_t> g_temp_counter{0};

// Writes all of [p, p+n) to fd; returns errno on failure, 0 on success.
int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return errno;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return 0;
}

}  // namespace

Tensor load_npy(const std::string& path) {
  FileSource src(path);
  return read_npy(src, path);
}

Tensor npy_from_bytes(std::string_view bytes, const std::string& name) {
  MemorySource src(bytes);
  return read_npy(src, name);
}

std::string npy_to_bytes(const Tensor& t) {
  std::string out = npy_prelude_and_header("npy_to_bytes", "<memory>", t);
  out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

void save_npy(const std::string& path, const Tensor& t) {
  constexpr const char* op = "save_npy";
  const std::string header = npy_prelude_and_header(op, path, t);
  const std::filesystem::path target(path);
  if (!target.has_filename()) fail(op, path, "the path names a directory, not a file");
  // The temporary lives next to the target so that rename() is atomic (same filesystem).
  std::string temp_name = target.filename().string();
  temp_name.insert(0, 1, '.');
  temp_name += ".tmp.";
  temp_name += std::to_string(::getpid());
  temp_name += '.';
  temp_name += std::to_string(g_temp_counter.fetch_add(1));
  const std::filesystem::path temp = target.parent_path() / temp_name;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) fail(op, path, "cannot create temporary file ", temp.string(), ": ", std::strerror(errno));
  int err = write_all(fd, header.data(), header.size());
  if (!err) err = write_all(fd, static_cast<const char*>(t.data_ptr()), t.nbytes());
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && std::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(temp.c_str());
    fail(op, path, "write failed: ", std::strerror(err));
  }
}

}  // namespace hpa
