#include "data/loader.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "data/error.h"
#include "data/transforms.h"

namespace hpa::data {

// ---- sources -----------------------------------------------------------------------------

ImageFolderSource::ImageFolderSource(DatasetIndex index, int expected_size)
    : index_(std::move(index)), expected_size_(expected_size) {}

ImageView ImageFolderSource::load(size_t i, Image& scratch) const {
  scratch = load_sample_image(index_, i, expected_size_);
  return ImageView{scratch.pixels.data(), scratch.channels, scratch.height, scratch.width};
}

PackSource::PackSource(std::shared_ptr<const PackReader> pack, bool verify_samples)
    : pack_(std::move(pack)), verify_samples_(verify_samples) {
  if (!pack_) throw DataError("PackSource: null pack");
}

ImageView PackSource::load(size_t i, Image&) const {
  const int64_t k = static_cast<int64_t>(i);
  if (verify_samples_) pack_->verify_sample(k);
  return ImageView{pack_->image(k), kNumChannels, pack_->size(), pack_->size()};
}

std::vector<std::vector<int>> source_label_lists(const SampleSource& source) {
  std::vector<std::vector<int>> lists(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    const LabelMask mask = source.labels(i);
    for (int c = 0; c < kNumClasses; ++c)
      if ((mask >> c) & 1u) lists[i].push_back(c);
  }
  return lists;
}

HostAllocator aligned_host_allocator(size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw data_error("aligned_host_allocator: alignment ", alignment, " is not a power of two");
  HostAllocator allocator;
  allocator.allocate = [alignment](size_t bytes) {
    const size_t rounded = (std::max<size_t>(bytes, 1) + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  };
  allocator.release = [](void* p, size_t) { std::free(p); };
  return allocator;
}

LoaderOptions evaluation_loader_options(int batch_size, int output_size, int threads) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.output_size = output_size;
  options.threads = threads;
  options.shuffle = false;
  options.drop_last = false;
  options.random_crop = false;
  options.dihedral = false;
  return options;
}

// ---- the fused crop + dihedral -----------------------------------------------------------

namespace {

// The transposed case of the fused crop + dihedral, on square blocks: block rows are loaded
// along the source (column j of the output block = `bytes` contiguous source bytes starting
// at `column[j]`, in increasing address order), transposed in registers and stored as output
// rows; `reversed` (the source runs backwards down an output column) stores them bottom-up.
#if defined(__SSE2__)
// 16x16 bytes: four perfect-shuffle passes of unpacklo/unpackhi are a transpose.
inline void transpose_block16(const uint8_t* const column[16], bool reversed, uint8_t* out,
                              size_t out_stride) {
  __m128i r[16], t[16];
  for (int j = 0; j < 16; ++j) r[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(column[j]));
  for (int pass = 0; pass < 4; ++pass) {
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
      t[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
    }
    for (int i = 0; i < 16; ++i) r[i] = t[i];
  }
  for (int i = 0; i < 16; ++i)
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(out + static_cast<size_t>(reversed ? 15 - i : i) * out_stride), r[i]);
}
constexpr int kTransposeBlock = 16;
#else
// 8x8 bytes in eight little-endian words: swap off-diagonal 4x4, 2x2, then 1x1 blocks.
inline void transpose_block8(const uint8_t* const column[8], bool reversed, uint8_t* out, size_t out_stride) {
  static_assert(std::endian::native == std::endian::little,
                "the 8x8 block transpose assumes little-endian words");
  uint64_t a[8];
  for (int j = 0; j < 8; ++j) std::memcpy(&a[j], column[j], 8);
  for (int j = 0; j < 4; ++j) {
    const uint64_t t = ((a[j] >> 32) ^ a[j + 4]) & 0x00000000FFFFFFFFull;
    a[j] ^= t << 32;
    a[j + 4] ^= t;
  }
  for (int j : {0, 1, 4, 5}) {
    const uint64_t t = ((a[j] >> 16) ^ a[j + 2]) & 0x0000FFFF0000FFFFull;
    a[j] ^= t << 16;
    a[j + 2] ^= t;
  }
  for (int j : {0, 2, 4, 6}) {
    const uint64_t t = ((a[j] >> 8) ^ a[j + 1]) & 0x00FF00FF00FF00FFull;
    a[j] ^= t << 8;
    a[j + 1] ^= t;
  }
  for (int i = 0; i < 8; ++i)
    std::memcpy(out + static_cast<size_t>(reversed ? 7 - i : i) * out_stride, &a[i], 8);
}
constexpr int kTransposeBlock = 8;
#endif

inline void transpose_block(const uint8_t* const column[], bool reversed, uint8_t* out, size_t out_stride) {
#if defined(__SSE2__)
  transpose_block16(column, reversed, out, out_stride);
#else
  transpose_block8(column, reversed, out, out_stride);
#endif
}

// Writes dihedral(crop(src, top, left, n, n), k) into out (channels x n x n). dihedral(k) is
// data/transforms.h's: a horizontal flip when k & 4, then (k & 3) counter-clockwise quarter
// turns, so out(p) = window(flip(rot^r(p))) with rot(y, x) = (x, n-1-y), flip(y, x) =
// (y, n-1-x). The source offset of output (y, x) is therefore origin + y*dy + x*dx with
// dx in {+1, -1, +stride, -stride}: output rows are source rows read forwards (memcpy) or
// backwards, or source columns. Columns go by square blocks transposed in registers (a
// byte-at-a-time column gather runs at a tenth of memcpy speed).
void crop_dihedral_into(const ImageView& src, int top, int left, int n, int k, uint8_t* out) {
  struct Affine {  // source row (or column) of output (y, x) = c + cy*y + cx*x
    int64_t c, cy, cx;
  };
  Affine row{0, 1, 0}, col{0, 0, 1};
  for (int r = 0; r < (k & 3); ++r) {
    const Affine new_row = col;
    const Affine new_col{n - 1 - row.c, -row.cy, -row.cx};
    row = new_row;
    col = new_col;
  }
  if (k & 4) col = Affine{n - 1 - col.c, -col.cy, -col.cx};
  const int64_t stride = src.width;
  const int64_t origin = row.c * stride + col.c;
  const int64_t dy = row.cy * stride + col.cy, dx = row.cx * stride + col.cx;
  const size_t plane = static_cast<size_t>(src.height) * src.width;
  const size_t nn = static_cast<size_t>(n);
  for (int c = 0; c < src.channels; ++c) {
    const uint8_t* window = src.pixels + c * plane + static_cast<size_t>(top) * src.width + left + origin;
    uint8_t* dst = out + static_cast<size_t>(c) * nn * nn;
    if (dx == 1) {
      for (int y = 0; y < n; ++y) std::memcpy(dst + y * nn, window + y * dy, nn);
      continue;
    }
    if (dx == -1) {
      for (int y = 0; y < n; ++y) {
        const uint8_t* s = window + y * dy;
        uint8_t* d = dst + y * nn;
        for (int x = 0; x < n; ++x) d[x] = s[-x];
      }
      continue;
    }
    // A transpose: dx = +-stride along an output row, dy = +-1 down an output column.
    constexpr int B = kTransposeBlock;
    const int blocked = n / B * B;
    const bool reversed = dy != 1;
    for (int y0 = 0; y0 < blocked; y0 += B)
      for (int x0 = 0; x0 < blocked; x0 += B) {
        const uint8_t* column[B];
        for (int j = 0; j < B; ++j) {
          const uint8_t* top_of_column = window + y0 * dy + (x0 + j) * dx;
          column[j] = reversed ? top_of_column - (B - 1) : top_of_column;
        }
        transpose_block(column, reversed, dst + y0 * nn + x0, nn);
      }
    // The right and bottom margins (n not a multiple of the block).
    for (int y = 0; y < n; ++y) {
      const int x_start = y < blocked ? blocked : 0;
      for (int x = x_start; x < n; ++x) dst[y * nn + x] = window[y * dy + x * dx];
    }
  }
}

}  // namespace

