#include "data/pack.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "data/error.h"
#include "data/hash.h"
#include "data/loader.h"

namespace hpa::data {

namespace {

constexpr char kMagic[8] = {'H', 'P', 'A', 'P', 'A', 'C', 'K', '\0'};
constexpr size_t kHeaderChecksummedBytes = 104;  // everything before the checksum itself

struct Layout {
  uint64_t sample_bytes, images_offset, labels_offset, id_offsets_offset, id_bytes_offset, checksums_offset,
      file_size;
};

uint64_t align8(uint64_t x) { return (x + 7) & ~uint64_t{7}; }

// a * b + c, or false on overflow (a hostile header must not wrap the layout around).
bool mul_add(uint64_t a, uint64_t b, uint64_t c, uint64_t& out) {
  uint64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return false;
  return !__builtin_add_overflow(product, c, &out);
}

// The canonical layout for (count, S, transposed copy or not, id_bytes); false when it does
// not fit in 64 bits.
bool compute_layout(uint64_t count, uint64_t size, bool transposed_copy, uint64_t id_bytes, Layout& layout) {
  const uint64_t planes = uint64_t{kNumChannels} * (transposed_copy ? 2 : 1);
  layout.sample_bytes = planes * size * size;  // size < 2^16 (checked by callers)
  layout.images_offset = kPackImagesOffset;
  uint64_t end;
  if (!mul_add(count, layout.sample_bytes, layout.images_offset, end)) return false;
  layout.labels_offset = end;
  if (!mul_add(count, kNumClasses, layout.labels_offset, end)) return false;
  layout.id_offsets_offset = align8(end);
  if (!mul_add(count + 1, 8, layout.id_offsets_offset, end)) return false;
  layout.id_bytes_offset = end;
  if (__builtin_add_overflow(end, id_bytes, &end)) return false;
  layout.checksums_offset = align8(end);
  if (!mul_add(count, 8, layout.checksums_offset, end)) return false;
  layout.file_size = end;
  return layout.file_size >= layout.checksums_offset;
}

void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Header field offsets (see pack.h).
enum HeaderField : size_t {
  kVersionAt = 8,
  kHeaderBytesAt = 12,
  kCountAt = 16,
  kSizeAt = 24,
  kChannelsAt = 28,
  kClassesAt = 32,
  kFlagsAt = 36,
  kImagesOffsetAt = 40,
  kSampleBytesAt = 48,
  kLabelsOffsetAt = 56,
  kIdOffsetsOffsetAt = 64,
  kIdBytesAt = 72,
  kChecksumsOffsetAt = 80,
  kFileSizeAt = 88,
  kPayloadChecksumAt = 96,
  kHeaderChecksumAt = 104,
};
static_assert(kHeaderChecksumAt == kHeaderChecksummedBytes);

std::string errno_text() { return std::strerror(errno); }

std::string hex(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "%x", v);
  return text;
}

// out[x][y] = in[y][x] for one n x n plane, in 64 x 64 tiles so that the tile's source and
// destination lines stay in cache while it is done (the writer is not the hot path).
void transpose_plane(const uint8_t* in, int n, uint8_t* out) {
  constexpr int kTile = 64;
  const size_t stride = static_cast<size_t>(n);
  for (int y0 = 0; y0 < n; y0 += kTile)
    for (int x0 = 0; x0 < n; x0 += kTile) {
      const int y1 = std::min(n, y0 + kTile), x1 = std::min(n, x0 + kTile);
      for (int x = x0; x < x1; ++x)
        for (int y = y0; y < y1; ++y) out[x * stride + y] = in[y * stride + x];
    }
}

}  // namespace

// ---- writer ------------------------------------------------------------------------------

PackWriter::PackWriter(std::string path, int size, bool transposed_copy)
    : path_(std::move(path)), size_(size), transposed_copy_(transposed_copy) {
  if (size <= 0 || size > 65535)
    throw data_error("pack ", path_, ": sample size must be in 1..65535, got ", size);
  if (transposed_copy_) transposed_.resize(static_cast<size_t>(kNumChannels) * size_ * size_);
  static std::atomic<uint64_t> serial{0};
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(serial++);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw data_error("pack ", path_, ": cannot create ", temp_path_, ": ", errno_text());
  // The header is written last; reserve its page now.
  std::vector<uint8_t> zeros(kPackImagesOffset, 0);
  write_bytes(zeros.data(), zeros.size());
}

