// Per-channel intensity statistics of a dataset (`hpa_data stats`), for the normalization in
// data/transforms.h. Every pixel of every sample counts once; the counts go into exact
// 256-bin histograms per channel, from which mean and (population) std on the [0, 1] scale
// are computed in double, so the result does not depend on the thread count or order.
#pragma once

#include <cstdint>
#include <string>

#include "data/bad_samples.h"
#include "data/csv.h"
#include "data/transforms.h"

namespace hpa::data {

struct StatsOptions {
  int threads = 0;              // 0: std::thread::hardware_concurrency()
  int expected_size = 0;        // > 0: every channel image must be this size
  double progress_seconds = 0;  // progress line interval on stderr; <= 0 for none
};

struct StatsResult {
  ChannelStats stats;
  int64_t samples_used = 0;
  int64_t pixels_per_channel = 0;
};

// Throws DataError on the first bad sample unless bad.skip_bad(); throws when no sample is usable.
StatsResult compute_channel_stats(const DatasetIndex& index, BadSamples& bad,
                                  const StatsOptions& options = {});

// {"mean":[r,g,b,y],"std":[r,g,b,y]}
std::string stats_to_json(const ChannelStats& stats);
ChannelStats stats_from_json(const std::string& text, const std::string& name);
void write_stats_json(const std::string& path, const ChannelStats& stats);  // atomic
ChannelStats read_stats_json(const std::string& path);

}  // namespace hpa::data