// ---- batches -----------------------------------------------------------------------------

Batch::Batch(Batch&& other) noexcept : loader_(other.loader_), slot_(other.slot_) { other.loader_ = nullptr; }

Batch& Batch::operator=(Batch&& other) noexcept {
  if (this != &other) {
    release();
    loader_ = other.loader_;
    slot_ = other.slot_;
    other.loader_ = nullptr;
  }
  return *this;
}

Batch::~Batch() { release(); }

void Batch::release() {
  if (loader_ != nullptr) loader_->release_slot(slot_);
  loader_ = nullptr;
}

int64_t Batch::index() const { return loader_->slots_[slot_].batch; }
int Batch::size() const { return loader_->slots_[slot_].count; }
int Batch::height() const { return loader_->options_.output_size; }
int Batch::width() const { return loader_->options_.output_size; }
uint8_t* Batch::images() const { return loader_->slots_[slot_].images; }
float* Batch::labels() const { return loader_->slots_[slot_].labels; }
const std::vector<std::string>& Batch::ids() const { return loader_->slots_[slot_].ids; }
const std::vector<int64_t>& Batch::samples() const { return loader_->slots_[slot_].samples; }
const std::vector<int64_t>& Batch::positions() const { return loader_->slots_[slot_].positions; }

// ---- the loader --------------------------------------------------------------------------