PackWriter::~PackWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(temp_path_.c_str());
}

void PackWriter::write_bytes(const void* bytes, size_t n) {
  const char* p = static_cast<const char*>(bytes);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw data_error("pack ", path_, ": write to ", temp_path_, " failed: ", errno_text());
    }
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
}

void PackWriter::add(std::string_view id, LabelMask labels, const uint8_t* image) {
  if (finished_) throw data_error("pack ", path_, ": add after finish");
  if (id.empty()) throw data_error("pack ", path_, ": empty sample id");
  for (char c : id)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == ',')
      throw data_error("pack ", path_, ": sample id '", id, "' contains a control character or comma");
  if (labels >> kNumClasses) throw data_error("pack ", path_, ": sample ", id, " has labels beyond class 27");
  const size_t bytes = static_cast<size_t>(kNumChannels) * size_ * size_;
  write_bytes(image, bytes);
  if (!transposed_copy_) {
    sample_checksums_.push_back(xxh64(image, bytes));
  } else {
    const size_t plane = static_cast<size_t>(size_) * size_;
    for (int c = 0; c < kNumChannels; ++c)
      transpose_plane(image + c * plane, size_, transposed_.data() + c * plane);
    write_bytes(transposed_.data(), bytes);
    Xxh64Stream checksum;  // over the sample's 8 planes as they lie in the file
    checksum.update(image, bytes);
    checksum.update(transposed_.data(), bytes);
    sample_checksums_.push_back(checksum.digest());
  }
  labels_.push_back(labels);
  id_bytes_.append(id);
  id_offsets_.push_back(id_bytes_.size());
}

void PackWriter::finish() {
  if (finished_) return;
  const uint64_t count = labels_.size();
  Layout layout;
  if (!compute_layout(count, static_cast<uint64_t>(size_), transposed_copy_, id_bytes_.size(), layout))
    throw data_error("pack ", path_, ": dataset too large");
  // Tail: labels, id offsets, id bytes, checksums, each at its canonical offset.
  std::vector<uint8_t> tail(layout.file_size - layout.labels_offset, 0);
  auto at = [&](uint64_t offset) { return tail.data() + (offset - layout.labels_offset); };
  for (uint64_t i = 0; i < count; ++i)
    for (int c = 0; c < kNumClasses; ++c)
      at(layout.labels_offset)[i * kNumClasses + c] = (labels_[i] >> c) & 1u;
  for (uint64_t i = 0; i <= count; ++i) put64(at(layout.id_offsets_offset) + 8 * i, id_offsets_[i]);
  if (!id_bytes_.empty()) std::memcpy(at(layout.id_bytes_offset), id_bytes_.data(), id_bytes_.size());
  for (uint64_t i = 0; i < count; ++i) put64(at(layout.checksums_offset) + 8 * i, sample_checksums_[i]);
  write_bytes(tail.data(), tail.size());
  if (written_ != layout.file_size) throw data_error("pack ", path_, ": internal layout error");

  // The payload checksum needs the image bytes again: read them back from the file (page
  // cache, so this runs at memory speed) rather than hashing a second stream while adding.
  Xxh64Stream payload;
  {
    std::vector<uint8_t> zeros(kPackImagesOffset - kPackHeaderBytes, 0);
    payload.update(zeros.data(), zeros.size());
    std::vector<uint8_t> chunk(size_t{1} << 22);
    const int rfd = ::open(temp_path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) throw data_error("pack ", path_, ": cannot reopen ", temp_path_, ": ", errno_text());
    uint64_t offset = kPackImagesOffset;
    while (offset < layout.file_size) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), layout.file_size - offset));
      const ssize_t r = ::pread(rfd, chunk.data(), want, static_cast<off_t>(offset));
      if (r <= 0) {
        if (r < 0 && errno == EINTR) continue;
        ::close(rfd);
        throw data_error("pack ", path_, ": read back of ", temp_path_, " failed");
      }
      payload.update(chunk.data(), static_cast<size_t>(r));
      offset += static_cast<uint64_t>(r);
    }
    ::close(rfd);
  }

  uint8_t header[kPackHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  put32(header + kVersionAt, kPackVersion);
  put32(header + kHeaderBytesAt, kPackHeaderBytes);
  put64(header + kCountAt, count);
  put32(header + kSizeAt, static_cast<uint32_t>(size_));
  put32(header + kChannelsAt, kNumChannels);
  put32(header + kClassesAt, kNumClasses);
  put32(header + kFlagsAt, transposed_copy_ ? kPackTransposedCopy : 0);
  put64(header + kImagesOffsetAt, layout.images_offset);
  put64(header + kSampleBytesAt, layout.sample_bytes);
  put64(header + kLabelsOffsetAt, layout.labels_offset);
  put64(header + kIdOffsetsOffsetAt, layout.id_offsets_offset);
  put64(header + kIdBytesAt, id_bytes_.size());
  put64(header + kChecksumsOffsetAt, layout.checksums_offset);
  put64(header + kFileSizeAt, layout.file_size);
  put64(header + kPayloadChecksumAt, payload.digest());
  put64(header + kHeaderChecksumAt, xxh64(header, kHeaderChecksummedBytes));
  if (::pwrite(fd_, header, kPackHeaderBytes, 0) != static_cast<ssize_t>(kPackHeaderBytes))
    throw data_error("pack ", path_, ": writing the header of ", temp_path_, " failed: ", errno_text());
  if (::fsync(fd_) != 0)
    throw data_error("pack ", path_, ": fsync of ", temp_path_, " failed: ", errno_text());
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw data_error("pack ", path_, ": close of ", temp_path_, " failed: ", errno_text());
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    throw data_error("pack ", path_, ": rename from ", temp_path_, " failed: ", errno_text());
  finished_ = true;
}

