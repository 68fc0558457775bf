#include "data/loader.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>
#include <utility>

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

PackSource::PackSource(std::shared_ptr<const PackReader> pack, bool verify_samples, bool prefault)
    : pack_(std::move(pack)), verify_samples_(verify_samples), prefault_(prefault) {
  if (!pack_) throw DataError("PackSource: null pack");
}

ImageView PackSource::load(size_t i, Image&) const {
  const int64_t k = static_cast<int64_t>(i);
  if (prefault_) pack_->prefault(k);
  if (verify_samples_) pack_->verify_sample(k);
  return ImageView{pack_->image(k), kNumChannels, pack_->size(), pack_->size(), pack_->transposed_image(k)};
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
    slot.ids.resize(entries.size());  // the strings keep their buffers from batch to batch
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
      slot.ids[k].assign(source_->id(static_cast<size_t>(entry.sample)));
      slot.samples.push_back(entry.sample);
      slot.positions.push_back(entry.position);
      ++slot.count;
    }
    slot.ids.resize(static_cast<size_t>(slot.count));

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
  int k = o.dihedral ? static_cast<int>(rng.below(kDihedralCount)) : 0;
  const uint8_t* pixels = view.pixels;
  int height = view.height, width = view.width;
  if ((k & 1) != 0 && view.transposed != nullptr) {
    // The same output from the transposed planes with a row-keeping element (kDihedralTranspose).
    pixels = view.transposed;
    std::swap(height, width);
    std::swap(top, left);
    k = dihedral_compose(kDihedralTranspose, k);
  }
  if (o.brightness <= 0 && o.contrast <= 0) {
    // The batch is read long after this (by the consumer, or a DMA to the GPU): stream it.
    crop_dihedral_into(pixels, view.channels, height, width, top, left, n, k, out, /*streaming=*/true);
    return;
  }
  // Jitter reads each plane twice more: build it through the cache and adjust it there,
  // with color_jitter's draws in its order (contrast, brightness, channel by channel).
  const size_t plane = static_cast<size_t>(height) * width, out_plane = static_cast<size_t>(n) * n;
  for (int c = 0; c < view.channels; ++c) {
    uint8_t* dst = out + c * out_plane;
    crop_dihedral_plane(pixels + c * plane, height, width, top, left, n, k, dst, /*streaming=*/false);
    const double contrast = rng.uniform(1.0 - o.contrast, 1.0 + o.contrast);
    const double brightness = rng.uniform(-o.brightness, o.brightness);
    jitter_plane(dst, out_plane, contrast, brightness);
  }
}

}  // namespace hpa::data
