#include "data/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "data/error.h"

namespace hpa::data {

std::vector<int> oversample_repeat_factors(const std::vector<std::vector<int>>& labels, int num_classes,
                                           const OversampleOptions& options) {
  if (options.cap < 1) throw DataError("oversample: cap must be >= 1, got " + std::to_string(options.cap));
  if (!(options.power >= 0.0) || !std::isfinite(options.power))
    throw DataError("oversample: power must be finite and >= 0, got " + std::to_string(options.power));
  std::vector<int64_t> counts(static_cast<size_t>(num_classes), 0);
  for (size_t i = 0; i < labels.size(); ++i)
    for (int c : labels[i]) {
      if (c < 0 || c >= num_classes)
        throw DataError("oversample: sample " + std::to_string(i) + " has class " + std::to_string(c) +
                        " outside [0, " + std::to_string(num_classes) + ")");
      ++counts[static_cast<size_t>(c)];
    }
  std::vector<int64_t> present;
  for (int64_t c : counts)
    if (c > 0) present.push_back(c);
  std::vector<int> factors(labels.size(), 1);
  if (present.empty()) return factors;
  std::sort(present.begin(), present.end());
  const size_t m = present.size();
  const double median = m % 2 ? static_cast<double>(present[m / 2])
                              : 0.5 * static_cast<double>(present[m / 2 - 1] + present[m / 2]);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].empty()) continue;
    int64_t rarest = counts[static_cast<size_t>(labels[i][0])];
    for (int c : labels[i]) rarest = std::min(rarest, counts[static_cast<size_t>(c)]);
    const double ratio = median / static_cast<double>(rarest);
    // A tiny epsilon keeps a ratio of exactly 2 from becoming 3 through rounding in pow.
    const double factor = std::ceil(std::pow(ratio, options.power) - 1e-9);
    factors[i] = static_cast<int>(std::clamp(factor, 1.0, static_cast<double>(options.cap)));
  }
  return factors;
}

std::vector<EpochEntry> plan_epoch(int64_t num_samples, const std::vector<int>& repeat_factors,
                                   const EpochPlanOptions& options) {
  if (num_samples < 0) throw DataError("plan_epoch: negative sample count " + std::to_string(num_samples));
  if (options.world < 1 || options.rank < 0 || options.rank >= options.world)
    throw DataError("plan_epoch: rank " + std::to_string(options.rank) + " of world " +
                    std::to_string(options.world) + " is out of range");
  if (!repeat_factors.empty() && static_cast<int64_t>(repeat_factors.size()) != num_samples)
    throw DataError("plan_epoch: " + std::to_string(repeat_factors.size()) + " repeat factors for " +
                    std::to_string(num_samples) + " samples");
  std::vector<int64_t> global;
  global.reserve(static_cast<size_t>(num_samples));
  for (int64_t i = 0; i < num_samples; ++i) {
    const int repeats = repeat_factors.empty() ? 1 : repeat_factors[static_cast<size_t>(i)];
    if (repeats < 0) throw DataError("plan_epoch: negative repeat factor for sample " + std::to_string(i));
    for (int r = 0; r < repeats; ++r) global.push_back(i);
  }
  if (options.shuffle) {
    Rng rng(mix_seed(options.seed, static_cast<uint64_t>(options.epoch), 0x0e90c5u));
    shuffle(global, rng);
  }
  const int64_t world = options.world;
  const int64_t per_rank = static_cast<int64_t>(global.size()) / world;
  std::vector<EpochEntry> shard(static_cast<size_t>(per_rank));
  for (int64_t k = 0; k < per_rank; ++k) {
    const int64_t position = options.rank + k * world;
    shard[static_cast<size_t>(k)] = EpochEntry{global[static_cast<size_t>(position)], position};
  }
  return shard;
}

}  // namespace hpa::data