Loader::Loader(std::shared_ptr<const SampleSource> source, LoaderOptions options)
    : source_(std::move(source)), options_(std::move(options)) {
  const LoaderOptions& o = options_;
  if (!source_) throw DataError("loader: null sample source");
  if (o.batch_size < 1) throw data_error("loader: batch_size must be >= 1, got ", o.batch_size);
  if (o.threads < 1) throw data_error("loader: threads must be >= 1, got ", o.threads);
  if (o.prefetch_batches < 2)
    throw data_error("loader: prefetch_batches must be >= 2, got ", o.prefetch_batches);
  if (o.output_size < 1) throw data_error("loader: output_size must be >= 1, got ", o.output_size);
  if (o.resize_to < 0) throw data_error("loader: resize_to must be >= 0, got ", o.resize_to);
  if (o.resize_to > 0 && o.resize_to < o.output_size)
    throw data_error("loader: resize_to ", o.resize_to, " is smaller than output_size ", o.output_size);
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world)
    throw data_error("loader: rank ", o.rank, " of world ", o.world, " is out of range");
  if (!o.repeat_factors.empty() && o.repeat_factors.size() != source_->size())
    throw data_error("loader: ", o.repeat_factors.size(), " repeat factors for ", source_->size(),
                     " samples");
  if (o.brightness < 0 || o.contrast < 0) throw DataError("loader: jitter ranges must be >= 0");
  if (source_->size() == 0) throw DataError("loader: the dataset is empty");
  if (!options_.allocator.allocate || !options_.allocator.release)
    options_.allocator = aligned_host_allocator();
  bad_samples_ = std::make_unique<BadSamples>(o.skip_bad, o.warnings ? *o.warnings : std::cerr);

  image_bytes_ = static_cast<size_t>(kNumChannels) * o.output_size * o.output_size;
  slots_.resize(static_cast<size_t>(o.prefetch_batches));
  try {
    for (Slot& slot : slots_) {
      slot.images = static_cast<uint8_t*>(options_.allocator.allocate(image_bytes_ * o.batch_size));
      slot.labels =
          static_cast<float*>(options_.allocator.allocate(sizeof(float) * kNumClasses * o.batch_size));
    }
  } catch (...) {
    release_buffers();
    throw;
  }
  try {
    for (int t = 0; t < o.threads; ++t) workers_.emplace_back([this] { worker_main(); });
  } catch (...) {
    stop_and_join();
    release_buffers();
    throw;
  }
}

