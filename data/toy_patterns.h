// A tiny synthetic multi-label task for the engine demo and the learning test: 4-channel
// images (red, green, blue, yellow) with a nucleus in blue and, in green, one visible
// pattern per label: 0 = filled nucleus, 1 = nuclear ring, 2 = a few spots in the
// cytoplasm, 3 = diagonal filaments. Labels are independent (p = 0.45 each, at least one
// per sample); positions, sizes, intensities and noise vary. Deterministic for a seed
// (splitmix64, no library distributions). The full HPA-like generator is `hpa_data synth`.
#pragma once

#include <cstdint>
#include <vector>

namespace hpa::data {

constexpr int kToyClasses = 4;

struct ToyBatch {
  int count = 0;
  int size = 0;
  std::vector<float> images;  // count x 4 x size x size, values in [0, 1]
  std::vector<float> labels;  // count x kToyClasses, 0 or 1
};

ToyBatch make_toy_batch(int count, int size, uint64_t seed);

}  // namespace hpa::data
