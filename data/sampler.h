// Which samples an epoch visits, in what order, on which data-parallel rank. The rule: nothing here depends
// on threads or timing. An epoch's plan is a pure function of (seed, epoch, repeat factors, rank, world), and
// each entry carries its position in the *global* epoch list, which seeds that sample's augmentation, so a
// sample at a given position is augmented identically whatever the thread count or world size.
//
// Minority oversampling repeats a sample a whole number of times per epoch:
//   factor(i) = clamp(ceil((median_count / rarest_count(i)) ^ power), 1, cap)
// where rarest_count(i) is the training count of sample i's rarest class and median_count
// is the median count over the classes that occur. A sample whose rarest class is at least
// as common as the median is seen once; one with a class 10x rarer than the median is seen
// min(cap, ceil(10^power)) times. Samples without labels are seen once. Whole repeats (not
// sampling with replacement) keep the epoch length and the per-sample frequency exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "data/rng.h"

namespace hpa::data {

// Fisher-Yates with the data library's generator.
template <class T>
void shuffle(std::vector<T>& items, Rng& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.below(i));
    std::swap(items[i - 1], items[j]);
  }
}

struct OversampleOptions {
  int cap = 4;         // the paper oversamples rare classes "a few times"
  double power = 1.0;  // < 1 softens the repeat factor, 0 disables oversampling
};

// One repeat factor per sample (formula above). labels[i] lists sample i's classes.
std::vector<int> oversample_repeat_factors(const std::vector<std::vector<int>>& labels, int num_classes,
                                           const OversampleOptions& options);

struct EpochPlanOptions {
  uint64_t seed = 0;
  int64_t epoch = 0;
  bool shuffle = true;
  int rank = 0;   // this data-parallel rank, in [0, world)
  int world = 1;  // ranks in total
};

struct EpochEntry {
  int64_t sample = 0;    // index into the dataset
  int64_t position = 0;  // position in the global epoch list (before sharding): seeds augmentation
};

// The global list is every sample repeated by its factor (empty repeat_factors: once each),
// shuffled with a generator seeded from (seed, epoch). It is cut to a multiple of world (the
// tail of at most world-1 entries is dropped this epoch; the shuffle moves it next epoch) and
// rank r takes positions r, r+world, r+2*world, ...: the ranks' shards are disjoint, of equal
// size, and together cover the cut list.
std::vector<EpochEntry> plan_epoch(int64_t num_samples, const std::vector<int>& repeat_factors,
                                   const EpochPlanOptions& options);

}  // namespace hpa::data
