// The training data loader: worker threads decode (image files or a pack) and augment
// samples into a bounded ring of ready batches, handed to the consumer in order.
//
// The rules a reader would otherwise have to guess:
//  - Determinism: an epoch's plan (which samples, in what order, on this rank) comes from
//    data/sampler.h and depends only on (seed, epoch, repeat factors, rank, world). Sample
//    k of the global epoch list is augmented with an Rng seeded from (seed, epoch, k), and
//    batch b holds plan entries [b*N, (b+1)*N). Workers claim whole batches, so the same seed
//    gives byte-identical batches whatever the number of threads.
//  - The hand-off: a Batch is a lease on one slot of the ring: uint8 N x 4 x H x W (channels
//    R, G, B, Y), float N x 28 labels (0 or 1) and the N ids. The slot returns to the ring
//    when the Batch is destroyed. Workers fill any free slot, at most prefetch_batches
//    batches ahead; asking for another batch while holding every slot is an error, not a
//    deadlock.
//  - Host memory comes from a pluggable HostAllocator (the CUDA backend can supply pinned
//    memory); the default is 4096-byte aligned host memory.
//  - Errors: a failed sample (its DataError names the file) reaches the consumer as a
//    DataError from next(), at the batch that holds it, never earlier and never lost. With
//    skip_bad the sample is left out of its batch instead (that batch is shorter), with one
//    warning naming it; skipped() counts them.
//  - Per-sample pipeline: load (decode, or a view into the pack's mapping) -> resize to
//    resize_to (area averaging; skipped when 0 or already that size) -> crop to output_size
//    (random window when training, centre otherwise; skipped when equal) -> dihedral element
//    -> brightness/contrast jitter. The crop and the dihedral element are one pass
//    (crop_dihedral_into, data/transforms.h) that writes straight into the batch, so a
//    pack sample is copied exactly once; without jitter it uses non-temporal stores (the
//    batch is read later, by the consumer), with jitter each plane is built through the
//    cache and jittered there. Random draws, in order: crop top, crop left, dihedral k,
//    then color_jitter's own (contrast, brightness per channel).
//  - A pack with a transposed copy (data/pack.h) makes every dihedral element a row copy:
//    for a transposing element k (odd k) the crop step reads the transposed planes instead,
//    with the window's top and left swapped and the element k' = dihedral_compose(
//    kDihedralTranspose, k), which keeps rows. The output is bit-identical to the plain
//    pack's (the same draws, the same bytes); only the copy is faster (1.03-1.22x on 2
//    cores, docs/PERFORMANCE.md). Not after a resize (the resized image has no transposed
//    copy).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "data/bad_samples.h"
#include "data/csv.h"
#include "data/image.h"
#include "data/pack.h"
#include "data/sampler.h"

namespace hpa::data {

// ---- sources -----------------------------------------------------------------------------

// A read-only planar uint8 image that may live inside someone else's memory (a pack).
// `transposed`, when not null, holds the same planes transposed (channels x width x height,
// plane[x][y] = pixels' plane[y][x]): a pack's transposed copy.
struct ImageView {
  const uint8_t* pixels = nullptr;
  int channels = 0, height = 0, width = 0;
  const uint8_t* transposed = nullptr;
};

// Where samples come from. load() must be safe to call from several threads at once.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual size_t size() const = 0;
  virtual std::string_view id(size_t i) const = 0;
  virtual LabelMask labels(size_t i) const = 0;
  // Sample i as a 4-channel view, decoding into `scratch` if need be (the view may point
  // into scratch, so it is valid until scratch changes). Throws DataError naming the file.
  virtual ImageView load(size_t i, Image& scratch) const = 0;
};

// Image files through a DatasetIndex (PNG/JPEG/TIFF, data/image.h). expected_size > 0
// requires every channel file to be expected_size x expected_size.
class ImageFolderSource : public SampleSource {
 public:
  explicit ImageFolderSource(DatasetIndex index, int expected_size = 0);
  size_t size() const override { return index_.size(); }
  std::string_view id(size_t i) const override { return index_[i].id; }
  LabelMask labels(size_t i) const override { return index_[i].labels; }
  ImageView load(size_t i, Image& scratch) const override;
  const DatasetIndex& index() const { return index_; }

 private:
  DatasetIndex index_;
  int expected_size_;
};

// A pack: load() is a view into the mapping, no copy, with the transposed planes when the
// pack holds them. verify_samples checks each sample's checksum as it is loaded (one extra
// read of its bytes, both copies when there are two). prefault maps each sample's pages
// in one call before it is read (PackReader::prefault) rather than fault by fault: slower
// for a pack in the page cache (docs/PERFORMANCE.md), so off by default.
class PackSource : public SampleSource {
 public:
  explicit PackSource(std::shared_ptr<const PackReader> pack, bool verify_samples = false,
                      bool prefault = false);
  size_t size() const override { return static_cast<size_t>(pack_->count()); }
  std::string_view id(size_t i) const override { return pack_->id(static_cast<int64_t>(i)); }
  LabelMask labels(size_t i) const override { return pack_->labels(static_cast<int64_t>(i)); }
  ImageView load(size_t i, Image& scratch) const override;

