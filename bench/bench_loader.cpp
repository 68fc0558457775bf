// Loader throughput: images/s of training batches (random crop + dihedral element) from
// 8-bit PNG files and from a pack, at 512² and 768² crops, with 1 and 2 worker threads,
// next to this machine's memcpy bandwidth (the ceiling of the pack path: a pack sample is
// copied exactly once, from the mapping into the batch). Also the all-pairs near-duplicate
// scan and the stratified split at the size of HPA 2018 (31,072 samples).
//
// Data: synthetic HPA-like datasets (data/synth.h) written to a temporary folder: 512² PNGs
// (the Kaggle layout; 512² batches, no crop) and 1024² PNGs (768² crops); packs at 768
// (512² crops) and 1024 (768² crops). Before timing, the PNG and pack loaders are checked to
// produce the same bytes for the same seed, and every configuration runs one warm-up epoch
// (which also brings the files into the page cache: the figures are decode-bound, not disk-bound).
//
//   bench_loader [--samples N] [--epochs E] [--keep DIR]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "data/dedupe.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/split.h"
#include "data/synth.h"

using namespace hpa::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Best of a few copies of a buffer much larger than the caches, in GB/s (bytes copied / s).
double memcpy_bandwidth_gbs() {
  const size_t bytes = size_t{256} << 20;
  std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
  std::memcpy(dst.data(), src.data(), bytes);  // fault the pages in
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    best = std::max(best, static_cast<double>(bytes) / seconds_since(start) / 1e9);
    src[static_cast<size_t>(rep)] = dst[static_cast<size_t>(rep) + 1];  // keep the copies observable
  }
  return best;
}

LoaderOptions training_options(int crop, int threads) {
  LoaderOptions o;
  o.batch_size = 16;
  o.output_size = crop;
  o.threads = threads;
  o.prefetch_batches = 2 * threads + 2;
  o.seed = 1;
  o.drop_last = false;
  return o;
}

// Images per second over `epochs` epochs after one warm-up epoch.
double images_per_second(const std::shared_ptr<const SampleSource>& source, const LoaderOptions& options,
                         int epochs) {
  Loader loader(source, options);
  auto run = [&](int64_t epoch) {
    int64_t images = 0;
    loader.start_epoch(epoch);
    while (Batch batch = loader.next()) images += batch.size();
    return images;
  };
  run(0);
  const auto start = Clock::now();
  int64_t images = 0;
  for (int e = 1; e <= epochs; ++e) images += run(e);
  return static_cast<double>(images) / seconds_since(start);
}

