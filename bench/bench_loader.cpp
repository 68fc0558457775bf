// Loader throughput: images/s of training batches (random crop + dihedral element) from
// 8-bit PNG files and from a pack, at 512² and 768² crops, with 1 and 2 worker threads,
// each next to a copy of the same bytes measured in the same round: the pack path's ceiling
// (a pack sample is copied exactly once, from the mapping into the batch), and the same from
// a pack with the transposed copy (data/pack.h: every dihedral element a row copy) next to
// its own copy of the same bytes. Then the stages one by one (the crop + dihedral kernel
// per element, streaming or cached stores, from the mapping, one thread, no loader), the
// first pass over a freshly mapped pack with each PackPaging choice, and the pack path
// with jitter on. Also the all-pairs near-duplicate scan and the stratified split at the
// size of HPA 2018 (31,072 samples).
//
// Data: synthetic HPA-like datasets (data/synth.h) written to a temporary folder: 512² PNGs
// (the Kaggle layout; 512² batches, no crop) and 1024² PNGs (768² crops), packed with
// pack_dataset at 768 (512² crops) and 1024 (768² crops). Before timing, the PNG and pack
// loaders are checked to give the same bytes for the same seed. The throughput packs hold
// --pack-samples samples (the packed ones repeated under new ids, 12 batches of 16 per epoch
// by default, so the epoch-end drain of a 2-thread loader stays small, as in training), in
// two layouts: plain and with the transposed copy (twice the bytes; checked to give the same
// batches as the plain one).
// Every configuration runs one warm-up epoch first: the files are in the page cache, and the
// throughput packs are mapped with PackPaging::populate, so the loader figures are decode- or
// memory-bound, not disk- or fault-bound. (A warm-up epoch alone leaves pages unmapped that
// later epochs fault in: rows outside the windows drawn so far, and the transposed copies of
// samples whose element did not need them; the copy baselines would not pay for those.)
//
// The copy baselines: "memcpy" copies the same bytes per sample (4 x crop² from the start
// of the sample in the mapping, one std::memcpy) into the same ring of batch buffers, in
// the epoch's order, split across the same number of threads (for the transposed-copy pack,
// from that pack's samples, whose stride is twice as long); "stream copy" is the same with
// non-temporal stores (glibc's memcpy uses them only for copies larger than ~3/4 of the
// cache, not for one 1-2 MB sample); "memcpy of a window" copies what the pack path must
// read, a random crop window of each plane, one std::memcpy per row (rows crop bytes long,
// a plane's width apart, so the hardware also fetches lines between them). The machine is
// shared, and the memory bandwidth one core gets can move by a third from one second to the
// next, so for each (crop, threads) the seven configurations (the three copies, pack, pack
// crop only, and the transposed-copy pack with its memcpy) take turns, one epoch each, the
// order rotating every turn, for --rounds x max(--epochs, 4) turns: each pack/baseline
// ratio compares epochs run back to back, and every figure is the median over the turns
// with the spread (min-max). The other sections repeat their measurements --rounds times.
//
//   bench_loader [--samples N] [--pack-samples M] [--epochs E] [--rounds R] [--keep DIR]
//                [--no-png] [--no-extras]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "data/dedupe.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/sampler.h"
#include "data/split.h"
#include "data/synth.h"
#include "data/transforms.h"

using namespace hpa::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a.empty() ? "unknown" : a + " " + b + " " + c;
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

constexpr int kBatch = 16;

