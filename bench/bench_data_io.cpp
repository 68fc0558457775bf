// data/ I/O throughput: PNG decoding of 512² 8-bit grayscale files (our fast path, libpng,
// stb_image; tools/pil_decode_bench.py times PIL on the same files and prints them side by
// side), PNG encoding, the synthetic generator and the transforms. BM_CropDihedralInto is
// the loader's kernel per dihedral element (arg 1), streaming or cached stores (arg 2), on
// one 768² sample (in cache) into a 16-sample batch buffer (out of L2) that starts on a
// cache line or 16 bytes after one (arg 3): the kernel's own speed, without the memory
// traffic of bench_loader's runs over a mapped pack.
//
// Files: every *.png under $HPA_BENCH_PNG_DIR; without it, a 16-sample synthetic dataset
// (64 PNGs) is generated once into /tmp/hpa_bench_png. Files are read into memory first, so
// the decode figures exclude disk I/O. Each decoder is checked against the fast path before
// timing. items_per_second = images per second (per core: the loops are single-threaded).
#include <benchmark/benchmark.h>
#include <stb/stb_image.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/file_io.h"
#include "data/image.h"
#include "data/rng.h"
#include "data/synth.h"
#include "data/transforms.h"

namespace fs = std::filesystem;
using namespace hpa::data;

namespace {

struct PngFile {
  std::string name;
  std::vector<uint8_t> bytes;
};

const std::vector<PngFile>& png_files() {
  static const std::vector<PngFile> files = [] {
    std::string dir;
    if (const char* env = std::getenv("HPA_BENCH_PNG_DIR")) {
      dir = env;
    } else {
      dir = "/tmp/hpa_bench_png";
      if (!fs::exists(dir + "/train.csv")) {
        SynthOptions options;
        options.count = 16;
        options.size = 512;
        options.seed = 2018;
        options.progress_seconds = 0;
        write_synth_dataset(dir, options);
      }
    }
    std::vector<PngFile> out;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().extension() == ".png")
        out.push_back({entry.path().string(), read_file_bytes(entry.path().string())});
    std::sort(out.begin(), out.end(), [](const PngFile& a, const PngFile& b) { return a.name < b.name; });
    if (out.empty()) {
      std::fprintf(stderr, "bench_data_io: no PNG files under %s\n", dir.c_str());
      std::exit(1);
    }
    size_t total = 0;
    for (const PngFile& f : out) total += f.bytes.size();
    std::fprintf(stderr, "bench_data_io: %zu PNG files from %s, mean %.0f KB\n", out.size(), dir.c_str(),
                 total / 1024.0 / out.size());
    return out;
  }();
  return files;
}

// Every decoder must give the fast path's pixels before it is timed.
void check_same_pixels(benchmark::State& state, const std::vector<uint8_t>& pixels, const PngFile& f) {
  const DecodedImage reference = decode_png_memory(f.bytes.data(), f.bytes.size(), f.name);
  if (pixels != reference.samples8) state.SkipWithError(("decoders disagree on " + f.name).c_str());
}