bool same_first_batch(const std::shared_ptr<const SampleSource>& a,
                      const std::shared_ptr<const SampleSource>& b, const LoaderOptions& options) {
  Loader la(a, options), lb(b, options);
  la.start_epoch(0);
  lb.start_epoch(0);
  Batch x = la.next(), y = lb.next();
  const size_t bytes = static_cast<size_t>(x.size()) * 4 * x.height() * x.width();
  return x.size() == y.size() && std::memcmp(x.images(), y.images(), bytes) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 48, epochs = 2;
  std::string keep;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--samples")
      samples = std::stoi(argv[i + 1]);
    else if (flag == "--epochs")
      epochs = std::stoi(argv[i + 1]);
    else if (flag == "--keep")
      keep = argv[i + 1];
  }
  const fs::path root = keep.empty()
                            ? fs::temp_directory_path() / ("hpa_bench_loader_" + std::to_string(::getpid()))
                            : fs::path(keep);
  fs::create_directories(root);

  const double copy_gbs = memcpy_bandwidth_gbs();
  std::printf("machine: %u hardware threads; memcpy %.1f GB/s (256 MiB buffers, best of 5)\n",
              std::thread::hardware_concurrency(), copy_gbs);

  struct Config {
    int file_size, pack_size, crop;
  };
  const Config configs[] = {{512, 768, 512}, {1024, 1024, 768}};
  std::printf("\n%-6s %-26s %8s %12s %10s %16s\n", "crop", "source", "threads", "images/s", "MB/s out",
              "memcpy-bound /s");
  for (const Config& c : configs) {
    const fs::path png_dir = root / ("png" + std::to_string(c.file_size));
    if (!fs::exists(png_dir / "train.csv")) {
      SynthOptions synth;
      synth.count = samples;
      synth.size = c.file_size;
      synth.seed = 5;
      synth.threads = 2;
      synth.progress_seconds = 0;
      write_synth_dataset(png_dir.string(), synth);
    }
    const DatasetIndex index = DatasetIndex::open(png_dir.string());
    const std::string pack_path = (root / ("train" + std::to_string(c.pack_size) + ".pack")).string();
    if (!fs::exists(pack_path)) {
      PackDatasetOptions pack_options;
      pack_options.size = c.pack_size;
      pack_dataset(index, pack_path, pack_options);
    }
    auto pack = std::make_shared<const PackReader>(PackReader::open(pack_path, true));
    auto png_source = std::make_shared<const ImageFolderSource>(index, c.file_size);
    auto pack_source = std::make_shared<const PackSource>(pack);

    // Validation: the pack holds the resized files, so both paths give the same batches.
    LoaderOptions check = training_options(c.crop, 2);
    check.resize_to = c.pack_size;
    if (!same_first_batch(png_source, pack_source, check)) {
      std::fprintf(stderr, "bench_loader: PNG and pack loaders disagree at %d²\n", c.crop);
      return 1;
    }
    const double bytes_per_image = 4.0 * c.crop * c.crop;
    for (int threads : {1, 2}) {
      LoaderOptions o = training_options(c.crop, threads);
      const double png_rate = images_per_second(png_source, o, epochs);
      std::printf("%-6d %-26s %8d %12.1f %10.0f %16.0f\n", c.crop,
                  ("PNG " + std::to_string(c.file_size) + "²").c_str(), threads, png_rate,
                  png_rate * bytes_per_image / 1e6, copy_gbs * 1e9 / bytes_per_image);
      const double pack_rate = images_per_second(pack_source, o, std::max(epochs, 8));
      std::printf("%-6d %-26s %8d %12.1f %10.0f %16.0f\n", c.crop,
                  ("pack " + std::to_string(c.pack_size) + "²").c_str(), threads, pack_rate,
                  pack_rate * bytes_per_image / 1e6, copy_gbs * 1e9 / bytes_per_image);
      // The same without the dihedral element: every output row is one memcpy from the mapping.
      o.dihedral = false;
      const double copy_rate = images_per_second(pack_source, o, std::max(epochs, 8));
      std::printf("%-6d %-26s %8d %12.1f %10.0f %16.0f\n", c.crop,
                  ("pack " + std::to_string(c.pack_size) + "², crop only").c_str(), threads, copy_rate,
                  copy_rate * bytes_per_image / 1e6, copy_gbs * 1e9 / bytes_per_image);
    }
  }

  // All pairs of 31,072 random hashes over green + blue (the dedupe default).
  {
    Rng rng(3);
    std::vector<SampleHash> hashes(31072);
    for (auto& h : hashes)
      for (auto& w : h.stain) w = rng.next_u64();
    std::printf("\nnear-duplicate scan of 31072 samples (4.8e8 pairs, green + blue):\n");
    for (int threads : {1, 2}) {
      DedupeOptions options;
      options.threads = threads;
      const auto start = Clock::now();
      const auto pairs = near_duplicate_pairs(hashes, options);
      const double s = seconds_since(start);
      std::printf("  %d thread%s: %.2f s (%.2f ns per pair; %zu pairs within %d bits)\n", threads,
                  threads == 1 ? "" : "s", s, s * 1e9 / (31072.0 * 31071.0 / 2), pairs.size(),
                  options.threshold);
    }
  }
  // The stratified split of a real-sized label matrix (classes drawn with the real frequencies).
  {
    std::vector<std::vector<int>> labels(31072);
    for (size_t i = 0; i < labels.size(); ++i)
      labels[i] = Sample{"", synth_labels(9, static_cast<int64_t>(i))}.label_list();
    const auto start = Clock::now();
    const auto fold_of = iterative_stratification(labels, kNumClasses, {5, 1});
    const double s = seconds_since(start);
    const auto sizes = fold_sizes(fold_of, 5);
    std::printf("\nstratified 5-fold split of 31072 synthetic label sets: %.2f s (fold sizes %lld..%lld)\n",
                s, static_cast<long long>(*std::min_element(sizes.begin(), sizes.end())),
                static_cast<long long>(*std::max_element(sizes.begin(), sizes.end())));
  }
  if (keep.empty()) fs::remove_all(root);
  return 0;
}