LoaderOptions training_options(int crop, int threads) {
  LoaderOptions o;
  o.batch_size = kBatch;
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

// The batch ring of a loader with `threads` workers, for the baselines.
struct Ring {
  Ring(size_t image_bytes, int threads) : slots(static_cast<size_t>(2 * threads + 2)), bytes(image_bytes) {
    for (auto& s : slots) {
      s = static_cast<uint8_t*>(std::aligned_alloc(4096, image_bytes * kBatch));
      std::memset(s, 0, image_bytes * kBatch);
    }
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() {
    for (auto* s : slots) std::free(s);
  }
  uint8_t* image(int64_t batch, int k) const {
    return slots[static_cast<size_t>(batch) % slots.size()] + static_cast<size_t>(k) * bytes;
  }
  std::vector<uint8_t*> slots;
  size_t bytes;
};

// The copy baselines (see the header comment), one epoch per call: images copied.
enum class Copy {
  memcpy,         // 4 x crop² contiguous bytes from the sample's start, one std::memcpy
  stream,         // the same with non-temporal stores
  window_memcpy,  // a random crop window of each plane, one std::memcpy per row
};
struct CopyEpochs {
  CopyEpochs(const PackReader& pack_, int crop_, int threads_, Copy how_)
      : pack(pack_),
        crop(crop_),
        threads(threads_),
        how(how_),
        ring(static_cast<size_t>(kNumChannels) * crop_ * crop_, threads_) {}
  int64_t operator()(int64_t epoch) const {
    const size_t bytes = static_cast<size_t>(kNumChannels) * crop * crop;
    const int s = pack.size();
    EpochPlanOptions plan_options;
    plan_options.seed = 1;
    plan_options.epoch = epoch;
    const std::vector<EpochEntry> plan = plan_epoch(pack.count(), {}, plan_options);
    const int64_t batches = (static_cast<int64_t>(plan.size()) + kBatch - 1) / kBatch;
    auto work = [&](int t) {
      for (int64_t b = t; b < batches; b += threads)
        for (int k = 0; k < kBatch && b * kBatch + k < static_cast<int64_t>(plan.size()); ++k) {
          const int64_t i = b * kBatch + k;
          const uint8_t* src = pack.image(plan[static_cast<size_t>(i)].sample);
          uint8_t* dst = ring.image(b, k);
          if (how == Copy::memcpy) {
            std::memcpy(dst, src, bytes);
          } else if (how == Copy::stream) {  // the identity on 4 contiguous crop x crop planes
            crop_dihedral_into(src, kNumChannels, crop, crop, 0, 0, crop, 0, dst, true);
          } else {
            Rng rng(static_cast<uint64_t>(epoch) * 1000003u + static_cast<uint64_t>(i));
            const int top = static_cast<int>(rng.range(0, s - crop)),
                      left = static_cast<int>(rng.range(0, s - crop));
            for (int c = 0; c < kNumChannels; ++c)
              for (int y = 0; y < crop; ++y)
                std::memcpy(dst + (static_cast<size_t>(c) * crop + y) * crop,
                            src + (static_cast<size_t>(c) * s + top + y) * s + left,
                            static_cast<size_t>(crop));
          }
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    return static_cast<int64_t>(plan.size());
  }
  const PackReader& pack;
  int crop, threads;
  Copy how;
  Ring ring;
};

// A loader kept across epochs, one epoch per call: images delivered.
struct LoaderEpochs {
  LoaderEpochs(const std::shared_ptr<const SampleSource>& source, const LoaderOptions& options)
      : loader(std::make_unique<Loader>(source, options)) {}
  int64_t operator()(int64_t epoch) const {
    int64_t images = 0;
    loader->start_epoch(epoch);
    while (Batch batch = loader->next()) images += batch.size();
    return images;
  }
  std::unique_ptr<Loader> loader;
};

// The kernel alone, one thread: dihedral element k of a random crop of each sample, in the
// epoch's order, into the ring. Images/s.
double kernel_images_per_second(const PackReader& pack, int crop, int k, bool streaming, int passes) {
  const size_t bytes = static_cast<size_t>(kNumChannels) * crop * crop;
  Ring ring(bytes, 1);
  const int s = pack.size();
  Rng rng(7);
  auto pass = [&](int64_t epoch) {
    EpochPlanOptions plan_options;
    plan_options.seed = 1;
    plan_options.epoch = epoch;
    const std::vector<EpochEntry> plan = plan_epoch(pack.count(), {}, plan_options);
    for (size_t i = 0; i < plan.size(); ++i) {
      const int top = static_cast<int>(rng.range(0, s - crop)),
                left = static_cast<int>(rng.range(0, s - crop));
      crop_dihedral_into(pack.image(plan[i].sample), kNumChannels, s, s, top, left, crop, k,
                         ring.image(static_cast<int64_t>(i) / kBatch, static_cast<int>(i % kBatch)),
                         streaming);
    }
    return static_cast<int64_t>(plan.size());
  };
  pass(0);
  const auto start = Clock::now();
  int64_t images = 0;
  for (int e = 1; e <= passes; ++e) images += pass(e);
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

// A pack of `count` samples: the given pack's samples repeated in turn under new ids, plain
// or with the transposed copy.
void write_repeated_pack(const PackReader& from, const std::string& path, int64_t count,
                         bool transposed_copy) {
  PackWriter writer(path, from.size(), transposed_copy);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t j = i % from.count();
    std::string id = std::to_string(i);  // (not "r" + to_string: GCC 12's -Wrestrict false positive)
    id += '_';
    id += from.id(j);
    writer.add(id, from.labels(j), from.image(j));
  }
  writer.finish();
}

// Median and spread of repeated measurements.
struct Stat {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double median() const {
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s.size() % 2 ? s[s.size() / 2] : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
  }
  double lo() const { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
  double hi() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

std::string fmt(const Stat& s, const char* f = "%.0f") {
  char a[32], b[32], c[32];
  std::snprintf(a, sizeof a, f, s.median());
  std::snprintf(b, sizeof b, f, s.lo());
  std::snprintf(c, sizeof c, f, s.hi());
  return std::string(a) + " (" + b + "-" + c + ")";
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 48, pack_samples = 192, epochs = 2, rounds = 3;
  bool png = true, extras = true;
  std::string keep;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--samples" && has_value)
      samples = std::stoi(argv[++i]);
    else if (flag == "--pack-samples" && has_value)
      pack_samples = std::stoi(argv[++i]);
    else if (flag == "--epochs" && has_value)
      epochs = std::stoi(argv[++i]);
    else if (flag == "--rounds" && has_value)
      rounds = std::stoi(argv[++i]);
    else if (flag == "--keep" && has_value)
      keep = argv[++i];
    else if (flag == "--no-png")
      png = false;
    else if (flag == "--no-extras")
      extras = false;
    else {
      std::fprintf(stderr, "bench_loader: unknown or incomplete flag %s\n", flag.c_str());
      return 2;
    }
  }
  const fs::path root = keep.empty()
                            ? fs::temp_directory_path() / ("hpa_bench_loader_" + std::to_string(::getpid()))
                            : fs::path(keep);
  fs::create_directories(root);

  std::printf("machine: %u hardware threads; load average at start %s\n", std::thread::hardware_concurrency(),
              load_average().c_str());
  std::printf("memcpy of 256 MiB buffers: %.1f GB/s (best of 5)\n", memcpy_bandwidth_gbs());
  std::printf(
      "batch %d; %d rounds; figures: median (min-max); loader vs copies: over %d turns of one epoch\n"
      "each, ratios taken within a turn (see the header comment)\n",
      kBatch, rounds, rounds * std::max(epochs, 4));

  struct Config {
    int file_size, pack_size, crop;
  };
  const Config configs[] = {{512, 768, 512}, {1024, 1024, 768}};
  struct Prepared {
    Config c;
    std::shared_ptr<const ImageFolderSource> png;
    std::shared_ptr<const PackReader> pack;  // the throughput pack (pack_samples)
    std::string pack_path;
    std::shared_ptr<const PackReader> transposed_pack;  // the same samples with the transposed copy
  };
  std::vector<Prepared> prepared;
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
    auto small_pack = std::make_shared<const PackReader>(PackReader::open(pack_path, true));
    auto png_source = std::make_shared<const ImageFolderSource>(index, c.file_size);
    // Validation: the pack holds the resized files, so both paths give the same batches.
    LoaderOptions check = training_options(c.crop, 2);
    check.resize_to = c.pack_size;
    if (!same_first_batch(png_source, std::make_shared<const PackSource>(small_pack), check)) {
      std::fprintf(stderr, "bench_loader: PNG and pack loaders disagree at %d²\n", c.crop);
      return 1;
    }
    const std::string big_path =
        (root / ("train" + std::to_string(c.pack_size) + "_x" + std::to_string(pack_samples) + ".pack"))
            .string();
    if (!fs::exists(big_path)) write_repeated_pack(*small_pack, big_path, pack_samples, false);
    const std::string transposed_path =
        (root / ("train" + std::to_string(c.pack_size) + "_x" + std::to_string(pack_samples) + "_t.pack"))
            .string();
    if (!fs::exists(transposed_path)) write_repeated_pack(*small_pack, transposed_path, pack_samples, true);
    auto big_pack =
        std::make_shared<const PackReader>(PackReader::open(big_path, true, PackPaging::populate));
    auto transposed_pack =
        std::make_shared<const PackReader>(PackReader::open(transposed_path, true, PackPaging::populate));
    // Validation: the transposed copy gives the same batches (dihedral on).
    if (!same_first_batch(std::make_shared<const PackSource>(big_pack),
                          std::make_shared<const PackSource>(transposed_pack), training_options(c.crop, 2))) {
      std::fprintf(stderr, "bench_loader: plain and transposed-copy packs disagree at %d²\n", c.crop);
      return 1;
    }
    prepared.push_back({c, png_source, big_pack, big_path, transposed_pack});
  }

  // ---- loader vs the copies of the same bytes ------------------------------------------
  // Per (crop, threads): every configuration is built once and runs a warm-up epoch, then
  // they take turns, one epoch each (the order rotating by one each turn), for rounds x
  // pack_epochs turns. Ratios are taken within a turn, between epochs run back to back.
  // key: (crop, threads, what)
  std::map<std::tuple<int, int, std::string>, Stat> stats;
  const int pack_epochs = std::max(epochs, 4), turns = rounds * pack_epochs;
  for (const Prepared& p : prepared)
    for (int threads : {1, 2}) {
      auto key = [&](const std::string& what) { return std::make_tuple(p.c.crop, threads, what); };
      auto source = std::make_shared<const PackSource>(p.pack);
      LoaderOptions o = training_options(p.c.crop, threads);
      LoaderOptions crop_only = o;
      crop_only.dihedral = false;
      struct Run {
        const char* what;
        std::function<int64_t(int64_t)> epoch;
      };
      // (std::function copies its target, and the runners own buffers and threads: share them.)
      auto shared = [](auto held) {
        return std::function<int64_t(int64_t)>([held](int64_t e) { return (*held)(e); });
      };
      const std::vector<Run> runs = {
          {"memcpy", shared(std::make_shared<CopyEpochs>(*p.pack, p.c.crop, threads, Copy::memcpy))},
          {"stream", shared(std::make_shared<CopyEpochs>(*p.pack, p.c.crop, threads, Copy::stream))},
          {"window memcpy",
           shared(std::make_shared<CopyEpochs>(*p.pack, p.c.crop, threads, Copy::window_memcpy))},
          {"pack", shared(std::make_shared<LoaderEpochs>(source, o))},
          {"pack crop only", shared(std::make_shared<LoaderEpochs>(source, crop_only))},
          // The transposed-copy pack, crop + dihedral, next to the memcpy of its own bytes.
          {"memcpy T",
           shared(std::make_shared<CopyEpochs>(*p.transposed_pack, p.c.crop, threads, Copy::memcpy))},
          {"pack T",
           shared(std::make_shared<LoaderEpochs>(std::make_shared<const PackSource>(p.transposed_pack), o))},
      };
      for (const Run& r : runs) r.epoch(0);
      for (int turn = 0; turn < turns; ++turn) {
        std::map<std::string, double> rate;
        for (size_t i = 0; i < runs.size(); ++i) {
          const Run& r = runs[(i + static_cast<size_t>(turn)) % runs.size()];
          const auto start = Clock::now();
          const int64_t images = r.epoch(1 + turn);
          rate[r.what] = static_cast<double>(images) / seconds_since(start);
          stats[key(r.what)].add(rate[r.what]);
        }
        stats[key("pack/memcpy")].add(rate["pack"] / rate["memcpy"]);
        stats[key("pack/stream")].add(rate["pack"] / rate["stream"]);
        stats[key("crop only/memcpy")].add(rate["pack crop only"] / rate["memcpy"]);
        stats[key("pack/window memcpy")].add(rate["pack"] / rate["window memcpy"]);
        stats[key("crop only/window memcpy")].add(rate["pack crop only"] / rate["window memcpy"]);
        stats[key("pack T/memcpy T")].add(rate["pack T"] / rate["memcpy T"]);
        stats[key("pack T/pack")].add(rate["pack T"] / rate["pack"]);
      }
      if (png) {  // decode-bound and slow: one measurement
        stats[key("png")].add(images_per_second(p.png, o, epochs));
      }
      std::fprintf(stderr, "bench_loader: %d² with %d thread%s done (load %s)\n", p.c.crop, threads,
                   threads > 1 ? "s" : "", load_average().c_str());
    }
  std::printf("\n+T: the pack with the transposed copy; its memcpy copies from its own samples\n");
  std::printf("%-5s %-7s %-33s %-22s %-10s\n", "crop", "threads", "what", "images/s", "GB/s out");
  for (const Prepared& p : prepared)
    for (int threads : {1, 2}) {
      const double bytes = 4.0 * p.c.crop * p.c.crop;
      auto row = [&](const std::string& what, const std::string& label) {
        const auto it = stats.find(std::make_tuple(p.c.crop, threads, what));
        if (it == stats.end()) return;
        std::printf("%-5d %-7d %-33s %-22s %-10.2f\n", p.c.crop, threads, label.c_str(),
                    fmt(it->second).c_str(), it->second.median() * bytes / 1e9);
      };
      const std::string ps = std::to_string(p.c.pack_size) + "²";
      row("png", "PNG " + std::to_string(p.c.file_size) + "²");
      row("pack", "pack " + ps + " crop+dihedral");
      row("pack crop only", "pack " + ps + " crop only");
      row("memcpy", "memcpy, same bytes");
      row("stream", "stream copy, same bytes");
      row("window memcpy", "memcpy of a window, by rows");
      row("pack T", "pack " + ps + "+T crop+dihedral");
      row("memcpy T", "memcpy, same bytes, +T pack");
      for (const char* r : {"pack/memcpy", "crop only/memcpy", "pack/stream", "pack/window memcpy",
                            "crop only/window memcpy", "pack T/memcpy T", "pack T/pack"})
        std::printf("%-5d %-7d %-33s %-22s\n", p.c.crop, threads, (std::string("  ratio ") + r).c_str(),
                    fmt(stats[std::make_tuple(p.c.crop, threads, std::string(r))], "%.2f").c_str());
    }

  if (extras) {
    // ---- stages: the kernel alone, per dihedral element, from the mapping ----------------
    std::printf("\nkernel alone (1 thread, from the mapping, no loader): images/s, median of %d\n", rounds);
    std::printf("%-5s %-4s %-16s %-16s\n", "crop", "k", "streaming", "cached stores");
    for (const Prepared& p : prepared)
      for (int k = 0; k < kDihedralCount; ++k) {
        Stat on, off;
        for (int round = 0; round < rounds; ++round) {
          on.add(kernel_images_per_second(*p.pack, p.c.crop, k, true, 2));
          off.add(kernel_images_per_second(*p.pack, p.c.crop, k, false, 2));
        }
        std::printf("%-5d %-4d %-16s %-16s\n", p.c.crop, k, fmt(on).c_str(), fmt(off).c_str());
      }

    // ---- the first pass over a freshly mapped pack -----------------------------------
    // The file is in the page cache (it was just read); only the mapping is new.
    std::printf("\nfirst epoch after open (pack in the page cache, mapping new), loader images/s:\n");
    std::printf("%-5s %-7s %-22s %-12s %-22s %-22s\n", "crop", "threads", "paging", "open ms", "first epoch",
                "second epoch");
    for (const Prepared& p : prepared)
      for (int threads : {1, 2})
        for (int mode = 0; mode < 4; ++mode) {
          const PackPaging paging = mode == 1   ? PackPaging::populate
                                    : mode == 2 ? PackPaging::willneed
                                                : PackPaging::lazy;
          const char* names[] = {"lazy", "populate (MAP_POPULATE)", "willneed (madvise)", "lazy + prefault"};
          Stat open_ms, first, second;
          for (int round = 0; round < rounds; ++round) {
            const auto start = Clock::now();
            auto pack = std::make_shared<const PackReader>(PackReader::open(p.pack_path, false, paging));
            open_ms.add(seconds_since(start) * 1e3);
            Loader loader(std::make_shared<const PackSource>(pack, false, mode == 3),
                          training_options(p.c.crop, threads));
            for (int e = 0; e < 2; ++e) {
              const auto t = Clock::now();
              int64_t images = 0;
              loader.start_epoch(e);
              while (Batch batch = loader.next()) images += batch.size();
              (e == 0 ? first : second).add(static_cast<double>(images) / seconds_since(t));
            }
          }
          std::printf("%-5d %-7d %-22s %-12s %-22s %-22s\n", p.c.crop, threads, names[mode],
                      fmt(open_ms, "%.1f").c_str(), fmt(first).c_str(), fmt(second).c_str());
        }

    // ---- jitter on ------------------------------------------------------------------------
    std::printf("\npack, crop + dihedral + brightness/contrast jitter (0.1, 0.1): images/s\n");
    for (const Prepared& p : prepared)
      for (int threads : {1, 2}) {
        LoaderOptions o = training_options(p.c.crop, threads);
        o.brightness = o.contrast = 0.1;
        Stat s;
        for (int round = 0; round < rounds; ++round)
          s.add(images_per_second(std::make_shared<const PackSource>(p.pack), o, pack_epochs));
        std::printf("%-5d %-7d %s\n", p.c.crop, threads, fmt(s).c_str());
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
  }
  std::printf("\nload average at end %s\n", load_average().c_str());
  if (keep.empty()) fs::remove_all(root);
  return 0;
}