Loader::~Loader() {
  stop_and_join();
  release_buffers();
}

void Loader::stop_and_join() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void Loader::release_buffers() {
  const size_t n = static_cast<size_t>(options_.batch_size);
  for (Slot& slot : slots_) {
    if (slot.images) options_.allocator.release(slot.images, image_bytes_ * n);
    if (slot.labels) options_.allocator.release(slot.labels, sizeof(float) * kNumClasses * n);
    slot.images = nullptr;
    slot.labels = nullptr;
  }
}

int64_t Loader::samples_per_epoch() const {
  int64_t total = 0;
  if (options_.repeat_factors.empty()) {
    total = static_cast<int64_t>(source_->size());
  } else {
    for (int f : options_.repeat_factors) total += f;
  }
  return total / options_.world;
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = samples_per_epoch(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

int64_t Loader::skipped() const { return bad_samples_->skipped(); }

void Loader::start_epoch(int64_t epoch) {
  EpochPlanOptions plan_options;
  plan_options.seed = options_.seed;
  plan_options.epoch = epoch;
  plan_options.shuffle = options_.shuffle;
  plan_options.rank = options_.rank;
  plan_options.world = options_.world;
  std::vector<EpochEntry> plan =
      plan_epoch(static_cast<int64_t>(source_->size()), options_.repeat_factors, plan_options);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++generation_;
    // Ready batches of the old epoch are dropped; slots being filled are freed by their
    // worker when it sees the generation changed; leased ones when the consumer lets go.
    for (Slot& slot : slots_)
      if (slot.state == SlotState::ready) slot.state = SlotState::free;
    plan_ = std::move(plan);
    epoch_ = epoch;
    const int64_t n = static_cast<int64_t>(plan_.size()), b = options_.batch_size;
    num_batches_ = options_.drop_last ? n / b : (n + b - 1) / b;
    next_to_fill_ = 0;
    next_to_hand_out_ = 0;
  }
  work_ready_.notify_all();
}

Batch Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (epoch_ < 0) throw DataError("loader: next() before start_epoch()");
  if (next_to_hand_out_ >= num_batches_) return Batch();
  const int64_t b = next_to_hand_out_;
  Slot* found = nullptr;
  batch_ready_.wait(lock, [&] {
    bool all_leased = true;
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::ready && slot.batch == b && slot.generation == generation_) found = &slot;
      all_leased = all_leased && slot.state == SlotState::leased;
    }
    if (all_leased && found == nullptr)
      throw data_error(
          "loader: the consumer holds all ", slots_.size(),
          " prefetch slots; destroy a Batch before asking for the next (or raise prefetch_batches)");
    return found != nullptr;
  });
  ++next_to_hand_out_;
  Slot& slot = *found;
  if (slot.error) {
    std::exception_ptr error = slot.error;
    slot.error = nullptr;
    slot.state = SlotState::free;
    lock.unlock();
    work_ready_.notify_all();
    std::rethrow_exception(error);
  }
  slot.state = SlotState::leased;
  return Batch(this, static_cast<size_t>(&slot - slots_.data()));
}

void Loader::release_slot(size_t s) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    slots_[s].state = SlotState::free;
  }
  work_ready_.notify_all();
}

