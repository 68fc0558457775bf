// Near-duplicate images: a perceptual hash per sample and grouping by Hamming distance.
//
// A sample's fingerprint is one 64-bit pHash (data/hash.h) per stain. Two samples are
// near-duplicates when the summed Hamming distance over the chosen stains is at most the
// threshold; groups are the connected components of that relation (union-find), so a chain
// of near-duplicates is one group. The default stains are green and blue: blue (nuclei) is
// always bright and structured, and green (the protein) tells two fields of the same cell
// line apart; red and yellow add little and are sometimes nearly empty, and the hash of a
// nearly flat plane is noise.
//
// Threshold: with 63 informative bits per stain, unrelated images differ in about 31 bits
// per stain (62 over green + blue, standard deviation about 5.6); brightness change, mild
// noise, blur, JPEG-like smoothing or a 1-pixel shift move a few bits. The default 16 sits
// about 8 standard deviations below the unrelated mean; test_data_pipe measures both sides.
//
// All pairs are compared: n(n-1)/2 distance computations of two popcounts each. For the 31k
// images of HPA 2018 that is 4.8e8 pairs, which bench_loader times at 1.4-2 s on one core of
// the development machine (3-4 ns a pair), next to minutes of decoding the images to hash
// them; an index (BK-tree, multi-index hashing) would only add code.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "data/csv.h"
#include "data/hash.h"

namespace hpa::data {

struct SampleHash {
  std::array<uint64_t, kNumChannels> stain{};  // pHash of red, green, blue, yellow
};

// Bit c selects stain c (Stain order: red 1, green 2, blue 4, yellow 8).
constexpr unsigned stain_bit(Stain s) { return 1u << static_cast<int>(s); }
constexpr unsigned kDefaultDedupeStains = stain_bit(Stain::green) | stain_bit(Stain::blue);
constexpr int kDefaultDedupeThreshold = 16;

// image: 4 x height x width, planar R, G, B, Y.
SampleHash sample_hash(const uint8_t* image, int height, int width);

inline int hash_distance(const SampleHash& a, const SampleHash& b, unsigned stains) {
  int d = 0;
  for (int c = 0; c < kNumChannels; ++c)
    if ((stains >> c) & 1u)
      d += std::popcount(a.stain[static_cast<size_t>(c)] ^ b.stain[static_cast<size_t>(c)]);
  return d;
}

struct DedupeOptions {
  int threshold = kDefaultDedupeThreshold;  // max summed distance for a near-duplicate pair
  unsigned stains = kDefaultDedupeStains;
  int threads = 2;
};

// "gb" -> green | blue; letters r, g, b, y. Throws DataError on anything else or nothing.
unsigned parse_stain_letters(const std::string& letters);

// Every pair (i < j) within the threshold, sorted. valid[i] == false excludes sample i
// (it failed to load); empty valid means all are valid.
std::vector<std::pair<int64_t, int64_t>> near_duplicate_pairs(const std::vector<SampleHash>& hashes,
                                                              const DedupeOptions& options,
                                                              const std::vector<bool>& valid = {});

// Group number per sample: groups are numbered 0, 1, ... in order of their first member, so
// a sample without near-duplicates has a group of its own.
std::vector<int64_t> group_near_duplicates(const std::vector<SampleHash>& hashes,
                                           const DedupeOptions& options, const std::vector<bool>& valid = {});

// Hashes a dataset with worker threads (decoded through the loader, area-averaged to 128²).
// With skip_bad a sample that fails to load gets valid[i] = false (and one warning).
struct DatasetHashes {
  std::vector<SampleHash> hashes;
  std::vector<bool> valid;
  int64_t skipped = 0;
};
DatasetHashes hash_dataset(const DatasetIndex& index, int threads, bool skip_bad,
                           const std::function<void(int64_t done, int64_t total)>& progress = {});

// groups.csv (Id,group) for the samples; read it back with read_group_keys (data/split.h).
void write_groups_csv(const std::string& path, const std::vector<Sample>& samples,
                      const std::vector<int64_t>& group_of);

// The samples to keep when dropping duplicates: the first sample (in index order) of each group.
std::vector<Sample> keep_first_of_each_group(const std::vector<Sample>& samples,
                                             const std::vector<int64_t>& group_of);

}  // namespace hpa::data
