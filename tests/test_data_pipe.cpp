// The data pipeline after decoding: stratified folds, the epoch sampler (oversampling,
// sharding), perceptual and checksum hashes, near-duplicate grouping, the packed cache (plain
// and with a transposed copy), the fused crop + dihedral kernel (against a naive reference),
// the loader, and the TIFF reader's guard against headers that promise more pixels than the
// file holds. Data is small and synthetic (in-memory images, or PNGs written with
// data/image.h's writer into a temporary folder); every seed is fixed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "data/dedupe.h"
#include "data/error.h"
#include "data/hash.h"
#include "data/hpa_classes.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/sampler.h"
#include "data/split.h"
#include "data/synth.h"
#include "data/transforms.h"

using namespace hpa::data;
namespace fs = std::filesystem;

namespace {

#define EXPECT_DATA_ERROR(stmt, ...)                                          \
  do {                                                                        \
    try {                                                                     \
      stmt;                                                                   \
      ADD_FAILURE() << "expected DataError from " #stmt;                      \
    } catch (const DataError& e) {                                            \
      for (const std::string& needle : std::vector<std::string>{__VA_ARGS__}) \
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)      \
            << "message '" << e.what() << "' lacks '" << needle << "'";       \
    }                                                                         \
  } while (0)

constexpr const auto& kHpaCounts = kHpaTrainCounts;  // the public train.csv's class counts

// n samples with 1-4 labels each, classes drawn without replacement with probability
// proportional to the real counts (so rare classes stay rare: a few samples each at n = 3000).
std::vector<std::vector<int>> real_like_labels(int n, uint64_t seed) {
  Rng rng(seed);
  const double total = std::accumulate(kHpaCounts.begin(), kHpaCounts.end(), 0.0);
  std::vector<std::vector<int>> labels(static_cast<size_t>(n));
  for (auto& sample : labels) {
    const double u = rng.uniform();
    const int how_many = u < 0.5 ? 1 : u < 0.85 ? 2 : u < 0.97 ? 3 : 4;
    while (static_cast<int>(sample.size()) < how_many) {
      double pick = rng.uniform() * total;
      int c = 0;
      while (c < kNumClasses - 1 && pick >= static_cast<double>(kHpaCounts[static_cast<size_t>(c)]))
        pick -= static_cast<double>(kHpaCounts[static_cast<size_t>(c++)]);
      if (std::find(sample.begin(), sample.end(), c) == sample.end()) sample.push_back(c);
    }
  }
  return labels;
}

std::vector<int64_t> class_totals(const std::vector<std::vector<int>>& labels) {
  std::vector<int64_t> totals(kNumClasses, 0);
  for (const auto& s : labels)
    for (int c : s) ++totals[static_cast<size_t>(c)];
  return totals;
}

// The largest |count - ideal| over folds and classes.
double worst_label_deviation(const std::vector<std::vector<int>>& labels, const std::vector<int>& fold_of,
                             int folds) {
  const auto counts = fold_label_counts(labels, kNumClasses, fold_of, folds);
  const auto totals = class_totals(labels);
  double worst = 0;
  for (int f = 0; f < folds; ++f)
    for (int c = 0; c < kNumClasses; ++c)
      worst = std::max(worst,
                       std::abs(static_cast<double>(counts[static_cast<size_t>(f)][static_cast<size_t>(c)]) -
                                static_cast<double>(totals[static_cast<size_t>(c)]) / folds));
  return worst;
}

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> serial{0};
    path = fs::temp_directory_path() /
           ("hpa_test_data_pipe_" + std::to_string(::getpid()) + "_" + std::to_string(serial++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// A smooth random image: a few Gaussian blobs per channel on a dim background, so that
// unrelated images differ in their low frequencies as real micrographs do.
Image blob_image(int size, uint64_t seed) {
  Rng rng(seed);
  Image image(kNumChannels, size, size);
  std::vector<float> plane(static_cast<size_t>(size) * size);
  for (int c = 0; c < kNumChannels; ++c) {
    std::fill(plane.begin(), plane.end(), 10.0f);
    const int blobs = 3 + static_cast<int>(rng.below(6));
    for (int b = 0; b < blobs; ++b) {
      const double cy = rng.uniform(0, size), cx = rng.uniform(0, size);
      const double radius = rng.uniform(size * 0.05, size * 0.25), peak = rng.uniform(60, 200);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const double d2 = ((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (radius * radius);
          plane[static_cast<size_t>(y) * size + x] += static_cast<float>(peak * std::exp(-d2));
        }
    }
    for (size_t i = 0; i < plane.size(); ++i)
      image.channel(c)[i] =
          static_cast<uint8_t>(std::clamp(plane[i] + static_cast<float>(rng.normal(0, 3)), 0.f, 255.f));
  }
  return image;
}

// Distinct per-sample content that a test can recognise: pixel value depends on sample, channel, y, x.
Image numbered_image(int index, int size) {
  Image image(kNumChannels, size, size);
  for (int c = 0; c < kNumChannels; ++c)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        image.at(c, y, x) = static_cast<uint8_t>((index * 31 + c * 7 + y * 3 + x * 5) & 0xFF);
  return image;
}

// An in-memory source: images made on the fly, optionally failing for some samples.
class MemorySource : public SampleSource {
 public:
  MemorySource(int count, int image_size, std::vector<std::vector<int>> labels = {}, std::set<int> bad = {})
      : image_size_(image_size), bad_(std::move(bad)) {
    for (int i = 0; i < count; ++i) {
      ids_.push_back("sample" + std::to_string(i));
      LabelMask mask = 0;
      if (!labels.empty())
        for (int c : labels[static_cast<size_t>(i)]) mask |= 1u << c;
      masks_.push_back(mask);
      images_.push_back(numbered_image(i, image_size));
    }
  }
  size_t size() const override { return ids_.size(); }
  std::string_view id(size_t i) const override { return ids_[i]; }
  LabelMask labels(size_t i) const override { return masks_[i]; }
  ImageView load(size_t i, Image&) const override {
    loads_++;
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    if (bad_.count(static_cast<int>(i)))
      throw data_error("memory/", ids_[i], "_green.png: corrupt (planted)");
    const Image& image = images_[i];
    return ImageView{image.pixels.data(), image.channels, image.height, image.width};
  }
  const Image& image(size_t i) const { return images_[i]; }
  mutable std::atomic<int64_t> loads_{0};
  int delay_ms_ = 0;  // a slow decoder, for shutdown tests

 private:
  int image_size_;
  std::set<int> bad_;
  std::vector<std::string> ids_;
  std::vector<LabelMask> masks_;
  std::vector<Image> images_;
};

// Everything a loader produced in one epoch, for comparisons.
struct EpochDump {
  std::vector<std::vector<uint8_t>> images;
  std::vector<std::vector<float>> labels;
  std::vector<std::vector<std::string>> ids;
  std::vector<std::vector<int64_t>> samples, positions;
  bool operator==(const EpochDump&) const = default;
};

EpochDump run_epoch(Loader& loader, int64_t epoch) {
  EpochDump dump;
  loader.start_epoch(epoch);
  while (Batch batch = loader.next()) {
    EXPECT_EQ(batch.index(), static_cast<int64_t>(dump.images.size()));
    const size_t n = static_cast<size_t>(batch.size());
    const size_t image_bytes = static_cast<size_t>(kNumChannels) * batch.height() * batch.width();
    dump.images.emplace_back(batch.images(), batch.images() + n * image_bytes);
    dump.labels.emplace_back(batch.labels(), batch.labels() + n * kNumClasses);
    dump.ids.push_back(batch.ids());
    dump.samples.push_back(batch.samples());
    dump.positions.push_back(batch.positions());
  }
  return dump;
}

LoaderOptions train_options(int batch_size, int output_size, int threads, uint64_t seed = 7) {
  LoaderOptions o;
  o.batch_size = batch_size;
  o.output_size = output_size;
  o.threads = threads;
  o.seed = seed;
  return o;
}

}  // namespace

// ---- split ------------------------------------------------------------------------------

TEST(Split, EveryLabelWithinOneSampleOfTheIdealOnRealLikeFrequencies) {
  for (uint64_t seed : {1, 2, 3}) {
    const auto labels = real_like_labels(3000, 100 + seed);
    for (int folds : {3, 5}) {
      const auto fold_of = iterative_stratification(labels, kNumClasses, {folds, seed});
      const double worst = worst_label_deviation(labels, fold_of, folds);
      EXPECT_LE(worst, 1.0) << "seed " << seed << ", " << folds << " folds";
      // Fold sizes are balanced too (the size pass): within one sample of n / folds.
      const auto sizes = fold_sizes(fold_of, folds);
      EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()),
                1)
          << "seed " << seed << ", " << folds << " folds";
    }
  }
}

TEST(Split, BeatsARandomSplitOnRareLabels) {
  // The test above can only fail if stratification does something; a random assignment of
  // the same labels must do clearly worse, or the data is too easy to tell.
  const auto labels = real_like_labels(3000, 11);
  std::vector<int> random_fold(labels.size());
  Rng rng(5);
  for (int& f : random_fold) f = static_cast<int>(rng.below(5));
  EXPECT_GT(worst_label_deviation(labels, random_fold, 5), 5.0);
  EXPECT_LE(worst_label_deviation(labels, iterative_stratification(labels, kNumClasses, {5, 5}), 5), 1.0);
}

TEST(Split, DeterministicForASeedAndDifferentAcrossSeeds) {
  const auto labels = real_like_labels(500, 3);
  const auto a = iterative_stratification(labels, kNumClasses, {5, 42});
  const auto b = iterative_stratification(labels, kNumClasses, {5, 42});
  const auto c = iterative_stratification(labels, kNumClasses, {5, 43});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Split, GroupsAreNeverSplitAndStillStratified) {
  const auto labels = real_like_labels(2000, 21);
  // About a fifth of the samples sit in duplicate groups of 2-4 (as dedupe finds them).
  std::vector<int64_t> groups(labels.size());
  Rng rng(8);
  int64_t next_group = 0;
  for (size_t i = 0; i < labels.size();) {
    const size_t size = rng.uniform() < 0.1 ? 2 + static_cast<size_t>(rng.below(3)) : 1;
    for (size_t k = 0; k < size && i < labels.size(); ++k) groups[i++] = next_group;
    ++next_group;
  }
  const auto fold_of = iterative_stratification(labels, kNumClasses, {5, 1}, groups);
  std::map<int64_t, int> fold_of_group;
  for (size_t i = 0; i < labels.size(); ++i) {
    auto [it, inserted] = fold_of_group.try_emplace(groups[i], fold_of[i]);
    EXPECT_EQ(it->second, fold_of[i]) << "group " << groups[i] << " is split";
  }
  // A group moves up to 4 samples at once, so the bound is the largest group, not one.
  EXPECT_LE(worst_label_deviation(labels, fold_of, 5), 4.0);
  const auto sizes = fold_sizes(fold_of, 5);
  EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()), 4);
}

