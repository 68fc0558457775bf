// The packed cache: a whole dataset at one working size in one file that is memory-mapped
// and handed to the loader without decoding. Layout (all integers little-endian):
//
//   offset 0     header, 128 bytes (below), then zero padding
//   4096         images: count x sample_bytes uint8; sample i at images_offset + i * sample_bytes.
//                A sample is 4 x S x S, planar R, G, B, Y (sample_bytes = 4*S*S), or with the
//                transposed copy (flags bit 0) 8 x S x S: those 4 planes, then the same 4
//                planes transposed, plane P^T[x][y] = P[y][x] (sample_bytes = 8*S*S).
//                Samples are page-aligned whenever sample_bytes is a multiple of 4096, e.g.
//                S = 512 or 768.
//   then         labels: count x 28 uint8, each 0 or 1
//   then         id offsets: (count + 1) uint64 into the id bytes (8-aligned), ids[i] =
//                bytes [off[i], off[i+1]); then the id bytes (no terminators)
//   then         sample checksums: count uint64, XXH64 of each sample's sample_bytes image
//                bytes (both copies when there are two) (8-aligned)
//   file_size    end
//
//   header: magic "HPAPACK\0" | u32 version (2) | u32 header_bytes (128) | u64 count |
//           u32 size S | u32 channels (4) | u32 classes (28) | u32 flags |
//           u64 images_offset | u64 sample_bytes | u64 labels_offset | u64 id_offsets_offset |
//           u64 id_bytes | u64 checksums_offset | u64 file_size | u64 payload_checksum |
//           u64 header_checksum | 8 reserved bytes (0)
//
// Versions: 1 has no flags (the field was reserved and must be 0); 2 adds flags, of which
// only bit 0 (kPackTransposedCopy) is defined: any other bit, or any flag in a version-1
// file, is an error. The writer writes version 2; the reader reads both.
//
// The transposed copy makes every dihedral element a row copy for the loader: for a
// transposing element k (odd k), dihedral(crop(P, top, left, n), k) equals
// dihedral(crop(P^T, left, top, n), k') with k' = dihedral_compose(5, k), an element that
// keeps rows (element 5 is the transpose, kDihedralTranspose in data/transforms.h). The
// cost: the images take twice the disk and page cache; a loaded sample still reads only one
// of its two copies (prefault(i), which runs before the element is drawn, maps both).
//
// Every section position is a function of (count, S, flags, id_bytes): the reader recomputes
// the layout and requires the header to match it exactly, so no offset in a file is trusted.
// header_checksum = XXH64 of the header's first 104 bytes (all before it); payload_checksum = XXH64 of bytes
// [header_bytes, file_size). Opening always checks the header (magic, version, flags,
// checksum, layout, file size) and the small sections (labels are 0/1, id offsets increase,
// ids are printable); the full payload checksum (a pass over every byte, ~memory bandwidth)
// is optional, and verify_sample(i) checks one sample's image bytes against its stored checksum.
// Writes go to a temporary file beside the target that is renamed into place at finish().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/csv.h"

namespace hpa::data {

constexpr uint32_t kPackVersion = 2;
constexpr size_t kPackHeaderBytes = 128;
constexpr size_t kPackImagesOffset = 4096;
constexpr uint32_t kPackTransposedCopy = 1;  // header flags bit 0: samples hold a transposed copy

// Streams samples into a new pack. Memory use is the labels, ids and checksums (and one
// sample's transposed planes with transposed_copy).
class PackWriter {
 public:
  // Opens `<path>.tmp.<pid>.<n>` for writing; size is S of the S x S samples. With
  // transposed_copy, add() also writes each plane transposed after the 4 planes (see the
  // layout above).
  PackWriter(std::string path, int size, bool transposed_copy = false);
  ~PackWriter();  // an unfinished pack's temporary file is removed
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  // image: 4 x size x size uint8, planar R, G, B, Y.
  void add(std::string_view id, LabelMask labels, const uint8_t* image);
  // Writes the tail sections and the header, flushes to disk, renames into place.
  void finish();

