#include "data/dedupe.h"

#include <algorithm>
#include <atomic>
#include <numeric>
#include <thread>

#include "data/error.h"
#include "data/hash.h"
#include "data/loader.h"
#include "data/split.h"

namespace hpa::data {

namespace {

// Hashing works on the sample area-averaged to this size: pHash averages to 32x32 anyway,
// and a fixed size lets samples of any resolution share one loader.
constexpr int kHashInputSize = 128;

struct UnionFind {
  std::vector<int64_t> parent;
  explicit UnionFind(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int64_t find(int64_t x) {
    while (parent[static_cast<size_t>(x)] != x) {
      parent[static_cast<size_t>(x)] = parent[static_cast<size_t>(parent[static_cast<size_t>(x)])];
      x = parent[static_cast<size_t>(x)];
    }
    return x;
  }
  // The smaller index becomes the root, so a root is its group's first member.
  void unite(int64_t a, int64_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (b < a) std::swap(a, b);
    parent[static_cast<size_t>(b)] = a;
  }
};

}  // namespace

SampleHash sample_hash(const uint8_t* image, int height, int width) {
  SampleHash h;
  const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
  for (int c = 0; c < kNumChannels; ++c)
    h.stain[static_cast<size_t>(c)] = phash64(image + c * plane, width, height, width);
  return h;
}

unsigned parse_stain_letters(const std::string& letters) {
  unsigned mask = 0;
  for (char ch : letters) {
    switch (ch) {
      case 'r':
        mask |= stain_bit(Stain::red);
        break;
      case 'g':
        mask |= stain_bit(Stain::green);
        break;
      case 'b':
        mask |= stain_bit(Stain::blue);
        break;
      case 'y':
        mask |= stain_bit(Stain::yellow);
        break;
      default:
        throw data_error("dedupe: stain letters must be from r, g, b, y; got '", letters, "'");
    }
  }
  if (mask == 0) throw DataError("dedupe: no stains selected");
  return mask;
}

std::vector<std::pair<int64_t, int64_t>> near_duplicate_pairs(const std::vector<SampleHash>& hashes,
                                                              const DedupeOptions& options,
                                                              const std::vector<bool>& valid) {
  if (options.threshold < 0) throw data_error("dedupe: threshold must be >= 0, got ", options.threshold);
  if ((options.stains & 0xFu) == 0) throw DataError("dedupe: no stains selected");
  if (!valid.empty() && valid.size() != hashes.size())
    throw data_error("dedupe: ", valid.size(), " validity flags for ", hashes.size(), " hashes");
  const int64_t n = static_cast<int64_t>(hashes.size());
  // Only the selected stains, packed together, so the inner loop is a few xor + popcount.
  std::vector<int> chosen;
  for (int c = 0; c < kNumChannels; ++c)
    if ((options.stains >> c) & 1u) chosen.push_back(c);
  const size_t words = chosen.size();
  std::vector<uint64_t> packed(static_cast<size_t>(n) * words);
  for (int64_t i = 0; i < n; ++i)
    for (size_t w = 0; w < words; ++w)
      packed[static_cast<size_t>(i) * words + w] =
          hashes[static_cast<size_t>(i)].stain[static_cast<size_t>(chosen[w])];

  const int threads = std::max(1, options.threads);
  std::vector<std::vector<std::pair<int64_t, int64_t>>> found(static_cast<size_t>(threads));
  // Rows are dealt round-robin: row i has n-1-i pairs, so interleaving balances the triangle.
  auto scan = [&](int t) {
    auto& out = found[static_cast<size_t>(t)];
    for (int64_t i = t; i < n; i += threads) {
      if (!valid.empty() && !valid[static_cast<size_t>(i)]) continue;
      const uint64_t* a = packed.data() + static_cast<size_t>(i) * words;
      for (int64_t j = i + 1; j < n; ++j) {
        const uint64_t* b = packed.data() + static_cast<size_t>(j) * words;
        int d = 0;
        for (size_t w = 0; w < words; ++w) d += std::popcount(a[w] ^ b[w]);
        if (d <= options.threshold && (valid.empty() || valid[static_cast<size_t>(j)]))
          out.emplace_back(i, j);
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(scan, t);
  scan(0);
  for (std::thread& t : pool) t.join();
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (auto& part : found) pairs.insert(pairs.end(), part.begin(), part.end());
  std::sort(pairs.begin(), pairs.end());
  return pairs;
}

std::vector<int64_t> group_near_duplicates(const std::vector<SampleHash>& hashes,
                                           const DedupeOptions& options, const std::vector<bool>& valid) {
  UnionFind sets(hashes.size());
  for (auto [i, j] : near_duplicate_pairs(hashes, options, valid)) sets.unite(i, j);
  std::vector<int64_t> group_of(hashes.size());
  std::vector<int64_t> number_of_root(hashes.size(), -1);
  int64_t groups = 0;
  for (size_t i = 0; i < hashes.size(); ++i) {
    const size_t root = static_cast<size_t>(sets.find(static_cast<int64_t>(i)));
    if (number_of_root[root] < 0) number_of_root[root] = groups++;
    group_of[i] = number_of_root[root];
  }
  return group_of;
}

DatasetHashes hash_dataset(const DatasetIndex& index, int threads, bool skip_bad,
                           const std::function<void(int64_t, int64_t)>& progress) {
  if (index.size() == 0) throw data_error("dedupe: the dataset in ", index.dir(), " is empty");
  LoaderOptions options = evaluation_loader_options(32, kHashInputSize, std::max(threads, 1));
  options.resize_to = kHashInputSize;
  options.prefetch_batches = 2 * options.threads + 2;
  options.skip_bad = skip_bad;
  Loader loader(std::make_shared<ImageFolderSource>(index), options);
  DatasetHashes result;
  result.hashes.resize(index.size());
  result.valid.assign(index.size(), false);
  const int64_t total = static_cast<int64_t>(index.size());
  loader.start_epoch(0);
  const size_t sample_bytes = static_cast<size_t>(kNumChannels) * kHashInputSize * kHashInputSize;
  while (Batch batch = loader.next()) {
    for (int k = 0; k < batch.size(); ++k) {
      const size_t i = static_cast<size_t>(batch.samples()[static_cast<size_t>(k)]);
      result.hashes[i] =
          sample_hash(batch.images() + static_cast<size_t>(k) * sample_bytes, kHashInputSize, kHashInputSize);
      result.valid[i] = true;
    }
    if (progress) progress(std::min(total, (batch.index() + 1) * options.batch_size), total);
  }
  result.skipped = loader.skipped();
  return result;
}

void write_groups_csv(const std::string& path, const std::vector<Sample>& samples,
                      const std::vector<int64_t>& group_of) {
  if (group_of.size() != samples.size())
    throw data_error(path, ": ", group_of.size(), " groups for ", samples.size(), " samples");
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) rows.emplace_back(samples[i].id, std::to_string(group_of[i]));
  write_id_value_csv(path, "group", rows);
}

std::vector<Sample> keep_first_of_each_group(const std::vector<Sample>& samples,
                                             const std::vector<int64_t>& group_of) {
  if (group_of.size() != samples.size())
    throw data_error("dedupe: ", group_of.size(), " groups for ", samples.size(), " samples");
  std::vector<bool> seen;
  std::vector<Sample> kept;
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t g = group_of[i];
    if (g < 0) throw data_error("dedupe: negative group for sample ", samples[i].id);
    if (static_cast<size_t>(g) >= seen.size()) seen.resize(static_cast<size_t>(g) + 1, false);
    if (seen[static_cast<size_t>(g)]) continue;
    seen[static_cast<size_t>(g)] = true;
    kept.push_back(samples[i]);
  }
  return kept;
}

}  // namespace hpa::data