TEST(Split, FoldsAndGroupsFilesRoundTripAndBadRowsNameTheLine) {
  TempDir dir;
  const std::vector<Sample> samples = {{"a", 1}, {"b", 2}, {"c", 4}};
  write_folds_csv(dir.file("folds.csv"), samples, {2, 0, 1});
  EXPECT_EQ(read_folds_csv(dir.file("folds.csv"), samples), (std::vector<int>{2, 0, 1}));
  std::ofstream(dir.file("groups.csv")) << "Id,group\r\nc,x\r\nzz,y\r\na,x\r\nb,7\r\n";
  const auto keys = read_group_keys(dir.file("groups.csv"), samples);
  EXPECT_EQ(keys[0], keys[2]);
  EXPECT_NE(keys[0], keys[1]);
  auto write = [&](const std::string& text) {
    std::ofstream(dir.file("bad.csv"), std::ios::trunc) << text;
    return dir.file("bad.csv");
  };
  EXPECT_DATA_ERROR(read_group_keys(write("Id,fold\na,1\n"), samples), "bad.csv line 1", "Id,group");
  EXPECT_DATA_ERROR(read_group_keys(write("Id,group\na,1\nb\n"), samples), "bad.csv line 3");
  EXPECT_DATA_ERROR(read_group_keys(write("Id,group\na,1\nb,1,2\n"), samples), "bad.csv line 3");
  EXPECT_DATA_ERROR(read_group_keys(write("Id,group\na,1\na,2\n"), samples), "line 3", "duplicate Id a");
  EXPECT_DATA_ERROR(read_group_keys(write("Id,group\na,1\nb,2\n"), samples), "bad.csv",
                    "no group for sample c");
  EXPECT_DATA_ERROR(read_group_keys(write(""), samples), "bad.csv", "empty");
  EXPECT_DATA_ERROR(read_folds_csv(write("Id,fold\na,1\nb,-1\nc,0\n"), samples), "sample b", "'-1'");
  EXPECT_DATA_ERROR(read_folds_csv(dir.file("missing.csv"), samples), "missing.csv");
}

TEST(Split, UnlabelledSamplesBalanceFoldSizes) {
  std::vector<std::vector<int>> labels(100);
  for (int i = 0; i < 10; ++i) labels[static_cast<size_t>(i)] = {i % 3};
  const auto fold_of = iterative_stratification(labels, kNumClasses, {4, 0});
  for (int64_t size : fold_sizes(fold_of, 4)) EXPECT_EQ(size, 25);
}

TEST(Split, BadInput) {
  const std::vector<std::vector<int>> three = {{0}, {1}, {2}};
  EXPECT_DATA_ERROR(iterative_stratification(three, kNumClasses, {5, 0}), "5 folds", "3 samples");
  EXPECT_DATA_ERROR(iterative_stratification(three, kNumClasses, {1, 0}), "at least 2 folds");
  EXPECT_DATA_ERROR(iterative_stratification({{0}, {28}, {1}}, kNumClasses, {2, 0}), "sample 1", "class 28");
  EXPECT_DATA_ERROR(iterative_stratification(three, kNumClasses, {2, 0}, {1, 1}), "2 group keys",
                    "3 samples");
  // Three samples in two groups cannot fill three folds.
  EXPECT_DATA_ERROR(iterative_stratification(three, kNumClasses, {3, 0}, {1, 1, 2}), "groups");
}

// ---- sampler ----------------------------------------------------------------------------

TEST(Sampler, RepeatFactorsFollowTheRarestLabel) {
  // Counts: class 0 x8, class 1 x4, class 2 x2, class 3 x1 -> median 3.
  std::vector<std::vector<int>> labels;
  for (int i = 0; i < 8; ++i) labels.push_back({0});
  labels[0] = {0, 1};
  labels[1] = {0, 1};
  labels[2] = {0, 1};
  labels[3] = {0, 1, 2};
  labels[4] = {0, 2, 3};
  labels.push_back({});
  const auto factors = oversample_repeat_factors(labels, 4, {.cap = 4, .power = 1.0});
  // rarest 8 -> ceil(3/8) = 1; rarest 4 -> 1; rarest 2 -> ceil(1.5) = 2; rarest 1 -> 3; none -> 1
  EXPECT_EQ(factors, (std::vector<int>{1, 1, 1, 2, 3, 1, 1, 1, 1}));
  EXPECT_EQ(oversample_repeat_factors(labels, 4, {.cap = 2, .power = 1.0})[4], 2);  // capped
  EXPECT_EQ(oversample_repeat_factors(labels, 4, {.cap = 4, .power = 2.0})[4], 4);  // 3^2 capped at 4
  EXPECT_EQ(oversample_repeat_factors(labels, 4, {.cap = 4, .power = 0.0})[4], 1);  // disabled
  EXPECT_DATA_ERROR(oversample_repeat_factors(labels, 4, {.cap = 0}), "cap");
  EXPECT_DATA_ERROR(oversample_repeat_factors({{5}}, 4, {}), "sample 0", "class 5");
}

TEST(Sampler, EpochPlanRepeatsShufflesAndShards) {
  const std::vector<int> factors = {1, 3, 1, 2, 1, 1, 1, 4, 1, 1};  // 16 entries
  const int world = 3;
  std::map<int64_t, int> visits;
  std::set<int64_t> positions;
  for (int rank = 0; rank < world; ++rank) {
    const auto shard =
        plan_epoch(10, factors, {.seed = 9, .epoch = 2, .shuffle = true, .rank = rank, .world = world});
    EXPECT_EQ(shard.size(), 5u) << "16 entries over 3 ranks: 5 each, one dropped";
    for (const EpochEntry& e : shard) {
      EXPECT_TRUE(positions.insert(e.position).second) << "position " << e.position << " on two ranks";
      EXPECT_EQ(e.position % world, rank);
      ++visits[e.sample];
    }
  }
  EXPECT_EQ(positions.size(), 15u);
  EXPECT_EQ(*positions.rbegin(), 14);
  // World 1 sees every repeat exactly.
  const auto all = plan_epoch(10, factors, {.seed = 9, .epoch = 2});
  std::vector<int> counts(10, 0);
  for (const EpochEntry& e : all) ++counts[static_cast<size_t>(e.sample)];
  EXPECT_EQ(counts, factors);
  // Same seed and epoch: same plan; another epoch: another order; no shuffle: identity.
  EXPECT_EQ(plan_epoch(10, factors, {.seed = 9, .epoch = 2})[5].sample, all[5].sample);
  std::vector<int64_t> a, b;
  for (const EpochEntry& e : all) a.push_back(e.sample);
  for (const EpochEntry& e : plan_epoch(10, factors, {.seed = 9, .epoch = 3})) b.push_back(e.sample);
  EXPECT_NE(a, b);
  const auto ordered = plan_epoch(4, {}, {.shuffle = false});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ordered[static_cast<size_t>(i)].sample, i);
  EXPECT_DATA_ERROR(plan_epoch(4, {}, {.rank = 2, .world = 2}), "rank 2 of world 2");
  EXPECT_DATA_ERROR(plan_epoch(4, {1, 1}, {}), "2 repeat factors", "4 samples");
}

// ---- hashes -----------------------------------------------------------------------------

TEST(Hash, Xxh64MatchesTheReferenceVectors) {
  auto h = [](std::string_view s, uint64_t seed = 0) { return xxh64(s.data(), s.size(), seed); };
  EXPECT_EQ(h(""), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(h("", 1), 0xD5AFBA1336A3BE4Bull);
  EXPECT_EQ(h("a"), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(h("abc"), 0x44BC2CF5AD770999ull);
  EXPECT_EQ(h("abc", 5381), 0x19D1C1B5C673451Full);
  EXPECT_EQ(h("12345678901234567890123456789012"), 0x40FD1AA52D98274Cull);
  EXPECT_EQ(h("The quick brown fox jumps over the lazy dog"), 0x0B242D361FDA71BCull);
}

TEST(Hash, Xxh64StreamingEqualsOneShotForAnySplit) {
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  for (size_t len : {0, 5, 31, 32, 33, 64, 95, 300, 1000}) {
    const uint64_t whole = xxh64(data.data(), len);
    for (size_t cut : {size_t{1}, size_t{7}, size_t{32}, size_t{33}}) {
      Xxh64Stream stream;
      for (size_t at = 0; at < len; at += cut) stream.update(data.data() + at, std::min(cut, len - at));
      EXPECT_EQ(stream.digest(), whole) << "length " << len << ", pieces of " << cut;
    }
  }
}

// ---- near-duplicates --------------------------------------------------------------------

namespace {

Image brighter(const Image& src, int delta) {
  Image out = src;
  for (uint8_t& v : out.pixels) v = static_cast<uint8_t>(std::clamp(v + delta, 0, 255));
  return out;
}
Image noisy(const Image& src, double sigma, uint64_t seed) {
  Rng rng(seed);
  Image out = src;
  for (uint8_t& v : out.pixels) v = static_cast<uint8_t>(std::clamp(v + rng.normal(0, sigma), 0.0, 255.0));
  return out;
}
// A 3x3 box blur: the smoothing and ringing-free loss of detail of a strong JPEG.
Image blurred(const Image& src) {
  Image out = src;
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < src.height; ++y)
      for (int x = 0; x < src.width; ++x) {
        int sum = 0, n = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int yy = y + dy, xx = x + dx;
            if (yy < 0 || xx < 0 || yy >= src.height || xx >= src.width) continue;
            sum += src.at(c, yy, xx);
            ++n;
          }
        out.at(c, y, x) = static_cast<uint8_t>((sum + n / 2) / n);
      }
  return out;
}
Image shifted(const Image& src, int dy, int dx) {
  Image out = src;
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < src.height; ++y)
      for (int x = 0; x < src.width; ++x)
        out.at(c, y, x) =
            src.at(c, std::clamp(y - dy, 0, src.height - 1), std::clamp(x - dx, 0, src.width - 1));
  return out;
}
SampleHash hash_of(const Image& image) { return sample_hash(image.pixels.data(), image.height, image.width); }

}  // namespace