void Loader::worker_main() {
  std::vector<Image> scratch(2);
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    Slot* free_slot = nullptr;
    work_ready_.wait(lock, [&] {
      if (stop_) return true;
      if (epoch_ < 0 || next_to_fill_ >= num_batches_) return false;
      for (Slot& candidate : slots_)
        if (candidate.state == SlotState::free) {
          free_slot = &candidate;
          return true;
        }
      return false;
    });
    if (stop_) return;
    const int64_t b = next_to_fill_++;
    Slot& slot = *free_slot;
    slot.state = SlotState::filling;
    slot.batch = b;
    slot.generation = generation_;
    const uint64_t generation = generation_;
    const size_t first = static_cast<size_t>(b) * static_cast<size_t>(options_.batch_size);
    const size_t last = std::min(plan_.size(), first + static_cast<size_t>(options_.batch_size));
    std::vector<EpochEntry> entries(plan_.begin() + static_cast<ptrdiff_t>(first),
                                    plan_.begin() + static_cast<ptrdiff_t>(last));
    const int64_t epoch = epoch_;
    lock.unlock();

    // The slot is ours alone until we mark it ready: fill it without the lock.
    slot.count = 0;
    slot.error = nullptr;
    slot.ids.clear();
    slot.samples.clear();
    slot.positions.clear();
    for (const EpochEntry& entry : entries) {
      if (stop_.load(std::memory_order_relaxed)) break;  // shutting down: the batch is never handed out
      const size_t k = static_cast<size_t>(slot.count);
      try {
        process_sample(entry, epoch, slot.images + k * image_bytes_, scratch[0], scratch[1]);
      } catch (const DataError& e) {
        const std::string id(source_->id(static_cast<size_t>(entry.sample)));
        if (options_.skip_bad) {
          bad_samples_->report(id, e.what());
          continue;
        }
        slot.error = std::make_exception_ptr(
            data_error("loader: sample ", id, " (index ", entry.sample, "): ", e.what()));
        break;
      } catch (...) {
        slot.error = std::current_exception();
        break;
      }
      const LabelMask mask = source_->labels(static_cast<size_t>(entry.sample));
      float* labels = slot.labels + k * kNumClasses;
      for (int c = 0; c < kNumClasses; ++c) labels[c] = static_cast<float>((mask >> c) & 1u);
      slot.ids.emplace_back(source_->id(static_cast<size_t>(entry.sample)));
      slot.samples.push_back(entry.sample);
      slot.positions.push_back(entry.position);
      ++slot.count;
    }

    lock.lock();
    slot.state =
        slot.generation == generation_ && generation == generation_ ? SlotState::ready : SlotState::free;
    batch_ready_.notify_all();
    work_ready_.notify_all();
  }
}

void Loader::process_sample(const EpochEntry& entry, int64_t epoch, uint8_t* out, Image& scratch,
                            Image& work) const {
  const LoaderOptions& o = options_;
  ImageView view = source_->load(static_cast<size_t>(entry.sample), scratch);
  if (view.channels != kNumChannels)
    throw data_error("sample has ", view.channels, " channels, expected ", kNumChannels);
  if (o.resize_to > 0 && (view.height != o.resize_to || view.width != o.resize_to)) {
    if (view.pixels != scratch.pixels.data()) {
      scratch = Image(view.channels, view.height, view.width);
      std::memcpy(scratch.pixels.data(), view.pixels, scratch.pixels.size());
    }
    work = resize(scratch, o.resize_to, o.resize_to);
    view = ImageView{work.pixels.data(), work.channels, work.height, work.width};
  }
  const int n = o.output_size;
  if (view.height < n || view.width < n)
    throw data_error("sample is ", view.height, "x", view.width, ", smaller than the output size ", n, "x",
                     n);
  Rng rng(mix_seed(o.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(entry.position)));
  int top, left;
  if (o.random_crop) {
    top = static_cast<int>(rng.range(0, view.height - n));
    left = static_cast<int>(rng.range(0, view.width - n));
  } else {
    top = (view.height - n) / 2;
    left = (view.width - n) / 2;
  }
  const int k = o.dihedral ? static_cast<int>(rng.below(kDihedralCount)) : 0;
  crop_dihedral_into(view, top, left, n, k, out);
  if (o.brightness > 0 || o.contrast > 0) {
    Image jittered(kNumChannels, n, n);
    std::memcpy(jittered.pixels.data(), out, image_bytes_);
    color_jitter(jittered, o.brightness, o.contrast, rng);
    std::memcpy(out, jittered.pixels.data(), image_bytes_);
  }
}

}  // namespace hpa::data