  int64_t count() const { return static_cast<int64_t>(labels_.size()); }
  int size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void write_bytes(const void* bytes, size_t n);
  std::string path_, temp_path_;
  int size_;
  bool transposed_copy_;
  std::vector<uint8_t> transposed_;  // one sample's transposed planes (transposed_copy only)
  int fd_ = -1;
  uint64_t written_ = 0;
  std::vector<LabelMask> labels_;
  std::vector<uint64_t> id_offsets_{0};
  std::string id_bytes_;
  std::vector<uint64_t> sample_checksums_;
  bool finished_ = false;
};

// How PackReader::open maps the file. A mapped page costs a page fault on its first touch
// (the kernel then maps up to 16 neighbouring cached pages with it), so the first pass over
// a pack pays for the faults; later passes do not while the mapping lives. Measured in
// docs/PERFORMANCE.md (data pipeline), pack in the page cache: the first epoch runs at about
// half the loader's steady rate when lazy, about 70% with populate (which spends ~0.1 s per
// GB at open); willneed changes nothing there.
enum class PackPaging {
  lazy,      // plain mmap: pages are faulted in as the loader touches them (the default)
  populate,  // MAP_POPULATE: read the whole file and map every page at open (the pack must
             // fit in memory: a larger one would be read end to end and evicted again)
  willneed,  // madvise(MADV_WILLNEED) on the whole file: asynchronous readahead, no mapping
};

class PackReader {
 public:
  // Maps the file read-only and validates it (see the header comment). Throws DataError
  // naming the file and what is wrong: missing, bad magic, unsupported version, unknown
  // flags (or flags in a version-1 file), header checksum, truncated or oversized file,
  // inconsistent layout, bad label or id bytes, payload checksum mismatch (only when
  // verify_checksum).
  static PackReader open(const std::string& path, bool verify_checksum = false,
                         PackPaging paging = PackPaging::lazy);
  // The same checks on bytes already in memory, which must outlive the reader (tests, fuzzing).
  static PackReader from_memory(const uint8_t* bytes, size_t size, const std::string& name,
                                bool verify_checksum = false);

  PackReader(PackReader&&) noexcept;
  PackReader& operator=(PackReader&&) noexcept;
  ~PackReader();

  const std::string& name() const { return name_; }
  int64_t count() const { return count_; }
  int size() const { return size_; }
  // Whether each sample also holds its planes transposed (header flags bit 0).
  bool transposed_copy() const { return transposed_copy_; }
  // Bytes per sample in the file: 4 x S x S, or 8 x S x S with the transposed copy.
  size_t sample_bytes() const { return sample_bytes_; }
  // 4 x S x S uint8 inside the mapping (the planes as is); valid while the reader lives.
  const uint8_t* image(int64_t i) const {
    check_index(i);
    return base_ + images_offset_ + static_cast<size_t>(i) * sample_bytes_;
  }
  // The same 4 planes transposed (plane[x][y] = image's plane[y][x]), 4 x S x S uint8 right
  // after image(i); nullptr when the pack has no transposed copy. Throws DataError like
  // image(i) for an index out of range.
  const uint8_t* transposed_image(int64_t i) const {
    const uint8_t* planes = image(i);
    return transposed_copy_ ? planes + sample_bytes_ / 2 : nullptr;
  }
  LabelMask labels(int64_t i) const;
  std::string_view id(int64_t i) const;
  uint64_t sample_checksum(int64_t i) const;
  // Throws DataError naming the file and the sample when its image bytes (both copies when
  // there are two) do not match.
  void verify_sample(int64_t i) const;
  // Throws DataError naming the file when the payload checksum does not match.
  void verify_checksum() const;
  // Maps sample i's pages in one call (madvise MADV_POPULATE_READ, Linux 5.14+) instead of
  // one fault per 16 pages as they are touched; reads them from disk if they are not
  // cached (both copies when there are two, though the loader reads one). A no-op for a
  // reader from memory or where the kernel lacks it. Measured slower than the faults it
  // replaces for a pack in the page cache (it walks the sample's pages again on every
  // call); off by default in PackSource. Not measured for a pack on disk.
  void prefault(int64_t i) const;

 private:
  PackReader() = default;
  void validate(bool check_payload);
  void check_index(int64_t i) const;
  void release();

  std::string name_;
  const uint8_t* base_ = nullptr;
  size_t file_size_ = 0;
  bool mapped_ = false;
  int64_t count_ = 0;
  int size_ = 0;
  bool transposed_copy_ = false;
  size_t sample_bytes_ = 0;
  size_t images_offset_ = 0, labels_offset_ = 0, id_offsets_offset_ = 0, id_bytes_offset_ = 0,
         checksums_offset_ = 0;
  uint64_t payload_checksum_ = 0;
};

struct PackDatasetOptions {
  int size = 512;   // S: samples are resized (area averaging) to S x S
  int threads = 2;  // decoding threads
  bool skip_bad = false;
  // Also store each sample transposed (PackWriter's transposed_copy): twice the file size,
  // and every dihedral element of the loader becomes a row copy.
  bool transposed_copy = false;
  // Called after every sample written with (done, total); may print progress.
  std::function<void(int64_t done, int64_t total)> progress;
};

// Decodes every sample of the index (in index order), resizes it to S x S and writes the
// pack atomically. Returns the number of samples written (fewer than the index holds only
// with skip_bad, which warns once per skipped sample on stderr).
int64_t pack_dataset(const DatasetIndex& index, const std::string& path, const PackDatasetOptions& options);

}  // namespace hpa::data