TEST(Dedupe, PlantedNearDuplicatesAreFoundAndDistinctImagesAreNot) {
  constexpr int kDistinct = 40, kSize = 128;
  std::vector<Image> images;
  for (int i = 0; i < kDistinct; ++i) images.push_back(blob_image(kSize, 1000 + static_cast<uint64_t>(i)));
  // Planted copies of images 3, 7, 11, 15, 19: brighter, noisy, blurred, shifted by one pixel,
  // and a chain (a shifted copy of the blurred copy of 19).
  images.push_back(brighter(images[3], 25));
  images.push_back(noisy(images[7], 6.0, 1));
  images.push_back(blurred(images[11]));
  images.push_back(shifted(images[15], 1, 1));
  images.push_back(shifted(blurred(images[19]), 0, 1));
  const std::vector<std::pair<int, int>> planted = {{3, 40}, {7, 41}, {11, 42}, {15, 43}, {19, 44}};

  std::vector<SampleHash> hashes;
  for (const Image& im : images) hashes.push_back(hash_of(im));
  const DedupeOptions options;
  int worst_duplicate = 0, closest_distinct = 1 << 30;
  for (auto [a, b] : planted)
    worst_duplicate = std::max(
        worst_duplicate,
        hash_distance(hashes[static_cast<size_t>(a)], hashes[static_cast<size_t>(b)], options.stains));
  for (int a = 0; a < kDistinct; ++a)
    for (int b = a + 1; b < kDistinct; ++b)
      closest_distinct = std::min(
          closest_distinct,
          hash_distance(hashes[static_cast<size_t>(a)], hashes[static_cast<size_t>(b)], options.stains));
  std::cout << "[ dedupe   ] planted duplicates within " << worst_duplicate
            << " bits, distinct images at least " << closest_distinct << " bits apart (threshold "
            << options.threshold << ")\n";
  EXPECT_LE(worst_duplicate, options.threshold);
  EXPECT_GT(closest_distinct, options.threshold);

  const auto group_of = group_near_duplicates(hashes, options);
  for (auto [a, b] : planted) EXPECT_EQ(group_of[static_cast<size_t>(a)], group_of[static_cast<size_t>(b)]);
  std::set<int64_t> distinct_groups(group_of.begin(), group_of.begin() + kDistinct);
  EXPECT_EQ(distinct_groups.size(), static_cast<size_t>(kDistinct)) << "a false group among distinct images";
  EXPECT_EQ(*std::max_element(group_of.begin(), group_of.end()), kDistinct - 1);
  EXPECT_EQ(group_of[0], 0);  // groups numbered by first member
}

TEST(Dedupe, SynthHpaImagesAreDistinctAndTheirCopiesAreFound) {
  // The synthetic HPA-like generator's cells (data/synth.h): 100 distinct samples, then a
  // brighter, a noisy, a blurred and a shifted copy of four of them.
  constexpr int kDistinct = 100, kSize = 64;
  std::vector<Image> images;
  for (int i = 0; i < kDistinct; ++i) images.push_back(synth_image(synth_labels(7, i), kSize, 7, i));
  images.push_back(brighter(images[10], 20));
  images.push_back(noisy(images[20], 5.0, 2));
  images.push_back(blurred(images[30]));
  images.push_back(shifted(images[40], 1, 0));
  std::vector<SampleHash> hashes;
  for (const Image& im : images) hashes.push_back(hash_of(im));
  const auto group_of = group_near_duplicates(hashes, DedupeOptions{});
  EXPECT_EQ(std::set<int64_t>(group_of.begin(), group_of.begin() + kDistinct).size(),
            static_cast<size_t>(kDistinct))
      << "a false group among distinct synthetic samples";
  for (auto [a, b] : std::vector<std::pair<int, int>>{{10, 100}, {20, 101}, {30, 102}, {40, 103}})
    EXPECT_EQ(group_of[static_cast<size_t>(a)], group_of[static_cast<size_t>(b)])
        << "copy of sample " << a << " missed";
}

TEST(Dedupe, PairsMatchANaiveScanAndRespectValidity) {
  // Random hashes with a few planted close pairs; every thread count gives the naive answer.
  Rng rng(77);
  std::vector<SampleHash> hashes(300);
  for (auto& h : hashes)
    for (auto& w : h.stain) w = rng.next_u64();
  for (int k = 0; k < 20; ++k) {
    const size_t a = rng.below(300), b = rng.below(300);
    hashes[b] = hashes[a];
    hashes[b].stain[1] ^= uint64_t{1} << rng.below(64);
  }
  DedupeOptions options;
  std::vector<std::pair<int64_t, int64_t>> naive;
  for (int64_t i = 0; i < 300; ++i)
    for (int64_t j = i + 1; j < 300; ++j)
      if (hash_distance(hashes[static_cast<size_t>(i)], hashes[static_cast<size_t>(j)], options.stains) <=
          options.threshold)
        naive.emplace_back(i, j);
  EXPECT_GE(naive.size(), 10u);
  for (int threads : {1, 2, 3}) {
    options.threads = threads;
    EXPECT_EQ(near_duplicate_pairs(hashes, options), naive) << threads << " threads";
  }
  std::vector<bool> valid(300, true);
  valid[static_cast<size_t>(naive[0].first)] = false;
  for (auto [i, j] : near_duplicate_pairs(hashes, options, valid)) {
    EXPECT_NE(i, naive[0].first);
    EXPECT_NE(j, naive[0].first);
  }
  EXPECT_EQ(parse_stain_letters("gb"), kDefaultDedupeStains);
  EXPECT_EQ(parse_stain_letters("rgby"), 0xFu);
  EXPECT_DATA_ERROR(parse_stain_letters("gx"), "r, g, b, y");
  options.threshold = -1;
  EXPECT_DATA_ERROR(near_duplicate_pairs(hashes, options), "threshold");
}

TEST(Dedupe, KeepFirstOfEachGroup) {
  std::vector<Sample> samples = {{"a", 1}, {"b", 2}, {"c", 4}, {"d", 8}};
  const auto kept = keep_first_of_each_group(samples, {0, 1, 0, 1});
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].id, "a");
  EXPECT_EQ(kept[1].id, "b");
}

// ---- pack ------------------------------------------------------------------------------

namespace {

// Writes `count` numbered samples of size S and returns the path.
std::string write_test_pack(const TempDir& dir, int count, int size, const std::string& name = "data.pack") {
  const std::string path = dir.file(name);
  PackWriter writer(path, size);
  for (int i = 0; i < count; ++i)
    writer.add("id" + std::to_string(i),
               static_cast<LabelMask>((i * 2654435761u) & ((1u << kNumClasses) - 1)),
               numbered_image(i, size).pixels.data());
  writer.finish();
  return path;
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
uint64_t get64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[at + static_cast<size_t>(i)]) << (8 * i);
  return v;
}
void put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
// Re-seals a header after an edit so that the check under test is the one that fires.
void reseal_header(std::vector<uint8_t>& b) { put64(b, 104, xxh64(b.data(), 104)); }