// ---- reader ------------------------------------------------------------------------------

PackReader PackReader::open(const std::string& path, bool verify_checksum, PackPaging paging) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw data_error("pack ", path, ": cannot open: ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    throw data_error("pack ", path, ": cannot stat: ", why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw data_error("pack ", path, ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kPackHeaderBytes) {
    ::close(fd);
    throw data_error("pack ", path, ": truncated: ", size, " bytes, shorter than the ", kPackHeaderBytes,
                     "-byte header");
  }
  const int flags = MAP_SHARED | (paging == PackPaging::populate ? MAP_POPULATE : 0);
  void* map = ::mmap(nullptr, size, PROT_READ, flags, fd, 0);
  const std::string why = errno_text();
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw data_error("pack ", path, ": mmap failed: ", why);
  if (paging == PackPaging::willneed) ::madvise(map, size, MADV_WILLNEED);  // a hint: failure is harmless
  PackReader reader;
  reader.name_ = path;
  reader.base_ = static_cast<const uint8_t*>(map);
  reader.file_size_ = size;
  reader.mapped_ = true;
  reader.validate(verify_checksum);  // on throw the destructor unmaps
  return reader;
}

PackReader PackReader::from_memory(const uint8_t* bytes, size_t size, const std::string& name,
                                   bool verify_checksum) {
  PackReader reader;
  reader.name_ = name;
  reader.base_ = bytes;
  reader.file_size_ = size;
  reader.validate(verify_checksum);
  return reader;
}

PackReader::PackReader(PackReader&& other) noexcept { *this = std::move(other); }

PackReader& PackReader::operator=(PackReader&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    base_ = other.base_;
    file_size_ = other.file_size_;
    mapped_ = other.mapped_;
    count_ = other.count_;
    size_ = other.size_;
    transposed_copy_ = other.transposed_copy_;
    sample_bytes_ = other.sample_bytes_;
    images_offset_ = other.images_offset_;
    labels_offset_ = other.labels_offset_;
    id_offsets_offset_ = other.id_offsets_offset_;
    id_bytes_offset_ = other.id_bytes_offset_;
    checksums_offset_ = other.checksums_offset_;
    payload_checksum_ = other.payload_checksum_;
    other.base_ = nullptr;
    other.mapped_ = false;
  }
  return *this;
}

PackReader::~PackReader() { release(); }

void PackReader::release() {
  if (mapped_ && base_ != nullptr) ::munmap(const_cast<uint8_t*>(base_), file_size_);
  base_ = nullptr;
  mapped_ = false;
}