 private:
  std::shared_ptr<const PackReader> pack_;
  bool verify_samples_, prefault_;
};

// All samples' label lists, for oversample_repeat_factors.
std::vector<std::vector<int>> source_label_lists(const SampleSource& source);

// ---- memory ------------------------------------------------------------------------------

struct HostAllocator {
  std::function<void*(size_t bytes)> allocate;  // must not return null (throw instead)
  std::function<void(void* pointer, size_t bytes)> release;
};
// Plain host memory aligned to `alignment` bytes (a power of two).
HostAllocator aligned_host_allocator(size_t alignment = 4096);

// ---- the loader --------------------------------------------------------------------------

struct LoaderOptions {
  int batch_size = 32;
  int threads = 2;           // worker threads, >= 1
  int prefetch_batches = 4;  // ring slots: batches decoded ahead of the consumer, >= 2
  uint64_t seed = 0;
  bool shuffle = true;
  bool drop_last = true;  // drop the epoch's last, short batch
  int rank = 0, world = 1;
  std::vector<int> repeat_factors;  // per sample (oversample_repeat_factors); empty: once each

  int resize_to = 0;        // > 0: resize each decoded sample to resize_to x resize_to first
  int output_size = 0;      // H = W of the batch images; required
  bool random_crop = true;  // false: centre crop
  bool dihedral = true;     // a random element of the 8 flips/rotations
  double brightness = 0.0;  // jitter ranges as in color_jitter (data/transforms.h); 0 disables
  double contrast = 0.0;

  bool skip_bad = false;
  std::ostream* warnings = nullptr;  // where skip_bad warnings go; null: std::cerr
  HostAllocator allocator;           // empty: aligned_host_allocator()
};

// Evaluation settings: no shuffle, centre crop, no dihedral or jitter, keep the last batch.
LoaderOptions evaluation_loader_options(int batch_size, int output_size, int threads = 2);

class Loader;

// A leased batch (see the header comment). Move-only; valid while its Loader lives.
class Batch {
 public:
  Batch() = default;
  Batch(Batch&& other) noexcept;
  Batch& operator=(Batch&& other) noexcept;
  ~Batch();

  explicit operator bool() const { return loader_ != nullptr; }
  int64_t index() const;  // batch number within the epoch
  int size() const;       // samples in this batch
  int height() const;
  int width() const;
  uint8_t* images() const;  // size() x 4 x height() x width()
  float* labels() const;    // size() x 28
  const std::vector<std::string>& ids() const;
  const std::vector<int64_t>& samples() const;    // dataset indices
  const std::vector<int64_t>& positions() const;  // positions in the global epoch list

 private:
  friend class Loader;
  Batch(Loader* loader, size_t slot) : loader_(loader), slot_(slot) {}
  void release();
  Loader* loader_ = nullptr;
  size_t slot_ = 0;
};

class Loader {
 public:
  Loader(std::shared_ptr<const SampleSource> source, LoaderOptions options);
  ~Loader();  // stops and joins the workers; outstanding Batches must be gone by then
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Plans `epoch` and starts decoding it. Batches of an unfinished previous epoch that were
  // not yet handed out are discarded.
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch in order, or an empty Batch at its end. Rethrows a
  // worker's error (a DataError naming the file and sample) at the batch it belongs to.
  Batch next();

  int64_t batches_per_epoch() const;  // of the current epoch
  int64_t samples_per_epoch() const;  // plan entries this rank visits per epoch
  int64_t skipped() const;            // samples skipped by skip_bad so far
  const LoaderOptions& options() const { return options_; }
  const SampleSource& source() const { return *source_; }

 private:
  friend class Batch;
  enum class SlotState { free, filling, ready, leased };
  struct Slot {
    SlotState state = SlotState::free;
    int64_t batch = -1;
    uint64_t generation = 0;
    uint8_t* images = nullptr;
    float* labels = nullptr;
    int count = 0;
    std::vector<std::string> ids;
    std::vector<int64_t> samples, positions;
    std::exception_ptr error;
  };

  void worker_main();
  void process_sample(const EpochEntry& entry, int64_t epoch, uint8_t* out, Image& scratch,
                      Image& work) const;
  void release_slot(size_t slot);
  void stop_and_join();
  void release_buffers();

  std::shared_ptr<const SampleSource> source_;
  LoaderOptions options_;
  size_t image_bytes_ = 0;  // one sample in the batch: 4 x H x W

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, batch_ready_;
  std::vector<Slot> slots_;
  std::vector<EpochEntry> plan_;
  int64_t epoch_ = -1;
  uint64_t generation_ = 0;  // bumped by start_epoch: stale fills are discarded
  int64_t num_batches_ = 0;
  int64_t next_to_fill_ = 0;
  int64_t next_to_hand_out_ = 0;
  std::unique_ptr<BadSamples> bad_samples_;
  std::atomic<bool> stop_{false};  // written under mutex_, also polled between samples
  std::vector<std::thread> workers_;
};

}  // namespace hpa::data