// Writes `bytes` to `path` and expects opening it to fail with a DataError that names the
// file and contains every needle.
void expect_bad_pack(const std::string& path, const std::vector<uint8_t>& bytes, bool verify,
                     std::vector<std::string> needles) {
  write_all(path, bytes);
  needles.insert(needles.begin(), path);
  try {
    PackReader::open(path, verify);
    ADD_FAILURE() << "opened a bad pack; expected '" << needles.back() << "'";
  } catch (const DataError& e) {
    for (const auto& needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Pack, RoundTrip) {
  TempDir dir;
  const std::string path = write_test_pack(dir, 13, 24);
  EXPECT_FALSE(fs::exists(path + ".tmp")) << "no temporary left behind";
  for (const auto& entry : fs::directory_iterator(dir.path))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  const PackReader pack = PackReader::open(path, /*verify_checksum=*/true);
  EXPECT_EQ(pack.count(), 13);
  EXPECT_EQ(pack.size(), 24);
  EXPECT_EQ(pack.sample_bytes(), 4u * 24 * 24);
  for (int i = 0; i < 13; ++i) {
    const Image expected = numbered_image(i, 24);
    EXPECT_EQ(std::memcmp(pack.image(i), expected.pixels.data(), expected.pixels.size()), 0)
        << "sample " << i;
    EXPECT_EQ(pack.id(i), "id" + std::to_string(i));
    EXPECT_EQ(pack.labels(i), static_cast<LabelMask>((i * 2654435761u) & ((1u << kNumClasses) - 1)));
    EXPECT_NO_THROW(pack.verify_sample(i));
  }
  EXPECT_EQ(reinterpret_cast<uintptr_t>(pack.image(0)) % 4096, 0u) << "images start on a page";
  EXPECT_DATA_ERROR(pack.image(13), "sample 13 out of range");
  // The same bytes through from_memory, and an empty pack.
  const auto bytes = read_all(path);
  EXPECT_EQ(PackReader::from_memory(bytes.data(), bytes.size(), "mem", true).id(12), "id12");
  const PackReader empty = PackReader::open(write_test_pack(dir, 0, 8, "empty.pack"), true);
  EXPECT_EQ(empty.count(), 0);
}

TEST(Pack, ReadsThePackWrittenByTheIndependentPythonWriter) {
  // fuzz/make_corpus.py implements the layout of data/pack.h (and XXH64) separately.
  const PackReader pack = PackReader::open(
      std::string(HPA_SOURCE_DIR) + "/fuzz/corpus/pack/two_samples_s2.pack", /*verify_checksum=*/true);
  ASSERT_EQ(pack.count(), 2);
  EXPECT_EQ(pack.size(), 2);
  EXPECT_EQ(pack.id(0), "a");
  EXPECT_EQ(pack.id(1), "sample-2");
  EXPECT_EQ(pack.labels(0), (1u << 0) | (1u << 25));
  EXPECT_EQ(pack.labels(1), 1u << 27);
  for (int k = 0; k < 16; ++k) EXPECT_EQ(pack.image(1)[k], 100 + k);
  EXPECT_NO_THROW(pack.verify_sample(0));
  EXPECT_FALSE(pack.transposed_copy());  // a version-1 file

  // Version 2 with the transposed copy: S = 3, sample 1's planes hold 200..235 row by row.
  const PackReader t = PackReader::open(
      std::string(HPA_SOURCE_DIR) + "/fuzz/corpus/pack/transposed_copy_s3_v2.pack", /*verify_checksum=*/true);
  ASSERT_EQ(t.count(), 2);
  ASSERT_TRUE(t.transposed_copy());
  EXPECT_EQ(t.id(1), "t-1");
  EXPECT_EQ(t.labels(0), 1u << 1);
  for (int c = 0; c < kNumChannels; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 3; ++x) {
        EXPECT_EQ(t.image(1)[c * 9 + y * 3 + x], 200 + c * 9 + y * 3 + x);
        EXPECT_EQ(t.transposed_image(1)[c * 9 + x * 3 + y], 200 + c * 9 + y * 3 + x);
      }
  EXPECT_NO_THROW(t.verify_sample(0));
  EXPECT_NO_THROW(t.verify_sample(1));
}

TEST(Pack, EveryBadPackIsAClearError) {
  TempDir dir;
  const std::string good_path = write_test_pack(dir, 5, 16);
  const std::vector<uint8_t> good = read_all(good_path);
  const std::string bad = dir.file("bad.pack");
  auto expect_bad = [&](const std::vector<uint8_t>& bytes, bool verify, std::vector<std::string> needles) {
    expect_bad_pack(bad, bytes, verify, std::move(needles));
  };
  EXPECT_DATA_ERROR(PackReader::open(dir.file("missing.pack")), "missing.pack", "cannot open");

  auto b = good;
  b[0] = 'X';
  expect_bad(b, false, {"bad magic"});
  b = good;
  b[8] = 3;  // version
  expect_bad(b, false, {"unsupported version 3", "versions 1 to 2"});
  b = good;
  b[8] = 0;
  expect_bad(b, false, {"unsupported version 0"});
  b = good;
  b[16] ^= 1;  // count, without resealing
  expect_bad(b, false, {"header checksum"});
  b = good;
  put64(b, 16, 6);  // count 6 with a valid header checksum: the layout no longer fits the file
  reseal_header(b);
  expect_bad(b, false, {"inconsistent header"});
  b = good;
  put64(b, 16, uint64_t{1} << 39);  // a hostile count: must not allocate or read past the end
  reseal_header(b);
  expect_bad(b, false, {"inconsistent header"});
  b = good;
  put64(b, 16, uint64_t{1} << 40);  // count x sample bytes overflows 64 bits
  b[24] = 0xFF;                     // size 65535
  b[25] = 0xFF;
  reseal_header(b);
  expect_bad(b, false, {"layout overflows"});
  b = good;
  b.resize(good.size() - 1);
  expect_bad(b, false, {"truncated"});
  b.resize(100);
  expect_bad(b, false, {"truncated", "header"});
  b = good;
  b.push_back(0);
  expect_bad(b, false, {"unexpected bytes after the end"});

  const uint64_t labels_offset = get64(good, 56), checksums_offset = get64(good, 80);
  b = good;
  b[labels_offset + 3] = 2;
  expect_bad(b, false, {"sample 0", "label byte 2", "class 3"});
  b = good;
  b[get64(good, 64) + 8] = 0;  // the second id offset: sample 0 becomes empty
  expect_bad(b, false, {"id offsets of sample 0"});

  // A flipped image byte: the header checks pass; the payload checksum and the sample's own catch it.
  b = good;
  b[4096 + 16 * 16 * 4 * 2 + 5] ^= 0x40;  // in sample 2
  write_all(bad, b);
  const PackReader unverified = PackReader::open(bad, false);
  EXPECT_NO_THROW(unverified.verify_sample(1));
  EXPECT_DATA_ERROR(unverified.verify_sample(2), "bad.pack", "checksum mismatch in sample 2", "id2");
  EXPECT_DATA_ERROR(unverified.verify_checksum(), "bad.pack", "payload checksum mismatch");
  expect_bad(b, true, {"payload checksum mismatch"});
  // A corrupt stored checksum is caught by the payload checksum too.
  b = good;
  b[checksums_offset] ^= 1;
  expect_bad(b, true, {"payload checksum mismatch"});

  EXPECT_DATA_ERROR(PackWriter(dir.file("x.pack"), 0), "sample size");
  PackWriter writer(dir.file("w.pack"), 4);
  std::vector<uint8_t> pixels(64, 1);
  EXPECT_DATA_ERROR(writer.add("a,b", 0, pixels.data()), "comma");
  EXPECT_DATA_ERROR(writer.add("", 0, pixels.data()), "empty sample id");
  EXPECT_DATA_ERROR(writer.add("a", 1u << 28, pixels.data()), "beyond class 27");
}

TEST(Pack, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  {
    PackWriter writer(dir.file("never.pack"), 8);
    writer.add("x", 1, numbered_image(0, 8).pixels.data());
  }
  EXPECT_TRUE(fs::is_empty(dir.path));
}

TEST(Pack, EveryPagingChoiceAndPrefaultReadTheSameBytes) {
  TempDir dir;
  // S = 24: 2304-byte samples, so most start inside a page (prefault rounds down).
  const std::string path = write_test_pack(dir, 13, 24);
  auto lazy = std::make_shared<const PackReader>(PackReader::open(path));
  LoaderOptions o = train_options(4, 20, 2);
  o.drop_last = false;
  Loader reference_loader(std::make_shared<PackSource>(lazy), o);
  const EpochDump reference = run_epoch(reference_loader, 1);
  for (PackPaging paging : {PackPaging::lazy, PackPaging::populate, PackPaging::willneed}) {
    auto pack = std::make_shared<const PackReader>(PackReader::open(path, true, paging));
    for (int i = 0; i < 13; ++i) {
      EXPECT_NO_THROW(pack->prefault(i));
      const Image expected = numbered_image(i, 24);
      EXPECT_EQ(std::memcmp(pack->image(i), expected.pixels.data(), expected.pixels.size()), 0);
    }
    EXPECT_DATA_ERROR(pack->prefault(13), "sample 13 out of range");
    for (bool prefault : {false, true}) {
      Loader loader(std::make_shared<PackSource>(pack, /*verify_samples=*/prefault, prefault), o);
      EXPECT_TRUE(run_epoch(loader, 1) == reference) << static_cast<int>(paging) << " prefault " << prefault;
    }
  }
  // From memory there is no mapping to prefault: a no-op.
  const std::vector<uint8_t> bytes = read_all(path);
  const PackReader in_memory = PackReader::from_memory(bytes.data(), bytes.size(), "memory.pack");
  EXPECT_NO_THROW(in_memory.prefault(12));
}

// ---- the fused crop + dihedral kernel ----------------------------------------------------

namespace {

// dihedral(crop(plane, top, left, n, n), k) straight from the definition in transforms.h,
// one step at a time on a copy: a horizontal flip when k & 4, then (k & 3) quarter turns
// counter-clockwise (turned(y, x) = before(x, n-1-y)).
std::vector<uint8_t> naive_crop_dihedral(const uint8_t* plane, int width, int top, int left, int n, int k) {
  const size_t nn = static_cast<size_t>(n);
  std::vector<uint8_t> w(nn * nn), t(nn * nn);
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x)
      w[static_cast<size_t>(y) * nn + static_cast<size_t>(x)] =
          plane[static_cast<size_t>(top + y) * static_cast<size_t>(width) + static_cast<size_t>(left + x)];
  if (k & 4) {
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x)
        t[static_cast<size_t>(y) * nn + static_cast<size_t>(x)] =
            w[static_cast<size_t>(y) * nn + static_cast<size_t>(n - 1 - x)];
    w.swap(t);
  }
  for (int r = 0; r < (k & 3); ++r) {
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x)
        t[static_cast<size_t>(y) * nn + static_cast<size_t>(x)] =
            w[static_cast<size_t>(x) * nn + static_cast<size_t>(n - 1 - y)];
    w.swap(t);
  }
  return w;
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng.below(256));
  return v;
}

}  // namespace

TEST(CropDihedral, TheConventionOnAThreeByThree) {
  // 1 2 3 / 4 5 6 / 7 8 9: k = 1 turns it a quarter counter-clockwise, k = 4 mirrors it.
  const std::vector<uint8_t> m = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<std::vector<uint8_t>> expected = {
      {1, 2, 3, 4, 5, 6, 7, 8, 9}, {3, 6, 9, 2, 5, 8, 1, 4, 7}, {9, 8, 7, 6, 5, 4, 3, 2, 1},
      {7, 4, 1, 8, 5, 2, 9, 6, 3}, {3, 2, 1, 6, 5, 4, 9, 8, 7}, {1, 4, 7, 2, 5, 8, 3, 6, 9},
      {7, 8, 9, 4, 5, 6, 1, 2, 3}, {9, 6, 3, 8, 5, 2, 7, 4, 1}};
  for (int k = 0; k < kDihedralCount; ++k) {
    EXPECT_EQ(naive_crop_dihedral(m.data(), 3, 0, 0, 3, k), expected[static_cast<size_t>(k)]) << "k " << k;
    std::vector<uint8_t> out(9);
    for (bool streaming : {false, true}) {
      crop_dihedral_plane(m.data(), 3, 3, 0, 0, 3, k, out.data(), streaming);
      EXPECT_EQ(out, expected[static_cast<size_t>(k)]) << "k " << k;
    }
  }
}

namespace {
// Bytes from p to the next cache-line boundary (0 when p is on one).
size_t to_cache_line(const uint8_t* p) { return (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64; }
}  // namespace

TEST(CropDihedral, EveryElementMatchesTheNaiveReferenceOnOddAndBlockSizes) {
  // Sizes around the kernel's boundaries: 16-column tiles, 16- or 32-row blocks, 64-row
  // bands (one and several), the vector width of the row copies; odd and power-of-two source widths; windows
  // at the corners and inside; destinations at every alignment (non-temporal stores need
  // aligned addresses, the kernel copies the unaligned head and tail itself), with guard
  // bytes around them that must stay untouched.
  const std::vector<std::pair<int, int>> planes = {{157, 141}, {256, 256}, {70, 200}};
  const std::vector<int> sizes = {1,  2,  5,  15, 16, 17,  31,  32,  33,  47,
                                  63, 64, 65, 66, 97, 128, 129, 141, 192, 256};
  constexpr size_t kGuard = 40;
  int checked = 0;
  for (auto [height, width] : planes) {
    const std::vector<uint8_t> plane =
        random_bytes(static_cast<size_t>(height) * width, 5u + static_cast<uint64_t>(width));
    Rng rng(static_cast<uint64_t>(height));
    for (int n : sizes) {
      if (n > height || n > width) continue;
      const std::vector<std::pair<int, int>> corners = {
          {0, 0},
          {height - n, width - n},
          {static_cast<int>(rng.range(0, height - n)), static_cast<int>(rng.range(0, width - n))}};
      for (auto [top, left] : corners)
        for (int k = 0; k < kDihedralCount; ++k) {
          const std::vector<uint8_t> expected = naive_crop_dihedral(plane.data(), width, top, left, n, k);
          for (bool streaming : {false, true})
            // The destination on a cache line (the loader's batches are; with n a multiple of
            // 64 the transposes then stream whole lines) and 1..37 bytes after one.
            for (size_t offset : {size_t{0}, 1 + static_cast<size_t>(checked % 37)}) {
              std::vector<uint8_t> buffer(kGuard + 64 + offset + expected.size() + kGuard, 0xA5);
              const size_t start = kGuard + to_cache_line(buffer.data() + kGuard) + offset;
              uint8_t* out = buffer.data() + start;
              crop_dihedral_plane(plane.data(), height, width, top, left, n, k, out, streaming);
              ASSERT_EQ(std::memcmp(out, expected.data(), expected.size()), 0)
                  << "plane " << height << "x" << width << ", n " << n << " at (" << top << ", " << left
                  << "), k " << k << (streaming ? ", streaming" : "") << ", " << offset
                  << " bytes after a cache line";
              for (size_t i = 0; i < start; ++i) ASSERT_EQ(buffer[i], 0xA5) << "wrote before the output";
              for (size_t i = start + expected.size(); i < buffer.size(); ++i)
                ASSERT_EQ(buffer[i], 0xA5) << "wrote after the output";
              ++checked;
            }
        }
    }
  }
  EXPECT_GT(checked, 2000);
}

TEST(CropDihedral, ChannelsAndTheImageFunctionsAgree) {
  // crop_dihedral_into = the plane kernel per channel = dihedral(crop(...)) on an Image.
  Image image(kNumChannels, 150, 133);
  image.pixels = random_bytes(image.pixels.size(), 9);
  for (int k = 0; k < kDihedralCount; ++k) {
    const Image expected = dihedral(crop(image, 11, 20, 100, 100), k);
    std::vector<uint8_t> out(expected.pixels.size());
    crop_dihedral_into(image.pixels.data(), kNumChannels, 150, 133, 11, 20, 100, k, out.data(), true);
    EXPECT_EQ(out, expected.pixels) << "k " << k;
  }
}

TEST(CropDihedral, BadWindowsAndElementsAreErrors) {
  std::vector<uint8_t> plane(20 * 30), out(400);
  EXPECT_DATA_ERROR(crop_dihedral_plane(plane.data(), 20, 30, 0, 0, 20, 8, out.data(), true), "element 8");
  EXPECT_DATA_ERROR(crop_dihedral_plane(plane.data(), 20, 30, 1, 0, 20, 0, out.data(), true),
                    "20x20 at (1, 0)", "20x30");
  EXPECT_DATA_ERROR(crop_dihedral_plane(plane.data(), 20, 30, 0, 11, 20, 0, out.data(), true),
                    "does not fit");
  EXPECT_DATA_ERROR(crop_dihedral_plane(plane.data(), 20, 30, 0, 0, 0, 0, out.data(), true), "0x0");
}

// ---- packs with a transposed copy ------------------------------------------------------

namespace {

// Random bytes in every plane, so that every dihedral element and the transpose move some byte.
Image random_image(int size, uint64_t seed) {
  Image image(kNumChannels, size, size);
  image.pixels = random_bytes(image.pixels.size(), seed);
  return image;
}

// Every plane transposed, straight from the definition: out plane[x][y] = plane[y][x].
std::vector<uint8_t> transposed_planes(const Image& image) {
  Image out(image.channels, image.width, image.height);
  for (int c = 0; c < image.channels; ++c)
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x) out.at(c, x, y) = image.at(c, y, x);
  return out.pixels;
}

LabelMask random_pack_labels(int i) {
  return static_cast<LabelMask>((i * 2654435761u) & ((1u << kNumClasses) - 1));
}

// The same `count` random samples of size S (random_image(size, 100 + i), ids s0, s1, ...),
// as a plain pack or with the transposed copy.
std::string write_random_pack(const TempDir& dir, int count, int size, bool transposed_copy,
                              const std::string& name) {
  const std::string path = dir.file(name);
  PackWriter writer(path, size, transposed_copy);
  for (int i = 0; i < count; ++i) {
    std::string id = "s";  // (not "s" + to_string: GCC 12's -Wrestrict false positive)
    id += std::to_string(i);
    writer.add(id, random_pack_labels(i), random_image(size, 100 + static_cast<uint64_t>(i)).pixels.data());
  }
  writer.finish();
  return path;
}

}  // namespace