void PackReader::validate(bool check_payload) {
  const std::string& f = name_;
  if (base_ == nullptr && file_size_ > 0) throw data_error("pack ", f, ": null buffer");
  if (file_size_ < kPackHeaderBytes)
    throw data_error("pack ", f, ": truncated: ", file_size_, " bytes, shorter than the ", kPackHeaderBytes,
                     "-byte header");
  const uint8_t* h = base_;
  if (std::memcmp(h, kMagic, 8) != 0) throw data_error("pack ", f, ": bad magic (not an hpa pack file)");
  const uint32_t version = get32(h + kVersionAt);
  if (version < 1 || version > kPackVersion)
    throw data_error("pack ", f, ": unsupported version ", version, " (this build reads versions 1 to ",
                     kPackVersion, ")");
  if (get64(h + kHeaderChecksumAt) != xxh64(h, kHeaderChecksummedBytes))
    throw data_error("pack ", f, ": header checksum mismatch (corrupt header)");
  if (get32(h + kHeaderBytesAt) != kPackHeaderBytes)
    throw data_error("pack ", f, ": header size ", get32(h + kHeaderBytesAt), ", expected ",
                     kPackHeaderBytes);
  const uint32_t channels = get32(h + kChannelsAt), classes = get32(h + kClassesAt);
  if (channels != kNumChannels || classes != kNumClasses)
    throw data_error("pack ", f, ": ", channels, " channels and ", classes, " classes; expected ",
                     kNumChannels, " and ", kNumClasses);
  const uint32_t flags = get32(h + kFlagsAt);
  if (version == 1 && flags != 0)
    throw data_error("pack ", f, ": flags 0x", hex(flags), " in a version-1 file (version 1 has no flags)");
  if ((flags & ~kPackTransposedCopy) != 0)
    throw data_error("pack ", f, ": unknown flag bits 0x", hex(flags & ~kPackTransposedCopy),
                     " (this build knows 0x", hex(kPackTransposedCopy), ", the transposed copy)");
  const bool transposed_copy = (flags & kPackTransposedCopy) != 0;
  const uint64_t count = get64(h + kCountAt);
  const uint32_t size = get32(h + kSizeAt);
  if (size == 0 || size > 65535) throw data_error("pack ", f, ": bad sample size ", size);
  if (count > (uint64_t{1} << 40)) throw data_error("pack ", f, ": implausible sample count ", count);
  Layout layout;
  if (!compute_layout(count, size, transposed_copy, get64(h + kIdBytesAt), layout))
    throw data_error("pack ", f, ": layout overflows (count ", count, ", size ", size, ")");
  const bool consistent = get64(h + kImagesOffsetAt) == layout.images_offset &&
                          get64(h + kSampleBytesAt) == layout.sample_bytes &&
                          get64(h + kLabelsOffsetAt) == layout.labels_offset &&
                          get64(h + kIdOffsetsOffsetAt) == layout.id_offsets_offset &&
                          get64(h + kChecksumsOffsetAt) == layout.checksums_offset &&
                          get64(h + kFileSizeAt) == layout.file_size;
  if (!consistent)
    throw data_error("pack ", f, ": inconsistent header (section offsets do not match the layout)");
  if (file_size_ < layout.file_size)
    throw data_error("pack ", f, ": truncated: ", file_size_, " bytes, the header says ", layout.file_size);
  if (file_size_ > layout.file_size)
    throw data_error("pack ", f, ": ", file_size_ - layout.file_size, " unexpected bytes after the end (",
                     layout.file_size, " expected)");
  count_ = static_cast<int64_t>(count);
  size_ = static_cast<int>(size);
  transposed_copy_ = transposed_copy;
  sample_bytes_ = layout.sample_bytes;
  images_offset_ = layout.images_offset;
  labels_offset_ = layout.labels_offset;
  id_offsets_offset_ = layout.id_offsets_offset;
  id_bytes_offset_ = layout.id_bytes_offset;
  checksums_offset_ = layout.checksums_offset;
  payload_checksum_ = get64(h + kPayloadChecksumAt);

  for (uint64_t i = 0; i < count * kNumClasses; ++i)
    if (base_[labels_offset_ + i] > 1)
      throw data_error("pack ", f, ": sample ", i / kNumClasses, " has label byte ",
                       static_cast<int>(base_[labels_offset_ + i]), " for class ", i % kNumClasses,
                       " (expected 0 or 1)");
  const uint64_t id_bytes = get64(h + kIdBytesAt);
  uint64_t previous = get64(base_ + id_offsets_offset_);
  if (previous != 0) throw data_error("pack ", f, ": the first id offset is ", previous, ", expected 0");
  for (uint64_t i = 1; i <= count; ++i) {
    const uint64_t next = get64(base_ + id_offsets_offset_ + 8 * i);
    if (next <= previous || next > id_bytes)
      throw data_error("pack ", f, ": id offsets of sample ", i - 1, " are bad (", previous, " to ", next,
                       " of ", id_bytes, " bytes)");
    previous = next;
  }
  if (previous != id_bytes)
    throw data_error("pack ", f, ": id offsets end at ", previous, ", not ", id_bytes);
  for (uint64_t i = 0; i < id_bytes; ++i) {
    const uint8_t c = base_[id_bytes_offset_ + i];
    if (c < 0x20 || c == 0x7f || c == ',')
      throw data_error("pack ", f, ": id bytes contain a control character or comma at byte ", i);
  }
  if (check_payload) verify_checksum();
}