void BM_PngDecodeFastPath(benchmark::State& state) {
  const auto& files = png_files();
  size_t i = 0, pixels = 0;
  for (auto _ : state) {
    const PngFile& f = files[i++ % files.size()];
    DecodedImage d = decode_png_memory(f.bytes.data(), f.bytes.size(), f.name);
    pixels += d.samples8.size();
    benchmark::DoNotOptimize(d.samples8.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(pixels));
}

void BM_PngDecodeLibpng(benchmark::State& state) {
  const auto& files = png_files();
  check_same_pixels(
      state, decode_png_memory_libpng(files[0].bytes.data(), files[0].bytes.size(), "").samples8, files[0]);
  size_t i = 0, pixels = 0;
  for (auto _ : state) {
    const PngFile& f = files[i++ % files.size()];
    DecodedImage d = decode_png_memory_libpng(f.bytes.data(), f.bytes.size(), f.name);
    pixels += d.samples8.size();
    benchmark::DoNotOptimize(d.samples8.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(pixels));
}

void BM_PngDecodeStbImage(benchmark::State& state) {
  const auto& files = png_files();
  {
    int w = 0, h = 0, c = 0;
    uint8_t* p =
        stbi_load_from_memory(files[0].bytes.data(), static_cast<int>(files[0].bytes.size()), &w, &h, &c, 1);
    if (!p) return state.SkipWithError("stb_image failed");
    check_same_pixels(state, std::vector<uint8_t>(p, p + static_cast<size_t>(w) * h), files[0]);
    stbi_image_free(p);
  }
  size_t i = 0, pixels = 0;
  for (auto _ : state) {
    const PngFile& f = files[i++ % files.size()];
    int w = 0, h = 0, c = 0;
    uint8_t* p = stbi_load_from_memory(f.bytes.data(), static_cast<int>(f.bytes.size()), &w, &h, &c, 1);
    pixels += static_cast<size_t>(w) * h;
    benchmark::DoNotOptimize(p);
    stbi_image_free(p);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(pixels));
}

void BM_PngEncode512(benchmark::State& state) {
  const Image image = synth_image(1u << 23, 512, 1, 0);
  const int level = static_cast<int>(state.range(0));
  size_t bytes = 0;
  for (auto _ : state) {
    const std::vector<uint8_t> png = encode_png_gray(image.channel(1), 512, 512, level);
    bytes = png.size();
    benchmark::DoNotOptimize(png.data());
  }
  state.counters["png_KB"] = static_cast<double>(bytes) / 1024.0;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_SynthImage512(benchmark::State& state) {
  int64_t i = 0;
  for (auto _ : state) {
    const Image image = synth_image(synth_labels(7, i), 512, 7, i);
    ++i;
    benchmark::DoNotOptimize(image.pixels.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Resize(benchmark::State& state) {
  const int from = static_cast<int>(state.range(0)), to = static_cast<int>(state.range(1));
  Image image(4, from, from);
  Rng rng(1);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng.below(256));
  for (auto _ : state) benchmark::DoNotOptimize(resize(image, to, to).pixels.data());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_CropDihedral(benchmark::State& state) {
  Image image(4, 768, 768);
  Rng rng(1);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng.below(256));
  AugmentOptions options;
  options.crop_size = 512;
  for (auto _ : state) benchmark::DoNotOptimize(augment(image, options, rng).pixels.data());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_CropDihedralInto(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const bool streaming = state.range(1) != 0;
  const size_t offset = static_cast<size_t>(state.range(2));  // bytes after a cache line
  constexpr int kSource = 768, kCrop = 512, kBatch = 16;
  Image image(4, kSource, kSource);
  Rng rng(1);
  for (auto& v : image.pixels) v = static_cast<uint8_t>(rng.below(256));
  const size_t bytes = size_t{4} * kCrop * kCrop;
  std::vector<uint8_t> storage(bytes * kBatch + 128);
  uint8_t* const batch_data =
      storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64 + offset;
  // Checked against the obvious reference before timing.
  crop_dihedral_into(image.pixels.data(), 4, kSource, kSource, 100, 37, kCrop, k, batch_data, streaming);
  if (std::memcmp(batch_data, dihedral(crop(image, 100, 37, kCrop, kCrop), k).pixels.data(), bytes) != 0)
    return state.SkipWithError("crop_dihedral_into disagrees with dihedral(crop(...))");
  size_t i = 0;
  for (auto _ : state) {
    const int top = static_cast<int>(rng.range(0, kSource - kCrop)),
              left = static_cast<int>(rng.range(0, kSource - kCrop));
    crop_dihedral_into(image.pixels.data(), 4, kSource, kSource, top, left, kCrop, k,
                       batch_data + (i++ % kBatch) * bytes, streaming);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

}  // namespace

BENCHMARK(BM_PngDecodeFastPath)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PngDecodeLibpng)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PngDecodeStbImage)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PngEncode512)->Arg(1)->Arg(2)->Arg(6)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SynthImage512)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Resize)->Args({2048, 1024})->Args({1024, 768})->Args({512, 768})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CropDihedral)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CropDihedralInto)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1}, {0, 16}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