TEST(TransposedPack, HoldsTheTransposeOfEveryPlaneAfterThePlanes) {
  // Sizes odd and even, under and over the writer's 64-pixel tiles, off 16/32/64.
  TempDir dir;
  for (int size : {1, 7, 33, 64, 100}) {
    const std::string tag = std::to_string(size);
    const std::string plain_path = write_random_pack(dir, 3, size, false, "plain" + tag + ".pack");
    const std::string path = write_random_pack(dir, 3, size, true, "transposed" + tag + ".pack");
    const PackReader plain = PackReader::open(plain_path, /*verify_checksum=*/true);
    const PackReader pack = PackReader::open(path, /*verify_checksum=*/true);
    const size_t image_bytes = static_cast<size_t>(kNumChannels) * size * size;
    EXPECT_FALSE(plain.transposed_copy());
    EXPECT_EQ(plain.transposed_image(0), nullptr);
    EXPECT_EQ(plain.sample_bytes(), image_bytes);
    ASSERT_TRUE(pack.transposed_copy());
    EXPECT_EQ(pack.sample_bytes(), 2 * image_bytes);
    ASSERT_EQ(pack.count(), 3);
    for (int i = 0; i < 3; ++i) {
      const Image image = random_image(size, 100 + static_cast<uint64_t>(i));
      EXPECT_EQ(std::memcmp(pack.image(i), image.pixels.data(), image_bytes), 0) << "S " << size;
      EXPECT_EQ(pack.transposed_image(i), pack.image(i) + image_bytes);
      EXPECT_EQ(std::memcmp(pack.transposed_image(i), transposed_planes(image).data(), image_bytes), 0)
          << "S " << size << " sample " << i;
      EXPECT_EQ(pack.id(i), plain.id(i));
      EXPECT_EQ(pack.labels(i), plain.labels(i));
      EXPECT_NO_THROW(pack.verify_sample(i));
    }
    EXPECT_DATA_ERROR(pack.transposed_image(3), "sample 3 out of range");
    EXPECT_DATA_ERROR(plain.transposed_image(-1), "sample -1 out of range");
    // The header: version 2 for both; flags 1 and 0; the images section twice as long.
    const std::vector<uint8_t> t = read_all(path), p = read_all(plain_path);
    EXPECT_EQ(t[8], 2);
    EXPECT_EQ(p[8], 2);
    EXPECT_EQ(t[36], 1);
    EXPECT_EQ(p[36], 0);
    EXPECT_EQ(get64(t, 48), 2 * image_bytes);                          // sample_bytes
    EXPECT_EQ(get64(t, 56), kPackImagesOffset + 3 * 2 * image_bytes);  // labels_offset
    EXPECT_EQ(get64(p, 56), kPackImagesOffset + 3 * image_bytes);
  }
  // Version 1 (no flags) still reads: a plain pack with its version set back to 1.
  std::vector<uint8_t> v1 = read_all(dir.file("plain7.pack"));
  v1[8] = 1;
  reseal_header(v1);
  write_all(dir.file("v1.pack"), v1);
  const PackReader old = PackReader::open(dir.file("v1.pack"), /*verify_checksum=*/true);
  EXPECT_FALSE(old.transposed_copy());
  EXPECT_EQ(std::memcmp(old.image(2), random_image(7, 102).pixels.data(), 4 * 7 * 7), 0);
}

TEST(TransposedPack, TheComposedElementOnTheTransposedWindowGivesTheSameCrop) {
  // Element 5 is the transpose, its own inverse, and composing it flips the parity of k
  // (odd k transposes, even k keeps rows).
  Image small(1, 5, 7);
  small.pixels = random_bytes(small.pixels.size(), 3);
  const Image turned = dihedral(small, kDihedralTranspose);
  ASSERT_EQ(turned.height, 7);
  ASSERT_EQ(turned.width, 5);
  EXPECT_EQ(turned.pixels, transposed_planes(small));
  EXPECT_EQ(dihedral_inverse(kDihedralTranspose), kDihedralTranspose);
  for (int k = 0; k < kDihedralCount; ++k) EXPECT_NE(dihedral_compose(kDihedralTranspose, k) % 2, k % 2);

  // dihedral(crop(P, top, left, n), k) == dihedral(crop(P^T, left, top, n), k') with
  // k' = dihedral_compose(kDihedralTranspose, k), through the naive reference and the kernel,
  // on square and non-square planes, windows at the corners and inside.
  int checked = 0;
  for (auto [height, width] : {std::pair{41, 57}, std::pair{100, 100}, std::pair{150, 133}}) {
    Image plane(1, height, width);
    plane.pixels = random_bytes(plane.pixels.size(), static_cast<uint64_t>(height * width));
    const std::vector<uint8_t> t = transposed_planes(plane);  // width x height
    Rng rng(static_cast<uint64_t>(width));
    for (int n : {1, 16, 33, 41, 64, 65, 100, 130}) {
      if (n > height || n > width) continue;
      const std::vector<std::pair<int, int>> windows = {
          {0, 0},
          {height - n, width - n},
          {0, width - n},
          {static_cast<int>(rng.range(0, height - n)), static_cast<int>(rng.range(0, width - n))}};
      for (auto [top, left] : windows)
        for (int k = 0; k < kDihedralCount; ++k) {
          const int composed = dihedral_compose(kDihedralTranspose, k);
          const std::vector<uint8_t> expected =
              naive_crop_dihedral(plane.pixels.data(), width, top, left, n, k);
          ASSERT_EQ(naive_crop_dihedral(t.data(), height, left, top, n, composed), expected)
              << height << "x" << width << ", n " << n << " at (" << top << ", " << left << "), k " << k;
          std::vector<uint8_t> out(expected.size());
          crop_dihedral_plane(t.data(), width, height, left, top, n, composed, out.data(),
                              /*streaming=*/true);
          ASSERT_EQ(out, expected) << height << "x" << width << ", n " << n << ", k " << k;
          ++checked;
        }
    }
  }
  EXPECT_GT(checked, 300);
}

TEST(TransposedPack, LoaderBatchesAreBitIdenticalToThePlainPacks) {
  // Same seed and options, the same samples in a plain and a transposed-copy pack: the same
  // epoch (images, labels, ids, samples, positions), with 1 and 2 threads, with and without
  // jitter, with a resize (no transposed view then) and a resize to the pack's own size.
  TempDir dir;
  for (auto [size, crop] : {std::pair{40, 29}, std::pair{150, 130}}) {
    const std::string tag = std::to_string(size);
    auto plain = std::make_shared<const PackReader>(
        PackReader::open(write_random_pack(dir, 21, size, false, "plain" + tag + ".pack")));
    auto transposed = std::make_shared<const PackReader>(
        PackReader::open(write_random_pack(dir, 21, size, true, "transposed" + tag + ".pack")));
    for (int threads : {1, 2})
      for (bool jitter : {false, true})
        for (int resize_to : {0, size, size - 3}) {
          LoaderOptions o = train_options(4, crop, threads, 11);
          o.drop_last = false;
          o.resize_to = resize_to;
          if (jitter) {
            o.brightness = 0.1;
            o.contrast = 0.2;
          }
          Loader a(std::make_shared<PackSource>(plain), o);
          Loader b(std::make_shared<PackSource>(transposed, /*verify_samples=*/true), o);
          const EpochDump expected = run_epoch(a, 3);
          ASSERT_EQ(expected.images.size(), 6u);
          EXPECT_TRUE(run_epoch(b, 3) == expected)
              << "S " << size << ", crop " << crop << ", " << threads << " threads, jitter " << jitter
              << ", resize " << resize_to;
        }
  }

  // The transposing elements really read the transposed copy: with it zeroed (in memory,
  // checksums not updated), the samples with odd k come out all zero and the others as in
  // the plain pack.
  std::vector<uint8_t> bytes = read_all(dir.file("transposed40.pack"));
  const size_t image_bytes = static_cast<size_t>(kNumChannels) * 40 * 40;
  for (size_t i = 0; i < 21; ++i) {
    const size_t at = kPackImagesOffset + i * 2 * image_bytes + image_bytes;
    std::fill(bytes.begin() + static_cast<ptrdiff_t>(at),
              bytes.begin() + static_cast<ptrdiff_t>(at + image_bytes), 0);
  }
  auto zeroed =
      std::make_shared<const PackReader>(PackReader::from_memory(bytes.data(), bytes.size(), "zeroed"));
  auto plain = std::make_shared<const PackReader>(PackReader::open(dir.file("plain40.pack")));
  const LoaderOptions o = train_options(3, 29, 2, 4);
  Loader from_zeroed(std::make_shared<PackSource>(zeroed), o);
  Loader from_plain(std::make_shared<PackSource>(plain), o);
  const EpochDump got = run_epoch(from_zeroed, 0), reference = run_epoch(from_plain, 0);
  const size_t out_bytes = static_cast<size_t>(kNumChannels) * 29 * 29;
  int odd = 0, even = 0;
  for (size_t b = 0; b < got.images.size(); ++b)
    for (size_t j = 0; j < got.samples[b].size(); ++j) {
      Rng rng(mix_seed(o.seed, 0, static_cast<uint64_t>(got.positions[b][j])));
      rng.range(0, 40 - 29);  // top, left
      rng.range(0, 40 - 29);
      const int k = static_cast<int>(rng.below(kDihedralCount));
      const uint8_t* image = got.images[b].data() + j * out_bytes;
      if (k % 2 == 1) {
        ++odd;
        EXPECT_TRUE(std::all_of(image, image + out_bytes, [](uint8_t v) { return v == 0; })) << "k " << k;
      } else {
        ++even;
        EXPECT_EQ(std::memcmp(image, reference.images[b].data() + j * out_bytes, out_bytes), 0) << "k " << k;
      }
    }
  EXPECT_GT(odd, 0);
  EXPECT_GT(even, 0);
}