void PackReader::check_index(int64_t i) const {
  if (i < 0 || i >= count_)
    throw data_error("pack ", name_, ": sample ", i, " out of range [0, ", count_, ")");
}

LabelMask PackReader::labels(int64_t i) const {
  check_index(i);
  const uint8_t* row = base_ + labels_offset_ + static_cast<size_t>(i) * kNumClasses;
  LabelMask mask = 0;
  for (int c = 0; c < kNumClasses; ++c) mask |= static_cast<LabelMask>(row[c]) << c;
  return mask;
}

std::string_view PackReader::id(int64_t i) const {
  check_index(i);
  const uint64_t begin = get64(base_ + id_offsets_offset_ + 8 * static_cast<size_t>(i));
  const uint64_t end = get64(base_ + id_offsets_offset_ + 8 * static_cast<size_t>(i + 1));
  return {reinterpret_cast<const char*>(base_ + id_bytes_offset_ + begin), static_cast<size_t>(end - begin)};
}

uint64_t PackReader::sample_checksum(int64_t i) const {
  check_index(i);
  return get64(base_ + checksums_offset_ + 8 * static_cast<size_t>(i));
}

void PackReader::verify_sample(int64_t i) const {
  if (xxh64(image(i), sample_bytes_) != sample_checksum(i))
    throw data_error("pack ", name_, ": checksum mismatch in sample ", i, " (", id(i), ")");
}

void PackReader::prefault(int64_t i) const {
  check_index(i);
#if defined(MADV_POPULATE_READ)
  if (!mapped_) return;
  // madvise wants a page-aligned start: round down (the mapping itself is page-aligned).
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(image(i)), aligned = begin / page * page;
  ::madvise(reinterpret_cast<void*>(aligned), begin + sample_bytes_ - aligned, MADV_POPULATE_READ);
#endif
}

void PackReader::verify_checksum() const {
  if (xxh64(base_ + kPackHeaderBytes, file_size_ - kPackHeaderBytes) != payload_checksum_)
    throw data_error("pack ", name_, ": payload checksum mismatch (the file is corrupt)");
}

// ---- packing a dataset -------------------------------------------------------------------

int64_t pack_dataset(const DatasetIndex& index, const std::string& path, const PackDatasetOptions& options) {
  if (index.size() == 0) throw data_error("pack ", path, ": the dataset in ", index.dir(), " is empty");
  // The loader in evaluation order is an ordered parallel decoder: batches arrive in index
  // order whatever the thread count, and skip_bad is handled (and counted) there.
  LoaderOptions loader_options = evaluation_loader_options(16, options.size, std::max(options.threads, 1));
  loader_options.resize_to = options.size;
  loader_options.prefetch_batches = 2 * loader_options.threads + 2;
  loader_options.skip_bad = options.skip_bad;
  Loader loader(std::make_shared<ImageFolderSource>(index), loader_options);
  PackWriter writer(path, options.size, options.transposed_copy);
  loader.start_epoch(0);
  const int64_t total = static_cast<int64_t>(index.size());
  int64_t done = 0;
  while (Batch batch = loader.next()) {
    const size_t sample_bytes = static_cast<size_t>(kNumChannels) * options.size * options.size;
    for (int k = 0; k < batch.size(); ++k) {
      const int64_t i = batch.samples()[static_cast<size_t>(k)];
      writer.add(index[static_cast<size_t>(i)].id, index[static_cast<size_t>(i)].labels,
                 batch.images() + static_cast<size_t>(k) * sample_bytes);
    }
    done = std::min(total, (batch.index() + 1) * 16);
    if (options.progress) options.progress(done, total);
  }
  if (writer.count() == 0) throw data_error("pack ", path, ": every sample was bad; nothing written");
  writer.finish();
  return writer.count();
}

}  // namespace hpa::data