TEST(TransposedPack, BadFilesAreClearErrors) {
  TempDir dir;
  const std::vector<uint8_t> good = read_all(write_random_pack(dir, 4, 16, true, "good.pack"));
  const std::vector<uint8_t> plain = read_all(write_random_pack(dir, 4, 16, false, "plain.pack"));
  const std::string bad = dir.file("bad.pack");
  constexpr size_t kFlagsAt = 36;
  const size_t image_bytes = static_cast<size_t>(kNumChannels) * 16 * 16;

  auto b = good;
  put32(b, kFlagsAt, 3);  // an unknown bit beside the transposed copy
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"unknown flag bits 0x2", "0x1, the transposed copy"});
  b = good;
  put32(b, kFlagsAt, 0x80000001u);
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"unknown flag bits 0x80000000"});
  b = good;
  b[8] = 1;  // version 1 knows no flags
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"flags 0x1 in a version-1 file"});
  b = plain;
  b[8] = 1;
  put32(b, kFlagsAt, 4);
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"flags 0x4 in a version-1 file"});
  // A flag that does not match the layout: the sections are where the other layout is not.
  b = plain;
  put32(b, kFlagsAt, 1);
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"inconsistent header"});
  b = good;
  put32(b, kFlagsAt, 0);
  reseal_header(b);
  expect_bad_pack(bad, b, false, {"inconsistent header"});
  // Truncated: by one byte, and inside sample 1's transposed half.
  b = good;
  b.resize(good.size() - 1);
  expect_bad_pack(bad, b, false, {"truncated", "the header says"});
  b.resize(kPackImagesOffset + 3 * image_bytes + image_bytes / 2);
  expect_bad_pack(bad, b, false, {"truncated", "the header says"});

  // A flipped byte in sample 2's transposed half: the sample's checksum covers it.
  b = good;
  b[kPackImagesOffset + 2 * 2 * image_bytes + image_bytes + 7] ^= 0x10;
  write_all(bad, b);
  auto unverified = std::make_shared<const PackReader>(PackReader::open(bad, false));
  EXPECT_NO_THROW(unverified->verify_sample(1));
  EXPECT_NO_THROW(unverified->verify_sample(3));
  EXPECT_DATA_ERROR(unverified->verify_sample(2), "bad.pack", "checksum mismatch in sample 2", "(s2)");
  EXPECT_DATA_ERROR(unverified->verify_checksum(), "bad.pack", "payload checksum mismatch");
  expect_bad_pack(bad, b, true, {"payload checksum mismatch"});
  // ... and the loader that verifies samples reports it at the sample's batch.
  LoaderOptions o = evaluation_loader_options(4, 16, 1);
  Loader loader(std::make_shared<PackSource>(unverified, /*verify_samples=*/true), o);
  loader.start_epoch(0);
  EXPECT_DATA_ERROR(loader.next(), "sample s2 (index 2)", "bad.pack", "checksum mismatch in sample 2");
}

// ---- loader ----------------------------------------------------------------------------

TEST(Loader, SameSeedSameBatchesWhateverTheThreadCount) {
  auto source = std::make_shared<MemorySource>(37, 20, real_like_labels(37, 4));
  LoaderOptions o = train_options(5, 16, 1);
  o.brightness = 0.1;
  o.contrast = 0.2;
  EpochDump reference;
  for (int threads : {1, 2, 3}) {
    o.threads = threads;
    Loader loader(source, o);
    EXPECT_EQ(loader.batches_per_epoch(), 7);
    const EpochDump dump = run_epoch(loader, 0);
    ASSERT_EQ(dump.images.size(), 7u);
    if (threads == 1)
      reference = dump;
    else
      EXPECT_TRUE(dump == reference) << threads << " threads differ from 1";
  }
  o.seed = 8;
  Loader other_seed(source, o);
  EXPECT_FALSE(run_epoch(other_seed, 0) == reference);

  // The same at a size where the vector copies, block transposes and bands all run.
  auto big = std::make_shared<MemorySource>(24, 150);
  LoaderOptions b = train_options(4, 130, 1, 3);
  EpochDump big_reference;
  for (int threads : {1, 2, 3}) {
    b.threads = threads;
    Loader loader(big, b);
    const EpochDump dump = run_epoch(loader, 1);
    if (threads == 1)
      big_reference = dump;
    else
      EXPECT_TRUE(dump == big_reference) << threads << " threads differ from 1 at 130 from 150";
  }
}

TEST(Loader, ReshufflesEachEpochAndDropsTheLastBatch) {
  auto source = std::make_shared<MemorySource>(23, 8);
  Loader loader(source, train_options(4, 8, 2));
  const EpochDump e0 = run_epoch(loader, 0), e1 = run_epoch(loader, 1), e0_again = run_epoch(loader, 0);
  EXPECT_EQ(e0.images.size(), 5u);  // 23 / 4 with drop_last
  std::vector<int64_t> order0, order1;
  for (const auto& s : e0.samples) order0.insert(order0.end(), s.begin(), s.end());
  for (const auto& s : e1.samples) order1.insert(order1.end(), s.begin(), s.end());
  EXPECT_EQ(order0.size(), 20u);
  EXPECT_EQ(std::set<int64_t>(order0.begin(), order0.end()).size(), 20u) << "no sample twice in an epoch";
  EXPECT_NE(order0, order1);
  EXPECT_TRUE(e0 == e0_again) << "an epoch is a function of (seed, epoch)";

  LoaderOptions keep = train_options(4, 8, 2);
  keep.drop_last = false;
  Loader keep_last(source, keep);
  const EpochDump all = run_epoch(keep_last, 0);
  ASSERT_EQ(all.images.size(), 6u);
  EXPECT_EQ(all.ids.back().size(), 3u);
}

TEST(Loader, OutputIsTheCropAndDihedralOfTheSource) {
  // The loader's batches are data/transforms.h's crop then dihedral with the sample's draws.
  // 9, 21 and 24 are under one transpose block; 100 is whole blocks, a margin and two bands;
  // 21 from 21 is no crop at all.
  for (auto [source_size, output_size] :
       {std::pair{13, 9}, std::pair{29, 24}, std::pair{21, 21}, std::pair{131, 100}}) {
    auto source = std::make_shared<MemorySource>(40, source_size);
    LoaderOptions o = train_options(4, output_size, 2, 3);
    Loader loader(source, o);
    const EpochDump dump = run_epoch(loader, 5);
    std::set<int> seen_k;
    for (size_t b = 0; b < dump.images.size(); ++b)
      for (size_t k = 0; k < dump.samples[b].size(); ++k) {
        Rng rng(mix_seed(o.seed, 5, static_cast<uint64_t>(dump.positions[b][k])));
        const int top = static_cast<int>(rng.range(0, source_size - output_size));
        const int left = static_cast<int>(rng.range(0, source_size - output_size));
        const int d = static_cast<int>(rng.below(kDihedralCount));
        seen_k.insert(d);
        const Image expected = dihedral(
            crop(source->image(static_cast<size_t>(dump.samples[b][k])), top, left, output_size, output_size),
            d);
        const size_t bytes = expected.pixels.size();
        EXPECT_EQ(std::memcmp(dump.images[b].data() + k * bytes, expected.pixels.data(), bytes), 0)
            << "sample " << dump.samples[b][k] << " dihedral " << d << " size " << output_size;
      }
    EXPECT_EQ(seen_k.size(), 8u) << "all eight dihedral elements exercised";
  }
}

TEST(Loader, JitterIsColorJitterOfTheCropAndDihedralWithTheSameDraws) {
  // With jitter on, each plane is built through the cache and jittered there; the result
  // must be color_jitter on the whole image with the draws continuing after the crop's.
  auto source = std::make_shared<MemorySource>(12, 90);
  LoaderOptions o = train_options(4, 70, 2, 5);
  o.brightness = 0.15;
  o.contrast = 0.3;
  Loader loader(source, o);
  const EpochDump dump = run_epoch(loader, 2);
  int changed = 0;
  for (size_t b = 0; b < dump.images.size(); ++b)
    for (size_t k = 0; k < dump.samples[b].size(); ++k) {
      Rng rng(mix_seed(o.seed, 2, static_cast<uint64_t>(dump.positions[b][k])));
      const int top = static_cast<int>(rng.range(0, 90 - 70));
      const int left = static_cast<int>(rng.range(0, 90 - 70));
      const int d = static_cast<int>(rng.below(kDihedralCount));
      const Image plain =
          dihedral(crop(source->image(static_cast<size_t>(dump.samples[b][k])), top, left, 70, 70), d);
      Image expected = plain;
      color_jitter(expected, o.brightness, o.contrast, rng);
      changed += expected.pixels != plain.pixels;
      const size_t bytes = expected.pixels.size();
      EXPECT_EQ(std::memcmp(dump.images[b].data() + k * bytes, expected.pixels.data(), bytes), 0)
          << "sample " << dump.samples[b][k];
    }
  EXPECT_GT(changed, 6) << "the jitter did something";
}

TEST(Loader, EvaluationIsCentreCropInOrder) {
  auto source =
      std::make_shared<MemorySource>(6, 12, std::vector<std::vector<int>>{{0}, {1, 27}, {}, {3}, {4}, {5}});
  Loader loader(source, evaluation_loader_options(4, 8, 2));
  const EpochDump dump = run_epoch(loader, 0);
  ASSERT_EQ(dump.images.size(), 2u);
  EXPECT_EQ(dump.samples[0], (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(dump.samples[1], (std::vector<int64_t>{4, 5}));
  const Image expected = center_crop(source->image(1), 8, 8);
  EXPECT_EQ(std::memcmp(dump.images[0].data() + expected.pixels.size(), expected.pixels.data(),
                        expected.pixels.size()),
            0);
  std::vector<float> labels1(dump.labels[0].begin() + kNumClasses, dump.labels[0].begin() + 2 * kNumClasses);
  for (int c = 0; c < kNumClasses; ++c)
    EXPECT_EQ(labels1[static_cast<size_t>(c)], (c == 1 || c == 27) ? 1.f : 0.f);
  EXPECT_EQ(dump.ids[1], (std::vector<std::string>{"sample4", "sample5"}));
}

TEST(Loader, OversamplingFrequenciesInTheBatches) {
  // Class counts 30, 10, 10, 1, 2 (median 10). Sample 20 (class 3, 10x rarer than the
  // median) repeats ceil(sqrt(10)) = 4 times, samples 21-22 (class 4) ceil(sqrt(5)) = 3 times.
  std::vector<std::vector<int>> labels(30, std::vector<int>{0});
  for (int i = 0; i < 10; ++i) labels[static_cast<size_t>(i)].push_back(1);
  for (int i = 10; i < 20; ++i) labels[static_cast<size_t>(i)].push_back(2);
  labels[20].push_back(3);
  labels[21].push_back(4);
  labels[22].push_back(4);
  auto source = std::make_shared<MemorySource>(30, 8, labels);
  LoaderOptions o = train_options(3, 8, 2);
  o.repeat_factors = oversample_repeat_factors(labels, kNumClasses, {.cap = 4, .power = 0.5});
  EXPECT_EQ(o.repeat_factors[20], 4);
  EXPECT_EQ(o.repeat_factors[21], 3);
  EXPECT_EQ(o.repeat_factors[0], 1);
  o.drop_last = false;
  Loader loader(source, o);
  std::map<int64_t, int> seen;
  for (const auto& batch : run_epoch(loader, 0).samples)
    for (int64_t s : batch) ++seen[s];
  for (int i = 0; i < 30; ++i) EXPECT_EQ(seen[i], o.repeat_factors[static_cast<size_t>(i)]) << "sample " << i;
  EXPECT_EQ(loader.samples_per_epoch(), 27 + 4 + 3 + 3);
}

TEST(Loader, ShardsAreDisjointEqualAndCoverTheEpoch) {
  auto source = std::make_shared<MemorySource>(50, 8);
  const int world = 3;
  std::set<int64_t> positions, samples;
  std::vector<int64_t> shard_sizes;
  for (int rank = 0; rank < world; ++rank) {
    LoaderOptions o = train_options(4, 8, 2);
    o.rank = rank;
    o.world = world;
    o.drop_last = false;
    Loader loader(source, o);
    int64_t n = 0;
    for (int64_t epoch : {0, 1}) {
      const EpochDump dump = run_epoch(loader, epoch);
      for (size_t b = 0; b < dump.positions.size(); ++b)
        for (size_t k = 0; k < dump.positions[b].size(); ++k) {
          if (epoch == 0) {
            EXPECT_TRUE(positions.insert(dump.positions[b][k]).second);
            EXPECT_TRUE(samples.insert(dump.samples[b][k]).second) << "sample on two ranks";
            ++n;
          }
        }
    }
    shard_sizes.push_back(n);
  }
  EXPECT_EQ(shard_sizes, (std::vector<int64_t>{16, 16, 16}));
  EXPECT_EQ(positions.size(), 48u);
  EXPECT_EQ(*positions.rbegin(), 47);
}

TEST(Loader, WorkerErrorsReachTheConsumerAtTheirBatch) {
  auto source = std::make_shared<MemorySource>(12, 8, std::vector<std::vector<int>>{}, std::set<int>{6});
  Loader loader(source, evaluation_loader_options(4, 8, 2));
  loader.start_epoch(0);
  EXPECT_EQ(loader.next().size(), 4);
  EXPECT_DATA_ERROR(loader.next(), "sample6", "memory/sample6_green.png", "corrupt");
  EXPECT_EQ(loader.next().size(), 4);  // the epoch goes on after an error
  EXPECT_FALSE(loader.next());
}

TEST(Loader, SkipBadLeavesTheSampleOutWithAWarning) {
  auto source = std::make_shared<MemorySource>(12, 8, std::vector<std::vector<int>>{}, std::set<int>{2, 9});
  LoaderOptions o = evaluation_loader_options(4, 8, 2);
  o.skip_bad = true;
  std::ostringstream warnings;
  o.warnings = &warnings;
  Loader loader(source, o);
  const EpochDump dump = run_epoch(loader, 0);
  ASSERT_EQ(dump.samples.size(), 3u);
  EXPECT_EQ(dump.samples[0], (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(dump.samples[2], (std::vector<int64_t>{8, 10, 11}));
  EXPECT_EQ(loader.skipped(), 2);
  EXPECT_NE(warnings.str().find("sample2"), std::string::npos);
  EXPECT_NE(warnings.str().find("sample9"), std::string::npos);
  const std::string text = warnings.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(Loader, AllocatorHookAndLeases) {
  std::atomic<int64_t> live_bytes{0}, allocations{0};
  auto source = std::make_shared<MemorySource>(40, 8);
  LoaderOptions o = train_options(4, 8, 2);
  o.prefetch_batches = 3;
  HostAllocator base = aligned_host_allocator(256);
  o.allocator.allocate = [&](size_t bytes) {
    live_bytes += static_cast<int64_t>(bytes);
    ++allocations;
    return base.allocate(bytes);
  };
  o.allocator.release = [&](void* p, size_t bytes) {
    live_bytes -= static_cast<int64_t>(bytes);
    base.release(p, bytes);
  };
  {
    Loader loader(source, o);
    EXPECT_EQ(allocations, 6);  // images and labels per slot
    EXPECT_EQ(live_bytes, 3 * (4 * 4 * 8 * 8 + 4 * 28 * 4));
    loader.start_epoch(0);
    Batch a = loader.next(), b = loader.next(), c = loader.next();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.images()) % 256, 0u);
    EXPECT_DATA_ERROR(loader.next(), "holds all 3 prefetch slots");
    a = Batch();  // release one: the loader can go on
    Batch d = loader.next();
    EXPECT_EQ(d.index(), 3);
    // Start another epoch while holding batches: they stay valid, the new epoch starts at 0.
    loader.start_epoch(1);
    b = Batch();
    c = Batch();
    Batch first = loader.next();
    EXPECT_EQ(first.index(), 0);
    EXPECT_EQ(d.ids().size(), 4u);
  }
  EXPECT_EQ(live_bytes, 0) << "every slot returned to the allocator";
}

TEST(Loader, ShutdownMidEpochStopsTheWorkersPromptly) {
  auto source = std::make_shared<MemorySource>(64, 8);
  source->delay_ms_ = 5;
  LoaderOptions o = train_options(8, 8, 2);
  o.prefetch_batches = 2;
  {
    Loader loader(source, o);
    loader.start_epoch(0);
    EXPECT_EQ(loader.next().size(), 8);
  }  // destroyed with batches being decoded: joins without finishing the epoch
  const int64_t loads = source->loads_;
  EXPECT_LT(loads, 64) << "the workers went on decoding after shutdown";
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(source->loads_, loads) << "a worker outlived its loader";
}

TEST(Loader, BadOptions) {
  auto source = std::make_shared<MemorySource>(4, 8);
  LoaderOptions o = train_options(2, 8, 1);
  o.output_size = 10;
  {
    Loader loader(source, o);
    loader.start_epoch(0);
    EXPECT_DATA_ERROR(loader.next(), "sample0", "smaller than the output size");
  }
  o = train_options(0, 8, 1);
  EXPECT_DATA_ERROR(Loader(source, o), "batch_size");
  o = train_options(2, 8, 0);
  EXPECT_DATA_ERROR(Loader(source, o), "threads");
  o = train_options(2, 8, 1);
  o.rank = 1;
  EXPECT_DATA_ERROR(Loader(source, o), "rank 1 of world 1");
  o = train_options(2, 8, 1);
  o.repeat_factors = {1, 2};
  EXPECT_DATA_ERROR(Loader(source, o), "2 repeat factors");
  EXPECT_DATA_ERROR(Loader(std::make_shared<MemorySource>(0, 8), train_options(2, 8, 1)), "empty");
  Loader loader(source, train_options(2, 8, 1));
  EXPECT_DATA_ERROR(loader.next(), "before start_epoch");
}

// ---- files: PNG folder, pack, dedupe on disk ---------------------------------------------

namespace {

// A Kaggle-layout folder of `count` blob images of size S (train.csv + train/{Id}_{stain}.png).
DatasetIndex write_png_dataset(const TempDir& dir, int count, int size) {
  fs::create_directories(dir.path / "train");
  std::vector<Sample> samples;
  for (int i = 0; i < count; ++i) {
    Sample s{"img" + std::to_string(i), static_cast<LabelMask>(1u << (i % kNumClasses))};
    const Image image = blob_image(size, 500 + static_cast<uint64_t>(i));
    for (Stain stain : kStains)
      write_png_gray((dir.path / "train" / (s.id + "_" + std::string(stain_name(stain)) + ".png")).string(),
                     image.channel(static_cast<int>(stain)), size, size, 1);
    samples.push_back(s);
  }
  write_train_csv(dir.file("train.csv"), samples);
  return DatasetIndex::open(dir.path.string());
}

}  // namespace

TEST(PackDataset, LoaderGivesTheSameBatchesFromPngsAndFromThePack) {
  TempDir dir;
  const DatasetIndex index = write_png_dataset(dir, 9, 32);
  const std::string pack_path = dir.file("train.pack");
  std::vector<int64_t> progress;
  PackDatasetOptions options;
  options.size = 32;
  options.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 9);
    progress.push_back(done);
  };
  EXPECT_EQ(pack_dataset(index, pack_path, options), 9);
  EXPECT_EQ(progress.back(), 9);
  auto pack = std::make_shared<const PackReader>(PackReader::open(pack_path, true));
  ASSERT_EQ(pack->count(), 9);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(pack->id(i), index[static_cast<size_t>(i)].id);
    EXPECT_EQ(pack->labels(i), index[static_cast<size_t>(i)].labels);
  }
  const Image first = load_sample_image(index, 0);
  EXPECT_EQ(std::memcmp(pack->image(0), first.pixels.data(), first.pixels.size()), 0);

  LoaderOptions o = train_options(4, 24, 2);
  Loader from_png(std::make_shared<ImageFolderSource>(index, 32), o);
  Loader from_pack(std::make_shared<PackSource>(pack, /*verify_samples=*/true), o);
  const EpochDump from_files = run_epoch(from_png, 3);
  EXPECT_TRUE(from_files == run_epoch(from_pack, 3));

  // With the transposed copy: the planes, then their transposes; the same batches.
  options.transposed_copy = true;
  EXPECT_EQ(pack_dataset(index, dir.file("transposed.pack"), options), 9);
  auto transposed = std::make_shared<const PackReader>(PackReader::open(dir.file("transposed.pack"), true));
  ASSERT_TRUE(transposed->transposed_copy());
  EXPECT_EQ(std::memcmp(transposed->image(0), first.pixels.data(), first.pixels.size()), 0);
  EXPECT_EQ(
      std::memcmp(transposed->transposed_image(0), transposed_planes(first).data(), first.pixels.size()), 0);
  Loader from_transposed(std::make_shared<PackSource>(transposed, /*verify_samples=*/true), o);
  EXPECT_TRUE(from_files == run_epoch(from_transposed, 3));
  options.transposed_copy = false;

  // A smaller pack is the area-resized dataset.
  options.size = 16;
  options.progress = nullptr;
  pack_dataset(index, dir.file("small.pack"), options);
  const PackReader small = PackReader::open(dir.file("small.pack"));
  const Image resized = resize(load_sample_image(index, 4), 16, 16);
  EXPECT_EQ(std::memcmp(small.image(4), resized.pixels.data(), resized.pixels.size()), 0);
}

TEST(PackDataset, MissingChannelFailsOrIsSkipped) {
  TempDir dir;
  const DatasetIndex index = write_png_dataset(dir, 5, 16);
  fs::remove(dir.path / "train" / "img3_yellow.png");
  PackDatasetOptions options;
  options.size = 16;
  EXPECT_DATA_ERROR(pack_dataset(index, dir.file("a.pack"), options), "img3_yellow.png");
  EXPECT_FALSE(fs::exists(dir.file("a.pack")));
  options.skip_bad = true;
  EXPECT_EQ(pack_dataset(index, dir.file("b.pack"), options), 4);
  const PackReader pack = PackReader::open(dir.file("b.pack"), true);
  EXPECT_EQ(pack.id(3), "img4");
}

TEST(DedupeDataset, HashesFilesAndFindsACopiedSample) {
  TempDir dir;
  DatasetIndex index = write_png_dataset(dir, 6, 64);
  // img6 is img2 made brighter and noisy: a near-duplicate on disk.
  const Image source = load_sample_image(index, 2);
  const Image copy = noisy(brighter(source, 15), 4.0, 3);
  for (Stain stain : kStains)
    write_png_gray((dir.path / "train" / ("img6_" + std::string(stain_name(stain)) + ".png")).string(),
                   copy.channel(static_cast<int>(stain)), 64, 64, 1);
  std::vector<Sample> samples = index.samples();
  samples.push_back({"img6", 1});
  write_train_csv(dir.file("train.csv"), samples);
  index = DatasetIndex::open(dir.path.string());
  const DatasetHashes hashes = hash_dataset(index, 2, false);
  const auto group_of = group_near_duplicates(hashes.hashes, DedupeOptions{});
  EXPECT_EQ(group_of, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 2}));
  const auto kept = keep_first_of_each_group(index.samples(), group_of);
  EXPECT_EQ(kept.size(), 6u);
}

// ---- TIFF: a header must not promise more pixels than the file holds ----------------------

namespace {

// A little-endian TIFF with one directory and the given strips stored after it. Every
// entry is a SHORT (type 3) or LONG (type 4) array; arrays longer than 4 bytes go after
// the directory, as the format requires.
std::vector<uint8_t> make_tiff(uint32_t width, uint32_t height, uint16_t bits, uint16_t samples,
                               uint16_t planar, uint16_t compression, uint32_t rows_per_strip,
                               const std::vector<std::vector<uint8_t>>& strips) {
  struct Entry {
    uint16_t tag, type;
    std::vector<uint32_t> values;
  };
  std::vector<uint32_t> counts;
  for (const auto& strip : strips) counts.push_back(static_cast<uint32_t>(strip.size()));
  std::vector<Entry> entries = {{256, 4, {width}},
                                {257, 4, {height}},
                                {258, 3, std::vector<uint32_t>(samples, bits)},
                                {259, 3, {compression}},
                                {262, 3, {samples == 3 ? 2u : 1u}},
                                {273, 4, std::vector<uint32_t>(strips.size(), 0)},  // filled below
                                {277, 3, {samples}},
                                {278, 4, {rows_per_strip}},
                                {279, 4, counts},
                                {284, 3, {planar}}};
  auto bytes_of = [](const Entry& e) { return e.values.size() * (e.type == 3 ? 2u : 4u); };
  const size_t directory_end = 8 + 2 + 12 * entries.size() + 4;
  size_t overflow = 0;
  for (const Entry& e : entries)
    if (bytes_of(e) > 4) overflow += bytes_of(e);
  size_t at = directory_end + overflow;
  for (size_t i = 0; i < strips.size(); ++i) {
    entries[5].values[i] = static_cast<uint32_t>(at);
    at += strips[i].size();
  }
  std::vector<uint8_t> out;
  auto put = [&out](uint32_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  out = {'I', 'I', 42, 0};
  put(8, 4);
  put(static_cast<uint32_t>(entries.size()), 2);
  size_t next_overflow = directory_end;
  for (const Entry& e : entries) {
    put(e.tag, 2);
    put(e.type, 2);
    put(static_cast<uint32_t>(e.values.size()), 4);
    if (bytes_of(e) > 4) {
      put(static_cast<uint32_t>(next_overflow), 4);
      next_overflow += bytes_of(e);
    } else {
      for (uint32_t v : e.values) put(v, e.type == 3 ? 2 : 4);
      for (size_t pad = bytes_of(e); pad < 4; ++pad) out.push_back(0);
    }
  }
  put(0, 4);  // no next directory
  for (const Entry& e : entries)
    if (bytes_of(e) > 4)
      for (uint32_t v : e.values) put(v, e.type == 3 ? 2 : 4);
  for (const auto& strip : strips) out.insert(out.end(), strip.begin(), strip.end());
  return out;
}

}  // namespace

TEST(Tiff, StripsDecodeInPlaceAndThroughTheStripBuffer) {
  // Gray 8-bit in 4 strips of 2 rows (the last one short), decoded straight into the image.
  const std::vector<uint8_t> gray = random_bytes(9 * 7, 1);
  std::vector<std::vector<uint8_t>> strips;
  for (size_t row = 0; row < 7; row += 2)
    strips.emplace_back(gray.begin() + static_cast<long>(row * 9),
                        gray.begin() + static_cast<long>(std::min<size_t>(row + 2, 7) * 9));
  std::vector<uint8_t> file = make_tiff(9, 7, 8, 1, 1, 1, 2, strips);
  DecodedImage d = decode_tiff_memory(file.data(), file.size(), "gray.tif");
  EXPECT_EQ(d.width, 9);
  EXPECT_EQ(d.height, 7);
  EXPECT_EQ(d.samples8, gray);

  // Interleaved RGB 16-bit in one strip (in place, three samples per pixel).
  const std::vector<uint8_t> rgb16 = random_bytes(5 * 3 * 3 * 2, 2);
  file = make_tiff(5, 3, 16, 3, 1, 1, 3, {rgb16});
  d = decode_tiff_memory(file.data(), file.size(), "rgb16.tif");
  ASSERT_EQ(d.samples16.size(), 5u * 3 * 3);
  EXPECT_EQ(std::memcmp(d.samples16.data(), rgb16.data(), rgb16.size()), 0);  // little-endian host

  // Separate planes (one strip per plane): interleaved through the strip buffer.
  const std::vector<uint8_t> r = random_bytes(20, 3), g = random_bytes(20, 4), b = random_bytes(20, 5);
  file = make_tiff(5, 4, 8, 3, 2, 1, 4, {r, g, b});
  d = decode_tiff_memory(file.data(), file.size(), "planar.tif");
  ASSERT_EQ(d.samples8.size(), 60u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(d.samples8[3 * i], r[i]);
    EXPECT_EQ(d.samples8[3 * i + 1], g[i]);
    EXPECT_EQ(d.samples8[3 * i + 2], b[i]);
  }
}

TEST(Tiff, HeadersThatPromiseMoreThanTheFileHoldsAreRefusedBeforeAllocating) {
  // 8000 x 8000 at 16 bits is 128 MB; the files hold 100 bytes of pixel data. Before the
  // guard these allocated (and zeroed) the image and a strip buffer as large: seconds and
  // hundreds of MB per file (the fuzzer's timeouts, fuzz/corpus/tiff/tiff_*_from_*_bytes.tif).
  const std::vector<uint8_t> hundred(100, 0);
  std::vector<uint8_t> file = make_tiff(8000, 8000, 16, 1, 1, 1, 8000, {hundred});
  EXPECT_DATA_ERROR(decode_tiff_memory(file.data(), file.size(), "raw.tif"), "raw.tif",
                    "pixel data too short", "8000x8000x1 at 16 bits", "compression 1");
  file = make_tiff(8000, 8000, 16, 1, 1, 8, 8000, {hundred});  // Deflate: at most 4096:1
  EXPECT_DATA_ERROR(decode_tiff_memory(file.data(), file.size(), "deflate.tif"), "deflate.tif",
                    "pixel data too short", "compression 8");
  file = make_tiff(64, 64, 8, 1, 1, 32773, 64, {std::vector<uint8_t>(63, 0)});  // PackBits: at most 64:1
  EXPECT_DATA_ERROR(decode_tiff_memory(file.data(), file.size(), "packbits.tif"), "pixel data too short");
  file = make_tiff(64, 64, 8, 1, 1, 10825, 64, {hundred});
  EXPECT_DATA_ERROR(decode_tiff_memory(file.data(), file.size(), "codec.tif"), "codec.tif",
                    "unsupported TIFF compression 10825");
  // One byte short of a small uncompressed image: libtiff replaces the short count of a
  // single strip by the expected one (within the file's size, so the guard passes) and the
  // read fails instead. The exact size decodes.
  file = make_tiff(10, 10, 8, 1, 1, 1, 10, {std::vector<uint8_t>(99, 7)});
  EXPECT_DATA_ERROR(decode_tiff_memory(file.data(), file.size(), "short.tif"), "short.tif", "truncated");
  file = make_tiff(10, 10, 8, 1, 1, 1, 10, {std::vector<uint8_t>(100, 7)});
  EXPECT_EQ(decode_tiff_memory(file.data(), file.size(), "exact.tif").samples8, std::vector<uint8_t>(100, 7));
}
